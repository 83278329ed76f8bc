// engram/hashing/detail/multiply_xor_x86.hpp: the AVX-512 bodies of NumpyMultiplyXor::hash_rows.
//
// Same contract as NumpyMultiplyXor::hash_rows_reference (hashing/ngram_hasher.hpp, the spec):
// out[t, (n-2)*H + h] = floor_mod(XOR_{k<n} x[t-k] * m[k], prime[(n-2)*H + h]) for n = 2..N. The
// heads of one order go in 8-lane vectors (the mix broadcast, one FastMod divisor per lane, a tail
// of fewer than 8 heads stored masked); shapes with N <= 5 and H <= 16 run a kernel specialised on
// (N - 1, ceil(H / 8)) that keeps the divisor constants in registers. Compiled only where the
// translation unit targets AVX512DQ (ENGRAM_HASHING_HAVE_AVX512). Stateless; noexcept; the
// constants are borrowed from the policy for the duration of a call.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engram/hashing/fast_mod.hpp"

namespace engram::detail {

/// Heads per vector of the AVX-512 kernels.
inline constexpr int64_t kMultiplyXorLanes = 8;

/// Borrowed view of a NumpyMultiplyXor's constants: N odd multipliers and, per order, lane_heads
/// (H rounded up to a multiple of 8; padding lanes repeat the order's first head) FastMod lanes.
struct MultiplyXorLanes {
  int64_t max_ngram_size;
  int64_t heads;
  int64_t lane_heads;
  const int64_t* multipliers;
  const uint64_t* divisor;
  const uint64_t* magic;
  const uint64_t* adjust;
};

#if ENGRAM_HASHING_HAVE_AVX512

/// Store mask of the last 8-head chunk of an order.
inline __mmask8 multiply_xor_tail_mask(const MultiplyXorLanes& l) noexcept {
  const int64_t rest = l.heads - (l.lane_heads - kMultiplyXorLanes);  // heads in the last chunk
  return static_cast<__mmask8>((1u << static_cast<unsigned>(rest)) - 1u);
}

/// Any shape: constants loaded per chunk.
inline void multiply_xor_avx512_generic(const MultiplyXorLanes& l, const int64_t* x, int64_t count,
                                        int64_t* out) noexcept {
  const int64_t columns = (l.max_ngram_size - 1) * l.heads;
  const int64_t* m = l.multipliers;
  const int64_t chunks = l.lane_heads / kMultiplyXorLanes;
  const __mmask8 tail = multiply_xor_tail_mask(l);
  for (int64_t t = 0; t < count; ++t) {
    const int64_t* xt = x + t;
    int64_t* row = out + t * columns;
    uint64_t mix = static_cast<uint64_t>(xt[0]) * static_cast<uint64_t>(m[0]);
    for (int64_t k = 1; k < l.max_ngram_size; ++k) {
      mix ^= static_cast<uint64_t>(xt[-k]) * static_cast<uint64_t>(m[k]);
      const int64_t lane_base = (k - 1) * l.lane_heads;
      int64_t* dst = row + (k - 1) * l.heads;
      for (int64_t c = 0; c < chunks; ++c) {
        const size_t i = static_cast<size_t>(lane_base + c * kMultiplyXorLanes);
        const FastMod8 mod = load_fast_mod8(&l.divisor[i], &l.magic[i], &l.adjust[i]);
        const __m512i r =
            reinterpret_cast<__m512i>(floor_mod_broadcast_avx512(static_cast<int64_t>(mix), mod));
        _mm512_mask_storeu_epi64(dst + c * kMultiplyXorLanes,
                                 c + 1 < chunks ? __mmask8{0xFF} : tail, r);
      }
    }
  }
}

/// kOrders = N - 1 and kChunks = lane_heads / 8 fixed: the constants stay in registers.
template <int kOrders, int kChunks>
void multiply_xor_avx512_fixed(const MultiplyXorLanes& l, const int64_t* x, int64_t count,
                               int64_t* out) noexcept {
  FastMod8 mods[kOrders][kChunks];  // local: stores to `out` cannot clobber them
  uint64_t m[kOrders + 1];
  for (int k = 0; k < kOrders; ++k)
    for (int c = 0; c < kChunks; ++c) {
      const size_t i = static_cast<size_t>(k * l.lane_heads + c * kMultiplyXorLanes);
      mods[k][c] = load_fast_mod8(&l.divisor[i], &l.magic[i], &l.adjust[i]);
    }
  for (int k = 0; k <= kOrders; ++k) m[k] = static_cast<uint64_t>(l.multipliers[k]);
  const int64_t heads = l.heads, columns = kOrders * heads;
  const __mmask8 tail = multiply_xor_tail_mask(l);
  for (int64_t t = 0; t < count; ++t) {
    int64_t* row = out + t * columns;
    uint64_t mix = static_cast<uint64_t>(x[t]) * m[0];
#pragma GCC unroll 4
    for (int k = 1; k <= kOrders; ++k) {
      mix ^= static_cast<uint64_t>(x[t - k]) * m[k];
#pragma GCC unroll 2
      for (int c = 0; c < kChunks; ++c) {
        const __m512i r = reinterpret_cast<__m512i>(
            floor_mod_broadcast_avx512(static_cast<int64_t>(mix), mods[k - 1][c]));
        int64_t* dst = row + (k - 1) * heads + c * kMultiplyXorLanes;
        if (c + 1 < kChunks)
          _mm512_storeu_si512(dst, r);
        else
          _mm512_mask_storeu_epi64(dst, tail, r);
      }
    }
  }
}

/// Dispatch: the fixed kernel for N <= 5 and H <= 16, else the generic one.
inline void multiply_xor_avx512(const MultiplyXorLanes& l, const int64_t* x, int64_t count,
                                int64_t* out) noexcept {
  const int64_t orders = l.max_ngram_size - 1, chunks = l.lane_heads / kMultiplyXorLanes;
  using Kernel = void (*)(const MultiplyXorLanes&, const int64_t*, int64_t, int64_t*) noexcept;
  static constexpr Kernel kFixed[2][4] = {
      {&multiply_xor_avx512_fixed<1, 1>, &multiply_xor_avx512_fixed<2, 1>,
       &multiply_xor_avx512_fixed<3, 1>, &multiply_xor_avx512_fixed<4, 1>},
      {&multiply_xor_avx512_fixed<1, 2>, &multiply_xor_avx512_fixed<2, 2>,
       &multiply_xor_avx512_fixed<3, 2>, &multiply_xor_avx512_fixed<4, 2>}};
  if (chunks >= 1 && chunks <= 2 && orders >= 1 && orders <= 4)
    return kFixed[chunks - 1][orders - 1](l, x, count, out);
  multiply_xor_avx512_generic(l, x, count, out);
}

#endif  // ENGRAM_HASHING_HAVE_AVX512

}  // namespace engram::detail
