#!/usr/bin/python3
"""An independent test oracle for `dynamoe moe-apply` (one MoE layer, files in and out).

usage: moe_oracle.py --config layer.yaml --input x.safetensors --weights w.safetensors
                     --out out.safetensors [--grad-output g.safetensors] [--atol 1e-5]
                     [--k-max K] [--tie-tol 1e-6] [--use-out-mask]

Written only from docs/moe-apply.md (file layout, parameter and buffer names, the out file's
tensors) and the formulas of docs/methods.md, sections 0-4, 2.9, 2.10 and 9 (dynamic-k routers);
it shares no code or logic with the C++ sources.
It recomputes the layer in float64 with torch (Debian's python3-torch, no PyPI package),
compares every tensor of the out file and, with --grad-output, the gradients of
sum(y * grad_y) + aux_loss (torch autograd, float64) with grad.input and grad.<param>.

One line per tensor: name, shape, max abs error, OK/FAIL. Exit 0 only if every expected tensor
is present with the expected shape and every max abs error is <= atol (the mask must match
exactly). Routing decisions that are tied, or within a relative --tie-tol of a boundary, in this float64
computation are reported as notes, since a float32 run may legitimately decide them otherwise;
a mask mismatch is still a failure, but the report says whether it lies on such a token.
--use-out-mask (diagnostic, dropless only) routes with the out file's mask instead of this
oracle's own choice, so that the remaining tensors can still be checked after a tie flip.

Readings of docs/methods.md (where a choice is left open, this is the oracle's interpretation):
  * Temperature: p = softmax(z / T) with T = moe.router.temperature for top_k, top_p, threshold and
    expert_choice (as docs/config.md says); tsallis_hybrid uses p = softmax(z) (docs/methods.md
    section 2.5: no T); dynamoe uses g = softmax(z / dynamoe_temperature). `logits` is z before
    any T.
  * Ties in any "largest"/"top C" choice go to the lower index (expert index for token-choice
    routers and the dynamoe cap, token index for expert_choice and capacity), i.e. a stable
    descending sort.
  * top_p: sort p descending; the kept prefix is the shortest whose cumulative sum is >= top_p
    ("reaches"), so the crossing expert is included; if rounding keeps the total below top_p,
    all E are kept. Then |S| = min(max(|S|, min_k), max_k) with max_k = top_p_max_k (0: E) and
    also capped by the layer's k_max when k_max > 0 (docs: --k-max is "the cap of the dynamoe
    and top_p routers"); min_k is itself capped at E. Weights raw p_S, or p_S / sum p_S with
    top_p_normalize.
  * threshold: S = {i : p_i >= theta}, empty -> {argmax p}; raw p_S, or renormalised.
  * dynamoe (eval only, no noise): t = torch.quantile(g_t, tau, interpolation='linear') over
    the token's own E values; S = {i : g_i > t} (strict), empty -> {argmax g}; if k_max > 0
    and |S| > k_max keep the k_max largest g. w_S = softmax over the selected g values, i.e.
    exp(g_i) / sum_{j in S} exp(g_j) (literally "softmax over the selected g_i", NOT g_S /
    sum g_S). `probs` is g. The threshold t carries no gradient (it only decides S).
  * tsallis_hybrid: top-p mask = (cumsum of the descending-sorted p <= top_p), mapped back to
    expert order (the crossing expert is NOT included, unlike top_p); OR the keep_top_k
    largest p. H_q = (1 - sum_i (p_i + eps)^q) / (q - 1), H_max = (1 - E^(1-q)) / (q - 1),
    H_norm = H_q / H_max; for q == 1, H_norm = (-sum p log p) / log E (plain Shannon, no eps);
    for E == 1 (H_max = 0, the ratio is 0/0) H_norm = 0.
    If H_norm > threshold (strict) and not (threshold >= 1 or q <= 0): all E active.
    w = p * mask, not renormalised. `h_norm` [N] is compared too.
  * expert_choice: C = ceil(expert_choice_capacity * N * k / E) clamped to [1, N]; expert i
    takes its C largest p[:, i] (ties: lower token index); w = p on the chosen pairs. A
    token may end with no expert (y_t = shared experts only).
  * capacity_factor > 0 (token-choice routers only; not expert_choice): total = number of
    assignments before capacity, k_mean = total / N, cap = ceil(cf * N * k_mean / E) =
    ceil(cf * total / E) computed exactly with the decimal value of cf. Each expert keeps its
    cap assignments of largest weight w (after the router's normalisation), ties to the lower
    token index; the dropped ones get weight 0 and the kept weights are NOT renormalised.
  * load_balance: E * sum_i f_i * P_i, f_i = (assignments to i) / (total assignments) from the
    final mask (after capacity: the assignments actually made; no gradient), P_i = mean_t of
    the router's probs (for dynamoe g, for tsallis_hybrid softmax(z)). If it fails, the report
    also shows the value with f taken before capacity, as a hint.
  * z_loss: mean_t logsumexp(z_t)^2 on the raw logits z (no temperature).
  * entropy: mean_t(-sum_i p log p) with p = the router's probs (as for load_balance).
  * tsallis: multiplier * [0.01 * mean_t H_norm(p_t) + 0.001 * E * sum_i
    mean_t(w_{t,i}) * mean_t(p_{t,i})], with q and eps from tsallis_q / tsallis_eps, w = the
    router's final dense weights and p = the router's probs, as docs/methods.md section 4
    defines p: softmax(z / T) (softmax(z) for tsallis_hybrid; g for dynamoe).
    The out file's loss.tsallis is taken to be the bracket (unweighted) and aux_loss adds
    moe.losses.tsallis * bracket.
  * aux_loss = sum over the four losses of coef * loss; a loss is "enabled" when coef > 0 and
    must then be present as loss.<name>; any loss.<name> present is compared anyway.
  * Experts: order = (E - n_constant - n_copy - n_zero) experts of kind moe.experts.kind, then
    n_constant constant, n_copy copy, n_zero zero. gelu is the exact (erf) gelu. Shared
    experts (weight 1 for every token) take their kind from the weights file (w3 -> swiglu,
    b1 -> ffn, weight -> linear; normally moe.experts.kind's kind); ffn uses expert_activation.
  * Gates: linear z = x W^T (+ b); quadratic z_i = x^T A_i x (+ b_i . x for polynomial) + c_i,
    with gate_rank r > 0: x^T P_i^T Q_i x = (P_i x) . (Q_i x); mlp z = w2 tanh(w1 x), no bias,
    hidden = gate_mlp_mult * E.
  * k_max: --k-max if given, else the out file's metadata key "k_max" if present, else 0.

Readings of docs/methods.md section 9 (dynamic-k routers) and the new rows of docs/moe-apply.md:
  * Config: moe.router.scope -> dynamoe_scope (token | batch, default token), moe.router.momentum
    -> dynamoe_momentum (0.01); dtop_p: temperature (1.0; the same T as top_p), target_k (2.0),
    p0, kp, ki (0.5, 1.0, 0.1), normalize_logits (false), and min_k / max_k / normalize, which
    are read into the same settings as top_p's (defaults 1, 0, false); relu: target_k (2.0),
    lambda0 (1e-8; not used: the state comes from the weights file), alpha (1.2), balance (false).
  * Controller state: the weights file must hold exactly the router.* buffers of the configured
    router, each a scalar (shape []): router.tbar (dynamoe, scope batch), router.P and router.I
    (dtop_p), router.lambda (relu); missing, misshapen or unexpected ones are failures, like
    parameters. router.gamma (dtop_p with normalize_logits) is a parameter, shape [], and gets
    grad.router.gamma. Buffers are read as float64 constants: no gradient flows into them.
    (expert_bias stays tolerated, as before.)
  * Mode: training mode when the out metadata "mode" starts with "train", else eval. dynamoe in
    training mode with sigma > 0 is refused for both scopes (random noise); with sigma = 0 the
    training rules are checked.
  * dynamoe, scope batch: g = softmax(z / T_d) as for scope token. Eval: t = router.tbar (the
    weights file's value). Training: t = torch.quantile of the N*E values of g flattened,
    tau, linear interpolation (section 2.4's rule with N*E values instead of E), no gradient.
    S = {i : g_i > t} (strict), empty -> {argmax g}, cap at k_max keeping the largest g;
    w = exp(g_i) / sum_{j in S} exp(g_j); probs = g. Tie notes: g within tie-tol of t (not the
    order statistic t is exactly equal to when tau * (N*E - 1) is whole, as for scope token).
  * dtop_p: z' = gamma (z - mean z) / (std z + 1e-6) per token, std the population std
    sqrt(mean (z - mean z)^2) (the 1e-6 is added to the std, outside the root), or z' = z;
    p = softmax(z' / T); S = the top_p rule above with P = router.P (crossing expert included,
    clamped by min_k, max_k and k_max exactly as for top_p); w = p_S, or p_S / sum p_S with
    normalize; probs = p (of z'). The losses use p, except z_loss, which uses the raw gate
    logits z (the `logits` tensor is z, not z').
  * relu: G = ReLU(z) (no temperature); S = {i : G_i > 0} = {i : z_i > 0}, possibly empty (the
    token then gets only the shared experts); w = G on S (capacity, when on, applies as for any
    token-choice router, ordering by w = G, dropped entries weight 0); probs = softmax(z) (used
    by load_balance, entropy and tsallis). Tie notes: z within tie-tol * max(1, max_i |z_t,i|)
    of 0 (an absolute distance at the token's logit scale, since a relative distance to 0 is
    meaningless).
  * relu_l1 = mean_t sum_i c_i G_{t,i} with G = ReLU(z) over all N*E entries (G, not w: entries
    dropped by capacity still count). c_i = 1; with balance, c_i = E * f_i where f_i = expert
    i's share of the batch's assignments "as this router chose them, before any capacity limit"
    (section 9.3; section 4 notes this exception to its after-capacity rule); f = 0 when nothing
    is assigned; c carries no gradient. If it fails, a hint shows the value with f after
    capacity. loss.relu_l1 is unweighted and always
    expected for relu; aux_loss = (section-4 losses with coef > 0) + lambda * relu_l1 with
    lambda = router.lambda of the weights file (the value before any update; a constant).
  * state.<buffer> (only in training mode; one per router.* buffer; a state.* tensor in eval
    mode or for a buffer the router does not have is a failure): the value after one controller
    update from this single forward (the "training forwards since the last step" are this one):
      - dynamoe batch: tbar' = (1 - m) tbar + m t, t the training batch quantile above.
      - dtop_p: kbar = (number of assignments before capacity) / N (the router's own choices);
        e = (target_k - kbar) / E; I' = clamp(I + e, -10, 10); P' = clamp(p0 + kp e + ki I',
        0.05, 1), i.e. the P update uses the already updated I' (the two lines read in order).
      - relu: s = (number of entries with G == 0, i.e. z <= 0) / (N*E), s* = 1 - target_k / E,
        lambda' = lambda * alpha^sign(s* - s), sign(0) = 0 (lambda unchanged). The sign is
        decided exactly in rationals (decimal value of target_k); an exact or near equality
        s == s* is reported as a note, since float arithmetic may decide it either way.
  * Gradients (--grad-output): float64 autograd of sum(y * grad_y) + aux_loss through every
    parameter (router.gamma included), with the controller states, the threshold t, the
    assignment counts and relu's c_i as constants. ReLU'(0) = 0 (torch's convention).
"""
import argparse
import math
import sys
from fractions import Fraction

