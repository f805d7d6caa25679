/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The service around the decisions: the operator's live Monitor stream,
 * Varlink introspection (the interface text the daemon serves is the file it
 * ships) and conformance (oneway, pipelined calls), where records go when
 * journald is stuck or absent, and one daemon per socket.
 */
#include <limits.h>
#include <signal.h>
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

static void test_monitor_streams_decisions_and_grant_ends_of_other_clients(void **state) {
        struct harness *h = *state;
        struct peer vmm;
        int held, group;

        harness_start(h);
        /* One grant before anyone watches. */
        int before = sim_object("kvm-vm");
        json_object_put(request_grant_take(h->sync, before, 3, "noncoherent", &held));

        struct vconn *monitor = vconn_connect(h);
        vconn_send(monitor, MANAGER "Monitor", NULL, NULL, 0, true);
        /* A first reply at once, before anything else happens. */
        json_object *e = vconn_next_event(monitor, "subscribed");
        assert_int_equal(jint(e, "grants"), 1);
        json_object_put(e);

        peer_connect(h, 1234, 4321, NULL, 0, &vmm);
        int vm = sim_object("kvm-vm");
        json_object *granted = request_grant_take(vmm.conn, vm, 4, "noncoherent", &group);
        const char *grant = jstr(granted, "grant");
        json_object_put(request_grant(vmm.conn, vm, 5, "noncoherent"));
        /* The VMM lets go of its file, then releases. */
        close(group);
        json_object_put(release_grant(vmm.conn, grant));

        e = vconn_next_event(monitor, "decision");
        assert_string_equal(jstr(e, "grant"), grant);
        assert_string_equal(jstr(e, "decision"), "granted");
        assert_string_equal(jstr(e, "reason"), "platform-cannot-enforce");
        assert_string_equal(jstr(e, "rule"), jstr(granted, "rule"));
        assert_string_equal(jstr(e, "mode"), "automatic");
        assert_string_equal(jstr(e, "wbinvd"), "allowed");
        assert_string_equal(jstr(e, "kvmAttach"), "add");
        assert_string_equal(jstr(e, "vmWbinvd"), "allowed");
        assert_string_equal(jstr(e, "device"), "0000:00:05.0");
        assert_int_equal(jint(e, "peerPid"), vmm.pid);
        assert_int_equal(jint(e, "peerUid"), 1234);
        json_object_put(e);

        e = vconn_next_event(monitor, "decision");
        assert_false(json_object_object_get_ex(e, "grant", NULL));
        assert_string_equal(jstr(e, "decision"), "refused");
        assert_string_equal(jstr(e, "reason"), "policy-force-disable");
        assert_string_equal(jstr(e, "device"), "0000:00:06.0");
        assert_false(json_object_object_get_ex(e, "kvmAttach", NULL));
        json_object_put(e);

        /* The group was free when released: the grant ended there and then (whether an
         * "ending" comes first is test-integ-grants' business). */
        struct coh_reply reply;
        assert_int_equal(vconn_recv(monitor, &reply), 0);
        e = json_object_get(reply.parameters);
        coh_reply_done(&reply);
        if (strcmp(jstr(e, "event"), "ending") == 0) {
                json_object_put(e);
                e = vconn_next_event(monitor, "ended");
        }
        assert_string_equal(jstr(e, "event"), "ended");
        assert_string_equal(jstr(e, "grant"), grant);
        assert_string_equal(jstr(e, "end"), "release");
        assert_string_equal(jstr(e, "vmWbinvd"), "noop");
        assert_string_equal(jstr(e, "device"), "0000:00:05.0");
        assert_int_equal(jint(e, "peerUid"), 1234);
        json_object_put(e);

        json_object_put(granted);
        close(vm);
        close(held);
        close(before);
        peer_done(&vmm);
        vconn_free(monitor);
}

static void test_monitor_without_more_is_expected_more(void **state) {
        struct harness *h = *state;

        harness_start(h);
        json_object_put(vconn_call_error(h->sync, MANAGER "Monitor", NULL, NULL, 0, SERVICE "ExpectedMore"));
}

static const char *const interfaces[] = { "io.coherencyd.Broker", "io.coherencyd.Manager", "org.varlink.service" };

static void test_service_get_info_lists_the_three_interfaces(void **state) {
        struct harness *h = *state;

        harness_start(h);
        json_object *p = vconn_call(h->sync, SERVICE "GetInfo", NULL, NULL, 0);
        json_object *list = jmember(p, "interfaces");
        assert_int_equal(json_object_array_length(list), 3);
        for (size_t i = 0; i < 3; i++) {
                bool found = false;
                for (size_t k = 0; k < 3; k++)
                        found |= strcmp(json_object_get_string(json_object_array_get_idx(list, k)), interfaces[i]) == 0;
                if (!found)
                        fail_msg("%s missing from %s", interfaces[i], json_object_to_json_string(list));
        }
        json_object_put(p);
}

