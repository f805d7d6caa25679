/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The wire protocol's words: decisions, reasons, modes and the rest, as
 * replies, journal records, the fd store and libcoherency spell them. These
 * strings are part of the protocol: never rename one.
 */

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

enum coh_grant_state {
        COH_GRANT_ACTIVE,
        COH_GRANT_ENDING,
        COH_GRANT_ENDED,  /* only in the "ended" event: the grant is gone right after */
        _COH_GRANT_STATE_MAX,
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

/* "active", "ending", "ended" */
const char *coh_grant_state_to_string(enum coh_grant_state s);
enum coh_grant_state coh_grant_state_from_string(const char *s);
/* A grant's wbinvd: "allowed" (adding the file turns WBINVD on) or "none". */
const char *coh_wbinvd_to_string(bool allowed);
/* A VM's vmWbinvd: "allowed" or "noop". */
const char *coh_vm_wbinvd_to_string(bool allowed);

/* A word table, for field tables (record.h): words[i] names value i (NULL: no word). */
struct coh_words {
        const char *const *words;
        int n;
};
extern const struct coh_words coh_mode_wordset, coh_access_wordset, coh_nosnoop_wordset, coh_decision_wordset, coh_reason_wordset, coh_kvm_attach_wordset,
        coh_grant_state_wordset, coh_wbinvd_wordset, coh_vm_wbinvd_wordset;
/* NULL for a value without a word; -1 for a word not in the table. */
const char *coh_words_to_string(const struct coh_words *w, int i);
int coh_words_from_string(const struct coh_words *w, const char *s);
