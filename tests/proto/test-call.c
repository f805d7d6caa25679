/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "call.h"
#include "json-util.h"
#include "json-writer.h"
#include "params.h"

static json_object *parse_json(const char *s) {
        json_object *o = json_tokener_parse(s);

        assert_non_null(o);
        return o;
}

static void assert_json_equal(json_object *o, const char *expected) {
        json_object *e = parse_json(expected);

        assert_true(json_object_equal(o, e));
        json_object_put(e);
}

static void assert_param_int(const struct coh_call *c, size_t i, const char *key, int64_t value) {
        assert_true(i < c->n_params);
        assert_string_equal(c->params[i].key, key);
        assert_int_equal(c->params[i].kind, COH_VALUE_INT);
        assert_true(c->params[i].integer == value);
}

static void assert_param_string(const struct coh_call *c, size_t i, const char *key, const char *value) {
        assert_true(i < c->n_params);
        assert_string_equal(c->params[i].key, key);
        assert_int_equal(c->params[i].kind, COH_VALUE_STRING);
        assert_string_equal(c->params[i].string, value);
}

static void test_call_valid(void **state) {
        static const char *const empty[] = {
                "{\"method\":\"a.B\"}",
                "{\"method\":\"a.B\",\"parameters\":null}",
                "{\"method\":\"a.B\",\"parameters\":{}}",
                " \n{\"parameters\" : {} , \"method\":\"a.B\"}\t\n",
        };
        struct coh_call c;

        for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
                assert_int_equal(coh_call_parse(empty[i], &c), 0);
                assert_string_equal(c.method, "a.B");
                assert_int_equal(c.n_params, 0);
                assert_false(c.oneway || c.more || c.upgrade);
                coh_call_done(&c);
                assert_null(c.storage);
        }

        assert_int_equal(coh_call_parse("{\"method\":\"io.coherencyd.Broker.RequestGrant\","
                                        "\"parameters\":{\"vm\":0,\"device\":1,\"iommu\":null},"
                                        "\"more\":true,\"oneway\":false}", &c), 0);
        assert_string_equal(c.method, "io.coherencyd.Broker.RequestGrant");
        assert_int_equal(c.n_params, 3);
        assert_param_int(&c, 0, "vm", 0);
        assert_param_int(&c, 1, "device", 1);
        assert_string_equal(c.params[2].key, "iommu");
        assert_int_equal(c.params[2].kind, COH_VALUE_NULL);
        assert_true(c.more);
        assert_false(c.oneway);
        assert_false(c.upgrade);
        coh_call_done(&c);

        assert_int_equal(coh_call_parse("{\"method\":\"org.varlink.service.GetInfo\",\"oneway\":true}", &c), 0);
        assert_true(c.oneway);
        coh_call_done(&c);

        assert_int_equal(coh_call_parse("{\"method\":\"x-1.y2.Z9a\",\"upgrade\":true,\"more\":false}", &c), 0);
        assert_string_equal(c.method, "x-1.y2.Z9a");
        assert_true(c.upgrade);
        coh_call_done(&c);

        /* Deep, but within the bound. */
        {
                char deep[512] = "{\"method\":\"a.B\",\"parameters\":{\"x\":";
                size_t n = strlen(deep);

                for (int i = 0; i < 28; i++)
                        deep[n++] = '[';
                for (int i = 0; i < 28; i++)
                        deep[n++] = ']';
                deep[n++] = '}';
                deep[n++] = '}';
                deep[n] = '\0';
                assert_int_equal(coh_call_parse(deep, &c), 0);
                coh_call_done(&c);
        }
}

