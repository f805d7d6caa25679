/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "manager.h"
#include "priv.h"
#include "sandbox.h"
#include "util.h"

/* ---- policy ------------------------------------------------------------- */

static void log_policy_error(const struct coh_policy_error *err, bool fatal) {
        char where[4200], line[32], message[4600];
        if (err->line > 0)
                snprintf(where, sizeof where, "%s:%u", err->file, err->line);
        else
                snprintf(where, sizeof where, "%s", err->file);
        snprintf(line, sizeof line, "%u", err->line);
        snprintf(message, sizeof message, "%s: %s%s", where, err->message,
                 fatal ? "" : " (the running policy stays in force)");
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_POLICY_FILE", err->file },
                { "COHERENCYD_POLICY_LINE", line },
                { "COHERENCYD_POLICY_ERROR", err->message },
        };
        coh_log_record(LOG_ERR, COH_MESSAGE_POLICY_FAILED, message, fields, ELEMENTSOF(fields));
}

/* Every problem of a load, in file order as the parser finds them: each error a
 * POLICY_FAILED record of its own (with what happens next), each warning a warning. */
static void report_policy_problem(enum coh_policy_severity severity, const struct coh_policy_error *e,
                                  void *userdata) {
        const bool *fatal = userdata;
        if (severity == COH_POLICY_ERROR)
                log_policy_error(e, *fatal);
        else
                coh_policy_log_problem(severity, e);
}

static int load_policy(struct coh_manager *m, bool fatal, struct coh_policy **ret, struct coh_policy_error *err) {
        return coh_policy_load_report(m->options.config_dir, m->options.vendor_dir, report_policy_problem, &fatal, ret,
                                      err);
}

static void log_policy_loaded(struct coh_manager *m, const char *how) {
        const struct coh_broker_config *cfg = coh_policy_broker(m->policy);
        char rules[32], origin[512], message[768];
        snprintf(rules, sizeof rules, "%zu", coh_policy_n_rules(m->policy));
        coh_origin_format(&cfg->mode_origin, origin, sizeof origin);
        snprintf(message, sizeof message, "Policy %s: %s rule file(s); default mode %s, from %s", how, rules,
                 coh_mode_to_string(cfg->mode), origin);
        const struct coh_journal_field fields[] = {
                { "COHERENCYD_MODE", coh_mode_to_string(cfg->mode) },
                { "COHERENCYD_RULE", origin },
                { "COHERENCYD_RULES", rules },
                { "COHERENCYD_CONFIG_DIR", m->options.config_dir },
        };
        coh_log_record(LOG_INFO, COH_MESSAGE_POLICY_LOADED, message, fields, ELEMENTSOF(fields));
}

/* What the lower modules take from the policy; they keep no pointer to it. */
static void apply_policy(struct coh_manager *m) {
        const struct coh_broker_config *cfg = coh_policy_broker(m->policy);
        coh_server_set_limits(&m->server, &(struct coh_server_limits) {
                .max_connections = cfg->max_connections,
                .reserved_admin_connections = cfg->reserved_admin_connections,
                .max_connections_per_user = cfg->max_connections_per_user,
                .message_timeout_usec = cfg->message_timeout_usec,
                .has_admin_group = cfg->has_admin_group,
                .admin_gid = cfg->admin_gid,
        });
        m->grants.release_timeout_usec = cfg->release_timeout_usec;
        coh_methods_policy_changed(&m->methods);
}

static void state_changed(void *userdata);

int coh_manager_reload(struct coh_manager *m, struct coh_policy_error *err) {
        struct coh_policy *p;
        /* Both ways in (SIGHUP, and Manager.ReloadPolicy from ExecReload=) tell systemd. */
        (void) coh_notify_send(&m->notify, "RELOADING=1", NULL, 0);
        int r = load_policy(m, false, &p, err);
        (void) coh_notify_send(&m->notify, "READY=1", NULL, 0);
        if (r < 0)
                return r;
        /* Grants keep their own copies of rule strings, so the old policy can go. */
        coh_policy_free(m->policy);
        m->policy = p;
        apply_policy(m);
        log_policy_loaded(m, "reloaded");
        state_changed(m);
        return 0;
}

/* ---- callbacks from below ------------------------------------------------ */

