/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * daemon/journal.c against a real journald: run under tests/lib/with-journald, which starts a
 * private one and exports COH_JOURNAL_DIR and COH_JOURNALD_PID. Records are read back with
 * `journalctl -D $COH_JOURNAL_DIR -o json` after `journalctl --sync`. Without the harness
 * only the tests that need no journald run; the others are skipped.
 */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <json-c/json.h>

#include "decision-record.h"
#include "grant-record.h"
#include "journal.h"
#include "messages.h"


#define WATCHDOG_SEC 30

/* For the SIGALRM handler only: it must not leave journald stopped behind it. */
static volatile sig_atomic_t watchdog_journald_pid;

static void watchdog_fired(int sig) {
        static const char msg[] = "test-journal: watchdog: a step blocked for 30 s, failing\n";

        if (watchdog_journald_pid > 0)
                (void) kill((pid_t) watchdog_journald_pid, SIGCONT);
        (void) write(STDERR_FILENO, msg, sizeof(msg) - 1);
        _exit(EXIT_FAILURE);
}

/* A hang (a send that blocks, a flush that never finishes) fails the test instead of the run. */
static void watchdog_arm(pid_t journald) {
        watchdog_journald_pid = journald;
        assert_int_equal(signal(SIGALRM, watchdog_fired) == SIG_ERR, 0);
        alarm(WATCHDOG_SEC);
}

static void watchdog_disarm(void) {
        alarm(0);
}

static const char *journal_dir_or_skip(void) {
        const char *d = getenv("COH_JOURNAL_DIR");

        if (!d) {
                print_message("COH_JOURNAL_DIR not set (not under with-journald), skipping\n");
                skip();
        }
        return d;
}

static pid_t journald_pid_or_skip(void) {
        const char *e = getenv("COH_JOURNALD_PID");
        long pid;

        if (!e) {
                print_message("COH_JOURNALD_PID not set (not under with-journald), skipping\n");
                skip();
        }
        pid = strtol(e, NULL, 10);
        assert_true(pid > 1);
        return (pid_t) pid;
}

/* Runs argv; returns its exit status, with its stdout in *ret_out (NUL-terminated) if asked. */
static int run(char *const argv[], char **ret_out) {
        char *out = NULL;
        size_t size = 0, cap = 0;
        int pipefd[2], status;
        pid_t pid;

        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (dup2(pipefd[1], STDOUT_FILENO) < 0)
                        _exit(127);
                execvp(argv[0], argv);
                _exit(127);
        }
        close(pipefd[1]);

        for (;;) {
                ssize_t k;

                if (cap - size < 4096) {
                        cap = cap ? cap * 2 : 65536;
                        out = realloc(out, cap);
                        assert_non_null(out);
                }
                k = read(pipefd[0], out + size, cap - size - 1);
                if (k < 0 && errno == EINTR)
                        continue;
                assert_true(k >= 0);
                if (k == 0)
                        break;
                size += (size_t) k;
        }
        out[size] = 0;
        close(pipefd[0]);

        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (ret_out)
                *ret_out = out;
        else
                free(out);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Everything sent before this returns is in the journal files (see tests/lib/with-journald). */
static void journal_sync(void) {
        assert_int_equal(run((char *const[]) { (char *) "journalctl", (char *) "--sync", NULL }, NULL), 0);
}

/* The records matching all of the given "FIELD=value" matches, oldest first, as a JSON array. */
static json_object *journal_query(const char *match, ...) {
        char *argv[16] = { (char *) "journalctl", (char *) "-D", (char *) journal_dir_or_skip(),
                           (char *) "-o", (char *) "json", (char *) "--all", (char *) "--quiet",
                           (char *) "--no-pager" };
        size_t n = 8;
        json_object *records;
        char *out, *line, *save = NULL;
        va_list ap;

        va_start(ap, match);
        for (const char *m = match; m; m = va_arg(ap, const char *)) {
                assert_true(n < sizeof(argv) / sizeof(argv[0]) - 1);
                argv[n++] = (char *) m;
        }
        va_end(ap);
        argv[n] = NULL;

        assert_int_equal(run(argv, &out), 0);

        records = json_object_new_array();
        assert_non_null(records);
        for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                json_object *o = json_tokener_parse(line);

                assert_non_null(o);
                assert_true(json_object_is_type(o, json_type_object));
                assert_int_equal(json_object_array_add(records, o), 0);
        }
        free(out);
        return records;
}

/*
 * A field's value as a string, or NULL if absent. journalctl writes values that are not
 * printable UTF-8 as arrays of byte values; accept both forms so the comparison is on bytes.
 */
