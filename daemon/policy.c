/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ini.h"
#include "log.h"
#include "policy.h"
#include "strbuf.h"
#include "util.h"

#define WHITESPACE " \t\r\n\v\f"
#define CONF_NAME "coherencyd.conf"
#define RULE_SUFFIX ".policy"

/* Policy files are a few lines; the bound only keeps a mistake (a log file
 * symlinked into policy.d, say) from making a root daemon read without end. */
#define POLICY_FILE_MAX (1024U * 1024U)


static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

enum match_kind {
        MATCH_KIND_HEX_GLOB,    /* globs on a sysfs id: case-insensitive, "0x" optional */
        MATCH_KIND_GLOB,        /* globs on a string, compared as is */
        MATCH_KIND_IOMMU_GROUP, /* non-negative integers */
        MATCH_KIND_USER,        /* user names or uids, resolved at load */
        MATCH_KIND_GROUP,       /* group names or gids, resolved at load */
};

enum {
        MATCH_VENDOR,
        MATCH_DEVICE,
        MATCH_CLASS,
        MATCH_DRIVER,
        MATCH_SLOT,
        MATCH_IOMMU_GROUP,
        MATCH_USER,
        MATCH_GROUP,
        MATCH_UNIT,
        _MATCH_MAX,
};

static const char *subject_vendor(const struct coh_device_facts *d, const struct coh_peer *p) {
        return d->vendor;
}

static const char *subject_device(const struct coh_device_facts *d, const struct coh_peer *p) {
        return d->device;
}

static const char *subject_class(const struct coh_device_facts *d, const struct coh_peer *p) {
        return d->class;
}

/* An unbound device has no driver to match, as a peer outside any unit has no unit. */
static const char *subject_driver(const struct coh_device_facts *d, const struct coh_peer *p) {
        return d->driver[0] ? d->driver : NULL;
}

static const char *subject_slot(const struct coh_device_facts *d, const struct coh_peer *p) {
        return d->slot;
}

static const char *subject_unit(const struct coh_device_facts *d, const struct coh_peer *p) {
        return p->unit && p->unit[0] ? p->unit : NULL;
}

/* Indexed by MATCH_*, which is also the order of "match" in coh_policy_to_json(). */
static const struct match_key {
        const char *name;
        enum match_kind kind;
        bool device;  /* a fact about the device: such a rule cannot apply when there is none */
        /* Globs only: the string matched, NULL when the subject has none (matching nothing). */
        const char *(*subject)(const struct coh_device_facts *d, const struct coh_peer *p);
} match_keys[_MATCH_MAX] = {
        [MATCH_VENDOR]      = { "Vendor",     MATCH_KIND_HEX_GLOB,    true,  subject_vendor },
        [MATCH_DEVICE]      = { "Device",     MATCH_KIND_HEX_GLOB,    true,  subject_device },
        [MATCH_CLASS]       = { "Class",      MATCH_KIND_HEX_GLOB,    true,  subject_class  },
        [MATCH_DRIVER]      = { "Driver",     MATCH_KIND_GLOB,        true,  subject_driver },
        [MATCH_SLOT]        = { "Slot",       MATCH_KIND_GLOB,        true,  subject_slot   },
        [MATCH_IOMMU_GROUP] = { "IOMMUGroup", MATCH_KIND_IOMMU_GROUP, true,  NULL           },
        [MATCH_USER]        = { "User",       MATCH_KIND_USER,        false, NULL           },
        [MATCH_GROUP]       = { "Group",      MATCH_KIND_GROUP,       false, NULL           },
        [MATCH_UNIT]        = { "Unit",       MATCH_KIND_GLOB,        false, subject_unit   },
};

struct match {
        unsigned line;   /* 0: the key is absent */
        char *buf;       /* the value as written, split in place into words */
        char **words;
        uint32_t *ids;   /* numeric kinds: what each word resolved to */
        size_t n;
};

struct rule {
        char *file;
        unsigned match_line;       /* the first [Match] header; 0: none */
        struct match match[_MATCH_MAX];
        bool has_device_key;
        enum coh_access access;
        unsigned access_line;      /* 0: Access= not set */
        enum coh_mode mode;
        unsigned mode_line;        /* 0: Mode= not set */
        enum coh_nosnoop nosnoop;
        unsigned nosnoop_line;     /* 0: NoSnoop= not set */
};

enum broker_kind {
        BROKER_MODE,
        BROKER_ACCESS,
        BROKER_ADMIN_GROUP,
        BROKER_UNSIGNED,
        BROKER_SECONDS,            /* whole seconds in the file, a uint64_t of microseconds in the config */
        BROKER_BOOLEAN,
};

static const struct broker_key {
        const char *name;
        const char *json;          /* its name in coh_policy_to_json(); "<json>Rule" is its origin */
        enum broker_kind kind;
        size_t offset;             /* BROKER_UNSIGNED, BROKER_SECONDS, BROKER_BOOLEAN: the field; and the range */
        uint32_t min, max;
} broker_keys[] = {
#define UNSIGNED_KEY(n, j, field, lo, hi) \
        { .name = n, .json = j, .kind = BROKER_UNSIGNED, .offset = offsetof(struct coh_broker_config, field), \
          .min = lo, .max = hi }
#define SECONDS_KEY(n, j, field, lo, hi) \
        { .name = n, .json = j, .kind = BROKER_SECONDS, .offset = offsetof(struct coh_broker_config, field), \
          .min = lo, .max = hi }
#define BOOLEAN_KEY(n, j, field) \
        { .name = n, .json = j, .kind = BROKER_BOOLEAN, .offset = offsetof(struct coh_broker_config, field) }
        { .name = "Mode", .json = "mode", .kind = BROKER_MODE },
        { .name = "Access", .json = "access", .kind = BROKER_ACCESS },
        { .name = "AdminGroup", .json = "adminGroup", .kind = BROKER_ADMIN_GROUP },
        UNSIGNED_KEY("MaxConnections", "maxConnections", max_connections, 1, 65536),
        UNSIGNED_KEY("ReservedAdminConnections", "reservedAdminConnections", reserved_admin_connections, 0, 65536),
        SECONDS_KEY("MessageTimeoutSec", "messageTimeoutSec", message_timeout_usec, 1, 3600),
        UNSIGNED_KEY("MaxConnectionsPerUser", "maxConnectionsPerUser", max_connections_per_user, 1, 65536),
        UNSIGNED_KEY("MaxGrantsPerConnection", "maxGrantsPerConnection", max_grants_per_connection, 1, 65536),
        UNSIGNED_KEY("IdleExitSec", "idleExitSec", idle_exit_sec, 0, 86400),
        SECONDS_KEY("ReleaseTimeoutSec", "releaseTimeoutSec", release_timeout_usec, 1, 86400),
        SECONDS_KEY("RefusalLogIntervalSec", "refusalLogIntervalSec", refusal_log_interval_usec, 0, 3600),
        BOOLEAN_KEY("RevokeKill", "revokeKill", revoke_kill),
#undef UNSIGNED_KEY
#undef SECONDS_KEY
#undef BOOLEAN_KEY
};

