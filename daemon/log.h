/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The daemon's log: records to the journal (journal.h) once coh_log_open()
 * was called, to stderr before that. Process-wide, like systemd's log.c, so
 * that no module needs a daemon pointer to say something.
 */

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

#include "journal.h"
#include "messages.h"

/* j may be NULL (stderr); debug: whether LOG_DEBUG records are written. */
void coh_log_open(struct coh_journal *j, bool debug);
void coh_log_close(void);

/* A plain record. */
void coh_log(int priority, const char *message_id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define coh_log_debug(...) coh_log(LOG_DEBUG, NULL, __VA_ARGS__)

/* A record with fields (see coh_journal_send); to stderr as one line without a journal. The fields'
 * names must be compile-time constants (coh_journal_send_const_names()), as every caller's are. */
void coh_log_record(int priority, const char *message_id, const char *message, const struct coh_journal_field *fields,
                    size_t n_fields);
