// The core config and the hasher without JSON: this translation unit includes engram/config.hpp
// and hashing/ headers only, and fails to compile if either pulls in nlohmann/json (io/config.hpp
// includes it). The config validates and the hasher hashes without any file or JSON reader.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "engram/config.hpp"
#include "engram/hashing/ngram_hasher.hpp"

#ifdef NLOHMANN_JSON_VERSION_MAJOR
#error "engram/config.hpp or hashing/ pulled in nlohmann/json"
#endif

namespace engram {
namespace {

EngramConfig small_config() {
  EngramConfig c;
  c.max_ngram_size = 3;
  c.n_head_per_ngram = 2;
  c.n_embed_per_ngram = 8;
  c.engram_vocab_size = {101, 101};
  c.layer_ids = {1};
  c.hidden_size = 16;
  c.hc_mult = 2;
  return c;
}

TEST(CoreConfig, ValidatesAndDerivesSizesWithoutJson) {
  const EngramConfig c = small_config();
  EXPECT_NO_THROW(c.validate("core"));
  EXPECT_EQ(c.num_columns(), 4);
  EXPECT_EQ(c.row_dim(), 4);
  EXPECT_EQ(c.memory_dim(), 16);
  EngramConfig bad = c;
  bad.n_embed_per_ngram = 7;
  try {
    bad.validate("core");
    FAIL() << "expected engram::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("core: field 'n_embed_per_ngram' (7)"));
  }
}

TEST(CoreConfig, HasherRunsOnTheCoreConfig) {
  const EngramConfig c = small_config();
  const std::vector<int64_t> lookup = {0, 1, 2, 3, 4, 5, 6, 7};
  const NgramHasher hasher(c, lookup, /*layer_id=*/1);
  const std::vector<int64_t> ids = {3, 5, 7, 1, 0};
  std::vector<int64_t> rows(ids.size() * static_cast<size_t>(hasher.num_columns()));
  hasher.hash(ids, 1, static_cast<int64_t>(ids.size()), rows);
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t prime = hasher.primes()[i % static_cast<size_t>(hasher.num_columns())];
    EXPECT_GE(rows[i], 0);
    EXPECT_LT(rows[i], prime);
  }
}

}  // namespace
}  // namespace engram
