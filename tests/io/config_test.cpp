#include "engram/io/config.hpp"
#include "engram/io/config_json.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/test_data.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

json demo_json() {
  return json::parse(R"({"engram_vocab_size": [1009, 1201], "max_ngram_size": 3,
    "n_embed_per_ngram": 64, "n_head_per_ngram": 4, "layer_ids": [1, 15], "pad_id": 2,
    "seed": 0, "kernel_size": 4, "hidden_size": 96, "hc_mult": 4, "unknown_field": "ignored"})");
}

std::string error_of(const json& j) {
  try {
    (void)EngramConfig::from_json(j, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigTest, ReadsTheOracleDemoConfig) {
  const auto c = EngramConfig::load(test::data_path("io/small_l15_config.json"));
  EXPECT_EQ(c.variant, Variant::kDemo);
  EXPECT_EQ(c.engram_vocab_size, (std::vector<int64_t>{1009, 1201}));
  EXPECT_EQ(c.num_columns(), 8);
  EXPECT_EQ(c.row_dim(), 16);
  EXPECT_EQ(c.memory_dim(), 128);
  EXPECT_EQ(c.layer_ids, (std::vector<int64_t>{1, 15}));
  EXPECT_NO_THROW(c.require_layer(15));
  EXPECT_THAT(
      [&] {
        try {
          c.require_layer(3, "cfg.json");
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string();
      }(),
      HasSubstr("layer 3 is not in layer_ids [1, 15]"));
}

TEST(ConfigTest, ReadsTheOracleFusedConfigWithDefaults) {
  const auto c = EngramConfig::load(test::data_path("io/fused_l14_config.json"));
  EXPECT_EQ(c.variant, Variant::kFused);
  EXPECT_EQ(c.engram_vocab_size, (std::vector<int64_t>{1301, 1301, 1301}));
  EXPECT_EQ(c.row_dim(), 64);
  EXPECT_EQ(c.num_columns(), 12);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.quant_block, 32);
}

TEST(ConfigTest, IntegerVocabSizeExpandsToEveryOrder) {
  auto j = demo_json();
  j["engram_vocab_size"] = 646400;
  j["max_ngram_size"] = 4;
  const auto c = EngramConfig::from_json(j, "cfg.json");
  EXPECT_EQ(c.engram_vocab_size, (std::vector<int64_t>(3, 646400)));
  EXPECT_EQ(c.vocab_size_for_order(4), 646400);
}

TEST(ConfigTest, ToJsonRoundTrips) {
  const auto c = EngramConfig::from_json(demo_json(), "cfg.json");
  const auto d = EngramConfig::from_json(c.to_json(), "again");
  EXPECT_EQ(d.to_json(), c.to_json());
}

TEST(ConfigTest, EachFaultNamesTheField) {
  struct Case {
    const char* name;
    const char* pointer;
    json value;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"missing", "", nullptr, "missing field 'hidden_size'"},
      {"mistyped", "/max_ngram_size", "3", "'max_ngram_size' must be an integer"},
      {"float", "/hc_mult", 4.0, "'hc_mult' must be an integer"},
      {"ngram_too_small", "/max_ngram_size", 1, "'max_ngram_size' must be at least 2"},
      {"nonpositive", "/hidden_size", 0, "'hidden_size' must be in [1, 16777216], found 0"},
      {"heads_divide", "/n_head_per_ngram", 5, "must be divisible by 'n_head_per_ngram'"},
      {"vocab_len", "/engram_vocab_size", json::array({1009}), "must have max_ngram_size - 1"},
      {"vocab_type", "/engram_vocab_size", "big", "integer or an array"},
      {"layers_empty", "/layer_ids", json::array(), "'layer_ids' must not be empty"},
      {"variant", "/variant", "huge", "'variant' must be"},
      {"negative_seed", "/seed", -20000, "NumPy seeds are non-negative"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto j = demo_json();
    if (std::string(c.pointer).empty())
      j.erase("hidden_size");
    else
      j[json::json_pointer(c.pointer)] = c.value;
    const std::string msg = error_of(j);
    EXPECT_THAT(msg, HasSubstr("cfg.json"));
    EXPECT_THAT(msg, HasSubstr(c.expected));
  }
  EXPECT_THAT(error_of(json::array()), HasSubstr("must be a JSON object"));
}

// Sizes whose derived products ((N-1)*H, memory width, projections) would overflow int64 are
// rejected before any product is formed, naming the field and its bound. The first two were
// accepted when (N-1)*H wrapped around: 2 * 2^62 wraps to INT64_MIN (width "small"), 4 * 2^62 to 0.
TEST(ConfigTest, HugeSizesAreRejectedBeforeTheyOverflow) {
  constexpr int64_t kHuge = int64_t{1} << 62;
  struct Case {
    const char* name;
    json patch;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"demo_heads",
       {{"n_head_per_ngram", kHuge}, {"n_embed_per_ngram", kHuge}},
       "'n_head_per_ngram' must be in [1, 16777216], found 4611686018427387904"},
      {"fused_heads",
       {{"variant", "fused"},
        {"max_ngram_size", 5},
        {"engram_vocab_size", 1009},
        {"head_dim", 32},
        {"n_head_per_ngram", kHuge}},
       "'n_head_per_ngram' must be in [1, 16777216]"},
      {"embed", {{"n_embed_per_ngram", kHuge}}, "'n_embed_per_ngram' must be in [1, 16777216]"},
      {"head_dim", {{"variant", "fused"}, {"head_dim", kHuge}}, "'head_dim' must be in [1, "},
      {"hidden", {{"hidden_size", kHuge}}, "'hidden_size' must be in [1, 16777216]"},
      {"hc_mult", {{"hc_mult", kHuge}}, "'hc_mult' must be in [1, 256]"},
      {"kernel", {{"kernel_size", kHuge}}, "'kernel_size' must be in [1, 1024]"},
      {"quant_block",
       {{"variant", "fused"}, {"head_dim", 64}, {"quant_block", 128}},
       "'quant_block' must be in [1, head_dim = 64]"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto j = demo_json();
    j.update(c.patch);
    const std::string msg = error_of(j);
    EXPECT_THAT(msg, HasSubstr("cfg.json"));
    EXPECT_THAT(msg, HasSubstr(c.expected));
  }
  // The bounds themselves are accepted.
  auto j = demo_json();
  j.update({{"n_head_per_ngram", 1},
            {"n_embed_per_ngram", 1 << 22},
            {"hc_mult", 256},
            {"kernel_size", 1024},
            {"max_ngram_size", 3}});
  const auto c = EngramConfig::from_json(j, "cfg.json");
  EXPECT_EQ(c.memory_dim(), 2 * (1 << 22));
}

TEST(ConfigTest, FileErrorsNameTheFile) {
  try {
    (void)EngramConfig::load(test::data_path("io/oracle_small.safetensors"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("oracle_small.safetensors: config is not valid JSON"));
  }
  EXPECT_THROW((void)EngramConfig::load("/nonexistent/cfg.json"), Error);
}

}  // namespace
}  // namespace engram
