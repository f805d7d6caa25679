/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The two shipped clients against the real daemon: libcoherency as a VMM
 * links it (blocking calls, the _send/_finish pairs in a poll loop, the
 * handed-over group descriptor, the kvm-vfio helper as the simulated KVM,
 * the watch connection, errno values, timeouts) and coherencyctl as an
 * operator runs it (output and exit status).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "libcoherency.h"

#define GRANTED_DEVICE "0000:00:05.0"   /* IOMMU group 4, dmar1: granted (platform-cannot-enforce) */
#define GROUP6_DEVICE "0000:00:07.0"    /* IOMMU group 6, dmar1, with 0000:00:07.1 */
#define NVME_DEVICE "0000:00:06.0"      /* refused (policy-force-disable) */
#define SKIP_DEVICE "0000:00:08.0"      /* not-needed (device-coherent-only), kvmAttach skip */
#define DENIED_DEVICE "0000:00:0a.0"    /* refused (access-denied) */

static coherency_client *client_connect(const struct harness *h) {
        coherency_client *c;
        int r = coherency_connect(h->socket, &c);
        if (r < 0)
                fail_msg("coherency_connect(%s): %s", h->socket, strerror(-r));
        return c;
}

/* "<config>/coherencyd.conf:N" for the line of the running config that starts with key. */
static const char *conf_rule(const struct harness *h, const char *key, char *buf, size_t size) {
        char path[PATH_MAX], line[512];
        unsigned n = 0;

        snprintf(path, sizeof path, "%s/coherencyd.conf", h->config);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        while (fgets(line, sizeof line, f)) {
                n++;
                if (strncmp(line, key, strlen(key)) == 0) {
                        fclose(f);
                        return harness_rule(h, "coherencyd.conf", n, buf, size);
                }
        }
        fclose(f);
        fail_msg("no %s in %s", key, path);
        return NULL;
}

static void expect_error(coherency_client *c, int r, int expected_errno, const char *name) {
        if (r != -expected_errno)
                fail_msg("expected -%s, got %d (%s)", strerrorname_np(expected_errno), r, coherency_client_get_error(c));
        assert_string_equal(coherency_client_get_error_name(c), name);
        assert_string_not_equal(coherency_client_get_error(c), "");
}

/* A grant that must hand a group over. */
static coherency_grant *grant(coherency_client *c, int vm, const char *device, const char *container) {
        coherency_grant *g = NULL;
        int iommu = sim_object("vfio-container:%s", container);
        int r = coherency_request_grant(c, vm, device, iommu, &g);
        close(iommu);
        if (r < 0)
                fail_msg("RequestGrant(%s, %s): %s", device, container, coherency_client_get_error(c));
        assert_true(coherency_grant_get_group_fd(g) >= 0);
        return g;
}

/* ---- libcoherency -------------------------------------------------------- */

