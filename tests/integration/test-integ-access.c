/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may do what: io.coherencyd.Manager is root's and the admin group's,
 * io.coherencyd.Broker everyone's; Access= decides which VMM (user, groups,
 * unit) may have a device at all; a VMM sees and ends only its own grants;
 * and Manager.Explain tells an operator what a user's VMM would get.
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
/* VMMs whose uid and gid differ from each other, from root's and from nobody's. */
#define VMM_UID ((uid_t) 1234)
#define VMM_GID ((gid_t) 4321)
#define OTHER_UID ((uid_t) 1235)
#define OTHER_GID ((gid_t) 4322)

#define CONF "coherencyd.conf"
#define CONF_ACCESS_LINE 6 /* the demo's Access=allow */
#define GRANTED_GROUP 4    /* behind the IOMMU that cannot enforce: row 4 under automatic */

static void test_nobody_is_denied_every_manager_method_but_may_use_the_broker(void **state) {
        struct harness *h = *state;
        static const struct {
                const char *method, *params;
                bool more;
        } manager[] = {
                { MANAGER "ListGrants", NULL, false },
                { MANAGER "RevokeGrant", "{\"grant\":\"g-0000000000000000\"}", false },
                { MANAGER "RevokeGrant", "{\"grant\":\"g-0000000000000000\",\"kill\":true}", false },
                { MANAGER "Explain", "{\"device\":\"0000:00:05.0\",\"user\":\"nobody\"}", false },
                { MANAGER "ReloadPolicy", NULL, false },
                { MANAGER "GetPolicy", NULL, false },
                { MANAGER "Monitor", NULL, true },
        };
        struct peer nobody;
        struct coh_reply reply;
        char rule[512];

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
        assert_string_equal(jstr(p, "access"), "allow");
        assert_string_equal(jstr(p, "accessRule"), harness_rule(h, CONF, CONF_ACCESS_LINE, rule, sizeof rule));
        json_object_put(p);
        peer_done(&nobody);
}

static void write_admin_conf(struct harness *h) {
        char conf[256];

        snprintf(conf, sizeof conf, "[Broker]\nAccess=allow\nMode=automatic\nAdminGroup=%u\n", (unsigned) ADMIN_GID);
        harness_write_config(h, CONF, conf);
}

