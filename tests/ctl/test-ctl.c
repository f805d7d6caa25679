/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * coherencyctl as an operator meets it: the built coherencyctl run as a
 * process (as root and as nobody) against a real coherencyd on the simulated
 * platform (tests/integration/harness.h), judged by what it prints and how it
 * exits. The pager is only ever started on a pseudo-terminal made here; every
 * other run has a pipe for stdout, where coherencyctl must never page.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* The exit statuses coherencyctl(1) documents. */
enum { OK = 0, FAILED = 1, USAGE = 2, UNREACHABLE = 3, DENIED = 4, NOT_FOUND = 5 };

#define GRANTED_GROUP 4 /* 0000:00:05.0, behind dmar1 (cannot enforce): granted */
#define NOT_NEEDED_GROUP 1 /* 0000:00:02.0, No-Snoop hard-wired off by the demo's policy */

/* ---- running coherencyctl -------------------------------------------------- */

static int ctlv(const struct harness *h, uid_t uid, char **ret_stdout, char **ret_stderr, const char *const *args) {
        char *argv[32];
        size_t n = 0;

        argv[n++] = (char *) h->coherencyctl;
        argv[n++] = "--socket";
        argv[n++] = (char *) h->socket;
        for (; *args; args++) {
                assert_true(n < sizeof argv / sizeof argv[0] - 1);
                argv[n++] = (char *) *args;
        }
        argv[n] = NULL;
        return run_command(argv, uid, ret_stdout, ret_stderr);
}

/* coherencyctl --socket S ARGS... (NULL-terminated) as uid; returns its exit status. */
#define ctl(h, uid, out, err, ...) ctlv(h, uid, out, err, (const char *const[]) { __VA_ARGS__, NULL })

/* What a run of coherencyctl printed (ctl_done() frees it). */
struct ctl_run {
        char *out, *err;
};

static void ctl_done(struct ctl_run *c) {
        free(c->out);
        free(c->err);
        *c = (struct ctl_run) {};
}

static void expect_ctl_status(int got, int want, const char *what, const char *out, const char *err);

/* Runs coherencyctl ARGS as uid and asserts its exit status; keeps what it printed in *c. */
static void ctl_expect(struct ctl_run *c, const struct harness *h, uid_t uid, int status, const char *const *args) {
        char what[512] = "";

        for (const char *const *a = args; *a; a++)
                snprintf(what + strlen(what), sizeof what - strlen(what), "%s%s", a == args ? "" : " ", *a);
        expect_ctl_status(ctlv(h, uid, &c->out, &c->err, args), status, what, c->out, c->err);
}
#define CTL(c, h, uid, status, ...) ctl_expect(c, h, uid, status, (const char *const[]) { __VA_ARGS__, NULL })

/* Asserts the exit status, showing what it said otherwise. */
static void expect_ctl_status(int got, int want, const char *what, const char *out, const char *err) {
        if (got != want)
                fail_msg("coherencyctl %s exited with %d, expected %d\nstdout:\n%s\nstderr:\n%s", what, got, want,
                         out ?: "", err ?: "");
}

static void expect_contains(const char *text, const char *needle) {
        if (!strstr(text, needle))
                fail_msg("expected '%s' in:\n%s", needle, text);
}

static void expect_lacks(const char *text, const char *needle) {
        if (strstr(text, needle))
                fail_msg("did not expect '%s' in:\n%s", needle, text);
}

/* The line of text that contains needle (free()), failing when there is none. */
static char *line_with(const char *text, const char *needle) {
        const char *p = strstr(text, needle), *start, *end;

        if (!p)
                fail_msg("no line with '%s' in:\n%s", needle, text);
        for (start = p; start > text && start[-1] != '\n'; start--)
                ;
        end = strchrnul(p, '\n');
        return strndup(start, (size_t) (end - start));
}

/* Exactly one JSON document (an object) and nothing but white space after it. */
static json_object *one_document(const char *text) {
        struct json_tokener *tok = json_tokener_new();
        json_object *o;
        size_t end;

        assert_non_null(tok);
        o = json_tokener_parse_ex(tok, text, (int) strlen(text));
        if (!o || json_tokener_get_error(tok) != json_tokener_success)
                fail_msg("not a JSON document: %s", text);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        for (const char *p = text + end; *p; p++)
                if (!strchr(" \t\n", *p))
                        fail_msg("more than one JSON document (after offset %zu): %s", end, text);
        assert_true(json_object_is_type(o, json_type_object));
        return o;
}

static size_t count_lines(const char *text) {
        size_t n = 0;

        for (; *text; text++)
                n += *text == '\n';
        return n;
}

/* Display width: code points (the ellipsis is one). */
static size_t text_width(const char *s, size_t len) {
        size_t n = 0;

        for (size_t i = 0; i < len; i++)
                n += ((unsigned char) s[i] & 0xc0) != 0x80;
        return n;
}

static size_t widest_line(const char *text) {
        size_t widest = 0;

        while (*text) {
                const char *end = strchrnul(text, '\n');
                size_t w = text_width(text, (size_t) (end - text));

                if (w > widest)
                        widest = w;
                text = *end ? end + 1 : end;
        }
        return widest;
}

/* ---- the daemon's side ------------------------------------------------------- */

/* A VMM connection of the test's holding grants. */
struct vmm_side {
        struct vconn *conn;
        int vm;
        int groups[4];
        char *ids[4];
        size_t n;
};

static void hold_grant(struct harness *h, struct vmm_side *v, unsigned group, const char *container) {
        json_object *reply;

        if (!v->conn) {
                v->conn = vconn_connect(h);
                v->vm = sim_object("kvm-vm");
        }
        assert_true(v->n < 4);
        reply = request_grant_take(v->conn, v->vm, group, container, &v->groups[v->n]);
        v->ids[v->n] = strdup(jstr(reply, "grant"));
        v->n++;
        json_object_put(reply);
}

static void vmm_side_done(struct vmm_side *v) {
        for (size_t i = 0; i < v->n; i++) {
                close(v->groups[i]);
                free(v->ids[i]);
        }
        if (v->conn) {
                vconn_free(v->conn);
                close(v->vm);
        }
}

/* ---- status, the default command ------------------------------------------- */

