/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * coh-test-client: a scriptable VMM for the systemd tier (tests/systemd/driver).
 *
 * It keeps ONE connection to coherencyd for its whole life and reads commands,
 * one per line, from stdin; it answers each with one line on stdout, so a
 * shell coprocess can drive it and check, after the daemon was restarted,
 * killed or replaced, that the same process on the same connection still sees
 * its grant. Kernel objects are the simulated platform's memfds
 * (daemon/platform-sim.c): one VM per client, with its kvm-vfio device made by
 * libcoherency's helper (the simulated KVM), and VFIO containers.
 *
 * DEVICE is a PCI address, or the number of an IOMMU group of the demo tree
 * (demo/make-sim-sysfs), which names the device of that group (6 is
 * 0000:00:07.0).
 *
 *   grant DEVICE [coherent|noncoherent]
 *                  RequestGrant(vm, DEVICE, vfio-container:...); without an
 *                  IOAS the container is what the kernel's default would be
 *                  (coherent where the IOMMU can enforce it, which Probe says).
 *                  The group handed over is added to the VM's kvm-vfio device
 *                  as kvmAttach says, and held until released or closed.
 *                  -> "grant id=ID decision=D reason=R rule=FILE:LINE
 *                      vmWbinvd=W kvmAttach=add|skip|- group=yes|no"
 *                  (one line; id=- and group=no for a refusal)
 *   probe DEVICE [coherent|noncoherent]
 *                  Probe(DEVICE[, ioasCoherent=...])
 *                  -> "probe decision=D reason=R rule=FILE:LINE"
 *   list           ListGrants() on this connection
 *                  -> "list n=N ids=ID,ID states=S,S" (ids=- states=- when none)
 *   release ID     as a VMM lets go: detach the group from the VM, close it,
 *                  then ReleaseGrant(ID)
 *                  -> "release state=ended|ending vmWbinvd=allowed|noop"
 *   release-keep ID
 *                  ReleaseGrant(ID) while this client keeps the group open
 *                  and added to its VM (so the grant is ending until "close")
 *                  -> "release state=ended|ending vmWbinvd=allowed|noop"
 *   close ID       detach the group of grant ID from the VM and close this
 *                  client's copy (no call to the daemon)
 *                  -> "close ok detached=1|0" (0: it was not added, kvmAttach skip)
 *   kvm            the simulated KVM's state in the VM memfd, as this client's
 *                  libcoherency wrote it -> "kvm owner=O attached=N noncoherent-dma=N"
 *   quiet          whether the connection is untouched: nothing to read and no
 *                  hang-up since the last reply -> "quiet yes" or "quiet no (...)"
 *   vmfd           -> "vmfd pid=PID fd=FD" (so a test can open /proc/PID/fd/FD
 *                  and read the VM's state after this client is gone)
 *   quit           exit 0
 * Failures answer "error r=ERRNO NAME: MESSAGE". EOF on stdin exits 0.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libcoherency.h"
#include "sim-objects.h"

#define MAX_OBJECTS 64
#define MAX_GRANTS 64

static coherency_client *client;
static coherency_kvm_vfio *kvm_vfio;
static coherency_grant *grants[MAX_GRANTS]; /* each owns its group descriptor */
static size_t n_grants;
static int vm = -1;
static int objects[MAX_OBJECTS];
static size_t n_objects;

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
}

static void fail(const char *what, int r) {
        const char *msg = client ? coherency_client_get_error(client) : "";
        reply("error r=%d %s: %s", -r, what, msg[0] ? msg : strerror(-r));
}

static int sim_object(const char *what) {
        int fd = coh_sim_object(what);
        if (fd < 0)
                return fd;
        if (n_objects < MAX_OBJECTS)
                objects[n_objects++] = fd; /* the VMM keeps its files open, as a real one does */
        return fd;
}

static int ensure_vm(void) {
        if (vm >= 0)
                return 0;
        vm = sim_object("kvm-vm");
        if (vm < 0)
                return vm;
        return coherency_kvm_vfio_new(vm, -1, &kvm_vfio);
}

