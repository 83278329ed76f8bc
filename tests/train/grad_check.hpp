// Helpers of the train tests: the error of a gradient against its golden.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace engram::test {

/// max |actual - expected| / max |expected| (sizes must agree: a failure otherwise).
template <class A, class B>
double relative_error(const std::vector<A>& actual, const std::vector<B>& expected) {
  EXPECT_EQ(actual.size(), expected.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < std::min(actual.size(), expected.size()); ++i) {
    diff = std::max(diff, std::abs(double(actual[i]) - double(expected[i])));
    scale = std::max(scale, std::abs(double(expected[i])));
  }
  return scale == 0 ? diff : diff / scale;
}

}  // namespace engram::test
