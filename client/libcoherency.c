/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * libcoherency: the VMM side of coherencyd's Varlink protocol.
 *
 * One connection, at most one call outstanding on it. That rule is what lets
 * the daemon tie the descriptors of a call to the call (see DESIGN.md §5), and
 * it keeps the library trivially correct: a reply is always the answer to the
 * one call we have in flight.
 *
 * The socket stays blocking, which is what coh_send_message() expects: our
 * calls are a few hundred bytes and nothing else is queued behind them, so a
 * send never waits on the daemon in practice. Reads never block in the
 * kernel (coh_frame_recv() uses MSG_DONTWAIT); the synchronous calls wait in
 * poll(), and the _finish functions do not wait at all.
 */

#include <errno.h>
#include <fcntl.h>
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
#include <unistd.h>

#include "call.h"
#include "coherency.h"
#include "frame.h"
#include "json-util.h"

/* Identity matters for the typed _finish calls, so these are objects, not just literals. */
static const char method_get_info[] = "io.coherencyd.Broker.GetInfo";
static const char method_probe[] = "io.coherencyd.Broker.Probe";
static const char method_request_grant[] = "io.coherencyd.Broker.RequestGrant";
static const char method_release_grant[] = "io.coherencyd.Broker.ReleaseGrant";
static const char method_list_grants[] = "io.coherencyd.Broker.ListGrants";

enum call_state {
        CALL_IDLE,      /* nothing outstanding */
        CALL_REPLY,     /* one reply expected */
        CALL_STREAM,    /* a "more" call: replies until one without "continues" */
};

struct coherency_client {
        int fd;
        struct coh_frame frame;

        enum call_state state;
        const char *method;     /* the outstanding typed call, NULL for a raw one */

        /* Once the stream is out of step (EOF, garbage, a short write) no later
         * reply could be matched to its call: every call fails with this. */
        int broken;

        char error_name[128];
        char error[1024];
};

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

        /* %m in format means the error passed in, not whatever errno happens to be. */
        errno = -error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        set_error_message(c, "", buf);
        return error;
}

static int client_break(struct coherency_client *c, int error, const char *what) {
        (void) client_error(c, error, "%s", what);
        c->broken = error;
        c->state = CALL_IDLE;
        c->method = NULL;
        return error;
}

static const struct {
        const char *name;
        int error;
} error_map[] = {
        { "io.coherencyd.Broker.InvalidFileDescriptor",  EBADF      },
        { "io.coherencyd.Broker.NoSuchGrant",            ENOENT     },
        { "io.coherencyd.Broker.PermissionDenied",       EPERM      },
        { "io.coherencyd.Broker.LimitExceeded",          EUSERS     },
        { "io.coherencyd.Broker.VmHasKvmVfioDevice",     EBUSY      },
        { "io.coherencyd.Broker.CoherencyUnsupported",   EOPNOTSUPP },
        { "io.coherencyd.Manager.InvalidPolicy",         EBADMSG    },
        { "org.varlink.service.InvalidParameter",        EINVAL     },
        { "org.varlink.service.MethodNotFound",          ENOSYS     },
        /* Not in the header's list, but to a caller they mean the same as their Broker/MethodNotFound twins. */
        { "org.varlink.service.MethodNotImplemented",    ENOSYS     },
        { "org.varlink.service.PermissionDenied",        EPERM      },
};

