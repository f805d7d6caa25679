/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What no client can get past, however it behaves (issue 9): calls sent back
 * to back keep their descriptors; a client that pipelines is served in turn
 * with the others (issue 11); unprivileged connections from any number of
 * uids never lock the operator out (ReservedAdminConnections=); the limits are
 * made to fit RLIMIT_NOFILE at start; an accept paused on EMFILE goes on when a
 * grant's descriptors come back, and a connection it has no pidfd for is
 * refused; a call begun and never finished is cut off
 * (MessageTimeoutSec=); a Monitor that stops reading is ended and its queue
 * dropped.
 *
 * Connections adopted from the file descriptor store count against the limits
 * too, but the integration harness cannot restart the daemon with a store (that
 * is systemd's): they are in s->conns like any other, which the lockout test
 * counts on.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

/* Group 4 sits behind the IOMMU that cannot enforce: granted. Group 9 is the
 * host's management NIC, which the demo policy refuses to everyone. */
#define GRANTED_GROUP 4
#define REFUSED_GROUP 9

/* Unprivileged VMM users, none equal to another's, to root's or nobody's; and an admin group. */
#define UID_A ((uid_t) 2001)
#define UID_B ((uid_t) 2002)
#define UID_C ((uid_t) 2003)
#define UID_D ((uid_t) 2004)
#define UID_OPERATOR ((uid_t) 2005)
#define GID_VMM ((gid_t) 4321)
#define GID_ADMIN ((gid_t) 4400)

static void write_conf(struct harness *h, const char *extra) {
        char conf[512];

        snprintf(conf, sizeof conf, "[Broker]\nAccess=allow\nMode=automatic\n%s", extra);
        harness_write_config(h, "coherencyd.conf", conf);
}

/* The daemon's answer to a connection it refuses: LimitExceeded(limit), then it hangs up. */
static void expect_refused(struct vconn *c, const char *limit) {
        struct coh_reply reply;

        assert_int_equal(vconn_recv(c, &reply), 0);
        if (!reply.error || strcmp(reply.error, BROKER "LimitExceeded") != 0)
                fail_msg("expected LimitExceeded, got %s", json_object_to_json_string(reply.root));
        assert_string_equal(jstr(reply.parameters, "limit"), limit);
        coh_reply_done(&reply);
        vconn_expect_closed(c);
}

/* ---- framing -------------------------------------------------------------- */

/* Stops the daemon until resume_daemon(): what is sent meanwhile is all queued
 * when it reads again, for the kernel to glue into reads as it likes. */
static void stop_daemon(struct harness *h) {
        siginfo_t si = {};

        assert_int_equal(kill(h->pid, SIGSTOP), 0);
        /* WNOWAIT: the harness reaps it later, as ever. */
        assert_int_equal(waitid(P_PID, (id_t) h->pid, &si, WSTOPPED | WNOWAIT), 0);
        assert_int_equal(si.si_code, CLD_STOPPED);
}

static void resume_daemon(struct harness *h) {
        assert_int_equal(kill(h->pid, SIGCONT), 0);
}

/*
 * A call without descriptors and, before its answer, one with them (issue 9's
 * first finding: the connection was reset and neither answered), then one more
 * with descriptors: all answered in order, each with its own descriptors.
 */
static void test_calls_back_to_back_with_and_without_descriptors_are_all_answered(void **state) {
        struct harness *h = *state;
        struct coh_reply reply;
        char params[2][160];

        harness_start_leak_checked(h);
        struct vconn *c = vconn_connect(h);
        vconn_ping(c);
        int vm = sim_object("kvm-vm");
        int grant_fds[2] = { vm, sim_object("vfio-container:noncoherent") };
        int probe_fd = sim_object("vfio-container:coherent");
        snprintf(params[0], sizeof params[0], "{\"vm\":0,\"device\":\"%s\",\"iommu\":1}", group_slot(GRANTED_GROUP));
        snprintf(params[1], sizeof params[1], "{\"device\":\"%s\",\"iommu\":0}", group_slot(2));

        stop_daemon(h);
        vconn_send(c, SERVICE "GetInfo", NULL, NULL, 0, false);
        vconn_send(c, BROKER "RequestGrant", params[0], grant_fds, 2, false);
        vconn_send(c, BROKER "Probe", params[1], &probe_fd, 1, false);
        resume_daemon(h);
        close(grant_fds[1]);
        close(probe_fd);

        assert_int_equal(vconn_recv(c, &reply), 0);
        assert_null(reply.error);
        assert_true(json_object_object_get_ex(reply.parameters, "interfaces", NULL));
        coh_reply_done(&reply);

        assert_int_equal(vconn_recv(c, &reply), 0);
        if (reply.error)
                fail_msg("RequestGrant: %s", json_object_to_json_string(reply.root));
        assert_string_equal(jstr(reply.parameters, "decision"), "granted");
        assert_int_equal(vconn_reply_fds(c), 1);
        char *grant = strdup(jstr(reply.parameters, "grant"));
        int group = vconn_take_fd(c, 0);
        assert_true(group >= 0);
        coh_reply_done(&reply);

        /* The probe used its own container: coherent, behind an enforcing IOMMU. */
        assert_int_equal(vconn_recv(c, &reply), 0);
        if (reply.error)
                fail_msg("Probe: %s", json_object_to_json_string(reply.root));
        assert_string_equal(jstr(reply.parameters, "decision"), "not-needed");
        assert_int_equal(vconn_reply_fds(c), 0);
        coh_reply_done(&reply);

        close(group);
        json_object *p = release_grant(c, grant);
        assert_string_equal(jstr(p, "state"), "ended");
        json_object_put(p);
        free(grant);
        close(vm);
        vconn_free(c);
}

/* ---- fair service ----------------------------------------------------------- */

/*
 * Issue 11: a client that pipelines many calls gets one served per turn of
 * the daemon's loop, as every other ready client does, never many back to
 * back while the others wait. Both are queued while the daemon is stopped,
 * the pipeliner's first (epoll hands out readiness in the order it arose);
 * Monitor tells the order of the decisions: the other client's is the second,
 * not the last.
 */
static void test_a_client_that_pipelines_does_not_starve_another(void **state) {
        enum { N = 8 };
        struct harness *h = *state;
        struct peer fast, other;
        struct coh_reply reply;
        char params[160];
        uid_t order[N + 1];

        write_conf(h, "");
        harness_start(h);
        struct vconn *monitor = vconn_connect(h);
        vconn_send(monitor, MANAGER "Monitor", NULL, NULL, 0, true);
        json_object_put(vconn_next_event(monitor, "subscribed"));
        peer_connect(h, UID_A, GID_VMM, NULL, 0, &fast);
        peer_connect(h, UID_B, GID_VMM, NULL, 0, &other);
        int fds[2] = { sim_object("kvm-vm"), sim_object("vfio-container:noncoherent") };
        snprintf(params, sizeof params, "{\"vm\":0,\"device\":\"%s\",\"iommu\":1}", group_slot(REFUSED_GROUP));

        stop_daemon(h);
        for (size_t i = 0; i < N; i++)
                vconn_send(fast.conn, BROKER "RequestGrant", params, fds, 2, false);
        vconn_send(other.conn, BROKER "RequestGrant", params, fds, 2, false);
        resume_daemon(h);
        close(fds[0]);
        close(fds[1]);

        for (size_t i = 0; i < N + 1; i++) {
                json_object *e = vconn_next_event(monitor, "decision");
                order[i] = (uid_t) jint(e, "peerUid");
                json_object_put(e);
        }
        assert_int_equal(order[0], UID_A);
        assert_int_equal(order[1], UID_B);
        for (size_t i = 2; i < N + 1; i++)
                assert_int_equal(order[i], UID_A);

        /* Every call answered, in order, on its own connection. */
        for (size_t i = 0; i < N + 1; i++) {
                struct vconn *c = i < N ? fast.conn : other.conn;
                assert_int_equal(vconn_recv(c, &reply), 0);
                if (reply.error)
                        fail_msg("RequestGrant: %s", json_object_to_json_string(reply.root));
                assert_string_equal(jstr(reply.parameters, "decision"), "refused");
                coh_reply_done(&reply);
        }
        peer_done(&fast);
        peer_done(&other);
        vconn_free(monitor);
}

/* ---- the operator's reserve ------------------------------------------------- */

/*
 * MaxConnections= filled by unprivileged connections of several uids (none
 * over its per-user limit): the next unprivileged one is refused, but root and
 * an AdminGroup= member still connect and list and revoke, up to
 * ReservedAdminConnections= beyond it; past that, they are refused too.
 */
static void test_unprivileged_connections_never_lock_the_operator_out(void **state) {
        struct harness *h = *state;
        const uid_t uids[] = { UID_A, UID_A, UID_B, UID_B, UID_C };
        const size_t n = sizeof uids / sizeof uids[0];
        struct peer vmm[5], late, operator;
        const gid_t admin = GID_ADMIN;
        char extra[160];

        snprintf(extra, sizeof extra,
                 "MaxConnections=6\nMaxConnectionsPerUser=2\nReservedAdminConnections=2\nAdminGroup=%u\n",
                 (unsigned) GID_ADMIN);
        write_conf(h, extra);
        harness_start_leak_checked(h);
        /* The harness's own (root) connection is the first of the six. */
        for (size_t i = 0; i < n; i++) {
                peer_connect(h, uids[i], GID_VMM, NULL, 0, &vmm[i]);
                vconn_ping(vmm[i].conn);
        }
        peer_connect(h, UID_D, GID_VMM, NULL, 0, &late);
        expect_refused(late.conn, "MaxConnections");
        peer_done(&late);

        /* Root, with a grant to revoke. */
        struct vconn *root = vconn_connect(h);
        int vm = sim_object("kvm-vm"), group = -1;
        json_object *p = request_grant_take(vmm[0].conn, vm, GRANTED_GROUP, "noncoherent", &group);
        char *grant = strdup(jstr(p, "grant"));
        json_object_put(p);
        json_object *grants = list_grants(root, MANAGER "ListGrants");
        assert_non_null(grant_in(grants, grant));
        json_object_put(grants);
        char params[96];
        snprintf(params, sizeof params, "{\"grant\":\"%s\"}", grant);
        json_object_put(vconn_call(root, MANAGER "RevokeGrant", params, NULL, 0));
        close(group);

        /* A member of AdminGroup= (not its primary group, not root): the second reserved slot. */
        peer_connect(h, UID_OPERATOR, GID_VMM, &admin, 1, &operator);
        grants = list_grants(operator.conn, MANAGER "ListGrants");
        json_object_put(grants);

        /* The reserve is a bound too. */
        struct vconn *more = vconn_connect(h);
        expect_refused(more, "MaxConnections");
        vconn_free(more);
        peer_connect(h, UID_D, GID_VMM, NULL, 0, &late);
        expect_refused(late.conn, "MaxConnections");
        peer_done(&late);

        peer_done(&operator);
        vconn_free(root);
        for (size_t i = 0; i < n; i++)
                peer_done(&vmm[i]);
        free(grant);
        close(vm);
}

/* ---- descriptors ----------------------------------------------------------- */

/*
 * Started with RLIMIT_NOFILE 64: 32 for the daemon's own, room for 16
 * connections, so MaxConnections=256 and ReservedAdminConnections=8 are
 * lowered to 8 and 8, and it says so. The lowered limits are the ones enforced.
 */
static void test_limits_are_lowered_to_fit_rlimit_nofile_at_start(void **state) {
        struct harness *h = *state;
        struct peer vmm[8];

        h->options.fd_limit = 64;
        harness_start_leak_checked(h);
        json_object_put(journal_expect(h, 1, NULL, "PRIORITY=4",
                                       "MESSAGE=RLIMIT_NOFILE 64 holds 16 connection(s) beside the daemon's own "
                                       "descriptors: MaxConnections=256 lowered to 8, ReservedAdminConnections=8 to "
                                       "8 (raise LimitNOFILE=)",
                                       NULL));

        /* The harness's connection and seven of nobody's make eight; the ninth is refused. */
        for (size_t i = 0; i < 7; i++) {
                peer_connect_nobody(h, &vmm[i]);
                vconn_ping(vmm[i].conn);
        }
        peer_connect_nobody(h, &vmm[7]);
        expect_refused(vmm[7].conn, "MaxConnections");
        struct vconn *root = vconn_connect(h);
        vconn_ping(root);

        vconn_free(root);
        for (size_t i = 0; i < 8; i++)
                peer_done(&vmm[i]);
}

/* The daemon's descriptor numbers, ascending; returns how many. */
static size_t daemon_fd_numbers(const struct harness *h, int *out, size_t max) {
        char path[64];
        struct dirent *de;
        size_t n = 0;

        snprintf(path, sizeof path, "/proc/%d/fd", (int) h->pid);
        DIR *d = opendir(path);
        assert_non_null(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.') {
                        assert_true(n < max);
                        out[n++] = atoi(de->d_name);
                }
        closedir(d);
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
                        int t = out[j];
                        out[j] = out[j - 1];
                        out[j - 1] = t;
                }
        return n;
}

