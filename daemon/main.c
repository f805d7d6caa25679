/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * coherencyd: decides which VMs may have real WBINVD emulation and attaches
 * their VFIO files to KVM on their behalf. See coherencyd(8).
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon.h"
#include "fdstore.h"
#include "log.h"
#include "sandbox.h"
#include "util.h"

struct options {
        const char *socket_path;
        const char *platform;
        const char *config_dir;
        const char *vendor_dir;
        bool check_policy;
        bool debug;
        bool no_sandbox;
        bool fdstore;
};

static void help(void) {
        printf("Usage: coherencyd [OPTIONS]\n\n"
               "Broker WBINVD emulation grants for KVM VMs with VFIO devices.\n\n"
               "  --socket PATH         listen on PATH (default " COH_SOCKET_PATH ",\n"
               "                        unless started by socket activation)\n"
               "  --platform linux|sim:DIR\n"
               "                        the host's kernel (default), or the simulated\n"
               "                        platform with a sysfs tree at DIR\n"
               "  --config DIR          coherencyd.conf and policy.d/ (default " COH_SYSCONF_DIR ")\n"
               "  --vendor-policy DIR   vendor rules masked by DIR/policy.d (default\n"
               "                        " COH_VENDOR_POLICY_DIR ", none with --config)\n"
               "  --fd-store            keep grants across restarts in systemd's file\n"
               "                        descriptor store (needs FileDescriptorStoreMax=)\n"
               "  --check-policy        validate the policy and exit\n"
               "  --no-sandbox          do not drop capabilities or install the seccomp filter\n"
               "  --debug               log debug records\n"
               "  --help, --version\n");
}

static int parse_args(int argc, char **argv, struct options *o) {
        enum { ARG_SOCKET = 0x100, ARG_PLATFORM, ARG_CONFIG, ARG_VENDOR, ARG_CHECK, ARG_DEBUG, ARG_NO_SANDBOX, ARG_VERSION, ARG_FDSTORE };
        static const struct option longopts[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "platform", required_argument, NULL, ARG_PLATFORM },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "vendor-policy", required_argument, NULL, ARG_VENDOR },
                { "check-policy", no_argument, NULL, ARG_CHECK },
                { "debug", no_argument, NULL, ARG_DEBUG },
                { "no-sandbox", no_argument, NULL, ARG_NO_SANDBOX },
                { "fd-store", no_argument, NULL, ARG_FDSTORE },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        bool vendor_set = false;
        int c;

        *o = (struct options) {
                .platform = "linux",
                .config_dir = COH_SYSCONF_DIR,
                .vendor_dir = COH_VENDOR_POLICY_DIR,
        };
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET:
                        o->socket_path = optarg;
                        break;
                case ARG_PLATFORM:
                        o->platform = optarg;
                        break;
                case ARG_CONFIG:
                        o->config_dir = optarg;
                        if (!vendor_set)
                                o->vendor_dir = NULL; /* a private config is the whole policy */
                        break;
                case ARG_VENDOR:
                        o->vendor_dir = optarg;
                        vendor_set = true;
                        break;
                case ARG_CHECK:
                        o->check_policy = true;
                        break;
                case ARG_DEBUG:
                        o->debug = true;
                        break;
                case ARG_NO_SANDBOX:
                        o->no_sandbox = true;
                        break;
                case ARG_FDSTORE:
                        o->fdstore = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("coherencyd %s\n", COH_VERSION);
                        return 0;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "coherencyd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static void log_policy_error(struct coh_daemon *d, const struct coh_policy_error *err, bool fatal) {
        char where[4200];
        if (err->line > 0)
                snprintf(where, sizeof where, "%s:%u", err->file, err->line);
        else
                snprintf(where, sizeof where, "%s", err->file);
        char line[32];
        snprintf(line, sizeof line, "%u", err->line);
        char message[4600];
        snprintf(message, sizeof message, "%s: %s%s", where, err->message,
                 fatal ? "" : " (the running policy stays in force)");
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_POLICY_FILE", err->file },
                { "COHERENCYD_POLICY_LINE", line },
                { "COHERENCYD_POLICY_ERROR", err->message },
        };
        if (d->journal)
                (void) coh_journal_send(d->journal, LOG_ERR, COH_MESSAGE_POLICY_FAILED, message, fields, ELEMENTSOF(fields));
        else
                fprintf(stderr, "%s\n", message);
}

