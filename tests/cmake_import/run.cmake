# ctest driver: install engram from BUILD_DIR into WORK_DIR/prefix (find_package modes), then
# configure, build and run the consumer project. Arguments: SOURCE_DIR BUILD_DIR WORK_DIR MODE
# [COMPONENTS: comma-separated, required and linked]. MODE find_package_hidden_deps hides
# pkg-config (so utf8proc, xxHash, ... are not found) and expects configuration to fail, naming
# the missing dependency of each requested component.
file(REMOVE_RECURSE ${WORK_DIR})
string(REPLACE "," ";" components "${COMPONENTS}")
set(args "-DENGRAM_CONSUMER_COMPONENTS=${components}")
if(MODE STREQUAL "add_subdirectory")
  list(APPEND args -DENGRAM_CONSUMER_MODE=add_subdirectory -DENGRAM_SOURCE_DIR=${SOURCE_DIR})
else()
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                  RESULT_VARIABLE rc OUTPUT_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cmake --install failed: ${rc}")
  endif()
  list(APPEND args -DENGRAM_CONSUMER_MODE=find_package -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
endif()
if(MODE STREQUAL "find_package_hidden_deps")
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/cmake_import -B ${WORK_DIR}/build
                          -DCMAKE_BUILD_TYPE=Release ${args} -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "consumer configure succeeded without the components' dependencies")
  endif()
  foreach(expected "engram::tokenizer needs utf8proc (libutf8proc-dev)" "engram_dep::utf8proc")
    string(FIND "${out}${err}" "${expected}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "the failure does not say '${expected}':\n${out}${err}")
    endif()
  endforeach()
  return()
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/cmake_import -B ${WORK_DIR}/build
                        -DCMAKE_BUILD_TYPE=Release ${args} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "consumer configure failed (${MODE}, components '${COMPONENTS}')")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "consumer build failed (${MODE})")
endif()
execute_process(COMMAND ${WORK_DIR}/build/consumer RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "consumer run failed (${MODE})")
endif()
