/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What differs between a real host and the simulated platform: telling what
 * a passed descriptor is, and custody of VFIO files (open, prepare, pin,
 * probe whether free). Facts about devices come from facts.c on both, rooted
 * at sysfs_fd.
 *
 * "linux": the kernel's own interfaces (/dev/kvm VM fds, /dev/vfio groups,
 *   device cdevs, containers, iommufd), facts from /sys.
 * "sim:DIR": memfds named "coherencyd-sim:<object>" stand for kernel objects
 *   (see DESIGN.md §8), facts from the tree at DIR. A handed-over group is
 *   one end of a socketpair: busy until every copy of it is closed. The
 *   client side (libcoherency's simulated KVM) records in the VM memfd what
 *   it added, so a test can read what "KVM" did.
 * "priv" (platform-priv.c, priv.h): what the daemon really runs. Either of
 *   the above, split: classify and ioas_coherent in the unprivileged main
 *   process, custody and kill_peer in the privileged helper it forked.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

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

/*
 * What the daemon keeps of one handed-over file (DESIGN.md §3). Both are
 * owned by the grant and go to the fd store with it; -EBADF when unused.
 */
struct coh_custody {
        /* Holds the group's file open so the VMM cannot leave its container
         * (linux: a device fd from VFIO_GROUP_GET_DEVICE_FD, which makes
         * VFIO_GROUP_UNSET_CONTAINER EBUSY). Closed when the grant ends. */
        int pin_fd;
        /* sim only: the daemon's end of the socketpair whose other end was
         * handed over; it reads EOF once every copy of that end is closed,
         * which is the simulated "group free again". linux: -EBADF. */
        int probe_fd;
};

/* One process holding a group, for the still-held warning. */
struct coh_holder {
        pid_t pid;
        char comm[32];
};

struct coh_platform_ops {
        const char *name;
        /* Fills *ret for any descriptor; fails only on real errors (-errno). */
        int (*classify)(struct coh_platform *p, int fd, struct coh_fd_info *ret);
        /*
         * Whether KVM will see a file of this device, handed over into this
         * IOAS (classified as a container or iommufd), as enforced-coherent.
         * linux: 6.6+ asks the device's IOMMU only; 6.1 the container as a
         * whole (every domain in it, or the device's IOMMU when the daemon
         * will set the IOMMU model itself). sim: the IOAS the VMM chose
         * (the memfd's suffix).
         */
        bool (*ioas_coherent)(struct coh_platform *p, const struct coh_device_facts *device,
                              const struct coh_fd_info *ioas);
        /*
         * Opens the VFIO file of the device (its group; with an iommufd, the
         * device cdev), attaches it to the VMM's IOAS (ioas_fd, classified as
         * *ioas), sets the IOMMU model when the container has none, and pins
         * it. *ret_file_fd is the file to hand over (the daemon closes its
         * copy once it is sent). -EBUSY while anyone holds the group. On
         * failure every step is undone and *ret_operation names the one that
         * failed ("open /dev/vfio/7", "VFIO_GROUP_SET_CONTAINER", ...).
         */
        int (*custody_begin)(struct coh_platform *p, const struct coh_device_facts *device, int ioas_fd,
                             const struct coh_fd_info *ioas, int *ret_file_fd, struct coh_custody *ret,
                             const char **ret_operation);
        /*
         * Called with the pin closed: 1 when the group is free again (nobody
         * holds the handed-over file: no copy, no device fd, no KVM
         * reference), 0 while it is held, -errno on failure. linux: tries to
         * open the group (exclusive) and closes it again.
         */
        int (*custody_probe_free)(struct coh_platform *p, int iommu_group, const struct coh_custody *c);
        /* The processes that hold the group's file, as /proc shows them (linux); up to n. Returns the count. */
        int (*custody_holders)(struct coh_platform *p, int iommu_group, struct coh_holder *ret, size_t n);
        /*
         * SIGKILL to a VMM through its pidfd (RevokeKill=), never a reused
         * pid. 0 or -errno (-ESRCH: it had exited). linux and sim: here, with
         * coh_kill_pidfd(); priv: by the helper, which alone may keep CAP_KILL.
         */
        int (*kill_peer)(struct coh_platform *p, int pidfd);
        void (*free)(struct coh_platform *p);
};

struct coh_facts_cache;

struct coh_platform {
        const struct coh_platform_ops *ops;
        int sysfs_fd;   /* O_PATH|O_DIRECTORY root of the sysfs tree */
        /* Device facts between requests, and the uevent source that drops
         * them (facts-cache.h); NULL: read from sysfs every time. */
        struct coh_facts_cache *facts;
        void *data;
};

/* "linux" or "sim:DIR". -EINVAL for anything else, -EOPNOTSUPP where the platform cannot run here. */
int coh_platform_new(const char *spec, struct coh_platform **ret, char *errbuf, size_t errlen);
void coh_platform_free(struct coh_platform *p);

int coh_platform_linux_new(struct coh_platform **ret, char *errbuf, size_t errlen);
int coh_platform_sim_new(const char *dir, struct coh_platform **ret, char *errbuf, size_t errlen);

const char *coh_fd_kind_to_string(enum coh_fd_kind k);

/* pidfd_send_signal(pidfd, SIGKILL): the kill_peer of the in-process platforms. */
int coh_kill_pidfd(struct coh_platform *p, int pidfd);

/* Whether two descriptors are the same open file (kcmp KCMP_FILE): 1, 0, or -errno. */
int coh_same_file(int a, int b);
/*
 * The order kcmp(KCMP_FILE) gives two descriptors of process self (the
 * caller's pid: a descriptor number means nothing without its table):
 * *ret < 0, 0 (the same open file) or > 0. 0 or -errno.
 */
int coh_file_order(pid_t self, int a, int b, int *ret);