/* The limit below which exactly n_free numbers are free, and that is free itself:
 * the (n_free + 1)th free number (with 0, the number the kernel hands out next). */
static int limit_with_free(const int *fds, size_t n, unsigned n_free) {
        int number = 0;
        size_t k = 0;
        for (;; number++) {
                while (k < n && fds[k] < number)
                        k++;
                if (k < n && fds[k] == number)
                        continue;
                if (n_free-- == 0)
                        return number;
        }
}

/* The daemon's RLIMIT_NOFILE set to limit (the hard one kept); returns the old one. */
static struct rlimit daemon_set_fd_limit(struct harness *h, int limit) {
        struct rlimit old, rl;
        assert_int_equal(prlimit(h->pid, RLIMIT_NOFILE, NULL, &old), 0);
        rl = (struct rlimit) { .rlim_cur = (rlim_t) limit, .rlim_max = old.rlim_max };
        assert_int_equal(prlimit(h->pid, RLIMIT_NOFILE, &rl, NULL), 0);
        return old;
}

#define FDS_MAX 256
#define FILLERS_MAX 32
#define PAUSING "MESSAGE=accept: Too many open files; pausing until descriptors come back"

/*
 * The limits fit RLIMIT_NOFILE, so connections alone no longer run the daemon
 * out of descriptors; lowered while it runs, they still do: it pauses accepting
 * (said once), and each client that leaves lets the next one in.
 */
