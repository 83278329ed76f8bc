// `engram backward` against the PyTorch autograd golden (tests/data/train/demo_grad).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "cli/cli_support.hpp"
#include "engram/io/safetensors.hpp"
#include "support/test_data.hpp"
#include "train/grad_check.hpp"

namespace engram::test {
namespace {

TEST(BackwardCli, MatchesTheAutogradGolden) {
  const std::string dir = data_path("train/demo_grad");
  const std::string out = temp_file("engram_backward_cli", "grads.safetensors");
  const CliRun run =
      run_cli("backward --config " + dir + "/config.json --lookup " +
              data_path("hashing/dsv3_lookup.safetensors") + " --weights " + dir +
              "/weights.safetensors --layer 5 --input " + dir + "/inputs.safetensors -o " + out);
  ASSERT_EQ(run.status, 0) << run.output;
  const SafetensorsFile got(out), expected(dir + "/expected.safetensors");
  EXPECT_EQ(got.at("grad_hidden_states").shape, (std::vector<int64_t>{2, 19, 2, 24}));
  EXPECT_EQ(got.read_int64("table_grad_rows"), expected.read_int64("table_grad_rows"));
  int checked = 0;
  for (const TensorView& tensor : expected.tensors()) {
    const std::string& name = tensor.name;
    if (name == "hash_ids" || name == "primes" || name == "output" || name == "table_grad_rows")
      continue;
    SCOPED_TRACE(name);
    EXPECT_EQ(got.at(name).shape, expected.at(name).shape);
    EXPECT_LT(relative_error(got.at(name).copy_as<float>(), expected.at(name).copy_as<float>()),
              2e-5);
    ++checked;
  }
  EXPECT_EQ(checked, 2 + 13);  // grad_hidden_states, table_grad_values, 13 dense weights
}

TEST(BackwardCli, HelpAndErrors) {
  const CliRun help = run_cli("backward --help");
  EXPECT_EQ(help.status, 0) << help.output;
  EXPECT_NE(help.output.find("--lookup"), std::string::npos) << help.output;
  const std::string dir = data_path("train/demo_grad");
  const CliRun missing =
      run_cli("backward --config " + dir + "/config.json --lookup " +
              data_path("hashing/dsv3_lookup.safetensors") + " --weights " + dir +
              "/weights.safetensors --input " + dir + "/weights.safetensors -o /dev/null");
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_NE(missing.output.find("engram: error:"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace engram::test
