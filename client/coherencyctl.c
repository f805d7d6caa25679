/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * coherencyctl: the operator's view of coherencyd. Everything but
 * check-policy goes over the Varlink socket through libcoherency's raw calls,
 * so --json shows exactly what the daemon said.
 */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coherency.h"

#ifndef COH_SBINDIR
#define COH_SBINDIR "/usr/sbin"
#endif

#define EXIT_USAGE 2

struct args {
        const char *socket;
        const char *config;
        bool json;
};

static void help(void) {
        printf("coherencyctl [OPTIONS...] COMMAND ...\n"
               "\n"
               "Query and control coherencyd, which decides which VMs get real WBINVD\n"
               "emulation for their VFIO devices.\n"
               "\n"
               "Commands:\n"
               "  info                  Show the daemon, its IOMMUs and the mode that applies to you\n"
               "  grants                List every grant the daemon holds\n"
               "  revoke GRANT          End a grant: its file is detached from the VM\n"
               "  reload                Re-read coherencyd.conf and the policy.d files\n"
               "  check-policy          Check the policy files without loading them\n"
               "  monitor               Show decisions and grant ends as they happen\n"
               "  introspect [IFACE]    Show the Varlink interface definitions\n"
               "\n"
               "Options:\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "     --socket=PATH      Talk to the daemon at PATH\n"
               "                        (default: $COHERENCYD_SOCKET, else %s)\n"
               "     --json             Print the daemon's replies as JSON, one object per line\n"
               "     --config=DIR       With check-policy: check the configuration in DIR\n",
               COHERENCY_DEFAULT_SOCKET);
}

static int usage_error(const char *message) {
        fprintf(stderr, "coherencyctl: %s\nTry 'coherencyctl --help' for more information.\n", message);
        return EXIT_USAGE;
}

/* The one line an operator sees when the daemon (or the way to it) said no. */
static int fail(const struct coherency_client *c, const char *what, int r) {
        const char *message = c ? coherency_client_error(c) : "";

        if (!message[0])
                message = strerror(-r);
        fprintf(stderr, "coherencyctl: %s: %s\n", what, message);
        return EXIT_FAILURE;
}

static const char *socket_path(const struct args *a) {
        const char *p = a->socket;

        if (!p) {
                p = getenv("COHERENCYD_SOCKET");
                if (!p || !p[0])
                        p = COHERENCY_DEFAULT_SOCKET;
        }
        return p;
}

static int connect_daemon(const struct args *a, struct coherency_client **ret) {
        const char *path = socket_path(a);
        int r;

        r = coherency_connect(path, ret);
        if (r < 0) {
                fprintf(stderr, "coherencyctl: cannot connect to %s: %s\n", path, strerror(-r));
                return EXIT_FAILURE;
        }
        return 0;
}

static json_object *parse_reply(const char *json) {
        json_object *o = json_tokener_parse(json);

        /* libcoherency hands out what it parsed itself, so this only fails on ENOMEM. */
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static const char *get_str(json_object *o, const char *key, const char *fallback) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return fallback;
        return json_object_get_string(v);
}

static bool get_int(json_object *o, const char *key, int64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_int64(v);
        return true;
}

static json_object *get_array(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
                return NULL;
        return v;
}

static const char *value_to_string(json_object *v) {
        if (!v)
                return "null";
        if (json_object_is_type(v, json_type_string))
                return json_object_get_string(v);
        return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* since is CLOCK_REALTIME in µs, as the journal counts. */
static void format_usec(char *buf, size_t size, int64_t usec) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;

        if (usec <= 0 || !localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "-");
}

static int call(struct coherency_client *c, const char *what, const char *method, const char *parameters,
                char **ret_json) {
        int r;

        r = coherency_call(c, method, parameters, false, ret_json);
        if (r < 0)
                return fail(c, what, r);
        return 0;
}