static int error_to_errno(const char *name, json_object *parameters) {
        int64_t e;

        /* The daemon passes the kernel's answer through: that is the errno that explains it. */
        if (strcmp(name, "io.coherencyd.Broker.BackendError") == 0)
                return coh_json_get_int64(parameters, "errno", 1, 4095, &e) >= 0 ? (int) -e : -EIO;

        for (size_t i = 0; i < sizeof(error_map) / sizeof(error_map[0]); i++)
                if (strcmp(name, error_map[i].name) == 0)
                        return -error_map[i].error;
        return -EPROTO;
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
        const char *format = NULL;
        char *text = NULL;
        size_t size = 0;
        bool first = true;
        FILE *f;

        for (size_t i = 0; i < sizeof(error_formats) / sizeof(error_formats[0]); i++)
                if (strcmp(reply->error, error_formats[i].name) == 0)
                        format = error_formats[i].format;

        f = open_memstream(&text, &size);
        if (!f) {
                /* Still worth saying which error it was. */
                set_error_message(c, reply->error, reply->error);
                return error_to_errno(reply->error, reply->parameters);
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

        return error_to_errno(reply->error, reply->parameters);
}

static int check_fd(struct coherency_client *c, const char *what, int fd) {
        /* Caught here, a bad descriptor costs an error; caught by sendmsg() it would cost the connection. */
        if (fd < 0 || fcntl(fd, F_GETFD) < 0)
                return client_error(c, -EBADF, "%s: not an open file descriptor", what);
        return 0;
}

static int json_add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/*
 * Adds descriptor fd (-1 and optional: nothing) as parameter `name`: the index
 * it will have in the message's descriptor array. On failure the error is
 * recorded on c and the caller frees parameters.
 */
static int add_fd_param(struct coherency_client *c, json_object *parameters, const char *name, int fd,
                        bool optional, int *fds, size_t *n_fds) {
        if (fd == -1 && optional)
                return 0;
        int r = check_fd(c, name, fd);
        if (r < 0)
                return r;
        r = json_add(parameters, name, json_object_new_int((int) *n_fds));
        if (r < 0)
                return client_error(c, r, "%s: %m", name);
        fds[(*n_fds)++] = fd;
        return 0;
}

/* Sends one call. Takes ownership of parameters in every case. */
static int client_send(struct coherency_client *c, const char *method, json_object *parameters,
                       const int *fds, size_t n_fds, bool more) {
        char *json;
        int r;

        if (c->broken < 0) {
                json_object_put(parameters);
                return c->broken;
        }
        if (c->state != CALL_IDLE) {
                json_object_put(parameters);
                return client_error(c, -EBUSY, "%s: another call is still in progress on this connection", method);
        }

        json = coh_call_format(method, parameters, more, false);
        if (!json)
                return client_error(c, -ENOMEM, "%s: cannot format the call: %m", method);

        r = coh_send_message(c->fd, json, fds, n_fds);
        free(json);
        if (r == -EMSGSIZE)
                /* Refused before any byte was sent: the connection is fine. */
                return client_error(c, r, "%s: call too large", method);
        if (r < 0) {
                /* Possibly half a message on the wire: nothing after it could be trusted. */
                if (r == -EPIPE)
                        r = -ECONNRESET;
                (void) client_error(c, r, "%s: cannot send: %m", method);
                c->broken = r;
                return r;
        }

        c->state = more ? CALL_STREAM : CALL_REPLY;
        c->method = method;
        return 0;
}

static int client_handle_message(struct coherency_client *c, struct coh_message *m, struct coh_reply *ret) {
        struct coh_reply reply;
        int r;

        /* None of our methods returns descriptors; ones we did not ask for would only leak. */
        if (m->n_fds > 0) {
                coh_message_done(m);
                return client_break(c, -EPROTO, "coherencyd sent file descriptors with a reply");
        }

        r = coh_reply_parse(m->json, &reply);
        coh_message_done(m);
        if (r == -ENOMEM)
                return client_break(c, r, "out of memory parsing a reply");
        if (r < 0)
                return client_break(c, -EPROTO, "coherencyd sent a malformed reply");

        if (reply.continues && c->state != CALL_STREAM) {
                coh_reply_done(&reply);
                return client_break(c, -EPROTO, "coherencyd sent a stream of replies to a call without \"more\"");
        }
        if (!reply.continues) {
                c->state = CALL_IDLE;
                c->method = NULL;
        }

        if (reply.error) {
                r = client_error_reply(c, &reply);
                coh_reply_done(&reply);
                return r;
        }

        *ret = reply;
        return 0;
}

static int client_wait(struct coherency_client *c) {
        struct pollfd p = {
                .fd = c->fd,
                .events = POLLIN,
        };

        /* A signal handler in the VMM must not make us lose the reply in flight. */
        while (poll(&p, 1, -1) < 0)
                if (errno != EINTR)
                        return client_break(c, -errno, "poll");
        return 0;
}

/*
 * The reply to the outstanding call: 0 and *ret filled, -EAGAIN when
 * !blocking and it is not all in yet, or the call's error.
 */
static int client_receive(struct coherency_client *c, bool blocking, struct coh_reply *ret) {
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
                        return client_handle_message(c, &m, ret);

                n = coh_frame_recv(&c->frame, c->fd);
                if (n > 0 || n == -EINTR)
                        continue;
                if (n == 0 || n == -ECONNRESET)
                        return client_break(c, -ECONNRESET, "coherencyd closed the connection");
                if (n == -EPROTO)
                        return client_break(c, -EPROTO, "coherencyd sent file descriptors that belong to no reply");
                if (n == -EMSGSIZE || n == -ENOBUFS)
                        return client_break(c, -EPROTO, "coherencyd sent a reply that is too large");
                if (n != -EAGAIN) {
                        (void) client_error(c, (int) n, "receiving from coherencyd: %m");
                        c->broken = (int) n;
                        return (int) n;
                }
                if (!blocking)
                        return -EAGAIN;

                r = client_wait(c);
                if (r < 0)
                        return r;
        }
}

