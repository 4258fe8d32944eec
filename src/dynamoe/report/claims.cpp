#include "dynamoe/report/claims.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "dynamoe/util/error.h"

namespace dynamoe::report {
namespace {

constexpr double kAlpha = 0.05;

std::string p_text(double p) { return p < 0.001 ? "p < 0.001" : "p = " + fmt("%.3f", p); }

bool matches(const sweep::CellMatch& where, const RunData& r) {
  for (const auto& [axis, label] : where)
    if (r.label(axis) != label) return false;
  return true;
}

Sample make_sample(const std::string& label, std::vector<double> values) {
  Sample s;
  s.label = label;
  s.values = std::move(values);
  s.mean = mean(s.values);
  s.sd = stdev(s.values);
  return s;
}

std::vector<double> transformed(const std::string& metric, const std::vector<double>& v) {
  if (!log_scale_metric(metric)) return v;
  std::vector<double> out;
  for (double x : v) out.push_back(std::log(std::max(x, 1e-300)));
  return out;
}

/// Finished runs of the claim's grid, by cell (the labels of the axes other than `axis` and
/// the seed, in axis order) and label of `axis`.
struct Table {
  std::vector<std::string> cell_order;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> cell_axes;
  std::map<std::string, std::map<std::string, std::vector<double>>> values;  // cell -> label -> values
  int runs = 0;
};

Table collect(const SweepData& data, const sweep::ClaimSpec& c) {
  Table t;
  const std::string& seed = data.layout.seed;
  for (const RunData& r : data.runs) {
    if (r.grid != c.grid || !r.summary || !matches(c.where, r)) continue;
    double v = 0;
    if (!claim_metric(r, c.metric, v)) continue;
    const std::string label = r.label(c.axis);
    if (label.empty()) continue;
    std::string key;
    std::vector<std::pair<std::string, std::string>> axes;
    for (const auto& [a, l] : r.axes) {
      if (a == seed || a == c.axis || c.where.count(a)) continue;
      key += (key.empty() ? "" : ", ") + l;
      axes.emplace_back(a, l);
    }
    if (key.empty()) key = "all";
    if (!t.values.count(key)) {
      t.cell_order.push_back(key);
      t.cell_axes[key] = axes;
    }
    t.values[key][label].push_back(v);
    ++t.runs;
  }
  return t;
}

/// format_gain with its unit: "x0.950 (-5.0%)", "+0.12 points".
std::string gain_text(const std::string& metric, double gain, bool maximize) {
  if (log_scale_metric(metric))
    return format_gain(metric, gain, maximize) + " (" + fmt("%+.1f", 100 * (std::exp(maximize ? gain : -gain) - 1)) + "%)";
  return format_gain(metric, gain, maximize) + (metric == "test_accuracy" ? " points" : "");
}

void evaluate_compare(const Table& t, const sweep::ClaimSpec& c, ClaimResult& out) {
  const double sign = c.maximize ? 1 : -1;
  for (const std::string& better : c.better) {
    CompareSummary s;
    s.better = better;
    double sum_gain = 0, sum_var = 0, df_den = 0;
    s.best_gain = -1e300;
    s.worst_gain = 1e300;
    for (const std::string& cell : t.cell_order) {
      const auto& by_label = t.values.at(cell);
      auto ia = by_label.find(better), ib = by_label.find(c.than);
      if (ia == by_label.end() || ib == by_label.end()) continue;
      CompareRow row;
      row.cell = cell;
      row.better = better;
      row.a = make_sample(better, ia->second);
      row.b = make_sample(c.than, ib->second);
      const std::vector<double> xa = transformed(c.metric, row.a.values), xb = transformed(c.metric, row.b.values);
      row.test = welch_test(xa, xb);
      row.gain = sign * row.test.diff;
      row.significant = row.test.p < kAlpha;
      if (xa.size() >= 2 && xb.size() >= 2) {
        const double va = stdev(xa) * stdev(xa) / xa.size(), vb = stdev(xb) * stdev(xb) / xb.size();
        sum_gain += row.gain;
        sum_var += va + vb;
        df_den += va * va / (xa.size() - 1) + vb * vb / (xb.size() - 1);
        ++s.cells;
        s.better_significant += row.significant && row.gain > 0;
        s.worse_significant += row.significant && row.gain < 0;
        if (row.gain > s.best_gain) {
          s.best_gain = row.gain;
          s.best_cell = cell;
        }
        if (row.gain < s.worst_gain) {
          s.worst_gain = row.gain;
          s.worst_cell = cell;
        }
      }
      out.rows.push_back(row);
    }
    if (s.cells == 0) {
      s.verdict = "no data";
      out.summaries.push_back(s);
      continue;
    }
    const double C = s.cells;
    s.gain = sum_gain / C;
    s.gain_se = std::sqrt(sum_var) / C;
    if (s.gain_se > 0) {
      s.df = df_den > 0 ? sum_var * sum_var / df_den : 0;
      s.p = student_t_p(s.gain / s.gain_se, s.df);
    } else {
      s.p = s.gain == 0 ? 1 : 0;
    }
    s.verdict = s.p < kAlpha ? (s.gain > 0 ? "confirmed" : "refuted") : "not distinguishable from noise";
    out.summaries.push_back(s);
  }
  // The claim's verdict and its plain answer.
  std::set<std::string> verdicts;
  for (const auto& s : out.summaries) verdicts.insert(s.verdict);
  out.verdict = verdicts.size() == 1 ? *verdicts.begin() : "mixed";
  const std::string what = metric_title(c.metric);
  for (const auto& s : out.summaries) {
    if (!out.answer.empty()) out.answer += " ";
    if (s.cells == 0) {
      out.answer += str(s.better, " vs ", c.than, ": no cell has two finished runs of each.");
      continue;
    }
    std::string v = s.verdict;
    v[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(v[0])));
    out.answer += str(v, " for ", s.better, " vs ", c.than, ": over ", s.cells, s.cells == 1 ? " cell" : " cells", ", ",
                      s.better, " changes ", what, " by ", gain_text(c.metric, s.gain, c.maximize), " on average (standard error ",
                      log_scale_metric(c.metric) ? fmt("%.3f", s.gain_se) + " in log units"
                                                 : (percent_metric(c.metric) ? fmt("%.2f", 100 * s.gain_se) + " points"
                                                                                 : fmt("%.4f", s.gain_se)),
                      ", ", p_text(s.p), "); better at p < 0.05 in ", s.better_significant, ", worse in ",
                      s.worse_significant, "; from ", gain_text(c.metric, s.worst_gain, c.maximize), " (", s.worst_cell,
                      ") to ", gain_text(c.metric, s.best_gain, c.maximize), " (", s.best_cell, ").");
  }
}

/// The cells of a best claim, each with its labels ranked best first, and the strata they fall in.
void rank_cells(const Table& t, const sweep::ClaimSpec& c, ClaimResult& out, std::vector<std::string>& stratum_order,
                std::map<std::string, std::vector<size_t>>& stratum_cells) {
  const double sign = c.maximize ? 1 : -1;
  std::set<std::string> across(c.across.begin(), c.across.end());
  for (const std::string& cell : t.cell_order) {
    BestCell b;
    b.cell = cell;
    for (const auto& [a, l] : t.cell_axes.at(cell)) {
      std::string& part = across.count(a) ? b.across : b.stratum;
      part += (part.empty() ? "" : ", ") + l;
    }
    for (const auto& [label, values] : t.values.at(cell)) b.ranked.push_back(make_sample(label, values));
    std::sort(b.ranked.begin(), b.ranked.end(), [&](const Sample& x, const Sample& y) { return sign * x.mean > sign * y.mean; });
    if (b.ranked.size() >= 2)
      b.best_vs_second = welch_test(transformed(c.metric, b.ranked[0].values), transformed(c.metric, b.ranked[1].values));
    if (!c.expect.empty()) {
      auto e = c.expect.find(b.across);
      if (e != c.expect.end()) b.expected = e->second;
    }
    if (!stratum_cells.count(b.stratum)) stratum_order.push_back(b.stratum);
    stratum_cells[b.stratum].push_back(out.cells.size());
    out.cells.push_back(std::move(b));
  }
}

/// Labels present with at least one value in every cell of the stratum (cells `idx`), in axis order.
std::vector<std::string> labels_everywhere(const Table& t, const ClaimResult& out, const std::vector<size_t>& idx,
                                           const std::vector<std::string>& axis_labels) {
  std::vector<std::string> labels;
  for (const auto& l : axis_labels) {
    bool everywhere = true;
    for (size_t i : idx) {
      const auto& vals = t.values.at(out.cells[i].cell);
      everywhere = everywhere && vals.count(l) && !vals.at(l).empty();
    }
    if (everywhere) labels.push_back(l);
  }
  return labels;
}

/// The label x across interaction test of a stratum (cells `idx`) into bs.test; false when too few values to test.
bool test_interaction(const Table& t, const sweep::ClaimSpec& c, const ClaimResult& out, const std::vector<size_t>& idx,
                      const std::vector<std::string>& labels, BestStratum& bs) {
  bool tested = false;
  if (labels.size() >= 2 && idx.size() >= 2) {
    std::vector<std::vector<std::vector<double>>> cells(labels.size(), std::vector<std::vector<double>>(idx.size()));
    size_t total = 0;
    for (size_t a = 0; a < labels.size(); ++a)
      for (size_t b = 0; b < idx.size(); ++b) {
        cells[a][b] = transformed(c.metric, t.values.at(out.cells[idx[b]].cell).at(labels[a]));
        total += cells[a][b].size();
      }
    if (total > labels.size() * idx.size()) {
      bs.test = interaction_test(cells);
      tested = true;
    }
  }
  return tested;
}

/// Plain text: how often each label is best in the stratum `st` (of `n_cells` cells), and the test.
std::string stratum_text(const sweep::ClaimSpec& c, const std::string& st, const BestStratum& bs, size_t n_cells,
                         const std::vector<std::string>& axis_labels, bool tested) {
  std::map<std::string, int> count;
  for (const auto& b : bs.bests) ++count[b];
  std::string tally;
  for (const auto& l : axis_labels)
    if (count.count(l)) tally += (tally.empty() ? "" : ", ") + l + " in " + std::to_string(count[l]);
  std::string text = str(st.empty() ? "" : st + ": ", "best ", c.axis, " ", tally, " of ", n_cells, " cells");
  if (tested)
    text += str("; ", c.axis, " x (", [&] {
                  std::string s;
                  for (const auto& a : c.across) s += (s.empty() ? "" : ", ") + a;
                  return s;
                }(),
                ") interaction F(", fmt("%.0f", bs.test.df_interaction), ", ", fmt("%.0f", bs.test.df_error), ") = ",
                fmt("%.2f", bs.test.f), ", ", p_text(bs.test.p), ", main effect of ", c.axis, " ", p_text(bs.test.p_main_a));
  text += ". ";
  return text;
}

/// How often the claimed best is the best: "The claimed best matches in <hits> of <cells> cells."
std::string expected_text(const ClaimResult& out) {
  int n = 0, hit = 0;
  for (const auto& b : out.cells)
    if (!b.expected.empty()) {
      ++n;
      hit += !b.ranked.empty() && b.ranked[0].label == b.expected;
    }
  return str("The claimed best matches in ", hit, " of ", n, " cells.");
}

void evaluate_best(const Table& t, const sweep::ClaimSpec& c, const SweepData& data, ClaimResult& out) {
  std::vector<std::string> stratum_order;
  std::map<std::string, std::vector<size_t>> stratum_cells;
  rank_cells(t, c, out, stratum_order, stratum_cells);
  // Labels in axis order (as the sweep lists them).
  const std::vector<std::string>& axis_labels = data.labels_of(c.axis);
  const double alpha = kAlpha / std::max<size_t>(1, stratum_order.size());
  bool any_dependent = false, all_same_best = true, all_main = true;
  std::string common_best;
  std::string text;
  for (const std::string& st : stratum_order) {
    BestStratum bs;
    bs.stratum = st;
    const auto& idx = stratum_cells[st];
    const std::vector<std::string> labels = labels_everywhere(t, out, idx, axis_labels);
    std::set<std::string> bests;
    for (size_t i : idx) {
      bs.bests.push_back(out.cells[i].ranked.empty() ? "" : out.cells[i].ranked[0].label);
      bests.insert(bs.bests.back());
    }
    const bool tested = test_interaction(t, c, out, idx, labels, bs);
    const bool inter = tested && bs.test.p < alpha;
    any_dependent = any_dependent || (inter && bests.size() > 1);
    if (bests.size() != 1 || (!common_best.empty() && common_best != *bests.begin())) all_same_best = false;
    if (bests.size() == 1 && common_best.empty()) common_best = *bests.begin();
    all_main = all_main && tested && bs.test.p_main_a < alpha && !inter;
    text += stratum_text(c, st, bs, idx.size(), axis_labels, tested);
    out.strata.push_back(std::move(bs));
  }
  if (out.cells.empty()) {
    out.verdict = "no data";
    out.answer = "No finished runs.";
    return;
  }
  if (any_dependent) {
    out.verdict = "confirmed";
  } else if (all_same_best && all_main) {
    out.verdict = "refuted";
  } else {
    out.verdict = "not distinguishable from noise";
  }
  std::string v = out.verdict;
  v[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(v[0])));
  out.answer = v + ". " + text;
  if (stratum_order.size() > 1) out.answer += str("(Significance at p < ", fmt("%.3f", alpha), ": 0.05 over ", stratum_order.size(), " strata.) ");
  if (!c.expect.empty()) out.answer += expected_text(out);
  while (!out.answer.empty() && out.answer.back() == ' ') out.answer.pop_back();
}

}  // namespace

