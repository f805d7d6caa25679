/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * journald's native protocol (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/): one datagram per
 * record on /run/systemd/journal/socket, made of "KEY=value\n" fields, or, for a value that
 * contains a newline, "KEY\n" + 64-bit little-endian length + value + "\n".
 *
 * We do not use sd_journal_send(): when journald stops reading, it blocks in sendmsg() once the
 * socket's receive queue is full (net.unix.max_dgram_qlen datagrams), and that would freeze
 * the daemon's single-threaded event loop.
 */

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <event2/event.h>

#include "buffer.h"
#include "journal.h"
#include "messages.h"

#define JOURNAL_SOCKET_DEFAULT "/run/systemd/journal/socket"
#define JOURNAL_FIELD_NAME_MAX 64
/* The record buffer is kept up to this size; one grown past it for a huge record is let go. */
#define JOURNAL_SCRATCH_KEEP (64 * 1024)

#define STRLEN(s) (sizeof(s "") - 1)

/* A datagram being built, in a buffer that grows and is kept. */
struct datagram {
        char *data;
        size_t size, allocated;
};

/* A datagram waiting in the queue: only records journald is not taking now are allocated. */
struct record {
        struct record *next;
        size_t size;
        char data[];    /* the datagram, exactly as sent */
};

struct coh_journal {
        int fd;
        bool connected;
        struct sockaddr_un address;
        socklen_t address_len;

        struct event *write_event;

        /* Records waiting for journald, oldest first. */
        struct record *queue_head, *queue_tail;
        size_t n_queued;
        size_t queue_max;

        size_t n_dropped;               /* since coh_journal_new() */
        size_t n_dropped_unreported;    /* not yet announced in a "dropped" record */

        /* Where coh_journal_send() builds each record: one sent at once costs no allocation. */
        struct datagram scratch;
};

/* The characters of a field name a client may set: uppercase letters, digits and '_' (journald's
 * journal_field_valid(), src/libsystemd/sd-journal/journal-file.c); NUL is not one, which ends the
 * scan of a name. */
static const bool field_name_char[256] = {
        ['A' ... 'Z'] = true,
        ['0' ... '9'] = true,
        ['_'] = true,
};

/*
 * The length of name when journald takes it from a client (at most 64 characters, not starting
 * with a digit, and not starting with '_': those are the trusted fields journald adds itself, it
 * would silently drop ours) and it is none of the fields we set ourselves (a second copy would
 * make the record ambiguous); 0 when not.
 */
static size_t field_name_length(const char *name) {
        size_t n = 0;

        if (!name || (name[0] >= '0' && name[0] <= '9') || name[0] == '_')
                return 0;
        while (field_name_char[(unsigned char) name[n]])
                n++;
        if (name[n] != 0 || n > JOURNAL_FIELD_NAME_MAX)
                return 0;

        switch (n) {
        case STRLEN("MESSAGE"):
                return memcmp(name, "MESSAGE", n) == 0 ? 0 : n;
        case STRLEN("PRIORITY"):
                return memcmp(name, "PRIORITY", n) == 0 ? 0 : n;
        case STRLEN("MESSAGE_ID"):
                return memcmp(name, "MESSAGE_ID", n) == 0 ? 0 : n;
        case STRLEN("SYSLOG_IDENTIFIER"):
                return memcmp(name, "SYSLOG_IDENTIFIER", n) == 0 ? 0 : n;
        default:
                return n;
        }
}

static const bool lowercase_hex_digit[256] = {
        ['0' ... '9'] = true,
        ['a' ... 'f'] = true,
};

static bool message_id_is_valid(const char *id) {
        size_t n = 0;

        /* 128-bit id as 32 lowercase hex digits, as journalctl -x and the catalog match it. */
        if (!id)
                return false;
        while (lowercase_hex_digit[(unsigned char) id[n]])
                n++;
        return n == 32 && id[n] == 0;
}

/* Room for more bytes: rarely grown, the buffer is kept from record to record. */
static inline int datagram_reserve(struct datagram *d, size_t more) {
        return coh_buffer_reserve(&d->data, &d->allocated, d->size, more, 4096);
}

