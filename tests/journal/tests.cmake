# daemon/journal.c against a real, private journald (tests/lib/with-journald).

# Not coh_unit_test(): the test runs under the harness, not on its own.
add_executable(test-journal ${CMAKE_CURRENT_LIST_DIR}/test-journal.c)
target_link_libraries(test-journal PRIVATE coh_kernel ${CMOCKA_LIBRARY})
add_test(NAME test-journal
         COMMAND ${PROJECT_SOURCE_DIR}/tests/lib/with-journald $<TARGET_FILE:test-journal>)
# 77: with-journald cannot run here (not root, no journald).
set_tests_properties(test-journal PROPERTIES LABELS "unit;journal" SKIP_RETURN_CODE 77 TIMEOUT 120)
