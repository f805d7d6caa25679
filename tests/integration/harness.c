/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "sim-objects.h"

#define JOURNAL_TRIES 100 /* flush-and-read rounds before a missing record fails the test */

/* ---- small utilities --------------------------------------------------- */

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline, for poll(); 0 once it passed. */
static int remaining_ms(int64_t deadline) {
        int64_t left = deadline - now_ms();
        return left > 0 ? (int) left : 0;
}

static void unix_address(struct sockaddr_un *sa, const char *path) {
        size_t len = strlen(path);

        if (len >= sizeof sa->sun_path)
                fail_msg("socket path too long: %s", path);
        *sa = (struct sockaddr_un) { .sun_family = AF_UNIX };
        memcpy(sa->sun_path, path, len + 1);
}

/* Polls one descriptor for POLLIN within the deadline; fails the test on timeout. */
static void wait_readable(int fd, int64_t deadline, const char *what) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r;

        do
                r = poll(&p, 1, remaining_ms(deadline));
        while (r < 0 && errno == EINTR);
        if (r < 0)
                fail_msg("poll (%s): %s", what, strerror(errno));
        if (r == 0)
                fail_msg("timed out after %d ms waiting for %s", HARNESS_TIMEOUT_MS, what);
}

static const char *env_required(const char *name) {
        const char *v = getenv(name);
        if (!v || !v[0])
                fail_msg("$%s is not set: run this test through ctest (tests/integration/tests.cmake)", name);
        return v;
}

/* Keeps only a and b (and stdio) open in a forked child, so that it holds no copy of
 * the test's connections or objects: a closed connection must really be closed. */
static void close_all_but(int a, int b) {
        int lo = a < b ? a : b, hi = a < b ? b : a;

        if (lo > 3)
                (void) close_range(3, (unsigned) lo - 1, 0);
        if (hi > lo + 1)
                (void) close_range((unsigned) lo + 1, (unsigned) hi - 1, 0);
        (void) close_range((unsigned) hi + 1, ~0U, 0);
}

