/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The decision table (DESIGN.md §2) as an operator sees it with the demo
 * policy: the reply to an unprivileged VMM, the group descriptor handed over
 * exactly when the decision is not a refusal, what the daemon kept for it,
 * and the journal record (one MESSAGE_ID per decision).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

/* A VMM whose uid and gid differ from each other and from root's and nobody's. */
#define VMM_UID ((uid_t) 1234)
#define VMM_GID ((gid_t) 4321)

/* One request and everything it must produce. */
struct row {
        unsigned group;
        const char *container;    /* "coherent" or "noncoherent" */
        const char *decision, *reason, *mode;
        const char *rule_file;    /* relative to the config directory; NULL: "default" */
        unsigned rule_line;
        const char *slot, *vendor, *iommu;
        bool iommu_enforces, ioas_coherent;
        const char *access;       /* the deciding device's Access= */
        const char *access_file;  /* its rule; NULL: "default" */
        unsigned access_line;
        const char *wbinvd;       /* "allowed" or "none" */
        const char *kvm_attach;   /* "add", "skip", or NULL: refused, nothing handed over */
        const char *vm_wbinvd;
};

#define MGMT_DENY "policy.d/05-management-nic-deny.policy"
#define MELLANOX "policy.d/10-mellanox-coherent.policy"
#define AMD "policy.d/20-amd-gpu-enable.policy"
#define NVME "policy.d/30-nvme-force-disable.policy"
#define SLOT9 "policy.d/40-nic-slot9-force-disable.policy"
#define CONF "coherencyd.conf"
#define CONF_ACCESS_LINE 6
#define CONF_MODE_LINE 8

#define ALLOWED_BY_CONF .access = "allow", .access_file = CONF, .access_line = CONF_ACCESS_LINE

static const struct row row0_access_denied = {
        .group = 9, .container = "coherent",
        .decision = "refused", .reason = "access-denied", .mode = "automatic",
        .rule_file = MGMT_DENY, .rule_line = 6,
        .slot = "0000:00:0a.0", .vendor = "0x8086", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = true,
        .access = "deny", .access_file = MGMT_DENY, .access_line = 6,
        .wbinvd = "none", .kvm_attach = NULL, .vm_wbinvd = "noop",
};

static const struct row row1_coherent_only_device = {
        .group = 1, .container = "coherent",
        .decision = "not-needed", .reason = "device-coherent-only", .mode = "automatic",
        .rule_file = MELLANOX, .rule_line = 6,
        .slot = "0000:00:02.0", .vendor = "0x15b3", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = true, ALLOWED_BY_CONF,
        .wbinvd = "none", .kvm_attach = "add", .vm_wbinvd = "noop",
};

/* Row 1b: not needed, but KVM would see the file as non-coherent: handed over, not to be added. */
static const struct row row1b_coherent_only_device_noncoherent_ioas = {
        .group = 1, .container = "noncoherent",
        .decision = "not-needed", .reason = "device-coherent-only", .mode = "automatic",
        .rule_file = MELLANOX, .rule_line = 6,
        .slot = "0000:00:02.0", .vendor = "0x15b3", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = false, ALLOWED_BY_CONF,
        .wbinvd = "allowed", .kvm_attach = "skip", .vm_wbinvd = "noop",
};

static const struct row row1b_coherent_only_device_behind_iommu_that_cannot_enforce = {
        .group = 7, .container = "noncoherent",
        .decision = "not-needed", .reason = "device-coherent-only", .mode = "automatic",
        .rule_file = MELLANOX, .rule_line = 6,
        .slot = "0000:00:08.0", .vendor = "0x15b3", .iommu = "dmar1",
        .iommu_enforces = false, .ioas_coherent = false, ALLOWED_BY_CONF,
        .wbinvd = "allowed", .kvm_attach = "skip", .vm_wbinvd = "noop",
};

