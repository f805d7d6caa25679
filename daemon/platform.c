/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "facts-cache.h"
#include "platform.h"

const char *coh_fd_kind_to_string(enum coh_fd_kind k) {
        switch (k) {
        case COH_FD_KVM_VM:
                return "a KVM VM";
        case COH_FD_VFIO_GROUP:
                return "a VFIO group";
        case COH_FD_VFIO_DEVICE:
                return "a VFIO device";
        case COH_FD_VFIO_CONTAINER:
                return "a VFIO container";
        case COH_FD_IOMMUFD:
                return "an iommufd";
        case COH_FD_OTHER:
        default:
                return "something else";
        }
}

int coh_platform_new(const char *spec, struct coh_platform **ret, char *errbuf, size_t errlen) {
        int r;
        if (strcmp(spec, "linux") == 0)
                r = coh_platform_linux_new(ret, errbuf, errlen);
        else if (strncmp(spec, "sim:", 4) == 0 && spec[4])
                r = coh_platform_sim_new(spec + 4, ret, errbuf, errlen);
        else {
                snprintf(errbuf, errlen, "unknown platform '%s' (expected 'linux' or 'sim:DIR')", spec);
                return -EINVAL;
        }
        if (r < 0)
                return r;
        /* Without a uevent source (a unit whose RestrictAddressFamilies= has
         * no AF_NETLINK, a simulated tree without its FIFO) facts are read
         * on every request, as they always were. */
        (*ret)->facts = coh_facts_cache_open(spec, (*ret)->sysfs_fd);
        return r;
}

void coh_platform_free(struct coh_platform *p) {
        if (!p)
                return;
        if (p->sysfs_fd >= 0)
                close(p->sysfs_fd);
        coh_facts_cache_free(p->facts);
        p->ops->free(p);
}

int coh_file_order(pid_t self, int a, int b, int *ret) {
        /* All kvm-vm descriptors share one anonymous inode, so only the open
         * file (struct file) tells two VMs apart. kernel/kcmp.c, kcmp_ptr():
         * 0 equal, 1 when a's file is less, 2 when greater, comparing the
         * file pointers xor'ed and multiplied by cookies drawn once per boot
         * (kptr_obfuscate()): a total order, fixed while both stay open. */
        long r = syscall(SYS_kcmp, self, self, KCMP_FILE, (unsigned long) a, (unsigned long) b);
        if (r < 0)
                return -errno;
        *ret = r == 0 ? 0 : r == 1 ? -1 : 1;
        return 0;
}

int coh_same_file(int a, int b) {
        int order;
        int r = coh_file_order(getpid(), a, b, &order);
        return r < 0 ? r : order == 0;
}

int coh_kill_pidfd(struct coh_platform *p, int pidfd) {
        if (pidfd < 0)
                return -EBADF;
        if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0)
                return -errno;
        return 0;
}
