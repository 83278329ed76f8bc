// Test helpers for the memory tiers: small random tables for several row layouts (packed into a
// scratch directory), id patterns (uniform, Zipfian, duplicates, corners), the reference gather,
// and fault injection (a page reader that fails or corrupts chosen pages, a tier that fails chosen
// batches or sleeps).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "engram/error.hpp"
#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/memory/packed_writer.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/page_reader.hpp"
#include "engram/memory/tiers/row_tier.hpp"

namespace engram::test {

/// Where scratch directories go: ENGRAM_TEST_SCRATCH_DIR (tests/memory/tiers/tests.cmake sets it to
/// a folder of the build tree, so that the tier tests read a real filesystem, as a user's tables
/// do, and not a tmpfs TMPDIR), else $TMPDIR, else /tmp.
inline std::filesystem::path scratch_root() {
#ifdef ENGRAM_TEST_SCRATCH_DIR
  return ENGRAM_TEST_SCRATCH_DIR;
#else
  const char* base = std::getenv("TMPDIR");
  return base != nullptr && *base ? base : "/tmp";
#endif
}

/// A directory under scratch_root(), removed with everything in it on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    path_ = scratch_root() / ("engram_" + tag + "_" + std::to_string(::getpid()) + "_" +
                              std::to_string(counter.fetch_add(1)));
    std::filesystem::create_directories(path_);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

/// Whether the filesystem of `dir` serves O_DIRECT reads: a 4 KiB file written there, opened with
/// O_DIRECT and read back through an aligned buffer (independent of the tiers under test).
inline bool direct_io_supported(const std::filesystem::path& dir) {
  const std::string path = (dir / "o_direct_probe").string();
  {
    const std::string page(4096, 'x');
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ENGRAM_CHECK(fd >= 0 && ::write(fd, page.data(), page.size()) == 4096 && ::fsync(fd) == 0, path,
                 ": cannot write the O_DIRECT probe");
    ::close(fd);
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  bool ok = false;
  if (fd >= 0) {
    void* buffer = std::aligned_alloc(4096, 4096);
    ok = buffer != nullptr && ::pread(fd, buffer, 4096, 0) == 4096;
    std::free(buffer);
    ::close(fd);
  }
  ::unlink(path.c_str());
  return ok;
}

/// A row layout to test: codec, values per row, rows in the table.
struct RowCase {
  std::string name;
  std::string codec;
  int64_t row_dim;
  int64_t num_rows;
  bool fused;  ///< fused config (head_dim = row_dim) instead of demo (n_embed = 2 * row_dim)
};

/// Row sizes that divide 4096 and that do not, FP8 records with scales, a row larger than a page.
inline const std::vector<RowCase>& row_cases() {
  static const std::vector<RowCase> cases = {
      {"f32_d1_4B", "f32", 1, 40000, false},              // 1024 rows per page
      {"f32_d64_256B", "f32", 64, 5000, false},           // divides 4096
      {"f32_d85_340B", "f32", 85, 5000, false},           // 12 rows + 16 spare bytes per page
      {"bf16_d163_326B", "bf16", 163, 5000, false},       // odd row size
      {"fp8_d128_132B", "fp8_e4m3", 128, 8000, true},     // 128 data + 4 scale bytes
      {"fp8_d85_88B", "fp8_e4m3", 85, 8000, false},       // partial scale block
      {"fp8_d1024_1056B", "fp8_e4m3", 1024, 1500, true},  // 3 rows per page, 928 spare bytes
      {"f32_d1100_4400B", "f32", 1100, 300, false},       // one row per 8 KiB page
  };
  return cases;
}

inline EngramConfig test_config(const RowCase& c, int64_t layer = 3) {
  EngramConfig config;
  config.variant = c.fused ? Variant::kFused : Variant::kDemo;
  config.max_ngram_size = 3;
  config.n_head_per_ngram = 2;
  config.engram_vocab_size = {1000, 1000};
  config.layer_ids = {1, layer};
  config.hidden_size = 64;
  config.hc_mult = 1;
  if (c.fused) {
    config.head_dim = c.row_dim;
  } else {
    config.n_embed_per_ngram = 2 * c.row_dim;
  }
  config.validate("test config " + c.name);
  return config;
}

/// Table metadata for a case: 4 columns whose sizes sum to c.num_rows.
inline PackedTableInfo test_info(const RowCase& c) {
  const int64_t q = c.num_rows / 4;
  std::vector<int64_t> primes = {q + 1, q - 1, q + 3, c.num_rows - (3 * q + 3)};
  return PackedTableInfo::make(test_config(c), 3, c.codec, std::move(primes), {7, 11, 13});
}

/// Deterministic pseudo-random row records.
inline std::vector<std::byte> random_rows(int64_t num_rows, int64_t row_bytes, uint64_t seed) {
  std::vector<std::byte> rows(static_cast<size_t>(num_rows * row_bytes));
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < rows.size(); i += 8) {
    const uint64_t v = rng();
    for (size_t b = 0; b < 8 && i + b < rows.size(); ++b)
      rows[i + b] = static_cast<std::byte>(v >> (8 * b));
  }
  return rows;
}

