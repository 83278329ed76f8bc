// mini_model: a small but complete model showing where Engram slots in, to copy from.
//
//   token embedding -> blocks [Engram (at config.layer_ids) -> causal attention -> MoE FFN] -> head
//
// The Engram layers sit behind one EngramStack (engram/layer/engram_stack.hpp): at the model input
// stack.begin(ids) hashes the sequence for every layer (and would start every tiered layer's
// fetch), and each block with an Engram layer calls stack.apply(block, hidden, delta).
// The hidden state has hc_mult hyper-connection branches, [T, hc, d]. Engram reads all branches
// and adds its output to each (hidden += engram(ids, hidden)); attention and the MoE read the mean
// of the branches and add their output to every branch (a minimal hyper-connection). Weights are
// random (seeded), so the printout shows the wiring and its costs, not language quality:
// per-component time, how many tokens each expert served, and how much each Engram layer changed
// the hidden state.
//
//   mini_model --lookup LOOKUP.safetensors --corpus TOKENS.safetensors --config CFG.json
//              [--blocks 4] [--tokens 4096] [--seqlen 512]
#include <Eigen/Core>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "engram/engram.hpp"
#include "engram/layer/engram_layer.hpp"
#include "engram/layer/engram_stack.hpp"
#include "engram/tokenizer/vocab_compressor.hpp"
#include "model/backbone.hpp"
#include "random_checkpoint.hpp"

