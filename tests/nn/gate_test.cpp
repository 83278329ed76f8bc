// The demo and fused gates against their references and hand-computed values, including the
// different treatment of a zero dot product (demo: sign(0) = 0; fused: +sqrt(1e-6)).
#include "engram/nn/gate.hpp"
#include "support/random.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace engram {
namespace {

using test::normal_values;

TEST(GateNonlinearity, SignedSqrt) {
  EXPECT_EQ(signed_sqrt(0.0f), 0.0f);  // torch.sign(0) == 0
  EXPECT_FLOAT_EQ(signed_sqrt(4.0f), 2.0f);
  EXPECT_FLOAT_EQ(signed_sqrt(-9.0f), -3.0f);
  EXPECT_FLOAT_EQ(signed_sqrt(1e-9f), 1e-3f);  // |g| floored at 1e-6
  EXPECT_FLOAT_EQ(signed_sqrt(-1e-9f), -1e-3f);
  EXPECT_FLOAT_EQ(signed_sqrt_zero_positive(0.0f), 1e-3f);  // torch.where(dot < 0, -g, g)
  EXPECT_FLOAT_EQ(signed_sqrt_zero_positive(-1e-9f), -1e-3f);
  EXPECT_FLOAT_EQ(signed_sqrt_zero_positive(16.0f), 4.0f);
  EXPECT_FLOAT_EQ(sigmoid(0.0f), 0.5f);
  EXPECT_NEAR(sigmoid(2.0), 0.8807970779778823, 1e-15);
}

TEST(EngramGate, HandComputedBranch) {
  // d = 2, key = hidden = [1, 0], unit norms: k = q = [sqrt(2), 0] (up to eps), <k, q> = 2,
  // g = 2 / sqrt(2) = sqrt(2), signed sqrt = 2^(1/4), alpha = sigmoid(2^(1/4)).
  const std::vector<float> key = {1, 0}, hidden = {1, 0}, ones = {1, 1};
  float alpha = 0;
  EngramGate(2, 1, ones, ones).forward(key.data(), hidden.data(), &alpha);
  EXPECT_NEAR(alpha, 1.0 / (1.0 + std::exp(-std::pow(2.0, 0.25))), 1e-6);
  // orthogonal key and query: dot 0 -> g = 0 -> alpha = 0.5 exactly (sign(0) = 0)
  const std::vector<float> other = {0, 1};
  EngramGate(2, 1, ones, ones).forward(key.data(), other.data(), &alpha);
  EXPECT_EQ(alpha, 0.5f);
}

TEST(EngramGate, FastMatchesReference) {
  for (const int64_t d : {1, 16, 85, 163}) {
    for (const int64_t hc : {1, 2, 4}) {
      SCOPED_TRACE("d " + std::to_string(d) + " hc " + std::to_string(hc));
      const auto keys = normal_values(hc * d, 1, 0.0f, 3.0f);
      const auto hidden = normal_values(hc * d, 2);
      const auto norm1 = normal_values(hc * d, 3, 1.0f, 0.1f);
      const auto norm2 = normal_values(hc * d, 4, 1.0f, 0.1f);
      std::vector<float> alpha(hc + 1, -7.0f);
      EngramGate(d, hc, norm1, norm2).forward(keys.data(), hidden.data(), alpha.data());
      for (int64_t i = 0; i < hc; ++i) {
        const float ref = reference::engram_gate(keys.data() + i * d, hidden.data() + i * d,
                                                 norm1.data() + i * d, norm2.data() + i * d, d);
        EXPECT_NEAR(alpha[i], ref, 2e-6f) << "branch " << i;
        EXPECT_GT(alpha[i], 0.0f);
        EXPECT_LT(alpha[i], 1.0f);
      }
      EXPECT_EQ(alpha[hc], -7.0f);
    }
  }
}

TEST(FusedGate, HandComputedZeroDot) {
  // orthogonal hidden and key: dot = 0 -> g = +sqrt(1e-6) = 1e-3 -> alpha = sigmoid(1e-3)
  const std::vector<float> kv = {0, 1, 2, -2};  // key [0, 1], value [2, -2]
  const std::vector<float> hidden = {1, 0}, ones = {1, 1};
  const FusedGate gate(2, 1, ones, ones, 1e-6);
  const float alpha = gate.alpha(kv.data(), hidden.data(), 0);
  EXPECT_FLOAT_EQ(alpha, 1.0f / (1.0f + std::exp(-1e-3f)));
  std::vector<float> out(2);
  gate.forward(kv.data(), hidden.data(), out.data());
  EXPECT_FLOAT_EQ(out[0], 1.0f + alpha * 2.0f);
  EXPECT_FLOAT_EQ(out[1], -alpha * 2.0f);
}

TEST(FusedGate, FastMatchesReference) {
  for (const int64_t d : {1, 16, 85, 300}) {
    for (const int64_t hc : {1, 3}) {
      SCOPED_TRACE("d " + std::to_string(d) + " hc " + std::to_string(hc));
      const auto kv = normal_values((hc + 1) * d, 5, 0.0f, 2.0f);
      const auto hidden = normal_values(hc * d, 6);
      const auto qw = normal_values(hc * d, 7, 1.0f, 0.1f);
      const auto kw = normal_values(hc * d, 8, 1.0f, 0.1f);
      const FusedGate gate(d, hc, qw, kw, 1e-6);
      std::vector<float> out(hc * d + 2, 55.0f);
      gate.forward(kv.data(), hidden.data(), out.data());
      for (int64_t i = 0; i < hc; ++i) {
        const float ref = reference::fused_gate(kv.data() + i * d, hidden.data() + i * d,
                                                qw.data() + i * d, kw.data() + i * d, d, 1e-6);
        EXPECT_NEAR(gate.alpha(kv.data(), hidden.data(), i), ref, 2e-6f);
        for (int64_t j = 0; j < d; ++j)
          EXPECT_NEAR(out[i * d + j], hidden[i * d + j] + ref * kv[hc * d + j], 1e-5f);
      }
      EXPECT_EQ(out[hc * d], 55.0f);
      // in place (out == hidden)
      std::vector<float> in_place = hidden;
      gate.forward(kv.data(), in_place.data(), in_place.data());
      for (int64_t i = 0; i < hc * d; ++i) EXPECT_EQ(in_place[i], out[i]);
    }
  }
}

TEST(Gates, RejectMismatchedWeights) {
  const std::vector<float> w(6);
  try {
    EngramGate(4, 2, w, w);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("hc * d = 8 values, found 6 and 6"));
  }
  try {
    FusedGate(4, 2, w, w, 1e-6);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("hc * d = 8 values, found 6 and 6"));
  }
}

}  // namespace
}  // namespace engram
