/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The built coherencyd's two processes (README "Processes"), on the
 * simulated platform, started as this test is (root in CI): the main process
 * serves clients as its unprivileged user with no capability, its child, the
 * privileged helper, stays root with CAP_KILL for RevokeKill= alone and holds
 * nothing of the main process's descriptors; both run under their seccomp
 * filter with no_new_privs. A helper that dies stops the daemon, with a
 * failure (systemd restarts it); a daemon that stops takes its helper along.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox.h"

#define TIMEOUT_MS 20000

struct daemon {
        char dir[64];
        char sock[128];
        pid_t pid, helper;
        int pidfd;
        int err; /* its stderr */
};

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static void run(char *const argv[]) {
        int status;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                execvp(argv[0], argv);
                _exit(127);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int setup(void **state) {
        struct daemon *d = calloc(1, sizeof *d);
        const char *src = getenv("COH_TEST_SOURCE_DIR");
        char tool[4096], config[4096], sysfs[128], to[128];
        assert_non_null(d);
        assert_non_null(src);
        snprintf(d->dir, sizeof d->dir, "/tmp/coherencyd-privsep.XXXXXX");
        assert_non_null(mkdtemp(d->dir));
        /* The daemon reads its policy again as its own user (reload). */
        assert_int_equal(chmod(d->dir, 0755), 0);
        snprintf(tool, sizeof tool, "%s/demo/make-sim-sysfs", src);
        snprintf(config, sizeof config, "%s/demo/config", src);
        snprintf(sysfs, sizeof sysfs, "%s/sys", d->dir);
        snprintf(to, sizeof to, "%s/config", d->dir);
        run((char *const[]) { tool, sysfs, NULL });
        run((char *const[]) { "cp", "-R", config, to, NULL });
        snprintf(d->sock, sizeof d->sock, "%s/io.coherencyd", d->dir);
        d->pidfd = d->err = -1;
        *state = d;
        return 0;
}

static int teardown(void **state) {
        struct daemon *d = *state;
        if (d->pid > 0) {
                kill(d->pid, SIGKILL);
                (void) waitpid(d->pid, NULL, 0);
        }
        if (d->pidfd >= 0)
                close(d->pidfd);
        if (d->err >= 0)
                close(d->err);
        (void) nftw(d->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(d);
        return 0;
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One call answered: the loop runs, so the daemon has entered its sandbox. */
static bool answers(const struct daemon *d) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        static const char call[] = "{\"method\":\"org.varlink.service.GetInfo\"}";
        char buf[4096];
        assert_true(strlen(d->sock) < sizeof sa.sun_path);
        memcpy(sa.sun_path, d->sock, strlen(d->sock) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        bool ok = connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0 && write(fd, call, sizeof call) == sizeof call;
        for (size_t n = 0; ok;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t k = poll(&p, 1, TIMEOUT_MS) == 1 ? read(fd, buf + n, sizeof buf - n) : -1;
                if (k <= 0)
                        ok = false;
                else if (memchr(buf + n, 0, (size_t) k))
                        break;
                else
                        n += (size_t) k;
                if (n >= sizeof buf)
                        ok = false;
        }
        close(fd);
        return ok;
}

static void start(struct daemon *d) {
        const char *bin = getenv("COH_TEST_COHERENCYD");
        char platform[256], config[128];
        int err[2];
        assert_non_null(bin);
        snprintf(platform, sizeof platform, "sim:%s/sys", d->dir);
        snprintf(config, sizeof config, "%s/config", d->dir);
        assert_int_equal(pipe2(err, O_CLOEXEC), 0);
        d->pid = fork();
        assert_true(d->pid >= 0);
        if (d->pid == 0) {
                if (dup2(err[1], STDERR_FILENO) < 0)
                        _exit(126);
                (void) close_range(3, ~0U, 0);
                unsetenv("NOTIFY_SOCKET");
                unsetenv("LISTEN_FDS");
                unsetenv("LISTEN_PID");
                unsetenv("JOURNAL_STREAM");
                setenv("COHERENCYD_JOURNAL_SOCKET", "/nonexistent", 1); /* records to stderr */
                /* LeakSanitizer's stop-the-world at exit makes calls the filters forbid (fatal). */
                const char *asan = getenv("ASAN_OPTIONS");
                char options[1024];
                snprintf(options, sizeof options, "%s%sdetect_leaks=0", asan ?: "", asan ? ":" : "");
                setenv("ASAN_OPTIONS", options, 1);
                execl(bin, bin, "--platform", platform, "--config", config, "--socket", d->sock, (char *) NULL);
                _exit(127);
        }
        close(err[1]);
        d->err = err[0];
        d->pidfd = (int) syscall(SYS_pidfd_open, d->pid, 0);
        assert_true(d->pidfd >= 0);
        for (int64_t deadline = now_ms() + TIMEOUT_MS;; usleep(20000)) {
                if (answers(d))
                        break;
                if (waitpid(d->pid, NULL, WNOHANG) != 0 || now_ms() > deadline)
                        fail_msg("coherencyd did not come up");
        }
        char path[96], buf[64] = "";
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int) d->pid, (int) d->pid);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof buf, f));
        fclose(f);
        char *end;
        d->helper = (pid_t) strtol(buf, &end, 10);
        assert_true(d->helper > 0);
        end += strspn(end, " \n");
        if (*end)
                fail_msg("more than one child: %s", buf);
}