static void test_accept_paused_on_emfile_goes_on_as_clients_leave(void **state) {
        struct harness *h = *state;
        struct vconn *c[8];
        const size_t n = sizeof c / sizeof c[0];
        int fds[FDS_MAX];

        harness_start_leak_checked(h);
        harness_idle(h);
        unsigned before = daemon_fds(h, NULL);
        size_t k = daemon_fd_numbers(h, fds, FDS_MAX);
        /* Two connections, each its socket and its peer's pidfd: nothing is left over for
         * a third's socket alone, which would be refused without a pidfd. */
        struct rlimit old = daemon_set_fd_limit(h, limit_with_free(fds, k, 4));
        for (size_t i = 0; i < n; i++)
                c[i] = vconn_connect(h); /* the kernel queues what the daemon cannot accept */
        json_object_put(journal_expect_eventually(h, 1, NULL, "PRIORITY=4", PAUSING, NULL));

        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        vconn_free(c[i - 1]);
                vconn_ping(c[i]);
        }
        vconn_free(c[n - 1]);
        assert_int_equal(prlimit(h->pid, RLIMIT_NOFILE, &old, NULL), 0);
        expect_daemon_fds_settled(h, NULL, before);

        /* Paused, not spinning on the listener: a warning per time it ran out, no more. */
        json_object *paused = journal_expect_at_least(h, 1, NULL, "PRIORITY=4", PAUSING, NULL);
        assert_true(json_object_array_length(paused) <= n);
        json_object_put(paused);
}

