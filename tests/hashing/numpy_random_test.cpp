// NumPy's SeedSequence, PCG64 and Generator.integers reproduced bit-exactly: every expectation is
// a value NumPy 1.24 produced (tests/data/hashing/numpy_random.json, from make_golden.py).
#include "engram/hashing/numpy_random.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engram/hashing/ngram_hasher.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;
namespace np = numpy_random;

const nlohmann::json& expectations() {
  static const nlohmann::json j = [] {
    std::ifstream in(test::data_path("hashing/numpy_random.json"));
    EXPECT_TRUE(in.good());
    return nlohmann::json::parse(in);
  }();
  return j;
}

template <class T>
std::vector<T> values(const nlohmann::json& array) {
  std::vector<T> out;
  for (const auto& v : array) out.push_back(v.get<T>());
  return out;
}

void expect_pcg_state(const np::Pcg64& bits, const nlohmann::json& s) {
  EXPECT_EQ(bits.state_high(), s["state_hi"].get<uint64_t>());
  EXPECT_EQ(bits.state_low(), s["state_lo"].get<uint64_t>());
  EXPECT_EQ(bits.inc_high(), s["inc_hi"].get<uint64_t>());
  EXPECT_EQ(bits.inc_low(), s["inc_lo"].get<uint64_t>());
  EXPECT_EQ(bits.has_uint32(), s["has_uint32"].get<int>() != 0);
  EXPECT_EQ(bits.buffered_uint32(), s["uinteger"].get<uint32_t>());
}

TEST(NumpyRandom, ExpectationsCoverTheCases) {
  const auto& j = expectations();
  EXPECT_GE(j["seed_sequence"].size(), 15u);
  EXPECT_GE(j["pcg64"].size(), 8u);
  EXPECT_GE(j["integers"].size(), 40u);
  EXPECT_GE(j["multipliers"].size(), 150u);
}

TEST(NumpySeedSequence, PoolAndGeneratedStateMatchNumpy) {
  for (const auto& c : expectations()["seed_sequence"]) {
    SCOPED_TRACE("entropy " + c["entropy"].get<std::string>());
    const auto words = values<uint32_t>(c["entropy_words"]);
    const np::SeedSequence seq(words);
    EXPECT_EQ(std::vector<uint32_t>(seq.pool().begin(), seq.pool().end()),
              values<uint32_t>(c["pool"]));
    EXPECT_EQ(seq.generate_state_u32(9), values<uint32_t>(c["state_u32"]));
    EXPECT_EQ(seq.generate_state_u64(5), values<uint64_t>(c["state_u64"]));
    if (words.size() <= 2) {  // entropy < 2^64: the integer constructor agrees
      const uint64_t entropy = words[0] | (words.size() == 2 ? uint64_t{words[1]} << 32 : 0);
      EXPECT_EQ(np::SeedSequence(entropy).pool(), seq.pool());
    }
  }
}

TEST(NumpyPcg64, SeededStateAndRawDrawsMatchNumpy) {
  for (const auto& c : expectations()["pcg64"]) {
    const uint64_t seed = c["seed"].get<uint64_t>();
    SCOPED_TRACE("seed " + std::to_string(seed));
    np::Pcg64 bits{np::SeedSequence(seed)};
    expect_pcg_state(bits, c);
    std::vector<uint64_t> raw;
    for (size_t i = 0; i < c["raw"].size(); ++i) raw.push_back(bits.next_uint64());
    EXPECT_EQ(raw, values<uint64_t>(c["raw"]));
  }
}

TEST(NumpyPcg64, Next32HandsOutLowThenHighHalf) {
  np::Pcg64 a{np::SeedSequence(42)}, b{np::SeedSequence(42)};
  const uint64_t first = a.next_uint64();
  EXPECT_EQ(b.next_uint32(), static_cast<uint32_t>(first));
  EXPECT_TRUE(b.has_uint32());
  const uint64_t second = a.next_uint64();
  EXPECT_EQ(b.next_uint64(), second);  // 64-bit draws leave the buffered half alone
  EXPECT_EQ(b.next_uint32(), static_cast<uint32_t>(first >> 32));
  EXPECT_FALSE(b.has_uint32());
}

