// engram/memory/tiers/detail/open_table_impl.hpp: the definitions of open_table and its schemes
// (engram/memory/tiers/open_table.hpp states the contract). Included by that header in
// header-only mode and compiled once into engram::instantiations in compiled mode
// (engram/detail/compiled.hpp): a consumer in compiled mode parses none of the tiers below.
#pragma once

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "engram/error.hpp"
#include "engram/memory/tiers/any_tier.hpp"
#include "engram/memory/tiers/cached_tier.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/in_memory_tier.hpp"
#include "engram/memory/tiers/memcached_uri.hpp"
#include "engram/memory/tiers/open_table.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/safetensors_tier.hpp"
#if ENGRAM_HAVE_MEMCACHED
#include "engram/memory/tiers/memcached_store.hpp"
#endif

namespace engram {

namespace detail {

/// Splits "PATH?k=v&k=v" into the path and the parameters; errors name `uri`.
inline std::pair<std::string, std::map<std::string, std::string>> parse_table_query(
    std::string_view rest, std::string_view uri) {
  std::map<std::string, std::string> params;
  const size_t q = rest.find('?');
  const std::string path(rest.substr(0, q));
  if (q != std::string_view::npos) {
    std::string_view query = rest.substr(q + 1);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      const std::string_view item = query.substr(0, amp);
      const size_t eq = item.find('=');
      ENGRAM_CHECK(eq != std::string_view::npos && eq > 0, "table URI '", uri, "': parameter '",
                   item, "' is not key=value");
      const std::string key(item.substr(0, eq));
      ENGRAM_CHECK(params.count(key) == 0, "table URI '", uri, "': parameter '", key,
                   "' given twice");
      params[key] = std::string(item.substr(eq + 1));
      query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    }
  }
  return {path, params};
}

/// A non-negative integer parameter of at most `max`; errors name the URI, the parameter and the
/// bound.
inline int64_t parse_table_integer(const std::string& value, std::string_view key,
                                   std::string_view uri, int64_t max) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  ENGRAM_CHECK(ec == std::errc() && end == value.data() + value.size() && v >= 0, "table URI '",
               uri, "': parameter '", key, "' must be a non-negative integer, found '", value, "'");
  ENGRAM_CHECK(v <= max, "table URI '", uri, "': parameter '", key, "' must be at most ", max,
               ", found '", value, "'");
  return v;
}

}  // namespace detail

/// Opens a packed table file (the file: scheme; `uri` is only used in messages).
ENGRAM_INLINE OpenedTable open_file_table(std::string_view uri, const TableOpenOptions& options) {
  std::string_view rest = uri;
  if (rest.starts_with("file:")) rest.remove_prefix(5);
  auto [path, params] = detail::parse_table_query(rest, uri);
  ENGRAM_CHECK(!path.empty(), "table URI '", uri, "': no file path");
  int64_t cache_bytes = options.cache_bytes;
  std::string io = "direct";
  for (const auto& [key, value] : params) {
    if (key == "cache_mb") {
      cache_bytes = detail::parse_table_integer(value, key, uri, kMaxCacheMb) << 20;
    } else if (key == "io") {
      ENGRAM_CHECK(value == "direct" || value == "buffered" || value == "mmap", "table URI '", uri,
                   "': parameter 'io' must be direct, buffered or mmap, found '", value, "'");
      io = value;
    } else {
      detail::fail("table URI '", uri, "': unknown parameter '", key,
                   "' (file: takes cache_mb and io)");
    }
  }
  PackedTableFile file(path);
  PackedTableInfo info = file.info();
  CacheOptions cache;
  cache.capacity_bytes = cache_bytes;
  if (io == "mmap") {
    InMemoryTier mapped = map_packed_table(file, /*verify=*/true);
    if (cache_bytes <= 0)
      return {std::string(uri), std::move(info), AnyTier::make<InMemoryTier>(std::move(mapped))};
    return {std::string(uri), std::move(info),
            AnyTier::make<CachedTier<InMemoryTier>>(cache, std::move(mapped))};
  }
  DirectIOOptions direct = options.direct_io;
  if (io == "buffered") direct.mode = DirectIOOptions::Mode::kBuffered;
  if (cache_bytes <= 0)
    return {std::string(uri), std::move(info),
            AnyTier::make<DirectIOTier>(std::move(file), direct)};
  return {std::string(uri), std::move(info),
          AnyTier::make<CachedTier<DirectIOTier>>(cache, std::move(file), direct)};
}

