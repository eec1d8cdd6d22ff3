//! `hugepage-setup`: the CLI face of the library; parsing and printing only.

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hugepage_setup::{
    apply, plan_release, plan_reserve, status, PageSize, Plan, ReleaseRequest, ReserveRequest,
    Roots, Status, SystemHost,
};

const ABOUT: &str = "Reserve, inspect and release hugepages for DPDK (replaces `echo N > /sys/kernel/mm/hugepages/.../nr_hugepages`).";

const LONG_ABOUT: &str = "\
Reserve, inspect and release hugepages for DPDK.

DPDK keeps its packet buffers (mempools) and rings in hugepages: 2 MiB or 1 GiB pages that
the kernel sets aside up front. Big pages mean few TLB misses at line rate, and they are
pinned, so their physical addresses stay valid for the NIC's DMA. DPDK finds them through a
hugetlbfs mount of the matching page size, so a usable setup needs both: pages in the pool
(nr_hugepages) and a hugetlbfs mounted for that size.

The kernel allocates pages when asked, from whatever free contiguous memory it has, and may
give fewer than asked without saying so. This tool re-reads the count after every write and
fails loudly (restoring the old count) unless --allow-partial is given. On a NUMA machine,
reserve on the node the NIC is attached to (--node), since DPDK allocates per socket.";

const AFTER_HELP: &str = "\
Examples:
  hugepage-setup                                  show pools and mounts (same as `status`)
  hugepage-setup status --json                    the same, for scripts
  hugepage-setup reserve --pages 1024             1024 x 2M pages, mount /dev/hugepages if needed
  hugepage-setup reserve --pages 4 --size 1G --mount /dev/hugepages-1G
  hugepage-setup reserve --pages 512 --node 1     512 x 2M pages on NUMA node 1 only
  hugepage-setup reserve --pages 1024 --dry-run   print the writes and mounts, change nothing
  hugepage-setup release --unmount               give every pool back, unmount hugetlbfs

Exit status:
  0  success
  1  error (not root, unsupported page size, kernel gave too few pages, pages in use, mount failed, ...)
  2  usage error (bad or missing arguments)";

