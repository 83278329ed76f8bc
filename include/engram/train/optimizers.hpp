// engram/train/optimizers.hpp: sparse row optimisers for embedding tables, dense AdamW.
//
// Table optimisers update only the rows of a SparseRowGrad (train/sparse_grad.hpp), in ascending
// row order, state beside the rows (RowStorage: untouched rows' state costs no memory; in RAM or
// in files, trainable_table.hpp's Placement). All math in f32; hyperparameters are doubles and
// every scalar is formed in double and rounded to f32 once, as PyTorch does with Python floats. Per
// touched row r, gradient g [D], weights w [D]:
//   SparseSgd       w += f32(-lr) * g                                          (torch.optim.SGD)
//   RowwiseAdagrad  g += weight_decay * w (if > 0);  sum[r] += (sum_j g_j^2) / D;
//                   w -= f32(lr / (sqrt(sum[r]) + eps)) * g      (FBGEMM/TorchRec rowwise adagrad,
//                   multiplier computed in f32; sum [rows] is the only state)
//   SparseAdam      t += 1 per step();  m += (g - m) * f32(1 - b1);  v += (g^2 - v) * f32(1 - b2)
//                   w += f32(-lr * sqrt(1 - b2^t) / (1 - b1^t)) * (m / (sqrt(v) + eps))
//                   (torch.optim.SparseAdam: untouched rows' m, v are not decayed)
// DenseAdamW, on every element of a dense parameter (torch.optim.AdamW, amsgrad off):
//   t += 1;  w *= f32(1 - lr * wd);  m = m * b1 + f32(1 - b1) * g;  v = v * b2 + f32(1 - b2) * g *
//   g w += f32(-lr / (1 - b1^t)) * (m / (sqrt(v) / f32(sqrt(1 - b2^t)) + eps))
// TrainRecipe holds the paper's defaults: table learning rate 5x the backbone's, no table decay.
//
// Guarantees: a step's result does not depend on `threads` (rows, and dense elements in blocks of
// 1024, are independent; each is computed by one fixed code path), bitwise. step() validates the
// gradient (row_dim, rows sorted, distinct, in range) before touching anything.
// Thread safety: an optimiser and its table must not be stepped concurrently.
//
//   engram::train::SparseAdam adam({.lr = recipe.table_lr()}, table.rows(), table.row_dim());
//   adam.step(table, engram::train::accumulate_row_grads<float>(ids, grads, table.row_dim()));
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <Eigen/Core>

#include "engram/error.hpp"
#include "engram/train/sparse_grad.hpp"
#include "engram/train/trainable_table.hpp"

namespace engram::train {

/// The paper's recipe: tables train with 5x the backbone's learning rate and no weight decay.
struct TrainRecipe {
  double backbone_lr = 1e-3;
  double table_lr_multiplier = 5.0;
  double table_weight_decay = 0.0;
  double dense_weight_decay = 0.01;  // torch.optim.AdamW's default
  double table_lr() const noexcept { return backbone_lr * table_lr_multiplier; }
};

/// One state tensor of an optimiser, viewing its storage (for checkpoints).
struct OptimizerSlot {
  std::string name;  // "exp_avg", "exp_avg_sq", "sum"
  std::vector<int64_t> shape;
  std::span<float> values;
};

/// An optimiser's whole state: its kind, its tensors and its step counter (for checkpoints).
struct OptimizerState {
  std::string_view kind;
  std::vector<OptimizerSlot> slots;
  int64_t* step = nullptr;
};

namespace detail {

/// Runs fn(begin, end) over [0, n) split into `threads` contiguous parts whose bounds are multiples
/// of `grain` (the calling thread takes the first part).
template <class Fn>
void split_range(int64_t n, int threads, int64_t grain, Fn&& fn) {
  const int64_t blocks = (n + grain - 1) / grain;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, blocks));
  if (parts == 1) {
    fn(int64_t{0}, n);
    return;
  }
  auto bound = [&](int64_t p) { return std::min(n, blocks * p / parts * grain); };
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(parts - 1));
  for (int64_t p = 1; p < parts; ++p) workers.emplace_back([&, p] { fn(bound(p), bound(p + 1)); });
  fn(bound(0), bound(1));
  for (auto& w : workers) w.join();
}

