/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What differs between a real host and the simulated platform: telling what
 * a passed descriptor is, and the kvm-vfio actions. Facts about devices come
 * from facts.c on both, rooted at sysfs_fd.
 *
 * "linux": the kernel's own interfaces (/dev/kvm VM fds, /dev/vfio groups,
 *   device cdevs, containers, iommufd), facts from /sys.
 * "sim:DIR": memfds named "coherencyd-sim:<object>" stand for kernel objects
 *   (see DESIGN.md §8), facts from the tree at DIR. The simulated kvm-vfio
 *   device keeps its state in the VM memfd's contents so that a test can read
 *   what "KVM" did (see platform-sim.c).
 */

#include <stdbool.h>

#include "facts.h"

enum coh_fd_kind {
        COH_FD_OTHER,
        COH_FD_KVM_VM,
        COH_FD_VFIO_GROUP,
        COH_FD_VFIO_DEVICE,
        COH_FD_VFIO_CONTAINER,
        COH_FD_IOMMUFD,
};

struct coh_fd_info {
        enum coh_fd_kind kind;
        int group;                    /* VFIO group number, or -1 */
        char slot[COH_SLOT_MAX];      /* VFIO device cdev: the PCI slot, else "" */
        int coherent;                 /* container/iommufd: 1 enforces, 0 does not, -1 unknown */
        char what[96];                /* what it is, for errors: "a pipe", "a KVM VM", "an O_PATH descriptor" */
};

struct coh_platform;

struct coh_platform_ops {
        const char *name;
        /* Fills *ret for any descriptor; fails only on real errors (-errno). */
        int (*classify)(struct coh_platform *p, int fd, struct coh_fd_info *ret);
        /* Creates the VM's kvm-vfio device; -EBUSY when the VM has one already. */
        int (*vfio_device_create)(struct coh_platform *p, int vm_fd, int *ret_device_fd);
        /* coherent: whether the kernel sees the file as enforced-coherent (the
         * request's ioasCoherent). The kernel knows this itself and the linux
         * platform ignores it; the simulated one uses it to model KVM's
         * non-coherent DMA accounting. */
        int (*vfio_file_add)(struct coh_platform *p, int device_fd, int file_fd, bool coherent);
        int (*vfio_file_del)(struct coh_platform *p, int device_fd, int file_fd);
        /* Closes the kvm-vfio device (since 6.2 this destroys it). */
        void (*vfio_device_close)(struct coh_platform *p, int vm_fd, int device_fd);
        void (*free)(struct coh_platform *p);
};

struct coh_platform {
        const struct coh_platform_ops *ops;
        int sysfs_fd;   /* O_PATH|O_DIRECTORY root of the sysfs tree */
        void *data;
};

/* "linux" or "sim:DIR". -EINVAL for anything else, -EOPNOTSUPP where the platform cannot run here. */
int coh_platform_new(const char *spec, struct coh_platform **ret, char *errbuf, size_t errlen);
void coh_platform_free(struct coh_platform *p);

int coh_platform_linux_new(struct coh_platform **ret, char *errbuf, size_t errlen);
int coh_platform_sim_new(const char *dir, struct coh_platform **ret, char *errbuf, size_t errlen);

const char *coh_fd_kind_to_string(enum coh_fd_kind k);

/* Whether two descriptors are the same open file (kcmp KCMP_FILE): 1, 0, or -errno. */
int coh_same_file(int a, int b);
