/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The seccomp filters and what each process keeps (daemon/sandbox.c): in a
 * forked child that entered a process's sandbox, a system call outside that
 * process's allow-list ends the child with SIGSYS, whatever the call's
 * arguments; the calls the process makes go on working; and, as root, the
 * parser has become its unprivileged user with no capability and is not
 * dumpable, while the helper stays uid 0 with CAP_KILL alone, or nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "linux-uapi.h"
#include "sandbox.h"

/* Runs fn in a child that entered which's sandbox; fn writes what it wants
 * to say to out. Returns the wait status; 100 means entering failed. */
static int in_sandbox(enum coh_sandbox_process which, unsigned flags, void (*fn)(int out), int out) {
        int status;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char errbuf[256];
                /* A SIGSYS death dumps core by default: not here. */
                struct rlimit none = { 0, 0 };
                (void) setrlimit(RLIMIT_CORE, &none);
                if (coh_sandbox_enter(which, flags, errbuf, sizeof errbuf) < 0) {
                        fprintf(stderr, "sandbox: %s\n", errbuf);
                        _exit(100);
                }
                fn(out);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        return status;
}

static void expect_killed(enum coh_sandbox_process which, unsigned flags, void (*fn)(int out), const char *what) {
        int status = in_sandbox(which, flags, fn, -1);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
                fail_msg("%s: wait status 0x%x, expected death by SIGSYS", what, (unsigned) status);
}

static void expect_survived(enum coh_sandbox_process which, unsigned flags, void (*fn)(int out), const char *what) {
        int status = in_sandbox(which, flags, fn, -1);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("%s: wait status 0x%x, expected exit 0", what, (unsigned) status);
}

/* ---- calls neither process makes ------------------------------------------ */

static void call_execve(int out) {
        char *const argv[] = { "/bin/true", NULL };
        execve(argv[0], argv, NULL);
        _exit(1); /* EPERM would land here: that is the old filter's answer, and a failure */
}
static void call_fork(int out) {
        (void) syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
        _exit(1);
}
static void call_ptrace(int out) {
        (void) ptrace(PTRACE_TRACEME, 0, NULL, NULL);
        _exit(1);
}
static void call_setuid(int out) {
        (void) syscall(SYS_setuid, 0);
        _exit(1);
}
static void call_unshare(int out) {
        (void) unshare(CLONE_NEWNS);
        _exit(1);
}
static void call_make_dumpable(int out) {
        /* The parser cannot undo PR_SET_DUMPABLE 0: no prctl at all. */
        (void) prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        _exit(1);
}
static void call_kill(int out) {
        /* Signals go through pidfds only, and only in the helper. */
        (void) kill(getpid(), 0);
        _exit(1);
}

/* ---- calls only the helper makes ---------------------------------------------- */

static void call_socketpair(int out) {
        int sv[2];
        (void) socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        _exit(1);
}
static void call_pidfd_send_signal(int out) {
        (void) syscall(SYS_pidfd_send_signal, 0, 0, NULL, 0);
        _exit(1);
}
/* A custody ioctl: the argument decides, not the descriptor (a pipe here). */
static void call_vfio_set_container(int out) {
        int p[2], container = -1;
        if (pipe(p) == 0)
                (void) ioctl(p[0], VFIO_GROUP_SET_CONTAINER, &container);
        _exit(1);
}

/* ---- calls only the parser makes --------------------------------------------------- */

static void call_socket(int out) {
        (void) socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        _exit(1);
}
static void call_accept(int out) {
        (void) accept4(0, NULL, NULL, SOCK_CLOEXEC);
        _exit(1);
}
static void call_connect(int out) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        (void) connect(0, (struct sockaddr *) &sa, sizeof sa);
        _exit(1);
}
static void call_fionread(int out) {
        int p[2], n;
        if (pipe(p) == 0)
                (void) ioctl(p[0], FIONREAD, &n);
        _exit(1);
}

/* ---- calls each makes: they go on working ------------------------------------ */

static void parser_work(int out) {
        int p[2], n = -1;
        char buf[64];
        if (pipe2(p, O_CLOEXEC) < 0 || write(p[1], "x", 1) != 1 || ioctl(p[0], FIONREAD, &n) < 0 || n != 1)
                _exit(2);
        int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, buf, sizeof buf) <= 0)
                _exit(3);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                _exit(4);
        void *m = malloc(1 << 20);
        free(m);
        _exit(0);
}

