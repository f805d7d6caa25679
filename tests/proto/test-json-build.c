/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* coh_json_add/coh_json_append: an allocation failure is never stored as null, and is seen at the top. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "json-util.h"

static void test_add_builds(void **state) {
        json_object *o = json_object_new_object();
        assert_int_equal(coh_json_add(o, "a", json_object_new_int(1)), 0);
        assert_false(coh_json_failed(o));
        assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), "{\"a\":1}");
        json_object_put(o);
}

static void test_failed_value_is_not_stored_and_marks(void **state) {
        json_object *o = json_object_new_object();
        /* NULL stands for a json_object_new_*() that failed. */
        assert_int_equal(coh_json_add(o, "a", NULL), -ENOMEM);
        assert_true(coh_json_failed(o));
        assert_false(json_object_object_get_ex(o, "a", NULL));
        json_object_put(o);
}

static void test_failure_propagates_up(void **state) {
        json_object *top = json_object_new_object(), *list = json_object_new_array(), *inner = json_object_new_object();
        assert_int_equal(coh_json_add(inner, "x", NULL), -ENOMEM);
        assert_int_equal(coh_json_append(list, inner), -ENOMEM); /* taken and freed */
        assert_true(coh_json_failed(list));
        assert_int_equal(json_object_array_length(list), 0);
        assert_int_equal(coh_json_add(top, "list", list), -ENOMEM);
        assert_true(coh_json_failed(top));
        json_object_put(top);
}

static void test_null_container(void **state) {
        assert_true(coh_json_failed(NULL));
        assert_int_equal(coh_json_add(NULL, "a", json_object_new_int(1)), -ENOMEM); /* value freed: no leak under ASan */
        assert_int_equal(coh_json_append(NULL, json_object_new_int(1)), -ENOMEM);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_add_builds),
                cmocka_unit_test(test_failed_value_is_not_stored_and_marks),
                cmocka_unit_test(test_failure_propagates_up),
                cmocka_unit_test(test_null_container),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
