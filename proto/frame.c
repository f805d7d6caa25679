/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "buffer.h"
#include "frame.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Bytes one recvmsg() asks for. The buffer never holds more than one maximal
 * message plus one read, so a peer cannot make us allocate more than that per
 * connection however it slices its bytes. Reads are kept small because every
 * message taken memmove()s what follows it: a read of N bytes of tiny messages
 * costs O(N^2), so N must not be the whole buffer.
 */
#define FRAME_READ_SIZE 4096u
/* One message plus one read: the most a frame ever buffers. */
#define FRAME_BUF_MAX(f) ((f)->max + FRAME_READ_SIZE)

static void close_fds(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0) {
                        /* close() errors are not actionable here, and EINTR still closes on Linux. */
                        (void) close(fds[i]);
                        fds[i] = -1;
                }
}

void coh_frame_init_max(struct coh_frame *f, size_t max) {
        *f = (struct coh_frame) { .max = max };
        for (size_t i = 0; i < COH_MESSAGE_FDS_MAX; i++)
                f->fds[i] = -1;
}

void coh_frame_init(struct coh_frame *f) {
        coh_frame_init_max(f, COH_MESSAGE_MAX);
}

void coh_frame_done(struct coh_frame *f) {
        size_t max = f->max;
        close_fds(f->fds, f->n_fds);
        free(f->buf);
        coh_frame_init_max(f, max);
}

bool coh_frame_complete(const struct coh_frame *f) {
        return f->len > 0 && memchr(f->buf, '\0', f->len);
}

bool coh_frame_partial(const struct coh_frame *f) {
        /* Messages are taken from the front, so unfinished bytes are always at the end. */
        return f->len > 0 && f->buf[f->len - 1] != '\0';
}

/* Grows the buffer geometrically to hold at least `want` bytes, never past `limit`. */
static int frame_grow(struct coh_frame *f, size_t want, size_t limit) {
        size_t cap;
        char *p;

        assert(want <= limit);
        if (want <= f->cap)
                return 0;

        cap = f->cap > 0 ? f->cap : FRAME_READ_SIZE;
        while (cap < want && cap <= limit / 2)
                cap *= 2;
        if (cap < want || cap > limit)
                cap = limit;

        p = realloc(f->buf, cap);
        if (!p)
                return -ENOMEM;
        f->buf = p;
        f->cap = cap;
        return 0;
}

/*
 * Where descriptors that came with a read belong (the proofs are at
 * coh_frame_recv): to a message that starts in that read, for any sender that
 * follows the convention. So they are tied to the one message that starts in
 * it; a read in which no message starts brought them in the middle of one, and
 * a read in which several start cannot tell which: both are -EPROTO. A message
 * starts at the read's first byte when the frame was on a boundary, and after
 * every NUL that is not the read's last byte.
 */
struct chunk_scan {
        size_t n_starts;
        size_t start;    /* offset in buf of the last message start seen */
};

/*
 * Accepts `n` bytes that already sit at buf + len, with the descriptors that
 * came with them. Ownership of fds passes to the frame on success; on failure
 * they are closed and the bytes are dropped (the connection is done anyway,
 * and keeping half a read would only make the state harder to reason about).
 */
static int frame_commit(struct coh_frame *f, size_t n, int *fds, size_t n_fds) {
        struct chunk_scan scan = {};
        const char *p, *end, *start;
        int r;

        /* Descriptors need a byte, and the slot holds a single message's worth:
         * those of a complete message not yet taken out still fill it. */
        if (n_fds > 0 && (n == 0 || n_fds > COH_MESSAGE_FDS_MAX || f->n_fds > 0)) {
                r = -EPROTO;
                goto fail;
        }
        if (n == 0)
                return 0; /* nothing to scan; buf may not even exist yet */

        if (!coh_frame_partial(f))
                scan = (struct chunk_scan) { .n_starts = 1, .start = f->len };

        /* Each message, NUL included, must fit f->max; an unfinished one
         * that already cannot is rejected now rather than after more buffering. */
        start = f->len > 0 ? memrchr(f->buf, '\0', f->len) : NULL;
        start = start ? start + 1 : f->buf;
        end = f->buf + f->len + n;
        for (p = f->buf + f->len; p < end; p++) {
                p = memchr(p, '\0', end - p);
                if (!p)
                        break;
                if ((size_t) (p - start) + 1 > f->max) {
                        r = -EMSGSIZE;
                        goto fail;
                }
                start = p + 1;
                if (start < end)
                        scan = (struct chunk_scan) { .n_starts = scan.n_starts + 1, .start = start - f->buf };
        }
        if ((size_t) (end - start) >= f->max) {
                r = -EMSGSIZE;
                goto fail;
        }

        if (n_fds > 0) {
                if (scan.n_starts != 1) {
                        r = -EPROTO;
                        goto fail;
                }
                memcpy(f->fds, fds, n_fds * sizeof(int));
                f->n_fds = n_fds;
                f->fds_at = scan.start;
        }
        f->len += n;
        return 0;

fail:
        close_fds(fds, n_fds);
        return r;
}

