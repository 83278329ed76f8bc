// engram/nn/detail/fp8_linear_x86.hpp: the x86 bodies of Fp8BlockLinear::forward (AVX2+FMA+F16C,
// AVX-512, AVX512-BF16), compiled with function-level target attributes so a build without
// -march=native still has them; Fp8BlockLinear picks one per call through active_isa() (and
// bf16_dot() at avx512bf16).
//
// Layout (Fp8BlockLinear packs it at construction): panels of 32 output rows (one scale block
// row), each [in_pad / 2][32][2] E4M3 bytes: pair step q, output j, byte t holds W[32p + j, 2q +
// t]; one pair step is one 64-byte line. in_pad = in rounded up to 32 (zero codes), rows past `out`
// are zero codes. x arrives padded to in_pad columns with zeros ([rows][ldx]).
// Decoding: byte -> sign-extended 16 bits << 7, bit 14 cleared = the IEEE half of value * 2^-8
// (exact, subnormals included; F16C ignores DAZ) -> f32; or (vdpbf16ps) byte -> the bf16 of its
// value (exponent rebias, an 8-entry table for subnormal codes).
// Summation order (every product x * w is exact in f32 for x exact in bf16), the same whether a
// panel streams through registers (passes of up to 4 rows: decode steps) or was decoded once per
// pass into a per-thread L2 buffer (prefill), so a row's result does not depend on the others:
//   f32 (AVX2, AVX-512): per lane (output, column parity) f32 partial sums over a 32-column block
//     in step order, folded into an f32 total with one FMA by the block scale; the two lanes of an
//     output added and times 2^8 at the end.
//   vdpbf16ps: per output f32 partial sums over a block (two products a step), folded into the
//     total with one FMA by the scale (so no vdpbf16ps operand is a bf16 subnormal, which it would
//     flush).
// Streaming kernels prefetch the panel kPrefetchBytes ahead (a decode step is bound by memory
// latency without it: 1.5x slower on the Xeon of the README).
// Not part of the public API. Kernels are noexcept and trust their (validated) inputs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ENGRAM_FP8_X86 1
#else
#define ENGRAM_FP8_X86 0
#endif

#if ENGRAM_FP8_X86

#ifndef ENGRAM_FP8_PREFETCH
#define ENGRAM_FP8_PREFETCH 4096
#endif

#define ENGRAM_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define ENGRAM_TARGET_AVX512 \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#define ENGRAM_TARGET_AVX512BF16 \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

