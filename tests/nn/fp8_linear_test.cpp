// Fp8BlockLinear: every ISA path the machine has against forward_reference and an independent
// dequantise-then-double product; quantize_activations_e4m3 and the E4M3 table against goldens
// from v41_ref.py (tests/data/nn/make_fp8_golden.py); malformed weights and scales.
#include "engram/nn/fp8_linear.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace engram {
namespace {

using ::testing::HasSubstr;

struct Golden {
  std::vector<float> e4m3;  // 256
  std::vector<float> x, quantized;
};

Golden load_golden() {
  std::ifstream in(std::string(ENGRAM_TEST_DATA_DIR) + "/nn/fp8_golden.bin", std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  EXPECT_GE(bytes.size(), 1028u);
  Golden g;
  g.e4m3.resize(256);
  std::memcpy(g.e4m3.data(), bytes.data(), 1024);
  std::uint32_t n = 0;
  std::memcpy(&n, bytes.data() + 1024, 4);
  EXPECT_EQ(bytes.size(), 1028u + 8u * n);
  g.x.resize(n);
  g.quantized.resize(n);
  std::memcpy(g.x.data(), bytes.data() + 1028, 4u * n);
  std::memcpy(g.quantized.data(), bytes.data() + 1028 + 4u * n, 4u * n);
  return g;
}

// The ISA levels this machine has, scalar first.
std::vector<Isa> machine_isas() {
  std::vector<Isa> isas;
  for (int i = 0; i <= static_cast<int>(best_isa()); ++i) isas.push_back(static_cast<Isa>(i));
  return isas;
}

// Restores the ISA cap at scope exit.
struct IsaCap {
  explicit IsaCap(Isa isa) : old(set_isa_limit(isa)) {}
  ~IsaCap() { set_isa_limit(old); }
  Isa old;
};

// Every kernel this machine has: each ISA level, and at avx512bf16 both kernels (bf16_dot()).
struct Path {
  Isa isa;
  Bf16Dot dot;
  std::string name() const {
    return std::string(isa_name(isa)) + (dot == Bf16Dot::kBf16 ? "/bf16 dot" : "/f32 dot");
  }
};
std::vector<Path> machine_paths() {
  std::vector<Path> paths;
  for (const Isa isa : machine_isas()) {
    paths.push_back({isa, Bf16Dot::kF32});
    if (isa == Isa::kAvx512Bf16) paths.push_back({isa, Bf16Dot::kBf16});
  }
  return paths;
}

// Pins a path (ISA cap and prefill kernel) until scope exit.
struct PathCap {
  explicit PathCap(Path path) : isa(path.isa), dot(set_bf16_dot(path.dot)) {}
  ~PathCap() { set_bf16_dot(dot); }
  IsaCap isa;
  Bf16Dot dot;
};

std::vector<std::uint8_t> random_codes(int64_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> dist(0, 255);
  std::vector<std::uint8_t> codes(static_cast<size_t>(n));
  for (auto& c : codes) {
    do c = static_cast<std::uint8_t>(dist(rng));
    while ((c & 0x7F) == 0x7F);
  }
  return codes;
}

TEST(Fp8E4M3, TableMatchesOracleForAll256Codes) {
  const Golden g = load_golden();
  for (int c = 0; c < 256; ++c) {
    SCOPED_TRACE(c);
    const float v = detail::e4m3_to_f32(static_cast<std::uint8_t>(c));
    if ((c & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(v) && std::isnan(g.e4m3[c]));
    } else {
      EXPECT_EQ(v, g.e4m3[c]);
    }
  }
}

// Each kernel decodes every finite code exactly: x = identity picks single weights.
TEST(Fp8BlockLinear, EveryPathDecodesEveryFiniteCode) {
  const Golden g = load_golden();
  std::vector<std::uint8_t> finite;
  for (int c = 0; c < 256; ++c)
    if ((c & 0x7F) != 0x7F) finite.push_back(static_cast<std::uint8_t>(c));
  const int64_t in = static_cast<int64_t>(finite.size()), out = 35;  // 254 columns, 2 panels
  std::vector<std::uint8_t> codes(static_cast<size_t>(out * in));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) codes[o * in + i] = finite[(i + 7 * o) % in];
  std::vector<std::uint8_t> scales(2 * 8);
  for (size_t s = 0; s < scales.size(); ++s) scales[s] = static_cast<std::uint8_t>(120 + s);
  const Fp8BlockLinear lin(codes, scales, out, in);
  std::vector<float> x(static_cast<size_t>(in * in), 0.0f), y(static_cast<size_t>(in * out));
  for (int64_t i = 0; i < in; ++i) x[i * in + i] = 1.0f;
  for (const Path path : machine_paths()) {
    SCOPED_TRACE(path.name());
    const PathCap cap(path);
    lin.forward(x.data(), in, y.data());
    for (int64_t i = 0; i < in; ++i)
      for (int64_t o = 0; o < out; ++o) {
        const float scale = std::ldexp(1.0f, scales[(o / 32) * 8 + i / 32] - 127);
        ASSERT_EQ(y[i * out + o], g.e4m3[codes[o * in + i]] * scale) << "o " << o << " i " << i;
      }
  }
}

TEST(Fp8BlockLinear, EveryPathMatchesReference) {
  std::mt19937 rng(1515);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> scale_dist(112, 132);
  for (const int64_t in : {1, 33, 85, 163}) {
    for (const int64_t out : {1, 33, 85, 163}) {
      const auto codes = random_codes(out * in, rng);
      std::vector<std::uint8_t> scales(static_cast<size_t>(((out + 31) / 32) * ((in + 31) / 32)));
      for (auto& s : scales) s = static_cast<std::uint8_t>(scale_dist(rng));
      const Fp8BlockLinear lin(codes, scales, out, in, "test.wkv");
      ASSERT_EQ(lin.out_features(), out);
      ASSERT_EQ(lin.in_features(), in);
      for (const int64_t rows : {1, 3, 5, 48, 300}) {
        SCOPED_TRACE(::testing::Message() << "in " << in << " out " << out << " rows " << rows);
        std::vector<float> x(static_cast<size_t>(rows * in));
        for (auto& v : x) v = normal(rng) * 3.0f;
        for (int64_t r = 0; r < rows; ++r)
          quantize_activations_e4m3(std::span<float>(x.data() + r * in, static_cast<size_t>(in)));
        // Independent spec: dequantise from the caller's bytes, sum in double; and the bound on
        // f32 summation rounding, in * 2^-23 * sum |x w|.
        std::vector<double> expect(static_cast<size_t>(rows * out)),
            bound(static_cast<size_t>(rows * out));
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t o = 0; o < out; ++o) {
            double acc = 0, mag = 0;
            for (int64_t i = 0; i < in; ++i) {
              const double w = double(detail::e4m3_to_f32(codes[o * in + i])) *
                               std::ldexp(1.0, scales[(o / 32) * ((in + 31) / 32) + i / 32] - 127);
              acc += double(x[r * in + i]) * w;
              mag += std::fabs(double(x[r * in + i]) * w);
            }
            expect[r * out + o] = acc;
            bound[r * out + o] = double(in + 1) * std::ldexp(1.0, -23) * mag + 1e-30;
          }
        std::vector<float> ref(static_cast<size_t>(rows * out));
        lin.forward_reference(x.data(), rows, ref.data());
        for (size_t k = 0; k < ref.size(); ++k)
          ASSERT_NEAR(ref[k], expect[k], std::fabs(expect[k]) * 1e-7 + 1e-30) << k;
        for (const Path path : machine_paths()) {
          SCOPED_TRACE(path.name());
          const PathCap cap(path);
          constexpr float kSentinel = -1234.5f;
          std::vector<float> y(static_cast<size_t>(rows * out + 16), kSentinel);
          lin.forward(x.data(), rows, y.data());
          for (size_t k = 0; k < ref.size(); ++k)
            ASSERT_NEAR(y[k], ref[k], bound[k]) << "element " << k;
          for (size_t k = ref.size(); k < y.size(); ++k) ASSERT_EQ(y[k], kSentinel) << "overrun";
        }
      }
    }
  }
}

