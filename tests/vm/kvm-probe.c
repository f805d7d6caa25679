/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * kvm-probe: checks, in a guest of the vm tier (see tests/vm/init), the
 * kernel facts coherencyd rests on (DESIGN.md §4) and the linux platform
 * (daemon/platform-linux.c) against a real KVM, a real VFIO group of QEMU's
 * edu device and a real (emulated) VT-d, with the function tracer as the
 * oracle for KVM's non-coherent DMA accounting.
 *
 * Two parts, one process tree:
 *   - alone, as root: classify on everything a client might pass, and the
 *     kvm-vfio facts from the VM's own process (create, FILE_ADD/DEL,
 *     release) and from another one (EIO: the mm check);
 *   - custody (reference/custody-on-real-kernels.md): this process plays the
 *     daemon through the platform ops (custody_begin, custody_probe_free,
 *     custody_holders, ioas_coherent); a forked child that dropped to uid/gid
 *     65534 plays the VMM: it creates the VM, its kvm-vfio device and the
 *     container, passes VM and container over a SOCK_SEQPACKET socketpair,
 *     and then runs one-letter commands (add the group it was handed to KVM,
 *     try to leave the container, ...) and answers with the result.
 *
 * Usage: kvm-probe --slot SLOT --group N --snoop on|off [--tracefs DIR]
 *
 * Prints one line per check ("ok NAME: ..." or "FAIL NAME: ...") and per
 * fact seen ("fact NAME: ..."), and exits 1 if any check failed.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include "facts.h"
#include "linux-uapi.h"
#include "platform.h"
#include "ftrace-oracle.h"
#include "util.h"

#define KVM_VFIO_RELEASE "kvm_vfio_release"

struct probe {
        struct coh_platform *platform;
        const char *slot;
        int group;
        bool snoop;            /* intel-iommu snoop-control=on */
        const char *tracefs;
        bool release_destroys; /* closing the kvm-vfio fd destroys it (6.2, 6.1.y) */
        bool by_device;        /* 6.6+: KVM judges a VFIO file by its device's IOMMU, not its container */
        unsigned passed, failed;
};

