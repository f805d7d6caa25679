/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "daemon.h"
#include "fdstore.h"
#include "grants.h"
#include "log.h"
#include "util.h"

struct coh_vm *coh_grants_find_vm(struct coh_grants *g, int vm_fd) {
        struct coh_vm *vm;
        LIST_FOREACH(vm, &g->vms, link)
                if (coh_same_file(vm->vm_fd, vm_fd) > 0)
                        return vm;
        return NULL;
}

struct coh_grant *coh_grants_find(struct coh_grants *g, const char *id) {
        struct coh_grant *grant;
        LIST_FOREACH(grant, &g->grants, link)
                if (strcmp(grant->id, id) == 0)
                        return grant;
        return NULL;
}

const char *coh_vm_wbinvd(const struct coh_vm *vm) {
        return vm && vm->n_emulating > 0 ? "emulated" : "noop";
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* Random, so ids stay unique across restarts of the daemon too. */
static int grant_id(struct coh_grants *g, char id[static 24]) {
        for (int attempt = 0; attempt < 8; attempt++) {
                uint64_t v;
                if (getrandom(&v, sizeof v, 0) != sizeof v)
                        return -errno ?: -EIO;
                snprintf(id, 24, "g-%016" PRIx64, v);
                if (!coh_grants_find(g, id))
                        return 0;
        }
        return -EEXIST;
}

static void store_names(const struct coh_vm *vm, char vm_name[static 32], char dev_name[static 32]) {
        snprintf(vm_name, 32, "vm.%u", vm->id);
        snprintf(dev_name, 32, "dev.%u", vm->id);
}

void coh_vm_free(struct coh_daemon *d, struct coh_vm *vm) {
        char vm_name[32], dev_name[32];
        store_names(vm, vm_name, dev_name);
        LIST_REMOVE(vm, link);
        if (vm->device_fd >= 0) {
                coh_fdstore_remove(d, dev_name);
                d->platform->ops->vfio_device_close(d->platform, vm->vm_fd, vm->device_fd);
        }
        coh_fdstore_remove(d, vm_name);
        close(vm->vm_fd);
        free(vm);
}

static void file_name(const struct coh_grant *g, char name[static 40]) {
        snprintf(name, 40, "file.%s", g->id);
}

int coh_grant_create(struct coh_daemon *d, struct coh_conn *owner, int vm_fd, int file_fd, bool coherent,
                     const struct coh_grant *tmpl, struct coh_grant **ret, const char **ret_operation) {
        struct coh_grants *g = &d->grants;
        struct coh_platform *p = d->platform;
        _cleanup_close_ int vm_owned = vm_fd, file_owned = file_fd;
        struct coh_grant *grant = NULL;
        int r;

        *ret_operation = NULL;
        grant = calloc(1, sizeof *grant);
        if (!grant)
                return -ENOMEM;
        *grant = *tmpl;
        r = grant_id(g, grant->id);
        if (r < 0) {
                *ret_operation = "getrandom";
                free(grant);
                return r;
        }

        struct coh_vm *vm = coh_grants_find_vm(g, vm_fd);
        bool new_vm = !vm;
        if (new_vm) {
                vm = calloc(1, sizeof *vm);
                if (!vm) {
                        free(grant);
                        return -ENOMEM;
                }
                vm->vm_fd = take_fd(&vm_owned);
                vm->device_fd = -1;
                r = p->ops->vfio_device_create(p, vm->vm_fd, &vm->device_fd);
                if (r < 0) {
                        *ret_operation = "KVM_CREATE_DEVICE";
                        close(vm->vm_fd);
                        free(vm);
                        free(grant);
                        return r;
                }
                vm->id = ++g->next_vm_id;
                LIST_INSERT_HEAD(&g->vms, vm, link);
                char vm_name[32], dev_name[32];
                store_names(vm, vm_name, dev_name);
                coh_fdstore_put(d, vm_name, vm->vm_fd);
                coh_fdstore_put(d, dev_name, vm->device_fd);
        }

        /* Write-ahead: the next instance must know of the file before the
         * kernel does, or a crash right after the add would lose it. */
        char name[40];
        grant->vm = vm;
        grant->owner = owner;
        grant->peer_pid = owner->peer.pid;
        grant->peer_uid = owner->peer.uid;
        snprintf(grant->peer_unit, sizeof grant->peer_unit, "%s", owner->peer.unit ?: "");
        grant->file_fd = take_fd(&file_owned);
        grant->since_usec = now_usec();
        grant->pending = true;
        file_name(grant, name);
        LIST_INSERT_HEAD(&g->grants, grant, link);
        coh_fdstore_put(d, name, grant->file_fd);
        coh_fdstore_save(d, false);

        r = p->ops->vfio_file_add(p, vm->device_fd, grant->file_fd, coherent);
        if (r < 0) {
                *ret_operation = "KVM_DEV_VFIO_FILE_ADD";
                LIST_REMOVE(grant, link);
                coh_fdstore_remove(d, name);
                close(grant->file_fd);
                free(grant);
                if (new_vm) /* nothing half-done: the device we just made goes too */
                        coh_vm_free(d, vm);
                coh_fdstore_save(d, false);
                return r;
        }

        grant->pending = false;
        vm->n_grants++;
        if (grant->decision == COH_DECISION_GRANTED)
                vm->n_emulating++;
        g->n_grants++;
        owner->n_grants++;
        *ret = grant;
        coh_daemon_state_changed(d);
        return 0;
}

static const char *end_message(const char *end) {
        if (strcmp(end, "release") == 0)
                return "released by the VMM";
        if (strcmp(end, "revoke") == 0)
                return "revoked by an operator";
        if (strcmp(end, "disconnect") == 0)
                return "ended: the VMM's connection closed";
        if (strcmp(end, "peer-exit") == 0)
                return "ended: the VMM process exited";
        if (strcmp(end, "shutdown") == 0)
                return "ended: coherencyd is stopping";
        return "ended";
}

void coh_grant_end(struct coh_daemon *d, struct coh_grant *grant, const char *end) {
        struct coh_platform *p = d->platform;
        struct coh_vm *vm = grant->vm;
        struct coh_conn *owner = grant->owner;
        char detach_error[128] = "";

        int r = p->ops->vfio_file_del(p, vm->device_fd, grant->file_fd);
        if (r < 0)
                snprintf(detach_error, sizeof detach_error, "KVM_DEV_VFIO_FILE_DEL: %s", strerror(-r));
        char name[40];
        file_name(grant, name);
        coh_fdstore_remove(d, name);
        close(grant->file_fd);
        LIST_REMOVE(grant, link);
        d->grants.n_grants--;
        if (owner)
                owner->n_grants--;
        vm->n_grants--;
        if (grant->decision == COH_DECISION_GRANTED)
                vm->n_emulating--;
        const char *wbinvd = coh_vm_wbinvd(vm);
        if (vm->n_grants == 0) /* never keep a VM alive that no grant needs */
                coh_vm_free(d, vm);

        char message[512], pid[32], uid[32], group[32];
        snprintf(pid, sizeof pid, "%d", (int) grant->peer_pid);
        snprintf(uid, sizeof uid, "%u", (unsigned) grant->peer_uid);
        snprintf(group, sizeof group, "%d", grant->iommu_group);
        snprintf(message, sizeof message, "Grant %s for %s (VM of pid %s) %s; VM WBINVD %s%s%s", grant->id,
                 grant->slot, pid, end_message(end), wbinvd, detach_error[0] ? "; " : "", detach_error);
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_END", end },
                { "COHERENCYD_GRANT", grant->id },
                { "COHERENCYD_SLOT", grant->slot },
                { "COHERENCYD_IOMMU_GROUP", grant->iommu_group >= 0 ? group : NULL },
                { "COHERENCYD_RULE", grant->rule },
                { "COHERENCYD_VM_WBINVD", wbinvd },
                { "COHERENCYD_PEER_UID", uid },
                { "COHERENCYD_PEER_UNIT", grant->peer_unit[0] ? grant->peer_unit : NULL },
                { "COHERENCYD_DETACH_ERROR", detach_error[0] ? detach_error : NULL },
                { "OBJECT_PID", pid },
        };
        if (d->journal)
                (void) coh_journal_send(d->journal, detach_error[0] ? LOG_ERR : LOG_INFO, COH_MESSAGE_GRANT_END,
                                        message, fields, ELEMENTSOF(fields));

        json_object *ev = json_object_new_object();
        json_object_object_add(ev, "event", json_object_new_string("grant-end"));
        json_object_object_add(ev, "grant", json_object_new_string(grant->id));
        json_object_object_add(ev, "end", json_object_new_string(end));
        json_object_object_add(ev, "slot", json_object_new_string(grant->slot));
        json_object_object_add(ev, "vmWbinvd", json_object_new_string(wbinvd));
        json_object_object_add(ev, "peerPid", json_object_new_int64(grant->peer_pid));
        json_object_object_add(ev, "peerUid", json_object_new_int64(grant->peer_uid));
        coh_broker_broadcast(d, ev);

        free(grant);
        coh_daemon_state_changed(d);
}