static void state_changed(void *userdata) {
        struct coh_manager *m = userdata;
        /* STATUS= is for a person reading systemctl status: at most one a
         * second, the last state always. Each is a message PID 1 must handle
         * and can block us on when PID 1 is slow; sent per change, a grant
         * cycle would send two. The state memfd, though, is written now: the
         * next instance must never see less than what a client was told. */
        if (m->ev_status && !event_pending(m->ev_status, EV_TIMEOUT, NULL)) {
                struct timeval now, due = { .tv_sec = m->status_sent.tv_sec + 1, .tv_usec = m->status_sent.tv_usec },
                               wait = {};
                event_base_gettimeofday_cached(m->base, &now);
                if (timercmp(&due, &now, >))
                        timersub(&due, &now, &wait);
                event_add(m->ev_status, &wait);
        }
        coh_manager_save_state(m, false);

        /* Idle: nothing to serve and nothing to keep; socket activation brings us back. */
        unsigned idle = coh_policy_broker(m->policy)->idle_exit_sec;
        if (!m->ev_idle)
                return;
        if (idle > 0 && m->server.n_conns == 0 && m->grants.n_grants == 0) {
                struct timeval tv = { .tv_sec = idle };
                event_add(m->ev_idle, &tv);
        } else
                event_del(m->ev_idle);
}

static void grant_event(const struct coh_grant *g, const char *event, void *userdata) {
        struct coh_manager *m = userdata;
        /* A grant ending closes descriptors (its pin, then its group and its VM's):
         * an accept paused on EMFILE may go on. */
        coh_server_resume_accept(&m->server);
        coh_methods_grant_event(&m->methods, g, event);
}

static int conn_message(struct coh_conn *c, struct coh_message *msg, void *userdata) {
        struct coh_manager *m = userdata;
        return coh_methods_dispatch(&m->methods, c, msg);
}

static void conn_closed(struct coh_conn *c, const char *end, void *userdata) {
        struct coh_manager *m = userdata;
        coh_methods_conn_closed(&m->methods, c);
        coh_grants_end_owned(&m->grants, &c->owner, end);
}

static int methods_reload(struct coh_policy_error *err, void *userdata) {
        return coh_manager_reload(userdata, err);
}

/* ---- the loop's own events ------------------------------------------------ */

static void on_status(evutil_socket_t fd, short what, void *userdata) {
        struct coh_manager *m = userdata;
        event_base_gettimeofday_cached(m->base, &m->status_sent);
        char status[128];
        snprintf(status, sizeof status, "STATUS=Serving %u client(s), %u grant(s) on %u VM(s)", m->server.n_conns,
                 m->grants.n_grants, coh_grants_n_vms(&m->grants));
        (void) coh_notify_send(&m->notify, status, NULL, 0);
}

static void on_idle(evutil_socket_t fd, short what, void *userdata) {
        struct coh_manager *m = userdata;
        coh_log(LOG_INFO, NULL, "Idle for %us, exiting", coh_policy_broker(m->policy)->idle_exit_sec);
        (void) coh_notify_send(&m->notify, "STOPPING=1", NULL, 0);
        event_base_loopexit(m->base, NULL);
}

static void on_watchdog(evutil_socket_t fd, short what, void *userdata) {
        struct coh_manager *m = userdata;
        /* Sent from the loop itself: a stuck loop stops the pings and systemd restarts us. */
        (void) coh_notify_send(&m->notify, "WATCHDOG=1", NULL, 0);
}

static void on_sighup(evutil_socket_t sig, short what, void *userdata) {
        struct coh_policy_error err;
        (void) coh_manager_reload(userdata, &err);
}

static void on_sigterm(evutil_socket_t sig, short what, void *userdata) {
        struct coh_manager *m = userdata;
        (void) coh_notify_send(&m->notify, "STOPPING=1", NULL, 0);
        event_base_loopexit(m->base, NULL);
}

static int add_loop_events(struct coh_manager *m) {
        /* SIGPIPE never: replies are sent with MSG_NOSIGNAL, the journal too. */
        signal(SIGPIPE, SIG_IGN);
        m->sig_hup = evsignal_new(m->base, SIGHUP, on_sighup, m);
        m->sig_term = evsignal_new(m->base, SIGTERM, on_sigterm, m);
        m->sig_int = evsignal_new(m->base, SIGINT, on_sigterm, m);
        m->ev_idle = evtimer_new(m->base, on_idle, m);
        /* Without NOTIFY_SOCKET nobody reads a status: none is formatted. */
        if (coh_notify_enabled(&m->notify)) {
                m->ev_status = event_new(m->base, -1, 0, on_status, m);
                if (!m->ev_status)
                        return -ENOMEM;
        }
        if (!m->sig_hup || !m->sig_term || !m->sig_int || !m->ev_idle)
                return -ENOMEM;
        event_add(m->sig_hup, NULL);
        event_add(m->sig_term, NULL);
        event_add(m->sig_int, NULL);

        uint64_t watchdog_usec;
        if (sd_watchdog_enabled(false, &watchdog_usec) > 0) {
                struct timeval tv = { .tv_sec = (time_t) (watchdog_usec / 2 / 1000000),
                                      .tv_usec = (suseconds_t) (watchdog_usec / 2 % 1000000) };
                m->ev_watchdog = event_new(m->base, -1, EV_PERSIST, on_watchdog, m);
                if (!m->ev_watchdog)
                        return -ENOMEM;
                event_add(m->ev_watchdog, &tv);
        }
        return 0;
}

