# The package test (labels "package" and "systemd"): builds the Debian packages from a copy
# of the tree with dpkg-buildpackage (package-build, the fixture), then boots systemd under
# systemd-nspawn as the systemd tier does, installs them there, runs a VMM against the
# packaged socket, and removes and purges them (package-install). Needs root, dpkg-dev and
# debhelper (tools/install-deps test). "systemd" puts it in tools/run-tests' plain-build
# run with the systemd tier, and keeps it out of the ASan run; `ctest -L package` runs it
# alone. See README.md here.

set(COH_PACKAGE_OUT ${CMAKE_BINARY_DIR}/tests/package/out)

add_test(NAME package-build
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/build-debs --src ${PROJECT_SOURCE_DIR} --out ${COH_PACKAGE_OUT})
set_tests_properties(package-build PROPERTIES LABELS "package;systemd" FIXTURES_SETUP coh_package_debs
                     SKIP_RETURN_CODE 77 TIMEOUT 600 RUN_SERIAL TRUE)

add_test(NAME package-install
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/run-install --src ${PROJECT_SOURCE_DIR} --out ${COH_PACKAGE_OUT})
set_tests_properties(package-install PROPERTIES LABELS "package;systemd" FIXTURES_REQUIRED coh_package_debs
                     SKIP_RETURN_CODE 77 TIMEOUT 360 RUN_SERIAL TRUE)
