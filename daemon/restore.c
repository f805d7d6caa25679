/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state the manager keeps in the fd store's memfd, and how a new
 * instance rebuilds VMs, connections and grants from it and the stored
 * descriptors (fdstore.h has the names). The grants' records are written
 * whole now and then, and between times each change is appended (grants.c
 * notes which grants changed and which went): a change costs the state
 * a write of its own size, not a rewrite of every grant's record.
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

/* One line of the state's changes: a grant's record as stored, or a grant gone. */
static int append_line(FILE *f, json_object *o) {
        if (coh_json_failed(o))
                return -ENOMEM;
        fputs(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), f);
        fputc('\n', f);
        return 0;
}

/* What changed since the state was written, appended to it: O(changes), not O(grants). */
static int append_changes(struct coh_manager *m) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        int r = 0;
        FILE *f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        struct coh_grant *g;
        LIST_FOREACH(g, &m->grants.dirty, dirty_link) {
                struct coh_grant_record rec = g->rec;
                rec.vm = g->vm ? g->vm->id : 0;
                json_object *o = json_object_new_object(), *record = json_object_new_object();
                coh_record_to_json(coh_grant_record_fields, &rec, COH_GRANT_FORM_STORE, record);
                coh_json_add(o, "grant", record);
                r = append_line(f, o);
                json_object_put(o);
                if (r < 0)
                        break;
        }
        for (size_t i = 0; r >= 0 && i < m->grants.n_gone; i++) {
                json_object *o = json_object_new_object();
                coh_json_add(o, "gone", json_object_new_string(m->grants.gone[i]));
                r = append_line(f, o);
                json_object_put(o);
        }
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0)
                return r;
        return coh_fdstore_append_state(&m->store, buf, size);
}

void coh_manager_save_state(struct coh_manager *m, bool shutdown) {
        if (!m->store.enabled)
                return;
        /* Between writes of the whole state only what changed is appended
         * (fdstore.h); at a stop the whole state goes, with the connections'
         * unsent bytes. */
        if (!shutdown && !m->grants.changes_lost && coh_fdstore_state_appendable(&m->store) &&
            append_changes(m) >= 0) {
                coh_grants_changes_clear(&m->grants);
                return;
        }
        json_object *root = state_json(m, shutdown);
        /* Half a state would lose grants on the next start: the older one stays instead. */
        int r = coh_json_failed(root) ? -ENOMEM
                                      : coh_fdstore_write_state(&m->store,
                                                                json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
        json_object_put(root);
        if (r < 0)
                coh_log(LOG_ERR, NULL, "Cannot write the grant state: %s", strerror(-r));
        else
                coh_grants_changes_clear(&m->grants);
}

/*
 * The stored grants as the state says after its changes: the whole state's
 * list, each "grant" line replacing (or adding) the record of that id, each
 * "gone" line taking one out. Returns a new array.
 */
static json_object *grants_replayed(json_object *root, json_object *changes) {
        json_object *by_id = json_object_new_object(), *list, *v;
        if (!by_id)
                return NULL;
        if (json_object_object_get_ex(root, "grants", &list))
                for (size_t i = 0; i < json_object_array_length(list); i++) {
                        json_object *o = json_object_array_get_idx(list, i);
                        const char *id;
                        if (coh_json_get_string(o, "grant", &id) == 0)
                                json_object_object_add(by_id, id, json_object_get(o));
                }
        for (size_t i = 0; changes && i < json_object_array_length(changes); i++) {
                json_object *c = json_object_array_get_idx(changes, i);
                const char *id;
                if (json_object_object_get_ex(c, "grant", &v) && coh_json_get_string(v, "grant", &id) == 0)
                        json_object_object_add(by_id, id, json_object_get(v));
                else if (coh_json_get_string(c, "gone", &id) == 0)
                        json_object_object_del(by_id, id);
        }
        json_object *out = json_object_new_array();
        if (out) {
                json_object_object_foreach(by_id, key, value) {
                        (void) key;
                        if (json_object_array_add(out, json_object_get(value)) < 0)
                                json_object_put(value);
                }
        }
        json_object_put(by_id);
        return out;
}

/* The id after "<kind>." of a stored entry's name, or -1. */
static int64_t stored_id(const struct coh_stored_fd *e, enum coh_fdstore_kind kind, int64_t max) {
        char prefix[COH_FDSTORE_NAME_MAX];
        const char *s = e->fd >= 0 ? startswith(e->name, coh_fdstore_name(prefix, kind, "")) : NULL;
        char *end;
        if (!s || *s < '0' || *s > '9')
                return -1;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        return errno || *end || v < 1 || v > (unsigned long long) max ? -1 : (int64_t) v;
}

/* Every VM in the store: its name says its id (a grant names its VM by it). */
static void adopt_vms(struct coh_manager *m, struct coh_stored_fd *e, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int64_t id = stored_id(&e[i], COH_FDSTORE_VM, UINT32_MAX);
                if (id > 0)
                        (void) coh_grants_adopt_vm(&m->grants, (unsigned) id, take_fd(&e[i].fd));
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

/* Every connection in the store, with its unsent bytes where the state has them (a stop's). */
static void adopt_conns(struct coh_manager *m, json_object *list, struct coh_stored_fd *e, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int64_t id = stored_id(&e[i], COH_FDSTORE_CONN, INT64_MAX);
                if (id <= 0)
                        continue;
                struct coh_conn *c = coh_server_adopt_conn(&m->server, take_fd(&e[i].fd), (uint64_t) id);
                for (size_t j = 0; c && list && j < json_object_array_length(list); j++) {
                        json_object *o = json_object_array_get_idx(list, j);
                        int64_t saved;
                        if (coh_json_get_int64(o, "id", 1, INT64_MAX, &saved) == 0 && saved == id) {
                                restore_buffers(c, o);
                                break;
                        }
                }
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
        json_object *changes = NULL;
        json_object *root = coh_fdstore_read_state(state_fd, &changes);
        if (!m->store.enabled)
                safe_close(state_fd);
        if (root) {
                json_object *v, *grants = grants_replayed(root, changes);
                adopt_vms(m, e, n);
                adopt_conns(m, json_object_object_get_ex(root, "conns", &v) ? v : NULL, e, n);
                adopt_grants(m, grants, e, n, &undone, &ended);
                json_object_put(grants);
                json_object_put(changes);
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
