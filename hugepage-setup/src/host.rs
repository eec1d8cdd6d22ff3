//! The side effects `apply` performs, behind a trait.
//!
//! Reading goes straight to the (configurable) sysfs/procfs root, but writes and mounts go
//! through [`Host`] so tests can stand in for the kernel: a plain file cannot hand back fewer
//! pages than were asked for, and a test must not call mount(2).

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::page_size::PageSize;

/// What `apply` needs from the operating system.
pub trait Host {
    /// Writes a page count to an `nr_hugepages` file.
    fn write_pages(&mut self, path: &Path, pages: u64) -> io::Result<()>;
    /// Creates a mount point directory (and its parents).
    fn create_dir(&mut self, path: &Path) -> io::Result<()>;
    /// Mounts a hugetlbfs serving `size` pages at `target`.
    fn mount_hugetlbfs(&mut self, target: &Path, size: PageSize) -> io::Result<()>;
    /// Unmounts whatever is mounted at `target`.
    fn unmount(&mut self, target: &Path) -> io::Result<()>;
}

/// Source and filesystem type name for mount(2).
const HUGETLBFS: &str = "hugetlbfs";

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemHost;

impl Host for SystemHost {
    fn write_pages(&mut self, path: &Path, pages: u64) -> io::Result<()> {
        // No `create`: a missing file means a wrong path, which must fail rather than leave a
        // stray file behind. One write call, because sysfs takes the value from the first write.
        let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
        f.write_all(format!("{pages}\n").as_bytes())
    }

    fn create_dir(&mut self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn mount_hugetlbfs(&mut self, target: &Path, size: PageSize) -> io::Result<()> {
        let target = c_path(target)?;
        let data = CString::new(format!("pagesize={}", size.mount_option_value()))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        mount(
            Some(HUGETLBFS),
            target.as_c_str(),
            Some(HUGETLBFS),
            MsFlags::empty(),
            Some(data.as_c_str()),
        )?;
        Ok(())
    }

    fn unmount(&mut self, target: &Path) -> io::Result<()> {
        let target = c_path(target)?;
        umount2(target.as_c_str(), MntFlags::empty())?;
        Ok(())
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}
