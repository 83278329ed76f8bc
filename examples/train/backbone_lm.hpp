// backbone_lm.hpp: the frozen backbone of the fine-tuning example — a small next-token language
// model over a remapped vocabulary, with its forward, loss and the gradients it needs.
//
//   x_t      = embedding[v_t]                                 [T, d]  (v_t: remapped token id)
//   z_t      = x_t / sqrt(mean(x_t^2) + eps)                  [T, d]  (unit RMSNorm)
//   logits_t = head z_t + bias                                [T, V]
//   loss     = mean over t < T - 1 of -log softmax(logits_t)[v_{t+1}]
//
// On its own this is a bigram model (the next token from the current one). The example first
// pretrains it (dense Adam on embedding, head and bias), then freezes it and adds an Engram layer
// into the residual stream: z_t = RMSNorm(x_t + engram(ids, x)_t). Backward through the frozen
// model is only the head's input gradient and the RMSNorm's (no weight gradients).
// Thread safety: const methods may run concurrently; the model owns its weights.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace engram::example {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVector = Eigen::RowVectorXf;

/// Result of the softmax cross-entropy over one sequence.
struct SequenceLoss {
  double sum = 0;     ///< summed negative log-likelihood (nats)
  int64_t count = 0;  ///< positions scored (T - 1)
};

class BackboneLm {
 public:
  static constexpr float kEps = 1e-6f;

  BackboneLm(int64_t vocab, int64_t hidden, std::mt19937_64& rng)
      : embedding_(vocab, hidden), head_(vocab, hidden), bias_(RowVector::Zero(vocab)) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t i = 0; i < embedding_.size(); ++i) embedding_.data()[i] = normal(rng);
    const float s = 1.0f / std::sqrt(static_cast<float>(hidden));
    for (int64_t i = 0; i < head_.size(); ++i) head_.data()[i] = s * normal(rng);
  }

  int64_t vocab() const noexcept { return head_.rows(); }
  int64_t hidden() const noexcept { return head_.cols(); }

  /// x [T, d]: the embedding rows of ids (the residual stream before the Engram layer).
  RowMatrix embed(std::span<const int32_t> ids) const {
    RowMatrix x(static_cast<int64_t>(ids.size()), hidden());
    for (size_t t = 0; t < ids.size(); ++t) x.row(static_cast<int64_t>(t)) = embedding_.row(ids[t]);
    return x;
  }

  /// Loss of residual stream x [T, d] predicting ids[t + 1]; with grad_x non-null, also the
  /// gradient of loss.sum / scale with respect to x ([T, d]), and with `grads` non-null the
  /// weight gradients (pretraining) accumulated into it.
  struct Grads {
    RowMatrix embedding, head;
    RowVector bias;
  };
  SequenceLoss loss(const RowMatrix& x, std::span<const int32_t> ids, float scale,
                    RowMatrix* grad_x, Grads* grads) const {
    const int64_t T = x.rows();
    SequenceLoss result;
    if (T < 2) {
      if (grad_x) grad_x->setZero(T, hidden());
      return result;
    }
    RowMatrix z(T, hidden());
    Eigen::VectorXf inv_rms(T);
    for (int64_t t = 0; t < T; ++t) {
      inv_rms(t) = 1.0f / std::sqrt(x.row(t).squaredNorm() / static_cast<float>(hidden()) + kEps);
      z.row(t) = x.row(t) * inv_rms(t);
    }
    RowMatrix logits = z.topRows(T - 1) * head_.transpose();
    logits.rowwise() += bias_;
    for (int64_t t = 0; t + 1 < T; ++t) {
      auto row = logits.row(t);
      const float mx = row.maxCoeff();
      row = (row.array() - mx).exp();
      const float sum = row.sum();
      const int32_t target = ids[static_cast<size_t>(t + 1)];
      result.sum += std::log(static_cast<double>(sum)) - std::log(static_cast<double>(row(target)));
      row /= sum;           // softmax
      row(target) -= 1.0f;  // d loss_t / d logits_t
    }
    result.count = T - 1;
    if (!grad_x && !grads) return result;
    logits /= scale;
    RowMatrix grad_z = RowMatrix::Zero(T, hidden());
    grad_z.topRows(T - 1).noalias() = logits * head_;
    if (grads) {
      grads->head.noalias() += logits.transpose() * z.topRows(T - 1);
      grads->bias += logits.colwise().sum();
    }
    // RMSNorm backward (unit weight): dx = r (dz - z mean(dz * z)).
    RowMatrix gx(T, hidden());
    for (int64_t t = 0; t < T; ++t) {
      const float dot = grad_z.row(t).dot(z.row(t)) / static_cast<float>(hidden());
      gx.row(t) = inv_rms(t) * (grad_z.row(t) - dot * z.row(t));
    }
    if (grads)
      for (int64_t t = 0; t < T; ++t)
        grads->embedding.row(ids[static_cast<size_t>(t)]) += gx.row(t);
    if (grad_x) *grad_x = std::move(gx);
    return result;
  }

  Grads zero_grads() const {
    return {RowMatrix::Zero(vocab(), hidden()), RowMatrix::Zero(vocab(), hidden()),
            RowVector::Zero(vocab())};
  }

  /// Dense Adam over embedding, head and bias (pretraining only; the backbone is frozen after).
  class Adam {
   public:
    Adam(const BackboneLm& model, float lr)
        : lr_(lr), m_(model.zero_grads()), v_(model.zero_grads()) {}
    void step(BackboneLm& model, const Grads& g) {
      ++t_;
      const float c1 = 1.0f - std::pow(kBeta1, static_cast<float>(t_));
      const float c2 = 1.0f - std::pow(kBeta2, static_cast<float>(t_));
      update(model.embedding_.data(), g.embedding.data(), m_.embedding.data(), v_.embedding.data(),
             g.embedding.size(), c1, c2);
      update(model.head_.data(), g.head.data(), m_.head.data(), v_.head.data(), g.head.size(), c1,
             c2);
      update(model.bias_.data(), g.bias.data(), m_.bias.data(), v_.bias.data(), g.bias.size(), c1,
             c2);
    }

   private:
    static constexpr float kBeta1 = 0.9f, kBeta2 = 0.999f, kAdamEps = 1e-8f;
    void update(float* w, const float* g, float* m, float* v, int64_t n, float c1, float c2) const {
      for (int64_t i = 0; i < n; ++i) {
        m[i] = kBeta1 * m[i] + (1 - kBeta1) * g[i];
        v[i] = kBeta2 * v[i] + (1 - kBeta2) * g[i] * g[i];
        w[i] -= lr_ * (m[i] / c1) / (std::sqrt(v[i] / c2) + kAdamEps);
      }
    }
    float lr_;
    int64_t t_ = 0;
    Grads m_, v_;
  };

 private:
  RowMatrix embedding_, head_;
  RowVector bias_;
};

}  // namespace engram::example
