/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * bench-notify-sink PATH: the part of systemd's notification socket that
 * bench/run needs when coherencyd runs with --fd-store outside systemd.
 *
 * Binds a datagram socket at PATH (the daemon's NOTIFY_SOCKET), prints
 * "Listening on PATH" once bound, then receives every message: READY=1 is
 * echoed on stdout (a line "READY=1"), everything else (STATUS=, FDSTORE=1
 * with its descriptors, FDSTOREREMOVE=1, WATCHDOG=1, ...) is counted and
 * discarded, and descriptors that came with a message are closed at once.
 * Unlike systemd it keeps nothing, so it costs the daemon what the kernel
 * costs: one sendmsg() per message, plus passing the descriptor.
 *
 * On SIGTERM or SIGINT it prints a summary on stderr and exits 0.
 *
 * bench-notify-sink --sync PATH: returns once the sink on PATH has read every
 * message queued before this one (it answers a BENCH_SYNC=1 datagram, and
 * reads in order), so that bench-requests can let the sink catch up between
 * two timed batches instead of letting its backlog run into the next one.
 */

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
        stop = 1;
}

static int sync_with(const struct sockaddr_un *sa) {
        static const char msg[] = "BENCH_SYNC=1";
        sa_family_t autobind = AF_UNIX;
        char reply[64];
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        /* An address of our own (autobind, abstract) for the answer to come back to. */
        if (fd < 0 || bind(fd, (struct sockaddr *) &autobind, sizeof(autobind)) < 0 ||
            sendto(fd, msg, sizeof(msg) - 1, 0, (const struct sockaddr *) sa, sizeof(*sa)) < 0) {
                fprintf(stderr, "bench-notify-sink --sync: %s: %m\n", sa->sun_path);
                return 1;
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 30000) != 1 || recv(fd, reply, sizeof(reply), 0) < 0) {
                fprintf(stderr, "bench-notify-sink --sync: %s: no answer\n", sa->sun_path);
                return 1;
        }
        close(fd);
        return 0;
}

int main(int argc, char *argv[]) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        unsigned long n_messages = 0, n_fdstore = 0, n_fdstore_remove = 0, n_status = 0, n_fds = 0;
        struct sigaction act = { .sa_handler = on_signal }; /* no SA_RESTART: recvmsg() returns EINTR */
        static char buf[65536];
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * 253)]; /* SCM_MAX_FD */
        } control;
        int fd;

        bool sync = argc == 3 && strcmp(argv[1], "--sync") == 0;
        const char *path = argv[sync ? 2 : 1];
        if ((argc != 2 && !sync) || strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "usage: bench-notify-sink [--sync] PATH\n");
                return 2;
        }
        strcpy(sa.sun_path, path);
        if (sync)
                return sync_with(&sa);

        sigaction(SIGTERM, &act, NULL);
        sigaction(SIGINT, &act, NULL);

        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                fprintf(stderr, "bench-notify-sink: %s: %m\n", path);
                return 1;
        }
        /* Like systemd's: the daemon's sd_notify() blocks when the queue is full. */
        int size = 8 * 1024 * 1024;
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));

        printf("Listening on %s\n", path);
        fflush(stdout);

        while (!stop) {
                struct sockaddr_un from;
                struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
                struct msghdr mh = {
                        .msg_name = &from,
                        .msg_namelen = sizeof(from),
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control),
                };
                ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "bench-notify-sink: recvmsg: %m\n");
                        return 1;
                }
                buf[n] = '\0';
                n_messages++;

                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                int fds[253];
                                memcpy(fds, CMSG_DATA(c), k * sizeof(int));
                                for (size_t i = 0; i < k; i++)
                                        close(fds[i]);
                                n_fds += k;
                        }

                /* One "KEY=value" per line; only the keys we count matter. */
                for (char *line = buf, *next; line && *line; line = next) {
                        next = strchr(line, '\n');
                        if (next)
                                *next++ = '\0';
                        if (strcmp(line, "READY=1") == 0) {
                                printf("READY=1\n");
                                fflush(stdout);
                        } else if (strcmp(line, "FDSTORE=1") == 0)
                                n_fdstore++;
                        else if (strcmp(line, "FDSTOREREMOVE=1") == 0)
                                n_fdstore_remove++;
                        else if (strncmp(line, "STATUS=", 7) == 0)
                                n_status++;
                        else if (strcmp(line, "BENCH_SYNC=1") == 0 && mh.msg_namelen > sizeof(sa_family_t)) {
                                (void) sendto(fd, line, strlen(line), MSG_DONTWAIT, (struct sockaddr *) &from,
                                              mh.msg_namelen);
                                n_messages--; /* not the daemon's */
                        }
                }
        }

        fprintf(stderr,
                "bench-notify-sink: %lu messages: %lu FDSTORE=1 (%lu descriptors), %lu FDSTOREREMOVE=1, %lu STATUS=\n",
                n_messages, n_fdstore, n_fds, n_fdstore_remove, n_status);
        unlink(path);
        return 0;
}