/* A PCI address as given, or the device of IOMMU group N of demo/make-sim-sysfs. */
static const char *device_address(const char *arg) {
        static const char *const slots[] = {
                [1] = "0000:00:02.0", [2] = "0000:00:03.0", [3] = "0000:00:04.0",
                [4] = "0000:00:05.0", [5] = "0000:00:06.0", [6] = "0000:00:07.0",
                [7] = "0000:00:08.0", [8] = "0000:00:09.0", [9] = "0000:00:0a.0",
        };
        char *end;
        unsigned long n;

        if (strchr(arg, ':'))
                return arg;
        n = strtoul(arg, &end, 10);
        if (*end || n >= sizeof slots / sizeof slots[0] || !slots[n])
                return arg; /* let the daemon say what is wrong with it */
        return slots[n];
}

static int container(const char *ioas) {
        char what[64];
        snprintf(what, sizeof what, "vfio-container:%s", ioas);
        return sim_object(what);
}

static void cmd_grant(const char *arg, const char *ioas) {
        const char *device = device_address(arg);
        coherency_grant *g = NULL;
        int iommu, r;

        r = ensure_vm();
        if (r < 0)
                return fail("ensure_vm", r);
        if (!ioas) {
                /* The kernel's default IOAS: coherent where the IOMMU can enforce it. */
                coherency_decision *d = NULL;
                r = coherency_probe(client, device, -1, -1, &d);
                if (r < 0)
                        return fail("Probe", r);
                ioas = coherency_device_get_ioas_coherent(coherency_facts_get_device(coherency_decision_get_facts(d))) ?
                        "coherent" : "noncoherent";
                coherency_decision_free(d);
        }
        iommu = container(ioas);
        if (iommu < 0)
                return fail("memfd_create", iommu);
        if (n_grants >= MAX_GRANTS)
                return fail("RequestGrant", -ENOBUFS);
        r = coherency_request_grant(client, vm, device, iommu, &g);
        if (r < 0)
                return fail("RequestGrant", r);
        if (coherency_grant_get_decision(g) != COHERENCY_DECISION_REFUSED) {
                r = coherency_kvm_vfio_attach(kvm_vfio, g);
                if (r < 0) {
                        coherency_grant_free(g);
                        return fail("kvm-vfio attach", r);
                }
        }
        reply("grant id=%s decision=%s reason=%s rule=%s vmWbinvd=%s kvmAttach=%s group=%s",
              coherency_grant_get_id(g) ?: "-",
              coherency_decision_kind_to_string(coherency_grant_get_decision(g)), coherency_grant_get_reason(g),
              coherency_grant_get_rule(g) ?: "-", coherency_grant_get_vm_wbinvd(g) ?: "-",
              coherency_kvm_attach_to_string(coherency_grant_get_kvm_attach(g)) ?: "-",
              coherency_grant_get_group_fd(g) >= 0 ? "yes" : "no");
        if (coherency_grant_get_id(g))
                grants[n_grants++] = g;
        else
                coherency_grant_free(g);
}

static void cmd_probe(const char *arg, const char *ioas) {
        coherency_decision *d = NULL;
        int ioas_coherent = !ioas ? -1 : strcmp(ioas, "coherent") == 0;
        int r;

        r = coherency_probe(client, device_address(arg), -1, ioas_coherent, &d);
        if (r < 0)
                return fail("Probe", r);
        reply("probe decision=%s reason=%s rule=%s",
              coherency_decision_kind_to_string(coherency_decision_get_decision(d)), coherency_decision_get_reason(d),
              coherency_decision_get_rule(d) ?: "-");
        coherency_decision_free(d);
}

static void cmd_list(void) {
        coherency_grant_list *l = NULL;
        char ids[1024] = "", states[1024] = "";
        size_t len = 0, slen = 0;
        int n = coherency_list_grants(client, &l);

        if (n < 0)
                return fail("ListGrants", n);
        for (int i = 0; i < n && len < sizeof ids - 1 && slen < sizeof states - 1; i++) {
                const coherency_grant_info *g = coherency_grant_list_get(l, (size_t) i);
                const char *state = coherency_grant_info_get_state_string(g);
                int w = snprintf(ids + len, sizeof ids - len, "%s%s", i ? "," : "", coherency_grant_info_get_id(g));
                if (w < 0)
                        break;
                len += (size_t) w;
                w = snprintf(states + slen, sizeof states - slen, "%s%s", i ? "," : "", state ? state : "?");
                if (w < 0)
                        break;
                slen += (size_t) w;
        }
        coherency_grant_list_free(l);
        reply("list n=%d ids=%s states=%s", n, n ? ids : "-", n ? states : "-");
}

static coherency_grant **find_grant(const char *id) {
        for (size_t i = 0; i < n_grants; i++)
                if (strcmp(coherency_grant_get_id(grants[i]), id) == 0)
                        return &grants[i];
        return NULL;
}

