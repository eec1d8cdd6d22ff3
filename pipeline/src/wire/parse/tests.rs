//! Golden packets, one input per `Malformed` variant, properties, and the shared captures.

use super::*;
use crate::wire::ipv6::next_header as nh;
use etherparse::{PacketBuilder, TcpOptionElement as Opt, VlanId};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const V4_SRC: [u8; 4] = [192, 0, 2, 1];
const V4_DST: [u8; 4] = [198, 51, 100, 7];
const V6_SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

// ---------------------------------------------------------------- hand-built layers

fn eth_tagged(tags: &[(u16, u16)], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&MAC_B);
    v.extend_from_slice(&MAC_A);
    for &(tpid, tci) in tags {
        v.extend_from_slice(&tpid.to_be_bytes());
        v.extend_from_slice(&tci.to_be_bytes());
    }
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(l3);
    v
}

fn eth(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    eth_tagged(&[], ethertype, l3)
}

/// IPv4 header with `options`, flags/fragment word `frag`, and a correct checksum.
fn ipv4(proto: u8, options: &[u8], frag: u16, l4: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let hl = 20 + options.len();
    let total = (hl + l4.len()) as u16;
    let mut v = vec![0x40 | (hl / 4) as u8, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0xbe, 0xef]);
    v.extend_from_slice(&frag.to_be_bytes());
    v.extend_from_slice(&[64, proto, 0, 0]);
    v.extend_from_slice(&V4_SRC);
    v.extend_from_slice(&V4_DST);
    v.extend_from_slice(options);
    v.extend_from_slice(l4);
    ipv4::Packet::new_unchecked(&mut v[..]).fill_checksum();
    v
}

fn ipv6(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&V6_SRC);
    v.extend_from_slice(&V6_DST);
    v.extend_from_slice(rest);
    v
}

fn tcp(flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let doff = ((20 + options.len()) / 4) as u8;
    let mut v = vec![
        0x30,
        0x39,
        0x00,
        0x50,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        doff << 4,
        flags,
        0xff,
        0xff,
    ];
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(options);
    v.extend_from_slice(payload);
    v
}

fn udp(payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut v = vec![0xcf, 0x08, 0x00, 0x35];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

/// A generic extension header of `len` bytes (a multiple of 8) naming `next`.
fn ext(next: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    v[0] = next;
    v[1] = (len / 8 - 1) as u8;
    if len >= 8 {
        // PadN filling the rest, so the options area is well formed.
        v[2] = 1;
        v[3] = (len - 4) as u8;
    }
    v
}

fn frag6(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let word = offset << 3 | u16::from(more);
    let mut v = vec![next, 0];
    v.extend_from_slice(&word.to_be_bytes());
    v.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    v
}

fn ip_of(h: &Headers) -> IpHeaders {
    *h.ip().expect("IP headers")
}

fn etherparse_frame<B>(write: B, payload: &[u8]) -> Vec<u8>
where
    B: FnOnce(&mut Vec<u8>, &[u8]),
{
    let mut v = Vec::new();
    write(&mut v, payload);
    v
}

// ---------------------------------------------------------------- golden packets

#[test]
fn tcp_syn_with_all_options_in_a_vlan() {
    let options = [
        Opt::MaximumSegmentSize(1460),
        Opt::Noop,
        Opt::WindowScale(7),
        Opt::SelectiveAcknowledgementPermitted,
        Opt::Timestamp(0x0102_0304, 0x0506_0708),
        Opt::SelectiveAcknowledgement((100, 200), [None, None, None]),
    ];
    let frame = etherparse_frame(
        |v, p| {
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .single_vlan(VlanId::try_new(100).unwrap())
                .ipv4(V4_SRC, V4_DST, 61)
                .tcp(40000, 25565, 0xdead_beef, 0)
                .syn()
                .ece()
                .cwr()
                .options(&options)
                .unwrap()
                .write(v, p)
                .unwrap()
        },
        b"",
    );
    let h = parse(&frame).unwrap();
    let tcp_hl = 20 + 32; // 4 + 4 (NOP + WS) + 2 + 10 + 10, padded to a word multiple
    assert_eq!(
        h,
        Headers {
            vlans: [100, 0],
            vlan_count: 1,
            ethertype: 0x0800,
            l3_off: 18,
            net: Net::Ip(IpHeaders {
                version: IpVersion::V4,
                src: IpAddr::V4(Ipv4Addr::from(V4_SRC)),
                dst: IpAddr::V4(Ipv4Addr::from(V4_DST)),
                proto: 6,
                ttl: 61,
                frag: Frag::None,
                ip_len: (20 + tcp_hl) as u16,
                l4_off: 38,
                transport: Transport::Tcp(TcpInfo {
                    sport: 40000,
                    dport: 25565,
                    seq: 0xdead_beef,
                    ack: 0,
                    flags: TcpInfo::SYN | TcpInfo::ECE | TcpInfo::CWR,
                    window: 0,
                    options: crate::TcpOptions {
                        mss: Some(1460),
                        window_scale: Some(7),
                        sack_permitted: true,
                        timestamps: Some((0x0102_0304, 0x0506_0708)),
                    },
                }),
                payload_off: (38 + tcp_hl) as u16,
                payload_len: 0,
            }),
        }
    );
}

#[test]
fn qinq_udp_with_standard_and_legacy_tpids() {
    let frame = etherparse_frame(
        |v, p| {
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(4094).unwrap())
                .ipv4(V4_SRC, V4_DST, 64)
                .udp(53, 33000)
                .write(v, p)
                .unwrap()
        },
        b"answer",
    );
    let h = parse(&frame).unwrap();
    assert_eq!(
        (h.vlans, h.vlan_count, h.ethertype, h.l3_off),
        ([10, 4094], 2, 0x0800, 22)
    );
    let ip = ip_of(&h);
    assert_eq!(
        ip.transport,
        Transport::Udp {
            sport: 53,
            dport: 33000
        }
    );
    assert_eq!((ip.l4_off, ip.payload_off, ip.payload_len), (42, 50, 6));

    // 0x9100 outer with priority bits set, 0x8100 inner: only the 12-bit ids are kept.
    let l3 = ipv4(17, &[], 0, &udp(b"x"));
    let frame = eth_tagged(&[(0x9100, 0xe007), (0x8100, 0x1fff)], 0x0800, &l3);
    let h = parse(&frame).unwrap();
    assert_eq!((h.vlans, h.vlan_count, h.l3_off), ([7, 0xfff], 2, 22));
}

