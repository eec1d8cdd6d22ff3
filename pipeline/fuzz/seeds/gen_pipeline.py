#!/usr/bin/env python3
"""Writes the `pipeline` fuzz target's seed inputs (8-byte header + frame) into seeds/pipeline/.

Valid IPv4 frames need a correct header checksum, which random mutation rarely produces, so the
seeds give the fuzzer well-formed TCP, UDP, ICMP and IPv6 frames that reach every stage.
Run from anywhere: python3 pipeline/fuzz/seeds/gen_pipeline.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipeline")
ETH = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1])


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip4(src, dst, proto, l4, ttl=64, frag=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, frag, ttl, proto, 0,
                    bytes(src), bytes(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return ETH + b"\x08\x00" + h + l4


def ip6(src, dst, nh, l4, hlim=64):
    h = struct.pack("!IHBB16s16s", 6 << 28, len(l4), nh, hlim, bytes(src), bytes(dst))
    return ETH + b"\x86\xdd" + h + l4


def tcp(sport, dport, flags, payload=b"", seq=1000, ack=0, mss=None):
    opts = struct.pack("!BBH", 2, 4, mss) if mss else b""
    off = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, 64240, 0, 0) + opts + payload


def udp(sport, dport, payload):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo(n):
    return struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"x" * n


def head(room=96, policy=0, repeats=1, step=1, tsc=123456789):
    return bytes([room, policy | ((repeats - 1) << 1) | (step << 3)]) + tsc.to_bytes(6, "little")


V6A = bytes.fromhex("20010db8000100000000000000000001")
V6B = bytes.fromhex("20010db8000200000000000000000002")
V6N = bytes.fromhex("20010db9000000000000000000000003")
SYN, ACK, RST, PSH, FIN, URG = 0x02, 0x10, 0x04, 0x08, 0x01, 0x20

seeds = {
    "syn_v4": head() + ip4([198, 18, 0, 1], [10, 1, 2, 3], 6, tcp(40000, 80, SYN, mss=1460)),
    "syn_v4_repeat": head(repeats=4) + ip4([198, 18, 0, 1], [10, 1, 2, 3], 6, tcp(40000, 80, SYN, mss=1400)),
    "syn_v6": head() + ip6(V6N, V6A, 6, tcp(40000, 443, SYN, mss=1440)),
    "rst_v4": head() + ip4([198, 18, 0, 1], [10, 1, 2, 3], 6, tcp(40000, 80, RST, seq=0x12345678)),
    "ack_v4": head() + ip4([198, 18, 0, 1], [10, 1, 2, 3], 6, tcp(40000, 80, ACK, seq=1001, ack=0x12345679)),
    "http_get": head(policy=1, repeats=2) + ip4([198, 18, 0, 1], [172, 16, 0, 1], 6,
                    tcp(40000, 80, ACK | PSH, b"GET / HTTP/1.1\r\nHoSt: example\r\n\r\n")),
    "two_parts": head(policy=1) + ip4([198, 18, 0, 1], [172, 16, 0, 1], 6, tcp(40000, 9, ACK, b"..abcd....")),
    "xmas": head(policy=1) + ip4([198, 18, 0, 1], [172, 16, 0, 1], 6, tcp(40000, 22, FIN | PSH | URG)),
    "memcached": head(repeats=3) + ip4([198, 18, 0, 1], [10, 1, 2, 3], 17,
                    udp(40000, 11211, b"\0\0\0\0\0\1\0\0stats\r\n")),
    "dns_any": head() + ip4([198, 18, 0, 1], [10, 1, 2, 3], 17,
                    udp(40000, 53, bytes(12) + b"\0\0\xff\0\1")),
    "hex_nocase": head() + ip6(V6N, V6B, 17, udp(5000, 123, b"\xde\xadbEeF\x01\x00" + b"z" * 8)),
    "trusted_pass": head() + ip4([192, 0, 2, 9], [10, 1, 2, 3], 17, udp(40000, 9999, b"ok go")),
    "acl_allow": head() + ip4([192, 0, 2, 1], [10, 1, 2, 3], 6, tcp(40000, 80, SYN)),
    "acl_deny": head() + ip4([198, 51, 100, 9], [10, 1, 2, 3], 17, udp(1, 2, b"x")),
    "ping_big": head(repeats=3) + ip4([198, 18, 0, 1], [10, 1, 2, 3], 1, icmp_echo(600)),
    "low_ttl_gre": head() + ip4([198, 18, 0, 1], [10, 1, 2, 3], 47, b"\0" * 8, ttl=3),
    "fragment": head(repeats=2) + ip4([198, 18, 0, 1], [10, 1, 2, 3], 17, b"\0" * 16, frag=0x2001),
    "icmp6_echo": head() + ip6(V6N, V6A, 58, struct.pack("!BBHHH", 128, 0, 0, 1, 1)),
    "arp": head() + b"\xff" * 6 + ETH[6:] + b"\x08\x06" + bytes([0, 1, 8, 0, 6, 4, 0, 1]) + bytes(20),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {OUT}")
