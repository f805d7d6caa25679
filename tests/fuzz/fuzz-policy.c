/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Input: coherencyd.conf, then up to two rule files, separated by 0xff bytes
 * (a byte that a valid policy never holds). An empty first part means no
 * coherencyd.conf at all. Every policy that loads is evaluated against a fixed
 * device and peers and turned into JSON; every failure must say where and why,
 * every problem reported must too, and a load fails exactly when an error
 * was reported, the first of which is the one it returns.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define SEPARATOR 0xff

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const rule_names[] = {
        "/etc/coherencyd/policy.d/50-site.policy",
        "/usr/lib/coherencyd/policy.d/10-vendor.policy",
};

struct reports {
        size_t errors, warnings;
        struct coh_policy_error first;
};

static void check_error(const struct coh_policy_error *e) {
        if (memchr(e->file, 0, sizeof e->file) == NULL || memchr(e->message, 0, sizeof e->message) == NULL ||
            e->message[0] == 0 || e->file[0] == 0)
                abort();
}

static void report(enum coh_policy_severity severity, const struct coh_policy_error *e, void *userdata) {
        struct reports *r = userdata;

        check_error(e);
        if (severity == COH_POLICY_ERROR) {
                if (r->errors++ == 0)
                        r->first = *e;
        } else if (severity == COH_POLICY_WARNING)
                r->warnings++;
        else
                abort();
}

static void check_origin(const struct coh_origin *o) {
        char buf[256];

        if (o->file && o->line == 0)
                abort();
        if (!o->file && o->line != 0)
                abort();
        coh_origin_format(o, buf, sizeof buf);
}

static void check_result(const struct coh_policy_result *r) {
        if (!coh_access_to_string(r->access) || !coh_mode_to_string(r->mode) || !coh_nosnoop_to_string(r->nosnoop))
                abort();
        check_origin(&r->access_origin);
        check_origin(&r->mode_origin);
        check_origin(&r->nosnoop_origin);
}

static void check_broker(const struct coh_broker_config *b) {
        if (!coh_access_to_string(b->access) || !coh_mode_to_string(b->mode))
                abort();
        check_origin(&b->access_origin);
        check_origin(&b->mode_origin);
        /* ReleaseTimeoutSec= is 1 to 86400 whole seconds. */
        if (b->release_timeout_usec < 1000000 || b->release_timeout_usec > UINT64_C(86400000000) ||
            b->release_timeout_usec % 1000000 != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const gid_t groups[] = { 27, 0 };
        static const struct coh_device_facts device = {
                .slot = "0000:01:00.0",
                .vendor = "0x8086",
                .device = "0x11e8",
                .class = "0x030000",
                .driver = "vfio-pci",
                .iommu = "dmar0",
                .iommu_group = 12,
                .iommu_type = COH_IOMMU_INTEL,
                .iommu_enforces = true,
        };
        const struct coh_peer peers[] = {
                { .pid = 2, .uid = 1000, .gid = 1000, .groups = groups, .n_groups = 2, .unit = "qemu-vm1.service" },
                { .pid = 1, .uid = 0, .gid = 0 },
        };
        struct coh_policy_file conf = { .name = "/etc/coherencyd/coherencyd.conf" }, rules[2] = {};
        const char *p = (const char *) data, *end = p + size, *sep;
        struct coh_policy_error err;
        struct reports reports = {};
        struct coh_policy *policy = NULL;
        struct coh_policy_result result;
        size_t n_rules = 0;
        json_object *j;
        bool have_conf;

        sep = memchr(p, SEPARATOR, size);
        conf.text = p;
        conf.len = (sep ? sep : end) - p;
        have_conf = conf.len > 0;
        p = sep ? sep + 1 : end;

        while (p < end && n_rules < 2) {
                sep = n_rules == 0 ? memchr(p, SEPARATOR, end - p) : NULL;
                rules[n_rules] = (struct coh_policy_file) {
                        .name = rule_names[n_rules],
                        .text = p,
                        .len = (sep ? sep : end) - p,
                };
                n_rules++;
                p = sep ? sep + 1 : end;
        }

        if (coh_policy_load_from_memory(have_conf ? &conf : NULL, rules, n_rules, report, &reports, &policy,
                                        &err) < 0) {
                check_error(&err);
                if (policy || reports.errors == 0 || strcmp(err.file, reports.first.file) != 0 ||
                    err.line != reports.first.line || strcmp(err.message, reports.first.message) != 0)
                        abort();
                return 0;
        }
        if (reports.errors > 0)
                abort();

        check_broker(coh_policy_broker(policy));
        for (size_t i = 0; i < sizeof peers / sizeof peers[0]; i++) {
                coh_policy_evaluate(policy, &device, &peers[i], &result);
                check_result(&result);
                coh_policy_evaluate(policy, NULL, &peers[i], &result);
                check_result(&result);
        }
        coh_policy_evaluate(policy, NULL, NULL, &result);
        check_result(&result);
        if (coh_policy_n_rules(policy) > n_rules)
                abort();

        j = coh_policy_to_json(policy);
        if (!j)
                abort();
        (void) json_object_to_json_string(j);
        json_object_put(j);

        coh_policy_free(policy);
        return 0;
}