static int verb_info(const struct args *a, struct coherency_client *c, char **argv) {
        char *broker_json = NULL, *service_json = NULL;
        json_object *broker = NULL, *service = NULL, *array, *limits;
        int64_t v;
        int r;

        r = call(c, "info", "io.coherencyd.Broker.GetInfo", NULL, &broker_json);
        if (r != 0)
                goto finish;
        r = call(c, "info", "org.varlink.service.GetInfo", NULL, &service_json);
        if (r != 0)
                goto finish;

        if (a->json) {
                printf("%s\n%s\n", broker_json, service_json);
                goto finish;
        }

        broker = parse_reply(broker_json);
        service = parse_reply(service_json);
        if (!broker || !service) {
                r = fail(NULL, "info", -ENOMEM);
                goto finish;
        }

        printf("     Version: %s\n", get_str(broker, "version", "-"));
        printf("     Backend: %s\n", get_str(broker, "backend", "-"));
        printf("        Mode: %s (%s)\n", get_str(broker, "mode", "-"), get_str(broker, "modeRule", "default"));

        array = get_array(broker, "iommus");
        for (size_t i = 0; array && i < json_object_array_length(array); i++) {
                json_object *iommu = json_object_array_get_idx(array, i), *e;
                bool enforces = json_object_object_get_ex(iommu, "enforcesCoherency", &e) &&
                                json_object_get_boolean(e);

                printf("%s%s (%s): %s\n", i == 0 ? "      IOMMUs: " : "              ",
                       get_str(iommu, "name", "?"), get_str(iommu, "type", "?"),
                       enforces ? "can enforce coherency" : "cannot enforce coherency");
        }

        if (json_object_object_get_ex(broker, "limits", &limits)) {
                printf("      Limits:");
                if (get_int(limits, "maxGrantsPerConnection", &v))
                        printf(" %" PRId64 " grants per connection,", v);
                if (get_int(limits, "maxConnectionsPerUser", &v))
                        printf(" %" PRId64 " connections per user,", v);
                if (get_int(limits, "maxConnections", &v))
                        printf(" %" PRId64 " connections", v);
                printf("\n");
        }

        printf("     Service: %s %s (%s)\n", get_str(service, "product", "-"), get_str(service, "version", "-"),
               get_str(service, "vendor", "-"));
        if (get_str(service, "url", "")[0])
                printf("         URL: %s\n", get_str(service, "url", ""));
        array = get_array(service, "interfaces");
        for (size_t i = 0; array && i < json_object_array_length(array); i++)
                printf("%s%s\n", i == 0 ? "  Interfaces: " : "              ",
                       value_to_string(json_object_array_get_idx(array, i)));

finish:
        json_object_put(broker);
        json_object_put(service);
        free(broker_json);
        free(service_json);
        return r;
}

enum {
        COL_GRANT, COL_SLOT, COL_GROUP, COL_DECISION, COL_REASON, COL_RULE,
        COL_WBINVD, COL_PID, COL_UID, COL_UNIT, COL_SINCE,
        _COL_MAX,
};

static const char *const column_names[_COL_MAX] = {
        "GRANT", "SLOT", "GROUP", "DECISION", "REASON", "RULE", "WBINVD", "PID", "UID", "UNIT", "SINCE",
};

static void print_row(char *const cells[_COL_MAX], const size_t widths[_COL_MAX]) {
        for (size_t i = 0; i < _COL_MAX; i++)
                if (i + 1 < _COL_MAX)
                        printf("%-*s ", (int) widths[i], cells[i]);
                else
                        printf("%s\n", cells[i]);
}

