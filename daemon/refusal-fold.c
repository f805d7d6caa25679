/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Refusals folded per peer uid and kind (refusal-fold.h). */
#include <event2/event.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "methods-internal.h"
#include "refusal-fold.h"
#include "server.h"
#include "util.h"

static void summary(const struct coh_refusal_fold *f, size_t i) {
        char uid[24], count[24], interval[24], message[224];
        const char *what = f->entries[i].what;

        snprintf(interval, sizeof interval, "%" PRIu64, f->interval_usec / 1000000);
        snprintf(uid, sizeof uid, "%u", (unsigned) f->entries[i].uid);
        snprintf(count, sizeof count, "%u", f->entries[i].folded);
        snprintf(message, sizeof message, "%s more refused%s%s for uid %s (within %s s of the refusal recorded)", count,
                 what ? " " : "", what ?: "", uid, interval);
        const struct coh_journal_field fields[] = {
                what ? (struct coh_journal_field) { "COHERENCYD_REFUSED", what }
                     : (struct coh_journal_field) { "COHERENCYD_DECISION", "refused" },
                { "COHERENCYD_PEER_UID", uid },
                { "COHERENCYD_FOLDED", count },
                { "COHERENCYD_INTERVAL_SEC", interval },
        };
        coh_log_record(LOG_NOTICE, COH_MESSAGE_REFUSED_FOLDED, message, fields, ELEMENTSOF(fields));
}

static void interval_end(evutil_socket_t fd, short what, void *userdata) {
        struct coh_refusal_fold *f = userdata;
        for (size_t i = 0; i < f->n; i++)
                if (f->entries[i].folded > 0)
                        summary(f, i);
        f->n = 0;
        f->armed = false;
}

void coh_methods_flush_refusals(struct coh_methods *ms) {
        /* Counts still waiting for their interval's end would be lost with the
         * daemon. The timer, if it fires after all, finds nothing. */
        if (ms->fold.armed)
                interval_end(-1, 0, &ms->fold);
}

bool refusal_fold_note(struct coh_methods *ms, uid_t uid, const char *what) {
        struct coh_refusal_fold *f = &ms->fold;
        uint64_t interval = coh_policy_broker(*ms->policy)->refusal_log_interval_usec;
        struct event_base *base = ms->server ? ms->server->base : NULL;

        if (interval == 0 || !base)
                return false;
        if (f->armed && f->base != base) /* a timer on another loop never fires on this one */
                interval_end(-1, 0, f);
        for (size_t i = 0; i < f->n; i++)
                if (f->entries[i].uid == uid && f->entries[i].what == what) {
                        if (f->entries[i].folded == UINT_MAX)
                                return false;
                        f->entries[i].folded++;
                        return true;
                }
        if (f->n == COH_FOLD_ENTRIES_MAX)
                return false;
        if (!f->armed) {
                struct timeval tv = { .tv_sec = (time_t) (interval / 1000000),
                                      .tv_usec = (suseconds_t) (interval % 1000000) };
                if (event_base_once(base, -1, EV_TIMEOUT, interval_end, f, &tv) < 0)
                        return false;
                f->armed = true;
                f->base = base;
                f->interval_usec = interval;
        }
        f->entries[f->n].uid = uid;
        f->entries[f->n].what = what;
        f->entries[f->n].folded = 0;
        f->n++;
        return false;
}
