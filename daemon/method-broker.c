/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* io.coherencyd.Broker: any local user; the policy decides. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "grants.h"
#include "log.h"
#include "methods-internal.h"
#include "server.h"
#include "util.h"

static const char *expected_vm = "a KVM VM";

static void iommus_write(const struct coh_iommu_facts *units, size_t n, struct coh_json_writer *w) {
        coh_jw_array_begin(w);
        for (size_t i = 0; i < n; i++) {
                coh_jw_object_begin(w);
                coh_jw_key(w, "name");
                coh_jw_string(w, units[i].name);
                coh_jw_key(w, "type");
                coh_jw_string(w, coh_iommu_type_to_string(units[i].type));
                coh_jw_key(w, "enforcesCoherency");
                coh_jw_bool(w, units[i].enforces);
                coh_jw_object_end(w);
        }
        coh_jw_array_end(w);
}

static void limits_write(const struct coh_broker_config *cfg, struct coh_json_writer *w) {
        coh_jw_object_begin(w);
        coh_jw_key(w, "maxGrantsPerConnection");
        coh_jw_int(w, cfg->max_grants_per_connection);
        coh_jw_key(w, "maxConnectionsPerUser");
        coh_jw_int(w, cfg->max_connections_per_user);
        coh_jw_key(w, "maxConnections");
        coh_jw_int(w, cfg->max_connections);
        coh_jw_object_end(w);
}

static int method_get_info(struct call_ctx *x) {
        struct coh_platform *platform = x->ms->platform;
        struct coh_policy_result pr;
        _cleanup_free_ struct coh_iommu_facts *units = NULL;
        size_t n = 0;
        char rule[512];
        int r = method_no_params(x);
        if (r != 0)
                return r;

        r = coh_facts_read_iommus(platform->sysfs_fd, &units, &n);
        if (r < 0)
                return method_backend_error(x, r, "read IOMMUs from sysfs");
        coh_policy_evaluate(call_policy(x), NULL, &x->conn->peer, &pr);

        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        coh_jw_key(&w, "version");
        coh_jw_string(&w, COH_VERSION);
        coh_jw_key(&w, "backend");
        coh_jw_string(&w, platform->ops->name);
        coh_jw_key(&w, "mode");
        coh_jw_string(&w, coh_mode_to_string(pr.mode));
        coh_jw_key(&w, "modeRule");
        coh_jw_string(&w, coh_origin_format(&pr.mode_origin, rule, sizeof rule));
        coh_jw_key(&w, "access");
        coh_jw_string(&w, coh_access_to_string(pr.access));
        coh_jw_key(&w, "accessRule");
        coh_jw_string(&w, coh_origin_format(&pr.access_origin, rule, sizeof rule));
        coh_jw_key(&w, "iommus");
        iommus_write(units, n, &w);
        coh_jw_key(&w, "limits");
        limits_write(coh_policy_broker(call_policy(x)), &w);
        coh_jw_object_end(&w);
        return method_reply(x, coh_jw_to_object(&w));
}

struct probe_params {
        const char *device;
        int iommu;
        int ioas_coherent;
};

static const struct coh_param probe_params[] = {
        { "device", COH_PARAM_STRING, offsetof(struct probe_params, device), true },
        { "iommu", COH_PARAM_FD, offsetof(struct probe_params, iommu), false },
        { "ioasCoherent", COH_PARAM_TRISTATE, offsetof(struct probe_params, ioas_coherent), false },
        COH_PARAMS_END,
};

static int method_probe(struct call_ctx *x) {
        struct probe_params p;
        struct coh_fd_info ioas;
        struct request req = {};
        int r = method_params(x, probe_params, &p);
        if (r != 0)
                return r;

        if (p.iommu >= 0)
                r = request_ioas(x, p.iommu, &ioas);
        else
                r = 1;
        if (r > 0)
                r = request_read_device(x, p.device, &req);
        /* ioasCoherent: the IOAS the caller intends to create. */
        if (r > 0)
                r = request_decide(x, &x->conn->peer, p.iommu >= 0 ? &ioas : NULL, p.ioas_coherent,
                                   p.ioas_coherent >= 0 ? "ioasCoherent" : "iommu", &req);
        if (r > 0)
                r = request_reply(x, &req);
        request_done(&req);
        coh_params_done(probe_params, &p);
        return r;
}

