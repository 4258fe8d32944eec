#pragma once
// dynamoe results: the Markdown results page of a finished sweep (docs/results/*.md): the
// sweep file's intro, a plain answer to every claim of its `results:` section with the
// numbers (claims.h), per-claim tables, a table of every configuration (mean +- std over
// seeds) and the report's figures, copied beside the page.
//
//   SweepSpec spec = load_sweep("configs/studies/dynamoe.yaml");
//   ResultsPage p = write_results_page(spec, "runs/dynamoe", {});
//   // docs/results/dynamoe.md and docs/results/dynamoe/*.svg (spec.results.out and figures)
#include <iosfwd>
#include <string>
#include <vector>

#include "dynamoe/report/claims.h"
#include "dynamoe/sweep/sweep_spec.h"

namespace dynamoe::report {

struct ResultsPageOptions {
  std::string out;                ///< the page ("": spec.results.out, else <dir>/results-page.md)
  std::string command;            ///< the command that makes the page, quoted on it
  std::ostream* log = nullptr;    ///< progress and warnings (nullptr: silent)
};

struct ResultsPage {
  std::string path;                   ///< the page written
  std::vector<ClaimResult> claims;    ///< in the sweep file's order
  std::vector<std::string> figures;   ///< figure files copied
  std::vector<std::string> warnings;  ///< e.g. figures missing (no report yet), runs not finished
};

/// Reads the sweep folder `dir`, tests the claims and writes the page (atomically) and its
/// figures. Throws dynamoe::Error when the folder holds no run or a file cannot be written.
ResultsPage write_results_page(const sweep::SweepSpec& spec, const std::string& dir, const ResultsPageOptions& opts);

}  // namespace dynamoe::report
