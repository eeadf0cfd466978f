#!/usr/bin/python3
"""Writes a .safetensors file of random tensors for n3-merge tests and benchmarks.

  make_tensors.py OUT --seed 1 --tensors w:4x3,b:3 [--scale 1] [--offset 0] [--dtype F32]
                  [--nan w] [--inf w] [--numel N]

Values are offset + scale * N(0, 1) from numpy's PCG64 seeded with --seed, so the same
arguments give the same bytes. --numel N makes one tensor 'w' of N elements (benchmarks).
"""
import argparse, json, struct, sys
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--tensors", default="w:4x3,b:3")
ap.add_argument("--numel", type=int)
ap.add_argument("--scale", type=float, default=1.0)
ap.add_argument("--offset", type=float, default=0.0)
ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "I32"])
ap.add_argument("--nan")
ap.add_argument("--inf")
a = ap.parse_args()

rng = np.random.default_rng(a.seed)
specs = [("w", [a.numel])] if a.numel else [
    (n, [int(d) for d in s.split("x")] if s else []) for n, s in (t.split(":") for t in a.tensors.split(","))]
np_dtype = {"F32": np.float32, "F16": np.float16, "I32": np.int32}[a.dtype]
header, blobs, off = {}, [], 0
for name, shape in specs:
    if a.numel:
        x = (rng.standard_normal(shape[0], dtype=np.float32) * np.float32(a.scale) + np.float32(a.offset))
    else:
        x = a.offset + a.scale * rng.standard_normal(shape)
    x = np.asarray(x).astype(np_dtype)
    if a.nan == name:
        x.reshape(-1)[-1] = np.nan
    if a.inf == name:
        x.reshape(-1)[0] = np.inf
    b = x.tobytes()
    header[name] = {"dtype": a.dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(a.out, "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    for b in blobs:
        f.write(b)
