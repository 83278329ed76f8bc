// engram/nn/fp8_linear.hpp: a projection with FP8 E4M3 weights and one E8M0 scale per 32x32
// block (DeepSeek V4.1's `wkv`), and the activation quantisation that precedes it.
//
//   y[t, o] = sum_i x[t, i] * e4m3(codes[o, i]) * 2^(scales[o / 32, i / 32] - 127)
//   x [rows, in], codes [out, in] row-major, scales [ceil(out / 32), ceil(in / 32)], y [rows, out]
//   quantize_activations_e4m3: per block of 32 values, amax = max(max |x|, 1e-4),
//     s = 2^ceil(log2(amax / 448)), x := e4m3_rne(x / s) * s  (v41_ref.py act_quant)
//
// Kernels chosen at run time (bodies in nn/detail/fp8_linear_x86.hpp) keep the weights 1 byte
// each; decode steps (rows <= 4) stream them once. active_isa() avx2 or avx512: f32 FMA on the
// exactly widened weights; avx512bf16: vdpbf16ps or that f32 kernel as bf16_dot() says (from the
// CPU model; nn/bf16_dot.hpp); scalar: the reference's loop.
// A row's result does not depend on the other rows of the call (chunked == whole).
// For x exact in bf16 (every quantize_activations_e4m3 output is) all paths equal
// forward_reference up to f32 summation rounding (each path's order: the x86 header; details:
// docs/design/fp8_linear.md). Construction refuses wrong sizes and NaN scales or codes, naming
// `name` and the element. Ownership: packed weights and scales are owned and shared by copies.
// Thread safety: forward is const; distinct outputs are safe.
//
//   Fp8BlockLinear wkv(codes, scales, 25600, 6144);
//   quantize_activations_e4m3(x); wkv.forward(x.data(), rows, y.data());
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "engram/detail/aligned_buffer.hpp"
#include "engram/detail/cpu_features.hpp"
#include "engram/detail/parallel.hpp"
#include "engram/error.hpp"
#include "engram/memory/codec.hpp"
#include "engram/nn/bf16_dot.hpp"
#include "engram/nn/detail/fp8_linear_x86.hpp"

namespace engram {

namespace detail {

/// Quantises the values of one block in place (see quantize_activations_e4m3).
inline void quantize_block_e4m3(float* x, int64_t n) noexcept {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  // The smallest k with max(amax, 1e-4) <= 448 * 2^k; the 1e-4 floor gives k = -22.
  int k = -22;
  if (amax > std::ldexp(448.0f, k)) {
    k = std::ilogb(amax) - 8;  // 448 = 1.75 * 2^8
    while (amax > std::ldexp(448.0f, k)) ++k;
    while (k > -22 && amax <= std::ldexp(448.0f, k - 1)) --k;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float scaled = std::ldexp(x[i], -k);  // exact: |scaled| <= 448
    x[i] = std::ldexp(e4m3_to_f32(f32_to_e4m3(scaled)), k);
  }
}

}  // namespace detail

/// Quantises x in place to E4M3 with a power-of-two scale per block of `block` consecutive values
/// (the last block may be shorter): the activation quantisation of V4.1's FP8 projection. Call it
/// per row when the row length is not a multiple of `block`. Finite inputs expected.
inline void quantize_activations_e4m3(std::span<float> x, std::int64_t block = 32) noexcept {
  if (block <= 0) return;
  const auto n = static_cast<int64_t>(x.size());
  for (int64_t b = 0; b < n; b += block)
    detail::quantize_block_e4m3(x.data() + b, std::min(block, n - b));
}

/// FP8 (E4M3) weights with E8M0 scales per 32x32 block; see the banner.
class Fp8BlockLinear {
 public:
  static constexpr int64_t kBlock = 32;

