/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The input as a reply, read by coh_reply_read() (what libcoherency's typed
 * calls use) and by coh_reply_parse() on json-c (what they used before, and
 * what error replies and raw calls still use). Both must give the same
 * answer, the same envelope, the same values, and the same records from the
 * field tables the client reads replies with, field by field; but for the
 * differences documented in proto/call-parse.c (json-c was laxer) and
 * integers beyond int64_t (json-c saturated them; they are no integer here).
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "call-reference.h"
#include "call.h"
#include "decision-record.h"
#include "grant-record.h"
#include "json-util.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool b) {
        if (!b)
                abort();
}

/* A run of 19 digits or more: an integer that may be beyond int64_t. */
static bool has_big_integer(const char *s) {
        size_t run = 0;

        for (; *s; s++) {
                run = *s >= '0' && *s <= '9' ? run + 1 : 0;
                if (run >= 19)
                        return true;
        }
        return false;
}

/* json-c's value o and the one coh_reply_read() made, whole. */
static void check_same(json_object *o, const struct coh_json *v, bool big) {
        switch (json_object_get_type(o)) {
        case json_type_null:
                check(v->type == COH_JSON_NULL);
                break;
        case json_type_boolean:
                check(v->type == COH_JSON_BOOL && v->boolean == json_object_get_boolean(o));
                break;
        case json_type_int:
                if (v->type == COH_JSON_NUMBER)
                        check(big);
                else
                        check(v->type == COH_JSON_INT && v->integer == json_object_get_int64(o));
                break;
        case json_type_double:
                check(v->type == COH_JSON_NUMBER);
                break;
        case json_type_string:
                check(v->type == COH_JSON_STRING && v->n == (size_t) json_object_get_string_len(o));
                check(memcmp(v->string, json_object_get_string(o), v->n) == 0 && v->string[v->n] == '\0');
                break;
        case json_type_array: {
                const struct coh_json *item = v->first;

                check(v->type == COH_JSON_ARRAY && v->n == json_object_array_length(o));
                for (size_t i = 0; i < v->n; i++, item = item->next) {
                        check(item && !item->key);
                        check_same(json_object_array_get_idx(o, i), item, big);
                }
                check(!item);
                break;
        }
        case json_type_object: {
                /* No key repeats (else coh_reply_read() refused), so json-c kept them all in text order. */
                const struct coh_json *m = v->first;

                check(v->type == COH_JSON_OBJECT && v->n == (size_t) json_object_object_length(o));
                json_object_object_foreach(o, key, value) {
                        check(m && m->key && strcmp(m->key, key) == 0);
                        check(coh_json_member(v, key) == m);
                        check_same(value, m, big);
                        m = m->next;
                }
                check(!m);
                break;
        }
        default:
                check(false);
        }
}

/* One record from o and v by the same table and forms: the same answer and the same fields. */
static void check_record(const struct coh_field *table, unsigned which, size_t size, json_object *o,
                         const struct coh_json *v, bool big) {
        /* Large enough for any record: each is a few fixed strings. */
        static char a[8192], b[8192];
        const char *bad_a = NULL, *bad_b = NULL;
        int ra, rb;

        check(size <= sizeof a);
        memset(a, 0, size);
        memset(b, 0, size);
        ra = coh_record_from_json(table, o, which, a, &bad_a);
        rb = coh_record_from_node(table, v, which, b, &bad_b);
        if (ra != rb || (ra < 0 && strcmp(bad_a, bad_b) != 0) || memcmp(a, b, size) != 0) {
                /* json-c took an integer beyond int64_t as its nearest end; the other refuses it. */
                check(big && rb < 0);
                return;
        }
        check(ra == 0 || ra == -EBADMSG);
}

