#!/usr/bin/env python3
"""The plain-PyTorch peer of dynamoe's demo, for an end-to-end speed comparison.

Trains the model of configs/demo.yaml on Fashion-MNIST with the same batch size and step count
as `dynamoe train --config configs/demo.yaml`, written the way one would write it in PyTorch
(nn.Module, a per-expert loop with index_add for the sparse layer), and prints samples/s.

Model (moe_mlp): normalise pixels by the train-set mean/std -> flatten -> Linear(784, 128)
-> 4 pre-norm residual blocks x = x + MoE(LayerNorm(x)) with 8, 6, 4, 2 experts (descending
schedule, e_min 2, e_max 8) -> LayerNorm -> Linear(128, 10).
MoE layer: linear gate without bias; DynaMoE router (g = softmax(z / 0.5), + N(0, 0.1^2) noise
in training, active set = {i : g_i > median of the token's g}, top-1 if empty, weights =
softmax of g over the active set); FFN experts W2 gelu(W1 x + b1) + b2, hidden 128.
Loss: cross entropy + per layer 0.01 * load_balance + 0.001 * z_loss.
Optimiser: AdamW(lr 1e-3, wd 0.01), linear warmup 200 steps then cosine to 0, grad clip 1.0.

Usage:
  /usr/bin/python3 bench/train_peer.py --data data/fashion-mnist --steps 469 --batch-size 128 \
      --threads 2 [--warmup-steps 20] [--eval]
Prints progress on stderr and one JSON line on stdout.
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- data

def read_idx(path):
    """An IDX file (optionally gzipped) as a numpy array."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path = path + ".gz"
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    dtype, ndim = np.dtype(dtypes[raw[2]]), raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: header declares {dims} but holds {len(raw) - offset} data bytes")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(dims)


def load_split(folder, prefix):
    images = read_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"))
    x = torch.from_numpy(images.astype(np.uint8)).unsqueeze(1)  # [N, 1, 28, 28] uint8
    y = torch.from_numpy(labels.astype(np.int64))                # [N]
    return x, y


# ----------------------------------------------------------------------------- model

def descending_schedule(e_min, e_max, n_layers):
    """Experts per layer: e_max - (e_max - e_min) * l / (L - 1), rounded half up."""
    out = []
    for l in range(n_layers):
        x = l / (n_layers - 1) if n_layers > 1 else 0.0
        out.append(int(math.floor(e_max - (e_max - e_min) * x + 0.5)))
    return out


class FFNExpert(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        for fc in (self.fc1, self.fc2):  # dynamoe's expert init: N(0, 1/fan_in), zero bias
            nn.init.normal_(fc.weight, std=fc.in_features ** -0.5)
            nn.init.zeros_(fc.bias)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class DynaMoELayer(nn.Module):
    """Linear gate + DynaMoE router + FFN experts; returns (y, aux_loss)."""

    def __init__(self, dim, n_experts, hidden, temperature=0.5, sigma=0.1, tau=0.5, k_max=0,
                 load_balance=0.01, z_loss=0.001):
        super().__init__()
        self.n_experts = n_experts
        self.temperature, self.sigma, self.tau, self.k_max = temperature, sigma, tau, k_max
        self.load_balance, self.z_loss = load_balance, z_loss
        self.gate = nn.Linear(dim, n_experts, bias=False)
        nn.init.normal_(self.gate.weight, std=dim ** -0.5)
        self.experts = nn.ModuleList(FFNExpert(dim, hidden) for _ in range(n_experts))

    def forward(self, x):                                    # x: [N, D]
        z = self.gate(x)                                     # [N, E]
        g = F.softmax(z / self.temperature, dim=-1)
        if self.training and self.sigma > 0:
            g = g + torch.randn_like(g) * self.sigma
        g_sel = g.detach()
        threshold = torch.quantile(g_sel, self.tau, dim=-1, keepdim=True)  # linear interpolation
        mask = g_sel > threshold
        top1 = F.one_hot(g_sel.argmax(-1), self.n_experts).bool()
        mask = torch.where(mask.any(-1, keepdim=True), mask, top1)
        if self.k_max > 0:
            top = g_sel.topk(min(self.k_max, self.n_experts), dim=-1).indices
            mask = mask & torch.zeros_like(mask).scatter_(1, top, True)
        weights = F.softmax(g.masked_fill(~mask, float("-inf")), dim=-1)  # [N, E]

        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            idx = torch.nonzero(mask[:, e], as_tuple=True)[0]
            if idx.numel() == 0:
                continue
            out = expert(x[idx]) * weights[idx, e, None]
            y.index_add_(0, idx, out)

        aux = x.new_zeros(())
        if self.load_balance:  # Switch: E * sum_i f_i * P_i (P from the router's g)
            counts = mask.sum(0).to(g.dtype)
            f = counts / counts.sum().clamp_min(1)
            aux = aux + self.load_balance * self.n_experts * (f * g.mean(0)).sum()
        if self.z_loss:        # ST-MoE: mean_t logsumexp(z_t)^2
            aux = aux + self.z_loss * torch.logsumexp(z, dim=-1).square().mean()
        return y, aux


class MoEMLP(nn.Module):
    def __init__(self, mean, std, in_features=784, d_model=128, n_classes=10, experts=(8, 6, 4, 2),
                 expert_hidden=128):
        super().__init__()
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.in_proj = nn.Linear(in_features, d_model)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in experts)
        self.moe = nn.ModuleList(DynaMoELayer(d_model, e, expert_hidden) for e in experts)
        self.final_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, images):                               # uint8 [N, C, H, W]
        x = (images.float() / 255.0 - self.input_mean) / self.input_std
        x = self.in_proj(x.flatten(1))                       # [N, D]
        aux = x.new_zeros(())
        for norm, moe in zip(self.norms, self.moe):
            y, a = moe(norm(x))
            x = x + y
            aux = aux + a
        return self.head(self.final_norm(x)), aux


