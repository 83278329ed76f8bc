// Engram layer throughput: the whole layer (prefill and decode shapes, both variants) and its
// components (stacked projection GEMM, gate pass, short conv, gather), at the paper demo's sizes:
// hidden 1024, hc_mult 4, N = 3, H = 8, 512 values per order (row_dim 64, memory width 1024),
// kernel 4. Fused: head_dim 64, quant_block 32, same N, H, d, hc. Weights are random.
//
// engram_vocab_size is ENGRAM_BENCH_TABLE_ROWS per order (default 65,536: 16 columns x ~65.5k rows
// x 64 x f32 = 268 MB, far above the LLC; the demo's 646,400 would be 2.6 GB); the columns hold the
// layer's primes, so the token-id benchmarks hash with the reference NgramHasher and the
// DeepSeek-V3 compression table (tests/data/hashing/dsv3_lookup.safetensors). Hash ids of the
// hash-id benchmarks are uniform random, token ids uniform over the vocabulary; both cycle over a
// pool of 8 batches so a call does not find the previous call's rows in cache.
//
// Threads: the second argument sets Eigen::setNbThreads (OpenMP build), used by the GEMM and the
// per-token passes. Counters: items = tokens; bytes = table rows read (tokens x 16 x row bytes) +
// ids; GFLOP/s = 2 x tokens x memory_dim x (hc + 1) x d (the projection) per second.
// Compare prefill with bench/torch_engram.py on the same shape (T = 2048).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "engram/hashing/ngram_hasher.hpp"
#include "engram/hashing/primes.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "engram/memory/embedding_table.hpp"

