# Packaging tests: a consumer through find_package (installed) and through add_subdirectory, each
# requiring and linking every component this build has; and, installed, a consumer whose
# machine lacks the tokenizer's dependencies: configuration fails naming them.
set(_engram_built_components "")
foreach(component tokenizer xxhash uring memcached blas)
  if(TARGET engram_${component})
    list(APPEND _engram_built_components ${component})
  endif()
endforeach()
list(JOIN _engram_built_components "," _engram_built_components)
set(_engram_import_modes find_package add_subdirectory)
if(TARGET engram_tokenizer)
  list(APPEND _engram_import_modes find_package_hidden_deps)
endif()
foreach(mode ${_engram_import_modes})
  set(components ${_engram_built_components})
  if(mode STREQUAL "find_package_hidden_deps")
    set(components tokenizer)
  endif()
  add_test(NAME cmake_import_${mode}
           COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DBUILD_DIR=${PROJECT_BINARY_DIR}
                   -DWORK_DIR=${PROJECT_BINARY_DIR}/cmake_import/${mode} -DMODE=${mode}
                   -DCOMPONENTS=${components} -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake_import/run.cmake)
  set_tests_properties(cmake_import_${mode} PROPERTIES TIMEOUT 300)
endforeach()
