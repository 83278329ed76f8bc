// LinearT (the AVX-512 panel kernel for float; OpenBLAS or Eigen GEMM otherwise) against
// reference::linear, and detail::panel_product's vector kernel against its plain-loop path.
#include "engram/nn/linear.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace engram {
namespace {

using ::testing::HasSubstr;

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(Linear, HandComputed) {
  // W = [[1, 2, 3], [4, 5, 6]], b = [0.5, -1], x = [1, 0, -1]
  const std::vector<float> w = {1, 2, 3, 4, 5, 6}, b = {0.5f, -1.0f}, x = {1, 0, -1};
  std::vector<float> y(2);
  Linear(w, 2, 3, b).forward(x.data(), 1, y.data());
  EXPECT_EQ(y, (std::vector<float>{-1.5f, -3.0f}));
  Linear(w, 2, 3, b).forward(x.data(), 1, y.data(), /*add_bias=*/false);
  EXPECT_EQ(y, (std::vector<float>{-2.0f, -2.0f}));
}

TEST(Linear, FastMatchesReference) {
  // Row counts around the 6-row register blocks; out around the 64-column panels.
  for (const int64_t rows : {0, 1, 5, 37, 48, 49, 70}) {
    for (const int64_t in : {1, 85, 163}) {
      for (const int64_t out : {1, 7, 16, 85, 128}) {
        for (const bool with_bias : {false, true}) {
          SCOPED_TRACE("rows " + std::to_string(rows) + " in " + std::to_string(in) + " out " +
                       std::to_string(out) + (with_bias ? " bias" : ""));
          const auto x = random_values(rows * in, 1);
          const auto w = random_values(out * in, 2);
          const auto b = random_values(out, 3);
          const Linear layer(w, out, in,
                             with_bias ? std::span<const float>(b) : std::span<const float>());
          std::vector<float> fast(rows * out + 3, 77.0f), ref(rows * out);
          layer.forward(x.data(), rows, fast.data());
          reference::linear(x.data(), w.data(), with_bias ? b.data() : nullptr, ref.data(), rows,
                            in, out);
          for (int64_t i = 0; i < rows * out; ++i)
            EXPECT_NEAR(fast[i], ref[i], 1e-5f * (1 + in / 16));
          for (int64_t i = rows * out; i < rows * out + 3; ++i) EXPECT_EQ(fast[i], 77.0f);
        }
      }
    }
  }
}

// pack_panels lays W [out, in] out as [in][64] panels, zero-padding the last one.
TEST(Linear, PackPanelsLayout) {
  const int64_t out = 70, in = 3;
  std::vector<float> w(out * in);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i + 1);
  ASSERT_EQ(detail::panel_count(out), 2);
  std::vector<float> packed(2 * in * detail::kPanelColumns, -1.0f);
  detail::pack_panels(w.data(), out, in, packed.data());
  for (int64_t p = 0; p < 2; ++p)
    for (int64_t k = 0; k < in; ++k)
      for (int64_t j = 0; j < detail::kPanelColumns; ++j) {
        const int64_t o = p * detail::kPanelColumns + j;
        EXPECT_EQ(packed[(p * in + k) * detail::kPanelColumns + j], o < out ? w[o * in + k] : 0.0f)
            << "panel " << p << " k " << k << " j " << j;
      }
}

// Every row remainder of the 6-row blocks, partial last panels (out not a multiple of 64, masked
// stores), passes over x in chunks of rows (13 and 32 rows: passes of 12), and a panel range
// [p_begin, p_end) writing only its own columns.
template <class W>
void check_panel_kernel(W (*convert)(float)) {
  for (const int64_t rows : {1, 2, 3, 4, 5, 6, 7, 13, 32}) {
    for (const int64_t in : {1, 16, 17, 163}) {
      for (const int64_t out : {1, 9, 64, 70, 150}) {
        SCOPED_TRACE("rows " + std::to_string(rows) + " in " + std::to_string(in) + " out " +
                     std::to_string(out));
        const auto x = random_values(rows * in, 4);
        const auto w32 = random_values(out * in, 5);
        std::vector<W> w(w32.size());
        for (size_t i = 0; i < w.size(); ++i) w[i] = convert(w32[i]);
        const int64_t panels = detail::panel_count(out);
        std::vector<W> packed(panels * in * detail::kPanelColumns);
        detail::pack_panels(w.data(), out, in, packed.data());
        const int64_t ldy = out + 2, p_begin = panels > 1 ? 1 : 0;
        std::vector<float> fast(rows * ldy, 77.0f), ref(rows * ldy, 77.0f);
        // chunk 12: x in passes of 12 rows (the default fits L2: hundreds of rows), packed in two
        // calls (pass 0, then the rest) as threads share the packing.
        constexpr int64_t kChunk = 12;
        std::vector<float> xp(static_cast<size_t>(detail::packed_x_size<float>(rows, in)));
        detail::pack_passes(x.data(), rows, in, kChunk, 0, 1, xp.data());
        detail::pack_passes(x.data(), rows, in, kChunk, 1, (rows + kChunk - 1) / kChunk, xp.data());
        detail::panel_product(x.data(), xp.data(), rows, packed.data(), in, out, fast.data(), ldy,
                              p_begin, panels, kChunk);
        detail::panel_product_reference(x.data(), rows, packed.data(), in, out, ref.data(), ldy,
                                        p_begin, panels);
        std::vector<float> dense(rows * out);  // the spec on the unpacked W
        reference::linear(x.data(), w.data(), static_cast<const float*>(nullptr), dense.data(),
                          rows, in, out);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t o = 0; o < ldy; ++o) {
            if (o < p_begin * detail::kPanelColumns || o >= out) {
              EXPECT_EQ(fast[r * ldy + o], 77.0f) << "row " << r << " col " << o;
              EXPECT_EQ(ref[r * ldy + o], 77.0f) << "row " << r << " col " << o;
            } else {
              EXPECT_NEAR(fast[r * ldy + o], ref[r * ldy + o], 1e-5f * (1 + in / 16))
                  << "row " << r << " col " << o;
              EXPECT_NEAR(fast[r * ldy + o], dense[r * out + o], 1e-5f * (1 + in / 16))
                  << "row " << r << " col " << o;
            }
          }
      }
    }
  }
}

