/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * sample-vmm: what a VMM does with libcoherency, on coherencyd's simulated
 * platform (coherencyd --platform=sim:DIR, DIR built by demo/make-sim-sysfs,
 * policy from demo/config). It walks through the six rows of the decision
 * table, then a multi-device group, then lists and releases grants.
 *
 * The kernel objects are memfds whose names the simulated platform
 * recognises; a real VMM passes its /dev/kvm VM fd, /dev/vfio/N group (or
 * device cdev) and container or iommufd instead, and the calls are the same.
 * The simulated KVM writes its state into the VM memfd, so after each step we
 * read it back to show what "KVM" did.
 */

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coherency.h"

struct vmm {
        struct coherency_client *client;
        int vm;                 /* this VMM's VM */
        unsigned unexpected;    /* outcomes that differ from what demo/config should give */
};

/* A simulated kernel object: "kvm-vm", "vfio-group:3", "vfio-container:coherent", ... */
static int sim_object(const char *what) {
        char name[128];
        int fd;

        snprintf(name, sizeof(name), "coherencyd-sim:%s", what);
        fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                fprintf(stderr, "sample-vmm: memfd_create(%s): %m\n", name);
        return fd;
}

/* What the simulated KVM says about the VM: its "noncoherent-dma=N" count and attached files. */
static void show_kvm(int vm) {
        char buf[4096], *line, *save = NULL;
        long noncoherent = -1;
        unsigned attached = 0;
        const char *owner = NULL;
        ssize_t n;

        n = pread(vm, buf, sizeof(buf) - 1, 0);
        if (n < 0) {
                printf("  simulated KVM: cannot read the VM's state: %m\n");
                return;
        }
        buf[n] = '\0';

        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                if (strncmp(line, "noncoherent-dma=", 16) == 0)
                        noncoherent = strtol(line + 16, NULL, 10);
                else if (strncmp(line, "attached=", 9) == 0)
                        attached++;
                else if (strncmp(line, "kvm-vfio=", 9) == 0)
                        owner = line + 9;

        if (!owner) {
                printf("  simulated KVM: no kvm-vfio device; WBINVD is a no-op\n");
                return;
        }
        printf("  simulated KVM: kvm-vfio device of %s, %u file%s attached, noncoherent-dma=%ld (WBINVD %s)\n",
               owner, attached, attached == 1 ? "" : "s", noncoherent < 0 ? 0 : noncoherent,
               noncoherent > 0 ? "emulated" : "a no-op");
}

static void show_facts(const struct coherency_device_facts *f, const char *indent) {
        printf("%s%s %s:%s class %s, %s behind %s (IOMMU %s), group %d, No-Snoop %s",
               indent, f->slot, f->vendor, f->device, f->class_, f->driver[0] ? f->driver : "no driver",
               f->iommu, f->iommu_enforces ? "can enforce coherency" : "cannot enforce coherency",
               f->iommu_group, f->no_snoop);
        if (f->no_snoop_rule[0])
                printf(" (%s)", f->no_snoop_rule);
        if (f->mode[0])
                printf(", mode %s (%s)", f->mode, f->mode_rule);
        printf(", IOAS %s\n", f->ioas_coherent ? "coherent" : "not coherent");
}

static void show_decision(const struct coherency_decision *d) {
        printf("  decision: %s, reason: %s, rule: %s", d->decision, d->reason, d->rule);
        /* Probe acts on nothing, so it has neither a grant nor a WBINVD state to report. */
        if (d->vm_wbinvd[0])
                printf(", vmWbinvd: %s, grant: %s", d->vm_wbinvd, d->grant[0] ? d->grant : "none");
        printf("\n");

        if (d->n_devices > 1) {
                printf("  facts, deciding device:\n");
                show_facts(&d->facts, "    ");
                printf("  facts, every device of the group:\n");
                for (size_t i = 0; i < d->n_devices; i++)
                        show_facts(d->devices + i, "    ");
        } else
                show_facts(&d->facts, "  facts: ");
}