#[test]
fn ipv4_with_options_and_ethernet_padding() {
    // NOP, then a record-route option with room for one address, pointer at its start.
    let options = [1, 7, 7, 4, 0, 0, 0, 0];
    let l3 = ipv4(17, &options, 0, &udp(b"hi"));
    let mut frame = eth(0x0800, &l3);
    frame.resize(60, 0); // short frames are padded to the Ethernet minimum
    let ip = ip_of(&parse(&frame).unwrap());
    assert_eq!((ip.ip_len, ip.l4_off), (28 + 10, 14 + 28));
    assert_eq!((ip.payload_off, ip.payload_len), (14 + 28 + 8, 2));
    assert_eq!(
        ip.transport,
        Transport::Udp {
            sport: 53000,
            dport: 53
        }
    );
}

#[test]
fn ipv4_first_and_non_first_fragments() {
    // First fragment of a 1208-byte UDP datagram: 8-byte header plus 96 bytes here.
    let mut first_udp = udp(&[0xaa; 96]);
    first_udp[4..6].copy_from_slice(&1208u16.to_be_bytes());
    let frame = eth(0x0800, &ipv4(17, &[], 0x2000, &first_udp));
    let ip = ip_of(&parse(&frame).unwrap());
    assert_eq!(ip.frag, Frag::First);
    assert_eq!(
        ip.transport,
        Transport::Udp {
            sport: 53000,
            dport: 53
        }
    );
    assert_eq!((ip.payload_off, ip.payload_len), (14 + 20 + 8, 96));

    // Last fragment at offset 104: no transport header, the data is the payload.
    let frame = eth(0x0800, &ipv4(17, &[], 104 / 8, &[0xbb; 1104]));
    let ip = ip_of(&parse(&frame).unwrap());
    assert_eq!(
        (ip.frag, ip.transport, ip.proto),
        (Frag::Later, Transport::None, 17)
    );
    assert_eq!((ip.l4_off, ip.payload_off, ip.payload_len), (34, 34, 1104));

    // A middle fragment (offset and MF) is also non-first.
    let frame = eth(0x0800, &ipv4(6, &[], 0x2000 | 2, &[0; 16]));
    assert_eq!(ip_of(&parse(&frame).unwrap()).frag, Frag::Later);
}

