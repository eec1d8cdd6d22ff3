//! `scrubgen`: traffic for a live scrubber with the ground truth of every packet.
//!
//! Generators like Pktgen-DPDK or TRex say how many packets went out and came back, not which
//! of them *should* have come back. Here every generated packet belongs to a [`Class`] with an
//! expected fate ([`Expect`]), and carries its class back to the receive side:
//!
//! * in a 16-byte trailer at the end of its L4 payload ([`Tag`]: class, worker, sequence and
//!   the TSC at transmission) when it has a payload;
//! * otherwise (SYNs, the ACK flood, the clients' RSTs) through its TCP flags and a per-worker
//!   side table keyed by the client's address and port ([`FlowTable`]), which also holds the
//!   TSC for the latency of the scrubber's SYN-ACK answers.
//!
//! The receive side counts, per class, what was sent, passed (arrived on the inside port) and
//! answered (a reply of the scrubber arrived back on the outside port); [`Tally`] turns that
//! into false-pass (attack that got through) and false-drop (legitimate traffic lost).
//!
//! Legitimate TCP clients really answer the scrubber's SYN-cookie challenge (auth mode): on the
//! cookie SYN-ACK they send a RST whose sequence number is the SYN-ACK's acknowledgment number,
//! re-send their SYN, and once a SYN of theirs reaches the inside (the server) they send their
//! data segments. All of that is built from the received frame itself, so a client keeps no
//! state of its own. The modules below hold no `unsafe` and no DPDK: the `scrubgen` binary
//! drives them from its lcores, and they are unit-tested here without a device.

pub mod build;
pub mod profile;
pub mod rx;
pub mod tally;

pub use build::{Built, Gen, MAX_FRAME};
pub use profile::{Profile, ProfileError};
pub use rx::{classify, Arrival, FlowTable, Port};
pub use tally::{ClassCounts, Latency, RunReport, Tally};

/// The classes of generated traffic. The discriminant is the id carried in the [`Tag`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Class {
    /// A legitimate client's first SYN: answered by the cookie SYN-ACK, or passed when the
    /// client's address is already authenticated.
    LegitSyn = 0,
    /// A legitimate client's RST answering the cookie SYN-ACK: the scrubber validates and drops it.
    LegitRst = 1,
    /// The SYN a client re-sends after its RST: passes (its source is authenticated now).
    LegitSynAgain = 2,
    /// A legitimate client's data segment (sent once a SYN of its reached the server).
    LegitData = 3,
    /// Random-spoofed SYN to a protected address: answered with a cookie, never passed.
    SynFlood = 4,
    /// Random-source ACK with a forged cookie: dropped.
    AckFlood = 5,
    /// UDP reflection (DNS, NTP, memcached, CLDAP, SSDP answers): dropped.
    UdpReflection = 6,
    /// ICMP / ICMPv6 echo flood: dropped.
    IcmpFlood = 7,
    /// UDP payload that a signature rule drops.
    SignatureHit = 8,
    /// UDP payload close to the rule's but not matching it: passes.
    SignatureMiss = 9,
    /// A frame of a replayed capture: fate unknown, counted only.
    Replay = 10,
}

/// Number of classes; class ids are `0..CLASSES`.
pub const CLASSES: usize = 11;

impl Class {
    pub const ALL: [Class; CLASSES] = [
        Class::LegitSyn,
        Class::LegitRst,
        Class::LegitSynAgain,
        Class::LegitData,
        Class::SynFlood,
        Class::AckFlood,
        Class::UdpReflection,
        Class::IcmpFlood,
        Class::SignatureHit,
        Class::SignatureMiss,
        Class::Replay,
    ];

    pub fn from_id(id: u8) -> Option<Class> {
        Class::ALL.get(usize::from(id)).copied()
    }

    pub fn id(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::LegitSyn => "legit-syn",
            Class::LegitRst => "legit-rst",
            Class::LegitSynAgain => "legit-syn-again",
            Class::LegitData => "legit-data",
            Class::SynFlood => "syn-flood",
            Class::AckFlood => "ack-flood",
            Class::UdpReflection => "udp-reflection",
            Class::IcmpFlood => "icmp-flood",
            Class::SignatureHit => "signature-hit",
            Class::SignatureMiss => "signature-miss",
            Class::Replay => "replay",
        }
    }

    /// What a correctly configured scrubber does with this class (the harness's policy:
    /// SYN cookies in auth mode for the protected prefixes with UDP and ICMP from
    /// unauthenticated sources dropped, and the signature rule of [`SIGNATURE_RULE`]).
    pub fn expect(self) -> Expect {
        match self {
            Class::LegitSyn => Expect::AnswerOrPass,
            Class::LegitRst | Class::AckFlood | Class::UdpReflection | Class::IcmpFlood => {
                Expect::Drop
            }
            Class::SignatureHit => Expect::Drop,
            Class::LegitSynAgain | Class::LegitData | Class::SignatureMiss => Expect::Pass,
            Class::SynFlood => Expect::Answer,
            Class::Replay => Expect::Unknown,
        }
    }

    /// Whether the class is attack traffic (its passing is a false pass).
    pub fn is_attack(self) -> bool {
        matches!(
            self,
            Class::SynFlood
                | Class::AckFlood
                | Class::UdpReflection
                | Class::IcmpFlood
                | Class::SignatureHit
        )
    }
}

