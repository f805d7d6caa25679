/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Dispatch, replies and streams for the three interfaces. Everything a
 * client can get wrong is answered with an error naming the parameter at
 * fault; every descriptor a message carried is either taken by a grant or
 * closed with the message.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "json-util.h"
#include "grants.h"
#include "log.h"
#include "messages.h"
#include "methods-internal.h"
#include "refusal-fold.h"
#include "server.h"
#include "util.h"

/*
 * The VMM's descriptors (the call's, taken into parameters or not) are
 * closed before it is answered: a reply is written to the socket at once
 * (server.c, conn_send()), so a VMM that has its answer, an error above
 * all, finds nothing of its own still held here (the vm tier checks
 * /proc/PID/fd of the daemon then). A handler that keeps one (a grant's
 * VM) has taken it out of its parameters before.
 */
static void close_call_fds(struct call_ctx *x) {
        if (x->params_table)
                coh_params_done(x->params_table, x->params);
        if (!x->msg)
                return;
        for (size_t i = 0; i < x->msg->n_fds; i++)
                if (x->msg->fds[i] >= 0) {
                        (void) close(x->msg->fds[i]);
                        x->msg->fds[i] = -1;
                }
}

int method_reply(struct call_ctx *x, json_object *p) {
        close_call_fds(x);
        return coh_conn_reply(x->conn, p, false);
}

static int call_error(struct call_ctx *x, const char *error, json_object *p) {
        close_call_fds(x);
        return coh_conn_error(x->conn, error, p);
}

int method_error(struct call_ctx *x, const char *error, const char *key, const char *value) {
        json_object *p = json_object_new_object();
        if (key)
                coh_json_add(p, key, json_object_new_string(value));
        return call_error(x, error, p);
}

int method_invalid_fd(struct call_ctx *x, const char *parameter, const char *expected, const char *got) {
        json_object *p = json_object_new_object();
        coh_json_add(p, "parameter", json_object_new_string(parameter));
        coh_json_add(p, "expected", json_object_new_string(expected));
        coh_json_add(p, "got", json_object_new_string(got));
        return call_error(x, BROKER "InvalidFileDescriptor", p);
}

int method_params(struct call_ctx *x, const struct coh_param *table, void *ret) {
        const char *bad = NULL;
        if (coh_params_dispatch(&x->call, x->msg, table, ret, &bad) == 0) {
                x->params_table = table;
                x->params = ret;
                return 0;
        }
        int r = method_error(x, SERVICE "InvalidParameter", "parameter", bad);
        return r < 0 ? r : 1;
}

int method_no_params(struct call_ctx *x) {
        static const struct coh_param none[] = { COH_PARAMS_END };
        return method_params(x, none, NULL);
}

/*
 * How far a stream's reader (Monitor, WatchGrants) may fall behind: queued
 * events beyond this end its stream with LimitExceeded (limit
 * "StreamBacklog") and free the queue, so a subscriber that stops reading
 * costs the daemon at most this much (plus one event and the socket's buffer,
 * which is the kernel's) rather than a reply's 16 MiB.
 */
#define STREAM_BACKLOG_MAX (1024u * 1024u)

static void stream_fell_behind(struct coh_conn *c) {
        coh_log(LOG_NOTICE, NULL, "%s stream of pid %d (uid %u) ended: its reader fell %zu bytes behind",
                c->monitor ? "Monitor" : "WatchGrants", (int) c->peer.pid, (unsigned) c->peer.uid, coh_conn_queued(c));
        json_object *p = json_object_new_object();
        coh_json_add(p, "limit", json_object_new_string("StreamBacklog"));
        coh_conn_abort(c, BROKER "LimitExceeded", p);
}

int method_stream_params(struct call_ctx *x) {
        int r = method_no_params(x);
        if (r != 0)
                return r;
        if (!x->call.more) {
                r = method_error(x, SERVICE "ExpectedMore", NULL, NULL);
                return r < 0 ? r : 1;
        }
        return 0;
}

