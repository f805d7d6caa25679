/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Facts about PCI devices and IOMMUs, read from a sysfs tree whose root is a
 * directory descriptor: "/sys" on a real host, a directory of plain files on
 * the simulated platform. The same code serves both.
 *
 * Layout read (relative to the root):
 *   bus/pci/devices/<slot>/{vendor,device,class}        "0x8086\n"
 *   bus/pci/devices/<slot>/driver        -> .../drivers/<name>   (optional)
 *   bus/pci/devices/<slot>/iommu_group   -> .../iommu_groups/<N> (optional)
 *   bus/pci/devices/<slot>/iommu         -> .../iommu/<unit>     (optional)
 *   kernel/iommu_groups/<N>/devices/<slot>
 *   class/iommu/<unit>/intel-iommu/ecap  hex, SC = bit 7
 *   class/iommu/<unit>/amd-iommu/        AMD-Vi: always enforces
 *   uevents                              sim only: a FIFO, the kernel's uevents (facts-cache.h)
 */

#include <stdbool.h>
#include <stddef.h>

#define COH_SLOT_MAX 32
#define COH_NAME_MAX 64

enum coh_iommu_type {
        COH_IOMMU_NONE,      /* no iommu link: nothing can enforce */
        COH_IOMMU_INTEL,     /* VT-d: enforces when ECAP.SC is set */
        COH_IOMMU_AMD,       /* AMD-Vi: always enforces */
        COH_IOMMU_UNKNOWN,   /* SMMU and anything else: treated as not enforcing */
};

struct coh_device_facts {
        char slot[COH_SLOT_MAX];      /* "0000:00:03.0" */
        char vendor[8];               /* "0x8086" */
        char device[8];               /* "0x11e8" */
        char class[10];               /* "0x00ff00" */
        char driver[COH_NAME_MAX];    /* "" when unbound */
        char iommu[COH_NAME_MAX];     /* "dmar0", "" when none */
        int iommu_group;              /* -1 when none */
        enum coh_iommu_type iommu_type;
        bool iommu_enforces;
};

struct coh_iommu_facts {
        char name[COH_NAME_MAX];
        enum coh_iommu_type type;
        bool enforces;
};

const char *coh_iommu_type_to_string(enum coh_iommu_type t);

/* -ENOENT when the slot does not exist, -EINVAL when a slot name or file is malformed. */
int coh_facts_read_device(int sysfs_fd, const char *slot, struct coh_device_facts *ret);
/*
 * Only what custody needs, in two reads: the slot, its driver and its IOMMU group
 * (-1 when none); the other facts are left zero. -ENOENT when the slot does not
 * exist. The privileged helper checks a custody request with it.
 */
int coh_facts_read_binding(int sysfs_fd, const char *slot, struct coh_device_facts *ret);
/* All devices of IOMMU group `group`, sorted by slot. -ENOENT when there is no such group. */
int coh_facts_read_group(int sysfs_fd, int group, struct coh_device_facts **ret, size_t *ret_n);
/* Every IOMMU unit under class/iommu, sorted by name. */
int coh_facts_read_iommus(int sysfs_fd, struct coh_iommu_facts **ret, size_t *ret_n);
/* Whether slot is a well-formed PCI address "DDDD:BB:DD.F" (no path tricks). */
bool coh_slot_valid(const char *slot);
