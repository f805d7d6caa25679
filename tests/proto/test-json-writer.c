/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The JSON writer (json-writer.h) against the json_object path it replaces:
 * every form of every record, with awkward strings in every string field,
 * written as text must parse (json-c) to exactly the object
 * coh_record_to_json() builds, and a written reply must format to the same
 * message as the tree it stands for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "call.h"
#include "decision-record.h"
#include "grant-record.h"
#include "json-util.h"
#include "json-writer.h"
#include "record.h"

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* The strings a string field is filled with; "" for max is filled to the array's size. */
static const char *const awkward[] = {
        "",
        "plain",
        "q\"uote",
        "back\\slash\\",
        "\\\"",
        "ctl\x01\x02\x1f\x7f",
        "\b\f\n\r\t",
        "slash/es",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", /* UTF-8, 2 to 4 bytes */
        "bad \xff\xfe \xc3 utf8",                     /* not UTF-8: passed as it is, like json-c */
        "\\u0000",
        "{\"a\":[1,2]}",
        /* Escapes after eight plain bytes and more: the writer scans eight at a time. */
        "0000:00:1f.0 eight\"",
        "01234567\x01" "abcdefgh\\ijklmnop\x1f",
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\n",
        NULL, /* the array's length less one, of escapes */
};

/* json-c with no UTF-8 check, as the writer does none: the bytes must come back. */
static json_object *parse(const char *text) {
        json_tokener *tok = json_tokener_new();
        assert_non_null(tok);
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        json_object *o = json_tokener_parse_ex(tok, text, (int) strlen(text));
        assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
        assert_int_equal(json_tokener_get_parse_end(tok), strlen(text));
        json_tokener_free(tok);
        return o;
}

static void fill_string(char *dst, size_t size, const char *s) {
        if (s) {
                size_t n = strlen(s) < size ? strlen(s) : size - 1;
                memcpy(dst, s, n);
                dst[n] = 0;
                return;
        }
        /* Max length, every byte one that needs an escape. */
        for (size_t i = 0; i + 1 < size; i++)
                dst[i] = "\"\\\x01\n"[i % 4];
        dst[size - 1] = 0;
}

/* Every field of rec set from variant v: strings from awkward[], numbers and words varied. */
static void fill(const struct coh_field *table, void *rec, size_t v) {
        static const int64_t ints[] = { 0, 1, -1, INT64_MAX, INT64_MIN, 4096 };
        size_t k = 0;
        for (const struct coh_field *f = table; f->json; f++, k++) {
                char *p = (char *) rec + f->offset;
                switch (f->type) {
                case COH_FIELD_STRING:
                        fill_string(p, f->size, awkward[(v + k) % ELEMENTSOF(awkward)]);
                        break;
                case COH_FIELD_INT:
                        *(int64_t *) p = ints[(v + k) % ELEMENTSOF(ints)];
                        break;
                case COH_FIELD_BOOL:
                        *(bool *) p = (v + k) % 2;
                        break;
                case COH_FIELD_WORD:
                        /* -1 and 99 have no word: an optional field is left out, another is "". */
                        *(int *) p = (int) ((v + k) % 5) - 1 + ((v + k) % 7 == 6 ? 99 : 0);
                        break;
                }
        }
}

static void check_form(const struct coh_field *table, const void *rec, unsigned which) {
        json_object *old = json_object_new_object();
        coh_record_to_json(table, rec, which, old);
        assert_false(coh_json_failed(old));

        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        coh_record_write(table, rec, which, &w);
        coh_jw_object_end(&w);
        char *text = coh_jw_steal(&w, NULL);
        assert_non_null(text);
        json_object *got = parse(text);
        if (!json_object_equal(old, got))
                fail_msg("form %#x: wrote %s\nbuilt %s", which, text,
                         json_object_to_json_string_ext(old, JSON_C_TO_STRING_PLAIN));
        json_object_put(got);
        json_object_put(old);
        free(text);
}

static void check_record(const struct coh_field *table, size_t size, const unsigned *forms, size_t n_forms) {
        void *rec = malloc(size);
        assert_non_null(rec);
        for (size_t v = 0; v < 3 * ELEMENTSOF(awkward); v++) {
                memset(rec, 0, size);
                fill(table, rec, v);
                for (size_t i = 0; i < n_forms; i++)
                        check_form(table, rec, forms[i]);
        }
        /* All zero: every optional field left out. */
        memset(rec, 0, size);
        for (size_t i = 0; i < n_forms; i++)
                check_form(table, rec, forms[i]);
        free(rec);
}

