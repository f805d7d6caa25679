/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * vmm-client: the vm tier's daemon test (see daemon-test.sh). It runs as
 * root in a guest of the vm tier next to the real coherencyd (--platform
 * linux, sandboxed) and plays two parts:
 *
 *   - the test driver (this process, root): the oracle (the function tracer
 *     on KVM's non-coherent DMA accounting, root's), whether the group is
 *     free (an open of /dev/vfio/N, as the daemon probes it), the daemon's
 *     descriptors (/proc/<daemon>/fd), its end records (its stderr, the guest
 *     has no journald), the operator (Manager.RevokeGrant) and SIGKILL;
 *   - unprivileged VMMs: forked children that drop to uid/gid 65534 (the
 *     policy allows it) or 65533 (no rule: the default, deny). Each makes
 *     what a VMM makes (/dev/kvm, a VM, its kvm-vfio device, a VFIO container
 *     with no group, since it cannot open one) and talks to the daemon
 *     through libcoherency, driven over a SOCK_SEQPACKET socketpair by
 *     one-letter commands. It checks the daemon's answers itself and says how
 *     many of its checks failed.
 *
 * Usage:
 *   vmm-client --socket PATH --snoop on|off --mode enable|automatic|force-disable
 *              --policy FILE --slot SLOT --group N --daemon-pid PID --daemon-log FILE
 *              [--tracefs DIR]
 *   vmm-client --wait-socket PATH [--daemon-pid PID] [--timeout SECONDS]
 *
 * --policy is the rule file that allows uid 65534 (Access=allow, Mode=):
 * the rules every answer must name are its lines. The second form waits
 * until the daemon answers on PATH (bounded polling, gives up at once when
 * the daemon exits): 0 ready, 1 not.
 *
 * Prints one line per check, "CHECK name ok detail" or "CHECK name FAIL
 * detail", and exits 1 when any check failed (2 on a usage error).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/vfio.h>

#include "libcoherency.h"

#include "ftrace-oracle.h"

#ifndef VFIO_DMA_CC_IOMMU
#define VFIO_DMA_CC_IOMMU 4
#endif

#define VMM_UID 65534          /* allowed by the test's policy file */
#define DENIED_UID 65533       /* matches no rule: Access= defaults to deny */

enum mode { MODE_ENABLE, MODE_AUTOMATIC, MODE_FORCE_DISABLE };

struct ctx {
        const char *socket;
        bool snoop;
        enum mode mode;
        const char *mode_name;
        const char *slot;
        int group;
        const char *tracefs;
        int daemon_pid;
        const char *daemon_log;
        char mode_rule[512];     /* "/etc/coherencyd/policy.d/50-vmm.policy:N" */
        char access_rule[512];
        char group_file[32];     /* "vfio-group:N" */
        char node[32];           /* "/dev/vfio/N" */
        unsigned passed, failed;
};

