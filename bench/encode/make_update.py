"""make_update.py OUT MIB: a float32 update of MIB mebibytes, N(0, 0.01), as .safetensors."""
import json
import struct
import sys

import numpy as np

out, mib = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(7)
n = mib * 1024 * 1024 // 4
sizes = [n // 2, n // 4, n // 8, n - n // 2 - n // 4 - n // 8]
hdr, off = {"__metadata__": {"round": "1", "samples": "1000"}}, 0
for i, s in enumerate(sizes):
    hdr[f"layer{i}.weight"] = {"dtype": "F32", "shape": [s], "data_offsets": [off, off + 4 * s]}
    off += 4 * s
h = json.dumps(hdr).encode()
h += b" " * (-(len(h) + 8) % 64)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for s in sizes:
        # in pieces, so a 4 GiB update needs no 4 GiB of float64 (the draws are the same)
        for a in range(0, s, 1 << 24):
            f.write(rng.normal(0, 0.01, min(1 << 24, s - a)).astype(np.float32).tobytes())