struct coh_policy {
        char *conf_file;           /* broker.mode_origin.file and broker.access_origin.file point here */
        struct coh_broker_config broker;
        unsigned broker_lines[ELEMENTSOF(broker_keys)];  /* where each [Broker] key was set; 0: not set */
        struct rule *rules;
        size_t n_rules;
};

/* One load: where its problems go, and the first error, which decides what the load returns. */
struct loader {
        coh_policy_report_t report;
        void *userdata;
        struct coh_policy_error *err;  /* may be NULL */
        int first;                     /* the first error's value; 0 while there is none */
};

/* One file being parsed: the userdata of its coh_ini_parse(). */
struct file_parser {
        struct loader *loader;
        const char *file;
        struct rule *rule;             /* a rule file */
        struct coh_policy *policy;     /* coherencyd.conf */
};

/* One file to parse: path names it in origins and errors, name (its last component) orders it. */
struct source {
        const char *path;
        const char *name;
        const char *text;
        size_t len;
        int error;            /* it could not be read: the load fails with this, at its place in the order */
        const char *ignored;  /* not a rule file: why it is not read (a warning); it masks nothing */
        char *owned_path;
        char *owned_text;
};

struct source_list {
        struct source *items;
        size_t n;
};

#define USEC_PER_SEC UINT64_C(1000000)

static const struct coh_broker_config broker_defaults = {
        .mode = COH_MODE_AUTOMATIC,
        .access = COH_ACCESS_DENY,  /* the daemon hands out devices: only to whom the site says */
        .release_timeout_usec = 30 * USEC_PER_SEC,
        .refusal_log_interval_usec = 10 * USEC_PER_SEC,
        .revoke_kill = false,
        .max_connections = 256,
        .reserved_admin_connections = 8,
        .message_timeout_usec = 30 * USEC_PER_SEC,
        .max_connections_per_user = 32,
        .max_grants_per_connection = 64,
        .idle_exit_sec = 0,
};

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static void error_fill(struct coh_policy_error *e, const char *file, unsigned line, int r, const char *message) {
        snprintf(e->file, sizeof e->file, "%s", file);
        e->line = line;
        snprintf(e->message, sizeof e->message, "%s", message && *message ? message : strerror(-r));
}

/* An error: the load goes on, to find the others, and then fails. Returns r, for callers that stop there. */
static int loader_error(struct loader *l, const char *file, unsigned line, int r, const char *message) {
        struct coh_policy_error e;

        error_fill(&e, file, line, r, message);
        if (l->first == 0) {
                l->first = r;
                if (l->err)
                        *l->err = e;
        }
        if (l->report)
                l->report(COH_POLICY_ERROR, &e, l->userdata);
        return r;
}

__attribute__((format(printf, 4, 5)))
static void loader_warning(struct loader *l, const char *file, unsigned line, const char *fmt, ...) {
        struct coh_policy_error e = { .line = line };
        va_list ap;

        if (!l->report)
                return;
        snprintf(e.file, sizeof e.file, "%s", file);
        va_start(ap, fmt);
        vsnprintf(e.message, sizeof e.message, fmt, ap);
        va_end(ap);
        l->report(COH_POLICY_WARNING, &e, l->userdata);
}

const char *coh_policy_error_format(const struct coh_policy_error *e, char *buf, size_t size) {
        if (e->line > 0)
                snprintf(buf, size, "%s:%u: %s", e->file, e->line, e->message);
        else
                snprintf(buf, size, "%s: %s", e->file, e->message);
        return buf;
}


/* Strict decimal: strtoul() would also take signs, blanks and hex. -ERANGE above max. */
static int parse_u32(const char *s, uint32_t max, uint32_t *ret) {
        uint64_t v = 0;

        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*s - '0');
                if (v > max) {
                        /* Keep scanning: "99999999999x" is not a number at all. */
                        for (; *s; s++)
                                if (*s < '0' || *s > '9')
                                        return -EINVAL;
                        return -ERANGE;
                }
        }
        *ret = (uint32_t) v;
        return 0;
}

/* sysfs writes ids as "0x8086"; operators write them with or without the prefix. */
static const char *skip_hex_prefix(const char *s) {
        return s[0] == '0' && (s[1] == 'x' || s[1] == 'X') ? s + 2 : s;
}

/* getpwnam_r() and getgrnam_r() tell "no such entry" in several ways (see their man page). */
static bool nss_not_found(int r) {
        return r == 0 || r == ENOENT || r == ESRCH || r == EBADF || r == EPERM;
}

/*
 * Names are resolved once, at load: evaluation must not do I/O, and a policy
 * naming a user who does not exist is a mistake to report, not to ignore.
 * Returns 0, -ESRCH when there is no such name, -ERANGE for an out-of-range
 * number, or another negative errno when the lookup itself failed.
 */
static int resolve_user(const char *name, uint32_t *ret) {
        size_t size = 1024;
        int r;

        r = parse_u32(name, UINT32_MAX - 1, ret);  /* (uid_t) -1 is "no user" to the kernel */
        if (r != -EINVAL)
                return r;

        for (;;) {
                _cleanup_free_ char *buf = malloc(size);
                struct passwd pw, *result = NULL;

                if (!buf)
                        return -ENOMEM;
                r = getpwnam_r(name, &pw, buf, size, &result);
                if (r == 0 && result) {
                        *ret = pw.pw_uid;
                        return 0;
                }
                if (r != ERANGE || size >= 1024U * 1024U)
                        break;
                size *= 2;
        }
        return nss_not_found(r) ? -ESRCH : -r;
}

static int resolve_group(const char *name, uint32_t *ret) {
        size_t size = 1024;
        int r;

        r = parse_u32(name, UINT32_MAX - 1, ret);
        if (r != -EINVAL)
                return r;

        for (;;) {
                _cleanup_free_ char *buf = malloc(size);
                struct group gr, *result = NULL;

                if (!buf)
                        return -ENOMEM;
                r = getgrnam_r(name, &gr, buf, size, &result);
                if (r == 0 && result) {
                        *ret = gr.gr_gid;
                        return 0;
                }
                if (r != ERANGE || size >= 1024U * 1024U)
                        break;
                size *= 2;
        }
        return nss_not_found(r) ? -ESRCH : -r;
}

