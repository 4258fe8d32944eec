// dynamoe tokenize: text -> token ids and back, with the GPT-2 BPE or the byte tokenizer.
#include <filesystem>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "dynamoe/data/fetch_gpt2.h"
#include "dynamoe/text/tokenizer.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::cli {
namespace fs = std::filesystem;
namespace {

int run(const ParsedArgs& a) {
  if (a.has("text") == a.has("file"))
    throw UsageError("dynamoe tokenize: give exactly one of --text STRING or --file PATH");
  const std::string name = a.get("tokenizer", "gpt2");
  const std::string dir = (fs::path(a.get("data-dir", "data")) / name).string();
  std::string why;
  if (name == "gpt2" && !data::gpt2_vocab_ready(dir, &why))
    throw Error(str("tokenizer gpt2: no vocabulary in '", dir, "' (", why, "); run: dynamoe data fetch gpt2"));
  const auto tok = text::make_tokenizer(name, dir);
  const std::string input = a.has("text") ? a.get("text") : read_file(a.get("file"));
  if (a.has("decode")) {
    std::vector<int32_t> ids;
    std::istringstream in(input);
    for (std::string w; in >> w;) {
      int64_t v = 0;
      size_t used = 0;
      try {
        v = std::stoll(w, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != w.size() || v < 0 || v >= tok->vocab_size())
        throw UsageError(str("dynamoe tokenize --decode: '", w, "' is not a token id of ", name, " (0 .. ",
                             tok->vocab_size() - 1, ")"));
      ids.push_back(static_cast<int32_t>(v));
    }
    std::cout << tok->decode(ids);
    return 0;
  }
  const std::vector<int32_t> ids = tok->encode(input);
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
  std::cout << "\n";
  std::cerr << name << ": " << input.size() << " bytes -> " << ids.size() << " tokens\n";
  return 0;
}

}  // namespace

Command tokenize_command() {
  return {{"tokenize",
           "text -> token ids (or ids -> text with --decode), GPT-2 byte-level BPE or bytes",
           "dynamoe tokenize (--text STRING | --file PATH) [--tokenizer gpt2|byte] [--decode] [--data-dir DIR]",
           "Prints the ids separated by spaces (and the counts on stderr); with --decode, reads ids\n"
           "and prints the bytes they stand for. gpt2 needs its vocabulary: dynamoe data fetch gpt2.\n"
           "Any bytes round-trip exactly: decode(encode(s)) == s.",
           {{"text", "STRING", "the input"},
            {"file", "PATH", "read the input from a file"},
            {"tokenizer", "NAME", "gpt2 (default) or byte"},
            {"decode", "", "the input is token ids; print their text"},
            {"data-dir", "DIR", "root data folder holding gpt2/ (default: data)"}},
           0},
          run};
}

}  // namespace dynamoe::cli
