/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "call.h"
#include "daemon.h"
#include "fdstore.h"
#include "json-util.h"
#include "log.h"
#include "util.h"

#define STATE_NAME "state"
#define STATE_MAX (16u * 1024u * 1024u)

void coh_fdstore_put(struct coh_daemon *d, const char *name, int fd) {
        if (!d->fdstore)
                return;
        char msg[300];
        snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s", name);
        int r = sd_pid_notify_with_fds(0, false, msg, &fd, 1);
        if (r <= 0)
                coh_log(d, LOG_WARNING, NULL, "Cannot keep %s in the file descriptor store: %s", name,
                        r < 0 ? strerror(-r) : "no NOTIFY_SOCKET");
}

void coh_fdstore_remove(struct coh_daemon *d, const char *name) {
        if (!d->fdstore)
                return;
        char msg[300];
        snprintf(msg, sizeof msg, "FDSTOREREMOVE=1\nFDNAME=%s", name);
        (void) sd_notify(false, msg);
}

static char *hex_encode(const char *data, size_t len) {
        char *s = malloc(len * 2 + 1);
        if (!s)
                return NULL;
        for (size_t i = 0; i < len; i++)
                sprintf(s + 2 * i, "%02x", (unsigned char) data[i]);
        s[len * 2] = 0;
        return s;
}

static int hex_decode(const char *s, char **ret, size_t *ret_len) {
        size_t n = strlen(s);
        if (n % 2)
                return -EINVAL;
        char *b = malloc(n / 2 + 1);
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < n / 2; i++) {
                unsigned v;
                if (sscanf(s + 2 * i, "%2x", &v) != 1) {
                        free(b);
                        return -EINVAL;
                }
                b[i] = (char) v;
        }
        *ret = b;
        *ret_len = n / 2;
        return 0;
}

static json_object *state_json(struct coh_daemon *d, bool shutdown) {
        json_object *root = json_object_new_object(), *vms = json_object_new_array(),
                    *conns = json_object_new_array(), *grants = json_object_new_array();
        struct coh_vm *vm;
        struct coh_conn *c;
        struct coh_grant *g;

        json_object_object_add(root, "version", json_object_new_int(1));
        LIST_FOREACH(vm, &d->grants.vms, link) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "id", json_object_new_int64(vm->id));
                json_object_array_add(vms, o);
        }
        LIST_FOREACH(c, &d->server.conns, link) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "id", json_object_new_int64((int64_t) c->id));
                if (shutdown) {
                        /* A half-read call and unsent replies go to the next
                         * instance; descriptors of a half-read call cannot. */
                        _cleanup_free_ char *in = c->in.n_fds == 0 ? hex_encode(c->in.buf, c->in.len) : NULL;
                        _cleanup_free_ char *out = hex_encode(c->out.buf + c->out.off, c->out.len - c->out.off);
                        if (in)
                                json_object_object_add(o, "in", json_object_new_string(in));
                        if (out)
                                json_object_object_add(o, "out", json_object_new_string(out));
                }
                json_object_array_add(conns, o);
        }
        LIST_FOREACH(g, &d->grants.grants, link) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "id", json_object_new_string(g->id));
                json_object_object_add(o, "state", json_object_new_int(g->state));
                if (g->vm)
                        json_object_object_add(o, "vm", json_object_new_int64(g->vm->id));
                if (g->owner)
                        json_object_object_add(o, "conn", json_object_new_int64((int64_t) g->owner->id));
                json_object_object_add(o, "pending", json_object_new_boolean(g->pending));
                json_object_object_add(o, "decision", json_object_new_int(g->decision));
                json_object_object_add(o, "reason", json_object_new_int(g->reason));
                json_object_object_add(o, "mode", json_object_new_int(g->mode));
                json_object_object_add(o, "kvmAttach", json_object_new_int(g->kvm_attach));
                json_object_object_add(o, "wbinvd", json_object_new_boolean(g->wbinvd));
                json_object_object_add(o, "rule", json_object_new_string(g->rule));
                json_object_object_add(o, "slot", json_object_new_string(g->slot));
                json_object_object_add(o, "file", json_object_new_string(g->file));
                json_object_object_add(o, "iommuGroup", json_object_new_int(g->iommu_group));
                json_object_object_add(o, "since", json_object_new_int64((int64_t) g->since_usec));
                json_object_object_add(o, "peerPid", json_object_new_int64(g->peer_pid));
                json_object_object_add(o, "peerUid", json_object_new_int64(g->peer_uid));
                json_object_object_add(o, "peerUnit", json_object_new_string(g->peer_unit));
                json_object_object_add(o, "end", json_object_new_string(g->end));
                json_object_object_add(o, "ending", json_object_new_int64((int64_t) g->ending_usec));
                json_object_object_add(o, "kill", json_object_new_boolean(g->kill));
                json_object_object_add(o, "warned", json_object_new_boolean(g->warned));
                json_object_object_add(o, "killed", json_object_new_boolean(g->killed));
                json_object_array_add(grants, o);
        }
        json_object_object_add(root, "vms", vms);
        json_object_object_add(root, "conns", conns);
        json_object_object_add(root, "grants", grants);
        return root;
}

