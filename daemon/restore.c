/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state the manager keeps in the fd store's memfd, and how a new
 * instance rebuilds VMs, connections and grants from it and the stored
 * descriptors (fdstore.h has the names).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "call.h"
#include "json-util.h"
#include "log.h"
#include "manager.h"
#include "grant-record.h"
#include "util.h"

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

static json_object *state_json(struct coh_manager *m, bool shutdown) {
        json_object *root = json_object_new_object(), *vms = json_object_new_array(),
                    *conns = json_object_new_array(), *grants = json_object_new_array();
        struct coh_vm *vm;
        struct coh_conn *c;
        struct coh_grant *g;

        coh_json_add(root, "version", json_object_new_int(1));
        LIST_FOREACH(vm, &m->grants.vms, link) {
                json_object *o = json_object_new_object();
                coh_json_add(o, "id", json_object_new_int64(vm->id));
                coh_json_append(vms, o);
        }
        LIST_FOREACH(c, &m->server.conns, link) {
                json_object *o = json_object_new_object();
                coh_json_add(o, "id", json_object_new_int64((int64_t) c->id));
                if (shutdown) {
                        /* A half-read call and unsent replies go to the next
                         * instance; descriptors of a half-read call cannot. */
                        _cleanup_free_ char *in = c->in.n_fds == 0 ? hex_encode(c->in.buf, c->in.len) : NULL;
                        _cleanup_free_ char *out = hex_encode(c->out.buf + c->out.off, c->out.len - c->out.off);
                        if (in)
                                coh_json_add(o, "in", json_object_new_string(in));
                        if (out)
                                coh_json_add(o, "out", json_object_new_string(out));
                }
                coh_json_append(conns, o);
        }
        LIST_FOREACH(g, &m->grants.grants, link) {
                struct coh_grant_record rec = g->rec;
                rec.vm = g->vm ? g->vm->id : 0;
                json_object *o = json_object_new_object();
                coh_record_to_json(coh_grant_record_fields, &rec, COH_GRANT_FORM_STORE, o);
                coh_json_append(grants, o);
        }
        coh_json_add(root, "vms", vms);
        coh_json_add(root, "conns", conns);
        coh_json_add(root, "grants", grants);
        return root;
}

