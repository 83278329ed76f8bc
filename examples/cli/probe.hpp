// probe.hpp: `engram probe`, this machine's limits, the denominators of every speed figure.
//
// Measures, each as the best of a few short repetitions:
//   f32 FMA peak        GFLOP/s of independent fused multiply-add chains (AVX-512 or AVX2, the
//                       widest active_isa() allows), one core and all threads
//   bf16 dot peak       GFLOP/s of vdpbf16ps chains (2 FLOP per bf16 pair), where the CPU has
//                       AVX512-BF16; absent otherwise
//   sequential read     GB/s summing a buffer far larger than the caches, all threads
//   random 256 B gather rows/s and GB/s copying random 256-byte rows out of that buffer (an FP8
//                       V4.1 row is 256 bytes), all threads
//   4 KiB random reads  IOPS of O_DIRECT reads (buffered where the filesystem refuses O_DIRECT:
//                       the report says so) of a scratch file in a given directory, through the
//                       library's page reader (io_uring where it can be set up, else pread threads)
// The result is printed and, with -o, written as JSON (`engram bench --probe FILE` reads it to
// print achieved figures as fractions of these). Figures are this machine's at this moment: a
// shared or throttled host moves them, so take them next to the run they describe.
#pragma once

#include <fcntl.h>
#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engram/detail/cpu_features.hpp"
#include "engram/error.hpp"
#include "engram/memory/tiers/page_reader.hpp"

namespace engram::probe {

/// One machine's limits (figures are 0 where not measured).
struct Limits {
  std::string isa;
  int threads = 1;
  double fma_gflops_core = 0, fma_gflops_all = 0;
  double bf16_gflops_core = 0, bf16_gflops_all = 0;
  double read_gbps = 0;
  double gather_rows_per_s = 0, gather_gbps = 0;
  double iops_4k = 0;
  std::string io_mode;  ///< e.g. "O_DIRECT, io_uring depth 128"

  nlohmann::json to_json() const {
    return {{"isa", isa},
            {"threads", threads},
            {"fma_gflops_core", fma_gflops_core},
            {"fma_gflops_all", fma_gflops_all},
            {"bf16_gflops_core", bf16_gflops_core},
            {"bf16_gflops_all", bf16_gflops_all},
            {"read_gbps", read_gbps},
            {"gather_rows_per_s", gather_rows_per_s},
            {"gather_gbps", gather_gbps},
            {"iops_4k", iops_4k},
            {"io_mode", io_mode}};
  }

  /// Reads a file written by `engram probe -o`; errors name the file and the field.
  static Limits load(const std::string& path) {
    std::ifstream in(path);
    ENGRAM_CHECK(in.good(), path, ": cannot open probe file");
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      ::engram::detail::fail(path, ": not a JSON probe file (", e.what(), ")");
    }
    Limits l;
    auto number = [&](const char* field, double& out) {
      ENGRAM_CHECK(j.contains(field) && j[field].is_number() && j[field].get<double>() >= 0, path,
                   ": field '", field, "' must be a number >= 0");
      out = j[field].get<double>();
    };
    number("fma_gflops_core", l.fma_gflops_core);
    number("fma_gflops_all", l.fma_gflops_all);
    number("bf16_gflops_core", l.bf16_gflops_core);
    number("bf16_gflops_all", l.bf16_gflops_all);
    number("read_gbps", l.read_gbps);
    number("gather_rows_per_s", l.gather_rows_per_s);
    number("gather_gbps", l.gather_gbps);
    number("iops_4k", l.iops_4k);
    double threads = 1;
    number("threads", threads);
    l.threads = static_cast<int>(threads);
    l.isa = j.value("isa", std::string());
    l.io_mode = j.value("io_mode", std::string());
    return l;
  }
};

namespace detail {

using Clock = std::chrono::steady_clock;

inline double seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Runs fn(thread_index) on `threads` threads at once; returns the wall time of the slowest.
template <class Fn>
double run_on_threads(int threads, Fn&& fn) {
  std::vector<std::thread> pool;
  const auto t0 = Clock::now();
  for (int t = 1; t < threads; ++t) pool.emplace_back([&fn, t] { fn(t); });
  fn(0);
  for (auto& th : pool) th.join();
  return seconds(t0);
}

constexpr int kChains = 12;  // independent accumulators: covers FMA latency x 2 ports

__attribute__((target("avx512f"))) inline float fma_chains_avx512(int64_t iters) {
  __m512 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm512_set1_ps(static_cast<float>(k));
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i) {
    for (int k = 0; k < kChains; ++k) acc[k] = _mm512_fmadd_ps(acc[k], b, c);
  }
  __m512 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm512_add_ps(sum, acc[k]);
  return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) inline float fma_chains_avx2(int64_t iters) {
  __m256 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm256_set1_ps(static_cast<float>(k));
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i) {
    for (int k = 0; k < kChains; ++k) acc[k] = _mm256_fmadd_ps(acc[k], b, c);
  }
  __m256 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm256_add_ps(sum, acc[k]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float s = 0;
  for (float v : lanes) s += v;
  return s;
}

