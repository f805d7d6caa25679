/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * sample-vmm: what a VMM does with libcoherency, on coherencyd's simulated
 * platform (coherencyd --platform=sim:DIR, DIR built by demo/make-sim-sysfs,
 * policy from demo/config).
 *
 * coherencyd is the custodian of VFIO groups: an unprivileged VMM cannot
 * open /dev/vfio/N, so it asks coherencyd for a device by PCI address, and
 * gets the group descriptor in the reply, or a refusal. The VMM then adds the
 * group to its VM's kvm-vfio device, or not, as the reply's kvmAttach says.
 * This walks every row of the decision table, shows the errors a VMM meets
 * (a busy group, an IOAS the IOMMU cannot make coherent), releases a grant
 * the way a VMM should, and reacts to an operator's revoke through the watch
 * connection.
 *
 * The kernel objects are memfds whose names the simulated platform
 * recognises; a real VMM passes its /dev/kvm VM descriptor and its VFIO
 * container instead, and the calls are the same. libcoherency's kvm-vfio
 * helper is the simulated KVM here: it writes the VM's state into the VM
 * memfd, and after each step we read it back to show what "KVM" did.
 */

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcoherency.h"
#include "sim-objects.h"

#define HELD_MAX 16

/* A device this VMM holds: the grant (for its id, kvmAttach and file) and the group descriptor it took. */
struct held {
        coherency_grant *grant;
        int group_fd;
};

struct vmm {
        const char *socket;
        coherency_client *client;
        coherency_watch *watch;         /* WatchGrants, on a connection of its own */
        coherency_kvm_vfio *kvm_vfio;   /* the VM's kvm-vfio device */
        int vm;                         /* this VMM's VM */
        int coherent, noncoherent;      /* two VFIO containers: a coherent IOAS and a non-coherent one */
        struct held held[HELD_MAX];
        size_t n_held;
        unsigned unexpected;            /* outcomes that differ from what demo/config gives */
};

/* A simulated kernel object: "kvm-vm", "vfio-container:coherent", ... (sim-objects.h) */
static int sim_object(const char *what) {
        int fd = coh_sim_object(what);
        if (fd < 0)
                fprintf(stderr, "sample-vmm: memfd_create(%s): %s\n", what, strerror(-fd));
        return fd;
}

/* What the simulated KVM keeps in the VM memfd, on one line. */
static void show_kvm(const struct vmm *v) {
        char buf[4096];
        ssize_t n;

        n = pread(v->vm, buf, sizeof(buf) - 1, 0);
        if (n < 0) {
                printf("    KVM: cannot read the VM's state: %m\n");
                return;
        }
        buf[n] = '\0';
        if (n == 0) {
                printf("    KVM: no kvm-vfio device\n");
                return;
        }
        while (n > 0 && buf[n - 1] == '\n')
                buf[--n] = '\0';
        for (char *p = buf; *p; p++)
                if (*p == '\n')
                        *p = ';';
        printf("    KVM: %s\n", buf);
}

static const char *str(const char *s) {
        return s ?: "-";
}

static void show_device(const coherency_device *d, const char *indent) {
        printf("%s%s %s:%s class %s behind %s (%s), IOMMU group %d, No-Snoop %s",
               indent, str(coherency_device_get_slot(d)), str(coherency_device_get_vendor(d)),
               str(coherency_device_get_device(d)), str(coherency_device_get_class(d)),
               str(coherency_device_get_iommu(d)),
               coherency_device_get_iommu_enforces(d) ? "can enforce coherency" : "cannot enforce coherency",
               coherency_device_get_iommu_group(d), str(coherency_device_get_no_snoop(d)));
        if (coherency_device_get_access(d))
                printf(", access %s", coherency_device_get_access(d));
        if (coherency_device_get_mode(d))
                printf(", mode %s", coherency_device_get_mode(d));
        printf(", IOAS %s\n", coherency_device_get_ioas_coherent(d) ? "coherent" : "not coherent");
}

