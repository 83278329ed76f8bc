// engram/memory/codec.hpp: row codecs, i.e. how one embedding-table row of `row_dim` values is
// stored in bytes, decoded to float / bfloat16 and encoded from float. The list of codecs the
// library uses is codec_registry.hpp; format details and rounding rules: docs/design/memory.md.
//
// Codecs are policy types (all members static) checked by the RowCodec concept:
//   codec::F32 / BF16 / F16  4 / 2 / 2 bytes per value (safetensors F32 / BF16 / F16)
//   codec::Fp8E4M3T<B>       1 byte per value (F8_E4M3 "fn") and one E8M0 scale byte (F8_E8M0)
//                            per block of B values: value[i] = e4m3(code[i]) * 2^(scale[i/B] - 127)
//                            (B = 32: the DeepSeek V4.1 layout, alias codec::Fp8E4M3)
// Layout: rows back to back (row g at g * row_bytes(row_dim)), scales in a second array (row g at
// g * scale_bytes(row_dim)); nothing is aligned.
//
// Guarantees: decode_row (AVX-512 where available) and decode_row_reference (scalar, the spec)
// give bit-identical results, NaN payloads aside, equal to the PyTorch reference's decode; decode
// to bfloat16 = decode to float, then round to nearest even; encode_row rounds to nearest even
// (FP8: smallest power-of-two block scale, saturating to +-448). Every function reads exactly
// row_dim values (and their scale bytes) and writes exactly row_dim outputs. decode is noexcept
// and allocation-free; validate row ids before calling (EmbeddingTableT does).
// Not guaranteed: which NaN a NaN input decodes to; with FTZ/DAZ set, FP8 scale bytes below 10 may
// decode to zero instead of a subnormal.
// Thread safety: pure functions.
//
//   engram::codec::BF16::decode_row(row_bytes, nullptr, row_dim, out_floats);
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>

#include "engram/detail/float16.hpp"

ENGRAM_AVX512_WARNINGS_OFF

namespace engram {

/// A row codec: bytes per row, scalar reference and fast decode to float and bfloat16, and encode.
/// `scales` is ignored (may be null) when scale_bytes(row_dim) == 0.
template <class C>
concept RowCodec = requires(const std::byte* row, const std::byte* scales, std::byte* out_row,
                            std::byte* out_scales, float* f32, BFloat16* bf16, const float* values,
                            int64_t row_dim) {
  { C::kName } -> std::convertible_to<std::string_view>;
  { C::kDTypeName } -> std::convertible_to<std::string_view>;       // safetensors dtype of rows
  { C::kScaleDTypeName } -> std::convertible_to<std::string_view>;  // "" when there are no scales
  { C::row_bytes(row_dim) }
  noexcept->std::same_as<int64_t>;
  { C::scale_bytes(row_dim) }
  noexcept->std::same_as<int64_t>;
  { C::decode_row(row, scales, row_dim, f32) }
  noexcept;
  { C::decode_row(row, scales, row_dim, bf16) }
  noexcept;
  { C::decode_row_reference(row, scales, row_dim, f32) }
  noexcept;
  { C::decode_row_reference(row, scales, row_dim, bf16) }
  noexcept;
  { C::encode_row(values, row_dim, out_row, out_scales) }
  noexcept;
};

namespace detail {

// ------------------------------------------------------------------ FP8 E4M3 / E8M0 scalars (the
// spec)

/// float value of an E4M3 (fn) byte, as the reference's e4m3_table().
inline float e4m3_to_f32(uint8_t byte) noexcept {
  const int exponent = (byte >> 3) & 0xF;
  const int mantissa = byte & 0x7;
  float magnitude;
  if (exponent == 0xF && mantissa == 0x7) {
    magnitude = std::numeric_limits<float>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa) / 8.0f, -6);
  } else {
    magnitude = std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
  }
  return (byte & 0x80) ? -magnitude : magnitude;
}

