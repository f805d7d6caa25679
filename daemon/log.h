/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Plain records (no decision fields) through the daemon's journal. */

#include <syslog.h>

#include "messages.h"

struct coh_daemon;

void coh_log(struct coh_daemon *d, int priority, const char *message_id, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
#define coh_log_debug(d, ...) coh_log(d, LOG_DEBUG, NULL, __VA_ARGS__)
