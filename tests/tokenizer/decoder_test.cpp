// Decoders against Hugging Face tokenizers 0.23.2 (multi-token golden decodes), plus the byte
// rules (UTF-8 lossy replacement, "<0xNN>" parsing) and the cases where HF panics.
#include "engram/tokenizer/decoder.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engram/tokenizer/tokenizer_json.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;

// The decoder of a minimal tokenizer.json with decoder `spec` (through the public parser).
std::optional<TokenDecoder> decoder_from_json(const nlohmann::json& spec) {
  const nlohmann::json tok = {
      {"model", {{"type", "WordLevel"}, {"vocab", nlohmann::json::object()}, {"unk_token", "x"}}},
      {"decoder", spec}};
  return parse_tokenizer_json(tok.dump(), "decoder.json").decoder;
}

TEST(TokenDecoderGolden, MultiTokenDecodesMatchHuggingFace) {
  const auto doc = nlohmann::json::parse(
      detail::read_file_bytes(test::data_path("tokenizer/decoder_cases.json")));
  const auto& cases = doc.at("cases");
  ASSERT_GE(cases.size(), 20u);
  for (const auto& c : cases) {
    SCOPED_TRACE("case " + c.at("name").get<std::string>());
    const auto decoder = decoder_from_json(c.at("decoder"));
    EXPECT_EQ(decoder.has_value(), !c.at("decoder").is_null());
    EXPECT_EQ(decode_tokens(decoder, c.at("tokens").get<std::vector<std::string>>()),
              c.at("expected").get<std::string>());
  }
}

struct LossyCase {
  std::string bytes;
  std::string expected;
};

// Rust String::from_utf8_lossy: one U+FFFD per maximal invalid subpart.
TEST(TokenDecoder, Utf8LossyReplacesMaximalSubparts) {
  const std::string r = "\xEF\xBF\xBD";
  const LossyCase cases[] = {
      {"", ""},
      {"abc", "abc"},
      {"\xE2\x82\xAC", "\xE2\x82\xAC"},
      {"\xE2\x82", r},              // truncated 3-byte sequence
      {"\xE2\x82x", r + "x"},       // cut short by ASCII
      {"\xE0\x80", r + r},          // E0 needs A0..BF
      {"\xED\xA0\x80", r + r + r},  // surrogate
      {"\xC0\x80", r + r},          // overlong
      {"\xF0\x9F\x98", r},          // truncated 4-byte sequence
      {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"},
      {"\xF4\x90\x80\x80", r + r + r + r},  // above U+10FFFF
      {"\xF5", r},
      {"\xFF\xFE", r + r},
      {"a\xC3", "a" + r},
      {std::string("\0", 1), std::string("\0", 1)},
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    SCOPED_TRACE("lossy case " + std::to_string(i));
    EXPECT_EQ(detail::utf8_lossy(cases[i].bytes), cases[i].expected);
  }
}

TEST(TokenDecoder, HexByteParsingFollowsRustFromStrRadix) {
  EXPECT_EQ(detail::parse_hex_byte("41"), uint8_t{0x41});
  EXPECT_EQ(detail::parse_hex_byte("ff"), uint8_t{0xFF});
  EXPECT_EQ(detail::parse_hex_byte("+a"), uint8_t{0x0A});  // Rust accepts a leading '+'
  EXPECT_EQ(detail::parse_hex_byte("-1"), std::nullopt);
  EXPECT_EQ(detail::parse_hex_byte("++"), std::nullopt);
  EXPECT_EQ(detail::parse_hex_byte("+"), std::nullopt);
  EXPECT_EQ(detail::parse_hex_byte("4G"), std::nullopt);
  EXPECT_EQ(detail::parse_hex_byte("\xC3\xA9"), std::nullopt);
}

TEST(TokenDecoder, ByteFallbackKeepsTheChainShape) {
  const TokenDecoder d(decoders::ByteFallback{});
  EXPECT_EQ(d.decode_chain({"<0xE2>", "<0x82>", "x", "<0x41>"}),
            (std::vector<std::string>{"\xEF\xBF\xBD", "\xEF\xBF\xBD", "x", "A"}));
  EXPECT_EQ(d.decode_chain({"<0xE2>", "<0x82>", "<0xAC>"}),
            (std::vector<std::string>{"\xE2\x82\xAC"}));
  EXPECT_TRUE(d.decode_chain({}).empty());
}

TEST(TokenDecoder, EmptyTokenListsDecodeToEmpty) {
  for (const char* spec :
       {R"({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true})",
        R"({"type": "BPEDecoder", "suffix": "</w>"})", R"({"type": "Fuse"})",
        R"({"type": "Strip", "content": " ", "start": 3, "stop": 3})",
        R"({"type": "CTC", "pad_token": "<pad>", "word_delimiter_token": "|", "cleanup": true})"}) {
    SCOPED_TRACE(spec);
    EXPECT_EQ(decode_tokens(decoder_from_json(nlohmann::json::parse(spec)), {}), "");
  }
  EXPECT_EQ(decode_tokens(std::nullopt, {}), "");
}

// Where HF panics (and aborts the process), engram throws.
TEST(TokenDecoder, StripPastTheTokenThrowsWhereHuggingFacePanics) {
  const TokenDecoder past_start(decoders::Strip{U' ', 0, 1});
  try {
    past_start.decode({""});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("runs past the start of token ''"));
    EXPECT_THAT(e.what(), HasSubstr("Hugging Face panics"));
  }
  const TokenDecoder crossing(decoders::Strip{U' ', 2, 2});
  try {
    crossing.decode({"  "});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cuts token '  ' from both ends past each other"));
  }
  EXPECT_EQ(TokenDecoder(decoders::Strip{U' ', 2, 2}).decode({" a "}), "a");
}

}  // namespace
}  // namespace engram
