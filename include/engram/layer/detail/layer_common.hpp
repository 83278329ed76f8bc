// engram/layer/detail/layer_common.hpp: internals of EngramLayerT (every block): batch segments,
// argument checks, the token-id front end, and the multi-threaded gather of the memory vectors e.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "engram/detail/aligned_buffer.hpp"
#include "engram/detail/parallel.hpp"
#include "engram/error.hpp"
#include "engram/layer/checkpoint.hpp"
#include "engram/layer/decode_state.hpp"
#include "engram/memory/embedding_table.hpp"

namespace engram::detail {

/// The sequences of one call: `count` sequences of `uniform` tokens, or of lengths[s] tokens.
struct Segments {
  int64_t count = 0;
  int64_t uniform = 0;
  std::span<const int64_t> lengths;  // empty: uniform

  int64_t length(int64_t s) const noexcept { return lengths.empty() ? uniform : lengths[s]; }
  int64_t total() const noexcept {
    if (lengths.empty()) return count * uniform;
    int64_t n = 0;
    for (int64_t l : lengths) n += l;
    return n;
  }
};

inline Segments uniform_segments(std::string_view who, int64_t batch, int64_t seq_len) {
  ENGRAM_CHECK(batch >= 0 && seq_len >= 0, who, ": batch and seq_len must be non-negative, found ",
               batch, " and ", seq_len);
  return {batch, seq_len, {}};
}

inline Segments ragged_segments(std::string_view who, std::span<const int64_t> lengths) {
  for (size_t s = 0; s < lengths.size(); ++s)
    ENGRAM_CHECK(lengths[s] >= 0, who, ": lengths[", s, "] = ", lengths[s],
                 " must be non-negative");
  return {static_cast<int64_t>(lengths.size()), 0, lengths};
}

/// Throws unless `what` has tokens * per_token values.
inline void check_size(std::string_view who, std::string_view what, size_t size, int64_t tokens,
                       int64_t per_token, std::string_view shape) {
  ENGRAM_CHECK(static_cast<int64_t>(size) == tokens * per_token, who, ": ", what, " has ", size,
               " values, expected ", tokens * per_token, " (", shape, " for ", tokens, " tokens)");
}

/// Checks every hash id of the live tokens (live null: all) against its column's row count; the
/// error names the sequence, position and column.
inline void check_hash_ids(std::string_view who, const LayerTable& table, const int64_t* ids,
                           const Segments& segments, const uint8_t* live) {
  std::visit(
      [&](const auto& t) {
        ENGRAM_CHECK(t.has_rows(), who, ": table '", t.name(),
                     "' holds no rows (they live in a tier): fetch them and call forward_memory");
        const auto rows = t.column_rows();
        const int64_t cols = t.num_columns();
        int64_t token = 0;
        for (int64_t s = 0; s < segments.count; ++s) {
          const int64_t len = segments.length(s);
          for (int64_t pos = 0; pos < len; ++pos, ++token) {
            if (live != nullptr && live[token] == 0) continue;
            const int64_t* row = ids + token * cols;
            for (int64_t c = 0; c < cols; ++c) {
              ENGRAM_CHECK(static_cast<uint64_t>(row[c]) < static_cast<uint64_t>(rows[c]), who,
                           ": hash id ", row[c], " at sequence ", s, ", position ", pos,
                           ", column ", c, " is outside [0, ", rows[c], ") of table '", t.name(),
                           "'");
            }
          }
        }
      },
      table);
}

namespace finite {
/// True when every one of the n values is finite: no value has an all-ones exponent (inf, NaN).
/// An integer max over the exponent bits: the loop vectorises (a float sum would not, without
/// -ffast-math) and has no early exit.
template <class Scalar>
bool all_finite(const Scalar* x, int64_t n) noexcept {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>);
  using Bits = std::conditional_t<std::is_same_v<Scalar, float>, uint32_t, uint64_t>;
  constexpr Bits kExponent =
      static_cast<Bits>(std::is_same_v<Scalar, float> ? 0x7F800000ull : 0x7FF0000000000000ull);
  Bits worst = 0;
  for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::bit_cast<Bits>(x[i]) & kExponent);
  return worst != kExponent;
}

/// first = min(first, t), from any thread: parallel loops keep the lowest bad token this way.
inline void keep_lowest(std::atomic<int64_t>& first, int64_t t) noexcept {
  int64_t seen = first.load(std::memory_order_relaxed);
  while (t < seen && !first.compare_exchange_weak(seen, t, std::memory_order_relaxed)) {
  }
}

