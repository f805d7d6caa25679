/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Text built into a caller's fixed buffer: strings and decimal integers
 * appended in order, cut short (and terminated) where the buffer ends, as
 * snprintf() cuts, so a message built here is byte for byte the one
 * snprintf() made. For the journal records written on every grant, where
 * vfprintf() cost more than the rest of the record (bench/README.md, issue
 * 11); anything not on that path keeps snprintf().
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct coh_strbuf {
        char *buf;
        size_t size; /* of buf, > 0 */
        size_t len;  /* bytes in buf before the terminating NUL, < size */
        bool truncated;
};

/* Starts an empty, terminated text in buf[size]; size must be > 0. */
void coh_strbuf_init(struct coh_strbuf *sb, char *buf, size_t size);

void coh_strbuf_put(struct coh_strbuf *sb, const char *s, size_t n);
/* s NULL reads "(null)", as glibc's "%s" has it, so no message changes and none crashes the
 * daemon. Inline: the length of a literal is then known when compiling. */
static inline void coh_strbuf_puts(struct coh_strbuf *sb, const char *s) {
        if (!s)
                s = "(null)";
        coh_strbuf_put(sb, s, strlen(s));
}

/* Decimal, as "%" PRId64 / "%" PRIu64 spell it. */
void coh_strbuf_int(struct coh_strbuf *sb, int64_t i);
void coh_strbuf_uint(struct coh_strbuf *sb, uint64_t u);
/* Decimal with at least width digits, zeros in front: "%0*" PRIu64 with width <= 20. */
void coh_strbuf_uint_pad(struct coh_strbuf *sb, uint64_t u, unsigned width);

/* Where the integers are formatted: into digits[20], returning the first digit; the digits run
 * to digits + 20 (no terminator). */
char *coh_format_uint(char digits[static 20], uint64_t u);