void methods_broadcast(struct coh_methods *ms, json_object *ev, pid_t watcher_pid) {
        struct coh_conn *c, *next;
        for (c = LIST_FIRST(&ms->server->conns); c; c = next) {
                next = LIST_NEXT(c, link);
                if (c->closing)
                        continue;
                if (!((watcher_pid == 0 && c->monitor) || (watcher_pid > 0 && c->watch && c->peer.pid == watcher_pid)))
                        continue;
                if (coh_conn_queued(c) > STREAM_BACKLOG_MAX)
                        stream_fell_behind(c); /* closes it later, from the loop: the walk goes on */
                else
                        coh_conn_reply(c, json_object_get(ev), true);
        }
        json_object_put(ev);
}

json_object *methods_grants_json(struct call_ctx *x, bool (*match)(const struct coh_grant *g, const struct coh_conn *c),
                                 bool manager) {
        json_object *list = json_object_new_array();
        struct coh_grant *g;
        LIST_FOREACH(g, &x->ms->grants->grants, link)
                if (!match || match(g, x->conn))
                        coh_json_append(list, coh_grant_to_json(g, manager));
        return list;
}

void coh_methods_conn_closed(struct coh_methods *ms, const struct coh_conn *c) {
        /* A connection has one stream at most: it takes no call once one is open. */
        if (c->monitor || c->watch)
                ms->n_streams--;
}

void coh_methods_grant_event(struct coh_methods *ms, const struct coh_grant *g, const char *event) {
        if (ms->n_streams == 0)
                return;
        /* The VMM's own stream: the grant as ListGrants shows it (coh_grant_to_json()),
         * its record with the VM's WBINVD state filled in. */
        struct coh_grant_record rec = g->rec;
        rec.vm_wbinvd = g->vm && g->vm->n_granted > 0;
        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        coh_jw_key(&w, "event");
        coh_jw_string(&w, event);
        coh_jw_key(&w, "grants");
        coh_jw_array_begin(&w);
        coh_jw_object_begin(&w);
        coh_record_write(coh_grant_record_fields, &rec, COH_GRANT_FORM_VMM, &w);
        coh_jw_object_end(&w);
        coh_jw_array_end(&w);
        coh_jw_object_end(&w);
        methods_broadcast(ms, coh_jw_to_object(&w), g->rec.peer_pid);

        coh_jw_object_begin(&w);
        coh_jw_key(&w, "event");
        coh_jw_string(&w, event);
        coh_jw_key(&w, "grant");
        coh_jw_string(&w, g->rec.grant);
        coh_jw_key(&w, "decision");
        coh_jw_string(&w, coh_decision_to_string(g->rec.decision));
        coh_jw_key(&w, "state");
        coh_jw_string(&w, coh_grant_state_to_string(g->rec.state));
        if (g->rec.end[0]) {
                coh_jw_key(&w, "end");
                coh_jw_string(&w, g->rec.end);
        }
        coh_jw_key(&w, "vmWbinvd");
        coh_jw_string(&w, coh_vm_wbinvd(g->vm));
        coh_jw_key(&w, "device");
        coh_jw_string(&w, g->rec.device);
        coh_jw_key(&w, "peerPid");
        coh_jw_int(&w, g->rec.peer_pid);
        coh_jw_key(&w, "peerUid");
        coh_jw_int(&w, g->rec.peer_uid);
        coh_jw_object_end(&w);
        methods_broadcast(ms, coh_jw_to_object(&w), 0);
}

/*
 * The audit trail: every Manager call that changes something (or tries to), and every
 * Manager call refused to a peer that is neither root nor in AdminGroup=, leaves a record
 * of its own naming who asked (uid, pid, unit) and what came of it, so that
 * `journalctl MESSAGE_ID=<COH_MESSAGE_OPERATOR>` answers "who did this" and "who tried".
 * A revoke's grant then ends with its usual end record (COHERENCYD_END=revoke) under the
 * same COHERENCYD_GRANT. Operators' own calls are never folded; refused ones are, per uid
 * (refusal-fold.h), so that knocking on the operator's door cannot flood the journal.
 */
void method_audit(struct call_ctx *x, const char *operation, const char *result, const char *grant, int kill,
                  const char *message) {
        const struct coh_peer *peer = &x->conn->peer;
        char uid[16], pid[16];
        snprintf(uid, sizeof uid, "%u", (unsigned) peer->uid);
        snprintf(pid, sizeof pid, "%d", (int) peer->pid);
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_OPERATION", operation },
                { "COHERENCYD_RESULT", result },
                { "COHERENCYD_OPERATOR_UID", uid },
                { "COHERENCYD_OPERATOR_PID", peer->pid > 0 ? pid : NULL },
                { "COHERENCYD_OPERATOR_UNIT", peer->unit },
                { "COHERENCYD_GRANT", grant },
                { "COHERENCYD_KILL", kill < 0 ? NULL : kill ? "yes" : "no" },
        };
        coh_log_record(LOG_NOTICE, COH_MESSAGE_OPERATOR, message, fields, ELEMENTSOF(fields));
}

