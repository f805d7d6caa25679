/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The request pipeline shared by Probe, RequestGrant and Explain: the
 * device's facts (sysfs) -> policy -> the decision table -> the reply's
 * fields and the decision record.
 */
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "facts-cache.h"
#include "json-util.h"
#include "grants.h"
#include "log.h"
#include "methods-internal.h"
#include "refusal-fold.h"
#include "server.h"
#include "strbuf.h"
#include "decision-record.h"
#include "util.h"

#define VFIO_DRIVER "vfio-pci"

static const char *expected_iommu = "a VFIO container or iommufd";

void request_done(struct request *r) {
        free(r->devices);
}

static struct coh_device_record device_record(const struct device_verdict *v) {
        const struct coh_device_facts *f = &v->facts;
        struct coh_device_record d = {
                .iommu_group = f->iommu_group,
                .access = v->policy.access,
                .nosnoop = v->policy.nosnoop,
                .mode = v->policy.mode,
                .iommu_enforces = f->iommu_enforces,
                .ioas_coherent = v->ioas_coherent,
                .decision = v->verdict.decision,
                .reason = v->verdict.reason,
        };
        strscpy0(d.slot, f->slot, sizeof d.slot);
        strscpy0(d.vendor, f->vendor, sizeof d.vendor);
        strscpy0(d.device, f->device, sizeof d.device);
        strscpy0(d.class_, f->class, sizeof d.class_);
        strscpy0(d.driver, f->driver, sizeof d.driver);
        strscpy0(d.iommu, f->iommu, sizeof d.iommu);
        coh_origin_format(&v->policy.access_origin, d.access_rule, sizeof d.access_rule);
        coh_origin_format(&v->policy.nosnoop_origin, d.nosnoop_rule, sizeof d.nosnoop_rule);
        coh_origin_format(&v->policy.mode_origin, d.mode_rule, sizeof d.mode_rule);
        return d;
}

/* The request's Facts: the deciding device's brief form, the file, and each device in full. */
void request_facts_write(const struct request *req, struct coh_json_writer *w) {
        coh_jw_object_begin(w);
        coh_record_write(coh_device_record_fields, &req->devices[req->deciding].record, COH_DEVICE_FORM_BRIEF, w);
        coh_jw_key_plain(w, "file");
        coh_jw_string(w, req->file);
        coh_jw_key_plain(w, "devices");
        coh_jw_array_begin(w);
        for (size_t i = 0; i < req->n_devices; i++) {
                coh_jw_object_begin(w);
                coh_record_write(coh_device_record_fields, &req->devices[i].record, COH_DEVICE_FORM_FULL, w);
                coh_jw_object_end(w);
        }
        coh_jw_array_end(w);
        coh_jw_object_end(w);
}

