#pragma once
// Auxiliary router losses (docs/methods.md section 4), as pure functions of a Routing.
// Shape legend: N tokens, E experts of the layer. Each loss is a 0-dim tensor of r.probs' dtype
// (float or double), differentiable where stated; nothing is kept in globals.
//
//   Routing r = route("top_k", logits, opt, ctx);
//   AuxLosses aux = aux_losses(r, LossCoefficients{});   // load_balance 1e-2, z_loss 1e-3
//   loss = task_loss + aux.total;                        // aux.values["load_balance"] for metrics
//
// With N = 0 tokens (or no token left by token_mask) every loss is 0.
#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include "dynamoe/moe/routing.h"

namespace dynamoe::moe {

/// Switch load balance: E * sum_i f_i * P_i. f_i = (assignments to expert i) / (all assignments),
/// from r.mask as routed (after capacity), a constant; P_i = mean_t p_{t,i} from r.probs,
/// differentiable. 1 for uniform p (whatever f), and for balanced f (whatever p). 0 when r.mask
/// has no assignment at all.
at::Tensor load_balance_loss(const Routing& r);

/// ST-MoE router z-loss: mean_t (logsumexp_i z_{t,i})^2, from r.logits (differentiable).
at::Tensor z_loss(const Routing& r);

/// Mean per-token Shannon entropy of r.probs: mean_t(-sum_i p log p), with 0 log 0 = 0 (value
/// and gradient: the gradient w.r.t. an exactly-zero p is taken as 0). 0 when E = 1.
at::Tensor entropy_loss(const Routing& r);

/// Normalised Tsallis entropy per token, H_norm(p_t) = H_q(p_t) / H_max, [N, E] -> [N]:
/// H_q = (1 - sum_i (p_i + eps)^q) / (q - 1), H_max = (1 - E^(1-q)) / (q - 1); for |q - 1| < 1e-9
/// the Shannon limit -sum_i p_i log p_i / log E, exact, without eps (0 log 0 = 0), as the
/// tsallis_hybrid router computes Routing.h_norm. With E = 1, H_max = 0 and H_norm is defined as
/// 0. Differentiable w.r.t. p.
at::Tensor tsallis_entropy_normalized(const at::Tensor& p, double q, double eps);

/// DynMoLE loss: 0.01 * mean_t H_norm(p_t) + 0.001 * E * sum_i mean_t(w_{t,i}) * mean_t(p_{t,i}),
/// p = r.probs, w = r.weights (the masked soft weights). Gradients flow through all three
/// factors (H_norm, w and p), as in the DynMoLE reference code. token_mask ([N] bool, optional)
/// keeps only the true tokens in every mean_t (padding excluded).
at::Tensor tsallis_loss(const Routing& r, double q, double eps, const at::Tensor& token_mask = {});

/// Coefficient of each auxiliary loss; 0 disables it (it is then not computed at all).
struct LossCoefficients {
  double load_balance = 1e-2;
  double z_loss = 1e-3;
  double entropy = 0;  ///< 1e-4 in Huang et al., docs/methods.md section 4.3
  double tsallis = 0;  ///< multiplies the whole DynMoLE formula (1.0 = as written, with its 0.01 and 0.001)
  double tsallis_q = 1.1;
  double tsallis_eps = 1e-5;
};

/// The auxiliary losses of one layer.
struct AuxLosses {
  at::Tensor total;                      ///< 0-dim, sum_k coef_k * loss_k (0 when every coefficient is 0)
  std::map<std::string, double> values;  ///< unweighted loss_k for the enabled losses: load_balance, z_loss, entropy, tsallis
};

/// Computes the losses whose coefficient is non-zero, plus the router's own penalty when it has
/// one (r.penalty: coefficient x batch mean of per_token, reported under its name). token_mask ([N] bool, optional) excludes
/// padding tokens from the tsallis loss (the other losses use every token, as in docs/methods.md section 4).
AuxLosses aux_losses(const Routing& r, const LossCoefficients& c, const at::Tensor& token_mask = {});

}  // namespace dynamoe::moe
