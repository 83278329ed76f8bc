# Memory tier throughput: DirectIO (io_uring / pread) by queue depth, cached Zipfian lookups,
# prefetch overlap. Needs engram::xxhash (page checksums); engram::uring enables io_uring.
# bench/memory/tiers/fio_compare.sh runs it next to fio on the same file.
if(TARGET engram::xxhash)
  set(_engram_tier_bench_libs engram::xxhash)
  if(TARGET engram::uring)
    list(APPEND _engram_tier_bench_libs engram::uring)
  endif()
  engram_add_bench(tiers_tier_bench memory/tiers/tier_bench.cpp LIBS ${_engram_tier_bench_libs})
  # The remote tier over a loopback memcached pool (started by the benchmark) against DirectIO.
  if(TARGET engram::memcached)
    engram_add_bench(tiers_remote_tier_bench memory/tiers/remote_tier_bench.cpp
                     LIBS ${_engram_tier_bench_libs} engram::memcached)
  endif()
endif()
