/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * notify.c: messages to the service manager on one kept socket, as a real
 * manager receives them: a datagram socket bound where NOTIFY_SOCKET points,
 * with SO_PASSCRED as systemd sets it (it tells the sender by the credentials
 * the kernel attaches), read here. Descriptors arrive with their message; a
 * manager that re-binds its socket (re-executed) gets the next message anyway;
 * a barrier returns once the manager closed the pipe end it was sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "notify.h"
#include "util.h"

struct manager {
        char dir[32], path[64];
        int fd;
};

static void manager_bind(struct manager *m) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int one = 1;
        m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(m->fd >= 0);
        assert_int_equal(setsockopt(m->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one), 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", m->path);
        (void) unlink(m->path);
        assert_int_equal(bind(m->fd, (struct sockaddr *) &sa, sizeof sa), 0);
}

static int setup(void **state) {
        struct manager *m = calloc(1, sizeof *m);
        assert_non_null(m);
        snprintf(m->dir, sizeof m->dir, "/tmp/coh-notify-XXXXXX");
        assert_non_null(mkdtemp(m->dir));
        snprintf(m->path, sizeof m->path, "%s/notify", m->dir);
        manager_bind(m);
        assert_int_equal(setenv("NOTIFY_SOCKET", m->path, 1), 0);
        *state = m;
        return 0;
}

static int teardown(void **state) {
        struct manager *m = *state;
        close(m->fd);
        unlink(m->path);
        rmdir(m->dir);
        unsetenv("NOTIFY_SOCKET");
        free(m);
        return 0;
}

/* One datagram: its text, its sender's pid, and its descriptors (closed by the caller). */
static void receive(struct manager *m, char *text, size_t size, pid_t *pid, int *fds, size_t *n_fds) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 4)];
        } control = {};
        struct iovec iov = { .iov_base = text, .iov_len = size - 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof control.buf };
        ssize_t n = recvmsg(m->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        assert_true(n >= 0);
        text[n] = 0;
        *pid = 0;
        *n_fds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                        struct ucred u;
                        memcpy(&u, CMSG_DATA(c), sizeof u);
                        *pid = u.pid;
                } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        memcpy(fds + *n_fds, CMSG_DATA(c), k * sizeof(int));
                        *n_fds += k;
                }
        }
}

static void test_messages_arrive_with_their_sender_and_descriptors(void **state) {
        struct manager *m = *state;
        struct coh_notify n;
        char text[256];
        pid_t pid;
        int fds[4], p[2];
        size_t n_fds;

        coh_notify_init(&n);
        assert_true(coh_notify_enabled(&n));
        assert_int_equal(coh_notify_send(&n, "READY=1", NULL, 0), 1);
        receive(m, text, sizeof text, &pid, fds, &n_fds);
        assert_string_equal(text, "READY=1");
        assert_int_equal(pid, getpid());
        assert_int_equal(n_fds, 0);

        /* What the fd store sends: a descriptor with its name. The same socket serves both. */
        int kept = n.fd;
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(coh_notify_send(&n, "FDSTORE=1\nFDNAME=pin.g-0", &p[1], 1), 1);
        assert_int_equal(n.fd, kept);
        receive(m, text, sizeof text, &pid, fds, &n_fds);
        assert_string_equal(text, "FDSTORE=1\nFDNAME=pin.g-0");
        assert_int_equal(pid, getpid());
        assert_int_equal(n_fds, 1);
        struct stat a, b;
        assert_int_equal(fstat(fds[0], &a), 0);
        assert_int_equal(fstat(p[1], &b), 0);
        assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
        close(fds[0]);
        close(p[0]);
        close(p[1]);
        coh_notify_done(&n);
}

static void test_a_manager_bound_anew_still_gets_the_next_message(void **state) {
        struct manager *m = *state;
        struct coh_notify n;
        char text[64];
        pid_t pid;
        int fds[4];
        size_t n_fds;

        coh_notify_init(&n);
        assert_int_equal(coh_notify_send(&n, "STATUS=one", NULL, 0), 1);
        receive(m, text, sizeof text, &pid, fds, &n_fds);
        assert_string_equal(text, "STATUS=one");
        /* As PID 1 does when it re-executes: the old socket goes, a new one is bound at the path. */
        close(m->fd);
        manager_bind(m);
        assert_int_equal(coh_notify_send(&n, "STATUS=two", NULL, 0), 1);
        receive(m, text, sizeof text, &pid, fds, &n_fds);
        assert_string_equal(text, "STATUS=two");
        coh_notify_done(&n);
}

static void test_a_barrier_returns_once_the_manager_got_there(void **state) {
        struct manager *m = *state;
        struct coh_notify n;
        char text[64];
        pid_t pid;
        int fds[4];
        size_t n_fds;

        coh_notify_init(&n);
        /* Nobody has read the barrier yet: it waits for its timeout, then says so. */
        assert_int_equal(coh_notify_barrier(&n, 1000), -ETIMEDOUT);
        receive(m, text, sizeof text, &pid, fds, &n_fds);
        assert_string_equal(text, "BARRIER=1");
        assert_int_equal(n_fds, 1);
        close(fds[0]);

        /* A manager that is there: forked, it reads the barrier and closes what came with it. */
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                struct pollfd pfd = { .fd = m->fd, .events = POLLIN };
                if (poll(&pfd, 1, -1) != 1)
                        _exit(1);
                receive(m, text, sizeof text, &pid, fds, &n_fds);
                _exit(strcmp(text, "BARRIER=1") == 0 && n_fds == 1 ? 0 : 1);
        }
        assert_int_equal(coh_notify_barrier(&n, 60ULL * 1000000ULL), 1);
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        coh_notify_done(&n);
}

static void test_without_notify_socket_nothing_is_sent(void **state) {
        struct coh_notify n;
        unsetenv("NOTIFY_SOCKET");
        coh_notify_init(&n);
        assert_false(coh_notify_enabled(&n));
        assert_int_equal(coh_notify_send(&n, "READY=1", NULL, 0), 0);
        assert_int_equal(coh_notify_barrier(&n, 1000), 0);
        assert_int_equal(n.fd, -EBADF);
        coh_notify_done(&n);
}

static void test_an_abstract_address_is_spoken_too(void **state) {
        struct coh_notify n;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char name[64], text[64];
        int one = 1;
        snprintf(name, sizeof name, "@coh-test-notify-%d", (int) getpid());
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one), 0);
        memcpy(sa.sun_path + 1, name + 1, strlen(name) - 1);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(name))), 0);
        assert_int_equal(setenv("NOTIFY_SOCKET", name, 1), 0);
        coh_notify_init(&n);
        assert_int_equal(coh_notify_send(&n, "READY=1", NULL, 0), 1);
        ssize_t k = recv(fd, text, sizeof text - 1, MSG_DONTWAIT);
        assert_int_equal(k, 7);
        text[k] = 0;
        assert_string_equal(text, "READY=1");
        coh_notify_done(&n);
        close(fd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_messages_arrive_with_their_sender_and_descriptors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_manager_bound_anew_still_gets_the_next_message, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_barrier_returns_once_the_manager_got_there, setup, teardown),
                cmocka_unit_test_setup_teardown(test_without_notify_socket_nothing_is_sent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_an_abstract_address_is_spoken_too, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
