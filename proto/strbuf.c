/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <string.h>

#include "strbuf.h"

#define UINT64_DIGITS 20 /* 18446744073709551615 */

void coh_strbuf_init(struct coh_strbuf *sb, char *buf, size_t size) {
        assert(buf);
        assert(size > 0);
        *sb = (struct coh_strbuf) { .buf = buf, .size = size };
        buf[0] = 0;
}

void coh_strbuf_put(struct coh_strbuf *sb, const char *s, size_t n) {
        size_t room = sb->size - 1 - sb->len;

        if (n > room) {
                n = room;
                sb->truncated = true;
        }
        memcpy(sb->buf + sb->len, s, n);
        sb->len += n;
        sb->buf[sb->len] = 0;
}

char *coh_format_uint(char digits[static UINT64_DIGITS], uint64_t u) {
        char *p = digits + UINT64_DIGITS;

        do
                *--p = (char) ('0' + u % 10);
        while (u /= 10);
        return p;
}

void coh_strbuf_uint_pad(struct coh_strbuf *sb, uint64_t u, unsigned width) {
        char digits[UINT64_DIGITS], *p = coh_format_uint(digits, u);

        assert(width <= UINT64_DIGITS);
        while (p > digits + UINT64_DIGITS - width)
                *--p = '0';
        coh_strbuf_put(sb, p, (size_t) (digits + UINT64_DIGITS - p));
}

void coh_strbuf_uint(struct coh_strbuf *sb, uint64_t u) {
        coh_strbuf_uint_pad(sb, u, 0);
}

void coh_strbuf_int(struct coh_strbuf *sb, int64_t i) {
        if (i < 0) {
                coh_strbuf_put(sb, "-", 1);
                /* In unsigned arithmetic: -INT64_MIN does not fit an int64_t. */
                coh_strbuf_uint(sb, -(uint64_t) i);
        } else
                coh_strbuf_uint(sb, (uint64_t) i);
}
