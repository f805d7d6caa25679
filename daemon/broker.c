/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The request path. Everything a client can get wrong is answered with an
 * error naming the parameter at fault; every descriptor a message carried is
 * either taken by a grant or closed with the message.
 */
#include <errno.h>
#include <fcntl.h>
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
        struct coh_verdict verdict;
};

struct request {
        char slot[COH_SLOT_MAX];   /* the device asked for */
        struct device_verdict *devices; /* every device of its IOMMU group */
        size_t n_devices;
        size_t deciding;           /* index into devices */
        struct coh_verdict verdict; /* the file's, from coh_decide_group */
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

static const char *expected_iommu = "a VFIO container or iommufd";
static const char *expected_vm = "a KVM VM";
#define VFIO_DRIVER "vfio-pci"

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
        if (full) {
                json_object_object_add(o, "access", json_object_new_string(coh_access_to_string(v->policy.access)));
                json_object_object_add(o, "accessRule", json_object_new_string(
                        coh_origin_format(&v->policy.access_origin, buf, sizeof buf)));
        }
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
        if (full) {
                json_object_object_add(o, "decision", json_object_new_string(coh_decision_to_string(v->verdict.decision)));
                json_object_object_add(o, "reason", json_object_new_string(coh_reason_to_string(v->verdict.reason)));
        }
        return o;
}

/* The VFIO file that carries the request's device: its group (the only path on Debian's kernels). */
static void request_file(const struct request *req, char file[static 48]) {
        snprintf(file, 48, "vfio-group:%d", req->devices[req->deciding].facts.iommu_group);
}

static json_object *facts_json(const struct request *req) {
        json_object *o = device_facts_json(&req->devices[req->deciding], false);
        char file[48];
        request_file(req, file);
        json_object_object_add(o, "file", json_object_new_string(file));
        json_object *devices = json_object_new_array();
        for (size_t i = 0; i < req->n_devices; i++)
                json_object_array_add(devices, device_facts_json(&req->devices[i], true));
        json_object_object_add(o, "devices", devices);
        return o;
}

/*
 * The device named by the "device" parameter and every device of its IOMMU
 * group, from sysfs. Returns 1 with req->devices filled, 0 after replying an
 * error, < 0 on failure.
 */
static int read_device(struct call_ctx *x, struct request *req) {
        struct coh_platform *p = x->d->platform;
        struct coh_device_facts device, *facts = NULL;
        const char *slot;
        size_t n = 0;
        int r;

        /* A canonical PCI address as sysfs spells it; never a path. */
        if (coh_json_get_string(x->call.parameters, "device", &slot) < 0 || !coh_slot_valid(slot))
                return invalid_parameter(x, "device") ?: 0;
        snprintf(req->slot, sizeof req->slot, "%s", slot);
        r = coh_facts_read_device(p->sysfs_fd, slot, &device);
        if (r == -ENOENT)
                return reply_error1(x, BROKER "NoSuchDevice", "device", slot) ?: 0;
        if (r < 0)
                return backend_error(x, -r, "read device facts from sysfs") ?: 0;
        /* Only a device bound to vfio-pci has a VFIO group to hand over. */
        if (strcmp(device.driver, VFIO_DRIVER) != 0 || device.iommu_group < 0)
                return reply_error1(x, BROKER "NoSuchDevice", "device", slot) ?: 0;
        r = coh_facts_read_group(p->sysfs_fd, device.iommu_group, &facts, &n);
        if (r < 0)
                return backend_error(x, -r, "read IOMMU group facts from sysfs") ?: 0;
        req->devices = calloc(n, sizeof *req->devices);
        if (!req->devices) {
                free(facts);
                return -ENOMEM;
        }
        req->n_devices = n;
        for (size_t i = 0; i < n; i++)
                req->devices[i].facts = facts[i];
        free(facts);
        return 1;
}

/*
 * Decides every device of the request for peer. ioas: the VMM's IOAS as
 * classified, or NULL; claimed: -1, or the IOAS the caller intends to
 * create (Probe). Returns 1 with req filled, 0 after replying an error.
 */
