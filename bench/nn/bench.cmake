# nn/ kernels at real shapes: the FP8 block projection (V4.1 wkv) per ISA path, OpenMP-threaded.
find_package(OpenMP COMPONENTS CXX)
engram_add_bench(fp8_linear_bench nn/fp8_linear_bench.cpp LIBS $<TARGET_NAME_IF_EXISTS:OpenMP::OpenMP_CXX>)

# The stacked projection against the alternative a user would pick: oneDNN (Debian libdnnl-dev,
# the library behind PyTorch's CPU matmul), optional: without it the comparison is not built.
find_package(dnnl CONFIG QUIET)
if(dnnl_FOUND AND OpenMP_CXX_FOUND)
  engram_add_bench(nn_onednn_compare_bench nn/onednn_compare_bench.cpp LIBS DNNL::dnnl OpenMP::OpenMP_CXX)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(nn_onednn_compare_bench PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized -Wno-array-bounds)
  endif()
else()
  message(STATUS "engram: oneDNN (libdnnl-dev) not found: bench/nn/onednn_compare_bench is not built")
endif()
