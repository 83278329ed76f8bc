// Test helpers of the training tests: float comparison within rounding.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

namespace engram::test {

/// Every actual[i] within `ulps` f32 roundings of expected[i], relative to max(|a|, |e|, 1e-2): the
/// tables hold values of about 1e-3 whose updates cancel, and sums of repeated rows (or FMA
/// contraction at other -O levels) differ by a few roundings of the operands, not of the result.
inline void expect_float_close(std::span<const float> actual, std::span<const float> expected,
                               float ulps = 8) {
  ASSERT_EQ(actual.size(), expected.size());
  size_t bad = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const float scale = std::max({std::abs(actual[i]), std::abs(expected[i]), 1e-2f});
    if (!(std::abs(actual[i] - expected[i]) <= ulps * 1.2e-7f * scale) && bad++ < 5)
      ADD_FAILURE() << "element " << i << ": " << actual[i] << " vs torch " << expected[i];
  }
  EXPECT_EQ(bad, 0u) << "elements beyond " << ulps << " roundings";
}

}  // namespace engram::test
