// engram/nn/detail/fp8_block_linear_scalar.hpp: a plain scalar FP8 block-scaled projection and the
// reference's activation quantisation, written against the interface of nn/fp8_linear.hpp (the
// optimised kernel of the `fp8` branch). The V4.1 layer reaches it through the alias
// engram::detail::V41Fp8Linear (layer/detail/v41_projection.hpp): swap that alias, and
// v41_quantize_activations, for Fp8BlockLinear / quantize_activations_e4m3 when the kernel lands.
//
//   y[t, o] = sum_i x[t, i] * e4m3(codes[o, i]) * 2^(scales[o / 32, i / 32] - 127)   (f32 sums)
//   quantize_activations_e4m3 (in place, per block of 32 values along the row):
//     amax = max(max |x|, 1e-4); s = 2^ceil(log2(amax / 448)); x = e4m3_rne(x / s) * s
// codes [out, in] row-major, scales [ceil(out / 32), ceil(in / 32)]; both are borrowed views (the
// mapped checkpoint) that must outlive the object. forward splits the outputs over the kernel
// threads (detail::parallel_for) and equals forward_reference exactly. Thread safety: const methods
// are reentrant.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engram/error.hpp"
#include "engram/memory/codec.hpp"
#include "engram/nn/detail/eigen_support.hpp"

namespace engram::fp8_fallback {

/// The reference's activation quantisation, in place over rows of `block`-value blocks (a last
/// partial block is quantised on its own). Non-finite values are not expected (validated before).
inline void quantize_activations_e4m3(std::span<float> x, std::int64_t block = 32) noexcept {
  const auto n = static_cast<std::int64_t>(x.size());
  for (std::int64_t b0 = 0; b0 < n; b0 += block) {
    const std::int64_t b1 = std::min(n, b0 + block);
    float amax_f = 0.0f;
    for (std::int64_t i = b0; i < b1; ++i) amax_f = std::max(amax_f, std::abs(x[i]));
    // s = 2^ceil(log2(amax / 448)) in double as the reference; frexp makes the ceil exact.
    const double ratio = std::max(static_cast<double>(amax_f), 1e-4) / 448.0;
    int exponent = 0;
    const double mantissa = std::frexp(ratio, &exponent);  // ratio = mantissa * 2^exponent
    const int k = mantissa == 0.5 ? exponent - 1 : exponent;
    const float scale = std::ldexp(1.0f, k), inverse = std::ldexp(1.0f, -k);
    for (std::int64_t i = b0; i < b1; ++i)
      x[i] = detail::e4m3_to_f32(detail::f32_to_e4m3(x[i] * inverse)) * scale;
  }
}

/// y = x W^T with W in FP8 E4M3 and one E8M0 scale per 32 x 32 block.
class Fp8BlockLinear {
 public:
  static constexpr std::int64_t kBlock = 32;

  Fp8BlockLinear() = default;
  Fp8BlockLinear(std::span<const std::uint8_t> codes, std::span<const std::uint8_t> scales,
                 std::int64_t out_features, std::int64_t in_features, std::string_view name = "wkv")
      : codes_(codes), scales_(scales), out_(out_features), in_(in_features) {
    const std::int64_t sr = (out_ + kBlock - 1) / kBlock, sc = (in_ + kBlock - 1) / kBlock;
    ENGRAM_CHECK(out_ > 0 && in_ > 0, name, ": FP8 projection needs positive sizes, found [", out_,
                 ", ", in_, "]");
    ENGRAM_CHECK(static_cast<std::int64_t>(codes.size()) == out_ * in_, name, ": ", codes.size(),
                 " weight bytes, expected ", out_, " x ", in_);
    ENGRAM_CHECK(static_cast<std::int64_t>(scales.size()) == sr * sc, name, ": ", scales.size(),
                 " scale bytes, expected ", sr, " x ", sc);
    // Decoded once: one float per weight (the `fp8` kernel keeps 1 byte a weight instead).
    weights_.resize(static_cast<size_t>(out_ * in_));
    for (std::int64_t o = 0; o < out_; ++o)
      for (std::int64_t i = 0; i < in_; ++i)
        weights_[static_cast<size_t>(o * in_ + i)] =
            detail::e4m3_to_f32(codes_[static_cast<size_t>(o * in_ + i)]) *
            detail::e8m0_to_f32(scales_[static_cast<size_t>((o / kBlock) * sc + i / kBlock)]);
  }

  std::int64_t out_features() const noexcept { return out_; }
  std::int64_t in_features() const noexcept { return in_; }

  /// forward_reference's sums (same order), outputs split over the kernel threads.
  void forward(const float* x, std::int64_t rows, float* y) const {
    detail::parallel_for(out_, 16, [&](std::int64_t begin, std::int64_t end, int) {
      for (std::int64_t t = 0; t < rows; ++t) {
        const float* xt = x + t * in_;
        for (std::int64_t o = begin; o < end; ++o) y[t * out_ + o] = dot(xt, o);
      }
    });
  }

  void forward_reference(const float* x, std::int64_t rows, float* y) const {
    for (std::int64_t t = 0; t < rows; ++t) {
      const float* xt = x + t * in_;
      for (std::int64_t o = 0; o < out_; ++o) y[t * out_ + o] = dot(xt, o);
    }
  }

 private:
  float dot(const float* x, std::int64_t o) const noexcept {
    const float* w = weights_.data() + o * in_;
    float sum = 0.0f;
    for (std::int64_t i = 0; i < in_; ++i) sum += x[i] * w[i];
    return sum;
  }

  std::span<const std::uint8_t> codes_, scales_;
  std::int64_t out_ = 0, in_ = 0;
  std::vector<float> weights_;
};

}  // namespace engram::fp8_fallback
