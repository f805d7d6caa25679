/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * How grants end (DESIGN.md §3): release, revoke, disconnect, peer exit and
 * shutdown, each with its journal record, and afterwards nothing of the VM
 * left in the daemon (so a dead VMM's VM is never kept alive) or in KVM.
 *
 * These are the paths where a daemon leaks, so the daemon runs without its
 * sandbox for LeakSanitizer, but for shutdown, which is tested as deployed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

/* Group 4 sits behind the IOMMU that cannot enforce: granted, WBINVD emulated. */
#define GRANTED_GROUP 4

/* Requests a grant that emulates WBINVD on vm; returns its id (free()). */
static char *grant_wbinvd(struct vconn *c, int vm, unsigned group) {
        json_object *p = request_grant(c, vm, group, group == 3 ? "noncoherent" : NULL);
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "vmWbinvd"), "emulated");
        char *id = strdup(jstr(p, "grant"));
        json_object_put(p);
        return id;
}

/* The VM as KVM sees it once no file of it is attached: no device, no WBINVD. */
static void check_vm_released(int vm) {
        assert_int_equal(sim_vm_noncoherent_dma(vm), 0);
        assert_int_equal(sim_vm_count_lines(vm, "kvm-vfio="), 0);
        assert_int_equal(sim_vm_count_lines(vm, "attached="), 0);
}

/* The grant's end record, and nothing of its VM left in the daemon or in KVM. */
static void check_grant_ended(struct harness *h, const char *grant, const char *end, pid_t client, int vm) {
        char match[96], pid[32];

        if (h->pid > 0)
                harness_sync(h); /* an end the daemon noticed by itself (disconnect, exit) is done */
        snprintf(match, sizeof match, "COHERENCYD_GRANT=%s", grant);
        json_object *records = journal_expect(h, 1, MESSAGE_ID_GRANT_END, match, NULL);
        json_object *r = json_object_array_get_idx(records, 0);
        assert_string_equal(journal_field(r, "COHERENCYD_END"), end);
        assert_null(journal_field(r, "COHERENCYD_DECISION"));
        assert_string_equal(journal_field(r, "COHERENCYD_VM_WBINVD"), "noop");
        snprintf(pid, sizeof pid, "%d", (int) client);
        assert_string_equal(journal_field(r, "OBJECT_PID"), pid);
        json_object_put(records);

        if (h->pid > 0) {
                expect_daemon_fds(h, FD_SIM_VM, 0);
                expect_daemon_fds(h, FD_SIM_GROUP, 0);
        }
        check_vm_released(vm);
}

static void test_release_ends_grant_and_daemon_lets_go_of_the_vm(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        struct vconn *vmm = vconn_connect(h);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm, vm, GRANTED_GROUP);
        assert_int_equal(sim_vm_noncoherent_dma(vm), 1);
        expect_daemon_fds(h, FD_SIM_GROUP, 1);

        json_object *p = release_grant(vmm, grant);
        assert_string_equal(jstr(p, "vmWbinvd"), "noop");
        json_object_put(p);
        check_grant_ended(h, grant, "release", getpid(), vm);

        free(grant);
        close(vm);
        vconn_free(vmm);
}

static void test_revoke_by_operator_ends_grant_and_vmm_connection_stays_usable(void **state) {
        struct harness *h = *state;
        struct peer vmm;
        char params[128];

        harness_start_leak_checked(h);
        peer_connect_nobody(h, &vmm);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn, vm, GRANTED_GROUP);

        snprintf(params, sizeof params, "{\"grant\":\"%s\"}", grant);
        json_object_put(vconn_call(h->sync, MANAGER "RevokeGrant", params, NULL, 0));
        check_grant_ended(h, grant, "revoke", vmm.pid, vm);

        /* The VMM is told by asking; its connection still works. */
        json_object *grants = list_grants(vmm.conn, BROKER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 0);
        json_object_put(grants);
        json_object_put(vconn_call_error(vmm.conn, BROKER "ReleaseGrant", params, NULL, 0, BROKER "NoSuchGrant"));

        free(grant);
        close(vm);
        peer_done(&vmm);
}

static void test_disconnect_ends_grant(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        struct vconn *vmm = vconn_connect(h);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm, vm, GRANTED_GROUP);

        vconn_free(vmm);
        check_grant_ended(h, grant, "disconnect", getpid(), vm);
        free(grant);
        close(vm);
}

static void test_peer_exit_ends_grant_while_another_process_keeps_the_socket(void **state) {
        struct harness *h = *state;
        struct peer vmm;

        harness_start_leak_checked(h);
        peer_connect_nobody(h, &vmm);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn, vm, GRANTED_GROUP);
        pid_t pid = vmm.pid;

        /* The process that connected exits; the test process still holds the socket. */
        peer_exit(&vmm);
        check_grant_ended(h, grant, "peer-exit", pid, vm);
        vconn_expect_closed(vmm.conn);

        free(grant);
        close(vm);
        peer_done(&vmm);
}

