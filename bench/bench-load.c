/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * bench-load: the bench's client (bench/run drives it; see bench/README.md).
 * It loads three servers with the same calls and compares them:
 *
 *   coherencyd  the daemon on the simulated platform, through libcoherency
 *   echo        bench-echo-server: a bare SCM_RIGHTS echo of the same bytes
 *               and descriptors (the physical limit)
 *   dbus        bench-dbus-service behind a private dbus-daemon: the same
 *               bytes and descriptors as one D-Bus method call
 *
 * Operations: getinfo (org.varlink.service.GetInfo), probe (Probe of the
 * client's device) and grant (RequestGrant of the client's device with its VM
 * and container, the group descriptor handed over and closed, ReleaseGrant,
 * which must answer "ended": two round trips, one cycle). Client i uses
 * device i of the tree bench/make-bench-sysfs made, its own VM and container.
 *
 * Modes (each prints JSON lines on stdout; bench/report turns them into the
 * table, results.json and the plot):
 *
 *   record  relays one libcoherency client's getinfo, probe and grant through
 *           a socket of its own to coherencyd and writes what went each way
 *           (the conversation the echo and D-Bus servers replay)
 *   matrix  closed-loop load: N clients (threads, one connection each to every
 *           server), for each N batches of --duration seconds, server after
 *           server in an order that rotates with each repetition
 *   count   one client makes exactly --n operations against one server while
 *           strace -c counts the server's system calls or callgrind counts
 *           its instructions (callgrind_control zeroes before, dumps after)
 *   held    grants held 1 to N, each on a VM of its own: at each level the
 *           grant cycle is timed (as matrix), its system calls counted and,
 *           on a second daemon under callgrind, its instructions
 *   idle    N idle connections to a server: its memory before, with them
 *           unused, after one call on each, and once they are closed
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#include "conversation.h"
#include "libcoherency.h"
#include "sim-objects.h"

#define FDS_MAX 8
#define CLIENTS_MAX 20000
#define LEVELS_MAX 16
#define PIDS_MAX 4
#define DBUS_NAME "io.coherencyd.Bench"
#define DBUS_PATH "/io/coherencyd/Bench"
#define CALL_TIMEOUT_USEC (120ULL * 1000000ULL)

enum server_kind { SRV_COHERENCYD, SRV_ECHO, SRV_DBUS, _SRV_MAX };
enum op { OP_GETINFO, OP_PROBE, OP_GRANT, _OP_MAX };

static const char *const kind_names[_SRV_MAX] = { "coherencyd", "echo", "dbus" };
static const char *const op_names[_OP_MAX] = { "getinfo", "probe", "grant" };

struct server {
        const char *name;    /* in the output */
        const char *address; /* socket path, or the D-Bus address */
        pid_t pids[PIDS_MAX];
        unsigned n_pids;
        bool forks_helper; /* coherencyd: pids[0]'s children are its privileged helper */
        uint64_t grant_requests; /* RequestGrants decided (atomic): bench/run checks the journal against it */
};

static struct server servers[_SRV_MAX];
static struct conversation conv;
static bool have_conv;
static pid_t journald_pid;
static unsigned device_base;
static const char *tag = ""; /* extra JSON members for every line, e.g. "\"rules\":100" */

/* ---- small things ---------------------------------------------------------- */

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
        struct timespec ts = { .tv_sec = (time_t) (t / 1000000000ULL), .tv_nsec = (long) (t % 1000000000ULL) };
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

/* Device i of bench/make-bench-sysfs: the same numbering. */
static void device_address(unsigned i, char buf[static 16]) {
        snprintf(buf, 16, "%04x:%02x:%02x.%x", i / 65536, i / 256 % 256, i / 8 % 32, i % 8);
}

/* CPU time a process (its main thread: every server here is single-threaded) has used, ns. */
static uint64_t proc_cpu_ns(pid_t pid) {
        char path[64];
        unsigned long long ns = 0;
        snprintf(path, sizeof path, "/proc/%d/schedstat", (int) pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        if (fscanf(f, "%llu", &ns) != 1)
                ns = 0;
        fclose(f);
        return ns;
}

static uint64_t realtime_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static uint64_t self_cpu_ns(void) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (uint64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ULL +
               (uint64_t) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ULL;
}

/*
 * coherencyd is two processes: the main one and its privileged helper (forked
 * at start, daemon/priv.c), which does the custody work of every grant. What
 * the daemon costs is both: their CPU, system calls and instructions are
 * counted together, as dbus-daemon's and the service's are. The helper is
 * looked for when first needed: the daemon starts on its first connection.
 */
static void server_add_helpers(struct server *s) {
        char path[64];
        unsigned long long child;
        if (!s->forks_helper || s->n_pids != 1)
                return;
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int) s->pids[0], (int) s->pids[0]);
        FILE *f = fopen(path, "re");
        if (!f)
                return;
        while (s->n_pids < PIDS_MAX && fscanf(f, "%llu", &child) == 1)
                s->pids[s->n_pids++] = (pid_t) child;
        fclose(f);
}

static uint64_t server_cpu_ns(struct server *s) {
        uint64_t t = 0;
        server_add_helpers(s);
        for (unsigned i = 0; i < s->n_pids; i++)
                t += proc_cpu_ns(s->pids[i]);
        return t;
}

/* A field of /proc/PID/smaps_rollup in KiB, or -1. */
static long smaps_kib(pid_t pid, const char *field) {
        char path[64], line[256];
        long v = -1;
        size_t l = strlen(field);
        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int) pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, field, l) == 0 && line[l] == ':') {
                        v = strtol(line + l + 1, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

static unsigned count_fds(pid_t pid) {
        char path[64];
        unsigned n = 0;
        snprintf(path, sizeof path, "/proc/%d/fd", (int) pid);
        DIR *d = opendir(path);
        if (!d)
                return 0;
        for (struct dirent *de; (de = readdir(d));)
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

/* The soft RLIMIT_NOFILE of a process, or 0. */
static unsigned long nofile_limit(pid_t pid) {
        char path[64], line[256];
        unsigned long v = 0;
        snprintf(path, sizeof path, "/proc/%d/limits", (int) pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, "Max open files", 14) == 0) {
                        v = strtoul(line + 14, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

static int parse_list(const char *s, unsigned *v, unsigned max) {
        unsigned n = 0;
        char *copy = strdup(s), *save = NULL;
        for (char *w = strtok_r(copy, ",", &save); w && n < max; w = strtok_r(NULL, ",", &save))
                v[n++] = (unsigned) strtoul(w, NULL, 10);
        free(copy);
        return (int) n;
}

static int parse_ops(const char *s, bool ops[_OP_MAX]) {
        char *copy = strdup(s), *save = NULL;
        int r = 0;
        for (size_t o = 0; o < _OP_MAX; o++)
                ops[o] = false;
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                size_t o;
                for (o = 0; o < _OP_MAX && strcmp(w, op_names[o]) != 0; o++)
                        ;
                if (o == _OP_MAX) {
                        fprintf(stderr, "bench-load: unknown operation '%s'\n", w);
                        r = -EINVAL;
                } else
                        ops[o] = true;
        }
        free(copy);
        return r;
}

static int parse_servers(const char *s, bool on[_SRV_MAX]) {
        char *copy = strdup(s), *save = NULL;
        int r = 0;
        for (size_t k = 0; k < _SRV_MAX; k++)
                on[k] = false;
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                size_t k;
                for (k = 0; k < _SRV_MAX && strcmp(w, kind_names[k]) != 0; k++)
                        ;
                if (k == _SRV_MAX || !servers[k].address) {
                        fprintf(stderr, "bench-load: server '%s' unknown or not given\n", w);
                        r = -EINVAL;
                } else
                        on[k] = true;
        }
        free(copy);
        return r;
}

/* ---- raw Varlink-style messages (echo, idle, record) ---------------------- */

static int unix_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Sends len bytes of buf, n_fds descriptors on the first byte. */
static int send_msg(int fd, const char *buf, size_t len, const int *fds, unsigned n_fds) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * FDS_MAX)];
        } control;
        while (len > 0) {
                struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                if (n_fds > 0) {
                        memset(&control, 0, sizeof control);
                        mh.msg_control = &control;
                        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                        cm->cmsg_level = SOL_SOCKET;
                        cm->cmsg_type = SCM_RIGHTS;
                        cm->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n_fds);
                }
                ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += n;
                len -= (size_t) n;
                n_fds = 0;
        }
        return 0;
}

