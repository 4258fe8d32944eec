#include "dynamoe/sweep/sweep_spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <set>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::sweep {
namespace fs = std::filesystem;
namespace {

/// Errors name the sweep file and, when known, the line.
struct Context {
  std::string file;
  std::string at(const YAML::Node& n) const {
    const YAML::Mark m = n.Mark();
    return m.line >= 0 ? str(file, ":", m.line + 1) : file;
  }
  [[noreturn]] void fail(const YAML::Node& n, const std::string& what) const {
    throw ConfigError(str("sweep ", at(n), ": ", what));
  }
};

/// A YAML value as the text `--set key=value` takes: scalars as written, the rest in flow style.
std::string value_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsNull()) return "null";
  YAML::Emitter e;
  e << YAML::Flow << n;
  return e.c_str();
}

/// A label from a value: lists joined with 'x' ([64, 32] -> "64x32").
std::string value_label(const YAML::Node& n) {
  if (n.IsSequence()) {
    std::string out;
    for (const auto& v : n) out += (out.empty() ? "" : "x") + value_label(v);
    return out;
  }
  return n.IsScalar() ? n.Scalar() : value_text(n);
}

/// Flattens a mapping of overrides ({model: {d_model: 32}} or {model.d_model: 32}) into "key=value".
void flatten(const YAML::Node& map, const std::string& prefix, std::vector<std::string>& out, const Context& ctx) {
  if (!map || map.IsNull()) return;
  if (!map.IsMap()) ctx.fail(map, "expected a mapping of config keys to values");
  for (const auto& kv : map) {
    const std::string key = prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar();
    if (kv.second.IsMap()) {
      flatten(kv.second, key, out, ctx);
    } else {
      out.push_back(key + "=" + value_text(kv.second));
    }
  }
}

/// Checks every override's key and value against the config schema, naming the sweep file line.
void check_overrides(const std::vector<std::string>& overrides, const YAML::Node& where, const Context& ctx) {
  config::Config scratch;
  config::Schema schema = scratch.schema();
  for (const auto& o : overrides) {
    const size_t eq = o.find('=');
    try {
      schema.set(o.substr(0, eq), o.substr(eq + 1), ctx.at(where));
    } catch (const ConfigError& e) {
      throw ConfigError(str("sweep ", e.what()));
    }
    try {
      schema.check_ranges();  // choices and ranges of the value just set (the rest are defaults)
    } catch (const ConfigError& e) {
      throw ConfigError(str("sweep ", ctx.at(where), ": ", e.what()));
    }
  }
}

/// The axis name of a dotted key: its last component ("moe.layers.schedule" -> "schedule"), or
/// the group's name for a kind ("moe.gate.kind" -> "gate").
std::string leaf(const std::string& key) {
  const size_t dot = key.rfind('.');
  if (dot == std::string::npos) return key;
  const std::string last = key.substr(dot + 1);
  return last == "kind" ? leaf(key.substr(0, dot)) : last;
}

Axis parse_axis(const std::string& name, const YAML::Node& node, const Context& ctx) {
  Axis axis;
  if (node.IsSequence()) {
    // A config key with a list of values.
    config::Config scratch;
    config::Schema schema = scratch.schema();
    const config::Field* f = schema.find(name);
    if (!f) {
      try {
        schema.set(name, "0", ctx.at(node));
      } catch (const ConfigError& e) {
        throw ConfigError(str("sweep ", ctx.at(node), ": axis '", name,
                              "' has a list of values, so it must be a config key: ", e.what()));
      }
    }
    axis.name = leaf(name);
    axis.key = name;
    const bool prefixed = f->type != config::FieldType::String;
    for (const auto& v : node) {
      AxisValue av;
      av.label = sanitize_label(prefixed ? axis.name + value_label(v) : value_label(v));
      av.overrides = {name + "=" + value_text(v)};
      axis.values.push_back(av);
    }
  } else if (node.IsMap()) {
    // Named values, each a mapping of overrides.
    axis.name = name;
    for (const auto& kv : node) {
      AxisValue av;
      av.label = sanitize_label(kv.first.Scalar());
      if (!kv.second.IsNull() && !kv.second.IsMap())
        ctx.fail(kv.second, str("axis '", name, "', value '", kv.first.Scalar(),
                                "': expected a mapping of config keys (e.g. {model.d_model: 32})"));
      flatten(kv.second, "", av.overrides, ctx);
      check_overrides(av.overrides, kv.second ? kv.second : node, ctx);
      axis.values.push_back(av);
    }
  } else {
    ctx.fail(node, str("axis '", name, "': expected a list of values (for a config key) or a mapping of named values"));
  }
  if (axis.values.empty()) ctx.fail(node, str("axis '", name, "' has no values"));
  std::set<std::string> seen;
  for (const auto& v : axis.values)
    if (!seen.insert(v.label).second) ctx.fail(node, str("axis '", name, "': two values share the label '", v.label, "'"));
  if (!axis.key.empty()) check_overrides([&] {
      std::vector<std::string> all;
      for (const auto& v : axis.values) all.insert(all.end(), v.overrides.begin(), v.overrides.end());
      return all;
    }(), node, ctx);
  return axis;
}