/* Hands the group over: opened, attached to the VMM's IOAS, pinned, recorded. 1, or 0 after replying. */
static int hand_over(struct call_ctx *x, const struct request *req, int *vm_fd, int iommu_fd,
                     const struct coh_fd_info *ioas, struct coh_grant **ret_grant, int *ret_file_fd) {
        struct coh_methods *ms = x->ms;
        const struct device_verdict *v = &req->devices[req->deciding];
        const struct coh_broker_config *cfg = coh_policy_broker(call_policy(x));
        struct coh_custody custody = { .pin_fd = -EBADF, .probe_fd = -EBADF };
        const char *operation = NULL;
        int r;

        if (x->conn->owner.n_grants >= cfg->max_grants_per_connection)
                return method_reply_errno(x, -EUSERS, "MaxGrantsPerConnection") ?: 0;
        /* Ours already, active or ending: the kernel would say EBUSY too. */
        if (coh_grants_find_group(ms->grants, v->facts.iommu_group))
                return method_reply_errno(x, -EBUSY, req->slot) ?: 0;
        r = ms->platform->ops->custody_begin(ms->platform, &v->facts, iommu_fd, ioas, ret_file_fd, &custody,
                                             &operation);
        if (r == -EBUSY)
                return method_reply_errno(x, r, req->slot) ?: 0;
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                /* A client can cause EINVAL (a container of another kind, say);
                 * only what it cannot cause is an error here. */
                coh_log(r == -EINVAL ? LOG_NOTICE : LOG_ERR, COH_MESSAGE_REQUEST_ERROR, "%s for %s failed: %s",
                        operation ?: "custody", req->slot, strerror(-r));
                return method_backend_error(x, r, operation ?: "custody") ?: 0;
        }

        struct coh_grant_record tmpl = {
                .decision = req->verdict.decision,
                .reason = req->verdict.reason,
                .mode = v->policy.mode,
                .kvm_attach = req->verdict.kvm_attach,
                .wbinvd = req->verdict.wbinvd,
                .iommu_group = v->facts.iommu_group,
        };
        strscpy0(tmpl.rule, req->rule, sizeof tmpl.rule);
        strscpy0(tmpl.device, req->slot, sizeof tmpl.device);
        strscpy0(tmpl.file, req->file, sizeof tmpl.file);
        r = coh_grant_create(ms->grants, &x->conn->owner, TAKE_FD(*vm_fd), &custody, &tmpl, ret_grant);
        if (r < 0) {
                /* Its custody is closed: the group is free once our copy goes too. */
                *ret_file_fd = safe_close(*ret_file_fd);
                return r == -ENOMEM ? r : method_backend_error(x, r, "record grant") ?: 0;
        }
        return 1;
}

/* The reply, with the group when one is handed over. */
static int reply_grant(struct call_ctx *x, const struct request *req, const struct coh_decision_record *rec,
                       struct coh_grant *grant, int *file_fd) {
        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        coh_record_write(coh_decision_record_fields, rec, COH_DECISION_FORM_GRANT, &w);
        coh_jw_key_plain(&w, "facts");
        request_facts_write(req, &w);
        if (*file_fd < 0) {
                coh_jw_object_end(&w);
                return method_reply(x, coh_jw_to_object(&w));
        }
        coh_jw_key_plain(&w, "group");
        coh_jw_int(&w, 0);
        coh_jw_object_end(&w);
        int fd = TAKE_FD(*file_fd);
        int r = coh_conn_reply_fds(x->conn, coh_jw_to_object(&w), &fd, 1);
        grant->rec.pending = false;
        coh_grant_touch(grant);
        if (x->ms->grants->cb.changed)
                x->ms->grants->cb.changed(x->ms->grants->cb.userdata);
        return r;
}

struct request_grant_params {
        int vm;
        const char *device;
        int iommu;
};

static const struct coh_param request_grant_params[] = {
        { "vm", COH_PARAM_FD, offsetof(struct request_grant_params, vm), true },
        { "device", COH_PARAM_STRING, offsetof(struct request_grant_params, device), true },
        { "iommu", COH_PARAM_FD, offsetof(struct request_grant_params, iommu), true },
        COH_PARAMS_END,
};

