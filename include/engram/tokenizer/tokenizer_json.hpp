// engram/tokenizer/tokenizer_json.hpp: reads a Hugging Face tokenizer.json (plain or gzip) into a
// plain, validated struct: the token string of every id as `Tokenizer::decode` sees it, the added
// tokens, the decoder and the normaliser. Needs the engram::tokenizer component (utf8proc, zlib).
//
// The ids reproduce the deserialiser of `tokenizers` 0.23.2 exactly: model vocab (BPE, WordPiece,
// WordLevel, Unigram), added_tokens numbered as HF's AddedVocabulary does (not at their JSON ids),
// normalised added tokens, vocab_size() with added tokens (rules: docs/design/tokenizer_json.md).
// Every schema violation throws engram::Error naming the file, the JSON path of the field
// (`model.vocab["abc"]`, `added_tokens[3].special`), what was expected and what was found.
// Parts: tokenizer/detail/gzip.hpp (file and zlib), tokenizer/detail/json_sax.hpp (typed reader,
// SAX streaming of model.vocab and merges), this header (the schema and the public entry points).
// Thread safety: the functions are reentrant; a TokenizerJson is a plain value.
//
//   const engram::TokenizerJson t = engram::read_tokenizer_json("tokenizer.json.gz");
//   const int64_t id = 42;
//   std::string text = t.decode({&id, 1});   // HF decode([42]), no clean-up, specials kept
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/tokenizer/decoder.hpp"
#include "engram/tokenizer/detail/gzip.hpp"
#include "engram/tokenizer/detail/json_sax.hpp"
#include "engram/tokenizer/normalizer.hpp"

namespace engram {

/// The model types of tokenizer.json.
enum class TokenizerModelType { kBPE, kWordPiece, kWordLevel, kUnigram };

/// One entry of tokenizer.json "added_tokens" (HF AddedToken).
struct AddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
  bool operator==(const AddedToken&) const = default;
};

/// An added token as read, with the id HF gives it.
struct AddedTokenInfo {
  AddedToken token;
  uint32_t json_id = 0;        ///< the "id" written in the file (HF does not use it)
  std::optional<uint32_t> id;  ///< the id HF assigns; nullopt when the entry is ignored (empty)
};

/// A validated tokenizer.json, reduced to what decoding needs.
struct TokenizerJson {
  std::string source;  ///< file name, for messages
  TokenizerModelType model_type = TokenizerModelType::kBPE;
  int64_t model_vocab_size = 0;                    ///< HF model.get_vocab_size()
  std::vector<AddedTokenInfo> added_tokens;        ///< in file order
  std::vector<std::optional<std::string>> tokens;  ///< id -> token string used by decode
  std::optional<TokenDecoder> decoder;             ///< nullopt: tokens are joined with " "
  std::optional<TextNormalizer> normalizer;

  /// HF get_vocab_size(with_added_tokens = true).
  int64_t vocab_size() const noexcept { return static_cast<int64_t>(tokens.size()); }

  /// HF Tokenizer::decode(ids, skip_special_tokens = false) (no clean-up). Ids without a token,
  /// including ids >= vocab_size(), are dropped as HF drops them.
  std::string decode(std::span<const int64_t> ids) const {
    std::vector<std::string> strings;
    strings.reserve(ids.size());
    for (int64_t id : ids)
      if (id >= 0 && id < vocab_size() && tokens[static_cast<size_t>(id)])
        strings.push_back(*tokens[static_cast<size_t>(id)]);
    return decode_tokens(decoder, std::move(strings));
  }
};

