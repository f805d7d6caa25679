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

#include "journal.h"
#include "messages.h"

#define JOURNAL_SOCKET_DEFAULT "/run/systemd/journal/socket"
#define JOURNAL_FIELD_NAME_MAX 64

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
};

static bool field_name_is_valid(const char *name) {
        size_t n = 0;

        /* journald's rules for fields a client may set: uppercase letters, digits and '_', at most
         * 64 characters, not starting with a digit, and not starting with '_' (those are the
         * trusted fields journald adds itself, it would silently drop ours). */
        if (!name || !name[0] || name[0] == '_' || (name[0] >= '0' && name[0] <= '9'))
                return false;

        for (const char *p = name; *p; p++, n++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
                        return false;

        return n <= JOURNAL_FIELD_NAME_MAX;
}

static bool field_name_is_reserved(const char *name) {
        /* We set these ourselves; a second copy would make the record ambiguous. */
        static const char *const reserved[] = { "MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER" };

        for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
                if (strcmp(name, reserved[i]) == 0)
                        return true;
        return false;
}

static bool message_id_is_valid(const char *id) {
        size_t n = 0;

        /* 128-bit id as 32 lowercase hex digits, as journalctl -x and the catalog match it. */
        if (!id)
                return false;
        for (const char *p = id; *p; p++, n++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return n == 32;
}

static size_t field_size(const char *name, const char *value) {
        size_t k = strlen(name), v = strlen(value);

        if (strchr(value, '\n'))
                return k + 1 + sizeof(uint64_t) + v + 1;
        return k + 1 + v + 1;
}

static char *field_put(char *p, const char *name, const char *value) {
        size_t k = strlen(name), v = strlen(value);

        p = mempcpy(p, name, k);
        if (strchr(value, '\n')) {
                /* Binary form: the only way to carry a newline inside a value. */
                uint64_t le = htole64((uint64_t) v);

                *p++ = '\n';
                p = mempcpy(p, &le, sizeof(le));
        } else
                *p++ = '=';
        p = mempcpy(p, value, v);
        *p++ = '\n';
        return p;
}

static int record_new(int priority, const char *message_id, const char *message,
                      const struct coh_journal_field *fields, size_t n_fields, struct record **ret) {
        char prio[2] = { (char) ('0' + priority), 0 };
        struct record *r;
        size_t size;
        char *p;

        assert(priority >= LOG_EMERG && priority <= LOG_DEBUG);
        assert(ret);

        size = field_size("MESSAGE", message) + (message_id ? field_size("MESSAGE_ID", message_id) : 0) +
               field_size("PRIORITY", prio) + field_size("SYSLOG_IDENTIFIER", "coherencyd");
        for (size_t i = 0; i < n_fields; i++)
                if (fields[i].value)
                        size += field_size(fields[i].name, fields[i].value);

        r = malloc(sizeof(struct record) + size);
        if (!r)
                return -ENOMEM;

        p = r->data;
        p = field_put(p, "MESSAGE", message);
        if (message_id)
                p = field_put(p, "MESSAGE_ID", message_id);
        p = field_put(p, "PRIORITY", prio);
        p = field_put(p, "SYSLOG_IDENTIFIER", "coherencyd");
        for (size_t i = 0; i < n_fields; i++)
                if (fields[i].value)
                        p = field_put(p, fields[i].name, fields[i].value);
        assert((size_t) (p - r->data) == size);

        r->next = NULL;
        r->size = size;
        *ret = r;
        return 0;
}

/* Iterates over the fields of a datagram we built ourselves, so it need not distrust it. */
static bool record_next_field(const struct record *r, size_t *offset,
                              const char **ret_name, size_t *ret_name_len,
                              const char **ret_value, size_t *ret_value_len) {
        const char *p = r->data + *offset, *end = r->data + r->size, *nl, *eq;

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
                *offset = nl + 1 - r->data;
        } else {
                uint64_t le;

                memcpy(&le, nl + 1, sizeof(le));
                *ret_name_len = nl - p;
                *ret_value = nl + 1 + sizeof(le);
                *ret_value_len = (size_t) le64toh(le);
                *offset = *ret_value + *ret_value_len + 1 - r->data;
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
static void record_write_stderr(const struct record *r) {
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

        while (record_next_field(r, &offset, &name, &name_len, &value, &value_len)) {
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
        while (record_next_field(r, &offset, &name, &name_len, &value, &value_len)) {
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
static int journal_send_record(struct coh_journal *j, const struct record *r) {
        assert(j);
        assert(r);

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

                if (send(j->fd, r->data, r->size, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
                        return 0;

                if (errno == EAGAIN || errno == ENOBUFS)
                        return -EAGAIN;
                if (errno != ECONNREFUSED && errno != ECONNRESET && errno != ENOTCONN)
                        return -errno; /* EMSGSIZE included: nothing to retry. */

                j->connected = false;
        }

fallback:
        record_write_stderr(r);
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

static int journal_new_dropped_record(struct coh_journal *j, struct record **ret) {
        char count[32], message[128];

        snprintf(count, sizeof(count), "%zu", j->n_dropped_unreported);
        snprintf(message, sizeof(message),
                 "Dropped %zu journal record(s) while journald was not accepting them.",
                 j->n_dropped_unreported);

        return record_new(LOG_WARNING, COH_MESSAGE_JOURNAL_DROPPED, message,
                          &(const struct coh_journal_field) { "COHERENCYD_DROPPED", count }, 1, ret);
}

/*
 * Sends the "records were dropped" record, if drops are unreported. Returns -EAGAIN while journald
 * is busy, unless queue_if_busy: then it is queued, which coh_journal_queued() shows, so a caller
 * draining the queue waits for it too.
 */
static int journal_report_drops(struct coh_journal *j, bool queue_if_busy) {
        struct record *r;
        int k;

        if (j->n_dropped_unreported == 0)
                return 0;

        k = journal_new_dropped_record(j, &r);
        if (k < 0)
                return k;

        k = journal_send_record(j, r);
        if (k == -EAGAIN && queue_if_busy) {
                /* Even when queue_max is 0: it is one record, and only ever queued into an empty
                 * queue, so this cannot grow without bound. */
                journal_enqueue(j, r);
                k = 0;
        } else
                free(r);
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
                k = journal_send_record(j, j->queue_head);
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
        struct record *r;

        if (!j)
                return;

        journal_flush(j);

        /* Whatever journald still would not take goes to stderr, which systemd usually connects
         * to the journal too: better out of order than lost. */
        while ((r = journal_dequeue(j))) {
                record_write_stderr(r);
                free(r);
        }
        if (j->n_dropped_unreported > 0 && journal_new_dropped_record(j, &r) >= 0) {
                record_write_stderr(r);
                free(r);
        }

        event_free(j->write_event);
        close(j->fd);
        free(j);
}

int coh_journal_send(struct coh_journal *j, int priority, const char *message_id, const char *message,
                     const struct coh_journal_field *fields, size_t n_fields) {
        struct record *r = NULL;
        int k;

        assert(j);

        if (priority < LOG_EMERG || priority > LOG_DEBUG)
                return -EINVAL;
        if ((message_id && !message_id_is_valid(message_id)) || !message)
                return -EINVAL;
        if (n_fields > 0 && !fields)
                return -EINVAL;
        for (size_t i = 0; i < n_fields; i++)
                if (!field_name_is_valid(fields[i].name) || field_name_is_reserved(fields[i].name))
                        return -EINVAL;

        k = record_new(priority, message_id, message, fields, n_fields, &r);
        if (k < 0)
                return k;

        /* Order is preserved: while anything waits, new records wait behind it. Drops not yet
         * reported with nothing queued (queue_max 0) are reported first, if journald takes
         * records again; if it does not, this record cannot go either. */
        if (!j->queue_head && journal_report_drops(j, /* queue_if_busy= */ false) != -EAGAIN) {
                k = journal_send_record(j, r);
                if (k != -EAGAIN) {
                        free(r);
                        return k;
                }
        }

        if (j->n_queued >= j->queue_max) {
                free(r);
                j->n_dropped++;
                j->n_dropped_unreported++;
                journal_update_event(j);
                return -ENOBUFS;
        }

        journal_enqueue(j, r);
        journal_update_event(j);
        return 0;
}

size_t coh_journal_queued(const struct coh_journal *j) {
        assert(j);
        return j->n_queued;
}

size_t coh_journal_dropped(const struct coh_journal *j) {
        assert(j);
        return j->n_dropped;
}
