// Typed conformance suite for NgramHasherT policies: every policy instantiates it
// (INSTANTIATE_TYPED_TEST_SUITE_P(Name, NgramHasherConformance, ::testing::Types<Policy>)).
//
// What every policy must satisfy, whatever its hash: fast path == scalar reference on all shapes
// (T across the internal block size, heads not a multiple of the SIMD width), ids in [0, prime),
// chunked == whole (any chunk sizes, decode steps of 1, seeded states), masking == replacing by
// pad_id (and dead ids are never read), int32 == int64 ids, errors naming the position and the
// value with nothing written, no writes past the output, and uniform buckets over the distinct
// n-grams of real text (chi-square, with a weak hash as the negative control).
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engram/hashing/ngram_hasher.hpp"
#include "hashing/hashing_test_data.hpp"

namespace engram::test {

template <class Policy>
class NgramHasherConformance : public ::testing::Test {
 protected:
  using Hasher = NgramHasherT<Policy>;

  /// Hashes whole sequences through the reference (fresh states).
  static std::vector<int64_t> reference(const Hasher& h, std::span<const int64_t> ids, int64_t b,
                                        int64_t t, std::span<const uint8_t> live = {}) {
    std::vector<int64_t> out(static_cast<size_t>(b * t * h.num_columns()));
    std::vector<NgramHashState> states(static_cast<size_t>(b), h.initial_state());
    h.hash_chunk_reference(ids, b, t, out, states, live);
    return out;
  }

  static std::vector<int64_t> whole(const Hasher& h, std::span<const int64_t> ids, int64_t b,
                                    int64_t t, std::span<const uint8_t> live = {}) {
    std::vector<int64_t> out(static_cast<size_t>(b * t * h.num_columns()));
    h.hash(ids, b, t, out, live);
    return out;
  }

  /// Rows [t0, t0 + len) of every sequence of a [B, T, inner] buffer.
  template <class T>
  static std::vector<T> slice(std::span<const T> v, int64_t b, int64_t t, int64_t inner, int64_t t0,
                              int64_t len) {
    std::vector<T> out;
    for (int64_t i = 0; i < b; ++i)
      out.insert(out.end(), v.begin() + (i * t + t0) * inner,
                 v.begin() + (i * t + t0 + len) * inner);
    return out;
  }

  static std::vector<uint8_t> random_live(size_t count, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> live(count);
    for (uint8_t& l : live) l = rng() % 4 != 0;  // ~25% dead
    for (size_t i = count / 3; i < count / 3 + std::min<size_t>(count / 5, 40); ++i)
      live[i] = 0;  // a span
    return live;
  }

