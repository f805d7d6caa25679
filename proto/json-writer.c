/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "json-writer.h"

/* Big enough for a RequestGrant reply with a few devices, so that most replies grow it never. */
#define INITIAL_SIZE 2048

static bool grow(struct coh_json_writer *w, size_t n) {
        /* n bytes and the NUL after them. */
        if (w->failed || coh_buffer_reserve(&w->buf, &w->size, w->len + 1, n, INITIAL_SIZE) < 0) {
                w->failed = true;
                return false;
        }
        return true;
}

/* Room for n more bytes and the NUL; never once an allocation failed. */
static inline bool reserve(struct coh_json_writer *w, size_t n) {
        if (w->size - w->len > n && !w->failed)
                return true;
        return grow(w, n);
}

static inline void put(struct coh_json_writer *w, const char *s, size_t n) {
        if (!reserve(w, n))
                return;
        memcpy(w->buf + w->len, s, n);
        w->len += n;
}

static inline void put_char(struct coh_json_writer *w, char c) {
        if (!reserve(w, 1))
                return;
        w->buf[w->len++] = c;
}

/* Before a value, or a key: the comma after the previous one. */
static inline void separate(struct coh_json_writer *w) {
        if (w->comma)
                put_char(w, ',');
}

/* The escapes json-c writes (json_escape_str()); the other bytes below 0x20 are \u00XX. */
static const char short_escape[0x20] = {
        ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r',
};

/* The bytes that need an escape: below 0x20, '"' and '\\'. */
static const bool to_escape[256] = {
        [0x00 ... 0x1f] = true, ['"'] = true, ['\\'] = true,
};

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Whether any of the 8 bytes in x needs an escape: below 0x20, '"' or '\\'
 * (the zero-byte tests of Hacker's Delight 6-1, exact when only asked "any?"). */
static inline bool any_to_escape(uint64_t x) {
        uint64_t quote = x ^ (ONES * '"'), backslash = x ^ (ONES * '\\');
        uint64_t t = ((x - ONES * 0x20) & ~x) | ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash);
        return t & HIGHS;
}

static void put_quoted(struct coh_json_writer *w, const char *s, size_t n) {
        static const char hex[] = "0123456789abcdef";
        /* At most 6 bytes for each byte of s, the quotes, and a ':' after a key. */
        if (n > (SIZE_MAX - 3) / 6)
                w->failed = true;
        if (!reserve(w, n * 6 + 3))
                return;
        char *o = w->buf + w->len;
        *o++ = '"';
        size_t i = 0;
        /* Eight at a time while none needs an escape: most strings are plain. */
        for (; i + 8 <= n; i += 8) {
                uint64_t x;
                memcpy(&x, s + i, 8);
                if (any_to_escape(x))
                        break;
                memcpy(o, &x, 8);
                o += 8;
        }
        for (; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (!to_escape[c]) {
                        *o++ = (char) c;
                        continue;
                }
                *o++ = '\\';
                if (c == '"' || c == '\\')
                        *o++ = (char) c;
                else if (short_escape[c])
                        *o++ = short_escape[c];
                else {
                        memcpy(o, "u00", 3);
                        o[3] = hex[c >> 4];
                        o[4] = hex[c & 0xf];
                        o += 5;
                }
        }
        *o++ = '"';
        w->len = (size_t) (o - w->buf);
}

void coh_jw_object_begin(struct coh_json_writer *w) {
        separate(w);
        put_char(w, '{');
        w->comma = false;
}

void coh_jw_object_end(struct coh_json_writer *w) {
        put_char(w, '}');
        w->comma = true;
}

void coh_jw_array_begin(struct coh_json_writer *w) {
        separate(w);
        put_char(w, '[');
        w->comma = false;
}

void coh_jw_array_end(struct coh_json_writer *w) {
        put_char(w, ']');
        w->comma = true;
}