static void test_status_is_the_default_command(void **state) {
        struct harness *h = *state;
        struct ctl_run c = {};
        struct vmm_side v = {};
        char expect[PATH_MAX + 64];
        json_object *doc, *counts;

        harness_start(h);
        CTL(&c, h, 0, OK, "--no-pager");
        expect_contains(c.out, "Daemon: coherencyd ");
        expect_contains(c.out, "Backend: sim");
        expect_contains(c.out, "dmar0 (intel-iommu): can enforce coherency");
        expect_contains(c.out, "dmar1 (intel-iommu): cannot enforce coherency");
        expect_contains(c.out, "Grants: 0 active, 0 ending");
        snprintf(expect, sizeof expect, "Policy: 5 rules in 5 files under %s/policy.d", h->config);
        expect_contains(c.out, expect);
        snprintf(expect, sizeof expect, "Access=allow (%s/coherencyd.conf:", h->config);
        expect_contains(c.out, expect);
        ctl_done(&c);

        /* Grants by state: one active, one ending (released while the VMM still holds it). */
        hold_grant(h, &v, GRANTED_GROUP, "noncoherent");
        hold_grant(h, &v, NOT_NEEDED_GROUP, "coherent");
        json_object_put(release_grant(v.conn, v.ids[1]));
        CTL(&c, h, 0, OK, "status");
        expect_contains(c.out, "Grants: 1 active, 1 ending (1 granted WBINVD, 1 not needing it)");
        ctl_done(&c);

        CTL(&c, h, 0, OK, "--json=short");
        doc = one_document(c.out);
        assert_string_equal(jstr(jmember(doc, "info"), "backend"), "sim");
        assert_string_equal(jstr(doc, "socket"), h->socket);
        counts = jmember(doc, "grantsByState");
        assert_int_equal(jint(counts, "active"), 1);
        assert_int_equal(jint(counts, "ending"), 1);
        assert_int_equal(json_object_array_length(jmember(doc, "grants")), 2);
        assert_int_equal(json_object_array_length(jmember(jmember(doc, "policy"), "rules")), 5);
        json_object_put(doc);
        ctl_done(&c);

        /* Someone who may not see grants and policy: still a status, and success. */
        CTL(&c, h, NOBODY_UID, OK, "status");
        expect_contains(c.out, "Backend: sim");
        expect_contains(c.out, "Grants: (only root and AdminGroup= members see them)");
        expect_contains(c.out, "For you: Access=allow");
        ctl_done(&c);
        CTL(&c, h, NOBODY_UID, OK, "--json=pretty", "status");
        doc = one_document(c.out);
        assert_true(json_object_object_get_ex(doc, "grants", NULL));
        assert_null(json_object_object_get(doc, "grants"));
        assert_null(json_object_object_get(doc, "policy"));
        json_object_put(doc);
        ctl_done(&c);

        vmm_side_done(&v);
}

/* ---- --json ---------------------------------------------------------------- */

/* Runs ARGS with --json=short and --json=pretty: one document each, the same one. */
static json_object *json_both_ways(struct harness *h, const char *const *args) {
        char *shrt, *pretty, *err, what[256] = "";
        const char *argv_short[24], *argv_pretty[24];
        json_object *a, *b;
        size_t n = 0;
        int r;

        argv_short[0] = "--json=short";
        argv_pretty[0] = "--json=pretty";
        for (; args[n]; n++) {
                assert_true(n + 2 < 24);
                argv_short[n + 1] = argv_pretty[n + 1] = args[n];
                strncat(what, args[n], sizeof what - strlen(what) - 2);
                strcat(what, " ");
        }
        argv_short[n + 1] = argv_pretty[n + 1] = NULL;

        r = ctlv(h, 0, &shrt, &err, argv_short);
        expect_ctl_status(r, OK, what, shrt, err);
        free(err);
        r = ctlv(h, 0, &pretty, &err, argv_pretty);
        expect_ctl_status(r, OK, what, pretty, err);
        free(err);

        a = one_document(shrt);
        b = one_document(pretty);
        if (count_lines(shrt) != 1)
                fail_msg("--json=short %sprinted %zu lines:\n%s", what, count_lines(shrt), shrt);
        if (count_lines(pretty) < 2)
                fail_msg("--json=pretty %sprinted one line:\n%s", what, pretty);
        if (!json_object_equal(a, b))
                fail_msg("--json=short and --json=pretty %sdiffer:\n%s\n%s", what, shrt, pretty);
        free(shrt);
        free(pretty);
        json_object_put(b);
        return a;
}

/* Every command, one after the other on one daemon (a list, longer than a screen). */
static void test_json_prints_one_document_per_command(void **state) {
        struct harness *h = *state;
        struct ctl_run c = {};
        struct vmm_side v = {};
        char device[32];
        json_object *doc;

        harness_start(h);
        hold_grant(h, &v, GRANTED_GROUP, "noncoherent");
        snprintf(device, sizeof device, "%s", group_slot(GRANTED_GROUP));

        doc = json_both_ways(h, (const char *const[]) { "status", NULL });
        assert_int_equal(jint(jmember(doc, "grantsByState"), "active"), 1);
        json_object_put(doc);

        /* info was two documents once: now the service's is a member of the broker's. */
        doc = json_both_ways(h, (const char *const[]) { "info", NULL });
        assert_string_equal(jstr(doc, "backend"), "sim");
        assert_string_equal(jstr(jmember(doc, "service"), "product"), "coherencyd");
        json_object_put(doc);

        doc = json_both_ways(h, (const char *const[]) { "devices", "--sysfs", h->sysfs, NULL });
        assert_int_equal(json_object_array_length(jmember(doc, "devices")), 10);
        json_object_put(doc);

        doc = json_both_ways(h, (const char *const[]) { "policy", NULL });
        assert_string_equal(jstr(jmember(jmember(doc, "policy"), "broker"), "access"), "allow");
        json_object_put(doc);

        doc = json_both_ways(h, (const char *const[]) { "probe", device, NULL });
        assert_string_equal(jstr(doc, "decision"), "granted");
        json_object_put(doc);

        doc = json_both_ways(h, (const char *const[]) { "explain", device, "--user", "nobody", NULL });
        assert_string_equal(jstr(doc, "reason"), "platform-cannot-enforce");
        json_object_put(doc);

        doc = json_both_ways(h, (const char *const[]) { "grants", NULL });
        assert_int_equal(json_object_array_length(jmember(doc, "grants")), 1);
        json_object_put(doc);

        doc = json_both_ways(h, (const char *const[]) { "reload", NULL });
        assert_int_equal(jint(doc, "rules"), 5);
        json_object_put(doc);

        doc = json_both_ways(h, (const char *const[]) { "introspect", NULL });
        assert_int_equal(json_object_array_length(jmember(doc, "interfaces")), 3);
        json_object_put(doc);

        doc = json_both_ways(h, (const char *const[]) { "introspect", "io.coherencyd.Broker", NULL });
        expect_contains(jstr(doc, "description"), "interface io.coherencyd.Broker");
        json_object_put(doc);

        doc = json_both_ways(h, (const char *const[]) { "check-policy", "--config", h->config, NULL });
        assert_true(jbool(doc, "valid"));
        json_object_put(doc);

        /* revoke's reply has no parameters: {} */
        CTL(&c, h, 0, OK, "--json=short", "revoke", v.ids[0]);
        doc = one_document(c.out);
        assert_int_equal(json_object_object_length(doc), 0);
        json_object_put(doc);
        ctl_done(&c);

        /* A bare --json is short; --json=off is text; anything else is a usage error. */
        CTL(&c, h, 0, OK, "--json", "info");
        json_object_put(one_document(c.out));
        assert_int_equal(count_lines(c.out), 1);
        ctl_done(&c);
        CTL(&c, h, 0, OK, "--json=off", "info");
        expect_contains(c.out, "Backend: sim");
        ctl_done(&c);
        CTL(&c, h, 0, USAGE, "--json=yaml", "info");
        expect_contains(c.err, "--json= takes pretty, short or off");
        assert_string_equal(c.out, "");
        ctl_done(&c);

        /* A failure prints no document at all, only the error. */
        CTL(&c, h, NOBODY_UID, DENIED, "--json=short", "grants");
        assert_string_equal(c.out, "");
        ctl_done(&c);

        vmm_side_done(&v);
}