static int decide(struct call_ctx *x, const struct coh_peer *peer, const struct coh_fd_info *ioas, int claimed,
                  const char *ioas_parameter, struct request *req) {
        struct coh_platform *p = x->d->platform;
        struct coh_verdict *verdicts = calloc(req->n_devices, sizeof *verdicts);
        if (!verdicts)
                return -ENOMEM;
        for (size_t i = 0; i < req->n_devices; i++) {
                struct device_verdict *v = &req->devices[i];
                coh_policy_evaluate(x->d->policy, &v->facts, peer, &v->policy);
                v->ioas_coherent = claimed >= 0 ? claimed
                                   : ioas       ? p->ops->ioas_coherent(p, &v->facts, ioas)
                                                : v->facts.iommu_enforces; /* the daemon sets the IOMMU itself */
                if (coh_decide(v->policy.access, v->policy.nosnoop, v->ioas_coherent, v->facts.iommu_enforces,
                               v->policy.mode, &v->verdict) < 0) {
                        free(verdicts);
                        return reply_error1(x, BROKER "CoherencyUnsupported", "parameter", ioas_parameter) ?: 0;
                }
                verdicts[i] = v->verdict;
        }
        coh_decide_group(verdicts, req->n_devices, &req->verdict, &req->deciding);
        free(verdicts);

        const struct device_verdict *v = &req->devices[req->deciding];
        const struct coh_origin *origin = req->verdict.decided_by == COH_DECIDED_BY_ACCESS    ? &v->policy.access_origin
                                          : req->verdict.decided_by == COH_DECIDED_BY_NOSNOOP ? &v->policy.nosnoop_origin
                                                                                              : &v->policy.mode_origin;
        coh_origin_format(origin, req->rule, sizeof req->rule);
        return 1;
}

/* The IOAS from the iommu descriptor. Returns 1, or 0 after replying. */
static int ioas_from_fd(struct call_ctx *x, int iommu_fd, struct coh_fd_info *ret) {
        int r = x->d->platform->ops->classify(x->d->platform, iommu_fd, ret);
        if (r < 0)
                return backend_error(x, -r, "classify iommu") ?: 0;
        if (ret->kind != COH_FD_VFIO_CONTAINER && ret->kind != COH_FD_IOMMUFD)
                return invalid_fd(x, "iommu", expected_iommu, ret->what) ?: 0;
        return 1;
}

static void decision_fields(json_object *p, const struct request *req) {
        const struct device_verdict *v = &req->devices[req->deciding];
        const char *attach = coh_kvm_attach_to_string(req->verdict.kvm_attach);
        json_object_object_add(p, "decision", json_object_new_string(coh_decision_to_string(req->verdict.decision)));
        json_object_object_add(p, "reason", json_object_new_string(coh_reason_to_string(req->verdict.reason)));
        json_object_object_add(p, "rule", json_object_new_string(req->rule));
        json_object_object_add(p, "mode", json_object_new_string(coh_mode_to_string(v->policy.mode)));
        json_object_object_add(p, "wbinvd", json_object_new_string(req->verdict.wbinvd ? "allowed" : "none"));
        if (attach)
                json_object_object_add(p, "kvmAttach", json_object_new_string(attach));
}

/* ---- journal and events ----------------------------------------------- */

static void broadcast(struct coh_daemon *d, json_object *ev, pid_t watcher_pid) {
        struct coh_conn *c, *next;
        for (c = LIST_FIRST(&d->server.conns); c; c = next) {
                next = LIST_NEXT(c, link);
                if (c->closing)
                        continue;
                if ((watcher_pid == 0 && c->monitor) || (watcher_pid > 0 && c->watch && c->peer.pid == watcher_pid))
                        coh_conn_reply(c, json_object_get(ev), true);
        }
        json_object_put(ev);
}

void coh_broker_grant_event(struct coh_daemon *d, const struct coh_grant *g, const char *event) {
        /* The VMM's own stream: the grant as ListGrants shows it. */
        json_object *w = json_object_new_object(), *list = json_object_new_array();
        json_object_object_add(w, "event", json_object_new_string(event));
        json_object_array_add(list, coh_grant_to_json(d, g, false));
        json_object_object_add(w, "grants", list);
        broadcast(d, w, g->peer_pid);

        json_object *ev = json_object_new_object();
        json_object_object_add(ev, "event", json_object_new_string(event));
        json_object_object_add(ev, "grant", json_object_new_string(g->id));
        json_object_object_add(ev, "decision", json_object_new_string(coh_decision_to_string(g->decision)));
        json_object_object_add(ev, "state", json_object_new_string(coh_grant_state_to_string(g->state)));
        if (g->end[0])
                json_object_object_add(ev, "end", json_object_new_string(g->end));
        json_object_object_add(ev, "vmWbinvd", json_object_new_string(coh_vm_wbinvd(g->vm)));
        json_object_object_add(ev, "device", json_object_new_string(g->slot));
        json_object_object_add(ev, "peerPid", json_object_new_int64(g->peer_pid));
        json_object_object_add(ev, "peerUid", json_object_new_int64(g->peer_uid));
        broadcast(d, ev, 0);
}

