/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Custody of handed-over groups (DESIGN.md §3): a grant is active, then
 * ending while anyone still holds its group, then ended (its end record, with
 * how long the group stayed held). Release, revoke (obeyed, or with kill),
 * disconnect, peer exit and shutdown, the still-held warning, DeviceBusy while
 * a grant holds the group, WatchGrants as the VMM sees all that, and after
 * each end nothing of the grant left in the daemon: no pin, no end of the
 * group, no VM descriptor (so a dead VMM's VM is never kept alive).
 *
 * On the simulated platform a handed-over group is a socket end, busy until
 * every copy is closed: the test closes its copy to play a VMM letting go, or
 * gives it to a VMM process of its own (vmm_hold) that keeps it until it ends.
 *
 * These are the paths where a daemon leaks, so it mostly runs without its
 * sandbox for LeakSanitizer; shutdown is tested as deployed.
 */
#include <signal.h>
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

/* Group 4 sits behind the IOMMU that cannot enforce: granted, WBINVD allowed. */
#define GRANTED_GROUP 4
#define GRANTED_SLOT "0000:00:05.0"

/* VMMs with uids and gids of their own, none equal to another's or to root's and nobody's. */
#define VMM_UID ((uid_t) 1234)
#define VMM_GID ((gid_t) 4321)
#define OTHER_UID ((uid_t) 1235)
#define OTHER_GID ((gid_t) 4322)

/* The demo's coherencyd.conf with a short ReleaseTimeoutSec= and RevokeKill= as given. */
static void write_conf(struct harness *h, unsigned release_timeout, bool revoke_kill) {
        char conf[256];

        snprintf(conf, sizeof conf,
                 "[Broker]\nAccess=allow\nMode=automatic\nReleaseTimeoutSec=%u\nRevokeKill=%s\n", release_timeout,
                 revoke_kill ? "yes" : "no");
        harness_write_config(h, "coherencyd.conf", conf);
}

/* Requests a grant that allows WBINVD on vm and takes its group; returns the grant id (free()). */
static char *grant_wbinvd(struct vconn *c, int vm, unsigned group, int *ret_group) {
        json_object *p = request_grant_take(c, vm, group, "noncoherent", ret_group);
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "wbinvd"), "allowed");
        assert_string_equal(jstr(p, "vmWbinvd"), "allowed");
        char *id = strdup(jstr(p, "grant"));
        json_object_put(p);
        return id;
}

static json_object *release(struct vconn *c, const char *grant, const char *state) {
        json_object *p = release_grant(c, grant);
        assert_string_equal(jstr(p, "state"), state);
        return p;
}

/* Manager.RevokeGrant; kill < 0 leaves the parameter out. */
static void revoke_grant(struct harness *h, const char *grant, int kill) {
        char params[128];

        snprintf(params, sizeof params, kill < 0 ? "{\"grant\":\"%s\"}" : "{\"grant\":\"%s\",\"kill\":%s}", grant,
                 kill > 0 ? "true" : "false");
        json_object_put(vconn_call(h->sync, MANAGER "RevokeGrant", params, NULL, 0));
}

/* WatchGrants on c (a connection of its own): returns the first reply's grants (json_object_put()). */
static json_object *watch(struct vconn *c) {
        vconn_send(c, BROKER "WatchGrants", NULL, NULL, 0, true);
        json_object *e = vconn_next_event(c, "grants");
        json_object *grants = json_object_get(jmember(e, "grants"));
        json_object_put(e);
        return grants;
}

/* The next WatchGrants event: exactly this grant, in this state, with this end. */
static void expect_watch_event(struct vconn *watcher, const char *event, const char *grant, const char *state,
                               const char *end) {
        json_object *e = vconn_next_event(watcher, event);
        json_object *grants = jmember(e, "grants");
        assert_int_equal(json_object_array_length(grants), 1);
        json_object *g = json_object_array_get_idx(grants, 0);
        assert_string_equal(jstr(g, "grant"), grant);
        assert_string_equal(jstr(g, "device"), GRANTED_SLOT);
        assert_string_equal(jstr(g, "state"), state);
        if (end)
                assert_string_equal(jstr(g, "end"), end);
        json_object_put(e);
}

/* The grant as the operator sees it now; NULL when the daemon has none of that id. */
static json_object *manager_grant(struct harness *h, const char *grant) {
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        json_object *g = grant_in(grants, grant);
        json_object_get(g);
        json_object_put(grants);
        return g;
}

static void expect_ending(struct harness *h, const char *grant, const char *end) {
        json_object *g = manager_grant(h, grant);
        assert_non_null(g);
        assert_string_equal(jstr(g, "state"), "ending");
        assert_string_equal(jstr(g, "end"), end);
        assert_true(jint(g, "endingSince") > 0);
        /* A socket end shows no path in /proc: the simulated group names no holder. */
        assert_true(json_object_is_type(jmember(g, "holders"), json_type_array));
        json_object_put(g);
}

