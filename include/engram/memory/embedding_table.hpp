// engram/memory/embedding_table.hpp: one Engram layer's flat embedding table (a non-owning view,
// EmbeddingTableT<Codec>), its owning storage (InMemoryTableT) and the gather that turns hash ids
// into the concatenated memory vector e. Performance notes: docs/design/memory.md.
//
// Layout (the reference's MultiHeadEmbedding): hash column c in [0, cols) has column_rows[c] rows
// (its prime) from global row offsets[c] = column_rows[0] + ... + column_rows[c - 1]; each row is
// row_dim values stored by a RowCodec (codec.hpp). Gather, hash_ids [tokens, cols] int64,
// out [tokens, cols * row_dim]:
//   out[t, c * row_dim : (c + 1) * row_dim] = decode(row offsets[c] + hash_ids[t, c])
//
// Guarantees: every hash id is checked before any row is read (errors name the table, token,
// column, id and range); construction checks that the storage holds every row; out is written
// exactly. gather (prefetch, optional dedup and threads) == gather_reference, bit for bit. gather
// is allocation-free in steady state (scratch in a caller-kept GatherWorkspace).
// Ownership: the view borrows its bytes (a mapped tensor, an InMemoryTableT): keep them alive.
// Thread safety: a table is immutable; concurrent gathers are safe with one workspace per caller.
//
//   engram::InMemoryTableT<engram::codec::BF16> storage(64, {1009, 1013});   // zero rows
//   auto table = storage.view();
//   engram::GatherWorkspace workspace;
//   std::vector<float> e(tokens * table.output_dim());
//   table.gather(hash_ids, std::span<float>(e), workspace);
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "engram/detail/float16.hpp"
#include "engram/error.hpp"
#include "engram/memory/codec.hpp"

namespace engram {

/// Element types a gather can write: float or bfloat16.
template <class T>
concept GatherOutput = std::same_as<T, float> || std::same_as<T, BFloat16>;

/// Knobs of the fast gather; every setting gives the same output.
struct GatherOptions {
  /// Decode each distinct row once per call and copy it to its repeats. Off by default: on the
  /// benchmark table (bench/memory/gather_bench.cpp) it was slower for uniform, Zipfian and real
  /// (KJV) ids alike, because a repeated row is hot in cache anyway while the copy source (an
  /// earlier output row) may already be evicted; it pays when decoding or fetching a row is
  /// expensive.
  bool deduplicate = false;
  /// Rows ahead in the index stream to software-prefetch (0: off). 8-32 measured best (1.5x over
  /// no prefetch); FP8 rows (code and scale lines) gain from the longer end.
  int prefetch_distance = 16;
  /// Threads to split the tokens over (the calling thread is one of them).
  int threads = 1;
};

namespace detail {

/// Open-addressing map from a global row to the first output slot that holds it, for one call.
/// Entries are 8 bytes ((row + 1) << 32 | slot; 0 = empty), so rows and slots must be < 2^32 - 1.
class RowDedup {
 public:
  static constexpr int64_t kMaxKey = 0xFFFFFFFEll;

  /// Prepares for up to `max_rows` insertions (grows the storage only when needed) and clears.
  void reset(int64_t max_rows) {
    uint64_t capacity = 16;
    while (capacity < static_cast<uint64_t>(max_rows) * 2) capacity *= 2;
    if (entries_.size() < capacity) entries_.resize(capacity);
    mask_ = capacity - 1;
    shift_ = 64 - std::countr_zero(capacity);
    std::fill_n(entries_.begin(), capacity, uint64_t{0});
  }

  /// The earlier slot holding `row`, or -1 after recording `slot` as its first.
  int64_t find_or_insert(int64_t row, int64_t slot) noexcept {
    const uint64_t key = static_cast<uint64_t>(row + 1) << 32;
    uint64_t i = (static_cast<uint64_t>(row) * 0x9E3779B97F4A7C15ull) >> shift_;
    for (;; i = (i + 1) & mask_) {
      const uint64_t e = entries_[i];
      if ((e & 0xFFFFFFFF00000000ull) == key) return static_cast<int64_t>(e & 0xFFFFFFFFull);
      if (e == 0) {
        entries_[i] = key | static_cast<uint64_t>(slot);
        return -1;
      }
    }
  }