import torch
import torch.nn.functional as F

from safetensors_io import NAMES as ST_NAMES, read_safetensors

# ----------------------------------------------------------------------------- config

DEFAULTS = {
    "gate": "linear", "gate_bias": False, "gate_rank": 0, "gate_mlp_mult": 8, "gate_residual": False,
    "router": "top_k", "temperature": 1.0, "k": 2, "top_k_normalize": True,
    "top_p": 0.4, "top_p_min_k": 1, "top_p_max_k": 0, "top_p_normalize": False,
    "theta": 0.1, "threshold_normalize": False,
    "dynamoe_temperature": 0.5, "dynamoe_sigma": 0.1, "dynamoe_tau": 0.5,
    "dynamoe_scope": "token", "dynamoe_momentum": 0.01,
    "target_k": 2.0, "dtop_p_p0": 0.5, "dtop_p_kp": 1.0, "dtop_p_ki": 0.1, "dtop_p_normalize_logits": False,
    "relu_lambda0": 1e-8, "relu_alpha": 1.2, "relu_balance": False,
    "tsallis_q": 1.1, "tsallis_top_p": 0.75, "tsallis_threshold": 0.9, "tsallis_eps": 1e-5,
    "tsallis_keep_top_k": 2, "expert_choice_capacity": 1.0, "capacity_factor": 0.0,
    "bias_balancing": False,
    "expert": "ffn", "expert_hidden": 64, "expert_activation": "gelu",
    "n_zero": 0, "n_copy": 0, "n_constant": 0, "n_shared": 0, "e_max": 8,
    "load_balance": 0.01, "z_loss": 0.001, "entropy": 0.0, "tsallis": 0.0,
}
BOOL_KEYS = {"gate_bias", "gate_residual", "top_k_normalize", "top_p_normalize", "threshold_normalize",
             "bias_balancing", "dtop_p_normalize_logits", "relu_balance"}
INT_KEYS = {"gate_rank", "gate_mlp_mult", "k", "top_p_min_k", "top_p_max_k", "tsallis_keep_top_k",
            "expert_hidden", "n_zero", "n_copy", "n_constant", "n_shared", "e_max"}
STR_KEYS = {"gate", "router", "expert", "expert_activation", "dynamoe_scope"}