/// The axis of `axes` called `name` (its name or its key), or nullptr.
const Axis* find_axis(const std::vector<Axis>& axes, const std::string& name) {
  for (const auto& a : axes)
    if (a.name == name || (!a.key.empty() && a.key == name)) return &a;
  return nullptr;
}

std::vector<CellMatch> parse_matches(const YAML::Node& node, const Grid& grid, const char* what, const Context& ctx) {
  std::vector<CellMatch> out;
  if (!node) return out;
  if (!node.IsSequence()) ctx.fail(node, str(what, ": expected a list of mappings axis: label"));
  for (const auto& entry : node) {
    if (!entry.IsMap() || entry.size() == 0) ctx.fail(entry, str(what, ": expected a mapping axis: label"));
    CellMatch m;
    for (const auto& kv : entry) {
      const std::string axis_name = kv.first.Scalar();
      const Axis* a = find_axis(grid.axes, axis_name);
      if (!a) {
        std::string names;
        for (const auto& x : grid.axes) names += (names.empty() ? "" : ", ") + x.name;
        ctx.fail(kv.first, str(what, ": no axis '", axis_name, "' in ", grid.name.empty() ? "the main grid" : "grid '" + grid.name + "'",
                               " (axes: ", names, ")"));
      }
      // A match names a label, or a raw value of a key axis (wave, 0, [64, 32]).
      std::string label = sanitize_label(value_label(kv.second));
      auto has = [&](const std::string& l) {
        return std::any_of(a->values.begin(), a->values.end(), [&](const AxisValue& v) { return v.label == l; });
      };
      if (!has(label) && !a->key.empty() && has(sanitize_label(a->name + label))) label = sanitize_label(a->name + label);
      if (!has(label)) {
        std::string labels;
        for (const auto& v : a->values) labels += (labels.empty() ? "" : ", ") + v.label;
        ctx.fail(kv.second, str(what, ": axis '", a->name, "' has no value '", value_label(kv.second), "' (values: ", labels, ")"));
      }
      m[a->name] = label;
    }
    out.push_back(m);
  }
  return out;
}

Grid parse_grid(const YAML::Node& node, const std::string& name, const Grid* main, const Context& ctx) {
  Grid g;
  g.name = name;
  if (const YAML::Node set = node["set"]) {
    flatten(set, "", g.overrides, ctx);
    check_overrides(g.overrides, set, ctx);
  }
  if (const YAML::Node axes = node["axes"]) {
    if (!axes.IsMap()) ctx.fail(axes, "axes: expected a mapping axis -> values");
    for (const auto& kv : axes) {
      const std::string axis_name = kv.first.Scalar();
      if (main && kv.second.IsScalar() && kv.second.Scalar() == "same") {
        const Axis* a = find_axis(main->axes, axis_name);
        if (!a) ctx.fail(kv.first, str("grid '", name, "': axis '", axis_name, "' is 'same' but the main grid has no such axis"));
        g.axes.push_back(*a);
      } else {
        g.axes.push_back(parse_axis(axis_name, kv.second, ctx));
      }
      if (std::count_if(g.axes.begin(), g.axes.end(), [&](const Axis& a) { return a.name == g.axes.back().name; }) > 1)
        ctx.fail(kv.first, str("two axes are called '", g.axes.back().name, "' (use named values for one of them)"));
    }
  }
  g.exclude = parse_matches(node["exclude"], g, "exclude", ctx);
  g.only = parse_matches(node["only"], g, "only", ctx);
  for (const auto& kv : node) {
    const std::string k = kv.first.Scalar();
    static const std::set<std::string> grid_keys = {"name", "set", "axes", "exclude", "only"};
    static const std::set<std::string> top_keys = {"base", "extra", "report", "results"};
    if (!grid_keys.count(k) && (main || !top_keys.count(k)))
      ctx.fail(kv.first, str("unknown entry '", k, "' (", main ? "an extra grid has" : "a sweep file has",
                             " name, set, axes, exclude, only", main ? "" : ", base, extra, report, results", ")"));
  }
  return g;
}

