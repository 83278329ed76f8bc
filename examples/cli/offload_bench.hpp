// offload_bench.hpp: `engram bench-offload` (included by engram_cli.cpp): what it costs to keep an
// Engram table on SSD instead of in RAM, with and without asynchronous prefetch.
//
//   engram bench-offload --corpus TOKENS.safetensors --lookup LOOKUP.safetensors --table-rows R
//                        --cache-mb M --table-dir DIR [--codec bf16|f32] [--no-prefetch]
//                        [--tokens N] [--threads T]
//                        [--backbone-tokens-per-s R] [--find-sustained [--max-steps S]]
//                        [--repeats K] [--probe PROBE.json]
//
// Model: a backbone of 4 blocks (hidden 1024, hc_mult 4 branches; causal attention, 8 heads; MoE
// FFN of 8 SwiGLU experts 1024 -> 2048 -> 1024, top-2; examples/model/backbone.hpp) with one demo
// Engram layer after block 1 (N = 3, 8 heads, 512 per order: 16 columns of 64 values, R rows per
// head table), random weights, over the corpus in sequences of 512 tokens.
// Table: sum of the 16 primes (about 16 R) rows, written once as DIR/bench-offload-*.engram
// (seeded random rows streamed through PackedTableWriter) and reused when its metadata matches.
// Runs: resident (the table memory-mapped and faulted into RAM, gathered by the layer itself) and
// offloaded (the same file read by a DirectIOTier, O_DIRECT + io_uring, behind a CachedTier of M
// MiB). With prefetch, batch i + 1's rows are hashed and their fetch queued on the prefetch worker
// when batch i starts, so the SSD works while batch i's blocks compute (the first batch's own rows
// are queued at its start and awaited after blocks 0 and 1); --no-prefetch fetches them
// on the caller's thread when the layer needs them. The two runs alternate batch by batch (each
// with its own hidden state), so both see the same load from other processes; an offloaded batch
// is charged until the next batch's rows are staged. Both must give bitwise the same hidden
// states (checked). Last line:
//   offload penalty P% (resident X tok/s, offloaded Y tok/s, cache hit H%)
// with P = 100 (X - Y) / X.
// A backbone of a set speed (--backbone-tokens-per-s R): each block is a busy wait of
// 512 / R / 4 seconds instead of the real blocks, so the SSD's slack is known. Printed for a cold
// start (batches [0, n): an empty cache and an empty pipeline, whose first batch waits for its own
// rows behind blocks 0 and 1) and the steady state (a fresh cache warmed on [n, 2n), measured on
// [2n, 3n) with the pipeline running: batch 2n's rows staged before the timer, as batch 2n - 1
// would have); each rate is measured K times (--repeats, default 3; a fresh cache each time) and
// its penalty is the median (of an even K the higher middle one), so one run hit by other load on
// the machine decides nothing.
// --find-sustained searches (at most S rates, default 12, starting from R or 1000) the highest R
// with a penalty of at most 1% for each, with prefetch or (--no-prefetch) without (X: the model's
// rate, blocks and Engram layer, in the resident run of the median measurement):
//   cold start:   sustains X tok/s (penalty P%, cache hit H%, SSD Y IOPS = Z% of probe); the
//                 probed IOPS allow A tok/s at K reads a token: X/A %
// (the IOPS figures need --probe, a file from `engram probe --dir` on the table's filesystem).
#pragma once

#include <sys/mman.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/probe.hpp"
#include "cli/tier_commands.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/tiered_layer.hpp"
#include "engram/memory/packed_writer.hpp"
#include "engram/memory/tiers/open_table.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/tiered_memory.hpp"
#include "model/backbone.hpp"

