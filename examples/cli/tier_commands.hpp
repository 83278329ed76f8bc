// tier_commands.hpp: the engram CLI's memory-tier commands (included by engram_cli.cpp):
//
//   engram pack --config CFG.json --lookup LOOKUP.safetensors --weights W.safetensors [--prefix P]
//               [--layer L] --codec f32|bf16|f16|fp8 -o TABLE.engram [--max-mb-per-s R]
//     writes one layer's table as a packed `.engram` file (packed_table.hpp), converting the
//     checkpoint's rows to the codec (same codec: bytes copied). Progress (rows, MB/s, time left)
//     on stderr when it is a terminal; one summary line on stdout in any case. The file appears
//     only when complete (tmp + rename): an interrupted pack leaves nothing that loads.
//   engram pack --model DIR [--layer L] -o TABLE.engram
//     the same from a Hugging Face checkpoint directory (DeepSeek-V4.1 layout: config.json's
//     text_config, model.safetensors.index.json, shards): the FP8 rows and scales are read in
//     place (hf: URI, SafetensorsTier) and written as they are; NaN scale codes are refused.
//   forward ... --table URI [--cache-mb M]   (engram_cli.cpp's forward; URI: tiers/open_table.hpp)
//     the layer's rows come from the table at URI instead of the checkpoint.
//   engram bench-offload ...                  (offload_bench.hpp)
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

