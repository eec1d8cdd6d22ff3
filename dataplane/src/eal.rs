//! The DPDK Environment Abstraction Layer: initialised once per process, cleaned up on drop.
//!
//! A DPDK primary leaves files on the machine under its `--file-prefix`: a runtime directory
//! (`/var/run/dpdk/<prefix>`: shared config, memseg arrays, sockets) and, with hugepages, one
//! `<prefix>map_<n>` file per hugepage segment in the hugetlbfs mount. `rte_eal_cleanup` keeps
//! both (so secondaries could still attach), and a killed process keeps its hugepages held
//! until someone deletes the files. [`PrefixFiles`] finds them, tells whether a live process
//! still holds them, and removes them: [`Eal`]'s drop removes its own after `rte_eal_cleanup`,
//! and start-up reclaims what a dead process of the same prefix left.

use crate::error::{strerror, DpdkError};
use std::ffi::{c_char, CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

static EAL_UP: AtomicBool = AtomicBool::new(false);

/// The most lcores this DPDK build supports; lcore ids must be below it.
pub const MAX_LCORE: u32 = dpdk_sys::RTE_MAX_LCORE;

/// Proof that the EAL is initialised. Every other DPDK object borrows from it, so the EAL
/// outlives them; dropping it runs `rte_eal_cleanup`.
pub struct Eal {
    args: Vec<String>,
    /// The runtime directory and hugepage files of this process's prefix, removed on drop.
    files: Option<PrefixFiles>,
}

impl Eal {
    /// Initialise the EAL with `args` (without the program name, which is added here).
    pub fn init(program: &str, args: &[String]) -> Result<Eal, DpdkError> {
        if EAL_UP.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlready);
        }
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(program.to_string());
        all.extend(args.iter().cloned());
        let mut cstrs = Vec::with_capacity(all.len());
        for a in &all {
            cstrs.push(CString::new(a.as_str()).map_err(|_| DpdkError::BadArg(a.clone()))?);
        }
        // EAL keeps pointers into argv for the life of the process: leak both the strings and
        // the array on purpose (a few hundred bytes, once per process).
        let ptrs: Vec<*mut c_char> = cstrs.into_iter().map(|c| c.into_raw()).collect();
        let argv: &'static mut [*mut c_char] = Box::leak(ptrs.into_boxed_slice());
        let argc = argv.len() as i32;
        // SAFETY: argv holds argc valid NUL-terminated strings that live forever; EAL may
        // permute the array, which it owns from now on.
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let errno = crate::error::rte_errno();
            EAL_UP.store(false, Ordering::SeqCst);
            // EAL may have created the runtime directory (and mapped hugepages) before it
            // failed; they are this process's unless another primary holds the prefix.
            PrefixFiles::new(&file_prefix_of(args)).remove_after_failed_init();
            return Err(DpdkError::EalInit {
                msg: strerror(errno),
                args: all.join(" "),
                errno: errno.abs(),
            });
        }
        // SAFETY: EAL is initialised; the runtime dir is a static NUL-terminated string.
        let dir = unsafe { dpdk_sys::rte_eal_get_runtime_dir() };
        let files = (!dir.is_null()).then(|| {
            // SAFETY: non-null, NUL-terminated, valid for the process lifetime.
            let dir = PathBuf::from(std::ffi::OsStr::from_bytes(
                unsafe { CStr::from_ptr(dir) }.to_bytes(),
            ));
            let prefix = file_prefix_of(args);
            PrefixFiles {
                runtime_dir: dir,
                prefix,
            }
        });
        Ok(Eal { args: all, files })
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// TSC ticks per second as measured by EAL at start-up.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: EAL is initialised (we hold the token); the call has no other precondition.
        unsafe { dpdk_sys::shim_rte_get_tsc_hz() }
    }

    pub fn main_lcore(&self) -> u32 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    pub fn lcore_count(&self) -> u32 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_lcore_count() }
    }

    pub fn lcore_enabled(&self, lcore: u32) -> bool {
        // SAFETY: EAL is initialised; any lcore id is accepted and range-checked by DPDK.
        unsafe { dpdk_sys::rte_lcore_is_enabled(lcore) != 0 }
    }

    /// Worker lcores (every enabled lcore except the main one), in id order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        (0..dpdk_sys::RTE_MAX_LCORE)
            .filter(|&l| l != self.main_lcore() && self.lcore_enabled(l))
            .collect()
    }

    pub fn socket_of_lcore(&self, lcore: u32) -> i32 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore) as i32 }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: all DPDK objects borrow the Eal and are gone by now; workers were joined.
        unsafe { dpdk_sys::rte_eal_cleanup() };
        // This process was the primary of its prefix (EAL refuses a second one), so the files
        // are ours; a clean exit leaves none of them behind.
        if let Some(f) = &self.files {
            f.remove_own();
        }
    }
}

