// cli/tier_commands.cpp: `engram pack`, one layer's table as a packed `.engram` file
// (memory/packed_format.hpp), from a checkpoint (any codec to any codec; same codec: bytes copied)
// or from a V4.1 directory as released (FP8 rows and scales read in place and written as they
// are). Progress on stderr when it is a terminal; one summary line on stdout. The file appears only
// when complete (tmp + rename): an interrupted pack leaves nothing that loads.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "cli/layer_io.hpp"
#include "cli/tier_commands.hpp"
#include "engram/hashing/primes.hpp"
#include "engram/io/hf_config.hpp"

namespace engram::cli {
namespace {

/// engram pack --model DIR --layer L -o TABLE.engram: layer L's table of a Hugging Face
/// checkpoint directory (read in place from its shards, hf: URI) into the packed format.
int pack_model(const Args& args) {
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

int pack(int argc, char** argv) {
  const Args args(argc, argv, 2,
                  {"config", "lookup", "weights", "prefix", "layer", "codec", "output",
                   "max-mb-per-s", "model"},
                  {});
  args.expect_no_positional();
  if (args.has("model")) {
    for (const char* other : {"config", "lookup", "weights", "prefix", "codec", "max-mb-per-s"})
      if (args.has(other))
        throw UsageError(std::string("--model takes no --") + other +
                         " (the directory's config.json and shards say it all)");
    return pack_model(args);
  }
  std::string codec_name = args.str("codec");
  if (codec_name == "fp8") codec_name = "fp8_e4m3";
  if (!is_codec_name(codec_name))
    throw UsageError("--codec must be f32, bf16, f16 or fp8, got '" + codec_name + "'");
  double max_mb_per_s = 0;
  if (args.has("max-mb-per-s")) {
    max_mb_per_s = std::atof(args.str("max-mb-per-s").c_str());
    if (!(max_mb_per_s > 0)) throw UsageError("--max-mb-per-s must be a positive number");
  }
  const ConfigLayer c = ConfigLayer::open(args);
  const EngramConfig& config = c.config;
  const int64_t layer_id = c.layer_id;
  const NgramHasher& hasher = *c.hasher;
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

}  // namespace

Command pack_command() {
  return {
      "pack",
      "write one layer's table as a checksummed packed .engram file",
      "pack --config CFG.json --lookup LOOKUP.safetensors --weights W.safetensors [--prefix P] "
      "[--layer L] --codec f32|bf16|f16|fp8 -o TABLE.engram [--max-mb-per-s R]\n"
      "pack --model DIR [--layer L] -o TABLE.engram",
      "  --config, --lookup, --weights, --prefix, --layer   the layer, as for forward\n"
      "  --codec f32|bf16|f16|fp8   the rows' codec in the file (converted from the checkpoint's)\n"
      "  -o, --output TABLE.engram  written to a temporary and renamed when complete\n"
      "  --max-mb-per-s R           write at most R MB/s (page by page)\n"
      "  --model DIR                a V4.1 directory as released (FP8 rows as they are)\n",
      "pack --config cfg.json --lookup lookup.safetensors --weights w.safetensors --codec bf16 "
      "-o layer15.engram",
      pack};
}

}  // namespace engram::cli
