"""Hostile peers for n3-send --recv and --sub: raw TCP and pyzmq programs that misbehave.

Each prints one line saying what happened to it (how long the receiver kept it connected),
so that the test can tell a receiver that cut it off from one that let it hang.

  hostile.py idle HOST PORT N SECONDS      N connections that send nothing, until the peer
                                           closed them all or SECONDS after the start; prints
                                           "idle: C of N closed by the peer"
  hostile.py slow HOST PORT SECONDS        sends a ZMTP greeting one byte a second; prints
                                           "slow: closed after S s" or "slow: open after S s"
  hostile.py slowframe HOST PORT SECONDS   finishes the handshake, declares a 1 MiB frame and
                                           sends its bytes one a second
  hostile.py huge HOST PORT                finishes the handshake, declares a 2^60-byte frame and
                                           streams zeros; prints "huge: closed after B bytes"
  hostile.py flood ENDPOINT SECONDS FILE   pyzmq PUSH: valid frames of garbage records (FILE's
                                           preamble, a random payload, so a wrong checksum) and
                                           of random bytes at full speed; prints "flood: M messages"
  hostile.py pubflood PORT SECONDS FILE    pyzmq PUB (bind): garbage records (as flood) at full
                                           speed, and FILE's record among them every half second after the first
  hostile.py pubhuge PORT SECONDS          raw ZMTP PUB (listen): every subscriber that connects
                                           is sent a 2^60-byte frame header and zeros; prints
                                           "pubhuge: C connections"
  hostile.py record PORT TARGET_PORT OUT   a one-connection TCP proxy on 127.0.0.1:PORT to
                                           TARGET_PORT that writes what the client sent to OUT
  hostile.py replay HOST PORT FILE         sends FILE's bytes (a recorded session) on a new
                                           connection and reads what comes back until closed
"""
import os
import select
import socket
import struct
import sys
import threading
import time

GREETING = b'\xff' + b'\x00' * 8 + b'\x7f' + b'\x03\x00' + b'NULL'.ljust(20, b'\x00') + b'\x00' * 32


def ready(socket_type):
    body = b'\x05READY' + b'\x0bSocket-Type' + struct.pack('>I', len(socket_type)) + socket_type
    return bytes([0x04, len(body)]) + body


def closed(sock, wait=0.0):
    """True when the peer closed the connection (EOF or reset); reads and discards data."""
    end = time.monotonic() + wait
    while True:
        r, _, _ = select.select([sock], [], [], max(0.0, end - time.monotonic()))
        if not r:
            return False
        try:
            if not sock.recv(65536):
                return True
        except OSError:
            return True


def handshake(host, port, socket_type=b'PUSH'):
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(GREETING)
    got = b''
    while len(got) < 64:
        chunk = sock.recv(64 - len(got))
        if not chunk:
            sys.exit('hostile.py: no greeting')
        got += chunk
    sock.sendall(ready(socket_type))
    return sock


def idle(host, port, n, seconds):
    # SECONDS from the start: connecting takes a while (the listener's backlog is 100).
    end = time.monotonic() + seconds
    socks = []
    for _ in range(n):
        socks.append(socket.create_connection((host, port), timeout=10))
    left = set(socks)
    while left and time.monotonic() < end:
        r, _, _ = select.select(list(left), [], [], max(0.0, end - time.monotonic()))
        left -= {s for s in r if closed(s)}
    print('idle: %d of %d closed by the peer' % (n - len(left), n), flush=True)


def slow(host, port, seconds):
    sock = socket.create_connection((host, port), timeout=10)
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        try:
            sock.send(GREETING[i % len(GREETING):i % len(GREETING) + 1])
        except OSError:
            break
        i += 1
        if closed(sock, 1.0):
            break
    else:
        print('slow: open after %.0f s' % (time.monotonic() - start), flush=True)
        return
    print('slow: closed after %.0f s' % (time.monotonic() - start), flush=True)


def slowframe(host, port, seconds):
    sock = handshake(host, port)
    sock.sendall(bytes([0x02]) + struct.pack('>Q', 1 << 20))
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            sock.send(b'\x00')
        except OSError:
            break
        if closed(sock, 1.0):
            break
    print('slowframe: %.0f s' % (time.monotonic() - start), flush=True)


def huge(host, port):
    sock = handshake(host, port)
    sent = 0
    try:
        sock.sendall(bytes([0x02]) + struct.pack('>Q', 1 << 60))
        zeros = b'\x00' * 65536
        for _ in range(4096):  # 256 MiB at most
            sock.sendall(zeros)
            sent += len(zeros)
            if closed(sock):
                break
    except OSError:
        pass
    print('huge: closed after %d bytes' % sent if closed(sock, 2.0) else 'huge: still open', flush=True)