int request_read_device(struct call_ctx *x, const char *slot, struct request *req) {
        struct coh_platform *p = x->ms->platform;
        struct coh_device_facts device, *facts = NULL;
        size_t n = 0;
        int group_error, r;

        /* A canonical PCI address as sysfs spells it; never a path. */
        if (!coh_slot_valid(slot))
                return method_reply_errno(x, -EINVAL, "device") ?: 0;
        strscpy0(req->slot, slot, sizeof req->slot);
        /* From the cache while no uevent said the device changed (facts-cache.h). */
        r = coh_facts_cache_read(p->facts, p->sysfs_fd, slot, &device, &facts, &n, &group_error);
        if (r == -ENOENT)
                return method_reply_errno(x, -ENODEV, slot) ?: 0;
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return method_backend_error(x, r, "read device facts from sysfs") ?: 0;
        /* Only a device bound to vfio-pci has a VFIO group to hand over. */
        if (!streq(device.driver, VFIO_DRIVER) || device.iommu_group < 0) {
                free(facts);
                return method_reply_errno(x, -ENODEV, slot) ?: 0;
        }
        if (group_error < 0) {
                free(facts);
                return method_backend_error(x, group_error, "read IOMMU group facts from sysfs") ?: 0;
        }
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
                /* Remembered per facts and peer until the policy changes: a rule scan is linear. */
                coh_policy_memo_evaluate(&x->ms->policy_memo, call_policy(x), &v->facts, peer, &v->policy);
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
        /* Made once: the reply shows each device, the record the deciding one again. */
        for (size_t i = 0; i < req->n_devices; i++)
                req->devices[i].record = device_record(&req->devices[i]);
        /* A group carries every device of its IOMMU group; with an iommufd the
         * device's own cdev is bound to it instead (platform.h). */
        struct coh_strbuf file;
        coh_strbuf_init(&file, req->file, sizeof req->file);
        if (ioas && ioas->kind == COH_FD_IOMMUFD) {
                coh_strbuf_puts(&file, "vfio-device:");
                coh_strbuf_puts(&file, req->slot);
        } else {
                coh_strbuf_puts(&file, "vfio-group:");
                coh_strbuf_int(&file, req->devices[req->deciding].facts.iommu_group);
        }

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

struct coh_decision_record request_record(const struct request *req) {
        struct coh_decision_record d = {
                .decision = req->verdict.decision,
                .reason = req->verdict.reason,
                .mode = req->devices[req->deciding].policy.mode,
                .wbinvd = req->verdict.wbinvd,
                .kvm_attach = req->verdict.kvm_attach,
        };
        strscpy0(d.rule, req->rule, sizeof d.rule);
        strscpy0(d.device, req->slot, sizeof d.device);
        return d;
}

int request_reply(struct call_ctx *x, const struct request *req) {
        struct coh_decision_record rec = request_record(req);
        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        coh_record_write(coh_decision_record_fields, &rec, COH_DECISION_FORM_PROBE, &w);
        coh_jw_key_plain(&w, "facts");
        request_facts_write(req, &w);
        coh_jw_object_end(&w);
        return method_reply(x, coh_jw_to_object(&w));
}

static const char *decision_message_id(enum coh_decision d) {
        return d == COH_DECISION_GRANTED ? COH_MESSAGE_DECISION
               : d == COH_DECISION_REFUSED ? COH_MESSAGE_REFUSED
                                           : COH_MESSAGE_NOT_NEEDED;
}

/* The decision's journal record. */
static void record_decision(const struct request *req, const struct coh_decision_record *rec) {
        const struct device_verdict *v = &req->devices[req->deciding];
        const struct coh_device_record *device = &v->record;
        struct coh_record_journal_field from_decision[16], from_device[24];
        struct coh_journal_field fields[40];
        char message[768];
        struct coh_strbuf m;
        size_t n = 0;

        /* "Handed over 0000:01:00.0 (IOMMU group 12) to the VMM of pid 4242 (uid 0): granted,
         * policy-enable by /etc/...:3; WBINVD allowed once added, VM WBINVD allowed", built without
         * snprintf() (strbuf.h: a record on every grant). */
        coh_strbuf_init(&m, message, sizeof message);
        coh_strbuf_puts(&m, rec->decision == COH_DECISION_REFUSED ? "Refused " : "Handed over ");
        coh_strbuf_puts(&m, rec->device);
        coh_strbuf_puts(&m, " (IOMMU group ");
        coh_strbuf_int(&m, v->facts.iommu_group);
        coh_strbuf_puts(&m, ") to the VMM of pid ");
        coh_strbuf_int(&m, rec->peer_pid);
        coh_strbuf_puts(&m, " (uid ");
        coh_strbuf_int(&m, rec->peer_uid);
        coh_strbuf_puts(&m, "): ");
        coh_strbuf_puts(&m, coh_decision_to_string(rec->decision));
        coh_strbuf_puts(&m, ", ");
        coh_strbuf_puts(&m, coh_reason_to_string(rec->reason));
        coh_strbuf_puts(&m, " by ");
        coh_strbuf_puts(&m, rec->rule);
        coh_strbuf_puts(&m, rec->wbinvd ? "; WBINVD allowed once added, VM WBINVD " : "; WBINVD unaffected, VM WBINVD ");
        coh_strbuf_puts(&m, coh_vm_wbinvd_to_string(rec->vm_wbinvd));
        /* The decision's fields (decision-record.c), then the deciding device's. */
        size_t a = coh_record_to_journal(coh_decision_record_fields, rec, from_decision, ELEMENTSOF(from_decision));
        size_t b = coh_record_to_journal(coh_device_record_fields, device, from_device, ELEMENTSOF(from_device));
        for (size_t i = 0; i < a; i++)
                fields[n++] = (struct coh_journal_field) { from_decision[i].name, from_decision[i].value };
        for (size_t i = 0; i < b; i++)
                fields[n++] = (struct coh_journal_field) { from_device[i].name, from_device[i].value };
        coh_log_record(rec->decision == COH_DECISION_REFUSED ? LOG_NOTICE : LOG_INFO,
                       decision_message_id(rec->decision), message, fields, n);
}

void request_log_decision(struct call_ctx *x, const struct request *req, const struct coh_decision_record *rec) {
        if (rec->decision != COH_DECISION_REFUSED || !refusal_fold_note(x->ms, (uid_t) rec->peer_uid, NULL))
                record_decision(req, rec);

        /* Monitor sees every decision, folded or not. */
        if (x->ms->n_streams == 0)
                return;
        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        coh_jw_key_plain(&w, "event");
        coh_jw_string(&w, "decision");
        coh_record_write(coh_decision_record_fields, rec, COH_DECISION_FORM_EVENT, &w);
        coh_jw_object_end(&w);
        methods_broadcast(x->ms, coh_jw_to_object(&w), 0);
}