static const char *decision_message_id(enum coh_decision d) {
        return d == COH_DECISION_GRANTED ? COH_MESSAGE_DECISION
               : d == COH_DECISION_REFUSED ? COH_MESSAGE_REFUSED
                                           : COH_MESSAGE_NOT_NEEDED;
}

static void log_decision(struct call_ctx *x, const struct request *req, const struct coh_grant *grant,
                         const char *vm_wbinvd) {
        const struct device_verdict *v = &req->devices[req->deciding];
        const struct coh_peer *peer = &x->conn->peer;
        char message[768], pid[32], uid[32], group[32];
        const char *decision = coh_decision_to_string(req->verdict.decision);
        const char *reason = coh_reason_to_string(req->verdict.reason);
        const char *attach = coh_kvm_attach_to_string(req->verdict.kvm_attach);

        snprintf(pid, sizeof pid, "%d", (int) peer->pid);
        snprintf(uid, sizeof uid, "%u", (unsigned) peer->uid);
        snprintf(group, sizeof group, "%d", v->facts.iommu_group);
        snprintf(message, sizeof message, "%s %s (IOMMU group %s) to the VMM of pid %s (uid %s): %s, %s by %s; WBINVD %s, VM WBINVD %s",
                 req->verdict.decision == COH_DECISION_REFUSED ? "Refused" : "Handed over", req->slot, group, pid, uid,
                 decision, reason, req->rule, req->verdict.wbinvd ? "allowed once added" : "unaffected", vm_wbinvd);
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_DECISION", decision },
                { "COHERENCYD_REASON", reason },
                { "COHERENCYD_MODE", coh_mode_to_string(v->policy.mode) },
                { "COHERENCYD_ACCESS", coh_access_to_string(v->policy.access) },
                { "COHERENCYD_RULE", req->rule },
                { "COHERENCYD_GRANT", grant ? grant->id : NULL },
                { "COHERENCYD_SLOT", req->slot },
                { "COHERENCYD_DECIDING_SLOT", strcmp(v->facts.slot, req->slot) != 0 ? v->facts.slot : NULL },
                { "COHERENCYD_IOMMU_GROUP", v->facts.iommu_group >= 0 ? group : NULL },
                { "COHERENCYD_IOMMU", v->facts.iommu[0] ? v->facts.iommu : NULL },
                { "COHERENCYD_NOSNOOP", coh_nosnoop_to_string(v->policy.nosnoop) },
                { "COHERENCYD_IOMMU_ENFORCES", v->facts.iommu_enforces ? "yes" : "no" },
                { "COHERENCYD_IOAS_COHERENT", v->ioas_coherent ? "yes" : "no" },
                { "COHERENCYD_WBINVD", req->verdict.wbinvd ? "allowed" : "none" },
                { "COHERENCYD_VM_WBINVD", vm_wbinvd },
                { "COHERENCYD_KVM_ATTACH", attach },
                { "COHERENCYD_PEER_UID", uid },
                { "COHERENCYD_PEER_UNIT", peer->unit },
                { "OBJECT_PID", pid },
        };
        if (x->d->journal)
                (void) coh_journal_send(x->d->journal,
                                        req->verdict.decision == COH_DECISION_REFUSED ? LOG_NOTICE : LOG_INFO,
                                        decision_message_id(req->verdict.decision), message, fields,
                                        ELEMENTSOF(fields));

        json_object *ev = json_object_new_object();
        json_object_object_add(ev, "event", json_object_new_string("decision"));
        if (grant)
                json_object_object_add(ev, "grant", json_object_new_string(grant->id));
        decision_fields(ev, req);
        json_object_object_add(ev, "vmWbinvd", json_object_new_string(vm_wbinvd));
        json_object_object_add(ev, "device", json_object_new_string(req->slot));
        json_object_object_add(ev, "peerPid", json_object_new_int64(peer->pid));
        json_object_object_add(ev, "peerUid", json_object_new_int64(peer->uid));
        broadcast(x->d, ev, 0);
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
        json_object_object_add(p, "access", json_object_new_string(coh_access_to_string(pr.access)));
        json_object_object_add(p, "accessRule", json_object_new_string(coh_origin_format(&pr.access_origin, rule, sizeof rule)));
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

