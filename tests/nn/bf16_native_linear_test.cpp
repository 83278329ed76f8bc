// LinearT<float, BFloat16> with Bf16Compute::kNative (x rounded to bf16, exact products, f32 sums)
// against reference::linear_bf16_native on both of its kernels (vdpbf16ps and the f32 panel
// kernel, pinned with set_bf16_dot), and its fallback (kExact arithmetic) when the CPU or the ISA
// cap lacks AVX512-BF16.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engram/detail/cpu_features.hpp"
#include "engram/nn/any_linear.hpp"
#include "engram/nn/bf16_dot.hpp"
#include "engram/nn/linear.hpp"

namespace engram {
namespace {

std::vector<float> random_values(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<BFloat16> to_bf16(const std::vector<float>& v) {
  std::vector<BFloat16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_bfloat16(v[i]);
  return out;
}

struct IsaCap {
  explicit IsaCap(Isa isa) : old(set_isa_limit(isa)) {}
  ~IsaCap() { set_isa_limit(old); }
  Isa old;
};

struct DotPin {
  explicit DotPin(Bf16Dot dot) : old(set_bf16_dot(dot)) {}
  ~DotPin() { set_bf16_dot(old); }
  Bf16Dot old;
};

class Bf16NativeKernel : public ::testing::TestWithParam<Bf16Dot> {};

TEST_P(Bf16NativeKernel, MatchesReferenceOfTheSameArithmetic) {
  if (best_isa() < Isa::kAvx512Bf16) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  const DotPin pin(GetParam());
  std::mt19937 rng(16);
  for (const int64_t in : {1, 2, 85, 163}) {
    for (const int64_t out : {1, 7, 64, 85, 163}) {
      const auto w = to_bf16(random_values(static_cast<size_t>(out * in), rng, 0.1f));
      const auto bias = random_values(static_cast<size_t>(out), rng, 1.0f);
      const LinearT<float, BFloat16> native(w, out, in, bias, Bf16Compute::kNative);
      ASSERT_TRUE(native.native_bf16());
      // Builds without the AVX-512 panel kernel always multiply with vdpbf16ps.
      ASSERT_EQ(native.uses_vdpbf16ps(),
                GetParam() == Bf16Dot::kBf16 || !detail::kHasPanelKernel<float>);
      for (const int64_t rows : {1, 5, 37, 49, 70}) {
        SCOPED_TRACE(::testing::Message() << "in " << in << " out " << out << " rows " << rows);
        const auto x = random_values(static_cast<size_t>(rows * in), rng, 2.0f);
        for (const bool with_bias : {false, true}) {
          std::vector<float> expect(static_cast<size_t>(rows * out));
          reference::linear_bf16_native(x.data(), w.data(), with_bias ? bias.data() : nullptr,
                                        expect.data(), rows, in, out);
          // f32 summation bound: (in + 1) * 2^-23 * sum |x w| (+ |b|).
          std::vector<float> mag(expect.size());
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t o = 0; o < out; ++o) {
              double m = with_bias ? std::fabs(bias[o]) : 0.0;
              for (int64_t i = 0; i < in; ++i)
                m += std::fabs(double(x[r * in + i]) * detail::widen(w[o * in + i]));
              mag[r * out + o] = static_cast<float>(double(in + 2) * std::ldexp(m, -23));
            }
          constexpr float kSentinel = 777.0f;
          std::vector<float> y(expect.size() + 16, kSentinel);
          native.forward(x.data(), rows, y.data(), with_bias);
          for (size_t k = 0; k < expect.size(); ++k)
            ASSERT_NEAR(y[k], expect[k], mag[k] + 1e-30f) << k;
          for (size_t k = expect.size(); k < y.size(); ++k) ASSERT_EQ(y[k], kSentinel);
          // Rounding x matters: the native result is not the exact-widening one in general.
        }
      }
    }
  }
}

TEST_P(Bf16NativeKernel, DiffersFromExactWideningOnlyByRoundingX) {
  if (best_isa() < Isa::kAvx512Bf16) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  const DotPin pin(GetParam());
  std::mt19937 rng(3);
  const int64_t in = 256, out = 96, rows = 8;
  const auto w = to_bf16(random_values(static_cast<size_t>(out * in), rng, 0.1f));
  auto x = random_values(static_cast<size_t>(rows * in), rng, 1.0f);
  const LinearT<float, BFloat16> native(w, out, in, {}, Bf16Compute::kNative);
  const LinearT<float, BFloat16> exact(w, out, in, {}, Bf16Compute::kExact);
  EXPECT_FALSE(exact.native_bf16());
  std::vector<float> a(static_cast<size_t>(rows * out)), b(a.size());
  native.forward(x.data(), rows, a.data());
  exact.forward(x.data(), rows, b.data());
  EXPECT_NE(a, b);  // x not exact in bf16: the modes differ
  for (auto& v : x) v = detail::bf16_bits_to_f32(detail::f32_to_bf16_bits(v));
  native.forward(x.data(), rows, a.data());
  exact.forward(x.data(), rows, b.data());
  for (size_t k = 0; k < a.size(); ++k) ASSERT_NEAR(a[k], b[k], 1e-4f * (1.0f + std::fabs(b[k])));
}

INSTANTIATE_TEST_SUITE_P(Kernels, Bf16NativeKernel,
                         ::testing::Values(Bf16Dot::kBf16, Bf16Dot::kF32), [](const auto& info) {
                           return info.param == Bf16Dot::kBf16 ? "vdpbf16ps" : "f32_fma";
                         });

// W is packed for vdpbf16ps only when bf16_dot() picks it at construction; pinning the f32
// kernel afterwards still runs native arithmetic, on the f32 panel kernel.
TEST(Bf16NativeLinear, KernelFollowsTheDotSettingAtTheCall) {
  if (best_isa() < Isa::kAvx512Bf16) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  if (!detail::kHasPanelKernel<float>)
    GTEST_SKIP() << "built without the AVX-512 panel kernel: native bf16 is always vdpbf16ps";
  std::mt19937 rng(7);
  const int64_t in = 130, out = 70, rows = 13;
  const auto w = to_bf16(random_values(static_cast<size_t>(out * in), rng, 0.1f));
  const auto x = random_values(static_cast<size_t>(rows * in), rng, 1.0f);
  std::vector<float> expect(static_cast<size_t>(rows * out)), y(expect.size());
  reference::linear_bf16_native(x.data(), w.data(), nullptr, expect.data(), rows, in, out);
  const DotPin pin(Bf16Dot::kBf16);
  const LinearT<float, BFloat16> native(w, out, in, {}, Bf16Compute::kNative);
  EXPECT_TRUE(native.uses_vdpbf16ps());
  {
    const DotPin f32(Bf16Dot::kF32);
    EXPECT_TRUE(native.native_bf16());
    EXPECT_FALSE(native.uses_vdpbf16ps());
    native.forward(x.data(), rows, y.data());
    for (size_t k = 0; k < y.size(); ++k)
      ASSERT_NEAR(y[k], expect[k], 1e-5f * (1.0f + std::fabs(expect[k]))) << k;
  }
  const DotPin f32(Bf16Dot::kF32);
  const LinearT<float, BFloat16> fma(w, out, in, {}, Bf16Compute::kNative);
  set_bf16_dot(Bf16Dot::kBf16);  // not packed for it: stays on the f32 kernel
  EXPECT_FALSE(fma.uses_vdpbf16ps());
  fma.forward(x.data(), rows, y.data());
  for (size_t k = 0; k < y.size(); ++k)
    ASSERT_NEAR(y[k], expect[k], 1e-5f * (1.0f + std::fabs(expect[k]))) << k;
}

TEST(Bf16NativeLinear, FallsBackToExactWideningBelowAvx512Bf16) {
  std::mt19937 rng(5);
  const int64_t in = 85, out = 70, rows = 9;
  const auto w = to_bf16(random_values(static_cast<size_t>(out * in), rng, 0.1f));
  const auto x = random_values(static_cast<size_t>(rows * in), rng, 1.0f);
  const LinearT<float, BFloat16> native(w, out, in, {}, Bf16Compute::kNative);
  const IsaCap cap(Isa::kAvx512);
  EXPECT_FALSE(native.native_bf16());
  std::vector<float> y(static_cast<size_t>(rows * out)), expect(y.size());
  native.forward(x.data(), rows, y.data());
  reference::linear(x.data(), w.data(), static_cast<const float*>(nullptr), expect.data(), rows, in,
                    out);
  for (size_t k = 0; k < y.size(); ++k) ASSERT_NEAR(y[k], expect[k], 1e-5f) << k;
}

TEST(Bf16NativeLinear, ThroughAnyLinear) {
  std::mt19937 rng(9);
  const int64_t in = 40, out = 33;
  const auto w = to_bf16(random_values(static_cast<size_t>(out * in), rng, 0.1f));
  const auto x = random_values(static_cast<size_t>(in), rng, 1.0f);
  const AnyLinearT<float> any(LinearT<float, BFloat16>(w, out, in, {}, Bf16Compute::kNative));
  EXPECT_TRUE(any.is_bf16());
  EXPECT_EQ(any.bf16_weights().native_bf16(), best_isa() >= Isa::kAvx512Bf16);
  std::vector<float> y(static_cast<size_t>(out)), expect(y.size());
  any.forward(x.data(), 1, y.data());
  if (any.bf16_weights().native_bf16())
    reference::linear_bf16_native(x.data(), w.data(), nullptr, expect.data(), 1, in, out);
  else
    reference::linear(x.data(), w.data(), static_cast<const float*>(nullptr), expect.data(), 1, in,
                      out);
  for (size_t k = 0; k < y.size(); ++k) ASSERT_NEAR(y[k], expect[k], 1e-5f) << k;
}

}  // namespace
}  // namespace engram