/// float value of an E8M0 byte: 2^(byte - 127); 0xFF is NaN. 2^-127 is a float subnormal (exact).
inline float e8m0_to_f32(uint8_t byte) noexcept {
  if (byte == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, static_cast<int>(byte) - 127);
}

/// Fast E8M0 -> float by bit construction (same values as e8m0_to_f32).
constexpr float e8m0_to_f32_bits(uint8_t byte) noexcept {
  if (byte == 0xFF) return std::bit_cast<float>(0x7FC00000u);
  if (byte == 0) return std::bit_cast<float>(0x00400000u);  // 2^-127
  return std::bit_cast<float>(static_cast<uint32_t>(byte) << 23);
}

/// float -> E4M3 (fn): round to nearest, ties to even, saturate finite and infinite values to
/// +-448; NaN -> 0x7F (sign kept).
inline uint8_t f32_to_e4m3(float value) noexcept {
  const uint32_t u = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint8_t>(sign | 0x7F);
  if (a >= 0x43E00000u) return static_cast<uint8_t>(sign | 0x7E);  // >= 448 (and inf): saturate
  if (a >= 0x3C800000u) {                                          // >= 2^-6: normal E4M3
    const uint32_t rounded = a + 0x7FFFFu + ((a >> 20) & 1u);
    // rebias the exponent 127 -> 7; |x| < 448 rounds to at most 448 = 0x7E, never to NaN
    return static_cast<uint8_t>(sign | ((rounded >> 20) - (120u << 3)));
  }
  // subnormal E4M3: quanta of 2^-9, |x| < 2^-6 (ties to even; 8 quanta = the smallest normal, 0x08)
  const float quanta = std::nearbyint(std::bit_cast<float>(a) * 512.0f);  // exact scaling
  return static_cast<uint8_t>(sign | static_cast<uint32_t>(quanta));
}

/// The scale exponent k in [-127, 127] of a block with largest finite magnitude `amax`: the
/// smallest k with amax <= 448 * 2^k (k = 0 for an all-zero block).
inline int e8m0_block_exponent(float amax) noexcept {
  if (!(amax > 0.0f)) return 0;
  if (!std::isfinite(amax)) return 127;
  int k = std::ilogb(amax) - 8;  // 448 = 1.75 * 2^8
  const double a = amax;
  while (k > -127 && a <= std::ldexp(448.0, k - 1)) --k;
  while (k < 127 && a > std::ldexp(448.0, k)) ++k;
  return std::clamp(k, -127, 127);
}

#if ENGRAM_HAVE_AVX512
/// out[i] = bf16(x[i]) for i in [0, n), 16 lanes at a time; load(i, mask) returns the 16 floats
/// x[i, i + 16) with lanes outside the mask zero (so the tail reads nothing past the row).
template <class Load16>
inline void store_bf16_x16(BFloat16* out, int64_t n, const Load16& load) noexcept {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        f32x16_to_bf16(load(i, static_cast<__mmask16>(0xFFFF))));
  if (i < n) {
    const __mmask16 m = lane_mask16(n - i);
    _mm256_mask_storeu_epi16(out + i, m, f32x16_to_bf16(load(i, m)));
  }
}

/// 32 E4M3 bytes (zero-extended to 16-bit lanes) -> the IEEE half with the same bits shifted into
/// place: sign -> bit 15, exponent/mantissa -> bits 7..13. That half equals the E4M3 value * 2^-8
/// for every normal and subnormal code (E4M3 subnormals land on half subnormals, which F16C widens
/// exactly whatever FTZ/DAZ say); NaN codes (magnitude 0x7F) become a half NaN.
inline __m512i e4m3x32_to_f16_scaled(__m512i bytes) noexcept {
  const __m512i magnitude = _mm512_and_si512(bytes, _mm512_set1_epi16(0x7F));
  // magnitude << 7 | (bytes << 8 & 0x8000)
  const __m512i half =
      _mm512_ternarylogic_epi32(_mm512_slli_epi16(magnitude, 7), _mm512_slli_epi16(bytes, 8),
                                _mm512_set1_epi16(static_cast<short>(0x8000)), 0xF8);
  const __mmask32 is_nan = _mm512_cmpeq_epi16_mask(magnitude, _mm512_set1_epi16(0x7F));
  return _mm512_mask_blend_epi16(is_nan, half, _mm512_set1_epi16(0x7E00));
}
#endif

}  // namespace detail

