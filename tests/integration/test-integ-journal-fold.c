/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Records are never silently lost, and one client cannot flood the journal:
 * repeated refusals of one uid are one full record and, at the end of
 * RefusalLogIntervalSec=, one "N more refused for uid U" record; other uids
 * are counted apart; grants and ends are never folded; Monitor sees every
 * decision.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#define MESSAGE_ID_REFUSED_FOLDED "9d5a6eea0174432681bdb0777a2e9c5c"

#define CONF "coherencyd.conf"
/* Long enough for every request below to fall within the first refusal's interval,
 * even with the daemon under valgrind on two shared cores (checked, not assumed). */
#define INTERVAL_SEC 6
#define REFUSED_GROUP 5 /* the demo's NVMe: Mode=force-disable for every VMM */
#define GRANTED_GROUP 4 /* behind the IOMMU that cannot enforce: row 4 */

#define VMM_UID ((uid_t) 1234)
#define VMM_GID ((gid_t) 4321)
#define OTHER_UID ((uid_t) 1235)
#define OTHER_GID ((gid_t) 4322)

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_conf(struct harness *h, unsigned interval_sec) {
        char conf[256];

        snprintf(conf, sizeof conf, "[Broker]\nAccess=allow\nMode=automatic\nRefusalLogIntervalSec=%u\n", interval_sec);
        harness_write_config(h, CONF, conf);
}

static void refuse(struct vconn *c, int vm, size_t n) {
        for (size_t i = 0; i < n; i++) {
                json_object *p = request_grant(c, vm, REFUSED_GROUP, "noncoherent");
                assert_string_equal(jstr(p, "decision"), "refused");
                assert_string_equal(jstr(p, "reason"), "policy-force-disable");
                json_object_put(p);
        }
}

/* A grant of the group of GRANTED_GROUP, let go of again at once. */
static void grant_and_release(struct vconn *c, int vm) {
        int group;
        json_object *p = request_grant_take(c, vm, GRANTED_GROUP, "noncoherent", &group);
        assert_string_equal(jstr(p, "decision"), "granted");
        close(group);
        json_object_put(release_grant(c, jstr(p, "grant")));
        json_object_put(p);
}

static void expect_records(struct harness *h, size_t n, const char *message_id, uid_t uid) {
        char match[64];
        snprintf(match, sizeof match, "COHERENCYD_PEER_UID=%u", (unsigned) uid);
        json_object_put(journal_expect(h, n, message_id, match, NULL));
}

/* The one summary of uid: its count, in its field and its message. */
static void expect_summary(struct harness *h, uid_t uid, unsigned folded) {
        char match[64], count[32], message[96];

        snprintf(match, sizeof match, "COHERENCYD_PEER_UID=%u", (unsigned) uid);
        json_object *records = journal_expect_eventually(h, 1, MESSAGE_ID_REFUSED_FOLDED, match, NULL);
        json_object *r = json_object_array_get_idx(records, 0);
        snprintf(count, sizeof count, "%u", folded);
        assert_string_equal(journal_field(r, "COHERENCYD_FOLDED"), count);
        assert_string_equal(journal_field(r, "COHERENCYD_DECISION"), "refused");
        assert_string_equal(journal_field(r, "PRIORITY"), "5");
        snprintf(message, sizeof message, "%u more refused for uid %u", folded, (unsigned) uid);
        if (!strstr(journal_field(r, "MESSAGE"), message))
                fail_msg("summary without '%s': %s", message, journal_field(r, "MESSAGE"));
        json_object_put(records);
}

/* The next event of a Monitor stream, whatever it is. */
static json_object *next_event(struct vconn *monitor) {
        struct coh_reply reply;

        if (vconn_recv(monitor, &reply) < 0)
                fail_msg("coherencyd closed the Monitor stream");
        if (reply.error || !reply.continues)
                fail_msg("Monitor: %s", json_object_to_json_string(reply.root));
        json_object *p = json_object_get(reply.parameters);
        coh_reply_done(&reply);
        return p;
}

