/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A uevent datagram as the netlink socket gives it (daemon/facts-cache.c):
 * any bytes, no terminator promised. Whatever it is, coh_uevent_relevant()
 * reads nothing outside it; what does not parse counts as relevant.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "facts-cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* A copy of exactly size bytes: ASan sees a read past it. */
        char *buf = malloc(size ? size : 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        bool relevant = coh_uevent_relevant(buf, size);
        if (size == 0 && !relevant)
                abort();
        free(buf);
        return 0;
}