/// Opens a memcached pool in front of its durable packed file (the memcached:// scheme,
/// memcached_uri.hpp: memcached://H:P,H:P?fallback=TABLE.engram[&cache_mb=N]...).
ENGRAM_INLINE OpenedTable open_memcached_table(std::string_view uri,
                                               const TableOpenOptions& options) {
#if ENGRAM_HAVE_MEMCACHED
  MemcachedTable table = open_memcached_any_tier(uri, options.cache_bytes, options.direct_io);
  return {std::string(uri), std::move(table.info), std::move(table.tier)};
#else
  (void)options;
  detail::fail("table URI '", uri,
               "': this build has no memcached support (install libmemcached-dev and link "
               "engram::memcached)");
#endif
}

namespace detail {

/// Opens the rows at `source` for a safetensors: / hf: URI with the parameters io and cache_mb
/// (`used` lists the scheme's own parameters) and checks them against options.table_info.
inline OpenedTable open_safetensors_source(std::string_view uri, SafetensorsTableSource source,
                                           const std::map<std::string, std::string>& params,
                                           std::initializer_list<std::string_view> used,
                                           const TableOpenOptions& options) {
  int64_t cache_bytes = options.cache_bytes;
  SafetensorsTierOptions tier_options;
  tier_options.reader = options.direct_io.reader;
  if (options.direct_io.mode == DirectIOOptions::Mode::kDirect)
    tier_options.io = SafetensorsTierOptions::Io::kDirect;
  if (options.direct_io.mode == DirectIOOptions::Mode::kBuffered)
    tier_options.io = SafetensorsTierOptions::Io::kBuffered;
  for (const auto& [key, value] : params) {
    if (key == "cache_mb") {
      cache_bytes = parse_table_integer(value, key, uri, kMaxCacheMb) << 20;
    } else if (key == "io") {
      ENGRAM_CHECK(value == "direct" || value == "buffered" || value == "mmap", "table URI '", uri,
                   "': parameter 'io' must be direct, buffered or mmap, found '", value, "'");
      tier_options.io = value == "mmap"       ? SafetensorsTierOptions::Io::kMmap
                        : value == "buffered" ? SafetensorsTierOptions::Io::kBuffered
                                              : SafetensorsTierOptions::Io::kAuto;
    } else if (std::find(used.begin(), used.end(), key) == used.end()) {
      std::string known;
      for (std::string_view k : used) known += std::string(k) + ", ";
      fail("table URI '", uri, "': unknown parameter '", key, "' (this scheme takes ", known,
           "io and cache_mb)");
    }
  }
  ENGRAM_CHECK(options.table_info.has_value(), "table URI '", uri,
               "': safetensors shards carry no hashing metadata (primes, multipliers); pass "
               "TableOpenOptions::table_info (the CLI derives it from the config)");
  PackedTableInfo info = *options.table_info;
  tier_options.quant_block = info.config.quant_block;
  {
    // Validate and learn the shape (mmap: header only, no reader threads).
    SafetensorsTierOptions probe_options = tier_options;
    probe_options.io = SafetensorsTierOptions::Io::kMmap;
    const SafetensorsTier probe(source, probe_options);
    source = probe.source();
    ENGRAM_CHECK(probe.num_rows() == info.num_rows && probe.row_dim() == info.row_dim,
                 "table URI '", uri, "': ", probe.describe(), " holds ", probe.num_rows(),
                 " rows of ", probe.row_dim(), " values, the layer's config needs ", info.num_rows,
                 " rows of ", info.row_dim, " (sum of its primes; wrong layer or config?)");
    info.codec = probe.codec();
  }
  if (cache_bytes <= 0)
    return {std::string(uri), std::move(info),
            AnyTier::make<SafetensorsTier>(source, tier_options)};
  CacheOptions cache;
  cache.capacity_bytes = cache_bytes;
  return {std::string(uri), std::move(info),
          AnyTier::make<CachedTier<SafetensorsTier>>(cache, source, tier_options)};
}

/// The shard of a Hugging Face checkpoint directory holding `tensor`: the index's weight_map
/// entry, or model.safetensors without an index; empty when the index does not list it.
inline std::string checkpoint_shard_of(const std::string& dir, const std::string& tensor) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (!std::filesystem::exists(index_path)) {
    const std::string single = dir + "/model.safetensors";
    ENGRAM_CHECK(std::filesystem::exists(single), dir,
                 ": neither model.safetensors.index.json nor model.safetensors found");
    return single;
  }
  std::ifstream in(index_path);
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(index_path, ": not valid JSON: ", e.what());
  }
  ENGRAM_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
               index_path, ": field 'weight_map' missing or not an object");
  const auto& map = index["weight_map"];
  if (!map.contains(tensor)) return {};
  ENGRAM_CHECK(map[tensor].is_string(), index_path, ": weight_map['", tensor,
               "'] must be a file name, found ", map[tensor].dump());
  return dir + "/" + map[tensor].get<std::string>();
}

}  // namespace detail

