// Training checkpoints: the demo_a layer fine-tuned for two steps equals PyTorch's fine-tune
// (tests/data/train/finetune_golden.safetensors) through our loader; save -> load round trips;
// save -> load -> step equals the uninterrupted run bit for bit; errors name file and tensor.
// ENGRAM_TRAIN_CHECKPOINT_OUT=path keeps the fine-tuned checkpoint (for make_optim_golden.py
// verify, which loads it into the PyTorch reference).
#include "engram/train/checkpoint.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "support/error_of.hpp"
#include "support/test_data.hpp"
#include "train/train_test_support.hpp"

namespace engram::train {
namespace {

constexpr char kTable[] = "multi_head_embedding.embedding.weight";
constexpr char kOffsets[] = "multi_head_embedding.offsets";

/// make_optim_golden.py's synthetic_grad: [n] values in [-0.01, 0.01], exact integer arithmetic.
std::vector<float> synthetic_grad(int64_t n, int64_t k) {
  std::vector<float> g(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    g[i] =
        static_cast<float>(static_cast<double>((i * 7919 + k * 104729) % 2001 - 1000) / 100000.0);
  return g;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("engram_train_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

/// The demo_a layer being fine-tuned: SparseAdam on the table, AdamW on every dense weight, the
/// learning rates of TrainRecipe (as make_optim_golden.py finetune).
struct DemoTraining {
  std::shared_ptr<const SafetensorsFile> source;
  TrainableTable table;
  SparseAdam table_optimizer;
  ParameterSet dense;
  std::vector<DenseAdamW> dense_optimizers;
  std::vector<int64_t> offsets;

  explicit DemoTraining(const TrainRecipe& recipe = {})
      : source(std::make_shared<const SafetensorsFile>(
            test::data_path("layer/demo_a/weights.safetensors"))),
        table(load_trainable_table(*source, kTable)),
        table_optimizer({.lr = recipe.table_lr()}, table.rows(), table.row_dim()),
        dense(ParameterSet::load(*source, "", {kTable})),
        offsets(source->read_int64(kOffsets)) {
    // The golden's AdamW steps the dense weights in name order.
    std::sort(dense.entries().begin(), dense.entries().end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    for (const auto& e : dense.entries())
      dense_optimizers.emplace_back(
          AdamWOptions{.lr = recipe.backbone_lr, .weight_decay = recipe.dense_weight_decay},
          e.shape);
  }

  /// Step k with the synthetic gradients on `rows`.
  void step(const std::vector<int64_t>& rows, int64_t k) {
    SparseRowGrad grad{
        .row_dim = table.row_dim(),
        .rows = rows,
        .values = synthetic_grad(static_cast<int64_t>(rows.size()) * table.row_dim(), k)};
    table_optimizer.step(table, grad);
    for (size_t i = 0; i < dense.entries().size(); ++i) {
      auto& e = dense.entries()[i];
      dense_optimizers[i].step(e.values, synthetic_grad(static_cast<int64_t>(e.values.size()),
                                                        31 * k + static_cast<int64_t>(i)));
    }
  }

  std::vector<TrainedTensor> tensors() {
    std::vector<TrainedTensor> out = {
        {kTable, {table.rows(), table.row_dim()}, table.weights(), table_optimizer.state()}};
    for (size_t i = 0; i < dense.entries().size(); ++i) {
      auto& e = dense.entries()[i];
      out.push_back({e.name, e.shape, e.values, dense_optimizers[i].state()});
    }
    return out;
  }

  void save(const std::string& path) {
    const std::vector<TensorWrite> extra = {tensor_write(
        kOffsets, {static_cast<int64_t>(offsets.size())}, std::span<const int64_t>(offsets))};
    save_training_checkpoint(path, tensors(), extra);
  }
};

class DemoCheckpoint : public ::testing::Test {
 protected:
  DemoCheckpoint()
      : dir_(test::data_path("layer/demo_a")),
        config_(EngramConfig::load(dir_ + "/config.json")),
        inputs_(dir_ + "/inputs.safetensors"),
        expected_(dir_ + "/expected.safetensors"),
        golden_(test::data_path("train/finetune_golden.safetensors")),
        hash_ids_(expected_.read_int64("hash_ids")) {}

  /// Sorted distinct global rows the demo_a batch touches (hash ids + column offsets).
  std::vector<int64_t> touched_rows(const std::vector<int64_t>& offsets) const {
    std::vector<int64_t> rows(hash_ids_.size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = hash_ids_[i] + offsets[i % offsets.size()];
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    return rows;
  }

  std::vector<float> forward(const std::string& checkpoint) const {
    const EngramLayer layer = EngramLayer::load(config_, checkpoint);
    const auto& ids = inputs_.at("input_ids");
    const std::vector<float> hidden = inputs_.at("hidden_states").copy_as<float>();
    std::vector<float> out(hidden.size());
    EngramLayer::Workspace ws;
    layer.forward(hash_ids_, hidden, ids.shape[0], ids.shape[1], out, ws);
    return out;
  }

  std::string dir_;
  EngramConfig config_;
  SafetensorsFile inputs_, expected_, golden_;
  std::vector<int64_t> hash_ids_;
};

TEST_F(DemoCheckpoint, FineTuneEqualsTorchThroughOurLoader) {
  DemoTraining training;
  const std::vector<int64_t> rows = touched_rows(training.offsets);
  ASSERT_EQ(rows, golden_.read_int64("rows"));
  for (int64_t k = 0; k < 2; ++k) training.step(rows, k);
  const std::string path = temp_path("finetune.safetensors");
  training.save(path);
  if (const char* keep = std::getenv("ENGRAM_TRAIN_CHECKPOINT_OUT")) training.save(keep);

  const std::vector<float> out = forward(path);
  const std::vector<float> want = golden_.at("output").copy_as<float>();
  float max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(out[i] - want[i]));
    max_ref = std::max(max_ref, std::abs(want[i]));
  }
  EXPECT_LT(max_diff / max_ref, 2e-6);
  // Training moved the output well beyond that tolerance.
  const std::vector<float> before = expected_.at("output").copy_as<float>();
  float moved = 0;
  for (size_t i = 0; i < want.size(); ++i) moved = std::max(moved, std::abs(before[i] - want[i]));
  EXPECT_GT(moved / max_ref, 1e-2);

  // Names and layout: every weight under its state_dict name, the optimiser state beside it.
  const SafetensorsFile saved(path);
  EXPECT_EQ(saved.at(kTable).dtype, DType::kF32);
  EXPECT_EQ(saved.read_int64("optimizer.value_proj.weight.step"), std::vector<int64_t>{2});
  EXPECT_EQ(saved.at("optimizer.multi_head_embedding.embedding.weight.exp_avg").shape,
            (std::vector<int64_t>{training.table.rows(), training.table.row_dim()}));
  EXPECT_EQ(saved.metadata().at("optimizer.multi_head_embedding.embedding.weight"), "sparse_adam");
  EXPECT_EQ(saved.metadata().at("optimizer.norm1.0.weight"), "adamw");
  std::filesystem::remove(path);
}

TEST_F(DemoCheckpoint, SaveLoadRoundTripsWeightsAndState) {
  DemoTraining trained;
  const std::vector<int64_t> rows = touched_rows(trained.offsets);
  for (int64_t k = 0; k < 2; ++k) trained.step(rows, k);
  const std::string path = temp_path("round_trip.safetensors");
  trained.save(path);
  DemoTraining fresh;
  load_training_checkpoint(path, fresh.tensors());
  const auto a = trained.tensors(), b = fresh.tensors();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].name);
    EXPECT_TRUE(std::equal(a[i].values.begin(), a[i].values.end(), b[i].values.begin()));
    EXPECT_EQ(*b[i].optimizer.step, 2);
    for (size_t s = 0; s < a[i].optimizer.slots.size(); ++s) {
      const auto& x = a[i].optimizer.slots[s].values;
      EXPECT_TRUE(std::equal(x.begin(), x.end(), b[i].optimizer.slots[s].values.begin()));
    }
  }
  std::filesystem::remove(path);
}

/// Runs `steps` table steps with optimiser `make()`, optionally through a checkpoint after
/// `resume_after` steps; returns the table and the state.
template <class Make>
std::vector<float> run_table(Make make, int steps, int resume_after) {
  const int64_t rows = 300, dim = 13;
  TrainableTable table(rows, dim);
  for (int64_t i = 0; i < rows * dim; ++i) table.weights()[i] = static_cast<float>(i % 17) * 0.01f;
  auto optimizer = make(rows, dim);
  const std::string path = temp_path("resume.safetensors");
  for (int s = 0; s < steps; ++s) {
    if (s == resume_after) {
      save_training_checkpoint(
          path,
          std::vector<TrainedTensor>{{kTable, {rows, dim}, table.weights(), optimizer.state()}});
      TrainableTable fresh(rows, dim);
      auto resumed = make(rows, dim);
      load_training_checkpoint(path, std::vector<TrainedTensor>{
                                         {kTable, {rows, dim}, fresh.weights(), resumed.state()}});
      table = std::move(fresh);
      optimizer = std::move(resumed);
      std::filesystem::remove(path);
    }
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < 90; ++i) ids.push_back((i * 37 + s * 11) % (rows - s * 50));
    const auto grads = synthetic_grad(static_cast<int64_t>(ids.size()) * dim, s);
    optimizer.step(table, accumulate_row_grads<float>(ids, grads, dim));
  }
  std::vector<float> out(table.weights().begin(), table.weights().end());
  for (const auto& slot : optimizer.state().slots)
    out.insert(out.end(), slot.values.begin(), slot.values.end());
  out.push_back(static_cast<float>(optimizer.step_count()));
  return out;
}

TEST(TrainingResume, SaveLoadStepEqualsUninterruptedBitForBit) {
  auto check = [](auto make, const char* name) {
    SCOPED_TRACE(name);
    const auto straight = run_table(make, 4, -1);
    for (int resume_after : {1, 3}) EXPECT_EQ(run_table(make, 4, resume_after), straight);
  };
  check([](int64_t r, int64_t d) { return SparseAdam({.lr = 1e-2}, r, d); }, "sparse_adam");
  check([](int64_t r, int64_t d) { return RowwiseAdagrad({.lr = 1e-1}, r, d); }, "adagrad");
  check([](int64_t r, int64_t d) { return SparseSgd({.lr = 1e-1}, r, d); }, "sgd");

  // Dense AdamW: 3 steps straight == 2 steps, save, load, 1 step.
  auto dense = [](bool resume) {
    std::vector<float> param = synthetic_grad(50, 7);
    DenseAdamW adamw({.lr = 1e-2}, {5, 10});
    const std::string path = temp_path("dense.safetensors");
    for (int64_t s = 0; s < 3; ++s) {
      if (resume && s == 2) {
        save_training_checkpoint(path,
                                 std::vector<TrainedTensor>{{"w", {5, 10}, param, adamw.state()}});
        std::vector<float> fresh(50);
        DenseAdamW resumed({.lr = 1e-2}, {5, 10});
        load_training_checkpoint(
            path, std::vector<TrainedTensor>{{"w", {5, 10}, fresh, resumed.state()}});
        param = fresh;
        adamw = std::move(resumed);
        std::filesystem::remove(path);
      }
      adamw.step(param, synthetic_grad(50, s));
    }
    param.insert(param.end(), adamw.exp_avg_sq().begin(), adamw.exp_avg_sq().end());
    return param;
  };
  EXPECT_EQ(dense(true), dense(false));
}

// V4.1 layout: the FP8 table trains in f32 and is re-quantised on save; the f32 master resumes.
class Fp8Checkpoint : public ::testing::Test {
 protected:
  Fp8Checkpoint()
      : dir_(test::data_path("layer/fused_a")),
        config_(EngramConfig::load(dir_ + "/config.json")),
        source_(dir_ + "/weights.safetensors"),
        expected_(dir_ + "/expected.safetensors"),
        table_(
            load_trainable_table(source_, "embed.weight", static_cast<int>(config_.quant_block))),
        dense_(ParameterSet::load(source_, "", {"embed.weight"})) {}

