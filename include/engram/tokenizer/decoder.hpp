// engram/tokenizer/decoder.hpp: tokenizer.json decoders, reproducing Hugging Face `tokenizers`
// 0.23.2 (`Tokenizer::decode`) byte for byte.
//
// decode(tokens) = join("", decode_chain(tokens)); with no decoder at all the tokenizer joins the
// tokens with " " (decode_tokens). decode_chain maps token strings to strings; a Sequence chains
// its decoders: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, WordPiece, BPEDecoder
// and CTC, each as HF defines it (the rules of each: docs/design/tokenizer_decoders.md). Invalid
// UTF-8 becomes U+FFFD as Rust's from_utf8_lossy does. Where HF panics (Strip cutting past a
// token's end), engram throws engram::Error instead.
// Token strings must be valid UTF-8 (tokenizer.json strings always are). TokenDecoder is
// immutable and thread-safe.
//
//   const engram::TokenizerJson t = engram::read_tokenizer_json("tokenizer.json");
//   std::string text = engram::decode_tokens(t.decoder, {"\u2581Hello", "\u2581world"});
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "engram/error.hpp"
#include "engram/tokenizer/detail/unicode.hpp"
#include "engram/tokenizer/normalizer.hpp"

namespace engram {

class TokenDecoder;

/// Metaspace prepend scheme (tokenizer.json "prepend_scheme").
enum class PrependScheme { kFirst, kNever, kAlways };

/// The tokenizer.json decoder types (HF type names in comments).
namespace decoders {
struct ByteLevel {};     ///< "ByteLevel"
struct ByteFallback {};  ///< "ByteFallback"
struct Fuse {};          ///< "Fuse"
struct Strip {           ///< "Strip"
  char32_t content = U' ';
  uint64_t start = 0;
  uint64_t stop = 0;
};
struct Replace {  ///< "Replace" with {"String": pattern}
  std::string pattern;
  std::string content;
};
struct Metaspace {  ///< "Metaspace"
  char32_t replacement = U'\u2581';
  PrependScheme prepend_scheme = PrependScheme::kAlways;
};
struct WordPiece {  ///< "WordPiece"
  std::string prefix = "##";
  bool cleanup = true;
};
struct Bpe {  ///< "BPEDecoder"
  std::string suffix = "</w>";
};
struct Ctc {  ///< "CTC"
  std::string pad_token = "<pad>";
  std::string word_delimiter_token = "|";
  bool cleanup = true;
};
struct Sequence {  ///< "Sequence"
  std::vector<TokenDecoder> decoders;
};
}  // namespace decoders

namespace detail {

/// Rust String::from_utf8_lossy: valid sequences are kept; each maximal prefix of a valid
/// sequence that is cut short (or a lone invalid byte) becomes one U+FFFD.
inline std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const Utf8Sequence seq = utf8_sequence_at(bytes, i);
    if (seq.length != 0 && seq.valid == seq.length) {
      out.append(bytes.substr(i, seq.length));
      i += seq.length;
    } else {
      out.append(kReplacementCharacter);
      i += std::max<size_t>(seq.valid, 1);
    }
  }
  return out;
}

/// Rust u8::from_str_radix(s, 16) for the two characters of a "<0xNN>" token.
inline std::optional<uint8_t> parse_hex_byte(std::string_view s) noexcept {
  if (s.empty()) return std::nullopt;
  if (s[0] == '+') {
    s.remove_prefix(1);
    if (s.empty()) return std::nullopt;
  }
  unsigned value = 0;
  for (char c : s) {
    unsigned digit;
    if (c >= '0' && c <= '9')
      digit = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f')
      digit = static_cast<unsigned>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      digit = static_cast<unsigned>(c - 'A' + 10);
    else
      return std::nullopt;
    value = value * 16 + digit;
    if (value > 0xFF) return std::nullopt;
  }
  return static_cast<uint8_t>(value);
}

/// HF wordpiece::cleanup (also used by CTC).
inline std::string wordpiece_cleanup(std::string s) {
  static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},   {" ?", "?"},     {" !", "!"},    {" ,", ","},
      {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},  {" do not", " don't"},
      {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules)
    if (s.find(from) != std::string::npos) s = rust_replace(s, from, to);
  return s;
}

}  // namespace detail

/// A tokenizer.json decoder. Immutable; thread-safe.
class TokenDecoder {
 public:
  using Variant =
      std::variant<decoders::ByteLevel, decoders::ByteFallback, decoders::Fuse, decoders::Strip,
                   decoders::Replace, decoders::Metaspace, decoders::WordPiece, decoders::Bpe,
                   decoders::Ctc, decoders::Sequence>;

  TokenDecoder(Variant variant) : variant_(std::move(variant)) {}  // NOLINT: implicit on purpose

  const Variant& variant() const noexcept { return variant_; }

  /// HF Decoder::decode_chain.
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const {
    return std::visit([&](const auto& d) { return apply(d, std::move(tokens)); }, variant_);
  }

  /// HF Decoder::decode: the chain's output joined without separator.
  std::string decode(std::vector<std::string> tokens) const {
    std::string out;
    for (const auto& piece : decode_chain(std::move(tokens))) out += piece;
    return out;
  }

 private:
  static std::vector<std::string> apply(const decoders::ByteLevel&,
                                        std::vector<std::string> tokens) {
    std::string bytes;
    for (const auto& token : tokens) {
      const size_t mark = bytes.size();
      bool in_alphabet = true;
      for (size_t i = 0; i < token.size();) {
        const char32_t cp = detail::next_code_point(token, i);
        const int byte = cp < 0x144 ? detail::kByteLevelAlphabet.char_to_byte[cp] : -1;
        if (byte < 0) {
          in_alphabet = false;
          break;
        }
        bytes.push_back(static_cast<char>(byte));
      }
      if (!in_alphabet) {
        bytes.resize(mark);
        bytes += token;
      }
    }
    return {detail::utf8_lossy(bytes)};
  }

