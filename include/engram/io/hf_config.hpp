// engram/io/hf_config.hpp: the Engram fields of a released Hugging Face config.json
// (DeepSeek-V4.1).
//
// Reads, from a model directory's config.json:
//   text_config: engram_layer_ids [L], engram_num_embeddings [L] (table rows per layer),
//                engram_max_ngram_size N, engram_vocab_size (one integer, every order),
//                engram_n_heads H, engram_head_dim, engram_pad_token_id,
//                engram_compressed_vocab_size, hidden_size, hc_mult, rms_norm_eps
//   top level:   image_token_id (optional: none = no dead tokens),
//                quantization_config.weight_block_size [32, 32], .scale_fmt "ue8m0" (optional)
// into an EngramConfig of the fused variant (seed 0, quant_block = weight_block_size, the
// cumulative dead-token rule) plus the fields the layer itself does not need. A config.json without
// text_config (the Engram fields at the top level) is accepted too. Every field is type- and
// range-checked; errors name the file and the field (e.g. "config.json: field
// 'text_config.engram_n_heads' must be a positive integer, found \"8\"").
// check_table_rows compares the hasher's derived row totals with engram_num_embeddings.
// Pure value type; thread-safe to share once loaded.
#pragma once

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "engram/error.hpp"
#include "engram/io/config_json.hpp"

namespace engram {

/// The Engram part of a released V4.1 config.json.
struct HfEngramConfig {
  EngramConfig engram;                  ///< fused variant, cumulative dead-token rule
  std::vector<int64_t> num_embeddings;  ///< table rows per layer, in engram.layer_ids order
  int64_t compressed_vocab_size = 0;    ///< engram_compressed_vocab_size
  int64_t image_token_id = -1;          ///< dead tokens' id; -1: none
  int64_t weight_block_size[2] = {32, 32};
  std::string scale_fmt = "ue8m0";

  /// Rows of layer `layer_id`'s table (throws when it is not an Engram layer).
  int64_t rows_of(int64_t layer_id, const std::string& source = "config.json") const {
    engram.require_layer(layer_id, source);
    for (size_t i = engram.layer_ids.size(); i-- > 0;)
      if (engram.layer_ids[i] == layer_id) return num_embeddings[i];
    return 0;
  }

  /// Throws unless `derived` (the sum of the layer's primes) equals engram_num_embeddings.
  void check_table_rows(int64_t layer_id, int64_t derived, const std::string& source) const {
    const int64_t expected = rows_of(layer_id, source);
    ENGRAM_CHECK(derived == expected, source, ": layer ", layer_id,
                 ": the hash tables derived from the config (primes from engram_vocab_size) hold ",
                 derived, " rows, but field 'text_config.engram_num_embeddings' says ", expected);
  }

