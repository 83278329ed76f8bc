// The codec registry and AnyEmbeddingTable: every registered codec is found by name and dtype,
// its traits agree with the codec type, and a gather through AnyEmbeddingTable (float, bfloat16,
// double; fast and reference) gives the same bytes as through the concrete EmbeddingTableT, for
// every codec, on row_dim 1, 85 and 163 (not multiples of the SIMD width).
#include "engram/memory/any_embedding_table.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "support/error_of.hpp"

namespace engram {
namespace {

using test::error_of;
using ::testing::HasSubstr;

TEST(CodecRegistry, EveryCodecIsFoundByNameAndDtypeWithItsTraits) {
  std::set<std::pair<std::string, int64_t>> keys;
  int count = 0;
  for_each_codec([&](auto c) {
    using C = decltype(c);
    SCOPED_TRACE(std::string(C::kName) + " block " + std::to_string(kCodecQuantBlock<C>));
    const int64_t block = kCodecQuantBlock<C>;
    EXPECT_TRUE(keys.emplace(std::string(C::kName), block).second) << "registered twice";
    for (std::string_view key : {C::kName, C::kDTypeName}) {
      const CodecTraits* t = find_codec(key, block);
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t, &kCodecTraits[static_cast<size_t>(count)]);
      EXPECT_EQ(t->name, C::kName);
      EXPECT_EQ(t->dtype, C::kDTypeName);
      EXPECT_EQ(t->scale_dtype, C::kScaleDTypeName);
      EXPECT_EQ(t->quant_block, block);
      for (int64_t r : {1, 85, 163}) {
        EXPECT_EQ(t->row_bytes(r), C::row_bytes(r));
        EXPECT_EQ(t->scale_bytes(r), C::scale_bytes(r));
      }
      const bool visited =
          visit_codec(key, block, [](auto v) { return std::is_same_v<decltype(v), C>; });
      EXPECT_TRUE(visited);
      EXPECT_TRUE(std::holds_alternative<C>(codec_tag(key, block)));
    }
    EXPECT_EQ(codec_name_of_dtype(C::kDTypeName), C::kName);
    EXPECT_TRUE(is_codec_name(C::kName));
    ++count;
  });
  EXPECT_EQ(count, static_cast<int>(Codecs::size));
  EXPECT_EQ(find_codec("fp8_e4m3", 48), nullptr);
  EXPECT_EQ(find_codec("int4", 32), nullptr);
  EXPECT_FALSE(is_codec_name("fp8"));
  EXPECT_EQ(codec_choices(), "f32, bf16, f16, fp8_e4m3 (quant_block 16, 32, 64 or 128)");
  EXPECT_THAT(error_of([] {
                visit_codec(
                    "fp8_e4m3", 48, [](auto) {}, "layer 3 table");
              }),
              HasSubstr("layer 3 table: no codec 'fp8_e4m3' with quant_block 48; expected f32"));
}

template <class Out>
bool same_bits(const std::vector<Out>& a, const std::vector<Out>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(Out)) == 0);
}

TEST(AnyEmbeddingTable, GatherEqualsTheConcreteTableForEveryCodec) {
  const std::vector<int64_t> column_rows = {7, 11, 13};
  const int64_t cols = 3, tokens = 9;
  std::mt19937_64 rng(14);
  std::vector<int64_t> ids(static_cast<size_t>(tokens * cols));
  for (int64_t i = 0; i < tokens * cols; ++i)
    ids[static_cast<size_t>(i)] =
        static_cast<int64_t>(rng() % static_cast<uint64_t>(column_rows[i % cols]));
  for_each_codec([&](auto c) {
    using C = decltype(c);
    for (int64_t row_dim : {1, 85, 163}) {
      SCOPED_TRACE(std::string(C::kName) + " block " + std::to_string(kCodecQuantBlock<C>) +
                   " row_dim " + std::to_string(row_dim));
      std::normal_distribution<float> normal(0.0f, 2.0f);
      std::vector<float> values(static_cast<size_t>(31 * row_dim));
      for (float& v : values) v = normal(rng);
      const auto storage = InMemoryTableT<C>::encode(values, row_dim, column_rows, "table");
      const EmbeddingTableT<C> concrete = storage.view();
      const AnyEmbeddingTable any =
          AnyEmbeddingTable::make(C::kDTypeName, kCodecQuantBlock<C>, storage.row_storage(),
                                  storage.scale_storage(), row_dim, column_rows, "table");
      ASSERT_TRUE(std::holds_alternative<EmbeddingTableT<C>>(any));
      EXPECT_EQ(any.codec_name(), C::kName);
      EXPECT_EQ(any.codec().quant_block, kCodecQuantBlock<C>);
      EXPECT_EQ(any.name(), "table");
      EXPECT_EQ(any.row_dim(), row_dim);
      EXPECT_EQ(any.num_columns(), cols);
      EXPECT_EQ(any.total_rows(), 31);
      EXPECT_EQ(any.output_dim(), cols * row_dim);
      EXPECT_TRUE(any.has_rows());
      EXPECT_EQ(any.visit([](const auto& t) { return t.row_bytes(); }), C::row_bytes(row_dim));

      const auto n = static_cast<size_t>(tokens * cols * row_dim);
      GatherWorkspace ws;
      std::vector<float> want(n, -1.0f), fast(n, -2.0f), reference(n, -3.0f);
      concrete.gather(ids, std::span<float>(want), ws);
      any.gather(ids, std::span<float>(fast), ws, {.prefetch_distance = 3, .threads = 2});
      any.gather_reference(ids, std::span<float>(reference));
      EXPECT_TRUE(same_bits(fast, want));
      EXPECT_TRUE(same_bits(reference, want));

      std::vector<BFloat16> want16(n), got16(n);
      concrete.gather(ids, std::span<BFloat16>(want16), ws);
      any.gather(ids, std::span<BFloat16>(got16), ws);
      EXPECT_TRUE(same_bits(got16, want16));

      std::vector<double> wide(n, -4.0), wide_reference(n, -5.0),
          want_wide(want.begin(), want.end());
      any.gather(ids, std::span<double>(wide), ws);
      any.gather_reference(ids, std::span<double>(wide_reference));
      EXPECT_TRUE(same_bits(wide, want_wide));
      EXPECT_TRUE(same_bits(wide_reference, want_wide));

      const AnyEmbeddingTable shape = AnyEmbeddingTable::shape_only(
          C::kName, kCodecQuantBlock<C>, row_dim, column_rows, "tier table");
      EXPECT_FALSE(shape.has_rows());
      EXPECT_EQ(shape.index(), any.index());
      EXPECT_THAT(error_of([&] { shape.gather(ids, std::span<float>(fast), ws); }),
                  HasSubstr("rows live in a tier"));
    }
  });
}

TEST(AnyEmbeddingTable, BadIdsAndUnknownCodecsNameTheTable) {
  const InMemoryTableT<codec::BF16> storage(4, {5, 3}, "layer 2 table");
  const AnyEmbeddingTable any = storage.view();
  GatherWorkspace ws;
  std::vector<float> out(8);
  const std::vector<int64_t> ids = {4, 3};
  EXPECT_THAT(error_of([&] { any.gather(ids, std::span<float>(out), ws); }),
              HasSubstr("layer 2 table: hash id 3 at token 0, column 1 is out of range [0, 3)"));
  EXPECT_THAT(error_of([&] {
                AnyEmbeddingTable::make("I8", 32, storage.row_storage(), {}, 4, {5, 3}, "t8");
              }),
              HasSubstr("t8: no codec 'I8'"));
}

}  // namespace
}  // namespace engram
