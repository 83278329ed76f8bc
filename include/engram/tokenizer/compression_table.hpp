// engram/tokenizer/compression_table.hpp: CompressionTable, token id -> compressed id (Engram's
// vocabulary compression, computed by vocab_compressor.hpp), and its file: safetensors with an
// I64 "lookup" [n] tensor. Construction and load() validate that every entry is in [0, C) and
// every value of [0, C) is used (C = compressed_size()); errors name the source. Needs only the
// safetensors reader, not the tokenizer (Unicode, JSON): a model that ships its table includes
// this header alone. Immutable value: thread-safe reads.
//
//   const auto table = engram::CompressionTable::load("lookup.safetensors");
//   const int64_t compressed = table.at(token_id);
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engram/detail/compiled.hpp"
#include "engram/error.hpp"
#include "engram/io/safetensors.hpp"

namespace engram {

/// Token id -> compressed id, validated to be onto [0, compressed_size()).
class CompressionTable {
 public:
  /// Name of the tensor in the safetensors file.
  static constexpr std::string_view kTensorName = "lookup";

  CompressionTable() = default;

  /// Takes `lookup` and validates it (see the header); `source` names it in messages.
  explicit CompressionTable(std::vector<int64_t> lookup,
                            const std::string& source = "compression table");

  const std::vector<int64_t>& lookup() const noexcept { return lookup_; }
  /// Number of token ids (entries).
  int64_t vocab_size() const noexcept { return static_cast<int64_t>(lookup_.size()); }
  /// Number of distinct compressed ids, C.
  int64_t compressed_size() const noexcept { return compressed_size_; }
  /// Compressed id of `id`; `id` must be in [0, vocab_size()).
  int64_t operator[](int64_t id) const noexcept { return lookup_[static_cast<size_t>(id)]; }
  /// Compressed id of `id`, range-checked.
  int64_t at(int64_t id) const {
    ENGRAM_CHECK(id >= 0 && id < vocab_size(), "token id ", id,
                 " is outside the compression table [0, ", vocab_size(), ")");
    return (*this)[id];
  }
  bool operator==(const CompressionTable& other) const noexcept { return lookup_ == other.lookup_; }

  /// Writes the table as safetensors (I64 "lookup" [n], metadata vocab_size/compressed_size).
  void save(const std::string& path) const;

  /// Reads and validates a table written by save() (or any 1-D I64/I32 "lookup" tensor).
  static CompressionTable load(const std::string& path);

 private:
  std::vector<int64_t> lookup_;
  int64_t compressed_size_ = 0;
};

}  // namespace engram

#if ENGRAM_DEFINITIONS
#include "engram/tokenizer/detail/compression_table_impl.hpp"
#endif