# ----------------------------------------------------------------------------- training

def lr_at(step, total, lr=1e-3, warmup=200):
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(max((step - warmup) / max(1, total - warmup - 1), 0.0), 1.0)
    return lr * 0.5 * (1.0 + math.cos(math.pi * t))


@torch.no_grad()
def evaluate(model, x, y, batch_size=1000):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits, _ = model(x[i:i + batch_size])
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    model.train()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/fashion-mnist")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup-steps", type=int, default=20, help="untimed steps before timing starts")
    ap.add_argument("--eval", action="store_true", help="report test accuracy after training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args()
    if args.steps <= args.warmup_steps:
        ap.error("--steps must be greater than --warmup-steps")

    torch.set_num_threads(args.threads)
    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")
    pixels = x_train.transpose(0, 1).reshape(x_train.shape[1], -1).double() / 255.0
    mean, std = pixels.mean(1).tolist(), pixels.std(1).tolist()  # per channel, unbiased
    del pixels

    torch.manual_seed(args.seed)
    model = MoEMLP(mean, std, in_features=x_train[0].numel(),
                   experts=descending_schedule(2, 8, 4), expert_hidden=128)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    n, bs = len(x_train), args.batch_size
    per_epoch = (n + bs - 1) // bs
    gen = torch.Generator()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"pytorch {torch.__version__}: {n_params} parameters, {n} train examples, {args.steps} steps "
          f"({per_epoch} per epoch), {args.threads} threads, experts per layer "
          f"{[m.n_experts for m in model.moe]}", file=sys.stderr)

    perm = None
    timed_samples, t0, loss_v, loss_window, window_steps = 0, None, float("nan"), 0.0, 0
    for step in range(args.steps):
        if step == args.warmup_steps:
            t0 = time.perf_counter()
        epoch, b = divmod(step, per_epoch)
        if b == 0:
            gen.manual_seed(args.seed * 1000003 + epoch + 1)
            perm = torch.randperm(n, generator=gen)
        idx = perm[b * bs:(b + 1) * bs]
        xb, yb = x_train[idx], y_train[idx]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps)

        logits, aux = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

        loss_v = loss.item()
        if not math.isfinite(loss_v):
            sys.exit(f"training diverged: loss {loss_v} at step {step + 1}")
        loss_window, window_steps = loss_window + loss_v, window_steps + 1
        if step >= args.warmup_steps:
            timed_samples += len(idx)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            rate = timed_samples / (time.perf_counter() - t0) if t0 and timed_samples else 0.0
            print(f"step {step + 1}/{args.steps}  loss {loss_window / window_steps:.4f} (mean since last line)  "
                  f"lr {lr_at(step, args.steps):.3g}  {rate:.0f} samples/s (timed steps so far)", file=sys.stderr)
            loss_window, window_steps = 0.0, 0
    elapsed = time.perf_counter() - t0

    result = {"impl": "pytorch", "steps": args.steps, "batch_size": bs, "threads": args.threads,
              "samples_per_s": timed_samples / elapsed, "train_loss_last": loss_v}
    if args.eval:
        result["test_accuracy"] = evaluate(model, x_test, y_test)
        print(f"test accuracy {100 * result['test_accuracy']:.2f}%", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
