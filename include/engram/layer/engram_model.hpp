// engram/layer/engram_model.hpp: DeepSeek-V4.1's Engram layers, loaded from the released Hugging
// Face directory.
//
//   auto model = engram::EngramModel::open("DeepSeek-V4.1-Flash");       // every engram_layer_ids
//   const engram::FusedEngramLayer& layer = model.layer(1);
//   std::vector<uint8_t> live = model.live_mask(input_ids);              // image tokens are dead
//   layer.forward_tokens(input_ids, hidden, B, T, out, ws, live);        // hidden/out [B,T,hc,d]
//
// open() reads config.json (io/hf_config.hpp), model.safetensors.index.json and only the shards
// holding the requested layers' tensors (memory-mapped; a single model.safetensors without an index
// works too), and tokenizer.json, from which the vocabulary compression is built at start-up
// (options.lookup, a saved CompressionTable, replaces it when the directory has none). It refuses,
// naming both numbers, a compression whose size differs from engram_compressed_vocab_size and hash
// tables whose derived row totals (the primes) differ from engram_num_embeddings.
// Tensors of layer L (prefix "layers.L.engram."), each dtype- and shape-checked:
//   embed.weight F8_E4M3 [rows, head_dim]; embed.scale (or vLLM's embed.weight_scale_inv) F8_E8M0
//   [rows, head_dim / 32]; wkv.weight F8_E4M3 [(hc + 1) * d, (N - 1) * H * head_dim] with wkv.scale
//   F8_E8M0 [ceil(out / 32), ceil(in / 32)] (no NaN code 0xFF), or wkv.weight F32/BF16 alone;
//   q_weight, k_weight [hc, d] (BF16 as released).
// options.table_in_tier leaves the table tensors unread: the layers then run through
// forward_memory with rows from any RowTier (memory/tiers/), e.g. the shards themselves.
// Link engram::tokenizer (tokenizer.json: utf8proc, zlib). Ownership: the model owns the
// compression table, hashers and layers; the layers keep the mapped
// shards alive. Thread safety: the loaded model is immutable; layers' const methods are
// thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engram/error.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/hashing/primes.hpp"
#include "engram/io/hf_config.hpp"
#include "engram/io/model_directory.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "engram/tokenizer/vocab_compressor.hpp"