TEST(Linear, PanelKernelMatchesScalarLoops) {
  check_panel_kernel<float>([](float v) { return v; });
}

TEST(Linear, BF16PanelKernelMatchesScalarLoops) {
  check_panel_kernel<BFloat16>([](float v) { return BFloat16{detail::f32_to_bf16_bits(v)}; });
}

TEST(Linear, DoubleMatchesReference) {
  std::mt19937 rng(6);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  const int64_t rows = 3, in = 85, out = 7;
  std::vector<double> x(rows * in), w(out * in), y(rows * out), ref(rows * out);
  for (auto& v : x) v = dist(rng);
  for (auto& v : w) v = dist(rng);
  LinearT<double>(w, out, in).forward(x.data(), rows, y.data());
  reference::linear(x.data(), w.data(), static_cast<const double*>(nullptr), ref.data(), rows, in,
                    out);
  for (int64_t i = 0; i < rows * out; ++i) EXPECT_NEAR(y[i], ref[i], 1e-12);
}

// bf16 weights: LinearBF16 (the panel kernel; without AVX-512 the widened GEMM, with out not a
// multiple of kWidenRows) against the double reference on the same bf16 weights and
// against the f32 Linear on the bf16-rounded weights widened to f32.
TEST(Linear, BF16WeightsMatchF32OnRoundedWeights) {
  for (const int64_t rows : {1, 7, 48, 49, 70}) {
    for (const int64_t in : {1, 85, 163}) {
      for (const int64_t out : {3, 300}) {
        SCOPED_TRACE("rows " + std::to_string(rows) + " in " + std::to_string(in) + " out " +
                     std::to_string(out));
        const auto x = random_values(rows * in, 7);
        const auto w = random_values(out * in, 8);
        const auto b = random_values(out, 9);
        std::vector<BFloat16> w16(w.size());
        std::vector<float> rounded(w.size());
        for (size_t i = 0; i < w.size(); ++i) {
          w16[i].bits = detail::f32_to_bf16_bits(w[i]);
          rounded[i] = detail::bf16_bits_to_f32(w16[i].bits);
        }
        std::vector<float> fast(rows * out + 3, 77.0f), f32(rows * out), ref(rows * out);
        LinearBF16(w16, out, in, b).forward(x.data(), rows, fast.data());
        Linear(rounded, out, in, b).forward(x.data(), rows, f32.data());
        reference::linear(x.data(), w16.data(), b.data(), ref.data(), rows, in, out);
        for (int64_t i = 0; i < rows * out; ++i) {
          EXPECT_NEAR(fast[i], ref[i], 1e-5f * (1 + in / 16));
          EXPECT_NEAR(fast[i], f32[i], 1e-5f * (1 + in / 16));
        }
        for (int64_t i = rows * out; i < rows * out + 3; ++i) EXPECT_EQ(fast[i], 77.0f);
        // bf16 rounding is visible: the unrounded f32 weights give a different result.
        if (in == 163 && rows == 1) {
          std::vector<float> unrounded(rows * out);
          Linear(w, out, in, b).forward(x.data(), rows, unrounded.data());
          double diff = 0;
          for (int64_t i = 0; i < rows * out; ++i) diff += std::abs(unrounded[i] - fast[i]);
          EXPECT_GT(diff, 1e-4);
        }
      }
    }
  }
}

TEST(Linear, RejectsMismatchedSizes) {
  const std::vector<float> w(6), b(3);
  try {
    Linear(w, 2, 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("weight has 6 values, expected [2, 4]"));
  }
  try {
    Linear(w, 2, 3, b);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("bias has 3 values, expected 2"));
  }
}

}  // namespace
}  // namespace engram
