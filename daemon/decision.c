/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "decision.h"
#include "util.h"

static const char *const mode_table[_COH_MODE_MAX] = {
        [COH_MODE_ENABLE] = "enable",
        [COH_MODE_AUTOMATIC] = "automatic",
        [COH_MODE_FORCE_DISABLE] = "force-disable",
};

static const char *const nosnoop_table[_COH_NOSNOOP_MAX] = {
        [COH_NOSNOOP_CAPABLE] = "capable",
        [COH_NOSNOOP_HARDWIRED_OFF] = "hardwired-off",
};

static const char *const decision_table[_COH_DECISION_MAX] = {
        [COH_DECISION_NOT_NEEDED] = "not-needed",
        [COH_DECISION_GRANTED] = "granted",
        [COH_DECISION_REFUSED] = "refused",
};

/* These strings are part of the wire protocol and the journal: never rename them. */
static const char *const reason_table[_COH_REASON_MAX] = {
        [COH_REASON_DEVICE_COHERENT_ONLY] = "device-coherent-only",
        [COH_REASON_IOAS_ENFORCES_COHERENCY] = "ioas-enforces-coherency",
        [COH_REASON_POLICY_ENABLE] = "policy-enable",
        [COH_REASON_PLATFORM_CANNOT_ENFORCE] = "platform-cannot-enforce",
        [COH_REASON_COHERENT_IOAS_REQUIRED] = "coherent-ioas-required",
        [COH_REASON_POLICY_FORCE_DISABLE] = "policy-force-disable",
};

static const char *table_to_string(const char *const *table, size_t n, int i) {
        if (i < 0 || (size_t) i >= n)
                return NULL;
        return table[i];
}

static int table_from_string(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -1;
        for (size_t i = 0; i < n; i++)
                if (table[i] && strcmp(table[i], s) == 0)
                        return (int) i;
        return -1;
}

const char *coh_mode_to_string(enum coh_mode m) {
        return table_to_string(mode_table, ELEMENTSOF(mode_table), m);
}

enum coh_mode coh_mode_from_string(const char *s) {
        return table_from_string(mode_table, ELEMENTSOF(mode_table), s);
}

const char *coh_nosnoop_to_string(enum coh_nosnoop n) {
        return table_to_string(nosnoop_table, ELEMENTSOF(nosnoop_table), n);
}

enum coh_nosnoop coh_nosnoop_from_string(const char *s) {
        return table_from_string(nosnoop_table, ELEMENTSOF(nosnoop_table), s);
}

const char *coh_decision_to_string(enum coh_decision d) {
        return table_to_string(decision_table, ELEMENTSOF(decision_table), d);
}

const char *coh_reason_to_string(enum coh_reason r) {
        return table_to_string(reason_table, ELEMENTSOF(reason_table), r);
}

int coh_decide(enum coh_nosnoop nosnoop, bool ioas_coherent, bool iommu_enforces, enum coh_mode mode,
               enum coh_decision *ret_decision, enum coh_reason *ret_reason) {
        enum coh_decision decision;
        enum coh_reason reason;

        if (nosnoop < 0 || nosnoop >= _COH_NOSNOOP_MAX || mode < 0 || mode >= _COH_MODE_MAX)
                return -EINVAL;

        /* The kernel refuses such an IOAS, so there is nothing to decide, whatever the device. */
        if (ioas_coherent && !iommu_enforces)
                return -EINVAL;

        if (nosnoop == COH_NOSNOOP_HARDWIRED_OFF) {
                decision = COH_DECISION_NOT_NEEDED;
                reason = COH_REASON_DEVICE_COHERENT_ONLY;
        } else if (ioas_coherent) {
                decision = COH_DECISION_NOT_NEEDED;
                reason = COH_REASON_IOAS_ENFORCES_COHERENCY;
        } else
                switch (mode) {
                case COH_MODE_ENABLE:
                        decision = COH_DECISION_GRANTED;
                        reason = COH_REASON_POLICY_ENABLE;
                        break;
                case COH_MODE_AUTOMATIC:
                        /* What the kernel does today: non-coherent DMA is only acceptable where the
                         * IOMMU leaves no choice; where it could enforce, the VMM must ask for it. */
                        if (iommu_enforces) {
                                decision = COH_DECISION_REFUSED;
                                reason = COH_REASON_COHERENT_IOAS_REQUIRED;
                        } else {
                                decision = COH_DECISION_GRANTED;
                                reason = COH_REASON_PLATFORM_CANNOT_ENFORCE;
                        }
                        break;
                case COH_MODE_FORCE_DISABLE:
                        decision = COH_DECISION_REFUSED;
                        reason = COH_REASON_POLICY_FORCE_DISABLE;
                        break;
                default:
                        return -EINVAL;
                }

        if (ret_decision)
                *ret_decision = decision;
        if (ret_reason)
                *ret_reason = reason;
        return 0;
}