  template <class F>
  static std::string error_of(F&& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }
};

TYPED_TEST_SUITE_P(NgramHasherConformance);

TYPED_TEST_P(NgramHasherConformance, FastMatchesReferenceAcrossShapes) {
  using Hasher = NgramHasherT<TypeParam>;
  const auto& lookup = dsv3_lookup();
  for (int64_t n : {2, 3, 4, 5})
    for (int64_t heads : {1, 2, 3, 5, 8, 9, 16}) {
      std::vector<int64_t> vocab;
      for (int64_t k = 2; k <= n; ++k) vocab.push_back(1000 * k + 9 * heads);
      const Hasher h(hashing_config(n, heads, vocab, {1, 15}, /*seed=*/n * 100 + heads), lookup,
                     15);
      for (int64_t t : {0, 1, 2, 85, 163, 257, 600}) {
        SCOPED_TRACE("N " + std::to_string(n) + " H " + std::to_string(heads) + " T " +
                     std::to_string(t));
        const int64_t b = 2;
        const auto ids = random_ids(static_cast<size_t>(b * t), h.lookup_size(),
                                    static_cast<uint64_t>(n * 1000 + heads * 10 + t));
        // Sentinels after the output catch writes past it (masked tails of SIMD stores).
        const size_t size = static_cast<size_t>(b * t * h.num_columns());
        std::vector<int64_t> fast(size + 16, -7);
        h.hash(ids, b, t, std::span<int64_t>(fast).first(size));
        EXPECT_EQ(std::vector<int64_t>(fast.begin() + static_cast<ptrdiff_t>(size), fast.end()),
                  std::vector<int64_t>(16, -7));
        fast.resize(size);
        ASSERT_EQ(fast, this->reference(h, ids, b, t));
        for (size_t i = 0; i < fast.size(); ++i) {
          const int64_t p = h.primes()[i % static_cast<size_t>(h.num_columns())];
          ASSERT_TRUE(fast[i] >= 0 && fast[i] < p) << "row id " << fast[i] << " of prime " << p;
        }
      }
    }
}

TYPED_TEST_P(NgramHasherConformance, ChunkedEqualsWholeForAnyChunkSizes) {
  using Hasher = NgramHasherT<TypeParam>;
  for (auto [n, heads] : {std::pair<int64_t, int64_t>{3, 8}, {4, 3}, {2, 1}, {5, 2}}) {
    std::vector<int64_t> vocab(static_cast<size_t>(n - 1), 646400);
    const Hasher h(hashing_config(n, heads, vocab), dsv3_lookup(), 1);
    const int64_t b = 3, t = 700, cols = h.num_columns();
    const auto ids = random_ids(static_cast<size_t>(b * t), h.lookup_size(), 99);
    const auto live = this->random_live(static_cast<size_t>(b * t), 5);
    for (bool masked : {false, true}) {
      const std::span<const uint8_t> mask =
          masked ? std::span<const uint8_t>(live) : std::span<const uint8_t>{};
      const auto expected = this->whole(h, ids, b, t, mask);
      for (int64_t max_chunk : {1, 2, 7, 300, 1000}) {
        SCOPED_TRACE("N " + std::to_string(n) + " H " + std::to_string(heads) + " max chunk " +
                     std::to_string(max_chunk) + (masked ? " masked" : ""));
        std::mt19937_64 rng(static_cast<uint64_t>(max_chunk));
        std::vector<NgramHashState> states(static_cast<size_t>(b), h.initial_state());
        std::vector<NgramHashState> ref_states = states;
        std::vector<int64_t> got(expected.size()), got_ref(expected.size());
        for (int64_t t0 = 0; t0 < t;) {
          const int64_t len = std::min<int64_t>(
              t - t0, 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(max_chunk)));
          const auto chunk_ids = this->template slice<int64_t>(ids, b, t, 1, t0, len);
          const auto chunk_live = masked ? this->template slice<uint8_t>(live, b, t, 1, t0, len)
                                         : std::vector<uint8_t>{};
          std::vector<int64_t> out(static_cast<size_t>(b * len * cols)), out_ref(out.size());
          h.hash_chunk(chunk_ids, b, len, out, states, chunk_live);
          h.hash_chunk_reference(chunk_ids, b, len, out_ref, ref_states, chunk_live);
          for (int64_t i = 0; i < b; ++i) {
            std::copy_n(out.begin() + i * len * cols, len * cols,
                        got.begin() + (i * t + t0) * cols);
            std::copy_n(out_ref.begin() + i * len * cols, len * cols,
                        got_ref.begin() + (i * t + t0) * cols);
          }
          t0 += len;
        }
        ASSERT_EQ(got, expected);
        ASSERT_EQ(got_ref, expected);
        EXPECT_EQ(states, ref_states);
        for (int64_t i = 0; i < b; ++i) {  // the final state is the state after the whole sequence
          const std::span<const int64_t> seq(ids.data() + i * t, static_cast<size_t>(t));
          EXPECT_EQ(
              states[static_cast<size_t>(i)],
              h.state_after(seq, masked ? std::span<const uint8_t>(live).subspan(
                                              static_cast<size_t>(i * t), static_cast<size_t>(t))
                                        : std::span<const uint8_t>{}));
        }
      }
    }
  }
}

