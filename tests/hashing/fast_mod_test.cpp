// FastMod (division-free floor modulo) against the plain `%` reference, scalar and AVX-512, on
// random values and on the extremes: INT64_MIN, -1, 0, p - 1, p, multiples of p, INT64_MAX.
#include "engram/hashing/fast_mod.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <vector>

namespace engram {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

std::vector<uint64_t> divisors() {
  return {2,
          3,
          5,
          7,
          1009,
          646403,
          2147483647,
          4294967291,  // 2^31 - 1, prevprime(2^32)
          4294967311,
          4294967296,
          (uint64_t{1} << 40) + 15,
          2305843009213693951,  // 2^61 - 1
          (uint64_t{1} << 62) - 57,
          (uint64_t{1} << 62) + 135,
          9223372036854775783,  // 2^63 - 25
          (uint64_t{1} << 63) - 1,
          uint64_t{1} << 63};
}

/// Values that stress the correction steps for divisor p.
std::vector<int64_t> extreme_values(uint64_t p) {
  std::vector<int64_t> v = {kMin, kMin + 1, kMin + 2, -2, -1, 0, 1, 2, kMax - 1, kMax};
  if (p <= static_cast<uint64_t>(kMax)) {
    const int64_t d = static_cast<int64_t>(p);
    for (int64_t k : {int64_t{1}, int64_t{2}, int64_t{3}, kMax / d, kMax / d - 1}) {
      if (k <= 0 || k > kMax / d) continue;
      for (int64_t off : {int64_t{-1}, int64_t{0}, int64_t{1}}) {
        int64_t above = 0;
        if (!__builtin_add_overflow(k * d, off, &above)) v.push_back(above);  // k * d <= INT64_MAX
        v.push_back(-(k * d) + off);
      }
    }
    v.push_back(d - 1);
  }
  return v;
}

std::vector<int64_t> random_values(size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> v(count);
  for (size_t i = 0; i < count; ++i) {
    const uint64_t r = rng();
    switch (i % 4) {  // full range, small, around +-2^32, around +-2^62
      case 0:
        v[i] = static_cast<int64_t>(r);
        break;
      case 1:
        v[i] = static_cast<int64_t>(r % 2001) - 1000;
        break;
      case 2:
        v[i] = static_cast<int64_t>(r % (uint64_t{1} << 34)) - (int64_t{1} << 33);
        break;
      default:
        v[i] = static_cast<int64_t>(r >> 1) - (int64_t{1} << 61);
        break;
    }
  }
  return v;
}

/// floor modulo straight from the definition, for divisors up to 2^63 (which `%` on int64 can't
/// take): 128-bit arithmetic.
int64_t floor_mod_wide(int64_t value, uint64_t divisor) {
  __extension__ typedef __int128 Int128;
  Int128 r = static_cast<Int128>(value) % static_cast<Int128>(divisor);
  if (r < 0) r += divisor;
  return static_cast<int64_t>(r);
}

TEST(FloorModReference, IsNumpyFloorModulo) {
  EXPECT_EQ(floor_mod_reference(-1, 7), 6);
  EXPECT_EQ(floor_mod_reference(-7, 7), 0);
  EXPECT_EQ(floor_mod_reference(-8, 7), 6);
  EXPECT_EQ(floor_mod_reference(kMin, 7), 6);       // Python: (-2**63) % 7 == 6
  EXPECT_EQ(floor_mod_reference(kMax, 1009), 191);  // Python: (2**63 - 1) % 1009 == 191
  EXPECT_EQ(floor_mod_reference(13, 7), 6);
}

TEST(FastMod, ScalarMatchesReferenceOnExtremeAndRandomValues) {
  const std::vector<int64_t> random = random_values(20000, 3);
  for (uint64_t p : divisors()) {
    SCOPED_TRACE("divisor " + std::to_string(p));
    const FastMod m(p);
    std::vector<int64_t> values = extreme_values(p);
    values.insert(values.end(), random.begin(), random.end());
    for (int64_t v : values) {
      const int64_t expected = p <= static_cast<uint64_t>(kMax)
                                   ? floor_mod_reference(v, static_cast<int64_t>(p))
                                   : floor_mod_wide(v, p);
      ASSERT_EQ(m.floor_mod(v), expected) << "value " << v;
      ASSERT_EQ(m.reduce(static_cast<uint64_t>(v)), static_cast<uint64_t>(v) % p) << "value " << v;
    }
    EXPECT_EQ(m.reduce(std::numeric_limits<uint64_t>::max()),
              std::numeric_limits<uint64_t>::max() % p);
  }
}

TEST(FastMod, EverySmallDivisorOnASweep) {
  for (uint64_t p = 2; p < 3000; ++p) {
    const FastMod m(p);
    for (int64_t v :
         {kMin, int64_t{-1}, int64_t{0}, kMax, static_cast<int64_t>(p) - 1, static_cast<int64_t>(p),
          -static_cast<int64_t>(p), int64_t{-123456789}, int64_t{987654321987}})
      ASSERT_EQ(m.floor_mod(v), floor_mod_reference(v, static_cast<int64_t>(p)))
          << "divisor " << p << " value " << v;
  }
}

TEST(FastMod, RejectsDivisorsOutsideTheRange) {
  for (uint64_t bad : {uint64_t{0}, uint64_t{1}, (uint64_t{1} << 63) + 1}) {
    try {
      FastMod m(bad);
      FAIL() << "expected engram::Error for " << bad;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(),
                  HasSubstr("divisor must be in [2, 2^63], found " + std::to_string(bad)));
    }
  }
}

