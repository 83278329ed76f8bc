# Training forward vs forward + backward (train/backward.hpp) on the paper-demo layer shape.
find_package(OpenMP COMPONENTS CXX)
engram_add_bench(backward_bench train/backward_bench.cpp LIBS $<TARGET_NAME_IF_EXISTS:OpenMP::OpenMP_CXX>)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(backward_bench PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized -Wno-array-bounds)
endif()
# Table optimisers: rows updated per second against table size (train/optimizers.hpp).
engram_add_bench(train_optimizer_bench train/optimizer_bench.cpp)
