// Test helper: reproducible random inputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace engram::test {

/// n values drawn from N(mean, sd^2) with a fixed seed (std::mt19937).
inline std::vector<float> normal_values(size_t n, uint32_t seed, float mean = 0.0f,
                                        float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace engram::test
