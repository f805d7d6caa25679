/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The request path. Everything a client can get wrong is answered with an
 * error naming the parameter at fault; every descriptor a message carried is
 * either taken by a grant or closed with the message.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "call.h"
#include "daemon.h"
#include "decision.h"
#include "grants.h"
#include "interfaces.h"
#include "json-util.h"
#include "log.h"
#include "util.h"

#define BROKER "io.coherencyd.Broker."
#define MANAGER "io.coherencyd.Manager."
#define SERVICE "org.varlink.service."

struct call_ctx {
        struct coh_daemon *d;
        struct coh_conn *conn;
        struct coh_message *msg;
        struct coh_call call;
};

/* One device of the request with what the policy and the table made of it. */
struct device_verdict {
        struct coh_device_facts facts;
        struct coh_policy_result policy;
        bool ioas_coherent;
        enum coh_decision decision;
        enum coh_reason reason;
};

struct request {
        struct coh_fd_info device_info;
        struct device_verdict *devices;
        size_t n_devices;
        size_t deciding;      /* index into devices */
        enum coh_decision decision;
        bool kernel_coherent; /* every device's IOAS enforces: the kernel sees the file as coherent */
        char rule[512];
};

static void request_done(struct request *r) {
        free(r->devices);
}

/* ---- replies ---------------------------------------------------------- */

static int reply_error1(struct call_ctx *x, const char *error, const char *key, const char *value) {
        json_object *p = json_object_new_object();
        if (key)
                json_object_object_add(p, key, json_object_new_string(value));
        return coh_conn_error(x->conn, error, p);
}

static int invalid_parameter(struct call_ctx *x, const char *parameter) {
        return reply_error1(x, SERVICE "InvalidParameter", "parameter", parameter);
}

static int invalid_fd(struct call_ctx *x, const char *parameter, const char *expected, const char *got) {
        json_object *p = json_object_new_object();
        json_object_object_add(p, "parameter", json_object_new_string(parameter));
        json_object_object_add(p, "expected", json_object_new_string(expected));
        json_object_object_add(p, "got", json_object_new_string(got));
        return coh_conn_error(x->conn, BROKER "InvalidFileDescriptor", p);
}

static int backend_error(struct call_ctx *x, int error, const char *operation) {
        json_object *p = json_object_new_object();
        json_object_object_add(p, "errno", json_object_new_int(error));
        json_object_object_add(p, "operation", json_object_new_string(operation));
        return coh_conn_error(x->conn, BROKER "BackendError", p);
}

static int reply(struct call_ctx *x, json_object *p) {
        return coh_conn_reply(x->conn, p, false);
}

/* Checks the parameters object against the method's keys. Returns 1 when fine,
 * else replies InvalidParameter and returns 0 (or < 0). */
static int check_keys(struct call_ctx *x, const char *const *allowed) {
        const char *bad;
        if (coh_json_check_keys(x->call.parameters, allowed, &bad) < 0) {
                int r = invalid_parameter(x, bad);
                return r < 0 ? r : 0;
        }
        return 1;
}

/*
 * A descriptor parameter: an index into the message's descriptors. Returns 1
 * with *ret set (-1 when optional and absent), 0 after replying an error.
 */
static int fd_param(struct call_ctx *x, const char *name, bool optional, int *ret) {
        int64_t index;
        int r = coh_json_get_int64(x->call.parameters, name, 0, COH_MESSAGE_FDS_MAX * 64, &index);
        if (r == -ENOENT && optional) {
                *ret = -1;
                return 1;
        }
        if (r < 0)
                return invalid_parameter(x, name) ?: 0;
        int fd = coh_message_take_fd(x->msg, (long) index);
        if (fd < 0)
                return invalid_parameter(x, name) ?: 0;
        *ret = fd;
        return 1;
}

/* ---- facts and decision ----------------------------------------------- */

static const char *expected_device = "a VFIO group or VFIO device";
static const char *expected_iommu = "a VFIO container or iommufd";
static const char *expected_vm = "a KVM VM";

