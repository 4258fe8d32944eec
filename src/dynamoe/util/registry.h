#pragma once
// The one registry style of dynamoe: a name -> entry map for each family of kinds (routers,
// gates, expert kinds, schedules, models). A kind registers itself in its own source file:
//
//   DYNAMOE_REGISTER(router_registry(), "top_k", router_kind(functional::top_k_route));
//
// and is then found by name; an unknown name is a ConfigError listing the valid ones.
// (The libraries holding self-registering kinds are linked whole, see CMakeLists.txt.)
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "dynamoe/util/error.h"

namespace dynamoe {

template <class Entry>
class Registry {
 public:
  /// `what` names one kind in messages ("router", "gate", ...).
  explicit Registry(std::string what) : what_(std::move(what)) {}

  /// Adds `name`; an Error if it is empty or taken. Returns true (to initialise a static).
  bool add(const std::string& name, Entry entry) {
    std::lock_guard<std::mutex> lock(mutex_);
    DYNAMOE_CHECK(!name.empty(), "a ", what_, " needs a non-empty name");
    DYNAMOE_CHECK(entries_.count(name) == 0, what_, " '", name, "' is already registered");
    entries_.emplace(name, std::move(entry));
    return true;
  }
  /// The entry of `name`; an unknown name is a ConfigError listing every valid name.
  const Entry& at(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(name);
    if (it == entries_.end())
      throw ConfigError(str("unknown ", what_, " '", name, "'; valid ", what_, "s: ", joined_locked(", ")));
    return it->second;  // entries are never removed: the reference stays valid
  }
  bool contains(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.count(name) > 0;
  }
  /// Every registered name, sorted.
  std::vector<std::string> names() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const auto& kv : entries_) out.push_back(kv.first);
    return out;
  }
  /// The names joined by `sep` ("a, b, c").
  std::string joined(const std::string& sep = ", ") const {
    std::lock_guard<std::mutex> lock(mutex_);
    return joined_locked(sep);
  }
  const std::string& what() const { return what_; }

 private:
  std::string joined_locked(const std::string& sep) const {
    std::string out;
    for (const auto& kv : entries_) out += (out.empty() ? "" : sep) + kv.first;
    return out;
  }
  std::string what_;
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;
};

}  // namespace dynamoe

#define DYNAMOE_REGISTER_CONCAT2(a, b) a##b
#define DYNAMOE_REGISTER_CONCAT(a, b) DYNAMOE_REGISTER_CONCAT2(a, b)
/// Registers `entry` under `name` in `registry` when the program starts.
#define DYNAMOE_REGISTER(registry, name, ...)                                                         \
  [[maybe_unused]] static const bool DYNAMOE_REGISTER_CONCAT(dynamoe_registered_, __COUNTER__) = \
      (registry).add(name, __VA_ARGS__)
