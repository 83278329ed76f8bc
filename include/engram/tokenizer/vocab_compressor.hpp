// engram/tokenizer/vocab_compressor.hpp: the Engram vocabulary compression table (token id ->
// compressed id), bit-exact with the official CompressedTokenizer as computed through Hugging Face
// `tokenizers` 0.23.2 (the reference script is gen_lookup.js in the project's shared material).
//
// For every id t in 0 .. n-1 (n = tokenizer vocab size with added tokens):
//   text = decode([t])                     (HF Tokenizer::decode, no clean-up, specials kept)
//   key  = raw token string of t           if text contains U+FFFD
//        = Normalizer::normalize(text)     otherwise, unless that is empty (then text itself)
//   lookup[t] = number of distinct keys seen before key's first appearance (ids in order)
// VocabCompressorT<Normalizer> takes the key rule as a policy (the VocabNormalizer concept);
// DeepSeekNormalizer, the default (VocabCompressor), is DeepSeek's NFKC, NFD, strip accents,
// lowercase, whitespace rule. Example: DeepSeek-V3, 128,815 ids -> 98,627 compressed ids.
// Entry points: compress_tokenizer_json(path), compress_tokenizer(TokenizerJson), and
// compress_vocab(decoded_texts, raw_tokens) for callers who decode themselves; each takes an
// optional normaliser. compress_vocab_reference is the plain spec of the default rule.
// The result is a CompressionTable (compression_table.hpp). A VocabCompressorT is single-threaded.
//
//   const auto table = engram::compress_tokenizer_json("tokenizer.json");  // DeepSeek's rule
//   struct Lower { std::string normalize(std::string_view s) const; };     // any other rule
//   const auto mine = engram::compress_tokenizer_json("tokenizer.json", Lower{});
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/tokenizer/compression_table.hpp"
#include "engram/tokenizer/normalizer.hpp"
#include "engram/tokenizer/tokenizer_json.hpp"

namespace engram {

namespace detail {

inline bool contains_replacement_character(std::string_view text) noexcept {
  return text.find(kReplacementCharacter) != std::string_view::npos;
}

/// Distinct keys numbered in order of first insertion: open addressing over one byte arena (the
/// compressor looks up one key per token id; node-based maps spend most of the time in misses).
class KeyTable {
 public:
  void reserve(size_t n) {
    if (2 * n > slots_.size()) rehash(n);
    ends_.reserve(n);
  }
  size_t size() const noexcept { return ends_.size(); }

  /// The number of `key`, inserting it as the next number when new.
  int64_t find_or_insert(std::string_view key) {
    if (2 * (size() + 1) > slots_.size()) rehash(std::max<size_t>(16, 2 * size()));
    const uint64_t h = hash(key);
    const size_t mask = slots_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      Slot& slot = slots_[i];
      if (slot.index == kEmpty) {
        slot = Slot{h, static_cast<uint32_t>(size())};
        arena_.append(key);
        ends_.push_back(arena_.size());
        return slot.index;
      }
      if (slot.hash == h && key_at(slot.index) == key) return slot.index;
    }
  }

 private:
  static constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();
  struct Slot {
    uint64_t hash = 0;
    uint32_t index = kEmpty;
  };
  static uint64_t hash(std::string_view s) noexcept {
    const uint64_t h = std::hash<std::string_view>{}(s);
    return h ^ (h >> 29);
  }
  std::string_view key_at(uint32_t index) const noexcept {
    const size_t begin = index == 0 ? 0 : ends_[index - 1];
    return std::string_view(arena_).substr(begin, ends_[index] - begin);
  }
  void rehash(size_t n) {
    size_t capacity = 16;
    while (capacity < 2 * n) capacity *= 2;
    std::vector<Slot> slots(capacity);
    for (const Slot& slot : slots_) {
      if (slot.index == kEmpty) continue;
      size_t i = slot.hash & (capacity - 1);
      while (slots[i].index != kEmpty) i = (i + 1) & (capacity - 1);
      slots[i] = slot;
    }
    slots_ = std::move(slots);
  }

  std::vector<Slot> slots_;
  std::string arena_;         ///< the keys, back to back
  std::vector<size_t> ends_;  ///< end offset of each key in arena_
};

}  // namespace detail

/// A normalisation policy of VocabCompressorT: maps the decoded text of one id (valid UTF-8,
/// checked by the compressor) to its key. The result may be a std::string or a view into the
/// normaliser that stays valid until the next call; an empty result falls back to the text itself.
template <class N>
concept VocabNormalizer = std::default_initializable<N> && std::movable<N> &&
    requires(N& normalizer, std::string_view valid_utf8) {
  { normalizer.normalize(valid_utf8) } -> std::convertible_to<std::string_view>;
};

/// DeepSeek's rule, the default policy: NFKC, NFD, strip accents, lowercase, whitespace runs ->
/// one space, strip (a lone space stays); CompressionNormalizer on text known to be UTF-8.
class DeepSeekNormalizer {
 public:
  std::string_view normalize(std::string_view valid_utf8) {
    return impl_.normalize_valid_utf8(valid_utf8);
  }

 private:
  CompressionNormalizer impl_;
};

/// Builds a table one token id at a time (ids 0, 1, 2, ... in the order of add()), keying each id
/// by `Normalizer` (see VocabNormalizer). Single-threaded.
/// @tparam Normalizer the key rule; DeepSeekNormalizer reproduces the official table.
template <VocabNormalizer Normalizer = DeepSeekNormalizer>
class VocabCompressorT {
 public:
  VocabCompressorT() = default;
  explicit VocabCompressorT(Normalizer normalizer) : normalizer_(std::move(normalizer)) {}