GATES = ("linear", "quadratic_polynomial", "quadratic_monomial", "mlp")
ROUTERS = ("top_k", "top_p", "threshold", "dynamoe", "tsallis_hybrid", "expert_choice", "dtop_p", "relu")
EXPERTS = ("linear", "ffn", "swiglu")
ACTS = {"relu": torch.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh}
LOSSES = ("load_balance", "z_loss", "entropy", "tsallis")


class OracleError(Exception):
    pass


def to_bool(v, key):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return v.lower() in ("true", "1", "yes", "on")
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise OracleError(f"moe.{key}: not a boolean: {v!r}")


# The grouped moe keys of a dynamoe config (moe.gate.*, moe.router.*, moe.experts.*, moe.layers.*,
# moe.losses.*) mapped to this oracle's own flat names; a router option's name depends on the router.
GROUP_KEYS = {
    "gate": {"kind": "gate", "bias": "gate_bias", "rank": "gate_rank", "mult": "gate_mlp_mult",
             "residual": "gate_residual"},
    "experts": {"kind": "expert", "hidden": "expert_hidden", "activation": "expert_activation", "n_zero": "n_zero",
                "n_copy": "n_copy", "n_constant": "n_constant", "n_shared": "n_shared"},
    "layers": {"e_max": "e_max"},
    "losses": {"load_balance": "load_balance", "z_loss": "z_loss", "entropy": "entropy", "tsallis": "tsallis"},
}
ROUTER_KEYS = {
    "top_k": {"temperature": "temperature", "k": "k", "normalize": "top_k_normalize"},
    "top_p": {"temperature": "temperature", "p": "top_p", "min_k": "top_p_min_k", "max_k": "top_p_max_k",
              "normalize": "top_p_normalize"},
    "threshold": {"temperature": "temperature", "theta": "theta", "normalize": "threshold_normalize"},
    "dynamoe": {"temperature": "dynamoe_temperature", "sigma": "dynamoe_sigma", "tau": "dynamoe_tau",
                "scope": "dynamoe_scope", "momentum": "dynamoe_momentum"},
    "tsallis_hybrid": {"q": "tsallis_q", "p": "tsallis_top_p", "threshold": "tsallis_threshold", "eps": "tsallis_eps",
                       "keep_top_k": "tsallis_keep_top_k"},
    "expert_choice": {"temperature": "temperature", "k": "k", "capacity": "expert_choice_capacity"},
    # dtop_p's min_k / max_k / normalize are the top_p rule's (docs/methods.md section 9.2 -> 2.2)
    "dtop_p": {"temperature": "temperature", "target_k": "target_k", "p0": "dtop_p_p0", "kp": "dtop_p_kp",
               "ki": "dtop_p_ki", "min_k": "top_p_min_k", "max_k": "top_p_max_k", "normalize": "top_p_normalize",
               "normalize_logits": "dtop_p_normalize_logits"},
    "relu": {"target_k": "target_k", "lambda0": "relu_lambda0", "alpha": "relu_alpha", "balance": "relu_balance"},
}


def flatten_moe(moe):
    """The grouped moe mapping -> this oracle's flat names (unknown keys are kept as they are)."""
    flat = {}
    for k, v in moe.items():
        if isinstance(v, dict) and k == "router":
            kind = v.get("kind", "top_k")
            flat["router"] = kind
            for rk, rv in v.items():
                if rk != "kind":
                    flat[ROUTER_KEYS.get(kind, {}).get(rk, rk)] = rv
        elif isinstance(v, dict) and k in GROUP_KEYS:
            for gk, gv in v.items():
                flat[GROUP_KEYS[k].get(gk, gk)] = gv
        else:
            flat[k] = v
    return flat


def load_config(path):
    import yaml
    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    group = {}
    if isinstance(doc.get("moe"), dict):
        group.update(flatten_moe(doc["moe"]))
    cfg = dict(DEFAULTS)
    raw = {}
    for k, v in group.items():
        raw[k] = v
        if k in BOOL_KEYS:
            cfg[k] = to_bool(v, k)
        elif k in INT_KEYS:
            cfg[k] = int(v)
        elif k in STR_KEYS:
            cfg[k] = str(v)
        elif k in DEFAULTS:
            cfg[k] = float(v)
        else:
            cfg[k] = v  # schedule keys etc.: not used by a single layer
    cfg["_raw"] = raw
    return cfg


def check_supported(cfg):
    if cfg["gate"] not in GATES:
        raise OracleError(f"gate '{cfg['gate']}' is not supported by this oracle (supported: {', '.join(GATES)})")
    if cfg["router"] not in ROUTERS:
        raise OracleError(f"router '{cfg['router']}' is not supported by this oracle (supported: {', '.join(ROUTERS)})")
    if cfg["expert"] not in EXPERTS:
        raise OracleError(f"expert '{cfg['expert']}' is not supported (supported: {', '.join(EXPERTS)})")
    if cfg["expert_activation"] not in ACTS:
        raise OracleError(f"expert_activation '{cfg['expert_activation']}' is not supported")
    if cfg["gate_residual"]:
        raise OracleError("moe.gate.residual is not supported (moe-apply does not support it either)")
    if cfg["bias_balancing"]:
        raise OracleError("moe.bias_balancing is not supported by this oracle")
    if cfg["dynamoe_scope"] not in ("token", "batch"):
        raise OracleError(f"moe.router.scope '{cfg['dynamoe_scope']}' is not token or batch")
    E = cfg["e_max"]
    n_special = cfg["n_zero"] + cfg["n_copy"] + cfg["n_constant"]
    if E < 1 or n_special > E:
        raise OracleError(f"e_max = {E} cannot hold n_zero + n_copy + n_constant = {n_special}")


def dec(v):
    """The decimal value of a config float as written (1.1 means 11/10, not the binary double)."""
    return Fraction(repr(float(v)))


# ----------------------------------------------------------------------------- the layer

def expert_kinds(cfg):
    E = cfg["e_max"]
    n_main = E - cfg["n_constant"] - cfg["n_copy"] - cfg["n_zero"]
    return [cfg["expert"]] * n_main + ["constant"] * cfg["n_constant"] + ["copy"] * cfg["n_copy"] + \
        ["zero"] * cfg["n_zero"]


def shared_kind(params, j):
    p = f"shared.{j}."
    if p + "w3" in params:
        return "swiglu"
    if p + "b1" in params:
        return "ffn"
    if p + "weight" in params:
        return "linear"
    raise OracleError(f"shared expert {j}: no recognisable parameters ({p}w1/w3/w2, {p}w1/b1/w2/b2 or {p}weight)")


