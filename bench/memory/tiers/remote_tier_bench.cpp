// Remote tier throughput: uniform random rows of one packed table (fused FP8 rows of 528 bytes, 7
// per 4 KiB page, 16 columns) through
//   BM_Remote/B        the memcached pool in front of the file (RemoteWithFallback): one batched
//                      multi-get of the batch's distinct pages, spread over 3 loopback servers
//   BM_DirectIO/B      the same table read with O_DIRECT (io_uring, else pread threads)
// at batch sizes B = 1 .. 2048 rows. Counters: items = rows/s, tokens_per_s = rows/s / 16 columns
// (a token of a 3-gram, 8-head layer needs 16 rows), bytes = bytes moved from the medium/s,
// fallback_rows = rows the pool missed (0 when the push succeeded); for BM_Remote also
// loopback_limit = the rows/s TCP over loopback allows at this batch size (one round trip per batch
// plus the bytes moved at one connection's streaming rate, both measured at start-up:
// loopback_limits.hpp) and of_loopback = rows/s as a fraction of it.
// The pool: 3 `memcached -M -m 256 -t 2` servers on loopback ports, started by the benchmark
// (skipped when the memcached binary is missing); the table is pushed once per run.
//
// Environment: ENGRAM_BENCH_DIR (default /var/tmp/engram-bench), ENGRAM_REMOTE_BENCH_MB (table
// size, default 256).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_table.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/memcached_store.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/remote_tier.hpp"
#include "loopback_limits.hpp"
#include "memory/tiers/memcached_pool.hpp"
#include "memory/tiers/tier_test_support.hpp"

namespace engram {
namespace {

using bench::kColumns;

const std::string& bench_table() {
  static const std::string path = [] {
    const char* mb_env = std::getenv("ENGRAM_REMOTE_BENCH_MB");
    const int64_t mb = mb_env != nullptr ? std::atoll(mb_env) : 256;
    return bench::packed_table("remote_" + std::to_string(mb) + "MB_fp8_d512.engram", mb * 1e6);
  }();
  return path;
}

// The pool, started and filled once (nullptr when memcached is missing).
struct Pool {
  std::unique_ptr<test::MemcachedPool> servers;
  MemcachedUri uri;
};
Pool& pool() {
  static Pool p = [] {
    Pool out;
    const std::string binary = test::memcached_binary();
    if (binary.empty()) return out;
    out.servers = std::make_unique<test::MemcachedPool>(binary, 3, 256);
    for (size_t i = 0; i < out.servers->size(); ++i)
      out.uri.servers.push_back({"127.0.0.1", out.servers->server(i).port()});
    out.uri.fallback = bench_table();
    const PackedTableFile file(bench_table());
    MemcachedStore store(out.uri.servers, out.uri.options);
    const PushReport r = push_table(file, store);
    std::fprintf(stderr, "pushed %lld pages (%.0f MB) to %s in %.2f s (%.0f MB/s, verified)\n",
                 static_cast<long long>(r.pages), static_cast<double>(r.bytes) / 1e6,
                 store.describe().c_str(), r.seconds,
                 static_cast<double>(r.bytes) / 1e6 / r.seconds);
    return out;
  }();
  return p;
}

using bench::uniform_ids;

/// limits: also report the fraction of what loopback allows (remote tiers).
template <class Tier>
void run_fetches(benchmark::State& state, Tier& tier,
                 const bench::LoopbackLimits* limits = nullptr) {
  const int64_t batch = state.range(0);
  const std::vector<int64_t> ids = uniform_ids(tier.num_rows(), 1 << 20);
  std::vector<std::byte> out(static_cast<size_t>(batch * tier.row_bytes()));
  size_t cursor = 0;
  FetchReport total;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    if (cursor + static_cast<size_t>(batch) > ids.size()) cursor = 0;
    total +=
        tier.fetch(std::span<const int64_t>(ids.data() + cursor, static_cast<size_t>(batch)), out);
    cursor += static_cast<size_t>(batch);
    benchmark::DoNotOptimize(out.data());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  state.SetItemsProcessed(total.rows);
  state.SetBytesProcessed(total.bytes_read);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(total.rows) / kColumns, benchmark::Counter::kIsRate);
  state.counters["fallback_rows"] = static_cast<double>(total.rows_from_fallback);
  if (limits != nullptr && total.rows > 0) {
    const double limit = limits->limit_rows_per_s(static_cast<double>(total.rows),
                                                  static_cast<double>(total.bytes_read),
                                                  static_cast<double>(state.iterations()));
    state.counters["loopback_limit"] = limit;
    state.counters["of_loopback"] = static_cast<double>(total.rows) / seconds / limit;
  }
  state.SetLabel(tier.describe().substr(0, 60));
}

void BM_Remote(benchmark::State& state) {
  Pool& p = pool();
  if (!p.servers) {
    state.SkipWithError("memcached binary not found");
    for (auto _ : state) {
    }
    return;
  }
  static std::unique_ptr<RemoteWithFallback> tier = open_remote_with_fallback(p.uri);
  static const bench::LoopbackLimits& limits = []() -> const bench::LoopbackLimits& {
    const auto& l = bench::loopback_limits();
    std::fprintf(stderr,
                 "loopback: round trip %.1f us (median of 2000), one connection %.2f GB/s\n",
                 l.round_trip_s * 1e6, l.bytes_per_s / 1e9);
    return l;
  }();
  run_fetches(state, *tier, &limits);
}

void BM_DirectIO(benchmark::State& state) {
  static DirectIOTier tier(bench_table());
  run_fetches(state, tier);
}

BENCHMARK(BM_Remote)->RangeMultiplier(4)->Range(1, 2048)->UseRealTime();
BENCHMARK(BM_DirectIO)->RangeMultiplier(4)->Range(1, 2048)->UseRealTime();

}  // namespace
}  // namespace engram