/* Row 1c: the same device under force-disable ("never WBINVD") is not handed out. */
static const struct row row1c_coherent_only_device_force_disabled = {
        .group = 8, .container = "noncoherent",
        .decision = "refused", .reason = "policy-force-disable", .mode = "force-disable",
        .rule_file = SLOT9, .rule_line = 6,
        .slot = "0000:00:09.0", .vendor = "0x15b3", .iommu = "dmar1",
        .iommu_enforces = false, .ioas_coherent = false, ALLOWED_BY_CONF,
        .wbinvd = "none", .kvm_attach = NULL, .vm_wbinvd = "noop",
};

static const struct row row2_ioas_enforces = {
        .group = 2, .container = "coherent",
        .decision = "not-needed", .reason = "ioas-enforces-coherency", .mode = "automatic",
        .rule_file = NULL,
        .slot = "0000:00:03.0", .vendor = "0x10de", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = true, ALLOWED_BY_CONF,
        .wbinvd = "none", .kvm_attach = "add", .vm_wbinvd = "noop",
};

static const struct row row3_policy_enable = {
        .group = 3, .container = "noncoherent",
        .decision = "granted", .reason = "policy-enable", .mode = "enable",
        .rule_file = AMD, .rule_line = 7,
        .slot = "0000:00:04.0", .vendor = "0x1002", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = false, ALLOWED_BY_CONF,
        .wbinvd = "allowed", .kvm_attach = "add", .vm_wbinvd = "allowed",
};

static const struct row row4_platform_cannot_enforce = {
        .group = 4, .container = "noncoherent",
        .decision = "granted", .reason = "platform-cannot-enforce", .mode = "automatic",
        .rule_file = CONF, .rule_line = CONF_MODE_LINE,
        .slot = "0000:00:05.0", .vendor = "0x1234", .iommu = "dmar1",
        .iommu_enforces = false, .ioas_coherent = false, ALLOWED_BY_CONF,
        .wbinvd = "allowed", .kvm_attach = "add", .vm_wbinvd = "allowed",
};

static const struct row row5_coherent_ioas_required = {
        .group = 2, .container = "noncoherent",
        .decision = "refused", .reason = "coherent-ioas-required", .mode = "automatic",
        .rule_file = CONF, .rule_line = CONF_MODE_LINE,
        .slot = "0000:00:03.0", .vendor = "0x10de", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = false, ALLOWED_BY_CONF,
        .wbinvd = "none", .kvm_attach = NULL, .vm_wbinvd = "noop",
};

static const struct row row6_policy_force_disable = {
        .group = 5, .container = "noncoherent",
        .decision = "refused", .reason = "policy-force-disable", .mode = "force-disable",
        .rule_file = NVME, .rule_line = 6,
        .slot = "0000:00:06.0", .vendor = "0x144d", .iommu = "dmar0",
        .iommu_enforces = true, .ioas_coherent = false, ALLOWED_BY_CONF,
        .wbinvd = "none", .kvm_attach = NULL, .vm_wbinvd = "noop",
};

static bool handed_over(const struct row *row) {
        return row->kvm_attach != NULL;
}

static const char *row_rule(struct harness *h, const char *file, unsigned line, char *buf, size_t size) {
        return file ? harness_rule(h, file, line, buf, size) : "default";
}

static void check_device_facts(json_object *f, const struct row *row) {
        assert_string_equal(jstr(f, "slot"), row->slot);
        assert_string_equal(jstr(f, "vendor"), row->vendor);
        assert_string_equal(jstr(f, "driver"), "vfio-pci");
        assert_string_equal(jstr(f, "iommu"), row->iommu);
        assert_int_equal(jint(f, "iommuGroup"), row->group);
        assert_int_equal(jbool(f, "iommuEnforces"), row->iommu_enforces);
        assert_int_equal(jbool(f, "ioasCoherent"), row->ioas_coherent);
}