/* ---- exit statuses and hints ------------------------------------------------- */

static void expect_usage(struct harness *h, const char *const *args, const char *message) {
        char *out, *err;
        int r = ctlv(h, 0, &out, &err, args);

        expect_ctl_status(r, USAGE, args[0], out, err);
        expect_contains(err, message);
        expect_contains(err, "Try 'coherencyctl --help'");
        free(out);
        free(err);
}

/* Each documented exit status in turn, with its hint (a list, longer than a screen). */
static void test_exit_statuses_and_hints(void **state) {
        struct harness *h = *state;
        struct ctl_run c = {};
        char *out, *err, broken[64];
        int r;

        harness_write_config(h, "coherencyd.conf", "[Broker]\nAccess=allow\nRevokeKill=no\n");
        harness_start(h);

        /* 2: the command line, or a parameter the daemon rejects. */
        expect_usage(h, (const char *const[]) { "frobnicate", NULL }, "unknown command 'frobnicate'");
        expect_usage(h, (const char *const[]) { "revoke", NULL }, "revoke: missing argument");
        expect_usage(h, (const char *const[]) { "grants", "extra", NULL }, "grants: too many arguments");
        expect_usage(h, (const char *const[]) { "grants", "--kill", NULL }, "--kill only applies to revoke");
        expect_usage(h, (const char *const[]) { "probe", "0000:00:05.0", "--sysfs", "/sys", NULL },
                     "--sysfs only applies to devices");
        expect_usage(h, (const char *const[]) { "explain", "0000:00:05.0", NULL }, "--user is needed");
        expect_usage(h, (const char *const[]) { "--no-such-option", NULL }, "");
        CTL(&c, h, 0, USAGE, "probe", "not-a-pci-address");
        expect_contains(c.err, "org.varlink.service.InvalidParameter");
        expect_contains(c.err, "Hint: DEVICE is a PCI address");
        ctl_done(&c);

        /* 3: no daemon there. */
        r = run_command((char *[]) { h->coherencyctl, "--socket", "/nonexistent/io.coherencyd", "grants", NULL }, 0,
                        &out, &err);
        expect_ctl_status(r, UNREACHABLE, "--socket=/nonexistent/io.coherencyd grants", out, err);
        expect_contains(err, "cannot connect to coherencyd at /nonexistent/io.coherencyd");
        expect_contains(err, "Hint: is coherencyd.socket listening?");
        free(out);
        free(err);

        /* 4: PermissionDenied, with how to get in. */
        CTL(&c, h, NOBODY_UID, DENIED, "grants");
        expect_contains(c.err, "io.coherencyd.Broker.PermissionDenied");
        expect_contains(c.err, "AdminGroup=");
        expect_contains(c.err, "coherencyd.conf");
        expect_contains(c.err, "set AdminGroup=GROUP there");
        expect_contains(c.err, "coherencyctl reload");
        ctl_done(&c);

        /* 5: no such device, grant or interface. */
        CTL(&c, h, 0, NOT_FOUND, "probe", "0000:00:1f.0");
        expect_contains(c.err, "io.coherencyd.Broker.NoSuchDevice");
        expect_contains(c.err, "Hint: 'coherencyctl devices' lists");
        ctl_done(&c);
        CTL(&c, h, 0, NOT_FOUND, "revoke", "g-0000000000000000");
        expect_contains(c.err, "NoSuchGrant");
        expect_contains(c.err, "Hint: 'coherencyctl grants' lists");
        ctl_done(&c);
        CTL(&c, h, 0, NOT_FOUND, "introspect", "org.example.Nothing");
        expect_contains(c.err, "InterfaceNotFound");
        ctl_done(&c);
        CTL(&c, h, 0, NOT_FOUND, "devices", "--sysfs", "/nonexistent");
        ctl_done(&c);

        /* 1: everything else, e.g. --kill without RevokeKill=yes, or a policy that does not parse. */
        struct vmm_side v = {};
        hold_grant(h, &v, GRANTED_GROUP, "noncoherent");
        CTL(&c, h, 0, FAILED, "revoke", v.ids[0], "--kill");
        expect_contains(c.err, "KillNotEnabled");
        expect_contains(c.err, "Hint: set RevokeKill=yes");
        ctl_done(&c);
        vmm_side_done(&v);

        harness_write_config(h, "policy.d/60-broken.policy", "[Match]\nVendor=0x8086\n\n[Policy]\nMode=sometimes\n");
        CTL(&c, h, 0, FAILED, "reload");
        harness_rule(h, "policy.d/60-broken.policy", 5, broken, sizeof broken);
        expect_contains(c.err, broken);
        ctl_done(&c);
        CTL(&c, h, 0, FAILED, "check-policy", "--config", h->config);
        expect_contains(c.err, broken);
        ctl_done(&c);
}

/* The PermissionDenied hint, followed as printed: AdminGroup= and a reload let nobody in. */
static void test_the_permission_hint_works(void **state) {
        struct harness *h = *state;
        struct ctl_run c = {};

        harness_start(h);
        CTL(&c, h, NOBODY_UID, DENIED, "grants");
        ctl_done(&c);

        harness_write_config(h, "coherencyd.conf", "[Broker]\nAccess=allow\nAdminGroup=nogroup\n");
        CTL(&c, h, 0, OK, "reload");
        ctl_done(&c);
        CTL(&c, h, NOBODY_UID, OK, "grants");
        expect_contains(c.out, "No grants.");
        ctl_done(&c);
        CTL(&c, h, NOBODY_UID, OK, "policy");
        expect_contains(c.out, "nogroup (gid 65534)");
        ctl_done(&c);
}

/* ---- tables: width, --full, --no-legend -------------------------------------- */

