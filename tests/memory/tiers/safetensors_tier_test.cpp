// SafetensorsTier over the V4.1 golden checkpoint as released (tests/data/v41, copied from the
// oracle's golden/v41: weight in shard 2, scale in shard 3): every row equals the in-memory
// table's record, the decoded rows at the oracle's hash ids equal its `memory` bit for bit
// (directly, and through the cache and the prefetcher), and malformed shards give named errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engram/hashing/ngram_hasher.hpp"
#include "engram/hashing/primes.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/memory/codec.hpp"
#include "engram/memory/tiers/cached_tier.hpp"
#include "engram/memory/tiers/in_memory_tier.hpp"
#include "engram/memory/tiers/open_table.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/safetensors_tier.hpp"
#include "engram/memory/tiers/tiered_memory.hpp"
#include "memory/tiers/tier_test_support.hpp"
#include "support/error_of.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;
using Io = SafetensorsTierOptions::Io;

using test::error_of;

std::string model_dir() { return test::data_path("v41/golden/model"); }
std::string shard(int s) {
  return model_dir() + "/model-0000" + std::to_string(s) + "-of-00003.safetensors";
}

SafetensorsTierOptions with_io(Io io) {
  SafetensorsTierOptions options;
  options.io = io;
  options.reader.queue_depth = 8;
  options.reader.pread_threads = 3;
  return options;
}

const std::vector<std::pair<std::string, Io>>& io_modes() {
  static const std::vector<std::pair<std::string, Io>> modes = {
      {"auto (O_DIRECT where allowed)", Io::kAuto},
      {"buffered", Io::kBuffered},
      {"mmap", Io::kMmap}};
  return modes;
}

/// The in-memory reference of layer L: records interleaved from the mapped tensors.
InMemoryTier reference_tier(int64_t layer) {
  const SafetensorsFile weights(shard(2)), scales(shard(3));
  const std::string p = "layers." + std::to_string(layer) + ".engram.embed.";
  return InMemoryTier::from_split(weights.at(p + "weight").bytes, scales.at(p + "scale").bytes, 64,
                                  2);
}

/// The golden's Engram config (config.json's text_config) as an EngramConfig.
EngramConfig golden_config() {
  std::ifstream in(model_dir() + "/config.json");
  const auto tc = nlohmann::json::parse(in).at("text_config");
  EngramConfig config;
  config.variant = Variant::kFused;
  config.max_ngram_size = tc.at("engram_max_ngram_size").get<int64_t>();
  config.engram_vocab_size.assign(static_cast<size_t>(config.max_ngram_size - 1),
                                  tc.at("engram_vocab_size").get<int64_t>());
  config.n_head_per_ngram = tc.at("engram_n_heads").get<int64_t>();
  config.layer_ids = tc.at("engram_layer_ids").get<std::vector<int64_t>>();
  config.pad_id = tc.at("engram_pad_token_id").get<int64_t>();
  config.hidden_size = tc.at("hidden_size").get<int64_t>();
  config.hc_mult = tc.at("hc_mult").get<int64_t>();
  config.head_dim = tc.at("engram_head_dim").get<int64_t>();
  config.rms_norm_eps = tc.at("rms_norm_eps").get<double>();
  config.validate("v41 golden config.json");
  return config;
}

