/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "call.h"
#include "json-util.h"
#include "record.h"
#include "strbuf.h"

#define FIELD(rec, f) ((char *) (rec) + (f)->offset)
#define CFIELD(rec, f) ((const char *) (rec) + (f)->offset)

/* The field's value as the wire spells it, or NULL when it has none (empty, or no word). */
static const char *field_word(const struct coh_field *f, const void *rec) {
        switch (f->type) {
        case COH_FIELD_STRING:
                return CFIELD(rec, f)[0] ? CFIELD(rec, f) : NULL;
        case COH_FIELD_WORD:
                return coh_words_to_string(f->words, *(const int *) CFIELD(rec, f));
        default:
                return NULL;
        }
}

static bool field_empty(const struct coh_field *f, const void *rec) {
        switch (f->type) {
        case COH_FIELD_INT:
                return *(const int64_t *) CFIELD(rec, f) == 0;
        case COH_FIELD_BOOL:
                return !*(const bool *) CFIELD(rec, f);
        default:
                return !field_word(f, rec);
        }
}

void coh_record_to_json(const struct coh_field *table, const void *rec, unsigned which, json_object *o) {
        for (const struct coh_field *f = table; f->json; f++) {
                if (!(f->flags & which & COH_FIELD_FORMS) || ((f->flags & COH_FIELD_OPTIONAL) && field_empty(f, rec)))
                        continue;
                json_object *v;
                switch (f->type) {
                case COH_FIELD_INT:
                        v = json_object_new_int64(*(const int64_t *) CFIELD(rec, f));
                        break;
                case COH_FIELD_BOOL:
                        v = json_object_new_boolean(*(const bool *) CFIELD(rec, f));
                        break;
                default:
                        v = json_object_new_string(field_word(f, rec) ?: "");
                        break;
                }
                coh_json_add(o, f->json, v);
        }
}

void coh_record_write(const struct coh_field *table, const void *rec, unsigned which, struct coh_json_writer *w) {
        for (const struct coh_field *f = table; f->json; f++) {
                if (!(f->flags & which & COH_FIELD_FORMS) || ((f->flags & COH_FIELD_OPTIONAL) && field_empty(f, rec)))
                        continue;
                coh_jw_key_plain(w, f->json);
                switch (f->type) {
                case COH_FIELD_INT:
                        coh_jw_int(w, *(const int64_t *) CFIELD(rec, f));
                        break;
                case COH_FIELD_BOOL:
                        coh_jw_bool(w, *(const bool *) CFIELD(rec, f));
                        break;
                case COH_FIELD_STRING:
                        /* Bounded by the array, as coh_record_from_json() fills it. */
                        coh_jw_string_len(w, CFIELD(rec, f), strnlen(CFIELD(rec, f), f->size));
                        break;
                default:
                        coh_jw_string(w, field_word(f, rec) ?: "");
                        break;
                }
        }
}

/* A field's value from a reply, as coh_reply_read() keeps it or as json_member() makes it. */
static int field_from_node(const struct coh_field *f, const struct coh_json *v, void *rec) {
        switch (f->type) {
        case COH_FIELD_INT:
                if (v->type != COH_JSON_INT)
                        return -EBADMSG;
                *(int64_t *) FIELD(rec, f) = v->integer;
                return 0;
        case COH_FIELD_BOOL:
                if (v->type != COH_JSON_BOOL)
                        return -EBADMSG;
                *(bool *) FIELD(rec, f) = v->boolean;
                return 0;
        default:
                break;
        }
        if (v->type != COH_JSON_STRING)
                return -EBADMSG;
        if (f->type == COH_FIELD_STRING) {
                if (v->n >= f->size || strlen(v->string) != v->n)
                        return -EBADMSG; /* too long, or an embedded NUL */
                memcpy(FIELD(rec, f), v->string, v->n + 1);
                return 0;
        }
        /* A word is looked up as the C string, cut at a \u0000 as json-c's always was. */
        int i = coh_words_from_string(f->words, v->string);
        if (i < 0 && !(f->flags & COH_FIELD_LENIENT))
                return -EBADMSG;
        *(int *) FIELD(rec, f) = i;
        return 0;
}

