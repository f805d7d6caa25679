/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Connections. Every byte and descriptor from a client is hostile: messages
 * and descriptors are bounded by the framing layer, output is bounded here,
 * connections are limited per uid and in total, and the peer is identified
 * once, at accept, by what the kernel says (SO_PEERCRED, SO_PEERGROUPS,
 * SO_PEERPIDFD), never by a pid looked up later.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <limits.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include "call.h"
#include "json-util.h"
#include "fdstore.h"
#include "log.h"
#include "server.h"
#include "util.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* Reading pauses once replies pile up past OUTPUT_PAUSE, so a client that
 * does not read holds at most that plus one reply; only streams (Monitor,
 * WatchGrants) grow beyond, and methods.c ends one whose reader falls behind
 * by its bound (coh_conn_abort), long before OUTPUT_MAX. */
#define OUTPUT_PAUSE (64u * 1024u)
#define OUTPUT_MAX COH_REPLY_MAX
#define GROUPS_START 64 /* SO_PEERGROUPS is retried with what the kernel asks for */

/*
 * The descriptor budget (coh_server_set_limits): a connection holds two, its
 * socket and its peer's pidfd. The daemon's own take about a dozen at start
 * (stdio, the listener, the journal, the event loop's, the state memfd), and a
 * few more come and go: sysfs files while a call reads them, and the socket
 * and pidfd of a connection being refused. Grants' descriptors are bounded by
 * the devices, not here: running out through them pauses accepting until they
 * come back (coh_server_resume_accept).
 */
#define CONN_FDS 2u
#define OWN_FDS 32u

static void conn_io_cb(evutil_socket_t fd, short what, void *userdata);
static void conn_pidfd_cb(evutil_socket_t fd, short what, void *userdata);
static void conn_timer_cb(evutil_socket_t fd, short what, void *userdata);

void coh_server_init(struct coh_server *s, struct event_base *base, struct coh_fdstore *store,
                     const struct coh_server_callbacks *cb) {
        struct rlimit rl;
        *s = (struct coh_server) { .base = base, .store = store, .cb = *cb };
        LIST_INIT(&s->conns);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
                s->fd_limit = rl.rlim_cur > ULONG_MAX ? ULONG_MAX : (unsigned long) rl.rlim_cur;
}

void coh_server_set_limits(struct coh_server *s, const struct coh_server_limits *l) {
        s->limits = *l;
        if (s->fd_limit == 0)
                return;
        unsigned long room = s->fd_limit > OWN_FDS ? (s->fd_limit - OWN_FDS) / CONN_FDS : 0;
        if ((unsigned long) l->max_connections + l->reserved_admin_connections <= room)
                return;
        /* The operator's slots first (up to half of the room, at least one), then everybody's. */
        unsigned long half = room / 2 > 0 ? room / 2 : 1;
        unsigned reserved = l->reserved_admin_connections < half ? l->reserved_admin_connections : (unsigned) half;
        unsigned max = room > reserved ? (unsigned) (room - reserved) : 1;
        if (max > l->max_connections)
                max = l->max_connections;
        s->limits.max_connections = max;
        s->limits.reserved_admin_connections = reserved;
        coh_log(LOG_WARNING, NULL,
                "RLIMIT_NOFILE %lu holds %lu connection(s) beside the daemon's own descriptors: "
                "MaxConnections=%u lowered to %u, ReservedAdminConnections=%u to %u (raise LimitNOFILE=)",
                s->fd_limit, room, l->max_connections, max, l->reserved_admin_connections, reserved);
}

static void changed(struct coh_server *s) {
        if (s->cb.changed)
                s->cb.changed(s->cb.userdata);
}

bool coh_conn_is_admin(const struct coh_conn *c) {
        const struct coh_server_limits *l = &c->server->limits;
        if (c->peer.uid == 0)
                return true;
        if (!l->has_admin_group)
                return false;
        if (c->peer.gid == l->admin_gid)
                return true;
        for (size_t i = 0; i < c->peer.n_groups; i++)
                if (c->peer.groups[i] == l->admin_gid)
                        return true;
        return false;
}

static unsigned conns_of_uid(struct coh_server *s, uid_t uid) {
        unsigned n = 0;
        struct coh_conn *c;
        LIST_FOREACH(c, &s->conns, link)
                n += c->peer.uid == uid;
        return n;
}

