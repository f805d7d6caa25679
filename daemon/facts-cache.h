/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The facts of devices asked about, kept between requests (facts.h reads
 * them from sysfs: about 30 system calls for a device and its group) and
 * dropped whenever the kernel says a device changed: a driver bound or
 * unbound, a device added or removed (which is also how a device changes
 * IOMMU group), on a uevent source the platform opened:
 *
 *   linux  a NETLINK_KOBJECT_UEVENT socket bound to the kernel's group 1
 *          (lib/kobject_uevent.c): any uevent of subsystem pci, vfio or
 *          iommu, or that does not parse, drops every entry; so does
 *          ENOBUFS (the socket overflowed: something may be missed).
 *   sim    a FIFO "uevents" at the top of the simulated tree: whatever is
 *          written to it drops every entry (tests and demo/ write a line
 *          after they change the tree under a running daemon).
 *
 * The source is drained (recv with MSG_DONTWAIT, one call when nothing
 * came) before each lookup, so a uevent the kernel queued before a request
 * was read is seen by that request. Without a source nothing is cached.
 * The privileged helper checks the device again at custody time (its
 * group, its driver) whatever the cache said.
 */

#include <stdbool.h>
#include <stddef.h>

#include "facts.h"

enum coh_uevent_kind {
        COH_UEVENT_NETLINK, /* kernel uevent datagrams, parsed */
        COH_UEVENT_ANY,     /* any byte drops everything (the simulated platform's FIFO) */
};

struct coh_facts_cache;

/* Takes fd (closed on failure too). */
int coh_facts_cache_new(int fd, enum coh_uevent_kind kind, struct coh_facts_cache **ret);
void coh_facts_cache_free(struct coh_facts_cache *c);

/* The source for the platform: "linux" the uevent netlink socket, "sim:DIR"
 * DIR/uevents when it is a FIFO. NULL (nothing cached) when there is none. */
struct coh_facts_cache *coh_facts_cache_open(const char *platform_spec, int sysfs_fd);

/*
 * The device's facts and, when it has an IOMMU group, every device of that
 * group (*group, sorted by slot, allocated; NULL and 0 without a group), as
 * coh_facts_read_device() and coh_facts_read_group() would read them now. c
 * may be NULL: then they are read. Errors as those functions'; -ENOENT of
 * the group is returned as *group_error with the device's facts.
 */
int coh_facts_cache_read(struct coh_facts_cache *c, int sysfs_fd, const char *slot, struct coh_device_facts *device,
                         struct coh_device_facts **group, size_t *n_group, int *group_error);

/* Drops every entry. */
void coh_facts_cache_drop(struct coh_facts_cache *c);

/* Whether one uevent datagram (netlink) says a device the facts depend on
 * may have changed: pci, vfio or iommu, or anything that does not parse. */
bool coh_uevent_relevant(const char *buf, size_t len);

/* Entries held now; lookups answered without sysfs so far (tests). */
size_t coh_facts_cache_size(const struct coh_facts_cache *c);