/// The sequence and position of token `token` in `segments`.
inline std::pair<int64_t, int64_t> locate(const Segments& segments, int64_t token) noexcept {
  int64_t s = 0;
  while (s + 1 < segments.count && token >= segments.length(s)) token -= segments.length(s++);
  return {s, token};
}

/// The first token in [0, tokens) (live null: all; else live ones) whose `width` values at
/// x + t * width are not all finite, or -1. Split over the kernel threads.
template <class Scalar>
int64_t first_non_finite_token(const Scalar* x, int64_t tokens, int64_t width,
                               const uint8_t* live) {
  std::atomic<int64_t> first{tokens};
  parallel_for(tokens, 64, [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t) {
      if (live != nullptr && live[t] == 0) continue;
      if (!all_finite(x + t * width, width)) {
        keep_lowest(first, t);
        return;
      }
    }
  });
  const int64_t t = first.load();
  return t == tokens ? -1 : t;
}
}  // namespace finite

/// Throws unless the hidden states [tokens, hc, d] of the live tokens (live null: all) are finite:
/// a NaN or infinity would turn the token's gates and output into NaN. The error names the
/// sequence, position, branch and channel of the first one.
template <class Scalar>
void check_finite_hidden(std::string_view who, const Scalar* hidden, const Segments& segments,
                         int64_t hc, int64_t d, const uint8_t* live) {
  const int64_t t = finite::first_non_finite_token(hidden, segments.total(), hc * d, live);
  if (t < 0) return;
  const Scalar* row = hidden + t * hc * d;
  int64_t j = 0;
  while (j + 1 < hc * d && std::isfinite(static_cast<double>(row[j]))) ++j;
  const auto [s, pos] = finite::locate(segments, t);
  throw Error(detail::concat(who, ": hidden state at sequence ", s, ", position ", pos, ", branch ",
                             j / d, ", channel ", j % d, " is ", static_cast<double>(row[j]),
                             " (non-finite inputs would make the layer's output NaN)"));
}

/// Throws unless the gathered memory e [tokens, cols * row_dim] of the live tokens is finite: a
/// table row holding NaN or infinity (e.g. FP8 NaN codes, a corrupt checkpoint). The error names
/// the table, the row, its column and hash id, and the first token that used it.
template <class Scalar>
void check_finite_memory(std::string_view who, std::string_view table_name, const Scalar* e,
                         const int64_t* ids, const Segments& segments, int64_t cols,
                         int64_t row_dim, std::span<const int64_t> column_rows,
                         const uint8_t* live) {
  const int64_t t = finite::first_non_finite_token(e, segments.total(), cols * row_dim, live);
  if (t < 0) return;
  int64_t c = 0;
  while (c + 1 < cols && finite::all_finite(e + (t * cols + c) * row_dim, row_dim)) ++c;
  int64_t offset = 0;
  for (int64_t i = 0; i < c && i < static_cast<int64_t>(column_rows.size()); ++i)
    offset += column_rows[i];
  const auto [s, pos] = finite::locate(segments, t);
  const int64_t id = ids != nullptr ? ids[t * cols + c] : -1;
  throw Error(detail::concat(who, ": row ", offset + id, " of table '", table_name, "' (column ", c,
                             ", hash id ", id, ") holds a non-finite value; used at sequence ", s,
                             ", position ", pos));
}

/// check_finite_memory for rows gathered from a layer's table.
template <class Scalar>
void check_finite_memory(std::string_view who, const LayerTable& table, const Scalar* e,
                         const int64_t* ids, const Segments& segments, const uint8_t* live) {
  std::visit(
      [&](const auto& t) {
        check_finite_memory(who, t.name(), e, ids, segments, t.num_columns(),
                            t.output_dim() / t.num_columns(), t.column_rows(), live);
      },
      table);
}

/// Throws unless the memory e [tokens, m] passed to forward_memory is finite for the live tokens
/// (live null: all); the error names the sequence, position and column of the first bad value.
template <class Scalar>
void check_finite_external_memory(std::string_view who, const Scalar* e, const Segments& segments,
                                  int64_t cols, int64_t row_dim, const uint8_t* live) {
  const int64_t t = finite::first_non_finite_token(e, segments.total(), cols * row_dim, live);
  if (t < 0) return;
  int64_t c = 0;
  while (c + 1 < cols && finite::all_finite(e + (t * cols + c) * row_dim, row_dim)) ++c;
  const auto [s, pos] = finite::locate(segments, t);
  throw Error(detail::concat(who, ": memory at sequence ", s, ", position ", pos, ", column ", c,
                             " holds a non-finite value (a corrupt table row?)"));
}

