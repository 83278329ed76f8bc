// Table optimisers and dense AdamW against PyTorch (tests/data/train/optim_golden.safetensors,
// written by make_optim_golden.py), determinism across thread counts, and argument checks.
#include "engram/train/optimizers.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engram/io/safetensors.hpp"
#include "support/error_of.hpp"
#include "support/random.hpp"
#include "support/test_data.hpp"
#include "train/train_test_support.hpp"

namespace engram::train {
namespace {

using test::expect_float_close;

class OptimGolden : public ::testing::Test {
 protected:
  static constexpr int64_t kRows = 40, kDim = 6, kSteps = 3;
  OptimGolden() : golden_(test::data_path("train/optim_golden.safetensors")) {}

  std::vector<float> f32(const std::string& name) const {
    return golden_.at(name).copy_as<float>();
  }
  TrainableTable initial_table() const { return TrainableTable(f32("table"), kRows, kDim); }
  SparseRowGrad step_grad(int64_t s) const {
    const auto ids = golden_.read_int64("ids." + std::to_string(s));
    const auto grads = f32("grads." + std::to_string(s));
    return accumulate_row_grads<float>(ids, grads, kDim);
  }

  template <class Optimizer>
  void run_table(Optimizer& optimizer, const std::string& name) {
    TrainableTable table = initial_table();
    for (int64_t s = 0; s < kSteps; ++s) {
      SCOPED_TRACE(name + " step " + std::to_string(s));
      optimizer.step(table, step_grad(s));
      expect_float_close(table.weights(), f32(name + ".weight." + std::to_string(s)));
    }
    EXPECT_EQ(optimizer.step_count(), kSteps);
  }

  SafetensorsFile golden_;
};

TEST_F(OptimGolden, AccumulateEqualsTorchCoalesce) {
  for (int64_t s = 0; s < kSteps; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    const SparseRowGrad grad = step_grad(s);
    EXPECT_EQ(grad.rows, golden_.read_int64("coalesced." + std::to_string(s) + ".rows"));
    expect_float_close(grad.values, f32("coalesced." + std::to_string(s) + ".values"));
  }
  EXPECT_LT(step_grad(0).size(), 25);  // the golden repeats rows
}

TEST_F(OptimGolden, SparseAdamEqualsTorch) {
  SparseAdam adam({.lr = 5e-3}, kRows, kDim);
  run_table(adam, "sparse_adam");
  expect_float_close(adam.exp_avg(), f32("sparse_adam.exp_avg"));
  expect_float_close(adam.exp_avg_sq(), f32("sparse_adam.exp_avg_sq"));
}

TEST_F(OptimGolden, SgdEqualsTorch) {
  SparseSgd sgd({.lr = 0.1}, kRows, kDim);
  run_table(sgd, "sgd");
}

TEST_F(OptimGolden, RowwiseAdagradEqualsTorchReimplementation) {
  RowwiseAdagrad adagrad({.lr = 0.05, .eps = 1e-8}, kRows, kDim);
  run_table(adagrad, "rowwise_adagrad");
  expect_float_close(adagrad.sum(), f32("rowwise_adagrad.sum.2"));
  RowwiseAdagrad decayed({.lr = 0.05, .eps = 1e-8, .weight_decay = 0.01}, kRows, kDim);
  run_table(decayed, "rowwise_adagrad_wd");
  expect_float_close(decayed.sum(), f32("rowwise_adagrad_wd.sum.2"));
}

TEST_F(OptimGolden, AdamWEqualsTorch) {
  std::vector<float> param = f32("dense");
  DenseAdamW adamw({.lr = 1e-2, .weight_decay = 0.1}, {5, 7});
  for (int64_t s = 0; s < kSteps; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    adamw.step(param, f32("dense_grad." + std::to_string(s)));
    expect_float_close(param, f32("adamw.weight." + std::to_string(s)));
  }
  expect_float_close(adamw.exp_avg(), f32("adamw.exp_avg"));
  expect_float_close(adamw.exp_avg_sq(), f32("adamw.exp_avg_sq"));
}

TEST_F(OptimGolden, SparseAdamLeavesUntouchedRowsAndState) {
  SparseAdam adam({.lr = 5e-3}, kRows, kDim);
  TrainableTable table = initial_table();
  const SparseRowGrad grad = step_grad(0);
  adam.step(table, grad);
  const std::vector<float> initial = f32("table");
  size_t touched = 0;
  for (int64_t r = 0; r < kRows; ++r) {
    const bool hit = std::binary_search(grad.rows.begin(), grad.rows.end(), r);
    touched += hit;
    for (int64_t j = 0; j < kDim; ++j) {
      const size_t i = static_cast<size_t>(r * kDim + j);
      if (hit) continue;
      EXPECT_EQ(table.weights()[i], initial[i]) << "row " << r;
      EXPECT_EQ(adam.exp_avg()[i], 0.0f) << "row " << r;
    }
  }
  EXPECT_EQ(touched, grad.rows.size());
}

/// Runs the vectorised kernel `fast` and the scalar reference `reference` (both (w, m, v, g, n))
/// on the same inputs for sizes around the SIMD widths: results within rounding (FMA contraction
/// may differ), nothing written past the n values.
template <class Fast, class Reference>
void expect_kernel_matches_reference(Fast fast, Reference reference) {
  for (int64_t n : {1, 7, 16, 85, 163}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const auto g = test::normal_values(static_cast<size_t>(n), 5);
    auto w = test::normal_values(static_cast<size_t>(n) + 1, 6);
    auto m = test::normal_values(static_cast<size_t>(n) + 1, 7, 0.0f, 0.1f);
    auto v = test::normal_values(static_cast<size_t>(n) + 1, 8);
    for (auto& x : v) x = x * x;
    w.back() = m.back() = v.back() = -7.0f;  // sentinels
    auto w_ref = w, m_ref = m, v_ref = v;
    fast(w.data(), m.data(), v.data(), g.data(), n);
    reference(w_ref.data(), m_ref.data(), v_ref.data(), g.data(), n);
    test::expect_float_close(w, w_ref, 2);
    test::expect_float_close(m, m_ref, 2);
    test::expect_float_close(v, v_ref, 2);
    EXPECT_EQ(w.back(), -7.0f);
    EXPECT_EQ(m.back(), -7.0f);
    EXPECT_EQ(v.back(), -7.0f);
  }
}

TEST(OptimizerKernels, SparseAdamRowEqualsReference) {
  const detail::SparseAdamScalars k{0.1f, 0.001f, -0.01f, 1e-8f};
  expect_kernel_matches_reference([&](float* w, float* m, float* v, const float* g,
                                      int64_t n) { detail::sparse_adam_row(w, m, v, g, n, k); },
                                  [&](float* w, float* m, float* v, const float* g, int64_t n) {
                                    detail::sparse_adam_row_reference(w, m, v, g, n, k);
                                  });
}

// A step's result does not depend on the thread count, bit for bit.
TEST(OptimizerDeterminism, ThreadCountsGiveIdenticalSteps) {
  const int64_t rows = 5000, dim = 37, touched = 1500;
  const std::vector<float> initial = test::normal_values(rows * dim, 1);
  std::vector<int64_t> ids(touched * 2);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7919) % rows);
  const std::vector<float> grads = test::normal_values(ids.size() * dim, 2);
  const SparseRowGrad grad = accumulate_row_grads<float>(ids, grads, dim);