/// Checks that `grad` fits a [rows, row_dim] table: row_dim equal, rows ascending, distinct, in
/// range, values sized.
inline void check_grad(const SparseRowGrad& grad, int64_t rows, int64_t row_dim,
                       std::string_view who) {
  ENGRAM_CHECK(grad.row_dim == row_dim, who, ": gradient row_dim ", grad.row_dim,
               ", expected the table's ", row_dim);
  ENGRAM_CHECK(grad.values.size() == grad.rows.size() * static_cast<size_t>(row_dim), who,
               ": gradient values hold ", grad.values.size(), " floats, expected rows (",
               grad.rows.size(), ") x row_dim (", row_dim, ")");
  for (size_t i = 0; i < grad.rows.size(); ++i) {
    ENGRAM_CHECK(grad.rows[i] >= 0 && grad.rows[i] < rows, who, ": gradient row ", grad.rows[i],
                 " (entry ", i, ") out of range [0, ", rows, ")");
    ENGRAM_CHECK(i == 0 || grad.rows[i - 1] < grad.rows[i], who,
                 ": gradient rows must be sorted and distinct, found ", grad.rows[i - 1],
                 " before ", grad.rows[i], " (entry ", i, ")");
  }
}

inline void check_table(const TrainableTable& table, int64_t rows, int64_t row_dim,
                        std::string_view who) {
  ENGRAM_CHECK(table.rows() == rows && table.row_dim() == row_dim, who, ": table is [",
               table.rows(), ", ", table.row_dim(), "], the optimiser was made for [", rows, ", ",
               row_dim, "]");
}

/// The f32 scalars of one SparseAdam step.
struct SparseAdamScalars {
  float one_minus_beta1, one_minus_beta2, neg_step_size, eps;
};

/// SparseAdam on one row, the scalar reference (the spec in code).
inline void sparse_adam_row_reference(float* w, float* m, float* v, const float* g, int64_t dim,
                                      const SparseAdamScalars& k) noexcept {
  for (int64_t j = 0; j < dim; ++j) {
    const float m_new = m[j] + (g[j] - m[j]) * k.one_minus_beta1;
    const float v_new = v[j] + (g[j] * g[j] - v[j]) * k.one_minus_beta2;
    m[j] = m_new;
    v[j] = v_new;
    w[j] = w[j] + k.neg_step_size * (m_new / (std::sqrt(v_new) + k.eps));
  }
}

/// SparseAdam on one row, vectorised through Eigen arrays (std::sqrt does not vectorise while
/// it may set errno). Same formula as the reference; products may fuse into FMAs differently, and
/// which values take the packet path depends on the row's address: RowStorage is page-aligned, so
/// a given row of a given table shape always takes the same path (runs and resumes agree).
inline void sparse_adam_row(float* w, float* m, float* v, const float* g, int64_t dim,
                            const SparseAdamScalars& k) noexcept {
  using Row = Eigen::Map<Eigen::ArrayXf>;
  const Eigen::Map<const Eigen::ArrayXf> grad(g, dim);
  Row mr(m, dim), vr(v, dim), wr(w, dim);
  mr += (grad - mr) * k.one_minus_beta1;
  vr += (grad.square() - vr) * k.one_minus_beta2;
  wr += k.neg_step_size * (mr / (vr.sqrt() + k.eps));
}

/// The f32 scalars of one AdamW step.
struct AdamWScalars {
  float decay, beta1, beta2, one_minus_beta1, one_minus_beta2, neg_step_size, bias_correction2_sqrt,
      eps;
};

/// AdamW on n values (torch's single-tensor AdamW, op by op). Scalar on purpose: a vectorised
/// version peels by the address of its output, so a parameter or state moved to another address
/// (a resume) could take the other path and round differently; dense weights are small.
inline void adamw_span(float* w, float* m, float* v, const float* g, int64_t n,
                       const AdamWScalars& k) noexcept {
  for (int64_t i = 0; i < n; ++i) {
    w[i] = w[i] * k.decay;
    m[i] = m[i] * k.beta1 + k.one_minus_beta1 * g[i];
    v[i] = v[i] * k.beta2 + k.one_minus_beta2 * g[i] * g[i];
    const float denom = std::sqrt(v[i]) / k.bias_correction2_sqrt + k.eps;
    w[i] = w[i] + k.neg_step_size * (m[i] / denom);
  }
}

}  // namespace detail

/// Options of SparseSgd.
struct SgdOptions {
  double lr = 1e-3;
  int threads = 1;
};

/// Plain SGD on the touched rows (no state).
class SparseSgd {
 public:
  static constexpr std::string_view kKind = "sgd";
  SparseSgd(SgdOptions options, int64_t rows, int64_t row_dim)
      : options_(options), rows_(rows), row_dim_(row_dim) {}

