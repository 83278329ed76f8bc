// Row codecs and 16-bit float conversions: fast paths == scalar references for every 16-bit
// pattern, every (E4M3, E8M0) byte pair and random rows of awkward widths; the references against
// independent oracles (the PyTorch e4m3_table, exact double arithmetic, brute-force nearest
// search).
#include "engram/memory/codec.hpp"

#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engram/detail/float16.hpp"

namespace engram {
namespace {

// Bits of the reference's e4m3_table() (engram_ref.py), printed from PyTorch.
constexpr std::array<uint32_t, 256> kE4m3TableBits = {
    0x00000000, 0x3B000000, 0x3B800000, 0x3BC00000, 0x3C000000, 0x3C200000, 0x3C400000, 0x3C600000,
    0x3C800000, 0x3C900000, 0x3CA00000, 0x3CB00000, 0x3CC00000, 0x3CD00000, 0x3CE00000, 0x3CF00000,
    0x3D000000, 0x3D100000, 0x3D200000, 0x3D300000, 0x3D400000, 0x3D500000, 0x3D600000, 0x3D700000,
    0x3D800000, 0x3D900000, 0x3DA00000, 0x3DB00000, 0x3DC00000, 0x3DD00000, 0x3DE00000, 0x3DF00000,
    0x3E000000, 0x3E100000, 0x3E200000, 0x3E300000, 0x3E400000, 0x3E500000, 0x3E600000, 0x3E700000,
    0x3E800000, 0x3E900000, 0x3EA00000, 0x3EB00000, 0x3EC00000, 0x3ED00000, 0x3EE00000, 0x3EF00000,
    0x3F000000, 0x3F100000, 0x3F200000, 0x3F300000, 0x3F400000, 0x3F500000, 0x3F600000, 0x3F700000,
    0x3F800000, 0x3F900000, 0x3FA00000, 0x3FB00000, 0x3FC00000, 0x3FD00000, 0x3FE00000, 0x3FF00000,
    0x40000000, 0x40100000, 0x40200000, 0x40300000, 0x40400000, 0x40500000, 0x40600000, 0x40700000,
    0x40800000, 0x40900000, 0x40A00000, 0x40B00000, 0x40C00000, 0x40D00000, 0x40E00000, 0x40F00000,
    0x41000000, 0x41100000, 0x41200000, 0x41300000, 0x41400000, 0x41500000, 0x41600000, 0x41700000,
    0x41800000, 0x41900000, 0x41A00000, 0x41B00000, 0x41C00000, 0x41D00000, 0x41E00000, 0x41F00000,
    0x42000000, 0x42100000, 0x42200000, 0x42300000, 0x42400000, 0x42500000, 0x42600000, 0x42700000,
    0x42800000, 0x42900000, 0x42A00000, 0x42B00000, 0x42C00000, 0x42D00000, 0x42E00000, 0x42F00000,
    0x43000000, 0x43100000, 0x43200000, 0x43300000, 0x43400000, 0x43500000, 0x43600000, 0x43700000,
    0x43800000, 0x43900000, 0x43A00000, 0x43B00000, 0x43C00000, 0x43D00000, 0x43E00000, 0x7FC00000,
    0x80000000, 0xBB000000, 0xBB800000, 0xBBC00000, 0xBC000000, 0xBC200000, 0xBC400000, 0xBC600000,
    0xBC800000, 0xBC900000, 0xBCA00000, 0xBCB00000, 0xBCC00000, 0xBCD00000, 0xBCE00000, 0xBCF00000,
    0xBD000000, 0xBD100000, 0xBD200000, 0xBD300000, 0xBD400000, 0xBD500000, 0xBD600000, 0xBD700000,
    0xBD800000, 0xBD900000, 0xBDA00000, 0xBDB00000, 0xBDC00000, 0xBDD00000, 0xBDE00000, 0xBDF00000,
    0xBE000000, 0xBE100000, 0xBE200000, 0xBE300000, 0xBE400000, 0xBE500000, 0xBE600000, 0xBE700000,
    0xBE800000, 0xBE900000, 0xBEA00000, 0xBEB00000, 0xBEC00000, 0xBED00000, 0xBEE00000, 0xBEF00000,
    0xBF000000, 0xBF100000, 0xBF200000, 0xBF300000, 0xBF400000, 0xBF500000, 0xBF600000, 0xBF700000,
    0xBF800000, 0xBF900000, 0xBFA00000, 0xBFB00000, 0xBFC00000, 0xBFD00000, 0xBFE00000, 0xBFF00000,
    0xC0000000, 0xC0100000, 0xC0200000, 0xC0300000, 0xC0400000, 0xC0500000, 0xC0600000, 0xC0700000,
    0xC0800000, 0xC0900000, 0xC0A00000, 0xC0B00000, 0xC0C00000, 0xC0D00000, 0xC0E00000, 0xC0F00000,
    0xC1000000, 0xC1100000, 0xC1200000, 0xC1300000, 0xC1400000, 0xC1500000, 0xC1600000, 0xC1700000,
    0xC1800000, 0xC1900000, 0xC1A00000, 0xC1B00000, 0xC1C00000, 0xC1D00000, 0xC1E00000, 0xC1F00000,
    0xC2000000, 0xC2100000, 0xC2200000, 0xC2300000, 0xC2400000, 0xC2500000, 0xC2600000, 0xC2700000,
    0xC2800000, 0xC2900000, 0xC2A00000, 0xC2B00000, 0xC2C00000, 0xC2D00000, 0xC2E00000, 0xC2F00000,
    0xC3000000, 0xC3100000, 0xC3200000, 0xC3300000, 0xC3400000, 0xC3500000, 0xC3600000, 0xC3700000,
    0xC3800000, 0xC3900000, 0xC3A00000, 0xC3B00000, 0xC3C00000, 0xC3D00000, 0xC3E00000, 0xFFC00000};

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }

// Same bits, or both NaN (NaN payloads are not part of the contract).
bool same_value(float a, float b) {
  return bits_of(a) == bits_of(b) || (std::isnan(a) && std::isnan(b));
}
bool same_value(BFloat16 a, BFloat16 b) {
  return a.bits == b.bits || (std::isnan(to_float(a)) && std::isnan(to_float(b)));
}

std::vector<std::byte> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng() & 0xFF);
  return out;
}

