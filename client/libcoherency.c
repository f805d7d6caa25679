/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * libcoherency: the VMM side of coherencyd's Varlink protocol.
 *
 * One connection, at most one call outstanding on it. That rule is what lets
 * the daemon tie the descriptors of a call to the call (DESIGN.md §5), and it
 * keeps the library trivially correct: a reply is always the answer to the
 * one call we have in flight.
 *
 * The socket stays blocking, which is what coh_send_message() expects: our
 * calls are a few hundred bytes and nothing else is queued behind them, so a
 * send practically never waits (SO_SNDTIMEO bounds it by the timeout anyway).
 * Reads never block in the kernel (coh_frame_recv() uses MSG_DONTWAIT and
 * MSG_CMSG_CLOEXEC); the blocking calls wait in poll(), the _finish
 * functions do not wait at all.
 *
 * The kvm-vfio helpers live in kvm-vfio.c; this file is the protocol.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "call.h"
#include "frame.h"
#include "decision-record.h"
#include "grant-record.h"
#include "json-util.h"
#include "libcoherency.h"

#define _public_ __attribute__((visibility("default")))

static const char method_get_info[] = "io.coherencyd.Broker.GetInfo";
static const char method_probe[] = "io.coherencyd.Broker.Probe";
static const char method_request_grant[] = "io.coherencyd.Broker.RequestGrant";
static const char method_release_grant[] = "io.coherencyd.Broker.ReleaseGrant";
static const char method_list_grants[] = "io.coherencyd.Broker.ListGrants";
static const char method_watch_grants[] = "io.coherencyd.Broker.WatchGrants";

enum call_state {
        CALL_IDLE,      /* nothing outstanding */
        CALL_REPLY,     /* one reply expected */
        CALL_STREAM,    /* a "more" call: replies until one without "continues" */
};

enum call_kind {
        KIND_RAW,
        KIND_GET_INFO,
        KIND_PROBE,
        KIND_REQUEST_GRANT,
        KIND_RELEASE_GRANT,
        KIND_LIST_GRANTS,
        KIND_WATCH_GRANTS,
};

struct coherency_client {
        int fd;
        struct coh_frame frame;

        enum call_state state;
        enum call_kind kind;
        const char *method;     /* of the outstanding call, for messages */
        bool got_reply;         /* a reply to the outstanding streaming call arrived */
        char *device;           /* RequestGrant's device, for the grant object */

        uint64_t timeout;       /* usec, COHERENCY_TIMEOUT_INFINITY for none */
        uint64_t deadline;      /* CLOCK_MONOTONIC usec of the outstanding call, UINT64_MAX none */

        /* Once the stream is out of step (EOF, garbage, a short write, a
         * timeout) no later reply could be matched to its call: the socket is
         * shut down and every later call fails with -ENOTCONN. */
        bool broken;
        char broken_reason[512];

        char error_name[128];
        char error[1024];
        char *error_parameters;
        int backend_errno;
        char *backend_operation;
};

/* The daemon's own device record and field table (proto/decision-record.h). */
struct coherency_device {
        struct coh_device_record rec;
};

struct coherency_facts {
        char file[48];
        struct coherency_device device;         /* the deciding device */
        struct coherency_device *devices;       /* each device of the group */
        size_t n_devices;
};

/* The daemon's own grant record and field table (proto/grant-record.h). */
struct coherency_grant_info {
        struct coh_grant_record rec;
};

/* ---- small helpers -------------------------------------------------------- */

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* Copies at most n-1 bytes and never leaves half a UTF-8 sequence at the end. */
static void strcpy_truncate(char *dst, size_t n, const char *src) {
        size_t l;

        if (n == 0)
                return;
        l = strnlen(src, n);
        if (l >= n) {
                l = n - 1;
                /* src[l] is the first byte we drop; while it continues a sequence, drop its start too. */
                while (l > 0 && ((unsigned char) src[l] & 0xc0) == 0x80)
                        l--;
        }
        memcpy(dst, src, l);
        dst[l] = '\0';
}

static void clear_error(struct coherency_client *c) {
        c->error_name[0] = '\0';
        c->error[0] = '\0';
        free(c->error_parameters);
        c->error_parameters = NULL;
        c->backend_errno = 0;
        free(c->backend_operation);
        c->backend_operation = NULL;
}

/* The message is shown to operators on one line: no control characters from the daemon. */
static void set_error_message(struct coherency_client *c, const char *name, const char *message) {
        strcpy_truncate(c->error_name, sizeof(c->error_name), name);
        strcpy_truncate(c->error, sizeof(c->error), message);
        for (char *p = c->error; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = ' ';
}

/* A local failure: no daemon error name. Returns error (negative), so callers can `return client_error(...)`. */
__attribute__((format(printf, 3, 4)))
static int client_error(struct coherency_client *c, int error, const char *format, ...) {
        char buf[sizeof(c->error)];
        va_list ap;

        clear_error(c);
        /* %m in format means the error passed in, not whatever errno happens to be. */
        errno = -error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        set_error_message(c, "", buf);
        return error;
}

/* The connection is out of step: shut it down (the daemon ends its grants) and refuse every later call. */
static int client_break(struct coherency_client *c, int error, const char *format, ...) __attribute__((format(printf, 3, 4)));
static int client_break(struct coherency_client *c, int error, const char *format, ...) {
        char buf[sizeof(c->error)];
        va_list ap;

        errno = -error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        (void) client_error(c, error, "%s", buf);
        strcpy_truncate(c->broken_reason, sizeof(c->broken_reason), c->error);
        c->broken = true;
        c->state = CALL_IDLE;
        c->deadline = UINT64_MAX;
        free(c->device);
        c->device = NULL;
        /* The descriptor stays open (and owned by c) until coherency_client_free(), so an
         * event loop polling it never sees a recycled number; it reads EOF from now on. */
        (void) shutdown(c->fd, SHUT_RDWR);
        return error;
}

static const struct {
        const char *name;
        int error;
} error_map[] = {
        { "io.coherencyd.Broker.NoSuchDevice",           ENODEV     },
        { "io.coherencyd.Broker.DeviceBusy",             EBUSY      },
        { "io.coherencyd.Broker.NoSuchGrant",            ENOENT     },
        { "io.coherencyd.Broker.PermissionDenied",       EPERM      },
        { "io.coherencyd.Broker.LimitExceeded",          EUSERS     },
        { "io.coherencyd.Broker.CoherencyUnsupported",   EOPNOTSUPP },
        { "io.coherencyd.Broker.InvalidFileDescriptor",  EBADF      },
        { "io.coherencyd.Broker.BackendError",           EIO        },
        { "io.coherencyd.Manager.KillNotEnabled",        ECANCELED  },
        { "io.coherencyd.Manager.InvalidPolicy",         EBADMSG    },
        { "org.varlink.service.InvalidParameter",        EINVAL     },
        { "org.varlink.service.MethodNotFound",          ENOSYS     },
        { "org.varlink.service.MethodNotImplemented",    ENOSYS     },
        { "org.varlink.service.InterfaceNotFound",       ENOSYS     },
        { "org.varlink.service.PermissionDenied",        EPERM      },
};

static int error_to_errno(const char *name) {
        for (size_t i = 0; i < sizeof(error_map) / sizeof(error_map[0]); i++)
                if (strcmp(name, error_map[i].name) == 0)
                        return -error_map[i].error;
        return -EREMOTEIO;
}

/*
 * How the parameters of well-known errors read best; "{key}" is the value,
 * "{key:errno}" the text of the errno in key. Every other parameter, and all
 * of them for other errors, follow as "key: value".
 */
static const struct {
        const char *name;
        const char *format;
} error_formats[] = {
        { "io.coherencyd.Broker.InvalidFileDescriptor", "{parameter}: expected {expected}, got {got}" },
        { "io.coherencyd.Broker.CoherencyUnsupported",  "{parameter}: the IOMMU cannot enforce coherency" },
        { "io.coherencyd.Broker.BackendError",          "{operation}: {errno:errno}" },
        { "io.coherencyd.Broker.NoSuchDevice",          "{device}: no such device, or not bound to vfio-pci" },
        { "io.coherencyd.Broker.DeviceBusy",            "{device}: its VFIO group is held" },
        { "io.coherencyd.Broker.NoSuchGrant",           "{grant}: no such grant" },
        { "io.coherencyd.Broker.LimitExceeded",         "{limit}: limit reached" },
        { "io.coherencyd.Manager.InvalidPolicy",        "{file}:{line}: {message}" },
};

static void print_value(FILE *f, json_object *v, bool as_errno) {
        if (as_errno && json_object_is_type(v, json_type_int)) {
                int64_t e = json_object_get_int64(v);

                if (e > 0 && e < 4096) {
                        errno = (int) e;
                        fprintf(f, "%m");
                        return;
                }
        }
        if (json_object_is_type(v, json_type_string))
                fputs(json_object_get_string(v), f);
        else
                fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), f);
}

