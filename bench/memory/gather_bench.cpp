// Gather throughput per codec on a table far larger than the LLC: the official demo's sizes,
// 16 columns (N = 3, H = 8) x ~646,400 rows (the primes after 646,400) x 64 values per row
// (bf16: 1.3 GB, fp8: 0.68 GB + 21 MB of scales, f32: 2.6 GB), filled with realistic rows (N(0, 1)
// values encoded by the codec; FP8 scales near 2^-7, no subnormals).
//
// Args: dist, dedup, threads, tokens per call, huge (table on transparent huge pages), prefetch.
// dist: 0 = uniform random rows, 1 = Zipfian per column (exponent 1.02 for the order-2 columns,
// 0.87 for order-3, matching the repeat rate of real text: ~55% / ~78% distinct rows per
// 4096-token batch), 2 = real hash ids from a file (ENGRAM_BENCH_HASH_IDS=path.safetensors with
// I64/I32 "hash_ids" [..., 16] computed with these primes: bench/memory/gen_real_ids.py writes the
// KJV corpus through the reference hasher; reported as an error without it). Ids cycle over a pool
// of 32 batches so that a call does not find the previous call's rows in cache. BM_GatherWarm: an
// L2-resident table, i.e. the gather's own cost without DRAM misses.
//
// Counters: items = tokens; rows/s = gathered rows (tokens x 16); bytes/s = bytes the gather must
// read: rows x (row bytes + scale bytes) + ids; distinct = fraction of distinct rows per call.
// Compare with this machine's random-access limit (~36 M rows/s of 256 B rows on 2 threads).
// On a shared machine, compare cpu_time as well as real_time.
#include <sys/mman.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "engram/io/safetensors.hpp"
#include "engram/memory/embedding_table.hpp"

namespace engram {
namespace {

constexpr int64_t kRowDim = 64;
constexpr int64_t kPoolBatches = 32;
// the primes of the official config (engram_vocab_size 646,400 for orders 2 and 3, 8 heads each)
const std::vector<int64_t> kPrimes = {646403, 646411, 646421, 646423, 646433, 646453,
                                      646519, 646523, 646537, 646543, 646549, 646571,
                                      646573, 646577, 646609, 646619};
const auto kColumns = static_cast<int64_t>(kPrimes.size());

// Anonymous mapping, optionally on transparent huge pages.
class Mapping {
 public:
  Mapping(size_t bytes, bool huge) : size_(std::max<size_t>(bytes, 1)) {
    data_ = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data_ == MAP_FAILED) throw std::bad_alloc();
    if (huge) ::madvise(data_, size_, MADV_HUGEPAGE);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { ::munmap(data_, size_); }
  std::byte* data() const { return static_cast<std::byte*>(data_); }

