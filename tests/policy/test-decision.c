/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "decision.h"

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define ALLOW COH_ACCESS_ALLOW
#define DENY COH_ACCESS_DENY

static void assert_verdict(const struct coh_verdict *v, enum coh_decision decision, enum coh_reason reason,
                           enum coh_kvm_attach kvm_attach, bool wbinvd, enum coh_decided_by decided_by) {
        assert_int_equal(v->decision, decision);
        assert_int_equal(v->reason, reason);
        assert_int_equal(v->kvm_attach, kvm_attach);
        assert_int_equal(v->wbinvd, wbinvd);
        assert_int_equal(v->decided_by, decided_by);
}

static struct coh_verdict decide(enum coh_access access, enum coh_nosnoop nosnoop, bool ioas_coherent,
                                 bool iommu_enforces, enum coh_mode mode) {
        struct coh_verdict v;

        memset(&v, 0x5a, sizeof v);
        assert_int_equal(coh_decide(access, nosnoop, ioas_coherent, iommu_enforces, mode, &v), 0);
        return v;
}

static void assert_decides(enum coh_access access, enum coh_nosnoop nosnoop, bool ioas_coherent,
                           bool iommu_enforces, enum coh_mode mode, enum coh_decision decision,
                           enum coh_reason reason, enum coh_kvm_attach kvm_attach, bool wbinvd,
                           enum coh_decided_by decided_by) {
        struct coh_verdict v = decide(access, nosnoop, ioas_coherent, iommu_enforces, mode);

        assert_verdict(&v, decision, reason, kvm_attach, wbinvd, decided_by);
}

/* Shorthands for the three shapes a row has. */
#define NOT_NEEDED(reason, attach, wbinvd) \
        COH_DECISION_NOT_NEEDED, COH_REASON_##reason, COH_KVM_ATTACH_##attach, wbinvd, COH_DECIDED_BY_NOSNOOP
#define GRANTED(reason) \
        COH_DECISION_GRANTED, COH_REASON_##reason, COH_KVM_ATTACH_ADD, true, COH_DECIDED_BY_MODE
#define REFUSED(reason, by) \
        COH_DECISION_REFUSED, COH_REASON_##reason, COH_KVM_ATTACH_NONE, false, COH_DECIDED_BY_##by

/* Row 0: access deny refuses first, whatever the device, the IOAS and the mode. */
static void test_row0_access_denied(void **state) {
        for (enum coh_nosnoop n = 0; n < _COH_NOSNOOP_MAX; n++)
                for (enum coh_mode m = 0; m < _COH_MODE_MAX; m++) {
                        assert_decides(DENY, n, false, false, m, REFUSED(ACCESS_DENIED, ACCESS));
                        assert_decides(DENY, n, false, true, m, REFUSED(ACCESS_DENIED, ACCESS));
                        assert_decides(DENY, n, true, true, m, REFUSED(ACCESS_DENIED, ACCESS));
                }
}

/* Row 1: a device that cannot emit No-Snoop, in an IOAS KVM sees as coherent, needs nothing, whatever the mode. */
static void test_row1_device_coherent_only(void **state) {
        for (enum coh_mode m = 0; m < _COH_MODE_MAX; m++)
                assert_decides(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, true, true, m,
                               NOT_NEEDED(DEVICE_COHERENT_ONLY, ADD, false));
}

/* Row 1b: the same device in a non-coherent IOAS: handed over, but adding it would turn WBINVD on. */
static void test_row1b_device_coherent_only_skip(void **state) {
        static const enum coh_mode modes[] = { COH_MODE_ENABLE, COH_MODE_AUTOMATIC };

        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                assert_decides(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, false, false, modes[i],
                               NOT_NEEDED(DEVICE_COHERENT_ONLY, SKIP, true));
                assert_decides(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, false, true, modes[i],
                               NOT_NEEDED(DEVICE_COHERENT_ONLY, SKIP, true));
        }
}

/* Row 1c: under force-disable ("never WBINVD") such a file is not handed out at all. */
static void test_row1c_force_disable(void **state) {
        assert_decides(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, false, false, COH_MODE_FORCE_DISABLE,
                       REFUSED(POLICY_FORCE_DISABLE, MODE));
        assert_decides(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, false, true, COH_MODE_FORCE_DISABLE,
                       REFUSED(POLICY_FORCE_DISABLE, MODE));
}

