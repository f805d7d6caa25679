/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests that tell apart what root (0/0) and nobody (65534/65534) never could:
 * a peer's uid from its gid (records, the admin check), the admin group
 * as a primary and as a supplementary group, a group of devices one of which
 * is refused, and the descriptors of a hand-over that fails half-way. Each was
 * a deliberately planted bug that passed every tier before (tools/plant-bugs).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

/* Every id distinct from every other, and from root's and nobody's. */
#define VMM_UID ((uid_t) 1234)
#define VMM_GID ((gid_t) 4321)
#define ADMIN_GID ((gid_t) 4242)

#define CONF "coherencyd.conf"
#define GRANTED_GROUP 4 /* behind the IOMMU that cannot enforce: row 4 under automatic */

/* ---- uid and gid ---------------------------------------------------------- */

/* (User= and Group= rules against a peer whose uid and gid differ, and the same numbers
 * swapped: test-integ-access.c, test_access_rules_match_the_vmms_user_and_group_ids.) */

/* What the daemon says of a VMM: its uid (ListGrants, Monitor), not its gid. */
static void test_grants_and_events_name_the_peers_uid(void **state) {
        struct harness *h = *state;
        struct peer vmm;
        int group;

        harness_start(h);
        struct vconn *monitor = vconn_connect(h);
        vconn_send(monitor, MANAGER "Monitor", NULL, NULL, 0, true);
        json_object_put(vconn_next_event(monitor, "subscribed"));
        peer_connect(h, VMM_UID, VMM_GID, NULL, 0, &vmm);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_take(vmm.conn, vm, GRANTED_GROUP, "noncoherent", &group);
        json_object_put(p);

        json_object *e = vconn_next_event(monitor, "decision");
        assert_int_equal(jint(e, "peerUid"), VMM_UID);
        assert_int_equal(jint(e, "peerPid"), vmm.pid);
        json_object_put(e);
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 1);
        assert_int_equal(jint(json_object_array_get_idx(grants, 0), "peerUid"), VMM_UID);
        json_object_put(grants);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_DECISION, "COHERENCYD_PEER_UID=1234", NULL));

        close(group);
        close(vm);
        peer_done(&vmm);
        vconn_free(monitor);
}

/* ---- who is an operator ----------------------------------------------------- */

static void write_admin_conf(struct harness *h) {
        char conf[256];

        snprintf(conf, sizeof conf, "[Broker]\nAccess=allow\nMode=automatic\nAdminGroup=%u\n", (unsigned) ADMIN_GID);
        harness_write_config(h, CONF, conf);
}

/* Whether a peer of uid/gid/groups may call a Manager method. */
static bool is_operator(struct harness *h, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups) {
        struct peer p;
        struct coh_reply reply;

        peer_connect(h, uid, gid, groups, n_groups, &p);
        vconn_send(p.conn, MANAGER "ListGrants", NULL, NULL, 0, false);
        assert_int_equal(vconn_recv(p.conn, &reply), 0);
        bool allowed = !reply.error;
        if (reply.error && strcmp(reply.error, BROKER "PermissionDenied") != 0)
                fail_msg("ListGrants as uid %u gid %u: %s", (unsigned) uid, (unsigned) gid, reply.error);
        coh_reply_done(&reply);
        peer_done(&p);
        return allowed;
}

static void expect_operator(struct harness *h, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups,
                            bool expected) {
        if (is_operator(h, uid, gid, groups, n_groups) != expected)
                fail_msg("uid %u gid %u (%zu supplementary group(s)) %s an operator, and should %s", (unsigned) uid,
                         (unsigned) gid, n_groups, expected ? "is not" : "is", expected ? "be" : "not be");
}

static void test_admin_group_as_primary_or_supplementary_group_and_never_by_uid(void **state) {
        struct harness *h = *state;
        const gid_t admin = ADMIN_GID, others[2] = { 100, ADMIN_GID };

        write_admin_conf(h);
        harness_start(h);
        /* The admin group as the caller's primary group, with no supplementary ones. */
        expect_operator(h, VMM_UID, ADMIN_GID, NULL, 0, true);
        /* As a supplementary group, alone or after another. */
        expect_operator(h, VMM_UID, VMM_GID, &admin, 1, true);
        expect_operator(h, VMM_UID, VMM_GID, others, 2, true);
        /* A uid whose number is the admin group's, in no such group, is no operator. */
        expect_operator(h, (uid_t) ADMIN_GID, VMM_GID, NULL, 0, false);
        /* Neither is a VMM outside it. */
        expect_operator(h, VMM_UID, VMM_GID, NULL, 0, false);
}

/* Root is uid 0 whatever its group; gid 0 makes nobody root. */
static void test_root_is_uid_0_not_gid_0(void **state) {
        struct harness *h = *state;

        harness_start(h);
        expect_operator(h, 0, VMM_GID, NULL, 0, true);
        expect_operator(h, VMM_UID, 0, NULL, 0, false);
        /* Not with an admin group either, unless that group is 0. */
        write_admin_conf(h);
        harness_sighup(h);
        expect_operator(h, VMM_UID, 0, NULL, 0, false);
        expect_operator(h, 0, VMM_GID, NULL, 0, true);
}