/* Detaches the grant's group from the VM and closes this client's copy: 1 when
 * it was added (and is now deleted), 0 when it was not (skip), -ENOENT when
 * this client holds no group for that id. */
static int close_group(const char *id) {
        coherency_grant **g = find_grant(id);
        int r;

        if (!g)
                return -ENOENT;
        r = coherency_kvm_vfio_detach(kvm_vfio, *g);
        coherency_grant_free(*g);
        *g = grants[--n_grants];
        return r < 0 ? r : r > 0;
}

static void cmd_close(const char *id) {
        int r = close_group(id);
        if (r == -ENOENT)
                return reply("error r=%d close: this client holds no group for grant %s", ENOENT, id);
        if (r < 0)
                return reply("error r=%d close: kvm-vfio detach: %s", -r, strerror(-r));
        reply("close ok detached=%d", r);
}

/* keep: release while this client still holds the group (the grant is then ending). */
static void cmd_release(const char *id, bool keep) {
        coherency_grant_state state;
        bool vm_wbinvd;
        int r;

        /* As a VMM lets go: detach, close the group, then release. */
        if (!keep)
                (void) close_group(id);
        r = coherency_release_grant(client, id, &state, &vm_wbinvd);
        if (r < 0)
                return fail("ReleaseGrant", r);
        reply("release state=%s vmWbinvd=%s", coherency_grant_state_to_string(state) ?: "?",
              vm_wbinvd ? "allowed" : "noop");
}

static void cmd_kvm(void) {
        struct coh_sim_vm_state st;
        if (vm < 0)
                return reply("kvm owner=none attached=0 noncoherent-dma=0");
        int r = coh_sim_vm_read(vm, &st);
        if (r < 0)
                return fail("pread", r);
        reply("kvm owner=%s attached=%u noncoherent-dma=%ld", st.owner[0] ? st.owner : "none", st.attached,
              st.noncoherent_dma < 0 ? 0 : st.noncoherent_dma);
}

static void cmd_quiet(void) {
        struct pollfd p = { .fd = coherency_client_get_fd(client), .events = POLLIN | POLLRDHUP };
        int r = poll(&p, 1, 0);
        if (r < 0)
                return fail("poll", -errno);
        if (r == 0)
                return reply("quiet yes");
        reply("quiet no (revents 0x%x%s%s)", (unsigned) p.revents, p.revents & (POLLHUP | POLLRDHUP) ? ", hang-up" : "",
              p.revents & POLLIN ? ", readable" : "");
}

int main(int argc, char **argv) {
        char line[512];
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        r = coherency_connect(argc > 1 ? argv[1] : NULL, &client);
        if (r < 0) {
                reply("error r=%d connect: %s", -r, strerror(-r));
                return 1;
        }
        reply("connected pid=%d", (int) getpid());

        while (fgets(line, sizeof line, stdin)) {
                char *save = NULL;
                char *cmd = strtok_r(line, " \t\n", &save);
                char *a1 = strtok_r(NULL, " \t\n", &save);
                char *a2 = strtok_r(NULL, " \t\n", &save);

                if (!cmd)
                        continue;
                if (strcmp(cmd, "grant") == 0 && a1)
                        cmd_grant(a1, a2);
                else if (strcmp(cmd, "probe") == 0 && a1)
                        cmd_probe(a1, a2);
                else if (strcmp(cmd, "list") == 0)
                        cmd_list();
                else if (strcmp(cmd, "release") == 0 && a1)
                        cmd_release(a1, false);
                else if (strcmp(cmd, "release-keep") == 0 && a1)
                        cmd_release(a1, true);
                else if (strcmp(cmd, "close") == 0 && a1)
                        cmd_close(a1);
                else if (strcmp(cmd, "kvm") == 0)
                        cmd_kvm();
                else if (strcmp(cmd, "quiet") == 0)
                        cmd_quiet();
                else if (strcmp(cmd, "vmfd") == 0)
                        reply("vmfd pid=%d fd=%d", (int) getpid(), vm);
                else if (strcmp(cmd, "quit") == 0)
                        break;
                else
                        reply("error r=%d usage: unknown command '%s'", EINVAL, cmd);
        }
        coherency_kvm_vfio_free(kvm_vfio);
        for (size_t i = 0; i < n_grants; i++)
                coherency_grant_free(grants[i]);
        coherency_client_free(client);
        return 0;
}
