// The memory-tier commands of the `engram` tool, run as a user would: `pack` writes a table that
// `forward --table` reads back to the resident forward's exact output (whole and chunked, demo and
// fused, with a checkpoint that has no table at all); an interrupted pack leaves nothing that loads
// and never replaces a good table; `pack --model` packs a V4.1 checkpoint directory's table row
// for row; `bench-offload` runs end to end on a small table.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_support.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/packed_file.hpp"
#include "engram/memory/tiers/safetensors_tier.hpp"
#include "support/test_data.hpp"

namespace engram {
namespace {

using test::CliRun;
using test::shell;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

CliRun run(const std::string& args) { return test::run_cli(args); }

std::string tmp(const std::string& name) { return test::temp_file("engram_tier_cli", name); }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const std::string kLookup = test::data_path("tokenizer/deepseek_v3/lookup.safetensors");

struct Case {
  std::string dir;
  std::string codec;
};

class TierCli : public ::testing::TestWithParam<Case> {};

TEST_P(TierCli, ForwardFromAPackedTableEqualsTheResidentForward) {
  const Case c = GetParam();
  const std::string dir = test::data_path("layer/" + c.dir);
  const SafetensorsFile expected(dir + "/expected.safetensors");
  const std::string layer = expected.metadata().at("layer_id");
  const std::string common = "--config " + dir + "/config.json --lookup " + kLookup + " --layer " +
                             layer + " --input " + dir + "/inputs.safetensors";
  // The resident forward, per chunk size (chunking changes GEMM shapes, hence float rounding).
  std::map<std::string, std::vector<float>> resident;
  CliRun r;
  for (const std::string chunk : {"0", "1", "7"}) {
    const std::string resident_out = tmp(c.dir + "_resident_" + chunk + ".safetensors");
    r = run("forward " + common + " --weights " + dir + "/weights.safetensors --chunk " + chunk +
            " -o " + resident_out);
    ASSERT_EQ(r.status, 0) << r.output;
    resident[chunk] = SafetensorsFile(resident_out).at("output").copy_as<float>();
  }

  const std::string table = tmp(c.dir + ".engram");
  r = run("pack --config " + dir + "/config.json --lookup " + kLookup + " --layer " + layer +
          " --weights " + dir + "/weights.safetensors --codec " + c.codec + " -o " + table);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("rows of layer " + layer));
  EXPECT_THAT(r.output, Not(HasSubstr("\r")));  // no progress lines when stderr is not a tty
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;

  // A checkpoint without the table tensors: the rows can only come from the packed file.
  const SafetensorsFile weights(dir + "/weights.safetensors");
  std::vector<TensorWrite> kept;
  for (const TensorView& view : weights.tensors()) {
    if (view.name == "multi_head_embedding.embedding.weight" || view.name == "embed.weight" ||
        view.name == "embed.weight_scale_inv")
      continue;
    kept.push_back({view.name, view.dtype, view.shape, view.bytes});
  }
  ASSERT_EQ(kept.size() + (c.codec == "fp8" ? 2 : 1), weights.tensors().size());
  const std::string stripped = tmp(c.dir + "_no_table.safetensors");
  save_safetensors(stripped, kept);
  r = run("forward " + common + " --weights " + stripped + " -o " + tmp("x.safetensors"));
  EXPECT_EQ(r.status, 1) << r.output;  // without --table the table is required

