// cli/model_commands.cpp: info, and the --model forms of hash and forward (model_commands.hpp).

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "cli/layer_io.hpp"
#include "cli/model_commands.hpp"
#include "cli/tier_commands.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/hashing/primes.hpp"
#include "engram/io/hf_config.hpp"
#include "engram/io/model_directory.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/layer/engram_model.hpp"

namespace engram::cli {

/// True when argv[first..) has --model (the released-directory form of hash/forward).
bool has_model_option(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" || a.rfind("--model=", 0) == 0) return true;
  }
  return false;
}

namespace {

std::string join_numbers(std::span<const int64_t> values) {
  std::string s;
  for (int64_t v : values) s += (s.empty() ? "" : ", ") + std::to_string(v);
  return "[" + s + "]";
}

int info(int argc, char** argv) {
  const Args args(argc, argv, 2, {"model"}, {});
  args.expect_no_positional();
  namespace fs = std::filesystem;
  const std::string model = args.str("model");
  const bool is_dir = fs::is_directory(model);
  const std::string config_path = is_dir ? (fs::path(model) / "config.json").string() : model;
  const HfEngramConfig hf = HfEngramConfig::load(config_path);
  const EngramConfig& c = hf.engram;
  std::optional<ModelDirectory> dir;
  if (is_dir && (fs::exists(fs::path(model) / ModelDirectory::kIndexName) ||
                 fs::exists(fs::path(model) / ModelDirectory::kSingleName)))
    dir.emplace(model);
  const auto primes = engram_table_primes(c);
  std::printf(
      "%s: Engram layers %s, N = %lld, %lld heads, head_dim %lld, hidden %lld, hc_mult %lld, "
      "compressed vocab %lld, image token %lld, rms_norm_eps %g\n",
      config_path.c_str(), join_numbers(c.layer_ids).c_str(),
      static_cast<long long>(c.max_ngram_size), static_cast<long long>(c.n_head_per_ngram),
      static_cast<long long>(c.head_dim), static_cast<long long>(c.hidden_size),
      static_cast<long long>(c.hc_mult), static_cast<long long>(hf.compressed_vocab_size),
      static_cast<long long>(hf.image_token_id), c.rms_norm_eps);
  for (size_t i = 0; i < c.layer_ids.size(); ++i) {
    const int64_t layer = c.layer_ids[i], rows = detail::sum_of(primes[i]);
    const int64_t out = (c.hc_mult + 1) * c.hidden_size, in = c.memory_dim();
    const int64_t table_bytes = rows * c.head_dim + rows * (c.head_dim / c.quant_block);
    std::printf("layer %lld: rows %lld (engram_num_embeddings %lld: %s)\n",
                static_cast<long long>(layer), static_cast<long long>(rows),
                static_cast<long long>(hf.num_embeddings[i]),
                rows == hf.num_embeddings[i] ? "match" : "MISMATCH");
    std::printf("  primes %s\n", join_numbers(primes[i]).c_str());
    std::printf("  multipliers %s\n",
                join_numbers(engram_multipliers(c, layer, hf.compressed_vocab_size)).c_str());
    std::printf("  table %lld bytes (FP8 rows + E8M0 scales), wkv [%lld, %lld] %lld bytes FP8\n",
                static_cast<long long>(table_bytes), static_cast<long long>(out),
                static_cast<long long>(in), static_cast<long long>(out * in));
    if (dir) {
      std::string shards;
      for (const auto& s : dir->shards_with_prefix(v41_tensor_prefix(layer)))
        shards += (shards.empty() ? "" : ", ") + s;
      std::printf("  shards %s\n", shards.empty() ? "(none)" : shards.c_str());
    }
  }
  return 0;
}

}  // namespace

EngramModel open_model(const Args& args, int64_t* layer, bool table_in_tier) {
  const std::string dir = args.str("model");
  const HfEngramConfig hf =
      HfEngramConfig::load((std::filesystem::path(dir) / "config.json").string());
  *layer = args.integer("layer", hf.engram.layer_ids.front());
  hf.engram.require_layer(*layer, dir + "/config.json");
  return EngramModel::open(
      dir, {.lookup = args.str("lookup", ""), .layers = {*layer}, .table_in_tier = table_in_tier});
}

int model_hash(int argc, char** argv) {
  const Args args(argc, argv, 2, {"model", "lookup", "layer", "input", "output"}, {});
  args.expect_no_positional();
  int64_t layer_id = 0;
  const EngramModel model = open_model(args, &layer_id);
  const auto& layer = model.layer(layer_id);
  const SafetensorsFile input(args.str("input"));
  const TokenIds in = read_input_ids(input);
  const std::vector<uint8_t> live = model.live_mask(in.ids);
  std::vector<int64_t> rows(static_cast<size_t>(in.batch * in.seqlen * layer.num_columns()));
  layer.hash_tokens(in.ids, in.batch, in.seqlen, rows, {}, live);
  write_layer_outputs(args.str("output"), layer_id, in.batch, in.seqlen, layer.num_columns(), rows);
  print_hash_summary(in, layer.num_columns(), layer_id);
  return 0;
}

int model_forward(int argc, char** argv) {
  const Args args(argc, argv, 2,
                  {"model", "lookup", "layer", "chunk", "input", "output", "table", "cache-mb"},
                  {});
  args.expect_no_positional();
  int64_t layer_id = 0;
  const EngramModel model = open_model(args, &layer_id, args.has("table"));
  const auto& layer = model.layer(layer_id);
  const int64_t chunk = args.integer("chunk", 0, 0);
  const SafetensorsFile input(args.str("input"));
  const TokenIds in = read_input_ids(input);
  const TensorView& hidden = input.at("hidden_states");
  hidden.check_shape({in.batch, in.seqlen, layer.hc_mult(), layer.hidden_size()});
  const std::vector<uint8_t> live = model.live_mask(in.ids);
  std::vector<float> out;
  if (args.has("table")) {  // rows from a tier; the table metadata from config.json
    OpenedTable table = open_layer_table(args, layer.config(), *layer.hasher(), "fp8_e4m3");
    out = run_layer_from_table(layer, table, in.batch, in.seqlen, in.ids, hidden.copy_as<float>(),
                               chunk, live);
  } else {
    out = run_layer(layer, in, hidden.copy_as<float>(), chunk, live);
  }
  std::vector<int64_t> rows(static_cast<size_t>(in.batch * in.seqlen * layer.num_columns()));
  layer.hash_tokens(in.ids, in.batch, in.seqlen, rows, {}, live);
  write_layer_outputs(args.str("output"), layer_id, in.batch, in.seqlen, layer.num_columns(), rows,
                      hidden.shape, out);
  print_forward_summary("V4.1", layer_id, in, chunk, args.str("output"));
  return 0;
}

Command info_command() {
  return {"info",
          "a V4.1 model's Engram layers: rows, primes, tables, shards",
          "info --model DIR|CONFIG.json",
          "  --model DIR|CONFIG.json  a Hugging Face directory as released, or its config.json\n",
          "info --model DeepSeek-V4.1-Flash",
          info};
}

}  // namespace engram::cli
