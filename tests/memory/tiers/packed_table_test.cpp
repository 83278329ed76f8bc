// The packed table format: pack -> load round trips for every row layout, the documented byte
// layout, the streaming writer (progress, atomic rename, abandoned packs), and rejection of
// truncated or corrupted files with errors naming the file and what is wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engram/memory/codec.hpp"
#include "engram/memory/packed_writer.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "memory/tiers/tier_test_support.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using test::TestTable;
using ::testing::HasSubstr;

std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

void write_file(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Re-seals the header checksum (in the header and the footer) after a deliberate header edit, so
// that the check under test is the one that fires.
void reseal_header(std::vector<std::byte>& bytes) {
  const int64_t json_bytes = static_cast<int64_t>(detail::load_le64(bytes.data() + 16));
  std::vector<std::byte> header(bytes.begin(), bytes.begin() + 128 + json_bytes);
  detail::store_le64(header.data() + 120, 0);
  const uint64_t checksum = detail::xxh3_64(header.data(), static_cast<int64_t>(header.size()));
  detail::store_le64(bytes.data() + 120, checksum);
  std::byte* footer = bytes.data() + bytes.size() - 64;
  detail::store_le64(footer + 32, checksum);
  detail::store_le64(footer + 56, detail::xxh3_64(footer, 56));
}

// Expects opening `path` to fail with a message naming the file and containing `what`.
void expect_open_error(const std::string& path, const std::string& what) {
  try {
    PackedTableFile file(path);
    ADD_FAILURE() << "opened a bad file; expected an error containing: " << what;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ":"));
    EXPECT_THAT(e.what(), HasSubstr(what));
  }
}

class PackedTableTest : public ::testing::Test {
 protected:
  // A fresh copy of a packed table that a test may damage.
  std::string copy_of(const TestTable& t, const std::string& name) {
    const std::string path = dir_.file(name);
    std::filesystem::copy_file(t.packed_path, path,
                               std::filesystem::copy_options::overwrite_existing);
    return path;
  }
  test::ScratchDir dir_{"packed"};
};

TEST_F(PackedTableTest, RoundTripsEveryRowLayout) {
  for (const test::RowCase& row_case : test::row_cases()) {
    SCOPED_TRACE("row case " + row_case.name);
    const TestTable& t = test::test_table(row_case);
    const PackedTableFile file(t.packed_path);
    EXPECT_EQ(file.info().to_json(), t.info.to_json());
    EXPECT_EQ(file.info().config.to_json(), t.info.config.to_json());
    EXPECT_EQ(file.num_rows(), t.num_rows());
    EXPECT_EQ(file.row_bytes(), t.row_bytes());
    file.verify_pages();
    const InMemoryTier mapped = map_packed_table(file);
    for (int64_t g = 0; g < t.num_rows(); ++g) {
      if (std::memcmp(mapped.row(g), t.rows.data() + g * t.row_bytes(),
                      static_cast<size_t>(t.row_bytes())) != 0) {
        ADD_FAILURE() << "row " << g << " differs after the round trip";
        break;
      }
    }
  }
}

