/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The decision table (DESIGN.md §2) as an operator sees it with the demo
 * policy: the reply to an unprivileged VMM, what the simulated KVM did to the
 * VM, which descriptors the daemon kept, and the journal record.
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

/* One request and everything it must produce. */
struct row {
        unsigned group;
        const char *container;    /* "coherent", "noncoherent", or NULL: no iommu descriptor */
        const char *decision, *reason, *mode;
        const char *rule_file;    /* relative to the config directory; NULL: "default" */
        unsigned rule_line;
        const char *slot, *vendor, *iommu;
        bool iommu_enforces, ioas_coherent;
        bool attached;            /* and so a grant id */
        const char *vm_wbinvd;
        const char *attached_line; /* the VM memfd's line for the file, when attached */
        long noncoherent_dma;
};

#define MELLANOX "policy.d/10-mellanox-coherent.policy"
#define AMD "policy.d/20-amd-gpu-enable.policy"
#define NVME "policy.d/30-nvme-force-disable.policy"
#define CONF "coherencyd.conf"

static const struct row row1_coherent_only_device = {
        .group = 1, .container = "coherent",
        .decision = "not-needed", .reason = "device-coherent-only", .mode = "automatic",
        .rule_file = MELLANOX, .rule_line = 6,
        .slot = "0000:00:02.0", .vendor = "0x15b3", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = true,
        .attached = true, .vm_wbinvd = "noop",
        .attached_line = "attached=vfio-group:1 coherent", .noncoherent_dma = 0,
};

/* Not needed, but the kernel would not see the file as coherent: nothing is attached. */
static const struct row row1_coherent_only_device_noncoherent_ioas = {
        .group = 1, .container = "noncoherent",
        .decision = "not-needed", .reason = "device-coherent-only", .mode = "automatic",
        .rule_file = MELLANOX, .rule_line = 6,
        .slot = "0000:00:02.0", .vendor = "0x15b3", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = false,
        .attached = false, .vm_wbinvd = "noop",
};

static const struct row row2_ioas_enforces = {
        .group = 2, .container = NULL,
        .decision = "not-needed", .reason = "ioas-enforces-coherency", .mode = "automatic",
        .rule_file = NULL,
        .slot = "0000:00:03.0", .vendor = "0x10de", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = true,
        .attached = true, .vm_wbinvd = "noop",
        .attached_line = "attached=vfio-group:2 coherent", .noncoherent_dma = 0,
};

static const struct row row3_policy_enable = {
        .group = 3, .container = "noncoherent",
        .decision = "granted", .reason = "policy-enable", .mode = "enable",
        .rule_file = AMD, .rule_line = 7,
        .slot = "0000:00:04.0", .vendor = "0x1002", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = false,
        .attached = true, .vm_wbinvd = "emulated",
        .attached_line = "attached=vfio-group:3 noncoherent", .noncoherent_dma = 1,
};

static const struct row row4_platform_cannot_enforce = {
        .group = 4, .container = NULL,
        .decision = "granted", .reason = "platform-cannot-enforce", .mode = "automatic",
        .rule_file = CONF, .rule_line = 4,
        .slot = "0000:00:05.0", .vendor = "0x1234", .iommu = "dmar1",
        .iommu_enforces = false, .ioas_coherent = false,
        .attached = true, .vm_wbinvd = "emulated",
        .attached_line = "attached=vfio-group:4 noncoherent", .noncoherent_dma = 1,
};

static const struct row row5_coherent_ioas_required = {
        .group = 2, .container = "noncoherent",
        .decision = "refused", .reason = "coherent-ioas-required", .mode = "automatic",
        .rule_file = CONF, .rule_line = 4,
        .slot = "0000:00:03.0", .vendor = "0x10de", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = false,
        .attached = false, .vm_wbinvd = "noop",
};

static const struct row row6_policy_force_disable = {
        .group = 5, .container = "noncoherent",
        .decision = "refused", .reason = "policy-force-disable", .mode = "force-disable",
        .rule_file = NVME, .rule_line = 6,
        .slot = "0000:00:06.0", .vendor = "0x144d", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = false,
        .attached = false, .vm_wbinvd = "noop",
};

