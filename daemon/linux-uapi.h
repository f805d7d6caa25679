/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The bits of the kernel's uapi that the build host's headers may lack.
 * Debian 12 ships linux-libc-dev 6.1: it has KVM_DEV_VFIO_GROUP* but not the
 * 6.6 names KVM_DEV_VFIO_FILE*, and no <linux/iommufd.h> at all. Every
 * definition is guarded, so a newer host's headers win and any mismatch shows
 * up as a redefinition warning rather than a silent divergence.
 *
 * Values checked against include/uapi/linux/{kvm,vfio,iommufd,magic}.h and
 * include/linux/miscdevice.h in the kernel sources.
 */

#include <linux/kvm.h>
#include <linux/magic.h>
#include <linux/types.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

/* kvm.h: the kvm-vfio device attribute group. 6.6 renamed GROUP to FILE
 * when device cdevs became acceptable; the numbers did not change. */
#ifndef KVM_DEV_VFIO_FILE
#define KVM_DEV_VFIO_FILE               1
#endif
#ifndef KVM_DEV_VFIO_FILE_ADD
#define KVM_DEV_VFIO_FILE_ADD           1
#endif
#ifndef KVM_DEV_VFIO_FILE_DEL
#define KVM_DEV_VFIO_FILE_DEL           2
#endif

/* vfio.h: VFIO_CHECK_EXTENSION argument, "the IOMMU domains enforce
 * cache coherency" (DMA_CC). Present since 3.x, guarded for old hosts. */
#ifndef VFIO_DMA_CC_IOMMU
#define VFIO_DMA_CC_IOMMU               4
#endif

/* vfio.h (6.6+, CONFIG_VFIO_DEVICE_CDEV): binds a device cdev
 * (/dev/vfio/devices/vfioX) to an iommufd. Debian 12's linux-libc-dev (6.1)
 * lacks it. Checked against include/uapi/linux/vfio.h of 6.6 and 6.12. */
#ifndef VFIO_DEVICE_BIND_IOMMUFD
struct vfio_device_bind_iommufd {
        __u32 argsz;
        __u32 flags;
        __s32 iommufd;
        __u32 out_devid;
};
#define VFIO_DEVICE_BIND_IOMMUFD        _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif

/* magic.h: f_type of every anon-inode file (kvm-vm, kvm-vcpu, kvm-vfio,
 * eventfd, ...). */
#ifndef ANON_INODE_FS_MAGIC
#define ANON_INODE_FS_MAGIC             0x09041934
#endif

/* include/linux/miscdevice.h is not uapi: the fixed misc minors that
 * identify /dev/kvm and the legacy VFIO container (vfio's own container or
 * iommufd's compat one, both register VFIO_MINOR). /dev/iommu's minor is
 * dynamic. */
#define COH_MISC_MAJOR                  10
#define COH_KVM_MINOR                   232
#define COH_VFIO_MINOR                  196

/* /proc/devices names of the dynamic majors: drivers/vfio/group.c
 * alloc_chrdev_region(..., "vfio") for /dev/vfio/<N> and, since 6.6,
 * drivers/vfio/device_cdev.c alloc_chrdev_region(..., "vfio-dev") for
 * /dev/vfio/devices/vfio<X>. The misc name of iommufd is "iommu"
 * (drivers/iommu/iommufd/main.c iommu_misc_dev). */
#define COH_VFIO_GROUP_CHRDEV_NAME      "vfio"
#define COH_VFIO_DEVICE_CHRDEV_NAME     "vfio-dev"
#define COH_IOMMUFD_MISC_NAME           "iommu"

/* iommufd.h (6.6+): IOMMU_GET_HW_INFO returns the VT-d registers of the
 * IOMMU behind a device bound to an iommufd (ECAP.SC = bit 7), the only
 * coherency hint iommufd gives a user. Debian 12 kernels build no iommufd;
 * kept here so the facts code can compile against it. */
#ifndef IOMMUFD_TYPE
#define IOMMUFD_TYPE                    (';')
#endif
#ifndef IOMMU_GET_HW_INFO
#define IOMMUFD_CMD_GET_HW_INFO         0x8a
enum {
        IOMMU_HW_INFO_TYPE_NONE = 0,
        IOMMU_HW_INFO_TYPE_INTEL_VTD = 1,
};
struct iommu_hw_info_vtd {
        __u32 flags;
        __u32 __reserved;
        __aligned_u64 cap_reg;
        __aligned_u64 ecap_reg;
};
struct iommu_hw_info {
        __u32 size;
        __u32 flags;
        __u32 dev_id;
        __u32 data_len;
        __aligned_u64 data_uptr;
        __u32 out_data_type;
        __u32 __reserved;
        __aligned_u64 out_capabilities;
};
#define IOMMU_GET_HW_INFO               _IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO)
#endif

/* VT-d Extended Capability Register, bit 7: Snoop Control. */
#define COH_VTD_ECAP_SC                 (UINT64_C(1) << 7)