/*
 * Out of descriptors (its RLIMIT_NOFILE lowered while it runs, to leave one
 * free number), the daemon accepts a connection but has no pidfd for its peer:
 * that one is refused, with a reason its client reads (issue 11: never served
 * untracked), and the daemon pauses accepting, so the next one waits rather
 * than being refused too. Then a grant ends because its VMM let go of the group
 * (no call, no connection closing): the descriptor that frees lets the waiting
 * connection in, served whole.
 */
static void test_accept_paused_on_emfile_goes_on_when_a_grant_ends(void **state) {
        struct harness *h = *state;
        int before[FDS_MAX], after[FDS_MAX];
        struct vconn *fillers[FILLERS_MAX];
        size_t n_fillers = 0;
        int group;

        harness_start_leak_checked(h);
        struct vconn *c = vconn_connect(h);
        vconn_ping(c);
        harness_idle(h);
        size_t n_before = daemon_fd_numbers(h, before, FDS_MAX);

        /* Released while we hold the group: ending, the daemon keeps only its end of it. */
        int vm = sim_object("kvm-vm");
        json_object *p = request_grant_take(c, vm, GRANTED_GROUP, "noncoherent", &group);
        char *grant = strdup(jstr(p, "grant"));
        json_object_put(p);
        close(vm);
        p = release_grant(c, grant);
        assert_string_equal(jstr(p, "state"), "ending");
        json_object_put(p);
        harness_idle(h);
        size_t n_after = daemon_fd_numbers(h, after, FDS_MAX);
        /* What the ending grant holds (its end of the group, to see it let go): the numbers new since. */
        int end = -1;
        for (size_t i = 0, k = 0; i < n_after; i++) {
                while (k < n_before && before[k] < after[i])
                        k++;
                if (k < n_before && before[k] == after[i])
                        continue;
                end = after[i];
        }
        assert_true(end >= 0);

        /* Freeing `end` must free a number below the limit: connections fill the gaps under it first. */
        while (limit_with_free(after, n_after, 0) < end) {
                assert_true(n_fillers < FILLERS_MAX);
                fillers[n_fillers] = vconn_connect(h);
                vconn_ping(fillers[n_fillers++]);
                harness_idle(h);
                n_after = daemon_fd_numbers(h, after, FDS_MAX);
        }
        /* One number free below the limit: a socket, and no pidfd for its peer. */
        struct rlimit old = daemon_set_fd_limit(h, limit_with_free(after, n_after, 1));

        struct vconn *refused = vconn_connect_queued(h);
        expect_refused(refused, "LimitNOFILE");
        char why[128];
        snprintf(why, sizeof why, "MESSAGE=Connection refused: no pidfd for pid %d (uid 0): Too many open files",
                 (int) getpid());
        json_object_put(journal_expect_eventually(h, 1, NULL, "PRIORITY=5", why, NULL));
        json_object_put(journal_expect_eventually(h, 1, NULL, "PRIORITY=4", PAUSING, NULL));

        /* Paused: it waits, though the refused one's number is free again. */
        struct vconn *late = vconn_connect_queued(h);

        /* The VMM lets go: the grant ends, its descriptor comes back, the accept goes on. */
        close(group);
        vconn_ping(late);
        json_object_put(journal_expect(h, 1, MESSAGE_ID_GRANT_END, NULL));
        json_object_put(journal_expect(h, 1, NULL, "PRIORITY=5", why, NULL));

        assert_int_equal(prlimit(h->pid, RLIMIT_NOFILE, &old, NULL), 0);
        vconn_free(late);
        vconn_free(refused);
        for (size_t i = 0; i < n_fillers; i++)
                vconn_free(fillers[i]);
        free(grant);
        vconn_free(c);
}

