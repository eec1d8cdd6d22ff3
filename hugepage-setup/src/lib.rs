//! Hugepage reservation for DPDK, as a library so the CLI stays thin and the logic can be tested
//! against a fake sysfs/procfs tree.
//!
//! The flow is plan-then-apply: [`plan_reserve`] and [`plan_release`] only read, so `--dry-run`
//! can print the exact [`Plan`] that [`apply`] would carry out. `apply` re-reads every count it
//! writes, because the kernel accepts any number in `nr_hugepages` and silently allocates fewer
//! pages when memory is short or fragmented.

#![forbid(unsafe_code)]

pub mod host;
pub mod mounts;
pub mod page_size;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use host::{Host, SystemHost};
pub use mounts::HugetlbfsMount;
pub use page_size::{PageSize, ParsePageSizeError};

/// Where sysfs and procfs are mounted; tests point these at a temporary tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    pub sysfs: PathBuf,
    pub procfs: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            sysfs: PathBuf::from("/sys"),
            procfs: PathBuf::from("/proc"),
        }
    }
}

impl Roots {
    fn hugepages_dir(&self) -> PathBuf {
        self.sysfs.join("kernel/mm/hugepages")
    }

    fn nodes_dir(&self) -> PathBuf {
        self.sysfs.join("devices/system/node")
    }

    /// Directory holding the counters for one size, system-wide or on one NUMA node.
    fn size_dir(&self, size: PageSize, scope: Scope) -> PathBuf {
        match scope {
            Scope::System => self.hugepages_dir().join(size.sysfs_dir_name()),
            Scope::Node(n) => self
                .nodes_dir()
                .join(format!("node{n}/hugepages"))
                .join(size.sysfs_dir_name()),
        }
    }
}

/// Which pool a count belongs to: the kernel keeps one per NUMA node and sums them system-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    Node(u32),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::System => f.write_str("system-wide"),
            Scope::Node(n) => write!(f, "on NUMA node {n}"),
        }
    }
}

/// Everything that can go wrong, each worded so an operator knows what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this kernel has no hugetlb support: {} does not exist (kernel built without CONFIG_HUGETLBFS?)", .path.display())]
    NoHugetlb { path: PathBuf },
    #[error("page size {requested} is not supported by this kernel; supported sizes: {}", list_sizes(.supported))]
    UnsupportedSize {
        requested: PageSize,
        supported: Vec<PageSize>,
    },
    #[error("NUMA node {node} does not exist; nodes: {}", list_nodes(.available))]
    UnknownNode { node: u32, available: Vec<u32> },
    #[error("must run as root (or with CAP_SYS_ADMIN): cannot {action}: {}", errno_text(.source))]
    NotRoot { action: String, source: io::Error },
    #[error("cannot read {}: {}", .path.display(), errno_text(.source))]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {}", .path.display(), errno_text(.source))]
    Write { path: PathBuf, source: io::Error },
    #[error("unexpected content in {}: {content:?} (expected a page count)", .path.display())]
    Parse { path: PathBuf, content: String },
    #[error("the kernel refused to allocate any {size} pages {scope} (asked for {requested}, got 0): not enough free contiguous memory; {}", shortage_hint(*.size))]
    KernelRefused {
        size: PageSize,
        scope: Scope,
        requested: u64,
    },
    #[error("the kernel gave only {got} of the {requested} {size} pages asked for {scope}; {rollback}; {} (or pass --allow-partial to keep what it gave)", shortage_hint(*.size))]
    Partial {
        size: PageSize,
        scope: Scope,
        requested: u64,
        got: u64,
        rollback: String,
    },
    #[error("refusing to release {size} pages {scope}: {in_use} of {total} are in use and {reserved} are reserved by a mapping; stop the process using them (DPDK app?) first, or pass --force (the kernel then frees in-use pages only as their users let go)")]
    InUse {
        size: PageSize,
        scope: Scope,
        total: u64,
        in_use: u64,
        reserved: u64,
    },
    #[error("{} is already a hugetlbfs mount for {existing} pages; choose another mount point for {wanted} pages", .target.display())]
    MountPointBusy {
        target: PathBuf,
        existing: PageSize,
        wanted: PageSize,
    },
    #[error("mount point {} exists and is not a directory", .target.display())]
    NotADirectory { target: PathBuf },
    #[error("cannot create mount point {}: {}", .path.display(), errno_text(.source))]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot mount hugetlbfs (pagesize={}) at {}: {}", .size.mount_option_value(), .target.display(), errno_text(.source))]
    Mount {
        target: PathBuf,
        size: PageSize,
        source: io::Error,
    },
    #[error("cannot unmount {}: {}", .target.display(), errno_text(.source))]
    Unmount { target: PathBuf, source: io::Error },
    #[error("unmounting applies to the whole system, so it cannot be combined with a NUMA node")]
    UnmountWithNode,
}

/// `io::Error`'s Display appends " (os error N)"; operators want the strerror text alone.
fn errno_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s.get(..i).unwrap_or(&s).to_owned(),
        _ => s,
    }
}

