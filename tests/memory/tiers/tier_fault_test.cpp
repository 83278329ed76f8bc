// Fault injection: I/O errors, short reads and corrupted pages (in transit and on disk) give an
// engram::Error naming the file, page and cause, never wrong rows; tiers recover once the fault is
// gone; a cache in front of a failing tier admits nothing from the failed batch.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engram/memory/tiers/cached_tier.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "memory/tiers/tier_test_support.hpp"

namespace engram {
namespace {

using test::TestTable;
using ::testing::HasSubstr;
using FaultReader = test::FaultInjectingPageReader<AutoPageReader>;
using Fault = FaultReader::Fault;
using FaultyDirectIO = DirectIOTierT<FaultReader>;

struct Backend {
  std::string name;
  PageReaderOptions options;
};

std::vector<Backend> backends() {
  std::vector<Backend> out;
  PageReaderOptions pread;
  pread.backend = PageReaderOptions::Backend::kPread;
  pread.pread_threads = 4;
  out.push_back({"pread x4", pread});
  pread.pread_threads = 1;
  out.push_back({"pread x1", pread});
#if ENGRAM_HAVE_URING
  PageReaderOptions uring;
  uring.backend = PageReaderOptions::Backend::kUring;
  uring.queue_depth = 16;
  out.push_back({"io_uring", uring});
#endif
  return out;
}

// Row ids touching many pages, including every row of `page`.
std::vector<int64_t> ids_touching(const PackedLayout& l, int64_t page) {
  std::vector<int64_t> ids;
  for (int64_t g = 0; g < l.num_rows; g += 7) ids.push_back(g);
  for (int64_t g = page * l.rows_per_page; g < (page + 1) * l.rows_per_page; ++g) ids.push_back(g);
  return ids;
}

TEST(TierFaults, InjectedFaultsGiveNamedErrorsAndNeverRows) {
  const TestTable& t = test::test_table(test::row_cases()[3]);  // 326-byte rows, 12 per page
  for (const Backend& backend : backends()) {
    for (Fault fault : {Fault::kEio, Fault::kShortRead, Fault::kFlipByte}) {
      SCOPED_TRACE(backend.name + ", fault " + std::to_string(static_cast<int>(fault)));
      DirectIOOptions options;
      options.reader = backend.options;
      FaultyDirectIO tier(t.packed_path, options);
      const PackedLayout& l = tier.file().layout();
      const int64_t page = 5;
      tier.reader().inject(fault, l.page_offset(page));
      const std::vector<int64_t> ids = ids_touching(l, page);
      std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()));
      std::string expected;
      if (fault == Fault::kEio) expected = "I/O error: Input/output error";
      if (fault == Fault::kShortRead) expected = "short read: got 1000 of 4096 bytes";
      if (fault == Fault::kFlipByte) expected = "checksum mismatch in page 5 (rows 60..71";
      try {
        tier.fetch(ids, out);
        ADD_FAILURE() << "fetch returned rows despite the fault";
      } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr(t.packed_path + ":"));
        EXPECT_THAT(e.what(), HasSubstr(expected));
        if (fault != Fault::kFlipByte) {
          EXPECT_THAT(e.what(), HasSubstr("page 5 (file offset " +
                                          std::to_string(l.page_offset(page)) + ", 4096 bytes"));
        }
      }
      EXPECT_GE(tier.reader().faults_fired(), 1);

      // Batches that avoid the page still work while the fault is armed...
      const std::vector<int64_t> other = {0, 1, 59, 72, t.num_rows() - 1};
      out.resize(other.size() * static_cast<size_t>(t.row_bytes()));
      tier.fetch(other, out);
      EXPECT_EQ(out, test::reference_rows(t, other));
      // ...and once it is gone the same batch gives the right rows (no poisoned state).
      tier.reader().clear();
      out.resize(ids.size() * static_cast<size_t>(t.row_bytes()));
      tier.fetch(ids, out);
      EXPECT_EQ(out, test::reference_rows(t, ids));
    }
  }
}

TEST(TierFaults, RepeatedFaultsInLargeBatchesNeverHang) {
  const TestTable& t = test::test_table(test::row_cases()[0]);  // 40 pages of 1024 rows
  for (const Backend& backend : backends()) {
    SCOPED_TRACE(backend.name);
    DirectIOOptions options;
    options.reader = backend.options;
    FaultyDirectIO tier(t.packed_path, options);
    const PackedLayout& l = tier.file().layout();
    std::vector<int64_t> ids;
    for (int64_t g = 0; g < l.num_rows; g += 97) ids.push_back(g);
    std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()));
    for (int64_t round = 0; round < 30; ++round) {
      const int64_t page = round % l.num_pages;
      tier.reader().inject(round % 2 ? Fault::kEio : Fault::kFlipByte, l.page_offset(page));
      EXPECT_THROW(tier.fetch(ids, out), Error) << "round " << round;
    }
    tier.reader().clear();
    tier.fetch(ids, out);
    EXPECT_EQ(out, test::reference_rows(t, ids));
  }
}

