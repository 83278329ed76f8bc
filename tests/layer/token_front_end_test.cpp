// The token-id front end of both layers (NgramHasher inside the layer): token ids -> the oracle's
// output, bit-identical to feeding the oracle's hash ids, chunked == whole, dead tokens, errors.
// The DeepSeek-V3 compression table is the one the hashing tests commit
// (tests/data/hashing/dsv3_lookup.safetensors, the table the layer goldens were made with).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "engram/hashing/ngram_hasher.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/fused_engram_layer.hpp"
#include "engram/layer/load.hpp"
#include "layer/layer_golden.hpp"
#include "support/error_of.hpp"

namespace engram {
namespace {

using test::error_of;

using test::kOracleTolerance;
using test::LayerGolden;
using test::load_layer_golden;
using test::oracle_error;
using test::relative_max_error;
using ::testing::HasSubstr;

using test::dsv3_lookup;
using test::load_with_hasher;

template <class Layer>
void check_tokens_match_golden(const char* name) {
  SCOPED_TRACE(name);
  const LayerGolden g = load_layer_golden(name);
  const Layer layer = load_with_hasher<Layer>(g, g.layer_id);
  typename Layer::Workspace ws;
  std::vector<float> from_tokens(g.expected.size()), from_hashes(g.expected.size());
  layer.forward_tokens(g.input_ids, g.hidden, g.batch, g.seq_len, from_tokens, ws);
  layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, from_hashes, ws);
  EXPECT_LT(oracle_error(from_tokens, g.expected), kOracleTolerance);
  EXPECT_EQ(from_tokens, from_hashes);  // same hash ids, same kernels