/* How the end record's message says each end (grants.c). */
static const char *end_words(const char *end) {
        static const char *const words[][2] = {
                { "release", "released by the VMM" },
                { "revoke", "revoked by an operator" },
                { "disconnect", "ended: the VMM's connection closed" },
                { "peer-exit", "ended: the VMM process exited" },
                { "interrupted", "ended: coherencyd restarted before it answered" },
                { "shutdown", "ended: coherencyd is stopping" },
        };
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
                if (strcmp(words[i][0], end) == 0)
                        return words[i][1];
        fail_msg("no words for end '%s'", end);
        return NULL;
}

/* The end record's message, word for word as journalctl shows it: how long the group was held
 * in seconds with milliseconds, from the record's own COHERENCYD_HELD_USEC. */
static void expect_end_message(json_object *r, const char *slot, const char *grant, const char *end, pid_t client,
                               bool killed) {
        const char *message = journal_field(r, "MESSAGE");
        unsigned long long ms = strtoull(journal_field(r, "COHERENCYD_HELD_USEC"), NULL, 10) / 1000;
        char free_again[512], left[512];

        assert_non_null(message);
        snprintf(free_again, sizeof free_again, "Grant %s for %s (VM of pid %d) %s; the group was free again after %llu.%03llus%s",
                 grant, slot, (int) client, end_words(end), ms / 1000, ms % 1000,
                 killed ? "; the VMM was killed (RevokeKill=)" : "");
        snprintf(left, sizeof left, "Grant %s for %s (VM of pid %d) %s; the group was left to the kernel after %llu.%03llus%s",
                 grant, slot, (int) client, end_words(end), ms / 1000, ms % 1000,
                 killed ? "; the VMM was killed (RevokeKill=)" : "");
        if (strcmp(message, free_again) != 0 && strcmp(message, left) != 0)
                fail_msg("end record's message: '%s', expected '%s' or '%s'", message, free_again, left);
}

/* Waits for the end record of the grant (for slot) and checks it; killed: COHERENCYD_KILLED=yes. */
static void expect_end_record_of(struct harness *h, const char *slot, const char *grant, const char *end, pid_t client,
                                 uid_t uid, bool killed) {
        char match[96], buf[32];

        snprintf(match, sizeof match, "COHERENCYD_GRANT=%s", grant);
        json_object *records = journal_expect(h, 1, MESSAGE_ID_GRANT_END, match, NULL);
        json_object *r = json_object_array_get_idx(records, 0);
        assert_string_equal(journal_field(r, "COHERENCYD_END"), end);
        assert_string_equal(journal_field(r, "COHERENCYD_SLOT"), slot);
        /* How long the group stayed held, in microseconds. */
        const char *held = journal_field(r, "COHERENCYD_HELD_USEC");
        assert_non_null(held);
        assert_true(held[0] >= '0' && held[0] <= '9' && strspn(held, "0123456789") == strlen(held));
        if (killed)
                assert_string_equal(journal_field(r, "COHERENCYD_KILLED"), "yes");
        else
                assert_null(journal_field(r, "COHERENCYD_KILLED"));
        snprintf(buf, sizeof buf, "%d", (int) client);
        assert_string_equal(journal_field(r, "OBJECT_PID"), buf);
        snprintf(buf, sizeof buf, "%u", (unsigned) uid);
        assert_string_equal(journal_field(r, "COHERENCYD_PEER_UID"), buf);
        expect_end_message(r, slot, grant, end, client, killed);
        json_object_put(records);
}

static void expect_end_record(struct harness *h, const char *grant, const char *end, pid_t client, uid_t uid,
                              bool killed) {
        expect_end_record_of(h, GRANTED_SLOT, grant, end, client, uid, killed);
}

/* The still-held warning: its own id, warning priority, no end. */
static void expect_held_record(struct harness *h, const char *grant, pid_t client) {
        char match[96], buf[32];

        snprintf(match, sizeof match, "COHERENCYD_GRANT=%s", grant);
        json_object *records = journal_expect(h, 1, MESSAGE_ID_GRANT_HELD, match, NULL);
        json_object *r = json_object_array_get_idx(records, 0);
        assert_string_equal(journal_field(r, "PRIORITY"), "4");
        assert_null(journal_field(r, "COHERENCYD_END"));
        assert_string_equal(journal_field(r, "COHERENCYD_SLOT"), GRANTED_SLOT);
        assert_string_equal(journal_field(r, "COHERENCYD_IOMMU_GROUP"), "4");
        snprintf(buf, sizeof buf, "%d", (int) client);
        assert_string_equal(journal_field(r, "OBJECT_PID"), buf);
        snprintf(buf, sizeof buf, "%u", (unsigned) VMM_UID);
        assert_string_equal(journal_field(r, "COHERENCYD_PEER_UID"), buf);
        json_object_put(records);
}

/* Nothing of any grant left: no VM descriptor, no pin, no end of a group; sockets: the connections'. */
static void expect_nothing_held(struct harness *h, unsigned sockets) {
        expect_daemon_fds_settled(h, FD_SIM_VM, 0);
        expect_daemon_stream_sockets_settled(h, sockets);
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 0);
        json_object_put(grants);
}

