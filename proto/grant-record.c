/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>

#include "grant-record.h"

#define S(json, journal, member, flags)                                                              \
        { json, journal, COH_FIELD_STRING, offsetof(struct coh_grant_record, member),                \
          sizeof(((struct coh_grant_record *) 0)->member), NULL, flags }
#define I(json, journal, member, flags) \
        { json, journal, COH_FIELD_INT, offsetof(struct coh_grant_record, member), 0, NULL, flags }
#define B(json, journal, member, flags) \
        { json, journal, COH_FIELD_BOOL, offsetof(struct coh_grant_record, member), 0, NULL, flags }
#define W(json, journal, member, words, flags) \
        { json, journal, COH_FIELD_WORD, offsetof(struct coh_grant_record, member), 0, &words, flags }

enum {
        WIRE = COH_GRANT_FORM_VMM | COH_GRANT_FORM_OPERATOR,
        ALL = WIRE | COH_GRANT_FORM_STORE,
        OP = COH_GRANT_FORM_OPERATOR | COH_GRANT_FORM_STORE,
        STORE = COH_GRANT_FORM_STORE,
        OPT = COH_FIELD_OPTIONAL,
        LENIENT = COH_FIELD_LENIENT,
};

const struct coh_field coh_grant_record_fields[] = {
        S("grant", "COHERENCYD_GRANT", grant, ALL),
        S("device", "COHERENCYD_SLOT", device, ALL),
        I("iommuGroup", "COHERENCYD_IOMMU_GROUP", iommu_group, ALL),
        S("file", "COHERENCYD_FILE", file, ALL),
        W("decision", "COHERENCYD_DECISION", decision, coh_decision_wordset, ALL),
        W("reason", "COHERENCYD_REASON", reason, coh_reason_wordset, ALL | LENIENT),
        W("mode", "COHERENCYD_MODE", mode, coh_mode_wordset, ALL | LENIENT),
        S("rule", "COHERENCYD_RULE", rule, ALL),
        W("wbinvd", "COHERENCYD_WBINVD", wbinvd, coh_wbinvd_wordset, ALL),
        W("vmWbinvd", "COHERENCYD_VM_WBINVD", vm_wbinvd, coh_vm_wbinvd_wordset, WIRE),
        W("kvmAttach", "COHERENCYD_KVM_ATTACH", kvm_attach, coh_kvm_attach_wordset, ALL | OPT),
        W("state", NULL, state, coh_grant_state_wordset, ALL | LENIENT),
        S("end", "COHERENCYD_END", end, ALL | OPT),
        I("peerPid", "OBJECT_PID", peer_pid, ALL),
        I("peerUid", "COHERENCYD_PEER_UID", peer_uid, ALL),
        S("peerUnit", "COHERENCYD_PEER_UNIT", peer_unit, OP | OPT),
        /* journald adds OBJECT_SYSTEMD_UNIT for OBJECT_PID= only when the sender is root, and
         * the daemon's main process is not (README "Processes"): it says so itself. Journal only. */
        S("peerUnit", "OBJECT_SYSTEMD_UNIT", peer_unit, OPT),
        I("since", NULL, since, ALL),
        I("endingSince", NULL, ending_since, OP | OPT),
        I("owner", NULL, owner, STORE),
        I("vm", NULL, vm, STORE),
        B("pending", NULL, pending, STORE),
        B("kill", NULL, kill, STORE),
        B("warned", NULL, warned, STORE),
        B("killed", "COHERENCYD_KILLED", killed, STORE | OPT),
        COH_FIELDS_END,
};
