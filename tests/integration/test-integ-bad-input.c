/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hostile and broken clients against the running daemon (DESIGN.md §5, §9).
 * After each one: the answer names what was wrong (or the connection is
 * closed), another client is still served, and the daemon holds exactly the
 * descriptors it held before, so nothing a client sent stays behind and no
 * group is opened for a request that fails.
 *
 * The daemon runs without its sandbox here so that LeakSanitizer can check it
 * at exit too (teardown asserts exit status 0): these are the paths that leak.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#define EXPECTED_IOMMU "a VFIO container or iommufd"
#define EXPECTED_VM "a KVM VM"
#define DEVICE "0000:00:05.0" /* IOMMU group 4: granted to anyone under the demo policy */

/* A fresh connection for the bad client; *ret_fds the daemon's descriptor count now. */
static struct vconn *attempt_begin(struct harness *h, unsigned *ret_fds) {
        harness_idle(h);
        *ret_fds = daemon_fds(h, NULL);
        return vconn_connect(h);
}

/* Ends the bad client's connection, then: is someone else still served, and is
 * every descriptor it made the daemon take gone again? */
static void attempt_end(struct harness *h, struct vconn *c, unsigned fds_before) {
        vconn_free(c);
        struct vconn *other = vconn_connect(h);
        json_object_put(vconn_call(other, BROKER "GetInfo", NULL, NULL, 0));
        vconn_free(other);
        expect_daemon_fds_settled(h, NULL, fds_before);
}

static void close_all(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                close(fds[i]);
}

/* A call that must fail with error; returns the error's parameters. Closes fds. */
static json_object *reject_call(struct harness *h, const char *method, const char *params, int *fds, size_t n_fds,
                                const char *error) {
        unsigned before;
        struct vconn *c = attempt_begin(h, &before);
        json_object *p = vconn_call_error(c, method, params, fds, n_fds, error);
        assert_int_equal(vconn_reply_fds(c), 0);
        close_all(fds, n_fds);
        attempt_end(h, c, before);
        return p;
}

static void reject_invalid_parameter(struct harness *h, const char *method, const char *params, int *fds,
                                     size_t n_fds, const char *parameter) {
        json_object *p = reject_call(h, method, params, fds, n_fds, SERVICE "InvalidParameter");
        assert_string_equal(jstr(p, "parameter"), parameter);
        json_object_put(p);
}

static void reject_fd(struct harness *h, const char *method, const char *params, int *fds, size_t n_fds,
                      const char *parameter, const char *expected, const char *got) {
        json_object *p = reject_call(h, method, params, fds, n_fds, BROKER "InvalidFileDescriptor");
        assert_string_equal(jstr(p, "parameter"), parameter);
        assert_string_equal(jstr(p, "expected"), expected);
        assert_string_equal(jstr(p, "got"), got);
        json_object_put(p);
}

/* Raw bytes (NUL included by the caller, or not) that must make the daemon hang up. Closes fds. */
static void reject_raw(struct harness *h, const void *data, size_t len, int *fds, size_t n_fds) {
        unsigned before;
        struct vconn *c = attempt_begin(h, &before);
        vconn_send_raw(c, data, len, fds, n_fds);
        close_all(fds, n_fds);
        vconn_expect_closed(c);
        attempt_end(h, c, before);
}

/* Probe with fd as its iommu. */
static void probe_with_iommu(struct harness *h, int iommu, const char *got) {
        reject_fd(h, BROKER "Probe", "{\"device\":\"" DEVICE "\",\"iommu\":0}", &iommu, 1, "iommu", EXPECTED_IOMMU,
                  got);
}

/* RequestGrant with fd as its vm (and a proper container). */
static void request_with_vm(struct harness *h, int vm, const char *got) {
        int fds[2] = { vm, sim_object("vfio-container:noncoherent") };
        reject_fd(h, BROKER "RequestGrant", "{\"vm\":0,\"device\":\"" DEVICE "\",\"iommu\":1}", fds, 2, "vm",
                  EXPECTED_VM, got);
}

static void test_pipe_as_vm_is_invalid_file_descriptor(void **state) {
        struct harness *h = *state;
        int p[2];

        harness_start_leak_checked(h);
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        close(p[1]);
        request_with_vm(h, p[0], "a pipe");
}