constexpr int64_t kPad = 16;  // sentinel values after every output buffer
constexpr uint32_t kSentinelF32 = 0x7FBADBADu;
constexpr uint16_t kSentinelBF16 = 0x7FBDu;

template <class T>
std::vector<T> padded_output(int64_t n) {
  std::vector<T> out(static_cast<size_t>(n + kPad));
  if constexpr (std::is_same_v<T, float>) {
    for (auto& v : out) v = std::bit_cast<float>(kSentinelF32);
  } else {
    for (auto& v : out) v.bits = kSentinelBF16;
  }
  return out;
}

template <class T>
bool sentinels_intact(const std::vector<T>& out, int64_t n) {
  for (size_t i = static_cast<size_t>(n); i < out.size(); ++i) {
    if constexpr (std::is_same_v<T, float>) {
      if (bits_of(out[i]) != kSentinelF32) return false;
    } else {
      if (out[i].bits != kSentinelBF16) return false;
    }
  }
  return true;
}

constexpr std::array<int64_t, 13> kRowDims = {1, 2, 7, 15, 16, 17, 31, 32, 33, 63, 64, 85, 163};

// ------------------------------------------------------------------ typed conformance suite

template <class Codec>
class CodecConformance : public ::testing::Test {};
TYPED_TEST_SUITE_P(CodecConformance);