static void test_libcoherency_info_probe_grant_attach_list_release(void **state) {
        struct harness *h = *state;
        char rule[PATH_MAX + 16];

        harness_start(h);
        coherency_client *c = client_connect(h);

        coherency_info *info = NULL;
        assert_int_equal(coherency_get_info(c, &info), 0);
        assert_string_equal(coherency_info_get_backend(info), "sim");
        assert_string_equal(coherency_info_get_mode(info), "automatic");
        assert_string_equal(coherency_info_get_mode_rule(info), conf_rule(h, "Mode=", rule, sizeof rule));
        assert_string_equal(coherency_info_get_access(info), "allow");
        assert_int_equal(coherency_info_get_max_grants_per_connection(info), 16);
        assert_int_equal(coherency_info_get_n_iommus(info), 2);
        assert_null(coherency_info_get_iommu_name(info, 2));
        assert_int_equal(coherency_info_get_iommu_enforces(info, 2), -ERANGE);
        coherency_info_free(info);

        /* Probe: no side effects, no file. */
        coherency_decision *d = NULL;
        assert_int_equal(coherency_probe(c, GRANTED_DEVICE, -1, -1, &d), 0);
        assert_int_equal(coherency_decision_get_decision(d), COHERENCY_DECISION_GRANTED);
        assert_string_equal(coherency_decision_get_reason(d), "platform-cannot-enforce");
        assert_int_equal(coherency_decision_get_kvm_attach(d), COHERENCY_KVM_ATTACH_ADD);
        const coherency_facts *f = coherency_decision_get_facts(d);
        assert_string_equal(coherency_facts_get_file(f), "vfio-group:4");
        assert_int_equal(coherency_facts_get_n_devices(f), 1);
        assert_null(coherency_facts_get_device_by_index(f, 1));
        assert_string_equal(coherency_device_get_slot(coherency_facts_get_device(f)), GRANTED_DEVICE);
        assert_int_equal(coherency_device_get_iommu_group(coherency_facts_get_device(f)), 4);
        assert_false(coherency_device_get_iommu_enforces(coherency_facts_get_device(f)));
        /* The deciding device has the policy values of its entry in devices. */
        assert_string_equal(coherency_device_get_mode(coherency_facts_get_device(f)), "automatic");
        coherency_decision_free(d);

        /* RequestGrant hands the group over, close-on-exec, owned by the grant. */
        int vm = sim_object("kvm-vm");
        coherency_grant *g = grant(c, vm, GRANTED_DEVICE, "noncoherent");
        assert_int_equal(coherency_grant_get_decision(g), COHERENCY_DECISION_GRANTED);
        assert_string_equal(coherency_grant_get_reason(g), "platform-cannot-enforce");
        assert_string_equal(coherency_grant_get_rule(g), rule);
        assert_string_equal(coherency_grant_get_wbinvd(g), "allowed");
        assert_string_equal(coherency_grant_get_vm_wbinvd(g), "allowed");
        assert_string_equal(coherency_grant_get_device(g), GRANTED_DEVICE);
        assert_int_equal(coherency_grant_get_kvm_attach(g), COHERENCY_KVM_ATTACH_ADD);
        assert_non_null(coherency_grant_get_id(g));
        assert_int_equal(fcntl(coherency_grant_get_group_fd(g), F_GETFD), FD_CLOEXEC);
        char id[128];
        snprintf(id, sizeof id, "%s", coherency_grant_get_id(g));

        /* The VMM's kvm-vfio device, the simulated KVM. */
        coherency_kvm_vfio *k = NULL;
        assert_int_equal(coherency_kvm_vfio_new(vm, -1, &k), 0);
        assert_true(coherency_kvm_vfio_is_simulated(k));
        assert_true(sim_vm_has_line(vm, "kvm-vfio=vmm"));
        assert_int_equal(sim_vm_noncoherent_dma(vm), 0);
        assert_int_equal(coherency_kvm_vfio_attach(k, g), 1);
        assert_true(sim_vm_has_line(vm, "attached=vfio-group:4 noncoherent"));
        assert_int_equal(sim_vm_noncoherent_dma(vm), 1);
        assert_int_equal(coherency_kvm_vfio_attach(k, g), -EEXIST);
        assert_int_equal(sim_vm_count_lines(vm, "attached="), 1);

        coherency_grant_list *l = NULL;
        assert_int_equal(coherency_list_grants(c, &l), 1);
        const coherency_grant_info *gi = coherency_grant_list_get(l, 0);
        assert_string_equal(coherency_grant_info_get_id(gi), id);
        assert_string_equal(coherency_grant_info_get_device(gi), GRANTED_DEVICE);
        assert_string_equal(coherency_grant_info_get_file(gi), "vfio-group:4");
        assert_int_equal(coherency_grant_info_get_state(gi), COHERENCY_GRANT_ACTIVE);
        assert_int_equal(coherency_grant_info_get_decision(gi), COHERENCY_DECISION_GRANTED);
        assert_int_equal(coherency_grant_info_get_peer_pid(gi), getpid());
        assert_int_equal(coherency_grant_info_get_peer_uid(gi), 0);
        assert_null(coherency_grant_info_get_end(gi));
        assert_null(coherency_grant_list_get(l, 1));
        coherency_grant_list_free(l);

        /* A refusal is a decision, not an error, and hands nothing over. */
        coherency_grant *refused = NULL;
        int container = sim_object("vfio-container:noncoherent");
        assert_int_equal(coherency_request_grant(c, vm, NVME_DEVICE, container, &refused), 0);
        close(container);
        assert_int_equal(coherency_grant_get_decision(refused), COHERENCY_DECISION_REFUSED);
        assert_string_equal(coherency_grant_get_reason(refused), "policy-force-disable");
        assert_null(coherency_grant_get_id(refused));
        assert_int_equal(coherency_grant_get_group_fd(refused), -ENODATA);
        assert_int_equal(coherency_grant_take_group_fd(refused), -ENODATA);
        assert_int_equal(coherency_grant_get_kvm_attach(refused), COHERENCY_KVM_ATTACH_NONE);
        assert_string_equal(coherency_grant_get_vm_wbinvd(refused), "allowed"); /* the VM's other file still is */
        assert_int_equal(coherency_kvm_vfio_attach(k, refused), -ENODATA);
        assert_int_equal(coherency_kvm_vfio_detach(k, refused), 0);
        coherency_grant_free(refused);

        /* Let go as a VMM should: detach, close every copy, release: the group is free at once. */
        assert_int_equal(coherency_kvm_vfio_detach(k, g), 1);
        assert_int_equal(coherency_kvm_vfio_detach(k, g), -ENOENT);
        assert_false(sim_vm_has_line(vm, "attached=vfio-group:4 noncoherent"));
        assert_int_equal(sim_vm_noncoherent_dma(vm), 0);
        int group = coherency_grant_take_group_fd(g);
        assert_true(group >= 0);
        assert_int_equal(coherency_grant_get_group_fd(g), -ENODATA);
        close(group);
        coherency_grant_free(g);

        coherency_grant_state st = COHERENCY_GRANT_STATE_OTHER;
        bool vm_wbinvd = true;
        assert_int_equal(coherency_release_grant(c, id, &st, &vm_wbinvd), 0);
        assert_int_equal(st, COHERENCY_GRANT_ENDED);
        assert_false(vm_wbinvd);
        assert_int_equal(coherency_list_grants(c, &l), 0);
        coherency_grant_list_free(l);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_GRANT_END, "COHERENCYD_END=release", NULL));

        /* ... and can be asked for again. */
        g = grant(c, vm, GRANTED_DEVICE, "noncoherent");
        coherency_grant_free(g);

        coherency_kvm_vfio_free(k);
        coherency_client_free(c);
        close(vm);
}

