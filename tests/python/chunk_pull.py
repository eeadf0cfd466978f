#!/usr/bin/python3
"""A pyzmq receiver of n3-send's records, written from the WIRE FORMAT section of man/n3-send.1
only (no n3 code): records sent whole arrive as one multipart message, large ones as chunk
messages (a 32-byte header frame, then data frames) that it reassembles per record id.

usage: chunk_pull.py ENDPOINT COUNT PREFIX SECONDS
  binds a PULL socket, writes COUNT records to PREFIX.1, PREFIX.2, ... in completion order and
  prints one line per record: "whole SIZE" or "chunked SIZE CHUNKS"; exits 1 on a chunk that
  breaks the framing (out of order, inconsistent) and 3 at the timeout
"""
import struct
import sys

import zmq

MAGIC = b'\x89N3C'


def main(endpoint, count, prefix, seconds):
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.bind(endpoint)
    s.setsockopt(zmq.RCVTIMEO, int(seconds * 1000))
    partial = {}  # record id -> [file, next offset, total, chunks]
    done = 0
    while done < count:
        try:
            parts = s.recv_multipart(copy=False)
        except zmq.Again:
            sys.exit(3)
        head = parts[0].bytes
        if len(head) != 32 or head[:4] != MAGIC:
            done += 1
            with open('%s.%d' % (prefix, done), 'wb') as f:
                for p in parts:
                    f.write(p.buffer)
            print('whole', sum(len(p.buffer) for p in parts))
            continue
        version, flags, reserved, rid, offset, total = struct.unpack('<BBHQQQ', head[4:])
        if version != 1 or flags & ~1 or reserved:
            sys.exit('chunk_pull: unknown header version %d flags %d' % (version, flags))
        size = sum(len(p.buffer) for p in parts[1:])
        if offset == 0:
            if rid in partial:
                sys.exit('chunk_pull: record %x started twice' % rid)
            partial[rid] = [open('%s.part.%x' % (prefix, rid), 'wb'), 0, total, 0]
        rec = partial.get(rid)
        if rec is None or rec[1] != offset or rec[2] != total:
            sys.exit('chunk_pull: chunk at %d of record %x out of order' % (offset, rid))
        if size == 0 or offset + size > total or bool(flags & 1) != (offset + size == total):
            sys.exit('chunk_pull: chunk at %d of record %x inconsistent' % (offset, rid))
        for p in parts[1:]:
            rec[0].write(p.buffer)
        rec[1] += size
        rec[3] += 1
        if flags & 1:
            rec[0].close()
            del partial[rid]
            done += 1
            import os
            os.rename('%s.part.%x' % (prefix, rid), '%s.%d' % (prefix, done))
            print('chunked', total, rec[3])
    s.close(linger=0)
    ctx.term()


if __name__ == '__main__':
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