  auto run = [&](auto make, int threads) {
    TrainableTable table(initial, rows, dim);
    auto optimizer = make(threads);
    for (int s = 0; s < 3; ++s) optimizer.step(table, grad);
    return std::vector<float>(table.weights().begin(), table.weights().end());
  };
  auto check = [&](auto make, const char* name) {
    SCOPED_TRACE(name);
    const auto one = run(make, 1);
    EXPECT_NE(one, initial);
    for (int threads : {2, 3}) EXPECT_EQ(run(make, threads), one) << threads << " threads";
  };
  check([&](int t) { return SparseAdam({.lr = 1e-2, .threads = t}, rows, dim); }, "sparse_adam");
  check([&](int t) { return RowwiseAdagrad({.lr = 1e-2, .threads = t}, rows, dim); }, "adagrad");
  check([&](int t) { return SparseSgd({.lr = 1e-2, .threads = t}, rows, dim); }, "sgd");

  const std::vector<float> dense_grad = test::normal_values(5000, 3);
  auto dense = [&](int threads) {
    std::vector<float> param = test::normal_values(5000, 4);
    DenseAdamW adamw({.threads = threads}, {50, 100});
    for (int s = 0; s < 3; ++s) adamw.step(param, dense_grad);
    return param;
  };
  EXPECT_EQ(dense(2), dense(1));
  EXPECT_EQ(dense(5), dense(1));
}

TEST(OptimizerErrors, RejectsBadGradients) {
  TrainableTable table(10, 4);
  SparseAdam adam({}, 10, 4);
  SparseRowGrad grad{.row_dim = 4, .rows = {3, 1}, .values = std::vector<float>(8)};
  EXPECT_NE(test::error_of([&] { adam.step(table, grad); }).find("sorted and distinct"),
            std::string::npos);
  grad.rows = {1, 10};
  EXPECT_NE(test::error_of([&] { adam.step(table, grad); }).find("row 10 (entry 1) out of range"),
            std::string::npos);
  grad.row_dim = 3;
  EXPECT_NE(test::error_of([&] { adam.step(table, grad); }).find("row_dim 3, expected"),
            std::string::npos);
  TrainableTable other(11, 4);
  grad = {.row_dim = 4, .rows = {1}, .values = std::vector<float>(4)};
  EXPECT_NE(test::error_of([&] { adam.step(other, grad); }).find("table is [11, 4]"),
            std::string::npos);
  EXPECT_EQ(adam.step_count(), 0);  // nothing was applied
  DenseAdamW adamw({}, {2, 3});
  std::vector<float> p(6), g(5);
  EXPECT_NE(test::error_of([&] { adamw.step(p, g); }).find("gradient 5, expected 6"),
            std::string::npos);
}

TEST(TrainRecipe, PaperDefaults) {
  const TrainRecipe recipe;
  EXPECT_DOUBLE_EQ(recipe.table_lr(), 5 * recipe.backbone_lr);
  EXPECT_EQ(recipe.table_weight_decay, 0.0);
}

}  // namespace
}  // namespace engram::train
