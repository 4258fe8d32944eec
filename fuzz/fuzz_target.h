#pragma once
// One fuzz target per parser (fuzz/targets/<name>.cpp), each written once and built two ways:
//   - `make fuzz`: clang-14 with libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer
//     (cmake -DDYNAMOE_FUZZ=ON); each target is an executable `fuzz_<name>` whose
//     LLVMFuzzerTestOneInput is the body of DYNAMOE_FUZZ_TARGET(name);
//   - the ordinary build: every target links into `dynamoe_fuzz_smoke`, which feeds each the
//     seeds of fuzz/corpus/<name> and a few thousand deterministic mutations of them (make test).
// The contract every target checks: bad input is answered by a dynamoe::Error whose message is one
// non-empty line. Any other exception, a crash, a sanitizer report, a hang or a huge allocation
// is a bug, and the input that caused it a regression seed.
//
//   DYNAMOE_FUZZ_TARGET(hf_config) {
//     dynamoe::fuzz::expect_clean([&] { parse_llama_config(dynamoe::fuzz::text(data, size)); });
//   }
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "dynamoe/util/error.h"

namespace dynamoe::fuzz {

using TargetFn = void (*)(const uint8_t* data, size_t size);

/// The targets linked into this binary (the smoke driver's table; one entry under libFuzzer).
struct Target {
  const char* name;
  TargetFn fn;
};
std::vector<Target>& targets();
struct Registrar {
  Registrar(const char* name, TargetFn fn) { targets().push_back({name, fn}); }
};

/// Runs `parse`; a one-line dynamoe::Error is the accepted answer to bad input. A multi-line or
/// empty message aborts (so libFuzzer keeps the input); other exceptions pass through to abort.
template <typename F>
void expect_clean(F&& parse) {
  try {
    parse();
  } catch (const dynamoe::Error& e) {
    const std::string_view m = e.what();
    if (m.empty() || m.find('\n') != std::string_view::npos) {
      std::fprintf(stderr, "fuzz: error message is not one line: [%s]\n", e.what());
      std::abort();
    }
  }
}

/// The input as text.
inline std::string text(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

/// Splits the input into `n` parts at the separator line "\n--8<--\n" (missing parts are empty,
/// extra separators stay in the last part): how one input carries several files.
std::vector<std::string> split_parts(const uint8_t* data, size_t size, size_t n);
/// The separator split_parts cuts at.
inline constexpr std::string_view kPartSeparator = "\n--8<--\n";

/// A private scratch folder for this process (made on first use, under $TMPDIR or /tmp,
/// removed at exit).
const std::string& scratch_dir();
/// Writes `bytes` to scratch_dir()/name (replacing it) and returns the path.
std::string scratch_file(const std::string& name, std::string_view bytes);

}  // namespace dynamoe::fuzz

#ifdef DYNAMOE_LIBFUZZER
#define DYNAMOE_FUZZ_TARGET(name)                                                      \
  static void dynamoe_fuzz_##name(const uint8_t* data, size_t size);                   \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {             \
    dynamoe_fuzz_##name(data, size);                                                    \
    return 0;                                                                           \
  }                                                                                     \
  static void dynamoe_fuzz_##name(const uint8_t* data, size_t size)
#else
#define DYNAMOE_FUZZ_TARGET(name)                                                                    \
  static void dynamoe_fuzz_##name(const uint8_t* data, size_t size);                                 \
  static const ::dynamoe::fuzz::Registrar dynamoe_fuzz_registrar_##name(#name, dynamoe_fuzz_##name); \
  static void dynamoe_fuzz_##name(const uint8_t* data, size_t size)
#endif
