/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulated platform: kernel objects are memfds named
 * "coherencyd-sim:<object>" (DESIGN.md §8), so that tests and the demo can
 * make them without privilege, and device facts come from a sysfs-like tree.
 *
 * The simulated KVM keeps the VM's kvm-vfio state as text in the VM memfd,
 * which the VMM that owns it can read back as the test oracle (the real-kernel
 * tier uses the function tracer for the same purpose):
 *
 *   kvm-vfio=coherencyd          the VM has a kvm-vfio device (owner); a VMM
 *                                that writes kvm-vfio=vmm made its own
 *   attached=vfio-group:7 noncoherent
 *                                one line per file on the device
 *   noncoherent-dma=1            files not enforced-coherent: KVM's WBINVD
 *                                emulation is on while this is > 0
 *
 * Closing the device models Linux >= 6.2: the device is destroyed and its
 * files dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform.h"
#include "util.h"

#define SIM_PREFIX "coherencyd-sim:"
#define SIM_STATE_MAX 8192
#define SIM_FILES_MAX 64

struct sim_state {
        char owner[16]; /* "" when the VM has no kvm-vfio device */
        struct {
                char name[64];
                bool coherent;
        } files[SIM_FILES_MAX];
        size_t n_files;
};

/* The memfd name behind fd, or -EINVAL when fd is not a memfd. */
static int memfd_name(int fd, char *buf, size_t size) {
        /* F_GET_SEALS only works on memfds (shmem with sealing): the kernel's
         * own word that this is one, before we look at its name. */
        if (fcntl(fd, F_GET_SEALS) < 0)
                return -EINVAL;
        char proc[64], target[PATH_MAX];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
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
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode)) {
                snprintf(ret->what, sizeof ret->what, "%s",
                         S_ISFIFO(st.st_mode)   ? "a pipe"
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

/* The VM memfd's contents are written by the VMM too: parse defensively. */
static int state_read(int vm_fd, struct sim_state *s) {
        char buf[SIM_STATE_MAX + 1];
        ssize_t n = pread(vm_fd, buf, SIM_STATE_MAX, 0);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        memset(s, 0, sizeof *s);
        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                const char *v;
                if ((v = startswith(line, "kvm-vfio="))) {
                        snprintf(s->owner, sizeof s->owner, "%s", *v ? v : "unknown");
                } else if ((v = startswith(line, "attached="))) {
                        char obj[64], coherency[16];
                        if (s->n_files >= SIM_FILES_MAX || sscanf(v, "%63s %15s", obj, coherency) != 2)
                                return -EIO;
                        strcpy(s->files[s->n_files].name, obj);
                        s->files[s->n_files].coherent = strcmp(coherency, "coherent") == 0;
                        s->n_files++;
                }
        }
        return 0;
}

static int state_write(int vm_fd, const struct sim_state *s) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        unsigned noncoherent = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        if (s->owner[0])
                fprintf(f, "kvm-vfio=%s\n", s->owner);
        for (size_t i = 0; i < s->n_files; i++) {
                fprintf(f, "attached=%s %s\n", s->files[i].name, s->files[i].coherent ? "coherent" : "noncoherent");
                noncoherent += !s->files[i].coherent;
        }
        fprintf(f, "noncoherent-dma=%u\n", noncoherent);
        if (fclose(f) != 0)
                return -ENOMEM;
        if (ftruncate(vm_fd, 0) < 0)
                return -errno;
        ssize_t n = pwrite(vm_fd, buf, len, 0);
        if (n < 0)
                return -errno;
        return (size_t) n == len ? 0 : -EIO;
}

static int sim_device_create(struct coh_platform *p, int vm_fd, int *ret_device_fd) {
        struct sim_state s;
        int r = state_read(vm_fd, &s);
        if (r < 0)
                return r;
        if (s.owner[0])
                return -EBUSY; /* KVM allows one kvm-vfio device per VM */
        strcpy(s.owner, "coherencyd");
        s.n_files = 0;
        /* The simulated device is a new open file of the VM memfd, so that add
         * and del reach the state, and so that it is a file of its own like a
         * real kvm-vfio device (systemd's fd store keeps one copy of a file). */
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", vm_fd);
        int dev = open(proc, O_RDWR | O_CLOEXEC);
        if (dev < 0)
                return -errno;
        r = state_write(dev, &s);
        if (r < 0) {
                close(dev);
                return r;
        }
        *ret_device_fd = dev;
        return 0;
}

static int file_object(int fd, char *name, size_t size) {
        struct coh_fd_info info;
        char full[256];
        if (memfd_name(fd, full, sizeof full) < 0 || classify_name(full, &info) < 0 ||
            (info.kind != COH_FD_VFIO_GROUP && info.kind != COH_FD_VFIO_DEVICE))
                return -EINVAL; /* as kvm_vfio_file_add: not a VFIO file */
        const char *object = full + strlen(SIM_PREFIX);
        if (strlen(object) >= size)
                return -EINVAL;
        strcpy(name, object);
        return 0;
}

/* The object name of a VFIO file, the device's state, and where the file is in it (-1: not attached). */
static int file_lookup(int device_fd, int file_fd, char name[static 64], struct sim_state *s, ssize_t *ret_index) {
        int r = file_object(file_fd, name, 64);
        if (r < 0)
                return r;
        r = state_read(device_fd, s);
        if (r < 0)
                return r;
        *ret_index = -1;
        for (size_t i = 0; i < s->n_files; i++)
                if (strcmp(s->files[i].name, name) == 0)
                        *ret_index = (ssize_t) i;
        return 0;
}

static int sim_file_add(struct coh_platform *p, int device_fd, int file_fd, bool coherent) {
        struct sim_state s;
        char name[64];
        ssize_t i;
        int r = file_lookup(device_fd, file_fd, name, &s, &i);
        if (r < 0)
                return r;
        if (i >= 0)
                return -EEXIST; /* as kvm_vfio_file_add */
        if (s.n_files >= SIM_FILES_MAX)
                return -ENOSPC;
        strcpy(s.files[s.n_files].name, name);
        s.files[s.n_files].coherent = coherent;
        s.n_files++;
        return state_write(device_fd, &s);
}

static int sim_file_del(struct coh_platform *p, int device_fd, int file_fd) {
        struct sim_state s;
        char name[64];
        ssize_t i;
        int r = file_lookup(device_fd, file_fd, name, &s, &i);
        if (r < 0)
                return r;
        if (i < 0)
                return -ENOENT; /* as kvm_vfio_file_del */
        memmove(&s.files[i], &s.files[i + 1], (s.n_files - (size_t) i - 1) * sizeof s.files[0]);
        s.n_files--;
        return state_write(device_fd, &s);
}

static void sim_device_close(struct coh_platform *p, int vm_fd, int device_fd) {
        struct sim_state s = {};
        /* Since Linux 6.2 closing the kvm-vfio device destroys it and drops its files. */
        (void) state_write(device_fd, &s);
        close(device_fd);
}

static void sim_free(struct coh_platform *p) {
        free(p);
}

static const struct coh_platform_ops sim_ops = {
        .name = "sim",
        .classify = sim_classify,
        .vfio_device_create = sim_device_create,
        .vfio_file_add = sim_file_add,
        .vfio_file_del = sim_file_del,
        .vfio_device_close = sim_device_close,
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
