// engram/memory/tiers/io_options.hpp: the plain option structs of the page reader
// (page_reader.hpp) and of DirectIOTier (direct_io_tier.hpp), apart from them so that
// open_table.hpp's declarations need neither liburing nor the tiers. Plain values.
#pragma once

namespace engram {

/// Choice and sizing of the page reader.
struct PageReaderOptions {
  enum class Backend { kAuto, kUring, kPread };
  Backend backend = Backend::kAuto;
  int queue_depth = 128;   ///< io_uring reads in flight (1..4096)
  int pread_threads = 16;  ///< fallback threads, the caller included (1..1024)
};

/// Options of a DirectIOTier.
struct DirectIOOptions {
  enum class Mode { kAuto, kDirect, kBuffered };
  Mode mode = Mode::kAuto;       ///< O_DIRECT when the filesystem allows it (kAuto), always, never
  PageReaderOptions reader;      ///< backend (io_uring / pread), queue depth, threads
  bool verify_checksums = true;  ///< check every page read against the checksum table
};

}  // namespace engram