static void test_release_after_letting_go_ends_at_once_and_the_device_can_be_asked_for_again(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int group;

        harness_start_leak_checked(h);
        harness_idle(h);
        unsigned all = daemon_fds(h, NULL);
        vmm_start(h, VMM_UID, VMM_GID, 1, &vmm);
        unsigned sockets = daemon_stream_sockets(h);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        harness_sync(h);
        /* Its pin and its end of the group, and the VM's descriptor. */
        expect_daemon_fds(h, FD_SIM_VM, 1);
        expect_daemon_stream_sockets(h, sockets + 2);

        /* The VMM detached and closed its file first, as libcoherency does. */
        close(group);
        json_object *p = release(vmm.conn[0], grant, "ended");
        assert_string_equal(jstr(p, "vmWbinvd"), "noop");
        json_object_put(p);
        expect_end_record(h, grant, "release", vmm.pid, VMM_UID, false);
        json_object_put(journal_expect(h, 0, MESSAGE_ID_GRANT_HELD, NULL));
        expect_nothing_held(h, sockets);
        json_object *mine = list_grants(vmm.conn[0], BROKER "ListGrants");
        assert_int_equal(json_object_array_length(mine), 0);
        json_object_put(mine);

        /* Free again at once, for anyone. */
        free(grant);
        grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        close(group);
        json_object_put(release(vmm.conn[0], grant, "ended"));

        free(grant);
        close(vm);
        vmm_done(&vmm);
        expect_daemon_fds_settled(h, NULL, all);
}

static void test_release_while_the_vmm_holds_the_group_is_ending_until_it_lets_go(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int group;

        harness_start_leak_checked(h);
        vmm_start(h, VMM_UID, VMM_GID, 1, &vmm);
        unsigned sockets = daemon_stream_sockets(h);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);

        json_object *p = release(vmm.conn[0], grant, "ending");
        assert_string_equal(jstr(p, "vmWbinvd"), "noop");
        json_object_put(p);
        expect_ending(h, grant, "release");
        harness_sync(h);
        /* The pin and the VM's descriptor are gone; only the daemon's end of the group stays, to see it freed. */
        expect_daemon_fds(h, FD_SIM_VM, 0);
        expect_daemon_stream_sockets(h, sockets + 1);
        json_object_put(journal_expect(h, 0, MESSAGE_ID_GRANT_END, NULL));

        /* Still held: nobody gets it, not even the VMM that let it go. */
        json_object *busy = request_grant_error(vmm.conn[0], vm, GRANTED_GROUP, "noncoherent", BROKER "DeviceBusy");
        assert_string_equal(jstr(busy, "device"), GRANTED_SLOT);
        json_object_put(busy);

        close(group);
        expect_end_record(h, grant, "release", vmm.pid, VMM_UID, false);
        expect_nothing_held(h, sockets);
        free(grant);
        grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        close(group);

        free(grant);
        close(vm);
        vmm_done(&vmm);
}

/* A group free when released ends there and then: one change, told once, as "ended"
 * (DESIGN.md §5: ended, revoked, ending-held), never as an "ending" that is already over. */
static void test_release_of_a_free_group_is_told_to_watchers_as_ended_only(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int group;

        harness_start(h);
        struct vconn *monitor = vconn_connect(h);
        vconn_send(monitor, MANAGER "Monitor", NULL, NULL, 0, true);
        json_object_put(vconn_next_event(monitor, "subscribed"));
        vmm_start(h, VMM_UID, VMM_GID, 2, &vmm);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        json_object_put(watch(vmm.conn[1]));
        json_object_put(vconn_next_event(monitor, "decision"));

        close(group);
        json_object_put(release(vmm.conn[0], grant, "ended"));
        expect_watch_event(vmm.conn[1], "ended", grant, "ended", "release");
        json_object *e = vconn_next_event(monitor, "ended");
        assert_string_equal(jstr(e, "grant"), grant);
        json_object_put(e);

        free(grant);
        close(vm);
        vmm_done(&vmm);
        vconn_free(monitor);
}

/* Events are written only while a stream is open (methods.h n_streams): a Monitor
 * still sees every one after other streams and other connections came and went. */
static void test_monitor_sees_events_after_other_connections_close(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int group;

        harness_start(h);
        struct vconn *monitor = vconn_connect(h);
        vconn_send(monitor, MANAGER "Monitor", NULL, NULL, 0, true);
        json_object_put(vconn_next_event(monitor, "subscribed"));
        struct vconn *other = vconn_connect(h);
        vconn_send(other, MANAGER "Monitor", NULL, NULL, 0, true);
        json_object_put(vconn_next_event(other, "subscribed"));
        vconn_free(other);
        for (int i = 0; i < 2; i++) {
                struct vconn *plain = vconn_connect(h);
                json_object_put(vconn_call(plain, BROKER "GetInfo", NULL, NULL, 0));
                vconn_free(plain);
        }
        harness_idle(h); /* the closes are seen */

        vmm_start(h, VMM_UID, VMM_GID, 1, &vmm);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        json_object *e = vconn_next_event(monitor, "decision");
        assert_string_equal(jstr(e, "grant"), grant);
        json_object_put(e);
        close(group);
        json_object_put(release(vmm.conn[0], grant, "ended"));
        e = vconn_next_event(monitor, "ended");
        assert_string_equal(jstr(e, "grant"), grant);
        json_object_put(e);

        free(grant);
        close(vm);
        vmm_done(&vmm);
        vconn_free(monitor);
}