static void test_admin_group_member_may_list_everyones_grants_explain_and_revoke(void **state) {
        struct harness *h = *state;
        const gid_t admin = ADMIN_GID;
        struct peer operator, outsider;
        int group;

        write_admin_conf(h);
        harness_start(h);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_take(h->sync, vm, GRANTED_GROUP, "noncoherent", &group);
        char *grant = strdup(jstr(p, "grant"));
        json_object_put(p);

        /* Its own uid and gid, the admin group only as a supplementary one. */
        peer_connect(h, VMM_UID, VMM_GID, &admin, 1, &operator);
        peer_connect(h, OTHER_UID, OTHER_GID, NULL, 0, &outsider);
        json_object *grants = list_grants(operator.conn, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 1);
        assert_int_equal(jint(json_object_array_get_idx(grants, 0), "peerUid"), 0);
        json_object_put(grants);
        p = vconn_call(operator.conn, MANAGER "Explain", "{\"device\":\"0000:00:05.0\",\"user\":\"nobody\"}", NULL, 0);
        assert_string_equal(jstr(p, "decision"), "granted");
        json_object_put(p);
        json_object_put(vconn_call_error(outsider.conn, MANAGER "ListGrants", NULL, NULL, 0,
                                         BROKER "PermissionDenied"));
        json_object_put(vconn_call_error(outsider.conn, MANAGER "Explain",
                                         "{\"device\":\"0000:00:05.0\",\"user\":\"root\"}", NULL, 0,
                                         BROKER "PermissionDenied"));

        char params[128], match[64];
        snprintf(params, sizeof params, "{\"grant\":\"%s\",\"kill\":false}", grant);
        json_object_put(vconn_call(operator.conn, MANAGER "RevokeGrant", params, NULL, 0));
        close(group);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_GRANT_END, "COHERENCYD_END=revoke", NULL));
        /* The audit trail: who revoked it (their uid, not their gid), and what came of it. */
        snprintf(match, sizeof match, "COHERENCYD_GRANT=%s", grant);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_OPERATOR, "COHERENCYD_OPERATION=RevokeGrant", match,
                                       "COHERENCYD_OPERATOR_UID=1234", "COHERENCYD_RESULT=done", "COHERENCYD_KILL=no",
                                       NULL));
        /* A revoke that finds nothing is recorded too; and so is a policy reload. */
        json_object_put(vconn_call_error(operator.conn, MANAGER "RevokeGrant", "{\"grant\":\"g-0000000000000000\"}",
                                         NULL, 0, BROKER "NoSuchGrant"));
        json_object_put(journal_expect(h, 1, MESSAGE_ID_OPERATOR, "COHERENCYD_GRANT=g-0000000000000000",
                                       "COHERENCYD_OPERATOR_UID=1234", "COHERENCYD_RESULT=no-such-grant", NULL));
        json_object_put(vconn_call(operator.conn, MANAGER "ReloadPolicy", NULL, NULL, 0));
        json_object_put(journal_expect(h, 1, MESSAGE_ID_OPERATOR, "COHERENCYD_OPERATION=ReloadPolicy",
                                       "COHERENCYD_OPERATOR_UID=1234", "COHERENCYD_RESULT=done", NULL));
        /* The outsider's knocks: its first refused Manager call is recorded, the second only
         * counted (folded per uid); the operator's reads (ListGrants, Explain) are not changes
         * and leave no record. */
        json_object_put(journal_expect(h, 1, MESSAGE_ID_OPERATOR, "COHERENCYD_OPERATION=ListGrants",
                                       "COHERENCYD_OPERATOR_UID=1235", "COHERENCYD_RESULT=permission-denied", NULL));
        json_object_put(journal_expect(h, 4, MESSAGE_ID_OPERATOR, NULL));

        free(grant);
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

        write_admin_conf(h);
        harness_start(h);
        peer_connect(h, VMM_UID, VMM_GID, &admin, 1, &operator);
        json_object_put(list_grants(operator.conn, MANAGER "ListGrants"));

        for (size_t i = 0; i < sizeof many / sizeof many[0]; i++)
                many[i] = (gid_t) (10000 + i);
        peer_connect(h, OTHER_UID, OTHER_GID, many, sizeof many / sizeof many[0], &crowd);
        json_object_put(vconn_call_error(crowd.conn, MANAGER "ListGrants", NULL, NULL, 0,
                                         BROKER "PermissionDenied"));
        peer_done(&operator);
        peer_done(&crowd);
}