void coh_grants_end_owned(struct coh_daemon *d, struct coh_conn *c, const char *end) {
        struct coh_grant *grant, *next;
        for (grant = LIST_FIRST(&d->grants.grants); grant; grant = next) {
                next = LIST_NEXT(grant, link);
                if (grant->owner == c)
                        coh_grant_end(d, grant, end);
        }
}

json_object *coh_grant_to_json(const struct coh_grant *g, bool manager) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "grant", json_object_new_string(g->id));
        json_object_object_add(o, "slot", json_object_new_string(g->slot));
        json_object_object_add(o, "decision", json_object_new_string(coh_decision_to_string(g->decision)));
        json_object_object_add(o, "reason", json_object_new_string(coh_reason_to_string(g->reason)));
        json_object_object_add(o, "vmWbinvd", json_object_new_string(coh_vm_wbinvd(g->vm)));
        json_object_object_add(o, "peerPid", json_object_new_int64(g->peer_pid));
        json_object_object_add(o, "peerUid", json_object_new_int64(g->peer_uid));
        json_object_object_add(o, "since", json_object_new_int64((int64_t) g->since_usec));
        if (manager) {
                json_object_object_add(o, "iommuGroup", json_object_new_int(g->iommu_group));
                json_object_object_add(o, "rule", json_object_new_string(g->rule));
                if (g->peer_unit[0])
                        json_object_object_add(o, "peerUnit", json_object_new_string(g->peer_unit));
        }
        return o;
}

unsigned coh_grants_n_vms(const struct coh_grants *g) {
        unsigned n = 0;
        const struct coh_vm *vm;
        LIST_FOREACH(vm, &g->vms, link)
                n++;
        return n;
}

void coh_grants_forget(struct coh_daemon *d) {
        while (!LIST_EMPTY(&d->grants.grants)) {
                struct coh_grant *grant = LIST_FIRST(&d->grants.grants);
                LIST_REMOVE(grant, link);
                close(grant->file_fd);
                free(grant);
        }
        d->grants.n_grants = 0;
        while (!LIST_EMPTY(&d->grants.vms)) {
                struct coh_vm *vm = LIST_FIRST(&d->grants.vms);
                LIST_REMOVE(vm, link);
                /* Only our copies: the store's keep the device and its files alive. */
                close(vm->device_fd);
                close(vm->vm_fd);
                free(vm);
        }
}
