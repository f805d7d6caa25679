/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * bench-requests: what a request costs coherencyd, as ratios to the cheapest
 * round trip, measured against one or more running daemons on the simulated
 * platform (demo/make-sim-sysfs, demo/config). bench/run starts the daemons
 * and runs this; see bench/README.md.
 *
 * Three operations, each timed as a batch of --iterations calls with
 * CLOCK_MONOTONIC around the whole batch:
 *
 *   getinfo  org.varlink.service.GetInfo through coherency_call(): framing,
 *            dispatch and a reply, nothing else. The baseline.
 *   probe    io.coherencyd.Broker.Probe of 0000:00:05.0 (IOMMU group 4):
 *            device facts from sysfs, policy, decision; no side effects.
 *   grant    RequestGrant(vm, 0000:00:05.0, container) then ReleaseGrant of
 *            the grant it returned (two round trips; the handed-over group
 *            descriptor is closed in between, as a VMM does before it
 *            releases): the whole path, with the simulated group opened,
 *            pinned, handed over and found free again, a decision and a
 *            grant-end journal record, and the state memfd and FDSTORE
 *            messages when the daemon runs with --fd-store.
 *
 * Batches run interleaved, getinfo, probe, grant for each daemon in turn, and
 * that --repeats times (the order of the daemons rotates from one round to
 * the next), so a burst of noise on the machine hits neighbouring batches
 * alike. Every ratio is computed within a round, and the median over the
 * rounds is reported: probe/getinfo and grant/getinfo per daemon, and each
 * daemon's getinfo and grant times relative to the first daemon's.
 */

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "libcoherency.h"
#include "sim-objects.h"

#define TARGETS_MAX 8
#define ROUNDS_MAX 101
#define HOLD_MAX 2000
#define DEVICE "0000:00:05.0" /* IOMMU group 4, behind dmar1 (cannot enforce coherency) */

enum op { OP_GETINFO, OP_PROBE, OP_GRANT, _OP_MAX };

static const char *const op_names[_OP_MAX] = { "getinfo", "probe", "grant" };

struct target {
        const char *name;
        const char *path;
        coherency_client *client;
        int vm;         /* coherencyd-sim:kvm-vm */
        int container;  /* coherencyd-sim:vfio-container:noncoherent */
        int coherent;   /* coherencyd-sim:vfio-container:coherent, for --hold */
        /* --hold: grants kept for the whole run, each of another device on a VM
         * of its own, over as many more connections as MaxGrantsPerConnection
         * makes necessary; hold_fds has their VMs and group descriptors. */
        coherency_client **hold_clients;
        size_t n_hold_clients;
        int *hold_fds;
        size_t n_hold_fds;
        double ns[_OP_MAX][ROUNDS_MAX];  /* per batch: mean ns per operation */
};

static struct target targets[TARGETS_MAX];
static size_t n_targets;

static int sim_object(const char *what) {
        int fd = coh_sim_object(what);
        if (fd < 0)
                fprintf(stderr, "bench-requests: memfd_create(%s): %s\n", what, strerror(-fd));
        return fd;
}

static int fail(struct target *t, const char *what, int r) {
        const char *e = coherency_client_get_error(t->client);
        fprintf(stderr, "bench-requests: %s: %s failed: %s\n", t->name, what, e && e[0] ? e : strerror(-r));
        return r < 0 ? r : -EPROTO;
}

static int op_getinfo(struct target *t) {
        char *json = NULL;
        int r = coherency_call(t->client, "org.varlink.service.GetInfo", NULL, false, &json);
        free(json);
        return r < 0 ? fail(t, "org.varlink.service.GetInfo", r) : 0;
}

static int op_probe(struct target *t) {
        coherency_decision *d = NULL;
        int r = coherency_probe(t->client, DEVICE, -1, -1, &d);
        if (r < 0)
                return fail(t, "Probe(" DEVICE ")", r);
        coherency_decision_free(d);
        return 0;
}