static int client_call(struct coherency_client *c, const char *method, json_object *parameters,
                       const int *fds, size_t n_fds, struct coh_reply *ret) {
        int r;

        r = client_send(c, method, parameters, fds, n_fds, false);
        if (r < 0)
                return r;
        return client_receive(c, true, ret);
}

static int reply_field_error(struct coherency_client *c, const char *method, const char *field) {
        return client_error(c, -EPROTO, "%s: coherencyd's reply has no valid \"%s\"", method, field);
}

/* An optional string field: absent or null leaves "". */
static int get_string(json_object *o, const char *key, char *buf, size_t size, const char **bad) {
        const char *s;
        int r;

        r = coh_json_get_string(o, key, &s);
        if (r == -ENOENT) {
                buf[0] = '\0';
                return 0;
        }
        if (r < 0) {
                *bad = key;
                return -EPROTO;
        }
        strcpy_truncate(buf, size, s);
        return 0;
}

static int get_required_string(json_object *o, const char *key, char *buf, size_t size, const char **bad) {
        const char *s;

        if (coh_json_get_string(o, key, &s) < 0) {
                *bad = key;
                return -EPROTO;
        }
        strcpy_truncate(buf, size, s);
        return 0;
}

static int get_bool(json_object *o, const char *key, bool *ret, const char **bad) {
        int r;

        r = coh_json_get_bool(o, key, ret);
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

static int get_int64(json_object *o, const char *key, int64_t min, int64_t max, int64_t def, int64_t *ret,
                     const char **bad) {
        int r;

        r = coh_json_get_int64(o, key, min, max, ret);
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

/* DeviceFacts, and the Facts object, which is the same for the deciding device minus the rule fields. */
static int parse_device_facts(json_object *o, struct coherency_device_facts *ret, const char **bad) {
        struct coherency_device_facts d = {};
        int64_t group;

        if (!json_object_is_type(o, json_type_object)) {
                *bad = "facts";
                return -EPROTO;
        }

        if (get_string(o, "slot", d.slot, sizeof(d.slot), bad) < 0 ||
            get_string(o, "vendor", d.vendor, sizeof(d.vendor), bad) < 0 ||
            get_string(o, "device", d.device, sizeof(d.device), bad) < 0 ||
            get_string(o, "class", d.class_, sizeof(d.class_), bad) < 0 ||
            get_string(o, "driver", d.driver, sizeof(d.driver), bad) < 0 ||
            get_string(o, "iommu", d.iommu, sizeof(d.iommu), bad) < 0 ||
            get_int64(o, "iommuGroup", 0, INT_MAX, -1, &group, bad) < 0 ||
            get_string(o, "noSnoop", d.no_snoop, sizeof(d.no_snoop), bad) < 0 ||
            get_string(o, "noSnoopRule", d.no_snoop_rule, sizeof(d.no_snoop_rule), bad) < 0 ||
            get_string(o, "mode", d.mode, sizeof(d.mode), bad) < 0 ||
            get_string(o, "modeRule", d.mode_rule, sizeof(d.mode_rule), bad) < 0 ||
            get_bool(o, "iommuEnforces", &d.iommu_enforces, bad) < 0 ||
            get_bool(o, "ioasCoherent", &d.ioas_coherent, bad) < 0)
                return -EPROTO;
        d.iommu_group = (int) group;

        *ret = d;
        return 0;
}

static int parse_facts(json_object *o, struct coherency_decision *d, const char **bad) {
        json_object *devices;
        size_t n;
        int r;

        r = parse_device_facts(o, &d->facts, bad);
        if (r < 0)
                return r;

        if (!json_object_object_get_ex(o, "devices", &devices) || !devices)
                return 0;
        if (!json_object_is_type(devices, json_type_array)) {
                *bad = "facts.devices";
                return -EPROTO;
        }

        n = json_object_array_length(devices);
        if (n == 0)
                return 0;
        d->devices = calloc(n, sizeof(struct coherency_device_facts));
        if (!d->devices)
                return -ENOMEM;
        d->n_devices = n;

        for (size_t i = 0; i < n; i++) {
                struct coherency_device_facts *f = d->devices + i;

                r = parse_device_facts(json_object_array_get_idx(devices, i), f, bad);
                if (r < 0) {
                        *bad = "facts.devices";
                        return r;
                }

                /* Facts names the deciding device but not the rules behind its
                 * settings; its entry in devices does. */
                if (f->slot[0] && strcmp(f->slot, d->facts.slot) == 0) {
                        memcpy(d->facts.no_snoop_rule, f->no_snoop_rule, sizeof(f->no_snoop_rule));
                        memcpy(d->facts.mode, f->mode, sizeof(f->mode));
                        memcpy(d->facts.mode_rule, f->mode_rule, sizeof(f->mode_rule));
                }
        }
        return 0;
}

static int parse_decision(struct coherency_client *c, const char *method, json_object *p,
                          struct coherency_decision *ret) {
        struct coherency_decision d = {};
        const char *bad = NULL;
        json_object *facts;
        int r;

        if (get_string(p, "grant", d.grant, sizeof(d.grant), &bad) < 0 ||
            get_required_string(p, "decision", d.decision, sizeof(d.decision), &bad) < 0 ||
            get_required_string(p, "reason", d.reason, sizeof(d.reason), &bad) < 0 ||
            get_string(p, "rule", d.rule, sizeof(d.rule), &bad) < 0 ||
            get_string(p, "mode", d.mode, sizeof(d.mode), &bad) < 0 ||
            get_string(p, "vmWbinvd", d.vm_wbinvd, sizeof(d.vm_wbinvd), &bad) < 0 ||
            get_bool(p, "attached", &d.attached, &bad) < 0)
                return reply_field_error(c, method, bad);

        if (strcmp(d.decision, "not-needed") == 0)
                d.verdict = COHERENCY_NOT_NEEDED;
        else if (strcmp(d.decision, "granted") == 0)
                d.verdict = COHERENCY_GRANTED;
        else if (strcmp(d.decision, "refused") == 0)
                d.verdict = COHERENCY_REFUSED;
        else
                /* A caller switching on the verdict must never see a decision we made up. */
                return reply_field_error(c, method, "decision");

        if (json_object_object_get_ex(p, "facts", &facts) && facts) {
                r = parse_facts(facts, &d, &bad);
                if (r < 0) {
                        coherency_decision_clear(&d);
                        if (r == -ENOMEM)
                                return client_error(c, r, "%s: %m", method);
                        return reply_field_error(c, method, bad);
                }
        }

        *ret = d;
        return 0;
}

int coherency_connect(const char *path, struct coherency_client **ret) {
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
        /* Replies may be long (Manager.ListGrants); calls stay under COH_MESSAGE_MAX. */
        coh_frame_init_max(&c->frame, COH_REPLY_MAX);

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
                r = -errno;
                goto fail;
        }
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

void coherency_client_free(struct coherency_client *c) {
        if (!c)
                return;
        /* Closing is how a VMM gives up its grants: the daemon ends them on EOF. */
        if (c->fd >= 0)
                (void) close(c->fd);
        coh_frame_done(&c->frame);
        free(c);
}

int coherency_client_fd(const struct coherency_client *c) {
        if (!c)
                return -EINVAL;
        return c->fd;
}

const char *coherency_client_error(const struct coherency_client *c) {
        return c ? c->error : "";
}

const char *coherency_client_error_name(const struct coherency_client *c) {
        return c ? c->error_name : "";
}

int coherency_get_info(struct coherency_client *c, struct coherency_info *ret) {
        struct coherency_info info = {};
        struct coh_reply reply;
        const char *bad = NULL;
        json_object *limits;
        int64_t max_grants = 0;
        int r;

        if (!c || !ret)
                return -EINVAL;

        r = client_call(c, method_get_info, NULL, NULL, 0, &reply);
        if (r < 0)
                return r;

        if (get_required_string(reply.parameters, "version", info.version, sizeof(info.version), &bad) < 0 ||
            get_required_string(reply.parameters, "backend", info.backend, sizeof(info.backend), &bad) < 0 ||
            get_required_string(reply.parameters, "mode", info.mode, sizeof(info.mode), &bad) < 0 ||
            get_string(reply.parameters, "modeRule", info.mode_rule, sizeof(info.mode_rule), &bad) < 0)
                goto invalid;

        if (json_object_object_get_ex(reply.parameters, "limits", &limits) && limits) {
                if (!json_object_is_type(limits, json_type_object)) {
                        bad = "limits";
                        goto invalid;
                }
                if (get_int64(limits, "maxGrantsPerConnection", 0, UINT_MAX, 0, &max_grants, &bad) < 0)
                        goto invalid;
        }
        info.max_grants_per_connection = (unsigned) max_grants;

        coh_reply_done(&reply);
        *ret = info;
        return 0;

invalid:
        coh_reply_done(&reply);
        return reply_field_error(c, method_get_info, bad);
}

int coherency_probe(struct coherency_client *c, int device_fd, int iommu_fd, int ioas_coherent,
                    struct coherency_decision *ret) {
        struct coh_reply reply;
        json_object *parameters;
        int fds[2], r;
        size_t n_fds = 0;

        if (!c || !ret)
                return -EINVAL;
        if (ioas_coherent < -1 || ioas_coherent > 1)
                return client_error(c, -EINVAL, "ioas_coherent: must be -1, 0 or 1");

        parameters = json_object_new_object();
        if (!parameters)
                return client_error(c, -ENOMEM, "%s: %m", method_probe);
        r = add_fd_param(c, parameters, "device", device_fd, false, fds, &n_fds);
        if (r >= 0)
                r = add_fd_param(c, parameters, "iommu", iommu_fd, true, fds, &n_fds);
        if (r >= 0 && ioas_coherent >= 0) {
                r = json_add(parameters, "ioasCoherent", json_object_new_boolean(ioas_coherent));
                if (r < 0)
                        r = client_error(c, r, "%s: %m", method_probe);
        }
        if (r < 0) {
                json_object_put(parameters);
                return r;
        }

        r = client_call(c, method_probe, parameters, fds, n_fds, &reply);
        if (r < 0)
                return r;

        r = parse_decision(c, method_probe, reply.parameters, ret);
        coh_reply_done(&reply);
        return r;
}

int coherency_request_grant_send(struct coherency_client *c, int vm_fd, int device_fd, int iommu_fd) {
        json_object *parameters;
        int fds[3], r;
        size_t n_fds = 0;

        if (!c)
                return -EINVAL;

        parameters = json_object_new_object();
        if (!parameters)
                return client_error(c, -ENOMEM, "%s: %m", method_request_grant);
        r = add_fd_param(c, parameters, "vm", vm_fd, false, fds, &n_fds);
        if (r >= 0)
                r = add_fd_param(c, parameters, "device", device_fd, false, fds, &n_fds);
        if (r >= 0)
                r = add_fd_param(c, parameters, "iommu", iommu_fd, true, fds, &n_fds);
        if (r < 0) {
                json_object_put(parameters);
                return r;
        }

        return client_send(c, method_request_grant, parameters, fds, n_fds, false);
}

static int request_grant_receive(struct coherency_client *c, bool blocking, struct coherency_decision *ret) {
        struct coh_reply reply;
        int r;

        if (c->broken < 0)
                return c->broken;
        if (c->state == CALL_IDLE)
                return client_error(c, -EINVAL, "%s: no call in progress", method_request_grant);
        if (c->method != method_request_grant)
                return client_error(c, -EBUSY, "%s: another call is in progress", method_request_grant);

        r = client_receive(c, blocking, &reply);
        if (r < 0)
                return r;

        r = parse_decision(c, method_request_grant, reply.parameters, ret);
        coh_reply_done(&reply);
        return r;
}

int coherency_request_grant_finish(struct coherency_client *c, struct coherency_decision *ret) {
        if (!c || !ret)
                return -EINVAL;
        return request_grant_receive(c, false, ret);
}

int coherency_request_grant(struct coherency_client *c, int vm_fd, int device_fd, int iommu_fd,
                            struct coherency_decision *ret) {
        int r;

        if (!c || !ret)
                return -EINVAL;

        r = coherency_request_grant_send(c, vm_fd, device_fd, iommu_fd);
        if (r < 0)
                return r;
        return request_grant_receive(c, true, ret);
}

int coherency_release_grant_vm_wbinvd(struct coherency_client *c, const char *grant, char ret_vm_wbinvd[16]) {
        struct coh_reply reply;
        json_object *parameters;
        char vm_wbinvd[16];
        const char *bad = NULL;
        int r;

        if (!c || !grant)
                return -EINVAL;
        if (!grant[0])
                return client_error(c, -EINVAL, "grant: empty grant id");

        parameters = json_object_new_object();
        if (!parameters)
                return client_error(c, -ENOMEM, "%s: %m", method_release_grant);
        r = json_add(parameters, "grant", json_object_new_string(grant));
        if (r < 0) {
                json_object_put(parameters);
                return client_error(c, r, "%s: %m", method_release_grant);
        }

        r = client_call(c, method_release_grant, parameters, NULL, 0, &reply);
        if (r < 0)
                return r;

        r = get_string(reply.parameters, "vmWbinvd", vm_wbinvd, sizeof(vm_wbinvd), &bad);
        coh_reply_done(&reply);
        if (r < 0)
                return reply_field_error(c, method_release_grant, bad);

        if (ret_vm_wbinvd)
                memcpy(ret_vm_wbinvd, vm_wbinvd, sizeof(vm_wbinvd));
        return 0;
}

int coherency_release_grant(struct coherency_client *c, const char *grant) {
        return coherency_release_grant_vm_wbinvd(c, grant, NULL);
}

static int parse_grant(json_object *o, struct coherency_grant *ret, const char **bad) {
        struct coherency_grant g = {};
        int64_t pid, uid, since;

        if (!json_object_is_type(o, json_type_object)) {
                *bad = "grants";
                return -EPROTO;
        }

        if (get_required_string(o, "grant", g.grant, sizeof(g.grant), bad) < 0 ||
            get_string(o, "slot", g.slot, sizeof(g.slot), bad) < 0 ||
            get_string(o, "decision", g.decision, sizeof(g.decision), bad) < 0 ||
            get_string(o, "reason", g.reason, sizeof(g.reason), bad) < 0 ||
            get_string(o, "vmWbinvd", g.vm_wbinvd, sizeof(g.vm_wbinvd), bad) < 0 ||
            get_int64(o, "peerPid", INT64_MIN, INT64_MAX, 0, &pid, bad) < 0 ||
            get_int64(o, "peerUid", INT64_MIN, INT64_MAX, -1, &uid, bad) < 0 ||
            get_int64(o, "since", 0, INT64_MAX, 0, &since, bad) < 0)
                return -EPROTO;
        g.peer_pid = pid;
        g.peer_uid = uid;
        g.since_usec = (uint64_t) since;

        *ret = g;
        return 0;
}

int coherency_list_grants(struct coherency_client *c, struct coherency_grant **ret) {
        struct coherency_grant *grants = NULL;
        struct coh_reply reply;
        const char *bad = NULL;
        json_object *array;
        size_t n;
        int r;

        if (!c || !ret)
                return -EINVAL;

        r = client_call(c, method_list_grants, NULL, NULL, 0, &reply);
        if (r < 0)
                return r;

        if (!json_object_object_get_ex(reply.parameters, "grants", &array) ||
            !json_object_is_type(array, json_type_array)) {
                coh_reply_done(&reply);
                return reply_field_error(c, method_list_grants, "grants");
        }

        n = json_object_array_length(array);
        if (n > INT_MAX) {
                coh_reply_done(&reply);
                return reply_field_error(c, method_list_grants, "grants");
        }
        if (n > 0) {
                grants = calloc(n, sizeof(struct coherency_grant));
                if (!grants) {
                        coh_reply_done(&reply);
                        return client_error(c, -ENOMEM, "%s: %m", method_list_grants);
                }
        }
        for (size_t i = 0; i < n; i++)
                if (parse_grant(json_object_array_get_idx(array, i), grants + i, &bad) < 0) {
                        free(grants);
                        coh_reply_done(&reply);
                        return reply_field_error(c, method_list_grants, bad);
                }

        coh_reply_done(&reply);
        *ret = grants;
        return (int) n;
}

void coherency_decision_clear(struct coherency_decision *d) {
        if (!d)
                return;
        free(d->devices);
        *d = (struct coherency_decision) {};
}

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

int coherency_call(struct coherency_client *c, const char *method, const char *parameters_json, bool more,
                   char **ret_json) {
        json_object *parameters = NULL;
        struct coh_reply reply;
        int r;

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

        r = client_send(c, method, parameters, NULL, 0, more);
        if (r < 0)
                return r;
        /* A raw call is not a typed one, whatever its name: no _finish may claim it. */
        c->method = NULL;

        r = client_receive(c, true, &reply);
        if (r < 0)
                return r;

        r = reply_to_json(c, &reply, ret_json);
        coh_reply_done(&reply);
        return r;
}

int coherency_call_next(struct coherency_client *c, char **ret_json) {
        struct coh_reply reply;
        int r;

        if (!c)
                return -EINVAL;
        if (c->broken < 0)
                return c->broken;
        if (c->state == CALL_IDLE) {
                /* The last reply said it was the last. */
                if (ret_json)
                        *ret_json = NULL;
                return 0;
        }
        if (c->state != CALL_STREAM)
                return client_error(c, -EBUSY, "another call is in progress on this connection");

        r = client_receive(c, true, &reply);
        if (r < 0)
                return r;

        r = reply_to_json(c, &reply, ret_json);
        coh_reply_done(&reply);
        return r < 0 ? r : 1;
}
