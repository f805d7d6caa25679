# The vm tier (label "vm"): Debian's own 6.1 and 6.12 kernels under QEMU TCG,
# with an emulated VT-d whose snoop control is on or off and QEMU's edu device
# bound to vfio-pci; KVM runs nested (-cpu max, kvm_amd) so the guest has a
# real /dev/kvm. See tests/vm/README.md. Run alone with `ctest -L vm`.

# The platform layer on its own, so kvm-probe builds statically (no
# libsystemd/libevent in the guest) whatever else is in daemon/.
add_library(coh_platform_only STATIC
  ${PROJECT_SOURCE_DIR}/daemon/platform-linux.c
  ${PROJECT_SOURCE_DIR}/daemon/platform.c
  ${PROJECT_SOURCE_DIR}/daemon/platform-sim.c
  ${PROJECT_SOURCE_DIR}/daemon/facts.c
  ${PROJECT_SOURCE_DIR}/daemon/facts-cache.c
  ${PROJECT_SOURCE_DIR}/proto/strbuf.c)
target_include_directories(coh_platform_only PUBLIC ${PROJECT_SOURCE_DIR}/daemon ${PROJECT_SOURCE_DIR}/proto)

add_executable(kvm-probe ${CMAKE_CURRENT_LIST_DIR}/kvm-probe.c)
target_link_libraries(kvm-probe PRIVATE coh_platform_only)
# Static where possible; the sanitizer runtimes cannot be, and make-initramfs
# copies whatever ldd names instead.
if(NOT COH_SANITIZE)
  target_link_options(kvm-probe PRIVATE -static)
endif()

set(COH_VM_CACHE "" CACHE PATH "Kernel cache of the vm tests (default /var/cache/coherencyd-vm)")
set(COH_VM_ENV "")
if(COH_VM_CACHE)
  set(COH_VM_ENV "COH_VM_CACHE=${COH_VM_CACHE}")
endif()

set(COH_VM_DIR ${CMAKE_CURRENT_LIST_DIR})

# Fetches (once, then from the cache) the kernels and installs QEMU and the
# initramfs tools; exits 77 only when QEMU cannot be installed, and then every
# vm test skips too (run-guest exits 77 without QEMU).
add_test(NAME vm-fetch-kernels COMMAND ${COH_VM_DIR}/fetch-kernels)
set_tests_properties(vm-fetch-kernels PROPERTIES
  LABELS vm FIXTURES_SETUP vm_kernels SKIP_RETURN_CODE 77 TIMEOUT 1200
  RESOURCE_LOCK coh_vm_cache ENVIRONMENT "${COH_VM_ENV}")

# coh_vm_test(NAME KERNEL SNOOP SCRIPT [BIN bin...] [FILE src=dest...] [ARGS arg...]):
# one boot of KERNEL (6.1, 6.12) with intel-iommu snoop-control=SNOOP running
# SCRIPT in the guest; passes when the script exits 0. One QEMU at a time.
function(coh_vm_test name kernel snoop script)
  cmake_parse_arguments(T "" "" "BIN;FILE;ARGS" ${ARGN})
  set(cmd ${COH_VM_DIR}/run-guest --kernel ${kernel} --snoop ${snoop} --script ${script} --timeout 240)
  foreach(b ${T_BIN})
    list(APPEND cmd --bin ${b})
  endforeach()
  foreach(f ${T_FILE})
    list(APPEND cmd --file ${f})
  endforeach()
  add_test(NAME ${name} COMMAND ${cmd} -- ${T_ARGS})
  set_tests_properties(${name} PROPERTIES
    LABELS vm FIXTURES_REQUIRED vm_kernels SKIP_RETURN_CODE 77 TIMEOUT 300
    RESOURCE_LOCK coh_vm_qemu ENVIRONMENT "${COH_VM_ENV}"
    FAIL_REGULAR_EXPRESSION "FAIL [a-z0-9_.-]+: |COH-INIT-ERROR")
endfunction()

# kvm-probe asserts, among the rest, the oracle: adding the edu group to a
# kvm-vfio device calls kvm_arch_register_noncoherent_dma only without snoop
# control, FILE_DEL and the VMM's death unregister; and the custody sequences
# through the platform ops with an unprivileged (uid 65534) VMM child.
foreach(kernel 6.1 6.12)
  foreach(snoop on off)
    coh_vm_test(vm-kvm-probe-${kernel}-snoop-${snoop} ${kernel} ${snoop}
      ${COH_VM_DIR}/probe-test.sh BIN $<TARGET_FILE:kvm-probe> ARGS ${snoop})
  endforeach()
endforeach()

# ---- The real daemon on the real kernel --------------------------------------
#
# vmm-client (root: the oracle, the operator, SIGKILL) forks unprivileged
# VMMs (uid 65534, on libcoherency) that get the edu device's group from
# coherencyd --platform linux (sandboxed) in the guest, add it to KVM
# themselves, and end their grants every way there is: release, disconnect,
# revoke, SIGKILL, RevokeKill=. daemon-test.sh starts the daemon once per
# policy mode. See tests/vm/README.md.
if(TARGET coherency AND TARGET coherencyd)
  add_executable(vmm-client ${CMAKE_CURRENT_LIST_DIR}/vmm-client.c)
  target_link_libraries(vmm-client PRIVATE coherency)

  # One boot per kernel and snoop-control setting runs all three modes, the
  # daemon restarted with a new coherencyd.conf between them: 4 boots instead
  # of 12 keeps the tier within a few minutes on 2 shared cores. Each line of
  # the output names its mode ("[automatic] CHECK probe.decision ok ...").
  foreach(kernel 6.1 6.12)
    foreach(snoop on off)
      set(name vm-daemon-${kernel}-snoop-${snoop})
      coh_vm_test(${name} ${kernel} ${snoop} ${COH_VM_DIR}/daemon-test.sh
        BIN $<TARGET_FILE:coherencyd> $<TARGET_FILE:vmm-client>
        ARGS ${snoop} enable automatic force-disable)
      set_tests_properties(${name} PROPERTIES
        FAIL_REGULAR_EXPRESSION "CHECK [^ ]+ FAIL|COH-INIT-ERROR")
    endforeach()
  endforeach()
endif()
