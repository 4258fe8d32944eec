#pragma once
// dynamoe report: one self-contained report.html for a sweep folder (the chart library inlined,
// images as data: URIs) plus figures for papers (SVG) and the results table as JSON and Markdown.
//
//   ReportResult r = write_report("runs/dynamoe-quick", {});
//   // runs/dynamoe-quick/report.html, figures/*.svg, results.json, results.md
//
// Contents (docs/sweeps.md): results table (mean +- std over seeds), accuracy by configuration,
// training curves, experts per layer (schedule) against active experts per token (router),
// expert-load heatmaps, gradient noise over training, and a gallery of test images ranked by
// the experts they activated (dynamic routers).
#include <iosfwd>
#include <string>
#include <vector>

namespace dynamoe::report {

struct ReportOptions {
  std::string out;              ///< report.html path ("": <dir>/report.html); figures/ and results.* go beside it
  std::string library_dir = "data/vega";  ///< cache of the chart library (fetched with npm on first use)
  bool gallery = true;          ///< evaluate checkpoints for the per-image gallery
  bool figures = true;          ///< SVG figures (rendered with node; the gallery's written directly)
  int64_t gallery_images = 12;  ///< easiest and hardest images shown per configuration
  std::ostream* log = nullptr;  ///< progress lines (nullptr: silent)
};

struct ReportResult {
  std::string html;                   ///< the report.html written
  std::vector<std::string> figures;   ///< SVG files written
  std::vector<std::string> warnings;  ///< what was left out and why (also shown in the report)
  int runs = 0, groups = 0;
};

/// Reads the sweep folder `dir` (run_data.h) and writes the report. Throws dynamoe::Error when
/// the folder holds no run or a file cannot be written; a missing piece (no node for the
/// figures, a run without checkpoint for the gallery, no network for the chart library) is a
/// warning, not an error.
ReportResult write_report(const std::string& dir, const ReportOptions& opts);

}  // namespace dynamoe::report