namespace codec {

/// float32 rows (the demo variant's nn.Embedding weight).
struct F32 {
  static constexpr std::string_view kName = "f32";
  static constexpr std::string_view kDTypeName = "F32";
  static constexpr std::string_view kScaleDTypeName = "";
  static constexpr int64_t row_bytes(int64_t row_dim) noexcept { return 4 * row_dim; }
  static constexpr int64_t scale_bytes(int64_t) noexcept { return 0; }

  static void decode_row(const std::byte* row, const std::byte*, int64_t row_dim,
                         float* out) noexcept {
    detail::f32_copy(row, out, row_dim);
  }
  static void decode_row(const std::byte* row, const std::byte*, int64_t row_dim,
                         BFloat16* out) noexcept {
    // row bytes are not float objects: read them with unaligned vector loads (or memcpy) only
#if ENGRAM_HAVE_AVX512
    detail::store_bf16_x16(out, row_dim, [row](int64_t i, __mmask16 m) {
      return _mm512_maskz_loadu_ps(m, row + 4 * i);
    });
#else
    decode_row_reference(row, nullptr, row_dim, out);
#endif
  }
  static void decode_row_reference(const std::byte* row, const std::byte*, int64_t row_dim,
                                   float* out) noexcept {
    detail::f32_copy_reference(row, out, row_dim);
  }
  static void decode_row_reference(const std::byte* row, const std::byte*, int64_t row_dim,
                                   BFloat16* out) noexcept {
    for (int64_t i = 0; i < row_dim; ++i) {
      float v;
      std::memcpy(&v, row + 4 * i, 4);
      out[i] = to_bfloat16(v);
    }
  }
  static void encode_row(const float* values, int64_t row_dim, std::byte* row,
                         std::byte*) noexcept {
    if (row_dim > 0) std::memcpy(row, values, static_cast<size_t>(row_dim) * 4);
  }
};

/// bfloat16 rows.
struct BF16 {
  static constexpr std::string_view kName = "bf16";
  static constexpr std::string_view kDTypeName = "BF16";
  static constexpr std::string_view kScaleDTypeName = "";
  static constexpr int64_t row_bytes(int64_t row_dim) noexcept { return 2 * row_dim; }
  static constexpr int64_t scale_bytes(int64_t) noexcept { return 0; }

  static void decode_row(const std::byte* row, const std::byte*, int64_t row_dim,
                         float* out) noexcept {
    detail::bf16_to_f32(row, out, row_dim);
  }
  static void decode_row(const std::byte* row, const std::byte*, int64_t row_dim,
                         BFloat16* out) noexcept {
    detail::bf16_copy(row, out, row_dim);
  }
  static void decode_row_reference(const std::byte* row, const std::byte*, int64_t row_dim,
                                   float* out) noexcept {
    detail::bf16_to_f32_reference(row, out, row_dim);
  }
  static void decode_row_reference(const std::byte* row, const std::byte*, int64_t row_dim,
                                   BFloat16* out) noexcept {
    for (int64_t i = 0; i < row_dim; ++i) std::memcpy(&out[i].bits, row + 2 * i, 2);
  }
  static void encode_row(const float* values, int64_t row_dim, std::byte* row,
                         std::byte*) noexcept {
    detail::f32_to_bf16(values, row, row_dim);
  }
};

/// IEEE binary16 rows.
struct F16 {
  static constexpr std::string_view kName = "f16";
  static constexpr std::string_view kDTypeName = "F16";
  static constexpr std::string_view kScaleDTypeName = "";
  static constexpr int64_t row_bytes(int64_t row_dim) noexcept { return 2 * row_dim; }
  static constexpr int64_t scale_bytes(int64_t) noexcept { return 0; }

