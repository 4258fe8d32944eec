// GPT-2's byte-level BPE: any bytes in, ids out, every id inside the vocabulary, and decode gives
// the input back exactly. The vocabulary is a small one in GPT-2's file format (the 256 byte
// tokens, merges that chain into long tokens, <|endoftext|>), written once to the scratch folder.
#include "../fuzz_target.h"

#include <nlohmann/json.hpp>

#include <array>
#include <map>
#include <memory>

#include "dynamoe/text/gpt2_tokenizer.h"

namespace {

// `bytes` in GPT-2's byte alphabet, UTF-8 encoded, as encoder.json and vocab.bpe write tokens.
std::string gpt2_chars(const std::string& bytes) {
  static const std::array<char32_t, 256> b2u = dynamoe::text::gpt2_bytes_to_unicode();
  std::string out;
  for (unsigned char c : bytes) {
    const char32_t u = b2u[c];
    if (u < 0x80) {
      out += static_cast<char>(u);
    } else {  // every code point of the alphabet is below U+0800
      out += static_cast<char>(0xC0 | (u >> 6));
      out += static_cast<char>(0x80 | (u & 0x3F));
    }
  }
  return out;
}

const dynamoe::text::Gpt2Tokenizer& tokenizer() {
  static const std::unique_ptr<dynamoe::text::Gpt2Tokenizer> tok = [] {
    const std::vector<std::pair<std::string, std::string>> merges = {
        {" ", "t"}, {"h", "e"}, {" t", "he"}, {"i", "n"}, {"e", "r"}, {" ", "a"}, {"o", "n"}, {"in", "g"},
        {"'", "s"}, {" ", " "}, {"  ", "  "}, {"\xC3", "\xA9"}, {"1", "2"}, {"12", "3"}, {"\"", ","}, {"\n", "\n"}};
    std::map<std::string, int32_t> id;
    for (int b = 0; b < 256; ++b) id[std::string(1, static_cast<char>(b))] = b;
    for (const auto& [l, r] : merges) id.emplace(l + r, static_cast<int32_t>(id.size()));
    nlohmann::json enc = nlohmann::json::object();
    for (const auto& [bytes, i] : id) enc[gpt2_chars(bytes)] = i;
    enc["<|endoftext|>"] = static_cast<int32_t>(id.size());
    std::string bpe = "#version: 0.2\n";
    for (const auto& [l, r] : merges) bpe += gpt2_chars(l) + " " + gpt2_chars(r) + "\n";
    dynamoe::fuzz::scratch_file("encoder.json", enc.dump());
    dynamoe::fuzz::scratch_file("vocab.bpe", bpe);
    return std::make_unique<dynamoe::text::Gpt2Tokenizer>(dynamoe::fuzz::scratch_dir());
  }();
  return *tok;
}

}  // namespace

DYNAMOE_FUZZ_TARGET(gpt2_tokenizer) {
  const auto& tok = tokenizer();
  const std::string text = dynamoe::fuzz::text(data, size);
  const std::vector<int32_t> ids = tok.encode(text);
  for (int32_t i : ids) {
    if (i < 0 || i >= tok.vocab_size()) {
      std::fprintf(stderr, "fuzz: id %d outside the vocabulary of %d\n", i, tok.vocab_size());
      std::abort();
    }
  }
  if (tok.decode(ids) != text) {
    std::fprintf(stderr, "fuzz: decode(encode(text)) != text (%zu bytes, %zu ids)\n", size, ids.size());
    std::abort();
  }
}