static void test_user_rule_applies_to_that_users_vmms_only(void **state) {
        struct harness *h = *state;
        struct peer nobody;
        char rule[512];
        int group;

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
        p = request_grant(nobody.conn, vm, GRANTED_GROUP, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_string_equal(jstr(p, "reason"), "policy-force-disable");
        assert_string_equal(jstr(p, "rule"), rule);
        json_object_put(p);

        /* Root's VMM is not nobody. */
        p = request_grant_take(h->sync, vm, GRANTED_GROUP, "noncoherent", &group);
        assert_string_equal(jstr(p, "decision"), "granted");
        json_object_put(p);
        close(group);
        close(vm);
        peer_done(&nobody);
}

/* What GetInfo tells one VMM, and what it gets for the device of group 4. */
static void check_vmm(struct harness *h, uid_t uid, gid_t gid, const char *access, const char *access_rule,
                      const char *mode, const char *decision, const char *reason) {
        struct peer vmm;

        peer_connect(h, uid, gid, NULL, 0, &vmm);
        json_object *p = vconn_call(vmm.conn, BROKER "GetInfo", NULL, NULL, 0);
        assert_string_equal(jstr(p, "access"), access);
        assert_string_equal(jstr(p, "accessRule"), access_rule);
        assert_string_equal(jstr(p, "mode"), mode);
        json_object_put(p);

        int vm = sim_object("kvm-vm");
        p = request_grant(vmm.conn, vm, GRANTED_GROUP, "noncoherent");
        if (strcmp(jstr(p, "decision"), decision) != 0 || strcmp(jstr(p, "reason"), reason) != 0)
                fail_msg("uid %u gid %u: expected %s/%s, got %s", (unsigned) uid, (unsigned) gid, decision, reason,
                         json_object_to_json_string(p));
        if (strcmp(decision, "refused") != 0) {
                /* Let go, so that the next VMM may have it. */
                close(vconn_take_fd(vmm.conn, 0));
                json_object_put(release_grant(vmm.conn, jstr(p, "grant")));
        }
        json_object_put(p);
        close(vm);
        peer_done(&vmm);
}

/* Access= by User= and Group=, each matched against the right id (uid 1234 is no gid 1234). */
static void test_access_rules_match_the_vmms_user_and_group_ids(void **state) {
        struct harness *h = *state;
        char user_rule[512], conf_rule[512], group_rule[512];

        harness_write_config(h, CONF, "[Broker]\nMode=automatic\nAccess=deny\n");
        harness_write_config(h, "policy.d/01-vmm-user.policy",
                             "[Match]\n"
                             "User=1234\n"
                             "[Policy]\n"
                             "Access=allow\n");
        harness_write_config(h, "policy.d/02-vmm-group.policy",
                             "[Match]\n"
                             "Group=4321\n"
                             "[Policy]\n"
                             "Mode=force-disable\n");
        harness_start(h);
        harness_rule(h, "policy.d/01-vmm-user.policy", 4, user_rule, sizeof user_rule);
        harness_rule(h, CONF, 3, conf_rule, sizeof conf_rule);
        harness_rule(h, "policy.d/02-vmm-group.policy", 4, group_rule, sizeof group_rule);

        /* The user may, its group forbids WBINVD. */
        check_vmm(h, VMM_UID, VMM_GID, "allow", user_rule, "force-disable", "refused", "policy-force-disable");
        /* The user, in another group. */
        check_vmm(h, VMM_UID, OTHER_GID, "allow", user_rule, "automatic", "granted", "platform-cannot-enforce");
        /* The ids swapped: uid 4321 is not user 1234, gid 1234 not group 4321. */
        check_vmm(h, (uid_t) VMM_GID, (gid_t) VMM_UID, "deny", conf_rule, "automatic", "refused", "access-denied");
        /* Another user in the group: not allowed at all, so access decides first. */
        check_vmm(h, OTHER_UID, VMM_GID, "deny", conf_rule, "force-disable", "refused", "access-denied");

        /* Root is a VMM like any other here. */
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant(h->sync, vm, GRANTED_GROUP, "noncoherent");
        assert_string_equal(jstr(p, "reason"), "access-denied");
        assert_string_equal(jstr(p, "rule"), conf_rule);
        json_object_put(p);
        close(vm);
        json_object_put(journal_expect(h, 3, MESSAGE_ID_REFUSED, "COHERENCYD_REASON=access-denied", NULL));
        json_object_put(journal_expect(h, 1, MESSAGE_ID_REFUSED, "COHERENCYD_PEER_UID=4321", NULL));
}

/* Manager.Explain(params) as root; returns the reply. */
static json_object *explain(struct harness *h, const char *params) {
        return vconn_call(h->sync, MANAGER "Explain", params, NULL, 0);
}

static void explain_error(struct harness *h, const char *params, const char *error, const char *key,
                          const char *value) {
        json_object *p = vconn_call_error(h->sync, MANAGER "Explain", params, NULL, 0, error);
        assert_string_equal(jstr(p, key), value);
        json_object_put(p);
}

static void test_explain_says_what_a_users_vmm_would_get_without_a_vmm(void **state) {
        struct harness *h = *state;
        char nobody_rule[512], unit_rule[512], group_rule[512], conf_rule[512];

        harness_write_config(h, "policy.d/05-nobody.policy",
                             "[Match]\n"
                             "User=nobody\n"
                             "[Policy]\n"
                             "Mode=force-disable\n");
        harness_write_config(h, "policy.d/06-vm1.policy",
                             "[Match]\n"
                             "Unit=qemu-vm1.service\n"
                             "[Policy]\n"
                             "Access=deny\n");
        harness_write_config(h, "policy.d/07-vmm-group.policy",
                             "[Match]\n"
                             "Group=4321\n"
                             "[Policy]\n"
                             "Mode=enable\n");
        harness_start(h);
        harness_rule(h, "policy.d/05-nobody.policy", 4, nobody_rule, sizeof nobody_rule);
        harness_rule(h, "policy.d/06-vm1.policy", 4, unit_rule, sizeof unit_rule);
        harness_rule(h, "policy.d/07-vmm-group.policy", 4, group_rule, sizeof group_rule);
        harness_rule(h, CONF, 8, conf_rule, sizeof conf_rule);
        harness_idle(h);
        unsigned fds = daemon_fds(h, NULL);

        /* root: row 4, from coherencyd.conf; the IOAS is the kernel's default. */
        json_object *p = explain(h, "{\"device\":\"0000:00:05.0\",\"user\":\"root\"}");
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "reason"), "platform-cannot-enforce");
        assert_string_equal(jstr(p, "rule"), conf_rule);
        assert_string_equal(jstr(p, "mode"), "automatic");
        assert_string_equal(jstr(p, "wbinvd"), "allowed");
        assert_string_equal(jstr(p, "kvmAttach"), "add");
        json_object *facts = jmember(p, "facts");
        assert_string_equal(jstr(facts, "slot"), "0000:00:05.0");
        assert_string_equal(jstr(facts, "file"), "vfio-group:4");
        assert_false(jbool(facts, "ioasCoherent"));
        json_object *d = json_object_array_get_idx(jmember(facts, "devices"), 0);
        assert_string_equal(jstr(d, "access"), "allow");
        assert_false(json_object_object_get_ex(p, "grant", NULL));
        json_object_put(p);

        /* nobody: its own rule. */
        p = explain(h, "{\"device\":\"0000:00:05.0\",\"user\":\"nobody\"}");
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_string_equal(jstr(p, "reason"), "policy-force-disable");
        assert_string_equal(jstr(p, "rule"), nobody_rule);
        assert_false(json_object_object_get_ex(p, "kvmAttach", NULL));
        json_object_put(p);

        /* A unit, and a group given by number (uid 1234 has no passwd entry of its own). */
        p = explain(h, "{\"device\":\"0000:00:05.0\",\"user\":\"root\",\"unit\":\"qemu-vm1.service\"}");
        assert_string_equal(jstr(p, "reason"), "access-denied");
        assert_string_equal(jstr(p, "rule"), unit_rule);
        json_object_put(p);
        p = explain(h, "{\"device\":\"0000:00:05.0\",\"user\":\"1234\",\"group\":\"4321\"}");
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "reason"), "policy-enable");
        assert_string_equal(jstr(p, "rule"), group_rule);
        json_object_put(p);
        /* The device's group is the kernel's default IOAS: an enforcing IOMMU makes it row 2 for root. */
        p = explain(h, "{\"device\":\"0000:00:04.0\",\"user\":\"root\",\"group\":\"root\"}");
        assert_string_equal(jstr(p, "decision"), "not-needed");
        assert_string_equal(jstr(p, "reason"), "ioas-enforces-coherency");
        json_object_put(p);

        /* What it cannot tell. */
        explain_error(h, "{\"device\":\"0000:00:05.0\",\"user\":\"no-such-user-of-coherencyd\"}",
                      SERVICE "InvalidParameter", "parameter", "user");
        explain_error(h, "{\"device\":\"0000:00:05.0\"}", SERVICE "InvalidParameter", "parameter", "user");
        explain_error(h, "{\"device\":\"0000:00:05.0\",\"user\":\"nobody\",\"group\":\"no-such-group-of-coherencyd\"}",
                      SERVICE "InvalidParameter", "parameter", "group");
        explain_error(h, "{\"device\":\"../..\",\"user\":\"root\"}", SERVICE "InvalidParameter", "parameter",
                      "device");
        explain_error(h, "{\"device\":\"0000:00:1f.0\",\"user\":\"root\"}", BROKER "NoSuchDevice", "device",
                      "0000:00:1f.0");

        /* No VMM, so nothing decided, held or logged as a decision. */
        expect_daemon_fds_settled(h, NULL, fds);
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 0);
        json_object_put(grants);
        json_object_put(journal_expect(h, 0, MESSAGE_ID_DECISION, NULL));
        json_object_put(journal_expect(h, 0, MESSAGE_ID_NOT_NEEDED, NULL));
        json_object_put(journal_expect(h, 0, MESSAGE_ID_REFUSED, NULL));
}