namespace detail {

inline std::optional<TextNormalizer> parse_normalizer(const JsonReader& r, const Json& j,
                                                      const std::string& path) {
  if (j.is_null()) return std::nullopt;
  r.object(j, path);
  const std::string type = r.type_of(j, path);
  using namespace normalizers;
  if (type == "Sequence") {
    Sequence seq;
    const std::string list_path = path + ".normalizers";
    const Json& list = r.array(r.required(j, "normalizers", path), list_path);
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string item_path = list_path + "[" + std::to_string(i) + "]";
      if (list[i].is_null()) r.fail_expected(item_path, "a normalizer object", list[i]);
      seq.normalizers.push_back(*parse_normalizer(r, list[i], item_path));
    }
    return TextNormalizer(std::move(seq));
  }
  if (type == "NFC") return TextNormalizer(Unicode{NormalForm::kNFC});
  if (type == "NFD") return TextNormalizer(Unicode{NormalForm::kNFD});
  if (type == "NFKC") return TextNormalizer(Unicode{NormalForm::kNFKC});
  if (type == "NFKD") return TextNormalizer(Unicode{NormalForm::kNFKD});
  if (type == "Lowercase") return TextNormalizer(normalizers::Lowercase{});
  if (type == "StripAccents") return TextNormalizer(normalizers::StripAccents{});
  if (type == "ByteLevel") return TextNormalizer(normalizers::ByteLevel{});
  if (type == "Nmt") return TextNormalizer(Nmt{});
  if (type == "Strip") {
    return TextNormalizer(
        Strip{r.boolean(r.required(j, "strip_left", path), path + ".strip_left"),
              r.boolean(r.required(j, "strip_right", path), path + ".strip_right")});
  }
  if (type == "Prepend")
    return TextNormalizer(Prepend{r.string(r.required(j, "prepend", path), path + ".prepend")});
  if (type == "Replace") {
    const std::string pattern_path = path + ".pattern";
    const Json& pattern = r.object(r.required(j, "pattern", path), pattern_path);
    const std::string content = r.string(r.required(j, "content", path), path + ".content");
    if (pattern.size() == 1 && pattern.contains("String"))
      return TextNormalizer(
          Replace{r.string(pattern["String"], pattern_path + ".String"), content});
    if (pattern.size() == 1 && pattern.contains("Regex")) {
      return TextNormalizer(Unsupported{"Replace with a Regex pattern " + pattern["Regex"].dump() +
                                        " (at " + path + ")"});
    }
    r.fail_expected(pattern_path, "{\"String\": ...} or {\"Regex\": ...}", pattern);
  }
  if (type == "Precompiled" || type == "Bert" || type == "BertNormalizer")
    return TextNormalizer(Unsupported{type + " (at " + path + ")"});
  r.fail_at(path + ".type",
            "unknown normalizer type \"" + type +
                "\" (expected Sequence, NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Strip, "
                "Prepend, Replace, ByteLevel, Nmt, Precompiled or Bert)");
}

inline std::optional<TokenDecoder> parse_decoder(const JsonReader& r, const Json& j,
                                                 const std::string& path) {
  if (j.is_null()) return std::nullopt;
  r.object(j, path);
  const std::string type = r.type_of(j, path);
  const auto field = [&](std::string_view key) -> const Json& { return r.required(j, key, path); };
  const auto sub = [&](std::string_view key) { return path + "." + std::string(key); };
  using namespace decoders;
  if (type == "ByteLevel") {
    r.boolean(field("add_prefix_space"), sub("add_prefix_space"));
    r.boolean(field("trim_offsets"), sub("trim_offsets"));
    r.optional_boolean(j, "use_regex", path);
    return TokenDecoder(decoders::ByteLevel{});
  }
  if (type == "ByteFallback") return TokenDecoder(ByteFallback{});
  if (type == "Fuse") return TokenDecoder(Fuse{});
  if (type == "Strip") {
    return TokenDecoder(Strip{r.character(field("content"), sub("content")),
                              r.u64(field("start"), sub("start")),
                              r.u64(field("stop"), sub("stop"))});
  }
  if (type == "Replace") {
    const Json& pattern = r.object(field("pattern"), sub("pattern"));
    const std::string content = r.string(field("content"), sub("content"));
    if (pattern.size() == 1 && pattern.contains("String"))
      return TokenDecoder(
          decoders::Replace{r.string(pattern["String"], sub("pattern.String")), content});
    if (pattern.size() == 1 && pattern.contains("Regex"))
      r.fail_at(sub("pattern"), "Replace decoder with a Regex pattern " + pattern["Regex"].dump() +
                                    " is not supported (only {\"String\": ...})");
    r.fail_expected(sub("pattern"), "{\"String\": ...} or {\"Regex\": ...}", pattern);
  }
  if (type == "Metaspace") {
    Metaspace m;
    m.replacement = r.character(field("replacement"), sub("replacement"));
    const std::optional<bool> add_prefix_space = r.optional_boolean(j, "add_prefix_space", path);
    if (const Json* scheme = JsonReader::find(j, "prepend_scheme")) {
      const std::string s = r.string(*scheme, sub("prepend_scheme"));
      if (s == "first")
        m.prepend_scheme = PrependScheme::kFirst;
      else if (s == "never")
        m.prepend_scheme = PrependScheme::kNever;
      else if (s == "always")
        m.prepend_scheme = PrependScheme::kAlways;
      else
        r.fail_expected(sub("prepend_scheme"), "\"first\", \"never\" or \"always\"", *scheme);
    }
    r.optional_boolean(j, "split", path);
    if (add_prefix_space == false) {  // HF: legacy add_prefix_space=false must mean "never"
      if (m.prepend_scheme != PrependScheme::kNever)
        r.fail_at(path,
                  "add_prefix_space false does not match prepend_scheme (expected \"never\")");
    }
    return TokenDecoder(m);
  }
  if (type == "WordPiece")
    return TokenDecoder(WordPiece{r.string(field("prefix"), sub("prefix")),
                                  r.boolean(field("cleanup"), sub("cleanup"))});
  if (type == "BPEDecoder") return TokenDecoder(Bpe{r.string(field("suffix"), sub("suffix"))});
  if (type == "CTC") {
    return TokenDecoder(Ctc{r.string(field("pad_token"), sub("pad_token")),
                            r.string(field("word_delimiter_token"), sub("word_delimiter_token")),
                            r.boolean(field("cleanup"), sub("cleanup"))});
  }
  if (type == "Sequence") {
    Sequence seq;
    const Json& list = r.array(field("decoders"), sub("decoders"));
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string item_path = sub("decoders") + "[" + std::to_string(i) + "]";
      if (list[i].is_null()) r.fail_expected(item_path, "a decoder object", list[i]);
      seq.decoders.push_back(*parse_decoder(r, list[i], item_path));
    }
    return TokenDecoder(std::move(seq));
  }
  r.fail_at(sub("type"),
            "unknown decoder type \"" + type +
                "\" (expected ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, "
                "WordPiece, BPEDecoder, CTC or Sequence)");
}