/* The decision fields as Probe, RequestGrant and Explain reply them. */
static void check_decision(struct harness *h, json_object *p, const struct row *row) {
        char rule[512], file[32];

        assert_string_equal(jstr(p, "decision"), row->decision);
        assert_string_equal(jstr(p, "reason"), row->reason);
        assert_string_equal(jstr(p, "rule"), row_rule(h, row->rule_file, row->rule_line, rule, sizeof rule));
        assert_string_equal(jstr(p, "mode"), row->mode);
        assert_string_equal(jstr(p, "wbinvd"), row->wbinvd);
        if (row->kvm_attach)
                assert_string_equal(jstr(p, "kvmAttach"), row->kvm_attach);
        else
                assert_false(json_object_object_get_ex(p, "kvmAttach", NULL));

        json_object *facts = jmember(p, "facts");
        check_device_facts(facts, row);
        snprintf(file, sizeof file, "vfio-group:%u", row->group);
        assert_string_equal(jstr(facts, "file"), file);
        json_object *devices = jmember(facts, "devices");
        assert_int_equal(json_object_array_length(devices), 1);
        json_object *d = json_object_array_get_idx(devices, 0);
        check_device_facts(d, row);
        assert_string_equal(jstr(d, "access"), row->access);
        assert_string_equal(jstr(d, "accessRule"), row_rule(h, row->access_file, row->access_line, rule, sizeof rule));
        assert_string_equal(jstr(d, "mode"), row->mode);
        assert_string_equal(jstr(d, "decision"), row->decision);
        assert_string_equal(jstr(d, "reason"), row->reason);
}

static void check_reply(struct harness *h, json_object *p, const struct row *row) {
        check_decision(h, p, row);
        assert_string_equal(jstr(p, "vmWbinvd"), row->vm_wbinvd);
        /* A grant id, and a group, exactly when a file is handed over (request_grant checked they agree). */
        assert_int_equal(json_object_object_get_ex(p, "grant", NULL), handed_over(row));
}

/* The group came as the reply said, and what the daemon keeps: for a file handed
 * over its pin and its end of the group (socket ends) and the VM; for a refusal
 * nothing. The VM itself is never touched: only the VMM can add files to KVM. */
