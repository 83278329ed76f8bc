// engram/layer/checkpoint.hpp: loading one Engram layer's weights from a safetensors checkpoint.
//
// Tensor names are the official module's state_dict names, after an optional prefix (e.g.
// "layers.15.engram." for a whole-model checkpoint). With d = hidden_size, hc = hc_mult,
// cols = (N - 1) * H, r = config.row_dim(), m = config.memory_dim() = cols * r:
//   demo  multi_head_embedding.embedding.weight  F32|BF16|F16 [rows >= sum(column_rows), r]
//         multi_head_embedding.offsets           I64|I32 [cols] = exclusive cumsum of column_rows
//         value_proj.weight [d, m], value_proj.bias [d], key_projs.{i}.weight [d, m],
//         key_projs.{i}.bias [d], norm1.{i}.weight [d], norm2.{i}.weight [d],
//         short_conv.conv.weight [hc * d, 1, kernel_size], short_conv.norms.{i}.weight [d]
//   fused embed.weight F8_E4M3 [rows >= sum(column_rows), head_dim],
//         embed.weight_scale_inv F8_E8M0 [rows, head_dim / quant_block],
//         wkv.weight [(hc + 1) * d, m] (hc keys, then the shared value),
//         q_weight [hc, d], k_weight [hc, d]
// Dense tensors may be F32, F64, BF16 or F16 and are converted to Scalar.
//
// Guarantees: every tensor's dtype and shape is checked against the config (errors name the file,
// the tensor, expected and found); the table's rows must cover sum(column_rows). The table is never
// copied (the weights keep the mapped file alive and view its rows); dense projections are copied
// once, demo keys + value stacked as the fused wkv. column_rows (the hasher's primes) is optional
// for the demo (derived from the offsets), required for the fused layout. table_in_tier: the table
// stays in a RowTier; the layer gets a shape-only table and runs through forward_memory.
// Thread safety: the loaded weights are immutable; share them freely.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "engram/config.hpp"
#include "engram/detail/float16.hpp"
#include "engram/error.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/memory/any_embedding_table.hpp"
#include "engram/memory/codec_registry.hpp"