static void check_device_facts(json_object *f, const struct row *row) {
        assert_string_equal(jstr(f, "slot"), row->slot);
        assert_string_equal(jstr(f, "vendor"), row->vendor);
        assert_string_equal(jstr(f, "iommu"), row->iommu);
        assert_int_equal(jint(f, "iommuGroup"), row->group);
        assert_int_equal(jbool(f, "iommuEnforces"), row->iommu_enforces);
        assert_int_equal(jbool(f, "ioasCoherent"), row->ioas_coherent);
}

static void check_reply(struct harness *h, json_object *p, const struct row *row) {
        char rule[512];
        json_object *grant = NULL;

        assert_string_equal(jstr(p, "decision"), row->decision);
        assert_string_equal(jstr(p, "reason"), row->reason);
        assert_string_equal(jstr(p, "rule"),
                            row->rule_file ? harness_rule(h, row->rule_file, row->rule_line, rule, sizeof rule)
                                           : "default");
        assert_string_equal(jstr(p, "mode"), row->mode);
        assert_string_equal(jstr(p, "vmWbinvd"), row->vm_wbinvd);
        assert_int_equal(jbool(p, "attached"), row->attached);
        /* A grant id exactly when the daemon holds something for the request. */
        json_object_object_get_ex(p, "grant", &grant);
        assert_int_equal(grant != NULL, row->attached);

        json_object *facts = jmember(p, "facts");
        check_device_facts(facts, row);
        json_object *devices = jmember(facts, "devices");
        assert_int_equal(json_object_array_length(devices), 1);
        check_device_facts(json_object_array_get_idx(devices, 0), row);
}

/* What the simulated KVM did, and what the daemon kept for it. */
static void check_kvm(struct harness *h, int vm, const struct row *row) {
        if (!row->attached) {
                char state[256];
                sim_vm_state(vm, state, sizeof state);
                assert_string_equal(state, ""); /* the VM was never touched */
                expect_daemon_fds(h, FD_SIM_VM, 0);
                expect_daemon_fds(h, FD_SIM_GROUP, 0);
                return;
        }
        assert_true(sim_vm_has_line(vm, "kvm-vfio=coherencyd"));
        assert_true(sim_vm_has_line(vm, row->attached_line));
        assert_int_equal(sim_vm_count_lines(vm, "attached="), 1);
        assert_int_equal(sim_vm_noncoherent_dma(vm), row->noncoherent_dma);
        expect_daemon_fds(h, FD_SIM_GROUP, 1);
}

static void check_journal(struct harness *h, json_object *reply, pid_t client, const struct row *row) {
        char buf[32];
        json_object *records = journal_expect(h, 1, MESSAGE_ID_DECISION, NULL);
        json_object *r = json_object_array_get_idx(records, 0);
        json_object *grant;

        assert_string_equal(journal_field(r, "COHERENCYD_DECISION"), row->decision);
        assert_string_equal(journal_field(r, "COHERENCYD_REASON"), row->reason);
        assert_string_equal(journal_field(r, "COHERENCYD_MODE"), row->mode);
        assert_string_equal(journal_field(r, "COHERENCYD_RULE"), jstr(reply, "rule"));
        assert_string_equal(journal_field(r, "COHERENCYD_SLOT"), row->slot);
        snprintf(buf, sizeof buf, "%u", row->group);
        assert_string_equal(journal_field(r, "COHERENCYD_IOMMU_GROUP"), buf);
        assert_string_equal(journal_field(r, "COHERENCYD_VM_WBINVD"), row->vm_wbinvd);
        assert_string_equal(journal_field(r, "COHERENCYD_PEER_UID"), "65534");
        snprintf(buf, sizeof buf, "%d", (int) client);
        assert_string_equal(journal_field(r, "OBJECT_PID"), buf);
        if (json_object_object_get_ex(reply, "grant", &grant))
                assert_string_equal(journal_field(r, "COHERENCYD_GRANT"), json_object_get_string(grant));
        else
                assert_null(journal_field(r, "COHERENCYD_GRANT"));
        /* Refusals at notice or higher, so an operator filtering on -p notice sees them. */
        if (strcmp(row->decision, "refused") == 0)
                assert_true(atoi(journal_field(r, "PRIORITY")) <= 5);
        json_object_put(records);
}

