/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "linux-uapi.h"
#include "sandbox.h"
#include "util.h"

int coh_sandbox_parser_user(uid_t *ret_uid, gid_t *ret_gid, bool *ret_dedicated) {
        /* Looked up by name each start: systemd-sysusers picks the number. */
        errno = 0;
        const struct passwd *pw = getpwnam(COH_SANDBOX_USER);
        if (pw) {
                if (pw->pw_uid == 0 || pw->pw_gid == 0)
                        return -EPERM; /* a "coherencyd" that is root would drop nothing */
                *ret_uid = pw->pw_uid;
                *ret_gid = pw->pw_gid;
                *ret_dedicated = true;
                return 0;
        }
        *ret_uid = COH_SANDBOX_NOBODY;
        *ret_gid = COH_SANDBOX_NOBODY;
        *ret_dedicated = false;
        return 0;
}

/* Drops every capability but CAP_KILL when keep_kill, from the bounding set
 * where the process may (that needs CAP_SETPCAP, which the unit does not
 * give: there CapabilityBoundingSet= bounds it, and with no_new_privs and no
 * execve nothing outside the permitted set can come back), then from the
 * effective, permitted, inheritable and ambient sets. */
static int drop_bounding_set(bool keep_kill) {
        for (unsigned long cap = 0; cap <= 63; cap++) {
                if (keep_kill && cap == CAP_KILL)
                        continue;
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL && errno != EPERM)
                        return -errno;
        }
        return 0;
}

static int drop_capabilities(bool keep_kill) {
        struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2] = {};
        if (keep_kill) {
                data[CAP_TO_INDEX(CAP_KILL)].effective = CAP_TO_MASK(CAP_KILL);
                data[CAP_TO_INDEX(CAP_KILL)].permitted = CAP_TO_MASK(CAP_KILL);
        }
        if (syscall(SYS_capset, &header, data) < 0)
                return -errno;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return -errno;
        return 0;
}

/* Root only: the parser's user, with no supplementary group. */
static int become_user(char *errbuf, size_t errlen) {
        uid_t uid;
        gid_t gid;
        bool dedicated;
        int r = coh_sandbox_parser_user(&uid, &gid, &dedicated);
        if (r < 0) {
                snprintf(errbuf, errlen, "user %s: %s", COH_SANDBOX_USER, strerror(-r));
                return r;
        }
        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
                r = -errno;
                snprintf(errbuf, errlen, "becoming %s (%u:%u): %s", dedicated ? COH_SANDBOX_USER : "nobody",
                         (unsigned) uid, (unsigned) gid, strerror(-r));
                return r;
        }
        uid_t ru, eu, su;
        if (getresuid(&ru, &eu, &su) < 0 || ru != uid || eu != uid || su != uid) {
                snprintf(errbuf, errlen, "still uid 0 after setresuid");
                return -EPERM;
        }
        return 0;
}

/*
 * The parser: the event loop (libevent), json-c and glibc's malloc, the
 * journal and sd_notify (sockets it reconnects), peer identity (getsockopt,
 * pidfd_open, /proc/PID/cgroup), classify (fstat, fstatfs, readlink of
 * /proc/self/fd, kcmp), sysfs facts and the policy (openat, getdents64), the
 * fd store's state memfd, and wait4 for the helper at exit. Not: fork,
 * execve, ptrace, mount, setuid and the like, socketpair, pidfd_send_signal
 * (the helper's), any ioctl but classify's and the loop's.
 */
static const int parser_calls[] = {
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64),
        SCMP_SYS(pwrite64), SCMP_SYS(lseek), SCMP_SYS(close), SCMP_SYS(fcntl), SCMP_SYS(dup),
        SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fstatfs), SCMP_SYS(statfs),
        SCMP_SYS(openat), SCMP_SYS(readlinkat), SCMP_SYS(readlink), SCMP_SYS(getdents64),
        SCMP_SYS(faccessat), SCMP_SYS(faccessat2), SCMP_SYS(access), SCMP_SYS(ftruncate),
        SCMP_SYS(recvmsg), SCMP_SYS(recvmmsg), SCMP_SYS(sendmsg), SCMP_SYS(sendto), SCMP_SYS(recvfrom),
        SCMP_SYS(accept4),
        SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname), SCMP_SYS(socket),
        SCMP_SYS(connect), SCMP_SYS(shutdown),
        SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait),
        SCMP_SYS(epoll_pwait2), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(pipe2), SCMP_SYS(eventfd2),
        SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(brk), SCMP_SYS(madvise),
        SCMP_SYS(mprotect), SCMP_SYS(futex), SCMP_SYS(getrandom), SCMP_SYS(clock_gettime),
        SCMP_SYS(gettimeofday), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction),
        SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid),
        SCMP_SYS(getegid), SCMP_SYS(kcmp), SCMP_SYS(pidfd_open), SCMP_SYS(exit), SCMP_SYS(exit_group),
        SCMP_SYS(restart_syscall), SCMP_SYS(sched_yield), SCMP_SYS(uname),
        SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_settime), SCMP_SYS(memfd_create),
        SCMP_SYS(sigaltstack), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(wait4),
};

