// Typed conformance suite: every RowTier returns exactly the reference rows (a plain loop over the
// table) for the same ids, for every row layout and id pattern, leaves the staging buffer past the
// batch untouched, and rejects bad ids / short buffers with a named error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engram/memory/tiers/cached_tier.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/in_memory_tier.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/safetensors_tier.hpp"
#include "memory/tiers/tier_test_support.hpp"

namespace engram {
namespace {

using test::TestTable;
using ::testing::HasSubstr;

// ------------------------------------------------------------------ tier factories

struct InMemoryOwned {
  using Tier = InMemoryTier;
  static std::unique_ptr<Tier> make(const TestTable& t) {
    return std::make_unique<Tier>(t.rows, t.row_bytes());
  }
};

struct InMemoryView {
  using Tier = InMemoryTier;
  static std::unique_ptr<Tier> make(const TestTable& t) {
    return std::make_unique<Tier>(Tier::view(t.rows, t.row_bytes()));
  }
};

struct MappedPacked {
  using Tier = InMemoryTier;
  static std::unique_ptr<Tier> make(const TestTable& t) {
    const PackedTableFile file(t.packed_path);  // the tier keeps the mapping alive on its own
    return std::make_unique<Tier>(map_packed_table(file));
  }
};

template <PageReaderOptions::Backend kBackend, DirectIOOptions::Mode kMode, int kDepth>
struct DirectIO {
  using Tier = DirectIOTier;
  static std::unique_ptr<Tier> make(const TestTable& t) {
    DirectIOOptions options;
    options.mode = kMode;
    options.reader.backend = kBackend;
    options.reader.queue_depth = kDepth;
    options.reader.pread_threads = kDepth;
    return std::make_unique<Tier>(t.packed_path, options);
  }
};
using DirectIOPread = DirectIO<PageReaderOptions::Backend::kPread, DirectIOOptions::Mode::kAuto, 4>;
using DirectIOPreadSingle =
    DirectIO<PageReaderOptions::Backend::kPread, DirectIOOptions::Mode::kAuto, 1>;
using DirectIOAuto = DirectIO<PageReaderOptions::Backend::kAuto, DirectIOOptions::Mode::kAuto, 64>;
using DirectIOBuffered =
    DirectIO<PageReaderOptions::Backend::kAuto, DirectIOOptions::Mode::kBuffered, 8>;
#if ENGRAM_HAVE_URING
using DirectIOUringQd1 =
    DirectIO<PageReaderOptions::Backend::kUring, DirectIOOptions::Mode::kAuto, 1>;
using DirectIOUring =
    DirectIO<PageReaderOptions::Backend::kUring, DirectIOOptions::Mode::kAuto, 32>;
#endif

template <class InnerFactory, int kCapacityDivisor, bool kAdmission>
struct Cached {
  using Tier = CachedTier<typename InnerFactory::Tier>;
  static std::unique_ptr<Tier> make(const TestTable& t) {
    CacheOptions options;
    options.capacity_bytes = t.num_rows() * t.row_bytes() / kCapacityDivisor;
    options.admission = kAdmission;
    // CachedTier owns its inner tier: construct it in place from the factory's product.
    return std::make_unique<Tier>(options, std::move(*InnerFactory::make(t)));
  }
};

// InMemoryTier is movable, DirectIOTier is not: the cached DirectIO factory builds in place.
template <int kCapacityDivisor>
struct CachedDirectIO {
  using Tier = CachedTier<DirectIOTier>;
  static std::unique_ptr<Tier> make(const TestTable& t) {
    CacheOptions options;
    options.capacity_bytes = t.num_rows() * t.row_bytes() / kCapacityDivisor;
    DirectIOOptions io;
    io.reader.queue_depth = 16;
    return std::make_unique<Tier>(options, t.packed_path, io);
  }
};

// The table as safetensors shard(s) (released V4.1 layout). The shared random tables hold 0xFF
// scale bytes, so these factories serve them unchecked (safetensors_tier_test checks NaN scales).
template <SafetensorsTierOptions::Io kIo, PageReaderOptions::Backend kBackend, int kDepth,
          bool kSplit>
struct Shard {
  using Tier = SafetensorsTier;
  static SafetensorsTierOptions options() {
    SafetensorsTierOptions options;
    options.io = kIo;
    options.reader.backend = kBackend;
    options.reader.queue_depth = kDepth;
    options.reader.pread_threads = kDepth;
    options.check_scales = false;
    return options;
  }
  static std::unique_ptr<Tier> make(const TestTable& t) {
    const test::ShardFiles& f = test::shard_files(t, kSplit);
    return std::make_unique<Tier>(f.weight_file, f.weight_tensor, f.scale_file, f.scale_tensor,
                                  options());
  }
};
using ShardAuto =
    Shard<SafetensorsTierOptions::Io::kAuto, PageReaderOptions::Backend::kAuto, 32, false>;
using ShardPreadSplit =
    Shard<SafetensorsTierOptions::Io::kAuto, PageReaderOptions::Backend::kPread, 4, true>;
using ShardBuffered =
    Shard<SafetensorsTierOptions::Io::kBuffered, PageReaderOptions::Backend::kPread, 1, false>;
using ShardMmap =
    Shard<SafetensorsTierOptions::Io::kMmap, PageReaderOptions::Backend::kAuto, 1, true>;

template <int kCapacityDivisor>
struct CachedShard {
  using Tier = CachedTier<SafetensorsTier>;
  static std::unique_ptr<Tier> make(const TestTable& t) {
    CacheOptions options;
    options.capacity_bytes = t.num_rows() * t.row_bytes() / kCapacityDivisor;
    const test::ShardFiles& f = test::shard_files(t, true);
    return std::make_unique<Tier>(options, f.weight_file, f.weight_tensor, f.scale_file,
                                  f.scale_tensor, ShardAuto::options());
  }
};

// ------------------------------------------------------------------ the suite

template <class Factory>
class TierConformance : public ::testing::Test {};
TYPED_TEST_SUITE_P(TierConformance);

constexpr std::byte kSentinel{0xA5};

// Fetches `ids` into a buffer with sentinel padding; checks rows, padding and the report.
template <class Tier>
void expect_reference_rows(Tier& tier, const TestTable& t, const std::vector<int64_t>& ids) {
  const auto rb = static_cast<size_t>(t.row_bytes());
  std::vector<std::byte> out(ids.size() * rb + 3 * rb + 17, kSentinel);
  const FetchReport report = tier.fetch(ids, out);
  EXPECT_EQ(report.rows, static_cast<int64_t>(ids.size()));
  const std::vector<std::byte> expected = test::reference_rows(t, ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (std::memcmp(out.data() + i * rb, expected.data() + i * rb, rb) != 0) {
      ADD_FAILURE() << "row " << ids[i] << " at batch position " << i << " differs";
      return;
    }
  }
  for (size_t b = ids.size() * rb; b < out.size(); ++b)
    ASSERT_EQ(out[b], kSentinel) << "staging buffer overwritten past the batch at byte " << b;
}

TYPED_TEST_P(TierConformance, ReturnsReferenceRowsForEveryLayoutAndPattern) {
  for (const test::RowCase& row_case : test::row_cases()) {
    SCOPED_TRACE("row case " + row_case.name);
    const TestTable& t = test::test_table(row_case);
    auto tier = TypeParam::make(t);
    ASSERT_EQ(tier->num_rows(), t.num_rows());
    ASSERT_EQ(tier->row_bytes(), t.row_bytes());
    for (const auto& [pattern, ids] : test::id_patterns(t.num_rows(), 42)) {
      SCOPED_TRACE("pattern " + pattern);
      expect_reference_rows(*tier, t, ids);
      expect_reference_rows(*tier, t, ids);  // again: warm caches must give the same rows
    }
  }
}

TYPED_TEST_P(TierConformance, ManyBatchesInterleaved) {
  const TestTable& t = test::test_table(test::row_cases()[4]);  // FP8 rows with scales
  auto tier = TypeParam::make(t);
  test::ZipfIds zipf(t.num_rows(), 1.1, 7);
  for (int batch = 0; batch < 40; ++batch) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    std::vector<int64_t> ids(static_cast<size_t>(1 + batch * 13));
    for (auto& id : ids) id = zipf();
    expect_reference_rows(*tier, t, ids);
  }
}

TYPED_TEST_P(TierConformance, RejectsOutOfRangeIds) {
  const TestTable& t = test::test_table(test::row_cases()[2]);
  auto tier = TypeParam::make(t);
  std::vector<std::byte> out(4 * static_cast<size_t>(t.row_bytes()));
  for (int64_t bad : {t.num_rows(), int64_t{-1}, t.num_rows() + 1000}) {
    SCOPED_TRACE("bad id " + std::to_string(bad));
    const std::vector<int64_t> ids = {0, 1, bad};
    try {
      tier->fetch(ids, out);
      ADD_FAILURE() << "no error for an out-of-range id";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("row id " + std::to_string(bad) + " at batch position 2"));
      EXPECT_THAT(e.what(), HasSubstr("out of range [0, " + std::to_string(t.num_rows()) + ")"));
    }
  }
  expect_reference_rows(*tier, t, {0, 1, t.num_rows() - 1});  // still usable afterwards
}

