# Integration tier: the built coherencyd on the simulated platform, driven over its real
# socket by cmocka programs, each under its own private journald (tests/lib/with-journald).

# Needs the daemon, the client library and coherencyctl; while another module is mid-way
# (a missing source file), leave these tests out rather than break the build.
if(TARGET coherencyd AND TARGET coherency AND TARGET coherencyctl)
  find_package(Threads REQUIRED)
  add_library(coh_integration_harness STATIC ${CMAKE_CURRENT_LIST_DIR}/harness.c)
  target_include_directories(coh_integration_harness PUBLIC ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(coh_integration_harness PUBLIC coh_proto coh_sim_client PkgConfig::JSONC Threads::Threads ${CMOCKA_LIBRARY})

  # coh_integration_test(NAME): tests/integration/NAME.c, run as root under with-journald,
  # told where the daemon, coherencyctl and the source tree (demo/) are.
  function(coh_integration_test name)
    add_executable(${name} ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/${name}.c)
    target_link_libraries(${name} PRIVATE coh_integration_harness coherency)
    # The daemon and coherencyctl are run, not linked: build them before the test runs.
    add_dependencies(${name} coherencyd coherencyctl)
    add_test(NAME ${name} COMMAND ${PROJECT_SOURCE_DIR}/tests/lib/with-journald $<TARGET_FILE:${name}>)
    # 77: with-journald cannot run here (not root, no journald).
    set_tests_properties(${name} PROPERTIES
      LABELS integration
      SKIP_RETURN_CODE 77
      TIMEOUT 120
      ENVIRONMENT "COH_TEST_COHERENCYD=$<TARGET_FILE:coherencyd>;COH_TEST_COHERENCYCTL=$<TARGET_FILE:coherencyctl>;COH_TEST_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
    # The same program with the daemon under memcheck (label "valgrind", run in the plain
    # build: valgrind and ASan do not mix). Any invalid access or definite/indirect leak
    # makes the daemon exit 99, which the harness fails on. The harness runs a wrapped
    # daemon with --no-sandbox: valgrind 3.19 cannot run seccomp(2). Left out: the tests
    # where the daemon kills a VMM, since valgrind 3.19 does not know pidfd_send_signal(2)
    # either (ENOSYS), and the daemon kills through a pidfd only.
    if(COH_VALGRIND AND NOT COH_SANITIZE)
      add_test(NAME ${name}-valgrind COMMAND ${PROJECT_SOURCE_DIR}/tests/lib/with-journald $<TARGET_FILE:${name}>)
      set_tests_properties(${name}-valgrind PROPERTIES
        LABELS valgrind
        SKIP_RETURN_CODE 77
        TIMEOUT 900
        ENVIRONMENT "COH_TEST_COHERENCYD=$<TARGET_FILE:coherencyd>;COH_TEST_COHERENCYCTL=$<TARGET_FILE:coherencyctl>;COH_TEST_SOURCE_DIR=${PROJECT_SOURCE_DIR};COH_TEST_SKIP=*kills_the_vmm*;COH_TEST_DAEMON_WRAPPER=${COH_VALGRIND} --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --track-fds=no")
    endif()
  endfunction()

  find_program(COH_VALGRIND valgrind)

  coh_integration_test(test-integ-decisions)
  coh_integration_test(test-integ-grants)
  coh_integration_test(test-integ-access)
  coh_integration_test(test-integ-bad-input)
  coh_integration_test(test-integ-policy)
  coh_integration_test(test-integ-service)
  coh_integration_test(test-integ-client)
  coh_integration_test(test-integ-journal-fold)
  coh_integration_test(test-integ-identity)
  coh_integration_test(test-integ-limits)
endif()