static int drop_privileges(uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups) {
        if (uid == 0)
                return 0;
        if (setgroups(n_groups, groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
                return -errno;
        return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

/* Appends what fd has (one read) to *buf; returns the bytes read, 0 at EOF. */
static ssize_t read_append(int fd, char **buf, size_t *len) {
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);

        if (n <= 0)
                return n < 0 && errno != EINTR && errno != EAGAIN ? 0 : n;
        char *p = realloc(*buf, *len + (size_t) n + 1);
        assert_non_null(p);
        memcpy(p + *len, chunk, (size_t) n);
        *len += (size_t) n;
        p[*len] = 0;
        *buf = p;
        return n;
}

/* One sendmsg() of data with fds on its first byte, as it returns (-1 and errno on failure). No
 * allocation and no assertion, so that a forked child may use it too. */
static ssize_t send_with_fds(int sock, const void *data, size_t len, const int *fds, size_t n_fds) {
        ssize_t n = coh_sendmsg_fds(sock, data, len, fds, n_fds, MSG_NOSIGNAL);
        if (n < 0) {
                errno = (int) -n;
                return -1;
        }
        return n;
}

static int wait_status_to_exit(int status) {
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- processes ----------------------------------------------------------- */

int run_as(uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups, int (*fn)(void *userdata), void *userdata) {
        int status;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                if (drop_privileges(uid, gid, groups, n_groups) < 0)
                        _exit(125);
                _exit(fn(userdata));
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int run_command(char *const argv[], uid_t uid, char **ret_stdout, char **ret_stderr) {
        int out[2], err[2], status;
        char *bufs[2] = {};
        size_t lens[2] = {};

        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        assert_int_equal(pipe2(err, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(err[1], STDERR_FILENO) < 0)
                        _exit(126);
                (void) close_range(3, ~0U, 0);
                if (drop_privileges(uid, NOGROUP_GID, NULL, 0) < 0)
                        _exit(125);
                execvp(argv[0], argv);
                _exit(127);
        }
        close(out[1]);
        close(err[1]);

        /* Both pipes at once: a tool that fills one while we wait on the other would hang. */
        int64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;
        struct pollfd p[2] = { { .fd = out[0], .events = POLLIN }, { .fd = err[0], .events = POLLIN } };
        while (p[0].fd >= 0 || p[1].fd >= 0) {
                int r = poll(p, 2, remaining_ms(deadline));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        kill(pid, SIGKILL);
                        fail_msg("%s did not finish within %d ms", argv[0], HARNESS_TIMEOUT_MS);
                }
                for (size_t i = 0; i < 2; i++)
                        if (p[i].fd >= 0 && p[i].revents && read_append(p[i].fd, &bufs[i], &lens[i]) == 0) {
                                close(p[i].fd);
                                p[i].fd = -1;
                        }
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);

        for (size_t i = 0; i < 2; i++) {
                char **ret = i == 0 ? ret_stdout : ret_stderr;
                if (!bufs[i])
                        bufs[i] = strdup("");
                if (ret)
                        *ret = bufs[i];
                else
                        free(bufs[i]);
        }
        return wait_status_to_exit(status);
}

/* ---- NOTIFY_SOCKET ------------------------------------------------------ */

enum {
        NOTIFY_READY,
        NOTIFY_RELOADING,
        _NOTIFY_MAX,
};

static const char *const notify_lines[_NOTIFY_MAX] = {
        [NOTIFY_READY] = "READY=1",
        [NOTIFY_RELOADING] = "RELOADING=1",
};

/*
 * Our NOTIFY_SOCKET, read by a thread of its own: the daemon sends STATUS= on
 * every connection and grant change, and sd_notify() blocks once
 * net.unix.max_dgram_qlen (10 here) datagrams wait, which would freeze the
 * daemon whenever the test is busy elsewhere (in journalctl, say). So every
 * datagram is read as it comes and only the lines we wait for are counted.
 */
struct notify_listener {
        pthread_t thread;
        int fd;
        int pidfd;      /* the thread's own copy: readable once the daemon exited */
        int wake;       /* eventfd: stop */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned counts[_NOTIFY_MAX];
        bool exited;
};

static void notify_count_lines(struct notify_listener *l, char *buf) {
        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                for (size_t i = 0; i < _NOTIFY_MAX; i++)
                        if (strcmp(line, notify_lines[i]) == 0)
                                l->counts[i]++;
        }
}

static void *notify_thread(void *userdata) {
        struct notify_listener *l = userdata;
        struct pollfd p[3] = {
                { .fd = l->fd, .events = POLLIN },
                { .fd = l->pidfd, .events = POLLIN },
                { .fd = l->wake, .events = POLLIN },
        };

        while (!(p[2].revents & POLLIN)) {
                if (poll(p, 3, -1) < 0)
                        continue;
                if (p[0].revents & POLLIN) {
                        char buf[4096];
                        ssize_t n = recv(l->fd, buf, sizeof buf - 1, MSG_DONTWAIT);
                        if (n >= 0) {
                                buf[n] = 0;
                                pthread_mutex_lock(&l->lock);
                                notify_count_lines(l, buf);
                                pthread_cond_broadcast(&l->cond);
                                pthread_mutex_unlock(&l->lock);
                        }
                }
                if (p[1].revents & POLLIN) {
                        pthread_mutex_lock(&l->lock);
                        l->exited = true;
                        pthread_cond_broadcast(&l->cond);
                        pthread_mutex_unlock(&l->lock);
                        p[1].fd = -1; /* stays readable; stop asking */
                }
        }
        return NULL;
}

static int notify_socket(const char *path) {
        struct sockaddr_un sa;
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        assert_true(fd >= 0);
        unix_address(&sa, path);
        (void) unlink(path);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        /* As systemd's own: the daemon sends from the unprivileged user it becomes. */
        assert_int_equal(chmod(path, 0777), 0);
        return fd;
}

/* Takes over fd, the bound NOTIFY_SOCKET; pidfd is the daemon's. */
static struct notify_listener *notify_listener_new(int fd, int pidfd) {
        struct notify_listener *l = calloc(1, sizeof *l);
        pthread_condattr_t attr;

        assert_non_null(l);
        l->fd = fd;
        l->pidfd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
        assert_true(l->pidfd >= 0);
        l->wake = eventfd(0, EFD_CLOEXEC);
        assert_true(l->wake >= 0);
        pthread_mutex_init(&l->lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&l->cond, &attr);
        pthread_condattr_destroy(&attr);
        assert_int_equal(pthread_create(&l->thread, NULL, notify_thread, l), 0);
        return l;
}

static void notify_listener_free(struct notify_listener *l) {
        if (!l)
                return;
        assert_int_equal(eventfd_write(l->wake, 1), 0);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        close(l->wake);
        close(l->pidfd);
        close(l->fd);
        free(l);
}

static unsigned notify_count(struct notify_listener *l, unsigned line) {
        pthread_mutex_lock(&l->lock);
        unsigned n = l->counts[line];
        pthread_mutex_unlock(&l->lock);
        return n;
}

/* Waits until line was seen `target` times (true) or the daemon exited (false). */
static bool notify_wait(struct notify_listener *l, unsigned line, unsigned target) {
        struct timespec deadline;
        bool reached;

        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += HARNESS_TIMEOUT_MS / 1000;
        pthread_mutex_lock(&l->lock);
        while (l->counts[line] < target && !l->exited)
                if (pthread_cond_timedwait(&l->cond, &l->lock, &deadline) == ETIMEDOUT)
                        break;
        reached = l->counts[line] >= target;
        bool exited = l->exited;
        pthread_mutex_unlock(&l->lock);
        if (!reached && !exited)
                fail_msg("coherencyd did not send %s within %d ms", notify_lines[line], HARNESS_TIMEOUT_MS);
        return reached;
}

/* ---- the daemon --------------------------------------------------------- */

int harness_setup(void **state) {
        struct harness *h = calloc(1, sizeof *h);
        char tmpl[] = "/tmp/coherencyd-integ.XXXXXX";

        assert_non_null(h);
        h->pidfd = h->stderr_fd = -1;
        snprintf(h->source_dir, sizeof h->source_dir, "%s", env_required("COH_TEST_SOURCE_DIR"));
        snprintf(h->coherencyd, sizeof h->coherencyd, "%s", env_required("COH_TEST_COHERENCYD"));
        snprintf(h->coherencyctl, sizeof h->coherencyctl, "%s", env_required("COH_TEST_COHERENCYCTL"));

        assert_non_null(mkdtemp(tmpl));
        /* Clients run as nobody too: they must reach the socket inside. */
        assert_int_equal(chmod(tmpl, 0755), 0);
        snprintf(h->dir, sizeof h->dir, "%s", tmpl);
        snprintf(h->sysfs, sizeof h->sysfs, "%s/sys", h->dir);
        snprintf(h->config, sizeof h->config, "%s/config", h->dir);
        snprintf(h->socket, sizeof h->socket, "%s/io.coherencyd", h->dir);
        snprintf(h->notify, sizeof h->notify, "%s/notify", h->dir);

        char tool[PATH_MAX], demo_config[PATH_MAX];
        snprintf(tool, sizeof tool, "%s/demo/make-sim-sysfs", h->source_dir);
        snprintf(demo_config, sizeof demo_config, "%s/demo/config", h->source_dir);
        char *const make_sysfs[] = { tool, h->sysfs, NULL };
        char *const copy_config[] = { "cp", "-R", demo_config, h->config, NULL };
        assert_int_equal(run_command(make_sysfs, 0, NULL, NULL), 0);
        assert_int_equal(run_command(copy_config, 0, NULL, NULL), 0);

        *state = h;
        return 0;
}

/* SIGTERM and reap; returns the wait status. A daemon that does not stop is killed. */
static int daemon_terminate(struct harness *h) {
        int status = 0;
        struct pollfd p = { .fd = h->pidfd, .events = POLLIN };

        kill(h->pid, SIGTERM);
        if (poll(&p, 1, HARNESS_TIMEOUT_MS) <= 0)
                kill(h->pid, SIGKILL);
        (void) waitpid(h->pid, &status, 0);
        close(h->pidfd);
        h->pidfd = -1;
        h->pid = 0;
        return status;
}

static void daemon_forget(struct harness *h) {
        vconn_free(h->sync);
        h->sync = NULL;
        notify_listener_free(h->notify_listener);
        h->notify_listener = NULL;
        if (h->stderr_fd >= 0)
                close(h->stderr_fd);
        h->stderr_fd = -1;
        free(h->stderr_buf);
        h->stderr_buf = NULL;
        h->stderr_len = 0;
}

int harness_teardown(void **state) {
        struct harness *h = *state;
        int status = 0;
        bool was_running = h->pid > 0;

        /* Clean up first: a failed assertion below must not leave a daemon or files behind. */
        if (was_running)
                status = daemon_terminate(h);
        daemon_forget(h);
        (void) nftw(h->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(h);
        if (was_running) {
                assert_true(WIFEXITED(status));
                assert_int_equal(WEXITSTATUS(status), 0);
        }
        return 0;
}

/* $COH_TEST_DAEMON_WRAPPER: words run before the daemon's command line (valgrind and its
 * options, say), split on blanks into argv without allocating (this runs after fork()).
 * Returns how many; 0 without one. */
#define WRAPPER_WORDS_MAX 32
static size_t daemon_wrapper(char *buf, size_t size, char *words[WRAPPER_WORDS_MAX]) {
        const char *w = getenv("COH_TEST_DAEMON_WRAPPER");
        size_t n = 0;

        if (!w || strlen(w) >= size)
                return 0;
        memcpy(buf, w, strlen(w) + 1);
        for (char *p = buf; *p && n < WRAPPER_WORDS_MAX;) {
                while (*p == ' ' || *p == '\t')
                        *p++ = 0;
                if (!*p)
                        break;
                words[n++] = p;
                while (*p && *p != ' ' && *p != '\t')
                        p++;
        }
        return n;
}

static void daemon_exec(struct harness *h, int stderr_fd) {
        char platform[PATH_MAX];
        char wrapper[1024], *words[WRAPPER_WORDS_MAX + 9];
        size_t n_wrapper = daemon_wrapper(wrapper, sizeof wrapper, words);
        char **argv = words + n_wrapper;
        const char *asan = getenv("ASAN_OPTIONS");
        char asan_options[1024];

        argv[0] = h->coherencyd;
        argv[1] = "--platform";
        argv[2] = platform;
        argv[3] = "--config";
        argv[4] = h->config;
        argv[5] = "--socket";
        argv[6] = h->socket;
        argv[7] = "--no-sandbox";
        argv[8] = NULL;

        if (stderr_fd >= 0 && dup2(stderr_fd, STDERR_FILENO) < 0)
                _exit(126);
        (void) close_range(3, ~0U, 0);
        if (h->options.fd_limit > 0) {
                struct rlimit rl = { .rlim_cur = h->options.fd_limit, .rlim_max = h->options.fd_limit };
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        _exit(126);
        }
        snprintf(platform, sizeof platform, "sim:%s", h->sysfs);
        /* Under a wrapper, --no-sandbox: valgrind (3.19) cannot run seccomp(2) (an unhandled
         * system call to it), and its own system calls are not the daemon's. */
        if (!h->options.no_sandbox && n_wrapper == 0) {
                argv[7] = NULL;
                /* LeakSanitizer's stop-the-world needs syscalls the sandbox forbids; it
                 * would turn every clean exit into exit status 1. */
                snprintf(asan_options, sizeof asan_options, "%s%sdetect_leaks=0", asan ?: "", asan ? ":" : "");
                setenv("ASAN_OPTIONS", asan_options, 1);
        }
        setenv("NOTIFY_SOCKET", h->notify, 1);
        if (h->options.no_journald)
                setenv("COHERENCYD_JOURNAL_SOCKET", "/nonexistent", 1);
        else
                unsetenv("COHERENCYD_JOURNAL_SOCKET");
        /* Not socket-activated, and stderr is not the journal. */
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        unsetenv("JOURNAL_STREAM");
        execvp(words[0], words);
        _exit(127);
}

int harness_try_start(struct harness *h) {
        int err[2] = { -1, -1 }, status;

        assert_int_equal(h->pid, 0);
        /* valgrind takes the daemon's descriptors above the limit for its own: it closes a
         * connection that accept() returns there and tells the daemon EMFILE, so a client
         * is cut off where the kernel would have kept it waiting. Not the daemon's doing. */
        const char *wrapper = getenv("COH_TEST_DAEMON_WRAPPER");
        if (h->options.fd_limit > 0 && wrapper && *wrapper) {
                print_message("skipped: a descriptor limit (fd_limit) under $COH_TEST_DAEMON_WRAPPER\n");
                skip();
        }
        daemon_forget(h);
        /* Bound before the fork, so that no notification can go missing. */
        int notify_fd = notify_socket(h->notify);
        if (h->options.capture_stderr)
                assert_int_equal(pipe2(err, O_CLOEXEC), 0);

        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                daemon_exec(h, err[1]);
        if (err[1] >= 0)
                close(err[1]);
        h->stderr_fd = err[0];
        h->pid = h->journal_pid = pid;
        h->pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        assert_true(h->pidfd >= 0);
        h->notify_listener = notify_listener_new(notify_fd, h->pidfd);

        if (!notify_wait(h->notify_listener, NOTIFY_READY, 1)) {
                assert_int_equal(waitpid(pid, &status, 0), pid);
                close(h->pidfd);
                h->pidfd = -1;
                h->pid = 0;
                return status ?: -1; /* exit status 0 before READY=1 is a failure too */
        }
        h->sync = vconn_connect(h);
        /* Accepting it is not done until the daemon answers on it. */
        harness_sync(h);
        return 0;
}

void harness_start(struct harness *h) {
        int status = harness_try_start(h);
        if (status != 0)
                fail_msg("coherencyd exited before READY=1 (wait status 0x%x)", (unsigned) status);
}

void harness_start_leak_checked(struct harness *h) {
        h->options.no_sandbox = true;
        harness_start(h);
}

void harness_stop(struct harness *h) {
        assert_true(h->pid > 0);
        int status = daemon_terminate(h);
        vconn_free(h->sync);
        h->sync = NULL;
        if (!WIFEXITED(status))
                fail_msg("coherencyd died of signal %d on SIGTERM", WTERMSIG(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

void harness_sync(struct harness *h) {
        json_object *p = vconn_call(h->sync, SERVICE "GetInfo", NULL, NULL, 0);
        json_object_put(p);
}

void harness_sighup(struct harness *h) {
        unsigned reloading = notify_count(h->notify_listener, NOTIFY_RELOADING);
        unsigned ready = notify_count(h->notify_listener, NOTIFY_READY);

        assert_int_equal(kill(h->pid, SIGHUP), 0);
        /* RELOADING=1 and then READY=1 again: the reload is done, whatever its outcome. */
        if (!notify_wait(h->notify_listener, NOTIFY_RELOADING, reloading + 1) ||
            !notify_wait(h->notify_listener, NOTIFY_READY, ready + 1))
                fail_msg("coherencyd exited on SIGHUP");
}

char *harness_stderr_line(struct harness *h, const char *needle) {
        int64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;

        assert_true(h->stderr_fd >= 0);
        for (;;) {
                for (char *line = h->stderr_buf; line && *line;) {
                        char *end = strchr(line, '\n');
                        if (!end)
                                break; /* a line still being written */
                        if (memmem(line, (size_t) (end - line), needle, strlen(needle)))
                                return strndup(line, (size_t) (end - line));
                        line = end + 1;
                }
                wait_readable(h->stderr_fd, deadline, needle);
                if (read_append(h->stderr_fd, &h->stderr_buf, &h->stderr_len) == 0)
                        fail_msg("coherencyd closed stderr without a line containing '%s'", needle);
        }
}

void harness_uevent(struct harness *h, const char *line) {
        char fifo[PATH_MAX];
        snprintf(fifo, sizeof fifo, "%s/uevents", h->sysfs);
        /* O_NONBLOCK: ENXIO, not a hang, when no daemon has it open. */
        int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(fd >= 0);
        size_t len = strlen(line);
        assert_int_equal(write(fd, line, len), (ssize_t) len);
        close(fd);
}

void harness_relink_device(struct harness *h, const char *slot, const char *name, const char *target) {
        char link[PATH_MAX], line[128];
        snprintf(link, sizeof link, "%s/devices/pci0000:00/%s/%s", h->sysfs, slot, name);
        (void) unlink(link);
        assert_int_equal(symlink(target, link), 0);
        if (h->pid > 0) {
                snprintf(line, sizeof line, "change %s %s\n", slot, name);
                harness_uevent(h, line);
        }
}

void harness_write_config(struct harness *h, const char *relative, const char *text) {
        char path[PATH_MAX];

        snprintf(path, sizeof path, "%s/%s", h->config, relative);
        if (!text) {
                assert_int_equal(unlink(path), 0);
                return;
        }
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

const char *harness_rule(const struct harness *h, const char *relative, unsigned line, char *buf, size_t size) {
        snprintf(buf, size, "%s/%s:%u", h->config, relative, line);
        return buf;
}

/*
 * Counts the daemon's descriptors whose link starts with prefix (all with
 * NULL) and that accept (NULL: every one) takes; with dump, also prints each
 * one, so a failed count says what is there. One walk of /proc/PID/fd for
 * every count the tests make.
 */
static unsigned daemon_fds_walk(const struct harness *h, const char *prefix,
                                bool (*accept)(const struct harness *h, const char *fd, const char *target, bool dump),
                                bool dump) {
        char path[64], target[PATH_MAX];
        unsigned n = 0;
        struct dirent *de;

        assert_true(h->pid > 0);
        snprintf(path, sizeof path, "/proc/%d/fd", (int) h->pid);
        DIR *d = opendir(path);
        assert_non_null(d);
        while ((de = readdir(d))) {
                char link[PATH_MAX];

                if (de->d_name[0] == '.')
                        continue;
                snprintf(link, sizeof link, "%s/%s", path, de->d_name);
                ssize_t k = readlink(link, target, sizeof target - 1);
                if (k < 0)
                        continue; /* closed while we looked */
                target[k] = 0;
                if (prefix && strncmp(target, prefix, strlen(prefix)) != 0)
                        continue;
                if (accept) {
                        n += accept(h, de->d_name, target, dump);
                        continue;
                }
                n++;
                if (dump)
                        print_message("coherencyd fd %s -> %s\n", de->d_name, target);
        }
        closedir(d);
        return n;
}

static unsigned daemon_fds_scan(const struct harness *h, const char *prefix, bool dump) {
        return daemon_fds_walk(h, prefix, NULL, dump);
}

unsigned daemon_fds(const struct harness *h, const char *prefix) {
        return daemon_fds_scan(h, prefix, false);
}

void expect_daemon_fds(const struct harness *h, const char *prefix, unsigned expected) {
        unsigned n = daemon_fds_scan(h, prefix, false);

        if (n == expected)
                return;
        (void) daemon_fds_scan(h, prefix, true);
        fail_msg("coherencyd holds %u descriptor(s)%s%s, expected %u", n, prefix ? " of " : "", prefix ?: "",
                 expected);
}

/* ---- raw Varlink ------------------------------------------------------- */

static struct vconn *vconn_new(int fd) {
        struct vconn *c = calloc(1, sizeof *c);
        assert_non_null(c);
        c->fd = fd;
        coh_frame_init(&c->in);
        return c;
}

struct vconn *vconn_connect_queued(struct harness *h) {
        struct sockaddr_un sa;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        unix_address(&sa, h->socket);
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                fail_msg("connect(%s): %s", h->socket, strerror(errno));
        return vconn_new(fd);
}

struct vconn *vconn_connect(struct harness *h) {
        struct vconn *c = vconn_connect_queued(h);
        /* connect() returns once the kernel queued us; the daemon accepts later. Until it
         * has, what we send does not follow in order what others send. */
        if (h->sync)
                harness_sync(h);
        return c;
}

static void vconn_close_reply_fds(struct vconn *c) {
        for (size_t i = 0; i < c->n_reply_fds; i++)
                if (c->reply_fds[i] >= 0)
                        close(c->reply_fds[i]);
        c->n_reply_fds = 0;
}

int vconn_take_fd(struct vconn *c, size_t index) {
        if (index >= c->n_reply_fds || c->reply_fds[index] < 0)
                return -1;
        int fd = c->reply_fds[index];
        c->reply_fds[index] = -1;
        return fd;
}

size_t vconn_reply_fds(const struct vconn *c) {
        return c->n_reply_fds;
}

void vconn_free(struct vconn *c) {
        if (!c)
                return;
        vconn_close_reply_fds(c);
        coh_frame_done(&c->in);
        close(c->fd);
        free(c);
}

void vconn_send_raw(struct vconn *c, const void *data, size_t len, const int *fds, size_t n_fds) {
        size_t off = 0;

        while (off < len) {
                /* Only the first byte carries the descriptors. */
                ssize_t n = send_with_fds(c->fd, (const char *) data + off, len - off, fds, off == 0 ? n_fds : 0);
                if (n < 0 && errno == EINTR)
                        continue;
                /* The daemon may close on us mid-way; that is what some tests want. */
                if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
                        return;
                if (n < 0)
                        fail_msg("sendmsg: %s", strerror(errno));
                off += (size_t) n;
        }
}

void vconn_send(struct vconn *c, const char *method, const char *params, const int *fds, size_t n_fds, bool more) {
        json_object *p = NULL;

        if (params) {
                p = json_tokener_parse(params);
                if (!p)
                        fail_msg("test bug: parameters are not JSON: %s", params);
        }
        char *json = coh_call_format(method, p, more, false);
        assert_non_null(json);
        int r = coh_send_message(c->fd, json, fds, n_fds);
        if (r < 0)
                fail_msg("sending %s: %s", method, strerror(-r));
        free(json);
}

int vconn_recv(struct vconn *c, struct coh_reply *ret) {
        int64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;

        for (;;) {
                struct coh_message m;
                int r = coh_frame_next(&c->in, &m);
                if (r < 0)
                        fail_msg("coherencyd sent an empty message");
                if (r > 0) {
                        r = coh_reply_parse(m.json, ret);
                        if (r < 0)
                                fail_msg("coherencyd sent something that is no Varlink reply: %s", m.json);
                        /* What came with this reply replaces what came with the last one. */
                        vconn_close_reply_fds(c);
                        for (size_t i = 0; i < m.n_fds; i++)
                                c->reply_fds[c->n_reply_fds++] = m.fds[i];
                        m.n_fds = 0;
                        coh_message_done(&m);
                        return 0;
                }
                wait_readable(c->fd, deadline, "a reply from coherencyd");
                ssize_t n = coh_frame_recv(&c->in, c->fd);
                if (n == 0 || n == -ECONNRESET)
                        return -ECONNRESET;
                if (n < 0 && n != -EAGAIN && n != -EINTR)
                        fail_msg("reading a reply: %s", strerror((int) -n));
        }
}

/* Sends and reads the answer; fails the test if the connection closes instead. */
static void vconn_roundtrip(struct vconn *c, const char *method, const char *params, const int *fds, size_t n_fds,
                            struct coh_reply *ret) {
        vconn_send(c, method, params, fds, n_fds, false);
        if (vconn_recv(c, ret) < 0)
                fail_msg("coherencyd closed the connection instead of answering %s", method);
}

json_object *vconn_call(struct vconn *c, const char *method, const char *params, const int *fds, size_t n_fds) {
        struct coh_reply reply;

        vconn_roundtrip(c, method, params, fds, n_fds, &reply);
        if (reply.error)
                fail_msg("%s failed: %s %s", method, reply.error,
                         json_object_to_json_string(reply.parameters));
        json_object *p = json_object_get(reply.parameters);
        coh_reply_done(&reply);
        return p;
}

json_object *vconn_call_error(struct vconn *c, const char *method, const char *params, const int *fds, size_t n_fds,
                              const char *error) {
        struct coh_reply reply;

        vconn_roundtrip(c, method, params, fds, n_fds, &reply);
        if (!reply.error || strcmp(reply.error, error) != 0)
                fail_msg("%s: expected error %s, got %s %s", method, error, reply.error ?: "a reply",
                         json_object_to_json_string(reply.parameters));
        json_object *p = json_object_get(reply.parameters);
        coh_reply_done(&reply);
        return p;
}

void vconn_expect_closed(struct vconn *c) {
        struct coh_reply reply;

        if (vconn_recv(c, &reply) == 0) {
                char *what = strdup(json_object_to_json_string(reply.root));
                coh_reply_done(&reply);
                fail_msg("expected coherencyd to close the connection, it answered %s", what);
        }
}

/* ---- peers -------------------------------------------------------------- */

/* In the child: connect and hand the socket to the test over sp. */
static int peer_child_connect(const struct sockaddr_un *sa, int sp) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || connect(fd, (const struct sockaddr *) sa, sizeof *sa) < 0)
                return -errno;
        if (send_with_fds(sp, "x", 1, &fd, 1) != 1)
                return -errno;
        close(fd);
        return 0;
}

void peer_connect(struct harness *h, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups,
                  struct peer *ret) {
        struct sockaddr_un sa;
        int sp[2], ctl[2];

        unix_address(&sa, h->socket);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(pipe2(ctl, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char c;
                close_all_but(sp[1], ctl[0]);
                if (drop_privileges(uid, gid, groups, n_groups) < 0 || peer_child_connect(&sa, sp[1]) < 0)
                        _exit(1);
                close(sp[1]);
                /* Live until the test closes ctl: the daemon knows us as the peer. */
                while (read(ctl[0], &c, 1) < 0 && errno == EINTR)
                        ;
                _exit(0);
        }
        close(sp[1]);
        close(ctl[0]);

        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        char byte;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof control };
        wait_readable(sp[0], now_ms() + HARNESS_TIMEOUT_MS, "a peer's connection");
        if (recvmsg(sp[0], &mh, MSG_CMSG_CLOEXEC) != 1 || !CMSG_FIRSTHDR(&mh))
                fail_msg("the peer process (uid %u) could not connect to %s", (unsigned) uid, h->socket);
        int fd;
        memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof fd);
        close(sp[0]);

        *ret = (struct peer) { .conn = vconn_new(fd), .pid = pid, .ctl = ctl[1] };
        harness_sync(h); /* accepted, as with vconn_connect() */
}

void peer_connect_nobody(struct harness *h, struct peer *ret) {
        peer_connect(h, NOBODY_UID, NOGROUP_GID, NULL, 0, ret);
}

void peer_exit(struct peer *p) {
        int status;

        if (p->pid <= 0)
                return;
        close(p->ctl);
        p->ctl = -1;
        assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
        p->pid = 0;
}

void peer_done(struct peer *p) {
        peer_exit(p);
        vconn_free(p->conn);
        p->conn = NULL;
}

/* ---- simulated kernel objects ------------------------------------------ */

int sim_object(const char *format, ...) {
        char object[128];
        va_list ap;

        va_start(ap, format);
        vsnprintf(object, sizeof object, format, ap);
        va_end(ap);
        int fd = coh_sim_object(object);
        if (fd < 0)
                fail_msg("memfd_create(%s%s): %s", COH_SIM_PREFIX, object, strerror(-fd));
        return fd;
}

void sim_vm_state(int vm, char *buf, size_t size) {
        ssize_t n = pread(vm, buf, size - 1, 0);
        assert_true(n >= 0);
        buf[n] = 0;
}

/* Calls fn for each line of the VM's state until it returns true. */
static bool sim_vm_find_line(int vm, bool (*fn)(const char *line, const void *arg), const void *arg) {
        char buf[8192];

        sim_vm_state(vm, buf, sizeof buf);
        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                if (fn(line, arg))
                        return true;
        }
        return false;
}

static bool line_is(const char *line, const void *arg) {
        return strcmp(line, arg) == 0;
}

bool sim_vm_has_line(int vm, const char *line) {
        return sim_vm_find_line(vm, line_is, line);
}

struct prefix_count {
        const char *prefix;
        unsigned n;
};

static bool line_count_prefix(const char *line, const void *arg) {
        struct prefix_count *c = (struct prefix_count *) arg;
        c->n += strncmp(line, c->prefix, strlen(c->prefix)) == 0;
        return false;
}

unsigned sim_vm_count_lines(int vm, const char *prefix) {
        struct prefix_count c = { .prefix = prefix };
        (void) sim_vm_find_line(vm, line_count_prefix, &c);
        return c.n;
}

long sim_vm_noncoherent_dma(int vm) {
        struct coh_sim_vm_state st;
        assert_int_equal(coh_sim_vm_read(vm, &st), 0);
        return st.noncoherent_dma;
}

/* ---- journal ------------------------------------------------------------ */

static json_object *journal_read(struct harness *h, char *const argv[]) {
        char *const sync[] = { "journalctl", "--sync", NULL };
        char *out = NULL, *err = NULL;

        /* journald answers --sync only after it wrote every datagram already queued. */
        assert_int_equal(run_command(sync, 0, NULL, NULL), 0);
        int r = run_command(argv, 0, &out, &err);
        if (r != 0)
                fail_msg("journalctl failed (%d): %s", r, err);
        free(err);

        json_object *records = json_object_new_array();
        for (char *line = out, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                json_object *rec = json_tokener_parse(line);
                if (!rec)
                        fail_msg("journalctl -o json printed a line that is no JSON: %s", line);
                json_object_array_add(records, rec);
        }
        free(out);
        return records;
}

/* The journalctl command line for this daemon's records with MESSAGE_ID (any
 * when NULL) and the "FIELD=value" matches in ap. */
struct journal_query {
        char *argv[32];
        char pid_match[32], id_match[64];
};

static void journal_query_init(struct journal_query *q, const struct harness *h, const char *message_id, va_list ap) {
        size_t k = 0;

        q->argv[k++] = "journalctl";
        q->argv[k++] = "-D";
        q->argv[k++] = (char *) env_required("COH_JOURNAL_DIR");
        q->argv[k++] = "-o";
        q->argv[k++] = "json";
        /* Every test starts its own daemon: its pid keeps tests' records apart. */
        snprintf(q->pid_match, sizeof q->pid_match, "_PID=%d", (int) h->journal_pid);
        q->argv[k++] = q->pid_match;
        if (message_id) {
                snprintf(q->id_match, sizeof q->id_match, "MESSAGE_ID=%s", message_id);
                q->argv[k++] = q->id_match;
        }
        for (const char *m; (m = va_arg(ap, const char *));) {
                assert_true(k < sizeof q->argv / sizeof q->argv[0] - 1);
                q->argv[k++] = (char *) m;
        }
        q->argv[k] = NULL;
}

/* Flushes and reads until at least n records match (a bounded number of times). */
static json_object *journal_wait(struct harness *h, size_t n, const char *message_id, va_list ap) {
        struct journal_query q;
        json_object *records = NULL;

        journal_query_init(&q, h, message_id, ap);
        for (unsigned attempt = 0; attempt < JOURNAL_TRIES; attempt++) {
                json_object_put(records);
                records = journal_read(h, q.argv);
                if (json_object_array_length(records) >= n)
                        break;
        }
        if (json_object_array_length(records) < n)
                fail_msg("expected %zu journal record(s) with MESSAGE_ID=%s, found %zu: %s", n, message_id ?: "(any)",
                         json_object_array_length(records), json_object_to_json_string(records));
        return records;
}

json_object *journal_expect(struct harness *h, size_t n, const char *message_id, ...) {
        va_list ap;

        va_start(ap, message_id);
        json_object *records = journal_wait(h, n, message_id, ap);
        va_end(ap);
        if (json_object_array_length(records) != n)
                fail_msg("expected %zu journal record(s) with MESSAGE_ID=%s, found %zu: %s", n, message_id ?: "(any)",
                         json_object_array_length(records), json_object_to_json_string(records));
        return records;
}

json_object *journal_expect_at_least(struct harness *h, size_t n, const char *message_id, ...) {
        va_list ap;

        va_start(ap, message_id);
        json_object *records = journal_wait(h, n, message_id, ap);
        va_end(ap);
        return records;
}

const char *journal_field(json_object *record, const char *name) {
        json_object *v;
        if (!json_object_object_get_ex(record, name, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* ---- JSON -------------------------------------------------------------- */

json_object *jmember(json_object *o, const char *key) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                fail_msg("'%s' missing in %s", key, json_object_to_json_string(o));
        return v;
}

static json_object *json_typed(json_object *o, const char *key, json_type type) {
        json_object *v = jmember(o, key);
        if (!json_object_is_type(v, type))
                fail_msg("'%s' has the wrong type in %s", key, json_object_to_json_string(o));
        return v;
}

const char *jstr(json_object *o, const char *key) {
        return json_object_get_string(json_typed(o, key, json_type_string));
}

int64_t jint(json_object *o, const char *key) {
        return json_object_get_int64(json_typed(o, key, json_type_int));
}

bool jbool(json_object *o, const char *key) {
        return json_object_get_boolean(json_typed(o, key, json_type_boolean));
}

/* ---- common requests ---------------------------------------------------- */

/* demo/make-sim-sysfs: the first device of each IOMMU group. */
static const char *const group_slots[] = {
        [1] = "0000:00:02.0", [2] = "0000:00:03.0", [3] = "0000:00:04.0", [4] = "0000:00:05.0",
        [5] = "0000:00:06.0", [6] = "0000:00:07.0", [7] = "0000:00:08.0", [8] = "0000:00:09.0",
        [9] = "0000:00:0a.0",
};

const char *group_slot(unsigned group) {
        if (group >= sizeof group_slots / sizeof group_slots[0] || !group_slots[group])
                fail_msg("the demo sysfs tree has no IOMMU group %u", group);
        return group_slots[group];
}

/* The descriptors and parameters of a request about the device of VFIO group
 * `group` (in a container, or none) for vm (or, with -1, none: a Probe). The
 * descriptors made here are closed by request_finish(); vm stays the caller's. */
struct request {
        int fds[3];
        size_t n_fds;
        bool own[3];
        char params[128];
};

static void request_prepare(struct request *r, int vm, unsigned group, const char *container) {
        size_t len = 0;

        *r = (struct request) {};
        len += snprintf(r->params + len, sizeof r->params - len, "{\"device\":\"%s\"", group_slot(group));
        if (vm >= 0) {
                len += snprintf(r->params + len, sizeof r->params - len, ",\"vm\":%zu", r->n_fds);
                r->fds[r->n_fds++] = vm;
        }
        if (container) {
                len += snprintf(r->params + len, sizeof r->params - len, ",\"iommu\":%zu", r->n_fds);
                r->own[r->n_fds] = true;
                r->fds[r->n_fds++] = sim_object("vfio-container:%s", container);
        }
        snprintf(r->params + len, sizeof r->params - len, "}");
}

/* Our copies of what the daemon got; it keeps its own. */
static void request_finish(struct request *r) {
        for (size_t i = 0; i < r->n_fds; i++)
                if (r->own[i])
                        close(r->fds[i]);
}

json_object *request_grant(struct vconn *c, int vm, unsigned group, const char *container) {
        struct request r;

        request_prepare(&r, vm, group, container);
        json_object *p = vconn_call(c, BROKER "RequestGrant", r.params, r.fds, r.n_fds);
        request_finish(&r);
        /* The group comes exactly with a grant. */
        bool has_group = json_object_object_get_ex(p, "group", NULL);
        if (has_group != json_object_object_get_ex(p, "grant", NULL) || has_group != (vconn_reply_fds(c) == 1))
                fail_msg("RequestGrant: group %s, grant %s, %zu descriptor(s): %s", has_group ? "present" : "absent",
                         json_object_object_get_ex(p, "grant", NULL) ? "present" : "absent", vconn_reply_fds(c),
                         json_object_to_json_string(p));
        return p;
}

json_object *request_grant_error(struct vconn *c, int vm, unsigned group, const char *container, const char *error) {
        struct request r;

        request_prepare(&r, vm, group, container);
        json_object *p = vconn_call_error(c, BROKER "RequestGrant", r.params, r.fds, r.n_fds, error);
        request_finish(&r);
        if (vconn_reply_fds(c) != 0)
                fail_msg("RequestGrant failed with %s but handed over %zu descriptor(s)", error, vconn_reply_fds(c));
        return p;
}

json_object *probe(struct vconn *c, unsigned group, const char *container) {
        struct request r;

        request_prepare(&r, -1, group, container);
        json_object *p = vconn_call(c, BROKER "Probe", r.params, r.fds, r.n_fds);
        request_finish(&r);
        return p;
}

json_object *list_grants(struct vconn *c, const char *method) {
        json_object *p = vconn_call(c, method, NULL, NULL, 0);
        json_object *grants = json_object_get(jmember(p, "grants"));
        json_object_put(p);
        return grants;
}

json_object *release_grant(struct vconn *c, const char *grant) {
        char params[128];

        snprintf(params, sizeof params, "{\"grant\":\"%s\"}", grant);
        return vconn_call(c, BROKER "ReleaseGrant", params, NULL, 0);
}

/* ---- custody (added for the second edition's tests) --------------------- */

json_object *vconn_next_event(struct vconn *c, const char *event) {
        struct coh_reply reply;

        if (vconn_recv(c, &reply) < 0)
                fail_msg("coherencyd closed the stream instead of sending event %s", event);
        if (reply.error)
                fail_msg("expected event %s, got error %s %s", event, reply.error,
                         json_object_to_json_string(reply.parameters));
        if (!reply.continues)
                fail_msg("event %s: the reply does not say more follow: %s", event,
                         json_object_to_json_string(reply.root));
        json_object *p = json_object_get(reply.parameters);
        coh_reply_done(&reply);
        json_object *e;
        if (!json_object_object_get_ex(p, "event", &e) || strcmp(json_object_get_string(e), event) != 0)
                fail_msg("expected event %s, got %s", event, json_object_to_json_string(p));
        return p;
}

json_object *request_grant_take(struct vconn *c, int vm, unsigned group, const char *container, int *ret_group) {
        json_object *p = request_grant(c, vm, group, container);
        int fd = vconn_take_fd(c, 0);

        if (fd < 0)
                fail_msg("RequestGrant for IOMMU group %u handed no group over: %s", group,
                         json_object_to_json_string(p));
        assert_int_equal(jint(p, "group"), 0);
        *ret_group = fd;
        return p;
}

json_object *grant_in(json_object *grants, const char *id) {
        for (size_t i = 0; i < json_object_array_length(grants); i++) {
                json_object *g = json_object_array_get_idx(grants, i);
                if (strcmp(jstr(g, "grant"), id) == 0)
                        return g;
        }
        return NULL;
}

/* The VMM process: holds what comes over chan, acknowledging each, until chan closes. */
static void vmm_child(int chan) {
        for (;;) {
                union {
                        struct cmsghdr align;
                        char buf[CMSG_SPACE(sizeof(int))];
                } control;
                char byte;
                struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof control };
                ssize_t n = recvmsg(chan, &mh, MSG_CMSG_CLOEXEC);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        _exit(0);
                /* Kept open, deliberately: that is the point of this process. */
                if (send(chan, "k", 1, MSG_NOSIGNAL) != 1)
                        _exit(1);
        }
}

void vmm_start(struct harness *h, uid_t uid, gid_t gid, size_t n_conns, struct vmm *ret) {
        struct sockaddr_un sa;
        int sp[2];

        assert_true(n_conns >= 1 && n_conns <= VMM_CONNS_MAX);
        unix_address(&sa, h->socket);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int fds[VMM_CONNS_MAX];
                close_all_but(sp[1], sp[1]);
                if (drop_privileges(uid, gid, NULL, 0) < 0)
                        _exit(1);
                for (size_t i = 0; i < n_conns; i++) {
                        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                        if (fds[i] < 0 || connect(fds[i], (const struct sockaddr *) &sa, sizeof sa) < 0)
                                _exit(1);
                }
                if (send_with_fds(sp[1], "c", 1, fds, n_conns) != 1)
                        _exit(1);
                for (size_t i = 0; i < n_conns; i++)
                        close(fds[i]);
                vmm_child(sp[1]);
        }
        close(sp[1]);

        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * VMM_CONNS_MAX)];
        } control = {};
        char byte;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof control };
        wait_readable(sp[0], now_ms() + HARNESS_TIMEOUT_MS, "a VMM process's connections");
        struct cmsghdr *cmsg = NULL;
        if (recvmsg(sp[0], &mh, MSG_CMSG_CLOEXEC) != 1 || !(cmsg = CMSG_FIRSTHDR(&mh)) ||
            cmsg->cmsg_len != CMSG_LEN(sizeof(int) * n_conns))
                fail_msg("the VMM process (uid %u) could not connect to %s", (unsigned) uid, h->socket);

        *ret = (struct vmm) { .pid = pid, .chan = sp[0], .n_conns = n_conns };
        for (size_t i = 0; i < n_conns; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
                ret->conn[i] = vconn_new(fd);
        }
        ret->pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        assert_true(ret->pidfd >= 0);
        /* Accepted, each of them, and what the daemon did on accepting is done. */
        for (size_t i = 0; i < n_conns; i++)
                vconn_ping(ret->conn[i]);
        harness_sync(h);
}

