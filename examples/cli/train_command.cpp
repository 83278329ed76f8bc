// engram train: the worked fine-tuning example (examples/train_example.hpp, also the `finetune`
// binary): an Engram layer trained on a frozen backbone over part of the Bible, against Engram off.
#include "cli/command.hpp"
#include "train_example.hpp"

namespace engram::cli {
namespace {

int train(int argc, char** argv) { return engram::example::run_train(argc, argv, 2); }

}  // namespace

Command train_command() {
  return {"train",
          "fine-tuning example: Engram trained on a frozen backbone, against Engram off",
          engram::example::kTrainSynopsis,
          engram::example::kTrainOptions,
          "train --corpus data/kjv.dsv3.safetensors --lookup "
          "tests/data/tokenizer/deepseek_v3/lookup.safetensors --plot loss.png",
          train};
}

}  // namespace engram::cli
