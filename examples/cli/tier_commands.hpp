// cli/tier_commands.hpp: what the memory-tier commands share (pack and bench-offload write
// tables, forward --table reads them): the codec of a name, the pack progress line, opening a
// layer's table from --table URI and checking it against the layer's hasher, and running a layer
// with its rows fetched from a table (hash -> submit -> wait -> forward_memory, the next chunk's
// fetch overlapping the current chunk). `engram pack` itself is in tier_commands.cpp.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "cli/args.hpp"
#include "cli/layer_io.hpp"
#include "cli/progress.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/hashing/primes.hpp"
#include "engram/io/config.hpp"
#include "engram/io/hf_config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/layer/tiered_layer.hpp"
#include "engram/memory/codec_registry.hpp"
#include "engram/memory/packed_writer.hpp"
#include "engram/memory/tiers/open_table.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/tiered_memory.hpp"

namespace engram::cli {

/// A row codec chosen at run time: memory/codec_registry.hpp's tags (engram::codec_tag maps a
/// codec name and quant block to one); call it through std::visit.
using CodecTag = Codecs::tags;

/// A pack progress printer: "\r" lines on a terminal (stderr), nothing otherwise.
inline PackProgressFn pack_progress_printer() {
  if (!stderr_is_terminal()) return {};
  return [](const PackProgress& p) {
    print_progress(p.rows_done, p.rows_total, "rows", p.megabytes_per_second, p.seconds_left);
  };
}

/// Checks that a packed table is the one `hasher` hashes into (layer, primes, multipliers, shape).
inline void check_table_matches(const PackedTableInfo& info, const std::string& uri,
                                const EngramConfig& config, const NgramHasher& hasher) {
  const auto primes = hasher.primes();
  const auto multipliers = hasher.multipliers();
  ENGRAM_CHECK(info.layer_id == hasher.layer_id(), "table '", uri, "' holds layer ", info.layer_id,
               ", expected layer ", hasher.layer_id());
  ENGRAM_CHECK(std::equal(primes.begin(), primes.end(), info.primes.begin(), info.primes.end()),
               "table '", uri, "' has other column sizes (primes) than the config's hasher ",
               "(packed with another config or lookup table?)");
  ENGRAM_CHECK(std::equal(multipliers.begin(), multipliers.end(), info.multipliers.begin(),
                          info.multipliers.end()),
               "table '", uri, "' has other hash multipliers than the config's hasher (seed?)");
  ENGRAM_CHECK(info.row_dim == config.row_dim(), "table '", uri, "' has rows of ", info.row_dim,
               " values, the config implies ", config.row_dim());
}

/// --table URI [--cache-mb M]: the table holding `hasher`'s layer, checked against it. Tables
/// inside safetensors shards (safetensors:, hf:) take their metadata from the config and `codec`
/// (the checkpoint's).
inline OpenedTable open_layer_table(const Args& args, const EngramConfig& config,
                                    const NgramHasher& hasher, const std::string& codec) {
  TableOpenOptions options{.cache_bytes = args.integer("cache-mb", 0, 0, int64_t{1} << 30) << 20};
  options.table_info = PackedTableInfo::make(
      config, hasher.layer_id(), codec, {hasher.primes().begin(), hasher.primes().end()},
      {hasher.multipliers().begin(), hasher.multipliers().end()});
  OpenedTable table = open_table(args.str("table"), options);
  check_table_matches(table.info, args.str("table"), config, hasher);
  return table;
}

/// Runs `layer` (loaded with table_in_tier) over [B, T] tokens with its rows fetched from `table`,
/// whole (chunk <= 0) or `chunk` tokens at a time with decode states; returns out [B, T, hc, d].
/// The next chunk's rows are prefetched while the current chunk runs (TieredLayerT, look-ahead 2).
/// `live` (empty, or [B, T] with 0 at dead tokens) is for the fused layer, whose gate it shuts.
template <class Layer>
std::vector<float> run_layer_from_table(const Layer& layer, OpenedTable& table, int64_t batch,
                                        int64_t seqlen, std::span<const int64_t> ids,
                                        std::span<const float> hidden, int64_t chunk,
                                        std::span<const uint8_t> live = {}) {
  const int64_t width = layer.hc_mult() * layer.hidden_size();
  if (chunk <= 0 || chunk >= seqlen) chunk = seqlen;
  std::vector<float> out(hidden.size());
  if (seqlen == 0 || batch == 0) return out;
  if constexpr (!requires(std::vector<typename Layer::State*> s, typename Layer::Workspace ws) {
                  layer.forward_memory(hidden, hidden, batch, seqlen, std::span<float>(out), s, ws,
                                       live);
                })
    ENGRAM_CHECK(live.empty(), "run_layer_from_table: this layer takes no live mask");
  // Two chunks in flight: chunk i + 1's rows are fetched while chunk i runs.
  TieredLayerT<Layer, AnyTier, LookAheadPrefetch> tiered(layer, table.tier, table.info,
                                                         {.batches = 2}, batch * chunk);
  std::vector<typename Layer::State> states;
  for (int64_t b = 0; b < batch; ++b) states.push_back(layer.make_state());
  std::vector<typename Layer::State*> state_ptrs;
  for (auto& s : states) state_ptrs.push_back(&s);
  typename Layer::Workspace ws;
  std::vector<int64_t> ids_chunk;
  std::vector<uint8_t> live_chunk;
  std::vector<float> hidden_chunk, out_chunk;
  auto chunk_len = [&](int64_t t0) { return std::min(chunk, seqlen - t0); };
  // Hash chunk t0 (advancing the states' hash history) and queue its fetch.
  auto prefetch = [&](int64_t t0) {
    const int64_t k = chunk_len(t0);
    ids_chunk.resize(static_cast<size_t>(batch * k));
    live_chunk.resize(live.empty() ? 0 : static_cast<size_t>(batch * k));
    for (int64_t b = 0; b < batch; ++b) {
      std::copy_n(ids.begin() + b * seqlen + t0, k, ids_chunk.begin() + b * k);
      if (!live.empty()) std::copy_n(live.begin() + b * seqlen + t0, k, live_chunk.begin() + b * k);
    }
    return tiered.prefetch(ids_chunk, batch, k, state_ptrs, live_chunk);
  };
  auto ticket = prefetch(0);
  for (int64_t t0 = 0; t0 < seqlen; t0 += chunk) {
    const int64_t k = chunk_len(t0);
    auto next = t0 + chunk < seqlen ? prefetch(t0 + chunk) : decltype(ticket){};
    hidden_chunk.resize(static_cast<size_t>(batch * k * width));
    out_chunk.resize(hidden_chunk.size());
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(hidden.begin() + (b * seqlen + t0) * width, k * width,
                  hidden_chunk.begin() + b * k * width);
    tiered.forward(ticket, hidden_chunk, out_chunk, state_ptrs, ws);
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(out_chunk.begin() + b * k * width, k * width,
                  out.begin() + (b * seqlen + t0) * width);
    ticket = next;
  }
  return out;
}

}  // namespace engram::cli