void coh_fdstore_save(struct coh_daemon *d, bool shutdown) {
        if (!d->fdstore)
                return;
        json_object *root = state_json(d, shutdown);
        const char *s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
        size_t len = strlen(s);
        int r = 0;
        /* Truncate after writing, so that a crash mid-write leaves the longer,
         * older state rather than nothing; readers stop at the NUL. */
        if (pwrite(d->state_fd, s, len + 1, 0) != (ssize_t) (len + 1) || ftruncate(d->state_fd, (off_t) len + 1) < 0)
                r = -errno ?: -EIO;
        json_object_put(root);
        if (r < 0)
                coh_log(d, LOG_ERR, NULL, "Cannot write the grant state: %s", strerror(-r));
}

static int take_entry(struct coh_stored_fd *entries, size_t n, const char *name);

int coh_fdstore_enable(struct coh_daemon *d, struct coh_stored_fd *entries, size_t n) {
        d->fdstore = true;
        /* The previous instance's state stays in the store as it is. */
        d->state_fd = take_entry(entries, n, STATE_NAME);
        if (d->state_fd >= 0)
                return 0;
        d->state_fd = memfd_create("coherencyd-state", MFD_CLOEXEC);
        if (d->state_fd < 0)
                return -errno;
        coh_fdstore_put(d, STATE_NAME, d->state_fd);
        return 0;
}

/* ---- adoption ----------------------------------------------------------- */

static int take_entry(struct coh_stored_fd *entries, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (entries[i].fd >= 0 && strcmp(entries[i].name, name) == 0)
                        return take_fd(&entries[i].fd);
        return -ENOENT;
}

static struct coh_vm *find_vm_id(struct coh_daemon *d, unsigned id) {
        struct coh_vm *vm;
        LIST_FOREACH(vm, &d->grants.vms, link)
                if (vm->id == id)
                        return vm;
        return NULL;
}

static struct coh_conn *find_conn_id(struct coh_daemon *d, uint64_t id) {
        struct coh_conn *c;
        LIST_FOREACH(c, &d->server.conns, link)
                if (c->id == id)
                        return c;
        return NULL;
}

static json_object *read_state(int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > STATE_MAX)
                return NULL;
        char *buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return NULL;
        ssize_t n = pread(fd, buf, (size_t) st.st_size, 0);
        json_object *root = NULL;
        if (n > 0) {
                buf[n] = 0;
                root = json_tokener_parse(buf);
        }
        free(buf);
        if (root && !json_object_is_type(root, json_type_object)) {
                json_object_put(root);
                root = NULL;
        }
        return root;
}