  // chunked: 1, 7 and random chunk sizes continue each sequence's hash and conv state
  const int64_t w = g.width(), B = g.batch, T = g.seq_len;
  std::mt19937 rng(11);
  for (const int64_t chunk : {1, 7, 0}) {
    SCOPED_TRACE(chunk ? "chunk " + std::to_string(chunk) : std::string("random chunks"));
    std::vector<typename Layer::State> states;
    for (int64_t b = 0; b < B; ++b) states.push_back(layer.make_state());
    std::vector<typename Layer::State*> ptrs;
    for (auto& s : states) ptrs.push_back(&s);
    std::vector<float> out(from_tokens.size(), -1.0f);
    for (int64_t t0 = 0; t0 < T;) {
      const int64_t len = std::min<int64_t>(chunk ? chunk : 1 + rng() % 10, T - t0);
      std::vector<int64_t> ids(B * len);
      std::vector<float> hidden(B * len * w), chunk_out(B * len * w);
      for (int64_t b = 0; b < B; ++b) {
        std::copy_n(g.input_ids.begin() + b * T + t0, len, ids.begin() + b * len);
        std::copy_n(g.hidden.begin() + (b * T + t0) * w, len * w, hidden.begin() + b * len * w);
      }
      layer.forward_tokens(ids, hidden, B, len, chunk_out, ptrs, ws);
      for (int64_t b = 0; b < B; ++b)
        std::copy_n(chunk_out.begin() + b * len * w, len * w, out.begin() + (b * T + t0) * w);
      t0 += len;
    }
    EXPECT_LT(relative_max_error(out, from_tokens), 1e-5);
    for (const auto& s : states) EXPECT_EQ(s.position(), T);
  }
}

TEST(TokenFrontEnd, DemoTokensMatchOracle) {
  for (const char* name : {"demo_a", "demo_b", "demo_c", "demo_d"})
    check_tokens_match_golden<EngramLayer>(name);
}

TEST(TokenFrontEnd, FusedTokensMatchOracle) {
  for (const char* name : {"fused_a", "fused_b", "fused_c"})
    check_tokens_match_golden<FusedEngramLayer>(name);
}

TEST(TokenFrontEnd, DeadTokensHashAsPad) {
  const LayerGolden g = load_layer_golden("demo_a");
  const auto layer = load_with_hasher<EngramLayer>(g, g.layer_id);
  EngramLayer::Workspace ws;
  std::vector<uint8_t> live(g.tokens(), 1);
  std::vector<int64_t> ids = g.input_ids, padded = g.input_ids;
  for (int64_t t = 3; t < g.tokens(); t += 5) {
    live[t] = 0;
    ids[t] = -100;  // never read
    padded[t] = g.config.pad_id;
  }
  std::vector<int64_t> hashed(g.hash_ids.size()), hashed_padded(g.hash_ids.size());
  layer.hash_tokens(ids, g.batch, g.seq_len, hashed, {}, live);
  layer.hash_tokens(padded, g.batch, g.seq_len, hashed_padded);
  EXPECT_EQ(hashed, hashed_padded);
  // the layer then shuts the dead tokens' gates, as forward(hash_ids, ..., live) does
  std::vector<float> a(g.expected.size()), b(g.expected.size());
  layer.forward_tokens(ids, g.hidden, g.batch, g.seq_len, a, ws, live);
  layer.forward(hashed_padded, g.hidden, g.batch, g.seq_len, b, ws, live);
  EXPECT_EQ(a, b);

  // the fused layer also shuts the gate of dead tokens
  const LayerGolden f = load_layer_golden("fused_c");
  const auto fused = load_with_hasher<FusedEngramLayer>(f, f.layer_id);
  std::vector<uint8_t> fused_live(f.tokens(), 1);
  fused_live[4] = 0;
  std::vector<int64_t> fused_ids = f.input_ids;
  fused_ids[4] = -1;
  std::vector<float> out(f.expected.size());
  fused.forward_tokens(fused_ids, f.hidden, f.batch, f.seq_len, out, ws, fused_live);
  const int64_t w = f.width();
  EXPECT_EQ(std::vector<float>(out.begin() + 4 * w, out.begin() + 5 * w),
            std::vector<float>(f.hidden.begin() + 4 * w, f.hidden.begin() + 5 * w));
}

TEST(TokenFrontEnd, Errors) {
  const LayerGolden g = load_layer_golden("demo_a");
  // a hasher of another layer has other primes than this layer's table
  EXPECT_THAT(error_of([&] { load_with_hasher<EngramLayer>(g, 1); }),
              HasSubstr("tensor 'multi_head_embedding.offsets'[1] = "));
  const auto plain = EngramLayer::load(g.config, g.weights);
  const auto other_hasher = std::make_shared<const NgramHasher>(g.config, dsv3_lookup(), 1);
  EXPECT_THAT(error_of([&] {
                EngramLayer(std::make_shared<const EngramLayer::Weights>(plain.weights()),
                            other_hasher);
              }),
              HasSubstr("column sizes (primes) differ from the 8 of table"));

  EngramLayer::Workspace ws;
  std::vector<float> out(g.expected.size());
  EXPECT_THAT(
      error_of([&] { plain.forward_tokens(g.input_ids, g.hidden, g.batch, g.seq_len, out, ws); }),
      HasSubstr("forward_tokens needs a hasher"));
  const auto layer = load_with_hasher<EngramLayer>(g, g.layer_id);
  std::vector<int64_t> ids = g.input_ids;
  ids[g.seq_len + 2] = static_cast<int64_t>(dsv3_lookup().size());
  EXPECT_THAT(error_of([&] { layer.forward_tokens(ids, g.hidden, g.batch, g.seq_len, out, ws); }),
              HasSubstr("token id 128815 at sequence 1, position 2 is outside the compression "
                        "table [0, 128815)"));
  // a failed chunk leaves every state where it was
  std::vector<EngramDecodeState> states = {layer.make_state(), layer.make_state()};
  std::vector<EngramDecodeState*> ptrs = {&states[0], &states[1]};
  std::vector<int64_t> chunk = {5, 6, 7, static_cast<int64_t>(dsv3_lookup().size()) + 3};
  std::vector<float> hidden(4 * g.width()), chunk_out(4 * g.width());
  EXPECT_THAT(error_of([&] { layer.forward_tokens(chunk, hidden, 2, 2, chunk_out, ptrs, ws); }),
              HasSubstr("token id 128818 at sequence 1, position 1"));
  for (const auto& s : states) {
    EXPECT_EQ(s.position(), 0);
    EXPECT_EQ(s.hash_state(), layer.hasher()->initial_state());
  }
}

TEST(LoadEngramLayer, DispatchesOnVariant) {
  for (const char* name : {"demo_b", "fused_b"}) {
    SCOPED_TRACE(name);
    const LayerGolden g = load_layer_golden(name);
    auto hasher = std::make_shared<const NgramHasher>(g.config, dsv3_lookup(), g.layer_id);
    const AnyEngramLayer layer = load_engram_layer(g.config, g.weights, hasher);
    EXPECT_EQ(layer.index(), g.config.variant == Variant::kFused ? 1u : 0u);
    EngramWorkspace ws;
    std::vector<float> out(g.expected.size());
    std::visit(
        [&](const auto& l) {
          l.forward_tokens(g.input_ids, g.hidden, g.batch, g.seq_len, out, ws);
        },
        layer);
    EXPECT_LT(oracle_error(out, g.expected), kOracleTolerance);
    // without a hasher: the demo variant derives column sizes from its offsets, the fused needs
    // them
    if (g.config.variant == Variant::kDemo) {
      const auto plain = load_engram_layer(g.config, g.weights);
      std::visit(
          [&](const auto& l) { l.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, out, ws); },
          plain);
      EXPECT_LT(oracle_error(out, g.expected), kOracleTolerance);
    } else {
      EXPECT_THAT(error_of([&] { load_engram_layer(g.config, g.weights); }),
                  HasSubstr("pass CheckpointOptions::column_rows"));
    }
  }
}

}  // namespace
}  // namespace engram