#[test]
fn ipv6_extension_chain_with_first_fragment() {
    let mut rest = ext(nh::DEST_OPTS, 8); // hop-by-hop
    rest.extend(ext(nh::ROUTING, 16)); // destination options
    let mut rh = ext(nh::FRAGMENT, 8); // routing type 4 (SRH-like), segments left 0
    rh[2] = 4;
    rh[3] = 0;
    rest.extend(rh);
    rest.extend(frag6(nh::AH, 0, true));
    let mut ah = vec![6, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 9]; // 12-byte AH, no ICV
    rest.append(&mut ah);
    let chain_len = rest.len();
    rest.extend(tcp(TcpInfo::ACK | TcpInfo::PSH, &[1, 1, 1, 0], &[0x55; 12]));
    let frame = eth(0x86dd, &ipv6(nh::HOP_BY_HOP, &rest));
    let h = parse(&frame).unwrap();
    let ip = ip_of(&h);
    let l4_off = 14 + 40 + chain_len;
    assert_eq!(ip.version, IpVersion::V6);
    assert_eq!(ip.src, IpAddr::V6(Ipv6Addr::from(V6_SRC)));
    assert_eq!(ip.dst, IpAddr::V6(Ipv6Addr::from(V6_DST)));
    assert_eq!((ip.proto, ip.ttl, ip.frag), (6, 64, Frag::First));
    assert_eq!(ip.ip_len as usize, 40 + rest.len());
    assert_eq!(ip.l4_off as usize, l4_off);
    assert_eq!((ip.payload_off as usize, ip.payload_len), (l4_off + 24, 12));
    match ip.transport {
        Transport::Tcp(t) => assert_eq!((t.sport, t.dport, t.flags), (12345, 80, 0x18)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ipv6_non_first_and_atomic_fragments() {
    let mut rest = frag6(nh::DEST_OPTS, 1448 / 8, false);
    rest.extend_from_slice(&[0x77; 40]);
    let ip = ip_of(&parse(&eth(0x86dd, &ipv6(nh::FRAGMENT, &rest))).unwrap());
    assert_eq!((ip.frag, ip.transport), (Frag::Later, Transport::None));
    // The fragment header's next header is reported; what follows is not parsed.
    assert_eq!(ip.proto, nh::DEST_OPTS);
    assert_eq!((ip.l4_off, ip.payload_off, ip.payload_len), (62, 62, 40));

    // Atomic fragment (offset 0, no MF, RFC 6946): a whole datagram.
    let mut rest = frag6(17, 0, false);
    rest.extend(udp(b"abc"));
    let ip = ip_of(&parse(&eth(0x86dd, &ipv6(nh::FRAGMENT, &rest))).unwrap());
    assert_eq!(ip.frag, Frag::None);
    assert_eq!(
        ip.transport,
        Transport::Udp {
            sport: 53000,
            dport: 53
        }
    );
    assert_eq!((ip.payload_off, ip.payload_len), (14 + 48 + 8, 3));
}

#[test]
fn udp_over_ipv6() {
    let frame = etherparse_frame(
        |v, p| {
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv6(V6_SRC, V6_DST, 255)
                .udp(123, 123)
                .write(v, p)
                .unwrap()
        },
        &[0x17; 48],
    );
    let h = parse(&frame).unwrap();
    let ip = ip_of(&h);
    assert_eq!(
        (h.ethertype, h.l3_off, ip.ttl, ip.proto),
        (0x86dd, 14, 255, 17)
    );
    assert_eq!(
        ip.transport,
        Transport::Udp {
            sport: 123,
            dport: 123
        }
    );
    assert_eq!(
        (ip.ip_len, ip.l4_off, ip.payload_off, ip.payload_len),
        (96, 54, 62, 48)
    );
}

#[test]
fn icmp_and_icmpv6_echo() {
    let frame = etherparse_frame(
        |v, p| {
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv4(V4_SRC, V4_DST, 64)
                .icmpv4_echo_request(7, 1)
                .write(v, p)
                .unwrap()
        },
        b"abcdefgh",
    );
    let ip = ip_of(&parse(&frame).unwrap());
    assert_eq!(ip.transport, Transport::Icmp { ty: 8, code: 0 });
    assert_eq!((ip.payload_off, ip.payload_len), (42, 8));

    let frame = etherparse_frame(
        |v, p| {
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv6(V6_SRC, V6_DST, 64)
                .icmpv6_echo_request(7, 1)
                .write(v, p)
                .unwrap()
        },
        b"abcd",
    );
    let ip = ip_of(&parse(&frame).unwrap());
    assert_eq!(ip.transport, Transport::Icmpv6 { ty: 128, code: 0 });
    assert_eq!((ip.proto, ip.payload_off, ip.payload_len), (58, 62, 4));

    // ICMP numbers under the other IP version are not looked into.
    let frame = eth(0x86dd, &ipv6(1, &[0; 8]));
    assert_eq!(ip_of(&parse(&frame).unwrap()).transport, Transport::Other);
}

#[test]
fn arp_and_other_ethertypes() {
    let arp = etherparse::ArpEthIpv4Packet {
        operation: etherparse::ArpOperation::REQUEST,
        sender_mac: MAC_A,
        sender_ipv4: V4_SRC,
        target_mac: [0; 6],
        target_ipv4: V4_DST,
    };
    let frame = etherparse_frame(
        |v, p| {
            PacketBuilder::ethernet2(MAC_A, [0xff; 6])
                .single_vlan(VlanId::try_new(3).unwrap())
                .arp(arp.into())
                .write(v)
                .unwrap();
            v.extend_from_slice(p);
        },
        b"",
    );
    let h = parse(&frame).unwrap();
    assert_eq!(
        (h.net, h.ethertype, h.l3_off, h.vlans[0]),
        (Net::Arp, 0x0806, 18, 3)
    );
    let v = crate::wire::arp::Packet::new_checked(&frame[18..]).unwrap();
    assert_eq!(v.target_proto(), &V4_DST);

    // LLDP and an 802.3 length field are both "other".
    for et in [0x88cc, 0x0040] {
        let h = parse(&eth(et, &[0; 46])).unwrap();
        assert_eq!((h.net, h.ethertype, h.l3_off), (Net::Other, et, 14));
    }
    // An IP protocol the parser does not look into: payload is the whole segment.
    let ip = ip_of(&parse(&eth(0x0800, &ipv4(47, &[], 0, &[0; 12]))).unwrap());
    assert_eq!(
        (ip.transport, ip.payload_off, ip.payload_len),
        (Transport::Other, 34, 12)
    );
}

// ---------------------------------------------------------------- one input per variant

/// The smallest honest example of each way a frame can be malformed.
fn malformed_example(m: Malformed) -> Vec<u8> {
    use Malformed::*;
    let ok_v4 = |proto, l4: &[u8]| eth(0x0800, &ipv4(proto, &[], 0, l4));
    let ok_v6 = |next, rest: &[u8]| eth(0x86dd, &ipv6(next, rest));
    match m {
        EthernetTruncated => eth(0x0800, &[])[..13].to_vec(),
        VlanTruncated => {
            let mut f = eth(0x8100, &[]);
            f.extend_from_slice(&[0, 1, 0x08]);
            f
        }
        TooManyVlans => eth_tagged(&[(0x88a8, 1), (0x8100, 2), (0x8100, 3)], 0x0800, &[0; 40]),
        ArpTruncated => eth(0x0806, &[0, 1, 8, 0, 6, 4, 0, 1, 0, 0, 0]),
        Ipv4Truncated => eth(0x0800, &ipv4(17, &[], 0, &udp(b""))[..19]),
        Ipv4BadVersion => eth(0x0800, &ipv6(59, &[])),
        Ipv4BadHeaderLength => {
            let mut l3 = ipv4(17, &[], 0, &udp(b""));
            l3[0] = 0x44;
            eth(0x0800, &l3)
        }
        Ipv4BadTotalLength => {
            let mut l3 = ipv4(17, &[], 0, &udp(b""));
            l3[3] += 1; // one byte more than the frame holds
            ipv4::Packet::new_unchecked(&mut l3[..]).fill_checksum();
            eth(0x0800, &l3)
        }
        Ipv4BadChecksum => {
            let mut l3 = ipv4(17, &[], 0, &udp(b""));
            l3[10] ^= 0x01;
            eth(0x0800, &l3)
        }
        Ipv4BadOptions => eth(0x0800, &ipv4(17, &[148, 3, 0, 0], 0, &udp(b""))),
        Ipv6Truncated => eth(0x86dd, &ipv6(59, &[])[..39]),
        Ipv6BadVersion => {
            let mut l3 = ipv6(59, &[]);
            l3[0] = 0x40;
            eth(0x86dd, &l3)
        }
        Ipv6BadPayloadLength => {
            let mut f = ok_v6(17, &udp(b"abc"));
            f.truncate(f.len() - 1);
            f
        }
        Ipv6ExtTruncated => {
            let mut hbh = ext(17, 16);
            hbh.truncate(8);
            ok_v6(nh::HOP_BY_HOP, &hbh)
        }
        Ipv6TooManyExtHeaders => {
            let mut rest = Vec::new();
            for _ in 0..9 {
                rest.extend(ext(nh::DEST_OPTS, 8));
            }
            let last = rest.len() - 8;
            rest[last] = 59;
            ok_v6(nh::DEST_OPTS, &rest)
        }
        FragmentBad => {
            // More fragments follow, but this one's data is not a multiple of 8 bytes.
            eth(0x0800, &ipv4(17, &[], 0x2000, &[0; 12]))
        }
        TcpTruncated => ok_v4(6, &tcp(0x02, &[], b"")[..19]),
        TcpBadDataOffset => {
            let mut t = tcp(0x02, &[], b"");
            t[12] = 0x40;
            ok_v4(6, &t)
        }
        TcpBadOptions => ok_v4(6, &tcp(0x02, &[2, 3, 5, 0], b"")),
        UdpTruncated => ok_v4(17, &udp(b"")[..7]),
        UdpBadLength => {
            let mut u = udp(b"abcd");
            u[5] = 7;
            ok_v4(17, &u)
        }
        IcmpTruncated => ok_v4(1, &[8, 0, 0, 0, 0, 1, 0]),
        Icmpv6Truncated => ok_v6(58, &[128, 0, 0, 0, 0, 1, 0]),
        Ipv6BadExtHeader => {
            let mut rest = ext(nh::HOP_BY_HOP, 8);
            rest.extend(ext(59, 8));
            ok_v6(nh::DEST_OPTS, &rest)
        }
    }
}

#[test]
fn every_malformed_variant_has_an_input_that_yields_exactly_it() {
    for m in Malformed::ALL {
        let frame = malformed_example(m);
        assert_eq!(parse(&frame), Err(m), "{m:?}: {frame:02x?}");
    }
}

#[test]
fn fragment_bad_shapes() {
    let v4 = |proto, frag, l4: &[u8]| parse(&eth(0x0800, &ipv4(proto, &[], frag, l4)));
    let bad = Err(Malformed::FragmentBad);
    // Tiny first fragment: TCP header not complete (RFC 1858).
    assert_eq!(v4(6, 0x2000, &tcp(2, &[], b"")[..16]), bad);
    // First fragment cut inside the TCP options.
    assert_eq!(
        v4(6, 0x2000, &tcp(2, &[1, 1, 1, 1, 1, 1, 1, 1], b"")[..24]),
        bad
    );
    // TCP at offset 8: overwrites the flags of the first fragment (RFC 1858).
    assert_eq!(v4(6, 1, &[0; 8]), bad);
    assert!(v4(17, 1, &[0; 8]).is_ok());
    // Past the 65535-byte datagram (ping of death).
    assert_eq!(v4(1, 0x1fff, &[0; 16]), bad);
    // Empty middle fragment.
    assert_eq!(v4(17, 0x2000 | 3, &[]), bad);
    // UDP first fragment whose length field is below what it carries.
    assert_eq!(
        v4(
            17,
            0x2000,
            &udp(&[0; 8])[..16]
                .iter()
                .enumerate()
                .map(|(i, &b)| if i == 5 { 12 } else { b })
                .collect::<Vec<_>>()
        ),
        Err(Malformed::UdpBadLength)
    );
    // IPv6: a second fragment header, and a first fragment whose chain ends in another fragment.
    let mut two = frag6(nh::FRAGMENT, 0, true);
    two.extend(frag6(17, 0, true));
    two.extend_from_slice(&[0; 16]);
    assert_eq!(parse(&eth(0x86dd, &ipv6(nh::FRAGMENT, &two))), bad);
    let mut cut = frag6(nh::DEST_OPTS, 0, true);
    cut.extend(&ext(17, 24)[..8]);
    assert_eq!(parse(&eth(0x86dd, &ipv6(nh::FRAGMENT, &cut))), bad);
}

#[test]
fn ipv6_bad_extension_headers() {
    let v6 = |next, rest: &[u8]| parse(&eth(0x86dd, &ipv6(next, rest)));
    let bad = Err(Malformed::Ipv6BadExtHeader);
    // Type 0 routing header still routing (RFC 5095); with segments left 0 it is ignored.
    let mut rh0 = ext(59, 24);
    rh0[2] = 0;
    rh0[3] = 1;
    assert_eq!(v6(nh::ROUTING, &rh0), bad);
    rh0[3] = 0;
    assert!(v6(nh::ROUTING, &rh0).is_ok());
    // AH with a payload length below its 12-byte fixed part.
    assert_eq!(v6(nh::AH, &[59, 0, 0, 0, 0, 0, 0, 0]), bad);
    // Exactly the maximum number of headers is fine.
    let mut rest = Vec::new();
    for _ in 0..crate::wire::ipv6::MAX_EXT_HEADERS {
        rest.extend(ext(nh::DEST_OPTS, 8));
    }
    let last = rest.len() - 8;
    rest[last] = 59;
    assert!(v6(nh::DEST_OPTS, &rest).is_ok());
}

// ---------------------------------------------------------------- properties

#[derive(Debug, Clone)]
enum L4 {
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
        mss: Option<u16>,
        ws: Option<u8>,
        sackp: bool,
        ts: Option<(u32, u32)>,
    },
    Udp,
    Icmp {
        id: u16,
        seq: u16,
    },
}

#[derive(Debug, Clone)]
struct Spec {
    vlans: Vec<u16>,
    v6: bool,
    ttl: u8,
    sport: u16,
    dport: u16,
    l4: L4,
    payload: Vec<u8>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let tcp = (
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(0u8..=14),
        any::<bool>(),
        proptest::option::of((any::<u32>(), any::<u32>())),
    )
        .prop_map(|(flags, seq, ack, window, mss, ws, sackp, ts)| L4::Tcp {
            flags,
            seq,
            ack,
            window,
            mss,
            ws,
            sackp,
            ts,
        });
    let l4 = prop_oneof![
        tcp,
        Just(L4::Udp),
        (any::<u16>(), any::<u16>()).prop_map(|(id, seq)| L4::Icmp { id, seq }),
    ];
    (
        proptest::collection::vec(0u16..4096, 0..=2),
        any::<bool>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        l4,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(vlans, v6, ttl, sport, dport, l4, payload)| Spec {
            vlans,
            v6,
            ttl,
            sport,
            dport,
            l4,
            payload,
        })
}

/// Build `s` with etherparse (padded to the 60-byte Ethernet minimum) and the Headers it must parse to.
fn build(s: &Spec) -> (Vec<u8>, Headers) {
    let vid = |i: usize| VlanId::try_new(s.vlans[i]).unwrap();
    let e = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let ipstep = match (s.vlans.len(), s.v6) {
        (0, false) => e.ipv4(V4_SRC, V4_DST, s.ttl),
        (0, true) => e.ipv6(V6_SRC, V6_DST, s.ttl),
        (1, false) => e.single_vlan(vid(0)).ipv4(V4_SRC, V4_DST, s.ttl),
        (1, true) => e.single_vlan(vid(0)).ipv6(V6_SRC, V6_DST, s.ttl),
        (_, false) => e.double_vlan(vid(0), vid(1)).ipv4(V4_SRC, V4_DST, s.ttl),
        (_, true) => e.double_vlan(vid(0), vid(1)).ipv6(V6_SRC, V6_DST, s.ttl),
    };
    let mut frame = Vec::new();
    let (transport, l4_hdr) = match &s.l4 {
        L4::Tcp {
            flags,
            seq,
            ack,
            window,
            mss,
            ws,
            sackp,
            ts,
        } => {
            let mut opts = Vec::new();
            if let Some(m) = mss {
                opts.push(Opt::MaximumSegmentSize(*m));
            }
            if let Some(w) = ws {
                opts.push(Opt::WindowScale(*w));
            }
            if *sackp {
                opts.push(Opt::SelectiveAcknowledgementPermitted);
            }
            if let Some((a, b)) = ts {
                opts.push(Opt::Timestamp(*a, *b));
            }
            let mut b = ipstep.tcp(s.sport, s.dport, *seq, *window);
            if flags & TcpInfo::FIN != 0 {
                b = b.fin();
            }
            if flags & TcpInfo::SYN != 0 {
                b = b.syn();
            }
            if flags & TcpInfo::RST != 0 {
                b = b.rst();
            }
            if flags & TcpInfo::PSH != 0 {
                b = b.psh();
            }
            if flags & TcpInfo::ECE != 0 {
                b = b.ece();
            }
            if flags & TcpInfo::CWR != 0 {
                b = b.cwr();
            }
            if flags & TcpInfo::ACK != 0 {
                b = b.ack(*ack);
            }
            if flags & TcpInfo::URG != 0 {
                b = b.urg(0);
            }
            let b = b.options(&opts).unwrap();
            b.write(&mut frame, &s.payload).unwrap();
            let tcp_hl = 20 + opts_len(&opts).div_ceil(4) * 4;
            let info = TcpInfo {
                sport: s.sport,
                dport: s.dport,
                seq: *seq,
                ack: if flags & TcpInfo::ACK != 0 { *ack } else { 0 },
                flags: *flags,
                window: *window,
                options: crate::TcpOptions {
                    mss: *mss,
                    window_scale: *ws,
                    sack_permitted: *sackp,
                    timestamps: *ts,
                },
            };
            (Transport::Tcp(info), tcp_hl)
        }
        L4::Udp => {
            ipstep
                .udp(s.sport, s.dport)
                .write(&mut frame, &s.payload)
                .unwrap();
            (
                Transport::Udp {
                    sport: s.sport,
                    dport: s.dport,
                },
                8,
            )
        }
        L4::Icmp { id, seq } => {
            if s.v6 {
                ipstep
                    .icmpv6_echo_request(*id, *seq)
                    .write(&mut frame, &s.payload)
                    .unwrap();
                (Transport::Icmpv6 { ty: 128, code: 0 }, 8)
            } else {
                ipstep
                    .icmpv4_echo_request(*id, *seq)
                    .write(&mut frame, &s.payload)
                    .unwrap();
                (Transport::Icmp { ty: 8, code: 0 }, 8)
            }
        }
    };
    let l3_off = 14 + 4 * s.vlans.len();
    let ip_hl = if s.v6 { 40 } else { 20 };
    let ip_len = frame.len() - l3_off;
    frame.resize(frame.len().max(60), 0);
    let l4_off = l3_off + ip_hl;
    let proto = match (&s.l4, s.v6) {
        (L4::Tcp { .. }, _) => 6,
        (L4::Udp, _) => 17,
        (L4::Icmp { .. }, false) => 1,
        (L4::Icmp { .. }, true) => 58,
    };
    let mut vlans = [0u16; 2];
    for (i, v) in s.vlans.iter().enumerate() {
        vlans[i] = *v;
    }
    let (src, dst) = if s.v6 {
        (IpAddr::V6(V6_SRC.into()), IpAddr::V6(V6_DST.into()))
    } else {
        (IpAddr::V4(V4_SRC.into()), IpAddr::V4(V4_DST.into()))
    };
    let h = Headers {
        vlans,
        vlan_count: s.vlans.len() as u8,
        ethertype: if s.v6 { 0x86dd } else { 0x0800 },
        l3_off: l3_off as u16,
        net: Net::Ip(IpHeaders {
            version: if s.v6 { IpVersion::V6 } else { IpVersion::V4 },
            src,
            dst,
            proto,
            ttl: s.ttl,
            frag: Frag::None,
            ip_len: ip_len as u16,
            l4_off: l4_off as u16,
            transport,
            payload_off: (l4_off + l4_hdr) as u16,
            payload_len: s.payload.len() as u16,
        }),
    };
    (frame, h)
}

fn opts_len(opts: &[Opt]) -> usize {
    opts.iter()
        .map(|o| match o {
            Opt::Noop => 1,
            Opt::MaximumSegmentSize(_) => 4,
            Opt::WindowScale(_) => 3,
            Opt::SelectiveAcknowledgementPermitted => 2,
            Opt::SelectiveAcknowledgement(_, rest) => 10 + 8 * rest.iter().flatten().count(),
            Opt::Timestamp(..) => 10,
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
    }

    /// Arbitrary bytes behind a plausible prefix reach the deeper layers far more often.
    #[test]
    fn never_panics_behind_plausible_prefixes(
        prefix in prop_oneof![
            Just(vec![0x08u8, 0x00, 0x45]),
            Just(vec![0x08, 0x00, 0x46]),
            Just(vec![0x86, 0xdd, 0x60]),
            Just(vec![0x81, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60]),
            Just(vec![0x08, 0x06]),
        ],
        rest in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut f = vec![0u8; 12];
        f.extend(prefix);
        f.extend(rest);
        let _ = parse(&f);
    }

    #[test]
    fn valid_packets_parse_to_what_was_built(s in spec()) {
        let (frame, want) = build(&s);
        prop_assert_eq!(parse(&frame), Ok(want));
    }

    /// Cutting a valid frame anywhere inside its IP datagram must be reported, never accepted
    /// with offsets past the end; cutting only padding changes nothing.
    #[test]
    fn truncated_valid_packets_are_rejected(s in spec(), cut in any::<prop::sample::Index>()) {
        let (frame, want) = build(&s);
        let ip = *want.ip().unwrap();
        let end = usize::from(want.l3_off) + usize::from(ip.ip_len);
        let n = cut.index(frame.len());
        let got = parse(&frame[..n]);
        if n >= end {
            prop_assert_eq!(got, Ok(want));
        } else {
            prop_assert!(got.is_err(), "cut at {} of {} parsed: {:?}", n, end, got);
        }
    }

    /// The fast path for plain Ethernet/IPv4/TCP-or-UDP frames answers exactly as the general
    /// walk does, on valid frames, on frames with flipped bits (which reach both its accepting
    /// and its refusing branches) and on arbitrary bytes behind an IPv4 prefix.
    #[test]
    fn fast_path_agrees_with_the_general_walk(
        s in spec(),
        flips in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
        bits in proptest::collection::vec(0u8..8, 3),
        rest in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let (mut frame, _) = build(&s);
        prop_assert_eq!(parse(&frame), super::parse_general(&frame));
        for (i, f) in flips.iter().enumerate() {
            let at = f.index(frame.len());
            frame[at] ^= 1 << bits[i];
        }
        prop_assert_eq!(parse(&frame), super::parse_general(&frame));
        // Flips usually break the header checksum first; mend it so the flipped fields
        // themselves reach both walks.
        if frame.len() >= 34 {
            ipv4::Packet::new_unchecked(&mut frame[14..]).fill_checksum();
        }
        prop_assert_eq!(parse(&frame), super::parse_general(&frame));
        let mut raw = vec![0u8; 12];
        raw.extend([0x08, 0x00, 0x45]);
        raw.extend(rest);
        prop_assert_eq!(parse(&raw), super::parse_general(&raw));
    }

    /// Bit flips may or may not be caught, but must never panic, and whatever parses must keep
    /// its offsets inside the frame.
    #[test]
    fn bit_flipped_valid_packets_stay_in_bounds(
        s in spec(),
        flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
        bits in proptest::collection::vec(0u8..8, 3),
    ) {
        let (mut frame, _) = build(&s);
        for (i, f) in flips.iter().enumerate() {
            let at = f.index(frame.len());
            frame[at] ^= 1 << bits[i];
        }
        if let Ok(h) = parse(&frame) {
            prop_assert!(usize::from(h.l3_off) <= frame.len());
            if let Some(ip) = h.ip() {
                let end = usize::from(h.l3_off) + usize::from(ip.ip_len);
                prop_assert!(end <= frame.len());
                prop_assert!(ip.l4_off <= ip.payload_off);
                prop_assert_eq!(usize::from(ip.payload_off) + usize::from(ip.payload_len) <= end, true);
            }
        }
    }
}

// ---------------------------------------------------------------- real captures

/// A coarse class of a parse result, for tallying captures.
fn class(r: &Result<Headers, Malformed>) -> &'static str {
    let h = match r {
        Err(m) => return m.name(),
        Ok(h) => h,
    };
    let ip = match h.net {
        Net::Arp => return "arp",
        Net::Other => return "other",
        Net::Ip(ip) => ip,
    };
    let first = ip.frag == Frag::First;
    match (ip.version, ip.transport, first) {
        (_, Transport::None, _) => match ip.version {
            IpVersion::V4 => "ipv4/non-first-fragment",
            IpVersion::V6 => "ipv6/non-first-fragment",
        },
        (IpVersion::V4, Transport::Tcp(_), false) => "ipv4/tcp",
        (IpVersion::V4, Transport::Udp { .. }, false) => "ipv4/udp",
        (IpVersion::V4, Transport::Udp { .. }, true) => "ipv4/udp first-fragment",
        (IpVersion::V4, Transport::Icmp { .. }, false) => "ipv4/icmp",
        (IpVersion::V4, Transport::Other, false) => "ipv4/other",
        (IpVersion::V6, Transport::Tcp(_), false) => "ipv6/tcp",
        (IpVersion::V6, Transport::Udp { .. }, false) => "ipv6/udp",
        (IpVersion::V6, Transport::Icmpv6 { .. }, false) => "ipv6/icmpv6",
        _ => "unexpected",
    }
}

/// What each capture parses to, as observed and explained:
/// - every frame of the real traffic parses; the attack captures are one-way floods and
///   reflections whose headers are well formed (attackers want them delivered);
/// - the reflection captures also hold the ICMP errors and stray ARP/TCP a real link carries;
/// - the RRSIG amplification is fragmented: 483 first fragments carry the UDP header, 726
///   later fragments do not, plus the site's ordinary TCP/UDP, a GRE packet and a little IPv6;
/// - http-range-multiflows was captured on a macOS loopback, which never fills in the IPv4
///   header checksum (it is 0 in all 614 packets), so every packet is `ipv4_bad_checksum`;
///   once the checksum is filled in as a NIC would see it, all of them parse (checked below).
const EXPECTED: &[(&str, &[(&str, usize)])] = &[
    (
        "stopddos/amp.TCP.reflection.SYNACK.pcap",
        &[
            ("arp", 4),
            ("ipv4/icmp", 153),
            ("ipv4/non-first-fragment", 1),
            ("ipv4/tcp", 7679),
            ("ipv4/udp", 162),
            ("ipv4/udp first-fragment", 1),
        ],
    ),
    (
        "stopddos/amp.TCP.syn.optionallyACK.optionallysamePort.pcapng",
        &[("ipv4/tcp", 896)],
    ),
    (
        "stopddos/amp.UDP.bacnet.IOT.37810.pcapng",
        &[("ipv4/icmp", 155), ("ipv4/udp", 9462)],
    ),
    ("stopddos/amp.UDP.isakmp.pcap", &[("ipv4/udp", 3984)]),
    (
        "stopddos/amp.UDP.snmp.src161.pcapng",
        &[("ipv4/icmp", 294), ("ipv4/udp", 4079)],
    ),
    (
        "stopddos/amp.dns.RRSIG.fragmented.pcap",
        &[
            ("ipv4/icmp", 7),
            ("ipv4/non-first-fragment", 726),
            ("ipv4/other", 1),
            ("ipv4/tcp", 3093),
            ("ipv4/udp", 87),
            ("ipv4/udp first-fragment", 483),
            ("ipv6/tcp", 11),
            ("ipv6/udp", 4),
        ],
    ),
    (
        "stopddos/pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng",
        &[("ipv4/tcp", 9878)],
    ),
    (
        "stopddos/pkt.TCP.synflood.spoofed.pcap",
        &[("ipv4/tcp", 37841)],
    ),
    (
        "suricata-verify/bug-4376/syn_retransmit_with_ts.pcap",
        &[("ipv4/tcp", 254)],
    ),
    (
        "suricata-verify/http-range-multiflows/input.pcap",
        &[("ipv4_bad_checksum", 614)],
    ),
    (
        "suricata-verify/tcp-session-syn-flood-drop-precedence/input.pcap",
        &[("ipv4/tcp", 200)],
    ),
    ("tcpdump/dns_tcp.pcap", &[("ipv4/tcp", 11)]),
    ("tcpdump/dns_udp.pcap", &[("ipv4/udp", 2)]),
    ("tcpdump/dnssec.pcap", &[("ipv4/udp", 6)]),
    ("tcpdump/edns-opts.pcap", &[("ipv4/udp", 42)]),
    ("tcpdump/ntp-mode7.pcap", &[("ipv4/udp", 8)]),
    ("tcpdump/ntp.pcap", &[("ipv4/udp", 8)]),
];

#[test]
fn shared_captures_parse_as_observed() {
    use crate::testutil;
    use std::collections::BTreeMap;
    let dir = match testutil::pcaps_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped shared_captures_parse_as_observed: {e}");
            return;
        }
    };
    let files = testutil::capture_files(&dir).unwrap();
    let mut seen = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let expected = EXPECTED
            .iter()
            .find(|(name, _)| *name == rel)
            .unwrap_or_else(|| panic!("{rel}: new capture, add its observed counts to EXPECTED"))
            .1;
        seen.push(rel.clone());
        let frames = testutil::read_frames(path).unwrap();
        let mut got = BTreeMap::<&str, usize>::new();
        for f in &frames {
            let r = parse(f);
            *got.entry(class(&r)).or_default() += 1;
            check_capture_invariants(&rel, f, &r);
        }
        let want: BTreeMap<&str, usize> = expected.iter().copied().collect();
        assert_eq!(got, want, "{rel}");
        if rel.ends_with("http-range-multiflows/input.pcap") {
            // With the checksum a real sender would have put there, every packet parses.
            for mut f in frames {
                let l3 = usize::from(parse(&f).map(|h| h.l3_off).unwrap_or(14));
                ipv4::Packet::new_unchecked(&mut f[l3..]).fill_checksum();
                assert_eq!(class(&parse(&f)), "ipv4/tcp", "{rel}");
            }
        }
    }
    for (name, _) in EXPECTED {
        assert!(
            seen.iter().any(|s| s == name),
            "{name} missing from {}",
            dir.display()
        );
    }
}