def garbage_records(path, n):
    # A real record's preamble (magic, version, type, length, its own CRC) in front of a
    # random payload and trailer: each passes the preamble and length checks and fails the
    # checksum, the most work a receiver does for a message it drops.
    # A large record's garbage is cut short at 64 KiB: a truncated record, refused as such.
    data = open(path, 'rb').read()
    return [data[:32] + os.urandom(min(len(data), 65536) - 32) for _ in range(n)]


def flood(endpoint, seconds, path):
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.SNDHWM, 1000)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    msgs = garbage_records(path, 32) + [os.urandom(4096) for _ in range(32)]
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        try:
            s.send(msgs[n % len(msgs)], zmq.NOBLOCK)
            n += 1
        except zmq.Again:
            time.sleep(0.001)
    s.close()
    ctx.term()
    print('flood: %d messages' % n, flush=True)


def pubflood(port, seconds, path):
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.SNDHWM, 1000)
    s.setsockopt(zmq.LINGER, 0)
    s.bind('tcp://127.0.0.1:%d' % port)
    record = open(path, 'rb').read()
    msgs = garbage_records(path, 32) + [os.urandom(4096) for _ in range(32)]
    start = time.monotonic()
    n, sent_record = 0, 0
    while time.monotonic() - start < seconds:
        # Again every half second: a PUB socket drops what a full subscriber queue cannot take.
        if time.monotonic() - start > 1.0 + sent_record * 0.5:
            s.send(record)
            sent_record += 1
        s.send(msgs[n % len(msgs)])
        n += 1
        if n % 256 == 0:
            time.sleep(0.001)
    s.close()
    ctx.term()
    print('pubflood: %d messages' % n, flush=True)


def pubhuge(port, seconds):
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(('127.0.0.1', port))
    lsock.listen(16)
    lsock.settimeout(0.2)
    count = 0
    end = time.monotonic() + seconds

    def serve(conn):
        try:
            conn.sendall(GREETING)
            conn.sendall(ready(b'PUB'))
            conn.sendall(bytes([0x02]) + struct.pack('>Q', 1 << 60))
            zeros = b'\x00' * 65536
            while time.monotonic() < end:
                conn.sendall(zeros)
        except OSError:
            pass
        conn.close()

    while time.monotonic() < end:
        try:
            conn, _ = lsock.accept()
        except socket.timeout:
            continue
        count += 1
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    print('pubhuge: %d connections' % count, flush=True)


def record(port, target, out):
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(('127.0.0.1', port))
    lsock.listen(1)
    lsock.settimeout(30)
    client, _ = lsock.accept()
    server = socket.create_connection(('127.0.0.1', target), timeout=30)
    sent = bytearray()
    ends = {client: server, server: client}
    open_ = {client, server}
    while open_:
        r, _, _ = select.select(list(open_), [], [], 30)
        if not r:
            break
        for s in r:
            try:
                data = s.recv(1 << 20)
            except OSError:
                data = b''
            if not data:
                open_.clear()
                break
            if s is client:
                sent += data
            ends[s].sendall(data)
    with open(out, 'wb') as f:
        f.write(sent)
    client.close()
    server.close()


def replay(host, port, path):
    # Paced as a ZMTP peer is: the signature, the rest of the greeting once the receiver's
    # signature came, the rest once its greeting did (a plain receiver takes the replay as
    # the original; a CURVE one sees handshake boxes made for another connection).
    data = open(path, 'rb').read()
    sock = socket.create_connection((host, port), timeout=10)

    def read(n):
        got = b''
        while len(got) < n:
            chunk = sock.recv(n - len(got))
            if not chunk:
                break
            got += chunk
        return got

    try:
        sock.sendall(data[:10])
        read(10)
        sock.sendall(data[10:64])
        read(54)
        sock.sendall(data[64:])
    except OSError:
        pass
    closed(sock, 1.0)
    sock.close()


if __name__ == '__main__':
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == 'idle':
        idle(a[1], int(a[2]), int(a[3]), float(a[4]))
    elif cmd == 'slow':
        slow(a[1], int(a[2]), float(a[3]))
    elif cmd == 'slowframe':
        slowframe(a[1], int(a[2]), float(a[3]))
    elif cmd == 'huge':
        huge(a[1], int(a[2]))
    elif cmd == 'flood':
        flood(a[1], float(a[2]), a[3])
    elif cmd == 'pubflood':
        pubflood(int(a[1]), float(a[2]), a[3])
    elif cmd == 'pubhuge':
        pubhuge(int(a[1]), float(a[2]))
    elif cmd == 'record':
        record(int(a[1]), int(a[2]), a[3])
    elif cmd == 'replay':
        replay(a[1], int(a[2]), a[3])
    else:
        sys.exit(__doc__)