/* Whether every key the template names is there; only then does it read right. */
static bool template_applies(const char *format, json_object *parameters) {
        for (const char *p = strchr(format, '{'); p; p = strchr(p + 1, '{')) {
                size_t l = strcspn(p + 1, ":}");
                char key[64];
                json_object *v;

                if (l >= sizeof(key))
                        return false;
                memcpy(key, p + 1, l);
                key[l] = '\0';
                if (!json_object_object_get_ex(parameters, key, &v) || !v)
                        return false;
        }
        return true;
}

static void print_template(FILE *f, const char *format, json_object *parameters) {
        for (const char *p = format; *p; ) {
                size_t l;
                char key[64];
                json_object *v = NULL;
                bool as_errno;

                if (*p != '{') {
                        fputc(*p++, f);
                        continue;
                }
                l = strcspn(p + 1, ":}");
                memcpy(key, p + 1, l); /* template_applies() checked the length */
                key[l] = '\0';
                as_errno = strncmp(p + 1 + l, ":errno}", 7) == 0;
                (void) json_object_object_get_ex(parameters, key, &v);
                print_value(f, v, as_errno);
                p = strchr(p, '}') + 1;
        }
}

static bool template_uses(const char *format, const char *key) {
        size_t l = strlen(key);

        for (const char *p = strchr(format, '{'); p; p = strchr(p + 1, '{'))
                if (strncmp(p + 1, key, l) == 0 && (p[l + 1] == '}' || p[l + 1] == ':'))
                        return true;
        return false;
}

