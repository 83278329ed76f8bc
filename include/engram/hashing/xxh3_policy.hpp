// engram/hashing/xxh3_policy.hpp: an XXH3-64 hash policy for NgramHasherT (needs engram::xxhash).
//
// Row of column c = (n - 2) * H + head at position t:
//
//   bytes  = x[t-n+1], ..., x[t]            the n compressed ids, oldest first, each as 8 bytes
//                                            little-endian two's complement (8n bytes)
//   seed_c = s(s(s(s(seed) ^ layer_id) ^ n) ^ head)     s = SplitMix64's finaliser step
//   out    = XXH3_64bits_withSeed(bytes, 8n, seed_c) mod primes[c]
//
// Trade-off against NumpyMultiplyXor (the default):
// + stronger mixing: every input bit avalanches into every output bit, per head independently,
//   so n-grams that differ in a few bits (neighbouring compressed ids) or are permutations of each
//   other land in unrelated rows; the reference's mix is linear over XOR (x*m[0] ^ x'*m[1]) and all
//   heads of an order share one mix, reduced by different primes.
// - slower: H hash calls per order instead of one multiply-XOR per order (see the benchmark).
// - NOT checkpoint-compatible: tables trained with the reference hashing (DeepSeek's Engram
//   checkpoints) must be read with NumpyMultiplyXor. Use this policy only for tables trained with
//   it.
// Deterministic across platforms (explicit little-endian bytes, XXH3 is specified bit-exactly);
// thread-safe (const, no state). Define XXH_INLINE_ALL before including this header (and before
// any other include of xxhash.h) to inline xxHash: about 15% faster here.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include <xxhash.h>

#include "engram/hashing/fast_mod.hpp"
#include "engram/hashing/ngram_hasher.hpp"

namespace engram {

/// XXH3-64 of the n-gram's compressed ids with a per-layer, per-order, per-head seed.
class Xxh3Hash {
 public:
  static constexpr std::string_view kName = "xxh3";

  explicit Xxh3Hash(const NgramHashContext& context)
      : max_ngram_size_(context.config.max_ngram_size),
        heads_(context.config.n_head_per_ngram),
        primes_(context.primes.begin(), context.primes.end()) {
    ENGRAM_CHECK(static_cast<int64_t>(primes_.size()) == (max_ngram_size_ - 1) * heads_,
                 "Xxh3Hash: expected ", (max_ngram_size_ - 1) * heads_, " primes, found ",
                 primes_.size());
    for (int64_t p : primes_) mods_.emplace_back(static_cast<uint64_t>(p));
    const uint64_t layer_seed = mix64(mix64(static_cast<uint64_t>(context.config.seed)) ^
                                      static_cast<uint64_t>(context.layer_id));
    for (int64_t n = 2; n <= max_ngram_size_; ++n)
      for (int64_t h = 0; h < heads_; ++h)
        seeds_.push_back(
            mix64(mix64(layer_seed ^ static_cast<uint64_t>(n)) ^ static_cast<uint64_t>(h)));
  }

  /// SplitMix64's output step (a bijection on 64-bit words).
  static constexpr uint64_t mix64(uint64_t z) noexcept {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  /// The XXH3 seed of each column.
  std::span<const uint64_t> seeds() const noexcept { return seeds_; }

  void hash_rows(const int64_t* x, int64_t count, int64_t* out) const noexcept {
    const int64_t columns = (max_ngram_size_ - 1) * heads_;
    for (int64_t t = 0; t < count; ++t) {
      int64_t* row = out + t * columns;
      for (int64_t n = 2; n <= max_ngram_size_; ++n) {
        const int64_t* gram = x + t - (n - 1);
        int64_t swapped[64];
        const void* bytes = little_endian(gram, n, swapped);
        const int64_t base = (n - 2) * heads_;
        for (int64_t h = 0; h < heads_; ++h) {
          const uint64_t digest = XXH3_64bits_withSeed(bytes, static_cast<size_t>(n) * 8,
                                                       seeds_[static_cast<size_t>(base + h)]);
          row[base + h] = static_cast<int64_t>(mods_[static_cast<size_t>(base + h)].reduce(digest));
        }
      }
    }
  }

  /// The spec: explicit little-endian bytes, XXH3, `%`.
  void hash_rows_reference(const int64_t* x, int64_t count, int64_t* out) const noexcept {
    const int64_t columns = (max_ngram_size_ - 1) * heads_;
    for (int64_t t = 0; t < count; ++t)
      for (int64_t n = 2; n <= max_ngram_size_; ++n) {
        unsigned char bytes[64 * 8];
        for (int64_t k = 0; k < n; ++k) {
          const uint64_t v = static_cast<uint64_t>(x[t - (n - 1) + k]);
          for (int b = 0; b < 8; ++b) bytes[k * 8 + b] = static_cast<unsigned char>(v >> (8 * b));
        }
        for (int64_t h = 0; h < heads_; ++h) {
          const int64_t c = (n - 2) * heads_ + h;
          const uint64_t digest = XXH3_64bits_withSeed(bytes, static_cast<size_t>(n) * 8,
                                                       seeds_[static_cast<size_t>(c)]);
          out[t * columns + c] =
              static_cast<int64_t>(digest % static_cast<uint64_t>(primes_[static_cast<size_t>(c)]));
        }
      }
  }

 private:
  /// The n ids as little-endian bytes: the ids themselves on little-endian hosts.
  static const void* little_endian(const int64_t* gram, int64_t n, int64_t* scratch) noexcept {
    if constexpr (std::endian::native == std::endian::little) {
      (void)n;
      (void)scratch;
      return gram;
    } else {
      for (int64_t k = 0; k < n; ++k)
        scratch[k] = static_cast<int64_t>(__builtin_bswap64(static_cast<uint64_t>(gram[k])));
      return scratch;
    }
  }

  int64_t max_ngram_size_;
  int64_t heads_;
  std::vector<int64_t> primes_;
  std::vector<FastMod> mods_;
  std::vector<uint64_t> seeds_;
};

static_assert(NgramHashPolicy<Xxh3Hash>);

/// N-gram hasher with the XXH3 policy (not checkpoint-compatible with the reference).
using Xxh3NgramHasher = NgramHasherT<Xxh3Hash>;

}  // namespace engram
