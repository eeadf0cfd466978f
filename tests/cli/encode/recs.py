"""Helpers for tests/cli/encode.sh: make updates, craft and damage records (CRC-64/XZ fixed)."""
import json
import struct
import sys
import zlib

import numpy as np

MAGIC = b"\x89N3R\r\n\x1a\n"
_T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0xC96C5795D7870F42 if c & 1 else c >> 1
    _T.append(c)


def crc64(data, crc=0):
    crc ^= 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def record(rtype, payload):
    pre = MAGIC + bytes([1, rtype]) + b"\0" * 6 + struct.pack("<Q", len(payload))
    pre += struct.pack("<I", zlib.crc32(pre)) + b"\0" * 4
    body = pre + payload
    return body + struct.pack("<Q", crc64(body))


def records(blob):
    out, off = [], 0
    while off < len(blob):
        (n,) = struct.unpack_from("<Q", blob, off + 16)
        out.append((blob[off + 9], blob[off + 32:off + 32 + n]))
        off += 32 + n + 8
    return out


def safetensors(tensors, meta):
    hdr, data, off = {"__metadata__": meta}, b"", 0
    for name, a in tensors.items():
        b = a.tobytes()
        hdr[name] = {"dtype": {"float32": "F32", "float16": "F16", "int64": "I64"}[str(a.dtype)],
                     "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    h = json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + data


def main():
    cmd = sys.argv[1]
    if cmd == "update":  # update SEED OUT [nan]
        rng = np.random.default_rng(int(sys.argv[2]))
        w = rng.normal(0, 0.01, (200, 50)).astype(np.float32)
        if len(sys.argv) > 4 and sys.argv[4] == "nan":
            w[3, 4] = np.nan
        t = {"fc.weight": w, "fc.bias": rng.normal(0, 0.01, (50,)).astype(np.float32),
             "steps": np.arange(4, dtype=np.int64)}
        open(sys.argv[3], "wb").write(safetensors(t, {"round": "2", "samples": "64"}))
    elif cmd == "raw":  # raw TYPE OUT: a record with an arbitrary payload (e.g. sealed)
        open(sys.argv[3], "wb").write(record(int(sys.argv[2]), bytes(range(256)) * 8))
    elif cmd == "poke":  # poke IN OUT OFFSET VALUE: set a payload byte of record 1, fix the CRC
        blob = open(sys.argv[2], "rb").read()
        (t, p), = records(blob)[:1]
        p = bytearray(p)
        p[int(sys.argv[4])] = int(sys.argv[5], 0)
        open(sys.argv[3], "wb").write(record(t, bytes(p)) + blob[32 + len(p) + 8:])
    elif cmd == "entry":  # entry IN: offset of the first tensor entry in record 1's packed payload
        (t, p), = records(open(sys.argv[2], "rb").read())[:1]
        clen, = struct.unpack_from("<H", p, 6)
        hlen, = struct.unpack_from("<Q", p, 16)
        print(32 + clen + hlen)


main()