static void check_row(struct harness *h, const struct row *row) {
        struct peer vmm;

        harness_start(h);
        peer_connect_nobody(h, &vmm);
        int vm = sim_object("kvm-vm");

        json_object *p = request_grant(vmm.conn, vm, row->group, row->container);
        check_reply(h, p, row);
        harness_sync(h); /* the daemon is done with the request's descriptors */
        check_kvm(h, vm, row);
        check_journal(h, p, vmm.pid, row);

        json_object_put(p);
        close(vm);
        peer_done(&vmm);
}

static void test_row1_coherent_only_nic_is_not_needed_and_attached(void **state) {
        check_row(*state, &row1_coherent_only_device);
}

static void test_row1_coherent_only_nic_in_noncoherent_ioas_is_not_needed_and_not_attached(void **state) {
        check_row(*state, &row1_coherent_only_device_noncoherent_ioas);
}

static void test_row2_device_in_enforcing_ioas_is_not_needed_and_attached(void **state) {
        check_row(*state, &row2_ioas_enforces);
}

static void test_row3_policy_enable_grants_wbinvd_from_the_amd_rule(void **state) {
        check_row(*state, &row3_policy_enable);
}

static void test_row4_iommu_that_cannot_enforce_grants_wbinvd_from_coherencyd_conf(void **state) {
        check_row(*state, &row4_platform_cannot_enforce);
}

static void test_row5_noncoherent_ioas_on_enforcing_iommu_is_refused(void **state) {
        check_row(*state, &row5_coherent_ioas_required);
}

static void test_row6_force_disabled_nvme_is_refused(void **state) {
        check_row(*state, &row6_policy_force_disable);
}

/* The group's devices as the reply lists them: slot and noSnoop of each. */
static void check_group_devices(json_object *facts, const char *const slots[2], const char *const nosnoop[2]) {
        json_object *devices = jmember(facts, "devices");

        assert_int_equal(json_object_array_length(devices), 2);
        for (size_t i = 0; i < 2; i++) {
                json_object *d = json_object_array_get_idx(devices, i);
                assert_string_equal(jstr(d, "slot"), slots[i]);
                assert_string_equal(jstr(d, "noSnoop"), nosnoop[i]);
                assert_string_equal(jstr(d, "iommu"), "dmar1");
                assert_int_equal(jint(d, "iommuGroup"), 6);
        }
}

static void test_group_with_two_devices_lists_both(void **state) {
        struct harness *h = *state;
        static const char *const slots[2] = { "0000:00:07.0", "0000:00:07.1" };
        static const char *const nosnoop[2] = { "capable", "capable" };

        harness_start(h);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant(h->sync, vm, 6, NULL);
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "reason"), "platform-cannot-enforce");
        check_group_devices(jmember(p, "facts"), slots, nosnoop);
        /* One file, however many devices it carries. */
        assert_true(sim_vm_has_line(vm, "attached=vfio-group:6 noncoherent"));
        assert_int_equal(sim_vm_noncoherent_dma(vm), 1);
        json_object_put(p);
        close(vm);
}

static void test_group_is_decided_on_its_least_coherent_device(void **state) {
        struct harness *h = *state;
        static const char *const slots[2] = { "0000:00:07.0", "0000:00:07.1" };
        static const char *const nosnoop[2] = { "hardwired-off", "capable" };
        char rule[512];

        /* The GPU function is coherent-only; its audio function is not, and decides. */
        harness_write_config(h, "policy.d/40-gpu-coherent.policy",
                             "[Match]\n"
                             "Slot=0000:00:07.0\n"
                             "[Policy]\n"
                             "NoSnoop=hardwired-off\n");
        harness_start(h);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant(h->sync, vm, 6, NULL);
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "reason"), "platform-cannot-enforce");
        assert_string_equal(jstr(p, "rule"), harness_rule(h, CONF, 4, rule, sizeof rule));
        json_object *facts = jmember(p, "facts");
        assert_string_equal(jstr(facts, "slot"), "0000:00:07.1");
        check_group_devices(facts, slots, nosnoop);
        json_object *gpu = json_object_array_get_idx(jmember(facts, "devices"), 0);
        assert_string_equal(jstr(gpu, "noSnoopRule"),
                            harness_rule(h, "policy.d/40-gpu-coherent.policy", 4, rule, sizeof rule));
        json_object_put(p);
        close(vm);
}