namespace engram {

/// How to open a model directory.
struct EngramModelOptions {
  /// A saved compression table (CompressionTable::save), used when the directory has no
  /// tokenizer.json.
  std::string lookup = {};
  /// Engram layers to load (a subset of engram_layer_ids); empty: all of them.
  std::vector<int64_t> layers = {};
  /// The table rows come from a RowTier: embed.* is not read; run the layers by forward_memory.
  bool table_in_tier = false;
};

/// Tensor-name prefix of Engram layer `layer_id` in the released checkpoint.
inline std::string v41_tensor_prefix(int64_t layer_id) {
  return "layers." + std::to_string(layer_id) + ".engram.";
}

/// Loads layer `layer_id`'s weights from `dir` (see the banner); column_rows are its primes.
template <class Scalar = float>
FusedEngramWeightsT<Scalar> load_v41_engram_weights(const HfEngramConfig& hf,
                                                    const ModelDirectory& dir, int64_t layer_id,
                                                    std::vector<int64_t> column_rows,
                                                    bool table_in_tier = false) {
  const EngramConfig& config = hf.engram;
  const std::string p = v41_tensor_prefix(layer_id);
  const int64_t d = config.hidden_size, hc = config.hc_mult, hd = config.head_dim;
  const int64_t qb = config.quant_block, out = (hc + 1) * d, in = config.memory_dim();
  const int64_t rows = hf.rows_of(layer_id, dir.path_of("config.json"));

  auto table = [&]() -> LayerTable {
    if (table_in_tier) {
      CheckpointOptions options;
      options.column_rows = std::move(column_rows);
      return detail::tier_table(config, options, dir.path());
    }
    const TensorView& embed = dir.tensor(p + "embed.weight");
    const std::string scale_name =
        dir.contains(p + "embed.scale") ? p + "embed.scale" : p + "embed.weight_scale_inv";
    const TensorView& scale = dir.tensor(scale_name);
    embed.check_dtype(DType::kF8E4M3);
    embed.check_shape({rows, hd});
    scale.check_dtype(DType::kF8E8M0);
    scale.check_shape({rows, hd / qb});
    ENGRAM_CHECK(qb == 32, dir.path(), ": weight_block_size ", qb,
                 " is not supported for the table (32, as released)");
    return detail::make_table(embed, &scale, hd, qb, std::move(column_rows));
  };
  FusedEngramWeightsT<Scalar> w{config, nullptr, table(), {}, {}, {}, {}, false, {}, {}, {}};
  if (!table_in_tier) w.file = dir.file_of(p + "embed.weight");

  const TensorView& wkv = dir.tensor(p + "wkv.weight");
  wkv.check_shape({out, in});
  if (wkv.dtype == DType::kF8E4M3) {
    const TensorView& scale = dir.tensor(p + "wkv.scale");
    scale.check_dtype(DType::kF8E8M0);
    scale.check_shape({(out + 31) / 32, (in + 31) / 32});
    const auto codes = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(wkv.bytes.data()),
                                                wkv.bytes.size());
    const auto scales = std::span<const uint8_t>(
        reinterpret_cast<const uint8_t*>(scale.bytes.data()), scale.bytes.size());
    for (size_t i = 0; i < scales.size(); ++i)
      ENGRAM_CHECK(scales[i] != 0xFF, scale.file, ": tensor '", scale.name,
                   "' holds the NaN code 0xFF at block (", i / static_cast<size_t>(scale.shape[1]),
                   ", ", i % static_cast<size_t>(scale.shape[1]), ")");
    for (size_t i = 0; i < codes.size(); ++i)
      ENGRAM_CHECK((codes[i] & 0x7F) != 0x7F, wkv.file, ": tensor '", wkv.name,
                   "' holds an E4M3 NaN code at (", i / static_cast<size_t>(in), ", ",
                   i % static_cast<size_t>(in), ")");
    w.wkv_fp8 = codes;
    w.wkv_fp8_scale = scales;
    w.shards.push_back(dir.file_of(p + "wkv.scale"));
  } else {
    detail::read_dense(*dir.file_of(p + "wkv.weight"), p + "wkv.weight", {out, in}, w.kv_weight);
  }
  w.shards.push_back(dir.file_of(p + "wkv.weight"));
  detail::read_dense(*dir.file_of(p + "q_weight"), p + "q_weight", {hc, d}, w.q_weight);
  detail::read_dense(*dir.file_of(p + "k_weight"), p + "k_weight", {hc, d}, w.k_weight);
  for (const auto& shard : dir.open_shards()) w.shards.push_back(shard);
  return w;
}

/// The Engram layers of a released V4.1 checkpoint directory.
class EngramModel {
 public:
  using Layer = FusedEngramLayer;