/// Opens a table inside a safetensors shard (the safetensors: scheme; see the banner).
ENGRAM_INLINE OpenedTable open_safetensors_table(std::string_view uri,
                                                 const TableOpenOptions& options) {
  std::string_view rest = uri;
  ENGRAM_CHECK(rest.starts_with("safetensors:"), "table URI '", uri, "': expected safetensors:");
  rest.remove_prefix(12);
  auto [path, params] = detail::parse_table_query(rest, uri);
  ENGRAM_CHECK(!path.empty(), "table URI '", uri, "': no shard path");
  ENGRAM_CHECK(params.count("tensor") != 0, "table URI '", uri,
               "': parameter 'tensor' (the table's weight tensor or its prefix) is required");
  SafetensorsTableSource source{path, params["tensor"], {}, {}};
  if (params.count("scale_shard") != 0) source.scale_file = params["scale_shard"];
  if (params.count("scale") != 0) source.scale_tensor = params["scale"];
  if (!source.weight_tensor.ends_with(".weight")) {
    const SafetensorsFile shard(path);
    if (shard.find(source.weight_tensor) == nullptr) source.weight_tensor += ".weight";
  }
  return detail::open_safetensors_source(uri, std::move(source), params,
                                         {"tensor", "scale", "scale_shard"}, options);
}

/// Opens layer L's table of a Hugging Face checkpoint directory (the hf: scheme).
ENGRAM_INLINE OpenedTable open_hf_table(std::string_view uri, const TableOpenOptions& options) {
  std::string_view rest = uri;
  ENGRAM_CHECK(rest.starts_with("hf:"), "table URI '", uri, "': expected hf:");
  rest.remove_prefix(3);
  auto [dir, params] = detail::parse_table_query(rest, uri);
  ENGRAM_CHECK(!dir.empty(), "table URI '", uri, "': no checkpoint directory");
  ENGRAM_CHECK(params.count("layer") != 0, "table URI '", uri, "': parameter 'layer' is required");
  const int64_t layer =
      detail::parse_table_integer(params["layer"], "layer", uri, int64_t{1} << 20);
  const std::string prefix = "layers." + std::to_string(layer) + ".engram.embed.";
  SafetensorsTableSource source;
  source.weight_tensor = prefix + "weight";
  source.weight_file = detail::checkpoint_shard_of(dir, source.weight_tensor);
  ENGRAM_CHECK(!source.weight_file.empty(), "table URI '", uri, "': ", dir,
               "/model.safetensors.index.json lists no '", source.weight_tensor, "' (layer ", layer,
               " holds no Engram table?)");
  for (const std::string& name : {prefix + "scale", prefix + "weight_scale_inv"}) {
    const std::string file = detail::checkpoint_shard_of(dir, name);
    if (!file.empty() && SafetensorsFile(file).find(name) != nullptr) {
      source.scale_file = file;
      source.scale_tensor = name;
      break;
    }
  }
  return detail::open_safetensors_source(uri, std::move(source), params, {"layer"}, options);
}

/// Opens the table at `uri` (see the banner for the schemes).
ENGRAM_INLINE OpenedTable open_table(std::string_view uri, const TableOpenOptions& options) {
  ENGRAM_CHECK(!uri.empty(), "open_table: empty table URI");
  // One line per scheme (see the banner).
  if (uri.starts_with("file:")) return open_file_table(uri, options);
  if (is_memcached_uri(uri)) return open_memcached_table(uri, options);
  if (uri.starts_with("safetensors:")) return open_safetensors_table(uri, options);
  if (uri.starts_with("hf:")) return open_hf_table(uri, options);
  const size_t scheme_end = uri.find("://");
  ENGRAM_CHECK(scheme_end == std::string_view::npos, "table URI '", uri, "': unknown scheme '",
               uri.substr(0, scheme_end), "' (known: file:, memcached://, safetensors:, hf:)");
  return open_file_table(uri, options);  // a plain path
}

}  // namespace engram
