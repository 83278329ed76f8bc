// accumulate_row_grads: sorted distinct rows, dead tokens skipped, sums in position order.
#include "engram/train/sparse_grad.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace {

TEST(SparseGrad, SortsDeduplicatesAndSkipsDeadIds) {
  const std::vector<int64_t> ids = {7, 2, -1, 7, 0, 2, 7};
  std::vector<double> grads;
  for (size_t i = 0; i < ids.size(); ++i) {
    grads.push_back(static_cast<double>(i));
    grads.push_back(10.0 * static_cast<double>(i));
  }
  const auto g = engram::train::accumulate_row_grads<double>(ids, grads, 2);
  ASSERT_EQ(g.size(), 3);
  EXPECT_EQ(g.row_dim, 2);
  EXPECT_EQ(g.rows, (std::vector<int64_t>{0, 2, 7}));
  EXPECT_EQ(g.values, (std::vector<double>{4, 40, 1 + 5, 10 + 50, 0 + 3 + 6, 0 + 30 + 60}));
}

TEST(SparseGrad, AddsInPositionOrder) {
  // 1e8f + 1 - 1e8f depends on the order: position order gives (1e8 + 1) - 1e8 = 0 in float.
  const std::vector<int64_t> ids = {5, 5, 5};
  const std::vector<float> grads = {1e8f, 1.0f, -1e8f};
  const auto g = engram::train::accumulate_row_grads<float>(ids, grads, 1);
  ASSERT_EQ(g.size(), 1);
  EXPECT_EQ(g.values[0], (0.0f + 1e8f + 1.0f) - 1e8f);
}

TEST(SparseGrad, EmptyAndAllDead) {
  EXPECT_EQ((engram::train::accumulate_row_grads<float>({}, {}, 4).size()), 0);
  const std::vector<int64_t> ids = {-1, -1};
  const std::vector<float> grads(8, 1.0f);
  EXPECT_EQ((engram::train::accumulate_row_grads<float>(ids, grads, 4).size()), 0);
}

TEST(SparseGrad, RejectsShapeMismatch) {
  const std::vector<int64_t> ids = {1, 2};
  const std::vector<float> grads(3, 1.0f);
  EXPECT_THROW((engram::train::accumulate_row_grads<float>(ids, grads, 2)), engram::Error);
  EXPECT_THROW((engram::train::accumulate_row_grads<float>(ids, grads, 0)), engram::Error);
}

}  // namespace