static void test_call_invalid(void **state) {
        static const char *const bad[] = {
                /* not one object */
                "",
                " ",
                "{",
                "[]",
                "[{\"method\":\"a.B\"}]",
                "\"a.B\"",
                "1",
                "null",
                "true",
                "{\"method\":\"a.B\"}x",
                "{\"method\":\"a.B\"}{}",
                "{\"method\":\"a.B\"},",
                "{\"method\":\"a.B\",}",
                "{\"method\":\"a.B\" \"more\":true}",
                "{\"method\":\"a.\xff\"}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\xc3\"}}",
                /* not JSON, though json-c takes them */
                "{\"method\":\"a.B\",\"parameters\":{\"x\":NaN}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":[1,{\"y\":-Infinity}]}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":1e400}}",
                /* method */
                "{}",
                "{\"parameters\":{}}",
                "{\"method\":null}",
                "{\"method\":1}",
                "{\"method\":{}}",
                "{\"method\":[\"a.B\"]}",
                "{\"method\":\"\"}",
                "{\"method\":\"B\"}",
                "{\"method\":\"a\"}",
                "{\"method\":\".B\"}",
                "{\"method\":\"a.\"}",
                "{\"method\":\"a.b\"}",
                "{\"method\":\"a.1B\"}",
                "{\"method\":\"a..B\"}",
                "{\"method\":\"a.B.\"}",
                "{\"method\":\".a.B\"}",
                "{\"method\":\"1a.B\"}",
                "{\"method\":\"-a.B\"}",
                "{\"method\":\"a-.B\"}",
                "{\"method\":\"a.-b.C\"}",
                "{\"method\":\"a.B-c\"}",
                "{\"method\":\"a.B c\"}",
                "{\"method\":\"a b.C\"}",
                "{\"method\":\"a_b.C\"}",
                "{\"method\":\"a.B\\n\"}",
                "{\"method\":\"a.B\\u0000x\"}",
                "{\"method\":\"a\\u0000.B\"}",
                "{\"method\":\"a.\\u00c9\"}",
                /* parameters */
                "{\"method\":\"a.B\",\"parameters\":[]}",
                "{\"method\":\"a.B\",\"parameters\":\"\"}",
                "{\"method\":\"a.B\",\"parameters\":0}",
                "{\"method\":\"a.B\",\"parameters\":false}",
                /* flags */
                "{\"method\":\"a.B\",\"more\":null}",
                "{\"method\":\"a.B\",\"more\":1}",
                "{\"method\":\"a.B\",\"more\":\"true\"}",
                "{\"method\":\"a.B\",\"oneway\":0}",
                "{\"method\":\"a.B\",\"oneway\":{}}",
                "{\"method\":\"a.B\",\"upgrade\":[]}",
                "{\"method\":\"a.B\",\"oneway\":true,\"more\":true}",
                "{\"method\":\"a.B\",\"oneway\":true,\"upgrade\":true}",
                "{\"method\":\"a.B\",\"more\":true,\"upgrade\":true}",
                /* unknown keys, including reply keys and case variants */
                "{\"method\":\"a.B\",\"id\":1}",
                "{\"method\":\"a.B\",\"continues\":true}",
                "{\"method\":\"a.B\",\"error\":\"a.B\"}",
                "{\"Method\":\"a.B\"}",
                "{\"method\":\"a.B\",\"\":null}",
        };
        struct coh_call c;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int r = coh_call_parse(bad[i], &c);

                if (r != -EBADMSG)
                        fail_msg("accepted or wrong error %d: %s", r, bad[i]);
                /* Nothing to release, and releasing is harmless. */
                assert_null(c.storage);
                assert_null(c.method);
                assert_int_equal(c.n_params, 0);
                coh_call_done(&c);
        }
}

static void test_call_depth(void **state) {
        char deep[1024] = "{\"method\":\"a.B\",\"parameters\":{\"x\":";
        size_t n = strlen(deep);
        struct coh_call c;

        for (int i = 0; i < 200; i++)
                deep[n++] = '[';
        for (int i = 0; i < 200; i++)
                deep[n++] = ']';
        deep[n++] = '}';
        deep[n++] = '}';
        deep[n] = '\0';
        assert_int_equal(coh_call_parse(deep, &c), -EBADMSG);
}

/*
 * Nesting as json-c's json_tokener_new_ex(32) allowed it: a value at most 32
 * deep, the envelope being 1 and parameters 2; inner is the deepest value.
 */
static char *nested(unsigned depth, const char *inner) {
        static char buf[512];
        size_t n;

        strcpy(buf, "{\"method\":\"a.B\",\"parameters\":{\"x\":");
        n = strlen(buf);
        for (unsigned i = 3; i < depth; i++)
                buf[n++] = '[';
        n += (size_t) sprintf(buf + n, "%s", inner);
        for (unsigned i = 3; i < depth; i++)
                buf[n++] = ']';
        strcpy(buf + n, "}}");
        return buf;
}

/*
 * Texts RFC 8259 does not allow. json-c's strict mode took 28 of them: the
 * duplicates, single-quoted keys, raw controls, lone surrogates, the UTF-8
 * forms RFC 3629 forbids but for \xf5, \x80 and cut sequences, keys with
 * U+0000, and "00", "-01", "1.", "-.5".
 */