/// The fate a class is meant to meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Forwarded to the inside.
    Pass,
    /// Answered by the scrubber itself (a reply back out of the outside port).
    Answer,
    /// Either (a legitimate SYN: challenged, or passed once its source is authenticated).
    AnswerOrPass,
    /// Dropped.
    Drop,
    /// Not judged (replayed captures).
    Unknown,
}

/// The signature rule the harness installs: drops UDP payloads carrying [`SIGNATURE_HIT`].
pub const SIGNATURE_RULE: &str = "drop udp any any -> any any (msg:\"scrubgen signature hit\"; content:\"SCRUBGEN-EVIL\"; sid:4200001; rev:1;)";
/// Payload prefix of [`Class::SignatureHit`].
pub const SIGNATURE_HIT: &[u8] = b"SCRUBGEN-EVIL-REQUEST ";
/// Payload prefix of [`Class::SignatureMiss`]: same length, one word different.
pub const SIGNATURE_MISS: &[u8] = b"SCRUBGEN-GOOD-REQUEST ";

/// The protected prefixes of the harness's policy (the documentation ranges of RFC 5737 and
/// RFC 3849): every TCP class, the reflection and the ICMP flood are aimed at them.
pub const PROTECTED_V4: [u8; 4] = [198, 51, 100, 0];
pub const PROTECTED_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];
/// `protected` entries for scrubd's `[pipeline.syncookie]`.
pub const PROTECTED: [&str; 2] = ["198.51.100.0/24", "2001:db8:100::/64"];
/// The unprotected server the signature classes go to.
pub const OPEN_SERVER_V4: [u8; 4] = [192, 0, 2, 80];
/// Legitimate clients' prefixes, 100.64.0.0/16 and 2001:db8:c11e::/64 (never used as a
/// spoofed source).
pub const CLIENTS_V4: [u8; 2] = [100, 64];
pub const CLIENTS_V6: [u8; 8] = [0x20, 0x01, 0x0d, 0xb8, 0xc1, 0x1e, 0, 0];

/// The ground-truth trailer: the last [`Tag::LEN`] bytes of a generated packet's L4 payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    pub class: Class,
    /// Index of the generator worker that sent it.
    pub worker: u8,
    /// Per-worker, per-class sequence number (wraps).
    pub seq: u32,
    /// The sender's TSC when the packet was built.
    pub tsc: u64,
}

impl Tag {
    pub const LEN: usize = 16;
    /// Distinguishes a tag from payload bytes that happen to end a packet.
    pub const MAGIC: [u8; 2] = [0x53, 0x47];

    pub fn write(&self, out: &mut [u8; Tag::LEN]) {
        out[0..2].copy_from_slice(&Tag::MAGIC);
        out[2] = self.class.id();
        out[3] = self.worker;
        out[4..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..16].copy_from_slice(&self.tsc.to_be_bytes());
    }

    /// The tag ending `payload`, if there is one.
    pub fn read(payload: &[u8]) -> Option<Tag> {
        let t = payload.get(payload.len().checked_sub(Tag::LEN)?..)?;
        if t[0..2] != Tag::MAGIC {
            return None;
        }
        Some(Tag {
            class: Class::from_id(t[2])?,
            worker: t[3],
            seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
            tsc: u64::from_be_bytes([t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trip_and_rejects_other_bytes() {
        let t = Tag {
            class: Class::LegitData,
            worker: 3,
            seq: 0xdead_beef,
            tsc: 0x0123_4567_89ab_cdef,
        };
        let mut b = [0u8; Tag::LEN];
        t.write(&mut b);
        let mut payload = b"some payload".to_vec();
        payload.extend_from_slice(&b);
        assert_eq!(Tag::read(&payload), Some(t));
        assert_eq!(Tag::read(&payload[..payload.len() - 1]), None);
        assert_eq!(Tag::read(&b[1..]), None);
        let mut bad = b;
        bad[2] = CLASSES as u8;
        assert_eq!(Tag::read(&bad), None, "unknown class id");
    }

    #[test]
    fn class_ids_are_dense_and_expectations_consistent() {
        for (i, c) in Class::ALL.iter().enumerate() {
            assert_eq!(usize::from(c.id()), i);
            assert_eq!(Class::from_id(c.id()), Some(*c));
            if c.is_attack() {
                assert!(matches!(c.expect(), Expect::Drop | Expect::Answer), "{c:?}");
            }
        }
        assert_eq!(SIGNATURE_HIT.len(), SIGNATURE_MISS.len());
    }
}