/*
 * Reads one NUL-terminated message into buf (size bytes): its length without
 * the NUL; the descriptors that came with it go to fds (*n_fds, at most
 * FDS_MAX, the rest closed). Reads byte-exact: MSG_PEEK for the end, so
 * nothing of a following message is taken.
 */
static ssize_t recv_msg(int fd, char *buf, size_t size, int *fds, unsigned *n_fds) {
        size_t len = 0;
        *n_fds = 0;
        for (;;) {
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(int) * FDS_MAX)];
                } control;
                struct iovec iov = { .iov_base = buf + len, .iov_len = size - len };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof control };
                if (len == size)
                        return -EMSGSIZE;
                ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
                        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                                unsigned k = (unsigned) ((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                                int *p = (int *) CMSG_DATA(cm);
                                for (unsigned i = 0; i < k; i++)
                                        if (*n_fds < FDS_MAX)
                                                fds[(*n_fds)++] = p[i];
                                        else
                                                close(p[i]);
                        }
                if (n == 0)
                        return -ECONNRESET;
                char *nul = memchr(buf + len, 0, (size_t) n);
                len += (size_t) n;
                if (nul)
                        return nul - buf; /* servers here answer one call at a time: nothing follows */
        }
}

/* ---- clients ----------------------------------------------------------------- */

struct client {
        unsigned index;
        char device[16];
        int vm, container;
        coherency_client *coh;
        struct server *coh_server; /* the coherencyd it talks to */
        int echo_fd;
        sd_bus *bus;
        char *buf; /* replies of the echo */
        /* the current batch */
        uint64_t *lat;
        size_t n_lat, cap_lat;
        uint64_t done; /* operations finished in the window */
        uint64_t calls; /* operations begun, all batches */
        /* ReleaseGrant answered "ending" (the group seemed still held although the
         * client had closed it), and RequestGrants then met DeviceBusy and were retried:
         * counted and reported, not fatal. */
        uint64_t ending, busy;
        int error;
        pthread_t thread;
};

static void client_error(struct client *c, const char *what, int r) {
        const char *e = c->coh ? coherency_client_get_error(c->coh) : NULL;
        fprintf(stderr, "bench-load: client %u (%s): %s: %s\n", c->index, c->device, what,
                e && e[0] ? e : strerror(-r));
}

static int coh_op(struct client *c, enum op op) {
        int r;
        switch (op) {
        case OP_GETINFO: {
                char *json = NULL;
                r = coherency_call(c->coh, "org.varlink.service.GetInfo", NULL, false, &json);
                free(json);
                if (r < 0)
                        client_error(c, "GetInfo", r);
                return r;
        }
        case OP_PROBE: {
                coherency_decision *d = NULL;
                r = coherency_probe(c->coh, c->device, -1, -1, &d);
                if (r < 0) {
                        client_error(c, "Probe", r);
                        return r;
                }
                if (coherency_decision_get_decision(d) != COHERENCY_DECISION_GRANTED) {
                        fprintf(stderr, "bench-load: client %u: Probe(%s) says %s (%s), expected granted\n", c->index,
                                c->device, coherency_decision_kind_to_string(coherency_decision_get_decision(d)),
                                coherency_decision_get_reason(d));
                        r = -EPROTO;
                }
                coherency_decision_free(d);
                return r;
        }
        case OP_GRANT: {
                coherency_grant *g = NULL;
                coherency_grant_state state = COHERENCY_GRANT_STATE_OTHER;
                char id[128];
                for (unsigned tries = 0;; tries++) {
                        r = coherency_request_grant(c->coh, c->vm, c->device, c->container, &g);
                        if (r >= 0)
                                __atomic_fetch_add(&c->coh_server->grant_requests, 1, __ATOMIC_RELAXED);
                        if (r != -EBUSY || tries == 10000)
                                break;
                        /* The last release answered "ending": the group is not free yet. */
                        c->busy++;
                        usleep(20);
                }
                if (r < 0) {
                        client_error(c, "RequestGrant", r);
                        return r;
                }
                if (!coherency_grant_get_id(g) || coherency_grant_get_group_fd(g) < 0) {
                        fprintf(stderr, "bench-load: client %u: RequestGrant(%s) gave %s (%s) and no group\n",
                                c->index, c->device,
                                coherency_decision_kind_to_string(coherency_grant_get_decision(g)),
                                coherency_grant_get_reason(g));
                        coherency_grant_free(g);
                        return -EPROTO;
                }
                snprintf(id, sizeof id, "%s", coherency_grant_get_id(g));
                coherency_grant_free(g); /* closes the group: the release finds it free */
                r = coherency_release_grant(c->coh, id, &state, NULL);
                if (r < 0) {
                        client_error(c, "ReleaseGrant", r);
                        return r;
                }
                if (state == COHERENCY_GRANT_ENDING) {
                        c->ending++;
                        return 0;
                }
                if (state != COHERENCY_GRANT_ENDED) {
                        fprintf(stderr, "bench-load: client %u: ReleaseGrant(%s) answered %s, not ended\n", c->index,
                                id, coherency_grant_state_to_string(state) ?: "?");
                        return -EPROTO;
                }
                return 0;
        }
        default:
                return -EINVAL;
        }
}

static int echo_op(struct client *c, enum op op) {
        const struct conv_op *o = conv_find_op(&conv, op_names[op]);
        int fds[2] = { c->vm, c->container }, rfds[FDS_MAX];
        unsigned n_rfds;
        for (unsigned k = 0; k < o->n_steps; k++) {
                const struct conv_step *s = &o->steps[k];
                int r = send_msg(c->echo_fd, s->call.text, s->call.len + 1, fds, s->call.n_fds);
                if (r < 0)
                        return r;
                ssize_t n = recv_msg(c->echo_fd, c->buf, 64 * 1024, rfds, &n_rfds);
                for (unsigned i = 0; i < n_rfds; i++)
                        close(rfds[i]);
                if (n < 0)
                        return (int) n;
                if ((size_t) n != s->reply.len || n_rfds != s->reply.n_fds) {
                        fprintf(stderr, "bench-load: echo: reply of %zd bytes and %u descriptors, expected %zu and %u\n",
                                n, n_rfds, s->reply.len, s->reply.n_fds);
                        return -EPROTO;
                }
        }
        return 0;
}

static int dbus_op(struct client *c, enum op op) {
        const struct conv_op *o = conv_find_op(&conv, op_names[op]);
        int fds[2] = { c->vm, c->container };
        for (unsigned k = 0; k < o->n_steps; k++) {
                const struct conv_step *s = &o->steps[k];
                sd_bus_message *m = NULL, *reply = NULL;
                sd_bus_error error = SD_BUS_ERROR_NULL;
                const char *text = NULL;
                unsigned n_rfds = 0;
                int r = sd_bus_message_new_method_call(c->bus, &m, DBUS_NAME, DBUS_PATH, DBUS_NAME, "Call");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", s->call.text);
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'a', "h");
                for (unsigned i = 0; r >= 0 && i < s->call.n_fds; i++)
                        r = sd_bus_message_append_basic(m, 'h', &fds[i]);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_call(c->bus, m, CALL_TIMEOUT_USEC, &error, &reply);
                if (r >= 0)
                        r = sd_bus_message_read(reply, "s", &text);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "h");
                while (r >= 0) {
                        int fd;
                        r = sd_bus_message_read_basic(reply, 'h', &fd);
                        if (r <= 0)
                                break;
                        n_rfds++;
                }
                if (r >= 0 && (strlen(text) != s->reply.len || n_rfds != s->reply.n_fds))
                        r = -EPROTO;
                if (r < 0)
                        fprintf(stderr, "bench-load: dbus: client %u: %s\n", c->index,
                                error.message ?: strerror(-r));
                sd_bus_error_free(&error);
                sd_bus_message_unref(m);
                sd_bus_message_unref(reply); /* closes the descriptors handed back */
                if (r < 0)
                        return r;
        }
        return 0;
}

