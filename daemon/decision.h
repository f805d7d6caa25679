/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The decision table of DESIGN.md §2: a pure function, no I/O. */

#include <stdbool.h>
#include <stddef.h>

enum coh_mode {
        COH_MODE_ENABLE,
        COH_MODE_AUTOMATIC,
        COH_MODE_FORCE_DISABLE,
        _COH_MODE_MAX,
        _COH_MODE_INVALID = -1,
};

enum coh_nosnoop {
        COH_NOSNOOP_CAPABLE,
        COH_NOSNOOP_HARDWIRED_OFF,
        _COH_NOSNOOP_MAX,
        _COH_NOSNOOP_INVALID = -1,
};

enum coh_access {
        COH_ACCESS_DENY,
        COH_ACCESS_ALLOW,
        _COH_ACCESS_MAX,
        _COH_ACCESS_INVALID = -1,
};

enum coh_decision {
        COH_DECISION_NOT_NEEDED,
        COH_DECISION_GRANTED,
        COH_DECISION_REFUSED,
        _COH_DECISION_MAX,
};

enum coh_reason {
        COH_REASON_DEVICE_COHERENT_ONLY,     /* rows 1 and 1b */
        COH_REASON_IOAS_ENFORCES_COHERENCY,  /* row 2 */
        COH_REASON_POLICY_ENABLE,            /* row 3 */
        COH_REASON_PLATFORM_CANNOT_ENFORCE,  /* row 4 */
        COH_REASON_COHERENT_IOAS_REQUIRED,   /* row 5 */
        COH_REASON_POLICY_FORCE_DISABLE,     /* rows 1c and 6 */
        COH_REASON_ACCESS_DENIED,            /* row 0 */
        _COH_REASON_MAX,
};

/* What the VMM should do with a handed-over file (the reply's kvmAttach). */
enum coh_kvm_attach {
        COH_KVM_ATTACH_NONE,  /* nothing handed over (refused) */
        COH_KVM_ATTACH_ADD,   /* add it to the VM's kvm-vfio device */
        COH_KVM_ATTACH_SKIP,  /* row 1b: adding would turn WBINVD on for a device that does not need it */
        _COH_KVM_ATTACH_MAX,
};

/* Which policy setting decided a row: its origin is the decision's rule. */
enum coh_decided_by {
        COH_DECIDED_BY_ACCESS,   /* row 0 */
        COH_DECIDED_BY_NOSNOOP,  /* rows 1, 1b and 2 (the No-Snoop setting's origin, often "default") */
        COH_DECIDED_BY_MODE,     /* rows 1c, 3 to 6 */
};

/* One row of the table, for one device; or, from coh_decide_group(), for one VFIO file. */
struct coh_verdict {
        enum coh_decision decision;
        enum coh_reason reason;
        enum coh_kvm_attach kvm_attach;
        bool wbinvd;                 /* the handed-over file turns WBINVD on once added (rows 1b, 3, 4) */
        enum coh_decided_by decided_by;
};

/* "enable", "automatic", "force-disable" */
const char *coh_mode_to_string(enum coh_mode m);
enum coh_mode coh_mode_from_string(const char *s);
/* "capable", "hardwired-off" */
const char *coh_nosnoop_to_string(enum coh_nosnoop n);
enum coh_nosnoop coh_nosnoop_from_string(const char *s);
/* "deny", "allow" */
const char *coh_access_to_string(enum coh_access a);
enum coh_access coh_access_from_string(const char *s);
/* "add", "skip"; NULL for NONE */
const char *coh_kvm_attach_to_string(enum coh_kvm_attach k);
/* "not-needed", "granted", "refused" */
const char *coh_decision_to_string(enum coh_decision d);
/* "device-coherent-only", ... as in the table */
const char *coh_reason_to_string(enum coh_reason r);

/*
 * Decides one device (DESIGN.md §2, rows 0 to 6). Returns 0, or -EINVAL when
 * ioas_coherent is claimed on an IOMMU that cannot enforce coherency (an
 * invalid request, not a decision) or an enum is out of range.
 */
int coh_decide(enum coh_access access, enum coh_nosnoop nosnoop, bool ioas_coherent, bool iommu_enforces,
               enum coh_mode mode, struct coh_verdict *ret);

/*
 * A VFIO file carries every device of its group: refused beats granted beats
 * not-needed. *ret is the deciding device's verdict, except that kvm_attach
 * and wbinvd are the file's: a not-needed file is "skip" when any device is
 * row 1b; wbinvd when any device's is and the file is handed over.
 * *ret_deciding is the deciding device's index (the first of the highest
 * rank). n must be > 0.
 */
void coh_decide_group(const struct coh_verdict *devices, size_t n, struct coh_verdict *ret, size_t *ret_deciding);
