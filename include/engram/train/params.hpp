// engram/train/params.hpp: one Engram layer's trainable parameters, explicit and mutable, and the
// gradients of the same shapes.
//
//   ParamsT { config, dense: [NamedTensor {name, shape, value}] (official state_dict names, no
//             prefix), column_rows [cols], column_offsets [cols], table [table_rows, row_dim] }
//   GradsT  { dense: same names, shapes and order as params.dense; hidden [B, T, hc, d];
//             table: SparseRowGrad (rows the batch touched) }
// Dense names, in this order (d = hidden_size, m = memory_dim, hc = hc_mult, k = kernel_size):
//   demo:  key_projs.{i}.weight [d, m], key_projs.{i}.bias [d] (i < hc), value_proj.weight [d, m],
//          value_proj.bias [d], norm1.{i}.weight [d], norm2.{i}.weight [d],
//          short_conv.conv.weight [hc * d, 1, k], short_conv.norms.{i}.weight [d]
//   fused (V4.1): wkv.weight [(hc + 1) * d, m], q_weight [hc, d], k_weight [hc, d]
// load_params reads a checkpoint through layer/checkpoint.hpp's loader (same names, prefixes and
// checks; params_from_weights takes weights already loaded, e.g. a V4.1 EngramModel's) and decodes
// the table (F32/BF16/F16, FP8 with E8M0 scales) and an FP8 wkv (32 x 32 block scales) into Scalar:
// FP8 and bf16 checkpoints train in f32 or f64 (re-quantise on save). Ownership: plain values; copy
// freely. Thread safety: none beyond std::vector's. Example:
//   auto params = engram::train::load_params<float>(config, "weights.safetensors", {.column_rows
//                 = primes});
//   float* w = params.at("value_proj.weight").value.data();
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engram/config.hpp"
#include "engram/error.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/memory/codec.hpp"
#include "engram/train/sparse_grad.hpp"

namespace engram::train {

/// A dense tensor under its official state_dict name (without the checkpoint prefix).
template <class Scalar = float>
struct NamedTensorT {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<Scalar> value;
  int64_t numel() const noexcept { return static_cast<int64_t>(value.size()); }
};

/// The trainable parameters of one layer (see the banner for names and shapes).
template <class Scalar = float>
struct ParamsT {
  EngramConfig config;
  std::vector<NamedTensorT<Scalar>> dense;
  std::vector<int64_t> column_rows;     ///< [cols] rows of each hash column's sub-table
  std::vector<int64_t> column_offsets;  ///< [cols] exclusive cumulative sum of column_rows
  int64_t table_rows = 0;               ///< >= sum(column_rows)
  std::vector<Scalar> table;            ///< [table_rows, row_dim]

  int64_t row_dim() const noexcept { return config.row_dim(); }
  /// The tensor named `name`; throws naming it when absent.
  NamedTensorT<Scalar>& at(std::string_view name) { return find(dense, name); }
  const NamedTensorT<Scalar>& at(std::string_view name) const { return find(dense, name); }

  template <class Vector>
  static auto& find(Vector& tensors, std::string_view name) {
    for (auto& t : tensors)
      if (t.name == name) return t;
    engram::detail::fail("train::Params: no tensor named '", name, "'");
  }
};
using Params = ParamsT<float>;

/// Gradients of one forward/backward: dense (as params.dense), hidden states, touched table rows.
template <class Scalar = float>
struct GradsT {
  std::vector<NamedTensorT<Scalar>> dense;
  std::vector<Scalar> hidden;  ///< [B, T, hc, d]
  SparseRowGradT<Scalar> table;
  NamedTensorT<Scalar>& at(std::string_view name) { return ParamsT<Scalar>::find(dense, name); }
  const NamedTensorT<Scalar>& at(std::string_view name) const {
    return ParamsT<Scalar>::find(dense, name);
  }
};
using Grads = GradsT<float>;

/// The official dense names and shapes of a layer of `config`, in Params order.
inline std::vector<std::pair<std::string, std::vector<int64_t>>> dense_layout(
    const EngramConfig& config) {
  const int64_t d = config.hidden_size, hc = config.hc_mult, m = config.memory_dim();
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  if (config.variant == Variant::kFused) {
    out.push_back({"wkv.weight", {(hc + 1) * d, m}});
    out.push_back({"q_weight", {hc, d}});
    out.push_back({"k_weight", {hc, d}});
    return out;
  }
  for (int64_t i = 0; i < hc; ++i) {
    out.push_back({"key_projs." + std::to_string(i) + ".weight", {d, m}});
    out.push_back({"key_projs." + std::to_string(i) + ".bias", {d}});
  }
  out.push_back({"value_proj.weight", {d, m}});
  out.push_back({"value_proj.bias", {d}});
  for (int64_t i = 0; i < hc; ++i) out.push_back({"norm1." + std::to_string(i) + ".weight", {d}});
  for (int64_t i = 0; i < hc; ++i) out.push_back({"norm2." + std::to_string(i) + ".weight", {d}});
  out.push_back({"short_conv.conv.weight", {hc * d, 1, config.kernel_size}});
  for (int64_t i = 0; i < hc; ++i)
    out.push_back({"short_conv.norms." + std::to_string(i) + ".weight", {d}});
  return out;
}

/// Zero tensors named and shaped as a layer of `config`'s dense parameters.
template <class Scalar>
std::vector<NamedTensorT<Scalar>> zero_dense(const EngramConfig& config) {
  std::vector<NamedTensorT<Scalar>> out;
  for (auto& [name, shape] : dense_layout(config)) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    out.push_back({name, shape, std::vector<Scalar>(static_cast<size_t>(n), Scalar(0))});
  }
  return out;
}

