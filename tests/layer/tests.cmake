# Engram layer tests. OpenMP (when found) lets them exercise the multi-threaded kernels.
# GCC 12 reports false positives inside its AVX-512 intrinsics as inlined into Eigen's kernels:
# -W(maybe-)uninitialized on the _mm512_undefined_* merge operands (GCC bug 105593, fixed in GCC 13)
# and -Warray-bounds on vector loops it cannot prove dead for tiny constant sizes.
find_package(OpenMP COMPONENTS CXX)
function(engram_add_layer_test name source)
  if(OpenMP_CXX_FOUND)
    engram_add_test(${name} ${source} LIBS OpenMP::OpenMP_CXX)
  else()
    engram_add_test(${name} ${source})
  endif()
  # LinearT's large products run on OpenBLAS when engram::blas exists: test that build.
  if(TARGET engram::blas)
    target_link_libraries(${name} PRIVATE engram::blas)
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${name} PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized -Wno-array-bounds)
  endif()
endfunction()

engram_add_layer_test(layer_engram_layer_test layer/engram_layer_test.cpp)
engram_add_layer_test(layer_fused_engram_layer_test layer/fused_engram_layer_test.cpp)
engram_add_layer_test(layer_token_front_end_test layer/token_front_end_test.cpp)
engram_add_layer_test(layer_non_finite_test layer/non_finite_test.cpp)
engram_add_layer_test(layer_bf16_projection_test layer/bf16_projection_test.cpp)
engram_add_layer_test(layer_serving_test layer/serving_test.cpp)
engram_add_layer_test(layer_bf16_compute_test layer/bf16_compute_test.cpp)
engram_add_layer_test(layer_conformance_test layer/conformance_test.cpp)
engram_add_layer_test(layer_engram_model_test layer/engram_model_test.cpp)
# EngramModel builds the vocabulary compression from tokenizer.json (utf8proc, zlib).
target_link_libraries(layer_engram_model_test PRIVATE engram::tokenizer)
# TieredLayerT, prefetch strategies and EngramStackT (tiers need engram::xxhash for packed tables).
if(TARGET engram::xxhash)
  engram_add_layer_test(layer_tiered_layer_test layer/tiered_layer_test.cpp)
  target_link_libraries(layer_tiered_layer_test PRIVATE engram::xxhash)
endif()
# The README's quick start, compiled and run (tokenizer: CompressionTable; tiers: packed tables).
if(TARGET engram::xxhash AND TARGET engram::tokenizer)
  engram_add_layer_test(layer_quick_start_test layer/quick_start_test.cpp)
  target_link_libraries(layer_quick_start_test PRIVATE engram::xxhash engram::tokenizer)
  if(TARGET engram::uring)
    target_link_libraries(layer_quick_start_test PRIVATE engram::uring)
  endif()
  # The same in compiled mode: what a consumer linking engram::instantiations builds.
  if(TARGET engram::instantiations)
    engram_add_layer_test(layer_quick_start_compiled_test layer/quick_start_test.cpp)
    target_link_libraries(layer_quick_start_compiled_test PRIVATE engram::instantiations
                                                                  engram::xxhash engram::tokenizer)
  endif()
endif()