static json_object *device_facts_json(const struct device_verdict *v, bool full) {
        const struct coh_device_facts *f = &v->facts;
        char buf[512];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "slot", json_object_new_string(f->slot));
        json_object_object_add(o, "vendor", json_object_new_string(f->vendor));
        json_object_object_add(o, "device", json_object_new_string(f->device));
        json_object_object_add(o, "class", json_object_new_string(f->class));
        json_object_object_add(o, "driver", json_object_new_string(f->driver));
        json_object_object_add(o, "iommu", json_object_new_string(f->iommu));
        json_object_object_add(o, "iommuGroup", json_object_new_int(f->iommu_group));
        json_object_object_add(o, "noSnoop", json_object_new_string(coh_nosnoop_to_string(v->policy.nosnoop)));
        if (full) {
                json_object_object_add(o, "noSnoopRule", json_object_new_string(
                        coh_origin_format(&v->policy.nosnoop_origin, buf, sizeof buf)));
                json_object_object_add(o, "mode", json_object_new_string(coh_mode_to_string(v->policy.mode)));
                json_object_object_add(o, "modeRule", json_object_new_string(
                        coh_origin_format(&v->policy.mode_origin, buf, sizeof buf)));
        }
        json_object_object_add(o, "iommuEnforces", json_object_new_boolean(f->iommu_enforces));
        json_object_object_add(o, "ioasCoherent", json_object_new_boolean(v->ioas_coherent));
        return o;
}

static json_object *facts_json(const struct request *req) {
        json_object *o = device_facts_json(&req->devices[req->deciding], false);
        char file[64];
        if (req->device_info.kind == COH_FD_VFIO_GROUP)
                snprintf(file, sizeof file, "vfio-group:%d", req->device_info.group);
        else
                snprintf(file, sizeof file, "vfio-device:%s", req->device_info.slot);
        json_object_object_add(o, "file", json_object_new_string(file));
        json_object *devices = json_object_new_array();
        for (size_t i = 0; i < req->n_devices; i++)
                json_object_array_add(devices, device_facts_json(&req->devices[i], true));
        json_object_object_add(o, "devices", devices);
        return o;
}

/* A refusal outranks a grant, and a grant a not-needed: every device must be satisfied. */
static int severity(enum coh_decision d) {
        return d == COH_DECISION_REFUSED ? 2 : d == COH_DECISION_GRANTED ? 1 : 0;
}

/*
 * Reads the facts behind the device descriptor and decides. ioas_coherent is
 * -1 for the kernel's behaviour (coherent wherever the IOMMU can enforce).
 * Returns 1 with *req filled, 0 after replying an error, < 0 on failure.
 */
static int decide(struct call_ctx *x, int device_fd, int ioas_coherent, const char *ioas_parameter,
                  struct request *req) {
        struct coh_daemon *d = x->d;
        struct coh_device_facts *facts = NULL;
        size_t n = 0;
        int r;

        r = d->platform->ops->classify(d->platform, device_fd, &req->device_info);
        if (r < 0)
                return backend_error(x, -r, "classify device") ?: 0;
        if (req->device_info.kind == COH_FD_VFIO_GROUP) {
                r = coh_facts_read_group(d->platform->sysfs_fd, req->device_info.group, &facts, &n);
                if (r == -ENOENT) {
                        char got[96];
                        snprintf(got, sizeof got, "VFIO group %d, which has no PCI devices", req->device_info.group);
                        return invalid_fd(x, "device", expected_device, got) ?: 0;
                }
        } else if (req->device_info.kind == COH_FD_VFIO_DEVICE) {
                facts = calloc(1, sizeof *facts);
                if (!facts)
                        return -ENOMEM;
                n = 1;
                r = coh_facts_read_device(d->platform->sysfs_fd, req->device_info.slot, facts);
                if (r == -ENOENT) {
                        char got[96];
                        free(facts);
                        snprintf(got, sizeof got, "VFIO device %s, which is not in sysfs", req->device_info.slot);
                        return invalid_fd(x, "device", expected_device, got) ?: 0;
                }
        } else
                return invalid_fd(x, "device", expected_device, req->device_info.what) ?: 0;
        if (r < 0) {
                free(facts);
                return backend_error(x, -r, "read device facts from sysfs") ?: 0;
        }

        req->devices = calloc(n, sizeof *req->devices);
        if (!req->devices) {
                free(facts);
                return -ENOMEM;
        }
        req->n_devices = n;
        req->kernel_coherent = true;
        int best = -1;
        for (size_t i = 0; i < n; i++) {
                struct device_verdict *v = &req->devices[i];
                v->facts = facts[i];
                coh_policy_evaluate(d->policy, &v->facts, &x->conn->peer, &v->policy);
                v->ioas_coherent = ioas_coherent < 0 ? v->facts.iommu_enforces : ioas_coherent;
                if (coh_decide(v->policy.nosnoop, v->ioas_coherent, v->facts.iommu_enforces, v->policy.mode,
                               &v->decision, &v->reason) < 0) {
                        free(facts);
                        return reply_error1(x, BROKER "CoherencyUnsupported", "parameter", ioas_parameter) ?: 0;
                }
                req->kernel_coherent &= v->ioas_coherent;
                if (severity(v->decision) > best) {
                        best = severity(v->decision);
                        req->deciding = i;
                }
        }
        free(facts);

        const struct device_verdict *v = &req->devices[req->deciding];
        req->decision = v->decision;
        coh_origin_format(coh_reason_from_mode(v->reason) ? &v->policy.mode_origin : &v->policy.nosnoop_origin,
                          req->rule, sizeof req->rule);
        return 1;
}

