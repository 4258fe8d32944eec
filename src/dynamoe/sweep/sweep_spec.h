#pragma once
// A sweep file: a base config, overrides for every run, and grids of runs (the main grid plus
// extra grids such as a dense baseline), each the product of its axes. Format: docs/sweeps.md.
//
//   SweepSpec spec = load_sweep("configs/studies/dynamoe-quick.yaml");
//   std::vector<SweepRun> runs = expand(spec);   // deterministic order and names
//   validate_runs(spec, runs);                    // ConfigError naming the run and the key
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dynamoe/config/config.h"

namespace dynamoe::sweep {

/// One value of an axis: its label (used in run names and reports) and the overrides it sets.
struct AxisValue {
  std::string label;
  std::vector<std::string> overrides;  ///< "key=value", e.g. "moe.layers.schedule=descending"
};

/// One axis of a grid: a config key with a list of values, or a name with named values.
struct Axis {
  std::string name;  ///< "schedule" for `moe.layers.schedule: [...]` (the key's last part; "gate" for `moe.gate.kind`), "size" for `size: {...}`
  std::string key;   ///< the config key of a plain list axis ("moe.layers.schedule"); "" for named values
  std::vector<AxisValue> values;
};

/// A partial assignment axis name -> label (exclude / only entries).
using CellMatch = std::map<std::string, std::string>;

/// A grid of runs: the product of its axes, minus `exclude`, restricted to `only` when given.
struct Grid {
  std::string name;                    ///< "" for the main grid; else the prefix of its run names
  std::vector<std::string> overrides;  ///< set for every run of the grid (after the sweep's `set`)
  std::vector<Axis> axes;
  std::vector<CellMatch> exclude, only;
};

/// How `dynamoe report` lays out the runs (axis names; defaults from the main grid's axes).
struct ReportLayout {
  std::string color;                ///< series colour within a chart (default: the first axis)
  std::string facet;                ///< chart columns (default: the second axis; "" for none)
  std::vector<std::string> select;  ///< chosen with drop-down menus (default: the other axes)
  std::string seed = "seed";        ///< the axis averaged over (mean +- std)
};

/// One claim of a paper, tested on the sweep's finished runs by `dynamoe results` (docs/sweeps.md).
///   compare: each label of `better` against `than` on `axis`, within every combination of the
///            grid's other axes (the seed axis gives the replicates);
///   best:    the best label of `axis` in every cell, and whether the ranking depends on `across`.
struct ClaimSpec {
  std::string id;                       ///< short name (a heading anchor)
  std::string claim;                    ///< the claim as tested, in plain words
  std::string source;                   ///< where the claim comes from (paper, figure)
  std::string kind;                     ///< "compare" or "best"
  std::string grid;                     ///< the grid whose runs are used ("" the main grid)
  std::string axis;                     ///< the axis whose labels are compared
  std::vector<std::string> better;      ///< compare: the labels claimed better ...
  std::string than;                     ///< ... than this one
  std::vector<std::string> across;      ///< best: the axes the best label is claimed to depend on
  std::map<std::string, std::string> expect;  ///< best, one `across` axis: its label -> the claimed best
  CellMatch where;                      ///< only runs with these labels
  std::string metric;                   ///< test_accuracy, val_perplexity, gradnoise_trace, ... (docs/sweeps.md)
  bool maximize = true;                 ///< higher is better (accuracy) or lower (loss, perplexity, noise)
};

/// The `results:` section: what `dynamoe results` writes about the finished sweep.
struct ResultsSpec {
  std::string title;                 ///< page title (default: the sweep name)
  std::string intro;                 ///< Markdown placed after the title (setup, differences from the paper)
  std::string out;                   ///< the page (given relative to the sweep file; "": <sweep dir>/results-page.md)
  std::vector<std::string> figures;  ///< file names or * patterns in the report's figures/ to copy beside the page
  std::vector<ClaimSpec> claims;
};

/// A parsed sweep file.
struct SweepSpec {
  std::string name;                    ///< sweep folder name (default: the file's stem)
  std::string file;                    ///< the sweep file ("" when parsed from text)
  std::string base_yaml;               ///< the base config as YAML text
  std::string base_where;              ///< names the base in errors (its path, or "<file>: base")
  std::vector<std::string> overrides;  ///< the sweep's `set`, applied to every run
  std::vector<Grid> grids;             ///< grids[0] is the main grid (`axes`), then `extra`
  ReportLayout layout;
  ResultsSpec results;
};

/// One run of a sweep.
struct SweepRun {
  std::string name;                                        ///< folder name, e.g. "descending-dynamoe-mnist-s-seed0"
  std::string grid;                                        ///< "" (main grid) or the extra grid's name
  std::vector<std::pair<std::string, std::string>> axes;  ///< (axis name, label), in axis order
  std::vector<std::string> overrides;                      ///< on top of the base: sweep set, grid set, axes
};

/// Parses a sweep file's text; `file` resolves a relative `base:` path and names the file in errors.
/// Throws ConfigError (one line naming the file and the entry) on any mistake.
SweepSpec parse_sweep(const std::string& yaml_text, const std::string& file);
/// Reads and parses a sweep file.
SweepSpec load_sweep(const std::string& path);

/// A sweep from the command line (`dynamoe sweep --base CONFIG --axis KEY=V1,V2 --seeds N`): the
/// base config file, one plain axis per "KEY=V1,V2,..." in order, and with seeds > 0 the axis
/// train.seed = 0 .. seeds - 1 last. `name` "" makes "<base stem>-<axis names>". Errors (a
/// malformed axis, a key given twice, no values) are ConfigErrors naming the --axis argument.
SweepSpec command_line_sweep(const std::string& base, const std::vector<std::string>& axes, int64_t seeds,
                             const std::string& name = "");

/// The most cells (runs before exclude/only) the grids of one sweep may hold.
constexpr int64_t kMaxSweepCells = 100000;

/// Every run of the sweep, grid by grid, each grid in row-major order of its axes (the last axis
/// varies fastest). Names are unique (a duplicate is a ConfigError). Grids of more than
/// kMaxSweepCells cells in all are a ConfigError before anything is built.
std::vector<SweepRun> expand(const SweepSpec& spec);

/// Resolves every run's config (base + overrides) and validates it; the first failure is a
/// ConfigError "sweep FILE: run NAME: <what is wrong>". Returns the configs in run order.
std::vector<config::Config> resolve_runs(const SweepSpec& spec, const std::vector<SweepRun>& runs);

/// Restricts a label to characters safe in a folder name ([A-Za-z0-9._+=] kept, others '_').
std::string sanitize_label(const std::string& text);

}  // namespace dynamoe::sweep
