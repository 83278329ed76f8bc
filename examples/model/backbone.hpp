// backbone.hpp: the transformer pieces around an Engram layer in the example model — RMSNorm,
// causal multi-head self-attention and a top-k routed mixture of SwiGLU experts — in plain Eigen.
//
// Shapes: activations are row-major [T, d] (one sequence); weights are row-major [out, in] as
// PyTorch stores them. Weights are random (seeded), so the model shows where Engram slots in and
// what it costs, not language-model quality. Not tuned: the Engram layer is the subject here.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace engram::example {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

/// A [rows, cols] matrix of N(0, scale^2) values from `rng`.
inline Matrix random_matrix(int64_t rows, int64_t cols, float scale, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, scale);
  Matrix m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

/// x * rsqrt(mean(x^2) + eps) per row (unit weight).
inline Matrix rms_normalize(const Matrix& x, float eps = 1e-6f) {
  Matrix y(x.rows(), x.cols());
  for (int64_t t = 0; t < x.rows(); ++t) {
    const float ms = x.row(t).squaredNorm() / static_cast<float>(x.cols());
    y.row(t) = x.row(t) / std::sqrt(ms + eps);
  }
  return y;
}

/// Causal multi-head self-attention over one sequence: softmax(q k^T / sqrt(dh) + causal mask) v.
class CausalSelfAttention {
 public:
  CausalSelfAttention(int64_t hidden, int64_t heads, std::mt19937_64& rng)
      : heads_(heads), head_dim_(hidden / heads) {
    const float s = 1.0f / std::sqrt(static_cast<float>(hidden));
    wqkv_ = random_matrix(3 * hidden, hidden, s, rng);
    wo_ = random_matrix(hidden, hidden, s, rng);
  }

  /// x: [T, d] -> [T, d].
  Matrix forward(const Matrix& x) const {
    const int64_t T = x.rows(), d = x.cols();
    const Matrix qkv = x * wqkv_.transpose();  // [T, 3d]
    Matrix out(T, d);
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
    Matrix scores(T, T);
    for (int64_t h = 0; h < heads_; ++h) {
      const auto q = qkv.middleCols(h * head_dim_, head_dim_);
      const auto k = qkv.middleCols(d + h * head_dim_, head_dim_);
      const auto v = qkv.middleCols(2 * d + h * head_dim_, head_dim_);
      scores.noalias() = (q * k.transpose()) * scale;
      for (int64_t t = 0; t < T; ++t) {
        auto row = scores.row(t).head(t + 1);
        const float mx = row.maxCoeff();
        row = (row.array() - mx).exp();
        row /= row.sum();
        scores.row(t).tail(T - t - 1).setZero();
      }
      out.middleCols(h * head_dim_, head_dim_).noalias() = scores * v;
    }
    return out * wo_.transpose();
  }

 private:
  int64_t heads_, head_dim_;
  Matrix wqkv_, wo_;
};

/// Mixture of SwiGLU experts with a softmax router and top-k routing (weights renormalised over
/// the chosen experts). Counts how many tokens each expert served.
class MoeFeedForward {
 public:
  MoeFeedForward(int64_t hidden, int64_t ffn, int64_t experts, int64_t top_k, std::mt19937_64& rng)
      : top_k_(top_k), expert_tokens_(static_cast<size_t>(experts), 0) {
    router_ = random_matrix(experts, hidden, 1.0f / std::sqrt(static_cast<float>(hidden)), rng);
    for (int64_t e = 0; e < experts; ++e) {
      w_gate_up_.push_back(
          random_matrix(2 * ffn, hidden, 1.0f / std::sqrt(static_cast<float>(hidden)), rng));
      w_down_.push_back(random_matrix(hidden, ffn, 1.0f / std::sqrt(static_cast<float>(ffn)), rng));
    }
  }

  /// x: [T, d] -> [T, d].
  Matrix forward(const Matrix& x) {
    const int64_t T = x.rows(), E = router_.rows();
    const Matrix logits = x * router_.transpose();  // [T, E]
    std::vector<std::vector<int64_t>> tokens_of(static_cast<size_t>(E));
    std::vector<std::vector<float>> weights_of(static_cast<size_t>(E));
    std::vector<int64_t> order(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t) {
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + top_k_, order.end(),
                        [&](int64_t a, int64_t b) { return logits(t, a) > logits(t, b); });
      float total = 0.0f;
      std::vector<float> w(static_cast<size_t>(top_k_));
      for (int64_t k = 0; k < top_k_; ++k)
        total += w[k] = std::exp(logits(t, order[k]) - logits(t, order[0]));
      for (int64_t k = 0; k < top_k_; ++k) {
        tokens_of[order[k]].push_back(t);
        weights_of[order[k]].push_back(w[k] / total);
      }
    }
    Matrix out = Matrix::Zero(T, x.cols());
    for (int64_t e = 0; e < E; ++e) {
      const auto& toks = tokens_of[e];
      if (toks.empty()) continue;
      expert_tokens_[e] += static_cast<int64_t>(toks.size());
      Matrix xe(static_cast<int64_t>(toks.size()), x.cols());
      for (size_t i = 0; i < toks.size(); ++i) xe.row(static_cast<int64_t>(i)) = x.row(toks[i]);
      const Matrix gu = xe * w_gate_up_[e].transpose();  // [n, 2 ffn]
      const int64_t ffn = gu.cols() / 2;
      Matrix act(gu.rows(), ffn);
      for (int64_t r = 0; r < gu.rows(); ++r)
        for (int64_t j = 0; j < ffn; ++j) {
          const float g = gu(r, j);
          act(r, j) = g / (1.0f + std::exp(-g)) * gu(r, ffn + j);
        }
      const Matrix ye = act * w_down_[e].transpose();
      for (size_t i = 0; i < toks.size(); ++i)
        out.row(toks[i]) += weights_of[e][i] * ye.row(static_cast<int64_t>(i));
    }
    return out;
  }

  const std::vector<int64_t>& expert_tokens() const { return expert_tokens_; }

 private:
  int64_t top_k_;
  Matrix router_;
  std::vector<Matrix> w_gate_up_, w_down_;
  std::vector<int64_t> expert_tokens_;
};

}  // namespace engram::example
