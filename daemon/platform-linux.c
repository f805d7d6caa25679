/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The real host: what a passed descriptor is, by what the kernel says about
 * it (fcntl, fstat, fstatfs, sysfs, a harmless ioctl), never by a path
 * string a client could choose; and the kvm-vfio actions.
 *
 * Kernel behaviour relied on, checked in the kernel sources and, where
 * marked "seen", under QEMU with Debian's 6.1 and 6.12 kernels
 * (tests/vm, kvm-probe):
 *
 *  - /dev/kvm is misc 10:232 (KVM_MINOR), the legacy VFIO container
 *    /dev/vfio/vfio misc 10:196 (VFIO_MINOR); with CONFIG_IOMMUFD_VFIO_CONTAINER
 *    iommufd registers the same minor with the same ioctls.
 *  - VFIO group cdevs have a dynamic major, "vfio" in /proc/devices. Their
 *    minor is allocated from an IDA and is NOT the IOMMU group number: the
 *    class device is named after the group, "%d" or "noiommu-%d"
 *    (drivers/vfio/group.c vfio_create_group), so the number is the name
 *    that /sys/dev/char/MAJ:MIN links to. Seen: /dev/vfio/N, name N.
 *  - VFIO device cdevs (6.6+, CONFIG_VFIO_DEVICE_CDEV) have the major
 *    "vfio-dev"; the class device "vfioX" has the bound device as parent
 *    (drivers/vfio/vfio_main.c vfio_init_device), so
 *    /sys/dev/char/MAJ:MIN/device links to the PCI function. Debian 12's
 *    kernels have neither this nor iommufd (seen: no "vfio-dev" line).
 *  - /dev/iommu is a misc device with a dynamic minor named "iommu"
 *    (drivers/iommu/iommufd/main.c iommu_misc_dev).
 *  - A VM is an anon-inode file named "kvm-vm" (kvm_dev_ioctl_create_vm),
 *    a vCPU "kvm-vcpu:N", a KVM device its ops name ("kvm-vfio"); all share
 *    the anon-inode filesystem (ANON_INODE_FS_MAGIC) and one inode (seen).
 *    Some 2025 kernels (6.15 and stable series, cfd86ef7e8e7 "anon_inode:
 *    use a proper mode internally", undone by 1e7ab6f67824) report anon
 *    inodes as S_IFREG, so fstatfs decides before the file type does.
 *  - Every VM and KVM-device ioctl first checks kvm->mm == current->mm and
 *    fails with EIO otherwise (kvm_vm_ioctl, kvm_device_ioctl). So a VM fd
 *    that another process created answers KVM_CHECK_EXTENSION with EIO, and
 *    so do KVM_CREATE_DEVICE and KVM_SET_DEVICE_ATTR: seen on 6.1 and 6.12.
 *    EIO still proves the ioctl reached KVM's VM handler, so classify takes
 *    it as confirmation; the actions pass it through as -EIO.
 *  - Closing the kvm-vfio fd destroys the device where it has .release
 *    (upstream 6.2, backported to 6.1.y): seen on 6.1.192 and 6.12.
 *  - KVM_CREATE_DEVICE returns the device fd with O_RDWR|O_CLOEXEC
 *    (kvm_ioctl_create_device: anon_inode_getfd(..., O_RDWR | O_CLOEXEC)),
 *    so no fcntl is needed; seen. A second kvm-vfio device on a VM fails
 *    with EBUSY (kvm_vfio_create): seen.
 *  - KVM_SET_DEVICE_ATTR group KVM_DEV_VFIO_FILE (old name
 *    KVM_DEV_VFIO_GROUP, 1), attr ADD 1 / DEL 2, addr -> int32_t fd;
 *    EINVAL for a non-VFIO fd, EEXIST for a duplicate: seen.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "linux-uapi.h"
#include "platform.h"
#include "util.h"

struct linux_data {
        /* Dynamic majors from /proc/devices, -1 while the module that
         * registers them is not loaded. */
        int vfio_group_major;
        int vfio_device_major;
};

static struct linux_data *linux_data(struct coh_platform *p) {
        return p->data;
}

/* Reads the character-device majors of vfio and vfio-dev. Missing lines
 * are not an error: the modules may be loaded later (see classify). */
static int read_vfio_majors(struct linux_data *d) {
        FILE *f;
        char line[128];
        bool chr = false;

        f = fopen("/proc/devices", "re");
        if (!f)
                return -errno;

        while (fgets(line, sizeof line, f)) {
                char name[64];
                int major;

                if (strncmp(line, "Character devices:", 18) == 0) {
                        chr = true;
                        continue;
                }
                if (strncmp(line, "Block devices:", 14) == 0)
                        break;
                if (!chr || sscanf(line, "%d %63s", &major, name) != 2)
                        continue;

                if (strcmp(name, COH_VFIO_GROUP_CHRDEV_NAME) == 0)
                        d->vfio_group_major = major;
                else if (strcmp(name, COH_VFIO_DEVICE_CHRDEV_NAME) == 0)
                        d->vfio_device_major = major;
        }

        fclose(f);
        return 0;
}

/* The last path component of the symlink at sysfs_fd/path, i.e. the name
 * of the kernel object it points to. */
static int sysfs_link_name(int sysfs_fd, const char *path, char *buf, size_t len) {
        char target[512];
        const char *slash;
        ssize_t n;

        n = readlinkat(sysfs_fd, path, target, sizeof target - 1);
        if (n < 0)
                return -errno;
        if ((size_t) n >= sizeof target - 1)
                return -ENAMETOOLONG;
        target[n] = '\0';

        slash = strrchr(target, '/');
        slash = slash ? slash + 1 : target;
        if (strlen(slash) >= len)
                return -ENAMETOOLONG;
        strcpy(buf, slash);
        return 0;
}

static int chardev_link_name(struct coh_platform *p, dev_t rdev, const char *suffix,
                             char *buf, size_t len) {
        char path[96];

        snprintf(path, sizeof path, "dev/char/%u:%u%s", major(rdev), minor(rdev), suffix);
        return sysfs_link_name(p->sysfs_fd, path, buf, len);
}

/* Parses a non-negative decimal with nothing around it. */
static int parse_group_number(const char *s) {
        char *end;
        long v;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || *end != '\0' || v > INT32_MAX)
                return -EINVAL;
        return (int) v;
}

