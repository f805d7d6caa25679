/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The main process's side of privilege separation (priv.h): a platform whose
 * custody ops and kill_peer are requests to the privileged helper, and whose
 * classify and ioas_coherent are the inner platform's, run here: telling what
 * a client passed needs no privilege, and the helper checks again what it is
 * given anyway.
 *
 * One request at a time, answered before the next is sent: the loop waits
 * for the helper as it waited for the kernel before the split (an open, a few
 * ioctls, a bounded /proc scan).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "priv.h"
#include "util.h"

struct priv_data {
        struct coh_platform_ops ops;
        struct coh_platform *inner;
        int fd;
        pid_t helper;
        char operation[COH_PRIV_OPERATION_MAX]; /* the last failed custody_begin's step */
};

static struct priv_data *priv_data(struct coh_platform *p) {
        return p->data;
}

/* The reply to req: exactly its size, its op, and the descriptors its mask names (into out, in mask order). */
static int receive_reply(int fd, const struct coh_priv_request *req, struct coh_priv_reply *reply,
                         int out[COH_PRIV_REPLY_FDS_MAX]) {
        int fds[COH_PRIV_FDS_MAX], flags;
        size_t n_fds, want = 0;
        ssize_t n = coh_priv_recv(fd, reply, sizeof *reply, fds, &n_fds, &flags);
        if (n < 0)
                return (int) n;
        if (n == sizeof *reply)
                for (unsigned i = 0; i < COH_PRIV_REPLY_FDS_MAX; i++)
                        want += (reply->fds >> i) & 1u;
        if (n == 0 || (flags & MSG_CTRUNC) || (size_t) n != sizeof *reply || (flags & MSG_TRUNC) ||
            reply->op != req->op || (reply->fds & ~((1u << COH_PRIV_REPLY_FDS_MAX) - 1)) || n_fds != want) {
                for (size_t i = 0; i < n_fds; i++)
                        (void) close(fds[i]);
                /* 0: the helper is gone. MSG_CTRUNC: it sent what this process had no room to
                 * take (RLIMIT_NOFILE; the kernel closes what it could not pass, so the group is
                 * not left held). Anything else: it does not speak our protocol. */
                return n == 0 ? -ECONNRESET : (flags & MSG_CTRUNC) ? -EMFILE : -EPROTO;
        }
        size_t k = 0;
        for (unsigned i = 0; i < COH_PRIV_REPLY_FDS_MAX; i++)
                out[i] = reply->fds & (1u << i) ? fds[k++] : -EBADF;
        return 0;
}

/*
 * One round trip: the reply's result, or -errno when the helper could not be
 * asked. Descriptors come back into out only with a result of 0 and when the
 * caller takes them (out not NULL); any others are closed.
 */
static int call(struct coh_platform *p, const struct coh_priv_request *req, int pass_fd, struct coh_priv_reply *reply,
                int out[COH_PRIV_REPLY_FDS_MAX]) {
        struct priv_data *d = priv_data(p);
        int got[COH_PRIV_REPLY_FDS_MAX];
        int r = coh_priv_send(d->fd, req, sizeof *req, &pass_fd, pass_fd >= 0 ? 1 : 0);
        if (r == 0)
                r = receive_reply(d->fd, req, reply, got);
        if (r < 0)
                return r;
        reply->operation[sizeof reply->operation - 1] = '\0';
        for (unsigned i = 0; i < COH_PRIV_REPLY_FDS_MAX; i++)
                if (out && reply->result == 0)
                        out[i] = got[i];
                else
                        safe_close(got[i]);
        return reply->result;
}

static int priv_classify(struct coh_platform *p, int fd, struct coh_fd_info *ret) {
        struct coh_platform *inner = priv_data(p)->inner;
        return inner->ops->classify(inner, fd, ret);
}

static bool priv_ioas_coherent(struct coh_platform *p, const struct coh_device_facts *device,
                               const struct coh_fd_info *ioas) {
        struct coh_platform *inner = priv_data(p)->inner;
        return inner->ops->ioas_coherent(inner, device, ioas);
}

static int priv_custody_begin(struct coh_platform *p, const struct coh_device_facts *device, int ioas_fd,
                              const struct coh_fd_info *ioas, int *ret_file_fd, struct coh_custody *ret,
                              const char **ret_operation) {
        struct priv_data *d = priv_data(p);
        struct coh_priv_request req = { .op = COH_PRIV_CUSTODY_BEGIN, .group = device->iommu_group };
        struct coh_priv_reply reply = {};
        int out[COH_PRIV_REPLY_FDS_MAX];

        ret->pin_fd = ret->probe_fd = *ret_file_fd = -EBADF;
        strscpy0(req.slot, device->slot, sizeof req.slot);
        int r = call(p, &req, ioas ? ioas_fd : -EBADF, &reply, out);
        if (r < 0) {
                /* The helper's step, or the helper itself when it could not be asked. */
                if (reply.operation[0])
                        snprintf(d->operation, sizeof d->operation, "%s", reply.operation);
                else
                        snprintf(d->operation, sizeof d->operation, "privileged helper");
                *ret_operation = d->operation;
                return r;
        }
        if (out[0] < 0) {
                for (unsigned i = 1; i < COH_PRIV_REPLY_FDS_MAX; i++)
                        safe_close(out[i]);
                *ret_operation = "privileged helper";
                return -EPROTO;
        }
        *ret_file_fd = out[0];
        ret->pin_fd = out[1];
        ret->probe_fd = out[2];
        *ret_operation = NULL;
        return 0;
}

