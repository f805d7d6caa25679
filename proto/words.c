/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>
#include <string.h>

#include "words.h"

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

const char *const coh_mode_words[_COH_MODE_MAX] = {
        [COH_MODE_ENABLE] = "enable",
        [COH_MODE_AUTOMATIC] = "automatic",
        [COH_MODE_FORCE_DISABLE] = "force-disable",
};

static const char *const nosnoop_table[_COH_NOSNOOP_MAX] = {
        [COH_NOSNOOP_CAPABLE] = "capable",
        [COH_NOSNOOP_HARDWIRED_OFF] = "hardwired-off",
};

static const char *const access_table[_COH_ACCESS_MAX] = {
        [COH_ACCESS_DENY] = "deny",
        [COH_ACCESS_ALLOW] = "allow",
};

/* NONE has no string: nothing was handed over, so the reply carries no kvmAttach. */
const char *const coh_kvm_attach_words[_COH_KVM_ATTACH_MAX] = {
        [COH_KVM_ATTACH_ADD] = "add",
        [COH_KVM_ATTACH_SKIP] = "skip",
};

const char *const coh_decision_words[_COH_DECISION_MAX] = {
        [COH_DECISION_NOT_NEEDED] = "not-needed",
        [COH_DECISION_GRANTED] = "granted",
        [COH_DECISION_REFUSED] = "refused",
};

/* These strings are part of the wire protocol and the journal: never rename them. */
const char *const coh_reason_words[_COH_REASON_MAX] = {
        [COH_REASON_DEVICE_COHERENT_ONLY] = "device-coherent-only",
        [COH_REASON_IOAS_ENFORCES_COHERENCY] = "ioas-enforces-coherency",
        [COH_REASON_POLICY_ENABLE] = "policy-enable",
        [COH_REASON_PLATFORM_CANNOT_ENFORCE] = "platform-cannot-enforce",
        [COH_REASON_COHERENT_IOAS_REQUIRED] = "coherent-ioas-required",
        [COH_REASON_POLICY_FORCE_DISABLE] = "policy-force-disable",
        [COH_REASON_ACCESS_DENIED] = "access-denied",
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
        return table_to_string(coh_mode_words, (size_t) _COH_MODE_MAX, m);
}

enum coh_mode coh_mode_from_string(const char *s) {
        return table_from_string(coh_mode_words, (size_t) _COH_MODE_MAX, s);
}

const char *coh_nosnoop_to_string(enum coh_nosnoop n) {
        return table_to_string(nosnoop_table, ELEMENTSOF(nosnoop_table), n);
}

enum coh_nosnoop coh_nosnoop_from_string(const char *s) {
        return table_from_string(nosnoop_table, ELEMENTSOF(nosnoop_table), s);
}

const char *coh_access_to_string(enum coh_access a) {
        return table_to_string(access_table, ELEMENTSOF(access_table), a);
}

enum coh_access coh_access_from_string(const char *s) {
        return table_from_string(access_table, ELEMENTSOF(access_table), s);
}

const char *coh_kvm_attach_to_string(enum coh_kvm_attach k) {
        return table_to_string(coh_kvm_attach_words, (size_t) _COH_KVM_ATTACH_MAX, k);
}

const char *coh_decision_to_string(enum coh_decision d) {
        return table_to_string(coh_decision_words, (size_t) _COH_DECISION_MAX, d);
}

const char *coh_reason_to_string(enum coh_reason r) {
        return table_to_string(coh_reason_words, (size_t) _COH_REASON_MAX, r);
}

const char *const coh_grant_state_words[_COH_GRANT_STATE_MAX] = {
        [COH_GRANT_ACTIVE] = "active",
        [COH_GRANT_ENDING] = "ending",
        [COH_GRANT_ENDED] = "ended",
};

const char *const coh_wbinvd_words[2] = { "none", "allowed" };
const char *const coh_vm_wbinvd_words[2] = { "noop", "allowed" };

const struct coh_words coh_mode_wordset = { coh_mode_words, _COH_MODE_MAX };
const struct coh_words coh_access_wordset = { access_table, _COH_ACCESS_MAX };
const struct coh_words coh_nosnoop_wordset = { nosnoop_table, _COH_NOSNOOP_MAX };
const struct coh_words coh_decision_wordset = { coh_decision_words, _COH_DECISION_MAX };
const struct coh_words coh_reason_wordset = { coh_reason_words, _COH_REASON_MAX };
const struct coh_words coh_kvm_attach_wordset = { coh_kvm_attach_words, _COH_KVM_ATTACH_MAX };
const struct coh_words coh_grant_state_wordset = { coh_grant_state_words, _COH_GRANT_STATE_MAX };
const struct coh_words coh_wbinvd_wordset = { coh_wbinvd_words, 2 };
const struct coh_words coh_vm_wbinvd_wordset = { coh_vm_wbinvd_words, 2 };

const char *coh_words_to_string(const struct coh_words *w, int i) {
        return table_to_string(w->words, (size_t) w->n, i);
}

int coh_words_from_string(const struct coh_words *w, const char *s) {
        return table_from_string(w->words, (size_t) w->n, s);
}

const char *coh_grant_state_to_string(enum coh_grant_state s) {
        return table_to_string(coh_grant_state_words, _COH_GRANT_STATE_MAX, s);
}

enum coh_grant_state coh_grant_state_from_string(const char *s) {
        return table_from_string(coh_grant_state_words, _COH_GRANT_STATE_MAX, s);
}

const char *coh_wbinvd_to_string(bool allowed) {
        return coh_wbinvd_words[allowed];
}

const char *coh_vm_wbinvd_to_string(bool allowed) {
        return coh_vm_wbinvd_words[allowed];
}