TEST_F(PackedTableTest, LayoutMatchesTheDocumentedFormat) {
  for (const test::RowCase& row_case : test::row_cases()) {
    SCOPED_TRACE("row case " + row_case.name);
    const TestTable& t = test::test_table(row_case);
    const std::vector<std::byte> bytes = read_file(t.packed_path);
    const PackedTableFile file(t.packed_path);
    const PackedLayout& l = file.layout();
    // Pages are whole 4 KiB multiples, rows never straddle a page, the data region is aligned.
    EXPECT_EQ(l.page_bytes % 4096, 0);
    EXPECT_EQ(l.page_bytes, t.row_bytes() <= 4096 ? 4096 : (t.row_bytes() + 4095) / 4096 * 4096);
    EXPECT_EQ(l.rows_per_page, l.page_bytes / t.row_bytes());
    EXPECT_LE(l.rows_per_page * l.row_bytes, l.page_bytes);
    EXPECT_EQ(l.data_offset % 4096, 0);
    EXPECT_EQ(static_cast<int64_t>(bytes.size()), l.file_bytes);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()), 8), "ENGRAMPK");
    EXPECT_EQ(detail::load_le32(bytes.data() + 8), 1u);
    EXPECT_EQ(detail::load_le64(bytes.data() + 48), static_cast<uint64_t>(l.rows_per_page));
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()) + l.footer_offset, 8),
              "ENGRAMFT");
    // Row g is at data_offset + (g / rpp) * page_bytes + (g % rpp) * row_bytes; the rest of the
    // page is zero; page checksums are XXH3-64 seeded with the page index.
    for (int64_t g : {int64_t{0}, l.rows_per_page - 1, l.rows_per_page, t.num_rows() - 1}) {
      if (g >= t.num_rows()) continue;
      const int64_t at =
          l.data_offset + g / l.rows_per_page * l.page_bytes + g % l.rows_per_page * l.row_bytes;
      EXPECT_EQ(std::memcmp(bytes.data() + at, t.rows.data() + g * t.row_bytes(),
                            static_cast<size_t>(t.row_bytes())),
                0)
          << "row " << g;
    }
    const int64_t last_page = l.num_pages - 1;
    const int64_t rows_in_last = t.num_rows() - last_page * l.rows_per_page;
    for (int64_t b = l.page_offset(last_page) + rows_in_last * l.row_bytes;
         b < l.page_offset(last_page) + l.page_bytes; ++b)
      ASSERT_EQ(bytes[static_cast<size_t>(b)], std::byte{0}) << "padding byte " << b;
    for (int64_t p : {int64_t{0}, last_page}) {
      const uint64_t stored = detail::load_le64(bytes.data() + l.checksum_table_offset + 8 * p);
      EXPECT_EQ(stored,
                XXH3_64bits_withSeed(bytes.data() + l.page_offset(p),
                                     static_cast<size_t>(l.page_bytes), static_cast<uint64_t>(p)));
    }
  }
}

TEST_F(PackedTableTest, RowBytesAgreeWithTheCodecs) {
  for (const test::RowCase& row_case : test::row_cases()) {
    SCOPED_TRACE("row case " + row_case.name);
    const PackedTableInfo info = test::test_info(row_case);
    const int64_t d = row_case.row_dim;
    int64_t expected = 0;
    if (row_case.codec == "f32") expected = codec::F32::row_bytes(d) + codec::F32::scale_bytes(d);
    if (row_case.codec == "bf16")
      expected = codec::BF16::row_bytes(d) + codec::BF16::scale_bytes(d);
    if (row_case.codec == "fp8_e4m3")
      expected = codec::Fp8E4M3::row_bytes(d) + codec::Fp8E4M3::scale_bytes(d);
    EXPECT_EQ(info.row_bytes(), expected);
  }
}

TEST_F(PackedTableTest, AppendSplitInterleavesScales) {
  const TestTable& t = test::test_table(test::row_cases()[4]);  // fp8, 128 + 4 bytes
  const int64_t db = t.info.data_bytes_per_row(), sb = t.info.scale_bytes_per_row();
  ASSERT_EQ(sb, 4);
  std::vector<std::byte> data, scales;
  for (int64_t g = 0; g < t.num_rows(); ++g) {
    const std::byte* r = t.rows.data() + g * t.row_bytes();
    data.insert(data.end(), r, r + db);
    scales.insert(scales.end(), r + db, r + db + sb);
  }
  const std::string path = dir_.file("split.engram");
  PackedTableWriter writer(path, t.info);
  const int64_t half = t.num_rows() / 2;
  writer.append_split(std::span(data).first(static_cast<size_t>(half * db)),
                      std::span(scales).first(static_cast<size_t>(half * sb)));
  writer.append_split(std::span(data).subspan(static_cast<size_t>(half * db)),
                      std::span(scales).subspan(static_cast<size_t>(half * sb)));
  writer.finish();
  EXPECT_EQ(read_file(path), read_file(t.packed_path));
}

