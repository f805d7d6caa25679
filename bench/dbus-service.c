/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * bench-dbus-service ADDRESS CONVERSATION: the echo server's twin behind a
 * dbus-daemon. It owns io.coherencyd.Bench on the bus at ADDRESS (bench/run
 * starts a private dbus-daemon) and serves one method,
 *
 *   io.coherencyd.Bench.Call(s call, ah fds) -> (s reply, ah fds)
 *
 * whose reply is the one coherencyd gave to the same call text (bench-load
 * record wrote them to CONVERSATION), with as many of the call's descriptors
 * handed back as coherencyd handed over. bench-load sends it the same bytes
 * and descriptors as it sends coherencyd and the echo server, so the three
 * differ only in the path between client and server. sd-bus, one thread.
 *
 * Prints "Ready on ADDRESS" once it owns the name (bench/run waits for it).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-bus.h>

#include "conversation.h"

#define FDS_MAX 8

static struct conversation conv;

static int method_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        sd_bus_message *reply = NULL;
        const char *text;
        int fds[FDS_MAX], r;
        unsigned n_fds = 0;

        r = sd_bus_message_read(m, "s", &text);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', "h");
        if (r < 0)
                return r;
        for (;;) {
                int fd;
                r = sd_bus_message_read_basic(m, 'h', &fd); /* owned by m */
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (n_fds < FDS_MAX)
                        fds[n_fds++] = fd;
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        const struct conv_step *s = conv_find_call(&conv, text, strlen(text));
        if (!s || s->reply.n_fds > n_fds)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "not a recorded call");
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", s->reply.text);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "h");
        for (unsigned i = 0; r >= 0 && i < s->reply.n_fds; i++)
                r = sd_bus_message_append_basic(reply, 'h', &fds[i]); /* sd-bus sends a copy */
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(reply);
        return r < 0 ? r : 1;
}

static const sd_bus_vtable vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Call", "sah", "sah", method_call, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

int main(int argc, char *argv[]) {
        sd_bus *bus = NULL;
        struct rlimit rl;
        int r;

        if (argc != 3) {
                fprintf(stderr, "usage: bench-dbus-service ADDRESS CONVERSATION\n");
                return 2;
        }
        if (conv_load(argv[2], &conv) < 0)
                return 1;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, argv[1]);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, 1);
        if (r >= 0)
                r = sd_bus_negotiate_fds(bus, 1);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, "/io/coherencyd/Bench", "io.coherencyd.Bench", vtable, NULL);
        if (r >= 0)
                r = sd_bus_request_name(bus, "io.coherencyd.Bench", 0);
        if (r < 0) {
                fprintf(stderr, "bench-dbus-service: %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        printf("Ready on %s\n", argv[1]);
        fflush(stdout);
        for (;;) {
                r = sd_bus_process(bus, NULL);
                if (r < 0) {
                        fprintf(stderr, "bench-dbus-service: %s\n", strerror(-r));
                        return 1;
                }
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR) {
                        fprintf(stderr, "bench-dbus-service: %s\n", strerror(-r));
                        return 1;
                }
        }
}
