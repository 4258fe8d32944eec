// dynamoe sweep: run a grid of trainings from a sweep file, resumably, N at a time, then report.
#include <csignal>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "dynamoe/report/report.h"
#include "dynamoe/sweep/sweep_runner.h"
#include "dynamoe/sweep/sweep_spec.h"
#include "dynamoe/train/trainer.h"

namespace dynamoe::cli {
namespace fs = std::filesystem;
namespace {

int run(const ParsedArgs& a) {
  const bool from_flags = a.has("base");
  if (from_flags == (a.positionals().size() == 1) || a.positionals().size() > 1)
    throw UsageError("dynamoe sweep: give one sweep FILE, or --base CONFIG with --axis and --seeds; see dynamoe sweep --help");
  if (!from_flags && (a.has("axis") || a.has("seeds") || a.has("name")))
    throw UsageError("dynamoe sweep: --axis, --seeds and --name go with --base (a sweep FILE has its own)");
  sweep::SweepSpec spec = from_flags ? sweep::command_line_sweep(a.get("base"), a.all("axis"), a.get_int("seeds", 0, 0),
                                                                 a.get("name", ""))
                                     : sweep::load_sweep(a.positionals()[0]);
  for (const auto& o : a.all("set")) spec.overrides.push_back(o);  // after the file's, before grids and axes
  sweep::SweepOptions opts;
  opts.jobs = static_cast<int>(a.get_int("jobs", 1, 1));
  opts.runs_dir = a.get("runs-dir");
  opts.dry_run = a.has("dry-run");
  opts.only = a.all("only");
  const sweep::SweepResult r = sweep::run_sweep(spec, opts);
  if (opts.dry_run) return 0;

  std::cout << "\nsweep " << r.dir << ": " << r.done_before + r.finished + r.linked << " of " << r.total << " runs done ("
            << r.finished << " this time";
  if (r.identical) std::cout << ", " << r.linked << " of " << r.identical << " identical runs linked to their twin";
  std::cout << ")";
  if (r.failed) std::cout << ", " << r.failed << " failed";
  std::cout << "\n";
  for (const auto& o : r.runs)
    if (o.status == "failed") std::cout << "  failed: " << o.name << ": " << o.reason << "\n    log: " << o.log << "\n";
  if (r.interrupted_by != 0) {
    std::cout << "interrupted: run the same command again to finish the grid (finished runs are kept)\n";
    return 128 + r.interrupted_by;
  }
  if (!a.has("no-report")) {
    train::set_threads(0);
    report::ReportOptions ro;
    ro.log = &std::cout;
    report::write_report(r.dir, ro);
  }
  return r.failed ? 1 : 0;
}

}  // namespace

Command sweep_command() {
  return {{"sweep",
           "run a grid of trainings from a sweep file (resumable, N at a time), then report",
           "dynamoe sweep FILE [--jobs N] [--runs-dir DIR] [--set KEY=VALUE]... [--only TEXT]... [--dry-run] [--no-report]\n"
           "dynamoe sweep --base CONFIG [--axis KEY=V1,V2,...]... [--seeds N] [--name NAME] [the options above]",
           "A sweep file holds a base config, overrides for every run and axes whose product is the grid\n"
           "(plus extra grids such as a dense baseline); see docs/sweeps.md and configs/studies/. Runs go\n"
           "to <runs-dir>/<sweep name>/<run name>/ with each run's output in train.log; sweep.json lists the\n"
           "runs, their overrides and status. Every run's config is checked before anything starts.\n"
           "Starting it again skips finished runs (summary.json), continues runs with a checkpoint and\n"
           "restarts the others; Ctrl-C or SIGTERM stops the running trainings. At the end it writes\n"
           "report.html into the sweep folder (see dynamoe report). Exit code 1 when a run failed.\n"
           "Without a file: --base CONFIG and one --axis per config key to vary, e.g.\n"
           "  dynamoe sweep --base configs/demo.yaml --axis moe.router.kind=top_k,top_p,dynamoe --seeds 3",
           {{"jobs", "N", "runs at a time (default 1); each gets cores / N threads unless train.threads is set"},
            {"runs-dir", "DIR", "parent of the sweep folder (default: the base config's train.runs_dir)"},
            {"set", "KEY=VALUE", "override a key in every run (before the grids' and axes' values)", true},
            {"only", "TEXT", "run only the runs whose name contains TEXT", true},
            {"dry-run", "", "list the runs, their state (done / resume / start) and parameter counts; run nothing"},
            {"no-report", "", "do not write report.html at the end"},
            {"base", "CONFIG", "without a sweep file: the config every run starts from"},
            {"axis", "KEY=V1,V2", "with --base: a config key and its values (one axis of the grid)", true},
            {"seeds", "N", "with --base: the last axis train.seed = 0 .. N-1"},
            {"name", "NAME", "with --base: the sweep folder's name (default: <config stem>-<axis names>)"}},
           1},
          run};
}

}  // namespace dynamoe::cli
