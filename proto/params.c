/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "params.h"

static void init(const struct coh_param *table, void *ret) {
        for (const struct coh_param *p = table; p->name; p++) {
                void *field = (char *) ret + p->offset;
                switch (p->type) {
                case COH_PARAM_STRING:
                        *(const char **) field = NULL;
                        break;
                case COH_PARAM_TRISTATE:
                        *(int *) field = -1;
                        break;
                case COH_PARAM_FD:
                        *(int *) field = -EBADF;
                        break;
                }
        }
}

static const struct coh_param *find(const struct coh_param *table, const char *name) {
        for (const struct coh_param *p = table; p->name; p++)
                if (strcmp(p->name, name) == 0)
                        return p;
        return NULL;
}

static const struct coh_call_param *lookup(const struct coh_call *call, const char *name) {
        for (size_t i = 0; i < call->n_params; i++)
                if (strcmp(call->params[i].key, name) == 0)
                        return &call->params[i];
        return NULL;
}

/* One parameter: 0 when set or absent-and-optional (null is absent), -EINVAL otherwise. */
static int dispatch_one(const struct coh_call *call, struct coh_message *m, const struct coh_param *p, void *field) {
        const struct coh_call_param *v = lookup(call, p->name);

        if (!v || v->kind == COH_VALUE_NULL)
                return p->required ? -EINVAL : 0;

        switch (p->type) {
        case COH_PARAM_STRING:
                if (v->kind != COH_VALUE_STRING)
                        return -EINVAL;
                *(const char **) field = v->string;
                return 0;
        case COH_PARAM_TRISTATE:
                if (v->kind != COH_VALUE_BOOL)
                        return -EINVAL;
                *(int *) field = v->boolean;
                return 0;
        case COH_PARAM_FD: {
                int fd;

                if (v->kind != COH_VALUE_INT || v->integer < 0 || v->integer >= COH_MESSAGE_FDS_MAX)
                        return -EINVAL;
                fd = coh_message_take_fd(m, (long) v->integer);
                if (fd < 0)
                        return -EINVAL;
                *(int *) field = fd;
                return 0;
        }
        default:
                return -EINVAL;
        }
}

int coh_params_dispatch(const struct coh_call *call, struct coh_message *m, const struct coh_param *table, void *ret,
                        const char **ret_bad) {
        init(table, ret);
        for (size_t i = 0; i < call->n_params; i++)
                if (!find(table, call->params[i].key)) {
                        *ret_bad = call->params[i].key;
                        goto fail;
                }
        for (const struct coh_param *p = table; p->name; p++)
                if (dispatch_one(call, m, p, (char *) ret + p->offset) < 0) {
                        *ret_bad = p->name;
                        goto fail;
                }
        return 0;
fail:
        coh_params_done(table, ret);
        return -EINVAL;
}

void coh_params_done(const struct coh_param *table, void *ret) {
        for (const struct coh_param *p = table; p->name; p++)
                if (p->type == COH_PARAM_FD) {
                        int *fd = (int *) ((char *) ret + p->offset);
                        if (*fd >= 0)
                                close(*fd);
                        *fd = -EBADF;
                }
}