static void check_custody(struct harness *h, struct vconn *vmm, int vm, const struct row *row, unsigned sockets) {
        char state[256];
        struct stat st;

        sim_vm_state(vm, state, sizeof state);
        assert_string_equal(state, "");
        if (!handed_over(row)) {
                assert_int_equal(vconn_reply_fds(vmm), 0);
                expect_daemon_fds(h, FD_SIM_VM, 0);
                expect_daemon_stream_sockets(h, sockets);
                return;
        }
        int group = vconn_take_fd(vmm, 0);
        assert_true(group >= 0);
        /* The simulated group is a socket end (a real one is /dev/vfio/N). */
        assert_int_equal(fstat(group, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        close(group);
        expect_daemon_fds(h, FD_SIM_VM, 1);
        expect_daemon_stream_sockets(h, sockets + 2);
}

static const char *decision_message_id(const char *decision) {
        return strcmp(decision, "granted") == 0 ? MESSAGE_ID_DECISION
               : strcmp(decision, "refused") == 0 ? MESSAGE_ID_REFUSED
                                                   : MESSAGE_ID_NOT_NEEDED;
}

static void check_journal(struct harness *h, json_object *reply, pid_t client, const struct row *row) {
        static const char *const ids[] = { MESSAGE_ID_DECISION, MESSAGE_ID_NOT_NEEDED, MESSAGE_ID_REFUSED };
        const char *id = decision_message_id(row->decision);
        char buf[32], message[1024];
        json_object *records = journal_expect(h, 1, id, NULL);
        json_object *r = json_object_array_get_idx(records, 0);
        json_object *grant;

        assert_string_equal(journal_field(r, "COHERENCYD_DECISION"), row->decision);
        assert_string_equal(journal_field(r, "COHERENCYD_REASON"), row->reason);
        assert_string_equal(journal_field(r, "COHERENCYD_MODE"), row->mode);
        assert_string_equal(journal_field(r, "COHERENCYD_RULE"), jstr(reply, "rule"));
        assert_string_equal(journal_field(r, "COHERENCYD_SLOT"), row->slot);
        snprintf(buf, sizeof buf, "%u", row->group);
        assert_string_equal(journal_field(r, "COHERENCYD_IOMMU_GROUP"), buf);
        assert_string_equal(journal_field(r, "COHERENCYD_WBINVD"), row->wbinvd);
        assert_string_equal(journal_field(r, "COHERENCYD_VM_WBINVD"), row->vm_wbinvd);
        if (row->kvm_attach)
                assert_string_equal(journal_field(r, "COHERENCYD_KVM_ATTACH"), row->kvm_attach);
        else
                assert_null(journal_field(r, "COHERENCYD_KVM_ATTACH"));
        snprintf(buf, sizeof buf, "%u", (unsigned) VMM_UID);
        assert_string_equal(journal_field(r, "COHERENCYD_PEER_UID"), buf);
        snprintf(buf, sizeof buf, "%d", (int) client);
        assert_string_equal(journal_field(r, "OBJECT_PID"), buf);
        /* The message, word for word as journalctl shows it. */
        snprintf(message, sizeof message,
                 "%s %s (IOMMU group %u) to the VMM of pid %d (uid %u): %s, %s by %s; WBINVD %s, VM WBINVD %s",
                 strcmp(row->decision, "refused") == 0 ? "Refused" : "Handed over", row->slot, row->group,
                 (int) client, (unsigned) VMM_UID, row->decision, row->reason, jstr(reply, "rule"),
                 strcmp(row->wbinvd, "allowed") == 0 ? "allowed once added" : "unaffected", row->vm_wbinvd);
        assert_string_equal(journal_field(r, "MESSAGE"), message);
        if (json_object_object_get_ex(reply, "grant", &grant))
                assert_string_equal(journal_field(r, "COHERENCYD_GRANT"), json_object_get_string(grant));
        else
                assert_null(journal_field(r, "COHERENCYD_GRANT"));
        /* Refusals at notice or higher, so an operator filtering on -p notice sees them. */
        if (strcmp(row->decision, "refused") == 0)
                assert_true(atoi(journal_field(r, "PRIORITY")) <= 5);
        json_object_put(records);

        /* One record, under its decision's id only: selecting refusals by id finds exactly them. */
        for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
                if (strcmp(ids[i], id) != 0)
                        json_object_put(journal_expect(h, 0, ids[i], NULL));
}

static void check_row(struct harness *h, const struct row *row) {
        struct peer vmm;

        harness_start(h);
        peer_connect(h, VMM_UID, VMM_GID, NULL, 0, &vmm);
        vconn_ping(vmm.conn);
        unsigned sockets = daemon_stream_sockets(h);
        int vm = sim_object("kvm-vm");

        json_object *p = request_grant(vmm.conn, vm, row->group, row->container);
        check_reply(h, p, row);
        harness_sync(h); /* the daemon is done with the request's descriptors */
        check_custody(h, vmm.conn, vm, row, sockets);
        check_journal(h, p, vmm.pid, row);

        json_object_put(p);
        close(vm);
        peer_done(&vmm);
}

static void test_row0_management_nic_the_policy_denies_is_refused_and_nothing_is_opened(void **state) {
        check_row(*state, &row0_access_denied);
}

static void test_row1_coherent_only_nic_in_coherent_ioas_is_not_needed_and_to_be_added(void **state) {
        check_row(*state, &row1_coherent_only_device);
}

static void test_row1b_coherent_only_nic_in_noncoherent_ioas_is_not_needed_and_not_to_be_added(void **state) {
        check_row(*state, &row1b_coherent_only_device_noncoherent_ioas);
}

static void test_row1b_coherent_only_nic_behind_iommu_that_cannot_enforce_is_not_needed_and_skipped(void **state) {
        check_row(*state, &row1b_coherent_only_device_behind_iommu_that_cannot_enforce);
}

static void test_row1c_coherent_only_nic_under_force_disable_is_refused(void **state) {
        check_row(*state, &row1c_coherent_only_device_force_disabled);
}

static void test_row2_device_in_enforcing_ioas_is_not_needed_and_to_be_added(void **state) {
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

/* Access= decides first: a denied device is refused whatever else would hold (here row 4). */
static void test_access_deny_in_coherencyd_conf_refuses_before_any_other_row(void **state) {
        struct harness *h = *state;
        char rule[512];

        /* Both refusals in full: they are root's, within RefusalLogIntervalSec= of each other. */
        harness_write_config(h, CONF, "[Broker]\nMode=automatic\nRefusalLogIntervalSec=0\n");
        harness_start(h);
        int vm = sim_object("kvm-vm");
        unsigned sockets = daemon_stream_sockets(h);
        json_object *p = request_grant(h->sync, vm, 4, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_string_equal(jstr(p, "reason"), "access-denied");
        /* The built-in default is deny. */
        assert_string_equal(jstr(p, "rule"), "default");
        assert_false(json_object_object_get_ex(p, "kvmAttach", NULL));
        json_object *d = json_object_array_get_idx(jmember(jmember(p, "facts"), "devices"), 0);
        assert_string_equal(jstr(d, "access"), "deny");
        assert_string_equal(jstr(d, "accessRule"), "default");
        json_object_put(p);
        harness_sync(h);
        expect_daemon_fds(h, FD_SIM_VM, 0);
        expect_daemon_stream_sockets(h, sockets);

        /* The same key set to deny in [Broker] names its line. */
        harness_write_config(h, CONF, "[Broker]\nMode=automatic\nAccess=deny\nRefusalLogIntervalSec=0\n");
        json_object_put(vconn_call(h->sync, MANAGER "ReloadPolicy", NULL, NULL, 0));
        p = request_grant(h->sync, vm, 4, "noncoherent");
        assert_string_equal(jstr(p, "reason"), "access-denied");
        assert_string_equal(jstr(p, "rule"), harness_rule(h, CONF, 3, rule, sizeof rule));
        json_object_put(p);
        json_object_put(journal_expect(h, 2, MESSAGE_ID_REFUSED, "COHERENCYD_REASON=access-denied", NULL));
        close(vm);
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

static void test_group_with_two_devices_lists_both_and_hands_over_one_file(void **state) {
        struct harness *h = *state;
        static const char *const slots[2] = { "0000:00:07.0", "0000:00:07.1" };
        static const char *const nosnoop[2] = { "capable", "capable" };
        int group;

        harness_start(h);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_take(h->sync, vm, 6, "noncoherent", &group);
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "reason"), "platform-cannot-enforce");
        assert_string_equal(jstr(p, "kvmAttach"), "add");
        check_group_devices(jmember(p, "facts"), slots, nosnoop);
        /* One file, however many devices it carries. */
        assert_string_equal(jstr(jmember(p, "facts"), "file"), "vfio-group:6");
        assert_int_equal(vconn_reply_fds(h->sync), 1);
        json_object_put(p);
        close(group);
        close(vm);
}

/* Devices of one group are asked for by either address; the group is the same file. */
static void test_second_function_of_a_group_names_the_same_group(void **state) {
        struct harness *h = *state;

        harness_start(h);
        json_object *p = vconn_call(h->sync, BROKER "Probe", "{\"device\":\"0000:00:07.1\"}", NULL, 0);
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(jmember(p, "facts"), "file"), "vfio-group:6");
        assert_int_equal(json_object_array_length(jmember(jmember(p, "facts"), "devices")), 2);
        json_object_put(p);
}

static void test_group_is_decided_on_its_least_coherent_device(void **state) {
        struct harness *h = *state;
        static const char *const slots[2] = { "0000:00:07.0", "0000:00:07.1" };
        static const char *const nosnoop[2] = { "hardwired-off", "capable" };
        char rule[512];
        int group;

        /* The GPU function is coherent-only; its audio function is not, and decides. */
        harness_write_config(h, "policy.d/40-gpu-coherent.policy",
                             "[Match]\n"
                             "Slot=0000:00:07.0\n"
                             "[Policy]\n"
                             "NoSnoop=hardwired-off\n");
        harness_start(h);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_take(h->sync, vm, 6, "noncoherent", &group);
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "reason"), "platform-cannot-enforce");
        assert_string_equal(jstr(p, "wbinvd"), "allowed");
        assert_string_equal(jstr(p, "rule"), harness_rule(h, CONF, CONF_MODE_LINE, rule, sizeof rule));
        json_object *facts = jmember(p, "facts");
        assert_string_equal(jstr(facts, "slot"), "0000:00:07.1");
        check_group_devices(facts, slots, nosnoop);
        json_object *gpu = json_object_array_get_idx(jmember(facts, "devices"), 0);
        assert_string_equal(jstr(gpu, "noSnoopRule"),
                            harness_rule(h, "policy.d/40-gpu-coherent.policy", 4, rule, sizeof rule));
        /* Each device with its own verdict: the GPU alone would be row 1b. */
        assert_string_equal(jstr(gpu, "decision"), "not-needed");
        assert_string_equal(jstr(gpu, "reason"), "device-coherent-only");
        json_object *audio = json_object_array_get_idx(jmember(facts, "devices"), 1);
        assert_string_equal(jstr(audio, "decision"), "granted");
        json_object_put(p);

        /* The record names the device asked for and the one that decided. */
        json_object *records = journal_expect(h, 1, MESSAGE_ID_DECISION, NULL);
        json_object *r = json_object_array_get_idx(records, 0);
        assert_string_equal(journal_field(r, "COHERENCYD_SLOT"), "0000:00:07.0");
        assert_string_equal(journal_field(r, "COHERENCYD_DECIDING_SLOT"), "0000:00:07.1");
        json_object_put(records);
        close(group);
        close(vm);
}

