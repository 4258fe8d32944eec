#include "dynamoe/eval/multiple_choice.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/json_text.h"

namespace dynamoe::eval {

std::vector<MultipleChoiceItem> read_multiple_choice(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str(path, ": cannot open the multiple-choice file"));
  std::vector<MultipleChoiceItem> items;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = str(path, ":", n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(str(where, ": not a JSON line (", e.what(), ")"));
    }
    if (!j.is_object()) throw Error(str(where, ": expected an object {\"context\", \"choices\", \"label\"}"));
    MultipleChoiceItem it;
    if (!j.contains("context") || !j["context"].is_string()) throw Error(str(where, ": 'context' must be a string"));
    it.context = j["context"].get<std::string>();
    if (!j.contains("choices") || !j["choices"].is_array()) throw Error(str(where, ": 'choices' must be a list of strings"));
    for (const auto& c : j["choices"]) {
      if (!c.is_string()) throw Error(str(where, ": 'choices' must be a list of strings, found ", json_excerpt(c)));
      it.choices.push_back(c.get<std::string>());
    }
    if (it.choices.size() < 2) throw Error(str(where, ": 'choices' has ", it.choices.size(), " entries; at least 2 are needed"));
    if (!j.contains("label") || !j["label"].is_number_integer()) throw Error(str(where, ": 'label' must be an integer"));
    // Checked as written: 2^64 - 1 is not -1.
    const nlohmann::json& label = j["label"];
    if (label.is_number_unsigned() ? label.get<uint64_t>() >= it.choices.size()
                                   : label.get<int64_t>() < 0 || label.get<int64_t>() >= static_cast<int64_t>(it.choices.size()))
      throw Error(str(where, ": label ", label.dump(), " is out of range for ", it.choices.size(), " choices"));
    it.label = label.get<int64_t>();
    if (j.contains("domain")) {
      if (!j["domain"].is_string()) throw Error(str(where, ": 'domain' must be a string"));
      it.domain = j["domain"].get<std::string>();
    }
    items.push_back(std::move(it));
  }
  if (items.empty()) throw Error(str(path, ": no multiple-choice item in the file"));
  return items;
}

void write_multiple_choice(const std::string& path, const std::vector<MultipleChoiceItem>& items) {
  std::string out;
  for (const auto& it : items) {
    nlohmann::json j = {{"context", it.context}, {"choices", it.choices}, {"label", it.label}};
    if (!it.domain.empty()) j["domain"] = it.domain;
    // Corpus text may hold bytes that are not UTF-8: replace them rather than fail.
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  write_file_atomic(path, out);
}

namespace {

/// lm-evaluation-harness' _encode_pair: (context tokens, choice tokens).
std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const text::Tokenizer& tok, std::string context,
                                                                  std::string choice, int64_t& choice_bytes) {
  const size_t keep = context.find_last_not_of(' ');
  const size_t spaces = keep == std::string::npos ? context.size() : context.size() - keep - 1;
  if (spaces > 0) {
    choice = context.substr(context.size() - spaces) + choice;
    context.resize(context.size() - spaces);
  }
  choice_bytes = static_cast<int64_t>(choice.size());
  std::vector<int32_t> whole = tok.encode(context + choice), ctx = tok.encode(context);
  // BPE may merge across the boundary; keep lm-evaluation-harness' rule (split at |ctx|).
  const size_t split = std::min(ctx.size(), whole.size());
  std::vector<int32_t> cont(whole.begin() + static_cast<std::ptrdiff_t>(split), whole.end());
  ctx.assign(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(split));
  return {ctx, cont};
}

}  // namespace

