// Primality (Miller-Rabin vs trial division and known 64-bit facts) and the Engram table sizes
// (the prime search of the reference, global across layers).
#include "engram/hashing/primes.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "hashing/hashing_test_data.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;

TEST(IsPrime, AgreesWithTrialDivisionBelowTwoToTheTwenty) {
  int count = 0;
  for (uint64_t n = 0; n < (uint64_t{1} << 20); ++n) {
    const bool expected = is_prime_reference(n);
    ASSERT_EQ(is_prime(n), expected) << "n = " << n;
    count += expected;
  }
  EXPECT_EQ(count, 82025);  // pi(2^20)
}

TEST(IsPrime, AgreesWithTrialDivisionOnRandomOddNumbersBelowTwoToTheForty) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 2000; ++i) {
    const uint64_t n = (rng() >> 24) | 1u;
    ASSERT_EQ(is_prime(n), is_prime_reference(n)) << "n = " << n;
  }
}

TEST(IsPrime, KnownLargePrimes) {
  // prevprime and nextprime of 2^33, 2^36, ..., 2^63 and the largest 64-bit prime (sympy).
  for (uint64_t p : {8589934583ull,           68719476731ull,
                     549755813881ull,         4398046511093ull,
                     35184372088777ull,       281474976710597ull,
                     2251799813685119ull,     18014398509481951ull,
                     144115188075855859ull,   1152921504606846883ull,
                     9223372036854775783ull,  8589934609ull,
                     68719476767ull,          549755813911ull,
                     4398046511119ull,        35184372088891ull,
                     281474976710677ull,      2251799813685269ull,
                     18014398509482143ull,    144115188075855881ull,
                     1152921504606847009ull,  9223372036854775837ull,
                     18446744073709551557ull, 2305843009213693951ull,
                     2147483647ull,           4294967291ull}) {
    EXPECT_TRUE(is_prime(p)) << p;
    EXPECT_FALSE(is_prime(p + 2 * (p % 3 == 1 ? 1 : 2))) << p;  // p + 2 or p + 4: divisible by 3
  }
}

TEST(IsPrime, KnownComposites) {
  // Strong pseudoprimes to the first bases (a Miller-Rabin with too few bases accepts them),
  // Carmichael numbers, semiprimes of two ~32-bit primes, squares, 2^64 - 1.
  for (uint64_t n : {2047ull,
                     1373653ull,
                     25326001ull,
                     3215031751ull,
                     2152302898747ull,
                     3474749660383ull,
                     341550071728321ull,
                     3825123056546413051ull,
                     561ull,
                     1105ull,
                     1729ull,
                     2465ull,
                     2821ull,
                     6601ull,
                     8911ull,
                     9223372073361997769ull,
                     18446744030759878681ull,
                     2251814857605197ull,
                     18446743979220271189ull,
                     18446744073709551615ull,
                     4294967296ull,
                     0ull,
                     1ull}) {
    EXPECT_FALSE(is_prime(n)) << n;
  }
}

/// The reference's search, written as directly as possible (sorted set of taken primes).
std::vector<std::vector<int64_t>> reference_primes(const EngramConfig& c) {
  std::set<int64_t> taken;
  std::vector<std::vector<int64_t>> out;
  for (size_t l = 0; l < c.layer_ids.size(); ++l) {
    std::vector<int64_t> columns;
    for (int64_t n = 2; n <= c.max_ngram_size; ++n) {
      int64_t start = c.engram_vocab_size[static_cast<size_t>(n - 2)] - 1;
      for (int64_t h = 0; h < c.n_head_per_ngram; ++h) {
        int64_t candidate = start + 1;
        while (!(is_prime_reference(static_cast<uint64_t>(candidate)) && !taken.count(candidate)))
          ++candidate;
        taken.insert(candidate);
        columns.push_back(candidate);
        start = candidate;
      }
    }
    out.push_back(columns);
  }
  return out;
}

TEST(EngramTablePrimes, SmallConfigMatchesTheOracle) {
  // golden/small.json: layers [1, 15], vocab [1009, 1201], H = 4.
  const EngramConfig c = test::hashing_config(3, 4, {1009, 1201}, {1, 15});
  const auto primes = engram_table_primes(c);
  ASSERT_EQ(primes.size(), 2u);
  EXPECT_EQ(primes[0], (std::vector<int64_t>{1009, 1013, 1019, 1021, 1201, 1213, 1217, 1223}));
  EXPECT_EQ(primes[1], (std::vector<int64_t>{1031, 1033, 1039, 1049, 1229, 1231, 1237, 1249}));
  EXPECT_EQ(engram_layer_primes(c, 15), primes[1]);
}

