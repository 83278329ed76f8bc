// engram/nn/detail/bf16_linear_x86.hpp: the native-bf16 kernel of LinearT<float, BFloat16>
// (Bf16Compute::kNative): y = bf16(x) W^T (+ b) with vdpbf16ps and f32 accumulation, as
// PyTorch's bf16 Linear multiplies (its output stays f32 here). Compiled with a function-level
// target attribute (AVX512-BF16), chosen at run time by LinearT through active_isa() and
// bf16_dot() (nn/bf16_dot.hpp).
//
// Layout (pack_pair_panels, at construction): panels of 64 W rows, each [in_pad / 2][64][2] bf16:
// pair step q, output j, lane t holds W[64p + j, 2q + t]; in_pad = in rounded up to even, rows
// past `out` and the pad column are zero. x is rounded to bf16 into [rows][in_pad] per call.
// Register blocks of up to 6 x rows x 64 outputs (4 accumulators a row; one 32-bit broadcast of
// an x pair and four panel loads per pair step); x in L2-sized passes, every panel streaming
// once past each pass. vdpbf16ps flushes bf16 subnormal operands (|v| < 2^-126) to zero and
// rounds its f32 results to nearest even with subnormal outputs flushed, as the instruction does.
// Not part of the public API.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "engram/detail/float16.hpp"
#include "engram/nn/detail/fp8_linear_x86.hpp"

namespace engram::detail::bf16n {

/// Output rows per panel.
inline constexpr int64_t kPanelRows = 64;
/// Bytes of x rows per pass.
inline constexpr int64_t kPassBytes = 512 * 1024;

constexpr int64_t padded_in(int64_t in) noexcept { return (in + 1) / 2 * 2; }
constexpr int64_t panel_count(int64_t out) noexcept { return (out + kPanelRows - 1) / kPanelRows; }
/// bf16 values of all packed panels.
constexpr int64_t packed_size(int64_t out, int64_t in) noexcept {
  return panel_count(out) * kPanelRows * padded_in(in);
}

/// Packs W [out, in] (bf16 bits, row-major) into pair panels (see the banner).
inline void pack_pair_panels(const std::uint16_t* w, int64_t out, int64_t in,
                             std::uint16_t* packed) noexcept {
  const int64_t steps = padded_in(in) / 2;
  for (int64_t p = 0; p < panel_count(out); ++p)
    for (int64_t q = 0; q < steps; ++q)
      for (int64_t j = 0; j < kPanelRows; ++j)
        for (int64_t t = 0; t < 2; ++t) {
          const int64_t o = p * kPanelRows + j, i = 2 * q + t;
          packed[((p * steps + q) * kPanelRows + j) * 2 + t] =
              o < out && i < in ? w[o * in + i] : std::uint16_t{0};
        }
}

#if ENGRAM_FP8_X86

template <int XR>
ENGRAM_TARGET_AVX512BF16 inline void block(const std::uint16_t* panel, int64_t steps,
                                           const std::uint16_t* x, int64_t ldx, const float* bias,
                                           float* y, int64_t ldy, int64_t cols) noexcept {
  __m512 acc[XR][4];
  for (int r = 0; r < XR; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t q = 0; q < steps; ++q) {
    const std::uint16_t* w = panel + q * kPanelRows * 2;
    __m512bh wv[4];
    for (int v = 0; v < 4; ++v)
      wv[v] =
          reinterpret_cast<__m512bh>(_mm512_loadu_si512(reinterpret_cast<const void*>(w + 32 * v)));
    for (int r = 0; r < XR; ++r) {
      std::uint32_t pair;
      std::memcpy(&pair, x + r * ldx + 2 * q, 4);
      const auto xv = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pair)));
      for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], xv, wv[v]);
    }
  }
  for (int64_t v = 0; v < 4 && 16 * v < cols; ++v) {
    const int64_t n = std::min<int64_t>(16, cols - 16 * v);
    const auto mask = static_cast<__mmask16>((1u << n) - 1u);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + 16 * v) : _mm512_setzero_ps();
    for (int r = 0; r < XR; ++r)
      _mm512_mask_storeu_ps(y + r * ldy + 16 * v, mask, _mm512_add_ps(acc[r][v], b));
  }
}

/// Panels [p_begin, p_end) for x [rows][ldx] (bf16 bits, zero-padded to ldx = padded_in(in)),
/// y [rows][ldy]; bias [out] or null.
ENGRAM_TARGET_AVX512BF16 inline void panels(const std::uint16_t* packed, int64_t out,
                                            const std::uint16_t* x, int64_t rows, int64_t ldx,
                                            const float* bias, float* y, int64_t ldy,
                                            int64_t p_begin, int64_t p_end) noexcept {
  const int64_t steps = ldx / 2;
  const int64_t pass = std::max<int64_t>(6, kPassBytes / (ldx * 2) / 6 * 6);
  for (int64_t r0 = 0; r0 < rows; r0 += pass) {
    const int64_t r1 = std::min(rows, r0 + pass);
    for (int64_t p = p_begin; p < p_end; ++p) {
      const std::uint16_t* panel = packed + p * steps * kPanelRows * 2;
      const int64_t cols = std::min(kPanelRows, out - p * kPanelRows);
      const float* b = bias ? bias + p * kPanelRows : nullptr;
      // Near-equal register blocks of at most 6 rows.
      const int64_t blocks = (r1 - r0 + 5) / 6;
      for (int64_t k = 0, r = r0; k < blocks; ++k) {
        const int64_t count = (r1 - r) / (blocks - k);
        const std::uint16_t* xr = x + r * ldx;
        float* yr = y + r * ldy + p * kPanelRows;
        switch (count) {
          case 6:
            block<6>(panel, steps, xr, ldx, b, yr, ldy, cols);
            break;
          case 5:
            block<5>(panel, steps, xr, ldx, b, yr, ldy, cols);
            break;
          default:
            fp8::with_rows(count,
                           [&]<int XR>() { block<XR>(panel, steps, xr, ldx, b, yr, ldy, cols); });
        }
        r += count;
      }
    }
  }
}

#endif  // ENGRAM_FP8_X86

}  // namespace engram::detail::bf16n
