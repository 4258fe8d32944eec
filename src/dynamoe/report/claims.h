#pragma once
// Tests a paper's claim (sweep::ClaimSpec, from the sweep file's `results.claims`) on the
// finished runs of a sweep, with the seed axis as replicates. docs/sweeps.md has the rules.
//
//   compare: for each label L of `better`, in every cell (a combination of the grid's other
//            axes, seed left out) Welch's t-test of L against `than`; over the cells, the mean
//            gain with its standard error from the within-cell variances (a fixed-effects test
//            of "L beats `than` in this setting"). Verdict: confirmed (p < 0.05, gain > 0),
//            refuted (p < 0.05, gain < 0), else not distinguishable from noise.
//   best:    in every cell the labels of `axis` ranked by mean; per stratum (the axes that are
//            neither `axis`, `across` nor the seed) the interaction F-test axis x across.
//            Confirmed when the interaction is significant (p < 0.05 / strata) and the best label
//            differs between cells; refuted when one label is best everywhere, its main effect
//            is significant and the interaction is not; else not distinguishable from noise.
//
// Gradient noise and perplexity are compared on a log scale (a ratio), the rest as differences.
//
//   ClaimResult r = evaluate_claim(load_sweep_data("runs/dynamoe"), spec.results.claims[0]);
//   std::cout << r.verdict << ": " << r.answer << "\n";
#include <string>
#include <vector>

#include "dynamoe/report/run_data.h"
#include "dynamoe/report/stats.h"
#include "dynamoe/sweep/sweep_spec.h"

namespace dynamoe::report {

/// The metric of a finished run; false when the run does not have it.
bool claim_metric(const RunData& run, const std::string& metric, double& value);
/// True for metrics compared as ratios (gradient noise, perplexity).
bool log_scale_metric(const std::string& metric);
/// True for metrics shown in percent (accuracies).
bool percent_metric(const std::string& metric);
/// A metric value as the page prints it (accuracy in %, noise with 3 significant digits).
std::string format_metric(const std::string& metric, double value);
/// A gain in the claimed direction as tables print it: "x0.950" (the ratio better / than) for
/// log-scale metrics, "+0.12" (points) for accuracy, "+0.0012" otherwise.
std::string format_gain(const std::string& metric, double gain, bool maximize);
/// A metric's name in prose ("test accuracy", "gradient noise tr Var(g)").
std::string metric_title(const std::string& metric);

/// The values of one label in one cell.
struct Sample {
  std::string label;
  std::vector<double> values;  ///< one per seed
  double mean = 0, sd = 0;
};

/// compare: one label against `than` in one cell.
struct CompareRow {
  std::string cell;     ///< the other axes' labels, e.g. "mnist, s, dynamoe"
  std::string better;   ///< the label claimed better
  Sample a, b;          ///< a: `better`, b: `than`
  WelchTest test;       ///< on the values (log values for log-scale metrics)
  double gain = 0;      ///< in the claimed direction: accuracy points x 100, or log(b) - log(a) for lower-is-better ratios
  bool significant = false;
};

/// compare: one label over all cells.
struct CompareSummary {
  std::string better;
  int cells = 0, better_significant = 0, worse_significant = 0;
  double gain = 0, gain_se = 0, df = 0, p = 1;  ///< mean gain over cells and its test
  double best_gain = 0, worst_gain = 0;
  std::string best_cell, worst_cell;
  std::string verdict;
};

/// best: one cell's ranking.
struct BestCell {
  std::string cell, stratum, across;  ///< the cell; its stratum and across labels
  std::vector<Sample> ranked;         ///< best first
  WelchTest best_vs_second;
  std::string expected;               ///< the claimed best here ("" when the claim names none)
};

/// best: the interaction test in one stratum.
struct BestStratum {
  std::string stratum;                ///< "" when there is one
  InteractionTest test;
  std::vector<std::string> bests;     ///< the best label of each cell
};

struct ClaimResult {
  const sweep::ClaimSpec* spec = nullptr;
  std::string verdict;  ///< confirmed | refuted | not distinguishable from noise | mixed | no data
  std::string answer;   ///< the plain answer with the numbers, in a few sentences
  int runs = 0;         ///< finished runs used
  std::vector<CompareRow> rows;
  std::vector<CompareSummary> summaries;
  std::vector<BestCell> cells;
  std::vector<BestStratum> strata;
};

/// Tests the claim on the finished runs of `data`; a claim without enough runs gets "no data".
ClaimResult evaluate_claim(const SweepData& data, const sweep::ClaimSpec& claim);

}  // namespace dynamoe::report
