/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The request pipeline shared by Probe, RequestGrant and Explain: the
 * device's facts (sysfs) -> policy -> the decision table -> the reply's
 * fields and the decision record.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "grants.h"
#include "log.h"
#include "methods-internal.h"
#include "server.h"
#include "util.h"

#define VFIO_DRIVER "vfio-pci"

static const char *expected_iommu = "a VFIO container or iommufd";

void request_done(struct request *r) {
        free(r->devices);
}

static json_object *device_facts_json(const struct device_verdict *v, bool full) {
        const struct coh_device_facts *f = &v->facts;
        char buf[512];
        json_object *o = json_object_new_object();
        coh_json_add(o, "slot", json_object_new_string(f->slot));
        coh_json_add(o, "vendor", json_object_new_string(f->vendor));
        coh_json_add(o, "device", json_object_new_string(f->device));
        coh_json_add(o, "class", json_object_new_string(f->class));
        coh_json_add(o, "driver", json_object_new_string(f->driver));
        coh_json_add(o, "iommu", json_object_new_string(f->iommu));
        coh_json_add(o, "iommuGroup", json_object_new_int(f->iommu_group));
        if (full) {
                coh_json_add(o, "access", json_object_new_string(coh_access_to_string(v->policy.access)));
                coh_json_add(o, "accessRule", json_object_new_string(
                        coh_origin_format(&v->policy.access_origin, buf, sizeof buf)));
        }
        coh_json_add(o, "noSnoop", json_object_new_string(coh_nosnoop_to_string(v->policy.nosnoop)));
        if (full) {
                coh_json_add(o, "noSnoopRule", json_object_new_string(
                        coh_origin_format(&v->policy.nosnoop_origin, buf, sizeof buf)));
                coh_json_add(o, "mode", json_object_new_string(coh_mode_to_string(v->policy.mode)));
                coh_json_add(o, "modeRule", json_object_new_string(
                        coh_origin_format(&v->policy.mode_origin, buf, sizeof buf)));
        }
        coh_json_add(o, "iommuEnforces", json_object_new_boolean(f->iommu_enforces));
        coh_json_add(o, "ioasCoherent", json_object_new_boolean(v->ioas_coherent));
        if (full) {
                coh_json_add(o, "decision", json_object_new_string(coh_decision_to_string(v->verdict.decision)));
                coh_json_add(o, "reason", json_object_new_string(coh_reason_to_string(v->verdict.reason)));
        }
        return o;
}

json_object *request_facts_json(const struct request *req) {
        json_object *o = device_facts_json(&req->devices[req->deciding], false);
        coh_json_add(o, "file", json_object_new_string(req->file));
        json_object *devices = json_object_new_array();
        for (size_t i = 0; i < req->n_devices; i++)
                coh_json_append(devices, device_facts_json(&req->devices[i], true));
        coh_json_add(o, "devices", devices);
        return o;
}