/// Open-addressing map token -> id over string_views (the strings live elsewhere). One probe
/// sequence of 16-byte slots per lookup: the merges check does ~3 lookups per merge.
class TokenIndex {
 public:
  void reserve(size_t n) {
    size_t capacity = 16;
    while (capacity < 2 * n) capacity *= 2;
    slots_.assign(capacity, Slot{});
    tokens_.clear();
    tokens_.reserve(n);
  }
  /// Inserts or overwrites (the last of equal tokens wins).
  void insert_or_assign(std::string_view token, uint32_t id) {
    if (2 * (tokens_.size() + 1) > slots_.size()) grow();
    const uint64_t h = hash(token);
    for (size_t i = h & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      Slot& slot = slots_[i];
      if (slot.token == kEmpty) {
        slot = Slot{h, static_cast<uint32_t>(tokens_.size()), id};
        tokens_.push_back(token);
        return;
      }
      if (slot.hash == h && tokens_[slot.token] == token) {
        slot.id = id;
        return;
      }
    }
  }
  std::optional<uint32_t> find(std::string_view token) const {
    if (slots_.empty()) return std::nullopt;
    const uint64_t h = hash(token);
    for (size_t i = h & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& slot = slots_[i];
      if (slot.token == kEmpty) return std::nullopt;
      if (slot.hash == h && tokens_[slot.token] == token) return slot.id;
    }
  }
  size_t size() const noexcept { return tokens_.size(); }
  /// Calls f(token, id) for every distinct token.
  template <class F>
  void for_each(F&& f) const {
    for (const Slot& slot : slots_)
      if (slot.token != kEmpty) f(tokens_[slot.token], slot.id);
  }

 private:
  static constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();
  struct Slot {
    uint64_t hash = 0;
    uint32_t token = kEmpty;  ///< index into tokens_
    uint32_t id = 0;
  };
  static uint64_t hash(std::string_view s) noexcept {
    uint64_t h = std::hash<std::string_view>{}(s);
    return h ^ (h >> 29);
  }
  void grow() {
    std::vector<std::string_view> tokens = std::move(tokens_);
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(16, tokens.size() * 2));
    for (const Slot& slot : old)
      if (slot.token != kEmpty) insert_or_assign(tokens[slot.token], slot.id);
  }

  std::vector<Slot> slots_;
  std::vector<std::string_view> tokens_;
};

