/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Framing over real AF_UNIX stream sockets with real SCM_RIGHTS, since the
 * descriptor rules depend on how the kernel splits reads. Every test checks
 * that the process holds exactly the descriptors it held before.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"

/*
 * The kernel reads the frame makes, counted: these definitions take the place
 * of libc's for this program (the frame code calls them through the PLT).
 */
static unsigned n_reads;

ssize_t recvmsg(int fd, struct msghdr *mh, int flags) {
        n_reads++;
        return syscall(SYS_recvmsg, fd, mh, flags);
}

int recvmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags, struct timespec *timeout) {
        n_reads++;
        return (int) syscall(SYS_recvmmsg, fd, vec, vlen, flags, timeout);
}

static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        unsigned n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void make_pair(int sv[2]) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void close_pair(int sv[2]) {
        assert_int_equal(close(sv[0]), 0);
        assert_int_equal(close(sv[1]), 0);
}

/* A descriptor we can recognise later by inode. */
static int make_memfd(void) {
        int fd = memfd_create("test-frame", MFD_CLOEXEC);

        assert_true(fd >= 0);
        return fd;
}

static bool same_file(int a, int b) {
        struct stat sa, sb;

        assert_int_equal(fstat(a, &sa), 0);
        assert_int_equal(fstat(b, &sb), 0);
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static bool is_cloexec(int fd) {
        int flags = fcntl(fd, F_GETFD);

        assert_true(flags >= 0);
        return flags & FD_CLOEXEC;
}

/* One sendmsg() with the descriptors on its first byte, as any peer would do it. */
static void send_raw(int sock, const void *data, size_t len, const int *fds, size_t n_fds) {
        size_t space = CMSG_SPACE(sizeof(int) * n_fds);
        struct iovec iov = { .iov_base = (void *) data, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        char *control = NULL;

        if (n_fds > 0) {
                struct cmsghdr *cmsg;

                control = calloc(1, space);
                assert_non_null(control);
                mh.msg_control = control;
                mh.msg_controllen = space;
                cmsg = CMSG_FIRSTHDR(&mh);
                cmsg->cmsg_level = SOL_SOCKET;
                cmsg->cmsg_type = SCM_RIGHTS;
                cmsg->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * n_fds);
        }
        assert_int_equal(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t) len);
        free(control);
}

static void send_str(int sock, const char *s) {
        send_raw(sock, s, strlen(s), NULL, 0);
}

/* Sends one NUL-terminated message; strlen() would stop at the terminator. */
static void send_msg(int sock, const char *json, const int *fds, size_t n_fds) {
        send_raw(sock, json, strlen(json) + 1, fds, n_fds);
}

/*
 * Reads until the socket has nothing more, as the daemon's read loop does:
 * the byte count of all reads, or the first error (-EAGAIN when nothing was
 * there at all). How the bytes are split into reads is the frame's business.
 */
static ssize_t recv_available(struct coh_frame *f, int sock) {
        ssize_t total = 0;
        for (;;) {
                ssize_t n = coh_frame_recv(f, sock);
                if (n == -EAGAIN || (n == 0 && total > 0))
                        return total > 0 ? total : n;
                if (n <= 0)
                        return n;
                total += n;
        }
}

static void expect_message(struct coh_frame *f, const char *json, size_t n_fds) {
        struct coh_message m;

        assert_int_equal(coh_frame_next(f, &m), 1);
        assert_string_equal(m.json, json);
        assert_int_equal(m.len, strlen(json));
        assert_int_equal(m.n_fds, n_fds);
        coh_message_done(&m);
}

static void expect_nothing(struct coh_frame *f) {
        struct coh_message m;

        assert_int_equal(coh_frame_next(f, &m), 0);
        assert_null(m.json);
        assert_int_equal(m.n_fds, 0);
}