TYPED_TEST_P(TierConformance, RejectsShortStagingBuffer) {
  const TestTable& t = test::test_table(test::row_cases()[3]);
  auto tier = TypeParam::make(t);
  std::vector<std::byte> out(2 * static_cast<size_t>(t.row_bytes()) + 5);
  const std::vector<int64_t> ids = {1, 2, 3};
  try {
    tier->fetch(ids, out);
    ADD_FAILURE() << "no error for a short staging buffer";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot hold 3 rows of " + std::to_string(t.row_bytes())));
  }
}

REGISTER_TYPED_TEST_SUITE_P(TierConformance, ReturnsReferenceRowsForEveryLayoutAndPattern,
                            ManyBatchesInterleaved, RejectsOutOfRangeIds,
                            RejectsShortStagingBuffer);

using Tiers = ::testing::Types<InMemoryOwned, InMemoryView, MappedPacked, DirectIOPread,
                               DirectIOPreadSingle, DirectIOAuto, DirectIOBuffered,
#if ENGRAM_HAVE_URING
                               DirectIOUringQd1, DirectIOUring,
#endif
                               Cached<InMemoryOwned, 8, true>, Cached<InMemoryOwned, 8, false>,
                               Cached<InMemoryOwned, 1000000, true>,  // capacity below one row: a
                                                                      // pass-through
                               Cached<MappedPacked, 2, true>, CachedDirectIO<4>, ShardAuto,
                               ShardPreadSplit, ShardBuffered, ShardMmap, CachedShard<4>>;