/* Whether the container has an IOMMU driver set, and if so whether its
 * domains enforce coherency. VFIO_CHECK_EXTENSION alone cannot tell "no
 * IOMMU yet" from "not coherent": on a container without a driver it polls
 * every registered driver with a NULL iommu, and type1 answers 0 for
 * VFIO_DMA_CC_IOMMU there (vfio_iommu_type1_check_extension: "if (!iommu)
 * return 0"). Seen: 0 on a fresh container on both kernels. So first ask
 * VFIO_IOMMU_GET_INFO, which a container without a driver refuses with
 * EINVAL (vfio_fops_unl_ioctl passes unknown ioctls only to a set driver). */
static int container_coherent(int fd) {
        struct vfio_iommu_type1_info info = {
                .argsz = sizeof info,
        };
        int r;

        if (ioctl(fd, VFIO_IOMMU_GET_INFO, &info) < 0 && errno == EINVAL)
                return -1;

        r = ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU);
        if (r < 0)
                return -1;
        return r > 0;
}

static void set_other(struct coh_fd_info *ret, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_other(struct coh_fd_info *ret, const char *fmt, ...) {
        va_list ap;

        ret->kind = COH_FD_OTHER;
        ret->group = -1;
        ret->slot[0] = '\0';
        ret->coherent = -1;
        va_start(ap, fmt);
        vsnprintf(ret->what, sizeof ret->what, fmt, ap);
        va_end(ap);
}

static int classify_misc(struct coh_platform *p, int fd, dev_t rdev, struct coh_fd_info *ret) {
        char name[64];
        int r;

        switch (minor(rdev)) {
        case COH_KVM_MINOR:
                set_other(ret, "/dev/kvm itself (not a VM)");
                return 0;
        case COH_VFIO_MINOR:
                ret->kind = COH_FD_VFIO_CONTAINER;
                ret->coherent = container_coherent(fd);
                return 0;
        }

        /* iommufd's minor is dynamic: ask sysfs what the misc device is. */
        r = chardev_link_name(p, rdev, "", name, sizeof name);
        if (r == -ENOENT) {
                set_other(ret, "a character device %u:%u", major(rdev), minor(rdev));
                return 0;
        }
        if (r < 0)
                return r;
        if (strcmp(name, COH_IOMMUFD_MISC_NAME) == 0) {
                /* iommufd has no coherency flag for users (DESIGN §4). */
                ret->kind = COH_FD_IOMMUFD;
                ret->coherent = -1;
                return 0;
        }
        set_other(ret, "a misc character device (%s)", name);
        return 0;
}

static int classify_vfio_group(struct coh_platform *p, dev_t rdev, struct coh_fd_info *ret) {
        char name[64];
        int r, group;

        r = chardev_link_name(p, rdev, "", name, sizeof name);
        if (r == -ENOENT) {
                /* The group went away (last device unbound) while open. */
                set_other(ret, "a VFIO group that no longer exists");
                return 0;
        }
        if (r < 0)
                return r;

        if (strncmp(name, "noiommu-", 8) == 0) {
                set_other(ret, "a no-IOMMU VFIO group");
                return 0;
        }
        group = parse_group_number(name);
        if (group < 0) {
                set_other(ret, "a VFIO group with an unexpected name");
                return 0;
        }
        ret->kind = COH_FD_VFIO_GROUP;
        ret->group = group;
        return 0;
}

static int classify_vfio_device(struct coh_platform *p, dev_t rdev, struct coh_fd_info *ret) {
        char slot[64], bus[32];
        int r;

        r = chardev_link_name(p, rdev, "/device", slot, sizeof slot);
        if (r == -ENOENT) {
                set_other(ret, "a VFIO device that no longer exists");
                return 0;
        }
        if (r < 0)
                return r;

        /* Only PCI functions have the facts the broker decides on. */
        r = chardev_link_name(p, rdev, "/device/subsystem", bus, sizeof bus);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r < 0 || strcmp(bus, "pci") != 0 || strlen(slot) >= sizeof ret->slot || !coh_slot_valid(slot)) {
                set_other(ret, "a non-PCI VFIO device");
                return 0;
        }
        ret->kind = COH_FD_VFIO_DEVICE;
        strcpy(ret->slot, slot);
        return 0;
}