static int verb_grants(const struct args *a, struct coherency_client *c, char **argv) {
        char *json = NULL, *(*rows)[_COL_MAX] = NULL;
        size_t widths[_COL_MAX], n = 0;
        json_object *reply = NULL, *grants;
        int r;

        r = call(c, "grants", "io.coherencyd.Manager.ListGrants", NULL, &json);
        if (r != 0)
                return r;
        if (a->json) {
                printf("%s\n", json);
                goto finish;
        }

        reply = parse_reply(json);
        grants = reply ? get_array(reply, "grants") : NULL;
        if (!grants) {
                r = fail(NULL, "grants", reply ? -EPROTO : -ENOMEM);
                goto finish;
        }

        n = json_object_array_length(grants);
        if (n == 0) {
                printf("No grants.\n");
                goto finish;
        }

        rows = calloc(n, sizeof(*rows));
        if (!rows) {
                r = fail(NULL, "grants", -ENOMEM);
                goto finish;
        }

        for (size_t i = 0; i < _COL_MAX; i++)
                widths[i] = strlen(column_names[i]);

        for (size_t i = 0; i < n; i++) {
                json_object *g = json_object_array_get_idx(grants, i);
                char group[24] = "-", pid[24] = "-", uid[24] = "-", since[64];
                int64_t v;

                if (get_int(g, "iommuGroup", &v))
                        snprintf(group, sizeof(group), "%" PRId64, v);
                if (get_int(g, "peerPid", &v))
                        snprintf(pid, sizeof(pid), "%" PRId64, v);
                if (get_int(g, "peerUid", &v))
                        snprintf(uid, sizeof(uid), "%" PRId64, v);
                format_usec(since, sizeof(since), get_int(g, "since", &v) ? v : 0);

                rows[i][COL_GRANT] = strdup(get_str(g, "grant", "-"));
                rows[i][COL_SLOT] = strdup(get_str(g, "slot", "-"));
                rows[i][COL_GROUP] = strdup(group);
                rows[i][COL_DECISION] = strdup(get_str(g, "decision", "-"));
                rows[i][COL_REASON] = strdup(get_str(g, "reason", "-"));
                rows[i][COL_RULE] = strdup(get_str(g, "rule", "-"));
                rows[i][COL_WBINVD] = strdup(get_str(g, "vmWbinvd", "-"));
                rows[i][COL_PID] = strdup(pid);
                rows[i][COL_UID] = strdup(uid);
                rows[i][COL_UNIT] = strdup(get_str(g, "peerUnit", "-"));
                rows[i][COL_SINCE] = strdup(since);

                for (size_t k = 0; k < _COL_MAX; k++) {
                        if (!rows[i][k]) {
                                r = fail(NULL, "grants", -ENOMEM);
                                goto finish;
                        }
                        if (strlen(rows[i][k]) > widths[k])
                                widths[k] = strlen(rows[i][k]);
                }
        }

        print_row((char *const *) column_names, widths);
        for (size_t i = 0; i < n; i++)
                print_row(rows[i], widths);
        printf("\n%zu grant%s listed.\n", n, n == 1 ? "" : "s");

finish:
        for (size_t i = 0; rows && i < n; i++)
                for (size_t k = 0; k < _COL_MAX; k++)
                        free(rows[i][k]);
        free(rows);
        json_object_put(reply);
        free(json);
        return r;
}

/* Builds {"key": value} without hand-quoting anything an operator typed. */
static char *one_string_parameter(const char *key, const char *value) {
        json_object *o = json_object_new_object(), *v = json_object_new_string(value);
        char *s = NULL;

        if (o && v && json_object_object_add(o, key, v) >= 0) {
                v = NULL;
                s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        }
        json_object_put(v);
        json_object_put(o);
        return s;
}

static int verb_revoke(const struct args *a, struct coherency_client *c, char **argv) {
        char *parameters, *json = NULL, what[128];
        int r;

        snprintf(what, sizeof(what), "revoke %s", argv[0]);
        parameters = one_string_parameter("grant", argv[0]);
        if (!parameters)
                return fail(NULL, what, -ENOMEM);

        r = call(c, what, "io.coherencyd.Manager.RevokeGrant", parameters, &json);
        if (r == 0 && a->json)
                printf("%s\n", json);
        free(parameters);
        free(json);
        return r;
}

static int verb_reload(const struct args *a, struct coherency_client *c, char **argv) {
        static const char invalid_policy[] = "io.coherencyd.Manager.InvalidPolicy";
        json_object *reply = NULL;
        char *json = NULL;
        int64_t rules;
        int r;

        r = coherency_call(c, "io.coherencyd.Manager.ReloadPolicy", NULL, false, &json);
        if (r < 0) {
                const char *message = coherency_client_error(c);
                size_t l = strlen(invalid_policy);

                /* Compiler style, so editors and scripts can jump to the line. */
                if (strcmp(coherency_client_error_name(c), invalid_policy) == 0 &&
                    strncmp(message, invalid_policy, l) == 0 && strncmp(message + l, ": ", 2) == 0) {
                        fprintf(stderr, "%s\n", message + l + 2);
                        return EXIT_FAILURE;
                }
                return fail(c, "reload", r);
        }

        if (a->json)
                printf("%s\n", json);
        else {
                reply = parse_reply(json);
                if (reply && get_int(reply, "rules", &rules))
                        printf("Policy reloaded: %" PRId64 " rule%s.\n", rules, rules == 1 ? "" : "s");
                else
                        printf("Policy reloaded.\n");
        }

        json_object_put(reply);
        free(json);
        return 0;
}

