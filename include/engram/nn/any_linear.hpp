// engram/nn/any_linear.hpp: a LinearT whose weight storage is chosen at run time.
//
// AnyLinearT<Scalar> holds either a LinearT<Scalar> (weights stored as Scalar) or, for
// Scalar = float, a LinearT<float, BFloat16> (bf16 weights: half the bytes streamed per call, f32
// accumulation, each weight widened exactly). forward has LinearT's contract (x [rows, in],
// y [rows, out], no aliasing) whichever storage it holds; the Engram layers use it for their
// stacked keys + value projection so one layer type serves f32 and bf16 checkpoints.
// Ownership: as LinearT (views borrowed weight and bias; owns a shared packed copy).
#pragma once

#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include "engram/detail/float16.hpp"
#include "engram/nn/linear.hpp"

namespace engram {

/// A projection with Scalar or (Scalar = float) bf16 weights, chosen at construction.
template <class Scalar = float>
class AnyLinearT {
 public:
  AnyLinearT() = default;
  /// Weights stored as Scalar.
  explicit AnyLinearT(LinearT<Scalar> linear) : scalar_(std::move(linear)) {}
  /// bf16 weights (Scalar = float only).
  explicit AnyLinearT(LinearT<float, BFloat16> linear) requires std::is_same_v<Scalar, float>
      : bf16_(std::move(linear)), is_bf16_(true) {}

  /// True when the weights are stored in bf16.
  bool is_bf16() const noexcept { return is_bf16_; }
  int64_t in_features() const noexcept {
    return is_bf16_ ? bf16_.in_features() : scalar_.in_features();
  }
  int64_t out_features() const noexcept {
    return is_bf16_ ? bf16_.out_features() : scalar_.out_features();
  }
  std::span<const Scalar> bias() const noexcept {
    if constexpr (std::is_same_v<Scalar, float>)
      if (is_bf16_) return bf16_.bias();
    return scalar_.bias();
  }
  /// The Scalar-weight projection (empty LinearT when is_bf16()).
  const LinearT<Scalar>& scalar_weights() const noexcept { return scalar_; }
  /// The bf16-weight projection (empty LinearT unless is_bf16()).
  const LinearT<float, BFloat16>& bf16_weights() const noexcept { return bf16_; }

  /// y = x W^T (+ b when `add_bias` and a bias exists), as LinearT::forward.
  void forward(const Scalar* x, int64_t rows, Scalar* y, bool add_bias = true) const {
    if constexpr (std::is_same_v<Scalar, float>) {
      if (is_bf16_) return bf16_.forward(x, rows, y, add_bias);
    }
    scalar_.forward(x, rows, y, add_bias);
  }

 private:
  LinearT<Scalar> scalar_;
  LinearT<float, BFloat16> bf16_;
  bool is_bf16_ = false;
};

#ifdef ENGRAM_EXTERN_TEMPLATES
// Compiled once in src/engram_instantiations.cpp (engram::instantiations).
extern template class AnyLinearT<float>;
#endif

}  // namespace engram