static void test_call_strict(void **state) {
        static const char *const bad[] = {
                /* Duplicate keys: json-c let the last win; refused like sd_json_dispatch() does. */
                "{\"method\":\"a.B\",\"method\":\"a.C\"}",
                "{\"method\":\"a.B\",\"more\":true,\"more\":false}",
                "{\"method\":\"a.B\",\"parameters\":{},\"parameters\":{}}",
                "{\"method\":\"a.B\",\"parameters\":{\"vm\":0,\"vm\":1}}",
                "{\"method\":\"a.B\",\"parameters\":{\"vm\":0,\"\\u0076m\":1}}",
                /* strings */
                "{'method':\"a.B\"}",
                "{\"method\":\"a.B\",\"parameters\":{'s':1}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":'x'}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"a\tb\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"a\x01\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\x\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\u12\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\uZZZZ\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"abc",
                /* lone surrogates: json-c made them U+FFFD */
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\ud800\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\ud800x\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\ud800\\u0041\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\ud800\\ud800\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\udc00\\ud800\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\udfff\"}}",
                /* UTF-8 that RFC 3629 forbids, which json-c's check let through */
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\xc0\x80\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\xc1\xbf\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\xe0\x80\x80\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\xed\xa0\x80\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\xf0\x80\x80\x80\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\xf4\x90\x80\x80\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\xf5\x80\x80\x80\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\x80\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"s\":\"\xe2\x82\"}}",
                "{\"method\":\"a.B\",\"parameters\":{\"\xc3\":1}}",
                /* a key that is no C string: json-c cut it, "vm\u0000x" was "vm" */
                "{\"method\":\"a.B\",\"parameters\":{\"vm\\u0000x\":0}}",
                "{\"method\\u0000x\":\"a.B\"}",
                /* numbers */
                "{\"method\":\"a.B\",\"parameters\":{\"x\":00}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":01}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":-01}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":+1}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":1.}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":.5}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":-.5}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":1e}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":1e+}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":-}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":0x10}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":nan}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":Infinity}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":-1e400}}",
                /* literals, whitespace, comments, what follows */
                "{\"method\":\"a.B\",\"parameters\":{\"x\":tru}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":True}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":nul}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":[1,]}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":{\"a\":1,}}}",
                "{\"method\":\"a.B\",\"parameters\":{\"x\":{\"a\"}}}",
                "{\"method\":\"a.B\",\"parameters\":{,}}",
                "\f{\"method\":\"a.B\"}",
                "{\"method\":\"a.B\"}\v",
                "{\"method\":\"a.B\"}/**/",
                "{\"method\":\"a.B\"} x",
                "{\"method\":\"a.B\"}\xc3\xa9",
        };
        struct coh_call c;
        char many[2048];
        size_t n;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int r = coh_call_parse(bad[i], &c);

                if (r != -EBADMSG)
                        fail_msg("accepted or wrong error %d: %s", r, bad[i]);
                assert_null(c.storage);
                assert_null(c.method);
        }

        assert_int_equal(coh_call_parse(nested(32, "1"), &c), 0);
        coh_call_done(&c);
        assert_int_equal(coh_call_parse(nested(32, "[]"), &c), 0);
        coh_call_done(&c);
        assert_int_equal(coh_call_parse(nested(32, "{}"), &c), 0);
        coh_call_done(&c);
        assert_int_equal(coh_call_parse(nested(33, "1"), &c), -EBADMSG);
        assert_int_equal(coh_call_parse(nested(32, "[1]"), &c), -EBADMSG);
        assert_int_equal(coh_call_parse(nested(32, "{\"y\":1}"), &c), -EBADMSG);
        assert_int_equal(coh_call_parse(nested(33, "[]"), &c), -EBADMSG);

        /* COH_CALL_PARAMS_MAX parameters, and one more. */
        for (unsigned count = COH_CALL_PARAMS_MAX; count <= COH_CALL_PARAMS_MAX + 1; count++) {
                n = (size_t) snprintf(many, sizeof many, "{\"method\":\"a.B\",\"parameters\":{");
                for (unsigned i = 0; i < count; i++)
                        n += (size_t) snprintf(many + n, sizeof many - n, "%s\"p%u\":%u", i ? "," : "", i, i);
                snprintf(many + n, sizeof many - n, "}}");
                assert_int_equal(coh_call_parse(many, &c), count <= COH_CALL_PARAMS_MAX ? 0 : -EBADMSG);
                if (count <= COH_CALL_PARAMS_MAX) {
                        assert_int_equal(c.n_params, count);
                        assert_param_int(&c, count - 1, "p63", 63);
                }
                coh_call_done(&c);
        }
}

