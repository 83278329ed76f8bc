// engram/tokenizer/normalizer.hpp: text normalisation exactly as Hugging Face `tokenizers` 0.23.2
// does it: the vocabulary-compression normaliser, and the tokenizer.json normalisers that decide
// the text of `normalized` added tokens.
//
// Compression normaliser (the official Engram CompressedTokenizer, i.e. this HF normaliser
// Sequence: NFKC, NFD, StripAccents, Lowercase, Replace, Replace, Strip, Replace):
//   s = NFKC(text); s = NFD(s); s = remove general category M from s      (StripAccents)
//   s = lowercase(s)              per code point, Rust char::to_lowercase (U+0130 -> "i\u0307")
//   s = replace runs of [ \t\r\n]+ by " "
//   if s == " ": s = U+E000       (a lone space survives the strip as a sentinel)
//   s = strip White_Space (Rust char::is_whitespace) at both ends
//   s = replace every U+E000 by " " (also one that was in the text)
// The result may be empty; the compressor then keys the token by its decoded text.
// Unicode versions: the normal forms and the mark test are Unicode 9.0, lowercase is Unicode 17.0
// (see engram/tokenizer/detail/unicode.hpp for why and how).
//
// `compression_normalize_reference` is that pseudocode step by step (the spec in code);
// `CompressionNormalizer` is the fast path used by the compressor (ASCII shortcut, NFKD in one pass
// instead of NFKC then NFD, which is the same string because NFD(NFKC(x)) == NFKD(x), buffers
// reused). Tests compare the two on whole vocabularies and random strings.
//
// Inputs must be valid UTF-8 (checked; engram::Error otherwise); NUL is an ordinary character.
// Everything is deterministic. Free functions and const TextNormalizer methods are thread-safe;
// a CompressionNormalizer holds scratch buffers, so use one per thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "engram/error.hpp"
#include "engram/tokenizer/detail/unicode.hpp"

namespace engram {

/// The four Unicode normalisation forms (HF's NFC, NFD, NFKC, NFKD normalisers).
enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };

namespace detail {

inline void check_utf8(std::string_view text, std::string_view what) {
  ENGRAM_CHECK(is_valid_utf8(text), what, " is not valid UTF-8");
}

inline NormalFormOptions options_of(NormalForm form) noexcept {
  switch (form) {
    case NormalForm::kNFC:
      return NormalFormOptions::kNFC;
    case NormalForm::kNFD:
      return NormalFormOptions::kNFD;
    case NormalForm::kNFKC:
      return NormalFormOptions::kNFKC;
    case NormalForm::kNFKD:
      return NormalFormOptions::kNFKD;
  }
  return NormalFormOptions::kNFC;
}

/// Byte-level alphabet of GPT-2 / HF ByteLevel: byte b is shown as code point byte_to_char[b].
/// Printable bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) are themselves; the other 68 are numbered
/// from U+0100 in byte order.
struct ByteLevelAlphabet {
  char32_t byte_to_char[256] = {};
  int16_t char_to_byte[0x144] = {};  ///< -1 where the code point is not in the alphabet

  constexpr ByteLevelAlphabet() {
    for (auto& b : char_to_byte) b = -1;
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      byte_to_char[b] = printable ? static_cast<char32_t>(b) : next++;
      char_to_byte[byte_to_char[b]] = static_cast<int16_t>(b);
    }
  }
};
inline constexpr ByteLevelAlphabet kByteLevelAlphabet{};

/// Rust `str::replace(from, to)`: leftmost non-overlapping matches; an empty `from` matches at
/// every char boundary, both ends included ("ab" -> "XaXbX", "" -> "X").
inline std::string rust_replace(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  if (from.empty()) {
    out.reserve(text.size() + (text.size() + 1) * to.size());
    out.append(to);
    for (size_t i = 0; i < text.size();) {
      const size_t at = i;
      next_code_point(text, i);
      out.append(text.substr(at, i - at));
      out.append(to);
    }
    return out;
  }
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string_view::npos;
       pos = hit + from.size()) {
    out.append(text.substr(pos, hit - pos));
    out.append(to);
  }
  out.append(text.substr(pos));
  return out;
}

/// Strips White_Space code points from the ends of valid UTF-8 `text` (HF NormalizedString::
/// lstrip / rstrip, Rust char::is_whitespace).
inline std::string_view strip_white_space_view(std::string_view text, bool left,
                                               bool right) noexcept {
  if (left) {
    size_t i = 0;
    while (i < text.size()) {
      size_t next = i;
      if (!is_white_space(next_code_point(text, next))) break;
      i = next;
    }
    text.remove_prefix(i);
  }
  if (right) {
    while (!text.empty()) {
      size_t start = text.size() - 1;
      while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
      size_t next = start;
      if (!is_white_space(next_code_point(text, next))) break;
      text.remove_suffix(text.size() - start);
    }
  }
  return text;
}

