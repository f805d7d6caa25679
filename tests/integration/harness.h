/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The integration harness: a real coherencyd on the simulated platform, driven
 * over its real socket, with its records read back from a real (private)
 * journald (tests/lib/with-journald).
 *
 * Synchronization is by protocol, never by sleeping: the daemon is ready when
 * it says READY=1 on our NOTIFY_SOCKET, and it has finished with a call any
 * other client sent before once it answers a later call (it is one event loop,
 * epoll hands out readiness in the order it arose, and each ready connection
 * gets one call served per turn), which harness_sync() does. Calls pipelined
 * on one connection are done once that connection's last answer came.
 *
 * Helpers assert with cmocka, so they may only be used in the test process
 * itself, never in a forked child.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "call.h"
#include "frame.h"

/* Generous: the daemon may run under ASan on two shared cores. A bound, not a pace. */
#define HARNESS_TIMEOUT_MS 30000

#define NOBODY_UID ((uid_t) 65534)
#define NOGROUP_GID ((gid_t) 65534)

#define MESSAGE_ID_DECISION "56ea55cacbf54bfaabb686c19008136e" /* granted */
#define MESSAGE_ID_NOT_NEEDED "bab301a5d09446a69a069bd75de15ec6"
#define MESSAGE_ID_REFUSED "8a2fa1eb57f147e6884355e57189c6d3"
#define MESSAGE_ID_GRANT_HELD "a5dfa02b1f644ef7a2e36f5238dc98b3"
#define MESSAGE_ID_GRANT_END "a31aadc285ac474dad65dd69506a7eb8"
#define MESSAGE_ID_POLICY_LOADED "95a6494f9b424cbfa5febfbd7573915a"
#define MESSAGE_ID_POLICY_FAILED "ca929c184e2d4b0da2958be50034b49a"
#define MESSAGE_ID_OPERATOR "ed8dc531479140998600bbe960890e72" /* a changing Manager call */

#define BROKER "io.coherencyd.Broker."
#define MANAGER "io.coherencyd.Manager."
#define SERVICE "org.varlink.service."

/* What the simulated platform's daemon descriptors look like in /proc/PID/fd. */
#define FD_SIM_VM "/memfd:coherencyd-sim:kvm-vm"
/* A simulated group's pin and probe: socket ends. */
#define FD_SOCKET "socket:"
/* A peer's pidfd (on pidfs kernels too: fs/pidfs.c pidfs_dname keeps the name). */
#define FD_PIDFD "anon_inode:[pidfd]"

/* A raw Varlink connection: the test speaks the protocol itself, so that it
 * checks the daemon's wire behaviour rather than a client library's. */
struct vconn {
        int fd;
        struct coh_frame in;
        int reply_fds[COH_MESSAGE_FDS_MAX]; /* what came with the last reply; closed with the next one */
        size_t n_reply_fds;
};

struct notify_listener;

struct daemon_options {
        bool no_journald;    /* COHERENCYD_JOURNAL_SOCKET=/nonexistent: records go to stderr */
        bool capture_stderr; /* stderr to a pipe (harness.stderr_fd) instead of the test's */
        /* --no-sandbox: LeakSanitizer cannot stop the world under the daemon's seccomp
         * filter, so leak checking of the daemon needs the sandbox off. */
        bool no_sandbox;
        unsigned fd_limit;   /* RLIMIT_NOFILE of the daemon; 0: inherited */
};

struct harness {
        char dir[256];     /* everything below lives in this temporary directory */
        char sysfs[320];   /* demo/make-sim-sysfs tree */
        char config[320];  /* a copy of demo/config, edited per test */
        char socket[320];
        char notify[320];  /* our NOTIFY_SOCKET */
        char source_dir[256];
        char coherencyd[256];
        char coherencyctl[256];
        struct daemon_options options;
        struct notify_listener *notify_listener;
        pid_t pid;         /* the daemon, 0 when not running */
        pid_t journal_pid; /* the last daemon started: its records carry _PID=this */
        int pidfd;
        int stderr_fd;     /* read end, with options.capture_stderr */
        char *stderr_buf;  /* what was read from stderr_fd so far */
        size_t stderr_len;
        struct vconn *sync; /* root connection held for harness_sync(); counted in every fd baseline */
};

/* cmocka setup/teardown: a temporary directory with a sysfs tree and the demo
 * policy; no daemon yet. Teardown stops a running daemon with SIGTERM and
 * asserts that it exits 0. */
int harness_setup(void **state);
int harness_teardown(void **state);
/* A cmocka test with its own harness (and so its own daemon). */
#define HARNESS_TEST(f) cmocka_unit_test_setup_teardown(f, harness_setup, harness_teardown)

