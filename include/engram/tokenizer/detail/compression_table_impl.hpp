// engram/tokenizer/detail/compression_table_impl.hpp: the definitions of CompressionTable's
// validating constructor, save and load (engram/tokenizer/compression_table.hpp states the
// contract). Included by that header in header-only mode and compiled once into
// engram::instantiations in compiled mode (engram/detail/compiled.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engram/io/safetensors.hpp"
#include "engram/tokenizer/compression_table.hpp"

namespace engram {

ENGRAM_INLINE CompressionTable::CompressionTable(std::vector<int64_t> lookup,
                                                 const std::string& source)
    : lookup_(std::move(lookup)) {
  int64_t max = -1;
  for (size_t i = 0; i < lookup_.size(); ++i) {
    ENGRAM_CHECK(lookup_[i] >= 0, source, ": entry ", i, " is ", lookup_[i],
                 ", expected a compressed id >= 0");
    max = std::max(max, lookup_[i]);
  }
  ENGRAM_CHECK(max < static_cast<int64_t>(lookup_.size()), source, ": compressed id ", max,
               " is not below the number of entries ", lookup_.size());
  compressed_size_ = max + 1;
  std::vector<bool> used(static_cast<size_t>(compressed_size_), false);
  for (int64_t v : lookup_) used[static_cast<size_t>(v)] = true;
  for (int64_t v = 0; v < compressed_size_; ++v) {
    ENGRAM_CHECK(used[static_cast<size_t>(v)], source, ": compressed id ", v,
                 " is never used, expected every id in [0, ", compressed_size_, ") to be used");
  }
}

ENGRAM_INLINE void CompressionTable::save(const std::string& path) const {
  const TensorWrite tensors[] = {tensor_write<int64_t>(std::string(kTensorName), {vocab_size()},
                                                       std::span<const int64_t>(lookup_))};
  save_safetensors(path, tensors,
                   {{"format", "engram compression table"},
                    {"vocab_size", std::to_string(vocab_size())},
                    {"compressed_size", std::to_string(compressed_size())}});
}

ENGRAM_INLINE CompressionTable CompressionTable::load(const std::string& path) {
  const SafetensorsFile file(path);
  const TensorView& tensor = file.at(kTensorName);
  ENGRAM_CHECK(tensor.shape.size() == 1, path, ": tensor 'lookup' has shape ",
               shape_string(tensor.shape), ", expected one dimension [vocab_size]");
  return CompressionTable(file.read_int64(kTensorName), path + ": tensor 'lookup'");
}

}  // namespace engram