static void check(struct probe *pr, bool ok, const char *name, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void check(struct probe *pr, bool ok, const char *name, const char *fmt, ...) {
        va_list ap;

        printf("%s %s: ", ok ? "ok" : "FAIL", name);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
        if (ok)
                pr->passed++;
        else
                pr->failed++;
}

static void fact(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fact(const char *name, const char *fmt, ...) {
        va_list ap;

        printf("fact %s: ", name);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
}

static const char *errname(int r) {
        static char buf[32];

        if (r >= 0) {
                snprintf(buf, sizeof buf, "%d", r);
                return buf;
        }
        switch (-r) {
        case EBUSY: return "-EBUSY";
        case EEXIST: return "-EEXIST";
        case EINVAL: return "-EINVAL";
        case EIO: return "-EIO";
        case ENOENT: return "-ENOENT";
        case EBADF: return "-EBADF";
        case EBADFD: return "-EBADFD";
        case ENOTTY: return "-ENOTTY";
        case EPERM: return "-EPERM";
        case EACCES: return "-EACCES";
        case ENODEV: return "-ENODEV";
        case ENXIO: return "-ENXIO";
        }
        snprintf(buf, sizeof buf, "-%d", -r);
        return buf;
}

/* Classifies fd and checks the kind and the "what" (when given). */
static void check_classify(struct probe *pr, const char *name, int fd, enum coh_fd_kind kind,
                           const char *what, struct coh_fd_info *ret) {
        struct coh_fd_info info;
        char label[64];
        int r;

        snprintf(label, sizeof label, "classify.%s", name);
        r = pr->platform->ops->classify(pr->platform, fd, &info);
        if (r < 0) {
                check(pr, false, label, "classify failed: %s", strerror(-r));
                return;
        }
        check(pr, info.kind == kind && (!what || strcmp(info.what, what) == 0), label,
              "kind=%s what=\"%s\" group=%d slot=\"%s\" coherent=%d",
              coh_fd_kind_to_string(info.kind), info.what, info.group, info.slot, info.coherent);
        if (ret)
                *ret = info;
}

static void check_trace(struct probe *pr, const char *name, int want_register, int want_unregister) {
        int reg = ftrace_count(pr->tracefs, NONCOHERENT_REGISTER);
        int unreg = ftrace_count(pr->tracefs, NONCOHERENT_UNREGISTER);

        check(pr, reg == want_register && unreg == want_unregister, name,
              "%s x%d (want %d), %s x%d (want %d)",
              NONCOHERENT_REGISTER, reg, want_register, NONCOHERENT_UNREGISTER, unreg, want_unregister);
}

static int read_ecap(uint64_t *ret) {
        char buf[64];
        FILE *f;

        f = fopen("/sys/class/iommu/dmar0/intel-iommu/ecap", "re");
        if (!f)
                return -errno;
        if (!fgets(buf, sizeof buf, f)) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        *ret = strtoull(buf, NULL, 16);
        return 0;
}

/* Whether the kvm-vfio device has .release (destroyed when its fd closes)
 * rather than .destroy (lives as long as the VM). Upstream switched in 6.2
 * ("KVM: VFIO: use release instead of destroy"), and the change went to the
 * 6.1 stable series too, so the version number does not tell: the symbol
 * does. */
static bool kvm_vfio_has_release(void) {
        char line[256];
        bool found = false;
        FILE *f;

        f = fopen("/proc/kallsyms", "re");
        if (!f)
                return false;
        while (!found && fgets(line, sizeof line, f)) {
                char *name = strchr(line, ' ');

                /* "ADDR t NAME\t[kvm]" */
                if (name && (name = strchr(name + 1, ' ')))
                        found = strncmp(name + 1, KVM_VFIO_RELEASE, strlen(KVM_VFIO_RELEASE)) == 0 &&
                                strchr("\t\n ", name[1 + strlen(KVM_VFIO_RELEASE)]);
        }
        fclose(f);
        return found;
}

/* ---- raw kvm-vfio ioctls (what a VMM does; the daemon never does them) -- */

static int kvm_vfio_create(int vm_fd, int *ret_fd) {
        struct kvm_create_device cd = {
                .type = KVM_DEV_TYPE_VFIO,
        };

        if (ioctl(vm_fd, KVM_CREATE_DEVICE, &cd) < 0)
                return -errno;
        *ret_fd = (int) cd.fd;
        return 0;
}

static int kvm_vfio_file(int device_fd, uint64_t attr, int file_fd) {
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

static int ioctl_r(int fd, unsigned long req, unsigned long arg) {
        int r = ioctl(fd, req, arg);
        return r < 0 ? -errno : r;
}

/* ---- part 1: alone ------------------------------------------------------ */

/*
 * The daemon is another process than the VMM that made the VM. KVM refuses
 * every VM and KVM-device ioctl from a process whose mm is not the VM's
 * (kvm_vm_ioctl, kvm_device_ioctl: "if (kvm->mm != current->mm ...) return
 * -EIO"). A forked child has its own mm, like the daemon: check what it gets.
 * Returns the number of failed checks (the child's exit status).
 */
static unsigned cross_process(struct probe *pr, int vm_fd, int device_fd, int group_fd) {
        pid_t pid;
        int status;

        fflush(stdout);
        pid = fork();
        if (pid < 0) {
                check(pr, false, "xproc.fork", "%s", strerror(errno));
                return 1;
        }
        if (pid == 0) {
                struct probe child = *pr;
                int fd = -1, r;

                child.passed = child.failed = 0;
                check_classify(&child, "xproc.vm", vm_fd, COH_FD_KVM_VM, NULL, NULL);

                r = ioctl_r(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
                check(&child, r == -EIO, "xproc.vm_check_extension", "%s (want -EIO: not the VM's mm)", errname(r));

                ftrace_clear(child.tracefs);
                r = kvm_vfio_create(vm_fd, &fd);
                check(&child, r == -EIO, "xproc.kvm_create_device", "%s (want -EIO)", errname(r));
                if (r >= 0)
                        close(fd);

                r = kvm_vfio_file(device_fd, KVM_DEV_VFIO_FILE_ADD, group_fd);
                check(&child, r == -EIO, "xproc.kvm_vfio_file_add", "%s (want -EIO)", errname(r));
                check_trace(&child, "xproc.trace_after_add", 0, 0);
                _exit(child.failed > 255 ? 255 : (int) child.failed);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) {
                check(pr, false, "xproc.wait", "child did not exit normally");
                return 1;
        }
        return (unsigned) WEXITSTATUS(status);
}

/* Classification and the kvm-vfio facts, everything in this process. Leaves
 * nothing open: the group is free when it returns. */
static int probe_alone(struct probe *pr) {
        struct coh_fd_info info;
        struct coh_device_facts facts;
        _cleanup_close_ int kvm_fd = -1, vm_fd = -1, vm2_fd = -1, vm_dup = -1, vcpu_fd = -1;
        _cleanup_close_ int container_fd = -1, group_fd = -1, ro_fd = -1, path_fd = -1;
        _cleanup_close_ int dev_fd = -1, reg_fd = -1, dir_fd = -1, null_fd = -1, misc_fd = -1, efd = -1;
        _cleanup_close_ int pipe_r = -1, pipe_w = -1, sock_a = -1, sock_b = -1;
        int pipe_fds[2], sock_fds[2], dev2_fd = -1;
        char group_path[64];
        struct stat st1, st2;
        uint64_t ecap = 0;
        unsigned xfailed;
        int r, iommu_type;

        /* The objects a VMM holds. */
        kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm_fd < 0) {
                check(pr, false, "open./dev/kvm", "%s", strerror(errno));
                return -1;
        }
        vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
        vm2_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
        check(pr, vm_fd >= 0 && vm2_fd >= 0, "kvm_create_vm", "%s", vm_fd < 0 ? strerror(errno) : "two VMs");
        if (vm_fd < 0 || vm2_fd < 0)
                return -1;
        vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);

        container_fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        snprintf(group_path, sizeof group_path, "/dev/vfio/%d", pr->group);
        group_fd = open(group_path, O_RDWR | O_CLOEXEC);
        check(pr, container_fd >= 0 && group_fd >= 0, "open.vfio", "%s and %s", "/dev/vfio/vfio", group_path);
        if (container_fd < 0 || group_fd < 0)
                return -1;

        /* A container without an IOMMU: the CC extension answers 0, which
         * would read as "not coherent"; the platform must say "unknown". */
        r = ioctl(container_fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU);
        fact("vfio.cc_extension_unset_container", "%d", r);
        check_classify(pr, "container_unset", container_fd, COH_FD_VFIO_CONTAINER, NULL, &info);
        check(pr, info.coherent == -1, "classify.container_unset.coherent", "%d (want -1)", info.coherent);

        if (ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, &container_fd) < 0) {
                check(pr, false, "vfio.set_container", "%s", strerror(errno));
                return -1;
        }
        iommu_type = VFIO_TYPE1v2_IOMMU;
        if (ioctl(container_fd, VFIO_SET_IOMMU, iommu_type) < 0) {
                iommu_type = VFIO_TYPE1_IOMMU;
                if (ioctl(container_fd, VFIO_SET_IOMMU, iommu_type) < 0) {
                        check(pr, false, "vfio.set_iommu", "%s", strerror(errno));
                        return -1;
                }
        }
        fact("vfio.iommu_type", "%s", iommu_type == VFIO_TYPE1v2_IOMMU ? "VFIO_TYPE1v2_IOMMU" : "VFIO_TYPE1_IOMMU");

        /* What the hardware and VFIO say about coherency. */
        r = read_ecap(&ecap);
        check(pr, r == 0 && !!(ecap & COH_VTD_ECAP_SC) == pr->snoop, "vtd.ecap_sc",
              "ecap=%" PRIx64 " SC=%d (snoop-control=%s)", ecap, !!(ecap & COH_VTD_ECAP_SC), pr->snoop ? "on" : "off");
        r = ioctl(container_fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU);
        check(pr, r == (pr->snoop ? 1 : 0), "vfio.cc_extension", "VFIO_CHECK_EXTENSION(VFIO_DMA_CC_IOMMU)=%d", r);

        /* facts.c on the real sysfs. */
        r = coh_facts_read_device(pr->platform->sysfs_fd, pr->slot, &facts);
        check(pr, r == 0 && facts.iommu_group == pr->group && facts.iommu_type == COH_IOMMU_INTEL &&
                  facts.iommu_enforces == pr->snoop && strcmp(facts.driver, "vfio-pci") == 0,
              "facts.device", "r=%s slot=%s vendor=%s device=%s class=%s driver=%s iommu=%s group=%d enforces=%d",
              errname(r), facts.slot, facts.vendor, facts.device, facts.class, facts.driver, facts.iommu,
              facts.iommu_group, facts.iommu_enforces);

        /* Classification of everything a client might pass. */
        check_classify(pr, "vm", vm_fd, COH_FD_KVM_VM, NULL, NULL);
        check_classify(pr, "group", group_fd, COH_FD_VFIO_GROUP, NULL, &info);
        check(pr, info.group == pr->group, "classify.group.number", "%d (want %d; minor %u)", info.group,
              pr->group, fstat(group_fd, &st1) == 0 ? minor(st1.st_rdev) : 0);
        check_classify(pr, "container", container_fd, COH_FD_VFIO_CONTAINER, NULL, &info);
        check(pr, info.coherent == (pr->snoop ? 1 : 0), "classify.container.coherent", "%d", info.coherent);
        check_classify(pr, "dev_kvm", kvm_fd, COH_FD_OTHER, "/dev/kvm itself (not a VM)", NULL);
        if (vcpu_fd >= 0)
                check_classify(pr, "vcpu", vcpu_fd, COH_FD_OTHER, "a KVM vCPU (not a VM)", NULL);
        else
                fact("kvm.create_vcpu", "%s", strerror(errno));

        if (pipe2(pipe_fds, O_CLOEXEC) == 0) {
                pipe_r = pipe_fds[0];
                pipe_w = pipe_fds[1];
        }
        check_classify(pr, "pipe", pipe_r, COH_FD_OTHER, "a pipe", NULL);
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock_fds) == 0) {
                sock_a = sock_fds[0];
                sock_b = sock_fds[1];
        }
        check_classify(pr, "socket", sock_a, COH_FD_OTHER, "a socket", NULL);
        path_fd = open(group_path, O_PATH | O_CLOEXEC);
        check_classify(pr, "o_path", path_fd, COH_FD_OTHER, "an O_PATH descriptor", NULL);
        ro_fd = open("/dev/vfio/vfio", O_RDONLY | O_CLOEXEC);
        check_classify(pr, "read_only_container", ro_fd, COH_FD_OTHER, "a read-only descriptor of a VFIO container", NULL);
        reg_fd = open("/init", O_RDONLY | O_CLOEXEC);
        check_classify(pr, "regular_file", reg_fd, COH_FD_OTHER, "a regular file", NULL);
        dir_fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        check_classify(pr, "directory", dir_fd, COH_FD_OTHER, "a directory", NULL);
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        check_classify(pr, "dev_null", null_fd, COH_FD_OTHER, "a character device 1:3", NULL);
        /* A misc device with a dynamic minor, named through sysfs as
         * /dev/iommu would be (Debian 12's kernels have no iommufd). */
        misc_fd = open("/dev/cpu_dma_latency", O_RDONLY | O_CLOEXEC);
        check_classify(pr, "misc_dynamic", misc_fd, COH_FD_OTHER, "a misc character device (cpu_dma_latency)", NULL);
        efd = eventfd(0, EFD_CLOEXEC);
        check_classify(pr, "eventfd", efd, COH_FD_OTHER, "an anonymous-inode file [eventfd]", NULL);
        /* classify tells an anon inode by fstat's st_dev, learnt from an
         * eventfd at start: a VM's must be the same, on the filesystem
         * fstatfs names. */
        struct statfs sfs;
        r = fstat(vm_fd, &st1) == 0 && fstat(efd, &st2) == 0 && fstatfs(vm_fd, &sfs) == 0;
        check(pr, r && st1.st_dev == st2.st_dev && (uint32_t) sfs.f_type == (uint32_t) ANON_INODE_FS_MAGIC,
              "kvm.vm_on_anon_inode_fs", "st_dev %lu and eventfd's %lu, f_type 0x%lx", (unsigned long) st1.st_dev,
              (unsigned long) st2.st_dev, r ? (unsigned long) sfs.f_type : 0ul);

        /* All VMs share one anonymous inode; only the open file tells them apart. */
        vm_dup = fcntl(vm_fd, F_DUPFD_CLOEXEC, 3);
        r = fstat(vm_fd, &st1) == 0 && fstat(vm2_fd, &st2) == 0;
        check(pr, r && st1.st_ino == st2.st_ino && st1.st_dev == st2.st_dev, "kvm.vms_share_inode",
              "ino %lu and %lu", (unsigned long) st1.st_ino, (unsigned long) st2.st_ino);
        check(pr, coh_same_file(vm_fd, vm_dup) == 1 && coh_same_file(vm_fd, vm2_fd) == 0, "kcmp.same_file",
              "dup=%d other VM=%d", coh_same_file(vm_fd, vm_dup), coh_same_file(vm_fd, vm2_fd));

        /* The kvm-vfio device, from the VM's own process (the VMM's part). */
        r = kvm_vfio_create(vm_fd, &dev_fd);
        check(pr, r == 0, "kvm_vfio.create", "%s", errname(r));
        if (r < 0)
                return -1;
        r = fcntl(dev_fd, F_GETFD);
        check(pr, r >= 0 && (r & FD_CLOEXEC), "kvm_vfio.create.cloexec", "F_GETFD=%d", r);
        r = fcntl(dev_fd, F_GETFL);
        check(pr, r >= 0 && (r & O_ACCMODE) == O_RDWR, "kvm_vfio.create.rdwr", "F_GETFL=%#x", r);
        check_classify(pr, "kvm_vfio_device", dev_fd, COH_FD_OTHER, "a kvm-vfio device (not a VM)", NULL);

        r = kvm_vfio_create(vm_fd, &dev2_fd);
        check(pr, r == -EBUSY, "kvm_vfio.create.second", "%s (want -EBUSY)", errname(r));
        if (r == 0)
                close(dev2_fd);
        dev2_fd = -1;

        /* The oracle: FILE_ADD registers non-coherent DMA iff the group is not
         * enforced-coherent, FILE_DEL unregisters it. */
        ftrace_clear(pr->tracefs);
        r = kvm_vfio_file(dev_fd, KVM_DEV_VFIO_FILE_ADD, group_fd);
        check(pr, r == 0, "kvm_vfio.file_add", "%s", errname(r));
        check_trace(pr, "trace.after_add", pr->snoop ? 0 : 1, 0);

        r = kvm_vfio_file(dev_fd, KVM_DEV_VFIO_FILE_ADD, group_fd);
        check(pr, r == -EEXIST, "kvm_vfio.file_add.duplicate", "%s (want -EEXIST)", errname(r));
        r = kvm_vfio_file(dev_fd, KVM_DEV_VFIO_FILE_ADD, pipe_r);
        check(pr, r == -EINVAL, "kvm_vfio.file_add.pipe", "%s (want -EINVAL)", errname(r));
        r = kvm_vfio_file(dev_fd, KVM_DEV_VFIO_FILE_ADD, container_fd);
        check(pr, r == -EINVAL, "kvm_vfio.file_add.container", "%s (want -EINVAL)", errname(r));

        /* The daemon's situation: another process (another mm). */
        xfailed = cross_process(pr, vm_fd, dev_fd, group_fd);
        check(pr, xfailed == 0, "xproc", "%u failed in the child", xfailed);

        ftrace_clear(pr->tracefs);
        r = kvm_vfio_file(dev_fd, KVM_DEV_VFIO_FILE_DEL, group_fd);
        check(pr, r == 0, "kvm_vfio.file_del", "%s", errname(r));
        check_trace(pr, "trace.after_del", 0, pr->snoop ? 0 : 1);
        r = kvm_vfio_file(dev_fd, KVM_DEV_VFIO_FILE_DEL, group_fd);
        check(pr, r == -ENOENT, "kvm_vfio.file_del.again", "%s (want -ENOENT)", errname(r));

        /* Lifetime of the kvm-vfio device: with .release, closing its fd
         * destroys it and drops its files; with .destroy it lives as long as
         * the VM. */
        fact("kvm.vfio_device_ops", "%s", pr->release_destroys ? "release (destroyed on close)" : "destroy (lives with the VM)");
        r = kvm_vfio_file(dev_fd, KVM_DEV_VFIO_FILE_ADD, group_fd);
        check(pr, r == 0, "kvm_vfio.file_add.before_close", "%s", errname(r));
        ftrace_clear(pr->tracefs);
        close(take_fd(&dev_fd));
        r = ftrace_count(pr->tracefs, KVM_VFIO_RELEASE);
        check(pr, r == (pr->release_destroys ? 1 : 0), "trace.kvm_vfio_release_on_close", "x%d", r);
        check_trace(pr, "trace.after_close", 0, pr->release_destroys && !pr->snoop ? 1 : 0);
        r = kvm_vfio_create(vm_fd, &dev2_fd);
        check(pr, pr->release_destroys ? r == 0 : r == -EBUSY, "kvm_vfio.create.after_close",
              "%s (want %s)", errname(r), pr->release_destroys ? "0" : "-EBUSY");
        if (r == 0)
                close(dev2_fd);

        /* What this kernel offers beyond groups (DESIGN §4: Debian 12's
         * kernels have neither). */
        fact("dev.iommu", "%s", access("/dev/iommu", F_OK) == 0 ? "present" : "absent");
        fact("dev.vfio_devices", "%s", access("/dev/vfio/devices", F_OK) == 0 ? "present" : "absent");

        return 0;
}