  static HfEngramConfig from_json(const nlohmann::json& root, const std::string& source) {
    ENGRAM_CHECK(root.is_object(), source, ": config must be a JSON object, found ",
                 root.type_name());
    const bool nested = root.contains("text_config");
    const nlohmann::json& tc = nested ? root["text_config"] : root;
    const std::string scope = nested ? "text_config." : "";
    ENGRAM_CHECK(tc.is_object(), source, ": field 'text_config' must be an object, found ",
                 tc.type_name());
    auto field = [&](const nlohmann::json& j, const std::string& prefix,
                     const char* name) -> const nlohmann::json& {
      ENGRAM_CHECK(j.contains(name), source, ": missing field '", prefix, name, "'");
      return j[name];
    };
    auto integer = [&](const nlohmann::json& j, const std::string& prefix, const char* name,
                       int64_t min) -> int64_t {
      const auto& v = field(j, prefix, name);
      ENGRAM_CHECK(v.is_number_integer() && v.get<int64_t>() >= min, source, ": field '", prefix,
                   name, "' must be an integer >= ", min, ", found ", v.dump());
      return v.get<int64_t>();
    };
    auto integers = [&](const nlohmann::json& j, const std::string& prefix, const char* name,
                        int64_t min) {
      const auto& v = field(j, prefix, name);
      ENGRAM_CHECK(v.is_array() && !v.empty(), source, ": field '", prefix, name,
                   "' must be a non-empty array of integers, found ", v.dump());
      std::vector<int64_t> out;
      for (const auto& e : v) {
        ENGRAM_CHECK(e.is_number_integer() && e.get<int64_t>() >= min, source, ": field '", prefix,
                     name, "' must hold integers >= ", min, ", found ", e.dump());
        out.push_back(e.get<int64_t>());
      }
      return out;
    };

    HfEngramConfig c;
    EngramConfig& e = c.engram;
    e.variant = Variant::kFused;
    e.dead_token_rule = DeadTokenRule::kCumulative;
    e.seed = 0;
    e.layer_ids = integers(tc, scope, "engram_layer_ids", 0);
    c.num_embeddings = integers(tc, scope, "engram_num_embeddings", 1);
    ENGRAM_CHECK(c.num_embeddings.size() == e.layer_ids.size(), source, ": field '", scope,
                 "engram_num_embeddings' has ", c.num_embeddings.size(), " entries, but '", scope,
                 "engram_layer_ids' has ", e.layer_ids.size());
    e.max_ngram_size = integer(tc, scope, "engram_max_ngram_size", 2);
    ENGRAM_CHECK(e.max_ngram_size <= 64, source, ": field '", scope,
                 "engram_max_ngram_size' must be at most 64, found ", e.max_ngram_size);
    const auto& vocab = field(tc, scope, "engram_vocab_size");
    if (vocab.is_array()) {
      e.engram_vocab_size = integers(tc, scope, "engram_vocab_size", 1);
    } else {
      e.engram_vocab_size.assign(static_cast<size_t>(e.max_ngram_size - 1),
                                 integer(tc, scope, "engram_vocab_size", 1));
    }
    e.n_head_per_ngram = integer(tc, scope, "engram_n_heads", 1);
    e.head_dim = integer(tc, scope, "engram_head_dim", 1);
    e.pad_id = integer(tc, scope, "engram_pad_token_id", 0);
    c.compressed_vocab_size = integer(tc, scope, "engram_compressed_vocab_size", 1);
    e.hidden_size = integer(tc, scope, "hidden_size", 1);
    e.hc_mult = integer(tc, scope, "hc_mult", 1);
    const auto& eps = field(tc, scope, "rms_norm_eps");
    ENGRAM_CHECK(eps.is_number() && eps.get<double>() > 0 && eps.get<double>() < 1, source,
                 ": field '", scope, "rms_norm_eps' must be a number in (0, 1), found ",
                 eps.dump());
    e.rms_norm_eps = eps.get<double>();

    if (root.contains("image_token_id") && !root["image_token_id"].is_null())
      c.image_token_id = integer(root, "", "image_token_id", 0);
    if (root.contains("quantization_config")) {
      const auto& q = root["quantization_config"];
      ENGRAM_CHECK(q.is_object(), source, ": field 'quantization_config' must be an object, found ",
                   q.dump());
      const std::string qs = "quantization_config.";
      if (q.contains("weight_block_size")) {
        const std::vector<int64_t> block = integers(q, qs, "weight_block_size", 1);
        ENGRAM_CHECK(block.size() == 2 && block[0] == block[1] &&
                         (block[0] == 16 || block[0] == 32 || block[0] == 64 || block[0] == 128),
                     source,
                     ": field 'quantization_config.weight_block_size' must be [b, b] with b in "
                     "{16, 32, 64, 128}, found ",
                     q["weight_block_size"].dump());
        c.weight_block_size[0] = block[0];
        c.weight_block_size[1] = block[1];
      }
      if (q.contains("scale_fmt")) {
        const auto& f = q["scale_fmt"];
        ENGRAM_CHECK(f.is_string() && f == "ue8m0", source,
                     ": field 'quantization_config.scale_fmt' must be \"ue8m0\" (power-of-two "
                     "E8M0 scales), found ",
                     f.dump());
        c.scale_fmt = f.get<std::string>();
      }
    }
    e.quant_block = c.weight_block_size[1];
    e.validate(source);
    return c;
  }

  static HfEngramConfig load(const std::string& path) {
    return from_json(detail::read_json_file(path, "config"), path);
  }
};

}  // namespace engram
