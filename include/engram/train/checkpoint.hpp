// engram/train/checkpoint.hpp: training checkpoints (weights + optimiser state) as safetensors.
//
// save_training_checkpoint writes, for each TrainedTensor p (names include any layer prefix, e.g.
// "layers.1.engram.multi_head_embedding.embedding.weight"):
//   <p.name>                          F32 p.shape      the weights, under the state_dict name
//   optimizer.<p.name>.<slot>         F32 slot.shape   "exp_avg", "exp_avg_sq" (Adam), "sum"
//                                                      (row-wise Adagrad, [rows])
//   optimizer.<p.name>.step           I64 []           steps taken
//   __metadata__ "optimizer.<p.name>" = kind ("sparse_adam", "rowwise_adagrad", "sgd", "adamw")
// then `extra` tensors verbatim (e.g. multi_head_embedding.offsets I64), atomically (AtomicFile).
// The weights load with EngramLayer::load (layer/checkpoint.hpp) and the PyTorch reference; the
// Adam state is torch's own (exp_avg, exp_avg_sq, step), so torch optimisers can resume from it.
// load_training_checkpoint copies weights and state back into the same TrainedTensors: save ->
// load -> step equals step without the round trip, bit for bit.
// ParameterSet::load and load_trainable_table read a model checkpoint (F32/F64/BF16/F16) into f32
// copies to train.
// Errors: engram::Error naming the file and tensor: missing tensors, shape, dtype, optimiser kind.
// Thread safety: none of these functions may run while the tensors are being stepped.
//
//   std::vector<TrainedTensor> params = {{table_name, {rows, dim}, table.weights(), adam.state()}};
//   engram::train::save_training_checkpoint("ckpt.safetensors", params);
//   engram::train::load_training_checkpoint("ckpt.safetensors", params);  // resume
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engram/error.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/train/optimizers.hpp"
#include "engram/train/trainable_table.hpp"

namespace engram::train {

/// A tensor being trained: its state_dict name, shape, f32 values and optimiser state (a default
/// OptimizerState, kind empty, saves the weights alone: a frozen tensor).
struct TrainedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::span<float> values;
  OptimizerState optimizer = {};
};

namespace detail {

inline std::string optimizer_name(const TrainedTensor& p, std::string_view slot) {
  return "optimizer." + p.name + "." + std::string(slot);
}

inline int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

/// Copies an F32 tensor `name` of `file` with shape `shape` into `out`.
inline void read_f32(const SafetensorsFile& file, const std::string& name,
                     const std::vector<int64_t>& shape, std::span<float> out) {
  const TensorView* t = file.find(name);
  ENGRAM_CHECK(t != nullptr, file.path(), ": training checkpoint has no tensor '", name, "'");
  t->check_dtype(DType::kF32);
  t->check_shape(shape);
  ENGRAM_CHECK(static_cast<size_t>(t->numel()) == out.size(), file.path(), ": tensor '", name,
               "' has ", t->numel(), " values, the training state holds ", out.size());
  if (!out.empty()) std::memcpy(out.data(), t->bytes.data(), out.size() * sizeof(float));
}

}  // namespace detail

/// Writes `params` with their optimiser state, then `extra`, to `path` (see the banner).
inline void save_training_checkpoint(const std::string& path, std::span<const TrainedTensor> params,
                                     std::span<const TensorWrite> extra = {},
                                     std::map<std::string, std::string> metadata = {}) {
  std::vector<TensorWrite> tensors;
  std::vector<int64_t> steps;
  steps.reserve(params.size());  // spans into it must stay valid
  for (const TrainedTensor& p : params) {
    ENGRAM_CHECK(detail::numel_of(p.shape) == static_cast<int64_t>(p.values.size()), path,
                 ": tensor '", p.name, "' has ", p.values.size(), " values, shape ",
                 shape_string(p.shape), " needs ", detail::numel_of(p.shape));
    tensors.push_back(tensor_write(p.name, p.shape, std::span<const float>(p.values)));
    if (p.optimizer.kind.empty()) continue;
    for (const OptimizerSlot& slot : p.optimizer.slots) {
      tensors.push_back(tensor_write(detail::optimizer_name(p, slot.name), slot.shape,
                                     std::span<const float>(slot.values)));
    }
    steps.push_back(p.optimizer.step ? *p.optimizer.step : 0);
    tensors.push_back(tensor_write(detail::optimizer_name(p, "step"), {},
                                   std::span<const int64_t>(&steps.back(), 1)));
    metadata["optimizer." + p.name] = std::string(p.optimizer.kind);
  }
  tensors.insert(tensors.end(), extra.begin(), extra.end());
  save_safetensors(path, tensors, metadata);
}