/* DESIGN.md §5: a VMM's ListGrants has its own grants, "with state: active or ending". */
static void test_vmm_lists_its_own_ending_grant(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int group;

        harness_start(h);
        vmm_start(h, VMM_UID, VMM_GID, 1, &vmm);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        json_object_put(release(vmm.conn[0], grant, "ending"));

        json_object *mine = list_grants(vmm.conn[0], BROKER "ListGrants");
        json_object *g = grant_in(mine, grant);
        if (!g)
                fail_msg("the VMM's ListGrants lacks its ending grant %s: %s", grant, json_object_to_json_string(mine));
        assert_string_equal(jstr(g, "state"), "ending");
        assert_string_equal(jstr(g, "end"), "release");
        json_object_put(mine);

        close(group);
        free(grant);
        close(vm);
        vmm_done(&vmm);
}

static void test_device_busy_for_another_connection_and_another_vmm_while_held_and_free_after_close(void **state) {
        struct harness *h = *state;
        struct vmm first, second;
        int group;

        harness_start_leak_checked(h);
        vmm_start(h, VMM_UID, VMM_GID, 2, &first);
        vmm_start(h, OTHER_UID, OTHER_GID, 1, &second);
        int vms[2] = { sim_object("kvm-vm"), sim_object("kvm-vm") };
        char *grant = grant_wbinvd(first.conn[0], vms[0], GRANTED_GROUP, &group);
        harness_idle(h);
        unsigned all = daemon_fds(h, NULL);

        struct vconn *askers[] = { first.conn[0], first.conn[1], second.conn[0], h->sync };
        for (size_t i = 0; i < sizeof askers / sizeof askers[0]; i++) {
                json_object *p = request_grant_error(askers[i], vms[i >= 2], GRANTED_GROUP, "noncoherent",
                                                     BROKER "DeviceBusy");
                assert_string_equal(jstr(p, "device"), GRANTED_SLOT);
                json_object_put(p);
        }
        /* An error is no decision, and took nothing. */
        json_object_put(journal_expect(h, 1, MESSAGE_ID_DECISION, NULL));
        expect_daemon_fds_settled(h, NULL, all);

        /* Released but held: still busy. */
        json_object_put(release(first.conn[0], grant, "ending"));
        json_object_put(request_grant_error(second.conn[0], vms[1], GRANTED_GROUP, "noncoherent", BROKER "DeviceBusy"));

        /* Let go: the other VMM gets it. */
        close(group);
        expect_end_record(h, grant, "release", first.pid, VMM_UID, false);
        free(grant);
        grant = grant_wbinvd(second.conn[0], vms[1], GRANTED_GROUP, &group);
        json_object_put(request_grant_error(first.conn[1], vms[0], GRANTED_GROUP, "noncoherent", BROKER "DeviceBusy"));

        close(group);
        free(grant);
        for (size_t i = 0; i < 2; i++)
                close(vms[i]);
        vmm_done(&first);
        vmm_done(&second);
}

static void test_disconnect_while_the_group_is_held_is_ending_then_ended_when_it_is_closed(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int group;

        harness_start_leak_checked(h);
        unsigned sockets = daemon_stream_sockets(h);
        vmm_start(h, VMM_UID, VMM_GID, 2, &vmm);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);

        /* The VMM watches on its second connection: the first reply has the grant. */
        json_object *grants = watch(vmm.conn[1]);
        assert_int_equal(json_object_array_length(grants), 1);
        json_object *g = json_object_array_get_idx(grants, 0);
        assert_string_equal(jstr(g, "grant"), grant);
        assert_string_equal(jstr(g, "state"), "active");
        assert_string_equal(jstr(g, "decision"), "granted");
        assert_string_equal(jstr(g, "kvmAttach"), "add");
        assert_int_equal(jint(g, "peerPid"), vmm.pid);
        assert_int_equal(jint(g, "peerUid"), VMM_UID);
        assert_false(json_object_object_get_ex(g, "end", NULL));
        json_object_put(grants);

        /* The grant's connection closes while the group is still held. */
        vconn_free(vmm.conn[0]);
        vmm.conn[0] = NULL;
        expect_watch_event(vmm.conn[1], "ending", grant, "ending", "disconnect");
        expect_ending(h, grant, "disconnect");
        harness_sync(h);
        expect_daemon_fds(h, FD_SIM_VM, 0);
        expect_daemon_stream_sockets(h, sockets + 1 + 1); /* the watcher, the daemon's end of the group */

        close(group);
        expect_watch_event(vmm.conn[1], "ended", grant, "ended", "disconnect");
        expect_end_record(h, grant, "disconnect", vmm.pid, VMM_UID, false);
        expect_nothing_held(h, sockets + 1);

        free(grant);
        close(vm);
        vmm_done(&vmm);
}