static int op_grant(struct target *t) {
        coherency_grant *g = NULL;
        char id[128];
        int r = coherency_request_grant(t->client, t->vm, DEVICE, t->container, &g);
        if (r < 0)
                return fail(t, "RequestGrant(vm, " DEVICE ")", r);
        if (!coherency_grant_get_id(g)) {
                fprintf(stderr, "bench-requests: %s: RequestGrant(vm, " DEVICE ") gave %s (%s) and no grant\n",
                        t->name, coherency_decision_kind_to_string(coherency_grant_get_decision(g)),
                        coherency_grant_get_reason(g));
                coherency_grant_free(g);
                return -EPROTO;
        }
        snprintf(id, sizeof(id), "%s", coherency_grant_get_id(g));
        /* Closes the group descriptor: the release then finds the group free. */
        coherency_grant_free(g);
        r = coherency_release_grant(t->client, id, NULL, NULL);
        return r < 0 ? fail(t, "ReleaseGrant", r) : 0;
}

static int (*const op_fn[_OP_MAX])(struct target *t) = { op_getinfo, op_probe, op_grant };

/* The simulated KVM's state of the VM, as text. */
static void vm_state(int vm, char *buf, size_t size) {
        ssize_t n = pread(vm, buf, size - 1, 0);
        buf[n < 0 ? 0 : n] = '\0';
}

/*
 * Once per daemon, before anything is timed: the daemon runs on the
 * simulated platform, Probe and RequestGrant of the device say what
 * demo/config says, the handed-over group really turns WBINVD on once added
 * to the VM's kvm-vfio device, and releasing it really ends the grant.
 * Otherwise the numbers would time something else (an error path, say).
 */
static int validate(struct target *t) {
        coherency_info *info = NULL;
        coherency_decision *d = NULL;
        coherency_grant *g = NULL;
        coherency_kvm_vfio *k = NULL;
        coherency_grant_state state;
        char state_text[4096], id[128];
        bool vm_wbinvd;
        int r;

        r = coherency_get_info(t->client, &info);
        if (r < 0)
                return fail(t, "GetInfo", r);
        bool sim = strcmp(coherency_info_get_backend(info), "sim") == 0;
        if (!sim)
                fprintf(stderr, "bench-requests: %s: the daemon runs on the '%s' platform, not 'sim'\n", t->name,
                        coherency_info_get_backend(info));
        coherency_info_free(info);
        if (!sim)
                return -EINVAL;

        r = coherency_probe(t->client, DEVICE, -1, -1, &d);
        if (r < 0)
                return fail(t, "Probe(" DEVICE ")", r);
        if (coherency_decision_get_decision(d) != COHERENCY_DECISION_GRANTED) {
                fprintf(stderr, "bench-requests: %s: Probe(" DEVICE ") says %s (%s), expected granted: "
                        "not the sample platform (demo/make-sim-sysfs) and policy (demo/config)?\n",
                        t->name, coherency_decision_kind_to_string(coherency_decision_get_decision(d)),
                        coherency_decision_get_reason(d));
                coherency_decision_free(d);
                return -EINVAL;
        }
        coherency_decision_free(d);

        r = coherency_request_grant(t->client, t->vm, DEVICE, t->container, &g);
        if (r < 0)
                return fail(t, "RequestGrant(vm, " DEVICE ")", r);
        r = coherency_kvm_vfio_new(t->vm, -1, &k);
        if (r >= 0)
                r = coherency_kvm_vfio_attach(k, g);
        vm_state(t->vm, state_text, sizeof(state_text));
        bool ok = r == 1 && coherency_grant_get_decision(g) == COHERENCY_DECISION_GRANTED &&
                  coherency_grant_get_id(g) && coherency_grant_get_group_fd(g) >= 0 &&
                  strcmp(coherency_grant_get_vm_wbinvd(g) ?: "", "allowed") == 0 &&
                  strstr(state_text, "noncoherent-dma=1");
        if (!ok) {
                fprintf(stderr, "bench-requests: %s: RequestGrant(vm, " DEVICE ") gave %s (%s), attach %d, "
                        "vmWbinvd=%s, grant '%s'; the simulated KVM says:\n%s\n",
                        t->name, coherency_decision_kind_to_string(coherency_grant_get_decision(g)),
                        coherency_grant_get_reason(g), r, coherency_grant_get_vm_wbinvd(g),
                        coherency_grant_get_id(g) ?: "", state_text);
                coherency_kvm_vfio_free(k);
                coherency_grant_free(g);
                return -EINVAL;
        }
        snprintf(id, sizeof(id), "%s", coherency_grant_get_id(g));
        /* As a VMM lets go: detach, close, release. */
        (void) coherency_kvm_vfio_detach(k, g);
        coherency_kvm_vfio_free(k);
        coherency_grant_free(g);
        r = coherency_release_grant(t->client, id, &state, &vm_wbinvd);
        if (r < 0)
                return fail(t, "ReleaseGrant", r);
        vm_state(t->vm, state_text, sizeof(state_text));
        if (vm_wbinvd || state != COHERENCY_GRANT_ENDED || strstr(state_text, "attached=")) {
                fprintf(stderr, "bench-requests: %s: after ReleaseGrant, state %s, vmWbinvd %s and the simulated KVM "
                        "says:\n%s\n", t->name, coherency_grant_state_to_string(state) ?: "?",
                        vm_wbinvd ? "allowed" : "noop", state_text);
                return -EINVAL;
        }
        return 0;
}