 private:
  std::vector<uint64_t> entries_;
  uint64_t mask_ = 0;
  int shift_ = 64;
};

/// Allocator of table storage: blocks of 2 MiB or more are mapped anonymously and advised
/// MADV_HUGEPAGE on Linux (random row gathers are bound by TLB misses on 4 KiB pages: huge pages
/// measured 1.5-2x faster on the benchmark table); smaller blocks come from operator new.
template <class T>
struct LargePageAllocator {
  using value_type = T;
  static constexpr size_t kMapThreshold = size_t{2} << 20;

  LargePageAllocator() = default;
  template <class U>
  LargePageAllocator(const LargePageAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
#if defined(__linux__)
    if (n * sizeof(T) >= kMapThreshold) {
      void* p = ::mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      ::madvise(p, n * sizeof(T), MADV_HUGEPAGE);  // advice only: failure is harmless
      return static_cast<T*>(p);
    }
#endif
    return std::allocator<T>().allocate(n);
  }

  void deallocate(T* p, size_t n) noexcept {
#if defined(__linux__)
    if (n * sizeof(T) >= kMapThreshold) {
      ::munmap(p, n * sizeof(T));
      return;
    }
#endif
    std::allocator<T>().deallocate(p, n);
  }

  friend bool operator==(const LargePageAllocator&, const LargePageAllocator&) noexcept {
    return true;
  }
};

/// sum(column_rows) with positivity and overflow checks.
inline int64_t total_column_rows(std::span<const int64_t> column_rows, const std::string& name) {
  ENGRAM_CHECK(!column_rows.empty(), name, ": needs at least one column, got none");
  int64_t total = 0;
  for (size_t c = 0; c < column_rows.size(); ++c) {
    ENGRAM_CHECK(column_rows[c] > 0, name, ": column ", c, " has ", column_rows[c],
                 " rows, expected a positive count");
    ENGRAM_CHECK(!__builtin_add_overflow(total, column_rows[c], &total), name,
                 ": total row count overflows int64");
  }
  return total;
}

/// a * b, throwing on int64 overflow.
inline int64_t checked_product(int64_t a, int64_t b, const std::string& name, const char* what) {
  int64_t out = 0;
  ENGRAM_CHECK(!__builtin_mul_overflow(a, b, &out), name, ": ", what, " overflows int64 (", a,
               " x ", b, ")");
  return out;
}

}  // namespace detail

/// Reusable scratch of EmbeddingTableT::gather (deduplication tables, thread handles).
/// Keep one per calling thread; not thread-safe itself.
class GatherWorkspace {
 public:
  GatherWorkspace() = default;

  /// Pre-sizes for calls gathering up to `rows` rows (tokens x cols) on `threads` threads, so that
  /// even the first call does not allocate (optional).
  void reserve(int64_t rows, int threads = 1) {
    prepare(std::max(threads, 1));
    const int64_t per_thread = (rows + threads - 1) / std::max(threads, 1);
    for (auto& d : dedup_) d.reset(per_thread);
  }

 private:
  template <RowCodec>
  friend class EmbeddingTableT;
  friend class AnyEmbeddingTable;

  // float rows of a gather into double (AnyEmbeddingTable), at least `values` long
  std::vector<float>& widen_scratch(size_t values) {
    if (widen_.size() < values) widen_.resize(values);
    return widen_;
  }

  void prepare(int threads) {
    if (static_cast<int>(dedup_.size()) < threads) dedup_.resize(static_cast<size_t>(threads));
    if (static_cast<int>(workers_.capacity()) < threads)
      workers_.reserve(static_cast<size_t>(threads));
  }

  std::vector<detail::RowDedup> dedup_;
  std::vector<std::thread> workers_;
  std::vector<float> widen_;
};

/// Non-owning view of one layer's embedding table stored with `Codec`.
/// @tparam Codec a RowCodec (codec::F32, codec::BF16, codec::F16, codec::Fp8E4M3).
template <RowCodec Codec>
class EmbeddingTableT {
 public:
  using CodecType = Codec;