// uses_vdpbf16ps (what a roofline compares with the bf16 dot peak) names the kernel forward runs
// at the call: vdpbf16ps exactly at avx512bf16 with bf16_dot() kBf16.
TEST(Fp8BlockLinear, SaysWhetherItRunsOnVdpbf16ps) {
  std::mt19937 rng(16);
  const Fp8BlockLinear lin(random_codes(64 * 64, rng), std::vector<std::uint8_t>(4, 127), 64, 64,
                           "test.wkv");
  for (const Path path : machine_paths()) {
    SCOPED_TRACE(path.name());
    const PathCap cap(path);
    EXPECT_EQ(lin.uses_vdpbf16ps(), path.isa == Isa::kAvx512Bf16 && path.dot == Bf16Dot::kBf16);
  }
  const IsaCap scalar(Isa::kScalar);
  EXPECT_FALSE(lin.uses_vdpbf16ps());
}

// Decode steps stream the weights through registers, prefill decodes panels into a buffer: both
// must sum alike, so a row's output is the same whatever rows share the call (chunked == whole).
TEST(Fp8BlockLinear, EveryPathGivesEachRowTheSameResultWholeOrChunked) {
  std::mt19937 rng(16);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> scale_dist(112, 132);
  const int64_t out = 70, in = 1500, rows = 200;  // prefill passes of 84 (f32) and 172 (bf16) rows
  const auto codes = random_codes(out * in, rng);
  std::vector<std::uint8_t> scales(static_cast<size_t>(3 * 47));
  for (auto& s : scales) s = static_cast<std::uint8_t>(scale_dist(rng));
  const Fp8BlockLinear lin(codes, scales, out, in);
  std::vector<float> x(static_cast<size_t>(rows * in));
  for (auto& v : x) v = normal(rng);
  quantize_activations_e4m3(x);
  for (const Path path : machine_paths()) {
    SCOPED_TRACE(path.name());
    const PathCap cap(path);
    std::vector<float> whole(static_cast<size_t>(rows * out));
    lin.forward(x.data(), rows, whole.data());
    for (const int64_t chunk : {1, 2, 3, 5}) {
      SCOPED_TRACE(::testing::Message() << "chunk " << chunk);
      std::vector<float> chunked(whole.size());
      for (int64_t r = 0; r < rows; r += chunk)
        lin.forward(x.data() + r * in, std::min(chunk, rows - r), chunked.data() + r * out);
      for (size_t k = 0; k < whole.size(); ++k)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(chunked[k]), std::bit_cast<std::uint32_t>(whole[k]))
            << "element " << k;
    }
  }
}

