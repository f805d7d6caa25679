/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Records described once by a field table, from which every form of them is
 * made: the JSON of replies and events, the journal's fields, the fd-store
 * record, and what a client parses back. Which forms a field appears in is
 * its flags.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json-writer.h"
#include "words.h"

enum coh_field_type {
        COH_FIELD_STRING, /* char[size] */
        COH_FIELD_INT,    /* int64_t */
        COH_FIELD_BOOL,   /* bool */
        COH_FIELD_WORD,   /* int, spelled by words (words.h); JSON and journal carry the word */
};

/*
 * A field's flags: the low byte names the forms it appears in, which each
 * record defines for itself (a grant's VMM, operator and store forms, say);
 * the bits above say how.
 */
#define COH_FIELD_FORMS 0xffu
enum {
        COH_FIELD_OPTIONAL = 1u << 8, /* left out while empty ("", 0, false, or a value without a word) */
        COH_FIELD_LENIENT = 1u << 9,  /* parsing: an unknown word reads as -1, not as an error */
};

struct coh_field {
        const char *json;    /* "device" */
        const char *journal; /* "COHERENCYD_SLOT", or NULL */
        enum coh_field_type type;
        size_t offset;
        size_t size;         /* COH_FIELD_STRING: the array's size */
        const struct coh_words *words;
        unsigned flags;
};

#define COH_FIELDS_END { NULL, NULL, 0, 0, 0, NULL, 0 }

/* The fields in any of the forms `which` into o (coh_json_add: a failure marks o). */
void coh_record_to_json(const struct coh_field *table, const void *rec, unsigned which, json_object *o);

/* The same members written into the object open in w (json-writer.h): the same
 * object, without a json_object tree (tests/proto/test-json-writer.c checks it). */
void coh_record_write(const struct coh_field *table, const void *rec, unsigned which, struct coh_json_writer *w);

/*
 * Fills rec from o: every field in any of the forms `which` that is not
 * optional must be there with its type; strings longer than their array are
 * an error. Returns 0, or -EBADMSG with *ret_bad naming the field.
 */
int coh_record_from_json(const struct coh_field *table, json_object *o, unsigned which, void *rec,
                         const char **ret_bad);

/* The same from a value coh_reply_read() read (call.h), without json-c. */
struct coh_json;
int coh_record_from_node(const struct coh_field *table, const struct coh_json *o, unsigned which, void *rec,
                         const char **ret_bad);

/* A journal field made from a record: name, and value in buf (or a string of the record). */
struct coh_record_journal_field {
        const char *name;
        const char *value; /* NULL: left out */
        char buf[24];
};

/* The fields that have a journal name, in table order; returns how many (at most max).
 * A bool reads "yes" or "no" ("no" is left out of an optional one). */
size_t coh_record_to_journal(const struct coh_field *table, const void *rec, struct coh_record_journal_field *out,
                             size_t max);