namespace detail {

template <class Scalar, class Weights>
void decode_table(const Weights& w, ParamsT<Scalar>& p) {
  std::visit(
      [&](const auto& table) {
        using Codec = typename std::decay_t<decltype(table)>::CodecType;
        ENGRAM_CHECK(!table.row_storage().empty(), table.name(),
                     ": train::load_params needs the table's rows (not a tier)");
        const int64_t r = table.row_dim();
        p.table_rows = static_cast<int64_t>(table.row_storage().size()) / table.row_bytes();
        p.column_rows.assign(table.column_rows().begin(), table.column_rows().end());
        p.column_offsets.assign(table.column_offsets().begin(), table.column_offsets().end());
        p.table.resize(static_cast<size_t>(p.table_rows * r));
        std::vector<float> row(static_cast<size_t>(r));
        for (int64_t i = 0; i < p.table_rows; ++i) {
          Codec::decode_row_reference(table.row_data(i), table.scale_data(i), r, row.data());
          for (int64_t j = 0; j < r; ++j) p.table[i * r + j] = static_cast<Scalar>(row[j]);
        }
      },
      w.table);
}

template <class Scalar, class Value>
void put(ParamsT<Scalar>& p, std::string_view name, const Value* values) {
  auto& t = p.at(name);
  for (int64_t i = 0; i < t.numel(); ++i) t.value[i] = static_cast<Scalar>(values[i]);
}

}  // namespace detail

/// Parameters from loaded fused (V4.1) weights: FP8 table rows and FP8 wkv (32 x 32 block scales)
/// decoded to Scalar (e.g. EngramModel::layer(l).weights() of a released V4.1 directory).
template <class Scalar = float, class WeightScalar>
ParamsT<Scalar> params_from_weights(const FusedEngramWeightsT<WeightScalar>& w) {
  const EngramConfig& config = w.config;
  ParamsT<Scalar> p;
  p.config = config;
  p.dense = zero_dense<Scalar>(config);
  const int64_t d = config.hidden_size, hc = config.hc_mult, m = config.memory_dim();
  detail::decode_table(w, p);
  auto& wkv = p.at("wkv.weight").value;
  if (!w.kv_weight.empty()) {
    std::copy(w.kv_weight.begin(), w.kv_weight.end(), wkv.begin());
  } else if (!w.kv_weight_bf16.empty()) {
    for (size_t i = 0; i < wkv.size(); ++i)
      wkv[i] = static_cast<Scalar>(engram::detail::bf16_bits_to_f32(w.kv_weight_bf16[i].bits));
  } else {  // FP8 codes with one E8M0 scale per 32 x 32 block
    const int64_t out = (hc + 1) * d, scale_cols = (m + 31) / 32;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < m; ++i)
        wkv[o * m + i] = static_cast<Scalar>(
            engram::detail::e4m3_to_f32(w.wkv_fp8[o * m + i]) *
            engram::detail::e8m0_to_f32(w.wkv_fp8_scale[(o / 32) * scale_cols + i / 32]));
  }
  std::copy(w.q_weight.begin(), w.q_weight.end(), p.at("q_weight").value.begin());
  std::copy(w.k_weight.begin(), w.k_weight.end(), p.at("k_weight").value.begin());
  return p;
}

/// Parameters from loaded demo weights (the stacked projection split back under its names).
template <class Scalar = float, class WeightScalar>
ParamsT<Scalar> params_from_weights(const EngramWeightsT<WeightScalar>& w) {
  const EngramConfig& config = w.config;
  ENGRAM_CHECK(!w.kv_weight.empty(), "train::params_from_weights: the demo weights hold a bf16 ",
               "projection; load them without bf16_projection");
  ParamsT<Scalar> p;
  p.config = config;
  p.dense = zero_dense<Scalar>(config);
  const int64_t d = config.hidden_size, hc = config.hc_mult, m = config.memory_dim();
  detail::decode_table(w, p);
  for (int64_t i = 0; i <= hc; ++i) {
    const std::string base = i < hc ? "key_projs." + std::to_string(i) : "value_proj";
    detail::put(p, base + ".weight", w.kv_weight.data() + i * d * m);
    detail::put(p, base + ".bias", w.kv_bias.data() + i * d);
  }
  for (int64_t i = 0; i < hc; ++i) {
    const std::string index = std::to_string(i);
    detail::put(p, "norm1." + index + ".weight", w.key_norm.data() + i * d);
    detail::put(p, "norm2." + index + ".weight", w.query_norm.data() + i * d);
    detail::put(p, "short_conv.norms." + index + ".weight", w.conv_norm.data() + i * d);
  }
  detail::put(p, "short_conv.conv.weight", w.conv_weight.data());
  return p;
}

/// Loads a layer's parameters from a checkpoint (names, prefix, column_rows: CheckpointOptions,
/// as the inference loader; bf16 options are ignored: parameters are Scalar).
/// @tparam Scalar float or double.
template <class Scalar = float>
ParamsT<Scalar> load_params(const EngramConfig& config, std::shared_ptr<const SafetensorsFile> file,
                            CheckpointOptions options = {}) {
  options.bf16_projection = options.bf16_compute = options.table_in_tier = false;
  if (config.variant == Variant::kFused)
    return params_from_weights<Scalar>(load_fused_engram_weights<Scalar>(config, file, options));
  return params_from_weights<Scalar>(load_engram_weights<Scalar>(config, file, options));
}

template <class Scalar = float>
ParamsT<Scalar> load_params(const EngramConfig& config, const std::string& path,
                            CheckpointOptions options = {}) {
  return load_params<Scalar>(config, std::make_shared<const SafetensorsFile>(path),
                             std::move(options));
}

}  // namespace engram::train
