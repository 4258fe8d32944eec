#pragma once
// `dynamoe data fetch <corpus>`: English text corpora for language modelling, from Debian
// packages, cleaned to plain text and tokenized into nanoGPT-style train.bin / val.bin.
//
//   corpus        Debian package   documents (paths inside the package)
//   python-docs   python3.11-doc   usr/share/doc/python3.11/html/_sources/**/*.rst.txt (reST)
//   kernel-docs   linux-doc-6.1    usr/share/doc/linux-doc-6.1/Documentation/**/*.rst.gz (reST,
//                                  gzipped; translations/ left out: not English)
//   jargon        jargon-text      usr/share/doc/jargon-text/jargon.txt.gz, one document per
//                                  lexicon entry or section ("<that path>#<headword or title>")
//
// Steps (docs/data.md): `apt-get download` + `dpkg-deb -x` in a temp dir (DebianPackage);
// clean each document (text::rst_to_text, text::split_jargon_file); sort by path; a document
// goes to val when fnv1a64(path) % 20 == 0, else to train; cache the clean text in
// <data_dir>/<corpus>/text/; tokenize on 2 threads with the end-of-text id after every
// document; write <data_dir>/<corpus>/<tokenizer>/{train.bin,val.bin,meta.json}, each
// atomically, meta.json last. Read the result with data::open_token_corpus (token_file.h).
//
// Usage:
//   dynamoe::data::FetchOptions opts;   // data_dir "data", force, log
//   std::string dir = dynamoe::data::fetch_corpus("python-docs", "gpt2", opts);
//   dynamoe::data::TokenCorpus c = dynamoe::data::open_token_corpus(dir);
#include <string>
#include <string_view>
#include <vector>

#include "dynamoe/data/fetch.h"

namespace dynamoe::data {

/// Registered corpus names, in registry order: {"python-docs", "kernel-docs", "jargon"}.
std::vector<std::string> corpus_names();

/// True when `name` is a registered corpus.
bool is_corpus(const std::string& name);

/// The Debian package of a corpus, e.g. "python3.11-doc". Throws dynamoe::Error listing the
/// valid names for an unknown one.
std::string corpus_package(const std::string& name);

/// The token folder of a corpus: <data_dir>/<name>/<tokenizer>.
std::string corpus_dir(const std::string& data_dir, const std::string& name, const std::string& tokenizer);

/// The clean-text cache of a corpus, shared by all tokenizers: <data_dir>/<name>/text
/// (train.txt and val.txt: the documents of each split in order, each followed by a NUL byte;
/// meta.json: package, version, cleaner version, per split the document paths, sizes and
/// checksums).
std::string corpus_text_dir(const std::string& data_dir, const std::string& name);

/// The split rule: a document goes to val when fnv1a64(path) % 20 == 0 (about 5%), where path
/// is its path inside the package (e.g. "usr/share/doc/python3.11/html/_sources/faq/gui.rst.txt").
bool is_val_document(std::string_view path);

/// One clean document.
struct CorpusDocument {
  /// Its path inside the package (plus "#key" for a part of a file).
  std::string path;
  /// Plain text, ending with "\n"; no NUL or other control bytes except tab and newline.
  std::string text;
};

/// The clean documents of corpus `name` in an unpacked package tree (the folder `dpkg-deb -x`
/// wrote into), sorted by path; documents whose clean text is empty are left out. Throws a
/// one-line dynamoe::Error when the tree lacks the corpus's folder or file, holds no document,
/// or a file cannot be read or decompressed.
std::vector<CorpusDocument> read_corpus_documents(const std::string& name, const std::string& package_root);

/// The core of fetch_corpus without the download: cleans and splits the documents of an
/// unpacked package tree, writes the text cache (corpus_text_dir) and the token folder
/// (corpus_dir) for `tokenizer` under opts.data_dir, and returns the token folder. The gpt2
/// vocabulary must already be in <data_dir>/gpt2 (fetch_corpus fetches it). Nothing is
/// written unless every document converted.
std::string convert_corpus_package(const std::string& name, const std::string& package_root,
                                   const std::string& package_version, const std::string& tokenizer,
                                   const FetchOptions& opts);

/// Fetches corpus `name` tokenized with `tokenizer` ("gpt2" or "byte") and returns its token
/// folder <data_dir>/<name>/<tokenizer>. Does nothing when that folder opens cleanly with
/// open_token_corpus (the cache) unless opts.force; reuses a valid clean-text cache (no
/// download) unless opts.force; fetches the gpt2 vocabulary into <data_dir>/gpt2 when missing.
/// Throws a one-line dynamoe::Error for an unknown corpus (listing the valid ones), an unknown
/// tokenizer (ConfigError), a missing apt-get, an unknown or unreachable package (with the hint
/// to run apt-get update) or unexpected package content.
std::string fetch_corpus(const std::string& name, const std::string& tokenizer, const FetchOptions& opts);

/// True when `dir` holds a token corpus that open_token_corpus accepts; else false with the
/// reason in *why (if given).
bool token_corpus_ready(const std::string& dir, std::string* why = nullptr);

}  // namespace dynamoe::data