static void adopt_vms(struct coh_daemon *d, json_object *list, struct coh_stored_fd *e, size_t n) {
        for (size_t i = 0; list && i < json_object_array_length(list); i++) {
                int64_t id;
                char name[32];
                if (coh_json_get_int64(json_object_array_get_idx(list, i), "id", 1, UINT32_MAX, &id) < 0)
                        continue;
                snprintf(name, sizeof name, "vm.%" PRId64, id);
                int vm_fd = take_entry(e, n, name);
                if (vm_fd < 0)
                        continue;
                struct coh_vm *vm = calloc(1, sizeof *vm);
                if (!vm) {
                        close(vm_fd);
                        continue;
                }
                vm->id = (unsigned) id;
                vm->vm_fd = vm_fd;
                LIST_INSERT_HEAD(&d->grants.vms, vm, link);
                if (vm->id >= d->grants.next_vm_id)
                        d->grants.next_vm_id = vm->id + 1;
        }
}

static void restore_buffers(struct coh_conn *c, json_object *o) {
        const char *hex;
        char *bytes;
        size_t len;
        if (coh_json_get_string(o, "in", &hex) == 0 && hex_decode(hex, &bytes, &len) == 0) {
                (void) coh_frame_feed(&c->in, bytes, len, NULL, 0);
                free(bytes);
        }
        if (coh_json_get_string(o, "out", &hex) == 0 && hex_decode(hex, &bytes, &len) == 0) {
                /* Saved replies are NUL-terminated messages: queue them one by one. */
                for (size_t off = 0; off < len;) {
                        size_t m = strnlen(bytes + off, len - off);
                        if (off + m >= len)
                                break;
                        (void) coh_outbuf_append(&c->out, bytes + off, SIZE_MAX);
                        off += m + 1;
                }
                free(bytes);
        }
}

static void adopt_conns(struct coh_daemon *d, json_object *list, struct coh_stored_fd *e, size_t n) {
        for (size_t i = 0; list && i < json_object_array_length(list); i++) {
                json_object *o = json_object_array_get_idx(list, i);
                int64_t id;
                char name[32];
                if (coh_json_get_int64(o, "id", 1, INT64_MAX, &id) < 0)
                        continue;
                snprintf(name, sizeof name, "conn.%" PRId64, id);
                int fd = take_entry(e, n, name);
                if (fd < 0)
                        continue;
                struct coh_conn *c = coh_server_adopt_conn(d, fd, (uint64_t) id);
                if (c)
                        restore_buffers(c, o);
        }
}