static void check(struct vmm *v, const struct coherency_decision *d, const char *decision, const char *reason) {
        if (strcmp(d->decision, decision) == 0 && strcmp(d->reason, reason) == 0)
                return;
        printf("  UNEXPECTED: demo/config should give %s (%s)\n", decision, reason);
        v->unexpected++;
}

static int call_failed(struct vmm *v, const char *call, int r) {
        fprintf(stderr, "sample-vmm: %s failed: %s\n", call,
                coherency_client_error(v->client)[0] ? coherency_client_error(v->client) : strerror(-r));
        return r;
}

/*
 * One RequestGrant, shown. ret_grant (may be NULL) receives the grant id, so
 * the VMM can release it later.
 */
static int request(struct vmm *v, const char *heading, const char *call, int device, int iommu,
                   const char *decision, const char *reason, char ret_grant[64]) {
        struct coherency_decision d;
        int r;

        printf("\n%s\n  %s\n", heading, call);

        r = coherency_request_grant(v->client, v->vm, device, iommu, &d);
        if (r < 0)
                return call_failed(v, call, r);

        show_decision(&d);
        check(v, &d, decision, reason);
        /* A refusal is an answer, not an error: a real VMM would now not start the device. */
        if (d.verdict == COHERENCY_REFUSED)
                printf("  the VMM must not start this device (or must retry with a coherent IOAS)\n");
        if (ret_grant)
                memcpy(ret_grant, d.grant, sizeof(d.grant));
        coherency_decision_clear(&d);

        show_kvm(v->vm);
        return 0;
}

/* The event-loop form: what a VMM with a main loop does instead of blocking. */
static int request_from_event_loop(struct vmm *v, int device, const char *decision, const char *reason) {
        struct coherency_decision d;
        struct pollfd p = {
                .fd = coherency_client_fd(v->client),
                .events = POLLIN,
        };
        const char *call = "RequestGrant(vm, vfio-group:6)  [_send, poll, _finish]";
        int r;

        printf("\ngroup 6: a GPU and its audio function share an IOMMU group; the least coherent device decides\n"
               "  %s\n", call);

        r = coherency_request_grant_send(v->client, v->vm, device, -1);
        if (r < 0)
                return call_failed(v, call, r);

        for (;;) {
                r = coherency_request_grant_finish(v->client, &d);
                if (r != -EAGAIN)
                        break;
                /* A real VMM returns to its main loop here; we have nothing else to do. */
                if (poll(&p, 1, -1) < 0 && errno != EINTR)
                        return call_failed(v, "poll", -errno);
        }
        if (r < 0)
                return call_failed(v, call, r);

        show_decision(&d);
        check(v, &d, decision, reason);
        coherency_decision_clear(&d);
        show_kvm(v->vm);
        return 0;
}

static int probe(struct vmm *v, const char *call, int device, int ioas_coherent, const char *decision,
                 const char *reason) {
        struct coherency_decision d;
        int r;

        printf("  %s\n", call);
        r = coherency_probe(v->client, device, -1, ioas_coherent, &d);
        if (r < 0)
                return call_failed(v, call, r);

        show_decision(&d);
        check(v, &d, decision, reason);
        coherency_decision_clear(&d);
        show_kvm(v->vm);
        return 0;
}

static int list_grants(struct vmm *v) {
        struct coherency_grant *grants = NULL;
        int n, width = 5;

        printf("\nListGrants: what this connection holds\n");
        n = coherency_list_grants(v->client, &grants);
        if (n < 0)
                return call_failed(v, "ListGrants()", n);

        /* Grant ids are opaque strings: size the column to them. */
        for (int i = 0; i < n; i++)
                if ((int) strlen(grants[i].grant) > width)
                        width = (int) strlen(grants[i].grant);

        printf("  %-*s %-14s %-11s %-25s %s\n", width, "GRANT", "SLOT", "DECISION", "REASON", "VM WBINVD");
        for (int i = 0; i < n; i++)
                printf("  %-*s %-14s %-11s %-25s %s\n", width, grants[i].grant, grants[i].slot,
                       grants[i].decision, grants[i].reason, grants[i].vm_wbinvd);
        free(grants);
        return 0;
}

