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
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engram/detail/compiled.hpp"
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

  /// Maps and validates `path`; throws engram::Error naming the file and the field at fault.
  explicit SafetensorsFile(std::string path);

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
  void parse();

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
ENGRAM_INLINE void save_safetensors(const std::string& path, std::span<const TensorWrite> tensors,
                                    const std::map<std::string, std::string>& metadata = {});

}  // namespace engram

#if ENGRAM_DEFINITIONS
#include "engram/io/detail/safetensors_impl.hpp"
#endif