// Fast decode == reference decode (float and bf16 outputs) on random bytes, including NaN codes
// and every scale byte; nothing written past row_dim.
TYPED_TEST_P(CodecConformance, FastDecodeMatchesReferenceOnRandomRows) {
  using Codec = TypeParam;
  std::mt19937_64 rng(42);
  for (int64_t row_dim : kRowDims) {
    SCOPED_TRACE(std::string(Codec::kName) + " row_dim " + std::to_string(row_dim));
    for (int trial = 0; trial < 64; ++trial) {
      const auto row = random_bytes(rng, static_cast<size_t>(Codec::row_bytes(row_dim)));
      const auto scales = random_bytes(rng, static_cast<size_t>(Codec::scale_bytes(row_dim)));
      auto fast = padded_output<float>(row_dim);
      auto ref = padded_output<float>(row_dim);
      auto fast16 = padded_output<BFloat16>(row_dim);
      auto ref16 = padded_output<BFloat16>(row_dim);
      Codec::decode_row(row.data(), scales.data(), row_dim, fast.data());
      Codec::decode_row_reference(row.data(), scales.data(), row_dim, ref.data());
      Codec::decode_row(row.data(), scales.data(), row_dim, fast16.data());
      Codec::decode_row_reference(row.data(), scales.data(), row_dim, ref16.data());
      for (int64_t i = 0; i < row_dim; ++i) {
        ASSERT_TRUE(same_value(fast[i], ref[i])) << "value " << i << " fast " << std::hex
                                                 << bits_of(fast[i]) << " ref " << bits_of(ref[i]);
        ASSERT_TRUE(same_value(fast16[i], ref16[i]))
            << "bf16 value " << i << " fast " << fast16[i].bits << " ref " << ref16[i].bits;
        // bf16 output is the float output rounded to nearest even
        ASSERT_TRUE(same_value(ref16[i], to_bfloat16(ref[i]))) << "bf16 value " << i;
      }
      ASSERT_TRUE(sentinels_intact(fast, row_dim));
      ASSERT_TRUE(sentinels_intact(ref, row_dim));
      ASSERT_TRUE(sentinels_intact(fast16, row_dim));
      ASSERT_TRUE(sentinels_intact(ref16, row_dim));
    }
  }
}

// decode(encode(decode(bytes))) == decode(bytes): decoded values are exactly representable, and
// encode writes exactly row_bytes / scale_bytes.
TYPED_TEST_P(CodecConformance, EncodeOfDecodedRowIsExact) {
  using Codec = TypeParam;
  std::mt19937_64 rng(7);
  for (int64_t row_dim : kRowDims) {
    SCOPED_TRACE(std::string(Codec::kName) + " row_dim " + std::to_string(row_dim));
    for (int trial = 0; trial < 64; ++trial) {
      auto row = random_bytes(rng, static_cast<size_t>(Codec::row_bytes(row_dim)));
      auto scales = random_bytes(rng, static_cast<size_t>(Codec::scale_bytes(row_dim)));
      // keep FP8 products normal floats (tiny scales make float subnormals that lose bits)
      for (auto& s : scales) s = static_cast<std::byte>(20 + static_cast<int>(s) % 200);
      std::vector<float> values(static_cast<size_t>(row_dim));
      Codec::decode_row_reference(row.data(), scales.data(), row_dim, values.data());
      for (auto& v : values)
        if (std::isnan(v)) v = 0.0f;  // NaN payloads are not preserved; 0 fits any scale

      std::vector<std::byte> row2(row.size() + kPad, std::byte{0xA5});
      std::vector<std::byte> scales2(scales.size() + kPad, std::byte{0xA5});
      Codec::encode_row(values.data(), row_dim, row2.data(), scales2.data());
      for (int64_t i = 0; i < kPad; ++i) {
        ASSERT_EQ(row2[row.size() + i], std::byte{0xA5}) << "row overrun";
        ASSERT_EQ(scales2[scales.size() + i], std::byte{0xA5}) << "scale overrun";
      }
      std::vector<float> again(static_cast<size_t>(row_dim));
      Codec::decode_row(row2.data(), scales2.data(), row_dim, again.data());
      for (int64_t i = 0; i < row_dim; ++i)
        ASSERT_EQ(bits_of(again[i]), bits_of(values[i])) << "value " << i << " = " << values[i];
    }
  }
}

