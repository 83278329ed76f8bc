// engram/memory/tiers/page_reader.hpp: batched, high-queue-depth reads of fixed-size aligned pages
// from a file descriptor, the engine under DirectIOTier.
//
//   UringPageReader  io_uring (liburing; only when ENGRAM_HAVE_URING, i.e. linked to
//   engram::uring):
//                    up to queue_depth reads in flight from one thread, registered (fixed) buffers
//                    when the kernel allows, partial reads resubmitted.
//   PreadPageReader  the fallback: pread from a pool of threads (the caller is one of them), each
//                    with its own buffer; effective queue depth = threads.
//   AutoPageReader   io_uring when it can be set up (io_uring_queue_init can fail at run time:
//                    old kernel, seccomp, io_uring disabled), else pread threads; describe() says
//                    which one is active and why.
//
// Semantics of read_pages(offsets, on_page), offsets [n] file offsets (aligned for O_DIRECT):
//   for each k in [0, n), in no particular order and at most once:
//     read page_bytes bytes at offsets[k] into a buffer, then call on_page(k, buffer)
//   on_page(size_t k, const std::byte* data) noexcept -> bool: data is valid only during the call;
//   returning false stops the batch (reads in flight are drained, none is started).
// Returns a PageReadStatus: ok(), or the first failed read (errno, or a short read at end of
// file), or stopped. After a failure some pages may not have been delivered; every page that was
// delivered was read completely.
//
// Thread safety: one read_pages at a time per reader. PreadPageReader calls on_page concurrently
// from several threads for distinct k (callers write disjoint outputs per page); UringPageReader
// calls it on the calling thread. Construction allocates and may start threads; read_pages does
// not allocate.
#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if ENGRAM_HAVE_URING
#include <liburing.h>
#endif

#include "engram/error.hpp"
#include "engram/memory/detail/io.hpp"
#include "engram/memory/tiers/io_options.hpp"

