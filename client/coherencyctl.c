/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * coherencyctl: the operator's view of coherencyd, the custodian of VFIO
 * groups. Everything but check-policy (and the sysfs walk of devices) goes
 * over the Varlink socket through libcoherency's raw calls, so --json shows
 * what the daemon said: one JSON document per command (monitor: per event).
 *
 * It behaves as systemd's tools do: status is the default verb, output goes
 * through a pager on a terminal (--no-pager), tables fit the terminal
 * (--full), --no-legend drops headers and footers, and the exit status says
 * what kind of failure it was (see EXIT STATUS in coherencyctl(1)).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libcoherency.h"

#ifndef COH_SBINDIR
#define COH_SBINDIR "/usr/sbin"
#endif
#ifndef COH_SYSCONF_DIR
#define COH_SYSCONF_DIR "/etc/coherencyd"
#endif

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* The exit statuses, as coherencyctl(1) lists them (LSB's where one fits: 2, 4). */
enum {
        EXIT_USAGE = 2,       /* the command line, or a parameter the daemon rejected */
        EXIT_UNREACHABLE = 3, /* no daemon on the socket, or the connection failed */
        EXIT_DENIED = 4,      /* the daemon said PermissionDenied */
        EXIT_NOT_FOUND = 5,   /* no such device, grant or interface */
};

enum json_mode {
        JSON_OFF,
        JSON_SHORT,
        JSON_PRETTY,
};

struct args {
        const char *socket;
        const char *config;
        const char *user;
        const char *group;
        const char *unit;
        const char *sysfs;
        int ioas_coherent;      /* -1: not given */
        bool kill;
        enum json_mode json;
        bool no_pager;
        bool no_legend;
        bool full;
        size_t columns;         /* what tables must fit; SIZE_MAX: no limit */
};

/* ---- small helpers ------------------------------------------------------------- */

static bool streq(const char *a, const char *b) {
        return a && b && strcmp(a, b) == 0;
}

/* yes/no, as systemd spells booleans: 1, 0, or -1 for anything else. */
static int parse_boolean(const char *v) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(v, yes[i]) == 0)
                        return 1;
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(v, no[i]) == 0)
                        return 0;
        return -1;
}

static json_object *parse_object(const char *json) {
        json_object *o = json ? json_tokener_parse(json) : NULL;

        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static const char *get_str(json_object *o, const char *key, const char *fallback) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return fallback;
        return json_object_get_string(v);
}

static bool get_int(json_object *o, const char *key, int64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_int64(v);
        return true;
}

static json_object *get_array(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
                return NULL;
        return v;
}

static json_object *get_object(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_object))
                return NULL;
        return v;
}

static const char *value_to_string(json_object *v) {
        if (!v)
                return "null";
        if (json_object_is_type(v, json_type_string))
                return json_object_get_string(v);
        return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static const char *yes_no(json_object *o, const char *key, const char *yes, const char *no) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
                return "?";
        return json_object_get_boolean(v) ? yes : no;
}

/* Consumes v in every case. */
static int add_value(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_string(json_object *o, const char *key, const char *value) {
        return add_value(o, key, json_object_new_string(value));
}

static int add_bool(json_object *o, const char *key, bool value) {
        return add_value(o, key, json_object_new_boolean(value));
}

/* A reference of what another object owns, or JSON null for NULL. */
static int add_ref(json_object *o, const char *key, json_object *v) {
        if (!v)
                return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
        return add_value(o, key, json_object_get(v));
}

/* since is CLOCK_REALTIME in µs, as the journal counts. */
static void format_usec(char *buf, size_t size, int64_t usec) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;

        if (usec <= 0 || !localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "-");
}

/* "Slot" for "slot", "NoSnoop" for "noSnoop": the file's spelling of a JSON member. */
static void key_to_setting(const char *key, char *buf, size_t size) {
        snprintf(buf, size, "%s", key);
        if (buf[0] >= 'a' && buf[0] <= 'z')
                buf[0] = (char) (buf[0] - 'a' + 'A');
}

/* snprintf(buf, size, "%s", s) that says it truncates on purpose. */
static void copy_string(char *buf, size_t size, const char *s) {
        size_t l = strnlen(s, size - 1);

        memcpy(buf, s, l);
        buf[l] = '\0';
}

static bool ends_with(const char *s, const char *suffix) {
        size_t l = strlen(s), k = strlen(suffix);

        return l >= k && strcmp(s + l - k, suffix) == 0;
}

/* ---- output: JSON ------------------------------------------------------------ */

/* The one document a command prints with --json=short|pretty. */
static void print_json(const struct args *a, json_object *o) {
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
                    (a->json == JSON_PRETTY ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
                                            : JSON_C_TO_STRING_PLAIN);

        puts(json_object_to_json_string_ext(o, flags));
}

/* ---- output: the pager, as systemd's tools start it ---------------------------- */

static pid_t pager_pid;

/* systemd's terminal_is_dumb(): no pager unless stdout is a terminal that is not "dumb". */
static bool stdout_is_smart_terminal(void) {
        const char *term = getenv("TERM");

        return isatty(STDOUT_FILENO) && term && term[0] && strcmp(term, "dumb") != 0;
}

static bool locale_is_utf8(void) {
        const char *set = nl_langinfo(CODESET);

        return set && (strcasecmp(set, "UTF-8") == 0 || strcasecmp(set, "utf8") == 0);
}

/*
 * Secure mode, as systemd 252 decides it: $SYSTEMD_PAGERSECURE when set (and
 * then $SYSTEMD_PAGER/$PAGER is trusted), else on when running elevated: under
 * sudo ($SUDO_UID), or with an effective uid other than the one that logged in
 * (/proc/self/loginuid, where systemd asks logind for the session's owner), or
 * when that cannot be told.
 */
static bool pager_secure(bool *ret_trusted) {
        const char *e = getenv("SYSTEMD_PAGERSECURE");
        unsigned long login_uid;
        char buf[32] = "";
        FILE *f;
        int b;

        *ret_trusted = false;
        if (e) {
                b = parse_boolean(e);
                *ret_trusted = b >= 0;
                return b != 0; /* unparsable: secure */
        }
        if (getenv("SUDO_UID"))
                return true;
        f = fopen("/proc/self/loginuid", "re");
        if (!f)
                return true;
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = '\0';
        fclose(f);
        errno = 0;
        login_uid = strtoul(buf, NULL, 10);
        return errno != 0 || login_uid == 4294967295UL || (uid_t) login_uid != geteuid();
}

/* Splits a pager command line into words, with '...' and "..." quoting, as systemd does. */
static size_t split_words(char *s, char **words, size_t max) {
        size_t n = 0;

        while (*s && n + 1 < max) {
                char *out = s, quote = 0;

                while (*s == ' ' || *s == '\t')
                        s++;
                if (!*s)
                        break;
                words[n++] = out = s;
                for (char *in = s; *in; in++) {
                        if (quote ? *in == quote : (*in == '\'' || *in == '"')) {
                                quote = quote ? 0 : *in;
                                continue;
                        }
                        if (!quote && (*in == ' ' || *in == '\t')) {
                                s = in + 1;
                                *out = '\0';
                                goto next;
                        }
                        if (*in == '\\' && in[1])
                                in++;
                        *out++ = *in;
                }
                *out = '\0';
                s = out;
        next:;
        }
        words[n] = NULL;
        return n;
}

/* The pager process: stdin is our output. Never returns. */
static void pager_exec(const char *pager, bool trusted, bool secure) {
        static const char *const known[] = { "pager", "less", "more" };
        const char *less = getenv("SYSTEMD_LESS"), *charset = getenv("SYSTEMD_LESSCHARSET");
        char buf[4096];
        ssize_t n;

        (void) setenv("LESS", less ? less : "FRSXMK", 1);
        if (charset || locale_is_utf8())
                (void) setenv("LESSCHARSET", charset ? charset : "utf-8", 1);
        if (secure)
                (void) setenv("LESSSECURE", "1", 1);
        else
                (void) unsetenv("LESSSECURE");

        if (trusted && pager) {
                char *copy = strdup(pager), *words[64];

                if (copy && split_words(copy, words, ELEMENTSOF(words)) > 0)
                        execvp(words[0], words);
                free(copy);
        }
        /* Debian's alternative for pagers is "pager"; in secure mode only less knows LESSSECURE. */
        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (!secure || strcmp(known[i], "less") == 0)
                        execlp(known[i], known[i], (char *) NULL);

        /* None there: copy, as systemd's built-in pager does. */
        while ((n = read(STDIN_FILENO, buf, sizeof(buf))) > 0)
                if (write(STDOUT_FILENO, buf, (size_t) n) != n)
                        _exit(EXIT_FAILURE);
        _exit(EXIT_SUCCESS);
}

/* Pipes stdout (and a terminal stderr) into a pager, when a person is reading a terminal. */
static void pager_open(const struct args *a) {
        const char *pager = getenv("SYSTEMD_PAGER");
        bool trusted, secure;
        pid_t parent = getpid();
        int fd[2];

        if (a->no_pager || pager_pid > 0 || !stdout_is_smart_terminal())
                return;
        if (!pager)
                pager = getenv("PAGER");
        /* Explicitly turned off. */
        if (pager && (!pager[0] || strcmp(pager, "cat") == 0))
                return;
        secure = pager_secure(&trusted);

        (void) fflush(stdout);
        if (pipe2(fd, O_CLOEXEC) < 0)
                return;
        pager_pid = fork();
        if (pager_pid < 0) {
                pager_pid = 0;
                close(fd[0]);
                close(fd[1]);
                return;
        }
        if (pager_pid == 0) {
                if (dup2(fd[0], STDIN_FILENO) < 0)
                        _exit(EXIT_FAILURE);
                /* Our copy of the write end would keep the built-in pager from ever seeing EOF. */
                close(fd[0]);
                close(fd[1]);
                /* The pager goes when we go. */
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(EXIT_SUCCESS);
                pager_exec(pager, trusted, secure);
        }
        if (isatty(STDERR_FILENO))
                (void) dup2(fd[1], STDERR_FILENO);
        (void) dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
}

