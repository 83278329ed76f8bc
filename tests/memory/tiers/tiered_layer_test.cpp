// The seam between tiers and layers: a layer whose rows come from a RowTier (InMemory, DirectIO,
// Cached over a packed file, opened by URI, the fused checkpoint's own shard through
// SafetensorsTier; prefetch synchronous and asynchronous) gives the memory
// e bit for bit as the resident layer's gather and the same output, whole and streamed; the record
// decoder equals the table's gather for every codec, chunked or whole; errors are clear.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "engram/memory/packed_writer.hpp"
#include "engram/memory/tiers/any_tier.hpp"
#include "engram/memory/tiers/cached_tier.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/open_table.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/safetensors_tier.hpp"
#include "engram/memory/tiers/tiered_memory.hpp"
#include "support/test_data.hpp"
#include "tier_test_support.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

/// Bit-equal values, except that any NaN equals any NaN (codec.hpp does not fix NaN payloads).
bool same_values(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], 4) != 0 && !(std::isnan(a[i]) && std::isnan(b[i]))) return false;
  return true;
}

/// One golden layer: its config, checkpoint, inputs, hash ids, and the table packed to a file.
struct Golden {
  std::string name;
  EngramConfig config;
  std::shared_ptr<const SafetensorsFile> weights;
  int64_t layer = 0, batch = 0, seq_len = 0;
  std::vector<int64_t> hash_ids, primes;
  std::vector<float> hidden;
  std::string packed;

  Golden(const std::string& dir_name, const test::ScratchDir& scratch) : name(dir_name) {
    const std::string dir = test::data_path("layer/" + dir_name);
    config = EngramConfig::load(dir + "/config.json");
    weights = std::make_shared<const SafetensorsFile>(dir + "/weights.safetensors");
    const SafetensorsFile expected(dir + "/expected.safetensors");
    const SafetensorsFile inputs(dir + "/inputs.safetensors");
    layer = std::stoll(expected.metadata().at("layer_id"));
    hash_ids = expected.read_int64("hash_ids");
    primes = expected.read_int64("primes");
    const TensorView& h = inputs.at("hidden_states");
    batch = h.shape[0];
    seq_len = h.shape[1];
    hidden = h.copy_as<float>();
    // Pack the checkpoint's table rows (records: data then scales) into a .engram file.
    const bool fused = config.variant == Variant::kFused;
    const std::string codec = fused ? "fp8_e4m3" : "f32";
    const PackedTableInfo info =
        PackedTableInfo::make(config, layer, codec, primes, expected.read_int64("multipliers"));
    packed = scratch.file(dir_name + ".engram");
    const int64_t rows = info.num_rows;
    if (fused) {
      const TensorView& data = weights->at("embed.weight");
      const TensorView& scales = weights->at("embed.weight_scale_inv");
      InMemoryTier tier = InMemoryTier::from_split(
          data.bytes.first(static_cast<size_t>(rows * info.data_bytes_per_row())),
          scales.bytes.first(static_cast<size_t>(rows * info.scale_bytes_per_row())),
          info.data_bytes_per_row(), info.scale_bytes_per_row());
      pack_table(packed, info, tier, {}, 100);
    } else {
      const TensorView& data = weights->at("multi_head_embedding.embedding.weight");
      InMemoryTier tier = InMemoryTier::view(
          data.bytes.first(static_cast<size_t>(rows * info.row_bytes())), info.row_bytes());
      pack_table(packed, info, tier, {}, 100);
    }
  }
  int64_t tokens() const { return batch * seq_len; }
  int64_t width() const { return config.hc_mult * config.hidden_size; }
};

const test::ScratchDir& scratch() {
  static test::ScratchDir dir("tiered_layer");
  return dir;
}

/// The tiers under test, each over the golden's packed file.
std::vector<std::pair<std::string, std::function<AnyTier(const std::string&)>>> tier_makers() {
  return {
      {"in-memory (mapped)",
       [](const std::string& p) {
         return AnyTier::make<InMemoryTier>(map_packed_table(PackedTableFile(p)));
       }},
      {"direct-io", [](const std::string& p) { return AnyTier::make<DirectIOTier>(p); }},
      {"cached direct-io (tiny cache)",
       [](const std::string& p) {
         return AnyTier::make<CachedTier<DirectIOTier>>(CacheOptions{.capacity_bytes = 4096}, p);
       }},
      {"open_table file: cache_mb=1",
       [](const std::string& p) { return open_table("file:" + p + "?cache_mb=1").tier; }},
      {"open_table plain path, io=buffered",
       [](const std::string& p) { return open_table(p + "?io=buffered").tier; }},
      {"open_table io=mmap",
       [](const std::string& p) { return open_table("file:" + p + "?io=mmap").tier; }},
  };
}