static int classify_chardev(struct coh_platform *p, int fd, dev_t rdev, struct coh_fd_info *ret) {
        struct linux_data *d = linux_data(p);
        int maj = (int) major(rdev);

        if (maj == COH_MISC_MAJOR)
                return classify_misc(p, fd, rdev, ret);

        /* vfio.ko may have been loaded after we started: look again while its
         * majors are unknown. Both "vfio" and "vfio-dev" are registered by
         * vfio.ko's init (vfio_group_init, vfio_cdev_init), so once "vfio" is
         * known a missing "vfio-dev" means a kernel without device cdevs and
         * there is nothing more to learn. */
        if (d->vfio_group_major < 0)
                (void) read_vfio_majors(d);

        if (maj == d->vfio_group_major)
                return classify_vfio_group(p, rdev, ret);
        if (maj == d->vfio_device_major)
                return classify_vfio_device(p, rdev, ret);

        set_other(ret, "a character device %u:%u", major(rdev), minor(rdev));
        return 0;
}

static int classify_anon(struct coh_platform *p, int fd, struct coh_fd_info *ret) {
        char path[64], link[128];
        const char *name;
        ssize_t n;
        int r;

        /* The name of an anon-inode file is set by the kernel subsystem that
         * made it; no client can choose it. */
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        n = readlink(path, link, sizeof link - 1);
        if (n < 0)
                return -errno;
        link[n] = '\0';

        if (strncmp(link, "anon_inode:", 11) != 0) {
                set_other(ret, "an anonymous-inode file");
                return 0;
        }
        name = link + 11;

        if (strcmp(name, "kvm-vm") == 0) {
                /* Confirm with a harmless VM ioctl. From another process
                 * than the VM's, KVM answers EIO before looking at the
                 * command (see the top of this file), which is as good a
                 * confirmation: no other handler sits behind that name. */
                r = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
                if (r > 0 || (r < 0 && errno == EIO)) {
                        ret->kind = COH_FD_KVM_VM;
                        return 0;
                }
                set_other(ret, "a KVM VM that does not answer KVM_CHECK_EXTENSION");
                return 0;
        }
        if (strncmp(name, "kvm-vcpu", 8) == 0)
                set_other(ret, "a KVM vCPU (not a VM)");
        else if (strcmp(name, "kvm-vfio") == 0)
                set_other(ret, "a kvm-vfio device (not a VM)");
        else if (strncmp(name, "kvm-", 4) == 0)
                set_other(ret, "a KVM device %.40s (not a VM)", name);
        else
                set_other(ret, "an anonymous-inode file %.40s", name);
        return 0;
}

