// engram/memory/tiers/tiered_memory.hpp: an Engram layer's memory e fetched from a RowTier (a
// packed file on SSD, a cache, a remote pool) instead of gathered from a table in RAM: the row ids
// of a batch, the decoding of staged row records into e, and a stager that does both around a
// prefetcher, so that the layer's rows are fetched while earlier blocks compute.
//
// Shapes: hash_ids [tokens, cols] int64 per-column ids (the layer's hasher output); row ids
// [tokens * cols] global rows = offsets[c] + hash_ids[t, c]; staged records [tokens * cols,
// row_bytes] (row_tier.hpp: codec data bytes then scale bytes); memory e [tokens, cols * row_dim]
// float, exactly what EmbeddingTableT::gather writes for the same ids (bitwise: both decode with
// the codec's decode_row), ready for the layers' forward_memory.
//
//   TieredMemory<AnyTier> memory(opened.tier, opened.info, {.max_tokens = 512});
//   auto ticket = memory.submit(hash_ids);       // as soon as the batch's tokens are known
//   ... earlier transformer blocks run ...
//   memory.wait(ticket, e);                      // blocks only for rows not yet staged; decodes
//   layer.forward_memory(e, hidden, B, T, out, ws);
//
// Guarantees: ids are checked against the table's columns before anything is fetched (errors name
// token and column); a tier error reaches wait() for that batch only (prefetch.hpp), and e is then
// unspecified. decode and decode_reference give identical bytes. Steady state allocates nothing.
// Thread safety: a TieredMemoryT is driven by one thread (submit/wait); its prefetcher's worker
// owns the tier while fetching. RecordDecoder is immutable and thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engram/error.hpp"
#include "engram/memory/codec.hpp"
#include "engram/memory/codec_registry.hpp"
#include "engram/memory/packed_format.hpp"
#include "engram/memory/tiers/prefetch.hpp"
#include "engram/memory/tiers/row_tier.hpp"

namespace engram {

namespace detail {

template <RowCodec Codec>
void decode_records_with(const std::byte* records, int64_t rows, int64_t row_bytes, int64_t row_dim,
                         float* out) noexcept {
  const int64_t data_bytes = Codec::row_bytes(row_dim);
  for (int64_t i = 0; i < rows; ++i) {
    const std::byte* record = records + i * row_bytes;
    Codec::decode_row(record, record + data_bytes, row_dim, out + i * row_dim);
  }
}

template <RowCodec Codec>
void decode_records_reference_with(const std::byte* records, int64_t rows, int64_t row_bytes,
                                   int64_t row_dim, float* out) noexcept {
  const int64_t data_bytes = Codec::row_bytes(row_dim);
  for (int64_t i = 0; i < rows; ++i) {
    const std::byte* record = records + i * row_bytes;
    Codec::decode_row_reference(record, record + data_bytes, row_dim, out + i * row_dim);
  }
}

}  // namespace detail

/// Decodes staged row records of one table (codec chosen at run time from the packed table's
/// metadata: any codec of codec_registry.hpp) into float rows. One
/// indirect call per batch, none per row.
class RecordDecoder {
 public:
  explicit RecordDecoder(const PackedTableInfo& info)
      : row_dim_(info.row_dim), row_bytes_(info.row_bytes()) {
    const std::string& c = info.codec;
    visit_codec(
        c, info.config.quant_block, [this](auto codec) { set<decltype(codec)>(); },
        "RecordDecoder");
    ENGRAM_CHECK(row_bytes_ > 0, "RecordDecoder: codec ", c, " gives ", row_bytes_,
                 "-byte records");
  }

  int64_t row_dim() const noexcept { return row_dim_; }
  int64_t row_bytes() const noexcept { return row_bytes_; }

  /// out [rows, row_dim] = decode(records [rows, row_bytes]); rows = records.size() / row_bytes.
  void decode(std::span<const std::byte> records, std::span<float> out) const {
    const int64_t rows = check(records, out);
    fast_(records.data(), rows, row_bytes_, row_dim_, out.data());
  }
  /// The same with the codec's scalar reference decode (the spec).
  void decode_reference(std::span<const std::byte> records, std::span<float> out) const {
    const int64_t rows = check(records, out);
    reference_(records.data(), rows, row_bytes_, row_dim_, out.data());
  }

 private:
  using Fn = void (*)(const std::byte*, int64_t, int64_t, int64_t, float*) noexcept;
  template <RowCodec Codec>
  void set() {
    ENGRAM_CHECK(Codec::row_bytes(row_dim_) + Codec::scale_bytes(row_dim_) == row_bytes_,
                 "RecordDecoder: ", Codec::kName, " records of row_dim ", row_dim_, " are ",
                 Codec::row_bytes(row_dim_) + Codec::scale_bytes(row_dim_),
                 " bytes, the table says ", row_bytes_);
    fast_ = &detail::decode_records_with<Codec>;
    reference_ = &detail::decode_records_reference_with<Codec>;
  }
  int64_t check(std::span<const std::byte> records, std::span<float> out) const {
    ENGRAM_CHECK(static_cast<int64_t>(records.size()) % row_bytes_ == 0,
                 "RecordDecoder: ", records.size(), " bytes are not a whole number of ", row_bytes_,
                 "-byte records");
    const int64_t rows = static_cast<int64_t>(records.size()) / row_bytes_;
    ENGRAM_CHECK(static_cast<int64_t>(out.size()) == rows * row_dim_, "RecordDecoder: output has ",
                 out.size(), " values, expected ", rows * row_dim_, " (", rows, " rows x ",
                 row_dim_, ")");
    return rows;
  }

