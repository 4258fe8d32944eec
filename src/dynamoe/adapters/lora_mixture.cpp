#include "dynamoe/adapters/lora_mixture.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/moe/routers/top_k.h"
#include "dynamoe/moe/routers/tsallis_hybrid.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/json_text.h"

namespace dynamoe::adapters {

const std::vector<std::string>& LoraMixtureOptions::preset_names() {
  static const std::vector<std::string> names = {"mola", "mixlora", "dynmole"};
  return names;
}

LoraMixtureOptions LoraMixtureOptions::preset(const std::string& name) {
  LoraMixtureOptions o;
  moe::TopKOptions top2;
  top2.k = 2;
  top2.normalize = true;
  o.router = kind_choice("top_k", top2);
  if (name == "mola") return o;
  if (name == "mixlora") {
    o.losses.load_balance = 0.01;
    return o;
  }
  if (name == "dynmole") {
    const moe::TsallisHybridOptions tsallis;  // the router's q and eps are the loss's too
    o.router = kind_choice("tsallis_hybrid", tsallis);
    o.losses.tsallis = 1.0;
    o.losses.tsallis_q = tsallis.q;
    o.losses.tsallis_eps = tsallis.eps;
    return o;
  }
  std::string known;
  for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw ConfigError(str("lora mixture: unknown kind '", name, "' (known: ", known, ")"));
}

void LoraMixtureOptions::validate() const {
  lora.validate();
  if (experts < 2) throw ConfigError(str("lora mixture: experts = ", experts, " must be at least 2"));
  if (!moe::router_registry().contains(router.kind()))
    throw ConfigError(str("lora mixture: unknown router '", router.kind(), "' (known: ", moe::router_registry().joined(), ")"));
  const moe::RouterTraits traits = moe::router_traits(router.kind());
  if (!traits.causal)
    throw ConfigError(str("lora mixture: router '", router.kind(),
                          "' chooses tokens across the batch, so a token's output would depend on later tokens; "
                          "use a token-choice router"));
  if (traits.needs_token_ids)
    throw ConfigError(str("lora mixture: router '", router.kind(), "' routes by token id, which a projection does not see"));
  if (!moe::router_state_specs(router, experts).empty())
    throw ConfigError(str("lora mixture: router '", router.kind(), "' keeps a controller state (docs/methods.md section 9), ",
                          "which LoRA mixtures do not hold; use it in an MoE layer (moe.router)"));
  if (router.kind() == "top_k" && (router.as<moe::TopKOptions>().k < 1 || router.as<moe::TopKOptions>().k > experts))
    throw ConfigError(str("lora mixture: k = ", router.as<moe::TopKOptions>().k, " must be in [1, ", experts, "]"));
  for (const auto& [field, v] : {std::pair{"load_balance", losses.load_balance}, std::pair{"z_loss", losses.z_loss},
                                 std::pair{"entropy", losses.entropy}, std::pair{"tsallis", losses.tsallis}})
    if (!(v >= 0) || !std::isfinite(v))
      throw ConfigError(str("lora mixture: loss coefficient ", field, " = ", v, " must be >= 0"));
}

namespace {

/// A router's options as a JSON object {name: value}, and back (every field required).
class ToJson : public OptionVisitor {
 public:
  nlohmann::json j = nlohmann::json::object();
  void flag(const std::string& n, bool& v, const std::string&) override { j[n] = v; }
  void integer(const std::string& n, int64_t& v, const std::string&, std::optional<double>, std::optional<double>) override {
    j[n] = v;
  }
  void real(const std::string& n, double& v, const std::string&, std::optional<double>, std::optional<double>, bool) override {
    j[n] = v;
  }
  void text(const std::string& n, std::string& v, const std::string&, std::vector<std::string>) override { j[n] = v; }
};

class FromJson : public OptionVisitor {
 public:
  explicit FromJson(nlohmann::json j) : j_(std::move(j)) {}
  void flag(const std::string& n, bool& v, const std::string&) override { get(n, v); }
  void integer(const std::string& n, int64_t& v, const std::string&, std::optional<double>, std::optional<double>) override {
    get(n, v);
  }
  void real(const std::string& n, double& v, const std::string&, std::optional<double>, std::optional<double>, bool) override {
    get(n, v);
  }
  void text(const std::string& n, std::string& v, const std::string&, std::vector<std::string>) override { get(n, v); }

