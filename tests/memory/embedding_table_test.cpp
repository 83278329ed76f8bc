// EmbeddingTableT: fast gather == scalar reference gather for every codec and option (dedup,
// prefetch, threads), layout against per-row decodes, bounds checks with their messages,
// allocation-free steady state, and the fused layer-14 golden rows of the PyTorch oracle (via
// safetensors).
#include "engram/memory/embedding_table.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "engram/io/safetensors.hpp"
#include "engram/memory/safetensors_table.hpp"
#include "support/error_of.hpp"
#include "support/test_data.hpp"

// Counts heap allocations so that the steady-state gather can be shown to make none.
// (GCC cannot see that the replaced operator new pairs malloc with these frees.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace engram {
namespace {

using test::error_of;

using ::testing::HasSubstr;

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
uint16_t bits_of(BFloat16 h) { return h.bits; }

template <class Out>
bool same_value(Out a, Out b) {
  if (bits_of(a) == bits_of(b)) return true;
  if constexpr (std::is_same_v<Out, float>) {
    return std::isnan(a) && std::isnan(b);
  } else {
    return std::isnan(to_float(a)) && std::isnan(to_float(b));
  }
}

constexpr int64_t kPad = 16;

template <class Out>
Out sentinel() {
  if constexpr (std::is_same_v<Out, float>) {
    return std::bit_cast<float>(0x7FBADBADu);
  } else {
    return BFloat16{0x7FBD};
  }
}

template <class Out>
std::vector<Out> padded(int64_t n) {
  return std::vector<Out>(static_cast<size_t>(n + kPad), sentinel<Out>());
}

template <class Out>
bool sentinels_intact(const std::vector<Out>& v, int64_t n) {
  for (size_t i = static_cast<size_t>(n); i < v.size(); ++i)
    if (bits_of(v[i]) != bits_of(sentinel<Out>())) return false;
  return true;
}

template <class Codec>
InMemoryTableT<Codec> random_table(int64_t row_dim, std::vector<int64_t> column_rows,
                                   uint64_t seed) {
  InMemoryTableT<Codec> table(row_dim, std::move(column_rows), "test table");
  std::mt19937_64 rng(seed);
  for (auto& b : table.row_storage()) b = static_cast<std::byte>(rng() & 0xFF);
  for (auto& b : table.scale_storage()) b = static_cast<std::byte>(rng() & 0xFF);
  return table;
}

// Hash ids mixing uniform ids and heavily repeated small ids (as Zipfian n-gram rows).
std::vector<int64_t> random_ids(std::span<const int64_t> column_rows, int64_t tokens,
                                uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const auto cols = static_cast<int64_t>(column_rows.size());
  std::vector<int64_t> ids(static_cast<size_t>(tokens * cols));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t c = 0; c < cols; ++c) {
      const double u = unit(rng);
      const double skewed = (rng() & 1) ? u : u * u * u * u;
      ids[t * cols + c] =
          std::min<int64_t>(column_rows[c] - 1, static_cast<int64_t>(skewed * column_rows[c]));
    }
  }
  return ids;
}

// ------------------------------------------------------------------ typed conformance suite

template <class Codec>
class TableConformance : public ::testing::Test {};
TYPED_TEST_SUITE_P(TableConformance);

template <class Codec, class Out>
void check_fast_matches_reference() {
  const std::vector<int64_t> primes = {31, 37, 41};
  for (int64_t row_dim : {1, 64, 85, 163}) {
    const auto storage = random_table<Codec>(row_dim, primes, 11 + row_dim);
    const auto table = storage.view();
    GatherWorkspace workspace;
    for (int64_t tokens : {0, 1, 2, 57, 300}) {
      const auto ids = random_ids(primes, tokens, 100 + tokens);
      const int64_t n = tokens * table.output_dim();
      auto ref = padded<Out>(n);
      table.gather_reference(ids, std::span<Out>(ref.data(), static_cast<size_t>(n)));
      ASSERT_TRUE(sentinels_intact(ref, n));
      for (bool dedup : {true, false}) {
        for (int prefetch : {0, 3, 16}) {
          for (int threads : {1, 2, 3}) {
            SCOPED_TRACE(std::string(Codec::kName) + " row_dim " + std::to_string(row_dim) +
                         " tokens " + std::to_string(tokens) + " dedup " + std::to_string(dedup) +
                         " prefetch " + std::to_string(prefetch) + " threads " +
                         std::to_string(threads));
            auto fast = padded<Out>(n);
            table.gather(ids, std::span<Out>(fast.data(), static_cast<size_t>(n)), workspace,
                         GatherOptions{dedup, prefetch, threads});
            for (int64_t i = 0; i < n; ++i)
              ASSERT_TRUE(same_value(fast[i], ref[i])) << "value " << i;
            ASSERT_TRUE(sentinels_intact(fast, n));
          }
        }
      }
    }
  }
}