static void expect_fits(struct harness *h, unsigned columns, const char *const *args) {
        char width[16], *out, *err;
        int r;

        snprintf(width, sizeof width, "%u", columns);
        assert_int_equal(setenv("COLUMNS", width, 1), 0);
        r = ctlv(h, 0, &out, &err, args);
        unsetenv("COLUMNS");
        expect_ctl_status(r, OK, args[0], out, err);
        if (widest_line(out) > columns)
                fail_msg("COLUMNS=%u coherencyctl %s: a line of %zu columns:\n%s", columns, args[0], widest_line(out),
                         out);
        free(out);
        free(err);
}

static void test_tables_fit_columns_unless_full(void **state) {
        struct harness *h = *state;
        struct ctl_run c = {};
        struct vmm_side v = {};
        char rule[PATH_MAX + 16], *line;

        harness_start(h);
        hold_grant(h, &v, GRANTED_GROUP, "noncoherent");
        hold_grant(h, &v, NOT_NEEDED_GROUP, "coherent");
        json_object_put(release_grant(v.conn, v.ids[1]));

        for (unsigned columns = 80; columns <= 160; columns += 40) {
                expect_fits(h, columns, (const char *const[]) { "grants", NULL });
                expect_fits(h, columns, (const char *const[]) { "devices", "--sysfs", h->sysfs, NULL });
                expect_fits(h, columns, (const char *const[]) { "policy", NULL });
        }

        /* Shortened with an ellipsis, and whole again with --full (and in a pipe without $COLUMNS). */
        harness_rule(h, "policy.d/05-management-nic-deny.policy", 6, rule, sizeof rule);
        assert_int_equal(setenv("COLUMNS", "80", 1), 0);
        CTL(&c, h, 0, OK, "devices", "--sysfs", h->sysfs);
        expect_lacks(c.out, rule);
        expect_contains(c.out, "…");
        line = line_with(c.out, "0000:00:0a.0");
        expect_contains(line, "refused");
        expect_contains(line, "access-denied");
        free(line);
        ctl_done(&c);
        CTL(&c, h, 0, OK, "--full", "devices", "--sysfs", h->sysfs);
        expect_contains(c.out, rule);
        expect_lacks(c.out, "…");
        assert_true(widest_line(c.out) > 80);
        ctl_done(&c);
        CTL(&c, h, 0, OK, "-l", "grants");
        expect_contains(c.out, "VM-WBINVD");
        expect_contains(c.out, "ending (release)");
        ctl_done(&c);
        unsetenv("COLUMNS");
        CTL(&c, h, 0, OK, "devices", "--sysfs", h->sysfs);
        expect_contains(c.out, rule);
        ctl_done(&c);

        vmm_side_done(&v);
}

static void test_no_legend(void **state) {
        struct harness *h = *state;
        struct ctl_run c = {};
        struct vmm_side v = {};

        harness_start(h);
        hold_grant(h, &v, GRANTED_GROUP, "noncoherent");

        CTL(&c, h, 0, OK, "--no-legend", "grants");
        /* One line, the grant's, starting with its id: what a script wants. */
        assert_int_equal(count_lines(c.out), 1);
        assert_int_equal(strncmp(c.out, v.ids[0], strlen(v.ids[0])), 0);
        expect_lacks(c.out, "GRANT");
        expect_lacks(c.out, "listed");
        ctl_done(&c);

        CTL(&c, h, 0, OK, "--no-legend", "devices", "--sysfs", h->sysfs);
        assert_int_equal(count_lines(c.out), 10);
        assert_int_equal(strncmp(c.out, "0000:00:02.0 ", 13), 0);
        expect_lacks(c.out, "DEVICE");
        expect_lacks(c.out, "bound to vfio-pci");
        ctl_done(&c);

        CTL(&c, h, 0, OK, "--no-legend", "policy");
        expect_lacks(c.out, "Settings");
        expect_lacks(c.out, "Rules");
        expect_lacks(c.out, "ORIGIN");
        expect_contains(c.out, "Access=deny");
        ctl_done(&c);

        /* And with the legend: headers and footers. */
        CTL(&c, h, 0, OK, "grants");
        expect_contains(c.out, "GRANT");
        expect_contains(c.out, "1 grant listed.");
        ctl_done(&c);

        vmm_side_done(&v);
}

/* ---- devices, policy -------------------------------------------------------- */

/* A sysfs tree like the daemon's, with one more vfio-pci device the daemon does not know. */
static void make_other_sysfs(struct harness *h, char *dir, size_t size) {
        char tool[PATH_MAX], script[4 * PATH_MAX];

        snprintf(dir, size, "%s/other-sys", h->dir);
        snprintf(tool, sizeof tool, "%s/demo/make-sim-sysfs", h->source_dir);
        assert_int_equal(run_command((char *[]) { tool, dir, NULL }, 0, NULL, NULL), 0);
        snprintf(script, sizeof script,
                 "set -e; d=%1$s/devices/pci0000:00/0000:00:1f.0; mkdir -p $d %1$s/kernel/iommu_groups/10/devices; "
                 "echo 0x8086 >$d/vendor; echo 0x10fb >$d/device; echo 0x020000 >$d/class; "
                 "ln -s ../../../bus/pci/drivers/vfio-pci $d/driver; ln -s ../../../kernel/iommu_groups/10 $d/iommu_group; "
                 "ln -s ../../virtual/iommu/dmar0 $d/iommu; ln -s ../../../devices/pci0000:00/0000:00:1f.0 "
                 "%1$s/bus/pci/devices/0000:00:1f.0",
                 dir);
        assert_int_equal(run_command((char *[]) { "sh", "-c", script, NULL }, 0, NULL, NULL), 0);
}

/* One table read row by row, then the same walk as nobody, as --user, and in another tree
 * (a list of what an operator looks for, longer than a screen). */