/// A parsed model: size, token -> id, id -> token.
struct ModelVocab {
  TokenizerModelType type = TokenizerModelType::kBPE;
  int64_t size = 0;
  TokenIndex token_to_id;                                        ///< views into StreamedModel
  std::vector<std::pair<uint32_t, std::string_view>> id_tokens;  ///< (id, token)

  std::optional<uint32_t> find(std::string_view token) const { return token_to_id.find(token); }
};

/// A {token: id} vocab: the last of duplicate keys wins (serde map); ids must be unique.
inline void build_vocab_object(const JsonReader& r, const StreamedModel& streamed,
                               ModelVocab& model) {
  model.token_to_id.reserve(streamed.vocab_tokens.size());
  for (size_t i = 0; i < streamed.vocab_tokens.size(); ++i)
    model.token_to_id.insert_or_assign(std::string_view(streamed.vocab_tokens[i]),
                                       streamed.vocab_ids[i]);
  model.size = static_cast<int64_t>(model.token_to_id.size());
  model.id_tokens.reserve(model.token_to_id.size());
  model.token_to_id.for_each(
      [&](std::string_view token, uint32_t id) { model.id_tokens.emplace_back(id, token); });
  std::sort(model.id_tokens.begin(), model.id_tokens.end());
  for (size_t i = 1; i < model.id_tokens.size(); ++i) {
    if (model.id_tokens[i].first == model.id_tokens[i - 1].first) {
      r.fail_at("model.vocab",
                "id " + std::to_string(model.id_tokens[i].first) + " is given to both " +
                    Json(model.id_tokens[i - 1].second).dump() + " and " +
                    Json(model.id_tokens[i].second).dump() + " (ids must be unique)");
    }
  }
}

/// BPE merges must name vocab tokens, and so must their concatenation (HF BpeBuilder::build).
inline void check_merges(const JsonReader& r, const StreamedModel& streamed,
                         const ModelVocab& model, size_t prefix_len) {
  std::string merged;
  for (size_t i = 0; i < streamed.merges.size(); ++i) {
    const auto& m = streamed.merges[i];
    const std::string_view a = streamed.merge_part(m[0], m[1]);
    const std::string_view b = streamed.merge_part(m[2], m[3]);
    const auto where = [&] { return "model.merges (merge " + std::to_string(i) + ")"; };
    for (std::string_view part : {a, b}) {
      if (!model.find(part))
        r.fail_at(where(), "merge token " + Json(part).dump() + " is not in model.vocab");
    }
    if (b.size() < prefix_len)
      r.fail_at(where(),
                "merge token " + Json(b).dump() + " is shorter than continuing_subword_prefix");
    merged.assign(a);
    merged.append(b.substr(prefix_len));
    if (!model.find(merged))
      r.fail_at(where(), "merged token " + Json(merged).dump() + " is not in model.vocab");
  }
}

