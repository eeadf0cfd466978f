"""Test peers for n3-send: plain pyzmq programs and a raw ZMTP 3.0 speaker that misbehaves.

  peer.py st OUT NFLOATS SEED            write a .safetensors file with one F32 tensor
  peer.py zeros OUT NFLOATS              the same, all zeros, as a sparse file (any size, no disk)
  peer.py push ENDPOINT FRAME FILE...    pyzmq PUSH: each file as one message of FRAME-byte frames
  peer.py pull ENDPOINT COUNT PREFIX S   pyzmq PULL (bind): COUNT messages to PREFIX.1, PREFIX.2, ...
  peer.py zmtp HOST PORT MODE [FILE]     raw ZMTP PUSH peer; MODE garbage | huge | partial | raw
"""
import json
import socket
import struct
import sys
import time


def make_safetensors(out, n, seed):
    import numpy as np
    a = np.random.default_rng(seed).standard_normal(n).astype('<f4')
    h = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, a.nbytes]}}).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(out, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        f.write(a.tobytes())


def make_zeros(out, n):
    h = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(out, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h)
        f.truncate(8 + len(h) + 4 * n)


def push(endpoint, frame, files):
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 10000)
    s.connect(endpoint)
    for path in files:
        data = open(path, 'rb').read()
        parts = [data[i:i + frame] for i in range(0, len(data), frame)] or [b'']
        s.send_multipart(parts)
    s.close()
    ctx.term()


def pull(endpoint, count, prefix, seconds):
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.bind(endpoint)
    s.setsockopt(zmq.RCVTIMEO, int(seconds * 1000))
    for i in range(count):
        try:
            parts = s.recv_multipart()
        except zmq.Again:
            sys.exit("peer.py pull: timed out after %d messages" % i)
        with open('%s.%d' % (prefix, i + 1), 'wb') as f:
            for p in parts:
                f.write(p)
    s.close(linger=0)
    ctx.term()


def zmtp(host, port, mode, path=None):
    sock = socket.create_connection((host, port), timeout=10)
    if mode == 'raw':
        sock.sendall(b'GET / HTTP/1.0\r\n\r\n' + b'\xff' * 4096)
        time.sleep(0.3)
        sock.close()
        return
    greeting = b'\xff' + b'\x00' * 8 + b'\x7f' + b'\x03\x00' + b'NULL'.ljust(20, b'\x00') + b'\x00' + b'\x00' * 31
    sock.sendall(greeting)
    got = b''
    while len(got) < 64:
        chunk = sock.recv(64 - len(got))
        if not chunk:
            sys.exit('peer.py zmtp: no greeting')
        got += chunk
    body = b'\x05READY' + b'\x0bSocket-Type' + struct.pack('>I', 4) + b'PUSH'
    sock.sendall(bytes([0x04, len(body)]) + body)

    def frame(data, more):
        flags = (0x01 if more else 0) | 0x02
        return bytes([flags]) + struct.pack('>Q', len(data)) + data

    if mode == 'garbage':
        sock.sendall(frame(b'garbage that is not a record ' * 100, False))
    elif mode == 'huge':
        # Declares a 4 EiB frame and starts sending it.
        sock.sendall(bytes([0x02]) + struct.pack('>Q', 1 << 62) + b'\x00' * 65536)
    elif mode == 'partial':
        data = open(path, 'rb').read()
        half = data[:len(data) // 2]
        for i in range(0, len(half), 1 << 20):
            sock.sendall(frame(half[i:i + (1 << 20)], True))
    time.sleep(0.5)
    sock.close()  # dies in the middle of the message


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'st':
        make_safetensors(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == 'zeros':
        make_zeros(sys.argv[2], int(sys.argv[3]))
    elif cmd == 'push':
        push(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    elif cmd == 'pull':
        pull(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    elif cmd == 'zmtp':
        zmtp(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        sys.exit(__doc__)
