// engram/detail/mapped_file.hpp: MappedFile, the one read-only memory mapping of a whole file.
//
// MappedFile(path) opens `path` (O_RDONLY | O_CLOEXEC), requires a regular file and maps all of it
// (MAP_PRIVATE); MappedFile(fd, bytes, path) maps the first `bytes` of an open descriptor
// (MAP_SHARED: later writes to the file stay visible), the caller keeping the descriptor. An empty
// file maps to data() == nullptr, size() == 0. Errors: engram::Error naming the path, the step and
// the errno text. The mapping lives until destruction; not copyable, not movable (hold it in a
// shared_ptr to share it). Concurrent reads of the bytes are safe.
//
//   const engram::detail::MappedFile map("model.safetensors");
//   std::span<const std::byte> bytes = map.bytes();
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "engram/detail/posix_file.hpp"
#include "engram/error.hpp"

namespace engram::detail {

/// Read-only memory mapping of a whole file (or an empty one).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    const FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ENGRAM_CHECK(fd.valid(), path, ": cannot open: ", errno_text(errno));
    struct stat st {};
    ENGRAM_CHECK(::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode), path, ": not a regular file");
    map(fd.get(), static_cast<size_t>(st.st_size), MAP_PRIVATE, path);
  }

  /// Maps the first `bytes` of the open descriptor `fd` (kept open by the caller).
  MappedFile(int fd, int64_t bytes, const std::string& path) {
    ENGRAM_CHECK(bytes >= 0, path, ": cannot map ", bytes, " bytes");
    map(fd, static_cast<size_t>(bytes), MAP_SHARED, path);
  }

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
  }

  const std::byte* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }

 private:
  void map(int fd, size_t bytes, int flags, const std::string& path) {
    if (bytes == 0) return;
    void* p = ::mmap(nullptr, bytes, PROT_READ, flags, fd, 0);
    ENGRAM_CHECK(p != MAP_FAILED, path, ": mmap of ", bytes, " bytes failed: ", errno_text(errno));
    data_ = static_cast<const std::byte*>(p);
    size_ = bytes;
  }

  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace engram::detail
