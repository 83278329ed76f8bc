// Normalisers against Hugging Face tokenizers 0.23.2: every Unicode scalar value through every
// step, random strings through every tokenizer.json normaliser, and the rules spelled out.
#include "engram/tokenizer/normalizer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engram/tokenizer/tokenizer_json.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;

nlohmann::json load_json(const std::string& relative) {
  return nlohmann::json::parse(detail::read_maybe_gzip(test::data_path(relative)));
}

std::string utf8(char32_t cp) {
  std::string s;
  detail::append_utf8(cp, s);
  return s;
}

std::string hex(char32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "U+%04X", static_cast<unsigned>(cp));
  return buf;
}

// The normaliser called `name` in the golden files.
std::string run_normalizer(const std::string& name, const std::string& text) {
  if (name == "compression") return compression_normalize(text);
  if (name == "NFC") return normalize_unicode(text, NormalForm::kNFC);
  if (name == "NFD") return normalize_unicode(text, NormalForm::kNFD);
  if (name == "NFKC") return normalize_unicode(text, NormalForm::kNFKC);
  if (name == "NFKD") return normalize_unicode(text, NormalForm::kNFKD);
  if (name == "Lowercase") return lowercase(text);
  if (name == "StripAccents") return strip_accents(text);
  if (name == "Strip") return strip_white_space(text, true, true);
  if (name == "StripLeft") return TextNormalizer(normalizers::Strip{true, false}).normalize(text);
  if (name == "Nmt") return TextNormalizer(normalizers::Nmt{}).normalize(text);
  if (name == "ByteLevel") return TextNormalizer(normalizers::ByteLevel{}).normalize(text);
  if (name == "Replace") {
    return TextNormalizer(normalizers::Replace{"a\u0301", "<\u00e1>"}).normalize(text);
  }
  if (name == "ReplaceEmpty") return TextNormalizer(normalizers::Replace{"", "|"}).normalize(text);
  if (name == "Prepend") return TextNormalizer(normalizers::Prepend{"\u2581"}).normalize(text);
  ADD_FAILURE() << "unknown normaliser in golden file: " << name;
  return {};
}

TEST(UnicodeNormalizerGolden, EveryCodePointThroughEveryStepMatchesHuggingFace) {
  const auto golden = load_json("tokenizer/unicode_codepoints.json.gz");
  const auto& steps = golden.at("steps");
  ASSERT_EQ(steps.size(), 8u);
  for (auto step = steps.begin(); step != steps.end(); ++step) {
    SCOPED_TRACE("normaliser " + step.key());
    // HF's result for each code point it changes, indexed by code point.
    std::vector<std::string> results;
    std::vector<int32_t> changed(0x110000, -1);
    for (const auto& entry : step.value()) {
      changed.at(entry[0].get<char32_t>()) = static_cast<int32_t>(results.size());
      results.push_back(entry[1].get<std::string>());
    }
    ASSERT_FALSE(results.empty());
    int failures = 0;
    for (char32_t cp = 0; cp <= 0x10FFFF && failures < 10; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      const std::string text = utf8(cp);
      const std::string& expected = changed[cp] < 0 ? text : results[changed[cp]];
      const std::string actual = run_normalizer(step.key(), text);
      if (actual != expected) {
        ADD_FAILURE() << hex(cp) << ": expected " << nlohmann::json(expected).dump() << ", got "
                      << nlohmann::json(actual).dump();
        ++failures;
      }
      if (step.key() == "compression" && compression_normalize_reference(text) != expected) {
        ADD_FAILURE() << hex(cp) << ": the reference compression normaliser differs";
        ++failures;
      }
    }
  }
}

TEST(UnicodeNormalizerGolden, RandomStringsThroughEveryNormalizerMatchHuggingFace) {
  const auto golden = load_json("tokenizer/unicode_strings.json.gz");
  const auto strings = golden.at("strings").get<std::vector<std::string>>();
  ASSERT_GT(strings.size(), 1000u);
  const auto& results = golden.at("results");
  ASSERT_EQ(results.size(), 14u);
  for (auto step = results.begin(); step != results.end(); ++step) {
    ASSERT_EQ(step.value().size(), strings.size());
    for (size_t i = 0; i < strings.size(); ++i) {
      SCOPED_TRACE("normaliser " + step.key() + ", string #" + std::to_string(i) + " " +
                   nlohmann::json(strings[i]).dump());
      EXPECT_EQ(run_normalizer(step.key(), strings[i]), step.value()[i].get<std::string>());
      if (step.key() == "compression") {
        EXPECT_EQ(compression_normalize_reference(strings[i]), step.value()[i].get<std::string>());
      }
    }
  }
}

