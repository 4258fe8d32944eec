#!/usr/bin/python3
"""An independent test oracle for dynamoe's Hugging Face LLaMA loader (docs/hf.md).

usage: hf_llama_oracle.py batch SPEC.json
       hf_llama_oracle.py logits DIR --ids IDS.safetensors --out OUT.safetensors

`batch` reads {"cases": [case, ...]}, and for each case
  (a) writes a random synthetic checkpoint in the exact Hugging Face layout into case["dir"]:
      config.json, and model.safetensors or case["shards"] files model-0000i-of-0000N.safetensors
      with model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map"});
  (b) draws ids [batch, seq] and writes DIR/reference.safetensors with "ids" (I64) and
      "logits" (F64), computed by `logits` from the files just written.
A case: {"dir", "seed", "config": {HF config.json keys that override the defaults below},
"shards": 1, "dtype": "F32" | "F16" | "BF16" (storage), "batch": 2, "seq": 12}.

`logits` loads any LLaMA/Mistral checkpoint folder of that layout and computes the logits of
the given ids (tensor "ids" [B, T] int64) in float64.

Written from the formulas of transformers' modeling_llama.py (no code shared with the C++):
  RMSNorm(x) = x / sqrt(mean(x^2) + eps) * w
  RoPE: inv_freq_i = 1 / theta^(2i / Dh), i < Dh/2; angle(p) = p * [inv_freq, inv_freq];
        x' = x cos + rotate_half(x) sin, rotate_half(x) = [-x2, x1] (halves of the head)
  attention: per query head h, key/value head h // (H / Hkv); softmax(q k^T / sqrt(Dh) +
        causal mask) v; heads concatenated, then o_proj
  MLP: down(silu(gate(x)) * up(x)); layer: h += attn(norm1(h)); h += mlp(norm2(h))
  logits = norm(h) lm_head^T (lm_head = embed_tokens when tie_word_embeddings)
Needs only Debian's python3-torch (no PyPI packages); safetensors files: safetensors_io.py.
"""
import argparse
import json
import math
import os
import sys

import torch

from safetensors_io import DTYPES, read_safetensors, write_safetensors

# ----------------------------------------------------------------------------- checkpoint

BASE_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 48, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 97,
    "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "hidden_act": "silu", "rope_scaling": None,
    "tie_word_embeddings": False, "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 1,
    "eos_token_id": 2, "initializer_range": 0.02, "pretraining_tp": 1, "torch_dtype": "float32",
    "transformers_version": "4.40.0", "use_cache": True,
}