/* The IOAS the device is in, from the iommu descriptor. Returns 1, or 0 after replying. */
static int ioas_from_fd(struct call_ctx *x, int iommu_fd, int *ret_coherent) {
        struct coh_fd_info info;
        *ret_coherent = -1;
        if (iommu_fd < 0)
                return 1;
        int r = x->d->platform->ops->classify(x->d->platform, iommu_fd, &info);
        if (r < 0)
                return backend_error(x, -r, "classify iommu") ?: 0;
        if (info.kind != COH_FD_VFIO_CONTAINER && info.kind != COH_FD_IOMMUFD)
                return invalid_fd(x, "iommu", expected_iommu, info.what) ?: 0;
        *ret_coherent = info.coherent;
        return 1;
}

static void decision_fields(json_object *p, const struct request *req) {
        const struct device_verdict *v = &req->devices[req->deciding];
        json_object_object_add(p, "decision", json_object_new_string(coh_decision_to_string(req->decision)));
        json_object_object_add(p, "reason", json_object_new_string(coh_reason_to_string(v->reason)));
        json_object_object_add(p, "rule", json_object_new_string(req->rule));
        json_object_object_add(p, "mode", json_object_new_string(coh_mode_to_string(v->policy.mode)));
}

/* ---- journal and monitor ---------------------------------------------- */

void coh_broker_broadcast(struct coh_daemon *d, json_object *ev) {
        struct coh_conn *c, *next;
        for (c = LIST_FIRST(&d->server.conns); c; c = next) {
                next = LIST_NEXT(c, link);
                if (c->monitor && !c->closing)
                        coh_conn_reply(c, json_object_get(ev), true);
        }
        json_object_put(ev);
}

