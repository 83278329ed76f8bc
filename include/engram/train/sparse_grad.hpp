// engram/train/sparse_grad.hpp: the gradient of an embedding table restricted to the rows a batch
// touched, accumulated deterministically.
//
//   accumulate_row_grads(ids [n], grads [n, row_dim], row_dim) -> SparseRowGrad {rows [R], values}
//     rows   = sorted(distinct(ids[i] for ids[i] >= 0))          (negative ids: dead tokens,
//     skipped) values[r, :] = sum over i with ids[i] == rows[r], in increasing i, of grads[i, :]
//
// Rows are global table rows (the head's offset included), so one SparseRowGrad covers every head
// of a layer. Guarantees: the result depends only on (ids, grads), never on a thread count: each
// row's contributions are added in increasing position order, starting from zero. Ownership: the
// result owns its vectors. Thread safety: a pure function; concurrent calls are safe.
// Example:
//   auto g = engram::train::accumulate_row_grads<float>(ids, grad_rows, row_dim);
//   for (int64_t r = 0; r < g.size(); ++r) update(g.rows[r], &g.values[r * g.row_dim]);
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "engram/error.hpp"

namespace engram::train {

/// Gradient of a table restricted to the rows a batch touched: rows sorted ascending and distinct
/// (global row index including the head's offset), values [rows.size(), row_dim] row-major.
template <class Scalar = float>
struct SparseRowGradT {
  int64_t row_dim = 0;
  std::vector<int64_t> rows;
  std::vector<Scalar> values;
  int64_t size() const noexcept { return static_cast<int64_t>(rows.size()); }
};
using SparseRowGrad = SparseRowGradT<float>;

/// Sums grads [n, row_dim] by ids [n] (negative ids skipped: dead tokens) into sorted distinct
/// rows, each row's contributions added in increasing position order (deterministic, thread-count
/// free).
/// @tparam Scalar float or double. @param ids [n] global row ids. @param grads [n, row_dim].
template <class Scalar>
SparseRowGradT<Scalar> accumulate_row_grads(std::span<const int64_t> ids,
                                            std::span<const Scalar> grads, int64_t row_dim) {
  ENGRAM_CHECK(row_dim > 0, "accumulate_row_grads: row_dim must be positive, found ", row_dim);
  ENGRAM_CHECK(grads.size() == ids.size() * static_cast<size_t>(row_dim),
               "accumulate_row_grads: grads must hold ids.size() * row_dim = ",
               ids.size() * static_cast<size_t>(row_dim), " values, found ", grads.size());
  SparseRowGradT<Scalar> out;
  out.row_dim = row_dim;
  // Positions of live ids, stably sorted by id: equal ids keep increasing position order.
  std::vector<int64_t> order;
  order.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= 0) order.push_back(static_cast<int64_t>(i));
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  const auto dim = static_cast<size_t>(row_dim);
  for (size_t k = 0; k < order.size(); ++k) {
    const int64_t id = ids[order[k]];
    if (out.rows.empty() || out.rows.back() != id) {
      out.rows.push_back(id);
      out.values.resize(out.values.size() + dim, Scalar(0));
    }
    Scalar* dst = out.values.data() + out.values.size() - dim;
    const Scalar* src = grads.data() + static_cast<size_t>(order[k]) * dim;
    for (size_t j = 0; j < dim; ++j) dst[j] += src[j];
  }
  return out;
}

}  // namespace engram::train
