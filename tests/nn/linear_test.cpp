// LinearT (one Eigen GEMM on row-major operands) against reference::linear.
#include "engram/nn/linear.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace engram {
namespace {

using ::testing::HasSubstr;

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(Linear, HandComputed) {
  // W = [[1, 2, 3], [4, 5, 6]], b = [0.5, -1], x = [1, 0, -1]
  const std::vector<float> w = {1, 2, 3, 4, 5, 6}, b = {0.5f, -1.0f}, x = {1, 0, -1};
  std::vector<float> y(2);
  Linear(w, 2, 3, b).forward(x.data(), 1, y.data());
  EXPECT_EQ(y, (std::vector<float>{-1.5f, -3.0f}));
  Linear(w, 2, 3, b).forward(x.data(), 1, y.data(), /*add_bias=*/false);
  EXPECT_EQ(y, (std::vector<float>{-2.0f, -2.0f}));
}

TEST(Linear, FastMatchesReference) {
  for (const int64_t rows : {0, 1, 5, 37}) {
    for (const int64_t in : {1, 85, 163}) {
      for (const int64_t out : {1, 16, 85}) {
        for (const bool with_bias : {false, true}) {
          SCOPED_TRACE("rows " + std::to_string(rows) + " in " + std::to_string(in) + " out " +
                       std::to_string(out) + (with_bias ? " bias" : ""));
          const auto x = random_values(rows * in, 1);
          const auto w = random_values(out * in, 2);
          const auto b = random_values(out, 3);
          const Linear layer(w, out, in,
                             with_bias ? std::span<const float>(b) : std::span<const float>());
          std::vector<float> fast(rows * out + 3, 77.0f), ref(rows * out);
          layer.forward(x.data(), rows, fast.data());
          reference::linear(x.data(), w.data(), with_bias ? b.data() : nullptr, ref.data(), rows,
                            in, out);
          for (int64_t i = 0; i < rows * out; ++i)
            EXPECT_NEAR(fast[i], ref[i], 1e-5f * (1 + in / 16));
          for (int64_t i = rows * out; i < rows * out + 3; ++i) EXPECT_EQ(fast[i], 77.0f);
        }
      }
    }
  }
}

TEST(Linear, RejectsMismatchedSizes) {
  const std::vector<float> w(6), b(3);
  try {
    Linear(w, 2, 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("weight has 6 values, expected [2, 4]"));
  }
  try {
    Linear(w, 2, 3, b);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("bias has 3 values, expected 2"));
  }
}

}  // namespace
}  // namespace engram