/* A refusal of one device refuses the whole group: refused beats granted beats not-needed. */
static void test_group_with_one_device_denied_is_refused(void **state) {
        struct harness *h = *state;
        char rule[512];

        harness_write_config(h, "policy.d/06-audio-deny.policy",
                             "[Match]\n"
                             "Slot=0000:00:07.1\n"
                             "[Policy]\n"
                             "Access=deny\n");
        harness_start(h);
        int vm = sim_object("kvm-vm");
        unsigned sockets = daemon_stream_sockets(h);
        json_object *p = request_grant(h->sync, vm, 6, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_string_equal(jstr(p, "reason"), "access-denied");
        assert_string_equal(jstr(p, "rule"), harness_rule(h, "policy.d/06-audio-deny.policy", 4, rule, sizeof rule));
        assert_string_equal(jstr(jmember(p, "facts"), "slot"), "0000:00:07.1");
        json_object *gpu = json_object_array_get_idx(jmember(jmember(p, "facts"), "devices"), 0);
        assert_string_equal(jstr(gpu, "access"), "allow");
        assert_string_equal(jstr(gpu, "decision"), "granted");
        json_object_put(p);
        harness_sync(h);
        expect_daemon_stream_sockets(h, sockets);
        expect_daemon_fds(h, FD_SIM_VM, 0);
        close(vm);
}

/*
 * Simulated platform only (no Debian kernel has CONFIG_IOMMUFD, DESIGN.md §4):
 * with an iommufd for IOAS the VFIO file is the device's cdev, decided like its
 * group in a container and handed over the same way.
 */
static void test_sim_only_iommufd_ioas_is_decided_like_a_container_and_hands_over_the_device_cdev(void **state) {
        struct harness *h = *state;
        char params[128];

        harness_start(h);
        int fds[2] = { sim_object("kvm-vm"), sim_object("iommufd:noncoherent") };
        snprintf(params, sizeof params, "{\"vm\":0,\"device\":\"%s\",\"iommu\":1}", group_slot(3));
        json_object *p = vconn_call(h->sync, BROKER "RequestGrant", params, fds, 2);
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "reason"), "policy-enable");
        assert_string_equal(jstr(p, "kvmAttach"), "add");
        assert_string_equal(jstr(p, "vmWbinvd"), "allowed");
        assert_int_equal(jint(p, "group"), 0);
        assert_int_equal(vconn_reply_fds(h->sync), 1);
        assert_string_equal(jstr(jmember(p, "facts"), "file"), "vfio-device:0000:00:04.0");
        json_object_put(p);
        for (size_t i = 0; i < 2; i++)
                close(fds[i]);
}

