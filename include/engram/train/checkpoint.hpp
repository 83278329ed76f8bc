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
// A tensor with fp8_quant_block > 0 (V4.1's embed.weight) is saved re-quantised: <name> F8_E4M3
// + <name>_scale_inv F8_E8M0, and its f32 master weights as optimizer.<name>.master.
// The weights load with EngramLayer::load (layer/checkpoint.hpp) and the PyTorch reference; the
// Adam state is torch's own (exp_avg, exp_avg_sq, step), so torch optimisers can resume from it.
// load_training_checkpoint copies weights and state back into the same TrainedTensors: save ->
// load -> step equals step without the round trip, bit for bit.
// ParameterSet::load and load_trainable_table read a model checkpoint (F32/F64/BF16/F16; FP8
// tables decoded) into f32 copies to train.
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
#include <deque>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engram/error.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/memory/codec.hpp"
#include "engram/memory/codec_registry.hpp"
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
  /// > 0: a 2-D table saved re-quantised to FP8 for V4.1 layouts: <name> F8_E4M3 [rows, dim] and
  /// <name>_scale_inv F8_E8M0 [rows, ceil(dim / fp8_quant_block)] (codec::Fp8E4M3T's encoding),
  /// plus the f32 master weights as optimizer.<name>.master F32, which resume reads back.
  int fp8_quant_block = 0;
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

/// Calls fn(codec) with the registered FP8 codec of `quant_block` values per scale
/// (memory/codec_registry.hpp); throws naming `where` and the choices for another block.
template <class Fn>
void with_fp8_codec(int quant_block, std::string_view where, Fn&& fn) {
  visit_codec(
      "fp8_e4m3", quant_block,
      [&](auto codec) {
        if constexpr (requires { decltype(codec)::kQuantBlock; }) fn(codec);
      },
      where);
}

/// Decodes the FP8 table `name` (F8_E4M3 [rows, dim]) with its scales `name`_scale_inv
/// (F8_E8M0 [rows, ceil(dim / quant_block)]) into out [rows * dim].
inline void decode_fp8_table(const SafetensorsFile& file, const std::string& name, int quant_block,
                             std::span<float> out) {
  const TensorView& codes = file.at(name);
  const TensorView& scales = file.at(name + "_scale_inv");
  codes.check_dtype(DType::kF8E4M3);
  scales.check_dtype(DType::kF8E8M0);
  ENGRAM_CHECK(codes.shape.size() == 2, file.path(), ": table '", name, "' must be 2-D, found ",
               shape_string(codes.shape));
  const int64_t rows = codes.shape[0], dim = codes.shape[1];
  ENGRAM_CHECK(static_cast<int64_t>(out.size()) == rows * dim, file.path(), ": table '", name,
               "' has ", rows * dim, " values, the training table holds ", out.size());
  with_fp8_codec(quant_block, file.path(), [&](auto codec) {
    using Codec = decltype(codec);
    scales.check_shape({rows, Codec::scale_bytes(dim)});
    for (int64_t r = 0; r < rows; ++r)
      Codec::decode_row_reference(codes.bytes.data() + r * dim,
                                  scales.bytes.data() + r * Codec::scale_bytes(dim), dim,
                                  out.data() + r * dim);
  });
}

}  // namespace detail

/// Writes `params` with their optimiser state, then `extra`, to `path` (see the banner).
inline void save_training_checkpoint(const std::string& path, std::span<const TrainedTensor> params,
                                     std::span<const TensorWrite> extra = {},
                                     std::map<std::string, std::string> metadata = {}) {
  std::vector<TensorWrite> tensors;
  std::vector<int64_t> steps;
  steps.reserve(params.size());                // spans into it must stay valid
  std::deque<std::vector<std::byte>> encoded;  // FP8 codes and scales (stable addresses)
  for (const TrainedTensor& p : params) {
    ENGRAM_CHECK(detail::numel_of(p.shape) == static_cast<int64_t>(p.values.size()), path,
                 ": tensor '", p.name, "' has ", p.values.size(), " values, shape ",
                 shape_string(p.shape), " needs ", detail::numel_of(p.shape));
    if (p.fp8_quant_block > 0) {
      ENGRAM_CHECK(p.shape.size() == 2, path, ": FP8 tensor '", p.name, "' must be 2-D, found ",
                   shape_string(p.shape));
      const int64_t rows = p.shape[0], dim = p.shape[1];
      detail::with_fp8_codec(p.fp8_quant_block, path, [&](auto codec) {
        using Codec = decltype(codec);
        const int64_t scale_cols = Codec::scale_bytes(dim);
        auto& codes = encoded.emplace_back(static_cast<size_t>(rows * dim));
        auto& scales = encoded.emplace_back(static_cast<size_t>(rows * scale_cols));
        for (int64_t r = 0; r < rows; ++r)
          Codec::encode_row(p.values.data() + r * dim, dim, codes.data() + r * dim,
                            scales.data() + r * scale_cols);
        tensors.push_back({p.name, DType::kF8E4M3, p.shape, codes});
        tensors.push_back({p.name + "_scale_inv", DType::kF8E8M0, {rows, scale_cols}, scales});
      });
      tensors.push_back(tensor_write(detail::optimizer_name(p, "master"), p.shape,
                                     std::span<const float>(p.values)));
    } else {
      tensors.push_back(tensor_write(p.name, p.shape, std::span<const float>(p.values)));
    }
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
    // FP8 tables resume from their f32 master weights, not from the re-quantised codes.
    detail::read_f32(file, p.fp8_quant_block > 0 ? detail::optimizer_name(p, "master") : p.name,
                     p.shape, p.values);
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
    engram::detail::fail("ParameterSet: no tensor '", name, "'");
  }

 private:
  std::vector<Entry> entries_;
};

/// The 2-D table `name` of `file` as a TrainableTable (f32): F32, F64, BF16, F16 converted; an
/// F8_E4M3 table decoded with its scales `name`_scale_inv and `fp8_quant_block` values per scale
/// (V4.1's embed.weight; FP8 tables train in f32 and are re-quantised on save).
inline TrainableTable load_trainable_table(const SafetensorsFile& file, const std::string& name,
                                           int fp8_quant_block = 0) {
  const TensorView& t = file.at(name);
  ENGRAM_CHECK(t.shape.size() == 2, file.path(), ": table '", name, "' must be 2-D, found shape ",
               shape_string(t.shape));
  TrainableTable table(t.shape[0], t.shape[1]);
  if (t.dtype == DType::kF8E4M3) {
    ENGRAM_CHECK(fp8_quant_block > 0, file.path(), ": table '", name,
                 "' is F8_E4M3: pass its quant_block (the config's) to decode it");
    detail::decode_fp8_table(file, name, fp8_quant_block, table.weights());
  } else {
    engram::detail::convert_dense(t, table.weights().data());  // throws on non-float dtypes
  }
  return table;
}

}  // namespace engram::train
