/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Connections: accepting (with per-uid and total limits, slots kept for the
 * operator, pausing on EMFILE), the peer's identity taken at connect time,
 * reading calls with their descriptors (a call begun must be whole within
 * MessageTimeoutSec=; one call per connection and turn of the loop, so that
 * a client that pipelines is served in turn with the others), and writing
 * replies without blocking. What a call
 * means is not this module's business: each complete message goes to the
 * callback the owner gave (OpenBSD's p_cb), and so does each close.
 */

#include <event2/event_struct.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "frame.h"
#include "grants.h"
#include "policy.h"

struct coh_server;
struct coh_fdstore;

struct coh_conn {
        LIST_ENTRY(coh_conn) link;
        struct coh_server *server;
        uint64_t id;
        int fd;
        /* Embedded (event_assign), so that a connection is one allocation: the
         * socket's one event watches what io_events says (EV_READ, EV_WRITE). */
        struct event ev_io, ev_pidfd;
        struct event ev_timer; /* a call begun and not whole (MessageTimeoutSec=), or closing: the flush's bound */
        short io_events;       /* what ev_io is added with; 0: not added */
        bool pidfd_watched;    /* ev_pidfd is added */
        struct coh_frame in;
        struct coh_outbuf out;

        /* Who the peer is, from SO_PEERCRED/SO_PEERGROUPS/SO_PEERPIDFD at accept. */
        struct coh_peer peer;
        gid_t *groups;
        char *unit;
        struct coh_pidfd *pidfd; /* the connection's reference (pidfd.h) */

        struct coh_grant_owner owner; /* the grants this connection holds know it by this */
        bool monitor;     /* a Manager.Monitor stream is open */
        bool watch;       /* a Broker.WatchGrants stream is open */
        bool closing;     /* close once the output is flushed */
        bool timing;      /* ev_timer runs for the message being read */
        bool interrupted; /* adopted with a call the previous instance did not finish */
        bool oneway;      /* the call being handled wants no reply, not even an error */
};

LIST_HEAD(coh_conn_list, coh_conn);

#define COH_LISTEN_MAX 4

/* What the server tells its owner. */
struct coh_server_callbacks {
        /* One complete message; < 0 closes the connection. The message is freed after. */
        int (*message)(struct coh_conn *c, struct coh_message *m, void *userdata);
        /* The connection is about to be freed: "disconnect", "peer-exit" or "shutdown". */
        void (*closed)(struct coh_conn *c, const char *end, void *userdata);
        /* Connections came or went: the fd-store state and the status are stale. */
        void (*changed)(void *userdata);
        void *userdata;
};

/* The limits in force, from the policy (set on start and reload). */
struct coh_server_limits {
        unsigned max_connections;            /* everybody but root and AdminGroup= members */
        unsigned reserved_admin_connections; /* root and AdminGroup= members: this many more */
        unsigned max_connections_per_user;
        uint64_t message_timeout_usec;       /* a call begun must be whole within this */
        bool has_admin_group;
        gid_t admin_gid;
};

struct coh_server {
        struct event_base *base;
        struct coh_fdstore *store;
        struct coh_server_callbacks cb;
        struct coh_server_limits limits; /* in force: the policy's, lowered to fit fd_limit */
        unsigned long fd_limit;          /* RLIMIT_NOFILE at start; 0: none */
        int listen_fds[COH_LISTEN_MAX];
        struct event *ev_listen[COH_LISTEN_MAX];
        size_t n_listen;
        struct coh_conn_list conns;
        unsigned n_conns;
        uint64_t next_conn_id;
        bool accept_paused; /* EMFILE: resumed when descriptors may have come back */
        bool accept_warned; /* said so since the last connection accepted */
};

/* Reads RLIMIT_NOFILE (at start: later the sandbox may forbid it). */
void coh_server_init(struct coh_server *s, struct event_base *base, struct coh_fdstore *store,
                     const struct coh_server_callbacks *cb);

/*
 * The policy's limits (start and reload). When MaxConnections= plus
 * ReservedAdminConnections= connections would not fit RLIMIT_NOFILE beside
 * the daemon's own descriptors, both are lowered to fit (the reserve first
 * kept, up to half) and a warning says so: a daemon that refused to start
 * would strand its grants and lock the operator out, and one that let
 * connections run it out of descriptors would pause accepting for everybody.
 */
void coh_server_set_limits(struct coh_server *s, const struct coh_server_limits *l);

/* Descriptors may have come back (a grant ended, say): a paused accept is tried again. */
void coh_server_resume_accept(struct coh_server *s);

/* Binds and listens on path (removing a stale socket), mode 0666: the daemon decides, not file modes. */
int coh_server_listen_path(struct coh_server *s, const char *path);
/* Serves an already listening socket (socket activation). */
int coh_server_add_listener(struct coh_server *s, int fd);
void coh_server_stop_listening(struct coh_server *s);
/* Flushes what can be flushed and closes every connection ("shutdown"). */
void coh_server_close_all(struct coh_server *s);

/* Replies to the call being handled; they take ownership of parameters. */
int coh_conn_reply(struct coh_conn *c, json_object *parameters, bool continues);
int coh_conn_error(struct coh_conn *c, const char *error, json_object *parameters);
/* A final reply with descriptors on its first byte; takes them in every case
 * (they are closed once the kernel has its copies, or on failure). */
int coh_conn_reply_fds(struct coh_conn *c, json_object *parameters, const int *fds, size_t n_fds);
/* Closes the connection now; the closed callback runs first. */
void coh_conn_close(struct coh_conn *c, const char *end);

/* Bytes of replies queued and not yet taken by the socket. */
size_t coh_conn_queued(const struct coh_conn *c);
/*
 * Ends a stream whose reader fell behind: drops every queued reply not yet
 * begun (the one being sent is finished, so the stream stays whole), queues
 * this error (takes parameters), reads no more, and closes the connection once
 * that is flushed, or after MessageTimeoutSec=, never from within this call
 * (it is safe while walking the connections).
 */
void coh_conn_abort(struct coh_conn *c, const char *error, json_object *parameters);

bool coh_conn_is_admin(const struct coh_conn *c);

/* A stored connection handed over by a previous instance: NULL on failure (fd closed). */
struct coh_conn *coh_server_adopt_conn(struct coh_server *s, int fd, uint64_t id);
struct coh_conn *coh_server_find_conn(struct coh_server *s, uint64_t id);
/* False once the peer has closed its end. */
bool coh_conn_alive(const struct coh_conn *c);
/* Frees every connection without the closed callback: they stay in the fd store. */
void coh_server_forget_all(struct coh_server *s);
