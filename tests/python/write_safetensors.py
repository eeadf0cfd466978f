#!/usr/bin/python3
"""Writes a .safetensors file with numpy alone, following the published layout
(8-byte little-endian header length, JSON header, raw little-endian data).

usage: write_safetensors.py OUT [small|nan|u16]
"""
import json
import struct
import sys

import numpy as np

DTYPES = {np.float32: "F32", np.float16: "F16", np.int8: "I8", np.int32: "I32",
          np.int64: "I64", np.uint8: "U8",
          np.uint16: "U16"}


def save(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": DTYPES[arr.dtype.type], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def small():
    return {
        "conv.weight": (np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) - 12) / 8,
        "conv.bias": np.array([0.5, -0.25], dtype=np.float32),
        "fc.weight": np.linspace(-1, 1, 12, dtype=np.float32).astype(np.float16).reshape(3, 4),
        "emb.index": np.array([[1, -2], [3, 127]], dtype=np.int8),
        "steps": np.array(41, dtype=np.int64),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "mask": np.array([0, 1, 255], dtype=np.uint8),
        "count": np.array([7, -7], dtype=np.int32),
    }


if __name__ == "__main__":
    kind = sys.argv[2] if len(sys.argv) > 2 else "small"
    if kind == "small":
        save(sys.argv[1], small(), {"source": "numpy"})
    elif kind == "nan":
        save(sys.argv[1], {"w": np.array([1.0, np.nan], dtype=np.float32)})
    elif kind == "u16":  # a dtype n3 does not import
        save(sys.argv[1], {"w": np.array([1, 2], dtype=np.uint16)})
