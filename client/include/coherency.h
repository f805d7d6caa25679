/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libcoherency: ask coherencyd for WBINVD grants for a VM's VFIO files.
 *
 * A VMM connects once, then for each VFIO group or device it owns asks
 * coherencyd (with Probe before it creates an IOAS, with RequestGrant once it
 * has the VM). coherencyd attaches the file to the VM's kvm-vfio device itself,
 * so the VMM must not create a kvm-vfio device of its own.
 *
 * Every function returns 0 (or a count) on success and a negative errno on
 * failure; coherency_client_error() then says what the daemon said. Calls
 * block on the socket unless the _send/_finish pairs are used from an event
 * loop, polling coherency_client_fd() for POLLIN. No threads, no signals, no
 * global state: one client per thread.
 *
 * Errors from the daemon map to errno values:
 *   InvalidFileDescriptor -EBADF, NoSuchGrant -ENOENT, PermissionDenied -EPERM,
 *   LimitExceeded -EUSERS, VmHasKvmVfioDevice -EBUSY,
 *   CoherencyUnsupported -EOPNOTSUPP, BackendError -(its errno),
 *   InvalidParameter -EINVAL, MethodNotFound -ENOSYS, InvalidPolicy -EBADMSG,
 *   anything else -EPROTO; a closed connection is -ECONNRESET.
 *   (org.varlink.service's MethodNotImplemented is -ENOSYS and its
 *   PermissionDenied -EPERM, like their twins above.)
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COHERENCY_DEFAULT_SOCKET "/run/coherencyd/io.coherencyd"

struct coherency_client;

enum coherency_verdict {
        COHERENCY_NOT_NEEDED,
        COHERENCY_GRANTED,
        COHERENCY_REFUSED,
};

struct coherency_device_facts {
        char slot[32];
        char vendor[8];
        char device[8];
        char class_[10];
        char driver[64];
        char iommu[64];
        int iommu_group;          /* -1 when none */
        char no_snoop[16];        /* "capable" or "hardwired-off" */
        char no_snoop_rule[512];  /* "file:line" or "default" */
        char mode[16];            /* "enable", "automatic", "force-disable" */
        char mode_rule[512];
        bool iommu_enforces;
        bool ioas_coherent;
};

struct coherency_decision {
        char grant[64];           /* "" when the daemon holds nothing */
        enum coherency_verdict verdict;
        char decision[16];        /* "not-needed", "granted", "refused" */
        char reason[32];          /* "policy-enable", ... */
        char rule[512];           /* "file:line" or "default" */
        char mode[16];
        char vm_wbinvd[16];       /* "emulated" or "noop"; "" for Probe */
        bool attached;            /* the file was added to the VM's kvm-vfio device */
        struct coherency_device_facts facts;     /* the deciding device */
        struct coherency_device_facts *devices;  /* every device of the group */
        size_t n_devices;
};

struct coherency_grant {
        char grant[64];
        char slot[32];
        char decision[16];
        char reason[32];
        char vm_wbinvd[16];
        int64_t peer_pid;
        int64_t peer_uid;
        uint64_t since_usec;      /* CLOCK_REALTIME */
};

struct coherency_info {
        char version[32];
        char backend[32];         /* "linux", "sim" */
        char mode[16];            /* the mode that applies to this caller */
        char mode_rule[512];
        unsigned max_grants_per_connection;
};

/* path NULL: $COHERENCYD_SOCKET, else COHERENCY_DEFAULT_SOCKET. */
int coherency_connect(const char *path, struct coherency_client **ret);
void coherency_client_free(struct coherency_client *c);
/* The socket, for poll/epoll/libevent: readable when a reply is in. */
int coherency_client_fd(const struct coherency_client *c);
/* What went wrong in the last failed call, e.g.
 * "io.coherencyd.Broker.InvalidFileDescriptor: device: expected a VFIO group or device, got a pipe". */
const char *coherency_client_error(const struct coherency_client *c);
/* The daemon's error name ("io.coherencyd.Broker.NoSuchGrant"), "" when the failure was local. */
const char *coherency_client_error_name(const struct coherency_client *c);

int coherency_get_info(struct coherency_client *c, struct coherency_info *ret);

/* What a request would get, no side effects. iommu_fd -1 when none;
 * ioas_coherent -1 for the kernel's default, 0 or 1 for an IOAS the caller
 * intends to create. */
int coherency_probe(struct coherency_client *c, int device_fd, int iommu_fd, int ioas_coherent,
                    struct coherency_decision *ret);

/* Decide and act. A refusal is a decision (returns 0, verdict REFUSED). */
int coherency_request_grant(struct coherency_client *c, int vm_fd, int device_fd, int iommu_fd,
                            struct coherency_decision *ret);

/* Event-loop form of coherency_request_grant: _send queues the call; call
 * _finish when the socket is readable: -EAGAIN until the whole reply is in. */
int coherency_request_grant_send(struct coherency_client *c, int vm_fd, int device_fd, int iommu_fd);
int coherency_request_grant_finish(struct coherency_client *c, struct coherency_decision *ret);

int coherency_release_grant(struct coherency_client *c, const char *grant);
/* The same, and the VM's WBINVD state after it ("emulated" while another
 * granted file of the VM stays attached, else "noop"); ret_vm_wbinvd may be NULL. */
int coherency_release_grant_vm_wbinvd(struct coherency_client *c, const char *grant, char ret_vm_wbinvd[16]);

/* This connection's grants; free *ret with free(). Returns the count. */
int coherency_list_grants(struct coherency_client *c, struct coherency_grant **ret);

/* Frees what a decision points to (devices); the struct can be reused. */
void coherency_decision_clear(struct coherency_decision *d);

/*
 * Raw calls, for tools (coherencyctl) and methods without a typed wrapper:
 * parameters_json may be NULL; *ret_json receives the reply's parameters
 * object as JSON (free()). With more, read further replies with
 * coherency_call_next(): returns 1 with a reply, 0 when the stream ended.
 */
int coherency_call(struct coherency_client *c, const char *method, const char *parameters_json, bool more,
                   char **ret_json);
int coherency_call_next(struct coherency_client *c, char **ret_json);

#ifdef __cplusplus
}
#endif