/* Where coherencyd is: next to us (installed side by side, or a build tree), else in sbindir. */
static int find_daemon(char *buf, size_t size) {
        char self[PATH_MAX], *slash;
        ssize_t n;

        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = '\0';
                slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        snprintf(buf, size, "%s/coherencyd", self);
                        if (access(buf, X_OK) == 0)
                                return 0;
                        snprintf(buf, size, "%s/../daemon/coherencyd", self);
                        if (access(buf, X_OK) == 0)
                                return 0;
                }
        }

        snprintf(buf, size, "%s/coherencyd", COH_SBINDIR);
        if (access(buf, X_OK) == 0)
                return 0;
        return -ENOENT;
}

static int verb_check_policy(const struct args *a) {
        char daemon[PATH_MAX + 32];
        const char *argv[5];
        size_t n = 0;

        if (find_daemon(daemon, sizeof(daemon)) < 0) {
                fprintf(stderr, "coherencyctl: check-policy: cannot find coherencyd next to coherencyctl or in %s\n",
                        COH_SBINDIR);
                return EXIT_FAILURE;
        }

        argv[n++] = daemon;
        argv[n++] = "--check-policy";
        if (a->config) {
                argv[n++] = "--config";
                argv[n++] = a->config;
        }
        argv[n] = NULL;

        /* The daemon's verdict and exit status are the answer; nothing to add after it. */
        (void) fflush(stdout);
        execv(daemon, (char *const *) argv);
        fprintf(stderr, "coherencyctl: check-policy: cannot run %s: %m\n", daemon);
        return EXIT_FAILURE;
}

