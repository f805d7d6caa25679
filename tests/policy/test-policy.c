/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ini.h"
#include "policy.h"

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define CONF "/etc/coherencyd/coherencyd.conf"
#define NO_SUCH_USER "coherencyd-test-no-such-user"
#define NO_SUCH_GROUP "coherencyd-test-no-such-group"

static const gid_t peer_groups[] = { 27, 0 };

/* A VMM running as uid 1000 in its own group, also in groups 27 and 0 (root). */
static const struct coh_peer peer = {
        .pid = 4242,
        .uid = 1000,
        .gid = 1000,
        .groups = peer_groups,
        .n_groups = ELEMENTSOF(peer_groups),
        .unit = "qemu-vm1.service",
};

static const struct coh_device_facts device = {
        .slot = "0000:01:00.0",
        .vendor = "0x8086",
        .device = "0x11e8",
        .class = "0x030000",
        .driver = "vfio-pci",
        .iommu = "dmar0",
        .iommu_group = 12,
        .iommu_type = COH_IOMMU_INTEL,
        .iommu_enforces = true,
};

static struct coh_policy_file file(const char *name, const char *text) {
        return (struct coh_policy_file) { .name = name, .text = text, .len = text ? strlen(text) : 0 };
}

static struct coh_policy *load_ok(const char *conf, const struct coh_policy_file *rules, size_t n_rules) {
        struct coh_policy_file c = file(CONF, conf);
        struct coh_policy_error err;
        struct coh_policy *p = NULL;
        int r;

        r = coh_policy_load_from_memory(conf ? &c : NULL, rules, n_rules, NULL, NULL, &p, &err);
        if (r < 0)
                fail_msg("load failed: %s:%u: %s (%s)", err.file, err.line, err.message, strerror(-r));
        assert_non_null(p);
        return p;
}

/* Every problem a load reports, one per line: "E file:line: message" or "W ...", with prefix cut off the paths. */
struct reports {
        const char *prefix;
        unsigned errors, warnings;
        char text[16384];
};

static void record_report(enum coh_policy_severity severity, const struct coh_policy_error *e, void *userdata) {
        struct reports *r = userdata;
        struct coh_policy_error copy = *e;
        size_t n = strlen(r->text), k = r->prefix ? strlen(r->prefix) : 0;
        char buf[sizeof e->file + sizeof e->message + 16];

        if (k > 0 && strncmp(e->file, r->prefix, k) == 0)
                memmove(copy.file, copy.file + k, strlen(copy.file + k) + 1);
        if (severity == COH_POLICY_ERROR)
                r->errors++;
        else
                r->warnings++;
        snprintf(r->text + n, sizeof r->text - n, "%c %s\n", severity == COH_POLICY_ERROR ? 'E' : 'W',
                 coh_policy_error_format(&copy, buf, sizeof buf));
}

/* Loads from memory, and returns what it reported; *ret_r is what it returned. */
static struct coh_policy *load_reported(const char *conf, const struct coh_policy_file *rules, size_t n_rules,
                                        struct reports *reports, int *ret_r, struct coh_policy_error *err) {
        struct coh_policy_file c = file(CONF, conf);
        struct coh_policy *p = NULL;

        *reports = (struct reports) {};
        *ret_r = coh_policy_load_from_memory(conf ? &c : NULL, rules, n_rules, record_report, reports, &p, err);
        return p;
}

static const char *origin(const struct coh_origin *o) {
        static char buf[4200];

        return coh_origin_format(o, buf, sizeof buf);
}

/* ---------------------------------------------------------------------------------------------- */
/* The tokenizer */

struct ini_record {
        char text[8192];
};

static int ini_record_handler(const char *section, const char *key, const char *value, unsigned line,
                              void *userdata, char *err, size_t errlen) {
        struct ini_record *rec = userdata;
        size_t n = strlen(rec->text);

        if (key)
                snprintf(rec->text + n, sizeof rec->text - n, "%u:[%s]<%s>=<%s>\n", line, section, key, value);
        else
                snprintf(rec->text + n, sizeof rec->text - n, "%u:[%s]\n", line, section);
        return 0;
}

/* Errors go into the same record, in the order they come. */
static void ini_record_error(unsigned line, int error, const char *message, void *userdata) {
        struct ini_record *rec = userdata;
        size_t n = strlen(rec->text);

        snprintf(rec->text + n, sizeof rec->text - n, "%u: error %d: %s\n", line, -error, message);
}

static void assert_ini(const char *text, size_t len, const char *expected) {
        struct ini_record rec = {};

        assert_int_equal(coh_ini_parse(text, len, ini_record_handler, ini_record_error, &rec), 0);
        assert_string_equal(rec.text, expected);
}

static void test_ini_tokens(void **state) {
        static const char text[] =
                "\xef\xbb\xbf# comment\n"
                "   ; another comment\n"
                "\n"
                "[Section One]\n"
                "  Key  =  some value  \r\n"
                "Empty=\n"
                "Eq=a=b\n"
                "\t\n"
                "[Two]\n"
                "Last=no newline";

        assert_ini(text, strlen(text),
                   "4:[Section One]\n"
                   "5:[Section One]<Key>=<some value>\n"
                   "6:[Section One]<Empty>=<>\n"
                   "7:[Section One]<Eq>=<a=b>\n"
                   "9:[Two]\n"
                   "10:[Two]<Last>=<no newline>\n");
        assert_ini(NULL, 0, "");
        assert_ini("\n\n", 2, "");
        /* No continuation: a trailing backslash is part of the value. */
        assert_ini("[A]\nK=v \\\nL=w\n", 14, "1:[A]\n2:[A]<K>=<v \\>\n3:[A]<L>=<w>\n");
}

static void test_ini_line_max(void **state) {
        char text[COH_INI_LINE_MAX + 64];
        struct ini_record rec = {};
        size_t n;

        /* Exactly COH_INI_LINE_MAX bytes, not counting the newline, is fine. */
        n = (size_t) snprintf(text, sizeof text, "[A]\nK=");
        memset(text + n, 'x', COH_INI_LINE_MAX - 2);
        n += COH_INI_LINE_MAX - 2;
        text[n++] = '\n';
        assert_int_equal(coh_ini_parse(text, n, ini_record_handler, ini_record_error, &rec), 0);

        text[n - 1] = 'x';
        text[n++] = '\n';
        memcpy(text + n, "L=1\n", 4);
        n += 4;
        rec = (struct ini_record) {};
        assert_int_equal(coh_ini_parse(text, n, ini_record_handler, ini_record_error, &rec), -EINVAL);
        /* The parse goes on past it. */
        assert_string_equal(rec.text,
                            "1:[A]\n"
                            "2: error 22: line too long (more than 4096 bytes)\n"
                            "3:[A]<L>=<1>\n");
}

static int ini_reject_handler(const char *section, const char *key, const char *value, unsigned line,
                              void *userdata, char *err, size_t errlen) {
        if (key && strcmp(key, "Bad") == 0) {
                snprintf(err, errlen, "no '%s' here", key);
                return -EBADMSG;
        }
        return 0;
}

/* An error other than -EINVAL is not about the line: the parse stops there. */
static void test_ini_handler_error(void **state) {
        static const char text[] = "[A]\nGood=1\n\nBad=2\nBad=3\n";
        struct ini_record rec = {};

        assert_int_equal(coh_ini_parse(text, strlen(text), ini_reject_handler, ini_record_error, &rec), -EBADMSG);
        assert_string_equal(rec.text, "4: error 74: no 'Bad' here\n");
}

static int ini_refuse_section_handler(const char *section, const char *key, const char *value, unsigned line,
                                      void *userdata, char *err, size_t errlen) {
        if (!key && strcmp(section, "Refused") == 0) {
                snprintf(err, errlen, "no [%s] here", section);
                return -EINVAL;
        }
        return ini_record_handler(section, key, value, line, userdata, err, errlen);
}

/*
 * One parse names every mistake, in line order; the assignments under a
 * header that was refused are skipped (its error says it all), and so are
 * those after an assignment that came before any header.
 */
static void test_ini_goes_on_after_errors(void **state) {
        static const char text[] =
                "Key=before\n"
                "Other=skipped too\n"
                "[A]\n"
                "Good=1\n"
                "junk\n"
                "Mode=automatic   # enable | automatic | force-disable\n"
                "Vendor=8086;intel\n"
                "[Bad\n"
                "Skipped=1\n"
                "[Refused]\n"
                "Skipped=2\n"
                "[B]   # the second one\n"
                "Skipped=3\n"
                "[C]\n"
                "# a comment, and ; another\n"
                "Last=ok\n";
        struct ini_record rec = {};

        assert_int_equal(coh_ini_parse(text, strlen(text), ini_refuse_section_handler, ini_record_error, &rec),
                         -EINVAL);
        assert_string_equal(rec.text,
                            "1: error 22: key 'Key' before any [Section] header\n"
                            "3:[A]\n"
                            "4:[A]<Good>=<1>\n"
                            "5: error 22: expected [Section], Key=Value or a comment\n"
                            "6: error 22: '#' in the value of Mode=: it starts a comment only at the start of a "
                            "line (as in systemd unit files); put the comment on a line of its own\n"
                            "7: error 22: ';' in the value of Vendor=: it starts a comment only at the start of a "
                            "line (as in systemd unit files); put the comment on a line of its own\n"
                            "8: error 22: invalid section header, expected [Name]\n"
                            "10: error 22: no [Refused] here\n"
                            "12: error 22: invalid section header: '#' starts a comment only at the start of a "
                            "line (as in systemd unit files); put the comment on a line of its own\n"
                            "14:[C]\n"
                            "16:[C]<Last>=<ok>\n");
}

/* ---------------------------------------------------------------------------------------------- */
/* coherencyd.conf */

static void test_defaults(void **state) {
        struct coh_policy *p = load_ok(NULL, NULL, 0);
        const struct coh_broker_config *b = coh_policy_broker(p);
        struct coh_policy_result res;

        assert_int_equal(b->mode, COH_MODE_AUTOMATIC);
        assert_null(b->mode_origin.file);
        assert_false(b->has_admin_group);
        assert_int_equal(b->max_connections, 256);
        assert_int_equal(b->max_connections_per_user, 32);
        assert_int_equal(b->max_grants_per_connection, 64);
        assert_int_equal(b->idle_exit_sec, 0);
        assert_int_equal(b->access, COH_ACCESS_DENY);
        assert_null(b->access_origin.file);
        assert_int_equal(b->access_origin.line, 0);
        assert_true(b->release_timeout_usec == UINT64_C(30000000));
        assert_false(b->revoke_kill);
        assert_int_equal(coh_policy_n_rules(p), 0);

        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.access, COH_ACCESS_DENY);
        assert_string_equal(origin(&res.access_origin), "default");
        assert_int_equal(res.mode, COH_MODE_AUTOMATIC);
        assert_string_equal(origin(&res.mode_origin), "default");
        assert_int_equal(res.nosnoop, COH_NOSNOOP_CAPABLE);
        assert_string_equal(origin(&res.nosnoop_origin), "default");
        coh_policy_free(p);

        /* An empty coherencyd.conf is the same as none. */
        p = load_ok("", NULL, 0);
        coh_policy_evaluate(p, &device, &peer, &res);
        assert_string_equal(origin(&res.mode_origin), "default");
        assert_int_equal(res.access, COH_ACCESS_DENY);
        assert_string_equal(origin(&res.access_origin), "default");
        /* So is one with an empty [Broker]; GetInfo (no device) and no peer see the same. */
        coh_policy_free(p);
        p = load_ok("[Broker]\n", NULL, 0);
        b = coh_policy_broker(p);
        assert_int_equal(b->access, COH_ACCESS_DENY);
        assert_true(b->release_timeout_usec == UINT64_C(30000000));
        assert_false(b->revoke_kill);
        coh_policy_evaluate(p, NULL, NULL, &res);
        assert_int_equal(res.access, COH_ACCESS_DENY);
        assert_string_equal(origin(&res.access_origin), "default");
        coh_policy_free(p);
}

