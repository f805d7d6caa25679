/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Refusals folded per peer uid (DESIGN.md §7, issue 9): the first refusal of
 * a uid in an interval (RefusalLogIntervalSec=) is recorded in full, the next
 * ones of the same kind from that uid are only counted, and when the interval
 * ends one record says "N more refused for uid U". So one client asking again
 * and again costs the journal two records per interval, and cannot crowd
 * other VMMs' records out of journald's rate limit; no refusal goes
 * unrecorded. Grants and ends are never folded, and Monitor sees every
 * decision.
 *
 * The state is the methods' (struct coh_methods, methods.h): a daemon's, not
 * the process's. The interval's end is a one-shot libevent timer
 * (event_base_once: libevent frees it, with the base if it never fires),
 * armed by the first refusal after a quiet interval; nothing runs while no
 * client is refused. A uid beyond the table's bound is recorded in full.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define COH_FOLD_ENTRIES_MAX 1024

struct event_base;
struct coh_methods;

struct coh_refusal_fold {
        struct event_base *base; /* the armed timer's */
        bool armed;              /* an interval runs */
        uint64_t interval_usec;  /* of the interval that runs */
        size_t n;
        struct {
                uid_t uid;
                const char *what; /* NULL: a Broker decision; else what was refused */
                unsigned folded;  /* refusals counted, not recorded, after the first */
        } entries[COH_FOLD_ENTRIES_MAX];
};

/*
 * A refusal of `what` to uid: true when it is only counted (the caller
 * records nothing), false when the caller records it in full. what: NULL
 * for a Broker decision (the summary says COHERENCYD_DECISION=refused, as a
 * decision record does), or a string that lives as long as the daemon
 * naming what else was refused ("Manager call"): the summary then says
 * "N more refused <what> for uid U", with COHERENCYD_REFUSED=<what>.
 */
bool refusal_fold_note(struct coh_methods *ms, uid_t uid, const char *what);
