// engram/hashing/primes.hpp: 64-bit primality and the Engram table sizes (one prime per hash head).
//
// Table sizes, as the reference computes them (HashMapping.__init__):
//
//   taken = {}                                      // shared by all layers
//   for layer in layer_ids (config order):
//     for n in 2..N:
//       candidate = engram_vocab_size[n - 2] - 1    // restarts for every order
//       for head in 0..H-1:
//         candidate = smallest prime > candidate that is not in taken
//         taken += {candidate};  primes[layer][(n - 2) * H + head] = candidate
//
// so column c = (n - 2) * H + head of a layer holds ids in [0, primes[c]). A layer id listed twice
// gets the primes of its last occurrence (the reference overwrites its dictionary entry).
//
// is_prime is Miller-Rabin with the bases {2, 3, ..., 37}, which is exact (no pseudoprimes) for
// every 64-bit integer; is_prime_reference is trial division, the readable spec used by the tests.
// Everything here is deterministic and thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "engram/config.hpp"
#include "engram/error.hpp"

namespace engram {

namespace detail {

__extension__ typedef unsigned __int128 PrimeUint128;

constexpr uint64_t mul_mod(uint64_t a, uint64_t b, uint64_t m) noexcept {
  return static_cast<uint64_t>(static_cast<PrimeUint128>(a) * b % m);
}

constexpr uint64_t pow_mod(uint64_t base, uint64_t exponent, uint64_t m) noexcept {
  uint64_t result = 1 % m;
  base %= m;
  while (exponent != 0) {
    if (exponent & 1u) result = mul_mod(result, base, m);
    base = mul_mod(base, base, m);
    exponent >>= 1;
  }
  return result;
}

/// Largest engram_vocab_size accepted (as EngramConfig::validate), so primes stay below 2^62 + gap.
inline constexpr int64_t kMaxTableSize = int64_t{1} << 62;

/// Most hash columns per token accepted (EngramConfig::validate bounds the memory width likewise).
inline constexpr int64_t kMaxColumns = int64_t{1} << 24;

/// The config fields the hashing depends on, checked with messages that name the field.
inline void check_hashing_config(const EngramConfig& config, const std::string& source) {
  ENGRAM_CHECK(config.max_ngram_size >= 2 && config.max_ngram_size <= 64, source,
               ": field 'max_ngram_size' must be in [2, 64] (orders 2..N are hashed), found ",
               config.max_ngram_size);
  ENGRAM_CHECK(config.n_head_per_ngram >= 1, source,
               ": field 'n_head_per_ngram' must be positive, found ", config.n_head_per_ngram);
  ENGRAM_CHECK(config.n_head_per_ngram <= kMaxColumns / (config.max_ngram_size - 1), source,
               ": (max_ngram_size - 1) * n_head_per_ngram must be at most 2^24 columns, found ",
               config.max_ngram_size - 1, " x ", config.n_head_per_ngram);
  ENGRAM_CHECK(static_cast<int64_t>(config.engram_vocab_size.size()) == config.max_ngram_size - 1,
               source, ": field 'engram_vocab_size' must have max_ngram_size - 1 = ",
               config.max_ngram_size - 1, " entries, found ", config.engram_vocab_size.size());
  for (int64_t v : config.engram_vocab_size)
    ENGRAM_CHECK(v >= 1 && v < kMaxTableSize, source,
                 ": field 'engram_vocab_size' entries must be in [1, 2^62), found ", v);
  ENGRAM_CHECK(!config.layer_ids.empty(), source, ": field 'layer_ids' must not be empty");
}

}  // namespace detail

/// Exact primality test for every 64-bit integer (deterministic Miller-Rabin).
constexpr bool is_prime(uint64_t n) noexcept {
  constexpr uint64_t kBases[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
  if (n < 2) return false;
  for (uint64_t p : kBases)
    if (n % p == 0) return n == p;
  uint64_t d = n - 1;
  int s = 0;
  while ((d & 1u) == 0) {
    d >>= 1;
    ++s;
  }
  for (uint64_t a : kBases) {
    uint64_t x = detail::pow_mod(a, d, n);
    if (x == 1 || x == n - 1) continue;
    bool composite = true;
    for (int r = 1; r < s && composite; ++r) {
      x = detail::mul_mod(x, x, n);
      if (x == n - 1) composite = false;
    }
    if (composite) return false;
  }
  return true;
}

/// Trial division: the plain reference for is_prime (O(sqrt n); for tests on small n).
constexpr bool is_prime_reference(uint64_t n) noexcept {
  if (n < 2) return false;
  for (uint64_t d = 2; d <= n / d; ++d)
    if (n % d == 0) return false;
  return true;
}

/// Table sizes of every layer: result[i][c] is the prime of column c = (n - 2) * H + head of
/// layer config.layer_ids[i]. Throws engram::Error when the hashing fields are invalid.
inline std::vector<std::vector<int64_t>> engram_table_primes(const EngramConfig& config) {
  detail::check_hashing_config(config, "engram_table_primes");
  const int64_t heads = config.n_head_per_ngram;
  std::set<uint64_t> taken;
  std::vector<std::vector<int64_t>> primes;
  primes.reserve(config.layer_ids.size());
  for (size_t layer = 0; layer < config.layer_ids.size(); ++layer) {
    std::vector<int64_t> columns;
    columns.reserve(static_cast<size_t>(config.num_columns()));
    for (int64_t n = 2; n <= config.max_ngram_size; ++n) {
      uint64_t candidate = static_cast<uint64_t>(config.vocab_size_for_order(n)) - 1;
      for (int64_t head = 0; head < heads; ++head) {
        do {
          ++candidate;
        } while (!is_prime(candidate) || taken.count(candidate) != 0);
        taken.insert(candidate);
        columns.push_back(static_cast<int64_t>(candidate));
      }
    }
    primes.push_back(std::move(columns));
  }
  return primes;
}

/// Table sizes (one prime per column, (N - 1) * H) of the Engram layer `layer_id`.
/// Throws engram::Error when `layer_id` is not in config.layer_ids.
inline std::vector<int64_t> engram_layer_primes(const EngramConfig& config, int64_t layer_id) {
  config.require_layer(layer_id, "engram_layer_primes");
  const std::vector<std::vector<int64_t>> all = engram_table_primes(config);
  for (size_t i = config.layer_ids.size(); i-- > 0;)  // last occurrence wins, as in the reference
    if (config.layer_ids[i] == layer_id) return all[i];
  return {};  // unreachable: require_layer passed
}

}  // namespace engram