/* ---- a call begun and not finished -------------------------------------- */

/*
 * MessageTimeoutSec=1: connections that sent part of a call (one with
 * descriptors on its first byte) and stopped are closed, and the descriptors
 * with them; one that sent only whole calls, idle as long, is not.
 */
static void test_a_call_begun_and_not_finished_is_cut_off(void **state) {
        struct harness *h = *state;
        static const char half[] = "{\"method\":\"org.varlink.service.Get";
        int fds[2];

        write_conf(h, "MessageTimeoutSec=1\n");
        harness_start_leak_checked(h);
        struct vconn *idle = vconn_connect(h);
        vconn_ping(idle);
        struct vconn *a = vconn_connect(h), *b = vconn_connect(h);
        vconn_ping(a);
        vconn_ping(b);
        harness_idle(h);
        unsigned baseline = daemon_fds(h, NULL);

        vconn_send_raw(a, half, sizeof half - 1, NULL, 0);
        fds[0] = sim_object("kvm-vm");
        fds[1] = sim_object("vfio-container:coherent");
        vconn_send_raw(b, half, sizeof half - 1, fds, 2);
        close(fds[0]);
        close(fds[1]);

        vconn_expect_closed(a);
        vconn_expect_closed(b);
        vconn_ping(idle);
        expect_daemon_fds_settled(h, NULL, baseline - 4);
        json_object *notes = journal_expect_at_least(h, 2, NULL, "PRIORITY=5", NULL);
        size_t cut = 0;
        for (size_t i = 0; i < json_object_array_length(notes); i++)
                cut += strstr(journal_field(json_object_array_get_idx(notes, i), "MESSAGE"),
                              "a call begun 1s ago is not whole") != NULL;
        assert_int_equal(cut, 2);
        json_object_put(notes);

        vconn_free(a);
        vconn_free(b);
        vconn_free(idle);
}