void vmm_hold(struct vmm *v, int fd) {
        char ack;

        assert_true(v->pid > 0);
        if (send_with_fds(v->chan, "h", 1, &fd, 1) != 1)
                fail_msg("passing a descriptor to the VMM process: %s", strerror(errno));
        wait_readable(v->chan, now_ms() + HARNESS_TIMEOUT_MS, "the VMM process to take a descriptor");
        assert_int_equal(recv(v->chan, &ack, 1, 0), 1);
}

bool vmm_alive(const struct vmm *v) {
        struct pollfd p = { .fd = v->pidfd, .events = POLLIN };

        if (v->pid <= 0)
                return false;
        assert_true(poll(&p, 1, 0) >= 0);
        return !(p.revents & POLLIN);
}

static int vmm_reap(struct vmm *v) {
        int status;

        assert_int_equal(waitpid(v->pid, &status, 0), v->pid);
        v->pid = 0;
        close(v->pidfd);
        v->pidfd = -1;
        close(v->chan);
        v->chan = -1;
        return status;
}

int vmm_wait(struct vmm *v) {
        assert_true(v->pid > 0);
        wait_readable(v->pidfd, now_ms() + HARNESS_TIMEOUT_MS, "the VMM process to end");
        return vmm_reap(v);
}

int vmm_exit(struct vmm *v) {
        assert_true(v->pid > 0);
        shutdown(v->chan, SHUT_RDWR);
        return vmm_reap(v);
}