namespace engram {
namespace {

constexpr int64_t kHidden = 1024, kHc = 4, kN = 3, kHeads = 8, kRowDim = 64, kKernel = 4;
constexpr int64_t kColumns = (kN - 1) * kHeads;
constexpr int64_t kMemoryDim = kColumns * kRowDim;
constexpr int kPool = 8;

int64_t table_rows_per_column() {
  const char* env = std::getenv("ENGRAM_BENCH_TABLE_ROWS");
  return env ? std::max<int64_t>(16, std::atoll(env)) : 65536;
}

EngramConfig bench_config(Variant variant) {
  EngramConfig c;
  c.variant = variant;
  c.engram_vocab_size = {table_rows_per_column(), table_rows_per_column()};
  c.max_ngram_size = kN;
  c.n_embed_per_ngram = kHeads * kRowDim;
  c.n_head_per_ngram = kHeads;
  c.layer_ids = {1};
  c.kernel_size = kKernel;
  c.hidden_size = kHidden;
  c.hc_mult = kHc;
  c.head_dim = kRowDim;
  c.quant_block = 32;
  return c;
}

std::vector<float> random_vector(size_t n, uint32_t seed, float mean, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<int64_t> column_rows() {
  static const std::vector<int64_t> primes = engram_layer_primes(bench_config(Variant::kDemo), 1);
  return primes;
}

const std::vector<int64_t>& dsv3_lookup() {
  static const std::vector<int64_t> lookup =
      SafetensorsFile(std::string(ENGRAM_TEST_DATA_DIR) + "/hashing/dsv3_lookup.safetensors")
          .read_int64("lookup");
  return lookup;
}

std::shared_ptr<const NgramHasher> make_hasher(Variant variant) {
  return std::make_shared<const NgramHasher>(bench_config(variant), dsv3_lookup(), 1);
}

/// Table storage shared by all benchmarks of one codec (built once).
template <class Codec>
const InMemoryTableT<Codec>& table_storage() {
  static const auto storage = [] {
    InMemoryTableT<Codec> t(kRowDim, column_rows(), "bench table");
    std::mt19937 rng(5);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> row(kRowDim);
    for (int64_t r = 0; r < t.total_rows(); ++r) {
      for (auto& x : row) x = dist(rng);
      t.set_row(r, row);
    }
    return t;
  }();
  return storage;
}

const EngramLayer& demo_layer() {
  static const EngramLayer layer = [] {
    const float scale = 1.0f / std::sqrt(float(kMemoryDim));
    auto w = std::make_shared<EngramWeightsT<float>>(
        EngramWeightsT<float>{bench_config(Variant::kDemo),
                              nullptr,
                              table_storage<codec::F32>().view(),
                              random_vector((kHc + 1) * kHidden * kMemoryDim, 1, 0.0f, scale),
                              random_vector((kHc + 1) * kHidden, 2, 0.0f, 0.1f),
                              random_vector(kHc * kHidden, 3, 1.0f, 0.1f),
                              random_vector(kHc * kHidden, 4, 1.0f, 0.1f),
                              random_vector(kHc * kHidden * kKernel, 5, 0.0f, 0.5f),
                              random_vector(kHc * kHidden, 6, 1.0f, 0.1f),
                              {}});
    return EngramLayer(std::move(w), make_hasher(Variant::kDemo));
  }();
  return layer;
}

const FusedEngramLayer& fused_layer() {
  static const FusedEngramLayer layer = [] {
    const float scale = 1.0f / std::sqrt(float(kMemoryDim));
    auto w = std::make_shared<FusedEngramWeightsT<float>>(
        FusedEngramWeightsT<float>{bench_config(Variant::kFused),
                                   nullptr,
                                   table_storage<codec::Fp8E4M3>().view(),
                                   random_vector((kHc + 1) * kHidden * kMemoryDim, 7, 0.0f, scale),
                                   random_vector(kHc * kHidden, 8, 1.0f, 0.1f),
                                   random_vector(kHc * kHidden, 9, 1.0f, 0.1f),
                                   {}});
    return FusedEngramLayer(std::move(w), make_hasher(Variant::kFused));
  }();
  return layer;
}

/// kPool batches of random hash ids for `tokens` tokens.
std::vector<std::vector<int64_t>> hash_id_pool(int64_t tokens) {
  std::mt19937_64 rng(17);
  const auto rows = column_rows();
  std::vector<std::vector<int64_t>> pool(kPool, std::vector<int64_t>(tokens * kColumns));
  for (auto& ids : pool)
    for (size_t i = 0; i < ids.size(); ++i)
      ids[i] = static_cast<int64_t>(rng() % rows[i % kColumns]);
  return pool;
}

/// kPool batches of random token ids.
std::vector<std::vector<int64_t>> token_id_pool(int64_t tokens) {
  std::mt19937_64 rng(19);
  std::vector<std::vector<int64_t>> pool(kPool, std::vector<int64_t>(tokens));
  for (auto& ids : pool)
    for (auto& id : ids) id = static_cast<int64_t>(rng() % dsv3_lookup().size());
  return pool;
}

void set_counters(benchmark::State& state, int64_t tokens, int64_t row_bytes) {
  state.SetItemsProcessed(state.iterations() * tokens);
  state.SetBytesProcessed(state.iterations() * tokens * kColumns * (row_bytes + 8));
  state.counters["GFLOP/s"] = benchmark::Counter(
      double(state.iterations()) * 2.0 * tokens * kMemoryDim * (kHc + 1) * kHidden * 1e-9,
      benchmark::Counter::kIsRate);
}

struct ThreadScope {
  explicit ThreadScope(int threads) : saved(Eigen::nbThreads()) { Eigen::setNbThreads(threads); }
  ~ThreadScope() { Eigen::setNbThreads(saved); }
  int saved;
};

// ------------------------------------------------------------------ whole layer

/// args: tokens per sequence (T), threads. B = 1, whole sequence.
void BM_DemoPrefill(benchmark::State& state) {
  const int64_t T = state.range(0);
  ThreadScope threads(static_cast<int>(state.range(1)));
  const EngramLayer& layer = demo_layer();
  const auto pool = hash_id_pool(T);
  const auto hidden = random_vector(T * kHc * kHidden, 11, 0.0f, 1.0f);
  std::vector<float> out(hidden.size());
  EngramLayer::Workspace ws;
  layer.reserve(ws, T);
  int i = 0;
  for (auto _ : state) {
    layer.forward(pool[i++ % kPool], hidden, 1, T, out, ws);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, T, kRowDim * 4);
}
BENCHMARK(BM_DemoPrefill)
    ->ArgNames({"T", "threads"})
    ->Args({512, 1})
    ->Args({2048, 1})
    ->Args({2048, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// As BM_DemoPrefill from token ids (hashing included, as PyTorch's forward does).
void BM_DemoPrefillTokens(benchmark::State& state) {
  const int64_t T = state.range(0);
  ThreadScope threads(static_cast<int>(state.range(1)));
  const EngramLayer& layer = demo_layer();
  const auto pool = token_id_pool(T);
  const auto hidden = random_vector(T * kHc * kHidden, 11, 0.0f, 1.0f);
  std::vector<float> out(hidden.size());
  EngramLayer::Workspace ws;
  layer.reserve(ws, T);
  int i = 0;
  for (auto _ : state) {
    layer.forward_tokens(pool[i++ % kPool], hidden, 1, T, out, ws);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, T, kRowDim * 4);
}
BENCHMARK(BM_DemoPrefillTokens)
    ->ArgNames({"T", "threads"})
    ->Args({2048, 1})
    ->Args({2048, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// args: batch (B sequences, one token each), threads, from token ids (1) or hash ids (0).
/// Decode with per-sequence states.
void BM_DemoDecode(benchmark::State& state) {
  const int64_t B = state.range(0);
  ThreadScope threads(static_cast<int>(state.range(1)));
  const EngramLayer& layer = demo_layer();
  const auto pool = hash_id_pool(B);
  const auto hidden = random_vector(B * kHc * kHidden, 12, 0.0f, 1.0f);
  std::vector<float> out(hidden.size());
  std::vector<EngramDecodeState> states(B, layer.make_state());
  std::vector<EngramDecodeState*> ptrs;
  for (auto& s : states) ptrs.push_back(&s);
  EngramLayer::Workspace ws;
  layer.reserve(ws, B, B);
  const auto tokens = token_id_pool(B);
  const bool from_tokens = state.range(2) != 0;
  int i = 0;
  for (auto _ : state) {
    if (from_tokens)
      layer.forward_tokens(tokens[i % kPool], hidden, B, 1, out, ptrs, ws);
    else
      layer.forward(pool[i % kPool], hidden, B, 1, out, ptrs, ws);
    ++i;
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, B, kRowDim * 4);
}
BENCHMARK(BM_DemoDecode)
    ->ArgNames({"B", "threads", "tokens"})
    ->Args({1, 1, 0})
    ->Args({16, 1, 0})
    ->Args({64, 1, 0})
    ->Args({64, 2, 0})
    ->Args({64, 1, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_FusedPrefill(benchmark::State& state) {
  const int64_t T = state.range(0);
  ThreadScope threads(static_cast<int>(state.range(1)));
  const FusedEngramLayer& layer = fused_layer();
  const auto pool = hash_id_pool(T);
  const auto hidden = random_vector(T * kHc * kHidden, 13, 0.0f, 1.0f);
  std::vector<float> out(hidden.size());
  FusedEngramLayer::Workspace ws;
  layer.reserve(ws, T);
  int i = 0;
  for (auto _ : state) {
    layer.forward(pool[i++ % kPool], hidden, 1, T, out, ws);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, T, kRowDim + kRowDim / 32);
}
BENCHMARK(BM_FusedPrefill)
    ->ArgNames({"T", "threads"})
    ->Args({2048, 1})
    ->Args({2048, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_FusedDecode(benchmark::State& state) {
  const int64_t B = state.range(0);
  ThreadScope threads(static_cast<int>(state.range(1)));
  const FusedEngramLayer& layer = fused_layer();
  const auto pool = hash_id_pool(B);
  const auto hidden = random_vector(B * kHc * kHidden, 14, 0.0f, 1.0f);
  std::vector<float> out(hidden.size());
  FusedEngramLayer::Workspace ws;
  layer.reserve(ws, B);
  int i = 0;
  for (auto _ : state) {
    layer.forward(pool[i++ % kPool], hidden, B, 1, out, ws);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, B, kRowDim + kRowDim / 32);
}
BENCHMARK(BM_FusedDecode)
    ->ArgNames({"B", "threads"})
    ->Args({1, 1})
    ->Args({64, 1})
    ->Args({64, 2})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// ------------------------------------------------------------------ components

/// The stacked keys + value projection alone: [T, 1024] x [1024, 5120]. args: T, threads.
void BM_StackedProjection(benchmark::State& state) {
  const int64_t T = state.range(0);
  ThreadScope threads(static_cast<int>(state.range(1)));
  const LinearT<float>& projection = demo_layer().projection().scalar_weights();
  const auto e = random_vector(T * kMemoryDim, 15, 0.0f, 1.0f);
  std::vector<float> kv(T * projection.out_features());
  for (auto _ : state) {
    projection.forward(e.data(), T, kv.data(), false);
    benchmark::DoNotOptimize(kv.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * T);
  state.counters["GFLOP/s"] = benchmark::Counter(
      double(state.iterations()) * 2.0 * T * kMemoryDim * projection.out_features() * 1e-9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_StackedProjection)
    ->ArgNames({"T", "threads"})
    ->Args({2048, 1})
    ->Args({2048, 2})
    ->Args({64, 1})
    ->Args({256, 2})
    ->Args({32, 1})  // B = 32 decode
    ->Args({32, 2})
    ->Args({1, 1})  // B = 1 decode: one pass over the 21 MB of weights
    ->Args({1, 2})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

/// The same projection with bf16 weights (LinearBF16: half the weight bytes, f32 accumulation).
/// args: T, threads, native (1: Bf16Compute::kNative, x rounded to bf16 and vdpbf16ps where the
/// CPU has AVX512-BF16; label "native" when it ran, "exact" otherwise).
void BM_StackedProjectionBF16(benchmark::State& state) {
  const int64_t T = state.range(0);
  ThreadScope threads(static_cast<int>(state.range(1)));
  const LinearT<float>& f32 = demo_layer().projection().scalar_weights();
  std::vector<BFloat16> weight(f32.weight().size());
  detail::f32_to_bf16(f32.weight().data(), weight.data(), static_cast<int64_t>(weight.size()));
  const LinearBF16 projection(weight, f32.out_features(), f32.in_features(), {},
                              state.range(2) ? Bf16Compute::kNative : Bf16Compute::kExact);
  state.SetLabel(projection.native_bf16() ? "native" : "exact");
  const auto e = random_vector(T * kMemoryDim, 15, 0.0f, 1.0f);
  std::vector<float> kv(T * projection.out_features());
  for (auto _ : state) {
    projection.forward(e.data(), T, kv.data(), false);
    benchmark::DoNotOptimize(kv.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * T);
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(weight.size() * sizeof(BFloat16)));
  state.counters["GFLOP/s"] = benchmark::Counter(
      double(state.iterations()) * 2.0 * T * kMemoryDim * projection.out_features() * 1e-9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_StackedProjectionBF16)
    ->ArgNames({"T", "threads", "native"})
    ->ArgsProduct({{2048, 32, 1}, {2}, {0, 1}})
    ->Args({1, 1, 0})
    ->Args({1, 1, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

/// The demo gate + y + conv norms per token (one thread), as the layer's first per-token pass.
void BM_GatePass(benchmark::State& state) {
  const int64_t T = state.range(0);
  const EngramLayer& layer = demo_layer();
  const int64_t n = (kHc + 1) * kHidden, c = kHc * kHidden;
  const auto kv = random_vector(T * n, 16, 0.0f, 1.0f);
  const auto hidden = random_vector(T * c, 17, 0.0f, 1.0f);
  std::vector<float> y(T * c), normed(T * c);
  for (auto _ : state) {
    for (int64_t t = 0; t < T; ++t) {
      float alpha[kHc];
      layer.gate().forward(kv.data() + t * n, hidden.data() + t * c, alpha);
      const float* v = kv.data() + t * n + kHc * kHidden;
      for (int64_t i = 0; i < kHc; ++i)
        for (int64_t j = 0; j < kHidden; ++j) y[t * c + i * kHidden + j] = alpha[i] * v[j];
      layer.short_conv().normalize_scaled(v, alpha, normed.data() + t * c);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(normed.data());
  }
  state.SetItemsProcessed(state.iterations() * T);
  state.SetBytesProcessed(state.iterations() * T * (n + 3 * c) * 4);
}
BENCHMARK(BM_GatePass)->ArgName("T")->Arg(2048)->Unit(benchmark::kMillisecond);

/// The short conv + SiLU over time (one thread): T rows of hc * d channels, kernel 4, dilation 3.
void BM_ShortConvRows(benchmark::State& state) {
  const int64_t T = state.range(0);
  const ShortConvT<float>& conv = demo_layer().short_conv();
  const int64_t c = conv.channels(), h = conv.history_rows();
  const auto padded = random_vector((T + h) * c, 18, 0.0f, 1.0f);
  std::vector<float> out(T * c, 0.0f);
  for (auto _ : state) {
    for (int64_t t = 0; t < T; ++t)
      conv.convolve_row(padded.data() + (h + t) * c, c, out.data() + t * c, true);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * T);
  state.SetBytesProcessed(state.iterations() * T * c * 4 * 2);
}
BENCHMARK(BM_ShortConvRows)->ArgName("T")->Arg(2048)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace engram
