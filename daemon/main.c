/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * coherencyd: the custodian of VFIO groups, which decides which VMs may have
 * real WBINVD emulation. Arguments here; everything else is the manager's
 * (manager.h). See coherencyd(8).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "manager.h"
#include "util.h"

struct options {
        struct coh_manager_options manager;
        bool check_policy;
};

static void help(void) {
        printf("Usage: coherencyd [OPTIONS]\n\n"
               "The custodian of VFIO groups: hands them to VMMs as the site policy says.\n\n"
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
               "  --no-sandbox          both processes keep their user and capabilities, with\n"
               "                        no seccomp filter (debugging; see PROCESSES in coherencyd(8))\n"
               "  --debug               log debug records\n"
               "  --help, --version\n");
}

/* One case per option, read straight down: longer than a screen, no deeper than one switch. */
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

        struct coh_manager_options *m = &o->manager;
        *o = (struct options) {
                .manager = {
                        .platform = "linux",
                        .config_dir = COH_SYSCONF_DIR,
                        .vendor_dir = COH_VENDOR_POLICY_DIR,
                        .sandbox = true,
                },
        };
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET:
                        m->socket_path = optarg;
                        break;
                case ARG_PLATFORM:
                        m->platform = optarg;
                        break;
                case ARG_CONFIG:
                        m->config_dir = optarg;
                        if (!vendor_set)
                                m->vendor_dir = NULL; /* a private config is the whole policy */
                        break;
                case ARG_VENDOR:
                        m->vendor_dir = optarg;
                        vendor_set = true;
                        break;
                case ARG_CHECK:
                        o->check_policy = true;
                        break;
                case ARG_DEBUG:
                        m->debug = true;
                        break;
                case ARG_NO_SANDBOX:
                        m->sandbox = false;
                        break;
                case ARG_FDSTORE:
                        m->fdstore = true;
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

static int run(const struct coh_manager_options *o) {
        _cleanup_(coh_manager_freep) struct coh_manager *m = NULL;
        int r = coh_manager_new(o, &m);
        if (r >= 0)
                r = coh_manager_startup(m);
        if (r >= 0)
                r = coh_manager_run(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

struct check_counts {
        unsigned errors, warnings;
};

/* Compiler style, so that editors and scripts can jump to the line; as found, each file's in line order. */
static void check_report(enum coh_policy_severity severity, const struct coh_policy_error *e, void *userdata) {
        struct check_counts *n = userdata;
        bool warning = severity == COH_POLICY_WARNING;

        if (warning)
                n->warnings++;
        else
                n->errors++;
        if (e->line > 0)
                fprintf(stderr, "%s:%u: %s%s\n", e->file, e->line, warning ? "warning: " : "", e->message);
        else
                fprintf(stderr, "%s: %s%s\n", e->file, warning ? "warning: " : "", e->message);
}

static int check_policy(const struct options *o) {
        struct check_counts n = {};
        struct coh_policy *p;
        int r = coh_policy_load_report(o->manager.config_dir, o->manager.vendor_dir, check_report, &n, &p, NULL);
        if (r < 0) {
                fprintf(stderr, "Policy not valid: %u error%s, %u warning%s.\n", n.errors, n.errors == 1 ? "" : "s",
                        n.warnings, n.warnings == 1 ? "" : "s");
                return EXIT_FAILURE;
        }
        const struct coh_broker_config *cfg = coh_policy_broker(p);
        char origin[512];
        printf("Policy OK: %zu rule file(s), default mode %s (%s)", coh_policy_n_rules(p),
               coh_mode_to_string(cfg->mode), coh_origin_format(&cfg->mode_origin, origin, sizeof origin));
        if (n.warnings > 0)
                printf(", %u warning%s", n.warnings, n.warnings == 1 ? "" : "s");
        printf("\n");
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
        return run(&o.manager);
}