void coh_jw_key_len(struct coh_json_writer *w, const char *key, size_t n) {
        separate(w);
        put_quoted(w, key, n);
        if (!w->failed)
                w->buf[w->len++] = ':'; /* put_quoted() reserved it */
        w->comma = false;
}

void coh_jw_key(struct coh_json_writer *w, const char *key) {
        coh_jw_key_len(w, key, strlen(key));
}

void coh_jw_key_plain(struct coh_json_writer *w, const char *key) {
        size_t n = strlen(key);
        separate(w);
        if (!reserve(w, n + 3))
                return;
#ifndef NDEBUG
        for (size_t i = 0; i < n; i++)
                assert(!to_escape[(unsigned char) key[i]]);
#endif
        char *o = w->buf + w->len;
        *o++ = '"';
        o = mempcpy(o, key, n);
        *o++ = '"';
        *o++ = ':';
        w->len = (size_t) (o - w->buf);
        w->comma = false;
}

void coh_jw_string_len(struct coh_json_writer *w, const char *s, size_t n) {
        separate(w);
        put_quoted(w, s, n);
        w->comma = true;
}

void coh_jw_string(struct coh_json_writer *w, const char *s) {
        coh_jw_string_len(w, s, strlen(s));
}

void coh_jw_int(struct coh_json_writer *w, int64_t i) {
        /* By hand: vfprintf was a tenth of a grant cycle (bench/README.md). */
        char digits[20], *p = digits + sizeof digits;
        uint64_t u = i < 0 ? -(uint64_t) i : (uint64_t) i;
        do
                *--p = (char) ('0' + u % 10);
        while (u /= 10);
        separate(w);
        if (i < 0)
                put_char(w, '-');
        put(w, p, (size_t) (digits + sizeof digits - p));
        w->comma = true;
}

void coh_jw_bool(struct coh_json_writer *w, bool b) {
        separate(w);
        if (b)
                put(w, "true", 4);
        else
                put(w, "false", 5);
        w->comma = true;
}

void coh_jw_json(struct coh_json_writer *w, const char *json, size_t n) {
        separate(w);
        put(w, json, n);
        w->comma = true;
}

void coh_jw_done(struct coh_json_writer *w) {
        free(w->buf);
        *w = (struct coh_json_writer) {};
}

char *coh_jw_steal(struct coh_json_writer *w, size_t *ret_len) {
        /* Room for the NUL is always kept (reserve()), unless nothing was ever written. */
        if (!w->failed && !w->buf)
                reserve(w, 0);
        if (w->failed) {
                coh_jw_done(w);
                return NULL;
        }
        char *s = w->buf;
        s[w->len] = 0;
        if (ret_len)
                *ret_len = w->len;
        *w = (struct coh_json_writer) {};
        return s;
}

/* A written object's json_object is a string holding its text, marked by this as userdata. */
static const char written_marker;

static int written_to_json(json_object *o, struct printbuf *pb, int level, int flags) {
        (void) level;
        (void) flags;
        return printbuf_memappend(pb, json_object_get_string(o), json_object_get_string_len(o));
}

json_object *coh_jw_to_object(struct coh_json_writer *w) {
        size_t len;
        if (!w->failed && w->len > INT32_MAX)
                w->failed = true; /* json-c keeps a string's length as an int */
        char *text = coh_jw_steal(w, &len);
        if (!text)
                return NULL;
        json_object *o = json_object_new_string_len(text, (int) len);
        free(text);
        if (!o)
                return NULL;
        json_object_set_serializer(o, written_to_json, (void *) &written_marker, NULL);
        return o;
}

bool coh_json_written(json_object *o, const char **ret_text, size_t *ret_len) {
        if (!o || !json_object_is_type(o, json_type_string) || json_object_get_userdata(o) != &written_marker)
                return false;
        *ret_text = json_object_get_string(o);
        *ret_len = (size_t) json_object_get_string_len(o);
        return true;
}