inline ModelVocab parse_model(const JsonReader& r, const Json& j, const StreamedModel& streamed) {
  const std::string path = "model";
  r.object(j, path);
  ModelVocab model;
  const auto sub = [&](std::string_view key) { return path + "." + std::string(key); };
  if (const Json* type = JsonReader::find(j, "type")) {
    const std::string t = r.string(*type, sub("type"));
    if (t == "BPE")
      model.type = TokenizerModelType::kBPE;
    else if (t == "WordPiece")
      model.type = TokenizerModelType::kWordPiece;
    else if (t == "WordLevel")
      model.type = TokenizerModelType::kWordLevel;
    else if (t == "Unigram")
      model.type = TokenizerModelType::kUnigram;
    else
      r.fail_at(sub("type"),
                "unknown model type \"" + t + "\" (expected BPE, WordPiece, WordLevel or Unigram)");
  } else {  // legacy files without "type": HF tries BPE, WordPiece, WordLevel, Unigram in turn
    const Json* vocab = JsonReader::find(j, "vocab");
    if (vocab && vocab->is_array())
      model.type = TokenizerModelType::kUnigram;
    else if (JsonReader::find(j, "merges"))
      model.type = TokenizerModelType::kBPE;
    else if (JsonReader::find(j, "continuing_subword_prefix"))
      model.type = TokenizerModelType::kWordPiece;
    else
      model.type = TokenizerModelType::kWordLevel;
  }
  const Json& vocab = r.required(j, "vocab", path);
  const auto vocab_object = [&] {
    r.object(vocab, sub("vocab"));
    build_vocab_object(r, streamed, model);
  };
  switch (model.type) {
    case TokenizerModelType::kBPE: {
      r.array(r.required(j, "merges", path), sub("merges"));
      for (const char* key : {"unk_token", "continuing_subword_prefix", "end_of_word_suffix"})
        r.optional_string(j, key, path);
      for (const char* key : {"fuse_unk", "byte_fallback", "ignore_merges"})
        r.optional_boolean(j, key, path);
      if (const Json* dropout = JsonReader::find(j, "dropout"); dropout && !dropout->is_null()) {
        if (!dropout->is_number() || dropout->get<double>() < 0.0 || dropout->get<double>() > 1.0)
          r.fail_expected(sub("dropout"), "null or a number in [0, 1]", *dropout);
      }
      vocab_object();
      size_t prefix_len = 0;
      if (const Json* prefix = JsonReader::find(j, "continuing_subword_prefix");
          prefix && prefix->is_string())
        prefix_len = prefix->get_ref<const std::string&>().size();
      check_merges(r, streamed, model, prefix_len);
      break;
    }
    case TokenizerModelType::kWordPiece:
      r.string(r.required(j, "unk_token", path), sub("unk_token"));
      r.string(r.required(j, "continuing_subword_prefix", path), sub("continuing_subword_prefix"));
      r.u64(r.required(j, "max_input_chars_per_word", path), sub("max_input_chars_per_word"));
      vocab_object();
      break;
    case TokenizerModelType::kWordLevel:
      r.string(r.required(j, "unk_token", path), sub("unk_token"));
      vocab_object();
      break;
    case TokenizerModelType::kUnigram: {
      r.array(vocab, sub("vocab"));
      const auto& pieces = streamed.vocab_tokens;
      ENGRAM_CHECK(pieces.size() <= std::numeric_limits<uint32_t>::max(), r.source(), ": ",
                   sub("vocab"), ": more than 2^32 pieces");
      model.size = static_cast<int64_t>(pieces.size());
      model.token_to_id.reserve(pieces.size());
      model.id_tokens.reserve(pieces.size());
      for (size_t i = 0; i < pieces.size(); ++i) {
        model.id_tokens.emplace_back(static_cast<uint32_t>(i), pieces[i]);
        model.token_to_id.insert_or_assign(std::string_view(pieces[i]),
                                           static_cast<uint32_t>(i));  // last wins
      }
      if (const Json* unk = JsonReader::find(j, "unk_id"); unk && !unk->is_null()) {
        const uint64_t unk_id = r.u64(*unk, sub("unk_id"));
        if (unk_id >= pieces.size()) {
          r.fail_at(sub("unk_id"), std::to_string(unk_id) + " is not below the vocab size " +
                                       std::to_string(pieces.size()));
        }
      }
      r.optional_boolean(j, "byte_fallback", path);
      break;
    }
  }
  return model;
}

inline AddedToken parse_added_token(const JsonReader& r, const Json& j, const std::string& path,
                                    uint32_t* json_id) {
  r.object(j, path);
  const auto sub = [&](std::string_view key) { return path + "." + std::string(key); };
  *json_id = r.u32(r.required(j, "id", path), sub("id"));
  AddedToken t;
  t.content = r.string(r.required(j, "content", path), sub("content"));
  t.single_word = r.boolean(r.required(j, "single_word", path), sub("single_word"));
  t.lstrip = r.boolean(r.required(j, "lstrip", path), sub("lstrip"));
  t.rstrip = r.boolean(r.required(j, "rstrip", path), sub("rstrip"));
  t.normalized = r.boolean(r.required(j, "normalized", path), sub("normalized"));
  t.special = r.boolean(r.required(j, "special", path), sub("special"));
  return t;
}

}  // namespace detail

