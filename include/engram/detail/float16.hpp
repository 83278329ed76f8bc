// engram/detail/float16.hpp: 16-bit float storage types (bfloat16, IEEE binary16) and their exact
// conversions to and from float, scalar and AVX-512.
//
// Contract:
// - BFloat16 and Float16 are plain 2-byte bit containers (trivial, standard layout): arrays of them
//   are the same bytes as safetensors BF16 / F16 tensors. No arithmetic is defined on them.
// - Widening (bf16 -> f32, f16 -> f32) is exact. f16 subnormals are widened exactly; a signalling
//   f16 NaN widens to the quiet NaN with the same payload (as the F16C instruction does).
// - Narrowing (f32 -> bf16, f32 -> f16) rounds to nearest, ties to even (as PyTorch's
//   `.to(torch.bfloat16)` / `.half()`); overflow goes to infinity; NaN stays NaN (quietened, sign
//   and top payload bits kept). f32 -> f16 produces f16 subnormals.
// - Each array conversion has a scalar `*_reference` beside the fast path; both give the same bits
//   for every input (tests/memory/codec_test.cpp checks every 16-bit pattern and random floats).
// - The fast paths read exactly n inputs and write exactly n outputs (masked tails, no overrun).
// - Results do not depend on MXCSR (FTZ/DAZ): the fast paths use integer bit operations and F16C,
//   which widens f16 subnormals whatever DAZ says.
// Thread safety: pure functions.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define ENGRAM_HAVE_AVX512 1
#else
#define ENGRAM_HAVE_AVX512 0
#endif

// GCC 12 warns about the `_mm512_undefined_*()` pass-through operand inside its own AVX-512
// intrinsics once they are inlined (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#define ENGRAM_AVX512_WARNINGS_OFF \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define ENGRAM_AVX512_WARNINGS_ON _Pragma("GCC diagnostic pop")
#else
#define ENGRAM_AVX512_WARNINGS_OFF
#define ENGRAM_AVX512_WARNINGS_ON
#endif

ENGRAM_AVX512_WARNINGS_OFF

namespace engram {

/// bfloat16 bits (1 sign, 8 exponent, 7 mantissa): the upper half of a float.
struct BFloat16 {
  uint16_t bits;
};

/// IEEE 754 binary16 bits (1 sign, 5 exponent, 10 mantissa).
struct Float16 {
  uint16_t bits;
};

static_assert(sizeof(BFloat16) == 2 && sizeof(Float16) == 2);

namespace detail {

// ------------------------------------------------------------------ scalar (the specification)

/// bf16 -> f32: exact (a left shift of the bits).
constexpr float bf16_bits_to_f32(uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

/// f32 -> bf16, round to nearest even; NaN -> quiet NaN keeping sign and top payload.
constexpr uint16_t f32_to_bf16_bits(float value) noexcept {
  uint32_t u = std::bit_cast<uint32_t>(value);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

/// f16 -> f32: exact, subnormals included; NaN quietened with its payload.
constexpr float f16_bits_to_f32(uint16_t bits) noexcept {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  const uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1F) {
    const uint32_t quiet = mantissa != 0 ? 0x00400000u : 0u;
    return std::bit_cast<float>(sign | 0x7F800000u | quiet | (mantissa << 13));
  }
  if (exponent == 0) {
    // mantissa * 2^-24, exact in float (a normal float for every mantissa > 0)
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
  }
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

/// f32 -> f16, round to nearest even, subnormals produced, |x| >= 65520 -> inf, NaN quietened.
constexpr uint16_t f32_to_f16_bits(float value) noexcept {
  const uint32_t u = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to inf
  if (a >= 0x38800000u) {                                              // >= 2^-14: normal f16
    const uint32_t rounded = a + 0xFFFu + ((a >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded >> 13) - (112u << 10)));
  }
  const uint32_t exponent = a >> 23;
  if (exponent < 102) return sign;  // below 2^-25: rounds to zero
  // subnormal f16: round (mantissa with hidden bit) * 2^(exponent - 150) / 2^-24 to an integer
  const uint32_t mantissa = (a & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - exponent;  // 14..24
  uint32_t quanta = mantissa >> shift;
  const uint32_t remainder = mantissa & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (remainder > half || (remainder == half && (quanta & 1u))) ++quanta;
  return static_cast<uint16_t>(sign | quanta);  // quanta == 0x400 is the smallest normal: correct
}

// ------------------------------------------------------------------ arrays: byte-level kernels
// The kernels take untyped pointers so that codecs can run them straight on table bytes; the
// AVX-512 paths only touch memory through (masked) vector loads and stores.

inline void bf16_to_f32_reference(const void* in, float* out, int64_t n) noexcept {
  const auto* src = static_cast<const std::byte*>(in);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + 2 * i, 2);
    out[i] = bf16_bits_to_f32(bits);
  }
}

inline void f16_to_f32_reference(const void* in, float* out, int64_t n) noexcept {
  const auto* src = static_cast<const std::byte*>(in);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + 2 * i, 2);
    out[i] = f16_bits_to_f32(bits);
  }
}

