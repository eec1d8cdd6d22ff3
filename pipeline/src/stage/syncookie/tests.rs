//! End-to-end tests of the stage on real frames built (and re-parsed) with etherparse, so the
//! bytes we emit are checked by an implementation other than our own.

use super::*;
use crate::{IpVersion, Net};
use etherparse::{
    IpHeaders as EpIp, IpNumber, Ipv4Header, Ipv4Options, Ipv6Extensions, Ipv6FlowLabel,
    Ipv6Header, Ipv6RawExtHeader, LinkExtHeader, LinkHeader, NetHeaders, PacketBuilder,
    PacketHeaders, TcpHeader, TcpOptionElement, TransportHeader, VlanId,
};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const HZ: u64 = 1000; // TSC ticks are milliseconds in these tests.
const PERIOD: u64 = 64 * HZ;
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SECRET: [u8; 16] = *b"0123456789abcdef";
// A TSC far from zero, so "previous window" arithmetic is exercised normally.
const T0: u64 = 1_000_000_000;

fn client(v6: bool) -> IpAddr {
    if v6 {
        "2001:db9::7".parse().unwrap()
    } else {
        "198.51.100.7".parse().unwrap()
    }
}

fn server(v6: bool) -> IpAddr {
    if v6 {
        "2001:db8::20".parse().unwrap()
    } else {
        "10.10.10.20".parse().unwrap()
    }
}

fn unprotected(v6: bool) -> IpAddr {
    if v6 {
        "2001:db9::20".parse().unwrap()
    } else {
        "10.10.11.20".parse().unwrap()
    }
}

fn config() -> SynCookieConfig {
    SynCookieConfig {
        protected: vec![
            "10.10.10.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        rotate_every_s: 0,
        ..SynCookieConfig::default()
    }
}

fn stage_with(f: impl FnOnce(&mut SynCookieConfig)) -> SynCookieStage {
    let mut cfg = config();
    f(&mut cfg);
    SynCookieStage::new(&cfg, SECRET, HZ).unwrap()
}

fn stage() -> SynCookieStage {
    stage_with(|_| {})
}

fn at(tsc: u64) -> Meta {
    Meta {
        port: 0,
        tsc,
        ..Meta::default()
    }
}

const SYN: u8 = TcpInfo::SYN;
const ACK: u8 = TcpInfo::ACK;
const RST: u8 = TcpInfo::RST;
const FIN: u8 = TcpInfo::FIN;

fn tcp_header(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> TcpHeader {
    let mut t = TcpHeader::new(sport, dport, seq, 64240);
    t.fin = flags & FIN != 0;
    t.syn = flags & SYN != 0;
    t.rst = flags & RST != 0;
    t.psh = flags & TcpInfo::PSH != 0;
    t.ack = flags & ACK != 0;
    t.urg = flags & TcpInfo::URG != 0;
    t.acknowledgment_number = ack;
    t
}

/// A Linux-like SYN's options: MSS, SACK permitted, timestamps, NOP, window scale.
fn linux_syn_options() -> Vec<TcpOptionElement> {
    vec![
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(0x1234_5678, 0),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(7),
    ]
}

#[derive(Clone, Default)]
struct Shape {
    vlans: Vec<u16>,
    v4_options: Vec<u8>,
    v6_hop_by_hop: bool,
}

fn frame(
    shape: &Shape,
    src: IpAddr,
    dst: IpAddr,
    smac: [u8; 6],
    dmac: [u8; 6],
    transport: impl FnOnce(
        etherparse::PacketBuilderStep<EpIp>,
    ) -> etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    payload: &[u8],
) -> Vec<u8> {
    let iph = ip_headers(shape, src, dst);
    let eth = PacketBuilder::ethernet2(smac, dmac);
    let vid = |v: u16| VlanId::try_new(v).unwrap();
    let step = match shape.vlans.as_slice() {
        [] => eth.ip(iph),
        [a] => eth.single_vlan(vid(*a)).ip(iph),
        [a, b] => eth.double_vlan(vid(*a), vid(*b)).ip(iph),
        _ => panic!("at most two VLAN tags"),
    };
    let b = transport(step);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

fn ip_headers(shape: &Shape, src: IpAddr, dst: IpAddr) -> EpIp {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ipv4Header::new(0, 57, IpNumber::TCP, s.octets(), d.octets()).unwrap();
            h.identification = 0x4242;
            h.dont_fragment = true;
            h.options = Ipv4Options::try_from(shape.v4_options.as_slice()).unwrap();
            EpIp::Ipv4(h, Default::default())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let h = Ipv6Header {
                traffic_class: 0x28,
                flow_label: Ipv6FlowLabel::try_new(0x12345).unwrap(),
                payload_length: 0,
                next_header: IpNumber::TCP,
                hop_limit: 57,
                source: s.octets(),
                destination: d.octets(),
            };
            let mut ext = Ipv6Extensions::default();
            if shape.v6_hop_by_hop {
                // PadN option filling the 6 bytes.
                ext.hop_by_hop_options =
                    Some(Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0]).unwrap());
            }
            EpIp::Ipv6(h, ext)
        }
        _ => panic!("mixed families"),
    }
}

/// A client → server TCP segment.
fn segment(
    shape: &Shape,
    v6: bool,
    dst: IpAddr,
    t: TcpHeader,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    seg_between(
        shape,
        client(v6),
        dst,
        CLIENT_MAC,
        SERVER_MAC,
        t,
        options,
        payload,
    )
}

fn syn(v6: bool, isn: u32) -> Vec<u8> {
    segment(
        &Shape::default(),
        v6,
        server(v6),
        tcp_header(40000, 443, isn, 0, SYN),
        &linux_syn_options(),
        &[],
    )
}

/// `Headers` for a frame, from etherparse's parse: stands in for `wire::parse` in these tests.
fn headers_of(frame: &[u8]) -> Headers {
    let p = PacketHeaders::from_ethernet_slice(frame).expect("test frame parses");
    let mut vlans = [0u16; 2];
    let mut n = 0usize;
    for e in p.link_exts.iter() {
        if let LinkExtHeader::Vlan(v) = e {
            vlans[n] = v.vlan_id.value();
            n += 1;
        }
    }
    let l3 = 14 + 4 * n;
    let ethertype = u16::from_be_bytes([frame[l3 - 2], frame[l3 - 1]]);
    let (version, src, dst, ttl, ip_len, l4, proto) = match &p.net {
        Some(NetHeaders::Ipv4(h, _)) => (
            IpVersion::V4,
            IpAddr::from(h.source),
            IpAddr::from(h.destination),
            h.time_to_live,
            h.total_len,
            l3 + h.header_len(),
            h.protocol.0,
        ),
        Some(NetHeaders::Ipv6(h, ext)) => {
            let proto = match &p.transport {
                Some(TransportHeader::Tcp(_)) => 6,
                Some(TransportHeader::Udp(_)) => 17,
                Some(TransportHeader::Icmpv6(_)) => 58,
                _ => h.next_header.0,
            };
            (
                IpVersion::V6,
                IpAddr::from(h.source),
                IpAddr::from(h.destination),
                h.hop_limit,
                40 + h.payload_length,
                l3 + 40 + ext.header_len(),
                proto,
            )
        }
        _ => {
            return Headers {
                vlans,
                vlan_count: n as u8,
                ethertype,
                l3_off: l3 as u16,
                net: Net::Other,
            }
        }
    };
    let (transport, l4_len) = match &p.transport {
        Some(TransportHeader::Tcp(t)) => {
            let mut options = crate::TcpOptions::default();
            for o in t.options_iterator() {
                match o.unwrap() {
                    TcpOptionElement::MaximumSegmentSize(m) => options.mss = Some(m),
                    TcpOptionElement::WindowScale(w) => options.window_scale = Some(w),
                    TcpOptionElement::SelectiveAcknowledgementPermitted => {
                        options.sack_permitted = true
                    }
                    TcpOptionElement::Timestamp(a, b) => options.timestamps = Some((a, b)),
                    _ => {}
                }
            }
            let flags = (t.fin as u8)
                | (t.syn as u8) << 1
                | (t.rst as u8) << 2
                | (t.psh as u8) << 3
                | (t.ack as u8) << 4
                | (t.urg as u8) << 5
                | (t.ece as u8) << 6
                | (t.cwr as u8) << 7;
            (
                Transport::Tcp(TcpInfo {
                    sport: t.source_port,
                    dport: t.destination_port,
                    seq: t.sequence_number,
                    ack: t.acknowledgment_number,
                    flags,
                    window: t.window_size,
                    options,
                }),
                t.header_len(),
            )
        }
        Some(TransportHeader::Udp(u)) => (
            Transport::Udp {
                sport: u.source_port,
                dport: u.destination_port,
            },
            8,
        ),
        Some(TransportHeader::Icmpv4(i)) => {
            let b = i.to_bytes();
            (
                Transport::Icmp {
                    ty: b[0],
                    code: b[1],
                },
                i.header_len(),
            )
        }
        Some(TransportHeader::Icmpv6(i)) => {
            let b = i.to_bytes();
            (
                Transport::Icmpv6 {
                    ty: b[0],
                    code: b[1],
                },
                i.header_len(),
            )
        }
        _ => (Transport::Other, 0),
    };
    let payload_off = l4 + l4_len;
    Headers {
        vlans,
        vlan_count: n as u8,
        ethertype,
        l3_off: l3 as u16,
        net: Net::Ip(IpHeaders {
            version,
            src,
            dst,
            proto,
            ttl,
            frag: Frag::None,
            ip_len,
            l4_off: l4 as u16,
            transport,
            payload_off: payload_off as u16,
            payload_len: (l3 + usize::from(ip_len) - payload_off) as u16,
        }),
    }
}

fn run(st: &mut SynCookieStage, frame: &mut [u8], tsc: u64) -> StageResult {
    let h = headers_of(frame);
    st.process(frame, &h, &at(tsc))
}