static int client_error_reply(struct coherency_client *c, const struct coh_reply *reply) {
        const char *format = NULL, *s;
        char *text = NULL;
        size_t size = 0;
        bool first = true;
        int64_t e;
        FILE *f;

        clear_error(c);

        s = json_object_to_json_string_ext(reply->parameters, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        c->error_parameters = s ? strdup(s) : NULL;
        if (strcmp(reply->error, "io.coherencyd.Broker.BackendError") == 0) {
                if (coh_json_get_int64(reply->parameters, "errno", 1, 4095, &e) >= 0)
                        c->backend_errno = (int) e;
                if (coh_json_get_string(reply->parameters, "operation", &s) >= 0)
                        c->backend_operation = strdup(s);
        }

        for (size_t i = 0; i < sizeof(error_formats) / sizeof(error_formats[0]); i++)
                if (strcmp(reply->error, error_formats[i].name) == 0)
                        format = error_formats[i].format;

        f = open_memstream(&text, &size);
        if (!f) {
                /* Still worth saying which error it was. */
                set_error_message(c, reply->error, reply->error);
                return error_to_errno(reply->error);
        }

        fputs(reply->error, f);
        if (format && template_applies(format, reply->parameters)) {
                fputs(": ", f);
                print_template(f, format, reply->parameters);
                first = false;
        } else
                /* Not the parameters we know: list every one of them instead. */
                format = NULL;
        json_object_object_foreach(reply->parameters, key, value) {
                if (format && template_uses(format, key))
                        continue;
                fprintf(f, "%s%s: ", first ? ": " : ", ", key);
                print_value(f, value, false);
                first = false;
        }

        if (fclose(f) == 0 && text)
                set_error_message(c, reply->error, text);
        else
                set_error_message(c, reply->error, reply->error);
        free(text);

        return error_to_errno(reply->error);
}

static int check_fd(struct coherency_client *c, const char *what, int fd) {
        /* Caught here, a bad descriptor costs an error; caught by sendmsg() it would cost the connection. */
        if (fd < 0 || fcntl(fd, F_GETFD) < 0)
                return client_error(c, -EBADF, "%s: not an open file descriptor", what);
        return 0;
}

/*
 * Writes descriptor fd (-1 and optional: nothing) as parameter `name` of the
 * call in w: the index it will have in the message's descriptor array. On
 * failure the error is recorded on c and the caller drops the call.
 */
static int add_fd_param(struct coherency_client *c, struct coh_json_writer *w, const char *name, int fd,
                        bool optional, int *fds, size_t *n_fds) {
        if (fd == -1 && optional)
                return 0;
        int r = check_fd(c, name, fd);
        if (r < 0)
                return r;
        coh_jw_key_plain(w, name);
        coh_jw_int(w, (int64_t) *n_fds);
        fds[(*n_fds)++] = fd;
        return 0;
}

/* A PCI address as sysfs spells it: dddd:bb:dd.f, lower-case hex. */
static bool pci_address_is_valid(const char *s) {
        static const char pattern[] = "xxxx:xx:xx.x";

        if (strlen(s) != sizeof(pattern) - 1)
                return false;
        for (size_t i = 0; pattern[i]; i++)
                if (pattern[i] == 'x') {
                        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                                return false;
                } else if (s[i] != pattern[i])
                        return false;
        /* The function is 0-7. */
        return s[11] <= '7';
}

static int add_device_param(struct coherency_client *c, struct coh_json_writer *w, const char *device) {
        if (!device || !pci_address_is_valid(device))
                return client_error(c, -EINVAL, "device: \"%s\" is not a PCI address like 0000:01:00.0",
                                    device ?: "(null)");
        coh_jw_key_plain(w, "device");
        coh_jw_string(w, device);
        return 0;
}

static void set_deadline(struct coherency_client *c) {
        uint64_t now = now_usec();

        c->deadline = c->timeout == COHERENCY_TIMEOUT_INFINITY || c->timeout > UINT64_MAX - now ?
                UINT64_MAX : now + c->timeout;
}

/* Sends one call, written: json is the whole message (NULL: its writing failed for want of memory), taken in every case. */
static int client_send_text(struct coherency_client *c, enum call_kind kind, const char *method, char *json,
                            const int *fds, size_t n_fds, bool more) {
        int r;

        if (c->broken) {
                free(json);
                return client_error(c, -ENOTCONN, "%s: the connection to coherencyd failed earlier: %s", method,
                                    c->broken_reason);
        }
        if (c->state != CALL_IDLE) {
                free(json);
                return client_error(c, -EALREADY, "%s: another call (%s) is still in progress on this connection",
                                    method, c->method);
        }
        if (!json)
                return client_error(c, -ENOMEM, "%s: cannot format the call: %m", method);

        r = coh_send_message(c->fd, json, fds, n_fds);
        free(json);
        if (r == -EMSGSIZE)
                /* Refused before any byte was sent: the connection is fine. */
                return client_error(c, r, "%s: call too large", method);
        if (r == -EAGAIN)
                /* SO_SNDTIMEO: the daemon did not take the call within the timeout. */
                return client_break(c, -ETIMEDOUT, "%s: coherencyd did not take the call in time", method);
        /* The daemon may have refused the connection before reading a byte of it (a limit:
         * server.c reject() sends LimitExceeded, then closes). That error is still in our
         * receive queue (a stream read returns queued data before the peer's close or reset:
         * net/unix/af_unix.c unix_stream_read_generic), so it is the answer: go on as if
         * the call went out, and the reply, or the end of the connection, comes next. */
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                /* Possibly half a message on the wire: nothing after it could be trusted. */
                return client_break(c, r, "%s: cannot send: %m", method);

        clear_error(c);
        c->state = more ? CALL_STREAM : CALL_REPLY;
        c->kind = kind;
        c->method = method;
        c->got_reply = false;
        set_deadline(c);
        return 0;
}

/* Sends one call with parameters as a json-c object (NULL: none), taken in every case. */
static int client_send(struct coherency_client *c, enum call_kind kind, const char *method, json_object *parameters,
                       const int *fds, size_t n_fds, bool more) {
        return client_send_text(c, kind, method, coh_call_format(method, parameters, more, false), fds, n_fds, more);
}

/* Sends the typed call written in w since coh_call_begin() (the hot ones: no json_object on their way). */
static int client_send_written(struct coherency_client *c, enum call_kind kind, const char *method,
                               struct coh_json_writer *w, const int *fds, size_t n_fds) {
        return client_send_text(c, kind, method, coh_call_end(w, false, false), fds, n_fds, false);
}

/*
 * The message is a reply to the outstanding call: parse it into *ret. With
 * ret_message, the message (and its descriptors) goes to the caller, who
 * must coh_message_done() it; otherwise descriptors are a protocol error.
 * With tree, *ret is json-c's (coh_reply_parse(): parameters), otherwise
 * read without it (coh_reply_read(): params), which the typed calls use.
 */
static int client_handle_message(struct coherency_client *c, struct coh_message *m, struct coh_reply *ret,
                                 struct coh_message *ret_message, bool tree) {
        struct coh_reply reply;
        int r;

        if (m->n_fds > 0 && !ret_message) {
                coh_message_done(m);
                return client_break(c, -EPROTO, "%s: coherencyd sent file descriptors with a reply that has none",
                                    c->method);
        }

        r = tree ? coh_reply_parse(m->json, &reply) : coh_reply_read(m->json, &reply);
        if (r >= 0 && reply.error && !tree) {
                /* Errors are rare and described from their parameters by json-c, whatever
                 * the call: read again so. json-c takes whatever coh_reply_read() takes. */
                coh_reply_done(&reply);
                r = coh_reply_parse(m->json, &reply);
        }
        if (r < 0) {
                coh_message_done(m);
                if (r == -ENOMEM)
                        return client_break(c, r, "out of memory parsing a reply");
                return client_break(c, -EPROTO, "%s: coherencyd sent a malformed reply", c->method);
        }

        if (reply.continues && c->state != CALL_STREAM) {
                coh_reply_done(&reply);
                coh_message_done(m);
                return client_break(c, -EPROTO, "%s: coherencyd sent a stream of replies to a call without \"more\"",
                                    c->method);
        }
        c->got_reply = true;
        if (!reply.continues) {
                c->state = CALL_IDLE;
                c->deadline = UINT64_MAX;
        } else
                /* Later replies of a stream come when something happens: no deadline. */
                c->deadline = UINT64_MAX;

        if (reply.error) {
                /* An error is an answer: the connection is fine. Its descriptors, if any, go. */
                coh_message_done(m);
                r = client_error_reply(c, &reply);
                coh_reply_done(&reply);
                return r;
        }

        if (ret_message)
                *ret_message = *m;
        else
                coh_message_done(m);
        *ret = reply;
        return 0;
}

/* Waits for the socket until the deadline: 0 readable (or hung up), -ETIMEDOUT (connection broken). */
static int client_wait(struct coherency_client *c) {
        struct pollfd p = {
                .fd = c->fd,
                .events = POLLIN,
        };

        for (;;) {
                int timeout_ms = -1, n;

                if (c->deadline != UINT64_MAX) {
                        uint64_t now = now_usec();

                        if (now >= c->deadline)
                                return client_break(c, -ETIMEDOUT, "%s: no reply from coherencyd in time", c->method);
                        uint64_t left = (c->deadline - now + 999) / 1000;
                        timeout_ms = left > INT_MAX ? INT_MAX : (int) left;
                }

                n = poll(&p, 1, timeout_ms);
                /* A signal handler in the VMM must not make us lose the reply in flight. */
                if (n < 0 && errno != EINTR)
                        return client_break(c, -errno, "poll: %m");
                if (n > 0)
                        return 0;
        }
}

/*
 * The next reply to the outstanding call: 0 and *ret filled, -EAGAIN when
 * !blocking and it is not all in yet, or the call's error.
 */
static int client_receive(struct coherency_client *c, bool blocking, struct coh_reply *ret,
                          struct coh_message *ret_message, bool tree) {
        for (;;) {
                struct coh_message m;
                ssize_t n;
                int r;

                r = coh_frame_next(&c->frame, &m);
                if (r == -ENOMEM)
                        return client_break(c, r, "out of memory reading a reply");
                if (r < 0)
                        return client_break(c, -EPROTO, "coherencyd sent an empty message");
                if (r > 0)
                        return client_handle_message(c, &m, ret, ret_message, tree);

                n = coh_frame_recv(&c->frame, c->fd);
                if (n > 0 || n == -EINTR)
                        continue;
                if (n == 0 || n == -ECONNRESET)
                        return client_break(c, -ECONNRESET, "%s: coherencyd closed the connection", c->method);
                if (n == -EPROTO)
                        return client_break(c, -EPROTO, "%s: coherencyd sent file descriptors that belong to no reply",
                                            c->method);
                if (n == -EMSGSIZE || n == -ENOBUFS)
                        return client_break(c, -EPROTO, "%s: coherencyd sent a reply that is too large", c->method);
                if (n != -EAGAIN)
                        return client_break(c, (int) n, "%s: receiving from coherencyd: %m", c->method);

                if (!blocking) {
                        if (c->deadline != UINT64_MAX && now_usec() >= c->deadline)
                                return client_break(c, -ETIMEDOUT, "%s: no reply from coherencyd in time", c->method);
                        return -EAGAIN;
                }

                r = client_wait(c);
                if (r < 0)
                        return r;
        }
}

/* For _finish: the outstanding call must be of this kind. */
static int client_check_outstanding(struct coherency_client *c, enum call_kind kind, const char *method) {
        if (c->broken)
                return client_error(c, -ENOTCONN, "%s: the connection to coherencyd failed earlier: %s", method,
                                    c->broken_reason);
        if (c->state == CALL_IDLE)
                return client_error(c, -EINVAL, "%s: no call in progress", method);
        if (c->kind != kind)
                return client_error(c, -EALREADY, "%s: another call (%s) is in progress", method, c->method);
        return 0;
}

static int reply_field_error(struct coherency_client *c, const char *method, const char *field) {
        return client_error(c, -EPROTO, "%s: coherencyd's reply has no valid \"%s\"", method, field ?: "?");
}

/* ---- parsing replies ------------------------------------------------------ */

/* A string field as a malloc'ed copy: absent or null leaves NULL unless required. */
static int get_string(const struct coh_json *o, const char *key, bool required, char **ret, const char **bad) {
        const char *s;
        char *copy;
        int r;

        r = coh_node_get_string(o, key, &s);
        if (r == -ENOENT && !required) {
                *ret = NULL;
                return 0;
        }
        if (r < 0) {
                *bad = key;
                return -EPROTO;
        }
        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

static int get_bool(const struct coh_json *o, const char *key, bool *ret, const char **bad) {
        int r;

        r = coh_node_get_bool(o, key, ret);
        if (r == -ENOENT) {
                *ret = false;
                return 0;
        }
        if (r < 0) {
                *bad = key;
                return -EPROTO;
        }
        return 0;
}

static int get_int64(const struct coh_json *o, const char *key, int64_t min, int64_t max, int64_t def, int64_t *ret,
                     const char **bad) {
        int r;

        r = coh_node_get_int64(o, key, min, max, ret);
        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0) {
                *bad = key;
                return -EPROTO;
        }
        return 0;
}

static coherency_grant_state grant_state_from_string(const char *s) {
        int i = coh_grant_state_from_string(s);
        return i < 0 ? COHERENCY_GRANT_STATE_OTHER : (coherency_grant_state) i;
}

static void facts_done(struct coherency_facts *f) {
        free(f->devices);
        *f = (struct coherency_facts) {};
}

static int parse_facts(const struct coh_json *o, struct coherency_facts *f, const char **bad) {
        const struct coh_json *devices, *file;
        size_t i = 0;

        if (coh_record_from_node(coh_device_record_fields, o, COH_DEVICE_FORM_BRIEF, &f->device.rec, bad) < 0)
                return -EPROTO;
        file = coh_json_member(o, "file");
        if (file && file->type == COH_JSON_STRING)
                strcpy_truncate(f->file, sizeof f->file, file->string);

        devices = coh_json_member(o, "devices");
        if (!devices || devices->type == COH_JSON_NULL)
                return 0;
        if (devices->type != COH_JSON_ARRAY) {
                *bad = "facts.devices";
                return -EPROTO;
        }
        if (devices->n == 0)
                return 0;
        f->devices = calloc(devices->n, sizeof(struct coherency_device));
        if (!f->devices)
                return -ENOMEM;
        for (const struct coh_json *v = devices->first; v; v = v->next, i++) {
                struct coherency_device *d = f->devices + i;
                if (coh_record_from_node(coh_device_record_fields, v, COH_DEVICE_FORM_FULL, &d->rec, bad) < 0)
                        return -EPROTO;
                f->n_devices = i + 1;
                /* Facts names the deciding device but not the policy values and
                 * rules behind its settings; its entry in devices does. */
                if (strcmp(d->rec.slot, f->device.rec.slot) == 0)
                        f->device = *d;
        }
        return 0;
}

struct decision_common {
        struct coh_decision_record rec;  /* proto/decision-record.h */
        struct coherency_facts facts;
};

struct coherency_decision {
        struct decision_common d;
};

struct coherency_grant {
        struct decision_common d;
        char *device;
        int group_fd;
};

static void decision_common_done(struct decision_common *d) {
        facts_done(&d->facts);
}

/* form: COH_DECISION_FORM_PROBE (Probe, Explain) or _GRANT (RequestGrant). */
static int parse_decision_common(const struct coh_json *p, unsigned form, struct decision_common *d, const char **bad) {
        const struct coh_json *facts;

        d->rec.kvm_attach = COHERENCY_KVM_ATTACH_NONE;
        if (coh_record_from_node(coh_decision_record_fields, p, form, &d->rec, bad) < 0)
                return -EPROTO;
        /* A refusal hands nothing over, whatever else the reply says. */
        if (d->rec.decision == COH_DECISION_REFUSED)
                d->rec.kvm_attach = COHERENCY_KVM_ATTACH_NONE;
        facts = coh_json_member(p, "facts");
        if (facts && facts->type != COH_JSON_NULL)
                return parse_facts(facts, &d->facts, bad);
        return 0;
}

/* The error a parse failure is to the caller: -ENOMEM, or the reply was not what the protocol says. */
static int parse_error(struct coherency_client *c, const char *method, int r, const char *bad) {
        if (r == -ENOMEM)
                return client_error(c, r, "%s: %m", method);
        return reply_field_error(c, method, bad);
}

static void grant_info_done(struct coherency_grant_info *g) {
        *g = (struct coherency_grant_info) {};
}

/* One entry of a grant list, parsed with the daemon's own field table. */
static int parse_grant_info(const struct coh_json *o, struct coherency_grant_info *ret, const char **bad) {
        if (coh_record_from_node(coh_grant_record_fields, o, COH_GRANT_FORM_VMM, &ret->rec, bad) < 0)
                return -EPROTO;
        return 0;
}

struct coherency_grant_list {
        unsigned n_ref;
        struct coherency_grant_info *items;
        size_t n;
};

static struct coherency_grant_list *grant_list_ref(struct coherency_grant_list *l) {
        l->n_ref++;
        return l;
}

_public_ coherency_grant_list *coherency_grant_list_free(coherency_grant_list *l) {
        if (!l)
                return NULL;
        if (--l->n_ref > 0)
                return NULL;
        for (size_t i = 0; i < l->n; i++)
                grant_info_done(l->items + i);
        free(l->items);
        free(l);
        return NULL;
}

static int parse_grant_list(const struct coh_json *p, struct coherency_grant_list **ret, const char **bad) {
        struct coherency_grant_list *l;
        const struct coh_json *array, *v;
        size_t n;
        int r;

        array = coh_json_member(p, "grants");
        if (!array || array->type != COH_JSON_ARRAY) {
                *bad = "grants";
                return -EPROTO;
        }
        n = array->n;
        if (n > INT_MAX) {
                *bad = "grants";
                return -EPROTO;
        }

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->n_ref = 1;
        if (n > 0) {
                l->items = calloc(n, sizeof(struct coherency_grant_info));
                if (!l->items) {
                        free(l);
                        return -ENOMEM;
                }
        }
        v = array->first;
        for (size_t i = 0; i < n; i++, v = v->next) {
                r = parse_grant_info(v, l->items + i, bad);
                if (r < 0) {
                        coherency_grant_list_free(l);
                        return r;
                }
                l->n = i + 1;
        }

        *ret = l;
        return 0;
}

/* ---- connections --------------------------------------------------------- */

static int set_send_timeout(struct coherency_client *c) {
        struct timeval tv = {};

        if (c->timeout != COHERENCY_TIMEOUT_INFINITY) {
                tv.tv_sec = (time_t) (c->timeout / 1000000u);
                tv.tv_usec = (suseconds_t) (c->timeout % 1000000u);
                /* 0 would mean forever to the kernel. */
                if (tv.tv_sec == 0 && tv.tv_usec == 0)
                        tv.tv_usec = 1;
        }
        if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        return 0;
}

_public_ int coherency_connect(const char *path, coherency_client **ret) {
        struct sockaddr_un sa = {
                .sun_family = AF_UNIX,
        };
        struct coherency_client *c;
        socklen_t salen;
        size_t l;
        int r;

        if (!ret)
                return -EINVAL;

        if (!path) {
                /* secure_getenv: a setuid helper linking us must not be pointed elsewhere. */
                path = secure_getenv("COHERENCYD_SOCKET");
                if (!path || !path[0])
                        path = COHERENCY_DEFAULT_SOCKET;
        }

        l = strlen(path);
        if (l == 0)
                return -EINVAL;
        if (path[0] == '@') {
                /* Abstract namespace, spelled as systemd spells it; handy for tests. */
                if (l > sizeof(sa.sun_path))
                        return -ENAMETOOLONG;
                memcpy(sa.sun_path + 1, path + 1, l - 1);
                salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l);
        } else {
                if (l >= sizeof(sa.sun_path))
                        return -ENAMETOOLONG;
                memcpy(sa.sun_path, path, l);
                salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l + 1);
        }

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->timeout = COHERENCY_TIMEOUT_DEFAULT_USEC;
        c->deadline = UINT64_MAX;
        /* Replies may be long (Manager.ListGrants); calls stay under COH_MESSAGE_MAX. */
        coh_frame_init_max(&c->frame, COH_REPLY_MAX);

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
                r = -errno;
                goto fail;
        }
        r = set_send_timeout(c);
        if (r < 0)
                goto fail;
        if (connect(c->fd, (const struct sockaddr *) &sa, salen) < 0) {
                r = -errno;
                goto fail;
        }

        *ret = c;
        return 0;

