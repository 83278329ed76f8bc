// engram/tokenizer/detail/json_sax.hpp: the JSON layer of the tokenizer.json parser.
//
// JsonReader: typed field access with errors naming the file and the JSON path
//   (`model.vocab["abc"]`, `added_tokens[3].special`), what was expected and what was found.
// TokenizerJsonSax: an nlohmann SAX handler that builds the DOM of a tokenizer.json except
//   model.vocab and model.merges, which it streams into a StreamedModel (nearly all of the file).
// Internal to engram/tokenizer/tokenizer_json.hpp; reentrant, no shared state.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engram/error.hpp"

namespace engram::detail {

using Json = nlohmann::json;

/// Short description of a JSON value for messages: `string "ab"`, `number -1`, `object`, ...
inline std::string describe_json(const Json& j) {
  switch (j.type()) {
    case Json::value_t::string: {
      std::string s = j.dump();
      if (s.size() > 60) s = s.substr(0, 57) + "...";
      return "string " + s;
    }
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return "number " + j.dump();
    case Json::value_t::boolean:
      return std::string("boolean ") + (j.get<bool>() ? "true" : "false");
    case Json::value_t::array:
      return "array of " + std::to_string(j.size());
    case Json::value_t::object:
      return "object";
    case Json::value_t::null:
      return "null";
    default:
      return j.type_name();
  }
}

/// JSON-path spelling of an object key: ["key"] with the key JSON-escaped.
inline std::string key_path(std::string_view key) { return "[" + Json(key).dump() + "]"; }

/// Reads fields of one tokenizer.json with messages that name the file and the JSON path.
class JsonReader {
 public:
  explicit JsonReader(const std::string& source) : source_(source) {}

  [[noreturn]] void fail_expected(const std::string& path, std::string_view expected,
                                  const Json& found) const {
    fail(source_, ": ", path, ": expected ", expected, ", found ", describe_json(found));
  }
  [[noreturn]] void fail_at(const std::string& path, std::string_view message) const {
    fail(source_, ": ", path, ": ", message);
  }

  const Json& object(const Json& j, const std::string& path) const {
    if (!j.is_object()) fail_expected(path, "an object", j);
    return j;
  }
  const Json& array(const Json& j, const std::string& path) const {
    if (!j.is_array()) fail_expected(path, "an array", j);
    return j;
  }
  /// obj[key], or nullptr when absent.
  static const Json* find(const Json& obj, std::string_view key) {
    const auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
  }
  const Json& required(const Json& obj, std::string_view key, const std::string& path) const {
    const Json* j = find(obj, key);
    if (!j) fail_at(path, "missing field \"" + std::string(key) + "\"");
    return *j;
  }
  std::string string(const Json& j, const std::string& path) const {
    if (!j.is_string()) fail_expected(path, "a string", j);
    return j.get<std::string>();
  }
  bool boolean(const Json& j, const std::string& path) const {
    if (!j.is_boolean()) fail_expected(path, "a boolean", j);
    return j.get<bool>();
  }
  static bool is_u32(const Json& j) noexcept {
    return j.is_number_unsigned() && j.get<uint64_t>() <= std::numeric_limits<uint32_t>::max();
  }
  uint32_t u32(const Json& j, const std::string& path) const {
    if (!is_u32(j)) fail_expected(path, "an unsigned 32-bit integer", j);
    return static_cast<uint32_t>(j.get<uint64_t>());
  }
  uint64_t u64(const Json& j, const std::string& path) const {
    if (!j.is_number_unsigned()) fail_expected(path, "a non-negative integer", j);
    return j.get<uint64_t>();
  }
  /// A string of exactly one character (Rust `char`).
  char32_t character(const Json& j, const std::string& path) const {
    const std::string s = string(j, path);
    size_t i = 0;
    const char32_t cp = s.empty() ? 0 : next_code_point(s, i);
    if (s.empty() || i != s.size()) fail_expected(path, "a string of exactly one character", j);
    return cp;
  }
  /// Optional field: absent or null -> nullopt.
  std::optional<bool> optional_boolean(const Json& obj, std::string_view key,
                                       const std::string& path) const {
    const Json* j = find(obj, key);
    if (!j || j->is_null()) return std::nullopt;
    return boolean(*j, path + "." + std::string(key));
  }
  void optional_string(const Json& obj, std::string_view key, const std::string& path) const {
    const Json* j = find(obj, key);
    if (j && !j->is_null()) string(*j, path + "." + std::string(key));
  }
  /// The "type" of a component object.
  std::string type_of(const Json& obj, const std::string& path) const {
    return string(required(obj, "type", path), path + ".type");
  }

  const std::string& source() const noexcept { return source_; }