/// Letters, digits and . _ + = -, not starting with '.' or '-'.
bool plain_name(const std::string& s) {
  if (s.empty() || s[0] == '.' || s[0] == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' || c == '=' || c == '-';
  });
}

bool matches(const CellMatch& m, const std::vector<std::pair<std::string, std::string>>& cell) {
  for (const auto& want : m) {
    auto it = std::find_if(cell.begin(), cell.end(), [&](const auto& p) { return p.first == want.first; });
    if (it == cell.end() || it->second != want.second) return false;
  }
  return true;
}

/// The labels of `axis` in `g` (nullptr when the grid has no such axis).
const Axis* grid_axis(const Grid& g, const std::string& axis) { return find_axis(g.axes, axis); }

bool has_label(const Axis& a, const std::string& label) {
  return std::any_of(a.values.begin(), a.values.end(), [&](const AxisValue& v) { return v.label == label; });
}

std::vector<std::string> string_list(const YAML::Node& n, const std::string& what, const Context& ctx) {
  std::vector<std::string> out;
  if (n.IsScalar()) return {n.Scalar()};
  if (!n.IsSequence()) ctx.fail(n, str(what, ": expected a name or a list of names"));
  for (const auto& x : n) {
    if (!x.IsScalar()) ctx.fail(x, str(what, ": expected a name"));
    out.push_back(x.Scalar());
  }
  return out;
}

/// Metrics a claim can test: summary.json fields and the gradient-noise series.
const std::map<std::string, bool>& claim_metrics() {  // name -> higher is better
  static const std::map<std::string, bool> m = {
      {"test_accuracy", true},        {"test_loss", false},          {"val_perplexity", false},
      {"val_loss", false},            {"val_bits_per_byte", false},  {"gradnoise_trace", false},
      {"gradnoise_ratio", false},     {"moe_gradnoise_trace", false}, {"moe_gradnoise_ratio", false},
      {"mc_accuracy", true},          {"mc_accuracy_norm", true},    {"all_experts_fraction", false},
      {"routing_mi", true}};
  return m;
}