/// The resident layer's e: the table's gather of the golden's ids.
template <class Weights>
std::vector<float> resident_memory(const Weights& w, std::span<const int64_t> ids) {
  return std::visit(
      [&](const auto& t) {
        std::vector<float> e(ids.size() / static_cast<size_t>(t.num_columns()) *
                             static_cast<size_t>(t.output_dim()));
        GatherWorkspace ws;
        t.gather(ids, std::span<float>(e), ws);
        return e;
      },
      w.table);
}

template <class Layer>
void check_layer_from_tiers(const std::string& dir_name) {
  SCOPED_TRACE(dir_name);
  const Golden g(dir_name, scratch());
  const CheckpointOptions resident_options{.column_rows = g.primes};
  const CheckpointOptions tier_options{.column_rows = g.primes, .table_in_tier = true};
  const Layer resident = Layer::load(g.config, g.weights, resident_options);
  const Layer tiered = Layer::load(g.config, g.weights, tier_options);
  typename Layer::Workspace ws;
  std::vector<float> want(g.hidden.size()), got(g.hidden.size());
  resident.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, want, ws);
  const std::vector<float> want_e = resident_memory(resident.weights(), g.hash_ids);

  // The tiered layer cannot gather by itself.
  EXPECT_THAT(error_of([&] { tiered.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, got, ws); }),
              HasSubstr("holds no rows (they live in a tier)"));

  auto makers = tier_makers();
  if (g.config.variant == Variant::kFused) {
    // The checkpoint itself is a shard: serve its embed.weight + embed.weight_scale_inv in place.
    const std::string shard = test::data_path("layer/" + dir_name + "/weights.safetensors");
    const PackedTableInfo info = PackedTableFile(g.packed).info();
    SafetensorsTierOptions shard_options;
    shard_options.quant_block = info.config.quant_block;
    makers.emplace_back("safetensors shard (O_DIRECT where allowed)",
                        [shard, shard_options](const std::string&) {
                          return AnyTier::make<SafetensorsTier>(shard, "embed", shard_options);
                        });
    makers.emplace_back("open_table safetensors: io=mmap&cache_mb=1",
                        [shard, info](const std::string&) {
                          return open_table("safetensors:" + shard +
                                                "?tensor=embed.weight&io=mmap"
                                                "&cache_mb=1",
                                            {.table_info = info})
                              .tier;
                        });
  }
  for (auto& [tier_name, make] : makers) {
    SCOPED_TRACE(tier_name);
    const OpenedTable opened = open_table("file:" + g.packed);
    AnyTier tier = make(g.packed);
    auto run = [&](auto policy) {
      using Policy = decltype(policy);
      TieredMemoryT<AnyTier, Policy> memory(tier, opened.info, {.max_tokens = g.tokens()});
      std::vector<float> e(static_cast<size_t>(g.tokens() * memory.memory_dim()), -1.0f);
      // Two batches in flight (double buffering): the whole batch and then its first half.
      auto first = memory.submit(g.hash_ids);
      const int64_t half = g.tokens() / 2;
      auto second = memory.submit(std::span<const int64_t>(g.hash_ids)
                                      .first(static_cast<size_t>(half * memory.num_columns())));
      const FetchReport report = memory.wait(first, e);
      EXPECT_EQ(report.rows, static_cast<int64_t>(g.hash_ids.size()));
      ASSERT_EQ(e.size(), want_e.size());
      EXPECT_EQ(std::memcmp(e.data(), want_e.data(), e.size() * sizeof(float)), 0)
          << "memory differs from the resident gather";
      std::fill(got.begin(), got.end(), 0.0f);
      tiered.forward_memory(e, g.hidden, g.batch, g.seq_len, got, ws);
      EXPECT_EQ(got, want);
      std::vector<float> e_half(static_cast<size_t>(half * memory.memory_dim()));
      memory.wait(second, e_half);
      EXPECT_EQ(std::memcmp(e_half.data(), want_e.data(), e_half.size() * sizeof(float)), 0);
    };
    {
      SCOPED_TRACE("synchronous");
      run(prefetch::Synchronous{});
    }
    {
      SCOPED_TRACE("asynchronous");
      run(prefetch::Asynchronous{});
    }
  }
}

