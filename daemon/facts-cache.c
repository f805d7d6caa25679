/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Device facts kept between requests, dropped on the kernel's uevents (facts-cache.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "facts-cache.h"
#include "util.h"

/* lib/kobject_uevent.c: the kernel's uevents go to multicast group 1
 * (udev's re-broadcasts to group 2, "libudev"). */
#define UEVENT_GROUP_KERNEL 1u

struct facts_entry {
        char slot[COH_SLOT_MAX];
        struct coh_device_facts device;
        struct coh_device_facts *group; /* owned; NULL when the device has no IOMMU group */
        size_t n_group;
};

struct coh_facts_cache {
        int fd;
        enum coh_uevent_kind kind;
        void *entries; /* tsearch() tree of struct facts_entry, by slot */
        size_t n_entries;
};

int coh_facts_cache_new(int fd, enum coh_uevent_kind kind, struct coh_facts_cache **ret) {
        struct coh_facts_cache *c = calloc(1, sizeof *c);
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->fd = fd;
        c->kind = kind;
        *ret = c;
        return 0;
}

static void entry_free(void *p) {
        struct facts_entry *e = p;
        free(e->group);
        free(e);
}

void coh_facts_cache_drop(struct coh_facts_cache *c) {
        if (!c)
                return;
        tdestroy(TAKE_PTR(c->entries), entry_free);
        c->n_entries = 0;
}

void coh_facts_cache_free(struct coh_facts_cache *c) {
        if (!c)
                return;
        coh_facts_cache_drop(c);
        safe_close(c->fd);
        free(c);
}

size_t coh_facts_cache_size(const struct coh_facts_cache *c) {
        return c ? c->n_entries : 0;
}

/*
 * Uevents reach only the network namespaces owned by the initial user
 * namespace (see open_netlink()). A daemon in a user namespace of its own (a
 * container with one) would hear nothing on the socket, and facts kept would
 * never be dropped: then it keeps none. The initial user namespace's inode
 * number is fixed (include/linux/proc_ns.h, PROC_USER_INIT_INO); /proc may be
 * absent, and then nothing is kept either.
 */
#define PROC_USER_INIT_INO 0xEFFFFFFDU
static bool in_initial_user_namespace(void) {
        struct stat st;
        return stat("/proc/self/ns/user", &st) == 0 && st.st_ino == PROC_USER_INIT_INO;
}

static int open_netlink(void) {
        /* Opened at start, before the parser's seccomp filter (which has no
         * bind); the unit's RestrictAddressFamilies= names AF_NETLINK for it.
         * With PrivateNetwork= the daemon is in a network namespace of its
         * own, which still hears the kernel's uevents as long as its user
         * namespace is the initial one (lib/kobject_uevent.c, uevent_net_init()
         * lists only those sockets for uevent_net_broadcast_untagged()): the
         * unit has no PrivateUsers=. Bound (the kernel sends from port 0,
         * which an unbound socket also has: af_netlink.c, do_one_broadcast()
         * skips it). */
        int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
        if (fd < 0)
                return -errno;
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = UEVENT_GROUP_KERNEL };
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int open_fifo(int sysfs_fd) {
        /* O_NONBLOCK: opening a FIFO for reading waits for a writer otherwise. */
        int fd = openat(sysfs_fd, "uevents", O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
                close(fd);
                return -ENOTSUP;
        }
        return fd;
}

struct coh_facts_cache *coh_facts_cache_open(const char *platform_spec, int sysfs_fd) {
        bool linux_ = strcmp(platform_spec, "linux") == 0;
        if (linux_ && !in_initial_user_namespace())
                return NULL;
        int fd = linux_ ? open_netlink() : open_fifo(sysfs_fd);
        struct coh_facts_cache *c = NULL;
        if (fd >= 0)
                (void) coh_facts_cache_new(fd, linux_ ? COH_UEVENT_NETLINK : COH_UEVENT_ANY, &c);
        return c; /* NULL: every request reads sysfs, as without a cache */
}

static const char *env_value(const char *buf, size_t len, const char *key) {
        size_t klen = strlen(key);
        for (size_t i = 0; i < len;) {
                const char *s = buf + i;
                size_t n = strnlen(s, len - i);
                if (n > klen && memcmp(s, key, klen) == 0 && s[klen] == '=')
                        return s + klen + 1;
                i += n + 1;
        }
        return NULL;
}

