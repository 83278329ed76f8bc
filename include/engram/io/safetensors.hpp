// engram/io/safetensors.hpp: reading (memory-mapped) and writing safetensors files.
//
// Format: u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__":
//   {..}}
// then the data region; offsets are relative to the start of the data region.
//
// Guarantees:
// - A SafetensorsFile is validated completely when opened: header length within the file and below
//   kMaxHeaderBytes, JSON object, known dtypes, non-negative shapes without overflow, offsets
//   inside the data region and equal to numel x dtype size, no overlapping tensors, no duplicate
//   names. Any violation throws engram::Error naming the file and the tensor/field. After that
//   every TensorView is in bounds.
// - The mapping is read-only and shared: TensorViews borrow from the SafetensorsFile, which must
// outlive them.
//   The file is never copied (tables of many GB map in O(1)).
// - save_safetensors writes a unique "<path>.tmp.XXXXXX", fsyncs it and renames it over <path>
// (detail::AtomicFile), so an interrupted write never leaves a file that loads and concurrent
// writers of one path never mix their bytes (the last rename wins). Thread safety: a
// SafetensorsFile is immutable after construction; concurrent reads are safe.
#pragma once

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engram/detail/mapped_file.hpp"
#include "engram/detail/posix_file.hpp"
#include "engram/error.hpp"

namespace engram {

/// Element types of safetensors tensors.
enum class DType {
  kF64,
  kF32,
  kF16,
  kBF16,
  kI64,
  kI32,
  kI16,
  kI8,
  kU64,
  kU32,
  kU16,
  kU8,
  kBool,
  kF8E4M3,
  kF8E5M2,
  kF8E8M0
};

/// Bytes per element of `dtype`.
constexpr int64_t dtype_size(DType dtype) noexcept {
  switch (dtype) {
    case DType::kF64:
    case DType::kI64:
    case DType::kU64:
      return 8;
    case DType::kF32:
    case DType::kI32:
    case DType::kU32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
    case DType::kU16:
      return 2;
    default:
      return 1;
  }
}

/// The safetensors spelling of `dtype` ("F32", "F8_E4M3", ...).
constexpr std::string_view dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::kF64:
      return "F64";
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kI16:
      return "I16";
    case DType::kI8:
      return "I8";
    case DType::kU64:
      return "U64";
    case DType::kU32:
      return "U32";
    case DType::kU16:
      return "U16";
    case DType::kU8:
      return "U8";
    case DType::kBool:
      return "BOOL";
    case DType::kF8E4M3:
      return "F8_E4M3";
    case DType::kF8E5M2:
      return "F8_E5M2";
    case DType::kF8E8M0:
      return "F8_E8M0";
  }
  return "?";
}

/// Parses a safetensors dtype name; false when unknown.
inline bool parse_dtype(std::string_view name, DType* out) noexcept {
  for (int i = 0; i <= static_cast<int>(DType::kF8E8M0); ++i) {
    const auto d = static_cast<DType>(i);
    if (dtype_name(d) == name) {
      *out = d;
      return true;
    }
  }
  return false;
}

/// The dtype that stores C++ type T (for typed access and writing).
template <class T>
constexpr DType dtype_of() noexcept {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, double>)
    return DType::kF64;
  else if constexpr (std::is_same_v<U, float>)
    return DType::kF32;
  else if constexpr (std::is_same_v<U, int64_t>)
    return DType::kI64;
  else if constexpr (std::is_same_v<U, int32_t>)
    return DType::kI32;
  else if constexpr (std::is_same_v<U, int16_t>)
    return DType::kI16;
  else if constexpr (std::is_same_v<U, int8_t>)
    return DType::kI8;
  else if constexpr (std::is_same_v<U, uint64_t>)
    return DType::kU64;
  else if constexpr (std::is_same_v<U, uint32_t>)
    return DType::kU32;
  else if constexpr (std::is_same_v<U, uint16_t>)
    return DType::kU16;
  else if constexpr (std::is_same_v<U, uint8_t>)
    return DType::kU8;
  else if constexpr (std::is_same_v<U, bool>)
    return DType::kBool;
  else
    static_assert(sizeof(U) == 0, "no safetensors dtype for this type");
}