fn reply_len(r: StageResult) -> usize {
    match r {
        StageResult::Done(Verdict::Reply { len }) => usize::from(len),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn flow_of(frame: &[u8]) -> Flow {
    let h = headers_of(frame);
    let ip = h.ip().unwrap();
    let Transport::Tcp(t) = ip.transport else {
        panic!("not TCP")
    };
    Flow {
        client: ip.src,
        server: ip.dst,
        client_port: t.sport,
        server_port: t.dport,
    }
}

/// Re-parses `reply` with etherparse and checks every field that does not depend on the kind
/// of reply against the frame it answers; returns the TCP header for kind-specific checks.
fn verify_reply(orig: &[u8], reply: &[u8], hop: u8) -> TcpHeader {
    let o = PacketHeaders::from_ethernet_slice(orig).unwrap();
    let r = PacketHeaders::from_ethernet_slice(reply).expect("reply parses");
    let (Some(LinkHeader::Ethernet2(oe)), Some(LinkHeader::Ethernet2(re))) = (&o.link, &r.link)
    else {
        panic!("no ethernet header");
    };
    assert_eq!(re.source, oe.destination, "source MAC");
    assert_eq!(re.destination, oe.source, "destination MAC");
    assert_eq!(re.ether_type, oe.ether_type);
    assert_eq!(r.link_exts, o.link_exts, "VLAN tags kept as they were");
    let Some(TransportHeader::Tcp(ot)) = &o.transport else {
        panic!("original is not TCP")
    };
    let Some(TransportHeader::Tcp(rt)) = r.transport.clone() else {
        panic!("reply is not TCP")
    };
    let l3 = 14 + 4 * o.link_exts.len();
    match (&o.net, &r.net) {
        (Some(NetHeaders::Ipv4(oh, _)), Some(NetHeaders::Ipv4(rh, rx))) => {
            assert_eq!(rh.header_len(), 20, "IPv4 options dropped");
            assert!(rx.auth.is_none());
            assert_eq!(rh.dscp.value(), 0);
            assert_eq!(rh.ecn.value(), 0);
            assert_eq!(usize::from(rh.total_len), 20 + rt.header_len());
            assert_eq!(rh.identification, 0);
            assert!(rh.dont_fragment);
            assert!(!rh.more_fragments);
            assert_eq!(rh.fragment_offset.value(), 0);
            assert_eq!(rh.time_to_live, hop);
            assert_eq!(rh.protocol, IpNumber::TCP);
            assert_eq!(
                rh.header_checksum,
                rh.calc_header_checksum(),
                "IPv4 checksum"
            );
            assert_eq!(rh.source, oh.destination);
            assert_eq!(rh.destination, oh.source);
            assert_eq!(
                rt.checksum,
                rt.calc_checksum_ipv4(rh, &[]).unwrap(),
                "TCP checksum"
            );
            assert_eq!(reply.len(), l3 + 20 + rt.header_len(), "exact frame length");
        }
        (Some(NetHeaders::Ipv6(oh, _)), Some(NetHeaders::Ipv6(rh, rx))) => {
            assert_eq!(rx.header_len(), 0, "extension headers dropped");
            assert_eq!(rh.traffic_class, 0);
            assert_eq!(rh.flow_label.value(), 0);
            assert_eq!(usize::from(rh.payload_length), rt.header_len());
            assert_eq!(rh.next_header, IpNumber::TCP);
            assert_eq!(rh.hop_limit, hop);
            assert_eq!(rh.source, oh.destination);
            assert_eq!(rh.destination, oh.source);
            assert_eq!(
                rt.checksum,
                rt.calc_checksum_ipv6(rh, &[]).unwrap(),
                "TCP checksum"
            );
            assert_eq!(reply.len(), l3 + 40 + rt.header_len(), "exact frame length");
        }
        other => panic!("family changed or not IP: {other:?}"),
    }
    assert_eq!(rt.source_port, ot.destination_port);
    assert_eq!(rt.destination_port, ot.source_port);
    assert_eq!(rt.urgent_pointer, 0);
    assert!(!(rt.ns || rt.ece || rt.cwr || rt.urg || rt.psh || rt.fin));
    assert!(r.payload.slice().is_empty(), "no payload");
    rt
}

fn synack_checks(orig: &[u8], reply: &[u8], expect_seq: u32, expect_ack: u32) -> TcpHeader {
    let t = verify_reply(orig, reply, 64);
    assert!(t.syn && t.ack && !t.rst, "flags SYN|ACK");
    assert_eq!(t.sequence_number, expect_seq, "seq");
    assert_eq!(t.acknowledgment_number, expect_ack, "ack");
    assert_eq!(t.window_size, 0, "window");
    let opts: Vec<_> = t.options_iterator().map(|o| o.unwrap()).collect();
    assert_eq!(
        opts,
        vec![TcpOptionElement::MaximumSegmentSize(1460)],
        "only our MSS"
    );
    assert_eq!(t.header_len(), 24, "data offset 6");
    t
}

// ---------------------------------------------------------------- golden SYN-ACKs

#[test]
fn golden_syn_ack_auth_v4_and_v6() {
    for v6 in [false, true] {
        let mut st = stage();
        let isn = 0x0102_0304;
        let orig = syn(v6, isn);
        let mut buf = orig.clone();
        let len = reply_len(run(&mut st, &mut buf, T0));
        let cookie = st
            .jar
            .issue(&flow_of(&orig), T0 / PERIOD, mss_index(Some(1460)));
        assert_ne!(cookie, isn.wrapping_add(1));
        synack_checks(&orig, &buf[..len], cookie, cookie);
        assert_eq!(st.counters().syn_answered, 1);
        assert_eq!(st.allowlist.occupied(), 0, "no state for a SYN");
    }
}

#[test]
fn golden_syn_ack_classic_v4_and_v6() {
    for v6 in [false, true] {
        let mut st = stage_with(|c| c.mode = Mode::Classic);
        let isn = 0xffff_ffff; // ISN + 1 wraps.
        let orig = syn(v6, isn);
        let mut buf = orig.clone();
        let len = reply_len(run(&mut st, &mut buf, T0));
        let cookie = st.jar.issue(&flow_of(&orig), T0 / PERIOD, 3);
        synack_checks(&orig, &buf[..len], cookie, 0);
    }
}

#[test]
fn golden_syn_ack_vlan_ip_options_and_payload_discarded() {
    let shapes = [
        (
            false,
            Shape {
                vlans: vec![100],
                v4_options: vec![1, 1, 1, 0], // NOP NOP NOP EOL
                ..Shape::default()
            },
        ),
        (
            false,
            Shape {
                vlans: vec![10, 20],
                ..Shape::default()
            },
        ),
        (
            true,
            Shape {
                vlans: vec![300],
                v6_hop_by_hop: true,
                ..Shape::default()
            },
        ),
        (
            true,
            Shape {
                vlans: vec![4000, 5],
                ..Shape::default()
            },
        ),
    ];
    for (v6, shape) in shapes {
        let mut st = stage_with(|c| {
            c.ttl = 200;
            c.window = 1024;
            c.mss = 1400;
        });
        let opts = [TcpOptionElement::MaximumSegmentSize(1300)];
        let payload = b"GET / HTTP/1.1\r\n";
        let orig = segment(
            &shape,
            v6,
            server(v6),
            tcp_header(5555, 80, 77, 0, SYN),
            &opts,
            payload,
        );
        let mut buf = orig.clone();
        let len = reply_len(run(&mut st, &mut buf, T0));
        let cookie = st.jar.issue(&flow_of(&orig), T0 / PERIOD, 1);
        let t = verify_reply(&orig, &buf[..len], 200);
        assert!(t.syn && t.ack);
        assert_eq!(
            (t.sequence_number, t.acknowledgment_number),
            (cookie, cookie)
        );
        assert_eq!(t.window_size, 1024);
        let opts: Vec<_> = t.options_iterator().map(|o| o.unwrap()).collect();
        assert_eq!(opts, vec![TcpOptionElement::MaximumSegmentSize(1400)]);
        assert_eq!(
            st.jar
                .validate(&flow_of(&orig), cookie, T0 / PERIOD)
                .unwrap()
                .mss_index,
            1,
            "client MSS 1300 encoded"
        );
    }
}

#[test]
fn syn_without_room_for_mss_gets_a_bare_syn_ack() {
    // IPv6 SYN without options: 74 bytes, no Ethernet padding, no room for 4 more bytes.
    let orig = segment(
        &Shape::default(),
        true,
        server(true),
        tcp_header(1, 2, 3, 0, SYN),
        &[],
        &[],
    );
    assert_eq!(orig.len(), 74);
    let mut st = stage();
    let mut buf = orig.clone();
    let len = reply_len(run(&mut st, &mut buf, T0));
    let t = verify_reply(&orig, &buf[..len], 64);
    assert_eq!(t.header_len(), 20);
    assert!(t.syn && t.ack);
    assert_eq!(
        st.jar
            .validate(&flow_of(&orig), t.sequence_number, T0 / PERIOD)
            .unwrap()
            .mss_index,
        0,
        "no MSS option means 536"
    );

    // The same for IPv4 padded to 60 bytes by the sender: 54 + 6 padding leaves room.
    let mut v4 = segment(
        &Shape::default(),
        false,
        server(false),
        tcp_header(1, 2, 3, 0, SYN),
        &[],
        &[],
    );
    assert_eq!(v4.len(), 54);
    let h = headers_of(&v4);
    v4.resize(60, 0);
    let orig = v4.clone();
    let len = match st.process(&mut v4, &h, &at(T0)) {
        StageResult::Done(Verdict::Reply { len }) => usize::from(len),
        other => panic!("{other:?}"),
    };
    assert_eq!(len, 58);
    let t = verify_reply(&orig[..54], &v4[..len], 64);
    assert_eq!(t.header_len(), 24);
}

#[test]
fn auth_mode_avoids_an_acceptable_ack() {
    // Pick the ISN so that the cookie is exactly ISN + 1 (and, with data, inside ISN+1..=ISN+1+len).
    for (payload, back) in [(&[][..], 1u32), (&b"0123456789"[..], 6)] {
        let mut st = stage();
        let probe = syn(false, 0);
        let cookie = st.jar.issue(&flow_of(&probe), T0 / PERIOD, 3);
        let isn = cookie.wrapping_sub(back);
        let orig = segment(
            &Shape::default(),
            false,
            server(false),
            tcp_header(40000, 443, isn, 0, SYN),
            &linux_syn_options(),
            payload,
        );
        let mut buf = orig.clone();
        let len = reply_len(run(&mut st, &mut buf, T0));
        let t = verify_reply(&orig, &buf[..len], 64);
        assert_eq!(t.sequence_number, cookie);
        assert_eq!(
            t.acknowledgment_number,
            isn.wrapping_add(1),
            "answered classic-style"
        );
        assert_eq!(st.counters().auth_fallback_classic, 1);

        // And the client's completing ACK authenticates it.
        let mut ack = segment(
            &Shape::default(),
            false,
            server(false),
            tcp_header(40000, 443, isn.wrapping_add(1), cookie.wrapping_add(1), ACK),
            &[],
            &[],
        );
        reply_len(run(&mut st, &mut ack, T0 + 1));
        assert_eq!(st.counters().ack_validated, 1);
    }
}

// ---------------------------------------------------------------- the auth (RST) path

/// The RST a Linux client in SYN-SENT sends for our unacceptable SYN-ACK: seq = its ack, no ACK.
fn client_rst_for(orig_syn: &[u8], synack: &[u8], shape: &Shape) -> Vec<u8> {
    let r = PacketHeaders::from_ethernet_slice(synack).unwrap();
    let Some(TransportHeader::Tcp(t)) = r.transport else {
        panic!()
    };
    let f = flow_of(orig_syn);
    let v6 = f.client.is_ipv6();
    let mut rst = tcp_header(
        f.client_port,
        f.server_port,
        t.acknowledgment_number,
        0,
        RST,
    );
    rst.window_size = 0;
    segment(shape, v6, f.server, rst, &[], &[])
}

#[test]
fn rst_authenticates_then_retransmitted_syn_is_forwarded() {
    for (v6, shape) in [
        (false, Shape::default()),
        (true, Shape::default()),
        (
            false,
            Shape {
                vlans: vec![7],
                ..Shape::default()
            },
        ),
    ] {
        let mut st = stage();
        let orig = segment(
            &shape,
            v6,
            server(v6),
            tcp_header(40000, 443, 1000, 0, SYN),
            &linux_syn_options(),
            &[],
        );
        let mut buf = orig.clone();
        let len = reply_len(run(&mut st, &mut buf, T0));
        let mut rst = client_rst_for(&orig, &buf[..len], &shape);
        let rst_copy = rst.clone();
        // Arrives in the next counter window: still valid.
        assert_eq!(
            run(&mut st, &mut rst, T0 + PERIOD),
            StageResult::Done(Verdict::Drop(DropReason::AuthHandshake))
        );
        assert_eq!(rst, rst_copy, "dropped, not rewritten");
        assert_eq!(st.counters().rst_validated, 1);
        assert!(st.allowlist.check(client(v6), T0 + PERIOD));

        let mut again = orig.clone();
        assert_eq!(
            run(&mut st, &mut again, T0 + PERIOD + 200),
            StageResult::Continue
        );
        assert_eq!(again, orig, "forwarded untouched");
        assert_eq!(st.counters().syn_answered, 1);
        assert_eq!(st.counters().allowlist_hits, 1);
        // The source's later traffic passes too, whatever it is.
        let mut data = segment(
            &shape,
            v6,
            server(v6),
            tcp_header(40000, 443, 1001, 5, ACK),
            &[],
            b"x",
        );
        assert_eq!(
            run(&mut st, &mut data, T0 + PERIOD + 300),
            StageResult::Continue
        );
    }
}

#[test]
fn rst_with_ack_flag_is_checked_the_same_way() {
    let mut st = stage();
    let orig = syn(false, 5);
    let mut buf = orig.clone();
    let len = reply_len(run(&mut st, &mut buf, T0));
    let mut rst = client_rst_for(&orig, &buf[..len], &Shape::default());
    // Set ACK as some stacks do; etherparse rebuild keeps it simple.
    let h = headers_of(&rst);
    let mut h2 = h;
    if let Net::Ip(ip) = &mut h2.net {
        if let Transport::Tcp(t) = &mut ip.transport {
            t.flags |= ACK;
        }
    }
    assert_eq!(
        st.process(&mut rst, &h2, &at(T0)),
        StageResult::Done(Verdict::Drop(DropReason::AuthHandshake))
    );
}

#[test]
fn invalid_rsts_and_acks_are_dropped() {
    let mut st = stage();
    let orig = syn(false, 1000);
    let mut buf = orig.clone();
    let len = reply_len(run(&mut st, &mut buf, T0));
    let good = client_rst_for(&orig, &buf[..len], &Shape::default());
    let cookie = st.jar.issue(&flow_of(&orig), T0 / PERIOD, 3);

    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        (
            "wrong seq",
            segment(
                &Shape::default(),
                false,
                server(false),
                tcp_header(40000, 443, cookie ^ 0x100, 0, RST),
                &[],
                &[],
            ),
            T0,
        ),
        (
            "other client port",
            segment(
                &Shape::default(),
                false,
                server(false),
                tcp_header(40001, 443, cookie, 0, RST),
                &[],
                &[],
            ),
            T0,
        ),
        (
            "other server",
            segment(
                &Shape::default(),
                false,
                "10.10.10.21".parse().unwrap(),
                tcp_header(40000, 443, cookie, 0, RST),
                &[],
                &[],
            ),
            T0,
        ),
        ("two windows later", good.clone(), T0 + 2 * PERIOD),
        (
            "random ACK",
            segment(
                &Shape::default(),
                false,
                server(false),
                tcp_header(40000, 443, 1001, 0xdead_beef, ACK),
                &[],
                &[],
            ),
            T0,
        ),
        (
            "ACK of the cookie itself, not cookie + 1",
            segment(
                &Shape::default(),
                false,
                server(false),
                tcp_header(40000, 443, 1001, cookie, ACK),
                &[],
                &[],
            ),
            T0,
        ),
    ];
    let n = cases.len() as u64;
    for (what, mut pkt, tsc) in cases {
        let before = pkt.clone();
        assert_eq!(
            run(&mut st, &mut pkt, tsc),
            StageResult::Done(Verdict::Drop(DropReason::CookieInvalid)),
            "{what}"
        );
        assert_eq!(pkt, before, "{what}: untouched");
    }
    assert_eq!(st.counters().cookie_invalid, n);
    assert_eq!(st.allowlist.occupied(), 0);
    // The genuine RST still works afterwards.
    let mut good = good;
    assert_eq!(
        run(&mut st, &mut good, T0),
        StageResult::Done(Verdict::Drop(DropReason::AuthHandshake))
    );
}

#[test]
fn rotation_keeps_one_generation_valid() {
    let mut st = stage();
    let orig = syn(true, 9);
    let mut buf = orig.clone();
    let len = reply_len(run(&mut st, &mut buf, T0));
    let rst = client_rst_for(&orig, &buf[..len], &Shape::default());

    st.rotate();
    let mut p = rst.clone();
    assert_eq!(
        run(&mut st, &mut p, T0),
        StageResult::Done(Verdict::Drop(DropReason::AuthHandshake))
    );

    let mut st = stage();
    let mut buf = orig.clone();
    run(&mut st, &mut buf, T0);
    st.rotate();
    st.rotate();
    let mut p = rst.clone();
    assert_eq!(
        run(&mut st, &mut p, T0),
        StageResult::Done(Verdict::Drop(DropReason::CookieInvalid))
    );
    let s = st.status(T0);
    assert_eq!(s.secret_generation, 2);
    assert_eq!(s.counters.rotations, 2);
}

proptest! {
    /// The cached cookie counter is always the division it replaces, whichever way the epoch
    /// moves (a fleet's clock offset can be corrected backwards) and across period edges.
    #[test]
    fn cached_counter_is_the_division(steps in proptest::collection::vec(-3 * PERIOD as i64..3 * PERIOD as i64, 1..64),
                                      start in 0u64..1 << 40) {
        let mut st = stage();
        let mut e = start;
        for d in steps {
            e = e.saturating_add_signed(d);
            prop_assert_eq!(st.counter(e), e / PERIOD);
        }
        prop_assert_eq!(st.counter(u64::MAX), u64::MAX / PERIOD);
        prop_assert_eq!(st.counter(0), 0);
    }

    /// The rotation due time only replaces the per-packet division: the generation after any
    /// sequence of packet times, forwards or backwards, is the one the division gives (one
    /// rotation per later slot seen, none for going back).
    #[test]
    fn rotation_due_time_rotates_like_the_division(steps in proptest::collection::vec(-2 * PERIOD as i64..3 * PERIOD as i64, 1..32)) {
        let mut st = stage_with(|c| c.rotate_every_s = 64);
        let (mut t, mut last, mut rotations) = (T0, None::<u64>, 0u64);
        for d in steps {
            t = t.saturating_add_signed(d);
            run(&mut st, &mut syn(false, 1), t);
            let slot = t / PERIOD;
            match last {
                None => last = Some(slot),
                Some(l) if slot > l => {
                    rotations += 1;
                    last = Some(slot);
                }
                Some(_) => {}
            }
            prop_assert_eq!(st.counters().rotations, rotations);
        }
    }
}

#[test]
fn scheduled_rotation_happens_on_the_packet_path() {
    let mut st = stage_with(|c| c.rotate_every_s = 64);
    let mut p = syn(false, 1);
    run(&mut st, &mut p, T0); // arms the schedule
    assert_eq!(st.counters().rotations, 0);
    let mut p = syn(false, 1);
    run(&mut st, &mut p, T0 + PERIOD - 1);
    assert_eq!(st.counters().rotations, 0);
    let mut p = syn(false, 1);
    run(&mut st, &mut p, T0 + PERIOD);
    assert_eq!(st.counters().rotations, 1);
    // A long idle gap costs one rotation, not one per missed period.
    let mut p = syn(false, 1);
    run(&mut st, &mut p, T0 + 100 * PERIOD);
    assert_eq!(st.status(T0).secret_generation, 2);
}

// ---------------------------------------------------------------- the classic (ACK) path

#[test]
fn classic_ack_is_answered_with_a_rst_and_authenticates() {
    for (mode, v6) in [
        (Mode::Classic, false),
        (Mode::Classic, true),
        (Mode::Auth, false),
        (Mode::Auth, true),
    ] {
        let mut st = stage_with(|c| c.mode = mode);
        let isn = 0x7000_0000;
        let orig = syn(v6, isn);
        let mut buf = orig.clone();
        let len = reply_len(run(&mut st, &mut buf, T0));
        let synack = PacketHeaders::from_ethernet_slice(&buf[..len]).unwrap();
        let Some(TransportHeader::Tcp(sa)) = synack.transport else {
            panic!()
        };
        // The client completes the handshake (with some data, as it may).
        let ack_no = sa.sequence_number.wrapping_add(1);
        let ack = segment(
            &Shape::default(),
            v6,
            server(v6),
            tcp_header(40000, 443, isn.wrapping_add(1), ack_no, ACK | TcpInfo::PSH),
            &[],
            b"hello",
        );
        let mut out = ack.clone();
        let len = reply_len(run(&mut st, &mut out, T0 + 10));
        let t = verify_reply(&ack, &out[..len], 64);
        assert!(t.rst && !t.syn && !t.ack, "a bare RST");
        assert_eq!(
            t.sequence_number, ack_no,
            "seq = the client's ack (its RCV.NXT)"
        );
        assert_eq!(t.acknowledgment_number, 0);
        assert_eq!(t.window_size, 0);
        assert_eq!(t.header_len(), 20);
        assert_eq!(st.counters().ack_validated, 1);

        let mut again = syn(v6, isn + 1000);
        let before = again.clone();
        assert_eq!(run(&mut st, &mut again, T0 + 20), StageResult::Continue);
        assert_eq!(again, before);
    }
}

// ---------------------------------------------------------------- other traffic

#[test]
fn other_tcp_from_unauthenticated_sources_is_dropped() {
    let mut st = stage();
    for flags in [
        SYN | ACK,
        SYN | FIN,
        FIN,
        TcpInfo::PSH,
        0,
        TcpInfo::URG,
        SYN | ACK | FIN,
    ] {
        for v6 in [false, true] {
            let mut p = segment(
                &Shape::default(),
                v6,
                server(v6),
                tcp_header(1, 2, 3, 4, flags),
                &[],
                &[],
            );
            let before = p.clone();
            assert_eq!(
                run(&mut st, &mut p, T0),
                StageResult::Done(Verdict::Drop(DropReason::Unauthenticated)),
                "flags {flags:#x}"
            );
            assert_eq!(p, before);
        }
    }
    assert_eq!(st.counters().unauthenticated, 14);
}

#[test]
fn tcp_fragments_and_bogus_sources_are_not_answered() {
    let mut st = stage();
    let mut p = syn(false, 1);
    let before = p.clone();
    let h = headers_of(&p);
    for frag in [Frag::First, Frag::Later] {
        let mut h2 = h;
        if let Net::Ip(ip) = &mut h2.net {
            ip.frag = frag;
            if frag == Frag::Later {
                ip.transport = Transport::None;
            }
        }
        assert_eq!(
            st.process(&mut p, &h2, &at(T0)),
            StageResult::Done(Verdict::Drop(DropReason::Unauthenticated))
        );
    }
    for src in [
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "127.0.0.1",
        "10.10.10.20",
    ] {
        let mut h2 = h;
        if let Net::Ip(ip) = &mut h2.net {
            ip.src = src.parse().unwrap();
        }
        assert_eq!(
            st.process(&mut p, &h2, &at(T0)),
            StageResult::Done(Verdict::Drop(DropReason::Unauthenticated)),
            "{src}"
        );
    }
    assert_eq!(p, before);
    assert_eq!(st.counters().syn_answered, 0);
}

fn udp_frame(v6: bool, dst: IpAddr) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC);
    let b = match (client(v6), dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64).udp(53, 53),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64).udp(53, 53),
        _ => unreachable!(),
    };
    let mut out = Vec::new();
    b.write(&mut out, b"query").unwrap();
    out
}

