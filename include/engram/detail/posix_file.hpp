// engram/detail/posix_file.hpp: POSIX file helpers every folder may use: an owned file
// descriptor, thread-safe errno text, full writes, and AtomicFile, which makes a new file appear
// at its path complete or not at all.
//
// AtomicFile(path) creates a temporary "<path>.tmp.XXXXXX" (mkstemp: unique, so concurrent writers
// of one path never share it) in the directory of `path`; write() appends to it; commit() fsyncs
// it, closes it, renames it over `path` and fsyncs the directory. Any error, or destruction before
// commit(), removes the temporary. Concurrent writers of one path each rename a complete file:
// the last rename wins and readers see one writer's whole file, never a mix.
// Errors: engram::Error naming the temporary or final path, the step and strerror text.
//
// Internal (engram::detail): no stability promise. Thread safety: the free functions are reentrant;
// FileDescriptor and AtomicFile are plain owners (not synchronised).
//
//   engram::detail::AtomicFile file("out.bin");
//   file.write(bytes.data(), bytes.size());
//   file.commit();  // only now does out.bin hold the new contents
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "engram/error.hpp"

namespace engram::detail {

/// strerror text of `error` (thread-safe; works with both strerror_r flavours).
inline std::string errno_text(int error) {
  char buffer[256] = {};
  auto result = strerror_r(error, buffer, sizeof buffer);
  if constexpr (std::is_same_v<decltype(result), char*>) {
    return result;
  } else {
    return result == 0 ? std::string(buffer) : "errno " + std::to_string(error);
  }
}

/// Owns a file descriptor; closes it on destruction.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  /// Gives up ownership (the caller closes the descriptor).
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

/// Writes all `length` bytes (retrying EINTR and partial writes) or throws naming `path`.
inline void write_all(int fd, const void* buffer, int64_t length, const std::string& path) {
  const auto* in = static_cast<const char*>(buffer);
  int64_t done = 0;
  while (done < length) {
    const ssize_t n = ::write(fd, in + done, static_cast<size_t>(length - done));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, ": write failed after ", done, " of ", length, " bytes: ", errno_text(errno));
    }
    done += n;
  }
}

/// A new file that appears at its path, complete, only when commit() succeeds (see the banner).
class AtomicFile {
 public:
  /// Creates the temporary beside `path` (mode 0644).
  explicit AtomicFile(std::string path) : path_(std::move(path)) {
    std::vector<char> name(path_.begin(), path_.end());
    for (char c : std::string(".tmp.XXXXXX")) name.push_back(c);
    name.push_back('\0');
    fd_ = FileDescriptor(::mkostemp(name.data(), O_CLOEXEC));
    ENGRAM_CHECK(fd_.valid(), path_,
                 ": cannot create a temporary file beside it: ", errno_text(errno));
    temp_path_ = name.data();
    if (::fchmod(fd_.get(), 0644) != 0) {  // mkstemp makes 0600; files here are shared data
      const int error = errno;
      discard();
      fail(temp_path_, ": chmod failed: ", errno_text(error));
    }
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  /// Removes the temporary unless commit() succeeded.
  ~AtomicFile() { discard(); }

  const std::string& path() const noexcept { return path_; }
  const std::string& temp_path() const noexcept { return temp_path_; }
  /// The temporary's descriptor (valid until commit()).
  int fd() const noexcept { return fd_.get(); }

  /// Appends `length` bytes to the temporary.
  void write(const void* data, int64_t length) { write_all(fd_.get(), data, length, temp_path_); }

  /// fsync, close, rename over path(), fsync the directory. Throws (and removes the temporary)
  /// when any step up to the rename fails; the directory fsync is best effort (some filesystems
  /// refuse it).
  void commit() {
    ENGRAM_CHECK(fd_.valid() && !committed_, path_, ": commit() of a file already committed");
    step(::fsync(fd_.get()) == 0, "fsync");
    step(::close(fd_.release()) == 0, "close");
    step(::rename(temp_path_.c_str(), path_.c_str()) == 0, "rename to the final path");
    committed_ = true;
    const size_t slash = path_.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash + 1);
    FileDescriptor d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d.valid()) ::fsync(d.get());
  }

 private:
  void step(bool ok, const char* what) {
    if (ok) return;
    const int error = errno;
    discard();
    fail(temp_path_, ": ", what, " failed: ", errno_text(error));
  }
  void discard() noexcept {
    fd_.reset();
    if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
    committed_ = true;  // nothing left to remove
  }

  std::string path_, temp_path_;
  FileDescriptor fd_;
  bool committed_ = false;
};

}  // namespace engram::detail
