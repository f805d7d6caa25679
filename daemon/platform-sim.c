/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulated platform: kernel objects are memfds named
 * "coherencyd-sim:<object>" (DESIGN.md §8), so that tests and the demo can
 * make them without privilege, and device facts come from a sysfs-like tree.
 *
 * Custody: a handed-over group is one end of a socketpair (see
 * sim_custody_begin), busy until every copy of it is closed. KVM is the
 * client's: libcoherency's attach helper, given a simulated VM, records what
 * it added as text in the VM memfd ("kvm-vfio=vmm", "attached=vfio-group:7
 * noncoherent", "noncoherent-dma=1"), which a test reads back as its oracle
 * (the real-kernel tier uses the function tracer for the same purpose).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform.h"
#include "strbuf.h"
#include "util.h"

#define SIM_PREFIX "coherencyd-sim:"

/* The memfd name behind fd, a regular file F_GET_SEALS answered for; -EINVAL
 * when it is no memfd. */
static int memfd_name(int fd, char *buf, size_t size) {
        char proc[64], target[PATH_MAX];
        struct coh_strbuf path;
        coh_strbuf_init(&path, proc, sizeof proc);
        coh_strbuf_puts(&path, "/proc/self/fd/");
        coh_strbuf_int(&path, fd);
        ssize_t n = readlink(proc, target, sizeof target - 1);
        if (n < 0)
                return -errno;
        target[n] = 0;
        static const char pre[] = "/memfd:", post[] = " (deleted)";
        size_t len = (size_t) n;
        if (strncmp(target, pre, sizeof pre - 1) != 0 || len < sizeof pre - 1 + sizeof post - 1 ||
            strcmp(target + len - (sizeof post - 1), post) != 0)
                return -EINVAL;
        size_t name_len = len - (sizeof pre - 1) - (sizeof post - 1);
        if (name_len >= size)
                return -ENAMETOOLONG;
        memcpy(buf, target + sizeof pre - 1, name_len);
        buf[name_len] = 0;
        return 0;
}

static int parse_group(const char *s, int *ret) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < 0 || v > INT_MAX || (s[0] == '0' && s[1]))
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

static int classify_name(const char *name, struct coh_fd_info *ret) {
        const char *obj = name + strlen(SIM_PREFIX);
        const char *arg;

        if (strncmp(name, SIM_PREFIX, strlen(SIM_PREFIX)) != 0)
                return -EINVAL;
        if (strcmp(obj, "kvm-vm") == 0) {
                ret->kind = COH_FD_KVM_VM;
                return 0;
        }
        if ((arg = startswith(obj, "vfio-group:"))) {
                if (parse_group(arg, &ret->group) < 0)
                        return -EINVAL;
                ret->kind = COH_FD_VFIO_GROUP;
                return 0;
        }
        if ((arg = startswith(obj, "vfio-device:"))) {
                if (!coh_slot_valid(arg))
                        return -EINVAL;
                strcpy(ret->slot, arg);
                ret->kind = COH_FD_VFIO_DEVICE;
                return 0;
        }
        if ((arg = startswith(obj, "vfio-container:")))
                ret->kind = COH_FD_VFIO_CONTAINER;
        else if ((arg = startswith(obj, "iommufd:")))
                ret->kind = COH_FD_IOMMUFD;
        else
                return -EINVAL;
        if (strcmp(arg, "coherent") == 0)
                ret->coherent = 1;
        else if (strcmp(arg, "noncoherent") == 0)
                ret->coherent = 0;
        else {
                ret->kind = COH_FD_OTHER;
                return -EINVAL;
        }
        return 0;
}

