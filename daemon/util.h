/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The few helpers every module of the daemon uses. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

static inline const char *startswith(const char *s, const char *prefix) {
        size_t n = strlen(prefix);
        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

/* Copies src into dst of size n (> 0), cut short if need be, always terminated: snprintf(dst, n, "%s",
 * src) without the format machinery (a few hundred instructions a copy, on every request). */
static inline char *strscpy0(char *dst, const char *src, size_t n) {
        size_t len = strnlen(src, n - 1);
        memcpy(dst, src, len);
        dst[len] = 0;
        return dst;
}

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Hands a descriptor over: the variable no longer owns it (systemd's TAKE_FD). */
static inline int take_fd(int *fd) {
        int r = *fd;
        *fd = -EBADF;
        return r;
}
#define TAKE_FD(fd) take_fd(&(fd))
/* Hands a pointer over: the variable no longer owns it. */
#define TAKE_PTR(p) ({ __typeof__(p) _p = (p); (p) = NULL; _p; })

#define streq(a, b) (strcmp((a), (b)) == 0)

/* Closes fd if it is one, and returns -EBADF to store back: fd = safe_close(fd). */
static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                close(fd);
                errno = saved;
        }
        return -EBADF;
}