namespace engram::cli {
namespace offload {

using example::Matrix;
using Clock = std::chrono::steady_clock;

inline double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// The Engram config: N = 3, 8 heads, 512 per order, hidden 1024 x 4 branches.
inline EngramConfig bench_config(int64_t rows_per_head) {
  EngramConfig c;
  c.variant = Variant::kDemo;
  c.engram_vocab_size = {rows_per_head, rows_per_head};
  c.max_ngram_size = 3;
  c.n_embed_per_ngram = 512;
  c.n_head_per_ngram = 8;
  c.layer_ids = {1};
  c.hidden_size = 1024;
  c.hc_mult = 4;
  c.kernel_size = 4;
  c.validate("bench-offload config");
  return c;
}

/// DIR/bench-offload-<key>.engram holding seeded random rows for `info`; written once (with
/// progress), reused when a file there has the same metadata.
inline std::string ensure_table(const std::string& dir, const PackedTableInfo& info) {
  std::filesystem::create_directories(dir);
  const std::string json = info.to_json().dump();
  const std::string path = dir + "/bench-offload-" +
                           std::to_string(std::hash<std::string>{}(json) % 1000000007) + ".engram";
  if (std::filesystem::exists(path)) {
    try {
      if (PackedTableFile(path).info().to_json().dump() == json) {
        std::printf("reusing table %s\n", path.c_str());
        return path;
      }
    } catch (const Error& e) {
      std::fprintf(stderr, "rewriting %s: %s\n", path.c_str(), e.what());
    }
  }
  const auto t0 = Clock::now();
  const int64_t rb = info.row_bytes(), r = info.row_dim;
  std::printf("writing table %s: %lld rows x %lld bytes (%.2f GB)\n", path.c_str(),
              static_cast<long long>(info.num_rows), static_cast<long long>(rb),
              static_cast<double>(info.num_rows * rb) / 1e9);
  std::fflush(stdout);
  PackedTableWriter writer(path, info, pack_progress_printer(), 1.0);
  const CodecTag codec = codec_tag(info.codec, info.config.quant_block);
  const int64_t batch = 8192;
  std::vector<std::byte> records(static_cast<size_t>(batch * rb));
  std::vector<float> values(static_cast<size_t>(r));
  uint64_t x = 0x9E3779B97F4A7C15ull;  // xorshift64: cheap enough for tens of GB
  std::visit(
      [&](auto tag) {
        using Codec = decltype(tag);
        for (int64_t first = 0; first < info.num_rows; first += batch) {
          const int64_t n = std::min(batch, info.num_rows - first);
          for (int64_t i = 0; i < n; ++i) {
            for (int64_t j = 0; j < r; j += 2) {
              x ^= x << 13;
              x ^= x >> 7;
              x ^= x << 17;
              // two uniform values in [-1.73, 1.73) (unit variance) per 64 random bits
              values[static_cast<size_t>(j)] =
                  (static_cast<float>(x >> 40) * (1.0f / 16777216.0f) - 0.5f) * 3.4641f;
              if (j + 1 < r)
                values[static_cast<size_t>(j + 1)] =
                    (static_cast<float>((x >> 8) & 0xFFFFFF) * (1.0f / 16777216.0f) - 0.5f) *
                    3.4641f;
            }
            std::byte* record = records.data() + i * rb;
            Codec::encode_row(values.data(), r, record, record + Codec::row_bytes(r));
          }
          writer.append(std::span<const std::byte>(records.data(), static_cast<size_t>(n * rb)));
        }
      },
      codec);
  writer.finish();
  std::printf("wrote %.2f GB in %.1f s\n", static_cast<double>(writer.layout().file_bytes) / 1e9,
              since(t0));
  return path;
}

/// Random Engram weights for `config` over a shape-only table (the caller sets the table).
inline EngramWeightsT<float> random_engram_weights(const EngramConfig& config,
                                                   const std::vector<int64_t>& column_rows,
                                                   std::mt19937_64& rng) {
  const int64_t d = config.hidden_size, hc = config.hc_mult, m = config.memory_dim();
  EngramWeightsT<float> w{
      config, nullptr, EmbeddingTableT<codec::F32>::shape_only(config.row_dim(), column_rows),
      {},     {},      {},
      {},     {},      {},
      {}};
  auto fill = [&](std::vector<float>& v, int64_t n, float mean, float stddev) {
    std::normal_distribution<float> normal(mean, stddev);
    v.resize(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng);
  };
  fill(w.kv_weight, (hc + 1) * d * m, 0.0f, 1.0f / std::sqrt(static_cast<float>(m)));
  fill(w.kv_bias, (hc + 1) * d, 0.0f, 0.01f);
  fill(w.key_norm, hc * d, 1.0f, 0.1f);
  fill(w.query_norm, hc * d, 1.0f, 0.1f);
  fill(w.conv_weight, hc * d * config.kernel_size, 0.0f,
       1.0f / std::sqrt(static_cast<float>(config.kernel_size)));
  fill(w.conv_norm, hc * d, 1.0f, 0.1f);
  return w;
}

/// The 4-block backbone with the Engram layer after block 1 (hyper-connection branches as in
/// examples/mini_model.cpp: attention and MoE read the branch mean and add to every branch).
class Backbone {
 public:
  Backbone(int64_t d, int64_t hc, std::mt19937_64& rng) : d_(d), hc_(hc) {
    for (int b = 0; b < 4; ++b) {
      attention_.emplace_back(d, 8, rng);
      moe_.emplace_back(d, 2 * d, 8, 2, rng);
    }
  }