static double now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

/*
 * --settle: a command run after every batch, outside the timed region, that
 * returns once the daemons' asynchronous consumers (journald, the notify
 * socket's reader) have caught up, so that their backlog from one batch does
 * not run into the next.
 */
static const char *settle_command;

static int settle(void) {
        if (!settle_command)
                return 0;
        int r = system(settle_command);
        if (r != 0) {
                fprintf(stderr, "bench-requests: --settle command failed (status %d): %s\n", r, settle_command);
                return -EIO;
        }
        return 0;
}

static int batch(struct target *t, enum op op, unsigned iterations, double *ret_ns_per_op) {
        double start = now_ns();
        for (unsigned i = 0; i < iterations; i++) {
                int r = op_fn[op](t);
                if (r < 0)
                        return r;
        }
        if (ret_ns_per_op)
                *ret_ns_per_op = (now_ns() - start) / iterations;
        return settle();
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double median(const double *v, size_t n) {
        double s[ROUNDS_MAX];
        memcpy(s, v, n * sizeof(double));
        qsort(s, n, sizeof(double), cmp_double);
        return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Median, minimum and maximum over the rounds of a per-round quantity. */
struct stat3 {
        double med, min, max;
};

static struct stat3 stat3(const double *v, size_t n) {
        struct stat3 s = { median(v, n), v[0], v[0] };
        for (size_t i = 1; i < n; i++) {
                if (v[i] < s.min)
                        s.min = v[i];
                if (v[i] > s.max)
                        s.max = v[i];
        }
        return s;
}

static struct stat3 ratio(const double *num, const double *den, size_t n) {
        double v[ROUNDS_MAX] = { 0 };
        for (size_t i = 0; i < n; i++)
                v[i] = num[i] / den[i];
        return stat3(v, n);
}

/*
 * The next device after *slot (bus 00-ff, device 00-1f, function 0-7) that
 * the daemon knows and would hand to this VMM in some IOAS, in an IOMMU
 * group not in groups (which it is added to): 1 and its address, with
 * *coherent for the IOAS; 0 when there is none left.
 */
static int next_holdable(struct target *t, unsigned *slot, char address[static 32], bool *coherent, int *groups,
                         size_t *n_groups) {
        for ((*slot)++; *slot < 256 * 32 * 8; (*slot)++) {
                coherency_decision *d = NULL;
                int r;

                snprintf(address, 32, "0000:%02x:%02x.%x", *slot / 256 % 256, *slot / 8 % 32, *slot % 8);
                if (strcmp(address, DEVICE) == 0)
                        continue;
                r = coherency_probe(t->client, address, -1, 0, &d);
                if (r == -ENODEV)
                        continue;
                if (r < 0)
                        return fail(t, "Probe", r);
                /* One grant per VFIO group: a device whose group is held already is busy. */
                int group = coherency_device_get_iommu_group(coherency_facts_get_device(coherency_decision_get_facts(d)));
                bool taken = group < 0;
                for (size_t i = 0; i < *n_groups && !taken; i++)
                        taken = groups[i] == group;
                if (taken) {
                        coherency_decision_free(d);
                        continue;
                }
                /* Refused in a non-coherent IOAS only for want of a coherent one: hold it in one. */
                *coherent = coherency_decision_get_decision(d) == COHERENCY_DECISION_REFUSED &&
                            strcmp(coherency_decision_get_reason(d), "coherent-ioas-required") == 0;
                bool refused = coherency_decision_get_decision(d) == COHERENCY_DECISION_REFUSED && !*coherent;
                coherency_decision_free(d);
                if (!refused) {
                        groups[(*n_groups)++] = group;
                        return 1;
                }
        }
        return 0;
}

/*
 * n grants that stay for the whole run, each on its own VM, as other VMMs'
 * grants would: the daemon then has n + 1 VMs and grants while the timed
 * RequestGrant and ReleaseGrant run, which shows what in their path grows
 * with the number of grants (the fd store's state, for one). A VFIO group is
 * handed out once at a time, so each is another device of the simulated
 * platform: it needs a tree with n more devices than the timed one.
 */
static int hold(struct target *t, unsigned n) {
        coherency_info *info = NULL;
        coherency_client *c = NULL;
        unsigned on_c = 0, per_conn, slot = UINT32_MAX;
        size_t n_groups = 0;
        int groups[HOLD_MAX + 1], r;

        if (n == 0)
                return 0;
        r = coherency_get_info(t->client, &info);
        if (r < 0)
                return fail(t, "GetInfo", r);
        int64_t max = coherency_info_get_max_grants_per_connection(info);
        coherency_info_free(info);
        per_conn = max > 0 && max < UINT32_MAX ? (unsigned) max : 1;
        t->hold_clients = calloc(n / per_conn + 1, sizeof(*t->hold_clients));
        t->hold_fds = calloc(2 * (size_t) n, sizeof(int));
        if (!t->hold_clients || !t->hold_fds)
                return -ENOMEM;
        /* The timed device's group is not to be held: IOMMU group 4. */
        groups[n_groups++] = 4;

        for (unsigned i = 0; i < n; i++) {
                coherency_grant *g = NULL;
                char address[32];
                bool coherent;

                r = next_holdable(t, &slot, address, &coherent, groups, &n_groups);
                if (r < 0)
                        return r;
                if (r == 0) {
                        fprintf(stderr, "bench-requests: %s: --hold %u: the platform has only %u device%s to hold "
                                "besides " DEVICE "\n", t->name, n, i, i == 1 ? "" : "s");
                        return -ENODEV;
                }

                if (!c || on_c == per_conn) {
                        r = coherency_connect(t->path, &c);
                        if (r < 0) {
                                fprintf(stderr, "bench-requests: %s: --hold: cannot connect: %s\n", t->name,
                                        strerror(-r));
                                return r;
                        }
                        t->hold_clients[t->n_hold_clients++] = c;
                        on_c = 0;
                }
                int vm = sim_object("kvm-vm");
                if (vm < 0)
                        return -errno;
                t->hold_fds[t->n_hold_fds++] = vm;
                r = coherency_request_grant(c, vm, address, coherent ? t->coherent : t->container, &g);
                if (r < 0) {
                        const char *e = coherency_client_get_error(c);
                        fprintf(stderr, "bench-requests: %s: --hold: grant %u of %u (%s): %s\n", t->name, i + 1, n,
                                address, e && e[0] ? e : strerror(-r));
                        return r;
                }
                int group = coherency_grant_take_group_fd(g);
                coherency_grant_free(g);
                if (group < 0) {
                        fprintf(stderr, "bench-requests: %s: --hold: grant %u of %u (%s) handed nothing over\n",
                                t->name, i + 1, n, address);
                        return -EPROTO;
                }
                /* The VMM keeps the group, as a running VM does. */
                t->hold_fds[t->n_hold_fds++] = group;
                on_c++;
        }
        return 0;
}

static void help(void) {
        printf("bench-requests --socket [NAME=]PATH [--socket [NAME=]PATH...] [OPTIONS]\n"
               "\n"
               "Times GetInfo, Probe and RequestGrant+ReleaseGrant of " DEVICE " against\n"
               "coherencyd on the simulated platform (demo/make-sim-sysfs, demo/config), and\n"
               "reports each as a ratio to GetInfo, and each daemon relative to the first.\n"
               "\n"
               "  -h --help              Show this help\n"
               "     --socket [NAME=]PATH a daemon's socket, NAME its label in the report\n"
               "     --iterations N       calls per batch (default 2000)\n"
               "     --repeats N          rounds of interleaved batches (default 5)\n"
               "     --warmup N           untimed calls of each operation first (default\n"
               "                          iterations/10)\n"
               "     --ops LIST           operations to run, of getinfo,probe,grant (default\n"
               "                          all), each optionally as OP=N for N calls per batch\n"
               "                          instead of --iterations (for counting instructions\n"
               "                          under callgrind)\n"
               "     --settle CMD         run CMD (with sh -c) after every batch, untimed, to\n"
               "                          wait for journald or another asynchronous reader\n"
               "                          of the daemons to catch up\n"
               "     --hold N             first take N grants of other devices, each on a VM of\n"
               "                          its own, and keep them while measuring (default 0;\n"
               "                          the platform needs N devices besides " DEVICE ")\n");
}

static int parse_uint(const char *s, const char *what, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
                fprintf(stderr, "bench-requests: %s: expected a number from %u to %u, got '%s'\n", what, min, max, s);
                return -EINVAL;
        }
        *ret = (unsigned) v;
        return 0;
}

static int parse_ops(const char *s, bool ops[_OP_MAX], unsigned counts[_OP_MAX]) {
        char buf[128];
        if (strlen(s) >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, s);
        for (size_t o = 0; o < _OP_MAX; o++)
                ops[o] = false;
        char *save = NULL;
        for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(w, '=');
                size_t o;
                if (eq)
                        *eq = '\0';
                for (o = 0; o < _OP_MAX; o++)
                        if (strcmp(w, op_names[o]) == 0)
                                break;
                if (o == _OP_MAX) {
                        fprintf(stderr, "bench-requests: --ops: unknown operation '%s'\n", w);
                        return -EINVAL;
                }
                ops[o] = true;
                if (eq && parse_uint(eq + 1, "--ops", 1, 100000000, &counts[o]) < 0)
                        return -EINVAL;
        }
        return 0;
}

