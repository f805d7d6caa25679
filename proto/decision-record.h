/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A decision and the facts of the devices behind it, as the daemon sends
 * them (Probe, RequestGrant, Manager.Explain, Monitor), logs them (the
 * decision records) and libcoherency parses them: one struct and one field
 * table each (record.h).
 */

#include <stdbool.h>
#include <stdint.h>

#include "record.h"

/* One PCI device with what the policy and the table made of it (the wire's DeviceFacts). */
struct coh_device_record {
        char slot[32];
        char vendor[8];
        char device[8];
        char class_[10];
        char driver[64];
        char iommu[64];
        int64_t iommu_group;
        int access;               /* enum coh_access */
        char access_rule[512];
        int nosnoop;              /* enum coh_nosnoop */
        char nosnoop_rule[512];
        int mode;                 /* enum coh_mode */
        char mode_rule[512];
        bool iommu_enforces;
        bool ioas_coherent;
        int decision;             /* this device's own */
        int reason;
};

enum {
        COH_DEVICE_FORM_BRIEF = 1u << 0, /* the deciding device, at the top of Facts */
        COH_DEVICE_FORM_FULL = 1u << 1,  /* each device of the group, in Facts.devices */
};

extern const struct coh_field coh_device_record_fields[];

/* What was decided for one request. */
struct coh_decision_record {
        int decision;             /* enum coh_decision */
        int reason;               /* enum coh_reason */
        char rule[512];
        int mode;                 /* enum coh_mode */
        int wbinvd;               /* 1: the file turns WBINVD on once added */
        int kvm_attach;           /* enum coh_kvm_attach; NONE when refused */
        char grant[24];           /* "" when nothing was handed over */
        int vm_wbinvd;            /* the VM's state after the request */
        char device[32];          /* the PCI address asked for */
        int64_t peer_pid;
        int64_t peer_uid;
        char peer_unit[256];
};

enum {
        COH_DECISION_FORM_PROBE = 1u << 0, /* Probe, Manager.Explain */
        COH_DECISION_FORM_GRANT = 1u << 1, /* RequestGrant */
        COH_DECISION_FORM_EVENT = 1u << 2, /* Monitor's "decision" event */
};

extern const struct coh_field coh_decision_record_fields[];