static void test_repeated_refusals_of_one_uid_are_one_record_and_one_count(void **state) {
        struct harness *h = *state;
        const size_t n_vmm = 20, n_other = 5, n_grants = 3;
        struct peer vmm, other;

        write_conf(h, INTERVAL_SEC);
        harness_start(h);
        struct vconn *monitor = vconn_connect(h);
        vconn_send(monitor, MANAGER "Monitor", NULL, NULL, 0, true);
        harness_sync(h);
        peer_connect(h, VMM_UID, VMM_GID, NULL, 0, &vmm);
        peer_connect(h, OTHER_UID, OTHER_GID, NULL, 0, &other);
        int vm = sim_object("kvm-vm");

        int64_t start = now_ms();
        /* One uid again and again, its grants in between; another uid among them. */
        refuse(vmm.conn, vm, n_vmm / 2);
        for (size_t i = 0; i < n_grants; i++)
                grant_and_release(vmm.conn, vm);
        refuse(other.conn, vm, n_other);
        refuse(vmm.conn, vm, n_vmm - n_vmm / 2);

        /* Within the interval: the first refusal of each uid in full, every grant and end. */
        expect_records(h, 1, MESSAGE_ID_REFUSED, VMM_UID);
        expect_records(h, 1, MESSAGE_ID_REFUSED, OTHER_UID);
        expect_records(h, n_grants, MESSAGE_ID_DECISION, VMM_UID);
        json_object_put(journal_expect(h, n_grants, MESSAGE_ID_GRANT_END, "COHERENCYD_END=release", NULL));
        json_object_put(journal_expect(h, 0, MESSAGE_ID_REFUSED_FOLDED, NULL));
        if (now_ms() - start >= INTERVAL_SEC * 1000)
                fail_msg("the requests took %lld ms, longer than the interval: nothing can be judged",
                         (long long) (now_ms() - start));

        /* Monitor saw every decision, folded or not, in order (and the grants' ends). */
        for (size_t i = 0; i < n_vmm + n_other + n_grants;) {
                json_object *e = next_event(monitor);
                if (strcmp(jstr(e, "event"), "decision") == 0) {
                        bool granted = i >= n_vmm / 2 && i < n_vmm / 2 + n_grants;
                        assert_string_equal(jstr(e, "decision"), granted ? "granted" : "refused");
                        assert_int_equal(jint(e, "peerUid"), i < n_vmm / 2 + n_grants ? VMM_UID
                                                             : i < n_vmm / 2 + n_grants + n_other ? OTHER_UID
                                                                                                  : VMM_UID);
                        i++;
                }
                json_object_put(e);
        }

        /* The interval's end: one count per uid that was folded, each its own. */
        expect_summary(h, VMM_UID, (unsigned) n_vmm - 1);
        expect_summary(h, OTHER_UID, (unsigned) n_other - 1);
        json_object_put(journal_expect(h, 2, MESSAGE_ID_REFUSED_FOLDED, NULL));
        /* Nothing was recorded twice. */
        expect_records(h, 1, MESSAGE_ID_REFUSED, VMM_UID);
        expect_records(h, 1, MESSAGE_ID_REFUSED, OTHER_UID);

        /* The next interval starts with a full record again. */
        refuse(vmm.conn, vm, 1);
        expect_records(h, 2, MESSAGE_ID_REFUSED, VMM_UID);

        close(vm);
        peer_done(&vmm);
        peer_done(&other);
        vconn_free(monitor);
}

/* Manager calls refused to a non-operator: the audit trail records the first in full and
 * counts the rest of the interval (COHERENCYD_REFUSED=Manager calls), apart from the same
 * uid's refused decisions. */
