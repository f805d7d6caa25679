/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Drives the framing with arbitrary byte and descriptor sequences and checks
 * that no descriptor survives the connection.
 *
 * Input: one mode byte, then chunks of [length][control][length bytes].
 *   mode bit 0:     deliver through a real socketpair and coh_frame_recv(),
 *                   otherwise through coh_frame_feed()
 *   control 0..3:   descriptors attached to the chunk (up to 15, so too many
 *                   is reachable)
 *   control bit 4:  deliver the chunk's bytes 512 times (descriptors with the
 *                   first copy), so COH_MESSAGE_MAX is reachable from small
 *                   inputs
 *   control bit 5:  take the complete messages out after this chunk
 *   control 6..7:   index of the descriptor taken from each message (3: none)
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPEAT 512u

/*
 * Like the daemon, which reads 4 KiB at a time and takes every message after
 * each read, we never let complete messages pile up much: taking N bytes of
 * tiny messages at once costs O(N^2) in memmove(), which only slows the fuzzer.
 */
#define BACKLOG_MAX 8192u

static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        unsigned n = 0;

        if (!d)
                abort();
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void check(bool b) {
        if (!b)
                abort();
}

/* Takes every complete message out, the empty ones (which the daemon would
 * drop the connection for) included, to exercise what follows them. */
static void drain(struct coh_frame *f, unsigned take) {
        for (;;) {
                struct coh_message m;
                int r;

                r = coh_frame_next(f, &m);
                if (r == 0)
                        return;
                if (r == -EBADMSG) {
                        check(!m.json && m.n_fds == 0);
                        continue;
                }
                check(r == 1);
                check(m.json && strlen(m.json) == m.len && m.len > 0 && m.len < COH_MESSAGE_MAX);
                check(m.n_fds <= COH_MESSAGE_FDS_MAX);
                check(coh_message_take_fd(&m, (long) m.n_fds) == -ERANGE);
                check(coh_message_take_fd(&m, -1) == -ERANGE);

                if (take < m.n_fds) {
                        int fd = coh_message_take_fd(&m, take);

                        check(fd >= 0);
                        check(fcntl(fd, F_GETFD) == FD_CLOEXEC);
                        check(coh_message_take_fd(&m, take) == -EBADF);
                        check(close(fd) == 0);
                }
                coh_message_done(&m);
        }
}

/* Sends like a client would, descriptors on the first byte, and reads like the
 * daemon does, interleaved so that the socket buffer never blocks us. */
static int via_socket(struct coh_frame *f, const int sv[2], const char *bytes, size_t len,
                      const int *fds, size_t n_fds, bool drain_now, unsigned take) {
        char control[CMSG_SPACE(sizeof(int) * 16)] = {};
        size_t sent = 0;
        bool first = true;

        /* A stream carries no empty writes; the kernel would drop the descriptors. */
        if (len == 0)
                return 0;

        do {
                struct iovec iov = { .iov_base = (char *) bytes + sent, .iov_len = len - sent };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                ssize_t n;

                if (first && n_fds > 0) {
                        struct cmsghdr *cmsg;

                        mh.msg_control = control;
                        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                        cmsg = CMSG_FIRSTHDR(&mh);
                        cmsg->cmsg_level = SOL_SOCKET;
                        cmsg->cmsg_type = SCM_RIGHTS;
                        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * n_fds);
                }
                n = sendmsg(sv[1], &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n > 0) {
                        sent += n;
                        first = false;
                } else
                        check(n < 0 && errno == EAGAIN);

                for (;;) {
                        ssize_t r = coh_frame_recv(f, sv[0]);

                        if (r == -EAGAIN)
                                break;
                        if (r == -ENOBUFS) {
                                /* Only a reader that stopped taking messages sees this. */
                                drain(f, 3);
                                continue;
                        }
                        if (r <= 0)
                                return r < 0 ? (int) r : -EPIPE;
                        if (drain_now || f->len > BACKLOG_MAX)
                                drain(f, take);
                }
        } while (sent < len);

        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        unsigned base = count_fds();
        struct coh_frame f;
        int sv[2] = { -1, -1 }, null_fd;
        bool socket_mode;
        char *big = NULL;

        if (size < 1)
                return 0;
        socket_mode = data[0] & 1;
        data++, size--;

        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        check(null_fd >= 0);
        if (socket_mode)
                check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);

        coh_frame_init(&f);
        while (size >= 2) {
                size_t len = data[0], n_fds = data[1] & 0x0f;
                bool repeat = data[1] & 0x10, drain_now = data[1] & 0x20;
                unsigned take = data[1] >> 6;
                const char *bytes;
                int fds[16];
                int r;

                data += 2, size -= 2;
                if (len > size)
                        len = size;
                bytes = (const char *) data;
                data += len, size -= len;

                for (size_t i = 0; i < n_fds; i++) {
                        fds[i] = fcntl(null_fd, F_DUPFD_CLOEXEC, 3);
                        check(fds[i] >= 0);
                }

                if (socket_mode) {
                        /* One write: the kernel cuts it into reads as it likes. */
                        if (repeat && len > 0) {
                                free(big);
                                big = malloc(len * REPEAT);
                                check(big);
                                for (size_t i = 0; i < REPEAT; i++)
                                        memcpy(big + i * len, bytes, len);
                                bytes = big;
                                len *= REPEAT;
                        }
                        r = via_socket(&f, sv, bytes, len, fds, n_fds, drain_now, take);
                        /* In flight or received, they are not ours any more. */
                        for (size_t i = 0; i < n_fds; i++)
                                check(close(fds[i]) == 0);
                } else {
                        r = 0;
                        for (size_t i = 0; r == 0 && i < (repeat ? REPEAT : 1); i++) {
                                if (f.len > BACKLOG_MAX)
                                        drain(&f, 3);
                                r = coh_frame_feed(&f, bytes, len, fds, i == 0 ? n_fds : 0);
                                if (r == 0 && drain_now)
                                        drain(&f, take);
                        }
                }
                if (r < 0)
                        break;

                check(coh_frame_partial(&f) == (f.len > 0 && f.buf[f.len - 1] != '\0'));
        }

        coh_frame_done(&f);
        free(big);
        if (sv[0] >= 0) {
                check(close(sv[0]) == 0);
                check(close(sv[1]) == 0);
        }
        check(close(null_fd) == 0);
        check(count_fds() == base);
        return 0;
}
