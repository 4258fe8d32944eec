#include "dynamoe/report/results_page.h"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <map>
#include <ostream>
#include <set>

#include "dynamoe/report/finetune_section.h"
#include "dynamoe/report/run_data.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::report {
namespace fs = std::filesystem;
namespace {

std::string today() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", std::localtime(&t));
  return buf;
}

/// Text for a Markdown table cell: '|' would end the cell.
std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

std::string p_cell(double p) { return p < 0.001 ? "< 0.001" : fmt("%.3f", p); }

std::string mean_sd(const std::string& metric, const Sample& s) {
  if (s.values.empty()) return "-";
  std::string sd;
  if (metric.find("gradnoise") != std::string::npos) {
    sd = fmt("%.2g", s.sd);
  } else if (percent_metric(metric)) {
    sd = fmt("%.2f", 100 * s.sd);
  } else {
    sd = fmt(metric == "val_perplexity" ? "%.2f" : "%.4f", s.sd);
  }
  return format_metric(metric, s.mean) + " ± " + sd;
}

std::string verdict_badge(const std::string& v) { return "**" + v + "**"; }

/// Every configuration (grid + non-seed labels) with the claims' metrics, mean +- std over seeds.
std::string configuration_table(const SweepData& data, const std::vector<std::string>& metrics) {
  struct Row {
    std::string name;
    int runs = 0, done = 0;
    std::map<std::string, std::vector<double>> values;
    int64_t params = 0;
    std::vector<double> active;
  };
  std::vector<Row> rows;
  std::map<std::string, size_t> index;
  for (const RunData& r : data.runs) {
    const std::string name = configuration_name(data, r);
    auto it = index.find(name);
    if (it == index.end()) {
      it = index.emplace(name, rows.size()).first;
      rows.emplace_back();
      rows.back().name = name;
    }
    Row& row = rows[it->second];
    ++row.runs;
    if (!r.summary) continue;
    ++row.done;
    for (const auto& m : metrics) {
      double v = 0;
      if (claim_metric(r, m, v)) row.values[m].push_back(v);
    }
    row.params = r.summary->value("parameters", int64_t{0});
    if (r.summary->contains("active_experts") && (*r.summary)["active_experts"].is_number())
      row.active.push_back((*r.summary)["active_experts"].get<double>());
  }
  std::string md = "| configuration | seeds done |";
  std::string rule = "|---|---|";
  for (const auto& m : metrics) {
    md += " " + md_cell(metric_title(m)) + " |";
    rule += "---|";
  }
  md += " parameters | active experts/token |\n" + rule + "---|---|\n";
  for (const Row& row : rows) {
    md += "| " + row.name + " | " + std::to_string(row.done) + "/" + std::to_string(row.runs) + " |";
    for (const auto& m : metrics) {
      Sample s;
      auto v = row.values.find(m);
      if (v != row.values.end()) {
        s.values = v->second;
        s.mean = mean(s.values);
        s.sd = stdev(s.values);
      }
      md += " " + mean_sd(m, s) + " |";
    }
    md += " " + (row.params > 0 ? std::to_string(row.params) : "-") + " | " +
          (row.active.empty() ? "-" : fmt("%.2f", mean(row.active))) + " |\n";
  }
  return md;
}

std::string claim_section(const ClaimResult& r, const SweepData& data) {
  const sweep::ClaimSpec& c = *r.spec;
  std::string md = "### " + c.claim + "\n\n";
  if (!c.source.empty()) md += "*Source:* " + c.source + "\n\n";
  md += "*Tested:* " + metric_title(c.metric) + " (" + (c.maximize ? "higher" : "lower") + " is better) of the " +
        (c.grid.empty() ? "main grid" : "`" + c.grid + "` grid");
  if (!c.where.empty()) {
    md += " with";
    for (const auto& [a, l] : c.where) md += " " + a + " = " + l;
  }
  md += ", " + std::to_string(r.runs) + " finished runs; " +
        (c.kind == "compare" ? "Welch's t-test per cell, the mean gain over cells against its standard error"
                             : "the ranking per cell and the interaction F-test " + c.axis + " x (" + [&] {
                                 std::string s;
                                 for (const auto& a : c.across) s += (s.empty() ? "" : ", ") + a;
                                 return s;
                               }() + ")") +
        (log_scale_metric(c.metric) ? " (on log values: gains are ratios)" : "") + ".\n\n";
  md += "**Answer: " + r.verdict + ".** " + r.answer + "\n\n";
  if (c.kind == "compare") {
    md += "| cell | " + std::string(c.better.size() > 1 ? "label | " : "") + "claimed better | " + c.than + " | gain | p |\n|---|" +
          (c.better.size() > 1 ? "---|" : "") + "---|---|---|---|\n";
    for (const auto& row : r.rows) {
      md += "| " + row.cell + " | " + (c.better.size() > 1 ? row.better + " | " : "") + mean_sd(c.metric, row.a) + " | " +
            mean_sd(c.metric, row.b) + " | " + format_gain(c.metric, row.gain, c.maximize) + " | " + p_cell(row.test.p) +
            (row.significant ? (row.gain > 0 ? " (better)" : " (worse)") : "") + " |\n";
    }
    md += "\n";
    if (c.better.size() > 1)
      for (const auto& s : r.summaries) md += "- " + s.better + " vs " + c.than + ": " + verdict_badge(s.verdict) + "\n";
  } else {
    const auto& labels = data.labels_of(c.axis);
    md += "| cell |";
    std::string rule = "|---|";
    for (const auto& l : labels) {
      md += " " + l + " |";
      rule += "---|";
    }
    md += " best | p (best vs 2nd) |" + std::string(c.expect.empty() ? "" : " claimed best |") + "\n" + rule + "---|---|" +
          (c.expect.empty() ? "" : "---|") + "\n";
    for (const auto& cell : r.cells) {
      md += "| " + cell.cell + " |";
      for (const auto& l : labels) {
        auto it = std::find_if(cell.ranked.begin(), cell.ranked.end(), [&](const Sample& s) { return s.label == l; });
        if (it == cell.ranked.end()) {
          md += " - |";
        } else {
          const bool best = it == cell.ranked.begin();
          md += std::string(" ") + (best ? "**" : "") + mean_sd(c.metric, *it) + (best ? "**" : "") + " |";
        }
      }
      md += " " + (cell.ranked.empty() ? std::string("-") : cell.ranked[0].label) + " | " +
            (cell.ranked.size() >= 2 ? p_cell(cell.best_vs_second.p) : "-") + " |" +
            (c.expect.empty() ? "" : " " + (cell.expected.empty() ? std::string("-") : cell.expected) + " |") + "\n";
    }
    md += "\n";
  }
  return md;
}

}  // namespace