/// e[t, c * row_dim + j] = row offsets[c] + ids[t, c] of the table, for `tokens` tokens, split over
/// the kernel threads (each with its own gather workspace). ids must be valid (check_hash_ids).
/// When Scalar is not float, rows are gathered into f32 scratch first. Returns -1, or the first
/// live token (live null: all) whose rows are not all finite: check_finite_memory then names it
/// (every token before it is gathered; later ones may not be).
template <class Scalar>
int64_t gather_memory(const LayerTable& table, const int64_t* ids, int64_t tokens, Scalar* out,
                      AlignedBuffer<float>& f32_scratch, std::span<GatherWorkspace> workspaces,
                      const uint8_t* live) {
  // Blocks of about kBlockBytes of rows, each checked while it is in cache; a worker stops at its
  // first non-finite row (the call throws), so every token before the first one is gathered.
  constexpr int64_t kBlockBytes = int64_t{256} << 10;
  std::atomic<int64_t> first{tokens};
  std::visit(
      [&](const auto& t) {
        const int64_t cols = t.num_columns();
        const int64_t width = t.output_dim();
        float* dst = nullptr;
        if constexpr (std::is_same_v<Scalar, float>)
          dst = out;
        else
          dst = f32_scratch.ensure(static_cast<size_t>(tokens * width));
        const int64_t block = std::max<int64_t>(1, kBlockBytes / (width * 4));
        parallel_for(tokens, 32, [&](int64_t begin, int64_t end, int worker) {
          for (int64_t b0 = begin; b0 < end; b0 += block) {
            const int64_t b1 = std::min(end, b0 + block);
            t.gather(
                std::span<const int64_t>(ids + b0 * cols, static_cast<size_t>((b1 - b0) * cols)),
                std::span<float>(dst + b0 * width, static_cast<size_t>((b1 - b0) * width)),
                workspaces[worker]);
            if constexpr (!std::is_same_v<Scalar, float>) {
              for (int64_t i = b0 * width; i < b1 * width; ++i)
                out[i] = static_cast<Scalar>(dst[i]);
            }
            for (int64_t u = b0; u < b1; ++u) {
              if ((live != nullptr && live[u] == 0) || finite::all_finite(dst + u * width, width))
                continue;
              finite::keep_lowest(first, u);
              return;
            }
          }
        });
      },
      table);
  return first.load() < tokens ? first.load() : -1;
}

/// The scalar reference gather (codec decode_row_reference, no threads) into Scalar.
template <class Scalar>
std::vector<Scalar> gather_memory_reference(const LayerTable& table, std::span<const int64_t> ids) {
  return std::visit(
      [&](const auto& t) {
        const int64_t tokens = static_cast<int64_t>(ids.size()) / t.num_columns();
        std::vector<float> e(static_cast<size_t>(tokens * t.output_dim()));
        t.gather_reference(ids, std::span<float>(e));
        return std::vector<Scalar>(e.begin(), e.end());
      },
      table);
}

/// Throws unless hasher is set and its column sizes are the table's.
template <class Hasher>
void check_hasher(std::string_view who, const Hasher& hasher, const LayerTable& table) {
  std::visit(
      [&](const auto& t) {
        const auto rows = t.column_rows();
        const auto primes = hasher.primes();
        ENGRAM_CHECK(std::equal(rows.begin(), rows.end(), primes.begin(), primes.end()), who,
                     ": the hasher's ", primes.size(), " column sizes (primes) differ from the ",
                     rows.size(), " of table '", t.name(),
                     "' (a hasher of another layer or config?)");
      },
      table);
}

/// Checks the token ids [tokens] of `segments` and the live mask before hashing: sizes, ids of
/// live tokens in the compression table (errors name sequence and position).
template <class Hasher>
void check_token_ids(std::string_view who, const Hasher& hasher, std::span<const int64_t> input_ids,
                     const Segments& segments, std::span<const uint8_t> live) {
  const int64_t tokens = segments.total();
  check_size(who, "input_ids", input_ids.size(), tokens, 1, "[B, T]");
  if (!live.empty()) check_size(who, "live", live.size(), tokens, 1, "[B, T]");
  for (int64_t s = 0, i = 0; s < segments.count; ++s)
    for (int64_t t = 0, len = segments.length(s); t < len; ++t, ++i) {
      if (!live.empty() && live[i] == 0) continue;
      ENGRAM_CHECK(hasher.accepts_token_id(input_ids[i]), who, ": token id ", input_ids[i],
                   " at sequence ", s, ", position ", t, " is outside the compression table [0, ",
                   hasher.lookup_size(), ")",
                   hasher.accepts_negative_ids() ? " (negative ids are hashed as they are)" : "");
    }
}

