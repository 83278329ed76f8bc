# train/: sparse row gradients and the backward passes of both blocks.
engram_add_test(train_sparse_grad_test train/sparse_grad_test.cpp)
