/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "call.h"
#include "json-util.h"

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
                assert_non_null(c.parameters);
                assert_true(json_object_is_type(c.parameters, json_type_object));
                assert_int_equal(json_object_object_length(c.parameters), 0);
                assert_false(c.oneway || c.more || c.upgrade);
                coh_call_done(&c);
                assert_null(c.root);
        }

        assert_int_equal(coh_call_parse("{\"method\":\"io.coherencyd.Broker.RequestGrant\","
                                        "\"parameters\":{\"vm\":0,\"device\":1,\"iommu\":null},"
                                        "\"more\":true,\"oneway\":false}", &c), 0);
        assert_string_equal(c.method, "io.coherencyd.Broker.RequestGrant");
        assert_json_equal(c.parameters, "{\"vm\":0,\"device\":1,\"iommu\":null}");
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
                assert_null(c.root);
                assert_null(c.method);
                assert_null(c.parameters);
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
        }
}

static void test_format(void **state) {
        struct coh_reply r;
        struct coh_call c;
        char *s;

        s = coh_call_format("io.coherencyd.Broker.Probe", parse_json("{\"device\":0,\"path\":\"/dev/vfio/1\"}"),
                            false, false);
        assert_non_null(s);
        /* Plain, and slashes left alone. */
        assert_string_equal(s, "{\"method\":\"io.coherencyd.Broker.Probe\","
                               "\"parameters\":{\"device\":0,\"path\":\"/dev/vfio/1\"}}");
        assert_int_equal(coh_call_parse(s, &c), 0);
        assert_string_equal(c.method, "io.coherencyd.Broker.Probe");
        assert_json_equal(c.parameters, "{\"device\":0,\"path\":\"/dev/vfio/1\"}");
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
                cmocka_unit_test(test_reply_valid),
                cmocka_unit_test(test_reply_invalid),
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_json_get),
                cmocka_unit_test(test_json_check_keys),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
