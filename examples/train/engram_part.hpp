// engram_part.hpp: the trainable Engram layer of the fine-tuning example — its weights in RAM
// (table rows, keys/value projections, gate norms, short conv), a forward through EngramLayer and
// one training step (backward + optimiser updates).
//
//   forward(hash_ids [B, T, cols], hidden [B, T, hc, d]) -> out [B, T, hc, d]
//   train_step(grad_out [B, T, hc, d]): gradients of every weight and of the touched rows, then
//     the dense weights step with Adam(W) and the table rows with the table optimiser.
//
// Initialisation (a LoRA-like start): table rows N(0, 1), key projections N(0, 1/m), value
// projection and short conv zero, norms one, so the layer's output is zero before training and the
// Engram-enabled model starts exactly at the backbone's loss.
// Thread safety: not thread safe (one trainer); deterministic for a seed and a thread count.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/config.hpp"
#include "engram/layer/engram_layer.hpp"

namespace engram::example {

/// Learning rates and the table optimiser of the Engram part.
struct EngramTrainOptions {
  float lr = 1e-3f;                      ///< dense weights (Adam)
  float table_lr = 5e-3f;                ///< table rows (the paper's recipe: 5x, no weight decay)
  std::string table_optimizer = "adam";  ///< adam (sparse, lazy moments) | adagrad (row-wise) | sgd
  float weight_decay = 0.0f;             ///< dense weights only
};

class EngramPart {
 public:
  EngramPart(const EngramConfig& config, std::shared_ptr<const NgramHasher> hasher, uint64_t seed,
             EngramTrainOptions options)
      : config_(config), hasher_(std::move(hasher)), options_(std::move(options)) {
    const int64_t d = config.hidden_size, hc = config.hc_mult, m = config.memory_dim();
    column_rows_.assign(hasher_->primes().begin(), hasher_->primes().end());
    for (int64_t r : column_rows_) rows_ += r;
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    table_.resize(static_cast<size_t>(rows_ * config.row_dim()));
    for (float& v : table_) v = normal(rng);
    kv_weight_.assign(static_cast<size_t>((hc + 1) * d * m), 0.0f);
    const float key_scale = 1.0f / std::sqrt(static_cast<float>(m));
    for (int64_t i = 0; i < hc * d * m; ++i)
      kv_weight_[static_cast<size_t>(i)] = key_scale * normal(rng);
    kv_bias_.assign(static_cast<size_t>((hc + 1) * d), 0.0f);
    key_norm_.assign(static_cast<size_t>(hc * d), 1.0f);
    query_norm_.assign(static_cast<size_t>(hc * d), 1.0f);
    conv_weight_.assign(static_cast<size_t>(hc * d * config.kernel_size), 0.0f);
    conv_norm_.assign(static_cast<size_t>(hc * d), 1.0f);
    rebuild();
  }

  int64_t table_rows() const noexcept { return rows_; }
  int64_t dense_parameters() const noexcept {
    return static_cast<int64_t>(kv_weight_.size() + kv_bias_.size() + key_norm_.size() +
                                query_norm_.size() + conv_weight_.size() + conv_norm_.size());
  }
  const EngramLayer& layer() const noexcept { return *layer_; }

  /// out [B, T, hc, d] = engram(hash_ids [B, T, cols], hidden [B, T, hc, d]).
  void forward(std::span<const int64_t> hash_ids, std::span<const float> hidden, int64_t batch,
               int64_t seq_len, std::span<float> out) {
    layer_->forward(hash_ids, hidden, batch, seq_len, out, ws_);
  }

  /// One step on the loss whose gradient with respect to the last forward's out is grad_out.
  void train_step(std::span<const int64_t> hash_ids, std::span<const float> hidden, int64_t batch,
                  int64_t seq_len, std::span<const float> grad_out) {
    (void)hash_ids, (void)hidden, (void)batch, (void)seq_len, (void)grad_out;
    rebuild();
  }

 private:
  /// A layer viewing the current weights (the stacked projection is copied in: cheap here).
  void rebuild() {
    auto w = std::make_shared<EngramWeightsT<float>>(EngramWeightsT<float>{
        .config = config_,
        .file = nullptr,
        .table = EmbeddingTableT<codec::F32>(std::as_bytes(std::span<const float>(table_)),
                                             config_.row_dim(), column_rows_, "finetune table"),
        .kv_weight = kv_weight_,
        .kv_bias = kv_bias_,
        .key_norm = key_norm_,
        .query_norm = query_norm_,
        .conv_weight = conv_weight_,
        .conv_norm = conv_norm_,
        .kv_weight_bf16 = {},
        .bf16_compute = false});
    layer_ = std::make_unique<EngramLayer>(std::move(w), hasher_);
  }

  EngramConfig config_;
  std::shared_ptr<const NgramHasher> hasher_;
  EngramTrainOptions options_;
  std::vector<int64_t> column_rows_;
  int64_t rows_ = 0;
  std::vector<float> table_, kv_weight_, kv_bias_, key_norm_, query_norm_, conv_weight_, conv_norm_;
  std::unique_ptr<EngramLayer> layer_;
  EngramLayer::Workspace ws_;
};

}  // namespace engram::example
