/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Facts from sysfs, relative to a root directory descriptor so that the same
 * code reads /sys on a host and a directory of files on the simulated
 * platform. Every path is built from validated components (slot names,
 * numbers), and opened with openat() below the root, never from client strings.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "facts.h"

const char *coh_iommu_type_to_string(enum coh_iommu_type t) {
        switch (t) {
        case COH_IOMMU_NONE:
                return "none";
        case COH_IOMMU_INTEL:
                return "intel-iommu";
        case COH_IOMMU_AMD:
                return "amd-iommu";
        case COH_IOMMU_UNKNOWN:
        default:
                return "unknown";
        }
}

bool coh_slot_valid(const char *slot) {
        /* DDDD:BB:DD.F, lowercase hex, exactly as sysfs names devices. */
        static const char pattern[] = "xxxx:xx:xx.x";
        if (!slot || strlen(slot) != sizeof pattern - 1)
                return false;
        for (size_t i = 0; pattern[i]; i++) {
                char c = slot[i];
                if (pattern[i] != 'x') {
                        if (c != pattern[i])
                                return false;
                } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return false;
        }
        return slot[11] >= '0' && slot[11] <= '7';
}

/* Reads a small attribute file into buf, without the trailing newline. */
static int read_attr(int dirfd, const char *path, char *buf, size_t size) {
        int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, size - 1);
        int r = n < 0 ? -errno : 0;
        close(fd);
        if (r < 0)
                return r;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        return 0;
}

/* The last path component of a symlink's target ("driver" -> ".../vfio-pci"). */
static int read_link_name(int dirfd, const char *path, char *buf, size_t size) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(dirfd, path, target, sizeof target - 1);
        if (n < 0)
                return -errno;
        target[n] = 0;
        const char *base = strrchr(target, '/');
        base = base ? base + 1 : target;
        if (strlen(base) >= size || !*base)
                return -EINVAL;
        strcpy(buf, base);
        return 0;
}

/* A sysfs hex attribute such as "0x8086": kept as the kernel prints it, checked to be hex. */
static int read_hex_attr(int dirfd, const char *path, char *buf, size_t size) {
        int r = read_attr(dirfd, path, buf, size);
        if (r < 0)
                return r;
        if (strncmp(buf, "0x", 2) != 0 || !buf[2] || buf[2 + strspn(buf + 2, "0123456789abcdefABCDEF")])
                return -EINVAL;
        return 0;
}

static int parse_uint(const char *s, int *ret) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < 0 || v > INT_MAX)
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

static int read_iommu(int sysfs_fd, const char *name, struct coh_iommu_facts *ret) {
        char path[PATH_MAX], ecap[64];

        if (strlen(name) >= sizeof ret->name || strchr(name, '/') || name[0] == '.')
                return -EINVAL;
        memset(ret, 0, sizeof *ret);
        strcpy(ret->name, name);

        snprintf(path, sizeof path, "class/iommu/%s/intel-iommu/ecap", name);
        int r = read_attr(sysfs_fd, path, ecap, sizeof ecap);
        if (r >= 0) {
                char *end;
                errno = 0;
                unsigned long long v = strtoull(ecap, &end, 16);
                if (errno || end == ecap || *end)
                        return -EINVAL;
                ret->type = COH_IOMMU_INTEL;
                ret->enforces = v & (1ull << 7); /* ECAP.SC: snoop control */
                return 0;
        }
        if (r != -ENOENT)
                return r;

        snprintf(path, sizeof path, "class/iommu/%s/amd-iommu", name);
        if (faccessat(sysfs_fd, path, F_OK, 0) == 0) {
                /* AMD-Vi always honours IOMMU_CACHE (amd_iommu_capable). */
                ret->type = COH_IOMMU_AMD;
                ret->enforces = true;
                return 0;
        }
        /* ARM SMMU and anything we do not know: do not claim enforcement. */
        ret->type = COH_IOMMU_UNKNOWN;
        ret->enforces = false;
        return 0;
}

int coh_facts_read_binding(int sysfs_fd, const char *slot, struct coh_device_facts *ret) {
        char path[128], name[COH_NAME_MAX];
        int r;

        if (!coh_slot_valid(slot))
                return -EINVAL;
        memset(ret, 0, sizeof *ret);
        strcpy(ret->slot, slot);
        ret->iommu_group = -1;

        snprintf(path, sizeof path, "bus/pci/devices/%s/driver", slot);
        r = read_link_name(sysfs_fd, path, ret->driver, sizeof ret->driver);
        if (r == -ENOENT) {
                /* No driver, or no device: only the slow path tells them apart. */
                snprintf(path, sizeof path, "bus/pci/devices/%s", slot);
                return faccessat(sysfs_fd, path, F_OK, 0) < 0 ? -errno : 0;
        }
        if (r < 0)
                return r;

        snprintf(path, sizeof path, "bus/pci/devices/%s/iommu_group", slot);
        r = read_link_name(sysfs_fd, path, name, sizeof name);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        return parse_uint(name, &ret->iommu_group);
}