ClaimSpec parse_claim(const YAML::Node& n, const SweepSpec& spec, const Context& ctx) {
  if (!n.IsMap()) ctx.fail(n, "results.claims: every claim is a mapping (id, claim, metric, compare or best, ...)");
  ClaimSpec c;
  const auto need = [&](const char* key) {
    if (!n[key] || !n[key].IsScalar() || n[key].Scalar().empty()) ctx.fail(n, str("results.claims: a claim needs '", key, "'"));
    return n[key].Scalar();
  };
  c.id = need("id");
  if (!plain_name(c.id)) ctx.fail(n["id"], str("results.claims: id '", c.id, "' must be a plain name (letters, digits, . _ + = -)"));
  c.claim = need("claim");
  c.metric = need("metric");
  const auto& metrics = claim_metrics();
  auto mt = metrics.find(c.metric);
  if (mt == metrics.end()) {
    std::string names;
    for (const auto& [k, v] : metrics) names += (names.empty() ? "" : ", ") + k;
    ctx.fail(n["metric"], str("claim '", c.id, "': unknown metric '", c.metric, "' (one of ", names, ")"));
  }
  c.maximize = mt->second;
  if (n["goal"]) {
    const std::string g = n["goal"].Scalar();
    if (g != "max" && g != "min") ctx.fail(n["goal"], str("claim '", c.id, "': goal '", g, "' must be max or min"));
    c.maximize = g == "max";
  }
  if (n["source"]) c.source = n["source"].Scalar();
  c.grid = n["grid"] ? n["grid"].Scalar() : "";
  if (c.grid == "main") c.grid = "";
  const Grid* grid = nullptr;
  for (const auto& g : spec.grids)
    if (g.name == c.grid) grid = &g;
  if (!grid) ctx.fail(n["grid"], str("claim '", c.id, "': no grid '", c.grid, "'"));
  const bool cmp = static_cast<bool>(n["compare"]), best = static_cast<bool>(n["best"]);
  if (cmp == best) ctx.fail(n, str("claim '", c.id, "': give exactly one of compare: {axis, better, than} and best: {axis, across}"));
  const YAML::Node body = cmp ? n["compare"] : n["best"];
  c.kind = cmp ? "compare" : "best";
  if (!body.IsMap() || !body["axis"]) ctx.fail(body, str("claim '", c.id, "': ", c.kind, ": expected a mapping with 'axis'"));
  c.axis = body["axis"].Scalar();
  const Axis* axis = grid_axis(*grid, c.axis);
  if (!axis) ctx.fail(body["axis"], str("claim '", c.id, "': the ", c.grid.empty() ? "main grid" : "grid '" + c.grid + "'",
                                        " has no axis '", c.axis, "'"));
  if (spec.layout.seed == c.axis) ctx.fail(body["axis"], str("claim '", c.id, "': '", c.axis, "' is the seed axis"));
  auto check_label = [&](const Axis& a, const std::string& label, const YAML::Node& where) {
    if (!has_label(a, label)) {
      std::string labels;
      for (const auto& v : a.values) labels += (labels.empty() ? "" : ", ") + v.label;
      ctx.fail(where, str("claim '", c.id, "': axis '", a.name, "' has no value '", label, "' (", labels, ")"));
    }
  };
  if (cmp) {
    if (!body["better"] || !body["than"]) ctx.fail(body, str("claim '", c.id, "': compare needs 'better' and 'than'"));
    c.better = string_list(body["better"], "compare.better", ctx);
    c.than = body["than"].Scalar();
    for (const auto& l : c.better) check_label(*axis, l, body["better"]);
    check_label(*axis, c.than, body["than"]);
  } else {
    if (body["across"]) c.across = string_list(body["across"], "best.across", ctx);
    if (c.across.empty()) ctx.fail(body, str("claim '", c.id, "': best needs 'across' (the axes the best label depends on)"));
    for (const auto& a : c.across) {
      if (!grid_axis(*grid, a) || a == c.axis || a == spec.layout.seed)
        ctx.fail(body["across"], str("claim '", c.id, "': across: '", a, "' is not another axis of the grid"));
    }
    if (const YAML::Node e = body["expect"]) {
      if (!e.IsMap() || c.across.size() != 1)
        ctx.fail(e, str("claim '", c.id, "': expect: a mapping from labels of the one 'across' axis to the claimed best"));
      for (const auto& kv : e) {
        check_label(*grid_axis(*grid, c.across[0]), kv.first.Scalar(), kv.first);
        check_label(*axis, kv.second.Scalar(), kv.second);
        c.expect[kv.first.Scalar()] = kv.second.Scalar();
      }
    }
  }
  if (const YAML::Node w = n["where"]) {
    if (!w.IsMap()) ctx.fail(w, str("claim '", c.id, "': where: expected a mapping axis: label"));
    for (const auto& kv : w) {
      const Axis* a = grid_axis(*grid, kv.first.Scalar());
      if (!a) ctx.fail(kv.first, str("claim '", c.id, "': where: no axis '", kv.first.Scalar(), "'"));
      check_label(*a, kv.second.Scalar(), kv.second);
      c.where[kv.first.Scalar()] = kv.second.Scalar();
    }
  }
  for (const auto& kv : n) {
    static const std::set<std::string> keys = {"id", "claim", "source", "metric", "goal", "grid", "compare", "best", "where"};
    if (!keys.count(kv.first.Scalar()))
      ctx.fail(kv.first, str("claim '", c.id, "': unknown entry '", kv.first.Scalar(),
                             "' (id, claim, source, metric, goal, grid, compare, best, where)"));
  }
  return c;
}

