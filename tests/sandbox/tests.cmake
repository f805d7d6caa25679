# Privilege separation and the seccomp filters (daemon/sandbox.c, priv.c, platform-priv.c;
# README "Processes"). Label "unit"; what needs root (the users, the capabilities) skips
# without it.
#
# test-sandbox: in a forked child that entered a process's sandbox, a system call outside
#   that process's allow-list is fatal (SIGSYS), its own calls work, and what it keeps.
# test-priv: the privileged helper over the simulated platform, its own sandbox on: custody
#   through it, and every request it must refuse (sizes, descriptors, slots, kills).
# test-privsep-daemon: the built coherencyd: its two processes, their users, capabilities
#   and descriptors, and that the daemon stops (failing) when its helper is gone.
coh_unit_test(test-sandbox SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-sandbox.c LIBS coh_kernel)
coh_unit_test(test-priv SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-priv.c LIBS coh_kernel)
set_tests_properties(test-priv PROPERTIES ENVIRONMENT "COH_TEST_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
if(TARGET coherencyd)
  coh_unit_test(test-privsep-daemon SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-privsep-daemon.c LIBS coh_kernel)
  add_dependencies(test-privsep-daemon coherencyd)
  set_tests_properties(test-privsep-daemon PROPERTIES
    ENVIRONMENT "COH_TEST_COHERENCYD=$<TARGET_FILE:coherencyd>;COH_TEST_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endif()
