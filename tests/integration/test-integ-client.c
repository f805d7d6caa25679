/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The two shipped clients against the real daemon: libcoherency as a VMM
 * links it (blocking calls, the _send/_finish pair in a poll loop, errno
 * values) and coherencyctl as an operator runs it (output and exit status).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coherency.h"
#include "harness.h"

static struct coherency_client *client_connect(const struct harness *h) {
        struct coherency_client *c;
        int r = coherency_connect(h->socket, &c);
        if (r < 0)
                fail_msg("coherency_connect(%s): %s", h->socket, strerror(-r));
        return c;
}

/* ---- libcoherency -------------------------------------------------------- */

static void test_libcoherency_info_probe_grant_list_release(void **state) {
        struct harness *h = *state;
        struct coherency_info info;
        struct coherency_decision d = {};
        struct coherency_grant *grants;
        char rule[512], wbinvd[16];

        harness_start(h);
        struct coherency_client *c = client_connect(h);
        assert_int_equal(coherency_get_info(c, &info), 0);
        assert_string_equal(info.backend, "sim");
        assert_string_equal(info.mode, "automatic");
        assert_string_equal(info.mode_rule, harness_rule(h, "coherencyd.conf", 4, rule, sizeof rule));
        assert_int_equal(info.max_grants_per_connection, 16);

        int vm = sim_object("kvm-vm"), group = sim_object("vfio-group:4");
        assert_int_equal(coherency_probe(c, group, -1, -1, &d), 0);
        assert_int_equal(d.verdict, COHERENCY_GRANTED);
        assert_string_equal(d.reason, "platform-cannot-enforce");
        assert_string_equal(d.grant, "");
        assert_int_equal(d.n_devices, 1);
        assert_string_equal(d.facts.slot, "0000:00:05.0");
        assert_false(d.facts.iommu_enforces);
        coherency_decision_clear(&d);

        assert_int_equal(coherency_request_grant(c, vm, group, -1, &d), 0);
        assert_int_equal(d.verdict, COHERENCY_GRANTED);
        assert_string_equal(d.decision, "granted");
        assert_string_equal(d.rule, rule);
        assert_string_equal(d.vm_wbinvd, "emulated");
        assert_true(d.attached);
        assert_string_not_equal(d.grant, "");
        assert_int_equal(sim_vm_noncoherent_dma(vm), 1);

        assert_int_equal(coherency_list_grants(c, &grants), 1);
        assert_string_equal(grants[0].grant, d.grant);
        assert_string_equal(grants[0].slot, "0000:00:05.0");
        assert_int_equal(grants[0].peer_pid, getpid());
        assert_int_equal(grants[0].peer_uid, 0);
        free(grants);

        /* A refusal is a decision, not an error, and holds nothing. */
        struct coherency_decision refused = {};
        int nvme = sim_object("vfio-group:5"), container = sim_object("vfio-container:noncoherent");
        assert_int_equal(coherency_request_grant(c, vm, nvme, container, &refused), 0);
        assert_int_equal(refused.verdict, COHERENCY_REFUSED);
        assert_string_equal(refused.reason, "policy-force-disable");
        assert_string_equal(refused.grant, "");
        assert_false(refused.attached);
        assert_string_equal(refused.vm_wbinvd, "emulated"); /* the VM's other file still is */
        coherency_decision_clear(&refused);
        close(nvme);
        close(container);

        assert_int_equal(coherency_release_grant_vm_wbinvd(c, d.grant, wbinvd), 0);
        assert_string_equal(wbinvd, "noop");
        assert_int_equal(coherency_list_grants(c, &grants), 0);
        free(grants);
        assert_int_equal(sim_vm_noncoherent_dma(vm), 0);

        coherency_decision_clear(&d);
        coherency_client_free(c);
        close(group);
        close(vm);
}

/* In a child, whose environment is its own: connect(NULL) finds the daemon by $COHERENCYD_SOCKET. */
static int connect_by_environment(void *userdata) {
        const struct harness *h = userdata;
        struct coherency_client *c;
        struct coherency_info info;

        if (setenv("COHERENCYD_SOCKET", h->socket, 1) < 0 || coherency_connect(NULL, &c) < 0)
                return 1;
        int r = coherency_get_info(c, &info);
        coherency_client_free(c);
        return r < 0 ? 2 : 0;
}

static void test_libcoherency_finds_the_daemon_by_coherencyd_socket(void **state) {
        struct harness *h = *state;

        harness_start(h);
        assert_int_equal(run_as(0, 0, NULL, 0, connect_by_environment, h), 0);
}

