# Grants and VMs, below the methods: the lookups that must stay right at any number of them.
coh_unit_test(test-grants SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-grants.c LIBS coh_state)