fn icmp_frame(v6: bool, dst: IpAddr) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC);
    let mut out = Vec::new();
    match (client(v6), dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth
            .ipv4(s.octets(), d.octets(), 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut out, b"ping")
            .unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth
            .ipv6(s.octets(), d.octets(), 64)
            .icmpv6_echo_request(1, 1)
            .write(&mut out, b"ping")
            .unwrap(),
        _ => unreachable!(),
    }
    out
}

/// Headers for a protocol etherparse does not build (GRE), by editing a UDP frame's summary.
fn gre_headers(v6: bool) -> (Vec<u8>, Headers) {
    let f = udp_frame(v6, server(v6));
    let mut h = headers_of(&f);
    if let Net::Ip(ip) = &mut h.net {
        ip.proto = 47;
        ip.transport = Transport::Other;
    }
    (f, h)
}

#[test]
fn non_tcp_policy() {
    for v6 in [false, true] {
        // Default: everything passes.
        let mut st = stage();
        let mut u = udp_frame(v6, server(v6));
        let mut i = icmp_frame(v6, server(v6));
        let (mut g, gh) = gre_headers(v6);
        assert_eq!(run(&mut st, &mut u, T0), StageResult::Continue);
        assert_eq!(run(&mut st, &mut i, T0), StageResult::Continue);
        assert_eq!(st.process(&mut g, &gh, &at(T0)), StageResult::Continue);

        let drop = StageResult::Done(Verdict::Drop(DropReason::Unauthenticated));
        for (udp, icmp, other) in [
            (NonTcpAction::Drop, NonTcpAction::Pass, NonTcpAction::Pass),
            (NonTcpAction::Pass, NonTcpAction::Drop, NonTcpAction::Pass),
            (NonTcpAction::Pass, NonTcpAction::Pass, NonTcpAction::Drop),
        ] {
            let mut st = stage_with(|c| c.non_tcp = NonTcpPolicy { udp, icmp, other });
            let want = |a| {
                if a == NonTcpAction::Drop {
                    drop
                } else {
                    StageResult::Continue
                }
            };
            assert_eq!(run(&mut st, &mut u, T0), want(udp));
            assert_eq!(run(&mut st, &mut i, T0), want(icmp));
            assert_eq!(st.process(&mut g, &gh, &at(T0)), want(other));
            // Unprotected destinations and allowlisted sources are never subject to it.
            let mut uu = udp_frame(v6, unprotected(v6));
            assert_eq!(run(&mut st, &mut uu, T0), StageResult::Continue);
            st.allowlist.insert(client(v6), T0);
            assert_eq!(run(&mut st, &mut u, T0), StageResult::Continue);
            assert_eq!(run(&mut st, &mut i, T0), StageResult::Continue);
            assert_eq!(st.process(&mut g, &gh, &at(T0)), StageResult::Continue);
            // Only the protocol the policy drops needed the allowlist; the two it passes were
            // not looked up at all.
            assert_eq!(st.counters().allowlist_hits, 1);
        }
    }
}

