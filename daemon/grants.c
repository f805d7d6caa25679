/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <search.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "fdstore.h"
#include "grants.h"
#include "log.h"
#include "policy.h"
#include "strbuf.h"
#include "util.h"

/* Polling a group that has no probe descriptor (linux): 10 ms, doubling, at
 * most once a second. A VMM that closed its copies before releasing is seen
 * at once by the check in coh_grant_end; one that lets go later within a few
 * tens of ms; a stuck one costs one open() a second. */
#define PROBE_FIRST_MS 10u
#define PROBE_MAX_MS 1000u

/*
 * The VMs, sorted by the order kcmp(KCMP_FILE) gives their descriptors
 * (platform.c, coh_file_order()): finding the VM a request names is a
 * binary search, about log2(n) kcmp calls where comparing with each VM was n.
 * Every kvm-vm descriptor shares one anonymous inode, so nothing cheaper
 * than kcmp tells two VMs apart, and a VM not held yet costs the whole
 * search. A VM's order label grows with its place, so that taking it out
 * (its descriptor about to close) is a search without kcmp.
 *
 * They are kept in blocks of at most VM_BLOCK_MAX, the blocks in order: a
 * VM coming or going moves at most a block's pointers and the block list's,
 * where one sorted array moved half of all of them (800 KB at 100,000 VMs,
 * twice a grant cycle). A search is a binary search over the blocks' first
 * VMs, then within one block.
 */
#define VM_BLOCK_MAX 256u

struct coh_vm_block {
        size_t n;
        struct coh_vm *vms[VM_BLOCK_MAX];
};

/* Where a descriptor's VM is, or would go. */
struct vm_place {
        size_t block, at;
        bool found;
};