MultipleChoiceResult score_multiple_choice(const std::vector<MultipleChoiceItem>& items, const text::Tokenizer& tok,
                                           const LogitsFn& logits_fn, int64_t max_context) {
  DYNAMOE_CHECK(max_context >= 2, "multiple choice: the context window is ", max_context, " tokens (need at least 2)");
  torch::NoGradGuard no_grad;
  MultipleChoiceResult res;
  std::map<std::string, std::pair<double, double>> domain_hits;  // acc, acc_norm counts
  double hits = 0, hits_norm = 0;
  for (size_t n = 0; n < items.size(); ++n) {
    const MultipleChoiceItem& it = items[n];
    const int64_t C = static_cast<int64_t>(it.choices.size());
    std::vector<std::vector<int32_t>> seqs(C);
    std::vector<int64_t> cont_len(C), bytes(C);
    int64_t T = 0;
    for (int64_t c = 0; c < C; ++c) {
      auto [ctx, cont] = encode_pair(tok, it.context, it.choices[c], bytes[c]);
      if (cont.empty()) throw Error(str("multiple choice: item ", n + 1, ", choice ", c, " encodes to no token"));
      if (ctx.empty()) {
        if (!tok.eot_id()) throw Error(str("multiple choice: item ", n + 1, " has an empty context and the tokenizer has no end-of-text token"));
        ctx.push_back(*tok.eot_id());
      }
      std::vector<int32_t> seq = ctx;
      seq.insert(seq.end(), cont.begin(), cont.end());
      // The model sees seq[:-1] and predicts seq[1:]; keep the last max_context + 1 tokens.
      if (static_cast<int64_t>(seq.size()) > max_context + 1) {
        if (static_cast<int64_t>(cont.size()) > max_context)
          throw Error(str("multiple choice: item ", n + 1, ", choice ", c, " is ", cont.size(),
                          " tokens, longer than the model's context of ", max_context));
        seq.erase(seq.begin(), seq.end() - (max_context + 1));
      }
      cont_len[c] = static_cast<int64_t>(cont.size());
      T = std::max<int64_t>(T, static_cast<int64_t>(seq.size()) - 1);
      seqs[c] = std::move(seq);
    }
    at::Tensor ids = torch::zeros({C, T}, torch::kLong), targets = torch::zeros({C, T}, torch::kLong);
    auto ia = ids.accessor<int64_t, 2>(), ta = targets.accessor<int64_t, 2>();
    for (int64_t c = 0; c < C; ++c)
      for (size_t t = 0; t + 1 < seqs[c].size(); ++t) {
        ia[c][static_cast<int64_t>(t)] = seqs[c][t];
        ta[c][static_cast<int64_t>(t)] = seqs[c][t + 1];
      }
    const at::Tensor logp = torch::log_softmax(logits_fn(ids).to(torch::kDouble), -1);  // [C, T, V]
    const at::Tensor picked = logp.gather(2, targets.unsqueeze(-1)).squeeze(-1);         // [C, T]
    ItemScore score;
    double best = -INFINITY, best_norm = -INFINITY;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t end = static_cast<int64_t>(seqs[c].size()) - 1;
      ChoiceScore s;
      s.logprob = picked[c].slice(0, end - cont_len[c], end).sum().item<double>();
      s.tokens = cont_len[c];
      s.bytes = bytes[c];
      if (s.logprob > best) {
        best = s.logprob;
        score.prediction = c;
      }
      const double norm = s.logprob / static_cast<double>(std::max<int64_t>(1, s.bytes));
      if (norm > best_norm) {
        best_norm = norm;
        score.prediction_norm = c;
      }
      score.choices.push_back(s);
    }
    const double h = score.prediction == it.label, hn = score.prediction_norm == it.label;
    hits += h;
    hits_norm += hn;
    if (!it.domain.empty()) {
      auto& d = res.by_domain[it.domain];
      ++d.items;
      domain_hits[it.domain].first += h;
      domain_hits[it.domain].second += hn;
    }
    res.items.push_back(std::move(score));
  }
  const double n = static_cast<double>(std::max<size_t>(1, items.size()));
  res.accuracy = hits / n;
  res.accuracy_norm = hits_norm / n;
  for (auto& [name, acc] : res.by_domain) {
    acc.accuracy = domain_hits[name].first / static_cast<double>(acc.items);
    acc.accuracy_norm = domain_hits[name].second / static_cast<double>(acc.items);
  }
  return res;
}

}  // namespace dynamoe::eval