#[test]
fn unprotected_and_non_ip_traffic_is_untouched() {
    let mut st = stage();
    for v6 in [false, true] {
        let mut frames = vec![
            udp_frame(v6, unprotected(v6)),
            icmp_frame(v6, unprotected(v6)),
        ];
        for flags in [SYN, ACK, RST, SYN | ACK, FIN | ACK] {
            frames.push(segment(
                &Shape::default(),
                v6,
                unprotected(v6),
                tcp_header(1, 2, 3, 4, flags),
                &linux_syn_options(),
                b"data",
            ));
        }
        for mut f in frames {
            let before = f.clone();
            assert_eq!(run(&mut st, &mut f, T0), StageResult::Continue);
            assert_eq!(f, before, "byte-identical");
        }
    }
    // Replies from the protected server itself go out unchanged.
    let synack = frame(
        &Shape::default(),
        server(false),
        client(false),
        SERVER_MAC,
        CLIENT_MAC,
        |s| s.tcp_header(tcp_header(443, 40000, 1, 2, SYN | ACK)),
        &[],
    );
    let mut f = synack.clone();
    assert_eq!(run(&mut st, &mut f, T0), StageResult::Continue);
    assert_eq!(f, synack);
    // ARP and other ethertypes.
    let mut f = syn(false, 1);
    let before = f.clone();
    for net in [Net::Arp, Net::Other] {
        let mut h = headers_of(&f);
        h.net = net;
        assert_eq!(st.process(&mut f, &h, &at(T0)), StageResult::Continue);
    }
    assert_eq!(f, before);
    assert_eq!(st.counters(), Counters::default(), "nothing counted");
}

// ---------------------------------------------------------------- allowlist behaviour

fn authenticate(st: &mut SynCookieStage, src: IpAddr, tsc: u64) {
    let v6 = src.is_ipv6();
    let f = Flow {
        client: src,
        server: server(v6),
        client_port: 40000,
        server_port: 443,
    };
    let cookie = st.jar.issue(&f, tsc / PERIOD, 0);
    let mut rst = frame(
        &Shape::default(),
        src,
        server(v6),
        CLIENT_MAC,
        SERVER_MAC,
        |s| s.tcp_header(tcp_header(40000, 443, cookie, 0, RST)),
        &[],
    );
    assert_eq!(
        run(st, &mut rst, tsc),
        StageResult::Done(Verdict::Drop(DropReason::AuthHandshake))
    );
}

#[test]
fn allowlist_entries_expire_after_idle_ttl() {
    let ttl = 300 * HZ;
    let mut st = stage();
    authenticate(&mut st, client(false), T0);
    let mut p = syn(false, 1);
    assert_eq!(run(&mut st, &mut p, T0 + ttl - 1), StageResult::Continue);
    // That hit moved the deadline; still in.
    let mut p = syn(false, 1);
    assert_eq!(
        run(&mut st, &mut p, T0 + 2 * ttl - 2),
        StageResult::Continue
    );
    // Idle for a full TTL: must authenticate again.
    let mut p = syn(false, 1);
    reply_len(run(&mut st, &mut p, T0 + 3 * ttl - 2));
    // The expired slot stays counted until an insert reuses it (the table is shared by every
    // worker, so lookups never write a slot they did not take).
    assert_eq!(st.status(T0).allowlist_occupied, 1);
}

#[test]
fn syn_flood_allocates_nothing_and_authenticated_sources_respect_capacity() {
    let mut st = stage_with(|c| c.allowlist_capacity = 8);
    let storage = st.allowlist.storage();
    let cap = st.status(T0).allowlist_capacity;
    assert_eq!(cap, 8);
    let template = syn(false, 1);
    let h0 = headers_of(&template);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..5000u64 {
        let src = IpAddr::V4(Ipv4Addr::from(0x4000_0000 | (next() as u32 & 0x1fff_ffff)));
        let mut h = h0;
        if let Net::Ip(ip) = &mut h.net {
            ip.src = src;
        }
        let mut f = template.clone();
        reply_len(st.process(&mut f, &h, &at(T0 + i)));
    }
    assert_eq!(st.counters().syn_answered, 5000);
    assert_eq!(st.allowlist.occupied(), 0, "a SYN flood leaves no state");
    assert_eq!(st.allowlist.storage(), storage);

    let n = 300u64;
    for i in 0..n {
        let src = IpAddr::V6(Ipv6Addr::from((0x2001_0db9u128 << 96) | u128::from(next())));
        authenticate(&mut st, src, T0 + i);
        assert!(st.allowlist.occupied() <= cap);
    }
    let s = st.status(T0 + n);
    assert_eq!(s.allowlist_occupied, cap);
    assert_eq!(s.counters.allowlist_evictions, n - cap as u64);
    assert_eq!(s.counters.rst_validated, n);
    assert_eq!(st.allowlist.storage(), storage, "no reallocation");
}

// ---------------------------------------------------------------- robustness

#[test]
fn truncated_buffers_with_plausible_headers_never_panic() {
    let mut st_auth = stage();
    let mut st_classic = stage_with(|c| c.mode = Mode::Classic);
    let mut frames = vec![
        syn(false, 1),
        syn(true, 1),
        segment(
            &Shape {
                vlans: vec![1, 2],
                ..Shape::default()
            },
            true,
            server(true),
            tcp_header(1, 2, 3, 4, SYN),
            &[],
            &[],
        ),
    ];
    // Valid ACKs, so the classic path gets as far as writing its RST.
    for v6 in [false, true] {
        let f = Flow {
            client: client(v6),
            server: server(v6),
            client_port: 9,
            server_port: 10,
        };
        let c = st_auth.jar.issue(&f, T0 / PERIOD, 0);
        frames.push(segment(
            &Shape::default(),
            v6,
            server(v6),
            tcp_header(9, 10, 1, c.wrapping_add(1), ACK),
            &[],
            &[],
        ));
    }
    let mut dropped = 0;
    for full in frames {
        let h = headers_of(&full);
        for cut in 0..=full.len() {
            for st in [&mut st_auth, &mut st_classic] {
                let mut f = full[..cut].to_vec();
                let before = f.clone();
                match st.process(&mut f, &h, &at(T0)) {
                    StageResult::Done(Verdict::Reply { len }) => {
                        assert!(usize::from(len) <= cut, "cut at {cut}")
                    }
                    StageResult::Done(Verdict::Drop(DropReason::Malformed(
                        Malformed::TcpTruncated,
                    ))) => {
                        dropped += 1;
                        assert_eq!(f, before, "cut at {cut}: nothing written to a short buffer");
                    }
                    other => panic!("cut at {cut}: {other:?}"),
                }
                // Forget an ACK's source so the next cut takes the same path.
                st.allowlist = std::sync::Arc::new(Allowlist::new(8, 1, [0; 16]));
            }
        }
    }
    assert!(
        dropped > 100,
        "the short-buffer path was exercised ({dropped})"
    );
}

proptest! {
    /// Whatever the buffer holds and however the summary disagrees with it, no panic, and a
    /// reply is never longer than the buffer.
    #[test]
    fn arbitrary_buffers_and_summaries_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
        l3_off in 0u16..200, flags in any::<u8>(), seq in any::<u32>(), ack in any::<u32>(),
        v6 in any::<bool>(), mixed in any::<bool>(), payload_len in any::<u16>(),
        mss in proptest::option::of(any::<u16>()), tsc in any::<u64>(), classic in any::<bool>()) {
        let mut st = stage_with(|c| if classic { c.mode = Mode::Classic });
        let mut h = headers_of(&syn(v6, 1));
        h.l3_off = l3_off;
        if let Net::Ip(ip) = &mut h.net {
            if mixed {
                ip.src = client(!v6);
            }
            ip.payload_len = payload_len;
            if let Transport::Tcp(t) = &mut ip.transport {
                t.flags = flags;
                t.seq = seq;
                t.ack = ack;
                t.options.mss = mss;
            }
        }
        let mut f = bytes.clone();
        if let StageResult::Done(Verdict::Reply { len }) = st.process(&mut f, &h, &at(tsc)) {
            prop_assert!(usize::from(len) <= f.len());
        }
    }
}

// ---------------------------------------------------------------- config

#[test]
fn config_from_toml() {
    let text = r#"
        protected = ["10.10.10.0/24", "2001:db8::/32"]
        mode = "classic"
        mss = 1400
        ttl = 128
        window = 512
        counter_period_s = 32
        allowlist_capacity = 1000
        allowlist_ttl_s = 60
        rotate_every_s = 0
        non_tcp = { udp = "drop", icmp = "pass", other = "drop" }
    "#;
    let c: SynCookieConfig = toml::from_str(text).unwrap();
    assert_eq!(c.mode, Mode::Classic);
    assert_eq!(c.protected.len(), 2);
    assert_eq!((c.mss, c.ttl, c.window), (1400, 128, 512));
    assert_eq!(c.non_tcp.udp, NonTcpAction::Drop);
    assert_eq!(c.non_tcp.icmp, NonTcpAction::Pass);
    let st = SynCookieStage::new(&c, SECRET, HZ).unwrap();
    assert_eq!(st.status(0).allowlist_capacity, 1024);

    let d: SynCookieConfig = toml::from_str("").unwrap();
    assert_eq!(d, SynCookieConfig::default());
    assert_eq!(d.mode, Mode::Auth);
    assert_eq!(
        (d.mss, d.ttl, d.counter_period_s, d.allowlist_ttl_s),
        (1460, 64, 64, 300)
    );

    for bad in [
        "unknown = 1",
        "mode = \"fast\"",
        "non_tcp = { tcp = \"drop\" }",
        "non_tcp = { udp = \"block\" }",
        "protected = [\"10.0.0.1/8\"]",
        "protected = [\"nonsense\"]",
    ] {
        assert!(toml::from_str::<SynCookieConfig>(bad).is_err(), "{bad}");
    }
}

#[test]
fn invalid_values_name_their_field() {
    type Edit = fn(&mut SynCookieConfig);
    let cases: Vec<(&str, Edit)> = vec![
        ("mss", |c| c.mss = 100),
        ("ttl", |c| c.ttl = 0),
        ("counter_period_s", |c| c.counter_period_s = 0),
        ("allowlist_capacity", |c| c.allowlist_capacity = 0),
        ("allowlist_capacity", |c| {
            c.allowlist_capacity = MAX_ALLOWLIST + 1
        }),
        ("allowlist_ttl_s", |c| c.allowlist_ttl_s = 0),
        ("rotate_every_s", |c| c.rotate_every_s = 10),
        ("proxy_capacity", |c| c.proxy_capacity = 0),
        ("proxy_capacity", |c| {
            c.proxy_capacity = proxy::MAX_CAPACITY + 1
        }),
        ("proxy_idle_s", |c| c.proxy_idle_s = 0),
        ("proxy_wscale", |c| c.proxy_wscale = 15),
        ("protected", |c| {
            c.protected = vec!["10.0.0.0/8".parse().unwrap(); MAX_PROTECTED + 1]
        }),
    ];
    for (field, f) in cases {
        let mut c = config();
        f(&mut c);
        let e = SynCookieStage::new(&c, SECRET, HZ).err().expect(field);
        assert!(
            e.to_string().starts_with(&format!("syncookie.{field}:")),
            "{e}"
        );
    }
    assert!(SynCookieStage::new(&config(), SECRET, 0).is_err());
    let e = SynCookieStage::new(&config(), SECRET, u64::MAX)
        .err()
        .unwrap();
    assert!(e.to_string().contains("counter_period_s"), "{e}");
}

#[test]
fn status_reports_state() {
    let mut st = stage();
    authenticate(&mut st, client(false), T0);
    let mut p = syn(false, 1);
    run(&mut st, &mut p, T0);
    st.rotate();
    let s = st.status(T0 + 3 * PERIOD);
    assert_eq!(s.mode, Mode::Auth);
    assert_eq!(s.time_counter, T0 / PERIOD + 3);
    assert_eq!(s.secret_generation, 1);
    assert_eq!(s.allowlist_occupied, 1);
    assert_eq!(s.counters.rst_validated, 1);
    assert_eq!(s.counters.allowlist_hits, 1);
    assert_eq!(s.counters.rotations, 1);
}

// ---------------------------------------------------------------- direction

