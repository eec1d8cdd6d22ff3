//! Building the frames of each class straight into a transmit buffer.
//!
//! One [`Gen`] per generator worker. It writes Ethernet (+ 802.1Q), IPv4/IPv6 and TCP/UDP/ICMP
//! headers with etherparse's header types into the caller's buffer (an mbuf's data), with
//! correct checksums, and keeps a reusable payload scratch buffer: building a frame allocates
//! nothing.

use super::profile::Profile;
use super::rx::{Addr, TcpSeen};
use super::*;
use crate::gen::Rng;
use etherparse::{
    EtherType, Ethernet2Header, IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type,
    IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, SingleVlanHeader, TcpHeader, TcpOptionElement,
    UdpHeader, VlanId, VlanPcp,
};
use std::io::Write;

/// Largest frame built (a full-size Ethernet frame without FCS).
pub const MAX_FRAME: usize = 1514;
/// Shortest frame on the wire without FCS; shorter frames are padded with zeros.
const MIN_FRAME: usize = 60;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0x5c, 0x00, 0x00, 0x00, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0x5c, 0x00, 0x00, 0x00, 0x02];

/// UDP reflection services: source port and the frame size of a typical amplified answer
/// (IPv4, without FCS; IPv6 frames are 20 bytes longer): a DNS ANY answer with EDNS, an NTP
/// monlist page (6 entries of 72 bytes), a memcached `VALUE` answer, a CLDAP rootDSE answer
/// (full size: real ones arrive fragmented), an SSDP `HTTP/1.1 200 OK` answer.
pub const REFLECTORS: [(u16, usize, &[u8]); 5] = [
    (
        53,
        1200,
        b"\x12\x34\x81\x80\x00\x01\x00\x20\x00\x00\x00\x01",
    ),
    (123, 482, b"\xd7\x00\x03\x2a\x00\x06\x00\x48"),
    (11211, 1400, b"VALUE a 0 1024\r\n"),
    (389, 1514, b"\x30\x84\x00\x00\x0b\xc8\x02\x01\x01\x64\x84"),
    (
        1900,
        340,
        b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nST: upnp:rootdevice\r\n",
    ),
];

/// What [`Gen`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Built {
    pub class: Class,
    /// Frame length (0: nothing was written, e.g. the buffer was too short).
    pub len: usize,
    /// For SYNs: the client's (address, port), to record in the [`super::FlowTable`].
    pub syn_key: Option<(Addr, u16)>,
}

#[derive(Clone, Copy)]
enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: Option<u32>,
        syn: bool,
        rst: bool,
        psh: bool,
        mss: bool,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Echo {
        id: u16,
        seq: u16,
    },
}

/// What to put in the payload: a class prefix, filler up to `len`, then the tag.
struct Payload<'p> {
    prefix: &'p [u8],
    /// Total payload length; 0 for header-only packets (no tag then).
    len: usize,
}

/// One worker's generator.
pub struct Gen<'a> {
    profile: &'a Profile,
    rng: Rng,
    worker: u8,
    seq: [u32; CLASSES],
    /// Cumulative weights in class order of [`Gen::draw`].
    cum: [u64; 8],
    replay_next: usize,
    scratch: Box<[u8; MAX_FRAME]>,
}

