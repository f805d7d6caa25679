/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdstore.h"
#include "log.h"
#include "notify.h"
#include "util.h"

#define STATE_NAME "state"
#define STATE_MAX (16u * 1024u * 1024u)

static const char *const kind_table[_COH_FDSTORE_KIND_MAX] = {
        [COH_FDSTORE_VM] = "vm",
        [COH_FDSTORE_PIN] = "pin",
        [COH_FDSTORE_PROBE] = "probe",
        [COH_FDSTORE_CONN] = "conn",
};

const char *coh_fdstore_name(char buf[static COH_FDSTORE_NAME_MAX], enum coh_fdstore_kind kind, const char *id) {
        snprintf(buf, COH_FDSTORE_NAME_MAX, "%s.%s", kind_table[kind], id);
        return buf;
}

const char *coh_fdstore_name_u64(char buf[static COH_FDSTORE_NAME_MAX], enum coh_fdstore_kind kind, uint64_t id) {
        snprintf(buf, COH_FDSTORE_NAME_MAX, "%s.%" PRIu64, kind_table[kind], id);
        return buf;
}

void coh_fdstore_init(struct coh_fdstore *s, struct coh_notify *notify) {
        *s = (struct coh_fdstore) { .notify = notify, .state_fd = -EBADF };
}

void coh_fdstore_done(struct coh_fdstore *s) {
        s->state_fd = safe_close(s->state_fd);
        s->enabled = false;
}

static void put_name(struct coh_fdstore *s, const char *name, int fd) {
        if (!s->enabled)
                return;
        char msg[COH_FDSTORE_NAME_MAX + 32];
        snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s", name);
        int r = coh_notify_send(s->notify, msg, &fd, 1);
        if (r <= 0)
                coh_log(LOG_WARNING, NULL, "Cannot keep %s in the file descriptor store: %s", name,
                        r < 0 ? strerror(-r) : "no NOTIFY_SOCKET");
}

void coh_fdstore_put(struct coh_fdstore *s, enum coh_fdstore_kind kind, const char *id, int fd) {
        char name[COH_FDSTORE_NAME_MAX];
        if (!s->enabled) /* no name to format either: this is on every grant's way */
                return;
        put_name(s, coh_fdstore_name(name, kind, id), fd);
}

void coh_fdstore_remove_name(struct coh_fdstore *s, const char *name) {
        if (!s->enabled)
                return;
        char msg[COH_FDSTORE_NAME_MAX + 32];
        snprintf(msg, sizeof msg, "FDSTOREREMOVE=1\nFDNAME=%s", name);
        (void) coh_notify_send(s->notify, msg, NULL, 0);
}

void coh_fdstore_remove(struct coh_fdstore *s, enum coh_fdstore_kind kind, const char *id) {
        char name[COH_FDSTORE_NAME_MAX];
        if (!s->enabled)
                return;
        coh_fdstore_remove_name(s, coh_fdstore_name(name, kind, id));
}

void coh_fdstore_sync(struct coh_fdstore *s) {
        if (!s->enabled)
                return;
        int r = coh_notify_barrier(s->notify, 1000000);
        if (r < 0)
                coh_log(LOG_WARNING, NULL, "Waiting for systemd to handle the file descriptor store: %s", strerror(-r));
}

static int take_name(struct coh_stored_fd *entries, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (entries[i].fd >= 0 && streq(entries[i].name, name))
                        return take_fd(&entries[i].fd);
        return -ENOENT;
}

int coh_fdstore_take(struct coh_stored_fd *entries, size_t n, enum coh_fdstore_kind kind, const char *id) {
        char name[COH_FDSTORE_NAME_MAX];
        return take_name(entries, n, coh_fdstore_name(name, kind, id));
}

int coh_fdstore_take_state(struct coh_stored_fd *entries, size_t n) {
        return take_name(entries, n, STATE_NAME);
}

void coh_fdstore_release_rest(struct coh_fdstore *s, struct coh_stored_fd *entries, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (entries[i].fd >= 0) {
                        entries[i].fd = safe_close(entries[i].fd);
                        coh_fdstore_remove_name(s, entries[i].name);
                }
                free(TAKE_PTR(entries[i].name));
        }
}

