# Training: optimisers and checkpoints (goldens from tests/data/train/make_optim_golden.py).
engram_add_test(train_optimizers_test train/optimizers_test.cpp LABELS threads)
engram_add_test(train_checkpoint_test train/checkpoint_test.cpp)
