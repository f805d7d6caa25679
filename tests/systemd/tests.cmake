# The systemd tier (label "systemd"): a real systemd as PID 1 under systemd-nspawn, with the
# project's own coherencyd.socket and coherencyd.service (hardening included) installed.
# One boot (systemd-boot, the fixture) runs every check; each check is asserted by its own
# test. Needs root; skipped (77) only when nspawn cannot run at all. See README.md here.

if(TARGET coherency)
  add_executable(coh-test-client ${CMAKE_CURRENT_LIST_DIR}/coh-test-client.c)
  target_link_libraries(coh-test-client PRIVATE coherency coh_sim_client)
  set_target_properties(coh-test-client PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests/systemd)
endif()

set(COH_SYSTEMD_TIER_OUT ${CMAKE_BINARY_DIR}/tests/systemd/out)

add_test(NAME systemd-boot
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/run-tier --src ${PROJECT_SOURCE_DIR} --build ${CMAKE_BINARY_DIR}
                 --out ${COH_SYSTEMD_TIER_OUT}
                 --sbindir ${CMAKE_INSTALL_FULL_SBINDIR} --bindir ${CMAKE_INSTALL_FULL_BINDIR})
set_tests_properties(systemd-boot PROPERTIES LABELS systemd FIXTURES_SETUP coh_systemd_boot
                     SKIP_RETURN_CODE 77 TIMEOUT 360 RUN_SERIAL TRUE)

foreach(check activation sandbox reload restart restart-ending restart-limits reexec sigkill sigkill-ending watchdog idle-exit linux-platform
              journal journal-host)
  add_test(NAME systemd-${check} COMMAND ${CMAKE_CURRENT_LIST_DIR}/check-result ${COH_SYSTEMD_TIER_OUT} ${check})
  set_tests_properties(systemd-${check} PROPERTIES LABELS systemd FIXTURES_REQUIRED coh_systemd_boot
                       SKIP_RETURN_CODE 77 TIMEOUT 30)
endforeach()

# The unit's sandboxing, as systemd judges it: overall exposure at most 2.0 (threshold 20).
add_test(NAME systemd-security
         COMMAND systemd-analyze security --offline=yes --threshold=20 ${CMAKE_BINARY_DIR}/systemd/coherencyd.service)
set_tests_properties(systemd-security PROPERTIES LABELS systemd TIMEOUT 60)