TEST(NumpyGenerator, IntegersCallSequencesMatchNumpy) {
  // Scripted bounds (rng = 0, < 2^32 - 1, 2^32 - 1, 2^32, 2^32 + 1, 2^64 - 1, rejection-heavy
  // 2^31 + 1 and 2^63 + 1, empty sizes, odd sizes that leave a buffered 32-bit half for the next
  // call) and fuzzed log-uniform bounds, each as one sequence of calls on one generator.
  size_t calls = 0;
  for (const auto& g : expectations()["integers"]) {
    const uint64_t seed = g["seed"].get<uint64_t>();
    np::Generator rng = np::default_rng(seed);
    for (const auto& c : g["calls"]) {
      const int64_t low = c["low"].get<int64_t>(), high = c["high"].get<int64_t>();
      const bool endpoint = c["endpoint"].get<bool>();
      SCOPED_TRACE("seed " + std::to_string(seed) + " integers(" + std::to_string(low) + ", " +
                   std::to_string(high) + ", size=" + std::to_string(c["size"].get<size_t>()) +
                   (endpoint ? ", endpoint" : "") + ")");
      EXPECT_EQ(rng.integers(low, high, c["size"].get<size_t>(), endpoint),
                values<int64_t>(c["values"]));
      ++calls;
    }
    SCOPED_TRACE("seed " + std::to_string(seed) + " final state");
    expect_pcg_state(rng.bit_generator(), g["final"]);
  }
  EXPECT_GE(calls, 400u);
}

TEST(NumpyGenerator, BoundedFillSpecialCases) {
  // rng == 0 draws nothing; rng == 2^32 - 1 is next_uint32; rng == 2^64 - 1 is next_uint64.
  np::Pcg64 a{np::SeedSequence(7)}, b{np::SeedSequence(7)};
  std::vector<uint64_t> out(3);
  np::bounded_uint64_fill(a, 5, 0, out);
  EXPECT_EQ(out, (std::vector<uint64_t>{5, 5, 5}));
  np::bounded_uint64_fill(a, 10, 0xFFFFFFFFull, out);
  for (uint64_t v : out) EXPECT_EQ(v, 10 + uint64_t{b.next_uint32()});
  np::bounded_uint64_fill(a, 1, UINT64_MAX, out);
  for (uint64_t v : out) EXPECT_EQ(v, 1 + b.next_uint64());
}

TEST(NumpyGenerator, EmptyIntervalThrows) {
  np::Generator rng = np::default_rng(0);
  try {
    rng.integers(5, 5, 1);
    FAIL() << "expected engram::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("low (5) must be < high (5)"));
  }
  EXPECT_THROW(rng.integers(6, 5, 1, /*endpoint=*/true), Error);
  EXPECT_EQ(rng.integers(5, 5, 2, /*endpoint=*/true), (std::vector<int64_t>{5, 5}));
}

TEST(EngramMultipliers, MatchTheReferenceForManySeedsLayersAndVocabularies) {
  // default_rng(seed + 10007 * layer).integers(0, max(1, (INT64_MAX // C) // 2), N) * 2 + 1,
  // with C from 1 to 2^61 + 2^60 (bounds from 1 through the 32-bit paths to the 64-bit path).
  for (const auto& c : expectations()["multipliers"]) {
    EngramConfig config;
    config.seed = c["seed"].get<int64_t>();
    config.max_ngram_size = c["max_ngram_size"].get<int64_t>();
    const int64_t layer = c["layer"].get<int64_t>();
    const int64_t vocab = c["compressed_vocab_size"].get<int64_t>();
    SCOPED_TRACE("seed " + std::to_string(config.seed) + " layer " + std::to_string(layer) + " C " +
                 std::to_string(vocab) + " N " + std::to_string(config.max_ngram_size));
    EXPECT_EQ(engram_multipliers(config, layer, vocab), values<int64_t>(c["values"]));
  }
}

TEST(EngramMultipliers, RejectsVocabulariesTooLargeForTheBound) {
  EngramConfig config;
  try {
    engram_multipliers(config, 1, int64_t{1} << 62);  // (INT64_MAX // 2^62) // 2 == 0
    FAIL() << "expected engram::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("C = 4611686018427387904 is too large"));
    EXPECT_THAT(e.what(), HasSubstr("(INT64_MAX // C) // 2 is below 1"));
  }
  EXPECT_NO_THROW(engram_multipliers(config, 1, (int64_t{1} << 62) - 1));  // bound 1: all ones
  EXPECT_EQ(engram_multipliers(config, 1, (int64_t{1} << 62) - 1), std::vector<int64_t>(3, 1));
}

TEST(EngramMultipliers, RejectsNegativeOrOverflowingSeeds) {
  EngramConfig config;
  config.seed = -20014;  // -20014 + 10007 * 2 = 0: NumPy accepts seed 0
  EXPECT_EQ(engram_multipliers(config, 2, 1000), engram_multipliers(EngramConfig{}, 0, 1000));
  config.seed = -20015;
  try {
    engram_multipliers(config, 2, 1000);
    FAIL() << "expected engram::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("seed + 10007 * layer_id (seed -20015, layer 2)"));
    EXPECT_THAT(e.what(), HasSubstr("non-negative"));
  }
  config.seed = INT64_MAX;
  EXPECT_THROW(engram_multipliers(config, 1, 1000), Error);
}

}  // namespace
}  // namespace engram
