/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Policy results remembered per device facts and peer (policy-memo.h). */
#include <search.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy-memo.h"
#include "util.h"

struct memo_entry {
        struct coh_policy_result result;
        size_t key_len;
        uint8_t key[]; /* see key_build() */
};

/* The peer's part of the key is at most this long; a peer with more (a
 * thousand supplementary groups) is evaluated every time. */
#define KEY_MAX 2048u

/*
 * Every byte the evaluation can read: the facts as stored (coh_facts_read_device()
 * zeroes the struct first, so padding and string tails are zero too), then
 * uid, gid, the number of groups, the groups in the kernel's order
 * (SO_PEERGROUPS: the same for the same process), and the unit with its NUL,
 * or nothing for no unit after a flag byte. 0, or -E2BIG.
 */
static int key_build(const struct coh_device_facts *d, const struct coh_peer *peer, uint8_t *buf, size_t *ret_len) {
        size_t n = 0, unit_len = peer->unit ? strlen(peer->unit) + 1 : 0;
        size_t need = sizeof *d + sizeof peer->uid + sizeof peer->gid + sizeof peer->n_groups +
                      peer->n_groups * sizeof *peer->groups + 1 + unit_len;
        if (peer->n_groups > KEY_MAX / sizeof *peer->groups || unit_len > KEY_MAX || need > KEY_MAX + sizeof *d)
                return -E2BIG;
        memcpy(buf + n, d, sizeof *d), n += sizeof *d;
        memcpy(buf + n, &peer->uid, sizeof peer->uid), n += sizeof peer->uid;
        memcpy(buf + n, &peer->gid, sizeof peer->gid), n += sizeof peer->gid;
        memcpy(buf + n, &peer->n_groups, sizeof peer->n_groups), n += sizeof peer->n_groups;
        if (peer->n_groups > 0)
                memcpy(buf + n, peer->groups, peer->n_groups * sizeof *peer->groups), n += peer->n_groups * sizeof *peer->groups;
        buf[n++] = peer->unit != NULL;
        if (unit_len > 0)
                memcpy(buf + n, peer->unit, unit_len), n += unit_len;
        *ret_len = n;
        return 0;
}

static int cmp_entry(const void *a, const void *b) {
        const struct memo_entry *x = a, *y = b;
        if (x->key_len != y->key_len)
                return x->key_len < y->key_len ? -1 : 1;
        return memcmp(x->key, y->key, x->key_len);
}

void coh_policy_memo_drop(struct coh_policy_memo *m) {
        if (!m)
                return;
        tdestroy(TAKE_PTR(m->tree), free);
        m->n = 0;
}

void coh_policy_memo_evaluate(struct coh_policy_memo *m, const struct coh_policy *p,
                              const struct coh_device_facts *device, const struct coh_peer *peer,
                              struct coh_policy_result *ret) {
        _Alignas(struct memo_entry) uint8_t buf[sizeof(struct memo_entry) + sizeof(struct coh_device_facts) + KEY_MAX];
        struct memo_entry *probe = (struct memo_entry *) buf;
        size_t len;

        if (!m || !device || !peer || key_build(device, peer, probe->key, &len) < 0) {
                coh_policy_evaluate(p, device, peer, ret);
                return;
        }
        probe->key_len = len;
        struct memo_entry **found = tfind(probe, &m->tree, cmp_entry);
        if (found) {
                *ret = (*found)->result;
                return;
        }
        coh_policy_evaluate(p, device, peer, ret);
        if (m->n >= COH_POLICY_MEMO_MAX)
                coh_policy_memo_drop(m);
        struct memo_entry *e = malloc(sizeof *e + len);
        if (!e)
                return; /* answered all the same */
        e->result = *ret;
        e->key_len = len;
        memcpy(e->key, probe->key, len);
        found = tsearch(e, &m->tree, cmp_entry);
        if (!found || *found != e)
                free(e);
        else
                m->n++;
}
