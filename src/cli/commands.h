#pragma once
// The dynamoe subcommands. Each returns the process exit code and throws dynamoe::Error
// (exit 1) or ConfigError/UsageError (exit 2) on failure; main() prints the one-line message.
#include <string>
#include <vector>

#include "args.h"

namespace dynamoe::cli {

struct Command {
  CommandSpec spec;
  int (*run)(const ParsedArgs& args);
};

Command train_command();
Command eval_command();
Command data_command();
Command config_command();
Command moe_apply_command();
Command gradnoise_command();
Command bench_command();
Command tokenize_command();
Command generate_command();
Command sweep_command();
Command report_command();
Command results_command();
Command mc_command();
Command launch_command();

}  // namespace dynamoe::cli
