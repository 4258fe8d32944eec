#pragma once
// A schema binds dotted config keys ("train.lr") to typed struct members, with a default,
// a range or a set of allowed values, and a one-line description. It parses, checks and
// prints a configuration; every error names the key and the offending value.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dynamoe::config {

/// The value kinds a config field can hold.
enum class FieldType { Bool, Int, Float, String, IntList };

/// One configurable key.
struct Field {
  std::string key;                       ///< dotted path, e.g. "train.lr"
  FieldType type = FieldType::Int;
  void* target = nullptr;                ///< the struct member it writes
  std::string doc;                       ///< one line for the reference
  std::optional<double> min, max;        ///< inclusive bounds (numbers, list elements)
  bool min_exclusive = false;            ///< bound is strict (value > min)
  std::vector<std::string> choices;      ///< allowed strings (empty: any)
  std::string section;                   ///< "" for the main reference table; else the kind it belongs to
};

/// A set of fields; the same schema is used to parse, validate, print and document.
class Schema {
 public:
  Schema& add_bool(const std::string& key, bool* target, const std::string& doc);
  Schema& add_int(const std::string& key, int64_t* target, const std::string& doc,
                  std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt);
  Schema& add_float(const std::string& key, double* target, const std::string& doc,
                    std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt,
                    bool min_exclusive = false);
  Schema& add_string(const std::string& key, std::string* target, const std::string& doc,
                     std::vector<std::string> choices = {});
  Schema& add_int_list(const std::string& key, std::vector<int64_t>* target, const std::string& doc,
                       std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt);

  /// Tags the field added last as an option of a kind (`section`, e.g. "moe.router.kind = top_k").
  void tag_last(const std::string& section) { fields_.back().section = section; }
  /// An unknown key under `prefix` ("moe.router.") is reported with `hint` (the valid options).
  void add_group_hint(const std::string& prefix, const std::string& hint) { hints_.emplace_back(prefix, hint); }
  /// A key that moved: using `old_key` is an error naming `new_key`.
  void add_renamed(const std::string& old_key, const std::string& new_key) { renamed_.emplace_back(old_key, new_key); }

  /// Sets `key` from the text of a YAML value ("3e-4", "[512, 256]", "true").
  /// `where` names the source for errors (a file, or "--set").
  void set(const std::string& key, const std::string& yaml_value, const std::string& where);
  /// Reads a YAML document: nested maps become dotted keys; unknown keys are errors.
  void load_yaml_text(const std::string& text, const std::string& where);
  /// Checks every field's range and choices.
  void check_ranges() const;
  /// Emits every field as nested YAML, in declaration order.
  std::string to_yaml() const;
  /// A Markdown table of every key of `section` ("": the main keys): type, default (current
  /// value), range, description; `strip` is removed from the front of each key.
  std::string reference_markdown(const std::string& section = "", const std::string& strip = "") const;
  /// The current value of a field as text.
  std::string value_text(const Field& f) const;
  const std::vector<Field>& fields() const { return fields_; }
  const Field* find(const std::string& key) const;

 private:
  Field& push(Field f);
  [[noreturn]] void unknown_key(const std::string& key, const std::string& where) const;
  std::vector<Field> fields_;
  std::vector<std::pair<std::string, std::string>> hints_, renamed_;
};

}  // namespace dynamoe::config
