# Framing and envelope: they need only coh_proto, so they build while the daemon does not.
coh_unit_test(test-frame SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-frame.c LIBS coh_proto)
coh_unit_test(test-call SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-call.c LIBS coh_proto)

coh_fuzz_target(fuzz-frame ${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz-frame.c coh_proto)
# fuzz-call compares the daemon's call parser with the json-c one it replaced (call-reference.c).
coh_fuzz_target(fuzz-call "${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz-call.c;${CMAKE_CURRENT_LIST_DIR}/../fuzz/call-reference.c" coh_proto)
coh_unit_test(test-json-build SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-json-build.c LIBS coh_proto)
coh_unit_test(test-json-writer SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-json-writer.c LIBS coh_proto)
coh_fuzz_target(fuzz-json-writer ${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz-json-writer.c coh_proto)
coh_unit_test(test-strbuf SOURCES ${CMAKE_CURRENT_LIST_DIR}/test-strbuf.c LIBS coh_proto)
# fuzz-reply compares the client's reply reader with json-c's, records included (call-reference.c for what may differ).
coh_fuzz_target(fuzz-reply "${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz-reply.c;${CMAKE_CURRENT_LIST_DIR}/../fuzz/call-reference.c" coh_proto)
