// engram/memory/detail/packed_format_impl.hpp: the definitions of PackedTableInfo's validate,
// to_json and from_json (engram/memory/packed_format.hpp states the contract). Included by that
// header in header-only mode and compiled once into engram::instantiations in compiled mode
// (engram/detail/compiled.hpp); not a header to include directly.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engram/io/config_json.hpp"
#include "engram/memory/packed_format.hpp"

namespace engram {

ENGRAM_INLINE void PackedTableInfo::validate(const std::string& source) const {
  config.validate(source);
  config.require_layer(layer_id, source);
  ENGRAM_CHECK(codec_traits() != nullptr, source, ": field 'codec' must be one of ",
               codec_choices(), ", found '", codec, "' with quant_block ", config.quant_block);
  ENGRAM_CHECK(row_dim == config.row_dim(), source, ": field 'row_dim' is ", row_dim,
               " but the config implies ", config.row_dim());
  const auto columns = static_cast<size_t>(config.num_columns());
  ENGRAM_CHECK(primes.size() == columns, source, ": field 'primes' has ", primes.size(),
               " entries, expected (max_ngram_size - 1) * n_head_per_ngram = ", columns);
  ENGRAM_CHECK(offsets.size() == columns, source, ": field 'offsets' has ", offsets.size(),
               " entries, expected ", columns);
  ENGRAM_CHECK(multipliers.size() == static_cast<size_t>(config.max_ngram_size), source,
               ": field 'multipliers' has ", multipliers.size(),
               " entries, expected max_ngram_size = ", config.max_ngram_size);
  int64_t total = 0;
  for (size_t c = 0; c < columns; ++c) {
    ENGRAM_CHECK(primes[c] >= 1, source, ": field 'primes' entry ", c, " must be positive, found ",
                 primes[c]);
    ENGRAM_CHECK(offsets[c] == total, source, ": field 'offsets' entry ", c, " is ", offsets[c],
                 ", expected the sum of the earlier primes ", total);
    ENGRAM_CHECK(!__builtin_add_overflow(total, primes[c], &total), source,
                 ": field 'primes' sums past 2^63");
  }
  ENGRAM_CHECK(num_rows == total, source, ": field 'num_rows' is ", num_rows,
               ", expected the sum of the primes ", total);
}

ENGRAM_INLINE nlohmann::json PackedTableInfo::to_json() const {
  return {{"format", "engram packed table"},
          {"config", config.to_json()},
          {"layer_id", layer_id},
          {"codec", codec},
          {"row_dim", row_dim},
          {"data_bytes_per_row", data_bytes_per_row()},
          {"scale_bytes_per_row", scale_bytes_per_row()},
          {"num_rows", num_rows},
          {"offsets", offsets},
          {"primes", primes},
          {"multipliers", multipliers},
          {"page_checksum", "XXH3-64, seed = page index"}};
}

ENGRAM_INLINE PackedTableInfo PackedTableInfo::from_json(const nlohmann::json& j,
                                                         const std::string& source) {
  ENGRAM_CHECK(j.is_object(), source, ": metadata must be a JSON object, found ", j.type_name());
  auto field = [&](const char* name) -> const nlohmann::json& {
    ENGRAM_CHECK(j.contains(name), source, ": metadata misses field '", name, "'");
    return j[name];
  };
  auto integer = [&](const char* name) {
    const auto& v = field(name);
    ENGRAM_CHECK(v.is_number_integer(), source, ": metadata field '", name,
                 "' must be an integer, found ", v.dump());
    return v.get<int64_t>();
  };
  auto integers = [&](const char* name) {
    const auto& v = field(name);
    ENGRAM_CHECK(v.is_array(), source, ": metadata field '", name, "' must be an array");
    std::vector<int64_t> out;
    for (const auto& x : v) {
      ENGRAM_CHECK(x.is_number_integer(), source, ": metadata field '", name,
                   "' must hold integers, found ", x.dump());
      out.push_back(x.get<int64_t>());
    }
    return out;
  };
  PackedTableInfo info;
  info.config = EngramConfig::from_json(field("config"), source + " (metadata 'config')");
  info.layer_id = integer("layer_id");
  ENGRAM_CHECK(field("codec").is_string(), source, ": metadata field 'codec' must be a string");
  info.codec = j["codec"].get<std::string>();
  info.row_dim = integer("row_dim");
  info.num_rows = integer("num_rows");
  info.offsets = integers("offsets");
  info.primes = integers("primes");
  info.multipliers = integers("multipliers");
  info.validate(source);
  ENGRAM_CHECK(integer("data_bytes_per_row") == info.data_bytes_per_row() &&
                   integer("scale_bytes_per_row") == info.scale_bytes_per_row(),
               source, ": metadata bytes per row (", j["data_bytes_per_row"].dump(), " + ",
               j["scale_bytes_per_row"].dump(), ") disagree with codec ", info.codec,
               " and row_dim ", info.row_dim, " (", info.data_bytes_per_row(), " + ",
               info.scale_bytes_per_row(), ")");
  return info;
}

}  // namespace engram
