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
#include "grant-record.h"
#include "pidfd.h"
#include "platform.h"

struct coh_fdstore;
struct coh_peer;
struct event;
struct event_base;

/*
 * Whoever grants belong to (a client connection, embedded in it): grants
 * know it only by this. peer and the reference to pidfd are the owner's,
 * borrowed; each grant takes a reference of its own (pidfd.h).
 */
struct coh_grant;
LIST_HEAD(coh_grant_list, coh_grant);

struct coh_grant_owner {
        uint64_t id;                  /* names it in the fd-store record */
        const struct coh_peer *peer;
        struct coh_pidfd *pidfd;      /* NULL when unknown */
        unsigned n_grants;            /* active grants it owns */
        struct coh_grant_list owned;  /* those grants (zeroed: empty): a disconnect ends them without a walk of all */
};

struct coh_vm {
        LIST_ENTRY(coh_vm) link;
        unsigned id;          /* names its descriptor in the fd store */
        int vm_fd;            /* owned */
        uint64_t order;       /* grows with vm_fd's kcmp order: finds it among the VMs without kcmp */
        unsigned n_grants;    /* active grants */
        unsigned n_granted;   /* active grants that are "granted": vmWbinvd is "allowed" while > 0 */
};

struct coh_grant {
        LIST_ENTRY(coh_grant) link;
        struct coh_grants *grants;     /* for its timers' callbacks */
        struct coh_vm *vm;             /* while active */
        struct coh_grant_owner *owner; /* while active and the connection is open */
        LIST_ENTRY(coh_grant) owner_link; /* in owner->owned */
        struct coh_custody custody;    /* pin while active; probe until ended */
        struct coh_pidfd *pidfd;       /* the VMM's, for a revoke with kill: a reference, NULL when unknown */
        /* Everything that is shown, logged and stored (grant-record.h): the
         * VMM as seen when it asked, so that its end can be logged and
         * WatchGrants served when the connection is gone. */
        struct coh_grant_record rec;
        unsigned probe_ms;             /* current polling interval (no probe descriptor) */
        struct event *ev_probe;        /* probe fd readable, or the polling timer */
        struct event *ev_timeout;      /* ReleaseTimeoutSec= */
        bool by_id;                    /* in grants->by_id (false only for a duplicate from a bad store) */
        bool dirty;                    /* in grants->dirty: its record changed since the state was written */
        LIST_ENTRY(coh_grant) dirty_link;
        bool by_group;                 /* in grants->by_group (false for a second grant of its group) */
};

#define COH_GRANT_IDS_POOL 32

LIST_HEAD(coh_vm_list, coh_vm);

/* What grants tell the layer above; calls go down only. */
struct coh_grants_callbacks {
        /* A grant changed: "revoked", "ending", "held" or "ended" (then it is freed right after). */
        void (*event)(const struct coh_grant *g, const char *event, void *userdata);
        /* Grants or VMs were added or removed: the fd-store state and the status are stale. */
        void (*changed)(void *userdata);
        void *userdata;
};

struct coh_grants {
        struct event_base *base;
        struct coh_platform *platform;
        struct coh_fdstore *store;
        uint64_t release_timeout_usec; /* ReleaseTimeoutSec=, set by the owner on start and reload */
        struct coh_grants_callbacks cb;
        struct coh_vm_list vms;
        struct coh_grant_list grants;
        /* Lookups that stay O(log n) at 100,000 grants: VMs sorted by kcmp
         * order (coh_file_order(), in this process: self), grants in
         * tsearch() trees by id and by IOMMU group. */
        pid_t self;
        struct coh_vm_block **vm_blocks; /* grants.c */
        size_t n_vm_blocks, n_vm_blocks_alloc, n_vms;
        unsigned n_vms_held;     /* in vms: every VM, sorted or not (kcmp failed) */
        void *by_id, *by_group;
        unsigned n_group_dups;   /* grants not in by_group: their group is held by another */
        /* What changed since the fd store's state was last written (restore.c
         * appends it there, O(1) per change): grants whose record changed,
         * and the ids of grants gone. Kept only while the store is enabled;
         * lost: a change could not be noted (no memory), write it all. */
        struct coh_grant_list dirty;
        char (*gone)[24];
        size_t n_gone, n_gone_alloc;
        bool changes_lost;
        uint64_t random_ids[COH_GRANT_IDS_POOL]; /* for grant ids, drawn ahead */
        unsigned n_random_ids;
        unsigned n_grants;       /* every grant, active and ending */
        unsigned n_ending;
        unsigned next_vm_id;
};