/// A case's reference rows and its packed file.
struct TestTable {
  RowCase row_case;
  PackedTableInfo info;
  std::vector<std::byte> rows;  // [num_rows, row_bytes]
  std::string packed_path;
  int64_t row_bytes() const { return info.row_bytes(); }
  int64_t num_rows() const { return info.num_rows; }
};

/// Writes rows to a packed file in uneven append calls (exercises chunk and page boundaries).
inline void write_packed(const std::string& path, const PackedTableInfo& info,
                         std::span<const std::byte> rows, int64_t chunk_bytes = 64 << 10) {
  PackedTableWriter writer(path, info, {}, 0.5, chunk_bytes);
  const int64_t rb = info.row_bytes();
  int64_t done = 0, step = 1;
  while (done < info.num_rows) {
    const int64_t n = std::min(step, info.num_rows - done);
    writer.append(rows.subspan(static_cast<size_t>(done * rb), static_cast<size_t>(n * rb)));
    done += n;
    step = step * 3 + 1;
  }
  writer.finish();
}

/// The process-wide scratch directory for shared test tables.
inline ScratchDir& shared_scratch() {
  static ScratchDir dir("tiers");
  return dir;
}

/// The table of a case, built and packed once per process.
inline const TestTable& test_table(const RowCase& c) {
  static std::map<std::string, TestTable> tables;
  auto it = tables.find(c.name);
  if (it != tables.end()) return it->second;
  TestTable t;
  t.row_case = c;
  t.info = test_info(c);
  t.rows = random_rows(t.info.num_rows, t.info.row_bytes(), std::hash<std::string>{}(c.name));
  t.packed_path = shared_scratch().file(c.name + ".engram");
  write_packed(t.packed_path, t.info, t.rows);
  return tables.emplace(c.name, std::move(t)).first->second;
}

/// Where a case's table is written as safetensors shard(s), the released V4.1 layout: weight
/// tensor `layers.3.engram.embed.weight` and, for FP8 rows, `layers.3.engram.embed.scale`, with
/// unrelated tensors of odd sizes around them so that rows straddle 4 KiB pages.
struct ShardFiles {
  std::string weight_file, scale_file;  ///< equal unless the case was written split
  std::string weight_tensor = "layers.3.engram.embed.weight";
  std::string scale_tensor;  ///< empty for dense rows
};