TEST_F(PackedTableTest, PackTableFromATierEqualsTheWriter) {
  const TestTable& t = test::test_table(test::row_cases()[2]);
  InMemoryTier source(t.rows, t.row_bytes());
  const std::string path = dir_.file("from_tier.engram");
  pack_table(path, t.info, source, {}, 999);
  EXPECT_EQ(read_file(path), read_file(t.packed_path));
}

TEST_F(PackedTableTest, ReportsProgress) {
  const TestTable& t = test::test_table(test::row_cases()[1]);
  std::vector<PackProgress> calls;
  const std::string path = dir_.file("progress.engram");
  {
    PackedTableWriter writer(
        path, t.info, [&](const PackProgress& p) { calls.push_back(p); },
        /*progress_interval_s=*/0, /*chunk_bytes=*/64 << 10);
    writer.append(t.rows);
    writer.finish();
  }
  ASSERT_GE(calls.size(), 5u);  // 1.25 MB in 64 KiB chunks, plus the final call
  for (size_t i = 1; i < calls.size(); ++i) {
    EXPECT_GE(calls[i].rows_done, calls[i - 1].rows_done);
    EXPECT_GE(calls[i].bytes_written, calls[i - 1].bytes_written);
  }
  EXPECT_EQ(calls.back().rows_done, t.num_rows());
  EXPECT_EQ(calls.back().rows_total, t.num_rows());
  EXPECT_EQ(calls.back().seconds_left, 0);
  EXPECT_GT(calls.back().megabytes_per_second, 0);
  EXPECT_EQ(calls.front().rows_total, t.num_rows());
  EXPECT_GT(calls.front().seconds_left, 0);
}

TEST_F(PackedTableTest, AbandonedPackLeavesNoFileAndKeepsTheOldOne) {
  const TestTable& t = test::test_table(test::row_cases()[1]);
  const std::string path = dir_.file("abandoned.engram");
  {
    PackedTableWriter writer(path, t.info, {}, 0.5, 64 << 10);
    writer.append(std::span(t.rows).first(t.rows.size() / 2));
    EXPECT_TRUE(std::filesystem::exists(writer.temp_path()));
    EXPECT_FALSE(std::filesystem::exists(path));
  }  // destroyed before finish(): as if the process was interrupted
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  for (const auto& e :
       std::filesystem::directory_iterator(std::filesystem::path(path).parent_path()))
    EXPECT_EQ(e.path().filename().string().find("abandoned.engram.tmp"), std::string::npos);

  // A good file at the path survives an abandoned re-pack untouched.
  test::write_packed(path, t.info, t.rows);
  const std::vector<std::byte> good = read_file(path);
  {
    PackedTableWriter writer(path, t.info);
    writer.append(std::span(t.rows).first(static_cast<size_t>(t.row_bytes())));
  }
  EXPECT_EQ(read_file(path), good);
  PackedTableFile reopened(path);
  reopened.verify_pages();
}

// Packs of one path at once each finish, and leave one complete, verifiable table and no
// temporaries (they once shared "<path>.tmp": truncated each other's bytes, failed to rename).
TEST_F(PackedTableTest, ConcurrentPacksOfOnePathLeaveOneCompleteTable) {
  const TestTable& t = test::test_table(test::row_cases()[1]);
  const std::filesystem::path dir = dir_.file("concurrent");
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "shared.engram").string();
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::mutex mutex;
    std::vector<std::string> errors;
    std::vector<std::thread> threads;
    for (int w = 0; w < 4; ++w)
      threads.emplace_back([&] {
        try {
          test::write_packed(path, t.info, t.rows, 4 << 10);
        } catch (const std::exception& e) {
          const std::lock_guard<std::mutex> lock(mutex);
          errors.push_back(e.what());
        }
      });
    for (auto& th : threads) th.join();
    EXPECT_TRUE(errors.empty()) << errors.front();
    PackedTableFile table(path);
    table.verify_pages();
    EXPECT_EQ(read_file(path).size(), static_cast<size_t>(table.layout().file_bytes));
    std::vector<std::string> entries;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      entries.push_back(e.path().filename().string());
    EXPECT_EQ(entries, std::vector<std::string>{"shared.engram"});
  }
}