static void show_facts(const coherency_facts *f) {
        size_t n = coherency_facts_get_n_devices(f);

        if (n > 1) {
                printf("    file %s carries %zu devices; the least coherent decides:\n", str(coherency_facts_get_file(f)), n);
                for (size_t i = 0; i < n; i++) {
                        const coherency_device *d = coherency_facts_get_device_by_index(f, i);

                        show_device(d, "      ");
                        if (coherency_device_get_decision(d))
                                printf("        on its own: %s (%s)\n", coherency_device_get_decision(d),
                                       str(coherency_device_get_reason(d)));
                }
        } else {
                printf("    file %s: ", str(coherency_facts_get_file(f)));
                show_device(coherency_facts_get_device(f), "");
        }
}

static void check(struct vmm *v, coherency_decision_kind decision, const char *reason,
                  coherency_decision_kind expected_decision, const char *expected_reason) {
        if (decision == expected_decision && reason && strcmp(reason, expected_reason) == 0)
                return;
        printf("    UNEXPECTED: demo/config should give %s (%s)\n",
               coherency_decision_kind_to_string(expected_decision), expected_reason);
        v->unexpected++;
}

static int call_failed(struct vmm *v, const char *call, int r) {
        fprintf(stderr, "sample-vmm: %s failed: %s\n", call,
                coherency_client_get_error(v->client)[0] ? coherency_client_get_error(v->client) : strerror(-r));
        return r;
}

/* Where a descriptor points, as /proc shows it: the proof of what we were handed. */
static void show_fd(const char *what, int fd) {
        char path[64], target[256];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                snprintf(target, sizeof(target), "?");
        else
                target[n] = '\0';
        printf("    %s: descriptor %d -> %s\n", what, fd, target);
}

/*
 * What a VMM does with a grant: add the group to its kvm-vfio device as
 * kvmAttach says, then take the descriptor (a real VMM now opens its device
 * descriptors from it with VFIO_GROUP_GET_DEVICE_FD).
 */
static int adopt(struct vmm *v, coherency_grant *g) {
        struct held *h;
        int r;

        if (v->n_held >= HELD_MAX) {
                fprintf(stderr, "sample-vmm: too many grants for this sample\n");
                return -ENOBUFS;
        }

        show_fd("handed over", coherency_grant_get_group_fd(g));
        r = coherency_kvm_vfio_attach(v->kvm_vfio, g);
        if (r < 0) {
                fprintf(stderr, "sample-vmm: adding %s to the kvm-vfio device: %s\n",
                        str(coherency_facts_get_file(coherency_grant_get_facts(g))), strerror(-r));
                return r;
        }
        if (r > 0)
                printf("    kvmAttach add: added to the VM's kvm-vfio device (KVM_DEV_VFIO_FILE_ADD)%s\n",
                       strcmp(str(coherency_grant_get_wbinvd(g)), "allowed") == 0 ?
                       ": WBINVD is now real for this VM" : "");
        else
                printf("    kvmAttach skip: not added (adding it would turn WBINVD on for a device that needs none)\n");

        h = v->held + v->n_held++;
        h->group_fd = coherency_grant_take_group_fd(g);
        h->grant = g;
        return 0;
}

/*
 * One RequestGrant, shown; device by PCI address, the IOAS as a container.
 * A grant with a file is adopted (held until released or revoked).
 */