static void test_libcoherency_kvm_vfio_follows_kvm_attach_and_close_drops_files(void **state) {
        struct harness *h = *state;

        harness_start(h);
        coherency_client *c = client_connect(h);
        int vm = sim_object("kvm-vm");
        coherency_kvm_vfio *k = NULL;
        assert_int_equal(coherency_kvm_vfio_new(vm, -1, &k), 0);
        assert_true(coherency_kvm_vfio_get_fd(k) >= 0);

        /* Row 1b: handed over with the advice not to add it. */
        coherency_grant *skip = grant(c, vm, SKIP_DEVICE, "noncoherent");
        assert_int_equal(coherency_grant_get_decision(skip), COHERENCY_DECISION_NOT_NEEDED);
        assert_string_equal(coherency_grant_get_reason(skip), "device-coherent-only");
        assert_int_equal(coherency_grant_get_kvm_attach(skip), COHERENCY_KVM_ATTACH_SKIP);
        assert_string_equal(coherency_grant_get_wbinvd(skip), "allowed");
        assert_int_equal(coherency_kvm_vfio_attach(k, skip), 0);
        assert_int_equal(sim_vm_count_lines(vm, "attached="), 0);
        assert_int_equal(coherency_kvm_vfio_detach(k, skip), 0);

        /* A coherent file is added as coherent; a multi-device group's file once. */
        coherency_grant *coherent = grant(c, vm, "0000:00:03.0", "coherent");
        assert_string_equal(coherency_grant_get_reason(coherent), "ioas-enforces-coherency");
        assert_string_equal(coherency_grant_get_wbinvd(coherent), "none");
        assert_int_equal(coherency_kvm_vfio_attach(k, coherent), 1);
        assert_true(sim_vm_has_line(vm, "attached=vfio-group:2 coherent"));
        coherency_grant *pair = grant(c, vm, GROUP6_DEVICE, "noncoherent");
        assert_int_equal(coherency_facts_get_n_devices(coherency_grant_get_facts(pair)), 2);
        assert_int_equal(coherency_kvm_vfio_attach(k, pair), 1);
        assert_true(sim_vm_has_line(vm, "attached=vfio-group:6 noncoherent"));
        assert_int_equal(sim_vm_noncoherent_dma(vm), 1);

        /* Freeing a grant whose descriptor was not taken closes it; the attached copy stays KVM's. */
        coherency_grant_free(pair);
        assert_true(sim_vm_has_line(vm, "attached=vfio-group:6 noncoherent"));

        /* Closing the device (Linux >= 6.2) drops every file. */
        coherency_kvm_vfio_free(k);
        assert_int_equal(sim_vm_count_lines(vm, "attached="), 0);
        assert_int_equal(sim_vm_noncoherent_dma(vm), 0);

        /* A kvm-vfio descriptor the VMM already has: taken over, closed by _free. */
        int own = memfd_create("coherencyd-sim:kvm-vfio", MFD_CLOEXEC);
        assert_true(own >= 0);
        assert_int_equal(coherency_kvm_vfio_new(vm, own, &k), 0);
        assert_int_equal(coherency_kvm_vfio_get_fd(k), own);
        assert_int_equal(coherency_kvm_vfio_attach(k, coherent), 1);
        assert_int_equal(sim_vm_count_lines(vm, "attached="), 1);
        coherency_kvm_vfio_free(k);
        assert_int_equal(fcntl(own, F_GETFD), -1);

        /* Not a VM at all: the real KVM ioctl says so. */
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(coherency_kvm_vfio_new(p[0], -1, &k), -ENOTTY);
        assert_int_equal(coherency_kvm_vfio_new(-1, -1, &k), -EBADF);
        close(p[0]);
        close(p[1]);

        coherency_grant_free(skip);
        coherency_grant_free(coherent);
        coherency_client_free(c);
        close(vm);
}

/* In a child, whose environment is its own: connect(NULL) finds the daemon by $COHERENCYD_SOCKET. */
static int connect_by_environment(void *userdata) {
        const struct harness *h = userdata;
        coherency_client *c;
        coherency_info *info = NULL;

        if (setenv("COHERENCYD_SOCKET", h->socket, 1) < 0 || coherency_connect(NULL, &c) < 0)
                return 1;
        int r = coherency_get_info(c, &info);
        coherency_info_free(info);
        coherency_client_free(c);
        return r < 0 ? 2 : 0;
}

static void test_libcoherency_finds_the_daemon_by_coherencyd_socket(void **state) {
        struct harness *h = *state;

        harness_start(h);
        assert_int_equal(run_as(0, 0, NULL, 0, connect_by_environment, h), 0);
}

