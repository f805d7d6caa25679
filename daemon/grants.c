/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "daemon.h"
#include "fdstore.h"
#include "grants.h"
#include "log.h"
#include "util.h"

/* Polling a group that has no probe descriptor (linux): 10 ms, doubling, at
 * most once a second. A VMM that closed its copies before releasing is seen
 * at once by the check in coh_grant_end; one that lets go later within a few
 * tens of ms; a stuck one costs one open() a second. */
#define PROBE_FIRST_MS 10u
#define PROBE_MAX_MS 1000u

static const char *const state_table[_COH_GRANT_STATE_MAX] = {
        [COH_GRANT_ACTIVE] = "active",
        [COH_GRANT_ENDING] = "ending",
        [COH_GRANT_ENDED] = "ended",
};

const char *coh_grant_state_to_string(enum coh_grant_state s) {
        return s >= 0 && s < _COH_GRANT_STATE_MAX ? state_table[s] : NULL;
}

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

struct coh_grant *coh_grants_find_group(struct coh_grants *g, int group) {
        struct coh_grant *grant;
        LIST_FOREACH(grant, &g->grants, link)
                if (grant->iommu_group == group)
                        return grant;
        return NULL;
}

const char *coh_vm_wbinvd(const struct coh_vm *vm) {
        return vm && vm->n_granted > 0 ? "allowed" : "noop";
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

/* The fd-store names of a grant's descriptors and of a VM's. */
static void store_name(const struct coh_grant *g, const char *what, char name[static 48]) {
        snprintf(name, 48, "%s.%s", what, g->id);
}

void coh_vm_free(struct coh_daemon *d, struct coh_vm *vm) {
        char name[32];
        snprintf(name, sizeof name, "vm.%u", vm->id);
        LIST_REMOVE(vm, link);
        coh_fdstore_remove(d, name);
        close(vm->vm_fd);
        free(vm);
}

static void close_custody(struct coh_daemon *d, struct coh_grant *g, bool pin_only) {
        char name[48];
        if (g->custody.pin_fd >= 0) {
                store_name(g, "pin", name);
                coh_fdstore_remove(d, name);
                close(g->custody.pin_fd);
                g->custody.pin_fd = -EBADF;
        }
        if (pin_only)
                return;
        if (g->custody.probe_fd >= 0) {
                store_name(g, "probe", name);
                coh_fdstore_remove(d, name);
                close(g->custody.probe_fd);
                g->custody.probe_fd = -EBADF;
        }
        if (g->pidfd >= 0) {
                close(g->pidfd);
                g->pidfd = -EBADF;
        }
}

static void grant_free(struct coh_daemon *d, struct coh_grant *g) {
        if (g->ev_probe)
                event_free(g->ev_probe);
        if (g->ev_timeout)
                event_free(g->ev_timeout);
        close_custody(d, g, false);
        free(g);
}

int coh_grant_create(struct coh_daemon *d, struct coh_conn *owner, int vm_fd, const struct coh_custody *custody,
                     int pidfd, const struct coh_grant *tmpl, struct coh_grant **ret) {
        struct coh_grants *g = &d->grants;
        _cleanup_close_ int vm_owned = vm_fd;
        struct coh_grant *grant = calloc(1, sizeof *grant);
        int r;

        if (!grant) {
                if (custody->pin_fd >= 0)
                        close(custody->pin_fd);
                if (custody->probe_fd >= 0)
                        close(custody->probe_fd);
                if (pidfd >= 0)
                        close(pidfd);
                return -ENOMEM;
        }
        *grant = *tmpl;
        grant->custody = *custody;
        grant->pidfd = pidfd;
        grant->ev_probe = grant->ev_timeout = NULL;
        grant->daemon = d;
        r = grant_id(g, grant->id);
        if (r < 0) {
                grant_free(d, grant);
                return r;
        }

        struct coh_vm *vm = coh_grants_find_vm(g, vm_fd);
        if (!vm) {
                vm = calloc(1, sizeof *vm);
                if (!vm) {
                        grant_free(d, grant);
                        return -ENOMEM;
                }
                vm->vm_fd = take_fd(&vm_owned);
                vm->id = ++g->next_vm_id;
                LIST_INSERT_HEAD(&g->vms, vm, link);
                char name[32];
                snprintf(name, sizeof name, "vm.%u", vm->id);
                coh_fdstore_put(d, name, vm->vm_fd);
        }

        grant->state = COH_GRANT_ACTIVE;
        grant->vm = vm;
        grant->owner = owner;
        grant->peer_pid = owner->peer.pid;
        grant->peer_uid = owner->peer.uid;
        snprintf(grant->peer_unit, sizeof grant->peer_unit, "%s", owner->peer.unit ?: "");
        grant->since_usec = now_usec();
        grant->pending = true; /* until the reply that hands the file over is queued */
        LIST_INSERT_HEAD(&g->grants, grant, link);
        char name[48];
        store_name(grant, "pin", name);
        if (grant->custody.pin_fd >= 0)
                coh_fdstore_put(d, name, grant->custody.pin_fd);
        store_name(grant, "probe", name);
        if (grant->custody.probe_fd >= 0)
                coh_fdstore_put(d, name, grant->custody.probe_fd);

        vm->n_grants++;
        if (grant->decision == COH_DECISION_GRANTED)
                vm->n_granted++;
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
        if (strcmp(end, "interrupted") == 0)
                return "ended: coherencyd restarted before it answered";
        if (strcmp(end, "shutdown") == 0)
                return "ended: coherencyd is stopping";
        return "ended";
}

static void format_usec(uint64_t usec, char buf[static 32]) {
        snprintf(buf, 32, "%" PRIu64, usec);
}

/* The end record, the "ended" event, and the grant is gone. */
static void grant_finish(struct coh_daemon *d, struct coh_grant *grant, bool probed) {
        uint64_t now = now_usec();
        char message[512], pid[32], uid[32], group[32], held[32], ending[32];
        snprintf(pid, sizeof pid, "%d", (int) grant->peer_pid);
        snprintf(uid, sizeof uid, "%u", (unsigned) grant->peer_uid);
        snprintf(group, sizeof group, "%d", grant->iommu_group);
        format_usec(now - grant->since_usec, held);
        format_usec(now - grant->ending_usec, ending);
        /* Seconds with milliseconds for a person; the fields carry microseconds. */
        uint64_t ms = (now - grant->since_usec) / 1000u;
        snprintf(message, sizeof message, "Grant %s for %s (VM of pid %s) %s; %s after %" PRIu64 ".%03us%s",
                 grant->id, grant->slot, pid, end_message(grant->end),
                 probed ? "the group was free again" : "the group was left to the kernel", ms / 1000u,
                 (unsigned) (ms % 1000u), grant->killed ? "; the VMM was killed (RevokeKill=)" : "");
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_END", grant->end },
                { "COHERENCYD_GRANT", grant->id },
                { "COHERENCYD_DECISION", coh_decision_to_string(grant->decision) },
                { "COHERENCYD_SLOT", grant->slot },
                { "COHERENCYD_IOMMU_GROUP", grant->iommu_group >= 0 ? group : NULL },
                { "COHERENCYD_RULE", grant->rule },
                { "COHERENCYD_WBINVD", grant->wbinvd ? "allowed" : "none" },
                { "COHERENCYD_HELD_USEC", held },
                { "COHERENCYD_ENDING_USEC", ending },
                { "COHERENCYD_KILLED", grant->killed ? "yes" : NULL },
                { "COHERENCYD_PEER_UID", uid },
                { "COHERENCYD_PEER_UNIT", grant->peer_unit[0] ? grant->peer_unit : NULL },
                { "OBJECT_PID", pid },
        };
        if (d->journal)
                (void) coh_journal_send(d->journal, LOG_INFO, COH_MESSAGE_GRANT_END, message, fields,
                                        ELEMENTSOF(fields));

        LIST_REMOVE(grant, link);
        d->grants.n_grants--;
        d->grants.n_ending--;
        grant->state = COH_GRANT_ENDED;
        coh_broker_grant_event(d, grant, "ended");
        grant_free(d, grant);
        coh_daemon_state_changed(d);
}