void vmm_done(struct vmm *v) {
        if (v->pid > 0)
                (void) vmm_exit(v);
        for (size_t i = 0; i < v->n_conns; i++) {
                vconn_free(v->conn[i]);
                v->conn[i] = NULL;
        }
        v->n_conns = 0;
}

void harness_idle(struct harness *h) {
        harness_sync(h);
        harness_sync(h);
}

/* Whether the daemon's descriptor fd (a socket) is a stream socket, asked through its pidfd. */
static bool is_stream_socket(const struct harness *h, const char *fd_name, const char *target, bool dump) {
        int fd = (int) syscall(SYS_pidfd_getfd, h->pidfd, atoi(fd_name), 0);
        if (fd < 0) {
                if (errno == EBADF)
                        return false; /* closed while we looked */
                fail_msg("pidfd_getfd(coherencyd, %s): %s", fd_name, strerror(errno));
        }
        int type = 0;
        socklen_t len = sizeof type;
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len), 0);
        close(fd);
        if (dump)
                print_message("coherencyd fd %s -> %s (%s)\n", fd_name, target,
                              type == SOCK_STREAM ? "stream" : "not stream");
        return type == SOCK_STREAM;
}

/* Counts (and with dump prints) the daemon's stream sockets. */
static unsigned daemon_stream_sockets_scan(const struct harness *h, bool dump) {
        return daemon_fds_walk(h, FD_SOCKET, is_stream_socket, dump);
}

