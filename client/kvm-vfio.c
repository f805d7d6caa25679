/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The VMM's kvm-vfio device: only the process that created a VM may create
 * its kvm-vfio device and add files to it (KVM checks kvm->mm on every
 * ioctl), so this is the VMM's half of custody. coherencyd decides and hands
 * the group over; this adds it, or not, as the grant's kvmAttach says.
 *
 * On coherencyd's simulated platform the VM is a memfd named
 * "coherencyd-sim:kvm-vm" and this file is the simulated KVM. It keeps the
 * VM's kvm-vfio state as text in that memfd, which tests and the demo read
 * as their oracle:
 *
 *   kvm-vfio=vmm                         the VM has a kvm-vfio device
 *   attached=vfio-group:7 noncoherent    one line per file on the device
 *   noncoherent-dma=1                    files not enforced-coherent: WBINVD
 *                                        emulation is on while this is > 0
 *
 * A file is "noncoherent" iff its grant's wbinvd is "allowed". Adding a
 * file already there is -EEXIST, deleting one not there -ENOENT, and closing
 * the device models Linux >= 6.2 (kvm_vfio_release): its files are dropped.
 *
 * Like KVM, which holds a reference to each added file, the object keeps a
 * duplicate of each file while it is added, so the group stays busy (and the
 * grant "ending") until the file is deleted or the device closed.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libcoherency.h"

#define _public_ __attribute__((visibility("default")))

/* Linux 6.5 renamed the group attribute to "file" (same numbers): build with older headers too. */
#ifndef KVM_DEV_VFIO_FILE
#define KVM_DEV_VFIO_FILE KVM_DEV_VFIO_GROUP
#define KVM_DEV_VFIO_FILE_ADD KVM_DEV_VFIO_GROUP_ADD
#define KVM_DEV_VFIO_FILE_DEL KVM_DEV_VFIO_GROUP_DEL
#endif

#define SIM_VM_NAME "coherencyd-sim:kvm-vm"
#define SIM_STATE_MAX (1024u * 1024u)

struct attached {
        char *file;             /* "vfio-group:7" */
        int fd;                 /* our duplicate of the file, while it is added */
        bool noncoherent;
};

struct coherency_kvm_vfio {
        int fd;                 /* the kvm-vfio device (simulated: a memfd of its own) */
        int vm;                 /* simulated only: our duplicate of the VM memfd; else -1 */
        bool sim;
        struct attached *files;
        size_t n_files;
};

static void safe_close(int fd) {
        if (fd >= 0)
                (void) close(fd);
}

/* The kernel's word that this is a memfd (F_GET_SEALS), then its name. */
static bool is_sim_vm(int fd) {
        static const char expected[] = "/memfd:" SIM_VM_NAME " (deleted)";
        char proc[64], target[sizeof(expected) + 1];
        ssize_t n;

        if (fcntl(fd, F_GET_SEALS) < 0)
                return false;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        n = readlink(proc, target, sizeof(target));
        return n == (ssize_t) (sizeof(expected) - 1) && memcmp(target, expected, (size_t) n) == 0;
}

/* ---- the simulated KVM's state in the VM memfd ------------------------------------ */

enum sim_op {
        SIM_CREATE,     /* the device exists */
        SIM_ADD,
        SIM_DEL,
        SIM_CLOSE,      /* the device's files are dropped */
};