  /// hidden [T, hc, d] = every branch the token's embedding (a seeded random vector per token id).
  void embed(std::span<const int64_t> ids, std::vector<float>& hidden) const {
    const auto T = static_cast<int64_t>(ids.size());
    hidden.resize(static_cast<size_t>(T * hc_ * d_));
    std::vector<float> row(static_cast<size_t>(d_));
    for (int64_t t = 0; t < T; ++t) {
      std::mt19937_64 token_rng(static_cast<uint64_t>(ids[static_cast<size_t>(t)]) * 7919 + 1);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      for (float& v : row) v = normal(token_rng);
      for (int64_t i = 0; i < hc_; ++i)
        std::copy(row.begin(), row.end(), hidden.begin() + (t * hc_ + i) * d_);
    }
  }

  /// Replaces the blocks' compute by a calibrated load: each block keeps the calling thread busy
  /// for `seconds` and leaves hidden as it is (a backbone of a set speed); 0 = the real blocks.
  void set_spin_per_block(double seconds) { spin_per_block_ = seconds; }

  /// Blocks [first, last) on hidden [T, hc, d].
  void blocks(std::vector<float>& hidden, int64_t T, int first, int last) {
    if (spin_per_block_ > 0) {
      const auto t0 = Clock::now();
      while (since(t0) < spin_per_block_ * (last - first)) {
      }
      return;
    }
    for (int b = first; b < last; ++b) {
      Matrix mean = Matrix::Zero(T, d_);
      for (int64_t i = 0; i < hc_; ++i) mean += branch(hidden, i, T);
      mean /= static_cast<float>(hc_);
      const Matrix attn = attention_[static_cast<size_t>(b)].forward(example::rms_normalize(mean));
      const Matrix ffn = moe_[static_cast<size_t>(b)].forward(example::rms_normalize(mean + attn));
      for (int64_t i = 0; i < hc_; ++i) branch(hidden, i, T) += attn + ffn;
    }
  }