/* Where vm_fd's VM is or would go; -errno when kcmp failed (then nothing is found). */
static int vm_search(struct coh_grants *g, int vm_fd, struct vm_place *ret) {
        size_t lo = 0, hi = g->n_vm_blocks;
        int order, r;

        *ret = (struct vm_place) {};
        /* The last block whose first VM does not come after vm_fd's. */
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                r = coh_file_order(g->self, vm_fd, g->vm_blocks[mid]->vms[0]->vm_fd, &order);
                if (r < 0)
                        return r;
                if (order == 0) {
                        *ret = (struct vm_place) { .block = mid, .at = 0, .found = true };
                        return 0;
                }
                if (order < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        if (lo == 0)
                return 0; /* before every VM, or none: block 0, place 0 */
        const struct coh_vm_block *b = g->vm_blocks[lo - 1];
        ret->block = lo - 1;
        /* Within it: its first VM comes before vm_fd's. */
        size_t l = 1, h = b->n;
        while (l < h) {
                size_t mid = l + (h - l) / 2;
                r = coh_file_order(g->self, vm_fd, b->vms[mid]->vm_fd, &order);
                if (r < 0)
                        return r;
                if (order == 0) {
                        ret->at = mid;
                        ret->found = true;
                        return 0;
                }
                if (order < 0)
                        h = mid;
                else
                        l = mid + 1;
        }
        ret->at = l;
        return 0;
}

struct coh_vm *coh_grants_find_vm(struct coh_grants *g, int vm_fd) {
        struct vm_place place;
        if (vm_search(g, vm_fd, &place) < 0 || !place.found)
                return NULL;
        return g->vm_blocks[place.block]->vms[place.at];
}

/* Spreads the labels evenly: when two neighbours have no label left between them. */
static void vm_relabel(struct coh_grants *g) {
        uint64_t step = UINT64_MAX / (g->n_vms + 2), i = 0;
        for (size_t b = 0; b < g->n_vm_blocks; b++)
                for (size_t k = 0; k < g->vm_blocks[b]->n; k++)
                        g->vm_blocks[b]->vms[k]->order = ++i * step;
}

/* A new block at index at of the block list. */
static struct coh_vm_block *vm_block_add(struct coh_grants *g, size_t at) {
        if (g->n_vm_blocks == g->n_vm_blocks_alloc) {
                size_t n = g->n_vm_blocks_alloc ? g->n_vm_blocks_alloc * 2 : 4;
                struct coh_vm_block **a = reallocarray(g->vm_blocks, n, sizeof *a);
                if (!a)
                        return NULL;
                g->vm_blocks = a;
                g->n_vm_blocks_alloc = n;
        }
        struct coh_vm_block *b = malloc(sizeof *b);
        if (!b)
                return NULL;
        b->n = 0;
        memmove(g->vm_blocks + at + 1, g->vm_blocks + at, (g->n_vm_blocks - at) * sizeof *g->vm_blocks);
        g->vm_blocks[at] = b;
        g->n_vm_blocks++;
        return b;
}

static uint64_t vm_label_before(const struct coh_grants *g, size_t block, size_t at) {
        if (at > 0)
                return g->vm_blocks[block]->vms[at - 1]->order;
        return block > 0 ? g->vm_blocks[block - 1]->vms[g->vm_blocks[block - 1]->n - 1]->order : 0;
}

static uint64_t vm_label_after(const struct coh_grants *g, size_t block, size_t at) {
        if (at + 1 < g->vm_blocks[block]->n)
                return g->vm_blocks[block]->vms[at + 1]->order;
        return block + 1 < g->n_vm_blocks ? g->vm_blocks[block + 1]->vms[0]->order : UINT64_MAX;
}

/* Puts vm at its place: what vm_search() said of its descriptor. */
static int vm_insert(struct coh_grants *g, struct coh_vm *vm, struct vm_place place) {
        if (place.found)
                return -EEXIST;
        size_t bi = place.block, at = place.at;
        if (g->n_vm_blocks == 0 && !vm_block_add(g, 0))
                return -ENOMEM;
        struct coh_vm_block *b = g->vm_blocks[bi];
        if (b->n == VM_BLOCK_MAX) {
                /* Full: its second half goes to a new block after it. */
                struct coh_vm_block *next = vm_block_add(g, bi + 1);
                if (!next)
                        return -ENOMEM;
                size_t half = VM_BLOCK_MAX / 2;
                memcpy(next->vms, b->vms + half, (VM_BLOCK_MAX - half) * sizeof *b->vms);
                next->n = VM_BLOCK_MAX - half;
                b->n = half;
                if (at > half) {
                        bi++;
                        at -= half;
                        b = next;
                }
        }
        memmove(b->vms + at + 1, b->vms + at, (b->n - at) * sizeof *b->vms);
        b->vms[at] = vm;
        b->n++;
        g->n_vms++;
        uint64_t lo = vm_label_before(g, bi, at), hi = vm_label_after(g, bi, at);
        if (hi - lo < 2)
                vm_relabel(g);
        else
                vm->order = lo + (hi - lo) / 2;
        return 0;
}

static void vm_remove(struct coh_grants *g, struct coh_vm *vm) {
        /* The last block whose first label is not above vm's, then vm in it: by label, no kcmp. */
        size_t lo = 0, hi = g->n_vm_blocks;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (g->vm_blocks[mid]->vms[0]->order <= vm->order)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo == 0)
                return; /* never inserted (kcmp failed) */
        size_t bi = lo - 1;
        struct coh_vm_block *b = g->vm_blocks[bi];
        size_t l = 0, h = b->n;
        while (l < h) {
                size_t mid = l + (h - l) / 2;
                if (b->vms[mid]->order < vm->order)
                        l = mid + 1;
                else
                        h = mid;
        }
        if (l >= b->n || b->vms[l] != vm)
                return; /* never inserted */
        memmove(b->vms + l, b->vms + l + 1, (b->n - l - 1) * sizeof *b->vms);
        b->n--;
        g->n_vms--;
        if (b->n == 0) {
                free(b);
                memmove(g->vm_blocks + bi, g->vm_blocks + bi + 1, (g->n_vm_blocks - bi - 1) * sizeof *g->vm_blocks);
                g->n_vm_blocks--;
        }
}

static int cmp_grant_id(const void *a, const void *b) {
        return strcmp(((const struct coh_grant *) a)->rec.grant, ((const struct coh_grant *) b)->rec.grant);
}

static int cmp_grant_group(const void *a, const void *b) {
        int64_t x = ((const struct coh_grant *) a)->rec.iommu_group, y = ((const struct coh_grant *) b)->rec.iommu_group;
        return (x > y) - (x < y);
}

bool coh_grant_id_valid(const char *id) {
        /* As grant_new_id() makes them: "g-" and 16 lowercase hex digits. */
        if (!startswith(id, "g-") || strlen(id) != 18)
                return false;
        for (const char *c = id + 2; *c; c++)
                if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
                        return false;
        return true;
}

struct coh_grant *coh_grants_find(struct coh_grants *g, const char *id) {
        struct coh_grant key;
        size_t len = strnlen(id, sizeof key.rec.grant);
        if (len >= sizeof key.rec.grant)
                return NULL;
        memcpy(key.rec.grant, id, len + 1);
        struct coh_grant **found = tfind(&key, &g->by_id, cmp_grant_id);
        return found ? *found : NULL;
}