 private:
  template <class T>
  void get(const std::string& n, T& out) {
    if (!j_.is_object() || !j_.contains(n)) throw ConfigError(str("lora mixture: field 'routing.", n, "' is missing"));
    try {
      out = j_.at(n).get<T>();
    } catch (const nlohmann::json::exception&) {
      throw ConfigError(str("lora mixture: field 'routing.", n, "' = ", json_excerpt(j_.at(n)), " has the wrong type"));
    }
  }
  nlohmann::json j_;  // a copy: the caller's object may be a temporary
};

}  // namespace

nlohmann::json LoraMixtureOptions::to_json() const {
  ToJson routing;
  KindChoice r = router;
  r.options().visit(routing);
  return {{"rank", lora.rank()},
          {"alpha", lora.alpha()},
          {"dropout", lora.dropout()},
          {"experts", experts},
          {"router", router.kind()},
          {"routing", routing.j},
          {"losses",
           {{"load_balance", losses.load_balance}, {"z_loss", losses.z_loss}, {"entropy", losses.entropy},
            {"tsallis", losses.tsallis}, {"tsallis_q", losses.tsallis_q}, {"tsallis_eps", losses.tsallis_eps}}}};
}

LoraMixtureOptions LoraMixtureOptions::from_json(const nlohmann::json& j) {
  LoraMixtureOptions o;
  auto get = [&](const nlohmann::json& obj, const char* group, const char* key, auto& out) {
    const std::string field = std::string(group) + (*group ? "." : "") + key;
    if (!obj.is_object() || !obj.contains(key)) throw ConfigError(str("lora mixture: field '", field, "' is missing"));
    try {
      out = obj.at(key).get<std::decay_t<decltype(out)>>();
    } catch (const nlohmann::json::exception&) {
      throw ConfigError(str("lora mixture: field '", field, "' = ", json_excerpt(obj.at(key)), " has the wrong type"));
    }
  };
  int64_t rank = 0;
  double alpha = 0, dropout = 0;
  get(j, "", "rank", rank);
  get(j, "", "alpha", alpha);
  get(j, "", "dropout", dropout);
  o.lora.rank(rank).alpha(alpha).dropout(dropout);
  get(j, "", "experts", o.experts);
  std::string router;
  get(j, "", "router", router);
  if (!moe::router_registry().contains(router))
    throw ConfigError(str("lora mixture: unknown router '", router, "' (known: ", moe::router_registry().joined(), ")"));
  o.router = moe::router_choice(router);
  FromJson routing(j.value("routing", nlohmann::json()));
  o.router.options().visit(routing);
  const nlohmann::json l = j.value("losses", nlohmann::json());
  get(l, "losses", "load_balance", o.losses.load_balance);
  get(l, "losses", "z_loss", o.losses.z_loss);
  get(l, "losses", "entropy", o.losses.entropy);
  get(l, "losses", "tsallis", o.losses.tsallis);
  get(l, "losses", "tsallis_q", o.losses.tsallis_q);
  get(l, "losses", "tsallis_eps", o.losses.tsallis_eps);
  o.validate();
  return o;
}

std::vector<double> MixtureTally::shares() const {
  double total = 0;
  for (double c : expert_tokens) total += c;
  std::vector<double> s(expert_tokens.size(), 0.0);
  if (total > 0)
    for (size_t i = 0; i < s.size(); ++i) s[i] = expert_tokens[i] / total;
  return s;
}

void MixtureTally::add(const MixtureTally& o) {
  if (expert_tokens.empty()) expert_tokens.assign(o.expert_tokens.size(), 0.0);
  DYNAMOE_CHECK(expert_tokens.size() == o.expert_tokens.size(), "tally: ", expert_tokens.size(), " experts vs ",
                o.expert_tokens.size());
  tokens += o.tokens;
  all_experts += o.all_experts;
  active += o.active;
  for (size_t i = 0; i < expert_tokens.size(); ++i) expert_tokens[i] += o.expert_tokens[i];
}

LoraMixtureImpl::LoraMixtureImpl(int64_t in_features, int64_t out_features, const LoraMixtureOptions& options)
    : options_(options) {
  options_.validate();
  torch::NoGradGuard no_grad;
  const int64_t E = options_.experts, r = options_.lora.rank();
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));  // torch.nn.Linear's (kaiming_uniform, a = sqrt(5))
  router_weight = register_parameter("router_weight", torch::empty({E, in_features}).uniform_(-bound, bound));
  lora_A = register_parameter("lora_A", torch::empty({E, r, in_features}).uniform_(-bound, bound));
  lora_B = register_parameter("lora_B", torch::zeros({E, out_features, r}));
  reset_tally();
}

