/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libcoherency: the VMM's side of coherencyd, the custodian of VFIO groups.
 *
 * An unprivileged VMM cannot open /dev/vfio/N. It asks coherencyd instead:
 * coherency_request_grant() names the VM (its KVM VM descriptor), the device
 * (a PCI address, "0000:01:00.0") and the VMM's VFIO container (or iommufd).
 * coherencyd decides from the site policy and, for "granted" and
 * "not-needed", opens the device's VFIO group, attaches it to the container,
 * pins it and hands the group descriptor over in the reply. The VMM then adds
 * it to its VM's kvm-vfio device, or not, as the grant's kvmAttach says;
 * coherency_kvm_vfio_attach() does exactly that (and is the simulated KVM on
 * coherencyd's simulated platform). See libcoherency(3).
 *
 * Conventions (libsystemd's):
 *   - Objects are opaque and reached through accessors. Strings returned by
 *     accessors belong to the object and stay valid until it is freed; an
 *     optional value the daemon did not send reads as NULL.
 *   - Functions return 0 (or a non-negative count or flag) on success and a
 *     negative errno on failure. On failure no output is written and no
 *     ownership changes hands.
 *   - _free() functions accept NULL, always return NULL, and close every
 *     descriptor the object still owns. <type>_freep() helpers suit
 *     __attribute__((cleanup)).
 *   - No threads, no signals, no global state. One object must not be used
 *     by two threads at a time; different objects may.
 *
 * One call at a time per connection: a second call while one is outstanding
 * fails with -EALREADY. Every call has a blocking form and an event-loop form
 * (<call>_send(), then <call>_finish() each time coherency_client_get_fd()
 * polls readable: -EAGAIN until the whole reply is in). Both obey the
 * client's timeout (coherency_client_set_timeout()).
 *
 * One errno per meaning. Errors the daemon sends:
 *   io.coherencyd.Broker.NoSuchDevice            -ENODEV
 *   io.coherencyd.Broker.DeviceBusy              -EBUSY
 *   io.coherencyd.Broker.NoSuchGrant             -ENOENT
 *   io.coherencyd.Broker.PermissionDenied        -EPERM   (also org.varlink.service.PermissionDenied)
 *   io.coherencyd.Broker.LimitExceeded           -EUSERS
 *   io.coherencyd.Broker.CoherencyUnsupported    -EOPNOTSUPP
 *   io.coherencyd.Broker.InvalidFileDescriptor   -EBADF
 *   io.coherencyd.Broker.BackendError            -EIO     (the kernel's errno and the operation:
 *                                                          coherency_client_get_backend_errno(),
 *                                                          coherency_client_get_backend_operation())
 *   io.coherencyd.Manager.KillNotEnabled         -ECANCELED
 *   io.coherencyd.Manager.InvalidPolicy          -EBADMSG
 *   org.varlink.service.InvalidParameter         -EINVAL
 *   org.varlink.service.MethodNotFound,
 *     MethodNotImplemented, InterfaceNotFound    -ENOSYS
 *   any other error name                         -EREMOTEIO
 * Failures of the connection itself:
 *   the daemon closed the connection             -ECONNRESET
 *   no (complete) reply within the timeout       -ETIMEDOUT
 *   the daemon's reply breaks the protocol       -EPROTO
 *   a call on a connection that failed earlier   -ENOTCONN
 *   a call while another is outstanding          -EALREADY
 * Once a connection failed (the first four above) it is shut down, which
 * ends the grants held on it, and every later call fails with -ENOTCONN.
 * coherency_client_get_error() says what happened, in one line.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COHERENCY_DEFAULT_SOCKET "/run/coherencyd/io.coherencyd"

/* Timeouts are relative, in microseconds. */
#define COHERENCY_TIMEOUT_DEFAULT_USEC (45ULL * 1000000ULL)
#define COHERENCY_TIMEOUT_INFINITY UINT64_MAX

typedef struct coherency_client coherency_client;           /* one connection */
typedef struct coherency_info coherency_info;               /* GetInfo */
typedef struct coherency_decision coherency_decision;       /* Probe */
typedef struct coherency_grant coherency_grant;             /* RequestGrant, owns the group descriptor */
typedef struct coherency_facts coherency_facts;             /* facts of a decision, part of its object */
typedef struct coherency_device coherency_device;           /* one device's facts, part of its facts */
typedef struct coherency_grant_list coherency_grant_list;   /* ListGrants, WatchGrants */
typedef struct coherency_grant_info coherency_grant_info;   /* one entry of a grant list */
typedef struct coherency_kvm_vfio coherency_kvm_vfio;       /* a VM's kvm-vfio device */
typedef struct coherency_watch coherency_watch;             /* WatchGrants on a connection of its own */
typedef struct coherency_watch_event coherency_watch_event;

typedef enum coherency_decision_kind {
        COHERENCY_DECISION_NOT_NEEDED,  /* "not-needed": file handed over, WBINVD not needed */
        COHERENCY_DECISION_GRANTED,     /* "granted": file handed over, turns WBINVD on once added */
        COHERENCY_DECISION_REFUSED,     /* "refused": nothing handed over */
} coherency_decision_kind;

typedef enum coherency_kvm_attach {
        COHERENCY_KVM_ATTACH_NONE,      /* no file (refused) */
        COHERENCY_KVM_ATTACH_ADD,       /* "add": add the file to the VM's kvm-vfio device */
        COHERENCY_KVM_ATTACH_SKIP,      /* "skip": do not add it (it would turn WBINVD on needlessly) */
} coherency_kvm_attach;

typedef enum coherency_grant_state {
        COHERENCY_GRANT_ACTIVE,         /* "active": handed over and pinned */
        COHERENCY_GRANT_ENDING,         /* "ending": ended, the group still held by someone */
        COHERENCY_GRANT_ENDED,          /* "ended": the group is free again */
        COHERENCY_GRANT_STATE_OTHER,    /* a word this library does not know */
} coherency_grant_state;

typedef enum coherency_watch_event_kind {
        COHERENCY_WATCH_GRANTS,         /* "grants": the first reply, every grant of this process */
        COHERENCY_WATCH_REVOKED,        /* "revoked": an operator revoked it: detach and close now */
        COHERENCY_WATCH_ENDING,         /* "ending": it ended, the group is still held */
        COHERENCY_WATCH_HELD,           /* "held": still held after ReleaseTimeoutSec= */
        COHERENCY_WATCH_ENDED,          /* "ended": the group is free */
        COHERENCY_WATCH_OTHER,          /* a word this library does not know */
} coherency_watch_event_kind;

const char *coherency_decision_kind_to_string(coherency_decision_kind k);   /* NULL when out of range */
const char *coherency_kvm_attach_to_string(coherency_kvm_attach a);         /* NONE: NULL */
const char *coherency_grant_state_to_string(coherency_grant_state s);       /* OTHER: NULL */
const char *coherency_watch_event_kind_to_string(coherency_watch_event_kind k); /* OTHER: NULL */

/* ---- connections --------------------------------------------------------- */

/* path NULL: $COHERENCYD_SOCKET, else COHERENCY_DEFAULT_SOCKET; "@name" is
 * the abstract namespace. Errors: -EINVAL, -ENAMETOOLONG, -ENOMEM, connect(2)'s. */
int coherency_connect(const char *path, coherency_client **ret);
/* Closes the connection: the daemon ends every grant held on it. */
coherency_client *coherency_client_free(coherency_client *c);
/* The socket (owned by c), for poll/epoll: POLLIN when a reply is in. */
int coherency_client_get_fd(const coherency_client *c);

/* The timeout of every call made from now on: usec 0 restores
 * COHERENCY_TIMEOUT_DEFAULT_USEC, COHERENCY_TIMEOUT_INFINITY waits forever.
 * It bounds the wait for a reply, and for the first reply of a call with
 * "more" (later replies of a stream come when something happens). */
int coherency_client_set_timeout(coherency_client *c, uint64_t usec);
uint64_t coherency_client_get_timeout(const coherency_client *c);
/* When the outstanding call times out, on CLOCK_MONOTONIC in usec, for an
 * event loop's timer: UINT64_MAX when nothing is outstanding or no deadline
 * applies. Its _finish() fails with -ETIMEDOUT once it has passed. */
uint64_t coherency_client_get_deadline(const coherency_client *c);

/* The last failure, in one line, e.g. "io.coherencyd.Broker.DeviceBusy:
 * device: 0000:00:04.0"; "" when none. Valid until the next call on c. */
const char *coherency_client_get_error(const coherency_client *c);
/* The daemon's error name ("io.coherencyd.Broker.NoSuchGrant"); "" when the failure was local. */
const char *coherency_client_get_error_name(const coherency_client *c);
/* The daemon's error parameters as a JSON object; NULL when the failure was local. */
const char *coherency_client_get_error_parameters(const coherency_client *c);
/* After -EIO (BackendError): the kernel's errno (positive) and the
 * operation that failed ("open /dev/vfio/7"); 0 and NULL otherwise. */
int coherency_client_get_backend_errno(const coherency_client *c);
const char *coherency_client_get_backend_operation(const coherency_client *c);

/* ---- GetInfo --------------------------------------------------------------- */

int coherency_get_info(coherency_client *c, coherency_info **ret);
int coherency_get_info_send(coherency_client *c);
int coherency_get_info_finish(coherency_client *c, coherency_info **ret);

coherency_info *coherency_info_free(coherency_info *i);
const char *coherency_info_get_version(const coherency_info *i);
const char *coherency_info_get_backend(const coherency_info *i);       /* "linux", "sim" */
const char *coherency_info_get_mode(const coherency_info *i);          /* what applies to this caller */
const char *coherency_info_get_mode_rule(const coherency_info *i);     /* "file:line" or "default" */
const char *coherency_info_get_access(const coherency_info *i);        /* "allow", "deny" */
const char *coherency_info_get_access_rule(const coherency_info *i);
size_t coherency_info_get_n_iommus(const coherency_info *i);
const char *coherency_info_get_iommu_name(const coherency_info *i, size_t index);  /* NULL past the end */
const char *coherency_info_get_iommu_type(const coherency_info *i, size_t index);
int coherency_info_get_iommu_enforces(const coherency_info *i, size_t index);      /* 1, 0, -ERANGE */
/* The limits that apply to this caller; -1 when the daemon did not say. */
int64_t coherency_info_get_max_grants_per_connection(const coherency_info *i);
int64_t coherency_info_get_max_connections_per_user(const coherency_info *i);
int64_t coherency_info_get_max_connections(const coherency_info *i);

/* ---- facts (what a decision used) -------------------------------------------- */

/* The VFIO file that carries the device: "vfio-group:N" or "vfio-device:SLOT". */
const char *coherency_facts_get_file(const coherency_facts *f);
/* The deciding device (with the rules behind its policy values). */
const coherency_device *coherency_facts_get_device(const coherency_facts *f);
/* Each device of the IOMMU group (a VFIO group carries all of them). */
size_t coherency_facts_get_n_devices(const coherency_facts *f);
const coherency_device *coherency_facts_get_device_by_index(const coherency_facts *f, size_t index); /* NULL past the end */

const char *coherency_device_get_slot(const coherency_device *d);       /* "0000:00:04.0" */
const char *coherency_device_get_vendor(const coherency_device *d);     /* "0x1002" as sysfs says */
const char *coherency_device_get_device(const coherency_device *d);
const char *coherency_device_get_class(const coherency_device *d);
const char *coherency_device_get_driver(const coherency_device *d);
const char *coherency_device_get_iommu(const coherency_device *d);
int coherency_device_get_iommu_group(const coherency_device *d);        /* -1 when none */
const char *coherency_device_get_access(const coherency_device *d);     /* "allow", "deny" */
const char *coherency_device_get_access_rule(const coherency_device *d);
const char *coherency_device_get_no_snoop(const coherency_device *d);   /* "capable", "hardwired-off" */
const char *coherency_device_get_no_snoop_rule(const coherency_device *d);
const char *coherency_device_get_mode(const coherency_device *d);       /* "enable", "automatic", "force-disable" */
const char *coherency_device_get_mode_rule(const coherency_device *d);
bool coherency_device_get_iommu_enforces(const coherency_device *d);
bool coherency_device_get_ioas_coherent(const coherency_device *d);
const char *coherency_device_get_decision(const coherency_device *d);   /* this device's own decision */
const char *coherency_device_get_reason(const coherency_device *d);

/* ---- Probe: what RequestGrant would decide, no side effects ------------------ */

/* device: a PCI address. iommu_fd: the container or iommufd the file would
 * be attached to, -1 for none (borrowed: sent, not closed). ioas_coherent:
 * -1 for the kernel's default, 0 or 1 for an IOAS the caller intends to create. */
int coherency_probe(coherency_client *c, const char *device, int iommu_fd, int ioas_coherent,
                    coherency_decision **ret);
int coherency_probe_send(coherency_client *c, const char *device, int iommu_fd, int ioas_coherent);
int coherency_probe_finish(coherency_client *c, coherency_decision **ret);

coherency_decision *coherency_decision_free(coherency_decision *d);
coherency_decision_kind coherency_decision_get_decision(const coherency_decision *d);
const char *coherency_decision_get_reason(const coherency_decision *d);    /* "policy-enable", ... */
const char *coherency_decision_get_rule(const coherency_decision *d);      /* "file:line" or "default" */
const char *coherency_decision_get_mode(const coherency_decision *d);
const char *coherency_decision_get_wbinvd(const coherency_decision *d);    /* "allowed", "none" */
coherency_kvm_attach coherency_decision_get_kvm_attach(const coherency_decision *d);
const coherency_facts *coherency_decision_get_facts(const coherency_decision *d);

/* ---- RequestGrant: decide and act -------------------------------------------- */

/* vm_fd: the VM (KVM VM descriptor); iommu_fd: the VMM's VFIO container or
 * iommufd. Both borrowed: sent, not closed. A refusal is a decision: 0, and
 * a grant whose decision is COHERENCY_DECISION_REFUSED. For granted and
 * not-needed the group descriptor arrives with the reply (close-on-exec) and
 * belongs to the grant object until taken. */
int coherency_request_grant(coherency_client *c, int vm_fd, const char *device, int iommu_fd,
                            coherency_grant **ret);
int coherency_request_grant_send(coherency_client *c, int vm_fd, const char *device, int iommu_fd);
int coherency_request_grant_finish(coherency_client *c, coherency_grant **ret);

/* Closes the group descriptor unless it was taken. The grant itself stays
 * with the daemon until released (or the connection closes). */
coherency_grant *coherency_grant_free(coherency_grant *g);
const char *coherency_grant_get_id(const coherency_grant *g);              /* NULL when refused */
const char *coherency_grant_get_device(const coherency_grant *g);          /* the PCI address asked for */
coherency_decision_kind coherency_grant_get_decision(const coherency_grant *g);
const char *coherency_grant_get_reason(const coherency_grant *g);
const char *coherency_grant_get_rule(const coherency_grant *g);
const char *coherency_grant_get_mode(const coherency_grant *g);
const char *coherency_grant_get_wbinvd(const coherency_grant *g);          /* "allowed", "none" */
const char *coherency_grant_get_vm_wbinvd(const coherency_grant *g);       /* "allowed", "noop" */
coherency_kvm_attach coherency_grant_get_kvm_attach(const coherency_grant *g);
const coherency_facts *coherency_grant_get_facts(const coherency_grant *g);
/* The group descriptor, still owned by g: -ENODATA when there is none
 * (refused) or it was taken. */
int coherency_grant_get_group_fd(const coherency_grant *g);
/* The same, and the caller owns it from now on (close it when done). */
int coherency_grant_take_group_fd(coherency_grant *g);

/* ---- ReleaseGrant ---------------------------------------------------------- */

/* grant: an id (coherency_grant_get_id(), or from a list or watch event).
 * Detach the file and close every copy first: the reply then says
 * COHERENCY_GRANT_ENDED and the device can be asked for again at once.
 * *ret_state: ENDED or ENDING; *ret_vm_wbinvd_allowed: whether the VM keeps
 * WBINVD through another granted file. Both may be NULL. */
int coherency_release_grant(coherency_client *c, const char *grant, coherency_grant_state *ret_state,
                            bool *ret_vm_wbinvd_allowed);
int coherency_release_grant_send(coherency_client *c, const char *grant);
int coherency_release_grant_finish(coherency_client *c, coherency_grant_state *ret_state,
                                   bool *ret_vm_wbinvd_allowed);

/* ---- ListGrants: this connection's grants ------------------------------------ */

/* Returns the number of grants. */
int coherency_list_grants(coherency_client *c, coherency_grant_list **ret);
int coherency_list_grants_send(coherency_client *c);
int coherency_list_grants_finish(coherency_client *c, coherency_grant_list **ret);

coherency_grant_list *coherency_grant_list_free(coherency_grant_list *l);
size_t coherency_grant_list_get_count(const coherency_grant_list *l);
const coherency_grant_info *coherency_grant_list_get(const coherency_grant_list *l, size_t index); /* NULL past the end */

const char *coherency_grant_info_get_id(const coherency_grant_info *g);
const char *coherency_grant_info_get_device(const coherency_grant_info *g);
int coherency_grant_info_get_iommu_group(const coherency_grant_info *g);   /* -1 when unknown */
const char *coherency_grant_info_get_file(const coherency_grant_info *g);
coherency_decision_kind coherency_grant_info_get_decision(const coherency_grant_info *g);
const char *coherency_grant_info_get_reason(const coherency_grant_info *g);
const char *coherency_grant_info_get_rule(const coherency_grant_info *g);
const char *coherency_grant_info_get_wbinvd(const coherency_grant_info *g);
const char *coherency_grant_info_get_vm_wbinvd(const coherency_grant_info *g);
coherency_kvm_attach coherency_grant_info_get_kvm_attach(const coherency_grant_info *g);
coherency_grant_state coherency_grant_info_get_state(const coherency_grant_info *g);
const char *coherency_grant_info_get_state_string(const coherency_grant_info *g);
const char *coherency_grant_info_get_end(const coherency_grant_info *g);   /* NULL while active */
pid_t coherency_grant_info_get_peer_pid(const coherency_grant_info *g);
uid_t coherency_grant_info_get_peer_uid(const coherency_grant_info *g);
uint64_t coherency_grant_info_get_since(const coherency_grant_info *g);   /* CLOCK_REALTIME usec */

/* ---- the VM's kvm-vfio device (attach and detach) ---------------------------- */

/*
 * kvm_vfio_fd -1: create the VM's kvm-vfio device (KVM_CREATE_DEVICE,
 * KVM_DEV_TYPE_VFIO) on vm_fd. Otherwise kvm_vfio_fd is a kvm-vfio device the
 * VMM already has, and the object owns it from a successful call on (pass a
 * dup() to keep one). vm_fd is borrowed for the call only.
 *
 * On coherencyd's simulated platform (vm_fd a memfd named
 * "coherencyd-sim:kvm-vm") this is the simulated KVM: the VM memfd records
 * "kvm-vfio=vmm", one "attached=FILE coherent|noncoherent" line per added
 * file and "noncoherent-dma=N".
 */
int coherency_kvm_vfio_new(int vm_fd, int kvm_vfio_fd, coherency_kvm_vfio **ret);
/* Deletes every file still added (KVM_DEV_VFIO_FILE_DEL) and closes the
 * device, as Linux >= 6.2 does when the device is closed. */
coherency_kvm_vfio *coherency_kvm_vfio_free(coherency_kvm_vfio *k);
/* The kvm-vfio device descriptor (owned by k). */
int coherency_kvm_vfio_get_fd(const coherency_kvm_vfio *k);
/* Whether k is the simulated KVM. */
bool coherency_kvm_vfio_is_simulated(const coherency_kvm_vfio *k);

/*
 * Follows the grant's kvmAttach: "add" adds its group descriptor
 * (KVM_SET_DEVICE_ATTR KVM_DEV_VFIO_FILE / KVM_DEV_VFIO_FILE_ADD) and
 * returns 1; "skip" adds nothing and returns 0. k keeps its own duplicate of
 * the file while it is added (the kernel holds a reference too), so call it
 * before taking the descriptor out of the grant; the grant may be freed after.
 * Errors: -ENODATA (the grant has no descriptor: refused, or taken),
 * -EEXIST (that file is already added), the kernel's errno.
 */
int coherency_kvm_vfio_attach(coherency_kvm_vfio *k, const coherency_grant *g);
/* Undoes coherency_kvm_vfio_attach() (KVM_DEV_VFIO_FILE_DEL) for the file
 * the grant names and closes k's duplicate: 1 deleted, 0 for a grant whose
 * file is not to be added ("skip", or refused: nothing to undo), -ENOENT
 * when that file is not added, the kernel's errno. */
int coherency_kvm_vfio_detach(coherency_kvm_vfio *k, const coherency_grant *g);
/* The same by file name ("vfio-group:7", as in the facts and grant lists),
 * for a VMM that kept the name rather than the grant (e.g. on a revoke). */
int coherency_kvm_vfio_detach_file(coherency_kvm_vfio *k, const char *file);

/* ---- WatchGrants: revokes and ends, for the VMM's event loop ----------------- */

/* Opens a connection of its own (path as coherency_connect()) and calls
 * io.coherencyd.Broker.WatchGrants with "more". Does not wait for the reply. */
int coherency_watch_new(const char *path, coherency_watch **ret);
coherency_watch *coherency_watch_free(coherency_watch *w);
/* Poll this for POLLIN, then call coherency_watch_process(). */
int coherency_watch_get_fd(const coherency_watch *w);
/* Timeout for the first reply (as coherency_client_set_timeout()). */
int coherency_watch_set_timeout(coherency_watch *w, uint64_t usec);
/* Never blocks. 1 and *ret (caller frees) for the next event, 0 when none
 * is complete yet (poll again), negative on failure (-ECONNRESET when the
 * daemon closed the stream; the watch is then dead). The first reply is one
 * COHERENCY_WATCH_GRANTS event (with every grant of this process, maybe
 * none); each change after it is one event per grant it names. */
int coherency_watch_process(coherency_watch *w, coherency_watch_event **ret);
/* Blocks until the fd is readable or usec passed (COHERENCY_TIMEOUT_INFINITY:
 * forever): 1 readable, 0 timed out, negative errno. */
int coherency_watch_wait(coherency_watch *w, uint64_t usec);
const char *coherency_watch_get_error(const coherency_watch *w);

coherency_watch_event *coherency_watch_event_free(coherency_watch_event *e);
coherency_watch_event_kind coherency_watch_event_get_kind(const coherency_watch_event *e);
const char *coherency_watch_event_get_kind_string(const coherency_watch_event *e); /* the daemon's word */
/* The grant the event is about: NULL for COHERENCY_WATCH_GRANTS. */
const char *coherency_watch_event_get_grant(const coherency_watch_event *e);
/* That grant's record (NULL for COHERENCY_WATCH_GRANTS), and the reply's
 * whole list (every grant, for COHERENCY_WATCH_GRANTS). */
const coherency_grant_info *coherency_watch_event_get_grant_info(const coherency_watch_event *e);
const coherency_grant_list *coherency_watch_event_get_grants(const coherency_watch_event *e);

/* ---- raw calls, for tools ------------------------------------------------------- */

/*
 * Any method, without descriptors: parameters_json may be NULL; *ret_json
 * (may be NULL) receives the reply's parameters object as JSON (free()).
 * coherency_call() returns 0 with the first reply. With more, read further
 * replies with coherency_call_next(): 1 with a reply, 0 (and *ret_json NULL)
 * once the stream ended.
 */
int coherency_call(coherency_client *c, const char *method, const char *parameters_json, bool more,
                   char **ret_json);
int coherency_call_next(coherency_client *c, char **ret_json);
/* Event-loop form: _finish returns -EAGAIN until a reply is in, then 1 with
 * *ret_json when more replies follow (call _finish again), 0 with the last. */
int coherency_call_send(coherency_client *c, const char *method, const char *parameters_json, bool more);
int coherency_call_finish(coherency_client *c, char **ret_json);

/* ---- cleanup helpers -------------------------------------------------------- */

#define _COHERENCY_DEFINE_FREEP(type)                                   \
        static inline void type##_freep(type **p) {                     \
                if (*p)                                                 \
                        *p = type##_free(*p);                           \
        }
_COHERENCY_DEFINE_FREEP(coherency_client)
_COHERENCY_DEFINE_FREEP(coherency_info)
_COHERENCY_DEFINE_FREEP(coherency_decision)
_COHERENCY_DEFINE_FREEP(coherency_grant)
_COHERENCY_DEFINE_FREEP(coherency_grant_list)
_COHERENCY_DEFINE_FREEP(coherency_kvm_vfio)
_COHERENCY_DEFINE_FREEP(coherency_watch)
_COHERENCY_DEFINE_FREEP(coherency_watch_event)
#undef _COHERENCY_DEFINE_FREEP

#ifdef __cplusplus
}
#endif
