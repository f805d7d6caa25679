/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The call parser as it was on json-c (proto/call.c before the daemon read
 * calls itself), kept only as the reference fuzz-call compares against.
 */

#include <json-c/json.h>
#include <stdbool.h>

struct ref_call {
        json_object *root;       /* owned */
        const char *method;
        json_object *parameters; /* always an object */
        bool oneway, more, upgrade;
};

/* The name check by strrchr() and neighbours, before it was one pass. */
bool ref_qualified_name_is_valid(const char *s);

int ref_call_parse(const char *json, struct ref_call *c);
void ref_call_done(struct ref_call *c);

/* The input shows a way json-c was laxer than proto/call-parse.c (rough: errs towards yes). */
bool ref_has_documented_difference(const char *s);
