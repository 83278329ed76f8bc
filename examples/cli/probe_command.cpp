// cli/probe_command.cpp: `engram probe`, this machine's limits (probe.hpp), printed and, with
// -o, written as JSON for `bench --probe` and `bench-offload --probe`.
#include <fstream>
#include <string>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "cli/probe.hpp"

namespace engram::cli {
namespace {

int run_probe(int argc, char** argv) {
  const Args args(argc, argv, 2, {"threads", "memory-mb", "dir", "file-mb", "io-seconds", "output"},
                  {});
  args.expect_no_positional();
  probe::ProbeOptions options;
  options.threads = static_cast<int>(args.integer("threads", options.threads, 1, 1024));
  options.memory_mb = args.integer("memory-mb", options.memory_mb, 64, 1 << 20);
  options.io_file_mb = args.integer("file-mb", options.io_file_mb, 16, 1 << 22);
  options.io_seconds = static_cast<double>(args.integer("io-seconds", 3, 1, 3600));
  if (args.has("dir")) options.io_dir = args.str("dir");
  const probe::Limits limits = probe::measure(options);
  probe::print(limits, stdout);
  if (args.has("output")) {
    std::ofstream out(args.str("output"));
    out << limits.to_json().dump(2) << "\n";
    ENGRAM_CHECK(out.good(), args.str("output"), ": cannot write the probe file");
  }
  return 0;
}

}  // namespace

Command probe_command() {
  return {"probe",
          "this machine's limits: FMA peaks, bandwidth, gathers, IOPS",
          "probe [--threads N] [--memory-mb M] [--dir DIR [--file-mb F] [--io-seconds S]] "
          "[-o PROBE.json]",
          "  --threads N        threads of the all-core figures\n"
          "  --memory-mb M      buffer of the read and gather figures (far beyond the caches)\n"
          "  --dir DIR          measure 4 KiB random read IOPS (O_DIRECT) of a scratch file here\n"
          "  --file-mb F        size of that scratch file\n"
          "  --io-seconds S     how long the IOPS figure runs\n"
          "  -o, --output FILE  write the figures as JSON\n",
          "probe --dir build -o probe.json",
          run_probe};
}

}  // namespace engram::cli
