#include "dynamoe/config/schema.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

#include "dynamoe/util/error.h"

namespace dynamoe::config {
namespace {

/// Lists longer than this are refused (no width list of a model needs more).
constexpr size_t kMaxListEntries = 4096;
/// Keys longer than this are no key of the schema: shown shortened, with no suggestion.
constexpr size_t kMaxKeyLength = 200;

/// A key as an error message shows it: at most 60 characters.
std::string shown_key(const std::string& key) {
  return key.size() <= 60 ? key : str(key.substr(0, 60), "... (", key.size(), " characters)");
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string type_name(FieldType t) {
  switch (t) {
    case FieldType::Bool: return "a boolean (true/false)";
    case FieldType::Int: return "an integer";
    case FieldType::Float: return "a number";
    case FieldType::String: return "a string";
    case FieldType::IntList: return "a list of integers";
  }
  return "?";
}

std::string short_type(FieldType t) {
  switch (t) {
    case FieldType::Bool: return "bool";
    case FieldType::Int: return "int";
    case FieldType::Float: return "float";
    case FieldType::String: return "string";
    case FieldType::IntList: return "int list";
  }
  return "?";
}

std::optional<int64_t> parse_int(const std::string& s) {
  if (s.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return std::nullopt;
  return static_cast<int64_t>(v);
}

std::optional<double> parse_float(const std::string& s) {
  if (s.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string format_double(double v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  std::string s = os.str();
  // Keep floats recognisable as floats when printed back.
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string node_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << n;
  return e.c_str();
}

std::string bound_text(const Field& f, double v) {
  if (f.type == FieldType::Int || f.type == FieldType::IntList) return std::to_string(static_cast<int64_t>(v));
  return format_double(v);
}

std::string range_text(const Field& f) {
  std::string r;
  if (f.min && f.max) {
    r = str(f.min_exclusive ? "(" : "[", bound_text(f, *f.min), ", ", bound_text(f, *f.max), "]");
  } else if (f.min) {
    r = str(f.min_exclusive ? "> " : ">= ", bound_text(f, *f.min));
  } else if (f.max) {
    r = str("<= ", bound_text(f, *f.max));
  }
  if (!f.choices.empty()) {
    for (size_t i = 0; i < f.choices.size(); ++i) r += (i ? " | " : "") + f.choices[i];
  }
  return r;
}

}  // namespace

Field& Schema::push(Field f) {
  DYNAMOE_CHECK(find(f.key) == nullptr, "internal: config key '", f.key, "' declared twice");
  fields_.push_back(std::move(f));
  return fields_.back();
}

Schema& Schema::add_bool(const std::string& key, bool* target, const std::string& doc) {
  push({key, FieldType::Bool, target, doc, std::nullopt, std::nullopt, false, {}, ""});
  return *this;
}
Schema& Schema::add_int(const std::string& key, int64_t* target, const std::string& doc,
                        std::optional<double> min, std::optional<double> max) {
  push({key, FieldType::Int, target, doc, min, max, false, {}, ""});
  return *this;
}
Schema& Schema::add_float(const std::string& key, double* target, const std::string& doc,
                          std::optional<double> min, std::optional<double> max, bool min_exclusive) {
  push({key, FieldType::Float, target, doc, min, max, min_exclusive, {}, ""});
  return *this;
}
Schema& Schema::add_string(const std::string& key, std::string* target, const std::string& doc,
                           std::vector<std::string> choices) {
  push({key, FieldType::String, target, doc, std::nullopt, std::nullopt, false, std::move(choices), ""});
  return *this;
}
Schema& Schema::add_int_list(const std::string& key, std::vector<int64_t>* target,
                             const std::string& doc, std::optional<double> min, std::optional<double> max) {
  push({key, FieldType::IntList, target, doc, min, max, false, {}, ""});
  return *this;
}

const Field* Schema::find(const std::string& key) const {
  for (const auto& f : fields_)
    if (f.key == key) return &f;
  return nullptr;
}

static void set_from_node(const Field& f, const YAML::Node& n, const std::string& where) {
  const std::string text = node_text(n);
  auto bad = [&]() {
    return ConfigError(str("config: ", f.key, ": expected ", type_name(f.type), ", got '", text,
                           "' (", where, ")"));
  };
  switch (f.type) {
    case FieldType::Bool: {
      if (!n.IsScalar()) throw bad();
      const std::string& s = n.Scalar();
      if (s == "true" || s == "True") *static_cast<bool*>(f.target) = true;
      else if (s == "false" || s == "False") *static_cast<bool*>(f.target) = false;
      else throw bad();
      break;
    }
    case FieldType::Int: {
      if (!n.IsScalar()) throw bad();
      auto v = parse_int(n.Scalar());
      if (!v) throw bad();
      *static_cast<int64_t*>(f.target) = *v;
      break;
    }
    case FieldType::Float: {
      if (!n.IsScalar()) throw bad();
      auto v = parse_float(n.Scalar());
      if (!v) throw bad();
      *static_cast<double*>(f.target) = *v;
      break;
    }
    case FieldType::String: {
      if (!n.IsScalar()) throw bad();
      *static_cast<std::string*>(f.target) = n.Scalar();
      break;
    }
    case FieldType::IntList: {
      std::vector<int64_t> out;
      if (n.IsSequence()) {
        for (const auto& e : n) {
          if (!e.IsScalar()) throw bad();
          auto v = parse_int(e.Scalar());
          if (!v) throw bad();
          out.push_back(*v);
        }
      } else if (n.IsScalar() && !n.Scalar().empty()) {
        auto v = parse_int(n.Scalar());  // a single integer is a one-element list
        if (!v) throw bad();
        out.push_back(*v);
      } else if (!n.IsNull()) {
        throw bad();
      }
      *static_cast<std::vector<int64_t>*>(f.target) = out;
      break;
    }
  }
}

void Schema::unknown_key(const std::string& key_in, const std::string& where) const {
  // A key no schema holds may be any length: shown shortened, and not compared letter by letter.
  if (key_in.size() > kMaxKeyLength)
    throw ConfigError(str("config: unknown key '", shown_key(key_in), "' (", where, ")"));
  const std::string& key = key_in;
  for (const auto& [old_key, new_key] : renamed_)
    if (key == old_key)
      throw ConfigError(str("config: ", key, " (", where, ") is now ", new_key, " (the moe keys are grouped: docs/config.md)"));
  // A section given a value ("model: 5"): name the section, not the nearest key.
  std::vector<std::string> members;
  for (const auto& f : fields_)
    if (f.key.rfind(key + ".", 0) == 0) members.push_back(f.key);
  if (!members.empty())
    throw ConfigError(str("config: '", key, "' (", where, ") is a section of keys (", members[0],
                          members.size() > 1 ? ", " + members[1] : std::string(), members.size() > 2 ? ", ..." : "",
                          "): it takes a mapping of them, not a value"));
  std::string best;
  size_t best_d = 4;
  // The distance is at least the difference in length: most keys need no table at all.
  auto closer = [&](const std::string& candidate) {
    const size_t gap = key.size() > candidate.size() ? key.size() - candidate.size() : candidate.size() - key.size();
    if (gap >= best_d) return false;
    const size_t d = edit_distance(key, candidate);
    if (d >= best_d) return false;
    best_d = d;
    return true;
  };
  for (const auto& f : fields_)
    if (closer(f.key)) best = f.key;
  for (const auto& [old_key, new_key] : renamed_)  // a typo of a moved key: suggest where it went
    if (closer(old_key)) best = new_key;
  std::string hint;
  for (const auto& [prefix, text] : hints_)
    if (key.rfind(prefix, 0) == 0) hint = "; " + text;
  throw ConfigError(str("config: unknown key '", key, "' (", where, ")",
                        best.empty() ? std::string() : str("; did you mean '", best, "'?"), hint));
}

void Schema::set(const std::string& key, const std::string& yaml_value, const std::string& where) {
  const Field* f = find(key);
  if (!f) unknown_key(key, where);
  YAML::Node n;
  try {
    n = YAML::Load(yaml_value);
  } catch (const YAML::Exception& e) {
    throw ConfigError(str("config: ", key, ": cannot parse value '", yaml_value, "' (", where,
                          "): ", e.msg));
  }
  set_from_node(*f, n, where);
}

void Schema::load_yaml_text(const std::string& text, const std::string& where) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(str("config: ", where, ":", e.mark.line + 1, ":", e.mark.column + 1,
                          ": invalid YAML: ", e.msg));
  }
  if (root.IsNull()) return;
  if (!root.IsMap()) throw ConfigError(str("config: ", where, ": expected a mapping at the top level"));
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& node,
                                                                         const std::string& prefix) {
    std::set<std::string> seen;
    for (const auto& kv : node) {
      const std::string key = prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar();
      const std::string at = str(where, ":", kv.first.Mark().line + 1);
      if (!seen.insert(kv.first.Scalar()).second)
        throw ConfigError(str("config: ", shown_key(key), " (", at, ") is given twice in the same mapping"));
      if (const Field* f = find(key)) {
        set_from_node(*f, kv.second, at);
      } else if (kv.second.IsMap()) {
        bool is_group = std::any_of(fields_.begin(), fields_.end(), [&](const Field& g) {
          return g.key.rfind(key + ".", 0) == 0;
        });
        if (!is_group) unknown_key(key, at);
        walk(kv.second, key);
      } else {
        unknown_key(key, at);
      }
    }
  };
  walk(root, "");
}

void Schema::check_ranges() const {
  for (const auto& f : fields_) {
    auto check_number = [&](double v, const std::string& shown) {
      bool low = f.min && (f.min_exclusive ? !(v > *f.min) : v < *f.min);
      bool high = f.max && v > *f.max;
      if (low || high)
        throw ConfigError(str("config: ", f.key, " = ", shown, " is out of range (must be ",
                              range_text(f), ")"));
    };
    switch (f.type) {
      case FieldType::Int: {
        int64_t v = *static_cast<int64_t*>(f.target);
        check_number(static_cast<double>(v), std::to_string(v));
        break;
      }
      case FieldType::Float: {
        double v = *static_cast<double*>(f.target);
        check_number(v, format_double(v));
        break;
      }
      case FieldType::IntList: {
        const auto& list = *static_cast<std::vector<int64_t>*>(f.target);
        if (list.size() > kMaxListEntries)
          throw ConfigError(str("config: ", f.key, " has ", list.size(), " entries (at most ", kMaxListEntries, ")"));
        for (size_t i = 0; i < list.size(); ++i)  // the message is built only for a bad entry
          if ((f.min && list[i] < *f.min) || (f.max && list[i] > *f.max))
            check_number(static_cast<double>(list[i]), str("[...] (entry ", i, " = ", list[i], ")"));
        break;
      }
      case FieldType::String: {
        const auto& v = *static_cast<std::string*>(f.target);
        if (!f.choices.empty() && std::find(f.choices.begin(), f.choices.end(), v) == f.choices.end())
          throw ConfigError(str("config: ", f.key, " = '", v, "' is not one of: ", range_text(f)));
        break;
      }
      case FieldType::Bool: break;
    }
  }
}

std::string Schema::value_text(const Field& f) const {
  switch (f.type) {
    case FieldType::Bool: return *static_cast<bool*>(f.target) ? "true" : "false";
    case FieldType::Int: return std::to_string(*static_cast<int64_t*>(f.target));
    case FieldType::Float: return format_double(*static_cast<double*>(f.target));
    case FieldType::String: return *static_cast<std::string*>(f.target);
    case FieldType::IntList: {
      std::string s = "[";
      const auto& v = *static_cast<std::vector<int64_t>*>(f.target);
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
      return s + "]";
    }
  }
  return "";
}

namespace {
/// A group of keys, children in declaration order: inner nodes are groups, leaves fields.
struct KeyTree {
  std::string name;
  const Field* field = nullptr;
  std::vector<KeyTree> children;
  KeyTree& child(const std::string& n) {
    for (auto& c : children)
      if (c.name == n) return c;
    children.push_back({n, nullptr, {}});
    return children.back();
  }
};
}  // namespace

std::string Schema::to_yaml() const {
  KeyTree root;
  for (const auto& f : fields_) {
    KeyTree* node = &root;
    std::stringstream ss(f.key);
    for (std::string part; std::getline(ss, part, '.');) node = &node->child(part);
    node->field = &f;
  }
  YAML::Emitter e;
  std::function<void(const KeyTree&)> emit = [&](const KeyTree& t) {
    e << YAML::BeginMap;
    for (const auto& c : t.children) {
      e << YAML::Key << c.name << YAML::Value;
      if (!c.field) {
        emit(c);
        continue;
      }
      const Field& f = *c.field;
      switch (f.type) {
        case FieldType::Bool: e << *static_cast<bool*>(f.target); break;
        case FieldType::Int: e << *static_cast<int64_t*>(f.target); break;
        case FieldType::Float: e << format_double(*static_cast<double*>(f.target)); break;
        case FieldType::String: e << YAML::DoubleQuoted << *static_cast<std::string*>(f.target); break;
        case FieldType::IntList: e << YAML::Flow << *static_cast<std::vector<int64_t>*>(f.target); break;
      }
    }
    e << YAML::EndMap;
  };
  emit(root);
  return std::string(e.c_str()) + "\n";
}

static std::string escape_pipes(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

std::string Schema::reference_markdown(const std::string& section, const std::string& strip) const {
  std::ostringstream os;
  os << "| key | type | default | allowed | description |\n|---|---|---|---|---|\n";
  for (const auto& f : fields_) {
    if (f.section != section) continue;
    const std::string key = f.key.rfind(strip, 0) == 0 ? f.key.substr(strip.size()) : f.key;
    os << "| `" << key << "` | " << short_type(f.type) << " | `" << value_text(f) << "` | "
       << escape_pipes(range_text(f)) << " | " << f.doc << " |\n";
  }
  return os.str();
}

}  // namespace dynamoe::config