static void test_row2_ioas_enforces(void **state) {
        for (enum coh_mode m = 0; m < _COH_MODE_MAX; m++)
                assert_decides(ALLOW, COH_NOSNOOP_CAPABLE, true, true, m,
                               NOT_NEEDED(IOAS_ENFORCES_COHERENCY, ADD, false));
}

static void test_row3_policy_enable(void **state) {
        assert_decides(ALLOW, COH_NOSNOOP_CAPABLE, false, false, COH_MODE_ENABLE, GRANTED(POLICY_ENABLE));
        assert_decides(ALLOW, COH_NOSNOOP_CAPABLE, false, true, COH_MODE_ENABLE, GRANTED(POLICY_ENABLE));
}

static void test_row4_platform_cannot_enforce(void **state) {
        assert_decides(ALLOW, COH_NOSNOOP_CAPABLE, false, false, COH_MODE_AUTOMATIC,
                       GRANTED(PLATFORM_CANNOT_ENFORCE));
}

static void test_row5_coherent_ioas_required(void **state) {
        assert_decides(ALLOW, COH_NOSNOOP_CAPABLE, false, true, COH_MODE_AUTOMATIC,
                       REFUSED(COHERENT_IOAS_REQUIRED, MODE));
}

static void test_row6_policy_force_disable(void **state) {
        assert_decides(ALLOW, COH_NOSNOOP_CAPABLE, false, false, COH_MODE_FORCE_DISABLE,
                       REFUSED(POLICY_FORCE_DISABLE, MODE));
        assert_decides(ALLOW, COH_NOSNOOP_CAPABLE, false, true, COH_MODE_FORCE_DISABLE,
                       REFUSED(POLICY_FORCE_DISABLE, MODE));
}

/*
 * The whole input space against DESIGN.md §2 as written: rows in order, "-1"
 * for "any", the first row that fits decides. Written independently of
 * decision.c on purpose, so that a reordered branch there shows up here.
 */
