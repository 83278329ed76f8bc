// The remote tier over a loopback memcached pool (three `memcached -M` servers started per test on
// free ports), composed with the packed file as the durable fallback: rows equal the reference for
// every codec, and every fault (a server killed mid-run, restarted empty, a corrupted or truncated
// page value, every server down, an unreachable or silent address) keeps the rows exact, with the
// counters saying where rows came from and no hang. Also push_table (verification, a full server)
// and the memcached:// URI. Skips (GTEST_SKIP) only when the memcached binary is missing.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engram/memory/tiers/fallback_tier.hpp"
#include "engram/memory/tiers/memcached_uri.hpp"
#include "engram/memory/tiers/open_table.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/prefetch.hpp"
#include "engram/memory/tiers/remote_tier.hpp"
#include "engram/memory/tiers/tiered_memory.hpp"
#include "memory/tiers/tier_test_support.hpp"
#if ENGRAM_HAVE_MEMCACHED
#include "engram/memory/tiers/memcached_store.hpp"
#include "memory/tiers/memcached_pool.hpp"
#endif

namespace engram {
namespace {

using test::TestTable;
using ::testing::HasSubstr;

// Every codec: the shared row cases (f32, bf16, fp8 with scales, a row over a page) plus f16.
std::vector<test::RowCase> codec_cases() {
  std::vector<test::RowCase> cases = test::row_cases();
  cases.push_back({"f16_d96_192B", "f16", 96, 5000, false});
  return cases;
}

void expect_rows(std::span<const std::byte> out, const TestTable& t,
                 const std::vector<int64_t>& ids) {
  const auto rb = static_cast<size_t>(t.row_bytes());
  const std::vector<std::byte> expected = test::reference_rows(t, ids);
  for (size_t i = 0; i < ids.size(); ++i)
    ASSERT_EQ(std::memcmp(out.data() + i * rb, expected.data() + i * rb, rb), 0)
        << "row " << ids[i] << " at batch position " << i << " differs";
}

std::vector<int64_t> uniform_ids(int64_t n, size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> d(0, n - 1);
  std::vector<int64_t> ids(count);
  for (auto& id : ids) id = d(rng);
  return ids;
}

// ------------------------------------------------------------------ an in-process store

// A PageStore in a std::map, with faults: values to drop or corrupt, and a transport error.
class FakeStore {
 public:
  std::map<std::string, std::vector<std::byte>, std::less<>> values;
  bool fail_all = false;
  std::string describe() const { return "fake store"; }
  template <class OnValue>
  StoreGetStatus get_many(std::span<const char* const> keys, std::span<const size_t> lengths,
                          OnValue&& on_value) {
    StoreGetStatus status;
    if (fail_all) return {1, "fake store: connection refused"};
    for (size_t k = 0; k < keys.size(); ++k) {
      const std::string_view key(keys[k], lengths[k]);
      const auto it = values.find(key);
      if (it != values.end()) on_value(key, std::span<const std::byte>(it->second));
    }
    on_value("engram:not-a-key", std::span<const std::byte>());  // foreign keys are ignored
    return status;
  }
  StorePutStatus put(std::string_view key, std::span<const std::byte> value) {
    values[std::string(key)] = std::vector<std::byte>(value.begin(), value.end());
    return {};
  }
};
static_assert(PageStore<FakeStore>);
using FakeRemote = RemoteTierT<FakeStore>;
static_assert(PartialRowTier<FakeRemote>);

TEST(RemoteTierFake, PushedTableServesReferenceRowsForEveryCodec) {
  for (const test::RowCase& row_case : codec_cases()) {
    SCOPED_TRACE("row case " + row_case.name);
    const TestTable& t = test::test_table(row_case);
    FakeRemote tier(t.packed_path, FakeStore{});
    const PushReport pushed = push_table(tier.file(), tier.store());
    EXPECT_EQ(pushed.pages, tier.file().num_pages());
    EXPECT_EQ(pushed.pages_verified, tier.file().num_pages());
    EXPECT_EQ(static_cast<int64_t>(tier.store().values.size()), tier.file().num_pages());
    for (const auto& [pattern, ids] : test::id_patterns(t.num_rows(), 5)) {
      SCOPED_TRACE("pattern " + pattern);
      std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()) + 7,
                                 std::byte{0x5A});
      const FetchReport r = tier.fetch(ids, out);
      EXPECT_EQ(r.rows, static_cast<int64_t>(ids.size()));
      EXPECT_EQ(r.rows_from_remote, r.rows);
      expect_rows(out, t, ids);
      for (size_t b = ids.size() * static_cast<size_t>(t.row_bytes()); b < out.size(); ++b)
        ASSERT_EQ(out[b], std::byte{0x5A}) << "staging buffer overwritten past the batch";
    }
  }
}