static int peer_pidfd(int fd, pid_t pid) {
        int pidfd = -1;
        socklen_t len = sizeof pidfd;
        /* Linux >= 6.5 pins the peer process itself; older kernels need
         * pidfd_open on the SO_PEERCRED pid, which can race with pid reuse. */
        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 && pidfd >= 0)
                return pidfd;
        if (errno != ENOPROTOOPT && errno != EINVAL && errno != ESRCH)
                return -errno;
        if (pid <= 0)
                return -ESRCH;
        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        return pidfd < 0 ? -errno : pidfd;
}

static int conn_identify(struct coh_conn *c, int *ret_pidfd_error) {
        struct ucred cred;
        socklen_t len = sizeof cred;

        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        c->peer.pid = cred.pid;
        c->peer.uid = cred.uid;
        c->peer.gid = cred.gid;

        /* All of them: the admin check and Group= rules must see every group.
         * On ERANGE the kernel copies nothing and says how much it needs. */
        len = GROUPS_START * sizeof(gid_t);
        for (;;) {
                gid_t *groups = realloc(c->groups, len ?: sizeof(gid_t));
                if (!groups)
                        return -ENOMEM;
                c->groups = groups;
                socklen_t want = len;
                if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &want) == 0) {
                        len = want;
                        break;
                }
                if (errno != ERANGE || want <= len || want > NGROUPS_MAX * sizeof(gid_t))
                        return errno == ERANGE ? -E2BIG : -errno;
                len = want;
        }
        /* Kept at its size, for the connection's life: most peers have a few groups or none. */
        if (len == 0) {
                free(c->groups);
                c->groups = NULL;
        } else if (len < GROUPS_START * sizeof(gid_t)) {
                gid_t *groups = realloc(c->groups, len);
                if (groups)
                        c->groups = groups;
        }
        c->peer.groups = c->groups;
        c->peer.n_groups = len / sizeof(gid_t);

        int pidfd = peer_pidfd(c->fd, cred.pid);
        if (pidfd >= 0) {
                /* One per peer: its grants share it (pidfd.h). */
                c->pidfd = coh_pidfd_new(pidfd);
                if (!c->pidfd) {
                        safe_close(pidfd);
                        pidfd = -ENOMEM;
                }
        }
        /* Without one the caller refuses the connection (conn_new). */
        *ret_pidfd_error = pidfd < 0 ? pidfd : 0;
        if (pidfd >= 0) {
                /* The unit comes from /proc/PID/cgroup; it is trusted only if
                 * the process the pidfd pins is still alive afterwards, so the
                 * pid was not reused in between. */
                char *unit = NULL;
                if (sd_pid_get_unit(cred.pid, &unit) >= 0) {
                        /* A pidfd polls readable once its process has exited;
                         * unlike a signal 0 this needs no permission over it. */
                        struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
                        if (poll(&pfd, 1, 0) == 0)
                                c->unit = unit;
                        else
                                free(unit);
                }
        }
        c->peer.unit = c->unit;
        return 0;
}

static void conn_free(struct coh_conn *c) {
        if (c->io_events)
                event_del(&c->ev_io);
        if (c->pidfd_watched)
                event_del(&c->ev_pidfd);
        event_del(&c->ev_timer);
        coh_frame_done(&c->in);
        coh_outbuf_done(&c->out);
        coh_pidfd_unref(c->pidfd);
        if (c->fd >= 0)
                close(c->fd);
        free(c->groups);
        free(c->unit);
        free(c);
}

void coh_server_resume_accept(struct coh_server *s) {
        if (!s->accept_paused)
                return;
        s->accept_paused = false;
        for (size_t i = 0; i < s->n_listen; i++)
                event_add(s->ev_listen[i], NULL);
}

static const char *conn_store_id(const struct coh_conn *c, char buf[static 24]) {
        snprintf(buf, 24, "%" PRIu64, c->id);
        return buf;
}

void coh_conn_close(struct coh_conn *c, const char *end) {
        struct coh_server *s = c->server;
        char id[24];
        if (s->cb.closed)
                s->cb.closed(c, end, s->cb.userdata);
        coh_fdstore_remove(s->store, COH_FDSTORE_CONN, conn_store_id(c, id));
        LIST_REMOVE(c, link);
        s->n_conns--;
        conn_free(c);
        coh_server_resume_accept(s);
        changed(s);
}

size_t coh_conn_queued(const struct coh_conn *c) {
        return c->out.len - c->out.off;
}