static void test_conf(void **state) {
        struct coh_policy *p = load_ok(
                "# site settings\n"
                "[Broker]\n"
                "Mode = force-disable\n"
                "AdminGroup=root\n"
                "MaxConnections=1\n"
                "MaxConnectionsPerUser=65536\n"
                "MaxGrantsPerConnection=7\n"
                "IdleExitSec=86400\n"
                "Access=allow\n"
                "ReleaseTimeoutSec=86400\n"
                "RevokeKill=yes\n",
                NULL, 0);
        const struct coh_broker_config *b = coh_policy_broker(p);
        struct coh_policy_result res;

        assert_int_equal(b->mode, COH_MODE_FORCE_DISABLE);
        assert_string_equal(origin(&b->mode_origin), CONF ":3");
        assert_true(b->has_admin_group);
        assert_int_equal(b->admin_gid, 0);
        assert_int_equal(b->max_connections, 1);
        assert_int_equal(b->max_connections_per_user, 65536);
        assert_int_equal(b->max_grants_per_connection, 7);
        assert_int_equal(b->idle_exit_sec, 86400);
        assert_int_equal(b->access, COH_ACCESS_ALLOW);
        assert_string_equal(origin(&b->access_origin), CONF ":9");
        assert_true(b->release_timeout_usec == UINT64_C(86400) * 1000000);
        assert_true(b->revoke_kill);

        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.mode, COH_MODE_FORCE_DISABLE);
        assert_string_equal(origin(&res.mode_origin), CONF ":3");
        assert_string_equal(origin(&res.nosnoop_origin), "default");
        assert_int_equal(res.access, COH_ACCESS_ALLOW);
        assert_string_equal(origin(&res.access_origin), CONF ":9");
        coh_policy_free(p);

        p = load_ok("[Broker]\nAdminGroup=27\nIdleExitSec=0\n", NULL, 0);
        b = coh_policy_broker(p);
        assert_true(b->has_admin_group);
        assert_int_equal(b->admin_gid, 27);
        assert_int_equal(b->mode, COH_MODE_AUTOMATIC);
        assert_null(b->mode_origin.file);
        assert_int_equal(b->access, COH_ACCESS_DENY);
        assert_null(b->access_origin.file);
        coh_policy_free(p);
}

/* ReleaseTimeoutSec= in whole seconds, kept in microseconds; RevokeKill= in the spellings systemd's units use. */
static void test_conf_release_and_kill(void **state) {
        static const struct {
                const char *text;
                uint64_t release_timeout_usec;
                bool revoke_kill;
        } cases[] = {
                { "[Broker]\nReleaseTimeoutSec=1\n", UINT64_C(1000000), false },
                { "[Broker]\nReleaseTimeoutSec = 30\n", UINT64_C(30000000), false },
                { "[Broker]\nReleaseTimeoutSec=0600\n", UINT64_C(600000000), false },
                { "[Broker]\nReleaseTimeoutSec=86400\n", UINT64_C(86400000000), false },
                { "[Broker]\nRevokeKill=yes\n", UINT64_C(30000000), true },
                { "[Broker]\nRevokeKill=true\n", UINT64_C(30000000), true },
                { "[Broker]\nRevokeKill=1\n", UINT64_C(30000000), true },
                { "[Broker]\nRevokeKill=no\n", UINT64_C(30000000), false },
                { "[Broker]\nRevokeKill=false\n", UINT64_C(30000000), false },
                { "[Broker]\nRevokeKill=0\n", UINT64_C(30000000), false },
                { "[Broker]\nRevokeKill=yes\nReleaseTimeoutSec=5\n", UINT64_C(5000000), true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct coh_policy *p = load_ok(cases[i].text, NULL, 0);
                const struct coh_broker_config *b = coh_policy_broker(p);

                if (b->release_timeout_usec != cases[i].release_timeout_usec || b->revoke_kill != cases[i].revoke_kill)
                        fail_msg("%s: expected %llu us, kill %d; got %llu us, kill %d", cases[i].text,
                                 (unsigned long long) cases[i].release_timeout_usec, cases[i].revoke_kill,
                                 (unsigned long long) b->release_timeout_usec, b->revoke_kill);
                /* Neither touches the decision settings. */
                assert_int_equal(b->access, COH_ACCESS_DENY);
                assert_int_equal(b->mode, COH_MODE_AUTOMATIC);
                coh_policy_free(p);
        }
}

/* A rule that sets only NoSnoop= leaves Mode= to coherencyd.conf, which is then named as the origin. */
static void test_conf_fallback(void **state) {
        const struct coh_policy_file rules[] = {
                file("/etc/coherencyd/policy.d/50-nic.policy",
                     "[Match]\nVendor=8086\n\n[Policy]\nNoSnoop=hardwired-off\n"),
        };
        struct coh_policy *p = load_ok("[Broker]\n\n\nMode=enable\n", rules, ELEMENTSOF(rules));
        struct coh_policy_result res;

        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.mode, COH_MODE_ENABLE);
        assert_string_equal(origin(&res.mode_origin), CONF ":4");
        assert_int_equal(res.nosnoop, COH_NOSNOOP_HARDWIRED_OFF);
        assert_string_equal(origin(&res.nosnoop_origin), "/etc/coherencyd/policy.d/50-nic.policy:5");
        coh_policy_free(p);
}

/* ---------------------------------------------------------------------------------------------- */
/* Matching */

struct match_case {
        const char *match;   /* the [Match] section's body */
        bool expected;
};

static bool rule_matches(const char *match, const struct coh_device_facts *d, const struct coh_peer *pr) {
        char text[1024];
        struct coh_policy_file f;
        struct coh_policy *p;
        struct coh_policy_result res;

        snprintf(text, sizeof text, "[Match]\n%s\n[Policy]\nMode=enable\n", match);
        f = file("/x/10-test.policy", text);
        p = load_ok(NULL, &f, 1);
        coh_policy_evaluate(p, d, pr, &res);
        coh_policy_free(p);
        return res.mode == COH_MODE_ENABLE;
}

static void assert_matches(const struct match_case *cases, size_t n, const struct coh_device_facts *d,
                           const struct coh_peer *pr) {
        for (size_t i = 0; i < n; i++)
                if (rule_matches(cases[i].match, d, pr) != cases[i].expected)
                        fail_msg("[Match] %s: expected %s", cases[i].match,
                                 cases[i].expected ? "a match" : "no match");
}

static void test_match_device_keys(void **state) {
        static const struct match_case cases[] = {
                { "Vendor=8086", true },
                { "Vendor=0x8086", true },
                { "Vendor=0X8086", true },
                { "Vendor=10de", false },
                { "Vendor=0x10de", false },
                { "Vendor=10de 1002 80*", true },
                { "Vendor=80?6", true },
                { "Vendor=0x80[0-9]6", true },
                { "Vendor=0x", false },
                { "Vendor=0x*", true },
                { "Vendor=808", false },
                { "Device=11E8", true },
                { "Device=0X11E?", true },
                { "Device=1234", false },
                { "Class=0x03*", true },
                { "Class=030000", true },
                { "Class=0x02*", false },
                { "Driver=vfio-*", true },
                { "Driver=vfio-pci", true },
                { "Driver=VFIO-PCI", false },  /* only the ids are case-insensitive */
                { "Driver=nvme vfio-pci", true },
                { "Driver=0xvfio-pci", false },  /* and only they lose a "0x" */
                { "Slot=0000:01:00.*", true },
                { "Slot=0000:02:* 0000:03:00.0", false },
                { "Slot=*:01:00.0", true },
                { "IOMMUGroup=12", true },
                { "IOMMUGroup=3 12", true },
                { "IOMMUGroup=1", false },
                { "IOMMUGroup=012", true },
                { "Vendor=8086\nDevice=11e8\nClass=0x030000\nDriver=vfio-pci\nSlot=0000:01:00.0\nIOMMUGroup=12", true },
                { "Vendor=8086\nDevice=11e8\nClass=0x030000\nDriver=vfio-pci\nSlot=0000:01:00.0\nIOMMUGroup=13", false },
                { "", true },
        };

        assert_matches(cases, ELEMENTSOF(cases), &device, &peer);
}

/* The facts may carry upper-case hex (a simulated tree written by hand): still the same id. */
static void test_match_hex_case(void **state) {
        static const struct match_case cases[] = {
                { "Vendor=abcd", true },
                { "Vendor=0xABcd", true },
                { "Vendor=AB*", true },
                { "Device=0x00ff", true },
                { "Class=0x0C03*", true },
        };
        struct coh_device_facts d = device;

        strcpy(d.vendor, "0XABCD");
        strcpy(d.device, "0x00FF");
        strcpy(d.class, "0x0c0330");
        assert_matches(cases, ELEMENTSOF(cases), &d, &peer);
}

static void test_match_no_iommu_group_no_driver(void **state) {
        static const struct match_case cases[] = {
                { "IOMMUGroup=0", false },
                { "IOMMUGroup=12", false },
                { "Driver=*", false },  /* unbound */
                { "Slot=*", true },
        };
        struct coh_device_facts d = device;

        d.iommu_group = -1;
        d.driver[0] = 0;
        assert_matches(cases, ELEMENTSOF(cases), &d, &peer);
}

static void test_match_peer_keys(void **state) {
        static const struct match_case cases[] = {
                { "User=1000", true },
                { "User=root", false },
                { "User=root 1000", true },
                { "User=0", false },
                { "Group=1000", true },          /* primary group */
                { "Group=root", true },          /* supplementary group 0 */
                { "Group=27", true },            /* supplementary group 27 */
                { "Group=5 6", false },
                { "Unit=qemu-*.service", true },
                { "Unit=qemu-vm1.service", true },
                { "Unit=libvirt* *.scope", false },
                { "Unit=*", true },
                { "User=1000\nGroup=root\nUnit=qemu-*", true },
                { "User=1000\nGroup=root\nUnit=crosvm-*", false },
                { "Vendor=8086\nUser=1001", false },
                { "Vendor=8086\nUser=1000", true },
        };

        assert_matches(cases, ELEMENTSOF(cases), &device, &peer);
}

static void test_match_root_peer(void **state) {
        static const struct match_case cases[] = {
                { "User=root", true },
                { "User=0", true },
                { "Group=root", true },
                { "Group=1000", false },
                { "Unit=*", false },  /* no unit: a Unit= rule never applies */
                { "User=root\nUnit=*", false },
        };
        const struct coh_peer root = { .pid = 1, .uid = 0, .gid = 0, .unit = NULL };

        assert_matches(cases, ELEMENTSOF(cases), &device, &root);
}

static void test_match_absent_section(void **state) {
        const struct coh_policy_file rules[] = {
                file("/x/10-all.policy", "[Policy]\nMode=force-disable\n"),
        };
        struct coh_policy *p = load_ok(NULL, rules, ELEMENTSOF(rules));
        struct coh_policy_result res;

        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.mode, COH_MODE_FORCE_DISABLE);
        assert_string_equal(origin(&res.mode_origin), "/x/10-all.policy:2");
        coh_policy_evaluate(p, NULL, &peer, &res);
        assert_int_equal(res.mode, COH_MODE_FORCE_DISABLE);
        coh_policy_free(p);
}