static void test_devices(void **state) {
        struct harness *h = *state;
        struct ctl_run c = {};
        char *line, other[PATH_MAX];
        json_object *doc, *devices;

        harness_start(h);
        CTL(&c, h, 0, OK, "devices", "--sysfs", h->sysfs);
        /* Every vfio-pci device, its group, IOMMU, whether it enforces, and what it gets. */
        line = line_with(c.out, "0000:00:05.0");
        expect_contains(line, "1234:11e8");
        expect_contains(line, " 4 ");
        expect_contains(line, "dmar1");
        expect_contains(line, " no ");
        expect_contains(line, "granted");
        expect_contains(line, "platform-cannot-enforce");
        free(line);
        line = line_with(c.out, "0000:00:03.0");
        expect_contains(line, "dmar0");
        expect_contains(line, " yes ");
        expect_contains(line, "not-needed");
        expect_contains(line, "ioas-enforces-coherency");
        free(line);
        line = line_with(c.out, "0000:00:08.0");
        expect_contains(line, "device-coherent-only");
        expect_contains(line, "skip");
        free(line);
        /* Both functions of group 6 get what the group gets. */
        line = line_with(c.out, "0000:00:07.1");
        expect_contains(line, " 6 ");
        expect_contains(line, "granted");
        free(line);
        expect_contains(c.out, "10 devices bound to vfio-pci");
        expect_contains(c.out, "For you: 3 granted, 5 not-needed, 2 refused.");
        ctl_done(&c);

        /* Probe is everybody's: nobody sees what nobody gets. */
        CTL(&c, h, NOBODY_UID, OK, "devices", "--sysfs", h->sysfs);
        expect_contains(c.out, "For you: 3 granted");
        ctl_done(&c);

        /* --user: Explain, for an operator; not for nobody. */
        CTL(&c, h, 0, OK, "devices", "--sysfs", h->sysfs, "--user", "nobody");
        expect_contains(c.out, "For user nobody: 3 granted");
        ctl_done(&c);
        CTL(&c, h, NOBODY_UID, DENIED, "devices", "--sysfs", h->sysfs, "--user", "nobody");
        ctl_done(&c);

        /* A device the daemon does not know is listed with the daemon's error. */
        make_other_sysfs(h, other, sizeof other);
        CTL(&c, h, 0, OK, "devices", "--sysfs", other);
        line = line_with(c.out, "0000:00:1f.0");
        expect_contains(line, "NoSuchDevice");
        free(line);
        ctl_done(&c);

        CTL(&c, h, 0, OK, "--json=short", "devices", "--sysfs", other);
        doc = one_document(c.out);
        devices = jmember(doc, "devices");
        assert_int_equal(json_object_array_length(devices), 11);
        for (size_t i = 0; i < 11; i++) {
                json_object *d = json_object_array_get_idx(devices, i);

                if (strcmp(jstr(d, "slot"), "0000:00:1f.0") == 0) {
                        assert_null(json_object_object_get(d, "policy"));
                        expect_contains(jstr(d, "error"), "NoSuchDevice");
                } else
                        assert_non_null(jstr(jmember(d, "policy"), "decision"));
        }
        json_object_put(doc);
        ctl_done(&c);
}

static void test_policy_shows_what_is_in_force_with_origins(void **state) {
        struct harness *h = *state;
        struct ctl_run c = {};
        char *line, origin[PATH_MAX + 16];
        json_object *doc;

        harness_write_config(h, "policy.d/70-catch-all.policy", "[Match]\n\n[Policy]\nNoSnoop=capable\n");
        harness_start(h);
        CTL(&c, h, 0, OK, "policy");
        /* [Broker]: value and origin. */
        line = line_with(c.out, "Access ");
        expect_contains(line, "allow");
        snprintf(origin, sizeof origin, "%s/coherencyd.conf:", h->config);
        expect_contains(line, origin);
        free(line);
        line = line_with(c.out, "ReleaseTimeoutSec ");
        expect_contains(line, "5");
        free(line);
        /* Rules: the file:line decisions cite, the match, the setting. */
        line = line_with(c.out, "05-management-nic-deny.policy:");
        snprintf(origin, sizeof origin, "%s/policy.d/05-management-nic-deny.policy:", h->config);
        expect_contains(line, origin);
        expect_contains(line, "Slot=0000:00:0a.0");
        expect_contains(line, "Access=deny");
        free(line);
        line = line_with(c.out, "20-amd-gpu-enable.policy:");
        expect_contains(line, "Vendor=0x1002 Class=0x03*");
        expect_contains(line, "Mode=enable");
        free(line);
        line = line_with(c.out, "70-catch-all.policy:");
        expect_contains(line, "(every device)");
        expect_contains(line, "NoSnoop=capable");
        free(line);
        ctl_done(&c);

        CTL(&c, h, 0, OK, "--json=short", "policy");
        doc = one_document(c.out);
        assert_int_equal(json_object_array_length(jmember(jmember(doc, "policy"), "rules")), 6);
        json_object_put(doc);
        ctl_done(&c);

        CTL(&c, h, NOBODY_UID, DENIED, "policy");
        ctl_done(&c);
}

/*
 * debian/coherencyd.conf, the packaged conffile, lists every [Broker] key the daemon
 * has, commented out at the daemon's default: started with it, the daemon's policy
 * has exactly those keys at exactly those values; uncommented, it still parses and
 * changes nothing but the origins.
 */
struct conf_key {
        char json[64];
        char value[64];
        unsigned line;
};

static size_t read_conffile(const char *path, struct conf_key *keys, size_t max, char **ret_uncommented) {
        char line[512], *text = NULL;
        size_t n = 0, size = 0;
        unsigned number = 0;
        FILE *f = fopen(path, "re"), *u = open_memstream(&text, &size);

        assert_non_null(f);
        assert_non_null(u);
        while (fgets(line, sizeof line, f)) {
                char *eq = strchr(line, '=');

                number++;
                line[strcspn(line, "\n")] = '\0';
                if (line[0] == '#' && line[1] >= 'A' && line[1] <= 'Z' && eq && !strchr(line, ' ')) {
                        assert_true(n < max);
                        snprintf(keys[n].json, sizeof keys[n].json, "%.*s", (int) (eq - line - 1), line + 1);
                        keys[n].json[0] = (char) (keys[n].json[0] - 'A' + 'a');
                        snprintf(keys[n].value, sizeof keys[n].value, "%s", eq + 1);
                        keys[n].line = number;
                        /* An empty value (AdminGroup=) is "none": it stays commented out. */
                        fprintf(u, "%s\n", eq[1] ? line + 1 : line);
                        n++;
                } else
                        fprintf(u, "%s\n", line);
        }
        fclose(f);
        assert_int_equal(fclose(u), 0);
        *ret_uncommented = text;
        return n;
}

static void expect_broker_matches(json_object *broker, const struct conf_key *keys, size_t n) {
        size_t reported = 0;

        json_object_object_foreach(broker, key, value) {
                size_t i;

                if (strlen(key) > 4 && strcmp(key + strlen(key) - 4, "Rule") == 0)
                        continue;
                reported++;
                for (i = 0; i < n; i++)
                        if (strcmp(keys[i].json, key) == 0)
                                break;
                if (i == n)
                        fail_msg("the daemon has [Broker] %s, which debian/coherencyd.conf does not list", key);
                if (!keys[i].value[0])
                        assert_null(value);
                else if (strcmp(keys[i].value, "yes") == 0 || strcmp(keys[i].value, "no") == 0)
                        assert_int_equal(json_object_get_boolean(value), strcmp(keys[i].value, "yes") == 0);
                else if (json_object_is_type(value, json_type_int))
                        assert_int_equal(json_object_get_int64(value), strtoll(keys[i].value, NULL, 10));
                else if (strcmp(json_object_get_string(value), keys[i].value) != 0)
                        fail_msg("%s: the daemon's default is %s, debian/coherencyd.conf says %s", key,
                                 json_object_get_string(value), keys[i].value);
        }
        assert_int_equal(reported, n);
}