TYPED_TEST_P(NgramHasherConformance, StateAfterPrefixContinuesTheSequence) {
  using Hasher = NgramHasherT<TypeParam>;
  const Hasher h(hashing_config(4, 4, {5003, 5003, 5003}), dsv3_lookup(), 15);
  const int64_t t = 300, cols = h.num_columns();
  const auto ids = random_ids(static_cast<size_t>(t), h.lookup_size(), 17);
  const auto live = this->random_live(static_cast<size_t>(t), 6);
  const auto expected = this->whole(h, ids, 1, t, live);
  for (int64_t split : {0, 1, 2, 3, 4, 5, 100, 299, 300}) {
    SCOPED_TRACE("split " + std::to_string(split));
    const std::span<const int64_t> all(ids);
    std::vector<NgramHashState> state = {
        h.state_after(all.first(static_cast<size_t>(split)),
                      std::span<const uint8_t>(live).first(static_cast<size_t>(split)))};
    const int64_t rest = t - split;
    std::vector<int64_t> out(static_cast<size_t>(rest * cols));
    h.hash_chunk(all.subspan(static_cast<size_t>(split)), 1, rest, out, state,
                 std::span<const uint8_t>(live).subspan(static_cast<size_t>(split)));
    EXPECT_EQ(out, std::vector<int64_t>(expected.begin() + split * cols, expected.end()));
  }
  // A prefix-cache hit only needs the last N - 1 ids.
  const std::span<const int64_t> all(ids);
  EXPECT_EQ(h.state_after(all.first(200)), h.state_after(all.subspan(197, 3)));
  EXPECT_EQ(h.state_after(std::span<const int64_t>{}), h.initial_state());
  const NgramHashState fresh = h.initial_state();
  EXPECT_EQ(fresh.history().size(), 3u);
  for (int64_t v : fresh.history()) EXPECT_EQ(v, h.pad_compressed_id());
}

TYPED_TEST_P(NgramHasherConformance, MaskedTokensHashAsPadIdAndAreNeverRead) {
  using Hasher = NgramHasherT<TypeParam>;
  const EngramConfig config = hashing_config(3, 8, {646400, 646400});
  const Hasher h(config, dsv3_lookup(), 15);
  const int64_t b = 2, t = 400;
  const auto ids = random_ids(static_cast<size_t>(b * t), h.lookup_size(), 23);
  const auto live = this->random_live(static_cast<size_t>(b * t), 7);
  std::vector<int64_t> garbage = ids, padded = ids;
  for (size_t i = 0; i < ids.size(); ++i)
    if (live[i] == 0) {
      garbage[i] = i % 2 ? -100 : std::numeric_limits<int64_t>::max();  // never read
      padded[i] = config.pad_id;
    }
  const auto masked = this->whole(h, garbage, b, t, live);
  EXPECT_EQ(masked, this->whole(h, padded, b, t));
  EXPECT_EQ(masked, this->reference(h, garbage, b, t, live));
  EXPECT_NE(masked, this->whole(h, ids, b, t));
  const std::vector<uint8_t> all_live(ids.size(), 1);
  EXPECT_EQ(this->whole(h, ids, b, t, all_live), this->whole(h, ids, b, t));
}

TYPED_TEST_P(NgramHasherConformance, Int32IdsEqualInt64Ids) {
  using Hasher = NgramHasherT<TypeParam>;
  const Hasher h(hashing_config(4, 5, {1009, 2003, 3001}), dsv3_lookup(), 1);
  const int64_t b = 3, t = 129;
  const auto ids = random_ids(static_cast<size_t>(b * t), h.lookup_size(), 29);
  const std::vector<int32_t> ids32(ids.begin(), ids.end());
  const std::vector<uint32_t> idsu32(ids.begin(), ids.end());
  std::vector<int64_t> out32(static_cast<size_t>(b * t * h.num_columns()));
  std::vector<int64_t> outu32(out32.size());
  h.hash(ids32, b, t, out32);
  h.hash(idsu32, b, t, outu32);
  EXPECT_EQ(out32, this->whole(h, ids, b, t));
  EXPECT_EQ(outu32, out32);
}