 private:
  const std::string& source_;
};

/// model.vocab and model.merges, streamed out of the JSON by TokenizerJsonSax instead of being
/// built as a DOM (they are nearly all of a tokenizer.json). The DOM keeps an empty container of
/// the same type in their place.
struct StreamedModel {
  std::vector<std::string> vocab_tokens;  ///< object keys, or Unigram pieces, in file order
  std::vector<uint32_t> vocab_ids;        ///< object values
  std::string merges_arena;               ///< the merge parts, back to back
  /// Per merge: left offset, left size, right offset, right size in merges_arena.
  std::vector<std::array<uint32_t, 4>> merges;

  void reset_vocab() {
    vocab_tokens.clear();
    vocab_ids.clear();
  }
  void reset_merges() {
    merges_arena.clear();
    merges.clear();
  }
  void add_merge(std::string_view left, std::string_view right) {
    const auto a = static_cast<uint32_t>(merges_arena.size());
    merges_arena.append(left);
    const auto b = static_cast<uint32_t>(merges_arena.size());
    merges_arena.append(right);
    merges.push_back(
        {a, static_cast<uint32_t>(left.size()), b, static_cast<uint32_t>(right.size())});
  }
  std::string_view merge_part(uint32_t offset, uint32_t size) const {
    return std::string_view(merges_arena).substr(offset, size);
  }
};

/// nlohmann SAX handler: builds the DOM of a tokenizer.json except model.vocab and model.merges,
/// which it streams into a StreamedModel (checking their element types on the way). Duplicate
/// keys keep the last value, as serde does.
class TokenizerJsonSax {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  TokenizerJsonSax(const std::string& source, Json& root, StreamedModel& model)
      : source_(source), root_(root), model_(model) {}

  /// The schema error that stopped the parse, if any.
  const std::string& error() const noexcept { return error_; }

  bool null() { return streaming() ? stream_scalar(Json()) : value(nullptr); }
  bool boolean(bool v) { return streaming() ? stream_scalar(Json(v)) : value(v); }
  bool number_integer(number_integer_t v) {
    return streaming() ? stream_scalar(Json(v)) : value(v);
  }
  bool number_unsigned(number_unsigned_t v) { return streaming() ? stream_unsigned(v) : value(v); }
  bool number_float(number_float_t v, const string_t&) {
    return streaming() ? stream_scalar(Json(v)) : value(v);
  }
  bool string(string_t& v) { return streaming() ? stream_string(v) : value(std::move(v)); }
  bool binary(binary_t&) { return fail_here("binary data is not JSON"); }

  bool start_object(std::size_t) {
    return streaming() ? stream_open(true) : open(Json::value_t::object);
  }
  bool start_array(std::size_t) {
    return streaming() ? stream_open(false) : open(Json::value_t::array);
  }
  bool end_object() { return streaming() ? stream_close() : close(); }
  bool end_array() { return streaming() ? stream_close() : close(); }

  bool key(string_t& k) {
    if (streaming()) {
      key_ = std::move(k);
      return true;
    }
    if (stack_.size() == 1) {
      top_key_ = k;
      if (top_key_ == "model") model_ = StreamedModel{};  // a later "model" replaces an earlier one
    }
    if (stack_.size() == 2) model_key_ = k;
    member_ = &(*stack_.back())[k];
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    parse_error_ = e.what();
    return false;
  }
  const std::string& parse_error_message() const noexcept { return parse_error_; }

 private:
  enum class Stream { kNone, kVocabObject, kVocabArray, kMerges };
  bool streaming() const noexcept { return stream_ != Stream::kNone; }

