/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * coh-test-client: a scriptable VMM for the systemd tier (tests/systemd/driver).
 *
 * It keeps ONE connection to coherencyd for its whole life and reads commands,
 * one per line, from stdin; it answers each with one line on stdout, so a
 * shell coprocess can drive it and check, after the daemon was restarted,
 * killed or replaced, that the same process on the same connection still sees
 * its grant. Kernel objects are the simulated platform's memfds
 * (daemon/platform-sim.c): one VM per client, one VFIO group memfd per grant.
 *
 *   grant GROUP [coherent|noncoherent]
 *                  RequestGrant(vm, vfio-group:GROUP[, vfio-container:...])
 *                  -> "grant id=ID decision=D reason=R rule=FILE:LINE vmWbinvd=W"
 *   probe GROUP [coherent|noncoherent]
 *                  Probe(vfio-group:GROUP[, ioasCoherent=...])
 *                  -> "probe decision=D reason=R rule=FILE:LINE"
 *   list           ListGrants() on this connection -> "list n=N ids=ID,ID"
 *   release ID     ReleaseGrant(ID) -> "release ok"
 *   kvm            the simulated KVM's state in the VM memfd
 *                  -> "kvm owner=O attached=N noncoherent-dma=N"
 *   quiet          whether the connection is untouched: nothing to read and no
 *                  hang-up since the last reply -> "quiet yes" or "quiet no (...)"
 *   vmfd           -> "vmfd pid=PID fd=FD" (so a test can open /proc/PID/fd/FD
 *                  and read the VM's state after this client is gone)
 *   quit           exit 0
 * Failures answer "error r=ERRNO NAME: MESSAGE". EOF on stdin exits 0.
 */

#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coherency.h"

#define MAX_OBJECTS 64

static struct coherency_client *client;
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
        const char *msg = client ? coherency_client_error(client) : "";
        reply("error r=%d %s: %s", -r, what, msg[0] ? msg : strerror(-r));
}

static int sim_object(const char *what) {
        char name[128];
        snprintf(name, sizeof name, "coherencyd-sim:%s", what);
        int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        if (n_objects < MAX_OBJECTS)
                objects[n_objects++] = fd; /* the VMM keeps its files open, as a real one does */
        return fd;
}

static int ensure_vm(void) {
        if (vm >= 0)
                return 0;
        vm = sim_object("kvm-vm");
        return vm < 0 ? vm : 0;
}

static int group_object(const char *group) {
        char what[64];
        snprintf(what, sizeof what, "vfio-group:%s", group);
        return sim_object(what);
}

static void cmd_grant(const char *group, const char *ioas) {
        struct coherency_decision d;
        int iommu = -1, dev, r;

        r = ensure_vm();
        if (r < 0)
                return fail("memfd_create", r);
        dev = group_object(group);
        if (dev < 0)
                return fail("memfd_create", dev);
        if (ioas) {
                char what[64];
                snprintf(what, sizeof what, "vfio-container:%s", ioas);
                iommu = sim_object(what);
                if (iommu < 0)
                        return fail("memfd_create", iommu);
        }
        r = coherency_request_grant(client, vm, dev, iommu, &d);
        if (r < 0)
                return fail("RequestGrant", r);
        reply("grant id=%s decision=%s reason=%s rule=%s vmWbinvd=%s", d.grant[0] ? d.grant : "-", d.decision,
              d.reason, d.rule, d.vm_wbinvd);
        coherency_decision_clear(&d);
}

static void cmd_probe(const char *group, const char *ioas) {
        struct coherency_decision d;
        int dev = group_object(group), r;
        int ioas_coherent = !ioas ? -1 : strcmp(ioas, "coherent") == 0;

        if (dev < 0)
                return fail("memfd_create", dev);
        r = coherency_probe(client, dev, -1, ioas_coherent, &d);
        if (r < 0)
                return fail("Probe", r);
        reply("probe decision=%s reason=%s rule=%s", d.decision, d.reason, d.rule);
        coherency_decision_clear(&d);
}

static void cmd_list(void) {
        struct coherency_grant *g = NULL;
        char ids[1024] = "";
        size_t len = 0;
        int n = coherency_list_grants(client, &g);

        if (n < 0)
                return fail("ListGrants", n);
        for (int i = 0; i < n && len < sizeof ids - 1; i++) {
                int w = snprintf(ids + len, sizeof ids - len, "%s%s", i ? "," : "", g[i].grant);
                if (w < 0)
                        break;
                len += (size_t) w;
        }
        free(g);
        reply("list n=%d ids=%s", n, n ? ids : "-");
}

static void cmd_release(const char *id) {
        int r = coherency_release_grant(client, id);
        if (r < 0)
                return fail("ReleaseGrant", r);
        reply("release ok");
}

static void cmd_kvm(void) {
        char buf[8192], *line, *save = NULL;
        const char *owner = "none";
        long noncoherent = 0;
        unsigned attached = 0;

        if (vm < 0)
                return reply("kvm owner=none attached=0 noncoherent-dma=0");
        ssize_t n = pread(vm, buf, sizeof buf - 1, 0);
        if (n < 0)
                return fail("pread", -errno);
        buf[n] = 0;
        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                if (strncmp(line, "noncoherent-dma=", 16) == 0)
                        noncoherent = strtol(line + 16, NULL, 10);
                else if (strncmp(line, "attached=", 9) == 0)
                        attached++;
                else if (strncmp(line, "kvm-vfio=", 9) == 0)
                        owner = line + 9;
        reply("kvm owner=%s attached=%u noncoherent-dma=%ld", owner, attached, noncoherent);
}

static void cmd_quiet(void) {
        struct pollfd p = { .fd = coherency_client_fd(client), .events = POLLIN | POLLRDHUP };
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
                        cmd_release(a1);
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
        coherency_client_free(client);
        return 0;
}
