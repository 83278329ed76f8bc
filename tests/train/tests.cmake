# train/: sparse row gradients and the backward passes of both blocks.
engram_add_test(train_sparse_grad_test train/sparse_grad_test.cpp)
find_package(OpenMP COMPONENTS CXX)
engram_add_test(train_backward_test train/backward_test.cpp
                LIBS $<TARGET_NAME_IF_EXISTS:OpenMP::OpenMP_CXX> LABELS threads)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(train_backward_test PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized -Wno-array-bounds)
endif()
# `engram backward` against the PyTorch autograd golden (tests/data/train/demo_grad).
if(TARGET engram_cli)
  engram_add_test(train_backward_cli_test train/backward_cli_test.cpp)
  target_compile_definitions(train_backward_cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(train_backward_cli_test engram_cli)
endif()
# Params from a released V4.1 directory (FP8 rows and wkv decoded); needs tokenizer.json support.
if(TARGET engram::tokenizer)
  engram_add_test(train_v41_params_test train/v41_params_test.cpp LIBS engram::tokenizer)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(train_v41_params_test PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized -Wno-array-bounds)
  endif()
endif()
# Optimisers and training checkpoints (goldens from tests/data/train/make_optim_golden.py).
engram_add_test(train_optimizers_test train/optimizers_test.cpp LABELS threads)
engram_add_test(train_checkpoint_test train/checkpoint_test.cpp)
engram_add_test(train_file_tier_test train/file_tier_test.cpp)