int coh_frame_feed(struct coh_frame *f, const void *data, size_t len, const int *fds, size_t n_fds) {
        int copy[COH_MESSAGE_FDS_MAX];
        int r;

        if (n_fds > COH_MESSAGE_FDS_MAX) {
                for (size_t i = 0; i < n_fds; i++)
                        (void) close(fds[i]);
                return -EPROTO;
        }
        if (n_fds > 0)
                memcpy(copy, fds, n_fds * sizeof(int));
        /* Bytes fed in take the place of what a look showed: look again next time. */
        f->ahead = 0;

        /* Here the caller decides how big "one read" is. */
        if (len > SIZE_MAX - f->len) {
                r = -ENOMEM;
                goto fail;
        }
        r = frame_grow(f, f->len + len, f->len + len > FRAME_BUF_MAX(f) ? f->len + len : FRAME_BUF_MAX(f));
        if (r < 0)
                goto fail;
        if (len > 0)
                memcpy(f->buf + f->len, data, len);

        return frame_commit(f, len, copy, n_fds);

fail:
        close_fds(copy, n_fds);
        return r;
}

/*
 * Every descriptor in mh's control messages into fds (closing what does not
 * fit): collected before anything is judged, so that each one that made it
 * into our table is closed on every error path. Returns false when the
 * control data is bad (MSG_CTRUNC, not SCM_RIGHTS, too many).
 */
static bool collect_fds(struct msghdr *mh, int fds[static COH_MESSAGE_FDS_MAX], size_t *ret_n) {
        bool good = !(mh->msg_flags & MSG_CTRUNC);
        size_t n_fds = 0;

        for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(mh); cmsg; cmsg = CMSG_NXTHDR(mh, cmsg)) {
                if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
                        good = false;
                        continue;
                }
                size_t k = cmsg->cmsg_len > CMSG_LEN(0) ? (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int) : 0;
                for (size_t i = 0; i < k; i++) {
                        int fd;

                        memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
                        /* Cannot happen with our control buffer, but a privileged
                         * daemon should not abort or leak if the kernel disagrees. */
                        if (n_fds >= COH_MESSAGE_FDS_MAX) {
                                (void) close(fd);
                                good = false;
                                continue;
                        }
                        fds[n_fds++] = fd;
                }
        }
        *ret_n = n_fds;
        return good;
}

