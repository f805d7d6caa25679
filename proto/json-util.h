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