/* The member key of o into *ret (its scalar part: no field is a container); false when absent or null.
 * *cursor is the member's own, for the next look-up to start after it (the daemon writes a record's
 * members in its table's order). */
typedef bool (*member_fn)(const void *o, const void **cursor, const char *key, struct coh_json *ret);

static bool json_member(const void *o, const void **cursor, const char *key, struct coh_json *ret) {
        json_object *v;

        (void) cursor; /* json-c looks keys up by hash */

        if (!json_object_object_get_ex((json_object *) o, key, &v) || !v)
                return false;
        switch (json_object_get_type(v)) {
        case json_type_int:
                /* json-c saturated integers beyond int64_t: taken so, as they always were here. */
                *ret = (struct coh_json) { .type = COH_JSON_INT, .integer = json_object_get_int64(v) };
                break;
        case json_type_boolean:
                *ret = (struct coh_json) { .type = COH_JSON_BOOL, .boolean = json_object_get_boolean(v) };
                break;
        case json_type_string:
                *ret = (struct coh_json) { .type = COH_JSON_STRING, .string = json_object_get_string(v),
                                           .n = (uint32_t) json_object_get_string_len(v) };
                break;
        default:
                *ret = (struct coh_json) { .type = COH_JSON_NUMBER }; /* of no field's type */
                break;
        }
        return true;
}

static bool node_member(const void *o, const void **cursor, const char *key, struct coh_json *ret) {
        const struct coh_json *v = coh_json_member_from(o, *cursor, key);

        if (!v)
                return false;
        *cursor = v->next;
        if (v->type == COH_JSON_NULL)
                return false;
        *ret = *v;
        return true;
}

static int record_fill(const struct coh_field *table, const void *o, member_fn member, unsigned which, void *rec,
                       const char **ret_bad) {
        const void *cursor = NULL;

        for (const struct coh_field *f = table; f->json; f++) {
                struct coh_json v;
                if (!(f->flags & which & COH_FIELD_FORMS))
                        continue;
                if (!member(o, &cursor, f->json, &v)) {
                        if (f->flags & COH_FIELD_OPTIONAL)
                                continue;
                        *ret_bad = f->json;
                        return -EBADMSG;
                }
                if (field_from_node(f, &v, rec) < 0) {
                        *ret_bad = f->json;
                        return -EBADMSG;
                }
        }
        return 0;
}

int coh_record_from_json(const struct coh_field *table, json_object *o, unsigned which, void *rec,
                         const char **ret_bad) {
        if (!json_object_is_type(o, json_type_object)) {
                *ret_bad = "";
                return -EBADMSG;
        }
        return record_fill(table, o, json_member, which, rec, ret_bad);
}

int coh_record_from_node(const struct coh_field *table, const struct coh_json *o, unsigned which, void *rec,
                         const char **ret_bad) {
        if (!o || o->type != COH_JSON_OBJECT) {
                *ret_bad = "";
                return -EBADMSG;
        }
        return record_fill(table, o, node_member, which, rec, ret_bad);
}

size_t coh_record_to_journal(const struct coh_field *table, const void *rec, struct coh_record_journal_field *out,
                             size_t max) {
        size_t n = 0;
        for (const struct coh_field *f = table; f->json && n < max; f++) {
                if (!f->journal)
                        continue;
                struct coh_record_journal_field *j = &out[n++];
                j->name = f->journal;
                switch (f->type) {
                case COH_FIELD_INT: {
                        int64_t i = *(const int64_t *) CFIELD(rec, f);
                        struct coh_strbuf sb;
                        if ((f->flags & COH_FIELD_OPTIONAL) && i == 0) {
                                j->value = NULL;
                                break;
                        }
                        coh_strbuf_init(&sb, j->buf, sizeof j->buf);
                        coh_strbuf_int(&sb, i);
                        j->value = j->buf;
                        break;
                }
                case COH_FIELD_BOOL:
                        j->value = *(const bool *) CFIELD(rec, f)           ? "yes"
                                   : (f->flags & COH_FIELD_OPTIONAL) ? NULL
                                                                       : "no";
                        break;
                default:
                        j->value = field_word(f, rec);
                        break;
                }
        }
        return n;
}
