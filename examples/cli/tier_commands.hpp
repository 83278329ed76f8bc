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
#include "engram/memory/codec.hpp"
#include "engram/memory/packed_table.hpp"
#include "engram/memory/tiered_memory.hpp"
#include "engram/memory/tiers/open_table.hpp"

namespace engram::cli {

/// A row codec chosen at run time. codec_tag is the one place the CLI maps codec names to codec
/// types (memory/codec.hpp's registry takes its place once it has one); call it through
/// std::visit.
using CodecTag = std::variant<codec::F32, codec::BF16, codec::F16, codec::Fp8E4M3T<16>,
                              codec::Fp8E4M3T<32>, codec::Fp8E4M3T<64>, codec::Fp8E4M3T<128>>;

inline CodecTag codec_tag(const std::string& name, int64_t quant_block) {
  if (name == "f32") return codec::F32{};
  if (name == "bf16") return codec::BF16{};
  if (name == "f16") return codec::F16{};
  ENGRAM_CHECK(name == "fp8_e4m3", "unknown codec '", name, "'");
  switch (quant_block) {
    case 16:
      return codec::Fp8E4M3T<16>{};
    case 32:
      return codec::Fp8E4M3T<32>{};
    case 64:
      return codec::Fp8E4M3T<64>{};
    case 128:
      return codec::Fp8E4M3T<128>{};
    default:
      detail::fail("quant_block ", quant_block, " is not supported (16, 32, 64 or 128)");
  }
}

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
/// The next chunk's rows are prefetched while the current chunk runs.
/// `live` (empty, or [B, T] with 0 at dead tokens) is for the fused layer, whose gate it shuts.
template <class Layer>
std::vector<float> run_layer_from_table(const Layer& layer, OpenedTable& table, int64_t batch,
                                        int64_t seqlen, std::span<const int64_t> ids,
                                        std::span<const float> hidden, int64_t chunk,
                                        std::span<const uint8_t> live = {}) {
  const int64_t width = layer.hc_mult() * layer.hidden_size(), cols = layer.num_columns();
  if (chunk <= 0 || chunk >= seqlen) chunk = seqlen;
  TieredMemoryT<AnyTier> memory(table.tier, table.info, {.max_tokens = batch * chunk});
  std::vector<float> out(hidden.size());
  std::vector<typename Layer::State> states;
  for (int64_t b = 0; b < batch; ++b) states.push_back(layer.make_state());
  std::vector<typename Layer::State*> state_ptrs;
  for (auto& s : states) state_ptrs.push_back(&s);
  typename Layer::Workspace ws;
  std::vector<int64_t> ids_chunk, hash_ids;
  std::vector<uint8_t> live_chunk, live_next;
  std::vector<float> hidden_chunk, out_chunk, e;
  auto chunk_len = [&](int64_t t0) { return std::min(chunk, seqlen - t0); };
  // Hash chunk t0 (advancing the states' hash history) and queue its fetch.
  auto submit = [&](int64_t t0) {
    const int64_t k = chunk_len(t0);
    copy_to_chunk(ids, batch, seqlen, 1, t0, k, ids_chunk);
    live_next.clear();
    if (!live.empty()) copy_to_chunk(live, batch, seqlen, 1, t0, k, live_next);
    hash_ids.resize(static_cast<size_t>(batch * k * cols));
    layer.hash_tokens(ids_chunk, batch, k, hash_ids, state_ptrs, live_next);
    return memory.submit(hash_ids);
  };
  if (seqlen == 0 || batch == 0) return out;
  auto ticket = submit(0);
  for (int64_t t0 = 0; t0 < seqlen; t0 += chunk) {
    const int64_t k = chunk_len(t0);
    e.resize(static_cast<size_t>(batch * k * memory.memory_dim()));
    memory.wait(ticket, e);
    live_chunk = live_next;
    if (t0 + chunk < seqlen) ticket = submit(t0 + chunk);  // overlaps this chunk's layer
    copy_to_chunk(hidden, batch, seqlen, width, t0, k, hidden_chunk);
    out_chunk.resize(hidden_chunk.size());
    if constexpr (requires {
                    layer.forward_memory(e, hidden_chunk, batch, k, out_chunk, state_ptrs, ws,
                                         live_chunk);
                  }) {
      layer.forward_memory(e, hidden_chunk, batch, k, out_chunk, state_ptrs, ws, live_chunk);
    } else {
      ENGRAM_CHECK(live.empty(), "run_layer_from_table: this layer takes no live mask");
      layer.forward_memory(e, hidden_chunk, batch, k, out_chunk, state_ptrs, ws);
    }
    copy_from_chunk<float>(out_chunk, batch, seqlen, width, t0, k, out);
  }
  return out;
}

}  // namespace engram::cli