static void test_probe_decides_without_side_effects(void **state) {
        struct harness *h = *state;
        char rule[512];

        harness_start(h);
        harness_idle(h);
        unsigned all = daemon_fds(h, NULL);
        json_object *p = probe(h->sync, 3, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "reason"), "policy-enable");
        assert_string_equal(jstr(p, "rule"), harness_rule(h, AMD, 7, rule, sizeof rule));
        assert_string_equal(jstr(p, "wbinvd"), "allowed");
        assert_string_equal(jstr(p, "kvmAttach"), "add");
        assert_false(json_object_object_get_ex(p, "grant", NULL));
        assert_false(json_object_object_get_ex(p, "group", NULL));
        assert_int_equal(vconn_reply_fds(h->sync), 0);
        json_object_put(p);

        /* Without an iommu descriptor: the IOAS the daemon itself would prepare (row 2). */
        p = probe(h->sync, 2, NULL);
        assert_string_equal(jstr(p, "decision"), "not-needed");
        assert_string_equal(jstr(p, "reason"), "ioas-enforces-coherency");
        assert_true(jbool(jmember(p, "facts"), "ioasCoherent"));
        json_object_put(p);
        /* A refusal has no kvmAttach. */
        p = probe(h->sync, 5, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_false(json_object_object_get_ex(p, "kvmAttach", NULL));
        json_object_put(p);

        /* Nothing held, nothing opened, nothing logged as a decision. */
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 0);
        json_object_put(grants);
        expect_daemon_fds_settled(h, NULL, all);
        json_object_put(journal_expect(h, 0, MESSAGE_ID_DECISION, NULL));
        json_object_put(journal_expect(h, 0, MESSAGE_ID_NOT_NEEDED, NULL));
        json_object_put(journal_expect(h, 0, MESSAGE_ID_REFUSED, NULL));
}