/// The prefix EAL uses for `args` (`--file-prefix=X` or `--file-prefix X`; default "rte").
pub fn file_prefix_of(args: &[String]) -> String {
    let mut prefix = String::from("rte");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--file-prefix=") {
            prefix = v.to_string();
        } else if a == "--file-prefix" {
            if let Some(v) = it.next() {
                prefix = v.clone();
            }
        }
    }
    prefix
}

/// What [`PrefixFiles::reclaim`] or a clean exit removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reclaimed {
    /// Hugepage files deleted.
    pub hugepage_files: usize,
    /// Hugepage memory those files held, in bytes.
    pub hugepage_bytes: u64,
    /// Whether the runtime directory was removed.
    pub runtime_dir: bool,
}

impl Reclaimed {
    pub fn is_empty(&self) -> bool {
        self.hugepage_files == 0 && !self.runtime_dir
    }
}

/// The files DPDK keeps for one `--file-prefix`.
#[derive(Debug, Clone)]
pub struct PrefixFiles {
    prefix: String,
    runtime_dir: PathBuf,
}

impl PrefixFiles {
    /// The files a primary started now with `prefix` would use. The runtime directory follows
    /// EAL's own rule (`eal_create_runtime_dir`): `/var/run/dpdk/<prefix>` for root, otherwise
    /// `$XDG_RUNTIME_DIR/dpdk/<prefix>` or `/tmp/dpdk/<prefix>`.
    pub fn new(prefix: &str) -> PrefixFiles {
        // SAFETY: getuid has no preconditions and cannot fail.
        let base = if unsafe { libc::getuid() } == 0 {
            PathBuf::from("/var/run")
        } else {
            std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"))
        };
        PrefixFiles {
            prefix: prefix.to_string(),
            runtime_dir: base.join("dpdk").join(prefix),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// Every `<prefix>map_<n>` file in every mounted hugetlbfs (EAL's `HUGEFILE_FMT`).
    pub fn hugepage_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in hugetlbfs_mounts() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&self.prefix)) else {
                    continue;
                };
                if let Some(n) = rest.strip_prefix("map_") {
                    if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                        out.push(e.path());
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The pid of a live DPDK process that still uses this prefix, if any: a primary holds a
    /// write lock on `<runtime dir>/config` for its whole life (EAL refuses a second primary
    /// with "Cannot create lock"); a process without shared config (`--in-memory`,
    /// `--no-shconf`) is known by its sockets in the runtime directory (telemetry, multi-process
    /// channel), which answer while it lives. `Ok(Some(None))`: live, pid unknown.
    pub fn live_user(&self) -> io::Result<Option<Option<i32>>> {
        let config = self.runtime_dir.join("config");
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&config)
        {
            Ok(f) => {
                if let Some(pid) = write_lock_holder(&f)? {
                    return Ok(Some(Some(pid)));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let entries = match std::fs::read_dir(&self.runtime_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        for e in entries.flatten() {
            use std::os::unix::fs::FileTypeExt;
            if e.file_type().is_ok_and(|t| t.is_socket()) && unix_socket_answers(&e.path()) {
                return Ok(Some(None));
            }
        }
        Ok(None)
    }

    /// Removes what a dead process of this prefix left: its runtime directory and the hugepage
    /// files no process holds any more (EAL keeps a shared `flock` on each segment it maps).
    /// Refuses, and removes nothing, while a live process uses the prefix.
    pub fn reclaim(&self) -> Result<Reclaimed, DpdkError> {
        let in_use = |pid: Option<i32>| DpdkError::PrefixInUse {
            prefix: self.prefix.clone(),
            pid,
        };
        let io_err = |what: &Path, e: io::Error| DpdkError::Reclaim {
            prefix: self.prefix.clone(),
            path: what.display().to_string(),
            msg: e.to_string(),
        };
        if let Some(pid) = self.live_user().map_err(|e| io_err(&self.runtime_dir, e))? {
            return Err(in_use(pid));
        }
        let mut done = Reclaimed::default();
        for path in self.hugepage_files() {
            let f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path, e)),
            };
            // SAFETY: f is an open file; flock only takes the descriptor.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                // Some live process maps this segment (a secondary, or another user of the
                // mount that reuses our name): not ours to take.
                continue;
            }
            let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    done.hugepage_files += 1;
                    done.hugepage_bytes += bytes;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
        }
        match std::fs::remove_dir_all(&self.runtime_dir) {
            Ok(()) => done.runtime_dir = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&self.runtime_dir, e)),
        }
        Ok(done)
    }

    /// After a failed `rte_eal_init`: remove what it created, unless another process holds
    /// the prefix's config lock (then the files are that process's; `F_GETLK` does not report
    /// this process's own lock).
    fn remove_after_failed_init(&self) {
        let config = self.runtime_dir.join("config");
        if let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&config)
        {
            if !matches!(write_lock_holder(&f), Ok(None)) {
                return;
            }
        }
        self.remove_own();
    }

    /// After `rte_eal_cleanup` of the primary that owns the prefix: delete its hugepage files
    /// and runtime directory. Best effort: a failure is reported, the exit goes on.
    fn remove_own(&self) -> Reclaimed {
        let mut done = Reclaimed::default();
        for path in self.hugepage_files() {
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    done.hugepage_files += 1;
                    done.hugepage_bytes += bytes;
                }
                Err(e) => log::warn!("cannot remove {}: {e}", path.display()),
            }
        }
        match std::fs::remove_dir_all(&self.runtime_dir) {
            Ok(()) => done.runtime_dir = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove {}: {e}", self.runtime_dir.display()),
        }
        done
    }
}

