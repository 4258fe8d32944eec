#pragma once
// The run folder shared by every trainer: which folder and configuration a `dynamoe train`
// invocation means, and creating it (refusing to clobber an existing run unless asked).
#include <string>
#include <utility>

#include "dynamoe/config/config.h"
#include "dynamoe/train/trainer.h"

namespace dynamoe::train {

/// The run folder and the configuration to use: the saved one (with opts.overrides) when
/// opts.resume is set, else cfg under train.runs_dir/opts.name.
std::pair<std::string, config::Config> resolve_run(const config::Config& cfg, const TrainOptions& opts);

/// A new run: creates run_dir (replacing it only when `overwrite`; otherwise an existing folder
/// is an error naming --resume and --overwrite) and writes config.yaml atomically.
void create_run_folder(const std::string& run_dir, const std::string& config_yaml, bool overwrite);

}  // namespace dynamoe::train
