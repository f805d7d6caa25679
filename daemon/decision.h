/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The decision table of DESIGN.md §2: a pure function, no I/O. */

#include <stdbool.h>

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

enum coh_decision {
        COH_DECISION_NOT_NEEDED,
        COH_DECISION_GRANTED,
        COH_DECISION_REFUSED,
        _COH_DECISION_MAX,
};

enum coh_reason {
        COH_REASON_DEVICE_COHERENT_ONLY,     /* row 1 */
        COH_REASON_IOAS_ENFORCES_COHERENCY,  /* row 2 */
        COH_REASON_POLICY_ENABLE,            /* row 3 */
        COH_REASON_PLATFORM_CANNOT_ENFORCE,  /* row 4 */
        COH_REASON_COHERENT_IOAS_REQUIRED,   /* row 5 */
        COH_REASON_POLICY_FORCE_DISABLE,     /* row 6 */
        _COH_REASON_MAX,
};

/* "enable", "automatic", "force-disable" */
const char *coh_mode_to_string(enum coh_mode m);
enum coh_mode coh_mode_from_string(const char *s);
/* "capable", "hardwired-off" */
const char *coh_nosnoop_to_string(enum coh_nosnoop n);
enum coh_nosnoop coh_nosnoop_from_string(const char *s);
/* "not-needed", "granted", "refused" */
const char *coh_decision_to_string(enum coh_decision d);
/* "device-coherent-only", ... as in the table */
const char *coh_reason_to_string(enum coh_reason r);

/*
 * Decides one device. Returns 0, or -EINVAL when ioas_coherent is claimed on
 * an IOMMU that cannot enforce coherency (an invalid request, not a decision).
 */
int coh_decide(enum coh_nosnoop nosnoop, bool ioas_coherent, bool iommu_enforces, enum coh_mode mode,
               enum coh_decision *ret_decision, enum coh_reason *ret_reason);

/* Row 1 and 2 are decided by the device, 3 to 6 by the mode: which policy setting decided. */
static inline bool coh_reason_from_mode(enum coh_reason r) {
        return r >= COH_REASON_POLICY_ENABLE;
}