// All-zero bytes decode to +0 (InMemoryTableT relies on this).
TYPED_TEST_P(CodecConformance, ZeroBytesDecodeToPositiveZero) {
  using Codec = TypeParam;
  for (int64_t row_dim : kRowDims) {
    SCOPED_TRACE(std::string(Codec::kName) + " row_dim " + std::to_string(row_dim));
    std::vector<std::byte> row(static_cast<size_t>(Codec::row_bytes(row_dim)));
    std::vector<std::byte> scales(static_cast<size_t>(Codec::scale_bytes(row_dim)));
    auto out = padded_output<float>(row_dim);
    Codec::decode_row(row.data(), scales.data(), row_dim, out.data());
    for (int64_t i = 0; i < row_dim; ++i) ASSERT_EQ(bits_of(out[i]), 0u) << "value " << i;
    EXPECT_TRUE(sentinels_intact(out, row_dim));
  }
}

REGISTER_TYPED_TEST_SUITE_P(CodecConformance, FastDecodeMatchesReferenceOnRandomRows,
                            EncodeOfDecodedRowIsExact, ZeroBytesDecodeToPositiveZero);
using AllCodecs =
    ::testing::Types<codec::F32, codec::BF16, codec::F16, codec::Fp8E4M3, codec::Fp8E4M3T<16>>;
INSTANTIATE_TYPED_TEST_SUITE_P(Codec, CodecConformance, AllCodecs);

// ------------------------------------------------------------------ bf16 / f16 conversions

// Independent oracle: the nearest of the two candidates around x, ties to the even one.
template <class Widen>
uint16_t nearest_even(float x, uint16_t below, Widen widen) {
  const uint16_t above = static_cast<uint16_t>(below + 1);
  const double lo = widen(below), hi = widen(above), v = x;
  const double dlo = std::fabs(v - lo), dhi = std::fabs(v - hi);
  if (dlo < dhi) return below;
  if (dhi < dlo) return above;
  return (below & 1) ? above : below;
}

TEST(Float16, Bf16WideningIsTheShiftForAll65536Patterns) {
  std::vector<uint16_t> in(65536);
  for (uint32_t i = 0; i < 65536; ++i) in[i] = static_cast<uint16_t>(i);
  auto fast = padded_output<float>(65536);
  auto ref = padded_output<float>(65536);
  detail::bf16_to_f32(in.data(), fast.data(), 65536);
  detail::bf16_to_f32_reference(in.data(), ref.data(), 65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    ASSERT_EQ(bits_of(ref[i]), i << 16) << i;
    ASSERT_EQ(bits_of(fast[i]), i << 16) << i;
  }
  EXPECT_TRUE(sentinels_intact(fast, 65536));
}

TEST(Float16, F16WideningMatchesF16cAndLdexpForAll65536Patterns) {
  std::vector<uint16_t> in(65536);
  for (uint32_t i = 0; i < 65536; ++i) in[i] = static_cast<uint16_t>(i);
  auto fast = padded_output<float>(65536);
  auto ref = padded_output<float>(65536);
  detail::f16_to_f32(in.data(), fast.data(), 65536);
  detail::f16_to_f32_reference(in.data(), ref.data(), 65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    ASSERT_EQ(bits_of(fast[i]), bits_of(ref[i])) << std::hex << "pattern " << i;
    const int exponent = (i >> 10) & 0x1F, mantissa = i & 0x3FF;
    if (exponent == 0x1F) {
      ASSERT_TRUE(mantissa ? std::isnan(ref[i]) : std::isinf(ref[i])) << i;
      continue;
    }
    const double magnitude =
        exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 25);
    ASSERT_EQ(static_cast<double>(ref[i]), (i & 0x8000) ? -magnitude : magnitude) << i;
  }
  EXPECT_TRUE(sentinels_intact(fast, 65536));
}

// Floats that stress rounding: every 16-bit prefix with assorted low bits (exact ties, just above
// and below a tie), specials, plus random patterns.
std::vector<float> rounding_cases() {
  std::vector<float> out;
  for (uint32_t high = 0; high < 65536; ++high) {
    for (uint32_t low : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu, 0x0FFFu, 0x1000u,
                         0x1001u, 0x2000u, 0x3000u, 0xE000u})
      out.push_back(std::bit_cast<float>((high << 16) | low));
  }
  std::mt19937 rng(1);
  for (int i = 0; i < 1 << 20; ++i)
    out.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  return out;
}

