/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "decision.h"

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static void assert_decides(enum coh_nosnoop nosnoop, bool ioas_coherent, bool iommu_enforces, enum coh_mode mode,
                           enum coh_decision decision, enum coh_reason reason) {
        enum coh_decision d = -1;
        enum coh_reason r = -1;

        assert_int_equal(coh_decide(nosnoop, ioas_coherent, iommu_enforces, mode, &d, &r), 0);
        assert_int_equal(d, decision);
        assert_int_equal(r, reason);
}

/* Row 1: a device that cannot emit No-Snoop needs nothing, whatever the IOAS and mode. */
static void test_row1_device_coherent_only(void **state) {
        for (enum coh_mode m = 0; m < _COH_MODE_MAX; m++) {
                assert_decides(COH_NOSNOOP_HARDWIRED_OFF, false, false, m,
                               COH_DECISION_NOT_NEEDED, COH_REASON_DEVICE_COHERENT_ONLY);
                assert_decides(COH_NOSNOOP_HARDWIRED_OFF, false, true, m,
                               COH_DECISION_NOT_NEEDED, COH_REASON_DEVICE_COHERENT_ONLY);
                assert_decides(COH_NOSNOOP_HARDWIRED_OFF, true, true, m,
                               COH_DECISION_NOT_NEEDED, COH_REASON_DEVICE_COHERENT_ONLY);
        }
}

static void test_row2_ioas_enforces(void **state) {
        for (enum coh_mode m = 0; m < _COH_MODE_MAX; m++)
                assert_decides(COH_NOSNOOP_CAPABLE, true, true, m,
                               COH_DECISION_NOT_NEEDED, COH_REASON_IOAS_ENFORCES_COHERENCY);
}

static void test_row3_policy_enable(void **state) {
        assert_decides(COH_NOSNOOP_CAPABLE, false, false, COH_MODE_ENABLE,
                       COH_DECISION_GRANTED, COH_REASON_POLICY_ENABLE);
        assert_decides(COH_NOSNOOP_CAPABLE, false, true, COH_MODE_ENABLE,
                       COH_DECISION_GRANTED, COH_REASON_POLICY_ENABLE);
}

static void test_row4_platform_cannot_enforce(void **state) {
        assert_decides(COH_NOSNOOP_CAPABLE, false, false, COH_MODE_AUTOMATIC,
                       COH_DECISION_GRANTED, COH_REASON_PLATFORM_CANNOT_ENFORCE);
}

static void test_row5_coherent_ioas_required(void **state) {
        assert_decides(COH_NOSNOOP_CAPABLE, false, true, COH_MODE_AUTOMATIC,
                       COH_DECISION_REFUSED, COH_REASON_COHERENT_IOAS_REQUIRED);
}

static void test_row6_policy_force_disable(void **state) {
        assert_decides(COH_NOSNOOP_CAPABLE, false, false, COH_MODE_FORCE_DISABLE,
                       COH_DECISION_REFUSED, COH_REASON_POLICY_FORCE_DISABLE);
        assert_decides(COH_NOSNOOP_CAPABLE, false, true, COH_MODE_FORCE_DISABLE,
                       COH_DECISION_REFUSED, COH_REASON_POLICY_FORCE_DISABLE);
}

/* An IOAS claiming coherency its IOMMU cannot give is refused before any row, for every device. */
static void test_invalid_combination(void **state) {
        for (enum coh_nosnoop n = 0; n < _COH_NOSNOOP_MAX; n++)
                for (enum coh_mode m = 0; m < _COH_MODE_MAX; m++) {
                        enum coh_decision d = 42;
                        enum coh_reason r = 42;

                        assert_int_equal(coh_decide(n, true, false, m, &d, &r), -EINVAL);
                        /* Nothing is half-decided. */
                        assert_int_equal(d, 42);
                        assert_int_equal(r, 42);
                }
}

static void test_out_of_range_inputs(void **state) {
        enum coh_decision d;
        enum coh_reason r;

        assert_int_equal(coh_decide(_COH_NOSNOOP_INVALID, false, false, COH_MODE_ENABLE, &d, &r), -EINVAL);
        assert_int_equal(coh_decide(_COH_NOSNOOP_MAX, false, false, COH_MODE_ENABLE, &d, &r), -EINVAL);
        assert_int_equal(coh_decide(COH_NOSNOOP_CAPABLE, false, false, _COH_MODE_INVALID, &d, &r), -EINVAL);
        assert_int_equal(coh_decide(COH_NOSNOOP_CAPABLE, false, false, _COH_MODE_MAX, &d, &r), -EINVAL);
}

/* Rows 1-2 come from the device, 3-6 from the mode: what decides which origin a reply names. */
static void test_reason_from_mode(void **state) {
        assert_false(coh_reason_from_mode(COH_REASON_DEVICE_COHERENT_ONLY));
        assert_false(coh_reason_from_mode(COH_REASON_IOAS_ENFORCES_COHERENCY));
        assert_true(coh_reason_from_mode(COH_REASON_POLICY_ENABLE));
        assert_true(coh_reason_from_mode(COH_REASON_PLATFORM_CANNOT_ENFORCE));
        assert_true(coh_reason_from_mode(COH_REASON_COHERENT_IOAS_REQUIRED));
        assert_true(coh_reason_from_mode(COH_REASON_POLICY_FORCE_DISABLE));
}

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
        assert_null(coh_reason_to_string(_COH_REASON_MAX));
        assert_null(coh_reason_to_string((enum coh_reason) -1));
}

/* Callers that only want the decision may pass NULL for the reason, and the other way round. */
static void test_optional_outputs(void **state) {
        enum coh_decision d;
        enum coh_reason r;

        assert_int_equal(coh_decide(COH_NOSNOOP_CAPABLE, false, true, COH_MODE_AUTOMATIC, &d, NULL), 0);
        assert_int_equal(d, COH_DECISION_REFUSED);
        assert_int_equal(coh_decide(COH_NOSNOOP_CAPABLE, false, true, COH_MODE_AUTOMATIC, NULL, &r), 0);
        assert_int_equal(r, COH_REASON_COHERENT_IOAS_REQUIRED);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_row1_device_coherent_only),
                cmocka_unit_test(test_row2_ioas_enforces),
                cmocka_unit_test(test_row3_policy_enable),
                cmocka_unit_test(test_row4_platform_cannot_enforce),
                cmocka_unit_test(test_row5_coherent_ioas_required),
                cmocka_unit_test(test_row6_policy_force_disable),
                cmocka_unit_test(test_invalid_combination),
                cmocka_unit_test(test_out_of_range_inputs),
                cmocka_unit_test(test_reason_from_mode),
                cmocka_unit_test(test_mode_strings),
                cmocka_unit_test(test_nosnoop_strings),
                cmocka_unit_test(test_decision_strings),
                cmocka_unit_test(test_reason_strings),
                cmocka_unit_test(test_optional_outputs),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