static int do_op(struct client *c, enum server_kind k, enum op op) {
        c->calls++;
        switch (k) {
        case SRV_COHERENCYD:
                return coh_op(c, op);
        case SRV_ECHO:
                return echo_op(c, op);
        case SRV_DBUS:
                return dbus_op(c, op);
        default:
                return -EINVAL;
        }
}

static int client_connect(struct client *c, enum server_kind k) {
        int r;
        switch (k) {
        case SRV_COHERENCYD:
                r = coherency_connect(c->coh_server->address, &c->coh);
                if (r >= 0)
                        r = coherency_client_set_timeout(c->coh, CALL_TIMEOUT_USEC);
                break;
        case SRV_ECHO:
                r = c->echo_fd = unix_connect(servers[k].address);
                break;
        case SRV_DBUS:
                r = sd_bus_new(&c->bus);
                if (r >= 0)
                        r = sd_bus_set_address(c->bus, servers[k].address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(c->bus, 1);
                if (r >= 0)
                        r = sd_bus_negotiate_fds(c->bus, 1);
                if (r >= 0)
                        r = sd_bus_set_method_call_timeout(c->bus, CALL_TIMEOUT_USEC);
                if (r >= 0)
                        r = sd_bus_start(c->bus);
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0)
                fprintf(stderr, "bench-load: client %u: cannot connect to %s (%s): %s\n", c->index, servers[k].name,
                        servers[k].address, strerror(-r));
        return r < 0 ? r : 0;
}

/* coh: the coherencyd to talk to, NULL for servers[SRV_COHERENCYD]. */
static int client_init(struct client *c, unsigned index, const bool on[_SRV_MAX], struct server *coh) {
        memset(c, 0, sizeof *c);
        c->index = index;
        c->coh_server = coh ?: &servers[SRV_COHERENCYD];
        c->vm = c->container = c->echo_fd = -1;
        device_address(device_base + index, c->device);
        c->vm = coh_sim_object("kvm-vm");
        c->container = coh_sim_object("vfio-container:noncoherent");
        c->buf = malloc(64 * 1024);
        c->cap_lat = 1024;
        c->lat = malloc(c->cap_lat * sizeof *c->lat);
        if (c->vm < 0 || c->container < 0 || !c->buf || !c->lat) {
                fprintf(stderr, "bench-load: client %u: out of memory or descriptors\n", index);
                return -ENOMEM;
        }
        for (size_t k = 0; k < _SRV_MAX; k++)
                if (on[k]) {
                        int r = client_connect(c, k);
                        if (r < 0)
                                return r;
                }
        return 0;
}

static void client_done(struct client *c) {
        coherency_client_free(c->coh);
        sd_bus_flush_close_unref(c->bus);
        if (c->echo_fd >= 0)
                close(c->echo_fd);
        if (c->vm >= 0)
                close(c->vm);
        if (c->container >= 0)
                close(c->container);
        free(c->buf);
        free(c->lat);
}

/* ---- closed-loop batches ------------------------------------------------------ */

static struct {
        enum server_kind server;
        enum op op;
        uint64_t t0, t_end; /* the measured window */
        bool quit;
} job;
static pthread_barrier_t barrier_start, barrier_end;

static void *client_thread(void *userdata) {
        struct client *c = userdata;
        for (;;) {
                pthread_barrier_wait(&barrier_start);
                if (job.quit)
                        return NULL;
                c->n_lat = 0;
                c->done = 0;
                while (!c->error) {
                        uint64_t s = now_ns();
                        if (s >= job.t_end)
                                break;
                        int r = do_op(c, job.server, job.op);
                        uint64_t e = now_ns();
                        if (r < 0) {
                                c->error = r;
                                break;
                        }
                        if (e < job.t0 || e > job.t_end)
                                continue;
                        if (c->n_lat == c->cap_lat) {
                                uint64_t *p = realloc(c->lat, 2 * c->cap_lat * sizeof *p);
                                if (!p) {
                                        c->error = -ENOMEM;
                                        break;
                                }
                                c->lat = p;
                                c->cap_lat *= 2;
                        }
                        c->lat[c->n_lat++] = e - s;
                        c->done++;
                }
                pthread_barrier_wait(&barrier_end);
        }
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p) {
        if (n == 0)
                return NAN;
        size_t i = (size_t) ceil(p / 100.0 * (double) n);
        if (i > 0)
                i--;
        if (i >= n)
                i = n - 1;
        return (double) v[i];
}

static const char *settle_command;
static double count_budget_s = 30;
static double duration_s = 2, warm_s = 0.25;

static int settle(void) {
        if (!settle_command)
                return 0;
        int r = system(settle_command);
        if (r != 0)
                fprintf(stderr, "bench-load: --settle command failed (status %d): %s\n", r, settle_command);
        return r != 0 ? -EIO : 0;
}

struct pool {
        struct client *clients;
        unsigned n;
};

/* One batch: every client of the pool runs op against server k for the window. */
static int batch(struct pool *p, enum server_kind k, enum op op, const char *series, unsigned rep) {
        uint64_t cpu0, cpu1, jcpu0, jcpu1, self0, self1, rt0, rt1;
        job.server = k;
        job.op = op;
        job.t0 = now_ns() + (uint64_t) (warm_s * 1e9);
        job.t_end = job.t0 + (uint64_t) (duration_s * 1e9);
        pthread_barrier_wait(&barrier_start);
        rt0 = realtime_us();
        sleep_until(job.t0);
        cpu0 = server_cpu_ns(&servers[k]);
        jcpu0 = journald_pid > 0 ? proc_cpu_ns(journald_pid) : 0;
        self0 = self_cpu_ns();
        sleep_until(job.t_end);
        cpu1 = server_cpu_ns(&servers[k]);
        jcpu1 = journald_pid > 0 ? proc_cpu_ns(journald_pid) : 0;
        self1 = self_cpu_ns();
        pthread_barrier_wait(&barrier_end);
        rt1 = realtime_us();

        size_t n = 0;
        uint64_t cmin = UINT64_MAX, cmax = 0, ending = 0, busy = 0;
        for (unsigned i = 0; i < p->n; i++) {
                if (p->clients[i].error)
                        return p->clients[i].error;
                ending += p->clients[i].ending;
                busy += p->clients[i].busy;
                p->clients[i].ending = p->clients[i].busy = 0;
                n += p->clients[i].n_lat;
                if (p->clients[i].done < cmin)
                        cmin = p->clients[i].done;
                if (p->clients[i].done > cmax)
                        cmax = p->clients[i].done;
        }
        uint64_t *all = malloc((n ? n : 1) * sizeof *all);
        if (!all)
                return -ENOMEM;
        size_t at = 0;
        for (unsigned i = 0; i < p->n; i++) {
                memcpy(all + at, p->clients[i].lat, p->clients[i].n_lat * sizeof *all);
                at += p->clients[i].n_lat;
        }
        qsort(all, n, sizeof *all, cmp_u64);
        double sum = 0;
        for (size_t i = 0; i < n; i++)
                sum += (double) all[i];
        if (n == 0) {
                /* Nothing finished in the window (a server that stalled): no statistics to give. */
                printf("{\"kind\":\"batch\",\"series\":\"%s\",\"server\":\"%s\",\"op\":\"%s\",\"clients\":%u,"
                       "\"rep\":%u,\"seconds\":%.3f,\"ops\":0,\"throughput\":0,\"pid\":%d,\"realtime_us\":[%llu,%llu]%s%s}\n",
                       series, servers[k].name, op_names[op], p->n, rep, duration_s,
                       servers[k].n_pids ? (int) servers[k].pids[0] : 0, (unsigned long long) rt0,
                       (unsigned long long) rt1, tag[0] ? "," : "", tag);
                free(all);
                return settle();
        }
        double dn = (double) n;
        printf("{\"kind\":\"batch\",\"series\":\"%s\",\"server\":\"%s\",\"op\":\"%s\",\"clients\":%u,\"rep\":%u,"
               "\"seconds\":%.3f,\"ops\":%zu,\"throughput\":%.1f,\"mean_us\":%.2f,\"p50_us\":%.2f,\"p90_us\":%.2f,"
               "\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,\"client_ops_min\":%llu,\"client_ops_max\":%llu,"
               "\"server_cpu_us_per_op\":%.2f,\"journald_cpu_us_per_op\":%.2f,\"client_cpu_us_per_op\":%.2f,"
               "\"release_ending\":%llu,\"busy_retries\":%llu,\"pid\":%d,\"realtime_us\":[%llu,%llu]%s%s}\n",
               series, servers[k].name, op_names[op], p->n, rep, duration_s, n, (double) n / duration_s,
               sum / dn / 1000, pct(all, n, 50) / 1000, pct(all, n, 90) / 1000, pct(all, n, 99) / 1000,
               pct(all, n, 99.9) / 1000, n ? (double) all[n - 1] / 1000 : NAN, (unsigned long long) cmin,
               (unsigned long long) cmax, (double) (cpu1 - cpu0) / dn / 1000,
               k == SRV_COHERENCYD && journald_pid > 0 ? (double) (jcpu1 - jcpu0) / dn / 1000 : 0.0,
               (double) (self1 - self0) / dn / 1000, (unsigned long long) ending, (unsigned long long) busy,
               servers[k].n_pids ? (int) servers[k].pids[0] : 0, (unsigned long long) rt0, (unsigned long long) rt1,
               tag[0] ? "," : "", tag);
        fflush(stdout);
        free(all);
        return settle();
}

static int pool_start(struct pool *p, unsigned n, const bool on[_SRV_MAX]) {
        pthread_attr_t attr;
        int r;
        p->n = n;
        p->clients = calloc(n, sizeof *p->clients);
        if (!p->clients)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
                r = client_init(&p->clients[i], i, on, NULL);
                if (r < 0)
                        return r;
        }
        /* Every client once against every server, untimed: connected, and the bytes are right. */
        for (unsigned i = 0; i < n; i++)
                for (size_t k = 0; k < _SRV_MAX; k++)
                        if (on[k]) {
                                r = do_op(&p->clients[i], k, OP_GETINFO);
                                if (r < 0)
                                        return r;
                        }
        pthread_barrier_init(&barrier_start, NULL, n + 1);
        pthread_barrier_init(&barrier_end, NULL, n + 1);
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        job.quit = false;
        for (unsigned i = 0; i < n; i++) {
                r = -pthread_create(&p->clients[i].thread, &attr, client_thread, &p->clients[i]);
                if (r < 0) {
                        fprintf(stderr, "bench-load: pthread_create: %s\n", strerror(-r));
                        exit(1); /* the barrier now waits for threads that do not exist */
                }
        }
        pthread_attr_destroy(&attr);
        return 0;
}

