/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * coherencyctl: the operator's view of coherencyd, the custodian of VFIO
 * groups. Everything but check-policy goes over the Varlink socket through
 * libcoherency's raw calls, so --json shows exactly what the daemon said.
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
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "libcoherency.h"

#ifndef COH_SBINDIR
#define COH_SBINDIR "/usr/sbin"
#endif

#define EXIT_USAGE 2

struct args {
        const char *socket;
        const char *config;
        const char *user;
        const char *group;
        const char *unit;
        int ioas_coherent;      /* -1: not given */
        bool kill;
        bool json;
};

static void help(void) {
        printf("coherencyctl [OPTIONS...] COMMAND ...\n"
               "\n"
               "Query and control coherencyd, the custodian of VFIO groups: it decides which\n"
               "VMMs get which PCI devices' VFIO files, and with them real WBINVD for their VMs.\n"
               "\n"
               "Commands:\n"
               "  info                  Show the daemon, its IOMMUs and what applies to you\n"
               "  probe DEVICE          What you would get for DEVICE (a PCI address), no side effects\n"
               "  explain DEVICE        What a VMM running as --user would get for DEVICE, and why\n"
               "  grants                List every grant the daemon holds, with its state and holders\n"
               "  revoke GRANT          End a grant; with --kill, kill a VMM that keeps the group\n"
               "  reload                Re-read coherencyd.conf and the policy.d files\n"
               "  check-policy          Check the policy files without loading them\n"
               "  monitor               Show decisions and grant changes as they happen\n"
               "  introspect [IFACE]    Show the Varlink interface definitions\n"
               "\n"
               "Options:\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "     --socket=PATH      Talk to the daemon at PATH\n"
               "                        (default: $COHERENCYD_SOCKET, else %s)\n"
               "     --json             Print the daemon's replies as JSON, one object per line\n"
               "     --config=DIR       With check-policy: check the configuration in DIR\n"
               "     --user=USER        With explain: the VMM's user (name or uid)\n"
               "     --group=GROUP      With explain: a group of the VMM (name or gid)\n"
               "     --unit=UNIT        With explain: the VMM's systemd unit\n"
               "     --ioas-coherent=BOOL\n"
               "                        With probe: the IOAS you intend to create is (not) coherent\n"
               "     --kill             With revoke: SIGKILL the VMM if it still holds the group\n"
               "                        after ReleaseTimeoutSec= (needs RevokeKill=yes)\n",
               COHERENCY_DEFAULT_SOCKET);
}

/* yes/no, as systemd spells booleans: 1, 0, or -1 for anything else. */
static int parse_boolean(const char *v) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
                if (strcasecmp(v, yes[i]) == 0)
                        return 1;
        for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
                if (strcasecmp(v, no[i]) == 0)
                        return 0;
        return -1;
}

static int usage_error(const char *message) {
        fprintf(stderr, "coherencyctl: %s\nTry 'coherencyctl --help' for more information.\n", message);
        return EXIT_USAGE;
}

