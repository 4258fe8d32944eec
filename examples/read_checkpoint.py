"""Read a dynamoe checkpoint in Python: every tensor of a model.safetensors as a torch tensor.

usage:
  /usr/bin/python3 examples/read_checkpoint.py runs/demo                  # the run's newest checkpoint
  /usr/bin/python3 examples/read_checkpoint.py runs/demo/checkpoints/step_00004690
  /usr/bin/python3 examples/read_checkpoint.py FILE.safetensors [--values NAME]

Prints each tensor's name, dtype, shape and summary (mean, std, min, max), the file's metadata,
and with --values NAME the values of one tensor. As a module:

  from read_checkpoint import load
  state = load("runs/demo")          # {name: torch.Tensor}, names as in a PyTorch state_dict
  model.load_state_dict(state)       # for a PyTorch model with the same layout

Needs only the standard library and torch (Debian's python3-torch, hence /usr/bin/python3). The format: an 8-byte
little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__"},
then the raw little-endian data.
"""
import argparse
import json
import os
import struct
import sys

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
          "U8": torch.uint8, "BOOL": torch.bool}


def resolve(path):
    """A run folder (its newest checkpoint), a checkpoint folder, or a .safetensors file."""
    if os.path.isfile(path):
        return path
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        return os.path.join(path, "model.safetensors")
    ckpts = os.path.join(path, "checkpoints")
    steps = sorted(d for d in os.listdir(ckpts) if d.startswith("step_")) if os.path.isdir(ckpts) else []
    if not steps:
        raise SystemExit(f"read_checkpoint: '{path}' is not a run folder, a checkpoint folder or a file")
    return os.path.join(ckpts, steps[-1], "model.safetensors")


def read(path):
    """(tensors, metadata) of one safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SystemExit(f"read_checkpoint: {path}: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        size = os.fstat(f.fileno()).st_size
        if n > min(size - 8, 100_000_000):
            raise SystemExit(f"read_checkpoint: {path}: header of {n} bytes does not fit the file ({size} bytes)")
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, e in header.items():
        if e["dtype"] not in DTYPES:
            raise SystemExit(f"read_checkpoint: {path}: tensor {name}: dtype {e['dtype']} is not supported")
        begin, end = e["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            raise SystemExit(f"read_checkpoint: {path}: tensor {name}: data_offsets {begin}..{end} outside the data")
        raw = bytearray(data[begin:end])  # a copy: the tensor owns writable memory
        t = torch.frombuffer(raw, dtype=DTYPES[e["dtype"]]) if raw else torch.empty(0, dtype=DTYPES[e["dtype"]])
        tensors[name] = t.reshape(e["shape"])
    return tensors, meta


def load(path):
    """{name: torch.Tensor} of a run folder, checkpoint folder or safetensors file."""
    return read(resolve(path))[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path", help="run folder, checkpoint folder or .safetensors file")
    ap.add_argument("--values", metavar="NAME", help="also print the values of this tensor")
    args = ap.parse_args()
    path = resolve(args.path)
    tensors, meta = read(path)
    print(f"{path}: {len(tensors)} tensors, {sum(t.numel() for t in tensors.values()):,} values")
    for name, t in tensors.items():
        shape = "x".join(map(str, t.shape)) or "scalar"
        line = f"  {name:<48} {str(t.dtype).replace('torch.', ''):<9} {shape:<14}"
        if t.is_floating_point() and t.numel() > 0:
            f = t.double()
            line += f" mean {f.mean():+.4g}  std {f.std() if t.numel() > 1 else 0:.4g}  min {f.min():+.4g}  max {f.max():+.4g}"
        print(line)
    for k, v in meta.items():
        print(f"  metadata {k}: {v}")
    if args.values:
        if args.values not in tensors:
            raise SystemExit(f"read_checkpoint: no tensor '{args.values}' in {path}")
        torch.set_printoptions(threshold=10_000)
        print(tensors[args.values])


if __name__ == "__main__":
    sys.exit(main())
