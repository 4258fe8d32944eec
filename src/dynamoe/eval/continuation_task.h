#pragma once
// A multiple-choice task built from held-out text: "which continuation is the real one?".
// Each item takes `context` tokens of the val split at a random place; its choices are the
// `continuation` tokens that really follow and `choices - 1` spans of the same length from
// elsewhere in the same split (the distractors), in random order. The items are a pure
// function of (tokens, options): every run of a study scores the same items.
//
//   auto items = continuation_task(corpus.val, *tok, {200, 4, 96, 32, 1234, "jargon"});
//   write_multiple_choice("mc.jsonl", items);   // the JSONL of multiple_choice.h
#include <cstdint>
#include <string>
#include <vector>

#include "dynamoe/data/token_file.h"
#include "dynamoe/eval/multiple_choice.h"
#include "dynamoe/text/tokenizer.h"

namespace dynamoe::eval {

struct ContinuationTaskOptions {
  int64_t items = 200;
  int64_t choices = 4;
  int64_t context = 96;        ///< tokens
  int64_t continuation = 32;   ///< tokens of every choice
  uint64_t seed = 1234;
  std::string domain;          ///< written into each item
};

/// Builds the items. Item positions never overlap one another; a distractor never overlaps its
/// item's window and never equals the real continuation; items whose text is not valid UTF-8
/// are skipped (so that the JSONL file holds exactly the scored bytes). Throws dynamoe::Error
/// when the split is too short for the items asked.
std::vector<MultipleChoiceItem> continuation_task(const data::TokenFile& tokens, const text::Tokenizer& tok,
                                                  const ContinuationTaskOptions& o);

/// True when `s` is valid UTF-8.
bool valid_utf8(const std::string& s);

}  // namespace dynamoe::eval
