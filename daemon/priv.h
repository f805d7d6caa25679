/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Privilege separation (DESIGN.md §9; OpenBSD's priv in ntpd and vmd,
 * qemu-pr-helper). coherencyd is two processes:
 *
 *   the parser  the main process: the manager and everything it runs (the
 *               server, the methods, the grants, the journal). It accepts
 *               connections and parses clients' bytes, so it holds nothing:
 *               an unprivileged user, no capability (sandbox.h).
 *   the helper  forked from it at start, before anything touches a client;
 *               stays uid 0 and keeps CAP_KILL with RevokeKill= and nothing
 *               else. It does the platform's custody operations for the
 *               parser and nothing more, one fixed-size request at a time,
 *               each re-validated (priv.c), and exits when its socket closes.
 *
 * The parser reaches the helper through a platform (platform-priv.c) whose
 * custody ops send requests and whose classify/ioas_coherent are the inner
 * platform's own, run in the parser: telling what a client passed needs no
 * privilege.
 *
 * The wire: a SOCK_SEQPACKET socketpair, one request and one reply per
 * message, strictly in turn. A request is exactly sizeof(struct
 * coh_priv_request) bytes with the descriptors its op takes; a reply exactly
 * sizeof(struct coh_priv_reply) with the descriptors its `fds` mask names, in
 * mask order. Both sides run the same binary, so the structs are the format.
 */

#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include "facts.h"
#include "platform.h"

enum coh_priv_op {
        /* Open the device's group (or cdev), attach it to the IOAS passed
         * (0 or 1 descriptor: a VFIO container or an iommufd), set the IOMMU
         * model, pin: platform custody_begin. Reply: file, pin, probe. */
        COH_PRIV_CUSTODY_BEGIN = 1,
        /* Whether group is free: linux opens it exclusively and closes it
         * again (no descriptor); sim reads its probe descriptor (passed). */
        COH_PRIV_PROBE_FREE,
        /* The processes holding group, as /proc shows them to uid 0. No descriptor. */
        COH_PRIV_HOLDERS,
        /* SIGKILL through the pidfd passed (1 descriptor); only with RevokeKill=. */
        COH_PRIV_KILL,
};

struct coh_priv_request {
        uint32_t op;
        int32_t group;                /* IOMMU group */
        char slot[COH_SLOT_MAX];      /* CUSTODY_BEGIN: the PCI function, NUL-terminated */
};

#define COH_PRIV_HOLDERS_MAX 16
#define COH_PRIV_OPERATION_MAX 64

/* Which descriptors ride on a reply, in this order. */
enum {
        COH_PRIV_FD_FILE = 1u << 0,
        COH_PRIV_FD_PIN = 1u << 1,
        COH_PRIV_FD_PROBE = 1u << 2,
};

struct coh_priv_reply {
        uint32_t op;                  /* the request's */
        int32_t result;               /* >= 0 (HOLDERS: the count), or -errno */
        uint32_t fds;                 /* COH_PRIV_FD_* */
        char operation[COH_PRIV_OPERATION_MAX]; /* CUSTODY_BEGIN failed: the step, else "" */
        struct coh_holder holders[COH_PRIV_HOLDERS_MAX];
};

/* The most descriptors a reply carries; and a message at all (more are closed on receipt,
 * and the message refused). */
#define COH_PRIV_REPLY_FDS_MAX 3
#define COH_PRIV_FDS_MAX 4

enum {
        /* Enter the helper's sandbox (sandbox.h) before serving. */
        COH_PRIV_SANDBOX = 1u << 0,
        /* RevokeKill=: keep CAP_KILL and serve COH_PRIV_KILL. Without it a
         * kill is refused: as uid 0 the helper could still signal root's
         * processes, and nobody asked for kills. */
        COH_PRIV_KILL_ALLOWED = 1u << 1,
};

/* One message of len bytes with n_fds descriptors (SCM_RIGHTS, at most COH_PRIV_FDS_MAX): 0 or -errno. */
int coh_priv_send(int sock, const void *buf, size_t len, const int *fds, size_t n_fds);
/*
 * One message into buf (a longer one is cut: MSG_TRUNC in *ret_flags), its
 * descriptors (close-on-exec) into fds; what does not fit is closed, and
 * that, like control data other than SCM_RIGHTS, sets MSG_CTRUNC. Returns
 * the length (0: the other end closed), or -errno.
 */
ssize_t coh_priv_recv(int sock, void *buf, size_t size, int fds[static COH_PRIV_FDS_MAX], size_t *ret_n_fds,
                      int *ret_flags);

/*
 * Forks the helper. The child keeps only its end of a new socketpair, stdio
 * and inner's sysfs descriptor (every other descriptor the process has, the
 * listening sockets and the fd store's included, is closed there), enters its
 * sandbox with COH_PRIV_SANDBOX, serves inner's custody ops and exits when the
 * socket closes; it never returns. The parent gets its end (close-on-exec) and
 * the helper's pid.
 */
int coh_priv_fork(struct coh_platform *inner, unsigned flags, int *ret_fd, pid_t *ret_pid, char *errbuf,
                  size_t errlen);

/* The helper's loop: serves requests on fd with inner until the socket closes (0) or fails (-errno). */
int coh_priv_serve(int fd, struct coh_platform *inner, unsigned flags);

/*
 * The parser's side: a platform whose custody ops and kill_peer are requests
 * to the helper on fd, and whose classify and ioas_coherent are inner's.
 * Takes ownership of inner, fd and the helper (reaped by coh_platform_free,
 * which closes fd first: the helper exits on that).
 */
int coh_platform_priv_new(struct coh_platform *inner, int fd, pid_t helper, struct coh_platform **ret);