static void timer_add(struct coh_conn *c, uint64_t usec) {
        struct timeval tv = { .tv_sec = (time_t) (usec / 1000000), .tv_usec = (suseconds_t) (usec % 1000000) };
        event_add(&c->ev_timer, &tv);
}

/*
 * What the socket's one event watches: EV_READ while calls are taken,
 * EV_WRITE while replies wait for room. Changed only when the output backs
 * up or drains, so the usual call costs no epoll_ctl.
 */
static void conn_watch(struct coh_conn *c, short want) {
        if (want == c->io_events)
                return;
        if (c->io_events)
                event_del(&c->ev_io);
        c->io_events = want;
        if (!want)
                return;
        event_assign(&c->ev_io, c->server->base, c->fd, want | EV_PERSIST, conn_io_cb, c);
        event_add(&c->ev_io, NULL);
}

void coh_conn_abort(struct coh_conn *c, const char *error, json_object *parameters) {
        char *json = NULL;
        if (coh_json_failed(parameters))
                json_object_put(parameters);
        else
                json = coh_error_format(error, parameters); /* takes parameters */
        coh_outbuf_discard(&c->out);
        /* Without a limit: the queue was just emptied, and this is its last message. */
        if (json)
                (void) coh_outbuf_append(&c->out, json, SIZE_MAX);
        free(json);
        c->closing = true;
        c->timing = false;
        event_del(&c->ev_timer);
        int r = coh_outbuf_flush(&c->out, c->fd);
        conn_watch(c, r == -EAGAIN ? EV_WRITE : 0);
        if (r == -EAGAIN) {
                /* Its reader fell behind: as long as for a call begun to take
                 * what is left, then it is closed anyway. */
                timer_add(c, c->server->limits.message_timeout_usec);
        } else
                timer_add(c, 0); /* from the loop: the caller may be walking the connections */
}

/* Queues bytes (and descriptors for their first byte: taken in every case)
 * and flushes what the socket takes now; the rest waits for EV_WRITE. */
static int conn_send(struct coh_conn *c, char *json, const int *fds, size_t n_fds) {
        if (!json) {
                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
                return -ENOMEM;
        }
        /* Straight from json when nothing waits; past OUTPUT_MAX queued, a peer that does not read its replies. */
        int r = coh_outbuf_send(&c->out, c->fd, json, OUTPUT_MAX, fds, n_fds);
        free(json);
        if (r == -EAGAIN) {
                /* Reading pauses while replies pile up past OUTPUT_PAUSE. */
                bool read = (c->io_events & EV_READ) && c->out.len - c->out.off <= OUTPUT_PAUSE;
                conn_watch(c, EV_WRITE | (read ? EV_READ : 0));
                return 0;
        }
        if (r < 0)
                c->closing = true;
        return r;
}

/* An answer whose building ran out of memory (json-util.h) is never sent half: the connection goes. */
static int check_built(struct coh_conn *c, json_object *parameters, const int *fds, size_t n_fds) {
        if (!coh_json_failed(parameters))
                return 0;
        json_object_put(parameters);
        for (size_t i = 0; i < n_fds; i++)
                close(fds[i]);
        c->closing = true;
        return -ENOMEM;
}

int coh_conn_reply(struct coh_conn *c, json_object *parameters, bool continues) {
        if (check_built(c, parameters, NULL, 0) < 0)
                return -ENOMEM;
        if (c->oneway) {
                json_object_put(parameters);
                return 0;
        }
        return conn_send(c, coh_reply_format(parameters, continues), NULL, 0);
}

int coh_conn_reply_fds(struct coh_conn *c, json_object *parameters, const int *fds, size_t n_fds) {
        if (check_built(c, parameters, fds, n_fds) < 0)
                return -ENOMEM;
        if (c->oneway) {
                /* A oneway call wants nothing back: what would have gone is closed. */
                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
                json_object_put(parameters);
                return 0;
        }
        return conn_send(c, coh_reply_format(parameters, false), fds, n_fds);
}

int coh_conn_error(struct coh_conn *c, const char *error, json_object *parameters) {
        if (check_built(c, parameters, NULL, 0) < 0)
                return -ENOMEM;
        if (c->oneway) {
                json_object_put(parameters);
                return 0;
        }
        return conn_send(c, coh_error_format(error, parameters), NULL, 0);
}