def expected_param_shapes(cfg, D, params):
    """name -> shape, from the docs' table."""
    E, F_ = cfg["e_max"], cfg["expert_hidden"]
    shapes = {}
    g, r = cfg["gate"], cfg["gate_rank"]
    if g == "linear":
        shapes["gate.weight"] = [E, D]
        if cfg["gate_bias"]:
            shapes["gate.bias"] = [E]
    elif g.startswith("quadratic"):
        if r > 0:
            shapes["gate.P"] = [E, r, D]
            shapes["gate.Q"] = [E, r, D]
        else:
            shapes["gate.A"] = [E, D, D]
        if g == "quadratic_polynomial":
            shapes["gate.b"] = [E, D]
        shapes["gate.c"] = [E]
    elif g == "mlp":
        h = cfg["gate_mlp_mult"] * E
        shapes["gate.w1"] = [h, D]
        shapes["gate.w2"] = [E, h]

    def add(prefix, kind):
        if kind == "linear":
            shapes[prefix + "weight"] = [D, D]
            shapes[prefix + "bias"] = [D]
        elif kind == "ffn":
            shapes[prefix + "w1"] = [F_, D]
            shapes[prefix + "b1"] = [F_]
            shapes[prefix + "w2"] = [D, F_]
            shapes[prefix + "b2"] = [D]
        elif kind == "swiglu":
            shapes[prefix + "w1"] = [F_, D]
            shapes[prefix + "w3"] = [F_, D]
            shapes[prefix + "w2"] = [D, F_]
        elif kind == "constant":
            shapes[prefix + "wc"] = [2, D]
            shapes[prefix + "v"] = [D]

    for i, kind in enumerate(expert_kinds(cfg)):
        add(f"experts.{i}.", kind)
    for j in range(cfg["n_shared"]):
        add(f"shared.{j}.", shared_kind(params, j))
    if cfg["router"] == "dtop_p" and cfg["dtop_p_normalize_logits"]:
        shapes["router.gamma"] = []  # a learnable scalar parameter (docs/methods.md section 9.2)
    return shapes


def router_buffers(cfg):
    """The controller-state buffers (scalars, shape []) the configured router must have
    (docs/moe-apply.md, docs/methods.md section 9)."""
    R = cfg["router"]
    if R == "dynamoe" and cfg["dynamoe_scope"] == "batch":
        return ["router.tbar"]
    if R == "dtop_p":
        return ["router.P", "router.I"]
    if R == "relu":
        return ["router.lambda"]
    return []


def gate_logits(cfg, x, P):
    g = cfg["gate"]
    if g == "linear":
        z = x @ P["gate.weight"].t()
        if "gate.bias" in P:
            z = z + P["gate.bias"]
        return z
    if g.startswith("quadratic"):
        if "gate.A" in P:
            z = torch.einsum("nd,ide,ne->ni", x, P["gate.A"], x)
        else:
            px = torch.einsum("ird,nd->nir", P["gate.P"], x)
            qx = torch.einsum("ird,nd->nir", P["gate.Q"], x)
            z = (px * qx).sum(-1)
        if g == "quadratic_polynomial":
            z = z + x @ P["gate.b"].t()
        return z + P["gate.c"]
    if g == "mlp":
        return torch.tanh(x @ P["gate.w1"].t()) @ P["gate.w2"].t()
    raise OracleError(f"gate {g}")


def expert_out(kind, prefix, x, P, act):
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "copy":
        return x
    if kind == "constant":
        a = torch.softmax(x @ P[prefix + "wc"].t(), dim=-1)
        return a[:, 0:1] * x + a[:, 1:2] * P[prefix + "v"]
    if kind == "linear":
        return x @ P[prefix + "weight"].t() + P[prefix + "bias"]
    if kind == "ffn":
        return act(x @ P[prefix + "w1"].t() + P[prefix + "b1"]) @ P[prefix + "w2"].t() + P[prefix + "b2"]
    if kind == "swiglu":
        return (F.silu(x @ P[prefix + "w1"].t()) * (x @ P[prefix + "w3"].t())) @ P[prefix + "w2"].t()
    raise OracleError(f"expert kind {kind}")


def sorted_desc(v):
    """Stable descending order of a 1-D tensor (ties: lower index first)."""
    return torch.sort(-v, stable=True).indices


def tsallis_hnorm(p, q, eps):
    E = p.shape[-1]
    if E == 1:
        # H_max = 0: the ratio of docs/methods.md section 2.5 is 0/0; a one-expert distribution
        # carries no uncertainty, so H_norm is taken as 0 (and the broadcast never fires).
        return torch.zeros(p.shape[:-1], dtype=p.dtype)
    if abs(q - 1.0) < 1e-12:
        return -(p * torch.log(p)).sum(-1) / math.log(E)
    hq = (1.0 - ((p + eps) ** q).sum(-1)) / (q - 1.0)
    hmax = (1.0 - E ** (1.0 - q)) / (q - 1.0)
    return hq / hmax


def near(a, b, tol):
    """a and b within a relative tol of each other (float32 decides such pairs either way)."""
    return abs(a - b) <= tol * max(abs(a), abs(b))


class Notes:
    def __init__(self):
        self.by_token = {}  # token -> list of reasons
        self.general = []

    def tok(self, t, msg):
        self.by_token.setdefault(int(t), []).append(msg)


def top_p_mask(cfg, p, thr, k_max, tie_tol, notes, label="top_p"):
    """The top_p rule of docs/methods.md section 2.2 on the (detached) probabilities p [N, E] with
    threshold thr: shortest descending prefix reaching thr, clamped to [min_k, max_k]."""
    N, E = p.shape
    mask = torch.zeros(N, E, dtype=torch.bool)
    max_k = cfg["top_p_max_k"] if cfg["top_p_max_k"] > 0 else E
    if k_max > 0:
        max_k = min(max_k, k_max)
    max_k = min(max_k, E)
    min_k = min(cfg["top_p_min_k"], E)
    for t in range(N):
        o = sorted_desc(p[t])
        cs = torch.cumsum(p[t, o], 0)
        reach = (cs >= thr).nonzero()
        cnt = int(reach[0].item()) + 1 if len(reach) else E
        for m in range(E):
            d = abs(cs[m].item() - thr)
            if near(cs[m].item(), thr, tie_tol):
                what = "top_p" if label == "top_p" else "router.P"
                notes.tok(t, f"{label}: cumulative sum of the {m+1} largest is {cs[m].item():.9g}, within {d:.1e} of {what}")
        cnt = min(max(cnt, min_k), max_k)
        mask[t, o[:cnt]] = True
        if cnt < E:
            gap = (p[t, o[cnt - 1]] - p[t, o[cnt]]).item()
            if near(p[t, o[cnt - 1]].item(), p[t, o[cnt]].item(), tie_tol):
                notes.tok(t, f"{label}: tie/near tie (gap {gap:.2e}) at the cut rank {cnt}")
    return mask


def dtop_p_logits(cfg, z, rt):
    """z' of docs/methods.md section 9.2: z, or gamma (z - mean z) / (std z + 1e-6) per token with
    the population std."""
    if not cfg["dtop_p_normalize_logits"]:
        return z
    zc = z - z.mean(-1, keepdim=True)
    std = torch.sqrt((zc * zc).mean(-1, keepdim=True))
    return rt["router.gamma"] * zc / (std + 1e-6)