unsigned daemon_stream_sockets(const struct harness *h) {
        return daemon_stream_sockets_scan(h, false);
}

void expect_daemon_stream_sockets(const struct harness *h, unsigned expected) {
        unsigned n = daemon_stream_sockets_scan(h, false);

        if (n == expected)
                return;
        (void) daemon_stream_sockets_scan(h, true);
        fail_msg("coherencyd holds %u stream socket(s), expected %u", n, expected);
}

void vconn_ping(struct vconn *c) {
        json_object_put(vconn_call(c, SERVICE "GetInfo", NULL, NULL, 0));
}

#define SETTLE_ROUNDS 100 /* round trips before a count that does not settle fails the test */

void expect_daemon_fds_settled(struct harness *h, const char *prefix, unsigned expected) {
        for (unsigned round = 0; round < SETTLE_ROUNDS; round++) {
                harness_sync(h);
                if (daemon_fds(h, prefix) == expected)
                        return;
        }
        expect_daemon_fds(h, prefix, expected);
}

void expect_daemon_stream_sockets_settled(struct harness *h, unsigned expected) {
        for (unsigned round = 0; round < SETTLE_ROUNDS; round++) {
                harness_sync(h);
                if (daemon_stream_sockets(h) == expected)
                        return;
        }
        expect_daemon_stream_sockets(h, expected);
}