/* ---- new, startup, run, free ------------------------------------------------ */

/*
 * The platform, split (priv.h): the privileged helper is forked here, before
 * the journal, the loop or anything of a client exists, with the inner
 * platform and nothing else; this process keeps the facade. It keeps
 * CAP_KILL only for RevokeKill= as it is now: a capability dropped cannot
 * come back, so a reload that turns RevokeKill= on later cannot kill.
 */
static int platform_new(struct coh_manager *m) {
        struct coh_platform *inner;
        char errbuf[512] = "";
        pid_t helper;
        int r = coh_platform_new(m->options.platform, &inner, errbuf, sizeof errbuf);
        if (r >= 0) {
                unsigned flags = (m->options.sandbox ? COH_PRIV_SANDBOX : 0) |
                                 (coh_policy_broker(m->policy)->revoke_kill ? COH_PRIV_KILL_ALLOWED : 0);
                r = coh_priv_fork(inner, flags, &m->helper_fd, &helper, errbuf, sizeof errbuf);
                if (r < 0)
                        coh_platform_free(inner);
        }
        if (r < 0) {
                fprintf(stderr, "coherencyd: %s\n", errbuf[0] ? errbuf : strerror(-r));
                return r;
        }
        return coh_platform_priv_new(inner, m->helper_fd, helper, &m->platform);
}

/* The helper's socket is readable only when the helper has gone (every
 * reply is read as it comes): custody is impossible now, so this instance
 * ends, with a failure, and systemd starts a new one with its grants from
 * the fd store. */
static void on_helper_gone(evutil_socket_t fd, short what, void *userdata) {
        struct coh_manager *m = userdata;
        coh_log(LOG_ERR, NULL, "The privileged helper has exited; stopping");
        m->helper_lost = true;
        (void) coh_notify_send(&m->notify, "STOPPING=1", NULL, 0);
        event_base_loopexit(m->base, NULL);
}