/* One VMM event loop serving two VMs: both requests go out before either answer is read. */
static void test_libcoherency_send_and_finish_from_a_poll_loop(void **state) {
        struct harness *h = *state;
        struct coherency_client *c[2];
        struct coherency_decision d[2] = {};
        int vm[2], group[2];
        bool done[2] = {};

        harness_start(h);
        for (size_t i = 0; i < 2; i++) {
                c[i] = client_connect(h);
                vm[i] = sim_object("kvm-vm");
                group[i] = sim_object("vfio-group:%zu", 6 - 2 * i); /* 6, then 4: both behind dmar1 */
                assert_int_equal(coherency_request_grant_send(c[i], vm[i], group[i], -1), 0);
        }
        while (!done[0] || !done[1]) {
                struct pollfd p[2];
                for (size_t i = 0; i < 2; i++)
                        p[i] = (struct pollfd) { .fd = done[i] ? -1 : coherency_client_fd(c[i]), .events = POLLIN };
                assert_true(poll(p, 2, HARNESS_TIMEOUT_MS) > 0);
                for (size_t i = 0; i < 2; i++) {
                        if (!(p[i].revents & POLLIN))
                                continue;
                        int r = coherency_request_grant_finish(c[i], &d[i]);
                        if (r == -EAGAIN)
                                continue;
                        assert_int_equal(r, 0);
                        done[i] = true;
                }
        }
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(d[i].verdict, COHERENCY_GRANTED);
                assert_true(d[i].attached);
                assert_int_equal(sim_vm_noncoherent_dma(vm[i]), 1);
                coherency_decision_clear(&d[i]);
                coherency_client_free(c[i]);
                close(group[i]);
                close(vm[i]);
        }
}

static void expect_client_error(struct coherency_client *c, int r, int expected_errno, const char *name) {
        if (r != -expected_errno)
                fail_msg("expected -%s, got %d (%s)", strerrorname_np(expected_errno), r, coherency_client_error(c));
        assert_string_equal(coherency_client_error_name(c), name);
        assert_string_not_equal(coherency_client_error(c), "");
}

/* In a child running as nobody: a Manager call; exit status 0 when it was -EPERM. */
static int manager_call_as_nobody(void *userdata) {
        const struct harness *h = userdata;
        struct coherency_client *c;
        char *json = NULL;

        if (coherency_connect(h->socket, &c) < 0)
                return 2;
        int r = coherency_call(c, "io.coherencyd.Manager.ListGrants", NULL, false, &json);
        bool denied = r == -EPERM && strcmp(coherency_client_error_name(c), BROKER "PermissionDenied") == 0;
        free(json);
        coherency_client_free(c);
        return denied ? 0 : 1;
}

static void test_libcoherency_maps_daemon_errors_to_errno(void **state) {
        struct harness *h = *state;
        struct coherency_decision d = {};
        struct coherency_info info;
        static const char own[] = "kvm-vfio=vmm\n";
        int p[2];

        harness_start(h);
        struct coherency_client *c = client_connect(h);

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        expect_client_error(c, coherency_probe(c, p[0], -1, -1, &d), EBADF, BROKER "InvalidFileDescriptor");
        expect_client_error(c, coherency_release_grant(c, "g-0123456789abcdef"), ENOENT, BROKER "NoSuchGrant");

        int vm = sim_object("kvm-vm"), group = sim_object("vfio-group:4");
        assert_int_equal(write(vm, own, strlen(own)), (ssize_t) strlen(own));
        expect_client_error(c, coherency_request_grant(c, vm, group, -1, &d), EBUSY, BROKER "VmHasKvmVfioDevice");

        assert_int_equal(run_as(NOBODY_UID, NOGROUP_GID, NULL, 0, manager_call_as_nobody, h), 0);

        /* Errors are answers: the connection still works. */
        assert_int_equal(coherency_get_info(c, &info), 0);

        /* Until the daemon goes away. */
        harness_stop(h);
        assert_int_equal(coherency_get_info(c, &info), -ECONNRESET);
        coherency_client_free(c);
        close(p[0]);
        close(p[1]);
        close(group);
        close(vm);
}

/* ---- coherencyctl -------------------------------------------------------- */

/* coherencyctl --socket S ARGS... (NULL-terminated) as uid; returns its exit status. */
static int ctl(const struct harness *h, uid_t uid, char **ret_stdout, char **ret_stderr, ...) {
        char *argv[16];
        size_t n = 0;
        va_list ap;

        argv[n++] = (char *) h->coherencyctl;
        argv[n++] = "--socket";
        argv[n++] = (char *) h->socket;
        va_start(ap, ret_stderr);
        for (char *a; (a = va_arg(ap, char *));) {
                assert_true(n < sizeof argv / sizeof argv[0] - 1);
                argv[n++] = a;
        }
        va_end(ap);
        argv[n] = NULL;
        return run_command(argv, uid, ret_stdout, ret_stderr);
}

