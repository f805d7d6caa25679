/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The Varlink interface definitions shipped as proto/NAME.varlink, compiled in. */
struct coh_interface {
        const char *name; /* "io.coherencyd.Broker" */
        const char *text; /* the .varlink file, verbatim */
};

extern const struct coh_interface coh_interfaces[]; /* terminated by { NULL, NULL } */
const char *coh_interface_description(const char *name);