TEST_F(PackedTableTest, WriterRejectsWrongRowCounts) {
  const TestTable& t = test::test_table(test::row_cases()[1]);
  const std::string path = dir_.file("counts.engram");
  PackedTableWriter writer(path, t.info);
  writer.append(std::span(t.rows).first(static_cast<size_t>(10 * t.row_bytes())));
  try {
    writer.finish();
    ADD_FAILURE() << "finish() accepted a short table";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("finish() after 10 of " + std::to_string(t.num_rows())));
  }
  try {
    writer.append(t.rows);
    ADD_FAILURE() << "append past the end accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("overflows the table's"));
  }
  try {
    writer.append(std::span(t.rows).first(static_cast<size_t>(t.row_bytes()) + 1));
    ADD_FAILURE() << "ragged append accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not a whole number of"));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(PackedTableTest, InfoValidationNamesTheField) {
  const test::RowCase& c = test::row_cases()[2];
  PackedTableInfo info = test::test_info(c);
  auto expect_invalid = [](const PackedTableInfo& bad, const std::string& what) {
    try {
      bad.validate("info");
      ADD_FAILURE() << "accepted; expected " << what;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(what));
    }
  };
  PackedTableInfo bad = info;
  bad.codec = "int4";
  expect_invalid(bad, "field 'codec' must be one of");
  bad = info;
  bad.row_dim += 1;
  expect_invalid(bad, "field 'row_dim' is 86 but the config implies 85");
  bad = info;
  bad.offsets[2] += 1;
  expect_invalid(bad, "field 'offsets' entry 2");
  bad = info;
  bad.primes.pop_back();
  expect_invalid(bad, "field 'primes' has 3 entries, expected");
  bad = info;
  bad.multipliers = {1};
  expect_invalid(bad, "field 'multipliers' has 1 entries, expected max_ngram_size = 3");
  bad = info;
  bad.num_rows += 1;
  expect_invalid(bad, "field 'num_rows'");
  bad = info;
  bad.layer_id = 99;
  expect_invalid(bad, "layer 99 is not in layer_ids");
}

// ------------------------------------------------------------------ rejection of bad files