static void pool_stop(struct pool *p) {
        job.quit = true;
        pthread_barrier_wait(&barrier_start);
        for (unsigned i = 0; i < p->n; i++)
                pthread_join(p->clients[i].thread, NULL);
        pthread_barrier_destroy(&barrier_start);
        pthread_barrier_destroy(&barrier_end);
        for (unsigned i = 0; i < p->n; i++)
                client_done(&p->clients[i]);
        free(p->clients);
        p->clients = NULL;
}

/*
 * repeats rounds; in each, every server on, every op, in an order of servers
 * that rotates from round to round, so that load on the machine that comes
 * and goes hits them alike.
 */
static int run_rounds(struct pool *p, const bool on[_SRV_MAX], const bool ops[_OP_MAX], unsigned repeats,
                      const char *series) {
        unsigned order[_SRV_MAX], n_on = 0;
        for (size_t k = 0; k < _SRV_MAX; k++)
                if (on[k])
                        order[n_on++] = (unsigned) k;
        for (unsigned rep = 0; rep < repeats; rep++)
                for (unsigned j = 0; j < n_on; j++) {
                        enum server_kind k = order[(j + rep) % n_on];
                        for (size_t o = 0; o < _OP_MAX; o++) {
                                if (!ops[o])
                                        continue;
                                int r = batch(p, k, o, series, rep);
                                if (r < 0)
                                        return r;
                        }
                }
        return 0;
}

static void print_totals(const struct server *s) {
        /* bench/run checks the daemon's journal against it (warm-up and held grants included). */
        printf("{\"kind\":\"grant-requests\",\"pid\":%d,\"n\":%llu}\n", s->n_pids ? (int) s->pids[0] : 0,
               (unsigned long long) __atomic_load_n(&s->grant_requests, __ATOMIC_RELAXED));
        fflush(stdout);
}

/* ---- counting: strace and callgrind -------------------------------------------- */

/* strace -c -f on the server's processes; returns its pid once every one is attached. */
static pid_t strace_start(struct server *s, const char *out) {
        server_add_helpers(s);
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                char *argv[6 + 2 * PIDS_MAX + 1];
                char pids[PIDS_MAX][16];
                int a = 0;
                argv[a++] = "strace";
                argv[a++] = "-c";
                argv[a++] = "-f";
                argv[a++] = "-o";
                argv[a++] = (char *) out;
                for (unsigned i = 0; i < s->n_pids; i++) {
                        snprintf(pids[i], sizeof pids[i], "%d", (int) s->pids[i]);
                        argv[a++] = "-p";
                        argv[a++] = pids[i];
                }
                argv[a] = NULL;
                dup2(pipefd[1], STDERR_FILENO);
                execvp("strace", argv);
                _exit(127);
        }
        close(pipefd[1]);
        FILE *f = fdopen(pipefd[0], "r");
        char line[256];
        unsigned attached = 0;
        while (attached < s->n_pids && fgets(line, sizeof line, f))
                if (strstr(line, "attached"))
                        attached++;
        fclose(f); /* strace writes nothing more to stderr that matters; a closed pipe does not stop it */
        if (attached < s->n_pids) {
                fprintf(stderr, "bench-load: strace did not attach to %s\n", s->name);
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                return -ESRCH;
        }
        usleep(100 * 1000); /* threads attach right after their process */
        return pid;
}

static int strace_stop(pid_t pid) {
        int status;
        kill(pid, SIGINT);
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return 0;
}

static int callgrind_control(struct server *s, const char *what) {
        /* Not coherencyd's helper: callgrind_control reaches only processes valgrind
         * started, not one they forked (valgrind 3.19). bench/report takes the
         * helper's instructions from the dump it writes when it exits. */
        unsigned n = s->forks_helper ? 1 : s->n_pids;
        for (unsigned i = 0; i < n; i++) {
                char cmd[256];
                snprintf(cmd, sizeof cmd, "callgrind_control %s %d >/dev/null 2>&1", what, (int) s->pids[i]);
                if (system(cmd) != 0) {
                        fprintf(stderr, "bench-load: '%s' failed\n", cmd);
                        return -EIO;
                }
        }
        return 0;
}