fail:
        coherency_client_free(c);
        return r;
}

_public_ coherency_client *coherency_client_free(coherency_client *c) {
        if (!c)
                return NULL;
        /* Closing is how a VMM gives up its grants: the daemon ends them on EOF. */
        if (c->fd >= 0)
                (void) close(c->fd);
        coh_frame_done(&c->frame);
        clear_error(c);
        free(c->device);
        free(c);
        return NULL;
}

_public_ int coherency_client_get_fd(const coherency_client *c) {
        if (!c)
                return -EINVAL;
        return c->fd;
}

_public_ int coherency_client_set_timeout(coherency_client *c, uint64_t usec) {
        uint64_t old;
        int r;

        if (!c)
                return -EINVAL;
        old = c->timeout;
        c->timeout = usec == 0 ? COHERENCY_TIMEOUT_DEFAULT_USEC : usec;
        r = set_send_timeout(c);
        if (r < 0) {
                c->timeout = old;
                return r;
        }
        return 0;
}

_public_ uint64_t coherency_client_get_timeout(const coherency_client *c) {
        return c ? c->timeout : COHERENCY_TIMEOUT_DEFAULT_USEC;
}

_public_ uint64_t coherency_client_get_deadline(const coherency_client *c) {
        return c && c->state != CALL_IDLE ? c->deadline : UINT64_MAX;
}

_public_ const char *coherency_client_get_error(const coherency_client *c) {
        return c ? c->error : "";
}

_public_ const char *coherency_client_get_error_name(const coherency_client *c) {
        return c ? c->error_name : "";
}

_public_ const char *coherency_client_get_error_parameters(const coherency_client *c) {
        return c ? c->error_parameters : NULL;
}

_public_ int coherency_client_get_backend_errno(const coherency_client *c) {
        return c ? c->backend_errno : 0;
}

_public_ const char *coherency_client_get_backend_operation(const coherency_client *c) {
        return c ? c->backend_operation : NULL;
}

/* ---- enums ----------------------------------------------------------------- */

_public_ const char *coherency_decision_kind_to_string(coherency_decision_kind k) {
        switch (k) {
        case COHERENCY_DECISION_NOT_NEEDED:
                return "not-needed";
        case COHERENCY_DECISION_GRANTED:
                return "granted";
        case COHERENCY_DECISION_REFUSED:
                return "refused";
        }
        return NULL;
}

_public_ const char *coherency_kvm_attach_to_string(coherency_kvm_attach a) {
        switch (a) {
        case COHERENCY_KVM_ATTACH_ADD:
                return "add";
        case COHERENCY_KVM_ATTACH_SKIP:
                return "skip";
        case COHERENCY_KVM_ATTACH_NONE:
                break;
        }
        return NULL;
}

_public_ const char *coherency_grant_state_to_string(coherency_grant_state s) {
        switch (s) {
        case COHERENCY_GRANT_ACTIVE:
                return "active";
        case COHERENCY_GRANT_ENDING:
                return "ending";
        case COHERENCY_GRANT_ENDED:
                return "ended";
        case COHERENCY_GRANT_STATE_OTHER:
                break;
        }
        return NULL;
}

static const char *const watch_kinds[] = {
        [COHERENCY_WATCH_GRANTS] = "grants",
        [COHERENCY_WATCH_REVOKED] = "revoked",
        [COHERENCY_WATCH_ENDING] = "ending",
        [COHERENCY_WATCH_HELD] = "held",
        [COHERENCY_WATCH_ENDED] = "ended",
};

_public_ const char *coherency_watch_event_kind_to_string(coherency_watch_event_kind k) {
        if ((unsigned) k < sizeof(watch_kinds) / sizeof(watch_kinds[0]))
                return watch_kinds[k];
        return NULL;
}

/* ---- GetInfo --------------------------------------------------------------- */

struct coherency_info {
        char *version, *backend, *mode, *mode_rule, *access, *access_rule;
        struct {
                char *name, *type;
                bool enforces;
        } *iommus;
        size_t n_iommus;
        int64_t max_grants_per_connection, max_connections_per_user, max_connections;
};

