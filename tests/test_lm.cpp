// The language model: RoPE, active-attention, causality, the KV cache, generation, the bigram
// baseline and sampling.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "dynamoe/config/config.h"
#include "dynamoe/models/lm/attention.h"
#include "dynamoe/models/lm/bigram.h"
#include "dynamoe/models/lm/generate.h"
#include "dynamoe/models/lm/transformer.h"
#include "gradcheck.h"
#include "test_util.h"

namespace dynamoe {
namespace {
using models::lm::TransformerLM;

config::Config lm_config(std::vector<std::string> extra = {}) {
  std::vector<std::string> o = {"model.kind=lm",      "data.dataset=python-docs", "model.d_model=16",
                                "lm.heads=2",         "lm.layers=3",              "lm.context=16",
                                "moe.layers.e_min=2",        "moe.layers.e_max=4",              "moe.experts.hidden=8",
                                "model.dropout=0",    "moe.layers.schedule=descending"};
  o.insert(o.end(), extra.begin(), extra.end());
  return config::parse_config("", "test", o);
}

at::Tensor random_ids(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(0, V, {B, T}, g, at::kLong);
}

// Reference attention: one query position at a time, plain loops over keys.
at::Tensor naive_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const int64_t T = q.size(2), S = k.size(2), Dh = q.size(3);
  at::Tensor out = at::zeros_like(q);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t pos = S - T + t;
    at::Tensor s = (q.select(2, t).unsqueeze(2) * k.narrow(2, 0, pos + 1)).sum(-1) / std::sqrt(double(Dh));  // [B, H, pos+1]
    at::Tensor p = at::softmax(s, -1);
    out.select(2, t).copy_((p.unsqueeze(-1) * v.narrow(2, 0, pos + 1)).sum(2));
  }
  return out;
}

TEST(Rope, RotatesPairsByPositionTimesFrequency) {
  // Dh = 4: pairs (0, 2) at frequency 1 and (1, 3) at frequency base^(-1/2).
  at::Tensor x = at::tensor({1.0, 2.0, 3.0, 4.0}, at::kDouble).view({1, 1, 1, 4});
  const double base = 100.0, pos = 3.0;
  at::Tensor y = models::lm::apply_rope(x, 3, base);
  const double a0 = pos, a1 = pos / std::sqrt(base);
  EXPECT_NEAR(y[0][0][0][0].item<double>(), 1 * std::cos(a0) - 3 * std::sin(a0), 1e-12);
  EXPECT_NEAR(y[0][0][0][2].item<double>(), 3 * std::cos(a0) + 1 * std::sin(a0), 1e-12);
  EXPECT_NEAR(y[0][0][0][1].item<double>(), 2 * std::cos(a1) - 4 * std::sin(a1), 1e-12);
  EXPECT_NEAR(y[0][0][0][3].item<double>(), 4 * std::cos(a1) + 2 * std::sin(a1), 1e-12);
}

TEST(Rope, ScoresDependOnlyOnRelativePosition) {
  at::Tensor q = at::randn({1, 2, 1, 8}, at::kDouble), k = at::randn({1, 2, 1, 8}, at::kDouble);
  auto score = [&](int64_t m, int64_t n) {
    return (models::lm::apply_rope(q, m, 10000) * models::lm::apply_rope(k, n, 10000)).sum().item<double>();
  };
  EXPECT_NEAR(score(7, 3), score(107, 103), 1e-9);
  EXPECT_NEAR(score(0, 5), score(20, 25), 1e-9);
  // and an offset slice equals the slice of the whole
  at::Tensor x = at::randn({2, 2, 10, 8}, at::kDouble);
  EXPECT_TRUE(at::allclose(models::lm::apply_rope(x, 0, 500).narrow(2, 4, 6),
                           models::lm::apply_rope(x.narrow(2, 4, 6), 4, 500), 1e-12, 1e-12));
}

