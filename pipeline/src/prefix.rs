//! The one IP prefix type of the pipeline: what operators write in the config and the ACL files
//! ("10.10.10.0/24", "2001:db8::/32", a bare "192.0.2.7"), what the SYN-cookie stage protects,
//! what the LPM tables are built from, and what signature rules match addresses against.
//!
//! One type rather than one per stage so that every place that reads a prefix accepts the same
//! text, refuses the same mistakes with the same message, and prints it back the same way.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network address plus prefix length, with every bit past the length zero.
///
/// Text and [`Prefix::new`] refuse host bits rather than silently clearing them: "10.1.2.3/8" in
/// a hand-written list is far more often a typo for a longer prefix (or a different network) than
/// a deliberate way to write "10.0.0.0/8", and masking it would widen the rule by orders of
/// magnitude. Code that groups addresses on purpose (the rate limiter's per-source buckets) says so
/// by calling [`Prefix::masked`].
///
/// Ordering is family first (IPv4 before IPv6), then network address, then length, which is the
/// order the ACL lists its entries in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("`{0}` is not an IPv4 or IPv6 address")]
    BadAddress(String),
    #[error("prefix length `{0}` is not a decimal number")]
    BadLength(String),
    #[error("prefix length {len} is longer than {max} for this address family")]
    LengthTooLong { len: u32, max: u8 },
    /// Carries the network the text most likely meant, so the message can offer the fix.
    #[error("host bits are set (did you mean {network}?)")]
    HostBitsSet { network: Prefix },
}

/// The netmask of a `len`-bit IPv4 prefix (lengths past 32 give all ones).
pub(crate) fn mask_v4(len: u8) -> u32 {
    // A shift by the full width is not a shift Rust allows; /0 masks everything away.
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(len)))
        .unwrap_or(0)
}

/// The netmask of a `len`-bit IPv6 prefix (lengths past 128 give all ones).
pub(crate) fn mask_v6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(len)))
        .unwrap_or(0)
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

impl Prefix {
    /// Checks the length against the family and refuses host bits (see the type's docs).
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, PrefixError> {
        let max = max_len(addr);
        if len > max {
            return Err(PrefixError::LengthTooLong {
                len: u32::from(len),
                max,
            });
        }
        let network = Prefix::masked(addr, len);
        if network.addr != addr {
            return Err(PrefixError::HostBitsSet { network });
        }
        Ok(network)
    }

