/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Grants and the VMs they belong to (DESIGN.md §3). A grant is one VFIO file
 * handed to one VMM connection for one VM. While it is active the daemon
 * keeps its pin (so the VMM cannot move the group out of its IOAS) and the
 * VM's descriptor (to tell VMs apart with kcmp, never to act on it). When it
 * ends (release, revoke, disconnect, peer-exit) the pin is closed, the VM
 * descriptor with the VM's last grant, and the grant is "ending" until the
 * kernel shows the group free: then the end record is written and the grant
 * is gone. A group that stays held past ReleaseTimeoutSec= gets one warning
 * record naming its holders, and, for a revoke with kill, SIGKILL to the VMM
 * through its pidfd.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "decision.h"
#include "facts.h"
#include "platform.h"

struct coh_conn;
struct coh_daemon;
struct event;

struct coh_vm {
        LIST_ENTRY(coh_vm) link;
        unsigned id;          /* names its descriptor in the fd store */
        int vm_fd;            /* owned */
        unsigned n_grants;    /* active grants */
        unsigned n_granted;   /* active grants that are "granted": vmWbinvd is "allowed" while > 0 */
};

enum coh_grant_state {
        COH_GRANT_ACTIVE,
        COH_GRANT_ENDING,
        COH_GRANT_ENDED,  /* only in the "ended" event: the grant is freed right after */
        _COH_GRANT_STATE_MAX,
};

struct coh_grant {
        LIST_ENTRY(coh_grant) link;
        struct coh_daemon *daemon; /* for its timers' callbacks */
        char id[24];
        enum coh_grant_state state;
        struct coh_vm *vm;        /* while active */
        struct coh_conn *owner;   /* while active and the connection is open */
        struct coh_custody custody; /* pin while active; probe until ended */
        int pidfd;                /* the VMM's, for a revoke with kill; owned, -EBADF when unknown */
        /* The VMM as seen when it asked, kept with the grant so that its end
         * can be logged, and WatchGrants served, when the connection is gone. */
        pid_t peer_pid;
        uid_t peer_uid;
        char peer_unit[256];
        enum coh_decision decision;
        enum coh_reason reason;
        enum coh_mode mode;
        enum coh_kvm_attach kvm_attach;
        bool wbinvd;
        char rule[512];
        char slot[COH_SLOT_MAX];
        char file[48];            /* "vfio-group:N" or "vfio-device:SLOT" */
        int iommu_group;
        uint64_t since_usec;      /* CLOCK_REALTIME, handed over */
        bool pending;             /* recorded, the reply with the file not yet queued */
        /* Ending */
        char end[16];             /* "release", "revoke", "disconnect", "peer-exit", "interrupted", "" while active */
        uint64_t ending_usec;     /* CLOCK_REALTIME, when it ended */
        bool kill;                /* revoked with kill: SIGKILL the VMM once the timeout passes */
        bool killed;
        bool warned;              /* the still-held warning was written */
        unsigned probe_ms;        /* current polling interval (no probe descriptor) */
        struct event *ev_probe;   /* probe fd readable, or the polling timer */
        struct event *ev_timeout; /* ReleaseTimeoutSec= */
};

LIST_HEAD(coh_vm_list, coh_vm);
LIST_HEAD(coh_grant_list, coh_grant);

struct coh_grants {
        struct coh_vm_list vms;
        struct coh_grant_list grants;
        unsigned n_grants;       /* every grant, active and ending */
        unsigned n_ending;
        unsigned next_vm_id;
};

const char *coh_grant_state_to_string(enum coh_grant_state s);

/* The VM that vm_fd is (kcmp), or NULL. */
struct coh_vm *coh_grants_find_vm(struct coh_grants *g, int vm_fd);
struct coh_grant *coh_grants_find(struct coh_grants *g, const char *id);
/* The grant, active or ending, that holds IOMMU group `group`, or NULL. */
struct coh_grant *coh_grants_find_group(struct coh_grants *g, int group);

/* "allowed" or "noop"; a NULL VM (not held) is "noop". */
const char *coh_vm_wbinvd(const struct coh_vm *vm);

/*
 * Records an active grant of a file handed over: takes ownership of vm_fd,
 * of the custody's descriptors and of pidfd in every case. tmpl gives the
 * decision and the device. On failure nothing is left behind.
 */
int coh_grant_create(struct coh_daemon *d, struct coh_conn *owner, int vm_fd, const struct coh_custody *custody,
                     int pidfd, const struct coh_grant *tmpl, struct coh_grant **ret);

/*
 * Ends an active grant (closes the pin, and the VM's descriptor with its last
 * grant) and checks at once whether the group is free: then the end record is
 * written and the grant freed, and this returns 1; else it is "ending" and
 * watched, and this returns 0. An ending grant given again (a revoke) only
 * records the revoke and kill. end: "release", "revoke", "disconnect",
 * "peer-exit".
 */
int coh_grant_end(struct coh_daemon *d, struct coh_grant *g, const char *end, bool kill);

/* Ends every active grant the connection owns. */
void coh_grants_end_owned(struct coh_daemon *d, struct coh_conn *c, const char *end);

/* The grant for replies, events and the fd-store record. manager adds what only operators see. */
json_object *coh_grant_to_json(struct coh_daemon *d, const struct coh_grant *g, bool manager);

unsigned coh_grants_n_vms(const struct coh_grants *g);

/* Closes the VM's descriptor (it has no grants left). */
void coh_vm_free(struct coh_daemon *d, struct coh_vm *vm);
/* Starts watching an ending grant (after adoption from the fd store). */
void coh_grant_watch(struct coh_daemon *d, struct coh_grant *g);
/* Frees grants and VMs without touching the kernel: the fd store keeps them. */
void coh_grants_forget(struct coh_daemon *d);
/* Stopping without the fd store: every grant ends now with "shutdown", unwatched. */
void coh_grants_shutdown(struct coh_daemon *d);