namespace engram {

/// How to find a layer's tensors in a checkpoint.
struct CheckpointOptions {
  /// Prepended to every tensor name, e.g. "layers.15.engram.".
  std::string prefix = {};
  /// Rows of each hash column's sub-table, [cols] (the hasher's primes); empty: from the offsets.
  std::vector<int64_t> column_rows = {};
  /// The table's rows live in a RowTier (a packed file, a remote pool; memory/tiers/),
  /// not in the checkpoint: the table tensors are neither required nor read, column_rows is
  /// required, and the layer runs through forward_memory (its hash-id front ends throw).
  bool table_in_tier = false;
  /// Store the stacked keys + value projection (demo key_projs + value_proj; fused wkv), the bulk
  /// of the dense weights, in bf16: each value rounded to nearest even from the checkpoint's
  /// (exact when the checkpoint holds BF16), half the bytes a decode step streams; products still
  /// accumulate in f32. Float layers only. The weights then hold kv_weight_bf16, not kv_weight.
  bool bf16_projection = false;
  /// Native bf16 compute for that projection (implies bf16_projection): activations rounded to
  /// bf16, exact products, f32 accumulation, as PyTorch's bf16 Linear (Bf16Compute::kNative: on
  /// vdpbf16ps or f32 FMA as bf16_dot() picks) where the CPU has AVX512-BF16; elsewhere
  /// bf16_projection's exact widening. Float layers only.
  bool bf16_compute = false;
};

/// A layer's table: any registered codec (memory/codec_registry.hpp); demo rows F32/BF16/F16,
/// fused FP8 rows with E8M0 scales per quant_block values.
using LayerTable = AnyEmbeddingTable;

/// Weights of the demo module (DemoBlock::Weights; EngramLayerT<Scalar, DemoBlock>).
template <class Scalar = float>
struct EngramWeightsT {
  EngramConfig config;
  std::shared_ptr<const SafetensorsFile> file;  ///< keeps the mapped table alive
  LayerTable table;
  std::vector<Scalar>
      kv_weight;  ///< [(hc + 1) * d, m]: key_projs.0 .. key_projs.{hc-1}, value_proj (or empty)
  std::vector<Scalar> kv_bias;           ///< [(hc + 1) * d]
  std::vector<Scalar> key_norm;          ///< norm1.{i}.weight, [hc, d]
  std::vector<Scalar> query_norm;        ///< norm2.{i}.weight, [hc, d]
  std::vector<Scalar> conv_weight;       ///< short_conv.conv.weight, [hc * d, kernel_size]
  std::vector<Scalar> conv_norm;         ///< short_conv.norms.{i}.weight, [hc, d]
  std::vector<BFloat16> kv_weight_bf16;  ///< kv_weight in bf16 (bf16_projection; else empty)
  bool bf16_compute = false;             ///< CheckpointOptions::bf16_compute
};

/// Weights of DeepSeek-V4.1's module (V41Block::Weights; V41EngramLayerT).
template <class Scalar = float>
struct FusedEngramWeightsT {
  EngramConfig config;
  std::shared_ptr<const SafetensorsFile> file;
  LayerTable table;
  std::vector<Scalar> kv_weight;         ///< wkv.weight, [(hc + 1) * d, m] (or empty)
  std::vector<Scalar> q_weight;          ///< [hc, d]
  std::vector<Scalar> k_weight;          ///< [hc, d]
  std::vector<BFloat16> kv_weight_bf16;  ///< kv_weight in bf16 (bf16_projection; else empty)
  bool bf16_compute = false;             ///< CheckpointOptions::bf16_compute
  /// FP8 wkv as released (V4.1): F8_E4M3 codes [(hc + 1) * d, m] and F8_E8M0 scales
  /// [ceil(out / 32), ceil(in / 32)], views into a mapped shard (then kv_weight is empty).
  std::span<const uint8_t> wkv_fp8 = {};
  std::span<const uint8_t> wkv_fp8_scale = {};
  /// Further mapped files the views above and the table point into (sharded checkpoints).
  std::vector<std::shared_ptr<const SafetensorsFile>> shards = {};
};

namespace detail {

/// Copies `tensor` (F32, F64, BF16 or F16, any alignment) converted to Scalar into out.
template <class Scalar>
void convert_dense(const TensorView& tensor, Scalar* out) {
  const int64_t n = tensor.numel();
  const std::byte* src = tensor.bytes.data();
  switch (tensor.dtype) {
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, src + 4 * i, 4);
        out[i] = static_cast<Scalar>(v);
      }
      return;
    case DType::kF64:
      for (int64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, src + 8 * i, 8);
        out[i] = static_cast<Scalar>(v);
      }
      return;
    case DType::kBF16:
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        out[i] = static_cast<Scalar>(tensor.dtype == DType::kBF16 ? bf16_bits_to_f32(bits)
                                                                  : f16_bits_to_f32(bits));
      }
      return;
    default:
      fail(tensor.file, ": tensor '", tensor.name, "' has dtype ", dtype_name(tensor.dtype),
           ", expected F32, F64, BF16 or F16");
  }
}

/// Reads a dense tensor of exactly `shape` into out (which it resizes when empty, else appends at
/// `out.data() + offset`).
template <class Scalar>
void read_dense(const SafetensorsFile& file, const std::string& name,
                std::initializer_list<int64_t> shape, std::vector<Scalar>& out, size_t offset = 0) {
  const TensorView& t = file.at(name);
  t.check_shape(shape);
  ENGRAM_CHECK(t.dtype == DType::kF32 || t.dtype == DType::kF64 || t.dtype == DType::kBF16 ||
                   t.dtype == DType::kF16,
               file.path(), ": tensor '", name, "' has dtype ", dtype_name(t.dtype),
               ", expected F32, F64, BF16 or F16");
  if (out.size() < offset + static_cast<size_t>(t.numel())) out.resize(offset + t.numel());
  convert_dense(t, out.data() + offset);
  // A NaN or infinite weight would turn every output of the layer into NaN: name the first one.
  const Scalar* values = out.data() + offset;
  for (int64_t i = 0; i < t.numel(); ++i)
    ENGRAM_CHECK(std::isfinite(static_cast<double>(values[i])), file.path(), ": tensor '", name,
                 "' holds a non-finite value (", static_cast<double>(values[i]), ") at flat index ",
                 i, "; weights must be finite");
}