/* Without a peer nothing can be said about it: rules about peers do not apply. */
static void test_match_no_peer(void **state) {
        static const struct match_case cases[] = {
                { "Vendor=8086", true },
                { "User=0", false },
                { "Group=0", false },
                { "Unit=*", false },
                { "Vendor=8086\nUser=1000", false },
        };

        assert_matches(cases, ELEMENTSOF(cases), &device, NULL);
}

/* ---------------------------------------------------------------------------------------------- */
/* Precedence */

static void test_first_match_per_setting(void **state) {
        /* Given out of order on purpose: the order is the file names'. */
        const struct coh_policy_file rules[] = {
                file("/usr/lib/coherencyd/policy.d/40-catchall.policy",
                     "[Policy]\nMode=enable\nNoSnoop=capable\n"),
                file("/etc/coherencyd/policy.d/30-user.policy",
                     "[Match]\nUser=1000\n[Policy]\n# the mode for this user\nMode=force-disable\n"),
                file("/usr/lib/coherencyd/policy.d/10-other-vendor.policy",
                     "[Match]\nVendor=10de\n[Policy]\nMode=enable\nNoSnoop=capable\n"),
                file("/etc/coherencyd/policy.d/20-nic.policy",
                     "[Match]\nVendor=8086\nDevice=11e8\n[Policy]\nNoSnoop=hardwired-off\n"),
        };
        struct coh_policy *p = load_ok("[Broker]\nMode=automatic\n", rules, ELEMENTSOF(rules));
        struct coh_policy_result res;
        struct coh_peer other = peer;

        assert_int_equal(coh_policy_n_rules(p), 4);

        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.mode, COH_MODE_FORCE_DISABLE);
        assert_string_equal(origin(&res.mode_origin), "/etc/coherencyd/policy.d/30-user.policy:5");
        assert_int_equal(res.nosnoop, COH_NOSNOOP_HARDWIRED_OFF);
        assert_string_equal(origin(&res.nosnoop_origin), "/etc/coherencyd/policy.d/20-nic.policy:5");

        /* Another user falls through to the catch-all for the mode, not to coherencyd.conf. */
        other.uid = 1001;
        coh_policy_evaluate(p, &device, &other, &res);
        assert_int_equal(res.mode, COH_MODE_ENABLE);
        assert_string_equal(origin(&res.mode_origin), "/usr/lib/coherencyd/policy.d/40-catchall.policy:2");
        assert_int_equal(res.nosnoop, COH_NOSNOOP_HARDWIRED_OFF);

        coh_policy_free(p);
}

/* GetInfo has no device: only rules about the caller can say what applies to it. */
static void test_no_device(void **state) {
        const struct coh_policy_file rules[] = {
                file("/x/10-vendor.policy", "[Match]\nVendor=*\n[Policy]\nMode=enable\n"),
                file("/x/20-group.policy", "[Match]\nUser=1000\nIOMMUGroup=12\n[Policy]\nMode=enable\n"),
                file("/x/30-slot.policy", "[Match]\nSlot=*\n[Policy]\nNoSnoop=hardwired-off\n"),
                file("/x/40-user.policy", "[Match]\nUser=1000\n[Policy]\nMode=force-disable\n"),
        };
        struct coh_policy *p = load_ok("[Broker]\nMode=enable\n", rules, ELEMENTSOF(rules));
        struct coh_policy_result res;

        coh_policy_evaluate(p, NULL, &peer, &res);
        assert_int_equal(res.mode, COH_MODE_FORCE_DISABLE);
        assert_string_equal(origin(&res.mode_origin), "/x/40-user.policy:4");
        assert_int_equal(res.nosnoop, COH_NOSNOOP_CAPABLE);
        assert_string_equal(origin(&res.nosnoop_origin), "default");

        /* With a device the first rule wins, as always. */
        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.mode, COH_MODE_ENABLE);
        assert_string_equal(origin(&res.mode_origin), "/x/10-vendor.policy:4");

        coh_policy_free(p);
}

/*
 * Access= is evaluated exactly like Mode=: the first matching rule that sets
 * it wins, then coherencyd.conf, then the built-in deny; independently of the
 * other settings of the same rules.
 */
static void test_access_precedence(void **state) {
        /* Given out of order on purpose: the order is the file names'. */
        const struct coh_policy_file rules[] = {
                file("/usr/lib/coherencyd/policy.d/90-catchall.policy", "[Policy]\nAccess=deny\nMode=enable\n"),
                file("/etc/coherencyd/policy.d/20-gpu-users.policy",
                     "[Match]\nVendor=8086\nGroup=27\n[Policy]\n# the gpu group may have it\nAccess=allow\n"),
                file("/etc/coherencyd/policy.d/10-nic.policy",
                     "[Match]\nVendor=8086\n[Policy]\nNoSnoop=hardwired-off\n"),
                file("/etc/coherencyd/policy.d/15-banned.policy",
                     "[Match]\nUser=1002\n[Policy]\nAccess=deny\nMode=force-disable\n"),
                file("/etc/coherencyd/policy.d/30-unit.policy",
                     "[Match]\nUnit=qemu-*.service\n[Policy]\nAccess=allow\n"),
        };
        struct coh_policy *p = load_ok("[Broker]\nAccess=allow\n", rules, ELEMENTSOF(rules));
        struct coh_policy_result res;
        struct coh_peer other = peer;
        static const gid_t no_groups[] = { 100 };

        /* In group 27: the gpu rule, though 10-nic matched first (it does not set Access=). */
        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.access, COH_ACCESS_ALLOW);
        assert_string_equal(origin(&res.access_origin), "/etc/coherencyd/policy.d/20-gpu-users.policy:6");
        assert_int_equal(res.nosnoop, COH_NOSNOOP_HARDWIRED_OFF);
        assert_string_equal(origin(&res.nosnoop_origin), "/etc/coherencyd/policy.d/10-nic.policy:4");
        assert_int_equal(res.mode, COH_MODE_ENABLE);
        assert_string_equal(origin(&res.mode_origin), "/usr/lib/coherencyd/policy.d/90-catchall.policy:3");

        /* The banned user: 15 comes before 20, whatever the groups. */
        other.uid = 1002;
        coh_policy_evaluate(p, &device, &other, &res);
        assert_int_equal(res.access, COH_ACCESS_DENY);
        assert_string_equal(origin(&res.access_origin), "/etc/coherencyd/policy.d/15-banned.policy:4");
        assert_int_equal(res.mode, COH_MODE_FORCE_DISABLE);

        /* Not in group 27, but in a qemu unit: the unit rule. */
        other = peer;
        other.groups = no_groups;
        other.n_groups = ELEMENTSOF(no_groups);
        coh_policy_evaluate(p, &device, &other, &res);
        assert_int_equal(res.access, COH_ACCESS_ALLOW);
        assert_string_equal(origin(&res.access_origin), "/etc/coherencyd/policy.d/30-unit.policy:4");

        /* Neither: the catch-all rule's deny beats coherencyd.conf's allow. */
        other.unit = NULL;
        coh_policy_evaluate(p, &device, &other, &res);
        assert_int_equal(res.access, COH_ACCESS_DENY);
        assert_string_equal(origin(&res.access_origin), "/usr/lib/coherencyd/policy.d/90-catchall.policy:2");

        /* GetInfo: no device, so the gpu rule (Vendor=) cannot apply; the unit rule can. */
        coh_policy_evaluate(p, NULL, &peer, &res);
        assert_int_equal(res.access, COH_ACCESS_ALLOW);
        assert_string_equal(origin(&res.access_origin), "/etc/coherencyd/policy.d/30-unit.policy:4");
        coh_policy_evaluate(p, NULL, &other, &res);
        assert_int_equal(res.access, COH_ACCESS_DENY);
        assert_string_equal(origin(&res.access_origin), "/usr/lib/coherencyd/policy.d/90-catchall.policy:2");
        coh_policy_free(p);
}

/* Without a rule that sets Access=, coherencyd.conf decides, then the default. */
static void test_access_fallback(void **state) {
        const struct coh_policy_file rules[] = {
                file("/x/10-mode.policy", "[Policy]\nMode=enable\n"),
                file("/x/20-other-user.policy", "[Match]\nUser=1001\n[Policy]\nAccess=allow\n"),
        };
        struct coh_policy *p = load_ok("[Broker]\nMode=force-disable\n\nAccess=allow\n", rules, ELEMENTSOF(rules));
        struct coh_policy_result res;
        struct coh_peer other = peer;

        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.access, COH_ACCESS_ALLOW);
        assert_string_equal(origin(&res.access_origin), CONF ":4");
        assert_int_equal(res.mode, COH_MODE_ENABLE);
        coh_policy_evaluate(p, NULL, NULL, &res);
        assert_int_equal(res.access, COH_ACCESS_ALLOW);
        assert_string_equal(origin(&res.access_origin), CONF ":4");
        coh_policy_free(p);

        p = load_ok("[Broker]\nAccess=deny\n", rules, ELEMENTSOF(rules));
        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.access, COH_ACCESS_DENY);
        assert_string_equal(origin(&res.access_origin), CONF ":2");
        other.uid = 1001;
        coh_policy_evaluate(p, &device, &other, &res);
        assert_int_equal(res.access, COH_ACCESS_ALLOW);
        assert_string_equal(origin(&res.access_origin), "/x/20-other-user.policy:4");
        coh_policy_free(p);

        /* No coherencyd.conf: the built-in deny, named "default". */
        p = load_ok(NULL, rules, ELEMENTSOF(rules));
        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.access, COH_ACCESS_DENY);
        assert_null(res.access_origin.file);
        assert_string_equal(origin(&res.access_origin), "default");
        coh_policy_evaluate(p, &device, &other, &res);
        assert_int_equal(res.access, COH_ACCESS_ALLOW);
        coh_policy_free(p);
}

/* ---------------------------------------------------------------------------------------------- */
/* Errors */

struct error_case {
        const char *text;
        size_t len;          /* 0: strlen(text) */
        unsigned line;
        const char *message;
};

static void assert_error(const char *conf, const struct coh_policy_file *rules, size_t n_rules, int expected_r,
                         const char *file_name, unsigned line, const char *message) {
        struct coh_policy_file c = file(CONF, conf);
        struct coh_policy_error err;
        struct coh_policy *p = NULL;
        int r;

        r = coh_policy_load_from_memory(conf ? &c : NULL, rules, n_rules, NULL, NULL, &p, &err);
        if (r != expected_r || p || strcmp(err.file, file_name) != 0 || err.line != line ||
            strcmp(err.message, message) != 0)
                fail_msg("expected %d (%s:%u: %s), got %d (%s:%u: %s)", expected_r, file_name, line, message,
                         r, err.file, err.line, err.message);
}