ResultsSpec parse_results(const YAML::Node& n, const SweepSpec& spec, const Context& ctx) {
  ResultsSpec r;
  if (!n) return r;
  if (!n.IsMap()) ctx.fail(n, "results: expected a mapping (title, intro, out, figures, claims)");
  for (const auto& kv : n) {
    static const std::set<std::string> keys = {"title", "intro", "out", "figures", "claims"};
    if (!keys.count(kv.first.Scalar()))
      ctx.fail(kv.first, str("results: unknown entry '", kv.first.Scalar(), "' (title, intro, out, figures, claims)"));
  }
  if (n["title"]) r.title = n["title"].Scalar();
  if (n["intro"]) r.intro = n["intro"].Scalar();
  if (n["out"]) {
    fs::path p = n["out"].Scalar();
    if (p.is_relative() && !spec.file.empty()) p = fs::path(spec.file).parent_path() / p;
    r.out = p.lexically_normal().string();
  }
  if (n["figures"]) r.figures = string_list(n["figures"], "results.figures", ctx);
  if (const YAML::Node cl = n["claims"]) {
    if (!cl.IsSequence()) ctx.fail(cl, "results.claims: expected a list of claims");
    for (const auto& c : cl) {
      r.claims.push_back(parse_claim(c, spec, ctx));
      for (size_t i = 0; i + 1 < r.claims.size(); ++i)
        if (r.claims[i].id == r.claims.back().id) ctx.fail(c, str("results.claims: two claims have the id '", r.claims.back().id, "'"));
    }
  }
  return r;
}

/// base: a config file (relative to the sweep file) or an inline mapping; checked as a config.
void parse_base(const YAML::Node& root, const std::string& file, const Context& ctx, SweepSpec& spec) {
  const YAML::Node base = root["base"];
  if (!base || base.IsNull()) {
    spec.base_where = "defaults";
  } else if (base.IsScalar()) {
    // Relative to the sweep file's folder; else to the working directory.
    fs::path p = base.Scalar();
    std::error_code ec;  // a path the system cannot look up (too long, say) is read as given: read_file names it
    if (p.is_relative() && !file.empty() && fs::exists(fs::path(file).parent_path() / p, ec))
      p = fs::path(file).parent_path() / p;
    try {
      spec.base_yaml = read_file(p.string());
    } catch (const Error& e) {
      ctx.fail(base, str("base: ", e.what()));
    }
    spec.base_where = p.lexically_normal().string();
  } else if (base.IsMap()) {
    YAML::Emitter e;
    e << base;
    spec.base_yaml = e.c_str();
    spec.base_where = ctx.file + ": base";
  } else {
    ctx.fail(base, "base: expected a config file path or an inline config mapping");
  }
  try {
    config::parse_config(spec.base_yaml, spec.base_where);
  } catch (const ConfigError& e) {
    throw ConfigError(str("sweep ", ctx.file, ": base: ", e.what()));
  }
}

/// The main grid (whose `set` applies to every grid) and the named grids of `extra`.
void parse_grids(const YAML::Node& root, const Context& ctx, SweepSpec& spec) {
  Grid main = parse_grid(root, "", nullptr, ctx);
  spec.overrides = main.overrides;  // the top-level `set` applies to every grid
  main.overrides.clear();
  spec.grids.push_back(main);
  if (const YAML::Node extra = root["extra"]) {
    if (!extra.IsSequence()) ctx.fail(extra, "extra: expected a list of grids, each with a name");
    for (const auto& g : extra) {
      if (!g.IsMap() || !g["name"] || !g["name"].IsScalar() || g["name"].Scalar().empty())
        ctx.fail(g, "extra: every grid needs a name (the prefix of its run names)");
      const std::string name = g["name"].Scalar();
      if (!plain_name(name)) ctx.fail(g["name"], str("extra grid name '", name, "' must be a plain folder name"));
      for (const auto& other : spec.grids)
        if (other.name == name) ctx.fail(g["name"], str("two extra grids are called '", name, "'"));
      spec.grids.push_back(parse_grid(g, name, &spec.grids[0], ctx));
    }
  }
}