  // ---- DOM part (as nlohmann's json_sax_dom_parser)
  template <class V>
  Json* place(V&& v) {
    if (stack_.empty()) {
      root_ = Json(std::forward<V>(v));
      return &root_;
    }
    Json& parent = *stack_.back();
    if (parent.is_array()) {
      parent.get_ref<Json::array_t&>().emplace_back(std::forward<V>(v));
      return &parent.get_ref<Json::array_t&>().back();
    }
    *member_ = Json(std::forward<V>(v));
    return member_;
  }
  template <class V>
  bool value(V&& v) {
    place(std::forward<V>(v));
    return true;
  }
  bool open(Json::value_t type) {
    const bool in_model = stack_.size() == 2 && top_key_ == "model" && stack_[1]->is_object();
    const bool vocab = in_model && model_key_ == "vocab";
    const bool merges = in_model && model_key_ == "merges" && type == Json::value_t::array;
    if (!vocab && !merges) {
      stack_.push_back(place(type));
      return true;
    }
    place(type);  // an empty placeholder of the right type; the elements go to model_
    if (merges) {
      stream_ = Stream::kMerges;
      model_.reset_merges();
    } else {
      stream_ = type == Json::value_t::object ? Stream::kVocabObject : Stream::kVocabArray;
      model_.reset_vocab();
    }
    depth_ = 1;
    index_ = 0;
    merges_legacy_ = false;
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  // ---- streamed part
  std::string path() const {
    if (stream_ == Stream::kVocabObject) return "model.vocab" + key_path(key_);
    return std::string(stream_ == Stream::kMerges ? "model.merges" : "model.vocab") + "[" +
           std::to_string(index_) + "]";
  }
  bool fail_here(std::string message) {
    error_ = source_ + ": " + (streaming() ? path() + ": " : std::string()) + message;
    return false;
  }
  bool expected(std::string_view what, const std::string& found) {
    return fail_here("expected " + std::string(what) + ", found " + found);
  }
  std::string_view element_expectation() const {
    switch (stream_) {
      case Stream::kVocabObject:
        return "an unsigned 32-bit integer";
      case Stream::kVocabArray:
        return "a pair [piece string, score number]";
      default:
        return merges_legacy_ ? "a string \"left right\" like the other merges"
                              : "a pair of token strings [\"left\", \"right\"]";
    }
  }
  bool stream_unsigned(number_unsigned_t v) {
    if (stream_ == Stream::kVocabObject && depth_ == 1) {
      if (v > std::numeric_limits<uint32_t>::max())
        return expected(element_expectation(), describe_json(Json(v)));
      model_.vocab_tokens.push_back(std::move(key_));
      model_.vocab_ids.push_back(static_cast<uint32_t>(v));
      return true;
    }
    return stream_scalar(Json(v));
  }
  bool stream_scalar(const Json& v) {
    if (depth_ == 2 && stream_ == Stream::kVocabArray && pair_size_ == 1 && v.is_number()) {
      pair_size_ = 2;
      return true;
    }
    return expected(element_expectation(), depth_ == 1 ? describe_json(v)
                                                       : "an array whose element " +
                                                             std::to_string(pair_size_) + " is " +
                                                             describe_json(v));
  }
  bool stream_string(string_t& v) {
    if (depth_ == 1 && stream_ == Stream::kMerges) {
      if (index_ == 0) merges_legacy_ = true;
      if (!merges_legacy_) return expected(element_expectation(), describe_json(Json(v)));
      if (!v.starts_with("#version")) {
        const size_t space = v.find(' ');
        if (space == std::string::npos || v.find(' ', space + 1) != std::string::npos)
          return expected("a string of two tokens separated by one space", describe_json(Json(v)));
        model_.add_merge(std::string_view(v).substr(0, space),
                         std::string_view(v).substr(space + 1));
      }
      ++index_;
      return true;
    }
    if (depth_ == 2 && pair_size_ < 2 && (stream_ == Stream::kMerges || pair_size_ == 0)) {
      if (stream_ == Stream::kVocabArray) {
        model_.vocab_tokens.push_back(std::move(v));
      } else if (pair_size_ == 0) {
        pair_left_ = std::move(v);
      } else {
        model_.add_merge(pair_left_, v);
      }
      ++pair_size_;
      return true;
    }
    return stream_scalar(Json(std::move(v)));
  }
  bool stream_open(bool object) {
    const bool pair = depth_ == 1 && !object && stream_ != Stream::kVocabObject &&
                      !(stream_ == Stream::kMerges && merges_legacy_);
    if (!pair) {
      const std::string found = object ? "object" : "array";
      return expected(
          element_expectation(),
          depth_ == 1 ? found
                      : "an array whose element " + std::to_string(pair_size_) + " is an " + found);
    }
    depth_ = 2;
    pair_size_ = 0;
    return true;
  }
  bool stream_close() {
    if (depth_ == 2) {
      if (pair_size_ != 2)
        return expected(element_expectation(), "array of " + std::to_string(pair_size_));
      depth_ = 1;
      ++index_;
      return true;
    }
    stream_ = Stream::kNone;  // the streamed container ends
    merges_legacy_ = false;
    return true;
  }

  const std::string& source_;
  Json& root_;
  StreamedModel& model_;
  std::vector<Json*> stack_;
  Json* member_ = nullptr;
  std::string top_key_, model_key_;
  Stream stream_ = Stream::kNone;
  int depth_ = 0;         // nesting inside the streamed container
  size_t index_ = 0;      // element index inside it
  size_t pair_size_ = 0;  // elements seen in the current inner pair
  bool merges_legacy_ = false;
  std::string key_, pair_left_;
  std::string error_, parse_error_;
};

}  // namespace engram::detail
