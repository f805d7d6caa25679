# Policy and decision table. They are built from their own sources rather than
# coh_core, so that they build and test on their own, whatever else is in daemon/.
add_library(coh_policy_only STATIC
  ${PROJECT_SOURCE_DIR}/daemon/decision.c
  ${PROJECT_SOURCE_DIR}/daemon/ini.c
  ${PROJECT_SOURCE_DIR}/daemon/policy.c)
target_include_directories(coh_policy_only PUBLIC ${PROJECT_SOURCE_DIR}/daemon)
target_link_libraries(coh_policy_only PUBLIC PkgConfig::JSONC)

coh_unit_test(test-decision SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-decision.c LIBS coh_policy_only)
coh_unit_test(test-policy SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-policy.c LIBS coh_policy_only)
coh_fuzz_target(fuzz-policy ${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz-policy.c coh_policy_only)

if(COH_FUZZ)
  # coh_fuzz_target instruments only the harness; without coverage from the code
  # under test libFuzzer would be fuzzing blind.
  target_compile_options(coh_policy_only PRIVATE -fsanitize=fuzzer-no-link,address,undefined)
  target_link_options(coh_policy_only INTERFACE -fsanitize=address,undefined)
endif()