static void test_table_exhaustive(void **state) {
        enum { ANY = -1 };
        static const struct {
                const char *row;
                int access, nosnoop, ioas_coherent, iommu_enforces;
                int modes[_COH_MODE_MAX];  /* ANY in [0]: every mode */
                enum coh_decision decision;
                enum coh_reason reason;
                enum coh_kvm_attach kvm_attach;
                bool wbinvd;
                enum coh_decided_by decided_by;
        } rows[] = {
                { "0", DENY, ANY, ANY, ANY, { ANY }, REFUSED(ACCESS_DENIED, ACCESS) },
                { "1", ALLOW, COH_NOSNOOP_HARDWIRED_OFF, true, ANY, { ANY },
                  NOT_NEEDED(DEVICE_COHERENT_ONLY, ADD, false) },
                { "1b", ALLOW, COH_NOSNOOP_HARDWIRED_OFF, false, ANY, { COH_MODE_ENABLE, COH_MODE_AUTOMATIC, ANY },
                  NOT_NEEDED(DEVICE_COHERENT_ONLY, SKIP, true) },
                { "1c", ALLOW, COH_NOSNOOP_HARDWIRED_OFF, false, ANY, { COH_MODE_FORCE_DISABLE, ANY, ANY },
                  REFUSED(POLICY_FORCE_DISABLE, MODE) },
                { "2", ALLOW, COH_NOSNOOP_CAPABLE, true, ANY, { ANY }, NOT_NEEDED(IOAS_ENFORCES_COHERENCY, ADD, false) },
                { "3", ALLOW, COH_NOSNOOP_CAPABLE, false, ANY, { COH_MODE_ENABLE, ANY, ANY }, GRANTED(POLICY_ENABLE) },
                { "4", ALLOW, COH_NOSNOOP_CAPABLE, false, false, { COH_MODE_AUTOMATIC, ANY, ANY },
                  GRANTED(PLATFORM_CANNOT_ENFORCE) },
                { "5", ALLOW, COH_NOSNOOP_CAPABLE, false, true, { COH_MODE_AUTOMATIC, ANY, ANY },
                  REFUSED(COHERENT_IOAS_REQUIRED, MODE) },
                { "6", ALLOW, COH_NOSNOOP_CAPABLE, false, ANY, { COH_MODE_FORCE_DISABLE, ANY, ANY },
                  REFUSED(POLICY_FORCE_DISABLE, MODE) },
        };
        unsigned decided = 0, invalid = 0;

        for (int a = 0; a < _COH_ACCESS_MAX; a++)
        for (int n = 0; n < _COH_NOSNOOP_MAX; n++)
        for (int ioas = 0; ioas < 2; ioas++)
        for (int enf = 0; enf < 2; enf++)
        for (int m = 0; m < _COH_MODE_MAX; m++) {
                struct coh_verdict v;
                size_t i;

                if (ioas && !enf) {
                        assert_int_equal(coh_decide(a, n, ioas, enf, m, &v), -EINVAL);
                        invalid++;
                        continue;
                }

                for (i = 0; i < ELEMENTSOF(rows); i++) {
                        bool mode_fits = rows[i].modes[0] == ANY;

                        for (size_t k = 0; k < _COH_MODE_MAX && !mode_fits; k++)
                                mode_fits = rows[i].modes[k] == m;
                        if ((rows[i].access == ANY || rows[i].access == a) &&
                            (rows[i].nosnoop == ANY || rows[i].nosnoop == n) &&
                            (rows[i].ioas_coherent == ANY || rows[i].ioas_coherent == ioas) &&
                            (rows[i].iommu_enforces == ANY || rows[i].iommu_enforces == enf) && mode_fits)
                                break;
                }
                if (i == ELEMENTSOF(rows))
                        fail_msg("no row for access=%d nosnoop=%d ioas=%d enforces=%d mode=%d", a, n, ioas, enf, m);

                v = decide(a, n, ioas, enf, m);
                if (v.decision != rows[i].decision || v.reason != rows[i].reason ||
                    v.kvm_attach != rows[i].kvm_attach || v.wbinvd != rows[i].wbinvd ||
                    v.decided_by != rows[i].decided_by)
                        fail_msg("access=%d nosnoop=%d ioas=%d enforces=%d mode=%d: expected row %s, got %s/%s/%d/%d/%d",
                                 a, n, ioas, enf, m, rows[i].row, coh_decision_to_string(v.decision),
                                 coh_reason_to_string(v.reason), v.kvm_attach, v.wbinvd, v.decided_by);

                /* The invariants of §2, whatever the row. */
                assert_int_equal(v.decision == COH_DECISION_REFUSED, v.kvm_attach == COH_KVM_ATTACH_NONE);
                if (v.decision == COH_DECISION_REFUSED)
                        assert_false(v.wbinvd);
                if (v.decision == COH_DECISION_GRANTED)
                        assert_true(v.wbinvd);
                assert_int_equal(v.kvm_attach == COH_KVM_ATTACH_SKIP, v.wbinvd && v.decision == COH_DECISION_NOT_NEEDED);
                decided++;
        }

        assert_int_equal(decided, 36);
        assert_int_equal(invalid, 12);
}

/* An IOAS claiming coherency its IOMMU cannot give is refused before any row, for every device and caller. */
static void test_invalid_combination(void **state) {
        for (enum coh_access a = 0; a < _COH_ACCESS_MAX; a++)
                for (enum coh_nosnoop n = 0; n < _COH_NOSNOOP_MAX; n++)
                        for (enum coh_mode m = 0; m < _COH_MODE_MAX; m++) {
                                struct coh_verdict v, untouched;

                                memset(&v, 0x42, sizeof v);
                                untouched = v;
                                assert_int_equal(coh_decide(a, n, true, false, m, &v), -EINVAL);
                                /* Nothing is half-decided. */
                                assert_memory_equal(&v, &untouched, sizeof v);
                        }
}

static void test_out_of_range_inputs(void **state) {
        struct coh_verdict v;

        assert_int_equal(coh_decide(ALLOW, _COH_NOSNOOP_INVALID, false, false, COH_MODE_ENABLE, &v), -EINVAL);
        assert_int_equal(coh_decide(ALLOW, _COH_NOSNOOP_MAX, false, false, COH_MODE_ENABLE, &v), -EINVAL);
        assert_int_equal(coh_decide(ALLOW, COH_NOSNOOP_CAPABLE, false, false, _COH_MODE_INVALID, &v), -EINVAL);
        assert_int_equal(coh_decide(ALLOW, COH_NOSNOOP_CAPABLE, false, false, _COH_MODE_MAX, &v), -EINVAL);
        assert_int_equal(coh_decide(_COH_ACCESS_INVALID, COH_NOSNOOP_CAPABLE, false, false, COH_MODE_ENABLE, &v),
                         -EINVAL);
        assert_int_equal(coh_decide(_COH_ACCESS_MAX, COH_NOSNOOP_CAPABLE, false, false, COH_MODE_ENABLE, &v),
                         -EINVAL);
        /* An invalid enum is an error even for a caller who is denied anyway. */
        assert_int_equal(coh_decide(DENY, _COH_NOSNOOP_MAX, false, false, COH_MODE_ENABLE, &v), -EINVAL);
        assert_int_equal(coh_decide(DENY, COH_NOSNOOP_CAPABLE, false, false, _COH_MODE_MAX, &v), -EINVAL);
}

