// cli/bench_command.cpp: `engram bench`, the speed of one Engram layer on random weights of a
// config (or a V4.1 directory's own weights): warm-up, timed runs, the median's tokens/s; with
// --probe the roofline line, with --profile the split of a forward (layer_profile.hpp).
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "cli/layer_io.hpp"
#include "cli/layer_profile.hpp"
#include "cli/model_commands.hpp"
#include "cli/probe.hpp"
#include "engram/layer/load.hpp"
#include "random_checkpoint.hpp"

namespace engram::cli {
namespace {

template <class Layer>
double time_forward(const Layer& layer, std::span<const int64_t> ids, std::span<const float> hidden,
                    int64_t batch, int64_t seqlen, int reps) {
  std::vector<float> out(hidden.size());
  typename Layer::Workspace ws;
  layer.forward_tokens(ids, hidden, batch, seqlen, out, ws);  // warm-up: page in rows, size ws
  std::vector<double> seconds;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    layer.forward_tokens(ids, hidden, batch, seqlen, out, ws);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::printf("run %d: %.5f s, %.1f tokens/s\n", r, seconds.back(),
                static_cast<double>(batch * seqlen) / seconds.back());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

/// `engram bench`'s report for one layer: tokens/s, the roofline line (with a probe) and the split
/// of a forward (--profile). weight_bytes: the projection's bytes streamed once per call;
/// row_bytes: one gathered table row.
template <class Layer>
void bench_layer(const Layer& layer, const Args& args, std::span<const int64_t> ids,
                 std::span<const float> hidden, int64_t batch, int64_t seqlen, int reps,
                 double weight_bytes, double row_bytes, const std::string& what,
                 const std::string& suffix) {
  std::optional<probe::Limits> limits;
  if (args.has("probe")) limits = probe::Limits::load(args.str("probe"));
  const int64_t tokens = batch * seqlen;
  const double median = time_forward(layer, ids, hidden, batch, seqlen, reps);
  std::printf("%s batch %lld seqlen %lld threads %d%s\n", what.c_str(),
              static_cast<long long>(batch), static_cast<long long>(seqlen), Eigen::nbThreads(),
              suffix.c_str());
  std::printf("tokens/s %.1f\n", static_cast<double>(tokens) / median);
  const example::ProjectionShape projection = example::projection_shape(layer);
  example::ForwardWork work;
  work.flop = 2.0 * static_cast<double>(tokens) * static_cast<double>(projection.in) *
              static_cast<double>(projection.out);
  work.bytes = weight_bytes + static_cast<double>(tokens) * layer.num_columns() * row_bytes +
               2.0 * static_cast<double>(hidden.size()) * sizeof(float);
  // The roofline's peak is that of the instruction the projection multiplies with.
  bool on_vdpbf16ps = false;
  if constexpr (requires { layer.projection().bf16_weights().uses_vdpbf16ps(); })
    on_vdpbf16ps =
        layer.projection().is_bf16() && layer.projection().bf16_weights().uses_vdpbf16ps();
  if constexpr (requires { layer.fp8_projection().uses_vdpbf16ps(); })
    if (example::uses_fp8_projection(layer)) on_vdpbf16ps = layer.fp8_projection().uses_vdpbf16ps();
  if (limits) example::print_roofline(work, median, *limits, on_vdpbf16ps);
  if (args.flag("profile")) {
    example::print_profile(example::profile_layer(layer, ids, hidden, batch, seqlen, reps), tokens);
  }
}

/// Random token ids in [0, vocab) and hidden states N(0, 1) for a [batch, seqlen] bench.
std::pair<std::vector<int64_t>, std::vector<float>> bench_inputs(int64_t vocab, int64_t batch,
                                                                 int64_t seqlen, int64_t width) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int64_t> token(0, vocab - 1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<int64_t> ids(static_cast<size_t>(batch * seqlen));
  for (auto& id : ids) id = token(rng);
  std::vector<float> hidden(static_cast<size_t>(batch * seqlen * width));
  for (auto& h : hidden) h = normal(rng);
  return {std::move(ids), std::move(hidden)};
}

int bench(int argc, char** argv) {
  const Args args(argc, argv, 2,
                  {"config", "lookup", "batch", "seqlen", "threads", "dtype", "layer", "reps",
                   "cache-dir", "probe", "model"},
                  {"profile"});
  args.expect_no_positional();
  const int64_t batch = args.integer("batch", 1, 1, 1 << 20);
  const int64_t seqlen = args.integer("seqlen", 2048, 1, 1 << 24);
  const int64_t threads = args.integer("threads", 2, 1, 1024);
  const int reps = static_cast<int>(args.integer("reps", 5, 1, 1000));
  const std::string dtype = args.str("dtype", "f32");
  if (dtype != "f32" && dtype != "bf16" && dtype != "bf16-native")
    throw UsageError("--dtype must be f32, bf16 or bf16-native");
  Eigen::setNbThreads(static_cast<int>(threads));

  if (args.has("model")) {  // a V4.1 directory as released: its own weights, FP8 or not
    if (args.has("dtype")) throw UsageError("--model runs the checkpoint's own dtypes: no --dtype");
    int64_t layer_id = 0;
    const EngramModel model = open_model(args, &layer_id);
    const auto& layer = model.layer(layer_id);
    const EngramConfig& c = layer.config();
    const auto [ids, hidden] =
        bench_inputs(layer.hasher()->lookup_size(), batch, seqlen, c.hc_mult * c.hidden_size);
    const example::ProjectionShape shape = example::projection_shape(layer);
    const bool fp8 = example::uses_fp8_projection(layer);
    // FP8: a byte a weight plus one E8M0 scale per 32 x 32 block; else f32 after loading.
    const double weight_bytes = static_cast<double>(shape.in) * static_cast<double>(shape.out) *
                                (fp8 ? 1.0 + 1.0 / 1024 : 4.0);
    const double row_bytes = static_cast<double>(c.head_dim) * (1.0 + 1.0 / c.quant_block);
    bench_layer(layer, args, ids, hidden, batch, seqlen, reps, weight_bytes, row_bytes,
                "model " + args.str("model") + " layer " + std::to_string(layer_id),
                fp8 ? " wkv fp8" : " wkv f32");
    return 0;
  }

  const ConfigLayer c = ConfigLayer::open(args);
  const EngramConfig& config = c.config;
  const int64_t layer_id = c.layer_id;
  const std::string cache_dir =
      args.str("cache-dir", (std::filesystem::temp_directory_path() / "engram-bench").string());
  const std::string path = example::cached_random_checkpoint(
      cache_dir, config, c.hasher->primes(), layer_id,
      dtype == "f32" ? example::TableDtype::kF32 : example::TableDtype::kBF16);
  auto file = std::make_shared<const SafetensorsFile>(path);
  // Named, not a structured binding: the visit lambda below captures them (clang 14 cannot
  // capture bindings).
  const auto inputs =
      bench_inputs(c.lookup.vocab_size(), batch, seqlen, config.hc_mult * config.hidden_size);
  const std::vector<int64_t>& ids = inputs.first;
  const std::vector<float>& hidden = inputs.second;

  // bf16: bf16 table (demo; the fused table is FP8 either way) and bf16 projection weights;
  // bf16-native: the same, with activations rounded to bf16 (AVX512-BF16 CPUs), multiplied with
  // vdpbf16ps or f32 FMA as bf16_dot() picks.
  CheckpointOptions options;
  options.bf16_projection = dtype != "f32";
  options.bf16_compute = dtype == "bf16-native";
  const double weight_bytes = (options.bf16_projection ? 2.0 : 4.0) *
                              static_cast<double>((config.hc_mult + 1) * config.hidden_size) *
                              static_cast<double>(config.memory_dim());
  const double row_bytes =
      static_cast<double>(config.row_dim()) * (config.variant == Variant::kFused ? 1.0 + 1.0 / 32
                                               : dtype != "f32"                  ? 2.0
                                                                                 : 4.0);
  const std::string what = "config " + args.str("config"), suffix = " dtype " + dtype;
  std::visit(
      [&](const auto& layer) {
        bench_layer(layer, args, ids, hidden, batch, seqlen, reps, weight_bytes, row_bytes, what,
                    suffix);
      },
      load_engram_layer(config, file, c.hasher, options));
  return 0;
}

}  // namespace

Command bench_command() {
  return {"bench",
          "tokens/s of one Engram layer (roofline with --probe)",
          "bench --config CFG.json --lookup LOOKUP.safetensors [--batch B] [--seqlen T] "
          "[--threads N] [--dtype f32|bf16|bf16-native] [--layer L] [--reps R] [--cache-dir DIR] "
          "[--probe PROBE.json] [--profile]\n"
          "bench --model DIR [--lookup LOOKUP.safetensors] [--layer L] [--batch B] [--seqlen T] "
          "[--threads N] [--reps R] [--probe PROBE.json] [--profile]",
          "  --config CFG.json, --lookup FILE, --layer L   the layer (random weights, cached)\n"
          "  --batch B, --seqlen T   tokens a forward (default 1 x 2048)\n"
          "  --threads N             Eigen threads (default 2)\n"
          "  --dtype f32|bf16|bf16-native   table and projection dtype (bf16-native: activations\n"
          "                                 rounded to bf16 too; ENGRAM_BF16_DOT=bf16|f32 picks\n"
          "                                 vdpbf16ps or f32 FMA, default by CPU vendor)\n"
          "  --reps R                timed runs after one warm-up (default 5); median reported\n"
          "  --cache-dir DIR         where the random checkpoint is kept between runs\n"
          "  --probe PROBE.json      print achieved GFLOP/s and GB/s against `engram probe`'s\n"
          "  --profile               time hash / gather / projection / per-token step / finite\n"
          "                          checks each on its own, and the non-GEMM share\n"
          "  --model DIR             a V4.1 directory's own weights (no --dtype)\n",
          "bench --config bench/configs/paper_demo.json --lookup lookup.safetensors --seqlen 2048 "
          "--threads 2",
          bench};
}

}  // namespace engram::cli
