# Hashing: NumPy's generator, primes, fast modulo, the N-gram hasher and its policies.
engram_add_test(hashing_numpy_random_test hashing/numpy_random_test.cpp)
engram_add_test(hashing_primes_test hashing/primes_test.cpp)
engram_add_test(hashing_fast_mod_test hashing/fast_mod_test.cpp)
engram_add_test(hashing_ngram_hasher_test hashing/ngram_hasher_test.cpp)
# The same tests built without AVX-512, so the portable scalar fast path is checked on this machine.
engram_add_test(hashing_ngram_hasher_portable_test hashing/ngram_hasher_test.cpp
                hashing/fast_mod_test.cpp)
target_compile_options(hashing_ngram_hasher_portable_test PRIVATE -mno-avx512f)
target_compile_definitions(hashing_ngram_hasher_portable_test PRIVATE ENGRAM_TEST_EXPECT_PORTABLE=1)
if(TARGET engram::xxhash)
  engram_add_test(hashing_xxh3_policy_test hashing/xxh3_policy_test.cpp LIBS engram::xxhash)
endif()