/* One VMM event loop serving two VMs: both requests go out before either answer is read. */
static void test_libcoherency_send_and_finish_from_a_poll_loop(void **state) {
        struct harness *h = *state;
        static const char *const devices[2] = { GROUP6_DEVICE, GRANTED_DEVICE };
        coherency_client *c[2];
        coherency_grant *g[2] = {};
        coherency_kvm_vfio *k[2] = {};
        int vm[2], container[2];
        bool done[2] = {};

        harness_start(h);
        for (size_t i = 0; i < 2; i++) {
                c[i] = client_connect(h);
                vm[i] = sim_object("kvm-vm");
                container[i] = sim_object("vfio-container:noncoherent");
                assert_int_equal(coherency_client_get_deadline(c[i]), UINT64_MAX);
                assert_int_equal(coherency_request_grant_send(c[i], vm[i], devices[i], container[i]), 0);
                assert_true(coherency_client_get_deadline(c[i]) != UINT64_MAX);
                /* One call at a time per connection. */
                expect_error(c[i], coherency_get_info_send(c[i]), EALREADY, "");
        }
        while (!done[0] || !done[1]) {
                struct pollfd p[2];
                for (size_t i = 0; i < 2; i++)
                        p[i] = (struct pollfd) { .fd = done[i] ? -1 : coherency_client_get_fd(c[i]), .events = POLLIN };
                assert_true(poll(p, 2, HARNESS_TIMEOUT_MS) > 0);
                for (size_t i = 0; i < 2; i++) {
                        if (!(p[i].revents & POLLIN))
                                continue;
                        int r = coherency_request_grant_finish(c[i], &g[i]);
                        if (r == -EAGAIN)
                                continue;
                        assert_int_equal(r, 0);
                        done[i] = true;
                }
        }
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(coherency_client_get_deadline(c[i]), UINT64_MAX);
                assert_int_equal(coherency_grant_get_decision(g[i]), COHERENCY_DECISION_GRANTED);
                assert_int_equal(coherency_kvm_vfio_new(vm[i], -1, &k[i]), 0);
                assert_int_equal(coherency_kvm_vfio_attach(k[i], g[i]), 1);
                assert_int_equal(sim_vm_noncoherent_dma(vm[i]), 1);
        }

        /* The other calls' event-loop forms. */
        coherency_grant_list *l = NULL;
        assert_int_equal(coherency_list_grants_send(c[0]), 0);
        int r;
        while ((r = coherency_list_grants_finish(c[0], &l)) == -EAGAIN)
                assert_true(poll(&(struct pollfd) { .fd = coherency_client_get_fd(c[0]), .events = POLLIN }, 1,
                                 HARNESS_TIMEOUT_MS) > 0);
        assert_int_equal(r, 1);
        coherency_grant_list_free(l);

        coherency_decision *d = NULL;
        assert_int_equal(coherency_probe_send(c[0], NVME_DEVICE, -1, 0), 0);
        while ((r = coherency_probe_finish(c[0], &d)) == -EAGAIN)
                assert_true(poll(&(struct pollfd) { .fd = coherency_client_get_fd(c[0]), .events = POLLIN }, 1,
                                 HARNESS_TIMEOUT_MS) > 0);
        assert_int_equal(r, 0);
        assert_string_equal(coherency_decision_get_reason(d), "policy-force-disable");
        coherency_decision_free(d);

        char id[128];
        snprintf(id, sizeof id, "%s", coherency_grant_get_id(g[0]));
        assert_int_equal(coherency_kvm_vfio_detach(k[0], g[0]), 1);
        g[0] = coherency_grant_free(g[0]);
        assert_int_equal(coherency_release_grant_send(c[0], id), 0);
        coherency_grant_state st;
        bool vm_wbinvd = true;
        while ((r = coherency_release_grant_finish(c[0], &st, &vm_wbinvd)) == -EAGAIN)
                assert_true(poll(&(struct pollfd) { .fd = coherency_client_get_fd(c[0]), .events = POLLIN }, 1,
                                 HARNESS_TIMEOUT_MS) > 0);
        assert_int_equal(r, 0);
        assert_int_equal(st, COHERENCY_GRANT_ENDED);
        assert_false(vm_wbinvd);

        char *json = NULL;
        assert_int_equal(coherency_call_send(c[0], "org.varlink.service.GetInfo", NULL, false), 0);
        while ((r = coherency_call_finish(c[0], &json)) == -EAGAIN)
                assert_true(poll(&(struct pollfd) { .fd = coherency_client_get_fd(c[0]), .events = POLLIN }, 1,
                                 HARNESS_TIMEOUT_MS) > 0);
        assert_int_equal(r, 0);
        assert_non_null(strstr(json, "io.coherencyd.Broker"));
        free(json);

        for (size_t i = 0; i < 2; i++) {
                coherency_kvm_vfio_free(k[i]);
                coherency_grant_free(g[i]);
                coherency_client_free(c[i]);
                close(container[i]);
                close(vm[i]);
        }
}

/* In a child running as nobody: a Manager call; exit status 0 when it was -EPERM. */
static int manager_call_as_nobody(void *userdata) {
        const struct harness *h = userdata;
        coherency_client *c;
        char *json = NULL;

        if (coherency_connect(h->socket, &c) < 0)
                return 2;
        int r = coherency_call(c, "io.coherencyd.Manager.ListGrants", NULL, false, &json);
        bool denied = r == -EPERM && strcmp(coherency_client_get_error_name(c), BROKER "PermissionDenied") == 0;
        free(json);
        coherency_client_free(c);
        return denied ? 0 : 1;
}

static void test_libcoherency_maps_daemon_errors_to_errno(void **state) {
        struct harness *h = *state;
        coherency_grant *g = NULL;
        coherency_decision *d = NULL;
        coherency_info *info = NULL;
        int p[2];

        harness_start(h);
        coherency_client *c = client_connect(h);
        int vm = sim_object("kvm-vm"), noncoherent = sim_object("vfio-container:noncoherent"),
            coherent = sim_object("vfio-container:coherent");

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        expect_error(c, coherency_request_grant(c, p[0], GRANTED_DEVICE, noncoherent, &g), EBADF,
                     BROKER "InvalidFileDescriptor");
        assert_non_null(coherency_client_get_error_parameters(c));
        assert_non_null(strstr(coherency_client_get_error_parameters(c), "\"vm\""));
        expect_error(c, coherency_release_grant(c, "g-0123456789abcdef", NULL, NULL), ENOENT, BROKER "NoSuchGrant");
        expect_error(c, coherency_probe(c, "0000:00:1f.0", -1, -1, &d), ENODEV, BROKER "NoSuchDevice");
        expect_error(c, coherency_request_grant(c, vm, GROUP6_DEVICE, coherent, &g), EOPNOTSUPP,
                     BROKER "CoherencyUnsupported");
        expect_error(c, coherency_call(c, BROKER "Probe", "{\"device\":\"/dev/vfio/4\"}", false, NULL), EINVAL,
                     SERVICE "InvalidParameter");
        expect_error(c, coherency_call(c, BROKER "Frobnicate", NULL, false, NULL), ENOSYS, SERVICE "MethodNotFound");

        /* Caught before anything is sent: no daemon error name. */
        expect_error(c, coherency_probe(c, "00:05.0", -1, -1, &d), EINVAL, "");
        expect_error(c, coherency_request_grant(c, vm, GRANTED_DEVICE, -1, &g), EBADF, "");

        /* A held group is busy for everyone else. */
        coherency_grant *held = grant(c, vm, GRANTED_DEVICE, "noncoherent");
        coherency_client *other = client_connect(h);
        int vm2 = sim_object("kvm-vm");
        expect_error(other, coherency_request_grant(other, vm2, GRANTED_DEVICE, noncoherent, &g), EBUSY,
                     BROKER "DeviceBusy");
        coherency_client_free(other);
        close(vm2);

        assert_int_equal(run_as(NOBODY_UID, NOGROUP_GID, NULL, 0, manager_call_as_nobody, h), 0);

        /* Errors are answers: the connection still works. */
        assert_int_equal(coherency_get_info(c, &info), 0);
        info = coherency_info_free(info);

        /* Until the daemon goes away: then the connection is dead, for good. */
        coherency_grant_free(held);
        harness_stop(h);
        assert_int_equal(coherency_get_info(c, &info), -ECONNRESET);
        assert_int_equal(coherency_get_info(c, &info), -ENOTCONN);
        coherency_client_free(c);
        close(p[0]);
        close(p[1]);
        close(vm);
        close(noncoherent);
        close(coherent);
}

