#include "engram/io/safetensors.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/test_data.hpp"

namespace engram {
namespace {

using ::testing::HasSubstr;

class SafetensorsTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) {
    const auto dir =
        std::filesystem::temp_directory_path() / ("engram_st_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    return (dir / name).string();
  }
  // Writes a file with the given raw header text and data bytes.
  std::string raw(const std::string& name, const std::string& header, size_t data_bytes,
                  uint64_t declared_len = UINT64_MAX) {
    const std::string p = path(name);
    std::ofstream out(p, std::ios::binary);
    uint64_t len = declared_len == UINT64_MAX ? header.size() : declared_len;
    out.write(reinterpret_cast<const char*>(&len), 8);
    out << header;
    out << std::string(data_bytes, '\0');
    return p;
  }
  std::string error_of(const std::string& p) {
    try {
      SafetensorsFile f(p);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(SafetensorsTest, RoundTripKeepsNamesDtypesShapesValuesAndMetadata) {
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -8.5f};
  const std::vector<int64_t> b = {INT64_MIN, -1, 0, 1, INT64_MAX};
  const std::vector<uint8_t> c = {};
  const std::vector<TensorWrite> ts = {tensor_write<float>("a.weight", {2, 3}, a),
                                       tensor_write<int64_t>("b", {5}, b),
                                       tensor_write<uint8_t>("empty", {0, 4}, c)};
  const std::string p = path("round.safetensors");
  save_safetensors(p, ts, {{"layer_id", "15"}});
  SafetensorsFile f(p);
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.at("a.weight").dtype, DType::kF32);
  EXPECT_EQ(f.at("a.weight").shape, (std::vector<int64_t>{2, 3}));
  const auto av = f.at("a.weight").as<float>();
  EXPECT_EQ(std::vector<float>(av.begin(), av.end()), a);
  EXPECT_EQ(f.read_int64("b"), b);
  EXPECT_EQ(f.at("empty").numel(), 0);
  EXPECT_EQ(f.metadata().at("layer_id"), "15");
  EXPECT_EQ(f.find("nope"), nullptr);
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(p).parent_path()))
    EXPECT_EQ(e.path().filename().string().find("round.safetensors.tmp"), std::string::npos);
}

// Writers of one path at once (the demo and mini_model share a cache directory): each write
// completes, the file left loads and holds one writer's whole tensor, and no temporary remains.
// With one fixed "<path>.tmp" the writers truncated each other's temporary and all but the first
// rename failed.
TEST_F(SafetensorsTest, ConcurrentWritersOfOnePathLeaveOneCompleteFile) {
  const std::filesystem::path dir = path("concurrent");
  std::filesystem::create_directories(dir);
  const std::string p = (dir / "shared.safetensors").string();
  constexpr int kWriters = 4;
  constexpr size_t kValues = size_t{1} << 18;  // 1 MiB per tensor: the writes overlap
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::mutex mutex;
    std::vector<std::string> errors;
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w)
      threads.emplace_back([&, w] {
        const std::vector<float> values(kValues, static_cast<float>(w));
        const std::vector<TensorWrite> ts = {tensor_write<float>(
            "values", {static_cast<int64_t>(kValues)}, std::span<const float>(values))};
        try {
          save_safetensors(p, ts, {{"writer", std::to_string(w)}});
        } catch (const std::exception& e) {
          const std::lock_guard<std::mutex> lock(mutex);
          errors.push_back(e.what());
        }
      });
    for (auto& t : threads) t.join();
    EXPECT_TRUE(errors.empty()) << errors.front();
    const SafetensorsFile f(p);
    const int writer = std::stoi(f.metadata().at("writer"));
    const auto values = f.at("values").as<float>();
    ASSERT_EQ(values.size(), kValues);
    EXPECT_EQ(std::count(values.begin(), values.end(), static_cast<float>(writer)),
              static_cast<std::ptrdiff_t>(kValues));
    std::vector<std::string> entries;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      entries.push_back(e.path().filename().string());
    EXPECT_EQ(entries, std::vector<std::string>{"shared.safetensors"});
  }
}

