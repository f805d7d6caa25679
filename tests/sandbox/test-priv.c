/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The privileged helper (daemon/priv.c) and the main process's side of it
 * (daemon/platform-priv.c), over the simulated platform, the helper in its
 * own sandbox as the daemon runs it: custody goes through it, a probe
 * descriptor is read where it is held, and every request it must not obey
 * is refused with its errno while the helper lives on: wrong sizes, unknown
 * ops, descriptors it does not take (and closes), slots that are no PCI
 * address or not bound to vfio-pci in the group named, an IOAS that is
 * neither container nor iommufd, kills without RevokeKill=, through what is
 * no pidfd, or of PID 1 or the daemon. The helper holds nothing of the
 * process it was forked from and leaves when its socket closes; a dead
 * helper makes requests fail, not hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "platform.h"
#include "frame.h"
#include "priv.h"

#define SLOT "0000:00:05.0" /* group 4 in demo/make-sim-sysfs */
#define GROUP 4
#define UNBOUND_SLOT "0000:00:0a.0" /* group 9, rebound below to a host driver */

struct fixture {
        char dir[64];
        char sysfs[128];
        struct coh_platform *p; /* the facade */
        int fd;                 /* the helper's socket (the facade's; borrowed for raw requests) */
        pid_t helper;
};

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static void make_sysfs(struct fixture *f) {
        const char *src = getenv("COH_TEST_SOURCE_DIR");
        char tool[4096], link[256];
        assert_non_null(src);
        snprintf(tool, sizeof tool, "%s/demo/make-sim-sysfs", src);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                execl(tool, tool, f->sysfs, (char *) NULL);
                _exit(127);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        /* One device bound to a host driver: its group is not VFIO's to hand out. */
        snprintf(link, sizeof link, "%s/devices/pci0000:00/%s/driver", f->sysfs, UNBOUND_SLOT);
        assert_int_equal(unlink(link), 0);
        assert_int_equal(symlink("../../../bus/pci/drivers/e1000e", link), 0);
}

/* A helper (sandboxed, with flags) and its facade over the simulated platform. */
static void start(struct fixture *f, unsigned flags) {
        struct coh_platform *inner;
        char errbuf[256] = "";
        assert_int_equal(coh_platform_sim_new(f->sysfs, &inner, errbuf, sizeof errbuf), 0);
        assert_int_equal(coh_priv_fork(inner, COH_PRIV_SANDBOX | flags, &f->fd, &f->helper, errbuf, sizeof errbuf), 0);
        assert_int_equal(coh_platform_priv_new(inner, f->fd, f->helper, &f->p), 0);
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof *f);
        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "/tmp/coherencyd-priv.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->sysfs, sizeof f->sysfs, "%s/sys", f->dir);
        make_sysfs(f);
        start(f, COH_PRIV_KILL_ALLOWED);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        coh_platform_free(f->p); /* closes the socket and reaps the helper */
        (void) nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