  /// A table over `rows` (sum(column_rows) rows of Codec::row_bytes(row_dim) bytes, more is
  /// allowed) and `scales` (Codec::scale_bytes(row_dim) per row; empty for codecs without scales).
  /// `name` (e.g. "layer 14 embed.weight") prefixes every error message.
  EmbeddingTableT(std::span<const std::byte> rows, std::span<const std::byte> scales,
                  int64_t row_dim, std::vector<int64_t> column_rows,
                  std::string name = "embedding table")
      : rows_(rows),
        scales_(scales),
        row_dim_(row_dim),
        column_rows_(std::move(column_rows)),
        name_(std::move(name)) {
    ENGRAM_CHECK(row_dim_ > 0, name_, ": row_dim must be positive, got ", row_dim_);
    total_rows_ = detail::total_column_rows(column_rows_, name_);
    offsets_.resize(column_rows_.size());
    for (size_t c = 1; c < column_rows_.size(); ++c)
      offsets_[c] = offsets_[c - 1] + column_rows_[c - 1];
    detail::checked_product(row_dim_, static_cast<int64_t>(column_rows_.size()), name_,
                            "output width");
    row_bytes_ = Codec::row_bytes(row_dim_);
    scale_bytes_ = Codec::scale_bytes(row_dim_);
    const int64_t need_rows =
        detail::checked_product(total_rows_, row_bytes_, name_, "row storage");
    ENGRAM_CHECK(static_cast<int64_t>(rows_.size()) >= need_rows, name_, ": row storage holds ",
                 rows_.size(), " bytes, expected at least ", need_rows, " (", total_rows_,
                 " rows x ", row_bytes_, " bytes of ", Codec::kName, " for row_dim ", row_dim_,
                 ")");
    const int64_t need_scales =
        detail::checked_product(total_rows_, scale_bytes_, name_, "scale storage");
    if (scale_bytes_ == 0) {
      ENGRAM_CHECK(scales_.empty(), name_, ": codec ", Codec::kName, " has no scales, but ",
                   scales_.size(), " scale bytes were given");
    } else {
      ENGRAM_CHECK(static_cast<int64_t>(scales_.size()) >= need_scales, name_,
                   ": scale storage holds ", scales_.size(), " bytes, expected at least ",
                   need_scales, " (", total_rows_, " rows x ", scale_bytes_, " ",
                   Codec::kScaleDTypeName, " scales for row_dim ", row_dim_, ")");
    }
  }

  /// A table of this shape whose rows live in a RowTier (tiers/row_tier.hpp) instead of memory:
  /// it answers shape queries (columns, rows, offsets) but holds no rows; gather throws.
  static EmbeddingTableT shape_only(int64_t row_dim, std::vector<int64_t> column_rows,
                                    std::string name = "embedding table (rows in a tier)") {
    return EmbeddingTableT(ShapeOnly{}, row_dim, std::move(column_rows), std::move(name));
  }
  /// Whether the rows are in memory (false for shape_only tables).
  bool has_rows() const noexcept { return !shape_only_; }

  /// Same, for codecs without scales.
  EmbeddingTableT(std::span<const std::byte> rows, int64_t row_dim,
                  std::vector<int64_t> column_rows,
                  std::string name = "embedding table") requires(Codec::kScaleDTypeName.empty())
      : EmbeddingTableT(rows, {}, row_dim, std::move(column_rows), std::move(name)) {}

  const std::string& name() const noexcept { return name_; }
  int64_t row_dim() const noexcept { return row_dim_; }
  int64_t num_columns() const noexcept { return static_cast<int64_t>(column_rows_.size()); }
  /// sum(column_rows): the rows the table addresses.
  int64_t total_rows() const noexcept { return total_rows_; }
  /// Width of one token's gathered vector: num_columns() * row_dim().
  int64_t output_dim() const noexcept { return num_columns() * row_dim_; }
  /// Bytes of one row in the row storage / in the scale storage.
  int64_t row_bytes() const noexcept { return row_bytes_; }
  int64_t scale_bytes() const noexcept { return scale_bytes_; }
  std::span<const int64_t> column_rows() const noexcept { return column_rows_; }
  std::span<const int64_t> column_offsets() const noexcept { return offsets_; }
  std::span<const std::byte> row_storage() const noexcept { return rows_; }
  std::span<const std::byte> scale_storage() const noexcept { return scales_; }

  /// Bytes of global row `row` (unchecked: row < total_rows()).
  const std::byte* row_data(int64_t row) const noexcept { return rows_.data() + row * row_bytes_; }
  /// Scale bytes of global row `row` (nullptr for codecs without scales; unchecked).
  const std::byte* scale_data(int64_t row) const noexcept {
    return scale_bytes_ == 0 ? nullptr : scales_.data() + row * scale_bytes_;
  }

