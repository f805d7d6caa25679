/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "json-util.h"
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

/* One parameter: 0 when set or absent-and-optional, -EINVAL otherwise. */
static int dispatch_one(json_object *parameters, struct coh_message *m, const struct coh_param *p, void *field) {
        int r;
        switch (p->type) {
        case COH_PARAM_STRING:
                r = coh_json_get_string(parameters, p->name, (const char **) field);
                break;
        case COH_PARAM_TRISTATE: {
                bool b;
                r = coh_json_get_bool(parameters, p->name, &b);
                if (r == 0)
                        *(int *) field = b;
                break;
        }
        case COH_PARAM_FD: {
                int64_t index;
                r = coh_json_get_int64(parameters, p->name, 0, COH_MESSAGE_FDS_MAX - 1, &index);
                if (r == 0) {
                        int fd = coh_message_take_fd(m, (long) index);
                        if (fd < 0)
                                return -EINVAL;
                        *(int *) field = fd;
                }
                break;
        }
        default:
                return -EINVAL;
        }
        if (r == -ENOENT)
                return p->required ? -EINVAL : 0;
        return r;
}

int coh_params_dispatch(json_object *parameters, struct coh_message *m, const struct coh_param *table, void *ret,
                        const char **ret_bad) {
        init(table, ret);
        if (parameters) {
                json_object_object_foreach(parameters, key, value) {
                        (void) value;
                        if (!find(table, key)) {
                                *ret_bad = key;
                                goto fail;
                        }
                }
        }
        for (const struct coh_param *p = table; p->name; p++)
                if ((!parameters && p->required) ||
                    (parameters && dispatch_one(parameters, m, p, (char *) ret + p->offset) < 0)) {
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
