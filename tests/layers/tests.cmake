# Calls go down only (daemon/CMakeLists.txt): each layer links whole, with only
# the layers below it, or the build fails. Running the result proves nothing
# more, so the test is the build; ctest just reports that it happened.
foreach(layer kernel state server methods manager)
  add_executable(link-check-${layer} ${CMAKE_CURRENT_LIST_DIR}/link-check.c)
  target_link_libraries(link-check-${layer} PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,coh_${layer}>")
  add_test(NAME link-check-${layer} COMMAND link-check-${layer})
  set_tests_properties(link-check-${layer} PROPERTIES LABELS "unit;layers")
endforeach()
