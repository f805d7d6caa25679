/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The string builder (strbuf.h) against snprintf(), which it replaces in the
 * journal's messages: the same text, and cut at the same byte, for every
 * buffer size from 1 up, including integers at their limits.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "strbuf.h"

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

static const int64_t ints[] = { 0, 1, -1, 9, 10, -10, 99, 100, 4242, INT32_MAX, INT32_MIN,
                                (int64_t) INT32_MAX + 1, 1000000000000000000, INT64_MAX, INT64_MIN,
                                INT64_MIN + 1 };
static const uint64_t uints[] = { 0, 1, 9, 10, 999, 1000, UINT32_MAX, 10000000000000000000u,
                                  UINT64_MAX - 1, UINT64_MAX };

/* A text like the grant end's message, built both ways into buffers of size, must match. */
static void build_both(size_t size, int64_t i, uint64_t u, unsigned pad) {
        char expected[128], got[128], canary[] = "canary";
        struct coh_strbuf sb;
        int n;

        assert_true(size <= sizeof got - sizeof canary);
        n = snprintf(expected, size, "Grant %s pid %" PRId64 " after %" PRIu64 ".%0*" PRIu64 "s%s", "g-1", i, u,
                     (int) pad, u % 1000, "; end");
        assert_true(n > 0);

        memcpy(got + size, canary, sizeof canary);
        coh_strbuf_init(&sb, got, size);
        coh_strbuf_puts(&sb, "Grant ");
        coh_strbuf_puts(&sb, "g-1");
        coh_strbuf_put(&sb, " pid xyz", 5);
        coh_strbuf_int(&sb, i);
        coh_strbuf_puts(&sb, " after ");
        coh_strbuf_uint(&sb, u);
        coh_strbuf_put(&sb, ".", 1);
        coh_strbuf_uint_pad(&sb, u % 1000, pad);
        coh_strbuf_puts(&sb, "s");
        coh_strbuf_puts(&sb, "; end");

        assert_string_equal(got, expected);
        assert_int_equal(sb.len, strlen(expected));
        assert_int_equal(sb.truncated, (size_t) n >= size);
        /* Never a byte past the buffer. */
        assert_memory_equal(got + size, canary, sizeof canary);
}

static void test_same_as_snprintf(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(ints); i++)
                for (size_t u = 0; u < ELEMENTSOF(uints); u++)
                        for (unsigned pad = 0; pad <= 3; pad += 3)
                                for (size_t size = 1; size <= 96; size++)
                                        build_both(size, ints[i], uints[u], pad);
}

static void test_integers(void **state) {
        char buf[32], expected[32];
        struct coh_strbuf sb;

        for (size_t i = 0; i < ELEMENTSOF(ints); i++) {
                coh_strbuf_init(&sb, buf, sizeof buf);
                coh_strbuf_int(&sb, ints[i]);
                snprintf(expected, sizeof expected, "%" PRId64, ints[i]);
                assert_string_equal(buf, expected);
                assert_false(sb.truncated);
        }
        coh_strbuf_init(&sb, buf, sizeof buf);
        coh_strbuf_int(&sb, INT64_MIN);
        assert_string_equal(buf, "-9223372036854775808");
        coh_strbuf_init(&sb, buf, sizeof buf);
        coh_strbuf_uint(&sb, UINT64_MAX);
        assert_string_equal(buf, "18446744073709551615");
        coh_strbuf_init(&sb, buf, sizeof buf);
        coh_strbuf_uint_pad(&sb, 7, 3);
        coh_strbuf_uint_pad(&sb, 1234, 3);
        coh_strbuf_uint_pad(&sb, 0, 20);
        assert_string_equal(buf, "0071234" "00000000000000000000");
}

/* A NULL string as glibc's printf spells it: a message with a missing word stays the same. */
static void test_null_string(void **state) {
        char buf[32], expected[32];
        const char *none = NULL;
        struct coh_strbuf sb;

        coh_strbuf_init(&sb, buf, sizeof buf);
        coh_strbuf_puts(&sb, "by ");
        coh_strbuf_puts(&sb, none);
        snprintf(expected, sizeof expected, "by %s", "(null)");
        assert_string_equal(buf, expected);
}

static void test_size_one_stays_empty(void **state) {
        char buf[1] = { 'x' };
        struct coh_strbuf sb;

        coh_strbuf_init(&sb, buf, sizeof buf);
        assert_string_equal(buf, "");
        assert_false(sb.truncated);
        coh_strbuf_puts(&sb, "");
        assert_false(sb.truncated);
        coh_strbuf_int(&sb, INT64_MIN);
        coh_strbuf_puts(&sb, "more");
        assert_string_equal(buf, "");
        assert_int_equal(sb.len, 0);
        assert_true(sb.truncated);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_same_as_snprintf),
                cmocka_unit_test(test_integers),
                cmocka_unit_test(test_null_string),
                cmocka_unit_test(test_size_one_stays_empty),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