int main(int argc, char *argv[]) {
        enum { ARG_SOCKET = 0x100, ARG_ITERATIONS, ARG_REPEATS, ARG_WARMUP, ARG_OPS, ARG_HOLD, ARG_SETTLE };
        static const struct option options[] = {
                { "help",       no_argument,       NULL, 'h' },
                { "socket",     required_argument, NULL, ARG_SOCKET },
                { "iterations", required_argument, NULL, ARG_ITERATIONS },
                { "repeats",    required_argument, NULL, ARG_REPEATS },
                { "warmup",     required_argument, NULL, ARG_WARMUP },
                { "ops",        required_argument, NULL, ARG_OPS },
                { "hold",       required_argument, NULL, ARG_HOLD },
                { "settle",     required_argument, NULL, ARG_SETTLE },
                {}
        };
        unsigned iterations = 2000, repeats = 5, warmup = 0, n_hold = 0, counts[_OP_MAX] = {};
        bool warmup_set = false, ops[_OP_MAX] = { true, true, true };
        int opt, r, status = EXIT_FAILURE;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_SOCKET: {
                        if (n_targets == TARGETS_MAX) {
                                fprintf(stderr, "bench-requests: at most %d daemons\n", TARGETS_MAX);
                                return 2;
                        }
                        struct target *t = &targets[n_targets++];
                        const char *eq = strchr(optarg, '=');
                        t->vm = t->container = t->coherent = -1;
                        /* NAME=PATH, unless what precedes '=' looks like a path. */
                        if (eq && eq > optarg && !memchr(optarg, '/', (size_t) (eq - optarg))) {
                                t->name = strndup(optarg, (size_t) (eq - optarg));
                                t->path = eq + 1;
                        } else
                                t->name = t->path = optarg;
                        break;
                }
                case ARG_ITERATIONS:
                        if (parse_uint(optarg, "--iterations", 1, 100000000, &iterations) < 0)
                                return 2;
                        break;
                case ARG_REPEATS:
                        if (parse_uint(optarg, "--repeats", 1, ROUNDS_MAX, &repeats) < 0)
                                return 2;
                        break;
                case ARG_WARMUP:
                        if (parse_uint(optarg, "--warmup", 0, 100000000, &warmup) < 0)
                                return 2;
                        warmup_set = true;
                        break;
                case ARG_OPS:
                        if (parse_ops(optarg, ops, counts) < 0)
                                return 2;
                        break;
                case ARG_SETTLE:
                        settle_command = optarg;
                        break;
                case ARG_HOLD:
                        if (parse_uint(optarg, "--hold", 0, HOLD_MAX, &n_hold) < 0)
                                return 2;
                        break;
                default:
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "bench-requests: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }
        if (n_targets == 0) {
                fprintf(stderr, "bench-requests: no --socket given\n");
                return 2;
        }
        if (!warmup_set)
                warmup = iterations / 10;
        for (size_t o = 0; o < _OP_MAX; o++)
                if (counts[o] == 0)
                        counts[o] = iterations;

        for (size_t i = 0; i < n_targets; i++) {
                struct target *t = &targets[i];
                r = coherency_connect(t->path, &t->client);
                if (r < 0) {
                        fprintf(stderr, "bench-requests: cannot connect to %s: %s\n", t->path, strerror(-r));
                        goto finish;
                }
                t->vm = sim_object("kvm-vm");
                t->container = sim_object("vfio-container:noncoherent");
                t->coherent = sim_object("vfio-container:coherent");
                if (t->vm < 0 || t->container < 0 || t->coherent < 0)
                        goto finish;
                if (validate(t) < 0 || hold(t, n_hold) < 0)
                        goto finish;
        }

        for (size_t i = 0; i < n_targets; i++)
                for (size_t o = 0; o < _OP_MAX; o++)
                        if (ops[o] && batch(&targets[i], o, warmup, NULL) < 0)
                                goto finish;

        for (unsigned round = 0; round < repeats; round++)
                for (size_t k = 0; k < n_targets; k++) {
                        struct target *t = &targets[(k + round) % n_targets];
                        for (size_t o = 0; o < _OP_MAX; o++)
                                if (ops[o] && batch(t, o, counts[o], &t->ns[o][round]) < 0)
                                        goto finish;
                }

        printf("bench-requests: %u round%s of interleaved batches of %u calls; medians over the rounds\n"
               "(grant = RequestGrant + ReleaseGrant of " DEVICE ", two round trips",
               repeats, repeats == 1 ? "" : "s", iterations);
        if (n_hold > 0)
                printf("; %u other grants held throughout", n_hold);
        if (settle_command)
                printf(";\nafter each batch, untimed: %s", settle_command);
        printf(")\n\n");

        /* The table. Ratios need getinfo in the same round; "vs" columns need a first daemon. */
        int w = 13;
        for (size_t i = 0; i < n_targets; i++)
                if ((int) strlen(targets[i].name) > w)
                        w = (int) strlen(targets[i].name);
        printf("%-*s %10s %10s %10s %14s %14s", w, "configuration", "getinfo µs", "probe µs", "grant µs",
               "probe/getinfo", "grant/getinfo");
        char vs_getinfo[64], vs_grant[64];
        snprintf(vs_getinfo, sizeof(vs_getinfo), "getinfo vs %s", targets[0].name);
        snprintf(vs_grant, sizeof(vs_grant), "grant vs %s", targets[0].name);
        if (n_targets > 1)
                printf("  %-18s %-16s", vs_getinfo, vs_grant);
        printf("\n");
        for (size_t i = 0; i < n_targets; i++) {
                struct target *t = &targets[i], *f = &targets[0];
                printf("%-*s", w, t->name);
                for (size_t o = 0; o < _OP_MAX; o++)
                        if (ops[o])
                                printf(" %10.2f", median(t->ns[o], repeats) / 1000);
                        else
                                printf(" %10s", "-");
                for (size_t o = OP_PROBE; o <= OP_GRANT; o++)
                        if (ops[o] && ops[OP_GETINFO])
                                printf(" %14.2f", ratio(t->ns[o], t->ns[OP_GETINFO], repeats).med);
                        else
                                printf(" %14s", "-");
                if (n_targets > 1) {
                        if (ops[OP_GETINFO])
                                printf("  %-18.3f", ratio(t->ns[OP_GETINFO], f->ns[OP_GETINFO], repeats).med);
                        else
                                printf("  %-18s", "-");
                        if (ops[OP_GRANT])
                                printf(" %-16.3f", ratio(t->ns[OP_GRANT], f->ns[OP_GRANT], repeats).med);
                        else
                                printf(" %-16s", "-");
                }
                printf("\n");
        }

        /* How much the rounds disagreed: if min and max are far apart, the machine was busy. */
        printf("\nspread over the rounds (median [min, max]):\n");
        for (size_t i = 0; i < n_targets; i++) {
                struct target *t = &targets[i], *f = &targets[0];
                struct stat3 s;
                printf("  %-*s", w, t->name);
                if (ops[OP_GETINFO]) {
                        s = stat3(t->ns[OP_GETINFO], repeats);
                        printf("  getinfo µs %.2f [%.2f, %.2f]", s.med / 1000, s.min / 1000, s.max / 1000);
                }
                for (size_t o = OP_PROBE; o <= OP_GRANT; o++)
                        if (ops[o] && ops[OP_GETINFO]) {
                                s = ratio(t->ns[o], t->ns[OP_GETINFO], repeats);
                                printf("  %s/getinfo %.2f [%.2f, %.2f]", op_names[o], s.med, s.min, s.max);
                        }
                if (n_targets > 1 && i > 0 && ops[OP_GRANT]) {
                        s = ratio(t->ns[OP_GRANT], f->ns[OP_GRANT], repeats);
                        printf("  grant vs %s %.3f [%.3f, %.3f]", f->name, s.med, s.min, s.max);
                }
                printf("\n");
        }
        status = EXIT_SUCCESS;

finish:
        for (size_t i = 0; i < n_targets; i++) {
                coherency_client_free(targets[i].client);
                if (targets[i].vm >= 0)
                        close(targets[i].vm);
                if (targets[i].container >= 0)
                        close(targets[i].container);
                if (targets[i].coherent >= 0)
                        close(targets[i].coherent);
                for (size_t k = 0; k < targets[i].n_hold_clients; k++)
                        coherency_client_free(targets[i].hold_clients[k]);
                for (size_t k = 0; k < targets[i].n_hold_fds; k++)
                        close(targets[i].hold_fds[k]);
                free(targets[i].hold_clients);
                free(targets[i].hold_fds);
        }
        return status;
}
