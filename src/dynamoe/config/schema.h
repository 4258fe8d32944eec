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
                       std::optional<double> min = std::nullopt);

  /// Sets `key` from the text of a YAML value ("3e-4", "[512, 256]", "true").
  /// `where` names the source for errors (a file, or "--set").
  void set(const std::string& key, const std::string& yaml_value, const std::string& where);
  /// Reads a YAML document: nested maps become dotted keys; unknown keys are errors.
  void load_yaml_text(const std::string& text, const std::string& where);
  /// Checks every field's range and choices.
  void check_ranges() const;
  /// Emits every field as nested YAML, in declaration order.
  std::string to_yaml() const;
  /// A Markdown table of every key: type, default (current value), range, description.
  std::string reference_markdown() const;
  /// The current value of a field as text.
  std::string value_text(const Field& f) const;
  const std::vector<Field>& fields() const { return fields_; }
  const Field* find(const std::string& key) const;

 private:
  Field& push(Field f);
  std::vector<Field> fields_;
};

}  // namespace dynamoe::config