/* Rows 1, 1b and 2 come from the device, 1c and 3-6 from the mode, 0 from access: which origin a reply names. */
static void test_decided_by(void **state) {
        assert_int_equal(decide(DENY, COH_NOSNOOP_CAPABLE, false, false, COH_MODE_ENABLE).decided_by,
                         COH_DECIDED_BY_ACCESS);
        assert_int_equal(decide(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, true, true, COH_MODE_FORCE_DISABLE).decided_by,
                         COH_DECIDED_BY_NOSNOOP);
        assert_int_equal(decide(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, false, true, COH_MODE_AUTOMATIC).decided_by,
                         COH_DECIDED_BY_NOSNOOP);
        assert_int_equal(decide(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, false, true, COH_MODE_FORCE_DISABLE).decided_by,
                         COH_DECIDED_BY_MODE);
        assert_int_equal(decide(ALLOW, COH_NOSNOOP_CAPABLE, true, true, COH_MODE_FORCE_DISABLE).decided_by,
                         COH_DECIDED_BY_NOSNOOP);
        assert_int_equal(decide(ALLOW, COH_NOSNOOP_CAPABLE, false, true, COH_MODE_ENABLE).decided_by,
                         COH_DECIDED_BY_MODE);
        assert_int_equal(decide(ALLOW, COH_NOSNOOP_CAPABLE, false, false, COH_MODE_AUTOMATIC).decided_by,
                         COH_DECIDED_BY_MODE);
        assert_int_equal(decide(ALLOW, COH_NOSNOOP_CAPABLE, false, true, COH_MODE_AUTOMATIC).decided_by,
                         COH_DECIDED_BY_MODE);
        assert_int_equal(decide(ALLOW, COH_NOSNOOP_CAPABLE, false, true, COH_MODE_FORCE_DISABLE).decided_by,
                         COH_DECIDED_BY_MODE);
}

/* Callers that only want to know whether a request is valid may pass NULL. */
static void test_optional_output(void **state) {
        assert_int_equal(coh_decide(ALLOW, COH_NOSNOOP_CAPABLE, false, true, COH_MODE_AUTOMATIC, NULL), 0);
        assert_int_equal(coh_decide(ALLOW, COH_NOSNOOP_CAPABLE, true, false, COH_MODE_AUTOMATIC, NULL), -EINVAL);
}

/* ---------------------------------------------------------------------------------------------- */
/* Groups */

static struct coh_verdict row(const char *name) {
        if (strcmp(name, "0") == 0)
                return decide(DENY, COH_NOSNOOP_CAPABLE, false, false, COH_MODE_ENABLE);
        if (strcmp(name, "1") == 0)
                return decide(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, true, true, COH_MODE_AUTOMATIC);
        if (strcmp(name, "1b") == 0)
                return decide(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, false, false, COH_MODE_AUTOMATIC);
        if (strcmp(name, "1c") == 0)
                return decide(ALLOW, COH_NOSNOOP_HARDWIRED_OFF, false, false, COH_MODE_FORCE_DISABLE);
        if (strcmp(name, "2") == 0)
                return decide(ALLOW, COH_NOSNOOP_CAPABLE, true, true, COH_MODE_AUTOMATIC);
        if (strcmp(name, "3") == 0)
                return decide(ALLOW, COH_NOSNOOP_CAPABLE, false, true, COH_MODE_ENABLE);
        if (strcmp(name, "4") == 0)
                return decide(ALLOW, COH_NOSNOOP_CAPABLE, false, false, COH_MODE_AUTOMATIC);
        if (strcmp(name, "5") == 0)
                return decide(ALLOW, COH_NOSNOOP_CAPABLE, false, true, COH_MODE_AUTOMATIC);
        if (strcmp(name, "6") == 0)
                return decide(ALLOW, COH_NOSNOOP_CAPABLE, false, true, COH_MODE_FORCE_DISABLE);
        fail_msg("no row %s", name);
        return (struct coh_verdict) {};
}

