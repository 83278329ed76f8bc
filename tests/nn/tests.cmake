# nn/ components (RMSNorm, Linear, gates, short conv): fast paths against their scalar references.
# GCC 12 reports false positives inside its AVX-512 intrinsics as inlined into Eigen's kernels:
# -W(maybe-)uninitialized on the _mm512_undefined_* merge operands (GCC bug 105593, fixed in GCC 13)
# and -Warray-bounds on vector loops it cannot prove dead for tiny constant sizes.
foreach(_engram_nn_test rms_norm linear gate short_conv bf16_native_linear)
  engram_add_test(nn_${_engram_nn_test}_test nn/${_engram_nn_test}_test.cpp)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(nn_${_engram_nn_test}_test PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized -Wno-array-bounds)
  endif()
endforeach()
# The large-product path of LinearT runs on OpenBLAS when engram::blas exists: test that build.
if(TARGET engram::blas)
  target_link_libraries(nn_linear_test PRIVATE engram::blas)
endif()
# FP8 block projection: every ISA path of this machine (run-time dispatch) against the reference,
# threaded with OpenMP when available.
find_package(OpenMP COMPONENTS CXX)
engram_add_test(nn_fp8_linear_test nn/fp8_linear_test.cpp LIBS $<TARGET_NAME_IF_EXISTS:OpenMP::OpenMP_CXX>)
