// engram/io/config.hpp: the Engram layer configuration, read from the reference's JSON.
//
// Field names are those of DeepSeek's reference (engram_vocab_size, max_ngram_size,
// n_embed_per_ngram, n_head_per_ngram, layer_ids, pad_id, seed, kernel_size, hidden_size, hc_mult)
// plus, for the fused (V4.1-style) variant, "variant": "fused", head_dim, quant_block and
// rms_norm_eps, and "dead_token_rule" ("pad_position", the default, or "cumulative": V4.1's
// image-token rule, hashing/ngram_hasher.hpp). Unknown fields are ignored. Every field is type- and
// range-checked; errors name the source and the field.
#pragma once

#include <cstdint>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engram/error.hpp"

namespace engram {

/// Which layer layout a checkpoint uses.
enum class Variant {
  kDemo,   ///< the official demo module: table + value/key projections + gate + short conv
  kFused,  ///< V4.1-style: FP8 rows, one fused wkv projection, residual included, no conv
};

namespace detail {
/// Parses the JSON file `path`; `what` names it in errors ("config", "index").
inline nlohmann::json read_json_file(const std::string& path, const char* what) {
  std::ifstream in(path);
  ENGRAM_CHECK(in.good(), path, ": cannot open ", what, " file");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": ", what, " is not valid JSON: ", e.what());
  }
}
}  // namespace detail

/// How a dead token (live mask 0, e.g. an image token) enters the n-gram windows of the hasher.
enum class DeadTokenRule {
  kPadPosition,  ///< only the dead position itself reads the compressed pad id
  kCumulative,   ///< V4.1: a dead token blocks its slot and every older slot of later windows
};

/// Sizes and seeds of one model's Engram layers (all layers in `layer_ids` share them).
struct EngramConfig {
  Variant variant = Variant::kDemo;
  std::vector<int64_t> engram_vocab_size;  ///< per order n = 2..N (an integer in JSON is expanded)
  int64_t max_ngram_size = 3;              ///< N: orders 2..N are hashed
  int64_t n_embed_per_ngram = 512;         ///< demo: width of one order's H heads together
  int64_t n_head_per_ngram = 8;            ///< H: hash heads per order
  std::vector<int64_t> layer_ids;          ///< transformer layers that hold an Engram layer
  int64_t pad_id = 2;                      ///< tokenizer id used before the sequence start
  int64_t seed = 0;
  int64_t kernel_size = 4;                                      ///< demo: short conv taps
  int64_t hidden_size = 1024;                                   ///< d
  int64_t hc_mult = 4;                                          ///< hyper-connection branches
  int64_t head_dim = 0;                                         ///< fused: values per row
  int64_t quant_block = 32;                                     ///< fused: values per E8M0 scale
  double rms_norm_eps = 1e-6;                                   ///< fused: RMSNorm epsilon
  DeadTokenRule dead_token_rule = DeadTokenRule::kPadPosition;  ///< hashing of dead tokens

  /// Table size before prime search for order n (2..N).
  int64_t vocab_size_for_order(int64_t n) const { return engram_vocab_size.at(n - 2); }
  /// Hash columns per token: (N - 1) * H.
  int64_t num_columns() const noexcept { return (max_ngram_size - 1) * n_head_per_ngram; }
  /// Values per table row: head_dim (fused) or n_embed_per_ngram / H (demo).
  int64_t row_dim() const noexcept {
    return variant == Variant::kFused ? head_dim : n_embed_per_ngram / n_head_per_ngram;
  }
  /// Width of the concatenated memory vector e: num_columns() * row_dim().
  int64_t memory_dim() const noexcept { return num_columns() * row_dim(); }

  /// Throws unless `layer` is one of layer_ids.
  void require_layer(int64_t layer, const std::string& source = "config") const {
    for (int64_t l : layer_ids)
      if (l == layer) return;
    std::string list;
    for (int64_t l : layer_ids) list += (list.empty() ? "" : ", ") + std::to_string(l);
    detail::fail(source, ": layer ", layer, " is not in layer_ids [", list, "]");
  }

  /// Bound on the widths (H, n_embed_per_ngram, head_dim, hidden_size) and on the memory width.
  static constexpr int64_t kMaxWidth = int64_t{1} << 24;

