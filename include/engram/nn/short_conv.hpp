// engram/nn/short_conv.hpp: the demo layer's short convolution over time (ShortConv).
//
// Input x [T, hc, d] of one sequence; channel c = i * d + j (branch i, feature j), C = hc * d.
//   xn[t, i, :] = RMSNorm(x[t, i, :]; norms.{i}.weight, eps = 1e-5)
//   z[t, c]     = sum_{m < k} w[c, m] * xn[t - (k - 1 - m) * dilation, c]   (causal: xn[t < 0] = 0)
//   out[t, c]   = silu(z[t, c]) = z / (1 + exp(-z))
// k = kernel_size, dilation = max_ngram_size, w = conv.weight [C, 1, k] (depthwise, no bias); this
// is torch Conv1d(padding = (k - 1) * dilation) truncated to the first T outputs.
//
// Streaming: convolve_row takes the k normed input rows a time step reads (null = before the
// sequence start, i.e. zero), so a caller that keeps the last history_rows() = (k - 1) * dilation
// normed rows of a sequence gets the same output for any chunking of time.
// Ownership: copies its taps transposed ([k, C], small); views the norm weights (borrowed).
// Thread safety: const methods are safe to call concurrently on distinct outputs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "engram/error.hpp"
#include "engram/nn/detail/eigen_support.hpp"
#include "engram/nn/rms_norm.hpp"

namespace engram {

/// Depthwise causal dilated convolution with per-branch RMSNorm in front and SiLU behind.
/// @tparam Scalar float or double.
template <class Scalar = float>
class ShortConvT {
 public:
  /// Largest kernel_size supported (tap pointers live on the stack).
  static constexpr int64_t kMaxKernelSize = 64;

  ShortConvT() = default;
  /// @param weight short_conv.conv.weight, [hc * d, 1, kernel] flattened.
  /// @param norm_weight short_conv.norms.{i}.weight stacked, [hc, d] (borrowed).
  ShortConvT(int64_t hidden_size, int64_t hc_mult, int64_t kernel_size, int64_t dilation,
             std::span<const Scalar> weight, std::span<const Scalar> norm_weight,
             double eps = kConvNormEps)
      : d_(hidden_size),
        hc_(hc_mult),
        k_(kernel_size),
        dilation_(dilation),
        eps_(eps),
        norm_weight_(norm_weight) {
    ENGRAM_CHECK(hidden_size > 0 && hc_mult > 0 && kernel_size > 0 && dilation > 0,
                 "ShortConv: sizes must be positive, found d=", hidden_size, " hc=", hc_mult,
                 " kernel=", kernel_size, " dilation=", dilation);
    ENGRAM_CHECK(kernel_size <= kMaxKernelSize, "ShortConv: kernel_size ", kernel_size,
                 " exceeds the supported maximum of ", kMaxKernelSize);
    const int64_t c = channels();
    ENGRAM_CHECK(static_cast<int64_t>(weight.size()) == c * k_, "ShortConv: weight has ",
                 weight.size(), " values, expected [", c, ", 1, ", k_, "]");
    ENGRAM_CHECK(static_cast<int64_t>(norm_weight.size()) == c, "ShortConv: norm weight has ",
                 norm_weight.size(), " values, expected [", hc_, ", ", d_, "]");
    taps_.resize(static_cast<size_t>(c * k_));
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t m = 0; m < k_; ++m) taps_[m * c + ch] = weight[ch * k_ + m];
  }

  int64_t hidden_size() const noexcept { return d_; }
  int64_t hc_mult() const noexcept { return hc_; }
  int64_t kernel_size() const noexcept { return k_; }
  int64_t dilation() const noexcept { return dilation_; }
  int64_t channels() const noexcept { return hc_ * d_; }
  /// Earlier normed time steps the output at t depends on: (kernel - 1) * dilation.
  int64_t history_rows() const noexcept { return (k_ - 1) * dilation_; }