/* n operations from client c against server k, counted by strace (to file) or callgrind (label). */
static int count(struct client *c, enum server_kind k, struct server *srv, enum op op, unsigned n,
                 unsigned warmup, const char *strace_out, const char *cg_label, const char *series) {
        pid_t st = -1;
        int r = 0;
        for (unsigned i = 0; i < warmup; i++) {
                r = do_op(c, k, op);
                if (r < 0)
                        return r;
        }
        if (settle() < 0)
                return -EIO;
        if (strace_out) {
                st = strace_start(srv, strace_out);
                if (st < 0)
                        return st;
        } else if (cg_label && callgrind_control(srv, "-z") < 0)
                return -EIO;
        /* n operations, or fewer when they take longer than count_budget_s (strace makes every
         * system call slow, and at thousands of held grants a cycle makes thousands): the
         * output says how many were counted. */
        uint64_t t = now_ns();
        unsigned done = 0;
        while (done < n) {
                r = do_op(c, k, op);
                if (r < 0)
                        break;
                done++;
                if (done % 8 == 0 && (double) (now_ns() - t) / 1e9 > count_budget_s)
                        break;
        }
        t = now_ns() - t;
        n = done;
        /* What the server does for these calls after answering (a journal record sent late, say) counts too. */
        if (settle() < 0)
                r = -EIO;
        if (st > 0)
                strace_stop(st);
        else if (cg_label) {
                char what[128];
                snprintf(what, sizeof what, "-d %s", cg_label);
                if (callgrind_control(srv, what) < 0)
                        r = -EIO;
        }
        if (r < 0)
                return r;
        printf("{\"kind\":\"%s\",\"series\":\"%s\",\"server\":\"%s\",\"op\":\"%s\",\"n\":%u,\"file\":\"%s\","
               "\"label\":\"%s\",\"processes\":%u,\"warmup\":%u,\"elapsed_us_per_op\":%.2f%s%s}\n",
               strace_out ? "strace" : "callgrind", series, srv->name, op_names[op], n,
               strace_out ?: "", cg_label ?: "", srv->n_pids, warmup, (double) t / n / 1000, tag[0] ? "," : "", tag);
        fflush(stdout);
        return 0;
}

/* ---- held grants ---------------------------------------------------------------- */

struct holder {
        struct server *server;
        const char *path;
        coherency_client **conns;
        size_t n_conns, cap_conns;
        unsigned per_conn, on_last, held;
        unsigned base; /* the device of the first grant */
        double fds_per_grant; /* the daemon's, as last measured (3 until then: pin, probe end, VM) */
};

/*
 * How many grants the daemon can hold within its RLIMIT_NOFILE (each needs
 * descriptors: the pin, the probe end, its VM's), with room to spare for
 * the bench's clients; UINT_MAX when unknown. Where the hard limit cannot
 * be raised (no CAP_SYS_RESOURCE) this, not the daemon, ends the series.
 */
static unsigned holder_capacity(const struct holder *h) {
        pid_t pid = h->server->n_pids ? h->server->pids[0] : 0;
        unsigned long limit = pid ? nofile_limit(pid) : 0;
        if (!limit)
                return UINT32_MAX;
        unsigned fds = count_fds(pid);
        double room = (double) limit - fds - 3 * 1024; /* the 1,000-client matrix, journald, slack */
        return room <= 0 ? h->held : h->held + (unsigned) (room / h->fds_per_grant);
}

static int holder_init(struct holder *h, struct server *s, unsigned base) {
        coherency_client *c = NULL;
        coherency_info *info = NULL;
        const char *path = s->address;
        memset(h, 0, sizeof *h);
        h->server = s;
        h->path = path;
        h->fds_per_grant = 3;
        h->base = base;
        int r = coherency_connect(path, &c);
        if (r >= 0)
                r = coherency_get_info(c, &info);
        if (r < 0) {
                fprintf(stderr, "bench-load: %s: GetInfo: %s\n", path, strerror(-r));
                coherency_client_free(c);
                return r;
        }
        int64_t max = coherency_info_get_max_grants_per_connection(info);
        h->per_conn = max > 0 && max < UINT32_MAX ? (unsigned) max : 1;
        coherency_info_free(info);
        coherency_client_free(c);
        return 0;
}

/* Holds grants until there are n, or budget_s seconds are spent: the number held. */
static unsigned holder_extend(struct holder *h, unsigned n, double budget_s, double *ret_s) {
        uint64_t start = now_ns();
        pid_t pid = h->server->n_pids ? h->server->pids[0] : 0;
        unsigned held0 = h->held, fds0 = pid ? count_fds(pid) : 0;
        int container = coh_sim_object("vfio-container:noncoherent");
        while (h->held < n) {
                if ((h->held & 63) == 0 && (double) (now_ns() - start) / 1e9 > budget_s)
                        break;
                if (h->n_conns == 0 || h->on_last == h->per_conn) {
                        if (h->n_conns == h->cap_conns) {
                                h->cap_conns = h->cap_conns ? 2 * h->cap_conns : 8;
                                h->conns = realloc(h->conns, h->cap_conns * sizeof *h->conns);
                        }
                        int r = coherency_connect(h->path, &h->conns[h->n_conns]);
                        if (r < 0) {
                                fprintf(stderr, "bench-load: hold: connect: %s\n", strerror(-r));
                                break;
                        }
                        coherency_client_set_timeout(h->conns[h->n_conns], CALL_TIMEOUT_USEC);
                        h->n_conns++;
                        h->on_last = 0;
                }
                coherency_client *c = h->conns[h->n_conns - 1];
                coherency_grant *g = NULL;
                char device[16];
                device_address(h->base + h->held, device);
                /* A VM of its own; the daemon keeps its copy, ours is closed (so is the group's:
                 * the grant stays active, pinned by the daemon, until the connection goes). */
                int vm = coh_sim_object("kvm-vm");
                        int r = coherency_request_grant(c, vm, device, container, &g);
                close(vm);
                if (r >= 0)
                        __atomic_fetch_add(&h->server->grant_requests, 1, __ATOMIC_RELAXED);
                if (r < 0 || !coherency_grant_get_id(g)) {
                        fprintf(stderr, "bench-load: hold: grant %u (%s): %s\n", h->held + 1, device,
                                r < 0 ? (coherency_client_get_error(c) ?: strerror(-r)) : "refused");
                        coherency_grant_free(g);
                        break;
                }
                coherency_grant_free(g);
                h->held++;
                h->on_last++;
        }
        close(container);
        *ret_s = (double) (now_ns() - start) / 1e9;
        if (pid && h->held >= held0 + 50) {
                unsigned fds = count_fds(pid);
                if (fds > fds0)
                        h->fds_per_grant = (double) (fds - fds0) / (h->held - held0);
        }
        return h->held;
}

/* ---- idle connections ------------------------------------------------------------ */

static void print_mem(const char *state, pid_t pid, unsigned n) {
        printf("{\"kind\":\"memory\",\"state\":\"%s\",\"connections\":%u,\"rss_kib\":%ld,\"anon_kib\":%ld,"
               "\"private_dirty_kib\":%ld,\"pss_kib\":%ld,\"fds\":%u%s%s}\n",
               state, n, smaps_kib(pid, "Rss"), smaps_kib(pid, "Anonymous"), smaps_kib(pid, "Private_Dirty"),
               smaps_kib(pid, "Pss"), count_fds(pid), tag[0] ? "," : "", tag);
        fflush(stdout);
}

/* One recorded getinfo on fd, answered. */
static int raw_getinfo(int fd, char *buf) {
        const struct conv_op *o = conv_find_op(&conv, "getinfo");
        int rfds[FDS_MAX];
        unsigned n_rfds;
        int r = send_msg(fd, o->steps[0].call.text, o->steps[0].call.len + 1, NULL, 0);
        if (r < 0)
                return r;
        ssize_t n = recv_msg(fd, buf, 64 * 1024, rfds, &n_rfds);
        for (unsigned i = 0; i < n_rfds; i++)
                close(rfds[i]);
        return n < 0 ? (int) n : 0;
}