TEST(Float16, Bf16NarrowingFastMatchesReferenceAndNearestEven) {
  const auto in = rounding_cases();
  const auto n = static_cast<int64_t>(in.size());
  auto fast = padded_output<BFloat16>(n);
  auto ref = padded_output<BFloat16>(n);
  detail::f32_to_bf16(in.data(), fast.data(), n);
  detail::f32_to_bf16_reference(in.data(), ref.data(), n);
  EXPECT_TRUE(sentinels_intact(fast, n));
  const auto widen = [](uint16_t b) { return static_cast<double>(detail::bf16_bits_to_f32(b)); };
  for (int64_t i = 0; i < n; ++i) {
    const float x = in[i];
    ASSERT_EQ(fast[i].bits, ref[i].bits) << std::hex << "input " << bits_of(x);
    if (std::isnan(x)) {
      ASSERT_TRUE(std::isnan(to_float(ref[i])));
      ASSERT_EQ(ref[i].bits & 0x8000, (bits_of(x) >> 16) & 0x8000) << "NaN sign kept";
      continue;
    }
    const auto truncated = static_cast<uint16_t>(bits_of(x) >> 16);
    if ((truncated & 0x7FFF) >= 0x7F7F) continue;  // at the top binade: overflow checked below
    ASSERT_EQ(ref[i].bits, nearest_even(x, truncated, widen)) << std::hex << bits_of(x);
  }
  EXPECT_EQ(to_bfloat16(std::numeric_limits<float>::max()).bits, 0x7F80);  // rounds to inf
  EXPECT_EQ(to_bfloat16(-std::numeric_limits<float>::infinity()).bits, 0xFF80);
  EXPECT_EQ(to_bfloat16(std::bit_cast<float>(0x7F7F7FFFu)).bits, 0x7F7F);
  EXPECT_EQ(to_bfloat16(1.0f).bits, 0x3F80);
}

TEST(Float16, F16NarrowingFastMatchesReferenceAndNearestEven) {
  const auto in = rounding_cases();
  const auto n = static_cast<int64_t>(in.size());
  auto fast = padded_output<BFloat16>(n);  // 2-byte sentinel storage for Float16 bits
  auto ref = padded_output<BFloat16>(n);
  detail::f32_to_f16(in.data(), fast.data(), n);
  detail::f32_to_f16_reference(in.data(), ref.data(), n);
  EXPECT_TRUE(sentinels_intact(fast, n));
  const auto widen = [](uint16_t b) { return static_cast<double>(detail::f16_bits_to_f32(b)); };
  for (int64_t i = 0; i < n; ++i) {
    const float x = in[i];
    ASSERT_EQ(fast[i].bits, ref[i].bits) << std::hex << "input " << bits_of(x);
    if (std::isnan(x)) {
      ASSERT_TRUE(std::isnan(detail::f16_bits_to_f32(ref[i].bits)));
      continue;
    }
    const double a = std::fabs(static_cast<double>(x));
    const uint16_t sign = (bits_of(x) >> 16) & 0x8000;
    if (a >= 65520.0) {
      ASSERT_EQ(ref[i].bits, sign | 0x7C00) << x;
      continue;
    }
    // the f16 magnitude at or below |x| (largest pattern p with widen(p) <= |x|)
    uint16_t below = 0;
    for (int step = 1 << 14; step > 0; step >>= 1)
      if (below + step <= 0x7BFF && widen(static_cast<uint16_t>(below + step)) <= a)
        below = static_cast<uint16_t>(below + step);
    const uint16_t expected =
        below == 0x7BFF ? 0x7BFF : nearest_even(static_cast<float>(a), below, widen);
    ASSERT_EQ(ref[i].bits, sign | expected) << std::hex << bits_of(x);
  }
}