TEST(RemoteTierFake, MissingAndCorruptPagesAreReportedNotZeroed) {
  const TestTable& t = test::test_table(test::row_cases()[2]);  // f32 d85: 12 rows per page
  FakeRemote tier(t.packed_path, FakeStore{});
  push_table(tier.file(), tier.store());
  const int64_t rpp = tier.file().layout().rows_per_page;
  tier.store().values.erase(tier.page_key(3));                 // missing
  tier.store().values[tier.page_key(5)][100] ^= std::byte{1};  // checksum catches it
  tier.store().values[tier.page_key(7)].resize(100);           // truncated value
  tier.store().values[tier.page_key(9)] = tier.store().values[tier.page_key(10)];  // misplaced

  const std::vector<int64_t> ids = {0, 3 * rpp + 1, 5 * rpp, 7 * rpp + 2, 9 * rpp, 11 * rpp, 0};
  const auto rb = static_cast<size_t>(t.row_bytes());
  std::vector<std::byte> out(ids.size() * rb, std::byte{0x77});
  const FetchReport r = tier.fetch_partial(ids, out);
  EXPECT_THAT(std::vector<int64_t>(tier.missing().begin(), tier.missing().end()),
              ::testing::ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(r.rows_from_remote, 3);
  for (int64_t pos : {1, 2, 3, 4})
    for (size_t b = 0; b < rb; ++b)
      ASSERT_EQ(out[static_cast<size_t>(pos) * rb + b], std::byte{0x77}) << "missing row written";
  const RemoteStats s = tier.stats();
  EXPECT_EQ(s.pages_requested, 6);
  EXPECT_EQ(s.pages_hit, 2);
  EXPECT_EQ(s.pages_missing, 1);
  EXPECT_EQ(s.pages_corrupt, 3);

  try {
    tier.fetch(ids, out);
    ADD_FAILURE() << "no error from the all-or-nothing fetch";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("4 of 7 rows unavailable; first: page 3"));
    EXPECT_THAT(e.what(), HasSubstr("is not in the pool"));
  }
}

TEST(RemoteTierFake, FallbackServesWhatThePoolMisses) {
  const TestTable& t = test::test_table(test::row_cases()[4]);  // fp8 with scales
  FallbackTierT<FakeRemote, DirectIOTier> tier(std::piecewise_construct,
                                               std::forward_as_tuple(t.packed_path, FakeStore{}),
                                               std::forward_as_tuple(t.packed_path));
  push_table(tier.primary().file(), tier.primary().store());
  const int64_t rpp = tier.primary().file().layout().rows_per_page;
  tier.primary().store().values[tier.primary().page_key(2)][0] ^= std::byte{0x80};
  const std::vector<int64_t> ids = {2 * rpp, 2 * rpp + 1, 0, 2 * rpp, 40 * rpp};
  std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()));
  FetchReport r = tier.fetch(ids, out);
  expect_rows(out, t, ids);
  EXPECT_EQ(r.rows, 5);
  EXPECT_EQ(r.rows_from_storage, 5);
  EXPECT_EQ(r.rows_from_remote, 2);
  EXPECT_EQ(r.rows_from_fallback, 3);
  EXPECT_EQ(tier.stats().rows_from_fallback, 3);

  tier.primary().store().fail_all = true;  // transport down: everything from the file
  r = tier.fetch(ids, out);
  expect_rows(out, t, ids);
  EXPECT_EQ(r.rows_from_fallback, 5);
  EXPECT_EQ(tier.primary().last_store_error(), "fake store: connection refused");
}