fn list_sizes(sizes: &[PageSize]) -> String {
    if sizes.is_empty() {
        return "none".to_owned();
    }
    sizes
        .iter()
        .map(|s| format!("{} ({})", s, s.mount_option_value()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_nodes(nodes: &[u32]) -> String {
    if nodes.is_empty() {
        return "none (no NUMA information in sysfs)".to_owned();
    }
    nodes
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn shortage_hint(size: PageSize) -> String {
    if size >= PageSize::SIZE_1G {
        format!(
            "gigantic pages need physically contiguous {}-aligned memory, which is rarely left after boot: reserve them at boot with `hugepagesz={} hugepages=N` on the kernel command line",
            size.mount_option_value(),
            size.mount_option_value()
        )
    } else {
        "free some memory, compact it (`echo 1 > /proc/sys/vm/compact_memory`) and retry, ask for fewer pages, or reserve at boot with `hugepages=N` on the kernel command line".to_owned()
    }
}

/// Maps permission failures to the "run as root" message naming `action`; everything else
/// keeps its own wording, built by `other`.
fn permission_or(
    source: io::Error,
    action: impl FnOnce() -> String,
    other: impl FnOnce(io::Error) -> Error,
) -> Error {
    if is_permission(&source) {
        Error::NotRoot {
            action: action(),
            source,
        }
    } else {
        other(source)
    }
}

fn write_error(path: &Path, source: io::Error) -> Error {
    permission_or(
        source,
        || format!("write {}", path.display()),
        |source| Error::Write {
            path: path.to_owned(),
            source,
        },
    )
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_counter(path: &Path) -> Result<u64, Error> {
    let text = read_text(path)?;
    text.trim().parse().map_err(|_| Error::Parse {
        path: path.to_owned(),
        content: text,
    })
}

/// Per-node directories lack some counters (`resv_hugepages`), so absence is not an error.
fn read_optional_counter(path: &Path) -> Result<Option<u64>, Error> {
    if path.exists() {
        read_counter(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Page sizes the kernel supports, smallest first.
pub fn supported_sizes(roots: &Roots) -> Result<Vec<PageSize>, Error> {
    let dir = roots.hugepages_dir();
    let entries = std::fs::read_dir(&dir).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            Error::NoHugetlb { path: dir.clone() }
        } else {
            Error::Read {
                path: dir.clone(),
                source,
            }
        }
    })?;
    let mut sizes: Vec<PageSize> = entries
        .filter_map(Result::ok)
        .filter_map(|e| PageSize::from_sysfs_dir_name(e.file_name().to_str()?))
        .collect();
    sizes.sort();
    Ok(sizes)
}

/// NUMA node numbers, ascending; empty on kernels without NUMA in sysfs.
pub fn numa_nodes(roots: &Roots) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(roots.nodes_dir()) else {
        return Vec::new();
    };
    let mut nodes: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let digits = name.to_str()?.strip_prefix("node")?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        })
        .collect();
    nodes.sort_unstable();
    nodes
}

/// The kernel's default hugepage size (`Hugepagesize:` in meminfo): the size of a hugetlbfs
/// mounted without a `pagesize=` option.
pub fn default_size(roots: &Roots) -> Option<PageSize> {
    let text = std::fs::read_to_string(roots.procfs.join("meminfo")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Hugepagesize:"))?;
    let mut words = line.split_whitespace().skip(1);
    let number = words.next()?;
    let unit = words.next().unwrap_or("kB");
    format!("{number}{unit}").parse().ok()
}

/// hugetlbfs mounts in our mount namespace.
pub fn hugetlbfs_mounts(
    roots: &Roots,
    default: Option<PageSize>,
) -> Result<Vec<HugetlbfsMount>, Error> {
    use mounts::{parse_hugetlbfs_mounts, MountTable};
    for (rel, table) in [
        ("self/mountinfo", MountTable::MountInfo),
        ("mounts", MountTable::Mounts),
    ] {
        let path = roots.procfs.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(parse_hugetlbfs_mounts(&text, table, default)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Read { path, source }),
        }
    }
    Ok(Vec::new())
}

/// Counters for one page size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SizeStatus {
    /// The size, spelled as sysfs does (`2048kB`).
    pub size: PageSize,
    pub size_kib: u64,
    /// `nr_hugepages`: pages in the pool (persistent plus surplus).
    pub total: u64,
    /// `free_hugepages`: pages no process has faulted in.
    pub free: u64,
    /// `resv_hugepages`: free pages already promised to a mapping.
    pub reserved: u64,
    /// `surplus_hugepages`: pages above the persistent count (overcommit, or in use at shrink).
    pub surplus: u64,
    /// Per-NUMA-node pools; the kernel keeps no per-node reserved count.
    pub nodes: Vec<NodeStatus>,
}

impl SizeStatus {
    /// Pages mapped by some process right now.
    pub fn in_use(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
}

/// Counters for one page size on one NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    pub node: u32,
    pub total: u64,
    pub free: u64,
    pub surplus: u64,
}

/// What `hugepage-setup status` shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// Size of a hugetlbfs mounted without `pagesize=`; `None` if meminfo does not say.
    pub default_size: Option<PageSize>,
    /// One entry per supported size, smallest first.
    pub sizes: Vec<SizeStatus>,
    pub mounts: Vec<HugetlbfsMount>,
}

impl Status {
    /// Counters for one size, if the kernel supports it.
    pub fn size(&self, size: PageSize) -> Option<&SizeStatus> {
        self.sizes.iter().find(|s| s.size == size)
    }

    /// Mounts serving pages of `size`.
    pub fn mounts_of(&self, size: PageSize) -> impl Iterator<Item = &HugetlbfsMount> {
        self.mounts
            .iter()
            .filter(move |m| m.page_size == Some(size))
    }
}