void coh_manager_save_state(struct coh_manager *m, bool shutdown) {
        if (!m->store.enabled)
                return;
        json_object *root = state_json(m, shutdown);
        /* Half a state would lose grants on the next start: the older one stays instead. */
        int r = coh_json_failed(root) ? -ENOMEM
                                      : coh_fdstore_write_state(&m->store,
                                                                json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
        json_object_put(root);
        if (r < 0)
                coh_log(LOG_ERR, NULL, "Cannot write the grant state: %s", strerror(-r));
}

static void adopt_vms(struct coh_manager *m, json_object *list, struct coh_stored_fd *e, size_t n) {
        for (size_t i = 0; list && i < json_object_array_length(list); i++) {
                int64_t id;
                char sid[24];
                if (coh_json_get_int64(json_object_array_get_idx(list, i), "id", 1, UINT32_MAX, &id) < 0)
                        continue;
                snprintf(sid, sizeof sid, "%" PRId64, id);
                int vm_fd = coh_fdstore_take(e, n, COH_FDSTORE_VM, sid);
                if (vm_fd >= 0)
                        (void) coh_grants_adopt_vm(&m->grants, (unsigned) id, vm_fd);
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

static void adopt_conns(struct coh_manager *m, json_object *list, struct coh_stored_fd *e, size_t n) {
        for (size_t i = 0; list && i < json_object_array_length(list); i++) {
                json_object *o = json_object_array_get_idx(list, i);
                int64_t id;
                char sid[24];
                if (coh_json_get_int64(o, "id", 1, INT64_MAX, &id) < 0)
                        continue;
                snprintf(sid, sizeof sid, "%" PRId64, id);
                int fd = coh_fdstore_take(e, n, COH_FDSTORE_CONN, sid);
                if (fd < 0)
                        continue;
                struct coh_conn *c = coh_server_adopt_conn(&m->server, fd, (uint64_t) id);
                if (c)
                        restore_buffers(c, o);
        }
}

/* One grant record; false when it is malformed (then it is dropped, and its descriptors closed). */
static bool grant_from_json(json_object *o, struct coh_grant *g) {
        const char *bad;
        if (coh_record_from_json(coh_grant_record_fields, o, COH_GRANT_FORM_STORE, &g->rec, &bad) < 0) {
                coh_log(LOG_WARNING, NULL, "A stored grant has a bad '%s'; it is dropped", bad);
                return false;
        }
        /* What a newer instance stored and this one does not know is not adopted. */
        return g->rec.state == COH_GRANT_ACTIVE || g->rec.state == COH_GRANT_ENDING;
}

static void adopt_grants(struct coh_manager *m, json_object *list, struct coh_stored_fd *e, size_t n,
                         unsigned *ret_pending, unsigned *ret_orphaned) {
        for (size_t i = 0; list && i < json_object_array_length(list); i++) {
                json_object *o = json_object_array_get_idx(list, i);
                struct coh_grant *g = calloc(1, sizeof *g);
                if (!g)
                        continue;
                g->pidfd = -EBADF;
                if (!grant_from_json(o, g)) {
                        free(g);
                        continue;
                }
                int64_t vm_id = g->rec.vm, conn_id = g->rec.owner;
                bool pending = g->rec.pending;
                g->custody.pin_fd = coh_fdstore_take(e, n, COH_FDSTORE_PIN, g->rec.grant);
                g->custody.probe_fd = coh_fdstore_take(e, n, COH_FDSTORE_PROBE, g->rec.grant);
                bool active = g->rec.state == COH_GRANT_ACTIVE;
                struct coh_vm *vm = active && vm_id >= 0 ? coh_grants_find_vm_id(&m->grants, (unsigned) vm_id) : NULL;
                struct coh_conn *c = active && conn_id >= 0 ? coh_server_find_conn(&m->server, (uint64_t) conn_id) : NULL;
                (void) coh_grants_adopt(&m->grants, g, vm, c ? &c->owner : NULL);
                if (active && pending) {
                        g->rec.pending = true;
                        if (c)
                                c->interrupted = true;
                        (*ret_pending)++;
                } else if (active && !c)
                        (*ret_orphaned)++;
        }
        struct coh_grant *g, *next;
        for (g = LIST_FIRST(&m->grants.grants); g; g = next) {
                next = LIST_NEXT(g, link);
                if (g->rec.state == COH_GRANT_ENDING)
                        coh_grant_watch(g);
                else if (g->rec.pending) {
                        g->rec.pending = false;
                        coh_grant_end(g, "interrupted", false);
                } else if (!g->owner || !g->vm)
                        coh_grant_end(g, "disconnect", false);
        }
}

/* Connections whose peer went away while we were down close (ending their grants); interrupted calls get an error. */
static unsigned reconcile_conns(struct coh_manager *m) {
        unsigned ended = 0;
        struct coh_conn *c, *next;
        for (c = LIST_FIRST(&m->server.conns); c; c = next) {
                next = LIST_NEXT(c, link);
                if (!coh_conn_alive(c)) {
                        ended += c->owner.n_grants;
                        coh_conn_close(c, "disconnect");
                } else if (c->interrupted) {
                        json_object *p = json_object_new_object();
                        coh_json_add(p, "errno", json_object_new_int(ECANCELED));
                        coh_json_add(p, "operation",
                                               json_object_new_string("coherencyd restarted during the call"));
                        (void) coh_conn_error(c, "io.coherencyd.Broker.BackendError", p);
                        c->interrupted = false;
                }
        }
        return ended;
}

int coh_manager_restore(struct coh_manager *m) {
        struct coh_stored_fd *e = m->stored;
        size_t n = m->n_stored;
        unsigned undone = 0, ended = 0, adopted;

        /* Without the store enabled now, a previous instance's state is still among the entries. */
        int state_fd = m->store.enabled ? m->store.state_fd : coh_fdstore_take_state(e, n);
        json_object *root = coh_fdstore_read_state(state_fd);
        if (!m->store.enabled)
                safe_close(state_fd);
        if (root) {
                json_object *v;
                adopt_vms(m, json_object_object_get_ex(root, "vms", &v) ? v : NULL, e, n);
                adopt_conns(m, json_object_object_get_ex(root, "conns", &v) ? v : NULL, e, n);
                adopt_grants(m, json_object_object_get_ex(root, "grants", &v) ? v : NULL, e, n, &undone, &ended);
                json_object_put(root);
        }
        adopted = m->grants.n_grants + ended;
        ended += reconcile_conns(m);
        /* VMs without grants are not kept alive. */
        struct coh_vm *vm, *vm_next;
        for (vm = LIST_FIRST(&m->grants.vms); vm; vm = vm_next) {
                vm_next = LIST_NEXT(vm, link);
                if (vm->n_grants == 0)
                        coh_vm_free(&m->grants, vm);
        }
        /* Whatever nothing claimed leaves the store. */
        coh_fdstore_release_rest(&m->store, e, n);
        free(TAKE_PTR(m->stored));
        m->n_stored = 0;
        coh_manager_save_state(m, false);
        if (adopted || ended || undone)
                coh_log(LOG_NOTICE, COH_MESSAGE_STARTED,
                        "Adopted %u grant(s) and %u connection(s) from the file descriptor store; "
                        "%u grant(s) ended as their VMM is gone, %u interrupted request(s) undone",
                        adopted - ended, m->server.n_conns, ended, undone);
        return 0;
}
