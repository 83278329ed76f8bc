engram_add_bench(memory_gather_bench memory/gather_bench.cpp)
# Memory tiers (bench/memory/tiers/).
include(${CMAKE_CURRENT_LIST_DIR}/tiers/bench.cmake)