static void test_regular_file_as_iommu_is_invalid_file_descriptor(void **state) {
        struct harness *h = *state;
        char path[PATH_MAX];

        harness_start_leak_checked(h);
        snprintf(path, sizeof path, "%s/not-a-container", h->dir);
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        probe_with_iommu(h, fd, "a regular file");
}

/* A tmpfs file answers F_GET_SEALS as a memfd does (mm/memfd.c): its name,
 * not the seals, tells it is no simulated object. */
static void test_tmpfs_file_as_iommu_is_invalid_file_descriptor(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        int fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                skip();
        assert_return_code(fcntl(fd, F_GET_SEALS), errno);
        probe_with_iommu(h, fd, "a regular file");
}

static void test_o_path_descriptor_as_iommu_is_invalid_file_descriptor(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        int fd = open(h->sysfs, O_PATH | O_CLOEXEC);
        assert_true(fd >= 0);
        probe_with_iommu(h, fd, "an O_PATH descriptor");
}

static void test_vm_as_iommu_is_invalid_file_descriptor(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        probe_with_iommu(h, sim_object("kvm-vm"), "a KVM VM");
}

/* A VMM cannot bring a group of its own: groups come from the daemon. */
static void test_group_as_iommu_is_invalid_file_descriptor(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        probe_with_iommu(h, sim_object("vfio-group:4"), "a VFIO group");
}

static void test_memfd_of_no_kernel_object_as_iommu_is_invalid_file_descriptor(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        probe_with_iommu(h, sim_object("vfio-container:sometimes"), "a memfd that is no simulated kernel object");
}

static void test_container_as_vm_is_invalid_file_descriptor(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        request_with_vm(h, sim_object("vfio-container:coherent"), "a VFIO container");
}

static void test_read_only_reopen_of_vm_is_invalid_file_descriptor(void **state) {
        struct harness *h = *state;
        char path[64], vm_state[64];

        harness_start_leak_checked(h);
        int vm = sim_object("kvm-vm");
        snprintf(path, sizeof path, "/proc/self/fd/%d", vm);
        int ro = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(ro >= 0);
        request_with_vm(h, ro, "a read-only descriptor of a KVM VM");
        /* Nothing was done to the VM through it. */
        sim_vm_state(vm, vm_state, sizeof vm_state);
        assert_string_equal(vm_state, "");
        close(vm);
}

static void test_descriptor_index_past_the_message_is_invalid_parameter(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        int fd = sim_object("vfio-container:noncoherent");
        reject_invalid_parameter(h, BROKER "Probe", "{\"device\":\"" DEVICE "\",\"iommu\":1}", &fd, 1, "iommu");
}

static void test_one_descriptor_for_two_parameters_is_invalid_parameter(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        int fd = sim_object("kvm-vm");
        reject_invalid_parameter(h, BROKER "RequestGrant", "{\"vm\":0,\"device\":\"" DEVICE "\",\"iommu\":0}", &fd, 1,
                                 "iommu");
}

static void test_missing_parameter_is_invalid_parameter(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        int fds[2] = { sim_object("kvm-vm"), sim_object("vfio-container:noncoherent") };
        reject_invalid_parameter(h, BROKER "RequestGrant", "{\"vm\":0,\"iommu\":1}", fds, 2, "device");
        /* The group is attached to the VMM's IOAS: no request without one. */
        fds[0] = sim_object("kvm-vm");
        reject_invalid_parameter(h, BROKER "RequestGrant", "{\"vm\":0,\"device\":\"" DEVICE "\"}", fds, 1, "iommu");
        fds[0] = sim_object("vfio-container:noncoherent");
        reject_invalid_parameter(h, BROKER "RequestGrant", "{\"device\":\"" DEVICE "\",\"iommu\":0}", fds, 1, "vm");
        reject_invalid_parameter(h, BROKER "Probe", NULL, NULL, 0, "device");
}

static void test_parameter_of_wrong_type_is_invalid_parameter(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        /* A descriptor index where the first edition took one: the device is named now. */
        int fd = sim_object("vfio-group:4");
        reject_invalid_parameter(h, BROKER "Probe", "{\"device\":0}", &fd, 1, "device");
        reject_invalid_parameter(h, BROKER "Probe", "{\"device\":\"" DEVICE "\",\"ioasCoherent\":\"yes\"}", NULL, 0,
                                 "ioasCoherent");
        int fds[2] = { sim_object("kvm-vm"), sim_object("vfio-container:noncoherent") };
        reject_invalid_parameter(h, BROKER "RequestGrant", "{\"vm\":\"0\",\"device\":\"" DEVICE "\",\"iommu\":1}", fds,
                                 2, "vm");
        reject_invalid_parameter(h, BROKER "ReleaseGrant", "{\"grant\":7}", NULL, 0, "grant");
}