  /// One time step's norms: x, xn [hc, d] (xn may alias x).
  void normalize(const Scalar* x, Scalar* xn) const noexcept {
    for (int64_t i = 0; i < hc_; ++i) {
      const detail::ConstArrayMap<Scalar> xi(x + i * d_, d_);
      const Scalar scale = RmsNormT<Scalar>::inverse_rms(xi.square().sum(), d_, eps_);
      detail::ArrayMap<Scalar>(xn + i * d_, d_) =
          xi * scale * detail::ConstArrayMap<Scalar>(norm_weight_.data() + i * d_, d_);
    }
  }

  /// normalize() of x[i, :] = alpha[i] * value without forming x: value [d], alpha [hc], xn [hc,
  /// d].
  void normalize_scaled(const Scalar* value, const Scalar* alpha, Scalar* xn) const noexcept {
    const detail::ConstArrayMap<Scalar> v(value, d_);
    const Scalar v_sum_sq = v.square().sum();
    for (int64_t i = 0; i < hc_; ++i) {
      const Scalar a = alpha[i];
      const Scalar scale = a * RmsNormT<Scalar>::inverse_rms(a * a * v_sum_sq, d_, eps_);
      detail::ArrayMap<Scalar>(xn + i * d_, d_) =
          v * scale * detail::ConstArrayMap<Scalar>(norm_weight_.data() + i * d_, d_);
    }
  }

  /// Convolution + SiLU of one time step t: sources[m] is the normed input [C] of time
  /// t - (k - 1 - m) * dilation, or null when that is before the sequence start (zero); so
  /// sources[k - 1] is step t itself. out [C] is overwritten, or added to when `accumulate`.
  void convolve_row(const Scalar* const* sources, Scalar* out, bool accumulate) const noexcept {
    for_each_vector(sources, [&](int64_t, int64_t c0, const auto& z) {
      Eigen::Map<std::decay_t<decltype(z)>> o(out + c0);
      if (accumulate)
        o += z;
      else
        o = z;
    });
  }

  /// The demo layer's output row in one write: out[i * d + j] = alpha[i] * value[j] + silu(z)
  /// with z the convolution of sources (as convolve_row; value null: out = silu(z), a token whose
  /// gates are shut): y and the conv summed as the layer's y + ShortConv(y), out written once.
  void convolve_row_gated(const Scalar* const* sources, const Scalar* value, const Scalar* alpha,
                          Scalar* out) const noexcept {
    for_each_vector(sources, [&](int64_t i, int64_t c0, const auto& z) {
      using Z = std::decay_t<decltype(z)>;
      Eigen::Map<Z> o(out + c0);
      if (value == nullptr)
        o = z;
      else
        o = alpha[i] * Eigen::Map<const Z>(value + (c0 - i * d_)) + z;
    });
  }

  /// convolve_row over a padded buffer: `row` is step t's normed input, rows are `row_stride`
  /// apart and the history_rows() rows above `row` hold the earlier steps (zeros before the start).
  void convolve_row(const Scalar* row, int64_t row_stride, Scalar* out,
                    bool accumulate) const noexcept {
    const Scalar* sources[kMaxKernelSize];
    for (int64_t m = 0; m < k_; ++m) sources[m] = row - (k_ - 1 - m) * dilation_ * row_stride;
    convolve_row(sources, out, accumulate);
  }

  /// Scratch values forward() needs for a sequence of `steps` time steps.
  int64_t scratch_size(int64_t steps) const noexcept {
    return (history_rows() + steps) * channels();
  }

  /// Whole-sequence ShortConv.forward: x, out [steps, hc, d] (out must not alias x); scratch holds
  /// at least scratch_size(steps) values.
  void forward(const Scalar* x, int64_t steps, Scalar* out, std::span<Scalar> scratch) const {
    ENGRAM_CHECK(static_cast<int64_t>(scratch.size()) >= scratch_size(steps),
                 "ShortConv: scratch of ", scratch.size(), " values, need ", scratch_size(steps));
    const int64_t c = channels();
    Scalar* padded = scratch.data();
    std::fill(padded, padded + history_rows() * c, Scalar(0));
    Scalar* normed = padded + history_rows() * c;
    for (int64_t t = 0; t < steps; ++t) normalize(x + t * c, normed + t * c);
    for (int64_t t = 0; t < steps; ++t) convolve_row(normed + t * c, c, out + t * c, false);
  }