/* Appends "NAME=value\n", or the binary form when value has a newline; name has name_len bytes. */
static int datagram_put(struct datagram *d, const char *name, size_t name_len, const char *value) {
        /* Length and newline in one pass: glibc's strchrnul() is the vectorised strlen() that
         * also stops at '\n'. */
        const char *nl = strchrnul(value, '\n');
        bool binary = *nl != 0;
        size_t v = (size_t) (nl - value) + (binary ? strlen(nl) : 0);
        char *p;

        if (datagram_reserve(d, name_len + 1 + (binary ? sizeof(uint64_t) : 0) + v + 1) < 0)
                return -ENOMEM;

        p = mempcpy(d->data + d->size, name, name_len);
        if (binary) {
                /* Binary form: the only way to carry a newline inside a value. */
                uint64_t le = htole64((uint64_t) v);

                *p++ = '\n';
                p = mempcpy(p, &le, sizeof(le));
        } else
                *p++ = '=';
        p = mempcpy(p, value, v);
        *p++ = '\n';
        d->size = (size_t) (p - d->data);
        return 0;
}

/*
 * The record's datagram into d, replacing what it held. Returns -EINVAL on a field name journald
 * would not take (coh_journal_send()), unless the names are trusted
 * (coh_journal_send_const_names()); -ENOMEM.
 */
static int datagram_build(struct datagram *d, int priority, const char *message_id, const char *message,
                          const struct coh_journal_field *fields, size_t n_fields, bool check_names) {
        static const char identifier[] = "\nSYSLOG_IDENTIFIER=coherencyd\n";
        char *p;
        int r;

        assert(priority >= LOG_EMERG && priority <= LOG_DEBUG);
        assert(!message_id || message_id_is_valid(message_id));

        d->size = 0;
        r = datagram_put(d, "MESSAGE", STRLEN("MESSAGE"), message);
        if (r < 0)
                return r;

        /* The rest of the header, without looking for newlines: there are none in a checked
         * MESSAGE_ID (32 hex digits), a priority's digit or our name. */
        r = datagram_reserve(d, STRLEN("MESSAGE_ID=\n") + 32 + STRLEN("PRIORITY=0") + sizeof(identifier) - 1);
        if (r < 0)
                return r;
        p = d->data + d->size;
        if (message_id) {
                p = mempcpy(p, "MESSAGE_ID=", STRLEN("MESSAGE_ID="));
                p = mempcpy(p, message_id, 32);
                *p++ = '\n';
        }
        p = mempcpy(p, "PRIORITY=", STRLEN("PRIORITY="));
        *p++ = (char) ('0' + priority);
        p = mempcpy(p, identifier, sizeof(identifier) - 1);
        d->size = (size_t) (p - d->data);

        for (size_t i = 0; r >= 0 && i < n_fields; i++) {
                size_t n;

                if (check_names) {
                        n = field_name_length(fields[i].name);
                        if (n == 0)
                                return -EINVAL;
                } else {
                        assert(field_name_length(fields[i].name) > 0);
                        n = strlen(fields[i].name);
                }
                if (fields[i].value)
                        r = datagram_put(d, fields[i].name, n, fields[i].value);
        }
        return r;
}

static struct record *record_new(const char *data, size_t size) {
        struct record *r = malloc(sizeof(struct record) + size);

        if (!r)
                return NULL;
        r->next = NULL;
        r->size = size;
        memcpy(r->data, data, size);
        return r;
}

/* Iterates over the fields of a datagram we built ourselves, so it need not distrust it. */
static bool datagram_next_field(const char *data, size_t size, size_t *offset,
                                const char **ret_name, size_t *ret_name_len,
                                const char **ret_value, size_t *ret_value_len) {
        const char *p = data + *offset, *end = data + size, *nl, *eq;

        if (p >= end)
                return false;

        nl = memchr(p, '\n', end - p);
        assert(nl);
        eq = memchr(p, '=', nl - p);

        *ret_name = p;
        if (eq) {
                *ret_name_len = eq - p;
                *ret_value = eq + 1;
                *ret_value_len = nl - eq - 1;
                *offset = nl + 1 - data;
        } else {
                uint64_t le;

                memcpy(&le, nl + 1, sizeof(le));
                *ret_name_len = nl - p;
                *ret_value = nl + 1 + sizeof(le);
                *ret_value_len = (size_t) le64toh(le);
                *offset = *ret_value + *ret_value_len + 1 - data;
        }
        return true;
}

