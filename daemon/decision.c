/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "decision.h"
#include "util.h"

/* A refusal hands nothing over: nothing to add, nothing that could turn WBINVD on. */
static struct coh_verdict refused(enum coh_reason reason, enum coh_decided_by decided_by) {
        return (struct coh_verdict) {
                .decision = COH_DECISION_REFUSED,
                .reason = reason,
                .kvm_attach = COH_KVM_ATTACH_NONE,
                .wbinvd = false,
                .decided_by = decided_by,
        };
}

static struct coh_verdict handed_over(enum coh_decision decision, enum coh_reason reason,
                                      enum coh_kvm_attach kvm_attach, bool wbinvd, enum coh_decided_by decided_by) {
        return (struct coh_verdict) {
                .decision = decision,
                .reason = reason,
                .kvm_attach = kvm_attach,
                .wbinvd = wbinvd,
                .decided_by = decided_by,
        };
}

int coh_decide(enum coh_access access, enum coh_nosnoop nosnoop, bool ioas_coherent, bool iommu_enforces,
               enum coh_mode mode, struct coh_verdict *ret) {
        struct coh_verdict v;

        if (access < 0 || access >= _COH_ACCESS_MAX || nosnoop < 0 || nosnoop >= _COH_NOSNOOP_MAX ||
            mode < 0 || mode >= _COH_MODE_MAX)
                return -EINVAL;

        /* The kernel refuses such an IOAS, so there is nothing to decide, whoever asks for whatever device.
         * Checked before access: an invalid request is an error, not a refusal. */
        if (ioas_coherent && !iommu_enforces)
                return -EINVAL;

        if (access == COH_ACCESS_DENY)
                /* Row 0: this VMM may not have the device at all. */
                v = refused(COH_REASON_ACCESS_DENIED, COH_DECIDED_BY_ACCESS);

        else if (nosnoop == COH_NOSNOOP_HARDWIRED_OFF) {
                if (ioas_coherent)
                        /* Row 1: KVM sees a coherent file; adding it changes nothing. */
                        v = handed_over(COH_DECISION_NOT_NEEDED, COH_REASON_DEVICE_COHERENT_ONLY,
                                        COH_KVM_ATTACH_ADD, false, COH_DECIDED_BY_NOSNOOP);
                else if (mode == COH_MODE_FORCE_DISABLE)
                        /* Row 1c: the kernel cannot be told the device never snoops-off, so the file
                         * would turn WBINVD on once added: "never WBINVD" means not handing it out. */
                        v = refused(COH_REASON_POLICY_FORCE_DISABLE, COH_DECIDED_BY_MODE);
                else
                        /* Row 1b: handed over with the advice not to add it. */
                        v = handed_over(COH_DECISION_NOT_NEEDED, COH_REASON_DEVICE_COHERENT_ONLY,
                                        COH_KVM_ATTACH_SKIP, true, COH_DECIDED_BY_NOSNOOP);

        } else if (ioas_coherent)
                /* Row 2 */
                v = handed_over(COH_DECISION_NOT_NEEDED, COH_REASON_IOAS_ENFORCES_COHERENCY,
                                COH_KVM_ATTACH_ADD, false, COH_DECIDED_BY_NOSNOOP);

        else
                switch (mode) {
                case COH_MODE_ENABLE:
                        /* Row 3 */
                        v = handed_over(COH_DECISION_GRANTED, COH_REASON_POLICY_ENABLE,
                                        COH_KVM_ATTACH_ADD, true, COH_DECIDED_BY_MODE);
                        break;
                case COH_MODE_AUTOMATIC:
                        /* What the kernel does today: non-coherent DMA is only acceptable where the
                         * IOMMU leaves no choice; where it could enforce, the VMM must ask for it. */
                        if (iommu_enforces)
                                /* Row 5 */
                                v = refused(COH_REASON_COHERENT_IOAS_REQUIRED, COH_DECIDED_BY_MODE);
                        else
                                /* Row 4 */
                                v = handed_over(COH_DECISION_GRANTED, COH_REASON_PLATFORM_CANNOT_ENFORCE,
                                                COH_KVM_ATTACH_ADD, true, COH_DECIDED_BY_MODE);
                        break;
                case COH_MODE_FORCE_DISABLE:
                        /* Row 6 */
                        v = refused(COH_REASON_POLICY_FORCE_DISABLE, COH_DECIDED_BY_MODE);
                        break;
                default:
                        return -EINVAL;
                }

        if (ret)
                *ret = v;
        return 0;
}

static int decision_rank(enum coh_decision d) {
        switch (d) {
        case COH_DECISION_REFUSED:
                return 2;
        case COH_DECISION_GRANTED:
                return 1;
        case COH_DECISION_NOT_NEEDED:
        default:
                return 0;
        }
}

void coh_decide_group(const struct coh_verdict *devices, size_t n, struct coh_verdict *ret, size_t *ret_deciding) {
        struct coh_verdict v;
        size_t deciding = 0;
        bool skip = false, wbinvd = false;

        assert(ret);
        assert(devices || n == 0);
        assert(n > 0);

        if (n == 0) {
                /* Not a valid call; should it happen anyway, hand nothing out. */
                *ret = refused(COH_REASON_ACCESS_DENIED, COH_DECIDED_BY_ACCESS);
                if (ret_deciding)
                        *ret_deciding = 0;
                return;
        }

        for (size_t i = 0; i < n; i++) {
                if (decision_rank(devices[i].decision) > decision_rank(devices[deciding].decision))
                        deciding = i;
                if (devices[i].kvm_attach == COH_KVM_ATTACH_SKIP)
                        skip = true;
                if (devices[i].wbinvd)
                        wbinvd = true;
        }

        v = devices[deciding];
        switch (v.decision) {
        case COH_DECISION_REFUSED:
                /* Nothing is handed over. */
                v.kvm_attach = COH_KVM_ATTACH_NONE;
                v.wbinvd = false;
                break;
        case COH_DECISION_GRANTED:
                /* Adding is what the grant is for, row 1b devices or not. */
                v.kvm_attach = COH_KVM_ATTACH_ADD;
                v.wbinvd = wbinvd;
                break;
        default:
                /* One row 1b device makes the whole file one that turns WBINVD on once added. */
                v.kvm_attach = skip ? COH_KVM_ATTACH_SKIP : COH_KVM_ATTACH_ADD;
                v.wbinvd = wbinvd;
                break;
        }

        *ret = v;
        if (ret_deciding)
                *ret_deciding = deciding;
}
