/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The real host: what a passed descriptor is, by what the kernel says about
 * it (fcntl, fstat, fstatfs, sysfs, a harmless ioctl), never by a path
 * string a client could choose; and custody of VFIO groups (DESIGN.md §3):
 * open the group node, put it into the VMM's container, set the IOMMU model
 * when the container has none, pin it with a device fd, hand the group fd
 * over, and later probe whether anyone still holds it.
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
 *    inodes as S_IFREG, so the filesystem decides before the file type
 *    does: fstatfs's ANON_INODE_FS_MAGIC, or, without a call more, fstat's
 *    st_dev, which is the superblock's s_dev (fs/stat.c generic_fillattr)
 *    and the same for every anon inode: all live on the one anon_inode_mnt,
 *    kern_mount'ed at boot and never unmounted (fs/anon_inodes.c
 *    anon_inode_init; secure anon inodes too, anon_inode_make_secure_inode).
 *    The daemon learns it at start from an eventfd of its own. Seen: a VM's
 *    st_dev is an eventfd's on 6.1 and 6.12 (kvm-probe,
 *    kvm.vm_on_anon_inode_fs) and 6.18.
 *  - Every VM and KVM-device ioctl first checks kvm->mm == current->mm and
 *    fails with EIO otherwise (kvm_vm_ioctl, kvm_device_ioctl). So a VM fd
 *    that another process created answers KVM_CHECK_EXTENSION with EIO:
 *    seen on 6.1 and 6.12. EIO still proves the ioctl reached KVM's VM
 *    handler, so classify takes it as confirmation. It is also why the
 *    daemon never attaches anything to KVM itself: the VMM adds the file.
 *  - /dev/vfio/N is 0600 root and its open is exclusive (EBUSY) until the
 *    last reference to the open file is gone: descriptor copies, device fds
 *    taken from it, KVM's reference after KVM_DEV_VFIO_FILE_ADD (seen).
 *  - Group ioctls check no identity: root can VFIO_GROUP_SET_CONTAINER a
 *    group into a container another process passed it, VFIO_SET_IOMMU that
 *    container and VFIO_GROUP_GET_DEVICE_FD (seen). VFIO_SET_IOMMU needs a
 *    group in the container (EINVAL otherwise, or when a model is set).
 *  - VFIO_GROUP_UNSET_CONTAINER fails with EBUSY while a device fd of the
 *    group is open (container_users != 1): seen, hence the pin.
 *  - KVM's view of coherency (vfio_file_enforced_coherent): 6.1 asks the
 *    group's container (no IOMMU model: not coherent; else
 *    VFIO_DMA_CC_IOMMU, container-wide); 6.6+ asks the device's IOMMU.
 *    Seen: 6.1 registers non-coherent DMA for a group on a snoop-control
 *    IOMMU that sits in a container without a model.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "linux-uapi.h"
#include "platform.h"
#include "util.h"

struct linux_data {
        /* Dynamic majors from /proc/devices, -1 while the module that
         * registers them is not loaded. */
        int vfio_group_major;
        int vfio_device_major;
        /* uname's release, major.minor: which rule KVM judges coherency by. */
        int kernel_major, kernel_minor;
        /* st_dev of the anon-inode filesystem (see the top), when known. */
        dev_t anon_dev;
        bool anon_dev_known;
        /* The failing step of the last custody_begin, when it needs a
         * number ("open /dev/vfio/7"); valid until the next call. */
        char operation[64];
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

/* Files that are no kernel object we know: what to call them in an error. */
static void classify_plain(const struct stat *st, struct coh_fd_info *ret) {
        switch (st->st_mode & S_IFMT) {
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
                set_other(ret, "a block device %u:%u", major(st->st_rdev), minor(st->st_rdev));
                break;
        default:
                set_other(ret, "a file of unknown type");
        }
}

/* Whether the file fstat described is an anon inode (see the top of the file). */
static int is_anon_inode(struct linux_data *d, int fd, const struct stat *st) {
        struct statfs sfs;

        if (d->anon_dev_known)
                return st->st_dev == d->anon_dev;
        if (fstatfs(fd, &sfs) < 0)
                return -errno;
        return (uint32_t) sfs.f_type == (uint32_t) ANON_INODE_FS_MAGIC;
}

static int linux_classify(struct coh_platform *p, int fd, struct coh_fd_info *ret) {
        struct stat st;
        int flags, r = 0;

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
        else if ((r = is_anon_inode(linux_data(p), fd, &st)) < 0)
                return r;
        else if (r > 0)
                r = classify_anon(p, fd, ret);
        else
                classify_plain(&st, ret);
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

/* The anon-inode filesystem's st_dev, from an eventfd (fs/eventfd.c makes it
 * with anon_inode_getfile), confirmed by fstatfs. Left unknown on any
 * failure: classify then asks fstatfs each time. */
static void learn_anon_dev(struct linux_data *d) {
        _cleanup_close_ int fd = eventfd(0, EFD_CLOEXEC);
        struct statfs sfs;
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0 ||
            (uint32_t) sfs.f_type != (uint32_t) ANON_INODE_FS_MAGIC)
                return;
        d->anon_dev = st.st_dev;
        d->anon_dev_known = true;
}

/* The kernel's major.minor, from uname's release ("6.1.0-57-amd64"). */
static void read_kernel_version(struct linux_data *d) {
        struct utsname u;

        d->kernel_major = d->kernel_minor = 0;
        if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &d->kernel_major, &d->kernel_minor) != 2)
                d->kernel_major = d->kernel_minor = 0;
}