static void helper_work(int out) {
        int sv[2];
        char buf[64];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                _exit(2);
        if (write(sv[0], "x", 1) != 1 || read(sv[1], buf, sizeof buf) != 1)
                _exit(3);
        int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, buf, sizeof buf) <= 0)
                _exit(4);
        void *m = malloc(1 << 20);
        free(m);
        _exit(0);
}

static void test_parser_forbidden_calls_are_fatal(void **state) {
        expect_killed(COH_SANDBOX_PARSER, 0, call_execve, "execve");
        expect_killed(COH_SANDBOX_PARSER, 0, call_fork, "clone");
        expect_killed(COH_SANDBOX_PARSER, 0, call_ptrace, "ptrace");
        expect_killed(COH_SANDBOX_PARSER, 0, call_setuid, "setuid");
        expect_killed(COH_SANDBOX_PARSER, 0, call_unshare, "unshare");
        expect_killed(COH_SANDBOX_PARSER, 0, call_make_dumpable, "prctl(PR_SET_DUMPABLE)");
        expect_killed(COH_SANDBOX_PARSER, 0, call_kill, "kill");
        /* The helper's: custody and kills are not the parser's to make. */
        expect_killed(COH_SANDBOX_PARSER, 0, call_socketpair, "socketpair");
        expect_killed(COH_SANDBOX_PARSER, 0, call_pidfd_send_signal, "pidfd_send_signal");
        expect_killed(COH_SANDBOX_PARSER, 0, call_vfio_set_container, "ioctl(VFIO_GROUP_SET_CONTAINER)");
}

static void test_helper_forbidden_calls_are_fatal(void **state) {
        for (unsigned flags = 0; flags <= COH_SANDBOX_KEEP_KILL; flags += COH_SANDBOX_KEEP_KILL) {
                expect_killed(COH_SANDBOX_HELPER, flags, call_execve, "execve");
                expect_killed(COH_SANDBOX_HELPER, flags, call_fork, "clone");
                expect_killed(COH_SANDBOX_HELPER, flags, call_ptrace, "ptrace");
                expect_killed(COH_SANDBOX_HELPER, flags, call_setuid, "setuid");
                expect_killed(COH_SANDBOX_HELPER, flags, call_unshare, "unshare");
                expect_killed(COH_SANDBOX_HELPER, flags, call_kill, "kill");
                /* The parser's: the helper talks to nobody but the parser. */
                expect_killed(COH_SANDBOX_HELPER, flags, call_socket, "socket");
                expect_killed(COH_SANDBOX_HELPER, flags, call_accept, "accept4");
                expect_killed(COH_SANDBOX_HELPER, flags, call_connect, "connect");
                expect_killed(COH_SANDBOX_HELPER, flags, call_fionread, "ioctl(FIONREAD)");
        }
}

static void test_allowed_calls_go_on_working(void **state) {
        expect_survived(COH_SANDBOX_PARSER, 0, parser_work, "the parser's calls");
        expect_survived(COH_SANDBOX_HELPER, 0, helper_work, "the helper's calls");
        expect_survived(COH_SANDBOX_HELPER, COH_SANDBOX_KEEP_KILL, helper_work, "the helper's calls (CAP_KILL)");
}

/* ---- what each process keeps ------------------------------------------------------- */

/* Sends /proc/self/status and the owner of /proc/self/fd to out: its uid, or root when it is
 * not dumpable (task_dump_owner; /proc/PID itself keeps the uid). */
static void report(int out) {
        char buf[4096];
        struct stat st;
        int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 64);
        if (n <= 0 || stat("/proc/self/fd", &st) < 0)
                _exit(2);
        n += snprintf(buf + n, 64, "ProcOwner:\t%u\n", (unsigned) st.st_uid);
        if (write(out, buf, (size_t) n) != n)
                _exit(3);
        _exit(0);
}

struct report {
        char text[4200];
};

