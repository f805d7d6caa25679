/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the policy made of a device for a peer, remembered: coh_policy_evaluate()
 * walks the rules in order (10,000 rules: 10,000 matches per device), and a
 * VMM that asks again for the same device gets the same answer while neither
 * the policy, nor the device's facts, nor who asks changed. The key is all
 * of what the evaluation reads: the device's facts (every field, as read),
 * and the peer's uid, gid, supplementary groups and unit. The owner drops
 * everything when another policy comes into force (coh_policy_memo_drop()):
 * results point into the policy (their origins).
 */

#include <stddef.h>

#include "facts.h"
#include "policy.h"

#define COH_POLICY_MEMO_MAX 4096u /* entries; when full, all go and it fills again */

struct coh_policy_memo {
        void *tree; /* tsearch() of entries */
        size_t n;
};

/* coh_policy_evaluate(), or what it said before for the same key. m may be NULL. */
void coh_policy_memo_evaluate(struct coh_policy_memo *m, const struct coh_policy *p,
                              const struct coh_device_facts *device, const struct coh_peer *peer,
                              struct coh_policy_result *ret);
void coh_policy_memo_drop(struct coh_policy_memo *m);
