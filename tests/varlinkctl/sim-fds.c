/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * sim-fds OBJECT... -- COMMAND [ARG...]
 *
 * Runs COMMAND with one simulated kernel object per OBJECT ("kvm-vm",
 * "vfio-container:noncoherent", ...; client/sim-objects.h) open at
 * descriptors 3, 4, ... in the order given, the way the sample VMM makes
 * them. A shell cannot make a memfd, and the simulated platform knows its
 * objects by their memfd names, so this stands where a VMM's /dev/kvm VM and
 * VFIO container would: `sim-fds kvm-vm vfio-container:noncoherent --
 * varlinkctl call --push-fd=3 --push-fd=4 ...`. Exits 127 when COMMAND cannot
 * be run, 125 on a bad command line or when an object cannot be made.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sim-objects.h"

#define OBJECTS_MAX 16
/* Made above every target first, so that moving one down never lands on another. */
#define PARK_BASE 64

int main(int argc, char *argv[]) {
        int parked[OBJECTS_MAX];
        int n = 0, i;

        for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
                if (n == OBJECTS_MAX) {
                        fprintf(stderr, "sim-fds: at most %d objects\n", OBJECTS_MAX);
                        return 125;
                }
                int fd = coh_sim_object(argv[i]);
                if (fd < 0) {
                        fprintf(stderr, "sim-fds: memfd_create(%s): %s\n", argv[i], strerror(-fd));
                        return 125;
                }
                parked[n] = fcntl(fd, F_DUPFD_CLOEXEC, PARK_BASE);
                if (parked[n] < 0) {
                        fprintf(stderr, "sim-fds: F_DUPFD_CLOEXEC: %m\n");
                        return 125;
                }
                close(fd);
                n++;
        }
        if (i >= argc - 1) {
                fprintf(stderr, "usage: sim-fds OBJECT... -- COMMAND [ARG...]\n");
                return 125;
        }

        /* dup2() leaves the new descriptor without FD_CLOEXEC: these are the ones COMMAND
         * inherits; the parked copies close on exec. */
        for (int k = 0; k < n; k++)
                if (dup2(parked[k], 3 + k) < 0) {
                        fprintf(stderr, "sim-fds: dup2: %m\n");
                        return 125;
                }

        execvp(argv[i + 1], argv + i + 1);
        fprintf(stderr, "sim-fds: %s: %m\n", argv[i + 1]);
        return 127;
}