/* ---- part 2: custody, with an unprivileged VMM ------------------------------ */

#define VMM_UID 65534
#define VMM_GID 65534

/* One command to the VMM child, and its answer. */
struct vmm_cmd {
        char op;
        char target;            /* 'g' the group it was handed, 'd' the device fd */
};

struct vmm {
        pid_t pid;
        int sock;               /* parent's end, SOCK_SEQPACKET */
        int vm_fd;              /* copies the VMM passed: the daemon's view */
        int container_fd;
};

/* Sends buf with up to two descriptors (fd < 0: none). */
static int send_msg(int sock, const void *buf, size_t len, int fd1, int fd2) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(2 * sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        int fds[2], n = 0;

        if (fd1 >= 0)
                fds[n++] = fd1;
        if (fd2 >= 0)
                fds[n++] = fd2;
        if (n > 0) {
                struct cmsghdr *c;

                mh.msg_control = control.buf;
                mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(n * sizeof(int));
                memcpy(CMSG_DATA(c), fds, n * sizeof(int));
        }
        if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
                return -errno;
        return 0;
}

/* Receives one message into buf (exactly len bytes) and up to two fds (-1
 * where none came). -EPIPE when the peer is gone. */
static int recv_msg(int sock, void *buf, size_t len, int *fd1, int *fd2) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(2 * sizeof(int))];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof control.buf };
        int fds[2] = { -1, -1 };
        ssize_t n;

        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0)
                return -errno;
        if (n == 0)
                return -EPIPE;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

                        memcpy(fds, CMSG_DATA(c), (k > 2 ? 2 : k) * sizeof(int));
                }
        if (fd1)
                *fd1 = fds[0];
        else if (fds[0] >= 0)
                close(fds[0]);
        if (fd2)
                *fd2 = fds[1];
        else if (fds[1] >= 0)
                close(fds[1]);
        if ((size_t) n != len || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
                return -EBADMSG;
        return 0;
}

