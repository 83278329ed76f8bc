// Memory tier throughput on a packed table of a few GB (created once, reused):
//   BM_DirectIOUring/qd     uniform random rows through io_uring + O_DIRECT at queue depth qd
//   BM_DirectIOPread/t      the same through the pread fallback with t threads
//   BM_CachedZipf/qd        Zipf(1.0) rows through a TinyLFU cache (256 MiB) over DirectIO
//   BM_PrefetchOverlap      async prefetch of batch i + 1 while batch i is "computed"
// Batches are max(1024, 16 x qd) rows (a 64-token prefill chunk of 16 columns is 1024).
// Counters: items = rows/s, bytes = bytes read from the medium/s, pages_per_s = 4 KiB reads/s
// (compare with fio's random-read IOPS at the same queue depth: bench/memory/tiers/fio_compare.sh).
// O_DIRECT keeps the page cache out; describe() of the tier is printed as the benchmark label.
//
// Environment: ENGRAM_BENCH_DIR (default /var/tmp/engram-bench), ENGRAM_BENCH_GB (default 4).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_table.hpp"
#include "engram/memory/tiers/cached_tier.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/prefetch.hpp"
#include "memory/tiers/tier_test_support.hpp"

namespace engram {
namespace {

constexpr int64_t kBatchRows = 1024;  // one fetch: 64 tokens x 16 columns

// The bench table: ENGRAM_BENCH_GB (default 4) of pseudo-random FP8 rows, packed once.
const std::string& bench_table() {
  static const std::string path = [] {
    const char* gb_env = std::getenv("ENGRAM_BENCH_GB");
    const double gb = gb_env != nullptr ? std::atof(gb_env) : 4.0;
    char name[64];
    std::snprintf(name, sizeof name, "bench_%.1fGB_fp8_d512.engram", gb);
    return bench::packed_table(name, gb * 1e9);
  }();
  return path;
}

using bench::uniform_ids;

template <class Tier>
void run_fetches(benchmark::State& state, Tier& tier, const std::vector<int64_t>& pool,
                 int64_t batch_rows) {
  std::vector<std::byte> out(static_cast<size_t>(batch_rows * tier.row_bytes()));
  size_t cursor = 0;
  FetchReport total;
  for (auto _ : state) {
    if (cursor + static_cast<size_t>(batch_rows) > pool.size()) cursor = 0;
    total += tier.fetch(
        std::span<const int64_t>(pool.data() + cursor, static_cast<size_t>(batch_rows)), out);
    cursor += static_cast<size_t>(batch_rows);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(total.rows);
  state.SetBytesProcessed(total.bytes_read + total.rows * 8);
  state.counters["pages_per_s"] =
      benchmark::Counter(static_cast<double>(total.pages_read), benchmark::Counter::kIsRate);
  state.counters["rows_per_page_read"] =
      total.pages_read > 0 ? static_cast<double>(total.rows_from_storage) / total.pages_read : 0;
}

void BM_DirectIOUring(benchmark::State& state) {
  DirectIOOptions options;
  options.reader.backend = PageReaderOptions::Backend::kUring;
  options.reader.queue_depth = static_cast<int>(state.range(0));
  std::unique_ptr<DirectIOTier> tier;
  try {
    tier = std::make_unique<DirectIOTier>(bench_table(), options);
  } catch (const Error& e) {
    state.SkipWithError(e.what());
    return;
  }
  const auto pool = uniform_ids(tier->num_rows(), 1 << 20);
  state.SetLabel(tier->describe());
  // Each fetch drains the queue at its end; 16 x qd rows per batch keep that tail under ~6 %.
  run_fetches(state, *tier, pool, std::max<int64_t>(kBatchRows, 16 * state.range(0)));
}
BENCHMARK(BM_DirectIOUring)->RangeMultiplier(2)->Range(1, 256)->UseRealTime()->MinTime(2.0);

void BM_DirectIOPread(benchmark::State& state) {
  DirectIOOptions options;
  options.reader.backend = PageReaderOptions::Backend::kPread;
  options.reader.pread_threads = static_cast<int>(state.range(0));
  DirectIOTier tier(bench_table(), options);
  const auto pool = uniform_ids(tier.num_rows(), 1 << 20);
  state.SetLabel(tier.describe());
  run_fetches(state, tier, pool, std::max<int64_t>(kBatchRows, 16 * state.range(0)));
}
BENCHMARK(BM_DirectIOPread)->RangeMultiplier(4)->Range(1, 64)->UseRealTime()->MinTime(2.0);

void BM_CachedZipf(benchmark::State& state) {
  DirectIOOptions io;
  io.reader.queue_depth = static_cast<int>(state.range(0));
  CacheOptions cache;
  cache.capacity_bytes = int64_t{256} << 20;
  CachedTier<DirectIOTier> tier(cache, bench_table(), io);
  test::ZipfIds zipf(tier.num_rows(), 1.0, 3);
  std::vector<int64_t> pool(1 << 21);
  for (auto& id : pool) id = zipf();
  std::vector<std::byte> out(static_cast<size_t>(kBatchRows * tier.row_bytes()));
  for (size_t i = 0; i + kBatchRows <= pool.size() / 2; i += kBatchRows)  // warm the cache
    tier.fetch(std::span<const int64_t>(pool.data() + i, kBatchRows), out);
  const CacheStats warm = tier.stats();
  state.SetLabel(tier.describe());
  run_fetches(state, tier, pool, kBatchRows);
  const CacheStats s = tier.stats();
  state.counters["hit_rate"] = static_cast<double>(s.hits - warm.hits) /
                               static_cast<double>(s.hits + s.misses - warm.hits - warm.misses);
}
BENCHMARK(BM_CachedZipf)->Arg(32)->Arg(128)->UseRealTime()->MinTime(2.0);

// Batch i + 1 is fetched while batch i is "computed" (a sleep of compute_us): with the async policy
// the wall time per batch approaches max(fetch, compute) instead of fetch + compute.
template <class Policy>
void BM_PrefetchOverlap(benchmark::State& state) {
  DirectIOOptions options;
  options.reader.queue_depth = 128;
  DirectIOTier tier(bench_table(), options);
  const auto pool = uniform_ids(tier.num_rows(), 1 << 20);
  const auto compute = std::chrono::microseconds(state.range(0));
  PrefetcherT<DirectIOTier, Policy> prefetcher(tier, {.max_batch_rows = kBatchRows});
  size_t cursor = 0;
  auto next_ids = [&] {
    if (cursor + kBatchRows > pool.size()) cursor = 0;
    cursor += kBatchRows;
    return std::span<const int64_t>(pool.data() + cursor - kBatchRows, kBatchRows);
  };
  auto ticket = prefetcher.submit(next_ids());
  int64_t rows = 0;
  for (auto _ : state) {
    auto next = prefetcher.submit(next_ids());
    {
      auto batch = prefetcher.wait(ticket);
      benchmark::DoNotOptimize(batch.rows().data());
      std::this_thread::sleep_for(compute);  // the transformer blocks before the Engram layer
      rows += batch.size();
    }
    ticket = next;
  }
  prefetcher.wait(ticket);
  state.SetItemsProcessed(rows);
  const PrefetchStats s = prefetcher.stats();
  state.counters["fetch_ms_per_batch"] = 1e3 * s.fetch_seconds / static_cast<double>(s.batches);
  state.counters["blocked_ms_per_batch"] = 1e3 * s.wait_seconds / static_cast<double>(s.batches);
  state.SetLabel(std::string(Policy::kName));
}
BENCHMARK_TEMPLATE(BM_PrefetchOverlap, prefetch::Synchronous)->Arg(20000)->UseRealTime();
BENCHMARK_TEMPLATE(BM_PrefetchOverlap, prefetch::Asynchronous)->Arg(20000)->UseRealTime();

}  // namespace
}  // namespace engram