static int resolve_error(int r, const char *what, const char *name, char *err, size_t errlen) {
        switch (r) {
        case -ESRCH:
                return fail(err, errlen, "unknown %s '%s'", what, name);
        case -ERANGE:
                return fail(err, errlen, "invalid %s '%s' (id out of range)", what, name);
        default:
                snprintf(err, errlen, "failed to look up %s '%s': %s", what, name, strerror(-r));
                return r;
        }
}

static int parse_mode(const char *value, enum coh_mode *ret, char *err, size_t errlen) {
        enum coh_mode m = coh_mode_from_string(value);

        if (m < 0)
                return fail(err, errlen, "invalid Mode= value '%s' (expected enable, automatic or force-disable)",
                            value);
        *ret = m;
        return 0;
}

static int parse_access(const char *value, enum coh_access *ret, char *err, size_t errlen) {
        enum coh_access a = coh_access_from_string(value);

        if (a < 0)
                return fail(err, errlen, "invalid Access= value '%s' (expected allow or deny)", value);
        *ret = a;
        return 0;
}

/* The spellings systemd's own units use, and no others: "on", "Yes" and the like are mistakes to report. */
static int parse_boolean(const char *key, const char *value, bool *ret, char *err, size_t errlen) {
        static const char *const yes[] = { "yes", "true", "1" }, *const no[] = { "no", "false", "0" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (streq(value, yes[i])) {
                        *ret = true;
                        return 0;
                }
                if (streq(value, no[i])) {
                        *ret = false;
                        return 0;
                }
        }
        return fail(err, errlen, "invalid %s= value '%s' (expected yes, no, true, false, 1 or 0)", key, value);
}

/* Every assignment is checked the same way before its value is looked at. */
static int check_assignment(const char *section, const char *key, const char *value, unsigned previous_line,
                            char *err, size_t errlen) {
        if (previous_line > 0)
                return fail(err, errlen, "duplicate key '%s' in section [%s] (first set on line %u)",
                            key, section, previous_line);
        if (!*value)
                return fail(err, errlen, "empty value for key '%s' in section [%s]", key, section);
        return 0;
}

static int parse_match_word(const struct match_key *k, const char *word, uint32_t *ret, char *err, size_t errlen) {
        int r;

        switch (k->kind) {
        case MATCH_KIND_IOMMU_GROUP:
                if (parse_u32(word, INT_MAX, ret) < 0)
                        return fail(err, errlen, "invalid %s= value '%s' (expected a non-negative integer)",
                                    k->name, word);
                return 0;
        case MATCH_KIND_USER:
                r = resolve_user(word, ret);
                return r < 0 ? resolve_error(r, "user", word, err, errlen) : 0;
        case MATCH_KIND_GROUP:
                r = resolve_group(word, ret);
                return r < 0 ? resolve_error(r, "group", word, err, errlen) : 0;
        default:
                return 0;  /* globs are kept as written */
        }
}

static int parse_match(const struct match_key *k, struct match *m, const char *value, unsigned line,
                       char *err, size_t errlen) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ char **words = NULL;
        _cleanup_free_ uint32_t *ids = NULL;
        char *save = NULL;
        size_t n = 0;
        int r;

        r = check_assignment("Match", k->name, value, m->line, err, errlen);
        if (r < 0)
                return r;

        buf = strdup(value);
        /* A value of L bytes holds at most (L + 1) / 2 words. */
        words = calloc(strlen(value) / 2 + 1, sizeof *words);
        ids = calloc(strlen(value) / 2 + 1, sizeof *ids);
        if (!buf || !words || !ids) {
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
        }

        for (char *w = strtok_r(buf, WHITESPACE, &save); w; w = strtok_r(NULL, WHITESPACE, &save)) {
                r = parse_match_word(k, w, &ids[n], err, errlen);
                if (r < 0)
                        return r;
                words[n++] = w;
        }

        m->line = line;
        m->buf = TAKE_PTR(buf);
        m->words = TAKE_PTR(words);
        m->ids = TAKE_PTR(ids);
        m->n = n;
        return 0;
}

static int rule_handler(const char *section, const char *key, const char *value, unsigned line, void *userdata,
                        char *err, size_t errlen) {
        struct file_parser *fp = userdata;
        struct rule *rule = fp->rule;
        enum coh_nosnoop nosnoop;
        int r;

        if (streq(section, "Match")) {
                if (!key) {
                        if (rule->match_line == 0)
                                rule->match_line = line;
                        return 0;
                }
                for (size_t i = 0; i < _MATCH_MAX; i++)
                        if (streq(key, match_keys[i].name))
                                return parse_match(&match_keys[i], &rule->match[i], value, line, err, errlen);

        } else if (streq(section, "Policy")) {
                if (!key)
                        return 0;
                if (streq(key, "Mode")) {
                        r = check_assignment(section, key, value, rule->mode_line, err, errlen);
                        if (r < 0)
                                return r;
                        r = parse_mode(value, &rule->mode, err, errlen);
                        if (r < 0)
                                return r;
                        rule->mode_line = line;
                        return 0;
                }
                if (streq(key, "Access")) {
                        r = check_assignment(section, key, value, rule->access_line, err, errlen);
                        if (r < 0)
                                return r;
                        r = parse_access(value, &rule->access, err, errlen);
                        if (r < 0)
                                return r;
                        rule->access_line = line;
                        return 0;
                }
                if (streq(key, "NoSnoop")) {
                        r = check_assignment(section, key, value, rule->nosnoop_line, err, errlen);
                        if (r < 0)
                                return r;
                        nosnoop = coh_nosnoop_from_string(value);
                        if (nosnoop < 0)
                                return fail(err, errlen,
                                            "invalid NoSnoop= value '%s' (expected hardwired-off or capable)", value);
                        rule->nosnoop = nosnoop;
                        rule->nosnoop_line = line;
                        return 0;
                }

        } else
                return fail(err, errlen, "unknown section [%s] (expected [Match] or [Policy])", section);

        return fail(err, errlen, "unknown key '%s' in section [%s]", key, section);
}