TEST(FastMod, IsConstexpr) {
  constexpr FastMod m(1009);
  static_assert(m.floor_mod(-1) == 1008);
  static_assert(m.floor_mod(std::numeric_limits<int64_t>::min()) ==
                floor_mod_reference(std::numeric_limits<int64_t>::min(), 1009));
  EXPECT_EQ(m.divisor(), 1009u);
}

#if ENGRAM_HASHING_HAVE_AVX512
TEST(FastModAvx512, LanesMatchScalar) {
  const std::vector<uint64_t> ds = divisors();
  const std::vector<int64_t> random = random_values(4000, 5);
  // Every window of 8 consecutive divisors (wrapping), so each divisor sits in every lane.
  for (size_t start = 0; start < ds.size(); ++start) {
    uint64_t divisor[8], magic[8], adjust[8];
    FastMod mods[8];
    for (int lane = 0; lane < 8; ++lane) {
      mods[lane] = FastMod(ds[(start + static_cast<size_t>(lane)) % ds.size()]);
      divisor[lane] = mods[lane].divisor();
      magic[lane] = mods[lane].magic();
      adjust[lane] = mods[lane].negative_adjust();
    }
    const detail::FastMod8 m8 = detail::load_fast_mod8(divisor, magic, adjust);
    std::vector<int64_t> values = extreme_values(ds[start]);
    values.insert(values.end(), random.begin(), random.end());
    while (values.size() % 8 != 0) values.push_back(kMin);
    for (size_t i = 0; i < values.size(); i += 8) {
      alignas(64) int64_t in[8], lanes[8], broadcast[8];
      for (int lane = 0; lane < 8; ++lane) in[lane] = values[i + static_cast<size_t>(lane)];
      const detail::U64x8 v = reinterpret_cast<detail::U64x8>(_mm512_load_si512(in));
      _mm512_store_si512(lanes, reinterpret_cast<__m512i>(detail::floor_mod_avx512(v, m8)));
      _mm512_store_si512(broadcast,
                         reinterpret_cast<__m512i>(detail::floor_mod_broadcast_avx512(in[0], m8)));
      for (int lane = 0; lane < 8; ++lane) {
        ASSERT_EQ(lanes[lane], mods[lane].floor_mod(in[lane]))
            << "lane " << lane << " divisor " << mods[lane].divisor() << " value " << in[lane];
        ASSERT_EQ(broadcast[lane], mods[lane].floor_mod(in[0]))
            << "lane " << lane << " divisor " << mods[lane].divisor() << " value " << in[0];
      }
    }
  }
}
#else
TEST(FastModAvx512, NotCompiledIn) { GTEST_SKIP() << "built without AVX512DQ: scalar path only"; }
#endif

}  // namespace
}  // namespace engram
