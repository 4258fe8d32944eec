#pragma once
// Multiple-choice evaluation by log-likelihood, as lm-evaluation-harness scores ARC, HellaSwag
// or PIQA: every choice is scored by the log-probability the model gives its tokens after the
// context; the prediction is the best choice (accuracy) or the best per byte of the choice
// (length-normalised accuracy, lm-evaluation-harness' acc_norm, with bytes for characters).
//
// File format (JSONL, one item per line; blank lines are skipped):
//   {"context": "The cat sat on the", "choices": [" mat.", " moon."], "label": 0}
// Optional: "domain" (a string; results are also reported per domain).
//
// Tokenisation follows lm-evaluation-harness: trailing spaces of the context move to the front
// of each choice, the choice's tokens are those of encode(context + choice) after the tokens of
// encode(context), and an empty context starts from the end-of-text token. When context and
// choice exceed the model's context window, the oldest context tokens are dropped.
//
//   auto items = read_multiple_choice("arc_easy.jsonl");
//   auto res = score_multiple_choice(items, *tok, [&](const at::Tensor& ids) { return lm->forward(ids); }, 256);
//   std::printf("acc %.4f  acc_norm %.4f\n", res.accuracy, res.accuracy_norm);
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dynamoe/text/tokenizer.h"

namespace dynamoe::eval {

struct MultipleChoiceItem {
  std::string context;
  std::vector<std::string> choices;
  int64_t label = 0;
  std::string domain;  ///< "" when the line has none
};

/// Reads a JSONL file of items. Every problem is a one-line dynamoe::Error naming the file and
/// line: not JSON, a missing or ill-typed field, fewer than 2 choices, a label out of range,
/// no item at all.
std::vector<MultipleChoiceItem> read_multiple_choice(const std::string& path);

/// Writes items as JSONL (atomically), the format read_multiple_choice reads.
void write_multiple_choice(const std::string& path, const std::vector<MultipleChoiceItem>& items);

/// One choice's score.
struct ChoiceScore {
  double logprob = 0;  ///< sum of log p(choice tokens | context)
  int64_t tokens = 0;  ///< tokens of the choice
  int64_t bytes = 0;   ///< bytes of the choice (after the moved spaces)
};

struct ItemScore {
  std::vector<ChoiceScore> choices;
  int64_t prediction = 0;       ///< argmax logprob (first on ties)
  int64_t prediction_norm = 0;  ///< argmax logprob / bytes
};

struct Accuracy {
  int64_t items = 0;
  double accuracy = 0, accuracy_norm = 0;
};

struct MultipleChoiceResult {
  std::vector<ItemScore> items;
  double accuracy = 0, accuracy_norm = 0;
  std::map<std::string, Accuracy> by_domain;  ///< items with a domain, per domain
};

/// ids [B, T] int64 -> logits [B, T, V] (any floating dtype). Called in no-grad mode.
using LogitsFn = std::function<at::Tensor(const at::Tensor& ids)>;

/// Scores every item (its choices as one batch, right-padded). `max_context`: the model's
/// context window in tokens. Throws dynamoe::Error when a choice encodes to no token or the
/// tokenizer has no end-of-text token for an empty context.
MultipleChoiceResult score_multiple_choice(const std::vector<MultipleChoiceItem>& items, const text::Tokenizer& tok,
                                           const LogitsFn& logits, int64_t max_context);

}  // namespace dynamoe::eval