bool log_scale_metric(const std::string& metric) {
  return metric.find("gradnoise") != std::string::npos || metric == "val_perplexity";
}

bool percent_metric(const std::string& metric) {
  return metric == "test_accuracy" || metric == "mc_accuracy" || metric == "mc_accuracy_norm";
}

bool claim_metric(const RunData& run, const std::string& metric, double& value) {
  if (metric.find("gradnoise") != std::string::npos) {
    const bool moe = metric.rfind("moe_", 0) == 0, ratio = metric.find("ratio") != std::string::npos;
    std::vector<double> v;
    for (const auto& g : run.gradnoise) {
      const double tv = moe ? g.moe_trace_var : g.trace_var, mg = moe ? g.moe_mean_grad_sq : g.mean_grad_sq;
      if (ratio && mg <= 0) continue;
      v.push_back(ratio ? tv / mg : tv);
    }
    if (v.empty()) return false;
    value = mean(v);  // over the measurements of the run (the same steps in every run of a sweep)
    return std::isfinite(value) && value > 0;
  }
  if (!run.summary || !run.summary->contains(metric) || !(*run.summary)[metric].is_number()) return false;
  value = (*run.summary)[metric].get<double>();
  return std::isfinite(value);
}

std::string format_metric(const std::string& metric, double value) {
  if (percent_metric(metric)) return fmt("%.2f", 100 * value);
  if (metric.find("gradnoise") != std::string::npos) return fmt("%.3g", value);
  if (metric == "val_perplexity") return fmt("%.2f", value);
  return fmt("%.4f", value);
}