/* The wait status once it exited, failing after the time bound. */
static int wait_exit(struct daemon *d) {
        struct pollfd p = { .fd = d->pidfd, .events = POLLIN };
        int status;
        if (poll(&p, 1, TIMEOUT_MS) != 1)
                fail_msg("coherencyd did not exit");
        assert_int_equal(waitpid(d->pid, &status, 0), d->pid);
        d->pid = 0;
        return status;
}

static void status_field(pid_t pid, const char *key, char *buf, size_t size) {
        char path[64], line[512];
        size_t len = strlen(key);
        snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        buf[0] = '\0';
        while (fgets(line, sizeof line, f))
                if (strncmp(line, key, len) == 0 && line[len] == ':') {
                        snprintf(buf, size, "%s", line + len + 1 + strspn(line + len + 1, " \t"));
                        buf[strcspn(buf, "\n")] = '\0';
                        break;
                }
        fclose(f);
}

static void expect_status(pid_t pid, const char *key, const char *want) {
        char got[256];
        status_field(pid, key, got, sizeof got);
        if (strcmp(got, want) != 0)
                fail_msg("pid %d %s: '%s', expected '%s'", (int) pid, key, got, want);
}

/* The helper's descriptors: stdio, its socket to the main process and the sysfs root. */
static void expect_helper_holds_nothing_else(const struct daemon *d) {
        char path[64], link[256], entry[320];
        unsigned n = 0, sockets = 0;
        snprintf(path, sizeof path, "/proc/%d/fd", (int) d->helper);
        DIR *dir = opendir(path);
        assert_non_null(dir);
        for (struct dirent *de; (de = readdir(dir));) {
                if (de->d_name[0] == '.')
                        continue;
                snprintf(entry, sizeof entry, "%s/%s", path, de->d_name);
                ssize_t k = readlink(entry, link, sizeof link - 1);
                assert_true(k > 0);
                link[k] = '\0';
                n++;
                sockets += strncmp(link, "socket:", 7) == 0;
                if (atoi(de->d_name) > 2 && strncmp(link, "socket:", 7) != 0 && !strstr(link, "/sys"))
                        fail_msg("the helper holds %s -> %s", de->d_name, link);
        }
        closedir(dir);
        /* Not the listening socket, not a connection: one socket, the main process's. */
        assert_int_equal(sockets, 1);
        assert_true(n <= 5);
}

static void test_two_processes_with_what_each_keeps(void **state) {
        struct daemon *d = *state;
        char want[64], kill_mask[32];

        start(d);
        snprintf(kill_mask, sizeof kill_mask, "%016llx", 1ull << 5 /* CAP_KILL */);
        /* The main process: its user (when started as root), nothing else. */
        if (geteuid() == 0) {
                uid_t uid;
                gid_t gid;
                bool dedicated;
                assert_int_equal(coh_sandbox_parser_user(&uid, &gid, &dedicated), 0);
                snprintf(want, sizeof want, "%u\t%u\t%u\t%u", (unsigned) uid, (unsigned) uid, (unsigned) uid,
                         (unsigned) uid);
                expect_status(d->pid, "Uid", want);
                expect_status(d->pid, "Groups", "");
                expect_status(d->helper, "Uid", "0\t0\t0\t0");
        }
        expect_status(d->pid, "CapEff", "0000000000000000");
        expect_status(d->pid, "CapPrm", "0000000000000000");
        expect_status(d->pid, "NoNewPrivs", "1");
        expect_status(d->pid, "Seccomp", "2");
        /* The helper: CAP_KILL, for the demo policy's RevokeKill=yes, and nothing else. */
        if (geteuid() == 0) {
                expect_status(d->helper, "CapEff", kill_mask);
                expect_status(d->helper, "CapPrm", kill_mask);
        }
        expect_status(d->helper, "NoNewPrivs", "1");
        expect_status(d->helper, "Seccomp", "2");
        expect_helper_holds_nothing_else(d);

        /* A stop takes the helper along (the main process reaps it). */
        assert_int_equal(kill(d->pid, SIGTERM), 0);
        int status = wait_exit(d);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(kill(d->helper, 0), -1);
        assert_int_equal(errno, ESRCH);
}

static void test_helper_without_revoke_kill_keeps_nothing(void **state) {
        struct daemon *d = *state;
        char conf[128];
        snprintf(conf, sizeof conf, "%s/config/coherencyd.conf", d->dir);
        char text[8192], *at;
        FILE *f = fopen(conf, "re");
        assert_non_null(f);
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        assert_non_null(at = strstr(text, "RevokeKill=yes"));
        memcpy(at, "RevokeKill=no ", 14);
        f = fopen(conf, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, n, f), n);
        fclose(f);
        if (geteuid() != 0)
                skip();
        start(d);
        expect_status(d->helper, "CapEff", "0000000000000000");
        expect_status(d->helper, "CapPrm", "0000000000000000");
        expect_status(d->helper, "Uid", "0\t0\t0\t0");
}

static void test_daemon_stops_failing_when_its_helper_dies(void **state) {
        struct daemon *d = *state;
        char buf[8192];
        start(d);
        assert_int_equal(kill(d->helper, SIGKILL), 0);
        int status = wait_exit(d);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 1);
        size_t n = 0;
        for (ssize_t k; n < sizeof buf - 1 && (k = read(d->err, buf + n, sizeof buf - 1 - n)) > 0;)
                n += (size_t) k;
        buf[n] = '\0';
        assert_non_null(strstr(buf, "privileged helper has exited"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_two_processes_with_what_each_keeps, setup, teardown),
                cmocka_unit_test_setup_teardown(test_helper_without_revoke_kill_keeps_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_daemon_stops_failing_when_its_helper_dies, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