/* The VM that vm_fd is (kcmp: about log2(n) calls), or NULL. */
struct coh_vm *coh_grants_find_vm(struct coh_grants *g, int vm_fd);
/* Whether id is spelt as a grant id ("g-" and 16 lowercase hex digits), held or not. */
bool coh_grant_id_valid(const char *id);
struct coh_grant *coh_grants_find(struct coh_grants *g, const char *id);
/* The grant, active or ending, that holds IOMMU group `group`, or NULL. */
struct coh_grant *coh_grants_find_group(struct coh_grants *g, int group);

/* "allowed" or "noop"; a NULL VM (not held) is "noop". */
const char *coh_vm_wbinvd(const struct coh_vm *vm);

void coh_grants_init(struct coh_grants *g, struct event_base *base, struct coh_platform *platform,
                     struct coh_fdstore *store, const struct coh_grants_callbacks *cb);

/*
 * Records an active grant of a file handed over: takes ownership of vm_fd
 * and of the custody's descriptors in every case; takes a reference to the
 * owner's pidfd (for RevokeKill=), no copy of it. tmpl gives the
 * decision and the device. On failure nothing is left behind.
 */
int coh_grant_create(struct coh_grants *g, struct coh_grant_owner *owner, int vm_fd, const struct coh_custody *custody,
                     const struct coh_grant_record *tmpl, struct coh_grant **ret);

/*
 * Ends an active grant (closes the pin, and the VM's descriptor with its last
 * grant) and checks at once whether the group is free: then the end record is
 * written and the grant freed, and this returns 1; else it is "ending" and
 * watched, and this returns 0. An ending grant given again (a revoke) only
 * records the revoke and kill. end: "release", "revoke", "disconnect",
 * "peer-exit".
 */
int coh_grant_end(struct coh_grant *g, const char *end, bool kill);

/* Ends every active grant the connection owns. */
void coh_grants_end_owned(struct coh_grants *g, struct coh_grant_owner *owner, const char *end);

/* The grant for replies, events and the fd-store record. manager adds what only operators see. */
json_object *coh_grant_to_json(const struct coh_grant *g, bool manager);

unsigned coh_grants_n_vms(const struct coh_grants *g);

/* Closes the VM's descriptor (it has no grants left). */
void coh_vm_free(struct coh_grants *g, struct coh_vm *vm);
/* Adopts a grant rebuilt from the fd store (its custody descriptors are in it):
 * an active one joins vm (found or made from vm_fd, taken) and owner; an
 * ending one is watched again. */
int coh_grants_adopt(struct coh_grants *g, struct coh_grant *grant, struct coh_vm *vm, struct coh_grant_owner *owner);
/* A VM from the fd store: takes vm_fd. */
struct coh_vm *coh_grants_adopt_vm(struct coh_grants *g, unsigned id, int vm_fd);
struct coh_vm *coh_grants_find_vm_id(struct coh_grants *g, unsigned id);

/* Its record changed: the fd store's state is told on the next save. */
void coh_grant_touch(struct coh_grant *g);
/* The state was written whole, or the changes appended: nothing is pending. */
void coh_grants_changes_clear(struct coh_grants *g);

/* Starts watching an ending grant (after adoption from the fd store). */
void coh_grant_watch(struct coh_grant *g);
/* Frees grants and VMs without touching the kernel: the fd store keeps them. */
void coh_grants_forget(struct coh_grants *g);
/* Stopping without the fd store: every grant ends now with "shutdown", unwatched. */
void coh_grants_shutdown(struct coh_grants *g);