TEST(Fp8BlockLinear, CopiesShareWeights) {
  std::mt19937 rng(7);
  const auto codes = random_codes(40 * 70, rng);
  const std::vector<std::uint8_t> scales(2 * 3, 127);
  const Fp8BlockLinear a(codes, scales, 40, 70);
  const Fp8BlockLinear b = a;
  for (int64_t o = 0; o < 40; ++o)
    for (int64_t i = 0; i < 70; ++i) ASSERT_EQ(b.code(o, i), codes[o * 70 + i]);
}

TEST(QuantizeActivationsE4M3, MatchesOracleActQuant) {
  const Golden g = load_golden();
  ASSERT_EQ(g.x.size() % 32, 0u);
  std::vector<float> x = g.x;
  quantize_activations_e4m3(x);
  for (size_t i = 0; i < x.size(); ++i) {
    SCOPED_TRACE(::testing::Message()
                 << "block " << i / 32 << " value " << i % 32 << " x " << g.x[i]);
    ASSERT_EQ(std::bit_cast<std::uint32_t>(x[i]), std::bit_cast<std::uint32_t>(g.quantized[i]))
        << x[i] << " vs " << g.quantized[i];
  }
  // Idempotent, and every output is exact in bf16.
  std::vector<float> again = x;
  quantize_activations_e4m3(again);
  EXPECT_EQ(again, x);
  for (const float v : x) EXPECT_EQ(detail::bf16_bits_to_f32(detail::f32_to_bf16_bits(v)), v);
}

TEST(QuantizeActivationsE4M3, ShortLastBlockAndOtherBlockSizes) {
  // 40 values in blocks of 32: the last 8 form their own block with their own scale.
  std::vector<float> x(40, 1000.0f);
  for (int i = 32; i < 40; ++i) x[i] = 0.3f;
  quantize_activations_e4m3(x);
  EXPECT_EQ(x[0], 1024.0f);   // 1000 / 4 = 250 -> 256 (E4M3 spacing 16 at 2^7..2^8), * 4
  EXPECT_EQ(x[39], 0.3125f);  // s = 2^-10: 307.2 -> 320 (spacing 32 at 2^8..448)
  std::vector<float> y = {3.0f, 0.01f, 200.0f, -0.1f};
  quantize_activations_e4m3(y, 2);  // blocks {3, 0.01} and {200, -0.1}
  EXPECT_EQ(y[0], 3.0f);
  EXPECT_EQ(y[1], 0.009765625f);  // s = 2^-7: 1.28 -> 1.25
  EXPECT_EQ(y[2], 192.0f);        // s = 2^-1: 400 is a tie of 384 and 416 -> even 384
  EXPECT_EQ(y[3], -0.1015625f);   // -0.2 -> -0.203125 (spacing 2^-6 at 2^-3..2^-2)
}

TEST(Fp8BlockLinear, RejectsMalformedWeights) {
  const std::vector<std::uint8_t> codes(40 * 70, 0x38), scales(2 * 3, 127);
  EXPECT_THAT([&] { Fp8BlockLinear(codes, scales, 40, 71, "layers.1.engram.wkv"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("layers.1.engram.wkv': weight has 2800")));
  EXPECT_THAT([&] { Fp8BlockLinear(codes, std::span(scales).first(5), 40, 70); },
              ::testing::ThrowsMessage<Error>(HasSubstr("scale has 5 bytes, expected [2, 3]")));
  EXPECT_THAT([&] { Fp8BlockLinear(codes, scales, 0, 70); },
              ::testing::ThrowsMessage<Error>(HasSubstr("sizes must be positive")));
  auto bad_scales = scales;
  bad_scales[4] = 0xFF;
  EXPECT_THAT(
      [&] { Fp8BlockLinear(codes, bad_scales, 40, 70, "wkv.scale"); },
      ::testing::ThrowsMessage<Error>(HasSubstr("'wkv.scale': scale of block [1, 1] is 0xFF")));
  for (const std::uint8_t nan : {std::uint8_t{0x7F}, std::uint8_t{0xFF}}) {
    auto bad_codes = codes;
    bad_codes[3 * 70 + 9] = nan;
    EXPECT_THAT([&] { Fp8BlockLinear(bad_codes, scales, 40, 70); },
                ::testing::ThrowsMessage<Error>(HasSubstr("weight [3, 9] is the E4M3 NaN code")));
  }
}

}  // namespace
}  // namespace engram