static void enter_and_report(enum coh_sandbox_process which, unsigned flags, struct report *r) {
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        int status = in_sandbox(which, flags, report, p[1]);
        close(p[1]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        ssize_t n = read(p[0], r->text, sizeof r->text - 1);
        close(p[0]);
        assert_true(n > 0);
        r->text[n] = '\0';
}

/* The value of "Key:\t..." up to the end of the line. */
static const char *field(const struct report *r, const char *key, char *buf, size_t size) {
        char needle[64];
        snprintf(needle, sizeof needle, "\n%s:", key);
        const char *p = strstr(r->text, needle);
        assert_non_null(p);
        p += strlen(needle);
        p += strspn(p, " \t");
        size_t len = strcspn(p, "\n");
        assert_true(len < size);
        memcpy(buf, p, len);
        buf[len] = '\0';
        return buf;
}

static void expect_field(const struct report *r, const char *key, const char *want) {
        char buf[256];
        const char *got = field(r, key, buf, sizeof buf);
        if (strcmp(got, want) != 0)
                fail_msg("%s: '%s', expected '%s'", key, got, want);
}

/* The bounding set shrinks only with CAP_SETPCAP (a root shell has it; the unit gives none). */
static bool can_drop_bounding_set(void) {
        return prctl(PR_CAPBSET_READ, CAP_SETPCAP, 0, 0, 0) == 1;
}

static void test_parser_becomes_its_user_with_nothing(void **state) {
        struct report r;
        char want[128];
        uid_t uid;
        gid_t gid;
        bool dedicated;

        if (geteuid() != 0)
                skip();
        assert_int_equal(coh_sandbox_parser_user(&uid, &gid, &dedicated), 0);
        assert_true(uid != 0 && gid != 0);
        if (!dedicated)
                assert_int_equal(uid, COH_SANDBOX_NOBODY);
        enter_and_report(COH_SANDBOX_PARSER, 0, &r);
        snprintf(want, sizeof want, "%u\t%u\t%u\t%u", (unsigned) uid, (unsigned) uid, (unsigned) uid, (unsigned) uid);
        expect_field(&r, "Uid", want);
        snprintf(want, sizeof want, "%u\t%u\t%u\t%u", (unsigned) gid, (unsigned) gid, (unsigned) gid, (unsigned) gid);
        expect_field(&r, "Gid", want);
        expect_field(&r, "Groups", "");
        expect_field(&r, "CapInh", "0000000000000000");
        expect_field(&r, "CapPrm", "0000000000000000");
        expect_field(&r, "CapEff", "0000000000000000");
        expect_field(&r, "CapAmb", "0000000000000000");
        if (can_drop_bounding_set())
                expect_field(&r, "CapBnd", "0000000000000000");
        expect_field(&r, "NoNewPrivs", "1");
        expect_field(&r, "Seccomp", "2");
        /* Not dumpable: its /proc files are root's, and no process of its uid can ptrace it. */
        expect_field(&r, "ProcOwner", "0");
}

static void test_helper_stays_root_with_cap_kill_alone(void **state) {
        struct report r;
        char kill_mask[32];

        if (geteuid() != 0)
                skip();
        snprintf(kill_mask, sizeof kill_mask, "%016llx", 1ull << CAP_KILL);
        enter_and_report(COH_SANDBOX_HELPER, COH_SANDBOX_KEEP_KILL, &r);
        expect_field(&r, "Uid", "0\t0\t0\t0");
        expect_field(&r, "Groups", "");
        expect_field(&r, "CapPrm", kill_mask);
        expect_field(&r, "CapEff", kill_mask);
        if (can_drop_bounding_set())
                expect_field(&r, "CapBnd", kill_mask);
        expect_field(&r, "CapInh", "0000000000000000");
        expect_field(&r, "CapAmb", "0000000000000000");
        expect_field(&r, "NoNewPrivs", "1");
        expect_field(&r, "Seccomp", "2");

        enter_and_report(COH_SANDBOX_HELPER, 0, &r);
        expect_field(&r, "Uid", "0\t0\t0\t0");
        expect_field(&r, "CapPrm", "0000000000000000");
        expect_field(&r, "CapEff", "0000000000000000");
        if (can_drop_bounding_set())
                expect_field(&r, "CapBnd", "0000000000000000");
        expect_field(&r, "Seccomp", "2");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parser_forbidden_calls_are_fatal),
                cmocka_unit_test(test_helper_forbidden_calls_are_fatal),
                cmocka_unit_test(test_allowed_calls_go_on_working),
                cmocka_unit_test(test_parser_becomes_its_user_with_nothing),
                cmocka_unit_test(test_helper_stays_root_with_cap_kill_alone),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
