// engram: the command-line tool. Each subcommand is one capability of the library on files:
//
//   engram compress-vocab TOKENIZER_JSON -o OUT.safetensors
//   engram hash --config CFG.json --lookup LOOKUP.safetensors [--layer L]
//       --input IN.safetensors -o OUT.safetensors
//   engram forward --config CFG.json --lookup LOOKUP.safetensors --weights W.safetensors
//       [--prefix P] [--layer L] [--chunk K] [--table URI [--cache-mb M]] [--bf16-projection]
//       [--bf16-compute]
//       --input IN.safetensors -o OUT.safetensors
//   engram bench --config CFG.json --lookup LOOKUP.safetensors [--batch B] [--seqlen T]
//       [--threads N] [--dtype f32|bf16|bf16-native] [--layer L] [--reps R] [--cache-dir DIR]
//   engram demo --tokenizer TOKENIZER_JSON --corpus TOKENS.safetensors --config CFG.json
//       [--tokens N]
//   engram info --model DIR; engram hash|forward --model DIR ... (V4.1 as released:
//       model_commands.hpp)
//   (and pack, push, bench-offload, train: `engram` alone lists every subcommand; `engram CMD
//   --help`)
//
// Errors in inputs print one line "engram: error: ..." and exit 1; bad usage exits 2.
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "engram/engram.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "engram/tokenizer/vocab_compressor.hpp"
#include "cli/layer_profile.hpp"
#include "cli/offload_bench.hpp"
#include "cli/probe.hpp"
#include "train_example.hpp"
#include "random_checkpoint.hpp"
#include "cli/remote_commands.hpp"
#include "cli/tier_commands.hpp"
#include "train_commands.hpp"

