/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A recorded conversation with coherencyd: for each operation the bench times
 * (getinfo, probe, grant), the exact messages a libcoherency client sent and
 * the daemon answered, each with how many descriptors rode on it.
 * bench-load records it once through a relay (bench-load record); the echo
 * server and the D-Bus service answer each call with the reply recorded for
 * it, so that all three servers move the same bytes and descriptors.
 *
 * The file, one block per message, text without the NUL that ends it on the
 * wire:
 *
 *   op NAME
 *   call NFDS LEN
 *   <LEN bytes>
 *   reply NFDS LEN
 *   <LEN bytes>
 *   ...
 *
 * Header only: used by bench-load, bench-echo-server and bench-dbus-service.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONV_OPS_MAX 8
#define CONV_STEPS_MAX 4

struct conv_msg {
        char *text;
        size_t len;
        unsigned n_fds;
};

struct conv_step {
        struct conv_msg call, reply;
};

struct conv_op {
        char name[32];
        struct conv_step steps[CONV_STEPS_MAX];
        unsigned n_steps;
};

struct conversation {
        struct conv_op ops[CONV_OPS_MAX];
        unsigned n_ops;
};

/* The rest of a "call" or "reply" block, after its first word. */
static inline int conv_read_msg(FILE *f, struct conv_msg *m) {
        unsigned long len;
        if (fscanf(f, "%u %lu", &m->n_fds, &len) != 2 || len > 16u * 1024 * 1024 || fgetc(f) != '\n')
                return -EBADMSG;
        m->text = malloc(len + 1);
        if (!m->text)
                return -ENOMEM;
        if (fread(m->text, 1, len, f) != len || fgetc(f) != '\n')
                return -EBADMSG;
        m->text[len] = 0;
        m->len = len;
        return 0;
}

/* 0, or -errno with a message on stderr. */
static inline int conv_load(const char *path, struct conversation *c) {
        FILE *f = fopen(path, "re");
        int r = 0;
        if (!f) {
                r = -errno;
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return r;
        }
        memset(c, 0, sizeof *c);
        for (;;) {
                char word[16], name[32];
                int ch = fgetc(f);
                if (ch == EOF)
                        break;
                ungetc(ch, f);
                if (fscanf(f, "%15s", word) != 1)
                        break;
                if (strcmp(word, "op") == 0) {
                        if (fscanf(f, "%31s", name) != 1 || c->n_ops == CONV_OPS_MAX || fgetc(f) != '\n') {
                                r = -EBADMSG;
                                break;
                        }
                        snprintf(c->ops[c->n_ops++].name, sizeof c->ops[0].name, "%s", name);
                        continue;
                }
                /* A step: "call ..." then "reply ...". */
                struct conv_op *op = c->n_ops ? &c->ops[c->n_ops - 1] : NULL;
                if (strcmp(word, "call") != 0 || !op || op->n_steps == CONV_STEPS_MAX) {
                        r = -EBADMSG;
                        break;
                }
                struct conv_step *s = &op->steps[op->n_steps++];
                r = conv_read_msg(f, &s->call);
                if (r == 0)
                        r = fscanf(f, "%15s", word) == 1 && strcmp(word, "reply") == 0 ? conv_read_msg(f, &s->reply)
                                                                                       : -EBADMSG;
                if (r < 0)
                        break;
        }
        fclose(f);
        if (r < 0)
                fprintf(stderr, "%s: not a recorded conversation\n", path);
        return r;
}

static inline const struct conv_op *conv_find_op(const struct conversation *c, const char *name) {
        for (unsigned i = 0; i < c->n_ops; i++)
                if (strcmp(c->ops[i].name, name) == 0)
                        return &c->ops[i];
        return NULL;
}

/* The step whose call is exactly text, or NULL. */
static inline const struct conv_step *conv_find_call(const struct conversation *c, const char *text, size_t len) {
        for (unsigned i = 0; i < c->n_ops; i++)
                for (unsigned k = 0; k < c->ops[i].n_steps; k++) {
                        const struct conv_step *s = &c->ops[i].steps[k];
                        if (s->call.len == len && memcmp(s->call.text, text, len) == 0)
                                return s;
                }
        return NULL;
}
