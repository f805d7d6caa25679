/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The JSON writer (json-writer.h) with arbitrary bytes: the input after its
 * first byte, cut in two where that byte says, is written as a key and as
 * strings, with an integer and a boolean, and then as a reply's parameters. json-c must parse every text, and
 * give back exactly the bytes written.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "json-writer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool b) {
        if (!b)
                abort();
}

static json_object *parse(const char *text, size_t len) {
        json_tokener *tok = json_tokener_new();
        check(tok);
        /* Strict, but no UTF-8 check: the writer passes bytes on as they are, as json-c does. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        json_object *o = json_tokener_parse_ex(tok, text, (int) len);
        check(o && json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == len);
        json_tokener_free(tok);
        return o;
}

static void check_string(json_object *o, const uint8_t *s, size_t n) {
        check(json_object_is_type(o, json_type_string));
        check((size_t) json_object_get_string_len(o) == n);
        check(memcmp(json_object_get_string(o), s, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* json-c keeps lengths as int; the fuzzer's inputs are far below that. */
        if (size < 1 || size > 1 << 20)
                return 0;
        size_t cut = data[0] % size;
        const uint8_t *key = data + 1, *value = data + 1 + (cut ? cut - 1 : 0);
        size_t n_key = cut ? cut - 1 : 0, n_value = size - 1 - n_key;
        int64_t i = 0;
        memcpy(&i, data, size < sizeof i ? size : sizeof i);

        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        coh_jw_key_len(&w, (const char *) key, n_key);
        coh_jw_array_begin(&w);
        coh_jw_string_len(&w, (const char *) value, n_value);
        coh_jw_string_len(&w, (const char *) key, n_key);
        coh_jw_int(&w, i);
        coh_jw_bool(&w, data[0] & 1);
        coh_jw_array_end(&w);
        coh_jw_object_end(&w);
        size_t len;
        char *text = coh_jw_steal(&w, &len);
        check(text && strlen(text) == len);

        json_object *o = parse(text, len);
        check(json_object_is_type(o, json_type_object) && json_object_object_length(o) == 1);
        json_object_object_foreach(o, k, v) {
                /* json-c stops a key at an escaped NUL: compare what it can hold. */
                size_t n = memchr(key, 0, n_key) ? (size_t) ((const uint8_t *) memchr(key, 0, n_key) - key) : n_key;
                check(strlen(k) == n && memcmp(k, key, n) == 0);
                check(json_object_is_type(v, json_type_array) && json_object_array_length(v) == 4);
                check_string(json_object_array_get_idx(v, 0), value, n_value);
                check_string(json_object_array_get_idx(v, 1), key, n_key);
                check(json_object_get_int64(json_object_array_get_idx(v, 2)) == i);
                check(json_object_get_boolean(json_object_array_get_idx(v, 3)) == (data[0] & 1));
        }
        json_object_put(o);

        /* As a reply's parameters: the envelope around the same text. */
        json_object *written = parse(text, len);
        struct coh_json_writer w2 = {};
        coh_jw_json(&w2, text, len);
        char *reply = coh_reply_format(coh_jw_to_object(&w2), true);
        check(reply);
        json_object *r = parse(reply, strlen(reply)), *p;
        check(json_object_object_get_ex(r, "parameters", &p) && json_object_equal(p, written));
        json_object_put(r);
        json_object_put(written);
        free(reply);
        free(text);
        return 0;
}