namespace engram::cli {
namespace {

int compress_vocab(int argc, char** argv) {
  const Args args(argc, argv, 2, {"output"}, {});
  if (args.positional().size() != 1) throw UsageError("expected one TOKENIZER_JSON argument");
  const CompressionTable table = compress_tokenizer_json(args.positional()[0]);
  table.save(args.str("output"));
  const double reduction =
      100.0 * (1.0 - static_cast<double>(table.compressed_size()) /
                         static_cast<double>(std::max<int64_t>(1, table.vocab_size())));
  std::printf("vocab %lld -> %lld (reduction %.1f%%)\n", static_cast<long long>(table.vocab_size()),
              static_cast<long long>(table.compressed_size()), reduction);
  return 0;
}

/// input_ids [B, T] (I64 or I32) of a safetensors file.
struct TokenIds {
  int64_t batch = 0, seqlen = 0;
  std::vector<int64_t> ids;
};

TokenIds read_input_ids(const SafetensorsFile& file) {
  const TensorView& t = file.at("input_ids");
  ENGRAM_CHECK(t.shape.size() == 2, file.path(), ": tensor 'input_ids' has shape ",
               shape_string(t.shape), ", expected [B, T]");
  return {t.shape[0], t.shape[1], file.read_int64("input_ids")};
}

int hash(int argc, char** argv) {
  const Args args(argc, argv, 2, {"config", "lookup", "layer", "input", "output"}, {});
  if (!args.positional().empty()) throw UsageError("unexpected argument " + args.positional()[0]);
  const auto config = EngramConfig::load(args.str("config"));
  const auto table = CompressionTable::load(args.str("lookup"));
  const int64_t layer = args.integer("layer", config.layer_ids.front());
  config.require_layer(layer, args.str("config"));
  const NgramHasher hasher(config, table.lookup(), layer);
  const SafetensorsFile input(args.str("input"));
  const TokenIds in = read_input_ids(input);
  std::vector<int64_t> rows(static_cast<size_t>(in.batch * in.seqlen * hasher.num_columns()));
  hasher.hash(in.ids, in.batch, in.seqlen, rows);
  const TensorWrite out[] = {tensor_write<int64_t>(
      "hash_ids", {in.batch, in.seqlen, hasher.num_columns()}, std::span<const int64_t>(rows))};
  save_safetensors(args.str("output"), out, {{"layer_id", std::to_string(layer)}});
  std::printf("hashed %lld x %lld tokens -> %lld row ids per token (layer %lld)\n",
              static_cast<long long>(in.batch), static_cast<long long>(in.seqlen),
              static_cast<long long>(hasher.num_columns()), static_cast<long long>(layer));
  return 0;
}

/// Runs `layer` over [B, T] tokens, whole (chunk <= 0) or `chunk` tokens at a time through the
/// incremental path; returns out [B, T, hc, d]. live: empty or [B, T] (0 = dead token).
template <class Layer>
std::vector<float> run_layer(const Layer& layer, const TokenIds& in, std::span<const float> hidden,
                             int64_t chunk, std::span<const uint8_t> live = {}) {
  const int64_t width = layer.hc_mult() * layer.hidden_size();
  std::vector<float> out(hidden.size());
  typename Layer::Workspace ws;
  if (chunk <= 0 || chunk >= in.seqlen) {
    layer.forward_tokens(in.ids, hidden, in.batch, in.seqlen, out, ws, live);
    return out;
  }
  std::vector<typename Layer::State> states;
  for (int64_t b = 0; b < in.batch; ++b) states.push_back(layer.make_state());
  std::vector<typename Layer::State*> state_ptrs;
  for (auto& s : states) state_ptrs.push_back(&s);
  std::vector<int64_t> ids_chunk;
  std::vector<uint8_t> live_chunk;
  std::vector<float> hidden_chunk, out_chunk;
  for (int64_t t0 = 0; t0 < in.seqlen; t0 += chunk) {
    const int64_t k = std::min(chunk, in.seqlen - t0);
    ids_chunk.resize(static_cast<size_t>(in.batch * k));
    live_chunk.resize(live.empty() ? 0 : static_cast<size_t>(in.batch * k));
    hidden_chunk.resize(static_cast<size_t>(in.batch * k * width));
    out_chunk.resize(hidden_chunk.size());
    for (int64_t b = 0; b < in.batch; ++b) {
      std::copy_n(in.ids.begin() + b * in.seqlen + t0, k, ids_chunk.begin() + b * k);
      if (!live.empty())
        std::copy_n(live.begin() + b * in.seqlen + t0, k, live_chunk.begin() + b * k);
      std::copy_n(hidden.begin() + (b * in.seqlen + t0) * width, k * width,
                  hidden_chunk.begin() + b * k * width);
    }
    layer.forward_tokens(ids_chunk, hidden_chunk, in.batch, k, out_chunk, state_ptrs, ws,
                         live_chunk);
    for (int64_t b = 0; b < in.batch; ++b)
      std::copy_n(out_chunk.begin() + b * k * width, k * width,
                  out.begin() + (b * in.seqlen + t0) * width);
  }
  return out;
}

}  // namespace
}  // namespace engram::cli

// The released-directory (--model) forms of info, hash and forward; they use the helpers above.
#include "cli/model_commands.hpp"