static int request(struct vmm *v, const char *heading, const char *device, bool coherent,
                   coherency_decision_kind expected_decision, const char *expected_reason) {
        coherency_grant *g = NULL;
        char call[128];
        int r;

        snprintf(call, sizeof(call), "RequestGrant(vm, \"%s\", vfio-container:%s)", device,
                 coherent ? "coherent" : "noncoherent");
        printf("\n%s\n  %s\n", heading, call);

        r = coherency_request_grant(v->client, v->vm, device, coherent ? v->coherent : v->noncoherent, &g);
        if (r < 0)
                return call_failed(v, call, r);

        printf("    decision: %s, reason: %s, rule: %s\n",
               coherency_decision_kind_to_string(coherency_grant_get_decision(g)),
               str(coherency_grant_get_reason(g)), str(coherency_grant_get_rule(g)));
        if (coherency_grant_get_decision(g) != COHERENCY_DECISION_REFUSED)
                printf("    grant %s, mode %s, wbinvd %s, vmWbinvd %s, kvmAttach %s\n",
                       str(coherency_grant_get_id(g)), str(coherency_grant_get_mode(g)),
                       str(coherency_grant_get_wbinvd(g)), str(coherency_grant_get_vm_wbinvd(g)),
                       str(coherency_kvm_attach_to_string(coherency_grant_get_kvm_attach(g))));
        show_facts(coherency_grant_get_facts(g));
        check(v, coherency_grant_get_decision(g), coherency_grant_get_reason(g), expected_decision, expected_reason);

        if (coherency_grant_get_decision(g) == COHERENCY_DECISION_REFUSED) {
                /* A refusal is an answer, not an error: nothing was opened, nothing handed over. */
                printf("    nothing handed over: the VMM must not start this device\n");
                coherency_grant_free(g);
        } else {
                r = adopt(v, g);
                if (r < 0) {
                        coherency_grant_free(g);
                        return r;
                }
        }
        show_kvm(v);
        return 0;
}

/* The event-loop form: what a VMM with a main loop does instead of blocking. */
static int request_from_event_loop(struct vmm *v, const char *device, coherency_decision_kind expected_decision,
                                   const char *expected_reason) {
        coherency_grant *g = NULL;
        struct pollfd p = {
                .fd = coherency_client_get_fd(v->client),
                .events = POLLIN,
        };
        char call[160];
        int r;

        snprintf(call, sizeof(call), "RequestGrant(vm, \"%s\", vfio-container:noncoherent)  [_send, poll, _finish]",
                 device);
        printf("\na GPU and its audio function share IOMMU group 6: one file carries both\n  %s\n", call);

        r = coherency_request_grant_send(v->client, v->vm, device, v->noncoherent);
        if (r < 0)
                return call_failed(v, call, r);
        for (;;) {
                r = coherency_request_grant_finish(v->client, &g);
                if (r != -EAGAIN)
                        break;
                /* A real VMM returns to its main loop here (and arms a timer for
                 * coherency_client_get_deadline()); we have nothing else to do. */
                if (poll(&p, 1, -1) < 0 && errno != EINTR)
                        return call_failed(v, "poll", -errno);
        }
        if (r < 0)
                return call_failed(v, call, r);

        printf("    decision: %s, reason: %s, grant %s, kvmAttach %s\n",
               coherency_decision_kind_to_string(coherency_grant_get_decision(g)), str(coherency_grant_get_reason(g)),
               str(coherency_grant_get_id(g)), str(coherency_kvm_attach_to_string(coherency_grant_get_kvm_attach(g))));
        show_facts(coherency_grant_get_facts(g));
        check(v, coherency_grant_get_decision(g), coherency_grant_get_reason(g), expected_decision, expected_reason);
        r = adopt(v, g);
        if (r < 0) {
                coherency_grant_free(g);
                return r;
        }
        show_kvm(v);
        return 0;
}

static int probe(struct vmm *v, const char *device, int ioas_coherent, coherency_decision_kind expected_decision,
                 const char *expected_reason) {
        coherency_decision *d = NULL;
        char call[128];
        int r;

        snprintf(call, sizeof(call), "Probe(\"%s\", ioasCoherent=%s)", device, ioas_coherent ? "true" : "false");
        printf("  %s\n", call);
        r = coherency_probe(v->client, device, -1, ioas_coherent, &d);
        if (r < 0)
                return call_failed(v, call, r);

        printf("    decision: %s, reason: %s, rule: %s (nothing opened, nothing held)\n",
               coherency_decision_kind_to_string(coherency_decision_get_decision(d)),
               str(coherency_decision_get_reason(d)), str(coherency_decision_get_rule(d)));
        check(v, coherency_decision_get_decision(d), coherency_decision_get_reason(d), expected_decision,
              expected_reason);
        coherency_decision_free(d);
        return 0;
}

