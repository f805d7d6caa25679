/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Policy loading as an operator meets it (DESIGN.md §6): a broken file is
 * refused with file:line and the running policy stays; a fixed one takes
 * effect on ReloadPolicy or SIGHUP; at start-up and with --check-policy a
 * broken policy is an exit status and the same file:line message.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#define CONF "coherencyd.conf"
#define CONF_MODE_LINE 8 /* the demo's Mode=automatic */
/* The demo's rule files: one rule each. */
#define DEMO_RULES 5

/* A new rule for the NVIDIA GPU of group 2; its Mode= sits on line 5. */
#define NVIDIA "policy.d/40-nvidia.policy"
#define NVIDIA_MODE_LINE 5

static void write_nvidia_rule(struct harness *h, const char *mode) {
        char text[256];

        snprintf(text, sizeof text,
                 "# NVIDIA GPUs of this site\n"
                 "[Match]\n"
                 "Vendor=0x10de\n"
                 "[Policy]\n"
                 "Mode=%s\n",
                 mode);
        harness_write_config(h, NVIDIA, text);
}

/* What group 2 in a non-coherent container gets now: decision, reason and rule. */
static void check_group2_decision(struct harness *h, const char *decision, const char *reason, const char *rule) {
        json_object *p = probe(h->sync, 2, "noncoherent");

        assert_string_equal(jstr(p, "decision"), decision);
        assert_string_equal(jstr(p, "reason"), reason);
        assert_string_equal(jstr(p, "rule"), rule);
        json_object_put(p);
}

/* coherencyd --check-policy on our config: returns the exit status, *ret_stderr what it said. */
static int check_policy(struct harness *h, char **ret_stderr) {
        char *const argv[] = { h->coherencyd, "--check-policy", "--config", h->config, NULL };
        return run_command(argv, 0, NULL, ret_stderr);
}

/* "file:line: message", as the daemon prints a policy error, from an InvalidPolicy error. */
static char *policy_error_line(json_object *invalid_policy) {
        char *line;
        assert_true(asprintf(&line, "%s:%" PRId64 ": %s", jstr(invalid_policy, "file"), jint(invalid_policy, "line"),
                             jstr(invalid_policy, "message")) > 0);
        return line;
}

static void test_reload_refuses_broken_policy_keeps_old_and_applies_it_once_fixed(void **state) {
        struct harness *h = *state;
        char rule[512], file[512];

        harness_start(h);
        write_nvidia_rule(h, "sometimes");
        json_object *err = vconn_call_error(h->sync, MANAGER "ReloadPolicy", NULL, NULL, 0, MANAGER "InvalidPolicy");
        snprintf(file, sizeof file, "%s/" NVIDIA, h->config);
        assert_string_equal(jstr(err, "file"), file);
        assert_int_equal(jint(err, "line"), NVIDIA_MODE_LINE);
        assert_non_null(strstr(jstr(err, "message"), "sometimes"));

        /* The running policy still decides. */
        check_group2_decision(h, "refused", "coherent-ioas-required",
                              harness_rule(h, CONF, CONF_MODE_LINE, rule, sizeof rule));
        json_object *records = journal_expect(h, 1, MESSAGE_ID_POLICY_FAILED, NULL);
        json_object *r = json_object_array_get_idx(records, 0);
        assert_string_equal(journal_field(r, "COHERENCYD_POLICY_FILE"), file);
        assert_string_equal(journal_field(r, "COHERENCYD_POLICY_LINE"), "5");
        json_object_put(records);

        /* --check-policy says the same thing, in the same words. */
        char *said, *expected = policy_error_line(err);
        assert_int_equal(check_policy(h, &said), 1);
        assert_non_null(strstr(said, expected));
        free(said);
        free(expected);
        json_object_put(err);

        write_nvidia_rule(h, "enable");
        json_object *p = vconn_call(h->sync, MANAGER "ReloadPolicy", NULL, NULL, 0);
        assert_int_equal(jint(p, "rules"), DEMO_RULES + 1);
        json_object_put(p);
        check_group2_decision(h, "granted", "policy-enable",
                              harness_rule(h, NVIDIA, NVIDIA_MODE_LINE, rule, sizeof rule));
}