namespace engram::detail::fp8 {

/// Output rows per panel (one E8M0 scale block row) and input columns per scale block.
inline constexpr int64_t kPanelRows = 32;
inline constexpr int64_t kBlock = 32;
/// Bytes of one pair step of a panel: 32 outputs x 2 input columns.
inline constexpr int64_t kStepBytes = 64;
/// Bytes of x rows per pass: a pass stays in L2 while each panel streams past it.
inline constexpr int64_t kPassBytes = 512 * 1024;
/// How far ahead of its reads a streaming (decode) kernel prefetches the weight bytes.
inline constexpr int64_t kPrefetchBytes = ENGRAM_FP8_PREFETCH;

/// Rows per pass for x rows of `row_bytes` bytes: a multiple of `block_rows`.
inline int64_t pass_rows(int64_t row_bytes, int64_t block_rows) noexcept {
  return std::max<int64_t>(block_rows, kPassBytes / row_bytes / block_rows * block_rows);
}

/// Calls body(panel, first_row, count) over [0, rows) in blocks of at most `block_rows` rows,
/// passes of pass_rows() at a time, every panel of [p_begin, p_end) streaming once past each
/// pass; on_panel(panel, pass_row_count) runs before each panel's blocks of a pass.
template <class OnPanel, class Body>
inline void for_each_pass(int64_t rows, int64_t row_bytes, int64_t block_rows, int64_t p_begin,
                          int64_t p_end, const OnPanel& on_panel, const Body& body) {
  const int64_t pass = pass_rows(row_bytes, block_rows);
  for (int64_t r0 = 0; r0 < rows; r0 += pass) {
    const int64_t r1 = std::min(rows, r0 + pass);
    for (int64_t p = p_begin; p < p_end; ++p) {
      on_panel(p, r1 - r0);
      for (int64_t r = r0; r < r1; r += block_rows) body(p, r, std::min(block_rows, r1 - r));
    }
  }
}

/// Calls kernel.template operator()<XR>() with XR = count, count in [1, 4].
template <class Kernel>
inline void with_rows(int64_t count, const Kernel& kernel) {
  switch (count) {
    case 4:
      return kernel.template operator()<4>();
    case 3:
      return kernel.template operator()<3>();
    case 2:
      return kernel.template operator()<2>();
    default:
      return kernel.template operator()<1>();
  }
}

inline std::uint64_t load_pair(const float* x) noexcept {
  std::uint64_t v;
  std::memcpy(&v, x, 8);
  return v;
}

inline std::uint32_t load_pair(const std::uint16_t* x) noexcept {
  std::uint32_t v;
  std::memcpy(&v, x, 4);
  return v;
}

// ------------------------------------------------------------------------------------ AVX2

/// 16 bytes (8 outputs x 2 columns) -> two vectors of 8 floats, each the E4M3 value * 2^-8 exactly
/// (see half_bits): lo = outputs 0..3, hi = outputs 4..7, each with its two columns in adjacent
/// lanes.
ENGRAM_TARGET_AVX2 inline void decode16_avx2(const std::uint8_t* p, __m256& lo,
                                             __m256& hi) noexcept {
  // Sign-extended byte << 7: the sign lands in bit 15, a copy of it in bit 14 (cleared) and the
  // magnitude in the half's exponent and mantissa bits.
  const __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i half =
      _mm256_and_si256(_mm256_slli_epi16(b, 7), _mm256_set1_epi16(static_cast<short>(0xBFFF)));
  lo = _mm256_cvtph_ps(_mm256_castsi256_si128(half));
  hi = _mm256_cvtph_ps(_mm256_extracti128_si256(half, 1));
}

/// One x row against one panel (streamed, prefetched): y[0:cols] = x . W_panel^T, summed as the
/// banner says.
ENGRAM_TARGET_AVX2 inline void row_avx2(const std::uint8_t* panel, const float* scales,
                                        int64_t kblocks, const float* x, float* y,
                                        int64_t cols) noexcept {
  alignas(32) float total[64] = {};
  for (int64_t kb = 0; kb < kblocks; ++kb) {
    __m256 part[8];
    for (auto& a : part) a = _mm256_setzero_ps();
    for (int64_t q = 0; q < kBlock / 2; ++q) {
      const int64_t step = kb * (kBlock / 2) + q;
      const std::uint8_t* w = panel + step * kStepBytes;
      _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes), _MM_HINT_T0);
      const __m256 xv =
          _mm256_castsi256_ps(_mm256_set1_epi64x(static_cast<long long>(load_pair(x + 2 * step))));
      for (int v = 0; v < 4; ++v) {
        __m256 lo, hi;
        decode16_avx2(w + 16 * v, lo, hi);
        part[2 * v] = _mm256_fmadd_ps(xv, lo, part[2 * v]);
        part[2 * v + 1] = _mm256_fmadd_ps(xv, hi, part[2 * v + 1]);
      }
    }
    const __m256 scale = _mm256_set1_ps(scales[kb]);
    for (int v = 0; v < 8; ++v)
      _mm256_store_ps(total + 8 * v,
                      _mm256_fmadd_ps(part[v], scale, _mm256_load_ps(total + 8 * v)));
  }
  for (int64_t j = 0; j < cols; ++j) y[j] = (total[2 * j] + total[2 * j + 1]) * 256.0f;
}

/// Panels [p_begin, p_end) for x [rows][ldx] (f32, zero-padded), y [rows][ldy].
ENGRAM_TARGET_AVX2 inline void panels_avx2(const std::uint8_t* packed, const float* scales,
                                           int64_t kblocks, int64_t out, const float* x,
                                           int64_t rows, int64_t ldx, float* y, int64_t ldy,
                                           int64_t p_begin, int64_t p_end) noexcept {
  const int64_t panel_bytes = kblocks * kBlock * kPanelRows;
  const auto no_op = [](int64_t, int64_t) {};
  for_each_pass(rows, ldx * 4, 1, p_begin, p_end, no_op, [&](int64_t p, int64_t r, int64_t) {
    row_avx2(packed + p * panel_bytes, scales + p * kblocks, kblocks, x + r * ldx,
             y + r * ldy + p * kPanelRows, std::min(kPanelRows, out - p * kPanelRows));
  });
}

// ------------------------------------------------------------------------------------ AVX-512

