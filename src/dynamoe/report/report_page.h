#pragma once
// The text of report.html (HTML, CSS and the page's JavaScript) and of the node script that
// renders the same charts to SVG files. The chart specs are built by one JavaScript function
// (chart_specs_js) that both use, so a figure for a paper is the chart of the page.
#include <string>

namespace dynamoe::report {

/// The Vega-Lite spec builder: `dmCharts(R, sel)` -> [{id, title, note, spec|null}] for the
/// report data R and one selected label per select axis.
const std::string& chart_specs_js();

/// report.html: `data_json` (already safe inside a <script> element), the chart library's code
/// (may be empty: charts are then replaced by a notice) and the HTML-escaped title. A language
/// model sweep's page leads with val perplexity instead of test accuracy.
std::string report_page(const std::string& data_json, const std::string& library_js, const std::string& title,
                        bool language_model = false);

/// The node script: `node script vega.min.js vega-lite.min.js data.json out_dir` writes one SVG per
/// chart and selection and prints "wrote <file>" for each.
std::string figure_script();

}  // namespace dynamoe::report
