# Below the methods: grants' and VMs' lookups, which must stay right at any number of them,
# and device facts kept between requests until a uevent.
coh_unit_test(test-grants SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-grants.c LIBS coh_state)
# Device facts kept between requests and dropped on uevents (daemon/facts-cache.c).
coh_unit_test(test-facts-cache SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-facts-cache.c LIBS coh_kernel)
set_tests_properties(test-facts-cache PROPERTIES ENVIRONMENT "COH_TEST_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
coh_fuzz_target(fuzz-uevent ${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz-uevent.c coh_kernel)
# The policy's results remembered per device facts and peer (daemon/policy-memo.c).
coh_unit_test(test-policy-memo SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-policy-memo.c LIBS coh_kernel)
# Messages to the service manager on one kept socket (daemon/notify.c), read by a real datagram socket.
coh_unit_test(test-notify SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-notify.c LIBS coh_state)