#[derive(Debug, Parser)]
#[command(
    name = "hugepage-setup",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Options of `status`, which runs when no subcommand is given.
    #[command(flatten)]
    status: StatusArgs,

    /// Root of sysfs (for tests against a fake tree).
    #[arg(long, global = true, hide = true, default_value = "/sys")]
    sysfs_root: PathBuf,

    /// Root of procfs (for tests against a fake tree).
    #[arg(long, global = true, hide = true, default_value = "/proc")]
    procfs_root: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show every pool (per page size, system-wide and per NUMA node) and the hugetlbfs mounts.
    Status(StatusArgs),
    /// Set a pool to N pages, check what the kernel gave, and mount hugetlbfs if none is mounted.
    Reserve(ReserveArgs),
    /// Set pools back to 0 pages; refuses while pages are in use unless --force.
    Release(ReleaseArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ReserveArgs {
    /// Number of pages the pool should hold (its new total, not an increment).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pages: u64,
    /// Page size: 2M or 1G (also accepts 2048kB, 1GB, ...).
    #[arg(long, default_value = "2M")]
    size: PageSize,
    /// Reserve on this NUMA node only (default: spread over all nodes).
    #[arg(long)]
    node: Option<u32>,
    /// Where to mount hugetlbfs if none of this page size is mounted yet (created if missing).
    #[arg(long, default_value = "/dev/hugepages", conflicts_with = "no_mount")]
    mount: PathBuf,
    /// Do not mount hugetlbfs.
    #[arg(long)]
    no_mount: bool,
    /// Keep fewer pages than asked if that is all the kernel can give (default: fail and restore).
    #[arg(long)]
    allow_partial: bool,
    /// Print what would be written and mounted; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct ReleaseArgs {
    /// Page size to release (default: every size).
    #[arg(long)]
    size: Option<PageSize>,
    /// Release on this NUMA node only.
    #[arg(long, conflicts_with = "unmount")]
    node: Option<u32>,
    /// Also unmount the hugetlbfs mounts of the released page size(s).
    #[arg(long)]
    unmount: bool,
    /// Release even pages that are in use or reserved (the kernel frees them as users let go).
    #[arg(long)]
    force: bool,
    /// Print what would be written and unmounted; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Exit status when stdout is a pipe whose reader has gone: the status a shell reports for a
/// command that SIGPIPE ended (128 + 13), so `set -o pipefail` scripts see what they would
/// with any other Unix tool.
const EXIT_BROKEN_PIPE: u8 = 141;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let roots = Roots {
        sysfs: cli.sysfs_root,
        procfs: cli.procfs_root,
    };
    let result = match cli.command {
        None => show_status(&roots, &cli.status),
        Some(Command::Status(args)) => show_status(&roots, &args),
        Some(Command::Reserve(args)) => reserve(&roots, args),
        Some(Command::Release(args)) => release(&roots, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `hugepage-setup status | head` must end quietly, not with an error about the closed
        // stdout (Rust ignores SIGPIPE, so the write fails with EPIPE instead).
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(e) => {
            eprintln!("hugepage-setup: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

fn show_status(roots: &Roots, args: &StatusArgs) -> Result<(), Box<dyn std::error::Error>> {
    let st = status(roots)?;
    let out = &mut io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&st)?)?;
    } else {
        print_status(out, &st)?;
    }
    Ok(())
}

fn print_status(out: &mut impl Write, st: &Status) -> io::Result<()> {
    if let Some(d) = st.default_size {
        writeln!(out, "default hugepage size: {d}")?;
    }
    writeln!(
        out,
        "{:<11} {:<13} {:>8} {:>8} {:>8} {:>8}",
        "size", "pool", "total", "free", "reserved", "surplus"
    )?;
    for s in &st.sizes {
        writeln!(
            out,
            "{:<11} {:<13} {:>8} {:>8} {:>8} {:>8}",
            s.size.to_string(),
            "system-wide",
            s.total,
            s.free,
            s.reserved,
            s.surplus
        )?;
        for n in &s.nodes {
            writeln!(
                out,
                "{:<11} {:<13} {:>8} {:>8} {:>8} {:>8}",
                "",
                format!("node {}", n.node),
                n.total,
                n.free,
                "-",
                n.surplus
            )?;
        }
    }
    writeln!(out)?;
    if st.mounts.is_empty() {
        writeln!(
            out,
            "hugetlbfs mounts: none (DPDK needs one per page size it uses)"
        )?;
    } else {
        writeln!(out, "hugetlbfs mounts:")?;
        for m in &st.mounts {
            let size = m
                .page_size
                .map_or_else(|| "unknown size".to_owned(), |p| p.to_string());
            writeln!(
                out,
                "  {}  {}  ({})",
                m.mount_point.display(),
                size,
                m.options
            )?;
        }
    }
    Ok(())
}

fn run_plan(plan: &Plan, dry_run: bool) -> Result<(), Box<dyn std::error::Error>> {
    let out = &mut io::stdout().lock();
    for note in &plan.notes {
        writeln!(out, "note: {note}")?;
    }
    if dry_run {
        if plan.steps.is_empty() {
            writeln!(out, "dry run: nothing to do")?;
        } else {
            writeln!(out, "dry run: nothing changed; would run:")?;
            for step in &plan.steps {
                writeln!(out, "  {step}")?;
            }
        }
        return Ok(());
    }
    for outcome in apply(plan, &mut SystemHost)? {
        writeln!(out, "{outcome}")?;
    }
    Ok(())
}

fn reserve(roots: &Roots, args: ReserveArgs) -> Result<(), Box<dyn std::error::Error>> {
    let req = ReserveRequest {
        pages: args.pages,
        size: args.size,
        node: args.node,
        mount: (!args.no_mount).then_some(args.mount),
        allow_partial: args.allow_partial,
    };
    run_plan(&plan_reserve(roots, &req)?, args.dry_run)
}

fn release(roots: &Roots, args: ReleaseArgs) -> Result<(), Box<dyn std::error::Error>> {
    let req = ReleaseRequest {
        size: args.size,
        node: args.node,
        unmount: args.unmount,
        force: args.force,
    };
    run_plan(&plan_release(roots, &req)?, args.dry_run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for argv in [
            &["hugepage-setup", "reserve"][..],
            &["hugepage-setup", "reserve", "--pages", "0"],
            &["hugepage-setup", "reserve", "--pages", "-3"],
            &[
                "hugepage-setup",
                "reserve",
                "--pages",
                "8",
                "--size",
                "2048",
            ],
            &[
                "hugepage-setup",
                "reserve",
                "--pages",
                "8",
                "--size",
                "huge",
            ],
            &[
                "hugepage-setup",
                "reserve",
                "--pages",
                "8",
                "--no-mount",
                "--mount",
                "/x",
            ],
            &["hugepage-setup", "release", "--node", "0", "--unmount"],
            &["hugepage-setup", "frobnicate"],
        ] {
            let err = Cli::try_parse_from(argv).expect_err(&format!("{argv:?} should not parse"));
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }

    #[test]
    fn defaults_are_status_and_2m_at_dev_hugepages() {
        let cli = Cli::try_parse_from(["hugepage-setup"]).expect("bare invocation parses");
        assert!(cli.command.is_none());
        assert!(!cli.status.json);
        let cli = Cli::try_parse_from(["hugepage-setup", "--json"]).expect("bare --json parses");
        assert!(cli.status.json);
        let cli = Cli::try_parse_from(["hugepage-setup", "reserve", "--pages", "64"])
            .expect("reserve parses");
        match cli.command {
            Some(Command::Reserve(r)) => {
                assert_eq!(r.size, PageSize::SIZE_2M);
                assert_eq!(r.mount, PathBuf::from("/dev/hugepages"));
                assert_eq!(r.node, None);
            }
            other => panic!("expected reserve, got {other:?}"),
        }
    }
}
