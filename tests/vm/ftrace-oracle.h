/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The vm tier's oracle for "did KVM really turn WBINVD emulation on": no uapi
 * says so, but the function tracer sees KVM register and unregister
 * non-coherent DMA. The guest's init sets the filter to these two symbols
 * (and kvm_vfio_release) and the tracer to "function".
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NONCOHERENT_REGISTER "kvm_arch_register_noncoherent_dma"
#define NONCOHERENT_UNREGISTER "kvm_arch_unregister_noncoherent_dma"

/* Lines of the trace that name fn as the traced function, or -errno. */
static inline int ftrace_count(const char *tracefs, const char *fn) {
        char path[256], line[512], needle[128];
        FILE *f;
        int n = 0;

        snprintf(path, sizeof path, "%s/trace", tracefs);
        snprintf(needle, sizeof needle, ": %s <-", fn);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f))
                if (line[0] != '#' && strstr(line, needle))
                        n++;
        fclose(f);
        return n;
}

/* Empties the trace buffer (opening "trace" with O_TRUNC does that). */
static inline void ftrace_clear(const char *tracefs) {
        char path[256];
        int fd;

        snprintf(path, sizeof path, "%s/trace", tracefs);
        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd >= 0)
                close(fd);
}
