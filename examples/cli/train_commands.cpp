// cli/train_commands.cpp: `engram backward`, one layer's gradients (train/backward.hpp):
//
//   engram backward --config CFG.json --lookup LOOKUP.safetensors --weights W.safetensors
//                   [--prefix P] [--layer L] --input IN.safetensors -o OUT.safetensors
//
// IN holds input_ids I64 [B, T], hidden_states F32 [B, T, hc, d], grad_output F32 [B, T, hc, d]
// (dL/d output, the layer's output as `engram forward` writes it) and, optionally, live U8 [B, T]
// (fused variant: 0 marks a dead token). OUT holds grad_hidden_states F32 [B, T, hc, d], one
// gradient per dense weight under its official state_dict name (value_proj.weight,
// key_projs.0.bias, norm1.0.weight, short_conv.conv.weight, ...; fused: wkv.weight, q_weight,
// k_weight), table_grad_rows I64 [R] (sorted, distinct, global rows including the head offsets)
// and table_grad_values F32 [R, row_dim]. The computation runs in f32 (FP8/bf16 checkpoints are
// decoded to f32).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "cli/layer_io.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/tokenizer/vocab_compressor.hpp"
#include "engram/train/backward.hpp"

namespace engram::cli {

namespace {

int backward(int argc, char** argv) {
  const Args args(argc, argv, 2,
                  {"config", "lookup", "weights", "prefix", "layer", "input", "output"}, {});
  args.expect_no_positional();
  const ConfigLayer c = ConfigLayer::open(args);
  const EngramConfig& config = c.config;
  const int64_t layer_id = c.layer_id;
  const NgramHasher& hasher = *c.hasher;
  const CheckpointOptions options{.prefix = args.str("prefix", ""),
                                  .column_rows = {hasher.primes().begin(), hasher.primes().end()}};
  const auto params = train::load_params<float>(config, args.str("weights"), options);

  const SafetensorsFile input(args.str("input"));
  const TensorView& ids_tensor = input.at("input_ids");
  ENGRAM_CHECK(ids_tensor.shape.size() == 2, input.path(), ": tensor 'input_ids' has shape ",
               shape_string(ids_tensor.shape), ", expected [B, T]");
  const int64_t batch = ids_tensor.shape[0], seq_len = ids_tensor.shape[1];
  const std::vector<int64_t> ids = input.read_int64("input_ids");
  const std::vector<int64_t> hidden_shape = {batch, seq_len, config.hc_mult, config.hidden_size};
  input.at("hidden_states").check_shape({batch, seq_len, config.hc_mult, config.hidden_size});
  input.at("grad_output").check_shape({batch, seq_len, config.hc_mult, config.hidden_size});
  const auto hidden = input.at("hidden_states").copy_as<float>();
  const auto grad_output = input.at("grad_output").copy_as<float>();
  std::vector<uint8_t> live;
  if (const TensorView* t = input.find("live")) {
    t->check_shape({batch, seq_len});
    live = t->copy_as<uint8_t>();
  }

  std::vector<int64_t> hash_ids(static_cast<size_t>(batch * seq_len * hasher.num_columns()));
  hasher.hash(ids, batch, seq_len, hash_ids, live);
  std::vector<float> out(hidden.size());
  train::Tape tape;
  train::forward(params, hash_ids, std::span<const float>(hidden), batch, seq_len,
                 std::span<float>(out), tape, live);
  train::Grads grads;
  train::backward(params, std::span<const float>(grad_output), tape, grads);

  std::vector<TensorWrite> tensors;
  tensors.push_back(tensor_write<float>("grad_hidden_states", hidden_shape,
                                        std::span<const float>(grads.hidden)));
  for (const auto& t : grads.dense)
    tensors.push_back(tensor_write<float>(t.name, t.shape, std::span<const float>(t.value)));
  tensors.push_back(tensor_write<int64_t>("table_grad_rows", {grads.table.size()},
                                          std::span<const int64_t>(grads.table.rows)));
  tensors.push_back(tensor_write<float>("table_grad_values",
                                        {grads.table.size(), grads.table.row_dim},
                                        std::span<const float>(grads.table.values)));
  save_safetensors(args.str("output"), tensors, {{"layer_id", std::to_string(layer_id)}});
  std::printf("backward %s layer %lld: %lld x %lld tokens, %lld table rows touched -> %s\n",
              config.variant == Variant::kFused ? "fused" : "demo",
              static_cast<long long>(layer_id), static_cast<long long>(batch),
              static_cast<long long>(seq_len), static_cast<long long>(grads.table.size()),
              args.str("output").c_str());
  return 0;
}

}  // namespace

Command backward_command() {
  return {
      "backward",
      "one Engram layer's gradients: hidden states, dense weights, table rows",
      "backward --config CFG.json --lookup LOOKUP.safetensors --weights W.safetensors "
      "[--prefix P] [--layer L] --input IN.safetensors -o OUT.safetensors",
      "  --config, --lookup, --weights, --prefix, --layer   the layer, as for forward\n"
      "  --input FILE       input_ids [B, T], hidden_states and grad_output F32 [B, T, hc, d],\n"
      "                     optional live U8 [B, T]\n"
      "  -o, --output FILE  grad_hidden_states, one gradient per dense weight (official\n"
      "                     names), table_grad_rows I64 [R], table_grad_values F32 [R, r]\n",
      "backward --config cfg.json --lookup lookup.safetensors --weights w.safetensors --input "
      "in.safetensors -o grads.safetensors",
      backward};
}

}  // namespace engram::cli