/* ---- a group with a refused and a granted device ---------------------------- */

/* Group 6 of the demo: 0000:00:07.0 and 0000:00:07.1, both granted alone (row 4).
 * One refused by its slot refuses the group, whichever was asked for, whichever
 * comes first in the group. */
static void mixed_group(void **state, const char *refused_slot) {
        struct harness *h = *state;
        char policy[256], rule[512], params[128];

        snprintf(policy, sizeof policy, "[Match]\nSlot=%s\n[Policy]\nMode=force-disable\n", refused_slot);
        harness_write_config(h, "policy.d/06-one-function.policy", policy);
        harness_start(h);
        harness_rule(h, "policy.d/06-one-function.policy", 4, rule, sizeof rule);
        int vm = sim_object("kvm-vm");
        unsigned sockets = daemon_stream_sockets(h);

        static const char *const slots[2] = { "0000:00:07.0", "0000:00:07.1" };
        for (size_t i = 0; i < 2; i++) {
                /* Probe, by either device. */
                snprintf(params, sizeof params, "{\"device\":\"%s\"}", slots[i]);
                json_object *p = vconn_call(h->sync, BROKER "Probe", params, NULL, 0);
                assert_string_equal(jstr(p, "decision"), "refused");
                assert_string_equal(jstr(p, "reason"), "policy-force-disable");
                assert_string_equal(jstr(p, "rule"), rule);
                assert_string_equal(jstr(jmember(p, "facts"), "slot"), refused_slot);
                json_object_put(p);
        }
        /* RequestGrant (for the group's first device): refused, nothing handed over or held. */
        json_object *p = request_grant(h->sync, vm, 6, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_string_equal(jstr(p, "reason"), "policy-force-disable");
        assert_string_equal(jstr(p, "rule"), rule);
        json_object *devices = jmember(jmember(p, "facts"), "devices");
        assert_int_equal(json_object_array_length(devices), 2);
        for (size_t i = 0; i < 2; i++) {
                json_object *d = json_object_array_get_idx(devices, i);
                bool refused = strcmp(jstr(d, "slot"), refused_slot) == 0;
                assert_string_equal(jstr(d, "decision"), refused ? "refused" : "granted");
        }
        json_object_put(p);
        harness_sync(h);
        expect_daemon_stream_sockets(h, sockets);
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 0);
        json_object_put(grants);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_REFUSED, "COHERENCYD_SLOT=0000:00:07.0", NULL));
        json_object_put(journal_expect(h, 0, MESSAGE_ID_DECISION, NULL));
        close(vm);
}

static void test_group_whose_second_device_is_refused_is_refused(void **state) {
        mixed_group(state, "0000:00:07.1");
}

static void test_group_whose_first_device_is_refused_is_refused(void **state) {
        mixed_group(state, "0000:00:07.0");
}

/* ---- descriptors of a hand-over that fails ------------------------------------ */

/* RequestGrant of GRANTED_GROUP's device with vm and a container of its own, answered in
 * *reply whatever it is (for the tests that make the daemon run short of descriptors). */
static void request_granted_group(struct vconn *c, int vm, struct coh_reply *reply) {
        char params[160];
        int sent[2] = { vm, sim_object("vfio-container:noncoherent") };
        snprintf(params, sizeof params, "{\"vm\":0,\"iommu\":1,\"device\":\"%s\"}", group_slot(GRANTED_GROUP));
        vconn_send(c, BROKER "RequestGrant", params, sent, 2, false);
        close(sent[1]);
        assert_int_equal(vconn_recv(c, reply), 0);
}

/* A reply of request_granted_group() that is a grant: it came with the group; released. */
static void release_granted(struct vconn *c, const struct coh_reply *reply) {
        assert_string_equal(jstr(reply->parameters, "decision"), "granted");
        assert_int_equal(vconn_reply_fds(c), 1);
        json_object_put(release_grant(c, jstr(reply->parameters, "grant")));
}

/*
 * The daemon runs out of descriptors at each step of a hand-over in turn (its
 * RLIMIT_NOFILE lowered so that only n are free): receiving the request's
 * two, reading sysfs, the group's socketpair, its pin. Whatever fails, the
 * client gets an error and no group, and the daemon is back to the
 * descriptors it had: nothing half-opened stays behind. With enough, the
 * same request is a grant.
 */
