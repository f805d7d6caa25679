/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * grants.c's lookups: a VM found by any descriptor of its open file (kcmp)
 * among many, whatever order they came in and went, grants by id and by
 * group. Eventfds stand in for VMs: kcmp(KCMP_FILE) compares any two files.
 */
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <linux/kcmp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cmocka.h>

#include "fdstore.h"
#include "notify.h"
#include "grants.h"
#include "policy.h"

#define N 300

static int probe_free(struct coh_platform *p, int group, const struct coh_custody *c) {
        return 1; /* every group is free at once: a release ends the grant */
}

static int holders(struct coh_platform *p, int group, struct coh_holder *ret, size_t n) {
        return 0;
}

static const struct coh_platform_ops ops = {
        .custody_probe_free = probe_free,
        .custody_holders = holders,
};

struct fixture {
        struct event_base *base;
        struct coh_platform platform;
        struct coh_notify notify;
        struct coh_fdstore store;
        struct coh_grants grants;
        struct coh_peer peer;
        struct coh_grant_owner owner;
};

static struct fixture *fixture_new(void) {
        struct fixture *f = calloc(1, sizeof *f);
        assert_non_null(f);
        f->base = event_base_new();
        assert_non_null(f->base);
        f->platform = (struct coh_platform) { .ops = &ops, .sysfs_fd = -EBADF };
        coh_notify_init(&f->notify);
        coh_fdstore_init(&f->store, &f->notify);
        coh_grants_init(&f->grants, f->base, &f->platform, &f->store, &(struct coh_grants_callbacks) {});
        f->peer = (struct coh_peer) { .pid = getpid(), .uid = 1000, .gid = 1001 };
        f->owner = (struct coh_grant_owner) { .id = 1, .peer = &f->peer, .pidfd = NULL };
        return f;
}

static void fixture_free(struct fixture *f) {
        coh_grants_shutdown(&f->grants);
        coh_grants_forget(&f->grants);
        event_base_free(f->base);
        free(f);
}

static struct coh_grant *grant_of(struct fixture *f, struct coh_grant_owner *owner, int vm_fd, int group) {
        struct coh_custody custody = { .pin_fd = -EBADF, .probe_fd = -EBADF };
        struct coh_grant_record tmpl = { .decision = COH_DECISION_GRANTED, .iommu_group = group };
        snprintf(tmpl.device, sizeof tmpl.device, "0000:00:%02x.%x", group / 8 % 256, group % 8);
        struct coh_grant *g = NULL;
        assert_int_equal(coh_grant_create(&f->grants, owner, vm_fd, &custody, &tmpl, &g), 0);
        assert_non_null(g);
        return g;
}

static struct coh_grant *grant(struct fixture *f, int vm_fd, int group) {
        return grant_of(f, &f->owner, vm_fd, group);
}

/* A dup of each VM's descriptor finds that VM, and only it, as VMs come and go. */
static void test_vm_found_among_many(void **state) {
        struct fixture *f = fixture_new();
        int fds[N];
        struct coh_grant *gs[N];
        for (int i = 0; i < N; i++) {
                fds[i] = eventfd(0, EFD_CLOEXEC);
                assert_true(fds[i] >= 0);
                gs[i] = grant(f, fcntl(fds[i], F_DUPFD_CLOEXEC, 3), i);
        }
        assert_int_equal(coh_grants_n_vms(&f->grants), N);
        for (int i = 0; i < N; i++) {
                assert_ptr_equal(coh_grants_find_vm(&f->grants, fds[i]), gs[i]->vm);
                assert_ptr_equal(coh_grants_find(&f->grants, gs[i]->rec.grant), gs[i]);
                assert_ptr_equal(coh_grants_find_group(&f->grants, i), gs[i]);
        }
        /* A second grant of a VM held joins it. */
        struct coh_grant *again = grant(f, fcntl(fds[7], F_DUPFD_CLOEXEC, 3), N + 7);
        assert_ptr_equal(again->vm, gs[7]->vm);
        assert_int_equal(gs[7]->vm->n_grants, 2);
        assert_int_equal(coh_grants_n_vms(&f->grants), N);

        /* Every other VM goes: the rest are still found, the gone ones not. */
        for (int i = 0; i < N; i += 2) {
                char id[sizeof gs[i]->rec.grant];
                snprintf(id, sizeof id, "%s", gs[i]->rec.grant);
                assert_int_equal(coh_grant_end(gs[i], "release", false), 1);
                assert_null(coh_grants_find(&f->grants, id));
                assert_null(coh_grants_find_group(&f->grants, i));
        }
        for (int i = 0; i < N; i++) {
                if (i % 2 == 0)
                        assert_null(coh_grants_find_vm(&f->grants, fds[i]));
                else
                        assert_ptr_equal(coh_grants_find_vm(&f->grants, fds[i]), gs[i]->vm);
        }
        int other = eventfd(0, EFD_CLOEXEC);
        assert_null(coh_grants_find_vm(&f->grants, other));
        close(other);
        for (int i = 0; i < N; i++)
                close(fds[i]);
        fixture_free(f);
}

static pid_t self;

static int kcmp_order(const void *a, const void *b) {
        long r = syscall(SYS_kcmp, self, self, KCMP_FILE, (unsigned long) *(const int *) a,
                         (unsigned long) *(const int *) b);
        assert_true(r >= 0);
        return r == 0 ? 0 : r == 1 ? -1 : 1;
}

