// engram_part.hpp: the trainable Engram layer of the fine-tuning example — its parameters
// (train::Params: table rows, keys/value projections, gate norms, short conv), the training
// forward/backward (train/backward.hpp) and the optimisers (train/optimizers.hpp).
//
//   forward(hash_ids [B, T, cols], hidden [B, T, hc, d]) -> out [B, T, hc, d]   (taped)
//   step(grad_out [B, T, hc, d]): backward, then dense AdamW on every dense tensor and the table
//     optimiser (sparse Adam, row-wise Adagrad or SGD) on the rows the batch touched
//   layer(): an inference EngramLayer viewing the current weights (validation runs through it)
//
// Initialisation (a LoRA-like start): table rows N(0, 1), key projections N(0, 1/m), value
// projection and short conv zero, norms one: the layer's output is zero before training, so the
// Engram-enabled model starts exactly at the frozen backbone's loss.
// The table lives twice: in params.table (read by forward/backward) and in a TrainableTable (the
// optimisers' storage); after each step the touched rows are copied back, O(rows touched).
// Thread safety: none (one trainer). Deterministic for a seed: backward and optimisers do not
// depend on the thread count.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/config.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/train/backward.hpp"
#include "engram/train/checkpoint.hpp"
#include "engram/train/optimizers.hpp"
#include "engram/train/params.hpp"

namespace engram::example {

/// Learning rates and the table optimiser of the Engram part.
struct EngramTrainOptions {
  double lr = 1e-3;                      ///< dense weights (AdamW)
  double table_lr = 5e-3;                ///< table rows (the paper's recipe: 5x, no weight decay)
  std::string table_optimizer = "adam";  ///< adam (sparse, lazy moments) | adagrad (row-wise) | sgd
  double weight_decay = 0.0;             ///< dense weights only
  int threads = 1;
};

class EngramPart {
 public:
  EngramPart(const EngramConfig& config, std::shared_ptr<const NgramHasher> hasher, uint64_t seed,
             EngramTrainOptions options)
      : hasher_(std::move(hasher)), options_(std::move(options)) {
    const int64_t m = config.memory_dim(), row_dim = config.row_dim();
    params_.config = config;
    params_.dense = train::zero_dense<float>(config);
    params_.column_rows.assign(hasher_->primes().begin(), hasher_->primes().end());
    for (int64_t rows : params_.column_rows) {
      params_.column_offsets.push_back(params_.table_rows);
      params_.table_rows += rows;
    }
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    params_.table.resize(static_cast<size_t>(params_.table_rows * row_dim));
    for (float& v : params_.table) v = normal(rng);
    const float key_scale = 1.0f / std::sqrt(static_cast<float>(m));
    for (auto& tensor : params_.dense) {
      const bool norm = tensor.name.find("norm") != std::string::npos;
      if (tensor.name.rfind("key_projs.", 0) == 0 && tensor.shape.size() == 2)
        for (float& v : tensor.value) v = key_scale * normal(rng);
      else if (norm)
        std::fill(tensor.value.begin(), tensor.value.end(), 1.0f);
      dense_optimizers_.emplace_back(train::AdamWOptions{.lr = options_.lr,
                                                         .weight_decay = options_.weight_decay,
                                                         .threads = options_.threads},
                                     tensor.shape);
    }
    table_ = train::TrainableTable(params_.table, params_.table_rows, row_dim);
    if (options_.table_optimizer == "adagrad")
      table_optimizer_.emplace<train::RowwiseAdagrad>(
          train::RowwiseAdagradOptions{.lr = options_.table_lr, .threads = options_.threads},
          params_.table_rows, row_dim);
    else if (options_.table_optimizer == "sgd")
      table_optimizer_.emplace<train::SparseSgd>(
          train::SgdOptions{.lr = options_.table_lr, .threads = options_.threads},
          params_.table_rows, row_dim);
    else
      table_optimizer_.emplace<train::SparseAdam>(
          train::SparseAdamOptions{.lr = options_.table_lr, .threads = options_.threads},
          params_.table_rows, row_dim);
    refresh_layer();
  }

  int64_t table_rows() const noexcept { return params_.table_rows; }
  int64_t dense_parameters() const noexcept {
    int64_t n = 0;
    for (const auto& tensor : params_.dense) n += tensor.numel();
    return n;
  }
  /// Rows the last step updated.
  int64_t rows_touched() const noexcept { return grads_.table.size(); }

  /// Training forward (taped for step()): out [B, T, hc, d].
  void forward(std::span<const int64_t> hash_ids, std::span<const float> hidden, int64_t batch,
               int64_t seq_len, std::span<float> out) {
    train::forward(params_, hash_ids, hidden, batch, seq_len, out, tape_);
  }

