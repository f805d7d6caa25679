/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.varlink.service: introspection, open to everyone. */
#include <stddef.h>

#include "json-util.h"
#include "interfaces.h"
#include "methods-internal.h"

static int method_get_info(struct call_ctx *x) {
        int r = method_no_params(x);
        if (r != 0)
                return r;
        json_object *p = json_object_new_object();
        coh_json_add(p, "vendor", json_object_new_string("coherencyd"));
        coh_json_add(p, "product", json_object_new_string("coherencyd"));
        coh_json_add(p, "version", json_object_new_string(COH_VERSION));
        coh_json_add(p, "url", json_object_new_string("https://coherencyd.invalid/"));
        json_object *list = json_object_new_array();
        for (const struct coh_interface *i = coh_interfaces; i->name; i++)
                coh_json_append(list, json_object_new_string(i->name));
        coh_json_add(p, "interfaces", list);
        return method_reply(x, p);
}

struct interface_params {
        const char *interface;
};

static const struct coh_param interface_params[] = {
        { "interface", COH_PARAM_STRING, offsetof(struct interface_params, interface), true },
        COH_PARAMS_END,
};

static int method_get_interface_description(struct call_ctx *x) {
        struct interface_params p;
        int r = method_params(x, interface_params, &p);
        if (r != 0)
                return r;
        const char *text = coh_interface_description(p.interface);
        if (!text)
                return method_error(x, SERVICE "InterfaceNotFound", "interface", p.interface);
        json_object *reply = json_object_new_object();
        coh_json_add(reply, "description", json_object_new_string(text));
        return method_reply(x, reply);
}

const struct coh_method coh_service_methods[] = {
        { SERVICE "GetInfo", method_get_info, false },
        { SERVICE "GetInterfaceDescription", method_get_interface_description, false },
        {}
};