static int idle(enum server_kind k, unsigned n) {
        const struct server *s = &servers[k];
        char *buf = malloc(64 * 1024);
        int *fds = calloc(n, sizeof *fds), first, last, r;
        if (!buf || !fds || s->n_pids < 1)
                return -EINVAL;
        /* Warm: the server has served calls, its allocator has its arenas. */
        first = unix_connect(s->address);
        if (first < 0)
                return first;
        for (int i = 0; i < 20; i++)
                if ((r = raw_getinfo(first, buf)) < 0)
                        return r;
        usleep(200 * 1000);
        /* What one connection costs in descriptors (the socket, a pidfd...): as many as fit. */
        unsigned fds0 = count_fds(s->pids[0]);
        int probe[100];
        for (unsigned i = 0; i < 100; i++)
                probe[i] = unix_connect(s->address);
        last = unix_connect(s->address);
        if (last < 0 || (r = raw_getinfo(last, buf)) < 0)
                return last < 0 ? last : r;
        close(last);
        usleep(100 * 1000);
        double per = (count_fds(s->pids[0]) - fds0) / 100.0;
        for (unsigned i = 0; i < 100; i++)
                close(probe[i]);
        unsigned long limit = nofile_limit(s->pids[0]);
        unsigned wanted = n;
        if (limit && per > 0 && fds0 + per * n + 64 > limit)
                n = (unsigned) ((limit - fds0 - 64) / per);
        printf("{\"kind\":\"memory-limit\",\"wanted\":%u,\"connections\":%u,\"fds_per_connection\":%.2f,"
               "\"nofile\":%lu%s%s}\n", wanted, n, per, limit, tag[0] ? "," : "", tag);
        usleep(500 * 1000);
        print_mem("before", s->pids[0], 0);
        for (unsigned i = 0; i < n; i++) {
                fds[i] = unix_connect(s->address);
                if (fds[i] < 0) {
                        fprintf(stderr, "bench-load: idle: connection %u of %u: %s\n", i + 1, n, strerror(-fds[i]));
                        return fds[i];
                }
        }
        /* Accepted in order: once the server answers on a connection made after them, it has them all. */
        last = unix_connect(s->address);
        if (last < 0 || (r = raw_getinfo(last, buf)) < 0)
                return last < 0 ? last : r;
        close(last);
        usleep(500 * 1000);
        print_mem("idle-unused", s->pids[0], n);
        /* One call on each, all sent before any answer is read. */
        const struct conv_op *o = conv_find_op(&conv, "getinfo");
        for (unsigned i = 0; i < n; i++)
                if ((r = send_msg(fds[i], o->steps[0].call.text, o->steps[0].call.len + 1, NULL, 0)) < 0)
                        return r;
        for (unsigned i = 0; i < n; i++) {
                int rfds[FDS_MAX];
                unsigned n_rfds;
                ssize_t m = recv_msg(fds[i], buf, 64 * 1024, rfds, &n_rfds);
                if (m < 0) {
                        fprintf(stderr, "bench-load: idle: reply %u: %s\n", i, strerror((int) -m));
                        return (int) m;
                }
        }
        usleep(500 * 1000);
        print_mem("idle-used", s->pids[0], n);
        for (unsigned i = 0; i < n; i++)
                close(fds[i]);
        /* Until the server has seen every hang-up. */
        last = unix_connect(s->address);
        if (last >= 0) {
                (void) raw_getinfo(last, buf);
                close(last);
        }
        usleep(500 * 1000);
        print_mem("closed", s->pids[0], 0);
        close(first);
        free(fds);
        free(buf);
        return 0;
}

/* ---- record ---------------------------------------------------------------------- */

struct recorded {
        char *text;
        size_t len;
        unsigned n_fds;
        bool from_client;
};