  /// An empty projection (0 x 0) to assign a loaded one to; forward needs a loaded one.
  Fp8BlockLinear() = default;
  /// @param codes out_features * in_features E4M3 bytes, row-major.
  /// @param scales ceil(out / 32) * ceil(in / 32) E8M0 bytes, row-major.
  /// @param name the tensor's name in error messages.
  Fp8BlockLinear(std::span<const std::uint8_t> codes, std::span<const std::uint8_t> scales,
                 std::int64_t out_features, std::int64_t in_features, std::string_view name = "wkv")
      : out_(out_features), in_(in_features) {
    ENGRAM_CHECK(out_features > 0 && in_features > 0, "Fp8BlockLinear '", name,
                 "': sizes must be positive, found [", out_features, ", ", in_features, "]");
    ENGRAM_CHECK(static_cast<int64_t>(codes.size()) == out_ * in_, "Fp8BlockLinear '", name,
                 "': weight has ", codes.size(), " bytes, expected [", out_, ", ", in_,
                 "] = ", out_ * in_);
    panels_ = (out_ + kBlock - 1) / kBlock;
    kblocks_ = (in_ + kBlock - 1) / kBlock;
    ENGRAM_CHECK(static_cast<int64_t>(scales.size()) == panels_ * kblocks_, "Fp8BlockLinear '",
                 name, "': scale has ", scales.size(), " bytes, expected [", panels_, ", ",
                 kblocks_, "] = ", panels_ * kblocks_, " (one per 32x32 block of [", out_, ", ",
                 in_, "])");
    auto scale_values = std::make_shared<std::vector<float>>(scales.size());
    for (int64_t p = 0; p < panels_; ++p)
      for (int64_t kb = 0; kb < kblocks_; ++kb) {
        const std::uint8_t s = scales[p * kblocks_ + kb];
        ENGRAM_CHECK(s != 0xFF, "Fp8BlockLinear '", name, "': scale of block [", p, ", ", kb,
                     "] is 0xFF (E8M0 NaN), expected a finite power of two");
        (*scale_values)[p * kblocks_ + kb] = detail::e8m0_to_f32_bits(s);
      }
    const int64_t pairs = kblocks_ * kBlock / 2;
    auto packed = std::make_shared<detail::AlignedBuffer<std::uint8_t>>();
    std::uint8_t* dst = packed->ensure(static_cast<size_t>(panels_ * pairs * 64));
    std::fill_n(dst, panels_ * pairs * 64, std::uint8_t{0});
    for (int64_t o = 0; o < out_; ++o)
      for (int64_t i = 0; i < in_; ++i) {
        const std::uint8_t c = codes[o * in_ + i];
        ENGRAM_CHECK((c & 0x7F) != 0x7F, "Fp8BlockLinear '", name, "': weight [", o, ", ", i,
                     "] is the E4M3 NaN code 0x", std::hex, int{c}, ", expected a finite value");
        dst[offset(o, i)] = c;
      }
    packed_ = std::move(packed);
    scales_ = std::move(scale_values);
  }

  std::int64_t out_features() const noexcept { return out_; }
  std::int64_t in_features() const noexcept { return in_; }

  /// Whether forward multiplies on vdpbf16ps now (active_isa() avx512bf16 and bf16_dot() kBf16,
  /// read at the call); else on f32 FMA or the scalar loop. A roofline compares the kernel with
  /// the peak of its instruction.
  bool uses_vdpbf16ps() const noexcept { return on_vdpbf16ps(active_isa()); }