static void log_policy_loaded(struct coh_daemon *d, const char *how) {
        const struct coh_broker_config *cfg = coh_policy_broker(d->policy);
        char rules[32], origin[512], message[768];
        snprintf(rules, sizeof rules, "%zu", coh_policy_n_rules(d->policy));
        coh_origin_format(&cfg->mode_origin, origin, sizeof origin);
        snprintf(message, sizeof message, "Policy %s: %s rule file(s); default mode %s, from %s", how, rules,
                 coh_mode_to_string(cfg->mode), origin);
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_MODE", coh_mode_to_string(cfg->mode) },
                { "COHERENCYD_RULE", origin },
                { "COHERENCYD_RULES", rules },
                { "COHERENCYD_CONFIG_DIR", d->config_dir },
        };
        (void) coh_journal_send(d->journal, LOG_INFO, COH_MESSAGE_POLICY_LOADED, message, fields, ELEMENTSOF(fields));
}

int coh_daemon_reload(struct coh_daemon *d, struct coh_policy_error *err) {
        struct coh_policy *p;
        /* Both ways in (SIGHUP, and Manager.ReloadPolicy from ExecReload=) tell systemd. */
        (void) sd_notify(0, "RELOADING=1");
        int r = coh_policy_load(d->config_dir, d->vendor_dir, &p, err);
        (void) sd_notify(0, "READY=1");
        if (r < 0) {
                log_policy_error(d, err, false);
                return r;
        }
        /* Grants keep their own copies of rule strings, so the old policy can go. */
        coh_policy_free(d->policy);
        d->policy = p;
        log_policy_loaded(d, "reloaded");
        coh_daemon_state_changed(d);
        return 0;
}

static void on_status(evutil_socket_t fd, short what, void *userdata) {
        struct coh_daemon *d = userdata;
        (void) sd_notifyf(0, "STATUS=Serving %u client(s), %u grant(s) on %u VM(s)", d->server.n_conns,
                          d->grants.n_grants, coh_grants_n_vms(&d->grants));
}

void coh_daemon_state_changed(struct coh_daemon *d) {
        /* sd_notify can block on a slow reader: one status per loop iteration
         * keeps that to a minimum. The state memfd, though, is written now:
         * the next instance must never see less than what a client was told. */
        if (d->ev_status)
                event_active(d->ev_status, EV_TIMEOUT, 0); /* a no-op while already active */
        coh_fdstore_save(d, false);

        /* Idle: nothing to serve and nothing to keep; socket activation brings us back. */
        unsigned idle = coh_policy_broker(d->policy)->idle_exit_sec;
        if (!d->ev_idle)
                return;
        if (idle > 0 && d->server.n_conns == 0 && d->grants.n_grants == 0) {
                struct timeval tv = { .tv_sec = idle };
                event_add(d->ev_idle, &tv);
        } else
                event_del(d->ev_idle);
}

static void on_idle(evutil_socket_t fd, short what, void *userdata) {
        struct coh_daemon *d = userdata;
        coh_log(d, LOG_INFO, NULL, "Idle for %us, exiting", coh_policy_broker(d->policy)->idle_exit_sec);
        (void) sd_notify(0, "STOPPING=1");
        event_base_loopexit(d->base, NULL);
}

static void on_watchdog(evutil_socket_t fd, short what, void *userdata) {
        /* Sent from the loop itself: a stuck loop stops the pings and systemd restarts us. */
        (void) sd_notify(0, "WATCHDOG=1");
}

static void on_sighup(evutil_socket_t sig, short what, void *userdata) {
        struct coh_daemon *d = userdata;
        struct coh_policy_error err;
        (void) coh_daemon_reload(d, &err);
}

static void on_sigterm(evutil_socket_t sig, short what, void *userdata) {
        struct coh_daemon *d = userdata;
        (void) sd_notify(0, "STOPPING=1");
        event_base_loopexit(d->base, NULL);
}

static bool is_listening_socket(int fd) {
        int v = 0;
        socklen_t len = sizeof v;
        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v;
}

/*
 * Descriptors from systemd: listening sockets are served, everything else is
 * a file descriptor store entry of a previous instance (see fdstore.h).
 */
