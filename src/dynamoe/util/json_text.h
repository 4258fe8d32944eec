#pragma once
// JSON from files a user hands us: parsing with a nesting limit, and short renderings of values
// for error messages. nlohmann's dump() recurses once per level, so a hostile file nested
// 100,000 levels deep would overflow the stack in an error path; these never go deeper than a
// small fixed depth.
//
//   nlohmann::json h = parse_json(text, "model.safetensors: header");   // Error beyond 64 levels
//   throw Error(str(where, ": bad shape entry ", json_excerpt(d)));       // at most ~60 characters
#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace dynamoe {

/// The nesting every JSON file dynamoe reads stays far below (safetensors headers, configs and
/// metadata are two or three levels deep).
inline constexpr int kMaxJsonDepth = 64;

/// Parses `text` as JSON. Invalid JSON, or nesting deeper than max_depth, is a dynamoe::Error
/// "<where>: ..." in one line.
nlohmann::json parse_json(std::string_view text, const std::string& where, int max_depth = kMaxJsonDepth);

/// A one-line rendering of `value` for an error message: at most max_chars characters (then
/// "..."), containers below the fourth level shown as [...] or {...}.
std::string json_excerpt(const nlohmann::json& value, size_t max_chars = 60);

}  // namespace dynamoe