static void test_vmm_process_that_exits_ends_its_grant_with_peer_exit_while_its_socket_lives_on(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int group;

        harness_start_leak_checked(h);
        unsigned sockets = daemon_stream_sockets(h);
        vmm_start(h, VMM_UID, VMM_GID, 1, &vmm);
        pid_t pid = vmm.pid;
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        vmm_hold(&vmm, group);
        close(group);

        /* The process exits, and its group with it; the test still holds the socket it made. */
        int status = vmm_exit(&vmm);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        expect_end_record(h, grant, "peer-exit", pid, VMM_UID, false);
        vconn_expect_closed(vmm.conn[0]);
        expect_nothing_held(h, sockets);

        free(grant);
        close(vm);
        vmm_done(&vmm);
}

static void test_revoke_obeyed_the_watcher_sees_revoked_closes_and_sees_ended(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        char params[128];
        int group;

        harness_start_leak_checked(h);
        struct vconn *monitor = vconn_connect(h);
        vconn_send(monitor, MANAGER "Monitor", NULL, NULL, 0, true);
        json_object_put(vconn_next_event(monitor, "subscribed"));
        unsigned sockets = daemon_stream_sockets(h);
        vmm_start(h, VMM_UID, VMM_GID, 2, &vmm);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        json_object_put(watch(vmm.conn[1]));
        json_object_put(vconn_next_event(monitor, "decision"));

        revoke_grant(h, grant, 0);
        expect_watch_event(vmm.conn[1], "revoked", grant, "ending", "revoke");
        json_object *e = vconn_next_event(monitor, "revoked");
        assert_string_equal(jstr(e, "grant"), grant);
        assert_string_equal(jstr(e, "end"), "revoke");
        assert_int_equal(jint(e, "peerUid"), VMM_UID);
        json_object_put(e);

        /* Its connection stays usable, and the grant is no longer its to release. */
        snprintf(params, sizeof params, "{\"grant\":\"%s\"}", grant);
        json_object_put(vconn_call_error(vmm.conn[0], BROKER "ReleaseGrant", params, NULL, 0, BROKER "NoSuchGrant"));

        /* The VMM obeys: detaches and closes its file. */
        close(group);
        expect_watch_event(vmm.conn[1], "ended", grant, "ended", "revoke");
        e = vconn_next_event(monitor, "ended");
        assert_string_equal(jstr(e, "grant"), grant);
        assert_string_equal(jstr(e, "end"), "revoke");
        json_object_put(e);
        expect_end_record(h, grant, "revoke", vmm.pid, VMM_UID, false);
        expect_nothing_held(h, sockets + 2);
        assert_true(vmm_alive(&vmm));

        free(grant);
        close(vm);
        vmm_done(&vmm);
        vconn_free(monitor);
}

static void test_revoke_with_kill_kills_the_vmm_that_keeps_its_group_and_the_record_says_so(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int group;

        write_conf(h, 1, true);
        harness_start_leak_checked(h);
        unsigned sockets = daemon_stream_sockets(h);
        vmm_start(h, VMM_UID, VMM_GID, 2, &vmm);
        pid_t pid = vmm.pid;
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        vmm_hold(&vmm, group);
        close(group);
        json_object_put(watch(vmm.conn[1]));

        revoke_grant(h, grant, 1);
        expect_watch_event(vmm.conn[1], "revoked", grant, "ending", "revoke");
        /* The VMM ignores it: after ReleaseTimeoutSec= the warning, then SIGKILL. */
        expect_watch_event(vmm.conn[1], "held", grant, "ending", "revoke");
        int status = vmm_wait(&vmm);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
                fail_msg("the revoked VMM was not killed: wait status 0x%x", (unsigned) status);
        expect_held_record(h, grant, pid);
        expect_end_record(h, grant, "revoke", pid, VMM_UID, true);
        vconn_expect_closed(vmm.conn[0]);
        expect_nothing_held(h, sockets);

        free(grant);
        close(vm);
        vmm_done(&vmm);
}

/* An ending grant can be revoked too: it keeps its end and gains the kill. */
static void test_revoke_with_kill_of_a_released_grant_still_held_kills_the_vmm(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int group;

        write_conf(h, 1, true);
        harness_start_leak_checked(h);
        unsigned sockets = daemon_stream_sockets(h);
        vmm_start(h, VMM_UID, VMM_GID, 2, &vmm);
        pid_t pid = vmm.pid;
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        vmm_hold(&vmm, group);
        close(group);
        json_object_put(watch(vmm.conn[1]));

        json_object_put(release(vmm.conn[0], grant, "ending"));
        expect_watch_event(vmm.conn[1], "ending", grant, "ending", "release");
        revoke_grant(h, grant, 1);
        expect_watch_event(vmm.conn[1], "revoked", grant, "ending", "release");
        int status = vmm_wait(&vmm);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        expect_end_record(h, grant, "release", pid, VMM_UID, true);
        expect_nothing_held(h, sockets);

        free(grant);
        close(vm);
        vmm_done(&vmm);
}

/*
 * One pidfd per VMM, whatever its grants: they share the connection's, keep
 * it open while one of them is ending after the connection closed, and it
 * goes with the last of them. (Also under memcheck: the kill tests are not.)
 */
