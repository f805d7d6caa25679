/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Site policy: coherencyd.conf ([Broker]) and *.policy rule files
 * ([Match], [Policy]) from <config>/policy.d and the vendor policy.d, where
 * a file in <config>/policy.d masks a vendor file of the same name, and all
 * are read in lexical order of file name. For each setting the first matching
 * rule that sets it wins; unset settings fall back to coherencyd.conf, then
 * to the built-in default.
 *
 * Loading does I/O (files, user and group names); evaluation is a pure
 * function of the loaded policy, the device's facts and the peer.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "decision.h"
#include "facts.h"

struct coh_policy;

/* Where a setting came from: file NULL means the built-in default. */
struct coh_origin {
        const char *file; /* owned by the policy */
        unsigned line;
};

/* A problem found while loading: an error (the load fails) or a warning (it does not). */
struct coh_policy_error {
        char file[4096];
        unsigned line;      /* 0 when the problem is with the file as a whole */
        char message[256];  /* "unknown key 'Moed' in section [Policy]" */
};

enum coh_policy_severity {
        COH_POLICY_WARNING,
        COH_POLICY_ERROR,
};

/*
 * Told of every problem as it is found: coherencyd.conf's first, then the
 * rule files' in the order they are read (by name), each file's in line
 * order. A file's warnings about its rule come after its errors, and only
 * for a file without errors.
 */
typedef void (*coh_policy_report_t)(enum coh_policy_severity severity, const struct coh_policy_error *e,
                                    void *userdata);

/* The VMM as the daemon saw it at connect time. */
struct coh_peer {
        pid_t pid;
        uid_t uid;
        gid_t gid;
        const gid_t *groups;  /* supplementary groups (SO_PEERGROUPS) */
        size_t n_groups;
        const char *unit;     /* systemd unit of the peer, NULL when unknown */
};

struct coh_broker_config {
        enum coh_mode mode;
        struct coh_origin mode_origin;
        enum coh_access access;               /* Access=, default deny */
        struct coh_origin access_origin;
        uint64_t release_timeout_usec;        /* ReleaseTimeoutSec=, default 30 s: the still-held warning */
        uint64_t refusal_log_interval_usec;   /* RefusalLogIntervalSec=, default 10 s; 0: every refusal in full */
        bool revoke_kill;                     /* RevokeKill=, default no */
        bool has_admin_group;
        gid_t admin_gid;
        unsigned max_connections;             /* MaxConnections=, default 256 */
        unsigned reserved_admin_connections;  /* ReservedAdminConnections=, default 8: root and AdminGroup= beyond it */
        uint64_t message_timeout_usec;        /* MessageTimeoutSec=, default 30 s: a call begun must be whole by then */
        unsigned max_connections_per_user;    /* MaxConnectionsPerUser=, default 32 */
        unsigned max_grants_per_connection;   /* MaxGrantsPerConnection=, default 64 */
        unsigned idle_exit_sec;               /* IdleExitSec=, default 0 = never */
};

struct coh_policy_result {
        enum coh_access access;
        struct coh_origin access_origin;
        enum coh_mode mode;
        struct coh_origin mode_origin;
        enum coh_nosnoop nosnoop;
        struct coh_origin nosnoop_origin;
};

/*
 * Loads <config_dir>/coherencyd.conf, <config_dir>/policy.d/ *.policy and
 * <vendor_dir>/ *.policy. Missing files and directories are fine. The load
 * goes on past an error, so that every error is found (and passed to
 * report, which may be NULL), and then fails: it returns the first error's
 * value (-EINVAL for what a file says, -errno for I/O) and *err (may be NULL)
 * is that error. Entries of the policy.d directories that are not read (not
 * *.policy, not a regular file or a link to /dev/null) and rules that match
 * every device and every VMM are warnings, passed to report; they do not fail
 * the load.
 */
int coh_policy_load_report(const char *config_dir, const char *vendor_dir, coh_policy_report_t report,
                           void *userdata, struct coh_policy **ret, struct coh_policy_error *err);

/*
 * The same, for the daemon: every warning, and every error but the first, is
 * logged (log.h) as it is found; the first is left to the caller to log, with
 * what it knows (fatal at start-up, the running policy kept on reload).
 */
int coh_policy_load(const char *config_dir, const char *vendor_dir, struct coh_policy **ret,
                    struct coh_policy_error *err);

/* One problem of a load as a record (log.h): file, line and message, at LOG_ERR
 * or LOG_WARNING. What coh_policy_load() logs, and the daemon's own reporter. */
void coh_policy_log_problem(enum coh_policy_severity severity, const struct coh_policy_error *e);

/* The same from memory, for tests and the fuzzer: conf may be NULL; rule files are (name, text) pairs in any order. */
struct coh_policy_file {
        const char *name; /* used as the file name in origins and errors, and for ordering */
        const char *text;
        size_t len;
};
int coh_policy_load_from_memory(const struct coh_policy_file *conf, const struct coh_policy_file *rules,
                                size_t n_rules, coh_policy_report_t report, void *userdata,
                                struct coh_policy **ret, struct coh_policy_error *err);

/* "file:line: message", or "file: message" for a whole file, into buf. */
const char *coh_policy_error_format(const struct coh_policy_error *e, char *buf, size_t size);

void coh_policy_free(struct coh_policy *p);

const struct coh_broker_config *coh_policy_broker(const struct coh_policy *p);

/*
 * Pure evaluation. device may be NULL (the caller's restrictions, for
 * GetInfo): rules that match on any device key are then skipped.
 */
void coh_policy_evaluate(const struct coh_policy *p, const struct coh_device_facts *device,
                         const struct coh_peer *peer, struct coh_policy_result *ret);

/*
 * The peer a VMM running as user (name or uid), with group (name or gid,
 * default: the user's primary group) and unit, would be: for
 * Manager.Explain. Supplementary groups come from the group database
 * (getgrouplist). *ret_groups is allocated (free()), ret->groups points to
 * it; ret->unit points to unit. -ESRCH for an unknown user, -ENOENT for an
 * unknown group.
 */
int coh_peer_from_names(const char *user, const char *group, const char *unit, struct coh_peer *ret,
                        gid_t **ret_groups);

/* "file:line" or "default" into buf. */
const char *coh_origin_format(const struct coh_origin *o, char *buf, size_t size);

/*
 * The loaded policy as JSON (for Manager.GetPolicy): rules with their files,
 * match keys and settings, and the broker config; every setting with the
 * file:line that set it ("<name>Rule": "modeRule", "maxConnectionsRule", ...),
 * or "default".
 */
json_object *coh_policy_to_json(const struct coh_policy *p);

/* Number of rule files loaded, for the policy-load journal record. */
size_t coh_policy_n_rules(const struct coh_policy *p);