ResultsPage write_results_page(const sweep::SweepSpec& spec, const std::string& dir, const ResultsPageOptions& opts) {
  ResultsPage page;
  const SweepData data = load_sweep_data(dir);
  page.path = !opts.out.empty() ? opts.out : !spec.results.out.empty() ? spec.results.out : (fs::path(dir) / "results-page.md").string();
  const fs::path out_dir = fs::path(page.path).parent_path().empty() ? fs::path(".") : fs::path(page.path).parent_path();
  const std::string fig_folder = fs::path(page.path).stem().string();  // docs/results/dynamoe.md -> docs/results/dynamoe/

  int done = 0;
  double hours = 0;
  for (const auto& r : data.runs) {
    done += r.summary.has_value();
    hours += r.seconds / 3600;
  }
  if (done < static_cast<int>(data.runs.size()))
    page.warnings.push_back(str(data.runs.size() - done, " of ", data.runs.size(), " runs are not finished: the answers use the finished ones"));

  std::vector<std::string> metrics;
  for (const auto& c : spec.results.claims) {
    page.claims.push_back(evaluate_claim(data, c));
    if (std::find(metrics.begin(), metrics.end(), c.metric) == metrics.end()) metrics.push_back(c.metric);
  }
  if (metrics.empty()) metrics.push_back("test_accuracy");

  // Figures: the report's SVGs that match the patterns, copied beside the page.
  std::vector<std::string> figure_links;
  const fs::path src = fs::path(dir) / "figures";
  std::error_code ec;
  if (!spec.results.figures.empty()) {
    std::vector<std::string> names;
    if (fs::is_directory(src, ec))
      for (const auto& e : fs::directory_iterator(src, ec))
        if (e.is_regular_file()) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    std::vector<std::string> chosen;
    for (const auto& pattern : spec.results.figures) {
      bool any = false;
      for (const auto& n : names)
        if (fnmatch(pattern.c_str(), n.c_str(), 0) == 0) {
          any = true;
          if (std::find(chosen.begin(), chosen.end(), n) == chosen.end()) chosen.push_back(n);
        }
      if (!any) page.warnings.push_back(str("no figure matches '", pattern, "' in ", src.string(), " (run `dynamoe report ", dir, "` first)"));
    }
    if (!chosen.empty()) {
      const fs::path dst = out_dir / fig_folder;
      make_dirs(dst.string());
      for (const auto& n : chosen) {
        write_file_atomic((dst / n).string(), read_file((src / n).string()));
        page.figures.push_back((dst / n).string());
        figure_links.push_back(fig_folder + "/" + n);
      }
    }
  }

  std::string md = "# " + (spec.results.title.empty() ? spec.name : spec.results.title) + "\n\n";
  md += "Generated by `" + (opts.command.empty() ? "dynamoe results " + spec.file : opts.command) + "` on " + today() +
        " from the sweep folder `" + dir + "`: " + std::to_string(done) + " of " + std::to_string(data.runs.size()) +
        " runs finished, " + fmt("%.2f", hours) + " training hours in all. Do not edit by hand: change `" + spec.file +
        "` (its `results:` section) or the runs, and generate the page again.\n\n";
  for (const auto& w : page.warnings) md += "> Note: " + w + ".\n\n";
  if (!spec.results.intro.empty()) md += spec.results.intro + (spec.results.intro.back() == '\n' ? "" : "\n") + "\n";
  if (!page.claims.empty()) {
    md += "## Answers\n\n| claim | answer |\n|---|---|\n";
    for (const auto& r : page.claims) md += "| [" + r.spec->claim + "](#" + r.spec->id + ") | " + verdict_badge(r.verdict) + " |\n";
    md += "\n";
    for (const auto& r : page.claims) md += "<a id=\"" + r.spec->id + "\"></a>\n\n" + claim_section(r, data);
  }
  md += finetune_section(data);
  md += "## Every configuration\n\nMean ± sample standard deviation over seeds; accuracy in %.\n\n" +
        configuration_table(data, metrics) + "\n";
  if (!figure_links.empty()) {
    md += "## Figures\n\nFrom `dynamoe report " + dir + "` (its report.html has every chart, with drop-down menus).\n\n";
    for (const auto& f : figure_links) md += "![" + fs::path(f).stem().string() + "](" + f + ")\n\n";
  }
  write_file_atomic(page.path, md);
  if (opts.log) {
    *opts.log << "results: " << page.path << " (" << page.claims.size() << " claims, " << page.figures.size() << " figures)\n";
    for (const auto& r : page.claims) *opts.log << "  " << r.spec->id << ": " << r.verdict << "\n";
    for (const auto& w : page.warnings) *opts.log << "results: warning: " << w << "\n";
  }
  return page;
}

}  // namespace dynamoe::report