  void step(TrainableTable& table, const SparseRowGrad& grad) {
    detail::check_table(table, rows_, row_dim_, kKind);
    detail::check_grad(grad, rows_, row_dim_, kKind);
    ++step_;
    const float neg_lr = static_cast<float>(-options_.lr);
    float* w = table.weights().data();
    detail::split_range(grad.size(), options_.threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float* row = w + grad.rows[i] * row_dim_;
        const float* g = grad.values.data() + i * row_dim_;
        for (int64_t j = 0; j < row_dim_; ++j) row[j] = row[j] + neg_lr * g[j];
      }
    });
  }

  OptimizerState state() { return {kKind, {}, &step_}; }
  const SgdOptions& options() const noexcept { return options_; }
  int64_t step_count() const noexcept { return step_; }

 private:
  SgdOptions options_;
  int64_t rows_, row_dim_;
  int64_t step_ = 0;
};

/// Options of RowwiseAdagrad (FBGEMM's defaults for eps).
struct RowwiseAdagradOptions {
  double lr = 1e-2;
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2: added to the gradient
  int threads = 1;
};

/// Row-wise Adagrad: one f32 of state per row, the accumulated mean squared row gradient.
class RowwiseAdagrad {
 public:
  static constexpr std::string_view kKind = "rowwise_adagrad";
  /// State in RAM, or in "<placement.path>.sum" (trainable_table.hpp).
  RowwiseAdagrad(RowwiseAdagradOptions options, int64_t rows, int64_t row_dim,
                 const Placement& placement = {})
      : options_(options),
        rows_(rows),
        row_dim_(row_dim),
        sum_(placement.make<float>(rows, ".sum")) {}

  void step(TrainableTable& table, const SparseRowGrad& grad) {
    detail::check_table(table, rows_, row_dim_, kKind);
    detail::check_grad(grad, rows_, row_dim_, kKind);
    ++step_;
    const float lr = static_cast<float>(options_.lr);
    const float eps = static_cast<float>(options_.eps);
    const float wd = static_cast<float>(options_.weight_decay);
    const float dim = static_cast<float>(row_dim_);
    float* w = table.weights().data();
    float* sum = sum_.data();
    detail::split_range(grad.size(), options_.threads, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> decayed(wd != 0.0f ? static_cast<size_t>(row_dim_) : 0);
      for (int64_t i = begin; i < end; ++i) {
        const int64_t r = grad.rows[i];
        float* row = w + r * row_dim_;
        const float* g = grad.values.data() + i * row_dim_;
        if (wd != 0.0f) {
          for (int64_t j = 0; j < row_dim_; ++j) decayed[j] = g[j] + wd * row[j];
          g = decayed.data();
        }
        float square_sum = 0.0f;
        for (int64_t j = 0; j < row_dim_; ++j) square_sum += g[j] * g[j];
        sum[r] += square_sum / dim;
        const float multiplier = lr / (std::sqrt(sum[r]) + eps);
        for (int64_t j = 0; j < row_dim_; ++j) row[j] = row[j] - multiplier * g[j];
      }
    });
  }

  /// The per-row state, [rows].
  std::span<float> sum() noexcept { return sum_.span(); }
  /// Writes the touched state pages back to their file (no-op in RAM).
  void flush() { sum_.flush(); }
  OptimizerState state() { return {kKind, {{"sum", {rows_}, sum_.span()}}, &step_}; }
  const RowwiseAdagradOptions& options() const noexcept { return options_; }
  int64_t step_count() const noexcept { return step_; }

 private:
  RowwiseAdagradOptions options_;
  int64_t rows_, row_dim_;
  RowStorage<float> sum_;
  int64_t step_ = 0;
};

/// Options of SparseAdam (torch.optim.SparseAdam's defaults).
struct SparseAdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  int threads = 1;
};

/// Adam with lazily updated moments (torch.optim.SparseAdam): only touched rows move.
class SparseAdam {
 public:
  static constexpr std::string_view kKind = "sparse_adam";
  /// State in RAM, or in "<placement.path>.exp_avg" and ".exp_avg_sq" (trainable_table.hpp).
  SparseAdam(SparseAdamOptions options, int64_t rows, int64_t row_dim,
             const Placement& placement = {})
      : options_(options),
        rows_(rows),
        row_dim_(row_dim),
        exp_avg_(placement.make<float>(rows * row_dim, ".exp_avg")),
        exp_avg_sq_(placement.make<float>(rows * row_dim, ".exp_avg_sq")) {}

