// `engram demo` on configs with fewer than three hash heads per order: the bigram lines print the
// 2-gram heads that exist (it once printed columns 0..2 whatever the config, reading past each
// token's row ids, and past the whole buffer for the last token).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "cli/cli_support.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;

struct Shape {
  int max_ngram_size;
  int heads;
};

class DemoColumns : public ::testing::TestWithParam<Shape> {};

TEST_P(DemoColumns, BigramLinesShowTheHeadsThatExist) {
  const auto [n, heads] = GetParam();
  std::ostringstream name;
  name << "n" << n << "_h" << heads << ".json";
  const std::string config = test::temp_file("engram_demo_cli", name.str());
  {
    std::ofstream f(config);
    f << "{\"engram_vocab_size\": 1009, \"max_ngram_size\": " << n
      << ", \"n_embed_per_ngram\": " << 8 * heads << ", \"n_head_per_ngram\": " << heads
      << ", \"layer_ids\": [1], \"pad_id\": 2, \"seed\": 0, \"kernel_size\": 4, "
         "\"hidden_size\": 16, \"hc_mult\": 2}";
  }
  const test::CliRun r = test::run_cli(
      "demo --tokenizer " + test::data_path("tokenizer/deepseek_v3/tokenizer.json.gz") +
      " --corpus " + test::data_path("hashing/kjv_slice.safetensors") + " --config " + config +
      " --tokens 600 --cache-dir " + test::temp_file("engram_demo_cli", "cache"));
  ASSERT_EQ(r.status, 0) << r.output;
  const int shown = std::min(3, heads);
  std::ostringstream header;  // (streams: GCC 12 warns falsely on "literal" + std::string)
  header << "2-gram rows (head 0.." << shown - 1 << " of " << heads << ")";
  EXPECT_THAT(r.output, HasSubstr(header.str()));
  // "   COUNT x "TEXT" -> rows R0 R1 ...": exactly `shown` row ids, each below the 2-gram tables'
  // size (a prime near 1009).
  const std::regex line(R"(^\s+\d+ x .* -> rows((?: \d+)+)\s*$)");
  std::istringstream lines(r.output);
  int bigram_lines = 0;
  for (std::string l; std::getline(lines, l);) {
    std::smatch m;
    if (!std::regex_match(l, m, line)) continue;
    ++bigram_lines;
    std::istringstream ids(m[1].str());
    int count = 0;
    for (long long id; ids >> id; ++count) EXPECT_LT(id, 1100) << l;
    EXPECT_EQ(count, shown) << l;
  }
  EXPECT_EQ(bigram_lines, 5) << r.output;
}

INSTANTIATE_TEST_SUITE_P(SmallConfigs, DemoColumns,
                         ::testing::Values(Shape{2, 1}, Shape{3, 1}, Shape{2, 2}, Shape{3, 4}),
                         [](const auto& info) {
                           std::ostringstream name;
                           name << "N" << info.param.max_ngram_size << "H" << info.param.heads;
                           return name.str();
                         });

}  // namespace
}  // namespace engram
