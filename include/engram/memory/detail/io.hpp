// engram/memory/detail/io.hpp: small POSIX helpers shared by the packed-table reader/writer,
// the page readers and the tiers: page-aligned buffers, full reads that retry EINTR and short
// transfers, little-endian fields (the descriptor, errno text and full writes are in the core's
// engram/detail/posix_file.hpp).
//
// Internal (engram::detail): no stability promise. Thread safety: the free functions are reentrant;
// FileDescriptor and IoBuffer are plain owners (not synchronised).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "engram/detail/posix_file.hpp"
#include "engram/error.hpp"

namespace engram::detail {

/// Alignment of O_DIRECT buffers, offsets and lengths (the largest logical block size in use).
inline constexpr int64_t kIoAlignment = 4096;

/// `value` rounded up to a multiple of `alignment` (> 0).
constexpr int64_t align_up(int64_t value, int64_t alignment) noexcept {
  return (value + alignment - 1) / alignment * alignment;
}

/// A zero-initialised buffer whose start is aligned to `alignment` and whose size is rounded up to
/// it (what O_DIRECT and io_uring fixed buffers need).
class IoBuffer {
 public:
  IoBuffer() = default;
  explicit IoBuffer(int64_t bytes, int64_t alignment = kIoAlignment)
      : size_(static_cast<size_t>(align_up(bytes > 0 ? bytes : 1, alignment))) {
    void* p = std::aligned_alloc(static_cast<size_t>(alignment), size_);
    if (p == nullptr) throw std::bad_alloc();
    std::memset(p, 0, size_);
    data_.reset(static_cast<std::byte*>(p));
  }
  std::byte* data() noexcept { return data_.get(); }
  const std::byte* data() const noexcept { return data_.get(); }
  int64_t size() const noexcept { return static_cast<int64_t>(size_); }

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<std::byte[], Free> data_;
  size_t size_ = 0;
};

/// Outcome of pread_full: bytes read (less than asked only at end of file) or an errno.
struct ReadResult {
  int64_t bytes = 0;
  int error = 0;
};

/// Reads up to `length` bytes at `offset`, retrying EINTR and partial reads; stops at end of file.
inline ReadResult pread_full(int fd, void* buffer, int64_t length, int64_t offset) noexcept {
  ReadResult r;
  auto* out = static_cast<char*>(buffer);
  while (r.bytes < length) {
    const ssize_t n = ::pread(fd, out + r.bytes, static_cast<size_t>(length - r.bytes),
                              static_cast<off_t>(offset + r.bytes));
    if (n < 0) {
      if (errno == EINTR) continue;
      r.error = errno;
      return r;
    }
    if (n == 0) break;
    r.bytes += n;
  }
  return r;
}

/// Reads exactly `length` bytes at `offset` or throws naming `path` and `what`.
inline void pread_exact(int fd, void* buffer, int64_t length, int64_t offset,
                        const std::string& path, const char* what) {
  const ReadResult r = pread_full(fd, buffer, length, offset);
  ENGRAM_CHECK(r.error == 0, path, ": I/O error reading ", what, " (", length, " bytes at offset ",
               offset, "): ", errno_text(r.error));
  ENGRAM_CHECK(r.bytes == length, path, ": truncated: ", what, " needs ", length,
               " bytes at offset ", offset, ", only ", r.bytes, " present");
}

/// Size of an open file in bytes, or throws naming `path`.
inline int64_t file_size(int fd, const std::string& path) {
  struct stat st {};
  ENGRAM_CHECK(::fstat(fd, &st) == 0, path, ": fstat failed: ", errno_text(errno));
  return static_cast<int64_t>(st.st_size);
}

// Little-endian fixed-width fields, independent of the host byte order.
inline void store_le64(std::byte* p, uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xFF);
}
inline void store_le32(std::byte* p, uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xFF);
}
inline uint64_t load_le64(const std::byte* p) noexcept {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}
inline uint32_t load_le32(const std::byte* p) noexcept {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace engram::detail