static int setup_listeners(struct coh_daemon *d, const struct options *o, struct coh_stored_fd **ret_stored,
                           size_t *ret_n_stored) {
        char **names = NULL;
        size_t n_listeners = 0, n_stored = 0;
        int r = 0;
        int n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return n;
        struct coh_stored_fd *stored = n > 0 ? calloc((size_t) n, sizeof *stored) : NULL;
        if (n > 0 && !stored)
                r = -ENOMEM;
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (r < 0) {
                        close(fd);
                } else if (is_listening_socket(fd) && !o->socket_path) {
                        r = coh_server_add_listener(d, fd);
                        n_listeners++;
                } else if (is_listening_socket(fd)) {
                        close(fd);
                } else {
                        stored[n_stored].name = names[i];
                        stored[n_stored++].fd = fd;
                        names[i] = NULL;
                }
                free(names[i]);
        }
        free(names);
        *ret_stored = stored;
        *ret_n_stored = n_stored;
        if (r < 0 || n_listeners > 0)
                return r;

        const char *path = o->socket_path ?: COH_SOCKET_PATH;
        if (!o->socket_path)
                (void) mkdir("/run/coherencyd", 0755);
        r = coh_server_listen_path(d, path);
        if (r == -EADDRINUSE)
                fprintf(stderr, "coherencyd: %s: another coherencyd is serving this socket\n", path);
        else if (r < 0)
                fprintf(stderr, "coherencyd: cannot listen on %s: %s\n", path, strerror(-r));
        return r;
}