/// Replaces runs of [ \t\r\n] by one space in place, then finishes the compression normaliser:
/// a lone " " stays " ", otherwise White_Space is stripped and U+E000 becomes " ".
inline void finish_compression_whitespace(std::string& s) {
  if (s == " ") return;  // sentinel round trip
  const std::string_view stripped = strip_white_space_view(s, true, true);
  const size_t offset = static_cast<size_t>(stripped.data() - s.data());
  const size_t length = stripped.size();
  if (offset != 0 || length != s.size()) s = s.substr(offset, length);
  constexpr std::string_view kSentinel = "\xEE\x80\x80";  // U+E000
  if (s.find(kSentinel) != std::string::npos) s = rust_replace(s, kSentinel, " ");
}

inline bool is_collapsible_space(char32_t cp) noexcept {
  return cp == ' ' || cp == '\t' || cp == '\r' || cp == '\n';
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Single steps, as HF's normalisers apply them (inputs valid UTF-8, checked).

/// NFC/NFD/NFKC/NFKD with HF's Unicode 9.0 tables.
inline std::string normalize_unicode(std::string_view text, NormalForm form) {
  detail::check_utf8(text, "text to normalize");
  std::string out;
  out.reserve(text.size());
  detail::append_normal_form(text, detail::options_of(form), out);
  return out;
}

/// HF Lowercase: Rust char::to_lowercase per code point, no context (final sigma stays σ).
inline std::string lowercase(std::string_view text) {
  detail::check_utf8(text, "text to lowercase");
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();)
    detail::append_lowercase(detail::next_code_point(text, i), out);
  return out;
}

/// HF StripAccents: removes code points of general category M (Unicode 9.0). Does not decompose
/// first; pair it with NFD/NFKD as tokenizers do.
inline std::string strip_accents(std::string_view text) {
  detail::check_utf8(text, "text to strip accents from");
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t at = i;
    if (!detail::is_combining_mark_unicode9(detail::next_code_point(text, i)))
      out.append(text.substr(at, i - at));
  }
  return out;
}

/// HF Strip: removes White_Space from the left and/or right end.
inline std::string strip_white_space(std::string_view text, bool left = true, bool right = true) {
  detail::check_utf8(text, "text to strip");
  return std::string(detail::strip_white_space_view(text, left, right));
}

/// HF Replace with a String pattern (normaliser and decoder): leftmost non-overlapping matches of
/// the literal `pattern`. An empty text stays empty; an empty pattern matches at every char
/// boundary of a non-empty text ("ab" -> "XaXbX"), as the Oniguruma search HF uses does.
inline std::string replace_literal(std::string_view text, std::string_view pattern,
                                   std::string_view content) {
  detail::check_utf8(text, "text to replace in");
  if (text.empty()) return {};
  return detail::rust_replace(text, pattern, content);
}

/// HF ByteLevel normaliser: every UTF-8 byte becomes its byte-level alphabet character.
inline std::string byte_level_encode(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 2);
  for (char c : text)
    detail::append_utf8(detail::kByteLevelAlphabet.byte_to_char[static_cast<unsigned char>(c)],
                        out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The compression normaliser

/// The compression normaliser written as its specification, one HF step after the other.
inline std::string compression_normalize_reference(std::string_view text) {
  std::string s = normalize_unicode(text, NormalForm::kNFKC);
  s = normalize_unicode(s, NormalForm::kNFD);
  s = strip_accents(s);
  s = lowercase(s);
  std::string collapsed;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
      collapsed.push_back(' ');
      while (i + 1 < s.size() &&
             (s[i + 1] == ' ' || s[i + 1] == '\t' || s[i + 1] == '\r' || s[i + 1] == '\n'))
        ++i;
    } else {
      collapsed.push_back(s[i]);
    }
  }
  s = collapsed == " " ? std::string("\xEE\x80\x80") : collapsed;  // sentinel U+E000
  s = strip_white_space(s, true, true);
  return detail::rust_replace(s, "\xEE\x80\x80", " ");
}

/// Fast compression normaliser with reusable buffers (one per thread). Same results as
/// compression_normalize_reference.
class CompressionNormalizer {
 public:
  /// The normalised text; the view stays valid until the next call. Throws unless `text` is
  /// valid UTF-8.
  std::string_view normalize(std::string_view text) {
    detail::check_utf8(text, "text to normalize");
    return normalize_valid_utf8(text);
  }

  /// normalize() for text already known to be valid UTF-8 (not checked again).
  std::string_view normalize_valid_utf8(std::string_view text) {
    out_.clear();
    bool in_space_run = false;
    const auto emit = [&](char32_t cp) {
      if (detail::is_collapsible_space(cp)) {
        if (!in_space_run) out_.push_back(' ');
        in_space_run = true;
        return;
      }
      in_space_run = false;
      detail::append_lowercase(cp, out_);
    };
    if (detail::is_ascii(text)) {  // NFKC, NFD and StripAccents leave ASCII alone
      for (char c : text) emit(static_cast<unsigned char>(c));
    } else {
      code_points_.clear();
      detail::append_nfkd_unicode9(text, decompose_buffer_, code_points_);
      for (char32_t cp : code_points_)
        if (!detail::is_combining_mark_unicode9(cp)) emit(cp);
    }
    detail::finish_compression_whitespace(out_);
    return out_;
  }

