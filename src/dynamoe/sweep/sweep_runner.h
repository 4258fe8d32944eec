#pragma once
// Runs a sweep: every run of the grid as a child process `dynamoe train`, N at a time, under
// one folder <runs_dir>/<sweep name>/. Resumable: a run with summary.json is done and skipped,
// a run with a checkpoint continues with `train --resume`, any other run folder starts afresh.
// SIGINT / SIGTERM stop the children (they continue from their last checkpoint next time).
// Runs whose resolved configs are identical (e.g. an extra grid's cell that equals a main-grid
// cell) are trained once: the later ones become links (symlinks) to the first one's folder.
//
//   SweepResult r = run_sweep(load_sweep("configs/studies/dynamoe-quick.yaml"), {.jobs = 2});
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "dynamoe/sweep/sweep_spec.h"

namespace dynamoe::sweep {

struct SweepOptions {
  int jobs = 1;                     ///< runs at a time; each gets cores / jobs threads unless train.threads is set
  std::string runs_dir;             ///< parent of the sweep folder ("": the base config's train.runs_dir)
  bool dry_run = false;             ///< print the grid, its state and parameter counts; run nothing
  std::vector<std::string> only;    ///< run only runs whose name contains one of these ("" : all)
  std::string exe;                  ///< the dynamoe binary to run ("": /proc/self/exe)
  std::ostream* out = nullptr;      ///< progress lines (default std::cout)
};

/// What happened to one run in this invocation.
struct RunOutcome {
  std::string name, status;  ///< status: done (before), finished, failed, interrupted, skipped, pending
  std::string log;           ///< <run>/train.log
  std::string reason;        ///< failed: exit code and the last line of the log
};

struct SweepResult {
  std::string dir;                  ///< the sweep folder
  int total = 0, done_before = 0, finished = 0, failed = 0;
  int identical = 0;                ///< runs identical to an earlier one (linked to it, not trained)
  int linked = 0;                   ///< of those, the ones whose run is done (their link exists)
  int interrupted_by = 0;           ///< the signal that stopped the sweep (0: none)
  std::vector<RunOutcome> runs;
};

/// The sweep folder of `spec` under opts.runs_dir (or the base config's train.runs_dir).
std::string sweep_dir(const SweepSpec& spec, const SweepOptions& opts);

/// Validates every run's config, then runs what is not done yet (see the file comment) and
/// writes <dir>/sweep.json (runs, their axes and overrides, status) along the way. A failed run
/// does not stop the others. Throws ConfigError before starting anything when a run's config is
/// invalid, and Error when the folder is in use by another sweep.
SweepResult run_sweep(const SweepSpec& spec, const SweepOptions& opts);

}  // namespace dynamoe::sweep
