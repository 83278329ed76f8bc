# N-gram hashing throughput (both policies; the XXH3 one needs engram::xxhash).
if(TARGET engram::xxhash)
  engram_add_bench(hashing_ngram_hasher_bench hashing/ngram_hasher_bench.cpp LIBS engram::xxhash)
endif()
