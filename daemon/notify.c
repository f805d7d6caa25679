/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "frame.h"
#include "notify.h"
#include "util.h"

void coh_notify_init(struct coh_notify *n) {
        const char *e = getenv("NOTIFY_SOCKET");
        size_t len;

        *n = (struct coh_notify) { .fd = -EBADF, .address.sun_family = AF_UNIX };
        if (!e || !*e)
                return;
        n->have_address = true;
        len = strlen(e);
        /* As sd_notify() reads it: a path, or '@' for the abstract namespace. */
        if ((e[0] != '/' && e[0] != '@') || len >= sizeof n->address.sun_path) {
                n->use_libsystemd = true;
                return;
        }
        memcpy(n->address.sun_path, e, len);
        if (e[0] == '@') {
                n->address.sun_path[0] = 0;
                n->address_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len);
        } else
                n->address_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len + 1);
}

void coh_notify_done(struct coh_notify *n) {
        n->fd = safe_close(n->fd);
        n->connected = false;
}

bool coh_notify_enabled(const struct coh_notify *n) {
        return n->have_address;
}

static int send_message(struct coh_notify *n, const char *message, const int *fds, size_t n_fds) {
        if (n_fds > COH_MESSAGE_FDS_MAX)
                return -E2BIG;
        ssize_t r = coh_sendmsg_fds(n->fd, message, strlen(message), fds, n_fds, MSG_NOSIGNAL);
        return r < 0 ? (int) r : 1;
}

int coh_notify_send(struct coh_notify *n, const char *message, const int *fds, size_t n_fds) {
        if (!n->have_address)
                return 0;
        if (n->use_libsystemd)
                return sd_pid_notify_with_fds(0, false, message, fds, (unsigned) n_fds);

        /* Two attempts: a connected datagram socket whose peer was bound anew (the
         * manager re-executed) fails once with ECONNREFUSED; connect again. */
        for (unsigned attempt = 0; attempt < 2; attempt++) {
                if (n->fd < 0) {
                        n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                        if (n->fd < 0)
                                return -errno;
                }
                if (!n->connected) {
                        if (connect(n->fd, (const struct sockaddr *) &n->address, n->address_len) < 0)
                                return -errno;
                        n->connected = true;
                }
                int r = send_message(n, message, fds, n_fds);
                if (r != -ECONNREFUSED && r != -ECONNRESET && r != -ENOTCONN)
                        return r;
                coh_notify_done(n);
        }
        return -ECONNREFUSED;
}

int coh_notify_barrier(struct coh_notify *n, uint64_t timeout_usec) {
        int pipe_fds[2], r;

        if (!n->have_address)
                return 0;
        if (pipe2(pipe_fds, O_CLOEXEC) < 0)
                return -errno;
        r = coh_notify_send(n, "BARRIER=1", &pipe_fds[1], 1);
        close(pipe_fds[1]);
        if (r <= 0) {
                close(pipe_fds[0]);
                return r;
        }
        /* The manager closes its copy of the write end when it gets to the message:
         * the read end then reports a hang-up. */
        struct pollfd p = { .fd = pipe_fds[0], .events = 0 };
        int timeout_ms = timeout_usec / 1000 > INT32_MAX ? INT32_MAX : (int) (timeout_usec / 1000);
        do
                r = poll(&p, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                r = -errno;
        else if (r == 0)
                r = -ETIMEDOUT;
        else
                r = (p.revents & POLLHUP) ? 1 : -EPROTO;
        close(pipe_fds[0]);
        return r;
}