/* Serves the next buffered message, if there is one; false when the connection was closed. */
static bool conn_serve_one(struct coh_conn *c, bool *served) {
        struct coh_message m;
        int r = coh_frame_next(&c->in, &m);
        if (r == 0)
                return true;
        *served = true;
        if (r < 0) {
                coh_log_debug("connection %" PRIu64 ": bad framing: %s", c->id, strerror(-r));
                coh_conn_close(c, "disconnect");
                return false;
        }
        r = c->server->cb.message(c, &m, c->server->cb.userdata);
        coh_message_done(&m);
        if (r < 0 || c->closing) {
                coh_conn_close(c, "disconnect");
                return false;
        }
        return true;
}

/*
 * Fair service: a connection with another call buffered gets its next turn
 * after every connection that is ready now. libevent runs an event activated
 * from a callback after those already active (event_process_active_single_queue
 * takes the queue's head until it is empty, event_active appends), and polls
 * again once they are all done.
 */
static void conn_next_turn(struct coh_conn *c) {
        if ((c->io_events & EV_READ) && coh_frame_complete(&c->in))
                event_active(&c->ev_io, EV_READ, 0);
}

/*
 * A call begun must be whole within MessageTimeoutSec= of the read that began
 * it: a peer that sends part of one and stops would otherwise hold its slot
 * (and the descriptors it sent with it) for ever. One timer per connection,
 * running only while a message is partial; `fresh` says a new one began.
 */
static void conn_time_message(struct coh_conn *c, bool fresh) {
        if (c->closing)
                return; /* the timer bounds the flush now */
        if (!coh_frame_partial(&c->in)) {
                if (c->timing)
                        event_del(&c->ev_timer);
                c->timing = false;
                return;
        }
        if (c->timing && !fresh)
                return;
        c->timing = true;
        timer_add(c, c->server->limits.message_timeout_usec);
}

/*
 * One call per connection and turn of the loop, however many it sent: one
 * already buffered is served first, else one batch of reads is made
 * (coh_frame_recv) and the first call it completed is served. A client that
 * pipelines waits its turn behind the others instead of being served many
 * times while they wait (issue 11).
 */
static void conn_read(struct coh_conn *c) {
        struct coh_server *s = c->server;
        bool was_partial = coh_frame_partial(&c->in), served = false;

        if (!coh_frame_complete(&c->in)) {
                ssize_t n = coh_frame_recv(&c->in, c->fd);
                if (n == -EAGAIN || n == -EINTR)
                        return;
                if (n <= 0) {
                        if (n < 0)
                                coh_log_debug("connection %" PRIu64 ": %s", c->id, strerror((int) -n));
                        coh_conn_close(c, "disconnect");
                        return;
                }
        }
        if (!conn_serve_one(c, &served))
                return;
        conn_time_message(c, !was_partial || served);
        conn_next_turn(c);
        /* Calls handled closed or took their descriptors. */
        coh_server_resume_accept(s);
}

/* Returns false when the connection was closed. */
static bool conn_write(struct coh_conn *c) {
        int r = coh_outbuf_flush(&c->out, c->fd);
        if (r == -EAGAIN)
                return true;
        if (r < 0 || c->closing) {
                coh_conn_close(c, "disconnect"); /* ended (coh_conn_abort) once flushed, or failed */
                return false;
        }
        conn_watch(c, EV_READ);
        conn_next_turn(c); /* calls that came while replies piled up */
        /* Descriptors that went out with replies are closed now. */
        coh_server_resume_accept(c->server);
        return true;
}

static void conn_io_cb(evutil_socket_t fd, short what, void *userdata) {
        struct coh_conn *c = userdata;
        if ((what & EV_WRITE) && !conn_write(c))
                return;
        if ((what & EV_READ) && (c->io_events & EV_READ))
                conn_read(c);
}

static void conn_pidfd_cb(evutil_socket_t fd, short what, void *userdata) {
        /* The VMM process is gone while its connection is still open (another
         * process shares the socket): its grants end with it. */
        coh_conn_close(userdata, "peer-exit");
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        struct coh_conn *c = userdata;
        if (c->closing) {
                coh_conn_close(c, "disconnect"); /* ended (coh_conn_abort), flushed or not */
                return;
        }
        c->timing = false;
        if (!coh_frame_partial(&c->in))
                return;
        if (!(c->io_events & EV_READ)) {
                /* We stopped reading (its replies pile up): the rest may be waiting in the socket. */
                conn_time_message(c, true);
                return;
        }
        coh_log(LOG_NOTICE, NULL, "Connection of pid %d (uid %u) closed: a call begun %" PRIu64 "s ago is not whole",
                (int) c->peer.pid, (unsigned) c->peer.uid, c->server->limits.message_timeout_usec / 1000000);
        coh_conn_close(c, "disconnect");
}

