// cli/offload_command.cpp: `engram bench-offload` (offload_bench.hpp): a backbone with an Engram
// layer whose table is in RAM vs on SSD behind a cache, with and without prefetch.
#include "cli/command.hpp"
#include "cli/offload_bench.hpp"

namespace engram::cli {

Command bench_offload_command() {
  return {"bench-offload",
          "a table on SSD vs in RAM under a backbone, with prefetch",
          "bench-offload --corpus TOKENS.safetensors --lookup LOOKUP.safetensors --table-rows R "
          "--cache-mb M --table-dir DIR [--codec bf16|f32] [--no-prefetch] [--tokens N] "
          "[--threads T] [--backbone-tokens-per-s R] [--find-sustained [--max-steps S]] "
          "[--repeats K] [--probe PROBE.json]",
          "  --corpus FILE, --lookup FILE   token ids and their compression table\n"
          "  --table-rows R         rows per head table (about 16 R rows in all)\n"
          "  --cache-mb M           hot-row cache in front of the SSD table\n"
          "  --table-dir DIR        where the table file is written once and reused\n"
          "  --codec bf16|f32       the table's codec (default bf16)\n"
          "  --no-prefetch          fetch rows when the layer needs them, not one batch ahead\n"
          "  --tokens N             tokens measured (default 16384, sequences of 512)\n"
          "  --threads T            Eigen threads (default 2)\n"
          "  --backbone-tokens-per-s R   a calibrated busy backbone of R tok/s instead of blocks\n"
          "  --find-sustained       search the highest R at a penalty of at most 1%\n"
          "  --max-steps S          rates tried by that search (default 12)\n"
          "  --repeats K            runs per rate; the median penalty counts (default 3)\n"
          "  --probe PROBE.json     IOPS figures against `engram probe --dir`'s\n",
          "bench-offload --corpus data/kjv.dsv3.safetensors --lookup lookup.safetensors "
          "--table-rows 1000000 --cache-mb 256 --table-dir /mnt/ssd",
          bench_offload};
}

}  // namespace engram::cli