static int run(const struct options *o) {
        struct coh_daemon d = {
                .config_dir = o->config_dir,
                .vendor_dir = o->vendor_dir,
                .debug = o->debug,
        };
        struct coh_policy_error err;
        struct coh_stored_fd *stored = NULL;
        size_t n_stored = 0;
        char errbuf[512] = "";
        bool keep = false;
        int r;

        d.state_fd = -1;
        LIST_INIT(&d.server.conns);
        LIST_INIT(&d.grants.vms);
        LIST_INIT(&d.grants.grants);

        r = coh_policy_load(d.config_dir, d.vendor_dir, &d.policy, &err);
        if (r < 0) {
                log_policy_error(&d, &err, true);
                return EXIT_FAILURE;
        }
        r = coh_platform_new(o->platform, &d.platform, errbuf, sizeof errbuf);
        if (r < 0) {
                fprintf(stderr, "coherencyd: %s\n", errbuf[0] ? errbuf : strerror(-r));
                goto out;
        }
        d.base = event_base_new();
        if (!d.base) {
                r = -ENOMEM;
                goto out;
        }
        r = coh_journal_new(d.base, getenv("COHERENCYD_JOURNAL_SOCKET"), 4096, &d.journal);
        if (r < 0) {
                fprintf(stderr, "coherencyd: journal: %s\n", strerror(-r));
                goto out;
        }
        r = setup_listeners(&d, o, &stored, &n_stored);
        if (r < 0)
                goto out;
        /* systemd >= 254 says how many descriptors it keeps for us; 252 needs --fd-store. */
        const char *fdstore_max = getenv("FDSTORE");
        if (getenv("NOTIFY_SOCKET") && (o->fdstore || (fdstore_max && atoi(fdstore_max) > 0))) {
                r = coh_fdstore_enable(&d, stored, n_stored);
                if (r < 0) {
                        fprintf(stderr, "coherencyd: state memfd: %s\n", strerror(-r));
                        goto out;
                }
        }

        /* SIGPIPE never: replies are sent with MSG_NOSIGNAL, the journal too. */
        signal(SIGPIPE, SIG_IGN);
        d.sig_hup = evsignal_new(d.base, SIGHUP, on_sighup, &d);
        d.sig_term = evsignal_new(d.base, SIGTERM, on_sigterm, &d);
        d.sig_int = evsignal_new(d.base, SIGINT, on_sigterm, &d);
        if (!d.sig_hup || !d.sig_term || !d.sig_int) {
                r = -ENOMEM;
                goto out;
        }
        event_add(d.sig_hup, NULL);
        event_add(d.sig_term, NULL);
        event_add(d.sig_int, NULL);
        d.ev_idle = evtimer_new(d.base, on_idle, &d);
        d.ev_status = event_new(d.base, -1, 0, on_status, &d);
        if (!d.ev_idle || !d.ev_status) {
                r = -ENOMEM;
                goto out;
        }
        uint64_t watchdog_usec;
        if (sd_watchdog_enabled(false, &watchdog_usec) > 0) {
                struct timeval tv = { .tv_sec = (time_t) (watchdog_usec / 2 / 1000000),
                                      .tv_usec = (suseconds_t) (watchdog_usec / 2 % 1000000) };
                d.ev_watchdog = event_new(d.base, -1, EV_PERSIST, on_watchdog, &d);
                if (!d.ev_watchdog) {
                        r = -ENOMEM;
                        goto out;
                }
                event_add(d.ev_watchdog, &tv);
        }

        if (!o->no_sandbox) {
                /* CAP_KILL only for RevokeKill=: a capability dropped now cannot come
                 * back, so a reload that turns RevokeKill= on later cannot kill. */
                r = coh_sandbox_enter_flags(coh_policy_broker(d.policy)->revoke_kill ? COH_SANDBOX_KEEP_KILL : 0,
                                            errbuf, sizeof errbuf);
                if (r < 0) {
                        fprintf(stderr, "coherencyd: sandbox: %s\n", errbuf);
                        goto out;
                }
        }

        log_policy_loaded(&d, "loaded");
        coh_log(&d, LOG_INFO, COH_MESSAGE_STARTED, "coherencyd %s started on the %s platform", COH_VERSION,
                d.platform->ops->name);
        if (d.fdstore || n_stored > 0) {
                r = coh_fdstore_adopt(&d, stored, n_stored);
                n_stored = 0;
                if (r < 0)
                        goto out;
        }
        (void) sd_notify(0, "READY=1");
        coh_daemon_state_changed(&d);

        r = event_base_dispatch(d.base) < 0 ? -EIO : 0;

        coh_server_stop_listening(&d);
        keep = d.fdstore && d.grants.n_grants + d.server.n_conns > 0;
        if (keep) {
                /* A restart, an upgrade or a stop: the store keeps every grant
                 * and connection for the next instance (on a stop systemd
                 * closes them, and the kernel detaches the files). */
                coh_fdstore_save(&d, true);
                coh_log(&d, LOG_INFO, COH_MESSAGE_STOPPED,
                        "coherencyd stopping; %u grant(s) and %u connection(s) kept in the file descriptor store",
                        d.grants.n_grants, d.server.n_conns);
                coh_server_forget_all(&d);
                coh_grants_forget(&d);
        } else {
                /* Nobody will watch the groups after us: the end records say so. */
                coh_grants_shutdown(&d);
                coh_server_close_all(&d);
                coh_log(&d, LOG_INFO, COH_MESSAGE_STOPPED, "coherencyd stopped");
        }
out:
        for (size_t i = 0; i < n_stored; i++) {
                close(stored[i].fd);
                free(stored[i].name);
        }
        free(stored);
        if (d.ev_idle)
                event_free(d.ev_idle);
        if (d.ev_status)
                event_free(d.ev_status);
        if (d.ev_watchdog)
                event_free(d.ev_watchdog);
        if (d.state_fd >= 0)
                close(d.state_fd);
        if (d.sig_hup)
                event_free(d.sig_hup);
        if (d.sig_term)
                event_free(d.sig_term);
        if (d.sig_int)
                event_free(d.sig_int);
        coh_server_stop_listening(&d);
        coh_journal_free(d.journal);
        if (d.base)
                event_base_free(d.base);
        coh_platform_free(d.platform);
        coh_policy_free(d.policy);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int check_policy(const struct options *o) {
        struct coh_policy *p;
        struct coh_policy_error err;
        int r = coh_policy_load(o->config_dir, o->vendor_dir, &p, &err);
        if (r < 0) {
                if (err.line > 0)
                        fprintf(stderr, "%s:%u: %s\n", err.file, err.line, err.message);
                else
                        fprintf(stderr, "%s: %s\n", err.file, err.message);
                return EXIT_FAILURE;
        }
        const struct coh_broker_config *cfg = coh_policy_broker(p);
        char origin[512];
        printf("Policy OK: %zu rule file(s), default mode %s (%s)\n", coh_policy_n_rules(p),
               coh_mode_to_string(cfg->mode), coh_origin_format(&cfg->mode_origin, origin, sizeof origin));
        coh_policy_free(p);
        return EXIT_SUCCESS;
}

int main(int argc, char **argv) {
        struct options o;
        int r = parse_args(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? 2 : EXIT_SUCCESS;
        if (o.check_policy)
                return check_policy(&o);
        return run(&o);
}