  for (const std::string chunk : {"0", "1", "7"}) {
    for (const std::string& uri :
         {"file:" + table, table + "?cache_mb=1", "file:" + table + "?io=buffered"}) {
      SCOPED_TRACE(c.dir + " chunk " + chunk + " table " + uri);
      const std::string out = tmp(c.dir + "_tier_" + chunk + ".safetensors");
      r = run("forward " + common + " --weights " + stripped + " --chunk " + chunk + " --table '" +
              uri + "' -o " + out);
      ASSERT_EQ(r.status, 0) << r.output;
      const auto got = SafetensorsFile(out).at("output").copy_as<float>();
      const std::vector<float>& want = resident[chunk];
      if (c.codec == "bf16") {  // rows rounded to bf16: close, not equal
        float err = 0, scale = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          err = std::max(err, std::abs(got[i] - want[i]));
          scale = std::max(scale, std::abs(want[i]));
        }
        EXPECT_LE(err, 2e-2f * scale);
      } else {
        EXPECT_EQ(got, want);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, TierCli,
                         ::testing::Values(Case{"demo_a", "f32"}, Case{"demo_d", "bf16"},
                                           Case{"fused_a", "fp8"}, Case{"fused_c", "fp8"}),
                         [](const auto& info) { return info.param.dir + "_" + info.param.codec; });

TEST(TierCliErrors, ATableOfAnotherLayerIsRefused) {
  const std::string dir = test::data_path("layer/demo_a");
  const std::string table = tmp("demo_a_l15.engram");
  CliRun r = run("pack --config " + dir + "/config.json --lookup " + kLookup +
                 " --layer 15 --weights " + dir + "/weights.safetensors --codec f32 -o " + table);
  ASSERT_EQ(r.status, 0) << r.output;
  r = run("forward --config " + dir + "/config.json --lookup " + kLookup + " --layer 1 --weights " +
          dir + "/weights.safetensors --input " + dir + "/inputs.safetensors --table " + table +
          " -o " + tmp("y.safetensors"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("holds layer 15, expected layer 1"));
  EXPECT_EQ(run("pack --codec int4 -o x").status, 2);
  r = run("forward --config " + dir + "/config.json --lookup " + kLookup +
          " --layer 15 --weights " + dir + "/weights.safetensors --input " + dir +
          "/inputs.safetensors --table ftp://x/t " + "-o " + tmp("y.safetensors"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("unknown scheme 'ftp'"));
}

// Runs `command` (a pack writing into `dir`) and kills it (SIGKILL, as a crash) at a known point:
// once a temporary file in `dir` (any name but `final_name`) holds [min_bytes, max_bytes) bytes,
// i.e. part of the rows but not all of them (a temporary seen only empty or complete is no
// interrupted write, and the pack is then left to finish).
struct KilledPack {
  bool killed = false;           ///< the process died of our SIGKILL (it had not finished)
  int64_t temp_bytes = 0;        ///< the temporary's size when it was killed
  std::string temp_name;         ///< the temporary's file name
  bool final_name_seen = false;  ///< `final_name` appeared while the pack ran
};
KilledPack kill_pack_midway(const std::string& command, const std::filesystem::path& dir,
                            const std::string& final_name, int64_t min_bytes, int64_t max_bytes) {
  KilledPack result;
  const auto exists_before = std::filesystem::exists(dir / final_name);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + command + " >/dev/null 2>&1").c_str(), nullptr);
    ::_exit(127);
  }
  if (pid < 0) return result;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int status = 0;
  bool exited = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;  // finished (or failed) before reaching the threshold
      break;
    }
    if (!exists_before && std::filesystem::exists(dir / final_name)) result.final_name_seen = true;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.path().filename() == final_name) continue;
      const auto size = static_cast<int64_t>(entry.file_size(ec));
      if (!ec && size >= min_bytes && size < max_bytes) {
        result.temp_bytes = size;
        result.temp_name = entry.path().filename().string();
      }
    }
    if (result.temp_bytes > 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!exited) {
    ::kill(pid, SIGKILL);  // no-op when already killed; ends a pack that never grew (deadline)
    ::waitpid(pid, &status, 0);
  }
  result.killed =
      !exited && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && result.temp_bytes > 0;
  return result;
}