namespace engram {

/// Outcome of one read_pages call.
struct PageReadStatus {
  int64_t failed_index = -1;  ///< index (into offsets) of the failed read, -1 if none failed
  int error = 0;              ///< its errno; 0 with failed_index >= 0 means a short read
  int64_t bytes = 0;          ///< bytes the short read got before end of file
  bool stopped = false;       ///< on_page returned false
  bool ok() const noexcept { return failed_index < 0 && !stopped; }
};

namespace detail {
/// Stands for any on_page callable in the PageReader concept.
struct PageCallbackArchetype {
  bool operator()(size_t, const std::byte*) const noexcept { return true; }
};

inline void record_failure(PageReadStatus& status, int64_t index, int error, int64_t bytes) {
  if (status.failed_index < 0 || index < status.failed_index) {
    status.failed_index = index;
    status.error = error;
    status.bytes = bytes;
  }
}
}  // namespace detail

/// A page reader: constructed from (fd, page_bytes, options), reads batches of pages.
template <class R>
concept PageReader = std::constructible_from<R, int, int64_t, const PageReaderOptions&> &&
    requires(R& reader, const R& const_reader, std::span<const int64_t> offsets,
             detail::PageCallbackArchetype on_page) {
  { reader.read_pages(offsets, on_page) } -> std::same_as<PageReadStatus>;
  { const_reader.describe() } -> std::convertible_to<std::string>;
  { const_reader.queue_depth() }
  noexcept->std::same_as<int>;
};

/// pread from a pool of threads; see the banner.
class PreadPageReader {
 public:
  PreadPageReader(int fd, int64_t page_bytes, const PageReaderOptions& options)
      : fd_(fd), page_bytes_(page_bytes), threads_(std::clamp(options.pread_threads, 1, 1024)) {
    buffers_.reserve(static_cast<size_t>(threads_));
    for (int t = 0; t < threads_; ++t) buffers_.emplace_back(page_bytes_);
    workers_.reserve(static_cast<size_t>(threads_ - 1));
    for (int t = 1; t < threads_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
  }
  PreadPageReader(const PreadPageReader&) = delete;
  PreadPageReader& operator=(const PreadPageReader&) = delete;
  ~PreadPageReader() {
    {
      std::lock_guard lock(mutex_);
      shutdown_ = true;
    }
    start_cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int queue_depth() const noexcept { return threads_; }
  std::string describe() const { return "pread x" + std::to_string(threads_) + " threads"; }

  template <class OnPage>
  PageReadStatus read_pages(std::span<const int64_t> offsets, OnPage&& on_page) {
    using Fn = std::remove_reference_t<OnPage>;
    Job job;
    job.offsets = offsets.data();
    job.count = offsets.size();
    job.context = const_cast<void*>(static_cast<const void*>(&on_page));
    job.call = [](void* context, size_t k, const std::byte* data) noexcept -> bool {
      return (*static_cast<Fn*>(context))(k, data);
    };
    if (job.count == 0) return {};
    const int helpers =
        static_cast<int>(std::min<size_t>(static_cast<size_t>(threads_ - 1), job.count - 1));
    if (helpers > 0) {
      std::lock_guard lock(mutex_);
      job_ = &job;
      active_helpers_ = helpers;
      running_ = helpers;
      ++generation_;
    }
    if (helpers > 0) start_cv_.notify_all();
    work(0, job);
    if (helpers > 0) {
      std::unique_lock lock(mutex_);
      done_cv_.wait(lock, [&] { return running_ == 0; });
      job_ = nullptr;
    }
    return job.status;
  }

 private:
  struct Job {
    const int64_t* offsets = nullptr;
    size_t count = 0;
    bool (*call)(void*, size_t, const std::byte*) noexcept = nullptr;
    void* context = nullptr;
    std::atomic<size_t> next{0};
    std::atomic<bool> stop{false};
    std::mutex status_mutex;
    PageReadStatus status;
  };

  void work(int thread, Job& job) noexcept {
    std::byte* buffer = buffers_[static_cast<size_t>(thread)].data();
    while (!job.stop.load(std::memory_order_relaxed)) {
      const size_t k = job.next.fetch_add(1, std::memory_order_relaxed);
      if (k >= job.count) break;
      const detail::ReadResult r = detail::pread_full(fd_, buffer, page_bytes_, job.offsets[k]);
      if (r.error != 0 || r.bytes != page_bytes_) {
        std::lock_guard lock(job.status_mutex);
        detail::record_failure(job.status, static_cast<int64_t>(k), r.error, r.bytes);
        job.stop.store(true, std::memory_order_relaxed);
        break;
      }
      if (!job.call(job.context, k, buffer)) {
        std::lock_guard lock(job.status_mutex);
        job.status.stopped = true;
        job.stop.store(true, std::memory_order_relaxed);
        break;
      }
    }
  }

  void worker_loop(int thread) {
    uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      start_cv_.wait(
          lock, [&] { return shutdown_ || (generation_ != seen && thread <= active_helpers_); });
      if (shutdown_) return;
      seen = generation_;
      Job* job = job_;
      lock.unlock();
      work(thread, *job);
      lock.lock();
      if (--running_ == 0) done_cv_.notify_one();
    }
  }

  int fd_;
  int64_t page_bytes_;
  int threads_;
  std::vector<detail::IoBuffer> buffers_;  // [0] is the caller's
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_cv_, done_cv_;
  Job* job_ = nullptr;
  uint64_t generation_ = 0;
  int active_helpers_ = 0;
  int running_ = 0;
  bool shutdown_ = false;
};

#if ENGRAM_HAVE_URING

/// io_uring reads, up to queue_depth in flight; see the banner. Construction throws engram::Error
/// when io_uring cannot be set up.
class UringPageReader {
 public:
  UringPageReader(int fd, int64_t page_bytes, const PageReaderOptions& options)
      : fd_(fd), page_bytes_(page_bytes), depth_(std::clamp(options.queue_depth, 1, 4096)) {
    const int r = io_uring_queue_init(static_cast<unsigned>(depth_), &ring_, 0);
    ENGRAM_CHECK(r == 0, "io_uring_queue_init(", depth_, ") failed: ", detail::errno_text(-r));
    buffers_ = detail::IoBuffer(depth_ * page_bytes_);
    std::vector<iovec> iov(static_cast<size_t>(depth_));
    for (int s = 0; s < depth_; ++s)
      iov[static_cast<size_t>(s)] = {buffer(s), static_cast<size_t>(page_bytes_)};
    fixed_buffers_ =
        io_uring_register_buffers(&ring_, iov.data(), static_cast<unsigned>(depth_)) == 0;
    fixed_file_ = io_uring_register_files(&ring_, &fd_, 1) == 0;
    slots_.resize(static_cast<size_t>(depth_));
    free_.reserve(static_cast<size_t>(depth_));
  }
  UringPageReader(const UringPageReader&) = delete;
  UringPageReader& operator=(const UringPageReader&) = delete;
  ~UringPageReader() { io_uring_queue_exit(&ring_); }

  int queue_depth() const noexcept { return depth_; }
  std::string describe() const {
    return "io_uring queue depth " + std::to_string(depth_) +
           (fixed_buffers_ ? ", registered buffers" : "");
  }

