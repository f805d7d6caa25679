/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The input as a call and as a reply. A call must parse as the json-c parser
 * the daemon used before read it (differential: the same answer, the same
 * method, flags and parameters), but for the differences documented in
 * proto/call-parse.c. A reply must survive formatting and parsing again
 * unchanged, and the parameter accessors must cope with whatever it holds.
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "call-reference.h"
#include "call.h"
#include "json-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool b) {
        if (!b)
                abort();
}

static void poke_parameters(json_object *p) {
        static const char *const allowed[] = { "vm", "device", "iommu", "grant", NULL };
        const char *bad, *s;
        int64_t i;
        bool b;

        check(json_object_is_type(p, json_type_object));
        json_object_object_foreach(p, key, value) {
                int r;

                r = coh_json_get_string(p, key, &s);
                check(r == 0 || r == -EINVAL || (r == -ENOENT && !value));
                r = coh_json_get_bool(p, key, &b);
                check(r == 0 || r == -EINVAL || (r == -ENOENT && !value));
                r = coh_json_get_int64(p, key, -5, 1 << 20, &i);
                check(r < 0 || (i >= -5 && i <= 1 << 20));
        }
        if (coh_json_check_keys(p, allowed, &bad) < 0)
                check(bad != NULL);
}

/* The old parser's value as the new one records it (json-util.c's getters decided the same). */
static void check_same_value(json_object *o, const struct coh_call_param *v) {
        switch (json_object_get_type(o)) {
        case json_type_null:
                check(v->kind == COH_VALUE_NULL);
                break;
        case json_type_boolean:
                check(v->kind == COH_VALUE_BOOL && v->boolean == json_object_get_boolean(o));
                break;
        case json_type_int:
                /* json-c made integers beyond int64 the largest uint64 or INT64_MIN. */
                if (json_object_get_int64(o) == INT64_MAX && json_object_get_uint64(o) > (uint64_t) INT64_MAX)
                        check(v->kind == COH_VALUE_OTHER);
                else if (json_object_get_int64(o) == INT64_MIN && v->kind == COH_VALUE_OTHER)
                        break;
                else
                        check(v->kind == COH_VALUE_INT && v->integer == json_object_get_int64(o));
                break;
        case json_type_string:
                if (strlen(json_object_get_string(o)) != (size_t) json_object_get_string_len(o))
                        check(v->kind == COH_VALUE_OTHER);
                else
                        check(v->kind == COH_VALUE_STRING && strcmp(v->string, json_object_get_string(o)) == 0);
                break;
        default:
                check(v->kind == COH_VALUE_OTHER);
                break;
        }
}

/* The daemon's parser against the json-c one it replaced (call-reference.c). */
static void fuzz_call(const char *s) {
        struct coh_call c;
        struct ref_call ref;
        int r, k;
        size_t i = 0;

        r = coh_call_parse(s, &c);
        k = ref_call_parse(s, &ref);
        check(r == 0 || r == -EBADMSG);
        if (r < 0)
                check(!c.storage && !c.method && c.n_params == 0);
        if (k < 0) {
                check(r < 0);
                return;
        }
        if (r < 0) {
                check(ref_has_documented_difference(s));
                ref_call_done(&ref);
                return;
        }

        check(strcmp(c.method, ref.method) == 0);
        check(c.oneway == ref.oneway && c.more == ref.more && c.upgrade == ref.upgrade);
        check(c.n_params == (size_t) json_object_object_length(ref.parameters));
        json_object_object_foreach(ref.parameters, key, value) {
                check(strcmp(c.params[i].key, key) == 0);
                check_same_value(value, &c.params[i]);
                i++;
        }
        coh_call_done(&c);
        ref_call_done(&ref);
}

static void fuzz_reply(const char *s) {
        struct coh_reply r, again;
        char *text;

        if (coh_reply_parse(s, &r) < 0) {
                check(!r.root);
                return;
        }
        check(r.parameters);
        check(!(r.error && r.continues));
        poke_parameters(r.parameters);

        if (r.error)
                text = coh_error_format(r.error, json_object_get(r.parameters));
        else
                text = coh_reply_format(json_object_get(r.parameters), r.continues);
        check(text);
        check(coh_reply_parse(text, &again) == 0);
        check(!r.error == !again.error);
        check(!r.error || strcmp(r.error, again.error) == 0);
        check(again.continues == r.continues);
        check(json_object_equal(again.parameters, r.parameters));
        coh_reply_done(&again);
        free(text);
        coh_reply_done(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* Messages reach the parsers as C strings cut at the frame's NUL. */
        char *s = strndup((const char *) data, size);

        check(s);
        check(coh_qualified_name_is_valid(s, strlen(s)) == ref_qualified_name_is_valid(s));
        fuzz_call(s);
        fuzz_reply(s);
        free(s);
        return 0;
}