static int release(struct vmm *v, const char *grant, const char *what) {
        char vm_wbinvd[16], call[128];
        int r;

        snprintf(call, sizeof(call), "ReleaseGrant(\"%s\")", grant);
        printf("\nReleaseGrant: the VMM is done with %s\n  %s\n", what, call);

        r = coherency_release_grant_vm_wbinvd(v->client, grant, vm_wbinvd);
        if (r < 0)
                return call_failed(v, call, r);

        printf("  vmWbinvd: %s%s\n", vm_wbinvd,
               strcmp(vm_wbinvd, "emulated") == 0 ? " (other granted files of the VM are still attached)" : "");
        show_kvm(v->vm);
        return 0;
}

/* A VMM that created its own kvm-vfio device: coherencyd cannot attach anything for it. */
static int own_kvm_vfio(struct vmm *v, int device, int iommu) {
        static const char state[] = "kvm-vfio=vmm\n";
        struct coherency_decision d;
        const char *call = "RequestGrant(other vm, vfio-group:3, vfio-container:noncoherent)";
        int vm, r;

        printf("\nanother VM, whose VMM created the kvm-vfio device itself (it must leave that to coherencyd)\n"
               "  %s\n", call);

        vm = sim_object("kvm-vm");
        if (vm < 0)
                return -errno;
        if (pwrite(vm, state, sizeof(state) - 1, 0) != (ssize_t) (sizeof(state) - 1)) {
                r = -errno;
                fprintf(stderr, "sample-vmm: writing the simulated VM: %m\n");
                goto finish;
        }

        r = coherency_request_grant(v->client, vm, device, iommu, &d);
        if (r >= 0) {
                show_decision(&d);
                coherency_decision_clear(&d);
                printf("  UNEXPECTED: this should have failed with io.coherencyd.Broker.VmHasKvmVfioDevice\n");
                v->unexpected++;
                r = 0;
        } else if (r == -EBUSY &&
                   strcmp(coherency_client_error_name(v->client), "io.coherencyd.Broker.VmHasKvmVfioDevice") == 0) {
                printf("  error, as it should be: %s\n", coherency_client_error(v->client));
                r = 0;
        } else
                r = call_failed(v, call, r);

finish:
        close(vm);
        return r;
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

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help",   no_argument,       NULL, 'h' },
                { "socket", required_argument, NULL, 's' },
                {}
        };
        enum { GROUP1, GROUP2, GROUP3, GROUP4, GROUP5, GROUP6, COHERENT, NONCOHERENT, _OBJ_MAX };
        static const char *const names[_OBJ_MAX] = {
                "vfio-group:1", "vfio-group:2", "vfio-group:3", "vfio-group:4", "vfio-group:5", "vfio-group:6",
                "vfio-container:coherent", "vfio-container:noncoherent",
        };
        int obj[_OBJ_MAX];
        struct vmm v = {
                .vm = -1,
        };
        const char *socket_path = NULL;
        char grant3[64] = "";
        int opt, r;

        for (size_t i = 0; i < _OBJ_MAX; i++)
                obj[i] = -1;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 's':
                        socket_path = optarg;
                        break;
                default:
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "sample-vmm: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }

        r = coherency_connect(socket_path, &v.client);
        if (r < 0) {
                fprintf(stderr, "sample-vmm: cannot connect to coherencyd (%s): %s\n",
                        socket_path ?: getenv("COHERENCYD_SOCKET") ?: COHERENCY_DEFAULT_SOCKET, strerror(-r));
                return EXIT_FAILURE;
        }

        v.vm = sim_object("kvm-vm");
        if (v.vm < 0)
                goto fail;
        for (size_t i = 0; i < _OBJ_MAX; i++) {
                obj[i] = sim_object(names[i]);
                if (obj[i] < 0)
                        goto fail;
        }

        printf("A VM with no VFIO files yet\n");
        show_kvm(v.vm);

        if (request(&v, "row 1: a NIC whose No-Snoop enable is hard-wired off (site policy), in a coherent IOAS",
                    "RequestGrant(vm, vfio-group:1, vfio-container:coherent)",
                    obj[GROUP1], obj[COHERENT], "not-needed", "device-coherent-only", NULL) < 0)
                goto fail;

        if (request(&v, "row 2: a GPU behind an IOMMU that enforces coherency, in the kernel's default IOAS",
                    "RequestGrant(vm, vfio-group:2)",
                    obj[GROUP2], -1, "not-needed", "ioas-enforces-coherency", NULL) < 0)
                goto fail;

        if (request(&v, "row 3: a GPU the site policy enables, in a non-coherent IOAS",
                    "RequestGrant(vm, vfio-group:3, vfio-container:noncoherent)",
                    obj[GROUP3], obj[NONCOHERENT], "granted", "policy-enable", grant3) < 0)
                goto fail;

        if (request(&v, "row 4: a device behind an IOMMU that cannot enforce coherency (dmar1)",
                    "RequestGrant(vm, vfio-group:4)",
                    obj[GROUP4], -1, "granted", "platform-cannot-enforce", NULL) < 0)
                goto fail;

        /* Row 5 is where Probe earns its keep: ask before creating the IOAS,
         * so that an IOAS the policy would refuse is never created. */
        printf("\nrow 5: the GPU of row 2 in a non-coherent IOAS, in automatic mode\n"
               "  first ask, before creating a non-coherent IOAS for it:\n");
        if (probe(&v, "Probe(vfio-group:2, ioasCoherent=false)", obj[GROUP2], 0,
                  "refused", "coherent-ioas-required") < 0)
                goto fail;
        if (request(&v, "row 5, continued: a VMM that created the non-coherent IOAS anyway",
                    "RequestGrant(vm, vfio-group:2, vfio-container:noncoherent)",
                    obj[GROUP2], obj[NONCOHERENT], "refused", "coherent-ioas-required", NULL) < 0)
                goto fail;

        if (request(&v, "row 6: an NVMe drive the site policy force-disables, in a non-coherent IOAS",
                    "RequestGrant(vm, vfio-group:5, vfio-container:noncoherent)",
                    obj[GROUP5], obj[NONCOHERENT], "refused", "policy-force-disable", NULL) < 0)
                goto fail;

        if (request_from_event_loop(&v, obj[GROUP6], "granted", "platform-cannot-enforce") < 0)
                goto fail;

        if (list_grants(&v) < 0)
                goto fail;

        if (!grant3[0]) {
                fprintf(stderr, "sample-vmm: row 3 got no grant id, nothing to release\n");
                goto fail;
        }
        if (release(&v, grant3, "the GPU of row 3") < 0)
                goto fail;

        if (own_kvm_vfio(&v, obj[GROUP3], obj[NONCOHERENT]) < 0)
                goto fail;

        printf("\nexit without releasing the other grants: closing the connection ends them,\n"
               "and coherencyd detaches the files and lets go of the VM\n");
        r = v.unexpected > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        if (v.unexpected > 0)
                fprintf(stderr, "sample-vmm: %u outcome%s differ from what demo/config gives\n",
                        v.unexpected, v.unexpected == 1 ? "" : "s");
        goto finish;

fail:
        r = EXIT_FAILURE;
finish:
        coherency_client_free(v.client);
        for (size_t i = 0; i < _OBJ_MAX; i++)
                if (obj[i] >= 0)
                        close(obj[i]);
        if (v.vm >= 0)
                close(v.vm);
        return r;
}