INSTANTIATE_TYPED_TEST_SUITE_P(TierConformance, TierConformance, Tiers);

// ------------------------------------------------------------------ tier-specific reports

TEST(DirectIOTier, ReportsDistinctPagesRead) {
  for (const test::RowCase& row_case : test::row_cases()) {
    SCOPED_TRACE("row case " + row_case.name);
    const TestTable& t = test::test_table(row_case);
    DirectIOTier tier(t.packed_path);
    const int64_t rpp = tier.file().layout().rows_per_page;
    for (const auto& [pattern, ids] : test::id_patterns(t.num_rows(), 9)) {
      SCOPED_TRACE("pattern " + pattern);
      std::set<int64_t> pages;
      for (int64_t id : ids) pages.insert(id / rpp);
      std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()));
      const FetchReport r = tier.fetch(ids, out);
      EXPECT_EQ(r.rows_from_storage, static_cast<int64_t>(ids.size()));
      EXPECT_EQ(r.pages_read, static_cast<int64_t>(pages.size()));
      EXPECT_EQ(r.bytes_read, r.pages_read * tier.file().layout().page_bytes);
    }
  }
}

TEST(DirectIOTier, DescribesItsMode) {
  const TestTable& t = test::test_table(test::row_cases()[1]);
  DirectIOOptions buffered;
  buffered.mode = DirectIOOptions::Mode::kBuffered;
  buffered.reader.backend = PageReaderOptions::Backend::kPread;
  buffered.reader.pread_threads = 3;
  DirectIOTier b(t.packed_path, buffered);
  EXPECT_FALSE(b.direct());
  EXPECT_THAT(b.describe(), HasSubstr("buffered"));
  EXPECT_THAT(b.describe(), HasSubstr("pread x3 threads"));
  EXPECT_THAT(b.describe(), HasSubstr(t.packed_path));

  // kAuto uses O_DIRECT exactly where the filesystem serves it (probed independently, in the
  // scratch folder of the build tree: a real filesystem, not a tmpfs TMPDIR).
  const bool supported = test::direct_io_supported(test::shared_scratch().path());
  DirectIOTier a(t.packed_path);
  EXPECT_EQ(a.direct(), supported) << a.describe();
  EXPECT_THAT(a.describe(), HasSubstr(supported ? "O_DIRECT" : "refuses O_DIRECT"));
#ifdef ENGRAM_TEST_SCRATCH_DIR
  EXPECT_EQ(t.packed_path.rfind(ENGRAM_TEST_SCRATCH_DIR, 0), 0u) << t.packed_path;
#endif
  std::printf("[ info     ] O_DIRECT %s in %s\n", supported ? "supported" : "NOT supported",
              test::shared_scratch().path().c_str());
#if ENGRAM_HAVE_URING
  if (a.reader().uses_uring()) {
    EXPECT_THAT(a.describe(), HasSubstr("io_uring queue depth 128"));
  }
#else
  EXPECT_THAT(a.describe(), HasSubstr("built without liburing"));
#endif
  std::printf("[ info     ] %s\n", a.describe().c_str());
}

