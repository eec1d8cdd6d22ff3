//! Hugepage sizes as the kernel names them.
//!
//! The kernel speaks three dialects for the same quantity: sysfs directories say `2048kB`, hugetlbfs
//! mount options say `2M`, and people type `2M`, `1G` or `1GB`. One type that parses all of them
//! and prints each dialect keeps the mapping in a single place.

use std::fmt;
use std::str::FromStr;

/// A hugepage size, held in KiB because that is the unit of the sysfs directory names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageSize {
    kib: u64,
}

impl PageSize {
    /// 2 MiB: the x86-64 and arm64 (4K granule) default hugepage.
    pub const SIZE_2M: PageSize = PageSize { kib: 2048 };
    /// 1 GiB: the gigantic page DPDK prefers for large mempools.
    pub const SIZE_1G: PageSize = PageSize { kib: 1_048_576 };

    /// Builds a size from KiB; `None` for zero, which no kernel offers.
    pub fn from_kib(kib: u64) -> Option<PageSize> {
        (kib != 0).then_some(PageSize { kib })
    }

    /// Size in KiB.
    pub fn kib(self) -> u64 {
        self.kib
    }

    /// Name of the sysfs directory for this size, e.g. `hugepages-2048kB`.
    pub fn sysfs_dir_name(self) -> String {
        format!("hugepages-{}kB", self.kib)
    }

    /// Parses a sysfs directory name (`hugepages-2048kB`); `None` for anything else.
    pub fn from_sysfs_dir_name(name: &str) -> Option<PageSize> {
        let kib = name.strip_prefix("hugepages-")?.strip_suffix("kB")?;
        // Only plain digits: `u64::from_str` would also accept a leading '+'.
        if kib.is_empty() || !kib.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        PageSize::from_kib(kib.parse().ok()?)
    }

    /// The value of hugetlbfs's `pagesize=` mount option, in the largest exact unit (`2M`, `1G`).
    pub fn mount_option_value(self) -> String {
        const MIB: u64 = 1024;
        const GIB: u64 = 1024 * 1024;
        if self.kib % GIB == 0 {
            format!("{}G", self.kib / GIB)
        } else if self.kib % MIB == 0 {
            format!("{}M", self.kib / MIB)
        } else {
            format!("{}K", self.kib)
        }
    }
}

/// Prints the sysfs spelling (`2048kB`) because that is what `/proc/meminfo` and sysfs show, so
/// users can match our output against the kernel's.
impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}kB", self.kib)
    }
}

impl serde::Serialize for PageSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a page size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParsePageSizeError {
    #[error("page size is empty")]
    Empty,
    #[error("page size {0:?} has no unit; write e.g. 2M, 1G or 2048kB")]
    NoUnit(String),
    #[error("page size {0:?} is not a number followed by K, M or G (e.g. 2M, 1G, 2048kB)")]
    Malformed(String),
    #[error("page size {0:?} is zero")]
    Zero(String),
    #[error("page size {0:?} is too large")]
    TooLarge(String),
}

/// Accepts `2M`, `2MB`, `2MiB`, `1G`, `1GB`, `2048K`, `2048kB` (case-insensitive unit). A bare
/// number is rejected: `2048` could mean KiB (sysfs) or bytes (meminfo-style), and guessing wrong
/// would reserve pages of the wrong size.
impl FromStr for PageSize {
    type Err = ParsePageSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParsePageSizeError::Empty);
        }
        let digits_end = s
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(digits_end);
        if number.is_empty() {
            return Err(ParsePageSizeError::Malformed(s.to_owned()));
        }
        if unit.is_empty() {
            return Err(ParsePageSizeError::NoUnit(s.to_owned()));
        }
        let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
            "k" | "kb" | "kib" => 1,
            "m" | "mb" | "mib" => 1024,
            "g" | "gb" | "gib" => 1024 * 1024,
            _ => return Err(ParsePageSizeError::Malformed(s.to_owned())),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| ParsePageSizeError::TooLarge(s.to_owned()))?;
        let kib = n
            .checked_mul(multiplier)
            .ok_or_else(|| ParsePageSizeError::TooLarge(s.to_owned()))?;
        PageSize::from_kib(kib).ok_or_else(|| ParsePageSizeError::Zero(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_dialect() {
        for s in [
            "2M", "2m", "2MB", "2MiB", "2048kB", "2048K", "2048kib", " 2M ",
        ] {
            assert_eq!(s.parse::<PageSize>(), Ok(PageSize::SIZE_2M), "{s}");
        }
        for s in ["1G", "1g", "1GB", "1GiB", "1024M", "1048576kB"] {
            assert_eq!(s.parse::<PageSize>(), Ok(PageSize::SIZE_1G), "{s}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!("".parse::<PageSize>(), Err(ParsePageSizeError::Empty));
        assert!(matches!(
            "2048".parse::<PageSize>(),
            Err(ParsePageSizeError::NoUnit(_))
        ));
        assert!(matches!(
            "M".parse::<PageSize>(),
            Err(ParsePageSizeError::Malformed(_))
        ));
        assert!(matches!(
            "2T".parse::<PageSize>(),
            Err(ParsePageSizeError::Malformed(_))
        ));
        assert!(matches!(
            "-2M".parse::<PageSize>(),
            Err(ParsePageSizeError::Malformed(_))
        ));
        assert!(matches!(
            "0M".parse::<PageSize>(),
            Err(ParsePageSizeError::Zero(_))
        ));
        assert!(matches!(
            "99999999999999999999G".parse::<PageSize>(),
            Err(ParsePageSizeError::TooLarge(_))
        ));
        assert!(matches!(
            "18014398509481984G".parse::<PageSize>(),
            Err(ParsePageSizeError::TooLarge(_))
        ));
    }

    #[test]
    fn sysfs_names_round_trip() {
        for size in [PageSize::SIZE_2M, PageSize::SIZE_1G, PageSize { kib: 64 }] {
            assert_eq!(
                PageSize::from_sysfs_dir_name(&size.sysfs_dir_name()),
                Some(size)
            );
        }
        for bad in [
            "hugepages-kB",
            "hugepages-0kB",
            "hugepages-+2kB",
            "hugepages-2048",
            "x-2048kB",
        ] {
            assert_eq!(PageSize::from_sysfs_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn mount_option_uses_largest_exact_unit_and_parses_back() {
        assert_eq!(PageSize::SIZE_2M.mount_option_value(), "2M");
        assert_eq!(PageSize::SIZE_1G.mount_option_value(), "1G");
        let odd = PageSize { kib: 64 };
        assert_eq!(odd.mount_option_value(), "64K");
        for size in [PageSize::SIZE_2M, PageSize::SIZE_1G, odd] {
            assert_eq!(size.mount_option_value().parse::<PageSize>(), Ok(size));
        }
    }
}
