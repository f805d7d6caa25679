/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The input as a call and as a reply. Whatever parses must survive formatting
 * and parsing again unchanged, and the parameter accessors must cope with
 * whatever the parameters hold.
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

static void fuzz_call(const char *s) {
        struct coh_call c, again;
        char *text;

        if (coh_call_parse(s, &c) < 0) {
                check(!c.root);
                return;
        }
        check(c.method && c.parameters);
        poke_parameters(c.parameters);

        text = coh_call_format(c.method, json_object_get(c.parameters), c.more, c.oneway);
        check(text);
        check(coh_call_parse(text, &again) == 0);
        check(strcmp(again.method, c.method) == 0);
        check(again.more == c.more && again.oneway == c.oneway);
        check(json_object_equal(again.parameters, c.parameters));
        coh_call_done(&again);
        free(text);
        coh_call_done(&c);
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
        fuzz_call(s);
        fuzz_reply(s);
        free(s);
        return 0;
}
