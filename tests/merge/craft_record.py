#!/usr/bin/python3
"""Wraps a payload file in an n3 record of any type and version, for bad-input tests.

  craft_record.py PAYLOAD OUT --type 3 [--version 1]

The preamble CRC-32 and the trailing CRC-64/XZ are computed here (independently of n3), so
only the fields asked for are wrong.
"""
import argparse, struct, zlib

def crc64_xz(data, crc=0):
    poly = 0xC96C5795D7870F42
    crc ^= 0xFFFFFFFFFFFFFFFF
    table = crc64_xz.table
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF

def _table():
    poly, t = 0xC96C5795D7870F42, []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        t.append(c)
    return t
crc64_xz.table = _table()

ap = argparse.ArgumentParser()
ap.add_argument("payload")
ap.add_argument("out")
ap.add_argument("--type", type=int, required=True)
ap.add_argument("--version", type=int, default=1)
a = ap.parse_args()
payload = open(a.payload, "rb").read()
head = b"\x89N3R\r\n\x1a\n" + struct.pack("<BBHIQ", a.version, a.type, 0, 0, len(payload))
head += struct.pack("<II", zlib.crc32(head), 0)
with open(a.out, "wb") as f:
    f.write(head + payload + struct.pack("<Q", crc64_xz(head + payload)))