  static void decode_row(const std::byte* row, const std::byte*, int64_t row_dim,
                         float* out) noexcept {
    detail::f16_to_f32(row, out, row_dim);
  }
  static void decode_row(const std::byte* row, const std::byte*, int64_t row_dim,
                         BFloat16* out) noexcept {
#if ENGRAM_HAVE_AVX512
    detail::store_bf16_x16(out, row_dim, [row](int64_t i, __mmask16 m) {
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
    });
#else
    decode_row_reference(row, nullptr, row_dim, out);
#endif
  }
  static void decode_row_reference(const std::byte* row, const std::byte*, int64_t row_dim,
                                   float* out) noexcept {
    detail::f16_to_f32_reference(row, out, row_dim);
  }
  static void decode_row_reference(const std::byte* row, const std::byte*, int64_t row_dim,
                                   BFloat16* out) noexcept {
    for (int64_t i = 0; i < row_dim; ++i) {
      uint16_t bits;
      std::memcpy(&bits, row + 2 * i, 2);
      out[i] = to_bfloat16(detail::f16_bits_to_f32(bits));
    }
  }
  static void encode_row(const float* values, int64_t row_dim, std::byte* row,
                         std::byte*) noexcept {
    detail::f32_to_f16(values, row, row_dim);
  }
};

/// FP8 E4M3 (fn) rows with one E8M0 scale byte per block of QuantBlock values.
/// @tparam QuantBlock values per scale (32 in DeepSeek V4.1 checkpoints); the last block of a row
///         may be shorter when row_dim is not a multiple.
template <int QuantBlock = 32>
struct Fp8E4M3T {
  static_assert(QuantBlock > 0, "QuantBlock must be positive");
  static constexpr int kQuantBlock = QuantBlock;
  static constexpr std::string_view kName = "fp8_e4m3";
  static constexpr std::string_view kDTypeName = "F8_E4M3";
  static constexpr std::string_view kScaleDTypeName = "F8_E8M0";
  static constexpr int64_t row_bytes(int64_t row_dim) noexcept { return row_dim; }
  static constexpr int64_t scale_bytes(int64_t row_dim) noexcept {
    return (row_dim + QuantBlock - 1) / QuantBlock;
  }