TEST_F(SafetensorsTest, ReadsTheOracleGoldenFile) {
  SafetensorsFile f(test::data_path("io/oracle_small.safetensors"));
  const auto& ids = f.at("input_ids");
  EXPECT_EQ(ids.dtype, DType::kI64);
  ASSERT_EQ(ids.shape.size(), 2u);
  // The oracle's file: the data must be in range of the lookup it was made with.
  for (int64_t v : f.read_int64("input_ids")) {
    EXPECT_GE(v, 0);
    EXPECT_LT(v, 128815);
  }
  EXPECT_EQ(f.at("hidden_states").dtype, DType::kF32);
  EXPECT_EQ(f.at("hidden_states").numel(), ids.numel() * 4 * 96);
}

TEST_F(SafetensorsTest, MissingTensorNamesFileAndTensor) {
  const std::vector<float> a = {1.0f};
  const std::vector<TensorWrite> ts = {tensor_write<float>("x", {1}, a)};
  const std::string p = path("missing.safetensors");
  save_safetensors(p, ts);
  SafetensorsFile f(p);
  try {
    (void)f.at("value_proj.weight");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(p));
    EXPECT_THAT(e.what(), HasSubstr("missing tensor 'value_proj.weight'"));
  }
  EXPECT_THAT(
      [&] {
        try {
          (void)f.at("x").as<int64_t>();
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string();
      }(),
      HasSubstr("has dtype F32, expected I64"));
}

struct Fault {
  const char* name;
  std::string header;
  size_t data_bytes;
  uint64_t declared_len;
  const char* expected;
};

TEST_F(SafetensorsTest, RejectsEachMalformedHeaderWithItsOwnMessage) {
  const std::vector<Fault> faults = {
      {"len_past_end", "{}", 0, 1000, "runs past the end"},
      {"len_above_cap", "{}", 0, (200ull << 20), "exceeds the limit"},
      {"not_json", "{\"a\": ", 0, UINT64_MAX, "not valid JSON"},
      {"not_object", "[1,2]", 0, UINT64_MAX, "must be a JSON object"},
      {"unknown_dtype", R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", 1, UINT64_MAX,
       "unknown dtype 'Q7'"},
      {"negative_shape", R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", 1, UINT64_MAX,
       "non-negative integers"},
      {"offsets_out_of_range", R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 2,
       UINT64_MAX, "outside the data region"},
      {"size_mismatch", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 8, UINT64_MAX,
       "needs 8"},
      {"overflow", R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}})",
       8, UINT64_MAX, "overflows"},
      {"overlap",
       R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
       8, UINT64_MAX, "overlap"},
      {"duplicate",
       R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
       2, UINT64_MAX, "duplicate tensor name 'a'"},
      {"offsets_type", R"({"a":{"dtype":"U8","shape":[1],"data_offsets":"0-1"}})", 1, UINT64_MAX,
       "data_offsets"},
      {"metadata_type", R"({"__metadata__":{"k":1}})", 0, UINT64_MAX, "__metadata__['k']"},
  };
  for (const auto& f : faults) {
    SCOPED_TRACE(f.name);
    const std::string p =
        raw(std::string(f.name) + ".safetensors", f.header, f.data_bytes, f.declared_len);
    const std::string msg = error_of(p);
    EXPECT_THAT(msg, HasSubstr(p));
    EXPECT_THAT(msg, HasSubstr(f.expected));
  }
}

TEST_F(SafetensorsTest, UnopenableFileIsAnErrorNotACrash) {
  EXPECT_THAT(error_of(path("does_not_exist.safetensors")), HasSubstr("cannot open"));
  const std::string tiny = path("tiny.safetensors");
  std::ofstream(tiny, std::ios::binary) << "abc";
  EXPECT_THAT(error_of(tiny), HasSubstr("too short for a safetensors header"));
  EXPECT_THAT(error_of(std::filesystem::temp_directory_path().string()),
              HasSubstr("not a regular file"));
}

TEST_F(SafetensorsTest, WriterRejectsBytesThatDoNotMatchTheShape) {
  const std::vector<float> a = {1.0f, 2.0f};
  const std::vector<TensorWrite> ts = {tensor_write<float>("a", {3}, a)};
  EXPECT_THROW(save_safetensors(path("bad_write.safetensors"), ts), Error);
}

}  // namespace
}  // namespace engram