def route(cfg, z, k_max, tie_tol, notes, out_mask=None, rt=None, train=False):
    """Returns dict with probs (router's), mask (bool, final), weights (dense, final),
    mask_before_capacity, h_norm (tsallis_hybrid), dropped, and batch_t (dynamoe batch scope,
    training). rt: the router.* tensors (buffers as constants, router.gamma as a parameter)."""
    N, E = z.shape
    R = cfg["router"]
    rt = rt or {}
    res = {}
    if R in ("top_k", "top_p", "threshold", "expert_choice"):
        probs = torch.softmax(z / cfg["temperature"], dim=-1)
    elif R in ("tsallis_hybrid", "relu"):
        probs = torch.softmax(z, dim=-1)
    elif R == "dynamoe":
        probs = torch.softmax(z / cfg["dynamoe_temperature"], dim=-1)
    elif R == "dtop_p":
        probs = torch.softmax(dtop_p_logits(cfg, z, rt) / cfg["temperature"], dim=-1)
    res["probs"] = probs
    p = probs.detach()
    mask = torch.zeros(N, E, dtype=torch.bool)

    if R == "top_k":
        k = cfg["k"]
        if k > E:
            raise OracleError(f"top_k: k = {k} > E = {E}")
        for t in range(N):
            o = sorted_desc(p[t])
            mask[t, o[:k]] = True
            if k < E:
                a, b = p[t, o[k - 1]].item(), p[t, o[k]].item()
                gap = a - b
                if gap == 0.0:
                    notes.tok(t, f"top_k: exact tie between experts {o[k-1].item()} and {o[k].item()} at rank {k} (lower index taken)")
                elif near(a, b, tie_tol):
                    notes.tok(t, f"top_k: near tie (gap {gap:.2e}) between experts {o[k-1].item()} and {o[k].item()} at rank {k}")

    elif R == "top_p":
        mask = top_p_mask(cfg, p, cfg["top_p"], k_max, tie_tol, notes)

    elif R == "dtop_p":
        P_thr = rt["router.P"].item()
        notes.general.append(f"dtop_p: router.P = {P_thr:.9g}, router.I = {rt['router.I'].item():.9g}"
                             + (f", router.gamma = {rt['router.gamma'].item():.9g}" if "router.gamma" in rt else ""))
        mask = top_p_mask(cfg, p, P_thr, k_max, tie_tol, notes, label="dtop_p")

    elif R == "relu":
        zd = z.detach()
        mask = zd > 0
        for t in range(N):
            scale = max(1.0, zd[t].abs().max().item())
            for i in range(E):
                if abs(zd[t, i].item()) <= tie_tol * scale:
                    notes.tok(t, f"relu: z[{i}] = {zd[t, i].item():.3e} within {tie_tol:g} * {scale:.3g} of 0")

    elif R == "threshold":
        th = cfg["theta"]
        for t in range(N):
            s = p[t] >= th
            for i in range(E):
                d = abs(p[t, i].item() - th)
                if near(p[t, i].item(), th, tie_tol):
                    notes.tok(t, f"threshold: p[{i}] = {p[t, i].item():.9g} within {d:.1e} of theta")
            if not s.any():
                o = sorted_desc(p[t])
                s[o[0]] = True
                if E > 1 and near(p[t, o[0]].item(), p[t, o[1]].item(), tie_tol):
                    notes.tok(t, "threshold: empty set, argmax tied/near tied")
            mask[t] = s

    elif R == "dynamoe":
        tau = cfg["dynamoe_tau"]
        batch = cfg["dynamoe_scope"] == "batch"
        if batch:
            # docs/methods.md section 9.1: one threshold for the whole batch
            if train:
                allg = p.reshape(-1)
                bth = torch.quantile(allg, tau, interpolation="linear")
                bsrt = torch.sort(allg).values
                bpos = tau * (N * E - 1)
                res["batch_t"] = bth.item()
                notes.general.append(f"dynamoe batch scope (training): t = quantile of the {N * E} values of g "
                                     f"at tau = {tau:g}: {bth.item():.9g}")
            else:
                bth = rt["router.tbar"]
                bsrt, bpos = None, None
                notes.general.append(f"dynamoe batch scope (eval): t = router.tbar = {bth.item():.9g}")
        for t in range(N):
            g = p[t]
            if batch:
                th, srt, pos = bth, bsrt, bpos
                what = "the batch threshold"
            else:
                th = torch.quantile(g, tau, interpolation="linear")
                srt = torch.sort(g).values
                pos = tau * (E - 1)
                what = "the quantile"
            s = g > th
            exact_pos = pos is not None and pos == math.floor(pos)
            for i in range(E):
                d = abs(g[i].item() - th.item())
                if near(g[i].item(), th.item(), tie_tol) and not (exact_pos and g[i].item() == srt[int(pos)].item() and d == 0.0):
                    notes.tok(t, f"dynamoe: g[{i}] = {g[i].item():.9g} within {d:.1e} of {what} {th.item():.9g}")
            if not s.any():
                o = sorted_desc(g)
                s[o[0]] = True
                if E > 1 and near(g[o[0]].item(), g[o[1]].item(), tie_tol):
                    notes.tok(t, "dynamoe: empty set, argmax tied/near tied")
            if k_max > 0 and int(s.sum()) > k_max:
                o = sorted_desc(g)
                sel = [i for i in o.tolist() if s[i]]
                keep = sel[:k_max]
                gap = (g[sel[k_max - 1]] - g[sel[k_max]]).item()
                if near(g[sel[k_max - 1]].item(), g[sel[k_max]].item(), tie_tol):
                    notes.tok(t, f"dynamoe: tie/near tie (gap {gap:.2e}) at the k_max = {k_max} cap")
                s = torch.zeros(E, dtype=torch.bool)
                s[keep] = True
            mask[t] = s

    elif R == "tsallis_hybrid":
        q, eps = cfg["tsallis_q"], cfg["tsallis_eps"]
        top_p, thr, keep = cfg["tsallis_top_p"], cfg["tsallis_threshold"], cfg["tsallis_keep_top_k"]
        hn = tsallis_hnorm(probs, q, eps)
        res["h_norm"] = hn
        broadcast_ok = not (thr >= 1.0 or q <= 0.0)
        for t in range(N):
            o = sorted_desc(p[t])
            cs = torch.cumsum(p[t, o], 0)
            m = torch.zeros(E, dtype=torch.bool)
            m[o[cs <= top_p]] = True
            m[o[:min(keep, E)]] = True
            for j in range(E):
                d = abs(cs[j].item() - top_p)
                if near(cs[j].item(), top_p, tie_tol):
                    notes.tok(t, f"tsallis_hybrid: cumsum of the {j+1} largest within {d:.1e} of top_p")
            if 0 < keep < E and near(p[t, o[keep - 1]].item(), p[t, o[keep]].item(), tie_tol):
                notes.tok(t, f"tsallis_hybrid: tie/near tie at keep_top_k rank {keep}")
            h = hn[t].item()
            if broadcast_ok and near(h, thr, tie_tol):
                notes.tok(t, f"tsallis_hybrid: H_norm = {h:.9g} within {abs(h-thr):.1e} of threshold")
            if broadcast_ok and h > thr:
                m[:] = True
            mask[t] = m

    elif R == "expert_choice":
        C = math.ceil(dec(cfg["expert_choice_capacity"]) * N * cfg["k"] / E)
        C = max(1, min(N, C))
        notes.general.append(f"expert_choice: C = {C}")
        for i in range(E):
            o = sorted_desc(p[:, i])
            mask[o[:C], i] = True
            if C < N:
                gap = (p[o[C - 1], i] - p[o[C], i]).item()
                if near(p[o[C - 1], i].item(), p[o[C], i].item(), tie_tol):
                    notes.tok(o[C - 1].item(), f"expert_choice: expert {i} tie/near tie (gap {gap:.2e}) with token {o[C].item()} at rank C")

    if out_mask is not None:
        if cfg["capacity_factor"] > 0:
            raise OracleError("--use-out-mask is only for dropless configs (capacity_factor = 0)")
        notes.general.append("routing with the out file's mask (--use-out-mask)")
        mask = out_mask.clone()

    # weights from the (pre-capacity) mask, differentiable through probs
    mf = mask.to(probs.dtype)
    if R == "top_k":
        w = probs * mf
        if cfg["top_k_normalize"]:
            w = w / w.sum(-1, keepdim=True)
    elif R in ("top_p", "threshold", "dtop_p"):
        w = probs * mf
        if cfg["threshold_normalize" if R == "threshold" else "top_p_normalize"]:
            w = w / w.sum(-1, keepdim=True)
    elif R == "relu":
        w = torch.relu(z) * mf  # w = G on S, no normalisation
    elif R == "dynamoe":
        ex = torch.exp(probs) * mf
        w = ex / ex.sum(-1, keepdim=True)
    else:  # tsallis_hybrid, expert_choice
        w = probs * mf
    res["mask_before_capacity"] = mask.clone()

    dropped = 0
    cf = cfg["capacity_factor"]
    if cf > 0 and R != "expert_choice":
        total = int(mask.sum())
        cap = math.ceil(dec(cf) * total / E)
        notes.general.append(f"capacity: {total} assignments, cap = ceil({cf} * {total} / {E}) = {cap}")
        wd = w.detach()
        keep_mask = mask.clone()
        for i in range(E):
            toks = [t for t in sorted_desc(wd[:, i]).tolist() if mask[t, i]]
            if len(toks) > cap:
                for t in toks[cap:]:
                    keep_mask[t, i] = False
                dropped += len(toks) - cap
                gap = (wd[toks[cap - 1], i] - wd[toks[cap], i]).item() if cap > 0 else 1.0
                if cap > 0 and near(wd[toks[cap - 1], i].item(), wd[toks[cap], i].item(), tie_tol):
                    notes.tok(toks[cap], f"capacity: expert {i} tie/near tie (gap {gap:.2e}) at the cap")
        mask = keep_mask
        w = w * mask.to(w.dtype)
    res["mask"] = mask
    res["weights"] = w
    res["dropped"] = dropped
    return res


