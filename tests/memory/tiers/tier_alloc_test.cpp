// Steady-state fetches and prefetches allocate nothing: operator new is counted (all threads) while
// batches of the warmed-up size flow through each tier and through both prefetch policies.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "engram/memory/tiers/cached_tier.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/in_memory_tier.hpp"
#include "engram/memory/tiers/prefetch.hpp"
#include "memory/tiers/tier_test_support.hpp"

namespace {
std::atomic<int64_t> g_allocations{0};

void* counted_alloc(std::size_t size, std::size_t alignment) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  void* p = alignment <= alignof(std::max_align_t)
                ? std::malloc(size == 0 ? 1 : size)
                : std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t size) { return counted_alloc(size, 0); }
void* operator new[](std::size_t size) { return counted_alloc(size, 0); }
void* operator new(std::size_t size, std::align_val_t a) {
  return counted_alloc(size, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t size, std::align_val_t a) {
  return counted_alloc(size, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace engram {
namespace {

constexpr size_t kBatchRows = 256;

const test::TestTable& table() { return test::test_table(test::row_cases()[4]); }

// Batches of kBatchRows Zipfian ids; the first is all-distinct so that it sizes every scratch.
std::vector<std::vector<int64_t>> batches(int n) {
  const int64_t rows = table().num_rows();
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(n), std::vector<int64_t>(kBatchRows));
  for (size_t i = 0; i < kBatchRows; ++i) out[0][i] = static_cast<int64_t>(i * 31) % rows;
  test::ZipfIds zipf(rows, 1.0, 77);
  for (size_t b = 1; b < out.size(); ++b)
    for (auto& id : out[b]) id = zipf();
  return out;
}

template <class Tier>
int64_t allocations_in_steady_state(Tier& tier) {
  const auto ids = batches(60);
  std::vector<std::byte> out(kBatchRows * static_cast<size_t>(tier.row_bytes()));
  for (int b = 0; b < 10; ++b) tier.fetch(ids[static_cast<size_t>(b)], out);  // warm-up
  const int64_t before = g_allocations.load();
  for (size_t b = 10; b < ids.size(); ++b) tier.fetch(ids[b], out);
  return g_allocations.load() - before;
}

template <class Policy, class Tier>
int64_t prefetch_allocations_in_steady_state(Tier& tier) {
  const auto ids = batches(60);
  PrefetcherT<Tier, Policy> prefetcher(tier, {.max_batch_rows = kBatchRows});
  int64_t before = 0;
  auto previous = prefetcher.submit(ids[0]);
  for (size_t b = 1; b < ids.size(); ++b) {
    if (b == 10) before = g_allocations.load();
    auto next = prefetcher.submit(ids[b]);
    { auto batch = prefetcher.wait(previous); }
    previous = next;
  }
  { auto batch = prefetcher.wait(previous); }
  return g_allocations.load() - before;
}

DirectIOOptions io(PageReaderOptions::Backend backend) {
  DirectIOOptions options;
  options.reader.backend = backend;
  options.reader.queue_depth = 32;
  options.reader.pread_threads = 4;
  return options;
}

TEST(TierAllocations, CountingWorks) {
  const int64_t before = g_allocations.load();
  auto* p = new std::vector<int>(100);
  delete p;
  EXPECT_EQ(g_allocations.load() - before, 2);  // the vector and its buffer
}

TEST(TierAllocations, InMemoryTier) {
  InMemoryTier tier(table().rows, table().row_bytes());
  EXPECT_EQ(allocations_in_steady_state(tier), 0);
}

TEST(TierAllocations, CachedTier) {
  InMemoryTier memory(table().rows, table().row_bytes());
  CacheOptions options;
  options.capacity_bytes = 300 * table().row_bytes();
  CachedTier<InMemoryTier&> tier(options, memory);
  EXPECT_EQ(allocations_in_steady_state(tier), 0);
}

TEST(TierAllocations, DirectIOTierEveryBackend) {
  for (auto backend : {PageReaderOptions::Backend::kAuto, PageReaderOptions::Backend::kPread}) {
    DirectIOTier tier(table().packed_path, io(backend));
    SCOPED_TRACE(tier.describe());
    EXPECT_EQ(allocations_in_steady_state(tier), 0);
  }
}

TEST(TierAllocations, PrefetchBothPolicies) {
  CacheOptions options;
  options.capacity_bytes = 300 * table().row_bytes();
  CachedTier<DirectIOTier> tier(options, table().packed_path,
                                io(PageReaderOptions::Backend::kAuto));
  EXPECT_EQ(prefetch_allocations_in_steady_state<prefetch::Asynchronous>(tier), 0);
  EXPECT_EQ(prefetch_allocations_in_steady_state<prefetch::Synchronous>(tier), 0);
}

}  // namespace
}  // namespace engram