static void test_grants_share_their_connection_pidfd_and_keep_it_while_ending(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int groups[2];

        harness_start_leak_checked(h);
        unsigned sockets = daemon_stream_sockets(h);
        vmm_start(h, VMM_UID, VMM_GID, 1, &vmm);
        vconn_ping(vmm.conn[0]);
        unsigned pidfds = daemon_fds(h, FD_PIDFD);
        int vm = sim_object("kvm-vm");
        char *first = grant_wbinvd(vmm.conn[0], vm, 3, &groups[0]);
        char *second = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &groups[1]);
        harness_sync(h);
        expect_daemon_fds(h, FD_PIDFD, pidfds);

        close(groups[0]);
        json_object_put(release(vmm.conn[0], first, "ended"));
        vconn_free(vmm.conn[0]);
        vmm.conn[0] = NULL;
        expect_ending(h, second, "disconnect");
        expect_daemon_fds_settled(h, FD_PIDFD, pidfds);

        close(groups[1]);
        expect_end_record(h, second, "disconnect", vmm.pid, VMM_UID, false);
        expect_nothing_held(h, sockets);
        expect_daemon_fds_settled(h, FD_PIDFD, pidfds - 1);

        free(first);
        free(second);
        close(vm);
        vmm_done(&vmm);
}

/*
 * A grant shares its VMM's pidfd with the connection it came on, no copy per
 * grant, and keeps it when that connection is gone: a revoke with kill of
 * the grant it left ending still kills the VMM.
 */
static void test_revoke_with_kill_after_the_vmm_disconnected_kills_the_vmm_through_the_pidfd_its_grants_share(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int groups[2];

        write_conf(h, 1, true);
        harness_start_leak_checked(h);
        unsigned sockets = daemon_stream_sockets(h);
        vmm_start(h, VMM_UID, VMM_GID, 1, &vmm);
        vconn_ping(vmm.conn[0]);
        pid_t pid = vmm.pid;
        unsigned pidfds = daemon_fds(h, FD_PIDFD);
        int vm = sim_object("kvm-vm");
        char *first = grant_wbinvd(vmm.conn[0], vm, 3, &groups[0]);
        char *second = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &groups[1]);
        harness_sync(h);
        expect_daemon_fds(h, FD_PIDFD, pidfds);
        vmm_hold(&vmm, groups[1]);
        close(groups[1]);

        /* The first let go and released; the connection closes with the second still held. */
        close(groups[0]);
        json_object_put(release(vmm.conn[0], first, "ended"));
        vconn_free(vmm.conn[0]);
        vmm.conn[0] = NULL;
        expect_ending(h, second, "disconnect");
        expect_daemon_fds_settled(h, FD_PIDFD, pidfds);

        revoke_grant(h, second, 1);
        int status = vmm_wait(&vmm);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
                fail_msg("the revoked VMM was not killed: wait status 0x%x", (unsigned) status);
        expect_end_record_of(h, GRANTED_SLOT, second, "disconnect", pid, VMM_UID, true);
        expect_nothing_held(h, sockets);
        expect_daemon_fds_settled(h, FD_PIDFD, pidfds - 1);

        free(first);
        free(second);
        close(vm);
        vmm_done(&vmm);
}

static void test_revoke_with_kill_without_revoke_kill_is_kill_not_enabled_and_changes_nothing(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        char params[128];
        int group;

        write_conf(h, 5, false);
        harness_start_leak_checked(h);
        unsigned sockets = daemon_stream_sockets(h);
        vmm_start(h, VMM_UID, VMM_GID, 1, &vmm);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);

        snprintf(params, sizeof params, "{\"grant\":\"%s\",\"kill\":true}", grant);
        json_object_put(vconn_call_error(h->sync, MANAGER "RevokeGrant", params, NULL, 0, MANAGER "KillNotEnabled"));
        json_object *g = manager_grant(h, grant);
        assert_non_null(g);
        assert_string_equal(jstr(g, "state"), "active");
        json_object_put(g);
        json_object *mine = list_grants(vmm.conn[0], BROKER "ListGrants");
        assert_non_null(grant_in(mine, grant));
        json_object_put(mine);

        /* Without kill (RevokeKill=no is the default then) the revoke goes through. */
        revoke_grant(h, grant, -1);
        expect_ending(h, grant, "revoke");
        close(group);
        expect_end_record(h, grant, "revoke", vmm.pid, VMM_UID, false);
        expect_nothing_held(h, sockets + 1);
        assert_true(vmm_alive(&vmm));

        free(grant);
        close(vm);
        vmm_done(&vmm);
}

