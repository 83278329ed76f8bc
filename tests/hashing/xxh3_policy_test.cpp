// The XXH3 hash policy: the typed conformance suite, its definition (seeds, bytes, digest mod
// prime) checked against direct xxHash calls, and pinned values so that tables trained with it
// stay readable. Set ENGRAM_PRINT_GOLDEN=1 to print fresh pinned values after a deliberate change.
#include "engram/hashing/xxh3_policy.hpp"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdlib>
#include <iostream>

#include "hashing/hashing_test_data.hpp"
#include "hashing/ngram_hasher_conformance.hpp"

namespace engram {
namespace test {
INSTANTIATE_TYPED_TEST_SUITE_P(Xxh3Hash, NgramHasherConformance, ::testing::Types<Xxh3Hash>);
}  // namespace test

namespace {

TEST(Xxh3Hash, RowsAreXxh3OfTheLittleEndianNgramModPrime) {
  const EngramConfig config = test::hashing_config(3, 2, {1009, 1201}, {1, 15}, /*seed=*/7);
  const Xxh3NgramHasher h(config, test::dsv3_lookup(), 15);
  const std::vector<int64_t> ids = {100, 2000, 30000};
  std::vector<int64_t> out(3 * 4);
  h.hash(ids, 1, 3, out);
  const auto& lookup = test::dsv3_lookup();
  const int64_t pad = lookup[2];
  const int64_t x[5] = {pad, pad, lookup[100], lookup[2000], lookup[30000]};  // x[-2] .. x[2]
  auto seed_of = [&](int64_t n, int64_t head) {
    const uint64_t layer_seed = Xxh3Hash::mix64(Xxh3Hash::mix64(7) ^ 15);
    return Xxh3Hash::mix64(Xxh3Hash::mix64(layer_seed ^ static_cast<uint64_t>(n)) ^
                           static_cast<uint64_t>(head));
  };
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t n = 2; n <= 3; ++n)
      for (int64_t head = 0; head < 2; ++head) {
        unsigned char bytes[24];
        for (int64_t k = 0; k < n; ++k)
          for (int b = 0; b < 8; ++b)
            bytes[k * 8 + b] = static_cast<unsigned char>(
                static_cast<uint64_t>(x[2 + t - (n - 1) + k]) >> (8 * b));
        const int64_t c = (n - 2) * 2 + head;
        EXPECT_EQ(h.policy().seeds()[static_cast<size_t>(c)], seed_of(n, head));
        const uint64_t digest =
            XXH3_64bits_withSeed(bytes, static_cast<size_t>(n) * 8, seed_of(n, head));
        EXPECT_EQ(out[static_cast<size_t>(t * 4 + c)],
                  static_cast<int64_t>(digest %
                                       static_cast<uint64_t>(h.primes()[static_cast<size_t>(c)])))
            << "t " << t << " n " << n << " head " << head;
      }
}

TEST(Xxh3Hash, PinnedValues) {
  const test::GoldenCase g = test::load_golden("dsv3_kjv_n3h8");
  const Xxh3NgramHasher h(g.config, g.lookup, g.layer_id);
  EXPECT_EQ(std::vector<int64_t>(h.primes().begin(), h.primes().end()), g.primes);
  std::vector<int64_t> out(g.hash_ids.size());
  h.hash(g.ids, g.batch, g.seqlen, out);
  const std::vector<int64_t> first(out.begin(), out.begin() + 32);  // positions 0 and 1
  if (std::getenv("ENGRAM_PRINT_GOLDEN")) {
    std::cout << "pinned xxh3 rows:";
    for (int64_t v : first) std::cout << " " << v << ",";
    std::cout << "\n";
  }
  const std::vector<int64_t> pinned = {
      577596, 391603, 416605, 304667, 631183, 390967, 467587, 478799, 1105,   34800, 370157,
      505712, 297052, 346873, 82961,  222818, 513439, 134152, 325324, 15987,  89388, 186265,
      418871, 453705, 486579, 462205, 284646, 611445, 443415, 333137, 398210, 525427};
  EXPECT_EQ(first, pinned);
  EXPECT_NE(out, g.hash_ids) << "not checkpoint-compatible with the reference, by design";
}

}  // namespace
}  // namespace engram
