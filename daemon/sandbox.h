/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

/*
 * After start-up the daemon needs no capability: the descriptors a VMM
 * passes are used as they are, /sys and its policy files are world-readable,
 * its socket is bound, and the group nodes it opens (/dev/vfio/N, 0600 root)
 * are its own as uid 0. So it drops every capability (bounding set included),
 * sets no_new_privs and installs a seccomp allow-list of the system calls
 * its loop makes; anything else fails with EPERM rather than killing the
 * daemon and every grant with it.
 *
 * The one exception is CAP_KILL, for RevokeKill= (SIGKILL through the peer's
 * pidfd to a VMM of another uid): kept only with COH_SANDBOX_KEEP_KILL. A
 * capability cannot come back later, so a daemon that may be reloaded into
 * RevokeKill=yes must keep it from the start.
 *
 * Not kept, so not available: CAP_SYS_PTRACE, which /proc/PID/fd of another
 * user's process needs; the still-held warning names only holders that /proc
 * shows the daemon anyway (root's processes).
 */

enum {
        COH_SANDBOX_KEEP_KILL = 1u << 0,
};

int coh_sandbox_enter_flags(unsigned flags, char *errbuf, size_t errlen);
/* coh_sandbox_enter_flags(0, ...): no capability at all. */
int coh_sandbox_enter(char *errbuf, size_t errlen);