#define GROUP_MAX 8

/* Decides a group whose devices are the rows named, separated by blanks. */
static struct coh_verdict decide_group(const char *rows, size_t *ret_deciding) {
        struct coh_verdict devices[GROUP_MAX], v;
        char buf[64], *save = NULL;
        size_t n = 0;

        snprintf(buf, sizeof buf, "%s", rows);
        for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                assert_true(n < GROUP_MAX);
                devices[n++] = row(w);
        }
        memset(&v, 0x5a, sizeof v);
        *ret_deciding = 4242;
        coh_decide_group(devices, n, &v, ret_deciding);
        assert_true(*ret_deciding < n);
        return v;
}

static void assert_group(const char *rows, size_t deciding, enum coh_decision decision, enum coh_reason reason,
                         enum coh_kvm_attach kvm_attach, bool wbinvd, enum coh_decided_by decided_by) {
        size_t d;
        struct coh_verdict v = decide_group(rows, &d);

        if (d != deciding || v.decision != decision || v.reason != reason || v.kvm_attach != kvm_attach ||
            v.wbinvd != wbinvd || v.decided_by != decided_by)
                fail_msg("group [%s]: expected device %zu %s/%s/%s/%d/%d, got device %zu %s/%s/%s/%d/%d", rows,
                         deciding, coh_decision_to_string(decision), coh_reason_to_string(reason),
                         coh_kvm_attach_to_string(kvm_attach), wbinvd, decided_by,
                         d, coh_decision_to_string(v.decision), coh_reason_to_string(v.reason),
                         coh_kvm_attach_to_string(v.kvm_attach), v.wbinvd, v.decided_by);
}

/* A group of one is its device. */
static void test_group_single(void **state) {
        static const char *const rows[] = { "0", "1", "1b", "1c", "2", "3", "4", "5", "6" };

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                struct coh_verdict expected = row(rows[i]), v;
                size_t d;

                v = decide_group(rows[i], &d);
                assert_int_equal(d, 0);
                assert_verdict(&v, expected.decision, expected.reason, expected.kvm_attach, expected.wbinvd,
                               expected.decided_by);
        }
}

/* Refused beats granted beats not-needed; the deciding device is the first of the highest rank. */
static void test_group_precedence(void **state) {
        assert_group("2 3", 1, GRANTED(POLICY_ENABLE));
        assert_group("3 2", 0, GRANTED(POLICY_ENABLE));
        assert_group("1 4 2", 1, GRANTED(PLATFORM_CANNOT_ENFORCE));
        assert_group("2 3 5", 2, REFUSED(COHERENT_IOAS_REQUIRED, MODE));
        assert_group("5 3 2", 0, REFUSED(COHERENT_IOAS_REQUIRED, MODE));
        assert_group("3 6 5", 1, REFUSED(POLICY_FORCE_DISABLE, MODE));
        assert_group("3 5 6", 1, REFUSED(COHERENT_IOAS_REQUIRED, MODE));
        assert_group("2 2 0", 2, REFUSED(ACCESS_DENIED, ACCESS));
        assert_group("1b 1c", 1, REFUSED(POLICY_FORCE_DISABLE, MODE));
        assert_group("4 3", 0, GRANTED(PLATFORM_CANNOT_ENFORCE));
        assert_group("2 1", 0, NOT_NEEDED(IOAS_ENFORCES_COHERENCY, ADD, false));
        assert_group("1 2", 0, NOT_NEEDED(DEVICE_COHERENT_ONLY, ADD, false));
}

/* One row 1b device makes a not-needed file one that turns WBINVD on once added: skip it. */
static void test_group_not_needed_with_1b(void **state) {
        assert_group("1b", 0, NOT_NEEDED(DEVICE_COHERENT_ONLY, SKIP, true));
        /* The deciding device is row 2 (the first), but the file is the group's. */
        assert_group("2 1b", 0, COH_DECISION_NOT_NEEDED, COH_REASON_IOAS_ENFORCES_COHERENCY, COH_KVM_ATTACH_SKIP,
                     true, COH_DECIDED_BY_NOSNOOP);
        assert_group("1 1 1b", 0, NOT_NEEDED(DEVICE_COHERENT_ONLY, SKIP, true));
        assert_group("1b 1", 0, NOT_NEEDED(DEVICE_COHERENT_ONLY, SKIP, true));
}