static void test_unknown_parameter_is_invalid_parameter(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        int fd = sim_object("vfio-container:noncoherent");
        reject_invalid_parameter(h, BROKER "Probe", "{\"device\":\"" DEVICE "\",\"iommu\":0,\"colour\":\"red\"}", &fd,
                                 1, "colour");
}

/* Probe and RequestGrant for device; both must fail with error naming the device, and open nothing. */
static void reject_device(struct harness *h, const char *device, const char *error) {
        char params[256];
        json_object *device_json = json_object_new_string(device);
        const char *quoted = json_object_to_json_string(device_json);
        bool invalid = strcmp(error, SERVICE "InvalidParameter") == 0;

        snprintf(params, sizeof params, "{\"device\":%s}", quoted);
        json_object *p = reject_call(h, BROKER "Probe", params, NULL, 0, error);
        if (invalid)
                assert_string_equal(jstr(p, "parameter"), "device");
        else
                assert_string_equal(jstr(p, "device"), device);
        json_object_put(p);

        int fds[2] = { sim_object("kvm-vm"), sim_object("vfio-container:noncoherent") };
        snprintf(params, sizeof params, "{\"vm\":0,\"device\":%s,\"iommu\":1}", quoted);
        p = reject_call(h, BROKER "RequestGrant", params, fds, 2, error);
        if (invalid)
                assert_string_equal(jstr(p, "parameter"), "device");
        else
                assert_string_equal(jstr(p, "device"), device);
        json_object_put(p);
        json_object_put(device_json);
}

static void test_device_that_is_no_canonical_pci_address_is_invalid_parameter(void **state) {
        struct harness *h = *state;
        static const char *const bad[] = {
                "",
                "0000:00:5.0",          /* not zero-padded */
                "00:05.0",              /* no domain */
                "0000:00:0A.0",         /* sysfs spells hex in lower case */
                "0000:00:05.8",         /* no function 8 */
                " 0000:00:05.0",
                "0000:00:05.0\n",
                "0000:00:05.0/..",
                "0000_00_05.0",
        };

        harness_start_leak_checked(h);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                reject_device(h, bad[i], SERVICE "InvalidParameter");
}

static void test_device_given_as_a_path_is_invalid_parameter(void **state) {
        struct harness *h = *state;
        char own[PATH_MAX];
        const char *const paths[] = {
                "../..",
                "..",
                "/sys/bus/pci/devices/0000:00:05.0",
                "bus/pci/devices/0000:00:05.0",
                "../../../../../../etc/passwd",
                own,
        };

        /* Even the daemon's own sysfs tree, spelled out. */
        snprintf(own, sizeof own, "%s/bus/pci/devices/" DEVICE, h->sysfs);
        harness_start_leak_checked(h);
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
                reject_device(h, paths[i], SERVICE "InvalidParameter");
}

static void test_device_that_does_not_exist_is_no_such_device(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        reject_device(h, "0000:00:1f.0", BROKER "NoSuchDevice");
        reject_device(h, "0001:00:05.0", BROKER "NoSuchDevice");
        reject_device(h, "0000:00:05.1", BROKER "NoSuchDevice");
}

/* Only a device bound to vfio-pci has a VFIO group to hand over. */
static void test_device_not_bound_to_vfio_pci_is_no_such_device(void **state) {
        struct harness *h = *state;
        char link[PATH_MAX];

        /* 0000:00:05.0 is bound to another driver, 0000:00:06.0 to none at all. */
        snprintf(link, sizeof link, "%s/devices/pci0000:00/" DEVICE "/driver", h->sysfs);
        assert_int_equal(unlink(link), 0);
        assert_int_equal(symlink("../../../bus/pci/drivers/nvme", link), 0);
        snprintf(link, sizeof link, "%s/devices/pci0000:00/0000:00:06.0/driver", h->sysfs);
        assert_int_equal(unlink(link), 0);
        harness_start_leak_checked(h);
        reject_device(h, DEVICE, BROKER "NoSuchDevice");
        reject_device(h, "0000:00:06.0", BROKER "NoSuchDevice");

        /* The others are still served. */
        json_object *p = probe(h->sync, 3, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "granted");
        json_object_put(p);
        json_object_put(journal_expect(h, 0, MESSAGE_ID_DECISION, NULL));
}