static int sim_read(int vm, char **ret, size_t *ret_len) {
        size_t cap = 4096, len = 0;
        char *buf = malloc(cap + 1);

        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n;

                if (len == cap) {
                        char *b;

                        if (cap >= SIM_STATE_MAX) {
                                free(buf);
                                return -EFBIG;
                        }
                        cap *= 2;
                        b = realloc(buf, cap + 1);
                        if (!b) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = b;
                }
                n = pread(vm, buf + len, cap - len, (off_t) len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        n = -errno;
                        free(buf);
                        return (int) n;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        buf[len] = '\0';
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int sim_write(int vm, const char *text, size_t len) {
        size_t off = 0;

        while (off < len) {
                ssize_t n = pwrite(vm, text + off, len - off, (off_t) off);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                off += (size_t) n;
        }
        if (ftruncate(vm, (off_t) len) < 0)
                return -errno;
        return 0;
}

static bool line_is(const char *line, size_t len, const char *prefix) {
        size_t l = strlen(prefix);

        return len >= l && memcmp(line, prefix, l) == 0;
}

/*
 * Applies op to the VM's state and rewrites it: "kvm-vfio=" first, lines we
 * do not know next, then the attached files, then "noncoherent-dma=N".
 */
static int sim_update(int vm, enum sim_op op, const char *file, bool noncoherent) {
        char *text = NULL, *device = NULL, *others = NULL, *attached = NULL, *out = NULL;
        size_t len, others_len = 0, attached_len = 0, out_len = 0, file_len = file ? strlen(file) : 0;
        FILE *fo = NULL, *fa = NULL, *f = NULL;
        unsigned n_noncoherent = 0;
        bool found = false;
        int r;

        r = sim_read(vm, &text, &len);
        if (r < 0)
                return r;

        fo = open_memstream(&others, &others_len);
        fa = open_memstream(&attached, &attached_len);
        if (!fo || !fa) {
                r = -ENOMEM;
                goto finish;
        }

        for (char *line = text; *line; ) {
                size_t l = strcspn(line, "\n");
                char *next = line + l + (line[l] == '\n');

                if (line_is(line, l, "kvm-vfio=")) {
                        if (!device) {
                                device = strndup(line, l);
                                if (!device) {
                                        r = -ENOMEM;
                                        goto finish;
                                }
                        }
                } else if (line_is(line, l, "attached=")) {
                        const char *name = line + strlen("attached="), *mode;
                        size_t name_len = strcspn(name, " \n");
                        bool same = file && name_len == file_len && memcmp(name, file, file_len) == 0;

                        mode = name + name_len;
                        if (same)
                                found = true;
                        /* Closing drops every file; deleting drops that one. */
                        if (op != SIM_CLOSE && !(op == SIM_DEL && same)) {
                                fprintf(fa, "%.*s\n", (int) l, line);
                                if (line_is(mode, l - (size_t) (mode - line), " noncoherent"))
                                        n_noncoherent++;
                        }
                } else if (l > 0 && !line_is(line, l, "noncoherent-dma="))
                        fprintf(fo, "%.*s\n", (int) l, line);
                line = next;
        }

        if (op == SIM_ADD && found) {
                r = -EEXIST;
                goto finish;
        }
        if (op == SIM_DEL && !found) {
                r = -ENOENT;
                goto finish;
        }
        if (op == SIM_ADD) {
                fprintf(fa, "attached=%s %s\n", file, noncoherent ? "noncoherent" : "coherent");
                if (noncoherent)
                        n_noncoherent++;
        }

        r = fclose(fo);
        fo = NULL;
        if (r >= 0)
                r = fclose(fa);
        fa = NULL;
        if (r < 0) {
                r = -ENOMEM;
                goto finish;
        }

        f = open_memstream(&out, &out_len);
        if (!f) {
                r = -ENOMEM;
                goto finish;
        }
        if (device)
                fprintf(f, "%s\n", device);
        else if (op == SIM_CREATE)
                fputs("kvm-vfio=vmm\n", f);
        fputs(others ?: "", f);
        fputs(attached ?: "", f);
        fprintf(f, "noncoherent-dma=%u\n", n_noncoherent);
        r = fclose(f);
        f = NULL;
        if (r < 0) {
                r = -ENOMEM;
                goto finish;
        }

        r = sim_write(vm, out, out_len);

finish:
        if (fo)
                (void) fclose(fo);
        if (fa)
                (void) fclose(fa);
        if (f)
                (void) fclose(f);
        free(device);
        free(others);
        free(attached);
        free(out);
        free(text);
        return r;
}

/* ---- the object --------------------------------------------------------------------- */

_public_ int coherency_kvm_vfio_new(int vm_fd, int kvm_vfio_fd, coherency_kvm_vfio **ret) {
        struct coherency_kvm_vfio *k;
        int r;

        if (!ret)
                return -EINVAL;
        if (vm_fd < 0 || fcntl(vm_fd, F_GETFD) < 0)
                return -EBADF;
        if (kvm_vfio_fd != -1 && (kvm_vfio_fd < 0 || fcntl(kvm_vfio_fd, F_GETFD) < 0))
                return -EBADF;

        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->fd = k->vm = -1;
        k->sim = is_sim_vm(vm_fd);

        if (k->sim) {
                k->vm = fcntl(vm_fd, F_DUPFD_CLOEXEC, 3);
                if (k->vm < 0) {
                        r = -errno;
                        goto fail;
                }
                if (kvm_vfio_fd == -1) {
                        /* Something to poll, dup and close, as the real device descriptor is. */
                        k->fd = memfd_create("coherencyd-sim:kvm-vfio", MFD_CLOEXEC);
                        if (k->fd < 0) {
                                r = -errno;
                                goto fail;
                        }
                }
                r = sim_update(k->vm, SIM_CREATE, NULL, false);
                if (r < 0)
                        goto fail;
        } else if (kvm_vfio_fd == -1) {
                struct kvm_create_device cd = {
                        .type = KVM_DEV_TYPE_VFIO,
                };

                /* KVM makes the descriptor O_CLOEXEC itself. */
                if (ioctl(vm_fd, KVM_CREATE_DEVICE, &cd) < 0) {
                        r = -errno;
                        goto fail;
                }
                k->fd = (int) cd.fd;
        }

        if (kvm_vfio_fd != -1)
                /* Taken only now: on failure it stays the caller's. */
                k->fd = kvm_vfio_fd;
        *ret = k;
        return 0;

fail:
        safe_close(k->fd);
        safe_close(k->vm);
        free(k);
        return r;
}

static int kvm_file_op(struct coherency_kvm_vfio *k, uint64_t op, int fd) {
        int32_t file = fd;
        struct kvm_device_attr attr = {
                .group = KVM_DEV_VFIO_FILE,
                .attr = op,
                .addr = (uint64_t) (uintptr_t) &file,
        };

        if (ioctl(k->fd, KVM_SET_DEVICE_ATTR, &attr) < 0)
                return -errno;
        return 0;
}

static void attached_remove(struct coherency_kvm_vfio *k, size_t i) {
        safe_close(k->files[i].fd);
        free(k->files[i].file);
        memmove(k->files + i, k->files + i + 1, (k->n_files - i - 1) * sizeof(*k->files));
        k->n_files--;
}

_public_ coherency_kvm_vfio *coherency_kvm_vfio_free(coherency_kvm_vfio *k) {
        if (!k)
                return NULL;

        /* Before Linux 6.2 closing the device kept its files registered until
         * the VM went away: delete them one by one, so that every kernel ends
         * up where 6.2 does. */
        if (!k->sim)
                for (size_t i = 0; i < k->n_files; i++)
                        (void) kvm_file_op(k, KVM_DEV_VFIO_FILE_DEL, k->files[i].fd);
        while (k->n_files > 0)
                attached_remove(k, k->n_files - 1);
        free(k->files);

        if (k->sim)
                (void) sim_update(k->vm, SIM_CLOSE, NULL, false);
        safe_close(k->fd);
        safe_close(k->vm);
        free(k);
        return NULL;
}

_public_ int coherency_kvm_vfio_get_fd(const coherency_kvm_vfio *k) {
        return k ? k->fd : -EINVAL;
}

_public_ bool coherency_kvm_vfio_is_simulated(const coherency_kvm_vfio *k) {
        return k && k->sim;
}

static ssize_t attached_find(const struct coherency_kvm_vfio *k, const char *file) {
        for (size_t i = 0; i < k->n_files; i++)
                if (strcmp(k->files[i].file, file) == 0)
                        return (ssize_t) i;
        return -1;
}

_public_ int coherency_kvm_vfio_attach(coherency_kvm_vfio *k, const coherency_grant *g) {
        const char *file, *wbinvd;
        struct attached *a;
        bool noncoherent;
        int fd, copy, r;

        if (!k || !g)
                return -EINVAL;

        switch (coherency_grant_get_kvm_attach(g)) {
        case COHERENCY_KVM_ATTACH_ADD:
                break;
        case COHERENCY_KVM_ATTACH_SKIP:
                return 0;
        default:
                return -ENODATA;
        }

        fd = coherency_grant_get_group_fd(g);
        if (fd < 0)
                return -ENODATA;
        file = coherency_facts_get_file(coherency_grant_get_facts(g));
        if (!file || !file[0])
                return -EINVAL;
        if (attached_find(k, file) >= 0)
                return -EEXIST;
        wbinvd = coherency_grant_get_wbinvd(g);
        noncoherent = wbinvd && strcmp(wbinvd, "allowed") == 0;

        a = reallocarray(k->files, k->n_files + 1, sizeof(*k->files));
        if (!a)
                return -ENOMEM;
        k->files = a;
        a = k->files + k->n_files;
        *a = (struct attached) {
                .file = strdup(file),
                .noncoherent = noncoherent,
        };
        if (!a->file)
                return -ENOMEM;

        /* Our own reference, as KVM keeps one: the grant may be freed, its
         * descriptor taken and closed, and detach still finds the file. */
        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0) {
                r = -errno;
                free(a->file);
                return r;
        }

        if (k->sim)
                r = sim_update(k->vm, SIM_ADD, file, noncoherent);
        else
                r = kvm_file_op(k, KVM_DEV_VFIO_FILE_ADD, copy);
        if (r < 0) {
                safe_close(copy);
                free(a->file);
                return r;
        }

        a->fd = copy;
        k->n_files++;
        return 1;
}

_public_ int coherency_kvm_vfio_detach_file(coherency_kvm_vfio *k, const char *file) {
        ssize_t i;
        int r;

        if (!k || !file)
                return -EINVAL;

        i = attached_find(k, file);
        if (i < 0)
                return -ENOENT;

        if (k->sim)
                r = sim_update(k->vm, SIM_DEL, file, false);
        else
                r = kvm_file_op(k, KVM_DEV_VFIO_FILE_DEL, k->files[i].fd);
        /* -ENOENT: the device no longer has it, so neither do we. */
        if (r < 0 && r != -ENOENT)
                return r;

        attached_remove(k, (size_t) i);
        return r < 0 ? r : 1;
}

_public_ int coherency_kvm_vfio_detach(coherency_kvm_vfio *k, const coherency_grant *g) {
        const char *file;

        if (!k || !g)
                return -EINVAL;
        /* Nothing was added for a "skip" grant or a refusal: nothing to undo. */
        if (coherency_grant_get_kvm_attach(g) != COHERENCY_KVM_ATTACH_ADD)
                return 0;
        file = coherency_facts_get_file(coherency_grant_get_facts(g));
        if (!file || !file[0])
                return -EINVAL;
        return coherency_kvm_vfio_detach_file(k, file);
}
