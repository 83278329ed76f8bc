// CachedTier accounting and policy: exact hits / misses / admissions / rejections / evictions on
// scripted access patterns (SLRU promotion and demotion, TinyLFU admission), the capacity bound,
// frequency-aware admission beating plain SLRU on a Zipfian stream polluted by one-off rows, and
// failed inner batches that leave the cache untouched.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "engram/memory/tiers/cached_tier.hpp"
#include "engram/memory/tiers/in_memory_tier.hpp"
#include "memory/tiers/tier_test_support.hpp"

namespace engram {
namespace {

using test::TestTable;
using ::testing::HasSubstr;
using Counting = test::FaultyTier<InMemoryTier>;

const TestTable& table() { return test::test_table(test::row_cases()[2]); }  // 340-byte rows

struct Step {
  std::vector<int64_t> ids;
  int64_t hits;  // expected hits of this batch
};

// Runs a script, checking every batch's rows and hit count.
template <class Cache>
void run_script(Cache& cache, const std::vector<Step>& script) {
  const TestTable& t = table();
  for (size_t s = 0; s < script.size(); ++s) {
    SCOPED_TRACE("step " + std::to_string(s + 1));
    const Step& step = script[s];
    std::vector<std::byte> out(step.ids.size() * static_cast<size_t>(t.row_bytes()));
    const FetchReport r = cache.fetch(step.ids, out);
    EXPECT_EQ(out, test::reference_rows(t, step.ids));
    EXPECT_EQ(r.rows, static_cast<int64_t>(step.ids.size()));
    EXPECT_EQ(r.rows_from_cache, step.hits);
  }
}

TEST(CachedTier, SegmentedLruScriptIsExact) {
  const TestTable& t = table();
  InMemoryTier memory(t.rows, t.row_bytes());
  CacheOptions options;
  options.capacity_bytes = 4 * t.row_bytes() + 100;  // 4 rows; the remainder is not used
  options.protected_fraction = 0.5;                  // 2 protected rows
  options.admission = false;
  CachedTier<Counting> cache(options, memory);
  ASSERT_EQ(cache.capacity_rows(), 4);
  // probation / protected lists are written most recently used first.
  run_script(cache, {
                        {{1}, 0},              // prob [1]
                        {{2}, 0},              // prob [2 1]
                        {{3}, 0},              // prob [3 2 1]
                        {{4}, 0},              // prob [4 3 2 1]            full
                        {{1}, 1},              // prot [1]      prob [4 3 2]
                        {{2}, 1},              // prot [2 1]    prob [4 3]
                        {{3}, 1},              // prot [3 2]    prob [1 4]  (1 demoted)
                        {{5}, 0},              // evict 4:      prob [5 1]
                        {{4}, 0},              // evict 1:      prob [4 5]
                        {{2, 2, 6, 6, 3}, 3},  // prot [3 2]; 6 fetched once, evicts 5: prob [6 4]
                    });
  const CacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 6);
  EXPECT_EQ(s.misses, 8);
  EXPECT_EQ(s.admissions, 7);
  EXPECT_EQ(s.rejections, 0);
  EXPECT_EQ(s.evictions, 3);
  EXPECT_EQ(s.resident_rows, 4);
  EXPECT_EQ(cache.inner().calls(), 7);
  EXPECT_EQ(cache.inner().rows_requested(), 7);  // the duplicated miss of row 6 fetched once
  for (int64_t id : {2, 3, 4, 6}) EXPECT_TRUE(cache.contains(id)) << id;
  for (int64_t id : {1, 5}) EXPECT_FALSE(cache.contains(id)) << id;
  EXPECT_DOUBLE_EQ(s.hit_rate(), 6.0 / 14.0);
}

TEST(CachedTier, TinyLfuAdmissionScriptIsExact) {
  const TestTable& t = table();
  InMemoryTier memory(t.rows, t.row_bytes());
  CacheOptions options;
  options.capacity_bytes = 2 * t.row_bytes();
  options.protected_fraction = 0.5;
  CachedTier<Counting> cache(options, memory);
  run_script(cache, {
                        {{10, 10, 10}, 0},  // f(10) = 3, admitted (room): prob [10]
                        {{20}, 0},          // f(20) = 1, admitted (room): prob [20 10]
                        {{30}, 0},          // f(30) = 1 <= f(10) = 3: rejected
                        {{30}, 0},          // f(30) = 2 <= 3: rejected
                        {{30, 30}, 0},      // f(30) = 4 > 3: evicts 10, prob [30 20]
                        {{20}, 1},          // hit, f(20) = 2: prot [20] prob [30]
                        {{40}, 0},          // f(40) = 1 <= f(30) = 4: rejected
                    });
  // The script's arithmetic assumes exact sketch counts for these keys (no collisions).
  ASSERT_EQ(cache.estimated_frequency(10), 3);
  ASSERT_EQ(cache.estimated_frequency(20), 2);
  ASSERT_EQ(cache.estimated_frequency(30), 4);
  ASSERT_EQ(cache.estimated_frequency(40), 1);
  const CacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.misses, 9);
  EXPECT_EQ(s.admissions, 3);
  EXPECT_EQ(s.rejections, 3);
  EXPECT_EQ(s.evictions, 1);
  EXPECT_EQ(s.resident_rows, 2);
  EXPECT_TRUE(cache.contains(20));
  EXPECT_TRUE(cache.contains(30));
  EXPECT_FALSE(cache.contains(10));
  EXPECT_FALSE(cache.contains(40));
}

