// engram/memory/any_embedding_table.hpp: an embedding table whose codec is chosen at run time
// (from a checkpoint's dtype, a packed file's metadata): a std::variant of EmbeddingTableT<C> over
// every registered codec (codec_registry.hpp), beside AnyTier and AnyLinear.
//
// The common API forwards to the held table (one dispatch per call, none per row): shape queries
// (name, row_dim, num_columns, total_rows, output_dim, column_rows, has_rows), the codec (name,
// traits), gather / gather_reference of hash_ids [tokens, cols] into out [tokens, cols * row_dim]
// float, bfloat16 or double (double: decoded to float, then widened exactly), and visit(f), which
// calls f(const EmbeddingTableT<C>&). It is a std::variant, so std::visit / std::get work too.
//
// Ownership: as EmbeddingTableT, a non-owning view; the storage must outlive it.
// Thread safety: immutable; concurrent gathers are safe with one GatherWorkspace per caller.
//
//   auto table = engram::AnyEmbeddingTable::make("F8_E4M3", 32, rows, scales, 128, primes);
//   engram::GatherWorkspace ws;
//   table.gather(hash_ids, std::span<float>(e), ws);  // the same bytes as the concrete table
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "engram/detail/float16.hpp"
#include "engram/error.hpp"
#include "engram/memory/codec_registry.hpp"
#include "engram/memory/embedding_table.hpp"

namespace engram {

/// Element types AnyEmbeddingTable::gather writes: the table's own (float, bfloat16) or double.
template <class T>
concept AnyGatherOutput = GatherOutput<T> || std::same_as<T, double>;

/// A table of any registered codec (see the banner).
class AnyEmbeddingTable : public Codecs::variant<EmbeddingTableT> {
 public:
  using Variant = Codecs::variant<EmbeddingTableT>;
  using Variant::Variant;
  using Variant::operator=;

  /// A table of the codec answering to `codec` (name or rows' dtype) and `quant_block` over the
  /// given storage (EmbeddingTableT's constructor checks sizes); throws for an unknown codec.
  static AnyEmbeddingTable make(std::string_view codec, int64_t quant_block,
                                std::span<const std::byte> rows, std::span<const std::byte> scales,
                                int64_t row_dim, std::vector<int64_t> column_rows,
                                std::string name = "embedding table") {
    return visit_codec(
        codec, quant_block,
        [&](auto c) -> AnyEmbeddingTable {
          return EmbeddingTableT<decltype(c)>(rows, scales, row_dim, std::move(column_rows),
                                              std::move(name));
        },
        name);
  }

  /// A shape-only table (rows in a tier, EmbeddingTableT::shape_only) of that codec.
  static AnyEmbeddingTable shape_only(std::string_view codec, int64_t quant_block, int64_t row_dim,
                                      std::vector<int64_t> column_rows,
                                      std::string name = "embedding table (rows in a tier)") {
    return visit_codec(
        codec, quant_block,
        [&](auto c) -> AnyEmbeddingTable {
          return EmbeddingTableT<decltype(c)>::shape_only(row_dim, std::move(column_rows),
                                                          std::move(name));
        },
        name);
  }

  /// f(const EmbeddingTableT<C>&) for the held table; returns its result.
  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), static_cast<const Variant&>(*this));
  }

  const std::string& name() const noexcept {
    return visit([](const auto& t) -> const std::string& { return t.name(); });
  }
  int64_t row_dim() const noexcept {
    return visit([](const auto& t) { return t.row_dim(); });
  }
  int64_t num_columns() const noexcept {
    return visit([](const auto& t) { return t.num_columns(); });
  }
  int64_t total_rows() const noexcept {
    return visit([](const auto& t) { return t.total_rows(); });
  }
  int64_t output_dim() const noexcept {
    return visit([](const auto& t) { return t.output_dim(); });
  }
  std::span<const int64_t> column_rows() const noexcept {
    return visit([](const auto& t) { return t.column_rows(); });
  }
  bool has_rows() const noexcept {
    return visit([](const auto& t) { return t.has_rows(); });
  }
  /// The held codec's traits (name, dtypes, quant block, row bytes, row functions).
  const CodecTraits& codec() const noexcept { return kCodecTraits[index()]; }
  std::string_view codec_name() const noexcept { return codec().name; }

  /// EmbeddingTableT::gather; for double, rows are decoded to float in the workspace and widened.
  template <AnyGatherOutput Out>
  void gather(std::span<const int64_t> hash_ids, std::span<Out> out, GatherWorkspace& workspace,
              const GatherOptions& options = {}) const {
    visit([&](const auto& t) {
      if constexpr (GatherOutput<Out>) {
        t.gather(hash_ids, out, workspace, options);
      } else {
        std::vector<float>& f32 = workspace.widen_scratch(out.size());
        t.gather(hash_ids, std::span<float>(f32.data(), out.size()), workspace, options);
        for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Out>(f32[i]);
      }
    });
  }

  /// EmbeddingTableT::gather_reference (the spec); double as in gather.
  template <AnyGatherOutput Out>
  void gather_reference(std::span<const int64_t> hash_ids, std::span<Out> out) const {
    visit([&](const auto& t) {
      if constexpr (GatherOutput<Out>) {
        t.gather_reference(hash_ids, out);
      } else {
        std::vector<float> f32(out.size());
        t.gather_reference(hash_ids, std::span<float>(f32));
        for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Out>(f32[i]);
      }
    });
  }
};

static_assert(std::variant_size_v<AnyEmbeddingTable::Variant> == Codecs::size);

}  // namespace engram