static int conf_handler(const char *section, const char *key, const char *value, unsigned line, void *userdata,
                        char *err, size_t errlen) {
        struct file_parser *fp = userdata;
        struct coh_broker_config *broker = &fp->policy->broker;
        unsigned *lines = fp->policy->broker_lines;
        uint32_t v;
        int r;

        if (!streq(section, "Broker"))
                return fail(err, errlen, "unknown section [%s] (expected [Broker])", section);
        if (!key)
                return 0;

        for (size_t i = 0; i < ELEMENTSOF(broker_keys); i++) {
                const struct broker_key *k = &broker_keys[i];

                if (!streq(key, k->name))
                        continue;

                r = check_assignment(section, key, value, lines[i], err, errlen);
                if (r < 0)
                        return r;

                switch (k->kind) {
                case BROKER_MODE:
                        r = parse_mode(value, &broker->mode, err, errlen);
                        if (r < 0)
                                return r;
                        broker->mode_origin = (struct coh_origin) { .file = fp->file, .line = line };
                        break;
                case BROKER_ACCESS:
                        r = parse_access(value, &broker->access, err, errlen);
                        if (r < 0)
                                return r;
                        broker->access_origin = (struct coh_origin) { .file = fp->file, .line = line };
                        break;
                case BROKER_ADMIN_GROUP:
                        r = resolve_group(value, &v);
                        if (r < 0)
                                return resolve_error(r, "group", value, err, errlen);
                        broker->has_admin_group = true;
                        broker->admin_gid = v;
                        break;
                case BROKER_UNSIGNED:
                        if (parse_u32(value, k->max, &v) < 0 || v < k->min)
                                return fail(err, errlen, "invalid %s= value '%s' (expected an integer from %u to %u)",
                                            key, value, k->min, k->max);
                        *(unsigned *) ((uint8_t *) broker + k->offset) = v;
                        break;
                case BROKER_SECONDS:
                        if (parse_u32(value, k->max, &v) < 0 || v < k->min)
                                return fail(err, errlen,
                                            "invalid %s= value '%s' (expected a number of seconds from %u to %u)",
                                            key, value, k->min, k->max);
                        *(uint64_t *) ((uint8_t *) broker + k->offset) = (uint64_t) v * USEC_PER_SEC;
                        break;
                case BROKER_BOOLEAN:
                        r = parse_boolean(key, value, (bool *) ((uint8_t *) broker + k->offset), err, errlen);
                        if (r < 0)
                                return r;
                        break;
                }

                lines[i] = line;
                return 0;
        }

        return fail(err, errlen, "unknown key '%s' in section [%s]", key, section);
}

static void match_done(struct match *m) {
        free(m->buf);
        free(m->words);
        free(m->ids);
}

static void rule_done(struct rule *r) {
        for (size_t i = 0; i < _MATCH_MAX; i++)
                match_done(&r->match[i]);
        free(r->file);
}

void coh_policy_free(struct coh_policy *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_rules; i++)
                rule_done(&p->rules[i]);
        free(p->rules);
        free(p->conf_file);
        free(p);
}

static void coh_policy_freep(struct coh_policy **p) {
        coh_policy_free(*p);
}

static const char *read_error_message(int r) {
        switch (r) {
        case -EFBIG:
                return "file too large";
        case -EBADFD:
                return "not a regular file";
        default:
                return NULL;  /* strerror() says it well enough */
        }
}

static int source_compare(const void *a, const void *b) {
        const struct source *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        return c != 0 ? c : strcmp(x->path, y->path);
}

/* coh_ini_parse()'s errors, with the file they are in. */
static void file_error(unsigned line, int error, const char *message, void *userdata) {
        struct file_parser *fp = userdata;

        (void) loader_error(fp->loader, fp->file, line, error, message);
}

/* Returns 0, or the first error (already reported). */
static int parse_conf(struct coh_policy *p, const struct source *s, struct loader *l) {
        struct file_parser fp = { .loader = l, .policy = p };

        p->conf_file = strdup(s->path);
        if (!p->conf_file)
                return loader_error(l, s->path, 0, -ENOMEM, NULL);
        fp.file = p->conf_file;  /* the broker's origins point at it */

        return coh_ini_parse(s->text, s->len, conf_handler, file_error, &fp);
}

/* A glob that matches whatever it is given: "*", "**", and for ids also "0x*". */
static bool glob_matches_all(const struct match_key *k, const char *word) {
        if (k->kind == MATCH_KIND_HEX_GLOB)
                word = skip_hex_prefix(word);
        else if (k->kind != MATCH_KIND_GLOB)
                return false;  /* ids and names: one each */
        return word[0] != 0 && word[strspn(word, "*")] == 0;
}

/* Whether the key narrows what the rule applies to; *ret_glob is the match-all glob that makes it not. */
static bool match_restricts(const struct match_key *k, const struct match *m, const char **ret_glob) {
        if (m->line == 0)
                return false;
        for (size_t i = 0; i < m->n; i++)
                if (glob_matches_all(k, m->words[i])) {
                        *ret_glob = m->words[i];
                        return false;
                }
        return true;
}

static unsigned first_setting_line(const struct rule *r) {
        unsigned line = 0;
        const unsigned lines[] = { r->access_line, r->mode_line, r->nosnoop_line };

        for (size_t i = 0; i < ELEMENTSOF(lines); i++)
                if (lines[i] > 0 && (line == 0 || lines[i] < line))
                        line = lines[i];
        return line;
}

/*
 * A rule that restricts nothing applies to every device and every VMM, and
 * one that declares NoSnoop= without restricting devices declares it of
 * every device its VMMs ask for, though No-Snoop is a property of a device.
 * Both are valid, and both are far more often a mistake (a [Match] forgotten
 * or misspelt, a glob meant to be narrower) than meant: warnings, which
 * --check-policy prints and the daemon logs. A rule that sets nothing decides
 * nothing and gets none. A rule that matches only on User=, Group= or Unit=
 * is how a site lets its VMMs have devices, and gets none either.
 */
static void rule_warnings(struct loader *l, const struct rule *r) {
        const char *glob = NULL, *glob_key = NULL;
        bool device = false, vmm = false;
        unsigned glob_line = 0;

        if (first_setting_line(r) == 0)
                return;

        for (size_t i = 0; i < _MATCH_MAX; i++) {
                const char *g = NULL;

                if (match_restricts(&match_keys[i], &r->match[i], &g)) {
                        if (match_keys[i].device)
                                device = true;
                        else
                                vmm = true;
                } else if (g && !glob) {
                        glob = g;
                        glob_key = match_keys[i].name;
                        glob_line = r->match[i].line;
                }
        }

        if (!device && !vmm) {
                if (glob)
                        loader_warning(l, r->file, glob_line,
                                       "%s=%s matches everything and no other [Match] key narrows the rule: "
                                       "it applies to every device and every VMM", glob_key, glob);
                else if (r->match_line > 0)
                        loader_warning(l, r->file, r->match_line,
                                       "[Match] without keys: the rule applies to every device and every VMM");
                else
                        loader_warning(l, r->file, first_setting_line(r),
                                       "rule without [Match]: it applies to every device and every VMM");
        } else if (!device && r->nosnoop_line > 0)
                loader_warning(l, r->file, r->nosnoop_line,
                               "NoSnoop= for every device: No-Snoop is a property of a device, so a rule that "
                               "declares it should match devices (Vendor=, Device=, Class=, Slot=)");
}