  /// Decodes the row of `hash_id` in `column` into out (row_dim values); checked.
  template <GatherOutput Out>
  void decode_row(int64_t column, int64_t hash_id, std::span<Out> out) const {
    ENGRAM_CHECK(column >= 0 && column < num_columns(), name_, ": column ", column,
                 " is out of range [0, ", num_columns(), ")");
    ENGRAM_CHECK(hash_id >= 0 && hash_id < column_rows_[column], name_, ": hash id ", hash_id,
                 " in column ", column, " is out of range [0, ", column_rows_[column], ")");
    ENGRAM_CHECK(!shape_only_, name_, ": the table's rows live in a tier, not in memory");
    ENGRAM_CHECK(static_cast<int64_t>(out.size()) == row_dim_, name_, ": output row has ",
                 out.size(), " values, expected row_dim = ", row_dim_);
    const int64_t row = offsets_[column] + hash_id;
    Codec::decode_row(row_data(row), scale_data(row), row_dim_, out.data());
  }

  /// Validates hash_ids ([tokens, cols]) and returns tokens; throws naming the first bad id.
  int64_t check_hash_ids(std::span<const int64_t> hash_ids) const {
    const int64_t cols = num_columns();
    ENGRAM_CHECK(static_cast<int64_t>(hash_ids.size()) % cols == 0, name_, ": hash_ids has ",
                 hash_ids.size(), " values, expected a multiple of the ", cols,
                 " columns ([tokens, cols])");
    const int64_t tokens = static_cast<int64_t>(hash_ids.size()) / cols;
    const int64_t* ids = hash_ids.data();
    for (int64_t t = 0; t < tokens; ++t) {
      bool ok = true;
      for (int64_t c = 0; c < cols; ++c)
        ok &= static_cast<uint64_t>(ids[t * cols + c]) < static_cast<uint64_t>(column_rows_[c]);
      if (!ok) {
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t id = ids[t * cols + c];
          ENGRAM_CHECK(id >= 0 && id < column_rows_[c], name_, ": hash id ", id, " at token ", t,
                       ", column ", c, " is out of range [0, ", column_rows_[c], ")");
        }
      }
    }
    return tokens;
  }

  /// Fast gather: out[t, c*row_dim + j] = decode(offsets[c] + hash_ids[t, c])[j].
  /// @param hash_ids [tokens, cols] row-major
  /// @param out [tokens, cols * row_dim] row-major, fully overwritten
  /// @param workspace reusable scratch (one per calling thread)
  template <GatherOutput Out>
  void gather(std::span<const int64_t> hash_ids, std::span<Out> out, GatherWorkspace& workspace,
              const GatherOptions& options = {}) const {
    const int64_t tokens = check_gather_args(hash_ids, out.size());
    if (tokens == 0) return;
    ENGRAM_CHECK(options.threads >= 1, name_, ": GatherOptions::threads must be >= 1, got ",
                 options.threads);
    ENGRAM_CHECK(options.prefetch_distance >= 0, name_,
                 ": GatherOptions::prefetch_distance must be >= 0, got ",
                 options.prefetch_distance);
    const int threads = static_cast<int>(std::min<int64_t>(options.threads, tokens));
    workspace.prepare(threads);
    const int64_t per_thread = (tokens + threads - 1) / threads;
    // dedup keys and slots are 32-bit (any realistic table and call); beyond, rows are decoded
    const bool deduplicate = options.deduplicate && total_rows_ <= detail::RowDedup::kMaxKey &&
                             per_thread * num_columns() <= detail::RowDedup::kMaxKey;
    auto run = [&](int index) noexcept {
      const int64_t begin = std::min<int64_t>(tokens, index * per_thread);
      const int64_t end = std::min<int64_t>(tokens, begin + per_thread);
      detail::RowDedup* dedup = deduplicate ? &workspace.dedup_[index] : nullptr;
      gather_tokens(hash_ids.data(), begin, end, out.data(), dedup, options.prefetch_distance);
    };
    if (deduplicate) {
      for (int i = 0; i < threads; ++i) workspace.dedup_[i].reset(per_thread * num_columns());
    }
    if (threads == 1) {
      run(0);
      return;
    }
    auto& workers = workspace.workers_;
    workers.clear();
    struct JoinAll {
      std::vector<std::thread>& workers;
      ~JoinAll() {
        for (auto& w : workers) w.join();
        workers.clear();
      }
    } join_all{workers};
    for (int i = 1; i < threads; ++i) workers.emplace_back(run, i);
    run(0);
  }