static void log_decision(struct call_ctx *x, const struct request *req, const struct coh_grant *grant,
                         bool attached, const char *wbinvd) {
        const struct device_verdict *v = &req->devices[req->deciding];
        const struct coh_peer *peer = &x->conn->peer;
        char message[768], pid[32], uid[32], group[32];
        const char *decision = coh_decision_to_string(req->decision);
        const char *reason = coh_reason_to_string(v->reason);

        snprintf(pid, sizeof pid, "%d", (int) peer->pid);
        snprintf(uid, sizeof uid, "%u", (unsigned) peer->uid);
        snprintf(group, sizeof group, "%d", v->facts.iommu_group);
        snprintf(message, sizeof message, "%s %s (IOMMU group %s) for the VM of pid %s (uid %s): %s, by %s; VM WBINVD %s%s",
                 req->decision == COH_DECISION_GRANTED   ? "Granted WBINVD emulation for"
                 : req->decision == COH_DECISION_REFUSED ? "Refused WBINVD emulation for"
                                                         : "WBINVD emulation not needed for",
                 v->facts.slot, group, pid, uid, reason, req->rule, wbinvd,
                 req->decision == COH_DECISION_NOT_NEEDED ? (attached ? "; file attached" : "; file not attached") : "");
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_DECISION", decision },
                { "COHERENCYD_REASON", reason },
                { "COHERENCYD_MODE", coh_mode_to_string(v->policy.mode) },
                { "COHERENCYD_RULE", req->rule },
                { "COHERENCYD_GRANT", grant ? grant->id : NULL },
                { "COHERENCYD_SLOT", v->facts.slot },
                { "COHERENCYD_IOMMU_GROUP", v->facts.iommu_group >= 0 ? group : NULL },
                { "COHERENCYD_IOMMU", v->facts.iommu[0] ? v->facts.iommu : NULL },
                { "COHERENCYD_NOSNOOP", coh_nosnoop_to_string(v->policy.nosnoop) },
                { "COHERENCYD_IOMMU_ENFORCES", v->facts.iommu_enforces ? "yes" : "no" },
                { "COHERENCYD_IOAS_COHERENT", v->ioas_coherent ? "yes" : "no" },
                { "COHERENCYD_VM_WBINVD", wbinvd },
                { "COHERENCYD_PEER_UID", uid },
                { "COHERENCYD_PEER_UNIT", peer->unit },
                { "OBJECT_PID", pid },
        };
        if (x->d->journal)
                (void) coh_journal_send(x->d->journal, req->decision == COH_DECISION_REFUSED ? LOG_NOTICE : LOG_INFO,
                                        COH_MESSAGE_DECISION, message, fields, ELEMENTSOF(fields));

        json_object *ev = json_object_new_object();
        json_object_object_add(ev, "event", json_object_new_string("decision"));
        if (grant)
                json_object_object_add(ev, "grant", json_object_new_string(grant->id));
        decision_fields(ev, req);
        json_object_object_add(ev, "vmWbinvd", json_object_new_string(wbinvd));
        json_object_object_add(ev, "slot", json_object_new_string(v->facts.slot));
        json_object_object_add(ev, "peerPid", json_object_new_int64(peer->pid));
        json_object_object_add(ev, "peerUid", json_object_new_int64(peer->uid));
        coh_broker_broadcast(x->d, ev);
}

/* ---- io.coherencyd.Broker --------------------------------------------- */

static int method_get_info(struct call_ctx *x) {
        static const char *const keys[] = { NULL };
        struct coh_daemon *d = x->d;
        struct coh_policy_result pr;
        struct coh_iommu_facts *units = NULL;
        size_t n = 0;
        char rule[512];
        int r = check_keys(x, keys);
        if (r <= 0)
                return r;

        r = coh_facts_read_iommus(d->platform->sysfs_fd, &units, &n);
        if (r < 0)
                return backend_error(x, -r, "read IOMMUs from sysfs");
        coh_policy_evaluate(d->policy, NULL, &x->conn->peer, &pr);
        const struct coh_broker_config *cfg = coh_policy_broker(d->policy);

        json_object *p = json_object_new_object();
        json_object_object_add(p, "version", json_object_new_string(COH_VERSION));
        json_object_object_add(p, "backend", json_object_new_string(d->platform->ops->name));
        json_object_object_add(p, "mode", json_object_new_string(coh_mode_to_string(pr.mode)));
        json_object_object_add(p, "modeRule", json_object_new_string(coh_origin_format(&pr.mode_origin, rule, sizeof rule)));
        json_object *iommus = json_object_new_array();
        for (size_t i = 0; i < n; i++) {
                json_object *u = json_object_new_object();
                json_object_object_add(u, "name", json_object_new_string(units[i].name));
                json_object_object_add(u, "type", json_object_new_string(coh_iommu_type_to_string(units[i].type)));
                json_object_object_add(u, "enforcesCoherency", json_object_new_boolean(units[i].enforces));
                json_object_array_add(iommus, u);
        }
        free(units);
        json_object_object_add(p, "iommus", iommus);
        json_object *limits = json_object_new_object();
        json_object_object_add(limits, "maxGrantsPerConnection", json_object_new_int64(cfg->max_grants_per_connection));
        json_object_object_add(limits, "maxConnectionsPerUser", json_object_new_int64(cfg->max_connections_per_user));
        json_object_object_add(limits, "maxConnections", json_object_new_int64(cfg->max_connections));
        json_object_object_add(p, "limits", limits);
        return reply(x, p);
}

