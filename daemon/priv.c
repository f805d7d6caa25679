/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The privileged helper (priv.h): a child of the main process, forked before
 * anything touches a client, that does the custody operations for it and
 * nothing else. It trusts nothing it is sent: the main process parses every
 * client's bytes and may be the one that was taken over. So each request is
 * checked again here before the kernel is asked:
 *
 *  - exactly one request's size, no truncation, no control message but
 *    SCM_RIGHTS, no more descriptors than the op takes (else EBADMSG/EBADF);
 *  - CUSTODY_BEGIN: the slot is a well-formed PCI address (facts.c), which
 *    sysfs shows bound to vfio-pci in the group named (else ENODEV); the IOAS
 *    passed, if any, is what the platform's classify calls a VFIO container
 *    or an iommufd (else EBADF). The binding is read here, not taken;
 *  - PROBE_FREE, HOLDERS: a group that sysfs shows (else ENOENT); a probe
 *    descriptor (the simulated platform's) is a socket;
 *  - KILL: only with RevokeKill= (COH_PRIV_KILL_ALLOWED), through a pidfd (the
 *    kernel's anon inode "[pidfd]", not a /proc/PID directory, which
 *    pidfd_send_signal takes too), of a process other than PID 1, the helper
 *    and the main process.
 *
 * A refused request is answered with the errno and logged (to stderr, which
 * the unit sends to the journal): the main process never sends one, so one
 * is a bug or an attack. What sysfs says now (a device unbound, a group gone
 * since the main process looked) is an answer, not a refusal. The helper
 * keeps no descriptor across requests and no state at all: a restart of the
 * daemon forks a new one, and this one leaves when its socket closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "facts-cache.h"
#include "frame.h"
#include "priv.h"
#include "sandbox.h"
#include "util.h"

#ifndef PID_FS_MAGIC
#define PID_FS_MAGIC 0x50494446 /* pidfs, 6.9+: a pidfd's file system there */
#endif

static void helper_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void helper_log(const char *fmt, ...) {
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        /* "<3>": an error, as the journal reads a stderr stream's lines. */
        fprintf(stderr, "<3>coherencyd (privileged helper): %s\n", line);
}

static void close_all(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = safe_close(fds[i]);
}

/* ---- the wire, both sides ------------------------------------------------------ */

int coh_priv_send(int sock, const void *buf, size_t len, const int *fds, size_t n_fds) {
        if (n_fds > COH_PRIV_FDS_MAX)
                return -E2BIG;
        ssize_t n = coh_sendmsg_fds(sock, buf, len, fds, n_fds, MSG_NOSIGNAL);
        if (n < 0)
                return (int) n;
        return (size_t) n == len ? 0 : -EPROTO;
}

ssize_t coh_priv_recv(int sock, void *buf, size_t size, int fds[static COH_PRIV_FDS_MAX], size_t *ret_n_fds,
                      int *ret_flags) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * COH_PRIV_FDS_MAX)];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = size };
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf
        };
        ssize_t n;

        *ret_n_fds = 0;
        do
                n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        *ret_flags = mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC);
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
                        *ret_flags |= MSG_CTRUNC;
                        continue;
                }
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
                        if (*ret_n_fds < COH_PRIV_FDS_MAX)
                                fds[(*ret_n_fds)++] = fd;
                        else {
                                (void) close(fd);
                                *ret_flags |= MSG_CTRUNC;
                        }
                }
        }
        return n;
}

/* ---- the helper ---------------------------------------------------------------- */

/*
 * One request: 1, 0 at the end (the main process closed its end), -EBADMSG
 * for a malformed one (its descriptors in fds all the same, to be closed),
 * other -errno when the socket fails.
 */
static int receive(int sock, struct coh_priv_request *req, int fds[static COH_PRIV_FDS_MAX], size_t *n_fds) {
        char data[sizeof *req + 1]; /* one byte more: a longer message is seen as such */
        int flags;
        ssize_t n = coh_priv_recv(sock, data, sizeof data, fds, n_fds, &flags);
        if (n < 0)
                return (int) n;
        /* SOCK_SEQPACKET: a read of 0 is the end (or an empty message, which no request is). */
        if (n == 0)
                return 0;
        if (flags || (size_t) n != sizeof *req)
                return -EBADMSG;
        memcpy(req, data, sizeof *req);
        return 1;
}

