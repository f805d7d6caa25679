/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static struct coh_journal *log_journal;
static bool log_debug;

void coh_log_open(struct coh_journal *j, bool debug) {
        log_journal = j;
        log_debug = debug;
}

void coh_log_close(void) {
        log_journal = NULL;
}

void coh_log_record(int priority, const char *message_id, const char *message, const struct coh_journal_field *fields,
                    size_t n_fields) {
        if (priority == LOG_DEBUG && !log_debug)
                return;
        if (!log_journal) {
                fprintf(stderr, "%s\n", message);
                return;
        }
        /* Never blocks; a record the journal cannot take now is queued or counted (journal.h). */
        (void) coh_journal_send_const_names(log_journal, priority, message_id, message, fields, n_fields);
}

void coh_log(int priority, const char *message_id, const char *fmt, ...) {
        char message[1024];
        va_list ap;

        if (priority == LOG_DEBUG && !log_debug)
                return;
        va_start(ap, fmt);
        vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);
        coh_log_record(priority, message_id, message, NULL, 0);
}