static void test_refused_manager_calls_are_recorded_and_folded(void **state) {
        struct harness *h = *state;
        const size_t n = 6;
        struct peer outsider;
        char match[64];

        write_conf(h, INTERVAL_SEC);
        harness_start(h);
        peer_connect(h, OTHER_UID, OTHER_GID, NULL, 0, &outsider);
        int vm = sim_object("kvm-vm");
        int64_t start = now_ms();
        for (size_t i = 0; i < n; i++)
                json_object_put(vconn_call_error(outsider.conn, i % 2 ? MANAGER "RevokeGrant" : MANAGER "ListGrants",
                                                 i % 2 ? "{\"grant\":\"g-0000000000000000\"}" : NULL, NULL, 0,
                                                 BROKER "PermissionDenied"));
        refuse(outsider.conn, vm, 1);
        snprintf(match, sizeof match, "COHERENCYD_OPERATOR_UID=%u", (unsigned) OTHER_UID);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_OPERATOR, match, "COHERENCYD_OPERATION=ListGrants",
                                       "COHERENCYD_RESULT=permission-denied", NULL));
        json_object_put(journal_expect(h, 1, MESSAGE_ID_OPERATOR, NULL));
        /* The refused decision is a kind of its own: recorded in full. */
        expect_records(h, 1, MESSAGE_ID_REFUSED, OTHER_UID);
        if (now_ms() - start >= INTERVAL_SEC * 1000)
                fail_msg("the requests took %lld ms, longer than the interval: nothing can be judged",
                         (long long) (now_ms() - start));

        snprintf(match, sizeof match, "COHERENCYD_PEER_UID=%u", (unsigned) OTHER_UID);
        json_object *records = journal_expect_eventually(h, 1, MESSAGE_ID_REFUSED_FOLDED, match,
                                                         "COHERENCYD_REFUSED=Manager calls", NULL);
        json_object *r = json_object_array_get_idx(records, 0);
        assert_string_equal(journal_field(r, "COHERENCYD_FOLDED"), "5");
        json_object_put(records);
        /* No operator record was written for the folded ones, and the decision had no summary. */
        json_object_put(journal_expect(h, 1, MESSAGE_ID_OPERATOR, NULL));
        json_object_put(journal_expect(h, 1, MESSAGE_ID_REFUSED_FOLDED, NULL));
        close(vm);
        peer_done(&outsider);
}

/* A uid refused once is one record and no summary: nothing was folded. */
static void test_single_refusal_has_no_summary(void **state) {
        struct harness *h = *state;
        struct peer vmm, other;

        write_conf(h, 3);
        harness_start(h);
        peer_connect(h, VMM_UID, VMM_GID, NULL, 0, &vmm);
        peer_connect(h, OTHER_UID, OTHER_GID, NULL, 0, &other);
        int vm = sim_object("kvm-vm");
        int64_t start = now_ms();
        refuse(vmm.conn, vm, 1);
        refuse(other.conn, vm, 3);
        if (now_ms() - start >= 3000)
                fail_msg("the requests took %lld ms, longer than the interval: nothing can be judged",
                         (long long) (now_ms() - start));
        /* The other's summary proves the interval ended; vmm's refusal had none. */
        expect_summary(h, OTHER_UID, 2);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_REFUSED_FOLDED, NULL));
        expect_records(h, 1, MESSAGE_ID_REFUSED, VMM_UID);
        close(vm);
        peer_done(&vmm);
        peer_done(&other);
}

/* RefusalLogIntervalSec=0: every refusal in full, no summary. */
static void test_interval_zero_records_every_refusal(void **state) {
        struct harness *h = *state;
        struct peer vmm;

        write_conf(h, 0);
        harness_start(h);
        peer_connect(h, VMM_UID, VMM_GID, NULL, 0, &vmm);
        int vm = sim_object("kvm-vm");
        refuse(vmm.conn, vm, 5);
        expect_records(h, 5, MESSAGE_ID_REFUSED, VMM_UID);
        json_object_put(journal_expect(h, 0, MESSAGE_ID_REFUSED_FOLDED, NULL));
        close(vm);
        peer_done(&vmm);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_repeated_refusals_of_one_uid_are_one_record_and_one_count),
                HARNESS_TEST(test_refused_manager_calls_are_recorded_and_folded),
                HARNESS_TEST(test_single_refusal_has_no_summary),
                HARNESS_TEST(test_interval_zero_records_every_refusal),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