  /// Scalar reference gather (the specification): no prefetch, no deduplication, no threads.
  template <GatherOutput Out>
  void gather_reference(std::span<const int64_t> hash_ids, std::span<Out> out) const {
    const int64_t tokens = check_gather_args(hash_ids, out.size());
    const int64_t cols = num_columns();
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t row = offsets_[c] + hash_ids[t * cols + c];
        Codec::decode_row_reference(row_data(row), scale_data(row), row_dim_,
                                    out.data() + (t * cols + c) * row_dim_);
      }
    }
  }

 private:
  struct ShapeOnly {};
  EmbeddingTableT(ShapeOnly, int64_t row_dim, std::vector<int64_t> column_rows, std::string name)
      : row_dim_(row_dim), column_rows_(std::move(column_rows)), name_(std::move(name)) {
    ENGRAM_CHECK(row_dim_ > 0, name_, ": row_dim must be positive, got ", row_dim_);
    total_rows_ = detail::total_column_rows(column_rows_, name_);
    offsets_.resize(column_rows_.size());
    for (size_t c = 1; c < column_rows_.size(); ++c)
      offsets_[c] = offsets_[c - 1] + column_rows_[c - 1];
    row_bytes_ = Codec::row_bytes(row_dim_);
    scale_bytes_ = Codec::scale_bytes(row_dim_);
    shape_only_ = true;
  }

  int64_t check_gather_args(std::span<const int64_t> hash_ids, size_t out_size) const {
    ENGRAM_CHECK(!shape_only_, name_,
                 ": the table's rows live in a tier, not in memory; fetch them through the tier "
                 "and pass the memory to the layer's forward_memory");
    const int64_t tokens = check_hash_ids(hash_ids);
    ENGRAM_CHECK(static_cast<int64_t>(out_size) == tokens * output_dim(), name_, ": output has ",
                 out_size, " values, expected ", tokens * output_dim(), " ([", tokens, " tokens, ",
                 num_columns(), " columns x ", row_dim_, " values])");
    return tokens;
  }

  void prefetch_row(int64_t row) const noexcept {
    const auto first = reinterpret_cast<uintptr_t>(row_data(row));
    const uintptr_t last = first + static_cast<uintptr_t>(row_bytes_) - 1;
    for (uintptr_t line = first & ~uintptr_t{63}; line <= last; line += 64)
      __builtin_prefetch(reinterpret_cast<const void*>(line));
    if (scale_bytes_ != 0) __builtin_prefetch(scale_data(row));
  }

  template <class Out>
  void gather_tokens(const int64_t* ids, int64_t begin_token, int64_t end_token, Out* out,
                     detail::RowDedup* dedup, int prefetch_distance) const noexcept {
    const int64_t cols = num_columns();
    const int64_t first = begin_token * cols;
    const int64_t last = end_token * cols;
    const int64_t* offsets = offsets_.data();
    const auto row_values = static_cast<size_t>(row_dim_);
    int64_t column = 0;
    int64_t prefetch_index = first + prefetch_distance;
    int64_t prefetch_column = prefetch_distance % cols;
    for (int64_t i = first; i < last; ++i) {
      if (prefetch_distance > 0 && prefetch_index < last)
        prefetch_row(offsets[prefetch_column] + ids[prefetch_index]);
      ++prefetch_index;
      if (++prefetch_column == cols) prefetch_column = 0;
      const int64_t row = offsets[column] + ids[i];
      if (++column == cols) column = 0;
      Out* dst = out + i * row_dim_;
      if (dedup != nullptr) {
        const int64_t earlier = dedup->find_or_insert(row, i - first);
        if (earlier >= 0) {
          std::memcpy(dst, out + (first + earlier) * row_dim_, row_values * sizeof(Out));
          continue;
        }
      }
      Codec::decode_row(row_data(row), scale_data(row), row_dim_, dst);
    }
  }

  std::span<const std::byte> rows_;
  std::span<const std::byte> scales_;
  int64_t row_dim_ = 0;
  std::vector<int64_t> column_rows_;
  std::vector<int64_t> offsets_;
  std::string name_;
  int64_t total_rows_ = 0;
  int64_t row_bytes_ = 0;
  int64_t scale_bytes_ = 0;
  bool shape_only_ = false;
};