def forward(cfg, x, P, k_max, tie_tol, notes, out_mask=None, bufs=None, train=False):
    """bufs: the router.* buffers (float64 scalars, constants); train: training mode."""
    N, D = x.shape
    E = cfg["e_max"]
    bufs = bufs or {}
    z = gate_logits(cfg, x, P)
    rt = dict(bufs)
    if "router.gamma" in P:
        rt["router.gamma"] = P["router.gamma"]
    r = route(cfg, z, k_max, tie_tol, notes, out_mask, rt, train)
    act = ACTS[cfg["expert_activation"]]
    y = torch.zeros_like(x)
    w = r["weights"]
    for i, kind in enumerate(expert_kinds(cfg)):
        act_tok = r["mask"][:, i]
        if not act_tok.any():
            continue
        y = y + w[:, i:i + 1] * expert_out(kind, f"experts.{i}.", x, P, act)
    for j in range(cfg["n_shared"]):
        y = y + expert_out(shared_kind(P, j), f"shared.{j}.", x, P, act)

    probs = r["probs"]
    losses = {}
    mf = r["mask"].to(x.dtype)
    tot = mf.sum()
    f = mf.sum(0) / tot if tot > 0 else torch.zeros(E, dtype=x.dtype)
    losses["load_balance"] = E * (f * probs.mean(0)).sum()
    mb = r["mask_before_capacity"].to(x.dtype)
    f_b = mb.sum(0) / mb.sum() if mb.sum() > 0 else torch.zeros(E, dtype=x.dtype)
    alt_lb = (E * (f_b * probs.mean(0)).sum()).item()
    losses["z_loss"] = (torch.logsumexp(z, dim=-1) ** 2).mean()
    losses["entropy"] = (-(probs * torch.log(probs)).sum(-1)).mean()
    # The tsallis loss uses the router's probabilities, like the other losses (docs/methods.md
    # section 4): p = softmax(z / T) (for tsallis_hybrid, T = 1: softmax(z); for dynamoe, g).
    p1 = probs
    losses["tsallis"] = 0.01 * tsallis_hnorm(p1, cfg["tsallis_q"], cfg["tsallis_eps"]).mean() + \
        0.001 * E * (w.mean(0) * p1.mean(0)).sum()
    aux = torch.zeros((), dtype=x.dtype)
    for name in LOSSES:
        if cfg[name] > 0:
            aux = aux + cfg[name] * losses[name]
    alt_relu_l1 = None
    if cfg["router"] == "relu":
        # docs/methods.md section 9.3: relu_l1 = mean_t sum_i c_i G_{t,i}, G = ReLU(z) (all entries);
        # with balance c_i = E * f_i, f from the router's own choices before capacity (section 9.3
        # says so explicitly); no gradient
        G = torch.relu(z)
        c = E * f_b.detach() if cfg["relu_balance"] else torch.ones(E, dtype=x.dtype)
        losses["relu_l1"] = (G * c).sum(-1).mean()
        if cfg["relu_balance"]:
            alt_relu_l1 = (G * (E * f.detach())).sum(-1).mean().item()
        aux = aux + bufs["router.lambda"] * losses["relu_l1"]
    out = {"y": y, "logits": z, "probs": probs, "weights": w, "mask": r["mask"].to(torch.uint8),
           "aux_loss": aux}
    if "h_norm" in r:
        out["h_norm"] = r["h_norm"]
    for name in LOSSES:
        out["loss." + name] = losses[name]
    if "relu_l1" in losses:
        out["loss.relu_l1"] = losses["relu_l1"]
    state = controller_update(cfg, z.detach(), r, bufs, notes, tie_tol) if train else {}
    return out, {"dropped": r["dropped"], "alt_load_balance": alt_lb, "alt_relu_l1": alt_relu_l1,
                 "mask_before_capacity": r["mask_before_capacity"], "state": state}


