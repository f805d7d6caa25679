/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * systemd's file descriptor store, and the names of what the daemon keeps
 * there: every descriptor a grant (active or ending) or a connection needs
 * ("vm.N", "pin.GRANT", "probe.GRANT", "conn.N": a new instance adopts every
 * VM and connection it finds by these names), next to a memfd "state" whose
 * contents (JSON, written by the manager) hold the grants' records: the whole
 * state, then each change as a line of its own.
 * This module knows the names and the store; what goes in the state, and how
 * a new instance rebuilds itself from it, is the manager's (restore.c).
 *
 * Every call is a no-op while the store is not enabled.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum coh_fdstore_kind {
        COH_FDSTORE_VM,     /* a VM's descriptor: "vm.<id>" */
        COH_FDSTORE_PIN,    /* a grant's pin: "pin.<grant>" */
        COH_FDSTORE_PROBE,  /* a grant's probe (sim): "probe.<grant>" */
        COH_FDSTORE_CONN,   /* a client connection: "conn.<id>" */
        _COH_FDSTORE_KIND_MAX,
};

#define COH_FDSTORE_NAME_MAX 64

/* One descriptor systemd handed back, with its name. */
struct coh_stored_fd {
        char *name;
        int fd;
};

struct coh_notify;

struct coh_fdstore {
        struct coh_notify *notify; /* the manager's socket to systemd: not ours */
        bool enabled;
        int state_fd;     /* the state memfd, -EBADF while disabled */
        size_t state_len; /* bytes in it written by this instance: 0 until it wrote it whole */
        size_t base_len;  /* of them, the whole state; the rest is appended changes */
};

/* "<kind>.<id>" into buf. */
const char *coh_fdstore_name(char buf[static COH_FDSTORE_NAME_MAX], enum coh_fdstore_kind kind, const char *id);
/* The same for a numeric id. */
const char *coh_fdstore_name_u64(char buf[static COH_FDSTORE_NAME_MAX], enum coh_fdstore_kind kind, uint64_t id);

void coh_fdstore_init(struct coh_fdstore *s, struct coh_notify *notify);
/* Takes the previous instance's state memfd from entries (or makes one) and enables the store. */
int coh_fdstore_enable(struct coh_fdstore *s, struct coh_stored_fd *entries, size_t n);
void coh_fdstore_done(struct coh_fdstore *s);

void coh_fdstore_put(struct coh_fdstore *s, enum coh_fdstore_kind kind, const char *id, int fd);
void coh_fdstore_remove(struct coh_fdstore *s, enum coh_fdstore_kind kind, const char *id);
void coh_fdstore_remove_name(struct coh_fdstore *s, const char *name);

/*
 * Waits (at most a second) until systemd has handled every message sent so
 * far: after coh_fdstore_remove() of a pin, systemd's own copy is closed only
 * then, and until it is the group cannot be free.
 */
void coh_fdstore_sync(struct coh_fdstore *s);

/* Takes the entry of that name out of entries (the caller owns the fd), or -ENOENT. */
int coh_fdstore_take(struct coh_stored_fd *entries, size_t n, enum coh_fdstore_kind kind, const char *id);
/* Closes every entry nothing took, removing it from the store too, and frees the names. */
void coh_fdstore_release_rest(struct coh_fdstore *s, struct coh_stored_fd *entries, size_t n);

/* The state memfd of a previous instance from entries, whether or not the store is enabled now, or -ENOENT. */
int coh_fdstore_take_state(struct coh_stored_fd *entries, size_t n);

/*
 * The state memfd holds the whole state (a JSON object, written by
 * coh_fdstore_write_state()) followed by changes, one JSON object a line
 * (coh_fdstore_append_state()), so that a change costs one write of its
 * own size, not the whole state's; once the changes outgrow the state
 * (coh_fdstore_state_appendable() says no), the owner writes it whole again.
 */
int coh_fdstore_write_state(struct coh_fdstore *s, const char *json);
/* Whether changes may be appended now (the state was written whole by this instance, and is not outgrown). */
bool coh_fdstore_state_appendable(const struct coh_fdstore *s);
/* lines: complete lines, each a JSON object and a newline. */
int coh_fdstore_append_state(struct coh_fdstore *s, const char *lines, size_t len);
/* A state memfd's whole state (NULL when empty or when it does not parse) and, in
 * *ret_changes (an array, never NULL when the state is not), the changes after it
 * up to the first that does not parse (one cut short by a crash mid-write). */
json_object *coh_fdstore_read_state(int state_fd, json_object **ret_changes);
