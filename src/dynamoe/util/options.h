#pragma once
// The options of a registered kind (a router, gate, expert kind or schedule) live in a struct
// next to the kind's code. The struct lists its fields once, in visit(); the config layer binds
// them to keys (moe.router.k), checks ranges and prints the reference, and copies them with
// clone(). The MoE core never sees a config.
//
//   struct TopKOptions : KindOptionsOf<TopKOptions> {
//     int64_t k = 2;
//     void visit(OptionVisitor& v) override { v.integer("k", k, "experts per token", 1); }
//   };
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace dynamoe {

/// Receives the fields of an options struct. Bounds are inclusive unless min_exclusive.
class OptionVisitor {
 public:
  virtual ~OptionVisitor() = default;
  virtual void flag(const std::string& name, bool& value, const std::string& doc) = 0;
  virtual void integer(const std::string& name, int64_t& value, const std::string& doc,
                       std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt) = 0;
  virtual void real(const std::string& name, double& value, const std::string& doc,
                    std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt,
                    bool min_exclusive = false) = 0;
  virtual void text(const std::string& name, std::string& value, const std::string& doc,
                    std::vector<std::string> choices = {}) = 0;
};

/// Base of every kind's options struct.
struct KindOptions {
  virtual ~KindOptions() = default;
  /// Lists every field (name, member, description, range).
  virtual void visit(OptionVisitor& v) = 0;
  /// A deep copy.
  virtual std::shared_ptr<KindOptions> clone() const = 0;
};

/// CRTP helper: clone() by copy construction.
template <class Derived>
struct KindOptionsOf : KindOptions {
  std::shared_ptr<KindOptions> clone() const override {
    return std::make_shared<Derived>(static_cast<const Derived&>(*this));
  }
};

/// The options of a kind that has none.
struct NoOptions : KindOptionsOf<NoOptions> {
  void visit(OptionVisitor&) override {}
};

/// A kind name with its options, copied deeply (a config holds one per group: moe.router, ...).
class KindChoice {
 public:
  KindChoice() = default;
  KindChoice(std::string kind, std::shared_ptr<KindOptions> options) : kind_(std::move(kind)), options_(std::move(options)) {}
  KindChoice(const KindChoice& o) : kind_(o.kind_), options_(o.options_ ? o.options_->clone() : nullptr) {}
  KindChoice& operator=(const KindChoice& o) {
    if (this != &o) {
      kind_ = o.kind_;
      options_ = o.options_ ? o.options_->clone() : nullptr;
    }
    return *this;
  }
  KindChoice(KindChoice&&) = default;
  KindChoice& operator=(KindChoice&&) = default;

  const std::string& kind() const { return kind_; }
  /// The kind's name, writable by the config schema, which sets it to the kind it was built for.
  std::string& kind_for_schema() { return kind_; }
  /// The options (never null once set from a registry).
  KindOptions& options() const { return *options_; }
  bool has_options() const { return options_ != nullptr; }
  /// The options as the kind's own struct (an internal error if it is another kind's).
  template <class T>
  const T& as() const {
    const T* p = dynamic_cast<const T*>(options_.get());
    if (!p) throw std::logic_error("internal: options of kind '" + kind_ + "' requested as another kind's");
    return *p;
  }
  template <class T>
  T& as_mutable() {
    T* p = dynamic_cast<T*>(options_.get());
    if (!p) throw std::logic_error("internal: options of kind '" + kind_ + "' requested as another kind's");
    return *p;
  }

 private:
  std::string kind_;
  std::shared_ptr<KindOptions> options_;
};

/// A KindChoice holding a copy of `options`: kind_choice("top_k", TopKOptions{...}).
template <class T>
KindChoice kind_choice(std::string kind, T options) {
  return KindChoice(std::move(kind), std::make_shared<T>(std::move(options)));
}

}  // namespace dynamoe