struct coh_grant *coh_grants_find_group(struct coh_grants *g, int group) {
        struct coh_grant key = { .rec.iommu_group = group };
        struct coh_grant **found = tfind(&key, &g->by_group, cmp_grant_group);
        return found ? *found : NULL;
}

/* Indexes a grant by id and group. -ENOMEM, or 0. */
static int grant_index(struct coh_grants *g, struct coh_grant *grant) {
        struct coh_grant **by_id = tsearch(grant, &g->by_id, cmp_grant_id);
        if (!by_id)
                return -ENOMEM;
        grant->by_id = *by_id == grant;
        struct coh_grant **by_group = tsearch(grant, &g->by_group, cmp_grant_group);
        grant->by_group = by_group && *by_group == grant;
        if (!grant->by_group)
                g->n_group_dups++; /* grant_unindex() undoes it */
        return by_group ? 0 : -ENOMEM;
}

static void grant_unindex(struct coh_grants *g, struct coh_grant *grant) {
        if (grant->by_id)
                tdelete(grant, &g->by_id, cmp_grant_id);
        grant->by_id = false;
        if (!grant->by_group) {
                g->n_group_dups--;
                return;
        }
        tdelete(grant, &g->by_group, cmp_grant_group);
        grant->by_group = false;
        if (g->n_group_dups == 0)
                return;
        /* Only after an adoption of two grants of one group (an older state):
         * the other one takes its place. */
        struct coh_grant *other;
        LIST_FOREACH(other, &g->grants, link)
                if (other != grant && !other->by_group && other->rec.iommu_group == grant->rec.iommu_group) {
                        if (tsearch(other, &g->by_group, cmp_grant_group)) {
                                other->by_group = true;
                                g->n_group_dups--;
                        }
                        break;
                }
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
/* Drawn ahead, a pool at a time: one getrandom() per COH_GRANT_IDS_POOL grants, not per grant. */
static int next_random(struct coh_grants *g, uint64_t *ret) {
        if (g->n_random_ids == 0) {
                ssize_t n = getrandom(g->random_ids, sizeof g->random_ids, 0);
                if (n < (ssize_t) sizeof *g->random_ids)
                        return n < 0 ? -errno : -EIO;
                g->n_random_ids = (unsigned) ((size_t) n / sizeof *g->random_ids);
        }
        *ret = g->random_ids[--g->n_random_ids];
        g->random_ids[g->n_random_ids] = 0; /* a used one does not linger */
        return 0;
}

static int grant_id(struct coh_grants *g, char id[static 24]) {
        for (int attempt = 0; attempt < 8; attempt++) {
                uint64_t v = 0;
                int r = next_random(g, &v);
                if (r < 0)
                        return r;
                /* "g-%016" PRIx64, by hand: on every grant's way. */
                static const char hex[] = "0123456789abcdef";
                id[0] = 'g';
                id[1] = '-';
                for (unsigned i = 0; i < 16; i++)
                        id[2 + i] = hex[(v >> (60 - 4 * i)) & 0xf];
                id[18] = '\0';
                if (!coh_grants_find(g, id))
                        return 0;
        }
        return -EEXIST;
}

void coh_grants_init(struct coh_grants *g, struct event_base *base, struct coh_platform *platform,
                     struct coh_fdstore *store, const struct coh_grants_callbacks *cb) {
        *g = (struct coh_grants) {
                .base = base,
                .platform = platform,
                .store = store,
                .release_timeout_usec = 30u * 1000000u,
                .cb = *cb,
                /* The process that holds the grants and asks kcmp: the
                 * privileged helper, forked at start, never does. */
                .self = getpid(),
        };
        LIST_INIT(&g->vms);
        LIST_INIT(&g->grants);
        LIST_INIT(&g->dirty);
}

void coh_grant_touch(struct coh_grant *g) {
        struct coh_grants *gs = g->grants;
        if (!gs->store->enabled || g->dirty)
                return;
        g->dirty = true;
        LIST_INSERT_HEAD(&gs->dirty, g, dirty_link);
}

/* The grant is gone: the state is told its id. */
static void grant_gone(struct coh_grants *gs, struct coh_grant *g) {
        if (g->dirty) {
                LIST_REMOVE(g, dirty_link);
                g->dirty = false;
        }
        if (!gs->store->enabled)
                return;
        if (gs->n_gone == gs->n_gone_alloc) {
                size_t n = gs->n_gone_alloc ? gs->n_gone_alloc * 2 : 16;
                char (*a)[24] = reallocarray(gs->gone, n, sizeof *a);
                if (!a) {
                        gs->changes_lost = true;
                        return;
                }
                gs->gone = a;
                gs->n_gone_alloc = n;
        }
        memcpy(gs->gone[gs->n_gone++], g->rec.grant, sizeof gs->gone[0]);
}

void coh_grants_changes_clear(struct coh_grants *g) {
        while (!LIST_EMPTY(&g->dirty)) {
                struct coh_grant *grant = LIST_FIRST(&g->dirty);
                LIST_REMOVE(grant, dirty_link);
                grant->dirty = false;
        }
        g->n_gone = 0;
        g->changes_lost = false;
        /* A burst of ends does not keep its array for ever. */
        if (g->n_gone_alloc > 1024)
                g->n_gone_alloc = 0, free(TAKE_PTR(g->gone));
}

static void changed(struct coh_grants *g) {
        if (g->cb.changed)
                g->cb.changed(g->cb.userdata);
}

static void event(struct coh_grants *g, const struct coh_grant *grant, const char *what) {
        if (g->cb.event)
                g->cb.event(grant, what, g->cb.userdata);
}

static const char *vm_store_id(const struct coh_vm *vm, char buf[static 16]) {
        snprintf(buf, 16, "%u", vm->id);
        return buf;
}

void coh_vm_free(struct coh_grants *g, struct coh_vm *vm) {
        char id[16];
        LIST_REMOVE(vm, link);
        g->n_vms_held--;
        vm_remove(g, vm);
        if (g->store->enabled)
                coh_fdstore_remove(g->store, COH_FDSTORE_VM, vm_store_id(vm, id));
        safe_close(vm->vm_fd);
        free(vm);
}

static void close_custody(struct coh_grant *g, bool pin_only) {
        struct coh_fdstore *store = g->grants->store;
        if (g->custody.pin_fd >= 0) {
                coh_fdstore_remove(store, COH_FDSTORE_PIN, g->rec.grant);
                g->custody.pin_fd = safe_close(g->custody.pin_fd);
        }
        if (pin_only)
                return;
        if (g->custody.probe_fd >= 0) {
                coh_fdstore_remove(store, COH_FDSTORE_PROBE, g->rec.grant);
                g->custody.probe_fd = safe_close(g->custody.probe_fd);
        }
        g->pidfd = coh_pidfd_unref(g->pidfd);
}

/* Frees the grant; with forget, only our copies of its descriptors go (the store keeps its own). */
static void grant_free(struct coh_grant *g, bool forget) {
        if (g->ev_probe)
                event_free(g->ev_probe);
        if (g->ev_timeout)
                event_free(g->ev_timeout);
        if (forget) {
                safe_close(g->custody.pin_fd);
                safe_close(g->custody.probe_fd);
                coh_pidfd_unref(g->pidfd);
        } else
                close_custody(g, false);
        free(g);
}

/* place: what vm_search() said of vm_fd, or NULL when kcmp failed. */
static struct coh_vm *vm_new(struct coh_grants *g, unsigned id, int vm_fd, const struct vm_place *place) {
        struct coh_vm *vm = calloc(1, sizeof *vm);
        if (!vm)
                return NULL;
        vm->id = id;
        vm->vm_fd = vm_fd;
        /* Where kcmp failed (-ENOSYS: a kernel without CONFIG_KCMP) the VM
         * is held unsorted and never found again, as before sorting: its
         * next grant gets a VM of its own. */
        int r = place ? vm_insert(g, vm, *place) : 0;
        if (r == -ENOMEM) {
                free(vm);
                return NULL;
        }
        LIST_INSERT_HEAD(&g->vms, vm, link);
        g->n_vms_held++;
        if (id >= g->next_vm_id)
                g->next_vm_id = id;
        return vm;
}

/* Counts an active grant in its VM and owner. */
static void grant_attach(struct coh_grant *grant, struct coh_vm *vm, struct coh_grant_owner *owner) {
        grant->vm = vm;
        grant->owner = owner;
        if (vm) {
                vm->n_grants++;
                if (grant->rec.decision == COH_DECISION_GRANTED)
                        vm->n_granted++;
        }
        if (owner) {
                owner->n_grants++;
                LIST_INSERT_HEAD(&owner->owned, grant, owner_link);
        }
}

int coh_grant_create(struct coh_grants *g, struct coh_grant_owner *owner, int vm_fd, const struct coh_custody *custody,
                     const struct coh_grant_record *tmpl, struct coh_grant **ret) {
        _cleanup_close_ int vm_owned = vm_fd;
        struct coh_grant *grant = calloc(1, sizeof *grant);
        int r;

        if (!grant) {
                safe_close(custody->pin_fd);
                safe_close(custody->probe_fd);
                return -ENOMEM;
        }
        grant->rec = *tmpl;
        grant->grants = g;
        grant->custody = *custody;
        grant->ev_probe = grant->ev_timeout = NULL;
        grant->pidfd = coh_pidfd_ref(owner->pidfd);
        r = grant_id(g, grant->rec.grant);
        if (r < 0) {
                grant_free(grant, false);
                return r;
        }

        struct vm_place place;
        bool sorted = vm_search(g, vm_fd, &place) >= 0;
        struct coh_vm *vm = sorted && place.found ? g->vm_blocks[place.block]->vms[place.at] : NULL;
        bool vm_made = !vm;
        if (!vm) {
                vm = vm_new(g, g->next_vm_id + 1, vm_owned, sorted ? &place : NULL);
                if (!vm) {
                        grant_free(grant, false);
                        return -ENOMEM;
                }
                vm_owned = -EBADF;
                char id[16];
                if (g->store->enabled)
                        coh_fdstore_put(g->store, COH_FDSTORE_VM, vm_store_id(vm, id), vm->vm_fd);
        }

        grant->rec.state = COH_GRANT_ACTIVE;
        grant->rec.owner = owner->id;
        grant->rec.peer_pid = owner->peer->pid;
        grant->rec.peer_uid = owner->peer->uid;
        strscpy0(grant->rec.peer_unit, owner->peer->unit ?: "", sizeof grant->rec.peer_unit);
        grant->rec.since = now_usec();
        grant->rec.pending = true; /* until the reply that hands the file over is queued */
        r = grant_index(g, grant);
        if (r < 0) {
                grant_unindex(g, grant);
                if (vm_made)
                        coh_vm_free(g, vm);
                grant_free(grant, false);
                return r;
        }
        LIST_INSERT_HEAD(&g->grants, grant, link);
        if (grant->custody.pin_fd >= 0)
                coh_fdstore_put(g->store, COH_FDSTORE_PIN, grant->rec.grant, grant->custody.pin_fd);
        if (grant->custody.probe_fd >= 0)
                coh_fdstore_put(g->store, COH_FDSTORE_PROBE, grant->rec.grant, grant->custody.probe_fd);
        grant_attach(grant, vm, owner);
        g->n_grants++;
        coh_grant_touch(grant);
        *ret = grant;
        changed(g);
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

/* The grant as shown: its record with the VM's WBINVD state filled in. */
static struct coh_grant_record grant_shown(const struct coh_grant *g) {
        struct coh_grant_record rec = g->rec;
        rec.vm_wbinvd = g->vm && g->vm->n_granted > 0;
        rec.vm = g->vm ? g->vm->id : 0;
        return rec;
}

/* A record about the grant: its record's journal fields (grant-record.c) and extra.
 * Only the end record carries COHERENCYD_END (DESIGN.md §7). */
static void log_grant(const struct coh_grant *g, bool end, int priority, const char *message_id, const char *message,
                      const struct coh_journal_field *extra, size_t n_extra) {
        struct coh_grant_record rec = grant_shown(g);
        if (!end)
                rec.end[0] = 0;
        struct coh_record_journal_field from_record[32];
        struct coh_journal_field fields[48];
        size_t n = coh_record_to_journal(coh_grant_record_fields, &rec, from_record, ELEMENTSOF(from_record));
        for (size_t i = 0; i < n; i++)
                fields[i] = (struct coh_journal_field) { from_record[i].name, from_record[i].value };
        for (size_t i = 0; i < n_extra && n < ELEMENTSOF(fields); i++)
                fields[n++] = extra[i];
        coh_log_record(priority, message_id, message, fields, n);
}

/* The end record, the "ended" event, and the grant is gone. */
static void grant_finish(struct coh_grant *grant, bool probed) {
        struct coh_grants *g = grant->grants;
        uint64_t now = now_usec();
        char message[512], held[32], ending[32];
        struct coh_strbuf m, h, e;
        /* Built without snprintf() (strbuf.h: a record on every grant). */
        coh_strbuf_init(&h, held, sizeof held);
        coh_strbuf_uint(&h, now - (uint64_t) grant->rec.since);
        coh_strbuf_init(&e, ending, sizeof ending);
        coh_strbuf_uint(&e, now - (uint64_t) grant->rec.ending_since);
        /* Seconds with milliseconds for a person; the fields carry microseconds. */
        uint64_t ms = (now - (uint64_t) grant->rec.since) / 1000u;
        /* "Grant <id> for <slot> (VM of pid <pid>) released by the VMM; the group was free again after 1.234s" */
        coh_strbuf_init(&m, message, sizeof message);
        coh_strbuf_puts(&m, "Grant ");
        coh_strbuf_puts(&m, grant->rec.grant);
        coh_strbuf_puts(&m, " for ");
        coh_strbuf_puts(&m, grant->rec.device);
        coh_strbuf_puts(&m, " (VM of pid ");
        coh_strbuf_int(&m, grant->rec.peer_pid);
        coh_strbuf_puts(&m, ") ");
        coh_strbuf_puts(&m, end_message(grant->rec.end));
        coh_strbuf_puts(&m, probed ? "; the group was free again after " : "; the group was left to the kernel after ");
        coh_strbuf_uint(&m, ms / 1000u);
        coh_strbuf_puts(&m, ".");
        coh_strbuf_uint_pad(&m, ms % 1000u, 3);
        coh_strbuf_puts(&m, grant->rec.killed ? "s; the VMM was killed (RevokeKill=)" : "s");
        const struct coh_journal_field extra[] = {
                { "COHERENCYD_HELD_USEC", held },
                { "COHERENCYD_ENDING_USEC", ending },
        };
        log_grant(grant, true, LOG_INFO, COH_MESSAGE_GRANT_END, message, extra, ELEMENTSOF(extra));

        LIST_REMOVE(grant, link);
        grant_unindex(g, grant);
        grant_gone(g, grant);
        g->n_grants--;
        g->n_ending--;
        grant->rec.state = COH_GRANT_ENDED;
        event(g, grant, "ended");
        grant_free(grant, false);
        changed(g);
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
static int probe(struct coh_grant *g) {
        struct coh_platform *p = g->grants->platform;
        int r = p->ops->custody_probe_free(p, g->rec.iommu_group, &g->custody);
        if (r > 0) {
                grant_finish(g, true);
                return 1;
        }
        if (r < 0)
                coh_log(LOG_WARNING, NULL, "Cannot tell whether the group of grant %s (%s) is free: %s", g->rec.grant,
                        g->rec.device, strerror(-r));
        return 0;
}

static void probe_cb(evutil_socket_t fd, short what, void *userdata) {
        struct coh_grant *g = userdata;
        if (probe(g) == 0)
                schedule_probe(g);
}

static void held_warning(struct coh_grant *g) {
        struct coh_platform *p = g->grants->platform;
        struct coh_holder holders[16];
        int n = p->ops->custody_holders(p, g->rec.iommu_group, holders, ELEMENTSOF(holders));
        char list[512] = "", message[768];
        size_t len = 0;
        for (int i = 0; i < n && len < sizeof list; i++)
                len += (size_t) snprintf(list + len, sizeof list - len, "%s%s[%d]", i ? ", " : "", holders[i].comm,
                                         (int) holders[i].pid);
        /* Without CAP_SYS_PTRACE /proc shows only root's descriptors: where it
         * names nobody, say whether the VMM itself is still alive. */
        struct pollfd pfd = { .fd = coh_pidfd_fd(g->pidfd), .events = POLLIN };
        bool vmm_alive = g->pidfd && poll(&pfd, 1, 0) == 0;
        snprintf(message, sizeof message,
                 "Grant %s for %s (VM of pid %" PRId64 ") ended (%s) but its group is still held%s%s%s", g->rec.grant,
                 g->rec.device, g->rec.peer_pid, g->rec.end, n > 0 ? " by " : "", list,
                 n > 0        ? ""
                 : vmm_alive ? "; the VMM is still running (it, a process it passed the file to, or its VM holds it)"
                             : "; no process /proc shows holds it (a process it passed the file to, or a descriptor in flight)");
        const struct coh_journal_field extra[] = {
                { "COHERENCYD_HOLDERS", n > 0 ? list : NULL },
        };
        log_grant(g, false, LOG_WARNING, COH_MESSAGE_GRANT_HELD, message, extra, ELEMENTSOF(extra));
        g->rec.warned = true;
        coh_grant_touch(g);
        event(g->grants, g, "held");
}

static void kill_peer(struct coh_grant *g) {
        /* Through the pidfd: never a reused pid. */
        if (!g->pidfd) {
                coh_log(LOG_WARNING, NULL, "Cannot kill the VMM of grant %s: its process is not known", g->rec.grant);
                return;
        }
        /* The platform's: with privilege separation the helper sends it (CAP_KILL is its alone). */
        struct coh_platform *p = g->grants->platform;
        int r = p->ops->kill_peer(p, g->pidfd->fd);
        if (r < 0) {
                if (r != -ESRCH)
                        coh_log(LOG_WARNING, NULL, "Cannot kill the VMM of grant %s (pid %d): %s", g->rec.grant,
                                (int) g->rec.peer_pid, strerror(-r));
                return;
        }
        g->rec.killed = true;
        coh_grant_touch(g);
        coh_log(LOG_NOTICE, NULL, "Killed the VMM of revoked grant %s (pid %d): it still held %s", g->rec.grant,
                (int) g->rec.peer_pid, g->rec.device);
}

static void grant_timeout_cb(evutil_socket_t fd, short what, void *userdata) {
        struct coh_grant *g = userdata;
        if (probe(g) > 0)
                return;
        held_warning(g);
        if (g->rec.kill)
                kill_peer(g);
}

void coh_grant_watch(struct coh_grant *g) {
        struct event_base *base = g->grants->base;
        if (!g->ev_timeout) {
                g->ev_timeout = event_new(base, -1, 0, grant_timeout_cb, g);
                g->ev_probe = g->custody.probe_fd >= 0 ? event_new(base, g->custody.probe_fd, EV_READ, probe_cb, g)
                                                       : event_new(base, -1, 0, probe_cb, g);
        }
        if (!g->ev_timeout || !g->ev_probe)
                return; /* no memory: the group is checked again on the next event for it */
        uint64_t t = g->grants->release_timeout_usec;
        uint64_t elapsed = now_usec() - g->rec.ending_since;
        uint64_t left = elapsed >= t ? 0 : t - elapsed;
        struct timeval tv = { .tv_sec = (time_t) (left / 1000000u), .tv_usec = (suseconds_t) (left % 1000000u) };
        if (!g->rec.warned)
                event_add(g->ev_timeout, &tv);
        g->probe_ms = PROBE_FIRST_MS;
        schedule_probe(g);
}

/* Takes an active grant out of its VM and owner. */
static void grant_detach(struct coh_grant *g) {
        struct coh_vm *vm = TAKE_PTR(g->vm);
        struct coh_grant_owner *owner = TAKE_PTR(g->owner);
        if (owner) {
                owner->n_grants--;
                LIST_REMOVE(g, owner_link);
        }
        if (!vm)
                return;
        vm->n_grants--;
        if (g->rec.decision == COH_DECISION_GRANTED)
                vm->n_granted--;
        if (vm->n_grants == 0) /* never keep a VM alive that no grant needs */
                coh_vm_free(g->grants, vm);
}

int coh_grant_end(struct coh_grant *g, const char *end, bool kill) {
        const char *what = streq(end, "revoke") ? "revoked" : "ending";
        if (g->rec.state == COH_GRANT_ENDING) {
                /* A revoke of a grant that already ended: it keeps its end, gains the kill. */
                if (kill && !g->rec.kill) {
                        g->rec.kill = true;
                        coh_grant_touch(g);
                        if (g->rec.warned)
                                kill_peer(g);
                }
                event(g->grants, g, what);
                return 0;
        }

        close_custody(g, true); /* the pin: from now on the group is the kernel's to free */
        /* systemd closes its stored copy of the pin only once it has read our
         * FDSTOREREMOVE=1: wait for that, or a VMM that let go first would be
         * told "ending" (seen in the systemd tier). */
        coh_fdstore_sync(g->grants->store);
        grant_detach(g);
        g->rec.state = COH_GRANT_ENDING;
        g->rec.kill = kill;
        g->rec.ending_since = now_usec();
        coh_grant_touch(g);
        strscpy0(g->rec.end, end, sizeof g->rec.end);
        g->grants->n_ending++;
        /* A group already free ends at once: watchers hear "ended" alone. */
        if (probe(g) > 0)
                return 1;
        event(g->grants, g, what);
        coh_grant_watch(g);
        changed(g->grants);
        return 0;
}

void coh_grants_end_owned(struct coh_grants *g, struct coh_grant_owner *owner, const char *end) {
        /* Each end takes the grant out of the owner's list (grant_detach()). */
        struct coh_grant *grant;
        while ((grant = LIST_FIRST(&owner->owned)))
                coh_grant_end(grant, end, false);
}

struct coh_vm *coh_grants_find_vm_id(struct coh_grants *g, unsigned id) {
        struct coh_vm *vm;
        LIST_FOREACH(vm, &g->vms, link)
                if (vm->id == id)
                        return vm;
        return NULL;
}

struct coh_vm *coh_grants_adopt_vm(struct coh_grants *g, unsigned id, int vm_fd) {
        struct vm_place place;
        bool sorted = vm_search(g, vm_fd, &place) >= 0;
        struct coh_vm *vm = vm_new(g, id, vm_fd, sorted ? &place : NULL);
        if (!vm)
                safe_close(vm_fd);
        return vm;
}

int coh_grants_adopt(struct coh_grants *g, struct coh_grant *grant, struct coh_vm *vm, struct coh_grant_owner *owner) {
        grant->grants = g;
        grant->ev_probe = grant->ev_timeout = NULL;
        /* Without memory for its index it is held all the same, found by nothing but its end. */
        int r = grant_index(g, grant);
        LIST_INSERT_HEAD(&g->grants, grant, link);
        g->n_grants++;
        grant->dirty = false;
        coh_grant_touch(grant);
        if (grant->rec.state == COH_GRANT_ENDING) {
                g->n_ending++;
                return r;
        }
        grant_attach(grant, vm, owner);
        if (owner)
                grant->pidfd = coh_pidfd_ref(owner->pidfd);
        return r;
}

static json_object *holders_json(const struct coh_grant *g) {
        struct coh_platform *p = g->grants->platform;
        struct coh_holder holders[16];
        int n = p->ops->custody_holders(p, (int) g->rec.iommu_group, holders, ELEMENTSOF(holders));
        json_object *list = json_object_new_array();
        for (int i = 0; i < n; i++) {
                json_object *h = json_object_new_object();
                coh_json_add(h, "pid", json_object_new_int64(holders[i].pid));
                coh_json_add(h, "comm", json_object_new_string(holders[i].comm));
                coh_json_append(list, h);
        }
        return list;
}

json_object *coh_grant_to_json(const struct coh_grant *g, bool manager) {
        struct coh_grant_record rec = grant_shown(g);
        json_object *o = json_object_new_object();
        coh_record_to_json(coh_grant_record_fields, &rec, manager ? COH_GRANT_FORM_OPERATOR : COH_GRANT_FORM_VMM, o);
        if (manager && g->rec.state == COH_GRANT_ENDING)
                coh_json_add(o, "holders", holders_json(g));
        return o;
}

unsigned coh_grants_n_vms(const struct coh_grants *g) {
        return g->n_vms_held;
}

static void no_free(void *p) {
}

void coh_grants_forget(struct coh_grants *g) {
        LIST_INIT(&g->dirty);
        free(TAKE_PTR(g->gone));
        g->n_gone = g->n_gone_alloc = 0;
        tdestroy(TAKE_PTR(g->by_id), no_free);
        tdestroy(TAKE_PTR(g->by_group), no_free);
        g->n_group_dups = 0;
        for (size_t b = 0; b < g->n_vm_blocks; b++)
                free(g->vm_blocks[b]);
        free(TAKE_PTR(g->vm_blocks));
        g->n_vms = g->n_vm_blocks = g->n_vm_blocks_alloc = 0;
        while (!LIST_EMPTY(&g->grants)) {
                struct coh_grant *grant = LIST_FIRST(&g->grants);
                LIST_REMOVE(grant, link);
                grant_free(grant, true);
        }
        g->n_grants = g->n_ending = 0;
        while (!LIST_EMPTY(&g->vms)) {
                struct coh_vm *vm = LIST_FIRST(&g->vms);
                LIST_REMOVE(vm, link);
                safe_close(vm->vm_fd);
                free(vm);
        }
        g->n_vms_held = 0;
}

void coh_grants_shutdown(struct coh_grants *g) {
        struct coh_grant *grant, *next;
        for (grant = LIST_FIRST(&g->grants); grant; grant = next) {
                next = LIST_NEXT(grant, link);
                if (grant->rec.state == COH_GRANT_ACTIVE)
                        coh_grant_end(grant, "shutdown", false);
        }
        /* Nobody will watch them: the kernel frees each group with its last holder. */
        while (!LIST_EMPTY(&g->grants))
                grant_finish(LIST_FIRST(&g->grants), false);
}
