//! scrubd's scrubbing brain: parses frames and decides, per packet, whether to forward, answer or drop.
//!
//! Nothing here knows about DPDK. Workers hand in `&mut [u8]` views of received frames plus a small
//! [`Meta`] (RX port, TSC); the pipeline returns a [`Verdict`] and counts it. Keeping DPDK out lets
//! every stage be unit tested, fuzzed and benchmarked without an EAL.
//!
//! # Overview
//!
//! * [`wire`] reads and writes protocol headers through zero-copy views;
//!   [`wire::parse::parse`] walks a frame once into [`Headers`], the summary every stage reads.
//! * [`PipelineConfig`] is the daemon's `[pipeline]` section. [`Policy::build`] compiles it
//!   once, off the packet path, and [`Policy::worker`] hands each worker its own [`Pipeline`].
//! * [`Pipeline::process`] judges one frame and returns its [`Verdict`]: forward it, send the
//!   buffer back rewritten into a reply, or drop it for a counted [`DropReason`].
//!
//! # Example: parse a frame
//!
//! The views that parse also build. This writes a TCP SYN from 203.0.113.9:40000 to
//! 198.51.100.20:80 into a buffer, then parses it back.
//!
//! ```
//! use pipeline::wire::{ethernet, ip_protocol, ipv4, parse::parse, tcp};
//! use pipeline::{IpVersion, TcpInfo, Transport};
//!
//! let (client, server) = ([203, 0, 113, 9], [198, 51, 100, 20]);
//! let mut frame = [0u8; 14 + 20 + 20];
//! let (eth, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
//! let (ip, seg) = rest.split_at_mut(ipv4::MIN_HEADER_LEN);
//!
//! let mut e = ethernet::Frame::new_unchecked(eth);
//! e.set_dst_addr([0x02, 0, 0, 0, 0, 1]);
//! e.set_src_addr([0x02, 0, 0, 0, 0, 2]);
//! e.set_ethertype(ethernet::ETHERTYPE_IPV4);
//!
//! let mut t = tcp::Packet::new_unchecked(&mut *seg);
//! t.set_src_port(40000);
//! t.set_dst_port(80);
//! t.set_seq(0x1234_5678);
//! t.set_header_len(tcp::MIN_HEADER_LEN);
//! t.set_flags(TcpInfo::SYN);
//! t.set_window(64240);
//! t.fill_checksum_v4(client, server);
//!
//! let mut p = ipv4::Packet::new_unchecked(ip);
//! p.set_version(4);
//! p.set_header_len(ipv4::MIN_HEADER_LEN);
//! p.set_total_len((ipv4::MIN_HEADER_LEN + tcp::MIN_HEADER_LEN) as u16);
//! p.set_ttl(64);
//! p.set_protocol(ip_protocol::TCP);
//! p.set_src_addr(client);
//! p.set_dst_addr(server);
//! p.fill_checksum();
//!
//! let hdr = parse(&frame).expect("a well-formed SYN");
//! let ip = hdr.ip().expect("an IP packet");
//! assert_eq!(ip.version, IpVersion::V4);
//! assert_eq!(ip.proto, ip_protocol::TCP);
//! assert_eq!(ip.dst.to_string(), "198.51.100.20");
//! let Transport::Tcp(syn) = ip.transport else { panic!("not TCP") };
//! assert_eq!((syn.sport, syn.dport, syn.flags), (40000, 80, TcpInfo::SYN));
//!
//! // A frame cut short of its IPv4 total length is refused with the precise reason.
//! assert_eq!(parse(&frame[..40]), Err(pipeline::Malformed::Ipv4BadTotalLength));
//! ```
//!
//! # Example: run a policy and read the verdict
//!
//! A policy protecting 198.51.100.20 with SYN cookies answers a SYN itself: the buffer is
//! rewritten into a SYN-ACK and [`Verdict::Reply`] says how long it now is. In the default
//! auth mode that SYN-ACK acknowledges a cookie instead of the client's ISN; a real client
//! answers with a RST carrying the cookie, which authenticates its address, and its next SYN
//! passes. An ACK from a source that never did this is dropped, and so is anything from a
//! denied prefix.
//!
//! ```
//! use pipeline::wire::{ethernet, ip_protocol, ipv4, parse::parse, tcp};
//! use pipeline::{DropReason, Meta, Policy, PipelineConfig, TcpInfo, Transport, Verdict};
//!
//! # /// A bare TCP segment from `client`:40000 to 198.51.100.20:80, built as in the first
//! # /// example.
//! # fn segment(client: [u8; 4], flags: u8, seq: u32, ack: u32) -> [u8; 54] {
//! #     let server = [198, 51, 100, 20];
//! #     let mut frame = [0u8; 54];
//! #     let (eth, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
//! #     let (ip, seg) = rest.split_at_mut(ipv4::MIN_HEADER_LEN);
//! #     ethernet::Frame::new_unchecked(eth).set_ethertype(ethernet::ETHERTYPE_IPV4);
//! #     let mut t = tcp::Packet::new_unchecked(&mut *seg);
//! #     t.set_src_port(40000);
//! #     t.set_dst_port(80);
//! #     t.set_seq(seq);
//! #     t.set_ack(ack);
//! #     t.set_header_len(tcp::MIN_HEADER_LEN);
//! #     t.set_flags(flags);
//! #     t.set_window(64240);
//! #     t.fill_checksum_v4(client, server);
//! #     let mut p = ipv4::Packet::new_unchecked(ip);
//! #     p.set_version(4);
//! #     p.set_header_len(ipv4::MIN_HEADER_LEN);
//! #     p.set_total_len(40);
//! #     p.set_ttl(64);
//! #     p.set_protocol(ip_protocol::TCP);
//! #     p.set_src_addr(client);
//! #     p.set_dst_addr(server);
//! #     p.fill_checksum();
//! #     frame
//! # }
//! let cfg: PipelineConfig = toml::from_str(
//!     r#"
//!     [acl]
//!     allow = []
//!     deny = ["192.0.2.0/24"]
//!
//!     [syncookie]
//!     protected = ["198.51.100.20/32"]
//!     "#,
//! )?;
//! let tsc_hz = 1_000_000_000;
//! let policy = Policy::build(&cfg, tsc_hz, *b"example secret!!")?;
//! let mut worker = policy.worker();
//! let meta = Meta { tsc: 5 * tsc_hz, ..Meta::default() };
//! let client = [203, 0, 113, 9];
//! let isn = 0x1234_5678;
//!
//! // The SYN is answered in place; the buffer has room for the MSS option the reply adds.
//! let mut buf = [0u8; 128];
//! buf[..54].copy_from_slice(&segment(client, TcpInfo::SYN, isn, 0));
//! let Verdict::Reply { len } = worker.process(&mut buf, 54, &meta) else {
//!     panic!("a SYN to a protected prefix is answered");
//! };
//! let reply = parse(&buf[..usize::from(len)]).expect("the reply parses");
//! let ip = reply.ip().expect("the reply is IP");
//! assert_eq!(ip.src.to_string(), "198.51.100.20");
//! assert_eq!(ip.dst.to_string(), "203.0.113.9");
//! let Transport::Tcp(synack) = ip.transport else { panic!("the reply is TCP") };
//! assert_eq!(synack.flags, TcpInfo::SYN | TcpInfo::ACK);
//! assert_ne!(synack.ack, isn + 1, "auth mode acknowledges the cookie");
//!
//! // The client's RST echoes the cookie: its address is proven, the RST itself is consumed.
//! let mut rst = segment(client, TcpInfo::RST, synack.ack, 0);
//! assert_eq!(
//!     worker.process(&mut rst, 54, &meta),
//!     Verdict::Drop(DropReason::AuthHandshake)
//! );
//! // Its SYN retransmission now goes on to the server.
//! let mut syn = segment(client, TcpInfo::SYN, isn, 0);
//! assert_eq!(worker.process(&mut syn, 54, &meta), Verdict::Forward);
//!
//! // An ACK from another source, whose acknowledgement number is no cookie of ours, is dropped.
//! let mut ack = segment([203, 0, 113, 10], TcpInfo::ACK, isn + 1, 0x0bad_cafe);
//! assert_eq!(
//!     worker.process(&mut ack, 54, &meta),
//!     Verdict::Drop(DropReason::CookieInvalid)
//! );
//!
//! // The ACL stage runs first: a denied source is dropped whatever it sends.
//! let mut denied = segment([192, 0, 2, 7], TcpInfo::SYN, isn, 0);
//! assert_eq!(
//!     worker.process(&mut denied, 54, &meta),
//!     Verdict::Drop(DropReason::AclDeny)
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod counters;
pub mod emit;
pub mod foldhash;
pub mod headers;
pub mod lpm;
pub mod offenders;
pub mod pipeline;
pub mod prefix;
pub mod shared_set;
pub mod siphash;
pub mod stage;
pub mod stage_counters;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
pub mod update;
pub mod verdict;
pub mod wire;

pub use counters::VerdictCounters;
pub use emit::{Emit, EmitOut};
pub use headers::{Frag, Headers, IpHeaders, IpVersion, Net, TcpInfo, TcpOptions, Transport};
pub use pipeline::{Pipeline, PipelineConfig, Policy, PolicyError};
pub use update::Update;
pub use verdict::{DropReason, Malformed, Verdict};

/// Which side of the box a frame entered from. scrubd protects the inside from the outside:
/// every stage documents what it does in each direction (see [`Pipeline::process`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received on an outside (Internet-facing) port, on its way to the protected network.
    #[default]
    Inbound,
    /// Received on an inside port: the protected network talking to the outside.
    Outbound,
}

/// Per-packet metadata supplied by the data path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Index of the port the frame arrived on (the data path's numbering).
    pub port: u16,
    /// The side of the box that port is on.
    pub dir: Direction,
    /// TSC value read once per burst; stages derive time from it instead of calling the clock.
    pub tsc: u64,
}