TEST(SafetensorsTier, GoldenShardsEveryRowEqualsTheInMemoryTable) {
  for (int64_t layer : {1, 3}) {
    SCOPED_TRACE("layer " + std::to_string(layer));
    const InMemoryTier reference = reference_tier(layer);
    const std::string weight = "layers." + std::to_string(layer) + ".engram.embed.weight";
    for (const auto& [mode, io] : io_modes()) {
      SCOPED_TRACE(mode);
      SafetensorsTier tier(shard(2), weight, shard(3), "", with_io(io));
      ASSERT_EQ(tier.num_rows(), reference.num_rows());
      ASSERT_EQ(tier.row_bytes(), 66);
      EXPECT_EQ(tier.codec(), "fp8_e4m3");
      EXPECT_EQ(tier.source().scale_tensor,
                "layers." + std::to_string(layer) + ".engram.embed.scale");
      const int64_t n = tier.num_rows();
      std::vector<int64_t> all(static_cast<size_t>(n));
      std::iota(all.begin(), all.end(), 0);
      std::vector<std::byte> got(static_cast<size_t>(n * 66)), want(got.size());
      const FetchReport report = tier.fetch(all, got);
      reference.fetch(all, want);
      EXPECT_EQ(report.rows, n);
      EXPECT_TRUE(got == want) << "whole table differs";
      // Batch sizes 1 .. large, random ids (duplicates included), and the rows whose 64 weight
      // bytes straddle a 4 KiB page (the tensor starts 32 bytes past a 64-byte boundary).
      std::mt19937_64 rng(static_cast<uint64_t>(layer));
      for (int64_t size : {1, 2, 7, 64, 513, 4000}) {
        std::vector<int64_t> ids(static_cast<size_t>(size));
        for (auto& id : ids) id = static_cast<int64_t>(rng() % static_cast<uint64_t>(n));
        std::vector<std::byte> a(ids.size() * 66), b(ids.size() * 66);
        tier.fetch(ids, a);
        reference.fetch(ids, b);
        EXPECT_TRUE(a == b) << "batch of " << size;
      }
      const SafetensorsFile weight_shard(shard(2));
      const int64_t offset = weight_shard.file_offset(weight_shard.at(weight));
      std::vector<int64_t> straddling;
      for (int64_t g = 0; g < n; ++g)
        if ((offset + g * 64) / 4096 != (offset + g * 64 + 63) / 4096) straddling.push_back(g);
      ASSERT_GT(straddling.size(), 10u);
      std::vector<std::byte> a(straddling.size() * 66), b(a.size());
      tier.fetch(straddling, a);
      reference.fetch(straddling, b);
      EXPECT_TRUE(a == b) << "page-straddling rows differ";
    }
  }
}

/// The golden layer's table metadata: primes (checked against config.json's row totals) and
/// multipliers derived as the V4.1 reference does.
PackedTableInfo golden_info(int64_t layer) {
  const EngramConfig config = golden_config();
  const std::vector<int64_t> primes = engram_layer_primes(config, layer);
  std::ifstream in(model_dir() + "/config.json");
  const auto tc = nlohmann::json::parse(in).at("text_config");
  const size_t i = layer == config.layer_ids[0] ? 0 : 1;
  ENGRAM_CHECK(std::accumulate(primes.begin(), primes.end(), int64_t{0}) ==
                   tc.at("engram_num_embeddings")[i].get<int64_t>(),
               "golden primes disagree with engram_num_embeddings");
  return PackedTableInfo::make(
      config, layer, "fp8_e4m3", primes,
      engram_multipliers(config, layer, tc.at("engram_compressed_vocab_size").get<int64_t>()));
}

TEST(SafetensorsTier, GoldenMemoryThroughCacheAndPrefetcherEqualsTheOracle) {
  const PackedTableInfo info = golden_info(1);
  const SafetensorsFile expected(test::data_path("v41/golden/expected.safetensors"));
  const std::vector<int64_t> hash_ids = expected.read_int64("hash_ids");
  const std::vector<float> want = expected.at("memory").copy_as<float>();
  const int64_t tokens = static_cast<int64_t>(hash_ids.size()) / 6;
  ASSERT_EQ(want.size(), static_cast<size_t>(tokens * 384));
  for (const auto& [mode, io] : io_modes()) {
    SCOPED_TRACE(mode);
    CachedTier<SafetensorsTier> tier(CacheOptions{.capacity_bytes = 64 * 66}, shard(2),
                                     "layers.1.engram.embed.weight", shard(3), "", with_io(io));
    ASSERT_EQ(tier.num_rows(), info.num_rows);
    for (int pass = 0; pass < 2; ++pass) {  // cold, then with hot rows cached
      TieredMemoryT<CachedTier<SafetensorsTier>, prefetch::Asynchronous> memory(
          tier, info, {.max_tokens = tokens});
      std::vector<float> e(want.size(), -1.0f);
      auto ticket = memory.submit(hash_ids);
      memory.wait(ticket, e);
      EXPECT_EQ(std::memcmp(e.data(), want.data(), e.size() * 4), 0) << "pass " << pass;
    }
    EXPECT_GT(tier.stats().hits, 0);
  }
}

// ------------------------------------------------------------------ malformed shards