  static void decode_row(const std::byte* row, const std::byte* scales, int64_t row_dim,
                         float* out) noexcept {
#if ENGRAM_HAVE_AVX512
    for_each_chunk(row, scales, row_dim, [out](int64_t i, __mmask16 m, __m512 v) {
      _mm512_mask_storeu_ps(out + i, m, v);
    });
#else
    decode_row_reference(row, scales, row_dim, out);
#endif
  }
  static void decode_row(const std::byte* row, const std::byte* scales, int64_t row_dim,
                         BFloat16* out) noexcept {
#if ENGRAM_HAVE_AVX512
    for_each_chunk(row, scales, row_dim, [out](int64_t i, __mmask16 m, __m512 v) {
      _mm256_mask_storeu_epi16(out + i, m, detail::f32x16_to_bf16(v));
    });
#else
    decode_row_reference(row, scales, row_dim, out);
#endif
  }
  static void decode_row_reference(const std::byte* row, const std::byte* scales, int64_t row_dim,
                                   float* out) noexcept {
    for (int64_t i = 0; i < row_dim; ++i) {
      const float value = detail::e4m3_to_f32(static_cast<uint8_t>(row[i]));
      const float scale = detail::e8m0_to_f32(static_cast<uint8_t>(scales[i / QuantBlock]));
      out[i] = value * scale;
    }
  }
  static void decode_row_reference(const std::byte* row, const std::byte* scales, int64_t row_dim,
                                   BFloat16* out) noexcept {
    for (int64_t i = 0; i < row_dim; ++i) {
      const float value = detail::e4m3_to_f32(static_cast<uint8_t>(row[i]));
      const float scale = detail::e8m0_to_f32(static_cast<uint8_t>(scales[i / QuantBlock]));
      out[i] = to_bfloat16(value * scale);
    }
  }
  static void encode_row(const float* values, int64_t row_dim, std::byte* row,
                         std::byte* scales) noexcept {
    for (int64_t begin = 0; begin < row_dim; begin += QuantBlock) {
      const int64_t end = std::min<int64_t>(begin + QuantBlock, row_dim);
      float amax = 0.0f;
      for (int64_t i = begin; i < end; ++i)
        if (std::isfinite(values[i])) amax = std::max(amax, std::fabs(values[i]));
      const int k = detail::e8m0_block_exponent(amax);
      scales[begin / QuantBlock] = static_cast<std::byte>(k + 127);
      for (int64_t i = begin; i < end; ++i) {
        // x * 2^-k is exact in double; its float rounding only touches values far below E4M3's
        // smallest subnormal, which round to zero either way
        const auto scaled = static_cast<float>(std::ldexp(static_cast<double>(values[i]), -k));
        row[i] = static_cast<std::byte>(detail::f32_to_e4m3(scaled));
      }
    }
  }

 private:
#if ENGRAM_HAVE_AVX512
  // Calls store(i, mask, 16 decoded floats) for each run of <= 16 values within one scale block.
  // value = half(code) * 2^8 * 2^(scale - 127): one multiply by 2^(scale - 119) when that is a
  // finite float (scale <= 246; exactly the reference's single rounding), else two (x 2^8 is
  // exact).
  template <class Store>
  static void for_each_chunk(const std::byte* row, const std::byte* scales, int64_t row_dim,
                             Store&& store) noexcept {
    for (int64_t begin = 0, block = 0; begin < row_dim; begin += QuantBlock, ++block) {
      const auto scale_byte = static_cast<uint8_t>(scales[block]);
      const bool one_multiply = scale_byte <= 246;
      const __m512 factor = _mm512_set1_ps(
          one_multiply ? std::bit_cast<float>(static_cast<uint32_t>(scale_byte + 8) << 23)
                       : 256.0f);
      const __m512 scale = _mm512_set1_ps(detail::e8m0_to_f32_bits(scale_byte));
      const int64_t end = std::min<int64_t>(begin + QuantBlock, row_dim);
      for (int64_t i = begin; i < end; i += 32) {
        const int64_t n = end - i;
        __m512i bytes;
        if (n >= 32) {
          bytes =
              _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i)));
        } else {
          const auto m = static_cast<__mmask32>((1u << n) - 1u);
          bytes = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, row + i));
        }
        const __m512i half = detail::e4m3x32_to_f16_scaled(bytes);
        __m512 low = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(half)), factor);
        if (!one_multiply) low = _mm512_mul_ps(low, scale);
        store(i, detail::lane_mask16(n), low);
        if (n > 16) {
          __m512 high = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(half, 1)), factor);
          if (!one_multiply) high = _mm512_mul_ps(high, scale);
          store(i + 16, detail::lane_mask16(n - 16), high);
        }
      }
    }
  }
#endif
};

/// The V4.1 checkpoint format: 32 values per scale.
using Fp8E4M3 = Fp8E4M3T<32>;

static_assert(RowCodec<F32> && RowCodec<BF16> && RowCodec<F16> && RowCodec<Fp8E4M3>);

}  // namespace codec
}  // namespace engram

ENGRAM_AVX512_WARNINGS_ON