TEST(TieredLayer, DemoLayerFromEveryTierEqualsTheResidentLayer) {
  check_layer_from_tiers<EngramLayer>("demo_a");
  check_layer_from_tiers<EngramLayer>("demo_d");
}

TEST(TieredLayer, FusedLayerFromEveryTierEqualsTheResidentLayer) {
  check_layer_from_tiers<FusedEngramLayer>("fused_a");
  check_layer_from_tiers<FusedEngramLayer>("fused_c");
}

/// Chunks of 7 tokens with decode states: tier + forward_memory equals the resident forward.
template <class Layer>
void check_streaming(const std::string& dir_name) {
  SCOPED_TRACE(dir_name);
  const Golden g(dir_name, scratch());
  const Layer resident = Layer::load(g.config, g.weights, {.column_rows = g.primes});
  const Layer tiered =
      Layer::load(g.config, g.weights, {.column_rows = g.primes, .table_in_tier = true});
  OpenedTable opened = open_table("file:" + g.packed + "?cache_mb=1");
  TieredMemoryT<AnyTier> memory(opened.tier, opened.info, {.max_tokens = 7 * g.batch});
  const int64_t cols = resident.num_columns(), width = g.width();
  std::vector<typename Layer::State> rs, ts;
  for (int64_t b = 0; b < g.batch; ++b) {
    rs.push_back(resident.make_state());
    ts.push_back(tiered.make_state());
  }
  std::vector<typename Layer::State*> rp, tp;
  for (int64_t b = 0; b < g.batch; ++b) {
    rp.push_back(&rs[static_cast<size_t>(b)]);
    tp.push_back(&ts[static_cast<size_t>(b)]);
  }
  typename Layer::Workspace ws;
  for (int64_t t0 = 0; t0 < g.seq_len; t0 += 7) {
    const int64_t k = std::min<int64_t>(7, g.seq_len - t0);
    std::vector<int64_t> ids(static_cast<size_t>(g.batch * k * cols));
    std::vector<float> h(static_cast<size_t>(g.batch * k * width)), want(h.size()), got(h.size());
    for (int64_t b = 0; b < g.batch; ++b) {
      std::copy_n(g.hash_ids.begin() + (b * g.seq_len + t0) * cols, k * cols,
                  ids.begin() + b * k * cols);
      std::copy_n(g.hidden.begin() + (b * g.seq_len + t0) * width, k * width,
                  h.begin() + b * k * width);
    }
    resident.forward(ids, h, g.batch, k, want, rp, ws);
    std::vector<float> e(static_cast<size_t>(g.batch * k * memory.memory_dim()));
    memory.fetch(ids, e);
    tiered.forward_memory(e, h, g.batch, k, got, tp, ws);
    ASSERT_EQ(got, want) << "chunk at " << t0;
  }
  for (int64_t b = 0; b < g.batch; ++b) EXPECT_EQ(ts[static_cast<size_t>(b)].position(), g.seq_len);
}

TEST(TieredLayer, StreamedChunksEqualTheResidentLayer) {
  check_streaming<EngramLayer>("demo_a");
  check_streaming<FusedEngramLayer>("fused_b");
}

TEST(TieredLayer, ForwardMemoryChecksItsArguments) {
  const Golden g("demo_b", scratch());
  const auto layer =
      EngramLayer::load(g.config, g.weights, {.column_rows = g.primes, .table_in_tier = true});
  EngramLayer::Workspace ws;
  std::vector<float> out(g.hidden.size());
  std::vector<float> e(static_cast<size_t>(g.tokens() * g.config.memory_dim()) - 1);
  EXPECT_THAT(error_of([&] { layer.forward_memory(e, g.hidden, g.batch, g.seq_len, out, ws); }),
              HasSubstr("memory has"));
  e.push_back(0.0f);
  e[5] = std::nanf("");
  EXPECT_THAT(error_of([&] { layer.forward_memory(e, g.hidden, g.batch, g.seq_len, out, ws); }),
              HasSubstr("memory at sequence 0, position 0, column 0 holds a non-finite value"));
  // A table in a tier needs the column sizes.
  EXPECT_THAT(error_of([&] { EngramLayer::load(g.config, g.weights, {.table_in_tier = true}); }),
              HasSubstr("needs CheckpointOptions::column_rows"));
}