TEST(TierFaults, OnDiskCorruptionIsCaughtOnlyByTheChecksum) {
  const TestTable& t = test::test_table(test::row_cases()[4]);  // fp8 rows with scales
  test::ScratchDir dir("faults");
  const std::string path = dir.file("flipped.engram");
  std::filesystem::copy_file(t.packed_path, path);
  const PackedLayout l = PackedTableFile(path).layout();
  const int64_t page = 3, row = page * l.rows_per_page + 2;
  {
    detail::FileDescriptor fd(::open(path.c_str(), O_RDWR));
    const int64_t at = l.page_offset(page) + 2 * l.row_bytes + l.row_bytes - 1;  // a scale byte
    std::byte b{};
    ASSERT_EQ(::pread(fd.get(), &b, 1, at), 1);
    b ^= std::byte{0x01};
    ASSERT_EQ(::pwrite(fd.get(), &b, 1, at), 1);
  }
  const std::vector<int64_t> ids = {0, row};
  std::vector<std::byte> out(2 * static_cast<size_t>(t.row_bytes()));
  for (DirectIOOptions::Mode mode :
       {DirectIOOptions::Mode::kAuto, DirectIOOptions::Mode::kBuffered}) {
    SCOPED_TRACE(mode == DirectIOOptions::Mode::kAuto ? "auto" : "buffered");
    DirectIOOptions options;
    options.mode = mode;
    DirectIOTier checked(path, options);
    try {
      checked.fetch(ids, out);
      ADD_FAILURE() << "corrupted page returned";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(path + ": checksum mismatch in page 3"));
      EXPECT_THAT(e.what(), HasSubstr("the file is corrupted"));
    }
    options.verify_checksums = false;  // the check is what stands between the flip and the caller
    DirectIOTier unchecked(path, options);
    unchecked.fetch(ids, out);
    EXPECT_NE(out, test::reference_rows(t, ids));
  }
}

TEST(TierFaults, FileTruncatedAfterOpenIsAShortRead) {
  const TestTable& t = test::test_table(test::row_cases()[1]);  // 16 rows per page
  for (DirectIOOptions::Mode mode :
       {DirectIOOptions::Mode::kAuto, DirectIOOptions::Mode::kBuffered}) {
    for (const Backend& backend : backends()) {
      SCOPED_TRACE(backend.name + (mode == DirectIOOptions::Mode::kAuto ? ", auto" : ", buffered"));
      test::ScratchDir dir("truncated");
      const std::string path = dir.file("shrinking.engram");
      std::filesystem::copy_file(t.packed_path, path);
      DirectIOOptions options;
      options.mode = mode;
      options.reader = backend.options;
      DirectIOTier tier(path, options);
      const PackedLayout& l = tier.file().layout();
      std::filesystem::resize_file(path, static_cast<uintmax_t>(l.page_offset(3)));
      std::vector<std::byte> out(2 * static_cast<size_t>(t.row_bytes()));
      const std::vector<int64_t> head = {0, 3 * 16 - 1};
      tier.fetch(head, out);
      EXPECT_EQ(out, test::reference_rows(t, head));
      const std::vector<int64_t> ids = {1, 10 * 16};
      try {
        tier.fetch(ids, out);
        ADD_FAILURE() << "rows past the end of a truncated file returned";
      } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr(path + ": page 10 (file offset " +
                                        std::to_string(l.page_offset(10))));
        EXPECT_THAT(e.what(), HasSubstr("short read: got 0 of 4096 bytes; the file was truncated"));
      }
    }
  }
}

TEST(TierFaults, CacheOverAFailingTierAdmitsNothing) {
  const TestTable& t = test::test_table(test::row_cases()[2]);  // 12 rows per page
  CacheOptions cache_options;
  cache_options.capacity_bytes = 100 * t.row_bytes();
  CachedTier<FaultyDirectIO> cache(cache_options, t.packed_path, DirectIOOptions{});
  const PackedLayout& l = cache.inner().file().layout();
  cache.inner().reader().inject(Fault::kEio, l.page_offset(2));
  const std::vector<int64_t> ids = {1, 25, 30, 40};  // pages 0, 2, 2, 3
  std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()));
  EXPECT_THROW(cache.fetch(ids, out), Error);
  EXPECT_EQ(cache.stats().resident_rows, 0);
  EXPECT_EQ(cache.stats().misses, 0);
  for (int64_t id : ids) EXPECT_FALSE(cache.contains(id)) << id;
  cache.inner().reader().clear();
  cache.fetch(ids, out);
  EXPECT_EQ(out, test::reference_rows(t, ids));
  cache.fetch(ids, out);
  EXPECT_EQ(out, test::reference_rows(t, ids));
  EXPECT_EQ(cache.stats().hits, 4);
}

TEST(TierFaults, ForcedDirectModeAndBadPathsAreNamed) {
  try {
    DirectIOTier tier("/nonexistent/dir/table.engram");
    ADD_FAILURE() << "opened a missing file";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("/nonexistent/dir/table.engram: cannot open packed table: No such file"));
  }
  const TestTable& t = test::test_table(test::row_cases()[1]);
  DirectIOOptions options;
  options.mode = DirectIOOptions::Mode::kDirect;
  // Where the filesystem serves O_DIRECT (probed independently) kDirect uses it and reads the
  // reference rows; where it does not, kDirect is an error naming O_DIRECT.
  if (test::direct_io_supported(test::shared_scratch().path())) {
    DirectIOTier tier(t.packed_path, options);
    EXPECT_TRUE(tier.direct());
    EXPECT_THAT(tier.describe(), HasSubstr("O_DIRECT"));
    const std::vector<int64_t> ids = {0, 17, t.num_rows() - 1, 17};
    std::vector<std::byte> out(ids.size() * static_cast<size_t>(t.row_bytes()));
    EXPECT_EQ(tier.fetch(ids, out).rows_from_storage, 4);
    EXPECT_EQ(out, test::reference_rows(t, ids));
  } else {
    try {
      DirectIOTier tier(t.packed_path, options);
      ADD_FAILURE() << "kDirect opened a file whose filesystem refuses O_DIRECT";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("cannot read with O_DIRECT"));
    }
  }
}

}  // namespace
}  // namespace engram
