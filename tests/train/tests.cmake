# train/: sparse row gradients and the backward passes of both blocks.
engram_add_test(train_sparse_grad_test train/sparse_grad_test.cpp)
# Optimisers and training checkpoints (goldens from tests/data/train/make_optim_golden.py).
engram_add_test(train_optimizers_test train/optimizers_test.cpp LABELS threads)
engram_add_test(train_checkpoint_test train/checkpoint_test.cpp)
