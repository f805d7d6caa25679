# coherencyctl as an operator meets it (label "ctl"): the built coherencyctl run against a
# real coherencyd on the simulated platform, judged by its output, its JSON and its exit
# statuses, under a private journald as the integration tier is. Uses the integration
# tier's harness (tests/integration/harness.h), which its fragment builds (the same
# condition guards both). Not "vm" or "systemd": tools/run-tests runs it in the ASan build.

if(TARGET coherencyd AND TARGET coherency AND TARGET coherencyctl)
  add_executable(test-ctl ${CMAKE_CURRENT_LIST_DIR}/test-ctl.c)
  target_link_libraries(test-ctl PRIVATE coh_integration_harness)
  add_dependencies(test-ctl coherencyd coherencyctl)
  add_test(NAME test-ctl COMMAND ${PROJECT_SOURCE_DIR}/tests/lib/with-journald $<TARGET_FILE:test-ctl>)
  set_tests_properties(test-ctl PROPERTIES
    LABELS ctl
    SKIP_RETURN_CODE 77
    TIMEOUT 240
    ENVIRONMENT "COH_TEST_COHERENCYD=$<TARGET_FILE:coherencyd>;COH_TEST_COHERENCYCTL=$<TARGET_FILE:coherencyctl>;COH_TEST_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endif()
