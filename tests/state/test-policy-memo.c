/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * policy-memo.c: a result remembered is the one coh_policy_evaluate() gives
 * for exactly that device and that peer, never another's: a rule about a
 * user, a group, a unit or a device's id answers each asker as it would
 * without the memo.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "policy-memo.h"

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

static struct coh_policy *load(void) {
        static const char conf[] = "[Broker]\nAccess=deny\n";
        static const char by_user[] = "[Match]\nUser=1000\n[Policy]\nAccess=allow\n";
        static const char by_group[] = "[Match]\nGroup=2000\n[Policy]\nAccess=allow\n";
        static const char by_unit[] = "[Match]\nUnit=vm-*.service\n[Policy]\nAccess=allow\n";
        static const char by_vendor[] = "[Match]\nVendor=10de\n[Policy]\nAccess=allow\n";
        const struct coh_policy_file c = { "coherencyd.conf", conf, sizeof conf - 1 };
        const struct coh_policy_file rules[] = {
                { "10-user.policy", by_user, sizeof by_user - 1 },
                { "20-group.policy", by_group, sizeof by_group - 1 },
                { "30-unit.policy", by_unit, sizeof by_unit - 1 },
                { "40-vendor.policy", by_vendor, sizeof by_vendor - 1 },
        };
        struct coh_policy_error err;
        struct coh_policy *p = NULL;
        if (coh_policy_load_from_memory(&c, rules, 4, NULL, NULL, &p, &err) < 0)
                fail_msg("%s:%u: %s", err.file, err.line, err.message);
        return p;
}

static void expect(struct coh_policy_memo *m, const struct coh_policy *p, const struct coh_device_facts *d,
                   const struct coh_peer *peer, enum coh_access access) {
        struct coh_policy_result with, without;
        coh_policy_memo_evaluate(m, p, d, peer, &with);
        coh_policy_evaluate(p, d, peer, &without);
        assert_int_equal(with.access, access);
        assert_memory_equal(&with, &without, sizeof with);
}

static void test_each_asker_answered_as_without_memo(void **state) {
        struct coh_policy *p = load();
        struct coh_policy_memo m = {};
        const gid_t groups_2000[] = { 2000 }, groups_2001[] = { 2001 };
        const struct coh_peer peers[] = {
                { .pid = 10, .uid = 1000, .gid = 1000 },                      /* by uid */
                { .pid = 11, .uid = 1001, .gid = 1001 },                      /* nothing matches */
                { .pid = 12, .uid = 1001, .gid = 1001, .groups = groups_2000, .n_groups = 1 },
                { .pid = 13, .uid = 1001, .gid = 1001, .groups = groups_2001, .n_groups = 1 },
                { .pid = 14, .uid = 1001, .gid = 2000 },                      /* primary group */
                { .pid = 15, .uid = 1001, .gid = 1001, .unit = "vm-a.service" },
                { .pid = 16, .uid = 1001, .gid = 1001, .unit = "other.service" },
        };
        const enum coh_access access[] = {
                COH_ACCESS_ALLOW, COH_ACCESS_DENY, COH_ACCESS_ALLOW, COH_ACCESS_DENY,
                COH_ACCESS_ALLOW, COH_ACCESS_ALLOW, COH_ACCESS_DENY,
        };
        /* Twice round: the second time every answer comes from the memo. */
        for (int round = 0; round < 2; round++)
                for (size_t i = 0; i < sizeof peers / sizeof peers[0]; i++)
                        expect(&m, p, &device, &peers[i], access[i]);
        assert_int_equal(m.n, sizeof peers / sizeof peers[0]);

        /* The same asker, another device (or the same one with other facts). */
        struct coh_device_facts nvidia = device;
        snprintf(nvidia.vendor, sizeof nvidia.vendor, "0x10de");
        expect(&m, p, &nvidia, &peers[1], COH_ACCESS_ALLOW);
        expect(&m, p, &device, &peers[1], COH_ACCESS_DENY);

        /* Dropped (another policy): nothing is left. */
        coh_policy_memo_drop(&m);
        assert_int_equal(m.n, 0);
        expect(&m, p, &device, &peers[0], COH_ACCESS_ALLOW);
        coh_policy_memo_drop(&m);
        coh_policy_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_each_asker_answered_as_without_memo),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