TYPED_TEST_P(TableConformance, FastGatherMatchesReferenceFloat) {
  check_fast_matches_reference<TypeParam, float>();
}

TYPED_TEST_P(TableConformance, FastGatherMatchesReferenceBFloat16) {
  check_fast_matches_reference<TypeParam, BFloat16>();
}

// Row (t, c) of the output is the decoded row offsets[c] + id: checked against decode_row and
// against the rows' bytes decoded directly at the expected global offset.
TYPED_TEST_P(TableConformance, GatherLayoutIsColumnBlocksOfDecodedRows) {
  using Codec = TypeParam;
  const std::vector<int64_t> primes = {5, 7, 11, 13};
  const int64_t row_dim = 85;
  const auto storage = random_table<Codec>(row_dim, primes, 5);
  const auto table = storage.view();
  EXPECT_EQ(table.total_rows(), 36);
  EXPECT_EQ(table.output_dim(), 4 * 85);
  EXPECT_THAT(std::vector<int64_t>(table.column_offsets().begin(), table.column_offsets().end()),
              ::testing::ElementsAre(0, 5, 12, 23));
  const std::vector<int64_t> ids = {0, 6, 10, 12, 4, 0, 0, 3};  // 2 tokens, includes both ends
  std::vector<float> out(2 * 4 * 85);
  GatherWorkspace workspace;
  table.gather(ids, std::span<float>(out), workspace);
  std::vector<float> row(85);
  for (int64_t t = 0; t < 2; ++t) {
    for (int64_t c = 0; c < 4; ++c) {
      SCOPED_TRACE("token " + std::to_string(t) + " column " + std::to_string(c));
      const int64_t id = ids[t * 4 + c];
      table.decode_row(c, id, std::span<float>(row));
      const int64_t global = table.column_offsets()[c] + id;
      std::vector<float> direct(85);
      Codec::decode_row_reference(storage.row_storage().data() + global * Codec::row_bytes(85),
                                  storage.scale_storage().data() + global * Codec::scale_bytes(85),
                                  85, direct.data());
      for (int64_t j = 0; j < 85; ++j) {
        ASSERT_TRUE(same_value(out[(t * 4 + c) * 85 + j], row[j])) << j;
        ASSERT_TRUE(same_value(direct[j], row[j])) << j;
      }
    }
  }
}

TYPED_TEST_P(TableConformance, OutOfRangeIdsThrowNamingTokenAndColumnBeforeWriting) {
  using Codec = TypeParam;
  const std::vector<int64_t> primes = {31, 37, 41};
  const auto storage = random_table<Codec>(16, primes, 3);
  const auto table = storage.view();
  GatherWorkspace workspace;
  auto ids = random_ids(primes, 4, 9);
  auto out = padded<float>(4 * table.output_dim());
  const std::span<float> view(out.data(), static_cast<size_t>(4 * table.output_dim()));
  for (int64_t bad : {int64_t{37}, int64_t{-1}, int64_t{1} << 40}) {
    SCOPED_TRACE("bad id " + std::to_string(bad));
    auto bad_ids = ids;
    bad_ids[2 * 3 + 1] = bad;  // token 2, column 1 (prime 37)
    const std::string expected = "test table: hash id " + std::to_string(bad) +
                                 " at token 2, column 1 is out of range [0, 37)";
    EXPECT_THAT(error_of([&] { table.gather(bad_ids, view, workspace); }), HasSubstr(expected));
    EXPECT_THAT(error_of([&] { table.gather_reference(bad_ids, view); }), HasSubstr(expected));
    for (const float v : out) ASSERT_EQ(bits_of(v), bits_of(sentinel<float>())) << "wrote output";
  }
  // an id equal to the last column's prime - 1 is fine, its prime is not
  ids[3 * 3 + 2] = 40;
  EXPECT_NO_THROW(table.gather(ids, view, workspace));
  ids[3 * 3 + 2] = 41;
  EXPECT_THAT(error_of([&] { table.gather(ids, view, workspace); }),
              HasSubstr("hash id 41 at token 3, column 2 is out of range [0, 41)"));
}