void LoraMixtureImpl::reset_tally() {
  tally_ = MixtureTally{};
  tally_.expert_tokens.assign(static_cast<size_t>(options_.experts), 0.0);
}

at::Tensor LoraMixtureImpl::forward(const at::Tensor& x) {
  const int64_t in = lora_A.size(2), out = lora_B.size(1), E = options_.experts, r = options_.lora.rank();
  DYNAMOE_CHECK(x.dim() >= 1 && x.size(-1) == in, "lora mixture: input has shape ", x.sizes(), ", expected [.., ", in, "]");
  const int64_t N = x.numel() / in;
  const at::Tensor x2 = x.reshape({N, in});
  // Route in the adapter's precision (float for a bf16 base): routing decisions are
  // comparisons that half precision would blur.
  const at::Tensor logits = at::linear(x2.to(router_weight.scalar_type()), router_weight);  // [N, E]
  moe::RouterContext ctx;
  ctx.training = is_training();
  moe::Routing routing = moe::route(options_.router.kind(), logits, options_.router.options(), ctx);
  const auto& L = options_.losses;
  if (is_training() && (L.load_balance > 0 || L.z_loss > 0 || L.entropy > 0 || L.tsallis > 0))
    aux_loss_ = moe::aux_losses(routing, L).total;
  {
    torch::NoGradGuard no_grad;
    last_ = routing;
    for (at::Tensor* t : {&last_.logits, &last_.probs, &last_.weights, &last_.h_norm})
      if (t->defined()) *t = t->detach();
    if (tallying_) {
      const at::Tensor per_token = routing.mask.sum(1);  // [N]
      tally_.tokens += N;
      tally_.active += per_token.sum().item<double>();
      tally_.all_experts += per_token.eq(E).sum().item<int64_t>();
      const at::Tensor per_expert = routing.mask.sum(0).to(at::kDouble).contiguous();
      const double* c = per_expert.data_ptr<double>();
      for (int64_t i = 0; i < E; ++i) tally_.expert_tokens[i] += c[i];
    }
  }
  at::Tensor h = x2;
  // Drawn for the whole batch when it is split over processes (the same mask as one process).
  if (is_training() && options_.lora.dropout() > 0) h = dist::batch_dropout(h, options_.lora.dropout(), /*train=*/true);
  const auto dt = h.scalar_type();
  // All experts at once: [N, E*r] down-projections, weighted per (token, expert), then one
  // up-projection over the concatenated ranks. An inactive expert has weight 0 exactly.
  const at::Tensor down = at::linear(h, lora_A.reshape({E * r, in}).to(dt)).view({N, E, r});
  const at::Tensor weighted = (down * routing.weights.to(dt).unsqueeze(-1)).reshape({N, E * r});
  const at::Tensor up = at::linear(weighted, lora_B.permute({1, 0, 2}).reshape({out, E * r}).to(dt)) * scaling();
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  return up.view(shape);
}

std::vector<std::string> attach_lora_mixture(torch::nn::Module& model, const std::string& pattern,
                                             const LoraMixtureOptions& options) {
  options.validate();
  return attach_adapters(model, pattern, "lora mixture",
                         [&](int64_t in, int64_t out) { return std::make_shared<LoraMixtureImpl>(in, out, options); });
}

namespace {
template <typename Fn>
void for_each_mixture(torch::nn::Module& model, Fn fn) {
  for (auto& [name, p] : models::named_projections(model))
    if (auto m = std::dynamic_pointer_cast<LoraMixtureImpl>(p->adapter())) fn(name, *m);
}
}  // namespace

at::Tensor mixture_aux_loss(torch::nn::Module& model) {
  at::Tensor total;
  for_each_mixture(model, [&](const std::string&, LoraMixtureImpl& m) {
    if (m.aux_loss().defined()) total = total.defined() ? total + m.aux_loss() : m.aux_loss();
  });
  return total;
}

void set_tallying(torch::nn::Module& model, bool on) {
  for_each_mixture(model, [&](const std::string&, LoraMixtureImpl& m) {
    m.set_tallying(on);
    m.reset_tally();
  });
}

std::vector<std::pair<std::string, MixtureTally>> mixture_tallies(torch::nn::Module& model) {
  std::vector<std::pair<std::string, MixtureTally>> out;
  for_each_mixture(model, [&](const std::string& name, LoraMixtureImpl& m) { out.emplace_back(name, m.tally()); });
  return out;
}

}  // namespace dynamoe::adapters
