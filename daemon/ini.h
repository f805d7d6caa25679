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
 * As in systemd's unit files, '#' and ';' start a comment only at the start
 * of a line. A value holding either is refused rather than taken as written:
 * "Mode=automatic  # the default" is almost always meant as a comment, and
 * taken whole it would be an invalid mode at best and, in a list of globs,
 * a silent extra glob. No value of coherencyd's has a use for either
 * character (ids, globs on ids, drivers, slots and unit names, user and group
 * names, numbers, keywords).
 *
 * Errors: a line that is none of these, an assignment before the first
 * section header, an empty key, a value with '#' or ';', a NUL byte anywhere,
 * a line longer than COH_INI_LINE_MAX bytes (not counting its newline).
 */

#include <stddef.h>

#define COH_INI_LINE_MAX 4096U

/*
 * Called for each section header (key and value NULL) and each assignment,
 * in file order. Returns 0 to go on, or a negative errno after writing a
 * message into err (errlen bytes, NUL-terminated): -EINVAL for a mistake in
 * the line (the parse goes on with the next line), anything else to stop.
 */
typedef int (*coh_ini_handler_t)(const char *section, const char *key, const char *value, unsigned line,
                                 void *userdata, char *err, size_t errlen);

/* Called for each error, in file order: its line (1-based), the negative errno and why (without the line). */
typedef void (*coh_ini_error_t)(unsigned line, int error, const char *message, void *userdata);

/*
 * Parses len bytes of text (need not be NUL-terminated). Every error is
 * passed to on_error, and the parse goes on with the next line, so that one
 * run names every mistake in the file. The assignments under a section
 * header that was refused (by the syntax or by the handler) are skipped up to
 * the next header: the header's error says it all. An error other than
 * -EINVAL from the handler (out of memory, a lookup that failed) stops the
 * parse. Returns 0 when there was no error, else the first error's value.
 */
int coh_ini_parse(const char *text, size_t len, coh_ini_handler_t handler, coh_ini_error_t on_error,
                  void *userdata);