static void test_group_still_held_after_release_timeout_gets_one_warning_and_no_kill(void **state) {
        struct harness *h = *state;
        struct vmm vmm;
        int group;

        /* RevokeKill=yes: a release is no revoke, nobody is killed for it. */
        write_conf(h, 1, true);
        harness_start_leak_checked(h);
        vmm_start(h, VMM_UID, VMM_GID, 2, &vmm);
        int vm = sim_object("kvm-vm");
        char *grant = grant_wbinvd(vmm.conn[0], vm, GRANTED_GROUP, &group);
        json_object_put(watch(vmm.conn[1]));

        json_object_put(release(vmm.conn[0], grant, "ending"));
        expect_watch_event(vmm.conn[1], "ending", grant, "ending", "release");
        expect_watch_event(vmm.conn[1], "held", grant, "ending", "release");
        expect_held_record(h, grant, vmm.pid);
        expect_ending(h, grant, "release");
        assert_true(vmm_alive(&vmm));

        close(group);
        expect_watch_event(vmm.conn[1], "ended", grant, "ended", "release");
        expect_end_record(h, grant, "release", vmm.pid, VMM_UID, false);
        /* One warning, however long it was held. */
        json_object_put(journal_expect(h, 1, MESSAGE_ID_GRANT_HELD, NULL));

        free(grant);
        close(vm);
        vmm_done(&vmm);
}

/* WatchGrants' first reply: the calling process's grants, whichever of its connections holds them. */
static void test_watch_grants_first_reply_has_the_calling_process_grants_from_all_its_connections(void **state) {
        struct harness *h = *state;
        struct vmm vmm, other;
        int groups[3];
        char *grants[3];

        harness_start(h);
        vmm_start(h, VMM_UID, VMM_GID, 3, &vmm);
        vmm_start(h, OTHER_UID, OTHER_GID, 1, &other);
        int vm = sim_object("kvm-vm");
        grants[0] = grant_wbinvd(vmm.conn[0], vm, 3, &groups[0]);
        grants[1] = grant_wbinvd(vmm.conn[1], vm, GRANTED_GROUP, &groups[1]);
        grants[2] = grant_wbinvd(other.conn[0], vm, 6, &groups[2]);

        json_object_put(vconn_call_error(vmm.conn[2], BROKER "WatchGrants", NULL, NULL, 0, SERVICE "ExpectedMore"));
        json_object *list = watch(vmm.conn[2]);
        assert_int_equal(json_object_array_length(list), 2);
        assert_non_null(grant_in(list, grants[0]));
        assert_non_null(grant_in(list, grants[1]));
        json_object_put(list);
        list = watch(other.conn[0]); /* its only connection: it streams from now on */
        assert_int_equal(json_object_array_length(list), 1);
        assert_non_null(grant_in(list, grants[2]));
        json_object_put(list);

        for (size_t i = 0; i < 3; i++) {
                close(groups[i]);
                free(grants[i]);
        }
        close(vm);
        vmm_done(&vmm);
        vmm_done(&other);
}

static void test_two_grants_on_one_vm_share_its_descriptor_and_vm_wbinvd_follows_the_granted_one(void **state) {
        struct harness *h = *state;
        int groups[2];

        harness_start_leak_checked(h);
        struct vconn *vmm = vconn_connect(h);
        vconn_ping(vmm);
        unsigned sockets = daemon_stream_sockets(h);
        int vm = sim_object("kvm-vm");
        char *first = grant_wbinvd(vmm, vm, 3, &groups[0]);
        harness_sync(h);
        expect_daemon_fds(h, FD_SIM_VM, 1);

        /* A dup is the same open file: the daemon must find the VM it already has. */
        int vm_dup = dup(vm);
        assert_true(vm_dup >= 0);
        char *second = grant_wbinvd(vmm, vm_dup, GRANTED_GROUP, &groups[1]);
        close(vm_dup);
        harness_sync(h);
        expect_daemon_fds(h, FD_SIM_VM, 1);
        expect_daemon_stream_sockets(h, sockets + 4);

        /* WBINVD stays allowed while the other granted file is held for the VM. */
        close(groups[0]);
        json_object *p = release(vmm, first, "ended");
        assert_string_equal(jstr(p, "vmWbinvd"), "allowed");
        json_object_put(p);
        harness_sync(h);
        expect_daemon_fds(h, FD_SIM_VM, 1);

        close(groups[1]);
        p = release(vmm, second, "ended");
        assert_string_equal(jstr(p, "vmWbinvd"), "noop");
        json_object_put(p);
        expect_end_record(h, second, "release", getpid(), 0, false);
        expect_nothing_held(h, sockets);

        free(first);
        free(second);
        close(vm);
        vconn_free(vmm);
}

/* A not-needed grant does not make the VM's WBINVD allowed, and does not keep it so. */
static void test_vm_wbinvd_is_noop_once_only_not_needed_grants_remain(void **state) {
        struct harness *h = *state;
        int groups[2];

        harness_start_leak_checked(h);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_take(h->sync, vm, 2, "coherent", &groups[0]);
        assert_string_equal(jstr(p, "decision"), "not-needed");
        assert_string_equal(jstr(p, "vmWbinvd"), "noop");
        char *coherent = strdup(jstr(p, "grant"));
        json_object_put(p);
        char *granted = grant_wbinvd(h->sync, vm, GRANTED_GROUP, &groups[1]);

        close(groups[1]);
        p = release(h->sync, granted, "ended");
        assert_string_equal(jstr(p, "vmWbinvd"), "noop");
        json_object_put(p);
        json_object *grants = list_grants(h->sync, BROKER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 1);
        assert_string_equal(jstr(json_object_array_get_idx(grants, 0), "vmWbinvd"), "noop");
        json_object_put(grants);

        close(groups[0]);
        json_object_put(release(h->sync, coherent, "ended"));
        free(coherent);
        free(granted);
        close(vm);
}

