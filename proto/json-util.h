/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Typed accessors for parameters: each returns 0, -ENOENT when absent or
 * null, -EINVAL when present with the wrong type or out of range. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

int coh_json_get_string(json_object *o, const char *key, const char **ret);
int coh_json_get_bool(json_object *o, const char *key, bool *ret);
/* An integer in [min, max]; doubles and strings are -EINVAL. */
int coh_json_get_int64(json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret);
/* -EINVAL when the object has a key outside the NULL-terminated list. */
int coh_json_check_keys(json_object *o, const char *const *allowed, const char **bad_key);

/* The same for values coh_reply_read() read (call.h), without json-c. */
struct coh_json;
int coh_node_get_string(const struct coh_json *o, const char *key, const char **ret);
int coh_node_get_bool(const struct coh_json *o, const char *key, bool *ret);
int coh_node_get_int64(const struct coh_json *o, const char *key, int64_t min, int64_t max, int64_t *ret);

/*
 * Building replies. A json-c allocation failure is caught here, in one place:
 * v NULL (its allocation failed), v itself marked failed, or a failure to
 * add marks the container failed, so it is never stored as null and never
 * sent; coh_json_failed() says so to whoever serializes it (the server then
 * drops the connection rather than send half an answer). v is taken in
 * every case. Returns 0 or -ENOMEM.
 */
int coh_json_add(json_object *o, const char *key, json_object *v);
int coh_json_append(json_object *array, json_object *v);
bool coh_json_failed(json_object *o);
