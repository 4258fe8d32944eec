#include "dynamoe/data/corpus.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <thread>
#include <utility>

#include "dynamoe/data/deb_package.h"
#include "dynamoe/data/token_file.h"
#include "dynamoe/data/fetch_gpt2.h"
#include "dynamoe/text/jargon_text.h"
#include "dynamoe/text/rst_text.h"
#include "dynamoe/text/tokenizer.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/gzip.h"
#include "dynamoe/util/hash.h"
#include "dynamoe/util/process.h"

namespace dynamoe::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Bump when a cleaning rule changes: caches written by another version are rebuilt.
constexpr int kCleanerVersion = 1;
// Threads for cleaning and tokenizing.
constexpr int kThreads = 2;
constexpr const char* kSplits[] = {"train", "val"};

// ---------------------------------------------------------------------------------------------
// The registry of corpora.

enum class DocFormat {
  kRstFiles,    // every file under `dir` whose name ends with one of `suffixes` is a reST document
  kJargonFile,  // the file `dir`/`file` is the Jargon File, one document per entry or section
};

struct CorpusSpec {
  const char* name;
  const char* package;  // Debian package
  const char* dir;      // inside the package
  DocFormat format;
  std::vector<const char*> suffixes;  // kRstFiles: document file name endings (.gz is decompressed)
  std::vector<const char*> exclude;   // kRstFiles: subfolders of `dir` left out
  const char* file;                   // kJargonFile: the file in `dir`
};

const std::vector<CorpusSpec>& registry() {
  static const std::vector<CorpusSpec> corpora = {
      {"python-docs", "python3.11-doc", "usr/share/doc/python3.11/html/_sources", DocFormat::kRstFiles,
       {".rst.txt"}, {}, nullptr},
      {"kernel-docs", "linux-doc-6.1", "usr/share/doc/linux-doc-6.1/Documentation", DocFormat::kRstFiles,
       {".rst.gz", ".rst"}, {"translations"}, nullptr},
      {"jargon", "jargon-text", "usr/share/doc/jargon-text", DocFormat::kJargonFile, {}, {}, "jargon.txt.gz"},
  };
  return corpora;
}

const CorpusSpec& find_corpus(const std::string& name) {
  std::string valid;
  for (const CorpusSpec& c : registry()) {
    if (name == c.name) return c;
    valid += (valid.empty() ? "" : ", ") + std::string(c.name);
  }
  throw Error(str("unknown corpus '", name, "'; valid corpora: ", valid));
}

// ---------------------------------------------------------------------------------------------
// Helpers.