int coh_fdstore_enable(struct coh_fdstore *s, struct coh_stored_fd *entries, size_t n) {
        s->enabled = true;
        /* The previous instance's state stays in the store as it is. */
        s->state_fd = take_name(entries, n, STATE_NAME);
        if (s->state_fd >= 0)
                return 0;
        s->state_fd = memfd_create("coherencyd-state", MFD_CLOEXEC);
        if (s->state_fd < 0)
                return -errno;
        put_name(s, STATE_NAME, s->state_fd);
        return 0;
}

int coh_fdstore_write_state(struct coh_fdstore *s, const char *json) {
        if (!s->enabled)
                return 0;
        size_t len = strlen(json);
        /* Truncate after writing, so that a crash mid-write leaves the longer,
         * older state rather than nothing. The newline ends the whole state:
         * changes follow it (a state written by an older instance ends in a
         * NUL instead, and readers stop at a NUL). */
        char *buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, json, len);
        buf[len] = '\n';
        ssize_t n = pwrite(s->state_fd, buf, len + 1, 0);
        free(buf);
        if (n != (ssize_t) (len + 1) || ftruncate(s->state_fd, (off_t) len + 1) < 0) {
                s->state_len = 0;
                return -errno ?: -EIO;
        }
        s->state_len = s->base_len = len + 1;
        return 0;
}

bool coh_fdstore_state_appendable(const struct coh_fdstore *s) {
        /* Changes up to twice the whole state (and 64 KiB at least) before it is
         * written whole again: appending stays O(1) per change, amortised, and
         * a restart never replays more than about twice the state. */
        size_t changes = s->state_len - s->base_len, bound = s->base_len * 2;
        return s->enabled && s->state_len > 0 && changes <= (bound > 65536u ? bound : 65536u) &&
               s->state_len < STATE_MAX / 2;
}

int coh_fdstore_append_state(struct coh_fdstore *s, const char *lines, size_t len) {
        if (!s->enabled)
                return 0;
        if (len == 0)
                return 0;
        if (pwrite(s->state_fd, lines, len, (off_t) s->state_len) != (ssize_t) len) {
                /* Half a line may be there: the next write is whole. */
                s->state_len = 0;
                return -errno ?: -EIO;
        }
        s->state_len += len;
        return 0;
}

json_object *coh_fdstore_read_state(int state_fd, json_object **ret_changes) {
        struct stat st;
        *ret_changes = NULL;
        if (state_fd < 0 || fstat(state_fd, &st) < 0 || st.st_size <= 0 || st.st_size > STATE_MAX)
                return NULL;
        _cleanup_free_ char *buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return NULL;
        ssize_t n = pread(state_fd, buf, (size_t) st.st_size, 0);
        if (n <= 0)
                return NULL;
        buf[n] = 0;
        size_t len = strlen(buf); /* an older instance's state ends in a NUL */

        json_tokener *tok = json_tokener_new();
        if (!tok)
                return NULL;
        json_object *root = json_tokener_parse_ex(tok, buf, (int) len);
        size_t off = root ? json_tokener_get_parse_end(tok) : len;
        json_tokener_free(tok);
        if (root && !json_object_is_type(root, json_type_object)) {
                json_object_put(root);
                root = NULL;
        }
        if (!root)
                return NULL;
        json_object *changes = json_object_new_array();
        if (!changes) {
                json_object_put(root);
                return NULL;
        }
        while (off < len) {
                char *line = buf + off + strspn(buf + off, "\n");
                char *end = strchr(line, '\n');
                if (!*line || !end)
                        break; /* nothing more, or a line cut short */
                *end = 0;
                json_object *o = json_tokener_parse(line);
                if (!o || !json_object_is_type(o, json_type_object) || json_object_array_add(changes, o) < 0) {
                        json_object_put(o);
                        break;
                }
                off = (size_t) (end + 1 - buf);
        }
        *ret_changes = changes;
        return root;
}