TEST_F(PackedTableTest, RejectsTruncatedFiles) {
  const TestTable& t = test::test_table(test::row_cases()[2]);
  const std::vector<std::byte> bytes = read_file(t.packed_path);
  const PackedLayout l = PackedTableFile(t.packed_path).layout();
  struct Case {
    int64_t size;
    std::string what;
  };
  const std::vector<Case> cases = {
      {0, "truncated: 0 bytes cannot even hold the 8-byte magic"},
      {5, "truncated: 5 bytes cannot even hold"},
      {100, "truncated: 100 bytes cannot hold the 128-byte header"},
      {200, "cannot hold the header and its"},
      {l.data_offset + 3 * l.page_bytes + 17,
       "truncated: " + std::to_string(l.data_offset + 3 * l.page_bytes + 17) +
           " bytes, the header says " + std::to_string(l.file_bytes)},
      {l.file_bytes - 1, "truncated: " + std::to_string(l.file_bytes - 1) + " bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("size " + std::to_string(c.size));
    const std::string path = dir_.file("truncated.engram");
    write_file(path, std::vector<std::byte>(bytes.begin(), bytes.begin() + c.size));
    expect_open_error(path, c.what);
  }
}

TEST_F(PackedTableTest, RejectsTrailingBytes) {
  const TestTable& t = test::test_table(test::row_cases()[2]);
  std::vector<std::byte> bytes = read_file(t.packed_path);
  bytes.resize(bytes.size() + 4096);
  const std::string path = dir_.file("trailing.engram");
  write_file(path, bytes);
  expect_open_error(path, "4096 unexpected trailing bytes after the footer");
}

TEST_F(PackedTableTest, RejectsWrongMagicAndVersion) {
  const TestTable& t = test::test_table(test::row_cases()[2]);
  std::vector<std::byte> bytes = read_file(t.packed_path);
  const std::string path = dir_.file("header.engram");
  auto edited = bytes;
  edited[0] = std::byte{'X'};
  write_file(path, edited);
  expect_open_error(path, "not an engram packed table (bad magic \"XNGRAMPK\"");

  edited = bytes;
  detail::store_le32(edited.data() + 8, 2);
  write_file(path, edited);
  expect_open_error(path, "unsupported packed table version 2 (this build reads version 1)");

  // A safetensors file is not a packed table.
  write_file(path, read_file(test::data_path("io/oracle_small.safetensors")));
  expect_open_error(path, "not an engram packed table");
}

TEST_F(PackedTableTest, RejectsCorruptedHeaderFooterAndChecksumTable) {
  const TestTable& t = test::test_table(test::row_cases()[2]);
  const std::vector<std::byte> bytes = read_file(t.packed_path);
  const PackedLayout l = PackedTableFile(t.packed_path).layout();
  const std::string path = dir_.file("corrupt.engram");

  auto edited = bytes;
  edited[128 + 20] ^= std::byte{0x01};  // inside the metadata JSON
  write_file(path, edited);
  expect_open_error(path, "header checksum mismatch");

  edited = bytes;
  detail::store_le64(edited.data() + 40, static_cast<uint64_t>(l.row_bytes + 4));  // row_bytes
  reseal_header(edited);
  write_file(path, edited);
  expect_open_error(path, "header field 'row_bytes' is " + std::to_string(l.row_bytes + 4) +
                              ", but the metadata implies " + std::to_string(l.row_bytes));

  edited = bytes;
  edited[static_cast<size_t>(l.checksum_table_offset + 8 * 3 + 2)] ^= std::byte{0x40};
  write_file(path, edited);
  expect_open_error(path, "page checksum table is corrupted");

  edited = bytes;
  edited[static_cast<size_t>(l.footer_offset + 9)] ^= std::byte{0x01};
  write_file(path, edited);
  expect_open_error(path, "footer checksum mismatch");

  edited = bytes;
  edited[static_cast<size_t>(l.footer_offset)] = std::byte{'Z'};
  write_file(path, edited);
  expect_open_error(path, "bad footer magic \"ZNGRAMFT\"");
}

TEST_F(PackedTableTest, CorruptedPageIsNamedByEveryReader) {
  const TestTable& t = test::test_table(test::row_cases()[2]);  // 12 rows per page
  const std::string path = copy_of(t, "bad_page.engram");
  const PackedLayout l = PackedTableFile(path).layout();
  const int64_t bad_page = 7;
  {
    std::vector<std::byte> bytes = read_file(path);
    bytes[static_cast<size_t>(l.page_offset(bad_page) + 100)] ^= std::byte{0x04};
    write_file(path, bytes);
  }
  const std::string what = "checksum mismatch in page 7 (rows 84..95, file offset " +
                           std::to_string(l.page_offset(bad_page)) + ")";
  const PackedTableFile file(path);  // opening does not read pages
  try {
    file.verify_pages();
    ADD_FAILURE() << "verify_pages missed the bad page";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ": " + what));
  }
  try {
    map_packed_table(file);
    ADD_FAILURE() << "map_packed_table missed the bad page";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(what));
  }
  InMemoryTier unverified = map_packed_table(file, /*verify=*/false);
  EXPECT_NE(std::memcmp(unverified.row(84), t.rows.data() + 84 * t.row_bytes(),
                        static_cast<size_t>(t.row_bytes())),
            0)
      << "the flipped byte should be visible without verification (else this test is vacuous)";

  DirectIOTier tier(path);
  std::vector<std::byte> out(4 * static_cast<size_t>(t.row_bytes()));
  const std::vector<int64_t> good_ids = {0, 83, 96, t.num_rows() - 1};
  tier.fetch(good_ids, out);
  EXPECT_EQ(out, test::reference_rows(t, good_ids));
  const std::vector<int64_t> ids = {0, 90};
  try {
    tier.fetch(ids, out);
    ADD_FAILURE() << "DirectIOTier returned rows of a corrupted page";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ": " + what));
  }
}

}  // namespace
}  // namespace engram
