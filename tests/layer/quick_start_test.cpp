// The README's quick start ("Using it"), compiled and run so that it cannot rot: a layer from the
// four components (vocabulary compression, hasher, table, gate block) with its table in a tier and
// a prefetch policy, every layer of the config behind an EngramStack, `hidden += engram(ids,
// hidden)` between the blocks. Checked against the resident layers run one by one.
// The snippet lives in bench/compile_time/quick_start.cpp (the compile-time benchmark's TU).
// Built twice: header-only (layer_quick_start_test) and in compiled mode
// (layer_quick_start_compiled_test, linking engram::instantiations: the snippet's loaders,
// open_table, the hasher, the layer and the stack come from src/engram_instantiations.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#define ENGRAM_QUICK_START_NO_MAIN
#include "../../bench/compile_time/quick_start.cpp"  // the README snippet: quick_start::run

#include "engram/memory/packed_format.hpp"
#include "engram/memory/packed_writer.hpp"
#include "engram/memory/tiers/in_memory_tier.hpp"
#include "layer/layer_golden.hpp"
#include "memory/tiers/tier_test_support.hpp"

#ifdef ENGRAM_EXTERN_TEMPLATES
#define ENGRAM_QUICK_START_SUITE QuickStartCompiled
#else
#define ENGRAM_QUICK_START_SUITE QuickStart
#endif

namespace engram {
namespace {

TEST(ENGRAM_QUICK_START_SUITE, StackOfTieredLayersEqualsTheResidentLayersOneByOne) {
  const test::LayerGolden g = test::load_layer_golden("demo_a");
  const test::ScratchDir scratch("quick_start");
  const std::string dir = scratch.path().string();
  std::filesystem::copy_file(g.dir + "/config.json", dir + "/config.json");
  std::filesystem::copy_file(test::data_path("tokenizer/deepseek_v3/lookup.safetensors"),
                             dir + "/lookup.safetensors");
  const auto compression = CompressionTable::load(dir + "/lookup.safetensors");

  // Checkpoint: the golden's weights under every layer's prefix. Tables: the golden's rows for its
  // layer, seeded random f32 rows for the others, packed into layer<id>.engram.
  std::vector<EngramLayer> resident;
  std::vector<std::vector<std::byte>> records;
  for (const int64_t id : g.config.layer_ids) {
    auto hasher = std::make_shared<const NgramHasher>(g.config, compression.lookup(), id);
    const std::vector<int64_t> primes(hasher->primes().begin(), hasher->primes().end());
    const PackedTableInfo info = PackedTableInfo::make(
        g.config, id, "f32", primes, {hasher->multipliers().begin(), hasher->multipliers().end()});
    if (id == g.layer_id) {
      resident.push_back(EngramLayer::load(g.config, g.weights, hasher));
      InMemoryTier rows = InMemoryTier::view(
          g.weights->at("multi_head_embedding.embedding.weight")
              .bytes.first(static_cast<size_t>(info.num_rows * info.row_bytes())),
          info.row_bytes());
      pack_table(dir + "/layer" + std::to_string(id) + ".engram", info, rows, {}, 100);
      continue;
    }
    auto& bytes = records.emplace_back(static_cast<size_t>(info.num_rows * info.row_bytes()));
    std::mt19937 rng(static_cast<unsigned>(id));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t i = 0; i < bytes.size(); i += 4) {
      const float v = normal(rng);
      std::memcpy(bytes.data() + i, &v, 4);
    }
    auto weights = std::make_shared<EngramWeightsT<float>>(
        EngramLayer::load(g.config, g.weights, hasher, {.table_in_tier = true}).weights());
    weights->table = EmbeddingTableT<codec::F32>(bytes, g.config.row_dim(), primes, "random");
    resident.emplace_back(weights, hasher);
    InMemoryTier rows = InMemoryTier::view(bytes, info.row_bytes());
    pack_table(dir + "/layer" + std::to_string(id) + ".engram", info, rows, {}, 100);
  }
  test::write_checkpoint(g, dir + "/model.safetensors", "", [&](std::vector<TensorWrite>& t) {
    std::vector<TensorWrite> prefixed;
    for (const int64_t id : g.config.layer_ids)
      for (const TensorWrite& w : t)
        if (w.name.rfind("layers.", 0) != 0)
          prefixed.push_back(
              {"layers." + std::to_string(id) + ".engram." + w.name, w.dtype, w.shape, w.bytes});
    t.insert(t.end(), prefixed.begin(), prefixed.end());
  });

  // Blocks: a scale by 0.5 each, so that the order of Engram and blocks matters.
  const int64_t blocks =
      1 + *std::max_element(g.config.layer_ids.begin(), g.config.layer_ids.end());
  std::vector<std::function<void(std::span<float>)>> block_fns(static_cast<size_t>(blocks),
                                                               [](std::span<float> h) {
                                                                 for (float& v : h) v *= 0.5f;
                                                               });
  std::vector<float> got = g.hidden;
  quick_start::run(dir, g.input_ids, g.batch, g.seq_len, got, block_fns);

  std::vector<float> want = g.hidden, delta(want.size());
  EngramLayer::Workspace ws;
  for (int64_t i = 0; i < blocks; ++i) {
    for (size_t l = 0; l < g.config.layer_ids.size(); ++l)
      if (g.config.layer_ids[l] == i) {
        resident[l].forward_tokens(g.input_ids, want, g.batch, g.seq_len, delta, ws);
        for (size_t k = 0; k < want.size(); ++k) want[k] += delta[k];
      }
    block_fns[static_cast<size_t>(i)](want);
  }
  EXPECT_EQ(got, want);
  EXPECT_NE(got, g.hidden);
}

}  // namespace
}  // namespace engram