 private:
  size_t size_;
  void* data_;
};

// Fills the table with realistic rows: 4096 rows of N(0, 1) values encoded by the codec, tiled (so
// that FP8 scales sit near 2^-7 as in checkpoints, and no value is subnormal).
template <class Codec>
void fill_realistic(std::byte* rows, std::byte* scales, int64_t total_rows) {
  constexpr int64_t kPattern = 4096;
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(kPattern * kRowDim);
  for (auto& v : values) v = normal(rng);
  const auto pattern = InMemoryTableT<Codec>::encode(values, kRowDim, {kPattern});
  const int64_t row_bytes = Codec::row_bytes(kRowDim), scale_bytes = Codec::scale_bytes(kRowDim);
  for (int64_t r = 0; r < total_rows; ++r) {
    std::memcpy(rows + r * row_bytes, pattern.row_storage().data() + (r % kPattern) * row_bytes,
                static_cast<size_t>(row_bytes));
    if (scale_bytes != 0)
      std::memcpy(scales + r * scale_bytes,
                  pattern.scale_storage().data() + (r % kPattern) * scale_bytes,
                  static_cast<size_t>(scale_bytes));
  }
}

// One table at a time (they are large): rebuilt when the codec or page size changes.
struct TableHolder {
  std::string key;
  std::unique_ptr<Mapping> rows, scales;
};
TableHolder g_table;

template <class Codec>
EmbeddingTableT<Codec> bench_table(bool huge) {
  const std::string key = std::string(Codec::kName) + (huge ? "/huge" : "/4k");
  const int64_t total = std::accumulate(kPrimes.begin(), kPrimes.end(), int64_t{0});
  const auto row_bytes = static_cast<size_t>(total * Codec::row_bytes(kRowDim));
  const auto scale_bytes = static_cast<size_t>(total * Codec::scale_bytes(kRowDim));
  if (g_table.key != key) {
    g_table = {};
    g_table.rows = std::make_unique<Mapping>(row_bytes, huge);
    g_table.scales = std::make_unique<Mapping>(scale_bytes, huge);
    fill_realistic<Codec>(g_table.rows->data(), g_table.scales->data(), total);
    g_table.key = key;
  }
  return EmbeddingTableT<Codec>(std::span<const std::byte>(g_table.rows->data(), row_bytes),
                                std::span<const std::byte>(g_table.scales->data(), scale_bytes),
                                kRowDim, kPrimes, "bench table");
}

// Inverse-CDF sampler of Zipf(exponent) ranks over [0, n).
class Zipf {
 public:
  Zipf(int64_t n, double exponent) : cdf_(static_cast<size_t>(n)) {
    double sum = 0;
    for (int64_t r = 0; r < n; ++r)
      cdf_[r] = sum += std::pow(static_cast<double>(r + 1), -exponent);
    for (auto& c : cdf_) c /= sum;
  }
  int64_t operator()(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    return std::min<int64_t>(static_cast<int64_t>(cdf_.size()) - 1,
                             std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

// Pools of kPoolBatches x tokens x kColumns ids; empty when the distribution is unavailable.
const std::vector<int64_t>& id_pool(int distribution, int64_t tokens) {
  static std::map<std::pair<int, int64_t>, std::vector<int64_t>> pools;
  auto& pool = pools[{distribution, tokens}];
  if (!pool.empty()) return pool;
  const int64_t n = kPoolBatches * tokens * kColumns;
  std::mt19937_64 rng(1234 + distribution);
  if (distribution == 0) {
    pool.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      pool[i] = static_cast<int64_t>(rng() % static_cast<uint64_t>(kPrimes[i % kColumns]));
  } else if (distribution == 1) {
    pool.resize(static_cast<size_t>(n));
    const Zipf order2(646400, 1.02), order3(646400, 0.87);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = i % kColumns;
      const int64_t rank = (c < kColumns / 2 ? order2 : order3)(rng);
      // scatter ranks over the column (an affine bijection mod the prime)
      pool[i] = (rank * 2654435761 + 977 * c) % kPrimes[c];  // < 2^53: no overflow
    }
  } else {
    const char* path = std::getenv("ENGRAM_BENCH_HASH_IDS");
    if (path == nullptr) return pool;
    SafetensorsFile file(path);
    auto ids = file.read_int64("hash_ids");
    ENGRAM_CHECK(static_cast<int64_t>(ids.size()) >= n, path, ": needs ", n, " hash ids, has ",
                 ids.size());
    ids.resize(static_cast<size_t>(n));
    pool = std::move(ids);
  }
  return pool;
}

double distinct_fraction(std::span<const int64_t> ids) {
  std::unordered_set<int64_t> seen;
  for (size_t i = 0; i < ids.size(); ++i)
    seen.insert((static_cast<int64_t>(i % kColumns) << 32) | ids[i]);
  return static_cast<double>(seen.size()) / static_cast<double>(ids.size());
}

// args: distribution, deduplicate, threads, tokens per call, huge pages, prefetch distance
template <class Codec, class Out, bool kReference = false>
void BM_Gather(benchmark::State& state) {
  const auto distribution = static_cast<int>(state.range(0));
  const GatherOptions options{state.range(1) != 0, static_cast<int>(state.range(5)),
                              static_cast<int>(state.range(2))};
  const int64_t tokens = state.range(3);
  const auto& pool = id_pool(distribution, tokens);
  if (pool.empty()) {
    state.SkipWithError("set ENGRAM_BENCH_HASH_IDS to a safetensors file of real hash ids");
    return;
  }
  const auto table = bench_table<Codec>(state.range(4) != 0);
  GatherWorkspace workspace;
  workspace.reserve(tokens * kColumns, options.threads);
  std::vector<Out> out(static_cast<size_t>(tokens * table.output_dim()));
  const auto batch = static_cast<size_t>(tokens * kColumns);
  int64_t next = 0;
  for (auto _ : state) {
    const std::span<const int64_t> ids(pool.data() + next * batch, batch);
    if constexpr (kReference) {
      table.gather_reference(ids, std::span<Out>(out));
    } else {
      table.gather(ids, std::span<Out>(out), workspace, options);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    next = (next + 1) % kPoolBatches;
  }
  const int64_t rows = state.iterations() * tokens * kColumns;
  state.SetItemsProcessed(state.iterations() * tokens);
  state.SetBytesProcessed(rows * (table.row_bytes() + table.scale_bytes() + 8));
  state.counters["rows/s"] =
      benchmark::Counter(static_cast<double>(rows), benchmark::Counter::kIsRate);
  state.counters["distinct"] = distinct_fraction(std::span<const int64_t>(pool.data(), batch));
}

// Warm cache: a 16 x 1,021-row table (0.1-0.3 MB, L2-resident), uniform ids: the gather's own cost
// (decode, copies, loop) without DRAM misses.
template <class Codec, class Out>
void BM_GatherWarm(benchmark::State& state) {
  const std::vector<int64_t> primes(kColumns, 1021);
  std::mt19937_64 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(kColumns * 1021 * kRowDim));
  for (auto& v : values) v = normal(rng);
  const auto storage = InMemoryTableT<Codec>::encode(values, kRowDim, primes);
  const auto table = storage.view();
  const int64_t tokens = state.range(1);
  std::vector<int64_t> ids(static_cast<size_t>(tokens * kColumns));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(rng() % 1021);
  std::vector<Out> out(static_cast<size_t>(tokens * table.output_dim()));
  GatherWorkspace workspace;
  const GatherOptions options{state.range(0) != 0, 16, 1};
  for (auto _ : state) {
    table.gather(ids, std::span<Out>(out), workspace, options);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const int64_t rows = state.iterations() * tokens * kColumns;
  state.SetItemsProcessed(state.iterations() * tokens);
  state.SetBytesProcessed(rows * (table.row_bytes() + table.scale_bytes() + 8));
  state.counters["rows/s"] =
      benchmark::Counter(static_cast<double>(rows), benchmark::Counter::kIsRate);
}

void warm_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dedup", "tokens"});
  b->Args({0, 64});
  b->Args({1, 64});
}

void main_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dist", "dedup", "threads", "tokens", "huge", "prefetch"});
  for (int dist : {0, 1, 2})
    for (int dedup : {0, 1})
      for (int threads : {1, 2}) b->Args({dist, dedup, threads, 4096, 0, 16});
  for (int dist : {0, 2})
    for (int threads : {1, 2}) b->Args({dist, 0, threads, 4096, 1, 16});  // huge pages
  b->Args({0, 0, 1, 64, 0, 16});  // small calls (64 tokens: out stays in L2)
  b->Args({2, 0, 1, 64, 0, 16});
  b->Args({2, 0, 1, 64, 1, 16});
  b->UseRealTime();
}

void prefetch_sweep(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dist", "dedup", "threads", "tokens", "huge", "prefetch"});
  for (int huge : {0, 1})
    for (int prefetch : {0, 4, 8, 16, 32}) b->Args({0, 0, 1, 4096, huge, prefetch});
  b->UseRealTime();
}

void bf16_out_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dist", "dedup", "threads", "tokens", "huge", "prefetch"});
  b->Args({0, 0, 1, 4096, 0, 16});
  b->Args({2, 0, 1, 4096, 0, 16});
  b->UseRealTime();
}

void reference_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dist", "dedup", "threads", "tokens", "huge", "prefetch"});
  b->Args({0, 0, 1, 4096, 0, 0});
  b->UseRealTime();
}

BENCHMARK_TEMPLATE(BM_GatherWarm, codec::F32, float)->Apply(warm_args);
BENCHMARK_TEMPLATE(BM_GatherWarm, codec::BF16, float)->Apply(warm_args);
BENCHMARK_TEMPLATE(BM_GatherWarm, codec::BF16, BFloat16)->Apply(warm_args);
BENCHMARK_TEMPLATE(BM_GatherWarm, codec::F16, float)->Apply(warm_args);
BENCHMARK_TEMPLATE(BM_GatherWarm, codec::Fp8E4M3, float)->Apply(warm_args);
BENCHMARK_TEMPLATE(BM_GatherWarm, codec::Fp8E4M3, BFloat16)->Apply(warm_args);
BENCHMARK_TEMPLATE(BM_Gather, codec::BF16, float)
    ->Apply(prefetch_sweep)
    ->Name("PrefetchSweep/bf16");
BENCHMARK_TEMPLATE(BM_Gather, codec::BF16, float)->Apply(main_args);
BENCHMARK_TEMPLATE(BM_Gather, codec::BF16, BFloat16)->Apply(bf16_out_args);
BENCHMARK_TEMPLATE(BM_Gather, codec::BF16, float, true)->Apply(reference_args);
BENCHMARK_TEMPLATE(BM_Gather, codec::F16, float)->Apply(main_args);
BENCHMARK_TEMPLATE(BM_Gather, codec::F16, float, true)->Apply(reference_args);
BENCHMARK_TEMPLATE(BM_Gather, codec::Fp8E4M3, float)
    ->Apply(prefetch_sweep)
    ->Name("PrefetchSweep/fp8_e4m3");
BENCHMARK_TEMPLATE(BM_Gather, codec::Fp8E4M3, float)->Apply(main_args);
BENCHMARK_TEMPLATE(BM_Gather, codec::Fp8E4M3, BFloat16)->Apply(bf16_out_args);
BENCHMARK_TEMPLATE(BM_Gather, codec::Fp8E4M3, float, true)->Apply(reference_args);
BENCHMARK_TEMPLATE(BM_Gather, codec::F32, float)->Apply(main_args);
BENCHMARK_TEMPLATE(BM_Gather, codec::F32, float, true)->Apply(reference_args);

}  // namespace
}  // namespace engram