static void test_sighup_reloads_policy(void **state) {
        struct harness *h = *state;
        char rule[512];

        harness_start(h);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_POLICY_LOADED, NULL));
        write_nvidia_rule(h, "force-disable");
        harness_sighup(h);
        json_object_put(journal_expect(h, 2, MESSAGE_ID_POLICY_LOADED, NULL));
        check_group2_decision(h, "refused", "policy-force-disable",
                              harness_rule(h, NVIDIA, NVIDIA_MODE_LINE, rule, sizeof rule));

        /* The operator's view of the policy in force has the new rule, last in file order. */
        json_object *p = vconn_call(h->sync, MANAGER "GetPolicy", NULL, NULL, 0);
        json_object *rules = jmember(jmember(p, "policy"), "rules");
        assert_int_equal(json_object_array_length(rules), DEMO_RULES + 1);
        json_object *last = json_object_array_get_idx(rules, DEMO_RULES);
        assert_string_equal(jstr(last, "modeRule"), rule);
        assert_string_equal(jstr(last, "mode"), "force-disable");
        json_object_put(p);
}

static void test_grants_outlive_a_reload_that_would_refuse_them(void **state) {
        struct harness *h = *state;
        char amd[512], conf[512];
        int group;

        harness_start(h);
        harness_rule(h, "policy.d/20-amd-gpu-enable.policy", 7, amd, sizeof amd);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_take(h->sync, vm, 3, "noncoherent", &group);
        assert_string_equal(jstr(p, "rule"), amd);
        char *grant = strdup(jstr(p, "grant"));
        json_object_put(p);
        harness_sync(h);
        unsigned sockets = daemon_stream_sockets(h);

        harness_write_config(h, "policy.d/20-amd-gpu-enable.policy", NULL);
        json_object_put(vconn_call(h->sync, MANAGER "ReloadPolicy", NULL, NULL, 0));
        p = probe(h->sync, 3, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_string_equal(jstr(p, "rule"), harness_rule(h, CONF, CONF_MODE_LINE, conf, sizeof conf));
        json_object_put(p);

        /* The grant stays, active, pinned, and still names the rule that made it. */
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 1);
        json_object *g = json_object_array_get_idx(grants, 0);
        assert_string_equal(jstr(g, "grant"), grant);
        assert_string_equal(jstr(g, "state"), "active");
        assert_string_equal(jstr(g, "rule"), amd);
        assert_string_equal(jstr(g, "vmWbinvd"), "allowed");
        json_object_put(grants);
        harness_sync(h);
        expect_daemon_stream_sockets(h, sockets);
        expect_daemon_fds(h, FD_SIM_VM, 1);

        close(group);
        free(grant);
        close(vm);
}

static void test_broken_policy_at_start_up_exits_nonzero_with_file_and_line_on_stderr(void **state) {
        struct harness *h = *state;
        char where[512];

        write_nvidia_rule(h, "sometimes");
        h->options.capture_stderr = true;
        int status = harness_try_start(h);
        assert_true(WIFEXITED(status));
        assert_int_not_equal(WEXITSTATUS(status), 0);

        /* Compiler style, so that an editor jumps to it. */
        snprintf(where, sizeof where, "%s/" NVIDIA ":%d: ", h->config, NVIDIA_MODE_LINE);
        char *line = harness_stderr_line(h, where);
        assert_non_null(strstr(line, "sometimes"));
        free(line);
}

static void test_check_policy_exits_zero_for_good_policy_and_one_with_file_and_line_for_broken(void **state) {
        struct harness *h = *state;
        char *said, where[512];

        assert_int_equal(check_policy(h, &said), 0);
        free(said);

        write_nvidia_rule(h, "sometimes");
        assert_int_equal(check_policy(h, &said), 1);
        snprintf(where, sizeof where, "%s/" NVIDIA ":%d: ", h->config, NVIDIA_MODE_LINE);
        assert_true(strncmp(said, where, strlen(where)) == 0);
        assert_non_null(strstr(said, "sometimes"));
        free(said);
}