/// 16 bytes (8 outputs x 2 columns) -> 16 floats, each the E4M3 value * 2^-8 exactly (as
/// decode16_avx2), outputs in pairs of adjacent lanes.
ENGRAM_TARGET_AVX512 inline __m512 decode16_avx512(const std::uint8_t* p) noexcept {
  const __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm512_cvtph_ps(
      _mm256_and_si256(_mm256_slli_epi16(b, 7), _mm256_set1_epi16(static_cast<short>(0xBFFF))));
}

/// Sums the lane pairs of acc[0..3] (output j's two columns), times 2^8, into y[0:cols].
ENGRAM_TARGET_AVX512 inline void store_pairs_avx512(const __m512* acc, float* y,
                                                    int64_t cols) noexcept {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512 unscale = _mm512_set1_ps(256.0f);
  for (int h = 0; h < 2; ++h) {
    const int64_t c0 = 16 * h;
    if (c0 >= cols) break;
    const __m512 a = acc[2 * h], b = acc[2 * h + 1];
    const __m512 sum = _mm512_mul_ps(
        _mm512_add_ps(_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b)),
        unscale);
    const int64_t n = std::min<int64_t>(16, cols - c0);
    _mm512_mask_storeu_ps(y + c0, static_cast<__mmask16>((1u << n) - 1u), sum);
  }
}

/// A whole panel decoded to f32 (w * 2^-8, exact) once, for passes of many rows: step q's 64
/// values at 64 * q, in decode16_avx512's lane order.
ENGRAM_TARGET_AVX512 inline void decode_panel_avx512(const std::uint8_t* panel, int64_t steps,
                                                     float* out) noexcept {
  for (int64_t q = 0; q < steps; ++q)
    for (int v = 0; v < 4; ++v)
      _mm512_storeu_ps(out + 64 * q + 16 * v, decode16_avx512(panel + q * kStepBytes + 16 * v));
}

/// XR x rows (ldx apart) against one panel: its bytes streamed once (prefetched kPrefetchBytes
/// ahead) and decoded in registers, or (kDecoded) read from decode_panel_avx512's `decoded`. Both
/// sum alike, whatever XR, so a row's result never depends on the rows beside it: per 32-column
/// block, f32 partial sums of the exact products per lane (output, column parity) in step order,
/// folded into the f32 total with one FMA by the block scale; the two lanes of an output added
/// and times 2^8 at the end.
template <int XR, bool kDecoded>
ENGRAM_TARGET_AVX512 inline void block_avx512(const std::uint8_t* panel, const float* decoded,
                                              const float* scales, int64_t kblocks, const float* x,
                                              int64_t ldx, float* y, int64_t ldy,
                                              int64_t cols) noexcept {
  __m512 total[XR][4];
  for (int r = 0; r < XR; ++r)
    for (int v = 0; v < 4; ++v) total[r][v] = _mm512_setzero_ps();
  for (int64_t kb = 0; kb < kblocks; ++kb) {
    __m512 part[XR][4];
    for (int r = 0; r < XR; ++r)
      for (int v = 0; v < 4; ++v) part[r][v] = _mm512_setzero_ps();
    for (int64_t q = 0; q < kBlock / 2; ++q) {
      const int64_t step = kb * (kBlock / 2) + q;
      __m512 w[4];
      if constexpr (kDecoded) {
        for (int v = 0; v < 4; ++v) w[v] = _mm512_loadu_ps(decoded + 64 * step + 16 * v);
      } else {
        const std::uint8_t* bytes = panel + step * kStepBytes;
        _mm_prefetch(reinterpret_cast<const char*>(bytes + kPrefetchBytes), _MM_HINT_T0);
        for (int v = 0; v < 4; ++v) w[v] = decode16_avx512(bytes + 16 * v);
      }
      for (int r = 0; r < XR; ++r) {
        const __m512 xv = _mm512_castsi512_ps(
            _mm512_set1_epi64(static_cast<long long>(load_pair(x + r * ldx + 2 * step))));
        for (int v = 0; v < 4; ++v) part[r][v] = _mm512_fmadd_ps(xv, w[v], part[r][v]);
      }
    }
    const __m512 scale = _mm512_set1_ps(scales[kb]);
    for (int r = 0; r < XR; ++r)
      for (int v = 0; v < 4; ++v) total[r][v] = _mm512_fmadd_ps(part[r][v], scale, total[r][v]);
  }
  for (int r = 0; r < XR; ++r) store_pairs_avx512(total[r], y + r * ldy, cols);
}