/* ---- journal folding, descriptor limits (issue 9) ------------------------- */

json_object *journal_expect_eventually(struct harness *h, size_t n, const char *message_id, ...) {
        struct journal_query q;
        json_object *records = NULL;
        int64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;
        va_list ap;

        va_start(ap, message_id);
        journal_query_init(&q, h, message_id, ap);
        va_end(ap);
        for (;;) {
                json_object_put(records);
                records = journal_read(h, q.argv);
                if (json_object_array_length(records) >= n || remaining_ms(deadline) == 0)
                        break;
                /* A bound on how often journalctl runs, not a pace the test depends on. */
                (void) poll(NULL, 0, 100);
        }
        if (json_object_array_length(records) != n)
                fail_msg("expected %zu journal record(s) with MESSAGE_ID=%s within %d ms, found %zu: %s", n,
                         message_id ?: "(any)", HARNESS_TIMEOUT_MS, json_object_array_length(records),
                         json_object_to_json_string(records));
        return records;
}

static int compare_ints(const void *a, const void *b) {
        int x = *(const int *) a, y = *(const int *) b;
        return (x > y) - (x < y);
}

void daemon_limit_free_fds(struct harness *h, unsigned n_free, struct rlimit *ret_old) {
        assert_true(h->pid > 0);
        process_limit_free_fds(h->pid, n_free, ret_old);
}