/// Shape as "[2, 3]" for messages.
inline std::string shape_string(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// A validated tensor inside a SafetensorsFile (non-owning; the file must outlive it).
struct TensorView {
  std::string name;
  std::string file;  ///< path of the file it came from, for messages
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;

  int64_t numel() const noexcept {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }

  /// Typed zero-copy view. Throws when T does not match the dtype or the data is misaligned for T.
  template <class T>
  std::span<const T> as() const {
    check_dtype(dtype_of<T>());
    ENGRAM_CHECK(reinterpret_cast<uintptr_t>(bytes.data()) % alignof(T) == 0, file, ": tensor '",
                 name, "' is not aligned to ", alignof(T), " bytes; use copy_as()");
    return {reinterpret_cast<const T*>(bytes.data()), static_cast<size_t>(numel())};
  }

  /// Typed copy (works for any alignment).
  template <class T>
  std::vector<T> copy_as() const {
    check_dtype(dtype_of<T>());
    std::vector<T> out(static_cast<size_t>(numel()));
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }

  /// Throws unless the dtype is `expected`.
  void check_dtype(DType expected) const {
    ENGRAM_CHECK(dtype == expected, file, ": tensor '", name, "' has dtype ", dtype_name(dtype),
                 ", expected ", dtype_name(expected));
  }

  /// Throws unless the shape is `expected`.
  void check_shape(std::span<const int64_t> expected) const {
    ENGRAM_CHECK(std::ranges::equal(shape, expected), file, ": tensor '", name, "' has shape ",
                 shape_string(shape), ", expected ", shape_string(expected));
  }
  void check_shape(std::initializer_list<int64_t> expected) const {
    check_shape(std::span<const int64_t>(expected.begin(), expected.size()));
  }
};

namespace detail {

inline bool checked_mul(int64_t a, int64_t b, int64_t* out) noexcept {
  return !__builtin_mul_overflow(a, b, out);
}

}  // namespace detail

/// A memory-mapped, fully validated safetensors file.
class SafetensorsFile {
 public:
  /// Largest accepted JSON header (the format's reference implementation uses 100 MB).
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

  explicit SafetensorsFile(std::string path)
      : path_(std::move(path)), map_(std::make_shared<detail::MappedFile>(path_)) {
    parse();
  }

  const std::string& path() const noexcept { return path_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  const std::vector<TensorView>& tensors() const noexcept { return tensors_; }

  /// The tensor called `name`, or nullptr.
  const TensorView* find(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }

  /// The tensor called `name`; throws naming the file and tensor when absent.
  const TensorView& at(std::string_view name) const {
    const TensorView* t = find(name);
    ENGRAM_CHECK(t != nullptr, path_, ": missing tensor '", name, "'");
    return *t;
  }

  /// Byte offset of `t` (a tensor of this file) from the start of the file, for readers that
  /// fetch its bytes with their own I/O (O_DIRECT tiers).
  int64_t file_offset(const TensorView& t) const {
    const std::byte* begin = map_->data();
    ENGRAM_CHECK(t.file == path_ && t.bytes.data() >= begin &&
                     t.bytes.data() + t.bytes.size() <= begin + map_->size(),
                 path_, ": tensor '", t.name, "' does not belong to this file");
    return static_cast<int64_t>(t.bytes.data() - begin);
  }

  /// An integer tensor (I64 or I32) widened to int64, flattened.
  std::vector<int64_t> read_int64(std::string_view name) const {
    const TensorView& t = at(name);
    if (t.dtype == DType::kI64) return t.copy_as<int64_t>();
    ENGRAM_CHECK(t.dtype == DType::kI32, path_, ": tensor '", name, "' has dtype ",
                 dtype_name(t.dtype), ", expected I64 or I32");
    const auto narrow = t.copy_as<int32_t>();
    return {narrow.begin(), narrow.end()};
  }

 private:
  void parse() {
    const auto* base = map_->data();
    const uint64_t file_size = map_->size();
    ENGRAM_CHECK(file_size >= 8, path_, ": file of ", file_size,
                 " bytes is too short for a safetensors header (8-byte length + JSON)");
    uint64_t header_len = 0;
    std::memcpy(&header_len, base, 8);
    if constexpr (std::endian::native == std::endian::big)
      header_len = __builtin_bswap64(header_len);
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
      tensors_.push_back(parse_tensor(name, info, data_begin, data_size));
      const auto& t = tensors_.back();
      const auto begin = static_cast<uint64_t>(t.bytes.data() - data_begin);
      ranges.emplace_back(begin, begin + t.bytes.size());
    }
    std::vector<size_t> order(ranges.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
    for (size_t i = 1; i < order.size(); ++i) {
      const auto& prev = ranges[order[i - 1]];
      const auto& cur = ranges[order[i]];
      ENGRAM_CHECK(cur.first >= prev.second || cur.first == cur.second || prev.first == prev.second,
                   path_, ": tensors '", tensors_[order[i - 1]].name, "' and '",
                   tensors_[order[i]].name, "' overlap in data_offsets");
    }
    for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  TensorView parse_tensor(const std::string& name, const nlohmann::json& info,
                          const std::byte* data_begin, uint64_t data_size) const {
    const std::string where = path_ + ": tensor '" + name + "'";
    ENGRAM_CHECK(info.is_object(), where, " must be an object with dtype, shape, data_offsets");
    TensorView t;
    t.name = name;
    t.file = path_;
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
                 end - begin, " bytes but shape ", shape_string(t.shape), " x ", dtype_str,
                 " needs ", nbytes);
    t.bytes = {data_begin + begin, static_cast<size_t>(nbytes)};
    return t;
  }

  std::string path_;
  std::shared_ptr<detail::MappedFile> map_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

/// A tensor to write: borrowed bytes, which must hold numel x dtype_size(dtype) bytes.
struct TensorWrite {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;
};

/// Describes `data` (borrowed, must outlive the write) as a tensor of T's dtype.
template <class T>
TensorWrite tensor_write(std::string name, std::vector<int64_t> shape, std::span<const T> data) {
  return {std::move(name), dtype_of<T>(), std::move(shape), std::as_bytes(data)};
}

/// Writes `tensors` in order, atomically (unique temporary file, fsync, rename). Throws on I/O
/// errors or when a tensor's byte count does not match its shape and dtype.
inline void save_safetensors(const std::string& path, std::span<const TensorWrite> tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
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
