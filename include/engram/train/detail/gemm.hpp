// engram/train/detail/gemm.hpp: a matrix product whose result does not depend on the thread count.
//
//   C[M, N] (row-major, ldc) += op(A)[M, K] * op(B)[K, N]
//   op(A) = A stored [M, K] row-major (lda), or A^T of A stored [K, M] row-major (a_transposed)
//   op(B) = B stored [K, N] row-major (ldb), or B^T of B stored [N, K] row-major (b_transposed)
// The rows of C are cut into fixed tiles of kTileRows; each tile is one single-threaded Eigen GEMM
// (Eigen's serial kernel with blocking sized for one thread), the tiles spread over
// detail::kernel_threads() threads. A tile's arithmetic depends only on the shapes, so the result
// is bitwise the same for every thread count (Eigen's own threaded GEMM re-blocks per thread
// count). Allocates Eigen's packing buffers per tile. Thread safety: pure on distinct outputs.
#pragma once

#include <algorithm>
#include <cstdint>

#include "engram/nn/detail/eigen_support.hpp"

namespace engram::train::detail {

inline constexpr int64_t kTileRows = 256;

/// One serial GEMM: C[M, N] += op(A) op(B) as in the banner.
template <class Scalar, bool ATransposed, bool BTransposed>
void serial_gemm(int64_t m, int64_t n, int64_t k, const Scalar* a, int64_t lda, const Scalar* b,
                 int64_t ldb, Scalar* c, int64_t ldc) {
  if (m == 0 || n == 0 || k == 0) return;
  using Eigen::ColMajor;
  using Eigen::Dynamic;
  using Eigen::RowMajor;
  using Index = Eigen::Index;
  // Column-major C^T[N, M] = op(B)^T[N, K] * op(A)^T[K, M].
  constexpr int kLhsOrder = BTransposed ? RowMajor : ColMajor;
  constexpr int kRhsOrder = ATransposed ? RowMajor : ColMajor;
  Eigen::internal::gemm_blocking_space<ColMajor, Scalar, Scalar, Dynamic, Dynamic, Dynamic, 1,
                                       false>
      blocking(n, m, k, 1, true);
  Eigen::internal::general_matrix_matrix_product<Index, Scalar, kLhsOrder, false, Scalar, kRhsOrder,
                                                 false, ColMajor, 1>::run(n, m, k, b, ldb, a, lda,
                                                                          c, 1, ldc, Scalar(1),
                                                                          blocking, nullptr);
}

/// C += op(A) op(B) over fixed row tiles of C, threads over tiles: thread-count independent.
template <class Scalar, bool ATransposed, bool BTransposed>
void tiled_gemm(int64_t m, int64_t n, int64_t k, const Scalar* a, int64_t lda, const Scalar* b,
                int64_t ldb, Scalar* c, int64_t ldc) {
  const int64_t tiles = (m + kTileRows - 1) / kTileRows;
  engram::detail::parallel_for(tiles, 1, [&](int64_t begin, int64_t end, int) {
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t row = tile * kTileRows, rows = std::min(kTileRows, m - row);
      const Scalar* a_tile = ATransposed ? a + row : a + row * lda;
      serial_gemm<Scalar, ATransposed, BTransposed>(rows, n, k, a_tile, lda, b, ldb, c + row * ldc,
                                                    ldc);
    }
  });
}

}  // namespace engram::train::detail