/* What the helper was asked and how it went, for one reply. */
struct call {
        const struct coh_priv_request *req;
        int *fds;
        size_t n_fds;
        struct coh_priv_reply reply;
        int out[COH_PRIV_REPLY_FDS_MAX]; /* file, pin, probe: owned */
        const char *refused;             /* why the request was refused, when it was */
};

static int refuse(struct call *c, int r, const char *why) {
        c->refused = why;
        return r;
}

/* The group's directory in sysfs exists. */
static bool group_exists(struct coh_platform *inner, int group) {
        char path[64];
        if (group < 0)
                return false;
        snprintf(path, sizeof path, "kernel/iommu_groups/%d", group);
        return faccessat(inner->sysfs_fd, path, F_OK, 0) == 0;
}

static int do_custody_begin(struct call *c, struct coh_platform *inner) {
        const struct coh_priv_request *req = c->req;
        struct coh_device_facts device;
        struct coh_fd_info ioas;
        struct coh_custody custody = { .pin_fd = -EBADF, .probe_fd = -EBADF };
        const char *operation = NULL;
        int file = -EBADF, r;

        if (!memchr(req->slot, 0, sizeof req->slot) || !coh_slot_valid(req->slot))
                return refuse(c, -EINVAL, "not a PCI address");
        if (c->n_fds > 1)
                return refuse(c, -EBADF, "more than one descriptor");
        /* The binding is read here, from sysfs, never taken from the request:
         * the driver and the group are all custody needs (what else the device
         * is was the decision's, in the main process). A device that is not (or
         * no longer) VFIO's in that group is ENODEV, not a refusal: it may have
         * been unbound since the main process looked. */
        r = coh_facts_read_binding(inner->sysfs_fd, req->slot, &device);
        if (r < 0)
                return r;
        if (!streq(device.driver, "vfio-pci") || device.iommu_group < 0 || device.iommu_group != req->group)
                return -ENODEV;
        if (c->n_fds == 1) {
                r = inner->ops->classify(inner, c->fds[0], &ioas);
                if (r < 0)
                        return refuse(c, r, "cannot tell what the IOAS descriptor is");
                if (ioas.kind != COH_FD_VFIO_CONTAINER && ioas.kind != COH_FD_IOMMUFD)
                        return refuse(c, -EBADF, "the IOAS descriptor is no VFIO container or iommufd");
        }

        r = inner->ops->custody_begin(inner, &device, c->n_fds == 1 ? c->fds[0] : -EBADF,
                                      c->n_fds == 1 ? &ioas : NULL, &file, &custody, &operation);
        if (r < 0) {
                snprintf(c->reply.operation, sizeof c->reply.operation, "%s", operation ?: "");
                return r;
        }
        c->out[0] = file;
        c->out[1] = custody.pin_fd;
        c->out[2] = custody.probe_fd;
        for (unsigned i = 0; i < COH_PRIV_REPLY_FDS_MAX; i++)
                if (c->out[i] >= 0)
                        c->reply.fds |= 1u << i;
        return 0;
}

/* linux: opens the group (no descriptor); sim: reads the probe end of the
 * socketpair passed. Here rather than where the probe descriptor is held,
 * so that it comes after the helper let go of its copies of what it handed
 * over: requests are served one after the other. */
static int do_probe_free(struct call *c, struct coh_platform *inner) {
        struct coh_custody custody = { .pin_fd = -EBADF, .probe_fd = -EBADF };
        struct stat st;
        if (c->n_fds > 1)
                return refuse(c, -EBADF, "more than one descriptor");
        if (c->n_fds == 1 && (fstat(c->fds[0], &st) < 0 || !S_ISSOCK(st.st_mode)))
                return refuse(c, -EBADF, "a probe descriptor that is no socket");
        if (!group_exists(inner, c->req->group))
                return -ENOENT;
        if (c->n_fds == 1)
                custody.probe_fd = c->fds[0];
        return inner->ops->custody_probe_free(inner, c->req->group, &custody);
}