/* What each top-level parameter is recorded as; nested values leave no trace. */
static void test_call_values(void **state) {
        struct coh_call c;

        assert_int_equal(coh_call_parse("{\"parameters\":{"
                                        "\"s\":\"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\xc3\xa9\xf4\x8f\xbf\xbf\","
                                        "\"nested\":{\"k\":\"a long string that is not kept\",\"l\":[\"x\",{\"m\":[]}]},"
                                        "\"after\":\"kept\","
                                        "\"zero\":-0,\"min\":-9223372036854775808,\"max\":9223372036854775807,"
                                        "\"over\":9223372036854775808,\"under\":-9223372036854775809,"
                                        "\"huge\":123456789012345678901234567890,"
                                        "\"frac\":1.0,\"exp\":1e2,\"tiny\":-1e-400,"
                                        "\"nul\":\"a\\u0000b\",\"t\":true,\"f\":false,\"n\":null,\"arr\":[1,2],"
                                        "\"\":\"\"},"
                                        "\"method\":\"x.Y\"}",
                                        &c), 0);
        assert_string_equal(c.method, "x.Y");
        assert_int_equal(c.n_params, 18);
        assert_param_string(&c, 0, "s", "\xc3\xa9\xf0\x9f\x98\x80\"\\/\b\f\n\r\t\xc3\xa9\xf4\x8f\xbf\xbf");
        assert_string_equal(c.params[1].key, "nested");
        assert_int_equal(c.params[1].kind, COH_VALUE_OTHER);
        assert_param_string(&c, 2, "after", "kept");
        assert_param_int(&c, 3, "zero", 0);
        assert_param_int(&c, 4, "min", INT64_MIN);
        assert_param_int(&c, 5, "max", INT64_MAX);
        for (size_t i = 6; i <= 11; i++)
                assert_int_equal(c.params[i].kind, COH_VALUE_OTHER);
        assert_string_equal(c.params[11].key, "tiny");
        assert_string_equal(c.params[12].key, "nul");
        assert_int_equal(c.params[12].kind, COH_VALUE_OTHER);
        assert_int_equal(c.params[13].kind, COH_VALUE_BOOL);
        assert_true(c.params[13].boolean);
        assert_int_equal(c.params[14].kind, COH_VALUE_BOOL);
        assert_false(c.params[14].boolean);
        assert_int_equal(c.params[15].kind, COH_VALUE_NULL);
        assert_int_equal(c.params[16].kind, COH_VALUE_OTHER);
        assert_param_string(&c, 17, "", "");
        coh_call_done(&c);
        assert_null(c.storage);

        /* Escapes in the envelope's keys and the method decode too. */
        assert_int_equal(coh_call_parse("{\"\\u006dethod\":\"\\u0061.B\",\"m\\u006fre\":true}", &c), 0);
        assert_string_equal(c.method, "a.B");
        assert_true(c.more);
        coh_call_done(&c);
}

struct dispatched {
        int vm, device, force;
        const char *path;
};

static const struct coh_param dispatch_table[] = {
        { "vm", COH_PARAM_FD, offsetof(struct dispatched, vm), true },
        { "device", COH_PARAM_FD, offsetof(struct dispatched, device), false },
        { "path", COH_PARAM_STRING, offsetof(struct dispatched, path), false },
        { "force", COH_PARAM_TRISTATE, offsetof(struct dispatched, force), false },
        COH_PARAMS_END,
};

static void message_init(struct coh_message *m) {
        *m = (struct coh_message) { .n_fds = 2 };
        for (size_t i = 0; i < m->n_fds; i++) {
                m->fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                assert_true(m->fds[i] >= 0);
        }
}

static void message_done(struct coh_message *m) {
        for (size_t i = 0; i < m->n_fds; i++)
                if (m->fds[i] >= 0)
                        assert_int_equal(close(m->fds[i]), 0);
}

/* Dispatches params (the inside of "parameters"); returns the parameter at fault or NULL. */
static const char *dispatch(const char *params, struct dispatched *d, struct coh_message *m) {
        static char bad_copy[64];
        char text[512];
        struct coh_call c;
        const char *bad = NULL;
        int r;

        snprintf(text, sizeof text, "{\"method\":\"a.B\",\"parameters\":{%s}}", params);
        assert_int_equal(coh_call_parse(text, &c), 0);
        r = coh_params_dispatch(&c, m, dispatch_table, d, &bad);
        if (r == 0) {
                assert_null(bad);
                /* path points into the call: checked before it goes */
                if (d->path)
                        assert_string_equal(d->path, "/dev/vfio/1");
                coh_call_done(&c);
                return NULL;
        }
        assert_int_equal(r, -EINVAL);
        assert_non_null(bad);
        snprintf(bad_copy, sizeof bad_copy, "%s", bad);
        /* Nothing is left taken on failure. */
        assert_int_equal(d->vm, -EBADF);
        assert_int_equal(d->device, -EBADF);
        coh_call_done(&c);
        return bad_copy;
}