/* From 6.6 on, vfio_file_enforced_coherent() asks the device's IOMMU
 * (device_iommu_capable(IOMMU_CAP_ENFORCE_CACHE_COHERENCY)) for a group and
 * a device cdev alike; before, it asked the group's container. */
static bool kernel_judges_by_device(const struct linux_data *d) {
        return d->kernel_major > 6 || (d->kernel_major == 6 && d->kernel_minor >= 6);
}

static bool linux_ioas_coherent(struct coh_platform *p, const struct coh_device_facts *device,
                                const struct coh_fd_info *ioas) {
        const struct linux_data *d = linux_data(p);

        if (!device->iommu_enforces)
                return false;
        /* 6.6+, an iommufd (device cdevs exist from 6.6 only), or no IOAS
         * named (the daemon prepares the container itself): the device's
         * IOMMU decides. */
        if (kernel_judges_by_device(d) || !ioas || ioas->kind != COH_FD_VFIO_CONTAINER)
                return true;
        /* 6.1: the container as a whole (VFIO_DMA_CC_IOMMU is container-wide).
         * Without an IOMMU model yet custody_begin sets Type1v2 itself, so the
         * container will hold this group's domain only: the device decides. */
        return ioas->coherent != 0;
}

/* Whether fd is the VFIO group `group` (not whatever a path resolved to). */
static bool is_vfio_group(struct coh_platform *p, int fd, int group) {
        struct coh_fd_info info;
        struct stat st;

        if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode))
                return false;
        if (linux_data(p)->vfio_group_major < 0)
                (void) read_vfio_majors(linux_data(p));
        if ((int) major(st.st_rdev) != linux_data(p)->vfio_group_major)
                return false;
        return classify_vfio_group(p, st.st_rdev, &info) == 0 && info.kind == COH_FD_VFIO_GROUP &&
               info.group == group;
}

static int open_group(struct coh_platform *p, int group) {
        char path[48];
        int fd;

        snprintf(path, sizeof path, "/dev/vfio/%d", group);
        /* O_NONBLOCK is ignored by VFIO; the open is exclusive, EBUSY while
         * anyone holds the group's file (vfio_group_fops_open). */
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (!is_vfio_group(p, fd, group)) {
                (void) close(fd);
                return -ENODEV;
        }
        return fd;
}

/*
 * The group path (DESIGN.md §3, reference/custody-on-real-kernels.md
 * sequence 3): open, viable, SET_CONTAINER into the VMM's container,
 * SET_IOMMU (Type1v2) when the container has no IOMMU model, and a device
 * fd kept as the pin, which makes the VMM's VFIO_GROUP_UNSET_CONTAINER
 * EBUSY (container_users != 1), so the group cannot leave for a container
 * without an IOMMU model (6.1 would then read it as non-coherent).
 */
