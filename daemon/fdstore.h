/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Grants survive a restart or a crash of the daemon: every descriptor a live
 * grant or connection needs is kept in systemd's file descriptor store under a
 * name ("vm.N", "pin.GRANT", "probe.GRANT", "conn.N"), next to a memfd
 * "state" that says how they fit together, ending grants included. A grant is
 * recorded as pending before the reply that hands its file over is queued,
 * so a crash at any point leaves either a grant the next instance adopts, or
 * a pending one it ends ("interrupted": the pin is closed, the client told
 * ECANCELED); grants whose owner went away while the daemon was down are
 * ended on adoption.
 */

#include <stdbool.h>
#include <stddef.h>

struct coh_daemon;

struct coh_stored_fd {
        char *name;
        int fd;
};

/* Takes the previous instance's state memfd from entries (or makes one) and enables the store. */
int coh_fdstore_enable(struct coh_daemon *d, struct coh_stored_fd *entries, size_t n);
/* Rebuilds VMs, connections and grants from the stored descriptors; closes and
 * removes from the store whatever nothing needs. Takes ownership of entries' fds. */
int coh_fdstore_adopt(struct coh_daemon *d, struct coh_stored_fd *entries, size_t n);

/* No-ops when the store is not enabled. */
void coh_fdstore_put(struct coh_daemon *d, const char *name, int fd);
void coh_fdstore_remove(struct coh_daemon *d, const char *name);
/* Writes the state memfd; with shutdown, also what connections have buffered. */
void coh_fdstore_save(struct coh_daemon *d, bool shutdown);