static void test_nothing_to_read(void **state) {
        unsigned base = count_fds();
        struct coh_frame f;
        int sv[2];

        make_pair(sv);
        coh_frame_init(&f);
        assert_int_equal(recv_available(&f, sv[0]), -EAGAIN);
        assert_false(coh_frame_partial(&f));
        expect_nothing(&f);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

static void test_several_messages_one_read(void **state) {
        static const char wire[] = "{\"method\":\"a.B\"}\0{\"x\":1}\0{}\0{\"tail\"";
        unsigned base = count_fds();
        struct coh_frame f;
        int sv[2];

        make_pair(sv);
        coh_frame_init(&f);
        send_raw(sv[1], wire, sizeof(wire) - 1, NULL, 0);

        assert_int_equal(recv_available(&f, sv[0]), (ssize_t) sizeof(wire) - 1);
        expect_message(&f, "{\"method\":\"a.B\"}", 0);
        expect_message(&f, "{\"x\":1}", 0);
        expect_message(&f, "{}", 0);
        expect_nothing(&f);
        assert_true(coh_frame_partial(&f));

        send_msg(sv[1], ":2}", NULL, 0);
        assert_int_equal(recv_available(&f, sv[0]), 4);
        assert_false(coh_frame_partial(&f));
        expect_message(&f, "{\"tail\":2}", 0);
        expect_nothing(&f);
        assert_int_equal(recv_available(&f, sv[0]), -EAGAIN);

        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

static void test_byte_by_byte(void **state) {
        unsigned base = count_fds();
        struct coh_frame f;
        char json[3000];
        int sv[2];

        /* Long enough that the buffer has to grow a few times on the way. */
        memset(json, 'y', sizeof(json));
        memcpy(json, "{\"s\":\"", 6);
        memcpy(json + sizeof(json) - 3, "\"}", 3);

        make_pair(sv);
        coh_frame_init(&f);
        for (size_t i = 0; i < sizeof(json); i++) {
                send_raw(sv[1], json + i, 1, NULL, 0);
                assert_int_equal(recv_available(&f, sv[0]), 1);
                if (i + 1 < sizeof(json)) {
                        assert_true(coh_frame_partial(&f));
                        expect_nothing(&f);
                }
        }
        assert_false(coh_frame_partial(&f));
        expect_message(&f, json, 0);
        expect_nothing(&f);

        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

static void test_fds_with_first_byte(void **state) {
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        int sv[2], fds[3], fd;

        make_pair(sv);
        coh_frame_init(&f);
        for (size_t i = 0; i < 3; i++)
                fds[i] = make_memfd();
        /* Clear close-on-exec on one, to see the receiver set it regardless. */
        assert_int_equal(fcntl(fds[1], F_SETFD, 0), 0);

        send_msg(sv[1], "{\"vm\":0,\"device\":1,\"iommu\":2}", fds, 3);
        send_msg(sv[1], "{\"plain\":true}", NULL, 0);
        assert_int_equal(recv_available(&f, sv[0]),
                         (ssize_t) (sizeof("{\"vm\":0,\"device\":1,\"iommu\":2}") + sizeof("{\"plain\":true}")));

        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_string_equal(m.json, "{\"vm\":0,\"device\":1,\"iommu\":2}");
        assert_int_equal(m.n_fds, 3);
        for (size_t i = 0; i < 3; i++) {
                assert_true(is_cloexec(m.fds[i]));
                assert_true(same_file(m.fds[i], fds[i]));
        }

        fd = coh_message_take_fd(&m, 1);
        assert_true(fd >= 0);
        assert_true(same_file(fd, fds[1]));
        coh_message_done(&m);
        /* Two unclaimed ones closed, the taken one is ours. */
        assert_int_equal(count_fds(), base + 2 + 3 + 1);
        assert_int_equal(close(fd), 0);

        expect_message(&f, "{\"plain\":true}", 0);
        expect_nothing(&f);

        for (size_t i = 0; i < 3; i++)
                assert_int_equal(close(fds[i]), 0);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* Descriptors belong to the first message that starts in the read that brought them. */
static void test_fds_first_message_in_read(void **state) {
        static const char wire[] = "{\"a\":1}\0{\"b\":2}\0{\"c\"";
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        int sv[2], fd;

        make_pair(sv);
        coh_frame_init(&f);
        fd = make_memfd();

        send_raw(sv[1], wire, sizeof(wire) - 1, &fd, 1);
        assert_int_equal(recv_available(&f, sv[0]), (ssize_t) sizeof(wire) - 1);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_string_equal(m.json, "{\"a\":1}");
        assert_int_equal(m.n_fds, 1);
        assert_true(same_file(m.fds[0], fd));
        coh_message_done(&m);
        expect_message(&f, "{\"b\":2}", 0);
        send_msg(sv[1], ":3}", NULL, 0);
        assert_int_equal(recv_available(&f, sv[0]), 4);
        expect_message(&f, "{\"c\":3}", 0);

        assert_int_equal(close(fd), 0);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* A message whose descriptors came with its first byte, the rest later. */
static void test_fds_message_over_reads(void **state) {
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        int sv[2], fd;

        make_pair(sv);
        coh_frame_init(&f);
        fd = make_memfd();

        send_raw(sv[1], "{\"dev", 5, &fd, 1);
        assert_int_equal(recv_available(&f, sv[0]), 5);
        expect_nothing(&f);
        send_str(sv[1], "ice\":");
        assert_int_equal(recv_available(&f, sv[0]), 5);
        send_msg(sv[1], "0}", NULL, 0);
        assert_int_equal(recv_available(&f, sv[0]), 3);

        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_string_equal(m.json, "{\"device\":0}");
        assert_int_equal(m.n_fds, 1);
        assert_true(is_cloexec(m.fds[0]));
        assert_true(same_file(m.fds[0], fd));
        coh_message_done(&m);

        assert_int_equal(close(fd), 0);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

static void test_fds_while_partial(void **state) {
        unsigned base = count_fds();
        struct coh_frame f;
        int sv[2], fds[2];

        make_pair(sv);
        coh_frame_init(&f);
        send_str(sv[1], "{\"a\"");
        assert_int_equal(recv_available(&f, sv[0]), 4);
        assert_true(coh_frame_partial(&f));

        fds[0] = make_memfd();
        fds[1] = make_memfd();
        send_raw(sv[1], ":1}", 4, fds, 2);
        assert_int_equal(close(fds[0]), 0);
        assert_int_equal(close(fds[1]), 0);

        /* In flight now; once received and refused, nothing of them may remain. */
        assert_int_equal(count_fds(), base + 2);
        assert_int_equal(recv_available(&f, sv[0]), -EPROTO);
        assert_int_equal(count_fds(), base + 2);

        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* Complete messages buffered but not taken still hold the descriptor slot. */
static void test_fds_while_fds_pending(void **state) {
        unsigned base = count_fds();
        struct coh_frame f;
        int sv[2], fd;

        make_pair(sv);
        coh_frame_init(&f);
        fd = make_memfd();

        send_msg(sv[1], "{\"a\":0}", &fd, 1);
        assert_int_equal(recv_available(&f, sv[0]), 8);
        send_msg(sv[1], "{\"b\":0}", &fd, 1);
        assert_int_equal(close(fd), 0);

        assert_int_equal(recv_available(&f, sv[0]), -EPROTO);
        /* The first message's descriptor is still held by the frame, the second is gone. */
        assert_int_equal(count_fds(), base + 2 + 1);
        coh_frame_done(&f);
        assert_int_equal(count_fds(), base + 2);

        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/*
 * Reads as the daemon does: a read, then every complete message taken out,
 * until the socket has nothing more. Messages go to out[] (room for max, one
 * more than the messages expected);
 * returns the first error, or 0 once the socket is drained.
 */
static int read_like_daemon(struct coh_frame *f, int sock, struct coh_message *out, size_t max, size_t *n_out) {
        *n_out = 0;
        for (;;) {
                ssize_t n = coh_frame_recv(f, sock);
                if (n == -EAGAIN)
                        return 0;
                if (n <= 0)
                        return n < 0 ? (int) n : -EPIPE;
                for (;;) {
                        assert_true(*n_out < max);
                        int r = coh_frame_next(f, &out[*n_out]);
                        assert_true(r >= 0);
                        if (r == 0)
                                break;
                        (*n_out)++;
                }
        }
}

static void done_all(struct coh_message *m, size_t n) {
        for (size_t i = 0; i < n; i++)
                coh_message_done(&m[i]);
}

/*
 * Issue 9: a call without descriptors and, before its answer, one with them,
 * as two sendmsg() calls. A read that does not stop at the first message's
 * end gets the second one's first bytes glued to its tail, with its
 * descriptors (the kernel ends a read after the skb that carried them):
 * they must go to the second message, and the connection must live.
 */
static void test_back_to_back_call_without_then_with_descriptors(void **state) {
        static const char first[] = "{\"method\":\"org.varlink.service.GetInfo\"}";
        static const char second[] = "{\"method\":\"io.coherencyd.Broker.RequestGrant\",\"parameters\":{\"vm\":0,\"iommu\":1}}";
        unsigned base = count_fds();
        struct coh_message m[4];
        struct coh_frame f;
        int sv[2], fds[2];
        size_t n;

        make_pair(sv);
        coh_frame_init(&f);
        fds[0] = make_memfd();
        fds[1] = make_memfd();
        send_msg(sv[1], first, NULL, 0);
        send_msg(sv[1], second, fds, 2);

        assert_int_equal(read_like_daemon(&f, sv[0], m, 4, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(m[0].json, first);
        assert_int_equal(m[0].n_fds, 0);
        assert_string_equal(m[1].json, second);
        assert_int_equal(m[1].n_fds, 2);
        for (size_t i = 0; i < 2; i++) {
                assert_true(same_file(m[1].fds[i], fds[i]));
                assert_true(is_cloexec(m[1].fds[i]));
        }
        done_all(m, n);

        for (size_t i = 0; i < 2; i++)
                assert_int_equal(close(fds[i]), 0);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* Any number of calls pipelined, some with descriptors, each its own sendmsg(). */
static void test_pipelined_calls_keep_their_descriptors(void **state) {
        static const char *const json[] = { "{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "{\"d\":4}", "{\"e\":5}", "{\"f\":6}" };
        static const size_t with[] = { 0, 0, 1, 3, 0, 2 };
        unsigned base = count_fds();
        struct coh_message m[8];
        struct coh_frame f;
        int sv[2], fds[6][3];
        size_t n;

        make_pair(sv);
        coh_frame_init(&f);
        for (size_t i = 0; i < 6; i++) {
                for (size_t k = 0; k < with[i]; k++)
                        fds[i][k] = make_memfd();
                send_msg(sv[1], json[i], fds[i], with[i]);
        }

        assert_int_equal(read_like_daemon(&f, sv[0], m, 8, &n), 0);
        assert_int_equal(n, 6);
        for (size_t i = 0; i < 6; i++) {
                assert_string_equal(m[i].json, json[i]);
                assert_int_equal(m[i].n_fds, with[i]);
                for (size_t k = 0; k < with[i]; k++) {
                        assert_true(same_file(m[i].fds[k], fds[i][k]));
                        assert_int_equal(close(fds[i][k]), 0);
                }
        }
        done_all(m, n);

        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* Several messages in one write with descriptors: they ride on its first byte,
 * so they are the first message's; the next write's go to the next. */
static void test_descriptors_of_a_write_of_several_messages(void **state) {
        static const char wire[] = "{\"a\":1}\0{\"b\":2}\0";
        unsigned base = count_fds();
        struct coh_message m[5];
        struct coh_frame f;
        int sv[2], fd[2];
        size_t n;

        make_pair(sv);
        coh_frame_init(&f);
        fd[0] = make_memfd();
        fd[1] = make_memfd();
        send_msg(sv[1], "{\"z\":0}", NULL, 0);
        send_raw(sv[1], wire, sizeof(wire) - 1, &fd[0], 1);
        send_msg(sv[1], "{\"c\":3}", &fd[1], 1);

        assert_int_equal(read_like_daemon(&f, sv[0], m, 5, &n), 0);
        assert_int_equal(n, 4);
        assert_string_equal(m[0].json, "{\"z\":0}");
        assert_int_equal(m[0].n_fds, 0);
        assert_string_equal(m[1].json, "{\"a\":1}");
        assert_int_equal(m[1].n_fds, 1);
        assert_true(same_file(m[1].fds[0], fd[0]));
        assert_string_equal(m[2].json, "{\"b\":2}");
        assert_int_equal(m[2].n_fds, 0);
        assert_string_equal(m[3].json, "{\"c\":3}");
        assert_int_equal(m[3].n_fds, 1);
        assert_true(same_file(m[3].fds[0], fd[1]));
        done_all(m, n);

        assert_int_equal(close(fd[0]), 0);
        assert_int_equal(close(fd[1]), 0);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/*
 * head (no descriptors), then tail with one on its first byte, which is in the
 * middle of a message: refused, once the messages before it (answered, or
 * NULL) are handed out, and the descriptor closed.
 */
static void refused_mid_message(const char *head, size_t head_len, const char *tail, size_t tail_len,
                                const char *answered) {
        unsigned base = count_fds();
        struct coh_message m[4];
        struct coh_frame f;
        int sv[2], fd;
        size_t n;

        make_pair(sv);
        coh_frame_init(&f);
        fd = make_memfd();
        send_raw(sv[1], head, head_len, NULL, 0);
        send_raw(sv[1], tail, tail_len, &fd, 1);
        assert_int_equal(close(fd), 0);

        assert_int_equal(read_like_daemon(&f, sv[0], m, 4, &n), -EPROTO);
        assert_int_equal(n, answered ? 1 : 0);
        if (answered) {
                assert_string_equal(m[0].json, answered);
                assert_int_equal(m[0].n_fds, 0);
        }
        done_all(m, n);
        assert_int_equal(count_fds(), base + 2);

        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/*
 * Descriptors sent in the middle of a message are refused even when a message
 * starts later in the same write (so a read ending after that write would see
 * exactly one message start in it): the read stops at the first message's end
 * and the descriptors come with it, in the middle.
 */
static void test_fds_mid_message_before_a_message_start(void **state) {
        static const char rest[] = ":1}\0{\"b\":2}\0";
        refused_mid_message("{\"a\"", 4, rest, sizeof(rest) - 1, NULL);
}

/* The same for the second of two messages glued in one write before the descriptors came. */
static void test_fds_mid_message_after_a_message_start(void **state) {
        static const char head[] = "{\"a\":1}\0{\"b\"";
        refused_mid_message(head, sizeof(head) - 1, ":2}", 4, "{\"a\":1}");
}

/*
 * Many rounds of a client that follows the convention: up to six calls back
 * to back, some with descriptors, some longer than a read, each written in one
 * to three sendmsg() calls (its descriptors with the first), with the reader
 * draining at random points in between. Every call arrives, in order, with
 * exactly its own descriptors, however the kernel glued the writes.
 */
static void test_random_back_to_back_calls_keep_their_descriptors(void **state) {
        unsigned base = count_fds();
        struct coh_message m[8];
        struct coh_frame f;
        int sv[2];

        srandom(9);
        make_pair(sv);
        coh_frame_init(&f);
        for (unsigned round = 0; round < 300; round++) {
                size_t k = 1 + (size_t) random() % 6, got = 0, n;
                size_t with[6];
                int file[6];
                char *json[6];

                for (size_t i = 0; i < k; i++) {
                        size_t pad = (size_t) random() % 3 == 0 ? (size_t) random() % 9000 : (size_t) random() % 40;
                        json[i] = malloc(pad + 64);
                        assert_non_null(json[i]);
                        int len = snprintf(json[i], 64, "{\"round\":%u,\"call\":%zu,\"pad\":\"", round, i);
                        memset(json[i] + len, 'p', pad);
                        strcpy(json[i] + len + pad, "\"}");
                        with[i] = (size_t) random() % 4;
                        file[i] = make_memfd();
                        int fds[3] = { file[i], file[i], file[i] };
                        size_t total = strlen(json[i]) + 1, cut1 = total, cut2 = total;
                        if (random() % 2)
                                cut1 = 1 + (size_t) random() % total;
                        if (cut1 < total && random() % 2)
                                cut2 = cut1 + (size_t) random() % (total - cut1) + 1;
                        send_raw(sv[1], json[i], cut1, fds, with[i]);
                        if (cut1 < total)
                                send_raw(sv[1], json[i] + cut1, cut2 - cut1, NULL, 0);
                        if (cut2 < total)
                                send_raw(sv[1], json[i] + cut2, total - cut2, NULL, 0);
                        if (random() % 3 == 0) {
                                assert_int_equal(read_like_daemon(&f, sv[0], m + got, 8 - got, &n), 0);
                                got += n;
                        }
                }
                assert_int_equal(read_like_daemon(&f, sv[0], m + got, 8 - got, &n), 0);
                got += n;
                assert_int_equal(got, k);
                for (size_t i = 0; i < k; i++) {
                        assert_string_equal(m[i].json, json[i]);
                        assert_int_equal(m[i].n_fds, with[i]);
                        for (size_t j = 0; j < with[i]; j++)
                                assert_true(same_file(m[i].fds[j], file[i]));
                        free(json[i]);
                        assert_int_equal(close(file[i]), 0);
                }
                done_all(m, got);
                assert_false(coh_frame_partial(&f));
        }
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/*
 * Issue 11: a call read when it is all queued costs two system calls, a look
 * and one read, with descriptors or without; calls queued back to back share
 * a look (up to a write with descriptors) and cost one read each.
 */
static void test_a_call_costs_a_look_and_one_read(void **state) {
        static const char *const json[] = { "{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "{\"d\":4}" };
        static const size_t with[] = { 2, 0, 1, 3 };
        unsigned base = count_fds();
        struct coh_frame f;
        int sv[2], fds[3];

        make_pair(sv);
        coh_frame_init(&f);
        for (size_t i = 0; i < 3; i++)
                fds[i] = make_memfd();

        for (size_t i = 0; i < 4; i++) {
                send_msg(sv[1], json[i], fds, with[i]);
                n_reads = 0;
                assert_true(coh_frame_recv(&f, sv[0]) > 0);
                assert_int_equal(n_reads, 2);
                expect_message(&f, json[i], with[i]);
        }

        /* Back to back: a look ends after a write that carries descriptors (K3
         * in frame.c), so one look for the first, one for the second and third,
         * one for the fourth; and one read for each. */
        for (size_t i = 0; i < 4; i++)
                send_msg(sv[1], json[i], fds, with[i]);
        n_reads = 0;
        for (size_t i = 0; i < 4; i++) {
                assert_true(coh_frame_recv(&f, sv[0]) > 0);
                expect_message(&f, json[i], with[i]);
        }
        assert_int_equal(n_reads, 3 + 4);
        expect_nothing(&f);
        assert_int_equal(coh_frame_recv(&f, sv[0]), -EAGAIN);

        for (size_t i = 0; i < 3; i++)
                assert_int_equal(close(fds[i]), 0);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/*
 * Issue 11: an idle connection holds no buffers. The frame's goes once every
 * message is taken (the last one is handed out in it), the queue's once it is
 * sent; a message still partial keeps its bytes.
 */
static void test_buffers_freed_when_empty(void **state) {
        static const char call[] = "{\"method\":\"org.varlink.service.GetInfo\"}";
        unsigned base = count_fds();
        struct coh_outbuf o = {};
        struct coh_message m;
        struct coh_frame f;
        int sv[2], fd;

        make_pair(sv);
        coh_frame_init(&f);
        fd = make_memfd();

        /* One call: read into a buffer of its size, handed out as the message. */
        send_msg(sv[1], call, &fd, 1);
        assert_int_equal(coh_frame_recv(&f, sv[0]), (ssize_t) sizeof(call));
        assert_int_equal(f.cap, sizeof(call));
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_string_equal(m.json, call);
        assert_int_equal(m.n_fds, 1);
        assert_null(f.buf);
        assert_int_equal(f.cap, 0);
        coh_message_done(&m);

        /* Two in one read, and half of a third: the half stays, alone. */
        send_raw(sv[1], "{}\0{\"b\":1}\0{\"c\"", 15, NULL, 0);
        assert_int_equal(coh_frame_recv(&f, sv[0]), 15);
        expect_message(&f, "{}", 0);
        expect_message(&f, "{\"b\":1}", 0);
        assert_non_null(f.buf);
        assert_int_equal(f.len, 4);
        send_msg(sv[1], ":2}", NULL, 0);
        assert_int_equal(coh_frame_recv(&f, sv[0]), 4);
        expect_message(&f, "{\"c\":2}", 0);
        assert_null(f.buf);

        /* Replies: the queue's buffer goes once the socket took them, descriptors too. */
        assert_int_equal(coh_outbuf_append(&o, "{\"parameters\":{}}", COH_REPLY_MAX), 0);
        int dup1 = dup(fd);
        assert_true(dup1 >= 0);
        assert_int_equal(coh_outbuf_append_fds(&o, "{}", COH_REPLY_MAX, &dup1, 1), 0);
        assert_non_null(o.buf);
        assert_int_equal(coh_outbuf_flush(&o, sv[0]), 0);
        assert_null(o.buf);
        assert_null(o.fds);
        assert_int_equal(o.cap, 0);
        assert_int_equal(coh_frame_recv(&f, sv[1]), 18);
        expect_message(&f, "{\"parameters\":{}}", 0);
        assert_int_equal(coh_frame_recv(&f, sv[1]), 3);
        expect_message(&f, "{}", 1);
        assert_null(f.buf);

        assert_int_equal(close(fd), 0);
        coh_outbuf_done(&o);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* Looking ahead (MSG_PEEK) installs nothing: queued descriptors stay the kernel's. */
static void test_looking_ahead_takes_no_descriptors(void **state) {
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        int sv[2], fd;

        make_pair(sv);
        coh_frame_init(&f);
        fd = make_memfd();
        send_str(sv[1], "{\"a\":");
        send_msg(sv[1], "1}", NULL, 0);
        send_msg(sv[1], "{}", &fd, 1);
        assert_int_equal(close(fd), 0);

        /* Reads up to the first message's end, never past it, while the second's
         * descriptor is queued; only the read of the second's first byte takes it. */
        ssize_t total = 0;
        while (!(f.len > 0 && !coh_frame_partial(&f))) {
                ssize_t k = coh_frame_recv(&f, sv[0]);
                assert_true(k > 0);
                total += k;
                assert_int_equal(count_fds(), base + 2);
        }
        assert_int_equal(total, 8);
        expect_message(&f, "{\"a\":1}", 0);
        assert_int_equal(coh_frame_recv(&f, sv[0]), 3);
        assert_int_equal(count_fds(), base + 3);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_int_equal(m.n_fds, 1);
        coh_message_done(&m);

        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* The rule on a chunk fed directly: the one message that starts in it, or -EPROTO. */
static void test_feed_descriptors_to_the_only_message_start(void **state) {
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        int fd;

        /* Inside a message, with one start after its end: that one. */
        coh_frame_init(&f);
        assert_int_equal(coh_frame_feed(&f, "{\"a\"", 4, NULL, 0), 0);
        fd = make_memfd();
        assert_int_equal(coh_frame_feed(&f, ":1}\0{\"b\"", 8, &fd, 1), 0);
        expect_message(&f, "{\"a\":1}", 0);
        assert_int_equal(coh_frame_feed(&f, ":2}", 4, NULL, 0), 0);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_string_equal(m.json, "{\"b\":2}");
        assert_int_equal(m.n_fds, 1);
        assert_int_equal(m.fds[0], fd);
        coh_message_done(&m);
        coh_frame_done(&f);

        /* Refused: a chunk in which two messages start (which one cannot be told), or none. */
        static const struct {
                const char *before, *chunk;
                size_t len;
        } refused[] = {
                { "{", "}\0{}\0{}", 8 },
                { "", "{}\0{", 4 },  /* on a boundary the chunk's first byte is a start: with another one, two */
                { "{", "}", 2 },     /* a NUL as the chunk's last byte starts nothing in it */
        };
        for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
                coh_frame_init(&f);
                assert_int_equal(coh_frame_feed(&f, refused[i].before, strlen(refused[i].before), NULL, 0), 0);
                fd = make_memfd();
                assert_int_equal(coh_frame_feed(&f, refused[i].chunk, refused[i].len, &fd, 1), -EPROTO);
                assert_int_equal(count_fds(), base);
                coh_frame_done(&f);
        }

        /* On a boundary, one complete message and nothing after: its own. */
        coh_frame_init(&f);
        fd = make_memfd();
        assert_int_equal(coh_frame_feed(&f, "{}", 3, &fd, 1), 0);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_int_equal(m.n_fds, 1);
        coh_message_done(&m);
        coh_frame_done(&f);
        assert_int_equal(count_fds(), base);
}

static void too_many_fds(size_t n) {
        unsigned base = count_fds();
        struct coh_frame f;
        int sv[2], *fds;

        make_pair(sv);
        coh_frame_init(&f);
        fds = calloc(n, sizeof(int));
        assert_non_null(fds);
        fds[0] = make_memfd();
        for (size_t i = 1; i < n; i++) {
                fds[i] = fcntl(fds[0], F_DUPFD_CLOEXEC, 3);
                assert_true(fds[i] >= 0);
        }
        send_msg(sv[1], "{}", fds, n);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(close(fds[i]), 0);
        free(fds);

        assert_int_equal(recv_available(&f, sv[0]), -EPROTO);
        assert_int_equal(count_fds(), base + 2);
        expect_nothing(&f);

        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

static void test_too_many_fds_9(void **state) {
        too_many_fds(COH_MESSAGE_FDS_MAX + 1);
}

static void test_too_many_fds_40(void **state) {
        too_many_fds(40);
}

static void test_too_many_fds_250(void **state) {
        too_many_fds(250);
}

static void test_max_fds_accepted(void **state) {
        unsigned base = count_fds();
        int sv[2], fds[COH_MESSAGE_FDS_MAX];
        struct coh_message m;
        struct coh_frame f;

        make_pair(sv);
        coh_frame_init(&f);
        for (size_t i = 0; i < COH_MESSAGE_FDS_MAX; i++)
                fds[i] = make_memfd();
        send_msg(sv[1], "{}", fds, COH_MESSAGE_FDS_MAX);
        assert_int_equal(recv_available(&f, sv[0]), 3);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_int_equal(m.n_fds, COH_MESSAGE_FDS_MAX);
        for (size_t i = 0; i < COH_MESSAGE_FDS_MAX; i++)
                assert_true(same_file(m.fds[i], fds[i]));
        coh_message_done(&m);

        for (size_t i = 0; i < COH_MESSAGE_FDS_MAX; i++)
                assert_int_equal(close(fds[i]), 0);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* With SO_PASSCRED every read carries SCM_CREDENTIALS, which we never asked to handle. */
static void test_foreign_cmsg(void **state) {
        unsigned base = count_fds();
        struct coh_frame f;
        int sv[2], one = 1, fd;

        make_pair(sv);
        coh_frame_init(&f);
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
        send_msg(sv[1], "{}", NULL, 0);
        assert_int_equal(recv_available(&f, sv[0]), -EPROTO);
        expect_nothing(&f);
        coh_frame_done(&f);

        coh_frame_init(&f);
        fd = make_memfd();
        send_msg(sv[1], "{}", &fd, 1);
        assert_int_equal(close(fd), 0);
        assert_int_equal(recv_available(&f, sv[0]), -EPROTO);
        assert_int_equal(count_fds(), base + 2);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

static void test_message_too_big(void **state) {
        unsigned base = count_fds();
        struct coh_frame f;
        size_t total = 0;
        char *big;
        int sv[2], r;

        make_pair(sv);
        coh_frame_init(&f);
        big = malloc(COH_MESSAGE_MAX + 1);
        assert_non_null(big);
        memset(big, ' ', COH_MESSAGE_MAX + 1);
        send_raw(sv[1], big, COH_MESSAGE_MAX + 1, NULL, 0);

        for (;;) {
                r = (int) recv_available(&f, sv[0]);
                if (r <= 0)
                        break;
                total += r;
                assert_true(total < COH_MESSAGE_MAX);
                expect_nothing(&f);
        }
        assert_int_equal(r, -EMSGSIZE);

        free(big);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* The limit counts the NUL: COH_MESSAGE_MAX - 1 bytes of JSON fit, one more does not. */
static void test_message_size_limit(void **state) {
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        char *big;

        big = malloc(COH_MESSAGE_MAX + 1);
        assert_non_null(big);
        memset(big, ' ', COH_MESSAGE_MAX + 1);

        coh_frame_init(&f);
        big[COH_MESSAGE_MAX - 1] = '\0';
        assert_int_equal(coh_frame_feed(&f, big, COH_MESSAGE_MAX, NULL, 0), 0);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_int_equal(m.len, COH_MESSAGE_MAX - 1);
        coh_message_done(&m);
        coh_frame_done(&f);

        /* Complete within one chunk, still too big. */
        coh_frame_init(&f);
        big[COH_MESSAGE_MAX - 1] = ' ';
        big[COH_MESSAGE_MAX] = '\0';
        assert_int_equal(coh_frame_feed(&f, big, COH_MESSAGE_MAX + 1, NULL, 0), -EMSGSIZE);
        coh_frame_done(&f);

        /* Split over chunks. */
        coh_frame_init(&f);
        assert_int_equal(coh_frame_feed(&f, big, COH_MESSAGE_MAX / 2, NULL, 0), 0);
        assert_int_equal(coh_frame_feed(&f, big, COH_MESSAGE_MAX / 2 - 1, NULL, 0), 0);
        assert_int_equal(coh_frame_feed(&f, big, 1, NULL, 0), -EMSGSIZE);
        coh_frame_done(&f);

        free(big);
        assert_int_equal(count_fds(), base);
}

/* A client reads replies far longer than any call (a list of every grant), with its own limit. */
static void test_reply_size_limit(void **state) {
        const size_t max = 4 * COH_MESSAGE_MAX;
        struct coh_message m;
        struct coh_frame f;
        char *big = malloc(max + 1);

        assert_non_null(big);
        memset(big, ' ', max + 1);
        big[max - 1] = '\0';
        coh_frame_init_max(&f, max);
        /* In reads of a few KiB, as a client's recv loop would see it. */
        for (size_t off = 0; off < max; off += 4096)
                assert_int_equal(coh_frame_feed(&f, big + off, off + 4096 <= max ? 4096 : max - off, NULL, 0), 0);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_int_equal(m.len, max - 1);
        coh_message_done(&m);

        /* One byte more is still refused, and the limit survives coh_frame_done(). */
        coh_frame_done(&f);
        big[max - 1] = ' ';
        big[max] = '\0';
        assert_int_equal(coh_frame_feed(&f, big, max + 1, NULL, 0), -EMSGSIZE);
        coh_frame_done(&f);
        free(big);
}

/* A reader that stops taking messages is refused more input, not buffered without bound. */
static void test_reader_backlog(void **state) {
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        size_t each = 2000, n = 40, got = 0, total = 0;
        char *json;
        int sv[2];
        ssize_t r;

        make_pair(sv);
        coh_frame_init(&f);
        json = malloc(each);
        assert_non_null(json);
        memset(json, ' ', each - 1);
        json[0] = '{';
        json[each - 2] = '}';
        json[each - 1] = '\0';
        for (size_t i = 0; i < n; i++)
                send_msg(sv[1], json, NULL, 0);

        while ((r = coh_frame_recv(&f, sv[0])) > 0)
                total += r;
        assert_int_equal(r, -ENOBUFS);
        assert_true(total >= COH_MESSAGE_MAX && total < n * each);

        /* Taking what is there makes room again, and nothing was lost. */
        for (;;) {
                while (coh_frame_next(&f, &m) == 1) {
                        assert_string_equal(m.json, json);
                        coh_message_done(&m);
                        got++;
                }
                r = recv_available(&f, sv[0]);
                if (r == -EAGAIN)
                        break;
                assert_true(r > 0);
        }
        assert_int_equal(got, n);
        assert_false(coh_frame_partial(&f));

        free(json);
        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

static void test_empty_message(void **state) {
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        int sv[2], fd;

        make_pair(sv);
        coh_frame_init(&f);
        fd = make_memfd();
        send_raw(sv[1], "\0{}", 4, &fd, 1);
        assert_int_equal(close(fd), 0);
        assert_int_equal(recv_available(&f, sv[0]), 4);

        /* Its descriptor goes with it. */
        assert_int_equal(coh_frame_next(&f, &m), -EBADMSG);
        assert_null(m.json);
        assert_int_equal(m.n_fds, 0);
        assert_int_equal(count_fds(), base + 2);
        expect_message(&f, "{}", 0);

        coh_frame_done(&f);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

static void test_take_fd(void **state) {
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        int fds[2], a, b;

        coh_frame_init(&f);
        fds[0] = make_memfd();
        fds[1] = make_memfd();
        assert_int_equal(coh_frame_feed(&f, "{}", 3, fds, 2), 0);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_int_equal(m.n_fds, 2);

        assert_int_equal(coh_message_take_fd(&m, 2), -ERANGE);
        assert_int_equal(coh_message_take_fd(&m, -1), -ERANGE);
        assert_int_equal(coh_message_take_fd(&m, LONG_MAX), -ERANGE);
        assert_int_equal(coh_message_take_fd(&m, LONG_MIN), -ERANGE);
        a = coh_message_take_fd(&m, 0);
        assert_true(a >= 0);
        assert_int_equal(coh_message_take_fd(&m, 0), -EBADF);
        b = coh_message_take_fd(&m, 1);
        assert_true(b >= 0);
        assert_int_not_equal(a, b);
        coh_message_done(&m);
        /* Taken ones are the caller's: message_done must not touch them. */
        assert_true(is_cloexec(a));
        assert_int_equal(fcntl(a, F_GETFD) >= 0, 1);
        assert_int_equal(fcntl(b, F_GETFD) >= 0, 1);
        assert_int_equal(close(a), 0);
        assert_int_equal(close(b), 0);

        /* A message without descriptors has no index 0. */
        assert_int_equal(coh_frame_feed(&f, "{}", 3, NULL, 0), 0);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_int_equal(coh_message_take_fd(&m, 0), -ERANGE);
        coh_message_done(&m);

        coh_frame_done(&f);
        assert_int_equal(count_fds(), base);
}

static void test_done_closes_unclaimed(void **state) {
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        int sv[2], fds[3];

        make_pair(sv);
        for (size_t i = 0; i < 3; i++)
                fds[i] = make_memfd();

        /* Received but never handed out: the frame owns them. */
        coh_frame_init(&f);
        send_raw(sv[1], "{\"a\":", 5, fds, 3);
        assert_int_equal(recv_available(&f, sv[0]), 5);
        assert_int_equal(count_fds(), base + 2 + 3 + 3);
        coh_frame_done(&f);
        assert_int_equal(count_fds(), base + 2 + 3);

        /* Complete but not taken out of the frame. */
        coh_frame_init(&f);
        send_msg(sv[1], "{}", fds, 3);
        assert_int_equal(recv_available(&f, sv[0]), 3);
        coh_frame_done(&f);
        assert_int_equal(count_fds(), base + 2 + 3);

        /* Handed out, one taken. */
        coh_frame_init(&f);
        send_msg(sv[1], "{}", fds, 3);
        assert_int_equal(recv_available(&f, sv[0]), 3);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_int_equal(close(coh_message_take_fd(&m, 2)), 0);
        coh_message_done(&m);
        /* Twice is harmless. */
        coh_message_done(&m);
        coh_frame_done(&f);
        coh_frame_done(&f);
        assert_int_equal(count_fds(), base + 2 + 3);

        for (size_t i = 0; i < 3; i++)
                assert_int_equal(close(fds[i]), 0);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

static void test_eof(void **state) {
        unsigned base = count_fds();
        struct coh_frame f;
        int sv[2];

        make_pair(sv);
        coh_frame_init(&f);
        send_msg(sv[1], "{}", NULL, 0);
        send_str(sv[1], "{\"cut");
        assert_int_equal(close(sv[1]), 0);

        assert_int_equal(recv_available(&f, sv[0]), 8);
        assert_int_equal(recv_available(&f, sv[0]), 0);
        /* What arrived before EOF is still there, and the caller can tell it was cut. */
        expect_message(&f, "{}", 0);
        assert_true(coh_frame_partial(&f));
        assert_int_equal(recv_available(&f, sv[0]), 0);

        coh_frame_done(&f);
        assert_int_equal(close(sv[0]), 0);
        assert_int_equal(count_fds(), base);
}

static void test_feed_rules(void **state) {
        unsigned base = count_fds();
        int fds[COH_MESSAGE_FDS_MAX + 1];
        struct coh_message m;
        struct coh_frame f;

        coh_frame_init(&f);

        /* Descriptors need a byte. */
        fds[0] = make_memfd();
        assert_int_equal(coh_frame_feed(&f, "", 0, fds, 1), -EPROTO);
        assert_int_equal(count_fds(), base);

        /* Too many are closed, all of them. */
        for (size_t i = 0; i < COH_MESSAGE_FDS_MAX + 1; i++)
                fds[i] = make_memfd();
        assert_int_equal(coh_frame_feed(&f, "{}", 3, fds, COH_MESSAGE_FDS_MAX + 1), -EPROTO);
        assert_int_equal(count_fds(), base);
        expect_nothing(&f);

        /* Not on a boundary. */
        assert_int_equal(coh_frame_feed(&f, "{", 1, NULL, 0), 0);
        fds[0] = make_memfd();
        assert_int_equal(coh_frame_feed(&f, "}", 2, fds, 1), -EPROTO);
        assert_int_equal(count_fds(), base);
        coh_frame_done(&f);

        /* Many messages in one chunk bigger than any single message may be. */
        coh_frame_init(&f);
        {
                size_t n = 100, each = 1000;
                char *chunk = malloc(n * each), *json;

                assert_non_null(chunk);
                memset(chunk, ' ', n * each);
                for (size_t i = 0; i < n; i++) {
                        chunk[i * each] = '{';
                        chunk[i * each + each - 2] = '}';
                        chunk[i * each + each - 1] = '\0';
                }
                json = strndup(chunk, each - 1);
                assert_non_null(json);
                assert_int_equal(coh_frame_feed(&f, chunk, n * each, NULL, 0), 0);
                for (size_t i = 0; i < n; i++)
                        expect_message(&f, json, 0);
                free(json);
                expect_nothing(&f);
                free(chunk);
        }

        /* Descriptors of a message still being assembled stay with it. */
        fds[0] = make_memfd();
        assert_int_equal(coh_frame_feed(&f, "{\"a", 3, fds, 1), 0);
        assert_int_equal(coh_frame_feed(&f, "\":1}\0{}", 8, NULL, 0), 0);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_int_equal(m.n_fds, 1);
        /* Handed over as they were given: the frame owned them, now the message does. */
        assert_int_equal(m.fds[0], fds[0]);
        coh_message_done(&m);
        expect_message(&f, "{}", 0);

        coh_frame_done(&f);
        assert_int_equal(count_fds(), base);
}

static void test_outbuf(void **state) {
        unsigned base = count_fds();
        struct coh_outbuf o = {};
        char msg[1000], *got;
        size_t queued = 0, received = 0, sent_total = 0;
        int sv[2], sndbuf = 4096, r;

        make_pair(sv);
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
        memset(msg, 'o', sizeof(msg) - 1);
        msg[sizeof(msg) - 1] = '\0';

        assert_int_equal(coh_outbuf_flush(&o, sv[0]), 0);
        assert_false(coh_outbuf_pending(&o));

        /* Limit: counts the NULs, and a refused append changes nothing. */
        for (int i = 0; i < 200; i++) {
                assert_int_equal(coh_outbuf_append(&o, msg, 200 * sizeof(msg)), 0);
                queued += sizeof(msg);
        }
        assert_int_equal(coh_outbuf_append(&o, "x", 200 * sizeof(msg)), -ENOBUFS);
        assert_int_equal(coh_outbuf_append(&o, msg, 200 * sizeof(msg) + sizeof(msg) - 1), -ENOBUFS);
        assert_int_equal(o.len - o.off, queued);
        assert_true(coh_outbuf_pending(&o));

        /* Far more than the socket takes. */
        r = coh_outbuf_flush(&o, sv[0]);
        assert_int_equal(r, -EAGAIN);
        assert_true(coh_outbuf_pending(&o));
        assert_true(o.len - o.off < queued);

        /* Once some has gone, the room is usable again. */
        assert_int_equal(coh_outbuf_append(&o, msg, 200 * sizeof(msg)), 0);
        queued += sizeof(msg);
        sent_total = queued;

        got = malloc(sent_total);
        assert_non_null(got);
        while (received < sent_total) {
                ssize_t n = recv(sv[1], got + received, sent_total - received, MSG_DONTWAIT);

                if (n < 0) {
                        assert_int_equal(errno, EAGAIN);
                        r = coh_outbuf_flush(&o, sv[0]);
                        assert_true(r == 0 || r == -EAGAIN);
                        continue;
                }
                received += n;
        }
        assert_int_equal(coh_outbuf_flush(&o, sv[0]), 0);
        assert_false(coh_outbuf_pending(&o));
        for (size_t i = 0; i < sent_total / sizeof(msg); i++)
                assert_memory_equal(got + i * sizeof(msg), msg, sizeof(msg));
        free(got);

        /* Peer gone. */
        assert_int_equal(coh_outbuf_append(&o, "{}", 4096), 0);
        assert_int_equal(close(sv[1]), 0);
        assert_int_equal(coh_outbuf_flush(&o, sv[0]), -EPIPE);

        coh_outbuf_done(&o);
        assert_int_equal(close(sv[0]), 0);
        assert_int_equal(count_fds(), base);
}

/* ---- outgoing descriptors (coh_outbuf_append_fds, coh_outbuf_flush) ------ */

#define ARRIVALS_MAX 64

/* What a peer reading one byte per recvmsg() sees: the bytes, and at which
 * offset each batch of descriptors arrived. A byte read alone comes from one
 * segment, and descriptors come with the first byte read of the segment that
 * carried them, so the offsets say exactly which byte the sender put them on. */
struct arrivals {
        char *bytes;
        size_t len, cap;
        struct {
                size_t at;
                int fds[COH_MESSAGE_FDS_MAX];
                size_t n;
        } batch[ARRIVALS_MAX];
        size_t n_batches;
};

/* Reads whatever the socket holds now, byte by byte; returns how many bytes. */
static size_t drain_bytewise(int sock, struct arrivals *a) {
        size_t got = 0;

        for (;;) {
                union {
                        struct cmsghdr align;
                        /* Room for more than a message may carry: a sender that put too
                         * many on one byte is seen, not truncated away. */
                        char buf[CMSG_SPACE(sizeof(int) * 2 * COH_MESSAGE_FDS_MAX)];
                } control;
                char byte;
                struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof control };
                ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

                if (n < 0 && errno == EAGAIN)
                        return got;
                assert_int_equal(n, 1);
                assert_false(mh.msg_flags & MSG_CTRUNC);
                if (a->len == a->cap) {
                        a->cap = a->cap ? a->cap * 2 : 4096;
                        a->bytes = realloc(a->bytes, a->cap);
                        assert_non_null(a->bytes);
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

                        assert_int_equal(c->cmsg_level, SOL_SOCKET);
                        assert_int_equal(c->cmsg_type, SCM_RIGHTS);
                        assert_true(a->n_batches < ARRIVALS_MAX);
                        assert_true(k <= COH_MESSAGE_FDS_MAX);
                        a->batch[a->n_batches].at = a->len;
                        a->batch[a->n_batches].n = k;
                        memcpy(a->batch[a->n_batches].fds, CMSG_DATA(c), k * sizeof(int));
                        a->n_batches++;
                }
                a->bytes[a->len++] = byte;
                got++;
        }
}

static unsigned arrived_fds(const struct arrivals *a) {
        unsigned n = 0;
        for (size_t i = 0; i < a->n_batches; i++)
                n += (unsigned) a->batch[i].n;
        return n;
}

static void arrivals_done(struct arrivals *a) {
        for (size_t i = 0; i < a->n_batches; i++)
                for (size_t k = 0; k < a->batch[i].n; k++)
                        assert_int_equal(close(a->batch[i].fds[k]), 0);
        free(a->bytes);
        *a = (struct arrivals) {};
}

/* coh_outbuf_send(): a message the socket takes whole goes from where it lies,
 * with nothing buffered; one it takes in part, or not at all, waits; one sent
 * while others wait goes behind them. Each message's descriptor arrives on
 * its first byte, whichever way it went. */
static void test_outbuf_send(void **state) {
        unsigned base = count_fds();
        struct coh_outbuf o = {};
        struct arrivals a = {};
        /* Longer than the kernel's largest segment for this buffer (unix_stream_sendmsg
         * cuts at half the send buffer): the socket takes it in part. */
        static char big[20000];
        size_t offsets[64], n_msgs = 0, total = 0;
        int sv[2], sndbuf = 4096, r, fd;

        make_pair(sv);
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
        memset(big, 'b', sizeof big - 1);
        big[sizeof big - 1] = '\0';

        fd = make_memfd();
        assert_int_equal(coh_outbuf_send(&o, sv[0], "{\"a\":1}", 1 << 20, &fd, 1), 0);
        assert_false(coh_outbuf_pending(&o));
        assert_null(o.buf); /* sent from where it lay */
        offsets[n_msgs++] = total;
        total += sizeof "{\"a\":1}";

        /* Until the socket takes no more whole: that one waits, in part or all of it. */
        do {
                assert_true(n_msgs < 60);
                fd = make_memfd();
                r = coh_outbuf_send(&o, sv[0], big, 1 << 20, &fd, 1);
                assert_true(r == 0 || r == -EAGAIN);
                offsets[n_msgs++] = total;
                total += sizeof big;
        } while (r == 0);
        assert_true(coh_outbuf_pending(&o));

        /* Behind it. */
        fd = make_memfd();
        assert_int_equal(coh_outbuf_send(&o, sv[0], "{\"c\":3}", 1 << 20, &fd, 1), -EAGAIN);
        offsets[n_msgs++] = total;
        total += sizeof "{\"c\":3}";

        while (a.len < total) {
                drain_bytewise(sv[1], &a);
                r = coh_outbuf_flush(&o, sv[0]);
                assert_true(r == 0 || r == -EAGAIN);
        }
        assert_false(coh_outbuf_pending(&o));
        assert_int_equal(a.len, total);
        assert_int_equal(a.n_batches, n_msgs);
        for (size_t i = 0; i < n_msgs; i++) {
                assert_int_equal(a.batch[i].at, offsets[i]);
                assert_int_equal(a.batch[i].n, 1);
        }
        assert_memory_equal(a.bytes + offsets[n_msgs - 1], "{\"c\":3}", sizeof "{\"c\":3}");

        /* Past the limit: refused, its descriptor closed. */
        fd = make_memfd();
        assert_int_equal(coh_outbuf_send(&o, sv[0], big, 100, &fd, 1), -ENOBUFS);

        arrivals_done(&a);
        coh_outbuf_done(&o);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* One queued message and the descriptors the test kept to recognise what it sent. */
struct sent {
        const char *json;
        int fds[COH_MESSAGE_FDS_MAX];
        size_t n_fds;
};

/* Queues m with copies of its descriptors (the outbuf takes them). */
static void queue(struct coh_outbuf *o, const struct sent *m) {
        int copies[COH_MESSAGE_FDS_MAX];

        for (size_t i = 0; i < m->n_fds; i++) {
                copies[i] = fcntl(m->fds[i], F_DUPFD_CLOEXEC, 3);
                assert_true(copies[i] >= 0);
        }
        assert_int_equal(coh_outbuf_append_fds(o, m->json, SIZE_MAX, copies, m->n_fds), 0);
}

/* The stream is exactly the messages, and descriptors arrived on the first byte of
 * each message that has some, those and in that order, and nowhere else. */
static void expect_stream(const struct arrivals *a, const struct sent *m, size_t n) {
        size_t off = 0, batch = 0;

        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(m[i].json) + 1;

                assert_true(off + len <= a->len);
                assert_memory_equal(a->bytes + off, m[i].json, len);
                if (m[i].n_fds > 0) {
                        if (batch >= a->n_batches || a->batch[batch].at != off)
                                fail_msg("message %zu (offset %zu): its descriptors arrived at offset %zd", i, off,
                                         batch < a->n_batches ? (ssize_t) a->batch[batch].at : (ssize_t) -1);
                        assert_int_equal(a->batch[batch].n, m[i].n_fds);
                        for (size_t k = 0; k < m[i].n_fds; k++) {
                                assert_true(same_file(a->batch[batch].fds[k], m[i].fds[k]));
                                assert_true(is_cloexec(a->batch[batch].fds[k]));
                        }
                        batch++;
                }
                off += len;
        }
        assert_int_equal(off, a->len);
        if (batch != a->n_batches)
                fail_msg("%zu batch(es) of descriptors arrived, %zu expected; the first extra at offset %zu",
                         a->n_batches, batch, a->batch[batch].at);
}

static void make_memfds(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = make_memfd();
}

static void close_sent(struct sent *m, size_t n) {
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < m[i].n_fds; k++)
                        assert_int_equal(close(m[i].fds[k]), 0);
}

static void test_outbuf_fds_ride_on_their_messages_first_byte(void **state) {
        unsigned base = count_fds();
        struct coh_outbuf o = {};
        struct arrivals a = {};
        int sv[2];
        /* Descriptors after plain messages, back to back, the most one may carry, last;
         * then, in a second round, first in the queue. */
        struct sent m[] = {
                { .json = "{\"parameters\":{\"event\":\"a\"},\"continues\":true}" },
                { .json = "{\"parameters\":{\"group\":0}}", .n_fds = 1 },
                { .json = "{\"parameters\":{\"event\":\"b\"},\"continues\":true}" },
                { .json = "{\"parameters\":{\"event\":\"c\"},\"continues\":true}" },
                { .json = "{\"parameters\":{\"x\":0,\"y\":1}}", .n_fds = 2 },
                { .json = "{\"parameters\":{\"all\":true}}", .n_fds = COH_MESSAGE_FDS_MAX },
                { .json = "{}" },
                { .json = "{\"parameters\":{\"last\":0}}", .n_fds = 1 },
                /* second round */
                { .json = "{\"parameters\":{\"first\":0}}", .n_fds = 3 },
                { .json = "{\"parameters\":{\"event\":\"d\"},\"continues\":true}" },
        };
        const size_t n = sizeof m / sizeof m[0], second = 8;

        make_pair(sv);
        for (size_t i = 0; i < n; i++)
                make_memfds(m[i].fds, m[i].n_fds);
        unsigned kept = count_fds();
        for (size_t round = 0; round < 2; round++) {
                for (size_t i = round == 0 ? 0 : second; i < (round == 0 ? second : n); i++)
                        queue(&o, &m[i]);
                assert_true(coh_outbuf_pending(&o));
                assert_int_equal(coh_outbuf_flush(&o, sv[0]), 0);
                assert_false(coh_outbuf_pending(&o));
                /* Sent: the kernel holds its copies, the buffer none. */
                assert_int_equal(count_fds(), kept + arrived_fds(&a));
                drain_bytewise(sv[1], &a);
        }
        expect_stream(&a, m, n);

        arrivals_done(&a);
        close_sent(m, n);
        coh_outbuf_done(&o);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* A message with descriptors is appended while an earlier one is half sent: the
 * buffer is compacted under the queued descriptors, which must stay with theirs. */
static void test_outbuf_fds_over_partial_sends(void **state) {
        unsigned base = count_fds();
        struct coh_outbuf o = {};
        struct arrivals a = {};
        int sv[2], sndbuf = 4096, r;
        enum { N = 12 };
        struct sent m[N] = {};
        char *json[N];
        /* Some far larger than the socket takes at once, so sends stop mid-message,
         * also in a message that carries descriptors. */
        static const size_t sizes[N] = { 100, 40000, 300, 30000, 50, 9000, 9000, 20, 12000, 700, 64, 25000 };
        static const size_t n_fds[N] = { 0, 2, 1, 0, 1, 1, 0, 3, 0, 1, 1, 0 };

        make_pair(sv);
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
        for (size_t i = 0; i < N; i++) {
                json[i] = malloc(sizes[i] + 1);
                assert_non_null(json[i]);
                memset(json[i], 'a' + (char) i, sizes[i]);
                json[i][0] = '{';
                json[i][sizes[i] - 1] = '}';
                json[i][sizes[i]] = '\0';
                m[i].json = json[i];
                m[i].n_fds = n_fds[i];
                make_memfds(m[i].fds, m[i].n_fds);
        }
        unsigned kept = count_fds();

        /* Half now; the socket fills up within the second message, which carries descriptors. */
        for (size_t i = 0; i < N / 2; i++)
                queue(&o, &m[i]);
        assert_int_equal(coh_outbuf_flush(&o, sv[0]), -EAGAIN);
        /* The second message's descriptors went with its first bytes; the rest are queued. */
        assert_int_equal(count_fds(), kept + (n_fds[2] + n_fds[4] + n_fds[5]));
        drain_bytewise(sv[1], &a);
        assert_true(a.len > sizes[0] + 1 && a.len < sizes[0] + 1 + sizes[1] + 1);

        /* The rest is appended while the buffer holds sent and unsent bytes. */
        assert_true(o.off > 0);
        for (size_t i = N / 2; i < N; i++)
                queue(&o, &m[i]);
        for (;;) {
                r = coh_outbuf_flush(&o, sv[0]);
                drain_bytewise(sv[1], &a);
                if (r == 0)
                        break;
                assert_int_equal(r, -EAGAIN);
        }
        assert_false(coh_outbuf_pending(&o));
        /* Every descriptor was sent: the buffer holds none, the peer has them all. */
        assert_int_equal(count_fds(), kept + arrived_fds(&a));
        expect_stream(&a, m, N);

        arrivals_done(&a);
        close_sent(m, N);
        for (size_t i = 0; i < N; i++)
                free(json[i]);
        coh_outbuf_done(&o);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* A descriptor whose every copy the test can see closed: a pipe's write end. Its
 * read end hangs up once no process holds the write end and none is in flight. */
static void make_pipe(int p[2]) {
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
}

/* Whether the write end of the pipe whose read end is r is gone; waits up to
 * timeout_ms for it (0: just look). */
static bool writer_gone(int r, int timeout_ms) {
        struct pollfd p = { .fd = r, .events = POLLIN };
        int n = poll(&p, 1, timeout_ms);

        assert_true(n >= 0);
        return n == 1 && (p.revents & POLLHUP);
}

static void test_outbuf_done_closes_descriptors_not_yet_sent(void **state) {
        unsigned base = count_fds();
        struct coh_outbuf o = {};
        int sv[2], sndbuf = 4096, pipes[4][2], w;
        char *huge;

        make_pair(sv);
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
        for (size_t i = 0; i < 4; i++)
                make_pipe(pipes[i]);
        huge = malloc(40001);
        assert_non_null(huge);
        memset(huge, ' ', 40000);
        huge[0] = '{';
        huge[39999] = '}';
        huge[40000] = '\0';

        /* The first goes out in part, with its descriptor; the others wait. */
        w = pipes[0][1];
        assert_int_equal(coh_outbuf_append_fds(&o, huge, SIZE_MAX, &w, 1), 0);
        w = pipes[1][1];
        assert_int_equal(coh_outbuf_append_fds(&o, "{\"one\":0}", SIZE_MAX, &w, 1), 0);
        assert_int_equal(coh_outbuf_append(&o, "{}", SIZE_MAX), 0);
        int two[2] = { pipes[2][1], pipes[3][1] };
        assert_int_equal(coh_outbuf_append_fds(&o, "{\"two\":[0,1]}", SIZE_MAX, two, 2), 0);
        assert_int_equal(coh_outbuf_flush(&o, sv[0]), -EAGAIN);
        for (size_t i = 0; i < 4; i++)
                assert_false(writer_gone(pipes[i][0], 0));

        coh_outbuf_done(&o);
        /* The unsent are closed; the sent one is the kernel's, in flight to the peer. */
        assert_false(writer_gone(pipes[0][0], 0));
        for (size_t i = 1; i < 4; i++)
                assert_true(writer_gone(pipes[i][0], 0));
        assert_false(coh_outbuf_pending(&o));
        coh_outbuf_done(&o); /* twice is harmless */

        /* The peer goes without reading: what was in flight is released with it. */
        assert_int_equal(close(sv[1]), 0);
        assert_true(writer_gone(pipes[0][0], 5000));

        for (size_t i = 0; i < 4; i++)
                assert_int_equal(close(pipes[i][0]), 0);
        free(huge);
        assert_int_equal(close(sv[0]), 0);
        assert_int_equal(count_fds(), base);
}

/* A flush that fails keeps what it could not send, for coh_outbuf_done to close. */
static void test_outbuf_failed_flush_keeps_descriptors_until_done(void **state) {
        unsigned base = count_fds();
        struct coh_outbuf o = {};
        int sv[2], p[2];

        make_pair(sv);
        make_pipe(p);
        assert_int_equal(coh_outbuf_append(&o, "{}", SIZE_MAX), 0);
        assert_int_equal(coh_outbuf_append_fds(&o, "{\"group\":0}", SIZE_MAX, &p[1], 1), 0);
        assert_int_equal(close(sv[1]), 0);
        assert_int_equal(coh_outbuf_flush(&o, sv[0]), -EPIPE);
        assert_false(writer_gone(p[0], 0));
        coh_outbuf_done(&o);
        assert_true(writer_gone(p[0], 0));

        assert_int_equal(close(p[0]), 0);
        assert_int_equal(close(sv[0]), 0);
        assert_int_equal(count_fds(), base);
}

/* What append_fds refuses, it closes, every descriptor, and the queue stays as it was. */
static void test_outbuf_append_fds_refused_closes_them(void **state) {
        unsigned base = count_fds();
        struct coh_outbuf o = {};
        struct arrivals a = {};
        int sv[2], pipes[COH_MESSAGE_FDS_MAX + 1][2], w[COH_MESSAGE_FDS_MAX + 1], p[2];
        struct sent ok[2] = { { .json = "{\"first\":0}", .n_fds = 1 }, { .json = "{\"plain\":0}" } };

        make_pair(sv);
        make_memfds(ok[0].fds, 1);
        queue(&o, &ok[0]);
        size_t queued = o.len - o.off;

        /* One more than a message may carry. */
        for (size_t i = 0; i < COH_MESSAGE_FDS_MAX + 1; i++) {
                make_pipe(pipes[i]);
                w[i] = pipes[i][1];
        }
        assert_int_equal(coh_outbuf_append_fds(&o, "{\"many\":0}", SIZE_MAX, w, COH_MESSAGE_FDS_MAX + 1), -EINVAL);
        for (size_t i = 0; i < COH_MESSAGE_FDS_MAX + 1; i++) {
                assert_true(writer_gone(pipes[i][0], 0));
                assert_int_equal(close(pipes[i][0]), 0);
        }

        /* Past the byte limit. */
        make_pipe(p);
        assert_int_equal(coh_outbuf_append_fds(&o, "{\"big\":0}", queued + 5, &p[1], 1), -ENOBUFS);
        assert_true(writer_gone(p[0], 0));
        assert_int_equal(close(p[0]), 0);
        assert_int_equal(o.len - o.off, queued);

        /* No descriptors: a plain append. */
        assert_int_equal(coh_outbuf_append_fds(&o, ok[1].json, SIZE_MAX, NULL, 0), 0);

        /* Only what was accepted goes out, each descriptor with its own message. */
        assert_int_equal(coh_outbuf_flush(&o, sv[0]), 0);
        drain_bytewise(sv[1], &a);
        expect_stream(&a, ok, 2);

        arrivals_done(&a);
        close_sent(ok, 2);
        coh_outbuf_done(&o);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

/* A client reading replies with coh_frame gets the descriptors with their reply. */
static void test_outbuf_fds_round_trip_through_a_frame(void **state) {
        unsigned base = count_fds();
        struct coh_outbuf o = {};
        struct coh_message msg;
        struct coh_frame f;
        int sv[2];
        struct sent m[] = {
                { .json = "{\"parameters\":{\"grant\":\"g-1\",\"group\":0}}", .n_fds = 1 },
                { .json = "{\"parameters\":{\"state\":\"ended\"}}" },
        };

        make_pair(sv);
        coh_frame_init_max(&f, COH_REPLY_MAX);
        make_memfds(m[0].fds, 1);
        for (size_t i = 0; i < 2; i++)
                queue(&o, &m[i]);
        assert_int_equal(coh_outbuf_flush(&o, sv[0]), 0);

        assert_true(recv_available(&f, sv[1]) > 0);
        assert_int_equal(coh_frame_next(&f, &msg), 1);
        assert_string_equal(msg.json, m[0].json);
        assert_int_equal(msg.n_fds, 1);
        assert_true(same_file(msg.fds[0], m[0].fds[0]));
        coh_message_done(&msg);
        expect_message(&f, m[1].json, 0);
        expect_nothing(&f);

        close_sent(m, 2);
        coh_frame_done(&f);
        coh_outbuf_done(&o);
        close_pair(sv);
        assert_int_equal(count_fds(), base);
}

static void test_send_message_round_trip(void **state) {
        unsigned base = count_fds();
        struct coh_message m;
        struct coh_frame f;
        int sv[2], fds[2];
        char *big;
        ssize_t n;

        make_pair(sv);
        coh_frame_init(&f);
        fds[0] = make_memfd();
        fds[1] = make_memfd();

        assert_int_equal(coh_send_message(sv[1], "{\"method\":\"a.B\"}", fds, 2), 0);
        assert_int_equal(coh_send_message(sv[1], "{\"method\":\"a.C\"}", NULL, 0), 0);
        /* The sender keeps its own. */
        assert_int_equal(count_fds(), base + 4);

        assert_int_equal(recv_available(&f, sv[0]), 2 * 17);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_string_equal(m.json, "{\"method\":\"a.B\"}");
        assert_int_equal(m.n_fds, 2);
        assert_true(same_file(m.fds[0], fds[0]));
        assert_true(same_file(m.fds[1], fds[1]));
        assert_true(is_cloexec(m.fds[0]) && is_cloexec(m.fds[1]));
        coh_message_done(&m);
        expect_message(&f, "{\"method\":\"a.C\"}", 0);

        /* A large message arrives over several reads with its descriptors on the first. */
        big = malloc(COH_MESSAGE_MAX);
        assert_non_null(big);
        memset(big, ' ', COH_MESSAGE_MAX - 1);
        big[0] = '{';
        big[COH_MESSAGE_MAX - 2] = '}';
        big[COH_MESSAGE_MAX - 1] = '\0';
        assert_int_equal(coh_send_message(sv[1], big, fds, 2), 0);
        /* The first read brings the descriptors (with the first byte, and what
         * follows of the message as far as the look showed it). */
        n = coh_frame_recv(&f, sv[0]);
        assert_true(n > 1);
        assert_int_equal(f.n_fds, 2);
        while (coh_frame_partial(&f))
                assert_true(coh_frame_recv(&f, sv[0]) > 0);
        assert_int_equal(coh_frame_next(&f, &m), 1);
        assert_int_equal(m.len, COH_MESSAGE_MAX - 1);
        assert_int_equal(m.n_fds, 2);
        assert_true(same_file(m.fds[1], fds[1]));
        coh_message_done(&m);

        /* What the receiver would refuse is not sent. */
        big[COH_MESSAGE_MAX - 1] = ' ';
        big = realloc(big, COH_MESSAGE_MAX + 1);
        assert_non_null(big);
        big[COH_MESSAGE_MAX] = '\0';
        assert_int_equal(coh_send_message(sv[1], big, NULL, 0), -EMSGSIZE);
        {
                int many[COH_MESSAGE_FDS_MAX + 1];

                for (size_t i = 0; i < COH_MESSAGE_FDS_MAX + 1; i++)
                        many[i] = fds[0];
                assert_int_equal(coh_send_message(sv[1], "{}", many, COH_MESSAGE_FDS_MAX + 1), -EINVAL);
        }
        assert_int_equal(recv_available(&f, sv[0]), -EAGAIN);
        free(big);

        assert_int_equal(close(sv[0]), 0);
        assert_int_equal(coh_send_message(sv[1], "{}", NULL, 0), -EPIPE);

        assert_int_equal(close(fds[0]), 0);
        assert_int_equal(close(fds[1]), 0);
        coh_frame_done(&f);
        assert_int_equal(close(sv[1]), 0);
        assert_int_equal(count_fds(), base);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_nothing_to_read),
                cmocka_unit_test(test_reply_size_limit),
                cmocka_unit_test(test_several_messages_one_read),
                cmocka_unit_test(test_byte_by_byte),
                cmocka_unit_test(test_fds_with_first_byte),
                cmocka_unit_test(test_fds_first_message_in_read),
                cmocka_unit_test(test_fds_message_over_reads),
                cmocka_unit_test(test_fds_while_partial),
                cmocka_unit_test(test_fds_while_fds_pending),
                cmocka_unit_test(test_back_to_back_call_without_then_with_descriptors),
                cmocka_unit_test(test_pipelined_calls_keep_their_descriptors),
                cmocka_unit_test(test_descriptors_of_a_write_of_several_messages),
                cmocka_unit_test(test_fds_mid_message_before_a_message_start),
                cmocka_unit_test(test_fds_mid_message_after_a_message_start),
                cmocka_unit_test(test_random_back_to_back_calls_keep_their_descriptors),
                cmocka_unit_test(test_looking_ahead_takes_no_descriptors),
                cmocka_unit_test(test_a_call_costs_a_look_and_one_read),
                cmocka_unit_test(test_buffers_freed_when_empty),
                cmocka_unit_test(test_feed_descriptors_to_the_only_message_start),
                cmocka_unit_test(test_too_many_fds_9),
                cmocka_unit_test(test_too_many_fds_40),
                cmocka_unit_test(test_too_many_fds_250),
                cmocka_unit_test(test_max_fds_accepted),
                cmocka_unit_test(test_foreign_cmsg),
                cmocka_unit_test(test_message_too_big),
                cmocka_unit_test(test_message_size_limit),
                cmocka_unit_test(test_reader_backlog),
                cmocka_unit_test(test_empty_message),
                cmocka_unit_test(test_take_fd),
                cmocka_unit_test(test_done_closes_unclaimed),
                cmocka_unit_test(test_eof),
                cmocka_unit_test(test_feed_rules),
                cmocka_unit_test(test_outbuf),
                cmocka_unit_test(test_outbuf_send),
                cmocka_unit_test(test_outbuf_fds_ride_on_their_messages_first_byte),
                cmocka_unit_test(test_outbuf_fds_over_partial_sends),
                cmocka_unit_test(test_outbuf_done_closes_descriptors_not_yet_sent),
                cmocka_unit_test(test_outbuf_failed_flush_keeps_descriptors_until_done),
                cmocka_unit_test(test_outbuf_append_fds_refused_closes_them),
                cmocka_unit_test(test_outbuf_fds_round_trip_through_a_frame),
                cmocka_unit_test(test_send_message_round_trip),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
