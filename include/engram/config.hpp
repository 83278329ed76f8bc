// engram/config.hpp: EngramConfig, the sizes and seeds of a model's Engram layers (core: no JSON).
//
// Field names are those of DeepSeek's reference (engram_vocab_size, max_ngram_size,
// n_embed_per_ngram, n_head_per_ngram, layer_ids, pad_id, seed, kernel_size, hidden_size, hc_mult)
// plus, for the fused (V4.1-style) variant, head_dim, quant_block, rms_norm_eps and the dead-token
// rule. validate() range-checks every field (errors name the source and the field); the derived
// sizes (num_columns = (N-1)*H, row_dim, memory_dim) are what hashers, tables and layers use.
//
// Reading and writing JSON: EngramConfig::load(path) (file -> validated config) is defined in
// engram/io/config.hpp (in compiled mode once, in the library); from_json(j, src) and to_json()
// in engram/io/config_json.hpp. Calling to_json without it is a compile error ("before deduction
// of 'auto'"); calling load without engram/io/config.hpp a link error. Plain value type: copyable,
// thread-safe to share.
//
//   engram::EngramConfig c;              // defaults: demo variant, N = 3, H = 8, d = 1024
//   c.engram_vocab_size = {129280 * 5, 129280 * 5};
//   c.layer_ids = {1, 15};
//   c.validate("my config");             // throws engram::Error naming the field at fault
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engram/error.hpp"

namespace engram {

/// Which layer layout a checkpoint uses.
enum class Variant {
  kDemo,   ///< the official demo module: table + value/key projections + gate + short conv
  kFused,  ///< V4.1-style: FP8 rows, one fused wkv projection, residual included, no conv
};

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

  /// Reads and validates a config file (defined in engram/io/config.hpp).
  static EngramConfig load(const std::string& path);

  /// Reads and validates a config object, any nlohmann::json-like type (engram/io/config_json.hpp);
  /// `source` names it in errors (usually the file path).
  template <class Json>
  static EngramConfig from_json(const Json& j, const std::string& source);

  /// The config as reference-style nlohmann::json (defined in engram/io/config_json.hpp).
  auto to_json() const;
};

}  // namespace engram
