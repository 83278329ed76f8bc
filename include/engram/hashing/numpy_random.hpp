// engram/hashing/numpy_random.hpp: NumPy's default random generator, bit-exact, in C++.
//
// Reproduces `np.random.default_rng(seed).integers(low, high, size, dtype=np.int64, endpoint)` so
// that the Engram hash multipliers (drawn that way by the reference) come out identical without
// Python: SeedSequence (entropy -> pool of 4 uint32 words -> generate_state), Pcg64 (PCG XSL-RR
// 128/64, seeded from generate_state(4)) and Generator::integers (NumPy's bounded fill with
// Lemire's rejection, 32- or 64-bit by range). The algorithm of each layer:
// docs/design/numpy_random.md. Guarantees: identical streams to NumPy >= 1.17 for non-negative
// integer entropy (tested against NumPy 1.24 values in tests/data/hashing). Not provided: spawn
// keys, other pool sizes, the legacy masked method, other distributions. Objects are plain values;
// do not share one generator between threads without a lock (as in NumPy).
//
//   auto rng = engram::numpy_random::default_rng(10007 * 15);
//   std::vector<int64_t> m = rng.integers(0, bound, 3);   // == NumPy's, value for value
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>
#include <vector>

#include "engram/error.hpp"

namespace engram::numpy_random {

namespace detail {

__extension__ typedef unsigned __int128 Uint128;

inline constexpr uint32_t kInitA = 0x43b0d7e5u;
inline constexpr uint32_t kMultA = 0x931e8875u;
inline constexpr uint32_t kInitB = 0x8b51f9ddu;
inline constexpr uint32_t kMultB = 0x58f38dedu;
inline constexpr uint32_t kMixMultL = 0xca01f9ddu;
inline constexpr uint32_t kMixMultR = 0x4973f715u;
inline constexpr int kXShift = 16;

/// SeedSequence's hashmix: the hash constant advances with every call.
constexpr uint32_t hashmix(uint32_t value, uint32_t& hash_const) noexcept {
  value ^= hash_const;
  hash_const *= kMultA;
  value *= hash_const;
  value ^= value >> kXShift;
  return value;
}

constexpr uint32_t mix(uint32_t x, uint32_t y) noexcept {
  uint32_t result = kMixMultL * x - kMixMultR * y;
  result ^= result >> kXShift;
  return result;
}

constexpr uint64_t mul_high(uint64_t a, uint64_t b) noexcept {
  return static_cast<uint64_t>((static_cast<Uint128>(a) * b) >> 64);
}

}  // namespace detail

/// numpy.random.SeedSequence with the default pool size (4) and no spawn key.
class SeedSequence {
 public:
  static constexpr int kPoolSize = 4;

  /// SeedSequence(entropy) for a non-negative integer entropy below 2^64.
  explicit SeedSequence(uint64_t entropy) {
    std::array<uint32_t, 2> words{static_cast<uint32_t>(entropy),
                                  static_cast<uint32_t>(entropy >> 32)};
    mix_entropy(std::span<const uint32_t>(words.data(), (entropy >> 32) != 0 ? 2 : 1));
  }

  /// SeedSequence for any non-negative integer given as its uint32 words, least significant
  /// first (NumPy's _coerce_to_uint32_array; 0 is [0], and an empty span mixes the same way).
  explicit SeedSequence(std::span<const uint32_t> entropy_words) { mix_entropy(entropy_words); }

  const std::array<uint32_t, kPoolSize>& pool() const noexcept { return pool_; }

  /// generate_state(n_words, np.uint32).
  std::vector<uint32_t> generate_state_u32(size_t n_words) const {
    std::vector<uint32_t> out(n_words);
    uint32_t hash_const = detail::kInitB;
    for (size_t i = 0; i < n_words; ++i) {
      uint32_t value = pool_[i % kPoolSize];
      value ^= hash_const;
      hash_const *= detail::kMultB;
      value *= hash_const;
      value ^= value >> detail::kXShift;
      out[i] = value;
    }
    return out;
  }