/// Panels [p_begin, p_end) for x [rows][ldx] (f32, zero-padded), y [rows][ldy]. A pass of more
/// than one register block first decodes each panel into `scratch` (ldx * 32 floats).
ENGRAM_TARGET_AVX512 inline void panels_avx512(const std::uint8_t* packed, const float* scales,
                                               int64_t kblocks, int64_t out, const float* x,
                                               int64_t rows, int64_t ldx, float* y, int64_t ldy,
                                               int64_t p_begin, int64_t p_end,
                                               float* scratch) noexcept {
  constexpr int64_t kRows = 4;
  const int64_t steps = kblocks * kBlock / 2, panel_bytes = steps * kStepBytes;
  bool decoded = false;
  const auto on_panel = [&](int64_t p, int64_t pass) {
    decoded = pass > kRows;
    if (decoded) decode_panel_avx512(packed + p * panel_bytes, steps, scratch);
  };
  for_each_pass(rows, ldx * 4, kRows, p_begin, p_end, on_panel,
                [&](int64_t p, int64_t r, int64_t count) {
                  const std::uint8_t* panel = packed + p * panel_bytes;
                  const float* s = scales + p * kblocks;
                  const float* xr = x + r * ldx;
                  float* yr = y + r * ldy + p * kPanelRows;
                  const int64_t cols = std::min(kPanelRows, out - p * kPanelRows);
                  with_rows(count, [&]<int XR>() {
                    if (decoded)
                      block_avx512<XR, true>(panel, scratch, s, kblocks, xr, ldx, yr, ldy, cols);
                    else
                      block_avx512<XR, false>(panel, nullptr, s, kblocks, xr, ldx, yr, ldy, cols);
                  });
                });
}

// ------------------------------------------------------------------------------- AVX512-BF16

/// 32 bytes (16 outputs x 2 columns) -> 32 bf16 lanes holding the E4M3 values exactly (no scale):
/// normal codes by exponent rebias (e + 120), subnormal codes (magnitude < 8) from `table`.
ENGRAM_TARGET_AVX512BF16 inline __m512i decode32_bf16(const std::uint8_t* p,
                                                      __m512i table) noexcept {
  const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i magnitude = _mm512_and_si512(b, _mm512_set1_epi16(0x7F));
  const __m512i normal =
      _mm512_add_epi16(_mm512_slli_epi16(magnitude, 4), _mm512_set1_epi16(120 << 7));
  const __mmask32 subnormal = _mm512_cmplt_epu16_mask(magnitude, _mm512_set1_epi16(8));
  const __m512i value = _mm512_mask_permutexvar_epi16(normal, subnormal, magnitude, table);
  return _mm512_ternarylogic_epi32(value, _mm512_slli_epi16(b, 8),
                                   _mm512_set1_epi16(static_cast<short>(0x8000)), 0xF8);
}

/// bf16 bits of the E4M3 subnormal codes 0..7 (m * 2^-9) in the first 8 lanes.
ENGRAM_TARGET_AVX512BF16 inline __m512i subnormal_table() noexcept {
  // 0, 2^-9, 2^-8, 1.5 * 2^-8, 2^-7, 1.25 * 2^-7, 1.5 * 2^-7, 1.75 * 2^-7
  return _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                          (120 << 7) | 0x60, (120 << 7) | 0x40, (120 << 7) | 0x20, 120 << 7,
                          (119 << 7) | 0x40, 119 << 7, 118 << 7, 0);
}

/// A whole panel decoded to bf16 once, for passes of many rows: step q's 64 values at 64 * q.
ENGRAM_TARGET_AVX512BF16 inline void decode_panel_bf16(const std::uint8_t* panel, int64_t steps,
                                                       std::uint16_t* out) noexcept {
  const __m512i table = subnormal_table();
  for (int64_t q = 0; q < steps; ++q) {
    _mm512_storeu_si512(out + 64 * q, decode32_bf16(panel + q * kStepBytes, table));
    _mm512_storeu_si512(out + 64 * q + 32, decode32_bf16(panel + q * kStepBytes + 32, table));
  }
}