/* Returns 0, or the first error (already reported). */
static int parse_rule(struct coh_policy *p, const struct source *s, struct loader *l) {
        struct rule *rule = &p->rules[p->n_rules];
        struct file_parser fp = { .loader = l, .file = s->path, .rule = rule };
        int r;

        *rule = (struct rule) {};
        rule->file = strdup(s->path);
        if (!rule->file)
                return loader_error(l, s->path, 0, -ENOMEM, NULL);
        p->n_rules++;  /* from here on coh_policy_free() owns it, whatever happens next */

        r = coh_ini_parse(s->text, s->len, rule_handler, file_error, &fp);
        if (r < 0)
                return r;  /* a key that did not parse is missing: warnings about the rest would mislead */

        for (size_t i = 0; i < _MATCH_MAX; i++)
                if (rule->match[i].line > 0 && match_keys[i].device)
                        rule->has_device_key = true;
        rule_warnings(l, rule);
        return 0;
}

/*
 * Sorts rules (by file name, then path) in place, and parses coherencyd.conf
 * and them in that order, on past errors. Fails with the load's first error.
 */
static int policy_build(const struct source *conf, struct source *rules, size_t n_rules, struct loader *l,
                        struct coh_policy **ret) {
        _cleanup_(coh_policy_freep) struct coh_policy *p = NULL;
        int r;

        p = calloc(1, sizeof *p);
        if (!p)
                return loader_error(l, "", 0, -ENOMEM, NULL);
        p->broker = broker_defaults;

        if (conf) {
                r = parse_conf(p, conf, l);
                if (r == -ENOMEM)
                        return l->first;
        }

        if (n_rules > 0) {
                qsort(rules, n_rules, sizeof *rules, source_compare);
                p->rules = calloc(n_rules, sizeof *p->rules);
                if (!p->rules)
                        return loader_error(l, "", 0, -ENOMEM, NULL);
        }

        for (size_t i = 0; i < n_rules; i++) {
                const struct source *s = &rules[i];

                if (s->ignored) {
                        loader_warning(l, s->path, 0, "%s", s->ignored);
                        continue;
                }
                if (s->error < 0) {
                        (void) loader_error(l, s->path, 0, s->error, read_error_message(s->error));
                        continue;
                }
                /* An empty file (or /dev/null) exists only to mask a vendor file of its name. */
                if (s->len == 0)
                        continue;
                r = parse_rule(p, s, l);
                if (r == -ENOMEM)
                        return l->first;
        }

        if (l->first < 0)
                return l->first;
        *ret = TAKE_PTR(p);
        return 0;
}

static void source_list_done(struct source_list *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].owned_path);
                free(l->items[i].owned_text);
        }
        free(l->items);
}

static const char *last_component(const char *path) {
        const char *s = strrchr(path, '/');

        return s ? s + 1 : path;
}

int coh_policy_load_from_memory(const struct coh_policy_file *conf, const struct coh_policy_file *rules,
                                size_t n_rules, coh_policy_report_t report, void *userdata,
                                struct coh_policy **ret, struct coh_policy_error *err) {
        struct loader l = { .report = report, .userdata = userdata, .err = err };
        _cleanup_free_ struct source *sources = NULL;
        struct source conf_source;

        if (err)
                *err = (struct coh_policy_error) {};

        if (conf) {
                if (!conf->name || (!conf->text && conf->len > 0))
                        return loader_error(&l, "", 0, -EINVAL, "configuration without a name or text");
                conf_source = (struct source) { .path = conf->name, .name = conf->name,
                                                .text = conf->text, .len = conf->len };
        }

        if (n_rules > 0) {
                sources = calloc(n_rules, sizeof *sources);
                if (!sources)
                        return loader_error(&l, "", 0, -ENOMEM, NULL);
        }
        for (size_t i = 0; i < n_rules; i++) {
                if (!rules[i].name || (!rules[i].text && rules[i].len > 0))
                        return loader_error(&l, "", 0, -EINVAL, "rule file without a name or text");
                sources[i] = (struct source) { .path = rules[i].name, .name = last_component(rules[i].name),
                                               .text = rules[i].text, .len = rules[i].len };
        }

        return policy_build(conf ? &conf_source : NULL, sources, n_rules, &l, ret);
}

/*
 * Reads a policy file: a regular file, or /dev/null (a masking symlink).
 * -EBADFD for anything else, -EFBIG beyond POLICY_FILE_MAX.
 */
