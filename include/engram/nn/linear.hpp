// engram/nn/linear.hpp: affine projection y = x W^T + b, as torch.nn.Linear.
//
//   x [rows, in], W [out, in] row-major (PyTorch layout), b [out] or none, y [rows, out]
//
// One Eigen GEMM (row-major operands, no transposed copy of W); it uses Eigen::nbThreads() threads
// when compiled with OpenMP. The Engram layer stacks its hc key projections and the value
// projection into one LinearT of [(hc + 1) * d, memory_dim] so the whole projection is one GEMM.
// Ownership: LinearT views its weight and bias (borrowed; they must outlive it).
// Thread safety: forward is const and safe to call concurrently on distinct outputs.
// Not guaranteed: Eigen allocates its GEMM blocking buffers per call (one malloc for large shapes).
#pragma once

#include <cstdint>
#include <span>

#include "engram/error.hpp"
#include "engram/nn/detail/eigen_support.hpp"

namespace engram {

/// A borrowed [out, in] weight and optional [out] bias.
/// @tparam Scalar float or double.
template <class Scalar = float>
class LinearT {
 public:
  LinearT() = default;
  /// @param weight out_features * in_features values, row-major. @param bias empty or out_features.
  LinearT(std::span<const Scalar> weight, int64_t out_features, int64_t in_features,
          std::span<const Scalar> bias = {})
      : weight_(weight), bias_(bias), out_(out_features), in_(in_features) {
    ENGRAM_CHECK(out_features > 0 && in_features > 0, "Linear: sizes must be positive, found [",
                 out_features, ", ", in_features, "]");
    ENGRAM_CHECK(static_cast<int64_t>(weight.size()) == out_features * in_features,
                 "Linear: weight has ", weight.size(), " values, expected [", out_features, ", ",
                 in_features, "]");
    ENGRAM_CHECK(bias.empty() || static_cast<int64_t>(bias.size()) == out_features,
                 "Linear: bias has ", bias.size(), " values, expected ", out_features);
  }

  int64_t in_features() const noexcept { return in_; }
  int64_t out_features() const noexcept { return out_; }
  std::span<const Scalar> weight() const noexcept { return weight_; }
  std::span<const Scalar> bias() const noexcept { return bias_; }

  /// y = x W^T (+ b when `add_bias` and a bias exists). x [rows, in], y [rows, out]; no aliasing.
  void forward(const Scalar* x, int64_t rows, Scalar* y, bool add_bias = true) const {
    if (rows <= 0) return;
    const detail::ConstRowMatrixMap<Scalar> w(weight_.data(), out_, in_);
    const detail::ConstRowMatrixMap<Scalar> xm(x, rows, in_);
    detail::RowMatrixMap<Scalar> ym(y, rows, out_);
    ym.noalias() = xm * w.transpose();
    if (add_bias && !bias_.empty()) {
      const Eigen::Map<const Eigen::Matrix<Scalar, 1, Eigen::Dynamic>> b(bias_.data(), out_);
      ym.rowwise() += b;
    }
  }

 private:
  std::span<const Scalar> weight_;
  std::span<const Scalar> bias_;
  int64_t out_ = 0;
  int64_t in_ = 0;
};

using Linear = LinearT<float>;

namespace reference {

/// Plain-loop y = x W^T + b (the spec of LinearT::forward); sums in double. bias may be null.
template <class Scalar>
void linear(const Scalar* x, const Scalar* weight, const Scalar* bias, Scalar* y, int64_t rows,
            int64_t in_features, int64_t out_features) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out_features; ++o) {
      double acc = bias ? double(bias[o]) : 0.0;
      for (int64_t i = 0; i < in_features; ++i)
        acc += double(x[r * in_features + i]) * double(weight[o * in_features + i]);
      y[r * out_features + o] = static_cast<Scalar>(acc);
    }
  }
}

}  // namespace reference
}  // namespace engram
