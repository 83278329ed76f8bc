// tokenizer.json reading: hand-made edge cases against Hugging Face tokenizers 0.23.2 (vocab size,
// id_to_token and decode of every id, and the compression table from gen_lookup.js), gzip input,
// and malformed files with the messages they must produce.
#include "engram/tokenizer/tokenizer_json.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engram/tokenizer/vocab_compressor.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json load_json(const std::string& relative) {
  return json::parse(detail::read_maybe_gzip(test::data_path(relative)));
}

std::string temp_path(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("engram_tok_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class TokenizerJsonCase : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerJsonCase, MatchesHuggingFace) {
  const std::string name = GetParam();
  const auto tokenizer = read_tokenizer_json(test::data_path("tokenizer/cases/" + name + ".json"));
  const auto expected = load_json("tokenizer/cases/" + name + ".expected.json");
  ASSERT_EQ(tokenizer.vocab_size(), expected.at("vocab_size").get<int64_t>());
  for (int64_t id = 0; id < tokenizer.vocab_size(); ++id) {
    SCOPED_TRACE("id " + std::to_string(id));
    const json& token = expected.at("tokens")[id];
    const auto& actual = tokenizer.tokens[static_cast<size_t>(id)];
    EXPECT_EQ(actual.has_value(), !token.is_null());
    if (actual && !token.is_null()) {
      EXPECT_EQ(*actual, token.get<std::string>());
    }
    EXPECT_EQ(tokenizer.decode({&id, 1}), expected.at("decoded")[id].get<std::string>());
  }
  const CompressionTable table = compress_tokenizer(tokenizer);
  EXPECT_EQ(table.lookup(), expected.at("lookup").get<std::vector<int64_t>>());
  EXPECT_EQ(table.compressed_size(), expected.at("compressed_size").get<int64_t>());
  const auto texts = decode_each_id(tokenizer);
  std::vector<std::string> raw;
  for (const auto& t : tokenizer.tokens) raw.push_back(t.value_or(""));
  EXPECT_EQ(compress_vocab_reference(texts, raw), table);
}

INSTANTIATE_TEST_SUITE_P(HandMade, TokenizerJsonCase,
                         ::testing::Values("gaps_added", "normalized_added", "byte_fallback",
                                           "byte_level", "unigram_metaspace", "wordpiece",
                                           "ctc_bpe", "replace_strip"),
                         [](const auto& info) { return std::string(info.param); });

TEST(TokenizerJson, AddedTokensTakeHuggingFaceIdsNotJsonIds) {
  const auto t = read_tokenizer_json(test::data_path("tokenizer/cases/gaps_added.json"));
  // Model: 55 entries, ids 0..55 with gaps at 1 and 43, and "x" at 200. Added: "c", "zz", "b" (in
  // the vocab), "hello" (in the vocab), "" (ignored), "c" again with other flags, "new tok" twice,
  // "  " (in the vocab), "\uFFFD\uFFFD": 7 distinct contents, 3 of them model tokens.
  EXPECT_EQ(t.model_vocab_size, 55);
  EXPECT_EQ(t.vocab_size(), 55 + 7 - 3);
  ASSERT_EQ(t.added_tokens.size(), 10u);
  EXPECT_EQ(t.added_tokens[0].json_id, 100u);
  EXPECT_EQ(t.added_tokens[0].id, 55u);           // "c": the next id after the model vocab size
  EXPECT_EQ(t.added_tokens[2].id, 2u);            // "b": its model id, not the JSON id 5
  EXPECT_EQ(t.added_tokens[4].id, std::nullopt);  // empty content is ignored
  EXPECT_EQ(t.added_tokens[5].id, 55u);           // "c" again: the id of the first "c"
  EXPECT_EQ(t.added_tokens[7].id, 57u);           // "new tok" again, identical: same id
  EXPECT_EQ(t.tokens[55], "c");
  EXPECT_FALSE(t.tokens[43].has_value());  // a gap in the model ids
  EXPECT_FALSE(t.tokens[1].has_value());   // another gap
}

TEST(TokenizerJson, NormalizedAddedTokensDecodeAsTheirNormalizedText) {
  const auto t = read_tokenizer_json(test::data_path("tokenizer/cases/normalized_added.json"));
  // "Hello" (normalized) -> "▁hello"; the later un-normalized "Hello" keeps the cached text.
  EXPECT_EQ(t.added_tokens[1].id, 6u);
  EXPECT_EQ(t.tokens[6], "\u2581hello");
  EXPECT_EQ(t.added_tokens[6].id, 6u);
  EXPECT_EQ(t.tokens[10], "\u2581i\u0307\u03C3");  // "İΣ": NFKC, then Lowercase (İ -> i̇)
}

TEST(TokenizerJson, GzipAndPlainReadTheSame) {
  const std::string plain =
      detail::read_file_bytes(test::data_path("tokenizer/cases/byte_level.json"));
  const auto a = parse_tokenizer_json(plain, "byte_level.json");
  const auto b = read_tokenizer_json(test::data_path("tokenizer/llama2/tokenizer.json.gz"));
  EXPECT_EQ(a.vocab_size(), 34);
  EXPECT_EQ(b.vocab_size(), 32000);
  EXPECT_EQ(b.model_type, TokenizerModelType::kBPE);
  EXPECT_EQ(b.tokens[3], "<0x00>");
}

// ---------------------------------------------------------------------------------------------
// Malformed input

std::string error_of(const std::string& text) {
  try {
    parse_tokenizer_json(text, "bad.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string error_of_file(const std::string& path) {
  try {
    read_tokenizer_json(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A valid tokenizer.json with `patch` merged in (null values delete keys).
std::string with(const json& patch) {
  json t = {
      {"version", "1.0"},
      {"added_tokens", json::array()},
      {"normalizer", nullptr},
      {"decoder", nullptr},
      {"model", {{"type", "WordLevel"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"unk_token", "a"}}}};
  t.merge_patch(patch);
  return t.dump();
}

json added(json id, std::string content, bool normalized = false) {
  return {{"id", std::move(id)},  {"content", std::move(content)},
          {"single_word", false}, {"lstrip", false},
          {"rstrip", false},      {"normalized", normalized},
          {"special", false}};
}

struct ErrorCase {
  const char* name;
  std::string text;
  std::vector<std::string> message_parts;
};

TEST(TokenizerJsonErrors, NameTheFileTheFieldAndWhatWasExpected) {
  const std::string bpe_model_no_merges =
      with({{"model", {{"type", "BPE"}, {"unk_token", nullptr}}}});
  const ErrorCase cases[] = {
      {"empty file", "", {"bad.json: not valid JSON"}},
      {"not JSON", "hello", {"bad.json: not valid JSON", "syntax error"}},
      {"truncated",
       with(json::object()).substr(0, 60),
       {"bad.json: not valid JSON", "parse error at line 1, column 61"}},
      {"top level array",
       "[]",
       {"bad.json: (top level): expected a tokenizer.json object, found array of 0"}},
      {"missing model", with({{"model", nullptr}}), {"bad.json: model: missing"}},
      {"model not an object",
       with({{"model", 3}}),
       {"bad.json: model: expected an object, found number 3"}},
      {"unknown model type",
       with({{"model", {{"type", "Magic"}}}}),
       {"bad.json: model.type: unknown model type \"Magic\"",
        "BPE, WordPiece, WordLevel or Unigram"}},
      {"missing vocab",
       with({{"model", {{"vocab", nullptr}}}}),
       {"bad.json: model: missing field \"vocab\""}},
      {"vocab not an object",
       with({{"model", {{"vocab", "x"}}}}),
       {"bad.json: model.vocab: expected an object, found string \"x\""}},
      {"negative id",
       with({{"model", {{"vocab", {{"a", -1}}}}}}),
       {"bad.json: model.vocab[\"a\"]: expected an unsigned 32-bit integer, found number -1"}},
      {"float id",
       R"({"model": {"type": "WordLevel", "unk_token": "a", "vocab": {"a": 1.0}}})",
       {"model.vocab[\"a\"]: expected an unsigned 32-bit integer, found number 1.0"}},
      {"id above 2^32",
       with({{"model", {{"vocab", {{"a", 4294967296ull}}}}}}),
       {"model.vocab[\"a\"]: expected an unsigned 32-bit integer, found number 4294967296"}},
      {"string id",
       with({{"model", {{"vocab", {{"a", "0"}}}}}}),
       {"model.vocab[\"a\"]: expected an unsigned 32-bit integer, found string \"0\""}},
      {"object id",
       with({{"model", {{"vocab", {{"a", json::object()}}}}}}),
       {"model.vocab[\"a\"]: expected an unsigned 32-bit integer, found object"}},
      {"repeated id",
       with({{"model", {{"vocab", {{"a", 0}, {"b", 0}}}}}}),
       {"bad.json: model.vocab: id 0 is given to both \"a\" and \"b\" (ids must be unique)"}},
      {"WordLevel without unk_token",
       with({{"model", {{"unk_token", nullptr}}}}),
       {"bad.json: model: missing field \"unk_token\""}},
      {"BPE without merges", bpe_model_no_merges, {"bad.json: model: missing field \"merges\""}},
      {"BPE merge not in vocab",
       with({{"model",
              {{"type", "BPE"},
               {"unk_token", nullptr},
               {"merges", json::parse(R"([["a", "c"]])")}}}}),
       {"bad.json: model.merges (merge 0): merge token \"c\" is not in model.vocab"}},
      {"BPE merged token not in vocab",
       with({{"model",
              {{"type", "BPE"}, {"unk_token", nullptr}, {"merges", json::parse(R"(["a b"])")}}}}),
       {"model.merges (merge 0): merged token \"ab\" is not in model.vocab"}},
      {"BPE merge of three parts",
       with({{"model",
              {{"type", "BPE"},
               {"unk_token", nullptr},
               {"merges", json::parse(R"(["a b", "a b c"])")}}}}),
       {"bad.json: model.merges[1]: expected a string of two tokens separated by one space, found "
        "string \"a b c\""}},
      {"BPE mixed merge forms",
       with({{"model",
              {{"type", "BPE"},
               {"unk_token", nullptr},
               {"merges", json::parse(R"([["a","b"],"a b"])")}}}}),
       {"model.merges[1]: expected a pair of token strings"}},
      {"BPE dropout out of range",
       with({{"model",
              {{"type", "BPE"},
               {"unk_token", nullptr},
               {"merges", json::array()},
               {"dropout", 2}}}}),
       {"bad.json: model.dropout: expected null or a number in [0, 1], found number 2"}},
      {"Unigram entry not a pair",
       with({{"model", {{"type", "Unigram"}, {"vocab", json::parse(R"([["a", 0], ["b"]])")}}}}),
       {"bad.json: model.vocab[1]: expected a pair [piece string, score number], found array of "
        "1"}},
      {"Unigram score a string",
       with({{"model", {{"type", "Unigram"}, {"vocab", json::parse(R"([["a", "0"]])")}}}}),
       {"model.vocab[0]: expected a pair [piece string, score number], found an array whose "
        "element 1 is string \"0\""}},
      {"Unigram unk_id out of range",
       with({{"model",
              {{"type", "Unigram"}, {"unk_id", 5}, {"vocab", json::parse(R"([["a", 0]])")}}}}),
       {"bad.json: model.unk_id: 5 is not below the vocab size 1"}},
      {"version",
       with({{"version", "2.0"}}),
       {"bad.json: version: expected \"1.0\", found string \"2.0\""}},
      {"added_tokens not an array",
       with({{"added_tokens", {{"a", 1}}}}),
       {"bad.json: added_tokens: expected an array, found object"}},
      {"added token without special",
       with({{"added_tokens", {{{"id", 2}, {"content", "x"}}}}}),
       {"bad.json: added_tokens[0]: missing field \"single_word\""}},
      {"added token id negative",
       with({{"added_tokens", {added(-2, "x")}}}),
       {"bad.json: added_tokens[0].id: expected an unsigned 32-bit integer, found number -2"}},
      {"added token content not a string",
       with({{"added_tokens", {added(2, "x"), added(3, "y")}}})
           .replace(with({{"added_tokens", {added(2, "x"), added(3, "y")}}}).find("\"y\""), 3, "7"),
       {"bad.json: added_tokens[1].content: expected a string, found number 7"}},
      {"unknown decoder",
       with({{"decoder", {{"type", "Foo"}}}}),
       {"bad.json: decoder.type: unknown decoder type \"Foo\""}},
      {"decoder without type",
       with({{"decoder", {{"suffix", "x"}}}}),
       {"bad.json: decoder: missing field \"type\""}},
      {"nested decoder error",
       with({{"decoder",
              {{"type", "Sequence"}, {"decoders", {{{"type", "Fuse"}}, {{"type", "Nope"}}}}}}}),
       {"bad.json: decoder.decoders[1].type: unknown decoder type \"Nope\""}},
      {"Replace decoder with a Regex",
       with({{"decoder", {{"type", "Replace"}, {"pattern", {{"Regex", "a+"}}}, {"content", "b"}}}}),
       {"bad.json: decoder.pattern: Replace decoder with a Regex pattern \"a+\" is not supported"}},
      {"Strip content of two chars",
       with({{"decoder", {{"type", "Strip"}, {"content", "ab"}, {"start", 1}, {"stop", 0}}}}),
       {"bad.json: decoder.content: expected a string of exactly one character, found string "
        "\"ab\""}},
      {"ByteLevel decoder without add_prefix_space",
       with({{"decoder", {{"type", "ByteLevel"}}}}),
       {"bad.json: decoder: missing field \"add_prefix_space\""}},
      {"Metaspace add_prefix_space false with default scheme",
       with({{"decoder",
              {{"type", "Metaspace"}, {"replacement", "_"}, {"add_prefix_space", false}}}}),
       {"bad.json: decoder: add_prefix_space false does not match prepend_scheme"}},
      {"Metaspace unknown scheme",
       with({{"decoder",
              {{"type", "Metaspace"}, {"replacement", "_"}, {"prepend_scheme", "sometimes"}}}}),
       {"bad.json: decoder.prepend_scheme: expected \"first\", \"never\" or \"always\""}},
      {"unknown normalizer",
       with({{"normalizer", {{"type", "Foo"}}}}),
       {"bad.json: normalizer.type: unknown normalizer type \"Foo\""}},
      {"Strip normalizer with a string flag",
       with({{"normalizer", {{"type", "Strip"}, {"strip_left", "yes"}, {"strip_right", true}}}}),
       {"bad.json: normalizer.strip_left: expected a boolean, found string \"yes\""}},
      {"unsupported normalizer needed by a normalized added token",
       with({{"normalizer", {{"type", "Precompiled"}, {"precompiled_charsmap", "AAAA"}}},
             {"added_tokens", {added(0, "c", true)}}}),
       {"bad.json: added_tokens[0] (\"c\") is a normalized added token",
        "normalizer Precompiled (at normalizer) is not supported"}},
      {"Regex normalizer needed by a normalized added token",
       with({{"normalizer", json::parse(R"({"type": "Sequence", "normalizers": [
                 {"type": "Replace", "pattern": {"Regex": "x+"}, "content": "y"}]})")},
             {"added_tokens", {added(0, "c", true)}}}),
       {"added_tokens[0] (\"c\") is a normalized added token",
        "Replace with a Regex pattern \"x+\" (at normalizer.normalizers[0])"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string message = error_of(c.text);
    for (const auto& part : c.message_parts) EXPECT_THAT(message, HasSubstr(part));
  }
}

TEST(TokenizerJsonErrors, UnsupportedNormalizerIsFineWhenNoAddedTokenNeedsIt) {
  const auto t = parse_tokenizer_json(
      with({{"normalizer", {{"type", "Precompiled"}, {"precompiled_charsmap", "AAAA"}}},
            {"added_tokens", {added(0, "c", false)}}}),
      "ok.json");
  EXPECT_EQ(t.vocab_size(), 3);
  EXPECT_EQ(t.tokens[2], "c");
}

TEST(TokenizerJsonErrors, BrokenFiles) {
  EXPECT_THAT(error_of_file(temp_path("does_not_exist.json")),
              HasSubstr("does_not_exist.json: cannot open"));

  const std::string gz =
      detail::read_file_bytes(test::data_path("tokenizer/llama2/tokenizer.json.gz"));
  const std::string truncated = temp_path("truncated.json.gz");
  write_file(truncated, gz.substr(0, gz.size() / 2));
  EXPECT_THAT(error_of_file(truncated), HasSubstr("truncated.json.gz: truncated gzip data"));

  std::string corrupt_bytes = gz;
  for (size_t i = 100; i < 200; ++i) corrupt_bytes[i] = static_cast<char>(corrupt_bytes[i] ^ 0x5A);
  const std::string corrupt = temp_path("corrupt.json.gz");
  write_file(corrupt, corrupt_bytes);
  EXPECT_THAT(error_of_file(corrupt), HasSubstr("corrupt.json.gz: corrupt gzip data"));

  const std::string trailing = temp_path("trailing.json.gz");
  write_file(trailing, gz + "junk");
  EXPECT_THAT(error_of_file(trailing),
              HasSubstr("trailing.json.gz: 4 bytes of trailing data after the gzip stream"));

  const std::string plain_truncated = temp_path("plain_truncated.json");
  write_file(plain_truncated, with(json::object()).substr(0, 30));
  EXPECT_THAT(error_of_file(plain_truncated), HasSubstr("plain_truncated.json: not valid JSON"));
}

TEST(TokenizerJsonErrors, EveryPrefixOfAValidFileFailsCleanly) {
  // Truncation anywhere gives an engram::Error, never a crash or a silent success.
  const std::string text =
      detail::read_file_bytes(test::data_path("tokenizer/cases/normalized_added.json"));
  for (size_t n = 0; n + 1 < text.size(); n += 7) {
    SCOPED_TRACE("prefix of " + std::to_string(n) + " bytes");
    EXPECT_THROW(parse_tokenizer_json(text.substr(0, n), "prefix.json"), Error);
  }
}

TEST(TokenizerJson, DuplicateKeysKeepTheLastValueAsSerdeDoes) {
  const auto t = parse_tokenizer_json(
      R"({"model": {"type": "WordLevel", "unk_token": "x", "vocab": {"a": 0}},
          "model": {"type": "WordLevel", "unk_token": "x", "vocab": {"z": 0, "y": 5, "y": 1}}})",
      "dup.json");
  EXPECT_EQ(t.vocab_size(), 2);
  EXPECT_EQ(t.tokens[0], "z");
  EXPECT_EQ(t.tokens[1], "y");
}

TEST(TokenizerJson, LegacyModelWithoutTypeIsInferred) {
  const auto unigram =
      parse_tokenizer_json(R"({"model": {"vocab": [["a", 0], ["b", -1.5]]}})", "u.json");
  EXPECT_EQ(unigram.model_type, TokenizerModelType::kUnigram);
  EXPECT_EQ(unigram.tokens[1], "b");
  const auto bpe =
      parse_tokenizer_json(R"({"model": {"vocab": {"a": 0, "b": 1}, "merges": []}})", "b.json");
  EXPECT_EQ(bpe.model_type, TokenizerModelType::kBPE);
  EXPECT_EQ(bpe.vocab_size(), 2);
}

}  // namespace
}  // namespace engram