static void test_unknown_method_is_method_not_found(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        int fd = sim_object("kvm-vm");
        json_object *p = reject_call(h, BROKER "Frobnicate", "{\"vm\":0}", &fd, 1, SERVICE "MethodNotFound");
        assert_string_equal(jstr(p, "method"), BROKER "Frobnicate");
        json_object_put(p);
}

static void test_unknown_grant_is_no_such_grant(void **state) {
        struct harness *h = *state;

        harness_start_leak_checked(h);
        json_object *p = reject_call(h, BROKER "ReleaseGrant", "{\"grant\":\"g-0123456789abcdef\"}", NULL, 0,
                                     BROKER "NoSuchGrant");
        assert_string_equal(jstr(p, "grant"), "g-0123456789abcdef");
        json_object_put(p);
        p = reject_call(h, MANAGER "RevokeGrant", "{\"grant\":\"g-0123456789abcdef\"}", NULL, 0, BROKER "NoSuchGrant");
        assert_string_equal(jstr(p, "grant"), "g-0123456789abcdef");
        json_object_put(p);
}

/* A grant id not spelt as the daemon spells them is a bad parameter, not an unknown grant. */
static void test_malformed_grant_id_is_invalid_parameter(void **state) {
        struct harness *h = *state;
        static const char *const params[] = {
                "{\"grant\":\"\"}", "{\"grant\":\"g-\"}", "{\"grant\":\"g-0123456789ABCDEF\"}",
                "{\"grant\":\"g-0123456789abcdef0\"}", "{\"grant\":\"x-0123456789abcdef\"}",
        };

        harness_start_leak_checked(h);
        for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
                reject_invalid_parameter(h, BROKER "ReleaseGrant", params[i], NULL, 0, "grant");
                reject_invalid_parameter(h, MANAGER "RevokeGrant", params[i], NULL, 0, "grant");
        }
}

static void test_revoke_with_kill_of_wrong_type_is_invalid_parameter_and_revokes_nothing(void **state) {
        struct harness *h = *state;
        char params[128];
        int group;

        harness_start_leak_checked(h);
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_take(h->sync, vm, 4, "noncoherent", &group);
        snprintf(params, sizeof params, "{\"grant\":\"%s\",\"kill\":\"yes\"}", jstr(p, "grant"));
        json_object_put(reject_call(h, MANAGER "RevokeGrant", params, NULL, 0, SERVICE "InvalidParameter"));
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_string_equal(jstr(json_object_array_get_idx(grants, 0), "state"), "active");
        json_object_put(grants);
        json_object_put(p);
        close(group);
        close(vm);
}

static void test_malformed_json_closes_the_connection(void **state) {
        struct harness *h = *state;
        static const char bad[] = "{\"method\": \"io.coherencyd.Broker.GetInfo\", ";

        harness_start_leak_checked(h);
        int fd = sim_object("kvm-vm");
        reject_raw(h, bad, sizeof bad, &fd, 1); /* sizeof: the NUL goes too */
}

/*
 * A key given twice: json-c, which read calls before, let the last win, so
 * this RequestGrant got a grant for the VM at index 1. The daemon now refuses
 * it as sd_json_dispatch() would, and the descriptors go with the connection.
 */
static void test_duplicate_key_closes_the_connection(void **state) {
        struct harness *h = *state;
        static const char dup_param[] = "{\"method\":\"io.coherencyd.Broker.RequestGrant\",\"parameters\":"
                                        "{\"vm\":0,\"device\":\"" DEVICE "\",\"iommu\":2,\"vm\":1}}";
        static const char dup_flag[] = "{\"method\":\"io.coherencyd.Broker.GetInfo\",\"oneway\":false,\"oneway\":true}";

        harness_start_leak_checked(h);
        int fds[3] = { sim_object("kvm-vm"), sim_object("kvm-vm"), sim_object("vfio-container:noncoherent") };
        reject_raw(h, dup_param, sizeof dup_param, fds, 3);
        expect_daemon_fds_settled(h, FD_SIM_VM, 0);
        reject_raw(h, dup_flag, sizeof dup_flag, NULL, 0);
}