  /// y = x W^T with the kernel of active_isa() (at avx512bf16: of bf16_dot()). x [rows, in],
  /// y [rows, out]; no aliasing.
  void forward(const float* x, std::int64_t rows, float* y) const {
    if (rows <= 0) return;
    const Isa isa = active_isa();
#if ENGRAM_FP8_X86
    if (isa != Isa::kScalar) {
      const int64_t ldx = kblocks_ * kBlock;
      const std::uint8_t* packed = packed_->data();
      const float* scales = scales_->data();
      if (on_vdpbf16ps(isa)) {
        thread_local detail::AlignedBuffer<std::uint16_t> buffer;
        std::uint16_t* xb = buffer.ensure(static_cast<size_t>(rows * ldx));
        for (int64_t r = 0; r < rows; ++r) {
          detail::f32_to_bf16(x + r * in_, xb + r * ldx, in_);
          std::fill(xb + r * ldx + in_, xb + (r + 1) * ldx, std::uint16_t{0});
        }
        detail::parallel_for(panels_, 1, [&](int64_t begin, int64_t end, int) {
          thread_local detail::AlignedBuffer<std::uint16_t> decoded;  // one panel, in bf16
          detail::fp8::panels_bf16(packed, scales, kblocks_, out_, xb, rows, ldx, y, out_, begin,
                                   end, decoded.ensure(static_cast<size_t>(ldx * kBlock)));
        });
        return;
      }
      thread_local detail::AlignedBuffer<float> buffer;
      float* xf = buffer.ensure(static_cast<size_t>(rows * ldx));
      for (int64_t r = 0; r < rows; ++r) {
        std::copy(x + r * in_, x + (r + 1) * in_, xf + r * ldx);
        std::fill(xf + r * ldx + in_, xf + (r + 1) * ldx, 0.0f);
      }
      detail::parallel_for(panels_, 1, [&](int64_t begin, int64_t end, int) {
        if (isa == Isa::kAvx2) {
          detail::fp8::panels_avx2(packed, scales, kblocks_, out_, xf, rows, ldx, y, out_, begin,
                                   end);
        } else {
          thread_local detail::AlignedBuffer<float> decoded;  // one panel, in f32
          detail::fp8::panels_avx512(packed, scales, kblocks_, out_, xf, rows, ldx, y, out_, begin,
                                     end, decoded.ensure(static_cast<size_t>(ldx * kBlock)));
        }
      });
      return;
    }
#endif
    (void)isa;
    detail::parallel_for(panels_, 1, [&](int64_t begin, int64_t end, int) {
      reference_outputs(x, rows, y, begin * kBlock, std::min(out_, end * kBlock));
    });
  }

  /// The spec of forward: plain loops over the decoded weights, sums in double. One thread.
  void forward_reference(const float* x, std::int64_t rows, float* y) const {
    if (rows > 0) reference_outputs(x, rows, y, 0, out_);
  }

  /// The E4M3 code of weight [o, i] (read back from the packed layout).
  std::uint8_t code(std::int64_t o, std::int64_t i) const noexcept {
    return packed_->data()[offset(o, i)];
  }

 private:
  static bool on_vdpbf16ps(Isa isa) noexcept {
    return ENGRAM_FP8_X86 && isa == Isa::kAvx512Bf16 && bf16_dot() == Bf16Dot::kBf16;
  }

  // Packed layout: panel o / 32, pair step i / 2, output o % 32, column parity i % 2.
  std::int64_t offset(std::int64_t o, std::int64_t i) const noexcept {
    return ((o / kBlock) * (kblocks_ * kBlock / 2) + i / 2) * 64 + (o % kBlock) * 2 + (i & 1);
  }

  void reference_outputs(const float* x, int64_t rows, float* y, int64_t o_begin,
                         int64_t o_end) const noexcept {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = o_begin; o < o_end; ++o) {
        double acc = 0.0;
        for (int64_t i = 0; i < in_; ++i) {
          const double w = double(detail::e4m3_to_f32(code(o, i))) *
                           double((*scales_)[(o / kBlock) * kblocks_ + i / kBlock]);
          acc += double(x[r * in_ + i]) * w;
        }
        y[r * out_ + o] = static_cast<float>(acc);
      }
  }

  std::shared_ptr<const detail::AlignedBuffer<std::uint8_t>> packed_;
  std::shared_ptr<const std::vector<float>> scales_;
  int64_t out_ = 0;
  int64_t in_ = 0;
  int64_t panels_ = 0;
  int64_t kblocks_ = 0;
};

}  // namespace engram