/* VMs that come each before all the others use up the labels between two
 * neighbours (halved each time) and make them spread again: found all the same. */
static void test_vm_labels_spread_again(void **state) {
        struct fixture *f = fixture_new();
        enum { M = 200 };
        int fds[M];
        struct coh_grant *gs[M];
        self = getpid();
        for (int i = 0; i < M; i++) {
                fds[i] = eventfd(0, EFD_CLOEXEC);
                assert_true(fds[i] >= 0);
        }
        qsort(fds, M, sizeof *fds, kcmp_order);
        for (int i = M - 1; i >= 0; i--) {
                gs[i] = grant(f, fcntl(fds[i], F_DUPFD_CLOEXEC, 3), i);
                if (i + 1 < M)
                        assert_true(gs[i]->vm->order < gs[i + 1]->vm->order);
        }
        /* Taken out from the middle outwards, by label. */
        for (int i = M / 2; i < M; i++) {
                assert_int_equal(coh_grant_end(gs[i], "release", false), 1);
                assert_null(coh_grants_find_vm(&f->grants, fds[i]));
        }
        for (int i = 0; i < M / 2; i++)
                assert_ptr_equal(coh_grants_find_vm(&f->grants, fds[i]), gs[i]->vm);
        for (int i = 0; i < M; i++)
                close(fds[i]);
        fixture_free(f);
}

/* Thousands of VMs, come in and gone in a random order (a fixed seed): the
 * blocks they are kept in fill, split and empty, and every VM held is found,
 * none gone is, and the labels stay in kcmp order throughout. */
static void test_vm_blocks_split_and_empty(void **state) {
        struct fixture *f = fixture_new();
        enum { M = 3000 };
        static int fds[M];
        static struct coh_grant *gs[M];
        unsigned seed = 11;
        self = getpid();
        for (int i = 0; i < M; i++) {
                fds[i] = eventfd(0, EFD_CLOEXEC);
                assert_true(fds[i] >= 0);
                gs[i] = grant(f, fcntl(fds[i], F_DUPFD_CLOEXEC, 3), i);
        }
        assert_int_equal(coh_grants_n_vms(&f->grants), M);
        /* Two thirds go, picked at random. */
        for (int k = 0; k < 2 * M / 3; k++) {
                int i = (int) (rand_r(&seed) % M);
                if (!gs[i])
                        continue;
                assert_int_equal(coh_grant_end(gs[i], "release", false), 1);
                gs[i] = NULL;
        }
        /* And as many come back, each on a VM that went (its descriptor still open here). */
        for (int i = 0; i < M; i++)
                if (!gs[i] && rand_r(&seed) % 2)
                        gs[i] = grant(f, fcntl(fds[i], F_DUPFD_CLOEXEC, 3), i);
        unsigned held = 0;
        for (int i = 0; i < M; i++) {
                if (gs[i]) {
                        held++;
                        assert_ptr_equal(coh_grants_find_vm(&f->grants, fds[i]), gs[i]->vm);
                } else
                        assert_null(coh_grants_find_vm(&f->grants, fds[i]));
        }
        assert_int_equal(coh_grants_n_vms(&f->grants), held);
        /* Labels in kcmp order: sorted by descriptor order, the VMs' labels grow. */
        int order[M];
        unsigned n = 0;
        for (int i = 0; i < M; i++)
                if (gs[i])
                        order[n++] = fds[i];
        qsort(order, n, sizeof *order, kcmp_order);
        for (unsigned k = 1; k < n; k++)
                assert_true(coh_grants_find_vm(&f->grants, order[k - 1])->order <
                            coh_grants_find_vm(&f->grants, order[k])->order);
        for (int i = 0; i < M; i++)
                close(fds[i]);
        fixture_free(f);
}

/* A connection's end ends its grants, and only its own: another's stay. */
static void test_end_owned_ends_only_the_owners(void **state) {
        struct fixture *f = fixture_new();
        struct coh_grant_owner other = { .id = 2, .peer = &f->peer, .pidfd = NULL };
        struct coh_grant *theirs[4];
        for (int i = 0; i < 4; i++) {
                (void) grant(f, eventfd(0, EFD_CLOEXEC), 2 * i);
                theirs[i] = grant_of(f, &other, eventfd(0, EFD_CLOEXEC), 2 * i + 1);
        }
        assert_int_equal(f->owner.n_grants, 4);
        assert_int_equal(other.n_grants, 4);
        coh_grants_end_owned(&f->grants, &f->owner, "disconnect");
        assert_int_equal(f->owner.n_grants, 0);
        assert_true(LIST_EMPTY(&f->owner.owned));
        assert_int_equal(f->grants.n_grants, 4);
        for (int i = 0; i < 4; i++) {
                assert_null(coh_grants_find_group(&f->grants, 2 * i));
                assert_ptr_equal(coh_grants_find_group(&f->grants, 2 * i + 1), theirs[i]);
        }
        fixture_free(f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vm_found_among_many),
                cmocka_unit_test(test_vm_labels_spread_again),
                cmocka_unit_test(test_vm_blocks_split_and_empty),
                cmocka_unit_test(test_end_owned_ends_only_the_owners),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
