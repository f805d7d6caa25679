/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Varlink message envelope: calls (what the daemon receives) and replies
 * and errors (what the client receives). Unknown top-level keys make a message
 * invalid, as the Varlink specification says.
 */

#include <json-c/json.h>
#include <stdbool.h>

struct coh_call {
        json_object *root;        /* owned; everything below points into it */
        const char *method;       /* "io.coherencyd.Broker.Probe" */
        json_object *parameters;  /* always an object (an empty one when absent or null) */
        bool oneway, more, upgrade;
};

/* -EBADMSG for anything that is not a valid call. */
int coh_call_parse(const char *json, struct coh_call *c);
void coh_call_done(struct coh_call *c);

struct coh_reply {
        json_object *root;        /* owned */
        const char *error;        /* NULL for a reply, "iface.Name" for an error */
        json_object *parameters;  /* always an object */
        bool continues;
};

/* -EBADMSG for anything that is not a valid reply or error. */
int coh_reply_parse(const char *json, struct coh_reply *r);
void coh_reply_done(struct coh_reply *r);

/* Serializers; return a malloc'ed NUL-terminated string, NULL on ENOMEM. Take ownership of parameters (may be NULL). */
char *coh_call_format(const char *method, json_object *parameters, bool more, bool oneway);
char *coh_reply_format(json_object *parameters, bool continues);
char *coh_error_format(const char *error, json_object *parameters);