__attribute__((target("avx512f,avx512bf16"))) inline float bf16_chains(int64_t iters) {
  __m512 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm512_set1_ps(static_cast<float>(k));
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3F80);  // 1.0 in bf16
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3380);  // 2^-24 in bf16
  for (int64_t i = 0; i < iters; ++i) {
    for (int k = 0; k < kChains; ++k) acc[k] = _mm512_dpbf16_ps(acc[k], a, b);
  }
  __m512 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm512_add_ps(sum, acc[k]);
  return _mm512_reduce_add_ps(sum);
}

/// GFLOP/s of `kernel` (FLOP per iteration given) on `threads` threads, best of `reps`.
template <class Kernel>
double peak_gflops(Kernel kernel, double flop_per_iter, int threads, int reps) {
  constexpr int64_t kIters = 20'000'000;
  std::vector<float> sink(static_cast<size_t>(threads));
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double s = run_on_threads(threads, [&](int t) { sink[t] = kernel(kIters); });
    best = std::max(best, flop_per_iter * static_cast<double>(kIters) * threads / s * 1e-9);
  }
  volatile float keep = sink[0];
  (void)keep;
  return best;
}

/// Sum of a buffer's 64-bit words, split over threads; returns GB/s (best of reps).
inline double read_bandwidth(const std::vector<uint64_t>& buffer, int threads, int reps) {
  const size_t n = buffer.size();
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double s = run_on_threads(threads, [&](int t) {
      const size_t begin = n * t / threads, end = n * (t + 1) / threads;
      uint64_t a = 0, b = 0, c = 0, d = 0;
      size_t i = begin;
      for (; i + 4 <= end; i += 4) {
        a += buffer[i];
        b ^= buffer[i + 1];
        c += buffer[i + 2];
        d ^= buffer[i + 3];
      }
      for (; i < end; ++i) a += buffer[i];
      sums[t] = a + b + c + d;
    });
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / s * 1e-9);
  }
  volatile uint64_t keep = sums[0];
  (void)keep;
  return best;
}

/// Random 256-byte rows copied out of the buffer; returns rows/s (best of reps).
inline double gather_rate(const std::vector<uint64_t>& buffer, int threads, int reps) {
  constexpr size_t kRowBytes = 256, kRowsPerThread = 2'000'000;
  const uint64_t rows = buffer.size() * sizeof(uint64_t) / kRowBytes;
  const auto* base = reinterpret_cast<const std::byte*>(buffer.data());
  std::vector<uint64_t> checks(static_cast<size_t>(threads));
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double s = run_on_threads(threads, [&](int t) {
      alignas(64) std::byte out[16 * kRowBytes];
      uint64_t x = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(t + 1 + r * 64), check = 0;
      for (size_t i = 0; i < kRowsPerThread; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::memcpy(out + (i % 16) * kRowBytes, base + (x % rows) * kRowBytes, kRowBytes);
        check += static_cast<uint64_t>(out[(i % 16) * kRowBytes]);
      }
      checks[t] = check;
    });
    best = std::max(best, static_cast<double>(kRowsPerThread) * threads / s);
  }
  volatile uint64_t keep = checks[0];
  (void)keep;
  return best;
}

/// 4 KiB random reads of a scratch file in `dir` for about `seconds`; returns IOPS and the mode.
inline std::pair<double, std::string> random_read_iops(const std::filesystem::path& dir,
                                                       int64_t file_mb, double seconds) {
  constexpr int64_t kPage = 4096;
  const std::filesystem::path path = dir / ("engram-probe-" + std::to_string(::getpid()) + ".bin");
  struct Remove {
    std::filesystem::path p;
    ~Remove() {
      std::error_code ec;
      std::filesystem::remove(p, ec);
    }
  } remove{path};
  {
    std::ofstream out(path, std::ios::binary);
    ENGRAM_CHECK(out.good(), path.string(), ": cannot create the probe's scratch file");
    std::vector<char> chunk(1 << 20);
    for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>(i * 131 + 7);
    for (int64_t m = 0; m < file_mb; ++m)
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    ENGRAM_CHECK(out.good(), path.string(), ": writing the probe's scratch file failed");
  }
  bool direct = true;
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) {
    direct = false;
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  ENGRAM_CHECK(fd >= 0, path.string(),
               ": cannot open the probe's scratch file: ", std::strerror(errno));
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } close_fd{fd};
  PageReaderOptions options;
  options.queue_depth = 128;
  options.pread_threads = 64;
  AutoPageReader reader(fd, kPage, options);
  const int64_t pages = file_mb * (1 << 20) / kPage;
  std::vector<int64_t> offsets(4096);
  uint64_t x = 88172645463325252ull;
  int64_t done = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (auto& o : offsets) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      o = static_cast<int64_t>(x % static_cast<uint64_t>(pages)) * kPage;
    }
    const PageReadStatus status =
        reader.read_pages(offsets, [](size_t, const std::byte*) noexcept { return true; });
    ENGRAM_CHECK(status.ok(), path.string(), ": probe read failed (errno ", status.error, ")");
    done += static_cast<int64_t>(offsets.size());
    elapsed = detail::seconds(t0);
  }
  return {
      static_cast<double>(done) / elapsed,
      std::string(direct ? "O_DIRECT" : "buffered (O_DIRECT refused)") + ", " + reader.describe()};
}

}  // namespace detail