  void step(TrainableTable& table, const SparseRowGrad& grad) {
    detail::check_table(table, rows_, row_dim_, kKind);
    detail::check_grad(grad, rows_, row_dim_, kKind);
    ++step_;
    const double t = static_cast<double>(step_);
    const double bias_correction1 = 1.0 - std::pow(options_.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(options_.beta2, t);
    const float neg_step_size =
        static_cast<float>(-(options_.lr * std::sqrt(bias_correction2) / bias_correction1));
    const float one_minus_beta1 = static_cast<float>(1.0 - options_.beta1);
    const float one_minus_beta2 = static_cast<float>(1.0 - options_.beta2);
    const float eps = static_cast<float>(options_.eps);
    float* w = table.weights().data();
    float* m = exp_avg_.data();
    float* v = exp_avg_sq_.data();
    const detail::SparseAdamScalars k{one_minus_beta1, one_minus_beta2, neg_step_size, eps};
    detail::split_range(grad.size(), options_.threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t offset = grad.rows[i] * row_dim_;
        detail::sparse_adam_row(w + offset, m + offset, v + offset,
                                grad.values.data() + i * row_dim_, row_dim_, k);
      }
    });
  }

  std::span<float> exp_avg() noexcept { return exp_avg_.span(); }
  std::span<float> exp_avg_sq() noexcept { return exp_avg_sq_.span(); }
  /// Writes the touched state pages back to their files (no-op in RAM).
  void flush() {
    exp_avg_.flush();
    exp_avg_sq_.flush();
  }
  OptimizerState state() {
    return {kKind,
            {{"exp_avg", {rows_, row_dim_}, exp_avg_.span()},
             {"exp_avg_sq", {rows_, row_dim_}, exp_avg_sq_.span()}},
            &step_};
  }
  const SparseAdamOptions& options() const noexcept { return options_; }
  int64_t step_count() const noexcept { return step_; }

 private:
  SparseAdamOptions options_;
  int64_t rows_, row_dim_;
  RowStorage<float> exp_avg_, exp_avg_sq_;
  int64_t step_ = 0;
};

/// Options of DenseAdamW (torch.optim.AdamW's defaults).
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  int threads = 1;
};

/// AdamW on one dense parameter of `numel` values (torch.optim.AdamW, amsgrad off).
class DenseAdamW {
 public:
  static constexpr std::string_view kKind = "adamw";
  DenseAdamW(AdamWOptions options, std::vector<int64_t> shape)
      : options_(options), shape_(std::move(shape)), numel_(numel_of(shape_)) {
    exp_avg_.assign(static_cast<size_t>(numel_), 0.0f);
    exp_avg_sq_.assign(static_cast<size_t>(numel_), 0.0f);
  }

  /// One step of `param` [numel] with its gradient `grad` [numel].
  void step(std::span<float> param, std::span<const float> grad) {
    ENGRAM_CHECK(
        static_cast<int64_t>(param.size()) == numel_ && static_cast<int64_t>(grad.size()) == numel_,
        kKind, ": parameter has ", param.size(), " values and gradient ", grad.size(),
        ", expected ", numel_);
    ++step_;
    const double t = static_cast<double>(step_);
    const double bias_correction1 = 1.0 - std::pow(options_.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(options_.beta2, t);
    const float decay = static_cast<float>(1.0 - options_.lr * options_.weight_decay);
    const float beta1 = static_cast<float>(options_.beta1);
    const float beta2 = static_cast<float>(options_.beta2);
    const float one_minus_beta1 = static_cast<float>(1.0 - options_.beta1);
    const float one_minus_beta2 = static_cast<float>(1.0 - options_.beta2);
    const float neg_step_size = static_cast<float>(-(options_.lr / bias_correction1));
    const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    const float eps = static_cast<float>(options_.eps);
    const detail::AdamWScalars k{
        decay, beta1, beta2, one_minus_beta1, one_minus_beta2, neg_step_size, bias_correction2_sqrt,
        eps};
    detail::split_range(numel_, options_.threads, 1024, [&](int64_t begin, int64_t end) {
      detail::adamw_span(param.data() + begin, exp_avg_.data() + begin, exp_avg_sq_.data() + begin,
                         grad.data() + begin, end - begin, k);
    });
  }

  const std::vector<int64_t>& shape() const noexcept { return shape_; }
  int64_t numel() const noexcept { return numel_; }
  std::span<float> exp_avg() noexcept { return exp_avg_; }
  std::span<float> exp_avg_sq() noexcept { return exp_avg_sq_; }
  OptimizerState state() {
    return {kKind, {{"exp_avg", shape_, exp_avg_}, {"exp_avg_sq", shape_, exp_avg_sq_}}, &step_};
  }
  const AdamWOptions& options() const noexcept { return options_; }
  int64_t step_count() const noexcept { return step_; }

 private:
  static int64_t numel_of(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) {
      ENGRAM_CHECK(d >= 0 && !__builtin_mul_overflow(n, d, &n), kKind, ": invalid shape of ",
                   shape.size(), " dims");
    }
    return n;
  }
  AdamWOptions options_;
  std::vector<int64_t> shape_;
  int64_t numel_;
  std::vector<float> exp_avg_, exp_avg_sq_;
  int64_t step_ = 0;
};

}  // namespace engram::train
