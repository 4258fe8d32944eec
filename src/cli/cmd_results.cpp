// dynamoe results: the Markdown results page of a finished sweep, with a plain answer to each
// claim of the sweep file's `results:` section.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "dynamoe/report/report.h"
#include "dynamoe/report/results_page.h"
#include "dynamoe/sweep/sweep_runner.h"
#include "dynamoe/sweep/sweep_spec.h"
#include "dynamoe/train/trainer.h"

namespace dynamoe::cli {
namespace fs = std::filesystem;
namespace {

int run(const ParsedArgs& a) {
  if (a.positionals().size() != 1) throw UsageError("dynamoe results: one sweep FILE is required; see dynamoe results --help");
  const std::string file = a.positionals()[0];
  const sweep::SweepSpec spec = sweep::load_sweep(file);
  sweep::SweepOptions so;
  so.runs_dir = a.get("runs-dir");
  const std::string dir = a.has("dir") ? a.get("dir") : sweep::sweep_dir(spec, so);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(str("results: the sweep folder '", dir, "' does not exist: run `dynamoe sweep ", file, "` first"));
  if (a.has("report") || (!spec.results.figures.empty() && !fs::is_directory(fs::path(dir) / "figures", ec))) {
    train::set_threads(0);
    report::ReportOptions ro;
    ro.log = &std::cout;
    report::write_report(dir, ro);
  }
  report::ResultsPageOptions opts;
  opts.out = a.get("out");
  opts.command = "dynamoe results " + file + (a.has("runs-dir") ? " --runs-dir " + a.get("runs-dir") : "") +
                 (a.has("dir") ? " --dir " + dir : "");
  opts.log = &std::cout;
  report::write_results_page(spec, dir, opts);
  return 0;
}

}  // namespace

Command results_command() {
  return {{"results",
           "write the results page of a finished sweep: a plain answer to each claim, tables, figures",
           "dynamoe results FILE [--runs-dir DIR | --dir DIR] [--out FILE] [--report]",
           "FILE is the sweep file; its `results:` section names the page (out), its intro, the claims\n"
           "to test and the report figures to copy beside the page (docs/sweeps.md). Each claim is\n"
           "answered confirmed, refuted or not distinguishable from noise, from the finished runs with\n"
           "their seeds as replicates (Welch's t-test per cell, the mean gain over cells, and an\n"
           "interaction F-test for claims about the best label). The report (dynamoe report) is written\n"
           "first when --report is given or its figures are missing.",
           {{"runs-dir", "DIR", "parent of the sweep folder (default: the base config's train.runs_dir)"},
            {"dir", "DIR", "the sweep folder itself (default: <runs-dir>/<sweep name>)"},
            {"out", "FILE", "where to write the page (default: results.out of the sweep file)"},
            {"report", "", "write the report (report.html, figures) again first"}},
           1},
          run};
}

}  // namespace dynamoe::cli