std::string format_gain(const std::string& metric, double gain, bool maximize) {
  // gain = log(than) - log(better) when lower is better: the ratio better / than is exp(-gain)
  if (log_scale_metric(metric)) return "x" + fmt("%.3f", std::exp(maximize ? gain : -gain));
  if (percent_metric(metric)) return fmt("%+.2f", 100 * gain);
  return fmt("%+.4f", gain);
}

std::string metric_title(const std::string& metric) {
  static const std::map<std::string, std::string> titles = {
      {"test_accuracy", "test accuracy (%)"},
      {"test_loss", "test loss"},
      {"val_perplexity", "val perplexity"},
      {"val_loss", "val loss (nats/token)"},
      {"val_bits_per_byte", "val bits per byte"},
      {"gradnoise_trace", "gradient noise tr Var(g)"},
      {"gradnoise_ratio", "gradient noise tr Var(g) / |mean g|^2"},
      {"moe_gradnoise_trace", "MoE-layer gradient noise tr Var(g)"},
      {"moe_gradnoise_ratio", "MoE-layer gradient noise tr Var(g) / |mean g|^2"},
      {"mc_accuracy", "multiple-choice accuracy (%)"},
      {"mc_accuracy_norm", "length-normalised multiple-choice accuracy (%)"},
      {"all_experts_fraction", "fraction of tokens sent to every expert"},
      {"routing_mi", "routing mutual information with the domain (normalised)"}};
  auto it = titles.find(metric);
  return it == titles.end() ? metric : it->second;
}

ClaimResult evaluate_claim(const SweepData& data, const sweep::ClaimSpec& claim) {
  ClaimResult out;
  out.spec = &claim;
  const Table t = collect(data, claim);
  out.runs = t.runs;
  if (t.runs == 0) {
    out.verdict = "no data";
    out.answer = "No finished run has this metric.";
    return out;
  }
  if (claim.kind == "compare") {
    evaluate_compare(t, claim, out);
  } else {
    evaluate_best(t, claim, data, out);
  }
  return out;
}

}  // namespace dynamoe::report