/* One grant record; false when it is malformed (then it is dropped, and its descriptors closed). */
static bool grant_from_json(json_object *o, struct coh_grant *g, int64_t *ret_vm, int64_t *ret_conn, bool *ret_pending) {
        const char *id, *rule, *slot, *file, *unit, *end;
        int64_t state, decision, reason, mode, attach, group, since, ending, peer_pid, peer_uid;
        bool wbinvd, kill, warned, killed;

        if (coh_json_get_string(o, "id", &id) < 0 || strlen(id) >= sizeof g->id ||
            coh_json_get_int64(o, "state", 0, COH_GRANT_ENDING, &state) < 0 ||
            coh_json_get_bool(o, "pending", ret_pending) < 0 ||
            coh_json_get_int64(o, "decision", 0, _COH_DECISION_MAX - 1, &decision) < 0 ||
            coh_json_get_int64(o, "reason", 0, _COH_REASON_MAX - 1, &reason) < 0 ||
            coh_json_get_int64(o, "mode", 0, _COH_MODE_MAX - 1, &mode) < 0 ||
            coh_json_get_int64(o, "kvmAttach", 0, _COH_KVM_ATTACH_MAX - 1, &attach) < 0 ||
            coh_json_get_bool(o, "wbinvd", &wbinvd) < 0 || coh_json_get_string(o, "rule", &rule) < 0 ||
            coh_json_get_string(o, "slot", &slot) < 0 || coh_json_get_string(o, "file", &file) < 0 ||
            coh_json_get_int64(o, "iommuGroup", -1, INT32_MAX, &group) < 0 ||
            coh_json_get_int64(o, "since", 0, INT64_MAX, &since) < 0 ||
            coh_json_get_int64(o, "peerPid", 0, INT32_MAX, &peer_pid) < 0 ||
            coh_json_get_int64(o, "peerUid", 0, UINT32_MAX, &peer_uid) < 0 ||
            coh_json_get_string(o, "peerUnit", &unit) < 0 || coh_json_get_string(o, "end", &end) < 0 ||
            coh_json_get_int64(o, "ending", 0, INT64_MAX, &ending) < 0 || coh_json_get_bool(o, "kill", &kill) < 0 ||
            coh_json_get_bool(o, "warned", &warned) < 0 || coh_json_get_bool(o, "killed", &killed) < 0)
                return false;
        *ret_vm = *ret_conn = -1;
        (void) coh_json_get_int64(o, "vm", 0, UINT32_MAX, ret_vm);
        (void) coh_json_get_int64(o, "conn", 0, INT64_MAX, ret_conn);
        snprintf(g->id, sizeof g->id, "%s", id);
        g->state = (enum coh_grant_state) state;
        g->decision = (enum coh_decision) decision;
        g->reason = (enum coh_reason) reason;
        g->mode = (enum coh_mode) mode;
        g->kvm_attach = (enum coh_kvm_attach) attach;
        g->wbinvd = wbinvd;
        snprintf(g->rule, sizeof g->rule, "%s", rule);
        snprintf(g->slot, sizeof g->slot, "%s", slot);
        snprintf(g->file, sizeof g->file, "%s", file);
        g->iommu_group = (int) group;
        g->since_usec = (uint64_t) since;
        g->peer_pid = (pid_t) peer_pid;
        g->peer_uid = (uid_t) peer_uid;
        snprintf(g->peer_unit, sizeof g->peer_unit, "%s", unit);
        snprintf(g->end, sizeof g->end, "%s", end);
        g->ending_usec = (uint64_t) ending;
        g->kill = kill;
        g->warned = warned;
        g->killed = killed;
        return true;
}

/*
 * Active grants come back with their pin, VM and connection; ending ones
 * with their probe, and are watched again. A grant recorded as pending (the
 * daemon stopped between handing over and answering) and one whose
 * connection systemd dropped from the store (it does so when the peer hangs
 * up) end here, so that their end is logged like any other.
 */
static void adopt_grants(struct coh_daemon *d, json_object *list, struct coh_stored_fd *e, size_t n,
                         unsigned *ret_pending, unsigned *ret_orphaned) {
        for (size_t i = 0; list && i < json_object_array_length(list); i++) {
                json_object *o = json_object_array_get_idx(list, i);
                struct coh_grant *g = calloc(1, sizeof *g);
                int64_t vm_id, conn_id;
                bool pending;
                char name[64];

                if (!g)
                        continue;
                g->daemon = d;
                g->pidfd = -EBADF;
                if (!grant_from_json(o, g, &vm_id, &conn_id, &pending)) {
                        free(g);
                        continue;
                }
                snprintf(name, sizeof name, "pin.%s", g->id);
                g->custody.pin_fd = take_entry(e, n, name);
                snprintf(name, sizeof name, "probe.%s", g->id);
                g->custody.probe_fd = take_entry(e, n, name);
                struct coh_vm *vm = g->state == COH_GRANT_ACTIVE ? find_vm_id(d, (unsigned) vm_id) : NULL;
                struct coh_conn *owner = g->state == COH_GRANT_ACTIVE ? find_conn_id(d, (uint64_t) conn_id) : NULL;
                if (g->state == COH_GRANT_ACTIVE && !vm) {
                        /* Cannot be: the VM's descriptor was stored first. Treat as gone. */
                        vm = NULL;
                }
                LIST_INSERT_HEAD(&d->grants.grants, g, link);
                d->grants.n_grants++;
                if (g->state == COH_GRANT_ENDING) {
                        d->grants.n_ending++;
                        continue;
                }
                g->vm = vm;
                g->owner = owner;
                if (owner && owner->pidfd >= 0)
                        g->pidfd = fcntl(owner->pidfd, F_DUPFD_CLOEXEC, 3);
                if (vm) {
                        vm->n_grants++;
                        if (g->decision == COH_DECISION_GRANTED)
                                vm->n_granted++;
                }
                if (owner)
                        owner->n_grants++;
                if (pending) {
                        g->pending = true;
                        if (owner)
                                owner->interrupted = true;
                        (*ret_pending)++;
                } else if (!owner)
                        (*ret_orphaned)++;
        }
        struct coh_grant *g, *next;
        for (g = LIST_FIRST(&d->grants.grants); g; g = next) {
                next = LIST_NEXT(g, link);
                if (g->state == COH_GRANT_ENDING)
                        coh_grant_watch(d, g);
                else if (g->pending) {
                        g->pending = false;
                        coh_grant_end(d, g, "interrupted", false);
                } else if (!g->owner || !g->vm)
                        coh_grant_end(d, g, "disconnect", false);
        }
}