/*
 * How coh_frame_recv reads, and why descriptors always reach the message they
 * were sent with.
 *
 * What Linux does (net/unix/af_unix.c and net/core/scm.c; seen on 6.18, and
 * tests/proto/test-frame.c checks each point on the kernel it runs on):
 *  K1. unix_stream_sendmsg() attaches a call's descriptors to the first skb it
 *      queues: they sit on the first byte that sendmsg() wrote. A client that
 *      follows the convention writes a message's descriptors with its first byte.
 *  K2. unix_stream_read_generic() takes an skb's descriptors with the first of
 *      its bytes that a read copies (unix_detach_fds() under !MSG_PEEK), and ends
 *      the read right after that skb ("if (unix_skb_len(skb)) break" when part of
 *      it is left, "if (scm.fp) break" when it is used up). So one read brings at
 *      most one skb's descriptors, the read contains that skb's first byte, and
 *      every byte of the read before it comes from earlier skbs (glued in front).
 *  K3. A MSG_PEEK read that copies any byte of an skb still carrying descriptors
 *      reports them; without a control buffer the kernel drops its duplicates and
 *      sets MSG_CTRUNC, installing nothing. It may also report those of the skb
 *      right after the last byte it returns (in peek mode the loop steps on to
 *      the next skb before it sees that the size is used up): MSG_CTRUNC is "maybe",
 *      its absence is "none". A look ends after an skb that carries descriptors
 *      (the peek branch's "if (UNIXCB(skb).fp) break").
 *  K4. Only we take bytes from this socket's receive queue, so bytes a look
 *      showed stay queued, unchanged and in order, until we read them.
 *  K5. recvmmsg() on a stream socket is one ___sys_recvmsg() per entry, in
 *      order, each a read of its own as in K2 with its own control data
 *      (net/socket.c, do_recvmmsg()); with MSG_DONTWAIT it stops at the first
 *      entry that finds nothing.
 *
 * From K1 and K2: descriptors that come with a read belong to a message that
 * starts in that read (frame_commit ties them to the only one, or refuses).
 *
 * Why a look first, and not one plain read: a client that wrote X, then Y
 * with a descriptor, and one that wrote X and Y in one write with a descriptor
 * (it is X's: several messages in one write are how sd-varlink and
 * coh_outbuf_flush send), queue the same bytes, and by K2 a read of both gets
 * the same bytes and descriptor in either case. No read of more than one byte
 * from a message start can tell them apart, so whatever reads past a message
 * start must first know that no descriptors are queued there, or where the
 * messages end: that is the look (K3).
 *
 * So: one look (MSG_PEEK) of up to FRAME_READ_SIZE bytes when nothing is known
 * (f->ahead == 0); what it showed is remembered (K4) and read without looking
 * again, in one batch of reads (K5) cut where the descriptors need it:
 *  - no descriptors ahead (K3): one read of all of it, crossing boundaries freely;
 *  - maybe some: on a boundary, one byte, then the rest of that message (to its
 *    NUL, as far as the look showed it); inside a message, to its end.
 *    One byte comes from one skb; by K2 its descriptors come with it exactly
 *    when that byte is the first of the skb that carried them, i.e. they were
 *    sent with this message's first byte. A read inside a message has no message
 *    start in it, so descriptors that come with it were sent in the middle of
 *    this message: -EPROTO. Those of the next message stay queued for its own
 *    one-byte read, in this call or the next, which needs no look while the last
 *    one's bytes last.
 * A call and its descriptors, read when they are all queued, costs two system
 * calls (the look, the batch); calls sent back to back cost one batch each and
 * a look per write that carries descriptors (K3). Calls keep their descriptors however the kernel
 * glued the writes, and descriptors sent mid-message are always refused.
 */

/* Every descriptor of one read, judged and handed to frame_commit (which takes them). */
static int commit_read(struct coh_frame *f, struct msghdr *mh, size_t n) {
        int fds[COH_MESSAGE_FDS_MAX];
        size_t n_fds = 0;

        if (!collect_fds(mh, fds, &n_fds)) {
                close_fds(fds, n_fds);
                return -EPROTO;
        }
        /* Descriptors need a byte to ride on, so none can come with EOF. */
        if (n == 0 && n_fds > 0) {
                close_fds(fds, n_fds);
                return -EPROTO;
        }
        return frame_commit(f, n, fds, n_fds);
}

/* The look, into dst: how many bytes are queued (up to room) and whether descriptors may ride on them. */
static ssize_t frame_look(struct coh_frame *f, int sock, char *dst, size_t room) {
        struct iovec iov = { .iov_base = dst, .iov_len = room };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_PEEK);

        if (n < 0)
                return -errno;
        f->ahead = (size_t) n;
        f->ahead_fds = mh.msg_flags & MSG_CTRUNC;
        return n;
}

/* Bytes from buf + from to the end of the message they are in, as far as the look showed. */
static size_t to_message_end(const struct coh_frame *f, size_t from) {
        size_t known = f->len + f->ahead;
        const char *nul = memchr(f->buf + from, '\0', known - from);

        return nul ? (size_t) (nul - (f->buf + from)) + 1 : known - from;
}

