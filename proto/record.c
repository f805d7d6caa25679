/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

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

static int field_from_json(const struct coh_field *f, json_object *v, void *rec) {
        switch (f->type) {
        case COH_FIELD_INT:
                if (!json_object_is_type(v, json_type_int))
                        return -EBADMSG;
                *(int64_t *) FIELD(rec, f) = json_object_get_int64(v);
                return 0;
        case COH_FIELD_BOOL:
                if (!json_object_is_type(v, json_type_boolean))
                        return -EBADMSG;
                *(bool *) FIELD(rec, f) = json_object_get_boolean(v);
                return 0;
        default:
                break;
        }
        if (!json_object_is_type(v, json_type_string))
                return -EBADMSG;
        const char *s = json_object_get_string(v);
        if (f->type == COH_FIELD_STRING) {
                size_t len = strlen(s);
                if (len >= f->size || len != (size_t) json_object_get_string_len(v))
                        return -EBADMSG; /* too long, or an embedded NUL */
                memcpy(FIELD(rec, f), s, len + 1);
                return 0;
        }
        int i = coh_words_from_string(f->words, s);
        if (i < 0 && !(f->flags & COH_FIELD_LENIENT))
                return -EBADMSG;
        *(int *) FIELD(rec, f) = i;
        return 0;
}

int coh_record_from_json(const struct coh_field *table, json_object *o, unsigned which, void *rec,
                         const char **ret_bad) {
        if (!json_object_is_type(o, json_type_object)) {
                *ret_bad = "";
                return -EBADMSG;
        }
        for (const struct coh_field *f = table; f->json; f++) {
                json_object *v;
                if (!(f->flags & which & COH_FIELD_FORMS))
                        continue;
                if (!json_object_object_get_ex(o, f->json, &v) || !v) {
                        if (f->flags & COH_FIELD_OPTIONAL)
                                continue;
                        *ret_bad = f->json;
                        return -EBADMSG;
                }
                if (field_from_json(f, v, rec) < 0) {
                        *ret_bad = f->json;
                        return -EBADMSG;
                }
        }
        return 0;
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