/// Reads every counter and mount; changes nothing.
pub fn status(roots: &Roots) -> Result<Status, Error> {
    let nodes = numa_nodes(roots);
    let mut sizes = Vec::new();
    for size in supported_sizes(roots)? {
        let dir = roots.size_dir(size, Scope::System);
        let mut node_status = Vec::new();
        for &node in &nodes {
            let ndir = roots.size_dir(size, Scope::Node(node));
            // Memory-less nodes have no pool for this size.
            if !ndir.is_dir() {
                continue;
            }
            node_status.push(NodeStatus {
                node,
                total: read_counter(&ndir.join("nr_hugepages"))?,
                free: read_counter(&ndir.join("free_hugepages"))?,
                surplus: read_optional_counter(&ndir.join("surplus_hugepages"))?.unwrap_or(0),
            });
        }
        sizes.push(SizeStatus {
            size,
            size_kib: size.kib(),
            total: read_counter(&dir.join("nr_hugepages"))?,
            free: read_counter(&dir.join("free_hugepages"))?,
            reserved: read_optional_counter(&dir.join("resv_hugepages"))?.unwrap_or(0),
            surplus: read_optional_counter(&dir.join("surplus_hugepages"))?.unwrap_or(0),
            nodes: node_status,
        });
    }
    let default_size = default_size(roots);
    Ok(Status {
        default_size,
        sizes,
        mounts: hugetlbfs_mounts(roots, default_size)?,
    })
}

/// What to do when the kernel allocates fewer pages than asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnShortfall {
    /// Put the previous count back and fail.
    Fail,
    /// Keep what was given and report it.
    Accept,
}

/// One change to the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write `target` to an `nr_hugepages` file, then re-read what the kernel gave.
    SetPages {
        size: PageSize,
        scope: Scope,
        path: PathBuf,
        previous: u64,
        target: u64,
        on_shortfall: OnShortfall,
    },
    CreateDir {
        path: PathBuf,
    },
    Mount {
        target: PathBuf,
        size: PageSize,
    },
    Unmount {
        target: PathBuf,
    },
}

/// Shell-like wording so a dry run reads as the commands it replaces.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::SetPages {
                size,
                scope,
                path,
                previous,
                target,
                ..
            } => write!(
                f,
                "write {target} to {} ({size} pages {scope}: {previous} -> {target})",
                path.display()
            ),
            Step::CreateDir { path } => write!(f, "mkdir -p {}", path.display()),
            Step::Mount { target, size } => write!(
                f,
                "mount -t hugetlbfs -o pagesize={} hugetlbfs {}",
                size.mount_option_value(),
                target.display()
            ),
            Step::Unmount { target } => write!(f, "umount {}", target.display()),
        }
    }
}

/// The changes a command would make, in order, plus remarks on what it chose not to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub notes: Vec<String>,
}

/// Arguments of `reserve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    /// Pool size to set (the kernel's semantics: this is the new total, not an increment).
    pub pages: u64,
    pub size: PageSize,
    /// `None`: let the kernel spread pages over nodes (interleaved).
    pub node: Option<u32>,
    /// Where to mount hugetlbfs if none of this size is mounted; `None` skips mounting.
    pub mount: Option<PathBuf>,
    pub allow_partial: bool,
}

/// Arguments of `release`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseRequest {
    /// `None`: every supported size.
    pub size: Option<PageSize>,
    pub node: Option<u32>,
    /// Also unmount the hugetlbfs mounts of the released size(s).
    pub unmount: bool,
    /// Release even pages that are in use or reserved.
    pub force: bool,
}

fn check_size(roots: &Roots, size: PageSize) -> Result<Vec<PageSize>, Error> {
    let supported = supported_sizes(roots)?;
    if supported.contains(&size) {
        Ok(supported)
    } else {
        Err(Error::UnsupportedSize {
            requested: size,
            supported,
        })
    }
}

fn scope_for(roots: &Roots, node: Option<u32>) -> Result<Scope, Error> {
    match node {
        None => Ok(Scope::System),
        Some(n) => {
            let available = numa_nodes(roots);
            if available.contains(&n) {
                Ok(Scope::Node(n))
            } else {
                Err(Error::UnknownNode { node: n, available })
            }
        }
    }
}

/// Works out what `reserve` would do; reads only.
pub fn plan_reserve(roots: &Roots, req: &ReserveRequest) -> Result<Plan, Error> {
    check_size(roots, req.size)?;
    let scope = scope_for(roots, req.node)?;
    let path = roots.size_dir(req.size, scope).join("nr_hugepages");
    let previous = read_counter(&path)?;
    let mut plan = Plan::default();
    if req.pages < previous {
        plan.notes.push(format!(
            "{} pages {scope} shrink from {previous} to {}: --pages sets the total, it does not add",
            req.size, req.pages
        ));
    }
    plan.steps.push(Step::SetPages {
        size: req.size,
        scope,
        path,
        previous,
        target: req.pages,
        on_shortfall: if req.allow_partial {
            OnShortfall::Accept
        } else {
            OnShortfall::Fail
        },
    });

    let Some(target) = &req.mount else {
        return Ok(plan);
    };
    let mounts = hugetlbfs_mounts(roots, default_size(roots))?;
    if let Some(existing) = mounts.iter().find(|m| m.page_size == Some(req.size)) {
        plan.notes.push(format!(
            "hugetlbfs for {} pages is already mounted at {}; not mounting",
            req.size,
            existing.mount_point.display()
        ));
        return Ok(plan);
    }
    if let Some(other) = mounts.iter().find(|m| &m.mount_point == target) {
        return Err(Error::MountPointBusy {
            target: target.clone(),
            existing: other.page_size.unwrap_or(req.size),
            wanted: req.size,
        });
    }
    if target.exists() {
        if !target.is_dir() {
            return Err(Error::NotADirectory {
                target: target.clone(),
            });
        }
    } else {
        plan.steps.push(Step::CreateDir {
            path: target.clone(),
        });
    }
    plan.steps.push(Step::Mount {
        target: target.clone(),
        size: req.size,
    });
    Ok(plan)
}