TEST(CachedTier, CountersAndCapacityHoldOnZipfianStreams) {
  const TestTable& t = table();
  InMemoryTier memory(t.rows, t.row_bytes());
  for (bool admission : {true, false}) {
    for (int64_t capacity_rows : {1, 7, 100, 600}) {
      SCOPED_TRACE("admission " + std::to_string(admission) + ", capacity " +
                   std::to_string(capacity_rows));
      CacheOptions options;
      options.capacity_bytes = capacity_rows * t.row_bytes() + t.row_bytes() - 1;
      options.admission = admission;
      CachedTier<InMemoryTier&> cache(options, memory);
      test::ZipfIds zipf(t.num_rows(), 1.0, 11);
      int64_t lookups = 0, hits = 0;
      std::vector<std::byte> out;
      for (int batch = 0; batch < 60; ++batch) {
        std::vector<int64_t> ids(static_cast<size_t>(50 + batch * 7));
        for (auto& id : ids) id = zipf();
        out.resize(ids.size() * static_cast<size_t>(t.row_bytes()));
        const FetchReport r = cache.fetch(ids, out);
        ASSERT_EQ(out, test::reference_rows(t, ids));
        lookups += static_cast<int64_t>(ids.size());
        hits += r.rows_from_cache;
        const CacheStats s = cache.stats();
        ASSERT_LE(s.resident_rows, capacity_rows);
        ASSERT_EQ(s.capacity_rows, capacity_rows);
        ASSERT_EQ(s.hits + s.misses, lookups);
        ASSERT_EQ(s.hits, hits);
        ASSERT_EQ(s.admissions - s.evictions, s.resident_rows);
        if (!admission) {
          ASSERT_EQ(s.rejections, 0);
        }
      }
      EXPECT_EQ(cache.stats().resident_rows, capacity_rows);  // the stream has enough rows
    }
  }
}

