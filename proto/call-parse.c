/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A call as the daemon receives it, read without json-c: one pass over the
 * text, strictly by RFC 8259, keeping only the envelope and the top-level
 * members of "parameters". json-c built a tree of objects and hash tables for
 * every call, most of the daemon's work on a grant cycle (issue 11).
 *
 * Where json-c's strict mode was laxer than the RFC this refuses (the fuzz
 * target fuzz-call compares both and allows exactly these): duplicate keys,
 * single-quoted keys, raw control characters in strings, numbers with
 * leading zeros ("00", "-01") or a bare point ("1.", "-.5"), UTF-8 that RFC 3629
 * forbids (overlong forms, surrogates, beyond U+10FFFF), \u escapes of a lone
 * surrogate (json-c made them U+FFFD), keys holding \u0000 (json-c cut them
 * there: "vm\u0000x" was "vm"), and more than COH_CALL_PARAMS_MAX parameters.
 *
 * The same reader keeps a whole reply for the client (coh_reply_read(), at
 * the end): the same rules, duplicate keys and keys holding \u0000 refused at
 * every depth, as every value is kept there; integers beyond int64_t are
 * COH_JSON_NUMBER, no integer (json-c saturated them to its nearest end).
 * fuzz-reply compares it with json-c's coh_reply_parse().
 */

#include "call.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
 * As json_tokener_new_ex(32) in call.c allowed: a value at most 32 deep, the
 * envelope being 1. json-c counts values, not containers: "[]" may be the
 * 32nd, "[1]" may not (its 1 is the 33rd).
 */
#define JSON_DEPTH_MAX 32

struct reader {
        const char *p; /* the next byte; the text ends at its NUL, which is nowhere else valid */
        char *out;     /* the next free byte for decoded strings */
        struct coh_call *call;
        struct coh_call_param *params; /* COH_CALL_PARAMS_MAX of them */
        unsigned seen;                 /* envelope keys read, a bit each */
        /* Reading a whole value (coh_reply_read()): */
        struct coh_json *nodes;        /* the next free node */
        struct coh_json *nodes_end;
        struct coh_json *parent;       /* the container being filled */
        struct coh_json *last;         /* its last member or item so far */
        uint64_t keys;                 /* its members' keys so far, a bit each by key_bit() */
};

typedef int (*member_fn)(struct reader *r, unsigned depth, const char *key, size_t key_len);