TYPED_TEST_P(TableConformance, ShapeMismatchesThrow) {
  using Codec = TypeParam;
  const auto storage = random_table<Codec>(8, {31, 37, 41}, 3);
  const auto table = storage.view();
  GatherWorkspace workspace;
  std::vector<int64_t> ids(7, 0);  // not a multiple of 3 columns
  std::vector<float> out(3 * 24);
  EXPECT_THAT(error_of([&] { table.gather(ids, std::span<float>(out), workspace); }),
              HasSubstr("hash_ids has 7 values, expected a multiple of the 3 columns"));
  ids.resize(6);  // 2 tokens -> 48 outputs, 72 given
  EXPECT_THAT(error_of([&] { table.gather(ids, std::span<float>(out), workspace); }),
              HasSubstr("output has 72 values, expected 48 ([2 tokens, 3 columns x 8 values])"));
  EXPECT_THAT(error_of([&] {
                table.gather(ids, std::span<float>(out.data(), 48), workspace, {true, 8, 0});
              }),
              HasSubstr("threads must be >= 1, got 0"));
  std::vector<float> row(8);
  EXPECT_THAT(error_of([&] { table.decode_row(3, 0, std::span<float>(row)); }),
              HasSubstr("column 3 is out of range [0, 3)"));
  EXPECT_THAT(error_of([&] { table.decode_row(2, 41, std::span<float>(row)); }),
              HasSubstr("hash id 41 in column 2 is out of range [0, 41)"));
  EXPECT_THAT(error_of([&] { table.decode_row(2, 0, std::span<float>(row.data(), 7)); }),
              HasSubstr("output row has 7 values, expected row_dim = 8"));
}

REGISTER_TYPED_TEST_SUITE_P(TableConformance, FastGatherMatchesReferenceFloat,
                            FastGatherMatchesReferenceBFloat16,
                            GatherLayoutIsColumnBlocksOfDecodedRows,
                            OutOfRangeIdsThrowNamingTokenAndColumnBeforeWriting,
                            ShapeMismatchesThrow);
using AllCodecs = ::testing::Types<codec::F32, codec::BF16, codec::F16, codec::Fp8E4M3>;
INSTANTIATE_TYPED_TEST_SUITE_P(Table, TableConformance, AllCodecs);

// ------------------------------------------------------------------ construction and storage

TEST(EmbeddingTable, F32ValuesLandAtTheirOffsets) {
  // value of global row g, element j = g * 1000 + j: exact in float
  const std::vector<int64_t> primes = {3, 5};
  std::vector<float> values(8 * 4);
  for (int g = 0; g < 8; ++g)
    for (int j = 0; j < 4; ++j) values[g * 4 + j] = static_cast<float>(g * 1000 + j);
  const auto storage = InMemoryTable::encode(values, 4, primes);
  const EmbeddingTable table = storage.view();
  const std::vector<int64_t> ids = {2, 4, 0, 0};  // token 0: rows 2, 3 + 4 = 7; token 1: rows 0, 3
  std::vector<float> out(2 * 8);
  GatherWorkspace workspace;
  table.gather(ids, std::span<float>(out), workspace);
  EXPECT_THAT(out, ::testing::ElementsAre(2000, 2001, 2002, 2003, 7000, 7001, 7002, 7003,  //
                                          0, 1, 2, 3, 3000, 3001, 3002, 3003));
}