static void test_libcoherency_limit_and_kill_not_enabled(void **state) {
        struct harness *h = *state;
        char *json = NULL, params[256];

        harness_write_config(h, "coherencyd.conf",
                             "[Broker]\nAccess=allow\nMode=automatic\nMaxGrantsPerConnection=1\nRevokeKill=no\n");
        harness_start(h);
        coherency_client *c = client_connect(h);
        int vm = sim_object("kvm-vm");

        coherency_grant *g = grant(c, vm, GRANTED_DEVICE, "noncoherent"), *second = NULL;
        int container = sim_object("vfio-container:noncoherent");
        expect_error(c, coherency_request_grant(c, vm, GROUP6_DEVICE, container, &second), EUSERS,
                     BROKER "LimitExceeded");
        close(container);

        snprintf(params, sizeof params, "{\"grant\":\"%s\",\"kill\":true}", coherency_grant_get_id(g));
        expect_error(c, coherency_call(c, MANAGER "RevokeGrant", params, false, &json), ECANCELED,
                     MANAGER "KillNotEnabled");
        assert_null(json);

        coherency_grant_free(g);
        coherency_client_free(c);
        close(vm);
}

/*
 * A connection the daemon refuses at accept (MaxConnections=) gets LimitExceeded and is
 * hung up on before the client sends anything. libcoherency's call then fails to send
 * (EPIPE), and must still report the daemon's reason, not "closed the connection".
 */
static void test_libcoherency_reports_why_the_daemon_refused_the_connection(void **state) {
        struct harness *h = *state;
        coherency_info *info = NULL;

        harness_write_config(h, "coherencyd.conf", "[Broker]\nAccess=allow\nMaxConnections=1\nReservedAdminConnections=0\n");
        harness_start(h);
        /* The harness's own connection is the one MaxConnections= allows. */
        coherency_client *late = client_connect(h);
        /* The daemon's answer and its hang-up, before the client says a word. */
        struct pollfd p = { .fd = coherency_client_get_fd(late), .events = POLLRDHUP };
        assert_int_equal(poll(&p, 1, HARNESS_TIMEOUT_MS), 1);
        assert_true(p.revents & (POLLRDHUP | POLLHUP));

        expect_error(late, coherency_get_info(late, &info), EUSERS, BROKER "LimitExceeded");
        assert_null(info);
        assert_non_null(strstr(coherency_client_get_error(late), "MaxConnections"));
        coherency_client_free(late);
}

/* A daemon that accepts and never answers, for timeouts. */
static int silent_listener(char path[static 108], int *ret_listener) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        snprintf(path, 108, "@coherencyd-test-silent-%d-%ld", (int) getpid(), (long) time(NULL));
        memcpy(sa.sun_path + 1, path + 1, strlen(path) - 1);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) +
                                                                        strlen(path))), 0);
        assert_int_equal(listen(fd, 8), 0);
        *ret_listener = fd;
        return 0;
}