/* Starts the daemon and waits for READY=1; fails the test if it exits or times out. */
void harness_start(struct harness *h);
/* Without the sandbox, so that LeakSanitizer checks the daemon at exit (teardown asserts 0). */
void harness_start_leak_checked(struct harness *h);
/* The same, but returns the daemon's wait status when it exits before READY=1, 0 when ready. */
int harness_try_start(struct harness *h);
/* SIGTERM, then asserts exit status 0. */
void harness_stop(struct harness *h);
/* Returns once the daemon has dealt with everything sent to it before (a round trip). */
void harness_sync(struct harness *h);
/* SIGHUP; returns once the daemon has reloaded (RELOADING=1, then READY=1 again). */
void harness_sighup(struct harness *h);
/* Reads the daemon's stderr (options.capture_stderr) until a line containing needle
 * arrives; returns that line (free()). */
char *harness_stderr_line(struct harness *h, const char *needle);

/* Changes the link `name` ("driver", "iommu", "iommu_group") of a device of the
 * sysfs tree to point at target, and tells a running daemon as the kernel
 * would: a line into the tree's "uevents" FIFO (daemon/facts-cache.h). */
void harness_relink_device(struct harness *h, const char *slot, const char *name, const char *target);
/* The uevent alone: what a change the daemon was not told of would lack. */
void harness_uevent(struct harness *h, const char *line);

/* Writes (or, with text NULL, removes) a file under the config directory. */
void harness_write_config(struct harness *h, const char *relative, const char *text);
/* "<config>/<relative>:<line>", as the daemon names a rule. */
const char *harness_rule(const struct harness *h, const char *relative, unsigned line, char *buf, size_t size);

/* Descriptors the daemon holds whose /proc/PID/fd link starts with prefix (all with NULL). */
unsigned daemon_fds(const struct harness *h, const char *prefix);
/* Asserts that count, listing the daemon's descriptors when it is off. */
void expect_daemon_fds(const struct harness *h, const char *prefix, unsigned expected);

/* ---- raw Varlink ------------------------------------------------------- */

/* Connects and returns once the daemon has accepted the connection (while it can). */
struct vconn *vconn_connect(struct harness *h);
/* Connects and returns at once, the daemon untouched (no harness_sync(): a call
 * handled may resume a paused accept). */
struct vconn *vconn_connect_queued(struct harness *h);
void vconn_free(struct vconn *c);
/* Bytes as they are, with descriptors on the first byte (plain sendmsg, no limits). */
void vconn_send_raw(struct vconn *c, const void *data, size_t len, const int *fds, size_t n_fds);
/* One call; params is JSON text (NULL for none). Descriptors go with its first byte. */
void vconn_send(struct vconn *c, const char *method, const char *params, const int *fds, size_t n_fds, bool more);
/* The next reply or error: 0, or -ECONNRESET when the daemon closed the connection. */
int vconn_recv(struct vconn *c, struct coh_reply *ret);
/* A call that must succeed: returns its parameters (json_object_put() them). */
json_object *vconn_call(struct vconn *c, const char *method, const char *params, const int *fds, size_t n_fds);
/* A call that must fail with error: returns the error's parameters (json_object_put() them). */
json_object *vconn_call_error(struct vconn *c, const char *method, const char *params, const int *fds, size_t n_fds,
                              const char *error);
/* Takes descriptor index of the last reply (the caller owns it); -1 when there is none. */
int vconn_take_fd(struct vconn *c, size_t index);
/* How many descriptors came with the last reply (taken or not). */
size_t vconn_reply_fds(const struct vconn *c);
/* Asserts the daemon closes the connection without another reply. */
void vconn_expect_closed(struct vconn *c);

/* ---- clients that are other processes and users ------------------------ */

/*
 * A connection made by another process (as uid/gid with supplementary groups,
 * or as root with uid 0), handed to the test: SO_PEERCRED names that process,
 * which lives on until peer_exit(). That models a VMM whose socket outlives it.
 */
struct peer {
        struct vconn *conn;
        pid_t pid;
        int ctl; /* closing it lets the peer process exit */
};

void peer_connect(struct harness *h, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups,
                  struct peer *ret);
/* The usual unprivileged VMM: nobody, with no supplementary groups. */
void peer_connect_nobody(struct harness *h, struct peer *ret);
/* The peer process exits (and is reaped); the connection stays with the test. */
void peer_exit(struct peer *p);
void peer_done(struct peer *p);