// ------------------------------------------------------------------ the URI

TEST(MemcachedUri, ParsesServersFallbackAndOptions) {
  const MemcachedUri u = parse_memcached_uri(
      "memcached://127.0.0.9:11311,cache-b,[::1]:9000?fallback=/data/t.engram&cache_mb=64&"
      "connect_timeout_ms=50&io_timeout_ms=70&retry_timeout_s=3");
  ASSERT_EQ(u.servers.size(), 3u);
  EXPECT_EQ(u.servers[0], (MemcachedServer{"127.0.0.9", 11311}));
  EXPECT_EQ(u.servers[1], (MemcachedServer{"cache-b", 11211}));
  EXPECT_EQ(u.servers[2], (MemcachedServer{"::1", 9000}));
  EXPECT_EQ(u.servers[2].to_string(), "[::1]:9000");
  EXPECT_EQ(u.fallback, "/data/t.engram");
  EXPECT_EQ(u.cache_mb, 64);
  EXPECT_EQ(u.options.connect_timeout_ms, 50);
  EXPECT_EQ(u.options.io_timeout_ms, 70);
  EXPECT_EQ(u.options.retry_timeout_s, 3);
  EXPECT_TRUE(is_memcached_uri("memcached://h:1"));
  EXPECT_FALSE(is_memcached_uri("file:t.engram"));
}

TEST(MemcachedUri, RejectsMalformedUris) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"file:t.engram", "expected memcached://HOST:PORT"},
      {"memcached://", "no servers"},
      {"memcached://a:1,,b:2", "empty server in the list"},
      {"memcached://a:99999", "port of 'a:99999' must be an integer in [1, 65535]"},
      {"memcached://a:x1", "found 'x1'"},
      {"memcached://:5", "server ':5' has no host"},
      {"memcached://[::1:5", "unterminated '['"},
      {"memcached://a:1?fallback", "query part 'fallback' is not KEY=VALUE"},
      {"memcached://a:1?colour=red", "unknown parameter 'colour'"},
      {"memcached://a:1?cache_mb=-1", "cache_mb must be an integer"},
  };
  for (const auto& [uri, message] : cases) {
    SCOPED_TRACE(uri);
    try {
      parse_memcached_uri(uri);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(message));
      EXPECT_THAT(e.what(), HasSubstr("table URI '" + uri + "'"));
    }
  }
}

#if ENGRAM_HAVE_MEMCACHED

// ------------------------------------------------------------------ a real loopback pool

class RemotePool : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = test::memcached_binary();
    if (binary_.empty())
      GTEST_SKIP() << "memcached binary not found (install Debian's memcached, or set "
                      "ENGRAM_MEMCACHED): the loopback pool tests need it";
    pool_ = std::make_unique<test::MemcachedPool>(binary_, 3, 64);
  }
  std::vector<MemcachedServer> servers() const {
    std::vector<MemcachedServer> s;
    for (size_t i = 0; i < pool_->size(); ++i) s.push_back({"127.0.0.1", pool_->server(i).port()});
    return s;
  }
  // Short timeouts: the tests kill servers on purpose.
  static MemcachedOptions fast_options() {
    MemcachedOptions o;
    o.connect_timeout_ms = 200;
    o.io_timeout_ms = 300;
    o.retry_timeout_s = 1;
    return o;
  }
  MemcachedStore store() const { return MemcachedStore(servers(), fast_options()); }
  std::unique_ptr<RemoteWithFallback> open(const TestTable& t) {
    MemcachedUri uri;
    uri.servers = servers();
    uri.fallback = t.packed_path;
    uri.options = fast_options();
    return open_remote_with_fallback(uri);
  }
  void push(const TestTable& t) {
    MemcachedStore s = store();
    const PackedTableFile file(t.packed_path);
    const PushReport r = push_table(file, s);
    ASSERT_EQ(r.pages_verified, file.num_pages());
  }
  // Fetches `ids`, checks the rows, returns the report.
  FetchReport fetch_checked(RemoteWithFallback& tier, const TestTable& t,
                            const std::vector<int64_t>& ids) {
    std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()));
    const FetchReport r = tier.fetch(ids, out);
    EXPECT_EQ(r.rows, static_cast<int64_t>(ids.size()));
    EXPECT_EQ(r.rows_from_remote + r.rows_from_fallback, r.rows);
    expect_rows(out, t, ids);
    return r;
  }

  std::string binary_;
  std::unique_ptr<test::MemcachedPool> pool_;
};

