// NgramHasher (NumpyMultiplyXor) against the PyTorch oracle: golden hash ids, multipliers and
// primes for many configs and tokenizers; the kernels (AVX-512, portable scalar, reference) on
// extreme values; the policy concept; and the typed conformance suite.
#include "engram/hashing/ngram_hasher.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <random>

#include "hashing/hashing_test_data.hpp"
#include "hashing/ngram_hasher_conformance.hpp"
#include "support/error_of.hpp"

namespace engram {
namespace test {
INSTANTIATE_TYPED_TEST_SUITE_P(NumpyMultiplyXor, NgramHasherConformance,
                               ::testing::Types<NumpyMultiplyXor>);
}  // namespace test

namespace {

using ::testing::HasSubstr;

TEST(NgramHasherGolden, MatchesTheOracleOnEveryCase) {
  for (const std::string& name : test::golden_case_names()) {
    const test::GoldenCase g = test::load_golden(name);
    SCOPED_TRACE(name + ": " + g.description);
    const NgramHasher h(g.config, g.lookup, g.layer_id);
    EXPECT_EQ(std::vector<int64_t>(h.multipliers().begin(), h.multipliers().end()), g.multipliers);
    EXPECT_EQ(std::vector<int64_t>(h.primes().begin(), h.primes().end()), g.primes);
    ASSERT_EQ(static_cast<int64_t>(g.hash_ids.size()), g.batch * g.seqlen * h.num_columns());

    std::vector<int64_t> out(g.hash_ids.size());
    h.hash(g.ids, g.batch, g.seqlen, out);
    EXPECT_EQ(out, g.hash_ids) << "fast path";

    const std::vector<int32_t> ids32(g.ids.begin(), g.ids.end());
    std::fill(out.begin(), out.end(), -1);
    h.hash(ids32, g.batch, g.seqlen, out);
    EXPECT_EQ(out, g.hash_ids) << "int32 ids";

    std::vector<NgramHashState> states(static_cast<size_t>(g.batch), h.initial_state());
    h.hash_chunk_reference(g.ids, g.batch, g.seqlen, out, states);
    EXPECT_EQ(out, g.hash_ids) << "reference";

    // Decode: one token per step for every sequence.
    const int64_t cols = h.num_columns();
    std::vector<NgramHashState> decode(static_cast<size_t>(g.batch), h.initial_state());
    std::vector<int64_t> step_ids(static_cast<size_t>(g.batch)),
        step_out(static_cast<size_t>(g.batch * cols));
    for (int64_t t = 0; t < g.seqlen; ++t) {
      for (int64_t b = 0; b < g.batch; ++b)
        step_ids[static_cast<size_t>(b)] = g.ids[static_cast<size_t>(b * g.seqlen + t)];
      h.hash_chunk(step_ids, g.batch, 1, step_out, decode);
      for (int64_t b = 0; b < g.batch; ++b)
        for (int64_t c = 0; c < cols; ++c)
          ASSERT_EQ(step_out[static_cast<size_t>(b * cols + c)],
                    g.hash_ids[static_cast<size_t>((b * g.seqlen + t) * cols + c)])
              << "decode step " << t << " sequence " << b << " column " << c;
    }
  }
}

TEST(NgramHasherGolden, SharedGoldenFacts) {
  const test::GoldenCase g = test::load_golden("shared_small_l15");
  const NgramHasher h(g.config, g.lookup, 15);
  EXPECT_EQ(h.compressed_vocab_size(), 98627);
  EXPECT_EQ(h.pad_compressed_id(), 2);
  EXPECT_EQ(h.num_columns(), 8);
  EXPECT_EQ(std::vector<int64_t>(h.multipliers().begin(), h.multipliers().end()),
            (std::vector<int64_t>{29055444938695, 56284491166079, 54183298291715}));
}

// The hasher owns its compression table: the README's quick start builds it from a table that
// goes out of scope (the layer holds the hasher by shared_ptr). The table is overwritten before it
// is freed, so a hasher that only viewed it gives wrong ids even where the freed memory is still
// readable (and ASan reports the read after free).
TEST(NgramHasherGolden, OwnsItsTableAfterTheSourceIsGone) {
  const test::GoldenCase g = test::load_golden("shared_small_l15");
  std::shared_ptr<const NgramHasher> copied, shared;
  {
    std::vector<int64_t> table = g.lookup;
    copied = std::make_shared<const NgramHasher>(g.config, table, g.layer_id);
    auto owned = std::make_shared<std::vector<int64_t>>(g.lookup);
    shared = std::make_shared<const NgramHasher>(
        g.config, std::shared_ptr<const std::vector<int64_t>>(owned), g.layer_id);
    std::fill(table.begin(), table.end(), int64_t{7});
  }
  for (const auto* h : {copied.get(), shared.get()}) {
    std::vector<int64_t> out(g.hash_ids.size());
    h->hash(g.ids, g.batch, g.seqlen, out);
    EXPECT_EQ(out, g.hash_ids);
    EXPECT_EQ(h->lookup_size(), static_cast<int64_t>(g.lookup.size()));
  }
  EXPECT_THAT(test::error_of([&] {
                NgramHasher(g.config, std::shared_ptr<const std::vector<int64_t>>(), g.layer_id);
              }),
              HasSubstr("NgramHasher: the compression table (lookup) is null"));
}

/// A NumpyMultiplyXor policy for layer 15 of an N-order, H-head config, built directly.
NumpyMultiplyXor make_policy(int64_t n, int64_t heads, int64_t compressed_vocab_size,
                             std::vector<int64_t>* primes_out = nullptr) {
  std::vector<int64_t> vocab(static_cast<size_t>(n - 1), 1009);
  const EngramConfig config = test::hashing_config(n, heads, vocab);
  const std::vector<int64_t> primes = engram_layer_primes(config, 15);
  if (primes_out) *primes_out = primes;
  return NumpyMultiplyXor(NgramHashContext{config, 15, compressed_vocab_size, primes});
}

TEST(NumpyMultiplyXorKernels, AllPathsAgreeOnExtremeCompressedIds) {
  // The kernels accept any int64 window: with extreme values the mixes are negative, zero,
  // INT64_MIN, ... (the hasher never produces those, but the floor modulo must still be exact).
  std::mt19937_64 rng(41);
  const std::vector<int64_t> specials = {std::numeric_limits<int64_t>::min(), -1,   0,    1,
                                         std::numeric_limits<int64_t>::max(), 1008, 1009, -1009};
  for (int64_t n : {2, 3, 4, 5, 6})
    for (int64_t heads : {1, 3, 8, 11, 16, 17}) {
      SCOPED_TRACE("N " + std::to_string(n) + " H " + std::to_string(heads));
      const NumpyMultiplyXor policy = make_policy(n, heads, 98627);
      const int64_t count = 300, cols = (n - 1) * heads, lookback = n - 1;
      std::vector<int64_t> window(static_cast<size_t>(lookback + count));
      for (size_t i = 0; i < window.size(); ++i)
        window[i] = i % 3 == 0 ? specials[rng() % specials.size()] : static_cast<int64_t>(rng());
      const int64_t* x = window.data() + lookback;
      std::vector<int64_t> expected(static_cast<size_t>(count * cols)), got(expected.size());
      policy.hash_rows_reference(x, count, expected.data());
      policy.hash_rows_scalar(x, count, got.data());
      EXPECT_EQ(got, expected) << "scalar";
      policy.hash_rows(x, count, got.data());
      EXPECT_EQ(got, expected) << "dispatch";
#if ENGRAM_HASHING_HAVE_AVX512
      std::fill(got.begin(), got.end(), -1);
      policy.hash_rows_avx512(x, count, got.data());
      EXPECT_EQ(got, expected) << "avx512 (specialised for N <= 5, H <= 16)";
      std::fill(got.begin(), got.end(), -1);
      policy.hash_rows_avx512_generic(x, count, got.data());
      EXPECT_EQ(got, expected) << "avx512 generic";
#endif
      bool negative_mix_seen = false;  // the extreme windows did exercise the negative branch
      for (int64_t t = 0; t < count && !negative_mix_seen; ++t) {
        uint64_t mix = 0;
        for (int64_t k = 0; k < n; ++k)
          mix ^= static_cast<uint64_t>(x[t - k]) *
                 static_cast<uint64_t>(policy.multipliers()[static_cast<size_t>(k)]);
        negative_mix_seen = static_cast<int64_t>(mix) < 0;
      }
      EXPECT_TRUE(negative_mix_seen);
    }
}

TEST(NumpyMultiplyXorKernels, ReferenceIsTheFormula) {
  // One position by hand: mix = x0*m0 ^ x-1*m1 (order 2), ^ x-2*m2 (order 3), then % p.
  std::vector<int64_t> primes;
  const NumpyMultiplyXor policy = make_policy(3, 2, 98627, &primes);
  const int64_t window[3] = {17, 99, 12345};  // x[-2], x[-1], x[0]
  int64_t out[4];
  policy.hash_rows_reference(window + 2, 1, out);
  const auto m = policy.multipliers();
  const int64_t mix2 = (12345 * m[0]) ^ (99 * m[1]);
  const int64_t mix3 = mix2 ^ (17 * m[2]);
  EXPECT_EQ(out[0], mix2 % primes[0]);
  EXPECT_EQ(out[1], mix2 % primes[1]);
  EXPECT_EQ(out[2], mix3 % primes[2]);
  EXPECT_EQ(out[3], mix3 % primes[3]);
}

TEST(NgramHasher, CompressedVocabularyTooLargeForTheMultiplierBound) {
  const EngramConfig config = test::hashing_config(3, 2, {1009, 1009});
  std::vector<int64_t> lookup = {0, 1, 2, (int64_t{1} << 62) - 1};  // C = 2^62
  try {
    NgramHasher h(config, lookup, 15);
    FAIL() << "expected engram::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("compressed vocabulary size C = 4611686018427387904 is too large"));
  }
  lookup.back() = (int64_t{1} << 62) - 2;  // C = 2^62 - 1: bound 1, multipliers all 1
  const NgramHasher h(config, lookup, 15);
  EXPECT_EQ(std::vector<int64_t>(h.multipliers().begin(), h.multipliers().end()),
            (std::vector<int64_t>{1, 1, 1}));
}

// The concept rejects non-policies with a readable reason (checked at compile time).
struct NoName {
  explicit NoName(const NgramHashContext&) {}
  void hash_rows(const int64_t*, int64_t, int64_t*) const noexcept {}
  void hash_rows_reference(const int64_t*, int64_t, int64_t*) const noexcept {}
};
struct MayThrow {
  static constexpr std::string_view kName = "may_throw";
  explicit MayThrow(const NgramHashContext&) {}
  void hash_rows(const int64_t*, int64_t, int64_t*) const {}
  void hash_rows_reference(const int64_t*, int64_t, int64_t*) const noexcept {}
};
struct NotConfigurable {
  static constexpr std::string_view kName = "not_configurable";
  void hash_rows(const int64_t*, int64_t, int64_t*) const noexcept {}
  void hash_rows_reference(const int64_t*, int64_t, int64_t*) const noexcept {}
};
static_assert(NgramHashPolicy<NumpyMultiplyXor>);
static_assert(!NgramHashPolicyNamed<NoName> && !NgramHashPolicy<NoName>);
static_assert(!NgramHashPolicyKernels<MayThrow> && !NgramHashPolicy<MayThrow>);
static_assert(!NgramHashPolicyConfigurable<NotConfigurable>);
static_assert(!NgramHashPolicy<int>);
static_assert(std::is_same_v<NgramHasher, NgramHasherT<NumpyMultiplyXor>>);

#ifdef ENGRAM_TEST_EXPECT_PORTABLE
TEST(NgramHasher, PortableBuildUsesTheScalarKernel) {
  // This binary is compiled with -mno-avx512f: the portable path is what ran above.
  EXPECT_EQ(ENGRAM_HASHING_HAVE_AVX512, 0);
}
#endif

}  // namespace
}  // namespace engram
