/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A grant, as the daemon keeps it and everyone else sees it: one struct and
 * one field table (record.h) for Broker.ListGrants and WatchGrants,
 * Manager.ListGrants and Monitor, the journal's grant records, the fd-store
 * record, and libcoherency's parser.
 */

#include <stdbool.h>
#include <stdint.h>

#include "record.h"

struct coh_grant_record {
        char grant[24];          /* "g-0123456789abcdef" */
        char device[32];         /* the PCI address asked for */
        int64_t iommu_group;
        char file[48];           /* "vfio-group:N" or "vfio-device:SLOT" */
        int decision;            /* enum coh_decision */
        int reason;              /* enum coh_reason */
        int mode;                /* enum coh_mode */
        char rule[512];          /* "file:line" or "default" */
        int wbinvd;              /* 1: adding the file turns WBINVD on */
        int vm_wbinvd;           /* 1: the VM has a granted file (filled when shown) */
        int kvm_attach;          /* enum coh_kvm_attach */
        int state;               /* enum coh_grant_state */
        char end[16];            /* "release", "revoke", ...; "" while active */
        int64_t peer_pid;
        int64_t peer_uid;
        char peer_unit[256];
        int64_t since;           /* CLOCK_REALTIME usec, handed over */
        int64_t ending_since;    /* CLOCK_REALTIME usec, ended; 0 while active */
        /* The fd store's alone. */
        int64_t owner;           /* the owning connection's id; kept once ending */
        int64_t vm;              /* the VM's id while active */
        bool pending;            /* recorded, the reply with the file not yet queued */
        bool kill;               /* revoked with kill */
        bool warned;             /* the still-held warning was written */
        bool killed;
};

/* Its forms (record.h). */
enum {
        COH_GRANT_FORM_VMM = 1u << 0,      /* Broker.ListGrants, WatchGrants: the VMM's own grants */
        COH_GRANT_FORM_OPERATOR = 1u << 1, /* Manager.ListGrants, Monitor */
        COH_GRANT_FORM_STORE = 1u << 2,    /* the fd-store record */
};

extern const struct coh_field coh_grant_record_fields[];
