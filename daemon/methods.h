/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The methods of io.coherencyd.Broker, io.coherencyd.Manager and
 * org.varlink.service: validate, call down (policy, decision, platform,
 * grants), reply. Each interface has its file and its method table
 * (method-broker.c, method-manager.c, method-service.c); this is what the
 * manager sees of them.
 */

#include "frame.h"
#include "policy-memo.h"
#include "refusal-fold.h"

struct coh_conn;
struct coh_grant;
struct coh_grants;
struct coh_platform;
struct coh_policy;
struct coh_policy_error;
struct coh_server;

struct coh_methods {
        struct coh_grants *grants;
        struct coh_platform *platform;
        struct coh_server *server;        /* for Monitor and WatchGrants streams */
        struct coh_policy *const *policy; /* the policy in force (the manager swaps it on reload) */
        /* Manager.ReloadPolicy: re-reads the policy; on failure *err says where. */
        int (*reload)(struct coh_policy_error *err, void *userdata);
        void *userdata;
        struct coh_refusal_fold fold;     /* refusals counted in this interval (refusal-fold.h) */
        struct coh_policy_memo policy_memo; /* the policy's results per device and peer (policy-memo.h) */
        /* Connections with a Monitor or WatchGrants stream open: while there are none,
         * events are not written at all (they were a tenth of a grant cycle). */
        unsigned n_streams;
};

/* Another policy is in force: what the old one said is forgotten. */
void coh_methods_policy_changed(struct coh_methods *ms);
/* Frees what the methods keep (the policy's results). */
void coh_methods_done(struct coh_methods *ms);

/*
 * Handles one message. Errors a client can cause are replies; a negative
 * return means the connection must be closed (malformed envelope, memory).
 */
int coh_methods_dispatch(struct coh_methods *ms, struct coh_conn *c, struct coh_message *m);

/* A connection is about to be freed (the server's closed callback): its stream, if any, ends. */
void coh_methods_conn_closed(struct coh_methods *ms, const struct coh_conn *c);

/* Writes the summaries of refusals folded so far (at a stop: they would be lost). */
void coh_methods_flush_refusals(struct coh_methods *ms);

/* Tells the grant's VMM (WatchGrants) and Monitor streams that it changed:
 * "revoked", "ending", "held" or "ended". */
void coh_methods_grant_event(struct coh_methods *ms, const struct coh_grant *g, const char *event);