fn run_dir(st: &mut SynCookieStage, frame: &mut [u8], tsc: u64, dir: Direction) -> StageResult {
    let h = headers_of(frame);
    st.process(frame, &h, &Meta { port: 1, dir, tsc })
}

/// A TCP segment from `src`:`sport` to `dst`:`dport`.
fn tcp_between(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, flags: u8) -> Vec<u8> {
    frame(
        &Shape::default(),
        src,
        dst,
        CLIENT_MAC,
        SERVER_MAC,
        |s| s.tcp_header(tcp_header(sport, dport, 1000, 2000, flags)),
        &[],
    )
}

#[test]
fn a_protected_host_can_open_connections_out() {
    for v6 in [false, true] {
        let mut st = stage();
        let (srv, remote) = (server(v6), client(v6));
        // The protected server's SYN leaves by the inside port: recorded, never judged.
        let mut out_syn = tcp_between(srv, 51000, remote, 443, SYN);
        assert_eq!(
            run_dir(&mut st, &mut out_syn, T0, Direction::Outbound),
            StageResult::Continue
        );
        assert_eq!(st.counters().outbound_tracked, 1);
        // The remote's SYN-ACK and the rest of the connection come back in.
        for flags in [SYN | ACK, ACK, ACK | TcpInfo::PSH, FIN | ACK, RST] {
            let mut back = tcp_between(remote, 443, srv, 51000, flags);
            assert_eq!(
                run_dir(&mut st, &mut back, T0 + 5, Direction::Inbound),
                StageResult::Continue,
                "flags {flags:#x}"
            );
        }
        assert_eq!(st.counters().outbound_return, 5);
        // Another port of the same remote, or a SYN-ACK for a connection nobody opened (SYN-ACK
        // reflection), is unauthenticated as before; so is a bare SYN on the same 5-tuple.
        for (sport, dport, flags) in [(443, 51001, SYN | ACK), (444, 51000, SYN | ACK)] {
            let mut back = tcp_between(remote, sport, srv, dport, flags);
            assert_eq!(
                run_dir(&mut st, &mut back, T0 + 5, Direction::Inbound),
                StageResult::Done(Verdict::Drop(DropReason::Unauthenticated))
            );
        }
        let mut syn_in = tcp_between(remote, 443, srv, 51000, SYN);
        reply_len(run_dir(&mut st, &mut syn_in, T0 + 5, Direction::Inbound));
        assert_eq!(st.counters().outbound_return, 5);
        assert_eq!(st.counters().unauthenticated, 2);
    }
}

#[test]
fn outbound_connections_expire_after_their_idle_ttl() {
    let mut st = stage_with(|c| c.outbound_ttl_s = 10);
    let (srv, remote) = (server(false), client(false));
    let mut out_syn = tcp_between(srv, 51000, remote, 443, SYN);
    run_dir(&mut st, &mut out_syn, T0, Direction::Outbound);
    let mut back = tcp_between(remote, 443, srv, 51000, ACK);
    assert_eq!(
        run_dir(&mut st, &mut back, T0 + 10 * HZ - 1, Direction::Inbound),
        StageResult::Continue
    );
    // That packet slid the deadline; after ten idle seconds the connection is forgotten.
    let mut back = tcp_between(remote, 443, srv, 51000, ACK);
    assert_eq!(
        run_dir(&mut st, &mut back, T0 + 20 * HZ, Direction::Inbound),
        StageResult::Done(Verdict::Drop(DropReason::CookieInvalid))
    );
}

#[test]
fn only_protected_hosts_syns_are_recorded_and_outbound_is_never_judged() {
    let mut st = stage();
    let (srv, remote) = (server(false), client(false));
    // An inside host outside the protected prefixes: nothing to record.
    let mut other = tcp_between(unprotected(false), 51000, remote, 443, SYN);
    assert_eq!(
        run_dir(&mut st, &mut other, T0, Direction::Outbound),
        StageResult::Continue
    );
    // Whatever leaves by the inside port passes, even to a protected address (a server
    // answering a client of its own prefix that sits outside the box), and never gets a
    // cookie or a drop.
    for flags in [SYN | ACK, ACK, RST, SYN] {
        let mut p = tcp_between(srv, 443, "10.10.10.99".parse().unwrap(), 40000, flags);
        assert_eq!(
            run_dir(&mut st, &mut p, T0, Direction::Outbound),
            StageResult::Continue
        );
    }
    assert_eq!(
        st.counters().outbound_tracked,
        1,
        "only the protected host's SYN"
    );
    assert_eq!(st.counters().syn_answered, 0);
    assert_eq!(st.counters().unauthenticated, 0);
    // Its SYN-ACKs (not SYNs) recorded nothing: an outside ACK for them is still judged.
    let mut back = tcp_between(remote, 443, unprotected(false), 51000, SYN | ACK);
    assert_eq!(
        run_dir(&mut st, &mut back, T0, Direction::Inbound),
        StageResult::Continue,
        "unprotected destination"
    );
}

#[test]
fn udp_answers_pass_when_udp_must_authenticate() {
    let mut st = stage_with(|c| c.non_tcp.udp = NonTcpAction::Drop);
    let (srv, remote) = (server(false), client(false));
    let udp = |src: IpAddr, sport: u16, dst: IpAddr, dport: u16| {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
            unreachable!()
        };
        let mut out = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv4(s.octets(), d.octets(), 64)
            .udp(sport, dport)
            .write(&mut out, b"dns")
            .unwrap();
        out
    };
    let mut q = udp(srv, 53000, remote, 53);
    run_dir(&mut st, &mut q, T0, Direction::Outbound);
    let mut a = udp(remote, 53, srv, 53000);
    assert_eq!(
        run_dir(&mut st, &mut a, T0 + 1, Direction::Inbound),
        StageResult::Continue
    );
    let mut spoofed = udp(remote, 53, srv, 53001);
    assert_eq!(
        run_dir(&mut st, &mut spoofed, T0 + 1, Direction::Inbound),
        StageResult::Done(Verdict::Drop(DropReason::Unauthenticated))
    );
}

#[test]
fn an_authentication_on_one_worker_holds_on_every_worker() {
    let cfg = config();
    let shared = Shared::new(&cfg, SECRET, HZ);
    let mut workers: Vec<SynCookieStage> = (0..4)
        .map(|_| SynCookieStage::with_shared(&cfg, SECRET, HZ, &shared).unwrap())
        .collect();
    authenticate(&mut workers[0], client(false), T0);
    for (i, w) in workers.iter_mut().enumerate() {
        let mut p = syn(false, 7);
        assert_eq!(run(w, &mut p, T0 + 1), StageResult::Continue, "worker {i}");
    }
    // A connection opened through one worker is known to the others too.
    let (srv6, remote) = (server(true), client(true));
    let mut out_syn = tcp_between(srv6, 51000, remote, 443, SYN);
    run_dir(&mut workers[1], &mut out_syn, T0, Direction::Outbound);
    let mut back = tcp_between(remote, 443, srv6, 51000, SYN | ACK);
    assert_eq!(
        run_dir(&mut workers[3], &mut back, T0 + 1, Direction::Inbound),
        StageResult::Continue
    );
}

#[test]
fn scheduled_rotations_fall_at_the_same_instant_on_every_worker() {
    let cfg = SynCookieConfig {
        rotate_every_s: 64,
        ..config()
    };
    let shared = Shared::new(&cfg, SECRET, HZ);
    let mut a = SynCookieStage::with_shared(&cfg, SECRET, HZ, &shared).unwrap();
    let mut b = SynCookieStage::with_shared(&cfg, SECRET, HZ, &shared).unwrap();
    // The workers see their first packets at different times of the same period...
    run(&mut a, &mut syn(false, 1), T0 + 10);
    run(&mut b, &mut syn(false, 1), T0 + PERIOD / 2);
    // ...and both rotate at the period boundary, so a SYN-ACK from one after the boundary
    // carries a cookie the other validates.
    let mut s = syn(false, 9);
    let orig = s.clone();
    let len = reply_len(run(&mut a, &mut s, T0 + PERIOD + 20));
    let rst = client_rst_for(&orig, &s[..len], &Shape::default());
    let mut rst = rst;
    assert_eq!(
        run(&mut b, &mut rst, T0 + PERIOD + 21),
        StageResult::Done(Verdict::Drop(DropReason::AuthHandshake))
    );
    assert_eq!(a.status(0).secret_generation, 1);
    assert_eq!(b.status(0).secret_generation, 1);
}

// --- A fleet: boxes sharing a key, in lockstep with the wall clock ---

/// The wall clock at the start of the fleet tests: a whole multiple of both the counter period
/// (64 s) and the rotation period (256 s) used below, so the boundaries are easy to place.
const UNIX0_MS: u64 = 1_700_000_000_000;
const ROTATE_S: u32 = 256;
const ROTATE: u64 = ROTATE_S as u64 * HZ;

/// A box of the fleet: its own TSC, which read `tsc_at_start` when its (possibly skewed) clock
/// said UNIX0 + `skew_ms`. The TSC of such a box at true time UNIX0 + w ms is
/// `tsc_at_start + w`.
fn fleet_box(master: [u8; 16], tsc_at_start: u64, skew_ms: i64) -> SynCookieStage {
    let cfg = SynCookieConfig {
        rotate_every_s: ROTATE_S,
        ..config()
    };
    let unix_ms = UNIX0_MS.checked_add_signed(skew_ms).unwrap();
    SynCookieStage::new(&cfg, master, HZ)
        .unwrap()
        .with_wall_clock(WallClock {
            tsc_at_start,
            unix_ns_at_start: unix_ms * 1_000_000,
            tsc_hz: HZ,
        })
        .unwrap()
}

const TSC_A: u64 = 5_000;
const TSC_B: u64 = 987_654_321;

/// Box A answers a SYN at true time w_syn (ms after UNIX0); the client's RST reaches box B at
/// w_rst. Returns B's verdict on the RST.
fn across(a: &mut SynCookieStage, b: &mut SynCookieStage, w_syn: u64, w_rst: u64) -> StageResult {
    let mut s = syn(false, 0x0bad_cafe);
    let orig = s.clone();
    let len = reply_len(run(a, &mut s, TSC_A + w_syn));
    let mut rst = client_rst_for(&orig, &s[..len], &Shape::default());
    run(b, &mut rst, TSC_B + w_rst)
}

const AUTHENTICATED: StageResult = StageResult::Done(Verdict::Drop(DropReason::AuthHandshake));
const REJECTED: StageResult = StageResult::Done(Verdict::Drop(DropReason::CookieInvalid));

#[test]
fn fleet_cookie_from_one_box_validates_on_another() {
    let key = master_from_shared_key(b"0123456789abcdef0123");
    let mut a = fleet_box(key, TSC_A, 0);
    let mut b = fleet_box(key, TSC_B, 0);
    assert_eq!(across(&mut a, &mut b, 1_000, 1_100), AUTHENTICATED);
    assert_eq!(b.counters().rst_validated, 1);
    // Both are in the wall clock's generation, not a count of rotations since start.
    let gen = UNIX0_MS / 1000 / u64::from(ROTATE_S);
    assert_eq!(a.status(TSC_A + 1_000).secret_generation, gen);
    assert_eq!(b.status(TSC_B + 1_000).secret_generation, gen);
    assert_eq!(b.status(TSC_B + 1_000).time_counter, UNIX0_MS / 1000 / 64);
}

#[test]
fn fleet_boxes_with_different_keys_disagree() {
    let mut a = fleet_box(master_from_shared_key(b"0123456789abcdef0123"), TSC_A, 0);
    let mut b = fleet_box(master_from_shared_key(b"0123456789abcdef0124"), TSC_B, 0);
    assert_eq!(across(&mut a, &mut b, 1_000, 1_100), REJECTED);
    assert_eq!(b.counters().rst_validated, 0);
    // A box's own random secret (no shared key) does not fit the fleet either.
    let key = master_from_shared_key(b"0123456789abcdef0123");
    let mut a = fleet_box(key, TSC_A, 0);
    let mut own = SynCookieStage::new(&config(), key, HZ).unwrap();
    let mut s = syn(false, 1);
    let orig = s.clone();
    let len = reply_len(run(&mut a, &mut s, TSC_A + 1_000));
    let mut rst = client_rst_for(&orig, &s[..len], &Shape::default());
    assert_eq!(run(&mut own, &mut rst, TSC_A + 1_100), REJECTED);
}