static void probe_cb(evutil_socket_t fd, short what, void *userdata);

static void schedule_probe(struct coh_grant *g) {
        if (g->custody.probe_fd >= 0) {
                event_add(g->ev_probe, NULL); /* readable (EOF) once free */
                return;
        }
        struct timeval tv = { .tv_sec = g->probe_ms / 1000u, .tv_usec = (g->probe_ms % 1000u) * 1000u };
        event_add(g->ev_probe, &tv);
        g->probe_ms = g->probe_ms * 2 > PROBE_MAX_MS ? PROBE_MAX_MS : g->probe_ms * 2;
}

/* 1 when the group was free (the grant is gone), 0 when still held. */
static int probe(struct coh_daemon *d, struct coh_grant *g) {
        int r = d->platform->ops->custody_probe_free(d->platform, g->iommu_group, &g->custody);
        if (r > 0) {
                grant_finish(d, g, true);
                return 1;
        }
        if (r < 0)
                coh_log(d, LOG_WARNING, NULL, "Cannot tell whether the group of grant %s (%s) is free: %s", g->id,
                        g->slot, strerror(-r));
        return 0;
}

static void probe_cb(evutil_socket_t fd, short what, void *userdata) {
        struct coh_grant *g = userdata;
        if (probe(g->daemon, g) == 0)
                schedule_probe(g);
}