// Zipfian lookups mixed with as many one-off rows (3-gram-like tail): TinyLFU keeps the hot rows,
// plain SLRU lets the one-off rows churn them. A clairvoyant static cache of the 400 most popular
// rows bounds what any policy can reach.
TEST(CachedTier, FrequencyAdmissionBeatsPlainSlruWithOneOffRows) {
  const TestTable& t = test::test_table(test::row_cases()[0]);  // 40000 rows of 4 bytes
  InMemoryTier memory(t.rows, t.row_bytes());
  constexpr int64_t kCapacity = 400;
  double hit_rate[2] = {}, oracle_rate = 0;
  for (bool admission : {false, true}) {
    CacheOptions options;
    options.capacity_bytes = kCapacity * t.row_bytes();  // 1 % of the table
    options.admission = admission;
    CachedTier<InMemoryTier&> cache(options, memory);
    test::ZipfIds zipf(20000, 1.0, 5);  // hot rows: ids of 20000 ranks
    std::set<int64_t> top;
    for (int64_t r = 0; r < kCapacity; ++r) top.insert(zipf.id_of_rank(r));
    int64_t one_off = 0;  // rows 20000..39999 in turn: each looked up once per 100 batches
    int64_t hot_lookups = 0, hot_hits = 0, oracle_hits = 0;
    std::vector<std::byte> out(400 * static_cast<size_t>(t.row_bytes()));
    for (int batch = 0; batch < 150; ++batch) {
      std::vector<int64_t> ids;
      for (int i = 0; i < 200; ++i) {
        ids.push_back(zipf());
        ids.push_back(20000 + one_off++ % 20000);
      }
      const CacheStats before = cache.stats();
      cache.fetch(ids, out);
      if (batch >= 50) {  // after warm-up; one-off rows can never hit
        hot_lookups += 200;
        hot_hits += cache.stats().hits - before.hits;
        for (size_t i = 0; i < ids.size(); i += 2) oracle_hits += top.count(ids[i]);
      }
    }
    hit_rate[admission] = static_cast<double>(hot_hits) / static_cast<double>(hot_lookups);
    oracle_rate = static_cast<double>(oracle_hits) / static_cast<double>(hot_lookups);
  }
  std::printf(
      "[ info     ] hot-row hit rate, 1%% cache: SLRU %.3f, TinyLFU + SLRU %.3f, "
      "static top-400 %.3f\n",
      hit_rate[0], hit_rate[1], oracle_rate);
  EXPECT_GT(hit_rate[1], hit_rate[0] + 0.02);
  EXPECT_GT(hit_rate[1], oracle_rate - 0.05);
}

TEST(CachedTier, FailedInnerBatchChangesNothing) {
  const TestTable& t = table();
  InMemoryTier memory(t.rows, t.row_bytes());
  CacheOptions options;
  options.capacity_bytes = 10 * t.row_bytes();
  CachedTier<Counting> cache(options, memory);
  cache.inner().poison_id = 99;
  std::vector<std::byte> out(3 * static_cast<size_t>(t.row_bytes()));
  const std::vector<int64_t> bad = {1, 2, 99};
  try {
    cache.fetch(bad, out);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("injected fault: poisoned row 99 in batch 0"));
  }
  CacheStats s = cache.stats();
  EXPECT_EQ(s.hits + s.misses + s.admissions + s.resident_rows, 0);
  EXPECT_FALSE(cache.contains(1));
  EXPECT_FALSE(cache.contains(2));

  cache.inner().poison_id = -1;
  const std::vector<int64_t> good = {1, 2, 1};
  const FetchReport r = cache.fetch(good, out);
  EXPECT_EQ(out, test::reference_rows(t, good));
  EXPECT_EQ(r.rows_from_cache, 0);
  s = cache.stats();
  EXPECT_EQ(s.misses, 3);
  EXPECT_EQ(s.admissions, 2);
}

TEST(CachedTier, ZeroCapacityIsAPassThrough) {
  const TestTable& t = table();
  InMemoryTier memory(t.rows, t.row_bytes());
  CacheOptions options;
  options.capacity_bytes = t.row_bytes() - 1;
  CachedTier<Counting> cache(options, memory);
  EXPECT_EQ(cache.capacity_rows(), 0);
  const std::vector<int64_t> ids = {4, 4, 5};
  std::vector<std::byte> out(3 * static_cast<size_t>(t.row_bytes()));
  for (int i = 0; i < 3; ++i) {
    cache.fetch(ids, out);
    EXPECT_EQ(out, test::reference_rows(t, ids));
  }
  const CacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 0);
  EXPECT_EQ(s.misses, 9);
  EXPECT_EQ(s.resident_rows, 0);
  EXPECT_EQ(cache.inner().rows_requested(), 6);
}

TEST(CachedTier, RejectsBadOptions) {
  const TestTable& t = table();
  InMemoryTier memory(t.rows, t.row_bytes());
  CacheOptions options;
  options.protected_fraction = 1.5;
  try {
    CachedTier<InMemoryTier&> cache(options, memory);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("protected_fraction must be in [0, 1], found 1.5"));
  }
}

TEST(CachedTier, DescribeNamesPolicyAndInner) {
  const TestTable& t = table();
  InMemoryTier memory(t.rows, t.row_bytes(), "table-x");
  CacheOptions options;
  options.capacity_bytes = 3 * t.row_bytes();
  CachedTier<InMemoryTier&> cache(options, memory);
  EXPECT_EQ(cache.describe(), "cache 3 rows (1020 bytes, TinyLFU + SLRU) over in-memory: table-x");
}

}  // namespace
}  // namespace engram