TEST(EmbeddingTable, ConstructionValidatesStorageAndColumns) {
  std::vector<std::byte> bytes(100);
  const std::span<const std::byte> rows(bytes);
  EXPECT_THAT(error_of([&] {
                EmbeddingTableT<codec::BF16>(rows, 8, {3, 4}, "t");
              }),
              HasSubstr("t: row storage holds 100 bytes, expected at least 112 (7 rows x 16 bytes "
                        "of bf16 for row_dim 8)"));
  EXPECT_NO_THROW(EmbeddingTableT<codec::BF16>(rows, 8, {3, 3}, "t"));  // 96 <= 100 bytes
  EXPECT_THAT(error_of([&] {
                EmbeddingTableT<codec::BF16>(rows, rows, 8, {3, 3}, "t");
              }),
              HasSubstr("t: codec bf16 has no scales, but 100 scale bytes were given"));
  EXPECT_THAT(error_of([&] { EmbeddingTableT<codec::F32>(rows, 0, {3}, "t"); }),
              HasSubstr("t: row_dim must be positive, got 0"));
  EXPECT_THAT(error_of([&] {
                EmbeddingTableT<codec::F32>(rows, 1, {3, 0}, "t");
              }),
              HasSubstr("t: column 1 has 0 rows, expected a positive count"));
  EXPECT_THAT(error_of([&] { EmbeddingTableT<codec::F32>(rows, 1, {}, "t"); }),
              HasSubstr("t: needs at least one column"));
  // FP8: 64 values -> 64 row bytes + 2 scale bytes per row
  std::vector<std::byte> codes(64 * 10), scales(2 * 10 - 1);
  EXPECT_THAT(error_of([&] {
                Fp8EmbeddingTable(codes, scales, 64, {4, 6}, "t");
              }),
              HasSubstr("t: scale storage holds 19 bytes, expected at least 20 (10 rows x 2 "
                        "F8_E8M0 scales for row_dim 64)"));
  scales.resize(20);
  EXPECT_NO_THROW(Fp8EmbeddingTable(codes, scales, 64, {4, 6}, "t"));
}

// 16,428 rows x 256 B = 4.2 MB: storage on the mapped (huge-page) path; zeroed, writable,
// gatherable.
TEST(EmbeddingTable, LargeInMemoryTableWorks) {
  InMemoryTableT<codec::F32> storage(64, {8209, 8219}, "large");
  ASSERT_GE(storage.row_storage().size(), size_t{4} << 20);
  for (const std::byte b : storage.row_storage()) ASSERT_EQ(b, std::byte{0});
  std::vector<float> row(64);
  for (int j = 0; j < 64; ++j) row[j] = static_cast<float>(j) - 31.5f;
  storage.set_row(8209 + 8218, row);  // the very last row
  const auto table = storage.view();
  const std::vector<int64_t> ids = {8208, 8218, 0, 0};
  std::vector<float> fast(2 * 128), ref(2 * 128);
  GatherWorkspace workspace;
  table.gather(ids, std::span<float>(fast), workspace);
  table.gather_reference(ids, std::span<float>(ref));
  EXPECT_EQ(fast, ref);
  for (int j = 0; j < 64; ++j) {
    EXPECT_EQ(fast[64 + j], row[j]) << j;  // token 0, column 1 = last row
    EXPECT_EQ(fast[j], 0.0f) << j;
  }
}

TEST(EmbeddingTable, InMemoryTableChecksItsInputs) {
  InMemoryTableT<codec::F16> table(4, {2, 3}, "mem");
  std::vector<float> row(4, 1.0f);
  EXPECT_THAT(error_of([&] { table.set_row(5, row); }),
              HasSubstr("mem: row 5 is out of range [0, 5)"));
  EXPECT_THAT(error_of([&] { table.set_row(0, std::span<const float>(row.data(), 3)); }),
              HasSubstr("mem: row 0 got 3 values, expected row_dim = 4"));
  std::vector<float> values(19);
  EXPECT_THAT(error_of([&] {
                InMemoryTableT<codec::F16>::encode(values, 4, {2, 3}, "mem");
              }),
              HasSubstr("mem: encode got 19 values, expected 20 ([5 rows, 4])"));
}