/// Writes `t` as shards once per process (`split`: the scale tensor in a second shard).
inline const ShardFiles& shard_files(const TestTable& t, bool split) {
  static std::map<std::string, ShardFiles> written;
  const std::string key = t.row_case.name + (split ? "_split" : "");
  auto it = written.find(key);
  if (it != written.end()) return it->second;
  const PackedTableInfo& info = t.info;
  const int64_t db = info.data_bytes_per_row(), sb = info.scale_bytes_per_row();
  std::vector<std::byte> data, scales;
  data.reserve(static_cast<size_t>(info.num_rows * db));
  scales.reserve(static_cast<size_t>(info.num_rows * sb));
  for (int64_t g = 0; g < info.num_rows; ++g) {
    const std::byte* r = t.rows.data() + g * info.row_bytes();
    data.insert(data.end(), r, r + db);
    scales.insert(scales.end(), r + db, r + db + sb);
  }
  const DType dtype = info.codec == "f32"    ? DType::kF32
                      : info.codec == "bf16" ? DType::kBF16
                      : info.codec == "f16"  ? DType::kF16
                                             : DType::kF8E4M3;
  const int64_t elem = dtype_size(dtype);
  const std::vector<std::byte> pad_a(1001, std::byte{1}), pad_b(333, std::byte{2});
  ShardFiles files;
  files.weight_file = shared_scratch().file(key + "_weights.safetensors");
  files.scale_file = split ? shared_scratch().file(key + "_scales.safetensors") : files.weight_file;
  if (sb > 0) files.scale_tensor = "layers.3.engram.embed.scale";
  const TensorWrite weight{files.weight_tensor, dtype, {info.num_rows, db / elem}, data};
  const TensorWrite scale{files.scale_tensor, DType::kF8E8M0, {info.num_rows, sb}, scales};
  const TensorWrite a{"layers.2.ffn_norm.weight", DType::kU8, {1001}, pad_a};
  const TensorWrite b{"layers.3.attn_norm.weight", DType::kU8, {333}, pad_b};
  if (sb == 0 || !split) {
    std::vector<TensorWrite> all = {a, weight, b};
    if (sb > 0) all.push_back(scale);
    save_safetensors(files.weight_file, all, {{"format", "pt"}});
  } else {
    const TensorWrite first[] = {a, weight};
    const TensorWrite second[] = {b, scale};
    save_safetensors(files.weight_file, first, {{"format", "pt"}});
    save_safetensors(files.scale_file, second, {{"format", "pt"}});
  }
  return written.emplace(key, std::move(files)).first->second;
}

/// The reference gather: out[i] = rows[ids[i]], a plain loop.
inline std::vector<std::byte> reference_rows(const TestTable& t, std::span<const int64_t> ids) {
  const auto rb = static_cast<size_t>(t.row_bytes());
  std::vector<std::byte> out(ids.size() * rb);
  for (size_t i = 0; i < ids.size(); ++i)
    for (size_t b = 0; b < rb; ++b) out[i * rb + b] = t.rows[static_cast<size_t>(ids[i]) * rb + b];
  return out;
}

/// Zipf(s) over [0, n) with ranks scattered over the ids by an affine bijection (hot rows are
/// spread across the table as hashed n-gram rows are).
class ZipfIds {
 public:
  ZipfIds(int64_t n, double s, uint64_t seed) : n_(n), rng_(seed), uniform_(0.0, 1.0) {
    ENGRAM_CHECK(n > 0 && n < (int64_t{1} << 31), "ZipfIds: n out of range");
    cdf_.resize(static_cast<size_t>(n));
    double total = 0;
    for (int64_t r = 0; r < n; ++r) cdf_[static_cast<size_t>(r)] = total += std::pow(r + 1.0, -s);
    for (double& v : cdf_) v /= total;
    multiplier_ = 2654435761 % static_cast<uint64_t>(n);
    while (std::gcd(multiplier_, static_cast<uint64_t>(n)) != 1) ++multiplier_;
  }
  /// The id of popularity rank r (0 = hottest).
  int64_t id_of_rank(int64_t r) const {
    return static_cast<int64_t>((static_cast<uint64_t>(r) * multiplier_ + 12345) %
                                static_cast<uint64_t>(n_));  // n < 2^31: no overflow
  }
  int64_t operator()() {
    const double u = uniform_(rng_);
    const auto r = std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin();
    return id_of_rank(std::min<int64_t>(r, n_ - 1));
  }

 private:
  int64_t n_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_;
  std::vector<double> cdf_;
  uint64_t multiplier_ = 1;
};

/// Named id batches for a table of n rows: the conformance patterns.
inline std::vector<std::pair<std::string, std::vector<int64_t>>> id_patterns(int64_t n,
                                                                             uint64_t seed) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> uniform(0, n - 1);
  std::vector<int64_t> ids(777);
  for (auto& id : ids) id = uniform(rng);
  out.emplace_back("uniform", ids);
  ZipfIds zipf(n, 1.0, seed + 1);
  ids.assign(2000, 0);
  for (auto& id : ids) id = zipf();
  out.emplace_back("zipf", ids);
  out.emplace_back("duplicates", std::vector<int64_t>{5 % n, 5 % n, n - 1, 5 % n, 0, n - 1, 0});
  out.emplace_back("empty", std::vector<int64_t>{});
  out.emplace_back("single_first", std::vector<int64_t>{0});
  out.emplace_back("single_last", std::vector<int64_t>{n - 1});
  out.emplace_back("first_and_last", std::vector<int64_t>{0, n - 1});
  std::vector<int64_t> all(static_cast<size_t>(std::min<int64_t>(n, 3000)));
  std::iota(all.begin(), all.end(), n - static_cast<int64_t>(all.size()));
  out.emplace_back("tail_in_order", all);
  std::reverse(all.begin(), all.end());
  out.emplace_back("tail_reversed", all);
  return out;
}