static void check(struct ctx *x, bool ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void check(struct ctx *x, bool ok, const char *name, const char *fmt, ...) {
        va_list ap;

        printf("CHECK %s %s ", name, ok ? "ok" : "FAIL");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
        if (ok)
                x->passed++;
        else
                x->failed++;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void note(const char *fmt, ...) {
        va_list ap;

        printf("note: ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
}

static bool streq(const char *a, const char *b) {
        return a && b && strcmp(a, b) == 0;
}

static const char *str(const char *s) {
        return s ? s : "(null)";
}

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
        (void) nanosleep(&(struct timespec) { .tv_sec = ms / 1000u, .tv_nsec = (long) (ms % 1000u) * 1000000L }, NULL);
}

/* ---- expectations (DESIGN §2), for the edu device: capable, no NoSnoop= rule */

struct expect {
        const char *decision, *reason, *wbinvd, *rule;
        coherency_kvm_attach attach;
};

static struct expect expected(const struct ctx *x, bool access, bool ioas_coherent) {
        if (!access)
                return (struct expect) { "refused", "access-denied", "none", "default", COHERENCY_KVM_ATTACH_NONE };
        if (ioas_coherent) /* row 2: decided by the No-Snoop setting, "default" here */
                return (struct expect) { "not-needed", "ioas-enforces-coherency", "none", "default",
                                         COHERENCY_KVM_ATTACH_ADD };
        switch (x->mode) {
        case MODE_ENABLE:
                return (struct expect) { "granted", "policy-enable", "allowed", x->mode_rule, COHERENCY_KVM_ATTACH_ADD };
        case MODE_AUTOMATIC:
                return x->snoop ? (struct expect) { "refused", "coherent-ioas-required", "none", x->mode_rule,
                                                    COHERENCY_KVM_ATTACH_NONE }
                                : (struct expect) { "granted", "platform-cannot-enforce", "allowed", x->mode_rule,
                                                    COHERENCY_KVM_ATTACH_ADD };
        case MODE_FORCE_DISABLE:
        default:
                return (struct expect) { "refused", "policy-force-disable", "none", x->mode_rule,
                                         COHERENCY_KVM_ATTACH_NONE };
        }
}

/* What RequestGrant will decide for the VMM's own container: the daemon
 * prepares it, so the device's IOMMU decides (ioasCoherent = snoop control). */
static struct expect expected_grant(const struct ctx *x) {
        return expected(x, true, x->snoop);
}

static bool hands_over(const struct ctx *x) {
        return !streq(expected_grant(x).decision, "refused");
}

/* The fields both a decision (Probe) and a grant (RequestGrant) carry. */
struct answer {
        const char *decision, *reason, *rule, *mode, *wbinvd;
        coherency_kvm_attach attach;
        const coherency_facts *facts;
};

static void check_answer(struct ctx *x, const char *name, const struct answer *a, struct expect e, bool access,
                         bool ioas_coherent) {
        const coherency_device *d = a->facts ? coherency_facts_get_device(a->facts) : NULL;
        char label[96];

        snprintf(label, sizeof label, "%s.decision", name);
        check(x, streq(a->decision, e.decision) && streq(a->reason, e.reason), label, "%s/%s (want %s/%s)",
              str(a->decision), str(a->reason), e.decision, e.reason);
        snprintf(label, sizeof label, "%s.rule", name);
        check(x, streq(a->rule, e.rule) && (!access || streq(a->mode, x->mode_name)), label,
              "rule=%s mode=%s (want %s%s%s)", str(a->rule), str(a->mode), e.rule, access ? ", " : "",
              access ? x->mode_name : "");
        snprintf(label, sizeof label, "%s.wbinvd", name);
        check(x, streq(a->wbinvd, e.wbinvd) && a->attach == e.attach, label, "wbinvd=%s kvmAttach=%s (want %s, %s)",
              str(a->wbinvd), str(coherency_kvm_attach_to_string(a->attach)), e.wbinvd,
              str(coherency_kvm_attach_to_string(e.attach)));
        snprintf(label, sizeof label, "%s.facts", name);
        if (!d) {
                check(x, false, label, "no facts");
                return;
        }
        check(x, streq(coherency_device_get_slot(d), x->slot) && streq(coherency_device_get_vendor(d), "0x1234") &&
                  streq(coherency_device_get_device(d), "0x11e8") && streq(coherency_device_get_driver(d), "vfio-pci") &&
                  streq(coherency_device_get_iommu(d), "dmar0") && coherency_device_get_iommu_group(d) == x->group &&
                  streq(coherency_device_get_no_snoop(d), "capable") &&
                  coherency_device_get_iommu_enforces(d) == x->snoop &&
                  coherency_device_get_ioas_coherent(d) == ioas_coherent &&
                  streq(coherency_facts_get_file(a->facts), x->group_file) &&
                  coherency_facts_get_n_devices(a->facts) == 1 &&
                  streq(coherency_device_get_access(d), access ? "allow" : "deny"),
              label,
              "slot=%s %s:%s driver=%s iommu=%s group=%d noSnoop=%s iommuEnforces=%d ioasCoherent=%d file=%s "
              "devices=%zu access=%s (want %s 0x1234:0x11e8 vfio-pci dmar0 %d capable %d %d %s 1 %s)",
              str(coherency_device_get_slot(d)), str(coherency_device_get_vendor(d)),
              str(coherency_device_get_device(d)), str(coherency_device_get_driver(d)),
              str(coherency_device_get_iommu(d)), coherency_device_get_iommu_group(d),
              str(coherency_device_get_no_snoop(d)), coherency_device_get_iommu_enforces(d),
              coherency_device_get_ioas_coherent(d), str(coherency_facts_get_file(a->facts)),
              coherency_facts_get_n_devices(a->facts), str(coherency_device_get_access(d)), x->slot, x->group,
              x->snoop, ioas_coherent, x->group_file, access ? "allow" : "deny");
}

/* ---- the VMM (a forked child, unprivileged) -------------------------------- */

struct vmm_state {
        struct ctx *x;
        uid_t uid;
        bool access;
        int kvm_fd, vm_fd, container_fd;
        coherency_client *client;
        coherency_kvm_vfio *kvfio;
        coherency_grant *grant;
        coherency_watch *watch;
        char grant_id[128];
};

struct vmm_reply {
        int32_t r;
        int32_t failed;          /* checks of the VMM that failed while it ran this command */
        char text[256];
};

static int vmm_connect(struct vmm_state *v) {
        int r = coherency_connect(v->x->socket, &v->client);

        if (r >= 0)
                (void) coherency_client_set_timeout(v->client, 60ULL * 1000000ULL);
        return r;
}

static int vmm_setup(struct vmm_state *v) {
        int r;

        v->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (v->kvm_fd < 0)
                return -errno;
        v->vm_fd = ioctl(v->kvm_fd, KVM_CREATE_VM, 0);
        if (v->vm_fd < 0)
                return -errno;
        /* A container with no group (the VMM cannot open one) and so no
         * IOMMU model: the daemon attaches the group and sets Type1v2. */
        v->container_fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (v->container_fd < 0)
                return -errno;
        r = coherency_kvm_vfio_new(v->vm_fd, -1, &v->kvfio);
        if (r < 0)
                return r;
        return vmm_connect(v);
}

static int own_open(const struct ctx *x) {
        int fd = open(x->node, O_RDWR | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

static void vmm_get_info(struct vmm_state *v) {
        struct ctx *x = v->x;
        coherency_info *info = NULL;
        bool found = false;
        int r, enforces = -1;

        r = coherency_get_info(v->client, &info);
        if (r < 0) {
                check(x, false, "getinfo", "%s", coherency_client_get_error(v->client));
                return;
        }
        check(x, streq(coherency_info_get_backend(info), "linux") && streq(coherency_info_get_mode(info), x->mode_name) &&
                  streq(coherency_info_get_mode_rule(info), x->mode_rule) &&
                  streq(coherency_info_get_access(info), "allow") &&
                  streq(coherency_info_get_access_rule(info), x->access_rule),
              "getinfo", "backend=%s mode=%s (%s) access=%s (%s) version=%s (want linux, %s (%s), allow (%s))",
              str(coherency_info_get_backend(info)), str(coherency_info_get_mode(info)),
              str(coherency_info_get_mode_rule(info)), str(coherency_info_get_access(info)),
              str(coherency_info_get_access_rule(info)), str(coherency_info_get_version(info)), x->mode_name,
              x->mode_rule, x->access_rule);
        for (size_t i = 0; i < coherency_info_get_n_iommus(info); i++)
                if (streq(coherency_info_get_iommu_name(info, i), "dmar0")) {
                        found = true;
                        enforces = coherency_info_get_iommu_enforces(info, i);
                }
        check(x, found && enforces == x->snoop, "getinfo.iommus", "dmar0 %s, enforcesCoherency=%d (want %d: VT-d ECAP.SC)",
              found ? "found" : "missing", enforces, x->snoop);
        coherency_info_free(info);
}

static void vmm_probe_one(struct vmm_state *v, const char *name, int iommu_fd, int claim, bool ioas_coherent) {
        struct ctx *x = v->x;
        coherency_decision *d = NULL;
        int r = coherency_probe(v->client, x->slot, iommu_fd, claim, &d);

        if (r < 0) {
                check(x, false, name, "%s", coherency_client_get_error(v->client));
                return;
        }
        struct answer a = {
                .decision = coherency_decision_kind_to_string(coherency_decision_get_decision(d)),
                .reason = coherency_decision_get_reason(d),
                .rule = coherency_decision_get_rule(d),
                .mode = coherency_decision_get_mode(d),
                .wbinvd = coherency_decision_get_wbinvd(d),
                .attach = coherency_decision_get_kvm_attach(d),
                .facts = coherency_decision_get_facts(d),
        };
        check_answer(x, name, &a, expected(x, v->access, ioas_coherent), v->access, ioas_coherent);
        coherency_decision_free(d);
}

static void vmm_probes(struct vmm_state *v) {
        struct ctx *x = v->x;
        coherency_decision *d = NULL;
        int r;

        /* The VMM's container, no IOMMU model yet: the daemon would set it, so
         * the device's IOMMU decides. */
        vmm_probe_one(v, "probe", v->container_fd, -1, x->snoop);
        if (!v->access)
                return;
        vmm_probe_one(v, "probe-no-iommu", -1, -1, x->snoop);
        vmm_probe_one(v, "probe-ioas-noncoherent", v->container_fd, 0, false);
        /* An IOAS that claims coherency the IOMMU cannot give. */
        r = coherency_probe(v->client, x->slot, v->container_fd, 1, &d);
        if (x->snoop) {
                if (r < 0)
                        check(x, false, "probe-ioas-coherent", "%s", coherency_client_get_error(v->client));
                coherency_decision_free(d);
                if (r >= 0)
                        vmm_probe_one(v, "probe-ioas-coherent", v->container_fd, 1, true);
        } else {
                check(x, r == -EOPNOTSUPP &&
                             streq(coherency_client_get_error_name(v->client), "io.coherencyd.Broker.CoherencyUnsupported") &&
                             strstr(str(coherency_client_get_error_parameters(v->client)), "ioasCoherent"),
                      "probe-ioas-coherent-unsupported", "r=%d %s (want -EOPNOTSUPP, CoherencyUnsupported naming ioasCoherent)",
                      r, coherency_client_get_error(v->client));
                coherency_decision_free(d);
        }
}

/* Wrong kinds of descriptor and a device that is not an address. */
static void vmm_wrong_kinds(struct vmm_state *v) {
        struct ctx *x = v->x;
        coherency_grant *g = NULL;
        int r;

        r = coherency_request_grant(v->client, v->container_fd, x->slot, v->container_fd, &g);
        check(x, r == -EBADF && strstr(str(coherency_client_get_error_parameters(v->client)), "\"vm\""),
              "wrong-kind.container-as-vm", "r=%d %s", r, coherency_client_get_error(v->client));
        coherency_grant_free(g);
        g = NULL;
        r = coherency_request_grant(v->client, v->vm_fd, x->slot, v->vm_fd, &g);
        check(x, r == -EBADF && strstr(str(coherency_client_get_error_parameters(v->client)), "\"iommu\""),
              "wrong-kind.vm-as-iommu", "r=%d %s", r, coherency_client_get_error(v->client));
        coherency_grant_free(g);
        g = NULL;
        r = coherency_request_grant(v->client, v->vm_fd, x->node, v->container_fd, &g);
        /* libcoherency may refuse it before sending: either way -EINVAL naming device. */
        check(x, r == -EINVAL && strstr(coherency_client_get_error(v->client), "device"), "wrong-kind.path-as-device",
              "r=%d %s (want -EINVAL naming device: a PCI address, never a path)", r,
              coherency_client_get_error(v->client));
        coherency_grant_free(g);
}

/* RequestGrant; checks the answer against the table. Returns 0, or -errno. */
static int vmm_request(struct vmm_state *v, char *text, size_t len) {
        struct ctx *x = v->x;
        coherency_grant *g = NULL;
        struct expect e = expected(x, v->access, x->snoop);
        int r, fd, cc;

        r = coherency_request_grant(v->client, v->vm_fd, x->slot, v->container_fd, &g);
        if (r < 0) {
                snprintf(text, len, "%s", coherency_client_get_error_name(v->client));
                return r;
        }
        struct answer a = {
                .decision = coherency_decision_kind_to_string(coherency_grant_get_decision(g)),
                .reason = coherency_grant_get_reason(g),
                .rule = coherency_grant_get_rule(g),
                .mode = coherency_grant_get_mode(g),
                .wbinvd = coherency_grant_get_wbinvd(g),
                .attach = coherency_grant_get_kvm_attach(g),
                .facts = coherency_grant_get_facts(g),
        };
        check_answer(x, "request-grant", &a, e, v->access, x->snoop);
        fd = coherency_grant_get_group_fd(g);
        if (streq(e.decision, "refused")) {
                check(x, fd == -ENODATA && !coherency_grant_get_id(g) &&
                             streq(coherency_grant_get_vm_wbinvd(g), "noop"),
                      "request-grant.nothing-handed-over", "group fd %d, grant %s, vmWbinvd %s (want none, none, noop)",
                      fd, str(coherency_grant_get_id(g)), str(coherency_grant_get_vm_wbinvd(g)));
                r = own_open(x);
                check(x, r == -EACCES, "request-grant.refused.own-open", "open %s: %s (want EACCES)", x->node,
                      strerror(-r));
                coherency_grant_free(g);
                snprintf(text, len, "refused");
                return 0;
        }

        struct stat st, node;
        bool same = fd >= 0 && fstat(fd, &st) == 0 && stat(x->node, &node) == 0 && S_ISCHR(st.st_mode) &&
                    st.st_rdev == node.st_rdev;
        int fl = fd >= 0 ? fcntl(fd, F_GETFL) : -1, fdfl = fd >= 0 ? fcntl(fd, F_GETFD) : -1;
        check(x, same && coherency_grant_get_id(g) && fl >= 0 && (fl & O_ACCMODE) == O_RDWR && fdfl >= 0 &&
                     (fdfl & FD_CLOEXEC),
              "request-grant.group", "fd %d is %s, O_RDWR %d, FD_CLOEXEC %d, grant %s", fd,
              same ? x->node : "not the group node", fl >= 0 && (fl & O_ACCMODE) == O_RDWR,
              fdfl >= 0 && (fdfl & FD_CLOEXEC), str(coherency_grant_get_id(g)));
        const char *want_vm = streq(e.decision, "granted") ? "allowed" : "noop";
        check(x, streq(coherency_grant_get_vm_wbinvd(g), want_vm), "request-grant.vm-wbinvd", "%s (want %s)",
              str(coherency_grant_get_vm_wbinvd(g)), want_vm);
        /* The daemon set the IOMMU model of the VMM's container. */
        cc = ioctl(v->container_fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU);
        check(x, cc == (x->snoop ? 1 : 0), "request-grant.container", "VFIO_CHECK_EXTENSION(VFIO_DMA_CC_IOMMU)=%d (want %d)",
              cc, x->snoop);
        snprintf(v->grant_id, sizeof v->grant_id, "%s", str(coherency_grant_get_id(g)));
        snprintf(text, len, "%s", v->grant_id);
        coherency_grant_free(v->grant);
        v->grant = g;
        return 1;
}

static int vmm_wait_revoked(struct vmm_state *v, char *text, size_t len) {
        uint64_t deadline = now_ms() + 30000;

        if (!v->watch)
                return -EBADF;
        while (now_ms() < deadline) {
                coherency_watch_event *e = NULL;
                int r = coherency_watch_process(v->watch, &e);

                if (r < 0)
                        return r;
                if (r == 0) {
                        r = coherency_watch_wait(v->watch, 1000000);
                        if (r < 0)
                                return r;
                        continue;
                }
                coherency_watch_event_kind k = coherency_watch_event_get_kind(e);
                bool ours = streq(coherency_watch_event_get_grant(e), v->grant_id);
                snprintf(text, len, "%s", str(coherency_watch_event_get_kind_string(e)));
                coherency_watch_event_free(e);
                if (k == COHERENCY_WATCH_REVOKED && ours)
                        return 0;
        }
        return -ETIMEDOUT;
}

static int vmm_command(struct vmm_state *v, char op, char *text, size_t len) {
        struct ctx *x = v->x;
        int r, fd;

        switch (op) {
        case 'I':       /* set up: VM, kvm-vfio, container, connection */
                return vmm_setup(v);
        case 'N':       /* a new connection */
                coherency_client_free(v->client);
                v->client = NULL;
                return vmm_connect(v);
        case 'X':       /* disconnect */
                v->client = coherency_client_free(v->client);
                return 0;
        case 'E':       /* its own open of the group node */
                return own_open(x);
        case 'G':
                vmm_get_info(v);
                return 0;
        case 'P':
                vmm_probes(v);
                return 0;
        case 'K':
                vmm_wrong_kinds(v);
                return 0;
        case 'R':
                return vmm_request(v, text, len);
        case 'U':       /* leave the container: EBUSY while pinned */
                fd = v->grant ? coherency_grant_get_group_fd(v->grant) : -1;
                if (fd < 0)
                        return -EBADF;
                return ioctl(fd, VFIO_GROUP_UNSET_CONTAINER) < 0 ? -errno : 0;
        case 'A':       /* attach as kvmAttach says: 1 added, 0 skipped */
                if (!v->grant)
                        return -EBADF;
                return coherency_kvm_vfio_attach(v->kvfio, v->grant);
        case 'D':       /* detach */
                return v->kvfio ? coherency_kvm_vfio_detach_file(v->kvfio, x->group_file) : -EBADF;
        case 'C':       /* close its copy of the group */
                if (!v->grant)
                        return -EBADF;
                fd = coherency_grant_take_group_fd(v->grant);
                if (fd >= 0)
                        close(fd);
                return fd >= 0 ? 0 : fd;
        case 'L': {     /* release */
                coherency_grant_state state;
                bool vm_wbinvd = true;

                r = coherency_release_grant(v->client, v->grant_id, &state, &vm_wbinvd);
                if (r < 0) {
                        snprintf(text, len, "%s", coherency_client_get_error(v->client));
                        return r;
                }
                snprintf(text, len, "%s vmWbinvd=%s", str(coherency_grant_state_to_string(state)),
                         vm_wbinvd ? "allowed" : "noop");
                return state == COHERENCY_GRANT_ENDED && !vm_wbinvd ? 0 : -EPROTO;
        }
        case 'M': {     /* how many grants this connection holds */
                coherency_grant_list *l = NULL;

                r = coherency_list_grants(v->client, &l);
                coherency_grant_list_free(l);
                return r;
        }
        case 'W': {     /* a watch, and its first reply */
                coherency_watch_event *e = NULL;
                uint64_t deadline = now_ms() + 30000;

                r = coherency_watch_new(x->socket, &v->watch);
                if (r < 0)
                        return r;
                while ((r = coherency_watch_process(v->watch, &e)) == 0 && now_ms() < deadline)
                        (void) coherency_watch_wait(v->watch, 1000000);
                if (r > 0) {
                        r = coherency_watch_event_get_kind(e) == COHERENCY_WATCH_GRANTS ? 0 : -EPROTO;
                        coherency_watch_event_free(e);
                }
                return r == 0 ? 0 : r < 0 ? r : -ETIMEDOUT;
        }
        case 'V':       /* wait until the grant is revoked */
                return vmm_wait_revoked(v, text, len);
        case 'Z':       /* ignore everything: sleep until killed (at most 60 s) */
                sleep_ms(60000);
                return -ETIMEDOUT;
        default:
                return -EINVAL;
        }
}

static int send_reply(int sock, const void *buf, size_t len) {
        return send(sock, buf, len, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static _Noreturn void vmm_main(struct ctx *x, int sock, uid_t uid) {
        struct vmm_state v = {
                .x = x,
                .uid = uid,
                .access = uid == VMM_UID,
                .kvm_fd = -1,
                .vm_fd = -1,
                .container_fd = -1,
        };

        if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                _exit(10);
        x->passed = x->failed = 0;
        for (;;) {
                struct vmm_reply reply = {};
                char op;
                unsigned before = x->failed;
                ssize_t n = recv(sock, &op, 1, 0);

                if (n <= 0 || op == 'Q')
                        break;
                reply.r = vmm_command(&v, op, reply.text, sizeof reply.text);
                reply.failed = (int32_t) (x->failed - before);
                if (send_reply(sock, &reply, sizeof reply) < 0)
                        break;
        }
        coherency_watch_free(v.watch);
        coherency_grant_free(v.grant);
        coherency_kvm_vfio_free(v.kvfio);
        coherency_client_free(v.client);
        _exit(0);
}

struct vmm {
        pid_t pid;
        int sock;
        const char *name;
        char text[256];
};

static int vmm_start(struct ctx *x, struct vmm *v, const char *name, uid_t uid) {
        int sv[2];

        *v = (struct vmm) { .pid = -1, .sock = -1, .name = name };
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        fflush(stdout);
        fflush(stderr);
        v->pid = fork();
        if (v->pid < 0) {
                close(sv[0]);
                close(sv[1]);
                return -errno;
        }
        if (v->pid == 0) {
                close(sv[0]);
                vmm_main(x, sv[1], uid);
        }
        close(sv[1]);
        v->sock = sv[0];
        return 0;
}

/* One command: its result (and v->text), or -EPIPE when the VMM is gone. */
static int vmm_do(struct ctx *x, struct vmm *v, char op) {
        struct vmm_reply reply;
        ssize_t n;

        v->text[0] = '\0';
        if (v->sock < 0 || send(v->sock, &op, 1, MSG_NOSIGNAL) < 0)
                return -EPIPE;
        n = recv(v->sock, &reply, sizeof reply, 0);
        if (n != (ssize_t) sizeof reply)
                return -EPIPE;
        reply.text[sizeof reply.text - 1] = '\0';
        snprintf(v->text, sizeof v->text, "%s", reply.text);
        /* The VMM printed its own checks; count its failures here too. */
        x->failed += (unsigned) reply.failed;
        return reply.r;
}

/* Tells the VMM to exit (or kills it) and reaps it. Returns the wait status. */
static int vmm_stop(struct vmm *v, bool kill_it) {
        int status = -1;

        if (v->pid > 0) {
                if (kill_it)
                        (void) kill(v->pid, SIGKILL);
                else if (v->sock >= 0) {
                        char q = 'Q';
                        (void) send(v->sock, &q, 1, MSG_NOSIGNAL);
                }
                (void) waitpid(v->pid, &status, 0);
                v->pid = -1;
        }
        if (v->sock >= 0) {
                close(v->sock);
                v->sock = -1;
        }
        return status;
}

/* ---- what the driver sees -------------------------------------------------- */

static int group_open(const struct ctx *x) {
        int fd = open(x->node, O_RDWR | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

/* Waits (bounded) until the group opens: 0, or the last error. */
static int group_wait_free(const struct ctx *x, unsigned timeout_ms) {
        uint64_t deadline = now_ms() + timeout_ms;
        int r;

        while ((r = group_open(x)) == -EBUSY && now_ms() < deadline)
                sleep_ms(20);
        return r;
}

struct daemon_fds {
        int total, vms, groups, pins;
};

static int daemon_fds(const struct ctx *x, struct daemon_fds *ret) {
        char dir[64], link[256];
        struct dirent *de;
        DIR *d;

        *ret = (struct daemon_fds) {};
        snprintf(dir, sizeof dir, "/proc/%d/fd", x->daemon_pid);
        d = opendir(dir);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                ssize_t l;

                if (de->d_name[0] == '.')
                        continue;
                ret->total++;
                l = readlinkat(dirfd(d), de->d_name, link, sizeof link - 1);
                if (l < 0)
                        continue;
                link[l] = '\0';
                if (streq(link, "anon_inode:kvm-vm"))
                        ret->vms++;
                else if (streq(link, x->node))
                        ret->groups++;
                else if (streq(link, "anon_inode:[vfio-device]"))
                        ret->pins++;
        }
        closedir(d);
        return 0;
}

static void check_daemon_holds_nothing(struct ctx *x, const char *name) {
        struct daemon_fds f;
        int r = daemon_fds(x, &f);

        check(x, r == 0 && f.vms == 0 && f.groups == 0 && f.pins == 0, name,
              "daemon pid %d holds %d VM, %d group and %d pin descriptor(s) of %d (want none)", x->daemon_pid, f.vms,
              f.groups, f.pins, f.total);
}

/* Lines of the daemon's log that are the end record of grant id. */
static int end_records(const struct ctx *x, const char *id, char *line_out, size_t len) {
        char needle[160], line[2048];
        int n = 0;
        FILE *f = fopen(x->daemon_log, "re");

        if (!f)
                return -errno;
        snprintf(needle, sizeof needle, "COHERENCYD_GRANT=%s ", id);
        while (fgets(line, sizeof line, f)) {
                char *p = strstr(line, needle);

                /* The field list ends with ')' after the last value. */
                if (!p) {
                        snprintf(needle, sizeof needle, "COHERENCYD_GRANT=%s)", id);
                        p = strstr(line, needle);
                        snprintf(needle, sizeof needle, "COHERENCYD_GRANT=%s ", id);
                }
                if (p && strstr(line, "COHERENCYD_END=")) {
                        n++;
                        if (line_out) {
                                line[strcspn(line, "\n")] = '\0';
                                snprintf(line_out, len, "%s", line);
                        }
                }
        }
        fclose(f);
        return n;
}

/* Waits (bounded) for the end record of id; checks there is exactly one
 * and that it says end (one of "|"-separated words) and, when want_killed,
 * COHERENCYD_KILLED=yes. */
static void check_end_record(struct ctx *x, const char *name, const char *id, const char *ends, bool want_killed) {
        uint64_t deadline = now_ms() + 30000;
        char line[2048] = "", word[64];
        bool end_ok = false;
        int n;

        while ((n = end_records(x, id, line, sizeof line)) == 0 && now_ms() < deadline)
                sleep_ms(20);
        for (const char *p = ends; *p;) {
                size_t l = strcspn(p, "|");

                snprintf(word, sizeof word, "COHERENCYD_END=%.*s ", (int) l, p);
                if (strstr(line, word))
                        end_ok = true;
                p += l;
                if (*p == '|')
                        p++;
        }
        bool killed = strstr(line, "COHERENCYD_KILLED=yes") != NULL;
        check(x, n == 1 && end_ok && killed == want_killed, name, "%d end record(s) for %s (want 1, end %s%s): %s", n,
              id, ends, want_killed ? ", killed" : "", line);
}

static void check_trace(struct ctx *x, const char *name, int want_reg, int want_unreg) {
        int reg = ftrace_count(x->tracefs, NONCOHERENT_REGISTER);
        int unreg = ftrace_count(x->tracefs, NONCOHERENT_UNREGISTER);

        check(x, reg == want_reg && unreg == want_unreg, name, "%s x%d (want %d), %s x%d (want %d)",
              NONCOHERENT_REGISTER, reg, want_reg, NONCOHERENT_UNREGISTER, unreg, want_unreg);
}

/* A Manager call as root. */
static int manager_revoke(struct ctx *x, const char *id, int kill, char *err, size_t len) {
        coherency_client *c = NULL;
        char params[256];
        int r = coherency_connect(x->socket, &c);

        err[0] = '\0';
        if (r < 0)
                return r;
        if (kill < 0)
                snprintf(params, sizeof params, "{\"grant\":\"%s\"}", id);
        else
                snprintf(params, sizeof params, "{\"grant\":\"%s\",\"kill\":%s}", id, kill ? "true" : "false");
        r = coherency_call(c, "io.coherencyd.Manager.RevokeGrant", params, false, NULL);
        if (r < 0)
                snprintf(err, len, "%s", coherency_client_get_error(c));
        coherency_client_free(c);
        return r;
}

/* ---- the scenarios ---------------------------------------------------------- */

/* Whether FILE_ADD of this grant's group registers non-coherent DMA: DESIGN
 * §2, wbinvd "allowed" and kvmAttach "add". */
static int want_register(const struct ctx *x) {
        struct expect e = expected_grant(x);
        return streq(e.wbinvd, "allowed") && e.attach == COHERENCY_KVM_ATTACH_ADD;
}

/* A grant: requested, checked, attached as it says. 0 with v->text the id. */
static int grant_and_attach(struct ctx *x, struct vmm *v, const char *name, char *id, size_t len) {
        char label[96];
        int r;

        ftrace_clear(x->tracefs);
        r = vmm_do(x, v, 'R');
        snprintf(label, sizeof label, "%s.request", name);
        check(x, r == 1, label, "%s (%s)", r == 1 ? "handed over" : strerror(-r), v->text);
        if (r != 1)
                return -1;
        if (snprintf(id, len, "%s", v->text) >= (int) len)
                return -1; /* not a grant id: those are 18 characters */
        snprintf(label, sizeof label, "%s.busy", name);
        r = group_open(x);
        check(x, r == -EBUSY, label, "the driver's open of %s: %s (want EBUSY: the VMM holds it)", x->node,
              strerror(-r));
        r = vmm_do(x, v, 'A');
        snprintf(label, sizeof label, "%s.attach", name);
        check(x, r == (expected_grant(x).attach == COHERENCY_KVM_ATTACH_ADD ? 1 : 0), label,
              "coherency_kvm_vfio_attach: %d (1 added, 0 skipped)", r);
        snprintf(label, sizeof label, "%s.trace-after-attach", name);
        check_trace(x, label, want_register(x), 0);
        ftrace_clear(x->tracefs);
        return 0;
}

/* After a grant ended: unregistered where registered, group free, one end record, nothing kept. */
static void check_ended(struct ctx *x, const char *name, const char *id, const char *ends, bool killed) {
        char label[96];
        int r;

        snprintf(label, sizeof label, "%s.group-free", name);
        r = group_wait_free(x, 30000);
        check(x, r == 0, label, "the driver's open of %s: %s", x->node, r == 0 ? "ok" : strerror(-r));
        snprintf(label, sizeof label, "%s.trace", name);
        check_trace(x, label, 0, want_register(x));
        snprintf(label, sizeof label, "%s.end-record", name);
        check_end_record(x, label, id, ends, killed);
        snprintf(label, sizeof label, "%s.daemon-holds-nothing", name);
        check_daemon_holds_nothing(x, label);
}

static void scenario_refused(struct ctx *x, struct vmm *a) {
        int r;

        ftrace_clear(x->tracefs);
        r = vmm_do(x, a, 'R');
        check(x, r == 0 && streq(a->text, "refused"), "refused", "%s (%s)", r < 0 ? strerror(-r) : "a reply", a->text);
        r = group_open(x);
        check(x, r == 0, "refused.group-untouched", "the driver's open of %s: %s (want ok: nothing was opened)", x->node,
              r == 0 ? "ok" : strerror(-r));
        check_trace(x, "refused.trace", 0, 0);
        r = vmm_do(x, a, 'M');
        check(x, r == 0, "refused.no-grant", "ListGrants: %d grant(s)", r);
        check_daemon_holds_nothing(x, "refused.daemon-holds-nothing");
}

static void scenario_release(struct ctx *x, struct vmm *a) {
        struct vmm b;
        char id[128];
        int r;

        if (grant_and_attach(x, a, "release", id, sizeof id) < 0)
                return;
        r = vmm_do(x, a, 'U');
        check(x, r == -EBUSY, "release.unset-container", "the VMM's VFIO_GROUP_UNSET_CONTAINER: %s (want EBUSY: pinned)",
              strerror(-r));
        r = vmm_do(x, a, 'E');
        check(x, r == -EACCES, "release.own-open", "the VMM's own open of %s: %s (want EACCES)", x->node, strerror(-r));
        r = vmm_do(x, a, 'M');
        check(x, r == 1, "release.list", "ListGrants: %d (want 1)", r);

        /* A second VMM asks for the held device. */
        r = vmm_start(x, &b, "vmm-b", VMM_UID);
        r = r < 0 ? r : vmm_do(x, &b, 'I');
        check(x, r == 0, "busy.setup", "%s", r < 0 ? strerror(-r) : "second VMM");
        if (r == 0) {
                r = vmm_do(x, &b, 'R');
                check(x, r == -EBUSY && streq(b.text, "io.coherencyd.Broker.DeviceBusy"), "busy.device-busy",
                      "%s %s (want DeviceBusy)", r < 0 ? strerror(-r) : "a reply", b.text);
        }
        vmm_stop(&b, false);

        r = vmm_do(x, a, 'D');
        check(x, r == (expected_grant(x).attach == COHERENCY_KVM_ATTACH_ADD ? 1 : 0), "release.detach", "%d", r);
        r = vmm_do(x, a, 'C');
        check(x, r == 0, "release.close", "%s", r < 0 ? strerror(-r) : "closed");
        r = vmm_do(x, a, 'L');
        check(x, r == 0, "release.release", "%s (want ended, vmWbinvd noop)", a->text);
        check_ended(x, "release", id, "release", false);
}

static void scenario_disconnect(struct ctx *x, struct vmm *a) {
        char id[128];
        int r;

        if (grant_and_attach(x, a, "disconnect", id, sizeof id) < 0)
                return;
        r = vmm_do(x, a, 'X');
        /* Ending: the VMM and KVM still hold the group. */
        sleep_ms(100);
        r = group_open(x);
        check(x, r == -EBUSY, "disconnect.still-held", "the driver's open of %s: %s (want EBUSY)", x->node, strerror(-r));
        check(x, end_records(x, id, NULL, 0) == 0, "disconnect.no-end-yet", "no end record while the group is held");
        r = vmm_do(x, a, 'D');
        r = vmm_do(x, a, 'C');
        check_ended(x, "disconnect", id, "disconnect", false);
        r = vmm_do(x, a, 'N');
        check(x, r == 0, "disconnect.reconnect", "%s", r < 0 ? strerror(-r) : "connected again");
}

static void scenario_revoke(struct ctx *x, struct vmm *a) {
        char id[128], err[256];
        int r;

        r = vmm_do(x, a, 'W');
        check(x, r == 0, "revoke.watch", "%s", r < 0 ? strerror(-r) : "WatchGrants answered");
        if (grant_and_attach(x, a, "revoke", id, sizeof id) < 0)
                return;
        r = manager_revoke(x, id, 0, err, sizeof err);
        check(x, r == 0, "revoke.manager", "RevokeGrant(%s, kill: false): %s", id, r < 0 ? err : "ok");
        r = vmm_do(x, a, 'V');
        check(x, r == 0, "revoke.watched", "the VMM saw: %s (%s)", a->text, r < 0 ? strerror(-r) : "revoked");
        r = vmm_do(x, a, 'D');
        r = vmm_do(x, a, 'C');
        check_ended(x, "revoke", id, "revoke", false);
        r = vmm_do(x, a, 'M');
        check(x, r == 0, "revoke.list", "ListGrants: %d (want 0; the connection stays)", r);
}

static void scenario_sigkill(struct ctx *x, struct vmm *a) {
        char id[128];
        int status;

        if (grant_and_attach(x, a, "sigkill", id, sizeof id) < 0)
                return;
        status = vmm_stop(a, true);
        check(x, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "sigkill.killed", "status %#x", status);
        check_ended(x, "sigkill", id, "disconnect|peer-exit", false);
}

static void scenario_revoke_kill(struct ctx *x) {
        struct vmm c;
        char id[128], err[256];
        uint64_t deadline;
        int r, status = -1;
        pid_t w;

        r = vmm_start(x, &c, "vmm-c", VMM_UID);
        r = r < 0 ? r : vmm_do(x, &c, 'I');
        check(x, r == 0, "revoke-kill.setup", "%s", r < 0 ? strerror(-r) : "a VMM that ignores revokes");
        if (r < 0 || grant_and_attach(x, &c, "revoke-kill", id, sizeof id) < 0) {
                vmm_stop(&c, true);
                return;
        }
        /* It stops listening; the daemon kills it ReleaseTimeoutSec= after the revoke. */
        {
                char op = 'Z';
                (void) send(c.sock, &op, 1, MSG_NOSIGNAL);
        }
        r = manager_revoke(x, id, -1, err, sizeof err);
        check(x, r == 0, "revoke-kill.manager", "RevokeGrant(%s) with RevokeKill=yes: %s", id, r < 0 ? err : "ok");
        deadline = now_ms() + 30000;
        while ((w = waitpid(c.pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
                sleep_ms(20);
        if (w == 0) {
                (void) kill(c.pid, SIGKILL);
                (void) waitpid(c.pid, &status, 0);
                check(x, false, "revoke-kill.killed", "the VMM was still alive 30 s after the revoke (killed it here)");
        } else
                check(x, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "revoke-kill.killed",
                      "the VMM ended with status %#x (want SIGKILL by the daemon)", status);
        c.pid = -1;
        vmm_stop(&c, false);
        check_ended(x, "revoke-kill", id, "revoke", true);
}

static void scenario_denied(struct ctx *x) {
        struct vmm d;
        int r;

        r = vmm_start(x, &d, "vmm-denied", DENIED_UID);
        r = r < 0 ? r : vmm_do(x, &d, 'I');
        check(x, r == 0, "denied.setup", "%s", r < 0 ? strerror(-r) : "uid 65533, no Access=allow rule");
        if (r == 0) {
                ftrace_clear(x->tracefs);
                (void) vmm_do(x, &d, 'P');
                r = vmm_do(x, &d, 'R');
                check(x, r == 0 && streq(d.text, "refused"), "denied.request", "%s (%s)", r < 0 ? strerror(-r) : "a reply",
                      d.text);
                r = vmm_do(x, &d, 'E');
                check(x, r == -EACCES, "denied.own-open", "%s", strerror(-r));
                r = group_open(x);
                check(x, r == 0, "denied.group-untouched", "the driver's open of %s: %s", x->node, r == 0 ? "ok" : strerror(-r));
                check_trace(x, "denied.trace", 0, 0);
        }
        vmm_stop(&d, false);
        check_daemon_holds_nothing(x, "denied.daemon-holds-nothing");
}

/* ---- set-up ------------------------------------------------------------------ */

/* The line of the first "KEY=" in file, as the daemon names it: "FILE:N". */
static int find_rule(const char *file, const char *key, char *buf, size_t size) {
        char line[256];
        unsigned n = 0;
        FILE *f = fopen(file, "re");

        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f)) {
                n++;
                if (strncmp(line, key, strlen(key)) == 0) {
                        snprintf(buf, size, "%s:%u", file, n);
                        fclose(f);
                        return 0;
                }
        }
        fclose(f);
        return -ENOENT;
}

static bool process_alive(int pid) {
        char path[64], buf[512], *p;
        FILE *f;
        bool alive;

        if (pid <= 0)
                return true;
        /* A child of the caller that exited stays a zombie until it is waited for. */
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        alive = fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')) && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
        fclose(f);
        return alive;
}

/* Bounded polling until a call on path is answered. */
static int wait_socket(const char *path, int pid, unsigned timeout_s) {
        uint64_t start = now_ms(), deadline = start + timeout_s * 1000u;
        const char *why = "timed out";
        int last = 0;

        for (;;) {
                coherency_client *c = NULL;
                coherency_info *info = NULL;
                int r = coherency_connect(path, &c);

                if (r >= 0)
                        r = coherency_get_info(c, &info);
                coherency_info_free(info);
                coherency_client_free(c);
                if (r >= 0) {
                        printf("vmm-client: %s answers after %llu ms\n", path, (unsigned long long) (now_ms() - start));
                        return 0;
                }
                last = r;
                if (!process_alive(pid)) {
                        why = "the daemon exited";
                        break;
                }
                if (now_ms() >= deadline)
                        break;
                sleep_ms(10);
        }
        printf("vmm-client: %s does not answer (%s; last: %s)\n", path, why, strerror(-last));
        return 1;
}

/* --probe SLOT: one Probe as the caller (root here), its outcome on one line: "probe SLOT:
 * decision REASON" or "probe SLOT: error NAME". For daemon-test.sh's rebind check. */
static int probe_once(const char *path, const char *slot) {
        coherency_client *c = NULL;
        coherency_decision *d = NULL;
        int r = coherency_connect(path, &c);

        if (r >= 0)
                r = coherency_probe(c, slot, -1, -1, &d);
        if (r >= 0)
                printf("probe %s: %s %s\n", slot,
                       coherency_decision_get_decision(d) == COHERENCY_DECISION_REFUSED ? "refused" : "decided",
                       coherency_decision_get_reason(d));
        else
                printf("probe %s: error %s\n", slot, c ? coherency_client_get_error_name(c) ?: strerror(-r) : strerror(-r));
        coherency_decision_free(d);
        coherency_client_free(c);
        return 0;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 'S' },
                { "snoop", required_argument, NULL, 'n' },
                { "mode", required_argument, NULL, 'm' },
                { "policy", required_argument, NULL, 'c' },
                { "slot", required_argument, NULL, 's' },
                { "group", required_argument, NULL, 'g' },
                { "tracefs", required_argument, NULL, 't' },
                { "daemon-pid", required_argument, NULL, 'p' },
                { "daemon-log", required_argument, NULL, 'l' },
                { "wait-socket", required_argument, NULL, 'W' },
                { "timeout", required_argument, NULL, 'T' },
                { "probe", required_argument, NULL, 'P' },
                {}
        };
        struct ctx x = {
                .group = -1,
                .tracefs = "/sys/kernel/tracing",
        };
        const char *snoop = NULL, *policy = NULL, *pid = getenv("COH_DAEMON_PID"), *wait_path = NULL, *probe = NULL;
        unsigned timeout_s = 10;
        struct daemon_fds before, after;
        struct vmm a = { .pid = -1, .sock = -1 };
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'S': x.socket = optarg; break;
                case 'n': snoop = optarg; break;
                case 'm': x.mode_name = optarg; break;
                case 'c': policy = optarg; break;
                case 's': x.slot = optarg; break;
                case 'g': x.group = atoi(optarg); break;
                case 't': x.tracefs = optarg; break;
                case 'p': pid = optarg; break;
                case 'l': x.daemon_log = optarg; break;
                case 'W': wait_path = optarg; break;
                case 'T': timeout_s = (unsigned) atoi(optarg); break;
                case 'P': probe = optarg; break;
                default: return 2;
                }
        if (probe && x.socket)
                return probe_once(x.socket, probe);
        if (wait_path)
                return wait_socket(wait_path, pid ? atoi(pid) : 0, timeout_s);
        if (streq(x.mode_name, "enable"))
                x.mode = MODE_ENABLE;
        else if (streq(x.mode_name, "automatic"))
                x.mode = MODE_AUTOMATIC;
        else if (streq(x.mode_name, "force-disable"))
                x.mode = MODE_FORCE_DISABLE;
        else
                x.mode_name = NULL;
        if (!x.socket || !x.mode_name || !policy || !x.slot || x.group < 0 || !pid || atoi(pid) <= 0 ||
            !x.daemon_log || !(streq(snoop, "on") || streq(snoop, "off"))) {
                fprintf(stderr, "usage: vmm-client --socket PATH --snoop on|off --mode enable|automatic|force-disable\n"
                                "                  --policy FILE --slot SLOT --group N --daemon-pid PID --daemon-log FILE\n"
                                "                  [--tracefs DIR]\n");
                return 2;
        }
        x.snoop = streq(snoop, "on");
        x.daemon_pid = atoi(pid);
        snprintf(x.group_file, sizeof x.group_file, "vfio-group:%d", x.group);
        snprintf(x.node, sizeof x.node, "/dev/vfio/%d", x.group);
        if (find_rule(policy, "Mode=", x.mode_rule, sizeof x.mode_rule) < 0 ||
            find_rule(policy, "Access=", x.access_rule, sizeof x.access_rule) < 0) {
                fprintf(stderr, "vmm-client: no Mode= or Access= line in %s\n", policy);
                return 2;
        }
        /* SIGPIPE never: a killed VMM's socket is written to. */
        signal(SIGPIPE, SIG_IGN);

        r = daemon_fds(&x, &before);
        check(&x, r == 0 && before.vms == 0 && before.groups == 0 && before.pins == 0, "daemon.baseline",
              "daemon pid %d: %d descriptor(s), none of a VM, group or pin", x.daemon_pid, before.total);

        r = vmm_start(&x, &a, "vmm-a", VMM_UID);
        r = r < 0 ? r : vmm_do(&x, &a, 'I');
        check(&x, r == 0, "setup.vmm", "%s", r < 0 ? strerror(-r) : "uid 65534: a VM, its kvm-vfio device, a container");
        if (r < 0)
                goto out;
        r = vmm_do(&x, &a, 'E');
        check(&x, r == -EACCES, "setup.own-open", "the VMM's own open of %s: %s (want EACCES: 0600 root)", x.node,
              strerror(-r));
        (void) vmm_do(&x, &a, 'G');
        (void) vmm_do(&x, &a, 'P');
        (void) vmm_do(&x, &a, 'K');

        if (!hands_over(&x)) {
                note("%s with snoop control %s refuses: nothing to hand over, end or kill", x.mode_name, snoop);
                scenario_refused(&x, &a);
        } else {
                scenario_release(&x, &a);
                scenario_disconnect(&x, &a);
                scenario_revoke(&x, &a);
                scenario_sigkill(&x, &a);
                scenario_revoke_kill(&x);
        }
        scenario_denied(&x);

out:
        vmm_stop(&a, false);
        /* Nothing of any VMM stays in the daemon (connections are closed
         * asynchronously: give it a moment). */
        for (int i = 0; i < 100; i++) {
                if (daemon_fds(&x, &after) == 0 && after.total == before.total)
                        break;
                sleep_ms(20);
        }
        check(&x, after.total == before.total && after.vms == 0 && after.groups == 0 && after.pins == 0,
              "daemon.no-leaked-descriptors", "%d descriptor(s) after, %d before; %d VM, %d group, %d pin", after.total,
              before.total, after.vms, after.groups, after.pins);
        printf("vmm-client: %s snoop-control=%s: %u passed, %u failed\n", x.mode_name, snoop, x.passed, x.failed);
        return x.failed == 0 && x.passed > 0 ? 0 : 1;
}
