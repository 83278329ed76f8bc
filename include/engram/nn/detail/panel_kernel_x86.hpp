// engram/nn/detail/panel_kernel_x86.hpp: the AVX-512 body of nn/linear.hpp's panel_product.
//
// W is packed into panels of kPanelColumns = 64 output rows stored [in][64]; panel_rows multiplies
// register blocks of 6 x rows (packed by pack_blocks, each block's rows interleaved) against one
// panel: one broadcast of x and four panel loads per k, no horizontal sums. The contract and the
// scalar reference (panel_product_reference) live in nn/linear.hpp; the kernel is compiled only
// where the translation unit targets AVX-512 (ENGRAM_HAVE_AVX512). Stateless; noexcept.
#pragma once

#include <algorithm>
#include <cstdint>

#include "engram/detail/float16.hpp"

namespace engram::detail {

/// Output columns per packed weight panel (the panel kernel's tile width: four 16-lane vectors).
inline constexpr int64_t kPanelColumns = 64;

#if ENGRAM_HAVE_AVX512
inline __m512 load16(const float* p) noexcept { return _mm512_loadu_ps(p); }
inline __m512 load16(const BFloat16* p) noexcept {
  return bf16x16_to_f32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// XR x rows against one panel (64 W rows packed [in][64]): acc[r][j] += x[r, k] * P[k, 16j:16j+16]
// for every k, one broadcast of x and four panel loads per k; no horizontal sums. x is the block's
// rows interleaved [in][XR] (pack_blocks), so its broadcasts walk one contiguous stream (rows of x
// 4 KiB apart would share L1 sets with each other and the panel). Writes y[r, 0:cols], cols <= 64
// (the panel's real columns).
template <int XR, class W>
inline void panel_block(const float* xp, const W* panel, int64_t in, float* y, int64_t ldy,
                        int64_t cols) noexcept {
  __m512 acc[XR][4];
  for (int r = 0; r < XR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < in; ++k) {
    const W* p = panel + k * kPanelColumns;
    const __m512 w0 = load16(p), w1 = load16(p + 16), w2 = load16(p + 32), w3 = load16(p + 48);
    for (int r = 0; r < XR; ++r) {
      const __m512 xv = _mm512_set1_ps(xp[k * XR + r]);
      acc[r][0] = _mm512_fmadd_ps(xv, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(xv, w1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(xv, w2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(xv, w3, acc[r][3]);
    }
  }
  for (int r = 0; r < XR; ++r)
    for (int64_t j = 0; j < 4 && 16 * j < cols; ++j) {
      float* dst = y + r * ldy + 16 * j;
      if (16 * j + 16 <= cols)
        _mm512_storeu_ps(dst, acc[r][j]);
      else
        _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << (cols - 16 * j)) - 1u), acc[r][j]);
    }
}

// Register blocks of a pass of `rows` x rows: near-equal, at most 6 rows (32 rows: 6 6 5 5 5 5,
// not 6 x 5 + 2: a small tail block pays the panel's loads for few FMAs). Calls
// body(first_row, count) for each.
template <class Body>
inline void for_each_block(int64_t rows, const Body& body) {
  const int64_t blocks = (rows + 5) / 6;
  for (int64_t b = 0, r = 0; b < blocks; ++b) {
    const int64_t count = (rows - r) / (blocks - b);
    body(r, count);
    r += count;
  }
}

// x rows [rows, in] (one pass) into xp, each register block's rows interleaved [in][count], blocks
// back to back (the block at row r starts at xp + r * in); with round_bf16 each value rounded to
// bf16 (nearest even) on the way.
inline void pack_blocks(const float* x, int64_t rows, int64_t in, float* xp,
                        bool round_bf16 = false) noexcept {
  for_each_block(rows, [&](int64_t r0, int64_t count) {
    float* dst = xp + r0 * in;
    for (int64_t r = 0; r < count; ++r) {
      const float* src = x + (r0 + r) * in;
      if (round_bf16)
        for (int64_t k = 0; k < in; ++k)
          dst[k * count + r] = bf16_bits_to_f32(f32_to_bf16_bits(src[k]));
      else
        for (int64_t k = 0; k < in; ++k) dst[k * count + r] = src[k];
    }
  });
}

// All `rows` packed x rows (pack_blocks) against one panel, block by block; the panel stays in L2
// across the blocks.
template <class W>
inline void panel_rows(const float* xp, int64_t rows, const W* panel, int64_t in, float* y,
                       int64_t ldy, int64_t cols) noexcept {
  for_each_block(rows, [&](int64_t r, int64_t count) {
    const float* xb = xp + r * in;
    float* yb = y + r * ldy;
    switch (count) {
      case 6:
        return panel_block<6>(xb, panel, in, yb, ldy, cols);
      case 5:
        return panel_block<5>(xb, panel, in, yb, ldy, cols);
      case 4:
        return panel_block<4>(xb, panel, in, yb, ldy, cols);
      case 3:
        return panel_block<3>(xb, panel, in, yb, ldy, cols);
      case 2:
        return panel_block<2>(xb, panel, in, yb, ldy, cols);
      default:
        return panel_block<1>(xb, panel, in, yb, ldy, cols);
    }
  });
}
#endif

}  // namespace engram::detail