static int linux_classify(struct coh_platform *p, int fd, struct coh_fd_info *ret) {
        struct statfs sfs;
        struct stat st;
        int flags, r;

        set_other(ret, "a file");

        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        /* An O_PATH descriptor names a file without opening it: every ioctl
         * on it fails, and it proves nothing about the sender's access. */
        if (flags & O_PATH) {
                set_other(ret, "an O_PATH descriptor");
                return 0;
        }

        if (fstat(fd, &st) < 0)
                return -errno;

        if (S_ISCHR(st.st_mode))
                r = classify_chardev(p, fd, st.st_rdev, ret);
        else {
                if (fstatfs(fd, &sfs) < 0)
                        return -errno;
                if ((uint32_t) sfs.f_type == (uint32_t) ANON_INODE_FS_MAGIC)
                        r = classify_anon(p, fd, ret);
                else {
                        switch (st.st_mode & S_IFMT) {
                        case S_IFIFO:
                                set_other(ret, "a pipe");
                                break;
                        case S_IFSOCK:
                                set_other(ret, "a socket");
                                break;
                        case S_IFREG:
                                set_other(ret, "a regular file");
                                break;
                        case S_IFDIR:
                                set_other(ret, "a directory");
                                break;
                        case S_IFBLK:
                                set_other(ret, "a block device %u:%u",
                                          major(st.st_rdev), minor(st.st_rdev));
                                break;
                        default:
                                set_other(ret, "a file of unknown type");
                        }
                        r = 0;
                }
        }
        if (r < 0)
                return r;
        if (ret->kind != COH_FD_OTHER)
                snprintf(ret->what, sizeof ret->what, "%s", coh_fd_kind_to_string(ret->kind));

        /* Everything we act on, or let a VMM act through, is used read-write:
         * a read-only descriptor is not the caller's proof of access. */
        if (ret->kind != COH_FD_OTHER && (flags & O_ACCMODE) != O_RDWR) {
                const char *phrase = coh_fd_kind_to_string(ret->kind);

                set_other(ret, "a %s descriptor of %s",
                          (flags & O_ACCMODE) == O_WRONLY ? "write-only" : "read-only", phrase);
        }
        return 0;
}

