/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Messages to the service manager (NOTIFY_SOCKET) on one socket kept for the
 * daemon's life. sd_notify() and sd_pid_notify_with_fds() open a socket, send
 * and close it for every message (src/libsystemd/sd-daemon/sd-daemon.c,
 * systemd 252): three system calls where one will do, and the fd store sends
 * several messages per grant (a VM, a pin, a probe in; the same out). The
 * manager knows the sender by the credentials the kernel attaches to each
 * datagram (SO_PASSCRED on its side), so a socket made once and connected
 * says the same as a new one each time.
 *
 * Without NOTIFY_SOCKET every call is a no-op that returns 0, as sd_notify()
 * does. A NOTIFY_SOCKET that is no AF_UNIX path or abstract name (systemd 253
 * takes vsock addresses too) goes through libsystemd, one socket per message.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

struct coh_notify {
        int fd;                 /* -EBADF until the first message */
        bool connected;
        bool use_libsystemd;    /* an address this module does not speak */
        bool have_address;      /* NOTIFY_SOCKET was set */
        struct sockaddr_un address;
        socklen_t address_len;
};

/* Reads NOTIFY_SOCKET (does not unset it). */
void coh_notify_init(struct coh_notify *n);
void coh_notify_done(struct coh_notify *n);

/* Whether anybody listens: NOTIFY_SOCKET was set. */
bool coh_notify_enabled(const struct coh_notify *n);

/* One message, with descriptors (n_fds may be 0). 1 when sent, 0 without NOTIFY_SOCKET, -errno. */
int coh_notify_send(struct coh_notify *n, const char *message, const int *fds, size_t n_fds);

/*
 * Waits until the manager has handled every message sent so far, at most
 * timeout_usec: BARRIER=1 with the write end of a pipe, which the manager
 * closes once it got there (sd_notify_barrier(), on this socket).
 */
int coh_notify_barrier(struct coh_notify *n, uint64_t timeout_usec);
