/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The decision table of DESIGN.md §2: a pure function, no I/O. */

#include <stdbool.h>
#include <stddef.h>

#include "words.h"

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
