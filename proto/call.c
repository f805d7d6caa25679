/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "call.h"
#include "json-writer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Deep enough for any parameters we define, shallow enough that hostile nesting is cheap. */
#define JSON_DEPTH_MAX 32

/* What the words of a name are made of; '.' separates them. */
enum {
        NAME_ALNUM = 1 << 0,
        NAME_DASH = 1 << 1,
};

static const unsigned char name_class[256] = {
        ['0' ... '9'] = NAME_ALNUM,
        ['A' ... 'Z'] = NAME_ALNUM,
        ['a' ... 'z'] = NAME_ALNUM,
        ['-'] = NAME_DASH,
};

/*
 * "iface.Member": the interface is dot-separated words of letters, digits and
 * inner dashes, starting with a letter; the member is [A-Z][A-Za-z0-9]*.
 * Checked by hand because these strings are matched against method tables and
 * copied into the journal, where anything looser would be surprising. One
 * pass, a word at a time: every call's method goes through here.
 */
bool coh_qualified_name_is_valid(const char *s, size_t len) {
        const char *word = s, *p = s;

        /* A \u0000 escape would make the C string differ from what was sent. */
        if (!s || strlen(s) != len)
                return false;

        for (;;) {
                while (name_class[(unsigned char) *p])
                        p++;
                if (*p != '.')
                        break;
                /* A word of the interface: not empty, no dash at either end, a letter first in the first. */
                if (p == word || name_class[(unsigned char) *word] != NAME_ALNUM || p[-1] == '-' ||
                    (word == s && *word <= '9'))
                        return false;
                word = ++p;
        }

        /* The member: after at least one dot, up to the end. */
        if (*p != '\0' || word == s || !(*word >= 'A' && *word <= 'Z'))
                return false;
        for (p = word; *p; p++)
                if (*p == '-')
                        return false;
        return true;
}

/*
 * json-c accepts NaN and Infinity even in strict mode, which are not JSON, and
 * turns 1e400 into infinity. Echoed back in a reply they would be invalid or
 * wrong, and NaN does not even compare equal to itself: refuse them all. The
 * tokener bounds the depth, so the recursion is bounded too.
 */
static bool numbers_are_finite(json_object *o) {
        switch (json_object_get_type(o)) {
        case json_type_double:
                return isfinite(json_object_get_double(o));
        case json_type_object: {
                json_object_object_foreach(o, key, value) {
                        (void) key;
                        if (!numbers_are_finite(value))
                                return false;
                }
                return true;
        }
        case json_type_array:
                for (size_t i = 0; i < json_object_array_length(o); i++)
                        if (!numbers_are_finite(json_object_array_get_idx(o, i)))
                                return false;
                return true;
        default:
                return true;
        }
}

int coh_json_parse_object(const char *json, json_object **ret) {
        struct json_tokener *tok;
        json_object *o;
        size_t len = strlen(json);
        int r = 0;

        tok = json_tokener_new_ex(JSON_DEPTH_MAX);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);

        o = json_tokener_parse_ex(tok, json, len);
        if (!o || json_tokener_get_error(tok) != json_tokener_success ||
            json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object) ||
            !numbers_are_finite(o)) {
                json_object_put(o);
                r = -EBADMSG;
        } else
                *ret = o;

        json_tokener_free(tok);
        return r;
}

int coh_json_take_parameters(json_object *root, json_object *value, json_object **ret) {
        json_object *empty;

        if (value) {
                if (!json_object_is_type(value, json_type_object))
                        return -EBADMSG;
                *ret = value;
                return 0;
        }

        empty = json_object_new_object();
        if (!empty)
                return -ENOMEM;
        if (json_object_object_add(root, "parameters", empty) < 0) {
                json_object_put(empty);
                return -ENOMEM;
        }
        *ret = empty;
        return 0;
}