static void test_rule_errors(void **state) {
        static const char nul[] = "[Policy]\nMode=en\0able\n";
        static const struct error_case cases[] = {
                /* Syntax */
                { "[Match]\nVendor 8086\n", 0, 2, "expected [Section], Key=Value or a comment" },
                { "# first\nMode=enable\n", 0, 2, "key 'Mode' before any [Section] header" },
                { "[Policy]\n  = enable\n", 0, 2, "empty key" },
                { nul, sizeof nul - 1, 2, "NUL byte in file" },
                { "[Policy\nMode=enable\n", 0, 1, "invalid section header, expected [Name]" },
                { "[]\n", 0, 1, "invalid section header, expected [Name]" },
                { "[Po]licy]\n", 0, 1, "invalid section header, expected [Name]" },
                /* Sections and keys */
                { "[Policy]\nMode=enable\n[Rule]\n", 0, 3, "unknown section [Rule] (expected [Match] or [Policy])" },
                { "[match]\n", 0, 1, "unknown section [match] (expected [Match] or [Policy])" },
                { "[Policy]\nMoed=enable\n", 0, 2, "unknown key 'Moed' in section [Policy]" },
                { "[Policy]\nVendor=8086\n", 0, 2, "unknown key 'Vendor' in section [Policy]" },
                { "[Match]\nMode=enable\n", 0, 2, "unknown key 'Mode' in section [Match]" },
                { "[Match]\nvendor=8086\n", 0, 2, "unknown key 'vendor' in section [Match]" },
                /* Values */
                { "[Policy]\nMode=sometimes\n", 0, 2,
                  "invalid Mode= value 'sometimes' (expected enable, automatic or force-disable)" },
                { "[Policy]\nMode=Enable\n", 0, 2,
                  "invalid Mode= value 'Enable' (expected enable, automatic or force-disable)" },
                { "[Policy]\nNoSnoop=off\n", 0, 2,
                  "invalid NoSnoop= value 'off' (expected hardwired-off or capable)" },
                { "[Policy]\nAccess=yes\n", 0, 2, "invalid Access= value 'yes' (expected allow or deny)" },
                { "[Policy]\nAccess=Allow\n", 0, 2, "invalid Access= value 'Allow' (expected allow or deny)" },
                { "[Policy]\nAccess=allow deny\n", 0, 2,
                  "invalid Access= value 'allow deny' (expected allow or deny)" },
                { "[Policy]\nAccess=\n", 0, 2, "empty value for key 'Access' in section [Policy]" },
                { "[Match]\nAccess=allow\n", 0, 2, "unknown key 'Access' in section [Match]" },
                { "[Policy]\nReleaseTimeoutSec=5\n", 0, 2, "unknown key 'ReleaseTimeoutSec' in section [Policy]" },
                { "[Policy]\nMode=\n", 0, 2, "empty value for key 'Mode' in section [Policy]" },
                { "[Policy]\nNoSnoop=  \t\n", 0, 2, "empty value for key 'NoSnoop' in section [Policy]" },
                { "[Match]\nVendor=\n", 0, 2, "empty value for key 'Vendor' in section [Match]" },
                { "[Match]\nUnit= \n", 0, 2, "empty value for key 'Unit' in section [Match]" },
                { "[Match]\nIOMMUGroup=-1\n", 0, 2, "invalid IOMMUGroup= value '-1' (expected a non-negative integer)" },
                { "[Match]\nIOMMUGroup=1 two\n", 0, 2,
                  "invalid IOMMUGroup= value 'two' (expected a non-negative integer)" },
                { "[Match]\nIOMMUGroup=+1\n", 0, 2, "invalid IOMMUGroup= value '+1' (expected a non-negative integer)" },
                { "[Match]\nIOMMUGroup=0x1\n", 0, 2,
                  "invalid IOMMUGroup= value '0x1' (expected a non-negative integer)" },
                { "[Match]\nIOMMUGroup=2147483648\n", 0, 2,
                  "invalid IOMMUGroup= value '2147483648' (expected a non-negative integer)" },
                { "[Match]\nUser=root " NO_SUCH_USER "\n", 0, 2, "unknown user '" NO_SUCH_USER "'" },
                { "[Match]\nUser=4294967295\n", 0, 2, "invalid user '4294967295' (id out of range)" },
                { "[Match]\nGroup=" NO_SUCH_GROUP "\n", 0, 2, "unknown group '" NO_SUCH_GROUP "'" },
                { "[Match]\nGroup=99999999999\n", 0, 2, "invalid group '99999999999' (id out of range)" },
                /* Duplicates, also across repeated sections */
                { "[Policy]\nMode=enable\n\n[Policy]\nMode=automatic\n", 0, 5,
                  "duplicate key 'Mode' in section [Policy] (first set on line 2)" },
                { "[Policy]\nNoSnoop=capable\nNoSnoop=capable\n", 0, 3,
                  "duplicate key 'NoSnoop' in section [Policy] (first set on line 2)" },
                { "[Policy]\nAccess=allow\nMode=enable\n[Policy]\nAccess=allow\n", 0, 5,
                  "duplicate key 'Access' in section [Policy] (first set on line 2)" },
                { "[Match]\nVendor=8086\n[Policy]\nMode=enable\n[Match]\nVendor=10de\n", 0, 6,
                  "duplicate key 'Vendor' in section [Match] (first set on line 2)" },
                { "[Match]\nUser=root\nUser=0\n", 0, 3, "duplicate key 'User' in section [Match] (first set on line 2)" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const struct coh_policy_file rules[] = {
                        file("/usr/lib/coherencyd/policy.d/10-fine.policy", "[Policy]\nMode=enable\n"),
                        { .name = "/etc/coherencyd/policy.d/50-bad.policy", .text = cases[i].text,
                          .len = cases[i].len > 0 ? cases[i].len : strlen(cases[i].text) },
                };

                assert_error(NULL, rules, ELEMENTSOF(rules), -EINVAL, "/etc/coherencyd/policy.d/50-bad.policy",
                             cases[i].line, cases[i].message);
        }
}

static void test_rule_line_too_long(void **state) {
        char text[COH_INI_LINE_MAX + 64];
        struct coh_policy_file f;
        size_t n;

        n = (size_t) snprintf(text, sizeof text, "[Match]\n\nUnit=");
        memset(text + n, '*', COH_INI_LINE_MAX);
        text[n + COH_INI_LINE_MAX] = 0;
        f = file("/x/long.policy", text);
        assert_error(NULL, &f, 1, -EINVAL, "/x/long.policy", 3, "line too long (more than 4096 bytes)");
}

/* ---------------------------------------------------------------------------------------------- */
/* Inline comments, every error, warnings */

/*
 * The README's examples once had comments after values: Mode= then failed
 * with a baffling value, and in a rule file the comment's words became globs
 * that matched nothing, silently. Now each is an error that says why.
 */
static void test_inline_comment_is_an_error(void **state) {
        static const char hint[] = "it starts a comment only at the start of a line (as in systemd unit files); "
                                   "put the comment on a line of its own";
        char message[256];
        const struct coh_policy_file glob_rule[] = {
                file("/x/10-gpu.policy", "[Match]\nVendor=0x10de   # NVIDIA\n[Policy]\nMode=enable\n"),
        };
        const struct coh_policy_file unit_rule[] = {
                file("/x/20-unit.policy", "[Match]\nUnit=qemu-*.service ; our VMs\n"),
        };
        const struct coh_policy_file header_rule[] = {
                file("/x/10-gpu.policy", "[Match]  # the GPUs\nVendor=0x10de\n[Policy]\nMode=enable\n"),
        };

        snprintf(message, sizeof message, "'#' in the value of Mode=: %s", hint);
        assert_error("[Broker]\nMode=automatic   # enable | automatic (default) | force-disable\n", NULL, 0,
                     -EINVAL, CONF, 2, message);
        snprintf(message, sizeof message, "'#' in the value of Vendor=: %s", hint);
        assert_error(NULL, glob_rule, 1, -EINVAL, "/x/10-gpu.policy", 2, message);
        snprintf(message, sizeof message, "';' in the value of Unit=: %s", hint);
        assert_error("[Broker]\n", unit_rule, 1, -EINVAL, "/x/20-unit.policy", 2, message);
        snprintf(message, sizeof message, "invalid section header: '#' %s", hint + strlen("it "));
        assert_error(NULL, header_rule, 1, -EINVAL, "/x/10-gpu.policy", 1, message);

        /* On a line of their own they are what they always were. */
        struct coh_policy *p = load_ok("[Broker]\n# enable | automatic | force-disable\n  ; indented\nMode=enable\n",
                                       NULL, 0);
        assert_int_equal(coh_policy_broker(p)->mode, COH_MODE_ENABLE);
        coh_policy_free(p);
}

/* One run names every error, each with file:line, in file order; the load fails with the first. */
static void test_every_error_is_reported(void **state) {
        const struct coh_policy_file rules[] = {
                file("/etc/coherencyd/policy.d/30-third.policy",
                     "[Match]\nVendor=8086\n[Policy]\nAccess=maybe\nNoSnoop=off\n"),
                file("/etc/coherencyd/policy.d/10-first.policy", "[Mach]\nVendor=8086\nClass=0x03*\n"),
                file("/etc/coherencyd/policy.d/20-fine.policy", "[Match]\nVendor=8086\n[Policy]\nMode=enable\n"),
        };
        struct coh_policy_error err;
        struct reports reports;
        struct coh_policy *p;
        int r;

        p = load_reported("[Broker]\nMode=sometimes\nAccess=allow\nMaxConnections=0\n", rules, ELEMENTSOF(rules),
                          &reports, &r, &err);
        assert_null(p);
        assert_int_equal(r, -EINVAL);
        assert_string_equal(reports.text,
                            "E " CONF ":2: invalid Mode= value 'sometimes' (expected enable, automatic or "
                            "force-disable)\n"
                            "E " CONF ":4: invalid MaxConnections= value '0' (expected an integer from 1 to 65536)\n"
                            /* The section's keys are not reported once more each. */
                            "E /etc/coherencyd/policy.d/10-first.policy:1: unknown section [Mach] (expected [Match] "
                            "or [Policy])\n"
                            "E /etc/coherencyd/policy.d/30-third.policy:4: invalid Access= value 'maybe' (expected "
                            "allow or deny)\n"
                            "E /etc/coherencyd/policy.d/30-third.policy:5: invalid NoSnoop= value 'off' (expected "
                            "hardwired-off or capable)\n");
        assert_int_equal(reports.errors, 5);
        assert_int_equal(reports.warnings, 0);
        /* The first is the one returned, as ReloadPolicy's InvalidPolicy names it. */
        assert_string_equal(err.file, CONF);
        assert_int_equal(err.line, 2);
        assert_string_equal(err.message,
                            "invalid Mode= value 'sometimes' (expected enable, automatic or force-disable)");
}

struct warning_case {
        const char *text;
        const char *reported;  /* "" for none */
};

/* A rule that restricts nothing applies everywhere: a warning, and the policy still loads and decides as before. */
static void test_rule_matching_everything_is_a_warning(void **state) {
        static const struct warning_case cases[] = {
                { "[Policy]\nMode=enable\n",
                  "W /x/10-r.policy:2: rule without [Match]: it applies to every device and every VMM\n" },
                { "# all of them\n[Policy]\nAccess=allow\nMode=enable\n",
                  "W /x/10-r.policy:3: rule without [Match]: it applies to every device and every VMM\n" },
                { "[Match]\n[Policy]\nMode=enable\n",
                  "W /x/10-r.policy:1: [Match] without keys: the rule applies to every device and every VMM\n" },
                { "[Match]\nVendor=*\n[Policy]\nMode=enable\n",
                  "W /x/10-r.policy:2: Vendor=* matches everything and no other [Match] key narrows the rule: it "
                  "applies to every device and every VMM\n" },
                { "[Match]\nClass=0x03* 0x*\nUnit=**\n[Policy]\nMode=enable\n",
                  "W /x/10-r.policy:2: Class=0x* matches everything and no other [Match] key narrows the rule: it "
                  "applies to every device and every VMM\n" },
                { "[Match]\nUser=1000\n[Policy]\nNoSnoop=hardwired-off\n",
                  "W /x/10-r.policy:4: NoSnoop= for every device: No-Snoop is a property of a device, so a rule "
                  "that declares it should match devices (Vendor=, Device=, Class=, Slot=)\n" },
                { "[Match]\nSlot=*\nUnit=qemu-*\n[Policy]\nNoSnoop=capable\n",
                  "W /x/10-r.policy:5: NoSnoop= for every device: No-Snoop is a property of a device, so a rule "
                  "that declares it should match devices (Vendor=, Device=, Class=, Slot=)\n" },
                /* Not warned: narrowed by a device key or by the VMM, or setting nothing. */
                { "[Match]\nVendor=8086\n[Policy]\nMode=enable\n", "" },
                { "[Match]\nVendor=* 8086\nSlot=0000:01:00.0\n[Policy]\nMode=enable\n", "" },
                { "[Match]\nClass=0x03*\n[Policy]\nMode=enable\n", "" },
                { "[Match]\nIOMMUGroup=12\n[Policy]\nNoSnoop=hardwired-off\n", "" },
                { "[Match]\nGroup=0\nUnit=qemu-*.service\n[Policy]\nAccess=allow\n", "" },
                { "[Match]\nUser=root\n[Policy]\nMode=enable\n", "" },
                { "# nothing yet\n", "" },
                { "[Match]\n", "" },
                /* A file with errors gets none: a key that failed would make the rest look wider than it is. */
                { "[Match]\nIOMMUGroup=twelve\n[Policy]\nMode=enable\n",
                  "E /x/10-r.policy:2: invalid IOMMUGroup= value 'twelve' (expected a non-negative integer)\n" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const struct coh_policy_file rule = file("/x/10-r.policy", cases[i].text);
                struct coh_policy_error err;
                struct reports reports;
                struct coh_policy *p;
                int r;

                p = load_reported(NULL, &rule, 1, &reports, &r, &err);
                if (strcmp(reports.text, cases[i].reported) != 0)
                        fail_msg("%s: expected\n%sgot\n%s", cases[i].text, cases[i].reported, reports.text);
                /* Warnings do not fail the load. */
                assert_int_equal(r, reports.errors > 0 ? -EINVAL : 0);
                assert_int_equal(p != NULL, reports.errors == 0);
                coh_policy_free(p);
        }
}


static void test_conf_errors(void **state) {
        static const struct error_case cases[] = {
                { "Mode=enable\n", 0, 1, "key 'Mode' before any [Section] header" },
                { "[Broker]\nMode=enable\n[Policy]\nMode=enable\n", 0, 3, "unknown section [Policy] (expected [Broker])" },
                { "[Broker]\nMood=enable\n", 0, 2, "unknown key 'Mood' in section [Broker]" },
                { "[Broker]\nMode=sometimes\n", 0, 2,
                  "invalid Mode= value 'sometimes' (expected enable, automatic or force-disable)" },
                { "[Broker]\nMode=\n", 0, 2, "empty value for key 'Mode' in section [Broker]" },
                { "[Broker]\nMode=enable\nMode=enable\n", 0, 3,
                  "duplicate key 'Mode' in section [Broker] (first set on line 2)" },
                { "[Broker]\nAdminGroup=" NO_SUCH_GROUP "\n", 0, 2, "unknown group '" NO_SUCH_GROUP "'" },
                { "[Broker]\nAdminGroup=4294967295\n", 0, 2, "invalid group '4294967295' (id out of range)" },
                { "[Broker]\nAdminGroup=\n", 0, 2, "empty value for key 'AdminGroup' in section [Broker]" },
                { "[Broker]\nMaxConnections=0\n", 0, 2,
                  "invalid MaxConnections= value '0' (expected an integer from 1 to 65536)" },
                { "[Broker]\nMaxConnections=65537\n", 0, 2,
                  "invalid MaxConnections= value '65537' (expected an integer from 1 to 65536)" },
                { "[Broker]\nMaxConnectionsPerUser=-1\n", 0, 2,
                  "invalid MaxConnectionsPerUser= value '-1' (expected an integer from 1 to 65536)" },
                { "[Broker]\nMaxGrantsPerConnection=12abc\n", 0, 2,
                  "invalid MaxGrantsPerConnection= value '12abc' (expected an integer from 1 to 65536)" },
                { "[Broker]\nMaxGrantsPerConnection=0x10\n", 0, 2,
                  "invalid MaxGrantsPerConnection= value '0x10' (expected an integer from 1 to 65536)" },
                { "[Broker]\nMaxGrantsPerConnection=99999999999999999999999\n", 0, 2,
                  "invalid MaxGrantsPerConnection= value '99999999999999999999999' (expected an integer from 1 to 65536)" },
                { "[Broker]\nIdleExitSec=86401\n", 0, 2,
                  "invalid IdleExitSec= value '86401' (expected an integer from 0 to 86400)" },
                { "[Broker]\nIdleExitSec=1 2\n", 0, 2,
                  "invalid IdleExitSec= value '1 2' (expected an integer from 0 to 86400)" },
                { "[Broker]\nAccess=permit\n", 0, 2, "invalid Access= value 'permit' (expected allow or deny)" },
                { "[Broker]\nAccess=\n", 0, 2, "empty value for key 'Access' in section [Broker]" },
                { "[Broker]\nAccess=allow\n# again\nAccess=deny\n", 0, 4,
                  "duplicate key 'Access' in section [Broker] (first set on line 2)" },
                { "[Broker]\nReleaseTimeoutSec=0\n", 0, 2,
                  "invalid ReleaseTimeoutSec= value '0' (expected a number of seconds from 1 to 86400)" },
                { "[Broker]\nReleaseTimeoutSec=86401\n", 0, 2,
                  "invalid ReleaseTimeoutSec= value '86401' (expected a number of seconds from 1 to 86400)" },
                { "[Broker]\nReleaseTimeoutSec=-5\n", 0, 2,
                  "invalid ReleaseTimeoutSec= value '-5' (expected a number of seconds from 1 to 86400)" },
                { "[Broker]\nReleaseTimeoutSec=30s\n", 0, 2,
                  "invalid ReleaseTimeoutSec= value '30s' (expected a number of seconds from 1 to 86400)" },
                { "[Broker]\nReleaseTimeoutSec=1.5\n", 0, 2,
                  "invalid ReleaseTimeoutSec= value '1.5' (expected a number of seconds from 1 to 86400)" },
                { "[Broker]\nReleaseTimeoutSec=18446744073709551617\n", 0, 2,
                  "invalid ReleaseTimeoutSec= value '18446744073709551617' (expected a number of seconds from 1 to 86400)" },
                { "[Broker]\nReleaseTimeoutSec=\n", 0, 2, "empty value for key 'ReleaseTimeoutSec' in section [Broker]" },
                { "[Broker]\nReleaseTimeoutSec=5\nReleaseTimeoutSec=5\n", 0, 3,
                  "duplicate key 'ReleaseTimeoutSec' in section [Broker] (first set on line 2)" },
                { "[Broker]\nRevokeKill=maybe\n", 0, 2,
                  "invalid RevokeKill= value 'maybe' (expected yes, no, true, false, 1 or 0)" },
                { "[Broker]\nRevokeKill=on\n", 0, 2,
                  "invalid RevokeKill= value 'on' (expected yes, no, true, false, 1 or 0)" },
                { "[Broker]\nRevokeKill=Yes\n", 0, 2,
                  "invalid RevokeKill= value 'Yes' (expected yes, no, true, false, 1 or 0)" },
                { "[Broker]\nRevokeKill=2\n", 0, 2,
                  "invalid RevokeKill= value '2' (expected yes, no, true, false, 1 or 0)" },
                { "[Broker]\nRevokeKill=\n", 0, 2, "empty value for key 'RevokeKill' in section [Broker]" },
                { "[Broker]\nRevokeKill=no\n\nRevokeKill=yes\n", 0, 4,
                  "duplicate key 'RevokeKill' in section [Broker] (first set on line 2)" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const struct coh_policy_file rules[] = {
                        file("/x/10-fine.policy", "[Policy]\nMode=enable\n"),
                };

                assert_error(cases[i].text, rules, ELEMENTSOF(rules), -EINVAL, CONF, cases[i].line, cases[i].message);
        }
}

/* RefusalLogIntervalSec=: whole seconds, kept in microseconds; 0 turns folding off; default 10. */
static void test_conf_refusal_log_interval(void **state) {
        static const struct {
                const char *text;
                uint64_t usec;
        } cases[] = {
                { "[Broker]\n", UINT64_C(10000000) },
                { "[Broker]\nRefusalLogIntervalSec=0\n", 0 },
                { "[Broker]\nRefusalLogIntervalSec = 1\n", UINT64_C(1000000) },
                { "[Broker]\nRefusalLogIntervalSec=3600\n", UINT64_C(3600000000) },
        };
        static const struct error_case errors[] = {
                { "[Broker]\nRefusalLogIntervalSec=3601\n", 0, 2,
                  "invalid RefusalLogIntervalSec= value '3601' (expected a number of seconds from 0 to 3600)" },
                { "[Broker]\nRefusalLogIntervalSec=-1\n", 0, 2,
                  "invalid RefusalLogIntervalSec= value '-1' (expected a number of seconds from 0 to 3600)" },
                { "[Broker]\nRefusalLogIntervalSec=10s\n", 0, 2,
                  "invalid RefusalLogIntervalSec= value '10s' (expected a number of seconds from 0 to 3600)" },
                { "[Broker]\nRefusalLogIntervalSec=\n", 0, 2,
                  "empty value for key 'RefusalLogIntervalSec' in section [Broker]" },
                { "[Broker]\nRefusalLogIntervalSec=1\nRefusalLogIntervalSec=2\n", 0, 3,
                  "duplicate key 'RefusalLogIntervalSec' in section [Broker] (first set on line 2)" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct coh_policy *p = load_ok(cases[i].text, NULL, 0);
                const struct coh_broker_config *b = coh_policy_broker(p);
                if (b->refusal_log_interval_usec != cases[i].usec)
                        fail_msg("%s: expected %llu us, got %llu us", cases[i].text, (unsigned long long) cases[i].usec,
                                 (unsigned long long) b->refusal_log_interval_usec);
                /* Nothing else changes with it. */
                assert_true(b->release_timeout_usec == UINT64_C(30000000));
                assert_int_equal(b->access, COH_ACCESS_DENY);
                json_object *j = coh_policy_to_json(p), *broker, *v;
                assert_true(json_object_object_get_ex(j, "broker", &broker));
                assert_true(json_object_object_get_ex(broker, "refusalLogIntervalSec", &v));
                assert_true(json_object_is_type(v, json_type_int));
                assert_int_equal(json_object_get_int64(v), (int64_t) (cases[i].usec / 1000000));
                json_object_put(j);
                coh_policy_free(p);
        }
        for (size_t i = 0; i < ELEMENTSOF(errors); i++)
                assert_error(errors[i].text, NULL, 0, -EINVAL, CONF, errors[i].line, errors[i].message);
}

/* ReservedAdminConnections= (default 8, 0 allowed) and MessageTimeoutSec= (whole seconds, default 30). */
static void test_conf_reserve_and_message_timeout(void **state) {
        static const struct {
                const char *text;
                unsigned reserved;
                uint64_t timeout_usec;
        } cases[] = {
                { "[Broker]\n", 8, UINT64_C(30000000) },
                { "[Broker]\nReservedAdminConnections=0\nMessageTimeoutSec=1\n", 0, UINT64_C(1000000) },
                { "[Broker]\nReservedAdminConnections = 65536\nMessageTimeoutSec = 3600\n", 65536, UINT64_C(3600000000) },
                /* Independent of MaxConnections=: the reserve comes on top of it. */
                { "[Broker]\nMaxConnections=1\nReservedAdminConnections=100\n", 100, UINT64_C(30000000) },
        };
        static const struct error_case errors[] = {
                { "[Broker]\nReservedAdminConnections=65537\n", 0, 2,
                  "invalid ReservedAdminConnections= value '65537' (expected an integer from 0 to 65536)" },
                { "[Broker]\nReservedAdminConnections=-1\n", 0, 2,
                  "invalid ReservedAdminConnections= value '-1' (expected an integer from 0 to 65536)" },
                { "[Broker]\nReservedAdminConnections=\n", 0, 2,
                  "empty value for key 'ReservedAdminConnections' in section [Broker]" },
                { "[Broker]\nMessageTimeoutSec=0\n", 0, 2,
                  "invalid MessageTimeoutSec= value '0' (expected a number of seconds from 1 to 3600)" },
                { "[Broker]\nMessageTimeoutSec=3601\n", 0, 2,
                  "invalid MessageTimeoutSec= value '3601' (expected a number of seconds from 1 to 3600)" },
                { "[Broker]\nMessageTimeoutSec=30s\n", 0, 2,
                  "invalid MessageTimeoutSec= value '30s' (expected a number of seconds from 1 to 3600)" },
                { "[Broker]\nMessageTimeoutSec=5\nMessageTimeoutSec=6\n", 0, 3,
                  "duplicate key 'MessageTimeoutSec' in section [Broker] (first set on line 2)" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct coh_policy *p = load_ok(cases[i].text, NULL, 0);
                const struct coh_broker_config *b = coh_policy_broker(p);
                assert_int_equal(b->reserved_admin_connections, cases[i].reserved);
                if (b->message_timeout_usec != cases[i].timeout_usec)
                        fail_msg("%s: expected %llu us, got %llu us", cases[i].text,
                                 (unsigned long long) cases[i].timeout_usec,
                                 (unsigned long long) b->message_timeout_usec);
                /* Nothing else changes with them. */
                assert_true(b->release_timeout_usec == UINT64_C(30000000));
                json_object *j = coh_policy_to_json(p), *broker, *v;
                assert_true(json_object_object_get_ex(j, "broker", &broker));
                assert_true(json_object_object_get_ex(broker, "reservedAdminConnections", &v));
                assert_int_equal(json_object_get_int64(v), cases[i].reserved);
                assert_true(json_object_object_get_ex(broker, "messageTimeoutSec", &v));
                assert_int_equal(json_object_get_int64(v), (int64_t) (cases[i].timeout_usec / 1000000));
                json_object_put(j);
                coh_policy_free(p);
        }
        for (size_t i = 0; i < ELEMENTSOF(errors); i++)
                assert_error(errors[i].text, NULL, 0, -EINVAL, CONF, errors[i].line, errors[i].message);
}

/* ---------------------------------------------------------------------------------------------- */
/* Peers by name (Manager.Explain) */

static bool gids_contain(const gid_t *gids, size_t n, gid_t gid) {
        for (size_t i = 0; i < n; i++)
                if (gids[i] == gid)
                        return true;
        return false;
}

/* What the group database says user's groups are, read without getgrouplist(): primary plus member-of. */
static void assert_groups_of(const char *user, gid_t primary, const struct coh_peer *pr) {
        struct group *gr;

        assert_true(gids_contain(pr->groups, pr->n_groups, primary));
        setgrent();
        while ((gr = getgrent()))
                for (char **m = gr->gr_mem; *m; m++)
                        if (strcmp(*m, user) == 0 && !gids_contain(pr->groups, pr->n_groups, gr->gr_gid))
                                fail_msg("%s is a member of %s (%u), not in the peer's groups", user, gr->gr_name,
                                         (unsigned) gr->gr_gid);
        endgrent();
        for (size_t i = 0; i < pr->n_groups; i++) {
                bool member = pr->groups[i] == primary;

                gr = getgrgid(pr->groups[i]);
                for (char **m = gr ? gr->gr_mem : NULL; m && *m && !member; m++)
                        member = strcmp(*m, user) == 0;
                if (!member)
                        fail_msg("peer group %u is neither %s's primary group nor one it is a member of",
                                 (unsigned) pr->groups[i], user);
        }
}

static void test_peer_from_names_root(void **state) {
        struct passwd *pw = getpwuid(0);
        struct coh_peer pr;
        gid_t *groups = NULL;
        char *root_name, *group_name;

        assert_non_null(pw);
        root_name = strdup(pw->pw_name);
        assert_non_null(root_name);

        /* By name and by number, the same peer; the group is the user's primary one. */
        for (int i = 0; i < 2; i++) {
                memset(&pr, 0x5a, sizeof pr);
                assert_int_equal(coh_peer_from_names(i == 0 ? root_name : "0", NULL, "qemu-vm1.service", &pr, &groups),
                                 0);
                assert_int_equal(pr.pid, 0);
                assert_int_equal(pr.uid, 0);
                assert_int_equal(pr.gid, 0);
                assert_ptr_equal(pr.groups, groups);
                assert_true(pr.n_groups >= 1);
                assert_string_equal(pr.unit, "qemu-vm1.service");
                assert_groups_of(root_name, 0, &pr);
                free(groups);
                groups = NULL;
        }

        /* No unit: a VMM outside any unit. */
        assert_int_equal(coh_peer_from_names(root_name, NULL, NULL, &pr, &groups), 0);
        assert_null(pr.unit);
        free(groups);

        /* A group given by number or name replaces the primary group. */
        pw = getpwnam("nobody");
        if (pw) {
                struct group *gr = getgrgid(pw->pw_gid);
                char gid[32];

                assert_non_null(gr);
                group_name = strdup(gr->gr_name);
                assert_non_null(group_name);
                snprintf(gid, sizeof gid, "%u", (unsigned) pw->pw_gid);

                assert_int_equal(coh_peer_from_names("0", gid, NULL, &pr, &groups), 0);
                assert_int_equal(pr.uid, 0);
                assert_int_equal(pr.gid, (gid_t) atoi(gid));
                assert_true(gids_contain(pr.groups, pr.n_groups, pr.gid));
                free(groups);

                assert_int_equal(coh_peer_from_names(root_name, group_name, NULL, &pr, &groups), 0);
                assert_int_equal(pr.gid, (gid_t) atoi(gid));
                free(groups);
                free(group_name);
        }
        free(root_name);
}

static void test_peer_from_names_errors(void **state) {
        struct coh_peer pr, untouched;
        gid_t *groups = (gid_t *) &untouched;

        memset(&pr, 0x5a, sizeof pr);
        untouched = pr;
        assert_int_equal(coh_peer_from_names(NO_SUCH_USER, NULL, NULL, &pr, &groups), -ESRCH);
        assert_int_equal(coh_peer_from_names(NO_SUCH_USER, "0", NULL, &pr, &groups), -ESRCH);
        assert_int_equal(coh_peer_from_names("4294967295", NULL, NULL, &pr, &groups), -ESRCH);
        assert_int_equal(coh_peer_from_names("-1", NULL, NULL, &pr, &groups), -ESRCH);
        assert_int_equal(coh_peer_from_names("root", NO_SUCH_GROUP, NULL, &pr, &groups), -ENOENT);
        assert_int_equal(coh_peer_from_names("0", "4294967295", NULL, &pr, &groups), -ENOENT);
        assert_int_equal(coh_peer_from_names("", NULL, NULL, &pr, &groups), -ESRCH);
        assert_int_equal(coh_peer_from_names("0", "", NULL, &pr, &groups), -ENOENT);
        assert_int_equal(coh_peer_from_names("0", "root " NO_SUCH_GROUP, NULL, &pr, &groups), -ENOENT);
        assert_int_equal(coh_peer_from_names(NULL, NULL, NULL, &pr, &groups), -EINVAL);
        /* A failure leaves the outputs alone. */
        assert_memory_equal(&pr, &untouched, sizeof pr);
        assert_ptr_equal(groups, (gid_t *) &untouched);
}

/* A process may run as a uid the user database does not know: fine with a group, which it cannot default to. */
static void test_peer_from_names_unknown_uid(void **state) {
        struct coh_peer pr;
        gid_t *groups = NULL;
        char name[32];
        uid_t uid;

        for (uid = 3999999; getpwuid(uid); uid++)
                ;
        snprintf(name, sizeof name, "%u", (unsigned) uid);

        assert_int_equal(coh_peer_from_names(name, NULL, NULL, &pr, &groups), -ESRCH);
        assert_int_equal(coh_peer_from_names(name, "0", "vm.scope", &pr, &groups), 0);
        assert_int_equal(pr.uid, uid);
        assert_int_equal(pr.gid, 0);
        assert_int_equal(pr.n_groups, 0);
        assert_string_equal(pr.unit, "vm.scope");
        free(groups);
}

/* What Explain does with it: the same evaluation as for a connected VMM. */
static void test_peer_from_names_evaluate(void **state) {
        const struct coh_policy_file rules[] = {
                file("/x/10-root-vms.policy", "[Match]\nUser=root\nGroup=root\nUnit=qemu-*\n[Policy]\nAccess=allow\n"),
        };
        struct coh_policy *p = load_ok(NULL, rules, ELEMENTSOF(rules));
        struct coh_policy_result res;
        struct coh_peer pr;
        gid_t *groups = NULL;

        assert_int_equal(coh_peer_from_names("0", NULL, "qemu-vm7.service", &pr, &groups), 0);
        coh_policy_evaluate(p, &device, &pr, &res);
        assert_int_equal(res.access, COH_ACCESS_ALLOW);
        assert_string_equal(origin(&res.access_origin), "/x/10-root-vms.policy:6");
        free(groups);

        assert_int_equal(coh_peer_from_names("0", NULL, "crosvm.service", &pr, &groups), 0);
        coh_policy_evaluate(p, &device, &pr, &res);
        assert_int_equal(res.access, COH_ACCESS_DENY);
        assert_string_equal(origin(&res.access_origin), "default");
        free(groups);
        coh_policy_free(p);
}

/* ---------------------------------------------------------------------------------------------- */
/* Loading from disk */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void write_file(const char *dir, const char *name, const char *text) {
        char path[4096];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, true);
        assert_int_equal(fclose(f), 0);
}

/* 2 MiB of comments: beyond what a policy file may be. */
static void write_big_file(const char *dir, const char *name) {
        char *big = malloc(2 * 1024 * 1024);

        assert_non_null(big);
        memset(big, '#', 2 * 1024 * 1024 - 1);
        big[2 * 1024 * 1024 - 1] = 0;
        write_file(dir, name, big);
        free(big);
}

struct tree {
        char root[64];
        char config[128];
        char dropins[160];
        char vendor[128];
};

static void tree_setup(struct tree *t) {
        snprintf(t->root, sizeof t->root, "/tmp/test-policy-XXXXXX");
        assert_non_null(mkdtemp(t->root));
        snprintf(t->config, sizeof t->config, "%s/etc", t->root);
        snprintf(t->dropins, sizeof t->dropins, "%s/etc/policy.d", t->root);
        snprintf(t->vendor, sizeof t->vendor, "%s/vendor", t->root);
        assert_int_equal(mkdir(t->config, 0755), 0);
        assert_int_equal(mkdir(t->dropins, 0755), 0);
        assert_int_equal(mkdir(t->vendor, 0755), 0);
}

static void tree_teardown(struct tree *t) {
        assert_int_equal(nftw(t->root, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static void test_load_masking_and_order(void **state) {
        struct tree t;
        struct coh_policy *p = NULL;
        struct coh_policy_error err;
        struct coh_policy_result res;
        char path[512], expected[512];
        struct coh_peer other = peer;

        tree_setup(&t);

        write_file(t.config, "coherencyd.conf", "[Broker]\n# fall back\nMode=force-disable\nAccess=allow\n");

        /* Masked by a file: the vendor's is never read, so its error does not count. */
        write_file(t.vendor, "10-masked.policy", "[Policy]\nMode=enable\nthis is not a policy\n");
        write_file(t.dropins, "10-masked.policy", "[Match]\nUser=1000\n[Policy]\nMode=automatic\n");
        /* Masked by an empty file and by a /dev/null symlink: no rule at all. */
        write_file(t.vendor, "20-empty.policy", "[Bogus]\n");
        write_file(t.dropins, "20-empty.policy", "");
        write_file(t.vendor, "30-null.policy", "[Bogus]\n");
        snprintf(path, sizeof path, "%s/30-null.policy", t.dropins);
        assert_int_equal(symlink("/dev/null", path), 0);
        /* Lexical order across both directories: vendor 05 and 15 around /etc's 10. */
        write_file(t.vendor, "05-nosnoop.policy", "[Match]\nVendor=8086\n[Policy]\nNoSnoop=hardwired-off\n");
        write_file(t.vendor, "15-enable.policy", "[Match]\nUser=1001\n[Policy]\nMode=enable\n");
        write_file(t.dropins, "40-nosnoop.policy", "[Policy]\nNoSnoop=capable\n");
        /* Not rule files: ignored whatever they hold. */
        write_file(t.vendor, "README", "[Bogus]\n");
        write_file(t.dropins, "50-x.policy.bak", "[Bogus]\n");
        write_file(t.dropins, ".60-hidden.policy", "[Bogus]\n");
        snprintf(path, sizeof path, "%s/70-dir.policy", t.dropins);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(path, sizeof path, "%s/80-dangling.policy", t.dropins);
        assert_int_equal(symlink("/nonexistent/coherencyd-test", path), 0);
        /* Must not hang on open. */
        snprintf(path, sizeof path, "%s/90-fifo.policy", t.dropins);
        assert_int_equal(mkfifo(path, 0600), 0);

        struct reports reports = { .prefix = t.root };
        assert_int_equal(coh_policy_load_report(t.config, t.vendor, record_report, &reports, &p, &err), 0);
        assert_non_null(p);
        assert_int_equal(coh_policy_n_rules(p), 4);
        /* What is not read is named, in the order of names, at its place among the rule files; hidden files are
         * not (editors' business). The masked vendor file is not even opened, so its error is not there. */
        assert_string_equal(reports.text,
                            "W /etc/policy.d/40-nosnoop.policy:2: rule without [Match]: it applies to every "
                            "device and every VMM\n"
                            "W /etc/policy.d/50-x.policy.bak: not read: only *.policy files are rule files\n"
                            "W /etc/policy.d/70-dir.policy: not read: neither a regular file nor a link to "
                            "/dev/null\n"
                            "W /etc/policy.d/80-dangling.policy: not read: a dangling symbolic link\n"
                            "W /etc/policy.d/90-fifo.policy: not read: neither a regular file nor a link to "
                            "/dev/null\n"
                            "W /vendor/README: not read: only *.policy files are rule files\n");

        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.mode, COH_MODE_AUTOMATIC);
        snprintf(expected, sizeof expected, "%s/10-masked.policy:4", t.dropins);
        assert_string_equal(origin(&res.mode_origin), expected);
        assert_int_equal(res.nosnoop, COH_NOSNOOP_HARDWIRED_OFF);
        snprintf(expected, sizeof expected, "%s/05-nosnoop.policy:4", t.vendor);
        assert_string_equal(origin(&res.nosnoop_origin), expected);

        other.uid = 1001;
        coh_policy_evaluate(p, &device, &other, &res);
        assert_int_equal(res.mode, COH_MODE_ENABLE);
        snprintf(expected, sizeof expected, "%s/15-enable.policy:4", t.vendor);
        assert_string_equal(origin(&res.mode_origin), expected);

        other.uid = 1002;
        coh_policy_evaluate(p, NULL, &other, &res);
        assert_int_equal(res.mode, COH_MODE_FORCE_DISABLE);
        snprintf(expected, sizeof expected, "%s/etc/coherencyd.conf:3", t.root);
        assert_string_equal(origin(&res.mode_origin), expected);
        assert_int_equal(res.access, COH_ACCESS_ALLOW);
        snprintf(expected, sizeof expected, "%s/etc/coherencyd.conf:4", t.root);
        assert_string_equal(origin(&res.access_origin), expected);
        assert_int_equal(res.nosnoop, COH_NOSNOOP_CAPABLE);
        snprintf(expected, sizeof expected, "%s/40-nosnoop.policy:2", t.dropins);
        assert_string_equal(origin(&res.nosnoop_origin), expected);

        coh_policy_free(p);
        tree_teardown(&t);
}

static void test_load_missing(void **state) {
        struct tree t;
        struct coh_policy *p = NULL;
        struct coh_policy_error err;
        struct coh_policy_result res;
        char config[256], vendor[256];

        tree_setup(&t);
        snprintf(config, sizeof config, "%s/nonexistent", t.root);
        snprintf(vendor, sizeof vendor, "%s/nonexistent-vendor", t.root);

        assert_int_equal(coh_policy_load(config, vendor, &p, &err), 0);
        assert_int_equal(coh_policy_n_rules(p), 0);
        coh_policy_evaluate(p, &device, &peer, &res);
        assert_int_equal(res.mode, COH_MODE_AUTOMATIC);
        assert_string_equal(origin(&res.mode_origin), "default");
        coh_policy_free(p);

        /* A config dir with no policy.d and no vendor dir at all. */
        assert_int_equal(rmdir(t.dropins), 0);
        assert_int_equal(coh_policy_load(t.config, NULL, &p, &err), 0);
        assert_int_equal(coh_policy_n_rules(p), 0);
        coh_policy_free(p);

        tree_teardown(&t);
}

static void test_load_errors(void **state) {
        struct tree t;
        struct coh_policy *p = NULL;
        struct coh_policy_error err;
        char path[512];
        int fd;

        tree_setup(&t);

        /* A parse error names the full path of the file and the line. */
        write_file(t.vendor, "10-bad.policy", "[Policy]\n\nMode=sometimes\n");
        assert_int_equal(coh_policy_load(t.config, t.vendor, &p, &err), -EINVAL);
        assert_null(p);
        snprintf(path, sizeof path, "%s/10-bad.policy", t.vendor);
        assert_string_equal(err.file, path);
        assert_int_equal(err.line, 3);
        assert_string_equal(err.message,
                            "invalid Mode= value 'sometimes' (expected enable, automatic or force-disable)");
        assert_int_equal(unlink(path), 0);

        /* So does one in coherencyd.conf. */
        write_file(t.config, "coherencyd.conf", "[Broker]\nMaxConnections=0\n");
        assert_int_equal(coh_policy_load(t.config, t.vendor, &p, &err), -EINVAL);
        snprintf(path, sizeof path, "%s/coherencyd.conf", t.config);
        assert_string_equal(err.file, path);
        assert_int_equal(err.line, 2);
        assert_string_equal(err.message, "invalid MaxConnections= value '0' (expected an integer from 1 to 65536)");
        assert_int_equal(unlink(path), 0);

        write_file(t.config, "coherencyd.conf", "[Broker]\nAccess=allow\nReleaseTimeoutSec=10\nRevokeKill=perhaps\n");
        assert_int_equal(coh_policy_load(t.config, t.vendor, &p, &err), -EINVAL);
        assert_null(p);
        assert_string_equal(err.file, path);
        assert_int_equal(err.line, 4);
        assert_string_equal(err.message, "invalid RevokeKill= value 'perhaps' (expected yes, no, true, false, 1 or 0)");
        write_file(t.config, "coherencyd.conf", "[Broker]\nRevokeKill=yes\n\nReleaseTimeoutSec=100000\n");
        assert_int_equal(coh_policy_load(t.config, t.vendor, &p, &err), -EINVAL);
        assert_string_equal(err.file, path);
        assert_int_equal(err.line, 4);
        assert_string_equal(err.message,
                            "invalid ReleaseTimeoutSec= value '100000' (expected a number of seconds from 1 to 86400)");
        assert_int_equal(unlink(path), 0);

        write_file(t.dropins, "20-access.policy", "[Match]\nUser=root\n[Policy]\nAccess=granted\n");
        assert_int_equal(coh_policy_load(t.config, t.vendor, &p, &err), -EINVAL);
        snprintf(path, sizeof path, "%s/20-access.policy", t.dropins);
        assert_string_equal(err.file, path);
        assert_int_equal(err.line, 4);
        assert_string_equal(err.message, "invalid Access= value 'granted' (expected allow or deny)");
        assert_int_equal(unlink(path), 0);
        snprintf(path, sizeof path, "%s/coherencyd.conf", t.config);

        /* Whole-file problems have line 0 and an errno. */
        assert_int_equal(mkdir(path, 0755), 0);
        assert_int_equal(coh_policy_load(t.config, t.vendor, &p, &err), -EISDIR);
        assert_string_equal(err.file, path);
        assert_int_equal(err.line, 0);
        assert_string_equal(err.message, strerror(EISDIR));
        assert_int_equal(rmdir(path), 0);

        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(coh_policy_load(t.config, t.vendor, &p, &err), -EBADFD);
        assert_string_equal(err.file, path);
        assert_int_equal(err.line, 0);
        assert_string_equal(err.message, "not a regular file");
        assert_int_equal(unlink(path), 0);

        write_big_file(t.dropins, "10-big.policy");
        assert_int_equal(coh_policy_load(t.config, t.vendor, &p, &err), -EFBIG);
        snprintf(path, sizeof path, "%s/10-big.policy", t.dropins);
        assert_string_equal(err.file, path);
        assert_int_equal(err.line, 0);
        assert_string_equal(err.message, "file too large");
        assert_int_equal(unlink(path), 0);

        /* A policy.d that is not a directory. */
        assert_int_equal(rmdir(t.dropins), 0);
        fd = open(t.dropins, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(coh_policy_load(t.config, t.vendor, &p, &err), -ENOTDIR);
        assert_string_equal(err.file, t.dropins);
        assert_int_equal(err.line, 0);
        assert_null(p);

        tree_teardown(&t);
}

/* On disk too, every error: an unreadable file and a directory that is not one do not hide the others. */
static void test_load_every_error(void **state) {
        struct tree t;
        struct coh_policy *p = NULL;
        struct coh_policy_error err;
        struct reports reports;
        char path[512];
        int fd;

        tree_setup(&t);
        write_file(t.config, "coherencyd.conf", "[Broker]\nRevokeKill=perhaps\n");
        write_big_file(t.dropins, "10-big.policy");
        write_file(t.dropins, "20-bad.policy", "[Policy]\nMode=sometimes\n");
        write_file(t.vendor, "30-bad.policy", "[Policy]\nMode=always\n");

        reports = (struct reports) { .prefix = t.root };
        assert_int_equal(coh_policy_load_report(t.config, t.vendor, record_report, &reports, &p, &err), -EINVAL);
        assert_null(p);
        assert_string_equal(reports.text,
                            "E /etc/coherencyd.conf:2: invalid RevokeKill= value 'perhaps' (expected yes, no, true, "
                            "false, 1 or 0)\n"
                            "E /etc/policy.d/10-big.policy: file too large\n"
                            "E /etc/policy.d/20-bad.policy:2: invalid Mode= value 'sometimes' (expected enable, "
                            "automatic or force-disable)\n"
                            "E /vendor/30-bad.policy:2: invalid Mode= value 'always' (expected enable, automatic or "
                            "force-disable)\n");
        snprintf(path, sizeof path, "%s/coherencyd.conf", t.config);
        assert_string_equal(err.file, path);
        assert_int_equal(err.line, 2);

        /* A policy.d that is not a directory is one error; the vendor directory is read all the same. */
        snprintf(path, sizeof path, "%s/10-big.policy", t.dropins);
        assert_int_equal(unlink(path), 0);
        snprintf(path, sizeof path, "%s/20-bad.policy", t.dropins);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(t.dropins), 0);
        fd = open(t.dropins, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        snprintf(path, sizeof path, "%s/coherencyd.conf", t.config);
        assert_int_equal(unlink(path), 0);
        reports = (struct reports) { .prefix = t.root };
        assert_int_equal(coh_policy_load_report(t.config, t.vendor, record_report, &reports, &p, &err), -ENOTDIR);
        snprintf(path, sizeof path, "E /etc/policy.d: %s\n"
                 "E /vendor/30-bad.policy:2: invalid Mode= value 'always' (expected enable, automatic or "
                 "force-disable)\n", strerror(ENOTDIR));
        assert_string_equal(reports.text, path);

        tree_teardown(&t);
}

/*
 * The daemon's load (coh_policy_load) logs every warning and every error but
 * the first, which it returns for the caller to log with what it knows.
 * Without a journal the log is stderr.
 */
static void test_load_logs_all_but_the_first_error(void **state) {
        struct tree t;
        struct coh_policy *p = NULL;
        struct coh_policy_error err;
        char logged[4096] = "", expected[2048];
        FILE *f;
        int saved, fd;
        ssize_t n;

        tree_setup(&t);
        write_file(t.dropins, "10-first.policy", "[Policy]\nMode=sometimes\n");
        write_file(t.dropins, "20-second.policy", "[Policy]\nAccess=perhaps\n");
        write_file(t.dropins, "30-wide.policy", "[Policy]\nMode=enable\n");
        write_file(t.dropins, "notes.txt", "x\n");

        f = tmpfile();
        assert_non_null(f);
        fflush(stderr);
        saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
        assert_int_equal(coh_policy_load(t.config, NULL, &p, &err), -EINVAL);
        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        fd = fileno(f);
        n = pread(fd, logged, sizeof logged - 1, 0);
        assert_true(n > 0);
        fclose(f);

        assert_int_equal(err.line, 2);
        assert_non_null(strstr(err.file, "10-first.policy"));
        snprintf(expected, sizeof expected,
                 "%s/20-second.policy:2: invalid Access= value 'perhaps' (expected allow or deny)\n"
                 "%s/30-wide.policy:2: rule without [Match]: it applies to every device and every VMM\n"
                 "%s/notes.txt: not read: only *.policy files are rule files\n",
                 t.dropins, t.dropins, t.dropins);
        assert_string_equal(logged, expected);
        tree_teardown(&t);
}

/* ---------------------------------------------------------------------------------------------- */
/* Output */

static void test_origin_format(void **state) {
        char buf[64];
        struct coh_origin o = { .file = "/etc/coherencyd/policy.d/50-gpu.policy", .line = 7 };

        assert_string_equal(coh_origin_format(&o, buf, sizeof buf), "/etc/coherencyd/policy.d/50-gpu.policy:7");
        o = (struct coh_origin) {};
        assert_string_equal(coh_origin_format(&o, buf, sizeof buf), "default");
        assert_string_equal(coh_origin_format(NULL, buf, sizeof buf), "default");
}

static const char *json_str(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v))
                return NULL;
        return json_object_get_string(v);
}

static void test_to_json(void **state) {
        const struct coh_policy_file rules[] = {
                file("/x/20-gpu.policy", "[Match]\nVendor=0x10DE 1002\nUser=root\n[Policy]\nMode=enable\n"),
                file("/x/10-nic.policy", "[Policy]\nNoSnoop=hardwired-off\nAccess=allow\n"),
        };
        struct coh_policy *p = load_ok("[Broker]\nMode=force-disable\nAdminGroup=root\nAccess=allow\n"
                                       "ReleaseTimeoutSec=120\nRevokeKill=true\n",
                                       rules, ELEMENTSOF(rules));
        json_object *j = coh_policy_to_json(p), *broker, *arr, *r, *match, *v;

        assert_non_null(j);
        assert_true(json_object_object_get_ex(j, "broker", &broker));
        assert_string_equal(json_str(broker, "mode"), "force-disable");
        assert_string_equal(json_str(broker, "modeRule"), CONF ":2");
        assert_true(json_object_object_get_ex(broker, "adminGroup", &v));
        assert_int_equal(json_object_get_int(v), 0);
        assert_true(json_object_object_get_ex(broker, "maxConnections", &v));
        assert_int_equal(json_object_get_int(v), 256);
        assert_string_equal(json_str(broker, "access"), "allow");
        assert_string_equal(json_str(broker, "accessRule"), CONF ":4");
        assert_true(json_object_object_get_ex(broker, "releaseTimeoutSec", &v));
        assert_true(json_object_is_type(v, json_type_int));
        assert_int_equal(json_object_get_int(v), 120);
        assert_true(json_object_object_get_ex(broker, "revokeKill", &v));
        assert_true(json_object_is_type(v, json_type_boolean));
        assert_true(json_object_get_boolean(v));
        /* Every setting says where it came from, not only Mode= and Access=. */
        assert_string_equal(json_str(broker, "adminGroupRule"), CONF ":3");
        assert_string_equal(json_str(broker, "releaseTimeoutSecRule"), CONF ":5");
        assert_string_equal(json_str(broker, "revokeKillRule"), CONF ":6");
        assert_string_equal(json_str(broker, "maxConnectionsRule"), "default");
        assert_string_equal(json_str(broker, "refusalLogIntervalSecRule"), "default");

        assert_true(json_object_object_get_ex(j, "rules", &arr));
        assert_int_equal(json_object_array_length(arr), 2);

        r = json_object_array_get_idx(arr, 0);
        assert_string_equal(json_str(r, "file"), "/x/10-nic.policy");
        assert_null(json_str(r, "mode"));
        assert_string_equal(json_str(r, "noSnoop"), "hardwired-off");
        assert_string_equal(json_str(r, "noSnoopRule"), "/x/10-nic.policy:2");
        assert_string_equal(json_str(r, "access"), "allow");
        assert_string_equal(json_str(r, "accessRule"), "/x/10-nic.policy:3");
        assert_true(json_object_object_get_ex(r, "match", &match));
        assert_int_equal(json_object_object_length(match), 0);

        r = json_object_array_get_idx(arr, 1);
        assert_string_equal(json_str(r, "mode"), "enable");
        assert_string_equal(json_str(r, "modeRule"), "/x/20-gpu.policy:5");
        assert_null(json_str(r, "noSnoop"));
        assert_null(json_str(r, "access"));
        assert_null(json_str(r, "accessRule"));
        assert_true(json_object_object_get_ex(r, "match", &match));
        assert_string_equal(json_object_to_json_string_ext(match, JSON_C_TO_STRING_PLAIN),
                            "{\"Vendor\":[\"0x10DE\",\"1002\"],\"User\":[\"root\"]}");
        json_object_put(j);
        coh_policy_free(p);

        p = load_ok(NULL, NULL, 0);
        j = coh_policy_to_json(p);
        assert_true(json_object_object_get_ex(j, "broker", &broker));
        assert_string_equal(json_str(broker, "modeRule"), "default");
        assert_true(json_object_object_get_ex(broker, "adminGroup", &v));
        assert_null(v);
        assert_string_equal(json_str(broker, "access"), "deny");
        assert_string_equal(json_str(broker, "accessRule"), "default");
        assert_true(json_object_object_get_ex(broker, "releaseTimeoutSec", &v));
        assert_int_equal(json_object_get_int(v), 30);
        assert_true(json_object_object_get_ex(broker, "revokeKill", &v));
        assert_true(json_object_is_type(v, json_type_boolean));
        assert_false(json_object_get_boolean(v));
        json_object_put(j);
        coh_policy_free(p);
}

/* Each [Broker] key has its value and, beside it, "<key>Rule": the line that set it, or "default". */
static void test_to_json_broker_origins(void **state) {
        static const char *const keys[] = {
                "mode", "access", "adminGroup", "maxConnections", "reservedAdminConnections", "messageTimeoutSec",
                "maxConnectionsPerUser", "maxGrantsPerConnection", "idleExitSec", "releaseTimeoutSec",
                "refusalLogIntervalSec", "revokeKill",
        };
        struct coh_policy *p = load_ok("[Broker]\n"
                                       "Mode=enable\nAccess=allow\nAdminGroup=0\nMaxConnections=10\n"
                                       "ReservedAdminConnections=1\nMessageTimeoutSec=2\nMaxConnectionsPerUser=3\n"
                                       "MaxGrantsPerConnection=4\nIdleExitSec=5\nReleaseTimeoutSec=6\n"
                                       "RefusalLogIntervalSec=7\nRevokeKill=yes\n",
                                       NULL, 0);
        json_object *j = coh_policy_to_json(p), *broker, *v;
        char name[64], expected[64];

        assert_true(json_object_object_get_ex(j, "broker", &broker));
        /* The twelve keys, each with its rule, and nothing else. */
        assert_int_equal(json_object_object_length(broker), 2 * ELEMENTSOF(keys));
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                assert_true(json_object_object_get_ex(broker, keys[i], &v));
                assert_non_null(v);
                snprintf(name, sizeof name, "%sRule", keys[i]);
                snprintf(expected, sizeof expected, CONF ":%zu", i + 2);
                if (!json_str(broker, name) || strcmp(json_str(broker, name), expected) != 0)
                        fail_msg("%s: expected %s, got %s", name, expected, json_str(broker, name));
        }
        json_object_put(j);
        coh_policy_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ini_tokens),
                cmocka_unit_test(test_ini_line_max),
                cmocka_unit_test(test_ini_handler_error),
                cmocka_unit_test(test_ini_goes_on_after_errors),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_conf),
                cmocka_unit_test(test_conf_fallback),
                cmocka_unit_test(test_conf_release_and_kill),
                cmocka_unit_test(test_match_device_keys),
                cmocka_unit_test(test_match_hex_case),
                cmocka_unit_test(test_match_no_iommu_group_no_driver),
                cmocka_unit_test(test_match_peer_keys),
                cmocka_unit_test(test_match_root_peer),
                cmocka_unit_test(test_match_no_peer),
                cmocka_unit_test(test_match_absent_section),
                cmocka_unit_test(test_first_match_per_setting),
                cmocka_unit_test(test_no_device),
                cmocka_unit_test(test_access_precedence),
                cmocka_unit_test(test_access_fallback),
                cmocka_unit_test(test_rule_errors),
                cmocka_unit_test(test_inline_comment_is_an_error),
                cmocka_unit_test(test_every_error_is_reported),
                cmocka_unit_test(test_rule_matching_everything_is_a_warning),
                cmocka_unit_test(test_rule_line_too_long),
                cmocka_unit_test(test_conf_errors),
                cmocka_unit_test(test_conf_refusal_log_interval),
                cmocka_unit_test(test_conf_reserve_and_message_timeout),
                cmocka_unit_test(test_peer_from_names_root),
                cmocka_unit_test(test_peer_from_names_errors),
                cmocka_unit_test(test_peer_from_names_unknown_uid),
                cmocka_unit_test(test_peer_from_names_evaluate),
                cmocka_unit_test(test_load_masking_and_order),
                cmocka_unit_test(test_load_missing),
                cmocka_unit_test(test_load_errors),
                cmocka_unit_test(test_load_every_error),
                cmocka_unit_test(test_load_logs_all_but_the_first_error),
                cmocka_unit_test(test_origin_format),
                cmocka_unit_test(test_to_json),
                cmocka_unit_test(test_to_json_broker_origins),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