/// Reads weights and optimiser state saved by save_training_checkpoint back into `params` (same
/// names, shapes and optimiser kinds). Returns the file's metadata.
inline std::map<std::string, std::string> load_training_checkpoint(
    const std::string& path, std::span<const TrainedTensor> params) {
  const SafetensorsFile file(path);
  for (const TrainedTensor& p : params) {
    detail::read_f32(file, p.name, p.shape, p.values);
    if (p.optimizer.kind.empty()) continue;
    const auto kind = file.metadata().find("optimizer." + p.name);
    ENGRAM_CHECK(kind != file.metadata().end() && kind->second == p.optimizer.kind, path,
                 ": optimiser of '", p.name, "' expected '", p.optimizer.kind, "', found '",
                 kind == file.metadata().end() ? std::string("(none)") : kind->second, "'");
    for (const OptimizerSlot& slot : p.optimizer.slots)
      detail::read_f32(file, detail::optimizer_name(p, slot.name), slot.shape, slot.values);
    const std::string step_name = detail::optimizer_name(p, "step");
    const std::vector<int64_t> step = file.read_int64(step_name);
    ENGRAM_CHECK(step.size() == 1 && step[0] >= 0, path, ": tensor '", step_name,
                 "' must hold one non-negative step count, found ", step.size(), " values");
    if (p.optimizer.step) *p.optimizer.step = step[0];
  }
  return file.metadata();
}

/// f32 copies of a checkpoint's floating-point tensors (F32, F64, BF16, F16) to train.
class ParameterSet {
 public:
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> values;
  };

  /// The floating tensors of `file` whose names start with `prefix`, except those in `skip`
  /// (e.g. the table, loaded with load_trainable_table), in the file's order.
  static ParameterSet load(const SafetensorsFile& file, std::string_view prefix = {},
                           const std::vector<std::string>& skip = {}) {
    ParameterSet set;
    for (const TensorView& t : file.tensors()) {
      if (!t.name.starts_with(prefix)) continue;
      if (std::find(skip.begin(), skip.end(), t.name) != skip.end()) continue;
      if (t.dtype != DType::kF32 && t.dtype != DType::kF64 && t.dtype != DType::kBF16 &&
          t.dtype != DType::kF16)
        continue;
      Entry e{t.name, t.shape, std::vector<float>(static_cast<size_t>(t.numel()))};
      engram::detail::convert_dense(t, e.values.data());
      set.entries_.push_back(std::move(e));
    }
    return set;
  }

  std::vector<Entry>& entries() noexcept { return entries_; }
  const std::vector<Entry>& entries() const noexcept { return entries_; }
  /// The entry named `name`; throws when absent.
  Entry& at(std::string_view name) {
    for (Entry& e : entries_)
      if (e.name == name) return e;
    ENGRAM_CHECK(false, "ParameterSet: no tensor '", name, "'");
    __builtin_unreachable();
  }

 private:
  std::vector<Entry> entries_;
};

/// The 2-D floating tensor `name` of `file` as a TrainableTable (f32 copy).
inline TrainableTable load_trainable_table(const SafetensorsFile& file, const std::string& name) {
  const TensorView& t = file.at(name);
  ENGRAM_CHECK(t.shape.size() == 2, file.path(), ": table '", name, "' must be 2-D, found shape ",
               shape_string(t.shape));
  TrainableTable table(t.shape[0], t.shape[1]);
  engram::detail::convert_dense(t, table.weights().data());  // throws on non-float dtypes
  return table;
}

}  // namespace engram::train