static int method_probe(struct call_ctx *x) {
        static const char *const keys[] = { "device", "iommu", "ioasCoherent", NULL };
        _cleanup_close_ int device_fd = -1, iommu_fd = -1;
        struct request req = {};
        int ioas = -1, r;
        bool claimed;

        if ((r = check_keys(x, keys)) <= 0)
                return r;
        if ((r = fd_param(x, "device", false, &device_fd)) <= 0)
                return r;
        if ((r = fd_param(x, "iommu", true, &iommu_fd)) <= 0)
                return r;
        if ((r = ioas_from_fd(x, iommu_fd, &ioas)) <= 0)
                return r;
        const char *ioas_parameter = "iommu";
        r = coh_json_get_bool(x->call.parameters, "ioasCoherent", &claimed);
        if (r == -EINVAL)
                return invalid_parameter(x, "ioasCoherent");
        if (r == 0) {
                ioas = claimed; /* the IOAS the caller intends to create */
                ioas_parameter = "ioasCoherent";
        }
        r = decide(x, device_fd, ioas, ioas_parameter, &req);
        if (r > 0) {
                json_object *p = json_object_new_object();
                decision_fields(p, &req);
                json_object_object_add(p, "facts", facts_json(&req));
                r = reply(x, p);
        }
        request_done(&req);
        return r;
}

static int method_request_grant(struct call_ctx *x) {
        static const char *const keys[] = { "vm", "device", "iommu", NULL };
        struct coh_daemon *d = x->d;
        _cleanup_close_ int vm_fd = -1, device_fd = -1, iommu_fd = -1;
        struct request req = {};
        struct coh_fd_info vm_info;
        struct coh_grant *grant = NULL;
        bool attached = false;
        int ioas, r;

        if ((r = check_keys(x, keys)) <= 0)
                return r;
        if ((r = fd_param(x, "vm", false, &vm_fd)) <= 0)
                return r;
        if ((r = fd_param(x, "device", false, &device_fd)) <= 0)
                return r;
        if ((r = fd_param(x, "iommu", true, &iommu_fd)) <= 0)
                return r;

        r = d->platform->ops->classify(d->platform, vm_fd, &vm_info);
        if (r < 0)
                return backend_error(x, -r, "classify vm");
        if (vm_info.kind != COH_FD_KVM_VM)
                return invalid_fd(x, "vm", expected_vm, vm_info.what);
        if ((r = ioas_from_fd(x, iommu_fd, &ioas)) <= 0)
                return r;
        r = decide(x, device_fd, ioas, "iommu", &req);
        if (r <= 0)
                goto finish;

        const struct coh_broker_config *cfg = coh_policy_broker(d->policy);
        bool attach = req.decision == COH_DECISION_GRANTED ||
                      (req.decision == COH_DECISION_NOT_NEEDED && req.kernel_coherent);
        if (attach && x->conn->n_grants >= cfg->max_grants_per_connection) {
                r = reply_error1(x, BROKER "LimitExceeded", "limit", "MaxGrantsPerConnection");
                goto finish;
        }
        if (attach) {
                const struct device_verdict *v = &req.devices[req.deciding];
                struct coh_grant tmpl = {
                        .decision = req.decision,
                        .reason = v->reason,
                        .mode = v->policy.mode,
                        .iommu_group = v->facts.iommu_group,
                };
                snprintf(tmpl.rule, sizeof tmpl.rule, "%s", req.rule);
                snprintf(tmpl.slot, sizeof tmpl.slot, "%s", v->facts.slot);
                const char *operation;
                r = coh_grant_create(d, x->conn, take_fd(&vm_fd), take_fd(&device_fd), req.kernel_coherent, &tmpl,
                                     &grant, &operation);
                if (r == -EBUSY && operation && strcmp(operation, "KVM_CREATE_DEVICE") == 0) {
                        r = coh_conn_error(x->conn, BROKER "VmHasKvmVfioDevice", json_object_new_object());
                        goto finish;
                }
                if (r == -ENOMEM)
                        goto finish;
                if (r < 0) {
                        /* A client can cause EEXIST (the same file twice) or
                         * EINVAL; only what it cannot cause is an error here. */
                        coh_log(d, r == -EEXIST || r == -EINVAL ? LOG_NOTICE : LOG_ERR, COH_MESSAGE_REQUEST_ERROR,
                                "%s for %s failed: %s", operation ?: "grant", v->facts.slot, strerror(-r));
                        r = backend_error(x, -r, operation ?: "grant");
                        goto finish;
                }
                attached = true;
        }

        /* Without a grant the VM descriptor is still ours: the VM may hold other grants. */
        const char *wbinvd = coh_vm_wbinvd(grant ? grant->vm : coh_grants_find_vm(&d->grants, vm_fd));
        log_decision(x, &req, grant, attached, wbinvd);

        json_object *p = json_object_new_object();
        if (grant)
                json_object_object_add(p, "grant", json_object_new_string(grant->id));
        decision_fields(p, &req);
        json_object_object_add(p, "attached", json_object_new_boolean(attached));
        json_object_object_add(p, "vmWbinvd", json_object_new_string(wbinvd));
        json_object_object_add(p, "facts", facts_json(&req));
        r = reply(x, p);
finish:
        request_done(&req);
        return r;
}