  static EngramModel open(const std::string& dir, const EngramModelOptions& options = {}) {
    namespace fs = std::filesystem;
    EngramModel m;
    m.dir_ = dir;
    const std::string config_path = (fs::path(dir) / "config.json").string();
    m.config_ = HfEngramConfig::load(config_path);
    m.compression_ = std::make_shared<const CompressionTable>(load_compression(dir, options));
    ENGRAM_CHECK(m.compression_->compressed_size() == m.config_.compressed_vocab_size,
                 m.compression_source_(dir, options), ": the vocabulary compression has ",
                 m.compression_->compressed_size(),
                 " compressed ids, but config.json field 'text_config.engram_compressed_vocab_size'"
                 " says ",
                 m.config_.compressed_vocab_size);
    const EngramConfig& c = m.config_.engram;
    const auto primes = engram_table_primes(c);
    for (size_t i = 0; i < c.layer_ids.size(); ++i)
      m.config_.check_table_rows(c.layer_ids[i], detail::sum_of(primes[i]), config_path);
    std::vector<int64_t> wanted = options.layers.empty() ? c.layer_ids : options.layers;
    ModelDirectory directory(dir);
    for (int64_t layer_id : wanted) {
      if (m.layers_.count(layer_id)) continue;
      c.require_layer(layer_id, config_path);
      auto hasher = std::make_shared<const NgramHasher>(c, m.compression_->lookup(), layer_id);
      std::vector<int64_t> column_rows(hasher->primes().begin(), hasher->primes().end());
      auto weights = std::make_shared<const FusedEngramWeightsT<float>>(load_v41_engram_weights(
          m.config_, directory, layer_id, std::move(column_rows), options.table_in_tier));
      m.layers_.emplace(layer_id, std::make_shared<const Layer>(std::move(weights), hasher));
      m.hashers_.emplace(layer_id, std::move(hasher));
      m.loaded_.push_back(layer_id);
    }
    return m;
  }

  const std::string& path() const noexcept { return dir_; }
  const HfEngramConfig& config() const noexcept { return config_; }
  const EngramConfig& engram_config() const noexcept { return config_.engram; }
  const CompressionTable& compression() const noexcept { return *compression_; }
  /// The loaded layers' ids, in load order.
  std::span<const int64_t> layer_ids() const noexcept { return loaded_; }

  const Layer& layer(int64_t layer_id) const { return *find(layers_, layer_id); }
  const NgramHasher& hasher(int64_t layer_id) const { return *find(hashers_, layer_id); }
  std::shared_ptr<const Layer> shared_layer(int64_t layer_id) const {
    return find(layers_, layer_id);
  }

  /// live [B * T]: 0 where input_ids holds image_token_id (dead), else 1.
  std::vector<uint8_t> live_mask(std::span<const int64_t> input_ids) const {
    std::vector<uint8_t> live(input_ids.size(), 1);
    for (size_t i = 0; i < input_ids.size(); ++i)
      live[i] = input_ids[i] == config_.image_token_id ? 0 : 1;
    return live;
  }

 private:
  static CompressionTable load_compression(const std::string& dir,
                                           const EngramModelOptions& options) {
    const std::string tokenizer = (std::filesystem::path(dir) / "tokenizer.json").string();
    if (std::filesystem::exists(tokenizer)) return compress_tokenizer_json(tokenizer);
    ENGRAM_CHECK(!options.lookup.empty(), dir,
                 ": no tokenizer.json; pass a compression table (EngramModelOptions::lookup, "
                 "--lookup)");
    return CompressionTable::load(options.lookup);
  }
  static std::string compression_source_(const std::string& dir,
                                         const EngramModelOptions& options) {
    const std::string tokenizer = (std::filesystem::path(dir) / "tokenizer.json").string();
    return std::filesystem::exists(tokenizer) ? tokenizer : options.lookup;
  }

  template <class V>
  const std::shared_ptr<const V>& find(const std::map<int64_t, std::shared_ptr<const V>>& map,
                                       int64_t layer_id) const {
    const auto it = map.find(layer_id);
    if (it == map.end()) {
      std::string list;
      for (int64_t l : loaded_) list += (list.empty() ? "" : ", ") + std::to_string(l);
      detail::fail(dir_, ": Engram layer ", layer_id, " is not loaded (loaded: [", list, "])");
    }
    return it->second;
  }

  std::string dir_;
  HfEngramConfig config_;
  std::shared_ptr<const CompressionTable> compression_;
  std::map<int64_t, std::shared_ptr<const NgramHasher>> hashers_;
  std::map<int64_t, std::shared_ptr<const Layer>> layers_;
  std::vector<int64_t> loaded_;
};

}  // namespace engram
