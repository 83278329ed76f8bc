// Uses the package as an outside project would: the config reader and the error type, and with
// the tokenizer component, vocabulary compression (utf8proc's NFKC: the component links).
#include <cstdio>
#include <string>
#include <vector>

#include "engram/engram.hpp"
#ifdef ENGRAM_CONSUMER_TOKENIZER
#include "engram/tokenizer/vocab_compressor.hpp"
#endif

int main() {
  const auto cfg = engram::EngramConfig::from_json(
      nlohmann::json::parse(R"({"engram_vocab_size": 1009, "max_ngram_size": 3,
        "n_embed_per_ngram": 64, "n_head_per_ngram": 4, "layer_ids": [1], "pad_id": 2,
        "seed": 0, "kernel_size": 4, "hidden_size": 96, "hc_mult": 4})"),
      "inline");
  std::printf("columns %lld\n", static_cast<long long>(cfg.num_columns()));
  if (cfg.num_columns() != 8) return 1;
#ifdef ENGRAM_CONSUMER_TOKENIZER
  // "Ｈello" (fullwidth H) and " hello" normalise alike: one compressed id for both.
  const std::vector<std::string> texts = {
      "\xEF\xBC\xA8"
      "ello",
      " hello", "world"};
  const auto table = engram::compress_vocab(texts, texts);
  std::printf("tokenizer: %lld ids -> %lld\n", static_cast<long long>(table.vocab_size()),
              static_cast<long long>(table.compressed_size()));
  if (table.compressed_size() != 2) return 1;
#endif
  return 0;
}