TEST(TieredLayer, ShapeOnlyTableRefusesToGather) {
  const auto table = EmbeddingTableT<codec::BF16>::shape_only(8, {3, 5});
  EXPECT_FALSE(table.has_rows());
  EXPECT_EQ(table.total_rows(), 8);
  std::vector<float> out(16);
  GatherWorkspace ws;
  const std::vector<int64_t> ids = {0, 0};
  EXPECT_THAT(
      error_of([&] { table.gather(std::span<const int64_t>(ids), std::span<float>(out), ws); }),
      HasSubstr("rows live in a tier"));
}

/// RecordDecoder equals EmbeddingTableT::gather on the same rows for every codec, decoded whole or
/// in uneven chunks, fast or reference.
TEST(RecordDecoder, EqualsTheTableGatherForEveryCodecWholeAndChunked) {
  for (const test::RowCase& c : test::row_cases()) {
    SCOPED_TRACE(c.name);
    const test::TestTable& t = test::test_table(c);
    const PackedTableInfo& info = t.info;
    const RecordDecoder decoder(info);
    std::mt19937_64 rng(5);
    std::vector<int64_t> ids(301);
    for (auto& id : ids) id = static_cast<int64_t>(rng() % static_cast<uint64_t>(info.num_rows));
    const std::vector<std::byte> records = test::reference_rows(t, ids);
    std::vector<float> whole(ids.size() * static_cast<size_t>(info.row_dim));
    decoder.decode(records, whole);
    std::vector<float> reference(whole.size()), chunked(whole.size());
    decoder.decode_reference(records, reference);
    EXPECT_TRUE(same_values(whole, reference));
    const auto rb = static_cast<size_t>(info.row_bytes()), rd = static_cast<size_t>(info.row_dim);
    for (size_t first = 0, step = 1; first < ids.size(); first += step, step = step * 2 + 1) {
      const size_t n = std::min(step, ids.size() - first);
      decoder.decode(std::span<const std::byte>(records).subspan(first * rb, n * rb),
                     std::span<float>(chunked).subspan(first * rd, n * rd));
    }
    EXPECT_TRUE(same_values(whole, chunked));

    // The table's own gather over the split layout (data rows, then scale rows) of the same ids,
    // one row per column: [301 tokens, 1 column].
    const int64_t db = info.data_bytes_per_row(), sb = info.scale_bytes_per_row();
    std::vector<std::byte> data(ids.size() * static_cast<size_t>(db)),
        scales(ids.size() * static_cast<size_t>(sb));
    for (size_t i = 0; i < ids.size(); ++i) {
      std::memcpy(data.data() + i * db, records.data() + i * rb, static_cast<size_t>(db));
      if (sb > 0)
        std::memcpy(scales.data() + i * sb, records.data() + i * rb + db, static_cast<size_t>(sb));
    }
    std::vector<int64_t> seq(ids.size());
    for (size_t i = 0; i < seq.size(); ++i) seq[i] = static_cast<int64_t>(i);
    std::vector<float> gathered(whole.size());
    GatherWorkspace ws;
    auto gather = [&](auto codec_tag) {
      using Codec = decltype(codec_tag);
      EmbeddingTableT<Codec> table(data, scales, info.row_dim, {static_cast<int64_t>(ids.size())});
      table.gather(std::span<const int64_t>(seq), std::span<float>(gathered), ws);
    };
    if (info.codec == "f32") gather(codec::F32{});
    if (info.codec == "bf16") gather(codec::BF16{});
    if (info.codec == "f16") gather(codec::F16{});
    if (info.codec == "fp8_e4m3") gather(codec::Fp8E4M3T<32>{});
    ASSERT_EQ(info.codec != "fp8_e4m3" || info.config.quant_block == 32, true);
    EXPECT_TRUE(same_values(whole, gathered));
  }
}

TEST(TableRowIds, AddsOffsetsAndNamesBadIds) {
  const std::vector<int64_t> offsets = {0, 5, 12}, primes = {5, 7, 2}, ids = {4, 6, 1, 0, 0, 0};
  std::vector<int64_t> rows(6);
  table_row_ids(ids, offsets, primes, rows);
  EXPECT_EQ(rows, (std::vector<int64_t>{4, 11, 13, 0, 5, 12}));
  const std::vector<int64_t> bad = {0, 0, 0, 0, 7, 0};
  EXPECT_THAT(error_of([&] { table_row_ids(bad, offsets, primes, rows); }),
              HasSubstr("hash id 7 at token 1, column 1 is outside [0, 7)"));
}

