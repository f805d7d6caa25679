/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The client side of coherencyd's simulated platform (DESIGN.md §8), for the
 * sample VMM, the bench and the tests: the objects a VMM makes are memfds
 * named "coherencyd-sim:<object>" ("kvm-vm", "vfio-container:coherent", ...),
 * and libcoherency's attach helper, playing KVM, records in the VM memfd what
 * it added, one line each: "kvm-vfio=vmm", "attached=vfio-group:7
 * noncoherent", "noncoherent-dma=N". Header only: nothing here is part of
 * libcoherency's ABI.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define COH_SIM_PREFIX "coherencyd-sim:"

/* A simulated kernel object: -errno on failure. Sealing allowed: the daemon
 * asks F_GET_SEALS to know a memfd for one. */
static inline int coh_sim_object(const char *object) {
        char name[160];
        snprintf(name, sizeof name, COH_SIM_PREFIX "%s", object);
        int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        return fd < 0 ? -errno : fd;
}

/* What the simulated KVM recorded in the VM memfd. */
struct coh_sim_vm_state {
        char owner[16];         /* "vmm" while a kvm-vfio device exists, "" when none */
        unsigned attached;      /* "attached=" lines */
        long noncoherent_dma;   /* -1 when the line is absent */
};

static inline int coh_sim_vm_read(int vm, struct coh_sim_vm_state *ret) {
        char buf[8192], *line, *save = NULL;
        ssize_t n = pread(vm, buf, sizeof buf - 1, 0);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        *ret = (struct coh_sim_vm_state) { .noncoherent_dma = -1 };
        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                if (strncmp(line, "noncoherent-dma=", 16) == 0)
                        ret->noncoherent_dma = strtol(line + 16, NULL, 10);
                else if (strncmp(line, "attached=", 9) == 0)
                        ret->attached++;
                else if (strncmp(line, "kvm-vfio=", 9) == 0)
                        snprintf(ret->owner, sizeof ret->owner, "%s", line + 9);
        return 0;
}