/* Stops accepting until coh_server_resume_accept(): out of descriptors, said once until one is accepted. */
static void pause_accept(struct coh_server *s, int error) {
        if (!s->accept_warned)
                coh_log(LOG_WARNING, NULL, "accept: %s; pausing until descriptors come back", strerror(error));
        s->accept_warned = true;
        s->accept_paused = true;
        for (size_t i = 0; i < s->n_listen; i++)
                event_del(s->ev_listen[i]);
}

/* Answers a connection's first call with LimitExceeded(limit), if it can, and closes it. */
static void reject(int fd, const char *limit, const char *why) {
        json_object *p = json_object_new_object();
        coh_json_add(p, "limit", json_object_new_string(limit));
        char *json = coh_json_failed(p) ? (json_object_put(p), NULL)
                                        : coh_error_format("io.coherencyd.Broker.LimitExceeded", p);
        if (json) {
                /* Best effort: the client reads it as the answer to its first call. */
                (void) send(fd, json, strlen(json) + 1, MSG_DONTWAIT | MSG_NOSIGNAL);
                free(json);
        }
        if (why)
                coh_log(LOG_NOTICE, COH_MESSAGE_REQUEST_ERROR, "Connection refused: %s", why);
        else
                coh_log(LOG_NOTICE, COH_MESSAGE_REQUEST_ERROR, "Connection refused: %s reached", limit);
        close(fd);
}

/*
 * The limit a new connection would exceed, or NULL. Root and AdminGroup=
 * members may go ReservedAdminConnections= past MaxConnections=, so that
 * however many connections others open, from however many uids, the operator
 * can still connect to list and revoke.
 */
static const char *limit_reached(struct coh_server *s, const struct coh_conn *c) {
        unsigned cap = s->limits.max_connections + (coh_conn_is_admin(c) ? s->limits.reserved_admin_connections : 0);
        if (s->n_conns >= cap)
                return "MaxConnections";
        if (c->peer.uid != 0 && conns_of_uid(s, c->peer.uid) >= s->limits.max_connections_per_user)
                return "MaxConnectionsPerUser";
        return NULL;
}

/*
 * Sets up a connection on fd (taken in every case): identity, limits, events.
 * Returns NULL when the peer is refused or cannot be served.
 */
static struct coh_conn *conn_new(struct coh_server *s, int fd, uint64_t id, bool adopted) {
        struct coh_conn *c = calloc(1, sizeof *c);
        if (!c) {
                close(fd);
                return NULL;
        }
        c->server = s;
        c->fd = fd;
        c->id = id;
        evtimer_assign(&c->ev_timer, s->base, conn_timer_cb, c); /* so conn_free may always event_del it */
        coh_frame_init(&c->in);

        int pidfd_error = 0;
        int r = conn_identify(c, &pidfd_error);
        if (r < 0) {
                coh_log_debug("connection: cannot identify peer: %s", strerror(-r));
                conn_free(c);
                return NULL;
        }
        /*
         * Without a pidfd its VMM's exit would be seen only as its connection
         * closing, and RevokeKill= could not end it: a new connection is refused
         * rather than served untracked (adopted ones were admitted with one;
         * their VMM may be gone since, which their grants' end tells). Out of
         * descriptors, accepting pauses too, so that the connections waiting
         * are served once descriptors come back rather than refused in turn.
         */
        if (pidfd_error < 0 && !adopted) {
                char why[160];
                bool out = pidfd_error == -EMFILE || pidfd_error == -ENFILE || pidfd_error == -ENOMEM;
                snprintf(why, sizeof why, "no pidfd for pid %d (uid %u): %s", (int) c->peer.pid,
                         (unsigned) c->peer.uid, strerror(-pidfd_error));
                c->fd = -EBADF;
                reject(fd, "LimitNOFILE", why);
                conn_free(c);
                if (out)
                        pause_accept(s, -pidfd_error);
                return NULL;
        }
        c->owner = (struct coh_grant_owner) { .id = id, .peer = &c->peer, .pidfd = c->pidfd };
        /* Limits apply to new connections; adopted ones were admitted already,
         * and count (they are in s->conns). */
        const char *limit = adopted ? NULL : limit_reached(s, c);
        if (limit) {
                c->fd = -EBADF;
                reject(fd, limit, NULL);
                conn_free(c);
                return NULL;
        }