/* A granted file is added, row 1b devices or not: adding is what turns the granted WBINVD on. */
static void test_group_granted_with_1b(void **state) {
        assert_group("3 1b", 0, GRANTED(POLICY_ENABLE));
        assert_group("1b 4", 1, GRANTED(PLATFORM_CANNOT_ENFORCE));
        assert_group("1b 2 3 1", 2, GRANTED(POLICY_ENABLE));
}

/* Nothing of a refused file is handed over: no kvmAttach, no wbinvd, whatever its other devices. */
static void test_group_refused_hands_nothing(void **state) {
        assert_group("1b 0", 1, REFUSED(ACCESS_DENIED, ACCESS));
        assert_group("3 1b 5", 2, REFUSED(COHERENT_IOAS_REQUIRED, MODE));
        assert_group("4 6 1b", 1, REFUSED(POLICY_FORCE_DISABLE, MODE));
}

static void test_group_deciding_optional(void **state) {
        struct coh_verdict devices[] = { row("2"), row("5") }, v;

        coh_decide_group(devices, ELEMENTSOF(devices), &v, NULL);
        assert_verdict(&v, REFUSED(COHERENT_IOAS_REQUIRED, MODE));
}

/* ---------------------------------------------------------------------------------------------- */
/* Strings */

static void test_mode_strings(void **state) {
        static const struct {
                enum coh_mode m;
                const char *s;
        } t[] = {
                { COH_MODE_ENABLE, "enable" },
                { COH_MODE_AUTOMATIC, "automatic" },
                { COH_MODE_FORCE_DISABLE, "force-disable" },
        };

        assert_int_equal(ELEMENTSOF(t), _COH_MODE_MAX);
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                assert_string_equal(coh_mode_to_string(t[i].m), t[i].s);
                assert_int_equal(coh_mode_from_string(t[i].s), t[i].m);
        }
        assert_null(coh_mode_to_string(_COH_MODE_MAX));
        assert_null(coh_mode_to_string(_COH_MODE_INVALID));
        assert_int_equal(coh_mode_from_string("Enable"), _COH_MODE_INVALID);
        assert_int_equal(coh_mode_from_string("force_disable"), _COH_MODE_INVALID);
        assert_int_equal(coh_mode_from_string(" enable"), _COH_MODE_INVALID);
        assert_int_equal(coh_mode_from_string(""), _COH_MODE_INVALID);
        assert_int_equal(coh_mode_from_string(NULL), _COH_MODE_INVALID);
}

static void test_nosnoop_strings(void **state) {
        assert_string_equal(coh_nosnoop_to_string(COH_NOSNOOP_CAPABLE), "capable");
        assert_string_equal(coh_nosnoop_to_string(COH_NOSNOOP_HARDWIRED_OFF), "hardwired-off");
        assert_null(coh_nosnoop_to_string(_COH_NOSNOOP_MAX));
        assert_null(coh_nosnoop_to_string(_COH_NOSNOOP_INVALID));
        assert_int_equal(coh_nosnoop_from_string("capable"), COH_NOSNOOP_CAPABLE);
        assert_int_equal(coh_nosnoop_from_string("hardwired-off"), COH_NOSNOOP_HARDWIRED_OFF);
        assert_int_equal(coh_nosnoop_from_string("hardwired_off"), _COH_NOSNOOP_INVALID);
        assert_int_equal(coh_nosnoop_from_string("off"), _COH_NOSNOOP_INVALID);
        assert_int_equal(coh_nosnoop_from_string(NULL), _COH_NOSNOOP_INVALID);
}

