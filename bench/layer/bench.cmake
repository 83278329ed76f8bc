# Engram layer benchmarks (whole layer, prefill and decode; components). OpenMP lets Eigen's GEMM
# and the per-token passes use Eigen::nbThreads() threads. GCC 12 reports false positives inside
# its AVX-512 intrinsics as inlined into Eigen's kernels (GCC bug 105593, fixed in GCC 13).
find_package(OpenMP COMPONENTS CXX)
if(OpenMP_CXX_FOUND)
  engram_add_bench(layer_bench layer/layer_bench.cpp LIBS OpenMP::OpenMP_CXX)
else()
  engram_add_bench(layer_bench layer/layer_bench.cpp)
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(layer_bench PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized -Wno-array-bounds)
endif()
if(TARGET engram::blas)
  target_link_libraries(layer_bench PRIVATE engram::blas)
endif()