static void skip_ws(struct reader *r) {
        while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
                r->p++;
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static int hex4(const char **p, unsigned *ret) {
        unsigned v = 0;

        for (int i = 0; i < 4; i++) {
                char c = (*p)[i];

                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (unsigned) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (unsigned) (c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (unsigned) (c - 'A' + 10);
                else
                        return -EBADMSG; /* the NUL at the end included, so nothing past it is read */
        }
        *p += 4;
        *ret = v;
        return 0;
}

static char *put_utf8(char *o, unsigned cp) {
        if (cp < 0x80)
                *o++ = (char) cp;
        else if (cp < 0x800) {
                *o++ = (char) (0xc0 | cp >> 6);
                *o++ = (char) (0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
                *o++ = (char) (0xe0 | cp >> 12);
                *o++ = (char) (0x80 | (cp >> 6 & 0x3f));
                *o++ = (char) (0x80 | (cp & 0x3f));
        } else {
                *o++ = (char) (0xf0 | cp >> 18);
                *o++ = (char) (0x80 | (cp >> 12 & 0x3f));
                *o++ = (char) (0x80 | (cp >> 6 & 0x3f));
                *o++ = (char) (0x80 | (cp & 0x3f));
        }
        return o;
}

/* ASCII that stands for itself in a string: not a control, '"' or '\\'. */
static const bool is_plain[256] = {
        [0x20 ... 0x21] = true,  /* '"' is 0x22 */
        [0x23 ... 0x5b] = true,  /* '\\' is 0x5c */
        [0x5d ... 0x7f] = true,
};

/* The length of the well-formed UTF-8 sequence of two to four bytes at p
 * (RFC 3629, section 4), or 0. Stops at the first bad byte, so never reads
 * past the NUL. */
static size_t utf8_sequence(const unsigned char *p) {
        unsigned char lo = 0x80, hi = 0xbf;
        size_t n;

        if (p[0] >= 0xc2 && p[0] <= 0xdf)
                n = 2;
        else if (p[0] >= 0xe0 && p[0] <= 0xef) {
                n = 3;
                if (p[0] == 0xe0)
                        lo = 0xa0; /* overlong */
                else if (p[0] == 0xed)
                        hi = 0x9f; /* UTF-16 surrogates */
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                n = 4;
                if (p[0] == 0xf0)
                        lo = 0x90; /* overlong */
                else if (p[0] == 0xf4)
                        hi = 0x8f; /* beyond U+10FFFF */
        } else
                return 0;

        if (p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}

/*
 * Decodes the string at r->p into r->out, NUL-terminated; *ret_len excludes
 * the NUL, so a \u0000 inside shows as strlen() < *ret_len. The decoded form
 * is never longer than the text with its quotes, so the text's length bounds
 * what all strings need.
 */
static int read_string(struct reader *r, char **ret, size_t *ret_len) {
        const char *p = r->p;
        char *o = r->out;

        if (*p != '"')
                return -EBADMSG;
        for (p++;;) {
                const char *plain = p;
                unsigned char ch;

                /* Most of a call is names and plain ASCII: copied by the run. */
                while (is_plain[(unsigned char) *p])
                        p++;
                memcpy(o, plain, (size_t) (p - plain));
                o += p - plain;

                ch = (unsigned char) *p;
                if (ch == '"')
                        break;
                if (ch < 0x20)
                        return -EBADMSG; /* controls must be escaped (RFC 8259, section 7); NUL ends the text */
                if (ch >= 0x80) {
                        size_t n = utf8_sequence((const unsigned char *) p);

                        if (n == 0)
                                return -EBADMSG;
                        memcpy(o, p, n);
                        o += n;
                        p += n;
                        continue;
                }
                if (ch != '\\') {
                        *o++ = *p++;
                        continue;
                }

                p += 2;
                switch (p[-1]) {
                case '"':
                case '\\':
                case '/':
                        *o++ = p[-1];
                        break;
                case 'b':
                        *o++ = '\b';
                        break;
                case 'f':
                        *o++ = '\f';
                        break;
                case 'n':
                        *o++ = '\n';
                        break;
                case 'r':
                        *o++ = '\r';
                        break;
                case 't':
                        *o++ = '\t';
                        break;
                case 'u': {
                        unsigned cp, lo;

                        if (hex4(&p, &cp) < 0)
                                return -EBADMSG;
                        /* A surrogate only as a pair: alone it is no character, and json-c's
                         * U+FFFD for it would be a string nobody sent. */
                        if (cp >= 0xdc00 && cp <= 0xdfff)
                                return -EBADMSG;
                        if (cp >= 0xd800 && cp <= 0xdbff) {
                                if (p[0] != '\\' || p[1] != 'u')
                                        return -EBADMSG;
                                p += 2;
                                if (hex4(&p, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                                        return -EBADMSG;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        }
                        o = put_utf8(o, cp);
                        break;
                }
                default:
                        return -EBADMSG; /* the NUL at the end included */
                }
        }

        *o = '\0';
        *ret = r->out;
        *ret_len = (size_t) (o - r->out);
        r->out = o + 1;
        r->p = p + 1;
        return 0;
}

/*
 * RFC 8259's number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. An
 * integer is kept when int64_t holds it. A fraction or exponent makes it
 * COH_VALUE_OTHER, but it must be finite: 1e400 would be infinity, which
 * JSON cannot say (json-c took it and NaN; call.c refuses both as well).
 */
static int read_number(struct reader *r, struct coh_call_param *v) {
        const char *p = r->p;
        bool negative = false, overflow = false, integer = true;
        uint64_t u = 0;

        if (*p == '-') {
                negative = true;
                p++;
        }
        if (*p == '0')
                p++;
        else if (*p >= '1' && *p <= '9')
                for (; is_digit(*p); p++) {
                        unsigned d = (unsigned) (*p - '0');

                        if (u > (UINT64_MAX - d) / 10)
                                overflow = true;
                        else
                                u = u * 10 + d;
                }
        else
                return -EBADMSG;

        if (*p == '.') {
                integer = false;
                if (!is_digit(*++p))
                        return -EBADMSG;
                while (is_digit(*p))
                        p++;
        }
        if (*p == 'e' || *p == 'E') {
                integer = false;
                p++;
                if (*p == '+' || *p == '-')
                        p++;
                if (!is_digit(*p))
                        return -EBADMSG;
                while (is_digit(*p))
                        p++;
        }

        if (!integer) {
                /* The daemon never calls setlocale(): strtod() reads the C locale's point. */
                if (!isfinite(strtod(r->p, NULL)))
                        return -EBADMSG;
                v->kind = COH_VALUE_OTHER;
        } else {
                if (overflow || u > (uint64_t) INT64_MAX + negative)
                        v->kind = COH_VALUE_OTHER;
                else {
                        v->kind = COH_VALUE_INT;
                        /* -(2^63) as unsigned negation, which is defined, then converted. */
                        v->integer = negative ? (int64_t) (0 - u) : (int64_t) u;
                }
        }
        r->p = p;
        return 0;
}

static int read_literal(struct reader *r, const char *word, size_t len) {
        if (strncmp(r->p, word, len) != 0)
                return -EBADMSG;
        r->p += len;
        return 0;
}

/* Past the '[' or '{' at r->p: 1 when close follows (consumed too), else 0, at the first item. */
static int open_container(struct reader *r, char close) {
        r->p++;
        skip_ws(r);
        if (*r->p != close)
                return 0;
        r->p++;
        return 1;
}

/* After an item: 1 at close (consumed), 0 past a ',' at the next item, or -EBADMSG. */
static int next_item(struct reader *r, char close) {
        skip_ws(r);
        if (*r->p == close) {
                r->p++;
                return 1;
        }
        if (*r->p != ',')
                return -EBADMSG;
        r->p++;
        skip_ws(r);
        return 0;
}

static int read_object(struct reader *r, unsigned depth, member_fn member);

static int skip_member(struct reader *r, unsigned depth, const char *key, size_t key_len);

/* A value, kept in *v when v is not NULL; depth is its own (the envelope's is 1). The
 * recursion is as deep as the text nests, so JSON_DEPTH_MAX bounds the stack too. */
static int read_value(struct reader *r, unsigned depth, struct coh_call_param *v) {
        struct coh_call_param ignored;
        int k;

        if (depth > JSON_DEPTH_MAX)
                return -EBADMSG;
        if (!v)
                v = &ignored;

        switch (*r->p) {
        case '"': {
                char *start = r->out, *s;
                size_t len;

                k = read_string(r, &s, &len);
                if (k < 0)
                        return k;
                if (v == &ignored)
                        r->out = start;
                else if (strlen(s) != len)
                        v->kind = COH_VALUE_OTHER; /* "a\u0000b" would pass for "a" */
                else {
                        v->kind = COH_VALUE_STRING;
                        v->string = s;
                }
                return 0;
        }
        case 't':
                v->kind = COH_VALUE_BOOL;
                v->boolean = true;
                return read_literal(r, "true", 4);
        case 'f':
                v->kind = COH_VALUE_BOOL;
                v->boolean = false;
                return read_literal(r, "false", 5);
        case 'n':
                v->kind = COH_VALUE_NULL;
                return read_literal(r, "null", 4);
        case '{':
                v->kind = COH_VALUE_OTHER;
                return read_object(r, depth, skip_member);
        case '[':
                v->kind = COH_VALUE_OTHER;
                for (k = open_container(r, ']'); k == 0; k = next_item(r, ']')) {
                        k = read_value(r, depth + 1, NULL);
                        if (k < 0)
                                return k;
                }
                return k < 0 ? k : 0;
        default:
                return read_number(r, v);
        }
}

/* '{' at r->p: each member's key is decoded, then member() reads its value (after the ':'). */
static int read_object(struct reader *r, unsigned depth, member_fn member) {
        int k;

        for (k = open_container(r, '}'); k == 0; k = next_item(r, '}')) {
                char *key;
                size_t key_len;

                k = read_string(r, &key, &key_len);
                if (k < 0)
                        return k;
                skip_ws(r);
                if (*r->p != ':')
                        return -EBADMSG;
                r->p++;
                skip_ws(r);
                k = member(r, depth, key, key_len);
                if (k < 0)
                        return k;
        }
        return k < 0 ? k : 0;
}

/* Inside a parameter's value: checked, not kept (duplicates there included, as nothing reads them). */
static int skip_member(struct reader *r, unsigned depth, const char *key, size_t key_len) {
        (void) key_len;
        r->out = (char *) key;
        return read_value(r, depth + 1, NULL);
}

static int parameter(struct reader *r, unsigned depth, const char *key, size_t key_len) {
        struct coh_call *c = r->call;
        struct coh_call_param *v;

        /* A key that is no C string could be neither matched nor named in an error. */
        if (strlen(key) != key_len || c->n_params >= COH_CALL_PARAMS_MAX)
                return -EBADMSG;
        for (size_t i = 0; i < c->n_params; i++)
                if (strcmp(r->params[i].key, key) == 0)
                        return -EBADMSG;

        v = &r->params[c->n_params++];
        v->key = key;
        return read_value(r, depth + 1, v);
}

static int envelope_member(struct reader *r, unsigned depth, const char *key, size_t key_len) {
        static const char *const names[] = { "method", "parameters", "oneway", "more", "upgrade" };
        struct coh_call *c = r->call;
        size_t i;
        int k;

        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (key_len == strlen(names[i]) && memcmp(key, names[i], key_len) == 0)
                        break;
        /* Unknown keys make a message invalid (the Varlink specification), and so does a
         * second value for one: json-c let the last win. */
        if (i == sizeof(names) / sizeof(names[0]) || r->seen & 1u << i)
                return -EBADMSG;
        r->seen |= 1u << i;

        switch (i) {
        case 0: {
                char *s;
                size_t len;

                k = read_string(r, &s, &len);
                if (k < 0)
                        return k;
                if (!coh_qualified_name_is_valid(s, len))
                        return -EBADMSG;
                c->method = s;
                return 0;
        }
        case 1:
                /* null is as good as absent; anything else must be an object. */
                if (*r->p == 'n')
                        return read_literal(r, "null", 4);
                if (*r->p != '{')
                        return -EBADMSG;
                c->params = r->params;
                return read_object(r, depth + 1, parameter);
        default: {
                struct coh_call_param v;
                bool *flag = i == 2 ? &c->oneway : i == 3 ? &c->more : &c->upgrade;

                if (*r->p != 't' && *r->p != 'f')
                        return -EBADMSG;
                k = read_value(r, depth + 1, &v);
                if (k < 0)
                        return k;
                *flag = v.boolean;
                return 0;
        }
        }
}

/* ---- A whole value, for replies ---- */

static int read_node(struct reader *r, unsigned depth, struct coh_json *v);

/* A new member or item at the end of r->parent, or NULL when there are more than
 * a valid text of this length can hold (coh_reply_read()): a text cut short, as
 * "[[[[" is, starts values it does not end. */
static struct coh_json *append_node(struct reader *r) {
        struct coh_json *n;

        if (r->nodes == r->nodes_end)
                return NULL;
        n = r->nodes++;
        *n = (struct coh_json) {};
        if (r->last)
                r->last->next = n;
        else
                r->parent->first = n;
        r->last = n;
        r->parent->n++;
        return n;
}

/* A key's bit in a container's set of keys: equal keys share it, so most keys
 * new to an object are known to be new without comparing them. */
static uint64_t key_bit(const char *key, size_t key_len) {
        unsigned h = (unsigned) key_len * 7;

        if (key_len > 0)
                h += (unsigned char) key[0] * 3 + (unsigned char) key[key_len - 1];
        return UINT64_C(1) << (h & 63);
}

static int node_member(struct reader *r, unsigned depth, const char *key, size_t key_len) {
        uint64_t bit = key_bit(key, key_len);
        struct coh_json *n;

        /* As in calls: a key that is no C string cannot be looked up, and a second
         * value for one is refused (json-c let the last win). */
        if (strlen(key) != key_len)
                return -EBADMSG;
        if (r->keys & bit)
                for (const struct coh_json *m = r->parent->first; m; m = m->next)
                        if (m->key_len == key_len && memcmp(m->key, key, key_len) == 0)
                                return -EBADMSG;
        r->keys |= bit;

        n = append_node(r);
        if (!n)
                return -EBADMSG;
        n->key = key;
        n->key_len = (uint32_t) key_len;
        return read_node(r, depth + 1, n);
}

/* Fills the container v from the '{' or '[' at r->p. */
static int read_container(struct reader *r, unsigned depth, struct coh_json *v) {
        struct coh_json *parent = r->parent, *last = r->last;
        uint64_t keys = r->keys;
        int k;

        r->parent = v;
        r->last = NULL;
        r->keys = 0;
        if (*r->p == '{') {
                v->type = COH_JSON_OBJECT;
                k = read_object(r, depth, node_member);
        } else {
                v->type = COH_JSON_ARRAY;
                for (k = open_container(r, ']'); k == 0; k = next_item(r, ']')) {
                        struct coh_json *n = append_node(r);

                        k = n ? read_node(r, depth + 1, n) : -EBADMSG;
                        if (k < 0)
                                break;
                }
        }
        r->parent = parent;
        r->last = last;
        r->keys = keys;
        return k < 0 ? k : 0;
}

/* As read_value(), the value kept whole in v. */
static int read_node(struct reader *r, unsigned depth, struct coh_json *v) {
        struct coh_call_param scalar;
        int k;

        if (depth > JSON_DEPTH_MAX)
                return -EBADMSG;

        switch (*r->p) {
        case '"': {
                char *s;
                size_t len;

                k = read_string(r, &s, &len);
                if (k < 0)
                        return k;
                v->type = COH_JSON_STRING;
                v->string = s;
                v->n = (uint32_t) len;
                return 0;
        }
        case '{':
        case '[':
                return read_container(r, depth, v);
        default:
                k = read_value(r, depth, &scalar);
                if (k < 0)
                        return k;
                switch (scalar.kind) {
                case COH_VALUE_NULL:
                        v->type = COH_JSON_NULL;
                        break;
                case COH_VALUE_BOOL:
                        v->type = COH_JSON_BOOL;
                        v->boolean = scalar.boolean;
                        break;
                case COH_VALUE_INT:
                        v->type = COH_JSON_INT;
                        v->integer = scalar.integer;
                        break;
                default:
                        v->type = COH_JSON_NUMBER;
                        break;
                }
                return 0;
        }
}

const struct coh_json *coh_json_member_from(const struct coh_json *o, const struct coh_json *from, const char *key) {
        const struct coh_json *m;
        size_t len;

        if (!o || o->type != COH_JSON_OBJECT)
                return NULL;
        /* Lengths first: most keys differ in it, and comparing them costs no call. */
        len = strlen(key);
        m = from ?: o->first;
        for (size_t i = 0; i < o->n; i++) {
                if (m->key_len == len && memcmp(m->key, key, len) == 0)
                        return m;
                m = m->next ?: o->first;
        }
        return NULL;
}

const struct coh_json *coh_json_member(const struct coh_json *o, const char *key) {
        return coh_json_member_from(o, NULL, key);
}

int coh_reply_read(const char *json, struct coh_reply *ret) {
        static const struct coh_json empty = { .type = COH_JSON_OBJECT };
        size_t len = strlen(json);
        struct coh_json *root;
        struct reader r = { .p = json };
        int k;

        *ret = (struct coh_reply) {};

        /* The string lengths of the nodes are 32 bits: far beyond any message (frame.h). */
        if (len > UINT32_MAX)
                return -EBADMSG;
        /*
         * One allocation: the nodes, then every decoded string. A valid text of len
         * bytes holds at most (len + 1) / 2 values: V of them, C containers among
         * them, take 2 bytes a container, 1 at least a scalar, and a ',' or a ':'
         * more for each item or member but the first of each container, so
         * len >= 2C + (V - C) + (V - 1 - C) = 2V - 1.
         */
        ret->storage = malloc(sizeof(struct coh_json) * (len / 2 + 1) + len + 1);
        if (!ret->storage)
                return -ENOMEM;
        root = r.nodes = ret->storage;
        r.nodes_end = r.nodes + len / 2 + 1;
        r.out = (char *) r.nodes_end;
        r.nodes++;
        *root = (struct coh_json) {};

        skip_ws(&r);
        if (*r.p != '{')
                goto invalid;
        k = read_node(&r, 1, root);
        if (k < 0)
                goto invalid;
        skip_ws(&r);
        if (*r.p != '\0')
                goto invalid;

        /* The envelope: unknown keys make a message invalid (the Varlink specification). */
        for (const struct coh_json *m = root->first; m; m = m->next) {
                if (strcmp(m->key, "parameters") == 0) {
                        if (m->type == COH_JSON_OBJECT)
                                ret->params = m;
                        else if (m->type != COH_JSON_NULL)
                                goto invalid;
                } else if (strcmp(m->key, "continues") == 0) {
                        if (m->type != COH_JSON_BOOL)
                                goto invalid;
                        ret->continues = m->boolean;
                } else if (strcmp(m->key, "error") == 0) {
                        if (m->type != COH_JSON_STRING || !coh_qualified_name_is_valid(m->string, m->n))
                                goto invalid;
                        ret->error = m->string;
                } else
                        goto invalid;
        }
        /* An error ends the call; one that claims more is coming cannot be matched to anything. */
        if (ret->error && ret->continues)
                goto invalid;
        if (!ret->params)
                ret->params = &empty;
        return 0;

invalid:
        free(ret->storage);
        *ret = (struct coh_reply) {};
        return -EBADMSG;
}

int coh_call_parse(const char *json, struct coh_call *c) {
        size_t len = strlen(json);
        struct reader r = { .p = json, .call = c };
        int k;

        *c = (struct coh_call) {};

        /* One allocation: the parameters, then every decoded string (never more than the text). */
        c->storage = malloc(sizeof(struct coh_call_param) * COH_CALL_PARAMS_MAX + len + 1);
        if (!c->storage)
                return -ENOMEM;
        r.params = c->storage;
        r.out = (char *) (r.params + COH_CALL_PARAMS_MAX);

        skip_ws(&r);
        if (*r.p != '{')
                goto invalid;
        k = read_object(&r, 1, envelope_member);
        if (k < 0)
                goto invalid;
        skip_ws(&r);
        if (*r.p != '\0' || !c->method)
                goto invalid;
        /* Each pair asks for contradictory replies: none, several, or one then a
         * different protocol. systemd refuses these combinations too. */
        if (c->oneway + c->more + c->upgrade > 1)
                goto invalid;
        return 0;

invalid:
        coh_call_done(c);
        return -EBADMSG;
}

void coh_call_done(struct coh_call *c) {
        free(c->storage);
        *c = (struct coh_call) {};
}
