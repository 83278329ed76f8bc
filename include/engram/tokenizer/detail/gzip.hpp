// engram/tokenizer/detail/gzip.hpp: reading a file whole, plain or gzip-compressed (zlib).
//
// read_maybe_gzip(path) -> the bytes, decompressed when they start with the gzip magic (one or
// more members); at most kMaxTokenizerJsonBytes after decompression. Errors name the file.
// Reentrant; needs the engram::tokenizer component (zlib).
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>

#include "engram/error.hpp"

namespace engram::detail {

/// Largest accepted (decompressed) tokenizer.json.
inline constexpr size_t kMaxTokenizerJsonBytes = size_t{1} << 30;

/// The bytes of `path`; throws naming the file.
inline std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  ENGRAM_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  const std::streamoff size = in.tellg();
  ENGRAM_CHECK(size >= 0, path, ": cannot determine the file size (not a regular file?)");
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  in.read(bytes.data(), size);
  ENGRAM_CHECK(in.gcount() == size, path, ": read ", in.gcount(), " of ", size, " bytes");
  return bytes;
}

inline bool has_gzip_magic(std::string_view bytes) noexcept {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1F &&
         static_cast<unsigned char>(bytes[1]) == 0x8B;
}

/// Decompresses gzip `data` (one or more members) with zlib; throws naming `source` on corrupt or
/// truncated input or output beyond `max_bytes`.
inline std::string gunzip(std::string_view data, const std::string& source,
                          size_t max_bytes = kMaxTokenizerJsonBytes) {
  z_stream zs{};
  ENGRAM_CHECK(inflateInit2(&zs, 15 + 16) == Z_OK, source, ": zlib inflateInit2 failed");
  struct Guard {
    z_stream* zs;
    ~Guard() { inflateEnd(zs); }
  } guard{&zs};
  std::string out;
  size_t consumed = 0;
  char chunk[1 << 16];
  for (;;) {
    const size_t left = data.size() - consumed;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + consumed));
    zs.avail_in = static_cast<uInt>(std::min<size_t>(left, std::numeric_limits<uInt>::max()));
    const uInt offered = zs.avail_in;
    zs.next_out = reinterpret_cast<Bytef*>(chunk);
    zs.avail_out = sizeof(chunk);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    consumed += offered - zs.avail_in;
    out.append(chunk, sizeof(chunk) - zs.avail_out);
    ENGRAM_CHECK(out.size() <= max_bytes, source, ": decompresses to more than ", max_bytes,
                 " bytes");
    if (rc == Z_STREAM_END) {
      if (consumed == data.size()) return out;
      ENGRAM_CHECK(has_gzip_magic(data.substr(consumed)), source, ": ", data.size() - consumed,
                   " bytes of trailing data after the gzip stream");
      ENGRAM_CHECK(inflateReset(&zs) == Z_OK, source, ": zlib inflateReset failed");
      continue;
    }
    // Z_BUF_ERROR: no progress although there is room for output, i.e. the input ran out.
    ENGRAM_CHECK(rc != Z_BUF_ERROR || consumed < data.size(), source,
                 ": truncated gzip data (the stream ends after ", data.size(), " bytes)");
    ENGRAM_CHECK(rc == Z_OK, source,
                 ": corrupt gzip data (zlib: ", zs.msg ? zs.msg : "error " + std::to_string(rc),
                 ")");
  }
}

/// The text of `path`, decompressed when it starts with the gzip magic bytes.
inline std::string read_maybe_gzip(const std::string& path) {
  std::string bytes = read_file_bytes(path);
  if (has_gzip_magic(bytes)) return gunzip(bytes, path);
  ENGRAM_CHECK(bytes.size() <= kMaxTokenizerJsonBytes, path, ": larger than ",
               kMaxTokenizerJsonBytes, " bytes");
  return bytes;
}

}  // namespace engram::detail