/// Works out what `release` would do; reads only. Refuses before any change if any selected pool
/// has pages in use, so a refusal never leaves the system half released.
pub fn plan_release(roots: &Roots, req: &ReleaseRequest) -> Result<Plan, Error> {
    if req.unmount && req.node.is_some() {
        return Err(Error::UnmountWithNode);
    }
    let sizes = match req.size {
        Some(size) => {
            check_size(roots, size)?;
            vec![size]
        }
        None => supported_sizes(roots)?,
    };
    let scope = scope_for(roots, req.node)?;
    let st = status(roots)?;
    let mut plan = Plan::default();
    for size in &sizes {
        let Some(ss) = st.size(*size) else { continue };
        let (total, free, reserved) = match scope {
            Scope::System => (ss.total, ss.free, ss.reserved),
            Scope::Node(n) => match ss.nodes.iter().find(|ns| ns.node == n) {
                Some(ns) => (ns.total, ns.free, 0),
                None => {
                    plan.notes
                        .push(format!("node {n} has no {size} pool; nothing to release"));
                    continue;
                }
            },
        };
        if total == 0 {
            plan.notes
                .push(format!("no {size} pages {scope}; nothing to release"));
            continue;
        }
        let in_use = total.saturating_sub(free);
        if (in_use > 0 || reserved > 0) && !req.force {
            return Err(Error::InUse {
                size: *size,
                scope,
                total,
                in_use,
                reserved,
            });
        }
        plan.steps.push(Step::SetPages {
            size: *size,
            scope,
            path: roots.size_dir(*size, scope).join("nr_hugepages"),
            previous: total,
            target: 0,
            on_shortfall: OnShortfall::Accept,
        });
    }
    if req.unmount {
        for size in &sizes {
            for m in st.mounts_of(*size) {
                plan.steps.push(Step::Unmount {
                    target: m.mount_point.clone(),
                });
            }
        }
    }
    Ok(plan)
}

/// What one step actually did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pages {
        size: PageSize,
        scope: Scope,
        previous: u64,
        requested: u64,
        got: u64,
    },
    CreatedDir(PathBuf),
    Mounted {
        target: PathBuf,
        size: PageSize,
    },
    Unmounted(PathBuf),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pages {
                size,
                scope,
                previous,
                requested,
                got,
            } => {
                write!(f, "{size} pages {scope}: {previous} -> {got}")?;
                if got < requested {
                    write!(f, " (asked for {requested}; the kernel gave fewer)")?;
                } else if got > requested {
                    write!(
                        f,
                        " (asked for {requested}; {} still held by their users and freed when they let go)",
                        got - requested
                    )?;
                }
                Ok(())
            }
            Outcome::CreatedDir(p) => write!(f, "created {}", p.display()),
            Outcome::Mounted { target, size } => write!(
                f,
                "mounted hugetlbfs (pagesize={}) at {}",
                size.mount_option_value(),
                target.display()
            ),
            Outcome::Unmounted(p) => write!(f, "unmounted {}", p.display()),
        }
    }
}

/// Carries out a plan step by step, stopping at the first failure; returns what was done.
pub fn apply(plan: &Plan, host: &mut dyn Host) -> Result<Vec<Outcome>, Error> {
    let mut done = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        done.push(apply_step(step, host)?);
    }
    Ok(done)
}

