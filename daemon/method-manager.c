/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* io.coherencyd.Manager: root and AdminGroup= members (checked by the dispatcher). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "json-util.h"
#include "grants.h"
#include "log.h"
#include "methods-internal.h"
#include "server.h"
#include "util.h"

static int method_list_grants(struct call_ctx *x) {
        int r = method_no_params(x);
        if (r != 0)
                return r;
        json_object *p = json_object_new_object();
        coh_json_add(p, "grants", methods_grants_json(x, NULL, true));
        return method_reply(x, p);
}

struct revoke_params {
        const char *grant;
        int kill;
};

static const struct coh_param revoke_params[] = {
        { "grant", COH_PARAM_STRING, offsetof(struct revoke_params, grant), true },
        { "kill", COH_PARAM_TRISTATE, offsetof(struct revoke_params, kill), false },
        COH_PARAMS_END,
};

static int method_revoke_grant(struct call_ctx *x) {
        const struct coh_broker_config *cfg = coh_policy_broker(call_policy(x));
        const struct coh_peer *peer = &x->conn->peer;
        char message[256];
        struct revoke_params p;
        int r = method_params(x, revoke_params, &p);
        if (r != 0)
                return r;
        if (!coh_grant_id_valid(p.grant))
                return method_reply_errno(x, -EINVAL, "grant");
        struct coh_grant *g = coh_grants_find(x->ms->grants, p.grant);
        if (!g) {
                snprintf(message, sizeof message, "Revoke of grant %s by uid %u: no such grant", p.grant,
                         (unsigned) peer->uid);
                method_audit(x, "RevokeGrant", "no-such-grant", p.grant, p.kill, message);
                return method_reply_errno(x, -ENOENT, p.grant);
        }
        bool kill = p.kill >= 0 ? p.kill : cfg->revoke_kill;
        /* Without RevokeKill= the daemon has given up CAP_KILL. */
        if (kill && !cfg->revoke_kill) {
                snprintf(message, sizeof message, "Revoke of grant %s by uid %u: killing is not enabled",
                         g->rec.grant, (unsigned) peer->uid);
                method_audit(x, "RevokeGrant", "kill-not-enabled", g->rec.grant, kill, message);
                return method_reply_errno(x, -ECANCELED, NULL);
        }
        snprintf(message, sizeof message, "Grant %s for %s revoked by uid %u%s%s%s%s", g->rec.grant, g->rec.device,
                 (unsigned) peer->uid, peer->unit ? " (" : "", peer->unit ?: "", peer->unit ? ")" : "",
                 kill ? ", its VMM to be killed if it holds on" : "");
        method_audit(x, "RevokeGrant", "done", g->rec.grant, kill, message);
        (void) coh_grant_end(g, "revoke", kill);
        return method_reply(x, json_object_new_object());
}

struct explain_params {
        const char *device, *user, *group, *unit;
};

static const struct coh_param explain_params[] = {
        { "device", COH_PARAM_STRING, offsetof(struct explain_params, device), true },
        { "user", COH_PARAM_STRING, offsetof(struct explain_params, user), true },
        { "group", COH_PARAM_STRING, offsetof(struct explain_params, group), false },
        { "unit", COH_PARAM_STRING, offsetof(struct explain_params, unit), false },
        COH_PARAMS_END,
};

static int method_explain(struct call_ctx *x) {
        _cleanup_free_ gid_t *groups = NULL;
        struct explain_params p;
        struct coh_peer peer;
        struct request req = {};
        int r = method_params(x, explain_params, &p);
        if (r != 0)
                return r;
        r = coh_peer_from_names(p.user, p.group, p.unit, &peer, &groups);
        if (r == -ESRCH || r == -ENOENT)
                return method_reply_errno(x, -EINVAL, r == -ESRCH ? "user" : "group");
        if (r < 0)
                return method_backend_error(x, r, "look up user");
        r = request_read_device(x, p.device, &req);
        if (r > 0)
                r = request_decide(x, &peer, NULL, -1, "device", &req);
        if (r > 0)
                r = request_reply(x, &req);
        request_done(&req);
        return r;
}

static int method_reload_policy(struct call_ctx *x) {
        const struct coh_peer *peer = &x->conn->peer;
        struct coh_policy_error err;
        char message[640];
        int r = method_no_params(x);
        if (r != 0)
                return r;
        r = x->ms->reload(&err, x->ms->userdata);
        if (r < 0) {
                snprintf(message, sizeof message, "Policy reload by uid %u failed, the policy in force is unchanged: %.256s:%u: %.200s",
                         (unsigned) peer->uid, err.file, err.line, err.message);
                method_audit(x, "ReloadPolicy", "invalid-policy", NULL, -1, message);
                json_object *p = json_object_new_object();
                coh_json_add(p, "file", json_object_new_string(err.file));
                coh_json_add(p, "line", json_object_new_int((int) err.line));
                coh_json_add(p, "message", json_object_new_string(err.message));
                return coh_conn_error(x->conn, MANAGER "InvalidPolicy", p);
        }
        size_t n_rules = coh_policy_n_rules(call_policy(x));
        snprintf(message, sizeof message, "Policy reloaded by uid %u: %zu rule(s)", (unsigned) peer->uid, n_rules);
        method_audit(x, "ReloadPolicy", "done", NULL, -1, message);
        json_object *p = json_object_new_object();
        coh_json_add(p, "rules", json_object_new_int64((int64_t) n_rules));
        return method_reply(x, p);
}

static int method_get_policy(struct call_ctx *x) {
        int r = method_no_params(x);
        if (r != 0)
                return r;
        json_object *p = json_object_new_object();
        coh_json_add(p, "policy", coh_policy_to_json(call_policy(x)));
        return method_reply(x, p);
}

static int method_monitor(struct call_ctx *x) {
        int r = method_stream_params(x);
        if (r != 0)
                return r;
        /* A first reply at once, so a client knows it is subscribed before anything happens. */
        json_object *p = json_object_new_object();
        coh_json_add(p, "event", json_object_new_string("subscribed"));
        coh_json_add(p, "grants", json_object_new_int64(x->ms->grants->n_grants));
        x->conn->monitor = true;
        x->ms->n_streams++;
        return coh_conn_reply(x->conn, p, true);
}

const struct coh_method coh_manager_methods[] = {
        { MANAGER "ListGrants", method_list_grants, true },
        { MANAGER "RevokeGrant", method_revoke_grant, true },
        { MANAGER "Explain", method_explain, true },
        { MANAGER "ReloadPolicy", method_reload_policy, true },
        { MANAGER "GetPolicy", method_get_policy, true },
        { MANAGER "Monitor", method_monitor, true },
        {}
};