/* A call that must fail with this errno and daemon error: shown, not fatal. */
static int expect_error(struct vmm *v, const char *heading, const char *device, bool coherent, int expected,
                        const char *expected_name) {
        coherency_grant *g = NULL;
        char call[128];
        int r;

        snprintf(call, sizeof(call), "RequestGrant(vm, \"%s\", vfio-container:%s)", device,
                 coherent ? "coherent" : "noncoherent");
        printf("\n%s\n  %s\n", heading, call);

        r = coherency_request_grant(v->client, v->vm, device, coherent ? v->coherent : v->noncoherent, &g);
        if (r >= 0) {
                printf("    UNEXPECTED: %s, where %s was due\n",
                       coherency_decision_kind_to_string(coherency_grant_get_decision(g)), expected_name);
                v->unexpected++;
                if (coherency_grant_get_decision(g) != COHERENCY_DECISION_REFUSED && adopt(v, g) >= 0)
                        return 0;
                coherency_grant_free(g);
                return 0;
        }
        if (r == -expected && strcmp(coherency_client_get_error_name(v->client), expected_name) == 0) {
                printf("    error -%s, as it should be: %s\n", strerrorname_np(expected),
                       coherency_client_get_error(v->client));
                return 0;
        }
        return call_failed(v, call, r);
}

/*
 * Another VMM process (a child, with a VM and a container of its own, on a
 * connection of its own) asks for a device this VMM holds: DeviceBusy. The
 * group is exclusive: one VMM at a time, however it asks.
 */