/* The pid a pidfd refers to, from its fdinfo ("Pid:\t123"); -1 once it has exited, 0 outside our namespace. */
static int pidfd_pid(int fd, pid_t *ret) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
        int info = open(path, O_RDONLY | O_CLOEXEC);
        if (info < 0)
                return -errno;
        ssize_t n = read(info, buf, sizeof buf - 1);
        (void) close(info);
        if (n <= 0)
                return n < 0 ? -errno : -EIO;
        buf[n] = '\0';
        const char *p = strstr(buf, "\nPid:\t");
        if (!p)
                return -EBADF;
        *ret = (pid_t) strtol(p + 6, NULL, 10);
        return 0;
}

/* Whether fd is a pidfd: pidfd_send_signal also takes a /proc/PID directory, this does not. */
static bool is_pidfd(int fd) {
        char path[64], link[64];
        struct statfs sfs;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n < 0 || fstatfs(fd, &sfs) < 0)
                return false;
        link[n] = '\0';
        return streq(link, "anon_inode:[pidfd]") &&
               ((uint32_t) sfs.f_type == (uint32_t) ANON_INODE_FS_MAGIC ||
                (uint32_t) sfs.f_type == (uint32_t) PID_FS_MAGIC);
}

static int do_kill(struct call *c, struct coh_platform *inner, unsigned flags) {
        pid_t pid = 0;
        if (!(flags & COH_PRIV_KILL_ALLOWED))
                return refuse(c, -EPERM, "a kill without RevokeKill=");
        if (c->n_fds != 1 || !is_pidfd(c->fds[0]))
                return refuse(c, -EBADF, "a kill without a pidfd");
        int r = pidfd_pid(c->fds[0], &pid);
        if (r < 0)
                return refuse(c, r, "a pidfd without a pid");
        if (pid < 0)
                return -ESRCH;
        /* 0: a process outside our PID namespace, which we cannot tell from anything. */
        if (pid <= 1 || pid == getpid() || pid == getppid())
                return refuse(c, -EPERM, "a kill of PID 1, the helper, the daemon or a process it cannot name");
        return inner->ops->kill_peer(inner, c->fds[0]);
}

static int handle(struct call *c, struct coh_platform *inner, unsigned flags) {
        const struct coh_priv_request *req = c->req;
        int r;

        switch (req->op) {
        case COH_PRIV_CUSTODY_BEGIN:
                return do_custody_begin(c, inner);
        case COH_PRIV_PROBE_FREE:
                return do_probe_free(c, inner);
        case COH_PRIV_HOLDERS:
                if (c->n_fds != 0)
                        return refuse(c, -EBADF, "descriptors with a request that takes none");
                if (!group_exists(inner, req->group))
                        return -ENOENT; /* it may have gone with its device: no refusal */
                r = inner->ops->custody_holders(inner, req->group, c->reply.holders, COH_PRIV_HOLDERS_MAX);
                return r < 0 ? r : (r > COH_PRIV_HOLDERS_MAX ? COH_PRIV_HOLDERS_MAX : r);
        case COH_PRIV_KILL:
                return do_kill(c, inner, flags);
        default:
                return refuse(c, -EBADMSG, "an unknown request");
        }
}

static int send_reply(int sock, const struct coh_priv_reply *reply, const int *out) {
        int fds[COH_PRIV_REPLY_FDS_MAX];
        size_t n = 0;
        for (size_t i = 0; i < COH_PRIV_REPLY_FDS_MAX; i++)
                if (reply->fds & (1u << i))
                        fds[n++] = out[i];
        return coh_priv_send(sock, reply, sizeof *reply, fds, n);
}