TEST(InMemoryTier, ReportsRowsFromMemory) {
  const TestTable& t = test::test_table(test::row_cases()[0]);
  InMemoryTier tier(t.rows, t.row_bytes());
  const std::vector<int64_t> ids = {3, 3, 9};
  std::vector<std::byte> out(3 * static_cast<size_t>(t.row_bytes()));
  FetchReport expected;
  expected.rows = expected.rows_from_memory = 3;
  expected.bytes_read = 3 * t.row_bytes();
  EXPECT_EQ(tier.fetch(ids, out), expected);
}

TEST(InMemoryTier, FromSplitInterleavesScales) {
  const TestTable& t = test::test_table(test::row_cases()[5]);  // fp8, 85 + 3 bytes
  const int64_t db = t.info.data_bytes_per_row(), sb = t.info.scale_bytes_per_row();
  ASSERT_EQ(sb, 3);
  std::vector<std::byte> data, scales;
  for (int64_t g = 0; g < t.num_rows(); ++g) {
    const std::byte* r = t.rows.data() + g * t.row_bytes();
    data.insert(data.end(), r, r + db);
    scales.insert(scales.end(), r + db, r + db + sb);
  }
  const InMemoryTier tier = InMemoryTier::from_split(data, scales, db, sb);
  ASSERT_EQ(tier.num_rows(), t.num_rows());
  const std::vector<int64_t> ids = {0, 17, t.num_rows() - 1};
  std::vector<std::byte> out(3 * static_cast<size_t>(t.row_bytes()));
  tier.fetch(ids, out);
  EXPECT_EQ(out, test::reference_rows(t, ids));
  try {
    InMemoryTier::from_split(data, std::span(scales).first(10), db, sb, "split");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("split: 8000 rows need 24000 scale bytes, found 10"));
  }
}

TEST(InMemoryTier, RejectsRaggedStorage) {
  try {
    InMemoryTier tier(std::vector<std::byte>(10), 4, "ragged");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("ragged: 10 bytes are not a whole number of 4-byte rows"));
  }
}

}  // namespace
}  // namespace engram
