/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A peer's pidfd, shared: its connection holds one reference (the exit
 * watch, the unit check), each grant it made another (RevokeKill=, the
 * still-held warning), so a grant costs no descriptor copy and outlives the
 * connection with it (ending, then killed). The descriptor is closed with
 * the last reference. Not in the fd store: after a restart an adopted
 * connection asks the kernel again (server.c peer_pidfd), and its grants
 * share what it got.
 */

#include <errno.h>
#include <stdlib.h>

#include "util.h"

struct coh_pidfd {
        unsigned n_ref;
        int fd;
};

/* Takes fd on success; NULL without memory, and fd is still the caller's. */
static inline struct coh_pidfd *coh_pidfd_new(int fd) {
        struct coh_pidfd *p = malloc(sizeof *p);
        if (!p)
                return NULL;
        *p = (struct coh_pidfd) { .n_ref = 1, .fd = fd };
        return p;
}

static inline struct coh_pidfd *coh_pidfd_ref(struct coh_pidfd *p) {
        if (p)
                p->n_ref++;
        return p;
}

/* Returns NULL to store back: p = coh_pidfd_unref(p). */
static inline struct coh_pidfd *coh_pidfd_unref(struct coh_pidfd *p) {
        if (p && --p->n_ref == 0) {
                safe_close(p->fd);
                free(p);
        }
        return NULL;
}

/* The descriptor, or -EBADF for none. */
static inline int coh_pidfd_fd(const struct coh_pidfd *p) {
        return p ? p->fd : -EBADF;
}