        conn_watch(c, EV_READ);
        if (c->pidfd) {
                event_assign(&c->ev_pidfd, s->base, c->pidfd->fd, EV_READ, conn_pidfd_cb, c);
                event_add(&c->ev_pidfd, NULL);
                c->pidfd_watched = true;
        }
        if (adopted) {
                /* The previous instance may hand over part of a call (restore.c
                 * feeds it in after this): its time starts again now. */
                c->timing = true;
                timer_add(c, s->limits.message_timeout_usec);
        }
        LIST_INSERT_HEAD(&s->conns, c, link);
        s->n_conns++;
        if (id >= s->next_conn_id)
                s->next_conn_id = id;
        return c;
}

static void listen_cb(evutil_socket_t lfd, short what, void *userdata) {
        struct coh_server *s = userdata;

        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
                /* Pause instead of spinning on a listener we cannot serve; tried
                 * again whenever descriptors may have come back. */
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                        pause_accept(s, errno);
                return;
        }
        s->accept_warned = false;
        struct coh_conn *c = conn_new(s, fd, s->next_conn_id + 1, false);
        if (!c)
                return;
        char id[24];
        coh_fdstore_put(s->store, COH_FDSTORE_CONN, conn_store_id(c, id), c->fd);
        changed(s);
}

struct coh_conn *coh_server_find_conn(struct coh_server *s, uint64_t id) {
        struct coh_conn *c;
        LIST_FOREACH(c, &s->conns, link)
                if (c->id == id)
                        return c;
        return NULL;
}

struct coh_conn *coh_server_adopt_conn(struct coh_server *s, int fd, uint64_t id) {
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                close(fd);
                return NULL;
        }
        return conn_new(s, fd, id, true);
}

bool coh_conn_alive(const struct coh_conn *c) {
        char b;
        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
}

void coh_server_forget_all(struct coh_server *s) {
        while (!LIST_EMPTY(&s->conns)) {
                struct coh_conn *c = LIST_FIRST(&s->conns);
                LIST_REMOVE(c, link);
                s->n_conns--;
                conn_free(c);
        }
}

int coh_server_add_listener(struct coh_server *s, int fd) {
        if (s->n_listen >= COH_LISTEN_MAX)
                return -E2BIG;
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        struct event *ev = event_new(s->base, fd, EV_READ | EV_PERSIST, listen_cb, s);
        if (!ev)
                return -ENOMEM;
        event_add(ev, NULL);
        s->listen_fds[s->n_listen] = fd;
        s->ev_listen[s->n_listen] = ev;
        s->n_listen++;
        return 0;
}

int coh_server_listen_path(struct coh_server *s, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* A socket file left by a previous instance is removed only when
         * nobody answers on it: unlinking a live daemon's socket would strand
         * it and its grants. */
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
                _cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe < 0)
                        return -errno;
                if (connect(probe, (struct sockaddr *) &sa, sizeof sa) == 0)
                        return -EADDRINUSE;
                if (errno != ECONNREFUSED)
                        return -errno;
                (void) unlink(path);
        }
        mode_t old = umask(0111);
        int r = bind(fd, (struct sockaddr *) &sa, sizeof sa);
        umask(old);
        if (r < 0)
                return -errno;
        if (listen(fd, SOMAXCONN) < 0)
                return -errno;
        r = coh_server_add_listener(s, fd);
        if (r < 0)
                return r;
        fd = -EBADF;
        return 0;
}

void coh_server_stop_listening(struct coh_server *s) {
        for (size_t i = 0; i < s->n_listen; i++) {
                event_free(s->ev_listen[i]);
                close(s->listen_fds[i]);
        }
        s->n_listen = 0;
}

void coh_server_close_all(struct coh_server *s) {
        while (!LIST_EMPTY(&s->conns)) {
                struct coh_conn *c = LIST_FIRST(&s->conns);
                /* Answers already produced go out if the socket takes them now. */
                (void) coh_outbuf_flush(&c->out, c->fd);
                coh_conn_close(c, "shutdown");
        }
}