  /// Backward of the last forward with dL/dout = grad_out, then one optimiser step.
  void step(std::span<const float> grad_out) {
    train::backward(params_, grad_out, tape_, grads_);
    for (size_t i = 0; i < params_.dense.size(); ++i)
      dense_optimizers_[i].step(params_.dense[i].value, grads_.dense[i].value);
    std::visit(
        [&](auto& optimizer) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(optimizer)>, std::monostate>)
            optimizer.step(table_, grads_.table);
        },
        table_optimizer_);
    const int64_t row_dim = params_.row_dim();
    for (int64_t row : grads_.table.rows) {
      const auto src = table_.row(row);
      std::copy(src.begin(), src.end(), params_.table.begin() + row * row_dim);
    }
  }

  /// Rebuilds the inference layer over the current weights (after training steps).
  void refresh_layer() {
    const EngramConfig& c = params_.config;
    const int64_t d = c.hidden_size, hc = c.hc_mult, m = c.memory_dim();
    EngramWeightsT<float> w{
        .config = c,
        .file = nullptr,
        .table = EmbeddingTableT<codec::F32>(std::as_bytes(std::span<const float>(params_.table)),
                                             c.row_dim(), params_.column_rows, "finetune table"),
        .kv_weight = {},
        .kv_bias = {},
        .key_norm = {},
        .query_norm = {},
        .conv_weight = params_.at("short_conv.conv.weight").value,
        .conv_norm = {},
        .kv_weight_bf16 = {},
        .bf16_compute = false};
    auto append = [](std::vector<float>& to, const std::vector<float>& from) {
      to.insert(to.end(), from.begin(), from.end());
    };
    w.kv_weight.reserve(static_cast<size_t>((hc + 1) * d * m));
    for (int64_t i = 0; i <= hc; ++i) {
      const std::string name = i < hc ? "key_projs." + std::to_string(i) : "value_proj";
      append(w.kv_weight, params_.at(name + ".weight").value);
      append(w.kv_bias, params_.at(name + ".bias").value);
    }
    for (int64_t i = 0; i < hc; ++i) {
      const std::string k = std::to_string(i);
      append(w.key_norm, params_.at("norm1." + k + ".weight").value);
      append(w.query_norm, params_.at("norm2." + k + ".weight").value);
      append(w.conv_norm, params_.at("short_conv.norms." + k + ".weight").value);
    }
    layer_ = std::make_unique<EngramLayer>(
        std::make_shared<const EngramWeightsT<float>>(std::move(w)), hasher_);
  }

  /// Writes weights and optimiser state under the official names (train/checkpoint.hpp): the
  /// weights load with EngramLayer::load and the PyTorch reference; training resumes from it.
  void save(const std::string& path) {
    const int64_t row_dim = params_.row_dim();
    std::vector<train::TrainedTensor> tensors;
    tensors.push_back(
        {"multi_head_embedding.embedding.weight",
         {params_.table_rows, row_dim},
         table_.weights(),
         std::visit(
             [](auto& optimizer) -> train::OptimizerState {
               if constexpr (std::is_same_v<std::decay_t<decltype(optimizer)>, std::monostate>)
                 return {};
               else
                 return optimizer.state();
             },
             table_optimizer_)});
    for (size_t i = 0; i < params_.dense.size(); ++i)
      tensors.push_back({params_.dense[i].name, params_.dense[i].shape, params_.dense[i].value,
                         dense_optimizers_[i].state()});
    const TensorWrite offsets = tensor_write("multi_head_embedding.offsets",
                                             {static_cast<int64_t>(params_.column_offsets.size())},
                                             std::span<const int64_t>(params_.column_offsets));
    train::save_training_checkpoint(path, tensors, std::span<const TensorWrite>(&offsets, 1),
                                    {{"format", "engram finetune example"}});
  }

  /// Inference forward through the layer of the last refresh_layer(): out [B, T, hc, d].
  void infer(std::span<const int64_t> hash_ids, std::span<const float> hidden, int64_t batch,
             int64_t seq_len, std::span<float> out) const {
    layer_->forward(hash_ids, hidden, batch, seq_len, out, ws_);
  }

 private:
  std::shared_ptr<const NgramHasher> hasher_;
  EngramTrainOptions options_;
  train::Params params_;
  train::TrainableTable table_;
  std::variant<std::monostate, train::SparseAdam, train::RowwiseAdagrad, train::SparseSgd>
      table_optimizer_;
  std::vector<train::DenseAdamW> dense_optimizers_;
  train::Tape tape_;
  train::Grads grads_;
  std::unique_ptr<EngramLayer> layer_;
  mutable EngramLayer::Workspace ws_;
};

}  // namespace engram::example
