// engram/io/detail/safetensors_impl.hpp: the definitions of SafetensorsFile's parser and of
// save_safetensors (engram/io/safetensors.hpp states their contract). Included by that header in
// header-only mode and compiled once into engram::instantiations in compiled mode
// (engram/detail/compiled.hpp); not a header to include directly.
#pragma once

#include <algorithm>
#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engram/io/safetensors.hpp"

namespace engram {

namespace detail {

/// One tensor entry of the header of `path`, checked against the data region.
inline TensorView parse_safetensors_tensor(const std::string& path, const std::string& name,
                                           const nlohmann::json& info, const std::byte* data_begin,
                                           uint64_t data_size) {
  const std::string where = path + ": tensor '" + name + "'";
  ENGRAM_CHECK(info.is_object(), where, " must be an object with dtype, shape, data_offsets");
  TensorView t;
  t.name = name;
  t.file = path;
  ENGRAM_CHECK(info.contains("dtype") && info["dtype"].is_string(), where,
               ": field 'dtype' missing or not a string");
  const auto dtype_str = info["dtype"].get<std::string>();
  ENGRAM_CHECK(parse_dtype(dtype_str, &t.dtype), where, ": unknown dtype '", dtype_str, "'");
  ENGRAM_CHECK(info.contains("shape") && info["shape"].is_array(), where,
               ": field 'shape' missing or not an array");
  int64_t numel = 1;
  for (const auto& d : info["shape"]) {
    ENGRAM_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, where,
                 ": 'shape' must hold non-negative integers, found ", d.dump());
    t.shape.push_back(d.get<int64_t>());
    ENGRAM_CHECK(detail::checked_mul(numel, t.shape.back(), &numel), where, ": shape ",
                 info["shape"].dump(), " overflows");
  }
  int64_t nbytes = 0;
  ENGRAM_CHECK(detail::checked_mul(numel, dtype_size(t.dtype), &nbytes), where, ": shape ",
               info["shape"].dump(), " x ", dtype_str, " overflows");
  const auto& offs = info.contains("data_offsets") ? info["data_offsets"] : nlohmann::json();
  ENGRAM_CHECK(offs.is_array() && offs.size() == 2 && offs[0].is_number_unsigned() &&
                   offs[1].is_number_unsigned(),
               where, ": field 'data_offsets' must be [begin, end] of non-negative integers");
  const auto begin = offs[0].get<uint64_t>();
  const auto end = offs[1].get<uint64_t>();
  ENGRAM_CHECK(begin <= end && end <= data_size, where, ": data_offsets [", begin, ", ", end,
               "] outside the data region of ", data_size, " bytes");
  ENGRAM_CHECK(end - begin == static_cast<uint64_t>(nbytes), where, ": data_offsets span ",
               end - begin, " bytes but shape ", shape_string(t.shape), " x ", dtype_str, " needs ",
               nbytes);
  t.bytes = {data_begin + begin, static_cast<size_t>(nbytes)};
  return t;
}

}  // namespace detail

ENGRAM_INLINE SafetensorsFile::SafetensorsFile(std::string path)
    : path_(std::move(path)), map_(std::make_shared<detail::MappedFile>(path_)) {
  parse();
}

ENGRAM_INLINE void SafetensorsFile::parse() {
  const auto* base = map_->data();
  const uint64_t file_size = map_->size();
  ENGRAM_CHECK(file_size >= 8, path_, ": file of ", file_size,
               " bytes is too short for a safetensors header (8-byte length + JSON)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);
  if constexpr (std::endian::native == std::endian::big) header_len = __builtin_bswap64(header_len);
  ENGRAM_CHECK(header_len <= kMaxHeaderBytes, path_, ": header length ", header_len,
               " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  ENGRAM_CHECK(header_len <= file_size - 8, path_, ": header length ", header_len,
               " runs past the end of the file (", file_size, " bytes)");
  const auto* header_begin = reinterpret_cast<const char*>(base + 8);
  const std::byte* data_begin = base + 8 + header_len;
  const uint64_t data_size = file_size - 8 - header_len;

  std::set<std::string> seen;
  std::string duplicate;
  nlohmann::json::parser_callback_t on_event = [&](int depth, nlohmann::json::parse_event_t event,
                                                   nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen.insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len, on_event);
  } catch (const nlohmann::json::exception& e) {
    detail::fail(path_, ": header is not valid JSON: ", e.what());
  }
  ENGRAM_CHECK(header.is_object(), path_, ": header must be a JSON object, found ",
               header.type_name());
  ENGRAM_CHECK(duplicate.empty(), path_, ": duplicate tensor name '", duplicate, "' in header");

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      ENGRAM_CHECK(info.is_object(), path_, ": __metadata__ must be an object of strings");
      for (const auto& [key, value] : info.items()) {
        ENGRAM_CHECK(value.is_string(), path_, ": __metadata__['", key, "'] must be a string");
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    tensors_.push_back(detail::parse_safetensors_tensor(path_, name, info, data_begin, data_size));
    const auto& t = tensors_.back();
    const auto begin = static_cast<uint64_t>(t.bytes.data() - data_begin);
    ranges.emplace_back(begin, begin + t.bytes.size());
  }
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto& prev = ranges[order[i - 1]];
    const auto& cur = ranges[order[i]];
    ENGRAM_CHECK(cur.first >= prev.second || cur.first == cur.second || prev.first == prev.second,
                 path_, ": tensors '", tensors_[order[i - 1]].name, "' and '",
                 tensors_[order[i]].name, "' overlap in data_offsets");
  }
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

ENGRAM_INLINE void save_safetensors(const std::string& path, std::span<const TensorWrite> tensors,
                                    const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      ENGRAM_CHECK(d >= 0 && detail::checked_mul(numel, d, &numel), path, ": tensor '", t.name,
                   "' has invalid shape ", shape_string(t.shape));
    }
    ENGRAM_CHECK(static_cast<uint64_t>(numel * dtype_size(t.dtype)) == t.bytes.size(), path,
                 ": tensor '", t.name, "' has ", t.bytes.size(), " bytes, shape ",
                 shape_string(t.shape), " x ", dtype_name(t.dtype), " needs ",
                 numel * dtype_size(t.dtype));
    ENGRAM_CHECK(!header.contains(t.name) && t.name != "__metadata__", path,
                 ": duplicate or reserved tensor name '", t.name, "'");
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  detail::AtomicFile file(path);
  uint64_t len = text.size();
  if constexpr (std::endian::native == std::endian::big) len = __builtin_bswap64(len);
  file.write(&len, 8);
  file.write(text.data(), static_cast<int64_t>(text.size()));
  for (const auto& t : tensors) file.write(t.bytes.data(), static_cast<int64_t>(t.bytes.size()));
  file.commit();
}

}  // namespace engram