/* classify: KVM_CHECK_EXTENSION (a VM), VFIO_IOMMU_GET_INFO and
 * VFIO_CHECK_EXTENSION (a container); FIONREAD (libevent's buffers) and
 * TCGETS (stdio's isatty). The custody ioctls are the helper's: made here,
 * they end the process. */
static const unsigned long parser_ioctls[] = {
        KVM_CHECK_EXTENSION, VFIO_CHECK_EXTENSION, VFIO_IOMMU_GET_INFO, FIONREAD, TCGETS,
};

/*
 * The helper: its socket (recvmsg, sendmsg), what the platform's custody
 * ops make (openat of /dev/vfio/N, /proc and sysfs, fstat, readlink,
 * getdents64; socketpair, shutdown and recv for the simulated platform's
 * group stand-ins and their probe), the pidfd check (/proc/self/fdinfo,
 * getppid) and pidfd_send_signal, malloc's, stderr. Not: accept, connect,
 * socket, fork, execve, ptrace, kill, mount, setuid and the like.
 */
static const int helper_calls[] = {
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(writev), SCMP_SYS(lseek), SCMP_SYS(close),
        SCMP_SYS(fcntl), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fstatfs),
        SCMP_SYS(openat), SCMP_SYS(readlinkat), SCMP_SYS(readlink), SCMP_SYS(getdents64),
        SCMP_SYS(faccessat), SCMP_SYS(faccessat2), SCMP_SYS(access), SCMP_SYS(recvmsg), SCMP_SYS(sendmsg),
        SCMP_SYS(socketpair), SCMP_SYS(shutdown), SCMP_SYS(recvfrom), SCMP_SYS(pidfd_send_signal),
        SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(brk), SCMP_SYS(madvise),
        SCMP_SYS(mprotect), SCMP_SYS(futex), SCMP_SYS(getrandom), SCMP_SYS(clock_gettime),
        SCMP_SYS(gettimeofday), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(getpid),
        SCMP_SYS(getppid), SCMP_SYS(gettid), SCMP_SYS(exit), SCMP_SYS(exit_group),
        SCMP_SYS(restart_syscall), SCMP_SYS(sched_yield), SCMP_SYS(sigaltstack),
};

/* platform-linux.c's custody: the group ioctls, VFIO_SET_IOMMU, and
 * VFIO_DEVICE_BIND_IOMMUFD on the iommufd path; classify's (the IOAS passed
 * is classified again here); TCGETS (stdio). No KVM_CREATE_DEVICE or
 * KVM_SET_DEVICE_ATTR: the VMM attaches, the daemon never acts on a VM.
 * Keep this in step with platform-linux.c: the vm tier runs it. */
static const unsigned long helper_ioctls[] = {
        KVM_CHECK_EXTENSION, VFIO_CHECK_EXTENSION, VFIO_IOMMU_GET_INFO,
        VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER,
        VFIO_SET_IOMMU, VFIO_GROUP_GET_DEVICE_FD, VFIO_DEVICE_BIND_IOMMUFD, TCGETS,
};

static int install_filter(const int *calls, size_t n_calls, const unsigned long *ioctls, size_t n_ioctls) {
        /* KILL_PROCESS, not KILL_THREAD: nothing half-alive is left behind. */
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
        int r = 0;
        if (!ctx)
                return -ENOMEM;
        for (size_t i = 0; i < n_calls; i++) {
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0);
                if (r < 0 && r != -EDOM) /* a call this architecture lacks */
                        goto out;
        }
        for (size_t i = 0; i < n_ioctls; i++) {
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

/* Each step in turn; errbuf names the one that failed. */
int coh_sandbox_enter(enum coh_sandbox_process which, unsigned flags, char *errbuf, size_t errlen) {
        bool helper = which == COH_SANDBOX_HELPER, keep_kill = helper && (flags & COH_SANDBOX_KEEP_KILL);
        bool root = geteuid() == 0;
        int r = drop_bounding_set(keep_kill);
        if (r < 0) {
                snprintf(errbuf, errlen, "dropping the bounding set: %s", strerror(-r));
                return r;
        }
        if (root && !helper) {
                r = become_user(errbuf, errlen);
                if (r < 0)
                        return r;
        } else if (root && setgroups(0, NULL) < 0) {
                r = -errno;
                snprintf(errbuf, errlen, "setgroups: %s", strerror(-r));
                return r;
        }
        /* setresuid has made it so already (fs.suid_dumpable=0); not where that sysctl says otherwise. */
        if (!helper && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
                r = -errno;
                snprintf(errbuf, errlen, "PR_SET_DUMPABLE: %s", strerror(-r));
                return r;
        }
        r = drop_capabilities(keep_kill);
        if (r < 0) {
                snprintf(errbuf, errlen, "dropping capabilities: %s", strerror(-r));
                return r;
        }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                r = -errno;
                snprintf(errbuf, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(-r));
                return r;
        }
        r = helper ? install_filter(helper_calls, ELEMENTSOF(helper_calls), helper_ioctls, ELEMENTSOF(helper_ioctls))
                   : install_filter(parser_calls, ELEMENTSOF(parser_calls), parser_ioctls, ELEMENTSOF(parser_ioctls));
        if (r < 0)
                snprintf(errbuf, errlen, "seccomp filter: %s", strerror(-r));
        return r;
}