static void test_message_without_nul_past_64_kib_closes_the_connection(void **state) {
        struct harness *h = *state;
        size_t len = 64 * 1024 + 1;

        harness_start_leak_checked(h);
        char *flood = malloc(len);
        assert_non_null(flood);
        memset(flood, ' ', len);
        flood[0] = '{';
        reject_raw(h, flood, len, NULL, 0);
        free(flood);
}

static void test_message_with_200_descriptors_closes_the_connection_and_all_are_closed(void **state) {
        struct harness *h = *state;
        static const char call[] = "{\"method\":\"io.coherencyd.Broker.GetInfo\"}";
        int fds[200];

        harness_start_leak_checked(h);
        int vm = sim_object("kvm-vm");
        for (size_t i = 0; i < 200; i++) {
                fds[i] = fcntl(vm, F_DUPFD_CLOEXEC, 3);
                assert_true(fds[i] >= 0);
        }
        reject_raw(h, call, sizeof call, fds, 200);
        expect_daemon_fds_settled(h, FD_SIM_VM, 0);
        close(vm);
}

/* Descriptors on a call that names none are closed with it; the call is answered. */
static void test_descriptors_on_a_call_that_takes_none_are_closed(void **state) {
        struct harness *h = *state;
        unsigned before;

        harness_start_leak_checked(h);
        int fds[2] = { sim_object("kvm-vm"), sim_object("vfio-container:noncoherent") };
        struct vconn *c = attempt_begin(h, &before);
        json_object_put(vconn_call(c, BROKER "GetInfo", NULL, fds, 2));
        close_all(fds, 2);
        /* A later call on the connection: the daemon is done with the first and what it carried. */
        vconn_ping(c);
        expect_daemon_fds(h, FD_SIM_VM, 0);
        attempt_end(h, c, before);
}

/*
 * Sends a Probe in two writes, the daemon reading the first before the second
 * arrives, with the container descriptor on the first byte of the first or of
 * the second write. Returns the connection.
 */
static struct vconn *probe_in_two_writes(struct harness *h, bool fd_on_second, unsigned *ret_fds) {
        static const char call[] =
                "{\"method\":\"io.coherencyd.Broker.Probe\",\"parameters\":{\"device\":\"" DEVICE "\",\"iommu\":0}}";
        size_t half = sizeof call / 2;
        int fd = sim_object("vfio-container:noncoherent");

        struct vconn *c = attempt_begin(h, ret_fds);
        vconn_send_raw(c, call, half, &fd, fd_on_second ? 0 : 1);
        harness_sync(h);
        vconn_send_raw(c, call + half, sizeof call - half, &fd, fd_on_second ? 1 : 0);
        close(fd);
        return c;
}

/* The control for the next test: a message may span reads. */
static void test_message_split_across_writes_is_answered(void **state) {
        struct harness *h = *state;
        unsigned before;
        struct coh_reply reply;

        harness_start_leak_checked(h);
        struct vconn *c = probe_in_two_writes(h, false, &before);
        assert_int_equal(vconn_recv(c, &reply), 0);
        assert_null(reply.error);
        assert_string_equal(jstr(reply.parameters, "decision"), "granted");
        coh_reply_done(&reply);
        attempt_end(h, c, before);
}

static void test_descriptors_sent_in_the_middle_of_a_message_close_the_connection(void **state) {
        struct harness *h = *state;
        unsigned before;

        harness_start_leak_checked(h);
        struct vconn *c = probe_in_two_writes(h, true, &before);
        vconn_expect_closed(c);
        attempt_end(h, c, before);
}

/* A connection with a streaming call in progress takes no other call: one is an error that closes it. */
static void test_call_on_a_streaming_connection_closes_it(void **state) {
        struct harness *h = *state;
        static const char *const streams[] = { BROKER "WatchGrants", MANAGER "Monitor" };
        unsigned before;

        harness_start_leak_checked(h);
        for (size_t i = 0; i < 2; i++) {
                struct vconn *c = attempt_begin(h, &before);
                vconn_send(c, streams[i], NULL, NULL, 0, true);
                json_object_put(vconn_next_event(c, i == 0 ? "grants" : "subscribed"));
                vconn_send(c, SERVICE "GetInfo", NULL, NULL, 0, false);
                vconn_expect_closed(c);
                attempt_end(h, c, before);
        }
}