_public_ coherency_info *coherency_info_free(coherency_info *i) {
        if (!i)
                return NULL;
        free(i->version);
        free(i->backend);
        free(i->mode);
        free(i->mode_rule);
        free(i->access);
        free(i->access_rule);
        for (size_t k = 0; k < i->n_iommus; k++) {
                free(i->iommus[k].name);
                free(i->iommus[k].type);
        }
        free(i->iommus);
        free(i);
        return NULL;
}

_public_ int coherency_get_info_send(coherency_client *c) {
        if (!c)
                return -EINVAL;
        return client_send(c, KIND_GET_INFO, method_get_info, NULL, NULL, 0, false);
}

static int parse_info(const struct coh_json *p, struct coherency_info *info, const char **bad) {
        const struct coh_json *limits, *iommus;
        int r;

        if ((r = get_string(p, "version", true, &info->version, bad)) < 0 ||
            (r = get_string(p, "backend", true, &info->backend, bad)) < 0 ||
            (r = get_string(p, "mode", true, &info->mode, bad)) < 0 ||
            (r = get_string(p, "modeRule", false, &info->mode_rule, bad)) < 0 ||
            (r = get_string(p, "access", false, &info->access, bad)) < 0 ||
            (r = get_string(p, "accessRule", false, &info->access_rule, bad)) < 0)
                return r;

        info->max_grants_per_connection = info->max_connections_per_user = info->max_connections = -1;
        limits = coh_json_member(p, "limits");
        if (limits && limits->type != COH_JSON_NULL) {
                if (limits->type != COH_JSON_OBJECT) {
                        *bad = "limits";
                        return -EPROTO;
                }
                if ((r = get_int64(limits, "maxGrantsPerConnection", 0, INT64_MAX, -1,
                                   &info->max_grants_per_connection, bad)) < 0 ||
                    (r = get_int64(limits, "maxConnectionsPerUser", 0, INT64_MAX, -1,
                                   &info->max_connections_per_user, bad)) < 0 ||
                    (r = get_int64(limits, "maxConnections", 0, INT64_MAX, -1, &info->max_connections, bad)) < 0)
                        return r;
        }

        iommus = coh_json_member(p, "iommus");
        if (iommus && iommus->type != COH_JSON_NULL) {
                size_t k = 0;

                if (iommus->type != COH_JSON_ARRAY) {
                        *bad = "iommus";
                        return -EPROTO;
                }
                if (iommus->n > 0) {
                        info->iommus = calloc(iommus->n, sizeof(*info->iommus));
                        if (!info->iommus)
                                return -ENOMEM;
                }
                for (const struct coh_json *o = iommus->first; o; o = o->next, k++) {
                        if (o->type != COH_JSON_OBJECT) {
                                *bad = "iommus";
                                return -EPROTO;
                        }
                        info->n_iommus = k + 1;
                        if ((r = get_string(o, "name", true, &info->iommus[k].name, bad)) < 0 ||
                            (r = get_string(o, "type", false, &info->iommus[k].type, bad)) < 0 ||
                            (r = get_bool(o, "enforcesCoherency", &info->iommus[k].enforces, bad)) < 0)
                                return r;
                }
        }
        return 0;
}

static int get_info_receive(coherency_client *c, bool blocking, coherency_info **ret) {
        struct coherency_info *info;
        struct coh_reply reply;
        const char *bad = NULL;
        int r;

        r = client_check_outstanding(c, KIND_GET_INFO, method_get_info);
        if (r < 0)
                return r;
        r = client_receive(c, blocking, &reply, NULL, false);
        if (r < 0)
                return r;

        info = calloc(1, sizeof(*info));
        if (!info) {
                coh_reply_done(&reply);
                return client_error(c, -ENOMEM, "%s: %m", method_get_info);
        }
        r = parse_info(reply.params, info, &bad);
        coh_reply_done(&reply);
        if (r < 0) {
                coherency_info_free(info);
                return parse_error(c, method_get_info, r, bad);
        }
        *ret = info;
        return 0;
}

_public_ int coherency_get_info_finish(coherency_client *c, coherency_info **ret) {
        if (!c || !ret)
                return -EINVAL;
        return get_info_receive(c, false, ret);
}

_public_ int coherency_get_info(coherency_client *c, coherency_info **ret) {
        int r;

        if (!c || !ret)
                return -EINVAL;
        r = coherency_get_info_send(c);
        if (r < 0)
                return r;
        return get_info_receive(c, true, ret);
}

_public_ const char *coherency_info_get_version(const coherency_info *i) { return i ? i->version : NULL; }
_public_ const char *coherency_info_get_backend(const coherency_info *i) { return i ? i->backend : NULL; }
_public_ const char *coherency_info_get_mode(const coherency_info *i) { return i ? i->mode : NULL; }
_public_ const char *coherency_info_get_mode_rule(const coherency_info *i) { return i ? i->mode_rule : NULL; }
_public_ const char *coherency_info_get_access(const coherency_info *i) { return i ? i->access : NULL; }
_public_ const char *coherency_info_get_access_rule(const coherency_info *i) { return i ? i->access_rule : NULL; }
_public_ size_t coherency_info_get_n_iommus(const coherency_info *i) { return i ? i->n_iommus : 0; }

_public_ const char *coherency_info_get_iommu_name(const coherency_info *i, size_t index) {
        return i && index < i->n_iommus ? i->iommus[index].name : NULL;
}

_public_ const char *coherency_info_get_iommu_type(const coherency_info *i, size_t index) {
        return i && index < i->n_iommus ? i->iommus[index].type : NULL;
}

_public_ int coherency_info_get_iommu_enforces(const coherency_info *i, size_t index) {
        if (!i || index >= i->n_iommus)
                return -ERANGE;
        return i->iommus[index].enforces;
}

_public_ int64_t coherency_info_get_max_grants_per_connection(const coherency_info *i) {
        return i ? i->max_grants_per_connection : -1;
}

_public_ int64_t coherency_info_get_max_connections_per_user(const coherency_info *i) {
        return i ? i->max_connections_per_user : -1;
}

_public_ int64_t coherency_info_get_max_connections(const coherency_info *i) {
        return i ? i->max_connections : -1;
}

/* ---- facts ------------------------------------------------------------------ */

_public_ const char *coherency_facts_get_file(const coherency_facts *f) { return f && f->file[0] ? f->file : NULL; }
_public_ const coherency_device *coherency_facts_get_device(const coherency_facts *f) { return f ? &f->device : NULL; }
_public_ size_t coherency_facts_get_n_devices(const coherency_facts *f) { return f ? f->n_devices : 0; }

_public_ const coherency_device *coherency_facts_get_device_by_index(const coherency_facts *f, size_t index) {
        return f && index < f->n_devices ? f->devices + index : NULL;
}

static const char *str_or_null(const char *s) {
        return s[0] ? s : NULL;
}

_public_ const char *coherency_device_get_slot(const coherency_device *d) { return d ? str_or_null(d->rec.slot) : NULL; }
_public_ const char *coherency_device_get_vendor(const coherency_device *d) { return d ? str_or_null(d->rec.vendor) : NULL; }
_public_ const char *coherency_device_get_device(const coherency_device *d) { return d ? str_or_null(d->rec.device) : NULL; }
_public_ const char *coherency_device_get_class(const coherency_device *d) { return d ? str_or_null(d->rec.class_) : NULL; }
_public_ const char *coherency_device_get_driver(const coherency_device *d) { return d ? str_or_null(d->rec.driver) : NULL; }
_public_ const char *coherency_device_get_iommu(const coherency_device *d) { return d ? str_or_null(d->rec.iommu) : NULL; }
_public_ int coherency_device_get_iommu_group(const coherency_device *d) { return d ? (int) d->rec.iommu_group : -1; }
_public_ const char *coherency_device_get_access(const coherency_device *d) {
        return d ? coh_access_to_string(d->rec.access) : NULL;
}
_public_ const char *coherency_device_get_access_rule(const coherency_device *d) {
        return d ? str_or_null(d->rec.access_rule) : NULL;
}
_public_ const char *coherency_device_get_no_snoop(const coherency_device *d) {
        return d ? coh_nosnoop_to_string(d->rec.nosnoop) : NULL;
}
_public_ const char *coherency_device_get_no_snoop_rule(const coherency_device *d) {
        return d ? str_or_null(d->rec.nosnoop_rule) : NULL;
}
_public_ const char *coherency_device_get_mode(const coherency_device *d) { return d ? coh_mode_to_string(d->rec.mode) : NULL; }
_public_ const char *coherency_device_get_mode_rule(const coherency_device *d) {
        return d ? str_or_null(d->rec.mode_rule) : NULL;
}
_public_ bool coherency_device_get_iommu_enforces(const coherency_device *d) { return d && d->rec.iommu_enforces; }
_public_ bool coherency_device_get_ioas_coherent(const coherency_device *d) { return d && d->rec.ioas_coherent; }
_public_ const char *coherency_device_get_decision(const coherency_device *d) {
        return d ? coh_decision_to_string(d->rec.decision) : NULL;
}
_public_ const char *coherency_device_get_reason(const coherency_device *d) {
        return d ? coh_reason_to_string(d->rec.reason) : NULL;
}