static void test_grant_forms(void **state) {
        static const unsigned forms[] = { COH_GRANT_FORM_VMM, COH_GRANT_FORM_OPERATOR, COH_GRANT_FORM_STORE };
        check_record(coh_grant_record_fields, sizeof(struct coh_grant_record), forms, ELEMENTSOF(forms));
}

static void test_decision_forms(void **state) {
        static const unsigned forms[] = { COH_DECISION_FORM_PROBE, COH_DECISION_FORM_GRANT, COH_DECISION_FORM_EVENT };
        check_record(coh_decision_record_fields, sizeof(struct coh_decision_record), forms, ELEMENTSOF(forms));
}

static void test_device_forms(void **state) {
        static const unsigned forms[] = { COH_DEVICE_FORM_BRIEF, COH_DEVICE_FORM_FULL };
        check_record(coh_device_record_fields, sizeof(struct coh_device_record), forms, ELEMENTSOF(forms));
}

/* A whole RequestGrant reply as the daemon writes it, formatted: the same message as the tree's. */
static void test_reply_as_tree(void **state) {
        struct coh_decision_record d = {};
        struct coh_device_record dev[2] = {};
        fill(coh_decision_record_fields, &d, 2);
        fill(coh_device_record_fields, &dev[0], 5);
        fill(coh_device_record_fields, &dev[1], 8);

        json_object *p = json_object_new_object(), *facts = json_object_new_object(), *list = json_object_new_array();
        coh_record_to_json(coh_decision_record_fields, &d, COH_DECISION_FORM_GRANT, p);
        coh_record_to_json(coh_device_record_fields, &dev[0], COH_DEVICE_FORM_BRIEF, facts);
        coh_json_add(facts, "file", json_object_new_string("vfio-group:7"));
        for (size_t i = 0; i < 2; i++) {
                json_object *o = json_object_new_object();
                coh_record_to_json(coh_device_record_fields, &dev[i], COH_DEVICE_FORM_FULL, o);
                coh_json_append(list, o);
        }
        coh_json_add(facts, "devices", list);
        coh_json_add(p, "facts", facts);
        coh_json_add(p, "group", json_object_new_int(0));

        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        coh_record_write(coh_decision_record_fields, &d, COH_DECISION_FORM_GRANT, &w);
        coh_jw_key(&w, "facts");
        coh_jw_object_begin(&w);
        coh_record_write(coh_device_record_fields, &dev[0], COH_DEVICE_FORM_BRIEF, &w);
        coh_jw_key(&w, "file");
        coh_jw_string(&w, "vfio-group:7");
        coh_jw_key(&w, "devices");
        coh_jw_array_begin(&w);
        for (size_t i = 0; i < 2; i++) {
                coh_jw_object_begin(&w);
                coh_record_write(coh_device_record_fields, &dev[i], COH_DEVICE_FORM_FULL, &w);
                coh_jw_object_end(&w);
        }
        coh_jw_array_end(&w);
        coh_jw_object_end(&w);
        coh_jw_key(&w, "group");
        coh_jw_int(&w, 0);
        coh_jw_object_end(&w);
        json_object *written = coh_jw_to_object(&w);
        assert_non_null(written);
        assert_false(coh_json_failed(written));

        /* Inside another json-c object the written text is serialised as it is (Monitor's broadcast keeps it). */
        json_object *outer = json_object_new_object();
        json_object_object_add(outer, "p", json_object_get(written));
        json_object *back = parse(json_object_to_json_string_ext(outer, JSON_C_TO_STRING_PLAIN));
        json_object *inner;
        assert_true(json_object_object_get_ex(back, "p", &inner));
        assert_true(json_object_equal(inner, p));
        json_object_put(back);
        json_object_put(outer);

        char *a = coh_reply_format(json_object_get(p), true), *b = coh_reply_format(written, true);
        assert_non_null(a);
        assert_non_null(b);
        json_object *pa = parse(a), *pb = parse(b);
        assert_true(json_object_equal(pa, pb));
        json_object_put(pa);
        json_object_put(pb);
        free(a);
        free(b);
        json_object_put(p);
}

/* The escapes, byte for byte: as json-c writes them, with '/' as it is. */
static void test_escapes(void **state) {
        struct coh_json_writer w = {};
        coh_jw_array_begin(&w);
        coh_jw_string_len(&w, "q\"\\\n\t\b\f\r\x01\x1f\x7f/\xc3\xa9\0z", 16);
        coh_jw_int(&w, INT64_MIN);
        coh_jw_int(&w, INT64_MAX);
        coh_jw_int(&w, 0);
        coh_jw_bool(&w, true);
        coh_jw_bool(&w, false);
        coh_jw_object_begin(&w);
        coh_jw_object_end(&w);
        coh_jw_array_begin(&w);
        coh_jw_array_end(&w);
        coh_jw_array_end(&w);
        size_t len;
        char *s = coh_jw_steal(&w, &len);
        assert_string_equal(s, "[\"q\\\"\\\\\\n\\t\\b\\f\\r\\u0001\\u001f\x7f/\xc3\xa9\\u0000z\","
                               "-9223372036854775808,9223372036854775807,0,true,false,{},[]]");
        assert_int_equal(len, strlen(s));
        free(s);
        assert_null(w.buf);
}