static int custody_begin_group(struct coh_platform *p, const struct coh_device_facts *device, int container_fd,
                               int *ret_file_fd, struct coh_custody *ret, const char **ret_operation) {
        struct linux_data *d = linux_data(p);
        struct vfio_group_status status = {
                .argsz = sizeof status,
        };
        _cleanup_close_ int group_fd = -EBADF;
        bool set_iommu, in_container = false;
        int pin_fd, r;

        snprintf(d->operation, sizeof d->operation, "open /dev/vfio/%d", device->iommu_group);
        *ret_operation = d->operation;
        group_fd = open_group(p, device->iommu_group);
        if (group_fd < 0)
                return group_fd;

        *ret_operation = "VFIO_GROUP_GET_STATUS";
        if (ioctl(group_fd, VFIO_GROUP_GET_STATUS, &status) < 0)
                return -errno;
        /* Not viable: a device of the group is bound to a host driver. The
         * kernel's SET_CONTAINER would say EPERM too. */
        if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
                return -EPERM;
        /* Just opened exclusively: no container can be set. */
        if (status.flags & VFIO_GROUP_FLAGS_CONTAINER_SET)
                return -EBUSY;

        /* Re-check "no IOMMU model yet" now rather than trusting classify:
         * the VMM may have set one since. */
        set_iommu = container_coherent(container_fd) == -1;

        *ret_operation = "VFIO_GROUP_SET_CONTAINER";
        if (ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, &container_fd) < 0)
                return -errno;
        in_container = true;

        if (set_iommu) {
                *ret_operation = "VFIO_SET_IOMMU";
                if (ioctl(container_fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
                        r = -EOPNOTSUPP;
                else if (ioctl(container_fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
                        /* EINVAL: a model was set in between, by the VMM
                         * through another group of its container: fine. */
                        r = errno == EINVAL && container_coherent(container_fd) != -1 ? 0 : -errno;
                else
                        r = 0;
                if (r < 0)
                        goto undo;
        }

        *ret_operation = "VFIO_GROUP_GET_DEVICE_FD";
        /* The fd comes with O_CLOEXEC (vfio_group_ioctl_get_device_fd). */
        pin_fd = ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, device->slot);
        if (pin_fd < 0) {
                r = -errno;
                goto undo;
        }

        ret->pin_fd = pin_fd;
        ret->probe_fd = -EBADF;
        *ret_file_fd = take_fd(&group_fd);
        *ret_operation = NULL;
        return 0;

undo:
        /* No device fd is open, so this succeeds; it also unsets the IOMMU
         * model we set when the group was the container's only one. */
        if (in_container)
                (void) ioctl(group_fd, VFIO_GROUP_UNSET_CONTAINER);
        return r;
}

/* The device cdev of a PCI function: /dev/vfio/devices/<name of the only
 * entry of bus/pci/devices/<slot>/vfio-dev/>. -EOPNOTSUPP when the kernel
 * has no device cdevs. */
static int open_device_cdev(struct coh_platform *p, const char *slot) {
        char path[96], name[64] = "";
        struct coh_fd_info info;
        struct dirent *de;
        struct stat st;
        DIR *dir;
        int dfd, fd;

        snprintf(path, sizeof path, "bus/pci/devices/%s/vfio-dev", slot);
        dfd = openat(p->sysfs_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return errno == ENOENT ? -EOPNOTSUPP : -errno;
        dir = fdopendir(dfd);
        if (!dir) {
                (void) close(dfd);
                return -errno;
        }
        while ((de = readdir(dir)))
                if (strncmp(de->d_name, "vfio", 4) == 0 && strlen(de->d_name) < sizeof name) {
                        strcpy(name, de->d_name);
                        break;
                }
        closedir(dir);
        if (!name[0])
                return -EOPNOTSUPP;

        snprintf(path, sizeof path, "/dev/vfio/devices/%s", name);
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        /* The node must be the cdev of this very function. */
        if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode) ||
            (int) major(st.st_rdev) != linux_data(p)->vfio_device_major ||
            classify_vfio_device(p, st.st_rdev, &info) < 0 || info.kind != COH_FD_VFIO_DEVICE ||
            strcmp(info.slot, slot) != 0) {
                (void) close(fd);
                return -ENODEV;
        }
        return fd;
}

/*
 * The iommufd path (6.6+ with CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV):
 * open the device cdev and VFIO_DEVICE_BIND_IOMMUFD it to the VMM's iommufd
 * (no identity check; one bind per device). The VMM attaches it to its IOAS
 * (VFIO_DEVICE_ATTACH_IOMMUFD_PT) and adds it to KVM. No pin: KVM judges a
 * cdev by the device's IOMMU, whatever IOAS it is attached to, and the bound
 * cdev makes the group node's open EBUSY (6.6+: cdev_device_open_cnt), which
 * custody_probe_free relies on. The cdev is handed over, the daemon keeps no
 * copy (a copy would keep the device bound).
 *
 * Written from the uapi and the kernel sources only: none of Debian's
 * kernels builds CONFIG_IOMMUFD, so no run of the vm tier reaches this (the
 * simulated platform covers the decision side).
 */
static int custody_begin_cdev(struct coh_platform *p, const struct coh_device_facts *device, int iommufd,
                              int *ret_file_fd, struct coh_custody *ret, const char **ret_operation) {
        struct linux_data *d = linux_data(p);
        struct vfio_device_bind_iommufd bind = {
                .argsz = sizeof bind,
                .iommufd = iommufd,
        };
        _cleanup_close_ int fd = -EBADF;

        snprintf(d->operation, sizeof d->operation, "open /dev/vfio/devices (%s)", device->slot);
        *ret_operation = d->operation;
        if (!kernel_judges_by_device(d))
                return -EOPNOTSUPP;
        if (d->vfio_device_major < 0)
                (void) read_vfio_majors(d);
        fd = open_device_cdev(p, device->slot);
        if (fd < 0)
                return fd;

        *ret_operation = "VFIO_DEVICE_BIND_IOMMUFD";
        if (ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &bind) < 0)
                return -errno;

        ret->pin_fd = -EBADF;
        ret->probe_fd = -EBADF;
        *ret_file_fd = take_fd(&fd);
        *ret_operation = NULL;
        return 0;
}

