/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Varlink framing on an AF_UNIX SOCK_STREAM socket: each message is one JSON
 * object followed by a NUL byte. Descriptors travel as SCM_RIGHTS attached to
 * the first byte of the message that uses them (systemd's convention), and
 * parameters refer to them by index.
 *
 * The stream kernel code stops a read right after the segment that carried
 * descriptors, but may glue earlier bytes in front of it. So coh_frame_recv
 * looks first (MSG_PEEK) and remembers what it saw: with no descriptors ahead
 * it reads all of it at once; with descriptors ahead it reads, in one batch
 * (recvmmsg), a single byte on a message boundary (descriptors that come with
 * it belong to the message it starts) and then no further than that message's
 * end (descriptors that come then were sent mid-message: a protocol error, the
 * connection must be closed). So calls sent back to back, with descriptors or
 * not, keep theirs, and a call costs a look and one read. Why no plain read
 * without a look can be exact, and the proofs, are in frame.c.
 *
 * No policy and no kernel objects here: bytes and descriptors only.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define COH_MESSAGE_MAX (64u * 1024u) /* bytes of one call, NUL included */
#define COH_REPLY_MAX (16u * 1024u * 1024u) /* bytes of one reply (a list of every grant can be long) */
#define COH_MESSAGE_FDS_MAX 8u        /* descriptors one message may carry */

/* One complete message, as handed out by coh_frame_next(). */
struct coh_message {
        char *json;      /* NUL-terminated, owned */
        size_t len;      /* strlen(json) */
        int fds[COH_MESSAGE_FDS_MAX]; /* owned; -1 once taken */
        size_t n_fds;
};

/* Input side of one connection. */
struct coh_frame {
        char *buf;
        size_t len, cap;
        int fds[COH_MESSAGE_FDS_MAX]; /* arrived, not yet tied to a message */
        size_t n_fds;
        size_t fds_at;                /* offset in buf of the message start they belong to */
        size_t max;                   /* bytes of one message, NUL included */
        size_t ahead;                 /* bytes past len the last look (MSG_PEEK) showed, still queued */
        bool ahead_fds;               /* that look said descriptors may ride on them */
};

/* An empty frame for messages of at most COH_MESSAGE_MAX bytes (the daemon's calls). */
void coh_frame_init(struct coh_frame *f);
/* The same with another limit (a client reading replies: COH_REPLY_MAX). */
void coh_frame_init_max(struct coh_frame *f, size_t max);
/* Frees the buffer and closes every descriptor not yet handed out. */
void coh_frame_done(struct coh_frame *f);

/*
 * One batch of reads (MSG_DONTWAIT|MSG_CMSG_CLOEXEC) into the buffer, after a
 * look (MSG_PEEK) only when the last look's bytes are all read.
 * Returns bytes read (> 0), 0 on orderly EOF, -EAGAIN when nothing is there,
 * -EPROTO when descriptors arrived that cannot be tied to a message (sent in
 * the middle of one, descriptors already pending, MSG_CTRUNC, more than
 * COH_MESSAGE_FDS_MAX, or a control message that is not SCM_RIGHTS),
 * -EMSGSIZE when a message (NUL included) would exceed the frame's max,
 * other -errno from recvmsg. On every error all received descriptors are closed.
 */
ssize_t coh_frame_recv(struct coh_frame *f, int sock);

/*
 * Feed bytes and descriptors directly (used by coh_frame_recv, tests and the
 * fuzzer). Same rules and return values as coh_frame_recv (0 on success): the
 * chunk is one read, and its descriptors belong to the one message that
 * starts in it (at its first byte when the frame is on a boundary, or after a
 * NUL); a chunk in which none or several start cannot carry any.
 * Takes ownership of fds in every case.
 */
int coh_frame_feed(struct coh_frame *f, const void *data, size_t len, const int *fds, size_t n_fds);

/*
 * Takes the next complete message out of the buffer: 1 and *m filled (caller
 * owns it, release with coh_message_done), 0 when no complete message is
 * buffered, -EBADMSG for an empty message or one with an embedded NUL
 * impossibility (i.e. a zero-length message).
 */
int coh_frame_next(struct coh_frame *f, struct coh_message *m);

/* True when a complete message is buffered (coh_frame_next would hand it out). */
bool coh_frame_complete(const struct coh_frame *f);
/* True while bytes of an incomplete message are buffered. */
bool coh_frame_partial(const struct coh_frame *f);

/*
 * Takes descriptor `index` out of the message: returns it (caller owns it)
 * or -ERANGE when index is past the message's descriptors, -EBADF when it was
 * already taken (a message may not use one descriptor for two parameters).
 */
int coh_message_take_fd(struct coh_message *m, long index);
/* Frees json and closes every descriptor not taken. */
void coh_message_done(struct coh_message *m);

/* Descriptors that go with the first byte of one queued message. */
struct coh_outbuf_fds {
        size_t at;       /* offset in buf of the message's first byte */
        int fds[COH_MESSAGE_FDS_MAX];
        size_t n;
};

/* Output side: a bounded queue of outgoing messages, some with descriptors. */
struct coh_outbuf {
        char *buf;
        size_t len, cap, off;
        struct coh_outbuf_fds *fds; /* ascending by at; owned until sent */
        size_t n_fds;
        bool midway;                /* the byte at off continues a message partly sent */
};

/* Frees the buffer and closes every descriptor not yet sent. */
void coh_outbuf_done(struct coh_outbuf *o);
/* Appends json plus the terminating NUL. -ENOBUFS past `limit` queued bytes. */
int coh_outbuf_append(struct coh_outbuf *o, const char *json, size_t limit);
/* The same with descriptors for the message's first byte. Takes ownership of
 * fds in every case (closed on failure). -EINVAL past COH_MESSAGE_FDS_MAX. */
int coh_outbuf_append_fds(struct coh_outbuf *o, const char *json, size_t limit, const int *fds, size_t n_fds);
/* send(MSG_DONTWAIT|MSG_NOSIGNAL) as much as the socket takes, each message's
 * descriptors with its first byte and never with an earlier byte: 0 when
 * empty, -EAGAIN when bytes remain, -errno on failure. A descriptor is closed
 * once the kernel has taken its copy. */
int coh_outbuf_flush(struct coh_outbuf *o, int sock);
static inline bool coh_outbuf_pending(const struct coh_outbuf *o) { return o->len > o->off; }
/*
 * One message (json and its NUL, fds with its first byte): sent straight
 * from json when nothing waits before it, so that a reply the socket takes
 * whole is never copied; what it does not take waits in o, as
 * coh_outbuf_append_fds() would have queued it. Takes the descriptors in
 * every case. 0 when all went, -EAGAIN when bytes wait (flush later),
 * -ENOBUFS past limit, -errno on failure.
 */
int coh_outbuf_send(struct coh_outbuf *o, int sock, const char *json, size_t limit, const int *fds, size_t n_fds);
/* Drops every queued message no byte of which is sent yet (closing their
 * descriptors); the one being sent stays, so the stream stays whole. */
void coh_outbuf_discard(struct coh_outbuf *o);

/*
 * Client side: sends one message (json plus NUL) with fds attached to its
 * first byte, on a blocking socket, retrying short writes and EINTR.
 * Returns 0 or -errno.
 */
int coh_send_message(int sock, const char *json, const int *fds, size_t n_fds);

/*
 * One sendmsg() of len bytes from buf with fds (n_fds of them, none or up to
 * COH_SCM_FDS_MAX, the kernel's SCM_MAX_FD) as one SCM_RIGHTS message on its
 * first byte; EINTR is retried. The bytes sent, or -errno. For every sender of
 * descriptors: the outbuf, coh_send_message(), the privileged helper's wire,
 * the messages to systemd, and the tests' raw senders.
 */
#define COH_SCM_FDS_MAX 253
ssize_t coh_sendmsg_fds(int sock, const void *buf, size_t len, const int *fds, size_t n_fds, int flags);