fn apply_step(step: &Step, host: &mut dyn Host) -> Result<Outcome, Error> {
    match step {
        Step::SetPages {
            size,
            scope,
            path,
            previous,
            target,
            on_shortfall,
        } => {
            host.write_pages(path, *target)
                .map_err(|e| write_error(path, e))?;
            let got = read_counter(path)?;
            if got < *target {
                if got == 0 {
                    return Err(Error::KernelRefused {
                        size: *size,
                        scope: *scope,
                        requested: *target,
                    });
                }
                if *on_shortfall == OnShortfall::Fail {
                    let rollback = match host.write_pages(path, *previous) {
                        Ok(()) => format!("nr_hugepages put back to {previous}"),
                        Err(e) => format!(
                            "could not put nr_hugepages back to {previous} ({}), so {got} remain reserved",
                            errno_text(&e)
                        ),
                    };
                    return Err(Error::Partial {
                        size: *size,
                        scope: *scope,
                        requested: *target,
                        got,
                        rollback,
                    });
                }
            }
            Ok(Outcome::Pages {
                size: *size,
                scope: *scope,
                previous: *previous,
                requested: *target,
                got,
            })
        }
        Step::CreateDir { path } => {
            host.create_dir(path).map_err(|e| {
                permission_or(
                    e,
                    || format!("create {}", path.display()),
                    |source| Error::CreateDir {
                        path: path.clone(),
                        source,
                    },
                )
            })?;
            Ok(Outcome::CreatedDir(path.clone()))
        }
        Step::Mount { target, size } => {
            host.mount_hugetlbfs(target, *size).map_err(|e| {
                permission_or(
                    e,
                    || format!("mount hugetlbfs at {}", target.display()),
                    |source| Error::Mount {
                        target: target.clone(),
                        size: *size,
                        source,
                    },
                )
            })?;
            Ok(Outcome::Mounted {
                target: target.clone(),
                size: *size,
            })
        }
        Step::Unmount { target } => {
            host.unmount(target).map_err(|e| {
                permission_or(
                    e,
                    || format!("unmount {}", target.display()),
                    |source| Error::Unmount {
                        target: target.clone(),
                        source,
                    },
                )
            })?;
            Ok(Outcome::Unmounted(target.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A sysfs/procfs lookalike in a tempdir.
    struct Fake {
        dir: tempfile::TempDir,
        roots: Roots,
    }

    impl Fake {
        /// Two sizes, two NUMA nodes, no pages, no mounts.
        fn new() -> Fake {
            let dir = tempfile::tempdir().expect("tempdir");
            let roots = Roots {
                sysfs: dir.path().join("sys"),
                procfs: dir.path().join("proc"),
            };
            let fake = Fake { dir, roots };
            for size in [PageSize::SIZE_2M, PageSize::SIZE_1G] {
                fake.set_pool(size, Scope::System, 0, 0);
                fake.put(size, Scope::System, "resv_hugepages", 0);
                fake.put(size, Scope::System, "surplus_hugepages", 0);
                for n in [0, 1] {
                    fake.set_pool(size, Scope::Node(n), 0, 0);
                    fake.put(size, Scope::Node(n), "surplus_hugepages", 0);
                }
            }
            fake.write(
                "proc/meminfo",
                "MemTotal: 1000 kB\nHugepagesize:       2048 kB\n",
            );
            fake.write(
                "proc/self/mountinfo",
                "23 27 0:22 / /sys rw - sysfs sysfs rw\n",
            );
            fake
        }

        fn write(&self, rel: &str, text: &str) {
            let path = self.dir.path().join(rel);
            fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
            fs::write(path, text).expect("write");
        }

        fn put(&self, size: PageSize, scope: Scope, file: &str, v: u64) {
            let dir = self.roots.size_dir(size, scope);
            fs::create_dir_all(&dir).expect("mkdir");
            fs::write(dir.join(file), format!("{v}\n")).expect("write");
        }

        fn set_pool(&self, size: PageSize, scope: Scope, total: u64, free: u64) {
            self.put(size, scope, "nr_hugepages", total);
            self.put(size, scope, "free_hugepages", free);
        }

        fn nr(&self, size: PageSize, scope: Scope) -> u64 {
            read_counter(&self.roots.size_dir(size, scope).join("nr_hugepages")).expect("read")
        }

        fn mount_dir(&self) -> PathBuf {
            self.dir.path().join("hugepages")
        }

        fn reserve(&self, pages: u64) -> ReserveRequest {
            ReserveRequest {
                pages,
                size: PageSize::SIZE_2M,
                node: None,
                mount: Some(self.mount_dir()),
                allow_partial: false,
            }
        }
    }

    /// Stands in for the kernel: writes go to the fake files, capped at `cap` pages the way a
    /// short-on-memory kernel caps them and held at least at `floor` the way in-use pages
    /// survive a shrink; mounts are recorded, not performed.
    #[derive(Default)]
    struct FakeKernel {
        cap: Option<u64>,
        floor: Option<u64>,
        write_errno: Option<i32>,
        mount_errno: Option<i32>,
        log: Vec<String>,
    }

    impl Host for FakeKernel {
        fn write_pages(&mut self, path: &Path, pages: u64) -> io::Result<()> {
            if let Some(errno) = self.write_errno {
                return Err(io::Error::from_raw_os_error(errno));
            }
            let given = self.cap.map_or(pages, |c| pages.min(c));
            let given = self.floor.map_or(given, |fl| given.max(fl));
            self.log.push(format!("write {given}"));
            SystemHost.write_pages(path, given)
        }
        fn create_dir(&mut self, path: &Path) -> io::Result<()> {
            self.log.push("mkdir".to_owned());
            fs::create_dir_all(path)
        }
        fn mount_hugetlbfs(&mut self, target: &Path, size: PageSize) -> io::Result<()> {
            if let Some(errno) = self.mount_errno {
                return Err(io::Error::from_raw_os_error(errno));
            }
            self.log.push(format!(
                "mount {} {}",
                size.mount_option_value(),
                target.display()
            ));
            Ok(())
        }
        fn unmount(&mut self, target: &Path) -> io::Result<()> {
            self.log.push(format!("umount {}", target.display()));
            Ok(())
        }
    }

    #[test]
    fn status_reads_sizes_nodes_and_mounts() {
        let f = Fake::new();
        f.set_pool(PageSize::SIZE_2M, Scope::System, 300, 250);
        f.put(PageSize::SIZE_2M, Scope::System, "resv_hugepages", 7);
        f.put(PageSize::SIZE_2M, Scope::System, "surplus_hugepages", 3);
        f.set_pool(PageSize::SIZE_2M, Scope::Node(0), 100, 90);
        f.set_pool(PageSize::SIZE_2M, Scope::Node(1), 200, 160);
        f.put(PageSize::SIZE_2M, Scope::Node(1), "surplus_hugepages", 3);
        f.set_pool(PageSize::SIZE_1G, Scope::System, 4, 4);
        // A memory-less node: listed in sysfs, but without pools.
        fs::create_dir_all(f.roots.nodes_dir().join("node2")).expect("mkdir");
        f.write(
            "proc/self/mountinfo",
            "40 24 0:40 / /dev/hugepages rw,relatime - hugetlbfs hugetlbfs rw,pagesize=2M\n\
             41 24 0:41 / /mnt/huge1g rw - hugetlbfs nodev rw,pagesize=1G\n",
        );

        let st = status(&f.roots).expect("status");
        assert_eq!(st.default_size, Some(PageSize::SIZE_2M));
        let sizes: Vec<_> = st.sizes.iter().map(|s| s.size).collect();
        assert_eq!(sizes, vec![PageSize::SIZE_2M, PageSize::SIZE_1G]);
        let two = st.size(PageSize::SIZE_2M).expect("2M");
        assert_eq!(
            (two.total, two.free, two.reserved, two.surplus, two.in_use()),
            (300, 250, 7, 3, 50)
        );
        assert_eq!(
            two.nodes,
            vec![
                NodeStatus {
                    node: 0,
                    total: 100,
                    free: 90,
                    surplus: 0
                },
                NodeStatus {
                    node: 1,
                    total: 200,
                    free: 160,
                    surplus: 3
                },
            ]
        );
        assert_eq!(st.size(PageSize::SIZE_1G).map(|s| s.total), Some(4));
        let m1g: Vec<_> = st.mounts_of(PageSize::SIZE_1G).collect();
        assert_eq!(m1g.len(), 1);
        assert_eq!(m1g[0].mount_point, PathBuf::from("/mnt/huge1g"));
        assert_eq!(st.mounts_of(PageSize::SIZE_2M).count(), 1);
    }

    #[test]
    fn status_falls_back_to_proc_mounts() {
        let f = Fake::new();
        fs::remove_file(f.roots.procfs.join("self/mountinfo")).expect("rm");
        f.write("proc/mounts", "nodev /mnt/h hugetlbfs rw,pagesize=1G 0 0\n");
        let st = status(&f.roots).expect("status");
        assert_eq!(st.mounts_of(PageSize::SIZE_1G).count(), 1);
    }

    #[test]
    fn status_rejects_garbage_counters_and_missing_hugetlb() {
        let f = Fake::new();
        f.write(
            "sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
            "lots\n",
        );
        assert!(matches!(status(&f.roots), Err(Error::Parse { .. })));

        let f = Fake::new();
        fs::remove_dir_all(f.roots.hugepages_dir()).expect("rm");
        let err = status(&f.roots).expect_err("no hugetlb");
        assert!(matches!(err, Error::NoHugetlb { .. }));
        assert!(err.to_string().contains("no hugetlb support"), "{err}");
    }

    #[test]
    fn reserve_writes_global_count_and_mounts() {
        let f = Fake::new();
        let plan = plan_reserve(&f.roots, &f.reserve(64)).expect("plan");
        assert_eq!(plan.steps.len(), 3, "{plan:?}");
        let mut k = FakeKernel::default();
        let done = apply(&plan, &mut k).expect("apply");
        assert_eq!(f.nr(PageSize::SIZE_2M, Scope::System), 64);
        assert_eq!(f.nr(PageSize::SIZE_2M, Scope::Node(0)), 0);
        assert_eq!(f.nr(PageSize::SIZE_1G, Scope::System), 0);
        assert!(f.mount_dir().is_dir());
        assert_eq!(
            k.log,
            vec![
                "write 64".to_owned(),
                "mkdir".to_owned(),
                format!("mount 2M {}", f.mount_dir().display())
            ]
        );
        assert_eq!(
            done[0],
            Outcome::Pages {
                size: PageSize::SIZE_2M,
                scope: Scope::System,
                previous: 0,
                requested: 64,
                got: 64
            }
        );
    }

    #[test]
    fn reserve_on_a_node_writes_only_that_node() {
        let f = Fake::new();
        let req = ReserveRequest {
            size: PageSize::SIZE_1G,
            node: Some(1),
            mount: None,
            ..f.reserve(2)
        };
        let plan = plan_reserve(&f.roots, &req).expect("plan");
        apply(&plan, &mut FakeKernel::default()).expect("apply");
        assert_eq!(f.nr(PageSize::SIZE_1G, Scope::Node(1)), 2);
        assert_eq!(f.nr(PageSize::SIZE_1G, Scope::Node(0)), 0);
        assert_eq!(f.nr(PageSize::SIZE_1G, Scope::System), 0);
    }

    #[test]
    fn reserve_unknown_node_lists_nodes() {
        let f = Fake::new();
        let req = ReserveRequest {
            node: Some(7),
            ..f.reserve(2)
        };
        let err = plan_reserve(&f.roots, &req).expect_err("node 7");
        assert_eq!(err.to_string(), "NUMA node 7 does not exist; nodes: 0, 1");
    }

    #[test]
    fn reserve_skips_mount_when_one_of_that_size_exists() {
        let f = Fake::new();
        f.write(
            "proc/self/mountinfo",
            "40 24 0:40 / /elsewhere rw - hugetlbfs nodev rw,pagesize=2M\n",
        );
        let plan = plan_reserve(&f.roots, &f.reserve(8)).expect("plan");
        assert_eq!(plan.steps.len(), 1);
        assert!(
            plan.notes[0].contains("already mounted at /elsewhere"),
            "{plan:?}"
        );
        // A mount without pagesize= serves the default size (2M in meminfo), so it counts too.
        f.write(
            "proc/self/mountinfo",
            "40 24 0:40 / /old rw - hugetlbfs nodev rw\n",
        );
        assert_eq!(
            plan_reserve(&f.roots, &f.reserve(8))
                .expect("plan")
                .steps
                .len(),
            1
        );
    }

    #[test]
    fn reserve_refuses_mount_point_used_by_other_size() {
        let f = Fake::new();
        let target = f.mount_dir();
        f.write(
            "proc/self/mountinfo",
            &format!(
                "40 24 0:40 / {} rw - hugetlbfs nodev rw,pagesize=1G\n",
                target.display()
            ),
        );
        let err = plan_reserve(&f.roots, &f.reserve(8)).expect_err("busy");
        assert!(matches!(err, Error::MountPointBusy { .. }), "{err}");
    }

    #[test]
    fn reserve_mount_point_that_is_a_file_is_refused() {
        let f = Fake::new();
        fs::write(f.mount_dir(), "x").expect("write");
        let err = plan_reserve(&f.roots, &f.reserve(8)).expect_err("file");
        assert!(matches!(err, Error::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn partial_allocation_fails_and_restores_previous_count() {
        let f = Fake::new();
        f.set_pool(PageSize::SIZE_2M, Scope::System, 10, 10);
        let plan = plan_reserve(&f.roots, &f.reserve(64)).expect("plan");
        let mut k = FakeKernel {
            cap: Some(40),
            ..FakeKernel::default()
        };
        let err = apply(&plan, &mut k).expect_err("partial");
        assert!(
            matches!(
                err,
                Error::Partial {
                    requested: 64,
                    got: 40,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("only 40 of the 64 2048kB pages"), "{msg}");
        assert!(msg.contains("put back to 10"), "{msg}");
        assert!(msg.contains("--allow-partial"), "{msg}");
        assert_eq!(f.nr(PageSize::SIZE_2M, Scope::System), 10);
        // Nothing after the failed step ran.
        assert!(!k.log.iter().any(|l| l.starts_with("mount")), "{:?}", k.log);
        assert!(!f.mount_dir().exists());
    }

    #[test]
    fn partial_allocation_is_kept_when_allowed() {
        let f = Fake::new();
        let req = ReserveRequest {
            allow_partial: true,
            mount: None,
            ..f.reserve(64)
        };
        let plan = plan_reserve(&f.roots, &req).expect("plan");
        let mut k = FakeKernel {
            cap: Some(40),
            ..FakeKernel::default()
        };
        let done = apply(&plan, &mut k).expect("allowed");
        assert_eq!(f.nr(PageSize::SIZE_2M, Scope::System), 40);
        assert!(
            done[0].to_string().contains("0 -> 40 (asked for 64"),
            "{}",
            done[0]
        );
    }

    #[test]
    fn kernel_giving_nothing_is_refusal_even_with_allow_partial() {
        let f = Fake::new();
        let req = ReserveRequest {
            allow_partial: true,
            size: PageSize::SIZE_1G,
            ..f.reserve(4)
        };
        let plan = plan_reserve(&f.roots, &req).expect("plan");
        let err = apply(
            &plan,
            &mut FakeKernel {
                cap: Some(0),
                ..FakeKernel::default()
            },
        )
        .expect_err("refused");
        assert!(
            matches!(err, Error::KernelRefused { requested: 4, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("hugepagesz=1G"), "{err}");
    }

    #[test]
    fn permission_denied_says_run_as_root() {
        for errno in [libc::EACCES, libc::EPERM] {
            let f = Fake::new();
            let plan = plan_reserve(&f.roots, &f.reserve(8)).expect("plan");
            let mut k = FakeKernel {
                write_errno: Some(errno),
                ..FakeKernel::default()
            };
            let err = apply(&plan, &mut k).expect_err("denied");
            let msg = err.to_string();
            let path = f
                .roots
                .size_dir(PageSize::SIZE_2M, Scope::System)
                .join("nr_hugepages");
            assert!(
                msg.starts_with(&format!(
                    "must run as root (or with CAP_SYS_ADMIN): cannot write {}: ",
                    path.display()
                )),
                "{msg}"
            );
            assert!(!msg.contains("os error"), "{msg}");
        }
        let f = Fake::new();
        let plan = plan_reserve(&f.roots, &f.reserve(8)).expect("plan");
        let mut k = FakeKernel {
            write_errno: Some(libc::EACCES),
            ..FakeKernel::default()
        };
        assert!(apply(&plan, &mut k)
            .expect_err("denied")
            .to_string()
            .ends_with("Permission denied"));
    }

    #[test]
    fn mount_failure_carries_errno_text() {
        let f = Fake::new();
        let plan = plan_reserve(&f.roots, &f.reserve(8)).expect("plan");
        let mut k = FakeKernel {
            mount_errno: Some(libc::ENODEV),
            ..FakeKernel::default()
        };
        let err = apply(&plan, &mut k).expect_err("mount fails");
        assert!(matches!(err, Error::Mount { .. }), "{err:?}");
        assert!(err.to_string().ends_with("No such device"), "{err}");
        let mut k = FakeKernel {
            mount_errno: Some(libc::EPERM),
            ..FakeKernel::default()
        };
        assert!(matches!(apply(&plan, &mut k), Err(Error::NotRoot { .. })));
    }

    #[test]
    fn unsupported_size_lists_supported_sizes() {
        let f = Fake::new();
        let req = ReserveRequest {
            size: "16M".parse().expect("size"),
            ..f.reserve(8)
        };
        let err = plan_reserve(&f.roots, &req).expect_err("16M");
        assert_eq!(
            err.to_string(),
            "page size 16384kB is not supported by this kernel; supported sizes: 2048kB (2M), 1048576kB (1G)"
        );
        let rel = ReleaseRequest {
            size: req.size.into(),
            ..ReleaseRequest::default()
        };
        assert!(matches!(
            plan_release(&f.roots, &rel),
            Err(Error::UnsupportedSize { .. })
        ));
    }

    #[test]
    fn dry_run_plans_change_nothing() {
        let f = Fake::new();
        f.set_pool(PageSize::SIZE_2M, Scope::System, 5, 5);
        let snapshot = |f: &Fake| {
            let mut files = Vec::new();
            let mut stack = vec![f.dir.path().to_owned()];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).expect("readdir") {
                    let p = e.expect("entry").path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        files.push((p.clone(), fs::read(&p).expect("read")));
                    }
                }
            }
            files.sort();
            files
        };
        let before = snapshot(&f);
        let plan = plan_reserve(&f.roots, &f.reserve(64)).expect("plan");
        let text: Vec<String> = plan.steps.iter().map(ToString::to_string).collect();
        let nr = f
            .roots
            .size_dir(PageSize::SIZE_2M, Scope::System)
            .join("nr_hugepages");
        assert_eq!(
            text,
            vec![
                format!(
                    "write 64 to {} (2048kB pages system-wide: 5 -> 64)",
                    nr.display()
                ),
                format!("mkdir -p {}", f.mount_dir().display()),
                format!(
                    "mount -t hugetlbfs -o pagesize=2M hugetlbfs {}",
                    f.mount_dir().display()
                ),
            ]
        );
        plan_release(
            &f.roots,
            &ReleaseRequest {
                unmount: true,
                ..ReleaseRequest::default()
            },
        )
        .expect("release plan");
        assert_eq!(snapshot(&f), before);
        assert!(!f.mount_dir().exists());
    }

    #[test]
    fn shrinking_reserve_is_noted() {
        let f = Fake::new();
        f.set_pool(PageSize::SIZE_2M, Scope::System, 100, 100);
        let plan = plan_reserve(&f.roots, &f.reserve(64)).expect("plan");
        assert!(
            plan.notes
                .iter()
                .any(|n| n.contains("shrink from 100 to 64")),
            "{plan:?}"
        );
    }

    #[test]
    fn release_refuses_in_use_pages_unless_forced() {
        let f = Fake::new();
        f.set_pool(PageSize::SIZE_2M, Scope::System, 64, 60);
        f.set_pool(PageSize::SIZE_1G, Scope::System, 2, 2);
        let err = plan_release(&f.roots, &ReleaseRequest::default()).expect_err("in use");
        assert!(
            matches!(
                err,
                Error::InUse {
                    total: 64,
                    in_use: 4,
                    reserved: 0,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("--force"), "{err}");
        // The refusal came before any write: the free 1G pool is untouched too.
        assert_eq!(f.nr(PageSize::SIZE_1G, Scope::System), 2);

        let forced = ReleaseRequest {
            force: true,
            ..ReleaseRequest::default()
        };
        let plan = plan_release(&f.roots, &forced).expect("forced");
        apply(&plan, &mut FakeKernel::default()).expect("apply");
        assert_eq!(f.nr(PageSize::SIZE_2M, Scope::System), 0);
        assert_eq!(f.nr(PageSize::SIZE_1G, Scope::System), 0);
    }

    #[test]
    fn release_counts_reserved_pages_as_in_use() {
        let f = Fake::new();
        f.set_pool(PageSize::SIZE_2M, Scope::System, 64, 64);
        f.put(PageSize::SIZE_2M, Scope::System, "resv_hugepages", 16);
        let req = ReleaseRequest {
            size: Some(PageSize::SIZE_2M),
            ..ReleaseRequest::default()
        };
        assert!(matches!(
            plan_release(&f.roots, &req),
            Err(Error::InUse {
                reserved: 16,
                in_use: 0,
                ..
            })
        ));
    }

    #[test]
    fn release_one_node_and_unmount() {
        let f = Fake::new();
        f.set_pool(PageSize::SIZE_2M, Scope::Node(0), 8, 8);
        f.set_pool(PageSize::SIZE_2M, Scope::Node(1), 8, 2);
        let req = ReleaseRequest {
            size: Some(PageSize::SIZE_2M),
            node: Some(0),
            ..ReleaseRequest::default()
        };
        let plan = plan_release(&f.roots, &req).expect("node 0 is free");
        apply(&plan, &mut FakeKernel::default()).expect("apply");
        assert_eq!(f.nr(PageSize::SIZE_2M, Scope::Node(0)), 0);
        assert_eq!(f.nr(PageSize::SIZE_2M, Scope::Node(1)), 8);
        let node1 = ReleaseRequest {
            node: Some(1),
            ..req.clone()
        };
        assert!(matches!(
            plan_release(&f.roots, &node1),
            Err(Error::InUse { .. })
        ));
        let with_unmount = ReleaseRequest {
            unmount: true,
            ..req
        };
        assert!(matches!(
            plan_release(&f.roots, &with_unmount),
            Err(Error::UnmountWithNode)
        ));

        f.set_pool(PageSize::SIZE_2M, Scope::System, 4, 4);
        f.write(
            "proc/self/mountinfo",
            "40 24 0:40 / /dev/hugepages rw - hugetlbfs nodev rw,pagesize=2M\n\
             41 24 0:41 / /mnt/g rw - hugetlbfs nodev rw,pagesize=1G\n",
        );
        let req = ReleaseRequest {
            size: Some(PageSize::SIZE_2M),
            unmount: true,
            ..ReleaseRequest::default()
        };
        let mut k = FakeKernel::default();
        apply(&plan_release(&f.roots, &req).expect("plan"), &mut k).expect("apply");
        assert_eq!(
            k.log,
            vec!["write 0".to_owned(), "umount /dev/hugepages".to_owned()]
        );
    }

    #[test]
    fn release_with_nothing_reserved_is_a_no_op() {
        let f = Fake::new();
        let plan = plan_release(&f.roots, &ReleaseRequest::default()).expect("plan");
        assert!(plan.steps.is_empty());
        assert_eq!(plan.notes.len(), 2);
    }

    #[test]
    fn forced_release_reports_pages_still_held() {
        let f = Fake::new();
        f.set_pool(PageSize::SIZE_2M, Scope::System, 64, 60);
        let req = ReleaseRequest {
            force: true,
            ..ReleaseRequest::default()
        };
        let plan = plan_release(&f.roots, &req).expect("plan");
        // The kernel cannot free the 4 mapped pages; they stay until their users exit.
        let mut k = FakeKernel {
            floor: Some(4),
            ..FakeKernel::default()
        };
        let done = apply(&plan, &mut k).expect("apply");
        assert_eq!(
            done,
            vec![Outcome::Pages {
                size: PageSize::SIZE_2M,
                scope: Scope::System,
                previous: 64,
                requested: 0,
                got: 4,
            }]
        );
        assert!(done[0].to_string().contains("4 still held"), "{}", done[0]);
    }

    #[test]
    fn errno_text_strips_os_error_suffix() {
        assert_eq!(
            errno_text(&io::Error::from_raw_os_error(libc::EACCES)),
            "Permission denied"
        );
        assert_eq!(errno_text(&io::Error::other("plain")), "plain");
    }
}