  /// Checks ranges and consistency; throws naming `source` and the field. Every field is bounded
  /// before any product of fields is formed, so that every derived size ((N-1)*H, memory_dim, the
  /// projections' (hc+1)*d*memory_dim) fits in int64. Table sizes (engram_vocab_size, < 2^62) are
  /// checked where a table is built or loaded: hashing alone accepts the reference's full range.
  void validate(const std::string& source) const {
    auto in_range = [&](int64_t v, const char* field, int64_t hi, const char* hi_name = "") {
      ENGRAM_CHECK(v >= 1 && v <= hi, source, ": field '", field, "' must be in [1, ", hi_name, hi,
                   "], found ", v);
    };
    ENGRAM_CHECK(max_ngram_size >= 2, source, ": field 'max_ngram_size' must be at least 2, found ",
                 max_ngram_size);
    ENGRAM_CHECK(max_ngram_size <= 64, source, ": field 'max_ngram_size' of ", max_ngram_size,
                 " is unreasonably large (at most 64)");
    in_range(n_head_per_ngram, "n_head_per_ngram", kMaxWidth);
    in_range(hidden_size, "hidden_size", kMaxWidth);
    in_range(hc_mult, "hc_mult", 256);
    ENGRAM_CHECK(static_cast<int64_t>(engram_vocab_size.size()) == max_ngram_size - 1, source,
                 ": field 'engram_vocab_size' must have max_ngram_size - 1 = ", max_ngram_size - 1,
                 " entries, found ", engram_vocab_size.size());
    for (int64_t v : engram_vocab_size)
      ENGRAM_CHECK(v >= 1 && v < (int64_t{1} << 62), source,
                   ": field 'engram_vocab_size' entries must be in [1, 2^62), found ", v);
    ENGRAM_CHECK(!layer_ids.empty(), source, ": field 'layer_ids' must not be empty");
    for (int64_t l : layer_ids) {
      ENGRAM_CHECK(l >= 0, source, ": field 'layer_ids' entries must be non-negative, found ", l);
      int64_t s = 0;
      ENGRAM_CHECK(!__builtin_mul_overflow(l, int64_t{10007}, &s) &&
                       !__builtin_add_overflow(s, seed, &s) && s >= 0,
                   source, ": seed + 10007 * layer (layer ", l,
                   ") must be a non-negative 64-bit integer (NumPy seeds are non-negative)");
    }
    ENGRAM_CHECK(pad_id >= 0, source, ": field 'pad_id' must be non-negative, found ", pad_id);
    if (variant == Variant::kDemo) {
      in_range(n_embed_per_ngram, "n_embed_per_ngram", kMaxWidth);
      in_range(kernel_size, "kernel_size", 1024);
      ENGRAM_CHECK(n_embed_per_ngram % n_head_per_ngram == 0, source,
                   ": field 'n_embed_per_ngram' (", n_embed_per_ngram,
                   ") must be divisible by 'n_head_per_ngram' (", n_head_per_ngram, ")");
    } else {
      in_range(head_dim, "head_dim", kMaxWidth);
      in_range(quant_block, "quant_block", head_dim, "head_dim = ");
      ENGRAM_CHECK(head_dim % quant_block == 0, source, ": field 'head_dim' (", head_dim,
                   ") must be divisible by 'quant_block' (", quant_block, ")");
      ENGRAM_CHECK(rms_norm_eps > 0 && rms_norm_eps < 1, source,
                   ": field 'rms_norm_eps' must be in (0, 1), found ", rms_norm_eps);
    }
    // From here on the products below cannot overflow: N - 1 <= 63, H and row_dim <= 2^24.
    ENGRAM_CHECK(memory_dim() <= kMaxWidth, source, ": memory width (max_ngram_size - 1) * ",
                 "n_head_per_ngram * row_dim = ", memory_dim(), " must be at most ", kMaxWidth);
  }