 private:
  std::string out_;
  std::u32string code_points_;
  std::vector<utf8proc_int32_t> decompose_buffer_;
};

/// The compression normaliser (fast path) on one string.
inline std::string compression_normalize(std::string_view text) {
  CompressionNormalizer normalizer;
  return std::string(normalizer.normalize(text));
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json normalisers

class TextNormalizer;

/// The tokenizer.json normaliser types engram applies (HF names in comments).
namespace normalizers {
struct Sequence {  ///< "Sequence": each in order
  std::vector<TextNormalizer> normalizers;
};
struct Unicode {  ///< "NFC", "NFD", "NFKC", "NFKD"
  NormalForm form = NormalForm::kNFC;
};
struct Lowercase {};     ///< "Lowercase"
struct StripAccents {};  ///< "StripAccents"
struct Strip {           ///< "Strip": White_Space at the chosen ends
  bool left = true;
  bool right = true;
};
struct Prepend {  ///< "Prepend": prepended to a non-empty text
  std::string prepend;
};
struct Replace {  ///< "Replace" with {"String": pattern}
  std::string pattern;
  std::string content;
};
struct ByteLevel {};  ///< "ByteLevel": bytes to the byte-level alphabet
struct Nmt {};        ///< "Nmt": drops control characters, maps some spaces to ' '
/// A normaliser HF knows but engram does not implement ("Precompiled", "Bert", "Replace" with a
/// Regex pattern). Building it is fine; normalising with it throws naming `description`.
struct Unsupported {
  std::string description;
};
}  // namespace normalizers

/// A tokenizer.json normaliser. Immutable; normalize() is thread-safe.
class TextNormalizer {
 public:
  using Variant = std::variant<normalizers::Sequence, normalizers::Unicode, normalizers::Lowercase,
                               normalizers::StripAccents, normalizers::Strip, normalizers::Prepend,
                               normalizers::Replace, normalizers::ByteLevel, normalizers::Nmt,
                               normalizers::Unsupported>;

  TextNormalizer(Variant variant) : variant_(std::move(variant)) {}  // NOLINT: implicit on purpose

  const Variant& variant() const noexcept { return variant_; }

  /// Normalises valid UTF-8 `text`. Throws engram::Error for an Unsupported step.
  std::string normalize(std::string_view text) const {
    detail::check_utf8(text, "text to normalize");
    return std::visit([&](const auto& n) { return apply(n, text); }, variant_);
  }

 private:
  static std::string apply(const normalizers::Sequence& n, std::string_view text) {
    std::string s(text);
    for (const auto& step : n.normalizers) s = step.normalize(s);
    return s;
  }
  static std::string apply(const normalizers::Unicode& n, std::string_view text) {
    return normalize_unicode(text, n.form);
  }
  static std::string apply(const normalizers::Lowercase&, std::string_view text) {
    return lowercase(text);
  }
  static std::string apply(const normalizers::StripAccents&, std::string_view text) {
    return strip_accents(text);
  }
  static std::string apply(const normalizers::Strip& n, std::string_view text) {
    return strip_white_space(text, n.left, n.right);
  }
  static std::string apply(const normalizers::Prepend& n, std::string_view text) {
    return text.empty() ? std::string() : n.prepend + std::string(text);
  }
  static std::string apply(const normalizers::Replace& n, std::string_view text) {
    return replace_literal(text, n.pattern, n.content);
  }
  static std::string apply(const normalizers::ByteLevel&, std::string_view text) {
    return byte_level_encode(text);
  }
  static std::string apply(const normalizers::Nmt&, std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      const char32_t cp = detail::next_code_point(text, i);
      if ((cp >= 0x01 && cp <= 0x08) || cp == 0x0B || (cp >= 0x0E && cp <= 0x1F) || cp == 0x7F ||
          cp == 0x8F || cp == 0x9F)
        continue;
      const bool space = cp == 0x09 || cp == 0x0A || cp == 0x0C || cp == 0x0D || cp == 0x1680 ||
                         (cp >= 0x200B && cp <= 0x200F) || cp == 0x2028 || cp == 0x2029 ||
                         cp == 0x2581 || cp == 0xFEFF || cp == 0xFFFD;
      detail::append_utf8(space ? U' ' : cp, out);
    }
    return out;
  }
  static std::string apply(const normalizers::Unsupported& n, std::string_view) {
    detail::fail("normalizer ", n.description, " is not supported by engram");
  }

  Variant variant_;
};

}  // namespace engram
