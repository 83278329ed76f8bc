// engram/nn/rms_norm.hpp: root-mean-square normalisation over the last dimension.
//
//   out[r, j] = x[r, j] * rsqrt(mean_j(x[r, :]^2) + eps) * weight[j]      x, out: [rows, dim]
//
// The Engram layer uses three flavours, as the reference module does:
//   - gate norms (norm1 / norm2):   eps = kGateNormEps = float32 machine epsilon (torch finfo eps)
//   - short-conv norms:             eps = kConvNormEps = 1e-5
//   - fused variant:                eps = config.rms_norm_eps
// Ownership: RmsNormT holds a non-owning view of its weight, which must outlive it; copies share
// it. Thread safety: const methods are safe to call concurrently. `out` may alias `x`. Not
// guaranteed: bitwise equality with PyTorch (the summation order differs; ~1 ulp).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "engram/error.hpp"
#include "engram/nn/detail/eigen_support.hpp"

namespace engram {

/// Epsilon of the gate norms: torch.finfo(torch.float32).eps, whatever Scalar is.
inline constexpr double kGateNormEps = std::numeric_limits<float>::epsilon();
/// Epsilon of the short-conv norms.
inline constexpr double kConvNormEps = 1e-5;

/// RMSNorm with a learned per-feature weight.
/// @tparam Scalar float or double.
template <class Scalar = float>
class RmsNormT {
 public:
  RmsNormT() = default;
  /// @param weight [dim] gains (borrowed). @param eps added to the mean square.
  RmsNormT(std::span<const Scalar> weight, double eps) : weight_(weight), eps_(eps) {
    ENGRAM_CHECK(!weight.empty(), "RmsNorm: weight must not be empty");
    ENGRAM_CHECK(eps >= 0, "RmsNorm: eps must be non-negative, found ", eps);
  }

  int64_t dim() const noexcept { return static_cast<int64_t>(weight_.size()); }
  double eps() const noexcept { return eps_; }
  std::span<const Scalar> weight() const noexcept { return weight_; }

  /// Normalises `rows` rows of dim() values: x, out [rows, dim] row-major (out may alias x).
  void forward(const Scalar* x, Scalar* out, int64_t rows) const noexcept {
    const int64_t d = dim();
    const detail::ConstArrayMap<Scalar> w(weight_.data(), d);
    for (int64_t r = 0; r < rows; ++r) {
      const detail::ConstArrayMap<Scalar> xr(x + r * d, d);
      const Scalar scale = inverse_rms(xr.square().sum(), d, eps_);
      detail::ArrayMap<Scalar>(out + r * d, d) = xr * scale * w;
    }
  }

  /// 1 / sqrt(sum_sq / dim + eps): the factor a row with this sum of squares is scaled by.
  static Scalar inverse_rms(Scalar sum_sq, int64_t dim, double eps) noexcept {
    return Scalar(1) / std::sqrt(sum_sq / static_cast<Scalar>(dim) + static_cast<Scalar>(eps));
  }

 private:
  std::span<const Scalar> weight_;
  double eps_ = kConvNormEps;
};

using RmsNorm = RmsNormT<float>;

namespace reference {

/// Plain-loop RMSNorm (the spec of RmsNormT::forward); sums in double.
template <class Scalar>
void rms_norm(const Scalar* x, const Scalar* weight, double eps, Scalar* out, int64_t rows,
              int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum_sq = 0;
    for (int64_t j = 0; j < dim; ++j) sum_sq += double(x[r * dim + j]) * double(x[r * dim + j]);
    const double scale = 1.0 / std::sqrt(sum_sq / double(dim) + eps);
    for (int64_t j = 0; j < dim; ++j)
      out[r * dim + j] = static_cast<Scalar>(double(x[r * dim + j]) * scale * double(weight[j]));
  }
}

}  // namespace reference

#ifdef ENGRAM_EXTERN_TEMPLATES
// Compiled once in src/engram_instantiations.cpp (engram::instantiations).
extern template class RmsNormT<float>;
#endif

}  // namespace engram