// Runs fn(i) for i in [0, n) on kThreads threads (dynamic scheduling); rethrows the first error.
template <typename Fn>
void parallel_for(size_t n, Fn fn) {
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&]() {
    for (size_t i = next++; i < n; i = next++) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < kThreads; ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

// Drops NUL and the other control bytes except tab and newline; ends a non-empty text with "\n".
std::string sanitize(std::string text) {
  text.erase(std::remove_if(text.begin(), text.end(),
                            [](char c) { return static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t'; }),
             text.end());
  if (text.find_first_not_of(" \t\n") == std::string::npos) return "";
  if (text.back() != '\n') text += '\n';
  return text;
}

std::string file_text(const std::string& path) {
  std::string bytes = read_file(path);
  if (is_gzip(bytes)) bytes = gunzip(bytes, str("'", path, "'"));
  return bytes;
}

bool has_suffix(const std::string& s, const char* suffix) {
  const size_t n = std::char_traits<char>::length(suffix);
  return s.size() > n && s.compare(s.size() - n, n, suffix) == 0;
}

// The clean documents split by is_val_document, each split in path order.
struct CorpusText {
  std::string corpus, package, version;
  std::vector<CorpusDocument> split[2];  // train, val
};

int64_t text_bytes(const std::vector<CorpusDocument>& docs) {
  int64_t n = 0;
  for (const CorpusDocument& d : docs) n += static_cast<int64_t>(d.text.size());
  return n;
}

CorpusText split_documents(const CorpusSpec& spec, const std::string& version, std::vector<CorpusDocument> docs) {
  CorpusText t{spec.name, spec.package, version, {}};
  for (CorpusDocument& d : docs) t.split[is_val_document(d.path) ? 1 : 0].push_back(std::move(d));
  return t;
}

std::string split_summary(const CorpusText& t) {
  return str("train ", t.split[0].size(), " documents (", megabytes(static_cast<uintmax_t>(text_bytes(t.split[0]))),
             "), val ", t.split[1].size(), " documents (",
             megabytes(static_cast<uintmax_t>(text_bytes(t.split[1]))), ")");
}

std::string dump_json(const json& j) { return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n"; }

// ---------------------------------------------------------------------------------------------
// The clean-text cache: <data_dir>/<corpus>/text/{train.txt,val.txt,meta.json}.

void write_text_cache(const std::string& dir, const CorpusText& t, std::ostream* log, const std::string& tag) {
  json meta = {
      {"format", "dynamoe clean text 1: <split>.txt holds the split's documents in order, each followed by a NUL byte"},
      {"corpus", t.corpus},
      {"debian_package", t.package},
      {"package_version", t.version},
      {"cleaner_version", kCleanerVersion},
      {"split_rule", "by document: val when fnv1a64(path inside the package) % 20 == 0, else train"},
  };
  for (int s = 0; s < 2; ++s) {
    std::string bytes;
    bytes.reserve(static_cast<size_t>(text_bytes(t.split[s])) + t.split[s].size());
    json paths = json::array();
    for (const CorpusDocument& d : t.split[s]) {
      bytes += d.text;
      bytes += '\0';
      paths.push_back(d.path);
    }
    const std::string file = str(kSplits[s], ".txt");
    write_file_atomic((fs::path(dir) / file).string(), bytes);
    meta["splits"][kSplits[s]] = {{"file", file},
                                  {"documents", t.split[s].size()},
                                  {"text_bytes", text_bytes(t.split[s])},
                                  {"checksum", fnv1a64_hex(bytes)},
                                  {"paths", paths}};
  }
  write_file_atomic((fs::path(dir) / "meta.json").string(), dump_json(meta));
  log_line(log, str(tag, "wrote the clean text to ", dir, "/{train,val}.txt"));
}

// Reads a text cache written by write_text_cache for `spec`; throws naming what is wrong.
CorpusText read_text_cache(const std::string& dir, const CorpusSpec& spec) {
  const std::string meta_path = (fs::path(dir) / "meta.json").string();
  std::error_code ec;
  DYNAMOE_CHECK(fs::is_regular_file(meta_path, ec), "missing '", meta_path, "'");
  json meta;
  try {
    meta = json::parse(read_file(meta_path));
    DYNAMOE_CHECK(meta.at("corpus").get<std::string>() == spec.name, meta_path, ": corpus is '",
                  meta.at("corpus").get<std::string>(), "', expected '", spec.name, "'");
    DYNAMOE_CHECK(meta.at("cleaner_version").get<int>() == kCleanerVersion, meta_path, ": written by cleaner version ",
                  meta.at("cleaner_version").get<int>(), ", this is version ", kCleanerVersion);
    CorpusText t{spec.name, meta.at("debian_package").get<std::string>(), meta.at("package_version").get<std::string>(),
                 {}};
    for (int s = 0; s < 2; ++s) {
      const json& m = meta.at("splits").at(kSplits[s]);
      const std::string path = (fs::path(dir) / m.at("file").get<std::string>()).string();
      const std::string bytes = read_file(path);
      DYNAMOE_CHECK(fnv1a64_hex(bytes) == m.at("checksum").get<std::string>(), path, ": checksum does not match ",
                    meta_path);
      const auto& paths = m.at("paths");
      size_t pos = 0;
      for (const auto& p : paths) {
        const size_t end = bytes.find('\0', pos);
        DYNAMOE_CHECK(end != std::string::npos, path, ": fewer documents than the ", paths.size(), " in ", meta_path);
        t.split[s].push_back({p.get<std::string>(), bytes.substr(pos, end - pos)});
        pos = end + 1;
      }
      DYNAMOE_CHECK(pos == bytes.size(), path, ": more documents than the ", paths.size(), " in ", meta_path);
    }
    return t;
  } catch (const json::exception& e) {
    throw Error(str(meta_path, ": unexpected content (", e.what(), ")"));
  }
}

// ---------------------------------------------------------------------------------------------
// Tokenizing.

// Writes <out_dir>/{train.bin,val.bin,meta.json} (meta last) and returns the meta.
json write_token_corpus(const std::string& out_dir, const CorpusText& t, const text::Tokenizer& tok,
                        std::ostream* log, const std::string& tag) {
  const std::optional<int32_t> eot = tok.eot_id();
  DYNAMOE_CHECK(eot.has_value(), "tokenizer '", tok.name(), "' has no end-of-text id to separate documents");
  DYNAMOE_CHECK(tok.vocab_size() <= 65536, "tokenizer '", tok.name(), "' has ", tok.vocab_size(),
                " ids, more than uint16 token files hold (65536)");
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> ids[2];
  for (int s = 0; s < 2; ++s) {
    const std::vector<CorpusDocument>& docs = t.split[s];
    std::vector<std::vector<int32_t>> per_doc(docs.size());
    parallel_for(docs.size(), [&](size_t i) { per_doc[i] = tok.encode(docs[i].text); });
    size_t total = 0;
    for (const auto& d : per_doc) total += d.size() + 1;
    ids[s].reserve(total);
    for (auto& d : per_doc) {
      ids[s].insert(ids[s].end(), d.begin(), d.end());
      ids[s].push_back(*eot);
      std::vector<int32_t>().swap(d);
    }
  }
  log_line(log, str(tag, "tokenized with ", tok.name(), " in ", seconds_since(t0), ": train ", ids[0].size(),
                    " tokens, val ", ids[1].size(), " tokens (end-of-text ", *eot, " after each document)"));
  json meta = {
      {"format", "dynamoe token corpus 1: <split>.bin holds uint16 little-endian token ids; every document is "
                 "followed by eot_id"},
      {"corpus", t.corpus},
      {"debian_package", t.package},
      {"package_version", t.version},
      {"cleaner_version", kCleanerVersion},
      {"tokenizer", tok.name()},
      {"vocab_size", tok.vocab_size()},
      {"eot_id", *eot},
      {"split_rule", "by document: val when fnv1a64(path inside the package) % 20 == 0, else train; documents in "
                     "path order"},
  };
  for (int s = 0; s < 2; ++s) {
    const std::string file = str(kSplits[s], ".bin");
    const std::string path = (fs::path(out_dir) / file).string();
    write_token_file(path, ids[s]);
    meta["splits"][kSplits[s]] = {{"file", file},
                                  {"documents", t.split[s].size()},
                                  {"tokens", ids[s].size()},
                                  {"text_bytes", text_bytes(t.split[s])},
                                  {"checksum", token_file_checksum(TokenFile(path))}};
    log_line(log, str(tag, "wrote ", path, " (", ids[s].size(), " tokens)"));
  }
  write_file_atomic((fs::path(out_dir) / "meta.json").string(), dump_json(meta));
  return meta;
}

// The token cache is usable: it opens cleanly and was made from this corpus, tokenizer and
// cleaner version.
bool token_cache_ok(const std::string& dir, const std::string& name, const std::string& tokenizer, std::string* why) {
  try {
    const TokenCorpus c = open_token_corpus(dir);
    const json& m = c.meta;
    if (m.value("corpus", "") != name || c.tokenizer != tokenizer) {
      *why = str(dir, " holds corpus '", m.value("corpus", ""), "' with tokenizer '", c.tokenizer, "'");
      return false;
    }
    if (m.value("cleaner_version", -1) != kCleanerVersion) {
      *why = str(dir, " was written by cleaner version ", m.value("cleaner_version", -1), ", this is version ",
                 kCleanerVersion);
      return false;
    }
  } catch (const std::exception& e) {
    *why = e.what();
    return false;
  }
  return true;
}

std::unique_ptr<text::Tokenizer> load_tokenizer(const std::string& tokenizer, const FetchOptions& opts) {
  return text::make_tokenizer(tokenizer, (fs::path(opts.data_dir) / "gpt2").string());
}

// Throws make_tokenizer's ConfigError (listing the valid names) for an unknown tokenizer.
void check_tokenizer_name(const std::string& tokenizer) {
  const std::vector<std::string> names = text::tokenizer_names();
  if (std::find(names.begin(), names.end(), tokenizer) == names.end()) text::make_tokenizer(tokenizer, "");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API.

std::vector<std::string> corpus_names() {
  std::vector<std::string> names;
  for (const CorpusSpec& c : registry()) names.emplace_back(c.name);
  return names;
}

bool is_corpus(const std::string& name) {
  const std::vector<std::string> names = corpus_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string corpus_package(const std::string& name) { return find_corpus(name).package; }

std::string corpus_dir(const std::string& data_dir, const std::string& name, const std::string& tokenizer) {
  return (fs::path(data_dir) / name / tokenizer).string();
}

std::string corpus_text_dir(const std::string& data_dir, const std::string& name) {
  return (fs::path(data_dir) / name / "text").string();
}

bool is_val_document(std::string_view path) { return fnv1a64(path) % 20 == 0; }

std::vector<CorpusDocument> read_corpus_documents(const std::string& name, const std::string& package_root) {
  const CorpusSpec& spec = find_corpus(name);
  const fs::path dir = fs::path(package_root) / spec.dir;
  std::error_code ec;
  DYNAMOE_CHECK(fs::is_directory(dir, ec), "unexpected layout of package '", spec.package, "' in '", package_root,
                "': no folder ", spec.dir);
  std::vector<CorpusDocument> docs;
  if (spec.format == DocFormat::kJargonFile) {
    const fs::path file = dir / spec.file;
    DYNAMOE_CHECK(fs::is_regular_file(file, ec), "unexpected layout of package '", spec.package, "' in '",
                  package_root, "': no file ", spec.dir, "/", spec.file);
    const std::string rel = str(spec.dir, "/", spec.file);
    for (text::JargonDocument& d : text::split_jargon_file(file_text(file.string()))) {
      std::string t = sanitize(std::move(d.text));
      if (!t.empty()) docs.push_back({rel + "#" + d.key, std::move(t)});
    }
  } else {
    std::vector<std::string> rel_paths;  // relative to the package root
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      const std::string rel = fs::path(it->path()).lexically_relative(dir).generic_string();
      if (it->is_directory(ec)) {
        if (std::find(spec.exclude.begin(), spec.exclude.end(), rel) != spec.exclude.end()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_symlink(ec) || !it->is_regular_file(ec)) continue;
      if (std::any_of(spec.suffixes.begin(), spec.suffixes.end(), [&](const char* s) { return has_suffix(rel, s); }))
        rel_paths.push_back(str(spec.dir, "/", rel));
    }
    DYNAMOE_CHECK(!ec, "cannot list '", dir.string(), "': ", ec.message());
    std::sort(rel_paths.begin(), rel_paths.end());
    std::vector<std::string> texts(rel_paths.size());
    parallel_for(rel_paths.size(), [&](size_t i) {
      texts[i] = sanitize(text::rst_to_text(file_text((fs::path(package_root) / rel_paths[i]).string())));
    });
    for (size_t i = 0; i < rel_paths.size(); ++i)
      if (!texts[i].empty()) docs.push_back({std::move(rel_paths[i]), std::move(texts[i])});
  }
  std::sort(docs.begin(), docs.end(), [](const CorpusDocument& a, const CorpusDocument& b) { return a.path < b.path; });
  DYNAMOE_CHECK(!docs.empty(), "package '", spec.package, "' in '", package_root, "' holds no documents of corpus '",
                name, "' under ", spec.dir);
  return docs;
}

bool token_corpus_ready(const std::string& dir, std::string* why) {
  try {
    open_token_corpus(dir);
    return true;
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return false;
  }
}

std::string convert_corpus_package(const std::string& name, const std::string& package_root,
                                   const std::string& package_version, const std::string& tokenizer,
                                   const FetchOptions& opts) {
  const CorpusSpec& spec = find_corpus(name);
  const std::string tag = str("fetch ", name, ": ");
  const auto tok = load_tokenizer(tokenizer, opts);
  const auto t0 = std::chrono::steady_clock::now();
  CorpusText text = split_documents(spec, package_version, read_corpus_documents(name, package_root));
  log_line(opts.log, str(tag, "cleaned ", text.split[0].size() + text.split[1].size(), " documents in ",
                         seconds_since(t0), ": ", split_summary(text)));
  write_text_cache(corpus_text_dir(opts.data_dir, name), text, opts.log, tag);
  const std::string out_dir = corpus_dir(opts.data_dir, name, tokenizer);
  write_token_corpus(out_dir, text, *tok, opts.log, tag);
  return out_dir;
}

std::string fetch_corpus(const std::string& name, const std::string& tokenizer, const FetchOptions& opts) {
  const CorpusSpec& spec = find_corpus(name);
  check_tokenizer_name(tokenizer);
  const std::string out_dir = corpus_dir(opts.data_dir, name, tokenizer);
  const std::string tag = str("fetch ", name, ": ");
  std::ostream* log = opts.log;
  const auto t0 = std::chrono::steady_clock::now();

  if (!opts.force) {
    std::string why;
    if (token_cache_ok(out_dir, name, tokenizer, &why)) {
      log_line(log, str(tag, "'", out_dir, "' already holds train.bin, val.bin and meta.json; nothing to do ",
                        "(use --force to fetch again)"));
      return out_dir;
    }
    std::error_code ec;
    if (fs::exists(out_dir, ec)) log_line(log, str(tag, "cache not usable (", why, "); building it again"));
  }
  if (tokenizer == "gpt2") {
    FetchOptions vocab_opts = opts;
    vocab_opts.force = false;
    data::fetch_gpt2_vocab(vocab_opts);
  }
  const auto tok = load_tokenizer(tokenizer, opts);

  const std::string text_dir = corpus_text_dir(opts.data_dir, name);
  CorpusText text;
  bool cached = false;
  if (!opts.force) {
    try {
      text = read_text_cache(text_dir, spec);
      cached = true;
      log_line(log, str(tag, "using the clean text in ", text_dir, " (", spec.package, " ", text.version, "): ",
                        split_summary(text)));
    } catch (const Error& e) {
      std::error_code ec;
      if (fs::exists(text_dir, ec)) log_line(log, str(tag, "clean-text cache not usable (", e.what(), ")"));
    }
  }
  if (!cached) {
    const DebianPackage pkg(spec.package, log, tag);
    const auto t1 = std::chrono::steady_clock::now();
    std::vector<CorpusDocument> docs;
    try {
      docs = read_corpus_documents(name, pkg.root());
    } catch (const Error& e) {
      throw Error(str("unexpected content in Debian package '", spec.package, "' ", pkg.version(), ": ", e.what()));
    }
    text = split_documents(spec, pkg.version(), std::move(docs));
    log_line(log, str(tag, "cleaned ", text.split[0].size() + text.split[1].size(), " documents in ",
                      seconds_since(t1), ": ", split_summary(text)));
    write_text_cache(text_dir, text, log, tag);
  }
  write_token_corpus(out_dir, text, *tok, log, tag);
  log_line(log, str(tag, "done in ", seconds_since(t0), ": '", out_dir, "'"));
  return out_dir;
}

}  // namespace dynamoe::data
