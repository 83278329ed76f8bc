// random_checkpoint.hpp: writes an Engram checkpoint with random weights for a config (official
// tensor names, as the PyTorch reference's state_dict), streaming the table so that a multi-GB
// table never has to be in memory. Used by `engram bench` and the demo; the result loads through
// the same path as a real checkpoint.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engram/detail/float16.hpp"
#include "engram/error.hpp"
#include "engram/io/config.hpp"

namespace engram::example {

/// Table storage of a random checkpoint.
enum class TableDtype { kF32, kBF16 };

namespace detail {

struct PlannedTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  int64_t bytes;
};

}  // namespace detail

/// Writes `path` (atomically) holding random weights of `config` with `total_rows` table rows
/// (sum of the layer's primes) and `cols` offsets from `column_rows`. Values: table N(0, 1)
/// (demo) or random FP8 codes with scales 2^-3..2^-9 (fused); projections N(0, 1/m); norms 1 +
/// N(0, 0.1^2); conv N(0, 1/kernel).
inline void write_random_checkpoint(const std::string& path, const EngramConfig& config,
                                    std::span<const int64_t> column_rows, uint64_t seed,
                                    TableDtype table_dtype = TableDtype::kF32) {
  const bool fused = config.variant == Variant::kFused;
  const int64_t d = config.hidden_size, hc = config.hc_mult, m = config.memory_dim();
  const int64_t r = config.row_dim();
  int64_t rows = 0;
  for (int64_t c : column_rows) rows += c;
  std::vector<detail::PlannedTensor> plan;
  const bool bf16 = !fused && table_dtype == TableDtype::kBF16;
  if (fused) {
    plan.push_back({"embed.weight", "F8_E4M3", {rows, r}, rows * r});
    plan.push_back({"embed.weight_scale_inv",
                    "F8_E8M0",
                    {rows, r / config.quant_block},
                    rows * (r / config.quant_block)});
    plan.push_back({"wkv.weight", "F32", {(hc + 1) * d, m}, (hc + 1) * d * m * 4});
    plan.push_back({"q_weight", "F32", {hc, d}, hc * d * 4});
    plan.push_back({"k_weight", "F32", {hc, d}, hc * d * 4});
  } else {
    plan.push_back({"multi_head_embedding.embedding.weight",
                    bf16 ? "BF16" : "F32",
                    {rows, r},
                    rows * r * (bf16 ? 2 : 4)});
    plan.push_back({"multi_head_embedding.offsets",
                    "I64",
                    {static_cast<int64_t>(column_rows.size())},
                    static_cast<int64_t>(column_rows.size()) * 8});
    plan.push_back({"value_proj.weight", "F32", {d, m}, d * m * 4});
    plan.push_back({"value_proj.bias", "F32", {d}, d * 4});
    for (int64_t i = 0; i < hc; ++i) {
      const std::string k = "key_projs." + std::to_string(i);
      plan.push_back({k + ".weight", "F32", {d, m}, d * m * 4});
      plan.push_back({k + ".bias", "F32", {d}, d * 4});
      plan.push_back({"norm1." + std::to_string(i) + ".weight", "F32", {d}, d * 4});
      plan.push_back({"norm2." + std::to_string(i) + ".weight", "F32", {d}, d * 4});
      plan.push_back({"short_conv.norms." + std::to_string(i) + ".weight", "F32", {d}, d * 4});
    }
    plan.push_back({"short_conv.conv.weight",
                    "F32",
                    {hc * d, 1, config.kernel_size},
                    hc * d * config.kernel_size * 4});
  }
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  int64_t offset = 0;
  for (const auto& t : plan) {
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  header["__metadata__"] = {{"format", "engram random checkpoint"}, {"seed", std::to_string(seed)}};
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  ENGRAM_CHECK(out.good(), tmp, ": cannot open for writing");
  const uint64_t len = text.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));

  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<char> buffer;
  auto write_floats = [&](int64_t count, auto&& value) {
    constexpr int64_t kChunk = 1 << 20;
    for (int64_t done = 0; done < count; done += kChunk) {
      const int64_t n = std::min(kChunk, count - done);
      buffer.resize(static_cast<size_t>(n * 4));
      float* f = reinterpret_cast<float*>(buffer.data());
      for (int64_t i = 0; i < n; ++i) f[i] = value();
      out.write(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    }
  };
  auto write_bytes = [&](int64_t count, auto&& value) {
    constexpr int64_t kChunk = 1 << 22;
    for (int64_t done = 0; done < count; done += kChunk) {
      const int64_t n = std::min(kChunk, count - done);
      buffer.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) buffer[static_cast<size_t>(i)] = static_cast<char>(value());
      out.write(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    }
  };
  // Fast table filler: a cheap xorshift keeps multi-GB tables quick to write.
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&x]() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  auto table_value = [&]() {
    // Sum of 4 uniforms, centred and scaled: close to N(0, 1), 10x cheaper than normal().
    float s = 0.0f;
    for (int k = 0; k < 4; ++k) s += static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
    return (s - 2.0f) * 1.7320508f;
  };
  const float proj_scale = 1.0f / std::sqrt(static_cast<float>(m));
  for (const auto& t : plan) {
    if (t.name == "embed.weight") {
      write_bytes(t.bytes, [&]() {
        const auto code = static_cast<uint8_t>(next() >> 56);
        return (code & 0x7F) == 0x7F ? uint8_t{0} : code;  // no NaN codes
      });
    } else if (t.name == "embed.weight_scale_inv") {
      write_bytes(t.bytes, [&]() { return static_cast<uint8_t>(118 + next() % 6); });
    } else if (t.name == "multi_head_embedding.embedding.weight") {
      if (bf16) {
        const int64_t count = t.bytes / 2;
        constexpr int64_t kChunk = 1 << 20;
        for (int64_t done = 0; done < count; done += kChunk) {
          const int64_t n = std::min(kChunk, count - done);
          buffer.resize(static_cast<size_t>(n * 2));
          auto* h = reinterpret_cast<uint16_t*>(buffer.data());
          for (int64_t i = 0; i < n; ++i) h[i] = engram::detail::f32_to_bf16_bits(table_value());
          out.write(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        }
      } else {
        write_floats(t.bytes / 4, table_value);
      }
    } else if (t.name == "multi_head_embedding.offsets") {
      int64_t acc = 0;
      for (int64_t c : column_rows) {
        out.write(reinterpret_cast<const char*>(&acc), 8);
        acc += c;
      }
    } else if (t.name.find("norm") != std::string::npos || t.name == "q_weight" ||
               t.name == "k_weight") {
      write_floats(t.bytes / 4, [&]() { return 1.0f + 0.1f * normal(rng); });
    } else if (t.name == "short_conv.conv.weight") {
      const float s = 1.0f / std::sqrt(static_cast<float>(config.kernel_size));
      write_floats(t.bytes / 4, [&]() { return s * normal(rng); });
    } else {
      write_floats(t.bytes / 4, [&]() { return proj_scale * normal(rng); });
    }
  }
  out.flush();
  ENGRAM_CHECK(out.good(), tmp, ": write failed");
  out.close();
  std::filesystem::rename(tmp, path);
}

/// A random checkpoint for (config, layer, dtype), written once into `dir` (seeded by the layer)
/// and reused by later runs with the same config; returns its path.
inline std::string cached_random_checkpoint(const std::string& dir, const EngramConfig& config,
                                            std::span<const int64_t> column_rows, int64_t layer,
                                            TableDtype dtype = TableDtype::kF32) {
  std::filesystem::create_directories(dir);
  const std::string key = config.to_json().dump() + "/" + std::to_string(layer) + "/" +
                          std::to_string(static_cast<int>(dtype));
  const std::string path =
      dir + "/random-" + std::to_string(std::hash<std::string>{}(key)) + ".safetensors";
  if (!std::filesystem::exists(path)) {
    std::fprintf(stderr, "writing random checkpoint %s\n", path.c_str());
    write_random_checkpoint(path, config, column_rows, 1234 + static_cast<uint64_t>(layer), dtype);
  }
  return path;
}

}  // namespace engram::example