/// Parses the text of a tokenizer.json; `source` names it in messages.
inline TokenizerJson parse_tokenizer_json(std::string_view text, const std::string& source) {
  using detail::Json;
  Json root;
  detail::StreamedModel streamed;
  detail::TokenizerJsonSax sax(source, root, streamed);
  if (!Json::sax_parse(text.begin(), text.end(), &sax)) {
    if (!sax.error().empty()) throw Error(sax.error());
    detail::fail(source, ": not valid JSON: ", sax.parse_error_message());
  }
  const detail::JsonReader r(source);
  if (!root.is_object()) r.fail_expected("(top level)", "a tokenizer.json object", root);

  if (const Json* version = detail::JsonReader::find(root, "version")) {
    if (r.string(*version, "version") != "1.0") r.fail_expected("version", "\"1.0\"", *version);
  }
  TokenizerJson out;
  out.source = source;
  static const Json kNull;
  const Json* normalizer_json = detail::JsonReader::find(root, "normalizer");
  out.normalizer =
      detail::parse_normalizer(r, normalizer_json ? *normalizer_json : kNull, "normalizer");
  const Json* decoder_json = detail::JsonReader::find(root, "decoder");
  out.decoder = detail::parse_decoder(r, decoder_json ? *decoder_json : kNull, "decoder");
  const Json* model_json = detail::JsonReader::find(root, "model");
  if (!model_json) r.fail_at("model", "missing (a tokenizer.json needs a model)");
  const detail::ModelVocab model = detail::parse_model(r, *model_json, streamed);
  out.model_type = model.type;
  out.model_vocab_size = model.size;

  // AddedVocabulary::add_tokens, as the deserialiser calls it once with every entry.
  std::unordered_map<std::string, uint32_t> added_ids;         // content -> id
  std::unordered_map<uint32_t, size_t> added_by_id;            // id -> index in out.added_tokens
  std::unordered_map<uint32_t, std::string> normalized_cache;  // id -> normalised content
  if (const Json* added = detail::JsonReader::find(root, "added_tokens")) {
    r.array(*added, "added_tokens");
    uint32_t next_id = static_cast<uint32_t>(model.size);
    out.added_tokens.reserve(added->size());
    for (size_t i = 0; i < added->size(); ++i) {
      const std::string path = "added_tokens[" + std::to_string(i) + "]";
      AddedTokenInfo info;
      info.token = detail::parse_added_token(r, (*added)[i], path, &info.json_id);
      const AddedToken& token = info.token;
      if (token.content.empty()) {
        out.added_tokens.push_back(std::move(info));
        continue;
      }
      const auto known = added_ids.find(token.content);
      if (known != added_ids.end()) {
        const auto same = added_by_id.find(known->second);
        if (same != added_by_id.end() && out.added_tokens[same->second].token == token) {
          info.id = known->second;
          out.added_tokens.push_back(std::move(info));
          continue;
        }
      }
      uint32_t id;
      if (known != added_ids.end())
        id = known->second;
      else if (const auto model_id = model.find(token.content))
        id = *model_id;
      else
        id = next_id++;
      if (token.normalized && out.normalizer) {
        std::string normalized;
        try {
          normalized = out.normalizer->normalize(token.content);
        } catch (const Error& e) {
          detail::fail(source, ": ", path, " (", Json(token.content).dump(),
                       ") is a normalized added token, but: ", e.what());
        }
        if (normalized != token.content) normalized_cache[id] = std::move(normalized);
      }
      added_ids[token.content] = id;
      info.id = id;
      added_by_id[id] = out.added_tokens.size();
      out.added_tokens.push_back(std::move(info));
    }
  }

  int64_t overlapping = 0;
  for (const auto& [content, id] : added_ids) overlapping += model.find(content).has_value();
  const int64_t vocab_size = model.size + static_cast<int64_t>(added_ids.size()) - overlapping;
  out.tokens.assign(static_cast<size_t>(vocab_size), std::nullopt);
  for (const auto& [id, token] : model.id_tokens)
    if (id < vocab_size) out.tokens[id] = std::string(token);
  for (const auto& [id, index] : added_by_id) {
    if (id >= vocab_size) continue;
    const auto cached = normalized_cache.find(id);
    out.tokens[id] =
        cached != normalized_cache.end() ? cached->second : out.added_tokens[index].token.content;
  }
  return out;
}

/// Reads and parses a tokenizer.json file, plain or gzip-compressed (detected by content).
inline TokenizerJson read_tokenizer_json(const std::string& path) {
  return parse_tokenizer_json(detail::read_maybe_gzip(path), path);
}

}  // namespace engram