/* A grant by id; only the caller's own unless manager. Returns 1, or 0 after replying. */
static int grant_param(struct call_ctx *x, bool manager, struct coh_grant **ret) {
        const char *id;
        if (coh_json_get_string(x->call.parameters, "grant", &id) < 0)
                return invalid_parameter(x, "grant") ?: 0;
        struct coh_grant *g = coh_grants_find(&x->d->grants, id);
        if (!g || (!manager && g->owner != x->conn))
                return reply_error1(x, BROKER "NoSuchGrant", "grant", id) ?: 0;
        *ret = g;
        return 1;
}

static int method_release_grant(struct call_ctx *x) {
        static const char *const keys[] = { "grant", NULL };
        struct coh_grant *g;
        int r;
        if ((r = check_keys(x, keys)) <= 0 || (r = grant_param(x, false, &g)) <= 0)
                return r;
        /* The VM may go with its last grant: find it again by the VM descriptor afterwards. */
        struct coh_vm *vm = g->vm;
        bool last = vm->n_grants == 1;
        coh_grant_end(x->d, g, "release");
        json_object *p = json_object_new_object();
        json_object_object_add(p, "vmWbinvd", json_object_new_string(last ? "noop" : coh_vm_wbinvd(vm)));
        return reply(x, p);
}

static int list_grants(struct call_ctx *x, bool manager) {
        static const char *const keys[] = { NULL };
        int r;
        if ((r = check_keys(x, keys)) <= 0)
                return r;
        json_object *list = json_object_new_array();
        struct coh_grant *g;
        LIST_FOREACH(g, &x->d->grants.grants, link)
                if (manager || g->owner == x->conn)
                        json_object_array_add(list, coh_grant_to_json(g, manager));
        json_object *p = json_object_new_object();
        json_object_object_add(p, "grants", list);
        return reply(x, p);
}

static int method_list_grants(struct call_ctx *x) {
        return list_grants(x, false);
}

/* ---- io.coherencyd.Manager -------------------------------------------- */

static int method_manager_list_grants(struct call_ctx *x) {
        return list_grants(x, true);
}

static int method_revoke_grant(struct call_ctx *x) {
        static const char *const keys[] = { "grant", NULL };
        struct coh_grant *g;
        int r;
        if ((r = check_keys(x, keys)) <= 0 || (r = grant_param(x, true, &g)) <= 0)
                return r;
        coh_grant_end(x->d, g, "revoke");
        return reply(x, json_object_new_object());
}

static int method_reload_policy(struct call_ctx *x) {
        static const char *const keys[] = { NULL };
        struct coh_policy_error err;
        int r;
        if ((r = check_keys(x, keys)) <= 0)
                return r;
        r = coh_daemon_reload(x->d, &err);
        if (r < 0) {
                json_object *p = json_object_new_object();
                json_object_object_add(p, "file", json_object_new_string(err.file));
                json_object_object_add(p, "line", json_object_new_int((int) err.line));
                json_object_object_add(p, "message", json_object_new_string(err.message));
                return coh_conn_error(x->conn, MANAGER "InvalidPolicy", p);
        }
        json_object *p = json_object_new_object();
        json_object_object_add(p, "rules", json_object_new_int64((int64_t) coh_policy_n_rules(x->d->policy)));
        return reply(x, p);
}