TYPED_TEST_P(NgramHasherConformance, OutOfRangeIdsNameThePositionAndWriteNothing) {
  using Hasher = NgramHasherT<TypeParam>;
  const Hasher h(hashing_config(3, 4, {1009, 1201}), dsv3_lookup(), 15);
  const int64_t b = 2, t = 10, cols = h.num_columns();
  auto ids = random_ids(static_cast<size_t>(b * t), h.lookup_size(), 31);
  std::vector<int64_t> out(static_cast<size_t>(b * t * cols), -3);
  std::vector<NgramHashState> states(2, h.initial_state());
  const auto before = states;

  ids[1 * t + 5] = 128815;  // == lookup size
  EXPECT_THAT(
      this->error_of([&] { h.hash_chunk(ids, b, t, out, states); }),
      ::testing::HasSubstr("NgramHasher::hash_chunk: token id 128815 at (batch 1, position 5) "
                           "is outside the compression table [0, 128815)"));
  EXPECT_EQ(out, std::vector<int64_t>(out.size(), -3)) << "nothing written before the error";
  EXPECT_EQ(states, before) << "states unchanged by a failed call";
  ids[1 * t + 5] = 0;
  ids[9] = std::numeric_limits<int64_t>::max();
  EXPECT_THAT(this->error_of([&] { h.hash(ids, b, t, out); }),
              ::testing::HasSubstr("token id 9223372036854775807 at (batch 0, position 9)"));
  std::vector<int32_t> ids32(ids.size(), 0);
  ids32[13] = 200000;
  EXPECT_THAT(this->error_of([&] { h.hash(ids32, b, t, out); }),
              ::testing::HasSubstr("token id 200000 at (batch 1, position 3)"));
  EXPECT_EQ(out, std::vector<int64_t>(out.size(), -3));
  // A dead token may hold any id; the same id live is an error.
  std::vector<uint8_t> live(ids.size(), 1);
  live[9] = 0;
  EXPECT_NO_THROW(h.hash(ids, b, t, out, live));
  EXPECT_THAT(this->error_of([&] { h.state_after(std::span<const int64_t>(ids).first(10)); }),
              ::testing::HasSubstr("NgramHasher::state_after: token id 9223372036854775807 at "
                                   "(batch 0, position 9)"));
}

// The reference compresses only ids >= 0 and hashes negative ones as they are (golden
// dsv3_negative_ids has the values); under V4.1's cumulative rule a negative id is an error.
TYPED_TEST_P(NgramHasherConformance, NegativeIdsAreHashedUncompressedExceptUnderTheCumulativeRule) {
  using Hasher = NgramHasherT<TypeParam>;
  EngramConfig config = hashing_config(3, 4, {1009, 1201});
  const Hasher h(config, dsv3_lookup(), 15);
  ASSERT_TRUE(h.accepts_negative_ids());
  const int64_t b = 2, t = 10, cols = h.num_columns();
  auto ids = random_ids(static_cast<size_t>(b * t), h.lookup_size(), 32);
  ids[3] = -1, ids[12] = std::numeric_limits<int64_t>::min(), ids[19] = -100;
  std::vector<int64_t> out(static_cast<size_t>(b * t * cols), -3);
  h.hash(ids, b, t, out);
  std::vector<NgramHashState> states(2, h.initial_state());
  std::vector<int64_t> reference(out.size());
  h.hash_chunk_reference(ids, b, t, reference, states);
  EXPECT_EQ(out, reference) << "fast path == the scalar spec";
  EXPECT_EQ(states[1].history().back(), -100) << "the state keeps the uncompressed id";
  // Sequence 0 in two chunks split after its -1: the state carries the negative id across.
  std::vector<NgramHashState> one(1, h.initial_state());
  std::vector<int64_t> chunked(static_cast<size_t>(t * cols));
  const std::span<const int64_t> seq(ids.data(), static_cast<size_t>(t));
  h.hash_chunk(seq.first(4), 1, 4, std::span(chunked).first(static_cast<size_t>(4 * cols)), one);
  h.hash_chunk(seq.subspan(4), 1, t - 4, std::span(chunked).subspan(static_cast<size_t>(4 * cols)),
               one);
  EXPECT_EQ(chunked, std::vector<int64_t>(out.begin(), out.begin() + t * cols));

  config.dead_token_rule = DeadTokenRule::kCumulative;
  const Hasher v41(config, dsv3_lookup(), 15);
  EXPECT_FALSE(v41.accepts_negative_ids());
  EXPECT_THAT(this->error_of([&] { v41.hash(ids, b, t, out); }),
              ::testing::HasSubstr("token id -1 at (batch 0, position 3) is outside the "
                                   "compression table [0, 128815)"));
}