int coh_reply_parse(const char *json, struct coh_reply *r) {
        json_object *root = NULL, *error = NULL, *parameters = NULL;
        int k;

        *r = (struct coh_reply) {};

        k = coh_json_parse_object(json, &root);
        if (k < 0)
                return k;

        json_object_object_foreach(root, key, value) {
                if (strcmp(key, "parameters") == 0) {
                        if (value && !json_object_is_type(value, json_type_object))
                                goto invalid;
                        parameters = value;
                } else if (strcmp(key, "continues") == 0) {
                        if (!json_object_is_type(value, json_type_boolean))
                                goto invalid;
                        r->continues = json_object_get_boolean(value);
                } else if (strcmp(key, "error") == 0) {
                        if (!json_object_is_type(value, json_type_string) ||
                            !coh_qualified_name_is_valid(json_object_get_string(value),
                                                         (size_t) json_object_get_string_len(value)))
                                goto invalid;
                        error = value;
                } else
                        goto invalid;
        }

        /* An error ends the call; one that claims more is coming cannot be matched to anything. */
        if (error && r->continues)
                goto invalid;

        k = coh_json_take_parameters(root, parameters, &r->parameters);
        if (k < 0)
                goto fail;

        r->root = root;
        r->error = error ? json_object_get_string(error) : NULL;
        return 0;

invalid:
        k = -EBADMSG;
fail:
        json_object_put(root);
        *r = (struct coh_reply) {};
        return k;
}

void coh_reply_done(struct coh_reply *r) {
        json_object_put(r->root);
        free(r->storage);
        *r = (struct coh_reply) {};
}

/* A message's flags that are true, then its end; the text stolen (NULL and errno ENOMEM when an allocation failed). */
static char *end_message(struct coh_json_writer *w, const char *flag1, bool value1, const char *flag2, bool value2) {
        char *s;

        if (flag1 && value1) {
                coh_jw_key(w, flag1);
                coh_jw_bool(w, true);
        }
        if (flag2 && value2) {
                coh_jw_key(w, flag2);
                coh_jw_bool(w, true);
        }
        coh_jw_object_end(w);

        s = coh_jw_steal(w, NULL);
        if (!s)
                errno = ENOMEM;
        return s;
}

/*
 * Writes {key: name, "parameters": ..., flags...}. Takes parameters in every
 * case. A non-object parameters is a caller bug that would put an invalid
 * message on the wire, so it fails with EINVAL. The envelope is written
 * directly (json-writer.h), and so are parameters that were written
 * (coh_jw_to_object()); only a json_object tree goes through json-c.
 * A false flag is the default: leaving it out keeps messages short and like
 * systemd's.
 */
static char *format_message(const char *key, const char *name, json_object *parameters,
                            const char *flag1, bool value1, const char *flag2, bool value2) {
        struct coh_json_writer w = {};
        const char *text;
        size_t len;
        char *s;

        if (!coh_json_written(parameters, &text, &len)) {
                if (parameters && !json_object_is_type(parameters, json_type_object)) {
                        json_object_put(parameters);
                        errno = EINVAL;
                        return NULL;
                }
                if (!parameters) {
                        text = "{}";
                        len = 2;
                } else {
                        text = json_object_to_json_string_length(
                                parameters, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
                        if (!text) {
                                json_object_put(parameters);
                                errno = ENOMEM;
                                return NULL;
                        }
                }
        }

        coh_jw_object_begin(&w);
        if (key) {
                coh_jw_key(&w, key);
                coh_jw_string(&w, name);
        }
        coh_jw_key(&w, "parameters");
        coh_jw_json(&w, text, len);
        /* text may be parameters' own: written before it goes. */
        s = end_message(&w, flag1, value1, flag2, value2);
        json_object_put(parameters);
        return s;
}

char *coh_call_format(const char *method, json_object *parameters, bool more, bool oneway) {
        return format_message("method", method, parameters, "more", more, "oneway", oneway);
}

void coh_call_begin(struct coh_json_writer *w, const char *method) {
        *w = (struct coh_json_writer) {};
        coh_jw_object_begin(w);
        coh_jw_key(w, "method");
        coh_jw_string(w, method);
        coh_jw_key(w, "parameters");
        coh_jw_object_begin(w);
}

char *coh_call_end(struct coh_json_writer *w, bool more, bool oneway) {
        coh_jw_object_end(w);
        return end_message(w, "more", more, "oneway", oneway);
}

char *coh_reply_format(json_object *parameters, bool continues) {
        return format_message(NULL, NULL, parameters, "continues", continues, NULL, false);
}

char *coh_error_format(const char *error, json_object *parameters) {
        return format_message("error", error, parameters, NULL, false, NULL, false);
}