/*
 * The VMM: unprivileged, it makes what a VMM makes, passes the VM and the
 * container to the "daemon" and then obeys. Answers every command with one
 * int32 (>= 0 or -errno).
 */
static _Noreturn void vmm_main(const struct probe *pr, int sock) {
        int kvm_fd, vm_fd, dev_fd = -1, container_fd, group_fd = -1, vfio_dev_fd = -1, container2_fd = -1;
        char path[64];
        int32_t hello[2];

        snprintf(path, sizeof path, "/dev/vfio/%d", pr->group);
        if (setgroups(0, NULL) < 0 || setresgid(VMM_GID, VMM_GID, VMM_GID) < 0 ||
            setresuid(VMM_UID, VMM_UID, VMM_UID) < 0)
                _exit(10);

        kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        vm_fd = kvm_fd < 0 ? -1 : ioctl(kvm_fd, KVM_CREATE_VM, 0);
        container_fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (vm_fd >= 0 && kvm_vfio_create(vm_fd, &dev_fd) < 0)
                dev_fd = -1;
        /* hello: its own open of the group node, and whether setup worked. */
        hello[0] = open(path, O_RDWR | O_CLOEXEC);
        hello[0] = hello[0] < 0 ? -errno : (close(hello[0]), 0);
        hello[1] = kvm_fd < 0 ? -1 : vm_fd < 0 ? -2 : container_fd < 0 ? -3 : dev_fd < 0 ? -4 : 0;
        if (send_msg(sock, hello, sizeof hello, vm_fd, container_fd) < 0)
                _exit(11);

        for (;;) {
                struct vmm_cmd cmd;
                int32_t r = 0;
                int fd = -1, target;

                if (recv_msg(sock, &cmd, sizeof cmd, &fd, NULL) < 0)
                        _exit(0);
                target = cmd.target == 'd' ? vfio_dev_fd : group_fd;
                switch (cmd.op) {
                case 'H':       /* here is a VFIO file: 'g' a group, 'd' a device fd */
                        if (cmd.target == 'd') {
                                if (vfio_dev_fd >= 0)
                                        close(vfio_dev_fd);
                                vfio_dev_fd = fd;
                        } else {
                                if (group_fd >= 0)
                                        close(group_fd);
                                group_fd = fd;
                        }
                        r = fd >= 0 ? 0 : -EBADF;
                        break;
                case 'O':       /* open the group node itself */
                        r = open(path, O_RDWR | O_CLOEXEC);
                        r = r < 0 ? -errno : (close(r), 0);
                        break;
                case 'U':       /* leave the container */
                        r = ioctl_r(group_fd, VFIO_GROUP_UNSET_CONTAINER, 0);
                        break;
                case 'S':       /* into a fresh container of its own, no IOMMU model */
                        container2_fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
                        r = container2_fd < 0 ? -errno : ioctl_r(group_fd, VFIO_GROUP_SET_CONTAINER,
                                                                 (unsigned long) &container2_fd);
                        break;
                case 'X':       /* the container's coherency, as the VMM sees it */
                        r = ioctl_r(container_fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU);
                        break;
                case 'D':       /* its own device fd from the group */
                        r = ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, pr->slot);
                        if (r >= 0) {
                                if (vfio_dev_fd >= 0)
                                        close(vfio_dev_fd);
                                vfio_dev_fd = r;
                                r = 0;
                        } else
                                r = -errno;
                        break;
                case 'A':
                        r = kvm_vfio_file(dev_fd, KVM_DEV_VFIO_FILE_ADD, target);
                        break;
                case 'F':
                        r = kvm_vfio_file(dev_fd, KVM_DEV_VFIO_FILE_DEL, target);
                        break;
                case 'C':       /* close every VFIO file it holds */
                        if (group_fd >= 0)
                                close(group_fd);
                        if (vfio_dev_fd >= 0)
                                close(vfio_dev_fd);
                        if (container2_fd >= 0)
                                close(container2_fd);
                        group_fd = vfio_dev_fd = container2_fd = -1;
                        break;
                default:
                        r = -EINVAL;
                }
                if (cmd.op != 'H' && fd >= 0)
                        close(fd);
                if (send_msg(sock, &r, sizeof r, -1, -1) < 0)
                        _exit(12);
        }
}