  int64_t row_dim_;
  int64_t row_bytes_;
  Fn fast_ = nullptr;
  Fn reference_ = nullptr;
};

/// row_ids[t * cols + c] = offsets[c] + hash_ids[t * cols + c], checking every hash id against its
/// column's row count (primes[c]); the error names the token, the column and the range.
inline void table_row_ids(std::span<const int64_t> hash_ids, std::span<const int64_t> offsets,
                          std::span<const int64_t> primes, std::span<int64_t> row_ids) {
  const auto cols = static_cast<int64_t>(offsets.size());
  ENGRAM_CHECK(cols > 0 && primes.size() == offsets.size(), "table_row_ids: ", offsets.size(),
               " offsets and ", primes.size(), " column sizes");
  ENGRAM_CHECK(
      static_cast<int64_t>(hash_ids.size()) % cols == 0 && row_ids.size() == hash_ids.size(),
      "table_row_ids: hash_ids has ", hash_ids.size(), " values and row_ids ", row_ids.size(),
      ", expected the same multiple of the ", cols, " columns");
  const int64_t tokens = static_cast<int64_t>(hash_ids.size()) / cols;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t id = hash_ids[t * cols + c];
      ENGRAM_CHECK(static_cast<uint64_t>(id) < static_cast<uint64_t>(primes[c]),
                   "table_row_ids: hash id ", id, " at token ", t, ", column ", c,
                   " is outside [0, ", primes[c], ")");
      row_ids[t * cols + c] = offsets[c] + id;
    }
}

/// Sizing of a TieredMemoryT.
struct TieredMemoryOptions {
  int64_t max_tokens = 0;  ///< largest batch (tokens) a submit may carry
  int slots = 2;           ///< staging buffers: 2 = batch i + 1 fetched while batch i is used
};

/// Fetches and decodes one layer's memory from a RowTier through a prefetcher (see the banner).
/// @tparam Tier a RowTier (e.g. AnyTier); @tparam Policy prefetch::Asynchronous or Synchronous.
template <RowTier Tier, PrefetchPolicy Policy = prefetch::Asynchronous>
class TieredMemoryT {
 public:
  using Prefetcher = PrefetcherT<Tier, Policy>;
  using Ticket = typename Prefetcher::Ticket;

  /// @param tier the table's rows (must outlive this object); @param info its metadata
  TieredMemoryT(Tier& tier, const PackedTableInfo& info, TieredMemoryOptions options)
      : decoder_(info),
        offsets_(info.offsets),
        primes_(info.primes),
        cols_(static_cast<int64_t>(info.offsets.size())),
        max_tokens_(options.max_tokens),
        row_ids_(static_cast<size_t>(options.max_tokens * cols_)),
        prefetcher_(tier, {.max_batch_rows = options.max_tokens * cols_, .slots = options.slots}) {
    ENGRAM_CHECK(tier.num_rows() == info.num_rows && tier.row_bytes() == info.row_bytes(),
                 "TieredMemory: tier ", tier.describe(), " has ", tier.num_rows(), " rows of ",
                 tier.row_bytes(), " bytes, the table metadata says ", info.num_rows, " of ",
                 info.row_bytes());
  }

  int64_t num_columns() const noexcept { return cols_; }
  int64_t row_dim() const noexcept { return decoder_.row_dim(); }
  /// Width of one token's memory: cols * row_dim.
  int64_t memory_dim() const noexcept { return cols_ * decoder_.row_dim(); }
  const RecordDecoder& decoder() const noexcept { return decoder_; }
  Prefetcher& prefetcher() noexcept { return prefetcher_; }

  /// Queues the fetch of the rows of hash_ids [tokens, cols]; checks the ids first.
  Ticket submit(std::span<const int64_t> hash_ids) {
    ENGRAM_CHECK(static_cast<int64_t>(hash_ids.size()) <= max_tokens_ * cols_,
                 "TieredMemory: ", hash_ids.size() / static_cast<size_t>(cols_),
                 " tokens exceed max_tokens ", max_tokens_);
    const std::span<int64_t> rows(row_ids_.data(), hash_ids.size());
    table_row_ids(hash_ids, offsets_, primes_, rows);
    return prefetcher_.submit(rows);
  }

  /// Waits for the ticket's rows and decodes them into memory [tokens, cols * row_dim]; returns
  /// the tier's report. Rethrows the tier's error for this batch.
  FetchReport wait(const Ticket& ticket, std::span<float> memory) {
    auto batch = prefetcher_.wait(ticket);
    ENGRAM_CHECK(static_cast<int64_t>(memory.size()) == batch.size() * decoder_.row_dim(),
                 "TieredMemory: memory has ", memory.size(), " values, expected ",
                 batch.size() * decoder_.row_dim(), " ([", batch.size() / cols_, " tokens, ",
                 memory_dim(), "])");
    decoder_.decode(batch.rows(), memory);
    return batch.report();
  }

  /// submit + wait: the synchronous path in one call.
  FetchReport fetch(std::span<const int64_t> hash_ids, std::span<float> memory) {
    return wait(submit(hash_ids), memory);
  }

 private:
  RecordDecoder decoder_;
  std::vector<int64_t> offsets_, primes_;
  int64_t cols_;
  int64_t max_tokens_;
  std::vector<int64_t> row_ids_;
  Prefetcher prefetcher_;
};

}  // namespace engram
