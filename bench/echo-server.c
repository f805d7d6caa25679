/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * bench-echo-server SOCKET CONVERSATION: the physical limit the bench
 * compares coherencyd with. A bare SCM_RIGHTS server on an AF_UNIX stream
 * socket that answers each NUL-terminated call with the reply coherencyd gave
 * to the same call (bench-load record wrote them to CONVERSATION), and hands
 * back as many descriptors as coherencyd did, taken from those the call
 * carried (coherencyd hands over a group; this hands back the call's first
 * descriptor). Every descriptor received is closed. So it moves the same
 * bytes and descriptors and does nothing else: one epoll loop, one recvmsg
 * per message when the message is whole, one sendmsg per reply, no
 * allocation per message, and no memory per connection beyond a small
 * struct unless a message arrives in pieces (then its bytes are kept until
 * it is whole, and freed).
 *
 * Prints "Listening on SOCKET" once it listens (bench/run waits for it).
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "conversation.h"

#define FDS_MAX 8
#define READ_MAX (64 * 1024)

struct conn {
        int fd;
        char *partial; /* bytes of a message not yet whole, or NULL */
        size_t partial_len;
        int fds[FDS_MAX]; /* descriptors of the message being read */
        unsigned n_fds;
};

static struct conversation conv;
static char readbuf[READ_MAX];

static void conn_free(struct conn *c) {
        for (unsigned i = 0; i < c->n_fds; i++)
                close(c->fds[i]);
        close(c->fd); /* also removes it from the epoll set */
        free(c->partial);
        free(c);
}

/* Sends all of buf, descriptors on its first byte; waits for room if need be. */
static int send_all(int fd, const char *buf, size_t len, const int *fds, unsigned n_fds) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * FDS_MAX)];
        } control;
        while (len > 0) {
                struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                if (n_fds > 0) {
                        memset(&control, 0, sizeof control);
                        mh.msg_control = &control;
                        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                        cm->cmsg_level = SOL_SOCKET;
                        cm->cmsg_type = SCM_RIGHTS;
                        cm->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n_fds);
                }
                ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                /* A client that does not read: rare, so simply wait for it. */
                                fd_set w;
                                FD_ZERO(&w);
                                FD_SET(fd, &w);
                                (void) select(fd + 1, NULL, &w, NULL, NULL);
                                continue;
                        }
                        return -errno;
                }
                buf += n;
                len -= (size_t) n;
                n_fds = 0;
        }
        return 0;
}

/* One whole call: its reply, with descriptors, then the call's descriptors closed. */
static int answer(struct conn *c, const char *msg, size_t len) {
        const struct conv_step *s = conv_find_call(&conv, msg, len);
        int r;
        if (!s || s->reply.n_fds > c->n_fds)
                return -EBADMSG;
        r = send_all(c->fd, s->reply.text, s->reply.len + 1, c->fds, s->reply.n_fds);
        for (unsigned i = 0; i < c->n_fds; i++)
                close(c->fds[i]);
        c->n_fds = 0;
        return r;
}

/* Reads what is there: 0, or <0 to drop the connection. */
static int conn_read(struct conn *c) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * FDS_MAX)];
        } control;
        struct iovec iov = { .iov_base = readbuf, .iov_len = sizeof readbuf };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof control };
        ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                        unsigned k = (unsigned) ((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                        int *fds = (int *) CMSG_DATA(cm);
                        for (unsigned i = 0; i < k; i++) {
                                if (c->n_fds < FDS_MAX)
                                        c->fds[c->n_fds++] = fds[i];
                                else
                                        close(fds[i]);
                        }
                }
        if (n == 0)
                return -ECONNRESET;
        size_t at = 0, len = (size_t) n;
        while (at < len) {
                char *nul = memchr(readbuf + at, 0, len - at);
                if (!nul) {
                        /* The start of a message: kept until the rest comes. */
                        char *p = realloc(c->partial, c->partial_len + (len - at));
                        if (!p)
                                return -ENOMEM;
                        memcpy(p + c->partial_len, readbuf + at, len - at);
                        c->partial = p;
                        c->partial_len += len - at;
                        return 0;
                }
                size_t mlen = (size_t) (nul - (readbuf + at));
                int r;
                if (c->partial) {
                        char *p = realloc(c->partial, c->partial_len + mlen);
                        if (!p)
                                return -ENOMEM;
                        memcpy(p + c->partial_len, readbuf + at, mlen);
                        r = answer(c, p, c->partial_len + mlen);
                        free(p);
                        c->partial = NULL;
                        c->partial_len = 0;
                } else
                        r = answer(c, readbuf + at, mlen);
                if (r < 0)
                        return r;
                at += mlen + 1;
        }
        return 0;
}

int main(int argc, char *argv[]) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct rlimit rl;
        int lfd, ep;

        if (argc != 3) {
                fprintf(stderr, "usage: bench-echo-server SOCKET CONVERSATION\n");
                return 2;
        }
        if (conv_load(argv[2], &conv) < 0)
                return 1;
        /* As many connections as the bench opens (bench/run raises the hard limit). */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        signal(SIGPIPE, SIG_IGN);
        if (strlen(argv[1]) >= sizeof sa.sun_path) {
                fprintf(stderr, "bench-echo-server: socket path too long\n");
                return 2;
        }
        strcpy(sa.sun_path, argv[1]);
        (void) unlink(argv[1]);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(lfd, SOMAXCONN) < 0) {
                perror("bench-echo-server: listen");
                return 1;
        }
        ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
                perror("bench-echo-server: epoll");
                return 1;
        }
        printf("Listening on %s\n", argv[1]);
        fflush(stdout);

        for (;;) {
                struct epoll_event evs[64];
                int n = epoll_wait(ep, evs, 64, -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("bench-echo-server: epoll_wait");
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        struct conn *c = evs[i].data.ptr;
                        if (!c) {
                                for (;;) {
                                        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                                        if (fd < 0)
                                                break;
                                        c = calloc(1, sizeof *c);
                                        if (!c) {
                                                close(fd);
                                                continue;
                                        }
                                        c->fd = fd;
                                        struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
                                        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0)
                                                conn_free(c);
                                }
                                continue;
                        }
                        if (conn_read(c) < 0)
                                conn_free(c);
                }
        }
}