static int method_get_policy(struct call_ctx *x) {
        static const char *const keys[] = { NULL };
        int r;
        if ((r = check_keys(x, keys)) <= 0)
                return r;
        json_object *p = json_object_new_object();
        json_object_object_add(p, "policy", coh_policy_to_json(x->d->policy));
        return reply(x, p);
}

static int method_monitor(struct call_ctx *x) {
        static const char *const keys[] = { NULL };
        int r;
        if ((r = check_keys(x, keys)) <= 0)
                return r;
        if (!x->call.more)
                return coh_conn_error(x->conn, SERVICE "ExpectedMore", json_object_new_object());
        x->conn->monitor = true;
        return 0;
}

/* ---- org.varlink.service ---------------------------------------------- */

static int method_service_get_info(struct call_ctx *x) {
        static const char *const keys[] = { NULL };
        int r;
        if ((r = check_keys(x, keys)) <= 0)
                return r;
        json_object *p = json_object_new_object();
        json_object_object_add(p, "vendor", json_object_new_string("coherencyd"));
        json_object_object_add(p, "product", json_object_new_string("coherencyd"));
        json_object_object_add(p, "version", json_object_new_string(COH_VERSION));
        json_object_object_add(p, "url", json_object_new_string("https://coherencyd.invalid/"));
        json_object *list = json_object_new_array();
        for (const struct coh_interface *i = coh_interfaces; i->name; i++)
                json_object_array_add(list, json_object_new_string(i->name));
        json_object_object_add(p, "interfaces", list);
        return reply(x, p);
}

static int method_service_get_interface_description(struct call_ctx *x) {
        static const char *const keys[] = { "interface", NULL };
        const char *name;
        int r;
        if ((r = check_keys(x, keys)) <= 0)
                return r;
        if (coh_json_get_string(x->call.parameters, "interface", &name) < 0)
                return invalid_parameter(x, "interface");
        const char *text = coh_interface_description(name);
        if (!text)
                return reply_error1(x, SERVICE "InterfaceNotFound", "interface", name);
        json_object *p = json_object_new_object();
        json_object_object_add(p, "description", json_object_new_string(text));
        return reply(x, p);
}

/* ---- dispatch --------------------------------------------------------- */

static const struct method {
        const char *name;
        int (*handler)(struct call_ctx *x);
        bool manager; /* root or the admin group only */
} methods[] = {
        { BROKER "GetInfo", method_get_info, false },
        { BROKER "Probe", method_probe, false },
        { BROKER "RequestGrant", method_request_grant, false },
        { BROKER "ReleaseGrant", method_release_grant, false },
        { BROKER "ListGrants", method_list_grants, false },
        { MANAGER "ListGrants", method_manager_list_grants, true },
        { MANAGER "RevokeGrant", method_revoke_grant, true },
        { MANAGER "ReloadPolicy", method_reload_policy, true },
        { MANAGER "GetPolicy", method_get_policy, true },
        { MANAGER "Monitor", method_monitor, true },
        { SERVICE "GetInfo", method_service_get_info, false },
        { SERVICE "GetInterfaceDescription", method_service_get_interface_description, false },
};

int coh_broker_dispatch(struct coh_daemon *d, struct coh_conn *c, struct coh_message *m) {
        struct call_ctx x = { .d = d, .conn = c, .msg = m };
        int r;

        if (c->monitor)
                return -EPROTO; /* a Monitor stream takes no further calls */
        r = coh_call_parse(m->json, &x.call);
        if (r < 0) {
                coh_log_debug(d, "connection %" PRIu64 ": malformed message", c->id);
                return r;
        }
        c->oneway = x.call.oneway;
        const struct method *method = NULL;
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (strcmp(methods[i].name, x.call.method) == 0)
                        method = &methods[i];
        if (!method)
                r = reply_error1(&x, SERVICE "MethodNotFound", "method", x.call.method);
        else if (method->manager && !coh_conn_is_admin(c))
                r = coh_conn_error(c, BROKER "PermissionDenied", json_object_new_object());
        else if (x.call.upgrade)
                r = reply_error1(&x, SERVICE "MethodNotImplemented", "method", x.call.method);
        else
                r = method->handler(&x);
        c->oneway = false;
        coh_call_done(&x.call);
        return r == -ENOBUFS ? 0 : r;
}
