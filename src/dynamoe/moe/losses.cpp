#include "dynamoe/moe/losses.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/util/error.h"

namespace dynamoe::moe {

namespace {

/// |q - 1| below this is the Shannon limit (as the tsallis_hybrid router).
constexpr double kShannonQ = 1e-9;

/// Checks that r.<name> is a defined [N, E] tensor.
void check_2d(const at::Tensor& t, const char* name) {
  DYNAMOE_CHECK(t.defined(), "aux loss: Routing.", name, " is undefined");
  DYNAMOE_CHECK(t.dim() == 2, "aux loss: expected Routing.", name, " of shape [N, E], got ", t.dim(), " dims");
}

/// mean over dim 0 of x [N, ...] -> [...]; 0 (not NaN) when N = 0, still attached to the graph.
at::Tensor mean_tokens(const at::Tensor& x) {
  return x.sum(0) / static_cast<double>(std::max<int64_t>(1, x.size(0)));
}

/// The mean over the tokens of the whole batch, when it is split over processes, of x [N', ...]
/// (the rows kept by a token mask: their share differs between ranks): this process's sum over
/// (global count x batch share), so that the ranks' losses, weighted by their shares and
/// added (as the training loop does), give the mean of one process. mean_tokens alone.
at::Tensor batch_mean_tokens(const at::Tensor& x) {
  if (!dist::batch_group()) return mean_tokens(x);
  at::Tensor n = at::full({1}, static_cast<double>(x.size(0)), at::kDouble);
  dist::batch_sum_(n);
  return x.sum(0) / (std::max(1.0, n.item<double>()) * dist::batch_share());
}

/// The batch mean that batch_mean_tokens' local parts add up to, as a constant.
at::Tensor global_value(const at::Tensor& local_part) {
  at::Tensor g = (local_part.detach() * dist::batch_share()).contiguous();
  dist::batch_sum_(g);
  return g;
}

/// The rows of x [N, ...] where token_mask [N] is true (all rows when token_mask is undefined).
at::Tensor keep_tokens(const at::Tensor& x, const at::Tensor& token_mask) {
  if (!token_mask.defined()) return x;
  return x.index_select(0, token_mask.nonzero().select(1, 0));
}

/// -sum_i p_i log p_i per row, [N, E] -> [N], with 0 log 0 = 0 and no NaN gradient: log is
/// evaluated at 1 where p == 0, and that branch is discarded by the outer where (whose gradient
/// to the discarded branch is 0).
at::Tensor shannon_entropy(const at::Tensor& p) {
  const at::Tensor pos = p > 0;
  const at::Tensor plogp = at::where(pos, p * at::where(pos, p, at::ones_like(p)).log(), at::zeros_like(p));
  return -plogp.sum(1);
}

}  // namespace

at::Tensor load_balance_loss(const Routing& r) {
  check_2d(r.probs, "probs");
  check_2d(r.mask, "mask");
  DYNAMOE_CHECK(r.mask.sizes() == r.probs.sizes(), "load_balance_loss: Routing.mask ", r.mask.sizes(),
                " and Routing.probs ", r.probs.sizes(), " differ in shape");
  const int64_t n_experts = r.probs.size(1);
  at::Tensor assigned = r.mask.ne(0).sum(0);  // [E] int64, constant
  dist::batch_sum_(assigned);                  // over the whole batch when it is split over processes
  const at::Tensor counts = assigned.to(r.probs.scalar_type());
  const at::Tensor f = counts / counts.sum().clamp_min(1);                   // [E], sums to 1 (or 0)
  const at::Tensor P = mean_tokens(r.probs);                                 // [E], differentiable
  return static_cast<double>(n_experts) * (f * P).sum();
}

at::Tensor z_loss(const Routing& r) {
  check_2d(r.logits, "logits");
  return mean_tokens(at::logsumexp(r.logits, /*dim=*/{1}).square());  // [N] -> []
}

at::Tensor entropy_loss(const Routing& r) {
  check_2d(r.probs, "probs");
  return mean_tokens(shannon_entropy(r.probs));  // [N, E] -> [N] -> []
}

at::Tensor tsallis_entropy_normalized(const at::Tensor& p, double q, double eps) {
  DYNAMOE_CHECK(p.defined() && p.dim() == 2, "tsallis entropy: expected p of shape [N, E]");
  if (!std::isfinite(q)) throw ConfigError(str("tsallis entropy: q = ", q, " is not a finite number"));
  if (!(eps >= 0) || !std::isfinite(eps))
    throw ConfigError(str("tsallis entropy: eps = ", eps, " is out of range (must be >= 0)"));
  const int64_t n_experts = p.size(1);
  if (n_experts == 1) return p.sum(1) * 0.0;  // H_max = 0: H_norm defined as 0
  const double e = static_cast<double>(n_experts);
  if (std::abs(q - 1.0) < kShannonQ) return shannon_entropy(p) / std::log(e);  // exact, without eps
  const double h_max = (1.0 - std::pow(e, 1.0 - q)) / (q - 1.0);
  return (1.0 - (p + eps).pow(q).sum(1)) / ((q - 1.0) * h_max);  // [N]
}

at::Tensor tsallis_loss(const Routing& r, double q, double eps, const at::Tensor& token_mask) {
  check_2d(r.probs, "probs");
  check_2d(r.weights, "weights");
  DYNAMOE_CHECK(r.weights.sizes() == r.probs.sizes(), "tsallis_loss: Routing.weights ", r.weights.sizes(),
                " and Routing.probs ", r.probs.sizes(), " differ in shape");
  if (token_mask.defined()) {
    DYNAMOE_CHECK(token_mask.dim() == 1 && token_mask.size(0) == r.probs.size(0),
                  "tsallis_loss: expected token_mask of shape [", r.probs.size(0), "], got ", token_mask.sizes());
    DYNAMOE_CHECK(token_mask.scalar_type() == at::kBool, "tsallis_loss: expected a bool token_mask, got ",
                  token_mask.scalar_type());
  }
  const int64_t n_experts = r.probs.size(1);
  const at::Tensor p = keep_tokens(r.probs, token_mask);    // [N', E]
  const at::Tensor w = keep_tokens(r.weights, token_mask);  // [N', E]
  // Batch means: over the whole batch when it is split over processes (dist::BatchScope).
  const at::Tensor h = batch_mean_tokens(tsallis_entropy_normalized(p, q, eps));  // []
  const at::Tensor W = batch_mean_tokens(w), P = batch_mean_tokens(p);             // [E]
  at::Tensor balance;
  if (!dist::batch_group()) {
    balance = static_cast<double>(n_experts) * (W * P).sum();
  } else {
    // W_g . P_g of the global means, as a sum of the ranks' parts: W . P_g + W_g . P - W_g . P_g
    // has the value W_g . P_g and the gradient dW . P_g + W_g . dP once weighted and added.
    const at::Tensor Wg = global_value(W), Pg = global_value(P);
    balance = static_cast<double>(n_experts) * ((W * Pg).sum() + (Wg * P).sum() - (Wg * Pg).sum());
  }
  return 0.01 * h + 0.001 * balance;
}

AuxLosses aux_losses(const Routing& r, const LossCoefficients& c, const at::Tensor& token_mask) {
  AuxLosses out;
  auto add = [&](const char* name, double coef, const auto& loss_fn) {
    if (!std::isfinite(coef)) throw ConfigError(str("aux loss: coefficient ", name, " = ", coef, " is not finite"));
    if (coef == 0.0) return;
    const at::Tensor loss = loss_fn();
    out.values[name] = loss.item<double>();
    out.total = out.total.defined() ? out.total + coef * loss : coef * loss;
  };
  add("load_balance", c.load_balance, [&] { return load_balance_loss(r); });
  add("z_loss", c.z_loss, [&] { return z_loss(r); });
  add("entropy", c.entropy, [&] { return entropy_loss(r); });
  add("tsallis", c.tsallis, [&] { return tsallis_loss(r, c.tsallis_q, c.tsallis_eps, token_mask); });
  if (r.penalty.per_token.defined()) {  // the router's own loss (relu: L1), always on, weighted by its state
    const at::Tensor loss = batch_mean_tokens(r.penalty.per_token);
    out.values[r.penalty.name] = global_value(loss).item<double>();
    out.total = out.total.defined() ? out.total + r.penalty.coefficient * loss : r.penalty.coefficient * loss;
  }
  if (!out.total.defined()) {
    const at::Tensor& like = r.probs.defined() ? r.probs : r.logits;
    out.total = like.defined() ? at::zeros({}, like.options()) : at::zeros({}, at::kFloat);
  }
  return out;
}

}  // namespace dynamoe::moe