int coh_facts_read_device(int sysfs_fd, const char *slot, struct coh_device_facts *ret) {
        char dir[64], path[128];
        int r;

        /* The slot checked, its driver and group first: what custody needs, all of it read alike. */
        r = coh_facts_read_binding(sysfs_fd, slot, ret);
        if (r < 0)
                return r;
        snprintf(dir, sizeof dir, "bus/pci/devices/%s", slot);

        snprintf(path, sizeof path, "%s/vendor", dir);
        r = read_hex_attr(sysfs_fd, path, ret->vendor, sizeof ret->vendor);
        if (r < 0)
                return r;
        snprintf(path, sizeof path, "%s/device", dir);
        r = read_hex_attr(sysfs_fd, path, ret->device, sizeof ret->device);
        if (r < 0)
                return r;
        snprintf(path, sizeof path, "%s/class", dir);
        r = read_hex_attr(sysfs_fd, path, ret->class, sizeof ret->class);
        if (r < 0)
                return r;

        snprintf(path, sizeof path, "%s/iommu", dir);
        r = read_link_name(sysfs_fd, path, ret->iommu, sizeof ret->iommu);
        if (r == -ENOENT) {
                ret->iommu_type = COH_IOMMU_NONE;
                ret->iommu_enforces = false;
                return 0;
        }
        if (r < 0)
                return r;

        struct coh_iommu_facts iommu;
        r = read_iommu(sysfs_fd, ret->iommu, &iommu);
        if (r < 0)
                return r;
        ret->iommu_type = iommu.type;
        ret->iommu_enforces = iommu.enforces;
        return 0;
}

static void free_names(char **names, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

static int cmp_name(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The names in directory `path` below the root, without dot entries, sorted. */
static int list_dir(int sysfs_fd, const char *path, char ***ret, size_t *ret_n) {
        char **names = NULL;
        size_t n = 0;
        int r = 0;

        int fd = openat(sysfs_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                r = -errno;
                close(fd);
                return r;
        }
        struct dirent *de;
        while ((errno = 0, de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char **grown = reallocarray(names, n + 1, sizeof *names);
                if (!grown || !(grown[n] = strdup(de->d_name))) {
                        names = grown ?: names;
                        r = -ENOMEM;
                        break;
                }
                names = grown;
                n++;
        }
        if (r == 0 && errno)
                r = -errno;
        closedir(d);
        if (r < 0) {
                free_names(names, n);
                return r;
        }
        if (n > 0)
                qsort(names, n, sizeof *names, cmp_name);
        *ret = names;
        *ret_n = n;
        return 0;
}

int coh_facts_read_group(int sysfs_fd, int group, struct coh_device_facts **ret, size_t *ret_n) {
        char path[64], **names;
        struct coh_device_facts *devices = NULL;
        size_t n_names, n = 0;
        int r;

        if (group < 0)
                return -EINVAL;
        snprintf(path, sizeof path, "kernel/iommu_groups/%d/devices", group);
        r = list_dir(sysfs_fd, path, &names, &n_names);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_names; i++) {
                if (!coh_slot_valid(names[i])) /* nothing but PCI functions is ours */
                        continue;
                struct coh_device_facts *grown = reallocarray(devices, n + 1, sizeof *devices);
                if (!grown) {
                        r = -ENOMEM;
                        break;
                }
                devices = grown;
                r = coh_facts_read_device(sysfs_fd, names[i], &devices[n]);
                if (r < 0)
                        break;
                n++;
        }
        free_names(names, n_names);
        if (r >= 0 && n == 0)
                r = -ENOENT;
        if (r < 0) {
                free(devices);
                return r;
        }
        *ret = devices; /* sorted by slot, as the names were */
        *ret_n = n;
        return 0;
}

int coh_facts_read_iommus(int sysfs_fd, struct coh_iommu_facts **ret, size_t *ret_n) {
        struct coh_iommu_facts *units = NULL;
        char **names;
        size_t n_names;
        int r;

        r = list_dir(sysfs_fd, "class/iommu", &names, &n_names);
        if (r == -ENOENT) { /* no IOMMU at all */
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (r < 0)
                return r;
        if (n_names > 0 && !(units = calloc(n_names, sizeof *units)))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n_names; i++)
                r = read_iommu(sysfs_fd, names[i], &units[i]);
        free_names(names, n_names);
        if (r < 0) {
                free(units);
                return r;
        }
        *ret = units;
        *ret_n = n_names;
        return 0;
}