static void test_libcoherency_times_out_and_the_connection_is_dead(void **state) {
        char path[108];
        int listener;
        coherency_info *info = NULL;
        coherency_client *c = NULL;

        (void) state;
        silent_listener(path, &listener);

        /* Blocking. */
        assert_int_equal(coherency_connect(path, &c), 0);
        assert_int_equal(coherency_client_get_timeout(c), COHERENCY_TIMEOUT_DEFAULT_USEC);
        assert_int_equal(coherency_client_set_timeout(c, 100 * 1000), 0);
        assert_int_equal(coherency_client_get_timeout(c), 100 * 1000);
        expect_error(c, coherency_get_info(c, &info), ETIMEDOUT, "");
        expect_error(c, coherency_get_info(c, &info), ENOTCONN, "");
        coherency_client_free(c);

        /* Event loop: -EAGAIN until the deadline, then -ETIMEDOUT. */
        assert_int_equal(coherency_connect(path, &c), 0);
        assert_int_equal(coherency_client_set_timeout(c, 100 * 1000), 0);
        assert_int_equal(coherency_get_info_send(c), 0);
        uint64_t deadline = coherency_client_get_deadline(c);
        assert_true(deadline != UINT64_MAX);
        assert_int_equal(coherency_get_info_finish(c, &info), -EAGAIN);
        struct timespec ts;
        do {
                (void) poll(&(struct pollfd) { .fd = coherency_client_get_fd(c), .events = POLLIN }, 1, 20);
                clock_gettime(CLOCK_MONOTONIC, &ts);
        } while ((uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000 < deadline);
        expect_error(c, coherency_get_info_finish(c, &info), ETIMEDOUT, "");
        /* 0 restores the default. */
        assert_int_equal(coherency_client_set_timeout(c, 0), 0);
        assert_int_equal(coherency_client_get_timeout(c), COHERENCY_TIMEOUT_DEFAULT_USEC);
        coherency_client_free(c);

        /* A watch whose first reply never comes. */
        coherency_watch *w = NULL;
        coherency_watch_event *e = NULL;
        assert_int_equal(coherency_watch_new(path, &w), 0);
        assert_int_equal(coherency_watch_set_timeout(w, 50 * 1000), 0);
        assert_int_equal(coherency_watch_process(w, &e), 0);
        assert_int_equal(coherency_watch_wait(w, 200 * 1000), 0);
        assert_int_equal(coherency_watch_process(w, &e), -ETIMEDOUT);
        coherency_watch_free(w);
        close(listener);
}

/* The next watch event, waiting for it; fails the test after HARNESS_TIMEOUT_MS. */
static coherency_watch_event *next_event(coherency_watch *w) {
        for (;;) {
                coherency_watch_event *e = NULL;
                int r = coherency_watch_process(w, &e);
                if (r < 0)
                        fail_msg("watch: %s", coherency_watch_get_error(w));
                if (r > 0)
                        return e;
                if (coherency_watch_wait(w, HARNESS_TIMEOUT_MS * 1000ULL) <= 0)
                        fail_msg("watch: no event within %d ms", HARNESS_TIMEOUT_MS);
        }
}

/* The next event about grant, skipping others; asserts its kind. */
static coherency_watch_event *expect_event(coherency_watch *w, const char *grant, coherency_watch_event_kind kind) {
        for (;;) {
                coherency_watch_event *e = next_event(w);
                if (coherency_watch_event_get_grant(e) && strcmp(coherency_watch_event_get_grant(e), grant) == 0 &&
                    coherency_watch_event_get_kind(e) == kind)
                        return e;
                if (coherency_watch_event_get_grant(e) && strcmp(coherency_watch_event_get_grant(e), grant) == 0 &&
                    coherency_watch_event_get_kind(e) != COHERENCY_WATCH_ENDING)
                        fail_msg("watch: expected %s for %s, got %s", coherency_watch_event_kind_to_string(kind),
                                 grant, coherency_watch_event_get_kind_string(e));
                coherency_watch_event_free(e);
        }
}

static void test_libcoherency_watch_sees_a_revoke_and_the_end(void **state) {
        struct harness *h = *state;
        char id[128], params[256];

        harness_start(h);
        coherency_client *c = client_connect(h);
        int vm = sim_object("kvm-vm");
        coherency_grant *first = grant(c, vm, "0000:00:03.0", "coherent");

        /* The first reply: every grant of this process, whichever connection holds it. */
        coherency_watch *w = NULL;
        assert_int_equal(coherency_watch_new(h->socket, &w), 0);
        assert_true(coherency_watch_get_fd(w) >= 0);
        coherency_watch_event *e = next_event(w);
        assert_int_equal(coherency_watch_event_get_kind(e), COHERENCY_WATCH_GRANTS);
        assert_string_equal(coherency_watch_event_get_kind_string(e), "grants");
        assert_null(coherency_watch_event_get_grant(e));
        assert_int_equal(coherency_grant_list_get_count(coherency_watch_event_get_grants(e)), 1);
        assert_string_equal(coherency_grant_info_get_id(coherency_grant_list_get(coherency_watch_event_get_grants(e), 0)),
                            coherency_grant_get_id(first));
        coherency_watch_event_free(e);
        /* Nothing more yet. */
        assert_int_equal(coherency_watch_process(w, &e), 0);

        coherency_kvm_vfio *k = NULL;
        assert_int_equal(coherency_kvm_vfio_new(vm, -1, &k), 0);
        coherency_grant *g = grant(c, vm, GRANTED_DEVICE, "noncoherent");
        assert_int_equal(coherency_kvm_vfio_attach(k, g), 1);
        snprintf(id, sizeof id, "%s", coherency_grant_get_id(g));
        int group = coherency_grant_take_group_fd(g);

        /* An operator revokes it. */
        coherency_client *operator = client_connect(h);
        snprintf(params, sizeof params, "{\"grant\":\"%s\",\"kill\":false}", id);
        assert_int_equal(coherency_call(operator, MANAGER "RevokeGrant", params, false, NULL), 0);
        coherency_client_free(operator);

        e = expect_event(w, id, COHERENCY_WATCH_REVOKED);
        assert_string_equal(coherency_grant_info_get_device(coherency_watch_event_get_grant_info(e)), GRANTED_DEVICE);
        coherency_watch_event_free(e);

        /* The VMM reacts: detach (by file name, as a revoke names it) and close. */
        assert_int_equal(coherency_kvm_vfio_detach_file(k, "vfio-group:4"), 1);
        assert_int_equal(sim_vm_noncoherent_dma(vm), 0);
        close(group);
        e = expect_event(w, id, COHERENCY_WATCH_ENDED);
        coherency_watch_event_free(e);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_GRANT_END, "COHERENCYD_END=revoke", NULL));

        /* Released while still held: ending, then ended once the last copy is closed. */
        g = coherency_grant_free(g);
        g = grant(c, vm, GRANTED_DEVICE, "noncoherent");
        snprintf(id, sizeof id, "%s", coherency_grant_get_id(g));
        coherency_grant_state st = COHERENCY_GRANT_STATE_OTHER;
        assert_int_equal(coherency_release_grant(c, id, &st, NULL), 0);
        assert_int_equal(st, COHERENCY_GRANT_ENDING);
        coherency_grant_free(g); /* closes the group */
        e = expect_event(w, id, COHERENCY_WATCH_ENDED);
        coherency_watch_event_free(e);

        coherency_kvm_vfio_free(k);
        coherency_watch_free(w);
        coherency_grant_free(first);
        coherency_client_free(c);
        close(vm);
}