static int sim_classify(struct coh_platform *p, int fd, struct coh_fd_info *ret) {
        struct stat st;
        char name[256];

        memset(ret, 0, sizeof *ret);
        ret->kind = COH_FD_OTHER;
        ret->group = -1;
        ret->coherent = -1;

        int flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if (flags & O_PATH) {
                strcpy(ret->what, "an O_PATH descriptor");
                return 0;
        }
        /* F_GET_SEALS answers only for shmem and hugetlbfs regular files
         * (mm/memfd.c memfd_fcntl -> memfd_file_seals_ptr; EINVAL for any
         * other file, EBADF for O_PATH, handled above): the kernel's own word
         * that this may be a memfd, before we look at its name. So a
         * simulated object costs three calls (F_GETFL, F_GET_SEALS,
         * readlink), and what a file that is none is, fstat tells then. */
        if (fcntl(fd, F_GET_SEALS) < 0) {
                if (fstat(fd, &st) < 0)
                        return -errno;
                snprintf(ret->what, sizeof ret->what, "%s",
                         S_ISREG(st.st_mode)    ? "a regular file"
                         : S_ISFIFO(st.st_mode) ? "a pipe"
                         : S_ISSOCK(st.st_mode) ? "a socket"
                         : S_ISDIR(st.st_mode)  ? "a directory"
                         : S_ISCHR(st.st_mode)  ? "a character device"
                         : S_ISBLK(st.st_mode)  ? "a block device"
                                                : "something that is no file");
                return 0;
        }
        if (memfd_name(fd, name, sizeof name) < 0) {
                strcpy(ret->what, "a regular file");
                return 0;
        }
        if (classify_name(name, ret) < 0) {
                ret->kind = COH_FD_OTHER;
                snprintf(ret->what, sizeof ret->what, "a memfd that is no simulated kernel object");
                return 0;
        }
        if ((flags & O_ACCMODE) != O_RDWR) {
                /* As on a real host: the VM and VFIO ioctls need a read-write file. */
                snprintf(ret->what, sizeof ret->what, "a read-only descriptor of %s", coh_fd_kind_to_string(ret->kind));
                ret->kind = COH_FD_OTHER;
                return 0;
        }
        strcpy(ret->what, coh_fd_kind_to_string(ret->kind));
        return 0;
}

static bool sim_ioas_coherent(struct coh_platform *p, const struct coh_device_facts *device,
                              const struct coh_fd_info *ioas) {
        /* The IOAS the VMM chose (the thread's proposed API); claiming one the
         * IOMMU cannot give is refused by the decision table. */
        return ioas->coherent >= 0 ? ioas->coherent : device->iommu_enforces;
}

/*
 * The handed-over file is one end of a socketpair, the daemon keeps the
 * other: it reads EOF exactly when every copy of the handed-over end is
 * closed, wherever the client passed it, which is how a real group's open
 * file is released. The pin is one more copy of the handed-over end, as a
 * real pin (a device fd) holds the group's file.
 */
static int sim_custody_begin(struct coh_platform *p, const struct coh_device_facts *device, int ioas_fd,
                             const struct coh_fd_info *ioas, int *ret_file_fd, struct coh_custody *ret,
                             const char **ret_operation) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0) {
                *ret_operation = "socketpair";
                return -errno;
        }
        /* Nothing flows to the client, and what it sends is discarded. */
        (void) shutdown(pair[0], SHUT_WR);
        int pin = fcntl(pair[1], F_DUPFD_CLOEXEC, 3);
        if (pin < 0) {
                int r = -errno;
                close(pair[0]);
                close(pair[1]);
                *ret_operation = "pin";
                return r;
        }
        *ret_file_fd = pair[1];
        ret->probe_fd = pair[0];
        ret->pin_fd = pin;
        return 0;
}

static int sim_custody_probe_free(struct coh_platform *p, int iommu_group, const struct coh_custody *c) {
        char buf[4096];
        /* Only gone from the fd store when systemd dropped it, which systemd
         * (252) does to a stored descriptor that reports a hang-up: the last
         * copy of the handed-over end was closed while the daemon was down. */
        if (c->probe_fd < 0)
                return 1;
        /* Bounded: a client writing into its end gets its bytes dropped, a few pages per check. */
        for (int i = 0; i < 16; i++) {
                ssize_t n = recv(c->probe_fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n == 0)
                        return 1;
                if (n < 0)
                        return errno == EAGAIN ? 0 : -errno;
        }
        return 0;
}

static int sim_custody_holders(struct coh_platform *p, int iommu_group, struct coh_holder *ret, size_t n) {
        return 0; /* a socket end shows no path in /proc */
}

static void sim_free(struct coh_platform *p) {
        free(p);
}

static const struct coh_platform_ops sim_ops = {
        .name = "sim",
        .classify = sim_classify,
        .ioas_coherent = sim_ioas_coherent,
        .custody_begin = sim_custody_begin,
        .custody_probe_free = sim_custody_probe_free,
        .custody_holders = sim_custody_holders,
        .kill_peer = coh_kill_pidfd,
        .free = sim_free,
};

int coh_platform_sim_new(const char *dir, struct coh_platform **ret, char *errbuf, size_t errlen) {
        int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                snprintf(errbuf, errlen, "simulated platform '%s': %s", dir, strerror(-r));
                return r;
        }
        struct coh_platform *p = calloc(1, sizeof *p);
        if (!p) {
                close(fd);
                return -ENOMEM;
        }
        p->ops = &sim_ops;
        p->sysfs_fd = fd;
        *ret = p;
        return 0;
}