impl<'a> Gen<'a> {
    pub fn new(profile: &'a Profile, worker: u8, seed: u64) -> Gen<'a> {
        let mut cum = [0u64; 8];
        let mut acc = 0u64;
        for (i, v) in profile.weights.in_order().into_iter().enumerate() {
            acc += u64::from(v);
            cum[i] = acc;
        }
        Gen {
            profile,
            rng: Rng::new(seed ^ (u64::from(worker) << 40)),
            worker,
            seq: [0; CLASSES],
            cum,
            // Workers start at different points of the capture.
            replay_next: usize::from(worker) * 7919,
            scratch: Box::new([0u8; MAX_FRAME]),
        }
    }

    /// Build the next packet of the mix into `buf` (at least [`MAX_FRAME`] bytes for every
    /// size to fit; a shorter buffer yields `len` 0). `tsc` goes into the tag.
    pub fn next(&mut self, tsc: u64, buf: &mut [u8]) -> Built {
        let total = self.cum[7];
        let k = self.rng.below(total);
        let pick = self.cum.iter().position(|&c| k < c).unwrap_or(0);
        match pick {
            0 => {
                let (client, _) = self.client();
                let sport = self.port();
                let server = self.protected_host(client.is_v6());
                let seq = self.rng.next_u64() as u32;
                self.tcp(
                    buf,
                    Class::LegitSyn,
                    client,
                    server,
                    L4::Tcp {
                        sport,
                        dport: 443,
                        seq,
                        ack: None,
                        syn: true,
                        rst: false,
                        psh: false,
                        mss: true,
                    },
                    tsc,
                )
            }
            1 => {
                let v6 = self.v6();
                let (src, dst) = (self.spoofed(v6), self.protected_host(v6));
                let l4 = L4::Tcp {
                    sport: self.port(),
                    dport: if self.rng.below(2) == 0 { 80 } else { 443 },
                    seq: self.rng.next_u64() as u32,
                    ack: None,
                    syn: true,
                    rst: false,
                    psh: false,
                    mss: false,
                };
                self.tcp(buf, Class::SynFlood, src, dst, l4, tsc)
            }
            2 => {
                let v6 = self.v6();
                let (src, dst) = (self.spoofed(v6), self.protected_host(v6));
                let l4 = L4::Tcp {
                    sport: self.port(),
                    dport: 443,
                    seq: self.rng.next_u64() as u32,
                    ack: Some(self.rng.next_u64() as u32),
                    syn: false,
                    rst: false,
                    psh: false,
                    mss: false,
                };
                self.tcp(buf, Class::AckFlood, src, dst, l4, tsc)
            }
            3 => {
                let v6 = self.v6();
                let (src, dst) = (self.spoofed(v6), self.protected_host(v6));
                let (sport, size, prefix) = REFLECTORS[self.rng.below(5) as usize];
                let size = size + if v6 { 20 } else { 0 };
                let dport = self.port();
                let hdr = header_len(self.profile.vlan.is_some(), v6, 8);
                let payload = Payload {
                    prefix,
                    len: size.min(MAX_FRAME).saturating_sub(hdr),
                };
                self.write(
                    buf,
                    Class::UdpReflection,
                    src,
                    dst,
                    L4::Udp { sport, dport },
                    payload,
                    tsc,
                )
            }
            4 => {
                let v6 = self.v6();
                let (src, dst) = (self.spoofed(v6), self.protected_host(v6));
                let l4 = L4::Echo {
                    id: self.rng.next_u64() as u16,
                    seq: self.seq[Class::IcmpFlood as usize] as u16,
                };
                let len = self.sized_payload(v6, 8, b"");
                let payload = Payload { prefix: b"", len };
                self.write(buf, Class::IcmpFlood, src, dst, l4, payload, tsc)
            }
            5 | 6 => {
                let (class, prefix) = if pick == 5 {
                    (Class::SignatureHit, SIGNATURE_HIT)
                } else {
                    (Class::SignatureMiss, SIGNATURE_MISS)
                };
                let (src, _) = self.client_v4();
                let l4 = L4::Udp {
                    sport: self.port(),
                    dport: 9999,
                };
                let len = self.sized_payload(false, 8, prefix);
                let payload = Payload { prefix, len };
                self.write(buf, class, src, Addr::V4(OPEN_SERVER_V4), l4, payload, tsc)
            }
            _ => self.replay(buf),
        }
    }

    /// A legitimate client's answer to the scrubber's cookie SYN-ACK `synack` (received on
    /// the outside): into `rst` the RST whose sequence number is the SYN-ACK's
    /// acknowledgment number, into `syn` the SYN it sends again.
    pub fn answer_challenge(
        &mut self,
        synack: &TcpSeen,
        tsc: u64,
        rst: &mut [u8],
        syn: &mut [u8],
    ) -> (Built, Built) {
        // The SYN-ACK goes from the server to the client.
        let (client, server) = (synack.dst, synack.src);
        let (cport, sport) = (synack.dport, synack.sport);
        let r = self.tcp(
            rst,
            Class::LegitRst,
            client,
            server,
            L4::Tcp {
                sport: cport,
                dport: sport,
                seq: synack.ack,
                ack: None,
                syn: false,
                rst: true,
                psh: false,
                mss: false,
            },
            tsc,
        );
        let seq = self.rng.next_u64() as u32;
        let s = self.tcp(
            syn,
            Class::LegitSynAgain,
            client,
            server,
            L4::Tcp {
                sport: cport,
                dport: sport,
                seq,
                ack: None,
                syn: true,
                rst: false,
                psh: false,
                mss: true,
            },
            tsc,
        );
        (r, s)
    }

    /// Data segment `k` of the connection whose SYN `syn` reached the inside (the server).
    pub fn data(&mut self, syn: &TcpSeen, k: u32, tsc: u64, buf: &mut [u8]) -> Built {
        let len = self.sized_payload(syn.src.is_v6(), 20, b"");
        let l4 = L4::Tcp {
            sport: syn.sport,
            dport: syn.dport,
            seq: syn
                .seq
                .wrapping_add(1)
                .wrapping_add(k.wrapping_mul(len as u32)),
            ack: Some(1),
            syn: false,
            rst: false,
            psh: true,
            mss: false,
        };
        self.write(
            buf,
            Class::LegitData,
            syn.src,
            syn.dst,
            l4,
            Payload { prefix: b"", len },
            tsc,
        )
    }

    fn replay(&mut self, buf: &mut [u8]) -> Built {
        let frames = &self.profile.replay;
        if frames.is_empty() {
            return Built {
                class: Class::Replay,
                len: 0,
                syn_key: None,
            };
        }
        let f = &frames[self.replay_next % frames.len()];
        self.replay_next = self.replay_next.wrapping_add(1);
        let len = f.len().min(buf.len());
        buf[..len].copy_from_slice(&f[..len]);
        self.seq[Class::Replay as usize] = self.seq[Class::Replay as usize].wrapping_add(1);
        Built {
            class: Class::Replay,
            len,
            syn_key: None,
        }
    }

    fn v6(&mut self) -> bool {
        self.profile.ipv6 > 0.0
            && (self.rng.below(1 << 20) as f64) < self.profile.ipv6 * (1u64 << 20) as f64
    }

    fn port(&mut self) -> u16 {
        1024 + self.rng.below(64512) as u16
    }

    fn client_v4(&mut self) -> (Addr, u32) {
        let i = self.rng.below(u64::from(self.profile.clients)) as u32;
        (
            Addr::V4([CLIENTS_V4[0], CLIENTS_V4[1], (i >> 8) as u8, i as u8]),
            i,
        )
    }

    /// A legitimate client's address: one of `clients`, IPv4 or IPv6 by the profile's share.
    fn client(&mut self) -> (Addr, u32) {
        if self.v6() {
            let i = self.rng.below(u64::from(self.profile.clients)) as u32;
            let mut a = [0u8; 16];
            a[..8].copy_from_slice(&CLIENTS_V6);
            a[12..].copy_from_slice(&(i + 1).to_be_bytes());
            (Addr::V6(a), i)
        } else {
            self.client_v4()
        }
    }

    /// A host of the protected prefix.
    fn protected_host(&mut self, v6: bool) -> Addr {
        let h = 1 + self.rng.below(254) as u8;
        if v6 {
            let mut a = PROTECTED_V6;
            a[15] = h;
            Addr::V6(a)
        } else {
            let mut a = PROTECTED_V4;
            a[3] = h;
            Addr::V4(a)
        }
    }

    /// A random spoofed source the scrubber answers: IPv4 in 1..=223 without 127 (loopback),
    /// the clients' 100.64/16 and the protected /24; IPv6 in 2000::/3 without the
    /// documentation prefix (clients and protected hosts live there).
    fn spoofed(&mut self, v6: bool) -> Addr {
        loop {
            let x = self.rng.next_u64();
            if v6 {
                let y = self.rng.next_u64();
                let mut a = [0u8; 16];
                a[..8].copy_from_slice(&x.to_be_bytes());
                a[8..].copy_from_slice(&y.to_be_bytes());
                a[0] = 0x20 | (a[0] & 0x1f);
                if a[..4] == [0x20, 0x01, 0x0d, 0xb8] {
                    continue;
                }
                return Addr::V6(a);
            }
            let b = x.to_be_bytes();
            let first = 1 + (b[0] % 223);
            let a = [first, b[1], b[2], 1 + b[3] % 254];
            if first == 127 || a[..2] == CLIENTS_V4[..2] || a[..3] == PROTECTED_V4[..3] {
                continue;
            }
            return Addr::V4(a);
        }
    }

    /// Payload length for a frame of the profile's size with `l4` header bytes, at least the
    /// prefix and the tag.
    fn sized_payload(&mut self, v6: bool, l4: usize, prefix: &[u8]) -> usize {
        let size = self.profile.sizes.pick(self.rng.next_u64());
        let hdr = header_len(self.profile.vlan.is_some(), v6, l4);
        size.saturating_sub(hdr)
            .max(prefix.len() + Tag::LEN)
            .min(MAX_FRAME - hdr)
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        buf: &mut [u8],
        class: Class,
        src: Addr,
        dst: Addr,
        l4: L4,
        tsc: u64,
    ) -> Built {
        self.write(
            buf,
            class,
            src,
            dst,
            l4,
            Payload {
                prefix: b"",
                len: 0,
            },
            tsc,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        buf: &mut [u8],
        class: Class,
        src: Addr,
        dst: Addr,
        l4: L4,
        payload: Payload<'_>,
        tsc: u64,
    ) -> Built {
        let seq = self.seq[class as usize];
        self.seq[class as usize] = seq.wrapping_add(1);
        let nothing = Built {
            class,
            len: 0,
            syn_key: None,
        };
        // The payload: prefix, filler, tag.
        let plen = payload.len.min(MAX_FRAME);
        let p = &mut self.scratch[..plen];
        if plen > 0 {
            let pre = payload.prefix.len().min(plen.saturating_sub(Tag::LEN));
            p[..pre].copy_from_slice(&payload.prefix[..pre]);
            let tag_at = plen - Tag::LEN;
            for (i, b) in p[pre..tag_at].iter_mut().enumerate() {
                *b = b'a' + (i % 26) as u8;
            }
            let mut t = [0u8; Tag::LEN];
            Tag {
                class,
                worker: self.worker,
                seq,
                tsc,
            }
            .write(&mut t);
            p[tag_at..].copy_from_slice(&t);
        }
        let p = &self.scratch[..plen];
        let cap = buf.len();
        let mut w: &mut [u8] = buf;
        let v6 = src.is_v6();
        let inner = if v6 { EtherType::IPV6 } else { EtherType::IPV4 };
        let eth = Ethernet2Header {
            source: CLIENT_MAC,
            destination: SERVER_MAC,
            ether_type: if self.profile.vlan.is_some() {
                EtherType::VLAN_TAGGED_FRAME
            } else {
                inner
            },
        };
        if eth.write(&mut w).is_err() {
            return nothing;
        }
        if let Some(id) = self.profile.vlan {
            let Ok(vlan_id) = VlanId::try_new(id) else {
                return nothing;
            };
            let v = SingleVlanHeader {
                pcp: VlanPcp::ZERO,
                drop_eligible_indicator: false,
                vlan_id,
                ether_type: inner,
            };
            if v.write(&mut w).is_err() {
                return nothing;
            }
        }
        let (proto, l4_len) = match l4 {
            L4::Tcp { mss, .. } => (IpNumber::TCP, if mss { 24 } else { 20 }),
            L4::Udp { .. } => (IpNumber::UDP, 8),
            L4::Echo { .. } => (
                if v6 {
                    IpNumber::IPV6_ICMP
                } else {
                    IpNumber::ICMP
                },
                8,
            ),
        };
        let ip_payload = l4_len + p.len();
        let ok = match (src, dst) {
            (Addr::V4(s), Addr::V4(d)) => {
                let Ok(mut ip) = Ipv4Header::new(ip_payload as u16, 64, proto, s, d) else {
                    return nothing;
                };
                ip.identification = seq as u16;
                ip.header_checksum = ip.calc_header_checksum();
                ip.write(&mut w).is_ok() && write_l4(&mut w, l4, p, Net::V4(&ip)).is_some()
            }
            (Addr::V6(s), Addr::V6(d)) => {
                let ip = Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::ZERO,
                    payload_length: ip_payload as u16,
                    next_header: proto,
                    hop_limit: 64,
                    source: s,
                    destination: d,
                };
                ip.write(&mut w).is_ok() && write_l4(&mut w, l4, p, Net::V6(&ip)).is_some()
            }
            _ => false,
        };
        if !ok {
            return nothing;
        }
        let mut len = cap - w.len();
        if len < MIN_FRAME && cap >= MIN_FRAME {
            buf[len..MIN_FRAME].fill(0);
            len = MIN_FRAME;
        }
        let syn_key = match l4 {
            L4::Tcp {
                sport, syn: true, ..
            } => Some((src, sport)),
            _ => None,
        };
        Built {
            class,
            len,
            syn_key,
        }
    }
}

enum Net<'h> {
    V4(&'h Ipv4Header),
    V6(&'h Ipv6Header),
}

fn write_l4(w: &mut &mut [u8], l4: L4, p: &[u8], net: Net<'_>) -> Option<()> {
    match l4 {
        L4::Tcp {
            sport,
            dport,
            seq,
            ack,
            syn,
            rst,
            psh,
            mss,
        } => {
            let mut t = TcpHeader::new(sport, dport, seq, if rst { 0 } else { 64240 });
            t.syn = syn;
            t.rst = rst;
            t.psh = psh;
            if let Some(a) = ack {
                t.ack = true;
                t.acknowledgment_number = a;
            }
            if mss {
                t.set_options(&[TcpOptionElement::MaximumSegmentSize(1460)])
                    .ok()?;
            }
            t.checksum = match net {
                Net::V4(ip) => t.calc_checksum_ipv4(ip, p).ok()?,
                Net::V6(ip) => t.calc_checksum_ipv6(ip, p).ok()?,
            };
            t.write(w).ok()?;
        }
        L4::Udp { sport, dport } => {
            let u = match net {
                Net::V4(ip) => UdpHeader::with_ipv4_checksum(sport, dport, ip, p).ok()?,
                Net::V6(ip) => UdpHeader::with_ipv6_checksum(sport, dport, ip, p).ok()?,
            };
            u.write(w).ok()?;
        }
        L4::Echo { id, seq } => match net {
            Net::V4(_) => {
                let h = Icmpv4Header::with_checksum(
                    Icmpv4Type::EchoRequest(IcmpEchoHeader { id, seq }),
                    p,
                );
                h.write(w).ok()?;
            }
            Net::V6(ip) => {
                let h = Icmpv6Header::with_checksum(
                    Icmpv6Type::EchoRequest(IcmpEchoHeader { id, seq }),
                    ip.source,
                    ip.destination,
                    p,
                )
                .ok()?;
                h.write(w).ok()?;
            }
        },
    }
    w.write_all(p).ok()
}

/// Ethernet (+ VLAN) + IP + `l4` header bytes.
fn header_len(vlan: bool, v6: bool, l4: usize) -> usize {
    14 + if vlan { 4 } else { 0 } + if v6 { 40 } else { 20 } + l4
}

#[cfg(test)]
mod tests {
    use super::super::rx::{classify, FlowTable, Port};
    use super::*;
    use std::path::Path;

    fn profile(text: &str) -> Profile {
        Profile::parse(text, "t", Path::new("t.toml")).unwrap()
    }

    /// Every class builds a valid frame (etherparse reads it back with the right checksums)
    /// whose class the receive side recovers: from the tag, or the SYN side table.
    #[test]
    fn every_class_round_trips_through_classify() {
        for extra in ["", "vlan = 42\n", "ipv6 = 1.0\n", "sizes = \"imix\"\n"] {
            let p = profile(&format!(
                "{extra}[weights]\nlegit-tcp=1\nsyn-flood=1\nack-flood=1\nudp-reflection=1\n\
                 icmp-flood=1\nsignature-hit=1\nsignature-miss=1\n"
            ));
            let mut g = Gen::new(&p, 2, 9);
            let mut table = FlowTable::new(1 << 10);
            let mut buf = vec![0u8; MAX_FRAME];
            let mut seen = std::collections::BTreeSet::new();
            for i in 0..400u64 {
                let b = g.next(1000 + i, &mut buf);
                assert!(b.len >= 60 && b.len <= MAX_FRAME, "{b:?}");
                if let Some((a, port)) = b.syn_key {
                    table.insert(a, port, b.class, 1000 + i);
                }
                let f = &buf[..b.len];
                etherparse::SlicedPacket::from_ethernet(f).expect("valid frame");
                let a = classify(f, Port::Inside, &table);
                assert_eq!(a.class, Some(b.class), "{extra} {b:?}");
                if b.class != Class::AckFlood {
                    assert_eq!(a.tsc, Some(1000 + i), "{b:?}");
                }
                seen.insert(b.class);
            }
            assert_eq!(seen.len(), 7, "{extra}: {seen:?}");
        }
    }

    #[test]
    fn reflection_uses_the_services_ports_and_sizes() {
        let p = profile("[weights]\nudp-reflection=1\n");
        let mut g = Gen::new(&p, 0, 1);
        let mut buf = vec![0u8; MAX_FRAME];
        let mut ports = std::collections::BTreeMap::new();
        for _ in 0..200 {
            let b = g.next(1, &mut buf);
            let s = etherparse::SlicedPacket::from_ethernet(&buf[..b.len]).unwrap();
            let Some(etherparse::TransportSlice::Udp(u)) = s.transport else {
                panic!("not UDP")
            };
            ports.insert(u.source_port(), b.len);
        }
        let want: std::collections::BTreeMap<u16, usize> =
            REFLECTORS.iter().map(|(p, s, _)| (*p, *s)).collect();
        assert_eq!(ports, want);
    }

    /// `replay` frames come from the capture, in order, untouched (their fate is unknown, so
    /// they carry no tag and come back untagged).
    #[test]
    fn replay_sends_the_capture_in_order() {
        let dir = std::env::temp_dir().join(format!("scrubgen-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let frames = crate::gen::mix(crate::gen::Side::Outside, 5, 3);
        crate::pcap::write(&dir.join("c.pcap"), &frames).unwrap();
        std::fs::write(
            dir.join("p.toml"),
            "[weights]\nreplay = 1\n[replay]\npcap = \"c.pcap\"\n",
        )
        .unwrap();
        let p = Profile::load(&dir.join("p.toml")).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let mut g = Gen::new(&p, 0, 1);
        let mut buf = vec![0u8; MAX_FRAME];
        for i in 0..10 {
            let b = g.next(1, &mut buf);
            assert_eq!(b.class, Class::Replay);
            assert_eq!(&buf[..b.len], &frames[i % 5].data[..]);
        }
    }

    /// The client's answer to a cookie SYN-ACK: a RST with seq = the SYN-ACK's ack, on the
    /// same flow, and the SYN again.
    #[test]
    fn challenge_answer_follows_auth_mode() {
        let p = profile("[weights]\nlegit-tcp=1\n");
        let mut g = Gen::new(&p, 0, 1);
        let synack = TcpSeen {
            src: Addr::V4([198, 51, 100, 7]),
            dst: Addr::V4([100, 64, 0, 9]),
            sport: 443,
            dport: 40000,
            seq: 77,
            ack: 0xc00c_1e00,
            flags: TcpSeen::SYN | TcpSeen::ACK,
        };
        let (mut a, mut b) = (vec![0u8; MAX_FRAME], vec![0u8; MAX_FRAME]);
        let (r, s) = g.answer_challenge(&synack, 5, &mut a, &mut b);
        let table = FlowTable::new(16);
        let rst = classify(&a[..r.len], Port::Inside, &table);
        assert_eq!(rst.class, Some(Class::LegitRst));
        let t = rst.tcp.unwrap();
        assert_eq!(t.seq, 0xc00c_1e00);
        assert_eq!(t.flags, TcpSeen::RST);
        assert_eq!(
            (t.src, t.dst, t.sport, t.dport),
            (synack.dst, synack.src, 40000, 443)
        );
        assert_eq!(s.class, Class::LegitSynAgain);
        assert_eq!(s.syn_key, Some((synack.dst, 40000)));
    }
}