/// Page reader wrapper that fails or corrupts the read of one chosen file offset.
template <class Inner = AutoPageReader>
class FaultInjectingPageReader {
 public:
  enum class Fault { kNone, kEio, kShortRead, kFlipByte };

  FaultInjectingPageReader(int fd, int64_t page_bytes, const PageReaderOptions& options)
      : inner_(fd, page_bytes, options), page_bytes_(page_bytes), copy_(page_bytes) {}

  void inject(Fault fault, int64_t file_offset) {
    fault_ = fault;
    target_ = file_offset;
  }
  void clear() { fault_ = Fault::kNone; }
  int64_t faults_fired() const { return fired_.load(); }

  int queue_depth() const noexcept { return inner_.queue_depth(); }
  std::string describe() const { return "fault-injecting " + inner_.describe(); }
  Inner& inner() { return inner_; }

  template <class OnPage>
  PageReadStatus read_pages(std::span<const int64_t> offsets, OnPage&& on_page) {
    if (fault_ == Fault::kNone) return inner_.read_pages(offsets, on_page);
    std::atomic<int64_t> hit{-1};
    auto wrapped = [&](size_t k, const std::byte* data) noexcept -> bool {
      if (offsets[k] != target_) return on_page(k, data);
      fired_.fetch_add(1);
      if (fault_ == Fault::kFlipByte) {
        std::memcpy(copy_.data(), data, static_cast<size_t>(page_bytes_));
        copy_.data()[page_bytes_ / 3] ^= std::byte{0x10};
        return on_page(k, copy_.data());
      }
      hit.store(static_cast<int64_t>(k));
      return false;
    };
    PageReadStatus status = inner_.read_pages(offsets, wrapped);
    if (hit.load() >= 0) {
      status.stopped = false;
      status.failed_index = hit.load();
      status.error = fault_ == Fault::kEio ? EIO : 0;
      status.bytes = fault_ == Fault::kShortRead ? 1000 : 0;
    }
    return status;
  }

 private:
  Inner inner_;
  int64_t page_bytes_;
  detail::IoBuffer copy_;
  Fault fault_ = Fault::kNone;
  int64_t target_ = -1;
  std::atomic<int64_t> fired_{0};
};

/// A tier wrapper (by reference) that throws for chosen batch numbers or ids, can sleep in every
/// fetch, and counts calls and rows asked for.
template <class Inner>
class FaultyTier {
 public:
  explicit FaultyTier(Inner& inner) : inner_(&inner) {}
  int64_t num_rows() const noexcept { return inner_->num_rows(); }
  int64_t row_bytes() const noexcept { return inner_->row_bytes(); }
  std::string describe() const { return "faulty " + inner_->describe(); }

  std::set<int64_t> fail_batches;      ///< batch numbers (0-based, in call order) that throw
  int64_t poison_id = -1;              ///< a batch containing this id throws
  std::chrono::milliseconds delay{0};  ///< sleep in every fetch

  int64_t calls() const { return calls_.load(); }
  int64_t rows_requested() const { return rows_.load(); }

  FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) {
    const int64_t batch = calls_.fetch_add(1);
    rows_.fetch_add(static_cast<int64_t>(ids.size()));
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    ENGRAM_CHECK(!fail_batches.count(batch), "injected fault in batch ", batch);
    for (int64_t id : ids)
      ENGRAM_CHECK(id != poison_id, "injected fault: poisoned row ", id, " in batch ", batch);
    return inner_->fetch(ids, out);
  }

 private:
  Inner* inner_;
  std::atomic<int64_t> calls_{0}, rows_{0};
};

}  // namespace engram::test