#[test]
fn fleet_cookie_survives_a_rotation_between_boxes() {
    let key = master_from_shared_key(&[0x5a; 32]);
    let mut a = fleet_box(key, TSC_A, 0);
    let mut b = fleet_box(key, TSC_B, 0);
    // Issued 100 ms before a rotation boundary, checked 100 ms after it: B is one generation
    // (and one counter period) on, and accepts the previous one.
    assert_eq!(
        across(&mut a, &mut b, ROTATE - 100, ROTATE + 100),
        AUTHENTICATED
    );
    let gen = UNIX0_MS / 1000 / u64::from(ROTATE_S);
    assert_eq!(a.status(0).secret_generation, gen);
    assert_eq!(b.status(0).secret_generation, gen + 1);
    assert_eq!(b.counters().rotations, 1);
    // Two rotations later it is dead on every box (the counter alone would kill it too); a
    // fresh box, since the client is now allowlisted on B.
    let mut b = fleet_box(key, TSC_B, 0);
    let mut s = syn(false, 2);
    let orig = s.clone();
    let len = reply_len(run(&mut a, &mut s, TSC_A + ROTATE - 100));
    let mut rst = client_rst_for(&orig, &s[..len], &Shape::default());
    assert_eq!(run(&mut b, &mut rst, TSC_B + 2 * ROTATE + 100), REJECTED);
}

#[test]
fn fleet_clock_skew_beyond_a_window_breaks_validation() {
    let key = master_from_shared_key(&[7; 16]);
    let mut a = fleet_box(key, TSC_A, 0);
    // 30 s ahead, within the same counter period as the issue: still fine.
    let mut ahead = fleet_box(key, TSC_B, 30_000);
    assert_eq!(across(&mut a, &mut ahead, 1_000, 1_100), AUTHENTICATED);
    // 130 s ahead: two counter periods on when the RST arrives.
    let mut far_ahead = fleet_box(key, TSC_B, 130_000);
    assert_eq!(across(&mut a, &mut far_ahead, 1_000, 1_100), REJECTED);
    // 2 s behind, with a boundary in between: B is still in the period before the cookie's.
    let mut behind = fleet_box(key, TSC_B, -2_000);
    assert_eq!(across(&mut a, &mut behind, 1_000, 1_100), REJECTED);
    // The same 2 s behind away from a boundary is tolerated.
    let mut behind = fleet_box(key, TSC_B, -2_000);
    assert_eq!(across(&mut a, &mut behind, 10_000, 10_100), AUTHENTICATED);
}

#[test]
fn fleet_ignores_commanded_rotation() {
    let key = master_from_shared_key(&[9; 16]);
    let mut a = fleet_box(key, TSC_A, 0);
    let mut b = fleet_box(key, TSC_B, 0);
    assert!(a.lockstep() && !stage().lockstep());
    let gen = a.status(0).secret_generation;
    a.rotate();
    a.rotate();
    assert_eq!(a.status(0).secret_generation, gen);
    assert_eq!(a.counters().rotations, 0);
    assert_eq!(across(&mut a, &mut b, 1_000, 1_100), AUTHENTICATED);
}

#[test]
fn fleet_without_scheduled_rotation_stays_at_generation_zero() {
    let key = master_from_shared_key(&[3; 16]);
    let cfg = config(); // rotate_every_s = 0
    let wall = |tsc_at_start| WallClock {
        tsc_at_start,
        unix_ns_at_start: UNIX0_MS * 1_000_000,
        tsc_hz: HZ,
    };
    let mut a = SynCookieStage::new(&cfg, key, HZ)
        .unwrap()
        .with_wall_clock(wall(TSC_A))
        .unwrap();
    let mut b = SynCookieStage::new(&cfg, key, HZ)
        .unwrap()
        .with_wall_clock(wall(TSC_B))
        .unwrap();
    assert_eq!(across(&mut a, &mut b, 1_000, 1_100), AUTHENTICATED);
    assert_eq!(b.status(0).secret_generation, 0);
}

#[test]
fn wall_clock_that_does_not_fit_the_tsc_is_refused() {
    let bad = WallClock {
        tsc_at_start: 0,
        unix_ns_at_start: u64::MAX,
        tsc_hz: 10_000_000_000,
    };
    let e = stage().with_wall_clock(bad).err().unwrap();
    assert!(e.to_string().contains("does not fit 64 bits"), "{e}");
    // A re-measurement that cannot be expressed is refused and leaves the offset alone.
    let ok = WallClock {
        unix_ns_at_start: UNIX0_MS * 1_000_000,
        ..bad
    };
    let clock = ClockSync::new(ok).unwrap();
    let before = clock.unix_ns(0);
    assert!(clock.update(0, u64::MAX).is_err());
    assert_eq!(clock.unix_ns(0), before);
    let zero = WallClock { tsc_hz: 0, ..bad };
    assert!(zero.check().is_err());
}

#[test]
fn fleet_clock_resync_moves_every_worker_at_once() {
    let key = master_from_shared_key(&[4; 16]);
    let cfg = SynCookieConfig {
        rotate_every_s: ROTATE_S,
        ..config()
    };
    let clock = ClockSync::new(WallClock {
        tsc_at_start: TSC_A,
        unix_ns_at_start: UNIX0_MS * 1_000_000,
        tsc_hz: HZ,
    })
    .unwrap();
    let shared = Shared::new(&cfg, key, HZ);
    let mut a = SynCookieStage::with_shared(&cfg, key, HZ, &shared)
        .unwrap()
        .with_clock(clock.clone());
    let b = SynCookieStage::with_shared(&cfg, key, HZ, &shared)
        .unwrap()
        .with_clock(clock.clone());
    let tsc = TSC_A + 1_000;
    assert_eq!(clock.unix_ns(tsc), (UNIX0_MS + 1_000) * 1_000_000);
    let c0 = UNIX0_MS / 1000 / 64;
    assert_eq!(a.status(tsc).time_counter, c0);
    // The wall clock turns out 64.5 s ahead of the TSC's idea of it at `tsc`.
    let corr = clock
        .update(tsc, (UNIX0_MS + 1_000 + 64_500) * 1_000_000)
        .unwrap();
    assert_eq!(corr, 64_500_000_000);
    assert_eq!(a.status(tsc).time_counter, c0 + 1);
    assert_eq!(b.status(tsc).time_counter, c0 + 1);
    // A step back is followed too (the generation never goes back).
    assert_eq!(
        clock.update(tsc, (UNIX0_MS + 1_000) * 1_000_000).unwrap(),
        -64_500_000_000
    );
    assert_eq!(b.status(tsc).time_counter, c0);
    // The cookies follow: one issued before the correction by 64.5 s validates after it (one
    // counter period on), as on a box whose clock is right.
    let mut s = syn(false, 5);
    let orig = s.clone();
    let len = reply_len(run(&mut a, &mut s, tsc));
    let mut rst = client_rst_for(&orig, &s[..len], &Shape::default());
    clock
        .update(tsc, (UNIX0_MS + 1_000 + 64_500) * 1_000_000)
        .unwrap();
    assert_eq!(run(&mut a, &mut rst, tsc + 10), AUTHENTICATED);
}

// ---------------------------------------------------------------- proxy mode

use super::proxy::rescale;

fn proxy_stage() -> SynCookieStage {
    stage_with(|c| c.mode = Mode::Proxy)
}

/// A segment between `src` and `dst` with the given shape, header, options and payload.
#[allow(clippy::too_many_arguments)]
fn seg_between(
    shape: &Shape,
    src: IpAddr,
    dst: IpAddr,
    smac: [u8; 6],
    dmac: [u8; 6],
    t: TcpHeader,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let mut t = t;
    t.set_options(options).unwrap();
    frame(shape, src, dst, smac, dmac, |s| s.tcp_header(t), payload)
}

/// A v4 segment from the client to the server, untagged (most proxy tests need nothing else).
fn c2s(t: TcpHeader, options: &[TcpOptionElement], payload: &[u8]) -> Vec<u8> {
    segment(&Shape::default(), false, server(false), t, options, payload)
}

/// A v4 segment from the server back to the client, untagged.
fn s2c(t: TcpHeader, options: &[TcpOptionElement], payload: &[u8]) -> Vec<u8> {
    seg_between(
        &Shape::default(),
        server(false),
        client(false),
        SERVER_MAC,
        CLIENT_MAC,
        t,
        options,
        payload,
    )
}

/// Timestamps as a data segment carries them: two NOPs, then TSval `v` and TSecr `e`.
fn nop_ts(v: u32, e: u32) -> Vec<TcpOptionElement> {
    vec![
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(v, e),
    ]
}

/// The stage answered the packet itself (a SYN-ACK, ACK or RST in the buffer).
fn assert_reply(r: &StageResult) {
    assert!(
        matches!(r, StageResult::Done(Verdict::Reply { .. })),
        "{r:?}"
    );
}

/// Parses a frame and checks its IP and TCP checksums (over the payload too) with
/// etherparse; returns (link exts, TCP header, payload, src, dst, smac, dmac).
struct Parsed {
    vlans: usize,
    tcp: TcpHeader,
    payload: Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    smac: [u8; 6],
    dmac: [u8; 6],
}

fn parse_checked(f: &[u8]) -> Parsed {
    let p = PacketHeaders::from_ethernet_slice(f).expect("frame parses");
    let Some(LinkHeader::Ethernet2(e)) = &p.link else {
        panic!("no ethernet")
    };
    let Some(TransportHeader::Tcp(t)) = p.transport.clone() else {
        panic!("not TCP")
    };
    let payload = p.payload.slice().to_vec();
    let (src, dst) = match &p.net {
        Some(NetHeaders::Ipv4(h, _)) => {
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
            assert_eq!(
                t.checksum,
                t.calc_checksum_ipv4(h, &payload).unwrap(),
                "TCP checksum (v4)"
            );
            (IpAddr::from(h.source), IpAddr::from(h.destination))
        }
        Some(NetHeaders::Ipv6(h, _)) => {
            assert_eq!(
                t.checksum,
                t.calc_checksum_ipv6(h, &payload).unwrap(),
                "TCP checksum (v6)"
            );
            (IpAddr::from(h.source), IpAddr::from(h.destination))
        }
        other => panic!("not IP: {other:?}"),
    };
    Parsed {
        vlans: p.link_exts.len(),
        tcp: t,
        payload,
        src,
        dst,
        smac: e.source,
        dmac: e.destination,
    }
}

fn opts_of(t: &TcpHeader) -> crate::TcpOptions {
    let mut o = crate::TcpOptions::default();
    for e in t.options_iterator() {
        match e.unwrap() {
            TcpOptionElement::MaximumSegmentSize(m) => o.mss = Some(m),
            TcpOptionElement::WindowScale(w) => o.window_scale = Some(w),
            TcpOptionElement::SelectiveAcknowledgementPermitted => o.sack_permitted = true,
            TcpOptionElement::Timestamp(a, b) => o.timestamps = Some((a, b)),
            _ => {}
        }
    }
    o
}

fn sack_of(t: &TcpHeader) -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    for e in t.options_iterator() {
        if let TcpOptionElement::SelectiveAcknowledgement(first, rest) = e.unwrap() {
            v.push(first);
            v.extend(rest.iter().flatten());
        }
    }
    v
}

fn emitted(st: &mut SynCookieStage) -> (Vec<u8>, crate::EmitOut) {
    let (f, out) = st.take_emitted().expect("a frame was emitted");
    (f.to_vec(), out)
}

/// Runs `f` through the stage with room to grow, in direction `dir`.
fn judge(st: &mut SynCookieStage, f: &[u8], tsc: u64, dir: Direction) -> (StageResult, Vec<u8>) {
    let mut buf = f.to_vec();
    buf.resize(f.len() + 64, 0);
    let h = headers_of(f);
    let r = st.process(&mut buf, &h, &Meta { port: 0, dir, tsc });
    let len = match r {
        StageResult::Done(Verdict::Reply { len }) => usize::from(len),
        _ => f.len(),
    };
    buf.truncate(len);
    (r, buf)
}

/// Which options the client's SYN carries.
#[derive(Clone, Copy, Debug)]
struct ClientOpts {
    ts: bool,
    ws: bool,
    sack: bool,
}

