#pragma once
// What a report reads from a sweep folder: sweep.json (runs, axes, layout) when present, else
// every sub-folder holding a config.yaml (one run each, axis "run"); per run its config,
// summary.json and the rows of metrics.jsonl.
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dynamoe/config/config.h"
#include "dynamoe/sweep/sweep_spec.h"

namespace dynamoe::report {

/// One test (or val) evaluation, training-loss window or gradient-noise measurement of a run.
struct CurvePoint {
  int64_t step = 0;
  double value = 0;
};

struct GradNoisePoint {
  int64_t step = 0;
  double trace_var = 0;     ///< summed over every layer of the model
  double mean_grad_sq = 0;  ///< ||mean gradient||^2 over the whole model
  double moe_trace_var = 0, moe_mean_grad_sq = 0;  ///< the MoE layers only
};

struct RunData {
  std::string name, dir, grid;                             ///< grid: "" for the main grid
  std::vector<std::pair<std::string, std::string>> axes;  ///< (axis, label) in axis order
  std::string status;                                      ///< done, running, failed, pending, ...
  std::optional<config::Config> config;                    ///< the run's config.yaml (if it started)
  std::optional<nlohmann::json> summary;                   ///< summary.json (finished runs)
  std::vector<CurvePoint> test_accuracy, test_loss, train_loss;
  std::vector<CurvePoint> val_perplexity, val_loss;        ///< language models

  std::vector<GradNoisePoint> gradnoise;
  double seconds = 0;                                      ///< training time (summed over resumes)
  /// The label of `axis`, or "" when the run has no such axis.
  std::string label(const std::string& axis) const;
};

struct SweepData {
  std::string name, dir;
  sweep::ReportLayout layout;
  std::vector<std::string> axis_order;                              ///< every axis name, first seen first
  std::vector<std::pair<std::string, std::vector<std::string>>> labels;  ///< axis -> labels in sweep order
  std::vector<std::string> grid_order;                              ///< "" then the extra grids
  std::vector<RunData> runs;
  /// Labels of `axis` in sweep order (empty when unknown).
  const std::vector<std::string>& labels_of(const std::string& axis) const;
};

/// The configuration a run belongs to: its grid and axis labels except the seed's, joined by
/// spaces ("descending dynamoe", "iso wave mnist"; "all" when there is nothing else).
std::string configuration_name(const SweepData& data, const RunData& run);

/// Reads a sweep folder (or a plain folder of runs). Throws dynamoe::Error when it holds no run.
SweepData load_sweep_data(const std::string& dir);

}  // namespace dynamoe::report
