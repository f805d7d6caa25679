/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A method's parameters, filled into a typed struct from a field table (as
 * systemd's sd_json_dispatch_field tables are): every key the call sends
 * must be in the table, every required one must be there with its type, and
 * descriptor parameters are indexes into the message's descriptors, taken
 * out of it. A handler goes on only when coh_params_dispatch() returned 0.
 */

#include <stdbool.h>
#include <stddef.h>

#include "call.h"
#include "frame.h"

enum coh_param_type {
        COH_PARAM_STRING,   /* const char *: points into the call (coh_call_done() frees it); NULL when absent */
        COH_PARAM_TRISTATE, /* int: -1 when absent, 0 or 1 */
        COH_PARAM_FD,       /* int: a descriptor taken from the message (the struct owns it); -EBADF when absent */
};

struct coh_param {
        const char *name;
        enum coh_param_type type;
        size_t offset;
        bool required;
};

#define COH_PARAMS_END { NULL, 0, 0, false }

/*
 * Fills *ret from the call's parameters (a null one is an absent one). Returns 0, or -EINVAL
 * with *ret_bad naming the parameter at fault (an unknown key, a missing
 * required one, a wrong type, a descriptor index the message does not have
 * or uses twice); on failure every descriptor taken so far is closed again.
 */
int coh_params_dispatch(const struct coh_call *call, struct coh_message *m, const struct coh_param *table, void *ret,
                        const char **ret_bad);
/* Closes the descriptors a dispatch took. */
void coh_params_done(const struct coh_param *table, void *p);