static void test_params_dispatch(void **state) {
        static const struct {
                const char *params, *bad;
        } refused[] = {
                { "\"vm\":0,\"zz\":1,\"yy\":2", "zz" }, /* the first unknown key */
                { "\"Vm\":0", "Vm" },
                { "", "vm" },
                { "\"device\":1", "vm" },
                { "\"vm\":null", "vm" },
                { "\"vm\":\"0\"", "vm" },
                { "\"vm\":0.0", "vm" },
                { "\"vm\":1e0", "vm" },
                { "\"vm\":-1", "vm" },
                { "\"vm\":8", "vm" },
                { "\"vm\":5", "vm" },         /* the message has two */
                { "\"vm\":99999999999999999999", "vm" },
                { "\"vm\":-99999999999999999999", "vm" },
                { "\"vm\":true", "vm" },
                { "\"vm\":[0]", "vm" },
                { "\"vm\":0,\"device\":0", "device" }, /* taken once */
                { "\"vm\":0,\"path\":1", "path" },
                { "\"vm\":0,\"path\":\"a\\u0000b\"", "path" },
                { "\"vm\":0,\"path\":{}", "path" },
                { "\"vm\":0,\"force\":\"yes\"", "force" },
                { "\"vm\":0,\"force\":1", "force" },
        };
        struct coh_message m;
        struct dispatched d;
        const char *bad;
        int vm_fd;

        message_init(&m);
        vm_fd = m.fds[1];
        bad = dispatch("\"vm\":1,\"device\":0,\"path\":\"/dev/vfio/1\",\"force\":false", &d, &m);
        assert_null(bad);
        assert_int_equal(d.vm, vm_fd);
        assert_true(d.device >= 0);
        assert_int_equal(d.force, 0);
        assert_int_equal(m.fds[0], -1);
        assert_int_equal(m.fds[1], -1);
        coh_params_done(dispatch_table, &d);
        assert_int_equal(d.vm, -EBADF);
        assert_int_equal(fcntl(vm_fd, F_GETFD), -1); /* closed */
        message_done(&m);

        /* Optional ones absent or null: their defaults. */
        message_init(&m);
        assert_null(dispatch("\"vm\":0,\"device\":null,\"path\":null", &d, &m));
        assert_true(d.vm >= 0);
        assert_int_equal(d.device, -EBADF);
        assert_null(d.path);
        assert_int_equal(d.force, -1);
        coh_params_done(dispatch_table, &d);
        message_done(&m);

        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                message_init(&m);
                vm_fd = m.fds[0];
                bad = dispatch(refused[i].params, &d, &m);
                if (!bad || strcmp(bad, refused[i].bad) != 0)
                        fail_msg("{%s}: bad %s, expected %s", refused[i].params, bad ?: "(none)", refused[i].bad);
                /* A descriptor taken before the fault is closed again, not handed back. */
                if (m.fds[0] < 0)
                        assert_int_equal(fcntl(vm_fd, F_GETFD), -1);
                message_done(&m);
        }
}

static void test_reply_valid(void **state) {
        struct coh_reply r;

        assert_int_equal(coh_reply_parse("{}", &r), 0);
        assert_null(r.error);
        assert_false(r.continues);
        assert_non_null(r.parameters);
        assert_int_equal(json_object_object_length(r.parameters), 0);
        coh_reply_done(&r);

        assert_int_equal(coh_reply_parse("{\"parameters\":null,\"continues\":false}", &r), 0);
        assert_int_equal(json_object_object_length(r.parameters), 0);
        coh_reply_done(&r);

        assert_int_equal(coh_reply_parse("{\"parameters\":{\"grant\":\"g1\",\"n\":[1,2]},\"continues\":true}", &r), 0);
        assert_null(r.error);
        assert_true(r.continues);
        assert_json_equal(r.parameters, "{\"grant\":\"g1\",\"n\":[1,2]}");
        coh_reply_done(&r);

        assert_int_equal(coh_reply_parse("{\"error\":\"org.varlink.service.InvalidParameter\","
                                         "\"parameters\":{\"parameter\":\"vm\"}}", &r), 0);
        assert_string_equal(r.error, "org.varlink.service.InvalidParameter");
        assert_false(r.continues);
        assert_json_equal(r.parameters, "{\"parameter\":\"vm\"}");
        coh_reply_done(&r);

        assert_int_equal(coh_reply_parse("{\"error\":\"io.coherencyd.Broker.NoSuchGrant\"}", &r), 0);
        assert_string_equal(r.error, "io.coherencyd.Broker.NoSuchGrant");
        assert_int_equal(json_object_object_length(r.parameters), 0);
        coh_reply_done(&r);
        assert_null(r.root);
}

static void test_reply_invalid(void **state) {
        static const char *const bad[] = {
                "",
                "[]",
                "null",
                "{}}",
                "{} {}",
                "{\"method\":\"a.B\"}",
                "{\"parameters\":[]}",
                "{\"parameters\":1}",
                "{\"continues\":null}",
                "{\"continues\":\"yes\"}",
                "{\"continues\":1}",
                "{\"error\":null}",
                "{\"error\":1}",
                "{\"error\":\"\"}",
                "{\"error\":\"NoSuchGrant\"}",
                "{\"error\":\"a.noSuchGrant\"}",
                "{\"error\":\"a..B\"}",
                "{\"error\":\"a.B\\u0000\"}",
                "{\"error\":\"a.B\",\"continues\":true}",
                "{\"error\":\"a.B\",\"more\":true}",
                "{\"oneway\":true}",
                "{\"parameters\":{},\"extra\":{}}",
                "{\"parameters\":{\"x\":Infinity}}",
        };
        struct coh_reply r;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int k = coh_reply_parse(bad[i], &r);

                if (k != -EBADMSG)
                        fail_msg("accepted or wrong error %d: %s", k, bad[i]);
                assert_null(r.root);
                coh_reply_done(&r);

                k = coh_reply_read(bad[i], &r);
                if (k != -EBADMSG)
                        fail_msg("read accepted or wrong error %d: %s", k, bad[i]);
                assert_null(r.storage);
                assert_null(r.params);
                coh_reply_done(&r);
        }
}

