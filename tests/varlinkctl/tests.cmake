# The varlinkctl tier (labels "systemd" and "varlinkctl"): coherencyd on the simulated
# platform, called by a client nobody here wrote: systemd's varlinkctl from Debian's own
# packages, in minimal Debian roots debootstrapped once into a cache and reused
# (make-root). Trixie's (systemd 257) introspects and calls what needs no descriptor;
# forky's (the first suite with systemd >= 258, --push-fd and --exec) passes the VM and
# the VFIO container and takes the group. Needs root and the Debian archive the host's apt
# uses (for the first run only). "systemd" puts it in tools/run-tests' plain-build run; `ctest
# -L varlinkctl` runs it alone. See README.md here.

set(COH_VARLINKCTL_CACHE "" CACHE PATH
    "Debian roots of the varlinkctl tests (default /var/cache/coherencyd-varlinkctl)")
set(COH_VARLINKCTL_ENV "")
if(COH_VARLINKCTL_CACHE)
  set(COH_VARLINKCTL_ENV "COH_VARLINKCTL_CACHE=${COH_VARLINKCTL_CACHE}")
endif()

add_executable(sim-fds ${CMAKE_CURRENT_LIST_DIR}/sim-fds.c)
target_link_libraries(sim-fds PRIVATE coh_sim_client)
set_target_properties(sim-fds PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests/varlinkctl)

# The roots (fixtures): made once per cache, then only their varlinkctl is checked.
add_test(NAME varlinkctl-root-trixie COMMAND ${CMAKE_CURRENT_LIST_DIR}/make-root trixie 255)
add_test(NAME varlinkctl-root-forky COMMAND ${CMAKE_CURRENT_LIST_DIR}/make-root forky 258 --push-fd --exec)
foreach(suite trixie forky)
  set_tests_properties(varlinkctl-root-${suite} PROPERTIES
    LABELS "systemd;varlinkctl" FIXTURES_SETUP coh_varlinkctl_roots SKIP_RETURN_CODE 77 TIMEOUT 600
    RESOURCE_LOCK coh_varlinkctl_cache ENVIRONMENT "${COH_VARLINKCTL_ENV}")
endforeach()

foreach(check introspect get-info probe request-grant-no-fds request-grant request-grant-bad-fd)
  add_test(NAME varlinkctl-${check}
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/run-check --src ${PROJECT_SOURCE_DIR} --build ${CMAKE_BINARY_DIR}
                   --out ${CMAKE_BINARY_DIR}/tests/varlinkctl/out --version ${PROJECT_VERSION} ${check})
  set_tests_properties(varlinkctl-${check} PROPERTIES
    LABELS "systemd;varlinkctl" FIXTURES_REQUIRED coh_varlinkctl_roots SKIP_RETURN_CODE 77 TIMEOUT 120
    ENVIRONMENT "${COH_VARLINKCTL_ENV}")
endforeach()