/// Report layout (`report`): defaults from the main grid's axes.
void parse_layout(const YAML::Node& root, const Context& ctx, SweepSpec& spec) {
  ReportLayout& L = spec.layout;
  std::vector<std::string> names;
  for (const auto& a : spec.grids[0].axes) names.push_back(a.name);
  const auto seed_it = std::find_if(spec.grids[0].axes.begin(), spec.grids[0].axes.end(),
                                    [](const Axis& a) { return a.key == "train.seed"; });
  if (seed_it != spec.grids[0].axes.end()) L.seed = seed_it->name;
  const YAML::Node rep = root["report"];
  if (rep && !rep.IsMap()) ctx.fail(rep, "report: expected a mapping (color, facet, select, seed)");
  auto known = [&](const YAML::Node& n) {
    const std::string s = n.Scalar();
    if (std::find(names.begin(), names.end(), s) == names.end())
      ctx.fail(n, str("report: '", s, "' is not an axis of the main grid"));
    return s;
  };
  if (rep && rep["seed"]) L.seed = known(rep["seed"]);
  std::vector<std::string> free;
  for (const auto& n : names)
    if (n != L.seed) free.push_back(n);
  if (rep && rep["color"]) L.color = known(rep["color"]);
  else if (!free.empty()) L.color = free[0];
  if (rep && rep["facet"]) {
    L.facet = rep["facet"].IsNull() ? "" : known(rep["facet"]);
  } else {
    for (const auto& n : free)
      if (n != L.color) {
        L.facet = n;
        break;
      }
  }
  if (rep && rep["select"]) {
    if (!rep["select"].IsSequence()) ctx.fail(rep["select"], "report.select: expected a list of axes");
    for (const auto& s : rep["select"]) L.select.push_back(known(s));
  } else {
    for (const auto& n : free)
      if (n != L.color && n != L.facet) L.select.push_back(n);
  }
  if (rep)
    for (const auto& kv : rep)
      if (!std::set<std::string>{"color", "facet", "select", "seed"}.count(kv.first.Scalar()))
        ctx.fail(kv.first, str("report: unknown entry '", kv.first.Scalar(), "' (color, facet, select, seed)"));
}

}  // namespace

std::string sanitize_label(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' || c == '=';
    out += ok ? c : '_';
  }
  return out.empty() ? "_" : out;
}

SweepSpec parse_sweep(const std::string& yaml_text, const std::string& file) {
  Context ctx{file.empty() ? "<text>" : file};
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(str("sweep ", ctx.file, ":", e.mark.line + 1, ":", e.mark.column + 1, ": invalid YAML: ", e.msg));
  }
  if (!root.IsMap()) throw ConfigError(str("sweep ", ctx.file, ": expected a mapping at the top level"));
  SweepSpec spec;
  spec.file = file;
  spec.name = root["name"] ? root["name"].Scalar() : (file.empty() ? "sweep" : fs::path(file).stem().string());
  if (!plain_name(spec.name))
    ctx.fail(root["name"], str("name '", spec.name, "' must be a plain folder name (letters, digits, . _ + = -)"));
  parse_base(root, file, ctx, spec);
  parse_grids(root, ctx, spec);
  parse_layout(root, ctx, spec);
  spec.results = parse_results(root["results"], spec, ctx);
  return spec;
}

SweepSpec load_sweep(const std::string& path) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error& e) {
    throw ConfigError(str("sweep: ", e.what()));
  }
  return parse_sweep(text, path);
}

SweepSpec command_line_sweep(const std::string& base, const std::vector<std::string>& axes, int64_t seeds,
                             const std::string& name) {
  if (axes.empty() && seeds <= 0)
    throw ConfigError("sweep --base: give at least one --axis KEY=V1,V2,... or --seeds N");
  std::error_code ec;
  if (!fs::is_regular_file(base, ec)) throw ConfigError(str("sweep --base: no config file '", base, "'"));
  if (seeds < 0 || seeds > 1000) throw ConfigError(str("sweep --seeds: expected 0 .. 1000 seeds, got ", seeds));
  YAML::Emitter e;
  e << YAML::BeginMap;
  std::string auto_name = sanitize_label(fs::path(base).stem().string());
  std::set<std::string> keys;
  std::vector<std::pair<std::string, std::vector<std::string>>> parsed;
  for (const std::string& a : axes) {
    const size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == a.size())
      throw ConfigError(str("sweep --axis '", a, "': expected KEY=V1,V2,... (e.g. moe.router.kind=top_k,top_p)"));
    const std::string key = a.substr(0, eq);
    if (!keys.insert(key).second) throw ConfigError(str("sweep --axis '", a, "': the key ", key, " is given twice"));
    std::vector<std::string> values;
    size_t start = eq + 1;
    while (true) {
      const size_t comma = a.find(',', start);
      const std::string v = a.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (v.empty()) throw ConfigError(str("sweep --axis '", a, "': an empty value"));
      values.push_back(v);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    parsed.emplace_back(key, values);
    auto_name += "-" + sanitize_label(leaf(key));
  }
  if (seeds > 0 && keys.count("train.seed"))
    throw ConfigError("sweep --seeds: an --axis already sets train.seed; give one of them");
  e << YAML::Key << "name" << YAML::Value << (name.empty() ? auto_name : name);
  e << YAML::Key << "base" << YAML::Value << fs::absolute(base).lexically_normal().string();
  e << YAML::Key << "axes" << YAML::Value << YAML::BeginMap;
  for (const auto& [key, values] : parsed) {
    e << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& v : values) e << v;
    e << YAML::EndSeq;
  }
  if (seeds > 0) {
    e << YAML::Key << "train.seed" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (int64_t i = 0; i < seeds; ++i) e << i;
    e << YAML::EndSeq;
  }
  e << YAML::EndMap << YAML::EndMap;
  const std::string label = "--base " + base;
  try {
    return parse_sweep(e.c_str(), label);
  } catch (const ConfigError& err) {
    // The message names a line of the YAML built here; say what the user gave instead.
    std::string what = err.what();
    const std::string head = "sweep " + label + ":";
    if (what.rfind(head, 0) == 0) {
      size_t at = head.size();
      while (at < what.size() && (std::isdigit(static_cast<unsigned char>(what[at])) || what[at] == ':')) ++at;
      what = what.substr(at);
      if (!what.empty() && what[0] == ' ') what.erase(0, 1);
    }
    throw ConfigError(str("sweep --base ", base, " --axis: ", what));
  }
}

