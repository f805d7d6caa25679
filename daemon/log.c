/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>

#include "daemon.h"
#include "log.h"

void coh_log(struct coh_daemon *d, int priority, const char *message_id, const char *fmt, ...) {
        char message[1024];
        va_list ap;

        if (priority == LOG_DEBUG && !d->debug)
                return;
        va_start(ap, fmt);
        vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);
        if (!d->journal) {
                fprintf(stderr, "%s\n", message);
                return;
        }
        (void) coh_journal_send(d->journal, priority, message_id, message, NULL, 0);
}