static void test_packaged_conffile_lists_every_key_at_its_default(void **state) {
        struct harness *h = *state;
        struct ctl_run c = {};
        static const char *const demo_rules[] = {
                "05-management-nic-deny.policy", "10-mellanox-coherent.policy", "20-amd-gpu-enable.policy",
                "30-nvme-force-disable.policy", "40-nic-slot9-force-disable.policy",
        };
        char path[PATH_MAX], *uncommented, origin[PATH_MAX + 16];
        struct conf_key keys[32];
        json_object *doc, *broker;
        size_t n;
        int r;

        snprintf(path, sizeof path, "%s/debian/coherencyd.conf", h->source_dir);
        n = read_conffile(path, keys, 32, &uncommented);
        assert_true(n >= 9);
        for (size_t i = 0; i < sizeof demo_rules / sizeof demo_rules[0]; i++) {
                snprintf(path, sizeof path, "policy.d/%s", demo_rules[i]);
                harness_write_config(h, path, NULL);
        }
        snprintf(path, sizeof path, "%s/debian/coherencyd.conf", h->source_dir);
        r = run_command((char *[]) { "cp", path, h->config, NULL }, 0, NULL, NULL);
        assert_int_equal(r, 0);

        harness_start(h);
        CTL(&c, h, 0, OK, "--json=short", "policy");
        doc = one_document(c.out);
        broker = jmember(jmember(doc, "policy"), "broker");
        expect_broker_matches(broker, keys, n);
        assert_string_equal(jstr(broker, "accessRule"), "default");
        json_object_put(doc);
        ctl_done(&c);

        /* Uncommented: the same values, now from the file. */
        harness_write_config(h, "coherencyd.conf", uncommented);
        CTL(&c, h, 0, OK, "reload");
        ctl_done(&c);
        CTL(&c, h, 0, OK, "--json=short", "policy");
        doc = one_document(c.out);
        broker = jmember(jmember(doc, "policy"), "broker");
        expect_broker_matches(broker, keys, n);
        for (size_t i = 0; i < n; i++)
                if (strcmp(keys[i].json, "access") == 0) {
                        snprintf(origin, sizeof origin, "%s/coherencyd.conf:%u", h->config, keys[i].line);
                        assert_string_equal(jstr(broker, "accessRule"), origin);
                }
        json_object_put(doc);
        ctl_done(&c);
        free(uncommented);
}

/* ---- the pager ----------------------------------------------------------------- */