struct SmallShard {
  std::vector<std::byte> codes, scales;
  SmallShard(int64_t rows, int64_t blocks) {
    codes = test::random_rows(rows, 64, 11);
    for (auto& c : codes)
      if ((static_cast<int>(c) & 0x7F) == 0x7F) c = std::byte{0};
    scales.assign(static_cast<size_t>(rows * blocks), std::byte{120});
  }
};

/// Writes a shard with `weight` [rows, 64] of `weight_dtype` and `scale` [scale_rows, blocks].
std::string write_shard(const test::ScratchDir& dir, const std::string& name, int64_t rows,
                        DType weight_dtype, DType scale_dtype, int64_t scale_rows, int64_t blocks,
                        const std::string& scale_name = "embed.scale") {
  SmallShard s(std::max(rows, scale_rows), blocks);
  const std::string path = dir.file(name);
  const std::vector<std::byte> pad(77, std::byte{3});
  const TensorWrite tensors[] = {
      {"other", DType::kU8, {77}, pad},
      {"embed.weight",
       weight_dtype,
       {rows, 64},
       std::span(s.codes).first(static_cast<size_t>(rows * 64))},
      {scale_name,
       scale_dtype,
       {scale_rows, blocks},
       std::span(s.scales).first(static_cast<size_t>(scale_rows * blocks))}};
  save_safetensors(path, tensors);
  return path;
}

TEST(SafetensorsTier, MalformedShardsGiveNamedErrors) {
  const test::ScratchDir dir("shard_tier");
  const std::string good =
      write_shard(dir, "good.safetensors", 200, DType::kF8E4M3, DType::kF8E8M0, 200, 2);
  EXPECT_EQ(SafetensorsTier(good, "embed").num_rows(), 200);

  // Truncated: the header's offsets run past the end of the file.
  const std::string truncated = dir.file("truncated.safetensors");
  std::filesystem::copy_file(good, truncated);
  std::filesystem::resize_file(truncated, std::filesystem::file_size(good) - 5);
  const std::string e1 = error_of([&] { SafetensorsTier(truncated, "embed"); });
  EXPECT_THAT(e1, HasSubstr(truncated));
  EXPECT_THAT(e1, HasSubstr("outside the data region"));

  // A header whose data_offsets point past the end.
  const std::string past = dir.file("past_end.safetensors");
  {
    const std::string header =
        R"({"embed.weight":{"dtype":"F8_E4M3","shape":[2,64],"data_offsets":[0,128]},)"
        R"("embed.scale":{"dtype":"F8_E8M0","shape":[2,2],"data_offsets":[1000000,1000004]}})";
    std::ofstream out(past, std::ios::binary);
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << std::string(132, '\0');
  }
  const std::string e2 = error_of([&] { SafetensorsTier(past, "embed"); });
  EXPECT_THAT(e2, HasSubstr(past + ": tensor 'embed.scale': data_offsets [1000000, 1000004]"));

  EXPECT_THAT(error_of([&] {
                SafetensorsTier(
                    write_shard(dir, "i8.safetensors", 10, DType::kI8, DType::kF8E8M0, 10, 2),
                    "embed.weight");
              }),
              HasSubstr("i8.safetensors: tensor 'embed.weight' has dtype I8, expected F8_E4M3"));
  EXPECT_THAT(error_of([&] {
                SafetensorsTier(
                    write_shard(dir, "u8.safetensors", 10, DType::kF8E4M3, DType::kU8, 10, 2),
                    "embed");
              }),
              HasSubstr("u8.safetensors: tensor 'embed.scale' has dtype U8, expected F8_E8M0"));
  EXPECT_THAT(error_of([&] {
                SafetensorsTier(write_shard(dir, "blocks.safetensors", 10, DType::kF8E4M3,
                                            DType::kF8E8M0, 10, 3),
                                "embed");
              }),
              HasSubstr("tensor 'embed.scale' has shape [10, 3], expected [10, 2]"));
  EXPECT_THAT(error_of([&] {
                SafetensorsTier(
                    write_shard(dir, "rows.safetensors", 10, DType::kF8E4M3, DType::kF8E8M0, 9, 2),
                    "embed");
              }),
              HasSubstr("tensor 'embed.scale' has shape [9, 2], expected [10, 2]"));
  EXPECT_THAT(error_of([&] {
                SafetensorsTier(write_shard(dir, "noscale.safetensors", 10, DType::kF8E4M3,
                                            DType::kF8E8M0, 10, 2, "embed.other"),
                                "embed");
              }),
              HasSubstr("'embed.weight' is F8_E4M3 but its scale tensor is missing"));
  EXPECT_THAT(error_of([&] { SafetensorsTier(good, "nothing"); }),
              HasSubstr(good + ": missing tensor 'nothing'"));
  // vLLM's name for the scale is found too.
  EXPECT_EQ(SafetensorsTier(write_shard(dir, "vllm.safetensors", 10, DType::kF8E4M3, DType::kF8E8M0,
                                        10, 2, "embed.weight_scale_inv"),
                            "embed")
                .source()
                .scale_tensor,
            "embed.weight_scale_inv");
}

