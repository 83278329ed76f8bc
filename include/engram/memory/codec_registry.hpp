// engram/memory/codec_registry.hpp: the one list of row codecs (codec.hpp) the library reads and
// writes, and everything derived from it: lookup by name or safetensors dtype, compile-time
// iteration, the variant of per-codec types, and a run-time traits table (ggml's type_traits).
//
//   engram::Codecs             CodecList<codec::F32, codec::BF16, codec::F16,
//   Fp8E4M3T<16|32|64|128>> for_each_codec(f)          f(C{}) for every registered codec C, in list
//   order visit_codec(key, qb, f)    f(C{}) for the codec whose kName or kDTypeName is `key` (and
//   whose
//                              quant block is `qb`, for block codecs); throws naming the choices
//   find_codec(key, qb)        the CodecTraits of that codec, or nullptr
//   Codecs::variant<T>         std::variant<T<C>...> over the list (e.g. AnyEmbeddingTable)
//
// Adding a codec is one line in `Codecs`: layer tables, packed files, tiers and the CLI pick it
// up. A codec is identified by (kName, quant block): "fp8_e4m3" names four codecs, told apart by
// the quant block (EngramConfig::quant_block); codecs without scales ignore the quant block.
// Thread safety: everything here is constexpr data or pure functions.
//
//   const int64_t bytes = engram::visit_codec("bf16", 0, [&](auto c) {
//     return decltype(c)::row_bytes(row_dim);
//   });
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "engram/error.hpp"
#include "engram/memory/codec.hpp"

namespace engram {

/// A list of row codecs; `variant<T>` is std::variant<T<Cs>...>.
template <RowCodec... Cs>
struct CodecList {
  static constexpr size_t size = sizeof...(Cs);
  template <template <class> class T>
  using variant = std::variant<T<Cs>...>;
  using tags = std::variant<Cs...>;
};

/// Every codec of the library (the only place the list is written).
using Codecs = CodecList<codec::F32, codec::BF16, codec::F16, codec::Fp8E4M3T<16>,
                         codec::Fp8E4M3T<32>, codec::Fp8E4M3T<64>, codec::Fp8E4M3T<128>>;

/// Values per scale byte of codec C; 0 for codecs without scales.
template <RowCodec C>
inline constexpr int64_t kCodecQuantBlock = [] {
  if constexpr (requires { C::kQuantBlock; })
    return static_cast<int64_t>(C::kQuantBlock);
  else
    return int64_t{0};
}();

/// Calls f(C{}) for every registered codec C, in list order.
template <class F>
constexpr void for_each_codec(F&& f) {
  [&]<class... Cs>(CodecList<Cs...>) { (f(Cs{}), ...); }(Codecs{});
}

/// Run-time traits of one codec (ggml's type_traits): names, sizes, row functions.
struct CodecTraits {
  std::string_view name;         ///< kName ("fp8_e4m3")
  std::string_view dtype;        ///< safetensors dtype of the rows ("F8_E4M3")
  std::string_view scale_dtype;  ///< safetensors dtype of the scales ("" when none)
  int64_t quant_block;           ///< values per scale byte (0 when none)
  int64_t (*row_bytes)(int64_t row_dim) noexcept;
  int64_t (*scale_bytes)(int64_t row_dim) noexcept;
  void (*decode_row)(const std::byte*, const std::byte*, int64_t, float*) noexcept;
  void (*decode_row_reference)(const std::byte*, const std::byte*, int64_t, float*) noexcept;
  void (*encode_row)(const float*, int64_t, std::byte*, std::byte*) noexcept;

