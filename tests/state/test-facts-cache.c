/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * facts-cache.c: facts kept between requests come back as sysfs has them
 * once a uevent says a device changed, and stay when none (or an unrelated
 * one) came. A datagram socketpair stands in for the kernel's netlink
 * socket; the simulated tree's FIFO is the real thing.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "facts-cache.h"

#define SLOT "0000:00:05.0" /* group 4 in demo/make-sim-sysfs, bound to vfio-pci */

struct fixture {
        char dir[64];
        int sysfs_fd;
};

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof *f);
        char tool[PATH_MAX];
        const char *src = getenv("COH_TEST_SOURCE_DIR");
        assert_non_null(src);
        snprintf(f->dir, sizeof f->dir, "/tmp/coh-facts-cache-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(tool, sizeof tool, "%s/demo/make-sim-sysfs", src);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                execl(tool, tool, f->dir, (char *) NULL);
                _exit(127);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        f->sysfs_fd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->sysfs_fd >= 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        close(f->sysfs_fd);
        nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

/* Rebinds SLOT to driver (a host driver: its group is no longer VFIO's). */
static void rebind(struct fixture *f, const char *driver) {
        char link[PATH_MAX], target[PATH_MAX];
        snprintf(link, sizeof link, "%s/devices/pci0000:00/" SLOT "/driver", f->dir);
        snprintf(target, sizeof target, "../../../bus/pci/drivers/%s", driver);
        assert_int_equal(unlink(link), 0);
        assert_int_equal(symlink(target, link), 0);
}

static void expect_driver(struct fixture *f, struct coh_facts_cache *c, const char *driver) {
        struct coh_device_facts device, *group = NULL;
        size_t n = 0;
        int group_error = 1;
        assert_int_equal(coh_facts_cache_read(c, f->sysfs_fd, SLOT, &device, &group, &n, &group_error), 0);
        assert_string_equal(device.driver, driver);
        assert_int_equal(device.iommu_group, 4);
        assert_int_equal(group_error, 0);
        assert_int_equal(n, 1);
        assert_string_equal(group[0].slot, SLOT);
        assert_string_equal(group[0].driver, driver);
        free(group);
}

static void uevent(int fd, const char *action, const char *subsystem) {
        char buf[512];
        int n = snprintf(buf, sizeof buf, "%s@/devices/pci0000:00/" SLOT "%cACTION=%s%cDEVPATH=/devices/pci0000:00/" SLOT
                         "%cSUBSYSTEM=%s%cSEQNUM=4242", action, 0, action, 0, 0, subsystem, 0);
        assert_int_equal(send(fd, buf, (size_t) n + 1, 0), n + 1);
}

static void test_rebound_device_read_again(void **state) {
        struct fixture *f = *state;
        struct coh_facts_cache *c;
        int pair[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair), 0);
        assert_int_equal(coh_facts_cache_new(pair[0], COH_UEVENT_NETLINK, &c), 0);

        expect_driver(f, c, "vfio-pci");
        assert_int_equal(coh_facts_cache_size(c), 1);
        /* Kept: sysfs is not read again until a uevent says so. */
        rebind(f, "nvme");
        expect_driver(f, c, "vfio-pci");
        /* A uevent of another subsystem changes nothing of ours. */
        uevent(pair[1], "change", "block");
        expect_driver(f, c, "vfio-pci");
        /* The kernel's "bind" after the driver link changed. */
        uevent(pair[1], "unbind", "pci");
        uevent(pair[1], "bind", "pci");
        expect_driver(f, c, "nvme");
        /* Anything that does not parse drops everything too. */
        rebind(f, "vfio-pci");
        assert_int_equal(send(pair[1], "garbage", 7, 0), 7);
        expect_driver(f, c, "vfio-pci");
        coh_facts_cache_free(c);
        close(pair[1]);
}

/* The simulated platform's source: whatever is written to DIR/uevents. */
static void test_sim_fifo(void **state) {
        struct fixture *f = *state;
        char spec[128], fifo[PATH_MAX];
        snprintf(spec, sizeof spec, "sim:%s", f->dir);
        struct coh_facts_cache *c = coh_facts_cache_open(spec, f->sysfs_fd);
        assert_non_null(c);
        expect_driver(f, c, "vfio-pci");
        rebind(f, "nvme");
        expect_driver(f, c, "vfio-pci");
        snprintf(fifo, sizeof fifo, "%s/uevents", f->dir);
        int w = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(w >= 0);
        assert_int_equal(write(w, "bind " SLOT "\n", 18), 18);
        close(w);
        expect_driver(f, c, "nvme");
        coh_facts_cache_free(c);
}

/* Without a source nothing is kept: every read is sysfs's. */
static void test_no_source_no_cache(void **state) {
        struct fixture *f = *state;
        char fifo[PATH_MAX], spec[128];
        snprintf(fifo, sizeof fifo, "%s/uevents", f->dir);
        assert_int_equal(unlink(fifo), 0);
        snprintf(spec, sizeof spec, "sim:%s", f->dir);
        struct coh_facts_cache *c = coh_facts_cache_open(spec, f->sysfs_fd);
        assert_null(c);
        expect_driver(f, c, "vfio-pci");
        rebind(f, "nvme");
        expect_driver(f, c, "nvme");
}

/* In a user namespace of its own the kernel's uevents never reach the daemon's socket
 * (lib/kobject_uevent.c): on the real platform it then keeps nothing. Child process:
 * unshare(CLONE_NEWUSER) cannot be undone. */
static void test_linux_keeps_nothing_outside_the_initial_user_namespace(void **state) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (unshare(CLONE_NEWUSER) < 0)
                        _exit(77);
                struct coh_facts_cache *c = coh_facts_cache_open("linux", -1);
                _exit(c ? 1 : 0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77)
                fail_msg("unshare(CLONE_NEWUSER) failed: this test needs user namespaces");
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_uevent_relevant(void **state) {
        static const char bind[] = "bind@/devices/pci0000:00/0000:00:05.0\0ACTION=bind\0SUBSYSTEM=pci\0SEQNUM=1";
        static const char block[] = "change@/devices/virtual/block/loop0\0ACTION=change\0SUBSYSTEM=block\0SEQNUM=2";
        static const char vfio[] = "add@/devices/virtual/vfio/4\0ACTION=add\0SUBSYSTEM=vfio\0SEQNUM=3";
        static const char nosub[] = "add@/devices/x\0ACTION=add\0SEQNUM=3";
        static const char unterminated[] = { 'a', '@', '/', 0, 'S', 'U', 'B', 'S', 'Y', 'S', 'T', 'E', 'M', '=', 'b' };
        assert_true(coh_uevent_relevant(bind, sizeof bind));
        assert_false(coh_uevent_relevant(block, sizeof block));
        assert_true(coh_uevent_relevant(vfio, sizeof vfio));
        assert_true(coh_uevent_relevant(nosub, sizeof nosub));
        assert_true(coh_uevent_relevant(unterminated, sizeof unterminated));
        assert_true(coh_uevent_relevant("", 0));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_rebound_device_read_again, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sim_fifo, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_source_no_cache, setup, teardown),
                cmocka_unit_test(test_linux_keeps_nothing_outside_the_initial_user_namespace),
                cmocka_unit_test(test_uevent_relevant),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