static int sim_object(const char *name) {
        char full[128];
        snprintf(full, sizeof full, "coherencyd-sim:%s", name);
        int fd = memfd_create(full, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        assert_true(fd >= 0);
        return fd;
}

static void device(struct fixture *f, const char *slot, struct coh_device_facts *ret) {
        assert_int_equal(coh_facts_read_device(f->p->sysfs_fd, slot, ret), 0);
}

/* The helper still answers (it did not die of what it was sent). */
static void expect_helper_alive(struct fixture *f) {
        struct coh_holder holders[4];
        assert_int_equal(f->p->ops->custody_holders(f->p, GROUP, holders, 4), 0);
        assert_int_equal(waitpid(f->helper, NULL, WNOHANG), 0);
}

static bool fd_open(int fd) {
        return fcntl(fd, F_GETFD) >= 0;
}

/* ---- custody through the helper -------------------------------------------------- */

static void test_custody_goes_through_the_helper(void **state) {
        struct fixture *f = *state;
        struct coh_device_facts dev;
        struct coh_fd_info ioas;
        struct coh_custody c;
        const char *operation = "unset";
        int file = -1;

        assert_string_equal(f->p->ops->name, "sim");
        int container = sim_object("vfio-container:coherent");
        assert_int_equal(f->p->ops->classify(f->p, container, &ioas), 0);
        assert_int_equal(ioas.kind, COH_FD_VFIO_CONTAINER);
        device(f, SLOT, &dev);
        assert_int_equal(f->p->ops->custody_begin(f->p, &dev, container, &ioas, &file, &c, &operation), 0);
        assert_null(operation);
        assert_true(file >= 0 && c.pin_fd >= 0 && c.probe_fd >= 0);
        assert_true(fcntl(file, F_GETFD) & FD_CLOEXEC);
        assert_true(fcntl(c.pin_fd, F_GETFD) & FD_CLOEXEC);

        /* Held while the handed-over file or the pin is open; free after (and the helper's
         * copies are closed by then: the probe is served after the hand-over, never before). */
        assert_int_equal(f->p->ops->custody_probe_free(f->p, GROUP, &c), 0);
        close(file);
        assert_int_equal(f->p->ops->custody_probe_free(f->p, GROUP, &c), 0);
        close(c.pin_fd);
        assert_int_equal(f->p->ops->custody_probe_free(f->p, GROUP, &c), 1);
        close(c.probe_fd);
        /* Without a probe descriptor (systemd dropped it from the fd store: hung up) it is free. */
        c.probe_fd = -EBADF;
        assert_int_equal(f->p->ops->custody_probe_free(f->p, GROUP, &c), 1);

        /* No IOAS: the inner platform decides (the simulated one needs none). */
        assert_int_equal(f->p->ops->custody_begin(f->p, &dev, -1, NULL, &file, &c, &operation), 0);
        close(file);
        close(c.pin_fd);
        close(c.probe_fd);
        close(container);
        expect_helper_alive(f);
}

static void expect_begin_refused(struct fixture *f, const struct coh_device_facts *dev, int ioas_fd,
                                 const struct coh_fd_info *ioas, int want) {
        struct coh_custody c = { .pin_fd = 7777, .probe_fd = 7777 };
        const char *operation = NULL;
        int file = 7777;
        int r = f->p->ops->custody_begin(f->p, dev, ioas_fd, ioas, &file, &c, &operation);
        if (r != want)
                fail_msg("custody_begin for %s (group %d): %d, expected %d", dev->slot, dev->iommu_group, r, want);
        assert_int_equal(file, -EBADF);
        assert_int_equal(c.pin_fd, -EBADF);
        assert_int_equal(c.probe_fd, -EBADF);
        assert_string_equal(operation, "privileged helper");
        expect_helper_alive(f);
}

static void test_custody_requests_are_checked_again(void **state) {
        struct fixture *f = *state;
        struct coh_device_facts dev;
        struct coh_fd_info ioas;
        int container = sim_object("vfio-container:coherent");
        assert_int_equal(f->p->ops->classify(f->p, container, &ioas), 0);

        /* The parser's facts are not taken: sysfs says whom the slot is bound to, and its group. */
        device(f, UNBOUND_SLOT, &dev);
        snprintf(dev.driver, sizeof dev.driver, "vfio-pci");
        expect_begin_refused(f, &dev, container, &ioas, -ENODEV);
        device(f, SLOT, &dev);
        dev.iommu_group = 3;
        expect_begin_refused(f, &dev, container, &ioas, -ENODEV);
        /* No PCI address, and one that does not exist. */
        device(f, SLOT, &dev);
        snprintf(dev.slot, sizeof dev.slot, "%s", "0000:00:05.0/../..");
        expect_begin_refused(f, &dev, container, &ioas, -EINVAL);
        snprintf(dev.slot, sizeof dev.slot, "%s", "../../../../dev/sda");
        expect_begin_refused(f, &dev, container, &ioas, -EINVAL);
        snprintf(dev.slot, sizeof dev.slot, "%s", "0000:00:1f.0");
        expect_begin_refused(f, &dev, container, &ioas, -ENOENT);

        /* An IOAS that is none, whatever the parser claims it is. */
        device(f, SLOT, &dev);
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        expect_begin_refused(f, &dev, p[0], &ioas, -EBADF);
        int vm = sim_object("kvm-vm");
        expect_begin_refused(f, &dev, vm, &ioas, -EBADF);
        close(vm);
        close(p[0]);
        close(p[1]);
        close(container);
}

/* With no room for what the helper hands back, custody fails with EMFILE and leaves no
 * descriptor behind here (the kernel closes what it could not pass). */
static void test_custody_without_room_for_descriptors_is_emfile(void **state) {
        struct fixture *f = *state;
        struct coh_device_facts dev;
        struct coh_custody c;
        struct rlimit old, tight;
        const char *operation = NULL;
        int file = -1;

        device(f, SLOT, &dev);
        int first_free = dup(0);
        assert_true(first_free >= 0);
        close(first_free);
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
        tight = (struct rlimit) { .rlim_cur = (rlim_t) first_free + 1, .rlim_max = old.rlim_max };
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
        int r = f->p->ops->custody_begin(f->p, &dev, -1, NULL, &file, &c, &operation);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
        assert_int_equal(r, -EMFILE);
        assert_string_equal(operation, "privileged helper");
        assert_int_equal(file, -EBADF);
        assert_false(fd_open(first_free));
        expect_helper_alive(f);
        /* With room, the same request hands over. */
        assert_int_equal(f->p->ops->custody_begin(f->p, &dev, -1, NULL, &file, &c, &operation), 0);
        close(file);
        close(c.pin_fd);
        close(c.probe_fd);
}

/* ---- the raw protocol ------------------------------------------------------------- */

/* Sends len bytes with fds (more than coh_priv_send would: raw) and returns the reply's result. */
static int raw_call(struct fixture *f, const void *buf, size_t len, const int *fds, size_t n_fds) {
        assert_int_equal(coh_sendmsg_fds(f->fd, buf, len, fds, n_fds, MSG_NOSIGNAL), (ssize_t) len);

        struct coh_priv_reply reply;
        int got[COH_PRIV_FDS_MAX], flags;
        size_t n_got;
        assert_int_equal(coh_priv_recv(f->fd, &reply, sizeof reply, got, &n_got, &flags), (ssize_t) sizeof reply);
        assert_int_equal(flags, 0);
        assert_int_equal(n_got, 0); /* nothing handed out for a refused request */
        assert_int_equal(reply.fds, 0);
        return reply.result;
}

static void test_malformed_requests_are_refused(void **state) {
        struct fixture *f = *state;
        struct coh_priv_request req = { .op = COH_PRIV_HOLDERS, .group = GROUP };
        char big[sizeof req + 16] = {};

        /* Sizes: exactly one request. */
        assert_int_equal(raw_call(f, &req, sizeof req - 1, NULL, 0), -EBADMSG);
        assert_int_equal(raw_call(f, &req, 4, NULL, 0), -EBADMSG);
        memcpy(big, &req, sizeof req);
        assert_int_equal(raw_call(f, big, sizeof big, NULL, 0), -EBADMSG);
        assert_int_equal(raw_call(f, big, sizeof req + 1, NULL, 0), -EBADMSG);
        /* Ops. */
        req.op = 0;
        assert_int_equal(raw_call(f, &req, sizeof req, NULL, 0), -EBADMSG);
        req.op = 99;
        assert_int_equal(raw_call(f, &req, sizeof req, NULL, 0), -EBADMSG);
        /* Groups sysfs does not show. */
        req.op = COH_PRIV_PROBE_FREE;
        req.group = -1;
        assert_int_equal(raw_call(f, &req, sizeof req, NULL, 0), -ENOENT);
        req.group = 4242;
        assert_int_equal(raw_call(f, &req, sizeof req, NULL, 0), -ENOENT);
        req.op = COH_PRIV_HOLDERS;
        assert_int_equal(raw_call(f, &req, sizeof req, NULL, 0), -ENOENT);
        /* A slot without its NUL. */
        req = (struct coh_priv_request) { .op = COH_PRIV_CUSTODY_BEGIN, .group = GROUP };
        memset(req.slot, 'a', sizeof req.slot);
        assert_int_equal(raw_call(f, &req, sizeof req, NULL, 0), -EINVAL);
        expect_helper_alive(f);
}

/* Descriptors a request does not take are refused, and closed by the helper: the write
 * end of a pipe, passed and closed here, reads as EOF once the helper has let go too. */
static void expect_refused_and_closed(struct fixture *f, const struct coh_priv_request *req, size_t len,
                                      size_t n_fds, int want) {
        int p[2], fds[8];
        char c;
        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        for (size_t i = 0; i < n_fds; i++)
                fds[i] = p[1];
        assert_int_equal(raw_call(f, req, len, fds, n_fds), want);
        close(p[1]);
        assert_int_equal(read(p[0], &c, 1), 0);
        close(p[0]);
}

static void test_descriptors_a_request_does_not_take_are_refused_and_closed(void **state) {
        struct fixture *f = *state;
        struct coh_priv_request req = { .op = COH_PRIV_PROBE_FREE, .group = GROUP };
        expect_refused_and_closed(f, &req, sizeof req, 1, -EBADF); /* a probe descriptor is a socket */
        req.op = COH_PRIV_HOLDERS;
        expect_refused_and_closed(f, &req, sizeof req, 2, -EBADF);
        req = (struct coh_priv_request) { .op = COH_PRIV_CUSTODY_BEGIN, .group = GROUP, .slot = SLOT };
        expect_refused_and_closed(f, &req, sizeof req, 2, -EBADF);
        expect_refused_and_closed(f, &req, sizeof req, 1, -EBADF); /* a pipe is no IOAS */
        req.op = COH_PRIV_KILL;
        expect_refused_and_closed(f, &req, sizeof req, 1, -EBADF); /* nor a pidfd */
        expect_refused_and_closed(f, &req, sizeof req, 6, -EBADMSG); /* more than are ever received */
        /* Malformed, with descriptors: refused, and closed all the same. */
        expect_refused_and_closed(f, &req, sizeof req - 2, 1, -EBADMSG);
        expect_helper_alive(f);
}

/* ---- kills ---------------------------------------------------------------------------- */

static pid_t sleeper(void) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                for (;;)
                        pause();
        }
        return pid;
}