/* coh_reply_read(): what libcoherency's typed calls read their replies with. */
static void test_reply_read(void **state) {
        static const char *const refused[] = {
                /* Where json-c was laxer (call-parse.c), at any depth now that all is kept. */
                "{\"parameters\":{\"facts\":{\"slot\":\"a\",\"slot\":\"b\"}}}",
                "{\"parameters\":{\"a\\u0000b\":1}}",
                "{\"parameters\":{\"n\":01}}",
                "{\"continues\":false,\"continues\":true}",
                /* Cut short: more values begun than the text's length allows whole ones. */
                "{\"p\":{\"x\":[[[[[[[[[[[[[[[[[[[[]]]]]",
        };
        const struct coh_json *p, *v, *d;
        struct coh_reply r;

        assert_int_equal(coh_reply_read("{}", &r), 0);
        assert_null(r.error);
        assert_false(r.continues);
        assert_int_equal(r.params->type, COH_JSON_OBJECT);
        assert_int_equal(r.params->n, 0);
        assert_null(r.parameters);
        coh_reply_done(&r);

        assert_int_equal(coh_reply_read("{\"parameters\":null,\"continues\":true}", &r), 0);
        assert_true(r.continues);
        assert_int_equal(r.params->n, 0);
        coh_reply_done(&r);

        assert_int_equal(coh_reply_read(" {\"parameters\": {\"s\": \"a\\u0000b\\u00e9\", \"i\": -42, "
                                        "\"big\": 9223372036854775808, \"f\": 1.5, \"t\": true, \"z\": null, "
                                        "\"facts\": {\"devices\": [{\"slot\": \"0000:00:01.0\"}, [], 7]}}} ", &r), 0);
        p = r.params;
        assert_int_equal(p->n, 7);
        v = coh_json_member(p, "s");
        assert_int_equal(v->type, COH_JSON_STRING);
        assert_int_equal(v->n, 5);
        assert_memory_equal(v->string, "a\0b\xc3\xa9", 6);
        v = coh_json_member(p, "i");
        assert_int_equal(v->type, COH_JSON_INT);
        assert_int_equal(v->integer, -42);
        assert_int_equal(coh_json_member(p, "big")->type, COH_JSON_NUMBER);
        assert_int_equal(coh_json_member(p, "f")->type, COH_JSON_NUMBER);
        assert_true(coh_json_member(p, "t")->boolean);
        assert_int_equal(coh_json_member(p, "z")->type, COH_JSON_NULL);
        assert_null(coh_json_member(p, "absent"));
        /* From a member on, round to the one before it. */
        v = coh_json_member(p, "t");
        assert_ptr_equal(coh_json_member_from(p, v, "z"), v->next);
        assert_ptr_equal(coh_json_member_from(p, v, "s"), p->first);
        assert_ptr_equal(coh_json_member_from(p, v, "f"), coh_json_member(p, "f"));
        assert_null(coh_json_member_from(p, v, "absent"));
        assert_null(coh_json_member(coh_json_member(p, "i"), "i"));
        d = coh_json_member(coh_json_member(p, "facts"), "devices");
        assert_int_equal(d->type, COH_JSON_ARRAY);
        assert_int_equal(d->n, 3);
        assert_string_equal(coh_json_member(d->first, "slot")->string, "0000:00:01.0");
        assert_int_equal(d->first->next->type, COH_JSON_ARRAY);
        assert_int_equal(d->first->next->next->integer, 7);
        assert_null(d->first->next->next->next);
        coh_reply_done(&r);

        assert_int_equal(coh_reply_read("{\"error\":\"io.coherencyd.Broker.NoSuchGrant\",\"parameters\":{\"grant\":\"g\"}}",
                                        &r), 0);
        assert_string_equal(r.error, "io.coherencyd.Broker.NoSuchGrant");
        assert_string_equal(coh_json_member(r.params, "grant")->string, "g");
        coh_reply_done(&r);
        assert_null(r.storage);

        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                int k = coh_reply_read(refused[i], &r);

                if (k != -EBADMSG)
                        fail_msg("accepted or wrong error %d: %s", k, refused[i]);
                assert_null(r.storage);
        }
}