  std::vector<TrainedTensor> tensors(OptimizerState table_state = {}) {
    std::vector<TrainedTensor> out = {{"embed.weight",
                                       {table_.rows(), table_.row_dim()},
                                       table_.weights(),
                                       table_state,
                                       static_cast<int>(config_.quant_block)}};
    for (auto& e : dense_.entries()) out.push_back({e.name, e.shape, e.values});
    return out;
  }

  std::vector<float> forward(const std::string& path) const {
    CheckpointOptions options;
    options.column_rows = expected_.read_int64("primes");
    const FusedEngramLayer layer = FusedEngramLayer::load(config_, path, options);
    const SafetensorsFile inputs(dir_ + "/inputs.safetensors");
    const auto& ids = inputs.at("input_ids");
    const std::vector<float> hidden = inputs.at("hidden_states").copy_as<float>();
    std::vector<float> out(hidden.size());
    FusedEngramLayer::Workspace ws;
    layer.forward(expected_.read_int64("hash_ids"), hidden, ids.shape[0], ids.shape[1], out, ws);
    return out;
  }

  std::string dir_;
  EngramConfig config_;
  SafetensorsFile source_, expected_;
  TrainableTable table_;
  ParameterSet dense_;
};

TEST_F(Fp8Checkpoint, UntrainedRoundTripKeepsEveryValueAndTheForward) {
  ASSERT_EQ(source_.at("embed.weight").dtype, DType::kF8E4M3);
  const std::string path = temp_path("fp8_untrained.safetensors");
  save_training_checkpoint(path, tensors());
  const SafetensorsFile saved(path);
  EXPECT_EQ(saved.at("embed.weight").dtype, DType::kF8E4M3);
  EXPECT_EQ(saved.at("embed.weight_scale_inv").dtype, DType::kF8E8M0);
  const TrainableTable decoded =
      load_trainable_table(saved, "embed.weight", static_cast<int>(config_.quant_block));
  EXPECT_TRUE(
      std::equal(decoded.weights().begin(), decoded.weights().end(), table_.weights().begin()));
  EXPECT_EQ(forward(path), forward(dir_ + "/weights.safetensors"));
  std::filesystem::remove(path);
}

TEST_F(Fp8Checkpoint, TrainedTableIsRequantisedAndResumesFromTheMaster) {
  SparseAdam adam({.lr = 1e-2}, table_.rows(), table_.row_dim());
  std::vector<int64_t> rows;
  for (int64_t r = 3; r < table_.rows(); r += 7) rows.push_back(r);
  for (int64_t k = 0; k < 2; ++k)
    adam.step(table_,
              {.row_dim = table_.row_dim(),
               .rows = rows,
               .values = synthetic_grad(static_cast<int64_t>(rows.size()) * table_.row_dim(), k)});
  const std::string path = temp_path("fp8_trained.safetensors");
  save_training_checkpoint(path, tensors(adam.state()));

  const SafetensorsFile saved(path);
  const TrainableTable requantised =
      load_trainable_table(saved, "embed.weight", static_cast<int>(config_.quant_block));
  const auto master = table_.weights();
  size_t changed = 0;
  for (size_t i = 0; i < master.size(); ++i) {
    // E4M3: 3 mantissa bits (relative 2^-4), subnormal spacing 2^-9 of the block scale (<=
    // amax/448)
    const int64_t row = static_cast<int64_t>(i) / table_.row_dim();
    float amax = 0;
    for (int64_t j = 0; j < table_.row_dim(); ++j)
      amax = std::max(amax, std::abs(master[row * table_.row_dim() + j]));
    ASSERT_LE(std::abs(requantised.weights()[i] - master[i]),
              0.0625f * std::abs(master[i]) + amax / 448 * 0.002f)
        << "value " << i;
    changed += requantised.weights()[i] != master[i];
  }
  EXPECT_GT(changed, 0u);          // trained values are not all FP8-representable
  EXPECT_NO_THROW(forward(path));  // our loader reads the re-quantised layout

  SparseAdam resumed({.lr = 1e-2}, table_.rows(), table_.row_dim());
  TrainableTable fresh(table_.rows(), table_.row_dim());
  load_training_checkpoint(path,
                           std::vector<TrainedTensor>{{"embed.weight",
                                                       {table_.rows(), table_.row_dim()},
                                                       fresh.weights(),
                                                       resumed.state(),
                                                       static_cast<int>(config_.quant_block)}});
  EXPECT_TRUE(std::equal(master.begin(), master.end(), fresh.weights().begin()));
  EXPECT_EQ(resumed.step_count(), 2);
  std::filesystem::remove(path);
}

TEST(TrainingCheckpointErrors, NameFileAndTensor) {
  TrainableTable table(4, 2);
  SparseAdam adam({}, 4, 2);
  const std::string path = temp_path("errors.safetensors");
  save_training_checkpoint(
      path, std::vector<TrainedTensor>{{"t", {4, 2}, table.weights(), adam.state()}});
  RowwiseAdagrad adagrad({}, 4, 2);
  EXPECT_NE(test::error_of([&] {
              load_training_checkpoint(path, std::vector<TrainedTensor>{
                                                 {"t", {4, 2}, table.weights(), adagrad.state()}});
            }).find(": optimiser of 't' expected 'rowwise_adagrad', found 'sparse_adam'"),
            std::string::npos);
  EXPECT_NE(
      test::error_of([&] {
        load_training_checkpoint(path, std::vector<TrainedTensor>{{"u", {4, 2}, table.weights()}});
      }).find("has no tensor 'u'"),
      std::string::npos);
  TrainableTable wide(2, 4);
  const std::string message = test::error_of([&] {
    load_training_checkpoint(path, std::vector<TrainedTensor>{{"t", {2, 4}, wide.weights()}});
  });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("[2, 4]"), std::string::npos) << message;
  std::vector<float> short_values(3);
  EXPECT_NE(
      test::error_of([&] {
        save_training_checkpoint(path, std::vector<TrainedTensor>{{"t", {4, 2}, short_values}});
      }).find("tensor 't' has 3 values, shape [4, 2] needs 8"),
      std::string::npos);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace engram::train
