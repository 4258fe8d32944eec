#pragma once
// FNV-1a, 64 bit: a fast, stable (platform- and version-independent) hash of bytes, for
// checksums of data files and deterministic splits.
//
// Usage:
//   uint64_t h = dynamoe::fnv1a64("hello");          // 0xa430d84680aabd0b
//   std::string hex = dynamoe::fnv1a64_hex(bytes);   // "a430d84680aabd0b"
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace dynamoe {

/// FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3) of `bytes`, continuing from
/// `h` (pass a previous result to hash data in pieces).
inline uint64_t fnv1a64(std::string_view bytes, uint64_t h = 0xcbf29ce484222325ULL) {
  for (const char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

/// fnv1a64 as 16 lower-case hex digits.
inline std::string fnv1a64_hex(std::string_view bytes) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(fnv1a64(bytes)));
  return buf;
}

}  // namespace dynamoe
