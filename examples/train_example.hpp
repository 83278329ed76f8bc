// train_example.hpp: the worked fine-tuning example (`finetune`, alias `engram train`): freeze a
// small pretrained language model, add an Engram layer into its residual stream and train only
// the Engram layer (table rows + gate + projections + conv) on part of the King James Bible.
//
//   1. corpus slice -> sequences of --seqlen tokens; every --val-every-th one is held out
//   2. backbone: bigram-level LM over the training text's top --vocab ids (+ UNK), pretrained
//      for --pretrain-epochs with dense Adam, then frozen (train/backbone_lm.hpp)
//   3. Engram layer (N = 3, hashed on the real DeepSeek-V3 ids through the compression lookup),
//      hidden += engram(ids, hidden) before the head; --epochs of training (train/engram_part.hpp)
//   4. per epoch: train and validation loss with Engram, against the same model with Engram off
//      (the frozen backbone alone); --csv and --plot write the curves.
//
// Deterministic for a seed and a thread count: the losses printed on stdout repeat bit for bit.
// The progress bar goes to stderr, on a terminal only.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "engram/error.hpp"
#include "engram/hashing/ngram_hasher.hpp"
#include "engram/io/config.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/tokenizer/vocab_compressor.hpp"
#include "train/backbone_lm.hpp"
#include "train/engram_part.hpp"
#include "train/loss_plot.hpp"
#include "train/progress.hpp"

namespace engram::example {

/// One line of usage (the `engram` command list) and the options (`finetune --help`).
inline constexpr const char* kTrainSynopsis =
    "train --corpus TOKENS.safetensors --lookup LOOKUP.safetensors [--tokens N] [--epochs E] [--lr "
    "LR] "
    "[--table-lr LR] [--table-optimizer adam|adagrad|sgd] [--seed S] [--threads N] [--csv F] "
    "[--plot F.png] [--save F]";
inline constexpr const char* kTrainOptions =
    "  --tokens N          corpus tokens used, from the start (default 262144)\n"
    "  --seqlen T          tokens per sequence (default 256)\n"
    "  --val-every K       every K-th sequence is held out for validation (default 10)\n"
    "  --vocab K           backbone vocabulary: the K most frequent training ids + UNK (2047)\n"
    "  --hidden D          backbone and Engram width d (default 64)\n"
    "  --pretrain-epochs E backbone pretraining epochs before it is frozen (default 6)\n"
    "  --backbone-lr LR    backbone pretraining learning rate, Adam (default 0.01)\n"
    "  --epochs E          Engram training epochs (default 4)\n"
    "  --batch B           sequences per step (default 8)\n"
    "  --lr LR             Engram dense weights learning rate, Adam (default 0.001)\n"
    "  --table-lr LR       Engram table learning rate (default 5 x --lr, no weight decay)\n"
    "  --table-optimizer O adam (sparse, lazy moments) | adagrad (row-wise) | sgd (default adam)\n"
    "  --table-rows R      hash table rows per order and head, before the prime search (50021)\n"
    "  --heads H           hash heads per n-gram order (default 4)\n"
    "  --seed S            seed of initialisation and shuffling (default 0)\n"
    "  --threads N         threads (default 1; results depend on it only through float rounding)\n"
    "  --csv FILE          per-epoch losses as CSV\n"
    "  --plot FILE.png     the loss curves as a PNG\n"
    "  --save FILE         the trained Engram layer and its optimiser state (safetensors)\n";

namespace train_detail {

inline double parse_number(const cli::Args& args, const std::string& name, double fallback) {
  if (!args.has(name)) return fallback;
  const std::string& s = args.str(name);
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || !std::isfinite(v) || v < 0)
    throw cli::UsageError("option --" + name + " expects a non-negative number, got '" + s + "'");
  return v;
}

/// The corpus cut into sequences, remapped for the backbone and hashed for Engram.
struct Dataset {
  int64_t seq_len = 0, columns = 0;
  std::vector<int64_t> train, val;  ///< sequence indices
  std::vector<int32_t> vocab_ids;   ///< [S, T] backbone ids
  std::vector<int64_t> hash_ids;    ///< [S, T, cols]
  std::span<const int32_t> ids(int64_t s) const {
    return {vocab_ids.data() + s * seq_len, static_cast<size_t>(seq_len)};
  }
  std::span<const int64_t> hashes(int64_t s) const {
    return {hash_ids.data() + s * seq_len * columns, static_cast<size_t>(seq_len * columns)};
  }
};

/// Mean loss over `sequences` of the backbone, with the Engram layer when `engram` is non-null.
inline double evaluate(const BackboneLm& model, EngramPart* engram, const Dataset& data,
                       const std::vector<int64_t>& sequences, ProgressBar& bar) {
  double sum = 0;
  int64_t count = 0, done = 0;
  const int64_t T = data.seq_len, d = model.hidden();
  std::vector<float> out(static_cast<size_t>(T * d));
  for (int64_t s : sequences) {
    RowMatrix x = model.embed(data.ids(s));
    if (engram) {
      engram->infer(data.hashes(s), std::span<const float>(x.data(), out.size()), 1, T, out);
      x += Eigen::Map<const RowMatrix>(out.data(), T, d);
    }
    const SequenceLoss l = model.loss(x, data.ids(s), 1.0f, nullptr, nullptr);
    sum += l.sum;
    count += l.count;
    bar.update(++done, static_cast<int64_t>(sequences.size()), "evaluating");
  }
  bar.finish();
  return sum / static_cast<double>(std::max<int64_t>(1, count));
}

}  // namespace train_detail

