#include "dynamoe/models/lm/generate.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "dynamoe/util/error.h"

namespace dynamoe::models::lm {

int32_t sample_token(const at::Tensor& logits_in, const SampleOptions& o, std::mt19937_64& rng) {
  at::Tensor logits = logits_in.to(at::kDouble).contiguous();
  const int64_t V = logits.numel();
  const double* z = logits.data_ptr<double>();
  if (o.temperature <= 0) return static_cast<int32_t>(std::max_element(z, z + V) - z);
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  int64_t keep = o.top_k > 0 ? std::min<int64_t>(o.top_k, V) : V;
  auto by_logit = [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
  if (keep < V) std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_logit);
  else std::sort(order.begin(), order.end(), by_logit);
  order.resize(static_cast<size_t>(keep));
  std::vector<double> p(order.size());
  const double zmax = z[order[0]];
  double sum = 0;
  for (size_t i = 0; i < order.size(); ++i) sum += p[i] = std::exp((z[order[i]] - zmax) / o.temperature);
  if (o.top_p < 1.0) {
    double cum = 0;
    size_t n = 0;
    while (n < p.size()) {
      cum += p[n++] / sum;
      if (cum >= o.top_p) break;
    }
    p.resize(n);
    sum = std::accumulate(p.begin(), p.end(), 0.0);
  }
  const double u = std::uniform_real_distribution<double>(0.0, sum)(rng);
  double cum = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    cum += p[i];
    if (u < cum) return order[i];
  }
  return order[p.size() - 1];
}

GenerateResult generate(TransformerLMImpl& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                        const std::function<void(int32_t)>& on_token) {
  const int64_t C = model.context();
  DYNAMOE_CHECK(!prompt.empty(), "generate: the prompt is empty (it needs at least one token)");
  DYNAMOE_CHECK(static_cast<int64_t>(prompt.size()) <= C, "generate: the prompt is ", prompt.size(),
                " tokens, longer than the model's context of ", C, " tokens (lm.context)");
  for (size_t i = 0; i < prompt.size(); ++i)
    DYNAMOE_CHECK(prompt[i] >= 0 && prompt[i] < model.vocab_size(), "generate: prompt token id ", prompt[i],
                  " at position ", i, " is out of range for the vocabulary of ", model.vocab_size());
  torch::NoGradGuard no_grad;
  model.eval();
  std::mt19937_64 rng(o.sample.seed);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> seq = prompt;  // everything so far
  size_t window = 0;                  // the model sees seq[window ..]
  KVCache cache = model.make_cache();
  size_t fed = 0;                     // with the cache: seq[window .. fed) is cached
  GenerateResult r;
  auto ids_tensor = [](const int32_t* p, size_t n) {
    at::Tensor t = at::empty({1, static_cast<int64_t>(n)}, at::kLong);
    std::copy(p, p + n, t.data_ptr<int64_t>());
    return t;
  };
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    if (static_cast<int64_t>(seq.size() - window) > C) {  // window full: restart from its last C/2 tokens
      window = seq.size() - static_cast<size_t>(std::max<int64_t>(1, C / 2));
      cache = model.make_cache();
      fed = window;
    }
    at::Tensor logits;
    if (o.use_cache) {
      if (fed < window) fed = window;
      LMOutput out = model.forward(ids_tensor(seq.data() + fed, seq.size() - fed), &cache);
      fed = seq.size();
      logits = out.logits[0][-1];
    } else {
      LMOutput out = model.forward(ids_tensor(seq.data() + window, seq.size() - window));
      logits = out.logits[0][-1];
    }
    const int32_t next = sample_token(logits, o.sample, rng);
    seq.push_back(next);
    r.tokens.push_back(next);
    if (on_token) on_token(next);
    if (o.stop_id && next == *o.stop_id) break;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_s = r.seconds > 0 ? r.tokens.size() / r.seconds : 0;
  return r;
}

}  // namespace dynamoe::models::lm
