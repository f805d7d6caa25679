/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The manager owns everything the daemon holds (the event loop, the
 * platform, the policy, the journal, the fd store, the grants, the server
 * and the methods) and wires the lower modules' callbacks together. Nothing
 * below it calls up: grants and the server report through the callbacks it
 * gave them.
 */

#include <stdbool.h>
#include <stddef.h>

#include "fdstore.h"
#include "notify.h"
#include "grants.h"
#include "journal.h"
#include "methods.h"
#include "platform.h"
#include "policy.h"
#include "server.h"

struct event;
struct event_base;

struct coh_manager_options {
        const char *socket_path;  /* NULL: socket activation, else the default path */
        const char *platform;     /* "linux" or "sim:DIR" */
        const char *config_dir;
        const char *vendor_dir;   /* may be NULL */
        bool debug;
        bool sandbox;
        bool fdstore;             /* --fd-store */
};

struct coh_manager {
        struct coh_manager_options options;
        struct event_base *base;
        struct coh_platform *platform;
        struct coh_policy *policy;
        struct coh_journal *journal;
        struct coh_notify notify;   /* to systemd: READY=, STATUS=, the fd store */
        struct coh_fdstore store;
        struct coh_grants grants;
        struct coh_server server;
        struct coh_methods methods;
        struct event *sig_hup, *sig_term, *sig_int;
        struct event *ev_watchdog, *ev_idle;
        struct event *ev_status; /* STATUS= at most once a second, however much changed; NULL without systemd */
        struct timeval status_sent;
        int helper_fd;              /* the platform's socket to the privileged helper (priv.h), borrowed */
        struct event *ev_helper;    /* ...readable when the helper has gone */
        bool helper_lost;
        struct coh_stored_fd *stored; /* what systemd handed back, until restored */
        size_t n_stored;
};

/* Loads the policy (logging why it does not parse), forks the privileged helper (priv.h) and
 * makes every object; nothing listens yet. */
int coh_manager_new(const struct coh_manager_options *o, struct coh_manager **ret);
/* Listens (or takes systemd's sockets), drops privileges (sandbox.h), adopts the fd store, READY=1. */
int coh_manager_startup(struct coh_manager *m);
/* Runs the loop until SIGTERM, SIGINT or idle exit; then keeps grants in the
 * fd store, or ends them. */
int coh_manager_run(struct coh_manager *m);
struct coh_manager *coh_manager_free(struct coh_manager *m);
static inline void coh_manager_freep(struct coh_manager **m) {
        if (*m)
                *m = coh_manager_free(*m);
}

/* Re-reads the policy; on failure the running one stays, *err says why. Logs either way. */
int coh_manager_reload(struct coh_manager *m, struct coh_policy_error *err);

/* restore.c: the fd-store state the manager writes, and a new instance's adoption of it. */
void coh_manager_save_state(struct coh_manager *m, bool shutdown);
int coh_manager_restore(struct coh_manager *m);