/// read_dense, then rounded to bf16 into out[offset, offset + numel) (resized as read_dense);
/// a value that rounds to infinity (|v| above bf16's largest finite) is refused, naming the tensor.
inline void read_dense_bf16(const SafetensorsFile& file, const std::string& name,
                            std::initializer_list<int64_t> shape, std::vector<BFloat16>& out,
                            size_t offset = 0) {
  std::vector<float> values;
  read_dense(file, name, shape, values);
  if (out.size() < offset + values.size()) out.resize(offset + values.size());
  BFloat16* rounded = out.data() + offset;
  f32_to_bf16(values.data(), rounded, static_cast<int64_t>(values.size()));
  for (size_t i = 0; i < values.size(); ++i)
    ENGRAM_CHECK((rounded[i].bits & 0x7F80u) != 0x7F80u, file.path(), ": tensor '", name,
                 "' holds ", static_cast<double>(values[i]), " at flat index ", i,
                 ", beyond bf16's range (CheckpointOptions::bf16_projection)");
}

/// The stacked [(hc + 1) * d, m] projection weights as Scalar or bf16 (options.bf16_projection),
/// block b of rows read from tensor names[b] ([d, m] each; one tensor of all rows when names has
/// one entry).
template <class Scalar, class Weights>
void read_projection(const SafetensorsFile& file, const EngramConfig& config,
                     const CheckpointOptions& options, std::span<const std::string> names,
                     Weights& w) {
  const int64_t rows = (config.hc_mult + 1) * config.hidden_size, m = config.memory_dim();
  const int64_t block = rows / static_cast<int64_t>(names.size());
  const bool bf16 = options.bf16_projection || options.bf16_compute;
  w.bf16_compute = options.bf16_compute;
  if (bf16) {
    ENGRAM_CHECK((std::is_same_v<Scalar, float>), file.path(),
                 ": CheckpointOptions::bf16_projection needs a float layer");
    w.kv_weight_bf16.resize(static_cast<size_t>(rows * m));
  } else {
    w.kv_weight.resize(static_cast<size_t>(rows * m));
  }
  for (size_t b = 0; b < names.size(); ++b) {
    const auto at = static_cast<size_t>(static_cast<int64_t>(b) * block * m);
    if (bf16)
      read_dense_bf16(file, names[b], {block, m}, w.kv_weight_bf16, at);
    else
      read_dense(file, names[b], {block, m}, w.kv_weight, at);
  }
}

/// The column sizes to use: the given ones (checked to be cols positive values) or none.
inline std::vector<int64_t> checked_column_rows(const EngramConfig& config,
                                                const CheckpointOptions& options,
                                                const std::string& where) {
  const int64_t cols = config.num_columns();
  const auto& rows = options.column_rows;
  if (rows.empty()) return {};
  ENGRAM_CHECK(static_cast<int64_t>(rows.size()) == cols, where, ": column_rows has ", rows.size(),
               " entries, expected (max_ngram_size - 1) * n_head_per_ngram = ", cols);
  for (size_t c = 0; c < rows.size(); ++c)
    ENGRAM_CHECK(rows[c] > 0, where, ": column_rows[", c, "] = ", rows[c], " must be positive");
  return rows;
}

inline int64_t sum_of(std::span<const int64_t> values) {
  int64_t total = 0;
  for (int64_t v : values)
    ENGRAM_CHECK(!__builtin_add_overflow(total, v, &total), "row count overflows");
  return total;
}

/// Checks that table tensor `t` has at least sum(column_rows) rows.
inline void check_table_rows(const TensorView& t, std::span<const int64_t> column_rows) {
  const int64_t needed = sum_of(column_rows);
  ENGRAM_CHECK(t.shape[0] >= needed, t.file, ": tensor '", t.name, "' has ", t.shape[0],
               " rows, expected at least sum(column_rows) = ", needed);
}

/// The table over tensor `rows` (and `scales`) stored with the codec of the rows' dtype.
inline LayerTable make_table(const TensorView& rows, const TensorView* scales, int64_t row_dim,
                             int64_t quant_block, std::vector<int64_t> column_rows) {
  return AnyEmbeddingTable::make(dtype_name(rows.dtype), quant_block, rows.bytes,
                                 scales ? scales->bytes : std::span<const std::byte>{}, row_dim,
                                 std::move(column_rows), rows.file + ": " + rows.name);
}

}  // namespace detail

