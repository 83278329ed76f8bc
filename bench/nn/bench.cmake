# nn/ kernels at real shapes: the FP8 block projection (V4.1 wkv) per ISA path, OpenMP-threaded.
find_package(OpenMP COMPONENTS CXX)
engram_add_bench(fp8_linear_bench nn/fp8_linear_bench.cpp LIBS $<TARGET_NAME_IF_EXISTS:OpenMP::OpenMP_CXX>)