static int reply_decision(struct call_ctx *x, const struct request *req) {
        json_object *p = json_object_new_object();
        decision_fields(p, req);
        json_object_object_add(p, "facts", facts_json(req));
        return reply(x, p);
}

static int method_probe(struct call_ctx *x) {
        static const char *const keys[] = { "device", "iommu", "ioasCoherent", NULL };
        _cleanup_close_ int iommu_fd = -EBADF;
        struct coh_fd_info ioas;
        struct request req = {};
        int claimed = -1, r;
        bool claim;

        if ((r = check_keys(x, keys)) <= 0)
                return r;
        if ((r = fd_param(x, "iommu", true, &iommu_fd)) <= 0)
                return r;
        if (iommu_fd >= 0 && (r = ioas_from_fd(x, iommu_fd, &ioas)) <= 0)
                return r;
        const char *ioas_parameter = "iommu";
        r = coh_json_get_bool(x->call.parameters, "ioasCoherent", &claim);
        if (r == -EINVAL)
                return invalid_parameter(x, "ioasCoherent");
        if (r == 0) {
                claimed = claim; /* the IOAS the caller intends to create */
                ioas_parameter = "ioasCoherent";
        }
        r = read_device(x, &req);
        if (r > 0)
                r = decide(x, &x->conn->peer, iommu_fd >= 0 ? &ioas : NULL, claimed, ioas_parameter, &req);
        if (r > 0)
                r = reply_decision(x, &req);
        request_done(&req);
        return r;
}

/* Hands the group over: opened, attached to the VMM's IOAS, pinned, recorded. Returns 1, or 0 after replying. */
static int hand_over(struct call_ctx *x, const struct request *req, int *vm_fd, int iommu_fd,
                     const struct coh_fd_info *ioas, struct coh_grant **ret_grant, int *ret_file_fd) {
        struct coh_daemon *d = x->d;
        const struct device_verdict *v = &req->devices[req->deciding];
        const struct coh_broker_config *cfg = coh_policy_broker(d->policy);
        struct coh_custody custody = { .pin_fd = -EBADF, .probe_fd = -EBADF };
        const char *operation = NULL;
        int r;

        if (x->conn->n_grants >= cfg->max_grants_per_connection)
                return reply_error1(x, BROKER "LimitExceeded", "limit", "MaxGrantsPerConnection") ?: 0;
        /* Ours already, active or ending: the kernel would say EBUSY too. */
        if (coh_grants_find_group(&d->grants, v->facts.iommu_group))
                return reply_error1(x, BROKER "DeviceBusy", "device", req->slot) ?: 0;
        r = d->platform->ops->custody_begin(d->platform, &v->facts, iommu_fd, ioas, ret_file_fd, &custody, &operation);
        if (r == -EBUSY)
                return reply_error1(x, BROKER "DeviceBusy", "device", req->slot) ?: 0;
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                /* A client can cause EINVAL (a container of another kind, say);
                 * only what it cannot cause is an error here. */
                coh_log(d, r == -EINVAL ? LOG_NOTICE : LOG_ERR, COH_MESSAGE_REQUEST_ERROR, "%s for %s failed: %s",
                        operation ?: "custody", req->slot, strerror(-r));
                return backend_error(x, -r, operation ?: "custody") ?: 0;
        }

        struct coh_grant tmpl = {
                .decision = req->verdict.decision,
                .reason = req->verdict.reason,
                .mode = v->policy.mode,
                .kvm_attach = req->verdict.kvm_attach,
                .wbinvd = req->verdict.wbinvd,
                .iommu_group = v->facts.iommu_group,
        };
        snprintf(tmpl.rule, sizeof tmpl.rule, "%s", req->rule);
        snprintf(tmpl.slot, sizeof tmpl.slot, "%s", req->slot);
        request_file(req, tmpl.file);
        int pidfd = x->conn->pidfd >= 0 ? fcntl(x->conn->pidfd, F_DUPFD_CLOEXEC, 3) : -EBADF;
        r = coh_grant_create(d, x->conn, take_fd(vm_fd), &custody, pidfd, &tmpl, ret_grant);
        if (r < 0) {
                /* Its custody is closed: the group is free once our copy goes too. */
                close(take_fd(ret_file_fd));
                if (r == -ENOMEM)
                        return r;
                return backend_error(x, -r, "record grant") ?: 0;
        }
        return 1;
}

