/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.varlink.service: introspection, open to everyone. */
#include <stddef.h>

#include "interfaces.h"
#include "json-util.h"
#include "json-writer.h"
#include "methods-internal.h"

static int method_get_info(struct call_ctx *x) {
        int r = method_no_params(x);
        if (r != 0)
                return r;
        /* Written, not built as a json-c tree: every client's first call (a
         * third of what GetInfo cost went into the tree; bench/, issue 11). */
        struct coh_json_writer w = {};
        coh_jw_object_begin(&w);
        coh_jw_key(&w, "vendor");
        coh_jw_string(&w, "coherencyd");
        coh_jw_key(&w, "product");
        coh_jw_string(&w, "coherencyd");
        coh_jw_key(&w, "version");
        coh_jw_string(&w, COH_VERSION);
        coh_jw_key(&w, "url");
        coh_jw_string(&w, "https://coherencyd.invalid/");
        coh_jw_key(&w, "interfaces");
        coh_jw_array_begin(&w);
        for (const struct coh_interface *i = coh_interfaces; i->name; i++)
                coh_jw_string(&w, i->name);
        coh_jw_array_end(&w);
        coh_jw_object_end(&w);
        return method_reply(x, coh_jw_to_object(&w));
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