static int pidfd_of(pid_t pid) {
        int fd = (int) syscall(SYS_pidfd_open, pid, 0);
        assert_true(fd >= 0);
        return fd;
}

static void test_kill_goes_only_through_a_pidfd_of_another_process(void **state) {
        struct fixture *f = *state;
        pid_t vmm = sleeper();
        char path[64];
        int status;

        /* pidfd_send_signal takes a /proc/PID directory too; the helper does not. */
        snprintf(path, sizeof path, "/proc/%d", (int) vmm);
        int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dir >= 0);
        assert_int_equal(f->p->ops->kill_peer(f->p, dir), -EBADF);
        close(dir);
        assert_int_equal(waitpid(vmm, &status, WNOHANG), 0);

        /* Never PID 1 or the daemon (the helper's parent: us). */
        int init = pidfd_of(1), self = pidfd_of(getpid());
        assert_int_equal(f->p->ops->kill_peer(f->p, init), -EPERM);
        assert_int_equal(f->p->ops->kill_peer(f->p, self), -EPERM);
        close(init);
        close(self);

        int pidfd = pidfd_of(vmm);
        assert_int_equal(f->p->ops->kill_peer(f->p, pidfd), 0);
        assert_int_equal(waitpid(vmm, &status, 0), vmm);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* Once it has gone (and been reaped): ESRCH, never another process. */
        assert_int_equal(f->p->ops->kill_peer(f->p, pidfd), -ESRCH);
        close(pidfd);
        assert_true(fd_open(f->fd));
        expect_helper_alive(f);
}

