//! hugetlbfs mounts as seen by this process.
//!
//! DPDK finds its hugepages through hugetlbfs mounts, one per page size, so "are the pages there"
//! is only half the question; the other half is "is a hugetlbfs of that size mounted". We read
//! `/proc/self/mountinfo` (our own mount namespace, which is the one DPDK will run in) and fall
//! back to `/proc/mounts` on kernels or sandboxes that lack it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::page_size::PageSize;

/// One hugetlbfs mount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HugetlbfsMount {
    /// Where it is mounted (octal escapes from the kernel already decoded). Serialised lossily:
    /// a non-UTF-8 mount point must not make `status --json` fail.
    #[serde(serialize_with = "serialize_path_lossy")]
    pub mount_point: PathBuf,
    /// Page size it serves: its `pagesize=` option, or the kernel's default hugepage size when
    /// the option is absent (older kernels omit it for the default size). `None` only if
    /// neither is known.
    pub page_size: Option<PageSize>,
    /// Every mount option, as the kernel printed them, for diagnostics.
    pub options: String,
}

fn serialize_path_lossy<S: serde::Serializer>(
    p: &std::path::Path,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// Which file a mount table came from; the two have different layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountTable {
    /// `/proc/<pid>/mountinfo`: `id parent dev root mountpoint opts [tags...] - fstype source superopts`.
    MountInfo,
    /// `/proc/mounts`: `source mountpoint fstype opts dump pass`.
    Mounts,
}

/// Extracts the hugetlbfs mounts from a mount table; lines that do not parse are skipped, since a
/// mount we cannot read is one we cannot use either.
pub fn parse_hugetlbfs_mounts(
    text: &str,
    table: MountTable,
    default_size: Option<PageSize>,
) -> Vec<HugetlbfsMount> {
    text.lines()
        .filter_map(|line| parse_line(line, table))
        .filter(|(_, fstype, _)| *fstype == "hugetlbfs")
        .map(|(mount_point, _, options)| HugetlbfsMount {
            page_size: pagesize_option(&options).or(default_size),
            mount_point,
            options,
        })
        .collect()
}

/// Returns (mount point, fstype, all options joined by commas).
fn parse_line(line: &str, table: MountTable) -> Option<(PathBuf, &str, String)> {
    let fields: Vec<&str> = line.split(' ').collect();
    match table {
        MountTable::MountInfo => {
            let mount_point = fields.get(4)?;
            let per_mount_opts = fields.get(5)?;
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep.checked_add(1)?)?;
            let super_opts = fields.get(sep.checked_add(3)?).copied().unwrap_or("");
            // Both lists usually start with `rw`; show each option once, first spelling wins.
            let mut options: Vec<&str> = Vec::new();
            for o in per_mount_opts.split(',').chain(super_opts.split(',')) {
                if !o.is_empty() && !options.contains(&o) {
                    options.push(o);
                }
            }
            let options = options.join(",");
            Some((unescape(mount_point), fstype, options))
        }
        MountTable::Mounts => {
            let mount_point = fields.get(1)?;
            let fstype = fields.get(2)?;
            let options = fields.get(3).copied().unwrap_or("");
            Some((unescape(mount_point), fstype, options.to_owned()))
        }
    }
}

fn pagesize_option(options: &str) -> Option<PageSize> {
    options
        .split(',')
        .filter_map(|o| o.strip_prefix("pagesize="))
        .find_map(|v| v.parse().ok())
}

/// Decodes the kernel's `\ooo` octal escapes (space, tab, newline, backslash in paths).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            if let Some(v) = bytes.get(i + 1..i + 4).and_then(octal_byte) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

fn octal_byte(digits: &[u8]) -> Option<u8> {
    digits.iter().try_fold(0u8, |acc, &d| {
        if (b'0'..=b'7').contains(&d) {
            acc.checked_mul(8)?.checked_add(d - b'0')
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime shared:7 - sysfs sysfs rw
40 24 0:40 / /dev/hugepages rw,relatime shared:20 - hugetlbfs hugetlbfs rw,pagesize=2M
41 24 0:41 / /mnt/huge\\0401G rw,relatime - hugetlbfs nodev rw,pagesize=1G
42 24 0:42 / /mnt/old rw,relatime - hugetlbfs nodev rw
garbage line
";

    #[test]
    fn mountinfo_yields_hugetlbfs_only_with_sizes_and_unescaped_paths() {
        let mounts =
            parse_hugetlbfs_mounts(MOUNTINFO, MountTable::MountInfo, Some(PageSize::SIZE_2M));
        let got: Vec<_> = mounts
            .iter()
            .map(|m| (m.mount_point.to_str().unwrap_or("?"), m.page_size))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/dev/hugepages", Some(PageSize::SIZE_2M)),
                ("/mnt/huge 1G", Some(PageSize::SIZE_1G)),
                ("/mnt/old", Some(PageSize::SIZE_2M)),
            ]
        );
        assert_eq!(mounts[0].options, "rw,relatime,pagesize=2M");
    }

    #[test]
    fn missing_pagesize_without_default_is_unknown() {
        let mounts = parse_hugetlbfs_mounts(MOUNTINFO, MountTable::MountInfo, None);
        assert_eq!(mounts[2].page_size, None);
    }

    #[test]
    fn proc_mounts_layout() {
        let text = "sysfs /sys sysfs rw 0 0\nnodev /dev/huge\\134x hugetlbfs rw,pagesize=1G 0 0\n";
        let mounts = parse_hugetlbfs_mounts(text, MountTable::Mounts, None);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/dev/huge\\x"));
        assert_eq!(mounts[0].page_size, Some(PageSize::SIZE_1G));
    }

    #[test]
    fn bad_escapes_are_kept_literally() {
        assert_eq!(unescape("/a\\9b"), PathBuf::from("/a\\9b"));
        assert_eq!(unescape("/a\\777"), PathBuf::from("/a\\777"));
        assert_eq!(unescape("/a\\04"), PathBuf::from("/a\\04"));
    }
}
