// ShortConvT against reference::short_conv, hand-computed taps, causality and streaming (history
// rows kept by the caller) == whole sequence.
#include "engram/nn/short_conv.hpp"
#include "support/random.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace engram {
namespace {

using test::normal_values;

float silu(double z) { return static_cast<float>(z / (1 + std::exp(-z))); }

TEST(ShortConv, HandComputedSingleChannel) {
  // hc = 1, d = 1: the norm maps x to ~sign(x) * w (x^2 / (x^2 + 1e-5)); kernel 2, dilation 2:
  // z[t] = w0 * xn[t - 2] + w1 * xn[t].
  const std::vector<float> x = {2, -3, 4, 5}, taps = {0.5f, 2.0f}, norm = {1.5f};
  const ShortConv conv(1, 1, 2, 2, taps, norm);
  EXPECT_EQ(conv.history_rows(), 2);
  std::vector<float> out(4), scratch(conv.scratch_size(4));
  conv.forward(x.data(), 4, out.data(), scratch);
  auto xn = [&](int t) { return t < 0 ? 0.0 : x[t] / std::sqrt(double(x[t]) * x[t] + 1e-5) * 1.5; };
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(out[t], silu(0.5 * xn(t - 2) + 2.0 * xn(t)), 1e-6) << t;
}

struct ConvCase {
  int64_t hc, d, kernel, dilation, steps;
};

class ShortConvCases : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ShortConvCases, FastMatchesReference) {
  const auto [hc, d, k, dil, steps] = GetParam();
  const int64_t c = hc * d;
  const auto x = normal_values(steps * c, 1, 0.0f, 2.0f);
  const auto taps = normal_values(c * k, 2, 0.0f, 0.5f);
  const auto norm = normal_values(c, 3, 1.0f, 0.1f);
  const ShortConv conv(d, hc, k, dil, taps, norm);
  std::vector<float> fast(steps * c + 5, 9.0f), ref(steps * c), scratch(conv.scratch_size(steps));
  conv.forward(x.data(), steps, fast.data(), scratch);
  reference::short_conv(x.data(), steps, hc, d, k, dil, taps.data(), norm.data(), ref.data());
  for (int64_t i = 0; i < steps * c; ++i)
    EXPECT_NEAR(fast[i], ref[i], 2e-6f * (1 + std::abs(ref[i])));
  for (int64_t i = steps * c; i < steps * c + 5; ++i) EXPECT_EQ(fast[i], 9.0f);
}

TEST_P(ShortConvCases, IsCausal) {
  const auto [hc, d, k, dil, steps] = GetParam();
  const int64_t c = hc * d, changed = steps / 2;
  auto x = normal_values(steps * c, 4);
  const auto taps = normal_values(c * k, 5), norm = normal_values(c, 6, 1.0f, 0.1f);
  const ShortConv conv(d, hc, k, dil, taps, norm);
  std::vector<float> a(steps * c), b(steps * c), scratch(conv.scratch_size(steps));
  conv.forward(x.data(), steps, a.data(), scratch);
  for (int64_t j = 0; j < c; ++j) x[changed * c + j] += 1.0f;
  conv.forward(x.data(), steps, b.data(), scratch);
  for (int64_t i = 0; i < changed * c; ++i) EXPECT_EQ(a[i], b[i]) << "output before the change";
}

TEST_P(ShortConvCases, StreamingWithHistoryEqualsWhole) {
  const auto [hc, d, k, dil, steps] = GetParam();
  const int64_t c = hc * d, h = (k - 1) * dil;
  const auto x = normal_values(steps * c, 7);
  const auto taps = normal_values(c * k, 8), norm = normal_values(c, 9, 1.0f, 0.1f);
  const ShortConv conv(d, hc, k, dil, taps, norm);
  std::vector<float> whole(steps * c), scratch(conv.scratch_size(steps));
  conv.forward(x.data(), steps, whole.data(), scratch);
  // one step at a time: a buffer of h history rows + 1 current row, shifted after each step
  std::vector<float> window((h + 1) * c, 0.0f), streamed(steps * c);
  for (int64_t t = 0; t < steps; ++t) {
    conv.normalize(x.data() + t * c, window.data() + h * c);
    conv.convolve_row(window.data() + h * c, c, streamed.data() + t * c, false);
    std::copy(window.begin() + c, window.end(), window.begin());
  }
  for (int64_t i = 0; i < steps * c; ++i) EXPECT_EQ(streamed[i], whole[i]);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ShortConvCases,
                         ::testing::Values(ConvCase{1, 1, 1, 1, 5}, ConvCase{1, 16, 4, 3, 20},
                                           ConvCase{4, 85, 4, 3, 17}, ConvCase{3, 163, 2, 4, 11},
                                           ConvCase{2, 40, 5, 2, 1}, ConvCase{2, 300, 3, 1, 9}),
                         [](const auto& info) {
                           const auto& p = info.param;
                           return "hc" + std::to_string(p.hc) + "_d" + std::to_string(p.d) + "_k" +
                                  std::to_string(p.kernel) + "_dil" + std::to_string(p.dilation) +
                                  "_T" + std::to_string(p.steps);
                         });

TEST(ShortConv, NormalizeScaledEqualsNormalizeOfScaledValue) {
  const int64_t hc = 3, d = 85;
  const auto value = normal_values(d, 10);
  const std::vector<float> alpha = {0.1f, 0.5f, 0.97f};
  const auto taps = normal_values(hc * d * 4, 11), norm = normal_values(hc * d, 12, 1.0f, 0.1f);
  const ShortConv conv(d, hc, 4, 3, taps, norm);
  std::vector<float> y(hc * d), a(hc * d), b(hc * d);
  for (int64_t i = 0; i < hc; ++i)
    for (int64_t j = 0; j < d; ++j) y[i * d + j] = alpha[i] * value[j];
  conv.normalize(y.data(), a.data());
  conv.normalize_scaled(value.data(), alpha.data(), b.data());
  for (int64_t i = 0; i < hc * d; ++i) EXPECT_NEAR(a[i], b[i], 2e-6f * (1 + std::abs(a[i])));
}

TEST(ShortConv, RejectsMismatchedWeights) {
  const std::vector<float> taps(10), norm(8);
  try {
    ShortConv(4, 2, 4, 3, taps, norm);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("weight has 10 values, expected [8, 1, 4]"));
  }
}

}  // namespace
}  // namespace engram
