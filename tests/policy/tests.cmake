# Policy and decision table: pure functions, tested without any I/O but the policy files.
coh_unit_test(test-decision SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-decision.c LIBS coh_kernel)
coh_unit_test(test-policy SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-policy.c LIBS coh_kernel)
coh_fuzz_target(fuzz-policy ${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz-policy.c coh_kernel)

# What `coherencyd --check-policy` prints, as an operator runs it (no root, no daemon).
add_test(NAME policy-check-output
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/check-policy-output $<TARGET_FILE:coherencyd>)
# The policy examples of README.md and coherencyd.conf(5), as printed.
add_test(NAME policy-doc-examples
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/check-examples $<TARGET_FILE:coherencyd>
                 ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/man/coherencyd.conf.5)
set_tests_properties(policy-check-output policy-doc-examples PROPERTIES LABELS unit)