static void test_format(void **state) {
        struct coh_json_writer w;
        struct coh_reply r;
        struct coh_call c;
        char *s, *t;

        s = coh_call_format("io.coherencyd.Broker.Probe", parse_json("{\"device\":0,\"path\":\"/dev/vfio/1\"}"),
                            false, false);
        assert_non_null(s);
        /* Plain, and slashes left alone. */
        assert_string_equal(s, "{\"method\":\"io.coherencyd.Broker.Probe\","
                               "\"parameters\":{\"device\":0,\"path\":\"/dev/vfio/1\"}}");
        assert_int_equal(coh_call_parse(s, &c), 0);
        assert_string_equal(c.method, "io.coherencyd.Broker.Probe");
        assert_int_equal(c.n_params, 2);
        assert_param_int(&c, 0, "device", 0);
        assert_param_string(&c, 1, "path", "/dev/vfio/1");
        assert_false(c.more || c.oneway);
        coh_call_done(&c);
        free(s);

        s = coh_call_format("io.coherencyd.Manager.Monitor", NULL, true, false);
        assert_string_equal(s, "{\"method\":\"io.coherencyd.Manager.Monitor\",\"parameters\":{},\"more\":true}");
        assert_int_equal(coh_call_parse(s, &c), 0);
        assert_true(c.more);
        coh_call_done(&c);
        free(s);

        s = coh_call_format("a.B", NULL, false, true);
        assert_string_equal(s, "{\"method\":\"a.B\",\"parameters\":{},\"oneway\":true}");
        free(s);

        /* Written without a json_object (the client's hot calls): the same text. */
        coh_call_begin(&w, "io.coherencyd.Broker.ReleaseGrant");
        coh_jw_key(&w, "grant");
        coh_jw_string(&w, "g\"1/\n");
        coh_jw_key(&w, "vm");
        coh_jw_int(&w, 0);
        s = coh_call_end(&w, false, false);
        assert_string_equal(s, "{\"method\":\"io.coherencyd.Broker.ReleaseGrant\","
                               "\"parameters\":{\"grant\":\"g\\\"1/\\n\",\"vm\":0}}");
        t = coh_call_format("io.coherencyd.Broker.ReleaseGrant", parse_json("{\"grant\":\"g\\\"1/\\n\",\"vm\":0}"),
                            false, false);
        assert_string_equal(s, t);
        free(t);
        free(s);
        assert_null(w.buf);
        coh_call_begin(&w, "a.B");
        s = coh_call_end(&w, true, true);
        assert_string_equal(s, "{\"method\":\"a.B\",\"parameters\":{},\"more\":true,\"oneway\":true}");
        free(s);

        s = coh_reply_format(NULL, false);
        assert_string_equal(s, "{\"parameters\":{}}");
        free(s);

        s = coh_reply_format(parse_json("{\"decision\":\"granted\",\"facts\":{\"slot\":\"0000:01:00.0\"}}"), true);
        assert_string_equal(s, "{\"parameters\":{\"decision\":\"granted\",\"facts\":{\"slot\":\"0000:01:00.0\"}},"
                               "\"continues\":true}");
        assert_int_equal(coh_reply_parse(s, &r), 0);
        assert_null(r.error);
        assert_true(r.continues);
        assert_json_equal(r.parameters, "{\"decision\":\"granted\",\"facts\":{\"slot\":\"0000:01:00.0\"}}");
        coh_reply_done(&r);
        free(s);

        s = coh_error_format("io.coherencyd.Broker.InvalidFileDescriptor",
                             parse_json("{\"parameter\":\"vm\",\"expected\":\"kvm-vm\",\"got\":\"memfd\"}"));
        assert_string_equal(s, "{\"error\":\"io.coherencyd.Broker.InvalidFileDescriptor\","
                               "\"parameters\":{\"parameter\":\"vm\",\"expected\":\"kvm-vm\",\"got\":\"memfd\"}}");
        assert_int_equal(coh_reply_parse(s, &r), 0);
        assert_string_equal(r.error, "io.coherencyd.Broker.InvalidFileDescriptor");
        assert_false(r.continues);
        coh_reply_done(&r);
        free(s);

        s = coh_error_format("org.varlink.service.MethodNotFound", NULL);
        assert_string_equal(s, "{\"error\":\"org.varlink.service.MethodNotFound\",\"parameters\":{}}");
        free(s);

        /* Strings with quotes, controls and non-ASCII survive the round trip. */
        s = coh_reply_format(parse_json("{\"s\":\"q\\\"\\\\\\n\\t\\u0001\xc3\xa9\"}"), false);
        assert_non_null(s);
        assert_int_equal(coh_reply_parse(s, &r), 0);
        assert_json_equal(r.parameters, "{\"s\":\"q\\\"\\\\\\n\\t\\u0001\xc3\xa9\"}");
        coh_reply_done(&r);
        free(s);

        /* Parameters must be an object; the argument is consumed all the same. */
        errno = 0;
        assert_null(coh_reply_format(parse_json("[1]"), false));
        assert_int_equal(errno, EINVAL);
        assert_null(coh_call_format("a.B", parse_json("\"x\""), false, false));
        assert_null(coh_error_format("a.B", parse_json("7")));
}