/* A granted file on a fresh VM, held on h->sync; returns the grant id (free()). */
static char *grant_on_sync(struct harness *h, int vm) {
        json_object *p = request_grant(h->sync, vm, 4, NULL);
        char *id = strdup(jstr(p, "grant"));
        json_object_put(p);
        return id;
}

static void test_coherencyctl_grants_lists_every_grant_as_table_and_json(void **state) {
        struct harness *h = *state;
        char *out;

        harness_start(h);
        int vm = sim_object("kvm-vm");
        char *grant = grant_on_sync(h, vm);

        assert_int_equal(ctl(h, 0, &out, NULL, "grants", NULL), 0);
        assert_non_null(strstr(out, grant));
        assert_non_null(strstr(out, "0000:00:05.0"));
        assert_non_null(strstr(out, "platform-cannot-enforce"));
        free(out);

        assert_int_equal(ctl(h, 0, &out, NULL, "--json", "grants", NULL), 0);
        json_object *reply = json_tokener_parse(out);
        if (!reply)
                fail_msg("coherencyctl --json grants printed no JSON: %s", out);
        json_object *grants = jmember(reply, "grants");
        assert_int_equal(json_object_array_length(grants), 1);
        assert_string_equal(jstr(json_object_array_get_idx(grants, 0), "grant"), grant);
        json_object_put(reply);
        free(out);
        free(grant);
        close(vm);
}

static void test_coherencyctl_revoke_ends_the_grant_and_fails_for_an_unknown_one(void **state) {
        struct harness *h = *state;
        char *err, match[96];

        harness_start(h);
        int vm = sim_object("kvm-vm");
        char *grant = grant_on_sync(h, vm);

        assert_int_equal(ctl(h, 0, NULL, NULL, "revoke", grant, NULL), 0);
        snprintf(match, sizeof match, "COHERENCYD_GRANT=%s", grant);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_GRANT_END, match, "COHERENCYD_END=revoke", NULL));
        assert_int_equal(sim_vm_noncoherent_dma(vm), 0);

        assert_int_equal(ctl(h, 0, NULL, &err, "revoke", grant, NULL), 1);
        assert_non_null(strstr(err, grant));
        free(err);
        free(grant);
        close(vm);
}

static void test_coherencyctl_info_and_reload_succeed(void **state) {
        struct harness *h = *state;
        char *out;

        harness_start(h);
        assert_int_equal(ctl(h, 0, &out, NULL, "info", NULL), 0);
        assert_non_null(strstr(out, "sim"));
        assert_non_null(strstr(out, "dmar1"));
        free(out);

        assert_int_equal(ctl(h, 0, &out, NULL, "reload", NULL), 0);
        assert_non_null(strstr(out, "3 rules"));
        free(out);
        json_object_put(journal_expect(h, 2, MESSAGE_ID_POLICY_LOADED, NULL));
}

static void test_coherencyctl_as_nobody_is_denied_operator_commands(void **state) {
        struct harness *h = *state;
        char *err;

        harness_start(h);
        assert_int_equal(ctl(h, NOBODY_UID, NULL, &err, "grants", NULL), 1);
        assert_non_null(strstr(err, "PermissionDenied"));
        free(err);
        /* info is for everyone. */
        assert_int_equal(ctl(h, NOBODY_UID, NULL, NULL, "info", NULL), 0);
}

static void test_coherencyctl_usage_errors_exit_2(void **state) {
        struct harness *h = *state;

        assert_int_equal(ctl(h, 0, NULL, NULL, "frobnicate", NULL), 2);
        assert_int_equal(ctl(h, 0, NULL, NULL, "revoke", NULL), 2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_libcoherency_info_probe_grant_list_release),
                HARNESS_TEST(test_libcoherency_finds_the_daemon_by_coherencyd_socket),
                HARNESS_TEST(test_libcoherency_send_and_finish_from_a_poll_loop),
                HARNESS_TEST(test_libcoherency_maps_daemon_errors_to_errno),
                HARNESS_TEST(test_coherencyctl_grants_lists_every_grant_as_table_and_json),
                HARNESS_TEST(test_coherencyctl_revoke_ends_the_grant_and_fails_for_an_unknown_one),
                HARNESS_TEST(test_coherencyctl_info_and_reload_succeed),
                HARNESS_TEST(test_coherencyctl_as_nobody_is_denied_operator_commands),
                HARNESS_TEST(test_coherencyctl_usage_errors_exit_2),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