ssize_t coh_frame_recv(struct coh_frame *f, int sock) {
        /* Exactly COH_MESSAGE_FDS_MAX: one more and the kernel reports MSG_CTRUNC. */
        union control {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * COH_MESSAGE_FDS_MAX)];
        } control[2];
        struct iovec iov[2];
        struct mmsghdr mm[2] = {};
        unsigned vlen = 0;
        ssize_t total = 0;
        int r;

        /* Only a caller that stopped taking messages gets here with a full buffer. */
        if (f->len >= FRAME_BUF_MAX(f))
                return -ENOBUFS;
        if (f->ahead == 0 && f->len == 0) {
                /* Nothing buffered: look into the stack and keep exactly what was
                 * seen, so that an idle connection holds no buffer (coh_frame_next
                 * frees it once empty) and a small call a small one. */
                char stack[FRAME_READ_SIZE];
                ssize_t n = frame_look(f, sock, stack, sizeof stack);
                if (n <= 0)
                        return n; /* 0: EOF, queue empty and shut down */
                if ((size_t) n > f->cap) {
                        char *p = realloc(f->buf, (size_t) n);
                        if (!p) {
                                f->ahead = 0;
                                return -ENOMEM;
                        }
                        f->buf = p;
                        f->cap = (size_t) n;
                }
                memcpy(f->buf, stack, (size_t) n);
        } else if (f->ahead == 0) {
                r = frame_grow(f, f->len + FRAME_READ_SIZE < FRAME_BUF_MAX(f) ? f->len + FRAME_READ_SIZE : FRAME_BUF_MAX(f),
                               FRAME_BUF_MAX(f));
                if (r < 0)
                        return r;
                ssize_t n = frame_look(f, sock, f->buf + f->len,
                                       f->cap - f->len < FRAME_READ_SIZE ? f->cap - f->len : FRAME_READ_SIZE);
                if (n <= 0)
                        return n;
        }

        /* What the look showed sits at buf + len already: it says where messages end. */
        if (!f->ahead_fds)
                iov[vlen++] = (struct iovec) { .iov_base = f->buf + f->len, .iov_len = f->ahead };
        else {
                size_t at = f->len;
                if (!coh_frame_partial(f)) {
                        iov[vlen++] = (struct iovec) { .iov_base = f->buf + at, .iov_len = 1 };
                        at++;
                }
                /* A one-byte message (its NUL alone) has no rest. */
                size_t rest = at < f->len + f->ahead && (at == f->len || f->buf[at - 1] != '\0')
                                      ? to_message_end(f, at) : 0;
                if (rest > 0)
                        iov[vlen++] = (struct iovec) { .iov_base = f->buf + at, .iov_len = rest };
        }
        for (unsigned i = 0; i < vlen; i++)
                mm[i].msg_hdr = (struct msghdr) {
                        .msg_iov = &iov[i],
                        .msg_iovlen = 1,
                        .msg_control = &control[i],
                        .msg_controllen = sizeof(control[i]),
                };

        /* One entry is a plain recvmsg(), which every seccomp filter knows. */
        int got;
        if (vlen == 1) {
                ssize_t n = recvmsg(sock, &mm[0].msg_hdr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                got = n < 0 ? -1 : 1;
                mm[0].msg_len = n < 0 ? 0 : (unsigned) n;
        } else
                got = recvmmsg(sock, mm, vlen, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
        if (got < 0) {
                f->ahead = 0;
                return -errno;
        }
        for (int i = 0; i < got; i++) {
                size_t n = mm[i].msg_len;
                r = commit_read(f, &mm[i].msg_hdr, n);
                if (r < 0) {
                        /* Entries after it were read all the same: their descriptors go too. */
                        for (int k = i + 1; k < got; k++) {
                                int fds[COH_MESSAGE_FDS_MAX];
                                size_t n_fds = 0;
                                (void) collect_fds(&mm[k].msg_hdr, fds, &n_fds);
                                close_fds(fds, n_fds);
                        }
                        f->ahead = 0;
                        return r;
                }
                total += (ssize_t) n;
                if (n < iov[i].iov_len) {
                        /* K4 says this cannot happen; if it does (0: EOF), look again rather than trust it. */
                        f->ahead = 0;
                        return total;
                }
        }
        f->ahead -= (size_t) total;
        return total;
}

int coh_frame_next(struct coh_frame *f, struct coh_message *m) {
        const char *nul;
        size_t len, used;
        char *json;

        *m = (struct coh_message) {};
        for (size_t i = 0; i < COH_MESSAGE_FDS_MAX; i++)
                m->fds[i] = -1;

        if (f->len == 0)
                return 0;
        nul = memchr(f->buf, '\0', f->len);
        if (!nul)
                return 0;
        len = nul - f->buf;
        used = len + 1;

        /* The usual case, one message and nothing after it: the buffer itself is
         * handed out (no copy), and the frame holds none until the next read. */
        bool whole = len > 0 && used == f->len && f->ahead == 0;
        if (whole) {
                m->json = f->buf;
                m->len = len;
        } else if (len > 0) {
                json = malloc(used);
                if (!json)
                        return -ENOMEM;
                memcpy(json, f->buf, used);
                m->json = json;
                m->len = len;
        }

        /* Descriptors only ever wait at a message start, so fds_at >= used unless it is this one. */
        if (f->n_fds > 0) {
                if (f->fds_at == 0) {
                        memcpy(m->fds, f->fds, f->n_fds * sizeof(int));
                        m->n_fds = f->n_fds;
                        for (size_t i = 0; i < COH_MESSAGE_FDS_MAX; i++)
                                f->fds[i] = -1;
                        f->n_fds = 0;
                        f->fds_at = 0;
                } else {
                        assert(f->fds_at >= used);
                        f->fds_at -= used;
                }
        }

        if (whole) {
                f->buf = NULL;
                f->len = f->cap = 0;
        } else {
                /* What the last look showed beyond len moves along: it is still to be read (K4). */
                memmove(f->buf, f->buf + used, f->len - used + f->ahead);
                f->len -= used;
                if (f->len == 0 && f->ahead == 0) {
                        /* Empty: an idle connection keeps no buffer. */
                        free(f->buf);
                        f->buf = NULL;
                        f->cap = 0;
                }
        }

        if (len == 0) {
                /* Consumed all the same, with whatever it carried, so the frame stays
                 * consistent; the caller is expected to drop the connection. */
                coh_message_done(m);
                return -EBADMSG;
        }
        return 1;
}

int coh_message_take_fd(struct coh_message *m, long index) {
        int fd;

        if (index < 0 || (unsigned long) index >= m->n_fds)
                return -ERANGE;
        fd = m->fds[index];
        if (fd < 0)
                return -EBADF;
        m->fds[index] = -1;
        return fd;
}

void coh_message_done(struct coh_message *m) {
        close_fds(m->fds, m->n_fds);
        free(m->json);
        m->json = NULL;
        m->len = 0;
        m->n_fds = 0;
}

/* Descriptors handed in as const (taken in every case): closed without marking. */
static void close_fds_const(const int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        (void) close(fds[i]);
}

/* Frees the buffer of an empty queue (no descriptors wait in one). */
static void outbuf_release(struct coh_outbuf *o) {
        assert(o->n_fds == 0);
        free(o->fds);
        free(o->buf);
        *o = (struct coh_outbuf) {};
}

void coh_outbuf_done(struct coh_outbuf *o) {
        for (size_t i = 0; i < o->n_fds; i++)
                close_fds(o->fds[i].fds, o->fds[i].n);
        free(o->fds);
        free(o->buf);
        *o = (struct coh_outbuf) {};
}

int coh_outbuf_append(struct coh_outbuf *o, const char *json, size_t limit) {
        size_t n = strlen(json) + 1, queued = o->len - o->off;

        if (n > limit || queued > limit - n)
                return -ENOBUFS;

        /* Reclaim what was sent before growing, so the buffer tracks what is queued. */
        if (o->off > 0) {
                memmove(o->buf, o->buf + o->off, queued);
                for (size_t i = 0; i < o->n_fds; i++)
                        o->fds[i].at -= o->off;
                o->len = queued;
                o->off = 0;
        }

        /* From the first message's size: most queues hold one reply, briefly. */
        int r = coh_buffer_reserve(&o->buf, &o->cap, o->len, n, n);
        if (r < 0)
                return r;

        memcpy(o->buf + o->len, json, n);
        o->len += n;
        return 0;
}

int coh_outbuf_append_fds(struct coh_outbuf *o, const char *json, size_t limit, const int *fds, size_t n_fds) {
        if (n_fds == 0)
                return coh_outbuf_append(o, json, limit);
        if (n_fds > COH_MESSAGE_FDS_MAX) {
                close_fds_const(fds, n_fds);
                return -EINVAL;
        }
        struct coh_outbuf_fds *a = realloc(o->fds, (o->n_fds + 1) * sizeof *a);
        if (!a) {
                close_fds_const(fds, n_fds);
                return -ENOMEM;
        }
        o->fds = a;
        int r = coh_outbuf_append(o, json, limit);
        if (r < 0) {
                close_fds_const(fds, n_fds);
                return r;
        }
        struct coh_outbuf_fds *e = &o->fds[o->n_fds++];
        e->at = o->len - (strlen(json) + 1);
        memcpy(e->fds, fds, n_fds * sizeof *fds);
        e->n = n_fds;
        return 0;
}

int coh_outbuf_send(struct coh_outbuf *o, int sock, const char *json, size_t limit, const int *fds, size_t n_fds) {
        int r;

        /* Behind what waits, in order. */
        if (coh_outbuf_pending(o)) {
                r = coh_outbuf_append_fds(o, json, limit, fds, n_fds);
                return r < 0 ? r : coh_outbuf_flush(o, sock);
        }
        size_t len = strlen(json) + 1;
        if (len > limit || n_fds > COH_MESSAGE_FDS_MAX) {
                close_fds_const(fds, n_fds);
                return len > limit ? -ENOBUFS : -EINVAL;
        }
        ssize_t n = coh_sendmsg_fds(sock, json, len, fds, n_fds, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
                if (n != -EAGAIN) {
                        close_fds_const(fds, n_fds);
                        return (int) n;
                }
                /* Nothing went: all of it waits, its descriptors with it. */
                r = coh_outbuf_append_fds(o, json, limit, fds, n_fds);
                return r < 0 ? r : -EAGAIN;
        }
        /* Some went, the descriptors with the first byte: the kernel holds its own copies. */
        close_fds_const(fds, n_fds);
        if ((size_t) n == len)
                return 0;
        r = coh_outbuf_append(o, json + n, limit);
        if (r < 0)
                return r;
        o->midway = true;
        return -EAGAIN;
}

ssize_t coh_sendmsg_fds(int sock, const void *buf, size_t len, const int *fds, size_t n_fds, int flags) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * COH_SCM_FDS_MAX)];
        } control;
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (n_fds > COH_SCM_FDS_MAX)
                return -EINVAL;
        if (n_fds > 0) {
                /* Only the part in use is cleared: the padding too, which the kernel is handed. */
                mh.msg_control = control.buf;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                memset(control.buf, 0, mh.msg_controllen);
                struct cmsghdr *cmsg = CMSG_FIRSTHDR(&mh);
                cmsg->cmsg_level = SOL_SOCKET;
                cmsg->cmsg_type = SCM_RIGHTS;
                cmsg->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * n_fds);
        }
        do
                n = sendmsg(sock, &mh, flags);
        while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : n;
}