/// check_token_ids for token ids [B, T].
template <class Hasher>
void check_token_ids(std::string_view who, const Hasher& hasher, std::span<const int64_t> input_ids,
                     int64_t batch, int64_t seq_len, std::span<const uint8_t> live) {
  check_token_ids(who, hasher, input_ids, uniform_segments(who, batch, seq_len), live);
}

/// Throws unless `states` is empty (allow_empty) or holds one non-null state per sequence.
template <class State>
void check_state_count(std::string_view who, std::span<State* const> states, int64_t sequences,
                       bool allow_empty) {
  ENGRAM_CHECK((allow_empty && states.empty()) || static_cast<int64_t>(states.size()) == sequences,
               who, ": ", states.size(), " states for ", sequences, " sequences");
  for (size_t s = 0; s < states.size(); ++s)
    ENGRAM_CHECK(states[s] != nullptr, who, ": state ", s, " is null");
}

/// Hashes the token ids [tokens] of `segments` (checked with check_token_ids) into out [tokens,
/// cols]: sequence s continues from and advances states[s] (keeping what its rollback needs), or,
/// states empty, starts fresh. The states are checked before any of them advances.
template <class Hasher, class State>
void hash_token_segments(std::string_view who, const Hasher& hasher,
                         std::span<const int64_t> input_ids, const Segments& segments,
                         std::span<const uint8_t> live, std::span<State* const> states,
                         int64_t* out) {
  for (size_t s = 0; s < states.size(); ++s) {
    const auto history = states[s]->hash_state().history();
    ENGRAM_CHECK(static_cast<int64_t>(history.size()) == hasher.max_ngram_size() - 1, who,
                 ": state ", s, " holds a hash history of ", history.size(),
                 " ids, expected max_ngram_size - 1 = ", hasher.max_ngram_size() - 1,
                 " (make states with the layer's make_state())");
    for (int64_t v : history)
      ENGRAM_CHECK(hasher.accepts_history_id(v), who, ": state ", s, " holds compressed id ", v,
                   ", outside [0, ", hasher.compressed_vocab_size(), ")",
                   hasher.accepts_negative_ids() ? " (or a negative token id)" : "");
  }
  const auto cols = static_cast<size_t>(hasher.num_columns());
  for (int64_t s = 0, first = 0; s < segments.count; first += segments.length(s++)) {
    const auto n = static_cast<size_t>(segments.length(s)), at = static_cast<size_t>(first);
    const auto ids = input_ids.subspan(at, n);
    const auto seq_live = live.empty() ? live : live.subspan(at, n);
    if (states.empty())
      hasher.hash(ids, 1, segments.length(s), std::span<int64_t>(out + at * cols, n * cols),
                  seq_live);
    else
      DecodeStateAccess::hash_chunk(*states[s], hasher, ids, seq_live, out + at * cols);
  }
}

/// The token-id front end of the ragged forwards: checks states (empty or one per sequence) and
/// token ids, hashes them into `scratch` and returns the hash ids [tokens, cols].
template <class Hasher, class State>
std::span<const int64_t> hash_ragged_tokens(std::string_view who, const Hasher& hasher,
                                            std::span<const int64_t> input_ids,
                                            const Segments& segments, std::span<const uint8_t> live,
                                            std::span<State* const> states,
                                            AlignedBuffer<int64_t>& scratch) {
  check_state_count(who, states, segments.count, /*allow_empty=*/true);
  check_token_ids(who, hasher, input_ids, segments, live);
  const auto size = static_cast<size_t>(segments.total() * hasher.num_columns());
  int64_t* ids = scratch.ensure(size);
  hash_token_segments(who, hasher, input_ids, segments, live, states, ids);
  return {ids, size};
}

/// Advances states[s] (layers without conv history) by the length of sequence s.
template <class State>
void advance_states(std::span<State* const> states, const Segments& segments) noexcept {
  for (size_t s = 0; s < states.size(); ++s)
    DecodeStateAccess::advance(*states[s], segments.length(static_cast<int64_t>(s)));
}

/// hash_token_segments for token ids [B, T], one state per sequence.
template <class Hasher, class State>
void hash_token_chunks(std::string_view who, const Hasher& hasher,
                       std::span<const int64_t> input_ids, int64_t batch, int64_t seq_len,
                       std::span<const uint8_t> live, std::span<State* const> states,
                       int64_t* out) {
  hash_token_segments(who, hasher, input_ids, uniform_segments(who, batch, seq_len), live, states,
                      out);
}

}  // namespace engram::detail