static int method_request_grant(struct call_ctx *x) {
        struct coh_platform *platform = x->ms->platform;
        struct request_grant_params p;
        _cleanup_close_ int file_fd = -EBADF;
        struct request req = {};
        struct coh_fd_info vm_info, ioas;
        struct coh_grant *grant = NULL;
        int r = method_params(x, request_grant_params, &p);
        if (r != 0)
                return r;

        r = platform->ops->classify(platform, p.vm, &vm_info);
        if (r < 0)
                r = method_backend_error(x, r, "classify vm");
        else if (vm_info.kind != COH_FD_KVM_VM)
                r = method_invalid_fd(x, "vm", expected_vm, vm_info.what);
        else
                r = request_ioas(x, p.iommu, &ioas);
        if (r > 0)
                r = request_read_device(x, p.device, &req);
        if (r > 0)
                r = request_decide(x, &x->conn->peer, &ioas, -1, "iommu", &req);
        if (r > 0 && req.verdict.decision != COH_DECISION_REFUSED)
                r = hand_over(x, &req, &p.vm, p.iommu, &ioas, &grant, &file_fd);
        if (r > 0) {
                const struct coh_peer *peer = &x->conn->peer;
                struct coh_decision_record rec = request_record(&req);
                /* Without a grant the VM descriptor is still ours: the VM may hold other grants. */
                const struct coh_vm *vm = grant ? grant->vm : coh_grants_find_vm(x->ms->grants, p.vm);
                rec.vm_wbinvd = vm && vm->n_granted > 0;
                rec.peer_pid = peer->pid;
                rec.peer_uid = peer->uid;
                strscpy0(rec.peer_unit, peer->unit ?: "", sizeof rec.peer_unit);
                if (grant)
                        strscpy0(rec.grant, grant->rec.grant, sizeof rec.grant);
                request_log_decision(x, &req, &rec);
                /* Our copies of the VMM's descriptors go before it has its answer,
                 * so a VMM that got a refusal finds nothing of its own held (the vm
                 * tier's daemon-holds-nothing checks raced the close otherwise). */
                coh_params_done(request_grant_params, &p);
                r = reply_grant(x, &req, &rec, grant, &file_fd);
        }
        request_done(&req);
        coh_params_done(request_grant_params, &p);
        return r;
}

struct grant_params {
        const char *grant;
};

static const struct coh_param grant_params[] = {
        { "grant", COH_PARAM_STRING, offsetof(struct grant_params, grant), true },
        COH_PARAMS_END,
};

static int method_release_grant(struct call_ctx *x) {
        struct grant_params p;
        int r = method_params(x, grant_params, &p);
        if (r != 0)
                return r;
        if (!coh_grant_id_valid(p.grant))
                return method_reply_errno(x, -EINVAL, "grant");
        struct coh_grant *g = coh_grants_find(x->ms->grants, p.grant);
        if (!g || g->owner != &x->conn->owner || g->rec.state != COH_GRANT_ACTIVE)
                return method_reply_errno(x, -ENOENT, p.grant);
        /* The VM may go with its last grant: what is left of it is told now. */
        struct coh_vm *vm = g->vm;
        bool last = vm->n_grants == 1, granted = g->rec.decision == COH_DECISION_GRANTED;
        const char *vm_wbinvd = last || (granted && vm->n_granted == 1) ? "noop" : coh_vm_wbinvd(vm);
        int ended = coh_grant_end(g, "release", false); /* g is gone when ended */
        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        coh_jw_key_plain(&w, "vmWbinvd");
        coh_jw_string(&w, vm_wbinvd);
        coh_jw_key_plain(&w, "state");
        coh_jw_string(&w, ended > 0 ? "ended" : "ending");
        coh_jw_object_end(&w);
        return method_reply(x, coh_jw_to_object(&w));
}

/* A connection's own grants, active and ending. */
static bool owned_by(const struct coh_grant *g, const struct coh_conn *c) {
        return (uint64_t) g->rec.owner == c->owner.id;
}

/* The calling process's grants, whichever of its connections holds them. */
static bool of_process(const struct coh_grant *g, const struct coh_conn *c) {
        return g->rec.peer_pid == c->peer.pid && g->rec.peer_uid == c->peer.uid;
}

static int method_list_grants(struct call_ctx *x) {
        int r = method_no_params(x);
        if (r != 0)
                return r;
        json_object *p = json_object_new_object();
        coh_json_add(p, "grants", methods_grants_json(x, owned_by, false));
        return method_reply(x, p);
}

static int method_watch_grants(struct call_ctx *x) {
        int r = method_stream_params(x);
        if (r != 0)
                return r;
        json_object *p = json_object_new_object();
        coh_json_add(p, "event", json_object_new_string("grants"));
        coh_json_add(p, "grants", methods_grants_json(x, of_process, false));
        x->conn->watch = true;
        x->ms->n_streams++;
        return coh_conn_reply(x->conn, p, true);
}

const struct coh_method coh_broker_methods[] = {
        { BROKER "GetInfo", method_get_info, false },
        { BROKER "Probe", method_probe, false },
        { BROKER "RequestGrant", method_request_grant, false },
        { BROKER "ReleaseGrant", method_release_grant, false },
        { BROKER "ListGrants", method_list_grants, false },
        { BROKER "WatchGrants", method_watch_grants, false },
        {}
};