/* ---- coherencyctl -------------------------------------------------------- */

/* coherencyctl --socket S ARGS... (NULL-terminated) as uid; returns its exit status. */
static int ctl(const struct harness *h, uid_t uid, char **ret_stdout, char **ret_stderr, ...) {
        char *argv[16];
        size_t n = 0;
        va_list ap;

        argv[n++] = (char *) h->coherencyctl;
        argv[n++] = "--socket";
        argv[n++] = (char *) h->socket;
        va_start(ap, ret_stderr);
        for (char *a; (a = va_arg(ap, char *));) {
                assert_true(n < sizeof argv / sizeof argv[0] - 1);
                argv[n++] = a;
        }
        va_end(ap);
        argv[n] = NULL;
        return run_command(argv, uid, ret_stdout, ret_stderr);
}

static void test_coherencyctl_grants_shows_state_and_holders(void **state) {
        struct harness *h = *state;
        char *out, holder[64];

        harness_start(h);
        coherency_client *c = client_connect(h);
        int vm = sim_object("kvm-vm");
        coherency_grant *g = grant(c, vm, GRANTED_DEVICE, "noncoherent");
        const char *id = coherency_grant_get_id(g);

        assert_int_equal(ctl(h, 0, &out, NULL, "grants", NULL), 0);
        assert_non_null(strstr(out, id));
        assert_non_null(strstr(out, GRANTED_DEVICE));
        assert_non_null(strstr(out, "platform-cannot-enforce"));
        assert_non_null(strstr(out, "STATE"));
        assert_non_null(strstr(out, "active"));
        free(out);

        assert_int_equal(ctl(h, 0, &out, NULL, "--json", "grants", NULL), 0);
        json_object *reply = json_tokener_parse(out);
        if (!reply)
                fail_msg("coherencyctl --json grants printed no JSON: %s", out);
        json_object *grants = jmember(reply, "grants");
        assert_int_equal(json_object_array_length(grants), 1);
        assert_string_equal(jstr(json_object_array_get_idx(grants, 0), "grant"), id);
        json_object_put(reply);
        free(out);

        /* Released while this process still holds the group: ending. */
        assert_int_equal(coherency_release_grant(c, id, NULL, NULL), 0);
        assert_int_equal(ctl(h, 0, &out, NULL, "grants", NULL), 0);
        assert_non_null(strstr(out, "ending (release)"));
        assert_non_null(strstr(out, "HOLDERS"));
        free(out);

        /* Holders as the daemon lists them ("pid/comm"), when it lists them. */
        assert_int_equal(ctl(h, 0, &out, NULL, "--json", "grants", NULL), 0);
        reply = json_tokener_parse(out);
        assert_non_null(reply);
        json_object *holders = NULL;
        if (json_object_object_get_ex(json_object_array_get_idx(jmember(reply, "grants"), 0), "holders", &holders) &&
            json_object_array_length(holders) > 0) {
                char *table;
                snprintf(holder, sizeof holder, "%" PRId64 "/",
                         jint(json_object_array_get_idx(holders, 0), "pid"));
                assert_int_equal(ctl(h, 0, &table, NULL, "grants", NULL), 0);
                if (!strstr(table, holder))
                        fail_msg("no holder %s in:\n%s", holder, table);
                free(table);
        }
        json_object_put(reply);
        free(out);

        coherency_grant_free(g);
        coherency_client_free(c);
        close(vm);
}

static void test_coherencyctl_revoke_ends_the_grant_and_fails_for_an_unknown_one(void **state) {
        struct harness *h = *state;
        char *err, match[160];

        harness_start(h);
        coherency_client *c = client_connect(h);
        int vm = sim_object("kvm-vm");
        coherency_grant *g = grant(c, vm, GRANTED_DEVICE, "noncoherent");
        char *id = strdup(coherency_grant_get_id(g));

        assert_int_equal(ctl(h, 0, NULL, NULL, "revoke", id, NULL), 0);
        coherency_grant_free(g); /* the VMM lets go; the group is free */
        snprintf(match, sizeof match, "COHERENCYD_GRANT=%s", id);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_GRANT_END, match, "COHERENCYD_END=revoke", NULL));

        assert_int_equal(ctl(h, 0, NULL, &err, "revoke", id, NULL), 5); /* not found */
        assert_non_null(strstr(err, id));
        assert_non_null(strstr(err, "NoSuchGrant"));
        free(err);
        free(id);
        coherency_client_free(c);
        close(vm);
}

static void test_coherencyctl_revoke_kill_needs_revoke_kill(void **state) {
        struct harness *h = *state;
        char *err;

        harness_write_config(h, "coherencyd.conf", "[Broker]\nAccess=allow\nMode=automatic\nRevokeKill=no\n");
        harness_start(h);
        coherency_client *c = client_connect(h);
        int vm = sim_object("kvm-vm");
        coherency_grant *g = grant(c, vm, GRANTED_DEVICE, "noncoherent");

        assert_int_equal(ctl(h, 0, NULL, &err, "revoke", coherency_grant_get_id(g), "--kill", NULL), 1);
        assert_non_null(strstr(err, "KillNotEnabled"));
        free(err);

        coherency_grant_free(g);
        coherency_client_free(c);
        close(vm);
}