static int read_policy_file(int dir_fd, const char *name, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, size = 0;
        struct stat st;

        /* O_NONBLOCK: a FIFO must not hang the open; fstat() then turns it away. */
        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3)) {
                *ret = NULL;
                *ret_len = 0;
                return 0;
        }
        if (!S_ISREG(st.st_mode))
                return -EBADFD;

        for (;;) {
                ssize_t k;

                if (len == size) {
                        char *n;

                        if (size > POLICY_FILE_MAX)
                                return -EFBIG;
                        size = size > 0 ? size * 2 : 4096;
                        n = realloc(buf, size);
                        if (!n)
                                return -ENOMEM;
                        buf = n;
                }
                k = read(fd, buf + len, size - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
        }
        if (len > POLICY_FILE_MAX)
                return -EFBIG;

        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/* Whether a rule file of this name is in l already, and so masks one in a later directory. */
static bool source_list_masks(const struct source_list *l, const char *name) {
        for (size_t i = 0; i < l->n; i++)
                if (!l->items[i].ignored && streq(l->items[i].name, name))
                        return true;
        return false;
}

/* Takes *path and *text (both NULL after). */
static int source_list_add(struct source_list *l, char **path, char **text, size_t len, int error,
                           const char *ignored) {
        struct source *items = reallocarray(l->items, l->n + 1, sizeof *items);

        if (!items)
                return -ENOMEM;
        l->items = items;
        l->items[l->n] = (struct source) {
                .path = *path,
                .name = last_component(*path),
                .text = *text,
                .len = len,
                .error = error,
                .ignored = ignored,
                .owned_path = TAKE_PTR(*path),
                .owned_text = TAKE_PTR(*text),
        };
        l->n++;
        return 0;
}

static bool is_rule_file_name(const char *name) {
        size_t n = strlen(name), k = strlen(RULE_SUFFIX);

        return n > k && streq(name + n - k, RULE_SUFFIX);
}

struct names {
        char **v;
        size_t n;
};

static void names_done(struct names *names) {
        for (size_t i = 0; i < names->n; i++)
                free(names->v[i]);
        free(names->v);
}

static int names_add(struct names *names, const char *name) {
        char **v = reallocarray(names->v, names->n + 1, sizeof *v);

        if (!v)
                return -ENOMEM;
        names->v = v;
        names->v[names->n] = strdup(name);
        if (!names->v[names->n])
                return -ENOMEM;
        names->n++;
        return 0;
}

static int name_compare(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The names in dir but hidden ones, sorted: what is said about them then comes in a stable order. */
static int read_names(DIR *d, struct names *ret) {
        struct dirent *de;
        int r;

        for (errno = 0; (de = readdir(d)); errno = 0) {
                /* ".", "..", and hidden files: editors' and package managers' business, as in systemd. */
                if (de->d_name[0] == '.')
                        continue;
                r = names_add(ret, de->d_name);
                if (r < 0)
                        return r;
        }
        if (errno != 0)
                return -errno;
        if (ret->n > 0)
                qsort(ret->v, ret->n, sizeof *ret->v, name_compare);
        return 0;
}

/*
 * Adds dir's entries to l: rule files, except those whose name a rule file
 * in l has already (the config dir goes first, so its files mask the
 * vendor's, which are then not even opened); rule files that cannot be read,
 * with their error; and entries that are not read, with why (a warning, at
 * their place in the order). Those mask nothing: a directory or a FIFO named
 * like a rule file, a dangling link, an entry not named *.policy (a
 * "10-gpu.policy.dpkg-old", a "README", a "10-gpu.conf" meant as a rule).
 * Returns 0, or a negative errno (reported) when the directory could not be read.
 */
static int collect_dir(struct source_list *l, const char *dir, struct loader *loader) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_(names_done) struct names names = {};
        int r;

        d = opendir(dir);
        if (!d) {
                if (errno == ENOENT)
                        return 0;
                return loader_error(loader, dir, 0, -errno, NULL);
        }
        r = read_names(d, &names);
        if (r < 0)
                return loader_error(loader, dir, 0, r, NULL);

        for (size_t i = 0; i < names.n; i++) {
                _cleanup_free_ char *path = NULL, *text = NULL;
                const char *name = names.v[i], *ignored = NULL;
                size_t len = 0;
                int error = 0;

                if (is_rule_file_name(name) && source_list_masks(l, name))
                        continue;

                if (asprintf(&path, "%s/%s", dir, name) < 0) {
                        path = NULL;  /* undefined after a failure */
                        return loader_error(loader, dir, 0, -ENOMEM, NULL);
                }

                if (!is_rule_file_name(name))
                        ignored = "not read: only *" RULE_SUFFIX " files are rule files";
                else {
                        r = read_policy_file(dirfd(d), name, &text, &len);
                        if (r == -ENOENT)
                                ignored = "not read: a dangling symbolic link";
                        else if (r == -EISDIR || r == -EBADFD)
                                ignored = "not read: neither a regular file nor a link to /dev/null";
                        else if (r < 0)
                                error = r;
                }

                r = source_list_add(l, &path, &text, len, error, ignored);
                if (r < 0)
                        return loader_error(loader, dir, 0, r, NULL);
        }

        return 0;
}

int coh_policy_load_report(const char *config_dir, const char *vendor_dir, coh_policy_report_t report,
                           void *userdata, struct coh_policy **ret, struct coh_policy_error *err) {
        _cleanup_(source_list_done) struct source_list rules = {};
        _cleanup_free_ char *conf_path = NULL, *conf_text = NULL, *dropin_dir = NULL;
        struct loader l = { .report = report, .userdata = userdata, .err = err };
        struct source conf = {};
        bool have_conf = false;
        int r;

        if (err)
                *err = (struct coh_policy_error) {};

        /* asprintf() leaves the pointer undefined on failure. */
        if (asprintf(&conf_path, "%s/" CONF_NAME, config_dir) < 0) {
                conf_path = NULL;
                return loader_error(&l, config_dir, 0, -ENOMEM, NULL);
        }
        if (asprintf(&dropin_dir, "%s/policy.d", config_dir) < 0) {
                dropin_dir = NULL;
                return loader_error(&l, config_dir, 0, -ENOMEM, NULL);
        }

        r = read_policy_file(AT_FDCWD, conf_path, &conf_text, &conf.len);
        if (r >= 0) {
                conf.path = conf.name = conf_path;
                conf.text = conf_text;
                have_conf = true;
        } else if (r != -ENOENT)
                (void) loader_error(&l, conf_path, 0, r, read_error_message(r));

        /* A directory that cannot be read is one error; the other directory is read all the same. */
        r = collect_dir(&rules, dropin_dir, &l);
        if (r == -ENOMEM)
                return l.first;
        if (vendor_dir) {
                r = collect_dir(&rules, vendor_dir, &l);
                if (r == -ENOMEM)
                        return l.first;
        }

        return policy_build(have_conf ? &conf : NULL, rules.items, rules.n, &l, ret);
}

/*
 * The daemon's load: the first error is the caller's to log (it knows whether
 * it is fatal), everything else is logged here, as found. Plain records, not
 * COH_MESSAGE_POLICY_FAILED: that one is one record per failed load.
 */
void coh_policy_log_problem(enum coh_policy_severity severity, const struct coh_policy_error *e) {
        char line[32], message[sizeof e->file + sizeof e->message + 64];

        snprintf(line, sizeof line, "%u", e->line);
        coh_policy_error_format(e, message, sizeof message);
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_POLICY_FILE", e->file },
                { "COHERENCYD_POLICY_LINE", line },
                { severity == COH_POLICY_ERROR ? "COHERENCYD_POLICY_ERROR" : "COHERENCYD_POLICY_WARNING", e->message },
        };
        coh_log_record(severity == COH_POLICY_ERROR ? LOG_ERR : LOG_WARNING, NULL, message, fields,
                       ELEMENTSOF(fields));
}

static void log_report(enum coh_policy_severity severity, const struct coh_policy_error *e, void *userdata) {
        bool *first_error_seen = userdata;

        if (severity == COH_POLICY_ERROR && !*first_error_seen) {
                *first_error_seen = true;
                return;
        }
        coh_policy_log_problem(severity, e);
}