TEST(Attention, CausalAttentionMatchesPerPositionLoop) {
  for (int64_t S : {1, 5, 9}) {
    for (int64_t T : {int64_t(1), S}) {
      at::Tensor q = at::randn({2, 3, T, 4}, at::kDouble), k = at::randn({2, 3, S, 4}, at::kDouble),
                 v = at::randn({2, 3, S, 4}, at::kDouble);
      EXPECT_TRUE(at::allclose(models::lm::causal_attention(q, k, v), naive_attention(q, k, v), 1e-10, 1e-12))
          << "S=" << S << " T=" << T;
    }
  }
}

TEST(Attention, ActiveAttentionAppliesSigmaToValues) {
  // With sigma = relu, the layer equals standard attention computed on relu(V).
  torch::manual_seed(3);
  models::lm::CausalSelfAttention attn(models::lm::AttentionOptions().dim(8).heads(2).capacity(8).positions("rope").activation("relu"));
  attn->to(at::kDouble);
  at::Tensor x = at::randn({2, 6, 8}, at::kDouble);
  at::Tensor qkv = at::matmul(x, attn->named_parameters()["qkv.weight"].t()).view({2, 6, 3, 2, 4}).permute({2, 0, 3, 1, 4});
  at::Tensor q = models::lm::apply_rope(qkv[0], 0, 10000), k = models::lm::apply_rope(qkv[1], 0, 10000);
  at::Tensor y = naive_attention(q, k, at::relu(qkv[2])).transpose(1, 2).reshape({2, 6, 8});
  y = at::matmul(y, attn->named_parameters()["proj.weight"].t());
  EXPECT_TRUE(at::allclose(attn->forward(x), y, 1e-10, 1e-12));
}

TEST(Attention, GradientsMatchFiniteDifferences) {
  for (const char* act : {"identity", "silu", "tanh", "gelu", "sigmoid", "relu"}) {
    // the functional core: RoPE on q and k (at an offset), sigma on v, causal softmax attention
    auto fn = [&](const std::vector<at::Tensor>& in) {
      return models::lm::causal_attention(models::lm::apply_rope(in[0], 3, 100.0), models::lm::apply_rope(in[1], 0, 100.0),
                                          models::lm::value_activation(in[2], act));
    };
    auto gc = testutil::gradcheck(fn, {at::randn({1, 2, 3, 4}, at::kDouble), at::randn({1, 2, 6, 4}, at::kDouble),
                                       at::randn({1, 2, 6, 4}, at::kDouble) + 0.05});
    EXPECT_TRUE(gc.ok(1e-6, 1e-5)) << act << ": " << gc.summary();
    // the module, with respect to its input
    torch::manual_seed(5);
    models::lm::CausalSelfAttention attn(models::lm::AttentionOptions().dim(6).heads(2).capacity(5).activation(act));
    attn->to(at::kDouble);
    auto gm = testutil::gradcheck([&](const std::vector<at::Tensor>& in) { return attn->forward(in[0]); },
                                  {at::randn({1, 5, 6}, at::kDouble)});
    EXPECT_TRUE(gm.ok(1e-6, 1e-5)) << act << " module: " << gm.summary();
  }
}

TEST(Attention, UnknownActivationIsAConfigError) {
  EXPECT_THROW(models::lm::CausalSelfAttention(models::lm::AttentionOptions().activation("softplus")), ConfigError);
  const std::string msg = testutil::config_error([] { lm_config({"lm.attention_activation=softplus"}); });
  EXPECT_NE(msg.find("lm.attention_activation"), std::string::npos) << msg;
}