// Random strings over a mixed repertoire (fixed seed): the fast path equals the reference.
TEST(CompressionNormalizer, FastPathEqualsReferenceOnRandomStrings) {
  std::mt19937 rng(12345);
  const std::vector<char32_t> pool = {
      'a',     'Z',    '0',    ' ',     ' ',    '\t',    '\n',    '\r',    0x0B,    0x85,
      0xA0,    0x3000, 0xE000, 0x00,    0x301,  0x308,   0x345,   0x130,   0x3A3,   0xDF,
      0x1E9E,  0xFB01, 0x2460, 0xAC00,  0x1100, 0x1161,  0x11935, 0x11930, 0x1E944, 0xA7CB,
      0x10D50, 0x32FF, 0x1CF2, 0x111C9, 0xFF28, 0x1F600, 0xFFFD,  0x2581};
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  std::uniform_int_distribution<uint32_t> any(0, 0x10FFFF);
  std::uniform_int_distribution<int> length(0, 10);
  CompressionNormalizer fast;
  for (int n = 0; n < 3000; ++n) {
    std::string text;
    for (int k = length(rng); k > 0; --k) {
      char32_t cp = (rng() % 4 == 0) ? any(rng) : pool[pick(rng)];
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
      detail::append_utf8(cp, text);
    }
    SCOPED_TRACE("string " + nlohmann::json(text).dump());
    ASSERT_EQ(fast.normalize(text), compression_normalize_reference(text));
  }
}

struct RuleCase {
  const char* name;
  std::string input;
  std::string expected;
};

// The rules of the compression normaliser, each with HF's answer.
TEST(CompressionNormalizer, Rules) {
  const RuleCase cases[] = {
      {"ascii lowercased", "Hello", "hello"},
      {"runs of [ \\t\\r\\n] become one space, then strip", " a \t\r\n b ", "a b"},
      {"a lone space survives (sentinel)", " ", " "},
      {"a lone tab becomes a space", "\t", " "},
      {"two spaces collapse to one and survive", "  ", " "},
      {"space + VT: VT is not collapsed, both are stripped", " \x0B", ""},
      {"U+0085 is White_Space", "\xC2\x85 ", ""},
      {"NBSP becomes a space by NFKC and survives", "\xC2\xA0", " "},
      {"U+200B is not White_Space", "\xE2\x80\x8B", "\xE2\x80\x8B"},
      {"U+E000 in the text becomes a space", "\xEE\x80\x80", " "},
      {"U+E000 at the end becomes a space after the strip", "a\xEE\x80\x80", "a "},
      {"NUL is kept", std::string(1, '\0'), std::string(1, '\0')},
      {"NUL inside spaces", std::string(" \0 ", 3), std::string(1, '\0')},
      {"U+0130 decomposes and loses its dot", "\xC4\xB0", "i"},
      {"final sigma is not contextual", "\xCE\xA3\xCE\x91\xCE\xA3", "\xCF\x83\xCE\xB1\xCF\x83"},
      {"sharp s stays",
       "Stra\xC3\x9F"
       "e",
       "stra\xC3\x9F"
       "e"},
      {"capital sharp s lowercases to sharp s", "\xE1\xBA\x9E", "\xC3\x9F"},
      {"accents are stripped", "e\xCC\x81", "e"},
      {"ligature fi", "\xEF\xAC\x81", "fi"},
      {"a combining mark alone normalises to empty", "\xCD\x85", ""},
      {"fullwidth", "\xEF\xBC\xA8\xEF\xBD\x85", "he"},
      {"U+11935 U+11930 do not compose (Unicode 9.0)", "\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0",
       "\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0"},
      {"U+1CF2 was a mark in 9.0", "\xE1\xB3\xB2", ""},
      {"U+111C9 was not a mark in 9.0", "\xF0\x91\x87\x89", "\xF0\x91\x87\x89"},
      {"U+32FF has no compatibility mapping in 9.0", "\xE3\x8B\xBF", "\xE3\x8B\xBF"},
      {"U+A7CB lowercases (Unicode 16)", "\xEA\x9F\x8B", "\xC9\xA4"},
  };
  CompressionNormalizer fast;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(fast.normalize(c.input), c.expected);
    EXPECT_EQ(compression_normalize_reference(c.input), c.expected);
  }
}

TEST(UnicodeNormalizer, LowercaseIsRustCharToLowercase) {
  EXPECT_EQ(lowercase("\xC4\xB0"), "i\xCC\x87");  // U+0130 -> i + U+0307
  EXPECT_EQ(lowercase("\xCE\xA3\xCE\x91\xCE\xA3"), "\xCF\x83\xCE\xB1\xCF\x83");  // no final sigma
  EXPECT_EQ(lowercase("\xC7\x85"), "\xC7\x86");                                  // titlecase DŽ
  EXPECT_EQ(lowercase("\xF0\x90\xB5\x90"), "\xF0\x90\xB5\xB0");  // U+10D50 (Unicode 16)
  EXPECT_EQ(lowercase("\xE2\x84\xAA"), "k");                     // KELVIN SIGN
}