static void held_warning(struct coh_daemon *d, struct coh_grant *g) {
        struct coh_holder holders[16];
        int n = d->platform->ops->custody_holders(d->platform, g->iommu_group, holders, ELEMENTSOF(holders));
        char list[512] = "", pid[32], uid[32], group[32], message[768];
        size_t len = 0;
        for (int i = 0; i < n && len < sizeof list; i++)
                len += (size_t) snprintf(list + len, sizeof list - len, "%s%s[%d]", i ? ", " : "", holders[i].comm,
                                         (int) holders[i].pid);
        if (len >= sizeof list)
                len = sizeof list - 1;
        snprintf(pid, sizeof pid, "%d", (int) g->peer_pid);
        snprintf(uid, sizeof uid, "%u", (unsigned) g->peer_uid);
        snprintf(group, sizeof group, "%d", g->iommu_group);
        /* Without CAP_SYS_PTRACE /proc shows only root's descriptors: where it
         * names nobody, say whether the VMM itself is still alive. */
        struct pollfd pfd = { .fd = g->pidfd, .events = POLLIN };
        bool vmm_alive = g->pidfd >= 0 && poll(&pfd, 1, 0) == 0;
        snprintf(message, sizeof message, "Grant %s for %s (VM of pid %s) ended (%s) but its group is still held%s%s%s",
                 g->id, g->slot, pid, g->end, n > 0 ? " by " : "", list,
                 n > 0        ? ""
                 : vmm_alive ? "; the VMM is still running (it, a process it passed the file to, or its VM holds it)"
                             : "; no process /proc shows holds it (a process it passed the file to, or a descriptor in flight)");
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_GRANT", g->id },
                { "COHERENCYD_SLOT", g->slot },
                { "COHERENCYD_IOMMU_GROUP", g->iommu_group >= 0 ? group : NULL },
                { "COHERENCYD_HOLDERS", n > 0 ? list : NULL },
                { "COHERENCYD_PEER_UID", uid },
                { "COHERENCYD_PEER_UNIT", g->peer_unit[0] ? g->peer_unit : NULL },
                { "OBJECT_PID", pid },
        };
        if (d->journal)
                (void) coh_journal_send(d->journal, LOG_WARNING, COH_MESSAGE_GRANT_HELD, message, fields,
                                        ELEMENTSOF(fields));
        g->warned = true;
        coh_broker_grant_event(d, g, "held");
}