namespace engram::cli {
namespace {

int forward(int argc, char** argv) {
  const Args args(argc, argv, 2,
                  {"config", "lookup", "weights", "prefix", "layer", "chunk", "input", "output",
                   "table", "cache-mb"},
                  {"bf16-projection", "bf16-compute"});
  if (!args.positional().empty()) throw UsageError("unexpected argument " + args.positional()[0]);
  const auto config = EngramConfig::load(args.str("config"));
  const auto table = CompressionTable::load(args.str("lookup"));
  const int64_t layer_id = args.integer("layer", config.layer_ids.front());
  const int64_t chunk = args.integer("chunk", 0, 0);
  config.require_layer(layer_id, args.str("config"));
  auto hasher = std::make_shared<const NgramHasher>(config, table.lookup(), layer_id);
  auto weights = std::make_shared<const SafetensorsFile>(args.str("weights"));
  const CheckpointOptions options{.prefix = args.str("prefix", ""),
                                  .table_in_tier = args.has("table"),
                                  .bf16_projection = args.flag("bf16-projection"),
                                  .bf16_compute = args.flag("bf16-compute")};
  std::optional<OpenedTable> rows_table;  // --table: the rows live there, not in the checkpoint
  if (args.has("table")) {
    TableOpenOptions table_options{.cache_bytes = args.integer("cache-mb", 0, 0, int64_t{1} << 30)
                                                  << 20};
    // Tables inside safetensors shards (safetensors:, hf:) take their metadata from the config.
    table_options.table_info = PackedTableInfo::make(
        config, layer_id, config.variant == Variant::kFused ? "fp8_e4m3" : "f32",
        {hasher->primes().begin(), hasher->primes().end()},
        {hasher->multipliers().begin(), hasher->multipliers().end()});
    rows_table.emplace(open_table(args.str("table"), table_options));
    check_table_matches(rows_table->info, args.str("table"), config, *hasher);
  }

  const SafetensorsFile input(args.str("input"));
  const TokenIds in = read_input_ids(input);
  const TensorView& hidden = input.at("hidden_states");
  hidden.check_shape({in.batch, in.seqlen, config.hc_mult, config.hidden_size});
  const std::vector<float> hidden_values = hidden.copy_as<float>();

  std::vector<float> out;
  if (config.variant == Variant::kFused) {
    const auto layer = FusedEngramLayer::load(config, weights, hasher, options);
    out = rows_table ? run_layer_from_table(layer, *rows_table, in.batch, in.seqlen, in.ids,
                                            hidden_values, chunk)
                     : run_layer(layer, in, hidden_values, chunk);
  } else {
    const auto layer = EngramLayer::load(config, weights, hasher, options);
    out = rows_table ? run_layer_from_table(layer, *rows_table, in.batch, in.seqlen, in.ids,
                                            hidden_values, chunk)
                     : run_layer(layer, in, hidden_values, chunk);
  }
  std::vector<int64_t> rows(static_cast<size_t>(in.batch * in.seqlen * hasher->num_columns()));
  hasher->hash(in.ids, in.batch, in.seqlen, rows);
  const TensorWrite tensors[] = {
      tensor_write<float>("output", hidden.shape, std::span<const float>(out)),
      tensor_write<int64_t>("hash_ids", {in.batch, in.seqlen, hasher->num_columns()},
                            std::span<const int64_t>(rows))};
  save_safetensors(args.str("output"), tensors, {{"layer_id", std::to_string(layer_id)}});
  std::printf("forward %s layer %lld: %lld x %lld tokens%s -> %s\n",
              config.variant == Variant::kFused ? "fused" : "demo",
              static_cast<long long>(layer_id), static_cast<long long>(in.batch),
              static_cast<long long>(in.seqlen),
              chunk > 0 ? (" in chunks of " + std::to_string(chunk)).c_str() : "",
              args.str("output").c_str());
  return 0;
}

template <class Layer>
double time_forward(const Layer& layer, std::span<const int64_t> ids, std::span<const float> hidden,
                    int64_t batch, int64_t seqlen, int reps) {
  std::vector<float> out(hidden.size());
  typename Layer::Workspace ws;
  layer.forward_tokens(ids, hidden, batch, seqlen, out, ws);  // warm-up: page in rows, size ws
  std::vector<double> seconds;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    layer.forward_tokens(ids, hidden, batch, seqlen, out, ws);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::printf("run %d: %.5f s, %.1f tokens/s\n", r, seconds.back(),
                static_cast<double>(batch * seqlen) / seconds.back());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

/// `engram bench`'s report for one layer: tokens/s, the roofline line (with a probe) and the split
/// of a forward (--profile). weight_bytes: the projection's bytes streamed once per call;
/// row_bytes: one gathered table row.
template <class Layer>
void bench_layer(const Layer& layer, const Args& args, std::span<const int64_t> ids,
                 std::span<const float> hidden, int64_t batch, int64_t seqlen, int reps,
                 double weight_bytes, double row_bytes, bool native_bf16, const std::string& what,
                 const std::string& suffix) {
  std::optional<probe::Limits> limits;
  if (args.has("probe")) limits = probe::Limits::load(args.str("probe"));
  const int64_t tokens = batch * seqlen;
  const double median = time_forward(layer, ids, hidden, batch, seqlen, reps);
  std::printf("%s batch %lld seqlen %lld threads %d%s\n", what.c_str(),
              static_cast<long long>(batch), static_cast<long long>(seqlen), Eigen::nbThreads(),
              suffix.c_str());
  std::printf("tokens/s %.1f\n", static_cast<double>(tokens) / median);
  const example::ProjectionShape projection = example::projection_shape(layer);
  example::ForwardWork work;
  work.flop = 2.0 * static_cast<double>(tokens) * static_cast<double>(projection.in) *
              static_cast<double>(projection.out);
  work.bytes = weight_bytes + static_cast<double>(tokens) * layer.num_columns() * row_bytes +
               2.0 * static_cast<double>(hidden.size()) * sizeof(float);
  if (limits) example::print_roofline(work, median, *limits, native_bf16);
  if (args.flag("profile")) {
    example::print_profile(example::profile_layer(layer, ids, hidden, batch, seqlen, reps), tokens);
  }
}

/// Random token ids in [0, vocab) and hidden states N(0, 1) for a [batch, seqlen] bench.
inline std::pair<std::vector<int64_t>, std::vector<float>> bench_inputs(int64_t vocab,
                                                                        int64_t batch,
                                                                        int64_t seqlen,
                                                                        int64_t width) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int64_t> token(0, vocab - 1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<int64_t> ids(static_cast<size_t>(batch * seqlen));
  for (auto& id : ids) id = token(rng);
  std::vector<float> hidden(static_cast<size_t>(batch * seqlen * width));
  for (auto& h : hidden) h = normal(rng);
  return {std::move(ids), std::move(hidden)};
}

int bench(int argc, char** argv) {
  const Args args(argc, argv, 2,
                  {"config", "lookup", "batch", "seqlen", "threads", "dtype", "layer", "reps",
                   "cache-dir", "probe", "model"},
                  {"profile"});
  if (!args.positional().empty()) throw UsageError("unexpected argument " + args.positional()[0]);
  const int64_t batch = args.integer("batch", 1, 1, 1 << 20);
  const int64_t seqlen = args.integer("seqlen", 2048, 1, 1 << 24);
  const int64_t threads = args.integer("threads", 2, 1, 1024);
  const int reps = static_cast<int>(args.integer("reps", 5, 1, 1000));
  const std::string dtype = args.str("dtype", "f32");
  if (dtype != "f32" && dtype != "bf16" && dtype != "bf16-native")
    throw UsageError("--dtype must be f32, bf16 or bf16-native");
  Eigen::setNbThreads(static_cast<int>(threads));

  if (args.has("model")) {  // a V4.1 directory as released: its own weights, FP8 or not
    if (args.has("dtype")) throw UsageError("--model runs the checkpoint's own dtypes: no --dtype");
    int64_t layer_id = 0;
    const EngramModel model = open_model(args, &layer_id);
    const auto& layer = model.layer(layer_id);
    const EngramConfig& c = layer.config();
    const auto [ids, hidden] =
        bench_inputs(layer.hasher()->lookup_size(), batch, seqlen, c.hc_mult * c.hidden_size);
    const example::ProjectionShape shape = example::projection_shape(layer);
    const bool fp8 = example::uses_fp8_projection(layer);
    // FP8: a byte a weight plus one E8M0 scale per 32 x 32 block; else f32 after loading.
    const double weight_bytes = static_cast<double>(shape.in) * static_cast<double>(shape.out) *
                                (fp8 ? 1.0 + 1.0 / 1024 : 4.0);
    const double row_bytes = static_cast<double>(c.head_dim) * (1.0 + 1.0 / c.quant_block);
    bench_layer(layer, args, ids, hidden, batch, seqlen, reps, weight_bytes, row_bytes, false,
                "model " + args.str("model") + " layer " + std::to_string(layer_id),
                fp8 ? " wkv fp8" : " wkv f32");
    return 0;
  }

  const auto config = EngramConfig::load(args.str("config"));
  const auto table = CompressionTable::load(args.str("lookup"));
  const int64_t layer_id = args.integer("layer", config.layer_ids.front());
  config.require_layer(layer_id, args.str("config"));
  auto hasher = std::make_shared<const NgramHasher>(config, table.lookup(), layer_id);
  const std::string cache_dir =
      args.str("cache-dir", (std::filesystem::temp_directory_path() / "engram-bench").string());
  const std::string path = example::cached_random_checkpoint(
      cache_dir, config, hasher->primes(), layer_id,
      dtype == "f32" ? example::TableDtype::kF32 : example::TableDtype::kBF16);
  auto file = std::make_shared<const SafetensorsFile>(path);
  const auto [ids, hidden] =
      bench_inputs(table.vocab_size(), batch, seqlen, config.hc_mult * config.hidden_size);

  // bf16: bf16 table (demo; the fused table is FP8 either way) and bf16 projection weights;
  // bf16-native: the same, with activations rounded to bf16 and vdpbf16ps (AVX512-BF16 CPUs).
  CheckpointOptions options;
  options.bf16_projection = dtype != "f32";
  options.bf16_compute = dtype == "bf16-native";
  const double weight_bytes = (options.bf16_projection ? 2.0 : 4.0) *
                              static_cast<double>((config.hc_mult + 1) * config.hidden_size) *
                              static_cast<double>(config.memory_dim());
  const double row_bytes =
      static_cast<double>(config.row_dim()) * (config.variant == Variant::kFused ? 1.0 + 1.0 / 32
                                               : dtype != "f32"                  ? 2.0
                                                                                 : 4.0);
  const std::string what = "config " + args.str("config"), suffix = " dtype " + dtype;
  if (config.variant == Variant::kFused) {
    bench_layer(FusedEngramLayer::load(config, file, hasher, options), args, ids, hidden, batch,
                seqlen, reps, weight_bytes, row_bytes, options.bf16_compute, what, suffix);
  } else {
    bench_layer(EngramLayer::load(config, file, hasher, options), args, ids, hidden, batch, seqlen,
                reps, weight_bytes, row_bytes, options.bf16_compute, what, suffix);
  }
  return 0;
}

int probe(int argc, char** argv) {
  const Args args(argc, argv, 2, {"threads", "memory-mb", "dir", "file-mb", "io-seconds", "output"},
                  {});
  if (!args.positional().empty()) throw UsageError("unexpected argument " + args.positional()[0]);
  probe::ProbeOptions options;
  options.threads = static_cast<int>(args.integer("threads", options.threads, 1, 1024));
  options.memory_mb = args.integer("memory-mb", options.memory_mb, 64, 1 << 20);
  options.io_file_mb = args.integer("file-mb", options.io_file_mb, 16, 1 << 22);
  options.io_seconds = static_cast<double>(args.integer("io-seconds", 3, 1, 3600));
  if (args.has("dir")) options.io_dir = args.str("dir");
  const probe::Limits limits = probe::measure(options);
  probe::print(limits, stdout);
  if (args.has("output")) {
    std::ofstream out(args.str("output"));
    out << limits.to_json().dump(2) << "\n";
    ENGRAM_CHECK(out.good(), args.str("output"), ": cannot write the probe file");
  }
  return 0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Bound of the demo's decoding check: max |token by token - whole sequence| / max |whole|, the
/// bound of the chunked == whole layer tests (tests/layer/engram_layer_test.cpp).
constexpr double kDemoDecodeTolerance = 1e-5;

/// The README's demo: compress the tokenizer's vocabulary, hash the corpus (all of it unless
/// --tokens), then run an Engram layer (random weights) over its first --layer-tokens (262,144),
/// printing what a person can check: the compression, the most frequent bigrams with the rows
/// they hash to, how Zipfian the row accesses are, the throughput, and that token-by-token
/// decoding reproduces the whole-sequence output (an error, exit status 1, when it does not).
int demo(int argc, char** argv) {
  const Args args(argc, argv, 2,
                  {"tokenizer", "corpus", "config", "tokens", "layer-tokens", "cache-dir"}, {});
  auto t0 = std::chrono::steady_clock::now();
  const TokenizerJson tokenizer = read_tokenizer_json(args.str("tokenizer"));
  const CompressionTable table = compress_tokenizer(tokenizer);
  std::printf(
      "1. vocabulary compression (%s)\n   vocab %lld -> %lld (reduction %.1f%%) in %.0f ms\n",
      args.str("tokenizer").c_str(), static_cast<long long>(table.vocab_size()),
      static_cast<long long>(table.compressed_size()),
      100.0 * (1.0 - static_cast<double>(table.compressed_size()) /
                         static_cast<double>(table.vocab_size())),
      1e3 * seconds_since(t0));

  const SafetensorsFile corpus(args.str("corpus"));
  std::vector<int64_t> ids = corpus.read_int64("input_ids");
  const int64_t limit = args.integer("tokens", static_cast<int64_t>(ids.size()), 1);
  ids.resize(static_cast<size_t>(std::min<int64_t>(limit, static_cast<int64_t>(ids.size()))));
  const int64_t n = static_cast<int64_t>(ids.size());
  const auto config = EngramConfig::load(args.str("config"));
  const int64_t layer_id = config.layer_ids.front();
  auto hasher = std::make_shared<const NgramHasher>(config, table.lookup(), layer_id);
  const int64_t cols = hasher->num_columns();

  t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> rows(static_cast<size_t>(n * cols));
  hasher->hash(ids, 1, n, rows);
  std::printf(
      "\n2. n-gram hashing (%s: %lld tokens, N=%lld, %lld heads, layer %lld)\n"
      "   %lld row ids in %.1f ms\n",
      args.str("corpus").c_str(), static_cast<long long>(n),
      static_cast<long long>(config.max_ngram_size),
      static_cast<long long>(config.n_head_per_ngram), static_cast<long long>(layer_id),
      static_cast<long long>(n * cols), 1e3 * seconds_since(t0));

  // Most frequent bigrams (by compressed ids): every occurrence hashes to the same rows.
  std::map<std::pair<int64_t, int64_t>, int64_t> bigrams;
  std::map<std::pair<int64_t, int64_t>, int64_t> first_position;
  for (int64_t t = 1; t < n; ++t) {
    const auto key = std::make_pair(table[ids[t - 1]], table[ids[t]]);
    if (++bigrams[key] == 1) first_position[key] = t;
  }
  std::vector<std::pair<int64_t, std::pair<int64_t, int64_t>>> ranked;
  for (const auto& [key, count] : bigrams) ranked.push_back({count, key});
  std::sort(ranked.rbegin(), ranked.rend());
  // Columns 0..H-1 are the 2-gram heads (orders outer, heads inner): show up to three of them.
  const int64_t shown = std::min<int64_t>(3, config.n_head_per_ngram);
  std::printf("   most frequent bigrams and their 2-gram rows (head 0..%lld of %lld):\n",
              static_cast<long long>(shown - 1), static_cast<long long>(config.n_head_per_ngram));
  for (size_t i = 0; i < std::min<size_t>(5, ranked.size()); ++i) {
    const int64_t t = first_position[ranked[i].second];
    std::string text;
    for (char c : tokenizer.decode({ids.data() + t - 1, 2}))
      text += c == '\n' ? std::string("\\n") : std::string(1, c);
    std::printf("   %8lld x %-18s -> rows", static_cast<long long>(ranked[i].first),
                ("\"" + text + "\"").c_str());
    for (int64_t head = 0; head < shown; ++head)
      std::printf(" %lld", static_cast<long long>(rows[t * cols + head]));
    std::printf("\n");
  }
  // How concentrated the accesses are (what a hot-row cache can exploit), for head 0 of order 2.
  std::map<int64_t, int64_t> row_hits;
  for (int64_t t = 0; t < n; ++t) ++row_hits[rows[t * cols]];
  std::vector<int64_t> hits;
  for (const auto& [row, count] : row_hits) hits.push_back(count);
  std::sort(hits.rbegin(), hits.rend());
  const int64_t top = std::max<int64_t>(1, hasher->primes()[0] / 100);
  int64_t top_hits = 0;
  for (int64_t i = 0; i < std::min<int64_t>(top, static_cast<int64_t>(hits.size())); ++i)
    top_hits += hits[static_cast<size_t>(i)];
  std::printf(
      "   2-gram head 0: %zu of %lld rows touched; the hottest 1%% of rows take %.1f%% of "
      "lookups\n",
      hits.size(), static_cast<long long>(hasher->primes()[0]),
      100.0 * static_cast<double>(top_hits) / static_cast<double>(n));

  const std::string cache_dir =
      args.str("cache-dir", (std::filesystem::temp_directory_path() / "engram-demo").string());
  const std::string path = example::cached_random_checkpoint(cache_dir, config, hasher->primes(),
                                                             layer_id, example::TableDtype::kF32);
  const auto layer =
      EngramLayer::load(config, std::make_shared<const SafetensorsFile>(path), hasher);
  const int64_t layer_tokens = std::min(args.integer("layer-tokens", 262144, 1), n);
  const int64_t width = config.hc_mult * config.hidden_size,
                seq = std::min<int64_t>(2048, layer_tokens);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> hidden(static_cast<size_t>(seq * width)), out(hidden.size());
  for (auto& h : hidden) h = normal(rng);
  EngramLayer::Workspace ws;
  t0 = std::chrono::steady_clock::now();
  double checksum = 0;
  int64_t done = 0;
  for (int64_t start = 0; start + seq <= layer_tokens; start += seq, done += seq) {
    layer.forward_tokens(std::span<const int64_t>(ids.data() + start, seq), hidden, 1, seq, out,
                         ws);
    checksum += out[static_cast<size_t>(start % (seq * width))];
  }
  const double secs = seconds_since(t0);
  std::printf(
      "\n3. Engram layer (demo variant, hidden %lld x %lld branches, random weights, f32)\n"
      "   %lld tokens in sequences of %lld: %.2f s, %.0f tokens/s (checksum %.6f)\n",
      static_cast<long long>(config.hidden_size), static_cast<long long>(config.hc_mult),
      static_cast<long long>(done), static_cast<long long>(seq), secs,
      static_cast<double>(done) / secs, checksum);

  // Incremental decoding reproduces the whole-sequence output.
  const int64_t check = std::min<int64_t>(256, seq);  // hidden holds seq rows
  std::vector<float> whole(static_cast<size_t>(check * width)), step(whole.size());
  layer.forward_tokens(std::span<const int64_t>(ids.data(), check),
                       std::span<const float>(hidden.data(), whole.size()), 1, check, whole, ws);
  auto state = layer.make_state();
  EngramLayer::State* states[] = {&state};
  for (int64_t t = 0; t < check; ++t)
    layer.forward_tokens(std::span<const int64_t>(ids.data() + t, 1),
                         std::span<const float>(hidden.data() + t * width, width), 1, 1,
                         std::span<float>(step.data() + t * width, width), states, ws);
  float max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < whole.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(whole[i] - step[i]));
    max_abs = std::max(max_abs, std::abs(whole[i]));
  }
  const double relative = max_abs > 0 ? max_diff / max_abs : max_diff;
  std::printf(
      "   token-by-token decoding of the first %lld tokens vs whole sequence: "
      "max |diff| %.2e of max |out| %.2f, relative %.2e (bound %.0e)\n",
      static_cast<long long>(check), max_diff, max_abs, relative, kDemoDecodeTolerance);
  ENGRAM_CHECK(relative <= kDemoDecodeTolerance, "demo: token-by-token decoding of the first ",
               check, " tokens differs from the whole sequence: relative max |diff| ", relative,
               ", expected at most ", kDemoDecodeTolerance);
  std::printf("demo: all checks passed\n");
  return 0;
}

struct Command {
  const char* name;
  std::string usage;
  std::function<int(int, char**)> run;
};

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"compress-vocab", "compress-vocab TOKENIZER_JSON -o OUT.safetensors", compress_vocab},
      {"info", kModelInfoUsage, model_info},
      {"hash",
       "hash --config CFG.json --lookup LOOKUP.safetensors [--layer L] --input IN.safetensors "
       "-o OUT.safetensors\n  engram " +
           std::string(kModelHashUsage),
       [](int argc, char** argv) {
         return has_model_option(argc, argv, 2) ? model_hash(argc, argv) : hash(argc, argv);
       }},
      {"forward",
       "forward --config CFG.json --lookup LOOKUP.safetensors --weights W.safetensors [--prefix P] "
       "[--layer L] [--chunk K] [--table URI [--cache-mb M]] [--bf16-projection] [--bf16-compute] "
       "--input IN.safetensors -o OUT.safetensors\n  engram " +
           std::string(kModelForwardUsage),
       [](int argc, char** argv) {
         return has_model_option(argc, argv, 2) ? model_forward(argc, argv) : forward(argc, argv);
       }},
      {"backward", kBackwardUsage, backward_command},
      {"pack",
       "pack --config CFG.json --lookup LOOKUP.safetensors --weights W.safetensors [--prefix P] "
       "[--layer L] --codec f32|bf16|f16|fp8 -o TABLE.engram [--max-mb-per-s R]  |  pack --model "
       "DIR [--layer L] -o TABLE.engram",
       pack},
      {"bench-offload",
       "bench-offload --corpus TOKENS.safetensors --lookup LOOKUP.safetensors --table-rows R "
       "--cache-mb M --table-dir DIR [--codec bf16|f32] [--no-prefetch] [--tokens N] [--threads T] "
       "[--backbone-tokens-per-s R] [--find-sustained [--max-steps S]] [--probe PROBE.json]",
       bench_offload},
      {"push",
       "push --table TABLE.engram --to memcached://HOST:PORT[,HOST:PORT...] [--chunk-pages N]",
       push},
      {"bench",
       "bench --config CFG.json --lookup LOOKUP.safetensors [--batch B] [--seqlen T] [--threads N] "
       "[--dtype f32|bf16|bf16-native] [--layer L] [--reps R] [--cache-dir DIR] "
       "[--probe PROBE.json] [--profile]\n  engram bench --model DIR [--lookup LOOKUP.safetensors] "
       "[--layer L] [--batch B] [--seqlen T] [--threads N] [--reps R] [--probe PROBE.json] "
       "[--profile]",
       bench},
      {"probe",
       "probe [--threads N] [--memory-mb M] [--dir DIR [--file-mb F] [--io-seconds S]] "
       "[-o PROBE.json]",
       probe},
      {"demo",
       "demo --tokenizer TOKENIZER_JSON --corpus TOKENS.safetensors --config CFG.json [--tokens N] "
       "[--layer-tokens N] [--cache-dir DIR]",
       demo},
      {"train", std::string("train ") + engram::example::kTrainSynopsis,
       [](int argc, char** argv) { return engram::example::run_train(argc, argv, 2); }},
  };
  return list;
}

void print_usage(std::FILE* out) {
  std::fprintf(out, "usage: engram <command> [options]\ncommands:\n");
  for (const auto& c : commands()) std::fprintf(out, "  engram %s\n", c.usage.c_str());
}

}  // namespace
}  // namespace engram::cli

int main(int argc, char** argv) {
  using namespace engram::cli;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  for (const auto& c : commands()) {
    if (name != c.name) continue;
    for (int i = 2; i < argc; ++i) {
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::printf("usage: engram %s\n", c.usage.c_str());
        return 0;
      }
    }
    try {
      return c.run(argc, argv);
    } catch (const UsageError& e) {
      std::fprintf(stderr, "engram: usage: %s\nusage: engram %s\n", e.what(), c.usage.c_str());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "engram: error: %s\n", e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "engram: usage: unknown command '%s'\n", name.c_str());
  print_usage(stderr);
  return 2;
}