TEST(TransformerLM, ShapesParametersAndSchedule) {
  torch::manual_seed(0);
  TransformerLM lm(lm_config(), 50);
  at::Tensor ids = random_ids(2, 7, 50, 1);
  models::lm::LMOutput o = lm->forward(ids);
  EXPECT_EQ(o.logits.sizes(), (std::vector<int64_t>{2, 7, 50}));
  EXPECT_EQ(o.moe_stats.size(), 3u);
  EXPECT_EQ(lm->experts_per_moe_block(), (std::vector<int64_t>{4, 3, 2}));
  EXPECT_TRUE(o.aux_loss.defined());
  EXPECT_EQ(lm->num_parameters() - lm->num_non_embedding_parameters(), 50 * 16);  // tied, rope: only tok_emb
  // every other block: blocks 1 only of 3 is MoE; learned positions and an untied head count as embeddings
  TransformerLM lm2(lm_config({"lm.moe_every=2", "lm.positions=learned", "lm.tie_embeddings=false"}), 50);
  EXPECT_EQ(lm2->experts_per_moe_block().size(), 1u);
  EXPECT_EQ(lm2->forward(ids).moe_stats.size(), 1u);
  EXPECT_EQ(lm2->num_parameters() - lm2->num_non_embedding_parameters(), 50 * 16 + 16 * 16 + 50 * 16);
  TransformerLM dense(lm_config({"lm.moe_every=0"}), 50);
  EXPECT_TRUE(dense->experts_per_moe_block().empty());
  EXPECT_FALSE(dense->forward(ids).aux_loss.defined());
}

TEST(TransformerLM, TiedOutputIsTheEmbedding) {
  torch::manual_seed(0);
  TransformerLM lm(lm_config({"lm.moe_every=0"}), 30);
  auto p = lm->named_parameters();
  EXPECT_FALSE(p.contains("head.weight"));
  // logits = ln_f(h) E^T: gradient flows into the embedding from the output side too
  at::Tensor ids = random_ids(1, 4, 30, 2);
  lm->forward(ids).logits.sum().backward();
  at::Tensor g = p["tok_emb.weight"].grad();
  EXPECT_GT(g.abs().sum(1).gt(0).sum().item<int64_t>(), 4);  // rows beyond the 4 inputs got gradient
}

// Changing the tokens at and after position t must not change any logit before t.
TEST(TransformerLM, IsCausalForEveryCausalRouter) {
  for (const char* router : {"top_k", "top_p", "threshold", "dynamoe", "tsallis_hybrid", "hash"}) {
    for (const char* pos : {"rope", "learned"}) {
      torch::manual_seed(7);
      TransformerLM lm(lm_config({std::string("moe.router.kind=") + router, std::string("lm.positions=") + pos,
                                  "lm.attention_activation=silu", "moe.gate.residual=true"}), 40);
      lm->eval();
      torch::NoGradGuard ng;
      at::Tensor a = random_ids(2, 12, 40, 11), b = a.clone();
      b.narrow(1, 8, 4).copy_(random_ids(2, 4, 40, 12));
      at::Tensor la = lm->forward(a).logits, lb = lm->forward(b).logits;
      EXPECT_TRUE(at::allclose(la.narrow(1, 0, 8), lb.narrow(1, 0, 8), 1e-5, 1e-6)) << router << " " << pos;
      EXPECT_FALSE(at::allclose(la.narrow(1, 8, 4), lb.narrow(1, 8, 4), 1e-5, 1e-6)) << router << " " << pos;
    }
  }
}

TEST(TransformerLM, RefusesNonCausalRouter) {
  const std::string msg = testutil::config_error([] { lm_config({"moe.router.kind=expert_choice"}); });
  EXPECT_NE(msg.find("moe.router.kind = 'expert_choice' is not causal"), std::string::npos) << msg;
  EXPECT_NO_THROW(lm_config({"moe.router.kind=expert_choice", "lm.allow_noncausal_router=true"}));
  EXPECT_NO_THROW(lm_config({"moe.router.kind=expert_choice", "lm.moe_every=0"}));
}

