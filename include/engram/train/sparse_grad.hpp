// engram/train/sparse_grad.hpp: sparse row gradients of an embedding table.
//
// A SparseRowGradT holds the rows a batch touched and their gradients:
//   rows   I64 [R]            sorted ascending, distinct, global row index (head offset included)
//   values Scalar [R, row_dim] row-major
// accumulate_row_grads(ids [n], grads [n, row_dim], row_dim) deduplicates ids and sums the
// gradients of equal ids in the order they appear in `ids` (a stable sort), so the result does not
// depend on thread count or on how the caller split the batch.
// Errors: engram::Error when grads.size() != ids.size() * row_dim or an id is negative.
// Thread safety: plain values; the function is reentrant.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "engram/error.hpp"

namespace engram::train {

/// The rows a batch touched and their accumulated gradients (see the banner).
template <class Scalar = float>
struct SparseRowGradT {
  int64_t row_dim = 0;
  std::vector<int64_t> rows;   // sorted ascending, distinct, global row index
  std::vector<Scalar> values;  // [rows.size(), row_dim] row-major
  int64_t size() const noexcept { return static_cast<int64_t>(rows.size()); }
};
using SparseRowGrad = SparseRowGradT<float>;

/// Deduplicates `ids` [n] and sums their gradients `grads` [n, row_dim] per distinct id, in the
/// order the ids appear (deterministic).
template <class Scalar>
SparseRowGradT<Scalar> accumulate_row_grads(std::span<const int64_t> ids,
                                            std::span<const Scalar> grads, int64_t row_dim) {
  ENGRAM_CHECK(row_dim > 0, "accumulate_row_grads: row_dim must be positive, found ", row_dim);
  ENGRAM_CHECK(grads.size() == ids.size() * static_cast<size_t>(row_dim),
               "accumulate_row_grads: grads has ", grads.size(), " values, expected ids (",
               ids.size(), ") x row_dim (", row_dim, ")");
  std::vector<int64_t> order(ids.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  SparseRowGradT<Scalar> out;
  out.row_dim = row_dim;
  for (int64_t i : order) {
    ENGRAM_CHECK(ids[i] >= 0, "accumulate_row_grads: id ", i, " is negative (", ids[i], ")");
    if (out.rows.empty() || out.rows.back() != ids[i]) {
      out.rows.push_back(ids[i]);
      out.values.resize(out.values.size() + static_cast<size_t>(row_dim), Scalar(0));
    }
    Scalar* dst = out.values.data() + out.values.size() - static_cast<size_t>(row_dim);
    const Scalar* src = grads.data() + i * row_dim;
    for (int64_t j = 0; j < row_dim; ++j) dst[j] += src[j];
  }
  return out;
}

}  // namespace engram::train
