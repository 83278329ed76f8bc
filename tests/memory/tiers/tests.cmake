# Memory tiers, packed table format and prefetch. Tiers need engram::xxhash (page checksums) and,
# when available, engram::uring (the io_uring reader; without it the pread fallback is tested).
if(TARGET engram::xxhash)
  set(_engram_tier_libs engram::xxhash)
  if(TARGET engram::uring)
    list(APPEND _engram_tier_libs engram::uring)
  endif()

  engram_add_test(packed_table_test memory/tiers/packed_table_test.cpp LIBS ${_engram_tier_libs})
  engram_add_test(cached_tier_test memory/tiers/cached_tier_test.cpp LIBS ${_engram_tier_libs})

  # Concurrent tests (pread thread pool, io_uring readers, the prefetch worker) run under TSan too.
  foreach(name tier_conformance_test tier_fault_test prefetch_test tier_alloc_test)
    engram_add_test(${name} memory/tiers/${name}.cpp LIBS ${_engram_tier_libs} LABELS threads)
  endforeach()
  # The test replaces operator new/delete with malloc/free; GCC 12 at -O1 (the sanitizer builds)
  # reports the pairing it inlines as mismatched although both sides are the replacements.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(tier_alloc_test PRIVATE -Wno-mismatched-new-delete)
  endif()
  # Tables served from safetensors shards as shipped (V4.1 golden in tests/data/v41).
  engram_add_test(safetensors_tier_test memory/tiers/safetensors_tier_test.cpp LIBS ${_engram_tier_libs}
                  LABELS threads)
  # The seam between tiers and layers (forward_memory, AnyTier, open_table, TieredMemory).
  engram_add_test(tiered_layer_test memory/tiers/tiered_layer_test.cpp LIBS ${_engram_tier_libs}
                  LABELS threads)

  # The remote tier: an in-process store always; a loopback memcached pool (started by the test,
  # skipped when the memcached binary is missing) when libmemcached is found.
  set(_engram_remote_libs ${_engram_tier_libs})
  if(TARGET engram::memcached)
    list(APPEND _engram_remote_libs engram::memcached)
  endif()
  engram_add_test(remote_tier_test memory/tiers/remote_tier_test.cpp LIBS ${_engram_remote_libs}
                  LABELS threads)

  # Tables go to a folder of the build tree, not TMPDIR (often a tmpfs): the O_DIRECT path runs
  # where the filesystem supports it, and the tests assert that it does (tier_test_support.hpp).
  foreach(name packed_table_test cached_tier_test tier_conformance_test tier_fault_test
               prefetch_test tier_alloc_test tiered_layer_test remote_tier_test safetensors_tier_test)
    target_compile_definitions(${name}
                               PRIVATE ENGRAM_TEST_SCRATCH_DIR="${PROJECT_BINARY_DIR}/tests/scratch")
  endforeach()
endif()
