/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the method files share: the call being handled, replies, and the request pipeline (request.c). */

#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

#include "call.h"
#include "decision-record.h"
#include "decision.h"
#include "facts.h"
#include "methods.h"
#include "params.h"
#include "platform.h"
#include "policy.h"

#define BROKER "io.coherencyd.Broker."
#define MANAGER "io.coherencyd.Manager."
#define SERVICE "org.varlink.service."

struct call_ctx {
        struct coh_methods *ms;
        struct coh_conn *conn;
        struct coh_message *msg;
        struct coh_call call;
        /* The parameters method_params() filled: their descriptors are
         * closed, with the message's, before any reply (methods.c). */
        const struct coh_param *params_table;
        void *params;
};

struct coh_method {
        const char *name;
        int (*handler)(struct call_ctx *x);
        bool manager; /* root or the admin group only */
};

/* NULL-terminated, one per interface file. */
extern const struct coh_method coh_broker_methods[];
extern const struct coh_method coh_manager_methods[];
extern const struct coh_method coh_service_methods[];

static inline const struct coh_policy *call_policy(const struct call_ctx *x) {
        return *x->ms->policy;
}

/* ---- replies (methods.c) ---- */

int method_reply(struct call_ctx *x, json_object *p);
/* Errors with one string parameter (key NULL: none). */
int method_error(struct call_ctx *x, const char *error, const char *key, const char *value);
int method_invalid_fd(struct call_ctx *x, const char *parameter, const char *expected, const char *got);
/*
 * The one place errnos become wire errors: -ENODEV NoSuchDevice(subject),
 * -EBUSY DeviceBusy(subject), -ENOENT NoSuchGrant(subject), -EPERM
 * PermissionDenied, -EUSERS LimitExceeded(subject), -EOPNOTSUPP
 * CoherencyUnsupported(subject), -ECANCELED KillNotEnabled, -EINVAL
 * InvalidParameter(subject); anything else BackendError(errno, subject).
 * libcoherency maps them back the same way. For a kernel operation that
 * failed, whatever its errno, method_backend_error().
 */
int method_reply_errno(struct call_ctx *x, int error, const char *subject);
/* BackendError(errno, operation): a kernel or sysfs operation failed. */
int method_backend_error(struct call_ctx *x, int error, const char *operation);
/* Fills *ret from the call's parameters: 0, or 1 after replying InvalidParameter (or < 0). */
int method_params(struct call_ctx *x, const struct coh_param *table, void *ret);
/* The same for a method without parameters. */
int method_no_params(struct call_ctx *x);
/* The same for a streaming method (WatchGrants, Monitor): no parameters, and
 * called with "more" (else ExpectedMore). 0, or 1 after replying (or < 0). */
int method_stream_params(struct call_ctx *x);
/* Every grant that match (NULL: all) says is the caller's, as replies show them. */
struct coh_grant;
json_object *methods_grants_json(struct call_ctx *x, bool (*match)(const struct coh_grant *g, const struct coh_conn *c),
                                 bool manager);
/* A stream's event to every connection that subscribed: Monitor (watcher_pid 0) or the VMM's WatchGrants. */
void methods_broadcast(struct coh_methods *ms, json_object *ev, pid_t watcher_pid);

/* ---- the request pipeline (request.c) ---- */

/* One device of the request with what the policy and the table made of it. */
struct device_verdict {
        struct coh_device_facts facts;
        struct coh_policy_result policy;
        bool ioas_coherent;
        struct coh_verdict verdict;
        struct coh_device_record record; /* all of the above as replies and records show it, once decided */
};

struct request {
        char slot[COH_SLOT_MAX];        /* the device asked for */
        struct device_verdict *devices; /* every device of its IOMMU group */
        size_t n_devices;
        size_t deciding;                /* index into devices */
        struct coh_verdict verdict;     /* the file's, from coh_decide_group */
        char rule[512];
        char file[48];                  /* the file handed over: "vfio-group:N", or "vfio-device:SLOT" with an iommufd */
};

void request_done(struct request *r);
/* The device named by slot and every device of its IOMMU group, from sysfs:
 * 1, or 0 after replying an error, < 0 on failure. */
int request_read_device(struct call_ctx *x, const char *slot, struct request *req);
/* Decides every device for peer; ioas NULL: the kernel's default; claimed -1,
 * or the IOAS the caller intends to create. 1, or 0 after replying. */
int request_decide(struct call_ctx *x, const struct coh_peer *peer, const struct coh_fd_info *ioas, int claimed,
                   const char *ioas_parameter, struct request *req);
/* The IOAS from the iommu descriptor: 1, or 0 after replying InvalidFileDescriptor. */
int request_ioas(struct call_ctx *x, int iommu_fd, struct coh_fd_info *ret);
/* The decision as a record (decision-record.h): the reply's fields; the
 * caller adds the grant, the VM's state and the peer. */
struct coh_decision_record request_record(const struct request *req);
/* The reply's "facts" value (Facts in io.coherencyd.Broker.varlink), written into w. */
void request_facts_write(const struct request *req, struct coh_json_writer *w);
/* The reply of Probe and Manager.Explain: the decision and its facts. */
int request_reply(struct call_ctx *x, const struct request *req);
/* The decision record (journal) and event (Monitor). */
void request_log_decision(struct call_ctx *x, const struct request *req, const struct coh_decision_record *rec);

/* The audit record of a Manager call (methods.c): operation (the method's name in its
 * interface), result ("done", or what stopped it), the grant and kill when they apply
 * (NULL, -1 otherwise). */
void method_audit(struct call_ctx *x, const char *operation, const char *result, const char *grant, int kill,
                  const char *message);
