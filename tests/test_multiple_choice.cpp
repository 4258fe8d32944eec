// Multiple-choice scoring by log-likelihood (src/dynamoe/eval/multiple_choice): exact scores of
// a model with known next-token probabilities, accuracy vs length-normalised accuracy, batching
// and truncation against one sequence at a time, lm-evaluation-harness' space rule, the JSONL
// format and its errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "dynamoe/eval/multiple_choice.h"
#include "dynamoe/models/hf/llama.h"
#include "dynamoe/models/hf/llama_config.h"
#include "dynamoe/text/tokenizer.h"
#include "dynamoe/util/atomic_file.h"
#include "test_util.h"

using namespace dynamoe;
using namespace dynamoe::eval;

namespace {

/// A "model" whose next byte does not depend on the context: p('a') = 1/2, p('b') = 1/4, the
/// other 255 ids share the rest.
at::Tensor fixed_logits(const at::Tensor& ids) {
  at::Tensor p = torch::full({257}, 0.25 / 255, torch::kDouble);
  p[static_cast<int64_t>('a')] = 0.5;
  p[static_cast<int64_t>('b')] = 0.25;
  return p.log().expand({ids.size(0), ids.size(1), 257}).clone();
}

TEST(MultipleChoice, ScoresAreLogLikelihoodsAndNormalisationIsPerByte) {
  auto tok = text::make_tokenizer("byte", "");
  // "aaaa": 4 log(1/2) = -2.77 in all, -0.69 per byte; "b": log(1/4) = -1.39 in all and per byte.
  std::vector<MultipleChoiceItem> items = {{"xy", {"aaaa", "b"}, 0, "d1"}, {"xy", {"aaaa", "b"}, 1, "d2"}};
  const MultipleChoiceResult r = score_multiple_choice(items, *tok, fixed_logits, 64);
  ASSERT_EQ(r.items.size(), 2u);
  EXPECT_NEAR(r.items[0].choices[0].logprob, 4 * std::log(0.5), 1e-12);
  EXPECT_NEAR(r.items[0].choices[1].logprob, std::log(0.25), 1e-12);
  EXPECT_EQ(r.items[0].choices[0].tokens, 4);
  EXPECT_EQ(r.items[0].choices[0].bytes, 4);
  EXPECT_EQ(r.items[0].prediction, 1) << "higher total log-likelihood";
  EXPECT_EQ(r.items[0].prediction_norm, 0) << "higher log-likelihood per byte";
  EXPECT_DOUBLE_EQ(r.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(r.accuracy_norm, 0.5);
  EXPECT_DOUBLE_EQ(r.by_domain.at("d1").accuracy, 0.0);
  EXPECT_DOUBLE_EQ(r.by_domain.at("d1").accuracy_norm, 1.0);
  EXPECT_DOUBLE_EQ(r.by_domain.at("d2").accuracy, 1.0);
  EXPECT_EQ(r.by_domain.at("d2").items, 1);
}

TEST(MultipleChoice, TrailingSpacesOfTheContextMoveToTheChoice) {
  auto tok = text::make_tokenizer("byte", "");
  const MultipleChoiceResult r = score_multiple_choice({{"the cat  ", {"a", "bb"}, 0, ""}}, *tok, fixed_logits, 64);
  EXPECT_EQ(r.items[0].choices[0].tokens, 3);  // "  a"
  EXPECT_EQ(r.items[0].choices[0].bytes, 3);
  EXPECT_NEAR(r.items[0].choices[0].logprob, 2 * std::log(0.25 / 255) + std::log(0.5), 1e-12);
}

/// A small random LLaMA-layout model over the byte vocabulary, the real thing that is scored.
models::hf::LlamaForCausalLM byte_model() {
  torch::manual_seed(3);
  models::hf::LlamaForCausalLM lm(models::hf::parse_llama_config(
      R"({"model_type": "llama", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 257, "max_position_embeddings": 64,
          "rms_norm_eps": 1e-5, "hidden_act": "silu"})"));
  lm->eval();
  return lm;
}

/// log p(choice | context) from one unpadded sequence.
double one_sequence(models::hf::LlamaForCausalLMImpl& lm, const std::string& context, const std::string& choice,
                    int64_t keep_last) {
  std::vector<int64_t> seq;
  for (unsigned char c : context + choice) seq.push_back(c);
  if (keep_last > 0 && static_cast<int64_t>(seq.size()) > keep_last) seq.erase(seq.begin(), seq.end() - keep_last);
  const int64_t T = static_cast<int64_t>(seq.size()) - 1;
  const at::Tensor ids = torch::tensor(seq, torch::kLong).unsqueeze(0);
  torch::NoGradGuard g;
  const at::Tensor logp = torch::log_softmax(lm.forward(ids.narrow(1, 0, T)).to(torch::kDouble), -1)[0];
  double s = 0;
  for (int64_t t = T - static_cast<int64_t>(choice.size()); t < T; ++t) s += logp[t][seq[t + 1]].item<double>();
  return s;
}

TEST(MultipleChoice, BatchedChoicesScoreAsOneSequenceEachAndTruncateTheOldestContext) {
  auto lm = byte_model();
  auto tok = text::make_tokenizer("byte", "");
  auto logits = [&](const at::Tensor& ids) { return lm->forward(ids); };
  const std::vector<MultipleChoiceItem> items = {
      {"Hello, wor", {"ld", "m", "dly things"}, 0, ""},
      {std::string(40, 'q') + "end", {" of it", " x"}, 1, ""}};  // 43 + 6 > 24 + 1: truncated
  const MultipleChoiceResult r = score_multiple_choice(items, *tok, logits, 24);
  for (size_t n = 0; n < items.size(); ++n)
    for (size_t c = 0; c < items[n].choices.size(); ++c)
      EXPECT_NEAR(r.items[n].choices[c].logprob, one_sequence(*lm, items[n].context, items[n].choices[c], 25), 1e-5)
          << "item " << n << " choice " << c;
  // an empty context starts from the end-of-text token (256)
  const MultipleChoiceResult e = score_multiple_choice({{"", {"ab", "cd"}, 0, ""}}, *tok, logits, 24);
  std::vector<int64_t> seq = {256, 'a', 'b'};
  torch::NoGradGuard g;
  const at::Tensor logp = torch::log_softmax(lm->forward(torch::tensor(seq, torch::kLong).narrow(0, 0, 2).unsqueeze(0)), -1)[0];
  EXPECT_NEAR(e.items[0].choices[0].logprob, (logp[0]['a'] + logp[1]['b']).item<double>(), 1e-5);
  testutil::expect_error([&] { score_multiple_choice({{"x", {std::string(30, 'z'), "y"}, 0, ""}}, *tok, logits, 24); },
                         {"item 1, choice 0 is 30 tokens, longer than the model's context of 24"});
  testutil::expect_error([&] { score_multiple_choice({{"x", {"", "y"}, 0, ""}}, *tok, logits, 24); },
                         {"item 1, choice 0 encodes to no token"});
}

TEST(MultipleChoice, JsonlRoundTripsAndBadLinesNameFileAndLine) {
  testutil::TempDir tmp;
  const std::vector<MultipleChoiceItem> items = {{"a \"quoted\"\ncontext", {"x", "y", "z"}, 2, "python"},
                                                 {"b", {"1", "2"}, 0, ""}};
  const std::string file = tmp / "mc.jsonl";
  write_multiple_choice(file, items);
  const auto back = read_multiple_choice(file);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].context, items[0].context);
  EXPECT_EQ(back[0].choices, items[0].choices);
  EXPECT_EQ(back[0].label, 2);
  EXPECT_EQ(back[0].domain, "python");
  EXPECT_EQ(back[1].domain, "");
  auto bad = [&](const std::string& text, const std::vector<std::string>& parts) {
    write_file_atomic(tmp / "bad.jsonl", text);
    testutil::expect_error([&] { read_multiple_choice(tmp / "bad.jsonl"); }, parts);
  };
  bad("{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"label\": 0}\n\n{\"context\": 1}\n", {"bad.jsonl:3", "'context' must be a string"});
  bad("{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"label\": 2}\n", {"bad.jsonl:1", "label 2 is out of range for 2 choices"});
  bad("{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"label\": 18446744073709551615}\n",
      {"bad.jsonl:1", "label 18446744073709551615 is out of range for 2 choices"});
  bad("{\"context\": \"a\", \"choices\": [\"x\"], \"label\": 0}\n", {"bad.jsonl:1", "at least 2"});
  bad("{\"context\": \"a\", \"choices\": [\"x\", 3], \"label\": 0}\n", {"list of strings"});
  bad("{\"context\": \"a\", \"choices\": [\"x\", \"y\"]}\n", {"'label' must be an integer"});
  bad("{\"context\": \"a\", \"choi", {"bad.jsonl:1", "not a JSON line"});
  bad("\n\n", {"no multiple-choice item"});
  testutil::expect_error([&] { read_multiple_choice(tmp / "missing.jsonl"); }, {"missing.jsonl: cannot open"});
}

}  // namespace