// The pool helper: a server counts as started only when the process answering on its port is the
// child it started. Another server already on the port (as when a parallel test took the "free"
// port first) is neither mistaken for it on an explicit port nor kept after a lost race.
TEST(MemcachedPoolHelper, StartsItsOwnServerAndRetriesALostPort) {
  const std::string binary = test::memcached_binary();
  if (binary.empty()) GTEST_SKIP() << "memcached binary not found";
  test::MemcachedProcess occupant(binary, 8);
  occupant.start();
  EXPECT_EQ(test::memcached_stats_pid(occupant.port()), occupant.pid());

  test::MemcachedProcess late(binary, 8);
  try {
    late.start(occupant.port());
    ADD_FAILURE() << "started on a port another server holds; answering pid "
                  << test::memcached_stats_pid(occupant.port()) << ", ours " << late.pid()
                  << ", occupant " << occupant.pid();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("did not start on 127.0.0.1:" + std::to_string(occupant.port())));
  }
  EXPECT_FALSE(late.running());

  // The first candidate port is lost to the occupant: the start retries on a fresh one.
  test::MemcachedProcess racer(binary, 8);
  int picks = 0;
  racer.set_port_picker(
      [&] { return ++picks == 1 ? occupant.port() : test::free_loopback_port(); });
  racer.start();
  EXPECT_EQ(picks, 2);
  EXPECT_NE(racer.port(), occupant.port());
  EXPECT_EQ(test::memcached_stats_pid(racer.port()), racer.pid());
  EXPECT_EQ(test::memcached_stats_pid(occupant.port()), occupant.pid());
}

TEST_F(RemotePool, RowsEqualInMemoryForEveryCodec) {
  for (const test::RowCase& row_case : codec_cases()) {
    SCOPED_TRACE("row case " + row_case.name);
    const TestTable& t = test::test_table(row_case);
    push(t);
    auto tier = open(t);
    InMemoryTier reference(t.rows, t.row_bytes());
    for (const auto& [pattern, ids] : test::id_patterns(t.num_rows(), 11)) {
      SCOPED_TRACE("pattern " + pattern);
      const auto rb = static_cast<size_t>(t.row_bytes());
      std::vector<std::byte> got(ids.size() * rb), want(ids.size() * rb);
      const FetchReport r = tier->fetch(ids, got);
      reference.fetch(ids, want);
      EXPECT_EQ(got, want);
      EXPECT_EQ(r.rows_from_remote, static_cast<int64_t>(ids.size()));
      EXPECT_EQ(r.rows_from_fallback, 0);
    }
    // The pure remote tier (no fallback) serves every row too.
    RemoteTier remote(t.packed_path, store());
    const std::vector<int64_t> ids = uniform_ids(t.num_rows(), 500, 3);
    std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()));
    remote.fetch(ids, out);
    expect_rows(out, t, ids);
  }
}

TEST_F(RemotePool, CachedStackServesReferenceRows) {
  const TestTable& t = test::test_table(test::row_cases()[4]);
  push(t);
  auto file = std::make_shared<const PackedTableFile>(t.packed_path);
  CacheOptions cache;
  cache.capacity_bytes = t.num_rows() * t.row_bytes() / 8;
  CachedRemoteWithFallback tier(cache, std::piecewise_construct,
                                std::forward_as_tuple(file, store(), RemoteTierOptions{}),
                                std::forward_as_tuple(t.packed_path, DirectIOOptions{}));
  test::ZipfIds zipf(t.num_rows(), 1.1, 5);
  FetchReport total;
  for (int batch = 0; batch < 20; ++batch) {
    std::vector<int64_t> ids(300);
    for (auto& id : ids) id = zipf();
    std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()));
    total += tier.fetch(ids, out);
    expect_rows(out, t, ids);
  }
  EXPECT_GT(total.rows_from_cache, 0);
  EXPECT_GT(total.rows_from_remote, 0);
  EXPECT_EQ(total.rows_from_fallback, 0);
  EXPECT_EQ(total.rows_from_remote, total.rows_from_storage);  // misses repeated within a batch
  EXPECT_LE(total.rows_from_cache + total.rows_from_remote, total.rows);  // are fetched once
}