static void manager_call_refused(struct call_ctx *x, const char *method) {
        const struct coh_peer *peer = &x->conn->peer;
        const char *operation = startswith(method, MANAGER) ?: method;
        char message[256];
        if (refusal_fold_note(x->ms, peer->uid, "Manager calls"))
                return;
        snprintf(message, sizeof message, "%s refused to uid %u%s%s%s: not root, not in AdminGroup=", operation,
                 (unsigned) peer->uid, peer->unit ? " (" : "", peer->unit ?: "", peer->unit ? ")" : "");
        method_audit(x, operation, "permission-denied", NULL, -1, message);
}

static const struct coh_method *find_method(const char *name) {
        static const struct coh_method *const tables[] = {
                coh_broker_methods,
                coh_manager_methods,
                coh_service_methods,
        };
        for (size_t t = 0; t < ELEMENTSOF(tables); t++)
                for (const struct coh_method *m = tables[t]; m->name; m++)
                        if (streq(m->name, name))
                                return m;
        return NULL;
}

int coh_methods_dispatch(struct coh_methods *ms, struct coh_conn *c, struct coh_message *m) {
        struct call_ctx x = { .ms = ms, .conn = c, .msg = m };
        int r;

        if (c->monitor || c->watch)
                return -EPROTO; /* a streaming connection takes no further calls */
        r = coh_call_parse(m->json, &x.call);
        if (r < 0) {
                coh_log_debug("connection %" PRIu64 ": malformed message", c->id);
                return r;
        }
        c->oneway = x.call.oneway;
        const struct coh_method *method = find_method(x.call.method);
        if (!method)
                r = method_error(&x, SERVICE "MethodNotFound", "method", x.call.method);
        else if (method->manager && !coh_conn_is_admin(c)) {
                manager_call_refused(&x, method->name);
                r = method_error(&x, BROKER "PermissionDenied", NULL, NULL);
        }
        else if (x.call.upgrade)
                r = method_error(&x, SERVICE "MethodNotImplemented", "method", x.call.method);
        else
                r = method->handler(&x);
        c->oneway = false;
        coh_call_done(&x.call);
        return r == -ENOBUFS ? 0 : r;
}

void coh_methods_policy_changed(struct coh_methods *ms) {
        coh_policy_memo_drop(&ms->policy_memo);
}

void coh_methods_done(struct coh_methods *ms) {
        coh_policy_memo_drop(&ms->policy_memo);
}

/* ---- errnos to wire errors: the one place ---------------------------- */

int method_reply_errno(struct call_ctx *x, int error, const char *subject) {
        static const struct {
                int error;
                const char *name;
                const char *key; /* the subject's parameter name, NULL: none */
        } map[] = {
                { ENODEV, BROKER "NoSuchDevice", "device" },
                { EBUSY, BROKER "DeviceBusy", "device" },
                { ENOENT, BROKER "NoSuchGrant", "grant" },
                { EPERM, BROKER "PermissionDenied", NULL },
                { EUSERS, BROKER "LimitExceeded", "limit" },
                { EOPNOTSUPP, BROKER "CoherencyUnsupported", "parameter" },
                { ECANCELED, MANAGER "KillNotEnabled", NULL },
                { EINVAL, SERVICE "InvalidParameter", "parameter" },
        };
        if (error < 0)
                error = -error;
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (map[i].error == error)
                        return method_error(x, map[i].name, map[i].key, subject);
        return method_backend_error(x, error, subject);
}

int method_backend_error(struct call_ctx *x, int error, const char *operation) {
        if (error < 0)
                error = -error;
        json_object *p = json_object_new_object();
        coh_json_add(p, "errno", json_object_new_int(error));
        coh_json_add(p, "operation", json_object_new_string(operation));
        return call_error(x, BROKER "BackendError", p);
}