static void test_coherencyctl_explain_and_probe(void **state) {
        struct harness *h = *state;
        char *out, *err;

        harness_start(h);
        assert_int_equal(ctl(h, 0, &out, NULL, "explain", DENIED_DEVICE, "--user", "nobody", NULL), 0);
        assert_non_null(strstr(out, "refused"));
        assert_non_null(strstr(out, "access-denied"));
        assert_non_null(strstr(out, "05-management-nic-deny.policy"));
        free(out);

        assert_int_equal(ctl(h, 0, &out, NULL, "explain", GROUP6_DEVICE, "--user", "nobody", "--group", "nogroup",
                             "--unit", "vmm@1.service", NULL), 0);
        assert_non_null(strstr(out, "platform-cannot-enforce"));
        assert_non_null(strstr(out, "0000:00:07.1"));
        free(out);

        assert_int_equal(ctl(h, 0, &out, NULL, "--json", "explain", "0000:00:09.0", "--user", "0", NULL), 0);
        json_object *reply = json_tokener_parse(out);
        assert_non_null(reply);
        assert_string_equal(jstr(reply, "reason"), "policy-force-disable");
        json_object_put(reply);
        free(out);

        /* Probe is for everyone; Explain for operators. */
        assert_int_equal(ctl(h, NOBODY_UID, &out, NULL, "probe", "0000:00:03.0", "--ioas-coherent=no", NULL), 0);
        assert_non_null(strstr(out, "coherent-ioas-required"));
        free(out);
        assert_int_equal(ctl(h, NOBODY_UID, NULL, &err, "explain", GRANTED_DEVICE, "--user", "nobody", NULL), 4); /* denied */
        assert_non_null(strstr(err, "PermissionDenied"));
        free(err);

        assert_int_equal(ctl(h, 0, NULL, &err, "probe", "0000:00:1f.0", NULL), 5); /* not found */
        assert_non_null(strstr(err, "NoSuchDevice"));
        free(err);
}

static void test_coherencyctl_info_and_reload_succeed(void **state) {
        struct harness *h = *state;
        char *out;

        harness_start(h);
        assert_int_equal(ctl(h, 0, &out, NULL, "info", NULL), 0);
        assert_non_null(strstr(out, "sim"));
        assert_non_null(strstr(out, "dmar1"));
        assert_non_null(strstr(out, "Access: allow"));
        free(out);

        assert_int_equal(ctl(h, 0, &out, NULL, "reload", NULL), 0);
        assert_non_null(strstr(out, "Policy reloaded: "));
        free(out);
        json_object_put(journal_expect(h, 2, MESSAGE_ID_POLICY_LOADED, NULL));
}

static void test_coherencyctl_as_nobody_is_denied_operator_commands(void **state) {
        struct harness *h = *state;
        char *err;

        harness_start(h);
        assert_int_equal(ctl(h, NOBODY_UID, NULL, &err, "grants", NULL), 4); /* denied */
        assert_non_null(strstr(err, "PermissionDenied"));
        free(err);
        /* info is for everyone. */
        assert_int_equal(ctl(h, NOBODY_UID, NULL, NULL, "info", NULL), 0);
}

static void test_coherencyctl_usage_errors_exit_2(void **state) {
        struct harness *h = *state;

        assert_int_equal(ctl(h, 0, NULL, NULL, "frobnicate", NULL), 2);
        assert_int_equal(ctl(h, 0, NULL, NULL, "revoke", NULL), 2);
        assert_int_equal(ctl(h, 0, NULL, NULL, "grants", "--kill", NULL), 2);
        assert_int_equal(ctl(h, 0, NULL, NULL, "explain", GRANTED_DEVICE, NULL), 2);
        assert_int_equal(ctl(h, 0, NULL, NULL, "probe", GRANTED_DEVICE, "--ioas-coherent=maybe", NULL), 2);
        assert_int_equal(ctl(h, 0, NULL, NULL, "info", "--user", "nobody", NULL), 2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_libcoherency_info_probe_grant_attach_list_release),
                HARNESS_TEST(test_libcoherency_kvm_vfio_follows_kvm_attach_and_close_drops_files),
                HARNESS_TEST(test_libcoherency_finds_the_daemon_by_coherencyd_socket),
                HARNESS_TEST(test_libcoherency_send_and_finish_from_a_poll_loop),
                HARNESS_TEST(test_libcoherency_maps_daemon_errors_to_errno),
                HARNESS_TEST(test_libcoherency_limit_and_kill_not_enabled),
                HARNESS_TEST(test_libcoherency_reports_why_the_daemon_refused_the_connection),
                HARNESS_TEST(test_libcoherency_times_out_and_the_connection_is_dead),
                HARNESS_TEST(test_libcoherency_watch_sees_a_revoke_and_the_end),
                HARNESS_TEST(test_coherencyctl_grants_shows_state_and_holders),
                HARNESS_TEST(test_coherencyctl_revoke_ends_the_grant_and_fails_for_an_unknown_one),
                HARNESS_TEST(test_coherencyctl_revoke_kill_needs_revoke_kill),
                HARNESS_TEST(test_coherencyctl_explain_and_probe),
                HARNESS_TEST(test_coherencyctl_info_and_reload_succeed),
                HARNESS_TEST(test_coherencyctl_as_nobody_is_denied_operator_commands),
                HARNESS_TEST(test_coherencyctl_usage_errors_exit_2),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
