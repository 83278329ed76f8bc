// engram/hashing/fast_mod.hpp: exact floor modulo by a fixed divisor without a division.
//
// floor_mod(s, p) = s - p * floor(s / p), in [0, p) for every int64 s (NumPy's `%` on int64 with a
// positive divisor). FastMod precomputes, for a divisor 2 <= p <= 2^63,
//
//   magic  = floor((2^64 - 1) / p)            // >= 2^64 / p - 1
//   adjust = p - (2^64 mod p)                 // in [1, p]
//
// and reduces u = uint64(s) as
//
//   q = mulhi64(u, magic)                     // floor(u / p) - 1 <= q <= floor(u / p)
//   r = u - q * p                             // in [0, 2p): one conditional subtraction
//   if s < 0: r = r + adjust, minus p if >= p // s = u - 2^64, so s mod p = (r - 2^64 mod p) mod p
//
// which is exact for all inputs (no rounding anywhere; the tests compare with `%` on random and
// extreme values: INT64_MIN, -1, 0, p - 1, p, multiples of p, INT64_MAX). floor_mod_reference is
// the plain `%` version. With AVX-512 F+DQ (compile-time, __AVX512DQ__) detail::floor_mod_avx512
// does the same on 8 lanes: mulhi64 from four 32x32->64 products (vpmuludq), q * p with vpmullq,
// the correction with unsigned min. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <limits>

#include "engram/error.hpp"

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define ENGRAM_HASHING_HAVE_AVX512 1
#else
#define ENGRAM_HASHING_HAVE_AVX512 0
#endif

namespace engram {

/// NumPy's int64 `value % divisor` for divisor > 0: the result is in [0, divisor).
constexpr int64_t floor_mod_reference(int64_t value, int64_t divisor) noexcept {
  const int64_t r = value % divisor;
  return r < 0 ? r + divisor : r;
}

/// Division-free exact modulo by one divisor fixed at construction (2 <= divisor <= 2^63).
class FastMod {
 public:
  static constexpr uint64_t kMaxDivisor = uint64_t{1} << 63;

  constexpr FastMod() noexcept : FastMod(Unchecked{}, 2) {}

  /// Throws engram::Error unless 2 <= divisor <= 2^63.
  explicit constexpr FastMod(uint64_t divisor) : FastMod(Unchecked{}, checked(divisor)) {}

  constexpr uint64_t divisor() const noexcept { return divisor_; }
  constexpr uint64_t magic() const noexcept { return magic_; }
  constexpr uint64_t negative_adjust() const noexcept { return adjust_; }

  /// u mod divisor for an unsigned 64-bit u.
  constexpr uint64_t reduce(uint64_t u) const noexcept {
    const uint64_t q = mul_high(u, magic_);
    const uint64_t r = u - q * divisor_;
    return r >= divisor_ ? r - divisor_ : r;
  }

  /// floor_mod_reference(value, divisor()), without a division.
  constexpr int64_t floor_mod(int64_t value) const noexcept {
    uint64_t r = reduce(static_cast<uint64_t>(value));
    if (value < 0) {
      r += adjust_;
      if (r >= divisor_) r -= divisor_;
    }
    return static_cast<int64_t>(r);
  }

 private:
  struct Unchecked {};

  static constexpr uint64_t checked(uint64_t divisor) {
    ENGRAM_CHECK(divisor >= 2 && divisor <= kMaxDivisor,
                 "FastMod: divisor must be in [2, 2^63], found ", divisor);
    return divisor;
  }

  static constexpr uint64_t mul_high(uint64_t a, uint64_t b) noexcept {
    __extension__ typedef unsigned __int128 Uint128;
    return static_cast<uint64_t>((static_cast<Uint128>(a) * b) >> 64);
  }

  constexpr FastMod(Unchecked, uint64_t divisor) noexcept
      : divisor_(divisor),
        magic_(std::numeric_limits<uint64_t>::max() / divisor),
        adjust_(divisor - (std::numeric_limits<uint64_t>::max() % divisor + 1) % divisor) {}