TYPED_TEST_P(NgramHasherConformance, ShapeStateAndConfigErrorsAreSpecific) {
  using Hasher = NgramHasherT<TypeParam>;
  const EngramConfig config = hashing_config(3, 4, {1009, 1201});
  const auto& lookup = dsv3_lookup();
  const Hasher h(config, lookup, 15);
  const std::vector<int64_t> ids(12, 5);
  std::vector<int64_t> out(12 * 8);
  std::vector<NgramHashState> states(2, h.initial_state());
  using ::testing::HasSubstr;
  EXPECT_THAT(this->error_of([&] { h.hash(std::span(ids).first(10), 2, 6, out); }),
              HasSubstr("ids has 10 elements, expected batch x seqlen = 2 x 6 = 12"));
  EXPECT_THAT(
      this->error_of([&] { h.hash(ids, 2, 6, std::span(out).first(95)); }),
      HasSubstr("out has 95 elements, expected batch x seqlen x num_columns = 2 x 6 x 8 = 96"));
  EXPECT_THAT(this->error_of([&] { h.hash(ids, 2, 6, out, std::vector<uint8_t>(11, 1)); }),
              HasSubstr("live mask has 11 entries, expected batch x seqlen = 12"));
  EXPECT_THAT(this->error_of([&] { h.hash(ids, -2, -6, out); }),
              HasSubstr("batch (-2) and seqlen (-6) must be non-negative"));
  EXPECT_THAT(this->error_of([&] { h.hash_chunk(ids, 2, 6, out, std::span(states).first(1)); }),
              HasSubstr("hash_chunk: 1 states for a batch of 2 sequences"));
  states[1] = NgramHashState({1, 2, 3});
  EXPECT_THAT(this->error_of([&] { h.hash_chunk(ids, 2, 6, out, states); }),
              HasSubstr("state of sequence 1 holds 3 ids, expected max_ngram_size - 1 = 2"));
  states[1] = NgramHashState({0, 98627});
  EXPECT_THAT(this->error_of([&] { h.hash_chunk(ids, 2, 6, out, states); }),
              HasSubstr("state of sequence 1 holds compressed id 98627, outside [0, 98627)"));

  EXPECT_THAT(this->error_of([&] { Hasher bad(config, lookup, 7); }),
              HasSubstr("NgramHasher: layer 7 is not in layer_ids [1, 15]"));
  EngramConfig bad_pad = config;
  bad_pad.pad_id = 128815;
  EXPECT_THAT(this->error_of([&] { Hasher bad(bad_pad, lookup, 15); }),
              HasSubstr("field 'pad_id' (128815) is outside the compression table [0, 128815)"));
  EXPECT_THAT(this->error_of([&] { Hasher bad(hashing_config(1, 4, {}), lookup, 15); }),
              HasSubstr("NgramHasher: field 'max_ngram_size' must be in [2, 64]"));
  EXPECT_THAT(this->error_of([&] { Hasher bad(config, std::span<const int64_t>{}, 15); }),
              HasSubstr("field 'pad_id' (2) is outside the compression table [0, 0)"));
  std::vector<int64_t> negative = {0, 1, 2, -5};
  EXPECT_THAT(this->error_of([&] { Hasher bad(config, negative, 15); }),
              HasSubstr("compression table entry lookup[3] = -5 is negative"));
  std::vector<int64_t> overflow = {0, 1, 2, std::numeric_limits<int64_t>::max()};
  EXPECT_THAT(this->error_of([&] { Hasher bad(config, overflow, 15); }),
              HasSubstr("C = max(lookup) + 1 overflows"));
}

TYPED_TEST_P(NgramHasherConformance, DeterministicAndLayerDependent) {
  using Hasher = NgramHasherT<TypeParam>;
  const EngramConfig config = hashing_config(3, 8, {646400, 646400});
  const Hasher a(config, dsv3_lookup(), 15), b(config, dsv3_lookup(), 15),
      other(config, dsv3_lookup(), 1);
  const Hasher copy = a;
  const auto ids = random_ids(256, a.lookup_size(), 37);
  EXPECT_EQ(this->whole(a, ids, 1, 256), this->whole(b, ids, 1, 256));
  EXPECT_EQ(this->whole(a, ids, 1, 256), this->whole(copy, ids, 1, 256));
  EXPECT_NE(this->whole(a, ids, 1, 256), this->whole(other, ids, 1, 256));
  EXPECT_EQ(a.num_columns(), 16);
  EXPECT_EQ(a.compressed_vocab_size(), 98627);
  EXPECT_EQ(a.pad_compressed_id(), dsv3_lookup()[2]);
  EXPECT_EQ(a.primes().size(), 16u);
}