static void test_max_grants_per_connection_is_limit_exceeded(void **state) {
        struct harness *h = *state;
        unsigned before;
        int groups[2];

        harness_write_config(h, "coherencyd.conf", "[Broker]\nAccess=allow\nMode=automatic\nMaxGrantsPerConnection=2\n");
        harness_start_leak_checked(h);
        int vm = sim_object("kvm-vm");
        struct vconn *c = attempt_begin(h, &before);
        json_object_put(request_grant_take(c, vm, 3, "noncoherent", &groups[0]));
        json_object_put(request_grant_take(c, vm, 4, "noncoherent", &groups[1]));

        json_object *p = request_grant_error(c, vm, 2, "coherent", BROKER "LimitExceeded");
        assert_string_equal(jstr(p, "limit"), "MaxGrantsPerConnection");
        json_object_put(p);
        /* A refusal holds nothing, so it is still answered. */
        p = request_grant(c, vm, 5, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        json_object_put(p);
        json_object *grants = list_grants(c, BROKER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 2);
        json_object_put(grants);

        /* Its grants end with it. */
        close_all(groups, 2);
        attempt_end(h, c, before);
        json_object_put(journal_expect(h, 2, MESSAGE_ID_GRANT_END, "COHERENCYD_END=disconnect", NULL));
        close(vm);
}

static void test_max_connections_per_user_is_limit_exceeded_for_the_next_connection(void **state) {
        struct harness *h = *state;
        struct peer vmm[3];
        struct coh_reply reply;

        harness_write_config(h, "coherencyd.conf", "[Broker]\nAccess=allow\nMode=automatic\nMaxConnectionsPerUser=2\n");
        harness_start_leak_checked(h);
        harness_idle(h);
        unsigned before = daemon_fds(h, NULL);
        for (size_t i = 0; i < 3; i++)
                peer_connect(h, 1234, 4321, NULL, 0, &vmm[i]);
        for (size_t i = 0; i < 2; i++)
                json_object_put(vconn_call(vmm[i].conn, BROKER "GetInfo", NULL, NULL, 0));

        /* The third is told why, then hung up on. */
        assert_int_equal(vconn_recv(vmm[2].conn, &reply), 0);
        assert_string_equal(reply.error, BROKER "LimitExceeded");
        assert_string_equal(jstr(reply.parameters, "limit"), "MaxConnectionsPerUser");
        coh_reply_done(&reply);
        vconn_expect_closed(vmm[2].conn);
        peer_done(&vmm[2]);

        /* Another user is counted apart. */
        struct peer other;
        peer_connect(h, 1235, 4321, NULL, 0, &other);
        json_object_put(vconn_call(other.conn, BROKER "GetInfo", NULL, NULL, 0));
        peer_done(&other);

        /* A slot that frees up can be taken again. */
        peer_done(&vmm[0]);
        harness_sync(h);
        peer_connect(h, 1234, 4321, NULL, 0, &vmm[0]);
        json_object_put(vconn_call(vmm[0].conn, BROKER "GetInfo", NULL, NULL, 0));
        for (size_t i = 0; i < 2; i++)
                peer_done(&vmm[i]);
        expect_daemon_fds_settled(h, NULL, before);
}

/* Whether a pipe's read end sees its last writer gone, now (no waiting). */
static bool writers_gone(int read_end) {
        struct pollfd pfd = { .fd = read_end, .events = POLLIN };
        return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLHUP);
}

/*
 * An error answered before any decision: the daemon has closed the VMM's
 * descriptors by the time the VMM has the answer, not just after. A pipe's
 * write end passed as the VM shows it without waiting: once our own copy is
 * closed, its read end hangs up exactly when the daemon's copy is gone.
 */