static char *record_field(json_object *record, const char *name) {
        json_object *v;
        char *s;
        size_t n;

        if (!json_object_object_get_ex(record, name, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        if (json_object_is_type(v, json_type_string)) {
                s = strdup(json_object_get_string(v));
                assert_non_null(s);
                return s;
        }

        /* A field present more than once would be an array of strings: not expected here. */
        assert_true(json_object_is_type(v, json_type_array));
        n = json_object_array_length(v);
        s = malloc(n + 1);
        assert_non_null(s);
        for (size_t i = 0; i < n; i++) {
                json_object *b = json_object_array_get_idx(v, i);

                assert_true(json_object_is_type(b, json_type_int));
                s[i] = (char) json_object_get_int(b);
        }
        s[n] = 0;
        return s;
}

static void assert_field(json_object *record, const char *name, const char *expected) {
        char *v = record_field(record, name);

        if (!expected) {
                assert_null(v);
                return;
        }
        if (!v)
                fail_msg("field %s missing", name);
        assert_string_equal(v, expected);
        free(v);
}

static unsigned long field_ulong(json_object *record, const char *name) {
        char *v = record_field(record, name), *end;
        unsigned long u;

        assert_non_null(v);
        u = strtoul(v, &end, 10);
        assert_true(end != v && *end == 0);
        free(v);
        return u;
}

/* Distinguishes one test's records from every other test's in the same journal. */
static void make_marker(char *buf, size_t size, const char *test) {
        snprintf(buf, size, "COHERENCYD_TEST=%s-%d", test, (int) getpid());
}

static unsigned max_dgram_qlen(void) {
        unsigned q = 0;
        FILE *f = fopen("/proc/sys/net/unix/max_dgram_qlen", "re");

        assert_non_null(f);
        assert_int_equal(fscanf(f, "%u", &q), 1);
        fclose(f);
        assert_true(q > 0);
        return q;
}

static char process_state(pid_t pid) {
        char path[64], buf[512], *p;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        assert_true(n > 0);
        buf[n] = 0;
        p = strrchr(buf, ')'); /* comm may contain anything, the state follows its last ')' */
        assert_non_null(p);
        assert_true(p[1] == ' ');
        return p[2];
}

/*
 * Stops journald and waits until it really is stopped: kill() only makes SIGSTOP pending, and
 * a journald still running could read a few more records. Waiting for a condition, bounded by
 * the watchdog; the 1 ms pause only keeps the poll from spinning.
 */
static void journald_stop(pid_t journald) {
        assert_int_equal(kill(journald, SIGSTOP), 0);
        while (process_state(journald) != 'T')
                nanosleep(&(struct timespec) { .tv_nsec = 1000 * 1000 }, NULL);
}

static int teardown_continue_journald(void **state) {
        const char *e = getenv("COH_JOURNALD_PID");

        /* A failed test must not leave journald stopped for the next one. */
        if (e)
                (void) kill((pid_t) strtol(e, NULL, 10), SIGCONT);
        watchdog_disarm();
        return 0;
}

/* Runs the event loop until every queued record has been handed to journald. */
static void drain(struct event_base *base, struct coh_journal *j) {
        while (coh_journal_queued(j) > 0)
                assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
}

struct stderr_capture {
        int saved;
        int pipefd[2];
};

static struct stderr_capture stderr_capture_begin(void) {
        struct stderr_capture c;

        assert_int_equal(pipe2(c.pipefd, O_CLOEXEC), 0);
        c.saved = dup(STDERR_FILENO);
        assert_true(c.saved >= 0);
        assert_true(dup2(c.pipefd[1], STDERR_FILENO) >= 0);
        return c;
}

/* Restores stderr; returns what was written to it meanwhile. */
static char *stderr_capture_end(struct stderr_capture *c) {
        char *buf = malloc(65536);
        size_t size = 0;

        assert_non_null(buf);
        assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
        close(c->saved);
        close(c->pipefd[1]);
        for (;;) {
                ssize_t k = read(c->pipefd[0], buf + size, 65535 - size);

                assert_true(k >= 0);
                if (k == 0)
                        break;
                size += (size_t) k;
        }
        buf[size] = 0;
        close(c->pipefd[0]);
        return buf;
}

static void test_invalid_arguments(void **state) {
        struct event_base *base = event_base_new();
        struct coh_journal *j = NULL;
        char long_name[70], long_path[200];

        assert_non_null(base);

        memset(long_path, 'x', sizeof(long_path) - 1);
        long_path[0] = '/';
        long_path[sizeof(long_path) - 1] = 0;
        assert_int_equal(coh_journal_new(NULL, "/nonexistent/socket", 8, &j), -EINVAL);
        assert_int_equal(coh_journal_new(base, long_path, 8, &j), -EINVAL);
        assert_int_equal(coh_journal_new(base, "", 8, &j), -EINVAL);

        /* Nothing valid is sent: every call below must fail before any output. */
        assert_int_equal(coh_journal_new(base, "/nonexistent/socket", 8, &j), 0);

        static const char *const bad_names[] = {
                "", "coherencyd_decision", "_COHERENCYD", "1COHERENCYD", "COHERENCYD-DECISION",
                "COHERENCYD DECISION", "COHERENCYD=X", "COHERENCYDÄ",
                /* set by journal.c itself */
                "MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER",
        };
        for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
                struct coh_journal_field f[] = {
                        { "COHERENCYD_DECISION", "granted" },
                        { bad_names[i], "x" },
                };

                assert_int_equal(coh_journal_send(j, LOG_INFO, COH_MESSAGE_DECISION, "m", f, 2), -EINVAL);
                assert_false(coh_journal_field_name_valid(bad_names[i]));
        }

        /* 65 characters: one more than journald allows. */
        memset(long_name, 'A', 65);
        long_name[65] = 0;
        assert_int_equal(coh_journal_send(j, LOG_INFO, COH_MESSAGE_DECISION, "m",
                                          &(struct coh_journal_field) { long_name, "x" }, 1), -EINVAL);
        assert_int_equal(coh_journal_send(j, LOG_INFO, COH_MESSAGE_DECISION, "m",
                                          &(struct coh_journal_field) { NULL, "x" }, 1), -EINVAL);

        assert_int_equal(coh_journal_send(j, -1, COH_MESSAGE_DECISION, "m", NULL, 0), -EINVAL);
        assert_int_equal(coh_journal_send(j, 8, COH_MESSAGE_DECISION, "m", NULL, 0), -EINVAL);
        /* No MESSAGE_ID is fine (plain records); a malformed one is not. */
        assert_int_equal(coh_journal_send(j, LOG_INFO, NULL, "m", NULL, 0), 0);
        assert_int_equal(coh_journal_send(j, LOG_INFO, "56EA55CACBF54BFAABB686C19008136E", "m", NULL, 0), -EINVAL);
        assert_int_equal(coh_journal_send(j, LOG_INFO, "56ea55cacbf54bfaabb686c19008136", "m", NULL, 0), -EINVAL);
        assert_int_equal(coh_journal_send(j, LOG_INFO, "56ea55ca-cbf5-4bfa-abb6-86c19008136e", "m", NULL, 0), -EINVAL);
        assert_int_equal(coh_journal_send(j, LOG_INFO, COH_MESSAGE_DECISION, NULL, NULL, 0), -EINVAL);
        assert_int_equal(coh_journal_send(j, LOG_INFO, COH_MESSAGE_DECISION, "m", NULL, 1), -EINVAL);

        assert_int_equal(coh_journal_queued(j), 0);
        assert_int_equal(coh_journal_dropped(j), 0);
        coh_journal_free(j);
        event_base_free(base);
}

static int bind_dgram(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_true(strlen(path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

/*
 * The daemon's records go out with coh_journal_send_const_names(), whose names are not checked on
 * each record: every journal name of every record's field table is checked here instead.
 */
static void test_field_tables_names_valid(void **state) {
        static const struct {
                const char *what;
                const struct coh_field *table;
        } tables[] = {
                { "grant", coh_grant_record_fields },
                { "decision", coh_decision_record_fields },
                { "device", coh_device_record_fields },
        };
        size_t n_names = 0;

        for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
                for (const struct coh_field *f = tables[t].table; f->json; f++) {
                        if (!f->journal)
                                continue;
                        if (!coh_journal_field_name_valid(f->journal))
                                fail_msg("%s record, field %s: journal name '%s' is not one journald takes",
                                         tables[t].what, f->json, f->journal);
                        n_names++;
                }
        /* The tables were walked, not found empty. */
        assert_true(n_names >= 20);
        assert_true(coh_journal_field_name_valid("COHERENCYD_HELD_USEC"));
}

/* Names at journald's limits, and names that only begin like the fields journal.c sets itself. */
static void test_names_at_the_limits(void **state) {
        char dir[] = "/tmp/test-journal-XXXXXX", path[128], buf[4096], name64[65], expected[256];
        struct event_base *base;
        struct coh_journal *j;
        ssize_t n;
        int fd;

        memset(name64, 'A', 64);
        name64[0] = 'Z';
        name64[63] = '9';
        name64[64] = 0;
        const struct coh_journal_field fields[] = {
                { name64, "64" },
                { "A", "1" },
                { "MESSAGE_", "m" },
                { "MESSAGES", "m" },
                { "PRIORITY0", "p" },
                { "MESSAGE_ID_", "i" },
                { "SYSLOG_IDENTIFIEX", "s" },
                { "X_9", "x" },
        };
        snprintf(expected, sizeof(expected),
                 "MESSAGE=m\n"
                 "PRIORITY=7\n"
                 "SYSLOG_IDENTIFIER=coherencyd\n"
                 "%s=64\nA=1\nMESSAGE_=m\nMESSAGES=m\nPRIORITY0=p\nMESSAGE_ID_=i\nSYSLOG_IDENTIFIEX=s\nX_9=x\n",
                 name64);

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/socket", dir);
        fd = bind_dgram(path);
        base = event_base_new();
        assert_non_null(base);
        assert_int_equal(coh_journal_new(base, path, 8, &j), 0);

        assert_int_equal(coh_journal_send(j, LOG_DEBUG, NULL, "m", fields, sizeof(fields) / sizeof(fields[0])), 0);
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        assert_int_equal(n, strlen(expected));
        assert_memory_equal(buf, expected, strlen(expected));

        coh_journal_free(j);
        close(fd);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
        event_base_free(base);
}

/* The bytes on the wire, and a restarted "journald" (a new socket at the same path). */
static void test_wire_format_and_reconnect(void **state) {
        static const char expected[] =
                "MESSAGE=hi there\n"
                "MESSAGE_ID=" COH_MESSAGE_STARTED "\n"
                "PRIORITY=6\n"
                "SYSLOG_IDENTIFIER=coherencyd\n"
                "COHERENCYD_A=x=y\n"
                "COHERENCYD_EMPTY=\n"
                "COHERENCYD_NL\n\x03\0\0\0\0\0\0\0a\nb\n";
        char dir[] = "/tmp/test-journal-XXXXXX", path[128], buf[4096], *out, *big;
        struct stderr_capture c;
        struct event_base *base;
        struct coh_journal *j;
        ssize_t n;
        int fd;

        const struct coh_journal_field fields[] = {
                { "COHERENCYD_A", "x=y" },
                { "COHERENCYD_EMPTY", "" },
                { "COHERENCYD_GONE", NULL },
                { "COHERENCYD_NL", "a\nb" },
        };

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/socket", dir);
        fd = bind_dgram(path);
        base = event_base_new();
        assert_non_null(base);
        assert_int_equal(coh_journal_new(base, path, 8, &j), 0);

        assert_int_equal(coh_journal_send(j, LOG_INFO, COH_MESSAGE_STARTED, "hi there", fields, 4), 0);
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        assert_int_equal(n, sizeof(expected) - 1);
        assert_memory_equal(buf, expected, sizeof(expected) - 1);

        /* Names taken as they are (the caller's constants): the same bytes. */
        assert_int_equal(coh_journal_send_const_names(j, LOG_INFO, COH_MESSAGE_STARTED, "hi there", fields, 4), 0);
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        assert_int_equal(n, sizeof(expected) - 1);
        assert_memory_equal(buf, expected, sizeof(expected) - 1);

        /* Larger than the socket can ever take: an error, not a queued or dropped record. */
        big = malloc(4 * 1024 * 1024);
        assert_non_null(big);
        memset(big, 'x', 4 * 1024 * 1024 - 1);
        big[4 * 1024 * 1024 - 1] = 0;
        assert_int_equal(coh_journal_send(j, LOG_INFO, COH_MESSAGE_STARTED, "big",
                                          &(struct coh_journal_field) { "COHERENCYD_BIG", big }, 1), -EMSGSIZE);
        free(big);
        assert_int_equal(coh_journal_queued(j), 0);
        assert_int_equal(coh_journal_dropped(j), 0);

        /* The buffer records are built in is reused: nothing of the big one is left in the next. */
        assert_int_equal(coh_journal_send(j, LOG_INFO, COH_MESSAGE_STARTED, "hi there", fields, 4), 0);
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        assert_int_equal(n, sizeof(expected) - 1);
        assert_memory_equal(buf, expected, sizeof(expected) - 1);

        /* The receiver goes away and a new one binds the path: records go to the new one, and
         * nothing falls back to stderr. */
        close(fd);
        assert_int_equal(unlink(path), 0);
        fd = bind_dgram(path);

        c = stderr_capture_begin();
        assert_int_equal(coh_journal_send(j, LOG_INFO, COH_MESSAGE_STOPPED, "after restart", NULL, 0), 0);
        out = stderr_capture_end(&c);
        assert_string_equal(out, "");
        free(out);
        n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        assert_true(n > 0);
        buf[n] = 0;
        assert_non_null(strstr(buf, "MESSAGE=after restart\n"));
        assert_non_null(strstr(buf, "MESSAGE_ID=" COH_MESSAGE_STOPPED "\n"));

        coh_journal_free(j);
        close(fd);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
        event_base_free(base);
}

static void test_fields_intact(void **state) {
        static const char multi[] = "first line\nsecond line with = and \\ and \t tab\n";
        char marker[128], pid_str[32], comm[64] = "", *v;
        struct event_base *base;
        struct coh_journal *j;
        json_object *records, *rec;
        int pipefd[2];
        pid_t child;
        FILE *f;

        journal_dir_or_skip();

        /* A live process for OBJECT_PID=: journald reads its /proc entry when the record arrives. */
        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                char c;

                close(pipefd[1]);
                while (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
                        ;
                _exit(EXIT_SUCCESS);
        }
        close(pipefd[0]);
        snprintf(pid_str, sizeof(pid_str), "%d", (int) child);

        make_marker(marker, sizeof(marker), "fields");
        base = event_base_new();
        assert_non_null(base);
        assert_int_equal(coh_journal_new(base, NULL, 16, &j), 0);

        const struct coh_journal_field fields[] = {
                { "COHERENCYD_DECISION", "granted" },
                { "COHERENCYD_REASON", "policy-enable" },
                { "COHERENCYD_RULE", "/etc/coherencyd/policy.d/20-amd-gpu-enable.policy:7" },
                { "COHERENCYD_SLOT", "0000:03:00.0" },
                { "COHERENCYD_VM_WBINVD", "emulated" },
                { "COHERENCYD_NOTE", multi },
                { "COHERENCYD_UTF8", "Grüße, 設定" },
                { "COHERENCYD_LEFT_OUT", NULL },
                { "OBJECT_PID", pid_str },
                { "COHERENCYD_TEST", strchr(marker, '=') + 1 },
        };
        assert_int_equal(coh_journal_send(j, LOG_NOTICE, COH_MESSAGE_DECISION,
                                          "Granted WBINVD for 0000:03:00.0\nsecond message line",
                                          fields, sizeof(fields) / sizeof(fields[0])), 0);
        assert_int_equal(coh_journal_queued(j), 0);
        journal_sync();

        records = journal_query("MESSAGE_ID=" COH_MESSAGE_DECISION, marker, NULL);
        assert_int_equal(json_object_array_length(records), 1);
        rec = json_object_array_get_idx(records, 0);

        assert_field(rec, "MESSAGE", "Granted WBINVD for 0000:03:00.0\nsecond message line");
        assert_field(rec, "MESSAGE_ID", COH_MESSAGE_DECISION);
        assert_field(rec, "PRIORITY", "5");
        assert_field(rec, "SYSLOG_IDENTIFIER", "coherencyd");
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
                assert_field(rec, fields[i].name, fields[i].value);
        assert_int_equal(field_ulong(rec, "_PID"), (unsigned long) getpid());
        assert_field(rec, "_TRANSPORT", "journal");

        /* journald attached the other process's metadata: the point of OBJECT_PID=. */
        f = fopen("/proc/self/comm", "re");
        assert_non_null(f);
        assert_non_null(fgets(comm, sizeof(comm), f));
        fclose(f);
        comm[strcspn(comm, "\n")] = 0;
        assert_field(rec, "OBJECT_COMM", comm);
        v = record_field(rec, "OBJECT_CMDLINE");
        assert_non_null(v);
        free(v);

        json_object_put(records);
        coh_journal_free(j);
        event_base_free(base);

        close(pipefd[1]);
        assert_int_equal(waitpid(child, NULL, 0), child);
}

static void test_priority_kept(void **state) {
        char marker[128], seq[16];
        struct event_base *base;
        struct coh_journal *j;
        json_object *records;

        journal_dir_or_skip();
        make_marker(marker, sizeof(marker), "priority");
        base = event_base_new();
        assert_non_null(base);
        assert_int_equal(coh_journal_new(base, NULL, 16, &j), 0);

        /* LOG_EMERG left out: a journald not configured like with-journald's would wall it. */
        for (int p = LOG_ALERT; p <= LOG_DEBUG; p++) {
                snprintf(seq, sizeof(seq), "%d", p);
                assert_int_equal(coh_journal_send(j, p, COH_MESSAGE_POLICY_LOADED, "priority test",
                                                  (const struct coh_journal_field[]) {
                                                          { "COHERENCYD_TEST", strchr(marker, '=') + 1 },
                                                          { "COHERENCYD_SEQ", seq },
                                                  }, 2), 0);
        }
        journal_sync();

        records = journal_query("MESSAGE_ID=" COH_MESSAGE_POLICY_LOADED, marker, NULL);
        assert_int_equal(json_object_array_length(records), LOG_DEBUG - LOG_ALERT + 1);
        for (int p = LOG_ALERT; p <= LOG_DEBUG; p++) {
                json_object *rec = json_object_array_get_idx(records, p - LOG_ALERT);

                assert_int_equal(field_ulong(rec, "COHERENCYD_SEQ"), p);
                assert_int_equal(field_ulong(rec, "PRIORITY"), p);
        }

        json_object_put(records);
        coh_journal_free(j);
        event_base_free(base);
}

static int send_seq(struct coh_journal *j, const char *marker, unsigned i) {
        char seq[16];

        snprintf(seq, sizeof(seq), "%u", i);
        return coh_journal_send(j, LOG_INFO, COH_MESSAGE_GRANT_END, "queued record",
                                (const struct coh_journal_field[]) {
                                        { "COHERENCYD_TEST", strchr(marker, '=') + 1 },
                                        { "COHERENCYD_SEQ", seq },
                                        { "COHERENCYD_END", "release" },
                                }, 3);
}

static void test_stopped_journald_queues(void **state) {
        unsigned qlen = max_dgram_qlen(), n = 5 * qlen;
        struct event_base *base;
        struct coh_journal *j;
        json_object *records;
        char marker[128];
        pid_t journald;
        size_t queued;

        journal_dir_or_skip();
        journald = journald_pid_or_skip();
        make_marker(marker, sizeof(marker), "stopped");
        base = event_base_new();
        assert_non_null(base);
        assert_int_equal(coh_journal_new(base, NULL, n, &j), 0);

        watchdog_arm(journald);
        journal_sync(); /* journald idle, its socket empty */
        journald_stop(journald);

        /* A blocking send would hang here; the watchdog turns that into a failure. */
        for (unsigned i = 0; i < n; i++)
                assert_int_equal(send_seq(j, marker, i), 0);

        /* The socket took at most max_dgram_qlen + 1 of them; the rest wait, none is lost. */
        queued = coh_journal_queued(j);
        assert_true(queued >= n - (qlen + 1));
        assert_true(queued < n);
        assert_int_equal(coh_journal_dropped(j), 0);

        /* A wake-up while journald still sleeps sends nothing and loses nothing. */
        assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
        assert_int_equal(coh_journal_queued(j), queued);

        assert_int_equal(kill(journald, SIGCONT), 0);
        /* journald may already be reading again: still, this one must wait behind the queue. */
        assert_int_equal(send_seq(j, marker, n), 0);
        assert_int_equal(coh_journal_queued(j), queued + 1);
        drain(base, j);
        assert_int_equal(coh_journal_dropped(j), 0);
        journal_sync();
        watchdog_disarm();

        records = journal_query("MESSAGE_ID=" COH_MESSAGE_GRANT_END, marker, NULL);
        assert_int_equal(json_object_array_length(records), n + 1);
        for (unsigned i = 0; i <= n; i++)
                assert_int_equal(field_ulong(json_object_array_get_idx(records, i), "COHERENCYD_SEQ"), i);

        json_object_put(records);
        coh_journal_free(j);
        event_base_free(base);
}

static void test_overflow_counts_drops(void **state) {
        unsigned qlen = max_dgram_qlen(), n = qlen + 1 + 4 + 9, n_enobufs = 0, n_kept;
        size_t queue_max = 4, dropped, i_notice = SIZE_MAX, i_last = SIZE_MAX, seen = 0;
        char marker[128], pid_match[64];
        struct event_base *base;
        struct coh_journal *j;
        json_object *records;
        pid_t journald;

        journal_dir_or_skip();
        journald = journald_pid_or_skip();
        make_marker(marker, sizeof(marker), "overflow");
        base = event_base_new();
        assert_non_null(base);
        assert_int_equal(coh_journal_new(base, NULL, queue_max, &j), 0);

        watchdog_arm(journald);
        journal_sync();
        journald_stop(journald);

        for (unsigned i = 0; i < n; i++) {
                int r = send_seq(j, marker, i);

                if (r == -ENOBUFS)
                        n_enobufs++;
                else
                        assert_int_equal(r, 0);
        }
        dropped = coh_journal_dropped(j);
        assert_true(dropped > 0);
        assert_int_equal(dropped, n_enobufs);
        assert_int_equal(coh_journal_queued(j), queue_max);

        assert_int_equal(kill(journald, SIGCONT), 0);
        drain(base, j); /* the queue, then the "dropped" record */
        assert_int_equal(coh_journal_dropped(j), dropped);
        journal_sync();
        watchdog_disarm();

        /* Everything this process logged, in order: the kept records, then the notice. */
        snprintf(pid_match, sizeof(pid_match), "_PID=%d", (int) getpid());
        records = journal_query("SYSLOG_IDENTIFIER=coherencyd", pid_match, NULL);
        n_kept = n - n_enobufs;
        for (size_t i = 0; i < json_object_array_length(records); i++) {
                json_object *rec = json_object_array_get_idx(records, i);
                char *mid = record_field(rec, "MESSAGE_ID"), *test = record_field(rec, "COHERENCYD_TEST");

                if (mid && strcmp(mid, COH_MESSAGE_JOURNAL_DROPPED) == 0 && i_last != SIZE_MAX) {
                        /* Exactly one, after this test's first record (other tests drop too). */
                        assert_int_equal(i_notice, SIZE_MAX);
                        i_notice = i;
                        assert_field(rec, "PRIORITY", "4");
                        assert_int_equal(field_ulong(rec, "COHERENCYD_DROPPED"), dropped);
                } else if (test && strcmp(test, strchr(marker, '=') + 1) == 0) {
                        /* The first ones made it; later ones were dropped, never reordered. */
                        assert_int_equal(field_ulong(rec, "COHERENCYD_SEQ"), seen);
                        seen++;
                        i_last = i;
                }
                free(mid);
                free(test);
        }
        assert_int_equal(seen, n_kept);
        assert_true(i_notice != SIZE_MAX);
        assert_true(i_notice > i_last);

        json_object_put(records);
        coh_journal_free(j);
        event_base_free(base);
}

static void test_queue_max_zero(void **state) {
        unsigned qlen = max_dgram_qlen(), n = qlen + 1 + 3, n_enobufs = 0;
        char marker[128], pid_match[64], *v;
        struct event_base *base;
        struct coh_journal *j;
        json_object *records, *notice = NULL;
        pid_t journald;

        journal_dir_or_skip();
        journald = journald_pid_or_skip();
        make_marker(marker, sizeof(marker), "nqueue");
        base = event_base_new();
        assert_non_null(base);
        /* No queue at all: a busy journald means the record is dropped at once. */
        assert_int_equal(coh_journal_new(base, NULL, 0, &j), 0);

        watchdog_arm(journald);
        journal_sync();
        journald_stop(journald);
        for (unsigned i = 0; i < n; i++) {
                int r = send_seq(j, marker, i);

                if (r == -ENOBUFS)
                        n_enobufs++;
                else
                        assert_int_equal(r, 0);
        }
        assert_true(n_enobufs > 0);
        assert_int_equal(coh_journal_dropped(j), n_enobufs);
        assert_int_equal(coh_journal_queued(j), 0);

        /* The drops are still to be announced: the write event is armed for that alone, so one
         * loop iteration once journald reads again sends (or queues) the notice. */
        assert_int_equal(kill(journald, SIGCONT), 0);
        assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
        drain(base, j);
        journal_sync();
        watchdog_disarm();

        snprintf(pid_match, sizeof(pid_match), "_PID=%d", (int) getpid());
        records = journal_query("MESSAGE_ID=" COH_MESSAGE_JOURNAL_DROPPED, pid_match, NULL);
        assert_true(json_object_array_length(records) > 0);
        notice = json_object_array_get_idx(records, json_object_array_length(records) - 1);
        v = record_field(notice, "COHERENCYD_DROPPED");
        assert_non_null(v);
        assert_int_equal(strtoul(v, NULL, 10), n_enobufs);
        free(v);

        json_object_put(records);
        coh_journal_free(j);
        event_base_free(base);
}

static void test_free_reports_queued_on_stderr(void **state) {
        unsigned qlen = max_dgram_qlen(), n = qlen + 1 + 3;
        struct stderr_capture c;
        struct event_base *base;
        struct coh_journal *j;
        char marker[128], *out, *line, *save = NULL;
        unsigned lines = 0;
        size_t queued;
        pid_t journald;

        journal_dir_or_skip();
        journald = journald_pid_or_skip();
        make_marker(marker, sizeof(marker), "free");
        base = event_base_new();
        assert_non_null(base);
        assert_int_equal(coh_journal_new(base, NULL, 8, &j), 0);

        watchdog_arm(journald);
        journal_sync();
        journald_stop(journald);
        for (unsigned i = 0; i < n; i++)
                assert_int_equal(send_seq(j, marker, i), 0);
        queued = coh_journal_queued(j);
        assert_true(queued > 0);

        /* journald still stopped: what is queued cannot go, so it must come out on stderr. */
        c = stderr_capture_begin();
        coh_journal_free(j);
        out = stderr_capture_end(&c);
        assert_int_equal(kill(journald, SIGCONT), 0);
        watchdog_disarm();

        for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char expected[256];

                snprintf(expected, sizeof(expected),
                         "queued record (COHERENCYD_TEST=%s COHERENCYD_SEQ=%zu COHERENCYD_END=release)",
                         strchr(marker, '=') + 1, n - queued + lines);
                assert_string_equal(line, expected);
                lines++;
        }
        assert_int_equal(lines, queued);

        free(out);
        event_base_free(base);
}

static void test_no_journald_goes_to_stderr(void **state) {
        char dir[] = "/tmp/test-journal-XXXXXX", missing[128], stale[128], stream[64], *out;
        struct stderr_capture c;
        struct event_base *base;
        struct coh_journal *j;
        struct stat st;

        const struct coh_journal_field fields[] = {
                { "COHERENCYD_DECISION", "refused" },
                { "COHERENCYD_LEFT_OUT", NULL },
                { "COHERENCYD_REASON", "policy-force-disable" },
                { "COHERENCYD_NOTE", "two\nlines" },
        };

        assert_non_null(mkdtemp(dir));
        snprintf(missing, sizeof(missing), "%s/missing/socket", dir);
        snprintf(stale, sizeof(stale), "%s/stale", dir);

        base = event_base_new();
        assert_non_null(base);

        /* ENOENT: no socket at all. */
        assert_int_equal(coh_journal_new(base, missing, 8, &j), 0);
        c = stderr_capture_begin();
        assert_int_equal(coh_journal_send(j, LOG_NOTICE, COH_MESSAGE_DECISION, "Refused grant", fields, 4), 0);
        assert_int_equal(coh_journal_send(j, LOG_INFO, COH_MESSAGE_STARTED, "Started", NULL, 0), 0);
        out = stderr_capture_end(&c);
        assert_string_equal(out,
                            "Refused grant (COHERENCYD_DECISION=refused COHERENCYD_REASON=policy-force-disable "
                            "COHERENCYD_NOTE=two\\nlines)\n"
                            "Started\n");
        free(out);

        /* With stderr connected to the journal (JOURNAL_STREAM names it), lines carry "<N>". */
        c = stderr_capture_begin();
        assert_int_equal(fstat(STDERR_FILENO, &st), 0);
        snprintf(stream, sizeof(stream), "%llu:%llu",
                 (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
        assert_int_equal(setenv("JOURNAL_STREAM", stream, 1), 0);
        assert_int_equal(coh_journal_send(j, LOG_NOTICE, COH_MESSAGE_DECISION, "Refused grant", fields, 1), 0);
        assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
        out = stderr_capture_end(&c);
        assert_string_equal(out, "<5>Refused grant (COHERENCYD_DECISION=refused)\n");
        free(out);

        assert_int_equal(coh_journal_queued(j), 0);
        assert_int_equal(coh_journal_dropped(j), 0);
        coh_journal_free(j);

        /* ECONNREFUSED: a socket file nobody is bound to any more (a journald that died). */
        close(bind_dgram(stale));

        assert_int_equal(coh_journal_new(base, stale, 8, &j), 0);
        c = stderr_capture_begin();
        assert_int_equal(coh_journal_send(j, LOG_ERR, COH_MESSAGE_POLICY_FAILED, "Policy failed",
                                          &(struct coh_journal_field) { "COHERENCYD_RULE", "a.policy:3: bad" }, 1), 0);
        out = stderr_capture_end(&c);
        assert_string_equal(out, "Policy failed (COHERENCYD_RULE=a.policy:3: bad)\n");
        free(out);
        coh_journal_free(j);

        assert_int_equal(unlink(stale), 0);
        assert_int_equal(rmdir(dir), 0);
        event_base_free(base);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_invalid_arguments),
                cmocka_unit_test(test_field_tables_names_valid),
                cmocka_unit_test(test_no_journald_goes_to_stderr),
                cmocka_unit_test(test_wire_format_and_reconnect),
                cmocka_unit_test(test_names_at_the_limits),
                cmocka_unit_test(test_fields_intact),
                cmocka_unit_test(test_priority_kept),
                cmocka_unit_test_teardown(test_stopped_journald_queues, teardown_continue_journald),
                cmocka_unit_test_teardown(test_overflow_counts_drops, teardown_continue_journald),
                cmocka_unit_test_teardown(test_queue_max_zero, teardown_continue_journald),
                cmocka_unit_test_teardown(test_free_reports_queued_on_stderr, teardown_continue_journald),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