/* ---- a Monitor that stops reading ----------------------------------------- */

#define STREAM_BACKLOG_MAX (1024u * 1024u) /* methods.c */

/* One refusal, which Monitor sees as one decision event. */
static void refusal(struct vconn *c, int vm) {
        json_object *p = request_grant(c, vm, REFUSED_GROUP, "noncoherent");
        assert_string_equal(jstr(p, "decision"), "refused");
        json_object_put(p);
}

/*
 * A subscriber that never reads while decisions go on: once more than 1 MiB is
 * queued for it, its stream ends with LimitExceeded(StreamBacklog) and what was
 * queued is dropped, so it gets far less than was sent its way; it is closed
 * once it has read the error. Other subscribers see every event.
 */
static void test_a_monitor_that_stops_reading_is_ended_and_its_queue_dropped(void **state) {
        struct harness *h = *state;
        struct coh_reply reply;

        harness_start_leak_checked(h);
        struct vconn *slow = vconn_connect(h), *reader = vconn_connect(h), *c = vconn_connect(h);
        vconn_send(slow, MANAGER "Monitor", NULL, NULL, 0, true);
        json_object_put(vconn_next_event(slow, "subscribed"));
        vconn_send(reader, MANAGER "Monitor", NULL, NULL, 0, true);
        json_object_put(vconn_next_event(reader, "subscribed"));
        int vm = sim_object("kvm-vm");

        /* How big one event is, as the slow one reads it. */
        refusal(c, vm);
        json_object *e = vconn_next_event(slow, "decision");
        size_t size = strlen(json_object_to_json_string(e));
        json_object_put(e);
        json_object_put(vconn_next_event(reader, "decision"));
        /* Enough for the bound, the socket's buffer (a few hundred KiB) and then some. */
        size_t n = (STREAM_BACKLOG_MAX + STREAM_BACKLOG_MAX / 2) / size + 16;
        for (size_t i = 0; i < n; i++) {
                refusal(c, vm);
                json_object_put(vconn_next_event(reader, "decision"));
        }

        size_t got = 0, bytes = 0;
        for (;;) {
                assert_int_equal(vconn_recv(slow, &reply), 0);
                if (reply.error)
                        break;
                assert_true(reply.continues);
                bytes += strlen(json_object_to_json_string(reply.root));
                got++;
                coh_reply_done(&reply);
        }
        assert_string_equal(reply.error, BROKER "LimitExceeded");
        assert_string_equal(jstr(reply.parameters, "limit"), "StreamBacklog");
        coh_reply_done(&reply);
        vconn_expect_closed(slow);
        /* What it got was in the socket already; the rest, over a MiB, was dropped. */
        assert_true(got < n);
        assert_true(bytes < STREAM_BACKLOG_MAX);

        /* The daemon goes on, for the other subscriber too. */
        refusal(c, vm);
        json_object_put(vconn_next_event(reader, "decision"));
        close(vm);
        vconn_free(slow);
        vconn_free(reader);
        vconn_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                HARNESS_TEST(test_calls_back_to_back_with_and_without_descriptors_are_all_answered),
                HARNESS_TEST(test_a_client_that_pipelines_does_not_starve_another),
                HARNESS_TEST(test_unprivileged_connections_never_lock_the_operator_out),
                HARNESS_TEST(test_limits_are_lowered_to_fit_rlimit_nofile_at_start),
                HARNESS_TEST(test_accept_paused_on_emfile_goes_on_as_clients_leave),
                HARNESS_TEST(test_accept_paused_on_emfile_goes_on_when_a_grant_ends),
                HARNESS_TEST(test_a_call_begun_and_not_finished_is_cut_off),
                HARNESS_TEST(test_a_monitor_that_stops_reading_is_ended_and_its_queue_dropped),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
