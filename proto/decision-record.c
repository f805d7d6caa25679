/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>

#include "decision-record.h"

#define S(type, json, journal, member, flags) \
        { json, journal, COH_FIELD_STRING, offsetof(type, member), sizeof(((type *) 0)->member), NULL, flags }
#define I(type, json, journal, member, flags) \
        { json, journal, COH_FIELD_INT, offsetof(type, member), 0, NULL, flags }
#define B(type, json, journal, member, flags) \
        { json, journal, COH_FIELD_BOOL, offsetof(type, member), 0, NULL, flags }
#define W(type, json, journal, member, words, flags) \
        { json, journal, COH_FIELD_WORD, offsetof(type, member), 0, &words, flags }

enum {
        BRIEF = COH_DEVICE_FORM_BRIEF | COH_DEVICE_FORM_FULL,
        FULL = COH_DEVICE_FORM_FULL,
        OPT = COH_FIELD_OPTIONAL,
        LENIENT = COH_FIELD_LENIENT,
};

#define D struct coh_device_record
const struct coh_field coh_device_record_fields[] = {
        S(D, "slot", "COHERENCYD_DECIDING_SLOT", slot, BRIEF),
        S(D, "vendor", NULL, vendor, BRIEF),
        S(D, "device", NULL, device, BRIEF),
        S(D, "class", NULL, class_, BRIEF),
        S(D, "driver", NULL, driver, BRIEF),
        S(D, "iommu", "COHERENCYD_IOMMU", iommu, BRIEF),
        I(D, "iommuGroup", "COHERENCYD_IOMMU_GROUP", iommu_group, BRIEF),
        W(D, "access", "COHERENCYD_ACCESS", access, coh_access_wordset, FULL | LENIENT),
        S(D, "accessRule", NULL, access_rule, FULL),
        W(D, "noSnoop", "COHERENCYD_NOSNOOP", nosnoop, coh_nosnoop_wordset, BRIEF | LENIENT),
        S(D, "noSnoopRule", NULL, nosnoop_rule, FULL),
        W(D, "mode", NULL, mode, coh_mode_wordset, FULL | LENIENT),
        S(D, "modeRule", NULL, mode_rule, FULL),
        B(D, "iommuEnforces", "COHERENCYD_IOMMU_ENFORCES", iommu_enforces, BRIEF),
        B(D, "ioasCoherent", "COHERENCYD_IOAS_COHERENT", ioas_coherent, BRIEF),
        W(D, "decision", NULL, decision, coh_decision_wordset, FULL),
        W(D, "reason", NULL, reason, coh_reason_wordset, FULL | LENIENT),
        COH_FIELDS_END,
};
#undef D

enum {
        PROBE = COH_DECISION_FORM_PROBE | COH_DECISION_FORM_GRANT | COH_DECISION_FORM_EVENT,
        GRANT = COH_DECISION_FORM_GRANT | COH_DECISION_FORM_EVENT,
        EVENT = COH_DECISION_FORM_EVENT,
};

#define R struct coh_decision_record
const struct coh_field coh_decision_record_fields[] = {
        S(R, "grant", "COHERENCYD_GRANT", grant, GRANT | OPT),
        W(R, "decision", "COHERENCYD_DECISION", decision, coh_decision_wordset, PROBE),
        W(R, "reason", "COHERENCYD_REASON", reason, coh_reason_wordset, PROBE | LENIENT),
        S(R, "rule", "COHERENCYD_RULE", rule, PROBE),
        W(R, "mode", "COHERENCYD_MODE", mode, coh_mode_wordset, PROBE | LENIENT),
        W(R, "wbinvd", "COHERENCYD_WBINVD", wbinvd, coh_wbinvd_wordset, PROBE),
        W(R, "kvmAttach", "COHERENCYD_KVM_ATTACH", kvm_attach, coh_kvm_attach_wordset, PROBE | OPT),
        W(R, "vmWbinvd", "COHERENCYD_VM_WBINVD", vm_wbinvd, coh_vm_wbinvd_wordset, GRANT),
        S(R, "device", "COHERENCYD_SLOT", device, EVENT),
        I(R, "peerPid", "OBJECT_PID", peer_pid, EVENT),
        I(R, "peerUid", "COHERENCYD_PEER_UID", peer_uid, EVENT),
        S(R, "peerUnit", "COHERENCYD_PEER_UNIT", peer_unit, OPT),
        /* journald adds OBJECT_SYSTEMD_UNIT for OBJECT_PID= only when the sender is root, and
         * the daemon's main process is not (README "Processes"): it says so itself. Journal only. */
        S(R, "peerUnit", "OBJECT_SYSTEMD_UNIT", peer_unit, OPT),
        COH_FIELDS_END,
};
#undef R