static int second_vmm(struct vmm *v, const char *device) {
        printf("\na second VMM (pid of its own) asks for %s while this VMM holds its group\n", device);
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
                return call_failed(v, "fork", -errno);
        if (pid == 0) {
                coherency_client *c = NULL;
                coherency_grant *g = NULL;
                int vm = sim_object("kvm-vm"), container = sim_object("vfio-container:noncoherent");
                int r = vm < 0 || container < 0 ? -EBADF : coherency_connect(v->socket, &c);
                if (r >= 0)
                        r = coherency_request_grant(c, vm, device, container, &g);
                if (r == -EBUSY)
                        printf("  pid %d: RequestGrant(vm, \"%s\", vfio-container:noncoherent)\n"
                               "    error -EBUSY, as it should be: %s\n",
                               (int) getpid(), device, coherency_client_get_error(c));
                else
                        printf("  pid %d: UNEXPECTED: %s\n", (int) getpid(),
                               r < 0 ? strerror(-r) : "a reply where DeviceBusy was due");
                fflush(stdout);
                coherency_grant_free(g);
                coherency_client_free(c);
                _exit(r == -EBUSY ? 0 : 1);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return call_failed(v, "waitpid", -errno);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                v->unexpected++;
        return 0;
}

static struct held *find_held(struct vmm *v, const char *id) {
        for (size_t i = 0; i < v->n_held; i++)
                if (strcmp(str(coherency_grant_get_id(v->held[i].grant)), id) == 0)
                        return v->held + i;
        return NULL;
}

static const char *held_device(const struct held *h) {
        return str(coherency_grant_get_device(h->grant));
}

/* Detach and close: what a VMM does to let go of a device, and on a revoke. */
static void let_go(struct vmm *v, struct held *h) {
        int r;

        r = coherency_kvm_vfio_detach(v->kvm_vfio, h->grant);
        if (r > 0)
                printf("    deleted from the kvm-vfio device (KVM_DEV_VFIO_FILE_DEL)\n");
        else if (r < 0)
                printf("    deleting from the kvm-vfio device: %s\n", strerror(-r));
        if (h->group_fd >= 0) {
                printf("    closed the group descriptor %d\n", h->group_fd);
                (void) close(h->group_fd);
                h->group_fd = -1;
        }
}

static void forget(struct vmm *v, struct held *h) {
        coherency_grant_free(h->grant);
        *h = v->held[--v->n_held];
}

static int release(struct vmm *v, struct held *h, const char *what) {
        coherency_grant_state state;
        bool vm_wbinvd;
        char call[128];
        int r;

        snprintf(call, sizeof(call), "ReleaseGrant(\"%s\")", str(coherency_grant_get_id(h->grant)));
        printf("\nthe VMM is done with %s (%s): detach, close, then release\n", what, held_device(h));
        let_go(v, h);
        printf("  %s\n", call);
        r = coherency_release_grant(v->client, coherency_grant_get_id(h->grant), &state, &vm_wbinvd);
        if (r < 0)
                return call_failed(v, call, r);

        printf("    state: %s, vmWbinvd: %s%s\n", str(coherency_grant_state_to_string(state)),
               vm_wbinvd ? "allowed" : "noop",
               vm_wbinvd ? " (other granted files of the VM are still attached)" : "");
        if (state != COHERENCY_GRANT_ENDED) {
                printf("    UNEXPECTED: with every copy closed first, the group is free at once\n");
                v->unexpected++;
        }
        forget(v, h);
        show_kvm(v);
        return 0;
}

static void show_event(const coherency_watch_event *e) {
        const coherency_grant_list *l = coherency_watch_event_get_grants(e);

        if (coherency_watch_event_get_kind(e) == COHERENCY_WATCH_GRANTS) {
                printf("    watch: subscribed; this process holds %zu grant%s\n", coherency_grant_list_get_count(l),
                       coherency_grant_list_get_count(l) == 1 ? "" : "s");
                return;
        }
        const coherency_grant_info *g = coherency_watch_event_get_grant_info(e);
        printf("    watch: %s %s (%s, state %s", str(coherency_watch_event_get_kind_string(e)),
               str(coherency_watch_event_get_grant(e)), str(coherency_grant_info_get_device(g)),
               str(coherency_grant_info_get_state_string(g)));
        if (coherency_grant_info_get_end(g))
                printf(", end %s", coherency_grant_info_get_end(g));
        printf(")\n");
}

/*
 * Runs the watch until an event of this kind for this grant (any grant with
 * grant NULL) arrives, showing every event on the way, as a VMM's event loop
 * would handle them. 0 when it came, -ETIMEDOUT when not within 10 s.
 */
static int watch_until(struct vmm *v, coherency_watch_event_kind kind, const char *grant) {
        for (;;) {
                coherency_watch_event *e = NULL;
                int r;

                r = coherency_watch_process(v->watch, &e);
                if (r < 0) {
                        fprintf(stderr, "sample-vmm: watch: %s\n", coherency_watch_get_error(v->watch));
                        return r;
                }
                if (r == 0) {
                        r = coherency_watch_wait(v->watch, 10 * 1000000ULL);
                        if (r < 0)
                                return r;
                        if (r == 0) {
                                fprintf(stderr, "sample-vmm: watch: no %s event in 10 s\n",
                                        coherency_watch_event_kind_to_string(kind));
                                return -ETIMEDOUT;
                        }
                        continue;
                }

                show_event(e);
                bool done = coherency_watch_event_get_kind(e) == kind &&
                            (!grant || strcmp(str(coherency_watch_event_get_grant(e)), grant) == 0);
                /* A revoke of a grant we hold: detach and close at once. */
                if (coherency_watch_event_get_kind(e) == COHERENCY_WATCH_REVOKED) {
                        struct held *h = find_held(v, coherency_watch_event_get_grant(e));

                        if (h) {
                                printf("    revoked: the VMM stops using %s and lets go of the group\n",
                                       held_device(h));
                                let_go(v, h);
                                forget(v, h);
                                show_kvm(v);
                        }
                }
                coherency_watch_event_free(e);
                if (done)
                        return 0;
        }
}

/* The operator's side: coherencyctl revoke GRANT does this Manager call. */
static int operator_revoke(struct vmm *v, const char *grant) {
        coherency_client *operator = NULL;
        char parameters[256];
        int r;

        printf("\nan operator revokes grant %s (coherencyctl revoke %s)\n", grant, grant);
        r = coherency_connect(v->socket, &operator);
        if (r < 0) {
                fprintf(stderr, "sample-vmm: operator: cannot connect: %s\n", strerror(-r));
                return r;
        }
        snprintf(parameters, sizeof(parameters), "{\"grant\":\"%s\"}", grant);
        r = coherency_call(operator, "io.coherencyd.Manager.RevokeGrant", parameters, false, NULL);
        if (r == -EPERM) {
                printf("    not allowed here (%s): run as root or in AdminGroup= to see a revoke\n",
                       coherency_client_get_error(operator));
                r = 1;
        } else if (r < 0)
                fprintf(stderr, "sample-vmm: operator: RevokeGrant: %s\n", coherency_client_get_error(operator));
        coherency_client_free(operator);
        return r;
}

static int list_grants(struct vmm *v) {
        coherency_grant_list *l = NULL;
        int n;

        printf("\nListGrants: what this connection holds\n");
        n = coherency_list_grants(v->client, &l);
        if (n < 0)
                return call_failed(v, "ListGrants()", n);

        printf("    %-20s %-13s %-14s %-11s %-26s %-7s %s\n", "GRANT", "DEVICE", "FILE", "DECISION", "REASON",
               "WBINVD", "STATE");
        for (size_t i = 0; i < coherency_grant_list_get_count(l); i++) {
                const coherency_grant_info *g = coherency_grant_list_get(l, i);

                printf("    %-20s %-13s %-14s %-11s %-26s %-7s %s\n", str(coherency_grant_info_get_id(g)),
                       str(coherency_grant_info_get_device(g)), str(coherency_grant_info_get_file(g)),
                       str(coherency_decision_kind_to_string(coherency_grant_info_get_decision(g))),
                       str(coherency_grant_info_get_reason(g)), str(coherency_grant_info_get_wbinvd(g)),
                       str(coherency_grant_info_get_state_string(g)));
        }
        coherency_grant_list_free(l);
        return 0;
}

static int show_info(struct vmm *v) {
        coherency_info *info = NULL;
        int r;

        r = coherency_get_info(v->client, &info);
        if (r < 0)
                return call_failed(v, "GetInfo()", r);
        printf("coherencyd %s, platform %s; for this VMM: access %s (%s), mode %s (%s)\n",
               str(coherency_info_get_version(info)), str(coherency_info_get_backend(info)),
               str(coherency_info_get_access(info)), str(coherency_info_get_access_rule(info)),
               str(coherency_info_get_mode(info)), str(coherency_info_get_mode_rule(info)));
        for (size_t i = 0; i < coherency_info_get_n_iommus(info); i++)
                printf("  IOMMU %s (%s): %s\n", str(coherency_info_get_iommu_name(info, i)),
                       str(coherency_info_get_iommu_type(info, i)),
                       coherency_info_get_iommu_enforces(info, i) > 0 ? "can enforce coherency" :
                       "cannot enforce coherency");
        coherency_info_free(info);
        return 0;
}

static void help(void) {
        printf("sample-vmm [--socket PATH]\n"
               "\n"
               "Walks through coherencyd's decision table as a VMM would, on the simulated\n"
               "platform built by demo/make-sim-sysfs with the policy in demo/config.\n"
               "\n"
               "  -h --help          Show this help\n"
               "     --socket=PATH   coherencyd's socket (default: $COHERENCYD_SOCKET, else %s)\n",
               COHERENCY_DEFAULT_SOCKET);
}

static int run(struct vmm *v) {
        struct held *h;
        char grant[128];
        int r;

        if (show_info(v) < 0)
                return -1;

        /* The watch first, so that no revoke can come before we listen. */
        printf("\nWatchGrants on a second connection: revokes and ends come there\n");
        if (watch_until(v, COHERENCY_WATCH_GRANTS, NULL) < 0)
                return -1;

        printf("\nthe VM's kvm-vfio device, created by the VMM (KVM_CREATE_DEVICE)\n");
        show_kvm(v);

        if (request(v, "row 0: the host's management NIC, which the site policy denies to every VMM",
                    "0000:00:0a.0", true, COHERENCY_DECISION_REFUSED, "access-denied") < 0)
                return -1;

        if (request(v, "row 1: a NIC whose No-Snoop enable is hard-wired off (site policy), in a coherent IOAS",
                    "0000:00:02.0", true, COHERENCY_DECISION_NOT_NEEDED, "device-coherent-only") < 0)
                return -1;

        if (request(v, "row 1b: such a NIC behind an IOMMU that cannot enforce coherency (dmar1)",
                    "0000:00:08.0", false, COHERENCY_DECISION_NOT_NEEDED, "device-coherent-only") < 0)
                return -1;

        if (request(v, "row 1c: the same NIC model, which the site policy force-disables by slot",
                    "0000:00:09.0", false, COHERENCY_DECISION_REFUSED, "policy-force-disable") < 0)
                return -1;

        /* Row 5 is where Probe earns its keep: ask before creating the IOAS,
         * so that an IOAS the policy would refuse is never created. */
        printf("\nrow 5: a GPU behind an enforcing IOMMU, in a non-coherent IOAS, in automatic mode\n"
               "  first ask, before creating a non-coherent IOAS for it:\n");
        if (probe(v, "0000:00:03.0", 0, COHERENCY_DECISION_REFUSED, "coherent-ioas-required") < 0)
                return -1;
        if (request(v, "row 5, continued: a VMM that created the non-coherent IOAS anyway",
                    "0000:00:03.0", false, COHERENCY_DECISION_REFUSED, "coherent-ioas-required") < 0)
                return -1;

        if (request(v, "row 2: the same GPU in a coherent IOAS",
                    "0000:00:03.0", true, COHERENCY_DECISION_NOT_NEEDED, "ioas-enforces-coherency") < 0)
                return -1;

        if (request(v, "row 3: a GPU the site policy enables, in a non-coherent IOAS",
                    "0000:00:04.0", false, COHERENCY_DECISION_GRANTED, "policy-enable") < 0)
                return -1;

        if (expect_error(v, "the same GPU again, while this VMM holds its group",
                         "0000:00:04.0", false, EBUSY, "io.coherencyd.Broker.DeviceBusy") < 0)
                return -1;

        if (second_vmm(v, "0000:00:04.0") < 0)
                return -1;

        if (expect_error(v, "a device behind dmar1 in an IOAS that claims coherency dmar1 cannot give",
                         "0000:00:05.0", true, EOPNOTSUPP, "io.coherencyd.Broker.CoherencyUnsupported") < 0)
                return -1;

        if (request(v, "row 4: that device in a non-coherent IOAS: the IOMMU cannot enforce coherency",
                    "0000:00:05.0", false, COHERENCY_DECISION_GRANTED, "platform-cannot-enforce") < 0)
                return -1;

        if (request(v, "row 6: an NVMe drive the site policy force-disables, in a non-coherent IOAS",
                    "0000:00:06.0", false, COHERENCY_DECISION_REFUSED, "policy-force-disable") < 0)
                return -1;

        if (request_from_event_loop(v, "0000:00:07.0", COHERENCY_DECISION_GRANTED, "platform-cannot-enforce") < 0)
                return -1;

        if (list_grants(v) < 0)
                return -1;

        for (h = v->held; h < v->held + v->n_held; h++)
                if (strcmp(held_device(h), "0000:00:04.0") == 0)
                        break;
        if (h == v->held + v->n_held) {
                fprintf(stderr, "sample-vmm: row 3 left nothing to release\n");
                return -1;
        }
        if (release(v, h, "the GPU of row 3") < 0)
                return -1;
        if (watch_until(v, COHERENCY_WATCH_ENDED, NULL) < 0)
                return -1;

        for (h = v->held; h < v->held + v->n_held; h++)
                if (strcmp(held_device(h), "0000:00:05.0") == 0)
                        break;
        if (h == v->held + v->n_held) {
                fprintf(stderr, "sample-vmm: row 4 left nothing to revoke\n");
                return -1;
        }
        snprintf(grant, sizeof(grant), "%s", str(coherency_grant_get_id(h->grant)));
        r = operator_revoke(v, grant);
        if (r < 0)
                return -1;
        if (r == 0) {
                printf("  the VMM's event loop sees it on the watch connection:\n");
                if (watch_until(v, COHERENCY_WATCH_REVOKED, grant) < 0 ||
                    watch_until(v, COHERENCY_WATCH_ENDED, grant) < 0)
                        return -1;
        }

        if (list_grants(v) < 0)
                return -1;
        return 0;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help",   no_argument,       NULL, 'h' },
                { "socket", required_argument, NULL, 's' },
                {}
        };
        struct vmm v = {
                .vm = -1,
                .coherent = -1,
                .noncoherent = -1,
        };
        int opt, r;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 's':
                        v.socket = optarg;
                        break;
                default:
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "sample-vmm: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }

        r = coherency_connect(v.socket, &v.client);
        if (r >= 0)
                r = coherency_watch_new(v.socket, &v.watch);
        if (r < 0) {
                fprintf(stderr, "sample-vmm: cannot connect to coherencyd (%s): %s\n",
                        v.socket ?: getenv("COHERENCYD_SOCKET") ?: COHERENCY_DEFAULT_SOCKET, strerror(-r));
                r = EXIT_FAILURE;
                goto finish;
        }

        v.vm = sim_object("kvm-vm");
        v.coherent = sim_object("vfio-container:coherent");
        v.noncoherent = sim_object("vfio-container:noncoherent");
        if (v.vm < 0 || v.coherent < 0 || v.noncoherent < 0) {
                r = EXIT_FAILURE;
                goto finish;
        }
        r = coherency_kvm_vfio_new(v.vm, -1, &v.kvm_vfio);
        if (r < 0) {
                fprintf(stderr, "sample-vmm: creating the VM's kvm-vfio device: %s\n", strerror(-r));
                r = EXIT_FAILURE;
                goto finish;
        }

        if (run(&v) < 0) {
                r = EXIT_FAILURE;
                goto finish;
        }

        printf("\nexit without releasing the other grants: closing the kvm-vfio device drops its files\n"
               "(Linux >= 6.2), and closing the connection ends the grants\n");
        v.kvm_vfio = coherency_kvm_vfio_free(v.kvm_vfio);
        show_kvm(&v);

        r = v.unexpected > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        if (v.unexpected > 0)
                fprintf(stderr, "sample-vmm: %u outcome%s differ from what demo/config gives\n",
                        v.unexpected, v.unexpected == 1 ? "" : "s");

finish:
        coherency_kvm_vfio_free(v.kvm_vfio);
        for (size_t i = 0; i < v.n_held; i++) {
                if (v.held[i].group_fd >= 0)
                        (void) close(v.held[i].group_fd);
                coherency_grant_free(v.held[i].grant);
        }
        coherency_watch_free(v.watch);
        coherency_client_free(v.client);
        if (v.vm >= 0)
                (void) close(v.vm);
        if (v.coherent >= 0)
                (void) close(v.coherent);
        if (v.noncoherent >= 0)
                (void) close(v.noncoherent);
        return r;
}
