// progress.hpp: a progress bar for the training example — "\r[=====>    ] 45%  text" redrawn on
// stderr when stderr is a terminal, silent otherwise (logs and tests see only the plain lines the
// caller prints to stdout). Not thread safe: one owner draws it.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

namespace engram::example {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label, bool enabled = ::isatty(STDERR_FILENO) != 0)
      : label_(std::move(label)), enabled_(enabled) {}

  /// Redraws the bar at done / total with `text` after it (at most every 1% of progress).
  void update(int64_t done, int64_t total, const std::string& text) {
    if (!enabled_ || total <= 0) return;
    const int64_t percent = std::clamp<int64_t>(100 * done / total, 0, 100);
    if (percent == last_percent_ && done < total) return;
    last_percent_ = percent;
    constexpr int64_t kWidth = 30;
    const int64_t filled = kWidth * percent / 100;
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < kWidth) bar += '>';
    bar.resize(static_cast<size_t>(kWidth), ' ');
    std::fprintf(stderr, "\r%s [%s] %3lld%%  %s   ", label_.c_str(), bar.c_str(),
                 static_cast<long long>(percent), text.c_str());
    std::fflush(stderr);
  }

  /// Clears the bar's line.
  void finish() {
    if (!enabled_ || last_percent_ < 0) return;
    std::fprintf(stderr, "\r%*s\r", 100, "");
    std::fflush(stderr);
    last_percent_ = -1;
  }

 private:
  std::string label_;
  bool enabled_;
  int64_t last_percent_ = -1;
};

}  // namespace engram::example