def controller_update(cfg, z, r, bufs, notes, tie_tol):
    """The router.* buffers after one controller update from this single training forward
    (docs/methods.md section 9; docs/moe-apply.md state.<buffer>). Returns name -> 0-d float64."""
    N, E = z.shape
    R = cfg["router"]
    new = {}
    if R == "dynamoe" and cfg["dynamoe_scope"] == "batch":
        m = cfg["dynamoe_momentum"]
        t = r["batch_t"]
        new["router.tbar"] = (1.0 - m) * bufs["router.tbar"] + m * t
    elif R == "dtop_p":
        # kbar counts the router's own choices, before any capacity limit (section 9, shared rules)
        kbar = r["mask_before_capacity"].sum().item() / N
        e = (cfg["target_k"] - kbar) / E
        I_new = torch.clamp(bufs["router.I"] + e, -10.0, 10.0)
        P_new = torch.clamp(cfg["dtop_p_p0"] + cfg["dtop_p_kp"] * e + cfg["dtop_p_ki"] * I_new, 0.05, 1.0)
        new["router.I"] = I_new
        new["router.P"] = P_new
        notes.general.append(f"dtop_p update: kbar = {kbar:.9g}, e = {e:.9g}, I -> {I_new.item():.9g}, "
                             f"P -> {P_new.item():.9g}")
    elif R == "relu":
        zeros = int((torch.relu(z) == 0).sum())
        # the sign of s* - s decided exactly: s* - s = 1 - k*/E - zeros/(N E)
        diff = 1 - dec(cfg["target_k"]) / E - Fraction(zeros, N * E)
        sgn = (diff > 0) - (diff < 0)
        new["router.lambda"] = bufs["router.lambda"] * (cfg["relu_alpha"] ** sgn)
        s_, s_star = zeros / (N * E), 1.0 - cfg["target_k"] / E
        notes.general.append(f"relu update: s = {zeros}/{N * E} = {s_:.9g}, s* = {s_star:.9g}, "
                             f"sign(s* - s) = {sgn}, lambda -> {new['router.lambda'].item():.9g}")
        if diff == 0 or abs(float(diff)) <= tie_tol * max(abs(s_star), abs(s_)):
            notes.general.append("relu update: s equals s* (or nearly): float arithmetic may take the sign "
                                 "as -1, 0 or +1 (lambda times 1/alpha, 1 or alpha)")
    return {k: v.detach().to(torch.float64).reshape(()) for k, v in new.items()}


# ----------------------------------------------------------------------------- comparison

def max_abs_err(got, exp):
    """max |got - exp| with NaN/inf handled: a NaN or inf on one side only is an infinite error."""
    g = got.detach().to(torch.float64)
    e = exp.detach().to(torch.float64)
    if g.numel() == 0:
        return 0.0
    both_nan = torch.isnan(g) & torch.isnan(e)
    same_inf = torch.isinf(g) & torch.isinf(e) & (g == e)
    d = (g - e).abs()
    d = torch.where(both_nan | same_inf, torch.zeros_like(d), d)
    d = torch.where(torch.isnan(d), torch.full_like(d, math.inf), d)
    return d.max().item()