/* Access= in a rule is evaluated like Mode=: the first matching rule that sets it wins. */
static void test_access_rule_refuses_and_names_its_line_and_reload_lifts_it(void **state) {
        struct harness *h = *state;
        char rule[512];

        harness_write_config(h, "policy.d/15-no-nvidia.policy",
                             "# Not this site's GPUs\n"
                             "[Match]\n"
                             "Vendor=0x10de\n"
                             "[Policy]\n"
                             "Access=deny\n");
        harness_start(h);
        harness_rule(h, "policy.d/15-no-nvidia.policy", 5, rule, sizeof rule);
        json_object *p = probe(h->sync, 2, "coherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_string_equal(jstr(p, "reason"), "access-denied");
        assert_string_equal(jstr(p, "rule"), rule);
        json_object_put(p);
        /* An earlier rule that allows wins over it. */
        harness_write_config(h, "policy.d/14-this-gpu.policy",
                             "[Match]\n"
                             "Slot=0000:00:03.0\n"
                             "[Policy]\n"
                             "Access=allow\n");
        json_object_put(vconn_call(h->sync, MANAGER "ReloadPolicy", NULL, NULL, 0));
        p = probe(h->sync, 2, "coherent");
        assert_string_equal(jstr(p, "decision"), "not-needed");
        json_object *d = json_object_array_get_idx(jmember(jmember(p, "facts"), "devices"), 0);
        assert_string_equal(jstr(d, "accessRule"), harness_rule(h, "policy.d/14-this-gpu.policy", 4, rule, sizeof rule));
        json_object_put(p);
        /* The other NVIDIA function is still denied. */
        p = probe(h->sync, 6, "noncoherent");
        assert_string_equal(jstr(p, "reason"), "access-denied");
        json_object_put(p);

        /* The operator's view has it. */
        p = vconn_call(h->sync, MANAGER "GetPolicy", NULL, NULL, 0);
        json_object *policy = jmember(p, "policy");
        assert_string_equal(jstr(jmember(policy, "broker"), "access"), "allow");
        bool found = false;
        json_object *rules = jmember(policy, "rules");
        for (size_t i = 0; i < json_object_array_length(rules); i++) {
                json_object *r = json_object_array_get_idx(rules, i);
                json_object *a;
                if (json_object_object_get_ex(r, "accessRule", &a) &&
                    strcmp(json_object_get_string(a), harness_rule(h, "policy.d/15-no-nvidia.policy", 5, rule,
                                                                   sizeof rule)) == 0) {
                        assert_string_equal(jstr(r, "access"), "deny");
                        found = true;
                }
        }
        assert_true(found);
        json_object_put(p);
}

/* A policy value that does not parse: refused with file:line by ReloadPolicy, the old policy stays. */
static void check_reload_refused(struct harness *h, const char *relative, const char *text, unsigned line,
                                 const char *word) {
        char file[512], *said;

        harness_write_config(h, relative, text);
        json_object *err = vconn_call_error(h->sync, MANAGER "ReloadPolicy", NULL, NULL, 0, MANAGER "InvalidPolicy");
        snprintf(file, sizeof file, "%s/%s", h->config, relative);
        assert_string_equal(jstr(err, "file"), file);
        assert_int_equal(jint(err, "line"), line);
        assert_non_null(strstr(jstr(err, "message"), word));
        char *expected = policy_error_line(err);
        assert_int_equal(check_policy(h, &said), 1);
        assert_non_null(strstr(said, expected));
        free(said);
        free(expected);
        json_object_put(err);
}

static void test_invalid_access_release_timeout_and_revoke_kill_are_refused_with_file_and_line(void **state) {
        struct harness *h = *state;
        char rule[512];

        harness_start(h);
        check_reload_refused(h, "policy.d/15-bad-access.policy",
                             "[Match]\n"
                             "Vendor=0x10de\n"
                             "[Policy]\n"
                             "Access=sometimes\n",
                             4, "sometimes");
        harness_write_config(h, "policy.d/15-bad-access.policy", NULL);
        check_reload_refused(h, CONF, "[Broker]\nMode=automatic\nAccess=maybe\n", 3, "maybe");
        check_reload_refused(h, CONF, "[Broker]\nAccess=allow\nReleaseTimeoutSec=soon\n", 3, "soon");
        check_reload_refused(h, CONF, "[Broker]\nAccess=allow\nRevokeKill=perhaps\n", 3, "perhaps");

        /* All the while the demo policy decided, as loaded at start. */
        json_object *p = probe(h->sync, 4, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "rule"), harness_rule(h, CONF, CONF_MODE_LINE, rule, sizeof rule));
        json_object_put(p);
        p = vconn_call(h->sync, MANAGER "GetPolicy", NULL, NULL, 0);
        json_object *broker = jmember(jmember(p, "policy"), "broker");
        assert_int_equal(jint(broker, "releaseTimeoutSec"), 5);
        assert_true(jbool(broker, "revokeKill"));
        json_object_put(p);
        json_object_put(journal_expect(h, 4, MESSAGE_ID_POLICY_FAILED, NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_reload_refuses_broken_policy_keeps_old_and_applies_it_once_fixed),
                HARNESS_TEST(test_sighup_reloads_policy),
                HARNESS_TEST(test_grants_outlive_a_reload_that_would_refuse_them),
                HARNESS_TEST(test_access_rule_refuses_and_names_its_line_and_reload_lifts_it),
                HARNESS_TEST(test_invalid_access_release_timeout_and_revoke_kill_are_refused_with_file_and_line),
                HARNESS_TEST(test_broken_policy_at_start_up_exits_nonzero_with_file_and_line_on_stderr),
                HARNESS_TEST(test_check_policy_exits_zero_for_good_policy_and_one_with_file_and_line_for_broken),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