/* Every byte at every place of a string longer than the writer's eight-byte
 * scan: the text is json-c's own, byte for byte (as call.c asks json-c for it). */
static void test_escapes_as_json_c(void **state) {
        char s[25];
        for (size_t at = 0; at < sizeof s; at++)
                for (int c = 0; c < 256; c++) {
                        memset(s, 'a', sizeof s);
                        s[at] = (char) c;
                        json_object *o = json_object_new_string_len(s, sizeof s);
                        const char *want = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                                 JSON_C_TO_STRING_NOSLASHESCAPE);
                        struct coh_json_writer w = {};
                        coh_jw_string_len(&w, s, sizeof s);
                        char *got = coh_jw_steal(&w, NULL);
                        assert_string_equal(got, want);
                        free(got);
                        json_object_put(o);
                }
}

/* Growing past the first buffer keeps what was written. */
/* A table's key written without the escape scan is the same text coh_jw_key() writes. */
static void test_plain_keys_as_scanned(void **state) {
        static const char *const keys[] = { "vmWbinvd", "facts", "a", "iommuGroup", "ioasCoherent", "x_1" };
        struct coh_json_writer a = {}, b = {};
        coh_jw_object_begin(&a);
        coh_jw_object_begin(&b);
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
                coh_jw_key(&a, keys[i]);
                coh_jw_int(&a, (int64_t) i);
                coh_jw_key_plain(&b, keys[i]);
                coh_jw_int(&b, (int64_t) i);
        }
        coh_jw_object_end(&a);
        coh_jw_object_end(&b);
        size_t la, lb;
        char *ta = coh_jw_steal(&a, &la), *tb = coh_jw_steal(&b, &lb);
        assert_non_null(ta);
        assert_non_null(tb);
        assert_string_equal(ta, tb);
        assert_string_equal(tb, "{\"vmWbinvd\":0,\"facts\":1,\"a\":2,\"iommuGroup\":3,\"ioasCoherent\":4,\"x_1\":5}");
        free(ta);
        free(tb);
}

static void test_grows(void **state) {
        struct coh_json_writer w = {};
        char big[10000];
        memset(big, '\x01', sizeof big);
        coh_jw_array_begin(&w);
        for (int i = 0; i < 3; i++)
                coh_jw_string_len(&w, big, sizeof big);
        coh_jw_array_end(&w);
        char *s = coh_jw_steal(&w, NULL);
        json_object *o = parse(s);
        assert_int_equal(json_object_array_length(o), 3);
        for (int i = 0; i < 3; i++) {
                json_object *e = json_object_array_get_idx(o, i);
                assert_int_equal(json_object_get_string_len(e), sizeof big);
                assert_memory_equal(json_object_get_string(e), big, sizeof big);
        }
        json_object_put(o);
        free(s);
}

/* A failed allocation is seen at the end, never as half a text. */
static void test_failure_is_seen(void **state) {
        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        w.failed = true; /* as reserve() leaves it when realloc fails */
        coh_jw_key(&w, "a");
        coh_jw_int(&w, 1);
        coh_jw_object_end(&w);
        assert_null(coh_jw_steal(&w, NULL));
        assert_null(w.buf);

        coh_jw_object_begin(&w);
        w.failed = true;
        json_object *o = coh_jw_to_object(&w);
        assert_null(o);
        assert_true(coh_json_failed(o));

        /* A plain string is not a written object: formatting it is the caller's bug. */
        const char *text;
        size_t len;
        json_object *plain = json_object_new_string("{}");
        assert_false(coh_json_written(plain, &text, &len));
        assert_null(coh_reply_format(plain, false));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_grant_forms),   cmocka_unit_test(test_decision_forms),
                cmocka_unit_test(test_device_forms),  cmocka_unit_test(test_reply_as_tree),
                cmocka_unit_test(test_escapes),
                cmocka_unit_test(test_escapes_as_json_c),       cmocka_unit_test(test_grows),
                cmocka_unit_test(test_failure_is_seen),
                cmocka_unit_test(test_plain_keys_as_scanned),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