int request_read_device(struct call_ctx *x, const char *slot, struct request *req) {
        struct coh_platform *p = x->ms->platform;
        struct coh_device_facts device, *facts = NULL;
        size_t n = 0;
        int r;

        /* A canonical PCI address as sysfs spells it; never a path. */
        if (!coh_slot_valid(slot))
                return method_reply_errno(x, -EINVAL, "device") ?: 0;
        snprintf(req->slot, sizeof req->slot, "%s", slot);
        r = coh_facts_read_device(p->sysfs_fd, slot, &device);
        if (r == -ENOENT)
                return method_reply_errno(x, -ENODEV, slot) ?: 0;
        if (r < 0)
                return method_backend_error(x, r, "read device facts from sysfs") ?: 0;
        /* Only a device bound to vfio-pci has a VFIO group to hand over. */
        if (!streq(device.driver, VFIO_DRIVER) || device.iommu_group < 0)
                return method_reply_errno(x, -ENODEV, slot) ?: 0;
        r = coh_facts_read_group(p->sysfs_fd, device.iommu_group, &facts, &n);
        if (r < 0)
                return method_backend_error(x, r, "read IOMMU group facts from sysfs") ?: 0;
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
int request_decide(struct call_ctx *x, const struct coh_peer *peer, const struct coh_fd_info *ioas, int claimed,
                   const char *ioas_parameter, struct request *req) {
        struct coh_platform *p = x->ms->platform;
        struct coh_verdict *verdicts = calloc(req->n_devices, sizeof *verdicts);
        if (!verdicts)
                return -ENOMEM;
        for (size_t i = 0; i < req->n_devices; i++) {
                struct device_verdict *v = &req->devices[i];
                coh_policy_evaluate(call_policy(x), &v->facts, peer, &v->policy);
                v->ioas_coherent = claimed >= 0 ? claimed
                                   : ioas       ? p->ops->ioas_coherent(p, &v->facts, ioas)
                                                : v->facts.iommu_enforces; /* the daemon sets the IOMMU itself */
                if (coh_decide(v->policy.access, v->policy.nosnoop, v->ioas_coherent, v->facts.iommu_enforces,
                               v->policy.mode, &v->verdict) < 0) {
                        free(verdicts);
                        return method_reply_errno(x, -EOPNOTSUPP, ioas_parameter) ?: 0;
                }
                verdicts[i] = v->verdict;
        }
        coh_decide_group(verdicts, req->n_devices, &req->verdict, &req->deciding);
        free(verdicts);
        /* A group carries every device of its IOMMU group; with an iommufd the
         * device's own cdev is bound to it instead (platform.h). */
        if (ioas && ioas->kind == COH_FD_IOMMUFD)
                snprintf(req->file, sizeof req->file, "vfio-device:%s", req->slot);
        else
                snprintf(req->file, sizeof req->file, "vfio-group:%d", req->devices[req->deciding].facts.iommu_group);

        const struct device_verdict *v = &req->devices[req->deciding];
        const struct coh_origin *origin = req->verdict.decided_by == COH_DECIDED_BY_ACCESS    ? &v->policy.access_origin
                                          : req->verdict.decided_by == COH_DECIDED_BY_NOSNOOP ? &v->policy.nosnoop_origin
                                                                                              : &v->policy.mode_origin;
        coh_origin_format(origin, req->rule, sizeof req->rule);
        return 1;
}

/* The IOAS from the iommu descriptor. Returns 1, or 0 after replying. */
int request_ioas(struct call_ctx *x, int iommu_fd, struct coh_fd_info *ret) {
        struct coh_platform *p = x->ms->platform;
        int r = p->ops->classify(p, iommu_fd, ret);
        if (r < 0)
                return method_backend_error(x, r, "classify iommu") ?: 0;
        if (ret->kind != COH_FD_VFIO_CONTAINER && ret->kind != COH_FD_IOMMUFD)
                return method_invalid_fd(x, "iommu", expected_iommu, ret->what) ?: 0;
        return 1;
}

void request_decision_fields(json_object *p, const struct request *req) {
        const struct device_verdict *v = &req->devices[req->deciding];
        const char *attach = coh_kvm_attach_to_string(req->verdict.kvm_attach);
        coh_json_add(p, "decision", json_object_new_string(coh_decision_to_string(req->verdict.decision)));
        coh_json_add(p, "reason", json_object_new_string(coh_reason_to_string(req->verdict.reason)));
        coh_json_add(p, "rule", json_object_new_string(req->rule));
        coh_json_add(p, "mode", json_object_new_string(coh_mode_to_string(v->policy.mode)));
        coh_json_add(p, "wbinvd", json_object_new_string(req->verdict.wbinvd ? "allowed" : "none"));
        if (attach)
                coh_json_add(p, "kvmAttach", json_object_new_string(attach));
}

static const char *decision_message_id(enum coh_decision d) {
        return d == COH_DECISION_GRANTED ? COH_MESSAGE_DECISION
               : d == COH_DECISION_REFUSED ? COH_MESSAGE_REFUSED
                                           : COH_MESSAGE_NOT_NEEDED;
}

void request_log_decision(struct call_ctx *x, const struct request *req, const struct coh_grant *grant,
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
                { "COHERENCYD_GRANT", grant ? grant->rec.grant : NULL },
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
        coh_log_record(req->verdict.decision == COH_DECISION_REFUSED ? LOG_NOTICE : LOG_INFO,
                       decision_message_id(req->verdict.decision), message, fields, ELEMENTSOF(fields));

        json_object *ev = json_object_new_object();
        coh_json_add(ev, "event", json_object_new_string("decision"));
        if (grant)
                coh_json_add(ev, "grant", json_object_new_string(grant->rec.grant));
        request_decision_fields(ev, req);
        coh_json_add(ev, "vmWbinvd", json_object_new_string(vm_wbinvd));
        coh_json_add(ev, "device", json_object_new_string(req->slot));
        coh_json_add(ev, "peerPid", json_object_new_int64(peer->pid));
        coh_json_add(ev, "peerUid", json_object_new_int64(peer->uid));
        methods_broadcast(x->ms, ev, 0);
}

