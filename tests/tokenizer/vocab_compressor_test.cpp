// Vocabulary compression against the tables Hugging Face tokenizers 0.23.2 produces
// (gen_lookup.js), every entry: DeepSeek-V3, Llama 2 (SentencePiece-style, byte fallback), Claude,
// Qwen 3, Llama 3, GPT-4o, gpt-oss (byte-level) and Gemma 3 (SentencePiece-style, 262,145 ids);
// fast path == reference; safetensors round trip and validation; the user-strings entry point and
// its U+FFFD rule.
#include "engram/tokenizer/vocab_compressor.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "engram/io/safetensors.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;

std::string temp_path(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("engram_vc_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

/// HF's table from `relative`: safetensors, JSON {"lookup": [...]}, or JSON {"first_seen": [...]}
/// where -1 stands for the next new id (HF numbers new ids in order of first occurrence, so this
/// is the same table, about half the size gzipped).
std::vector<int64_t> expected_lookup(const std::string& relative) {
  const std::string path = test::data_path(relative);
  if (relative.ends_with(".safetensors")) return CompressionTable::load(path).lookup();
  const auto json = nlohmann::json::parse(detail::read_maybe_gzip(path));
  if (json.contains("lookup")) return json.at("lookup").get<std::vector<int64_t>>();
  std::vector<int64_t> lookup = json.at("first_seen").get<std::vector<int64_t>>();
  int64_t next = 0;
  for (int64_t& id : lookup) {
    if (id == -1) id = next++;
    EXPECT_LT(id, next) << relative << ": first_seen names an id before it is new";
  }
  EXPECT_EQ(next, json.at("num_new").get<int64_t>()) << relative;
  return lookup;
}

struct VocabCase {
  const char* name;
  const char* tokenizer;
  const char* expected;
  int64_t vocab_size;
  int64_t compressed_size;
  /// Set where `tokenizer` is stored with an empty model.vocab because it is this tokenizer's,
  /// less the ids its own added_tokens take (gpt-oss: GPT-4o's o200k vocab, 199,998 of 200,000).
  const char* vocab_from = nullptr;
};

/// The case's tokenizer.json: `tokenizer`, or, with `vocab_from`, that file with model.vocab
/// filled in (written once per process to a temporary file).
std::string tokenizer_path(const VocabCase& c) {
  if (c.vocab_from == nullptr) return test::data_path(c.tokenizer);
  const std::string out = temp_path(std::string(c.name) + ".tokenizer.json");
  if (std::filesystem::exists(out)) return out;
  auto json = nlohmann::json::parse(detail::read_maybe_gzip(test::data_path(c.tokenizer)));
  const auto from = nlohmann::json::parse(detail::read_maybe_gzip(test::data_path(c.vocab_from)));
  EXPECT_TRUE(json.at("model").at("vocab").empty()) << c.tokenizer;
  std::set<int64_t> added;
  for (const auto& token : json.at("added_tokens")) added.insert(token.at("id").get<int64_t>());
  auto& vocab = json["model"]["vocab"];
  for (const auto& [token, id] : from.at("model").at("vocab").items())
    if (!added.count(id.get<int64_t>())) vocab[token] = id;
  std::ofstream(out + ".tmp") << json.dump();
  std::filesystem::rename(out + ".tmp", out);
  return out;
}

void PrintTo(const VocabCase& c, std::ostream* os) { *os << c.name; }

class HuggingFaceTable : public ::testing::TestWithParam<VocabCase> {};

TEST_P(HuggingFaceTable, EveryEntryEqualsHuggingFace) {
  const VocabCase& c = GetParam();
  const CompressionTable table = compress_tokenizer_json(tokenizer_path(c));
  const std::vector<int64_t> expected = expected_lookup(c.expected);
  ASSERT_EQ(table.vocab_size(), c.vocab_size);
  ASSERT_EQ(expected.size(), static_cast<size_t>(c.vocab_size));
  EXPECT_EQ(table.compressed_size(), c.compressed_size);
  int mismatches = 0;
  for (size_t id = 0; id < expected.size() && mismatches < 10; ++id) {
    if (table.lookup()[id] != expected[id]) {
      ADD_FAILURE() << c.name << ": id " << id << " -> " << table.lookup()[id] << ", HF has "
                    << expected[id];
      ++mismatches;
    }
  }
}

TEST_P(HuggingFaceTable, FastPathEqualsReference) {
  const VocabCase& c = GetParam();
  const TokenizerJson tokenizer = read_tokenizer_json(tokenizer_path(c));
  const std::vector<std::string> texts = decode_each_id(tokenizer);
  std::vector<std::string> raw;
  for (const auto& token : tokenizer.tokens) raw.push_back(token.value_or(""));
  const CompressionTable fast = compress_vocab(texts, raw);
  EXPECT_EQ(fast, compress_vocab_reference(texts, raw));
  EXPECT_EQ(fast, compress_tokenizer(tokenizer));
}

INSTANTIATE_TEST_SUITE_P(
    Vocabularies, HuggingFaceTable,
    ::testing::Values(VocabCase{"deepseek_v3", "tokenizer/deepseek_v3/tokenizer.json.gz",
                                "tokenizer/deepseek_v3/lookup.safetensors", 128815, 98627},
                      VocabCase{"llama2", "tokenizer/llama2/tokenizer.json.gz",
                                "tokenizer/llama2/lookup.json.gz", 32000, 21064},
                      VocabCase{"claude", "tokenizer/claude/tokenizer.json.gz",
                                "tokenizer/claude/lookup.json.gz", 65000, 39035},
                      VocabCase{"qwen3", "tokenizer/qwen3/tokenizer.json.gz",
                                "tokenizer/qwen3/lookup.json.gz", 151669, 107457},
                      VocabCase{"llama3", "tokenizer/llama3/tokenizer.json.gz",
                                "tokenizer/llama3/lookup.json.gz", 128256, 82693},
                      VocabCase{"gpt4o", "tokenizer/gpt4o/tokenizer.json.gz",
                                "tokenizer/gpt4o/lookup.json.gz", 200000, 132109},
                      VocabCase{"gpt_oss", "tokenizer/gpt_oss/tokenizer.json.gz",
                                "tokenizer/gpt_oss/lookup.json.gz", 200019, 132128,
                                "tokenizer/gpt4o/tokenizer.json.gz"},
                      VocabCase{"gemma3", "tokenizer/gemma3/tokenizer.json.gz",
                                "tokenizer/gemma3/lookup.json.gz", 262145, 169824}),
    [](const auto& info) { return std::string(info.param.name); });

/// Plugged policies for VocabCompressorT: one returning a view into its buffer, one a string.
struct IdentityNormalizer {
  std::string_view normalize(std::string_view text) const { return text; }
};
struct AsciiLowercaseNormalizer {
  std::string normalize(std::string_view text) const {
    std::string out(text);
    for (char& c : out)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
  }
};
struct NotANormalizer {
  int normalize(int) const { return 0; }
};
static_assert(VocabNormalizer<DeepSeekNormalizer>);
static_assert(VocabNormalizer<IdentityNormalizer>);
static_assert(VocabNormalizer<AsciiLowercaseNormalizer>);
static_assert(!VocabNormalizer<NotANormalizer>);
static_assert(std::is_same_v<VocabCompressor, VocabCompressorT<DeepSeekNormalizer>>);

/// The pipeline spelled out on Hugging Face's own decode([id]) and idToToken(id) of every id (from
/// the case's expected.json, made by make_expected.js): key = raw token if the text holds U+FFFD,
/// else normalize(text), else the text when that is empty; ids numbered by first appearance.
template <class Normalizer>
std::vector<int64_t> expected_first_seen(const nlohmann::json& hf, Normalizer normalizer) {
  std::map<std::string, int64_t> ids;
  std::vector<int64_t> lookup;
  const auto& decoded = hf.at("decoded");
  const auto& tokens = hf.at("tokens");
  for (size_t id = 0; id < decoded.size(); ++id) {
    const std::string text = decoded[id].get<std::string>();
    std::string key;
    if (text.find("\xEF\xBF\xBD") != std::string::npos) {
      key = tokens[id].get<std::string>();
    } else {
      key = std::string(normalizer.normalize(text));
      if (key.empty()) key = text;
    }
    lookup.push_back(ids.emplace(key, static_cast<int64_t>(ids.size())).first->second);
  }
  return lookup;
}

class PluggedNormalizer : public ::testing::TestWithParam<const char*> {};

TEST_P(PluggedNormalizer, PipelineIsDecodeNormaliseFirstSeen) {
  const std::string name = GetParam();
  SCOPED_TRACE(name);
  const TokenizerJson tokenizer =
      read_tokenizer_json(test::data_path("tokenizer/cases/" + name + ".json"));
  const auto hf = nlohmann::json::parse(
      detail::read_file_bytes(test::data_path("tokenizer/cases/" + name + ".expected.json")));
  // The default policy is DeepSeek's rule: HF's table through gen_lookup.js.
  EXPECT_EQ(compress_tokenizer(tokenizer).lookup(), hf.at("lookup").get<std::vector<int64_t>>());
  const auto identity = compress_tokenizer(tokenizer, IdentityNormalizer{});
  EXPECT_EQ(identity.lookup(), expected_first_seen(hf, IdentityNormalizer{}));
  const auto lower = compress_tokenizer(tokenizer, AsciiLowercaseNormalizer{});
  EXPECT_EQ(lower.lookup(), expected_first_seen(hf, AsciiLowercaseNormalizer{}));
  // A coarser rule merges at least as much: identity keeps the most ids apart.
  EXPECT_GE(identity.compressed_size(), lower.compressed_size());
  EXPECT_GE(lower.compressed_size(), compress_tokenizer(tokenizer).compressed_size());
}

INSTANTIATE_TEST_SUITE_P(Cases, PluggedNormalizer,
                         ::testing::Values("gaps_added", "normalized_added", "byte_fallback",
                                           "byte_level", "unigram_metaspace", "wordpiece",
                                           "ctc_bpe", "replace_strip"));

TEST(VocabCompressor, PluggedNormalizerOnUserStrings) {
  const std::vector<std::string> texts = {"Hello", "hello", "HELLO", "", " ", "x\xEF\xBF\xBD"};
  const std::vector<std::string> raw = {"a", "b", "c", "d", "e", "hello"};
  // Identity: every distinct text its own id; the U+FFFD text takes its raw token "hello".
  EXPECT_EQ(compress_vocab(texts, raw, IdentityNormalizer{}).lookup(),
            (std::vector<int64_t>{0, 1, 2, 3, 4, 1}));
  EXPECT_EQ(compress_vocab(texts, raw, AsciiLowercaseNormalizer{}).lookup(),
            (std::vector<int64_t>{0, 0, 0, 1, 2, 0}));
  VocabCompressorT<AsciiLowercaseNormalizer> compressor;
  EXPECT_EQ(compressor.add("ABC"), 0);
  EXPECT_EQ(compressor.add("abc"), 0);
  EXPECT_EQ(compressor.add("abd"), 1);
  EXPECT_EQ(compressor.compressed_size(), 2);
}

TEST(VocabCompressor, DeepSeekSpotChecks) {
  const TokenizerJson t =
      read_tokenizer_json(test::data_path("tokenizer/deepseek_v3/tokenizer.json.gz"));
  const CompressionTable table = compress_tokenizer(t);
  // Find "Hello" and " hello": the same key "hello".
  int64_t hello = -1, space_hello = -1;
  for (int64_t id = 0; id < t.vocab_size(); ++id) {
    if (t.tokens[id] == "Hello") hello = id;
    if (t.tokens[id] == "\u0120hello") space_hello = id;
  }
  ASSERT_GE(hello, 0);
  ASSERT_GE(space_hello, 0);
  EXPECT_EQ(table[hello], table[space_hello]);
  EXPECT_EQ(t.decode({&space_hello, 1}), " hello");
}

TEST(VocabCompressor, UserStringsFollowTheSameRules) {
  const std::string fffd = "\xEF\xBF\xBD";
  const std::vector<std::string> texts = {"Hello", " hello", "HELLO\n",     "",
                                          " ",     "\t",     "x" + fffd,    "y" + fffd,
                                          "tok",   "",       "caf\xC3\xA9", "cafe"};
  const std::vector<std::string> raw = {"Hello", "Ġhello", "HELLO", "",  "Ġ", "ĉ",
                                        "tok",   "raw",    "tok",   "e", "x", "y"};
  const CompressionTable table = compress_vocab(texts, raw);
  // keys: hello hello hello "" " " " " [raw tok] [raw raw] tok(=raw of id 6) "" cafe cafe
  EXPECT_EQ(table.lookup(), (std::vector<int64_t>{0, 0, 0, 1, 2, 2, 3, 4, 3, 1, 5, 5}));
  EXPECT_EQ(table.compressed_size(), 6);
  EXPECT_EQ(compress_vocab_reference(texts, raw), table);

  VocabCompressor incremental;
  for (size_t i = 0; i < texts.size(); ++i) incremental.add(texts[i], raw[i]);
  EXPECT_EQ(incremental.table(), table);
  EXPECT_EQ(incremental.compressed_size(), 6);
}

TEST(VocabCompressor, ReplacementCharacterNeedsTheRawTokenAndTextMustBeUtf8) {
  const std::vector<std::string> texts = {"a", "b\xEF\xBF\xBD"};
  try {
    compress_vocab(texts);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("decoded text of token id 1 contains U+FFFD"));
  }
  EXPECT_THROW(compress_vocab_reference(texts), Error);
  const std::vector<std::string> one_raw = {"a"};
  try {
    compress_vocab(texts, one_raw);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("raw_tokens has 1 entries, expected 0 or one per decoded text (2)"));
  }
  const std::vector<std::string> invalid = {"a", "b", "\xC3("};
  try {
    compress_vocab(invalid);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("decoded text of token id 2 is not valid UTF-8"));
  }
  const std::vector<std::string> no_fffd = {"A", "a", " "};
  EXPECT_EQ(compress_vocab(no_fffd).lookup(), (std::vector<int64_t>{0, 0, 1}));
  EXPECT_EQ(compress_vocab({}).vocab_size(), 0);
}

