// loss_plot.hpp: the training example's loss curves as CSV and as a PNG (libpng, optional: built
// with ENGRAM_HAVE_PNG; without it --plot is an error naming the missing library).
//
//   write_loss_csv(path, points)   epoch,train_engram,val_engram,train_off,val_off
//   write_loss_plot(path, points)  800 x 500 RGB: loss against epoch, four curves, axes with tick
//                                  labels, a legend (drawn with a built-in 5x7 bitmap font)
// Errors: ENGRAM_CHECK naming the file. Not thread safe (writes files).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "engram/error.hpp"

#ifdef ENGRAM_HAVE_PNG
#include <png.h>
#endif

namespace engram::example {

/// Losses (mean nats per token) after `epoch` epochs of Engram training (0: before).
struct LossPoint {
  int64_t epoch;
  double train_engram, val_engram, train_off, val_off;
};

inline void write_loss_csv(const std::string& path, const std::vector<LossPoint>& points) {
  FILE* f = std::fopen(path.c_str(), "w");
  ENGRAM_CHECK(f != nullptr, path, ": cannot open for writing");
  std::fprintf(f, "epoch,train_engram,val_engram,train_off,val_off\n");
  for (const LossPoint& p : points)
    std::fprintf(f, "%lld,%.6f,%.6f,%.6f,%.6f\n", static_cast<long long>(p.epoch), p.train_engram,
                 p.val_engram, p.train_off, p.val_off);
  ENGRAM_CHECK(std::fclose(f) == 0, path, ": write failed");
}

namespace plot_detail {

struct Rgb {
  uint8_t r, g, b;
};

/// 5x7 glyphs, 7 rows of 5 bits (bit 4 = leftmost column), for the characters the plot uses.
inline const std::array<uint8_t, 7>* glyph(char c) {
  struct Entry {
    char c;
    std::array<uint8_t, 7> rows;
  };
  static const Entry kFont[] = {
      {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
      {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
      {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
      {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
      {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
      {'.', {0, 0, 0, 0, 0, 12, 12}},      {'-', {0, 0, 0, 31, 0, 0, 0}},
      {',', {0, 0, 0, 0, 12, 4, 8}},       {'(', {2, 4, 8, 8, 8, 4, 2}},
      {')', {8, 4, 2, 2, 2, 4, 8}},        {':', {0, 12, 12, 0, 12, 12, 0}},
      {'a', {0, 0, 14, 1, 15, 17, 15}},    {'b', {16, 16, 22, 25, 17, 17, 30}},
      {'c', {0, 0, 14, 16, 16, 17, 14}},   {'d', {1, 1, 13, 19, 17, 17, 15}},
      {'e', {0, 0, 14, 17, 31, 16, 14}},   {'f', {6, 9, 8, 28, 8, 8, 8}},
      {'g', {0, 15, 17, 17, 15, 1, 14}},   {'h', {16, 16, 22, 25, 17, 17, 17}},
      {'i', {4, 0, 12, 4, 4, 4, 14}},      {'k', {16, 16, 18, 20, 24, 20, 18}},
      {'l', {12, 4, 4, 4, 4, 4, 14}},      {'m', {0, 0, 26, 21, 21, 17, 17}},
      {'n', {0, 0, 22, 25, 17, 17, 17}},   {'o', {0, 0, 14, 17, 17, 17, 14}},
      {'p', {0, 30, 17, 17, 30, 16, 16}},  {'r', {0, 0, 22, 25, 16, 16, 16}},
      {'s', {0, 0, 14, 16, 14, 1, 30}},    {'t', {8, 8, 28, 8, 8, 9, 6}},
      {'u', {0, 0, 17, 17, 17, 19, 13}},   {'v', {0, 0, 17, 17, 17, 10, 4}},
      {'w', {0, 0, 17, 17, 21, 21, 10}},   {'y', {0, 17, 17, 17, 15, 1, 14}},
  };
  for (const Entry& e : kFont)
    if (e.c == c) return &e.rows;
  return nullptr;  // space and anything else: blank
}

class Canvas {
 public:
  Canvas(int width, int height)
      : width_(width), height_(height), pixels_(static_cast<size_t>(width * height * 3), 255) {}
  int width() const noexcept { return width_; }
  int height() const noexcept { return height_; }
  const uint8_t* row(int y) const { return pixels_.data() + static_cast<size_t>(y * width_ * 3); }

  void set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
    uint8_t* p = pixels_.data() + static_cast<size_t>((y * width_ + x) * 3);
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  void fill(int x0, int y0, int x1, int y1, Rgb c) {
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) set(x, y, c);
  }
  /// A line `thickness` pixels wide; dashed when dash > 0 (dash pixels on, dash off).
  void line(double x0, double y0, double x1, double y1, Rgb c, int thickness, int dash = 0) {
    const int steps = static_cast<int>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (int i = 0; i <= steps; ++i) {
      if (dash > 0 && (i / dash) % 2 == 1) continue;
      const double t = static_cast<double>(i) / steps;
      const int x = static_cast<int>(std::lround(x0 + t * (x1 - x0)));
      const int y = static_cast<int>(std::lround(y0 + t * (y1 - y0)));
      fill(x - thickness / 2, y - thickness / 2, x + (thickness - 1) / 2, y + (thickness - 1) / 2,
           c);
    }
  }
  /// Text at (x, y) = top-left, glyphs scaled by `scale`.
  void text(int x, int y, const std::string& s, Rgb c, int scale = 2) {
    for (char ch : s) {
      // Letters with a descender sit two rows lower.
      const int drop = (ch == 'g' || ch == 'p' || ch == 'y') ? 2 * scale : 0;
      if (const auto* g = glyph(ch))
        for (int r = 0; r < 7; ++r)
          for (int k = 0; k < 5; ++k)
            if ((*g)[static_cast<size_t>(r)] & (16 >> k))
              fill(x + k * scale, y + drop + r * scale, x + (k + 1) * scale - 1,
                   y + drop + (r + 1) * scale - 1, c);
      x += 6 * scale;
    }
  }
  static int text_width(const std::string& s, int scale = 2) {
    return static_cast<int>(s.size()) * 6 * scale;
  }

 private:
  int width_, height_;
  std::vector<uint8_t> pixels_;
};

}  // namespace plot_detail

/// Draws the four loss curves of `points` into a PNG at `path`.
inline void write_loss_plot(const std::string& path, const std::vector<LossPoint>& points) {
#ifndef ENGRAM_HAVE_PNG
  (void)points;
  ENGRAM_CHECK(false, path, ": --plot needs libpng (libpng-dev), which this build did not find");
#else
  using plot_detail::Canvas;
  using plot_detail::Rgb;
  ENGRAM_CHECK(!points.empty(), path, ": no loss points to plot");
  Canvas canvas(800, 500);
  const int left = 90, right = 780, top = 100, bottom = 430;
  double lo = points[0].val_off, hi = lo;
  for (const LossPoint& p : points)
    for (double v : {p.train_engram, p.val_engram, p.train_off, p.val_off})
      lo = std::min(lo, v), hi = std::max(hi, v);
  const double pad = std::max(0.05 * (hi - lo), 1e-3);
  lo -= pad, hi += pad;
  const int64_t last_epoch = std::max<int64_t>(1, points.back().epoch);
  auto px = [&](double epoch) {
    return left + (right - left) * epoch / static_cast<double>(last_epoch);
  };
  auto py = [&](double loss) { return bottom - (bottom - top) * (loss - lo) / (hi - lo); };
  const Rgb black{0, 0, 0}, grey{215, 215, 215};
  // Grid, axes and tick labels.
  constexpr int kYTicks = 5;
  for (int i = 0; i <= kYTicks; ++i) {
    const double v = lo + (hi - lo) * i / kYTicks;
    const int y = static_cast<int>(std::lround(py(v)));
    canvas.line(left, y, right, y, grey, 1);
    char label[32];
    std::snprintf(label, sizeof label, "%.3f", v);
    canvas.text(left - 8 - Canvas::text_width(label), y - 7, label, black);
  }
  const int64_t x_step = std::max<int64_t>(1, last_epoch / 10);
  for (int64_t e = 0; e <= last_epoch; e += x_step) {
    const int x = static_cast<int>(std::lround(px(static_cast<double>(e))));
    canvas.line(x, bottom, x, bottom + 6, black, 1);
    const std::string label = std::to_string(e);
    canvas.text(x - Canvas::text_width(label) / 2, bottom + 12, label, black);
  }
  canvas.line(left, top, left, bottom, black, 2);
  canvas.line(left, bottom, right, bottom, black, 2);
  canvas.text((left + right - Canvas::text_width("epoch")) / 2, bottom + 40, "epoch", black);
  canvas.text(10, 14, "loss (nats per token)", black);
  // Curves: Engram in blue, Engram off in red; validation solid, training dashed.
  struct Curve {
    double LossPoint::*member;
    Rgb color;
    int dash;
    const char* name;
  };
  const Curve curves[] = {{&LossPoint::val_engram, {31, 90, 200}, 0, "validation, engram"},
                          {&LossPoint::train_engram, {31, 90, 200}, 8, "training, engram"},
                          {&LossPoint::val_off, {210, 50, 40}, 0, "validation, engram off"},
                          {&LossPoint::train_off, {210, 50, 40}, 8, "training, engram off"}};
  int legend_index = 0;
  for (const Curve& c : curves) {
    for (size_t i = 0; i < points.size(); ++i) {
      const double x = px(static_cast<double>(points[i].epoch)), y = py(points[i].*c.member);
      canvas.fill(static_cast<int>(x) - 3, static_cast<int>(y) - 3, static_cast<int>(x) + 3,
                  static_cast<int>(y) + 3, c.color);
      if (i + 1 < points.size())
        canvas.line(x, y, px(static_cast<double>(points[i + 1].epoch)), py(points[i + 1].*c.member),
                    c.color, 3, c.dash);
    }
    // Legend above the plot area: Engram on the left, Engram off on the right.
    const int lx = left + 10 + (legend_index / 2) * 340, ly = 44 + (legend_index % 2) * 22;
    canvas.line(lx, ly + 7, lx + 40, ly + 7, c.color, 3, c.dash);
    canvas.text(lx + 50, ly, c.name, black);
    ++legend_index;
  }

  FILE* f = std::fopen(path.c_str(), "wb");
  ENGRAM_CHECK(f != nullptr, path, ": cannot open for writing");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    ENGRAM_CHECK(false, path, ": libpng failed to write the plot");
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(canvas.width()),
               static_cast<png_uint_32>(canvas.height()), 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < canvas.height(); ++y)
    png_write_row(png, const_cast<png_bytep>(canvas.row(y)));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  ENGRAM_CHECK(std::fclose(f) == 0, path, ": write failed");
#endif
}

}  // namespace engram::example