/// What to measure and how big.
struct ProbeOptions {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int64_t memory_mb = 1024;           ///< buffer for bandwidth and gather (>> last-level cache)
  std::optional<std::string> io_dir;  ///< directory for the IOPS scratch file; none: skipped
  int64_t io_file_mb = 1024;
  double io_seconds = 3;
  int reps = 3;
};

/// Measures this machine's limits (a few seconds to a minute, by the sizes above).
inline Limits measure(const ProbeOptions& o) {
  Limits l;
  const Isa isa = active_isa();
  l.isa = std::string(isa_name(isa));
  l.threads = o.threads;
  if (isa >= Isa::kAvx512) {
    auto k = [](int64_t n) { return detail::fma_chains_avx512(n); };
    const double flop = 2.0 * 16 * detail::kChains;
    l.fma_gflops_core = detail::peak_gflops(k, flop, 1, o.reps);
    l.fma_gflops_all = detail::peak_gflops(k, flop, o.threads, o.reps);
  } else if (isa >= Isa::kAvx2) {
    auto k = [](int64_t n) { return detail::fma_chains_avx2(n); };
    const double flop = 2.0 * 8 * detail::kChains;
    l.fma_gflops_core = detail::peak_gflops(k, flop, 1, o.reps);
    l.fma_gflops_all = detail::peak_gflops(k, flop, o.threads, o.reps);
  }
  if (isa >= Isa::kAvx512Bf16) {
    auto k = [](int64_t n) { return detail::bf16_chains(n); };
    const double flop = 2.0 * 32 * detail::kChains;
    l.bf16_gflops_core = detail::peak_gflops(k, flop, 1, o.reps);
    l.bf16_gflops_all = detail::peak_gflops(k, flop, o.threads, o.reps);
  }
  {
    std::vector<uint64_t> buffer(static_cast<size_t>(o.memory_mb) * (1 << 20) / sizeof(uint64_t));
    for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = i * 0x9E3779B97F4A7C15ull;
    l.read_gbps = detail::read_bandwidth(buffer, o.threads, o.reps);
    l.gather_rows_per_s = detail::gather_rate(buffer, o.threads, o.reps);
    l.gather_gbps = l.gather_rows_per_s * 256 * 1e-9;
  }
  if (o.io_dir) {
    std::tie(l.iops_4k, l.io_mode) =
        detail::random_read_iops(*o.io_dir, o.io_file_mb, o.io_seconds);
  }
  return l;
}

/// The human-readable report.
inline void print(const Limits& l, std::FILE* out) {
  std::fprintf(out, "isa %s, %d threads\n", l.isa.c_str(), l.threads);
  std::fprintf(out, "f32 FMA peak      %9.1f GFLOP/s one core, %9.1f all threads\n",
               l.fma_gflops_core, l.fma_gflops_all);
  if (l.bf16_gflops_all > 0) {
    std::fprintf(out, "bf16 dot peak     %9.1f GFLOP/s one core, %9.1f all threads\n",
                 l.bf16_gflops_core, l.bf16_gflops_all);
  } else {
    std::fprintf(out,
                 "bf16 dot peak     n/a (no AVX512-BF16 on this CPU, or limited by ENGRAM_ISA)\n");
  }
  std::fprintf(out, "sequential read   %9.2f GB/s\n", l.read_gbps);
  std::fprintf(out, "random 256 B rows %9.2f M rows/s (%.2f GB/s)\n", l.gather_rows_per_s * 1e-6,
               l.gather_gbps);
  if (l.iops_4k > 0) {
    std::fprintf(out, "4 KiB random read %9.0f IOPS (%s)\n", l.iops_4k, l.io_mode.c_str());
  } else {
    std::fprintf(out, "4 KiB random read n/a (no --dir given)\n");
  }
}

}  // namespace engram::probe