static void test_probe_claiming_coherent_ioas_on_iommu_that_cannot_enforce_is_unsupported(void **state) {
        struct harness *h = *state;
        char params[128];

        harness_start(h);
        snprintf(params, sizeof params, "{\"device\":\"%s\",\"ioasCoherent\":true}", group_slot(4));
        json_object *p = vconn_call_error(h->sync, BROKER "Probe", params, NULL, 0, BROKER "CoherencyUnsupported");
        assert_string_equal(jstr(p, "parameter"), "ioasCoherent");
        json_object_put(p);

        /* The IOAS it means to create decides, not the kernel's default. */
        snprintf(params, sizeof params, "{\"device\":\"%s\",\"ioasCoherent\":false}", group_slot(2));
        p = vconn_call(h->sync, BROKER "Probe", params, NULL, 0);
        assert_string_equal(jstr(p, "reason"), "coherent-ioas-required");
        json_object_put(p);
}

static void test_request_with_coherent_container_on_iommu_that_cannot_enforce_is_unsupported(void **state) {
        struct harness *h = *state;

        harness_start(h);
        harness_idle(h);
        unsigned all = daemon_fds(h, NULL);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_error(h->sync, vm, 4, "coherent", BROKER "CoherencyUnsupported");
        assert_string_equal(jstr(p, "parameter"), "iommu");
        json_object_put(p);
        expect_daemon_fds_settled(h, NULL, all);
        /* An invalid request is no decision. */
        json_object_put(journal_expect(h, 0, MESSAGE_ID_REFUSED, NULL));
        close(vm);
}

/* vmWbinvd is the VM's: allowed while any of its grants is granted, whatever this one is. */
static void test_vm_wbinvd_reports_the_vms_grants_not_only_this_one(void **state) {
        struct harness *h = *state;
        int groups[2];

        harness_start(h);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_take(h->sync, vm, 2, "coherent", &groups[0]);
        assert_string_equal(jstr(p, "decision"), "not-needed");
        assert_string_equal(jstr(p, "vmWbinvd"), "noop");
        json_object_put(p);
        p = request_grant_take(h->sync, vm, 4, "noncoherent", &groups[1]);
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "vmWbinvd"), "allowed");
        json_object_put(p);
        /* A refusal for the same VM reports the VM as it stands. */
        p = request_grant(h->sync, vm, 5, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_string_equal(jstr(p, "vmWbinvd"), "allowed");
        json_object_put(p);
        /* Another VM has nothing granted. */
        int other = sim_object("kvm-vm");
        p = request_grant(h->sync, other, 5, "noncoherent");
        assert_string_equal(jstr(p, "vmWbinvd"), "noop");
        json_object_put(p);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_REFUSED, "COHERENCYD_VM_WBINVD=allowed", NULL));

        for (size_t i = 0; i < 2; i++)
                close(groups[i]);
        close(vm);
        close(other);
}

