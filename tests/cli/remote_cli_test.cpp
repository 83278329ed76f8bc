// The memcached pool through the `engram` tool, as a deployment would use it: `pack` a golden's
// table, `push` it to three loopback `memcached -M` servers, and `forward --table
// memcached://...?fallback=TABLE.engram` gives exactly the output of `forward --table file:` (and
// that of the resident checkpoint within 1e-4 for f32 and fp8 tables), also with one or all servers
// stopped. `push` names the server it could not store on (a full server:
// tests/memory/tiers/remote_tier_test.cpp). Skips when the memcached binary or the build's
// libmemcached is missing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_support.hpp"
#include "engram/io/safetensors.hpp"
#include "memory/tiers/memcached_pool.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using test::CliRun;
using ::testing::HasSubstr;

CliRun run(const std::string& args) { return test::run_cli(args); }

std::string tmp(const std::string& name) { return test::temp_file("engram_remote_cli", name); }

const std::string kLookup = test::data_path("tokenizer/deepseek_v3/lookup.safetensors");

std::string skip_reason() {
#if !ENGRAM_HAVE_MEMCACHED
  return "engram was built without libmemcached";
#else
  return test::memcached_binary().empty() ? "memcached binary not found" : "";
#endif
}

struct Case {
  std::string dir;
  std::string codec;
};

class RemoteCli : public ::testing::TestWithParam<Case> {};

TEST_P(RemoteCli, ForwardFromAPoolEqualsTheFileTableAndTheResidentForward) {
  if (const std::string reason = skip_reason(); !reason.empty()) GTEST_SKIP() << reason;
  const Case c = GetParam();
  const std::string dir = test::data_path("layer/" + c.dir);
  const SafetensorsFile expected(dir + "/expected.safetensors");
  const std::string layer = expected.metadata().at("layer_id");
  const std::string common = "--config " + dir + "/config.json --lookup " + kLookup + " --layer " +
                             layer + " --input " + dir + "/inputs.safetensors --weights " + dir +
                             "/weights.safetensors";
  const std::string table = tmp(c.dir + ".engram");
  CliRun r = run("pack --config " + dir + "/config.json --lookup " + kLookup + " --layer " + layer +
                 " --weights " + dir + "/weights.safetensors --codec " + c.codec + " -o " + table);
  ASSERT_EQ(r.status, 0) << r.output;

  test::MemcachedPool pool(test::memcached_binary(), 3, 64);
  r = run("push --table " + table + " --to memcached://" + pool.addresses());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("all read back identical"));
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;

  auto forward = [&](const std::string& extra, const std::string& name) {
    const std::string out = tmp(c.dir + "_" + name + ".safetensors");
    const CliRun f = run("forward " + common + " " + extra + " -o " + out);
    EXPECT_EQ(f.status, 0) << f.output;
    return f.status == 0 ? SafetensorsFile(out).at("output").copy_as<float>()
                         : std::vector<float>();
  };
  const std::vector<float> resident = forward("", "resident");
  const std::string uri = "'memcached://" + pool.addresses() + "?fallback=" + table +
                          "&connect_timeout_ms=200&io_timeout_ms=300'";
  for (const std::string chunk : {"0", "7"}) {
    SCOPED_TRACE("chunk " + chunk);
    const std::vector<float> from_file =
        forward("--chunk " + chunk + " --table file:" + table, "file_" + chunk);
    ASSERT_FALSE(from_file.empty());
    EXPECT_EQ(forward("--chunk " + chunk + " --table " + uri, "pool_" + chunk), from_file);
    if (c.codec != "bf16") {  // bf16 rounds the rows: the resident f32 table differs
      ASSERT_EQ(from_file.size(), resident.size());
      float err = 0, scale = 1;
      for (size_t i = 0; i < resident.size(); ++i) {
        err = std::max(err, std::abs(from_file[i] - resident[i]));
        scale = std::max(scale, std::abs(resident[i]));
      }
      EXPECT_LE(err, 1e-4f * scale) << "the table's output strays from the resident checkpoint's";
    }
  }
  const std::vector<float> from_file = forward("--table file:" + table, "file");
  pool.server(1).stop();
  EXPECT_EQ(forward("--table " + uri, "one_down"), from_file) << "one server stopped";
  for (size_t i = 0; i < pool.size(); ++i) pool.server(i).stop();
  EXPECT_EQ(forward("--table " + uri + " --cache-mb 1", "all_down"), from_file)
      << "all servers stopped";
}

INSTANTIATE_TEST_SUITE_P(Goldens, RemoteCli,
                         ::testing::Values(Case{"demo_a", "f32"}, Case{"demo_d", "bf16"},
                                           Case{"fused_a", "fp8"}),
                         [](const auto& info) { return info.param.dir + "_" + info.param.codec; });

TEST(RemoteCliPush, NamesTheServerAndTheUsage) {
  if (const std::string reason = skip_reason(); !reason.empty()) GTEST_SKIP() << reason;
  const std::string dir = test::data_path("layer/demo_a");
  const SafetensorsFile expected(dir + "/expected.safetensors");
  const std::string table = tmp("push_errors.engram");
  CliRun r = run("pack --config " + dir + "/config.json --lookup " + kLookup + " --layer " +
                 expected.metadata().at("layer_id") + " --weights " + dir +
                 "/weights.safetensors --codec f32 -o " + table);
  ASSERT_EQ(r.status, 0) << r.output;
  const int closed_port = test::free_loopback_port();
  r = run("push --table " + table + " --to memcached://127.0.0.1:" + std::to_string(closed_port));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("engram: error: "));
  EXPECT_THAT(r.output, HasSubstr("on server 127.0.0.1:" + std::to_string(closed_port)));
  r = run("push --table " + table + " --to file:" + table);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--to expects memcached://HOST:PORT"));
}

}  // namespace
}  // namespace engram