int coh_outbuf_flush(struct coh_outbuf *o, int sock) {
        while (o->off < o->len) {
                struct coh_outbuf_fds *e = o->n_fds > 0 ? &o->fds[0] : NULL;
                /* Bytes before the next message with descriptors go alone, so
                 * the descriptors ride on that message's first byte; from it,
                 * up to the message after it that has descriptors. */
                size_t end = o->len;
                bool with_fds = e && e->at == o->off;
                if (e && !with_fds)
                        end = e->at;
                else if (with_fds && o->n_fds > 1)
                        end = o->fds[1].at;
                ssize_t n = coh_sendmsg_fds(sock, o->buf + o->off, end - o->off, with_fds ? e->fds : NULL,
                                            with_fds ? e->n : 0, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0)
                        return (int) n;
                if (with_fds && n > 0) {
                        /* The kernel holds its own references now. */
                        close_fds(e->fds, e->n);
                        memmove(&o->fds[0], &o->fds[1], (o->n_fds - 1) * sizeof *o->fds);
                        o->n_fds--;
                }
                o->off += (size_t) n;
                if (n > 0)
                        o->midway = o->off < o->len && o->buf[o->off - 1] != '\0';
        }

        /* Empty: an idle connection keeps no buffer. */
        outbuf_release(o);
        return 0;
}

