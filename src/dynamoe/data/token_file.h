#pragma once
// Token corpora on disk: nanoGPT-style train.bin / val.bin (uint16 little-endian token ids,
// each document followed by the tokenizer's end-of-text id) plus meta.json, read through a
// read-only memory map. Written by data::fetch_corpus (data/corpus.h); format in docs/data.md.
//
// Usage:
//   dynamoe::data::TokenCorpus c = dynamoe::data::open_token_corpus("data/python-docs/gpt2");
//   const uint16_t* ids = c.train.data();   // c.train.size() ids, each < c.vocab_size
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dynamoe::data {

/// A read-only memory-mapped file of uint16 token ids (host order = little-endian here).
class TokenFile {
 public:
  /// Maps `path`. Throws a one-line dynamoe::Error naming the file when it cannot be opened or
  /// mapped, or when its size is odd (not whole uint16 ids).
  explicit TokenFile(const std::string& path);
  ~TokenFile();
  TokenFile(TokenFile&& other) noexcept;
  TokenFile& operator=(TokenFile&& other) noexcept;
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  /// Number of token ids in the file.
  int64_t size() const { return size_; }
  /// The ids (nullptr for an empty file); valid as long as the object.
  const uint16_t* data() const { return data_; }
  /// The file's path as given.
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  const uint16_t* data_ = nullptr;
  int64_t size_ = 0;
  size_t mapped_bytes_ = 0;
};

/// A tokenized corpus folder: train.bin, val.bin and meta.json.
struct TokenCorpus {
  TokenFile train, val;
  /// meta.json as written by fetch_corpus (format, corpus, debian_package, package_version,
  /// tokenizer, vocab_size, eot_id, splits.{train,val}.{documents,tokens,text_bytes,checksum}).
  nlohmann::json meta;
  int32_t vocab_size = 0, eot_id = 0;
  std::string tokenizer, dir;
};

/// Opens <dir>/{train,val}.bin + meta.json and checks them: meta.json parses and has the
/// fields above, each file's size is 2 x its token count in meta, its fnv1a64 checksum matches,
/// every id is < vocab_size. Any failure: a one-line dynamoe::Error naming the file and what is
/// wrong, e.g. "data/python-docs/gpt2/val.bin: 1234567 bytes, expected 2 x 617284 tokens
/// (truncated?)" or "...train.bin: token 51234 at position 99 is out of range for vocab 50257".
/// eot_id must be a token of the vocabulary, and the tokenizer `expected_tokenizer` unless empty.
TokenCorpus open_token_corpus(const std::string& dir, const std::string& expected_tokenizer = "");

/// Writes `ids` as uint16 little-endian to `path`, atomically (temp file + rename). Throws
/// dynamoe::Error naming the position of the first id outside 0..65535 (nothing is written).
void write_token_file(const std::string& path, const std::vector<int32_t>& ids);

/// fnv1a64 of the file's bytes as 16 hex digits (the checksum in meta.json).
std::string token_file_checksum(const TokenFile& f);

}  // namespace dynamoe::data