  /// Whether this codec answers to `key` (its name or its rows' safetensors dtype) and
  /// `quant_block` (compared only for codecs with scales).
  constexpr bool matches(std::string_view key, int64_t block) const noexcept {
    return (key == name || key == dtype) && (quant_block == 0 || quant_block == block);
  }
  /// Bytes of one row record (data then scales, the packed table's layout).
  int64_t record_bytes(int64_t row_dim) const noexcept {
    return row_bytes(row_dim) + scale_bytes(row_dim);
  }
};

/// The traits of codec C.
template <RowCodec C>
constexpr CodecTraits codec_traits() noexcept {
  using Decode = void (*)(const std::byte*, const std::byte*, int64_t, float*) noexcept;
  return {C::kName,
          C::kDTypeName,
          C::kScaleDTypeName,
          kCodecQuantBlock<C>,
          &C::row_bytes,
          &C::scale_bytes,
          static_cast<Decode>(&C::decode_row),
          static_cast<Decode>(&C::decode_row_reference),
          &C::encode_row};
}

/// The traits of every registered codec, in list order.
inline constexpr auto kCodecTraits = []<class... Cs>(CodecList<Cs...>) {
  return std::array<CodecTraits, sizeof...(Cs)>{codec_traits<Cs>()...};
}(Codecs{});

/// The traits of the codec answering to `key` and `quant_block` (as visit_codec), or nullptr.
constexpr const CodecTraits* find_codec(std::string_view key, int64_t quant_block) noexcept {
  for (const CodecTraits& t : kCodecTraits)
    if (t.matches(key, quant_block)) return &t;
  return nullptr;
}

/// Whether `name` is the kName of a registered codec (of any quant block).
constexpr bool is_codec_name(std::string_view name) noexcept {
  for (const CodecTraits& t : kCodecTraits)
    if (t.name == name) return true;
  return false;
}

/// The codec name (kName) of rows stored as safetensors dtype `dtype`; empty when none is.
constexpr std::string_view codec_name_of_dtype(std::string_view dtype) noexcept {
  for (const CodecTraits& t : kCodecTraits)
    if (t.dtype == dtype) return t.name;
  return {};
}

/// "f32, bf16, f16, fp8_e4m3 (quant_block 16, 32, 64 or 128)": the choices, for error messages.
inline std::string codec_choices() {
  std::string names, blocks;
  std::string_view last_name;
  int block_count = 0;
  for (const CodecTraits& t : kCodecTraits) {
    if (t.name != last_name) names += (names.empty() ? "" : ", ") + std::string(t.name);
    last_name = t.name;
    if (t.quant_block > 0)
      blocks += (block_count++ == 0 ? "" : ", ") + std::to_string(t.quant_block);
  }
  const size_t last = blocks.rfind(", ");
  if (last != std::string::npos) blocks.replace(last, 2, " or ");
  return blocks.empty() ? names : names + " (quant_block " + blocks + ")";
}

namespace detail {
template <class R, class F>
R visit_codec_in(CodecList<>, std::string_view key, int64_t quant_block, F&,
                 std::string_view where) {
  fail(where, ": no codec '", key, "' with quant_block ", quant_block, "; expected ",
       codec_choices());
}
template <class R, class F, class C, class... Cs>
R visit_codec_in(CodecList<C, Cs...>, std::string_view key, int64_t quant_block, F& f,
                 std::string_view where) {
  if (codec_traits<C>().matches(key, quant_block)) return f(C{});
  return visit_codec_in<R>(CodecList<Cs...>{}, key, quant_block, f, where);
}
}  // namespace detail

/// Calls f(C{}) for the codec named `key` (kName, e.g. "bf16", or safetensors dtype, e.g. "BF16")
/// with `quant_block` (block codecs only) and returns its result (every f(C{}) must have one
/// type). Throws engram::Error naming `where`, the key and the choices when none matches.
template <class F>
decltype(auto) visit_codec(std::string_view key, int64_t quant_block, F&& f,
                           std::string_view where = "codec") {
  using R = decltype(f(codec::F32{}));
  return detail::visit_codec_in<R>(Codecs{}, key, quant_block, f, where);
}

/// The codec tag (one of Codecs::tags) for `key` and `quant_block`; throws as visit_codec.
inline Codecs::tags codec_tag(std::string_view key, int64_t quant_block,
                              std::string_view where = "codec") {
  return visit_codec(
      key, quant_block, [](auto c) -> Codecs::tags { return c; }, where);
}

}  // namespace engram