namespace engram::example {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Strided view of branch i of hidden [T, hc, d] as a [T, d] matrix.
Eigen::Map<Matrix, 0, Eigen::OuterStride<>> branch(std::vector<float>& hidden, int64_t i, int64_t T,
                                                   int64_t hc, int64_t d) {
  return {hidden.data() + i * d, T, d, Eigen::OuterStride<>(hc * d)};
}

/// Mean of the hc branches of hidden [T, hc, d]: [T, d].
Matrix branch_mean(std::vector<float>& hidden, int64_t T, int64_t hc, int64_t d) {
  Matrix mean = Matrix::Zero(T, d);
  for (int64_t i = 0; i < hc; ++i) mean += branch(hidden, i, T, hc, d);
  return mean / static_cast<float>(hc);
}

struct Block {
  CausalSelfAttention attention;
  MoeFeedForward moe;
};

int run(int argc, char** argv) {
  const cli::Args args(
      argc, argv, 1, {"lookup", "corpus", "config", "blocks", "tokens", "seqlen", "cache-dir"}, {});
  const auto config = EngramConfig::load(args.str("config"));
  const auto table = CompressionTable::load(args.str("lookup"));
  const int64_t blocks = args.integer("blocks", 4, 1, 64);
  const int64_t seqlen = args.integer("seqlen", 512, 1, 1 << 16);
  const int64_t d = config.hidden_size, hc = config.hc_mult;
  const std::string cache_dir =
      args.str("cache-dir", (std::filesystem::temp_directory_path() / "engram-demo").string());

  std::mt19937_64 rng(42);
  const Matrix embedding = random_matrix(table.vocab_size(), d, 1.0f, rng);
  std::vector<Block> model;
  for (int64_t b = 0; b < blocks; ++b)
    model.push_back(Block{CausalSelfAttention(d, 8, rng), MoeFeedForward(d, 2 * d, 8, 2, rng)});
  // The Engram layers of the blocks this model has, behind one stack (null when there are none).
  std::vector<int64_t> engram_blocks;
  for (int64_t layer : config.layer_ids)
    if (layer < blocks) engram_blocks.push_back(layer);
  std::unique_ptr<EngramStack> stack;
  if (!engram_blocks.empty()) {
    stack = std::make_unique<EngramStack>(config, seqlen, engram_blocks);
    for (int64_t layer : engram_blocks) {
      auto hasher = std::make_shared<const NgramHasher>(config, table.lookup(), layer);
      const std::string path = cached_random_checkpoint(cache_dir, config, hasher->primes(), layer);
      stack->set_resident(
          layer, EngramLayer::load(config, std::make_shared<const SafetensorsFile>(path), hasher));
    }
  }

  const SafetensorsFile corpus(args.str("corpus"));
  std::vector<int64_t> ids = corpus.read_int64("input_ids");
  const int64_t tokens =
      std::min<int64_t>(args.integer("tokens", 4096, 1), static_cast<int64_t>(ids.size()));
  std::printf("mini model: %lld blocks, hidden %lld x %lld branches, Engram at layers",
              static_cast<long long>(blocks), static_cast<long long>(d),
              static_cast<long long>(hc));
  for (int64_t layer : config.layer_ids)
    if (layer < blocks) std::printf(" %lld", static_cast<long long>(layer));
  std::printf(", MoE 8 experts top-2\n");

  std::map<std::string, double> seconds;
  std::vector<double> engram_change(static_cast<size_t>(blocks), 0.0);
  double loss_proxy = 0;
  int64_t done = 0;
  for (int64_t start = 0; start + seqlen <= tokens; start += seqlen, done += seqlen) {
    const std::span<const int64_t> seq(ids.data() + start, static_cast<size_t>(seqlen));
    auto t0 = Clock::now();
    // hidden [T, hc, d]: every branch starts as the token embedding.
    std::vector<float> hidden(static_cast<size_t>(seqlen * hc * d)), delta(hidden.size());
    for (int64_t t = 0; t < seqlen; ++t)
      for (int64_t i = 0; i < hc; ++i)
        Eigen::Map<Vector>(hidden.data() + (t * hc + i) * d, d) = embedding.row(seq[t]).transpose();
    seconds["embedding"] += since(t0);
    t0 = Clock::now();
    if (stack) stack->begin(seq, 1, seqlen);  // every Engram layer's hash ids (and fetches)
    seconds["engram"] += since(t0);
    for (int64_t b = 0; b < blocks; ++b) {
      Block& block = model[static_cast<size_t>(b)];
      if (stack && stack->contains(b)) {
        t0 = Clock::now();
        stack->apply(b, hidden, delta);  // hidden += engram(ids, hidden), with the change measured
        double num = 0, den = 0;
        for (size_t k = 0; k < hidden.size(); ++k) {
          num += static_cast<double>(delta[k]) * delta[k];
          den += static_cast<double>(hidden[k]) * hidden[k];
          hidden[k] += delta[k];
        }
        engram_change[static_cast<size_t>(b)] += std::sqrt(num / den);
        seconds["engram"] += since(t0);
      }
      const Matrix mean = branch_mean(hidden, seqlen, hc, d);
      t0 = Clock::now();
      const Matrix attn = block.attention.forward(rms_normalize(mean));
      seconds["attention"] += since(t0);
      t0 = Clock::now();
      const Matrix ffn = block.moe.forward(rms_normalize(mean + attn));
      seconds["moe"] += since(t0);
      for (int64_t i = 0; i < hc; ++i) branch(hidden, i, seqlen, hc, d) += attn + ffn;
    }
    // Tied output head on the branch mean: logits of the next token's actual id and the argmax.
    auto t0h = Clock::now();
    const Matrix final_hidden = rms_normalize(branch_mean(hidden, seqlen, hc, d));
    for (int64_t t = 0; t + 1 < seqlen; t += 64) {  // sampled positions keep the head cheap
      const Vector logits =
          embedding * final_hidden.row(t).transpose() / std::sqrt(static_cast<float>(d));
      const float mx = logits.maxCoeff();
      loss_proxy += mx + std::log((logits.array() - mx).exp().sum()) - logits(seq[t + 1]);
    }
    seconds["head"] += since(t0h);
  }
  const int64_t sequences = std::max<int64_t>(1, done / seqlen);
  double total = 0;
  for (const auto& [name, s] : seconds) total += s;
  std::printf("ran %lld tokens (%lld sequences of %lld) in %.2f s, %.0f tokens/s\n",
              static_cast<long long>(done), static_cast<long long>(sequences),
              static_cast<long long>(seqlen), total, static_cast<double>(done) / total);
  for (const auto& [name, s] : seconds)
    std::printf("  %-10s %6.1f%% of the time\n", name.c_str(), 100.0 * s / total);
  for (int64_t b = 0; b < blocks; ++b) {
    const Block& block = model[static_cast<size_t>(b)];
    std::printf("  block %lld:", static_cast<long long>(b));
    if (stack && stack->contains(b))
      std::printf(" Engram changed the hidden state by %.1f%% (RMS);",
                  100.0 * engram_change[static_cast<size_t>(b)] / static_cast<double>(sequences));
    std::printf(" tokens per expert");
    for (int64_t n : block.moe.expert_tokens()) std::printf(" %lld", static_cast<long long>(n));
    std::printf("\n");
  }
  std::printf(
      "  random weights: next-token cross-entropy %.2f nats (uniform would be %.2f)\n",
      loss_proxy / static_cast<double>(std::max<int64_t>(1, sequences * ((seqlen + 62) / 64))),
      std::log(static_cast<double>(table.vocab_size())));
  return 0;
}

}  // namespace
}  // namespace engram::example

int main(int argc, char** argv) {
  try {
    return engram::example::run(argc, argv);
  } catch (const engram::cli::UsageError& e) {
    std::fprintf(stderr, "mini_model: usage: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mini_model: error: %s\n", e.what());
    return 1;
  }
}