/* ---- Probe ------------------------------------------------------------------- */

_public_ coherency_decision *coherency_decision_free(coherency_decision *d) {
        if (!d)
                return NULL;
        decision_common_done(&d->d);
        free(d);
        return NULL;
}

_public_ int coherency_probe_send(coherency_client *c, const char *device, int iommu_fd, int ioas_coherent) {
        struct coh_json_writer w;
        int fds[1], r;
        size_t n_fds = 0;

        if (!c)
                return -EINVAL;
        if (ioas_coherent < -1 || ioas_coherent > 1)
                return client_error(c, -EINVAL, "ioas_coherent: must be -1, 0 or 1");

        coh_call_begin(&w, method_probe);
        r = add_device_param(c, &w, device);
        if (r >= 0)
                r = add_fd_param(c, &w, "iommu", iommu_fd, true, fds, &n_fds);
        if (r < 0) {
                coh_jw_done(&w);
                return r;
        }
        if (ioas_coherent >= 0) {
                coh_jw_key_plain(&w, "ioasCoherent");
                coh_jw_bool(&w, ioas_coherent);
        }

        return client_send_written(c, KIND_PROBE, method_probe, &w, fds, n_fds);
}

static int probe_receive(coherency_client *c, bool blocking, coherency_decision **ret) {
        struct coherency_decision *d;
        struct coh_reply reply;
        const char *bad = NULL;
        int r;

        r = client_check_outstanding(c, KIND_PROBE, method_probe);
        if (r < 0)
                return r;
        r = client_receive(c, blocking, &reply, NULL, false);
        if (r < 0)
                return r;

        d = calloc(1, sizeof(*d));
        if (!d) {
                coh_reply_done(&reply);
                return client_error(c, -ENOMEM, "%s: %m", method_probe);
        }
        r = parse_decision_common(reply.params, COH_DECISION_FORM_PROBE, &d->d, &bad);
        coh_reply_done(&reply);
        if (r < 0) {
                coherency_decision_free(d);
                return parse_error(c, method_probe, r, bad);
        }
        *ret = d;
        return 0;
}

_public_ int coherency_probe_finish(coherency_client *c, coherency_decision **ret) {
        if (!c || !ret)
                return -EINVAL;
        return probe_receive(c, false, ret);
}

_public_ int coherency_probe(coherency_client *c, const char *device, int iommu_fd, int ioas_coherent,
                           coherency_decision **ret) {
        int r;

        if (!c || !ret)
                return -EINVAL;
        r = coherency_probe_send(c, device, iommu_fd, ioas_coherent);
        if (r < 0)
                return r;
        return probe_receive(c, true, ret);
}

_public_ coherency_decision_kind coherency_decision_get_decision(const coherency_decision *d) {
        return d ? (coherency_decision_kind) d->d.rec.decision : COHERENCY_DECISION_REFUSED;
}
_public_ const char *coherency_decision_get_reason(const coherency_decision *d) {
        return d ? coh_reason_to_string(d->d.rec.reason) : NULL;
}
_public_ const char *coherency_decision_get_rule(const coherency_decision *d) { return d ? d->d.rec.rule : NULL; }
_public_ const char *coherency_decision_get_mode(const coherency_decision *d) {
        return d ? coh_mode_to_string(d->d.rec.mode) : NULL;
}
_public_ const char *coherency_decision_get_wbinvd(const coherency_decision *d) {
        return d ? coh_wbinvd_to_string(d->d.rec.wbinvd) : NULL;
}
_public_ coherency_kvm_attach coherency_decision_get_kvm_attach(const coherency_decision *d) {
        return d ? (coherency_kvm_attach) d->d.rec.kvm_attach : COHERENCY_KVM_ATTACH_NONE;
}
_public_ const coherency_facts *coherency_decision_get_facts(const coherency_decision *d) {
        return d ? &d->d.facts : NULL;
}

/* ---- RequestGrant -------------------------------------------------------------- */

_public_ coherency_grant *coherency_grant_free(coherency_grant *g) {
        if (!g)
                return NULL;
        decision_common_done(&g->d);
        free(g->device);
        if (g->group_fd >= 0)
                (void) close(g->group_fd);
        free(g);
        return NULL;
}

_public_ int coherency_request_grant_send(coherency_client *c, int vm_fd, const char *device, int iommu_fd) {
        struct coh_json_writer w;
        char *copy;
        int fds[2], r;
        size_t n_fds = 0;

        if (!c)
                return -EINVAL;

        coh_call_begin(&w, method_request_grant);
        r = add_fd_param(c, &w, "vm", vm_fd, false, fds, &n_fds);
        if (r >= 0)
                r = add_device_param(c, &w, device);
        if (r >= 0)
                r = add_fd_param(c, &w, "iommu", iommu_fd, false, fds, &n_fds);
        if (r < 0) {
                coh_jw_done(&w);
                return r;
        }
        copy = strdup(device);
        if (!copy) {
                coh_jw_done(&w);
                return client_error(c, -ENOMEM, "%s: %m", method_request_grant);
        }

        r = client_send_written(c, KIND_REQUEST_GRANT, method_request_grant, &w, fds, n_fds);
        if (r < 0) {
                free(copy);
                return r;
        }
        free(c->device);
        c->device = copy;
        return 0;
}

static int request_grant_receive(coherency_client *c, bool blocking, coherency_grant **ret) {
        struct coherency_grant *g;
        struct coh_message m;
        struct coh_reply reply;
        const char *bad = NULL;
        int64_t index;
        int r;

        r = client_check_outstanding(c, KIND_REQUEST_GRANT, method_request_grant);
        if (r < 0)
                return r;
        r = client_receive(c, blocking, &reply, &m, false);
        if (r < 0)
                return r;

        g = calloc(1, sizeof(*g));
        if (!g) {
                r = client_error(c, -ENOMEM, "%s: %m", method_request_grant);
                goto finish;
        }
        g->group_fd = -1;
        g->device = c->device;
        c->device = NULL;

        r = parse_decision_common(reply.params, COH_DECISION_FORM_GRANT, &g->d, &bad);
        if (r >= 0)
                r = get_int64(reply.params, "group", 0, COH_MESSAGE_FDS_MAX - 1, -1, &index, &bad);
        if (r < 0) {
                r = parse_error(c, method_request_grant, r, bad);
                goto finish;
        }

        if (index >= 0) {
                int fd = coh_message_take_fd(&m, (long) index);

                if (fd < 0) {
                        /* The daemon holds a grant whose file we cannot have: the
                         * connection (and with it the grant) has to go. */
                        r = client_break(c, -EPROTO, "%s: coherencyd's reply names descriptor %" PRId64 " in \"group\" "
                                         "but carries %zu", method_request_grant, index, m.n_fds);
                        goto finish;
                }
                g->group_fd = fd;
        }

        *ret = g;
        g = NULL;
        r = 0;

finish:
        coherency_grant_free(g);
        coh_reply_done(&reply);
        /* Descriptors the reply did not name are closed here. */
        coh_message_done(&m);
        return r;
}

_public_ int coherency_request_grant_finish(coherency_client *c, coherency_grant **ret) {
        if (!c || !ret)
                return -EINVAL;
        return request_grant_receive(c, false, ret);
}

_public_ int coherency_request_grant(coherency_client *c, int vm_fd, const char *device, int iommu_fd,
                                   coherency_grant **ret) {
        int r;

        if (!c || !ret)
                return -EINVAL;
        r = coherency_request_grant_send(c, vm_fd, device, iommu_fd);
        if (r < 0)
                return r;
        return request_grant_receive(c, true, ret);
}

_public_ const char *coherency_grant_get_id(const coherency_grant *g) { return g ? str_or_null(g->d.rec.grant) : NULL; }
_public_ const char *coherency_grant_get_device(const coherency_grant *g) { return g ? g->device : NULL; }
_public_ coherency_decision_kind coherency_grant_get_decision(const coherency_grant *g) {
        return g ? (coherency_decision_kind) g->d.rec.decision : COHERENCY_DECISION_REFUSED;
}
_public_ const char *coherency_grant_get_reason(const coherency_grant *g) {
        return g ? coh_reason_to_string(g->d.rec.reason) : NULL;
}
_public_ const char *coherency_grant_get_rule(const coherency_grant *g) { return g ? g->d.rec.rule : NULL; }
_public_ const char *coherency_grant_get_mode(const coherency_grant *g) { return g ? coh_mode_to_string(g->d.rec.mode) : NULL; }
_public_ const char *coherency_grant_get_wbinvd(const coherency_grant *g) {
        return g ? coh_wbinvd_to_string(g->d.rec.wbinvd) : NULL;
}
_public_ const char *coherency_grant_get_vm_wbinvd(const coherency_grant *g) {
        return g ? coh_vm_wbinvd_to_string(g->d.rec.vm_wbinvd) : NULL;
}
_public_ coherency_kvm_attach coherency_grant_get_kvm_attach(const coherency_grant *g) {
        return g ? (coherency_kvm_attach) g->d.rec.kvm_attach : COHERENCY_KVM_ATTACH_NONE;
}
_public_ const coherency_facts *coherency_grant_get_facts(const coherency_grant *g) { return g ? &g->d.facts : NULL; }