  static std::vector<std::string> apply(const decoders::ByteFallback&,
                                        std::vector<std::string> tokens) {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string pending;  // bytes of the current run of byte tokens
    const auto flush = [&] {
      if (pending.empty()) return;
      if (detail::is_valid_utf8(pending)) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back(detail::kReplacementCharacter);
      }
      pending.clear();
    };
    for (auto& token : tokens) {
      std::optional<uint8_t> byte;
      if (token.size() == 6 && token.starts_with("<0x") && token.ends_with('>'))
        byte = detail::parse_hex_byte(std::string_view(token).substr(3, 2));
      if (byte) {
        pending.push_back(static_cast<char>(*byte));
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    return out;
  }

  static std::vector<std::string> apply(const decoders::Fuse&, std::vector<std::string> tokens) {
    std::string fused;
    for (const auto& token : tokens) fused += token;
    return {std::move(fused)};
  }

  static std::vector<std::string> apply(const decoders::Strip& d, std::vector<std::string> tokens) {
    for (auto& token : tokens) {
      const std::u32string chars = detail::to_code_points(token);
      size_t start_cut = 0;
      for (size_t i = 0; i < chars.size() && i < d.start; ++i) {
        if (chars[i] != d.content) break;
        start_cut = i + 1;
      }
      size_t stop_cut = chars.size();
      for (uint64_t i = 0; i < d.stop; ++i) {
        // HF indexes chars[len - i - 1]; past the front it panics, so do we (with an Error).
        ENGRAM_CHECK(i < chars.size(), "Strip decoder (stop ", d.stop,
                     ") runs past the start of token '", token, "' (Hugging Face panics here)");
        const size_t index = chars.size() - i - 1;
        if (chars[index] != d.content) break;
        stop_cut = index;
      }
      ENGRAM_CHECK(start_cut <= stop_cut, "Strip decoder (start ", d.start, ", stop ", d.stop,
                   ") cuts token '", token,
                   "' from both ends past each other (Hugging Face panics here)");
      token = detail::from_code_points(
          std::u32string_view(chars).substr(start_cut, stop_cut - start_cut));
    }
    return tokens;
  }

  static std::vector<std::string> apply(const decoders::Replace& d,
                                        std::vector<std::string> tokens) {
    for (auto& token : tokens)
      if (!token.empty()) token = detail::rust_replace(token, d.pattern, d.content);
    return tokens;
  }

  static std::vector<std::string> apply(const decoders::Metaspace& d,
                                        std::vector<std::string> tokens) {
    for (size_t t = 0; t < tokens.size(); ++t) {
      const bool drop = t == 0 && d.prepend_scheme != PrependScheme::kNever;
      std::string out;
      out.reserve(tokens[t].size());
      const std::string& token = tokens[t];
      for (size_t i = 0; i < token.size();) {
        const size_t at = i;
        const char32_t cp = detail::next_code_point(token, i);
        if (cp == d.replacement) {
          if (!drop) out.push_back(' ');
        } else {
          out.append(token, at, i - at);
        }
      }
      tokens[t] = std::move(out);
    }
    return tokens;
  }

  static std::vector<std::string> apply(const decoders::WordPiece& d,
                                        std::vector<std::string> tokens) {
    for (size_t t = 0; t < tokens.size(); ++t) {
      auto& token = tokens[t];
      if (t != 0) {
        if (token.starts_with(d.prefix))
          token.erase(0, d.prefix.size());
        else
          token.insert(0, " ");
      }
      if (d.cleanup) token = detail::wordpiece_cleanup(std::move(token));
    }
    return tokens;
  }

  static std::vector<std::string> apply(const decoders::Bpe& d, std::vector<std::string> tokens) {
    for (size_t t = 0; t < tokens.size(); ++t)
      tokens[t] = detail::rust_replace(tokens[t], d.suffix, t + 1 == tokens.size() ? "" : " ");
    return tokens;
  }

  static std::vector<std::string> apply(const decoders::Ctc& d, std::vector<std::string> tokens) {
    std::vector<std::string> out;
    for (size_t t = 0; t < tokens.size(); ++t) {
      if (t > 0 && tokens[t] == tokens[t - 1]) continue;  // itertools dedup
      std::string s = detail::rust_replace(tokens[t], d.pad_token, "");
      if (d.cleanup)
        s = detail::rust_replace(detail::wordpiece_cleanup(std::move(s)), d.word_delimiter_token,
                                 " ");
      if (!s.empty()) out.push_back(std::move(s));
    }
    return out;
  }

  static std::vector<std::string> apply(const decoders::Sequence& d,
                                        std::vector<std::string> tokens) {
    for (const auto& decoder : d.decoders) tokens = decoder.decode_chain(std::move(tokens));
    return tokens;
  }

  Variant variant_;
};

/// What HF Tokenizer::decode does with the token strings of the ids: the decoder's output, or the
/// tokens joined with " " when the tokenizer has no decoder.
inline std::string decode_tokens(const std::optional<TokenDecoder>& decoder,
                                 std::vector<std::string> tokens) {
  if (decoder) return decoder->decode(std::move(tokens));
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i) out.push_back(' ');
    out += tokens[i];
  }
  return out;
}

}  // namespace engram