static void test_two_grants_on_one_vm_share_one_kvm_vfio_device(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        struct vconn *vmm = vconn_connect(h);
        int vm = sim_object("kvm-vm");
        char *first = grant_wbinvd(vmm, vm, 3);
        harness_sync(h);
        unsigned vm_fds = daemon_fds(h, FD_SIM_VM);

        /* A dup is the same open file: the daemon must find the VM it already has. */
        int vm_dup = dup(vm);
        assert_true(vm_dup >= 0);
        char *second = grant_wbinvd(vmm, vm_dup, GRANTED_GROUP);
        close(vm_dup);
        assert_int_equal(sim_vm_count_lines(vm, "kvm-vfio=coherencyd"), 1);
        assert_true(sim_vm_has_line(vm, "attached=vfio-group:3 noncoherent"));
        assert_true(sim_vm_has_line(vm, "attached=vfio-group:4 noncoherent"));
        assert_int_equal(sim_vm_noncoherent_dma(vm), 2);
        harness_sync(h);
        expect_daemon_fds(h, FD_SIM_VM, vm_fds);
        expect_daemon_fds(h, FD_SIM_GROUP, 2);

        /* WBINVD stays emulated while the other granted file is attached. */
        json_object *p = release_grant(vmm, first);
        assert_string_equal(jstr(p, "vmWbinvd"), "emulated");
        json_object_put(p);
        assert_int_equal(sim_vm_noncoherent_dma(vm), 1);
        assert_int_equal(sim_vm_count_lines(vm, "kvm-vfio=coherencyd"), 1);

        p = release_grant(vmm, second);
        assert_string_equal(jstr(p, "vmWbinvd"), "noop");
        json_object_put(p);
        check_grant_ended(h, second, "release", getpid(), vm);

        free(first);
        free(second);
        close(vm);
        vconn_free(vmm);
}

static void test_vm_shared_by_two_connections_keeps_its_device_until_the_last_grant_ends(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        struct vconn *first = vconn_connect(h), *second = vconn_connect(h);
        int vm = sim_object("kvm-vm");
        free(grant_wbinvd(first, vm, 3));
        char *last = grant_wbinvd(second, vm, GRANTED_GROUP);

        vconn_free(first);
        harness_sync(h);
        assert_int_equal(sim_vm_count_lines(vm, "kvm-vfio=coherencyd"), 1);
        assert_true(sim_vm_has_line(vm, "attached=vfio-group:4 noncoherent"));
        assert_int_equal(sim_vm_count_lines(vm, "attached="), 1);
        assert_int_equal(sim_vm_noncoherent_dma(vm), 1);
        expect_daemon_fds(h, FD_SIM_GROUP, 1);

        vconn_free(second);
        check_grant_ended(h, last, "disconnect", getpid(), vm);
        free(last);
        close(vm);
}

static void test_vm_with_its_own_kvm_vfio_device_is_refused_and_nothing_is_kept(void **state) {
        struct harness *h = *state;
        static const char own[] = "kvm-vfio=vmm\n";
        char vm_state[256];

        harness_start_leak_checked(h);
        int vm = sim_object("kvm-vm");
        assert_int_equal(write(vm, own, strlen(own)), (ssize_t) strlen(own));
        unsigned before = daemon_fds(h, NULL);

        json_object_put(request_grant_error(h->sync, vm, GRANTED_GROUP, NULL, BROKER "VmHasKvmVfioDevice"));
        harness_sync(h);
        expect_daemon_fds(h, NULL, before);
        sim_vm_state(vm, vm_state, sizeof vm_state);
        assert_string_equal(vm_state, own);
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 0);
        json_object_put(grants);
        close(vm);
}

static void test_sigterm_with_grants_held_ends_them_and_exits_zero(void **state) {
        struct harness *h = *state;
        struct peer other;

        harness_start(h);
        struct vconn *vmm = vconn_connect(h);
        peer_connect_nobody(h, &other);
        int vms[2] = { sim_object("kvm-vm"), sim_object("kvm-vm") };
        free(grant_wbinvd(vmm, vms[0], 3));
        free(grant_wbinvd(other.conn, vms[1], GRANTED_GROUP));

        /* Both clients still connected, both grants held. */
        harness_stop(h);
        json_object_put(journal_expect(h, 2, MESSAGE_ID_GRANT_END, "COHERENCYD_END=shutdown", NULL));
        for (size_t i = 0; i < 2; i++) {
                check_vm_released(vms[i]);
                close(vms[i]);
        }
        vconn_expect_closed(vmm);
        vconn_free(vmm);
        peer_done(&other);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_release_ends_grant_and_daemon_lets_go_of_the_vm),
                HARNESS_TEST(test_revoke_by_operator_ends_grant_and_vmm_connection_stays_usable),
                HARNESS_TEST(test_disconnect_ends_grant),
                HARNESS_TEST(test_peer_exit_ends_grant_while_another_process_keeps_the_socket),
                HARNESS_TEST(test_two_grants_on_one_vm_share_one_kvm_vfio_device),
                HARNESS_TEST(test_vm_shared_by_two_connections_keeps_its_device_until_the_last_grant_ends),
                HARNESS_TEST(test_vm_with_its_own_kvm_vfio_device_is_refused_and_nothing_is_kept),
                HARNESS_TEST(test_sigterm_with_grants_held_ends_them_and_exits_zero),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