static void test_error_replies_come_after_the_vmms_descriptors_are_closed(void **state) {
        struct harness *h = *state;
        static const struct {
                const char *method, *params, *error;
        } calls[] = {
                /* classify: not a VM */
                { BROKER "RequestGrant", "{\"vm\":0,\"device\":\"0000:00:05.0\",\"iommu\":1}",
                  BROKER "InvalidFileDescriptor" },
                /* a parameter no method has, with descriptors */
                { BROKER "RequestGrant", "{\"vm\":0,\"device\":\"0000:00:05.0\",\"iommu\":1,\"x\":1}",
                  SERVICE "InvalidParameter" },
                /* a method nobody serves, with descriptors */
                { BROKER "Frobnicate", "{\"vm\":0,\"iommu\":1}", SERVICE "MethodNotFound" },
        };

        harness_start(h);
        for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
                int pipe_fds[2];
                assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
                int fds[] = { pipe_fds[1], sim_object("vfio-container:noncoherent") };
                json_object_put(vconn_call_error(h->sync, calls[i].method, calls[i].params, fds, 2, calls[i].error));
                close(pipe_fds[1]);
                assert_true(writers_gone(pipe_fds[0]));
                expect_daemon_fds(h, "/memfd:coherencyd-sim:vfio-container", 0);
                close(pipe_fds[0]);
                close(fds[1]);
        }

        /* With a real VM and container, for a device that is not there: the same. */
        int vm = sim_object("kvm-vm"), container = sim_object("vfio-container:noncoherent");
        int fds[] = { vm, container };
        json_object_put(vconn_call_error(h->sync, BROKER "RequestGrant",
                                         "{\"vm\":0,\"device\":\"0000:00:1f.0\",\"iommu\":1}", fds, 2,
                                         BROKER "NoSuchDevice"));
        expect_daemon_fds(h, "/memfd:coherencyd-sim", 0);
        close(vm);
        close(container);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_pipe_as_vm_is_invalid_file_descriptor),
                HARNESS_TEST(test_regular_file_as_iommu_is_invalid_file_descriptor),
                HARNESS_TEST(test_tmpfs_file_as_iommu_is_invalid_file_descriptor),
                HARNESS_TEST(test_o_path_descriptor_as_iommu_is_invalid_file_descriptor),
                HARNESS_TEST(test_vm_as_iommu_is_invalid_file_descriptor),
                HARNESS_TEST(test_group_as_iommu_is_invalid_file_descriptor),
                HARNESS_TEST(test_memfd_of_no_kernel_object_as_iommu_is_invalid_file_descriptor),
                HARNESS_TEST(test_container_as_vm_is_invalid_file_descriptor),
                HARNESS_TEST(test_read_only_reopen_of_vm_is_invalid_file_descriptor),
                HARNESS_TEST(test_descriptor_index_past_the_message_is_invalid_parameter),
                HARNESS_TEST(test_one_descriptor_for_two_parameters_is_invalid_parameter),
                HARNESS_TEST(test_missing_parameter_is_invalid_parameter),
                HARNESS_TEST(test_parameter_of_wrong_type_is_invalid_parameter),
                HARNESS_TEST(test_unknown_parameter_is_invalid_parameter),
                HARNESS_TEST(test_device_that_is_no_canonical_pci_address_is_invalid_parameter),
                HARNESS_TEST(test_device_given_as_a_path_is_invalid_parameter),
                HARNESS_TEST(test_device_that_does_not_exist_is_no_such_device),
                HARNESS_TEST(test_device_not_bound_to_vfio_pci_is_no_such_device),
                HARNESS_TEST(test_unknown_method_is_method_not_found),
                HARNESS_TEST(test_unknown_grant_is_no_such_grant),
                HARNESS_TEST(test_malformed_grant_id_is_invalid_parameter),
                HARNESS_TEST(test_revoke_with_kill_of_wrong_type_is_invalid_parameter_and_revokes_nothing),
                HARNESS_TEST(test_malformed_json_closes_the_connection),
                HARNESS_TEST(test_duplicate_key_closes_the_connection),
                HARNESS_TEST(test_message_without_nul_past_64_kib_closes_the_connection),
                HARNESS_TEST(test_message_with_200_descriptors_closes_the_connection_and_all_are_closed),
                HARNESS_TEST(test_descriptors_on_a_call_that_takes_none_are_closed),
                HARNESS_TEST(test_message_split_across_writes_is_answered),
                HARNESS_TEST(test_descriptors_sent_in_the_middle_of_a_message_close_the_connection),
                HARNESS_TEST(test_call_on_a_streaming_connection_closes_it),
                HARNESS_TEST(test_max_grants_per_connection_is_limit_exceeded),
                HARNESS_TEST(test_max_connections_per_user_is_limit_exceeded_for_the_next_connection),
                HARNESS_TEST(test_error_replies_come_after_the_vmms_descriptors_are_closed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
