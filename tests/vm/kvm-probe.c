/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * kvm-probe: checks, in a guest of the vm tier (see tests/vm/init), the
 * kernel facts coherencyd rests on (DESIGN.md §4) and the linux platform
 * (daemon/platform-linux.c) against a real KVM, a real VFIO group of QEMU's
 * edu device and a real (emulated) VT-d, with the function tracer as the
 * oracle for KVM's non-coherent DMA accounting.
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
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
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

                r = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
                r = r < 0 ? -errno : r;
                check(&child, r == -EIO, "xproc.vm_check_extension", "%s (want -EIO: not the VM's mm)", errname(r));

                ftrace_clear(child.tracefs);
                r = child.platform->ops->vfio_device_create(child.platform, vm_fd, &fd);
                check(&child, r == -EIO, "xproc.vfio_device_create", "%s (want -EIO)", errname(r));
                if (r >= 0)
                        close(fd);

                r = child.platform->ops->vfio_file_add(child.platform, device_fd, group_fd, false);
                check(&child, r == -EIO, "xproc.vfio_file_add", "%s (want -EIO)", errname(r));
                check_trace(&child, "xproc.trace_after_add", 0, 0);
                _exit(child.failed > 255 ? 255 : (int) child.failed);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) {
                check(pr, false, "xproc.wait", "child did not exit normally");
                return 1;
        }
        return (unsigned) WEXITSTATUS(status);
}

static int probe_run(struct probe *pr) {
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

        /* All VMs share one anonymous inode; only the open file tells them apart. */
        vm_dup = fcntl(vm_fd, F_DUPFD_CLOEXEC, 3);
        r = fstat(vm_fd, &st1) == 0 && fstat(vm2_fd, &st2) == 0;
        check(pr, r && st1.st_ino == st2.st_ino && st1.st_dev == st2.st_dev, "kvm.vms_share_inode",
              "ino %lu and %lu", (unsigned long) st1.st_ino, (unsigned long) st2.st_ino);
        check(pr, coh_same_file(vm_fd, vm_dup) == 1 && coh_same_file(vm_fd, vm2_fd) == 0, "kcmp.same_file",
              "dup=%d other VM=%d", coh_same_file(vm_fd, vm_dup), coh_same_file(vm_fd, vm2_fd));

        /* The kvm-vfio device. */
        r = pr->platform->ops->vfio_device_create(pr->platform, vm_fd, &dev_fd);
        check(pr, r == 0, "vfio_device_create", "%s", errname(r));
        if (r < 0)
                return -1;
        r = fcntl(dev_fd, F_GETFD);
        check(pr, r >= 0 && (r & FD_CLOEXEC), "vfio_device_create.cloexec", "F_GETFD=%d", r);
        r = fcntl(dev_fd, F_GETFL);
        check(pr, r >= 0 && (r & O_ACCMODE) == O_RDWR, "vfio_device_create.rdwr", "F_GETFL=%#x", r);
        check_classify(pr, "kvm_vfio_device", dev_fd, COH_FD_OTHER, "a kvm-vfio device (not a VM)", NULL);

        r = pr->platform->ops->vfio_device_create(pr->platform, vm_fd, &dev2_fd);
        check(pr, r == -EBUSY, "vfio_device_create.second", "%s (want -EBUSY)", errname(r));
        if (r == 0)
                close(dev2_fd);
        dev2_fd = -1;

        /* The oracle: FILE_ADD registers non-coherent DMA iff the group is not
         * enforced-coherent, FILE_DEL unregisters it. */
        ftrace_clear(pr->tracefs);
        r = pr->platform->ops->vfio_file_add(pr->platform, dev_fd, group_fd, pr->snoop);
        check(pr, r == 0, "vfio_file_add", "%s", errname(r));
        check_trace(pr, "trace.after_add", pr->snoop ? 0 : 1, 0);

        r = pr->platform->ops->vfio_file_add(pr->platform, dev_fd, group_fd, pr->snoop);
        check(pr, r == -EEXIST, "vfio_file_add.duplicate", "%s (want -EEXIST)", errname(r));
        r = pr->platform->ops->vfio_file_add(pr->platform, dev_fd, pipe_r, false);
        check(pr, r == -EINVAL, "vfio_file_add.pipe", "%s (want -EINVAL)", errname(r));
        r = pr->platform->ops->vfio_file_add(pr->platform, dev_fd, container_fd, false);
        check(pr, r == -EINVAL, "vfio_file_add.container", "%s (want -EINVAL)", errname(r));

        /* The daemon's situation: another process (another mm). */
        xfailed = cross_process(pr, vm_fd, dev_fd, group_fd);
        check(pr, xfailed == 0, "xproc", "%u failed in the child", xfailed);

        ftrace_clear(pr->tracefs);
        r = pr->platform->ops->vfio_file_del(pr->platform, dev_fd, group_fd);
        check(pr, r == 0, "vfio_file_del", "%s", errname(r));
        check_trace(pr, "trace.after_del", 0, pr->snoop ? 0 : 1);
        r = pr->platform->ops->vfio_file_del(pr->platform, dev_fd, group_fd);
        check(pr, r == -ENOENT, "vfio_file_del.again", "%s (want -ENOENT)", errname(r));

        /* Lifetime of the kvm-vfio device: with .release, closing its fd
         * destroys it and drops its files; with .destroy it lives as long as
         * the VM. */
        fact("kvm.vfio_device_ops", "%s", pr->release_destroys ? "release (destroyed on close)" : "destroy (lives with the VM)");
        r = pr->platform->ops->vfio_file_add(pr->platform, dev_fd, group_fd, pr->snoop);
        check(pr, r == 0, "vfio_file_add.before_close", "%s", errname(r));
        ftrace_clear(pr->tracefs);
        pr->platform->ops->vfio_device_close(pr->platform, vm_fd, take_fd(&dev_fd));
        r = ftrace_count(pr->tracefs, KVM_VFIO_RELEASE);
        check(pr, r == (pr->release_destroys ? 1 : 0), "trace.kvm_vfio_release_on_close", "x%d", r);
        check_trace(pr, "trace.after_close", 0, pr->release_destroys && !pr->snoop ? 1 : 0);
        r = pr->platform->ops->vfio_device_create(pr->platform, vm_fd, &dev2_fd);
        check(pr, pr->release_destroys ? r == 0 : r == -EBUSY, "vfio_device_create.after_close",
              "%s (want %s)", errname(r), pr->release_destroys ? "0" : "-EBUSY");
        if (r == 0)
                close(dev2_fd);

        /* What this kernel offers beyond groups (DESIGN §4: Debian 12's
         * kernels have neither). */
        fact("dev.iommu", "%s", access("/dev/iommu", F_OK) == 0 ? "present" : "absent");
        fact("dev.vfio_devices", "%s", access("/dev/vfio/devices", F_OK) == 0 ? "present" : "absent");

        return 0;
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

        r = coh_platform_new("linux", &pr.platform, err, sizeof err);
        check(&pr, r == 0, "platform_new", "%s", r == 0 ? pr.platform->ops->name : err);
        if (r < 0)
                return 1;

        r = probe_run(&pr);
        coh_platform_free(pr.platform);
        printf("kvm-probe: %u passed, %u failed%s\n", pr.passed, pr.failed, r < 0 ? " (stopped early)" : "");
        return pr.failed == 0 && r == 0 ? 0 : 1;
}