 private:
  Eigen::Map<Matrix, 0, Eigen::OuterStride<>> branch(std::vector<float>& hidden, int64_t i,
                                                     int64_t T) const {
    return {hidden.data() + i * d_, T, d_, Eigen::OuterStride<>(hc_ * d_)};
  }
  int64_t d_, hc_;
  double spin_per_block_ = 0;
  std::vector<example::CausalSelfAttention> attention_;
  std::vector<example::MoeFeedForward> moe_;
};

/// Adds the Engram layer's output to hidden (the residual), for one batch.
inline void add_delta(std::vector<float>& hidden, const std::vector<float>& delta) {
  for (size_t k = 0; k < hidden.size(); ++k) hidden[k] += delta[k];
}

inline uint64_t checksum(const std::vector<float>& v) {
  return XXH3_64bits(v.data(), v.size() * sizeof(float));
}

/// How a pass fetches each batch's rows: kSync when its layer needs them (no prefetch); kCold, a
/// pipeline starting empty (the first batch queues its own rows at its start, every later batch's
/// rows are fetched during the batch before); kRunning, a pipeline already running (the first
/// batch's rows were staged during the batch before the pass, uncharged).
enum class Pipeline { kSync, kCold, kRunning };

/// What one pass of alternating resident and offloaded batches measured.
struct PassResult {
  int64_t tokens = 0, mismatches = 0;
  /// Pages read for the first batch before the timer (Pipeline::kRunning).
  int64_t uncharged_pages = 0;
  double resident_seconds = 0, offloaded_seconds = 0, wait_seconds = 0, engram_seconds = 0;
  FetchReport fetched;
  double resident_rate() const { return static_cast<double>(tokens) / resident_seconds; }
  double offloaded_rate() const { return static_cast<double>(tokens) / offloaded_seconds; }
  double penalty_percent() const {
    return 100.0 * (resident_rate() - offloaded_rate()) / resident_rate();
  }
  double hit_percent() const {
    return fetched.rows > 0 ? 100.0 * static_cast<double>(fetched.rows_from_cache) /
                                  static_cast<double>(fetched.rows)
                            : 0.0;
  }
  /// Storage reads per second of the offloaded run (pages, i.e. 4 KiB reads).
  double iops() const {
    return static_cast<double>(fetched.pages_read - uncharged_pages) / offloaded_seconds;
  }
};

}  // namespace offload

inline int bench_offload(int argc, char** argv) {
  using namespace offload;
  const Args args(argc, argv, 2,
                  {"corpus", "lookup", "table-rows", "cache-mb", "table-dir", "codec", "tokens",
                   "threads", "backbone-tokens-per-s", "probe", "max-steps", "repeats"},
                  {"no-prefetch", "find-sustained"});
  if (!args.positional().empty()) throw UsageError("unexpected argument " + args.positional()[0]);
  const int64_t rows_per_head = args.integer("table-rows", 0, 1000, int64_t{1} << 40);
  const int64_t cache_mb = args.integer("cache-mb", 0, 0, int64_t{1} << 30);
  const std::string codec = args.str("codec", "bf16");
  if (codec != "bf16" && codec != "f32") throw UsageError("--codec must be bf16 or f32");
  const bool prefetch = !args.flag("no-prefetch");
  const bool find_sustained = args.flag("find-sustained");
  const int64_t backbone_rate = args.integer("backbone-tokens-per-s", 0, 1, int64_t{1} << 30);
  const int64_t max_steps = args.integer("max-steps", 12, 1, 100);
  const int64_t repeats = args.integer("repeats", 3, 1, 15);
  std::optional<probe::Limits> limits;
  if (args.has("probe")) limits = probe::Limits::load(args.str("probe"));
  const int64_t threads = args.integer("threads", 2, 1, 1024);
  const int64_t seq = 512;
  Eigen::setNbThreads(static_cast<int>(threads));

  const EngramConfig config = bench_config(rows_per_head);
  const auto lookup = CompressionTable::load(args.str("lookup"));
  auto hasher = std::make_shared<const NgramHasher>(config, lookup.lookup(), 1);
  const PackedTableInfo info =
      PackedTableInfo::make(config, 1, codec, {hasher->primes().begin(), hasher->primes().end()},
                            {hasher->multipliers().begin(), hasher->multipliers().end()});
  const std::string path = ensure_table(args.str("table-dir"), info);

  const SafetensorsFile corpus(args.str("corpus"));
  std::vector<int64_t> ids = corpus.read_int64("input_ids");
  const int64_t limit = args.integer("tokens", 16384, seq);
  const int64_t corpus_batches = static_cast<int64_t>(ids.size()) / seq;
  const int64_t batches = std::min<int64_t>(limit, static_cast<int64_t>(ids.size())) / seq;
  ENGRAM_CHECK(batches > 0, args.str("corpus"), ": fewer than ", seq, " tokens");
  const bool synthetic = backbone_rate > 0 || find_sustained;
  // Synthetic runs measure a cold pass on batches [0, n) and a steady one on [2n, 3n) after
  // warming the cache on [n, 2n).
  ENGRAM_CHECK(!synthetic || 3 * batches <= corpus_batches, args.str("corpus"), ": ", ids.size(),
               " tokens; the cold and steady-state passes need 3 x --tokens = ", 3 * batches * seq);
  const int64_t tokens = batches * seq, width = config.hc_mult * config.hidden_size;

  std::mt19937_64 rng(2026);
  Backbone backbone(config.hidden_size, config.hc_mult, rng);
  const std::vector<int64_t> column_rows(hasher->primes().begin(), hasher->primes().end());
  EngramWeightsT<float> base = random_engram_weights(config, column_rows, rng);

  // (1) resident: the packed file's page area is the dense [rows, 64] table when pages hold whole
  // rows back to back; map it and fault it in.
  const PackedTableFile file(path);
  const PackedLayout& layout = file.layout();
  ENGRAM_CHECK(layout.rows_per_page * layout.row_bytes == layout.page_bytes, path,
               ": rows do not tile the pages; the resident run needs a dense table");
  const auto mapping = file.map();
  const std::span<const std::byte> dense =
      mapping->bytes().subspan(static_cast<size_t>(layout.data_offset),
                               static_cast<size_t>(info.num_rows * layout.row_bytes));
  {
    const auto t0 = Clock::now();
    ::madvise(const_cast<std::byte*>(dense.data()), dense.size(), MADV_WILLNEED);
    uint64_t touch = 0;
    for (size_t i = 0; i < dense.size(); i += 4096) touch += static_cast<uint8_t>(dense[i]);
    std::printf("resident table: %.2f GB mapped and faulted in in %.1f s (%llu)\n",
                static_cast<double>(dense.size()) / 1e9, since(t0),
                static_cast<unsigned long long>(touch % 10));
  }
  auto resident_weights = std::make_shared<EngramWeightsT<float>>(base);
  if (codec == "bf16")
    resident_weights->table =
        EmbeddingTableT<codec::BF16>(dense, config.row_dim(), column_rows, path + " (resident)");
  else
    resident_weights->table =
        EmbeddingTableT<codec::F32>(dense, config.row_dim(), column_rows, path + " (resident)");
  const EngramLayer resident(resident_weights, hasher);
  auto tier_weights = std::make_shared<EngramWeightsT<float>>(std::move(base));
  tier_weights->table =
      EmbeddingTableT<codec::F32>::shape_only(config.row_dim(), column_rows, path + " (tier)");
  const EngramLayer offloaded(tier_weights, hasher);

  std::printf(
      "backbone: %s; Engram after block 1 (N=3, 8 heads, 512 per order, %lld rows of %lld "
      "bytes); %lld tokens in %lld batches of %lld; %lld threads\n",
      synthetic ? "a calibrated load of a set speed in place of the 4 blocks"
                : "4 blocks, hidden 1024 x 4 branches, attention 8 heads, MoE 8 experts "
                  "1024->2048->1024 top-2",
      static_cast<long long>(info.num_rows), static_cast<long long>(info.row_bytes()),
      static_cast<long long>(tokens), static_cast<long long>(batches), static_cast<long long>(seq),
      static_cast<long long>(threads));
  std::fflush(stdout);

  auto batch_ids = [&](int64_t i) {
    return std::span<const int64_t>(ids.data() + i * seq, static_cast<size_t>(seq));
  };
  std::vector<float> hidden, delta(static_cast<size_t>(seq * width));
  EngramLayer::Workspace ws;
  std::vector<float> hidden_offloaded;
  auto open = [&] { return open_table("file:" + path, {.cache_bytes = cache_mb << 20}); };

  // One pass over batches [first, first + count). Resident and offloaded batches alternate (batch
  // i resident then offloaded, or the other way round on odd i), each with its own hidden state,
  // so that both see the same load from whatever else runs on the machine. An offloaded batch's
  // time runs from its start until its output is done *and* (with prefetch) the next batch's rows
  // are staged: the fetch of batch i + 1 may hide behind batch i's blocks only, never behind the
  // interleaved resident batch. `pipeline`: see Pipeline.
  auto pass = [&](OpenedTable& table, int64_t first, int64_t count, Pipeline pipeline) {
    const bool use_prefetch = pipeline != Pipeline::kSync;
    PassResult result;
    result.tokens = count * seq;
    auto run = [&](auto policy) {
      // The offloaded layer: TieredLayerT hashes, fetches (look-ahead: on the prefetch worker) and
      // decodes; stage() charges the wait for a batch's rows to the batch that waited.
      TieredLayerT<EngramLayer, AnyTier, decltype(policy)> tiered(offloaded, table.tier, table.info,
                                                                  policy, seq);
      auto resident_batch = [&](int64_t i) {
        const auto t0 = Clock::now();
        backbone.embed(batch_ids(i), hidden);
        backbone.blocks(hidden, seq, 0, 2);
        const auto te = Clock::now();
        resident.forward_tokens(batch_ids(i), hidden, 1, seq, delta, ws);
        result.engram_seconds += since(te);
        add_delta(hidden, delta);
        backbone.blocks(hidden, seq, 2, 4);
        result.resident_seconds += since(t0);
      };
      auto stage = [&](const auto& ticket) {
        const auto tw = Clock::now();
        tiered.stage(ticket);
        result.wait_seconds += since(tw);
      };
      typename decltype(tiered)::Ticket current, next;
      const int64_t last = first + count;
      const bool fill = pipeline == Pipeline::kCold;  // the first batch queues its own rows
      if (pipeline == Pipeline::kRunning) {
        tiered.stage(current = tiered.prefetch(batch_ids(first), 1, seq));
        result.uncharged_pages = tiered.fetched().pages_read;
      }
      auto offloaded_batch = [&](int64_t i) {
        const auto t0 = Clock::now();
        // A cold pipeline's first batch queues its own rows as soon as its tokens are known and
        // awaits them when the layer needs them (behind blocks 0 and 1, as a server would); every
        // other batch's rows were staged during the batch before.
        if (fill && i == first) current = tiered.prefetch(batch_ids(i), 1, seq);
        if (use_prefetch && i + 1 < last)
          next = tiered.prefetch(batch_ids(i + 1), 1, seq);  // overlaps batch i's blocks
        backbone.embed(batch_ids(i), hidden_offloaded);
        backbone.blocks(hidden_offloaded, seq, 0, 2);
        if (!use_prefetch) stage(current = tiered.prefetch(batch_ids(i), 1, seq));
        if (fill && i == first) stage(current);
        tiered.forward(current, hidden_offloaded, delta, ws);
        add_delta(hidden_offloaded, delta);
        backbone.blocks(hidden_offloaded, seq, 2, 4);
        if (use_prefetch && i + 1 < last) stage(current = next);  // staged during batch i
        result.offloaded_seconds += since(t0);
      };
      for (int64_t i = first; i < last; ++i) {
        if ((i - first) % 2 == 0) {
          resident_batch(i);
          offloaded_batch(i);
        } else {
          offloaded_batch(i);
          resident_batch(i);
        }
        if (checksum(hidden) != checksum(hidden_offloaded)) ++result.mismatches;
      }
      result.fetched = tiered.fetched();
    };
    if (use_prefetch) {
      run(LookAheadPrefetch{.batches = 2});
    } else {
      run(SyncPrefetch{});
    }
    ENGRAM_CHECK(result.mismatches == 0,
                 "bench-offload: the offloaded run's hidden states differ from the resident "
                 "run's in ",
                 result.mismatches, " of ", count, " batches");
    return result;
  };
  auto iops_text = [&](const PassResult& r) {
    char text[160];
    if (limits && limits->iops_4k > 0) {
      std::snprintf(text, sizeof text, "SSD %.0f IOPS = %.0f%% of probe", r.iops(),
                    100.0 * r.iops() / limits->iops_4k);
    } else {
      std::snprintf(text, sizeof text, "SSD %.0f IOPS", r.iops());
    }
    return std::string(text);
  };

  if (!synthetic) {
    OpenedTable table = open();
    std::printf("offloaded: %s, %s prefetch\n", table.tier.describe().c_str(),
                prefetch ? "asynchronous" : "no (synchronous)");
    std::fflush(stdout);
    const PassResult r = pass(table, 0, batches, prefetch ? Pipeline::kCold : Pipeline::kSync);
    std::printf("resident:  %.1f s, %.1f tok/s (Engram layer %.2f s)\n", r.resident_seconds,
                r.resident_rate(), r.engram_seconds);
    std::printf(
        "offloaded: %.1f s, %.1f tok/s; %lld rows (%lld cache hits; misses read %lld pages, %.1f "
        "MB, from the SSD); waited %.3f s for rows (fetch + decode)\n",
        r.offloaded_seconds, r.offloaded_rate(), static_cast<long long>(r.fetched.rows),
        static_cast<long long>(r.fetched.rows_from_cache),
        static_cast<long long>(r.fetched.pages_read),
        static_cast<double>(r.fetched.bytes_read) / 1e6, r.wait_seconds);
    std::printf("hidden states equal to the resident run's in %lld of %lld batches\n",
                static_cast<long long>(batches), static_cast<long long>(batches));
    std::printf(
        "offload penalty %.1f%% (resident %.1f tok/s, offloaded %.1f tok/s, cache hit %.1f%%)\n",
        r.penalty_percent(), r.resident_rate(), r.offloaded_rate(), r.hit_percent());
    return 0;
  }

  // A backbone of a set speed: each of its 4 blocks is a busy wait of seq / rate / 4 seconds.
  // Cold: a fresh cache and pipeline over batches [0, n). Steady: a fresh cache warmed (uncharged)
  // on [n, 2n), measured on [2n, 3n) with batch 2n's rows staged before the timer.
  {
    const OpenedTable table = open();
    std::printf("offloaded: %s, %s prefetch\n", table.tier.describe().c_str(),
                prefetch ? "asynchronous" : "no (synchronous)");
  }
  auto measure_once = [&](double rate, bool steady) {
    backbone.set_spin_per_block(static_cast<double>(seq) / rate / 4.0);
    OpenedTable table = open();
    if (steady) {  // the rows of [n, 2n) through the cache, no layer run
      TieredLayerT<EngramLayer, AnyTier, SyncPrefetch> warm(offloaded, table.tier, table.info, {},
                                                            seq);
      for (int64_t i = batches; i < 2 * batches; ++i) {
        const auto ticket = warm.prefetch(batch_ids(i), 1, seq);
        warm.stage(ticket);
        warm.discard(ticket);
      }
    }
    return pass(table, steady ? 2 * batches : 0, batches,
                !prefetch ? Pipeline::kSync
                : steady  ? Pipeline::kRunning
                          : Pipeline::kCold);
  };
  // K runs of a rate, in measured order; the run with the median penalty stands for the rate.
  struct Measured {
    std::vector<PassResult> runs;
    const PassResult& median() const {
      std::vector<const PassResult*> by_penalty;
      for (const PassResult& r : runs) by_penalty.push_back(&r);
      std::sort(by_penalty.begin(), by_penalty.end(), [](const PassResult* a, const PassResult* b) {
        return a->penalty_percent() < b->penalty_percent();
      });
      return *by_penalty[by_penalty.size() / 2];
    }
  };
  auto measure = [&](double rate, bool steady) {
    Measured m;
    for (int64_t k = 0; k < repeats; ++k) m.runs.push_back(measure_once(rate, steady));
    return m;
  };
  auto report = [&](const char* phase, double rate, const Measured& m) {
    const PassResult& r = m.median();
    std::printf(
        "%s backbone %.0f tok/s: penalty %.1f%% (resident %.1f tok/s, offloaded %.1f "
        "tok/s, cache hit %.1f%%, %s, waited %.3f s)",
        phase, rate, r.penalty_percent(), r.resident_rate(), r.offloaded_rate(), r.hit_percent(),
        iops_text(r).c_str(), r.wait_seconds);
    if (m.runs.size() > 1) {
      std::printf(" median of %zu runs:", m.runs.size());
      for (size_t k = 0; k < m.runs.size(); ++k)
        std::printf("%s %.1f%%", k == 0 ? "" : ",", m.runs[k].penalty_percent());
    }
    std::printf("\n");
    std::fflush(stdout);
  };
  for (const bool steady : {false, true}) {
    const char* phase = steady ? "steady state:" : "cold start:  ";
    if (!find_sustained) {
      report(phase, static_cast<double>(backbone_rate),
             measure(static_cast<double>(backbone_rate), steady));
      continue;
    }
    // The highest rate whose penalty is at most 1%: double from the start rate while it holds,
    // then bisect (geometrically) between the last rate that held and the first that did not.
    constexpr double kMaxPenalty = 1.0;
    double good = 0, bad = 0;
    std::optional<PassResult> best;
    double rate = backbone_rate > 0 ? static_cast<double>(backbone_rate) : 1000.0;
    for (int64_t step = 0; step < max_steps; ++step) {
      const Measured m = measure(rate, steady);
      report(phase, rate, m);
      const PassResult& r = m.median();
      if (r.penalty_percent() <= kMaxPenalty) {
        good = rate;
        best = r;
      } else {
        bad = rate;
      }
      if (bad == 0) {
        rate *= 2;
      } else if (good == 0) {
        rate /= 2;
      } else if (bad / good < 1.15) {
        break;
      } else {
        rate = std::sqrt(good * bad);
      }
      if (rate < 1) break;
    }
    if (!best) {
      std::printf("%s sustains no backbone rate at a penalty of 1%% or less\n", phase);
      continue;
    }
    // What the SSD alone allows: its probed IOPS over the pages a token reads after cache hits.
    const double pages_per_token =
        static_cast<double>(best->fetched.pages_read) / static_cast<double>(best->tokens);
    std::printf("%s sustains %.0f tok/s (penalty %.1f%%, cache hit %.1f%%, %s)", phase,
                best->resident_rate(), best->penalty_percent(), best->hit_percent(),
                iops_text(*best).c_str());
    if (limits && limits->iops_4k > 0 && pages_per_token > 0) {
      const double allowed = limits->iops_4k / pages_per_token;
      std::printf("; the probed IOPS allow %.0f tok/s at %.2f reads a token: %.0f%%", allowed,
                  pages_per_token, 100.0 * best->resident_rate() / allowed);
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace engram::cli