#if ENGRAM_HAVE_AVX512
// The fast paths do not depend on FTZ/DAZ (often set by inference code): same bits with them on.
TEST(Float16, FastPathsIgnoreFlushToZeroAndDenormalsAreZero) {
  std::vector<uint16_t> halves(65536);
  for (uint32_t i = 0; i < 65536; ++i) halves[i] = static_cast<uint16_t>(i);
  std::vector<float> subnormals;
  for (uint32_t bits = 1; bits < 0x00800000u; bits += 4099) {
    subnormals.push_back(std::bit_cast<float>(bits));
    subnormals.push_back(-std::bit_cast<float>(bits));
  }
  const auto n = static_cast<int64_t>(subnormals.size());
  std::vector<std::byte> fp8(256);
  for (int b = 0; b < 256; ++b) fp8[b] = static_cast<std::byte>(b);
  const std::array<std::byte, 8> scales = {std::byte{10},  std::byte{10},  std::byte{127},
                                           std::byte{127}, std::byte{200}, std::byte{200},
                                           std::byte{246}, std::byte{246}};
  auto run = [&](std::vector<float>& wide, std::vector<uint16_t>& bf16, std::vector<uint16_t>& f16,
                 std::vector<float>& decoded) {
    wide.resize(65536);
    bf16.resize(static_cast<size_t>(n));
    f16.resize(static_cast<size_t>(n));
    decoded.resize(256);
    detail::f16_to_f32(halves.data(), wide.data(), 65536);
    detail::f32_to_bf16(subnormals.data(), bf16.data(), n);
    detail::f32_to_f16(subnormals.data(), f16.data(), n);
    codec::Fp8E4M3::decode_row(fp8.data(), scales.data(), 256, decoded.data());
  };
  std::vector<float> wide, wide_ftz, decoded, decoded_ftz;
  std::vector<uint16_t> bf16, bf16_ftz, f16, f16_ftz;
  run(wide, bf16, f16, decoded);
  const unsigned int csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040u);  // FTZ | DAZ
  run(wide_ftz, bf16_ftz, f16_ftz, decoded_ftz);
  _mm_setcsr(csr);
  for (size_t i = 0; i < wide.size(); ++i) ASSERT_TRUE(same_value(wide[i], wide_ftz[i])) << i;
  EXPECT_EQ(bf16, bf16_ftz);
  EXPECT_EQ(f16, f16_ftz);
  for (size_t i = 0; i < decoded.size(); ++i)
    ASSERT_TRUE(same_value(decoded[i], decoded_ftz[i])) << i;
}
#endif

TEST(Float16, PublicConversionsRoundTrip) {
  EXPECT_EQ(to_float(to_bfloat16(1.5f)), 1.5f);
  EXPECT_EQ(to_float(to_float16(-65504.0f)), -65504.0f);
  EXPECT_EQ(to_float16(0x1p-24f).bits, 0x0001);  // smallest f16 subnormal
  EXPECT_EQ(to_float16(0x1p-25f).bits, 0x0000);  // tie to even: zero
  EXPECT_EQ(to_float16(0x1.8p-25f).bits, 0x0001);
  std::vector<float> values = {0.1f, -3.75f, 1e-6f, 70000.0f};
  std::vector<BFloat16> narrow(values.size());
  std::vector<float> wide(values.size());
  convert(values.data(), narrow.data(), 4);
  convert(narrow.data(), wide.data(), 4);
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(wide[i], to_float(to_bfloat16(values[i])));
}

// ------------------------------------------------------------------ FP8 E4M3 / E8M0