/* The typed getters the client reads parameters with, on every member. */
static void check_getters(json_object *o, const struct coh_json *v, bool big) {
        json_object_object_foreach(o, key, value) {
                const char *sa, *sb;
                int64_t ia, ib;
                bool ba, bb;
                int ra, rb;

                (void) value;
                ra = coh_json_get_string(o, key, &sa);
                rb = coh_node_get_string(v, key, &sb);
                check(ra == rb && (ra < 0 || strcmp(sa, sb) == 0));
                ra = coh_json_get_bool(o, key, &ba);
                rb = coh_node_get_bool(v, key, &bb);
                check(ra == rb && (ra < 0 || ba == bb));
                ra = coh_json_get_int64(o, key, INT64_MIN, INT64_MAX, &ia);
                rb = coh_node_get_int64(v, key, INT64_MIN, INT64_MAX, &ib);
                check((ra == rb && (ra < 0 || ia == ib)) || (big && rb < 0));
                ra = coh_json_get_int64(o, key, 0, 31, &ia);
                rb = coh_node_get_int64(v, key, 0, 31, &ib);
                check(ra == rb && (ra < 0 || ia == ib));
        }
}

/* What libcoherency reads of a Probe, RequestGrant, ListGrants or WatchGrants reply. */
static void check_records(json_object *p, const struct coh_json *v, bool big) {
        static const unsigned decision_forms[] = { COH_DECISION_FORM_PROBE, COH_DECISION_FORM_GRANT,
                                                   COH_DECISION_FORM_EVENT };
        static const unsigned device_forms[] = { COH_DEVICE_FORM_BRIEF, COH_DEVICE_FORM_FULL };
        static const unsigned grant_forms[] = { COH_GRANT_FORM_VMM, COH_GRANT_FORM_OPERATOR, COH_GRANT_FORM_STORE };

        for (size_t i = 0; i < sizeof decision_forms / sizeof decision_forms[0]; i++)
                check_record(coh_decision_record_fields, decision_forms[i], sizeof(struct coh_decision_record), p,
                             v, big);
        for (size_t i = 0; i < sizeof device_forms / sizeof device_forms[0]; i++)
                check_record(coh_device_record_fields, device_forms[i], sizeof(struct coh_device_record), p, v,
                             big);
        for (size_t i = 0; i < sizeof grant_forms / sizeof grant_forms[0]; i++)
                check_record(coh_grant_record_fields, grant_forms[i], sizeof(struct coh_grant_record), p, v, big);
        check_getters(p, v, big);

        /* Nested records: facts, each device of it, each grant of a list. */
        json_object_object_foreach(p, key, value) {
                const struct coh_json *m = coh_json_member(v, key);

                if (json_object_is_type(value, json_type_object))
                        check_records(value, m, big);
                else if (json_object_is_type(value, json_type_array)) {
                        const struct coh_json *item = m->first;

                        for (size_t i = 0; i < json_object_array_length(value); i++, item = item->next)
                                if (json_object_is_type(json_object_array_get_idx(value, i), json_type_object))
                                        check_records(json_object_array_get_idx(value, i), item, big);
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* Messages reach the parsers as C strings cut at the frame's NUL. */
        char *s = strndup((const char *) data, size);
        struct coh_reply old, new;
        int ro, rn;
        bool big;

        check(s);
        ro = coh_reply_parse(s, &old);
        rn = coh_reply_read(s, &new);
        check(ro == 0 || ro == -EBADMSG);
        check(rn == 0 || rn == -EBADMSG);
        if (rn < 0)
                check(!new.storage && !new.params && !new.error);
        if (ro < 0) {
                check(rn < 0);
                goto out;
        }
        if (rn < 0) {
                check(ref_has_documented_difference(s));
                goto out;
        }

        big = has_big_integer(s);
        check(!old.error == !new.error && (!old.error || strcmp(old.error, new.error) == 0));
        check(old.continues == new.continues);
        check(new.params && new.params->type == COH_JSON_OBJECT && !new.parameters && !new.root);
        check_same(old.parameters, new.params, big);
        check_records(old.parameters, new.params, big);

out:
        coh_reply_done(&old);
        coh_reply_done(&new);
        free(s);
        return 0;
}
