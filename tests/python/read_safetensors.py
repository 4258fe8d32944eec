"""An independent safetensors reader (Python + Debian's python3-torch), used as a test oracle.

usage: read_safetensors.py FILE.safetensors EXPECTED.txt
EXPECTED.txt has one line per tensor: name dtype ndim dims... values (C's %a hex floats).
Exits non-zero unless every tensor has the expected dtype, shape and exact values.
"""
import json
import struct
import sys

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
          "U8": torch.uint8, "BOOL": torch.bool}
C10_NAMES = {"Double": torch.float64, "Float": torch.float32, "BFloat16": torch.bfloat16, "Half": torch.float16,
             "Long": torch.int64, "Int": torch.int32, "Short": torch.int16, "Char": torch.int8,
             "Byte": torch.uint8, "Bool": torch.bool}


def read_safetensors(path):
    """The few-line reader: 8-byte LE header length, JSON header, raw LE data."""
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:end]), dtype=DTYPES[e["dtype"]]) if end > b else \
            torch.empty(0, dtype=DTYPES[e["dtype"]])
        out[name] = t.reshape(e["shape"])
    return out


def main():
    tensors = read_safetensors(sys.argv[1])
    lines = [l.split() for l in open(sys.argv[2]) if l.strip()]
    assert len(lines) == len(tensors), f"{len(tensors)} tensors in file, {len(lines)} expected"
    for parts in lines:
        name, dtype, ndim = parts[0], parts[1], int(parts[2])
        shape = [int(s) for s in parts[3:3 + ndim]]
        values = [float.fromhex(v) for v in parts[3 + ndim:]]
        t = tensors[name]
        assert t.dtype == C10_NAMES[dtype], f"{name}: dtype {t.dtype}, expected {dtype}"
        assert list(t.shape) == shape, f"{name}: shape {list(t.shape)}, expected {shape}"
        got = t.to(torch.float64).flatten().tolist()
        assert got == values, f"{name}: values differ"
    print(f"{len(lines)} tensors equal")


if __name__ == "__main__":
    main()
