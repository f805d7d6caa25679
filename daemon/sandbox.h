/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

/*
 * After start-up the daemon needs no capability: the descriptors it works on
 * are passed in, /sys and its policy files are world-readable, and its
 * socket is bound. So it drops every capability (bounding set included),
 * sets no_new_privs and installs a seccomp allow-list of the system calls
 * its loop makes; anything else fails with EPERM rather than killing the
 * daemon and every grant with it.
 */
int coh_sandbox_enter(char *errbuf, size_t errlen);
