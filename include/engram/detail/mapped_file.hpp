// engram/detail/mapped_file.hpp: a read-only memory mapping of a whole file, the one mmap wrapper
// of the library's file readers (packed tables; io/safetensors.hpp's MappedFile is the same
// contract by path and may become an alias of it).
//
// ReadOnlyMapping(path) opens a regular file and maps all of it (an empty file maps nothing);
// ReadOnlyMapping(fd, bytes, path) maps the first `bytes` bytes of an open descriptor, which the
// caller keeps owning. Mappings are MAP_SHARED: pages come from the page cache and are never
// written. Errors: engram::Error naming the path, the step and strerror text.
//
// Internal (engram::detail): no stability promise. Thread safety: immutable after construction;
// share it (e.g. through shared_ptr) for as long as views into bytes() live.
//
//   auto mapping = std::make_shared<const engram::detail::ReadOnlyMapping>("table.engram");
//   std::span<const std::byte> bytes = mapping->bytes();
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "engram/detail/posix_file.hpp"
#include "engram/error.hpp"

namespace engram::detail {

/// A read-only shared mapping of a whole file (see the banner).
class ReadOnlyMapping {
 public:
  /// Maps all of the regular file at `path`.
  explicit ReadOnlyMapping(const std::string& path) {
    const FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ENGRAM_CHECK(fd.valid(), path, ": cannot open: ", errno_text(errno));
    struct stat st {};
    ENGRAM_CHECK(::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode), path, ": not a regular file");
    map(fd.get(), static_cast<int64_t>(st.st_size), path);
  }
  /// Maps the first `bytes` bytes of the open descriptor `fd` (still owned by the caller).
  ReadOnlyMapping(int fd, int64_t bytes, const std::string& path) { map(fd, bytes, path); }
  ReadOnlyMapping(const ReadOnlyMapping&) = delete;
  ReadOnlyMapping& operator=(const ReadOnlyMapping&) = delete;
  ~ReadOnlyMapping() {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), static_cast<size_t>(bytes_));
  }

  const std::byte* data() const noexcept { return data_; }
  int64_t size() const noexcept { return bytes_; }
  std::span<const std::byte> bytes() const noexcept { return {data_, static_cast<size_t>(bytes_)}; }

 private:
  void map(int fd, int64_t bytes, const std::string& path) {
    bytes_ = bytes;
    if (bytes_ == 0) return;
    void* p = ::mmap(nullptr, static_cast<size_t>(bytes_), PROT_READ, MAP_SHARED, fd, 0);
    ENGRAM_CHECK(p != MAP_FAILED, path, ": mmap of ", bytes_, " bytes failed: ", errno_text(errno));
    data_ = static_cast<const std::byte*>(p);
  }

  const std::byte* data_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace engram::detail