    /// The network containing `addr` at `len` bits: host bits are cleared instead of refused and
    /// lengths past the family's width are clamped. Never fails, so it is fit for the per-packet
    /// path, where grouping a source into its network is the point.
    pub fn masked(addr: IpAddr, len: u8) -> Prefix {
        let len = len.min(max_len(addr));
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(len))),
        };
        Prefix { addr, len }
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` lies inside. Families never mix: an IPv4 prefix does not contain the
    /// IPv4-mapped IPv6 form of its addresses, because on the wire those are different packets.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => u32::from(a) & mask_v4(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask_v6(self.len) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// `addr/len`, or a bare address meaning a host route (/32 or /128). Surrounding whitespace
    /// is ignored; whitespace inside is not.
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let s = s.trim();
        let (addr_text, len_text) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| PrefixError::BadAddress(addr_text.to_string()))?;
        let max = max_len(addr);
        let len = match len_text {
            None => max,
            Some(l) => {
                // Digits only: `u32::from_str` would also take a leading `+`.
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PrefixError::BadLength(l.to_string()));
                }
                let n: u32 = l
                    .parse()
                    .map_err(|_| PrefixError::BadLength(l.to_string()))?;
                match u8::try_from(n) {
                    Ok(n) if n <= max => n,
                    _ => return Err(PrefixError::LengthTooLong { len: n, max }),
                }
            }
        };
        Prefix::new(addr, len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// As a string in the config, so TOML reads `protected = ["10.0.0.0/8"]` and a bad entry is
/// reported with the same message as everywhere else.
impl<'de> serde::Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_and_displays_both_families() {
        assert_eq!(p("10.10.10.0/24").to_string(), "10.10.10.0/24");
        assert_eq!(p("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(p("::/0").to_string(), "::/0");

        let v4 = p("10.0.0.0/8");
        assert_eq!((v4.addr(), v4.prefix_len()), (ip("10.0.0.0"), 8));
        let v6 = p("2001:db8::/32");
        assert_eq!(v6.addr(), IpAddr::V6(Ipv6Addr::from(0x2001_0db8u128 << 96)));
        assert_eq!(v6.prefix_len(), 32);
    }

    #[test]
    fn bare_address_is_a_host_route() {
        assert_eq!(p("192.0.2.7"), Prefix::new(ip("192.0.2.7"), 32).unwrap());
        assert_eq!(p("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(p("::1"), Prefix::new(ip("::1"), 128).unwrap());
        assert_eq!(p("2001:db8::1").prefix_len(), 128);
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(p(" 0.0.0.0/0 "), Prefix::new(ip("0.0.0.0"), 0).unwrap());
        assert_eq!(p("\t2001:db8::/32\n"), p("2001:db8::/32"));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "/24",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            "10.0.0.0/-1",
            "zz::/16",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            "10.0.0/8".parse::<Prefix>(),
            Err(PrefixError::BadAddress(_))
        ));
        for bad_len in [
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/99999999999",
            "2001:db8::/1x",
        ] {
            assert!(
                matches!(bad_len.parse::<Prefix>(), Err(PrefixError::BadLength(_))),
                "{bad_len}"
            );
        }
        assert_eq!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::LengthTooLong { len: 33, max: 32 })
        );
        assert_eq!(
            "::/129".parse::<Prefix>(),
            Err(PrefixError::LengthTooLong { len: 129, max: 128 })
        );
        assert_eq!(
            "10.0.0.0/256".parse::<Prefix>(),
            Err(PrefixError::LengthTooLong { len: 256, max: 32 })
        );
        assert_eq!(
            Prefix::new(ip("10.0.0.0"), 33),
            Err(PrefixError::LengthTooLong { len: 33, max: 32 })
        );
    }

    #[test]
    fn host_bits_are_refused_and_the_network_named() {
        let e = "10.1.2.3/8".parse::<Prefix>().unwrap_err();
        assert_eq!(
            e,
            PrefixError::HostBitsSet {
                network: p("10.0.0.0/8")
            }
        );
        assert_eq!(
            e.to_string(),
            "host bits are set (did you mean 10.0.0.0/8?)"
        );
        match "10.10.10.5/24".parse::<Prefix>() {
            Err(PrefixError::HostBitsSet { network }) => {
                assert_eq!(network.to_string(), "10.10.10.0/24")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            "2001:db8::1/64".parse::<Prefix>(),
            Err(PrefixError::HostBitsSet { .. })
        ));
        assert!(matches!(
            Prefix::new(ip("192.0.2.1"), 24),
            Err(PrefixError::HostBitsSet { .. })
        ));
    }

    #[test]
    fn masked_groups_sources() {
        let a = ip("192.0.2.77");
        assert_eq!(Prefix::masked(a, 24), p("192.0.2.0/24"));
        assert_eq!(Prefix::masked(a, 200), p("192.0.2.77/32"));
        assert_eq!(Prefix::masked(a, 0), p("0.0.0.0/0"));
        let a6 = ip("2001:db8:1:2:3:4:5:6");
        assert_eq!(Prefix::masked(a6, 64), p("2001:db8:1:2::/64"));
        assert_eq!(Prefix::masked(a6, 255).prefix_len(), 128);
    }

    #[test]
    fn contains_edges() {
        let v4 = p("10.10.10.0/24");
        assert!(v4.contains(ip("10.10.10.0")));
        assert!(v4.contains(ip("10.10.10.255")));
        assert!(!v4.contains(ip("10.10.11.0")));
        assert!(!v4.contains(ip("10.10.9.255")));
        assert!(!v4.contains(ip("::ffff:10.10.10.1")));
        let v6 = p("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::")));
        assert!(!v6.contains(ip("10.10.10.1")));
        assert!(p("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(p("::/0").contains(ip("ffff::")));
        assert!(!p("::/0").contains(ip("1.2.3.4")));
    }

    #[test]
    fn orders_by_family_then_address_then_length() {
        let mut v = [
            p("2001:db8::/32"),
            p("10.0.0.0/16"),
            p("::/0"),
            p("10.0.0.0/8"),
            p("9.0.0.0/8"),
        ];
        v.sort();
        let text: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "9.0.0.0/8",
                "10.0.0.0/8",
                "10.0.0.0/16",
                "::/0",
                "2001:db8::/32"
            ]
        );
    }

    #[test]
    fn serde_round_trip() {
        #[derive(serde::Deserialize, serde::Serialize, PartialEq, Debug)]
        struct W {
            p: Vec<Prefix>,
        }
        let w: W = toml::from_str(r#"p = ["10.0.0.0/8", "2001:db8::/32"]"#).unwrap();
        assert_eq!(w.p, vec![p("10.0.0.0/8"), p("2001:db8::/32")]);
        let text = toml::to_string(&w).unwrap();
        assert_eq!(toml::from_str::<W>(&text).unwrap(), w);
        let err = toml::from_str::<W>(r#"p = ["10.0.0.1/8"]"#).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    }

    proptest! {
        /// contains() agrees with a bit-by-bit comparison of the first `len` bits.
        #[test]
        fn contains_matches_bitwise_definition(net in any::<u128>(), addr in any::<u128>(),
                                               len in 0u8..=128, v4 in any::<bool>()) {
            let (pfx, addr, bits) = if v4 {
                let len = len % 33;
                (Prefix::masked(IpAddr::V4(Ipv4Addr::from(net as u32)), len),
                 IpAddr::V4(Ipv4Addr::from(addr as u32)),
                 (u128::from(net as u32) << 96, u128::from(addr as u32) << 96, len))
            } else {
                (Prefix::masked(IpAddr::V6(Ipv6Addr::from(net)), len),
                 IpAddr::V6(Ipv6Addr::from(addr)), (net, addr, len))
            };
            let (n, a, l) = bits;
            let same = (0..l).all(|i| (n >> (127 - i)) & 1 == (a >> (127 - i)) & 1);
            prop_assert_eq!(pfx.contains(addr), same);
            // The network address itself is always inside, and text round-trips.
            prop_assert!(pfx.contains(pfx.addr()));
            prop_assert_eq!(pfx.to_string().parse::<Prefix>(), Ok(pfx));
        }

        /// new() accepts exactly the masked form of an address and names it when refusing.
        #[test]
        fn new_accepts_only_the_network(a in any::<u128>(), len in 0u8..=128, v4 in any::<bool>()) {
            let addr = if v4 {
                IpAddr::V4(Ipv4Addr::from(a as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let len = if v4 { len % 33 } else { len };
            let network = Prefix::masked(addr, len);
            match Prefix::new(addr, len) {
                Ok(q) => prop_assert_eq!((q, network.addr()), (network, addr)),
                Err(e) => {
                    prop_assert!(network.addr() != addr);
                    prop_assert_eq!(e, PrefixError::HostBitsSet { network });
                }
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,48}") {
            let _ = s.parse::<Prefix>();
        }
    }
}