/// Owning, vector-backed table storage (for tests and tables built in memory). Bytes start zeroed
/// (every codec decodes zero bytes to +0). Storage of 2 MiB or more is requested on transparent
/// huge pages (Linux). view() borrows the storage: keep this object alive.
template <RowCodec Codec>
class InMemoryTableT {
 public:
  InMemoryTableT(int64_t row_dim, std::vector<int64_t> column_rows,
                 std::string name = "in-memory table")
      : row_dim_(row_dim), column_rows_(std::move(column_rows)), name_(std::move(name)) {
    ENGRAM_CHECK(row_dim_ > 0, name_, ": row_dim must be positive, got ", row_dim_);
    total_rows_ = detail::total_column_rows(column_rows_, name_);
    rows_.resize(static_cast<size_t>(
        detail::checked_product(total_rows_, Codec::row_bytes(row_dim_), name_, "row storage")));
    scales_.resize(static_cast<size_t>(detail::checked_product(
        total_rows_, Codec::scale_bytes(row_dim_), name_, "scale storage")));
  }

  /// Encodes `values` ([total_rows, row_dim] floats) into a new table.
  static InMemoryTableT encode(std::span<const float> values, int64_t row_dim,
                               std::vector<int64_t> column_rows,
                               std::string name = "in-memory table") {
    InMemoryTableT table(row_dim, std::move(column_rows), std::move(name));
    ENGRAM_CHECK(static_cast<int64_t>(values.size()) == table.total_rows_ * row_dim, table.name_,
                 ": encode got ", values.size(), " values, expected ", table.total_rows_ * row_dim,
                 " ([", table.total_rows_, " rows, ", row_dim, "])");
    for (int64_t r = 0; r < table.total_rows_; ++r)
      table.set_row(r,
                    values.subspan(static_cast<size_t>(r * row_dim), static_cast<size_t>(row_dim)));
    return table;
  }

  /// Encodes one global row.
  void set_row(int64_t row, std::span<const float> values) {
    ENGRAM_CHECK(row >= 0 && row < total_rows_, name_, ": row ", row, " is out of range [0, ",
                 total_rows_, ")");
    ENGRAM_CHECK(static_cast<int64_t>(values.size()) == row_dim_, name_, ": row ", row, " got ",
                 values.size(), " values, expected row_dim = ", row_dim_);
    const int64_t scale_bytes = Codec::scale_bytes(row_dim_);
    Codec::encode_row(values.data(), row_dim_, rows_.data() + row * Codec::row_bytes(row_dim_),
                      scale_bytes == 0 ? nullptr : scales_.data() + row * scale_bytes);
  }

  int64_t row_dim() const noexcept { return row_dim_; }
  int64_t total_rows() const noexcept { return total_rows_; }
  std::span<const int64_t> column_rows() const noexcept { return column_rows_; }
  std::span<std::byte> row_storage() noexcept { return rows_; }
  std::span<std::byte> scale_storage() noexcept { return scales_; }
  std::span<const std::byte> row_storage() const noexcept { return rows_; }
  std::span<const std::byte> scale_storage() const noexcept { return scales_; }

  /// A view over this storage (valid while this object lives and is not resized).
  EmbeddingTableT<Codec> view() const {
    return EmbeddingTableT<Codec>(rows_, scales_, row_dim_, column_rows_, name_);
  }

 private:
  int64_t row_dim_;
  std::vector<int64_t> column_rows_;
  std::string name_;
  int64_t total_rows_ = 0;
  std::vector<std::byte, detail::LargePageAllocator<std::byte>> rows_;
  std::vector<std::byte, detail::LargePageAllocator<std::byte>> scales_;
};

/// The common cases: float32 rows (demo variant) and FP8 rows with E8M0 scales (fused variant).
using EmbeddingTable = EmbeddingTableT<codec::F32>;
using Fp8EmbeddingTable = EmbeddingTableT<codec::Fp8E4M3>;
using InMemoryTable = InMemoryTableT<codec::F32>;

}  // namespace engram