/// XR x rows against one panel: its bytes streamed once (prefetched kPrefetchBytes ahead) and
/// decoded in registers, or (kDecoded) read from decode_panel_bf16's `decoded`; both sum alike:
/// per 32-column block, vdpbf16ps partial sums per output (f32, two products a step), folded into
/// the f32 total with one FMA by the block scale.
template <int XR, bool kDecoded>
ENGRAM_TARGET_AVX512BF16 inline void block_bf16(const std::uint8_t* panel,
                                                const std::uint16_t* decoded, const float* scales,
                                                int64_t kblocks, const std::uint16_t* x,
                                                int64_t ldx, float* y, int64_t ldy,
                                                int64_t cols) noexcept {
  const __m512i table = subnormal_table();
  __m512 total[XR][2];
  for (int r = 0; r < XR; ++r) total[r][0] = total[r][1] = _mm512_setzero_ps();
  for (int64_t kb = 0; kb < kblocks; ++kb) {
    __m512 part[XR][2];
    for (int r = 0; r < XR; ++r) part[r][0] = part[r][1] = _mm512_setzero_ps();
    for (int64_t q = 0; q < kBlock / 2; ++q) {
      const int64_t step = kb * (kBlock / 2) + q;
      __m512bh w0, w1;
      if constexpr (kDecoded) {
        w0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(decoded + 64 * step));
        w1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(decoded + 64 * step + 32));
      } else {
        const std::uint8_t* w = panel + step * kStepBytes;
        _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes), _MM_HINT_T0);
        w0 = reinterpret_cast<__m512bh>(decode32_bf16(w, table));
        w1 = reinterpret_cast<__m512bh>(decode32_bf16(w + 32, table));
      }
      for (int r = 0; r < XR; ++r) {
        const auto xv = reinterpret_cast<__m512bh>(
            _mm512_set1_epi32(static_cast<int>(load_pair(x + r * ldx + 2 * step))));
        part[r][0] = _mm512_dpbf16_ps(part[r][0], xv, w0);
        part[r][1] = _mm512_dpbf16_ps(part[r][1], xv, w1);
      }
    }
    const __m512 scale = _mm512_set1_ps(scales[kb]);
    for (int r = 0; r < XR; ++r) {
      total[r][0] = _mm512_fmadd_ps(part[r][0], scale, total[r][0]);
      total[r][1] = _mm512_fmadd_ps(part[r][1], scale, total[r][1]);
    }
  }
  for (int r = 0; r < XR; ++r)
    for (int h = 0; h < 2; ++h) {
      const int64_t c0 = 16 * h;
      if (c0 >= cols) break;
      const int64_t n = std::min<int64_t>(16, cols - c0);
      _mm512_mask_storeu_ps(y + r * ldy + c0, static_cast<__mmask16>((1u << n) - 1u), total[r][h]);
    }
}

/// Panels [p_begin, p_end) for x [rows][ldx] (bf16 bits, zero-padded), y [rows][ldy]. A pass of
/// more than one register block first decodes each panel into `scratch` (steps * 64 values).
ENGRAM_TARGET_AVX512BF16 inline void panels_bf16(const std::uint8_t* packed, const float* scales,
                                                 int64_t kblocks, int64_t out,
                                                 const std::uint16_t* x, int64_t rows, int64_t ldx,
                                                 float* y, int64_t ldy, int64_t p_begin,
                                                 int64_t p_end, std::uint16_t* scratch) noexcept {
  constexpr int64_t kRows = 4;
  const int64_t steps = kblocks * kBlock / 2, panel_bytes = steps * kStepBytes;
  bool decoded = false;
  const auto on_panel = [&](int64_t p, int64_t pass) {
    decoded = pass > kRows;
    if (decoded) decode_panel_bf16(packed + p * panel_bytes, steps, scratch);
  };
  for_each_pass(rows, ldx * 2, kRows, p_begin, p_end, on_panel,
                [&](int64_t p, int64_t r, int64_t count) {
                  const std::uint8_t* panel = packed + p * panel_bytes;
                  const float* s = scales + p * kblocks;
                  const std::uint16_t* xr = x + r * ldx;
                  float* yr = y + r * ldy + p * kPanelRows;
                  const int64_t cols = std::min(kPanelRows, out - p * kPanelRows);
                  with_rows(count, [&]<int XR>() {
                    if (decoded)
                      block_bf16<XR, true>(panel, scratch, s, kblocks, xr, ldx, yr, ldy, cols);
                    else
                      block_bf16<XR, false>(panel, nullptr, s, kblocks, xr, ldx, yr, ldy, cols);
                  });
                });
}

}  // namespace engram::detail::fp8

#endif  // ENGRAM_FP8_X86