TEST(EngramTablePrimes, MatchesTheReferenceSearchOnManyConfigs) {
  struct Case {
    int64_t n, h;
    std::vector<int64_t> vocab, layers;
  };
  const std::vector<Case> cases = {
      {2, 1, {1}, {0, 3, 7}},              // vocab 1: primes 2, 3, 5
      {3, 8, {2, 2}, {0, 1}},              // orders share the same range: skip each other's
      {4, 3, {100, 90, 80}, {5, 2, 9}},    // decreasing vocab: later orders skip earlier primes
      {5, 2, {7, 7, 7, 7}, {1}},           //
      {3, 16, {646400, 646400}, {1, 15}},  // V3-style
      {2, 5, {1000}, {3, 3}},              // a repeated layer id
  };
  for (const Case& k : cases) {
    const EngramConfig c = test::hashing_config(k.n, k.h, k.vocab, k.layers);
    SCOPED_TRACE("N " + std::to_string(k.n) + " H " + std::to_string(k.h));
    const auto primes = engram_table_primes(c);
    EXPECT_EQ(primes, reference_primes(c));
    std::set<int64_t> all;
    for (const auto& layer : primes)
      for (int64_t p : layer) all.insert(p);
    EXPECT_EQ(all.size(), k.layers.size() * static_cast<size_t>((k.n - 1) * k.h))
        << "primes are distinct across all layers and heads";
  }
}

TEST(EngramTablePrimes, RepeatedLayerIdTakesItsLastOccurrence) {
  const EngramConfig c = test::hashing_config(2, 2, {10}, {4, 4});
  const auto primes = engram_table_primes(c);
  EXPECT_EQ(primes[0], (std::vector<int64_t>{11, 13}));
  EXPECT_EQ(primes[1], (std::vector<int64_t>{17, 19}));
  EXPECT_EQ(engram_layer_primes(c, 4), primes[1]);  // as the reference's dict overwrite
}

TEST(EngramTablePrimes, HugeTablesUseSixtyFourBitPrimes) {
  const EngramConfig c =
      test::hashing_config(2, 2, {(int64_t{1} << 62) - 100}, {0});  // largest accepted range
  const auto primes = engram_table_primes(c)[0];
  EXPECT_EQ(primes[0], (int64_t{1} << 62) - 87);  // sympy: nextprime(2^62 - 101)
  EXPECT_EQ(primes[1], (int64_t{1} << 62) - 57);  // prevprime(2^62)
  const EngramConfig above = test::hashing_config(2, 1, {(int64_t{1} << 62) - 56}, {0});
  EXPECT_EQ(engram_table_primes(above)[0][0], (int64_t{1} << 62) + 135);  // nextprime(2^62)
}

TEST(EngramTablePrimes, ErrorsNameTheField) {
  auto message = [](const EngramConfig& c) -> std::string {
    try {
      engram_table_primes(c);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_THAT(message(test::hashing_config(1, 4, {}, {1})),
              HasSubstr("'max_ngram_size' must be in [2, 64]"));
  EXPECT_THAT(message(test::hashing_config(3, 0, {10, 10}, {1})),
              HasSubstr("'n_head_per_ngram' must be positive, found 0"));
  EXPECT_THAT(message(test::hashing_config(3, 4, {10}, {1})),
              HasSubstr("'engram_vocab_size' must have max_ngram_size - 1 = 2 entries, found 1"));
  EXPECT_THAT(message(test::hashing_config(3, 4, {10, 0}, {1})),
              HasSubstr("'engram_vocab_size' entries must be in [1, 2^62), found 0"));
  EXPECT_THAT(message(test::hashing_config(3, 4, {10, 10}, {})),
              HasSubstr("'layer_ids' must not be empty"));
  try {
    engram_layer_primes(test::hashing_config(3, 4, {10, 10}, {1, 15}), 7);
    FAIL() << "expected engram::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("layer 7 is not in layer_ids [1, 15]"));
  }
}

}  // namespace
}  // namespace engram
