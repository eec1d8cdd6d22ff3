//! An IP prefix as operators write it in the config ("10.10.10.0/24", "2001:db8::/32").
//!
//! Meant for short lists checked one by one (protected destinations, a handful of exceptions);
//! large tables belong in a longest-prefix-match structure instead.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network address plus prefix length, with every bit past the length zero.
///
/// Host bits are rejected rather than silently cleared: "10.10.10.5/24" is far more often a typo
/// for "/32" (or for a different network) than a deliberate way to write "10.10.10.0/24", and
/// guessing wrong would protect, or leave open, the wrong addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    #[error("prefix length {len} is longer than {max}, the address size")]
    LengthTooLong { len: u32, max: u8 },
    #[error("`{given}` has bits set past the prefix length; the network is {network}")]
    HostBitsSet { given: String, network: Prefix },
}

fn mask_v4(len: u8) -> u32 {
    // A shift by the full width is not a shift Rust allows; /0 masks nothing.
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl Prefix {
    /// Checks the length against the family and refuses host bits (see the type's docs).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(PrefixError::LengthTooLong {
                len: u32::from(len),
                max,
            });
        }
        let network = Self::truncating(addr, len);
        if network.addr != addr {
            return Err(PrefixError::HostBitsSet {
                given: format!("{addr}/{len}"),
                network,
            });
        }
        Ok(network)
    }

    /// Clears the host bits instead of refusing them; `len` is capped at the address size.
    pub fn truncating(addr: IpAddr, len: u8) -> Self {
        match addr {
            IpAddr::V4(a) => {
                let len = len.min(32);
                let net = u32::from(a) & mask_v4(len);
                Prefix {
                    addr: IpAddr::V4(Ipv4Addr::from(net)),
                    len,
                }
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                let net = u128::from(a) & mask_v6(len);
                Prefix {
                    addr: IpAddr::V6(Ipv6Addr::from(net)),
                    len,
                }
            }
        }
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

    /// "addr/len", or a bare address meaning a single host (/32 or /128).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_text, len_text) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| PrefixError::BadAddress(addr_text.to_string()))?;
        let len = match len_text {
            None => {
                if addr.is_ipv4() {
                    32
                } else {
                    128
                }
            }
            Some(l) => {
                // u32::from_str would also take "+24"; only plain digits are a length.
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PrefixError::BadLength(l.to_string()));
                }
                let n: u32 = l
                    .parse()
                    .map_err(|_| PrefixError::BadLength(l.to_string()))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
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

    #[test]
    fn parses_and_displays_both_families() {
        assert_eq!(p("10.10.10.0/24").to_string(), "10.10.10.0/24");
        assert_eq!(p("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(p("::/0").to_string(), "::/0");
        assert_eq!(p("192.0.2.7").prefix_len(), 32);
        assert_eq!(p("2001:db8::1").prefix_len(), 128);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "/24",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            "2001:db8::/1x",
            "zz::/16",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::LengthTooLong { len: 33, max: 32 })
        ));
        assert!(matches!(
            "::/129".parse::<Prefix>(),
            Err(PrefixError::LengthTooLong { len: 129, max: 128 })
        ));
        assert!(matches!(
            "10.0.0.0/99999999999".parse::<Prefix>(),
            Err(PrefixError::BadLength(_))
        ));
    }

    #[test]
    fn host_bits_are_refused_and_the_network_named() {
        match "10.10.10.5/24".parse::<Prefix>() {
            Err(PrefixError::HostBitsSet { network, .. }) => {
                assert_eq!(network.to_string(), "10.10.10.0/24")
            }
            other => panic!("{other:?}"),
        }
        assert!("2001:db8::1/64".parse::<Prefix>().is_err());
    }

    #[test]
    fn contains_edges() {
        let v4 = p("10.10.10.0/24");
        assert!(v4.contains("10.10.10.0".parse().unwrap()));
        assert!(v4.contains("10.10.10.255".parse().unwrap()));
        assert!(!v4.contains("10.10.11.0".parse().unwrap()));
        assert!(!v4.contains("10.10.9.255".parse().unwrap()));
        assert!(!v4.contains("::ffff:10.10.10.1".parse().unwrap()));
        let v6 = p("2001:db8::/32");
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::".parse().unwrap()));
        assert!(!v6.contains("10.10.10.1".parse().unwrap()));
        assert!(p("0.0.0.0/0").contains("255.255.255.255".parse().unwrap()));
        assert!(p("::/0").contains("ffff::".parse().unwrap()));
        assert!(!p("::/0").contains("1.2.3.4".parse().unwrap()));
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
        fn contains_matches_bitwise_definition(net in any::<u128>(), ip in any::<u128>(),
                                               len in 0u8..=128, v4 in any::<bool>()) {
            let (pfx, addr, bits) = if v4 {
                let len = len % 33;
                (Prefix::truncating(IpAddr::V4(Ipv4Addr::from(net as u32)), len),
                 IpAddr::V4(Ipv4Addr::from(ip as u32)), (u128::from(net as u32) << 96, u128::from(ip as u32) << 96, len))
            } else {
                (Prefix::truncating(IpAddr::V6(Ipv6Addr::from(net)), len),
                 IpAddr::V6(Ipv6Addr::from(ip)), (net, ip, len))
            };
            let (n, a, l) = bits;
            let same = (0..l).all(|i| (n >> (127 - i)) & 1 == (a >> (127 - i)) & 1);
            prop_assert_eq!(pfx.contains(addr), same);
            // The network address itself is always inside, and text round-trips.
            prop_assert!(pfx.contains(pfx.addr()));
            prop_assert_eq!(pfx.to_string().parse::<Prefix>().unwrap(), pfx);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,48}") {
            let _ = s.parse::<Prefix>();
        }
    }
}