  /// generate_state(n_words, np.uint64): pairs of uint32 words, the first one the low half.
  std::vector<uint64_t> generate_state_u64(size_t n_words) const {
    const std::vector<uint32_t> words = generate_state_u32(2 * n_words);
    std::vector<uint64_t> out(n_words);
    for (size_t i = 0; i < n_words; ++i)
      out[i] = uint64_t{words[2 * i]} | (uint64_t{words[2 * i + 1]} << 32);
    return out;
  }

 private:
  void mix_entropy(std::span<const uint32_t> entropy) noexcept {
    uint32_t hash_const = detail::kInitA;
    for (size_t i = 0; i < kPoolSize; ++i)
      pool_[i] = detail::hashmix(i < entropy.size() ? entropy[i] : 0u, hash_const);
    for (size_t src = 0; src < kPoolSize; ++src)
      for (size_t dst = 0; dst < kPoolSize; ++dst)
        if (src != dst)
          pool_[dst] = detail::mix(pool_[dst], detail::hashmix(pool_[src], hash_const));
    for (size_t src = kPoolSize; src < entropy.size(); ++src)
      for (size_t dst = 0; dst < kPoolSize; ++dst)
        pool_[dst] = detail::mix(pool_[dst], detail::hashmix(entropy[src], hash_const));
  }

  std::array<uint32_t, kPoolSize> pool_{};
};

/// numpy.random.PCG64: the 128-bit LCG with the XSL-RR output function.
class Pcg64 {
 public:
  static constexpr uint64_t kMultiplierHigh = 2549297995355413924ull;
  static constexpr uint64_t kMultiplierLow = 4865540595714422341ull;

  /// PCG64(seed_sequence): seeded from generate_state(4, np.uint64).
  explicit Pcg64(const SeedSequence& seed_sequence) {
    const std::vector<uint64_t> words = seed_sequence.generate_state_u64(4);
    seed(words[0], words[1], words[2], words[3]);
  }

  /// pcg64_set_seed: initial state {state_high, state_low}, stream {inc_high, inc_low}.
  Pcg64(uint64_t state_high, uint64_t state_low, uint64_t inc_high, uint64_t inc_low) noexcept {
    seed(state_high, state_low, inc_high, inc_low);
  }

  /// Next 64-bit output (pcg64_next64). Does not touch the buffered 32-bit half.
  uint64_t next_uint64() noexcept {
    step();
    const uint64_t hi = static_cast<uint64_t>(state_ >> 64);
    const uint64_t lo = static_cast<uint64_t>(state_);
    return std::rotr(hi ^ lo, static_cast<int>(hi >> 58));
  }

  /// Next 32-bit output (pcg64_next32): the low half of a fresh 64-bit draw, then its high half.
  uint32_t next_uint32() noexcept {
    if (has_uint32_) {
      has_uint32_ = false;
      return uinteger_;
    }
    const uint64_t next = next_uint64();
    has_uint32_ = true;
    uinteger_ = static_cast<uint32_t>(next >> 32);
    return static_cast<uint32_t>(next);
  }

  uint64_t state_high() const noexcept { return static_cast<uint64_t>(state_ >> 64); }
  uint64_t state_low() const noexcept { return static_cast<uint64_t>(state_); }
  uint64_t inc_high() const noexcept { return static_cast<uint64_t>(inc_ >> 64); }
  uint64_t inc_low() const noexcept { return static_cast<uint64_t>(inc_); }
  bool has_uint32() const noexcept { return has_uint32_; }
  uint32_t buffered_uint32() const noexcept { return uinteger_; }

 private:
  static constexpr detail::Uint128 kMultiplier =
      (static_cast<detail::Uint128>(kMultiplierHigh) << 64) | kMultiplierLow;

  void step() noexcept { state_ = state_ * kMultiplier + inc_; }

  void seed(uint64_t state_high, uint64_t state_low, uint64_t inc_high, uint64_t inc_low) noexcept {
    const detail::Uint128 initial = (static_cast<detail::Uint128>(state_high) << 64) | state_low;
    const detail::Uint128 stream = (static_cast<detail::Uint128>(inc_high) << 64) | inc_low;
    state_ = 0;
    inc_ = (stream << 1) | 1u;
    step();
    state_ += initial;
    step();
    has_uint32_ = false;
    uinteger_ = 0;
  }

