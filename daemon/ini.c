/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ini.h"

#define WHITESPACE " \t\r\n\v\f"
#define UTF8_BOM "\xef\xbb\xbf"

static char *strip(char *s) {
        s += strspn(s, WHITESPACE);
        for (size_t n = strlen(s); n > 0 && strchr(WHITESPACE, s[n - 1]); n--)
                s[n - 1] = 0;
        return s;
}

__attribute__((format(printf, 3, 4)))
static int syntax_error(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;

        if (err && errlen > 0) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

/* Works on a copy of the line so that section, key and value can be handed out NUL-terminated. */
static int parse_line(char *l, unsigned line, char *section, bool *have_section, coh_ini_handler_t handler,
                      void *userdata, char *err, size_t errlen) {
        char *eq, *key, *value;

        l = strip(l);
        if (*l == 0 || *l == '#' || *l == ';')
                return 0;

        if (*l == '[') {
                size_t n = strlen(l);

                if (n < 3 || l[n - 1] != ']' || strpbrk(l + 1, "[]") != l + n - 1)
                        return syntax_error(err, errlen, "invalid section header, expected [Name]");

                memcpy(section, l + 1, n - 2);
                section[n - 2] = 0;
                *have_section = true;
                return handler(section, NULL, NULL, line, userdata, err, errlen);
        }

        eq = strchr(l, '=');
        if (!eq)
                return syntax_error(err, errlen, "expected [Section], Key=Value or a comment");

        *eq = 0;
        key = strip(l);
        value = strip(eq + 1);
        if (*key == 0)
                return syntax_error(err, errlen, "empty key");
        if (!*have_section)
                return syntax_error(err, errlen, "key '%s' before any [Section] header", key);

        return handler(section, key, value, line, userdata, err, errlen);
}

int coh_ini_parse(const char *text, size_t len, coh_ini_handler_t handler, void *userdata,
                  unsigned *ret_line, char *err, size_t errlen) {
        char buf[COH_INI_LINE_MAX + 1], section[COH_INI_LINE_MAX + 1];
        bool have_section = false;
        const char *p = text, *end = text + len;
        unsigned line = 0;
        int r;

        if (err && errlen > 0)
                err[0] = 0;
        if (len == 0)
                return 0;  /* text may be NULL then, and NULL + 0 is undefined */

        if (len >= strlen(UTF8_BOM) && memcmp(p, UTF8_BOM, strlen(UTF8_BOM)) == 0)
                p += strlen(UTF8_BOM);

        while (p < end) {
                const char *nl = memchr(p, '\n', end - p);
                size_t n = (nl ? nl : end) - p;

                line++;

                /* Checked before anything else on the line: text after a NUL would be silently
                 * lost by every C string function, so such a file cannot mean what it says. */
                if (memchr(p, 0, n)) {
                        r = syntax_error(err, errlen, "NUL byte in file");
                        goto fail;
                }
                if (n > COH_INI_LINE_MAX) {
                        r = syntax_error(err, errlen, "line too long (more than %u bytes)", COH_INI_LINE_MAX);
                        goto fail;
                }

                memcpy(buf, p, n);
                buf[n] = 0;
                r = parse_line(buf, line, section, &have_section, handler, userdata, err, errlen);
                if (r < 0)
                        goto fail;

                p += n + (nl ? 1 : 0);
        }

        return 0;

fail:
        if (ret_line)
                *ret_line = line;
        return r;
}