std::vector<SweepRun> expand(const SweepSpec& spec) {
  // The grids' cells are counted before any is built: a product of long axes is refused in
  // bounded time and memory instead of being expanded.
  double cells = 0;
  for (const Grid& g : spec.grids) {
    double n = 1;
    for (const auto& axis : g.axes) n *= static_cast<double>(axis.values.size());
    cells += n;
  }
  if (cells > static_cast<double>(kMaxSweepCells))
    throw ConfigError(str("sweep ", spec.file, ": its grids hold ", fmt("%.4g", cells), " cells, more than the ",
                          kMaxSweepCells, " a sweep may hold (split it into several sweep files)"));
  std::vector<SweepRun> runs;
  std::map<std::string, std::string> owner;  // run name -> grid, to report duplicates
  for (const Grid& g : spec.grids) {
    std::vector<size_t> idx(g.axes.size(), 0);
    for (;;) {
      SweepRun r;
      r.grid = g.name;
      r.overrides = spec.overrides;
      r.overrides.insert(r.overrides.end(), g.overrides.begin(), g.overrides.end());
      std::vector<std::string> parts;
      if (!g.name.empty()) parts.push_back(g.name);
      for (size_t a = 0; a < g.axes.size(); ++a) {
        const AxisValue& v = g.axes[a].values[idx[a]];
        r.axes.emplace_back(g.axes[a].name, v.label);
        r.overrides.insert(r.overrides.end(), v.overrides.begin(), v.overrides.end());
        parts.push_back(v.label);
      }
      for (const auto& p : parts) r.name += (r.name.empty() ? "" : "-") + p;
      if (r.name.empty()) r.name = spec.name;
      const bool excluded = std::any_of(g.exclude.begin(), g.exclude.end(), [&](const CellMatch& m) { return matches(m, r.axes); });
      const bool allowed = g.only.empty() || std::any_of(g.only.begin(), g.only.end(), [&](const CellMatch& m) { return matches(m, r.axes); });
      if (!excluded && allowed) {
        auto [it, fresh] = owner.emplace(r.name, g.name);
        if (!fresh)
          throw ConfigError(str("sweep ", spec.file, ": two runs are called '", r.name, "' (grids '", it->second, "' and '",
                                g.name, "'): give the extra grid another name"));
        runs.push_back(std::move(r));
      }
      // Next cell: the last axis varies fastest.
      size_t a = g.axes.size();
      while (a > 0 && ++idx[a - 1] == g.axes[a - 1].values.size()) idx[--a] = 0;
      if (a == 0) break;
    }
  }
  return runs;
}

std::vector<config::Config> resolve_runs(const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  std::vector<config::Config> out;
  out.reserve(runs.size());
  for (const auto& r : runs) {
    try {
      out.push_back(config::parse_config(spec.base_yaml, spec.base_where, r.overrides));
    } catch (const ConfigError& e) {
      throw ConfigError(str("sweep ", spec.file.empty() ? "<text>" : spec.file, ": run '", r.name, "': ", e.what()));
    }
  }
  return out;
}

}  // namespace dynamoe::sweep