namespace detail {

/// A shape-only table (rows in a tier) for options.table_in_tier; needs column_rows.
inline LayerTable tier_table(const EngramConfig& config, const CheckpointOptions& options,
                             const std::string& where) {
  std::vector<int64_t> column_rows = checked_column_rows(config, options, where);
  ENGRAM_CHECK(!column_rows.empty(), where,
               ": a table in a tier (CheckpointOptions::table_in_tier) needs "
               "CheckpointOptions::column_rows (the hasher's primes, ",
               config.num_columns(), " values)");
  const std::string name = where + " (table rows in a tier)";
  const std::string_view codec = config.variant == Variant::kDemo ? "f32" : "fp8_e4m3";
  return AnyEmbeddingTable::shape_only(codec, config.quant_block, config.row_dim(),
                                       std::move(column_rows), name);
}

/// The demo module's dense weights (projections, norms, conv) into w.
template <class Scalar>
void read_demo_dense(const SafetensorsFile& file_ref, const EngramConfig& config,
                     const CheckpointOptions& options, EngramWeightsT<Scalar>& w) {
  const SafetensorsFile* file = &file_ref;
  const std::string& p = options.prefix;
  const int64_t d = config.hidden_size, hc = config.hc_mult;
  // keys then value, stacked into one [(hc + 1) * d, m] projection
  std::vector<std::string> bases, weight_names;
  for (int64_t i = 0; i <= hc; ++i) {
    bases.push_back(i < hc ? p + "key_projs." + std::to_string(i) : p + "value_proj");
    weight_names.push_back(bases.back() + ".weight");
  }
  read_projection<Scalar>(*file, config, options, weight_names, w);
  w.kv_bias.resize(static_cast<size_t>((hc + 1) * d));
  for (int64_t i = 0; i <= hc; ++i)
    detail::read_dense(*file, bases[i] + ".bias", {d}, w.kv_bias, static_cast<size_t>(i * d));
  for (int64_t i = 0; i < hc; ++i) {
    const auto at = static_cast<size_t>(i * d);
    const std::string index = std::to_string(i);
    detail::read_dense(*file, p + "norm1." + index + ".weight", {d}, w.key_norm, at);
    detail::read_dense(*file, p + "norm2." + index + ".weight", {d}, w.query_norm, at);
    detail::read_dense(*file, p + "short_conv.norms." + index + ".weight", {d}, w.conv_norm, at);
  }
  detail::read_dense(*file, p + "short_conv.conv.weight", {hc * d, 1, config.kernel_size},
                     w.conv_weight);
}

}  // namespace detail

/// Loads the demo module's weights (see the banner for names and shapes).
template <class Scalar = float>
EngramWeightsT<Scalar> load_engram_weights(const EngramConfig& config,
                                           std::shared_ptr<const SafetensorsFile> file,
                                           const CheckpointOptions& options = {}) {
  ENGRAM_CHECK(file != nullptr, "load_engram_weights: no checkpoint file");
  ENGRAM_CHECK(config.variant == Variant::kDemo, file->path(),
               ": load_engram_weights needs a demo-variant config, found variant \"fused\"");
  config.validate(file->path());
  const std::string& p = options.prefix;
  const int64_t cols = config.num_columns(), r = config.row_dim();

  if (options.table_in_tier) {
    EngramWeightsT<Scalar> w{
        config, file, detail::tier_table(config, options, file->path()), {}, {}, {}, {}, {},
        {},     {}};
    detail::read_demo_dense(*file, config, options, w);
    return w;
  }
  // table + offsets
  const TensorView& table = file->at(p + "multi_head_embedding.embedding.weight");
  ENGRAM_CHECK(table.shape.size() == 2 && table.shape[1] == r, file->path(), ": tensor '",
               table.name, "' has shape ", shape_string(table.shape), ", expected [rows, ", r,
               "] (n_embed_per_ngram / n_head_per_ngram = ", r, ")");
  const std::string offsets_name = p + "multi_head_embedding.offsets";
  file->at(offsets_name).check_shape({cols});
  const std::vector<int64_t> offsets = file->read_int64(offsets_name);
  std::vector<int64_t> column_rows = detail::checked_column_rows(config, options, file->path());
  if (column_rows.empty()) {
    ENGRAM_CHECK(offsets[0] == 0, file->path(), ": tensor '", offsets_name,
                 "' must start at 0, found ", offsets[0]);
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t end = c + 1 < cols ? offsets[c + 1] : table.shape[0];
      ENGRAM_CHECK(end > offsets[c], file->path(), ": tensor '", offsets_name,
                   "' must increase and stay below the table's ", table.shape[0], " rows, found ",
                   offsets[c], " then ", end, " at column ", c);
      column_rows.push_back(end - offsets[c]);
    }
  } else {
    int64_t expected = 0;
    for (int64_t c = 0; c < cols; ++c) {
      ENGRAM_CHECK(offsets[c] == expected, file->path(), ": tensor '", offsets_name, "'[", c,
                   "] = ", offsets[c], ", expected ", expected,
                   " (the cumulative sum of the column sizes)");
      expected += column_rows[c];
    }
  }
  detail::check_table_rows(table, column_rows);
  const CodecTraits* codec = find_codec(dtype_name(table.dtype), 0);
  ENGRAM_CHECK(codec != nullptr && codec->scale_dtype.empty(), file->path(), ": tensor '",
               table.name, "' has dtype ", dtype_name(table.dtype),
               ", expected the dtype of a codec without scales (F32, BF16 or F16)");
  EngramWeightsT<Scalar> w{
      config, file, detail::make_table(table, nullptr, r, 0, std::move(column_rows)),
      {},     {},   {},
      {},     {},   {},
      {}};
  detail::read_demo_dense(*file, config, options, w);
  return w;
}