TEST(UnicodeNormalizer, UnicodeFormsUseUnicode9) {
  EXPECT_EQ(normalize_unicode("e\xCC\x81", NormalForm::kNFC), "\xC3\xA9");
  EXPECT_EQ(normalize_unicode("\xC3\xA9", NormalForm::kNFD), "e\xCC\x81");
  EXPECT_EQ(normalize_unicode("\xEA\xB0\x80", NormalForm::kNFD), "\xE1\x84\x80\xE1\x85\xA1");
  // U+11938 decomposes canonically since Unicode 13; HF keeps it.
  EXPECT_EQ(normalize_unicode("\xF0\x91\xA4\xB8", NormalForm::kNFD), "\xF0\x91\xA4\xB8");
  // A Unicode 9 run on each side of an unassigned-in-9.0 code point is still normalised.
  EXPECT_EQ(normalize_unicode("e\xCC\x81\xEA\x9F\x8B"
                              "e\xCC\x81",
                              NormalForm::kNFC),
            "\xC3\xA9\xEA\x9F\x8B\xC3\xA9");
  // NUL inside: explicit lengths, never NUL-terminated.
  EXPECT_EQ(normalize_unicode(std::string("\xEF\xAC\x81\0\xEF\xAC\x81", 7), NormalForm::kNFKC),
            std::string("fi\0fi", 5));
}

TEST(UnicodeNormalizer, StripAndReplace) {
  EXPECT_EQ(strip_white_space("\xE3\x80\x80 a \xC2\xA0", true, false), "a \xC2\xA0");
  EXPECT_EQ(strip_white_space("\xE3\x80\x80 a \xC2\xA0", false, true), "\xE3\x80\x80 a");
  EXPECT_EQ(strip_white_space(" \t\n", true, true), "");
  EXPECT_EQ(replace_literal("ab", "", "X"), "XaXbX");
  EXPECT_EQ(replace_literal("", "", "X"), "");
  EXPECT_EQ(replace_literal("aaa", "aa", "b"), "ba");
  EXPECT_EQ(detail::rust_replace("", "", "X"), "X");
}

TEST(UnicodeNormalizer, ByteLevelAlphabetIsTheGpt2Bijection) {
  const auto& alphabet = detail::kByteLevelAlphabet;
  EXPECT_EQ(alphabet.byte_to_char[' '], U'\u0120');
  EXPECT_EQ(alphabet.byte_to_char['\n'], U'\u010A');
  EXPECT_EQ(alphabet.byte_to_char[0], U'\u0100');
  EXPECT_EQ(alphabet.byte_to_char[0xAD], U'\u0143');
  EXPECT_EQ(alphabet.byte_to_char['a'], U'a');
  for (int b = 0; b < 256; ++b) {
    SCOPED_TRACE("byte " + std::to_string(b));
    EXPECT_EQ(alphabet.char_to_byte[alphabet.byte_to_char[b]], b);
  }
  EXPECT_EQ(byte_level_encode(" \xC3\xA9"), "\xC4\xA0\xC3\x83\xC2\xA9");  // "Ġé" -> "ĠÃ©"
}

TEST(UnicodeNormalizer, RejectsInvalidUtf8) {
  const std::string cases[] = {"\xC3", "\xED\xA0\x80", "\xC0\x80", "a\xFF"};
  for (size_t i = 0; i < std::size(cases); ++i) {
    SCOPED_TRACE("invalid UTF-8 case " + std::to_string(i));
    const std::string& bad = cases[i];
    try {
      compression_normalize(bad);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("is not valid UTF-8"));
    }
    EXPECT_THROW(normalize_unicode(bad, NormalForm::kNFC), Error);
    EXPECT_THROW(lowercase(bad), Error);
  }
}

TEST(TextNormalizer, SequenceAppliesInOrderAndUnsupportedThrowsOnUse) {
  const TextNormalizer seq(
      normalizers::Sequence{{TextNormalizer(normalizers::Prepend{"\u2581"}),
                             TextNormalizer(normalizers::Replace{" ", "\u2581"}),
                             TextNormalizer(normalizers::Lowercase{})}});
  EXPECT_EQ(seq.normalize("A B"), "\u2581a\u2581b");
  EXPECT_EQ(seq.normalize(""), "");  // Prepend leaves an empty text alone
  const TextNormalizer unsupported(normalizers::Unsupported{"Precompiled (at normalizer)"});
  try {
    unsupported.normalize("x");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("normalizer Precompiled (at normalizer) is not supported"));
  }
}

}  // namespace
}  // namespace engram