inline void f32_to_bf16_reference(const float* in, void* out, int64_t n) noexcept {
  auto* dst = static_cast<std::byte*>(out);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t bits = f32_to_bf16_bits(in[i]);
    std::memcpy(dst + 2 * i, &bits, 2);
  }
}

inline void f32_to_f16_reference(const float* in, void* out, int64_t n) noexcept {
  auto* dst = static_cast<std::byte*>(out);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t bits = f32_to_f16_bits(in[i]);
    std::memcpy(dst + 2 * i, &bits, 2);
  }
}

/// f32 array -> f32 array read from unaligned bytes (the F32 codec's reference).
inline void f32_copy_reference(const void* in, float* out, int64_t n) noexcept {
  const auto* src = static_cast<const std::byte*>(in);
  for (int64_t i = 0; i < n; ++i) std::memcpy(out + i, src + 4 * i, 4);
}

#if ENGRAM_HAVE_AVX512
/// Mask of the first `n` lanes (n <= 16).
inline __mmask16 lane_mask16(int64_t n) noexcept {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

/// 16 floats -> 16 bf16 (round to nearest even, NaN quietened), as in f32_to_bf16_bits.
inline __m256i f32x16_to_bf16(__m512 x) noexcept {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  const __m512i quiet_nan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x0040));
  const __mmask16 is_nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(is_nan, rounded, quiet_nan));
}

/// 16 bf16 -> 16 floats.
inline __m512 bf16x16_to_f32(__m256i h) noexcept {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
#endif

inline void bf16_to_f32(const void* in, float* out, int64_t n) noexcept {
#if ENGRAM_HAVE_AVX512
  const auto* src = static_cast<const std::byte*>(in);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(
        out + i, bf16x16_to_f32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * i))));
  if (i < n) {
    const __mmask16 m = lane_mask16(n - i);
    _mm512_mask_storeu_ps(out + i, m, bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, src + 2 * i)));
  }
#else
  bf16_to_f32_reference(in, out, n);
#endif
}

inline void f16_to_f32(const void* in, float* out, int64_t n) noexcept {
#if ENGRAM_HAVE_AVX512
  const auto* src = static_cast<const std::byte*>(in);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(
        out + i,
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * i))));
  if (i < n) {
    const __mmask16 m = lane_mask16(n - i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + 2 * i)));
  }
#else
  f16_to_f32_reference(in, out, n);
#endif
}

inline void f32_to_bf16(const float* in, void* out, int64_t n) noexcept {
#if ENGRAM_HAVE_AVX512
  auto* dst = static_cast<std::byte*>(out);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * i),
                        f32x16_to_bf16(_mm512_loadu_ps(in + i)));
  if (i < n) {
    const __mmask16 m = lane_mask16(n - i);
    _mm256_mask_storeu_epi16(dst + 2 * i, m, f32x16_to_bf16(_mm512_maskz_loadu_ps(m, in + i)));
  }
#else
  f32_to_bf16_reference(in, out, n);
#endif
}

inline void f32_to_f16(const float* in, void* out, int64_t n) noexcept {
#if ENGRAM_HAVE_AVX512
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  auto* dst = static_cast<std::byte*>(out);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(in + i), kRound));
  if (i < n) {
    const __mmask16 m = lane_mask16(n - i);
    _mm256_mask_storeu_epi16(dst + 2 * i, m,
                             _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, in + i), kRound));
  }
#else
  f32_to_f16_reference(in, out, n);
#endif
}

/// f32 from unaligned bytes (the F32 codec's fast path: a copy).
inline void f32_copy(const void* in, float* out, int64_t n) noexcept {
  if (n > 0) std::memcpy(out, in, static_cast<size_t>(n) * 4);
}

/// bf16 from unaligned bytes into BFloat16 (a copy).
inline void bf16_copy(const void* in, void* out, int64_t n) noexcept {
  if (n > 0) std::memcpy(out, in, static_cast<size_t>(n) * 2);
}

}  // namespace detail

// ------------------------------------------------------------------ public conversions

/// f32 -> bf16, round to nearest even.
constexpr BFloat16 to_bfloat16(float value) noexcept { return {detail::f32_to_bf16_bits(value)}; }
/// f32 -> f16, round to nearest even.
constexpr Float16 to_float16(float value) noexcept { return {detail::f32_to_f16_bits(value)}; }
/// bf16 -> f32 (exact).
constexpr float to_float(BFloat16 value) noexcept { return detail::bf16_bits_to_f32(value.bits); }
/// f16 -> f32 (exact).
constexpr float to_float(Float16 value) noexcept { return detail::f16_bits_to_f32(value.bits); }

/// Array conversions (fast paths; n elements, no overrun).
inline void convert(const BFloat16* in, float* out, int64_t n) noexcept {
  detail::bf16_to_f32(in, out, n);
}
inline void convert(const Float16* in, float* out, int64_t n) noexcept {
  detail::f16_to_f32(in, out, n);
}
inline void convert(const float* in, BFloat16* out, int64_t n) noexcept {
  detail::f32_to_bf16(in, out, n);
}
inline void convert(const float* in, Float16* out, int64_t n) noexcept {
  detail::f32_to_f16(in, out, n);
}

}  // namespace engram

ENGRAM_AVX512_WARNINGS_ON