TEST(TierCliErrors, AnInterruptedPackLeavesNothingThatLoadsAndKeepsTheOldTable) {
  const std::string dir = test::data_path("layer/demo_a");
  const std::filesystem::path out_dir = tmp("interrupted");
  std::filesystem::remove_all(out_dir);
  std::filesystem::create_directories(out_dir);
  const std::string table = (out_dir / "table.engram").string();
  const std::string pack = std::string(ENGRAM_CLI_PATH) + " pack --config " + dir +
                           "/config.json --lookup " + kLookup + " --layer 15 --weights " + dir +
                           "/weights.safetensors -o " + table;
  // The rate limit stretches the 86 KB f32 pack to about 1.6 s and writes its pages as it goes:
  // it is killed once the temporary holds 32 to 64 KiB (the header and 7 to 15 of 20 data pages).
  KilledPack k = kill_pack_midway(pack + " --codec f32 --max-mb-per-s 0.05", out_dir,
                                  "table.engram", 32 << 10, 64 << 10);
  ASSERT_TRUE(k.killed) << "the pack was not killed mid-write (temporary '" << k.temp_name
                        << "' reached " << k.temp_bytes << " bytes)";
  EXPECT_FALSE(k.final_name_seen);
  EXPECT_FALSE(std::filesystem::exists(table)) << "a killed pack left " << table;
  CliRun r = run("forward --config " + dir + "/config.json --lookup " + kLookup +
                 " --layer 15 --weights " + dir + "/weights.safetensors --input " + dir +
                 "/inputs.safetensors --table " + table + " -o " + tmp("z.safetensors"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("cannot open packed table"));

  // A good table, then a pack over it killed halfway (bf16, about 45 KB): the table is untouched.
  for (const auto& entry : std::filesystem::directory_iterator(out_dir))
    std::filesystem::remove(entry.path());
  r = shell(pack + " --codec f32");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string good = slurp(table);
  k = kill_pack_midway(pack + " --codec bf16 --max-mb-per-s 0.05", out_dir, "table.engram",
                       16 << 10, 32 << 10);
  ASSERT_TRUE(k.killed) << "the pack was not killed mid-write (temporary '" << k.temp_name
                        << "' reached " << k.temp_bytes << " bytes)";
  EXPECT_NE(k.temp_name, "table.engram");
  EXPECT_EQ(slurp(table), good);
}

TEST(TierCliBench, BenchOffloadRunsEndToEndOnASmallTable) {
  const std::string table_dir = tmp("bench_tables");
  const std::string cmd = "bench-offload --corpus " +
                          test::data_path("hashing/kjv_slice.safetensors") + " --lookup " +
                          kLookup + " --table-rows 2000 --cache-mb 1 --table-dir " + table_dir +
                          " --tokens 1024 --threads 1";
  for (const std::string extra : {"", " --no-prefetch"}) {
    SCOPED_TRACE(extra);
    const CliRun r = run(cmd + extra);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("hidden states equal to the resident run's in 2 of 2 batches"));
    const std::string last = r.output.substr(r.output.rfind('\n', r.output.size() - 2) + 1);
    EXPECT_THAT(last, MatchesRegex("offload penalty -?[0-9.]+% \\(resident [0-9.]+ tok/s, "
                                   "offloaded [0-9.]+ tok/s, cache hit [0-9.]+%\\)\n"));
    EXPECT_THAT(r.output, HasSubstr(extra.empty() ? "asynchronous prefetch" : "no (synchronous)"));
  }
  // The second run reused the table written by the first.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(table_dir),
                          std::filesystem::directory_iterator()),
            1);
}

// A backbone of a set speed: the cold and steady-state lines, and the search for the highest rate
// at a penalty of at most 1% with the probe's IOPS as the yardstick.
TEST(TierCliBench, BenchOffloadWithASetBackboneSpeedReportsColdAndSteadyState) {
  const std::string table_dir = tmp("bench_tables_set_speed");
  const std::string base =
      "bench-offload --corpus " + test::data_path("hashing/kjv_slice.safetensors") + " --lookup " +
      kLookup + " --table-rows 2000 --cache-mb 1 --table-dir " + table_dir + " --threads 1";
  const std::string cmd = base + " --tokens 512";
  CliRun r = run(cmd + " --backbone-tokens-per-s 200000");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string line =
      "backbone 200000 tok/s: penalty -?[0-9.]+% \\(resident [0-9.]+ tok/s, offloaded [0-9.]+ "
      "tok/s, cache hit [0-9.]+%, SSD [0-9]+ IOPS, waited [0-9.]+ s\\)";
  EXPECT_THAT(r.output, ContainsRegex("cold start: +" + line));
  EXPECT_THAT(r.output, ContainsRegex("steady state: +" + line));
  // Each rate is measured --repeats times (default 3) and the median run's penalty is reported.
  for (const std::string phase : {"cold start:", "steady state:"}) {
    const std::regex rate_line(phase +
                               " +backbone 200000 tok/s: penalty (-?[0-9.]+)%.* median of 3 "
                               "runs: (-?[0-9.]+)%, (-?[0-9.]+)%, (-?[0-9.]+)%\n");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.output, m, rate_line)) << r.output;
    std::vector<double> runs = {std::stod(m[2]), std::stod(m[3]), std::stod(m[4])};
    std::sort(runs.begin(), runs.end());
    EXPECT_EQ(std::stod(m[1]), runs[1]) << m[0];
  }
  r = run(cmd + " --backbone-tokens-per-s 200000 --repeats 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, ContainsRegex("steady state: +" + line + "\n"));
  EXPECT_THAT(r.output, Not(HasSubstr("median of")));

  const std::string probe = tmp("probe.json");
  ASSERT_EQ(shell("echo '{\"threads\": 1, \"fma_gflops_core\": 1, \"fma_gflops_all\": 1, "
                  "\"bf16_gflops_core\": 0, \"bf16_gflops_all\": 0, \"read_gbps\": 1, "
                  "\"gather_rows_per_s\": 1, \"gather_gbps\": 1, \"iops_4k\": 1000}' > " +
                  probe)
                .status,
            0);
  for (const std::string no_prefetch : {"", " --no-prefetch"}) {
    r = run(cmd +
            " --find-sustained --max-steps 2 --repeats 1 --backbone-tokens-per-s 2000 --probe " +
            probe + no_prefetch);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr(no_prefetch.empty() ? "asynchronous prefetch"
                                                        : "no (synchronous) prefetch"));
    for (const std::string phase : {"cold start:", "steady state:"}) {
      EXPECT_THAT(r.output,
                  ContainsRegex(phase + " +(sustains [0-9]+ tok/s \\(penalty -?[0-9.]+%, "
                                        "cache hit [0-9.]+%, SSD [0-9]+ IOPS = [0-9]+% of "
                                        "probe\\)|sustains no backbone rate)"))
          << r.output;
    }
  }
  // Too short a corpus for three passes, and a rate of 0, are errors.
  r = run(base + " --backbone-tokens-per-s 1000 --tokens 100000");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("need 3 x --tokens"));
  r = run(cmd + " --find-sustained --backbone-tokens-per-s 0");
  EXPECT_EQ(r.status, 2) << r.output;
}

