# Core tests: the headers every folder may use (error, detail/).
engram_add_test(core_cpu_features_test core/cpu_features_test.cpp)
engram_add_test(core_posix_file_test core/posix_file_test.cpp LABELS threads)
if(TARGET engram::instantiations)
  engram_add_test(core_extern_templates_test core/extern_templates_test.cpp LIBS engram::instantiations)
  find_package(OpenMP COMPONENTS CXX)
  if(OpenMP_CXX_FOUND)  # a consumer with OpenMP, as the layer tests and the CLI are
    target_link_libraries(core_extern_templates_test PRIVATE OpenMP::OpenMP_CXX)
  endif()
endif()
engram_add_test(core_config_core_test core/config_core_test.cpp)
