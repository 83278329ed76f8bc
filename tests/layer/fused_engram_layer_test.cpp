// The fused (V4.1-style) Engram layer against the PyTorch oracle's goldens
// (tests/data/layer/fused_*): whole sequences, chunked == whole, fast == reference, dead-token
// masks, thread counts, token-id front end (hasher) == golden hash ids, checkpoint errors.
#include "engram/layer/fused_engram_layer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>

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

constexpr double kChunkTolerance = 1e-5;

const char* const kFusedGoldens[] = {"fused_a", "fused_b", "fused_c"};

class FusedLayerGoldenTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    g_ = load_layer_golden(GetParam());
    ASSERT_EQ(g_.config.variant, Variant::kFused);
    layer_ = std::make_unique<FusedEngramLayer>(
        FusedEngramLayer::load(g_.config, g_.weights, {.prefix = "", .column_rows = g_.primes}));
  }
  LayerGolden g_;
  std::unique_ptr<FusedEngramLayer> layer_;
};

TEST_P(FusedLayerGoldenTest, WholeSequencesMatchOracle) {
  SCOPED_TRACE(g_.name);
  FusedEngramLayer::Workspace ws;
  std::vector<float> out(g_.expected.size(), -1.0f), ref(g_.expected.size());
  layer_->forward(g_.hash_ids, g_.hidden, g_.batch, g_.seq_len, out, ws);
  layer_->forward_reference(g_.hash_ids, g_.hidden, g_.batch, g_.seq_len, ref);
  const double err = oracle_error(out, g_.expected);
  RecordProperty("relative_error_fast", std::to_string(err));
  EXPECT_LT(err, kOracleTolerance);
  EXPECT_LT(oracle_error(ref, g_.expected), kOracleTolerance);
  EXPECT_LT(relative_max_error(out, ref), kChunkTolerance);
}

TEST_P(FusedLayerGoldenTest, ChunksEqualWhole) {
  SCOPED_TRACE(g_.name);
  const int64_t cols = layer_->num_columns(), w = g_.width(), B = g_.batch, T = g_.seq_len;
  FusedEngramLayer::Workspace ws;
  std::vector<float> whole(g_.expected.size());
  layer_->forward(g_.hash_ids, g_.hidden, B, T, whole, ws);
  std::mt19937 rng(3);
  for (const int64_t chunk : {1, 7, 0}) {
    SCOPED_TRACE(chunk ? "chunk " + std::to_string(chunk) : std::string("random chunks"));
    std::vector<FusedEngramLayer::State> states;
    for (int64_t b = 0; b < B; ++b) states.push_back(layer_->make_state());
    std::vector<FusedEngramLayer::State*> ptrs;
    for (auto& s : states) ptrs.push_back(&s);
    std::vector<float> out(whole.size(), -1.0f);
    for (int64_t t0 = 0; t0 < T;) {
      const int64_t len = std::min<int64_t>(chunk ? chunk : 1 + rng() % 9, T - t0);
      std::vector<int64_t> ids(B * len * cols);
      std::vector<float> hidden(B * len * w), chunk_out(B * len * w);
      for (int64_t b = 0; b < B; ++b) {
        std::copy_n(g_.hash_ids.begin() + (b * T + t0) * cols, len * cols,
                    ids.begin() + b * len * cols);
        std::copy_n(g_.hidden.begin() + (b * T + t0) * w, len * w, hidden.begin() + b * len * w);
      }
      layer_->forward(ids, hidden, B, len, chunk_out, ptrs, ws);
      for (int64_t b = 0; b < B; ++b)
        std::copy_n(chunk_out.begin() + b * len * w, len * w, out.begin() + (b * T + t0) * w);
      t0 += len;
    }
    EXPECT_LT(relative_max_error(out, whole), kChunkTolerance);
    for (const auto& s : states) EXPECT_EQ(s.position(), T);
  }
}

TEST_P(FusedLayerGoldenTest, DeadTokensPassHiddenThroughExactly) {
  SCOPED_TRACE(g_.name);
  const int64_t cols = layer_->num_columns(), w = g_.width(), tokens = g_.tokens();
  FusedEngramLayer::Workspace ws;
  std::vector<float> whole(g_.expected.size());
  layer_->forward(g_.hash_ids, g_.hidden, g_.batch, g_.seq_len, whole, ws);
  std::vector<uint8_t> live(tokens);
  std::vector<int64_t> ids = g_.hash_ids;
  for (int64_t t = 0; t < tokens; ++t) {
    live[t] = (t % 3 == 1) ? 0 : 1 + t % 2;  // any nonzero value is live
    if (!live[t]) std::fill_n(ids.begin() + t * cols, cols, int64_t{-5});  // never read
  }
  std::vector<float> out(whole.size()), ref(whole.size());
  layer_->forward(ids, g_.hidden, g_.batch, g_.seq_len, out, ws, live);
  layer_->forward_reference(ids, g_.hidden, g_.batch, g_.seq_len, ref, live);
  for (int64_t t = 0; t < tokens; ++t) {
    SCOPED_TRACE("token " + std::to_string(t));
    const auto row = [&](const std::vector<float>& v) {
      return std::vector<float>(v.begin() + t * w, v.begin() + (t + 1) * w);
    };
    if (!live[t]) {
      EXPECT_EQ(row(out), row(g_.hidden));
      EXPECT_EQ(row(ref), row(g_.hidden));
    } else {
      EXPECT_LT(relative_max_error(row(out), row(whole)), kChunkTolerance);
    }
  }
  // an all-live mask is the unmasked forward
  std::vector<uint8_t> all_live(tokens, 1);
  layer_->forward(g_.hash_ids, g_.hidden, g_.batch, g_.seq_len, out, ws, all_live);
  EXPECT_LT(relative_max_error(out, whole), kChunkTolerance);
  // invalid ids of live tokens are still reported
  ids = g_.hash_ids;
  ids[(g_.tokens() - 1) * cols] = -5;
  live.assign(tokens, 1);
  live[0] = 0;
  EXPECT_THAT(
      error_of([&] { layer_->forward(ids, g_.hidden, g_.batch, g_.seq_len, out, ws, live); }),
      HasSubstr("hash id -5 at sequence " + std::to_string(g_.batch - 1) + ", position " +
                std::to_string(g_.seq_len - 1) + ", column 0"));
}