// pack --model: a V4.1 checkpoint directory's table (FP8 rows and scales in two shards) becomes a
// packed table whose every row record equals the shard tier's.
TEST(TierCliModel, PackModelWritesTheShardTableRowForRow) {
  const std::string dir = test::data_path("v41/golden/model");
  const std::string table = tmp("v41_layer1.engram");
  CliRun r = run("pack --model " + dir + " --layer 1 -o " + table);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("packed 6126 rows of layer 1 (fp8_e4m3, 66 bytes per row"));
  const PackedTableFile file(table);
  EXPECT_EQ(file.info().layer_id, 1);
  EXPECT_EQ(file.info().codec, "fp8_e4m3");
  EXPECT_EQ(file.info().primes, (std::vector<int64_t>{1009, 1013, 1019, 1021, 1031, 1033}));
  DirectIOTier packed(table);
  SafetensorsTier shard(dir + "/model-00002-of-00003.safetensors", "layers.1.engram.embed.weight",
                        dir + "/model-00003-of-00003.safetensors", "");
  ASSERT_EQ(packed.num_rows(), shard.num_rows());
  std::vector<int64_t> ids(static_cast<size_t>(shard.num_rows()));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  std::vector<std::byte> a(ids.size() * 66), b(a.size());
  packed.fetch(ids, a);
  shard.fetch(ids, b);
  EXPECT_TRUE(a == b) << "packed rows differ from the shard's";

  r = run("pack --model " + dir + " --layer 2 -o " + tmp("v41_layer2.engram"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("engram: error: " + dir +
                                  "/config.json: layer 2 is not in "
                                  "layer_ids [1, 3]"));
  r = run("pack --model " + dir + " --codec bf16 -o " + tmp("v41_bf16.engram"));
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("--model takes no --codec"));
}

// forward --table safetensors:: the fused checkpoint's own shard serves the rows in place, with
// the table metadata derived from --config; the output equals the resident forward's.
TEST(TierCliModel, ForwardFromTheCheckpointShardEqualsTheResidentForward) {
  const std::string dir = test::data_path("layer/fused_a");
  const std::string layer =
      SafetensorsFile(dir + "/expected.safetensors").metadata().at("layer_id");
  const std::string common = "forward --config " + dir + "/config.json --lookup " + kLookup +
                             " --layer " + layer + " --weights " + dir +
                             "/weights.safetensors --input " + dir + "/inputs.safetensors";
  const std::string resident = tmp("fused_a_resident.safetensors");
  CliRun r = run(common + " -o " + resident);
  ASSERT_EQ(r.status, 0) << r.output;
  for (const std::string query : {"?tensor=embed", "?tensor=embed.weight&io=mmap&cache_mb=1"}) {
    SCOPED_TRACE(query);
    const std::string out = tmp("fused_a_shard.safetensors");
    r = run(common + " --table 'safetensors:" + dir + "/weights.safetensors" + query + "' -o " +
            out);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(SafetensorsFile(out).at("output").copy_as<float>(),
              SafetensorsFile(resident).at("output").copy_as<float>());
  }
}

}  // namespace
}  // namespace engram
