/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "json-util.h"
#include "call.h"

#include <errno.h>
#include <string.h>

/* The member `key` of `o`: -ENOENT when absent or null, -EINVAL when o is not an object. */
static int get_member(json_object *o, const char *key, json_object **ret) {
        json_object *v;

        if (!json_object_is_type(o, json_type_object))
                return -EINVAL;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                return -ENOENT;
        *ret = v;
        return 0;
}

int coh_json_get_string(json_object *o, const char *key, const char **ret) {
        json_object *v;
        const char *s;
        int r;

        r = get_member(o, key, &v);
        if (r < 0)
                return r;
        if (!json_object_is_type(v, json_type_string))
                return -EINVAL;

        /* A \u0000 escape would let "a\u0000b" pass for "a" wherever it is compared as a C string. */
        s = json_object_get_string(v);
        if (strlen(s) != (size_t) json_object_get_string_len(v))
                return -EINVAL;

        *ret = s;
        return 0;
}

int coh_json_get_bool(json_object *o, const char *key, bool *ret) {
        json_object *v;
        int r;

        r = get_member(o, key, &v);
        if (r < 0)
                return r;
        if (!json_object_is_type(v, json_type_boolean))
                return -EINVAL;

        *ret = json_object_get_boolean(v);
        return 0;
}

int coh_json_get_int64(json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret) {
        json_object *v;
        int64_t i;
        int r;

        r = get_member(o, key, &v);
        if (r < 0)
                return r;
        if (!json_object_is_type(v, json_type_int))
                return -EINVAL;

        /* json-c keeps integers above INT64_MAX as uint64 and get_int64 saturates them. */
        i = json_object_get_int64(v);
        if (i == INT64_MAX && json_object_get_uint64(v) > (uint64_t) INT64_MAX)
                return -EINVAL;
        if (i < min || i > max)
                return -EINVAL;

        *ret = i;
        return 0;
}

/* As get_member(), for a value coh_reply_read() read. */
static int node_member(const struct coh_json *o, const char *key, const struct coh_json **ret) {
        const struct coh_json *v;

        if (!o || o->type != COH_JSON_OBJECT)
                return -EINVAL;
        v = coh_json_member(o, key);
        if (!v || v->type == COH_JSON_NULL)
                return -ENOENT;
        *ret = v;
        return 0;
}

int coh_node_get_string(const struct coh_json *o, const char *key, const char **ret) {
        const struct coh_json *v;
        int r;

        r = node_member(o, key, &v);
        if (r < 0)
                return r;
        /* As above: "a\u0000b" must not pass for "a". */
        if (v->type != COH_JSON_STRING || strlen(v->string) != v->n)
                return -EINVAL;
        *ret = v->string;
        return 0;
}

int coh_node_get_bool(const struct coh_json *o, const char *key, bool *ret) {
        const struct coh_json *v;
        int r;

        r = node_member(o, key, &v);
        if (r < 0)
                return r;
        if (v->type != COH_JSON_BOOL)
                return -EINVAL;
        *ret = v->boolean;
        return 0;
}

int coh_node_get_int64(const struct coh_json *o, const char *key, int64_t min, int64_t max, int64_t *ret) {
        const struct coh_json *v;
        int r;

        r = node_member(o, key, &v);
        if (r < 0)
                return r;
        /* Integers beyond int64_t are COH_JSON_NUMBER: out of range whatever min and max. */
        if (v->type != COH_JSON_INT || v->integer < min || v->integer > max)
                return -EINVAL;
        *ret = v->integer;
        return 0;
}

int coh_json_check_keys(json_object *o, const char *const *allowed, const char **bad_key) {
        if (bad_key)
                *bad_key = NULL;
        if (!json_object_is_type(o, json_type_object))
                return -EINVAL;

        json_object_object_foreach(o, key, value) {
                const char *const *a;

                (void) value;
                for (a = allowed; *a; a++)
                        if (strcmp(*a, key) == 0)
                                break;
                if (!*a) {
                        if (bad_key)
                                *bad_key = key;
                        return -EINVAL;
                }
        }

        return 0;
}

/* The marker is the address of this, as userdata: default serializers ignore userdata. */
static const char failed_marker;

static void mark_failed(json_object *o) {
        if (o)
                json_object_set_userdata(o, (void *) &failed_marker, NULL);
}

bool coh_json_failed(json_object *o) {
        return !o || json_object_get_userdata(o) == &failed_marker;
}

int coh_json_add(json_object *o, const char *key, json_object *v) {
        if (!o || !v || coh_json_failed(v) || json_object_object_add(o, key, v) < 0) {
                if (v && json_object_object_get(o, key) != v)
                        json_object_put(v);
                mark_failed(o);
                return -ENOMEM;
        }
        return 0;
}

int coh_json_append(json_object *array, json_object *v) {
        if (!array || !v || coh_json_failed(v) || json_object_array_add(array, v) < 0) {
                /* json_object_array_add() takes v only on success. */
                if (v && (!array || json_object_array_length(array) == 0 ||
                          json_object_array_get_idx(array, json_object_array_length(array) - 1) != v))
                        json_object_put(v);
                mark_failed(array);
                return -ENOMEM;
        }
        return 0;
}