 private:
  int64_t d_ = 0;
  int64_t hc_ = 0;
  int64_t k_ = 1;
  int64_t dilation_ = 1;
  double eps_ = kConvNormEps;
  /// Channels of one vector of the convolution (64 bytes).
  static constexpr int kLanes = 64 / static_cast<int>(sizeof(Scalar));
  using Lanes = Eigen::Array<Scalar, kLanes, 1>;
  using Lane = Eigen::Array<Scalar, 1, 1>;

  /// z = silu(sum_m taps[m] * sources[m]) over each branch's channels, kLanes at a time (the
  /// branch's last d mod kLanes one at a time), every sum in registers, taps in order m = 0..k-1;
  /// store(branch, first channel, z) gets each z (Lanes or Lane).
  template <class Store>
  void for_each_vector(const Scalar* const* sources, const Store& store) const noexcept {
    const int64_t c = channels();
    const Scalar* tap[kMaxKernelSize];
    const Scalar* source[kMaxKernelSize];
    int64_t active = 0;
    for (int64_t m = 0; m < k_; ++m) {
      if (sources[m] == nullptr) continue;
      tap[active] = taps_.data() + m * c;
      source[active++] = sources[m];
    }
    const auto conv = [&]<class Z>(int64_t c0) {
      Z z = Z::Zero();
      for (int64_t m = 0; m < active; ++m)
        z += Eigen::Map<const Z>(tap[m] + c0) * Eigen::Map<const Z>(source[m] + c0);
      return Z(z / (Scalar(1) + (-z).exp()));
    };
    for (int64_t i = 0; i < hc_; ++i) {
      const int64_t end = (i + 1) * d_;
      int64_t c0 = i * d_;
      for (; c0 + kLanes <= end; c0 += kLanes) store(i, c0, conv.template operator()<Lanes>(c0));
      for (; c0 < end; ++c0) store(i, c0, conv.template operator()<Lane>(c0));
    }
  }

  std::span<const Scalar> norm_weight_;
  std::vector<Scalar> taps_;  // [k, C]: tap m of every channel contiguous
};

using ShortConv = ShortConvT<float>;

namespace reference {

/// ShortConv.forward as plain loops: x, out [steps, hc, d]; weight [hc * d, 1, k] flattened;
/// norm_weight [hc, d]. Sums in double.
template <class Scalar>
void short_conv(const Scalar* x, int64_t steps, int64_t hc, int64_t d, int64_t kernel,
                int64_t dilation, const Scalar* weight, const Scalar* norm_weight, Scalar* out,
                double eps = kConvNormEps) {
  const int64_t c = hc * d;
  std::vector<Scalar> xn(static_cast<size_t>(steps * c));
  for (int64_t t = 0; t < steps; ++t)
    for (int64_t i = 0; i < hc; ++i)
      rms_norm(x + t * c + i * d, norm_weight + i * d, eps, xn.data() + t * c + i * d, 1, d);
  for (int64_t t = 0; t < steps; ++t) {
    for (int64_t ch = 0; ch < c; ++ch) {
      double z = 0;
      for (int64_t m = 0; m < kernel; ++m) {
        const int64_t source = t - (kernel - 1 - m) * dilation;
        if (source >= 0) z += double(weight[ch * kernel + m]) * double(xn[source * c + ch]);
      }
      out[t * c + ch] = static_cast<Scalar>(z / (1.0 + std::exp(-z)));
    }
  }
}

}  // namespace reference

#ifdef ENGRAM_EXTERN_TEMPLATES
// Compiled once in src/engram_instantiations.cpp (engram::instantiations).
extern template class ShortConvT<float>;
#endif

}  // namespace engram
