/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Grants and the VMs they belong to. A grant is one file attached to one VM's
 * kvm-vfio device, owned by the connection that asked for it. A VM object
 * exists only while it has grants: it holds the VM descriptor and the
 * kvm-vfio device the daemon created, and both are closed with its last grant
 * so that the daemon never keeps a dead VMM's VM alive.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "decision.h"
#include "facts.h"

struct coh_conn;
struct coh_daemon;

struct coh_vm {
        LIST_ENTRY(coh_vm) link;
        unsigned id;        /* names its descriptors in the fd store */
        int vm_fd;          /* owned */
        int device_fd;      /* the kvm-vfio device, owned */
        unsigned n_grants;
        unsigned n_emulating; /* granted files attached: WBINVD is emulated while > 0 */
};

struct coh_grant {
        LIST_ENTRY(coh_grant) link;
        char id[24];
        struct coh_vm *vm;
        struct coh_conn *owner; /* NULL only while ending a grant whose owner vanished during a restart */
        int file_fd;        /* owned: needed again for KVM_DEV_VFIO_FILE_DEL */
        /* The VMM as seen when it asked, kept with the grant so that its end
         * can be logged even when the connection is gone. */
        pid_t peer_pid;
        uid_t peer_uid;
        char peer_unit[256];
        enum coh_decision decision;
        enum coh_reason reason;
        enum coh_mode mode;
        char rule[512];
        char slot[COH_SLOT_MAX];
        int iommu_group;
        uint64_t since_usec;
        bool pending;       /* recorded, KVM_DEV_VFIO_FILE_ADD not yet answered */
};

LIST_HEAD(coh_vm_list, coh_vm);
LIST_HEAD(coh_grant_list, coh_grant);

struct coh_grants {
        struct coh_vm_list vms;
        struct coh_grant_list grants;
        unsigned n_grants;
        unsigned next_vm_id;
};

/* The VM that vm_fd is (kcmp), or NULL. */
struct coh_vm *coh_grants_find_vm(struct coh_grants *g, int vm_fd);
struct coh_grant *coh_grants_find(struct coh_grants *g, const char *id);

/* "emulated" or "noop"; a NULL VM (not held) is "noop". */
const char *coh_vm_wbinvd(const struct coh_vm *vm);

/*
 * Attaches file_fd to the VM's kvm-vfio device, creating the VM object and
 * the device as needed, and records the grant. Takes ownership of vm_fd and
 * file_fd in every case. On failure nothing is left behind and *ret_operation
 * names the kernel operation that failed (-EBUSY: the VM has a kvm-vfio device
 * that is not ours).
 */
int coh_grant_create(struct coh_daemon *d, struct coh_conn *owner, int vm_fd, int file_fd, bool coherent,
                     const struct coh_grant *tmpl, struct coh_grant **ret, const char **ret_operation);

/* Detaches, closes, logs the end ("release", "revoke", "disconnect", "peer-exit", "shutdown") and frees. */
void coh_grant_end(struct coh_daemon *d, struct coh_grant *g, const char *end);

/* Ends every grant the connection owns. */
void coh_grants_end_owned(struct coh_daemon *d, struct coh_conn *c, const char *end);

json_object *coh_grant_to_json(const struct coh_grant *g, bool manager);

unsigned coh_grants_n_vms(const struct coh_grants *g);

/* Closes the VM's kvm-vfio device and descriptor (it has no grants left). */
void coh_vm_free(struct coh_daemon *d, struct coh_vm *vm);
/* Frees grants and VMs without touching the kernel: the fd store keeps them. */
void coh_grants_forget(struct coh_daemon *d);