/* Runs fn in a child as uid/gid (root with uid 0); returns its exit status, or -1 for a signal. */
int run_as(uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups, int (*fn)(void *userdata), void *userdata);
/* Runs argv as uid (0: as root), collecting stdout and stderr (free()); returns the exit status. */
int run_command(char *const argv[], uid_t uid, char **ret_stdout, char **ret_stderr);

/* ---- simulated kernel objects ------------------------------------------ */

/* memfd "coherencyd-sim:<printf>", e.g. "kvm-vm", "vfio-group:3", "vfio-container:coherent". */
int sim_object(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* The VM memfd's text, which the simulated KVM keeps (see daemon/platform-sim.c). */
void sim_vm_state(int vm, char *buf, size_t size);
/* Its noncoherent-dma=N, -1 when the line is absent. */
long sim_vm_noncoherent_dma(int vm);
/* Whether the VM memfd has exactly this line. */
bool sim_vm_has_line(int vm, const char *line);
/* Lines starting with prefix. */
unsigned sim_vm_count_lines(int vm, const char *prefix);

/* ---- journal ------------------------------------------------------------ */

/*
 * This daemon's records with MESSAGE_ID and the given "FIELD=value" matches
 * (NULL-terminated), once their count reaches n (asserted exactly). The daemon
 * never blocks on journald and may hold records back briefly, so this flushes
 * (journalctl --sync) and reads a bounded number of times.
 */
json_object *journal_expect(struct harness *h, size_t n, const char *message_id, ...) __attribute__((sentinel));
/* The same when n is a lower bound. message_id NULL matches records without one too. */
json_object *journal_expect_at_least(struct harness *h, size_t n, const char *message_id, ...)
        __attribute__((sentinel));
/* A field of a record as a string; NULL when absent. */
const char *journal_field(json_object *record, const char *name);

/* ---- JSON -------------------------------------------------------------- */

/* Members that must be there with that type. */
const char *jstr(json_object *o, const char *key);
int64_t jint(json_object *o, const char *key);
bool jbool(json_object *o, const char *key);
json_object *jmember(json_object *o, const char *key);

/* ---- common requests ---------------------------------------------------- */

/* The PCI address of the first device of IOMMU group `group` in the demo's sysfs tree. */
const char *group_slot(unsigned group);

/*
 * RequestGrant for the device of simulated IOMMU group `group` (by its PCI
 * address) on the VM memfd vm (which the caller keeps), in a container
 * "coherent" or "noncoherent" (NULL: no iommu descriptor, which the daemon
 * refuses). Returns the reply's parameters; asserts that a group descriptor
 * came exactly with a grant. Take it with vconn_take_fd(c, 0), or it is
 * closed with the next reply (the VMM let go of it).
 */
json_object *request_grant(struct vconn *c, int vm, unsigned group, const char *container);
/* The same request when it must fail with error; returns the error's parameters. */
json_object *request_grant_error(struct vconn *c, int vm, unsigned group, const char *container, const char *error);
/* Probe for group (in a container, or none); returns the reply's parameters. */
json_object *probe(struct vconn *c, unsigned group, const char *container);
/* ReleaseGrant of grant id; returns the reply's parameters. */
json_object *release_grant(struct vconn *c, const char *grant);
/* The grants that method (BROKER or MANAGER "ListGrants") lists, an array (json_object_put()). */
json_object *list_grants(struct vconn *c, const char *method);

/* ---- custody (added for the second edition's tests) --------------------- */

/* The next reply of a streaming call (Monitor, WatchGrants): asserts that more
 * follow and that it is this event; returns its parameters (json_object_put()). */
json_object *vconn_next_event(struct vconn *c, const char *event);

/* request_grant() that must hand a group over: *ret_group is the group
 * descriptor, the caller's to close (the VMM letting go of its copy). */
json_object *request_grant_take(struct vconn *c, int vm, unsigned group, const char *container, int *ret_group);

/* The grant with this id in an array of grants (ListGrants, WatchGrants), or NULL. */
json_object *grant_in(json_object *grants, const char *id);

/*
 * A VMM process of its own, as uid/gid with no supplementary groups (uid 0:
 * root): it makes n_conns connections to the daemon, which it hands to the
 * test (SO_PEERCRED and the daemon's pidfd name this process), and holds every
 * descriptor vmm_hold() gives it until it exits, as a VMM holds its group
 * file. Two connections of one process: one for grants, one for WatchGrants.
 */
#define VMM_CONNS_MAX 4
struct vmm {
        pid_t pid;
        int pidfd;
        int chan; /* to the process: descriptors to hold; closing it lets it exit */
        struct vconn *conn[VMM_CONNS_MAX];
        size_t n_conns;
};

void vmm_start(struct harness *h, uid_t uid, gid_t gid, size_t n_conns, struct vmm *ret);
/* The process takes a copy of fd and holds it (the caller keeps its own); returns once it has. */
void vmm_hold(struct vmm *v, int fd);
/* Whether the process is still alive (it neither exited nor was killed). */
bool vmm_alive(const struct vmm *v);
/* Waits (bounded) until the process ends without being told to (it is killed), reaps it,
 * and returns its wait status. */
int vmm_wait(struct vmm *v);
/* Lets the process exit (closing what it holds) and reaps it; returns its wait status.
 * Its connections stay with the test. */
int vmm_exit(struct vmm *v);
/* vmm_exit() when still running, then closes the connections. */
void vmm_done(struct vmm *v);

/*
 * Returns once the daemon is idle after everything sent before: two round
 * trips, the second answered only after the daemon finished the loop iteration
 * that answered the first, in which it may still have told systemd its status
 * (through a datagram socket of the moment). Use it before counting all of the
 * daemon's descriptors.
 */
void harness_idle(struct harness *h);

/*
 * Stream sockets the daemon holds: its listener, its connections, and for each
 * simulated group handed over its pin and its own end (while active; the end
 * alone while ending). Datagram sockets (journald's, and the one sd_notify opens
 * for a moment) are left out, so that the count does not depend on when it is
 * taken. Needs root (pidfd_getfd).
 */
unsigned daemon_stream_sockets(const struct harness *h);
void expect_daemon_stream_sockets(const struct harness *h, unsigned expected);

/*
 * A round trip on c itself: once it returns, the daemon has accepted c and
 * dealt with everything sent on it before. (harness_sync() on another
 * connection does not prove an accept: epoll does not always hand out a
 * listener's readiness before a later message on another connection.)
 */
void vconn_ping(struct vconn *c);

/*
 * expect_daemon_fds() and expect_daemon_stream_sockets() for what the daemon
 * learns of by itself (a hangup, a process's exit, a group let go): the count
 * is taken after a round trip, and again after each of a bounded number of
 * further round trips until it matches, since the kernel does not hand the
 * daemon such an event strictly before a later call on another connection.
 * The daemon's datagram sockets of the moment (sd_notify) go the same way.
 */
void expect_daemon_fds_settled(struct harness *h, const char *prefix, unsigned expected);
void expect_daemon_stream_sockets_settled(struct harness *h, unsigned expected);

/* ---- journal folding, descriptor limits (issue 9) ------------------------- */

/*
 * journal_expect() for records the daemon writes on a timer of its own (the end of
 * a RefusalLogIntervalSec= interval): reads until n match, within HARNESS_TIMEOUT_MS
 * (not JOURNAL_TRIES rounds), and asserts exactly n.
 */
json_object *journal_expect_eventually(struct harness *h, size_t n, const char *message_id, ...)
        __attribute__((sentinel));

/*
 * The daemon's RLIMIT_NOFILE (its soft limit, through prlimit) set so that exactly
 * n_free descriptor numbers below it are free now, to make a path that needs more
 * fail with EMFILE; *ret_old is the limit it had. Take it when the daemon is idle
 * (harness_idle()). daemon_restore_fd_limit() puts the old one back.
 */
struct rlimit;
void daemon_limit_free_fds(struct harness *h, unsigned n_free, struct rlimit *ret_old);
void daemon_restore_fd_limit(struct harness *h, const struct rlimit *old);
/* The same for any process (the privileged helper: prlimit(2) on it needs the daemon to
 * run --no-sandbox, as root); put back with prlimit(pid, RLIMIT_NOFILE, old, NULL). */
void process_limit_free_fds(pid_t pid, unsigned n_free, struct rlimit *ret_old);
/* The daemon's privileged helper (its only child), and how many descriptors a process has. */
pid_t daemon_helper_pid(const struct harness *h);
unsigned process_fds(pid_t pid);

/*
 * Environment the harness reads besides what tests.cmake sets:
 *   COH_TEST_DAEMON_WRAPPER  words put before the daemon's command line, split on blanks
 *                            (the valgrind label: valgrind and its options). A wrapped
 *                            daemon runs with --no-sandbox (valgrind cannot run seccomp(2)),
 *                            and a test that starts it with options.fd_limit is skipped
 *                            (valgrind closes connections accept() returns above its limit).
 *   COH_TEST_SKIP            a cmocka glob (* and ?) of tests to leave out
 *   COH_TEST_ONLY            a cmocka glob of the tests to run alone
 */
