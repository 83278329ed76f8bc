// engram/memory/safetensors_table.hpp: an EmbeddingTableT view over tensors of a safetensors file.
//
//   engram::SafetensorsFile file("weights.safetensors");
//   auto table = engram::table_from_safetensors<engram::codec::Fp8E4M3>(file, "embed.weight",
//                                                                        primes);
//
// Checks, each failing with engram::Error naming the file and tensor: the row tensor's dtype is the
// codec's (F32 / BF16 / F16 / F8_E4M3) and its shape is [sum(column_rows), row_dim]; for codecs
// with scales, the scale tensor (default name: row tensor name + "_scale_inv", as DeepSeek
// checkpoints) is F8_E8M0 [sum(column_rows), ceil(row_dim / block)]. The view borrows the file's
// mapping: the SafetensorsFile must outlive it. Zero-copy.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engram/error.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/memory/codec.hpp"
#include "engram/memory/embedding_table.hpp"

namespace engram {

/// View of tensor `rows_name` (and its scales) in `file` as a table with the given column sizes.
template <RowCodec Codec>
EmbeddingTableT<Codec> table_from_safetensors(const SafetensorsFile& file,
                                              std::string_view rows_name,
                                              std::vector<int64_t> column_rows,
                                              std::string_view scales_name = {}) {
  const TensorView& rows = file.at(rows_name);
  const std::string where = file.path() + ": tensor '" + std::string(rows_name) + "'";
  ENGRAM_CHECK(dtype_name(rows.dtype) == Codec::kDTypeName, where, " has dtype ",
               dtype_name(rows.dtype), ", expected ", Codec::kDTypeName, " for codec ",
               Codec::kName);
  ENGRAM_CHECK(rows.shape.size() == 2, where, " has shape ", shape_string(rows.shape),
               ", expected [rows, row_dim]");
  const int64_t total = detail::total_column_rows(column_rows, where);
  const int64_t row_dim = rows.shape[1];
  rows.check_shape({total, row_dim});
  std::span<const std::byte> scale_bytes;
  if constexpr (!Codec::kScaleDTypeName.empty()) {
    const std::string name =
        scales_name.empty() ? std::string(rows_name) + "_scale_inv" : std::string(scales_name);
    const TensorView& scales = file.at(name);
    ENGRAM_CHECK(dtype_name(scales.dtype) == Codec::kScaleDTypeName, file.path(), ": tensor '",
                 name, "' has dtype ", dtype_name(scales.dtype), ", expected ",
                 Codec::kScaleDTypeName);
    scales.check_shape({total, Codec::scale_bytes(row_dim)});
    scale_bytes = scales.bytes;
  }
  return EmbeddingTableT<Codec>(rows.bytes, scale_bytes, row_dim, std::move(column_rows),
                                file.path() + ": " + std::string(rows_name));
}

}  // namespace engram