int coh_policy_load(const char *config_dir, const char *vendor_dir, struct coh_policy **ret,
                    struct coh_policy_error *err) {
        bool first_error_seen = false;

        return coh_policy_load_report(config_dir, vendor_dir, log_report, &first_error_seen, ret, err);
}

const struct coh_broker_config *coh_policy_broker(const struct coh_policy *p) {
        return &p->broker;
}

size_t coh_policy_n_rules(const struct coh_policy *p) {
        return p->n_rules;
}

static bool ids_contain(const struct match *m, uint32_t id) {
        for (size_t i = 0; i < m->n; i++)
                if (m->ids[i] == id)
                        return true;
        return false;
}

static bool match_globs(const struct match_key *k, const struct match *m, const char *subject) {
        bool hex = k->kind == MATCH_KIND_HEX_GLOB;

        if (!subject)
                return false;
        if (hex)
                subject = skip_hex_prefix(subject);

        for (size_t i = 0; i < m->n; i++)
                if (fnmatch(hex ? skip_hex_prefix(m->words[i]) : m->words[i], subject,
                            hex ? FNM_CASEFOLD : 0) == 0)
                        return true;
        return false;
}

static bool match_one(const struct match_key *k, const struct match *m, const struct coh_device_facts *d,
                      const struct coh_peer *peer) {
        switch (k->kind) {
        case MATCH_KIND_HEX_GLOB:
        case MATCH_KIND_GLOB:
                return match_globs(k, m, k->subject(d, peer));
        case MATCH_KIND_IOMMU_GROUP:
                return d->iommu_group >= 0 && ids_contain(m, (uint32_t) d->iommu_group);
        case MATCH_KIND_USER:
                return ids_contain(m, peer->uid);
        case MATCH_KIND_GROUP:
                if (ids_contain(m, peer->gid))
                        return true;
                for (size_t i = 0; i < peer->n_groups; i++)
                        if (ids_contain(m, peer->groups[i]))
                                return true;
                return false;
        }
        return false;
}

static bool rule_matches(const struct rule *r, const struct coh_device_facts *d, const struct coh_peer *peer) {
        if (!d && r->has_device_key)
                return false;

        for (size_t i = 0; i < _MATCH_MAX; i++) {
                if (r->match[i].line == 0)
                        continue;
                /* Without a peer, a rule about peers cannot be shown to apply. */
                if (!match_keys[i].device && !peer)
                        return false;
                if (!match_one(&match_keys[i], &r->match[i], d, peer))
                        return false;
        }
        return true;
}

void coh_policy_evaluate(const struct coh_policy *p, const struct coh_device_facts *device,
                         const struct coh_peer *peer, struct coh_policy_result *ret) {
        bool have_access = false, have_mode = false, have_nosnoop = false;

        *ret = (struct coh_policy_result) {
                .access = p->broker.access,
                .access_origin = p->broker.access_origin,
                .mode = p->broker.mode,
                .mode_origin = p->broker.mode_origin,
                .nosnoop = COH_NOSNOOP_CAPABLE,
        };

        /* Each setting independently: a rule that sets only NoSnoop= must not hide a later rule's Mode=. */
        for (size_t i = 0; i < p->n_rules && !(have_access && have_mode && have_nosnoop); i++) {
                const struct rule *r = &p->rules[i];
                bool wants_access = !have_access && r->access_line > 0,
                     wants_mode = !have_mode && r->mode_line > 0,
                     wants_nosnoop = !have_nosnoop && r->nosnoop_line > 0;

                if (!(wants_access || wants_mode || wants_nosnoop) || !rule_matches(r, device, peer))
                        continue;

                if (wants_access) {
                        ret->access = r->access;
                        ret->access_origin = (struct coh_origin) { .file = r->file, .line = r->access_line };
                        have_access = true;
                }
                if (wants_mode) {
                        ret->mode = r->mode;
                        ret->mode_origin = (struct coh_origin) { .file = r->file, .line = r->mode_line };
                        have_mode = true;
                }
                if (wants_nosnoop) {
                        ret->nosnoop = r->nosnoop;
                        ret->nosnoop_origin = (struct coh_origin) { .file = r->file, .line = r->nosnoop_line };
                        have_nosnoop = true;
                }
        }
}

/*
 * The user's passwd entry, by name or by uid: 0, -ESRCH when there is none,
 * -ERANGE for a number that is no uid, another negative errno when the lookup
 * failed. *ret_name (allocated) is NULL and *ret_gid untouched for a uid
 * without an entry.
 */
static int lookup_passwd(const char *user, uid_t *ret_uid, gid_t *ret_gid, char **ret_name) {
        size_t size = 1024;
        uint32_t uid;
        bool numeric;
        int r;

        r = parse_u32(user, UINT32_MAX - 1, &uid);  /* (uid_t) -1 is "no user" to the kernel */
        if (r == -ERANGE)
                return r;
        numeric = r >= 0;

        for (;;) {
                _cleanup_free_ char *buf = malloc(size);
                struct passwd pw, *result = NULL;

                if (!buf)
                        return -ENOMEM;
                r = numeric ? getpwuid_r((uid_t) uid, &pw, buf, size, &result)
                            : getpwnam_r(user, &pw, buf, size, &result);
                if (r == 0 && result) {
                        char *name = strdup(pw.pw_name);

                        if (!name)
                                return -ENOMEM;
                        *ret_uid = pw.pw_uid;
                        *ret_gid = pw.pw_gid;
                        *ret_name = name;
                        return 0;
                }
                if (r != ERANGE || size >= 1024U * 1024U)
                        break;
                size *= 2;
        }
        if (!nss_not_found(r))
                return -r;
        if (!numeric)
                return -ESRCH;
        /* A process may well run as a uid the user database does not know. */
        *ret_uid = (uid_t) uid;
        *ret_name = NULL;
        return 0;
}