TEST(CompressionTable, SafetensorsRoundTrip) {
  const CompressionTable table(std::vector<int64_t>{0, 1, 0, 2, 1, 3});
  const std::string path = temp_path("table.safetensors");
  table.save(path);
  const CompressionTable loaded = CompressionTable::load(path);
  EXPECT_EQ(loaded, table);
  EXPECT_EQ(loaded.compressed_size(), 4);
  const SafetensorsFile file(path);
  EXPECT_EQ(file.at("lookup").dtype, DType::kI64);
  EXPECT_EQ(file.at("lookup").shape, (std::vector<int64_t>{6}));
  EXPECT_EQ(file.metadata().at("compressed_size"), "4");
  EXPECT_EQ(file.metadata().at("vocab_size"), "6");
  EXPECT_EQ(table.at(3), 2);
  EXPECT_THROW(table.at(6), Error);
  EXPECT_THROW(table.at(-1), Error);
}

std::string load_error(const std::vector<TensorWrite>& tensors, const std::string& name) {
  const std::string path = temp_path(name);
  save_safetensors(path, tensors);
  try {
    CompressionTable::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CompressionTable, LoadValidates) {
  const std::vector<int64_t> gap = {0, 2, 1, 3, 5, 5};
  EXPECT_THAT(load_error({tensor_write<int64_t>("lookup", {6}, gap)}, "gap.safetensors"),
              HasSubstr("gap.safetensors: tensor 'lookup': compressed id 4 is never used"));
  const std::vector<int64_t> negative = {0, -1};
  EXPECT_THAT(load_error({tensor_write<int64_t>("lookup", {2}, negative)}, "neg.safetensors"),
              HasSubstr("tensor 'lookup': entry 1 is -1, expected a compressed id >= 0"));
  const std::vector<int64_t> too_big = {0, 7};
  EXPECT_THAT(load_error({tensor_write<int64_t>("lookup", {2}, too_big)}, "big.safetensors"),
              HasSubstr("compressed id 7 is not below the number of entries 2"));
  const std::vector<int64_t> square = {0, 1, 2, 3};
  EXPECT_THAT(load_error({tensor_write<int64_t>("lookup", {2, 2}, square)}, "2d.safetensors"),
              HasSubstr("tensor 'lookup' has shape [2, 2], expected one dimension"));
  const std::vector<float> floats = {0.0f};
  EXPECT_THAT(load_error({tensor_write<float>("lookup", {1}, floats)}, "f32.safetensors"),
              HasSubstr("has dtype F32, expected I64 or I32"));
  EXPECT_THAT(load_error({tensor_write<int64_t>("other", {2}, negative)}, "missing.safetensors"),
              HasSubstr("missing tensor 'lookup'"));
  const std::vector<int32_t> narrow = {0, 1, 1, 0};
  const std::string path = temp_path("i32.safetensors");
  save_safetensors(path, std::vector<TensorWrite>{tensor_write<int32_t>("lookup", {4}, narrow)});
  EXPECT_EQ(CompressionTable::load(path).lookup(), (std::vector<int64_t>{0, 1, 1, 0}));
}

}  // namespace
}  // namespace engram