TEST(TransformerLM, KVCacheGivesTheSameLogits) {
  for (const char* pos : {"rope", "learned"}) {
    for (const char* every : {"0", "1", "2"}) {
      torch::manual_seed(9);
      TransformerLM lm(lm_config({std::string("lm.positions=") + pos, std::string("lm.moe_every=") + every,
                                  "lm.attention_activation=gelu", "moe.router.kind=top_p"}), 40);
      lm->eval();
      torch::NoGradGuard ng;
      at::Tensor ids = random_ids(2, 16, 40, 3);
      at::Tensor full = lm->forward(ids).logits;
      models::lm::KVCache cache = lm->make_cache();
      std::vector<at::Tensor> parts;
      int64_t t = 0;
      for (int64_t n : {5, 1, 1, 4, 1, 4}) {
        parts.push_back(lm->forward(ids.narrow(1, t, n), &cache).logits);
        t += n;
      }
      EXPECT_EQ(cache.length(), 16);
      EXPECT_TRUE(at::allclose(at::cat(parts, 1), full, 1e-4, 1e-5)) << pos << " every " << every;
      // the cache is full: one more position is an error naming the context
      testutil::expect_error([&] { lm->forward(ids.narrow(1, 0, 1), &cache); }, {"longer than the context of 16"});
    }
  }
}

TEST(TransformerLM, ClearErrorsForBadIds) {
  torch::manual_seed(0);
  TransformerLM lm(lm_config(), 40);
  at::Tensor ids = random_ids(1, 6, 40, 1);
  ids[0][3] = 40;
  testutil::expect_error([&] { lm->forward(ids); }, {"token id 40 at position 3", "vocabulary of 40"});
  ids[0][3] = -2;
  testutil::expect_error([&] { lm->forward(ids); }, {"token id -2 at position 3"});
  testutil::expect_error([&] { lm->forward(random_ids(1, 17, 40, 1)); }, {"17 positions", "context of 16"});
}

TEST(Generate, CacheAndNoCacheGiveTheSameTokens) {
  torch::manual_seed(4);
  TransformerLM lm(lm_config({"lm.attention_activation=silu", "lm.tie_embeddings=false"}), 40);
  // sharpen the untrained model so greedy decoding is far from ties (an untied random head
  // maps each context to a different next token)
  {
    torch::NoGradGuard ng;
    for (auto& p : lm->parameters()) p.mul_(4.0);
    lm->named_parameters()["head.weight"].mul_(10.0);
  }
  models::lm::GenerateOptions g;
  g.max_new_tokens = 45;  // beyond the context of 16: exercises the window restart
  g.sample.temperature = 0;
  const std::vector<int32_t> prompt = {3, 14, 15, 9, 2};
  g.use_cache = true;
  auto with = models::lm::generate(*lm, prompt, g);
  g.use_cache = false;
  auto without = models::lm::generate(*lm, prompt, g);
  ASSERT_EQ(with.tokens.size(), 45u);
  EXPECT_EQ(with.tokens, without.tokens);
  std::set<int32_t> distinct(with.tokens.begin(), with.tokens.end());
  EXPECT_GT(distinct.size(), 2u) << "degenerate generation makes the comparison weak";
  // sampled (temperature, top-k, top-p) too, with the same seed
  g.sample = {0.9, 10, 0.95, 123};
  g.use_cache = true;
  with = models::lm::generate(*lm, prompt, g);
  g.use_cache = false;
  without = models::lm::generate(*lm, prompt, g);
  EXPECT_EQ(with.tokens, without.tokens);
}

TEST(Generate, PromptErrors) {
  torch::manual_seed(0);
  TransformerLM lm(lm_config(), 40);
  models::lm::GenerateOptions g;
  testutil::expect_error([&] { models::lm::generate(*lm, std::vector<int32_t>(17, 1), g); },
                         {"prompt is 17 tokens", "context of 16"});
  testutil::expect_error([&] { models::lm::generate(*lm, {1, 44}, g); }, {"token id 44 at position 1"});
  testutil::expect_error([&] { models::lm::generate(*lm, {}, g); }, {"prompt is empty"});
}