static int linux_vfio_device_create(struct coh_platform *p, int vm_fd, int *ret_device_fd) {
        struct kvm_create_device cd = {
                .type = KVM_DEV_TYPE_VFIO,
        };

        /* The kernel returns the fd with O_CLOEXEC already. */
        if (ioctl(vm_fd, KVM_CREATE_DEVICE, &cd) < 0)
                return -errno;
        *ret_device_fd = (int) cd.fd;
        return 0;
}

static int set_vfio_file(int device_fd, uint64_t attr, int file_fd) {
        int32_t fd32 = file_fd;
        struct kvm_device_attr a = {
                .group = KVM_DEV_VFIO_FILE,
                .attr = attr,
                .addr = (uint64_t) (uintptr_t) &fd32,
        };

        if (ioctl(device_fd, KVM_SET_DEVICE_ATTR, &a) < 0)
                return -errno;
        return 0;
}

static int linux_vfio_file_add(struct coh_platform *p, int device_fd, int file_fd, bool coherent) {
        /* KVM asks VFIO itself whether the file is enforced-coherent
         * (kvm_vfio_file_enforced_coherent): "coherent" is for the
         * simulated platform only. */
        return set_vfio_file(device_fd, KVM_DEV_VFIO_FILE_ADD, file_fd);
}

static int linux_vfio_file_del(struct coh_platform *p, int device_fd, int file_fd) {
        return set_vfio_file(device_fd, KVM_DEV_VFIO_FILE_DEL, file_fd);
}

static void linux_vfio_device_close(struct coh_platform *p, int vm_fd, int device_fd) {
        /* Where kvm-vfio has .release (upstream 6.2, and Debian's 6.1.y via
         * stable: seen on 6.1.192) this destroys the device and drops its
         * files, unregistering non-coherent DMA; with the older .destroy it
         * lives until the VM goes. */
        if (device_fd >= 0)
                (void) close(device_fd);
}

/* coh_platform_free() closes sysfs_fd and then calls this for the rest. */
static void linux_free(struct coh_platform *p) {
        free(p->data);
        free(p);
}

static const struct coh_platform_ops linux_ops = {
        .name = "linux",
        .classify = linux_classify,
        .vfio_device_create = linux_vfio_device_create,
        .vfio_file_add = linux_vfio_file_add,
        .vfio_file_del = linux_vfio_file_del,
        .vfio_device_close = linux_vfio_device_close,
        .free = linux_free,
};

int coh_platform_linux_new(struct coh_platform **ret, char *errbuf, size_t errlen) {
        struct coh_platform *p;
        struct linux_data *d;
        struct stat st;
        int r;

        if (stat("/dev/kvm", &st) < 0) {
                r = -errno;
                if (r == -ENOENT) {
                        snprintf(errbuf, errlen, "no /dev/kvm: this host cannot run KVM");
                        return -EOPNOTSUPP;
                }
                snprintf(errbuf, errlen, "/dev/kvm: %s", strerror(-r));
                return r;
        }
        if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != COH_MISC_MAJOR ||
            minor(st.st_rdev) != COH_KVM_MINOR) {
                snprintf(errbuf, errlen, "/dev/kvm is not the KVM device (10:%d)", COH_KVM_MINOR);
                return -EOPNOTSUPP;
        }

        p = calloc(1, sizeof *p);
        d = calloc(1, sizeof *d);
        if (!p || !d) {
                free(p);
                free(d);
                snprintf(errbuf, errlen, "out of memory");
                return -ENOMEM;
        }
        d->vfio_group_major = -1;
        d->vfio_device_major = -1;
        p->ops = &linux_ops;
        p->data = d;

        p->sysfs_fd = open("/sys", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (p->sysfs_fd < 0) {
                r = -errno;
                snprintf(errbuf, errlen, "/sys: %s", strerror(-r));
                linux_free(p);
                return r;
        }

        r = read_vfio_majors(d);
        if (r < 0) {
                snprintf(errbuf, errlen, "/proc/devices: %s", strerror(-r));
                (void) close(p->sysfs_fd);
                linux_free(p);
                return r;
        }

        *ret = p;
        return 0;
}