static void test_explain_by_a_vmm_that_is_no_operator_is_permission_denied(void **state) {
        struct harness *h = *state;
        struct peer vmm;

        harness_start(h);
        peer_connect(h, VMM_UID, VMM_GID, NULL, 0, &vmm);
        json_object_put(vconn_call_error(vmm.conn, MANAGER "Explain", "{\"device\":\"0000:00:05.0\",\"user\":\"1234\"}",
                                         NULL, 0, BROKER "PermissionDenied"));
        /* Even about a user that does not exist: nothing is told before the caller is checked. */
        json_object_put(vconn_call_error(vmm.conn, MANAGER "Explain",
                                         "{\"device\":\"0000:00:05.0\",\"user\":\"no-such-user-of-coherencyd\"}", NULL,
                                         0, BROKER "PermissionDenied"));
        peer_done(&vmm);
}

/* The VMM's own ListGrants holds exactly this one grant, of its pid and uid. */
static void check_only_grant(const struct peer *vmm, uid_t uid, const char *grant) {
        json_object *grants = list_grants(vmm->conn, BROKER "ListGrants");

        assert_int_equal(json_object_array_length(grants), 1);
        json_object *g = json_object_array_get_idx(grants, 0);
        assert_string_equal(jstr(g, "grant"), grant);
        assert_string_equal(jstr(g, "state"), "active");
        assert_int_equal(jint(g, "peerPid"), vmm->pid);
        assert_int_equal(jint(g, "peerUid"), uid);
        json_object_put(grants);
}