/// One whole proxied connection, checked packet by packet: handshake, data both ways
/// (sequence numbers across the 2^32 wrap), SACK, timestamps, window rescaling, close.
fn proxied_exchange(v6: bool, shape: &Shape, co: ClientOpts) {
    let mut st = proxy_stage();
    let (cl, sv) = (client(v6), server(v6));
    let (cport, sport) = (40001, 443);
    let c_isn: u32 = 0xffff_fff0; // client side wraps too
    let s_isn: u32 = 0xffff_ff00;
    let mut copts = vec![TcpOptionElement::MaximumSegmentSize(1460)];
    if co.sack {
        copts.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
    }
    if co.ts {
        copts.push(TcpOptionElement::Timestamp(0x1000, 0));
    }
    if co.ws {
        copts.push(TcpOptionElement::Noop);
        copts.push(TcpOptionElement::WindowScale(6));
    }
    let to_server = |t: TcpHeader, o: &[TcpOptionElement], pl: &[u8]| {
        seg_between(shape, cl, sv, CLIENT_MAC, SERVER_MAC, t, o, pl)
    };
    let to_client = |t: TcpHeader, o: &[TcpOptionElement], pl: &[u8]| {
        seg_between(shape, sv, cl, SERVER_MAC, CLIENT_MAC, t, o, pl)
    };
    let inb = Direction::Inbound;
    let outb = Direction::Outbound;
    // Which way a parsed frame goes, by its addresses.
    let ends = |p: &Parsed| (p.src, p.dst, p.smac, p.dmac);
    let from_client = (cl, sv, CLIENT_MAC, SERVER_MAC);
    let from_server = (sv, cl, SERVER_MAC, CLIENT_MAC);

    // 1. SYN → cookie SYN-ACK: acceptable ack, window 0, options as the cookie keeps them.
    let syn = to_server(tcp_header(cport, sport, c_isn, 0, SYN), &copts, &[]);
    let (r, synack) = judge(&mut st, &syn, T0, inb);
    assert_reply(&r);
    let p = parse_checked(&synack);
    assert_eq!(ends(&p), from_server);
    assert_eq!(p.vlans, shape.vlans.len());
    assert!(p.tcp.syn && p.tcp.ack && !p.tcp.rst);
    assert_eq!(p.tcp.acknowledgment_number, c_isn.wrapping_add(1));
    assert_eq!(p.tcp.window_size, 0);
    let cookie = p.tcp.sequence_number;
    let o = opts_of(&p.tcp);
    assert_eq!(o.mss, Some(1460));
    assert_eq!(o.timestamps.is_some(), co.ts);
    assert_eq!(o.window_scale, (co.ts && co.ws).then_some(7));
    assert_eq!(o.sack_permitted, co.ts && co.sack);
    let our_tsval = o.timestamps.map_or(0, |t| t.0);
    assert_eq!(st.status(T0).counters.proxy_active, 0, "no state for a SYN");

    // 2. The client's ACK (with data, sent into the zero window): consumed; our SYN to the
    //    server is emitted towards it with the client's ISN and the options kept.
    // Timestamps only when the client offered them.
    let ts_opts = |v: u32, e: u32| if co.ts { nop_ts(v, e) } else { vec![] };
    let cts = |v: u32| ts_opts(v, our_tsval);
    // Headers by offset from each side's ISN: the client's acks count from our cookie, the
    // server's from the client's ISN (which the server's SYN carried).
    let c_hdr = |seq: u32, ack: u32, flags: u8| {
        tcp_header(
            cport,
            sport,
            c_isn.wrapping_add(seq),
            cookie.wrapping_add(ack),
            flags,
        )
    };
    let s_hdr = |seq: u32, ack: u32, flags: u8| {
        tcp_header(
            sport,
            cport,
            s_isn.wrapping_add(seq),
            c_isn.wrapping_add(ack),
            flags,
        )
    };
    let mut ack = c_hdr(1, 1, ACK);
    ack.window_size = 502;
    let ack = to_server(ack, &cts(0x1001), b"early");
    let (r, _) = judge(&mut st, &ack, T0 + 1, inb);
    assert_eq!(r, AUTHENTICATED);
    let (ssyn, out) = emitted(&mut st);
    assert_eq!(out, crate::EmitOut::Forward);
    let p = parse_checked(&ssyn);
    assert_eq!(ends(&p), from_client);
    assert_eq!(p.vlans, shape.vlans.len());
    assert!(p.tcp.syn && !p.tcp.ack);
    assert_eq!(p.tcp.sequence_number, c_isn);
    assert!(p.payload.is_empty());
    let o = opts_of(&p.tcp);
    assert_eq!(o.mss, Some(1460));
    assert_eq!(o.window_scale, (co.ts && co.ws).then_some(6));
    assert_eq!(o.sack_permitted, co.ts && co.sack);
    assert_eq!(o.timestamps, co.ts.then_some((0x1001, 0)));
    let cws = if co.ts && co.ws { 6 } else { 0 };
    assert_eq!(p.tcp.window_size, rescale(502, cws, 0));
    assert_eq!(st.status(T0).counters.proxy_active, 1);
    assert_eq!(st.status(T0).counters.proxy_opened, 1);

    // 3. The server's SYN-ACK (window scale 9, not our 7): the ACK to the server goes back,
    //    the window update to the client is emitted forward.
    let mut sopts = vec![TcpOptionElement::MaximumSegmentSize(1460)];
    if co.ts {
        sopts.push(TcpOptionElement::Timestamp(0x9000_0000, 0x1001));
    }
    if co.ts && co.ws {
        sopts.push(TcpOptionElement::Noop);
        sopts.push(TcpOptionElement::WindowScale(9));
    }
    let mut sa = s_hdr(0, 1, SYN | ACK);
    sa.window_size = 65160;
    let sa = to_client(sa, &sopts, &[]);
    let (r, sack_ack) = judge(&mut st, &sa, T0 + 2, outb);
    assert_reply(&r);
    let p = parse_checked(&sack_ack);
    assert_eq!(ends(&p), from_client);
    assert!(p.tcp.ack && !p.tcp.syn);
    assert_eq!(p.tcp.sequence_number, c_isn.wrapping_add(1));
    assert_eq!(p.tcp.acknowledgment_number, s_isn.wrapping_add(1));
    assert_eq!(
        p.tcp.window_size, 502,
        "the client's window, in its own scale"
    );
    assert_eq!(
        opts_of(&p.tcp).timestamps,
        co.ts.then_some((0x1001, 0x9000_0000))
    );
    let (wu, out) = emitted(&mut st);
    assert_eq!(out, crate::EmitOut::Forward);
    let p = parse_checked(&wu);
    assert_eq!(ends(&p), from_server);
    assert!(p.tcp.ack && !p.tcp.syn);
    assert_eq!(p.tcp.sequence_number, cookie.wrapping_add(1));
    assert_eq!(p.tcp.acknowledgment_number, c_isn.wrapping_add(1));
    let ows = if co.ts && co.ws { 7 } else { 0 };
    assert_eq!(p.tcp.window_size, rescale(65160, 0, ows));
    assert_eq!(
        opts_of(&p.tcp).timestamps,
        co.ts.then_some((our_tsval, 0x1001))
    );
    assert_eq!(st.status(T0).counters.proxy_established, 1);

    // 4. Client data with a SACK block (in the client's view of the server's numbers).
    let delta = s_isn.wrapping_sub(cookie);
    let mut o = cts(0x1002);
    if co.sack && co.ts {
        o.push(TcpOptionElement::Noop);
        o.push(TcpOptionElement::Noop);
        o.push(TcpOptionElement::SelectiveAcknowledgement(
            (cookie.wrapping_add(1001), cookie.wrapping_add(2001)),
            [None, None, None],
        ));
    }
    let mut d = c_hdr(1, 1, ACK | TcpInfo::PSH);
    d.window_size = 500;
    let data = to_server(d, &o, b"GET / HTTP/1.0\r\n\r\n");
    let (r, f) = judge(&mut st, &data, T0 + 3, inb);
    assert_eq!(r, StageResult::Continue);
    let p = parse_checked(&f);
    assert_eq!(p.payload, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(p.tcp.sequence_number, c_isn.wrapping_add(1));
    assert_eq!(p.tcp.acknowledgment_number, s_isn.wrapping_add(1));
    assert_eq!(p.tcp.window_size, 500);
    if co.ts {
        // The client echoes the server's TSval in our clock; the server gets its own back.
        assert_eq!(opts_of(&p.tcp).timestamps, Some((0x1002, 0x9000_0000)));
    }
    if co.sack && co.ts {
        assert_eq!(
            sack_of(&p.tcp),
            vec![(s_isn.wrapping_add(1001), s_isn.wrapping_add(2001))]
        );
    }

    // 5. Server data: its sequence numbers and TSval move into the client's view, its window
    //    into our scale.
    let so = ts_opts(0x9000_0010, 0x1002);
    let mut d = s_hdr(1, 19, ACK);
    d.window_size = 300;
    let data = to_client(d, &so, &[0xab; 300]);
    let (r, f) = judge(&mut st, &data, T0 + 4, outb);
    assert_eq!(r, StageResult::Continue);
    let p = parse_checked(&f);
    assert_eq!(p.payload, vec![0xab; 300]);
    assert_eq!(p.tcp.sequence_number, cookie.wrapping_add(1));
    assert_eq!(
        p.tcp.sequence_number.wrapping_add(delta),
        s_isn.wrapping_add(1)
    );
    assert_eq!(p.tcp.acknowledgment_number, c_isn.wrapping_add(19));
    let sws = if co.ts && co.ws { 9 } else { 0 };
    assert_eq!(p.tcp.window_size, rescale(300, sws, ows));
    if co.ts {
        assert_eq!(opts_of(&p.tcp).timestamps, Some((our_tsval + 0x10, 0x1002)));
    }

    // 6. Close: client FIN, server FIN+ACK, client's last ACK → the entry is gone.
    let fin = to_server(c_hdr(19, 301, ACK | FIN), &cts(0x1003), &[]);
    assert_eq!(judge(&mut st, &fin, T0 + 5, inb).0, StageResult::Continue);
    let sfin = to_client(s_hdr(301, 20, ACK | FIN), &so, &[]);
    let (r, f) = judge(&mut st, &sfin, T0 + 6, outb);
    assert_eq!(r, StageResult::Continue);
    assert_eq!(
        parse_checked(&f).tcp.sequence_number,
        cookie.wrapping_add(301)
    );
    assert_eq!(st.status(T0).counters.proxy_active, 1);
    let last = to_server(c_hdr(20, 302, ACK), &cts(0x1004), &[]);
    let (r, f) = judge(&mut st, &last, T0 + 7, inb);
    assert_eq!(r, StageResult::Continue);
    assert_eq!(
        parse_checked(&f).tcp.acknowledgment_number,
        s_isn.wrapping_add(302)
    );
    let c = st.status(T0).counters;
    assert_eq!((c.proxy_active, c.proxy_closed), (0, 1), "{c:?}");
    assert_eq!(c.allowlist_hits, 0);
    assert_eq!(
        st.allowlist.occupied(),
        0,
        "proxied clients stay off the allowlist"
    );
}

#[test]
fn proxy_exchange_every_option_combination_v4_v6_vlan() {
    let shapes = [
        Shape::default(),
        Shape {
            vlans: vec![100],
            ..Shape::default()
        },
        Shape {
            vlans: vec![100, 200],
            ..Shape::default()
        },
    ];
    for v6 in [false, true] {
        for shape in &shapes {
            for bits in 0..8u8 {
                let co = ClientOpts {
                    ts: bits & 1 != 0,
                    ws: bits & 2 != 0,
                    sack: bits & 4 != 0,
                };
                proxied_exchange(v6, shape, co);
            }
        }
    }
}

/// SYN and cookie ACK for one client port, through to the emitted SYN.
fn proxy_open(st: &mut SynCookieStage, port: u16, tsc: u64) -> (u32, u32) {
    let syn = c2s(
        tcp_header(port, 443, 5000, 0, SYN),
        &[TcpOptionElement::MaximumSegmentSize(1460)],
        &[],
    );
    let (_, synack) = judge(st, &syn, tsc, Direction::Inbound);
    let cookie = parse_checked(&synack).tcp.sequence_number;
    let ack = c2s(
        tcp_header(port, 443, 5001, cookie.wrapping_add(1), ACK),
        &[],
        &[],
    );
    let (r, _) = judge(st, &ack, tsc, Direction::Inbound);
    (cookie, u32::from(r == AUTHENTICATED))
}

#[test]
fn proxy_spoofed_flood_creates_no_state() {
    let mut st = proxy_stage();
    for i in 0..2000u32 {
        let src: IpAddr = Ipv4Addr::from(0x0b00_0000 + i).into();
        let syn = seg_between(
            &Shape::default(),
            src,
            server(false),
            CLIENT_MAC,
            SERVER_MAC,
            tcp_header(1024 + i as u16, 443, i, 0, SYN),
            &linux_syn_options(),
            &[],
        );
        let (r, _) = judge(&mut st, &syn, T0, Direction::Inbound);
        assert_reply(&r);
        // Blind ACKs with guessed cookies.
        let ack = seg_between(
            &Shape::default(),
            src,
            server(false),
            CLIENT_MAC,
            SERVER_MAC,
            tcp_header(
                1024 + i as u16,
                443,
                i + 1,
                i.wrapping_mul(2_654_435_761),
                ACK,
            ),
            &[],
            &[],
        );
        let (r, _) = judge(&mut st, &ack, T0, Direction::Inbound);
        assert_eq!(r, REJECTED);
        assert!(st.take_emitted().is_none());
    }
    let c = st.status(T0).counters;
    assert_eq!(
        (c.proxy_active, c.proxy_opened, c.syn_answered),
        (0, 0, 2000)
    );
    // An unrelated server packet is not touched (no entry).
    let stray = s2c(tcp_header(443, 40000, 1, 2, SYN | ACK), &[], &[]);
    assert_eq!(
        judge(&mut st, &stray, T0, Direction::Outbound).0,
        StageResult::Continue
    );
}

#[test]
fn proxy_table_full_falls_back_to_auth_then_reset() {
    let mut st = stage_with(|c| {
        c.mode = Mode::Proxy;
        c.proxy_capacity = 16; // one bucket
    });
    for port in 0..16 {
        assert_eq!(proxy_open(&mut st, 30000 + port, T0).1, 1);
    }
    let c = st.status(T0).counters;
    assert_eq!((c.proxy_active, c.proxy_capacity), (16, 16));
    // Full: the next SYN is answered auth-style (ack = cookie, not ISN + 1).
    let syn = c2s(tcp_header(31000, 443, 5000, 0, SYN), &[], &[]);
    let (_, synack) = judge(&mut st, &syn, T0, Direction::Inbound);
    let p = parse_checked(&synack);
    assert_eq!(p.tcp.acknowledgment_number, p.tcp.sequence_number);
    assert_eq!(st.status(T0).counters.proxy_full_auth, 1);
    // A valid cookie ACK that meets a full table gets the classic RST and allowlists.
    let mut st2 = stage_with(|c| {
        c.mode = Mode::Proxy;
        c.proxy_capacity = 16;
    });
    let syn = c2s(tcp_header(32000, 443, 5000, 0, SYN), &[], &[]);
    let (_, synack) = judge(&mut st2, &syn, T0, Direction::Inbound);
    let cookie = parse_checked(&synack).tcp.sequence_number;
    for port in 0..16 {
        proxy_open(&mut st2, 30000 + port, T0);
    }
    let ack = c2s(
        tcp_header(32000, 443, 5001, cookie.wrapping_add(1), ACK),
        &[],
        &[],
    );
    let (r, rst) = judge(&mut st2, &ack, T0, Direction::Inbound);
    assert_reply(&r);
    assert!(parse_checked(&rst).tcp.rst);
    let c = st2.status(T0).counters;
    assert_eq!((c.proxy_full_reset, c.proxy_active), (1, 16));
    assert!(st2.allowlist.check(client(false), T0));
}

#[test]
fn proxy_entries_go_on_rst_and_idle_and_syn_is_resent() {
    let mut st = proxy_stage();
    let (cookie, _) = proxy_open(&mut st, 30000, T0);
    let _ = st.take_emitted();
    // The client's zero-window probe before the server answered: dropped, SYN sent again.
    let probe = c2s(
        tcp_header(30000, 443, 5000, cookie.wrapping_add(1), ACK),
        &[],
        &[],
    );
    let (r, _) = judge(&mut st, &probe, T0 + 1, Direction::Inbound);
    assert_eq!(r, AUTHENTICATED);
    let (syn, _) = emitted(&mut st);
    assert!(parse_checked(&syn).tcp.syn);
    assert_eq!(st.status(T0).counters.proxy_syn_resent, 1);
    // The server refuses: the client gets a RST it accepts; the entry goes.
    let refuse = s2c(tcp_header(443, 30000, 0, 5001, RST | ACK), &[], &[]);
    let (r, f) = judge(&mut st, &refuse, T0 + 2, Direction::Outbound);
    assert_eq!(r, StageResult::Done(Verdict::Forward));
    let p = parse_checked(&f[..f.len()]);
    assert!(p.tcp.rst);
    assert_eq!(p.tcp.sequence_number, cookie.wrapping_add(1));
    assert_eq!(st.status(T0).counters.proxy_active, 0);

    // A new SYN on the ports of a live entry replaces it: answered with a cookie, no state.
    proxy_open(&mut st, 30002, T0);
    assert_eq!(st.status(T0).counters.proxy_active, 1);
    let again = c2s(tcp_header(30002, 443, 9000, 0, SYN), &[], &[]);
    let (r, _) = judge(&mut st, &again, T0 + 3, Direction::Inbound);
    assert_reply(&r);
    assert_eq!(st.status(T0).counters.proxy_active, 0);

    // Idle: an entry nobody talks on is reclaimed after proxy_idle_s by the sweep.
    proxy_open(&mut st, 30001, T0);
    assert_eq!(st.status(T0).counters.proxy_active, 1);
    let idle = T0 + 301 * HZ;
    let cap = st.status(T0).counters.proxy_capacity;
    let other = c2s(tcp_header(1, 443, 1, 1, ACK), &[], &[]);
    for _ in 0..cap {
        judge(&mut st, &other, idle, Direction::Inbound);
    }
    let c = st.status(idle).counters;
    assert_eq!((c.proxy_active, c.proxy_idle_expired), (0, 1), "{c:?}");
}

#[test]
fn proxy_mode_parses_from_toml() {
    let c: SynCookieConfig = toml::from_str(
        "mode = \"proxy\"\nproxy_capacity = 1000\nproxy_idle_s = 60\nproxy_wscale = 9\n",
    )
    .unwrap();
    assert_eq!(
        (c.mode, c.proxy_capacity, c.proxy_idle_s, c.proxy_wscale),
        (Mode::Proxy, 1000, 60, 9)
    );
    assert!(toml::from_str::<SynCookieConfig>("proxy_wscale = 300").is_err());
}

/// A proxy stage with one established connection: client port 30000 → server 443.
fn proxy_established() -> SynCookieStage {
    let mut st = proxy_stage();
    proxy_open(&mut st, 30000, T0);
    let sa = s2c(tcp_header(443, 30000, 77, 5001, SYN | ACK), &[], &[]);
    let (r, _) = judge(&mut st, &sa, T0, Direction::Outbound);
    assert_reply(&r);
    assert_eq!(st.status(T0).counters.proxy_established, 1);
    st
}

proptest! {
    /// Proxy mode: whatever the buffer holds and however the summary of a packet of a live
    /// proxied connection (either way) disagrees with it, no panic, a reply never longer than
    /// the buffer, and an emitted frame never longer than the emit buffer.
    #[test]
    fn proxy_arbitrary_buffers_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..160),
        l3_off in 0u16..200, l4_off in 0u16..200, flags in any::<u8>(),
        seq in any::<u32>(), ack in any::<u32>(), outbound in any::<bool>(),
        ts in proptest::option::of(any::<(u32, u32)>()), ws in proptest::option::of(any::<u8>()),
        mixed in any::<bool>(), tsc in 0u64..1000,
    ) {
        let mut st = proxy_established();
        let f = if outbound {
            tcp_between(server(false), 443, client(false), 30000, ACK)
        } else {
            tcp_between(client(false), 30000, server(false), 443, ACK)
        };
        let mut h = headers_of(&f);
        h.l3_off = l3_off;
        if let Net::Ip(ip) = &mut h.net {
            ip.l4_off = l4_off;
            if mixed {
                ip.dst = client(true);
            }
            if let Transport::Tcp(t) = &mut ip.transport {
                t.flags = flags;
                t.seq = seq;
                t.ack = ack;
                t.options.timestamps = ts;
                t.options.window_scale = ws;
            }
        }
        let dir = if outbound { Direction::Outbound } else { Direction::Inbound };
        let mut buf = bytes.clone();
        let r = st.process(&mut buf, &h, &Meta { port: 0, dir, tsc: T0 + tsc });
        if let StageResult::Done(Verdict::Reply { len }) = r {
            prop_assert!(usize::from(len) <= buf.len());
        }
        prop_assert_eq!(buf.len(), bytes.len());
        if let Some((e, _)) = st.take_emitted() {
            prop_assert!(e.len() <= crate::emit::EMIT_MAX);
        }
    }
}