/// Mount points of every hugetlbfs, from /proc/mounts (octal escapes such as `\040` decoded).
pub fn hugetlbfs_mounts() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/mounts") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_, dir, fs) = (f.next()?, f.next()?, f.next()?);
            (fs == "hugetlbfs").then(|| PathBuf::from(unescape_mount(dir)))
        })
        .collect()
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pid holding a write-conflicting `fcntl` lock anywhere on `f`, if any.
fn write_lock_holder(f: &std::fs::File) -> io::Result<Option<i32>> {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // to the end of the file
                  // SAFETY: f is open; fl is a valid, initialised struct flock for F_GETLK to fill in.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fl.l_type != libc::F_UNLCK as libc::c_short).then_some(fl.l_pid))
}

/// Whether some live process listens on the Unix socket at `path`, whatever its type (DPDK's
/// telemetry socket is SOCK_SEQPACKET, its multi-process channel SOCK_DGRAM).
fn unix_socket_answers(path: &Path) -> bool {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return false;
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as c_char;
    }
    for ty in [libc::SOCK_SEQPACKET, libc::SOCK_STREAM, libc::SOCK_DGRAM] {
        // SAFETY: plain socket creation; the descriptor is closed below.
        let fd = unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            continue;
        }
        // SAFETY: fd is a socket we own; addr is a valid sockaddr_un of the given size.
        let rc = unsafe {
            libc::connect(
                fd,
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        let err = io::Error::last_os_error().raw_os_error();
        // SAFETY: fd is ours and closed once.
        unsafe { libc::close(fd) };
        if rc == 0 {
            return true;
        }
        if err != Some(libc::EPROTOTYPE) {
            // ECONNREFUSED (nobody listens) or anything else: not live for this type, and the
            // type matched, so no other type will answer either.
            return false;
        }
    }
    false
}