// After a first call sized the workspace, gathers (same or smaller) make no heap allocation.
TEST(EmbeddingTable, SteadyStateGatherDoesNotAllocate) {
  const std::vector<int64_t> primes = {101, 103, 107, 109};
  const auto storage = random_table<codec::Fp8E4M3>(64, primes, 1);
  const auto table = storage.view();
  const auto ids = random_ids(primes, 256, 2);
  const auto small_ids = random_ids(primes, 17, 3);
  std::vector<float> out(256 * table.output_dim());
  std::vector<BFloat16> out16(256 * table.output_dim());
  const GatherOptions dedup{true, 8, 1};
  GatherWorkspace workspace;
  table.gather(ids, std::span<float>(out), workspace, dedup);  // sizes the workspace
  const int64_t before = g_allocations.load();
  for (int repeat = 0; repeat < 3; ++repeat) {
    table.gather(ids, std::span<float>(out), workspace, dedup);
    table.gather(ids, std::span<BFloat16>(out16), workspace, dedup);
    table.gather(small_ids, std::span<float>(out.data(), 17 * table.output_dim()), workspace,
                 dedup);
    table.gather(ids, std::span<float>(out), workspace);  // defaults: no dedup
  }
  EXPECT_EQ(g_allocations.load() - before, 0);

  GatherWorkspace reserved;
  reserved.reserve(256 * 4);
  const int64_t before_reserved = g_allocations.load();
  table.gather(ids, std::span<float>(out), reserved, dedup);
  EXPECT_EQ(g_allocations.load() - before_reserved, 0) << "reserve() pre-sizes the first call";
}

// ------------------------------------------------------------------ golden: PyTorch oracle, fused
// layer 14

class FusedGolden : public ::testing::Test {
 protected:
  FusedGolden() : file_(test::data_path("memory/fused_l14_rows.safetensors")) {}
  SafetensorsFile file_;
};

TEST_F(FusedGolden, GatheredRowsEqualTheOracleBitForBit) {
  const auto primes = file_.read_int64("primes");
  const auto ids = file_.read_int64("hash_ids");
  const auto expected = file_.at("expected_f32").copy_as<float>();
  const auto& expected_bf16 = file_.at("expected_bf16");
  ASSERT_EQ(primes.size(), 12u);
  ASSERT_EQ(ids.size(), 48u * 12u);
  const auto table = table_from_safetensors<codec::Fp8E4M3>(file_, "embed.weight", primes);
  ASSERT_EQ(table.row_dim(), 64);
  ASSERT_EQ(table.total_rows(), 17396);
  ASSERT_EQ(expected.size(), 48u * 12u * 64u);

  GatherWorkspace workspace;
  std::vector<float> fast(expected.size()), ref(expected.size());
  std::vector<BFloat16> fast16(expected.size()), ref16(expected.size());
  table.gather(ids, std::span<float>(fast), workspace);
  table.gather_reference(ids, std::span<float>(ref));
  table.gather(ids, std::span<BFloat16>(fast16), workspace);
  table.gather_reference(ids, std::span<BFloat16>(ref16));
  std::vector<uint16_t> oracle16(expected.size());
  std::memcpy(oracle16.data(), expected_bf16.bytes.data(), expected_bf16.bytes.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE("token " + std::to_string(i / 768) + " column " + std::to_string(i % 768 / 64) +
                 " value " + std::to_string(i % 64));
    ASSERT_EQ(bits_of(fast[i]), bits_of(expected[i]));
    ASSERT_EQ(bits_of(ref[i]), bits_of(expected[i]));
    ASSERT_EQ(fast16[i].bits, oracle16[i]);
    ASSERT_EQ(ref16[i].bits, oracle16[i]);
  }
}

TEST_F(FusedGolden, SafetensorsViewChecksDtypesAndShapes) {
  const auto primes = file_.read_int64("primes");
  EXPECT_THAT(error_of([&] { table_from_safetensors<codec::BF16>(file_, "embed.weight", primes); }),
              HasSubstr("tensor 'embed.weight' has dtype F8_E4M3, expected BF16 for codec bf16"));
  auto wrong = primes;
  wrong[0] += 1;
  EXPECT_THAT(
      error_of([&] { table_from_safetensors<codec::Fp8E4M3>(file_, "embed.weight", wrong); }),
      HasSubstr("tensor 'embed.weight' has shape [17396, 64], expected [17397, 64]"));
  EXPECT_THAT(error_of([&] {
                table_from_safetensors<codec::Fp8E4M3>(file_, "embed.weight", primes, "hash_ids");
              }),
              HasSubstr("tensor 'hash_ids' has dtype I64, expected F8_E8M0"));
  EXPECT_THAT(error_of([&] { table_from_safetensors<codec::Fp8E4M3>(file_, "nope", primes); }),
              HasSubstr("missing tensor 'nope'"));
}

}  // namespace
}  // namespace engram