TEST(SafetensorsTier, NaNScaleInAServedRowIsAnErrorNamingTheRow) {
  const test::ScratchDir dir("shard_nan");
  const std::string path = dir.file("nan.safetensors");
  SmallShard s(50, 2);
  s.scales[7 * 2 + 1] = std::byte{0xFF};
  const TensorWrite tensors[] = {{"embed.weight", DType::kF8E4M3, {50, 64}, s.codes},
                                 {"embed.scale", DType::kF8E8M0, {50, 2}, s.scales}};
  save_safetensors(path, tensors);
  for (const auto& [mode, io] : io_modes()) {
    SCOPED_TRACE(mode);
    SafetensorsTier tier(path, "embed", with_io(io));
    std::vector<std::byte> out(3 * 66);
    const std::vector<int64_t> fine = {0, 6, 8};
    EXPECT_EQ(tier.fetch(fine, out).rows, 3);
    const std::vector<int64_t> bad = {3, 7, 9};
    EXPECT_THAT(error_of([&] { tier.fetch(bad, out); }),
                HasSubstr(path + ": tensor 'embed.scale' row 7 (batch position 1) holds the NaN "
                                 "scale code 0xFF in block 1"));
  }
}

TEST(SafetensorsTier, FileTruncatedAfterOpenIsAShortRead) {
  const test::ScratchDir dir("shard_short");
  const std::string path =
      write_shard(dir, "short.safetensors", 200, DType::kF8E4M3, DType::kF8E8M0, 200, 2);
  SafetensorsTier tier(path, "embed", with_io(Io::kBuffered));
  std::filesystem::resize_file(path, 5000);
  std::vector<std::byte> out(66);
  const std::vector<int64_t> ids = {150};
  const std::string e = error_of([&] { tier.fetch(ids, out); });
  EXPECT_THAT(e, HasSubstr(path + ": page at file offset 8192"));
  EXPECT_THAT(e, HasSubstr("short read"));
}

// ------------------------------------------------------------------ URIs (open_table.hpp)

/// The oracle's hash ids and memory of layer 1.
struct GoldenMemory {
  std::vector<int64_t> hash_ids;
  std::vector<float> memory;
  GoldenMemory() {
    const SafetensorsFile expected(test::data_path("v41/golden/expected.safetensors"));
    hash_ids = expected.read_int64("hash_ids");
    memory = expected.at("memory").copy_as<float>();
  }
};

/// e of the golden ids fetched from an opened table through TieredMemory.
std::vector<float> memory_of(OpenedTable& table, const std::vector<int64_t>& hash_ids) {
  const int64_t tokens = static_cast<int64_t>(hash_ids.size()) / 6;
  TieredMemoryT<AnyTier> memory(table.tier, table.info, {.max_tokens = tokens});
  std::vector<float> e(static_cast<size_t>(tokens * memory.memory_dim()), -1.0f);
  memory.wait(memory.submit(hash_ids), e);
  return e;
}