static void test_kill_is_refused_without_revoke_kill(void **state) {
        struct fixture *f = *state;
        int status;

        coh_platform_free(f->p);
        start(f, 0);
        pid_t vmm = sleeper();
        int pidfd = pidfd_of(vmm);
        assert_int_equal(f->p->ops->kill_peer(f->p, pidfd), -EPERM);
        assert_int_equal(waitpid(vmm, &status, WNOHANG), 0);
        kill(vmm, SIGKILL);
        assert_int_equal(waitpid(vmm, &status, 0), vmm);
        close(pidfd);
        expect_helper_alive(f);
}

/* ---- the helper's life ---------------------------------------------------------------- */

static void test_helper_keeps_nothing_and_leaves_when_its_socket_closes(void **state) {
        struct fixture *f = *state;
        struct coh_platform *inner;
        char errbuf[256], c;
        int p[2], fd, status;
        pid_t helper;

        /* Not close-on-exec, as the fd store's and systemd's descriptors are not: the helper
         * closes it anyway, so the read end sees EOF once this process closes its copy. */
        assert_int_equal(pipe(p), 0);
        assert_int_equal(coh_platform_sim_new(f->sysfs, &inner, errbuf, sizeof errbuf), 0);
        assert_int_equal(coh_priv_fork(inner, COH_PRIV_SANDBOX, &fd, &helper, errbuf, sizeof errbuf), 0);
        coh_platform_free(inner);
        close(p[1]);
        assert_int_equal(read(p[0], &c, 1), 0);
        close(p[0]);

        close(fd);
        assert_int_equal(waitpid(helper, &status, 0), helper);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_requests_fail_once_the_helper_is_gone(void **state) {
        struct fixture *f = *state;
        struct coh_device_facts dev;
        struct coh_custody c;
        struct coh_holder holders[2];
        const char *operation = NULL;
        int file = -1;

        assert_int_equal(kill(f->helper, SIGKILL), 0);
        device(f, SLOT, &dev);
        int r = f->p->ops->custody_begin(f->p, &dev, -1, NULL, &file, &c, &operation);
        assert_true(r == -ECONNRESET || r == -EPIPE);
        assert_string_equal(operation, "privileged helper");
        assert_int_equal(file, -EBADF);
        c.probe_fd = -EBADF;
        r = f->p->ops->custody_probe_free(f->p, GROUP, &c);
        assert_true(r == -ECONNRESET || r == -EPIPE);
        r = f->p->ops->custody_holders(f->p, GROUP, holders, 2);
        assert_true(r == -ECONNRESET || r == -EPIPE);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_custody_goes_through_the_helper, setup, teardown),
                cmocka_unit_test_setup_teardown(test_custody_requests_are_checked_again, setup, teardown),
                cmocka_unit_test_setup_teardown(test_custody_without_room_for_descriptors_is_emfile, setup, teardown),
                cmocka_unit_test_setup_teardown(test_malformed_requests_are_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_descriptors_a_request_does_not_take_are_refused_and_closed,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_kill_goes_only_through_a_pidfd_of_another_process, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_kill_is_refused_without_revoke_kill, setup, teardown),
                cmocka_unit_test_setup_teardown(test_helper_keeps_nothing_and_leaves_when_its_socket_closes, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_requests_fail_once_the_helper_is_gone, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