TEST(Sample, GreedyTopKTopPAndFrequencies) {
  at::Tensor z = at::tensor({0.1f, 2.0f, -1.0f, 1.5f, 0.0f});
  std::mt19937_64 rng(1);
  EXPECT_EQ(models::lm::sample_token(z, {0.0, 0, 1.0, 0}, rng), 1);
  EXPECT_EQ(models::lm::sample_token(z, {1.0, 1, 1.0, 0}, rng), 1);
  EXPECT_EQ(models::lm::sample_token(z, {1.0, 0, 1e-6, 0}, rng), 1);
  // top_k = 2 never leaves {1, 3}; the frequencies follow softmax over the two
  std::map<int32_t, int> count;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++count[models::lm::sample_token(z, {1.0, 2, 1.0, 0}, rng)];
  EXPECT_EQ(count.size(), 2u);
  const double p1 = std::exp(2.0) / (std::exp(2.0) + std::exp(1.5));
  EXPECT_NEAR(count[1] / double(n), p1, 0.015);
  // temperature 0.5 on all five tokens
  count.clear();
  at::Tensor p = at::softmax(z.to(at::kDouble) / 0.5, 0);
  for (int i = 0; i < n; ++i) ++count[models::lm::sample_token(z, {0.5, 0, 1.0, 0}, rng)];
  for (int v = 0; v < 5; ++v) EXPECT_NEAR(count[v] / double(n), p[v].item<double>(), 0.015) << v;
  // top_p = 0.7: the smallest prefix of sorted p reaching 0.7
  count.clear();
  for (int i = 0; i < n; ++i) ++count[models::lm::sample_token(z, {1.0, 0, 0.7, 0}, rng)];
  at::Tensor q = at::softmax(z.to(at::kDouble), 0);
  ASSERT_LT(q[1].item<double>(), 0.7);
  ASSERT_GE(q[1].item<double>() + q[3].item<double>(), 0.7);
  EXPECT_EQ(count.size(), 2u);
}

TEST(Bigram, KneserNeyProbabilitiesSumToOneAndMatchTheFormula) {
  std::vector<uint16_t> ids = {0, 1, 2, 0, 1, 3, 0, 1, 2, 4, 2, 0};
  const int64_t V = 6;
  models::lm::BigramLM bg(ids.data(), static_cast<int64_t>(ids.size()), V);
  for (int v = 0; v < V; ++v) {
    double sum = 0;
    for (int w = 0; w < V; ++w) sum += std::exp(-bg.nll(v, w));
    EXPECT_NEAR(sum, 1.0, 1e-12) << "prev " << v;
  }
  // pairs: 01 x3, 12 x2, 20 x2, 13, 30, 24, 42 -> 7 distinct; n1 = 3 (13, 30, 24 ... and 42) = 4, n2 = 2
  EXPECT_EQ(bg.distinct_pairs(), 7);
  const double d = 4.0 / (4.0 + 2.0 * 2.0);
  EXPECT_NEAR(bg.discount(), d, 1e-12);
  // P(2 | 1): c(1,2) = 2, c(1) = 3, successors of 1 = {2, 3}; predecessors of 2 = {1, 4}
  const double p_cont_2 = (2.0 + 1.0) / (7.0 + V);
  EXPECT_NEAR(std::exp(-bg.nll(1, 2)), (2.0 - d) / 3.0 + d * 2.0 / 3.0 * p_cont_2, 1e-12);
  // an unseen predecessor (5) falls back to the continuation distribution
  EXPECT_NEAR(std::exp(-bg.nll(5, 2)), p_cont_2, 1e-12);
  testutil::expect_error([&] { bg.nll(6, 0); }, {"out of range", "vocabulary of 6"});
}

}  // namespace
}  // namespace dynamoe