TEST(OpenTable, ParsesTheFileSchemeAndNamesMistakes) {
  const Golden g("demo_b", scratch());
  const OpenedTable plain = open_table(g.packed);
  EXPECT_THAT(plain.tier.describe(), HasSubstr("direct-io"));
  EXPECT_EQ(plain.info.primes, g.primes);
  const OpenedTable cached = open_table("file:" + g.packed + "?cache_mb=2&io=buffered");
  EXPECT_THAT(cached.tier.describe(), HasSubstr("cache"));
  EXPECT_NE(cached.tier.target<CachedTier<DirectIOTier>>(), nullptr);
  EXPECT_EQ(cached.tier.target<DirectIOTier>(), nullptr);
  EXPECT_THAT(error_of([&] { open_table("s3://bucket/t.engram"); }),
              HasSubstr("unknown scheme 's3'"));
  EXPECT_THAT(error_of([&] { open_table("file:" + g.packed + "?cache=3"); }),
              HasSubstr("unknown parameter 'cache'"));
  EXPECT_THAT(error_of([&] { open_table("file:" + g.packed + "?cache_mb=-1"); }),
              HasSubstr("'cache_mb' must be a non-negative integer"));
  EXPECT_THAT(error_of([&] { open_table("file:" + g.packed + "?io=fast"); }),
              HasSubstr("'io' must be direct, buffered or mmap"));
  EXPECT_THAT(error_of([&] { open_table("file:/nonexistent/t.engram"); }),
              HasSubstr("/nonexistent/t.engram"));
}

// cache_mb is MiB shifted into bytes: a value past the bound is an error naming the parameter, not
// a signed overflow that wraps to a negative capacity (which used to open with no cache at all).
TEST(OpenTable, CacheMbBeyondTheBoundIsNamed) {
  const Golden g("demo_b", scratch());
  for (const std::string value :
       {"1073741825", "8796093022208", "9223372036854775807", "17592186044416"}) {
    SCOPED_TRACE("cache_mb=" + value);
    const std::string uri = "file:" + g.packed + "?cache_mb=" + value;
    EXPECT_THAT(error_of([&] { open_table(uri); }),
                HasSubstr("table URI '" + uri + "': parameter 'cache_mb' must be at most " +
                          "1073741824, found '" + value + "'"));
  }
  EXPECT_THAT(error_of([&] { open_table("file:" + g.packed + "?cache_mb=99999999999999999999"); }),
              HasSubstr("'cache_mb' must be a non-negative integer"));
  EXPECT_THAT(error_of([&] { parse_memcached_uri("memcached://127.0.0.1:1?cache_mb=1073741825"); }),
              HasSubstr("cache_mb must be an integer in [0, 1073741824]"));
}

TEST(TieredMemory, TierErrorsReachTheBatchThatHitThem) {
  const Golden g("demo_b", scratch());
  OpenedTable opened = open_table(g.packed);
  test::FaultyTier<AnyTier> faulty(opened.tier);
  faulty.fail_batches = {1};
  TieredMemoryT<test::FaultyTier<AnyTier>> memory(faulty, opened.info, {.max_tokens = g.tokens()});
  std::vector<float> e(static_cast<size_t>(g.tokens() * memory.memory_dim()));
  auto a = memory.submit(g.hash_ids);
  auto b = memory.submit(g.hash_ids);
  EXPECT_EQ(memory.wait(a, e).rows, static_cast<int64_t>(g.hash_ids.size()));
  EXPECT_THAT(error_of([&] { memory.wait(b, e); }), HasSubstr("injected fault in batch 1"));
  EXPECT_EQ(memory.fetch(g.hash_ids, e).rows, static_cast<int64_t>(g.hash_ids.size()));
  std::vector<int64_t> bad = g.hash_ids;
  bad[3] = g.primes[1];  // token 1, column 1 of demo_b's 2 columns
  EXPECT_THAT(error_of([&] { memory.submit(bad); }), HasSubstr("at token 1, column 1 is outside"));
}

}  // namespace
}  // namespace engram
