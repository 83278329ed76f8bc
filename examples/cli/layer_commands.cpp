// cli/layer_commands.cpp: compress-vocab, hash and forward on a config and a checkpoint (either
// layer variant, through layer/load.hpp's load_engram_layer and std::visit). hash and forward
// with --model take the V4.1 directory forms of model_commands.cpp.
#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "cli/layer_io.hpp"
#include "cli/model_commands.hpp"
#include "cli/tier_commands.hpp"
#include "engram/layer/load.hpp"
#include "engram/tokenizer/vocab_compressor.hpp"

namespace engram::cli {
namespace {

int compress_vocab(int argc, char** argv) {
  const Args args(argc, argv, 2, {"output"}, {});
  if (args.positional().size() != 1) throw UsageError("expected one TOKENIZER_JSON argument");
  const CompressionTable table = compress_tokenizer_json(args.positional()[0]);
  table.save(args.str("output"));
  const double reduction =
      100.0 * (1.0 - static_cast<double>(table.compressed_size()) /
                         static_cast<double>(std::max<int64_t>(1, table.vocab_size())));
  std::printf("vocab %lld -> %lld (reduction %.1f%%)\n", static_cast<long long>(table.vocab_size()),
              static_cast<long long>(table.compressed_size()), reduction);
  return 0;
}

int hash(int argc, char** argv) {
  if (has_model_option(argc, argv, 2)) return model_hash(argc, argv);
  const Args args(argc, argv, 2, {"config", "lookup", "layer", "input", "output"}, {});
  args.expect_no_positional();
  const ConfigLayer c = ConfigLayer::open(args);
  const NgramHasher& hasher = *c.hasher;
  const SafetensorsFile input(args.str("input"));
  const TokenIds in = read_input_ids(input);
  std::vector<int64_t> rows(static_cast<size_t>(in.batch * in.seqlen * hasher.num_columns()));
  hasher.hash(in.ids, in.batch, in.seqlen, rows);
  write_layer_outputs(args.str("output"), c.layer_id, in.batch, in.seqlen, hasher.num_columns(),
                      rows);
  print_hash_summary(in, hasher.num_columns(), c.layer_id);
  return 0;
}

int forward(int argc, char** argv) {
  if (has_model_option(argc, argv, 2)) return model_forward(argc, argv);
  const Args args(argc, argv, 2,
                  {"config", "lookup", "weights", "prefix", "layer", "chunk", "input", "output",
                   "table", "cache-mb"},
                  {"bf16-projection", "bf16-compute"});
  args.expect_no_positional();
  const ConfigLayer c = ConfigLayer::open(args);
  const EngramConfig& config = c.config;
  const int64_t chunk = args.integer("chunk", 0, 0);
  auto weights = std::make_shared<const SafetensorsFile>(args.str("weights"));
  const CheckpointOptions options{.prefix = args.str("prefix", ""),
                                  .table_in_tier = args.has("table"),
                                  .bf16_projection = args.flag("bf16-projection"),
                                  .bf16_compute = args.flag("bf16-compute")};
  std::optional<OpenedTable> rows_table;  // --table: the rows live there, not in the checkpoint
  if (args.has("table")) {
    // Tables inside safetensors shards (safetensors:, hf:) take their metadata from the config:
    // the checkpoint's codec (FP8 rows for the fused variant).
    rows_table.emplace(open_layer_table(args, config, *c.hasher,
                                        config.variant == Variant::kFused ? "fp8_e4m3" : "f32"));
  }

  const SafetensorsFile input(args.str("input"));
  const TokenIds in = read_input_ids(input);
  const TensorView& hidden = input.at("hidden_states");
  hidden.check_shape({in.batch, in.seqlen, config.hc_mult, config.hidden_size});
  const std::vector<float> hidden_values = hidden.copy_as<float>();

  const AnyEngramLayer any_layer = load_engram_layer(config, weights, c.hasher, options);
  const std::vector<float> out = std::visit(
      [&](const auto& layer) {
        return rows_table ? run_layer_from_table(layer, *rows_table, in.batch, in.seqlen, in.ids,
                                                 hidden_values, chunk)
                          : run_layer(layer, in, hidden_values, chunk);
      },
      any_layer);
  const NgramHasher& hasher = *c.hasher;
  std::vector<int64_t> rows(static_cast<size_t>(in.batch * in.seqlen * hasher.num_columns()));
  hasher.hash(in.ids, in.batch, in.seqlen, rows);
  write_layer_outputs(args.str("output"), c.layer_id, in.batch, in.seqlen, hasher.num_columns(),
                      rows, hidden.shape, out);
  print_forward_summary(config.variant == Variant::kFused ? "fused" : "demo", c.layer_id, in, chunk,
                        args.str("output"));
  return 0;
}

}  // namespace

Command compress_vocab_command() {
  return {"compress-vocab",
          "a tokenizer's vocabulary compression table (lookup)",
          "compress-vocab TOKENIZER_JSON -o OUT.safetensors",
          "  TOKENIZER_JSON     a Hugging Face tokenizer.json (or .json.gz)\n"
          "  -o, --output FILE  the table: I64 `lookup` [vocab] of compressed ids\n",
          "compress-vocab tokenizer.json -o lookup.safetensors",
          compress_vocab};
}

Command hash_command() {
  return {"hash",
          "the row ids one Engram layer reads for input_ids [B, T]",
          "hash --config CFG.json --lookup LOOKUP.safetensors [--layer L] --input IN.safetensors "
          "-o OUT.safetensors\n"
          "hash --model DIR [--lookup LOOKUP.safetensors] [--layer L] --input IN.safetensors "
          "-o OUT.safetensors",
          "  --config CFG.json       Engram config (the reference's field names)\n"
          "  --lookup FILE           compression table (compress-vocab)\n"
          "  --layer L               layer id (default: the config's first)\n"
          "  --input FILE            input_ids I64/I32 [B, T]\n"
          "  -o, --output FILE       hash_ids I64 [B, T, (N-1)*H]\n"
          "  --model DIR             a V4.1 directory as released instead of --config\n",
          "hash --config cfg.json --lookup lookup.safetensors --input in.safetensors -o "
          "ids.safetensors",
          hash};
}

Command forward_command() {
  return {
      "forward",
      "one Engram layer's output for input_ids and hidden_states",
      "forward --config CFG.json --lookup LOOKUP.safetensors --weights W.safetensors [--prefix P] "
      "[--layer L] [--chunk K] [--table URI [--cache-mb M]] [--bf16-projection] [--bf16-compute] "
      "--input IN.safetensors -o OUT.safetensors\n"
      "forward --model DIR [--lookup LOOKUP.safetensors] [--layer L] [--chunk K] [--table URI "
      "[--cache-mb M]] --input IN.safetensors -o OUT.safetensors",
      "  --config CFG.json     Engram config (\"variant\": \"fused\" for the V4.1-style layer)\n"
      "  --lookup FILE         compression table (compress-vocab)\n"
      "  --weights FILE        checkpoint (the reference's state_dict names)\n"
      "  --prefix P            tensor name prefix in the checkpoint (e.g. layers.15.engram.)\n"
      "  --layer L             layer id (default: the config's first)\n"
      "  --chunk K             feed K tokens at a time through the incremental path\n"
      "  --table URI           rows from a table (file:T.engram, memcached://H:P,...?fallback=,\n"
      "                        safetensors:, hf:) instead of the checkpoint\n"
      "  --cache-mb M          hot-row cache in front of --table\n"
      "  --bf16-projection     keys + value projection stored in bf16\n"
      "  --bf16-compute        also bf16 activations (AVX512-BF16 CPUs; vdpbf16ps or f32 FMA\n"
      "                        as ENGRAM_BF16_DOT=bf16|f32 says, default by CPU vendor)\n"
      "  --input FILE          input_ids [B, T] and hidden_states F32 [B, T, hc, d]\n"
      "  -o, --output FILE     output F32 [B, T, hc, d] and hash_ids\n"
      "  --model DIR           a V4.1 directory as released instead of --config\n",
      "forward --config cfg.json --lookup lookup.safetensors --weights w.safetensors --input "
      "in.safetensors -o out.safetensors",
      forward};
}

}  // namespace engram::cli
