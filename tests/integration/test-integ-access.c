/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may do what: io.coherencyd.Manager is root's and the admin group's,
 * io.coherencyd.Broker everyone's, and a VMM sees and ends only its own grants.
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

#define ADMIN_GID ((gid_t) 4242)

static void test_nobody_is_denied_every_manager_method_but_may_use_the_broker(void **state) {
        struct harness *h = *state;
        static const struct {
                const char *method, *params;
                bool more;
        } manager[] = {
                { MANAGER "ListGrants", NULL, false },
                { MANAGER "RevokeGrant", "{\"grant\":\"g-0000000000000000\"}", false },
                { MANAGER "ReloadPolicy", NULL, false },
                { MANAGER "GetPolicy", NULL, false },
                { MANAGER "Monitor", NULL, true },
        };
        struct peer nobody;
        struct coh_reply reply;

        harness_start(h);
        peer_connect_nobody(h, &nobody);
        for (size_t i = 0; i < sizeof manager / sizeof manager[0]; i++) {
                vconn_send(nobody.conn, manager[i].method, manager[i].params, NULL, 0, manager[i].more);
                assert_int_equal(vconn_recv(nobody.conn, &reply), 0);
                if (!reply.error || strcmp(reply.error, BROKER "PermissionDenied") != 0)
                        fail_msg("%s as nobody: %s", manager[i].method, reply.error ?: "succeeded");
                coh_reply_done(&reply);
        }

        json_object *p = vconn_call(nobody.conn, BROKER "GetInfo", NULL, NULL, 0);
        assert_string_equal(jstr(p, "backend"), "sim");
        assert_string_equal(jstr(p, "mode"), "automatic");
        json_object_put(p);
        peer_done(&nobody);
}

static void test_admin_group_member_may_list_everyones_grants(void **state) {
        struct harness *h = *state;
        const gid_t admin = ADMIN_GID;
        struct peer operator, outsider;
        char conf[256];

        snprintf(conf, sizeof conf, "[Broker]\nMode=automatic\nAdminGroup=%u\n", (unsigned) ADMIN_GID);
        harness_write_config(h, "coherencyd.conf", conf);
        harness_start(h);
        int vm = sim_object("kvm-vm");
        json_object_put(request_grant(h->sync, vm, 4, NULL));

        /* Same uid, the group only as a supplementary one. */
        peer_connect(h, NOBODY_UID, NOGROUP_GID, &admin, 1, &operator);
        peer_connect_nobody(h, &outsider);
        json_object *grants = list_grants(operator.conn, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 1);
        assert_int_equal(jint(json_object_array_get_idx(grants, 0), "peerUid"), 0);
        json_object_put(grants);
        json_object_put(vconn_call_error(outsider.conn, MANAGER "ListGrants", NULL, NULL, 0,
                                         BROKER "PermissionDenied"));

        peer_done(&operator);
        peer_done(&outsider);
        close(vm);
}

/* A VMM that is a member of more groups than the daemon asks the kernel about (it then
 * learns none of them: SO_PEERGROUPS fails with ERANGE and copies nothing) must not pass
 * for a member of the admin group, whoever connected before it. */
static void test_vmm_in_hundreds_of_groups_is_not_taken_for_an_operator(void **state) {
        struct harness *h = *state;
        const gid_t admin = ADMIN_GID;
        gid_t many[300];
        struct peer operator, crowd;
        char conf[256];

        snprintf(conf, sizeof conf, "[Broker]\nMode=automatic\nAdminGroup=%u\n", (unsigned) ADMIN_GID);
        harness_write_config(h, "coherencyd.conf", conf);
        harness_start(h);
        peer_connect(h, NOBODY_UID, NOGROUP_GID, &admin, 1, &operator);
        json_object_put(list_grants(operator.conn, MANAGER "ListGrants"));

        for (size_t i = 0; i < sizeof many / sizeof many[0]; i++)
                many[i] = (gid_t) (10000 + i);
        peer_connect(h, NOBODY_UID, NOGROUP_GID, many, sizeof many / sizeof many[0], &crowd);
        json_object_put(vconn_call_error(crowd.conn, MANAGER "ListGrants", NULL, NULL, 0,
                                         BROKER "PermissionDenied"));
        peer_done(&operator);
        peer_done(&crowd);
}

