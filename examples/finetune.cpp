// finetune: the worked fine-tuning example (train_example.hpp): trains an Engram layer on a frozen
// backbone over part of the King James Bible and compares it with the same model, Engram off.
//
//   finetune --corpus data/kjv.dsv3.safetensors --plot loss.png
//            --lookup tests/data/tokenizer/deepseek_v3/lookup.safetensors
#include <cstdio>
#include <exception>
#include <string>

#include "train_example.hpp"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::printf(
          "usage: finetune --corpus TOKENS.safetensors --lookup LOOKUP.safetensors "
          "[options]\n%s",
          engram::example::kTrainOptions);
      return 0;
    }
  try {
    return engram::example::run_train(argc, argv, 1);
  } catch (const engram::cli::UsageError& e) {
    std::fprintf(stderr, "finetune: usage: %s\n  (finetune --help lists the options)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finetune: error: %s\n", e.what());
    return 1;
  }
}
