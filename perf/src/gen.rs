//! A deterministic mix of legitimate-looking traffic for both sides of the wire.
//!
//! The demo and the data-path tests need frames nobody has to ship: this builds them from a
//! seed. The mix covers what a bump-in-the-wire must carry unchanged: TCP handshakes and data,
//! DNS and NTP over UDP, ICMP, IPv6, 802.1Q and QinQ tags, and ARP.

use crate::pcap::Frame;
use etherparse::{PacketBuilder, TcpOptionElement};
use std::time::Duration;

/// Which side of the scrubber a frame is injected on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Internet → protected network (client requests).
    Outside,
    /// Protected network → Internet (server answers).
    Inside,
}

/// Small xorshift generator: reproducible across runs and platforms without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
/// Documentation prefixes (RFC 5737 / RFC 3849) stand in for clients and servers.
const SERVER_V4: [u8; 4] = [198, 51, 100, 10];
const SERVER_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn client_v4(r: &mut Rng) -> [u8; 4] {
    [203, 0, 113, 1 + r.below(250) as u8]
}

fn client_v6(r: &mut Rng) -> [u8; 16] {
    let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    a[15] = 1 + r.below(250) as u8;
    a
}

/// Build frame number `i` of the mix for `side`.
pub fn frame(side: Side, i: u64, r: &mut Rng) -> Vec<u8> {
    let out = side == Side::Outside;
    let (smac, dmac) = if out {
        (CLIENT_MAC, SERVER_MAC)
    } else {
        (SERVER_MAC, CLIENT_MAC)
    };
    let cport = 1024 + r.below(60000) as u16;
    let c4 = client_v4(r);
    let (s4, d4) = if out {
        (c4, SERVER_V4)
    } else {
        (SERVER_V4, c4)
    };
    let mut buf = Vec::with_capacity(128);
    match i % 9 {
        0 => {
            // TCP SYN with the options a Linux client sends.
            let (sp, dp) = if out { (cport, 80) } else { (80, cport) };
            let b = PacketBuilder::ethernet2(smac, dmac).ipv4(s4, d4, 64).tcp(
                sp,
                dp,
                r.next_u64() as u32,
                64240,
            );
            let b = if out {
                b.syn()
            } else {
                b.syn().ack(r.next_u64() as u32)
            };
            let b = b
                .options(&[
                    TcpOptionElement::MaximumSegmentSize(1460),
                    TcpOptionElement::SelectiveAcknowledgementPermitted,
                    TcpOptionElement::Timestamp(r.next_u64() as u32, 0),
                    TcpOptionElement::Noop,
                    TcpOptionElement::WindowScale(7),
                ])
                .expect("fixed option list fits the TCP header");
            b.write(&mut buf, &[]).expect("builder writes to a Vec");
        }
        1 => {
            // HTTP request or response payload on an established flow.
            let (sp, dp) = if out { (cport, 80) } else { (80, cport) };
            let payload: &[u8] = if out {
                b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: scrubd-gen\r\nAccept: */*\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>"
            };
            PacketBuilder::ethernet2(smac, dmac)
                .ipv4(s4, d4, 64)
                .tcp(sp, dp, r.next_u64() as u32, 502)
                .ack(r.next_u64() as u32)
                .psh()
                .write(&mut buf, payload)
                .expect("builder writes to a Vec");
        }
        2 => {
            // DNS query / answer.
            let (sp, dp) = if out { (cport, 53) } else { (53, cport) };
            let q: &[u8] = &[
                0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 7, b'e', b'x',
                b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
            ];
            PacketBuilder::ethernet2(smac, dmac)
                .ipv4(s4, d4, 64)
                .udp(sp, dp)
                .write(&mut buf, q)
                .expect("Vec");
        }
        3 => {
            // ICMP echo request / reply.
            let id = r.below(65535) as u16;
            let b = PacketBuilder::ethernet2(smac, dmac).ipv4(s4, d4, 64);
            let b = if out {
                b.icmpv4_echo_request(id, i as u16)
            } else {
                b.icmpv4_echo_reply(id, i as u16)
            };
            b.write(&mut buf, b"scrubd-gen ping payload!").expect("Vec");
        }
        4 => {
            // IPv6 TCP data.
            let c6 = client_v6(r);
            let (s6, d6) = if out {
                (c6, SERVER_V6)
            } else {
                (SERVER_V6, c6)
            };
            let (sp, dp) = if out { (cport, 443) } else { (443, cport) };
            PacketBuilder::ethernet2(smac, dmac)
                .ipv6(s6, d6, 64)
                .tcp(sp, dp, r.next_u64() as u32, 1024)
                .ack(r.next_u64() as u32)
                .write(
                    &mut buf,
                    &[
                        0x17, 0x03, 0x03, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                        14, 15, 16,
                    ],
                )
                .expect("Vec");
        }
        5 => {
            // 802.1Q-tagged NTP.
            let (sp, dp) = if out { (cport, 123) } else { (123, cport) };
            let mut ntp = [0u8; 48];
            ntp[0] = if out { 0x23 } else { 0x24 };
            PacketBuilder::ethernet2(smac, dmac)
                .single_vlan(etherparse::VlanId::try_new(100).expect("valid id"))
                .ipv4(s4, d4, 64)
                .udp(sp, dp)
                .write(&mut buf, &ntp)
                .expect("Vec");
        }
        6 => {
            // QinQ-tagged UDP.
            PacketBuilder::ethernet2(smac, dmac)
                .double_vlan(
                    etherparse::VlanId::try_new(200).expect("valid id"),
                    etherparse::VlanId::try_new(300).expect("valid id"),
                )
                .ipv4(s4, d4, 64)
                .udp(cport, 5000)
                .write(&mut buf, b"qinq payload")
                .expect("Vec");
        }
        7 => {
            // ICMPv6 echo.
            let c6 = client_v6(r);
            let (s6, d6) = if out {
                (c6, SERVER_V6)
            } else {
                (SERVER_V6, c6)
            };
            let b = PacketBuilder::ethernet2(smac, dmac).ipv6(s6, d6, 64);
            let b = if out {
                b.icmpv6_echo_request(1, i as u16)
            } else {
                b.icmpv6_echo_reply(1, i as u16)
            };
            b.write(&mut buf, b"v6 ping").expect("Vec");
        }
        _ => {
            // ARP who-has (broadcast) / is-at.
            buf.extend_from_slice(&if out { [0xff; 6] } else { dmac });
            buf.extend_from_slice(&smac);
            buf.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, if out { 1 } else { 2 }]);
            buf.extend_from_slice(&smac);
            buf.extend_from_slice(&s4);
            buf.extend_from_slice(&if out { [0; 6] } else { dmac });
            buf.extend_from_slice(&d4);
        }
    }
    // Ethernet minimum frame (without FCS) is 60 bytes; a NIC pads shorter frames.
    if buf.len() < 60 {
        buf.resize(60, 0);
    }
    buf
}

/// Kinds of attack frame [`attack_frame`] builds, in rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Spoofed-source SYN to [`ATTACK_TARGET_V4`]:443 (a SYN-cookie target).
    SpoofedSyn,
    /// memcached reflection: UDP from port 11211 carrying a `VALUE ` answer.
    MemcachedReflection,
    /// An IPv4/TCP frame cut inside its IP header.
    Truncated,
}

/// The address the attack mix floods with SYNs; the demo protects it.
pub const ATTACK_TARGET_V4: [u8; 4] = [198, 51, 100, 20];

/// Attack frame number `i` (kinds in rotation: SYN, memcached, truncated).
pub fn attack_frame(i: u64, r: &mut Rng) -> (Attack, Vec<u8>) {
    // Spoofed, but routable-looking: first octet 1..=223 without 127 (a scrubber rightly never
    // answers loopback, multicast or broadcast sources).
    let first = 1 + r.below(222) as u8;
    let first = if first >= 127 { first + 1 } else { first };
    let src = [
        first,
        r.below(256) as u8,
        r.below(256) as u8,
        (1 + r.below(254)) as u8,
    ];
    let mut buf = Vec::with_capacity(128);
    let kind = match i % 3 {
        0 => {
            PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
                .ipv4(src, ATTACK_TARGET_V4, 64)
                .tcp(1024 + r.below(60000) as u16, 443, r.next_u64() as u32, 0)
                .syn()
                .write(&mut buf, &[])
                .expect("Vec");
            Attack::SpoofedSyn
        }
        1 => {
            PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
                .ipv4(src, SERVER_V4, 64)
                .udp(11211, 1024 + r.below(60000) as u16)
                .write(
                    &mut buf,
                    b"VALUE a 0 1024\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nEND\r\n",
                )
                .expect("Vec");
            Attack::MemcachedReflection
        }
        _ => {
            PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
                .ipv4(src, SERVER_V4, 64)
                .tcp(1024, 80, 1, 1)
                .ack(1)
                .write(&mut buf, &[])
                .expect("Vec");
            buf.truncate(14 + 12);
            Attack::Truncated
        }
    };
    if buf.len() < 60 && kind != Attack::Truncated {
        buf.resize(60, 0);
    }
    (kind, buf)
}

/// The outside mix with an attack frame after every `every` legitimate ones. Returns the frames
/// and, for each, the attack kind (None for legitimate frames), so tests know what they sent.
pub fn mix_with_attack(n: u64, seed: u64, every: u64) -> (Vec<Frame>, Vec<Option<Attack>>) {
    let mut r = Rng::new(seed);
    let mut a = Rng::new(seed ^ 0x5eed);
    let (mut frames, mut kinds) = (Vec::new(), Vec::new());
    let (mut legit, mut attacks) = (0u64, 0u64);
    for i in 0..n {
        let ts = Duration::from_micros(i * 10);
        if every > 0 && i % (every + 1) == every {
            let (k, data) = attack_frame(attacks, &mut a);
            attacks += 1;
            frames.push(Frame { ts, data });
            kinds.push(Some(k));
        } else {
            frames.push(Frame {
                ts,
                data: frame(Side::Outside, legit, &mut r),
            });
            legit += 1;
            kinds.push(None);
        }
    }
    (frames, kinds)
}

/// `n` frames for `side`, 10 µs apart, reproducible from `seed`.
pub fn mix(side: Side, n: u64, seed: u64) -> Vec<Frame> {
    let mut r = Rng::new(seed ^ if side == Side::Outside { 0 } else { 0xabcdef });
    (0..n)
        .map(|i| Frame {
            ts: Duration::from_micros(i * 10),
            data: frame(side, i, &mut r),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_reproducible_and_varied() {
        let a = mix(Side::Outside, 90, 7);
        let b = mix(Side::Outside, 90, 7);
        assert_eq!(a, b);
        let c = mix(Side::Outside, 90, 8);
        assert_ne!(a, c);
        let ethertypes: std::collections::BTreeSet<[u8; 2]> =
            a.iter().map(|f| [f.data[12], f.data[13]]).collect();
        // IPv4, IPv6, 802.1Q, ARP (QinQ built by etherparse uses 0x88a8 or 0x8100 outer).
        assert!(ethertypes.contains(&[0x08, 0x00]));
        assert!(ethertypes.contains(&[0x86, 0xdd]));
        assert!(ethertypes.contains(&[0x81, 0x00]));
        assert!(ethertypes.contains(&[0x08, 0x06]));
        assert!(a.iter().all(|f| f.data.len() >= 60));
    }

    #[test]
    fn pcap_round_trip() {
        let dir = std::env::temp_dir().join(format!("scrubd-gen-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.pcap");
        let frames = mix(Side::Inside, 50, 1);
        crate::pcap::write(&p, &frames).unwrap();
        let back = pipeline::testutil::read_timed_frames(&p).unwrap();
        let back: Vec<Frame> = back
            .into_iter()
            .map(|f| Frame {
                ts: Duration::from_nanos(f.ts_ns),
                data: f.data,
            })
            .collect();
        assert_eq!(back, frames);
        std::fs::remove_dir_all(&dir).ok();
    }
}