static void test_json_get(void **state) {
        json_object *o = parse_json("{\"s\":\"str\",\"nul\":\"a\\u0000b\",\"t\":true,\"f\":false,"
                                    "\"i\":42,\"neg\":-7,\"big\":9223372036854775807,"
                                    "\"huge\":9223372036854775808,\"d\":1.0,\"e\":1e3,\"n\":null,"
                                    "\"is\":\"42\",\"arr\":[],\"obj\":{}}");
        const char *s;
        int64_t i;
        bool b;

        assert_int_equal(coh_json_get_string(o, "s", &s), 0);
        assert_string_equal(s, "str");
        assert_int_equal(coh_json_get_string(o, "absent", &s), -ENOENT);
        assert_int_equal(coh_json_get_string(o, "n", &s), -ENOENT);
        assert_int_equal(coh_json_get_string(o, "i", &s), -EINVAL);
        assert_int_equal(coh_json_get_string(o, "t", &s), -EINVAL);
        assert_int_equal(coh_json_get_string(o, "arr", &s), -EINVAL);
        assert_int_equal(coh_json_get_string(o, "nul", &s), -EINVAL);

        assert_int_equal(coh_json_get_bool(o, "t", &b), 0);
        assert_true(b);
        assert_int_equal(coh_json_get_bool(o, "f", &b), 0);
        assert_false(b);
        assert_int_equal(coh_json_get_bool(o, "absent", &b), -ENOENT);
        assert_int_equal(coh_json_get_bool(o, "n", &b), -ENOENT);
        assert_int_equal(coh_json_get_bool(o, "i", &b), -EINVAL);
        assert_int_equal(coh_json_get_bool(o, "s", &b), -EINVAL);

        assert_int_equal(coh_json_get_int64(o, "i", 0, 100, &i), 0);
        assert_int_equal(i, 42);
        assert_int_equal(coh_json_get_int64(o, "i", 42, 42, &i), 0);
        assert_int_equal(coh_json_get_int64(o, "i", 43, 100, &i), -EINVAL);
        assert_int_equal(coh_json_get_int64(o, "i", 0, 41, &i), -EINVAL);
        assert_int_equal(coh_json_get_int64(o, "neg", 0, 100, &i), -EINVAL);
        assert_int_equal(coh_json_get_int64(o, "neg", -10, 0, &i), 0);
        assert_int_equal(i, -7);
        assert_int_equal(coh_json_get_int64(o, "big", INT64_MIN, INT64_MAX, &i), 0);
        assert_true(i == INT64_MAX);
        assert_int_equal(coh_json_get_int64(o, "huge", INT64_MIN, INT64_MAX, &i), -EINVAL);
        assert_int_equal(coh_json_get_int64(o, "d", INT64_MIN, INT64_MAX, &i), -EINVAL);
        assert_int_equal(coh_json_get_int64(o, "e", INT64_MIN, INT64_MAX, &i), -EINVAL);
        assert_int_equal(coh_json_get_int64(o, "is", INT64_MIN, INT64_MAX, &i), -EINVAL);
        assert_int_equal(coh_json_get_int64(o, "t", INT64_MIN, INT64_MAX, &i), -EINVAL);
        assert_int_equal(coh_json_get_int64(o, "n", INT64_MIN, INT64_MAX, &i), -ENOENT);
        assert_int_equal(coh_json_get_int64(o, "absent", INT64_MIN, INT64_MAX, &i), -ENOENT);

        /* Not an object at all. */
        assert_int_equal(coh_json_get_string(json_object_object_get(o, "arr"), "s", &s), -EINVAL);
        assert_int_equal(coh_json_get_bool(NULL, "t", &b), -EINVAL);

        json_object_put(o);
}

static void test_json_check_keys(void **state) {
        static const char *const allowed[] = { "vm", "device", "iommu", NULL };
        static const char *const none[] = { NULL };
        json_object *o = parse_json("{\"vm\":0,\"device\":1}");
        const char *bad = "unset";

        assert_int_equal(coh_json_check_keys(o, allowed, &bad), 0);
        assert_null(bad);
        assert_int_equal(coh_json_check_keys(o, none, &bad), -EINVAL);
        assert_non_null(bad);
        assert_int_equal(coh_json_check_keys(o, allowed, NULL), 0);
        json_object_put(o);

        o = parse_json("{\"vm\":0,\"Device\":1}");
        assert_int_equal(coh_json_check_keys(o, allowed, &bad), -EINVAL);
        assert_string_equal(bad, "Device");
        assert_int_equal(coh_json_check_keys(o, allowed, NULL), -EINVAL);
        json_object_put(o);

        o = parse_json("{}");
        assert_int_equal(coh_json_check_keys(o, none, &bad), 0);
        json_object_put(o);

        o = parse_json("[]");
        assert_int_equal(coh_json_check_keys(o, allowed, &bad), -EINVAL);
        assert_null(bad);
        json_object_put(o);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_call_valid),
                cmocka_unit_test(test_call_invalid),
                cmocka_unit_test(test_call_depth),
                cmocka_unit_test(test_call_strict),
                cmocka_unit_test(test_call_values),
                cmocka_unit_test(test_params_dispatch),
                cmocka_unit_test(test_reply_valid),
                cmocka_unit_test(test_reply_invalid),
                cmocka_unit_test(test_reply_read),
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_json_get),
                cmocka_unit_test(test_json_check_keys),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