pid_t daemon_helper_pid(const struct harness *h) {
        char path[80], buf[64] = "";
        /* The privileged helper is the daemon's only child (README "Processes"). */
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int) h->pid, (int) h->pid);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof buf, f));
        fclose(f);
        pid_t pid = (pid_t) atoi(buf);
        assert_true(pid > 0);
        return pid;
}

unsigned process_fds(pid_t pid) {
        char path[64];
        struct dirent *de;
        unsigned n = 0;
        snprintf(path, sizeof path, "/proc/%d/fd", (int) pid);
        DIR *d = opendir(path);
        assert_non_null(d);
        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

void process_limit_free_fds(pid_t pid, unsigned n_free, struct rlimit *ret_old) {
        char path[64];
        struct dirent *de;
        int *fds = NULL;
        size_t n = 0, k = 0;

        snprintf(path, sizeof path, "/proc/%d/fd", (int) pid);
        DIR *d = opendir(path);
        assert_non_null(d);
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                fds = realloc(fds, (n + 1) * sizeof *fds);
                assert_non_null(fds);
                fds[n++] = atoi(de->d_name);
        }
        closedir(d);
        qsort(fds, n, sizeof *fds, compare_ints);

        /* The lowest limit below which exactly n_free numbers are free: the kernel hands
         * out the lowest free number, and none at or above the soft limit. (Descriptors
         * above it, valgrind's say, stay open and count for nothing.) */
        unsigned limit = 0;
        for (;; limit++) {
                while (k < n && (unsigned) fds[k] < limit)
                        k++;
                if (limit - k == n_free)
                        break;
        }
        free(fds);
        assert_int_equal(prlimit(pid, RLIMIT_NOFILE, NULL, ret_old), 0);
        struct rlimit rl = { .rlim_cur = limit, .rlim_max = ret_old->rlim_max };
        assert_int_equal(prlimit(pid, RLIMIT_NOFILE, &rl, NULL), 0);
}

void daemon_restore_fd_limit(struct harness *h, const struct rlimit *old) {
        assert_int_equal(prlimit(h->pid, RLIMIT_NOFILE, old, NULL), 0);
}

/* $COH_TEST_SKIP: a cmocka glob (* and ?) of tests this run leaves out (the valgrind label:
 * what valgrind cannot run, see tests.cmake); $COH_TEST_ONLY: of the tests it runs alone
 * (for debugging one). Set before main() runs the tests. */
__attribute__((constructor)) static void harness_test_filters(void) {
        const char *skip = getenv("COH_TEST_SKIP"), *only = getenv("COH_TEST_ONLY");
        if (skip && *skip)
                cmocka_set_skip_filter(skip);
        if (only && *only)
                cmocka_set_test_filter(only);
}
