/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "linux-uapi.h"
#include "sandbox.h"
#include "util.h"

/* Drops every capability but CAP_KILL when keep_kill: effective, permitted
 * and inheritable, and from the bounding set where the daemon may (that needs
 * CAP_SETPCAP, which the unit does not give: there CapabilityBoundingSet=
 * already holds CAP_KILL alone, and with no_new_privs and no execve nothing
 * can come back). Opening /dev/vfio/N (0600 root) needs none: the daemon is
 * its owner. */
static int drop_capabilities(bool keep_kill) {
        for (unsigned long cap = 0; cap <= 63; cap++) {
                if (keep_kill && cap == CAP_KILL)
                        continue;
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL && errno != EPERM)
                        return -errno;
        }
        struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2] = {};
        if (keep_kill) {
                data[CAP_TO_INDEX(CAP_KILL)].effective = CAP_TO_MASK(CAP_KILL);
                data[CAP_TO_INDEX(CAP_KILL)].permitted = CAP_TO_MASK(CAP_KILL);
        }
        if (syscall(SYS_capset, &header, data) < 0)
                return -errno;
        return 0;
}

/* What the event loop, libevent, json-c, glibc's malloc, sd_notify and the
 * journal use; socketpair for the simulated platform's group stand-ins;
 * pidfd_send_signal for RevokeKill= (it fails with EPERM without CAP_KILL). */
static const int allowed[] = {
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64),
        SCMP_SYS(pwrite64), SCMP_SYS(lseek), SCMP_SYS(close), SCMP_SYS(fcntl), SCMP_SYS(dup),
        SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fstatfs), SCMP_SYS(statfs),
        SCMP_SYS(openat), SCMP_SYS(readlinkat), SCMP_SYS(readlink), SCMP_SYS(getdents64),
        SCMP_SYS(faccessat), SCMP_SYS(faccessat2), SCMP_SYS(access), SCMP_SYS(ftruncate),
        SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(accept4),
        SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname), SCMP_SYS(socket),
        SCMP_SYS(connect), SCMP_SYS(shutdown),
        SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait),
        SCMP_SYS(epoll_pwait2), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(pipe2), SCMP_SYS(eventfd2),
        SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(brk), SCMP_SYS(madvise),
        SCMP_SYS(mprotect), SCMP_SYS(futex), SCMP_SYS(getrandom), SCMP_SYS(clock_gettime),
        SCMP_SYS(gettimeofday), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction),
        SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid),
        SCMP_SYS(getegid), SCMP_SYS(kcmp), SCMP_SYS(pidfd_open), SCMP_SYS(exit), SCMP_SYS(exit_group),
        SCMP_SYS(restart_syscall), SCMP_SYS(sched_yield), SCMP_SYS(prctl), SCMP_SYS(uname),
        SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_settime), SCMP_SYS(unlink), SCMP_SYS(memfd_create),
        SCMP_SYS(sigaltstack), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(socketpair),
        SCMP_SYS(pidfd_send_signal),
};

static int install_filter(void) {
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
        int r;
        if (!ctx)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(allowed); i++) {
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
                if (r < 0 && r != -EDOM) /* a call this architecture lacks */
                        goto out;
        }
        /* ioctl: only what platform-linux.c asks the kernel; every other
         * request fails with EPERM, which that code would misread as an
         * answer, so keep this list in step with it (the vm tier checks).
         * classify: KVM_CHECK_EXTENSION (VM), VFIO_IOMMU_GET_INFO and
         * VFIO_CHECK_EXTENSION (container). custody_begin: the group ioctls,
         * VFIO_SET_IOMMU, and VFIO_DEVICE_BIND_IOMMUFD on the iommufd path.
         * No KVM_CREATE_DEVICE / KVM_SET_DEVICE_ATTR: the VMM attaches, the
         * daemon never acts on a VM (KVM would refuse it, EIO). FIONREAD
         * (libevent's buffers) and TCGETS (stdio's isatty) are the event
         * loop's own. */
        static const unsigned long ioctls[] = {
                KVM_CHECK_EXTENSION, VFIO_CHECK_EXTENSION, VFIO_IOMMU_GET_INFO,
                VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER,
                VFIO_SET_IOMMU, VFIO_GROUP_GET_DEVICE_FD, VFIO_DEVICE_BIND_IOMMUFD, FIONREAD, TCGETS,
        };
        for (size_t i = 0; i < ELEMENTSOF(ioctls); i++) {
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                     SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t) ioctls[i], 0));
                if (r < 0)
                        goto out;
        }
        r = seccomp_load(ctx);
out:
        seccomp_release(ctx);
        return r;
}

int coh_sandbox_enter_flags(unsigned flags, char *errbuf, size_t errlen) {
        int r = drop_capabilities(flags & COH_SANDBOX_KEEP_KILL);
        if (r < 0) {
                snprintf(errbuf, errlen, "dropping capabilities: %s", strerror(-r));
                return r;
        }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                r = -errno;
                snprintf(errbuf, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(-r));
                return r;
        }
        r = install_filter();
        if (r < 0)
                snprintf(errbuf, errlen, "seccomp filter: %s", strerror(-r));
        return r;
}

int coh_sandbox_enter(char *errbuf, size_t errlen) {
        return coh_sandbox_enter_flags(0, errbuf, errlen);
}
