// engram/io/config_json.hpp: EngramConfig (engram/config.hpp) as the reference's JSON:
// EngramConfig::from_json(j, source), to_json(), and detail::read_json_file. Includes
// nlohmann-json; engram/io/config.hpp (EngramConfig::load) needs only this header's definitions
// in header-only mode.
//
// Accepted fields: engram_vocab_size (an integer is expanded to every order, or an array),
// max_ngram_size, n_embed_per_ngram, n_head_per_ngram, layer_ids, pad_id, seed, kernel_size,
// hidden_size, hc_mult, and for the fused (V4.1-style) variant "variant": "fused", head_dim,
// quant_block and rms_norm_eps; "dead_token_rule" ("pad_position", the default, or "cumulative":
// V4.1's image-token rule, hashing/ngram_hasher.hpp). Unknown fields are ignored. Every field is
// type- and range-checked; errors name the source and the field. Stateless; thread-safe.
//
//   const auto config = engram::EngramConfig::from_json(nlohmann::json::parse(text), "inline");
//   std::cout << config.to_json().dump(2);
#pragma once

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engram/config.hpp"
#include "engram/error.hpp"

namespace engram {

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

/// Reads and validates a config object; `source` names it in errors (usually the file path).
template <class Json>
EngramConfig EngramConfig::from_json(const Json& json, const std::string& source) {
  const nlohmann::json& j = json;  // the template only keeps nlohmann out of engram/config.hpp
  ENGRAM_CHECK(j.is_object(), source, ": config must be a JSON object, found ", j.type_name());
  EngramConfig c;
  auto integer = [&](const char* field, bool required, int64_t fallback) -> int64_t {
    if (!j.contains(field)) {
      ENGRAM_CHECK(!required, source, ": missing field '", field, "'");
      return fallback;
    }
    const auto& v = j[field];
    ENGRAM_CHECK(v.is_number_integer(), source, ": field '", field, "' must be an integer, found ",
                 v.type_name(), " ", v.dump());
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

/// The config as reference-style JSON.
inline auto EngramConfig::to_json() const {
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

}  // namespace engram
