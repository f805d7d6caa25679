/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The one daemon context: everything mutable lives here, reached from the
 * event loop's callbacks. No other module keeps global state.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "grants.h"
#include "journal.h"
#include "platform.h"
#include "policy.h"
#include "server.h"

struct event;
struct event_base;

struct coh_daemon {
        struct event_base *base;
        struct coh_platform *platform;
        struct coh_policy *policy;
        const char *config_dir;
        const char *vendor_dir;
        struct coh_journal *journal;
        struct coh_server server;
        struct coh_grants grants;
        struct event *sig_hup, *sig_term, *sig_int;
        int exit_status;
        bool debug;

        /* Grants live on across restarts in systemd's fd store (fdstore.h). */
        bool fdstore;
        int state_fd;
        struct event *ev_watchdog, *ev_idle;
        struct event *ev_status; /* STATUS= once per loop iteration, however much changed */
};

/* Tell systemd (STATUS=) and the idle timer that connections or grants changed. */
void coh_daemon_state_changed(struct coh_daemon *d);

/* Re-reads the policy; on failure the running one stays, *err says why. Logs either way. */
int coh_daemon_reload(struct coh_daemon *d, struct coh_policy_error *err);
