/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ini.h"

#define WHITESPACE " \t\r\n\v\f"
#define UTF8_BOM "\xef\xbb\xbf"
#define COMMENT_CHARS "#;"

/* Whether the assignments that follow go to the handler. */
enum section_state {
        SECTION_NONE,     /* no header yet: an assignment is an error, and the ones after it are skipped */
        SECTION_OK,
        SECTION_REFUSED,  /* the header was an error: its assignments are skipped */
};

struct parser {
        coh_ini_handler_t handler;
        void *userdata;
        char section[COH_INI_LINE_MAX + 1];
        enum section_state state;
};

static char *strip(char *s) {
        s += strspn(s, WHITESPACE);
        for (size_t n = strlen(s); n > 0 && strchr(WHITESPACE, s[n - 1]); n--)
                s[n - 1] = 0;
        return s;
}

__attribute__((format(printf, 3, 4)))
static int syntax_error(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int parse_header(struct parser *ps, char *l, unsigned line, char *err, size_t errlen) {
        size_t n = strlen(l);
        int r;

        if (n < 3 || l[n - 1] != ']' || strpbrk(l + 1, "[]") != l + n - 1) {
                ps->state = SECTION_REFUSED;
                if (strpbrk(l, COMMENT_CHARS))
                        return syntax_error(err, errlen,
                                            "invalid section header: '%c' starts a comment only at the start of a "
                                            "line (as in systemd unit files); put the comment on a line of its own",
                                            *strpbrk(l, COMMENT_CHARS));
                return syntax_error(err, errlen, "invalid section header, expected [Name]");
        }

        memcpy(ps->section, l + 1, n - 2);
        ps->section[n - 2] = 0;
        r = ps->handler(ps->section, NULL, NULL, line, ps->userdata, err, errlen);
        ps->state = r < 0 ? SECTION_REFUSED : SECTION_OK;
        return r;
}

/* Works on a copy of the line so that section, key and value can be handed out NUL-terminated. */
static int parse_line(struct parser *ps, char *l, unsigned line, char *err, size_t errlen) {
        char *eq, *key, *value, *comment;

        l = strip(l);
        if (*l == 0 || strchr(COMMENT_CHARS, *l))
                return 0;

        if (*l == '[')
                return parse_header(ps, l, line, err, errlen);

        eq = strchr(l, '=');
        if (!eq)
                return syntax_error(err, errlen, "expected [Section], Key=Value or a comment");

        *eq = 0;
        key = strip(l);
        value = strip(eq + 1);
        if (*key == 0)
                return syntax_error(err, errlen, "empty key");

        switch (ps->state) {
        case SECTION_NONE:
                ps->state = SECTION_REFUSED;
                return syntax_error(err, errlen, "key '%s' before any [Section] header", key);
        case SECTION_REFUSED:
                return 0;
        case SECTION_OK:
                break;
        }

        comment = strpbrk(value, COMMENT_CHARS);
        if (comment)
                return syntax_error(err, errlen,
                                    "'%c' in the value of %s=: it starts a comment only at the start of a line "
                                    "(as in systemd unit files); put the comment on a line of its own",
                                    *comment, key);

        return ps->handler(ps->section, key, value, line, ps->userdata, err, errlen);
}

/* One line of n bytes at p (no newline): 0, or the error, already passed on. */
static int parse_one(struct parser *ps, const char *p, size_t n, unsigned line, coh_ini_error_t on_error) {
        char buf[COH_INI_LINE_MAX + 1], err[256] = "";
        int r;

        /* Checked before anything else on the line: text after a NUL would be silently
         * lost by every C string function, so such a file cannot mean what it says. */
        if (memchr(p, 0, n))
                r = syntax_error(err, sizeof err, "NUL byte in file");
        else if (n > COH_INI_LINE_MAX)
                r = syntax_error(err, sizeof err, "line too long (more than %u bytes)", COH_INI_LINE_MAX);
        else {
                memcpy(buf, p, n);
                buf[n] = 0;
                r = parse_line(ps, buf, line, err, sizeof err);
        }

        if (r < 0 && on_error)
                on_error(line, r, err[0] ? err : strerror(-r), ps->userdata);
        return r;
}

int coh_ini_parse(const char *text, size_t len, coh_ini_handler_t handler, coh_ini_error_t on_error,
                  void *userdata) {
        struct parser ps = { .handler = handler, .userdata = userdata, .state = SECTION_NONE };
        const char *p = text, *end = text + len;
        unsigned line = 0;
        int first = 0;

        if (len == 0)
                return 0;  /* text may be NULL then, and NULL + 0 is undefined */

        if (len >= strlen(UTF8_BOM) && memcmp(p, UTF8_BOM, strlen(UTF8_BOM)) == 0)
                p += strlen(UTF8_BOM);

        while (p < end) {
                const char *nl = memchr(p, '\n', end - p);
                size_t n = (nl ? nl : end) - p;
                int r;

                r = parse_one(&ps, p, n, ++line, on_error);
                if (r < 0 && first == 0)
                        first = r;
                if (r < 0 && r != -EINVAL)
                        break;

                p += n + (nl ? 1 : 0);
        }

        return first;
}