_public_ int coherency_grant_get_group_fd(const coherency_grant *g) {
        if (!g)
                return -EINVAL;
        return g->group_fd >= 0 ? g->group_fd : -ENODATA;
}

_public_ int coherency_grant_take_group_fd(coherency_grant *g) {
        int fd;

        if (!g)
                return -EINVAL;
        if (g->group_fd < 0)
                return -ENODATA;
        fd = g->group_fd;
        g->group_fd = -1;
        return fd;
}

/* ---- ReleaseGrant ---------------------------------------------------------- */

_public_ int coherency_release_grant_send(coherency_client *c, const char *grant) {
        struct coh_json_writer w;

        if (!c)
                return -EINVAL;
        if (!grant || !grant[0])
                return client_error(c, -EINVAL, "grant: empty grant id");

        coh_call_begin(&w, method_release_grant);
        coh_jw_key_plain(&w, "grant");
        coh_jw_string(&w, grant);
        return client_send_written(c, KIND_RELEASE_GRANT, method_release_grant, &w, NULL, 0);
}

static int release_grant_receive(coherency_client *c, bool blocking, coherency_grant_state *ret_state,
                                 bool *ret_vm_wbinvd_allowed) {
        struct coh_reply reply;
        char *state = NULL, *vm_wbinvd = NULL;
        const char *bad = NULL;
        int r;

        r = client_check_outstanding(c, KIND_RELEASE_GRANT, method_release_grant);
        if (r < 0)
                return r;
        r = client_receive(c, blocking, &reply, NULL, false);
        if (r < 0)
                return r;

        r = get_string(reply.params, "vmWbinvd", false, &vm_wbinvd, &bad);
        if (r >= 0)
                r = get_string(reply.params, "state", false, &state, &bad);
        coh_reply_done(&reply);
        if (r < 0) {
                free(vm_wbinvd);
                free(state);
                return parse_error(c, method_release_grant, r, bad);
        }

        if (ret_state)
                /* A daemon that does not say has ended the grant as far as it knows. */
                *ret_state = state ? grant_state_from_string(state) : COHERENCY_GRANT_ENDED;
        if (ret_vm_wbinvd_allowed)
                *ret_vm_wbinvd_allowed = vm_wbinvd && strcmp(vm_wbinvd, "allowed") == 0;
        free(vm_wbinvd);
        free(state);
        return 0;
}

_public_ int coherency_release_grant_finish(coherency_client *c, coherency_grant_state *ret_state,
                                          bool *ret_vm_wbinvd_allowed) {
        if (!c)
                return -EINVAL;
        return release_grant_receive(c, false, ret_state, ret_vm_wbinvd_allowed);
}

_public_ int coherency_release_grant(coherency_client *c, const char *grant, coherency_grant_state *ret_state,
                                   bool *ret_vm_wbinvd_allowed) {
        int r;

        if (!c)
                return -EINVAL;
        r = coherency_release_grant_send(c, grant);
        if (r < 0)
                return r;
        return release_grant_receive(c, true, ret_state, ret_vm_wbinvd_allowed);
}

/* ---- ListGrants ----------------------------------------------------------------- */

_public_ int coherency_list_grants_send(coherency_client *c) {
        if (!c)
                return -EINVAL;
        return client_send(c, KIND_LIST_GRANTS, method_list_grants, NULL, NULL, 0, false);
}

static int list_grants_receive(coherency_client *c, bool blocking, coherency_grant_list **ret) {
        struct coherency_grant_list *l;
        struct coh_reply reply;
        const char *bad = NULL;
        int r;

        r = client_check_outstanding(c, KIND_LIST_GRANTS, method_list_grants);
        if (r < 0)
                return r;
        r = client_receive(c, blocking, &reply, NULL, false);
        if (r < 0)
                return r;

        r = parse_grant_list(reply.params, &l, &bad);
        coh_reply_done(&reply);
        if (r < 0)
                return parse_error(c, method_list_grants, r, bad);
        *ret = l;
        return (int) l->n;
}

_public_ int coherency_list_grants_finish(coherency_client *c, coherency_grant_list **ret) {
        if (!c || !ret)
                return -EINVAL;
        return list_grants_receive(c, false, ret);
}

_public_ int coherency_list_grants(coherency_client *c, coherency_grant_list **ret) {
        int r;

        if (!c || !ret)
                return -EINVAL;
        r = coherency_list_grants_send(c);
        if (r < 0)
                return r;
        return list_grants_receive(c, true, ret);
}

_public_ size_t coherency_grant_list_get_count(const coherency_grant_list *l) { return l ? l->n : 0; }

_public_ const coherency_grant_info *coherency_grant_list_get(const coherency_grant_list *l, size_t index) {
        return l && index < l->n ? l->items + index : NULL;
}

_public_ const char *coherency_grant_info_get_id(const coherency_grant_info *g) { return g ? g->rec.grant : NULL; }
_public_ const char *coherency_grant_info_get_device(const coherency_grant_info *g) {
        return g ? str_or_null(g->rec.device) : NULL;
}
_public_ int coherency_grant_info_get_iommu_group(const coherency_grant_info *g) { return g ? (int) g->rec.iommu_group : -1; }
_public_ const char *coherency_grant_info_get_file(const coherency_grant_info *g) { return g ? str_or_null(g->rec.file) : NULL; }
_public_ coherency_decision_kind coherency_grant_info_get_decision(const coherency_grant_info *g) {
        return g ? (coherency_decision_kind) g->rec.decision : COHERENCY_DECISION_REFUSED;
}
_public_ const char *coherency_grant_info_get_reason(const coherency_grant_info *g) {
        return g ? coh_reason_to_string(g->rec.reason) : NULL;
}
_public_ const char *coherency_grant_info_get_rule(const coherency_grant_info *g) { return g ? str_or_null(g->rec.rule) : NULL; }
_public_ const char *coherency_grant_info_get_wbinvd(const coherency_grant_info *g) {
        return g ? coh_wbinvd_to_string(g->rec.wbinvd) : NULL;
}
_public_ const char *coherency_grant_info_get_vm_wbinvd(const coherency_grant_info *g) {
        return g ? coh_vm_wbinvd_to_string(g->rec.vm_wbinvd) : NULL;
}
_public_ coherency_kvm_attach coherency_grant_info_get_kvm_attach(const coherency_grant_info *g) {
        return g ? (coherency_kvm_attach) g->rec.kvm_attach : COHERENCY_KVM_ATTACH_NONE;
}
_public_ coherency_grant_state coherency_grant_info_get_state(const coherency_grant_info *g) {
        return g && g->rec.state >= 0 ? (coherency_grant_state) g->rec.state : COHERENCY_GRANT_STATE_OTHER;
}
_public_ const char *coherency_grant_info_get_state_string(const coherency_grant_info *g) {
        return g ? coh_grant_state_to_string(g->rec.state) : NULL;
}
_public_ const char *coherency_grant_info_get_end(const coherency_grant_info *g) { return g ? str_or_null(g->rec.end) : NULL; }
_public_ pid_t coherency_grant_info_get_peer_pid(const coherency_grant_info *g) { return g ? (pid_t) g->rec.peer_pid : 0; }
_public_ uid_t coherency_grant_info_get_peer_uid(const coherency_grant_info *g) {
        return g ? (uid_t) g->rec.peer_uid : (uid_t) -1;
}
_public_ uint64_t coherency_grant_info_get_since(const coherency_grant_info *g) { return g ? (uint64_t) g->rec.since : 0; }

/* ---- WatchGrants --------------------------------------------------------------- */

struct coherency_watch_event {
        coherency_watch_event_kind kind;
        char *kind_string;
        struct coherency_grant_list *grants;  /* the reply's list, shared */
        const struct coherency_grant_info *grant; /* in grants; NULL for GRANTS */
};

struct coherency_watch {
        struct coherency_client *client;
        bool ended;                     /* the daemon ended the stream */
        /* The reply being handed out, one event per grant it names. */
        struct coherency_grant_list *pending;
        char *pending_kind;
        size_t pending_next;
};

_public_ coherency_watch_event *coherency_watch_event_free(coherency_watch_event *e) {
        if (!e)
                return NULL;
        free(e->kind_string);
        coherency_grant_list_free(e->grants);
        free(e);
        return NULL;
}

