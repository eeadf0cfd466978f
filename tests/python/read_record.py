#!/usr/bin/python3
"""An independent reader of n3 records and .safetensors files, written from man/n3-record.5 and
the published safetensors layout only (no n3 code). Used by the CLI tests to cross-check.

usage: read_record.py record FILE.n3      -> prints JSON: type, version, metadata, tensors (sum, l2)
       read_record.py safetensors FILE    -> same for a plain .safetensors file
"""
import json
import struct
import sys
import zlib

import numpy as np

NP = {"F32": "<f4", "F16": "<f2", "I8": "i1", "I32": "<i4", "I64": "<i8", "U8": "u1",
      "F64": "<f8", "U32": "<u4", "U16": "<u2", "I16": "<i2", "U64": "<u8"}
TYPES = {1: "model", 2: "update", 3: "packed", 4: "shard", 5: "sealed", 6: "masked"}


def crc64_xz(data):
    poly, crc = 0xC96C5795D7870F42, 0xFFFFFFFFFFFFFFFF
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def tensors(st):
    n = struct.unpack_from("<Q", st, 0)[0]
    header = json.loads(st[8:8 + n])
    data = st[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, z = t["data_offsets"]
        arr = np.frombuffer(data[a:z], NP[t["dtype"]]).reshape(t["shape"])
        f = arr.astype(np.float64)
        out[name] = {"dtype": t["dtype"], "shape": list(arr.shape),
                     "sum": float(f.sum()), "l2": float(np.sqrt((f * f).sum()))}
    return header.get("__metadata__", {}), out


def read_records(b):
    recs, off = [], 0
    while off < len(b):
        assert b[off:off + 8] == b"\x89N3R\r\n\x1a\n", "magic"
        version, rtype = b[off + 8], b[off + 9]
        (length,) = struct.unpack_from("<Q", b, off + 16)
        (pcrc,) = struct.unpack_from("<I", b, off + 24)
        assert pcrc == zlib.crc32(b[off:off + 24]), "preamble crc"
        body_end = off + 32 + length
        (rcrc,) = struct.unpack_from("<Q", b, body_end)
        assert rcrc == crc64_xz(b[off:body_end]), "record crc"
        payload = b[off + 32:body_end]
        rec = {"type": TYPES[rtype], "version": version}
        if rtype in (1, 2, 6):
            assert (off + 32 + 8 + struct.unpack_from("<Q", payload, 0)[0]) % 64 == 0 or off, "aligned"
            rec["metadata"], rec["tensors"] = tensors(payload)
        recs.append(rec)
        off = body_end + 8
    return recs


if __name__ == "__main__":
    data = open(sys.argv[2], "rb").read()
    if sys.argv[1] == "record":
        print(json.dumps(read_records(data), sort_keys=True))
    else:
        meta, t = tensors(data)
        print(json.dumps({"metadata": meta, "tensors": t}, sort_keys=True))