/// Per-packet facts the capture descriptions promise.
fn check_capture_invariants(rel: &str, frame: &[u8], r: &Result<Headers, Malformed>) {
    let Ok(h) = r else { return };
    if let Some(ip) = h.ip() {
        let end = usize::from(h.l3_off) + usize::from(ip.ip_len);
        assert!(end <= frame.len(), "{rel}");
        assert!(
            usize::from(ip.payload_off) + usize::from(ip.payload_len) <= end,
            "{rel}"
        );
    }
    let tcp = match h.ip().map(|ip| ip.transport) {
        Some(Transport::Tcp(t)) => Some(t),
        _ => None,
    };
    if rel.ends_with("pkt.TCP.synflood.spoofed.pcap") {
        let ip = h.ip().unwrap();
        let t = tcp.unwrap();
        assert_eq!(ip.dst, IpAddr::V4(Ipv4Addr::new(10, 10, 10, 10)));
        assert_eq!((t.dport, t.flags, t.window), (25565, TcpInfo::SYN, 0));
        assert_eq!((h.vlan_count, ip.frag), (0, Frag::None));
    }
    if rel.ends_with("pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng") {
        let t = tcp.unwrap();
        if t.flags & TcpInfo::SYN != 0 {
            assert_eq!(t.flags, TcpInfo::SYN | TcpInfo::ECE | TcpInfo::CWR);
            assert_eq!(t.dport, 30120);
        }
    }
    if rel.ends_with("amp.dns.RRSIG.fragmented.pcap") {
        let ip = h.ip().unwrap();
        match (ip.frag, ip.transport) {
            (Frag::Later, t) => {
                assert_eq!(t, Transport::None);
                assert_eq!(ip.payload_off, ip.l4_off);
                assert_eq!(ip.payload_len, ip.ip_len - (ip.l4_off - h.l3_off));
            }
            (Frag::First, Transport::Udp { sport, .. }) => assert_eq!(sport, 53),
            (Frag::First, t) => panic!("first fragment with {t:?}"),
            (Frag::None, _) => {}
        }
    }
    if rel.ends_with("bug-4376/syn_retransmit_with_ts.pcap") && h.vlan_count == 1 {
        assert_eq!(h.vlans[0], 3136);
    }
}
