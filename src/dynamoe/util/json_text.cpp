#include "dynamoe/util/json_text.h"

#include "dynamoe/util/error.h"

namespace dynamoe {
namespace {

struct TooDeep {};

/// Appends `v` to `out`, containers deeper than `depth_left` as [...] / {...}; stops once `out`
/// is longer than `limit` (the caller cuts it).
void excerpt_into(const nlohmann::json& v, int depth_left, size_t limit, std::string& out) {
  if (out.size() > limit) return;
  if (!v.is_structured()) {
    out += v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  const bool array = v.is_array();
  if (depth_left == 0) {
    out += v.empty() ? (array ? "[]" : "{}") : (array ? "[...]" : "{...}");
    return;
  }
  out += array ? '[' : '{';
  bool first = true;
  for (auto it = v.begin(); it != v.end() && out.size() <= limit; ++it) {
    if (!first) out += ',';
    first = false;
    if (!array) out += nlohmann::json(it.key()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + ':';
    excerpt_into(*it, depth_left - 1, limit, out);
  }
  out += array ? ']' : '}';
}

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& where, int max_depth) {
  auto limit_depth = [max_depth](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > max_depth) throw TooDeep{};
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), limit_depth);
  } catch (const TooDeep&) {
    throw Error(str(where, ": JSON nested deeper than ", max_depth, " levels"));
  } catch (const nlohmann::json::exception& e) {
    throw Error(str(where, ": invalid JSON: ", e.what()));
  }
}

std::string json_excerpt(const nlohmann::json& value, size_t max_chars) {
  std::string out;
  excerpt_into(value, 4, max_chars, out);
  if (out.size() > max_chars) out = out.substr(0, max_chars) + "...";
  return out;
}

}  // namespace dynamoe