/* The whole of a source file (free()). */
static char *read_source(const struct harness *h, const char *relative) {
        char path[PATH_MAX], *text = NULL;
        size_t size = 0;

        snprintf(path, sizeof path, "%s/%s", h->source_dir, relative);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        FILE *m = open_memstream(&text, &size);
        assert_non_null(m);
        for (int c; (c = fgetc(f)) != EOF;)
                fputc(c, m);
        fclose(f);
        assert_int_equal(fclose(m), 0);
        return text;
}

static void test_interface_descriptions_are_the_shipped_varlink_files(void **state) {
        struct harness *h = *state;
        char params[128], file[128];

        harness_start(h);
        for (size_t i = 0; i < 3; i++) {
                snprintf(params, sizeof params, "{\"interface\":\"%s\"}", interfaces[i]);
                snprintf(file, sizeof file, "proto/%s.varlink", interfaces[i]);
                json_object *p = vconn_call(h->sync, SERVICE "GetInterfaceDescription", params, NULL, 0);
                char *text = read_source(h, file);
                assert_string_equal(jstr(p, "description"), text);
                free(text);
                json_object_put(p);
        }
}

static void test_unknown_interface_is_interface_not_found(void **state) {
        struct harness *h = *state;

        harness_start(h);
        json_object *p = vconn_call_error(h->sync, SERVICE "GetInterfaceDescription",
                                          "{\"interface\":\"io.example.Nothing\"}", NULL, 0,
                                          SERVICE "InterfaceNotFound");
        assert_string_equal(jstr(p, "interface"), "io.example.Nothing");
        json_object_put(p);
}

/* Varlink: a oneway call is answered by nothing at all, so the next message on the
 * connection is the answer to the next call, whatever became of the oneway one. */
static void test_oneway_calls_get_no_reply_even_when_they_fail(void **state) {
        struct harness *h = *state;
        static const char unknown_grant[] =
                "{\"method\":\"io.coherencyd.Broker.ReleaseGrant\",\"parameters\":{\"grant\":\"g-0123456789abcdef\"},"
                "\"oneway\":true}";
        static const char unknown_method[] = "{\"method\":\"io.coherencyd.Broker.Frobnicate\",\"oneway\":true}";
        char release[256];

        harness_start(h);
        int vm = sim_object("kvm-vm"), group;
        json_object *p = request_grant_take(h->sync, vm, 4, "noncoherent", &group);
        snprintf(release, sizeof release,
                 "{\"method\":\"io.coherencyd.Broker.ReleaseGrant\",\"parameters\":{\"grant\":\"%s\"},\"oneway\":true}",
                 jstr(p, "grant"));
        json_object_put(p);
        close(group);

        vconn_send_raw(h->sync, release, strlen(release) + 1, NULL, 0);
        vconn_send_raw(h->sync, unknown_grant, sizeof unknown_grant, NULL, 0);
        vconn_send_raw(h->sync, unknown_method, sizeof unknown_method, NULL, 0);
        p = vconn_call(h->sync, SERVICE "GetInfo", NULL, NULL, 0);
        assert_int_equal(json_object_array_length(jmember(p, "interfaces")), 3);
        json_object_put(p);
        /* The oneway release was carried out all the same. */
        json_object *grants = list_grants(h->sync, MANAGER "ListGrants");
        assert_int_equal(json_object_array_length(grants), 0);
        json_object_put(grants);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_GRANT_END, "COHERENCYD_END=release", NULL));
        close(vm);
}

/* Several calls in one write: each is answered, in order. */
static void test_calls_sent_back_to_back_are_answered_in_order(void **state) {
        struct harness *h = *state;
        char *burst = NULL, want[128];
        size_t size = 0;

        harness_start(h);
        FILE *f = open_memstream(&burst, &size);
        assert_non_null(f);
        for (size_t i = 0; i < 3; i++) {
                fprintf(f, "{\"method\":\"" SERVICE "GetInterfaceDescription\",\"parameters\":{\"interface\":\"%s\"}}",
                        interfaces[i]);
                fputc(0, f);
        }
        assert_int_equal(fclose(f), 0);
        vconn_send_raw(h->sync, burst, size, NULL, 0);
        free(burst);

        for (size_t i = 0; i < 3; i++) {
                struct coh_reply reply;
                assert_int_equal(vconn_recv(h->sync, &reply), 0);
                assert_null(reply.error);
                snprintf(want, sizeof want, "\ninterface %s\n", interfaces[i]);
                assert_non_null(strstr(jstr(reply.parameters, "description"), want));
                coh_reply_done(&reply);
        }
}