static bool name_is(const char *name, size_t len, const char *s) {
        return strlen(s) == len && memcmp(name, s, len) == 0;
}

static void put_escaped(FILE *f, const char *s, size_t n) {
        /* The line must stay one line: escape control characters (and '\' so it stays unambiguous). */
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c == '\n')
                        fputs("\\n", f);
                else if (c == '\\')
                        fputs("\\\\", f);
                else if (c < ' ' || c == 0x7f)
                        fprintf(f, "\\x%02x", c);
                else
                        fputc(c, f);
        }
}

static bool stderr_is_journal_stream(void) {
        unsigned long long dev, ino;
        const char *e;
        struct stat st;

        /* systemd.exec(5): JOURNAL_STREAM=<dev>:<ino> names the stream systemd connected stdout/stderr
         * to; it is inherited, so only trust it while our stderr still is that very stream. */
        e = getenv("JOURNAL_STREAM");
        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

static void write_all_stderr(const char *buf, size_t n) {
        while (n > 0) {
                ssize_t k = write(STDERR_FILENO, buf, n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return; /* Nowhere else to report it; the record is lost. */
                buf += k;
                n -= (size_t) k;
        }
}

/* "MESSAGE (KEY=value KEY=value)", with a "<N>" priority prefix for journald's stream parser. */
static void datagram_write_stderr(const char *data, size_t size) {
        const char *name, *value, *message = "";
        size_t name_len, value_len, message_len = 0, offset = 0;
        char *buf = NULL;
        size_t buf_size = 0;
        bool first = true;
        int priority = LOG_INFO;
        FILE *f;

        f = open_memstream(&buf, &buf_size);
        if (!f)
                return;

        while (datagram_next_field(data, size, &offset, &name, &name_len, &value, &value_len)) {
                if (name_is(name, name_len, "MESSAGE")) {
                        message = value;
                        message_len = value_len;
                } else if (name_is(name, name_len, "PRIORITY"))
                        priority = value[0] - '0';
        }

        if (stderr_is_journal_stream())
                fprintf(f, "<%d>", priority);
        put_escaped(f, message, message_len);

        offset = 0;
        while (datagram_next_field(data, size, &offset, &name, &name_len, &value, &value_len)) {
                if (name_is(name, name_len, "MESSAGE") || name_is(name, name_len, "MESSAGE_ID") ||
                    name_is(name, name_len, "PRIORITY") || name_is(name, name_len, "SYSLOG_IDENTIFIER"))
                        continue;

                fputs(first ? " (" : " ", f);
                fwrite(name, 1, name_len, f);
                fputc('=', f);
                put_escaped(f, value, value_len);
                first = false;
        }
        if (!first)
                fputc(')', f);
        fputc('\n', f);

        if (fclose(f) == 0)
                /* One write() per line, so lines from several writers do not interleave. */
                write_all_stderr(buf, buf_size);
        free(buf);
}

static bool errno_is_no_listener(int e) {
        /* No journald: the socket path does not exist (or a path component is not a directory),
         * or the socket file is stale with nobody bound to it. */
        return e == ENOENT || e == ENOTDIR || e == ECONNREFUSED;
}

/*
 * Returns 0 when the record went to journald, or to stderr because there is no journald;
 * -EAGAIN when journald is not taking records right now; another negative errno on failure.
 */
static int journal_send_datagram(struct coh_journal *j, const char *data, size_t size) {
        assert(j);
        assert(data);

        /* Two attempts: a connected datagram socket whose peer went away (journald restarted)
         * fails once with ECONNREFUSED and is disconnected; connect again to the new socket. */
        for (unsigned attempt = 0; attempt < 2; attempt++) {
                if (!j->connected) {
                        /* Connected rather than sendto() each time: only then does poll() report
                         * EPOLLOUT according to journald's receive queue, which the write event
                         * relies on. */
                        if (connect(j->fd, (const struct sockaddr *) &j->address, j->address_len) < 0) {
                                if (errno_is_no_listener(errno))
                                        goto fallback;
                                return -errno;
                        }
                        j->connected = true;
                }

                if (send(j->fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
                        return 0;

                if (errno == EAGAIN || errno == ENOBUFS)
                        return -EAGAIN;
                if (errno != ECONNREFUSED && errno != ECONNRESET && errno != ENOTCONN)
                        return -errno; /* EMSGSIZE included: nothing to retry. */

                j->connected = false;
        }

fallback:
        datagram_write_stderr(data, size);
        return 0;
}

static void journal_update_event(struct coh_journal *j) {
        bool want = j->queue_head || j->n_dropped_unreported > 0;

        if (want == !!event_pending(j->write_event, EV_WRITE, NULL))
                return;

        /* If arming fails, the next coh_journal_send() tries again; nothing else we can do. */
        if (want)
                (void) event_add(j->write_event, NULL);
        else
                (void) event_del(j->write_event);
}

static void journal_enqueue(struct coh_journal *j, struct record *r) {
        r->next = NULL;
        if (j->queue_tail)
                j->queue_tail->next = r;
        else
                j->queue_head = r;
        j->queue_tail = r;
        j->n_queued++;
}

static struct record *journal_dequeue(struct coh_journal *j) {
        struct record *r = j->queue_head;

        if (!r)
                return NULL;
        j->queue_head = r->next;
        if (!j->queue_head)
                j->queue_tail = NULL;
        j->n_queued--;
        r->next = NULL;
        return r;
}

static int journal_dropped_datagram(struct coh_journal *j, struct datagram *ret) {
        char count[32], message[128];

        snprintf(count, sizeof(count), "%zu", j->n_dropped_unreported);
        snprintf(message, sizeof(message),
                 "Dropped %zu journal record(s) while journald was not accepting them.",
                 j->n_dropped_unreported);

        return datagram_build(ret, LOG_WARNING, COH_MESSAGE_JOURNAL_DROPPED, message,
                              &(const struct coh_journal_field) { "COHERENCYD_DROPPED", count }, 1,
                              /* check_names= */ false);
}

/*
 * Sends the "records were dropped" record, if drops are unreported. Returns -EAGAIN while journald
 * is busy, unless queue_if_busy: then it is queued, which coh_journal_queued() shows, so a caller
 * draining the queue waits for it too.
 */
static int journal_report_drops(struct coh_journal *j, bool queue_if_busy) {
        /* Not j->scratch: coh_journal_send() has its record there while it reports drops. */
        struct datagram d = {};
        struct record *r;
        int k;

        if (j->n_dropped_unreported == 0)
                return 0;

        k = journal_dropped_datagram(j, &d);
        if (k < 0) {
                free(d.data);
                return k;
        }

        k = journal_send_datagram(j, d.data, d.size);
        if (k == -EAGAIN && queue_if_busy) {
                /* Even when queue_max is 0: it is one record, and only ever queued into an empty
                 * queue, so this cannot grow without bound. */
                r = record_new(d.data, d.size);
                if (!r) {
                        /* As if it had not been built: reported on a later wake-up. */
                        free(d.data);
                        return -ENOMEM;
                }
                journal_enqueue(j, r);
                k = 0;
        }
        free(d.data);
        if (k == -EAGAIN)
                return k;

        /* Reported (or lost for good): either way, do not spin on it. */
        j->n_dropped_unreported = 0;
        return 0;
}

/* Sends queued records in order until journald stops taking them; then reports drops. */
static void journal_flush(struct coh_journal *j) {
        int k;

        while (j->queue_head) {
                k = journal_send_datagram(j, j->queue_head->data, j->queue_head->size);
                if (k == -EAGAIN)
                        goto finish;

                /* Sent, or failed for good. The caller was told it was queued and will hear
                 * nothing else of it, so a failure counts as a drop. */
                free(journal_dequeue(j));
                if (k < 0) {
                        j->n_dropped++;
                        j->n_dropped_unreported++;
                }
        }

        /* The queue drained: journald takes records again. A failure here (ENOMEM) is retried
         * on the next wake-up, the event stays armed while drops are unreported. */
        (void) journal_report_drops(j, /* queue_if_busy= */ true);

finish:
        journal_update_event(j);
}

static void on_writable(evutil_socket_t fd, short what, void *userdata) {
        journal_flush(userdata);
}

int coh_journal_new(struct event_base *base, const char *socket_path, size_t queue_max,
                    struct coh_journal **ret) {
        struct coh_journal *j;
        size_t l;
        int r;

        if (!base || !ret)
                return -EINVAL;

        if (!socket_path)
                socket_path = JOURNAL_SOCKET_DEFAULT;
        l = strlen(socket_path);
        if (l == 0 || l >= sizeof(j->address.sun_path))
                return -EINVAL;

        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        j->queue_max = queue_max;
        j->address.sun_family = AF_UNIX;
        memcpy(j->address.sun_path, socket_path, l + 1);
        j->address_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l + 1);

        j->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (j->fd < 0) {
                r = -errno;
                goto fail;
        }

        j->write_event = event_new(base, j->fd, EV_WRITE | EV_PERSIST, on_writable, j);
        if (!j->write_event) {
                r = -ENOMEM;
                goto fail;
        }

        /* Connect early so the first record does not pay for it; a journald that is not there
         * yet is not an error (records go to stderr until it appears). */
        if (connect(j->fd, (const struct sockaddr *) &j->address, j->address_len) >= 0)
                j->connected = true;

        *ret = j;
        return 0;

fail:
        if (j->fd >= 0)
                close(j->fd);
        free(j);
        return r;
}

void coh_journal_free(struct coh_journal *j) {
        struct datagram d = {};
        struct record *r;

        if (!j)
                return;

        journal_flush(j);

        /* Whatever journald still would not take goes to stderr, which systemd usually connects
         * to the journal too: better out of order than lost. */
        while ((r = journal_dequeue(j))) {
                datagram_write_stderr(r->data, r->size);
                free(r);
        }
        if (j->n_dropped_unreported > 0 && journal_dropped_datagram(j, &d) >= 0)
                datagram_write_stderr(d.data, d.size);
        free(d.data);

        free(j->scratch.data);
        event_free(j->write_event);
        close(j->fd);
        free(j);
}

/* Sends the datagram in d now, or queues a copy of it, or drops it (coh_journal_send()). */
static int journal_submit(struct coh_journal *j, const struct datagram *d) {
        struct record *r;
        int k;

        /* Order is preserved: while anything waits, new records wait behind it. Drops not yet
         * reported with nothing queued (queue_max 0) are reported first, if journald takes
         * records again; if it does not, this record cannot go either. */
        if (!j->queue_head && journal_report_drops(j, /* queue_if_busy= */ false) != -EAGAIN) {
                k = journal_send_datagram(j, d->data, d->size);
                if (k != -EAGAIN)
                        return k;
        }

        if (j->n_queued >= j->queue_max) {
                j->n_dropped++;
                j->n_dropped_unreported++;
                journal_update_event(j);
                return -ENOBUFS;
        }

        /* Only now a copy of its own: journald is behind, the record waits. */
        r = record_new(d->data, d->size);
        if (!r)
                return -ENOMEM;
        journal_enqueue(j, r);
        journal_update_event(j);
        return 0;
}

bool coh_journal_field_name_valid(const char *name) {
        return field_name_length(name) > 0;
}

static int journal_send(struct coh_journal *j, int priority, const char *message_id, const char *message,
                        const struct coh_journal_field *fields, size_t n_fields, bool check_names) {
        struct datagram *d;
        int k;

        assert(j);

        if (priority < LOG_EMERG || priority > LOG_DEBUG)
                return -EINVAL;
        if ((message_id && !message_id_is_valid(message_id)) || !message)
                return -EINVAL;
        if (n_fields > 0 && !fields)
                return -EINVAL;

        /* Field names are checked as the record is built: nothing is sent before all are. */
        d = &j->scratch;
        k = datagram_build(d, priority, message_id, message, fields, n_fields, check_names);
        if (k >= 0)
                k = journal_submit(j, d);

        if (d->allocated > JOURNAL_SCRATCH_KEEP) {
                free(d->data);
                *d = (struct datagram) {};
        }
        return k;
}

int coh_journal_send(struct coh_journal *j, int priority, const char *message_id, const char *message,
                     const struct coh_journal_field *fields, size_t n_fields) {
        return journal_send(j, priority, message_id, message, fields, n_fields, /* check_names= */ true);
}

int coh_journal_send_const_names(struct coh_journal *j, int priority, const char *message_id, const char *message,
                                 const struct coh_journal_field *fields, size_t n_fields) {
        return journal_send(j, priority, message_id, message, fields, n_fields, /* check_names= */ false);
}

size_t coh_journal_queued(const struct coh_journal *j) {
        assert(j);
        return j->n_queued;
}

size_t coh_journal_dropped(const struct coh_journal *j) {
        assert(j);
        return j->n_dropped;
}