  /// Adds the next id. `raw_token` is its token string (HF id_to_token); it is needed only when
  /// `decoded_text` contains U+FFFD, and then missing it throws. Returns the compressed id.
  int64_t add(std::string_view decoded_text,
              std::optional<std::string_view> raw_token = std::nullopt) {
    int64_t id = 0;
    if (detail::contains_replacement_character(decoded_text)) {
      ENGRAM_CHECK(
          raw_token.has_value(), "decoded text of token id ", lookup_.size(),
          " contains U+FFFD, so its raw token string is needed as the key, but none was given");
      id = keys_.find_or_insert(*raw_token);
    } else {
      ENGRAM_CHECK(detail::is_valid_utf8(decoded_text), "decoded text of token id ", lookup_.size(),
                   " is not valid UTF-8");
      // auto&& keeps a std::string result alive for the lookup below.
      auto&& normalized = normalizer_.normalize(decoded_text);
      const std::string_view key = normalized;
      id = keys_.find_or_insert(key.empty() ? decoded_text : key);
    }
    lookup_.push_back(id);
    return id;
  }

  /// Prepares for `n` ids (optional).
  void reserve(size_t n) {
    keys_.reserve(n);
    lookup_.reserve(n);
  }

  /// Ids added so far.
  int64_t vocab_size() const noexcept { return static_cast<int64_t>(lookup_.size()); }
  /// Distinct keys so far.
  int64_t compressed_size() const noexcept { return static_cast<int64_t>(keys_.size()); }
  /// The table of the ids added so far.
  CompressionTable table() const { return CompressionTable(lookup_); }

 private:
  Normalizer normalizer_;
  detail::KeyTable keys_;
  std::vector<int64_t> lookup_;
};

/// The official compressor (DeepSeek's normalisation).
using VocabCompressor = VocabCompressorT<>;

namespace detail {

inline void check_raw_tokens(std::span<const std::string> decoded_texts,
                             std::span<const std::string> raw_tokens) {
  ENGRAM_CHECK(raw_tokens.empty() || raw_tokens.size() == decoded_texts.size(), "raw_tokens has ",
               raw_tokens.size(), " entries, expected 0 or one per decoded text (",
               decoded_texts.size(), ")");
}

}  // namespace detail

/// The table of a vocabulary given as the decoded text of each id (and, optionally, each id's raw
/// token string for the U+FFFD rule; pass {} when no text contains U+FFFD).
template <VocabNormalizer Normalizer = DeepSeekNormalizer>
CompressionTable compress_vocab(std::span<const std::string> decoded_texts,
                                std::span<const std::string> raw_tokens = {},
                                Normalizer normalizer = {}) {
  detail::check_raw_tokens(decoded_texts, raw_tokens);
  VocabCompressorT<Normalizer> compressor(std::move(normalizer));
  compressor.reserve(decoded_texts.size());
  for (size_t i = 0; i < decoded_texts.size(); ++i) {
    compressor.add(decoded_texts[i], raw_tokens.empty()
                                         ? std::nullopt
                                         : std::optional<std::string_view>(raw_tokens[i]));
  }
  return compressor.table();
}

/// Reference implementation of compress_vocab: the specification, step by step.
inline CompressionTable compress_vocab_reference(std::span<const std::string> decoded_texts,
                                                 std::span<const std::string> raw_tokens = {}) {
  detail::check_raw_tokens(decoded_texts, raw_tokens);
  std::map<std::string, int64_t> key_to_id;
  std::vector<int64_t> lookup;
  for (size_t i = 0; i < decoded_texts.size(); ++i) {
    const std::string& text = decoded_texts[i];
    std::string key;
    if (text.find("\xEF\xBF\xBD") != std::string::npos) {
      ENGRAM_CHECK(
          !raw_tokens.empty(), "decoded text of token id ", i,
          " contains U+FFFD, so its raw token string is needed as the key, but none was given");
      key = raw_tokens[i];
    } else {
      key = compression_normalize_reference(text);
      if (key.empty()) key = text;
    }
    const auto [it, inserted] = key_to_id.emplace(key, static_cast<int64_t>(key_to_id.size()));
    lookup.push_back(it->second);
  }
  return CompressionTable(std::move(lookup));
}

/// The decoded text of every id of `tokenizer` (HF decode([id]) for id in 0 .. vocab_size()-1).
inline std::vector<std::string> decode_each_id(const TokenizerJson& tokenizer) {
  std::vector<std::string> texts;
  texts.reserve(static_cast<size_t>(tokenizer.vocab_size()));
  for (int64_t id = 0; id < tokenizer.vocab_size(); ++id)
    texts.push_back(tokenizer.decode({&id, 1}));
  return texts;
}

/// The table of a parsed tokenizer.json, keyed by `normalizer` (DeepSeek's rule by default).
template <VocabNormalizer Normalizer = DeepSeekNormalizer>
CompressionTable compress_tokenizer(const TokenizerJson& tokenizer, Normalizer normalizer = {}) {
  VocabCompressorT<Normalizer> compressor(std::move(normalizer));
  compressor.reserve(static_cast<size_t>(tokenizer.vocab_size()));
  for (int64_t id = 0; id < tokenizer.vocab_size(); ++id) {
    const auto& token = tokenizer.tokens[static_cast<size_t>(id)];
    compressor.add(tokenizer.decode({&id, 1}),
                   token ? std::optional<std::string_view>(*token) : std::nullopt);
  }
  return compressor.table();
}

/// The table of the tokenizer.json (plain or gzip) at `path`. This is what the CLI calls.
template <VocabNormalizer Normalizer = DeepSeekNormalizer>
CompressionTable compress_tokenizer_json(const std::string& path, Normalizer normalizer = {}) {
  return compress_tokenizer(read_tokenizer_json(path), std::move(normalizer));
}

}  // namespace engram