/// Current TSC value. Cheap (one `rdtsc`); read once per burst.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions.
    unsafe { dpdk_sys::shim_rte_rdtsc() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn file_prefix_from_args() {
        assert_eq!(file_prefix_of(&args(&["-l", "0,1"])), "rte");
        assert_eq!(file_prefix_of(&args(&["--file-prefix=a"])), "a");
        assert_eq!(
            file_prefix_of(&args(&["--file-prefix", "b", "-l", "0"])),
            "b"
        );
        // The last one counts, as in EAL's getopt loop.
        assert_eq!(
            file_prefix_of(&args(&["--file-prefix=a", "--file-prefix=c"])),
            "c"
        );
    }

    #[test]
    fn mount_points_unescape() {
        assert_eq!(unescape_mount("/mnt/huge\\040pages"), "/mnt/huge pages");
        assert_eq!(unescape_mount("/dev/hugepages"), "/dev/hugepages");
        assert_eq!(unescape_mount("/a\\\\b"), "/a\\\\b", "not an octal escape");
    }

    fn temp_prefix(tag: &str) -> PrefixFiles {
        let prefix = format!("dataplane-test-{tag}-{}", std::process::id());
        let runtime_dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&runtime_dir);
        std::fs::create_dir_all(&runtime_dir).unwrap();
        PrefixFiles {
            prefix,
            runtime_dir,
        }
    }

    /// A dead process's runtime dir (unlocked config, sockets nobody listens on) is
    /// reclaimed; one whose socket answers is refused and left alone.
    #[test]
    fn reclaim_takes_only_what_no_live_process_uses() {
        let f = temp_prefix("reclaim");
        let dir = f.runtime_dir().to_path_buf();
        std::fs::write(dir.join("config"), [0u8; 64]).unwrap();
        drop(std::os::unix::net::UnixDatagram::bind(dir.join("mp_socket")).unwrap());
        drop(std::os::unix::net::UnixListener::bind(dir.join("dpdk_telemetry.v2")).unwrap());
        assert!(dir.join("mp_socket").exists(), "a dead socket's file stays");
        assert_eq!(f.live_user().unwrap(), None);
        let r = f.reclaim().unwrap();
        assert!(r.runtime_dir && r.hugepage_files == 0, "{r:?}");
        assert!(!dir.exists());
        // Nothing left: reclaiming again is a no-op.
        assert!(f.reclaim().unwrap().is_empty());

        let f = temp_prefix("live");
        let dir = f.runtime_dir().to_path_buf();
        let live = std::os::unix::net::UnixDatagram::bind(dir.join("mp_socket")).unwrap();
        assert_eq!(f.live_user().unwrap(), Some(None));
        match f.reclaim() {
            Err(DpdkError::PrefixInUse { pid: None, .. }) => {}
            other => panic!("a live socket must stop the reclaim: {other:?}"),
        }
        assert!(dir.join("mp_socket").exists(), "nothing removed");
        drop(live);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn runtime_dir_follows_eal() {
        let f = PrefixFiles::new("x");
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            assert_eq!(f.runtime_dir(), Path::new("/var/run/dpdk/x"));
        } else {
            assert!(f.runtime_dir().ends_with("dpdk/x"));
        }
    }
}