static void test_access_strings(void **state) {
        assert_string_equal(coh_access_to_string(COH_ACCESS_DENY), "deny");
        assert_string_equal(coh_access_to_string(COH_ACCESS_ALLOW), "allow");
        assert_null(coh_access_to_string(_COH_ACCESS_MAX));
        assert_null(coh_access_to_string(_COH_ACCESS_INVALID));
        assert_int_equal(coh_access_from_string("deny"), COH_ACCESS_DENY);
        assert_int_equal(coh_access_from_string("allow"), COH_ACCESS_ALLOW);
        assert_int_equal(coh_access_from_string("Allow"), _COH_ACCESS_INVALID);
        assert_int_equal(coh_access_from_string("yes"), _COH_ACCESS_INVALID);
        assert_int_equal(coh_access_from_string("allow "), _COH_ACCESS_INVALID);
        assert_int_equal(coh_access_from_string(""), _COH_ACCESS_INVALID);
        assert_int_equal(coh_access_from_string(NULL), _COH_ACCESS_INVALID);
}

static void test_kvm_attach_strings(void **state) {
        assert_null(coh_kvm_attach_to_string(COH_KVM_ATTACH_NONE));
        assert_string_equal(coh_kvm_attach_to_string(COH_KVM_ATTACH_ADD), "add");
        assert_string_equal(coh_kvm_attach_to_string(COH_KVM_ATTACH_SKIP), "skip");
        assert_null(coh_kvm_attach_to_string(_COH_KVM_ATTACH_MAX));
        assert_null(coh_kvm_attach_to_string((enum coh_kvm_attach) -1));
}

static void test_decision_strings(void **state) {
        assert_string_equal(coh_decision_to_string(COH_DECISION_NOT_NEEDED), "not-needed");
        assert_string_equal(coh_decision_to_string(COH_DECISION_GRANTED), "granted");
        assert_string_equal(coh_decision_to_string(COH_DECISION_REFUSED), "refused");
        assert_null(coh_decision_to_string(_COH_DECISION_MAX));
        assert_null(coh_decision_to_string((enum coh_decision) -1));
}

static void test_reason_strings(void **state) {
        assert_string_equal(coh_reason_to_string(COH_REASON_DEVICE_COHERENT_ONLY), "device-coherent-only");
        assert_string_equal(coh_reason_to_string(COH_REASON_IOAS_ENFORCES_COHERENCY), "ioas-enforces-coherency");
        assert_string_equal(coh_reason_to_string(COH_REASON_POLICY_ENABLE), "policy-enable");
        assert_string_equal(coh_reason_to_string(COH_REASON_PLATFORM_CANNOT_ENFORCE), "platform-cannot-enforce");
        assert_string_equal(coh_reason_to_string(COH_REASON_COHERENT_IOAS_REQUIRED), "coherent-ioas-required");
        assert_string_equal(coh_reason_to_string(COH_REASON_POLICY_FORCE_DISABLE), "policy-force-disable");
        assert_string_equal(coh_reason_to_string(COH_REASON_ACCESS_DENIED), "access-denied");
        assert_null(coh_reason_to_string(_COH_REASON_MAX));
        assert_null(coh_reason_to_string((enum coh_reason) -1));
        /* Every reason has a string. */
        for (enum coh_reason r = 0; r < _COH_REASON_MAX; r++)
                assert_non_null(coh_reason_to_string(r));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_row0_access_denied),
                cmocka_unit_test(test_row1_device_coherent_only),
                cmocka_unit_test(test_row1b_device_coherent_only_skip),
                cmocka_unit_test(test_row1c_force_disable),
                cmocka_unit_test(test_row2_ioas_enforces),
                cmocka_unit_test(test_row3_policy_enable),
                cmocka_unit_test(test_row4_platform_cannot_enforce),
                cmocka_unit_test(test_row5_coherent_ioas_required),
                cmocka_unit_test(test_row6_policy_force_disable),
                cmocka_unit_test(test_table_exhaustive),
                cmocka_unit_test(test_invalid_combination),
                cmocka_unit_test(test_out_of_range_inputs),
                cmocka_unit_test(test_decided_by),
                cmocka_unit_test(test_optional_output),
                cmocka_unit_test(test_group_single),
                cmocka_unit_test(test_group_precedence),
                cmocka_unit_test(test_group_not_needed_with_1b),
                cmocka_unit_test(test_group_granted_with_1b),
                cmocka_unit_test(test_group_refused_hands_nothing),
                cmocka_unit_test(test_group_deciding_optional),
                cmocka_unit_test(test_mode_strings),
                cmocka_unit_test(test_nosnoop_strings),
                cmocka_unit_test(test_access_strings),
                cmocka_unit_test(test_kvm_attach_strings),
                cmocka_unit_test(test_decision_strings),
                cmocka_unit_test(test_reason_strings),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