/* The one line an operator sees when the daemon (or the way to it) said no. */
static int fail(const coherency_client *c, const char *what, int r) {
        const char *message = c ? coherency_client_get_error(c) : "";

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

static int connect_daemon(const struct args *a, coherency_client **ret) {
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

static int call(coherency_client *c, const char *what, const char *method, const char *parameters,
                char **ret_json) {
        int r;

        r = coherency_call(c, method, parameters, false, ret_json);
        if (r < 0)
                return fail(c, what, r);
        return 0;
}

static int verb_info(const struct args *a, coherency_client *c, char **argv) {
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
        if (get_str(broker, "access", NULL))
                printf("      Access: %s (%s)\n", get_str(broker, "access", "-"), get_str(broker, "accessRule", "default"));

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
        COL_GRANT, COL_DEVICE, COL_FILE, COL_DECISION, COL_REASON, COL_WBINVD, COL_VM_WBINVD,
        COL_STATE, COL_HOLDERS, COL_PID, COL_UID, COL_UNIT, COL_SINCE,
        _COL_MAX,
};

static const char *const column_names[_COL_MAX] = {
        "GRANT", "DEVICE", "FILE", "DECISION", "REASON", "WBINVD", "VM-WBINVD",
        "STATE", "HOLDERS", "PID", "UID", "UNIT", "SINCE",
};

static void print_row(char *const cells[_COL_MAX], const size_t widths[_COL_MAX]) {
        for (size_t i = 0; i < _COL_MAX; i++)
                if (i + 1 < _COL_MAX)
                        printf("%-*s ", (int) widths[i], cells[i]);
                else
                        printf("%s\n", cells[i]);
}

/* "ending (revoke)": the state, and for an ending grant why it ended. */
static char *format_state(json_object *g) {
        const char *state = get_str(g, "state", "-"), *end = get_str(g, "end", NULL);
        char *s = NULL;

        if (end && strcmp(state, "active") != 0)
                return asprintf(&s, "%s (%s)", state, end) < 0 ? NULL : s;
        return strdup(state);
}

/* "1234/qemu-system-x86,1240/gdb": the processes that still hold an ending grant's group. */
static char *format_holders(json_object *g) {
        json_object *holders = get_array(g, "holders");
        char *text = NULL;
        size_t size = 0;
        FILE *f;

        if (!holders || json_object_array_length(holders) == 0)
                return strdup("-");
        f = open_memstream(&text, &size);
        if (!f)
                return NULL;
        for (size_t i = 0; i < json_object_array_length(holders); i++) {
                json_object *h = json_object_array_get_idx(holders, i);
                int64_t pid;

                fprintf(f, "%s", i > 0 ? "," : "");
                if (get_int(h, "pid", &pid))
                        fprintf(f, "%" PRId64, pid);
                else
                        fputs("?", f);
                if (get_str(h, "comm", NULL))
                        fprintf(f, "/%s", get_str(h, "comm", ""));
        }
        if (fclose(f) < 0) {
                free(text);
                return NULL;
        }
        return text;
}

static int verb_grants(const struct args *a, coherency_client *c, char **argv) {
        char *json = NULL, *(*rows)[_COL_MAX] = NULL;
        size_t widths[_COL_MAX], n = 0, n_ending = 0;
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
                char pid[24] = "-", uid[24] = "-", since[64];
                int64_t v;

                if (get_int(g, "peerPid", &v))
                        snprintf(pid, sizeof(pid), "%" PRId64, v);
                if (get_int(g, "peerUid", &v))
                        snprintf(uid, sizeof(uid), "%" PRId64, v);
                format_usec(since, sizeof(since), get_int(g, "since", &v) ? v : 0);
                if (strcmp(get_str(g, "state", ""), "ending") == 0)
                        n_ending++;

                rows[i][COL_GRANT] = strdup(get_str(g, "grant", "-"));
                rows[i][COL_DEVICE] = strdup(get_str(g, "device", "-"));
                rows[i][COL_FILE] = strdup(get_str(g, "file", "-"));
                rows[i][COL_DECISION] = strdup(get_str(g, "decision", "-"));
                rows[i][COL_REASON] = strdup(get_str(g, "reason", "-"));
                rows[i][COL_WBINVD] = strdup(get_str(g, "wbinvd", "-"));
                rows[i][COL_VM_WBINVD] = strdup(get_str(g, "vmWbinvd", "-"));
                rows[i][COL_STATE] = format_state(g);
                rows[i][COL_HOLDERS] = format_holders(g);
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
        printf("\n%zu grant%s listed", n, n == 1 ? "" : "s");
        if (n_ending > 0)
                printf(", %zu ending (the group is still held by the processes under HOLDERS)", n_ending);
        printf(".\n");

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

static int add_string(json_object *o, const char *key, const char *value) {
        json_object *v = json_object_new_string(value);

        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_bool(json_object *o, const char *key, bool value) {
        json_object *v = json_object_new_boolean(value);

        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static char *format_parameters(json_object *o) {
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

        return s ? strdup(s) : NULL;
}

static int verb_revoke(const struct args *a, coherency_client *c, char **argv) {
        char *parameters = NULL, *json = NULL, what[128];
        json_object *p;
        int r;

        snprintf(what, sizeof(what), "revoke %s", argv[0]);
        p = json_object_new_object();
        if (p && add_string(p, "grant", argv[0]) >= 0 && (!a->kill || add_bool(p, "kill", true) >= 0))
                parameters = format_parameters(p);
        json_object_put(p);
        if (!parameters)
                return fail(NULL, what, -ENOMEM);

        r = call(c, what, "io.coherencyd.Manager.RevokeGrant", parameters, &json);
        if (r == 0 && a->json)
                printf("%s\n", json);
        free(parameters);
        free(json);
        return r;
}

static const char *yes_no(json_object *o, const char *key, const char *yes, const char *no) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
                return "?";
        return json_object_get_boolean(v) ? yes : no;
}

/* One device of the facts: what it is and what the policy says about it. */
static void print_device(json_object *d, const char *indent) {
        char group[24] = "-";
        int64_t v;

        if (get_int(d, "iommuGroup", &v) && v >= 0)
                snprintf(group, sizeof(group), "%" PRId64, v);
        printf("%s%s  %s:%s class %s, driver %s, IOMMU %s (%s), IOMMU group %s\n", indent,
               get_str(d, "slot", "?"), get_str(d, "vendor", "?"), get_str(d, "device", "?"),
               get_str(d, "class", "?"), get_str(d, "driver", "none"), get_str(d, "iommu", "none"),
               yes_no(d, "iommuEnforces", "can enforce coherency", "cannot enforce coherency"), group);
        if (get_str(d, "access", NULL))
                printf("%s    access %s (%s)\n", indent, get_str(d, "access", "?"), get_str(d, "accessRule", "default"));
        if (get_str(d, "noSnoop", NULL))
                printf("%s    No-Snoop %s (%s)\n", indent, get_str(d, "noSnoop", "?"),
                       get_str(d, "noSnoopRule", "default"));
        if (get_str(d, "mode", NULL))
                printf("%s    mode %s (%s)\n", indent, get_str(d, "mode", "?"), get_str(d, "modeRule", "default"));
        printf("%s    IOAS %s\n", indent, yes_no(d, "ioasCoherent", "coherent", "not coherent"));
        if (get_str(d, "decision", NULL))
                printf("%s    -> %s (%s)\n", indent, get_str(d, "decision", "?"), get_str(d, "reason", "?"));
}

/* Probe's and Explain's reply, for a person. */
static void print_decision(json_object *reply) {
        json_object *facts = NULL, *devices;
        const char *kvm_attach = get_str(reply, "kvmAttach", NULL);

        printf("    Decision: %s\n", get_str(reply, "decision", "?"));
        printf("      Reason: %s\n", get_str(reply, "reason", "?"));
        printf("        Rule: %s\n", get_str(reply, "rule", "default"));
        printf("        Mode: %s\n", get_str(reply, "mode", "?"));
        printf("      WBINVD: %s%s\n", get_str(reply, "wbinvd", "?"),
               strcmp(get_str(reply, "wbinvd", ""), "allowed") == 0 ?
               " (adding the file turns WBINVD emulation on for the VM)" : "");
        if (kvm_attach)
                printf("   KVMAttach: %s%s\n", kvm_attach,
                       strcmp(kvm_attach, "skip") == 0 ?
                       " (the VMM gets the file but must not add it to its kvm-vfio device)" :
                       strcmp(kvm_attach, "add") == 0 ? " (the VMM adds the file to its kvm-vfio device)" : "");
        else
                printf("   KVMAttach: - (no file is handed over)\n");

        if (!json_object_object_get_ex(reply, "facts", &facts) || !json_object_is_type(facts, json_type_object))
                return;
        devices = get_array(facts, "devices");
        if (!devices || json_object_array_length(devices) == 0) {
                printf("        File: %s\n", get_str(facts, "file", "-"));
                printf("      Device:\n");
                print_device(facts, "        ");
                return;
        }
        printf("        File: %s, carries %zu device%s; %s decides\n", get_str(facts, "file", "-"),
               json_object_array_length(devices), json_object_array_length(devices) == 1 ? "" : "s",
               get_str(facts, "slot", "?"));
        printf("     Devices:\n");
        for (size_t i = 0; i < json_object_array_length(devices); i++)
                print_device(json_object_array_get_idx(devices, i), "        ");
}

static int call_and_print_decision(const struct args *a, coherency_client *c, const char *what, const char *method,
                                   json_object *parameters) {
        char *p = format_parameters(parameters), *json = NULL;
        json_object *reply = NULL;
        int r;

        if (!p)
                return fail(NULL, what, -ENOMEM);
        r = call(c, what, method, p, &json);
        free(p);
        if (r != 0)
                return r;

        if (a->json)
                printf("%s\n", json);
        else {
                reply = parse_reply(json);
                if (!reply)
                        r = fail(NULL, what, -ENOMEM);
                else
                        print_decision(reply);
        }
        json_object_put(reply);
        free(json);
        return r;
}

static int verb_probe(const struct args *a, coherency_client *c, char **argv) {
        json_object *p = json_object_new_object();
        char what[128];
        int r;

        snprintf(what, sizeof(what), "probe %s", argv[0]);
        if (!p || add_string(p, "device", argv[0]) < 0 ||
            (a->ioas_coherent >= 0 && add_bool(p, "ioasCoherent", a->ioas_coherent) < 0)) {
                json_object_put(p);
                return fail(NULL, what, -ENOMEM);
        }
        r = call_and_print_decision(a, c, what, "io.coherencyd.Broker.Probe", p);
        json_object_put(p);
        return r;
}

static int verb_explain(const struct args *a, coherency_client *c, char **argv) {
        json_object *p = json_object_new_object();
        char what[128];
        int r;

        snprintf(what, sizeof(what), "explain %s", argv[0]);
        if (!p || add_string(p, "device", argv[0]) < 0 || add_string(p, "user", a->user) < 0 ||
            (a->group && add_string(p, "group", a->group) < 0) ||
            (a->unit && add_string(p, "unit", a->unit) < 0)) {
                json_object_put(p);
                return fail(NULL, what, -ENOMEM);
        }
        if (!a->json) {
                printf("A VMM running as user %s", a->user);
                if (a->group)
                        printf(", group %s", a->group);
                if (a->unit)
                        printf(", in unit %s", a->unit);
                printf(", asking for %s in the kernel's default IOAS:\n", argv[0]);
        }
        r = call_and_print_decision(a, c, what, "io.coherencyd.Manager.Explain", p);
        json_object_put(p);
        return r;
}

static int verb_reload(const struct args *a, coherency_client *c, char **argv) {
        static const char invalid_policy[] = "io.coherencyd.Manager.InvalidPolicy";
        json_object *reply = NULL;
        char *json = NULL;
        int64_t rules;
        int r;

        r = coherency_call(c, "io.coherencyd.Manager.ReloadPolicy", NULL, false, &json);
        if (r < 0) {
                const char *message = coherency_client_get_error(c);
                size_t l = strlen(invalid_policy);

                /* Compiler style, so editors and scripts can jump to the line. */
                if (strcmp(coherency_client_get_error_name(c), invalid_policy) == 0 &&
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
                "event", "grant", "device", "decision", "reason", "mode", "rule", "wbinvd",
                "kvmAttach", "state", "end", "vmWbinvd", "grants", "peerPid", "peerUid", NULL,
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

static int verb_monitor(const struct args *a, coherency_client *c, char **argv) {
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

static int print_description(const struct args *a, coherency_client *c, const char *interface) {
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

static int verb_introspect(const struct args *a, coherency_client *c, char **argv) {
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
        int (*run)(const struct args *a, coherency_client *c, char **argv);
} verbs[] = {
        { "info",         0, 0, verb_info       },
        { "probe",        1, 1, verb_probe      },
        { "explain",      1, 1, verb_explain    },
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
                ARG_USER,
                ARG_GROUP,
                ARG_UNIT,
                ARG_IOAS_COHERENT,
                ARG_KILL,
        };
        static const struct option options[] = {
                { "help",    no_argument,       NULL, 'h'         },
                { "version", no_argument,       NULL, ARG_VERSION },
                { "socket",  required_argument, NULL, ARG_SOCKET  },
                { "json",    no_argument,       NULL, ARG_JSON    },
                { "config",  required_argument, NULL, ARG_CONFIG  },
                { "user",    required_argument, NULL, ARG_USER    },
                { "group",   required_argument, NULL, ARG_GROUP   },
                { "unit",    required_argument, NULL, ARG_UNIT    },
                { "ioas-coherent", required_argument, NULL, ARG_IOAS_COHERENT },
                { "kill",    no_argument,       NULL, ARG_KILL    },
                {}
        };
        coherency_client *c = NULL;
        struct args a = {
                .ioas_coherent = -1,
        };
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
                case ARG_USER:
                        a.user = optarg;
                        break;
                case ARG_GROUP:
                        a.group = optarg;
                        break;
                case ARG_UNIT:
                        a.unit = optarg;
                        break;
                case ARG_IOAS_COHERENT:
                        a.ioas_coherent = parse_boolean(optarg);
                        if (a.ioas_coherent < 0)
                                return usage_error("--ioas-coherent= takes yes or no");
                        break;
                case ARG_KILL:
                        a.kill = true;
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
        if ((a.user || a.group || a.unit) && strcmp(verb->name, "explain") != 0)
                return usage_error("--user, --group and --unit only apply to explain");
        if (strcmp(verb->name, "explain") == 0 && !a.user)
                return usage_error("explain: --user is needed (the VMM's user)");
        if (a.ioas_coherent >= 0 && strcmp(verb->name, "probe") != 0)
                return usage_error("--ioas-coherent only applies to probe");
        if (a.kill && strcmp(verb->name, "revoke") != 0)
                return usage_error("--kill only applies to revoke");

        if (!verb->run)
                return verb_check_policy(&a);

        r = connect_daemon(&a, &c);
        if (r != 0)
                return r;
        r = verb->run(&a, c, argv + optind + 1);
        coherency_client_free(c);
        return r;
}