def head_dim_of(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def random_weights(cfg, gen):
    """HF names -> fp32 tensors; scaled so that activations and logits are O(1)."""
    D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, Dh = cfg["num_attention_heads"], head_dim_of(cfg)
    Hkv = cfg.get("num_key_value_heads") or H
    attn_bias, mlp_bias = cfg.get("attention_bias", False), cfg.get("mlp_bias", False)

    def lin(out_f, in_f):
        return torch.randn(out_f, in_f, generator=gen) / math.sqrt(in_f)

    def vec(n, scale=0.1, mean=0.0):
        return mean + scale * torch.randn(n, generator=gen)

    w = [("model.embed_tokens.weight", 0.5 * torch.randn(V, D, generator=gen))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for proj, o, n in (("q_proj", H * Dh, D), ("k_proj", Hkv * Dh, D), ("v_proj", Hkv * Dh, D), ("o_proj", D, H * Dh)):
            w.append((p + f"self_attn.{proj}.weight", lin(o, n)))
            if attn_bias:
                w.append((p + f"self_attn.{proj}.bias", vec(o)))
        for proj, o, n in (("gate_proj", F, D), ("up_proj", F, D), ("down_proj", D, F)):
            w.append((p + f"mlp.{proj}.weight", lin(o, n)))
            if mlp_bias:
                w.append((p + f"mlp.{proj}.bias", vec(o)))
        w.append((p + "input_layernorm.weight", vec(D, 0.2, 1.0)))
        w.append((p + "post_attention_layernorm.weight", vec(D, 0.2, 1.0)))
    w.append(("model.norm.weight", vec(D, 0.2, 1.0)))
    if not cfg.get("tie_word_embeddings", False):
        w.append(("lm_head.weight", lin(V, D)))
    return w


def write_checkpoint(d, cfg, weights, shards, dtype):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    stored = [(n, t.to(DTYPES[dtype])) for n, t in weights]
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), stored, {"format": "pt"})
        return
    per = -(-len(stored) // shards)
    weight_map, total = {}, 0
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = stored[s * per:(s + 1) * per]
        total += write_safetensors(os.path.join(d, name), part, {"format": "pt"})
        for n, _ in part:
            weight_map[n] = name
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def load_checkpoint(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        files = [single]
    else:
        with open(os.path.join(d, "model.safetensors.index.json")) as f:
            files = [os.path.join(d, x) for x in sorted(set(json.load(f)["weight_map"].values()))]
    w = {}
    for path in files:
        w.update(read_safetensors(path)[0])
    return cfg, {n: t.to(torch.float64) for n, t in w.items()}


# ----------------------------------------------------------------------------- reference

def rms_norm(x, weight, eps):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight


def rope(x, theta):
    """x [B, heads, T, Dh] at positions 0 .. T-1."""
    T, Dh = x.shape[2], x.shape[3]
    half = Dh // 2
    inv_freq = torch.tensor([1.0 / theta ** (2.0 * i / Dh) for i in range(half)], dtype=torch.float64)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # [T, Dh/2]
    angle = torch.cat([angle, angle], dim=1)
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * torch.cos(angle) + rotated * torch.sin(angle)


def linear(x, w, name):
    y = x @ w[name + ".weight"].t()
    if name + ".bias" in w:
        y = y + w[name + ".bias"]
    return y


def reference_logits(cfg, w, ids):
    B, T = ids.shape
    H, Dh = cfg["num_attention_heads"], head_dim_of(cfg)
    Hkv = cfg.get("num_key_value_heads") or H
    eps, theta = cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta") or 10000.0
    h = w["model.embed_tokens.weight"][ids]  # [B, T, D]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    kv_of_head = torch.tensor([q // (H // Hkv) for q in range(H)])
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps)
        q = linear(x, w, p + "self_attn.q_proj").reshape(B, T, H, Dh).permute(0, 2, 1, 3)
        k = linear(x, w, p + "self_attn.k_proj").reshape(B, T, Hkv, Dh).permute(0, 2, 1, 3)
        v = linear(x, w, p + "self_attn.v_proj").reshape(B, T, Hkv, Dh).permute(0, 2, 1, 3)
        q, k = rope(q, theta), rope(k, theta)
        k, v = k[:, kv_of_head], v[:, kv_of_head]  # [B, H, T, Dh]
        scores = (q @ k.transpose(2, 3)) / math.sqrt(Dh)
        scores = scores.masked_fill(~causal, float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v  # [B, H, T, Dh]
        h = h + linear(att.permute(0, 2, 1, 3).reshape(B, T, H * Dh), w, p + "self_attn.o_proj")
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        g = linear(x, w, p + "mlp.gate_proj")
        h = h + linear(g * torch.sigmoid(g) * linear(x, w, p + "mlp.up_proj"), w, p + "mlp.down_proj")
    h = rms_norm(h, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return h @ head.t()  # [B, T, V]


def logits_for_dir(d, ids):
    cfg, w = load_checkpoint(d)
    return reference_logits(cfg, w, ids)


# ----------------------------------------------------------------------------- main

def run_batch(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    for case in spec["cases"]:
        cfg = dict(BASE_CONFIG)
        cfg.update(case.get("config", {}))
        cfg["torch_dtype"] = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[case.get("dtype", "F32")]
        gen = torch.Generator().manual_seed(int(case.get("seed", 0)))
        write_checkpoint(case["dir"], cfg, random_weights(cfg, gen), int(case.get("shards", 1)),
                         case.get("dtype", "F32"))
        ids = torch.randint(0, cfg["vocab_size"], (int(case.get("batch", 2)), int(case.get("seq", 12))),
                            generator=gen)
        logits = logits_for_dir(case["dir"], ids)
        write_safetensors(os.path.join(case["dir"], "reference.safetensors"), [("ids", ids), ("logits", logits)])
        print(f"{case['dir']}: logits {list(logits.shape)}, |logits| max {logits.abs().max().item():.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("batch")
    b.add_argument("spec")
    lg = sub.add_parser("logits")
    lg.add_argument("dir")
    lg.add_argument("--ids", required=True)
    lg.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.cmd == "batch":
        run_batch(a.spec)
    else:
        ids = read_safetensors(a.ids)[0]["ids"].to(torch.int64)
        write_safetensors(a.out, [("logits", logits_for_dir(a.dir, ids))])
    return 0


if __name__ == "__main__":
    sys.exit(main())