static void print_event(json_object *event) {
        /* Fixed order for what we know, then whatever a newer daemon adds. */
        static const char *const known[] = {
                "event", "grant", "slot", "decision", "reason", "mode", "rule", "end",
                "vmWbinvd", "peerPid", "peerUid", NULL,
        };
        char now[64];
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        format_usec(now, sizeof(now), (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
        printf("%s %s", now, get_str(event, "event", "?"));

        for (size_t i = 1; known[i]; i++) {
                json_object *v;

                if (json_object_object_get_ex(event, known[i], &v) && v)
                        printf(" %s=%s", known[i], value_to_string(v));
        }
        json_object_object_foreach(event, key, value) {
                size_t i;

                for (i = 0; known[i]; i++)
                        if (strcmp(known[i], key) == 0)
                                break;
                if (!known[i] && value)
                        printf(" %s=%s", key, value_to_string(value));
        }
        printf("\n");
}

static int verb_monitor(const struct args *a, struct coherency_client *c, char **argv) {
        char *json = NULL;
        int r;

        if (!a->json && isatty(STDOUT_FILENO))
                fprintf(stderr, "Waiting for decisions and grant ends; press Ctrl+C to stop.\n");

        r = coherency_call(c, "io.coherencyd.Manager.Monitor", NULL, true, &json);
        for (;;) {
                json_object *event;

                if (r < 0)
                        return fail(c, "monitor", r);
                if (r == 0 && !json)
                        /* The daemon ended the stream (coherency_call_next() said so). */
                        return 0;

                if (a->json)
                        printf("%s\n", json);
                else {
                        event = parse_reply(json);
                        if (!event) {
                                free(json);
                                return fail(NULL, "monitor", -ENOMEM);
                        }
                        print_event(event);
                        json_object_put(event);
                }
                free(json);
                json = NULL;
                /* A pipe to grep or a file must see each event as it happens. */
                (void) fflush(stdout);

                r = coherency_call_next(c, &json);
                if (r == 1)
                        r = 0;
        }
}

static int print_description(const struct args *a, struct coherency_client *c, const char *interface) {
        char *parameters, *json = NULL, what[256];
        json_object *reply = NULL;
        const char *text;
        int r;

        snprintf(what, sizeof(what), "introspect %s", interface);
        parameters = one_string_parameter("interface", interface);
        if (!parameters)
                return fail(NULL, what, -ENOMEM);

        r = call(c, what, "org.varlink.service.GetInterfaceDescription", parameters, &json);
        if (r != 0)
                goto finish;

        if (a->json)
                printf("%s\n", json);
        else {
                reply = parse_reply(json);
                text = reply ? get_str(reply, "description", NULL) : NULL;
                if (!text) {
                        r = fail(NULL, what, reply ? -EPROTO : -ENOMEM);
                        goto finish;
                }
                fputs(text, stdout);
                if (!text[0] || text[strlen(text) - 1] != '\n')
                        putchar('\n');
        }

finish:
        json_object_put(reply);
        free(parameters);
        free(json);
        return r;
}

static int verb_introspect(const struct args *a, struct coherency_client *c, char **argv) {
        json_object *reply = NULL, *interfaces;
        char *json = NULL;
        int r;

        if (argv[0])
                return print_description(a, c, argv[0]);

        /* No interface named: every one the service says it has. */
        r = call(c, "introspect", "org.varlink.service.GetInfo", NULL, &json);
        if (r != 0)
                return r;
        reply = parse_reply(json);
        interfaces = reply ? get_array(reply, "interfaces") : NULL;
        if (!interfaces) {
                r = fail(NULL, "introspect", reply ? -EPROTO : -ENOMEM);
                goto finish;
        }

        for (size_t i = 0; r == 0 && i < json_object_array_length(interfaces); i++) {
                if (i > 0 && !a->json)
                        putchar('\n');
                r = print_description(a, c, value_to_string(json_object_array_get_idx(interfaces, i)));
        }

finish:
        json_object_put(reply);
        free(json);
        return r;
}

static const struct verb {
        const char *name;
        unsigned min_args, max_args;
        int (*run)(const struct args *a, struct coherency_client *c, char **argv);
} verbs[] = {
        { "info",         0, 0, verb_info       },
        { "grants",       0, 0, verb_grants     },
        { "revoke",       1, 1, verb_revoke     },
        { "reload",       0, 0, verb_reload     },
        { "check-policy", 0, 0, NULL            },
        { "monitor",      0, 0, verb_monitor    },
        { "introspect",   0, 1, verb_introspect },
};

int main(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_SOCKET,
                ARG_JSON,
                ARG_CONFIG,
        };
        static const struct option options[] = {
                { "help",    no_argument,       NULL, 'h'         },
                { "version", no_argument,       NULL, ARG_VERSION },
                { "socket",  required_argument, NULL, ARG_SOCKET  },
                { "json",    no_argument,       NULL, ARG_JSON    },
                { "config",  required_argument, NULL, ARG_CONFIG  },
                {}
        };
        struct coherency_client *c = NULL;
        struct args a = {};
        const struct verb *verb = NULL;
        unsigned n_args;
        char message[256];
        int opt, r;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("coherencyctl %s\n", COH_VERSION);
                        return EXIT_SUCCESS;
                case ARG_SOCKET:
                        a.socket = optarg;
                        break;
                case ARG_JSON:
                        a.json = true;
                        break;
                case ARG_CONFIG:
                        a.config = optarg;
                        break;
                default:
                        /* getopt said what was wrong. */
                        fprintf(stderr, "Try 'coherencyctl --help' for more information.\n");
                        return EXIT_USAGE;
                }

        if (optind >= argc)
                return usage_error("no command given");

        for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
                if (strcmp(verbs[i].name, argv[optind]) == 0)
                        verb = verbs + i;
        if (!verb) {
                snprintf(message, sizeof(message), "unknown command '%s'", argv[optind]);
                return usage_error(message);
        }

        n_args = (unsigned) (argc - optind - 1);
        if (n_args < verb->min_args || n_args > verb->max_args) {
                snprintf(message, sizeof(message), "%s: %s", verb->name,
                         n_args < verb->min_args ? "missing argument" : "too many arguments");
                return usage_error(message);
        }
        if (a.config && strcmp(verb->name, "check-policy") != 0)
                return usage_error("--config only applies to check-policy");

        if (!verb->run)
                return verb_check_policy(&a);

        r = connect_daemon(&a, &c);
        if (r != 0)
                return r;
        r = verb->run(&a, c, argv + optind + 1);
        coherency_client_free(c);
        return r;
}