static const uid_t two_uids[2] = { VMM_UID, OTHER_UID };

/* Two VMMs of different users, each with a VM and one grant on it (whose group it holds). */
static void two_vmms_with_grants(struct harness *h, struct peer vmm[2], int vm[2], int group[2], char *grant[2]) {
        static const gid_t gids[2] = { VMM_GID, OTHER_GID };

        for (size_t i = 0; i < 2; i++) {
                peer_connect(h, two_uids[i], gids[i], NULL, 0, &vmm[i]);
                vm[i] = sim_object("kvm-vm");
                json_object *p = request_grant_take(vmm[i].conn, vm[i], 3 + i, "noncoherent", &group[i]);
                grant[i] = strdup(jstr(p, "grant"));
                json_object_put(p);
        }
}

static void two_vmms_done(struct peer vmm[2], int vm[2], int group[2], char *grant[2]) {
        for (size_t i = 0; i < 2; i++) {
                peer_done(&vmm[i]);
                close(vm[i]);
                close(group[i]);
                free(grant[i]);
        }
}

static void test_broker_list_grants_shows_only_the_callers_own(void **state) {
        struct harness *h = *state;
        struct peer vmm[2];
        int vm[2], group[2];
        char *grant[2];

        harness_start(h);
        two_vmms_with_grants(h, vmm, vm, group, grant);
        for (size_t i = 0; i < 2; i++)
                check_only_grant(&vmm[i], two_uids[i], grant[i]);
        /* The operator sees both. */
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 2);
        json_object_put(grants);
        two_vmms_done(vmm, vm, group, grant);
}

static void test_releasing_another_vmms_grant_is_no_such_grant(void **state) {
        struct harness *h = *state;
        struct peer vmm[2];
        int vm[2], group[2];
        char *grant[2], params[128];

        harness_start(h);
        two_vmms_with_grants(h, vmm, vm, group, grant);
        snprintf(params, sizeof params, "{\"grant\":\"%s\"}", grant[0]);
        json_object *p = vconn_call_error(vmm[1].conn, BROKER "ReleaseGrant", params, NULL, 0, BROKER "NoSuchGrant");
        assert_string_equal(jstr(p, "grant"), grant[0]);
        json_object_put(p);

        /* Still there, still active, still the other VMM's group: nobody else gets it. */
        check_only_grant(&vmm[0], VMM_UID, grant[0]);
        int other_vm = sim_object("kvm-vm");
        json_object_put(request_grant_error(vmm[1].conn, other_vm, 3, "noncoherent", BROKER "DeviceBusy"));
        close(other_vm);
        two_vmms_done(vmm, vm, group, grant);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_nobody_is_denied_every_manager_method_but_may_use_the_broker),
                HARNESS_TEST(test_admin_group_member_may_list_everyones_grants_explain_and_revoke),
                HARNESS_TEST(test_vmm_in_hundreds_of_groups_is_not_taken_for_an_operator),
                HARNESS_TEST(test_user_rule_applies_to_that_users_vmms_only),
                HARNESS_TEST(test_access_rules_match_the_vmms_user_and_group_ids),
                HARNESS_TEST(test_explain_says_what_a_users_vmm_would_get_without_a_vmm),
                HARNESS_TEST(test_explain_by_a_vmm_that_is_no_operator_is_permission_denied),
                HARNESS_TEST(test_broker_list_grants_shows_only_the_callers_own),
                HARNESS_TEST(test_releasing_another_vmms_grant_is_no_such_grant),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