_public_ coherency_watch *coherency_watch_free(coherency_watch *w) {
        if (!w)
                return NULL;
        coherency_client_free(w->client);
        coherency_grant_list_free(w->pending);
        free(w->pending_kind);
        free(w);
        return NULL;
}

_public_ int coherency_watch_new(const char *path, coherency_watch **ret) {
        struct coherency_watch *w;
        int r;

        if (!ret)
                return -EINVAL;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        r = coherency_connect(path, &w->client);
        if (r < 0) {
                free(w);
                return r;
        }
        r = client_send(w->client, KIND_WATCH_GRANTS, method_watch_grants, NULL, NULL, 0, true);
        if (r < 0) {
                coherency_watch_free(w);
                return r;
        }

        *ret = w;
        return 0;
}

_public_ int coherency_watch_get_fd(const coherency_watch *w) {
        return w ? coherency_client_get_fd(w->client) : -EINVAL;
}

_public_ int coherency_watch_set_timeout(coherency_watch *w, uint64_t usec) {
        int r;

        if (!w)
                return -EINVAL;
        r = coherency_client_set_timeout(w->client, usec);
        if (r < 0)
                return r;
        /* Only the first reply has a deadline; move it if it is still to come. */
        if (w->client->state == CALL_STREAM && !w->client->got_reply)
                set_deadline(w->client);
        return 0;
}

_public_ const char *coherency_watch_get_error(const coherency_watch *w) {
        return w ? coherency_client_get_error(w->client) : "";
}

static coherency_watch_event_kind watch_kind_from_string(const char *s) {
        for (size_t i = 0; i < sizeof(watch_kinds) / sizeof(watch_kinds[0]); i++)
                if (watch_kinds[i] && strcmp(watch_kinds[i], s) == 0)
                        return (coherency_watch_event_kind) i;
        return COHERENCY_WATCH_OTHER;
}

/* The next event out of the pending reply: 1 and *ret, 0 when it is used up. */
static int watch_next_pending(struct coherency_watch *w, coherency_watch_event **ret) {
        struct coherency_watch_event *e;
        coherency_watch_event_kind kind;

        if (!w->pending)
                return 0;

        kind = watch_kind_from_string(w->pending_kind);
        /* The snapshot is one event; a change is one per grant it names. */
        if (kind == COHERENCY_WATCH_GRANTS ? w->pending_next > 0 : w->pending_next >= w->pending->n) {
                w->pending = coherency_grant_list_free(w->pending);
                free(w->pending_kind);
                w->pending_kind = NULL;
                return 0;
        }

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->kind_string = strdup(w->pending_kind);
        if (!e->kind_string) {
                free(e);
                return -ENOMEM;
        }
        e->kind = kind;
        e->grants = grant_list_ref(w->pending);
        if (kind != COHERENCY_WATCH_GRANTS)
                e->grant = w->pending->items + w->pending_next;
        w->pending_next++;

        *ret = e;
        return 1;
}

_public_ int coherency_watch_process(coherency_watch *w, coherency_watch_event **ret) {
        struct coherency_client *c;
        struct coh_reply reply;
        const char *bad = NULL;
        char *kind = NULL;
        int r;

        if (!w || !ret)
                return -EINVAL;
        c = w->client;

        for (;;) {
                r = watch_next_pending(w, ret);
                if (r != 0)
                        return r;

                if (w->ended)
                        return client_error(c, -ECONNRESET, "%s: coherencyd ended the watch", method_watch_grants);
                r = client_check_outstanding(c, KIND_WATCH_GRANTS, method_watch_grants);
                if (r < 0)
                        return r;

                r = client_receive(c, false, &reply, NULL, false);
                if (r == -EAGAIN)
                        return 0;
                if (c->state == CALL_IDLE && !c->broken)
                        /* That was the stream's last reply (or its error). */
                        w->ended = true;
                if (r < 0)
                        return r;

                r = get_string(reply.params, "event", true, &kind, &bad);
                if (r >= 0)
                        r = parse_grant_list(reply.params, &w->pending, &bad);
                coh_reply_done(&reply);
                if (r < 0) {
                        free(kind);
                        /* A stream we cannot follow is a stream we may have lost events of. */
                        (void) parse_error(c, method_watch_grants, r, bad);
                        return client_break(c, r == -ENOMEM ? r : -EPROTO, "%s", c->error);
                }
                w->pending_kind = kind;
                kind = NULL;
                w->pending_next = 0;
        }
}

_public_ int coherency_watch_wait(coherency_watch *w, uint64_t usec) {
        struct pollfd p;
        uint64_t end, now;

        if (!w)
                return -EINVAL;
        /* Events already parsed need no wait. */
        if (w->pending)
                return 1;

        p = (struct pollfd) {
                .fd = w->client->fd,
                .events = POLLIN,
        };
        now = now_usec();
        end = usec == COHERENCY_TIMEOUT_INFINITY || usec > UINT64_MAX - now ? UINT64_MAX : now + usec;
        for (;;) {
                int timeout_ms = -1, n;

                if (end != UINT64_MAX) {
                        now = now_usec();
                        if (now >= end)
                                return 0;
                        uint64_t left = (end - now + 999) / 1000;
                        timeout_ms = left > INT_MAX ? INT_MAX : (int) left;
                }
                n = poll(&p, 1, timeout_ms);
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n > 0)
                        return 1;
        }
}

_public_ coherency_watch_event_kind coherency_watch_event_get_kind(const coherency_watch_event *e) {
        return e ? e->kind : COHERENCY_WATCH_OTHER;
}

_public_ const char *coherency_watch_event_get_kind_string(const coherency_watch_event *e) {
        return e ? e->kind_string : NULL;
}

_public_ const char *coherency_watch_event_get_grant(const coherency_watch_event *e) {
        return e && e->grant ? e->grant->rec.grant : NULL;
}

_public_ const coherency_grant_info *coherency_watch_event_get_grant_info(const coherency_watch_event *e) {
        return e ? e->grant : NULL;
}

_public_ const coherency_grant_list *coherency_watch_event_get_grants(const coherency_watch_event *e) {
        return e ? e->grants : NULL;
}

/* ---- raw calls -------------------------------------------------------------------- */

static int reply_to_json(struct coherency_client *c, const struct coh_reply *reply, char **ret_json) {
        const char *s;
        char *copy;

        if (!ret_json)
                return 0;
        s = json_object_to_json_string_ext(reply->parameters, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        copy = s ? strdup(s) : NULL;
        if (!copy)
                return client_error(c, -ENOMEM, "%m");
        *ret_json = copy;
        return 0;
}

_public_ int coherency_call_send(coherency_client *c, const char *method, const char *parameters_json, bool more) {
        json_object *parameters = NULL;

        if (!c || !method)
                return -EINVAL;
        if (!method[0])
                return client_error(c, -EINVAL, "method: empty method name");

        if (parameters_json) {
                enum json_tokener_error e;

                parameters = json_tokener_parse_verbose(parameters_json, &e);
                if (!parameters || !json_object_is_type(parameters, json_type_object)) {
                        json_object_put(parameters);
                        return client_error(c, -EINVAL, "%s: parameters are not a JSON object%s%s", method,
                                            parameters ? "" : ": ",
                                            parameters ? "" : json_tokener_error_desc(e));
                }
        }

        /* A raw call is not a typed one, whatever its name: no typed _finish may claim it. */
        return client_send(c, KIND_RAW, method, parameters, NULL, 0, more);
}

static int call_receive(coherency_client *c, bool blocking, char **ret_json) {
        struct coh_reply reply;
        bool continues;
        int r;

        r = client_check_outstanding(c, KIND_RAW, c->method ?: "call");
        if (r < 0)
                return r;
        r = client_receive(c, blocking, &reply, NULL, true);
        if (r < 0)
                return r;
        continues = reply.continues;

        r = reply_to_json(c, &reply, ret_json);
        coh_reply_done(&reply);
        if (r < 0)
                return r;
        return continues;
}

_public_ int coherency_call_finish(coherency_client *c, char **ret_json) {
        if (!c)
                return -EINVAL;
        return call_receive(c, false, ret_json);
}

_public_ int coherency_call(coherency_client *c, const char *method, const char *parameters_json, bool more,
                          char **ret_json) {
        int r;

        if (!c || !method)
                return -EINVAL;
        r = coherency_call_send(c, method, parameters_json, more);
        if (r < 0)
                return r;
        r = call_receive(c, true, ret_json);
        return r < 0 ? r : 0;
}

_public_ int coherency_call_next(coherency_client *c, char **ret_json) {
        int r;

        if (!c)
                return -EINVAL;
        if (!c->broken && c->state == CALL_IDLE) {
                /* The last reply said it was the last. */
                if (ret_json)
                        *ret_json = NULL;
                return 0;
        }
        if (!c->broken && c->state != CALL_STREAM)
                return client_error(c, -EALREADY, "another call is in progress on this connection");

        r = call_receive(c, true, ret_json);
        return r < 0 ? r : 1;
}
