/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A tokenizer for systemd-style INI files that keeps line numbers, so that
 * every setting can be traced back to the file:line that made it (libinih
 * does not report the line of each key).
 *
 * Syntax: "[Section]" headers; "Key=Value" assignments (whitespace around key
 * and value trimmed, the value may be empty); lines whose first non-blank
 * character is '#' or ';' are comments; blank lines are ignored; no line
 * continuation and no quoting. A UTF-8 byte order mark at the start is skipped.
 *
 * Errors: a line that is none of these, an assignment before the first
 * section header, an empty key, a NUL byte anywhere, a line longer than
 * COH_INI_LINE_MAX bytes (not counting its newline).
 */

#include <stddef.h>

#define COH_INI_LINE_MAX 4096U

/*
 * Called for each section header (key and value NULL) and each assignment,
 * in file order. Returns 0 to go on, or a negative errno to stop the parse,
 * after writing a message into err (errlen bytes, NUL-terminated).
 */
typedef int (*coh_ini_handler_t)(const char *section, const char *key, const char *value, unsigned line,
                                 void *userdata, char *err, size_t errlen);

/*
 * Parses len bytes of text (need not be NUL-terminated). Returns 0; -EINVAL
 * on a syntax error; or what the handler returned. On failure *ret_line is
 * the line at fault (1-based) and err holds the reason, without the line.
 */
int coh_ini_parse(const char *text, size_t len, coh_ini_handler_t handler, void *userdata,
                  unsigned *ret_line, char *err, size_t errlen);
