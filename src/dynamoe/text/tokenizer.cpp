// The one place where tokenizer kinds are registered by name.
#include "dynamoe/text/tokenizer.h"

#include <functional>

#include "dynamoe/text/byte_tokenizer.h"
#include "dynamoe/text/gpt2_tokenizer.h"
#include "dynamoe/util/error.h"

namespace dynamoe::text {
namespace {

struct TokenizerEntry {
  const char* name;
  std::function<std::unique_ptr<Tokenizer>(const std::string& dir)> make;
};

const std::vector<TokenizerEntry>& registry() {
  static const std::vector<TokenizerEntry> entries = {
      {"byte", [](const std::string&) { return std::make_unique<ByteTokenizer>(true); }},
      {"gpt2", [](const std::string& dir) { return std::make_unique<Gpt2Tokenizer>(dir); }},
  };
  return entries;
}

}  // namespace

std::vector<std::string> tokenizer_names() {
  std::vector<std::string> names;
  for (const TokenizerEntry& e : registry()) names.emplace_back(e.name);
  return names;
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name, const std::string& dir) {
  std::string valid;
  for (const TokenizerEntry& e : registry()) {
    if (name == e.name) return e.make(dir);
    valid += (valid.empty() ? "" : ", ") + std::string(e.name);
  }
  throw ConfigError(str("unknown tokenizer '", name, "'; valid tokenizers: ", valid));
}

}  // namespace dynamoe::text