static void kill_peer(struct coh_daemon *d, struct coh_grant *g) {
        /* Through the pidfd: never a reused pid. */
        if (g->pidfd < 0) {
                coh_log(d, LOG_WARNING, NULL, "Cannot kill the VMM of grant %s: its process is not known", g->id);
                return;
        }
        if (syscall(SYS_pidfd_send_signal, g->pidfd, SIGKILL, NULL, 0) < 0) {
                if (errno != ESRCH)
                        coh_log(d, LOG_WARNING, NULL, "Cannot kill the VMM of grant %s (pid %d): %m", g->id,
                                (int) g->peer_pid);
                return;
        }
        g->killed = true;
        coh_log(d, LOG_NOTICE, NULL, "Killed the VMM of revoked grant %s (pid %d): it still held %s", g->id,
                (int) g->peer_pid, g->slot);
}

static void grant_timeout_cb(evutil_socket_t fd, short what, void *userdata);

void coh_grant_watch(struct coh_daemon *d, struct coh_grant *g) {
        if (!g->ev_timeout) {
                g->ev_timeout = event_new(d->base, -1, 0, grant_timeout_cb, g);
                g->ev_probe = g->custody.probe_fd >= 0 ? event_new(d->base, g->custody.probe_fd, EV_READ, probe_cb, g)
                                                       : event_new(d->base, -1, 0, probe_cb, g);
        }
        if (!g->ev_timeout || !g->ev_probe)
                return; /* no memory: the group is checked again on the next event for it */
        uint64_t t = coh_policy_broker(d->policy)->release_timeout_usec;
        uint64_t elapsed = now_usec() - g->ending_usec;
        uint64_t left = elapsed >= t ? 0 : t - elapsed;
        struct timeval tv = { .tv_sec = (time_t) (left / 1000000u), .tv_usec = (suseconds_t) (left % 1000000u) };
        if (!g->warned)
                event_add(g->ev_timeout, &tv);
        g->probe_ms = PROBE_FIRST_MS;
        schedule_probe(g);
}

int coh_grant_end(struct coh_daemon *d, struct coh_grant *g, const char *end, bool kill) {
        if (g->state == COH_GRANT_ENDING) {
                /* A revoke of a grant that already ended: it keeps its end, gains the kill. */
                if (kill && !g->kill) {
                        g->kill = true;
                        if (g->warned)
                                kill_peer(d, g);
                }
                coh_broker_grant_event(d, g, strcmp(end, "revoke") == 0 ? "revoked" : "ending");
                return 0;
        }

        struct coh_vm *vm = g->vm;
        struct coh_conn *owner = g->owner;
        close_custody(d, g, true); /* the pin: from now on the group is the kernel's to free */
        if (owner)
                owner->n_grants--;
        if (vm) {
                vm->n_grants--;
                if (g->decision == COH_DECISION_GRANTED)
                        vm->n_granted--;
                if (vm->n_grants == 0) /* never keep a VM alive that no grant needs */
                        coh_vm_free(d, vm);
        }
        g->vm = NULL;
        g->owner = NULL;
        g->state = COH_GRANT_ENDING;
        g->kill = kill;
        g->ending_usec = now_usec();
        snprintf(g->end, sizeof g->end, "%s", end);
        d->grants.n_ending++;
        coh_broker_grant_event(d, g, strcmp(end, "revoke") == 0 ? "revoked" : "ending");

        if (probe(d, g) > 0)
                return 1;
        coh_grant_watch(d, g);
        coh_daemon_state_changed(d);
        return 0;
}

static void grant_timeout_cb(evutil_socket_t fd, short what, void *userdata) {
        struct coh_grant *g = userdata;
        struct coh_daemon *d = g->daemon;
        if (probe(d, g) > 0)
                return;
        held_warning(d, g);
        if (g->kill)
                kill_peer(d, g);
}