TEST(Fp8, E4m3DecodeMatchesThePyTorchTableForEveryByte) {
  for (int b = 0; b < 256; ++b) {
    SCOPED_TRACE("byte " + std::to_string(b));
    const float ref = detail::e4m3_to_f32(static_cast<uint8_t>(b));
    EXPECT_EQ(bits_of(ref), kE4m3TableBits[b]);
  }
  EXPECT_EQ(detail::e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(detail::e4m3_to_f32(0x01), 0x1p-9f);
  EXPECT_EQ(detail::e4m3_to_f32(0x38), 1.0f);
}

// Every (code, scale) pair, fast and reference, against exact double arithmetic rounded once.
TEST(Fp8, DecodeEveryCodeAndScalePairIsExact) {
  using Codec = codec::Fp8E4M3T<256>;  // one scale for a whole 256-value row
  std::vector<std::byte> row(256);
  for (int b = 0; b < 256; ++b) row[b] = static_cast<std::byte>(b);
  for (int s = 0; s < 256; ++s) {
    SCOPED_TRACE("scale byte " + std::to_string(s));
    const std::byte scale{static_cast<uint8_t>(s)};
    auto fast = padded_output<float>(256);
    auto ref = padded_output<float>(256);
    Codec::decode_row(row.data(), &scale, 256, fast.data());
    Codec::decode_row_reference(row.data(), &scale, 256, ref.data());
    for (int b = 0; b < 256; ++b) {
      const float code = std::bit_cast<float>(kE4m3TableBits[b]);
      if (s == 255 || std::isnan(code)) {
        ASSERT_TRUE(std::isnan(ref[b]) && std::isnan(fast[b])) << "byte " << b;
        continue;
      }
      const auto expected =
          static_cast<float>(static_cast<double>(code) * std::ldexp(1.0, s - 127));
      ASSERT_EQ(bits_of(ref[b]), bits_of(expected)) << "byte " << b;
      ASSERT_EQ(bits_of(fast[b]), bits_of(expected)) << "byte " << b;
    }
    ASSERT_TRUE(sentinels_intact(fast, 256));
  }
}

TEST(Fp8, ScaleBlocksApplyToTheirOwnValues) {
  // row_dim 85 with block 32: scales 2^0, 2^1, 2^-1 over values [0,32), [32,64), [64,85)
  std::vector<std::byte> row(85, std::byte{0x38});  // 1.0
  const std::array<std::byte, 3> scales = {std::byte{127}, std::byte{128}, std::byte{126}};
  std::vector<float> out(85);
  codec::Fp8E4M3::decode_row(row.data(), scales.data(), 85, out.data());
  for (int i = 0; i < 85; ++i) EXPECT_EQ(out[i], i < 32 ? 1.0f : i < 64 ? 2.0f : 0.5f) << i;
  EXPECT_EQ(codec::Fp8E4M3::scale_bytes(85), 3);
  EXPECT_EQ(codec::Fp8E4M3::scale_bytes(64), 2);
  EXPECT_EQ(codec::Fp8E4M3::scale_bytes(1), 1);
}

// f32_to_e4m3 against brute force: nearest finite E4M3 value, ties to the even code, saturating.
uint8_t brute_force_e4m3(float x) {
  if (std::isnan(x)) return std::signbit(x) ? 0xFF : 0x7F;
  const double v = std::fabs(static_cast<double>(x));
  int best = 0;
  double best_distance = std::numeric_limits<double>::infinity();
  for (int code = 0; code <= 0x7E; ++code) {
    const double d = std::fabs(v - detail::e4m3_to_f32(static_cast<uint8_t>(code)));
    if (d < best_distance || (d == best_distance && (code & 1) == 0)) {
      best = code;
      best_distance = d;
    }
  }
  return static_cast<uint8_t>((std::signbit(x) ? 0x80 : 0) | best);
}

TEST(Fp8, E4m3EncodeRoundsToNearestEvenAndSaturates) {
  std::vector<float> cases = {0.0f,
                              -0.0f,
                              448.0f,
                              449.0f,
                              464.0f,
                              479.0f,
                              480.0f,
                              1e30f,
                              std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::quiet_NaN(),
                              0x1p-10f,
                              0x1.0001p-10f,
                              0x1p-9f,
                              0x1.8p-9f,
                              0x1p-20f,
                              std::numeric_limits<float>::denorm_min()};
  // every code value, the midpoints between neighbours and a hair either side of them
  for (int code = 0; code < 0x7E; ++code) {
    const float a = detail::e4m3_to_f32(static_cast<uint8_t>(code));
    const float b = detail::e4m3_to_f32(static_cast<uint8_t>(code + 1));
    const float mid = static_cast<float>((static_cast<double>(a) + b) / 2);
    for (float x : {a, b, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f)}) {
      cases.push_back(x);
      cases.push_back(-x);
    }
  }
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> uniform(-500.0f, 500.0f);
  for (int i = 0; i < 20000; ++i) cases.push_back(uniform(rng) * std::ldexp(1.0f, -(i % 16)));
  for (float x : cases) {
    const uint8_t got = detail::f32_to_e4m3(x);
    ASSERT_EQ(static_cast<int>(got), static_cast<int>(brute_force_e4m3(x)))
        << "x = " << x << " (bits " << std::hex << bits_of(x) << ")";
  }
}

