#!/usr/bin/env python3
"""Traffic tools for tests/realstack.rs, run inside network namespaces (`ip netns exec NS python3
tests/realstack.py COMMAND ...`). Standard library only, so CI needs nothing beyond python3.

Servers print one line `ready` on stdout once they listen, so the test starts traffic only when the
peer is there; every command that counts prints one JSON object as its last stdout line.
"""

import argparse
import functools
import hashlib
import http.server
import json
import random
import signal
import socket
import struct
import sys
import time


def ready():
    print("ready", flush=True)


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64,
                      proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def l4_checksum(src: bytes, dst: bytes, proto: int, seg: bytes) -> int:
    return checksum(src + dst + struct.pack("!BBH", 0, proto, len(seg)) + seg)


def tcp_syn(src: bytes, dst: bytes, sport: int, dport: int, seq: int, flags: int) -> bytes:
    # SYN (or SYN-ACK) with an MSS option, as a flooding tool sends it.
    ack = seq ^ 0x5A5A5A5A if flags & 0x10 else 0
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 6 << 4, flags, 64240, 0, 0)
    seg += struct.pack("!BBH", 2, 4, 1460)
    c = l4_checksum(src, dst, 6, seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = l4_checksum(src, dst, 17, seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def paced_send(iface: str, frames, count: int, pps: float) -> dict:
    """Send `count` frames from the generator at `pps` on `iface` (AF_PACKET). Returns what was
    sent and over how long, as the sender measured it."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    t0 = time.monotonic()
    sent = 0
    for i, frame in zip(range(count), frames):
        target = t0 + i / pps
        now = time.monotonic()
        if target > now:
            time.sleep(target - now)
        while True:
            try:
                s.send(frame)
                break
            except BlockingIOError:
                time.sleep(0.0001)
        sent += 1
    return {"sent": sent, "secs": time.monotonic() - t0}


def cmd_synflood(a):
    """SYNs (or SYN-ACKs with --synack, a reflection flood) from random spoofed sources in
    a.src_net (a /16) to a.dst:a.dport."""
    rnd = random.Random(a.seed)
    eth = mac(a.dst_mac) + mac(a.src_mac) + b"\x08\x00"
    dst = socket.inet_aton(a.dst)
    base = struct.unpack("!I", socket.inet_aton(a.src_net))[0] & 0xFFFF0000

    def frames():
        for i in range(a.count):
            src = struct.pack("!I", base | rnd.randrange(1, 0xFFFF))
            sport = rnd.randrange(1024, 65535)
            flags = 0x12 if a.synack else 0x02
            seg = tcp_syn(src, dst, sport, a.dport, rnd.getrandbits(32), flags)
            yield eth + ipv4(src, dst, 6, seg, i)

    print(json.dumps(paced_send(a.iface, frames(), a.count, a.pps)), flush=True)


def cmd_udpflood(a):
    """UDP datagrams from one (possibly spoofed) source a.src:a.sport to a.dst:a.dport."""
    eth = mac(a.dst_mac) + mac(a.src_mac) + b"\x08\x00"
    src, dst = socket.inet_aton(a.src), socket.inet_aton(a.dst)

    def frames():
        for i in range(a.count):
            payload = struct.pack("!I", i) + b"x" * max(0, a.size - 4)
            yield eth + ipv4(src, dst, 17, udp(src, dst, a.sport, a.dport, payload), i)

    print(json.dumps(paced_send(a.iface, frames(), a.count, a.pps)), flush=True)


def cmd_udp_count(a):
    """Count datagrams per source until a.idle seconds pass without one (after the first), or
    a.max seconds in all; print {"by_src": {...}, "span": {src: seconds first..last}}."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((a.bind, a.port))
    ready()
    counts, first, last = {}, {}, {}
    start = time.monotonic()
    s.settimeout(0.05)
    while time.monotonic() - start < a.max:
        try:
            _, (src, _) = s.recvfrom(65535)
        except socket.timeout:
            if last and time.monotonic() - max(last.values()) > a.idle:
                break
            continue
        now = time.monotonic()
        counts[src] = counts.get(src, 0) + 1
        first.setdefault(src, now)
        last[src] = now
    span = {k: last[k] - first[k] for k in counts}
    print(json.dumps({"by_src": counts, "span": span}), flush=True)


def family(addr: str) -> int:
    """AF_INET6 for an IPv6 literal, else AF_INET."""
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def accept_one(a):
    """Listen on a.bind:a.port, say we are ready, and return the first connection."""
    ls = socket.socket(family(a.bind), socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(1)
    ready()
    conn, _ = ls.accept()
    return conn


def read_to_eof(c):
    """Read `c` until the peer closes; returns (bytes read, their sha256 hex), and closes it."""
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b)
        n += len(b)
    c.close()
    return n, h.hexdigest()


def cmd_tcp_serve(a):
    """Send a.file to the first client that connects, then exit."""
    conn = accept_one(a)
    with open(a.file, "rb") as f:
        data = f.read()
    conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)
    conn.close()
    print(json.dumps({"sent": len(data), "sha256": hashlib.sha256(data).hexdigest()}), flush=True)


def cmd_tcp_fetch(a):
    """Connect to a.host:a.port, read until EOF, report size, sha256 and seconds."""
    t0 = time.monotonic()
    c = socket.create_connection((a.host, a.port), timeout=a.timeout)
    n, digest = read_to_eof(c)
    print(json.dumps({"received": n, "sha256": digest, "secs": time.monotonic() - t0}),
          flush=True)


def cmd_tcp_sink(a):
    """Read everything the first client sends until EOF, then report size and sha256."""
    n, digest = read_to_eof(accept_one(a))
    print(json.dumps({"received": n, "sha256": digest}), flush=True)


def cmd_tcp_push(a):
    """Connect to a.host:a.port, send a.file, close our side and wait for the peer's close."""
    with open(a.file, "rb") as f:
        data = f.read()
    t0 = time.monotonic()
    c = socket.create_connection((a.host, a.port), timeout=a.timeout)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    while c.recv(1 << 16):
        pass
    c.close()
    print(json.dumps({"sent": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "secs": time.monotonic() - t0}), flush=True)


def cmd_http_serve(a):
    """Serve a.dir over HTTP/1.0 on a.bind:a.port until killed."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=a.dir)

    class Server(http.server.ThreadingHTTPServer):
        address_family = family(a.bind)

    srv = Server((a.bind, a.port), handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ready()
    srv.serve_forever()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    f = sub.add_parser("synflood")
    f.add_argument("--iface", required=True)
    f.add_argument("--src-mac", required=True)
    f.add_argument("--dst-mac", required=True)
    f.add_argument("--src-net", required=True, help="spoofed sources are drawn from this /16")
    f.add_argument("--dst", required=True)
    f.add_argument("--dport", type=int, required=True)
    f.add_argument("--count", type=int, required=True)
    f.add_argument("--pps", type=float, required=True)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--synack", action="store_true")
    f.set_defaults(func=cmd_synflood)

    u = sub.add_parser("udpflood")
    u.add_argument("--iface", required=True)
    u.add_argument("--src-mac", required=True)
    u.add_argument("--dst-mac", required=True)
    u.add_argument("--src", required=True)
    u.add_argument("--dst", required=True)
    u.add_argument("--sport", type=int, required=True)
    u.add_argument("--dport", type=int, required=True)
    u.add_argument("--count", type=int, required=True)
    u.add_argument("--pps", type=float, required=True)
    u.add_argument("--size", type=int, default=64)
    u.set_defaults(func=cmd_udpflood)

    c = sub.add_parser("udp-count")
    c.add_argument("--bind", default="0.0.0.0")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--idle", type=float, default=1.0)
    c.add_argument("--max", type=float, default=30.0)
    c.set_defaults(func=cmd_udp_count)

    t = sub.add_parser("tcp-serve")
    t.add_argument("--bind", default="0.0.0.0")
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--file", required=True)
    t.set_defaults(func=cmd_tcp_serve)

    g = sub.add_parser("tcp-fetch")
    g.add_argument("--host", required=True)
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--timeout", type=float, default=20.0)
    g.set_defaults(func=cmd_tcp_fetch)

    k = sub.add_parser("tcp-sink")
    k.add_argument("--bind", default="0.0.0.0")
    k.add_argument("--port", type=int, required=True)
    k.set_defaults(func=cmd_tcp_sink)

    q = sub.add_parser("tcp-push")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--file", required=True)
    q.add_argument("--timeout", type=float, default=20.0)
    q.set_defaults(func=cmd_tcp_push)

    h = sub.add_parser("http-serve")
    h.add_argument("--bind", default="0.0.0.0")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--dir", required=True)
    h.set_defaults(func=cmd_http_serve)

    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