/* A pager that says how it was started, then keeps what it was given. */
static void write_pager(struct harness *h, const char *name, char *path, size_t size) {
        char marker[PATH_MAX], script[2 * PATH_MAX];
        FILE *f;

        snprintf(path, size, "%s/%s", h->dir, name);
        snprintf(marker, sizeof marker, "%s/%s.out", h->dir, name);
        snprintf(script, sizeof script,
                 "#!/bin/sh\n{ echo \"pager LESS=$LESS LESSSECURE=${LESSSECURE-unset} args=$*\"; cat; } >%s\n", marker);
        f = fopen(path, "we");
        assert_non_null(f);
        fputs(script, f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(chmod(path, 0755), 0);
        (void) unlink(marker);
}

static char *read_marker(struct harness *h, const char *name) {
        char marker[PATH_MAX], *text = NULL;
        size_t size = 0;
        FILE *f;

        snprintf(marker, sizeof marker, "%s/%s.out", h->dir, name);
        f = fopen(marker, "re");
        if (!f)
                return NULL;
        assert_true(getdelim(&text, &size, '\0', f) >= 0);
        fclose(f);
        return text;
}

/*
 * coherencyctl on a pseudo-terminal (its stdout and stderr), with env ("NAME=value",
 * NULL-terminated) set on top of ours; returns its exit status and what the terminal showed.
 */
static int ctl_on_terminal(struct harness *h, const char *const *env, const char *const *args, char **ret_shown) {
        struct winsize ws = { .ws_row = 50, .ws_col = 200 };
        char *shown = NULL, buf[4096];
        size_t len = 0;
        int master, status;
        pid_t pid = forkpty(&master, NULL, NULL, &ws);

        assert_true(pid >= 0);
        if (pid == 0) {
                const char *argv[32] = { h->coherencyctl, "--socket", h->socket };
                size_t n = 3;

                for (; *env; env++)
                        putenv((char *) *env);
                for (; *args && n < 31; args++)
                        argv[n++] = *args;
                argv[n] = NULL;
                execv(argv[0], (char *const *) argv);
                _exit(127);
        }
        for (;;) {
                struct pollfd p = { .fd = master, .events = POLLIN };
                ssize_t k;

                if (poll(&p, 1, HARNESS_TIMEOUT_MS) <= 0) {
                        kill(pid, SIGKILL);
                        fail_msg("coherencyctl on a terminal did not finish");
                }
                k = read(master, buf, sizeof buf);
                if (k <= 0)
                        break; /* EIO: every holder of the terminal is gone */
                shown = realloc(shown, len + (size_t) k + 1);
                assert_non_null(shown);
                memcpy(shown + len, buf, (size_t) k);
                len += (size_t) k;
                shown[len] = '\0';
        }
        close(master);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        *ret_shown = shown ?: strdup("");
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* systemd's pager rules one case at a time (a list, longer than a screen). */
static void test_pager_only_on_a_terminal(void **state) {
        struct harness *h = *state;
        char pager[PATH_MAX], other[PATH_MAX], env_pager[PATH_MAX + 16], env_other[PATH_MAX + 32];
        char *shown, *seen, *out, *err;
        int r;

        harness_start(h);
        write_pager(h, "pager", pager, sizeof pager);
        write_pager(h, "systemd-pager", other, sizeof other);
        snprintf(env_pager, sizeof env_pager, "PAGER=%s", pager);
        snprintf(env_other, sizeof env_other, "SYSTEMD_PAGER=%s --flag", other);

        /* A pipe: never, whatever the environment says. */
        assert_int_equal(setenv("PAGER", pager, 1), 0);
        assert_int_equal(setenv("SYSTEMD_PAGERSECURE", "0", 1), 0);
        assert_int_equal(setenv("TERM", "xterm", 1), 0);
        r = ctl(h, 0, &out, &err, "info");
        unsetenv("PAGER");
        unsetenv("SYSTEMD_PAGERSECURE");
        expect_ctl_status(r, OK, "info (a pipe)", out, err);
        expect_contains(out, "Backend: sim");
        assert_null(read_marker(h, "pager"));
        free(out);
        free(err);

        /* A terminal, a trusted $PAGER: it gets the output and systemd's less options. */
        r = ctl_on_terminal(h, (const char *const[]) { "TERM=xterm", "SYSTEMD_PAGERSECURE=0", env_pager, NULL },
                            (const char *const[]) { "info", NULL }, &shown);
        assert_int_equal(r, OK);
        seen = read_marker(h, "pager");
        if (!seen)
                fail_msg("the pager did not run; the terminal showed:\n%s", shown);
        expect_contains(seen, "pager LESS=FRSXMK LESSSECURE=unset args=\n");
        expect_contains(seen, "Backend: sim");
        free(seen);
        free(shown);

        /* $SYSTEMD_PAGER before $PAGER, split into words; SYSTEMD_LESS; secure mode says so. */
        write_pager(h, "pager", pager, sizeof pager);
        r = ctl_on_terminal(h, (const char *const[]) { "TERM=xterm", "SYSTEMD_PAGERSECURE=1", env_pager, env_other,
                                                       "SYSTEMD_LESS=FRX", NULL },
                            (const char *const[]) { "devices", "--sysfs", h->sysfs, NULL }, &shown);
        assert_int_equal(r, OK);
        assert_null(read_marker(h, "pager"));
        seen = read_marker(h, "systemd-pager");
        assert_non_null(seen);
        expect_contains(seen, "pager LESS=FRX LESSSECURE=1 args=--flag\n");
        expect_contains(seen, "0000:00:0a.0");
        free(seen);
        free(shown);

        /* --no-pager, PAGER=cat, PAGER= and TERM=dumb: no pager, the output on the terminal. */
        const char *const *const no_pager[][2] = {
                { (const char *const[]) { "TERM=xterm", "SYSTEMD_PAGERSECURE=0", NULL }, (const char *const[]) { "--no-pager", "info", NULL } },
                { (const char *const[]) { "TERM=xterm", "PAGER=cat", NULL }, (const char *const[]) { "info", NULL } },
                { (const char *const[]) { "TERM=xterm", "PAGER=", NULL }, (const char *const[]) { "info", NULL } },
                { (const char *const[]) { "TERM=dumb", "SYSTEMD_PAGERSECURE=0", NULL }, (const char *const[]) { "info", NULL } },
        };
        for (size_t i = 0; i < sizeof no_pager / sizeof no_pager[0]; i++) {
                const char *env[8];
                size_t n = 0;

                write_pager(h, "pager", pager, sizeof pager);
                for (const char *const *e = no_pager[i][0]; *e; e++)
                        env[n++] = *e;
                if (!strstr(no_pager[i][0][1], "PAGER="))
                        env[n++] = env_pager;
                env[n] = NULL;
                r = ctl_on_terminal(h, env, no_pager[i][1], &shown);
                assert_int_equal(r, OK);
                if (read_marker(h, "pager"))
                        fail_msg("case %zu: the pager ran", i);
                expect_contains(shown, "Backend: sim");
                free(shown);
        }

        /* Without SYSTEMD_PAGERSECURE, $PAGER only turns the pager off (systemd 252): with
         * no pager, less or more on $PATH, the output is copied to the terminal as it is. */
        write_pager(h, "pager", pager, sizeof pager);
        r = ctl_on_terminal(h, (const char *const[]) { "TERM=xterm", env_pager, "PATH=/nonexistent", NULL },
                            (const char *const[]) { "info", NULL }, &shown);
        assert_int_equal(r, OK);
        assert_null(read_marker(h, "pager"));
        expect_contains(shown, "Backend: sim");
        free(shown);
}

/* ---- help, version, completion ----------------------------------------------- */

static void test_help_points_at_the_man_page(void **state) {
        struct harness *h = *state;
        char *out, *err;
        int r;

        r = run_command((char *[]) { h->coherencyctl, "--help", NULL }, 0, &out, &err);
        expect_ctl_status(r, OK, "--help", out, err);
        expect_contains(out, "See the coherencyctl(1) man page for details.");
        for (const char *const *w = (const char *const[]) { "status", "devices", "policy", "--json=MODE", "--no-pager",
                                                            "--no-legend", "--full", "--sysfs=DIR", NULL };
             *w; w++)
                expect_contains(out, *w);
        free(out);
        free(err);
        r = run_command((char *[]) { h->coherencyctl, "--version", NULL }, 0, &out, &err);
        expect_ctl_status(r, OK, "--version", out, err);
        expect_contains(out, "coherencyctl ");
        free(out);
        free(err);
}

/*
 * coherencyctl(1)'s EXAMPLES, every command as the page prints it, run by bash against the
 * daemon on the simulated platform (COHERENCYD_SOCKET= says where, as it would on a host
 * with another socket). The simulated host has no 0000:01:00.0, no user qemu, none of the
 * page's grant ids and its sysfs elsewhere, so exactly these are replaced; the options,
 * pipes and the rest are the page's own text. Each must exit 0 and print something.
 */
struct example_word {
        const char *printed, *here;
};

static char *example_substitute(const char *command, const struct example_word *words, size_t n_words) {
        char *s = strdup(command);

        assert_non_null(s);
        for (size_t i = 0; i < n_words; i++) {
                size_t from = 0;
                char *at;
                /* From after each replacement: a replacement may contain its word. */
                while ((at = strstr(s + from, words[i].printed))) {
                        char *t;
                        size_t before = (size_t) (at - s);
                        assert_true(asprintf(&t, "%.*s%s%s", (int) before, s, words[i].here,
                                             at + strlen(words[i].printed)) >= 0);
                        free(s);
                        s = t;
                        from = before + strlen(words[i].here);
                }
        }
        return s;
}

/* The commands of the page's EXAMPLES: lines "# coherencyctl ..." or "$ coherencyctl ..."
 * between .EX and .EE, with groff's escapes for '-' and '\'' undone. */
static size_t man_examples(const char *page, char *commands[], size_t max) {
        FILE *f = fopen(page, "re");
        char line[512];
        bool in_examples = false, in_ex = false;
        size_t n = 0;

        assert_non_null(f);
        while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = '\0';
                if (strncmp(line, ".SH ", 4) == 0)
                        in_examples = strcmp(line, ".SH EXAMPLES") == 0;
                else if (in_examples && strcmp(line, ".EX") == 0)
                        in_ex = true;
                else if (in_examples && strcmp(line, ".EE") == 0)
                        in_ex = false;
                else if (in_ex && (strncmp(line, "# coherencyctl", 14) == 0 || strncmp(line, "$ coherencyctl", 14) == 0)) {
                        static const struct example_word groff[] = { { "\\-", "-" }, { "\\(aq", "'" } };
                        assert_true(n < max);
                        commands[n++] = example_substitute(line + 2, groff, sizeof groff / sizeof groff[0]);
                }
        }
        fclose(f);
        return n;
}

static void test_man_page_examples_work_as_printed(void **state) {
        struct harness *h = *state;
        char page[PATH_MAX], devices[PATH_MAX + 32], config[PATH_MAX + 32], dir[PATH_MAX], *commands[32], *out, *err;
        int vm, group;

        harness_start(h);
        /* A grant for the revoke example, its group already let go of (so --kill kills nobody). */
        vm = sim_object("kvm-vm");
        json_object *p = request_grant_take(h->sync, vm, GRANTED_GROUP, "noncoherent", &group);
        close(group);
        snprintf(devices, sizeof devices, "devices --sysfs %s", h->sysfs);
        snprintf(config, sizeof config, "--config %s", h->config);
        const struct example_word words[] = {
                { "0000:01:00.0", "0000:00:05.0" },
                { "--user qemu", "--user nobody" },
                { "g-3f1c0e9a7b2d4c51", jstr(p, "grant") },
                { "devices", devices },
                { "--config /etc/coherencyd", config },
        };
        snprintf(dir, sizeof dir, "%s", h->coherencyctl);
        *strrchr(dir, '/') = '\0';
        snprintf(page, sizeof page, "%s/man/coherencyctl.1", h->source_dir);

        size_t n = man_examples(page, commands, sizeof commands / sizeof commands[0]);
        assert_true(n >= 8); /* the page's examples are found, not silently none */
        for (size_t i = 0; i < n; i++) {
                char *command = example_substitute(commands[i], words, sizeof words / sizeof words[0]), *script;
                assert_true(asprintf(&script, "set -o pipefail; PATH=%s:$PATH COHERENCYD_SOCKET=%s; export COHERENCYD_SOCKET; %s",
                                     dir, h->socket, command) >= 0);
                print_message("example: %s\n", command);
                /* monitor does not end by itself: it must still be running, quietly, when cut off. */
                bool stream = strstr(command, " monitor");
                int r = run_command(stream ? (char *[]) { "timeout", "2", "bash", "-c", script, NULL }
                                           : (char *[]) { "bash", "-c", script, NULL },
                                    0, &out, &err);
                expect_ctl_status(r, stream ? 124 : OK, command, out, err);
                if (stream ? err[0] != '\0' : out[strspn(out, " \n")] == '\0' && !strstr(command, "revoke"))
                        fail_msg("example: %s\nstdout:\n%s\nstderr:\n%s", command, out, err);
                free(out);
                free(err);
                free(script);
                free(command);
                free(commands[i]);
        }
        json_object_put(p);
        close(vm);
}

/* COMPREPLY of the bash completion for the words given (the last one being completed). */
static char *complete(struct harness *h, const char *words) {
        char script[4 * PATH_MAX], dir[PATH_MAX], *out, *err, *slash;
        int r;

        snprintf(dir, sizeof dir, "%s", h->coherencyctl);
        slash = strrchr(dir, '/');
        assert_non_null(slash);
        *slash = '\0';
        snprintf(script, sizeof script,
                 "PATH=%s:$PATH; source %s/shell-completion/bash/coherencyctl || exit 1; "
                 "COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _coherencyctl; "
                 "printf '%%s\\n' \"${COMPREPLY[@]}\"",
                 dir, h->source_dir, words);
        r = run_command((char *[]) { "bash", "-c", script, NULL }, 0, &out, &err);
        expect_ctl_status(r, OK, words, out, err);
        free(err);
        return out;
}

static void test_bash_completion(void **state) {
        struct harness *h = *state;
        struct vmm_side v = {};
        char words[2 * PATH_MAX], *out;

        harness_start(h);
        hold_grant(h, &v, GRANTED_GROUP, "noncoherent");

        out = complete(h, "coherencyctl ''");
        for (const char *const *w = (const char *const[]) { "status", "info", "devices", "policy", "probe", "explain",
                                                            "grants", "revoke", "reload", "check-policy", "monitor",
                                                            "introspect", NULL };
             *w; w++)
                expect_contains(out, *w);
        free(out);

        out = complete(h, "coherencyctl --no-");
        assert_string_equal(out, "--no-pager\n--no-legend\n");
        free(out);
        /* "--json=" arrives as three words: --json = VALUE */
        out = complete(h, "coherencyctl --json = ''");
        assert_string_equal(out, "pretty\nshort\noff\n");
        free(out);
        out = complete(h, "coherencyctl --user ro");
        expect_contains(out, "root\n");
        free(out);

        /* Devices from sysfs, grants and interfaces from the daemon named by --socket. */
        snprintf(words, sizeof words, "coherencyctl --sysfs %s probe 0000:00:0", h->sysfs);
        out = complete(h, words);
        expect_contains(out, "0000:00:02.0\n");
        expect_contains(out, "0000:00:0a.0\n");
        assert_int_equal(count_lines(out), 10);
        free(out);
        snprintf(words, sizeof words, "coherencyctl --socket = %s revoke ''", h->socket);
        out = complete(h, words);
        assert_string_equal(strtok(out, "\n"), v.ids[0]);
        free(out);
        snprintf(words, sizeof words, "coherencyctl --socket %s introspect io.coherencyd.", h->socket);
        out = complete(h, words);
        assert_string_equal(out, "io.coherencyd.Broker\nio.coherencyd.Manager\n");
        free(out);

        vmm_side_done(&v);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_status_is_the_default_command),
                HARNESS_TEST(test_json_prints_one_document_per_command),
                HARNESS_TEST(test_exit_statuses_and_hints),
                HARNESS_TEST(test_the_permission_hint_works),
                HARNESS_TEST(test_tables_fit_columns_unless_full),
                HARNESS_TEST(test_no_legend),
                HARNESS_TEST(test_devices),
                HARNESS_TEST(test_policy_shows_what_is_in_force_with_origins),
                HARNESS_TEST(test_packaged_conffile_lists_every_key_at_its_default),
                HARNESS_TEST(test_pager_only_on_a_terminal),
                HARNESS_TEST(test_help_points_at_the_man_page),
                HARNESS_TEST(test_man_page_examples_work_as_printed),
                HARNESS_TEST(test_bash_completion),
        };

        /* What an operator's environment might set must not steer these runs. */
        static const char *const unset[] = { "COLUMNS", "PAGER", "SYSTEMD_PAGER", "SYSTEMD_PAGERSECURE", "SYSTEMD_LESS",
                                             "COHERENCYD_SOCKET", "LESS" };
        for (size_t i = 0; i < sizeof unset / sizeof unset[0]; i++)
                unsetenv(unset[i]);
        setenv("LC_ALL", "C.UTF-8", 1);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