/* The daemon keeps a device's facts between requests (daemon/facts-cache.h):
 * a device moved behind another IOMMU, then bound to another driver, while it
 * runs is decided anew on the next request, as the uevent arrives. */
static void test_device_changed_between_requests_is_decided_anew(void **state) {
        struct harness *h = *state;

        harness_start(h);
        json_object *p = probe(h->sync, 4, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "granted");
        assert_string_equal(jstr(p, "reason"), "platform-cannot-enforce");
        json_object_put(p);

        /* Behind dmar0, which enforces: a non-coherent IOAS is refused now (row 5). */
        harness_relink_device(h, "0000:00:05.0", "iommu", "../../virtual/iommu/dmar0");
        p = probe(h->sync, 4, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        assert_string_equal(jstr(p, "reason"), "coherent-ioas-required");
        assert_string_equal(jstr(jmember(p, "facts"), "iommu"), "dmar0");
        json_object_put(p);

        /* Bound to a host driver: no VFIO group to hand over. */
        harness_relink_device(h, "0000:00:05.0", "driver", "../../../bus/pci/drivers/nvme");
        json_object_put(vconn_call_error(h->sync, BROKER "Probe", "{\"device\":\"0000:00:05.0\"}", NULL, 0,
                                         BROKER "NoSuchDevice"));
        /* A policy reload keeps what the kernel said: still refused. */
        harness_sighup(h);
        json_object_put(vconn_call_error(h->sync, BROKER "Probe", "{\"device\":\"0000:00:05.0\"}", NULL, 0,
                                         BROKER "NoSuchDevice"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_row0_management_nic_the_policy_denies_is_refused_and_nothing_is_opened),
                HARNESS_TEST(test_row1_coherent_only_nic_in_coherent_ioas_is_not_needed_and_to_be_added),
                HARNESS_TEST(test_row1b_coherent_only_nic_in_noncoherent_ioas_is_not_needed_and_not_to_be_added),
                HARNESS_TEST(test_row1b_coherent_only_nic_behind_iommu_that_cannot_enforce_is_not_needed_and_skipped),
                HARNESS_TEST(test_row1c_coherent_only_nic_under_force_disable_is_refused),
                HARNESS_TEST(test_row2_device_in_enforcing_ioas_is_not_needed_and_to_be_added),
                HARNESS_TEST(test_row3_policy_enable_grants_wbinvd_from_the_amd_rule),
                HARNESS_TEST(test_row4_iommu_that_cannot_enforce_grants_wbinvd_from_coherencyd_conf),
                HARNESS_TEST(test_row5_noncoherent_ioas_on_enforcing_iommu_is_refused),
                HARNESS_TEST(test_row6_force_disabled_nvme_is_refused),
                HARNESS_TEST(test_access_deny_in_coherencyd_conf_refuses_before_any_other_row),
                HARNESS_TEST(test_group_with_two_devices_lists_both_and_hands_over_one_file),
                HARNESS_TEST(test_second_function_of_a_group_names_the_same_group),
                HARNESS_TEST(test_group_is_decided_on_its_least_coherent_device),
                HARNESS_TEST(test_group_with_one_device_denied_is_refused),
                HARNESS_TEST(test_sim_only_iommufd_ioas_is_decided_like_a_container_and_hands_over_the_device_cdev),
                HARNESS_TEST(test_probe_decides_without_side_effects),
                HARNESS_TEST(test_probe_claiming_coherent_ioas_on_iommu_that_cannot_enforce_is_unsupported),
                HARNESS_TEST(test_request_with_coherent_container_on_iommu_that_cannot_enforce_is_unsupported),
                HARNESS_TEST(test_vm_wbinvd_reports_the_vms_grants_not_only_this_one),
                HARNESS_TEST(test_device_changed_between_requests_is_decided_anew),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
