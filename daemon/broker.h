/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The request path: a call from a connection -> the facts of the passed
 * descriptors -> policy -> decision -> action -> reply -> journal.
 */

#include <json-c/json.h>

#include "frame.h"

struct coh_conn;
struct coh_daemon;

/*
 * Handles one message. Errors a client can cause are replies; a negative
 * return means the connection must be closed (malformed envelope, memory).
 */
int coh_broker_dispatch(struct coh_daemon *d, struct coh_conn *c, struct coh_message *m);

struct coh_grant;
/* Tells the grant's VMM (WatchGrants) and Monitor streams that it changed:
 * "revoked", "ending", "held" or "ended". */
void coh_broker_grant_event(struct coh_daemon *d, const struct coh_grant *g, const char *event);