/// Runs the example on argv[first..argc); returns the exit status.
inline int run_train(int argc, char** argv, int first) {
  using namespace train_detail;
  const cli::Args args(argc, argv, first,
                       {"corpus",      "lookup",          "tokens",     "seqlen",
                        "val-every",   "vocab",           "hidden",     "pretrain-epochs",
                        "backbone-lr", "epochs",          "batch",      "lr",
                        "table-lr",    "table-optimizer", "table-rows", "heads",
                        "seed",        "threads",         "csv",        "plot",
                        "save"},
                       {});
  const auto start_time = std::chrono::steady_clock::now();
  const int64_t seq_len = args.integer("seqlen", 256, 4, 1 << 16);
  const int64_t val_every = args.integer("val-every", 10, 2, 1 << 20);
  const int64_t vocab_k = args.integer("vocab", 2047, 1, 1 << 22);
  const int64_t d = args.integer("hidden", 64, 1, 4096);
  const int64_t pretrain_epochs = args.integer("pretrain-epochs", 6, 0, 1000);
  const int64_t epochs = args.integer("epochs", 4, 1, 1000);
  const int64_t batch = args.integer("batch", 8, 1, 1 << 16);
  const int64_t table_rows = args.integer("table-rows", 50021, 2, int64_t{1} << 40);
  const int64_t heads = args.integer("heads", 4, 1, 64);
  const auto seed = static_cast<uint64_t>(args.integer("seed", 0, 0));
  const int threads = static_cast<int>(args.integer("threads", 1, 1, 1024));
  const auto backbone_lr = static_cast<float>(parse_number(args, "backbone-lr", 0.01));
  EngramTrainOptions train_options;
  train_options.lr = parse_number(args, "lr", 1e-3);
  train_options.table_lr = parse_number(args, "table-lr", 5 * train_options.lr);
  train_options.threads = threads;
  train_options.table_optimizer = args.str("table-optimizer", "adam");
  if (train_options.table_optimizer != "adam" && train_options.table_optimizer != "adagrad" &&
      train_options.table_optimizer != "sgd")
    throw cli::UsageError("option --table-optimizer expects adam, adagrad or sgd, got '" +
                          train_options.table_optimizer + "'");
  Eigen::setNbThreads(threads);

  // Data: sequences of the corpus slice, every val_every-th held out.
  const SafetensorsFile corpus(args.str("corpus"));
  const std::vector<int64_t> all_ids = corpus.read_int64("input_ids");
  const int64_t tokens =
      std::min<int64_t>(args.integer("tokens", 262144, 1), static_cast<int64_t>(all_ids.size()));
  const int64_t sequences = tokens / seq_len;
  ENGRAM_CHECK(sequences >= val_every, args.str("corpus"), ": --tokens ", tokens, " gives ",
               sequences, " sequences of ", seq_len, "; at least --val-every = ", val_every,
               " are needed for one validation sequence");
  Dataset data;
  data.seq_len = seq_len;
  for (int64_t s = 0; s < sequences; ++s)
    (s % val_every == val_every - 1 ? data.val : data.train).push_back(s);

  // Backbone vocabulary: the most frequent training ids (ties by id), the rest UNK.
  const int64_t max_id = *std::max_element(all_ids.begin(), all_ids.begin() + tokens);
  std::vector<int64_t> counts(static_cast<size_t>(max_id + 1), 0);
  for (int64_t s : data.train)
    for (int64_t t = 0; t < seq_len; ++t) ++counts[static_cast<size_t>(all_ids[s * seq_len + t])];
  std::vector<int64_t> by_count(counts.size());
  std::iota(by_count.begin(), by_count.end(), 0);
  std::stable_sort(by_count.begin(), by_count.end(),
                   [&](int64_t a, int64_t b) { return counts[a] > counts[b]; });
  int64_t distinct = 0;
  for (int64_t c : counts) distinct += c > 0;
  const int64_t kept = std::min(vocab_k, distinct);
  std::vector<int32_t> remap(counts.size(), static_cast<int32_t>(kept));  // UNK = kept
  int64_t covered = 0;
  for (int64_t i = 0; i < kept; ++i) {
    remap[static_cast<size_t>(by_count[i])] = static_cast<int32_t>(i);
    covered += counts[static_cast<size_t>(by_count[i])];
  }
  data.vocab_ids.resize(static_cast<size_t>(sequences * seq_len));
  for (int64_t i = 0; i < sequences * seq_len; ++i)
    data.vocab_ids[static_cast<size_t>(i)] = remap[static_cast<size_t>(all_ids[i])];

  // Engram hashing on the real token ids, through the tokenizer's compression lookup.
  EngramConfig config;
  config.engram_vocab_size = {table_rows, table_rows};
  config.max_ngram_size = 3;
  config.n_head_per_ngram = heads;
  config.n_embed_per_ngram = heads * 16;
  config.layer_ids = {0};
  config.kernel_size = 4;
  config.hidden_size = d;
  config.hc_mult = 1;
  config.validate("finetune config");
  const auto lookup = CompressionTable::load(args.str("lookup"));
  auto hasher = std::make_shared<const NgramHasher>(config, lookup.lookup(), 0);
  data.columns = config.num_columns();
  data.hash_ids.resize(static_cast<size_t>(sequences * seq_len * data.columns));
  hasher->hash(std::span<const int64_t>(all_ids.data(), static_cast<size_t>(sequences * seq_len)),
               sequences, seq_len, data.hash_ids);

  std::printf(
      "finetune: %lld tokens of %s: %zu training and %zu validation sequences of %lld tokens\n",
      static_cast<long long>(sequences * seq_len), args.str("corpus").c_str(), data.train.size(),
      data.val.size(), static_cast<long long>(seq_len));
  std::printf("backbone: vocabulary %lld ids + UNK (%.1f%% of training tokens), d = %lld\n",
              static_cast<long long>(kept),
              100.0 * static_cast<double>(covered) /
                  static_cast<double>(static_cast<int64_t>(data.train.size()) * seq_len),
              static_cast<long long>(d));

  // Pretraining, then the backbone is frozen.
  std::mt19937_64 rng(seed);
  BackboneLm backbone(kept + 1, d, rng);
  std::vector<int64_t> order = data.train;
  {
    BackboneLm::Adam adam(backbone, backbone_lr);
    ProgressBar bar("pretraining");
    const int64_t steps_per_epoch = (static_cast<int64_t>(order.size()) + batch - 1) / batch;
    for (int64_t epoch = 0; epoch < pretrain_epochs; ++epoch) {
      std::shuffle(order.begin(), order.end(), rng);
      double sum = 0;
      int64_t count = 0;
      for (int64_t step = 0; step < steps_per_epoch; ++step) {
        auto grads = backbone.zero_grads();
        const int64_t lo = step * batch;
        const int64_t hi = std::min<int64_t>(lo + batch, static_cast<int64_t>(order.size()));
        const float scale = static_cast<float>((hi - lo) * (seq_len - 1));
        for (int64_t k = lo; k < hi; ++k) {
          const int64_t s = order[static_cast<size_t>(k)];
          const SequenceLoss l =
              backbone.loss(backbone.embed(data.ids(s)), data.ids(s), scale, nullptr, &grads);
          sum += l.sum;
          count += l.count;
        }
        adam.step(backbone, grads);
        char text[96];
        std::snprintf(text, sizeof text, "epoch %lld/%lld  loss %.4f",
                      static_cast<long long>(epoch + 1), static_cast<long long>(pretrain_epochs),
                      sum / static_cast<double>(std::max<int64_t>(1, count)));
        bar.update(epoch * steps_per_epoch + step + 1, pretrain_epochs * steps_per_epoch, text);
      }
    }
    bar.finish();
  }
  ProgressBar eval_bar("evaluating");
  const double off_train = evaluate(backbone, nullptr, data, data.train, eval_bar);
  const double off_val = evaluate(backbone, nullptr, data, data.val, eval_bar);
  std::printf("backbone pretrained for %lld epochs and frozen: train loss %.4f, validation %.4f\n",
              static_cast<long long>(pretrain_epochs), off_train, off_val);

  // The Engram layer, trained alone.
  EngramPart engram(config, hasher, seed + 1, train_options);
  std::printf(
      "Engram: N = 3, %lld heads per order, %lld table rows x %lld, %lld dense weights; table "
      "optimiser %s (lr %g), dense Adam (lr %g)\n",
      static_cast<long long>(heads), static_cast<long long>(engram.table_rows()),
      static_cast<long long>(config.row_dim()), static_cast<long long>(engram.dense_parameters()),
      train_options.table_optimizer.c_str(), train_options.table_lr, train_options.lr);

  std::vector<LossPoint> curve;
  curve.push_back({0, evaluate(backbone, &engram, data, data.train, eval_bar),
                   evaluate(backbone, &engram, data, data.val, eval_bar), off_train, off_val});
  std::printf("epoch  train(engram)  val(engram)  train(off)  val(off)\n");
  auto print_point = [](const LossPoint& p) {
    std::printf("%5lld  %13.4f  %11.4f  %10.4f  %8.4f\n", static_cast<long long>(p.epoch),
                p.train_engram, p.val_engram, p.train_off, p.val_off);
    std::fflush(stdout);
  };
  print_point(curve.back());

  const int64_t T = seq_len, cols = data.columns;
  std::vector<int64_t> batch_hashes;
  std::vector<float> hidden, out, grad_out;
  ProgressBar bar("training");
  const int64_t steps_per_epoch = (static_cast<int64_t>(order.size()) + batch - 1) / batch;
  for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    double sum = 0;
    int64_t count = 0;
    for (int64_t step = 0; step < steps_per_epoch; ++step) {
      const int64_t lo = step * batch;
      const int64_t hi = std::min<int64_t>(lo + batch, static_cast<int64_t>(order.size()));
      const int64_t B = hi - lo;
      batch_hashes.resize(static_cast<size_t>(B * T * cols));
      hidden.resize(static_cast<size_t>(B * T * d));
      out.resize(hidden.size());
      grad_out.resize(hidden.size());
      for (int64_t b = 0; b < B; ++b) {
        const int64_t s = order[static_cast<size_t>(lo + b)];
        std::copy_n(data.hashes(s).data(), T * cols, batch_hashes.data() + b * T * cols);
        Eigen::Map<RowMatrix>(hidden.data() + b * T * d, T, d) = backbone.embed(data.ids(s));
      }
      engram.forward(batch_hashes, hidden, B, T, out);
      const float scale = static_cast<float>(B * (T - 1));
      for (int64_t b = 0; b < B; ++b) {
        const int64_t s = order[static_cast<size_t>(lo + b)];
        const RowMatrix x = Eigen::Map<const RowMatrix>(hidden.data() + b * T * d, T, d) +
                            Eigen::Map<const RowMatrix>(out.data() + b * T * d, T, d);
        RowMatrix grad_x;
        const SequenceLoss l = backbone.loss(x, data.ids(s), scale, &grad_x, nullptr);
        sum += l.sum;
        count += l.count;
        // d loss / d out = d loss / d x: the residual add passes the gradient through.
        Eigen::Map<RowMatrix>(grad_out.data() + b * T * d, T, d) = grad_x;
      }
      engram.step(grad_out);
      char text[96];
      std::snprintf(text, sizeof text, "epoch %lld/%lld  loss %.4f", static_cast<long long>(epoch),
                    static_cast<long long>(epochs),
                    sum / static_cast<double>(std::max<int64_t>(1, count)));
      bar.update(step + 1, steps_per_epoch, text);
    }
    bar.finish();
    engram.refresh_layer();
    curve.push_back({epoch, evaluate(backbone, &engram, data, data.train, eval_bar),
                     evaluate(backbone, &engram, data, data.val, eval_bar), off_train, off_val});
    print_point(curve.back());
  }

  const LossPoint& last = curve.back();
  std::printf("validation loss: %.4f with Engram, %.4f without (%+.4f nats, %+.1f%%)\n",
              last.val_engram, last.val_off, last.val_engram - last.val_off,
              100.0 * (last.val_engram - last.val_off) / last.val_off);
  if (args.has("csv")) write_loss_csv(args.str("csv"), curve);
  if (args.has("plot")) write_loss_plot(args.str("plot"), curve);
  if (args.has("save")) engram.save(args.str("save"));
  std::fflush(stdout);
  std::fprintf(
      stderr, "finetune: %.1f s\n",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count());
  return 0;
}

}  // namespace engram::example