static int priv_custody_probe_free(struct coh_platform *p, int iommu_group, const struct coh_custody *c) {
        /* Even a probe descriptor (sim), which needs no privilege to read, is
         * read by the helper: served in turn, the probe comes after it closed
         * its copies of what it handed over, as the kernel's open does. */
        struct coh_priv_request req = { .op = COH_PRIV_PROBE_FREE, .group = iommu_group };
        struct coh_priv_reply reply = {};
        return call(p, &req, c->probe_fd, &reply, NULL);
}

static int priv_custody_holders(struct coh_platform *p, int iommu_group, struct coh_holder *ret, size_t n) {
        struct coh_priv_request req = { .op = COH_PRIV_HOLDERS, .group = iommu_group };
        struct coh_priv_reply reply = {};
        if (iommu_group < 0 || n == 0)
                return 0;
        int r = call(p, &req, -EBADF, &reply, NULL);
        if (r < 0)
                return r;
        if (r > COH_PRIV_HOLDERS_MAX)
                return -EPROTO;
        if ((size_t) r > n)
                r = (int) n;
        for (int i = 0; i < r; i++) {
                ret[i] = reply.holders[i];
                ret[i].comm[sizeof ret[i].comm - 1] = '\0';
        }
        return r;
}

static int priv_kill_peer(struct coh_platform *p, int pidfd) {
        struct coh_priv_request req = { .op = COH_PRIV_KILL, .group = -1 };
        struct coh_priv_reply reply = {};
        if (pidfd < 0)
                return -EBADF;
        return call(p, &req, pidfd, &reply, NULL);
}

/* coh_platform_free() closed p->sysfs_fd (a copy of inner's); the helper leaves once its socket closes. */
static void helper_done(struct coh_platform *p) {
        struct priv_data *d = priv_data(p);
        int status = 0;
        d->fd = safe_close(d->fd);
        if (d->helper > 0) {
                pid_t r;
                while ((r = waitpid(d->helper, &status, 0)) < 0 && errno == EINTR)
                        ;
                /* The journal is closed by now: stderr, which the unit sends there too. */
                if (r == d->helper && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                        fprintf(stderr, "coherencyd: the privileged helper ended with %s %d\n",
                                WIFSIGNALED(status) ? "signal" : "exit status",
                                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        }
        d->helper = 0;
        coh_platform_free(d->inner);
        d->inner = NULL;
}

static void priv_free(struct coh_platform *p) {
        helper_done(p);
        free(p->data);
        free(p);
}

static const struct coh_platform_ops priv_ops = {
        .classify = priv_classify,
        .ioas_coherent = priv_ioas_coherent,
        .custody_begin = priv_custody_begin,
        .custody_probe_free = priv_custody_probe_free,
        .custody_holders = priv_custody_holders,
        .kill_peer = priv_kill_peer,
        .free = priv_free,
};

int coh_platform_priv_new(struct coh_platform *inner, int fd, pid_t helper, struct coh_platform **ret) {
        struct coh_platform *p = calloc(1, sizeof *p);
        struct priv_data *d = calloc(1, sizeof *d);
        int sysfs_fd = inner->sysfs_fd >= 0 ? fcntl(inner->sysfs_fd, F_DUPFD_CLOEXEC, 3) : -EBADF;
        if (!p || !d || (inner->sysfs_fd >= 0 && sysfs_fd < 0)) {
                free(p);
                free(d);
                safe_close(sysfs_fd);
                /* Ownership was taken: the helper goes as it would at the end. */
                struct priv_data gone = { .inner = inner, .fd = fd, .helper = helper };
                struct coh_platform tmp = { .sysfs_fd = -EBADF, .data = &gone };
                helper_done(&tmp);
                return -ENOMEM;
        }
        /* Named as the inner platform: clients see the kernel they are on ("linux"), not the split. */
        d->ops = priv_ops;
        d->ops.name = inner->ops->name;
        d->inner = inner;
        d->fd = fd;
        d->helper = helper;
        p->ops = &d->ops;
        p->sysfs_fd = sysfs_fd;
        /* Facts are read here, in the main process: the cache and its
         * uevent source are this side's (the helper closed its copy). */
        p->facts = TAKE_PTR(inner->facts);
        p->data = d;
        *ret = p;
        return 0;
}