TEST_F(RemotePool, ServerStoppedMidRunFallsBackToTheFile) {
  const TestTable& t = test::test_table(test::row_cases()[1]);  // f32 d64: 16 rows per page
  push(t);
  auto tier = open(t);
  FetchReport before, after;
  for (int batch = 0; batch < 4; ++batch)
    before += fetch_checked(*tier, t, uniform_ids(t.num_rows(), 256, 100 + batch));
  EXPECT_EQ(before.rows_from_fallback, 0);

  pool_->server(1).stop();
  const auto start = std::chrono::steady_clock::now();
  for (int batch = 0; batch < 8; ++batch)
    after += fetch_checked(*tier, t, uniform_ids(t.num_rows(), 256, 200 + batch));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // About a third of the pages lived on the stopped server; the other two still serve theirs.
  EXPECT_GT(after.rows_from_fallback, after.rows / 10);
  EXPECT_GT(after.rows_from_remote, after.rows / 3);
  EXPECT_GT(tier->primary().stats().store_errors, 0);
  EXPECT_THAT(tier->primary().last_store_error(), HasSubstr("memcached"));
  // No hang: a stopped server refuses at once on loopback, and even a batch that waited a full
  // connect + I/O timeout (0.5 s) each time would finish 8 batches in 4 s; the 30 s slack is for a
  // loaded machine under TSan. (That a timed-out server is skipped, not waited on again, is shown
  // by UnreachableOrSilentAddressTimesOutThenFallsBack, relative to the timeout.)
  EXPECT_LT(seconds, 8 * 0.5 + 30) << "a stopped server made the batches hang";
  std::printf(
      "[ info     ] one server down: %lld rows from the pool, %lld from the file, %.3f s; "
      "%s\n",
      static_cast<long long>(after.rows_from_remote),
      static_cast<long long>(after.rows_from_fallback), seconds,
      tier->primary().last_store_error().c_str());
}

TEST_F(RemotePool, ServerRestartedEmptyThenRepushed) {
  const TestTable& t = test::test_table(test::row_cases()[3]);  // bf16 d163
  push(t);
  auto tier = open(t);
  const std::vector<int64_t> ids = uniform_ids(t.num_rows(), 600, 7);
  EXPECT_EQ(fetch_checked(*tier, t, ids).rows_from_fallback, 0);

  pool_->server(0).stop();
  pool_->server(0).start(pool_->server(0).port());  // same address, empty
  // Rows stay exact while the client reconnects (after at most retry_timeout_s) and then finds
  // the restarted server's pages missing.
  // (A deadline for the loop, not a speed claim: it ends as soon as the reconnect is seen.)
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int64_t misses_after_reconnect = 0;
  while (std::chrono::steady_clock::now() < deadline && misses_after_reconnect == 0) {
    const int64_t errors_before = tier->primary().stats().store_errors;
    const FetchReport r = fetch_checked(*tier, t, ids);
    if (tier->primary().stats().store_errors == errors_before && r.rows_from_fallback > 0)
      misses_after_reconnect = r.rows_from_fallback;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GT(misses_after_reconnect, 0) << "the restarted server should answer, without the pages";
  EXPECT_LT(misses_after_reconnect, static_cast<int64_t>(ids.size()));

  push(t);  // re-filling the pool heals it
  EXPECT_EQ(fetch_checked(*tier, t, ids).rows_from_fallback, 0);
}

TEST_F(RemotePool, CorruptedPageValueIsCaughtAndServedFromTheFile) {
  const TestTable& t = test::test_table(test::row_cases()[0]);  // f32 d1: 1024 rows per page
  push(t);
  auto tier = open(t);
  RemoteTier& remote = tier->primary();
  const PackedLayout& layout = remote.file().layout();
  std::vector<std::byte> page(static_cast<size_t>(layout.page_bytes));
  // The value of page 2 with one flipped bit, written straight to the pool.
  std::memcpy(page.data(), t.rows.data() + 2 * layout.rows_per_page * layout.row_bytes,
              static_cast<size_t>(layout.rows_per_page * layout.row_bytes));
  page[1234] ^= std::byte{0x04};
  MemcachedStore writer = store();
  ASSERT_TRUE(writer.put(remote.page_key(2), page).ok());
  ASSERT_TRUE(writer.put(remote.page_key(4), std::span(page).first(1000)).ok());  // truncated

  const int64_t rpp = layout.rows_per_page;
  const std::vector<int64_t> ids = {2 * rpp + 5, 1, 4 * rpp, 2 * rpp + 300, 3 * rpp, 2 * rpp + 5};
  const FetchReport r = fetch_checked(*tier, t, ids);
  EXPECT_EQ(r.rows_from_fallback, 4);
  EXPECT_EQ(r.rows_from_remote, 2);
  EXPECT_EQ(remote.stats().pages_corrupt, 2);

  std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()));
  try {
    remote.fetch(ids, out);
    ADD_FAILURE() << "the remote tier alone must refuse a batch with a corrupted page";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("first: page 2"));
    EXPECT_THAT(e.what(), HasSubstr("failed verification"));
  }
}