static int linux_custody_begin(struct coh_platform *p, const struct coh_device_facts *device, int ioas_fd,
                               const struct coh_fd_info *ioas, int *ret_file_fd, struct coh_custody *ret,
                               const char **ret_operation) {
        ret->pin_fd = -EBADF;
        ret->probe_fd = -EBADF;
        *ret_file_fd = -EBADF;
        *ret_operation = "open group";

        if (device->iommu_group < 0 || !coh_slot_valid(device->slot))
                return -ENODEV;
        if (!ioas) {
                *ret_operation = "VFIO_GROUP_SET_CONTAINER";
                return -EBADF;
        }
        switch (ioas->kind) {
        case COH_FD_VFIO_CONTAINER:
                return custody_begin_group(p, device, ioas_fd, ret_file_fd, ret, ret_operation);
        case COH_FD_IOMMUFD:
                return custody_begin_cdev(p, device, ioas_fd, ret_file_fd, ret, ret_operation);
        default:
                *ret_operation = "VFIO_GROUP_SET_CONTAINER";
                return -EBADF;
        }
}

static int linux_custody_probe_free(struct coh_platform *p, int iommu_group, const struct coh_custody *c) {
        int fd;

        if (iommu_group < 0)
                return -EINVAL;
        fd = open_group(p, iommu_group);
        if (fd == -EBUSY)
                return 0;
        if (fd < 0)
                return fd;
        (void) close(fd);
        return 1;
}

/* Bounds of one holders scan: processes looked at, descriptors looked at. */
#define HOLDERS_MAX_PROCS 32768
#define HOLDERS_MAX_FDS (1 << 20)

static void read_comm(int proc_fd, const char *pid, char *buf, size_t len) {
        char path[300];
        ssize_t n;
        int fd;

        snprintf(buf, len, "?");
        snprintf(path, sizeof path, "%s/comm", pid);
        fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        n = read(fd, buf, len - 1);
        (void) close(fd);
        if (n <= 0) {
                snprintf(buf, len, "?");
                return;
        }
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
}

/*
 * Processes with a descriptor of the group's node, as /proc shows them to
 * us: a process of another user only with CAP_SYS_PTRACE (proc's fd
 * directories need ptrace read access), which the privileged helper does not
 * keep (sandbox.h), so this finds root's processes, the helper being uid 0.
 * Device fds taken from the group and KVM's reference after FILE_ADD hold
 * the group too but are not the node: they do not show (the VMM holding
 * them usually still has the group fd itself).
 */
