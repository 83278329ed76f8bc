// `engram probe` and `engram bench --probe` (help: help_cli_test.cpp).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_support.hpp"
#include "engram/detail/cpu_features.hpp"

namespace engram {
namespace {

using test::run_cli;

TEST(CliProbe, MeasuresEveryLimitAndWritesThemAsJson) {
  const std::string out = test::temp_file("engram_probe", "probe.json");
  const std::string dir = test::temp_file("engram_probe", "");
  const auto r = run_cli("probe --threads 1 --memory-mb 64 --dir " + dir +
                         " --file-mb 16 --io-seconds 1 -o " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("f32 FMA peak"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("4 KiB random read"), std::string::npos) << r.output;
  std::ifstream in(out);
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("threads").get<int>(), 1);
  for (const char* field : {"read_gbps", "gather_rows_per_s", "gather_gbps", "iops_4k"}) {
    EXPECT_GT(j.at(field).get<double>(), 0) << field;
  }
  const std::string isa = j.at("isa").get<std::string>();
  // A vector unit is there on every x86-64 machine these tests run on; bf16 only where it exists.
  if (isa != "scalar") {
    EXPECT_GT(j.at("fma_gflops_core").get<double>(), 0);
  }
  EXPECT_EQ(j.at("bf16_gflops_core").get<double>() > 0, isa == "avx512bf16");
  // The scratch file is removed.
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().rfind("engram-probe-", 0), std::string::npos)
        << e.path();
  }
}

TEST(CliProbe, AnIsaLimitTurnsTheBf16FigureOff) {
  const auto r = test::shell("ENGRAM_ISA=avx2 " + std::string(ENGRAM_CLI_PATH) +
                             " probe --threads 1 --memory-mb 64");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("isa avx2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("bf16 dot peak     n/a"), std::string::npos) << r.output;
}

// A misspelt ISA setting is named on stderr and ignored (the CPU's best level stays in use).
TEST(CliProbe, AnUnknownIsaSettingIsReportedAndIgnored) {
  const auto r = test::shell("ENGRAM_ISA=avx9 " + std::string(ENGRAM_CLI_PATH) +
                             " probe --threads 1 --memory-mb 64");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("engram: ignoring ENGRAM_ISA=avx9 (expected one of scalar, avx2, "
                          "avx512, avx512bf16)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(std::string("isa ") + std::string(isa_name(best_isa()))),
            std::string::npos)
      << r.output;
}

// `engram bench --probe FILE --profile`: the roofline line and the split of a forward. The demo
// block checks the hidden states in its gate, so the layer's separate check takes no time; the
// share beyond the projection is 1 - projection / total of the printed figures.
TEST(CliProbe, BenchPrintsTheRooflineAndTheProfile) {
  const std::string probe = test::temp_file("engram_probe", "bench_probe.json");
  ASSERT_EQ(run_cli("probe --threads 1 --memory-mb 64 -o " + probe).status, 0);
  const std::string data = ENGRAM_TEST_DATA_DIR;
  const auto r =
      run_cli("bench --config " + data + "/io/small_l15_config.json --lookup " + data +
              "/tokenizer/deepseek_v3/lookup.safetensors --seqlen 16 --reps 3 "
              "--threads 1 --probe " +
              probe + " --profile --cache-dir " + test::temp_file("engram_probe", "cache"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("achieved "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("of the probe's f32 FMA peak"), std::string::npos) << r.output;
  std::map<std::string, double> ms;
  for (const char* part :
       {"hash", "gather", "projection", "per-token", "checks", "other", "total"}) {
    const auto at = r.output.find(std::string("  ") + part + " ");
    ASSERT_NE(at, std::string::npos) << part << "\n" << r.output;
    ms[part] = std::stod(r.output.substr(at + 2 + std::string(part).size()));
  }
  EXPECT_GT(ms["projection"], 0) << r.output;
  EXPECT_GT(ms["per-token"], 0) << r.output;
  EXPECT_EQ(ms["checks"], 0) << r.output;  // in the demo block's gate
  EXPECT_NE(r.output.find("non-GEMM share"), std::string::npos) << r.output;
  const auto beyond = r.output.find("beyond the projection ");
  ASSERT_NE(beyond, std::string::npos) << r.output;
  const double percent = std::stod(r.output.substr(beyond + 22));
  // printed with one decimal, from times printed to 0.001 ms
  EXPECT_NEAR(percent, 100.0 * (1.0 - ms["projection"] / ms["total"]), 0.05 + 0.1 / ms["total"])
      << r.output;
  // A malformed probe file is one error line naming it.
  const std::string bad = test::temp_file("engram_probe", "bad_probe.json");
  ASSERT_EQ(test::shell("echo '{\"threads\": 2}' > " + bad).status, 0);
  const auto e = run_cli("bench --config " + data + "/io/small_l15_config.json --lookup " + data +
                         "/tokenizer/deepseek_v3/lookup.safetensors --seqlen 4 --probe " + bad);
  EXPECT_EQ(e.status, 1) << e.output;
  EXPECT_NE(e.output.find(bad + ": field 'fma_gflops_core'"), std::string::npos) << e.output;
}

}  // namespace
}  // namespace engram