static void test_user_rule_applies_to_that_users_vmms_only(void **state) {
        struct harness *h = *state;
        struct peer nobody;
        char rule[512];

        harness_write_config(h, "policy.d/05-nobody.policy",
                             "[Match]\n"
                             "User=nobody\n"
                             "[Policy]\n"
                             "Mode=force-disable\n");
        harness_start(h);
        harness_rule(h, "policy.d/05-nobody.policy", 4, rule, sizeof rule);
        peer_connect_nobody(h, &nobody);

        /* GetInfo says what applies to the caller. */
        json_object *p = vconn_call(nobody.conn, BROKER "GetInfo", NULL, NULL, 0);
        assert_string_equal(jstr(p, "mode"), "force-disable");
        assert_string_equal(jstr(p, "modeRule"), rule);
        json_object_put(p);

        int vm = sim_object("kvm-vm");
        p = request_grant(nobody.conn, vm, 4, NULL);
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_string_equal(jstr(p, "reason"), "policy-force-disable");
        assert_string_equal(jstr(p, "rule"), rule);
        json_object_put(p);

        /* Root's VMM is not nobody. */
        p = request_grant(h->sync, vm, 4, NULL);
        assert_string_equal(jstr(p, "decision"), "granted");
        json_object_put(p);
        close(vm);
        peer_done(&nobody);
}

/* The VMM's own ListGrants holds exactly this one grant, of its pid. */
static void check_only_grant(const struct peer *vmm, const char *grant) {
        json_object *grants = list_grants(vmm->conn, BROKER "ListGrants");

        assert_int_equal(json_object_array_length(grants), 1);
        json_object *g = json_object_array_get_idx(grants, 0);
        assert_string_equal(jstr(g, "grant"), grant);
        assert_int_equal(jint(g, "peerPid"), vmm->pid);
        assert_int_equal(jint(g, "peerUid"), NOBODY_UID);
        json_object_put(grants);
}

/* Two VMMs of the same user, each with a VM and one grant on it. */
static void two_vmms_with_grants(struct harness *h, struct peer vmm[2], int vm[2], char *grant[2]) {
        for (size_t i = 0; i < 2; i++) {
                peer_connect_nobody(h, &vmm[i]);
                vm[i] = sim_object("kvm-vm");
                json_object *p = request_grant(vmm[i].conn, vm[i], 3 + i, i == 0 ? "noncoherent" : NULL);
                grant[i] = strdup(jstr(p, "grant"));
                json_object_put(p);
        }
}

static void two_vmms_done(struct peer vmm[2], int vm[2], char *grant[2]) {
        for (size_t i = 0; i < 2; i++) {
                peer_done(&vmm[i]);
                close(vm[i]);
                free(grant[i]);
        }
}

static void test_broker_list_grants_shows_only_the_callers_own(void **state) {
        struct harness *h = *state;
        struct peer vmm[2];
        int vm[2];
        char *grant[2];

        harness_start(h);
        two_vmms_with_grants(h, vmm, vm, grant);
        for (size_t i = 0; i < 2; i++)
                check_only_grant(&vmm[i], grant[i]);
        /* The operator sees both. */
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 2);
        json_object_put(grants);
        two_vmms_done(vmm, vm, grant);
}

static void test_releasing_another_vmms_grant_is_no_such_grant(void **state) {
        struct harness *h = *state;
        struct peer vmm[2];
        int vm[2];
        char *grant[2], params[128];

        harness_start(h);
        two_vmms_with_grants(h, vmm, vm, grant);
        snprintf(params, sizeof params, "{\"grant\":\"%s\"}", grant[0]);
        json_object *p = vconn_call_error(vmm[1].conn, BROKER "ReleaseGrant", params, NULL, 0, BROKER "NoSuchGrant");
        assert_string_equal(jstr(p, "grant"), grant[0]);
        json_object_put(p);

        /* Still there, still attached. */
        check_only_grant(&vmm[0], grant[0]);
        assert_int_equal(sim_vm_noncoherent_dma(vm[0]), 1);
        two_vmms_done(vmm, vm, grant);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_nobody_is_denied_every_manager_method_but_may_use_the_broker),
                HARNESS_TEST(test_admin_group_member_may_list_everyones_grants),
                HARNESS_TEST(test_vmm_in_hundreds_of_groups_is_not_taken_for_an_operator),
                HARNESS_TEST(test_user_rule_applies_to_that_users_vmms_only),
                HARNESS_TEST(test_broker_list_grants_shows_only_the_callers_own),
                HARNESS_TEST(test_releasing_another_vmms_grant_is_no_such_grant),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