  /// Reads and validates a config object; `source` names it in errors (usually the file path).
  static EngramConfig from_json(const nlohmann::json& j, const std::string& source) {
    ENGRAM_CHECK(j.is_object(), source, ": config must be a JSON object, found ", j.type_name());
    EngramConfig c;
    auto integer = [&](const char* field, bool required, int64_t fallback) -> int64_t {
      if (!j.contains(field)) {
        ENGRAM_CHECK(!required, source, ": missing field '", field, "'");
        return fallback;
      }
      const auto& v = j[field];
      ENGRAM_CHECK(v.is_number_integer(), source, ": field '", field,
                   "' must be an integer, found ", v.type_name(), " ", v.dump());
      return v.get<int64_t>();
    };
    if (j.contains("variant")) {
      const auto& v = j["variant"];
      ENGRAM_CHECK(v.is_string() && (v == "demo" || v == "fused"), source,
                   ": field 'variant' must be \"demo\" or \"fused\", found ", v.dump());
      c.variant = v == "fused" ? Variant::kFused : Variant::kDemo;
    }
    const bool fused = c.variant == Variant::kFused;
    c.max_ngram_size = integer("max_ngram_size", true, 0);
    c.n_head_per_ngram = integer("n_head_per_ngram", true, 0);
    c.n_embed_per_ngram = integer("n_embed_per_ngram", !fused, 0);
    c.pad_id = integer("pad_id", true, 0);
    c.seed = integer("seed", true, 0);
    c.kernel_size = integer("kernel_size", !fused, 0);
    c.hidden_size = integer("hidden_size", true, 0);
    c.hc_mult = integer("hc_mult", true, 0);
    c.head_dim = integer("head_dim", fused, 0);
    c.quant_block = integer("quant_block", false, 32);
    if (j.contains("rms_norm_eps")) {
      ENGRAM_CHECK(j["rms_norm_eps"].is_number(), source,
                   ": field 'rms_norm_eps' must be a number, found ", j["rms_norm_eps"].dump());
      c.rms_norm_eps = j["rms_norm_eps"].get<double>();
    }

    if (j.contains("dead_token_rule")) {
      const auto& v = j["dead_token_rule"];
      ENGRAM_CHECK(v.is_string() && (v == "pad_position" || v == "cumulative"), source,
                   ": field 'dead_token_rule' must be \"pad_position\" or \"cumulative\", found ",
                   v.dump());
      c.dead_token_rule =
          v == "cumulative" ? DeadTokenRule::kCumulative : DeadTokenRule::kPadPosition;
    }
    ENGRAM_CHECK(j.contains("engram_vocab_size"), source, ": missing field 'engram_vocab_size'");
    const auto& vs = j["engram_vocab_size"];
    if (vs.is_number_integer()) {
      ENGRAM_CHECK(c.max_ngram_size >= 2 && c.max_ngram_size <= 64, source,
                   ": field 'max_ngram_size' must be in [2, 64], found ", c.max_ngram_size);
      c.engram_vocab_size.assign(static_cast<size_t>(c.max_ngram_size - 1), vs.get<int64_t>());
    } else {
      ENGRAM_CHECK(vs.is_array(), source,
                   ": field 'engram_vocab_size' must be an integer or an array of integers, found ",
                   vs.type_name());
      for (const auto& v : vs) {
        ENGRAM_CHECK(v.is_number_integer(), source,
                     ": field 'engram_vocab_size' must hold integers, found ", v.dump());
        c.engram_vocab_size.push_back(v.get<int64_t>());
      }
    }
    ENGRAM_CHECK(j.contains("layer_ids"), source, ": missing field 'layer_ids'");
    ENGRAM_CHECK(j["layer_ids"].is_array(), source, ": field 'layer_ids' must be an array, found ",
                 j["layer_ids"].type_name());
    for (const auto& v : j["layer_ids"]) {
      ENGRAM_CHECK(v.is_number_integer(), source, ": field 'layer_ids' must hold integers, found ",
                   v.dump());
      c.layer_ids.push_back(v.get<int64_t>());
    }
    c.validate(source);
    return c;
  }

  /// Reads and validates a config file.
  static EngramConfig load(const std::string& path) {
    return from_json(detail::read_json_file(path, "config"), path);
  }

  /// The config as reference-style JSON.
  nlohmann::json to_json() const {
    nlohmann::json j = {{"engram_vocab_size", engram_vocab_size},
                        {"max_ngram_size", max_ngram_size},
                        {"n_head_per_ngram", n_head_per_ngram},
                        {"layer_ids", layer_ids},
                        {"pad_id", pad_id},
                        {"seed", seed},
                        {"hidden_size", hidden_size},
                        {"hc_mult", hc_mult}};
    if (dead_token_rule == DeadTokenRule::kCumulative) j["dead_token_rule"] = "cumulative";
    if (variant == Variant::kFused) {
      j["variant"] = "fused";
      j["head_dim"] = head_dim;
      j["quant_block"] = quant_block;
      j["rms_norm_eps"] = rms_norm_eps;
    } else {
      j["n_embed_per_ngram"] = n_embed_per_ngram;
      j["kernel_size"] = kernel_size;
    }
    return j;
  }
};

}  // namespace engram