TEST_F(RemotePool, AllServersDownServesEverythingFromTheFile) {
  const TestTable& t = test::test_table(test::row_cases()[6]);  // fp8 d1024: 3 rows per page
  push(t);
  auto tier = open(t);
  EXPECT_EQ(fetch_checked(*tier, t, uniform_ids(t.num_rows(), 100, 1)).rows_from_fallback, 0);
  for (size_t i = 0; i < pool_->size(); ++i) pool_->server(i).stop();
  const auto start = std::chrono::steady_clock::now();
  for (int batch = 0; batch < 5; ++batch) {
    const std::vector<int64_t> ids = uniform_ids(t.num_rows(), 100, 10 + batch);
    const FetchReport r = fetch_checked(*tier, t, ids);
    EXPECT_EQ(r.rows_from_fallback, 100);
    EXPECT_EQ(r.rows_from_remote, 0);
  }
  // No hang (as above: at most a connect + I/O timeout per batch, with slack for TSan under load).
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
            5 * 0.5 + 30);
  EXPECT_EQ(tier->primary().stats().pages_hit,
            tier->primary().stats().pages_requested - tier->primary().stats().pages_missing);
}

// A loopback TCP listener that never accepts nor answers: connections complete in the kernel's
// accept queue and requests are never answered (a hung server). connections() accepts what is
// queued and counts it (every connect a client made since).
class SilentListener {
 public:
  explicit SilentListener(int backlog = 64) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = loopback(0);
    socklen_t len = sizeof(addr);
    ENGRAM_CHECK(fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                     ::listen(fd_, backlog) == 0 &&
                     ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0,
                 "silent listener: setup failed");
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }
  /// Accepts every queued connection; returns how many there were.
  int connections() {
    const int flags = ::fcntl(fd_, F_GETFL);
    ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
    int n = 0;
    for (int c; (c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; ++n) ::close(c);
    ::fcntl(fd_, F_SETFL, flags);
    return n;
  }
  static sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    return addr;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A loopback address that cannot be reached: a listener with a backlog of 0 whose accept queue
// is kept full by a connection nobody accepts. Linux drops further SYNs (ListenOverflows), so a
// connect neither completes nor is refused: it times out as towards a black-holed host, and no
// packet leaves the machine. The constructor checks that a probe connect does time out.
class UnreachableLoopbackAddress {
 public:
  UnreachableLoopbackAddress() : listener_(0) {
    // One established connection fills a backlog of 0; a few more cover other accounting.
    for (int i = 0; i < 8; ++i) {
      const int c = connect_nonblocking();
      if (!completes(c, 300)) {  // this SYN was dropped: the queue is full
        ::close(c);
        return;
      }
      fillers_.push_back(c);
    }
    detail::fail("unreachable loopback address: connects to a listener with a full accept queue ",
                 "still complete on this kernel");
  }
  ~UnreachableLoopbackAddress() {
    for (int c : fillers_) ::close(c);
  }
  int port() const { return listener_.port(); }

 private:
  int connect_nonblocking() const {
    const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const sockaddr_in addr = SilentListener::loopback(listener_.port());
    const int rc = ::connect(c, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
    ENGRAM_CHECK(c >= 0 && (rc == 0 || errno == EINPROGRESS),
                 "unreachable loopback address: ", "connect failed: ", detail::errno_text(errno));
    return c;
  }
  static bool completes(int c, int timeout_ms) {
    pollfd p{c, POLLOUT, 0};
    int error = 0;
    socklen_t len = sizeof(error);
    return ::poll(&p, 1, timeout_ms) == 1 &&
           ::getsockopt(c, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0;
  }

  SilentListener listener_;
  std::vector<int> fillers_;
};

TEST_F(RemotePool, UnreachableOrSilentAddressTimesOutThenFallsBack) {
  const TestTable& t = test::test_table(test::row_cases()[2]);
  SilentListener silent;
  UnreachableLoopbackAddress unreachable;
  // A hung server (accepts, never answers) and an address whose connects time out.
  for (const MemcachedServer& dead : {MemcachedServer{"127.0.0.1", silent.port()},
                                      MemcachedServer{"127.0.0.1", unreachable.port()}}) {
    const bool hung = dead.port == silent.port();
    SCOPED_TRACE(std::string(hung ? "silent" : "unreachable") + " server " + dead.to_string());
    MemcachedUri uri;
    uri.servers = {dead};
    uri.fallback = t.packed_path;
    // Timeouts of 2 s and a retry period far longer than the test. Waiting on the server costs at
    // least one timeout, so the bounds below are relative to the timeout (a batch that skips it
    // takes milliseconds, even under TSan on a loaded machine) and hold however slow the machine.
    const double timeout_s = 2.0;
    uri.options = fast_options();
    uri.options.connect_timeout_ms = 2000;
    uri.options.io_timeout_ms = 2000;
    uri.options.retry_timeout_s = 600;
    auto tier = open_remote_with_fallback(uri);
    for (int batch = 0; batch < 3; ++batch) {
      const auto start = std::chrono::steady_clock::now();
      const FetchReport r = fetch_checked(*tier, t, uniform_ids(t.num_rows(), 200, 50 + batch));
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EXPECT_EQ(r.rows_from_fallback, 200);
      if (batch == 0) {
        // The first batch waits about one timeout (connect or poll), not more than a few.
        EXPECT_GE(seconds, 0.9 * timeout_s) << "batch 0 did not wait for the server";
        EXPECT_LT(seconds, 4 * timeout_s + 30) << "batch 0 hung on the dead server";
      } else {
        // After one timeout the server is skipped for retry_timeout_s: later batches do not wait.
        EXPECT_LT(seconds, 0.9 * timeout_s) << "batch " << batch << " waited on it again";
      }
      std::printf("[ info     ] %s batch %d: %.3f s, %s\n", dead.to_string().c_str(), batch,
                  seconds, tier->primary().last_store_error().c_str());
    }
    EXPECT_GT(tier->primary().stats().store_errors, 0);
    // The hung server saw exactly one connection: only the first batch talked to it.
    if (hung) {
      EXPECT_EQ(silent.connections(), 1);
    }
  }
}

TEST_F(RemotePool, PushReportsAFullServer) {
  // One small server (2 MiB holds about 460 pages of 4 KiB) and a table of about 6 MB.
  test::MemcachedPool small(binary_, 1, 2);
  test::RowCase big{"push_full_f32_d64", "f32", 64, 24000, false};  // 1500 pages
  const TestTable& t = test::test_table(big);
  MemcachedStore s({{"127.0.0.1", small.server(0).port()}}, fast_options());
  const PackedTableFile file(t.packed_path);
  std::vector<PushProgress> progress;
  try {
    push_table(file, s, {.chunk_pages = 64, .progress_interval_s = 0},
               [&](const PushProgress& p) { progress.push_back(p); });
    ADD_FAILURE() << "no error for a full server";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("server 127.0.0.1:" + std::to_string(small.server(0).port())));
    EXPECT_THAT(e.what(), HasSubstr("is full (out of memory with eviction off)"));
    EXPECT_THAT(e.what(), HasSubstr("of 1500 pages"));
    EXPECT_THAT(e.what(), HasSubstr("memcached -m"));
  }
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().pages_total, 1500);
  EXPECT_LT(progress.back().pages_done, 1500);
}

TEST_F(RemotePool, AsynchronousPrefetchThroughThePool) {
  const TestTable& t = test::test_table(test::row_cases()[4]);
  push(t);
  auto tier = open(t);
  PrefetcherT<RemoteWithFallback, prefetch::Asynchronous> prefetcher(*tier,
                                                                     {.max_batch_rows = 512});
  std::vector<std::vector<int64_t>> batches;
  for (int b = 0; b < 12; ++b) batches.push_back(uniform_ids(t.num_rows(), 512, 900 + b));
  auto ticket = prefetcher.submit(batches[0]);
  for (size_t b = 0; b < batches.size(); ++b) {
    auto next = b + 1 < batches.size() ? prefetcher.submit(batches[b + 1]) : decltype(ticket){};
    if (b == 6) pool_->server(2).stop();  // mid-run, while batch 7 may be in flight
    auto batch = prefetcher.wait(ticket);
    expect_rows(batch.rows(), t, batches[b]);
    ticket = next;
  }
  EXPECT_GT(tier->stats().rows_from_fallback, 0);
}

// open_table("memcached://...?fallback=...") and the layer's memory path (TieredMemory: row ids,
// prefetch, decode) give bit for bit the memory of open_table("file:..."), for every codec, with
// a server stopped halfway; the forward pass only consumes this memory.
TEST_F(RemotePool, OpenTableMemoryEqualsTheFileTable) {
  for (const test::RowCase& row_case : codec_cases()) {
    SCOPED_TRACE("row case " + row_case.name);
    const TestTable& t = test::test_table(row_case);
    push(t);
    const std::string uri = "memcached://" + pool_->addresses() + "?fallback=" + t.packed_path +
                            "&connect_timeout_ms=200&io_timeout_ms=300&retry_timeout_s=1";
    OpenedTable remote = open_table(uri);
    OpenedTable file = open_table("file:" + t.packed_path);
    EXPECT_THAT(remote.tier.describe(), HasSubstr("falling back to direct-io"));
    ASSERT_NE(remote.tier.target<RemoteWithFallback>(), nullptr);
    const int64_t tokens = 64, cols = static_cast<int64_t>(t.info.primes.size());
    TieredMemoryT<AnyTier> from_pool(remote.tier, remote.info, {.max_tokens = tokens});
    TieredMemoryT<AnyTier, prefetch::Synchronous> from_file(file.tier, file.info,
                                                            {.max_tokens = tokens});
    std::mt19937_64 rng(17);
    FetchReport total;
    for (int batch = 0; batch < 6; ++batch) {
      if (batch == 3) pool_->server(0).stop();
      std::vector<int64_t> hash_ids(static_cast<size_t>(tokens * cols));
      for (size_t i = 0; i < hash_ids.size(); ++i)
        hash_ids[i] = static_cast<int64_t>(
            rng() % static_cast<uint64_t>(t.info.primes[i % static_cast<size_t>(cols)]));
      std::vector<float> got(static_cast<size_t>(tokens * from_pool.memory_dim()));
      std::vector<float> want(got.size());
      total += from_pool.fetch(hash_ids, got);
      from_file.fetch(hash_ids, want);
      ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
          << "batch " << batch;
    }
    EXPECT_GT(total.rows_from_remote, 0);
    EXPECT_GT(total.rows_from_fallback, 0);
    pool_->server(0).start(pool_->server(0).port());
  }
  EXPECT_THAT(
      [] {
        try {
          open_table("memcached://127.0.0.1:1");
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string();
      }(),
      HasSubstr("needs ?fallback=TABLE.engram"));
}

#endif  // ENGRAM_HAVE_MEMCACHED

}  // namespace
}  // namespace engram