static void test_vm_shared_by_two_connections_keeps_its_descriptor_until_the_last_grant_ends(void **state) {
        struct harness *h = *state;
        int groups[2];

        harness_start_leak_checked(h);
        unsigned sockets = daemon_stream_sockets(h);
        struct vconn *first = vconn_connect(h), *second = vconn_connect(h);
        int vm = sim_object("kvm-vm");
        char *early = grant_wbinvd(first, vm, 3, &groups[0]);
        char *last = grant_wbinvd(second, vm, GRANTED_GROUP, &groups[1]);

        close(groups[0]);
        vconn_free(first);
        expect_end_record_of(h, "0000:00:04.0", early, "disconnect", getpid(), 0, false);
        harness_sync(h);
        expect_daemon_fds(h, FD_SIM_VM, 1);
        expect_daemon_stream_sockets(h, sockets + 1 + 2);

        close(groups[1]);
        vconn_free(second);
        expect_end_record(h, last, "disconnect", getpid(), 0, false);
        expect_nothing_held(h, sockets);
        free(early);
        free(last);
        close(vm);
}

static void test_refused_request_keeps_nothing(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        harness_idle(h);
        unsigned before = daemon_fds(h, NULL);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant(h->sync, vm, 5, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        json_object_put(p);
        expect_daemon_fds_settled(h, NULL, before);
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 0);
        json_object_put(grants);
        char state_text[64];
        sim_vm_state(vm, state_text, sizeof state_text);
        assert_string_equal(state_text, "");
        close(vm);
}

static void test_sigterm_with_grants_held_ends_them_and_exits_zero(void **state) {
        struct harness *h = *state;
        struct vmm other;
        int groups[2];

        harness_start(h);
        struct vconn *vmm = vconn_connect(h);
        vmm_start(h, VMM_UID, VMM_GID, 1, &other);
        int vms[2] = { sim_object("kvm-vm"), sim_object("kvm-vm") };
        free(grant_wbinvd(vmm, vms[0], 3, &groups[0]));
        free(grant_wbinvd(other.conn[0], vms[1], GRANTED_GROUP, &groups[1]));

        /* Both clients still connected, both groups still held. */
        harness_stop(h);
        json_object_put(journal_expect(h, 2, MESSAGE_ID_GRANT_END, "COHERENCYD_END=shutdown", NULL));
        vconn_expect_closed(vmm);
        vconn_expect_closed(other.conn[0]);
        for (size_t i = 0; i < 2; i++) {
                close(groups[i]);
                close(vms[i]);
        }
        vconn_free(vmm);
        vmm_done(&other);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_release_after_letting_go_ends_at_once_and_the_device_can_be_asked_for_again),
                HARNESS_TEST(test_release_while_the_vmm_holds_the_group_is_ending_until_it_lets_go),
                HARNESS_TEST(test_release_of_a_free_group_is_told_to_watchers_as_ended_only),
                HARNESS_TEST(test_monitor_sees_events_after_other_connections_close),
                HARNESS_TEST(test_vmm_lists_its_own_ending_grant),
                HARNESS_TEST(test_device_busy_for_another_connection_and_another_vmm_while_held_and_free_after_close),
                HARNESS_TEST(test_disconnect_while_the_group_is_held_is_ending_then_ended_when_it_is_closed),
                HARNESS_TEST(test_vmm_process_that_exits_ends_its_grant_with_peer_exit_while_its_socket_lives_on),
                HARNESS_TEST(test_revoke_obeyed_the_watcher_sees_revoked_closes_and_sees_ended),
                HARNESS_TEST(test_revoke_with_kill_kills_the_vmm_that_keeps_its_group_and_the_record_says_so),
                HARNESS_TEST(test_revoke_with_kill_of_a_released_grant_still_held_kills_the_vmm),
                HARNESS_TEST(test_grants_share_their_connection_pidfd_and_keep_it_while_ending),
                HARNESS_TEST(test_revoke_with_kill_after_the_vmm_disconnected_kills_the_vmm_through_the_pidfd_its_grants_share),
                HARNESS_TEST(test_revoke_with_kill_without_revoke_kill_is_kill_not_enabled_and_changes_nothing),
                HARNESS_TEST(test_group_still_held_after_release_timeout_gets_one_warning_and_no_kill),
                HARNESS_TEST(test_watch_grants_first_reply_has_the_calling_process_grants_from_all_its_connections),
                HARNESS_TEST(test_two_grants_on_one_vm_share_its_descriptor_and_vm_wbinvd_follows_the_granted_one),
                HARNESS_TEST(test_vm_wbinvd_is_noop_once_only_not_needed_grants_remain),
                HARNESS_TEST(test_vm_shared_by_two_connections_keeps_its_descriptor_until_the_last_grant_ends),
                HARNESS_TEST(test_refused_request_keeps_nothing),
                HARNESS_TEST(test_sigterm_with_grants_held_ends_them_and_exits_zero),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
