# Packaging tests: a consumer through find_package (installed) and through add_subdirectory.
foreach(mode find_package add_subdirectory)
  add_test(NAME cmake_import_${mode}
           COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DBUILD_DIR=${PROJECT_BINARY_DIR}
                   -DWORK_DIR=${PROJECT_BINARY_DIR}/cmake_import/${mode} -DMODE=${mode}
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake_import/run.cmake)
  set_tests_properties(cmake_import_${mode} PROPERTIES TIMEOUT 300)
endforeach()
