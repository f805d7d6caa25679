/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * JSON text written straight into a growing buffer, for the replies and
 * events sent on every call: building them as json_object trees cost more
 * than everything else a grant does (bench/README.md, issue 11). json-c
 * stays for parsing and for the replies nobody waits on.
 *
 * The caller writes in order: a member is coh_jw_key() then its value, and
 * the writer puts the commas. An allocation failure is remembered and seen
 * once, at coh_jw_steal(), so that no half-written text is ever sent.
 *
 * Strings are written as json-c writes them: '"', '\\' and every byte below
 * 0x20 escaped, every other byte as it is. Like json-c, the writer does not
 * check UTF-8; what the daemon sends comes from sysfs, the policy files and
 * its own words, and a client that validates (libcoherency does) refuses a
 * message with invalid UTF-8 whichever way it was written.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coh_json_writer {
        char *buf;
        size_t len, size;
        bool comma;  /* a value was written in the open container: the next one needs a ',' */
        bool failed; /* an allocation failed: coh_jw_steal() returns NULL */
};

void coh_jw_object_begin(struct coh_json_writer *w);
void coh_jw_object_end(struct coh_json_writer *w);
void coh_jw_array_begin(struct coh_json_writer *w);
void coh_jw_array_end(struct coh_json_writer *w);

/* A member's key; its value is what is written next. */
void coh_jw_key(struct coh_json_writer *w, const char *key);
void coh_jw_key_len(struct coh_json_writer *w, const char *key, size_t n);
/* A key the program spells itself (a field table's): never escaped, so not scanned for it. */
void coh_jw_key_plain(struct coh_json_writer *w, const char *key);

void coh_jw_string(struct coh_json_writer *w, const char *s);
void coh_jw_string_len(struct coh_json_writer *w, const char *s, size_t n);
void coh_jw_int(struct coh_json_writer *w, int64_t i);
void coh_jw_bool(struct coh_json_writer *w, bool b);
/* A value that is JSON text already (n bytes), copied as it is. */
void coh_jw_json(struct coh_json_writer *w, const char *json, size_t n);

/* The text, NUL-terminated and the caller's to free, or NULL when an allocation failed; w is emptied. */
char *coh_jw_steal(struct coh_json_writer *w, size_t *ret_len);
void coh_jw_done(struct coh_json_writer *w);

/*
 * The written object as a json_object that the reply functions take (call.h,
 * and the daemon's coh_conn_reply()): coh_reply_format() copies its text as
 * it is, and json-c, should it serialise it inside another object, writes the
 * same text. w is emptied. NULL when an allocation failed, here or while
 * writing (coh_json_failed() says so, and the connection drops rather than
 * send half an answer).
 */
json_object *coh_jw_to_object(struct coh_json_writer *w);
/* true with the text when o came from coh_jw_to_object(). */
bool coh_json_written(json_object *o, const char **ret_text, size_t *ret_len);