int coh_manager_new(const struct coh_manager_options *o, struct coh_manager **ret) {
        _cleanup_(coh_manager_freep) struct coh_manager *m = calloc(1, sizeof *m);
        struct coh_policy_error err;
        int r;

        if (!m)
                return -ENOMEM;
        m->options = *o;
        m->helper_fd = -EBADF;
        coh_notify_init(&m->notify);
        coh_fdstore_init(&m->store, &m->notify);
        /* Before the journal: a policy that does not load at start-up is told on stderr, to
         * whoever started the daemon (under systemd, the journal has it from there too). */
        r = load_policy(m, true, &m->policy, &err);
        if (r < 0)
                return r;
        r = platform_new(m);
        if (r < 0)
                return r;
        m->base = event_base_new();
        if (!m->base)
                return -ENOMEM;
        r = coh_journal_new(m->base, getenv("COHERENCYD_JOURNAL_SOCKET"), 4096, &m->journal);
        if (r < 0) {
                fprintf(stderr, "coherencyd: journal: %s\n", strerror(-r));
                return r;
        }
        coh_log_open(m->journal, o->debug);

        coh_grants_init(&m->grants, m->base, m->platform, &m->store,
                        &(struct coh_grants_callbacks) { .event = grant_event, .changed = state_changed, .userdata = m });
        coh_server_init(&m->server, m->base, &m->store,
                        &(struct coh_server_callbacks) {
                                .message = conn_message, .closed = conn_closed, .changed = state_changed, .userdata = m });
        m->methods = (struct coh_methods) {
                .grants = &m->grants,
                .platform = m->platform,
                .server = &m->server,
                .policy = &m->policy,
                .reload = methods_reload,
                .userdata = m,
        };
        apply_policy(m);
        r = add_loop_events(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
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
static int take_systemd_fds(struct coh_manager *m, size_t *ret_n_listeners) {
        char **names = NULL;
        int r = 0, n = sd_listen_fds_with_names(true, &names);
        if (n <= 0)
                return n;
        m->stored = calloc((size_t) n, sizeof *m->stored);
        if (!m->stored)
                r = -ENOMEM;
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (r < 0)
                        safe_close(fd);
                else if (is_listening_socket(fd) && !m->options.socket_path) {
                        r = coh_server_add_listener(&m->server, fd);
                        (*ret_n_listeners)++;
                } else if (is_listening_socket(fd))
                        safe_close(fd);
                else
                        m->stored[m->n_stored++] = (struct coh_stored_fd) { .name = TAKE_PTR(names[i]), .fd = fd };
                free(names[i]);
        }
        free(names);
        return r;
}

static int listen_default(struct coh_manager *m) {
        const char *path = m->options.socket_path ?: COH_SOCKET_PATH;
        if (!m->options.socket_path)
                (void) mkdir("/run/coherencyd", 0755);
        int r = coh_server_listen_path(&m->server, path);
        if (r == -EADDRINUSE)
                fprintf(stderr, "coherencyd: %s: another coherencyd is serving this socket\n", path);
        else if (r < 0)
                fprintf(stderr, "coherencyd: cannot listen on %s: %s\n", path, strerror(-r));
        return r;
}

int coh_manager_startup(struct coh_manager *m) {
        size_t n_listeners = 0;
        char errbuf[512] = "";
        int r = take_systemd_fds(m, &n_listeners);
        if (r >= 0 && n_listeners == 0)
                r = listen_default(m);
        if (r < 0)
                return r;
        /* systemd >= 254 says how many descriptors it keeps for us; 252 needs --fd-store. */
        const char *fdstore_max = getenv("FDSTORE");
        if (getenv("NOTIFY_SOCKET") && (m->options.fdstore || (fdstore_max && atoi(fdstore_max) > 0))) {
                r = coh_fdstore_enable(&m->store, m->stored, m->n_stored);
                if (r < 0) {
                        fprintf(stderr, "coherencyd: state memfd: %s\n", strerror(-r));
                        return r;
                }
        }
        if (m->options.sandbox) {
                /* Bound and listening, nothing of a client read yet: from here on
                 * an unprivileged user without any capability (sandbox.h). */
                r = coh_sandbox_enter(COH_SANDBOX_PARSER, 0, errbuf, sizeof errbuf);
                if (r < 0) {
                        fprintf(stderr, "coherencyd: sandbox: %s\n", errbuf);
                        return r;
                }
        }
        m->ev_helper = event_new(m->base, m->helper_fd, EV_READ, on_helper_gone, m);
        if (!m->ev_helper || event_add(m->ev_helper, NULL) < 0)
                return -ENOMEM;
        log_policy_loaded(m, "loaded");
        coh_log(LOG_INFO, COH_MESSAGE_STARTED, "coherencyd %s started on the %s platform", COH_VERSION,
                m->platform->ops->name);
        r = coh_manager_restore(m);
        if (r < 0)
                return r;
        (void) coh_notify_send(&m->notify, "READY=1", NULL, 0);
        state_changed(m);
        return 0;
}

int coh_manager_run(struct coh_manager *m) {
        int r = event_base_dispatch(m->base) < 0 ? -EIO : 0;

        coh_methods_flush_refusals(&m->methods);
        if (m->helper_lost)
                r = -ECHILD;

        coh_server_stop_listening(&m->server);
        if (m->store.enabled && m->grants.n_grants + m->server.n_conns > 0) {
                /* A restart, an upgrade or a stop: the store keeps every grant and
                 * connection for the next instance (on a stop systemd closes them,
                 * and the kernel frees the groups with their last holders). */
                coh_manager_save_state(m, true);
                coh_log(LOG_INFO, COH_MESSAGE_STOPPED,
                        "coherencyd stopping; %u grant(s) and %u connection(s) kept in the file descriptor store",
                        m->grants.n_grants, m->server.n_conns);
                coh_server_forget_all(&m->server);
                coh_grants_forget(&m->grants);
        } else {
                /* Nobody will watch the groups after us: the end records say so. */
                coh_grants_shutdown(&m->grants);
                coh_server_close_all(&m->server);
                coh_log(LOG_INFO, COH_MESSAGE_STOPPED, "coherencyd stopped");
        }
        return r;
}

struct coh_manager *coh_manager_free(struct coh_manager *m) {
        if (!m)
                return NULL;
        coh_fdstore_release_rest(&m->store, m->stored, m->n_stored);
        free(m->stored);
        struct event *events[] = { m->ev_idle, m->ev_status, m->ev_watchdog, m->sig_hup, m->sig_term, m->sig_int,
                                   m->ev_helper };
        for (size_t i = 0; i < ELEMENTSOF(events); i++)
                if (events[i])
                        event_free(events[i]);
        if (m->base) {
                /* What run() did not end (a failed startup) goes without touching the kernel. */
                coh_server_forget_all(&m->server);
                coh_grants_forget(&m->grants);
                coh_server_stop_listening(&m->server);
        }
        coh_fdstore_done(&m->store);
        coh_notify_done(&m->notify);
        coh_log_close();
        coh_journal_free(m->journal);
        if (m->base)
                event_base_free(m->base);
        coh_platform_free(m->platform);
        coh_methods_done(&m->methods);
        coh_policy_free(m->policy);
        free(m);
        return NULL;
}