/// Loads the fused module's weights; options.column_rows (the primes) is required.
template <class Scalar = float>
FusedEngramWeightsT<Scalar> load_fused_engram_weights(const EngramConfig& config,
                                                      std::shared_ptr<const SafetensorsFile> file,
                                                      const CheckpointOptions& options) {
  ENGRAM_CHECK(file != nullptr, "load_fused_engram_weights: no checkpoint file");
  ENGRAM_CHECK(config.variant == Variant::kFused, file->path(),
               ": load_fused_engram_weights needs a fused-variant config, found variant \"demo\"");
  config.validate(file->path());
  const std::string& p = options.prefix;
  const int64_t d = config.hidden_size, hc = config.hc_mult;
  const int64_t hd = config.head_dim, qb = config.quant_block;
  if (options.table_in_tier) {
    FusedEngramWeightsT<Scalar> w{
        config, file, detail::tier_table(config, options, file->path()), {}, {}, {}, {}, false, {},
        {},     {}};
    const std::string wkv[] = {p + "wkv.weight"};
    detail::read_projection<Scalar>(*file, config, options, wkv, w);
    detail::read_dense(*file, p + "q_weight", {hc, d}, w.q_weight);
    detail::read_dense(*file, p + "k_weight", {hc, d}, w.k_weight);
    return w;
  }
  std::vector<int64_t> column_rows = detail::checked_column_rows(config, options, file->path());
  ENGRAM_CHECK(!column_rows.empty(), file->path(),
               ": the fused checkpoint has no table offsets; pass CheckpointOptions::column_rows "
               "(the hasher's primes, ",
               config.num_columns(), " values)");

  const TensorView& rows = file->at(p + "embed.weight");
  const TensorView& scales = file->at(p + "embed.weight_scale_inv");
  rows.check_dtype(DType::kF8E4M3);
  scales.check_dtype(DType::kF8E8M0);
  ENGRAM_CHECK(rows.shape.size() == 2 && rows.shape[1] == hd, file->path(), ": tensor '", rows.name,
               "' has shape ", shape_string(rows.shape), ", expected [rows, ", hd, "] (head_dim)");
  scales.check_shape({rows.shape[0], hd / qb});
  detail::check_table_rows(rows, column_rows);
  ENGRAM_CHECK(find_codec(dtype_name(rows.dtype), qb) != nullptr, file->path(), ": quant_block ",
               qb, " is not supported (", codec_choices(), ")");
  FusedEngramWeightsT<Scalar> w{
      config, file,  detail::make_table(rows, &scales, hd, qb, std::move(column_rows)),
      {},     {},    {},
      {},     false, {},
      {},     {}};
  const std::string wkv[] = {p + "wkv.weight"};
  detail::read_projection<Scalar>(*file, config, options, wkv, w);
  detail::read_dense(*file, p + "q_weight", {hc, d}, w.q_weight);
  detail::read_dense(*file, p + "k_weight", {hc, d}, w.k_weight);
  return w;
}

}  // namespace engram