int coh_priv_serve(int sock, struct coh_platform *inner, unsigned flags) {
        for (;;) {
                struct coh_priv_request req = {};
                int fds[COH_PRIV_FDS_MAX];
                struct call c = { .req = &req, .fds = fds, .out = { -EBADF, -EBADF, -EBADF } };

                int r = receive(sock, &req, fds, &c.n_fds);
                if (r == 0) {
                        close_all(fds, c.n_fds);
                        return 0;
                }
                if (r < 0 && r != -EBADMSG)
                        return r;
                c.reply.op = req.op;
                c.reply.result = r == -EBADMSG ? refuse(&c, r, "a malformed message") : handle(&c, inner, flags);
                if (c.refused)
                        helper_log("refused request %u (group %d): %s: %s", (unsigned) req.op, (int) req.group,
                                   c.refused, strerror(-c.reply.result));
                close_all(fds, c.n_fds);
                r = send_reply(sock, &c.reply, c.out);
                close_all(c.out, COH_PRIV_REPLY_FDS_MAX);
                if (r == -EPIPE || r == -ECONNRESET)
                        return 0; /* the main process is gone: so are we */
                if (r < 0)
                        return r;
        }
}

/* Closes every descriptor above stdio but a and b. */
static int close_all_but(int a, int b) {
        int keep[2] = { a < b ? a : b, a < b ? b : a };
        unsigned from = 3;
        for (size_t i = 0; i < ELEMENTSOF(keep); i++) {
                if (keep[i] < 0 || (unsigned) keep[i] < from)
                        continue;
                if ((unsigned) keep[i] > from && close_range(from, (unsigned) keep[i] - 1, 0) < 0)
                        return -errno;
                from = (unsigned) keep[i] + 1;
        }
        return close_range(from, ~0U, 0) < 0 ? -errno : 0;
}

static _Noreturn void helper_main(int sock, struct coh_platform *inner, unsigned flags) {
        char errbuf[256] = "";
        /* It leaves when the main process does (its socket closes), not on the
         * unit's SIGTERM or a terminal's ^C: the main process may still have
         * grants to end through it then. */
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
        /* Nothing of the main process stays here: no listening socket, no
         * connection, no pin from the fd store (a copy would keep a group
         * held or a client's disconnect unseen). The facts cache and its
         * uevent source are the main process's. */
        coh_facts_cache_free(TAKE_PTR(inner->facts));
        int r = close_all_but(sock, inner->sysfs_fd);
        if (r < 0) {
                helper_log("closing inherited descriptors: %s", strerror(-r));
                _exit(EXIT_FAILURE);
        }
        if (flags & COH_PRIV_SANDBOX) {
                r = coh_sandbox_enter(COH_SANDBOX_HELPER, flags & COH_PRIV_KILL_ALLOWED ? COH_SANDBOX_KEEP_KILL : 0,
                                      errbuf, sizeof errbuf);
                if (r < 0) {
                        helper_log("sandbox: %s", errbuf);
                        _exit(EXIT_FAILURE);
                }
        }
        r = coh_priv_serve(sock, inner, flags);
        if (r < 0)
                helper_log("its socket failed: %s", strerror(-r));
        (void) close(sock);
        coh_platform_free(inner);
        /* _exit: the atexit handlers and stdio buffers are the main process's. */
        _exit(r < 0 ? EXIT_FAILURE : EXIT_SUCCESS);
}

int coh_priv_fork(struct coh_platform *inner, unsigned flags, int *ret_fd, pid_t *ret_pid, char *errbuf,
                  size_t errlen) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
                snprintf(errbuf, errlen, "socketpair: %s", strerror(errno));
                return -errno;
        }
        /* Nothing buffered is written twice. */
        (void) fflush(stdout);
        (void) fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                snprintf(errbuf, errlen, "fork: %s", strerror(-r));
                (void) close(pair[0]);
                (void) close(pair[1]);
                return r;
        }
        if (pid == 0) {
                (void) close(pair[0]);
                helper_main(pair[1], inner, flags);
        }
        (void) close(pair[1]);
        *ret_fd = pair[0];
        *ret_pid = pid;
        return 0;
}
