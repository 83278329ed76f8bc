// Shared by the tier benchmarks: the packed table they read, fused FP8 rows of a 3-gram, 8-head
// layer (512 data bytes + 16 scale bytes = 528-byte rows, 16 columns), filled with pseudo-random
// bytes, created once under ENGRAM_BENCH_DIR (default /var/tmp/engram-bench) and reused while its
// layout matches.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engram/error.hpp"
#include "engram/io/config.hpp"
#include "engram/memory/packed_writer.hpp"
#include "engram/memory/tiers/packed_file.hpp"

namespace engram::bench {

constexpr int64_t kHeadDim = 512;  // fused FP8 rows: 512 bytes + 16 scale bytes = 528 bytes
constexpr int64_t kColumns = 16;   // N = 3, H = 8

inline EngramConfig table_config() {
  EngramConfig c;
  c.variant = Variant::kFused;
  c.max_ngram_size = 3;
  c.n_head_per_ngram = 8;
  c.engram_vocab_size = {1000, 1000};
  c.layer_ids = {0};
  c.hidden_size = 1024;
  c.hc_mult = 4;
  c.head_dim = kHeadDim;
  c.validate("bench config");
  return c;
}

/// The path of `name` (a file name) under the bench directory, holding about `bytes` bytes of
/// rows; written (with progress on stderr) when missing or of another layout.
inline std::string packed_table(const std::string& name, double bytes) {
  const char* dir_env = std::getenv("ENGRAM_BENCH_DIR");
  const std::string dir = dir_env != nullptr ? dir_env : "/var/tmp/engram-bench";
  std::filesystem::create_directories(dir);
  const int64_t row_bytes = kHeadDim + kHeadDim / 32;
  const int64_t per_column = static_cast<int64_t>(bytes) / row_bytes / kColumns;
  const PackedTableInfo info = PackedTableInfo::make(
      table_config(), 0, "fp8_e4m3", std::vector<int64_t>(kColumns, per_column), {1, 3, 5});
  const std::string file = dir + "/" + name;
  try {
    const PackedTableFile existing(file);
    if (existing.info().to_json() == info.to_json()) return file;
  } catch (const Error&) {
  }
  std::fprintf(stderr, "creating %s (%.2f GB) ...\n", file.c_str(), bytes / 1e9);
  PackedTableWriter writer(file, info, [](const PackProgress& p) {
    std::fprintf(stderr, "\r  %lld / %lld rows, %.0f MB/s, %.0f s left   ",
                 static_cast<long long>(p.rows_done), static_cast<long long>(p.rows_total),
                 p.megabytes_per_second, p.seconds_left);
  });
  std::vector<std::byte> rows(static_cast<size_t>(4096 * row_bytes));
  uint64_t state = 0x9E3779B97F4A7C15ULL;  // xorshift64: fast, deterministic filler
  for (int64_t done = 0; done < info.num_rows;) {
    const int64_t n = std::min<int64_t>(4096, info.num_rows - done);
    for (size_t i = 0; i < static_cast<size_t>(n * row_bytes); i += 8) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      std::memcpy(rows.data() + i, &state, 8);
    }
    writer.append(std::span<const std::byte>(rows.data(), static_cast<size_t>(n * row_bytes)));
    done += n;
  }
  writer.finish();
  std::fprintf(stderr, "\n");
  return file;
}

/// n row ids uniform in [0, num_rows), fixed seed: a pool to cycle through, generated outside the
/// timed loop.
inline std::vector<int64_t> uniform_ids(int64_t num_rows, size_t n) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int64_t> d(0, num_rows - 1);
  std::vector<int64_t> ids(n);
  for (auto& id : ids) id = d(rng);
  return ids;
}

}  // namespace engram::bench