static int method_request_grant(struct call_ctx *x) {
        static const char *const keys[] = { "vm", "device", "iommu", NULL };
        struct coh_daemon *d = x->d;
        _cleanup_close_ int vm_fd = -EBADF, iommu_fd = -EBADF, file_fd = -EBADF;
        struct request req = {};
        struct coh_fd_info vm_info, ioas;
        struct coh_grant *grant = NULL;
        int r;

        if ((r = check_keys(x, keys)) <= 0)
                return r;
        if ((r = fd_param(x, "vm", false, &vm_fd)) <= 0)
                return r;
        if ((r = fd_param(x, "iommu", false, &iommu_fd)) <= 0)
                return r;

        r = d->platform->ops->classify(d->platform, vm_fd, &vm_info);
        if (r < 0)
                return backend_error(x, -r, "classify vm");
        if (vm_info.kind != COH_FD_KVM_VM)
                return invalid_fd(x, "vm", expected_vm, vm_info.what);
        if ((r = ioas_from_fd(x, iommu_fd, &ioas)) <= 0)
                return r;
        r = read_device(x, &req);
        if (r > 0)
                r = decide(x, &x->conn->peer, &ioas, -1, "iommu", &req);
        if (r <= 0)
                goto finish;

        if (req.verdict.decision != COH_DECISION_REFUSED) {
                r = hand_over(x, &req, &vm_fd, iommu_fd, &ioas, &grant, &file_fd);
                if (r <= 0)
                        goto finish;
        }

        /* Without a grant the VM descriptor is still ours: the VM may hold other grants. */
        const char *vm_wbinvd = coh_vm_wbinvd(grant ? grant->vm : coh_grants_find_vm(&d->grants, vm_fd));
        log_decision(x, &req, grant, vm_wbinvd);

        json_object *p = json_object_new_object();
        if (grant)
                json_object_object_add(p, "grant", json_object_new_string(grant->id));
        decision_fields(p, &req);
        json_object_object_add(p, "vmWbinvd", json_object_new_string(vm_wbinvd));
        json_object_object_add(p, "facts", facts_json(&req));
        if (file_fd >= 0) {
                json_object_object_add(p, "group", json_object_new_int(0));
                int fd = take_fd(&file_fd);
                r = coh_conn_reply_fds(x->conn, p, &fd, 1);
                grant->pending = false;
                coh_daemon_state_changed(d);
        } else
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
        if (!g || (!manager && (g->owner != x->conn || g->state != COH_GRANT_ACTIVE)))
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
        /* The VM may go with its last grant: what is left of it is told now. */
        struct coh_vm *vm = g->vm;
        bool last = vm->n_grants == 1;
        bool granted = g->decision == COH_DECISION_GRANTED;
        const char *vm_wbinvd = last || (granted && vm->n_granted == 1) ? "noop" : coh_vm_wbinvd(vm);
        int ended = coh_grant_end(x->d, g, "release", false); /* g is gone when ended */
        json_object *p = json_object_new_object();
        json_object_object_add(p, "vmWbinvd", json_object_new_string(vm_wbinvd));
        json_object_object_add(p, "state", json_object_new_string(ended > 0 ? "ended" : "ending"));
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
                if (manager || (g->owner == x->conn && g->state == COH_GRANT_ACTIVE))
                        json_object_array_add(list, coh_grant_to_json(x->d, g, manager));
        json_object *p = json_object_new_object();
        json_object_object_add(p, "grants", list);
        return reply(x, p);
}

static int method_list_grants(struct call_ctx *x) {
        return list_grants(x, false);
}

static int method_watch_grants(struct call_ctx *x) {
        static const char *const keys[] = { NULL };
        int r;
        if ((r = check_keys(x, keys)) <= 0)
                return r;
        if (!x->call.more)
                return coh_conn_error(x->conn, SERVICE "ExpectedMore", json_object_new_object());
        /* The calling process's grants, whichever of its connections holds them. */
        json_object *list = json_object_new_array();
        struct coh_grant *g;
        LIST_FOREACH(g, &x->d->grants.grants, link)
                if (g->peer_pid == x->conn->peer.pid && g->peer_uid == x->conn->peer.uid)
                        json_object_array_add(list, coh_grant_to_json(x->d, g, false));
        json_object *p = json_object_new_object();
        json_object_object_add(p, "event", json_object_new_string("grants"));
        json_object_object_add(p, "grants", list);
        x->conn->watch = true;
        return coh_conn_reply(x->conn, p, true);
}