/// Not a test: the stage's cost per packet in proxy mode against auth mode, printed (run with
/// `cargo test --release -p pipeline --lib proxy_cost -- --ignored --nocapture`). Timings on a
/// shared machine are noisy; nothing is asserted about them.
#[test]
#[ignore]
fn proxy_cost_per_packet() {
    use std::time::Instant;
    const N: u32 = 2_000_000;
    let time = |name: &str, st: &mut SynCookieStage, f: &[u8], dir: Direction| {
        let h = headers_of(f);
        let mut buf = f.to_vec();
        buf.resize(f.len() + 64, 0);
        let t0 = Instant::now();
        for i in 0..N {
            buf[..f.len()].copy_from_slice(f);
            let r = st.process(
                &mut buf,
                &h,
                &Meta {
                    port: 0,
                    dir,
                    tsc: T0 + u64::from(i >> 16),
                },
            );
            std::hint::black_box(r);
            std::hint::black_box(st.take_emitted().is_some());
        }
        let ns = t0.elapsed().as_secs_f64() * 1e9 / f64::from(N);
        println!(
            "{name:<44} {ns:6.1} ns/packet ({:5.1} Mpps)",
            1e3 / ns.max(1e-9)
        );
    };
    let payload = [0x55u8; 1000];
    let cdata = c2s(
        tcp_header(30000, 443, 5001, 100, ACK),
        &nop_ts(1, 2),
        &payload,
    );
    let sdata = s2c(
        tcp_header(443, 30000, 100, 5001, ACK),
        &nop_ts(3, 4),
        &payload,
    );
    let mut proxy = proxy_established();
    time(
        "proxy: client data (ack, TSecr translated)",
        &mut proxy,
        &cdata,
        Direction::Inbound,
    );
    time(
        "proxy: server data (seq, TSval translated)",
        &mut proxy,
        &sdata,
        Direction::Outbound,
    );
    let mut auth = stage();
    authenticate(&mut auth, client(false), T0);
    time(
        "auth: allowlisted client data",
        &mut auth,
        &cdata,
        Direction::Inbound,
    );
    time(
        "auth: server data (outbound)",
        &mut auth,
        &sdata,
        Direction::Outbound,
    );
    let syn = syn(false, 1);
    let mut proxy = proxy_stage();
    time(
        "proxy: SYN answered (cookie SYN-ACK, options)",
        &mut proxy,
        &syn,
        Direction::Inbound,
    );
    let mut auth = stage();
    time("auth: SYN answered", &mut auth, &syn, Direction::Inbound);
}

proptest! {
    /// `unanswerable`'s numeric IPv4 tests are `Ipv4Addr`'s own predicates.
    #[test]
    fn unanswerable_v4_is_the_std_predicates(s in any::<u32>(), d in any::<u32>(), same in any::<bool>()) {
        let d = if same { s } else { d };
        let (a, b) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
        let expected = a == b || a.is_unspecified() || a.is_multicast() || a.is_loopback() || a.is_broadcast();
        prop_assert_eq!(unanswerable(IpAddr::V4(a), IpAddr::V4(b)), expected);
        for special in [0u32, 0x7f00_0001, 0xe000_0001, 0xefff_ffff, u32::MAX, 0xc000_0201] {
            let a = Ipv4Addr::from(special);
            let expected = a == b || a.is_unspecified() || a.is_multicast() || a.is_loopback() || a.is_broadcast();
            prop_assert_eq!(unanswerable(IpAddr::V4(a), IpAddr::V4(b)), expected);
        }
    }
}