TEST_P(FusedLayerGoldenTest, InPlaceAndThreadCounts) {
  SCOPED_TRACE(g_.name);
  FusedEngramLayer::Workspace ws;
  std::vector<float> out(g_.expected.size());
  layer_->forward(g_.hash_ids, g_.hidden, g_.batch, g_.seq_len, out, ws);
  std::vector<float> in_place = g_.hidden;
  layer_->forward(g_.hash_ids, in_place, g_.batch, g_.seq_len, in_place, ws);
  EXPECT_EQ(in_place, out);
  const int saved = Eigen::nbThreads();
  for (const int threads : {1, 3}) {
    Eigen::setNbThreads(threads);
    FusedEngramLayer::Workspace fresh;
    std::vector<float> other(out.size());
    layer_->forward(g_.hash_ids, g_.hidden, g_.batch, g_.seq_len, other, fresh);
    EXPECT_LT(relative_max_error(other, out), 1e-6) << threads << " threads";
  }
  Eigen::setNbThreads(saved);
}

INSTANTIATE_TEST_SUITE_P(Goldens, FusedLayerGoldenTest, ::testing::ValuesIn(kFusedGoldens),
                         [](const auto& info) { return std::string(info.param); });

TEST(FusedEngramLayerCheckpoint, TableIsFp8ViewOfTheFile) {
  const LayerGolden g = load_layer_golden("fused_a");
  const auto layer =
      FusedEngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = g.primes});
  const auto& table = std::get<EmbeddingTableT<codec::Fp8E4M3T<16>>>(layer.weights().table);
  EXPECT_EQ(table.row_storage().data(), g.weights->at("embed.weight").bytes.data());
  EXPECT_EQ(table.scale_storage().data(), g.weights->at("embed.weight_scale_inv").bytes.data());
}

TEST(FusedEngramLayerCheckpoint, ErrorsNameTensorAndShapes) {
  const LayerGolden g = load_layer_golden("fused_a");
  EXPECT_THAT(error_of([&] { FusedEngramLayer::load(g.config, g.weights, CheckpointOptions{}); }),
              HasSubstr("pass CheckpointOptions::column_rows (the hasher's primes, 6 values)"));
  std::vector<int64_t> few(g.primes.begin(), g.primes.end() - 1);
  EXPECT_THAT(
      error_of(
          [&] { FusedEngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = few}); }),
      HasSubstr("column_rows has 5 entries, expected (max_ngram_size - 1) * n_head_per_ngram = 6"));
  std::vector<int64_t> big = g.primes;
  big[0] += 1000;
  EXPECT_THAT(error_of([&] {
                FusedEngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = big});
              }),
              HasSubstr("tensor 'embed.weight' has "));
  EngramConfig other = g.config;
  other.hc_mult = 2;
  EXPECT_THAT(error_of([&] {
                FusedEngramLayer::load(other, g.weights, {.prefix = "", .column_rows = g.primes});
              }),
              HasSubstr("tensor 'wkv.weight' has shape [320, 192], expected [192, 192]"));
  other = g.config;
  other.quant_block = 32;
  EXPECT_THAT(
      error_of([&] {
        FusedEngramLayer::load(other, g.weights, {.prefix = "", .column_rows = g.primes});
      }),
      HasSubstr("tensor 'embed.weight_scale_inv' has shape [" +
                std::to_string(g.weights->at("embed.weight").shape[0]) + ", 2], expected [" +
                std::to_string(g.weights->at("embed.weight").shape[0]) + ", 1]"));
  other = g.config;
  other.quant_block = 8;
  other.head_dim = 32;
  EXPECT_THAT(error_of([&] {
                FusedEngramLayer::load(other, g.weights, {.prefix = "", .column_rows = g.primes});
              }),
              HasSubstr("expected ["));
  // the demo loader refuses a fused config
  EXPECT_THAT(error_of([&] { load_engram_weights<float>(g.config, g.weights); }),
              HasSubstr("needs a demo-variant config"));
}

TEST(FusedEngramLayerForward, SizeErrors) {
  const LayerGolden g = load_layer_golden("fused_b");
  const auto layer =
      FusedEngramLayer::load(g.config, g.weights, {.prefix = "", .column_rows = g.primes});
  FusedEngramLayer::Workspace ws;
  std::vector<float> out(g.expected.size());
  std::vector<uint8_t> live(g.tokens() + 1);
  EXPECT_THAT(
      error_of([&] { layer.forward(g.hash_ids, g.hidden, g.batch, g.seq_len, out, ws, live); }),
      HasSubstr("live has " + std::to_string(g.tokens() + 1) + " values, expected " +
                std::to_string(g.tokens())));
  std::vector<float> hidden(g.hidden.begin(), g.hidden.end() - 1);
  EXPECT_THAT(error_of([&] { layer.forward(g.hash_ids, hidden, g.batch, g.seq_len, out, ws); }),
              HasSubstr("hidden has"));
}

}  // namespace
}  // namespace engram