TEST(OpenTable, SafetensorsAndHfUrisServeTheGoldenMemory) {
  const GoldenMemory golden;
  const TableOpenOptions options{.table_info = golden_info(1)};
  const std::string dir = model_dir();
  for (const std::string& uri :
       {"safetensors:" + shard(2) + "?tensor=layers.1.engram.embed&scale_shard=" + shard(3),
        "safetensors:" + shard(2) + "?tensor=layers.1.engram.embed.weight&scale_shard=" + shard(3) +
            "&scale=layers.1.engram.embed.scale&io=mmap&cache_mb=1",
        "hf:" + dir + "?layer=1", "hf:" + dir + "?layer=1&cache_mb=1&io=buffered",
        "hf:" + dir + "?io=mmap&layer=1"}) {
    SCOPED_TRACE(uri);
    OpenedTable table = open_table(uri, options);
    EXPECT_EQ(table.info.codec, "fp8_e4m3");
    EXPECT_THAT(table.tier.describe(), HasSubstr("layers.1.engram.embed.scale"));
    const std::vector<float> e = memory_of(table, golden.hash_ids);
    ASSERT_EQ(e.size(), golden.memory.size());
    EXPECT_EQ(std::memcmp(e.data(), golden.memory.data(), e.size() * 4), 0);
  }
}

TEST(OpenTable, HfUriReadsASingleFileCheckpointAndVllmScaleNames) {
  const GoldenMemory golden;
  const test::ScratchDir dir("hf_single");
  const SafetensorsFile weights(shard(2)), scales(shard(3));
  const TensorView& w = weights.at("layers.1.engram.embed.weight");
  const TensorView& sc = scales.at("layers.1.engram.embed.scale");
  const TensorWrite tensors[] = {
      {"layers.1.engram.embed.weight", w.dtype, w.shape, w.bytes},
      {"layers.1.engram.embed.weight_scale_inv", sc.dtype, sc.shape, sc.bytes}};
  save_safetensors(dir.file("model.safetensors"), tensors);
  OpenedTable table = open_table("hf:" + dir.file("") + "?layer=1", {.table_info = golden_info(1)});
  EXPECT_THAT(table.tier.describe(), HasSubstr("weight_scale_inv"));
  EXPECT_EQ(memory_of(table, golden.hash_ids), golden.memory);
}

TEST(OpenTable, SafetensorsUriErrorsNameTheProblem) {
  const std::string dir = model_dir();
  const TableOpenOptions options{.table_info = golden_info(1)};
  EXPECT_THAT(error_of([&] { open_table("hf:" + dir + "?layer=1"); }),
              HasSubstr("carry no hashing metadata"));
  EXPECT_THAT(error_of([&] { open_table("hf:" + dir + "?layer=3", options); }),
              HasSubstr("holds 6332 rows of 64 values, the layer's config needs 6126 rows of 64"));
  EXPECT_THAT(
      error_of([&] { open_table("hf:" + dir + "?layer=2", options); }),
      HasSubstr("lists no 'layers.2.engram.embed.weight' (layer 2 holds no Engram table?)"));
  EXPECT_THAT(error_of([&] { open_table("hf:" + dir + "?layer=1&foo=1", options); }),
              HasSubstr("unknown parameter 'foo'"));
  EXPECT_THAT(error_of([&] { open_table("hf:" + dir + "?layer=1&io=fast", options); }),
              HasSubstr("parameter 'io' must be direct, buffered or mmap, found 'fast'"));
  EXPECT_THAT(error_of([&] { open_table("safetensors:" + shard(2), options); }),
              HasSubstr("parameter 'tensor'"));
  EXPECT_THAT(error_of([&] {
                open_table("safetensors:" + shard(2) + "?tensor=layers.1.engram.embed", options);
              }),
              HasSubstr("scale tensor is missing from " + shard(2)));
  const test::ScratchDir empty("hf_empty");
  EXPECT_THAT(error_of([&] { open_table("hf:" + empty.file("") + "?layer=1", options); }),
              HasSubstr("neither model.safetensors.index.json nor model.safetensors found"));
  // A directory whose index names a shard that is missing.
  const test::ScratchDir partial("hf_partial");
  for (const char* f :
       {"config.json", "model.safetensors.index.json", "model-00002-of-00003.safetensors"})
    std::filesystem::copy_file(dir + "/" + f, partial.file(f));
  EXPECT_THAT(error_of([&] { open_table("hf:" + partial.file("") + "?layer=1", options); }),
              HasSubstr(partial.file("") + "/model-00003-of-00003.safetensors: cannot open"));
}

}  // namespace
}  // namespace engram
