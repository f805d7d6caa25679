/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* proto/call.c's coh_call_parse() and the name check it used, at 2402694, unchanged but for names;
 * and where json-c was laxer than the parser that replaced it, for the fuzzers to allow. */

#include "call-reference.h"
#include "call.h"

#include <errno.h>
#include <string.h>

static bool is_alpha(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(char c) {
        return is_alpha(c) || (c >= '0' && c <= '9');
}

bool ref_qualified_name_is_valid(const char *s) {
        const char *dot, *p;

        dot = strrchr(s, '.');
        if (!dot || dot == s || dot[-1] == '.')
                return false;

        for (p = s; p < dot; p++) {
                bool word_start = p == s || p[-1] == '.';
                bool word_end = p + 1 == dot || p[1] == '.';

                if (*p == '.') {
                        if (word_start)
                                return false;
                        continue;
                }
                if (word_start && !(p == s ? is_alpha(*p) : is_alnum(*p)))
                        return false;
                if (*p == '-' && word_end)
                        return false;
                if (*p != '-' && !is_alnum(*p))
                        return false;
        }

        p = dot + 1;
        if (!(*p >= 'A' && *p <= 'Z'))
                return false;
        for (p++; *p; p++)
                if (!is_alnum(*p))
                        return false;
        return true;
}

static bool qualified_name_is_valid(json_object *o) {
        const char *s = json_object_get_string(o);

        /* A \u0000 escape would make the C string differ from what was sent. */
        if (!s || strlen(s) != (size_t) json_object_get_string_len(o))
                return false;
        return ref_qualified_name_is_valid(s);
}

int ref_call_parse(const char *json, struct ref_call *c) {
        json_object *root = NULL, *method = NULL, *parameters = NULL;
        int r;

        *c = (struct ref_call) {};

        r = coh_json_parse_object(json, &root); /* the reading replies still get */
        if (r < 0)
                return r;

        json_object_object_foreach(root, key, value) {
                if (strcmp(key, "method") == 0) {
                        if (!json_object_is_type(value, json_type_string) || !qualified_name_is_valid(value))
                                goto invalid;
                        method = value;
                } else if (strcmp(key, "parameters") == 0) {
                        if (value && !json_object_is_type(value, json_type_object))
                                goto invalid;
                        parameters = value;
                } else if (strcmp(key, "oneway") == 0 || strcmp(key, "more") == 0 ||
                           strcmp(key, "upgrade") == 0) {
                        bool b;

                        if (!json_object_is_type(value, json_type_boolean))
                                goto invalid;
                        b = json_object_get_boolean(value);
                        if (key[0] == 'o')
                                c->oneway = b;
                        else if (key[0] == 'm')
                                c->more = b;
                        else
                                c->upgrade = b;
                } else
                        goto invalid;
        }

        if (!method)
                goto invalid;
        if (c->oneway + c->more + c->upgrade > 1)
                goto invalid;

        r = coh_json_take_parameters(root, parameters, &c->parameters);
        if (r < 0)
                goto fail;

        c->root = root;
        c->method = json_object_get_string(method);
        return 0;

invalid:
        r = -EBADMSG;
fail:
        json_object_put(root);
        *c = (struct ref_call) {};
        return r;
}

void ref_call_done(struct ref_call *c) {
        json_object_put(c->root);
        *c = (struct ref_call) {};
}

/*
 * Where the json-c parser was laxer than RFC 8259 and coh_call_parse() is not
 * (proto/call-parse.c lists them): only an input showing one of these may be
 * refused by the new parser and taken by the old (calls: fuzz-call; replies,
 * coh_reply_read(): fuzz-reply). The scan is rough and errs
 * towards allowing (a repeated key anywhere, not only at one level), so it
 * hides nothing the old parser refused and the new one takes.
 */
bool ref_has_documented_difference(const char *s) {
        const char *keys[COH_CALL_PARAMS_MAX * 2];
        size_t key_len[COH_CALL_PARAMS_MAX * 2], n_keys = 0, n_members = 0;

        for (const char *p = s; *p; p++) {
                unsigned char ch = (unsigned char) *p;

                if (ch >= 0x80 || ch == '\'')
                        return true; /* UTF-8 json-c's check lets through; single quotes */
                if (ch == ':')
                        n_members++;
                if (ch == '0' && (p == s || !strchr("0123456789.eE+", p[-1])) &&
                    (p[1] >= '0' && p[1] <= '9'))
                        return true; /* "00", "-01" */
                if (ch == '.' && (!(p[1] >= '0' && p[1] <= '9') || p == s || !(p[-1] >= '0' && p[-1] <= '9')))
                        return true; /* "1.", "-.5" */
                if (ch != '"')
                        continue;

                const char *start = ++p;
                for (; *p && *p != '"'; p++) {
                        if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x80)
                                return true; /* raw controls in strings; UTF-8 as above */
                        if (*p == '\\') {
                                if (p[1] == 'u' && (strncmp(p + 2, "0000", 4) == 0 || p[2] == 'd' || p[2] == 'D'))
                                        return true; /* U+0000 in a key; surrogates */
                                if (p[1] == '\0')
                                        break;
                                p++;
                        }
                }
                if (!*p)
                        break;
                const char *q = p + 1;
                while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
                        q++;
                if (*q != ':')
                        continue;
                /* A key: a repeated one, or one that may spell another with escapes. */
                if (memchr(start, '\\', (size_t) (p - start)))
                        return true;
                for (size_t i = 0; i < n_keys; i++)
                        if (key_len[i] == (size_t) (p - start) && memcmp(keys[i], start, key_len[i]) == 0)
                                return true;
                if (n_keys < sizeof(keys) / sizeof(keys[0])) {
                        keys[n_keys] = start;
                        key_len[n_keys++] = (size_t) (p - start);
                }
        }
        return n_members > COH_CALL_PARAMS_MAX;
}