/* What one scan looks for, and how much it has looked at. */
struct holders_scan {
        char node[48];          /* "/dev/vfio/N" */
        struct stat group_st;
        bool have_rdev;
        unsigned procs, fds;
};

/* Whether process pid (a /proc entry) has a descriptor of the group's node. */
static bool process_holds(int proc_fd, const char *pid, struct holders_scan *scan) {
        char path[300];
        snprintf(path, sizeof path, "%s/fd", pid);
        int dfd = openat(proc_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return false; /* gone, or not ours to look at */
        DIR *fdir = fdopendir(dfd);
        if (!fdir) {
                (void) close(dfd);
                return false;
        }
        bool holds = false;
        struct dirent *fe;
        while (!holds && scan->fds < HOLDERS_MAX_FDS && (fe = readdir(fdir))) {
                char target[64];
                struct stat st;
                if (fe->d_name[0] == '.')
                        continue;
                scan->fds++;
                ssize_t len = readlinkat(dfd, fe->d_name, target, sizeof target - 1);
                if (len < 0)
                        continue;
                target[len] = '\0';
                /* The link reads as the path in the reader's mount namespace
                 * (the daemon's private /dev may differ): the device number
                 * decides, the path where stat cannot. */
                if (scan->have_rdev)
                        holds = target[0] == '/' && fstatat(dfd, fe->d_name, &st, 0) == 0 && S_ISCHR(st.st_mode) &&
                                st.st_rdev == scan->group_st.st_rdev;
                else
                        holds = strcmp(target, scan->node) == 0;
        }
        closedir(fdir);
        return holds;
}

static bool is_pid(const char *name) {
        return name[0] >= '1' && name[0] <= '9' && strlen(name) <= 10 && strspn(name, "0123456789") == strlen(name);
}

/*
 * Processes with a descriptor of the group's node, as /proc shows them to
 * us: a process of another user only with CAP_SYS_PTRACE (proc's fd
 * directories need ptrace read access), which the privileged helper does not
 * keep (sandbox.h), so this finds root's processes, the helper being uid 0.
 * Device fds taken from the group and KVM's reference after FILE_ADD hold
 * the group too but are not the node: they do not show (the VMM holding
 * them usually still has the group fd itself).
 */
static int linux_custody_holders(struct coh_platform *p, int iommu_group, struct coh_holder *ret, size_t n) {
        struct holders_scan scan = {};
        size_t found = 0;
        struct dirent *de;

        if (iommu_group < 0 || n == 0)
                return 0;
        snprintf(scan.node, sizeof scan.node, "/dev/vfio/%d", iommu_group);
        scan.have_rdev = stat(scan.node, &scan.group_st) == 0 && S_ISCHR(scan.group_st.st_mode);

        int proc_fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (proc_fd < 0)
                return -errno;
        DIR *proc = fdopendir(proc_fd);
        if (!proc) {
                (void) close(proc_fd);
                return -errno;
        }
        while (found < n && scan.procs < HOLDERS_MAX_PROCS && scan.fds < HOLDERS_MAX_FDS && (de = readdir(proc))) {
                if (!is_pid(de->d_name))
                        continue;
                scan.procs++;
                if (!process_holds(proc_fd, de->d_name, &scan))
                        continue;
                ret[found].pid = (pid_t) strtol(de->d_name, NULL, 10);
                read_comm(proc_fd, de->d_name, ret[found].comm, sizeof ret[found].comm);
                found++;
        }
        closedir(proc);
        return (int) found;
}

/* coh_platform_free() closes sysfs_fd and then calls this for the rest. */
static void linux_free(struct coh_platform *p) {
        free(p->data);
        free(p);
}

static const struct coh_platform_ops linux_ops = {
        .name = "linux",
        .classify = linux_classify,
        .ioas_coherent = linux_ioas_coherent,
        .custody_begin = linux_custody_begin,
        .custody_probe_free = linux_custody_probe_free,
        .custody_holders = linux_custody_holders,
        .kill_peer = coh_kill_pidfd,
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
        read_kernel_version(d);
        learn_anon_dev(d);
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