bool coh_uevent_relevant(const char *buf, size_t len) {
        /* "ACTION@DEVPATH\0ACTION=bind\0DEVPATH=...\0SUBSYSTEM=pci\0SEQNUM=..\0"
         * (lib/kobject_uevent.c, kobject_uevent_env()); udev's own format
         * starts with "libudev" and never reaches group 1. */
        if (len == 0 || memchr(buf, 0, len) == NULL || !strchr(buf, '@'))
                return true;
        const char *subsystem = env_value(buf, len, "SUBSYSTEM");
        if (!subsystem || memchr(subsystem, 0, len - (size_t) (subsystem - buf)) == NULL)
                return true;
        /* pci: bind, unbind, add, remove, change of a function (and with
         * them its IOMMU group: a device joins a group as it is added,
         * iommu_probe_device() from the bus notifier, before its "add");
         * vfio: group devices come and go with vfio-pci's bind; iommu: a
         * unit (its capabilities) appearing. */
        return strcmp(subsystem, "pci") == 0 || strcmp(subsystem, "vfio") == 0 ||
               strcmp(subsystem, "iommu") == 0;
}

/* Reads everything the source has: 1 when an entry may be stale, 0 when not. */
static int drain(struct coh_facts_cache *c) {
        char buf[8192];
        int stale = 0;
        for (;;) {
                ssize_t n = read(c->fd, buf, sizeof buf);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return stale;
                        /* ENOBUFS: the socket's buffer overflowed and some
                         * uevents are lost (af_netlink.c, netlink_overrun()):
                         * anything may have changed. Read on. */
                        if (errno == ENOBUFS) {
                                stale = 1;
                                continue;
                        }
                        return -errno;
                }
                if (n == 0) /* the FIFO has no writer now */
                        return stale;
                if (c->kind == COH_UEVENT_ANY || (size_t) n == sizeof buf || coh_uevent_relevant(buf, (size_t) n))
                        stale = 1;
        }
}

static int cmp_entry(const void *a, const void *b) {
        return strcmp(((const struct facts_entry *) a)->slot, ((const struct facts_entry *) b)->slot);
}

static int read_facts(int sysfs_fd, const char *slot, struct coh_device_facts *device, struct coh_device_facts **group,
                      size_t *n_group, int *group_error) {
        *group = NULL;
        *n_group = 0;
        *group_error = 0;
        int r = coh_facts_read_device(sysfs_fd, slot, device);
        if (r < 0)
                return r;
        if (device->iommu_group >= 0)
                *group_error = coh_facts_read_group(sysfs_fd, device->iommu_group, group, n_group);
        return 0;
}

int coh_facts_cache_read(struct coh_facts_cache *c, int sysfs_fd, const char *slot, struct coh_device_facts *device,
                         struct coh_device_facts **group, size_t *n_group, int *group_error) {
        if (!c || c->fd < 0)
                return read_facts(sysfs_fd, slot, device, group, n_group, group_error);
        int r = drain(c);
        if (r != 0)
                coh_facts_cache_drop(c);
        if (r < 0) {
                /* The source is broken: nothing can be kept from now on. */
                c->fd = safe_close(c->fd);
                return read_facts(sysfs_fd, slot, device, group, n_group, group_error);
        }

        struct facts_entry key;
        if (!coh_slot_valid(slot))
                return -EINVAL;
        strcpy(key.slot, slot);
        struct facts_entry **found = tfind(&key, &c->entries, cmp_entry);
        if (found) {
                struct facts_entry *e = *found;
                *device = e->device;
                *group = NULL;
                *n_group = e->n_group;
                *group_error = 0;
                if (e->n_group > 0) {
                        *group = reallocarray(NULL, e->n_group, sizeof **group);
                        if (!*group)
                                return -ENOMEM;
                        memcpy(*group, e->group, e->n_group * sizeof **group);
                }
                return 0;
        }

        r = read_facts(sysfs_fd, slot, device, group, n_group, group_error);
        if (r < 0 || *group_error < 0)
                return r; /* errors are not kept: the next request reads again */
        struct facts_entry *e = calloc(1, sizeof *e);
        if (!e)
                return 0; /* answered all the same, just not kept */
        strcpy(e->slot, slot);
        e->device = *device;
        e->n_group = *n_group;
        if (*n_group > 0) {
                e->group = reallocarray(NULL, *n_group, sizeof *e->group);
                if (!e->group) {
                        free(e);
                        return 0;
                }
                memcpy(e->group, *group, *n_group * sizeof *e->group);
        }
        found = tsearch(e, &c->entries, cmp_entry);
        if (!found || *found != e)
                entry_free(e);
        else
                c->n_entries++;
        return 0;
}
