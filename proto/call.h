/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Varlink message envelope: calls (what the daemon receives) and replies
 * and errors (what the client receives). Unknown top-level keys make a message
 * invalid, as the Varlink specification says.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What a call's parameters hold, as far as any method can take it: the
 * top-level members only. Nested values are checked (syntax, depth, UTF-8,
 * finite numbers) but not kept, as no parameter of ours is an array or an
 * object: for a method they are of the wrong type, as floats are.
 */
enum coh_value_kind {
        COH_VALUE_NULL,
        COH_VALUE_BOOL,
        COH_VALUE_INT,    /* an integer within int64_t, without fraction or exponent */
        COH_VALUE_STRING, /* without U+0000, which would cut the C string short */
        COH_VALUE_OTHER,  /* an object, an array, a fraction or exponent, an integer out of range, a string with U+0000 */
};

struct coh_call_param {
        const char *key; /* NUL-terminated, no U+0000 inside */
        enum coh_value_kind kind;
        union {
                bool boolean;
                int64_t integer;
                const char *string;
        };
};

/*
 * A call as the daemon reads it. coh_call_parse() does not use json-c: it
 * reads the text once, strictly by RFC 8259, into one allocation that
 * holds the decoded strings and the parameters. Duplicate keys (json-c
 * would let the last win) are refused, as systemd's sd_json_dispatch does:
 * two values for one name are a client bug or an attempt to confuse
 * whoever reads the message after us.
 */
struct coh_call {
        const char *method;             /* "io.coherencyd.Broker.Probe" */
        const struct coh_call_param *params; /* in the order sent; none when absent or null */
        size_t n_params;
        bool oneway, more, upgrade;
        void *storage;                  /* owned: everything above points into it */
};

/* More is refused as malformed: no method takes more than a handful, and the
 * bound keeps the check for duplicates cheap for any message. */
#define COH_CALL_PARAMS_MAX 64

/* "iface.Member" as the Varlink specification spells names (s is NUL-terminated, len its length). */
bool coh_qualified_name_is_valid(const char *s, size_t len);

/* -EBADMSG for anything that is not a valid call, -ENOMEM. */
int coh_call_parse(const char *json, struct coh_call *c);
void coh_call_done(struct coh_call *c);

/* One complete JSON object and nothing but whitespace around it, read by json-c (strict,
 * UTF-8 checked, at most 32 deep, finite numbers only): what replies are read with. */
int coh_json_parse_object(const char *json, json_object **ret);
/* A message's "parameters" member (value, NULL when absent or null) as an object: absent and
 * null become an empty object owned by root, so callers never special-case them and nothing
 * outlives root. -EBADMSG when value is no object, -ENOMEM. */
int coh_json_take_parameters(json_object *root, json_object *value, json_object **ret);

/*
 * A JSON value read by the same one-pass reader, kept whole: what the client
 * reads the replies of a grant cycle into (issue 11: json-c's tree was most
 * of its work). Every value of a text lives in one allocation, strings
 * decoded and NUL-terminated; read-only once made.
 */
enum coh_json_type {
        COH_JSON_NULL,
        COH_JSON_BOOL,
        COH_JSON_INT,    /* an integer within int64_t, without fraction or exponent */
        COH_JSON_NUMBER, /* any other number (finite) */
        COH_JSON_STRING,
        COH_JSON_OBJECT,
        COH_JSON_ARRAY,
};

struct coh_json {
        enum coh_json_type type;
        uint32_t n;                  /* STRING: its bytes (a \u0000 inside makes strlen() shorter); OBJECT, ARRAY: members, items */
        uint32_t key_len;            /* strlen(key) */
        const char *key;             /* a member's name (no U+0000 in it); NULL for an item */
        const struct coh_json *next; /* the container's next member or item, in text order */
        union {
                bool boolean;
                int64_t integer;
                const char *string;
                const struct coh_json *first; /* OBJECT, ARRAY: the first member or item */
        };
};

/* The member `key` of o, or NULL (also when o is no object). Keys are unique: a text that repeats one is refused. */
const struct coh_json *coh_json_member(const struct coh_json *o, const char *key);
/* The same, looking from the member from (NULL: the first) round to the one before it: reading
 * members in the order they were sent, each is found at once. from must be a member of o. */
const struct coh_json *coh_json_member_from(const struct coh_json *o, const struct coh_json *from, const char *key);

struct coh_reply {
        json_object *root;        /* owned; coh_reply_parse() */
        const char *error;        /* NULL for a reply, "iface.Name" for an error */
        json_object *parameters;  /* coh_reply_parse(): always an object */
        const struct coh_json *params; /* coh_reply_read(): always an object */
        bool continues;
        void *storage;            /* owned; coh_reply_read(): everything above points into it */
};

/* -EBADMSG for anything that is not a valid reply or error. */
int coh_reply_parse(const char *json, struct coh_reply *r);
/* The same without json-c (call-parse.c): params instead of parameters, strict as
 * coh_call_parse() is where json-c was laxer (the list at the head of call-parse.c). */
int coh_reply_read(const char *json, struct coh_reply *r);
void coh_reply_done(struct coh_reply *r);

/* Serializers; return a malloc'ed NUL-terminated string, NULL on ENOMEM. Take ownership of parameters (may be NULL). */
char *coh_call_format(const char *method, json_object *parameters, bool more, bool oneway);
/* The same call written straight into w (json-writer.h), without a json_object: coh_call_begin()
 * writes up to the parameters' '{', the caller their members, coh_call_end() the rest and takes
 * the text from w (NULL on ENOMEM). */
struct coh_json_writer;
void coh_call_begin(struct coh_json_writer *w, const char *method);
char *coh_call_end(struct coh_json_writer *w, bool more, bool oneway);
char *coh_reply_format(json_object *parameters, bool continues);
char *coh_error_format(const char *error, json_object *parameters);