/// A row codec chosen at run time.
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
  if (::isatty(STDERR_FILENO) == 0) return {};
  return [](const PackProgress& p) {
    std::fprintf(stderr, "\r  %lld / %lld rows (%.1f%%), %.0f MB/s, %.0f s left   ",
                 static_cast<long long>(p.rows_done), static_cast<long long>(p.rows_total),
                 100.0 * static_cast<double>(p.rows_done) /
                     static_cast<double>(std::max<int64_t>(1, p.rows_total)),
                 p.megabytes_per_second, p.seconds_left);
    if (p.rows_done == p.rows_total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
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

/// engram pack --model DIR --layer L -o TABLE.engram: layer L's table of a Hugging Face
/// checkpoint directory (read in place from its shards, hf: URI) into the packed format.
inline int pack_model(const Args& args) {
  const std::string dir = args.str("model");
  const std::string config_path = dir + "/config.json";
  const HfEngramConfig hf = HfEngramConfig::load(config_path);
  const EngramConfig& config = hf.engram;
  const int64_t layer = args.integer("layer", config.layer_ids.front());
  config.require_layer(layer, config_path);
  const std::vector<int64_t> primes = engram_layer_primes(config, layer);
  const int64_t rows = std::accumulate(primes.begin(), primes.end(), int64_t{0});
  hf.check_table_rows(layer, rows, config_path);
  TableOpenOptions options;
  options.table_info =
      PackedTableInfo::make(config, layer, "fp8_e4m3", primes,
                            engram_multipliers(config, layer, hf.compressed_vocab_size));
  const std::string uri = "hf:" + dir + "?layer=" + std::to_string(layer) + "&io=mmap";
  OpenedTable source = open_table(uri, options);
  const auto start = std::chrono::steady_clock::now();
  pack_table(args.str("output"), source.info, source.tier, pack_progress_printer());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double bytes = static_cast<double>(std::filesystem::file_size(args.str("output")));
  std::printf(
      "packed %lld rows of layer %lld (%s, %lld bytes per row, from %s) into %s: %.1f MB "
      "in %.2f s (%.0f MB/s)\n",
      static_cast<long long>(rows), static_cast<long long>(layer), source.info.codec.c_str(),
      static_cast<long long>(source.info.row_bytes()), source.tier.describe().c_str(),
      args.str("output").c_str(), bytes / 1e6, seconds, bytes / 1e6 / std::max(seconds, 1e-9));
  return 0;
}

inline int pack(int argc, char** argv) {
  const Args args(argc, argv, 2,
                  {"config", "lookup", "weights", "prefix", "layer", "codec", "output",
                   "max-mb-per-s", "model"},
                  {});
  if (!args.positional().empty()) throw UsageError("unexpected argument " + args.positional()[0]);
  if (args.has("model")) {
    for (const char* other : {"config", "lookup", "weights", "prefix", "codec", "max-mb-per-s"})
      if (args.has(other))
        throw UsageError(std::string("--model takes no --") + other +
                         " (the directory's config.json and shards say it all)");
    return pack_model(args);
  }
  std::string codec_name = args.str("codec");
  if (codec_name == "fp8") codec_name = "fp8_e4m3";
  if (codec_name != "f32" && codec_name != "bf16" && codec_name != "f16" &&
      codec_name != "fp8_e4m3")
    throw UsageError("--codec must be f32, bf16, f16 or fp8, got '" + codec_name + "'");
  double max_mb_per_s = 0;
  if (args.has("max-mb-per-s")) {
    max_mb_per_s = std::atof(args.str("max-mb-per-s").c_str());
    if (!(max_mb_per_s > 0)) throw UsageError("--max-mb-per-s must be a positive number");
  }
  const auto config = EngramConfig::load(args.str("config"));
  const auto table = CompressionTable::load(args.str("lookup"));
  const int64_t layer_id = args.integer("layer", config.layer_ids.front());
  config.require_layer(layer_id, args.str("config"));
  const NgramHasher hasher(config, table.lookup(), layer_id);
  const std::vector<int64_t> primes(hasher.primes().begin(), hasher.primes().end());
  const std::vector<int64_t> multipliers(hasher.multipliers().begin(), hasher.multipliers().end());
  const PackedTableInfo info =
      PackedTableInfo::make(config, layer_id, codec_name, primes, multipliers);

  // The checkpoint's rows: demo F32/BF16/F16 [rows, r]; fused F8_E4M3 [rows, r] + E8M0 scales.
  const SafetensorsFile weights(args.str("weights"));
  const std::string& p = args.str("prefix", "");
  const bool fused = config.variant == Variant::kFused;
  const TensorView& rows =
      weights.at(p + (fused ? "embed.weight" : "multi_head_embedding.embedding.weight"));
  const TensorView* scales = fused ? &weights.at(p + "embed.weight_scale_inv") : nullptr;
  ENGRAM_CHECK(rows.shape.size() == 2 && rows.shape[1] == info.row_dim, weights.path(),
               ": tensor '", rows.name, "' has shape ", shape_string(rows.shape),
               ", expected [rows, ", info.row_dim, "]");
  ENGRAM_CHECK(rows.shape[0] >= info.num_rows, weights.path(), ": tensor '", rows.name, "' has ",
               rows.shape[0], " rows, the layer's hash columns need ", info.num_rows);
  const std::string source_codec(row_codec_of(rows.dtype));
  ENGRAM_CHECK(!source_codec.empty(), weights.path(), ": tensor '", rows.name, "' has dtype ",
               dtype_name(rows.dtype), ", expected F32, BF16, F16 or F8_E4M3");
  ENGRAM_CHECK(source_codec != "fp8_e4m3" || scales != nullptr, weights.path(), ": tensor '",
               rows.name, "' is FP8 but the config is not the fused variant (no scales)");
  const CodecTag source = codec_tag(source_codec, config.quant_block);
  const CodecTag target = codec_tag(codec_name, config.quant_block);

  const auto start = std::chrono::steady_clock::now();
  // Rate-limited packs write page by page, so that the file grows at the rate too (the 8 MiB
  // chunks of a full-speed pack would hold a small table back until finish()).
  PackedTableWriter writer(args.str("output"), info, pack_progress_printer(), 0.5,
                           max_mb_per_s > 0 ? int64_t{1} : int64_t{8} << 20);
  const int64_t batch = max_mb_per_s > 0 ? 64 : 4096, rb = info.row_bytes();
  std::vector<std::byte> records(static_cast<size_t>(batch * rb));
  std::vector<float> values(static_cast<size_t>(info.row_dim));
  std::visit(
      [&](auto source_codec_tag, auto target_codec_tag) {
        using Src = decltype(source_codec_tag);
        using Dst = decltype(target_codec_tag);
        const int64_t r = info.row_dim, src_bytes = Src::row_bytes(r),
                      src_scale_bytes = Src::scale_bytes(r), dst_bytes = Dst::row_bytes(r);
        for (int64_t first = 0; first < info.num_rows; first += batch) {
          const int64_t n = std::min(batch, info.num_rows - first);
          for (int64_t i = 0; i < n; ++i) {
            const std::byte* src = rows.bytes.data() + (first + i) * src_bytes;
            const std::byte* src_scales = src_scale_bytes > 0
                                              ? scales->bytes.data() + (first + i) * src_scale_bytes
                                              : nullptr;
            std::byte* dst = records.data() + i * rb;
            if constexpr (std::is_same_v<Src, Dst>) {
              std::memcpy(dst, src, static_cast<size_t>(src_bytes));
              if (src_scale_bytes > 0)
                std::memcpy(dst + src_bytes, src_scales, static_cast<size_t>(src_scale_bytes));
            } else {
              Src::decode_row_reference(src, src_scales, r, values.data());
              Dst::encode_row(values.data(), r, dst, dst + dst_bytes);
            }
          }
          writer.append(std::span<const std::byte>(records.data(), static_cast<size_t>(n * rb)));
          if (max_mb_per_s > 0) {  // keep to the rate: sleep until (bytes so far) / rate
            const double due = static_cast<double>((first + n) * rb) / (max_mb_per_s * 1e6);
            std::this_thread::sleep_until(start + std::chrono::duration<double>(due));
          }
        }
      },
      source, target);
  writer.finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double bytes = static_cast<double>(writer.layout().file_bytes);
  std::printf(
      "packed %lld rows of layer %lld (%s -> %s, %lld bytes per row) into %s: %.1f MB in "
      "%.2f s (%.0f MB/s)\n",
      static_cast<long long>(info.num_rows), static_cast<long long>(layer_id), source_codec.c_str(),
      codec_name.c_str(), static_cast<long long>(rb), args.str("output").c_str(), bytes / 1e6,
      seconds, bytes / 1e6 / std::max(seconds, 1e-9));
  return 0;
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
    ids_chunk.resize(static_cast<size_t>(batch * k));
    live_next.resize(live.empty() ? 0 : static_cast<size_t>(batch * k));
    for (int64_t b = 0; b < batch; ++b) {
      std::copy_n(ids.begin() + b * seqlen + t0, k, ids_chunk.begin() + b * k);
      if (!live.empty()) std::copy_n(live.begin() + b * seqlen + t0, k, live_next.begin() + b * k);
    }
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
    hidden_chunk.resize(static_cast<size_t>(batch * k * width));
    out_chunk.resize(hidden_chunk.size());
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(hidden.begin() + (b * seqlen + t0) * width, k * width,
                  hidden_chunk.begin() + b * k * width);
    if constexpr (requires {
                    layer.forward_memory(e, hidden_chunk, batch, k, out_chunk, state_ptrs, ws,
                                         live_chunk);
                  }) {
      layer.forward_memory(e, hidden_chunk, batch, k, out_chunk, state_ptrs, ws, live_chunk);
    } else {
      ENGRAM_CHECK(live.empty(), "run_layer_from_table: this layer takes no live mask");
      layer.forward_memory(e, hidden_chunk, batch, k, out_chunk, state_ptrs, ws);
    }
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(out_chunk.begin() + b * k * width, k * width,
                  out.begin() + (b * seqlen + t0) * width);
  }
  return out;
}

}  // namespace engram::cli