/// Chi-square statistic of bucket counts against uniform, as a z-score (df = buckets - 1).
inline double chi_square_z(const std::vector<int64_t>& counts, int64_t total) {
  const double expected = static_cast<double>(total) / static_cast<double>(counts.size());
  double chi2 = 0;
  for (int64_t c : counts)
    chi2 += (static_cast<double>(c) - expected) * (static_cast<double>(c) - expected) / expected;
  const double df = static_cast<double>(counts.size() - 1);
  return (chi2 - df) / std::sqrt(2 * df);
}

TYPED_TEST_P(NgramHasherConformance, BucketsAreUniformOverDistinctNgramsOfRealText) {
  // Real text repeats n-grams ("of the"), so uniformity is measured over the distinct n-grams of
  // the King James Bible slice: each distinct n-gram counted once in its row's bucket.
  using Hasher = NgramHasherT<TypeParam>;
  const Hasher h(hashing_config(3, 4, {1009, 1201}), dsv3_lookup(), 15);
  const auto& ids = kjv_ids();
  const int64_t t = static_cast<int64_t>(ids.size()), cols = h.num_columns(), heads = 4;
  std::vector<int64_t> rows(static_cast<size_t>(t * cols));
  h.hash(ids, 1, t, rows);
  const auto& lookup = dsv3_lookup();
  for (int64_t n = 2; n <= 3; ++n) {
    std::map<std::vector<int64_t>, int64_t> first;  // distinct n-gram -> first position
    for (int64_t pos = n - 1; pos < t; ++pos) {
      std::vector<int64_t> key;
      for (int64_t k = n - 1; k >= 0; --k)
        key.push_back(lookup[static_cast<size_t>(ids[static_cast<size_t>(pos - k)])]);
      first.emplace(std::move(key), pos);
    }
    const int64_t distinct = static_cast<int64_t>(first.size());
    ASSERT_GT(distinct, 8000);
    for (int64_t head = 0; head < heads; ++head) {
      const int64_t c = (n - 2) * heads + head;
      const int64_t p = h.primes()[static_cast<size_t>(c)];
      std::vector<int64_t> counts(static_cast<size_t>(p)), weak(static_cast<size_t>(p));
      for (const auto& [key, pos] : first) {
        ++counts[static_cast<size_t>(rows[static_cast<size_t>(pos * cols + c)])];
        ++weak[static_cast<size_t>(key.back() % p)];  // negative control: last token only
      }
      const double z = chi_square_z(counts, distinct), z_weak = chi_square_z(weak, distinct);
      SCOPED_TRACE(std::string(TypeParam::kName) + " order " + std::to_string(n) + " head " +
                   std::to_string(head) + " prime " + std::to_string(p) + " distinct " +
                   std::to_string(distinct) + " z " + std::to_string(z) + " weak z " +
                   std::to_string(z_weak));
      EXPECT_LT(z, 5.0);        // P(z > 5) ~ 3e-7 for a uniform hash
      EXPECT_GT(z_weak, 20.0);  // the test has the power to reject a poor hash
      ::testing::Test::RecordProperty(
          std::string(TypeParam::kName) + "_z_n" + std::to_string(n) + "_h" + std::to_string(head),
          std::to_string(z));
    }
  }
}

REGISTER_TYPED_TEST_SUITE_P(NgramHasherConformance, FastMatchesReferenceAcrossShapes,
                            ChunkedEqualsWholeForAnyChunkSizes,
                            StateAfterPrefixContinuesTheSequence,
                            MaskedTokensHashAsPadIdAndAreNeverRead, Int32IdsEqualInt64Ids,
                            OutOfRangeIdsNameThePositionAndWriteNothing,
                            NegativeIdsAreHashedUncompressedExceptUnderTheCumulativeRule,
                            ShapeStateAndConfigErrorsAreSpecific, DeterministicAndLayerDependent,
                            BucketsAreUniformOverDistinctNgramsOfRealText);

}  // namespace engram::test
