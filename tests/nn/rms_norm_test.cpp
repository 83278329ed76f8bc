// RmsNormT (fast) against reference::rms_norm and hand-computed values.
#include "engram/nn/rms_norm.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace engram {
namespace {

std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(RmsNorm, HandComputedRow) {
  const std::vector<float> x = {3.0f, 4.0f};
  const std::vector<float> w = {1.0f, 2.0f};
  std::vector<float> out(2);
  RmsNorm(w, 0.0).forward(x.data(), out.data(), 1);
  const float rms = std::sqrt(12.5f);  // mean(9, 16)
  EXPECT_FLOAT_EQ(out[0], 3.0f / rms);
  EXPECT_FLOAT_EQ(out[1], 8.0f / rms);
}

TEST(RmsNorm, EpsilonKeepsZeroRowsFinite) {
  const std::vector<float> x(5, 0.0f), w(5, 1.0f);
  std::vector<float> out(5, -1.0f);
  RmsNorm(w, kConvNormEps).forward(x.data(), out.data(), 1);
  for (float v : out) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(kGateNormEps, double(std::numeric_limits<float>::epsilon()));
}

TEST(RmsNorm, FastMatchesReference) {
  for (const int64_t dim : {1, 16, 85, 163, 1024}) {
    for (const double eps : {kGateNormEps, kConvNormEps, 1e-6}) {
      SCOPED_TRACE("dim " + std::to_string(dim) + ", eps " + std::to_string(eps));
      const int64_t rows = 3;
      const auto x = random_values(rows * dim, 1 + dim, 2.0f);
      const auto w = random_values(dim, 2 + dim);
      std::vector<float> fast(rows * dim + 4, 123.0f), ref(rows * dim);
      RmsNorm(w, eps).forward(x.data(), fast.data(), rows);
      reference::rms_norm(x.data(), w.data(), eps, ref.data(), rows, dim);
      for (int64_t i = 0; i < rows * dim; ++i)
        EXPECT_NEAR(fast[i], ref[i], 2e-6f * (1 + std::abs(ref[i])));
      for (int64_t i = rows * dim; i < rows * dim + 4; ++i)
        EXPECT_EQ(fast[i], 123.0f);  // no overrun
      // in place
      std::vector<float> in_place = x;
      RmsNorm(w, eps).forward(in_place.data(), in_place.data(), rows);
      for (int64_t i = 0; i < rows * dim; ++i) EXPECT_EQ(in_place[i], fast[i]);
    }
  }
}

TEST(RmsNorm, DoubleMatchesReference) {
  const int64_t dim = 85;
  std::vector<double> x(dim), w(dim), fast(dim), ref(dim);
  for (int64_t j = 0; j < dim; ++j) {
    x[j] = std::sin(0.3 * j) * 4;
    w[j] = 1 + 0.01 * j;
  }
  RmsNormT<double>(w, 1e-5).forward(x.data(), fast.data(), 1);
  reference::rms_norm(x.data(), w.data(), 1e-5, ref.data(), 1, dim);
  for (int64_t j = 0; j < dim; ++j) EXPECT_NEAR(fast[j], ref[j], 1e-14);
}

TEST(RmsNorm, RejectsEmptyWeight) {
  try {
    RmsNorm(std::span<const float>(), 1e-5);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("weight must not be empty"));
  }
}

}  // namespace
}  // namespace engram
