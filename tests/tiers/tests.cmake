# Memory tiers, packed table format and prefetch. Tiers need engram::xxhash (page checksums) and,
# when available, engram::uring (the io_uring reader; without it the pread fallback is tested).
if(TARGET engram::xxhash)
  set(_engram_tier_libs engram::xxhash)
  if(TARGET engram::uring)
    list(APPEND _engram_tier_libs engram::uring)
  endif()

  engram_add_test(packed_table_test tiers/packed_table_test.cpp LIBS ${_engram_tier_libs})
  engram_add_test(cached_tier_test tiers/cached_tier_test.cpp LIBS ${_engram_tier_libs})

  # Concurrent tests carry the ctest label "threads" (run them under TSan: ENGRAM_SANITIZE=thread,
  # ctest -L threads). engram_add_test has no LABELS option, so this mirrors it with one.
  function(_engram_tiers_threaded_test name)
    add_executable(${name} ${ARGN})
    target_link_libraries(${name} PRIVATE engram::engram ${_engram_tier_libs} engram_project_options
                          GTest::gtest_main)
    target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
    target_compile_definitions(${name} PRIVATE ENGRAM_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data")
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 600 LABELS threads)
  endfunction()
  # The conformance and fault suites run the pread thread pool and io_uring readers.
  _engram_tiers_threaded_test(tier_conformance_test tiers/tier_conformance_test.cpp)
  _engram_tiers_threaded_test(tier_fault_test tiers/tier_fault_test.cpp)
  _engram_tiers_threaded_test(prefetch_test tiers/prefetch_test.cpp)
  _engram_tiers_threaded_test(tier_alloc_test tiers/tier_alloc_test.cpp)
else()
  message(STATUS "engram: xxHash not found, skipping the memory tier tests")
endif()