int coh_fdstore_adopt(struct coh_daemon *d, struct coh_stored_fd *entries, size_t n) {
        unsigned undone = 0, ended = 0, adopted;
        struct coh_vm *vm, *vm_next;
        struct coh_conn *c, *c_next;

        /* Without the store enabled the state entry is still in entries. */
        int state_fd = d->state_fd >= 0 ? d->state_fd : take_entry(entries, n, STATE_NAME);
        json_object *root = state_fd >= 0 ? read_state(state_fd) : NULL;
        if (state_fd != d->state_fd && state_fd >= 0) {
                close(state_fd);
                coh_fdstore_remove(d, STATE_NAME);
        }
        if (root) {
                json_object *v;
                adopt_vms(d, json_object_object_get_ex(root, "vms", &v) ? v : NULL, entries, n);
                adopt_conns(d, json_object_object_get_ex(root, "conns", &v) ? v : NULL, entries, n);
                adopt_grants(d, json_object_object_get_ex(root, "grants", &v) ? v : NULL, entries, n, &undone,
                             &ended);
                json_object_put(root);
        }
        adopted = d->grants.n_grants + ended;

        /* Owners that went away while we were down: their grants end now. */
        for (c = LIST_FIRST(&d->server.conns); c; c = c_next) {
                c_next = LIST_NEXT(c, link);
                if (!coh_conn_alive(c)) {
                        ended += c->n_grants;
                        coh_conn_close(c, "disconnect");
                } else if (c->interrupted) {
                        json_object *p = json_object_new_object();
                        json_object_object_add(p, "errno", json_object_new_int(ECANCELED));
                        json_object_object_add(p, "operation",
                                               json_object_new_string("coherencyd restarted during the call"));
                        (void) coh_conn_error(c, "io.coherencyd.Broker.BackendError", p);
                        c->interrupted = false;
                }
        }
        /* VMs without grants are not kept alive. */
        for (vm = LIST_FIRST(&d->grants.vms); vm; vm = vm_next) {
                vm_next = LIST_NEXT(vm, link);
                if (vm->n_grants == 0)
                        coh_vm_free(d, vm);
        }
        /* Whatever nothing claimed leaves the store. */
        for (size_t i = 0; i < n; i++) {
                if (entries[i].fd >= 0) {
                        close(entries[i].fd);
                        coh_fdstore_remove(d, entries[i].name);
                }
                free(entries[i].name);
        }
        coh_fdstore_save(d, false);
        if (adopted || ended || undone)
                coh_log(d, LOG_NOTICE, COH_MESSAGE_STARTED,
                        "Adopted %u grant(s) and %u connection(s) from the file descriptor store; "
                        "%u grant(s) ended as their VMM is gone, %u interrupted request(s) undone",
                        adopted - ended, d->server.n_conns, ended, undone);
        return 0;
}