TEST(Fp8, BlockScaleIsTheSmallestPowerOfTwoFitting448) {
  EXPECT_EQ(detail::e8m0_block_exponent(0.0f), 0);
  EXPECT_EQ(detail::e8m0_block_exponent(INFINITY), 127);  // not produced by encode_row
  EXPECT_EQ(detail::e8m0_block_exponent(448.0f), 0);
  EXPECT_EQ(detail::e8m0_block_exponent(std::nextafter(448.0f, 1e9f)), 1);
  EXPECT_EQ(detail::e8m0_block_exponent(224.0f), -1);
  EXPECT_EQ(detail::e8m0_block_exponent(225.0f), 0);
  EXPECT_EQ(detail::e8m0_block_exponent(1.0f), -8);  // 1 <= 448 * 2^-8 = 1.75
  EXPECT_EQ(detail::e8m0_block_exponent(1.75f), -8);
  EXPECT_EQ(detail::e8m0_block_exponent(1.76f), -7);
  EXPECT_EQ(detail::e8m0_block_exponent(std::numeric_limits<float>::max()), 120);
  EXPECT_EQ(detail::e8m0_block_exponent(std::numeric_limits<float>::denorm_min()),
            -127);                     // clamped
  for (int k = -120; k <= 119; ++k) {  // 448 * 2^120 overflows float
    const auto top = static_cast<float>(std::ldexp(448.0, k));
    ASSERT_EQ(detail::e8m0_block_exponent(top), k) << k;
    ASSERT_EQ(detail::e8m0_block_exponent(std::nextafter(top, 0.0f)), k) << k;
    ASSERT_EQ(detail::e8m0_block_exponent(std::nextafter(top, INFINITY)), k + 1) << k;
  }
}

TEST(Fp8, EncodeRowPicksBlockScalesAndHandlesSpecials) {
  // block 0: max 10 -> k = ceil(log2(10 / 448)) = -5; block 1: zeros -> k = 0; block 2: NaN/inf
  std::vector<float> values(70, 0.0f);
  for (int i = 0; i < 32; ++i) values[i] = 10.0f * static_cast<float>(i) / 31.0f;
  values[64] = std::numeric_limits<float>::quiet_NaN();
  values[65] = std::numeric_limits<float>::infinity();
  values[66] = -std::numeric_limits<float>::infinity();
  values[67] = 2.0f;
  std::vector<std::byte> row(70);
  std::vector<std::byte> scales(3);
  codec::Fp8E4M3::encode_row(values.data(), 70, row.data(), scales.data());
  EXPECT_EQ(static_cast<int>(scales[0]), 127 - 5);
  EXPECT_EQ(static_cast<int>(scales[1]), 127);
  EXPECT_EQ(static_cast<int>(scales[2]), 127 - 7);  // finite max 2.0: 2 <= 448 * 2^-7, > 448 * 2^-8
  EXPECT_EQ(static_cast<int>(row[64]), 0x7F);
  EXPECT_EQ(static_cast<int>(row[65]), 0x7E);
  EXPECT_EQ(static_cast<int>(row[66]), 0xFE);
  std::vector<float> decoded(70);
  codec::Fp8E4M3::decode_row(row.data(), scales.data(), 70, decoded.data());
  EXPECT_EQ(decoded[31], 10.0f);  // 10 * 2^5 = 320 is an E4M3 value
  for (int i = 0; i < 32; ++i) {
    // relative error at most half an E4M3 ulp (2^-4), or a subnormal quantum
    EXPECT_LE(std::fabs(decoded[i] - values[i]),
              std::max(std::fabs(values[i]) * 0.0625f, std::ldexp(1.0f, -9 - 5)))
        << i;
  }
}

}  // namespace
}  // namespace engram
