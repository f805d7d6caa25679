/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * vmm-client: a VMM-like program on libcoherency that runs in a guest of the
 * vm tier (see tests/vm/init and daemon-test.sh) against the real coherencyd
 * on a real kernel. It sets up what a VMM has (a KVM VM, a VFIO container
 * with the edu device's group attached, the IOMMU set) and checks what the
 * daemon answers, with the function tracer as the oracle for what KVM did.
 *
 * Usage:
 *   vmm-client --socket PATH --snoop on|off --mode enable|automatic|force-disable
 *              --conf FILE --slot SLOT --group N [--tracefs DIR] [--daemon-pid PID]
 *   vmm-client --wait-socket PATH [--daemon-pid PID] [--timeout SECONDS]
 *
 * The second form waits until the daemon accepts a connection on PATH (and
 * answers a call), polling every 10 ms for at most SECONDS (default 10), and
 * gives up at once when the daemon (PID) exits: 0 ready, 1 not.
 *
 * --conf is the coherencyd.conf the daemon was started with: its Mode= line
 * is the rule every mode-decided answer must name. The daemon's pid comes
 * from --daemon-pid or $COH_DAEMON_PID.
 *
 * Prints one line per check, "CHECK name ok detail" or "CHECK name FAIL
 * detail", and exits 1 when any check failed (2 on a usage error).
 *
 * What cannot be checked: KVM refuses every VM and kvm-device ioctl from a
 * process other than the VM's creator (kvm->mm != current->mm: EIO). So the
 * daemon, another process, cannot create the VM's kvm-vfio device, and every
 * RequestGrant that needs an attach fails with BackendError(5,
 * "KVM_CREATE_DEVICE"). That is asserted here ("kernel-refuses-foreign-kvm-
 * ioctl") so that it stays visible until the design accounts for it.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/vfio.h>

#include "coherency.h"

#include "ftrace-oracle.h"

#ifndef VFIO_DMA_CC_IOMMU
#define VFIO_DMA_CC_IOMMU 4
#endif


enum mode { MODE_ENABLE, MODE_AUTOMATIC, MODE_FORCE_DISABLE };

struct expect {
        const char *decision;
        const char *reason;
        bool mode_rule;          /* the rule is the conf file's Mode= line (rows 3-6), else "default" */
};

struct ctx {
        struct coherency_client *client;
        bool snoop;
        enum mode mode;
        const char *mode_name;
        const char *slot;
        int group;
        const char *tracefs;
        int daemon_pid;
        char mode_rule[512];     /* "/etc/coherencyd/coherencyd.conf:N" */

        int kvm_fd, vm_fd, container_fd, group_fd;
        int container_cc;        /* VFIO_CHECK_EXTENSION(VFIO_DMA_CC_IOMMU) on the container */
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

static bool streq(const char *a, const char *b) {
        return a && b && strcmp(a, b) == 0;
}

/* ---- the oracle: KVM's non-coherent DMA accounting -------------------- */

static void check_no_register(struct ctx *x, const char *name) {
        int reg = ftrace_count(x->tracefs, NONCOHERENT_REGISTER);
        int unreg = ftrace_count(x->tracefs, NONCOHERENT_UNREGISTER);

        check(x, reg == 0 && unreg == 0, name, "%s x%d, %s x%d (want none: nothing was attached)",
              NONCOHERENT_REGISTER, reg, NONCOHERENT_UNREGISTER, unreg);
}

/* ---- the daemon's descriptors ----------------------------------------- */

/* Counts the daemon's open descriptors, and in *ret_vms those that are KVM VMs. */
static int daemon_fds(struct ctx *x, int *ret_vms) {
        char dir[64], path[320], link[256];
        struct dirent *de;
        int n = 0, vms = 0;
        DIR *d;

        snprintf(dir, sizeof dir, "/proc/%d/fd", x->daemon_pid);
        d = opendir(dir);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                ssize_t l;

                if (de->d_name[0] == '.')
                        continue;
                n++;
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                l = readlink(path, link, sizeof link - 1);
                if (l < 0)
                        continue;
                link[l] = '\0';
                if (strcmp(link, "anon_inode:kvm-vm") == 0)
                        vms++;
        }
        closedir(d);
        if (ret_vms)
                *ret_vms = vms;
        return n;
}

/* One round trip: the daemon has finished (and closed the descriptors of)
 * every earlier call once this is answered. Returns the number of grants. */
static int sync_daemon(struct ctx *x) {
        struct coherency_grant *grants = NULL;
        int n = coherency_list_grants(x->client, &grants);

        free(grants);
        return n;
}

static void check_no_vm_held(struct ctx *x, const char *name) {
        int vms = -1, n, grants;

        grants = sync_daemon(x);
        n = daemon_fds(x, &vms);
        check(x, n >= 0 && vms == 0 && grants == 0, name,
              "daemon (pid %d) holds %d anon_inode:kvm-vm descriptor(s) of %d, this connection has %d grant(s) (want 0 and 0)",
              x->daemon_pid, vms, n, grants);
}

/* ---- expectations (DESIGN §2) ----------------------------------------- */

/* The table's row for a capable device (no NoSnoop= rule in the test policy). */
static struct expect expected(const struct ctx *x, bool ioas_coherent) {
        if (ioas_coherent)
                return (struct expect) { "not-needed", "ioas-enforces-coherency", false };
        switch (x->mode) {
        case MODE_ENABLE:
                return (struct expect) { "granted", "policy-enable", true };
        case MODE_AUTOMATIC:
                return x->snoop ? (struct expect) { "refused", "coherent-ioas-required", true }
                                : (struct expect) { "granted", "platform-cannot-enforce", true };
        case MODE_FORCE_DISABLE:
        default:
                return (struct expect) { "refused", "policy-force-disable", true };
        }
}

static void check_decision(struct ctx *x, const char *name, const struct coherency_decision *d, struct expect e,
                           bool ioas_coherent) {
        const char *want_rule = e.mode_rule ? x->mode_rule : "default";
        char label[96];

        snprintf(label, sizeof label, "%s.decision", name);
        check(x, streq(d->decision, e.decision) && streq(d->reason, e.reason), label, "%s/%s (want %s/%s)",
              d->decision, d->reason, e.decision, e.reason);
        snprintf(label, sizeof label, "%s.rule", name);
        check(x, streq(d->rule, want_rule) && streq(d->mode, x->mode_name), label, "rule=%s mode=%s (want %s, %s)",
              d->rule, d->mode, want_rule, x->mode_name);

        const struct coherency_device_facts *f = &d->facts;
        snprintf(label, sizeof label, "%s.facts", name);
        check(x, streq(f->slot, x->slot) && streq(f->vendor, "0x1234") && streq(f->device, "0x11e8") &&
                  streq(f->driver, "vfio-pci") && streq(f->iommu, "dmar0") && f->iommu_group == x->group &&
                  streq(f->no_snoop, "capable") && f->iommu_enforces == x->snoop && f->ioas_coherent == ioas_coherent &&
                  d->n_devices == 1 && streq(f->mode_rule, x->mode_rule),
              label,
              "slot=%s vendor=%s device=%s class=%s driver=%s iommu=%s iommuGroup=%d noSnoop=%s iommuEnforces=%d "
              "ioasCoherent=%d devices=%zu modeRule=%s (want %s 0x1234 0x11e8 vfio-pci dmar0 group %d capable "
              "enforces=%d ioasCoherent=%d, 1 device, %s)",
              f->slot, f->vendor, f->device, f->class_, f->driver, f->iommu, f->iommu_group, f->no_snoop,
              f->iommu_enforces, f->ioas_coherent, d->n_devices, f->mode_rule, x->slot, x->group, x->snoop,
              ioas_coherent, x->mode_rule);
}

/* ---- the checks -------------------------------------------------------- */

static void check_get_info(struct ctx *x) {
        struct coherency_info info;
        char *json = NULL;
        int r;

        r = coherency_get_info(x->client, &info);
        check(x, r == 0 && streq(info.backend, "linux") && streq(info.mode, x->mode_name) &&
                  streq(info.mode_rule, x->mode_rule),
              "getinfo", "r=%d backend=%s mode=%s modeRule=%s version=%s (want linux, %s, %s)%s%s", r,
              r == 0 ? info.backend : "", r == 0 ? info.mode : "", r == 0 ? info.mode_rule : "",
              r == 0 ? info.version : "", x->mode_name, x->mode_rule, r < 0 ? ": " : "",
              r < 0 ? coherency_client_error(x->client) : "");

        /* libcoherency's typed GetInfo has no iommus: read them raw. */
        r = coherency_call(x->client, "io.coherencyd.Broker.GetInfo", NULL, false, &json);
        if (r < 0) {
                check(x, false, "getinfo.iommus", "raw GetInfo: %s", coherency_client_error(x->client));
                return;
        }
        json_object *p = json_tokener_parse(json), *iommus = NULL;
        bool found = false, enforces = false;
        char list[512] = "";
        if (p && json_object_object_get_ex(p, "iommus", &iommus) && json_object_is_type(iommus, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(iommus); i++) {
                        json_object *u = json_object_array_get_idx(iommus, i), *v;
                        const char *name = json_object_object_get_ex(u, "name", &v) ? json_object_get_string(v) : "?";
                        bool e = json_object_object_get_ex(u, "enforcesCoherency", &v) && json_object_get_boolean(v);
                        const char *type = json_object_object_get_ex(u, "type", &v) ? json_object_get_string(v) : "?";
                        size_t l = strlen(list);

                        snprintf(list + l, sizeof list - l, "%s%s(%s,enforcesCoherency=%s)", l ? " " : "", name, type,
                                 e ? "true" : "false");
                        if (streq(name, "dmar0")) {
                                found = true;
                                enforces = e;
                        }
                }
        }
        check(x, found && enforces == x->snoop, "getinfo.iommus", "%s (want dmar0 with enforcesCoherency=%s)",
              list[0] ? list : json, x->snoop ? "true" : "false");
        json_object_put(p);
        free(json);
}

static void check_probes(struct ctx *x) {
        struct coherency_decision d = {};
        int r;

        /* What the kernel would do: the container's own coherency. */
        r = coherency_probe(x->client, x->group_fd, x->container_fd, -1, &d);
        if (r < 0)
                check(x, false, "probe", "%s", coherency_client_error(x->client));
        else
                check_decision(x, "probe", &d, expected(x, x->container_cc > 0), x->container_cc > 0);
        coherency_decision_clear(&d);

        /* Without an iommu: the kernel's default (coherent wherever the IOMMU enforces). */
        r = coherency_probe(x->client, x->group_fd, -1, -1, &d);
        if (r < 0)
                check(x, false, "probe-no-iommu", "%s", coherency_client_error(x->client));
        else
                check_decision(x, "probe-no-iommu", &d, expected(x, x->snoop), x->snoop);
        coherency_decision_clear(&d);

        /* A container with no IOMMU set yet (the IOAS does not exist): the
         * daemon cannot know its coherency, so it must take the kernel's
         * default, as without an iommu. */
        int unset = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (unset < 0)
                check(x, false, "probe-unset-container", "open /dev/vfio/vfio: %m");
        else {
                r = coherency_probe(x->client, x->group_fd, unset, -1, &d);
                if (r < 0)
                        check(x, false, "probe-unset-container", "%s", coherency_client_error(x->client));
                else
                        check_decision(x, "probe-unset-container", &d, expected(x, x->snoop), x->snoop);
                coherency_decision_clear(&d);
                close(unset);
        }

        /* An IOAS that claims coherency. */
        r = coherency_probe(x->client, x->group_fd, x->container_fd, 1, &d);
        if (x->snoop) {
                if (r < 0)
                        check(x, false, "probe-ioas-coherent", "%s", coherency_client_error(x->client));
                else
                        check_decision(x, "probe-ioas-coherent", &d, expected(x, true), true);
        } else
                check(x, r == -EOPNOTSUPP && streq(coherency_client_error_name(x->client),
                                                    "io.coherencyd.Broker.CoherencyUnsupported") &&
                          strstr(coherency_client_error(x->client), "ioasCoherent"),
                      "probe-ioas-coherent-unsupported", "r=%d %s (want -EOPNOTSUPP, CoherencyUnsupported naming ioasCoherent)",
                      r, r < 0 ? coherency_client_error(x->client) : d.decision);
        coherency_decision_clear(&d);

        /* An IOAS that does not enforce coherency on purpose. */
        r = coherency_probe(x->client, x->group_fd, x->container_fd, 0, &d);
        if (r < 0)
                check(x, false, "probe-ioas-noncoherent", "%s", coherency_client_error(x->client));
        else
                check_decision(x, "probe-ioas-noncoherent", &d, expected(x, false), false);
        coherency_decision_clear(&d);
}

static void check_request_grant(struct ctx *x) {
        struct coherency_decision d = {};
        bool coherent = x->container_cc > 0;
        struct expect e = expected(x, coherent);
        /* DESIGN §2: granted attaches; not-needed attaches a file the kernel sees as enforced-coherent. */
        bool attach = streq(e.decision, "granted") || (streq(e.decision, "not-needed") && coherent);
        int r;

        ftrace_clear(x->tracefs);
        r = coherency_request_grant(x->client, x->vm_fd, x->group_fd, x->container_fd, &d);
        if (!attach) {
                if (r < 0)
                        check(x, false, "request-grant", "%s", coherency_client_error(x->client));
                else {
                        check_decision(x, "request-grant", &d, e, coherent);
                        check(x, d.grant[0] == '\0' && !d.attached && streq(d.vm_wbinvd, "noop"), "request-grant.nothing-held",
                              "grant=\"%s\" attached=%d vmWbinvd=%s (want no grant, not attached, noop)", d.grant,
                              d.attached, d.vm_wbinvd);
                }
        } else {
                const char *name = coherency_client_error_name(x->client);
                const char *text = coherency_client_error(x->client);
                /* The client prints BackendError as "{operation}: {errno:errno}"
                 * only when both are there, and r is the errno it carried. */
                bool ok = r == -EIO && streq(name, "io.coherencyd.Broker.BackendError") &&
                          strstr(text, "BackendError: KVM_CREATE_DEVICE: Input/output error");

                if (ok)
                        check(x, true, "kernel-refuses-foreign-kvm-ioctl",
                              "(EIO as expected: KVM allows VM ioctls only from the VM's creator)");
                else
                        check(x, false, "kernel-refuses-foreign-kvm-ioctl",
                              "r=%d %s (want BackendError errno 5 operation KVM_CREATE_DEVICE for a %s decision)%s%s", r,
                              r < 0 ? text : d.decision, e.decision, r == 0 ? " grant=" : "", r == 0 ? d.grant : "");
        }
        coherency_decision_clear(&d);
        check_no_register(x, "request-grant.trace");
        check_no_vm_held(x, "request-grant.no-vm-held");
}

/* A call that must fail with InvalidFileDescriptor naming parameter and what was found. */
static void check_invalid_fd(struct ctx *x, const char *name, int r, const char *parameter, const char *got) {
        const char *text = coherency_client_error(x->client);
        char want[256];

        snprintf(want, sizeof want, "InvalidFileDescriptor: %s: expected ", parameter);
        bool ok = r == -EBADF && streq(coherency_client_error_name(x->client), "io.coherencyd.Broker.InvalidFileDescriptor") &&
                  strstr(text, want);
        snprintf(want, sizeof want, ", got %s", got);
        ok = ok && strstr(text, want) && strlen(strstr(text, want)) == strlen(want);
        check(x, ok, name, "r=%d %s (want -EBADF naming %s, got %s)", r, r < 0 ? text : "(a reply)", parameter, got);
}

static void check_wrong_kinds(struct ctx *x) {
        struct coherency_decision d = {};
        char path[64];
        int pipe_fds[2] = { -1, -1 }, path_fd, ro_fd, r;

        /* The VM where a VFIO file belongs. */
        r = coherency_probe(x->client, x->vm_fd, x->container_fd, -1, &d);
        coherency_decision_clear(&d);
        check_invalid_fd(x, "wrong-kind.probe.vm-as-device", r, "device", "a KVM VM");
        r = coherency_request_grant(x->client, x->vm_fd, x->vm_fd, x->container_fd, &d);
        coherency_decision_clear(&d);
        check_invalid_fd(x, "wrong-kind.grant.vm-as-device", r, "device", "a KVM VM");

        /* /dev/kvm itself, and the group, where the VM belongs. */
        r = coherency_request_grant(x->client, x->kvm_fd, x->group_fd, x->container_fd, &d);
        coherency_decision_clear(&d);
        check_invalid_fd(x, "wrong-kind.grant.dev-kvm-as-vm", r, "vm", "/dev/kvm itself (not a VM)");
        r = coherency_request_grant(x->client, x->group_fd, x->group_fd, x->container_fd, &d);
        coherency_decision_clear(&d);
        check_invalid_fd(x, "wrong-kind.grant.group-as-vm", r, "vm", "a VFIO group");

        /* A pipe as the device. */
        if (pipe2(pipe_fds, O_CLOEXEC) < 0)
                check(x, false, "wrong-kind.probe.pipe-as-device", "pipe2: %m");
        else {
                r = coherency_probe(x->client, pipe_fds[0], x->container_fd, -1, &d);
                coherency_decision_clear(&d);
                check_invalid_fd(x, "wrong-kind.probe.pipe-as-device", r, "device", "a pipe");
                r = coherency_request_grant(x->client, x->vm_fd, pipe_fds[0], x->container_fd, &d);
                coherency_decision_clear(&d);
                check_invalid_fd(x, "wrong-kind.grant.pipe-as-device", r, "device", "a pipe");
                close(pipe_fds[0]);
                close(pipe_fds[1]);
        }

        /* An O_PATH descriptor of the group: names it, proves no access. */
        snprintf(path, sizeof path, "/dev/vfio/%d", x->group);
        path_fd = open(path, O_PATH | O_CLOEXEC);
        if (path_fd < 0)
                check(x, false, "wrong-kind.probe.o-path-group-as-device", "open %s O_PATH: %m", path);
        else {
                r = coherency_probe(x->client, path_fd, x->container_fd, -1, &d);
                coherency_decision_clear(&d);
                check_invalid_fd(x, "wrong-kind.probe.o-path-group-as-device", r, "device", "an O_PATH descriptor");
                close(path_fd);
        }

        /* A read-only container as the iommu. */
        ro_fd = open("/dev/vfio/vfio", O_RDONLY | O_CLOEXEC);
        if (ro_fd < 0)
                check(x, false, "wrong-kind.probe.read-only-container-as-iommu", "open /dev/vfio/vfio O_RDONLY: %m");
        else {
                r = coherency_probe(x->client, x->group_fd, ro_fd, -1, &d);
                coherency_decision_clear(&d);
                check_invalid_fd(x, "wrong-kind.probe.read-only-container-as-iommu", r, "iommu",
                                 "a read-only descriptor of a VFIO container");
                close(ro_fd);
        }
        check_no_register(x, "wrong-kind.trace");
}

/* ---- set-up ------------------------------------------------------------ */

/* The conf file's Mode= line, as the daemon names it: "FILE:N". */
static int find_mode_rule(const char *conf, char *buf, size_t size) {
        char line[256];
        unsigned n = 0;
        FILE *f = fopen(conf, "re");

        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f)) {
                n++;
                if (strncmp(line, "Mode=", 5) == 0) {
                        snprintf(buf, size, "%s:%u", conf, n);
                        fclose(f);
                        return 0;
                }
        }
        fclose(f);
        return -ENOENT;
}