static void test_hand_over_failing_for_want_of_descriptors_leaves_none_behind(void **state) {
        struct harness *h = *state;
        bool failed_at_pin = false, granted = false;
        struct rlimit old;

        /* prlimit(2) on the daemon needs it to stay root: its main process otherwise
         * becomes an unprivileged user (privilege separation), and this machine's
         * root has no CAP_SYS_RESOURCE to reach another uid's limits. */
        h->options.no_sandbox = true;
        harness_start(h);
        struct vconn *c = vconn_connect(h);
        vconn_ping(c); /* accepted: its descriptors are in the count */
        int vm = sim_object("kvm-vm");
        harness_idle(h);
        unsigned fds = daemon_fds(h, NULL), sockets = daemon_stream_sockets(h);

        for (unsigned n_free = 2; n_free <= 8 && !granted; n_free++) {
                harness_idle(h);
                daemon_limit_free_fds(h, n_free, &old);
                struct coh_reply reply;
                request_granted_group(c, vm, &reply);
                daemon_restore_fd_limit(h, &old);

                if (!reply.error) {
                        release_granted(c, &reply);
                        granted = true;
                } else {
                        if (strcmp(reply.error, BROKER "BackendError") != 0)
                                fail_msg("with %u descriptors free: %s %s", n_free, reply.error,
                                         json_object_to_json_string(reply.parameters));
                        assert_int_equal(jint(reply.parameters, "errno"), EMFILE);
                        print_message("with %u descriptors free: BackendError(%s)\n", n_free,
                                      jstr(reply.parameters, "operation"));
                        /* In-process the pin fails; through the privileged helper, its reply
                         * cannot bring the group and pin in. */
                        failed_at_pin |= strcmp(jstr(reply.parameters, "operation"), "pin") == 0 ||
                                         strcmp(jstr(reply.parameters, "operation"), "privileged helper") == 0;
                        assert_int_equal(vconn_reply_fds(c), 0);
                }
                coh_reply_done(&reply);
                /* Back to where it was (the grant's pin and probe go once the group is free). */
                expect_daemon_fds_settled(h, NULL, fds);
                expect_daemon_stream_sockets_settled(h, sockets);
        }
        /* The path past the socketpair was taken, and the group was not left busy. */
        assert_true(failed_at_pin);
        assert_true(granted);
        close(vm);
        vconn_free(c);
}

/*
 * The same on the privileged helper's side, which opens and pins the group: with its
 * RLIMIT_NOFILE lowered so that only n are free, the socketpair or the pin fails there.
 * The client gets an error and no group, and the helper is back to the descriptors it
 * had (it serves request after request: what it leaks stays).
 */
static void test_custody_failing_in_the_helper_leaves_none_behind(void **state) {
        struct harness *h = *state;
        bool failed_at_pin = false, granted = false;
        struct rlimit old;

        h->options.no_sandbox = true; /* prlimit(2) on the helper: both stay root */
        harness_start(h);
        struct vconn *c = vconn_connect(h);
        vconn_ping(c);
        int vm = sim_object("kvm-vm");
        /* One whole grant first: whatever the helper opens once and keeps is in the baseline. */
        int group;
        json_object *p = request_grant_take(c, vm, GRANTED_GROUP, "noncoherent", &group);
        close(group);
        json_object_put(release_grant(c, jstr(p, "grant")));
        json_object_put(p);
        harness_idle(h);
        pid_t helper = daemon_helper_pid(h);
        unsigned helper_fds = process_fds(helper), fds = daemon_fds(h, NULL);

        for (unsigned n_free = 0; n_free <= 6 && !granted; n_free++) {
                harness_idle(h);
                process_limit_free_fds(helper, n_free, &old);
                struct coh_reply reply;
                request_granted_group(c, vm, &reply);
                assert_int_equal(prlimit(helper, RLIMIT_NOFILE, &old, NULL), 0);
                if (!reply.error) {
                        release_granted(c, &reply);
                        granted = true;
                } else {
                        if (strcmp(reply.error, BROKER "BackendError") != 0)
                                fail_msg("with %u descriptors free in the helper: %s %s", n_free, reply.error,
                                         json_object_to_json_string(reply.parameters));
                        print_message("with %u descriptors free in the helper: BackendError(%s, %s)\n", n_free,
                                      jstr(reply.parameters, "operation"), json_object_to_json_string(reply.parameters));
                        failed_at_pin |= strcmp(jstr(reply.parameters, "operation"), "pin") == 0;
                        assert_int_equal(vconn_reply_fds(c), 0);
                }
                coh_reply_done(&reply);
                /* The helper closes what it handed over right after sending it: a few round
                 * trips, bounded, for that to have happened. */
                for (unsigned round = 0; round < 50 && process_fds(helper) != helper_fds; round++)
                        harness_sync(h);
                assert_int_equal(process_fds(helper), helper_fds);
                expect_daemon_fds_settled(h, NULL, fds);
        }
        /* The path past the socketpair was taken in the helper, and a grant followed. */
        assert_true(failed_at_pin);
        assert_true(granted);
        close(vm);
        vconn_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_grants_and_events_name_the_peers_uid),
                HARNESS_TEST(test_admin_group_as_primary_or_supplementary_group_and_never_by_uid),
                HARNESS_TEST(test_root_is_uid_0_not_gid_0),
                HARNESS_TEST(test_group_whose_second_device_is_refused_is_refused),
                HARNESS_TEST(test_group_whose_first_device_is_refused_is_refused),
                HARNESS_TEST(test_hand_over_failing_for_want_of_descriptors_leaves_none_behind),
                HARNESS_TEST(test_custody_failing_in_the_helper_leaves_none_behind),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