/* ---- io.coherencyd.Manager -------------------------------------------- */

static int method_manager_list_grants(struct call_ctx *x) {
        return list_grants(x, true);
}

static int method_revoke_grant(struct call_ctx *x) {
        static const char *const keys[] = { "grant", "kill", NULL };
        const struct coh_broker_config *cfg = coh_policy_broker(x->d->policy);
        struct coh_grant *g;
        bool kill = cfg->revoke_kill;
        int r;
        if ((r = check_keys(x, keys)) <= 0 || (r = grant_param(x, true, &g)) <= 0)
                return r;
        r = coh_json_get_bool(x->call.parameters, "kill", &kill);
        if (r == -EINVAL)
                return invalid_parameter(x, "kill");
        /* Without RevokeKill= the daemon has given up CAP_KILL. */
        if (kill && !cfg->revoke_kill)
                return coh_conn_error(x->conn, MANAGER "KillNotEnabled", json_object_new_object());
        coh_log(x->d, LOG_NOTICE, NULL, "Grant %s for %s revoked by uid %u%s%s%s", g->id, g->slot,
                (unsigned) x->conn->peer.uid, x->conn->peer.unit ? " (" : "", x->conn->peer.unit ?: "",
                x->conn->peer.unit ? ")" : "");
        (void) coh_grant_end(x->d, g, "revoke", kill);
        return reply(x, json_object_new_object());
}

static int method_explain(struct call_ctx *x) {
        static const char *const keys[] = { "device", "user", "group", "unit", NULL };
        const char *user, *group = NULL, *unit = NULL;
        _cleanup_free_ gid_t *groups = NULL;
        struct coh_peer peer;
        struct request req = {};
        int r;

        if ((r = check_keys(x, keys)) <= 0)
                return r;
        if (coh_json_get_string(x->call.parameters, "user", &user) < 0)
                return invalid_parameter(x, "user");
        if (coh_json_get_string(x->call.parameters, "group", &group) == -EINVAL)
                return invalid_parameter(x, "group");
        if (coh_json_get_string(x->call.parameters, "unit", &unit) == -EINVAL)
                return invalid_parameter(x, "unit");
        r = coh_peer_from_names(user, group, unit, &peer, &groups);
        if (r == -ESRCH)
                return invalid_parameter(x, "user");
        if (r == -ENOENT)
                return invalid_parameter(x, "group");
        if (r < 0)
                return backend_error(x, -r, "look up user");
        r = read_device(x, &req);
        if (r > 0)
                r = decide(x, &peer, NULL, -1, "device", &req);
        if (r > 0)
                r = reply_decision(x, &req);
        request_done(&req);
        return r;
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
        /* A first reply at once, so a client knows it is subscribed before anything happens. */
        json_object *p = json_object_new_object();
        json_object_object_add(p, "event", json_object_new_string("subscribed"));
        json_object_object_add(p, "grants", json_object_new_int64(x->d->grants.n_grants));
        x->conn->monitor = true;
        return coh_conn_reply(x->conn, p, true);
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
        { BROKER "WatchGrants", method_watch_grants, false },
        { MANAGER "ListGrants", method_manager_list_grants, true },
        { MANAGER "RevokeGrant", method_revoke_grant, true },
        { MANAGER "Explain", method_explain, true },
        { MANAGER "ReloadPolicy", method_reload_policy, true },
        { MANAGER "GetPolicy", method_get_policy, true },
        { MANAGER "Monitor", method_monitor, true },
        { SERVICE "GetInfo", method_service_get_info, false },
        { SERVICE "GetInterfaceDescription", method_service_get_interface_description, false },
};

int coh_broker_dispatch(struct coh_daemon *d, struct coh_conn *c, struct coh_message *m) {
        struct call_ctx x = { .d = d, .conn = c, .msg = m };
        int r;

        if (c->monitor || c->watch)
                return -EPROTO; /* a streaming connection takes no further calls */
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
