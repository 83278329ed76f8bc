// The V4.1 Engram layer (V41EngramLayerT, formerly FusedEngramLayerT) beyond the properties every
// block shares (conformance_test.cpp): the FP8 table is a view of the file, checkpoint and size
// errors.
#include "engram/layer/fused_engram_layer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <functional>

#include "layer/layer_golden.hpp"
#include "support/error_of.hpp"

namespace engram {
namespace {

using test::error_of;

using test::LayerGolden;
using test::load_layer_golden;
using ::testing::HasSubstr;

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