static int vmm_start(struct probe *pr, struct vmm *ret) {
        int sv[2], r;
        int32_t hello[2];

        *ret = (struct vmm) { .pid = -1, .sock = -1, .vm_fd = -1, .container_fd = -1 };
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        fflush(stdout);
        ret->pid = fork();
        if (ret->pid < 0) {
                r = -errno;
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        if (ret->pid == 0) {
                close(sv[0]);
                vmm_main(pr, sv[1]);
        }
        close(sv[1]);
        ret->sock = sv[0];
        r = recv_msg(ret->sock, hello, sizeof hello, &ret->vm_fd, &ret->container_fd);
        if (r < 0)
                return r;
        check(pr, hello[1] == 0 && ret->vm_fd >= 0 && ret->container_fd >= 0, "vmm.setup",
              "uid %d made a VM, its kvm-vfio device and a container, and passed VM and container (%d)",
              VMM_UID, hello[1]);
        check(pr, hello[0] == -EACCES, "vmm.open_group_node", "%s (want -EACCES: /dev/vfio/%d is 0600 root)",
              errname(hello[0]), pr->group);
        return hello[1] == 0 && ret->vm_fd >= 0 && ret->container_fd >= 0 ? 0 : -EIO;
}

/* One command; its answer, or -EPIPE when the VMM is gone. */
static int vmm_do(struct vmm *v, char op, char target, int fd) {
        struct vmm_cmd cmd = { .op = op, .target = target };
        int32_t r;
        int k;

        k = send_msg(v->sock, &cmd, sizeof cmd, fd, -1);
        if (k < 0)
                return k;
        k = recv_msg(v->sock, &r, sizeof r, NULL, NULL);
        return k < 0 ? k : r;
}

static void vmm_stop(struct vmm *v) {
        if (v->sock >= 0)
                close(take_fd(&v->sock));
        if (v->pid > 0) {
                (void) waitpid(v->pid, NULL, 0);
                v->pid = -1;
        }
        if (v->vm_fd >= 0)
                close(take_fd(&v->vm_fd));
        if (v->container_fd >= 0)
                close(take_fd(&v->container_fd));
}

static void check_free(struct probe *pr, const char *name, int want) {
        int r = pr->platform->ops->custody_probe_free(pr->platform, pr->group, NULL);

        check(pr, r == want, name, "custody_probe_free=%s (want %d: %s)", errname(r), want,
              want ? "nobody holds the group" : "the group is held");
}

static int kernel_holders(struct probe *pr, pid_t pid, char *comm, size_t len) {
        struct coh_holder h[8];
        int n = pr->platform->ops->custody_holders(pr->platform, pr->group, h, ELEMENTSOF(h));
        int found = 0;

        comm[0] = '\0';
        for (int i = 0; i < n; i++)
                if (h[i].pid == pid) {
                        found = 1;
                        snprintf(comm, len, "%s", h[i].comm);
                }
        return n < 0 ? n : found ? n : -ESRCH;
}

/* The platform's decision input: which kernel rule, per IOAS. */
static void probe_ioas_coherent(struct probe *pr, const struct coh_device_facts *facts, const struct coh_fd_info *container) {
        struct coh_fd_info ioas = *container;
        bool got;

        got = pr->platform->ops->ioas_coherent(pr->platform, facts, &ioas);
        check(pr, got == pr->snoop, "ioas_coherent.container_unset", "%d (want %d: the daemon sets the IOMMU model, the device's IOMMU decides)",
              got, pr->snoop);
        ioas.coherent = 0;
        got = pr->platform->ops->ioas_coherent(pr->platform, facts, &ioas);
        check(pr, got == (pr->by_device && pr->snoop), "ioas_coherent.container_noncoherent", "%d (want %d: %s)", got,
              pr->by_device && pr->snoop, pr->by_device ? "6.6+ asks the device" : "6.1 asks the whole container");
        ioas.coherent = 1;
        got = pr->platform->ops->ioas_coherent(pr->platform, facts, &ioas);
        check(pr, got == pr->snoop, "ioas_coherent.container_coherent", "%d (want %d)", got, pr->snoop);
        ioas.kind = COH_FD_IOMMUFD;
        ioas.coherent = -1;
        got = pr->platform->ops->ioas_coherent(pr->platform, facts, &ioas);
        check(pr, got == pr->snoop, "ioas_coherent.iommufd", "%d (want %d)", got, pr->snoop);
}

/* custody_begin with the VMM's container; checks what it returns. */
static int begin(struct probe *pr, const char *name, const struct coh_device_facts *facts, struct vmm *v,
                 int *ret_file, struct coh_custody *ret_c) {
        struct coh_fd_info info;
        const char *op = NULL;
        char label[64];
        int r, fl;

        r = pr->platform->ops->classify(pr->platform, v->container_fd, &info);
        if (r < 0)
                return r;
        r = pr->platform->ops->custody_begin(pr->platform, facts, v->container_fd, &info, ret_file, ret_c, &op);
        check(pr, r == 0 && *ret_file >= 0 && ret_c->pin_fd >= 0 && ret_c->probe_fd == -EBADF, name,
              "%s (operation %s) file=%d pin=%d probe=%d", errname(r), op ? op : "-", *ret_file, ret_c->pin_fd,
              ret_c->probe_fd);
        if (r < 0)
                return r;
        snprintf(label, sizeof label, "%s.file", name);
        check_classify(pr, label, *ret_file, COH_FD_VFIO_GROUP, NULL, &info);
        fl = fcntl(*ret_file, F_GETFD);
        r = fcntl(ret_c->pin_fd, F_GETFD);
        snprintf(label, sizeof label, "%s.cloexec", name);
        check(pr, info.group == pr->group && fl >= 0 && (fl & FD_CLOEXEC) && r >= 0 && (r & FD_CLOEXEC), label,
              "group %d, file F_GETFD=%d, pin F_GETFD=%d", info.group, fl, r);
        return 0;
}

static int probe_custody(struct probe *pr) {
        struct coh_device_facts facts, wrong;
        struct coh_custody c = { -EBADF, -EBADF };
        struct coh_fd_info info, pipe_info;
        _cleanup_close_ int file = -EBADF, pipe_r = -EBADF, pipe_w = -EBADF, raw = -EBADF, devfd = -EBADF;
        struct vmm v;
        const char *op = NULL;
        char node[64], comm[32], want_op[96];
        int pipe_fds[2], r, want;

        snprintf(node, sizeof node, "/dev/vfio/%d", pr->group);
        r = coh_facts_read_device(pr->platform->sysfs_fd, pr->slot, &facts);
        if (r < 0) {
                check(pr, false, "custody.facts", "%s", errname(r));
                return -1;
        }
        check_free(pr, "custody.free_at_start", 1);

        r = vmm_start(pr, &v);
        if (r < 0) {
                check(pr, false, "vmm.start", "%s", errname(r));
                vmm_stop(&v);
                return -1;
        }

        /* What the daemon can and cannot do with what the VMM passed. */
        check_classify(pr, "vmm.vm", v.vm_fd, COH_FD_KVM_VM, NULL, NULL);
        check_classify(pr, "vmm.container", v.container_fd, COH_FD_VFIO_CONTAINER, NULL, &info);
        check(pr, info.coherent == -1, "vmm.container.coherent", "%d (want -1: no IOMMU model yet)", info.coherent);
        r = ioctl_r(v.vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
        check(pr, r == -EIO, "vmm.vm.check_extension", "%s (want -EIO: the daemon is not the VM's mm)", errname(r));
        probe_ioas_coherent(pr, &facts, &info);

        /* Failing steps undo the earlier ones. */
        if (pipe2(pipe_fds, O_CLOEXEC) == 0) {
                pipe_r = pipe_fds[0];
                pipe_w = pipe_fds[1];
        }
        pipe_info = info;       /* a "container" that is not one */
        r = pr->platform->ops->custody_begin(pr->platform, &facts, pipe_r, &pipe_info, &file, &c, &op);
        check(pr, r < 0 && op && strcmp(op, "VFIO_GROUP_SET_CONTAINER") == 0 && file < 0 && c.pin_fd < 0,
              "custody_begin.not_a_container", "%s operation %s file=%d pin=%d", errname(r), op ? op : "-", file,
              c.pin_fd);
        check_free(pr, "custody_begin.not_a_container.undone", 1);

        wrong = facts;
        snprintf(wrong.slot, sizeof wrong.slot, "0000:00:1f.7");       /* not in the group */
        op = NULL;
        r = pr->platform->ops->custody_begin(pr->platform, &wrong, v.container_fd, &info, &file, &c, &op);
        check(pr, r < 0 && op && strcmp(op, "VFIO_GROUP_GET_DEVICE_FD") == 0 && file < 0 && c.pin_fd < 0,
              "custody_begin.wrong_device", "%s operation %s file=%d pin=%d", errname(r), op ? op : "-", file,
              c.pin_fd);
        check_classify(pr, "custody_begin.wrong_device.container", v.container_fd, COH_FD_VFIO_CONTAINER, NULL, &info);
        check(pr, info.coherent == -1, "custody_begin.wrong_device.iommu_unset", "%d (want -1: the model set was undone)",
              info.coherent);
        check_free(pr, "custody_begin.wrong_device.undone", 1);

        /* Sequence 3: open, SET_CONTAINER, SET_IOMMU, pin, hand over. */
        ftrace_clear(pr->tracefs);
        if (begin(pr, "custody_begin", &facts, &v, &file, &c) < 0)
                goto out;
        r = ioctl_r(v.container_fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU);
        check(pr, r == (pr->snoop ? 1 : 0), "custody_begin.container_cc", "VFIO_DMA_CC_IOMMU=%d (the daemon set Type1v2)", r);
        {
                struct coh_custody c2 = { -EBADF, -EBADF };
                int file2 = -EBADF;

                op = NULL;
                r = pr->platform->ops->custody_begin(pr->platform, &facts, v.container_fd, &info, &file2, &c2, &op);
                snprintf(want_op, sizeof want_op, "open %s", node);
                check(pr, r == -EBUSY && op && strcmp(op, want_op) == 0 && file2 < 0 && c2.pin_fd < 0,
                      "custody_begin.busy", "%s operation %s (want -EBUSY, %s)", errname(r), op ? op : "-", want_op);
                if (file2 >= 0)
                        close(file2);
                if (c2.pin_fd >= 0)
                        close(c2.pin_fd);
        }
        check_free(pr, "custody.held_by_daemon", 0);

        r = vmm_do(&v, 'H', 'g', file);
        check(pr, r == 0, "vmm.handed_group", "%s", errname(r));
        close(take_fd(&file));
        r = vmm_do(&v, 'U', 'g', -1);
        check(pr, r == -EBUSY, "vmm.unset_container_pinned", "%s (want -EBUSY: the pin is a device fd)", errname(r));
        r = vmm_do(&v, 'O', 'g', -1);
        check(pr, r == -EACCES, "vmm.open_group_node_granted", "%s (want -EACCES: only the daemon opens the node)", errname(r));
        r = vmm_do(&v, 'X', 'g', -1);
        check(pr, r == (pr->snoop ? 1 : 0), "vmm.container_cc", "%s (want %d)", errname(r), pr->snoop);
        r = vmm_do(&v, 'D', 'g', -1);
        check(pr, r == 0, "vmm.get_device_fd", "%s (group ioctls check no identity)", errname(r));
        r = vmm_do(&v, 'A', 'g', -1);
        check(pr, r == 0, "vmm.file_add", "%s", errname(r));
        check_trace(pr, "custody.trace_after_add", pr->snoop ? 0 : 1, 0);
        r = kernel_holders(pr, v.pid, comm, sizeof comm);
        check(pr, r >= 1 && strcmp(comm, "kvm-probe") == 0, "custody_holders", "%s, VMM pid %d comm \"%s\"",
              errname(r), (int) v.pid, comm);
        check_free(pr, "custody.held_by_vmm", 0);
        ftrace_clear(pr->tracefs);
        r = vmm_do(&v, 'F', 'g', -1);
        check(pr, r == 0, "vmm.file_del", "%s", errname(r));
        check_trace(pr, "custody.trace_after_del", 0, pr->snoop ? 0 : 1);
        r = vmm_do(&v, 'C', 'g', -1);
        check(pr, r == 0, "vmm.closed", "%s", errname(r));
        r = pr->platform->ops->custody_holders(pr->platform, pr->group, (struct coh_holder[4]) {}, 4);
        check(pr, r == 0, "custody_holders.none", "%s (the pin is not the node)", errname(r));
        check_free(pr, "custody.held_by_pin", 0);
        close(take_fd(&c.pin_fd));
        check_free(pr, "custody.free_after_pin", 1);

        /* Sequence 2, without the daemon's preparation: why the pin. A group
         * handed over in no container, put by the VMM into a container without
         * an IOMMU model and added: 6.1 judges it by that container
         * (non-coherent), 6.6+ by the device's IOMMU. */
        raw = open(node, O_RDWR | O_CLOEXEC);
        check(pr, raw >= 0, "seq2.open", "%s", raw < 0 ? strerror(errno) : "ok");
        if (raw < 0)
                goto out;
        r = vmm_do(&v, 'H', 'g', raw);
        close(take_fd(&raw));
        r = r == 0 ? vmm_do(&v, 'S', 'g', -1) : r;
        check(pr, r == 0, "seq2.vmm_set_container_no_iommu", "%s", errname(r));
        ftrace_clear(pr->tracefs);
        r = vmm_do(&v, 'A', 'g', -1);
        want = pr->by_device ? !pr->snoop : 1;
        check(pr, r == 0, "seq2.file_add", "%s", errname(r));
        check_trace(pr, "seq2.trace_after_add", want, 0);
        ftrace_clear(pr->tracefs);
        r = vmm_do(&v, 'F', 'g', -1);
        check_trace(pr, "seq2.trace_after_del", 0, want);
        r = vmm_do(&v, 'C', 'g', -1);
        check_free(pr, "seq2.free", 1);

        /* Sequence 4: only a device fd taken from the group is handed over.
         * kvm-vfio takes device files from 6.6 on (6.1: EINVAL). */
        raw = open(node, O_RDWR | O_CLOEXEC);
        r = raw < 0 ? -errno : ioctl_r(raw, VFIO_GROUP_SET_CONTAINER, (unsigned long) &v.container_fd);
        r = r < 0 ? r : ioctl_r(v.container_fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
        if (r >= 0) {
                devfd = ioctl(raw, VFIO_GROUP_GET_DEVICE_FD, pr->slot);
                r = devfd < 0 ? -errno : 0;
        }
        check(pr, r == 0, "seq4.prepare", "%s", errname(r));
        if (raw >= 0)
                close(take_fd(&raw));
        if (r == 0) {
                r = vmm_do(&v, 'H', 'd', devfd);
                close(take_fd(&devfd));
                ftrace_clear(pr->tracefs);
                r = r == 0 ? vmm_do(&v, 'A', 'd', -1) : r;
                check(pr, pr->by_device ? r == 0 : r == -EINVAL, "seq4.file_add_device_fd", "%s (want %s)", errname(r),
                      pr->by_device ? "0" : "-EINVAL");
                check_trace(pr, "seq4.trace_after_add", r == 0 && !pr->snoop ? 1 : 0, 0);
                if (r == 0) {
                        ftrace_clear(pr->tracefs);
                        r = vmm_do(&v, 'F', 'd', -1);
                        check_trace(pr, "seq4.trace_after_del", 0, !pr->snoop ? 1 : 0);
                }
                r = vmm_do(&v, 'C', 'g', -1);
        }
        check_free(pr, "seq4.free", 1);

        /* Sequence 5: the VMM is killed while the group is added and pinned,
         * the daemon holding its VM and the pin. Also: a second custody on the
         * same container sets the IOMMU model again (the container lost it
         * when its last group left). */
        check_classify(pr, "seq5.container", v.container_fd, COH_FD_VFIO_CONTAINER, NULL, &info);
        check(pr, info.coherent == -1, "seq5.container.iommu_unset", "%d (want -1)", info.coherent);
        if (begin(pr, "seq5.custody_begin", &facts, &v, &file, &c) < 0)
                goto out;
        r = vmm_do(&v, 'H', 'g', file);
        close(take_fd(&file));
        ftrace_clear(pr->tracefs);
        r = r == 0 ? vmm_do(&v, 'A', 'g', -1) : r;
        check(pr, r == 0, "seq5.file_add", "%s", errname(r));
        check_trace(pr, "seq5.trace_after_add", pr->snoop ? 0 : 1, 0);
        check_free(pr, "seq5.held", 0);
        ftrace_clear(pr->tracefs);
        (void) kill(v.pid, SIGKILL);
        (void) waitpid(v.pid, NULL, 0);
        v.pid = -1;
        check_trace(pr, "seq5.trace_after_kill", 0, pr->snoop ? 0 : 1);
        check_free(pr, "seq5.held_by_pin", 0);
        close(take_fd(&c.pin_fd));
        check_free(pr, "seq5.free_after_pin", 1);

out:
        if (c.pin_fd >= 0)
                close(take_fd(&c.pin_fd));
        vmm_stop(&v);
        return 0;
}

static bool kernel_by_device(void) {
        struct utsname u;
        int major = 0, minor = 0;

        if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2)
                return false;
        return major > 6 || (major == 6 && minor >= 6);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "slot", required_argument, NULL, 's' },
                { "group", required_argument, NULL, 'g' },
                { "snoop", required_argument, NULL, 'n' },
                { "tracefs", required_argument, NULL, 't' },
                {}
        };
        struct probe pr = {
                .group = -1,
                .tracefs = "/sys/kernel/tracing",
        };
        char err[256] = "";
        const char *snoop = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 's': pr.slot = optarg; break;
                case 'g': pr.group = atoi(optarg); break;
                case 'n': snoop = optarg; break;
                case 't': pr.tracefs = optarg; break;
                default: return 2;
                }
        if (!pr.slot || pr.group < 0 || !snoop || (strcmp(snoop, "on") != 0 && strcmp(snoop, "off") != 0)) {
                fprintf(stderr, "usage: kvm-probe --slot SLOT --group N --snoop on|off [--tracefs DIR]\n");
                return 2;
        }
        pr.snoop = strcmp(snoop, "on") == 0;
        pr.release_destroys = kvm_vfio_has_release();
        pr.by_device = kernel_by_device();
        /* A VMM killed in sequence 5 must not take us with it through a
         * write to its socket. */
        signal(SIGPIPE, SIG_IGN);

        r = coh_platform_new("linux", &pr.platform, err, sizeof err);
        check(&pr, r == 0, "platform_new", "%s", r == 0 ? pr.platform->ops->name : err);
        if (r < 0)
                return 1;

        r = probe_alone(&pr);
        if (r == 0)
                r = probe_custody(&pr);
        coh_platform_free(pr.platform);
        printf("kvm-probe: %u passed, %u failed%s\n", pr.passed, pr.failed, r < 0 ? " (stopped early)" : "");
        return pr.failed == 0 && r == 0 ? 0 : 1;
}
