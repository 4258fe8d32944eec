#pragma once
// GPT-2's byte-level BPE tokenizer, giving the same ids as the npm package gpt-3-encoder
// (Encoder.js, a port of OpenAI's encoder.py) for valid UTF-8 text (but see the note on Unicode
// versions below).
//
// encode(text):
//   1. pre-tokenize with GPT-2's regex (PCRE2, UTF + UCP, JIT when available)
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      where \s is JavaScript's \s (as in gpt-3-encoder): tab, LF, VT, FF, CR and U+0020,
//      U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF;
//   2. each piece's bytes become one symbol each (bytes_to_unicode), then BPE: repeatedly take
//      the adjacent pair with the lowest merge rank and merge all its occurrences left to right;
//   3. each final symbol is looked up in encoder.json.
// Bytes that are not valid UTF-8 (stray continuation bytes, cut-short characters, overlong
// forms, surrogates, > U+10FFFF) are kept out of the regex: each maximal run of them is a piece
// of its own, BPE'd like any other, so no byte is lost and decode(encode(s)) == s for any bytes.
// The regex sees each valid stretch as a whole subject, which cuts it exactly as
// PCRE2_MATCH_INVALID_UTF would. gpt-3-encoder works on JavaScript strings and has no
// counterpart for such bytes.
//
// \p{L} and \p{N} follow the Unicode version of the PCRE2 library (10.42: Unicode 14), node's
// follow its ICU (node 20 with ICU 78: Unicode 17): the 14,049 code points that became letters
// or numbers in between (16 of them in the BMP, 9,131 CJK ideographs of planes 2-3) are cut
// differently; all other text gives the same ids.
//
// gpt-3-encoder's merge ranks are keyed by the string "left,right", so a pair whose
// comma-joined text equals a merge's (e.g. '",' + '"' and '"' + ',"') gets that merge's rank;
// this is reproduced (11 such pairs in GPT-2's vocab.bpe), as is its choice among pairs of
// equal rank (the last one in the word). OpenAI's encoder.py keys by the pair itself. On English
// text, JSON and 300,000 random strings of punctuation the two give the same ids.
//
// Usage:
//   dynamoe::text::Gpt2Tokenizer tok("data/gpt2");  // encoder.json + vocab.bpe
//   tok.encode("Hello world");                      // {15496, 995}
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dynamoe/text/tokenizer.h"

namespace dynamoe::text {

/// GPT-2's byte-level BPE; registered as "gpt2".
class Gpt2Tokenizer final : public Tokenizer {
 public:
  /// Loads <dir>/encoder.json and <dir>/vocab.bpe.
  explicit Gpt2Tokenizer(const std::string& dir);
  /// Loads the two files from explicit paths. Throws a one-line dynamoe::Error naming the file
  /// and what is wrong with it (missing, invalid JSON, an id that is not 0..n-1 exactly once, a
  /// token outside the byte alphabet, a malformed merge line, a merge whose parts or result are
  /// not in encoder.json, a vocab.bpe without its "#version" line or final newline).
  Gpt2Tokenizer(const std::string& encoder_json_path, const std::string& vocab_bpe_path);
  ~Gpt2Tokenizer() override;
  Gpt2Tokenizer(const Gpt2Tokenizer&) = delete;
  Gpt2Tokenizer& operator=(const Gpt2Tokenizer&) = delete;

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override;
  std::string name() const override { return "gpt2"; }
  /// The id of "<|endoftext|>" in encoder.json (50256 for GPT-2), if it is there.
  std::optional<int32_t> eot_id() const override;

  /// Number of merges read from vocab.bpe (50,000 for GPT-2).
  int32_t n_merges() const;

  /// The pieces encode's step 1 cuts `text` into (views into `text`), runs of invalid UTF-8
  /// included; their concatenation is `text`.
  std::vector<std::string_view> pretokenize(std::string_view text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// GPT-2's bytes_to_unicode: the printable code point that stands for each byte in encoder.json
/// and vocab.bpe ('!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves; the other 68
/// bytes, in order, for U+0100..U+0143, e.g. ' ' -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
std::array<char32_t, 256> gpt2_bytes_to_unicode();

}  // namespace dynamoe::text
