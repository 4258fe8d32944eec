// dynamoe report: a self-contained report.html (and SVG figures) for a sweep folder.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "dynamoe/report/report.h"
#include "dynamoe/train/trainer.h"

namespace dynamoe::cli {
namespace {

int run(const ParsedArgs& a) {
  if (a.positionals().size() != 1) throw UsageError("dynamoe report: one sweep folder DIR is required; see dynamoe report --help");
  report::ReportOptions opts;
  opts.out = a.get("out");
  if (a.has("library-dir")) opts.library_dir = a.get("library-dir");
  opts.gallery = !a.has("no-gallery");
  opts.figures = !a.has("no-figures");
  opts.gallery_images = a.get_int("gallery-images", 12, 1);
  opts.log = &std::cout;
  train::set_threads(a.get_int("threads", 0, 0));
  report::write_report(a.positionals()[0], opts);
  return 0;
}

}  // namespace

Command report_command() {
  return {{"report",
           "write report.html (charts, tables, image gallery) and SVG figures for a sweep folder",
           "dynamoe report DIR [--out FILE] [--no-gallery] [--no-figures] [--gallery-images N] [--library-dir DIR]\n"
           "       [--threads N]",
           "DIR is a sweep folder (with sweep.json), any folder of run folders, or one run folder.\n"
           "report.html opens without a network: Vega, Vega-Lite and vega-embed (fetched once with npm into --library-dir) and the\n"
           "images are inside it. It shows the results table (mean +- std over seeds, parameters, active\n"
           "parameters, FLOPs per example, active experts), accuracy, training curves, experts per layer\n"
           "against active experts per token, expert-load heatmaps, gradient noise, and the test images\n"
           "that activated the fewest and the most experts (dynamically routed runs, from their final\n"
           "checkpoint). figures/*.svg (rendered with node), results.json and results.md go beside it.\n"
           "See docs/sweeps.md.",
           {{"out", "FILE", "where to write the page (default DIR/report.html)"},
            {"no-gallery", "", "skip the per-image gallery (no checkpoint is evaluated)"},
            {"no-figures", "", "skip the SVG figures"},
            {"gallery-images", "N", "easiest and hardest images shown per configuration (default 12)"},
            {"library-dir", "DIR", "cache of the chart library (default data/vega)"},
            {"threads", "N", "threads for evaluating checkpoints (default: all cores)"}},
           1},
          run};
}

}  // namespace dynamoe::cli
