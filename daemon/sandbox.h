/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * What each of coherencyd's two processes (priv.h) keeps after start-up,
 * and the system calls each may make. A call outside a process's list ends
 * that process (SECCOMP_RET_KILL_PROCESS, as systemd's SystemCallFilter=
 * does): a process that does what it never does has been taken over, and
 * going on with EPERM would only let whoever did it probe further. systemd
 * restarts the main process with its grants from the fd store; a dead helper
 * ends the main process too (manager.c).
 *
 * The parser (the main process: it parses clients' bytes). Started as root,
 * it becomes the system user "coherencyd" (systemd/coherencyd.sysusers) or,
 * where there is none, nobody (65534:65534): no supplementary groups, every
 * capability dropped (the bounding set too where it may), no_new_privs, not
 * dumpable (so no process of its uid, a VMM running as nobody included, can
 * ptrace it or read its descriptors through /proc), and its allow-list. It
 * needs no privilege: the socket is bound, /sys and the policy are
 * world-readable, what it classifies it was passed, and everything that
 * needs root is the helper's. Started as another user, it stays that user.
 *
 * The helper (privileged). It stays uid 0, because the nodes it opens
 * (/dev/vfio/N, 0600 root) are root's and the owner needs no capability to
 * open them, and keeps exactly:
 *   CAP_KILL   with COH_SANDBOX_KEEP_KILL (RevokeKill=) only: SIGKILL through
 *              a pidfd to a VMM of another uid. A capability cannot come back,
 *              so a daemon reloaded into RevokeKill=yes cannot kill.
 * and nothing else, each for a reason:
 *   not CAP_SYS_PTRACE  which /proc/PID/fd of another user's process needs for
 *              the still-held warning's holders: it would also open every
 *              process's memory (/proc/PID/mem) to the helper. The warning says
 *              whether the VMM still runs instead.
 *   not CAP_DAC_OVERRIDE, CAP_SYS_ADMIN, CAP_SYS_RAWIO  the group nodes are
 *              root's own, and the VFIO ioctls it makes check no capability
 *              (no-IOMMU groups, which would need CAP_SYS_RAWIO, are refused).
 *   not CAP_SETUID, CAP_SETGID  the unit gives them only so that the parser
 *              can become its user; both processes drop them at once.
 */

enum coh_sandbox_process {
        COH_SANDBOX_PARSER,
        COH_SANDBOX_HELPER,
};

enum {
        COH_SANDBOX_KEEP_KILL = 1u << 0, /* helper: keep CAP_KILL */
};

#define COH_SANDBOX_USER "coherencyd"
#define COH_SANDBOX_NOBODY 65534

/* Who the parser becomes when started as root: COH_SANDBOX_USER, or nobody where it does not exist. */
int coh_sandbox_parser_user(uid_t *ret_uid, gid_t *ret_gid, bool *ret_dedicated);

/* Enters the process's sandbox, as described above; on failure *errbuf says which step failed. */
int coh_sandbox_enter(enum coh_sandbox_process which, unsigned flags, char *errbuf, size_t errlen);