/* A VFIO device cdev in an iommufd IOAS (Linux >= 6.6) is decided like its group in a container. */
static void test_vfio_device_cdev_in_iommufd_is_decided_and_attached_like_a_group(void **state) {
        struct harness *h = *state;

        harness_start(h);
        int fds[3] = { sim_object("kvm-vm"), sim_object("vfio-device:0000:00:04.0"),
                       sim_object("iommufd:noncoherent") };
        json_object *p = vconn_call(h->sync, BROKER "RequestGrant", "{\"vm\":0,\"device\":1,\"iommu\":2}", fds, 3);
        check_reply(h, p, &row3_policy_enable);
        assert_string_equal(jstr(jmember(p, "facts"), "file"), "vfio-device:0000:00:04.0");
        assert_true(sim_vm_has_line(fds[0], "attached=vfio-device:0000:00:04.0 noncoherent"));
        assert_int_equal(sim_vm_noncoherent_dma(fds[0]), 1);
        json_object_put(p);
        for (size_t i = 0; i < 3; i++)
                close(fds[i]);
}

static void test_probe_decides_without_side_effects(void **state) {
        struct harness *h = *state;
        char rule[512];

        harness_start(h);
        int vm = sim_object("kvm-vm");
        json_object *p = probe(h->sync, 3, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "reason"), "policy-enable");
        assert_string_equal(jstr(p, "rule"), harness_rule(h, AMD, 7, rule, sizeof rule));
        assert_false(json_object_object_get_ex(p, "grant", NULL));
        json_object_put(p);

        /* Nothing held, nothing attached, nothing logged as a decision. */
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 0);
        json_object_put(grants);
        expect_daemon_fds(h, FD_SIM_GROUP, 0);
        assert_true(sim_vm_noncoherent_dma(vm) < 0);
        json_object_put(journal_expect(h, 0, MESSAGE_ID_DECISION, NULL));
        close(vm);
}

static void test_probe_claiming_coherent_ioas_on_iommu_that_cannot_enforce_is_unsupported(void **state) {
        struct harness *h = *state;

        harness_start(h);
        int group = sim_object("vfio-group:4");
        json_object *p = vconn_call_error(h->sync, BROKER "Probe", "{\"device\":0,\"ioasCoherent\":true}", &group, 1,
                                          BROKER "CoherencyUnsupported");
        assert_string_equal(jstr(p, "parameter"), "ioasCoherent");
        json_object_put(p);
        close(group);
}

static void test_request_with_coherent_container_on_iommu_that_cannot_enforce_is_unsupported(void **state) {
        struct harness *h = *state;

        harness_start(h);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_error(h->sync, vm, 4, "coherent", BROKER "CoherencyUnsupported");
        assert_string_equal(jstr(p, "parameter"), "iommu");
        json_object_put(p);
        harness_sync(h);
        expect_daemon_fds(h, FD_SIM_VM, 0);
        close(vm);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_row1_coherent_only_nic_is_not_needed_and_attached),
                HARNESS_TEST(test_row1_coherent_only_nic_in_noncoherent_ioas_is_not_needed_and_not_attached),
                HARNESS_TEST(test_row2_device_in_enforcing_ioas_is_not_needed_and_attached),
                HARNESS_TEST(test_row3_policy_enable_grants_wbinvd_from_the_amd_rule),
                HARNESS_TEST(test_row4_iommu_that_cannot_enforce_grants_wbinvd_from_coherencyd_conf),
                HARNESS_TEST(test_row5_noncoherent_ioas_on_enforcing_iommu_is_refused),
                HARNESS_TEST(test_row6_force_disabled_nvme_is_refused),
                HARNESS_TEST(test_group_with_two_devices_lists_both),
                HARNESS_TEST(test_group_is_decided_on_its_least_coherent_device),
                HARNESS_TEST(test_vfio_device_cdev_in_iommufd_is_decided_and_attached_like_a_group),
                HARNESS_TEST(test_probe_decides_without_side_effects),
                HARNESS_TEST(test_probe_claiming_coherent_ioas_on_iommu_that_cannot_enforce_is_unsupported),
                HARNESS_TEST(test_request_with_coherent_container_on_iommu_that_cannot_enforce_is_unsupported),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