int coh_peer_from_names(const char *user, const char *group, const char *unit, struct coh_peer *ret,
                        gid_t **ret_groups) {
        _cleanup_free_ char *name = NULL;
        _cleanup_free_ gid_t *groups = NULL;
        uid_t uid = 0;
        gid_t gid = 0;
        bool have_gid = false;
        int n = 0, r;

        if (!user || !ret || !ret_groups)
                return -EINVAL;
        /* Names as a client sent them: an empty one names nobody. */
        if (!*user)
                return -ESRCH;
        if (group && !*group)
                return -ENOENT;

        r = lookup_passwd(user, &uid, &gid, &name);
        if (r == -ERANGE)
                return -ESRCH;
        if (r < 0)
                return r;
        have_gid = name != NULL;

        if (group) {
                uint32_t g;

                r = resolve_group(group, &g);
                if (r == -ESRCH || r == -ERANGE)
                        return -ENOENT;
                if (r < 0)
                        return r;
                gid = g;
                have_gid = true;
        }

        /* A uid without a user entry has no primary group to fall back to. */
        if (!have_gid)
                return -ESRCH;

        /* As initgroups() would set them up for a process of this user running with this group. */
        if (name) {
                for (n = 16;;) {
                        int k = n;
                        gid_t *a = reallocarray(groups, (size_t) n, sizeof *a);

                        if (!a)
                                return -ENOMEM;
                        groups = a;
                        if (getgrouplist(name, gid, groups, &k) >= 0) {
                                n = k;
                                break;
                        }
                        /* Too small: k says how many there are (glibc), or double when it does not. */
                        if (n >= 65536)
                                return -E2BIG;
                        n = k > n ? k : n * 2;
                }
        }

        *ret = (struct coh_peer) {
                .pid = 0,
                .uid = uid,
                .gid = gid,
                .groups = groups,
                .n_groups = (size_t) n,
                .unit = unit,
        };
        *ret_groups = TAKE_PTR(groups);
        return 0;
}

const char *coh_origin_format(const struct coh_origin *o, char *buf, size_t size) {
        struct coh_strbuf sb;

        /* Three per device on every request, for its record (request.c): without snprintf(). */
        coh_strbuf_init(&sb, buf, size);
        if (!o || !o->file)
                coh_strbuf_puts(&sb, "default");
        else {
                coh_strbuf_puts(&sb, o->file);
                coh_strbuf_puts(&sb, ":");
                coh_strbuf_uint(&sb, o->line);
        }
        return buf;
}

/* Consumes v in every case; NULL v is an allocation that failed already. */
static int json_add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int json_add_origin(json_object *o, const char *key, const struct coh_origin *origin) {
        char buf[PATH_MAX + 16];

        return json_add(o, key, json_object_new_string(coh_origin_format(origin, buf, sizeof buf)));
}

/* A [Broker] key's value as GetPolicy shows it: seconds as seconds; NULL for an unset AdminGroup= (or no memory). */
static json_object *broker_value_to_json(const struct coh_broker_config *b, const struct broker_key *k) {
        const uint8_t *field = (const uint8_t *) b + k->offset;

        switch (k->kind) {
        case BROKER_MODE:
                return json_object_new_string(coh_mode_to_string(b->mode));
        case BROKER_ACCESS:
                return json_object_new_string(coh_access_to_string(b->access));
        case BROKER_ADMIN_GROUP:
                return b->has_admin_group ? json_object_new_int64(b->admin_gid) : NULL;
        case BROKER_UNSIGNED:
                return json_object_new_int64(*(const unsigned *) field);
        case BROKER_SECONDS:
                return json_object_new_int64((int64_t) (*(const uint64_t *) field / USEC_PER_SEC));
        case BROKER_BOOLEAN:
                return json_object_new_boolean(*(const bool *) field);
        }
        return NULL;
}

/* Every key, and beside it "<key>Rule": the coherencyd.conf line that set it, or "default". */
static json_object *broker_to_json(const struct coh_policy *p) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(broker_keys); i++) {
                const struct broker_key *k = &broker_keys[i];
                const struct coh_origin origin = {
                        .file = p->broker_lines[i] > 0 ? p->conf_file : NULL,
                        .line = p->broker_lines[i],
                };
                json_object *v = broker_value_to_json(&p->broker, k);
                char name[64];
                int r;

                if (!v && k->kind == BROKER_ADMIN_GROUP && !p->broker.has_admin_group)
                        r = json_object_object_add(o, k->json, NULL);  /* null: nobody but root */
                else
                        r = json_add(o, k->json, v);
                snprintf(name, sizeof name, "%sRule", k->json);
                if (r < 0 || json_add_origin(o, name, &origin) < 0) {
                        json_object_put(o);
                        return NULL;
                }
        }
        return o;
}

static json_object *match_to_json(const struct rule *r) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        for (size_t i = 0; i < _MATCH_MAX; i++) {
                const struct match *m = &r->match[i];
                json_object *a;

                if (m->line == 0)
                        continue;
                a = json_object_new_array_ext((int) m->n);
                if (json_add(o, match_keys[i].name, a) < 0)
                        goto fail;
                /* As written (names, not ids): this is what the operator has to find in the file. */
                for (size_t k = 0; k < m->n; k++) {
                        json_object *w = json_object_new_string(m->words[k]);

                        if (!w || json_object_array_add(a, w) < 0) {
                                json_object_put(w);
                                goto fail;
                        }
                }
        }
        return o;

fail:
        json_object_put(o);
        return NULL;
}

static json_object *rule_to_json(const struct rule *r) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (json_add(o, "file", json_object_new_string(r->file)) < 0 ||
            json_add(o, "match", match_to_json(r)) < 0)
                goto fail;
        if (r->access_line > 0 &&
            (json_add(o, "access", json_object_new_string(coh_access_to_string(r->access))) < 0 ||
             json_add_origin(o, "accessRule", &(struct coh_origin) { r->file, r->access_line }) < 0))
                goto fail;
        if (r->mode_line > 0 &&
            (json_add(o, "mode", json_object_new_string(coh_mode_to_string(r->mode))) < 0 ||
             json_add_origin(o, "modeRule", &(struct coh_origin) { r->file, r->mode_line }) < 0))
                goto fail;
        if (r->nosnoop_line > 0 &&
            (json_add(o, "noSnoop", json_object_new_string(coh_nosnoop_to_string(r->nosnoop))) < 0 ||
             json_add_origin(o, "noSnoopRule", &(struct coh_origin) { r->file, r->nosnoop_line }) < 0))
                goto fail;
        return o;

fail:
        json_object_put(o);
        return NULL;
}

json_object *coh_policy_to_json(const struct coh_policy *p) {
        json_object *o = json_object_new_object(), *rules = json_object_new_array_ext((int) p->n_rules);

        if (!o || !rules) {
                json_object_put(o);
                json_object_put(rules);
                return NULL;
        }
        if (json_add(o, "broker", broker_to_json(p)) < 0) {
                json_object_put(rules);
                goto fail;
        }
        if (json_add(o, "rules", rules) < 0)
                goto fail;
        for (size_t i = 0; i < p->n_rules; i++) {
                json_object *r = rule_to_json(&p->rules[i]);

                if (!r || json_object_array_add(rules, r) < 0) {
                        json_object_put(r);
                        goto fail;
                }
        }
        return o;

fail:
        json_object_put(o);
        return NULL;
}