void coh_outbuf_discard(struct coh_outbuf *o) {
        size_t keep = o->off;

        if (o->midway) {
                const char *nul = memchr(o->buf + o->off, '\0', o->len - o->off);
                keep = nul ? (size_t) (nul - o->buf) + 1 : o->len;
        }
        /* Descriptors go with a message's first byte, so none wait inside the one being sent. */
        for (size_t i = 0; i < o->n_fds; i++) {
                assert(o->fds[i].at >= keep);
                close_fds(o->fds[i].fds, o->fds[i].n);
        }
        o->n_fds = 0;
        o->len = keep;
        if (o->off == o->len)
                outbuf_release(o);
}

int coh_send_message(int sock, const char *json, const int *fds, size_t n_fds) {
        size_t len = strlen(json) + 1, off = 0;

        /* The receiver would reject either; refuse before anything hits the wire. */
        if (len > COH_MESSAGE_MAX)
                return -EMSGSIZE;
        if (n_fds > COH_MESSAGE_FDS_MAX)
                return -EINVAL;

        while (off < len) {
                /* Only the first byte carries the descriptors; once any byte is
                 * out, they went with it. */
                ssize_t n = coh_sendmsg_fds(sock, json + off, len - off, fds, off == 0 ? n_fds : 0, MSG_NOSIGNAL);
                if (n < 0)
                        return (int) n;
                off += (size_t) n;
        }

        return 0;
}
