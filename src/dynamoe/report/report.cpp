#include "dynamoe/report/report.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <map>
#include <ostream>
#include <set>

#include "dynamoe/report/chart_library.h"
#include "dynamoe/report/gallery.h"
#include "dynamoe/report/png.h"
#include "dynamoe/report/report_page.h"
#include "dynamoe/report/run_data.h"
#include "dynamoe/report/stats.h"
#include "dynamoe/sweep/model_info.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::report {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

void say(std::ostream* log, const std::string& line) {
  if (log) *log << line << std::endl;
}

json num(double v) { return std::isfinite(v) ? json(v) : json(); }

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

/// JSON text safe inside <script type="application/json">: no "</" sequence.
std::string script_json(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<' && i + 1 < s.size() && s[i + 1] == '/') {
      out += "<\\/";
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

/// A group of runs that differ only by seed.
struct Group {
  std::string key, grid, color, facet;
  std::vector<std::string> sel;                            // one label per select axis ("*": any)
  std::vector<std::pair<std::string, std::string>> axes;  // non-seed axes
  std::vector<const RunData*> runs;
};

/// Where a run sits in the charts: colour, facet and select values (layout of the sweep).
struct Placement {
  std::string color, facet;
  std::vector<std::string> sel;
  std::string seed;
};

Placement place(const SweepData& s, const RunData& r) {
  Placement p;
  const sweep::ReportLayout& L = s.layout;
  p.color = L.color.empty() ? "" : r.label(L.color);
  if (p.color.empty()) p.color = r.grid.empty() ? "all" : r.grid;
  const std::string f = L.facet.empty() ? "" : r.label(L.facet);
  if (r.grid.empty()) {
    p.facet = f.empty() ? "all" : f;
  } else {
    p.facet = f.empty() ? r.grid : r.grid + " " + f;
  }
  for (const auto& a : L.select) {
    const std::string v = r.label(a);
    p.sel.push_back(v.empty() ? "*" : v);
  }
  p.seed = L.seed.empty() ? "" : r.label(L.seed);
  return p;
}

void add_sel(json& row, const Placement& p) {
  row["color"] = p.color;
  row["facet"] = p.facet;
  for (size_t k = 0; k < p.sel.size(); ++k) row["s" + std::to_string(k)] = p.sel[k];
}

/// The run's per-layer numbers from summary.json.
std::vector<double> summary_layer(const RunData& r, const char* field) {
  std::vector<double> out;
  if (!r.summary || !r.summary->contains("moe")) return out;
  for (const auto& L : (*r.summary)["moe"]) out.push_back(L.value(field, 0.0));
  return out;
}

/// A thumbnail's data: URI (the image as stored: uint8 [C, H, W]).
std::string thumbnail(const at::Tensor& image) {
  at::Tensor hwc = image.permute({1, 2, 0}).contiguous();  // [H, W, C]
  return png_data_uri(hwc.data_ptr<uint8_t>(), static_cast<int>(hwc.size(1)), static_cast<int>(hwc.size(0)),
                      static_cast<int>(hwc.size(2)));
}

/// The paper figure of one gallery: easy and hard rows of thumbnails with their counts.
std::string gallery_svg(const json& g) {
  const int n = static_cast<int>(std::max(g["easy"].size(), g["hard"].size()));
  const int cell = 64, img = 56, left = 70, top = 34;
  const int width = left + n * cell + 10, height = top + 2 * (cell + 30) + 10;
  std::string s = str("<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" width=\"", width,
                      "\" height=\"", height, "\" viewBox=\"0 0 ", width, " ", height,
                      "\" font-family=\"Helvetica, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
  s += str("<text x=\"8\" y=\"20\" font-size=\"14\" font-weight=\"bold\">", html_escape(g["title"].get<std::string>()),
           "</text>\n");
  // Ranked by experts per layer; when every image used the same count, by routing entropy.
  const bool constant = g["spread"]["min"].get<double>() == g["spread"]["max"].get<double>();
  const char* measure = constant ? "entropy" : "active";
  double lo = g["spread"]["min"].get<double>(), hi = g["spread"]["max"].get<double>();
  if (constant) {
    lo = 1e300;
    hi = -1e300;
    for (const char* which : {"easy", "hard"})
      for (const auto& im : g[which]) {
        lo = std::min(lo, im["entropy"].get<double>());
        hi = std::max(hi, im["entropy"].get<double>());
      }
  }
  int row = 0;
  for (const char* which : {"easy", "hard"}) {
    const int y0 = top + row * (cell + 30);
    s += str("<text x=\"8\" y=\"", y0 + img / 2 + 5, "\" font-size=\"12\">",
             row == 0 ? (constant ? "certain" : "fewest") : (constant ? "uncertain" : "most"), "</text>\n");
    int col = 0;
    for (const auto& im : g[which]) {
      const int x = left + col * cell;
      const double a = im[measure].get<double>();
      const double t = hi > lo ? (a - lo) / (hi - lo) : 0.5;
      // Frame colour from blue (fewest experts) to orange (most).
      const int rr = static_cast<int>(49 + t * (230 - 49)), gg = static_cast<int>(130 + t * (85 - 130)),
                bb = static_cast<int>(189 + t * (13 - 189));
      s += str("<rect x=\"", x - 3, "\" y=\"", y0 - 3, "\" width=\"", img + 6, "\" height=\"", img + 6, "\" fill=\"rgb(", rr,
               ",", gg, ",", bb, ")\"/>\n");
      s += str("<image x=\"", x, "\" y=\"", y0, "\" width=\"", img, "\" height=\"", img,
               "\" style=\"image-rendering:pixelated\" preserveAspectRatio=\"none\" xlink:href=\"",
               im["src"].get<std::string>(), "\"/>\n");
      const bool ok = im["label"] == im["pred"];
      s += str("<text x=\"", x + img / 2, "\" y=\"", y0 + img + 16, "\" font-size=\"10\" text-anchor=\"middle\" fill=\"",
               ok ? "#222" : "#c00", "\">", constant ? "H " : "", fmt("%.2f", a), ok ? "" : " \xE2\x9C\x97", "</text>\n");
      ++col;
    }
    ++row;
  }
  s += "</svg>\n";
  return s;
}

std::string now_text() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M", std::localtime(&t));
  return buf;
}

/// Runs node on the figure script; returns the SVG files written (or a warning in `warning`).
std::vector<std::string> render_figures(const ChartLibrary& lib, const std::string& data_path, const std::string& out_dir,
                                        std::string& warning) {
  std::vector<std::string> files;
  const std::string script = (fs::path(out_dir) / ".render-figures.js").string();
  write_file_atomic(script, figure_script());
  const std::string listing = (fs::path(out_dir) / ".figures.txt").string();
  auto quote = [](const std::string& p) {
    std::string q = "'";
    for (char c : p) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  const std::string cmd = "node " + quote(script) + " " + quote(lib.vega) + " " + quote(lib.vega_lite) + " " +
                          quote(data_path) + " " + quote(out_dir) + " > " + quote(listing) + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::string output;
  std::error_code ec;
  if (fs::exists(listing, ec)) output = read_file(listing);
  fs::remove(listing, ec);
  fs::remove(script, ec);
  std::string failures;
  for (size_t pos = 0; pos < output.size();) {
    size_t nl = output.find('\n', pos);
    if (nl == std::string::npos) nl = output.size();
    const std::string line = output.substr(pos, nl - pos);
    if (line.rfind("wrote ", 0) == 0) {
      files.push_back(line.substr(6));
    } else if (line.rfind("failed ", 0) == 0) {
      failures += (failures.empty() ? "" : "; ") + line.substr(7);
    }
    pos = nl + 1;
  }
  if (rc != 0) {
    const size_t nl = output.find('\n');
    warning = "SVG figures: " + (failures.empty() ? "node failed (" + (output.empty() ? "exit " + std::to_string(rc)
                                                                                       : output.substr(0, nl)) + ")"
                                                  : "not rendered: " + failures);
  }
  return files;
}

/// Groups of runs that differ only by seed, in sweep order, and where each run sits in the charts.
void group_runs(const SweepData& s, std::vector<Group>& groups, std::vector<Placement>& places) {
  std::map<std::string, size_t> group_of;
  for (const RunData& r : s.runs) {
    Placement p = place(s, r);
    places.push_back(p);
    std::string key = r.grid;
    std::vector<std::pair<std::string, std::string>> axes;
    for (const auto& [a, l] : r.axes)
      if (a != s.layout.seed) {
        key += "|" + a + "=" + l;
        axes.emplace_back(a, l);
      }
    auto it = group_of.find(key);
    if (it == group_of.end()) {
      it = group_of.emplace(key, groups.size()).first;
      groups.push_back({key, r.grid, p.color, p.facet, p.sel, axes, {}});
    }
    groups[it->second].runs.push_back(&r);
  }
}

/// Domains in sweep order: the colour and facet values, keeping only those that occur.
void chart_domains(const SweepData& s, const std::vector<Group>& groups, std::vector<std::string>& colors,
                   std::vector<std::string>& facets) {
  auto push_unique = [](std::vector<std::string>& v, const std::string& x) {
    if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
  };
  for (const auto& l : s.labels_of(s.layout.color)) push_unique(colors, l);
  for (const auto& l : s.labels_of(s.layout.facet)) push_unique(facets, l);
  for (const auto& g : groups) {
    push_unique(colors, g.color);
    push_unique(facets, g.facet);
  }
  // Keep only the domain values that occur.
  auto occurs = [&](const std::string& v, bool color) {
    return std::any_of(groups.begin(), groups.end(), [&](const Group& g) { return (color ? g.color : g.facet) == v; });
  };
  colors.erase(std::remove_if(colors.begin(), colors.end(), [&](const std::string& v) { return !occurs(v, true); }), colors.end());
  facets.erase(std::remove_if(facets.begin(), facets.end(), [&](const std::string& v) { return !occurs(v, false); }), facets.end());
}

/// Whether the runs are language models (some summary has a val perplexity).
bool language_models(const SweepData& s) {
  return std::any_of(s.runs.begin(), s.runs.end(),
                     [](const RunData& r) { return r.summary && r.summary->contains("val_perplexity"); });
}

/// The headline metric: val perplexity when the runs are language models, else test accuracy.
const char* headline_key(bool lm) { return lm ? "val_perplexity" : "test_accuracy"; }

/// The run's headline metric (from its summary).
double headline(const RunData& r, bool lm) { return r.summary->value(headline_key(lm), 0.0); }

/// The report data's header: title, metric, where from, layout, chart domains, selects and axes.
json report_header(const SweepData& s, const std::string& dir, const std::vector<Group>& groups, bool lm) {
  std::vector<std::string> colors, facets;
  chart_domains(s, groups, colors, facets);
  const char* metric_key = headline_key(lm);
  json R;
  R["title"] = s.name;
  R["metric"] = lm ? json{{"id", "perplexity"}, {"key", metric_key}, {"title", "val perplexity"}, {"higher", false},
                          {"percent", false}, {"loss", "val loss"}}
                   : json{{"id", "accuracy"}, {"key", metric_key}, {"title", "test accuracy"}, {"higher", true},
                          {"percent", true}, {"loss", "test loss"}};
  R["dir"] = dir;
  R["generated"] = now_text();
  R["layout"] = {{"color", s.layout.color}, {"facet", s.layout.facet}, {"seed", s.layout.seed}};
  R["colors"] = colors;
  R["facets"] = facets;
  json selects = json::array();
  for (const auto& a : s.layout.select) selects.push_back({{"axis", a}, {"labels", s.labels_of(a)}});
  R["selects"] = selects;
  json axes = json::array();
  for (const auto& a : s.axis_order)
    if (a != s.layout.seed) axes.push_back(a);
  R["axes"] = axes;
  return R;
}

/// Appends the run's training curves (test, val and train metrics) and its gradient-noise measurements.
void add_curves(json& curves, json& noise, const RunData& r, const Placement& p) {
  for (const auto& pt : r.test_accuracy) {
    json row = {{"run", r.name}, {"seed", p.seed}, {"step", pt.step}, {"metric", "test accuracy"}, {"value", pt.value}};
    add_sel(row, p);
    curves.push_back(row);
  }
  for (const auto& pt : r.test_loss) {
    json row = {{"run", r.name}, {"seed", p.seed}, {"step", pt.step}, {"metric", "test loss"}, {"value", pt.value}};
    add_sel(row, p);
    curves.push_back(row);
  }
  for (const auto& [points, metric] : {std::pair{&r.val_perplexity, "val perplexity"}, std::pair{&r.val_loss, "val loss"}})
    for (const auto& pt : *points) {
      json row = {{"run", r.name}, {"seed", p.seed}, {"step", pt.step}, {"metric", metric}, {"value", pt.value}};
      add_sel(row, p);
      curves.push_back(row);
    }
  for (const auto& pt : r.train_loss) {
    json row = {{"run", r.name}, {"seed", p.seed}, {"step", pt.step}, {"metric", "train loss"}, {"value", pt.value}};
    add_sel(row, p);
    curves.push_back(row);
  }
  for (const auto& g : r.gradnoise) {
    json row = {{"run", r.name}, {"seed", p.seed}, {"step", g.step}, {"trace", g.trace_var},
                {"ratio", num(g.mean_grad_sq > 0 ? g.trace_var / g.mean_grad_sq : std::nan(""))},
                {"moe_trace", g.moe_trace_var},
                {"moe_ratio", num(g.moe_mean_grad_sq > 0 ? g.moe_trace_var / g.moe_mean_grad_sq : std::nan(""))}};
    add_sel(row, p);
    noise.push_back(row);
  }
}

/// Appends the MoE run's active experts per layer and, if first of its chart cell, its expert loads (heatmap).
void add_layers(json& layers, json& loads, const RunData& r, const Placement& p, std::set<std::string>& heat_seen) {
  const std::string gkey = p.color + "|" + p.facet + "|" + [&] {
    std::string k;
    for (const auto& x : p.sel) k += x + "|";
    return k;
  }();
  const bool first = heat_seen.insert(gkey).second;
  for (const auto& L : (*r.summary)["moe"]) {
    const int64_t layer = L.value("layer", int64_t{0}), experts = L.value("experts", int64_t{0});
    json lr = {{"run", r.name}, {"seed", p.seed}, {"layer", layer}, {"experts", experts},
               {"active", L.value("active_mean", 0.0)}};
    add_sel(lr, p);
    layers.push_back(lr);
    if (!first) continue;
    int64_t e = 0;
    for (const auto& load : L.value("load", nlohmann::json::array())) {
      json hr = {{"run", r.name}, {"layer", layer}, {"expert", e++}, {"load", load.get<double>()},
                 {"rel", load.get<double>() * static_cast<double>(experts)}};
      add_sel(hr, p);
      loads.push_back(hr);
    }
  }
}

/// Per-run rows for the charts (values, curves, layers, loads, gradient noise) and the run counts, into `R`.
void add_run_rows(json& R, const SweepData& s, const std::vector<Placement>& places, size_t n_groups, bool lm) {
  json runs_rows = json::array(), curves = json::array(), layers = json::array(), loads = json::array(),
       noise = json::array();
  int done = 0, failed = 0;
  double hours = 0;
  std::set<std::string> heat_seen;  // one heatmap per group: its first finished run
  for (size_t i = 0; i < s.runs.size(); ++i) {
    const RunData& r = s.runs[i];
    const Placement& p = places[i];
    hours += r.seconds / 3600.0;
    done += r.summary.has_value();
    failed += r.status == "failed";
    add_curves(curves, noise, r, p);
    if (!r.summary) continue;
    json row = {{"run", r.name}, {"seed", p.seed}, {"value", headline(r, lm)},
                {"loss", r.summary->value(lm ? "val_loss" : "test_loss", 0.0)}};
    add_sel(row, p);
    runs_rows.push_back(row);
    if (r.summary->contains("moe")) add_layers(layers, loads, r, p, heat_seen);
  }
  R["counts"] = {{"runs", s.runs.size()}, {"done", done}, {"failed", failed}, {"groups", n_groups},
                 {"hours", hours}};
  R["runs"] = runs_rows;
  R["curves"] = curves;
  R["layers"] = layers;
  R["loads"] = loads;
  R["gradnoise"] = noise;
}

/// The results table's row of one group: means (and spread) over its finished runs.
json table_row(const Group& g, bool lm, std::map<std::string, std::optional<sweep::ModelInfo>>& info_cache) {
  std::vector<double> value, loss, active_params, flops, active, secs;
  std::string experts_text;
  int64_t params = 0;
  int n_done = 0;
  for (const RunData* r : g.runs) {
    secs.push_back(r->seconds);
    if (!r->summary) continue;
    ++n_done;
    value.push_back(headline(*r, lm));
    loss.push_back(r->summary->value(lm ? "val_loss" : "test_loss", 0.0));
    params = r->summary->value("parameters", int64_t{0});
    const std::vector<double> act = summary_layer(*r, "active_mean");
    if (!act.empty()) active.push_back(r->summary->value("active_experts", mean(act)));
    if (experts_text.empty()) {
      for (double e : summary_layer(*r, "experts")) experts_text += (experts_text.empty() ? "" : " ") + fmt("%.0f", e);
    }
    if (!r->config) continue;
    auto it = info_cache.find(g.key);
    if (it == info_cache.end()) it = info_cache.emplace(g.key, sweep::model_info(*r->config)).first;
    const auto& info = it->second;
    if (!info) continue;
    active_params.push_back(info->active_parameters(act));
    if (!info->convolutional) {
      double f = 2.0 * static_cast<double>(info->dense_parameters);
      for (double x : summary_layer(*r, "flops_per_token")) f += x;
      flops.push_back(f);
    }
  }
  json axes_obj = json::object();
  for (const auto& [a, l] : g.axes) axes_obj[a] = l;
  json row = {{"key", g.key},
              {"grid", g.grid},
              {"axes", axes_obj},
              {"color", g.color},
              {"facet", g.facet},
              {"n", n_done},
              {"runs", g.runs.size()},
              {"value_mean", num(mean(value))},
              {"values", value},
              {"value_std", num(value.empty() ? std::nan("") : stdev(value))},
              {"loss_mean", num(mean(loss))},
              {"params", params > 0 ? json(params) : json()},
              {"active_params", num(mean(active_params))},
              {"flops", num(mean(flops))},
              {"active_experts", num(mean(active))},
              {"experts", experts_text},
              {"seconds", num(mean(secs))}};
  for (size_t k = 0; k < g.sel.size(); ++k) row["s" + std::to_string(k)] = g.sel[k];
  return row;
}

/// Results table: one row per group.
json results_table(const std::vector<Group>& groups, bool lm) {
  json table = json::array();
  std::map<std::string, std::optional<sweep::ModelInfo>> info_cache;
  for (const Group& g : groups) table.push_back(table_row(g, lm, info_cache));
  // The best mean within each select combination: "best" where it beats the runner-up by Welch's
  // test at p < 0.05, else "tied" (best_p: that p).
  std::map<std::string, std::vector<size_t>> by_select;
  for (size_t i = 0; i < table.size(); ++i) {
    std::string key;
    for (size_t k = 0; table[i].contains("s" + std::to_string(k)); ++k) key += table[i]["s" + std::to_string(k)].dump() + "|";
    by_select[key].push_back(i);
  }
  for (const auto& [key, rows] : by_select) {
    std::vector<std::vector<double>> samples;
    for (size_t i : rows) samples.push_back(table[i]["values"].get<std::vector<double>>());
    const BestOf b = best_of(samples, /*higher=*/!lm);
    if (b.best < 0) continue;
    json& row = table[rows[static_cast<size_t>(b.best)]];
    row["best"] = b.significant ? "best" : "tied";
    row["best_p"] = b.p;
  }
  return table;
}

/// The group's run shown in the gallery: its first finished, dynamically routed MoE run (nullptr: none).
const RunData* gallery_run(const Group& g) {
  const RunData* pick = nullptr;
  for (const RunData* r : g.runs)
    if (r->summary && r->config && r->config->model.kind.rfind("moe_", 0) == 0 && r->config->moe.router.kind() != "top_k") {
      pick = r;
      break;
    }
  return pick;
}

/// Per class: mean active experts, mean entropy and accuracy.
json class_rows(const ImageRouting& ir, const std::vector<std::string>& names, int64_t classes) {
  std::vector<double> a_sum(classes, 0), h_sum(classes, 0), n_c(classes, 0), ok(classes, 0);
  for (size_t k = 0; k < ir.labels.size(); ++k) {
    const int64_t c = ir.labels[k];
    a_sum[c] += ir.active[k];
    h_sum[c] += ir.entropy[k];
    n_c[c] += 1;
    ok[c] += ir.labels[k] == ir.predictions[k];
  }
  json by_class = json::array();
  for (int64_t c = 0; c < classes; ++c)
    if (n_c[c] > 0)
      by_class.push_back({{"class", names[c]}, {"active", a_sum[c] / n_c[c]}, {"entropy", h_sum[c] / n_c[c]},
                          {"accuracy", ok[c] / n_c[c]}, {"images", n_c[c]}});
  return by_class;
}

/// The gallery's title: the group's colour, its facet and select values (but "all" and "*").
std::string gallery_title(const Group& g) {
  std::string title = g.color;
  if (g.facet != "all") title = g.facet + " \xC2\xB7 " + title;
  for (const auto& x : g.sel)
    if (x != "*") title += " \xC2\xB7 " + x;
  return title;
}

/// One group's gallery: easiest and hardest test images of `pick`, numbers per class, accuracy of the halves.
json gallery_item(const Group& g, const RunData* pick, const ImageRouting& ir, int64_t n_images) {
  auto [easy, hard] = easy_and_hard(ir, n_images);
  const int64_t classes = ir.labels.empty() ? 0 : *std::max_element(ir.labels.begin(), ir.labels.end()) + 1;
  const std::vector<std::string> names = class_names(ir.dataset, std::max<int64_t>(classes, 1));
  auto image_json = [&](int64_t k) {
    return json{{"src", thumbnail(ir.images[k])}, {"label", names[ir.labels[k]]}, {"pred", names[ir.predictions[k]]},
                {"active", ir.active[k]}, {"entropy", ir.entropy[k]}, {"index", k}};
  };
  json e = json::array(), h = json::array();
  for (int64_t k : easy) e.push_back(image_json(k));
  for (int64_t k : hard) h.push_back(image_json(k));
  const json by_class = class_rows(ir, names, classes);
  // Accuracy of the easiest and hardest halves (ranked as in the gallery).
  auto [easy_half, hard_half] = easy_and_hard(ir, static_cast<int64_t>(ir.labels.size()) / 2);
  auto accuracy_of = [&](const std::vector<int64_t>& idx) {
    double c = 0;
    for (int64_t k : idx) c += ir.labels[k] == ir.predictions[k];
    return idx.empty() ? 0.0 : c / static_cast<double>(idx.size());
  };
  const auto [amin, amax] = std::minmax_element(ir.active.begin(), ir.active.end());
  const std::string title = gallery_title(g);
  json item = {{"title", title},
               {"run", pick->name},
               {"router", pick->config->moe.router.kind()},
               {"layers", ir.active_per_layer.size()},
               {"images", ir.labels.size()},
               {"spread", {{"min", *amin}, {"max", *amax}, {"mean", mean(ir.active)}}},
               {"easy_half_accuracy", accuracy_of(easy_half)},
               {"hard_half_accuracy", accuracy_of(hard_half)},
               {"easy", e},
               {"hard", h},
               {"by_class", by_class}};
  return item;
}

/// Gallery: dynamically routed MoE groups (a fixed top-k has nothing to rank by count).
json gallery_rows(const SweepData& s, const std::vector<Group>& groups, const std::vector<Placement>& places,
                  const ReportOptions& opts, std::vector<std::string>& warnings) {
  json gallery = json::array();
  for (const Group& g : groups) {
    const RunData* pick = gallery_run(g);
    if (!pick) continue;
    ImageRouting ir;
    try {
      ir = route_test_set(pick->dir);
    } catch (const std::exception& e) {
      warnings.push_back("gallery: " + pick->name + ": " + e.what());
      continue;
    }
    say(opts.log, "report: gallery of " + pick->name + " (" + std::to_string(ir.labels.size()) + " test images)");
    json item = gallery_item(g, pick, ir, opts.gallery_images);
    add_sel(item, places[static_cast<size_t>(pick - s.runs.data())]);
    gallery.push_back(item);
  }
  return gallery;
}

/// Chart library, inlined: its code, and `lib` ("" and a warning when it cannot be fetched).
std::string inline_library(const ReportOptions& opts, std::optional<ChartLibrary>& lib,
                           std::vector<std::string>& warnings) {
  std::string library_js;
  try {
    lib = chart_library(opts.library_dir, opts.log);
    library_js = read_file(lib->vega) + "\n" + read_file(lib->vega_lite) + "\n" + read_file(lib->vega_embed) + "\n";
    // Nothing inside a <script> element may close it.
    for (size_t at = library_js.find("</script"); at != std::string::npos; at = library_js.find("</script", at + 2))
      library_js.replace(at, 2, "<\\/");
  } catch (const Error& e) {
    warnings.push_back(str("charts left out: the chart library could not be fetched (", e.what(), ")"));
  }
  return library_js;
}

/// Figures for papers: the galleries' SVGs, then the charts' (rendered with node when `lib` is at hand).
void write_figures(const json& gallery, const json& R, const std::optional<ChartLibrary>& lib, const fs::path& fig_dir,
                   ReportResult& result) {
  std::vector<std::string>& warnings = result.warnings;
  for (const auto& g : gallery) {
    const std::string file = (fig_dir / ("gallery-" + g["run"].get<std::string>() + ".svg")).string();
    write_file_atomic(file, gallery_svg(g));
    result.figures.push_back(file);
  }
  if (lib) {
    const std::string data_path = (fig_dir / ".report-data.json").string();
    json lean = R;
    lean.erase("gallery");
    write_file_atomic(data_path, lean.dump());
    std::string warning;
    const auto svgs = render_figures(*lib, data_path, fig_dir.string(), warning);
    std::error_code ec;
    fs::remove(data_path, ec);
    if (!warning.empty()) warnings.push_back(warning);
    result.figures.insert(result.figures.end(), svgs.begin(), svgs.end());
  }
}

/// results.md: the results table in Markdown.
std::string results_markdown(const json& table, bool lm) {
  std::string md = str("| configuration | seeds | ", lm ? "val perplexity" : "test accuracy (%)",
                       " | parameters | active parameters | FLOPs/", lm ? "token" : "example",
                       " | active experts/token | experts per layer |\n|---|---|---|---|---|---|---|---|\n");
  const double scale = lm ? 1 : 100;
  for (const auto& row : table) {
    std::string name = row["grid"].get<std::string>();
    for (const auto& [a, l] : row["axes"].items()) name += (name.empty() ? "" : " ") + l.get<std::string>();
    auto n0 = [](const json& v, const char* f) { return v.is_null() ? std::string("-") : fmt(f, v.get<double>()); };
    md += "| " + name + " | " + std::to_string(row["n"].get<int>()) + " | " +
          (row["value_mean"].is_null() ? "-" : fmt("%.2f", scale * row["value_mean"].get<double>()) + " ± " +
                                                   fmt("%.2f", scale * row["value_std"].get<double>())) +
          " | " + n0(row["params"], "%.0f") + " | " + n0(row["active_params"], "%.0f") + " | " + n0(row["flops"], "%.3g") +
          " | " + n0(row["active_experts"], "%.2f") + " | " + row["experts"].get<std::string>() + " |\n";
  }
  return md;
}

/// results.json and results.md: the table, for other tools and for docs.
void write_results(const fs::path& out_dir, const SweepData& s, const json& R, const json& table, bool lm) {
  write_file_atomic((out_dir / "results.json").string(),
                    json{{"sweep", s.name}, {"layout", R["layout"]}, {"metric", R["metric"]}, {"table", table}}.dump(2) + "\n");
  write_file_atomic((out_dir / "results.md").string(), results_markdown(table, lm));
}

}  // namespace

ReportResult write_report(const std::string& dir, const ReportOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  ReportResult result;
  SweepData s = load_sweep_data(dir);
  const std::string html_path = opts.out.empty() ? (fs::path(dir) / "report.html").string() : opts.out;
  const fs::path out_dir = fs::path(html_path).parent_path().empty() ? fs::path(".") : fs::path(html_path).parent_path();
  const fs::path fig_dir = out_dir / "figures";
  std::vector<std::string>& warnings = result.warnings;
  result.runs = static_cast<int>(s.runs.size());

  std::vector<Group> groups;
  std::vector<Placement> places;
  group_runs(s, groups, places);
  result.groups = static_cast<int>(groups.size());

  const bool lm = language_models(s);
  json R = report_header(s, dir, groups, lm);
  add_run_rows(R, s, places, groups.size(), lm);
  const json table = results_table(groups, lm);
  R["table"] = table;
  const json gallery = opts.gallery ? gallery_rows(s, groups, places, opts, warnings) : json::array();
  R["gallery"] = gallery;

  std::optional<ChartLibrary> lib;
  const std::string library_js = inline_library(opts, lib, warnings);

  make_dirs(fig_dir.string());
  if (opts.figures) write_figures(gallery, R, lib, fig_dir, result);
  R["warnings"] = warnings;
  json figure_names = json::array();
  for (const auto& f : result.figures) figure_names.push_back(fs::relative(f, out_dir).string());
  R["figures"] = figure_names;

  write_results(out_dir, s, R, table, lm);

  write_file_atomic(html_path, report_page(script_json(R), library_js, html_escape(s.name), lm));
  result.html = html_path;
  say(opts.log, str("report: ", html_path, " (", s.runs.size(), " runs in ", groups.size(), " configurations, ",
                    result.figures.size(), " figures in ", fig_dir.string(), ", ",
                    fmt("%.1f", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()), " s)"));
  for (const auto& w : warnings) say(opts.log, "report: warning: " + w);
  return result;
}

}  // namespace dynamoe::report