  template <class OnPage>
  PageReadStatus read_pages(std::span<const int64_t> offsets, OnPage&& on_page) {
    ENGRAM_CHECK(!broken_, "io_uring page reader is unusable after an earlier ring failure");
    PageReadStatus status;
    const size_t n = offsets.size();
    free_.clear();
    for (int s = depth_ - 1; s >= 0; --s) free_.push_back(s);
    size_t next = 0;
    int in_flight = 0;
    bool stop = false;
    while (true) {
      while (!stop && next < n && !free_.empty()) {
        const int s = free_.back();
        free_.pop_back();
        slots_[static_cast<size_t>(s)] = {next, offsets[next], 0};
        ++next;
        submit(s);
        ++in_flight;
      }
      if (in_flight == 0) break;
      const int r = io_uring_submit_and_wait(&ring_, 1);
      if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
        broken_ = true;  // reads may still target our buffers; never reuse this ring
        detail::fail("io_uring_submit_and_wait failed: ", detail::errno_text(-r));
      }
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_cqe* cqe = nullptr;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        const auto s = static_cast<int>(reinterpret_cast<uintptr_t>(io_uring_cqe_get_data(cqe)));
        Slot& slot = slots_[static_cast<size_t>(s)];
        const int res = cqe->res;
        bool release = true;
        if (res == -EAGAIN || res == -EINTR) {
          if (!stop) {
            submit(s);
            release = false;
          }
        } else if (res < 0) {
          detail::record_failure(status, static_cast<int64_t>(slot.index), -res, slot.done);
          stop = true;
        } else if (res == 0) {
          detail::record_failure(status, static_cast<int64_t>(slot.index), 0, slot.done);
          stop = true;
        } else {
          slot.done += res;
          if (slot.done < page_bytes_) {
            if (!stop) {
              submit(s);  // partial read: ask for the rest
              release = false;
            }
          } else if (!stop && !on_page(slot.index, buffer(s))) {
            status.stopped = true;
            stop = true;
          }
        }
        if (release) {
          free_.push_back(s);
          --in_flight;
        }
      }
      io_uring_cq_advance(&ring_, seen);
    }
    return status;
  }

 private:
  struct Slot {
    size_t index = 0;
    int64_t offset = 0;
    int64_t done = 0;
  };

  std::byte* buffer(int s) noexcept { return buffers_.data() + s * page_bytes_; }

  void submit(int s) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {  // cannot happen with depth_ entries, but never lose a read
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
      ENGRAM_CHECK(sqe != nullptr, "io_uring submission queue full");
    }
    const Slot& slot = slots_[static_cast<size_t>(s)];
    std::byte* dst = buffer(s) + slot.done;
    const auto length = static_cast<unsigned>(page_bytes_ - slot.done);
    const auto offset = static_cast<__u64>(slot.offset + slot.done);
    const int fd = fixed_file_ ? 0 : fd_;
    if (fixed_buffers_) {
      io_uring_prep_read_fixed(sqe, fd, dst, length, offset, s);
    } else {
      io_uring_prep_read(sqe, fd, dst, length, offset);
    }
    if (fixed_file_) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, reinterpret_cast<void*>(static_cast<uintptr_t>(s)));
  }

  int fd_;
  int64_t page_bytes_;
  int depth_;
  io_uring ring_{};
  detail::IoBuffer buffers_;
  bool fixed_buffers_ = false;
  bool fixed_file_ = false;
  bool broken_ = false;
  std::vector<Slot> slots_;
  std::vector<int> free_;
};

#endif  // ENGRAM_HAVE_URING

/// io_uring when available, else pread threads (see the banner).
class AutoPageReader {
 public:
  AutoPageReader(int fd, int64_t page_bytes, const PageReaderOptions& options) {
    using Backend = PageReaderOptions::Backend;
    if (options.backend != Backend::kPread) {
#if ENGRAM_HAVE_URING
      try {
        uring_.emplace(fd, page_bytes, options);
        return;
      } catch (const Error& e) {
        if (options.backend == Backend::kUring) throw;
        fallback_reason_ = e.what();
      }
#else
      ENGRAM_CHECK(
          options.backend != Backend::kUring,
          "io_uring requested, but engram was built without liburing (link engram::uring)");
      fallback_reason_ = "built without liburing";
#endif
    }
    pread_.emplace(fd, page_bytes, options);
  }

  /// Whether io_uring is in use.
  bool uses_uring() const noexcept {
#if ENGRAM_HAVE_URING
    return uring_.has_value();
#else
    return false;
#endif
  }
  int queue_depth() const noexcept {
#if ENGRAM_HAVE_URING
    if (uring_) return uring_->queue_depth();
#endif
    return pread_->queue_depth();
  }
  std::string describe() const {
#if ENGRAM_HAVE_URING
    if (uring_) return uring_->describe();
#endif
    return pread_->describe() +
           (fallback_reason_.empty() ? "" : " (io_uring unavailable: " + fallback_reason_ + ")");
  }

  template <class OnPage>
  PageReadStatus read_pages(std::span<const int64_t> offsets, OnPage&& on_page) {
#if ENGRAM_HAVE_URING
    if (uring_) return uring_->read_pages(offsets, on_page);
#endif
    return pread_->read_pages(offsets, on_page);
  }

 private:
#if ENGRAM_HAVE_URING
  std::optional<UringPageReader> uring_;
#endif
  std::optional<PreadPageReader> pread_;
  std::string fallback_reason_;
};

static_assert(PageReader<PreadPageReader>);
static_assert(PageReader<AutoPageReader>);
#if ENGRAM_HAVE_URING
static_assert(PageReader<UringPageReader>);
#endif

}  // namespace engram
