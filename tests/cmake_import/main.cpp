// Uses the package as an outside project would: the config reader and the error type.
#include <cstdio>

#include "engram/engram.hpp"

int main() {
  const auto cfg = engram::EngramConfig::from_json(
      nlohmann::json::parse(R"({"engram_vocab_size": 1009, "max_ngram_size": 3,
        "n_embed_per_ngram": 64, "n_head_per_ngram": 4, "layer_ids": [1], "pad_id": 2,
        "seed": 0, "kernel_size": 4, "hidden_size": 96, "hc_mult": 4})"),
      "inline");
  std::printf("columns %lld\n", static_cast<long long>(cfg.num_columns()));
  return cfg.num_columns() == 8 ? 0 : 1;
}