static int setup_vmm(struct ctx *x) {
        char path[64];
        int type;

        x->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (x->kvm_fd < 0) {
                check(x, false, "setup.dev-kvm", "open /dev/kvm: %m");
                return -1;
        }
        x->vm_fd = ioctl(x->kvm_fd, KVM_CREATE_VM, 0);
        if (x->vm_fd < 0) {
                check(x, false, "setup.kvm-create-vm", "KVM_CREATE_VM: %m");
                return -1;
        }
        x->container_fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        snprintf(path, sizeof path, "/dev/vfio/%d", x->group);
        x->group_fd = open(path, O_RDWR | O_CLOEXEC);
        if (x->container_fd < 0 || x->group_fd < 0) {
                check(x, false, "setup.vfio-open", "/dev/vfio/vfio fd %d, %s fd %d: %m", x->container_fd, path, x->group_fd);
                return -1;
        }
        if (ioctl(x->group_fd, VFIO_GROUP_SET_CONTAINER, &x->container_fd) < 0) {
                check(x, false, "setup.vfio-set-container", "VFIO_GROUP_SET_CONTAINER: %m");
                return -1;
        }
        type = VFIO_TYPE1v2_IOMMU;
        if (ioctl(x->container_fd, VFIO_SET_IOMMU, type) < 0) {
                type = VFIO_TYPE1_IOMMU;
                if (ioctl(x->container_fd, VFIO_SET_IOMMU, type) < 0) {
                        check(x, false, "setup.vfio-set-iommu", "VFIO_SET_IOMMU: %m");
                        return -1;
                }
        }
        x->container_cc = ioctl(x->container_fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU);
        check(x, x->container_cc == (x->snoop ? 1 : 0), "setup.vmm",
              "VM, %s in a %s container, VFIO_CHECK_EXTENSION(VFIO_DMA_CC_IOMMU)=%d (want %d with snoop control %s)",
              path, type == VFIO_TYPE1v2_IOMMU ? "TYPE1v2" : "TYPE1", x->container_cc, x->snoop ? 1 : 0,
              x->snoop ? "on" : "off");
        return 0;
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

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* Bounded polling until a call on path is answered. */
static int wait_socket(const char *path, int pid, unsigned timeout_s) {
        uint64_t start = now_ms(), deadline = start + timeout_s * 1000u;
        const char *why = "timed out";
        int last = 0;

        for (;;) {
                struct coherency_client *c = NULL;
                struct coherency_info info;
                int r = coherency_connect(path, &c);

                if (r >= 0)
                        r = coherency_get_info(c, &info);
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
                (void) nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
        printf("vmm-client: %s does not answer (%s; last: %s)\n", path, why, strerror(-last));
        return 1;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 'S' },
                { "snoop", required_argument, NULL, 'n' },
                { "mode", required_argument, NULL, 'm' },
                { "conf", required_argument, NULL, 'c' },
                { "slot", required_argument, NULL, 's' },
                { "group", required_argument, NULL, 'g' },
                { "tracefs", required_argument, NULL, 't' },
                { "daemon-pid", required_argument, NULL, 'p' },
                { "wait-socket", required_argument, NULL, 'W' },
                { "timeout", required_argument, NULL, 'T' },
                {}
        };
        struct ctx x = {
                .group = -1,
                .tracefs = "/sys/kernel/tracing",
                .kvm_fd = -1,
                .vm_fd = -1,
                .container_fd = -1,
                .group_fd = -1,
        };
        const char *socket_path = NULL, *snoop = NULL, *conf = NULL, *pid = getenv("COH_DAEMON_PID");
        const char *wait_path = NULL;
        unsigned timeout_s = 10;
        int c, r, fds_before, fds_after, vms;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'S': socket_path = optarg; break;
                case 'n': snoop = optarg; break;
                case 'm': x.mode_name = optarg; break;
                case 'c': conf = optarg; break;
                case 's': x.slot = optarg; break;
                case 'g': x.group = atoi(optarg); break;
                case 't': x.tracefs = optarg; break;
                case 'p': pid = optarg; break;
                case 'W': wait_path = optarg; break;
                case 'T': timeout_s = (unsigned) atoi(optarg); break;
                default: return 2;
                }
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
        if (!socket_path || !x.mode_name || !conf || !x.slot || x.group < 0 || !pid || atoi(pid) <= 0 ||
            !(streq(snoop, "on") || streq(snoop, "off"))) {
                fprintf(stderr, "usage: vmm-client --socket PATH --snoop on|off --mode enable|automatic|force-disable\n"
                                "                  --conf FILE --slot SLOT --group N [--tracefs DIR] [--daemon-pid PID]\n");
                return 2;
        }
        x.snoop = streq(snoop, "on");
        x.daemon_pid = atoi(pid);
        r = find_mode_rule(conf, x.mode_rule, sizeof x.mode_rule);
        if (r < 0) {
                fprintf(stderr, "vmm-client: no Mode= line in %s: %s\n", conf, strerror(-r));
                return 2;
        }

        if (setup_vmm(&x) < 0)
                goto out;

        r = coherency_connect(socket_path, &x.client);
        if (r < 0) {
                check(&x, false, "connect", "%s: %s", socket_path, strerror(-r));
                goto out;
        }
        /* The baseline, once the daemon has accepted this connection. */
        r = sync_daemon(&x);
        fds_before = daemon_fds(&x, &vms);
        check(&x, r == 0 && fds_before > 0 && vms == 0, "daemon.baseline",
              "daemon pid %d: %d descriptor(s), %d of a KVM VM, %d grant(s)", x.daemon_pid, fds_before, vms, r);

        check_get_info(&x);
        check_probes(&x);
        check_request_grant(&x);
        check_wrong_kinds(&x);

        /* Nothing of ours stays in the daemon. */
        r = sync_daemon(&x);
        fds_after = daemon_fds(&x, &vms);
        check(&x, r == 0 && fds_after == fds_before && vms == 0, "daemon.no-leaked-descriptors",
              "%d descriptor(s) after, %d before, %d of a KVM VM, %d grant(s)", fds_after, fds_before, vms, r);

out:
        coherency_client_free(x.client);
        if (x.group_fd >= 0)
                close(x.group_fd);
        if (x.container_fd >= 0)
                close(x.container_fd);
        if (x.vm_fd >= 0)
                close(x.vm_fd);
        if (x.kvm_fd >= 0)
                close(x.kvm_fd);
        printf("vmm-client: %s snoop-control=%s: %u passed, %u failed\n", x.mode_name, snoop, x.passed, x.failed);
        return x.failed == 0 && x.passed > 0 ? 0 : 1;
}