def main(argv=None):
    ap = argparse.ArgumentParser(description="independent oracle for dynamoe moe-apply")
    ap.add_argument("--config", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--grad-output")
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--k-max", type=int, default=None, help="the layer's k_max (default: out metadata 'k_max', else 0)")
    ap.add_argument("--tie-tol", type=float, default=1e-6,
                    help="report routing decisions within this relative distance of a boundary")
    ap.add_argument("--use-out-mask", action="store_true", help="diagnostic: route with the out file's mask")
    a = ap.parse_args(argv)

    try:
        cfg = load_config(a.config)
        check_supported(cfg)
        xs, _ = read_safetensors(a.input)
        ws, wmeta = read_safetensors(a.weights)
        outs, meta = read_safetensors(a.out)
    except (OracleError, OSError, ValueError, KeyError) as e:
        print(f"moe_oracle: error: {e}", file=sys.stderr)
        return 2

    if "x" not in xs:
        print("moe_oracle: error: the input file has no tensor 'x'", file=sys.stderr)
        return 2
    x_in = xs["x"]
    if x_in.dim() != 2 or x_in.dtype not in (torch.float32, torch.float64):
        print(f"moe_oracle: error: x must be a float32/float64 [N, D] matrix, got {x_in.dtype} {list(x_in.shape)}",
              file=sys.stderr)
        return 2
    N, D = x_in.shape
    E = cfg["e_max"]

    if a.k_max is not None:
        k_max = a.k_max
    elif "k_max" in meta:
        k_max = int(float(meta["k_max"]))
    else:
        k_max = 0
    mode = str(meta.get("mode", "eval")).lower()
    train = mode.startswith("train")
    if cfg["router"] == "dynamoe" and train and cfg["dynamoe_sigma"] > 0:
        print("moe_oracle: error: dynamoe in training mode adds random noise; this oracle checks eval mode only",
              file=sys.stderr)
        return 2

    print(f"config: gate={cfg['gate']} (rank {cfg['gate_rank']}) router={cfg['router']} expert={cfg['expert']} "
          f"E={E} kinds={expert_kinds(cfg)} n_shared={cfg['n_shared']} N={N} D={D} x={ST_NAMES[x_in.dtype]} "
          f"k_max={k_max} mode={mode}"
          + (f" scope={cfg['dynamoe_scope']}" if cfg["router"] == "dynamoe" else ""))
    if meta:
        print("out metadata: " + ", ".join(f"{k}={v}" for k, v in sorted(meta.items())))

    failures = []

    # parameters: strict check against the documented names and shapes
    params = {}
    rbufs = router_buffers(cfg)
    buffers = {"expert_bias"} | set(rbufs)
    try:
        shapes = expected_param_shapes(cfg, D, ws)
    except OracleError as e:
        print(f"moe_oracle: error: {e}", file=sys.stderr)
        return 2
    for name, shp in shapes.items():
        if name not in ws:
            failures.append(f"weights: missing parameter {name} {shp}")
            continue
        if list(ws[name].shape) != shp:
            failures.append(f"weights: {name} has shape {list(ws[name].shape)}, expected {shp}")
            continue
        params[name] = ws[name].detach().to(torch.float64).clone().requires_grad_(True)
    # the router's controller state: scalar buffers, constants (docs/methods.md section 9)
    bufs = {}
    for name in rbufs:
        if name not in ws:
            failures.append(f"weights: missing buffer {name} []")
            continue
        if list(ws[name].shape) != []:
            failures.append(f"weights: {name} has shape {list(ws[name].shape)}, expected []")
            continue
        bufs[name] = ws[name].detach().to(torch.float64).clone()
    for name in ws:
        if name not in shapes and name not in buffers:
            failures.append(f"weights: unexpected tensor {name} {list(ws[name].shape)}")
    if failures:
        for f_ in failures:
            print("FAIL " + f_)
        return 1

    x = x_in.detach().to(torch.float64).clone().requires_grad_(True)
    notes = Notes()
    out_mask = None
    if a.use_out_mask:
        if "mask" not in outs:
            print("moe_oracle: error: --use-out-mask but the out file has no mask", file=sys.stderr)
            return 2
        out_mask = outs["mask"].to(torch.bool)
    try:
        mine, extra = forward(cfg, x, params, k_max, a.tie_tol, notes, out_mask, bufs, train)
    except OracleError as e:
        print(f"moe_oracle: error: {e}", file=sys.stderr)
        return 2

    for g in notes.general:
        print("note: " + g)
    for t in sorted(notes.by_token):
        for msg in notes.by_token[t]:
            print(f"note: token {t}: {msg}")

    rows = []

    def check(name, got_t, exp_t, exact=False, tol=None):
        tol = a.atol if tol is None else tol
        if exp_t is None:
            rows.append((name, "-", "MISSING", False, ""))
            failures.append(f"{name}: missing from the out file")
            return
        if list(got_t.shape) != list(exp_t.shape):
            rows.append((name, list(exp_t.shape), f"shape mismatch (oracle {list(got_t.shape)})", False, ""))
            failures.append(f"{name}: shape {list(exp_t.shape)}, expected {list(got_t.shape)}")
            return
        err = max_abs_err(got_t, exp_t)
        ok = err == 0.0 if exact else err <= tol
        scale = got_t.detach().abs().max().item() if got_t.numel() else 0.0
        rows.append((name, list(exp_t.shape), f"{err:.3e}", ok, f"(max |oracle| {scale:.3g})"))
        if not ok:
            failures.append(f"{name}: max abs error {err:.3e}" + ("" if exact else f" > atol {tol:g}"))

    order = ["y", "logits", "probs", "weights", "mask"]
    if "h_norm" in mine:
        order.append("h_norm")
    for name in order:
        check(name, mine[name], outs.get(name), exact=(name == "mask"))
    if "mask" in outs and list(outs["mask"].shape) == [N, E]:
        om = outs["mask"].to(torch.bool)
        mm = mine["mask"].to(torch.bool)
        diff = (om != mm).nonzero().tolist()
        if diff:
            toks = sorted({t for t, _ in diff})
            tied = [t for t in toks if t in notes.by_token]
            print(f"mask differs at {len(diff)} (token, expert) pairs: {diff[:20]}{' ...' if len(diff) > 20 else ''}")
            for t in toks[:10]:
                print(f"  token {t}: oracle {mm[t].nonzero().flatten().tolist()} vs out {om[t].nonzero().flatten().tolist()}"
                      + ("   [tied/near-tied in the oracle]" if t in notes.by_token else ""))
            if len(tied) == len(toks):
                print("  every differing token is tied or near-tied in the oracle's float64 computation")
        if outs["mask"].dtype != torch.uint8:
            print(f"note: mask dtype is {outs['mask'].dtype}, the docs say U8")

    for name in LOSSES:
        key = "loss." + name
        if cfg[name] > 0 or key in outs:
            check(key, mine[key], outs.get(key))
            if name == "load_balance" and key in outs and failures and failures[-1].startswith(key):
                alt = abs(extra["alt_load_balance"] - outs[key].item())
                print(f"  hint: with f taken before capacity, loss.load_balance would differ by {alt:.3e}")
    if "loss.relu_l1" in mine:
        check("loss.relu_l1", mine["loss.relu_l1"], outs.get("loss.relu_l1"))
        if extra["alt_relu_l1"] is not None and failures and failures[-1].startswith("loss.relu_l1") \
                and "loss.relu_l1" in outs:
            alt = abs(extra["alt_relu_l1"] - outs["loss.relu_l1"].item())
            print(f"  hint: with f taken after capacity, loss.relu_l1 would differ by {alt:.3e}")
    check("aux_loss", mine["aux_loss"], outs.get("aux_loss"))
    for k in outs:
        if k.startswith("loss.") and k[5:] not in LOSSES and k not in mine:
            print(f"note: out file has {k}, which this oracle does not know")

    # controller state after one update (training mode only; docs/moe-apply.md state.<buffer>)
    if train:
        for name in rbufs:
            if name in extra["state"]:
                check("state." + name, extra["state"][name], outs.get("state." + name))
    for k in outs:
        if k.startswith("state.") and not (train and k[6:] in rbufs):
            why = "eval mode" if not train else f"router {cfg['router']} has no buffer {k[6:]}"
            rows.append((k, list(outs[k].shape), "UNEXPECTED", False, f"({why})"))
            failures.append(f"{k}: not expected ({why})")

    drop_keys = [k for k in meta if "drop" in k.lower()]
    for k in drop_keys:
        try:
            v = int(float(meta[k]))
        except ValueError:
            continue
        ok = v == extra["dropped"]
        rows.append((f"meta.{k}", [], f"{abs(v - extra['dropped'])}", ok, f"(dynamoe {v}, oracle {extra['dropped']})"))
        if not ok:
            failures.append(f"metadata {k} = {meta[k]}, oracle dropped {extra['dropped']}")

    if a.grad_output:
        gs, _ = read_safetensors(a.grad_output)
        if "grad_y" not in gs or list(gs["grad_y"].shape) != [N, D]:
            print(f"moe_oracle: error: {a.grad_output} must hold grad_y [{N}, {D}]", file=sys.stderr)
            return 2
        gy = gs["grad_y"].to(torch.float64)
        total = (mine["y"] * gy).sum() + mine["aux_loss"]
        names = list(params)
        grads = torch.autograd.grad(total, [x] + [params[n] for n in names], allow_unused=True)
        gx = grads[0] if grads[0] is not None else torch.zeros_like(x)
        check("grad.input", gx, outs.get("grad.input"))
        for n, g in zip(names, grads[1:]):
            if g is None:
                g = torch.zeros_like(params[n])
            check("grad." + n, g, outs.get("grad." + n))
        for k in outs:
            if k.startswith("grad.") and k != "grad.input" and k[5:] not in params:
                print(f"note: out file has {k}, which is not a parameter the oracle knows")

    known = set(order) | {"aux_loss"} | {"loss." + n for n in LOSSES} | {"h_norm"}
    for k in outs:
        if k not in known and not k.startswith(("grad.", "loss.", "state.")):
            print(f"note: out file has an extra tensor {k} {list(outs[k].shape)} (not compared)")

    w = max(len(r[0]) for r in rows) + 2
    for name, shp, err, ok, info in rows:
        print(f"{name:<{w}} {str(shp):<14} max_abs_err={err:<11} {'OK  ' if ok else 'FAIL'} {info}")
    if failures:
        print(f"FAILED ({len(failures)}):")
        for f_ in failures:
            print("  " + f_)
        return 1
    print(f"all {len(rows)} tensors match (atol {a.atol:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