void coh_grants_end_owned(struct coh_daemon *d, struct coh_conn *c, const char *end) {
        struct coh_grant *grant, *next;
        for (grant = LIST_FIRST(&d->grants.grants); grant; grant = next) {
                next = LIST_NEXT(grant, link);
                if (grant->owner == c && grant->state == COH_GRANT_ACTIVE)
                        coh_grant_end(d, grant, end, false);
        }
}

json_object *coh_grant_to_json(struct coh_daemon *d, const struct coh_grant *g, bool manager) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "grant", json_object_new_string(g->id));
        json_object_object_add(o, "device", json_object_new_string(g->slot));
        json_object_object_add(o, "iommuGroup", json_object_new_int(g->iommu_group));
        json_object_object_add(o, "file", json_object_new_string(g->file));
        json_object_object_add(o, "decision", json_object_new_string(coh_decision_to_string(g->decision)));
        json_object_object_add(o, "reason", json_object_new_string(coh_reason_to_string(g->reason)));
        json_object_object_add(o, "rule", json_object_new_string(g->rule));
        json_object_object_add(o, "wbinvd", json_object_new_string(g->wbinvd ? "allowed" : "none"));
        json_object_object_add(o, "vmWbinvd", json_object_new_string(coh_vm_wbinvd(g->vm)));
        json_object_object_add(o, "kvmAttach", json_object_new_string(coh_kvm_attach_to_string(g->kvm_attach) ?: "add"));
        json_object_object_add(o, "state", json_object_new_string(coh_grant_state_to_string(g->state)));
        if (g->end[0])
                json_object_object_add(o, "end", json_object_new_string(g->end));
        json_object_object_add(o, "peerPid", json_object_new_int64(g->peer_pid));
        json_object_object_add(o, "peerUid", json_object_new_int64(g->peer_uid));
        json_object_object_add(o, "since", json_object_new_int64((int64_t) g->since_usec));
        if (manager) {
                if (g->peer_unit[0])
                        json_object_object_add(o, "peerUnit", json_object_new_string(g->peer_unit));
                if (g->state == COH_GRANT_ENDING) {
                        json_object_object_add(o, "endingSince", json_object_new_int64((int64_t) g->ending_usec));
                        struct coh_holder holders[16];
                        int n = d->platform->ops->custody_holders(d->platform, g->iommu_group, holders,
                                                                  ELEMENTSOF(holders));
                        json_object *list = json_object_new_array();
                        for (int i = 0; i < n; i++) {
                                json_object *h = json_object_new_object();
                                json_object_object_add(h, "pid", json_object_new_int64(holders[i].pid));
                                json_object_object_add(h, "comm", json_object_new_string(holders[i].comm));
                                json_object_array_add(list, h);
                        }
                        json_object_object_add(o, "holders", list);
                }
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
                /* Only our copies: the store's keep the pins alive. */
                if (grant->ev_probe)
                        event_free(grant->ev_probe);
                if (grant->ev_timeout)
                        event_free(grant->ev_timeout);
                if (grant->custody.pin_fd >= 0)
                        close(grant->custody.pin_fd);
                if (grant->custody.probe_fd >= 0)
                        close(grant->custody.probe_fd);
                if (grant->pidfd >= 0)
                        close(grant->pidfd);
                free(grant);
        }
        d->grants.n_grants = d->grants.n_ending = 0;
        while (!LIST_EMPTY(&d->grants.vms)) {
                struct coh_vm *vm = LIST_FIRST(&d->grants.vms);
                LIST_REMOVE(vm, link);
                close(vm->vm_fd);
                free(vm);
        }
}

void coh_grants_shutdown(struct coh_daemon *d) {
        struct coh_grant *grant, *next;
        for (grant = LIST_FIRST(&d->grants.grants); grant; grant = next) {
                next = LIST_NEXT(grant, link);
                if (grant->state == COH_GRANT_ACTIVE)
                        coh_grant_end(d, grant, "shutdown", false);
        }
        /* Nobody will watch them: the kernel frees each group with its last holder. */
        while (!LIST_EMPTY(&d->grants.grants))
                grant_finish(d, LIST_FIRST(&d->grants.grants), false);
}