  uint64_t divisor_;
  uint64_t magic_;
  uint64_t adjust_;
};

namespace detail {

#if ENGRAM_HASHING_HAVE_AVX512
// Arithmetic is written with GCC/Clang vector extensions (operators on 8 x uint64) and only the
// multiplies as intrinsics: GCC 12's unmasked AVX-512 intrinsics start from an "undefined"
// register that trips -Wmaybe-uninitialized once inlined, while the zero-masked forms and the
// operators compile to the same instructions (vpmuludq, vpsrlq, vpminuq, ...) without it.
typedef uint64_t U64x8 __attribute__((vector_size(64), may_alias));

/// Per-lane constants of FastMod for 8 divisors.
struct FastMod8 {
  U64x8 divisor;
  U64x8 magic;
  U64x8 magic_high;  ///< magic >> 32
  U64x8 adjust;
};

inline U64x8 load_u64x8(const uint64_t* p) noexcept {
  return reinterpret_cast<U64x8>(_mm512_loadu_si512(p));
}

inline FastMod8 load_fast_mod8(const uint64_t* divisor, const uint64_t* magic,
                               const uint64_t* adjust) noexcept {
  const U64x8 m = load_u64x8(magic);
  return {load_u64x8(divisor), m, m >> 32, load_u64x8(adjust)};
}

/// Per lane: low 32 bits of a times low 32 bits of b, as 64 bits (vpmuludq).
inline U64x8 mul_u32x8(U64x8 a, U64x8 b) noexcept {
  return reinterpret_cast<U64x8>(_mm512_maskz_mul_epu32(
      static_cast<__mmask8>(0xFF), reinterpret_cast<__m512i>(a), reinterpret_cast<__m512i>(b)));
}

/// Per lane: unsigned minimum (vpminuq).
inline U64x8 min_u64x8(U64x8 a, U64x8 b) noexcept { return a < b ? a : b; }

/// Per lane: the high 64 bits of u * magic, from four 32x32->64 products.
inline U64x8 mul_high_avx512(U64x8 u, U64x8 u_high, U64x8 magic, U64x8 magic_high) noexcept {
  const U64x8 low_low = mul_u32x8(u, magic);
  const U64x8 low_high = mul_u32x8(u, magic_high);
  const U64x8 high_low = mul_u32x8(u_high, magic);
  const U64x8 high_high = mul_u32x8(u_high, magic_high);
  const U64x8 t = high_low + (low_low >> 32);
  const U64x8 w = (t & 0xFFFFFFFFull) + low_high;
  return high_high + (t >> 32) + (w >> 32);
}

/// Per lane: u mod divisor, for unsigned u (u_high = u >> 32). q * divisor is vpmullq.
inline U64x8 reduce_avx512(U64x8 u, U64x8 u_high, const FastMod8& m) noexcept {
  const U64x8 q = mul_high_avx512(u, u_high, m.magic, m.magic_high);
  const U64x8 r = u - q * m.divisor;
  return min_u64x8(r, r - m.divisor);  // r - divisor wraps to a huge value when r < divisor
}

/// Per lane: floor_mod(value, divisor) for signed int64 values.
inline U64x8 floor_mod_avx512(U64x8 value, const FastMod8& m) noexcept {
  const U64x8 r = reduce_avx512(value, value >> 32, m);
  const U64x8 negative =
      reinterpret_cast<U64x8>(reinterpret_cast<__v8di>(value) >> 63);  // all ones
  const U64x8 adjusted = r + (m.adjust & negative);
  return min_u64x8(adjusted, adjusted - m.divisor);
}

/// floor_mod of one value broadcast to 8 lanes (8 divisors): the sign test is a scalar branch.
inline U64x8 floor_mod_broadcast_avx512(int64_t value, const FastMod8& m) noexcept {
  const uint64_t u = static_cast<uint64_t>(value);
  const U64x8 u8 = {u, u, u, u, u, u, u, u};
  const uint64_t h = u >> 32;
  U64x8 r = reduce_avx512(u8, U64x8{h, h, h, h, h, h, h, h}, m);
  if (value < 0) {
    r += m.adjust;
    r = min_u64x8(r, r - m.divisor);
  }
  return r;
}
#endif

}  // namespace detail
}  // namespace engram