  detail::Uint128 state_ = 0;
  detail::Uint128 inc_ = 0;
  bool has_uint32_ = false;
  uint32_t uinteger_ = 0;
};

/// A uniform integer in [0, rng] by Lemire's method on 32-bit draws (rng < 2^32 - 1).
inline uint32_t bounded_lemire_uint32(Pcg64& bits, uint32_t rng) noexcept {
  const uint32_t rng_excl = rng + 1;
  uint64_t m = uint64_t{bits.next_uint32()} * rng_excl;
  uint32_t leftover = static_cast<uint32_t>(m);
  if (leftover < rng_excl) {
    const uint32_t threshold = (UINT32_MAX - rng) % rng_excl;
    while (leftover < threshold) {
      m = uint64_t{bits.next_uint32()} * rng_excl;
      leftover = static_cast<uint32_t>(m);
    }
  }
  return static_cast<uint32_t>(m >> 32);
}

/// A uniform integer in [0, rng] by Lemire's method on 64-bit draws (rng < 2^64 - 1).
inline uint64_t bounded_lemire_uint64(Pcg64& bits, uint64_t rng) noexcept {
  const uint64_t rng_excl = rng + 1;
  detail::Uint128 m = static_cast<detail::Uint128>(bits.next_uint64()) * rng_excl;
  uint64_t leftover = static_cast<uint64_t>(m);
  if (leftover < rng_excl) {
    const uint64_t threshold = (UINT64_MAX - rng) % rng_excl;
    while (leftover < threshold) {
      m = static_cast<detail::Uint128>(bits.next_uint64()) * rng_excl;
      leftover = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

/// NumPy's random_bounded_uint64_fill (Lemire variant): out[i] = off + uniform[0, rng], mod 2^64.
inline void bounded_uint64_fill(Pcg64& bits, uint64_t off, uint64_t rng,
                                std::span<uint64_t> out) noexcept {
  if (rng == 0) {
    for (uint64_t& v : out) v = off;
  } else if (rng < 0xFFFFFFFFull) {
    for (uint64_t& v : out) v = off + bounded_lemire_uint32(bits, static_cast<uint32_t>(rng));
  } else if (rng == 0xFFFFFFFFull) {
    for (uint64_t& v : out) v = off + bits.next_uint32();
  } else if (rng == UINT64_MAX) {
    for (uint64_t& v : out) v = off + bits.next_uint64();
  } else {
    for (uint64_t& v : out) v = off + bounded_lemire_uint64(bits, rng);
  }
}

/// numpy.random.Generator over PCG64 (what np.random.default_rng returns).
class Generator {
 public:
  explicit Generator(const SeedSequence& seed_sequence) : bits_(seed_sequence) {}

  /// Generator.integers(low, high, size=count, dtype=np.int64, endpoint=endpoint).
  /// Values lie in [low, high) or, with endpoint, [low, high]. Throws engram::Error when the
  /// interval is empty (NumPy's "low >= high" ValueError).
  std::vector<int64_t> integers(int64_t low, int64_t high, size_t count, bool endpoint = false) {
    ENGRAM_CHECK(endpoint ? low <= high : low < high, "numpy_random::Generator::integers: low (",
                 low, ") must be ", endpoint ? "<=" : "<", " high (", high, ")");
    std::vector<int64_t> out(count);
    if (count == 0) return out;  // NumPy returns early, drawing nothing
    const uint64_t rng =
        static_cast<uint64_t>(high) - static_cast<uint64_t>(low) - (endpoint ? 0u : 1u);
    std::vector<uint64_t> raw(count);
    bounded_uint64_fill(bits_, static_cast<uint64_t>(low), rng, raw);
    for (size_t i = 0; i < count; ++i) out[i] = static_cast<int64_t>(raw[i]);
    return out;
  }

  Pcg64& bit_generator() noexcept { return bits_; }
  const Pcg64& bit_generator() const noexcept { return bits_; }

 private:
  Pcg64 bits_;
};

/// np.random.default_rng(seed) for a non-negative seed.
inline Generator default_rng(uint64_t seed) { return Generator(SeedSequence(seed)); }

}  // namespace engram::numpy_random