static struct {
        int lfd;
        const char *upstream;
        struct recorded msgs[64];
        unsigned n_msgs;
        pthread_mutex_t lock;
} rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Relays one connection to the daemon, keeping every message it sees. */
static void *relay_thread(void *userdata) {
        int a = accept4(rec.lfd, NULL, NULL, SOCK_CLOEXEC), b = unix_connect(rec.upstream);
        char *partial[2] = { NULL, NULL };
        size_t plen[2] = { 0, 0 };
        unsigned pfds[2] = { 0, 0 };
        static char buf[1 << 16];
        if (a < 0 || b < 0) {
                fprintf(stderr, "bench-load: record: relay: %s\n", strerror(errno));
                return NULL;
        }
        for (;;) {
                struct pollfd p[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
                if (poll(p, 2, -1) < 0)
                        break;
                for (int side = 0; side < 2; side++) {
                        if (!(p[side].revents & (POLLIN | POLLHUP)))
                                continue;
                        int from = side ? b : a, to = side ? a : b;
                        union {
                                struct cmsghdr h;
                                char buf[CMSG_SPACE(sizeof(int) * FDS_MAX)];
                        } control;
                        struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
                        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                             .msg_controllen = sizeof control };
                        int fds[FDS_MAX];
                        unsigned n_fds = 0;
                        ssize_t n = recvmsg(from, &mh, MSG_CMSG_CLOEXEC);
                        if (n <= 0)
                                goto out;
                        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
                                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                                        unsigned k = (unsigned) ((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                                        memcpy(fds + n_fds, CMSG_DATA(cm), k * sizeof(int));
                                        n_fds += k;
                                }
                        /* The descriptors belong to the message this read starts or continues. */
                        pfds[side] += n_fds;
                        size_t at = 0;
                        pthread_mutex_lock(&rec.lock);
                        while (at < (size_t) n) {
                                char *nul = memchr(buf + at, 0, (size_t) n - at);
                                size_t l = nul ? (size_t) (nul - (buf + at)) : (size_t) n - at;
                                partial[side] = realloc(partial[side], plen[side] + l + 1);
                                memcpy(partial[side] + plen[side], buf + at, l);
                                plen[side] += l;
                                partial[side][plen[side]] = 0;
                                at += l + (nul ? 1 : 0);
                                if (nul && rec.n_msgs < 64) {
                                        rec.msgs[rec.n_msgs++] = (struct recorded) {
                                                .text = partial[side], .len = plen[side], .n_fds = pfds[side],
                                                .from_client = side == 0,
                                        };
                                        partial[side] = NULL;
                                        plen[side] = 0;
                                        pfds[side] = 0;
                                }
                        }
                        pthread_mutex_unlock(&rec.lock);
                        int r = send_msg(to, buf, (size_t) n, fds, n_fds);
                        for (unsigned i = 0; i < n_fds; i++)
                                close(fds[i]);
                        if (r < 0)
                                goto out;
                }
        }
out:
        close(a);
        close(b);
        return NULL;
}

static int record(const char *work, const char *out) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct client c;
        bool on[_SRV_MAX] = { false };
        unsigned marks[_OP_MAX + 1];
        pthread_t t;
        int r;

        snprintf(sa.sun_path, sizeof sa.sun_path, "%s/record.sock", work);
        (void) unlink(sa.sun_path);
        rec.upstream = servers[SRV_COHERENCYD].address;
        rec.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (rec.lfd < 0 || bind(rec.lfd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(rec.lfd, 1) < 0) {
                perror("bench-load: record");
                return -errno;
        }
        pthread_create(&t, NULL, relay_thread, NULL);
        /* The client talks to the relay. */
        const char *daemon = servers[SRV_COHERENCYD].address;
        servers[SRV_COHERENCYD].address = sa.sun_path;
        on[SRV_COHERENCYD] = true;
        r = client_init(&c, 0, on, NULL);
        servers[SRV_COHERENCYD].address = daemon;
        if (r < 0)
                return r;
        /* The daemon is on the simulated platform, as the numbers assume. */
        coherency_info *info = NULL;
        r = coherency_get_info(c.coh, &info);
        if (r < 0 || strcmp(coherency_info_get_backend(info), "sim") != 0) {
                fprintf(stderr, "bench-load: record: the daemon is not on the simulated platform\n");
                return -EINVAL;
        }
        coherency_info_free(info);
        pthread_mutex_lock(&rec.lock);
        marks[0] = rec.n_msgs;
        pthread_mutex_unlock(&rec.lock);
        for (size_t o = 0; o < _OP_MAX; o++) {
                r = do_op(&c, SRV_COHERENCYD, o);
                if (r < 0)
                        return r;
                pthread_mutex_lock(&rec.lock);
                marks[o + 1] = rec.n_msgs;
                pthread_mutex_unlock(&rec.lock);
        }
        client_done(&c);
        pthread_join(t, NULL);

        FILE *f = fopen(out, "we");
        if (!f)
                return -errno;
        for (size_t o = 0; o < _OP_MAX; o++) {
                fprintf(f, "op %s\n", op_names[o]);
                for (unsigned i = marks[o]; i < marks[o + 1]; i++) {
                        struct recorded *m = &rec.msgs[i];
                        bool want_call = (i - marks[o]) % 2 == 0;
                        if (m->from_client != want_call) {
                                fprintf(stderr, "bench-load: record: calls and replies do not alternate\n");
                                fclose(f);
                                return -EPROTO;
                        }
                        fprintf(f, "%s %u %zu\n", m->from_client ? "call" : "reply", m->n_fds, m->len);
                        fwrite(m->text, 1, m->len, f);
                        fputc('\n', f);
                }
        }
        if (fclose(f) != 0)
                return -errno;
        for (size_t o = 0; o < _OP_MAX; o++) {
                printf("{\"kind\":\"conversation\",\"op\":\"%s\",\"messages\":[", op_names[o]);
                for (unsigned i = marks[o]; i < marks[o + 1]; i++)
                        printf("%s{\"from\":\"%s\",\"bytes\":%zu,\"fds\":%u}", i > marks[o] ? "," : "",
                               rec.msgs[i].from_client ? "client" : "server", rec.msgs[i].len + 1,
                               rec.msgs[i].n_fds);
                printf("]}\n");
        }
        return 0;
}

/* ---- main ---------------------------------------------------------------------- */

static int parse_pids(const char *s, struct server *srv) {
        unsigned v[PIDS_MAX];
        int n = parse_list(s, v, PIDS_MAX);
        for (int i = 0; i < n; i++)
                srv->pids[i] = (pid_t) v[i];
        srv->n_pids = (unsigned) n;
        return n > 0 ? 0 : -EINVAL;
}

static void help(void) {
        printf("bench-load MODE [OPTIONS]   (modes: record matrix count held idle; see the source's head)\n"
               "  --coherencyd PATH --coherencyd-pid PID   --echo PATH --echo-pid PID\n"
               "  --dbus ADDRESS --dbus-pids PID,PID       --journald-pid PID\n"
               "  --conversation FILE   --name NAME (coherencyd's label)   --tag JSON   --series NAME\n"
               "  record: --work DIR --out FILE\n"
               "  matrix: --servers LIST --clients LIST --ops LIST --repeats N --duration S --warm S\n"
               "          --settle CMD\n"
               "  count:  --server NAME --op OP --n N --warmup N (--strace FILE | --callgrind LABEL)\n"
               "          --count-budget S (stop counting after S seconds: fewer than N)\n"
               "  held:   --levels LIST --hold-base N --budget S --clients LIST --servers LIST\n"
               "          --repeats N --duration S --strace-dir DIR --n N\n"
               "          [--cg-coherencyd PATH --cg-pid PID --cg-max N --cg-n N]\n"
               "  idle:   --server NAME --n N\n");
}

int main(int argc, char *argv[]) {
        enum {
                A_COH = 0x100, A_COH_PID, A_ECHO, A_ECHO_PID, A_DBUS, A_DBUS_PIDS, A_JOURNALD, A_CONV, A_NAME, A_TAG,
                A_SERIES, A_WORK, A_OUT, A_SERVERS, A_CLIENTS, A_OPS, A_REPEATS, A_DURATION, A_WARM, A_SETTLE,
                A_SERVER, A_OP, A_N, A_WARMUP, A_STRACE, A_CALLGRIND, A_LEVELS, A_HOLD_BASE, A_BUDGET,
                A_STRACE_DIR, A_CG_COH, A_CG_PID, A_CG_MAX, A_CG_N, A_DEVICE_BASE, A_COUNT_BUDGET,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "coherencyd", required_argument, NULL, A_COH },
                { "coherencyd-pid", required_argument, NULL, A_COH_PID },
                { "echo", required_argument, NULL, A_ECHO },
                { "echo-pid", required_argument, NULL, A_ECHO_PID },
                { "dbus", required_argument, NULL, A_DBUS },
                { "dbus-pids", required_argument, NULL, A_DBUS_PIDS },
                { "journald-pid", required_argument, NULL, A_JOURNALD },
                { "conversation", required_argument, NULL, A_CONV },
                { "name", required_argument, NULL, A_NAME },
                { "tag", required_argument, NULL, A_TAG },
                { "series", required_argument, NULL, A_SERIES },
                { "work", required_argument, NULL, A_WORK },
                { "out", required_argument, NULL, A_OUT },
                { "servers", required_argument, NULL, A_SERVERS },
                { "clients", required_argument, NULL, A_CLIENTS },
                { "ops", required_argument, NULL, A_OPS },
                { "repeats", required_argument, NULL, A_REPEATS },
                { "duration", required_argument, NULL, A_DURATION },
                { "warm", required_argument, NULL, A_WARM },
                { "settle", required_argument, NULL, A_SETTLE },
                { "server", required_argument, NULL, A_SERVER },
                { "op", required_argument, NULL, A_OP },
                { "n", required_argument, NULL, A_N },
                { "warmup", required_argument, NULL, A_WARMUP },
                { "strace", required_argument, NULL, A_STRACE },
                { "callgrind", required_argument, NULL, A_CALLGRIND },
                { "levels", required_argument, NULL, A_LEVELS },
                { "hold-base", required_argument, NULL, A_HOLD_BASE },
                { "budget", required_argument, NULL, A_BUDGET },
                { "strace-dir", required_argument, NULL, A_STRACE_DIR },
                { "cg-coherencyd", required_argument, NULL, A_CG_COH },
                { "cg-pid", required_argument, NULL, A_CG_PID },
                { "cg-max", required_argument, NULL, A_CG_MAX },
                { "cg-n", required_argument, NULL, A_CG_N },
                { "device-base", required_argument, NULL, A_DEVICE_BASE },
                { "count-budget", required_argument, NULL, A_COUNT_BUDGET },
                {}
        };
        const char *mode, *work = "/tmp", *out = NULL, *series = "matrix", *server_name = "coherencyd",
                   *op_name = "grant", *strace_out = NULL, *cg_label = NULL, *strace_dir = NULL, *cg_path = NULL;
        const char *servers_list = NULL, *conv_path = NULL;
        unsigned clients[LEVELS_MAX] = { 1 }, n_clients = 1, levels[LEVELS_MAX] = { 0 }, n_levels = 0, repeats = 3,
                 n = 100, warmup = 10, hold_base = 1000, cg_max = 0, cg_n = 100;
        double budget = 120;
        pid_t cg_pid = 0;
        bool ops[_OP_MAX] = { true, true, true };
        struct rlimit rl;
        int opt, r;

        if (argc < 2 || argv[1][0] == '-') {
                help();
                return argc < 2 ? 2 : 0;
        }
        mode = argv[1];
        optind = 2;
        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h': help(); return 0;
                case A_COH: servers[SRV_COHERENCYD].address = optarg; break;
                case A_COH_PID: parse_pids(optarg, &servers[SRV_COHERENCYD]); break;
                case A_ECHO: servers[SRV_ECHO].address = optarg; break;
                case A_ECHO_PID: parse_pids(optarg, &servers[SRV_ECHO]); break;
                case A_DBUS: servers[SRV_DBUS].address = optarg; break;
                case A_DBUS_PIDS: parse_pids(optarg, &servers[SRV_DBUS]); break;
                case A_JOURNALD: journald_pid = (pid_t) strtol(optarg, NULL, 10); break;
                case A_CONV: conv_path = optarg; break;
                case A_NAME: servers[SRV_COHERENCYD].name = optarg; break;
                case A_TAG: tag = optarg; break;
                case A_SERIES: series = optarg; break;
                case A_WORK: work = optarg; break;
                case A_OUT: out = optarg; break;
                case A_SERVERS: servers_list = optarg; break;
                case A_CLIENTS: n_clients = (unsigned) parse_list(optarg, clients, LEVELS_MAX); break;
                case A_OPS: if (parse_ops(optarg, ops) < 0) return 2; break;
                case A_REPEATS: repeats = (unsigned) strtoul(optarg, NULL, 10); break;
                case A_DURATION: duration_s = strtod(optarg, NULL); break;
                case A_WARM: warm_s = strtod(optarg, NULL); break;
                case A_SETTLE: settle_command = optarg; break;
                case A_SERVER: server_name = optarg; break;
                case A_OP: op_name = optarg; break;
                case A_N: n = (unsigned) strtoul(optarg, NULL, 10); break;
                case A_WARMUP: warmup = (unsigned) strtoul(optarg, NULL, 10); break;
                case A_STRACE: strace_out = optarg; break;
                case A_CALLGRIND: cg_label = optarg; break;
                case A_LEVELS: n_levels = (unsigned) parse_list(optarg, levels, LEVELS_MAX); break;
                case A_HOLD_BASE: hold_base = (unsigned) strtoul(optarg, NULL, 10); break;
                case A_BUDGET: budget = strtod(optarg, NULL); break;
                case A_STRACE_DIR: strace_dir = optarg; break;
                case A_CG_COH: cg_path = optarg; break;
                case A_CG_PID: cg_pid = (pid_t) strtol(optarg, NULL, 10); break;
                case A_CG_MAX: cg_max = (unsigned) strtoul(optarg, NULL, 10); break;
                case A_CG_N: cg_n = (unsigned) strtoul(optarg, NULL, 10); break;
                case A_DEVICE_BASE: device_base = (unsigned) strtoul(optarg, NULL, 10); break;
                case A_COUNT_BUDGET: count_budget_s = strtod(optarg, NULL); break;
                default: return 2;
                }
        for (size_t k = 0; k < _SRV_MAX; k++)
                if (!servers[k].name)
                        servers[k].name = kind_names[k];
        servers[SRV_COHERENCYD].forks_helper = true;
        if (conv_path) {
                if (conv_load(conv_path, &conv) < 0)
                        return 1;
                have_conv = true;
        }
        /* Thousands of connections (bench/run raises the hard limit). */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        signal(SIGPIPE, SIG_IGN);

        if (strcmp(mode, "record") == 0) {
                if (!servers[SRV_COHERENCYD].address || !out) {
                        fprintf(stderr, "bench-load record: --coherencyd and --out needed\n");
                        return 2;
                }
                r = record(work, out);
                print_totals(&servers[SRV_COHERENCYD]);
                return r < 0;
        }
        if (!have_conv) {
                fprintf(stderr, "bench-load: --conversation needed\n");
                return 2;
        }

        if (strcmp(mode, "matrix") == 0) {
                bool on[_SRV_MAX];
                if (parse_servers(servers_list ?: "coherencyd,echo,dbus", on) < 0)
                        return 2;
                for (unsigned l = 0; l < n_clients; l++) {
                        struct pool p;
                        if (clients[l] < 1 || clients[l] > CLIENTS_MAX)
                                return 2;
                        r = pool_start(&p, clients[l], on);
                        if (r >= 0)
                                r = run_rounds(&p, on, ops, repeats, series);
                        if (r < 0)
                                return 1;
                        pool_stop(&p);
                }
                print_totals(&servers[SRV_COHERENCYD]);
                return 0;
        }

        if (strcmp(mode, "count") == 0) {
                bool on[_SRV_MAX] = { false };
                size_t k, o;
                struct client c;
                for (k = 0; k < _SRV_MAX && strcmp(server_name, kind_names[k]) != 0; k++)
                        ;
                for (o = 0; o < _OP_MAX && strcmp(op_name, op_names[o]) != 0; o++)
                        ;
                if (k == _SRV_MAX || o == _OP_MAX || !servers[k].address || (!strace_out == !cg_label)) {
                        fprintf(stderr, "bench-load count: --server, --op and one of --strace, --callgrind\n");
                        return 2;
                }
                on[k] = true;
                r = client_init(&c, 0, on, NULL);
                if (r >= 0)
                        r = count(&c, k, &servers[k], o, n, warmup, strace_out, cg_label, series);
                client_done(&c);
                if (k == SRV_COHERENCYD)
                        print_totals(&servers[k]);
                return r < 0;
        }

        if (strcmp(mode, "held") == 0) {
                bool on[_SRV_MAX];
                struct holder h, hcg;
                struct client c, ccg;
                bool c_on[_SRV_MAX] = { [SRV_COHERENCYD] = true };
                bool truncated = false;
                if (parse_servers(servers_list ?: "coherencyd,echo,dbus", on) < 0 || !strace_dir)
                        return 2;
                static struct server cg_server;
                cg_server = (struct server) { .name = servers[SRV_COHERENCYD].name, .address = cg_path,
                                              .pids = { cg_pid }, .n_pids = 1, .forks_helper = true };
                if (holder_init(&h, &servers[SRV_COHERENCYD], hold_base) < 0)
                        return 1;
                if (cg_path && holder_init(&hcg, &cg_server, hold_base) < 0)
                        return 1;
                if (client_init(&c, 0, c_on, NULL) < 0)
                        return 1;
                if (cg_path && client_init(&ccg, 0, c_on, &cg_server) < 0)
                        return 1;
                for (unsigned l = 0; l < n_levels && !truncated; l++) {
                        double secs;
                        unsigned want = levels[l], cap = holder_capacity(&h);
                        bool limited = want > cap;
                        if (limited)
                                want = cap;
                        unsigned got = holder_extend(&h, want, budget, &secs);
                        truncated = got < want || limited;
                        char t[256];
                        snprintf(t, sizeof t, "\"held\":%u%s%s", got, tag[0] ? "," : "", tag);
                        const char *saved_tag = tag;
                        tag = t;
                        printf("{\"kind\":\"hold\",\"wanted\":%u,\"seconds\":%.3f,\"reached\":%s,"
                               "\"limited_by_nofile\":%lu,\"daemon_rss_kib\":%ld,"
                               "\"daemon_anon_kib\":%ld,\"daemon_fds\":%u,%s}\n",
                               levels[l], secs, got >= levels[l] ? "true" : "false",
                               limited ? nofile_limit(servers[SRV_COHERENCYD].pids[0]) : 0UL,
                               smaps_kib(servers[SRV_COHERENCYD].pids[0], "Rss"),
                               smaps_kib(servers[SRV_COHERENCYD].pids[0], "Anonymous"),
                               count_fds(servers[SRV_COHERENCYD].pids[0]), t);
                        fflush(stdout);
                        for (unsigned q = 0; q < n_clients; q++) {
                                struct pool p;
                                if (pool_start(&p, clients[q], on) < 0 || run_rounds(&p, on, ops, repeats, series) < 0)
                                        return 1;
                                pool_stop(&p);
                        }
                        char file[4096];
                        snprintf(file, sizeof file, "%s/held-%u.strace", strace_dir, got);
                        if (count(&c, SRV_COHERENCYD, &servers[SRV_COHERENCYD], OP_GRANT, n, warmup, file, NULL, series) < 0)
                                return 1;
                        if (cg_path && want <= cg_max) {
                                unsigned cg_got = holder_extend(&hcg, want, budget, &secs);
                                if (cg_got == got) {
                                        char label[64];
                                        snprintf(label, sizeof label, "held-%u", got);
                                        r = count(&ccg, SRV_COHERENCYD, &cg_server, OP_GRANT, cg_n, warmup, NULL, label,
                                                  series);
                                        if (r < 0)
                                                return 1;
                                }
                        }
                        tag = saved_tag;
                }
                print_totals(&servers[SRV_COHERENCYD]);
                if (cg_path)
                        print_totals(&cg_server);
                client_done(&c);
                return 0;
        }

        if (strcmp(mode, "idle") == 0) {
                size_t k;
                for (k = 0; k < _SRV_MAX && strcmp(server_name, kind_names[k]) != 0; k++)
                        ;
                if (k == _SRV_MAX || k == SRV_DBUS || !servers[k].address) {
                        fprintf(stderr, "bench-load idle: --server coherencyd or echo\n");
                        return 2;
                }
                char t[256];
                snprintf(t, sizeof t, "\"server\":\"%s\"%s%s", servers[k].name, tag[0] ? "," : "", tag);
                tag = t;
                r = idle(k, n);
                if (r < 0)
                        fprintf(stderr, "bench-load idle: %s\n", strerror(-r));
                return r < 0;
        }

        fprintf(stderr, "bench-load: unknown mode '%s'\n", mode);
        return 2;
}
