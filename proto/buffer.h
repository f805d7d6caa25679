/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Room in a growing byte buffer, for the three that the daemon keeps: the
 * JSON writer's, the output queue's and the journal record's. Each doubles
 * from a size of its own choosing, so that appending stays O(1) amortised.
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * Makes *buf (*allocated bytes; NULL and 0 at first) hold at least used + more
 * bytes: the size doubles, from initial or what it was, until it does. 0, or
 * -ENOMEM with *buf and *allocated as they were.
 */
static inline int coh_buffer_reserve(char **buf, size_t *allocated, size_t used, size_t more, size_t initial) {
        if (more > SIZE_MAX - used)
                return -ENOMEM;
        size_t want = used + more, a = *allocated ?: initial;
        if (want <= *allocated)
                return 0;
        while (a < want) {
                if (a > SIZE_MAX / 2)
                        return -ENOMEM;
                a *= 2;
        }
        char *p = realloc(*buf, a);
        if (!p)
                return -ENOMEM;
        *buf = p;
        *allocated = a;
        return 0;
}