static pid_t journald_pid(void) {
        const char *pid = getenv("COH_JOURNALD_PID");
        assert_non_null(pid);
        return (pid_t) atoi(pid);
}

/* Whatever happened in the test, the journald of the remaining tests runs. */
static int resume_journald_teardown(void **state) {
        (void) kill(journald_pid(), SIGCONT);
        return harness_teardown(state);
}

static void test_stopped_journald_stalls_no_request_and_its_records_arrive_later(void **state) {
        struct harness *h = *state;
        /* Far more than journald's socket queue (net.unix.max_dgram_qlen + 1) takes. */
        const size_t n = 40;

        /* Every refusal in full (not folded into one record and a count). */
        harness_write_config(h, "coherencyd.conf", "[Broker]\nAccess=allow\nMode=automatic\nRefusalLogIntervalSec=0\n");
        harness_start(h);
        int vm = sim_object("kvm-vm");
        assert_int_equal(kill(journald_pid(), SIGSTOP), 0);
        for (size_t i = 0; i < n; i++) {
                json_object *p = request_grant(h->sync, vm, 5, "noncoherent");
                assert_string_equal(jstr(p, "decision"), "refused");
                assert_int_equal(vconn_reply_fds(h->sync), 0);
                json_object_put(p);
        }
        assert_int_equal(kill(journald_pid(), SIGCONT), 0);
        json_object_put(journal_expect(h, n, MESSAGE_ID_REFUSED, "COHERENCYD_REASON=policy-force-disable", NULL));
        close(vm);
}

static void test_without_journald_decisions_go_to_stderr(void **state) {
        struct harness *h = *state;
        char field[96];

        h->options.no_journald = true;
        h->options.capture_stderr = true;
        harness_start(h);
        int vm = sim_object("kvm-vm"), group;
        json_object *p = request_grant_take(h->sync, vm, 4, "noncoherent", &group);

        char *line = harness_stderr_line(h, "COHERENCYD_DECISION=granted");
        assert_non_null(strstr(line, "COHERENCYD_REASON=platform-cannot-enforce"));
        assert_non_null(strstr(line, "COHERENCYD_WBINVD=allowed"));
        assert_non_null(strstr(line, "COHERENCYD_KVM_ATTACH=add"));
        snprintf(field, sizeof field, "COHERENCYD_GRANT=%s", jstr(p, "grant"));
        assert_non_null(strstr(line, field));
        free(line);
        json_object_put(p);
        close(group);
        close(vm);
}

/* An operator starting a second instance by mistake must not cut the running one off
 * from its clients (its grants would stay, and new VMMs would reach a daemon that
 * knows nothing of them). */
static void test_second_daemon_on_a_live_socket_refuses_to_start_and_the_first_keeps_serving(void **state) {
        struct harness *h = *state;
        void *second_state;

        harness_start(h);
        assert_int_equal(harness_setup(&second_state), 0);
        struct harness *second = second_state;
        snprintf(second->socket, sizeof second->socket, "%s", h->socket);
        second->options.capture_stderr = true;
        int status = harness_try_start(second);
        char *said = status != 0 ? harness_stderr_line(second, h->socket) : NULL;
        assert_int_equal(harness_teardown(&second_state), 0);
        if (status == 0)
                fail_msg("a second coherencyd started on %s, the socket of a running one", h->socket);
        free(said);

        struct vconn *c = vconn_connect(h);
        json_object_put(vconn_call(c, SERVICE "GetInfo", NULL, NULL, 0));
        vconn_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_monitor_streams_decisions_and_grant_ends_of_other_clients),
                HARNESS_TEST(test_monitor_without_more_is_expected_more),
                HARNESS_TEST(test_service_get_info_lists_the_three_interfaces),
                HARNESS_TEST(test_interface_descriptions_are_the_shipped_varlink_files),
                HARNESS_TEST(test_unknown_interface_is_interface_not_found),
                HARNESS_TEST(test_oneway_calls_get_no_reply_even_when_they_fail),
                HARNESS_TEST(test_calls_sent_back_to_back_are_answered_in_order),
                cmocka_unit_test_setup_teardown(test_stopped_journald_stalls_no_request_and_its_records_arrive_later,
                                                harness_setup, resume_journald_teardown),
                HARNESS_TEST(test_without_journald_decisions_go_to_stderr),
                HARNESS_TEST(test_second_daemon_on_a_live_socket_refuses_to_start_and_the_first_keeps_serving),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