static void pager_close(void) {
        if (pager_pid <= 0)
                return;
        /* EOF for the pager: it shows the rest and waits for the person reading. */
        (void) fflush(stdout);
        (void) fflush(stderr);
        (void) close(STDOUT_FILENO);
        (void) close(STDERR_FILENO);
        (void) kill(pager_pid, SIGCONT);
        while (waitpid(pager_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        pager_pid = 0;
}

/* ---- output: tables that fit the terminal ------------------------------------- */

enum ellipsize {
        KEEP,           /* never shortened (ids an operator copies) */
        SHORTEN_END,    /* "platform-cann…" */
        SHORTEN_START,  /* "…/policy.d/10-nic.policy:6": the end of a path says most */
};

struct column {
        const char *name;
        enum ellipsize ellipsize;
        unsigned order;         /* shortened in this order (lowest first), down to min */
        size_t min;
        unsigned drop;          /* still too wide: left out in this order (lowest first); 0: never */
};

struct table {
        const struct column *columns;
        size_t n_columns;
        char **cells;           /* n_rows * n_columns */
        size_t n_rows;
        bool oom;
};

/* What a terminal shows: code points, not bytes (everything here is narrow). */
static size_t text_width(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                if (((unsigned char) *s & 0xc0) != 0x80)
                        n++;
        return n;
}

/* The byte offset of the code point after the first n. */
static size_t text_offset(const char *s, size_t n) {
        size_t i = 0;

        for (; s[i]; i++)
                if (((unsigned char) s[i] & 0xc0) != 0x80 && n-- == 0)
                        break;
        return i;
}

static void table_init(struct table *t, const struct column *columns, size_t n_columns) {
        *t = (struct table) { .columns = columns, .n_columns = n_columns };
}

static void table_done(struct table *t) {
        for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->cells);
        t->cells = NULL;
        t->n_rows = 0;
}

/* One row: exactly n_columns strings (NULL prints as "-"). */
static void table_add(struct table *t, ...) {
        char **cells = realloc(t->cells, (t->n_rows + 1) * t->n_columns * sizeof(char *));
        va_list ap;

        if (!cells) {
                t->oom = true;
                return;
        }
        t->cells = cells;
        cells += t->n_rows * t->n_columns;
        va_start(ap, t);
        for (size_t i = 0; i < t->n_columns; i++) {
                const char *s = va_arg(ap, const char *);

                cells[i] = strdup(s && s[0] ? s : "-");
                if (!cells[i])
                        t->oom = true;
        }
        va_end(ap);
        t->n_rows++;
}

/* Natural widths: the widest cell (or header) of each column. */
static size_t natural_widths(const struct table *t, const struct args *a, size_t *widths) {
        size_t total = t->n_columns - 1;

        for (size_t k = 0; k < t->n_columns; k++) {
                widths[k] = a->no_legend ? 1 : text_width(t->columns[k].name);
                for (size_t i = 0; i < t->n_rows; i++) {
                        size_t w = text_width(t->cells[i * t->n_columns + k] ?: "");

                        if (w > widths[k])
                                widths[k] = w;
                }
                total += widths[k];
        }
        return total;
}

/*
 * Fits the table into a->columns, as systemd's tables do and a little more:
 * cells are shortened in each column's order down to its minimum; if that is
 * not enough, the least important columns are left out (width 0) until it
 * fits. --full (or no limit: a pipe) keeps everything.
 */
static void table_widths(const struct table *t, const struct args *a, size_t *widths) {
        size_t total = natural_widths(t, a, widths), *natural;

        if (a->full || a->columns == SIZE_MAX)
                return;
        for (unsigned order = 1; total > a->columns && order <= t->n_columns; order++)
                for (size_t k = 0; k < t->n_columns && total > a->columns; k++) {
                        const struct column *c = &t->columns[k];
                        size_t cut;

                        if (c->ellipsize == KEEP || c->order != order || widths[k] <= c->min)
                                continue;
                        cut = widths[k] - c->min;
                        if (cut > total - a->columns)
                                cut = total - a->columns;
                        widths[k] -= cut;
                        total -= cut;
                }
        if (total <= a->columns)
                return;
        for (unsigned drop = 1; total > a->columns && drop <= t->n_columns; drop++)
                for (size_t k = 0; k < t->n_columns && total > a->columns; k++)
                        if (t->columns[k].drop == drop && widths[k] > 0) {
                                total -= widths[k] + 1;
                                widths[k] = 0;
                        }
        /* What leaving columns out freed goes back to the shortened ones, the last shortened first. */
        natural = calloc(t->n_columns, sizeof(size_t));
        if (!natural)
                return;
        (void) natural_widths(t, a, natural);
        for (unsigned order = t->n_columns; total < a->columns && order >= 1; order--)
                for (size_t k = 0; k < t->n_columns && total < a->columns; k++) {
                        size_t give;

                        if (t->columns[k].order != order || widths[k] == 0 || widths[k] >= natural[k])
                                continue;
                        give = natural[k] - widths[k];
                        if (give > a->columns - total)
                                give = a->columns - total;
                        widths[k] += give;
                        total += give;
                }
        free(natural);
}

/* s shortened to width with an ellipsis, at the end or the start (NULL: it fits). */
static char *shorten(const char *s, size_t width, enum ellipsize e) {
        const char *dots = locale_is_utf8() ? "…" : ".", *tail, *slash;
        size_t w = text_width(s);
        char *out = NULL;

        if (w <= width || width == 0 || e == KEEP)
                return NULL;
        if (e == SHORTEN_END)
                return asprintf(&out, "%.*s%s", (int) text_offset(s, width - 1), s, dots) < 0 ? NULL : out;
        /* A path keeps its last components whole where that leaves enough: "…/10-nic.policy:6". */
        tail = s + text_offset(s, w - (width - 1));
        slash = strchr(tail, '/');
        if (slash && text_width(slash) * 2 >= width)
                tail = slash;
        return asprintf(&out, "%s%s", dots, tail) < 0 ? NULL : out;
}

static void print_cell(const char *s, size_t width, enum ellipsize e, bool last) {
        char *short_s = shorten(s, width, e);
        size_t w;

        if (short_s)
                s = short_s;
        w = text_width(s);
        fputs(s, stdout);
        if (!last)
                printf("%*s", (int) (width > w ? width - w + 1 : 1), "");
        free(short_s);
}

static void print_row(const struct table *t, char *const *cells, const size_t *widths) {
        size_t last = t->n_columns;

        /* The last column shown is not padded. */
        while (last > 0 && widths[last - 1] == 0)
                last--;
        for (size_t k = 0; k < last; k++)
                if (widths[k] > 0)
                        print_cell(cells[k], widths[k], t->columns[k].ellipsize, k + 1 == last);
        putchar('\n');
}

static int table_print(const struct table *t, const struct args *a) {
        size_t *widths;
        char **header;

        if (t->oom)
                return -ENOMEM;
        widths = calloc(t->n_columns, sizeof(size_t));
        header = calloc(t->n_columns, sizeof(char *));
        if (!widths || !header) {
                free(widths);
                free(header);
                return -ENOMEM;
        }
        table_widths(t, a, widths);
        for (size_t k = 0; k < t->n_columns; k++)
                header[k] = (char *) t->columns[k].name;
        if (!a->no_legend)
                print_row(t, header, widths);
        for (size_t i = 0; i < t->n_rows; i++)
                print_row(t, t->cells + i * t->n_columns, widths);
        free(widths);
        free(header);
        return 0;
}

/* ---- failures: one line, a hint, an exit status --------------------------------- */

static int usage_error(const char *format, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *format, ...) {
        va_list ap;

        fputs("coherencyctl: ", stderr);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputs("\nTry 'coherencyctl --help' for more information.\n", stderr);
        return EXIT_USAGE;
}

/* What failed, by the daemon's error name or the connection's errno. */
static int exit_status_for(int r, const char *error_name) {
        if (streq(error_name, "org.varlink.service.MethodNotFound") ||
            streq(error_name, "org.varlink.service.MethodNotImplemented"))
                return EXIT_FAILURE; /* an older daemon: not "not found" in the operator's sense */
        switch (r) {
        case -EPERM:
        case -EACCES:
                return EXIT_DENIED;
        case -ENODEV:
        case -ENOENT:
        case -ENOSYS:
                return EXIT_NOT_FOUND;
        case -EINVAL:
                return EXIT_USAGE;
        case -ECONNRESET:
        case -ECONNREFUSED:
        case -ETIMEDOUT:
        case -ENOTCONN:
                return EXIT_UNREACHABLE;
        default:
                return EXIT_FAILURE;
        }
}

static void hint(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void hint(const char *format, ...) {
        va_list ap;

        fputs("Hint: ", stderr);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static void hint_permission_denied(void) {
        hint("io.coherencyd.Manager (status details, grants, policy, explain, revoke, reload, monitor) is\n"
             "      for root and the members of the group named by AdminGroup= in the [Broker] section\n"
             "      of %s/coherencyd.conf. To let a group in, set AdminGroup=GROUP there\n"
             "      and run 'coherencyctl reload' as root (members need a new login to carry the group);\n"
             "      see coherencyd.conf(5).", COH_SYSCONF_DIR);
}

/* Which parameter the daemon rejected, from InvalidParameter's parameters. */
static void hint_invalid_parameter(const char *parameters) {
        json_object *o = parse_object(parameters);
        const char *p = get_str(o, "parameter", "");

        if (streq(p, "device"))
                hint("DEVICE is a PCI address as sysfs spells it, such as 0000:01:00.0;\n"
                     "      'coherencyctl devices' lists the devices bound to vfio-pci.");
        else if (streq(p, "user") || streq(p, "group"))
                hint("--%s takes a name or a number that the daemon's host knows.", p);
        else if (streq(p, "unit"))
                hint("--unit takes a unit name, such as vmm@7.service.");
        else if (streq(p, "grant"))
                hint("a grant id looks like g-0123456789abcdef; 'coherencyctl grants' lists them.");
        json_object_put(o);
}

static void hint_for(int r, const char *error_name, const char *parameters) {
        if (streq(error_name, "org.varlink.service.InvalidParameter"))
                hint_invalid_parameter(parameters);
        else if (r == -EPERM)
                hint_permission_denied();
        else if (streq(error_name, "io.coherencyd.Broker.NoSuchDevice"))
                hint("'coherencyctl devices' lists the devices bound to vfio-pci; a device must be bound\n"
                     "      to vfio-pci before coherencyd hands it out.");
        else if (streq(error_name, "io.coherencyd.Broker.NoSuchGrant"))
                hint("'coherencyctl grants' lists the grants the daemon holds.");
        else if (streq(error_name, "io.coherencyd.Manager.KillNotEnabled"))
                hint("set RevokeKill=yes in the [Broker] section of %s/coherencyd.conf and\n"
                     "      restart coherencyd: only then does it keep CAP_KILL.", COH_SYSCONF_DIR);
        else if (streq(error_name, "org.varlink.service.InterfaceNotFound"))
                hint("'coherencyctl introspect' without an argument shows every interface.");
        else if (streq(error_name, "org.varlink.service.MethodNotFound"))
                hint("the daemon does not know this call; is it older than coherencyctl %s?", COH_VERSION);
        else if (r == -ECONNRESET || r == -ETIMEDOUT)
                hint("the daemon went away or did not answer; 'systemctl status coherencyd' and\n"
                     "      'journalctl -u coherencyd' say why.");
}

/* The one line an operator sees when the daemon (or the way to it) said no; returns the exit status. */
static int fail(const coherency_client *c, const char *what, int r) {
        const char *message = c ? coherency_client_get_error(c) : "";
        const char *name = c ? coherency_client_get_error_name(c) : "";

        if (!message[0])
                message = strerror(-r);
        fprintf(stderr, "coherencyctl: %s: %s\n", what, message);
        hint_for(r, name, c ? coherency_client_get_error_parameters(c) : NULL);
        return exit_status_for(r, name);
}

static const char *socket_path(const struct args *a) {
        const char *p = a->socket;

        if (!p) {
                p = getenv("COHERENCYD_SOCKET");
                if (!p || !p[0])
                        p = COHERENCY_DEFAULT_SOCKET;
        }
        return p;
}

static int connect_daemon(const struct args *a, coherency_client **ret) {
        const char *path = socket_path(a);
        int r;

        r = coherency_connect(path, ret);
        if (r >= 0)
                return 0;
        fprintf(stderr, "coherencyctl: cannot connect to coherencyd at %s: %s\n", path, strerror(-r));
        if (r == -EACCES || r == -EPERM) {
                hint("the socket's mode keeps you out; coherencyd.socket ships SocketMode=0666\n"
                     "      (the daemon decides who may do what, not the file's mode).");
                return EXIT_DENIED;
        }
        hint("is coherencyd.socket listening? 'systemctl enable --now coherencyd.socket' starts it;\n"
             "      --socket=PATH or $COHERENCYD_SOCKET name another socket.");
        return EXIT_UNREACHABLE;
}

/* ---- calls ------------------------------------------------------------------- */


/* A call whose reply is parsed: 0, or a negative errno (the error stays in c). */
static int call_object(coherency_client *c, const char *method, json_object *parameters, json_object **ret) {
        const char *p = parameters ? json_object_to_json_string_ext(parameters, JSON_C_TO_STRING_PLAIN) : NULL;
        char *json = NULL;
        int r;

        *ret = NULL;
        if (parameters && !p)
                return -ENOMEM;
        r = coherency_call(c, method, p, false, &json);
        if (r < 0)
                return r;
        *ret = parse_object(json);
        free(json);
        return *ret ? 0 : -EPROTO;
}

/* The same, saying what went wrong: 0 or the exit status. */
static int call(coherency_client *c, const char *what, const char *method, json_object *parameters,
                json_object **ret) {
        int r = call_object(c, method, parameters, ret);

        return r < 0 ? fail(r == -EPROTO || r == -ENOMEM ? NULL : c, what, r) : 0;
}

/* {"key": value} without hand-quoting anything an operator typed. */
static json_object *one_string(const char *key, const char *value) {
        json_object *o = json_object_new_object();

        if (o && add_string(o, key, value) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* ---- info ---------------------------------------------------------------------- */

static void print_iommus(json_object *info, const char *label) {
        json_object *array = get_array(info, "iommus");

        if (!array || json_object_array_length(array) == 0) {
                printf("%s none\n", label);
                return;
        }
        for (size_t i = 0; i < json_object_array_length(array); i++) {
                json_object *iommu = json_object_array_get_idx(array, i);

                printf("%s %s (%s): %s\n", i == 0 ? label : "             ", get_str(iommu, "name", "?"),
                       get_str(iommu, "type", "?"),
                       yes_no(iommu, "enforcesCoherency", "can enforce coherency", "cannot enforce coherency"));
        }
}

static void print_limits(json_object *info, const char *label) {
        json_object *limits = get_object(info, "limits");
        int64_t v;

        if (!limits)
                return;
        printf("%s", label);
        if (get_int(limits, "maxGrantsPerConnection", &v))
                printf(" %" PRId64 " grants per connection,", v);
        if (get_int(limits, "maxConnectionsPerUser", &v))
                printf(" %" PRId64 " connections per user,", v);
        if (get_int(limits, "maxConnections", &v))
                printf(" %" PRId64 " connections", v);
        printf("\n");
}

/* Broker.GetInfo and org.varlink.service.GetInfo, one object: the first, with "service" the second. */
static int get_infos(coherency_client *c, const char *what, json_object **ret_info, json_object **ret_service) {
        int r;

        r = call(c, what, "io.coherencyd.Broker.GetInfo", NULL, ret_info);
        if (r != 0)
                return r;
        r = call(c, what, "org.varlink.service.GetInfo", NULL, ret_service);
        if (r != 0) {
                json_object_put(*ret_info);
                *ret_info = NULL;
        }
        return r;
}

static int verb_info(const struct args *a, coherency_client *c, char **argv) {
        json_object *info = NULL, *service = NULL, *array;
        int r;

        r = get_infos(c, "info", &info, &service);
        if (r != 0)
                return r;
        if (a->json) {
                r = add_ref(info, "service", service) < 0 ? fail(NULL, "info", -ENOMEM) : 0;
                if (r == 0)
                        print_json(a, info);
                goto finish;
        }

        printf("     Version: %s\n", get_str(info, "version", "-"));
        printf("     Backend: %s\n", get_str(info, "backend", "-"));
        printf("        Mode: %s (%s)\n", get_str(info, "mode", "-"), get_str(info, "modeRule", "default"));
        if (get_str(info, "access", NULL))
                printf("      Access: %s (%s)\n", get_str(info, "access", "-"), get_str(info, "accessRule", "default"));
        print_iommus(info, "      IOMMUs:");
        print_limits(info, "      Limits:");
        printf("     Service: %s %s (%s)\n", get_str(service, "product", "-"), get_str(service, "version", "-"),
               get_str(service, "vendor", "-"));
        if (get_str(service, "url", "")[0])
                printf("         URL: %s\n", get_str(service, "url", ""));
        array = get_array(service, "interfaces");
        for (size_t i = 0; array && i < json_object_array_length(array); i++)
                printf("%s%s\n", i == 0 ? "  Interfaces: " : "              ",
                       value_to_string(json_object_array_get_idx(array, i)));

finish:
        json_object_put(info);
        json_object_put(service);
        return r;
}

/* ---- status: the default verb --------------------------------------------------- */

struct grant_counts {
        size_t total, active, ending, granted, not_needed, other;
};

static struct grant_counts count_grants(json_object *grants) {
        struct grant_counts n = {};

        for (size_t i = 0; grants && i < json_object_array_length(grants); i++) {
                json_object *g = json_object_array_get_idx(grants, i);
                const char *state = get_str(g, "state", ""), *decision = get_str(g, "decision", "");

                n.total++;
                n.active += streq(state, "active");
                n.ending += streq(state, "ending");
                n.granted += streq(decision, "granted");
                n.not_needed += streq(decision, "not-needed");
        }
        n.other = n.total - n.active - n.ending;
        return n;
}

/* "/etc/coherencyd/policy.d/10-x.policy:6" -> "/etc/coherencyd/policy.d" */
static void origin_dir(const char *origin, char *buf, size_t size) {
        const char *slash = strrchr(origin, '/');

        snprintf(buf, size, "%.*s", slash ? (int) (slash - origin) : 0, origin);
}

/* Where the policy in force came from: its rule files' directories and coherencyd.conf. */
static void print_policy_origin(json_object *policy) {
        json_object *broker = get_object(policy, "broker"), *rules = get_array(policy, "rules");
        size_t n_rules = rules ? json_object_array_length(rules) : 0, n_files = 0;
        char dirs[1024] = "", dir[PATH_MAX];
        const char *last_file = NULL;

        for (size_t i = 0; i < n_rules; i++) {
                const char *file = get_str(json_object_array_get_idx(rules, i), "file", "");

                if (!streq(file, last_file))
                        n_files++;
                last_file = file;
                origin_dir(file, dir, sizeof(dir));
                if (dir[0] && !strstr(dirs, dir) && strlen(dirs) + strlen(dir) + 3 < sizeof(dirs))
                        snprintf(dirs + strlen(dirs), sizeof(dirs) - strlen(dirs), "%s%s", dirs[0] ? ", " : "", dir);
        }
        printf("      Policy: %zu rule%s in %zu file%s%s%s\n", n_rules, n_rules == 1 ? "" : "s", n_files,
               n_files == 1 ? "" : "s", dirs[0] ? " under " : "", dirs);
        if (!broker)
                return;
        printf("              Access=%s (%s)\n", get_str(broker, "access", "?"), get_str(broker, "accessRule", "default"));
        printf("              Mode=%s (%s)\n", get_str(broker, "mode", "?"), get_str(broker, "modeRule", "default"));
}

static void print_grant_counts(json_object *grants) {
        struct grant_counts n = count_grants(grants);

        printf("      Grants: %zu active, %zu ending", n.active, n.ending);
        if (n.other > 0)
                printf(", %zu other", n.other);
        if (n.total > 0)
                printf(" (%zu granted WBINVD, %zu not needing it)", n.granted, n.not_needed);
        printf("\n");
}

static int status_json(const struct args *a, json_object *info, json_object *service, json_object *grants,
                       json_object *policy) {
        json_object *o = json_object_new_object(), *counts = json_object_new_object();
        struct grant_counts n = count_grants(grants);
        int r = o && counts ? 0 : -ENOMEM;

        if (r == 0 && grants)
                r = add_value(counts, "active", json_object_new_int64((int64_t) n.active)) < 0 ||
                    add_value(counts, "ending", json_object_new_int64((int64_t) n.ending)) < 0 ? -ENOMEM : 0;
        if (r == 0)
                r = add_string(o, "socket", socket_path(a)) < 0 || add_ref(o, "info", info) < 0 ||
                    add_ref(o, "service", service) < 0 || add_ref(o, "grants", grants) < 0 ||
                    add_ref(o, "grantsByState", grants ? counts : NULL) < 0 || add_ref(o, "policy", policy) < 0
                    ? -ENOMEM : 0;
        if (r == 0)
                print_json(a, o);
        json_object_put(counts);
        json_object_put(o);
        return r < 0 ? fail(NULL, "status", r) : 0;
}

/* A Manager call status may make: PermissionDenied leaves *ret NULL (and is no failure). */
static int status_call(coherency_client *c, const char *method, const char *member, json_object **ret,
                       bool *denied) {
        json_object *reply = NULL;
        int r = call_object(c, method, NULL, &reply);

        *ret = NULL;
        if (r == -EPERM) {
                *denied = true;
                return 0;
        }
        if (r < 0)
                return fail(r == -EPROTO ? NULL : c, "status", r);
        *ret = json_object_get(member ? get_array(reply, member) ?: get_object(reply, member) : reply);
        json_object_put(reply);
        return 0;
}

static int verb_status(const struct args *a, coherency_client *c, char **argv) {
        json_object *info = NULL, *service = NULL, *grants = NULL, *policy = NULL;
        bool denied = false;
        int r;

        r = get_infos(c, "status", &info, &service);
        if (r == 0)
                r = status_call(c, "io.coherencyd.Manager.ListGrants", "grants", &grants, &denied);
        if (r == 0)
                r = status_call(c, "io.coherencyd.Manager.GetPolicy", "policy", &policy, &denied);
        if (r != 0 || a->json) {
                if (r == 0)
                        r = status_json(a, info, service, grants, policy);
                goto finish;
        }

        printf("      Daemon: %s %s, on %s\n", get_str(service, "product", "coherencyd"),
               get_str(info, "version", "?"), socket_path(a));
        printf("     Backend: %s%s\n", get_str(info, "backend", "?"),
               streq(get_str(info, "backend", ""), "sim") ? " (the simulated platform)" : "");
        print_iommus(info, "      IOMMUs:");
        if (grants)
                print_grant_counts(grants);
        else
                printf("      Grants: (only root and AdminGroup= members see them)\n");
        if (policy)
                print_policy_origin(policy);
        else
                printf("      Policy: (only root and AdminGroup= members see it)\n");
        printf("     For you: Access=%s (%s), Mode=%s (%s)\n", get_str(info, "access", "?"),
               get_str(info, "accessRule", "default"), get_str(info, "mode", "?"), get_str(info, "modeRule", "default"));
        print_limits(info, "      Limits:");
        if (denied && !a->no_legend)
                printf("\nGrants and policy are shown to root and the members of AdminGroup= (coherencyd.conf(5)).\n");

finish:
        json_object_put(info);
        json_object_put(service);
        json_object_put(grants);
        json_object_put(policy);
        return r;
}

/* ---- policy -------------------------------------------------------------------- */

/* A [Broker] value as the file spells it: names for the admin group, yes/no. */
static void broker_value(const char *key, json_object *v, char *buf, size_t size) {
        if (!v)
                snprintf(buf, size, "-");
        else if (json_object_is_type(v, json_type_boolean))
                snprintf(buf, size, "%s", json_object_get_boolean(v) ? "yes" : "no");
        else if (streq(key, "adminGroup") && json_object_is_type(v, json_type_int)) {
                struct group *g = getgrgid((gid_t) json_object_get_int64(v));

                if (g)
                        snprintf(buf, size, "%s (gid %" PRId64 ")", g->gr_name, json_object_get_int64(v));
                else
                        snprintf(buf, size, "%" PRId64, json_object_get_int64(v));
        } else
                snprintf(buf, size, "%s", value_to_string(v));
}

static const struct column setting_columns[] = {
        { "SETTING", KEEP, 0, 0, 0 },
        { "VALUE", SHORTEN_END, 2, 8, 0 },
        { "ORIGIN", SHORTEN_START, 1, 12, 0 },
};

/* The [Broker] settings in force; the origin of each that the daemon names (KEYRule). */
static int print_broker(const struct args *a, json_object *broker) {
        struct table t;
        int r;

        table_init(&t, setting_columns, ELEMENTSOF(setting_columns));
        json_object_object_foreach(broker, key, value) {
                char setting[64], text[256], rule_key[96];
                json_object *origin = NULL;

                if (ends_with(key, "Rule"))
                        continue;
                snprintf(rule_key, sizeof(rule_key), "%sRule", key);
                (void) json_object_object_get_ex(broker, rule_key, &origin);
                key_to_setting(key, setting, sizeof(setting));
                broker_value(key, value, text, sizeof(text));
                table_add(&t, setting, text, origin ? value_to_string(origin) : "-");
        }
        if (!a->no_legend)
                printf("Settings ([Broker] in coherencyd.conf, else the built-in default):\n");
        r = table_print(&t, a);
        table_done(&t);
        return r;
}

/* "Vendor=0x1002 Class=0x03*", or "(every device)" for a rule without [Match] keys. */
static char *format_match(json_object *match) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        bool any = false;

        if (!f)
                return NULL;
        json_object_object_foreach(match, key, words) {
                fprintf(f, "%s%s=", any ? " " : "", key);
                for (size_t i = 0; json_object_is_type(words, json_type_array) && i < json_object_array_length(words); i++)
                        fprintf(f, "%s%s", i > 0 ? " " : "", value_to_string(json_object_array_get_idx(words, i)));
                any = true;
        }
        if (!any)
                fputs("(every device)", f);
        if (fclose(f) < 0) {
                free(text);
                return NULL;
        }
        return text;
}

static const struct column rule_columns[] = {
        { "RULE", SHORTEN_START, 1, 16, 0 },
        { "MATCH", SHORTEN_END, 2, 12, 0 },
        { "SETTING", KEEP, 0, 0, 0 },
};

/* One row per setting a rule makes, named by the file:line decisions cite. */
static int print_rules(const struct args *a, json_object *rules) {
        size_t n = rules ? json_object_array_length(rules) : 0;
        struct table t;
        int r;

        table_init(&t, rule_columns, ELEMENTSOF(rule_columns));
        for (size_t i = 0; i < n; i++) {
                json_object *rule = json_object_array_get_idx(rules, i);
                char *match = format_match(get_object(rule, "match"));
                size_t rows = t.n_rows;

                if (!match)
                        t.oom = true;
                json_object_object_foreach(rule, key, value) {
                        char setting[256], name[64], rule_key[96];

                        if (streq(key, "file") || streq(key, "match") || ends_with(key, "Rule"))
                                continue;
                        snprintf(rule_key, sizeof(rule_key), "%sRule", key);
                        key_to_setting(key, name, sizeof(name));
                        snprintf(setting, sizeof(setting), "%s=%s", name, value_to_string(value));
                        table_add(&t, get_str(rule, rule_key, get_str(rule, "file", "?")), match, setting);
                }
                if (t.n_rows == rows) /* a rule that sets nothing */
                        table_add(&t, get_str(rule, "file", "?"), match, "(nothing)");
                free(match);
        }
        if (!a->no_legend)
                printf("\nRules (for each setting, the first rule that matches wins):\n");
        r = n > 0 ? table_print(&t, a) : 0;
        if (n == 0 && !a->no_legend)
                printf("(none: every device gets the settings above)\n");
        table_done(&t);
        return r;
}

static int verb_policy(const struct args *a, coherency_client *c, char **argv) {
        json_object *reply = NULL, *policy;
        int r;

        r = call(c, "policy", "io.coherencyd.Manager.GetPolicy", NULL, &reply);
        if (r != 0)
                return r;
        if (a->json) {
                print_json(a, reply);
                goto finish;
        }
        policy = get_object(reply, "policy");
        if (!policy) {
                r = fail(NULL, "policy", -EPROTO);
                goto finish;
        }
        r = print_broker(a, get_object(policy, "broker"));
        if (r == 0)
                r = print_rules(a, get_array(policy, "rules"));
        if (r < 0)
                r = fail(NULL, "policy", r);

finish:
        json_object_put(reply);
        return r;
}

/* ---- grants -------------------------------------------------------------------- */

enum {
        COL_GRANT, COL_DEVICE, COL_FILE, COL_DECISION, COL_REASON, COL_WBINVD, COL_VM_WBINVD,
        COL_STATE, COL_HOLDERS, COL_PID, COL_UID, COL_UNIT, COL_SINCE,
        _COL_MAX,
};

static const struct column grant_columns[_COL_MAX] = {
        [COL_GRANT] = { "GRANT", KEEP, 0, 0, 0 },
        [COL_DEVICE] = { "DEVICE", KEEP, 0, 0, 0 },
        [COL_FILE] = { "FILE", SHORTEN_END, 5, 8, 2 },
        [COL_DECISION] = { "DECISION", KEEP, 0, 0, 0 },
        [COL_REASON] = { "REASON", SHORTEN_END, 3, 10, 0 },
        [COL_WBINVD] = { "WBINVD", KEEP, 0, 0, 5 },
        [COL_VM_WBINVD] = { "VM-WBINVD", KEEP, 0, 0, 1 },
        [COL_STATE] = { "STATE", SHORTEN_END, 4, 8, 0 },
        [COL_HOLDERS] = { "HOLDERS", SHORTEN_END, 2, 8, 0 },
        [COL_PID] = { "PID", KEEP, 0, 0, 7 },
        [COL_UID] = { "UID", KEEP, 0, 0, 3 },
        [COL_UNIT] = { "UNIT", SHORTEN_END, 1, 8, 6 },
        [COL_SINCE] = { "SINCE", SHORTEN_END, 6, 10, 4 },
};

/* "ending (revoke)": the state, and for an ending grant why it ended. */
static void format_state(json_object *g, char *buf, size_t size) {
        const char *state = get_str(g, "state", "-"), *end = get_str(g, "end", NULL);

        if (end && !streq(state, "active"))
                snprintf(buf, size, "%s (%s)", state, end);
        else
                snprintf(buf, size, "%s", state);
}

/* "1234/qemu-system-x86,1240/gdb": the processes that still hold an ending grant's group. */
static void format_holders(json_object *g, char *buf, size_t size) {
        json_object *holders = get_array(g, "holders");
        size_t used = 0;

        snprintf(buf, size, "-");
        for (size_t i = 0; holders && i < json_object_array_length(holders) && used < size; i++) {
                json_object *h = json_object_array_get_idx(holders, i);
                char pid[24] = "?";
                int64_t v;
                int n;

                if (get_int(h, "pid", &v))
                        snprintf(pid, sizeof(pid), "%" PRId64, v);
                n = snprintf(buf + used, size - used, "%s%s%s%s", i > 0 ? "," : "", pid,
                             get_str(h, "comm", NULL) ? "/" : "", get_str(h, "comm", ""));
                used += n > 0 ? (size_t) n : 0;
        }
}

static void add_grant_row(struct table *t, json_object *g) {
        char pid[24] = "-", uid[24] = "-", since[64], state[96], holders[512];
        int64_t v;

        if (get_int(g, "peerPid", &v))
                snprintf(pid, sizeof(pid), "%" PRId64, v);
        if (get_int(g, "peerUid", &v))
                snprintf(uid, sizeof(uid), "%" PRId64, v);
        format_usec(since, sizeof(since), get_int(g, "since", &v) ? v : 0);
        format_state(g, state, sizeof(state));
        format_holders(g, holders, sizeof(holders));
        table_add(t, get_str(g, "grant", "-"), get_str(g, "device", "-"), get_str(g, "file", "-"),
                  get_str(g, "decision", "-"), get_str(g, "reason", "-"), get_str(g, "wbinvd", "-"),
                  get_str(g, "vmWbinvd", "-"), state, holders, pid, uid, get_str(g, "peerUnit", "-"), since);
}

static int verb_grants(const struct args *a, coherency_client *c, char **argv) {
        json_object *reply = NULL, *grants;
        struct grant_counts n;
        struct table t;
        int r;

        r = call(c, "grants", "io.coherencyd.Manager.ListGrants", NULL, &reply);
        if (r != 0)
                return r;
        if (a->json) {
                print_json(a, reply);
                json_object_put(reply);
                return 0;
        }
        grants = get_array(reply, "grants");
        if (!grants) {
                json_object_put(reply);
                return fail(NULL, "grants", -EPROTO);
        }
        n = count_grants(grants);
        if (n.total == 0) {
                if (!a->no_legend)
                        printf("No grants.\n");
                json_object_put(reply);
                return 0;
        }

        table_init(&t, grant_columns, _COL_MAX);
        for (size_t i = 0; i < n.total; i++)
                add_grant_row(&t, json_object_array_get_idx(grants, i));
        r = table_print(&t, a);
        table_done(&t);
        json_object_put(reply);
        if (r < 0)
                return fail(NULL, "grants", r);
        if (!a->no_legend) {
                printf("\n%zu grant%s listed", n.total, n.total == 1 ? "" : "s");
                if (n.ending > 0)
                        printf("; %zu ending, %s group still held (HOLDERS)", n.ending, n.ending == 1 ? "its" : "their");
                printf(".\n");
        }
        return 0;
}

/* ---- revoke ---------------------------------------------------------------------- */

static int verb_revoke(const struct args *a, coherency_client *c, char **argv) {
        json_object *p = one_string("grant", argv[0]), *reply = NULL;
        char what[128];
        int r;

        snprintf(what, sizeof(what), "revoke %s", argv[0]);
        if (!p || (a->kill && add_bool(p, "kill", true) < 0)) {
                json_object_put(p);
                return fail(NULL, what, -ENOMEM);
        }
        r = call(c, what, "io.coherencyd.Manager.RevokeGrant", p, &reply);
        json_object_put(p);
        if (r == 0 && a->json)
                print_json(a, reply);
        json_object_put(reply);
        return r;
}

/* ---- probe, explain ------------------------------------------------------------- */

/* One device of the facts: what it is and what the policy says about it. */
static void print_device(json_object *d, const char *indent) {
        char group[24] = "-";
        int64_t v;

        if (get_int(d, "iommuGroup", &v) && v >= 0)
                snprintf(group, sizeof(group), "%" PRId64, v);
        printf("%s%s  %s:%s class %s, driver %s, IOMMU %s (%s), IOMMU group %s\n", indent,
               get_str(d, "slot", "?"), get_str(d, "vendor", "?"), get_str(d, "device", "?"),
               get_str(d, "class", "?"), get_str(d, "driver", "none"), get_str(d, "iommu", "none"),
               yes_no(d, "iommuEnforces", "can enforce coherency", "cannot enforce coherency"), group);
        if (get_str(d, "access", NULL))
                printf("%s    access %s (%s)\n", indent, get_str(d, "access", "?"), get_str(d, "accessRule", "default"));
        if (get_str(d, "noSnoop", NULL))
                printf("%s    No-Snoop %s (%s)\n", indent, get_str(d, "noSnoop", "?"),
                       get_str(d, "noSnoopRule", "default"));
        if (get_str(d, "mode", NULL))
                printf("%s    mode %s (%s)\n", indent, get_str(d, "mode", "?"), get_str(d, "modeRule", "default"));
        printf("%s    IOAS %s\n", indent, yes_no(d, "ioasCoherent", "coherent", "not coherent"));
        if (get_str(d, "decision", NULL))
                printf("%s    -> %s (%s)\n", indent, get_str(d, "decision", "?"), get_str(d, "reason", "?"));
}

/* Probe's and Explain's reply, for a person. */
static void print_decision(json_object *reply) {
        json_object *facts, *devices;
        const char *kvm_attach = get_str(reply, "kvmAttach", NULL);

        printf("    Decision: %s\n", get_str(reply, "decision", "?"));
        printf("      Reason: %s\n", get_str(reply, "reason", "?"));
        printf("        Rule: %s\n", get_str(reply, "rule", "default"));
        printf("        Mode: %s\n", get_str(reply, "mode", "?"));
        printf("      WBINVD: %s%s\n", get_str(reply, "wbinvd", "?"),
               streq(get_str(reply, "wbinvd", ""), "allowed") ?
               " (adding the file turns WBINVD emulation on for the VM)" : "");
        if (kvm_attach)
                printf("   KVMAttach: %s%s\n", kvm_attach,
                       streq(kvm_attach, "skip") ? " (the VMM gets the file but must not add it to its kvm-vfio device)" :
                       streq(kvm_attach, "add") ? " (the VMM adds the file to its kvm-vfio device)" : "");
        else
                printf("   KVMAttach: - (no file is handed over)\n");

        facts = get_object(reply, "facts");
        if (!facts)
                return;
        devices = get_array(facts, "devices");
        if (!devices || json_object_array_length(devices) == 0) {
                printf("        File: %s\n", get_str(facts, "file", "-"));
                printf("      Device:\n");
                print_device(facts, "        ");
                return;
        }
        printf("        File: %s, carries %zu device%s; %s decides\n", get_str(facts, "file", "-"),
               json_object_array_length(devices), json_object_array_length(devices) == 1 ? "" : "s",
               get_str(facts, "slot", "?"));
        printf("     Devices:\n");
        for (size_t i = 0; i < json_object_array_length(devices); i++)
                print_device(json_object_array_get_idx(devices, i), "        ");
}

/* Probe's or Explain's reply, as JSON or for a person (after header, when given). */
static int call_and_print_decision(const struct args *a, coherency_client *c, const char *what, const char *method,
                                   json_object *parameters, const char *header) {
        json_object *reply = NULL;
        int r;

        r = call(c, what, method, parameters, &reply);
        if (r != 0)
                return r;
        if (a->json)
                print_json(a, reply);
        else {
                if (header)
                        fputs(header, stdout);
                print_decision(reply);
        }
        json_object_put(reply);
        return 0;
}

/* Explain's parameters: the device and the VMM as the operator named it. */
static json_object *explain_parameters(const struct args *a, const char *device) {
        json_object *p = one_string("device", device);

        if (p && (add_string(p, "user", a->user) < 0 || (a->group && add_string(p, "group", a->group) < 0) ||
                  (a->unit && add_string(p, "unit", a->unit) < 0))) {
                json_object_put(p);
                return NULL;
        }
        return p;
}

static int verb_probe(const struct args *a, coherency_client *c, char **argv) {
        json_object *p = one_string("device", argv[0]);
        char what[128];
        int r;

        snprintf(what, sizeof(what), "probe %s", argv[0]);
        if (!p || (a->ioas_coherent >= 0 && add_bool(p, "ioasCoherent", a->ioas_coherent) < 0)) {
                json_object_put(p);
                return fail(NULL, what, -ENOMEM);
        }
        r = call_and_print_decision(a, c, what, "io.coherencyd.Broker.Probe", p, NULL);
        json_object_put(p);
        return r;
}

static int verb_explain(const struct args *a, coherency_client *c, char **argv) {
        json_object *p = explain_parameters(a, argv[0]);
        char what[128], header[512];
        int r;

        snprintf(what, sizeof(what), "explain %s", argv[0]);
        if (!p)
                return fail(NULL, what, -ENOMEM);
        snprintf(header, sizeof(header), "A VMM running as user %s%s%s%s%s, asking for %s in the kernel's default IOAS:\n",
                 a->user, a->group ? ", group " : "", a->group ?: "", a->unit ? ", in unit " : "", a->unit ?: "",
                 argv[0]);
        r = call_and_print_decision(a, c, what, "io.coherencyd.Manager.Explain", p, header);
        json_object_put(p);
        return r;
}

/* ---- devices: every device bound to vfio-pci, and what the policy gives ------- */

struct vfio_device {
        char slot[256];
        char vendor[16], device[16], class[16];
        char iommu[64];
        long group;             /* -1: none */
        json_object *decision;  /* Probe's or Explain's reply for its IOMMU group */
        char error[256];        /* or why there is none */
};

/* The last component of the link at DIR/NAME/LINK ("" when there is none). */
static void link_name(const char *dir, const char *name, const char *link, char *buf, size_t size) {
        char path[PATH_MAX], target[PATH_MAX];
        ssize_t n;

        buf[0] = '\0';
        snprintf(path, sizeof(path), "%s/%s/%s", dir, name, link);
        n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0)
                return;
        target[n] = '\0';
        copy_string(buf, size, strrchr(target, '/') ? strrchr(target, '/') + 1 : target);
}

/* A sysfs attribute's first line, without "0x" ("" when unreadable). */
static void read_attribute(const char *dir, const char *name, const char *attribute, char *buf, size_t size) {
        char path[PATH_MAX], line[64] = "";
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s/%s", dir, name, attribute);
        f = fopen(path, "re");
        if (f) {
                if (!fgets(line, sizeof(line), f))
                        line[0] = '\0';
                fclose(f);
        }
        line[strcspn(line, "\n")] = '\0';
        copy_string(buf, size, strncmp(line, "0x", 2) == 0 ? line + 2 : line);
}

static int dirent_compare(const struct dirent **x, const struct dirent **y) {
        return strcmp((*x)->d_name, (*y)->d_name);
}

/* The devices under ROOT/bus/pci/devices whose driver is vfio-pci, in slot order. */
static int scan_vfio_devices(const char *root, struct vfio_device **ret, size_t *ret_n) {
        char dir[PATH_MAX], name[64], group[32];
        struct dirent **entries = NULL;
        struct vfio_device *devices;
        size_t n = 0;
        int k;

        snprintf(dir, sizeof(dir), "%s/bus/pci/devices", root);
        k = scandir(dir, &entries, NULL, dirent_compare);
        if (k < 0)
                return -errno;
        devices = calloc((size_t) k + 1, sizeof(*devices));
        for (int i = 0; i < k; i++) {
                const char *slot = entries[i]->d_name;
                struct vfio_device *d = devices + n;

                link_name(dir, slot, "driver", name, sizeof(name));
                if (devices && slot[0] != '.' && streq(name, "vfio-pci")) {
                        copy_string(d->slot, sizeof(d->slot), slot);
                        read_attribute(dir, slot, "vendor", d->vendor, sizeof(d->vendor));
                        read_attribute(dir, slot, "device", d->device, sizeof(d->device));
                        read_attribute(dir, slot, "class", d->class, sizeof(d->class));
                        link_name(dir, slot, "iommu", d->iommu, sizeof(d->iommu));
                        link_name(dir, slot, "iommu_group", group, sizeof(group));
                        d->group = group[0] ? strtol(group, NULL, 10) : -1;
                        n++;
                }
                free(entries[i]);
        }
        free(entries);
        if (!devices)
                return -ENOMEM;
        *ret = devices;
        *ret_n = n;
        return 0;
}

/*
 * What the caller (or with --user, that VMM) would get for each device: one
 * Probe (or Explain) per IOMMU group, since a VFIO group is decided whole.
 */
static int decide_devices(const struct args *a, coherency_client *c, struct vfio_device *d, size_t n) {
        for (size_t i = 0; i < n; i++) {
                json_object *p;
                int r;

                for (size_t k = 0; k < i && d[i].group >= 0; k++)
                        if (d[k].group == d[i].group && d[k].decision) {
                                d[i].decision = json_object_get(d[k].decision);
                                break;
                        }
                if (d[i].decision)
                        continue;
                p = a->user ? explain_parameters(a, d[i].slot) : one_string("device", d[i].slot);
                if (!p)
                        return fail(NULL, "devices", -ENOMEM);
                r = call_object(c, a->user ? "io.coherencyd.Manager.Explain" : "io.coherencyd.Broker.Probe", p,
                                &d[i].decision);
                json_object_put(p);
                /* Permission and the connection fail the command; a device the daemon does not
                 * know (another sysfs, unbound meanwhile) is said in its row. */
                if (r == -EPERM || r == -ECONNRESET || r == -ETIMEDOUT || r == -ENOTCONN || r == -ENOMEM)
                        return fail(c, "devices", r);
                if (r < 0)
                        snprintf(d[i].error, sizeof(d[i].error), "%s",
                                 coherency_client_get_error_name(c)[0] ? coherency_client_get_error(c) : strerror(-r));
        }
        return 0;
}

/* Whether IOMMU name can enforce coherency, as GetInfo lists the IOMMUs: "yes", "no" or "-". */
static const char *iommu_enforces(json_object *info, const char *name) {
        json_object *iommus = get_array(info, "iommus");

        for (size_t i = 0; iommus && i < json_object_array_length(iommus); i++) {
                json_object *iommu = json_object_array_get_idx(iommus, i);

                if (streq(get_str(iommu, "name", NULL), name))
                        return yes_no(iommu, "enforcesCoherency", "yes", "no");
        }
        return "-";
}

static int devices_json(const struct args *a, json_object *info, const char *root, struct vfio_device *d, size_t n) {
        json_object *o = json_object_new_object(), *array = json_object_new_array();
        int r = o && array ? 0 : -ENOMEM;

        for (size_t i = 0; r == 0 && i < n; i++) {
                json_object *e = json_object_new_object();
                const char *enforces = iommu_enforces(info, d[i].iommu);

                r = !e || add_string(e, "slot", d[i].slot) < 0 || add_string(e, "vendor", d[i].vendor) < 0 ||
                    add_string(e, "device", d[i].device) < 0 || add_string(e, "class", d[i].class) < 0 ||
                    add_value(e, "iommuGroup", json_object_new_int64(d[i].group)) < 0 ||
                    (d[i].iommu[0] ? add_string(e, "iommu", d[i].iommu) : add_ref(e, "iommu", NULL)) < 0 ||
                    (streq(enforces, "-") ? add_ref(e, "iommuEnforces", NULL)
                                          : add_bool(e, "iommuEnforces", streq(enforces, "yes"))) < 0 ||
                    add_ref(e, "policy", d[i].decision) < 0 ||
                    (d[i].error[0] && add_string(e, "error", d[i].error) < 0) ||
                    json_object_array_add(array, e) < 0 ? -ENOMEM : 0;
                if (r < 0)
                        json_object_put(e);
        }
        if (r == 0)
                r = add_string(o, "sysfs", root) < 0 || add_ref(o, "devices", array) < 0 ? -ENOMEM : 0;
        if (r == 0)
                print_json(a, o);
        json_object_put(array);
        json_object_put(o);
        return r < 0 ? fail(NULL, "devices", r) : 0;
}

static const struct column device_columns[] = {
        { "DEVICE", KEEP, 0, 0, 0 },
        { "ID", KEEP, 0, 0, 4 },
        { "CLASS", SHORTEN_END, 4, 6, 1 },
        { "GROUP", KEEP, 0, 0, 0 },
        { "IOMMU", SHORTEN_END, 5, 6, 3 },
        { "ENFORCES", KEEP, 0, 0, 0 },
        { "DECISION", KEEP, 0, 0, 0 },
        { "REASON", SHORTEN_END, 2, 10, 0 },
        { "WBINVD", KEEP, 0, 0, 5 },
        { "ATTACH", KEEP, 0, 0, 2 },
        { "RULE", SHORTEN_START, 1, 16, 6 },
};

static void devices_footer(const struct args *a, const char *root, struct vfio_device *d, size_t n) {
        size_t granted = 0, not_needed = 0, refused = 0;

        for (size_t i = 0; i < n; i++) {
                const char *decision = get_str(d[i].decision, "decision", "");

                granted += streq(decision, "granted");
                not_needed += streq(decision, "not-needed");
                refused += streq(decision, "refused");
        }
        printf("\n%zu device%s bound to vfio-pci in %s.\n", n, n == 1 ? "" : "s", root);
        printf("For %s%s: %zu granted, %zu not-needed, %zu refused.\n", a->user ? "user " : "you",
               a->user ? a->user : "", granted, not_needed, refused);
}

static int print_devices(const struct args *a, json_object *info, const char *root, struct vfio_device *d, size_t n) {
        struct table t;
        int r;

        if (n == 0) {
                if (!a->no_legend)
                        printf("No devices bound to vfio-pci in %s.\n", root);
                return 0;
        }
        table_init(&t, device_columns, ELEMENTSOF(device_columns));
        for (size_t i = 0; i < n; i++) {
                char id[40], group[24] = "-";
                json_object *dec = d[i].decision;

                snprintf(id, sizeof(id), "%s:%s", d[i].vendor, d[i].device);
                if (d[i].group >= 0)
                        snprintf(group, sizeof(group), "%ld", d[i].group);
                table_add(&t, d[i].slot, id, d[i].class, group, d[i].iommu, iommu_enforces(info, d[i].iommu),
                          get_str(dec, "decision", "-"), dec ? get_str(dec, "reason", "-") : d[i].error,
                          get_str(dec, "wbinvd", "-"), get_str(dec, "kvmAttach", "-"), get_str(dec, "rule", "-"));
        }
        r = table_print(&t, a);
        table_done(&t);
        if (r < 0)
                return fail(NULL, "devices", r);
        if (!a->no_legend)
                devices_footer(a, root, d, n);
        return 0;
}

static int verb_devices(const struct args *a, coherency_client *c, char **argv) {
        const char *root = a->sysfs ? a->sysfs : "/sys";
        json_object *info = NULL;
        struct vfio_device *d = NULL;
        size_t n = 0;
        int r;

        r = scan_vfio_devices(root, &d, &n);
        if (r < 0) {
                fprintf(stderr, "coherencyctl: devices: cannot read %s/bus/pci/devices: %s\n", root, strerror(-r));
                return r == -ENOENT ? EXIT_NOT_FOUND : EXIT_FAILURE;
        }
        r = call(c, "devices", "io.coherencyd.Broker.GetInfo", NULL, &info);
        if (r == 0)
                r = decide_devices(a, c, d, n);
        if (r == 0)
                r = a->json ? devices_json(a, info, root, d, n) : print_devices(a, info, root, d, n);

        for (size_t i = 0; i < n; i++)
                json_object_put(d[i].decision);
        free(d);
        json_object_put(info);
        return r;
}

/* ---- reload, check-policy -------------------------------------------------------- */

static int verb_reload(const struct args *a, coherency_client *c, char **argv) {
        static const char invalid_policy[] = "io.coherencyd.Manager.InvalidPolicy";
        json_object *reply = NULL;
        int64_t rules;
        int r;

        r = call_object(c, "io.coherencyd.Manager.ReloadPolicy", NULL, &reply);
        if (r < 0) {
                const char *message = coherency_client_get_error(c);
                size_t l = strlen(invalid_policy);

                /* Compiler style, so editors and scripts can jump to the line. */
                if (streq(coherency_client_get_error_name(c), invalid_policy) &&
                    strncmp(message, invalid_policy, l) == 0 && strncmp(message + l, ": ", 2) == 0) {
                        fprintf(stderr, "%s\n", message + l + 2);
                        return EXIT_FAILURE;
                }
                return fail(r == -EPROTO ? NULL : c, "reload", r);
        }

        if (a->json)
                print_json(a, reply);
        else if (get_int(reply, "rules", &rules))
                printf("Policy reloaded: %" PRId64 " rule%s.\n", rules, rules == 1 ? "" : "s");
        else
                printf("Policy reloaded.\n");
        json_object_put(reply);
        return 0;
}

/* Where coherencyd is: next to us (installed side by side, or a build tree), else in sbindir. */
static int find_daemon(char *buf, size_t size) {
        char self[PATH_MAX], *slash;
        ssize_t n;

        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = '\0';
                slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        snprintf(buf, size, "%s/coherencyd", self);
                        if (access(buf, X_OK) == 0)
                                return 0;
                        snprintf(buf, size, "%s/../daemon/coherencyd", self);
                        if (access(buf, X_OK) == 0)
                                return 0;
                }
        }

        snprintf(buf, size, "%s/coherencyd", COH_SBINDIR);
        if (access(buf, X_OK) == 0)
                return 0;
        return -ENOENT;
}

/* Reads all of fd into a string (NULL on ENOMEM). */
static char *read_all(int fd) {
        char *text = NULL, buf[4096];
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        ssize_t n;

        if (!f)
                return NULL;
        while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
                if (n > 0)
                        fwrite(buf, 1, (size_t) n, f);
        if (fclose(f) < 0) {
                free(text);
                return NULL;
        }
        return text;
}

/* Lines of text as a JSON array of strings. */
static json_object *lines_to_json(const char *text) {
        json_object *array = json_object_new_array();

        for (const char *p = text; array && p && *p;) {
                size_t l = strcspn(p, "\n");

                if (json_object_array_add(array, json_object_new_string_len(p, (int) l)) < 0) {
                        json_object_put(array);
                        return NULL;
                }
                p += l + (p[l] == '\n');
        }
        return array;
}

/* --json: the daemon's verdict as one document {"valid", "status", "output", "errors"}. */
static int check_policy_json(const struct args *a, char *const argv[]) {
        int out[2], err[2], status = 0, r;
        char *output = NULL, *errors = NULL;
        json_object *o;
        pid_t pid;

        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
                return fail(NULL, "check-policy", -errno);
        pid = fork();
        if (pid < 0)
                return fail(NULL, "check-policy", -errno);
        if (pid == 0) {
                if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(err[1], STDERR_FILENO) < 0)
                        _exit(127);
                execv(argv[0], argv);
                _exit(127);
        }
        close(out[1]);
        close(err[1]);
        /* The daemon's output is a few lines: the pipes' buffers hold them while we read one. */
        output = read_all(out[0]);
        errors = read_all(err[0]);
        close(out[0]);
        close(err[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        r = WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_FAILURE;

        o = json_object_new_object();
        if (!o || add_bool(o, "valid", r == 0) < 0 || add_value(o, "status", json_object_new_int(r)) < 0 ||
            add_value(o, "output", lines_to_json(output)) < 0 || add_value(o, "errors", lines_to_json(errors)) < 0)
                r = fail(NULL, "check-policy", -ENOMEM);
        else
                print_json(a, o);
        json_object_put(o);
        free(output);
        free(errors);
        return r;
}

static int verb_check_policy(const struct args *a) {
        char daemon[PATH_MAX + 32];
        char *argv[5];
        size_t n = 0;

        if (find_daemon(daemon, sizeof(daemon)) < 0) {
                fprintf(stderr, "coherencyctl: check-policy: cannot find coherencyd next to coherencyctl or in %s\n",
                        COH_SBINDIR);
                return EXIT_NOT_FOUND;
        }

        argv[n++] = daemon;
        argv[n++] = (char *) "--check-policy";
        if (a->config) {
                argv[n++] = (char *) "--config";
                argv[n++] = (char *) a->config;
        }
        argv[n] = NULL;

        if (a->json)
                return check_policy_json(a, argv);
        /* The daemon's verdict and exit status are the answer; nothing to add after it. */
        (void) fflush(stdout);
        execv(daemon, argv);
        fprintf(stderr, "coherencyctl: check-policy: cannot run %s: %m\n", daemon);
        return EXIT_FAILURE;
}

/* ---- monitor ---------------------------------------------------------------------- */

static void print_event(json_object *event) {
        /* Fixed order for what we know, then whatever a newer daemon adds. */
        static const char *const known[] = {
                "event", "grant", "device", "decision", "reason", "mode", "rule", "wbinvd",
                "kvmAttach", "state", "end", "vmWbinvd", "grants", "peerPid", "peerUid", NULL,
        };
        char now[64];
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        format_usec(now, sizeof(now), (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
        printf("%s %s", now, get_str(event, "event", "?"));

        for (size_t i = 1; known[i]; i++) {
                json_object *v;

                if (json_object_object_get_ex(event, known[i], &v) && v)
                        printf(" %s=%s", known[i], value_to_string(v));
        }
        json_object_object_foreach(event, key, value) {
                size_t i;

                for (i = 0; known[i]; i++)
                        if (streq(known[i], key))
                                break;
                if (!known[i] && value)
                        printf(" %s=%s", key, value_to_string(value));
        }
        printf("\n");
}

/* One line (or with --json one document) per event, until the daemon ends the stream. */
static int verb_monitor(const struct args *a, coherency_client *c, char **argv) {
        char *json = NULL;
        int r;

        if (!a->json && isatty(STDOUT_FILENO))
                fprintf(stderr, "Waiting for decisions and grant ends; press Ctrl+C to stop.\n");

        (void) coherency_client_set_timeout(c, COHERENCY_TIMEOUT_INFINITY);
        r = coherency_call(c, "io.coherencyd.Manager.Monitor", NULL, true, &json);
        for (;;) {
                json_object *event;

                if (r < 0)
                        return fail(c, "monitor", r);
                if (r == 0 && !json)
                        /* The daemon ended the stream (coherency_call_next() said so). */
                        return 0;

                event = parse_object(json);
                free(json);
                json = NULL;
                if (!event)
                        return fail(NULL, "monitor", -EPROTO);
                if (a->json)
                        print_json(a, event);
                else
                        print_event(event);
                json_object_put(event);
                /* A pipe to grep or a file must see each event as it happens. */
                (void) fflush(stdout);

                r = coherency_call_next(c, &json);
                if (r == 1)
                        r = 0;
        }
}

/* ---- introspect -------------------------------------------------------------------- */

static int get_description(coherency_client *c, const char *interface, json_object **ret) {
        json_object *p = one_string("interface", interface);
        char what[256];
        int r;

        snprintf(what, sizeof(what), "introspect %s", interface);
        if (!p)
                return fail(NULL, what, -ENOMEM);
        r = call(c, what, "org.varlink.service.GetInterfaceDescription", p, ret);
        json_object_put(p);
        if (r == 0 && !get_str(*ret, "description", NULL)) {
                json_object_put(*ret);
                *ret = NULL;
                r = fail(NULL, what, -EPROTO);
        }
        return r;
}

static void print_description(json_object *reply) {
        const char *text = get_str(reply, "description", "");

        fputs(text, stdout);
        if (!text[0] || text[strlen(text) - 1] != '\n')
                putchar('\n');
}

/* Every interface: {"interfaces": [{"interface": NAME, "description": TEXT}, ...]} with --json. */
static int introspect_all(const struct args *a, coherency_client *c) {
        json_object *info = NULL, *interfaces, *all = json_object_new_array(), *o = NULL;
        int r;

        r = call(c, "introspect", "org.varlink.service.GetInfo", NULL, &info);
        interfaces = r == 0 ? get_array(info, "interfaces") : NULL;
        if (r == 0 && (!interfaces || !all))
                r = fail(NULL, "introspect", !all ? -ENOMEM : -EPROTO);

        for (size_t i = 0; r == 0 && i < json_object_array_length(interfaces); i++) {
                const char *name = value_to_string(json_object_array_get_idx(interfaces, i));
                json_object *reply = NULL, *e;

                r = get_description(c, name, &reply);
                if (r != 0)
                        break;
                if (!a->json) {
                        if (i > 0)
                                putchar('\n');
                        print_description(reply);
                }
                e = json_object_new_object();
                if (!e || add_string(e, "interface", name) < 0 || add_ref(e, "description",
                                json_object_object_get(reply, "description")) < 0 || json_object_array_add(all, e) < 0) {
                        json_object_put(e);
                        r = fail(NULL, "introspect", -ENOMEM);
                }
                json_object_put(reply);
        }
        if (r == 0 && a->json) {
                o = json_object_new_object();
                if (!o || add_ref(o, "interfaces", all) < 0)
                        r = fail(NULL, "introspect", -ENOMEM);
                else
                        print_json(a, o);
        }
        json_object_put(o);
        json_object_put(all);
        json_object_put(info);
        return r;
}

static int verb_introspect(const struct args *a, coherency_client *c, char **argv) {
        json_object *reply = NULL;
        int r;

        if (!argv[0])
                return introspect_all(a, c);
        r = get_description(c, argv[0], &reply);
        if (r != 0)
                return r;
        if (a->json)
                print_json(a, reply);
        else
                print_description(reply);
        json_object_put(reply);
        return 0;
}

/* ---- command line ---------------------------------------------------------------- */

static void help(void) {
        printf("coherencyctl [OPTIONS...] [COMMAND] ...\n"
               "\n"
               "Query and control coherencyd, the custodian of VFIO groups: it decides which\n"
               "VMMs get which PCI devices' VFIO files, and with them real WBINVD for their VMs.\n"
               "\n"
               "Commands:\n"
               "  status                Show the daemon, its IOMMUs, the grants by state and where\n"
               "                        the policy comes from (the default command)\n"
               "  info                  Show the daemon, its IOMMUs and what applies to you\n"
               "  devices               List the devices bound to vfio-pci and what you would get\n"
               "  policy                Show the policy in force, each setting with its origin\n"
               "  probe DEVICE          What you would get for DEVICE (a PCI address), no side effects\n"
               "  explain DEVICE        What a VMM running as --user would get for DEVICE, and why\n"
               "  grants                List every grant the daemon holds, with its state and holders\n"
               "  revoke GRANT          End a grant; with --kill, kill a VMM that keeps the group\n"
               "  reload                Re-read coherencyd.conf and the policy.d files\n"
               "  check-policy          Check the policy files without loading them\n"
               "  monitor               Show decisions and grant changes as they happen\n"
               "  introspect [IFACE]    Show the Varlink interface definitions\n"
               "\n"
               "Options:\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "     --socket=PATH      Talk to the daemon at PATH\n"
               "                        (default: $COHERENCYD_SOCKET, else %s)\n"
               "     --json=MODE        Print one JSON document (monitor: one per event):\n"
               "                        pretty, short or off\n"
               "  -j                    --json=pretty on a terminal, else --json=short\n"
               "     --no-pager         Do not pipe output into a pager\n"
               "     --no-legend        Do not print the column headers and footers\n"
               "  -l --full             Do not shorten table cells to fit the terminal\n"
               "     --config=DIR       With check-policy: check the configuration in DIR\n"
               "     --user=USER        With explain or devices: the VMM's user (name or uid)\n"
               "     --group=GROUP      With explain or devices: a group of the VMM (name or gid)\n"
               "     --unit=UNIT        With explain or devices: the VMM's systemd unit\n"
               "     --sysfs=DIR        With devices: the sysfs tree to walk (default /sys)\n"
               "     --ioas-coherent=BOOL\n"
               "                        With probe: the IOAS you intend to create is (not) coherent\n"
               "     --kill             With revoke: SIGKILL the VMM if it still holds the group\n"
               "                        after ReleaseTimeoutSec= (needs RevokeKill=yes)\n"
               "\n"
               "See the coherencyctl(1) man page for details.\n",
               COHERENCY_DEFAULT_SOCKET);
}

static const struct verb {
        const char *name;
        unsigned min_args, max_args;
        bool pager;
        int (*run)(const struct args *a, coherency_client *c, char **argv);
} verbs[] = {
        { "status",       0, 0, true,  verb_status     },
        { "info",         0, 0, true,  verb_info       },
        { "devices",      0, 0, true,  verb_devices    },
        { "policy",       0, 0, true,  verb_policy     },
        { "probe",        1, 1, true,  verb_probe      },
        { "explain",      1, 1, true,  verb_explain    },
        { "grants",       0, 0, true,  verb_grants     },
        { "revoke",       1, 1, false, verb_revoke     },
        { "reload",       0, 0, false, verb_reload     },
        { "check-policy", 0, 0, false, NULL            },
        { "monitor",      0, 0, false, verb_monitor    },
        { "introspect",   0, 1, true,  verb_introspect },
};

/* systemd's columns(): $COLUMNS, else the terminal's width; no limit for a pipe or a file. */
static size_t output_columns(void) {
        const char *e = getenv("COLUMNS");
        struct winsize ws = {};
        char *end;
        long n;

        if (e && e[0]) {
                errno = 0;
                n = strtol(e, &end, 10);
                if (errno == 0 && !*end && n > 0 && n <= 65535)
                        return (size_t) n;
        }
        if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) >= 0 && ws.ws_col > 0)
                return ws.ws_col;
        return SIZE_MAX;
}

static int parse_json_mode(const char *v, enum json_mode *ret) {
        if (!v || streq(v, "short"))
                *ret = JSON_SHORT; /* a bare --json, as coherencyctl 0.1 took it */
        else if (streq(v, "pretty"))
                *ret = JSON_PRETTY;
        else if (streq(v, "off"))
                *ret = JSON_OFF;
        else if (streq(v, "help")) {
                printf("short\npretty\noff\n");
                return 0;
        } else
                return usage_error("--json= takes pretty, short or off, not '%s'", v);
        return -1;
}

enum {
        ARG_VERSION = 0x100,
        ARG_SOCKET,
        ARG_JSON,
        ARG_NO_PAGER,
        ARG_NO_LEGEND,
        ARG_CONFIG,
        ARG_USER,
        ARG_GROUP,
        ARG_UNIT,
        ARG_SYSFS,
        ARG_IOAS_COHERENT,
        ARG_KILL,
};

/* One option: -1 to go on, else the exit status (--help, --version, a mistake). */
static int parse_option(int opt, struct args *a) {
        switch (opt) {
        case 'h':
                pager_open(a);
                help();
                return EXIT_SUCCESS;
        case ARG_VERSION:
                printf("coherencyctl %s\n", COH_VERSION);
                return EXIT_SUCCESS;
        case ARG_SOCKET:
                a->socket = optarg;
                return -1;
        case ARG_JSON:
                return parse_json_mode(optarg, &a->json);
        case 'j':
                a->json = isatty(STDOUT_FILENO) ? JSON_PRETTY : JSON_SHORT;
                return -1;
        case ARG_NO_PAGER:
                a->no_pager = true;
                return -1;
        case ARG_NO_LEGEND:
                a->no_legend = true;
                return -1;
        case 'l':
                a->full = true;
                return -1;
        case ARG_CONFIG:
                a->config = optarg;
                return -1;
        case ARG_USER:
                a->user = optarg;
                return -1;
        case ARG_GROUP:
                a->group = optarg;
                return -1;
        case ARG_UNIT:
                a->unit = optarg;
                return -1;
        case ARG_SYSFS:
                a->sysfs = optarg;
                return -1;
        case ARG_IOAS_COHERENT:
                a->ioas_coherent = parse_boolean(optarg);
                return a->ioas_coherent < 0 ? usage_error("--ioas-coherent= takes yes or no") : -1;
        case ARG_KILL:
                a->kill = true;
                return -1;
        default:
                /* getopt said what was wrong. */
                fprintf(stderr, "Try 'coherencyctl --help' for more information.\n");
                return EXIT_USAGE;
        }
}

static int parse_argv(int argc, char *argv[], struct args *a) {
        static const struct option options[] = {
                { "help",          no_argument,       NULL, 'h'               },
                { "version",       no_argument,       NULL, ARG_VERSION       },
                { "socket",        required_argument, NULL, ARG_SOCKET        },
                { "json",          optional_argument, NULL, ARG_JSON          },
                { "no-pager",      no_argument,       NULL, ARG_NO_PAGER      },
                { "no-legend",     no_argument,       NULL, ARG_NO_LEGEND     },
                { "full",          no_argument,       NULL, 'l'               },
                { "config",        required_argument, NULL, ARG_CONFIG        },
                { "user",          required_argument, NULL, ARG_USER          },
                { "group",         required_argument, NULL, ARG_GROUP         },
                { "unit",          required_argument, NULL, ARG_UNIT          },
                { "sysfs",         required_argument, NULL, ARG_SYSFS         },
                { "ioas-coherent", required_argument, NULL, ARG_IOAS_COHERENT },
                { "kill",          no_argument,       NULL, ARG_KILL          },
                {}
        };
        int opt, r;

        while ((opt = getopt_long(argc, argv, "hjl", options, NULL)) >= 0) {
                r = parse_option(opt, a);
                if (r >= 0)
                        return r;
        }
        return -1;
}

/* Options that belong to other commands are mistakes, said as such. */
static int check_options(const struct args *a, const struct verb *verb) {
        const char *v = verb->name;

        if (a->config && !streq(v, "check-policy"))
                return usage_error("--config only applies to check-policy");
        if ((a->user || a->group || a->unit) && !streq(v, "explain") && !streq(v, "devices"))
                return usage_error("--user, --group and --unit only apply to explain and devices");
        if ((a->group || a->unit) && !a->user)
                return usage_error("%s: --group and --unit need --user (the VMM's user)", v);
        if (streq(v, "explain") && !a->user)
                return usage_error("explain: --user is needed (the VMM's user)");
        if (a->sysfs && !streq(v, "devices"))
                return usage_error("--sysfs only applies to devices");
        if (a->ioas_coherent >= 0 && !streq(v, "probe"))
                return usage_error("--ioas-coherent only applies to probe");
        if (a->kill && !streq(v, "revoke"))
                return usage_error("--kill only applies to revoke");
        return -1;
}

static const struct verb *find_verb(int argc, char *argv[], int *ret_status) {
        const char *name = optind < argc ? argv[optind] : "status";
        unsigned n_args = optind < argc ? (unsigned) (argc - optind - 1) : 0;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                if (!streq(verbs[i].name, name))
                        continue;
                if (n_args < verbs[i].min_args || n_args > verbs[i].max_args) {
                        *ret_status = usage_error("%s: %s", name, n_args < verbs[i].min_args ? "missing argument"
                                                                                             : "too many arguments");
                        return NULL;
                }
                return verbs + i;
        }
        *ret_status = usage_error("unknown command '%s'", name);
        return NULL;
}

int main(int argc, char *argv[]) {
        struct args a = {
                .ioas_coherent = -1,
        };
        coherency_client *c = NULL;
        const struct verb *verb;
        int r;

        (void) setlocale(LC_ALL, "");
        /* Measured before a pager takes stdout over. */
        a.columns = output_columns();

        r = parse_argv(argc, argv, &a);
        if (r >= 0)
                goto finish;
        verb = find_verb(argc, argv, &r);
        if (!verb)
                goto finish;
        r = check_options(&a, verb);
        if (r >= 0)
                goto finish;

        if (!verb->run) {
                r = verb_check_policy(&a);
                goto finish;
        }
        r = connect_daemon(&a, &c);
        if (r != 0)
                goto finish;
        if (verb->pager)
                pager_open(&a);
        r = verb->run(&a, c, optind < argc ? argv + optind + 1 : argv + argc);
        coherency_client_free(c);

finish:
        pager_close();
        return r;
}
