/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Structured records to journald over its native protocol, without ever
 * blocking the event loop: the datagram socket is non-blocking, records that
 * cannot go yet wait in a bounded queue flushed when the socket is writable,
 * and what overflows is counted and reported once the journal takes records
 * again. Without a journald (no socket) records go to stderr as one line each.
 * A record is built in a buffer kept from one record to the next: only one that
 * has to wait in the queue is allocated (two records go out on every grant).
 */

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct coh_journal;

struct coh_journal_field {
        const char *name;   /* "COHERENCYD_DECISION" */
        const char *value;  /* NULL: field left out */
};

/* socket_path NULL means /run/systemd/journal/socket. */
int coh_journal_new(struct event_base *base, const char *socket_path, size_t queue_max,
                    struct coh_journal **ret);
/* Tries once more to flush, then reports anything still queued or dropped on stderr. */
void coh_journal_free(struct coh_journal *j);

/*
 * One record with PRIORITY, MESSAGE_ID (when not NULL: 32 lowercase hex
 * digits), MESSAGE and the given fields (plus
 * SYSLOG_IDENTIFIER=coherencyd). Never blocks. Returns 0 when sent or queued,
 * -ENOBUFS when the queue was full and the record was dropped (counted).
 */
int coh_journal_send(struct coh_journal *j, int priority, const char *message_id, const char *message,
                     const struct coh_journal_field *fields, size_t n_fields);

/*
 * The same for fields whose names are compile-time constants (a record's field table, string
 * literals): their names are not checked on every record (a third of what a record cost, two
 * records on every grant) but once, by tests/journal over every field table with
 * coh_journal_field_name_valid(), and by assert() where assertions are compiled in (the test
 * builds). A name from anywhere else must go through coh_journal_send(): an '=' or a newline in
 * a name would change the record's framing.
 */
int coh_journal_send_const_names(struct coh_journal *j, int priority, const char *message_id, const char *message,
                                 const struct coh_journal_field *fields, size_t n_fields);

/* Whether journald takes name from a client and it is none of the fields set here: uppercase
 * letters, digits and '_', at most 64, not beginning with a digit or '_'. */
bool coh_journal_field_name_valid(const char *name);

/* Records queued and not yet sent; records dropped so far. */
size_t coh_journal_queued(const struct coh_journal *j);
size_t coh_journal_dropped(const struct coh_journal *j);
