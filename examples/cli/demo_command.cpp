// cli/demo_command.cpp: `engram demo`, the README's walk-through: compress the tokenizer's
// vocabulary, hash the corpus (all of it unless --tokens), then run an Engram layer (random
// weights) over its first --layer-tokens (262,144), printing what a person can check: the
// compression, the most frequent bigrams with the rows they hash to, how Zipfian the row accesses
// are, the throughput, and that token-by-token decoding reproduces the whole-sequence output (an
// error, exit status 1, when it does not).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/tokenizer/vocab_compressor.hpp"
#include "random_checkpoint.hpp"

namespace engram::cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Bound of the demo's decoding check: max |token by token - whole sequence| / max |whole|, the
/// bound of the chunked == whole layer tests (tests/layer/engram_layer_test.cpp).
constexpr double kDemoDecodeTolerance = 1e-5;

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

}  // namespace

Command demo_command() {
  return {"demo",
          "the README walk-through: compression, hashing, a layer, decoding",
          "demo --tokenizer TOKENIZER_JSON --corpus TOKENS.safetensors --config CFG.json "
          "[--tokens N] [--layer-tokens N] [--cache-dir DIR]",
          "  --tokenizer TOKENIZER_JSON   the tokenizer whose vocabulary is compressed\n"
          "  --corpus TOKENS.safetensors  input_ids of a corpus\n"
          "  --config CFG.json            the Engram config (its first layer id)\n"
          "  --tokens N                   hash only the first N tokens\n"
          "  --layer-tokens N             run the layer over the first N tokens (262144)\n"
          "  --cache-dir DIR              where the random checkpoint is kept between runs\n",
          "demo --tokenizer tests/data/tokenizer/deepseek_v3/tokenizer.json.gz --corpus "
          "data/kjv.dsv3.safetensors --config examples/demo_config.json",
          demo};
}

}  // namespace engram::cli
