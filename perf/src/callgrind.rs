//! Instructions per packet of a forwarding thread, counted by valgrind's callgrind.
//!
//! Wall-clock Mpps on a shared VM swings by ±25 % between runs; retired instructions do not.
//! `scrubd-bench --instructions-via-callgrind` runs testpmd and scrubd under
//! `valgrind --tool=callgrind --separate-threads=yes`, so each thread gets its own output file,
//! and divides the busiest thread's instructions (the forwarding lcore: it polls without pause)
//! by the packets it received. Each instruction is charged to the object it executed in, so
//! the result also says how much of a packet's cost is DPDK's (the PMDs, the mempool), which
//! testpmd pays too, and how much is the tool's own code.
//!
//! Only the `Ir` event is read (callgrind's default, and the only one these files carry).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `valgrind` arguments that write one file per thread named `<prefix>.<pid>-<thread>`.
pub fn valgrind_args(prefix: &Path) -> Vec<String> {
    vec![
        "--tool=callgrind".into(),
        "--separate-threads=yes".into(),
        "--compress-strings=no".into(),
        format!("--callgrind-out-file={}.%p", prefix.display()),
    ]
}

/// `program` as a command, run under callgrind into `prefix` (see [`valgrind_args`]) when a
/// prefix is given.
pub fn command(program: &Path, prefix: Option<&Path>) -> std::process::Command {
    match prefix {
        Some(p) => {
            let mut c = std::process::Command::new("valgrind");
            c.args(valgrind_args(p)).arg(program);
            c
        }
        None => std::process::Command::new(program),
    }
}

/// Instructions of one thread, by the object (executable or shared library) they ran in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadCost {
    pub total: u64,
    pub by_object: BTreeMap<String, u64>,
}

impl ThreadCost {
    /// Instructions in objects whose file name satisfies `pred`.
    pub fn sum_where(&self, pred: impl Fn(&str) -> bool) -> u64 {
        self.by_object
            .iter()
            .filter(|(o, _)| pred(o))
            .map(|(_, v)| *v)
            .sum()
    }
}

/// Reads one callgrind output file: its self cost per object.
///
/// The format (valgrind's `docs/callgrind-format`): `ob=` names the object of the functions that
/// follow; a line starting with a digit, `+`, `-` or `*` is a cost line, position(s) first and
/// the event counts last; the cost line right after a `calls=` line is the inclusive cost of a
/// call, already counted where the callee's own lines are, so it is skipped.
pub fn parse(text: &str) -> Result<ThreadCost, String> {
    let mut cost = ThreadCost::default();
    let mut object = String::from("???");
    let mut after_calls = false;
    let mut summed = 0u64;
    for line in text.lines() {
        if let Some(o) = line.strip_prefix("ob=") {
            object = o.trim().to_string();
            continue;
        }
        if line.starts_with("calls=") {
            after_calls = true;
            continue;
        }
        if let Some(t) = line
            .strip_prefix("totals:")
            .or_else(|| line.strip_prefix("summary:"))
        {
            let v: u64 = t
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("unreadable total line {line:?}"))?;
            cost.total = cost.total.max(v);
            continue;
        }
        let first = line.as_bytes().first().copied();
        if !matches!(first, Some(b'0'..=b'9' | b'+' | b'-' | b'*')) {
            continue;
        }
        if std::mem::take(&mut after_calls) {
            continue;
        }
        let ir: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("unreadable cost line {line:?}"))?;
        *cost.by_object.entry(object.clone()).or_default() += ir;
        summed += ir;
    }
    if cost.total == 0 {
        cost.total = summed;
    }
    Ok(cost)
}

/// The thread files of one run (`<prefix>.<pid>-<thread>`), read; the busiest first.
pub fn threads(prefix: &Path) -> Result<Vec<(PathBuf, ThreadCost)>, String> {
    let dir = prefix.parent().unwrap_or(Path::new("."));
    let stem = prefix
        .file_name()
        .map(|s| format!("{}.", s.to_string_lossy()))
        .ok_or("callgrind prefix has no file name")?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        let name = p.file_name().map(|s| s.to_string_lossy().into_owned());
        if !name.is_some_and(|n| n.starts_with(&stem) && n.contains('-')) {
            continue;
        }
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push((
            p.clone(),
            parse(&text).map_err(|e| format!("{}: {e}", p.display()))?,
        ));
    }
    out.sort_by_key(|(_, c)| std::cmp::Reverse(c.total));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file shaped as callgrind 3.19 writes it with `--compress-strings=no`.
    const SAMPLE: &str = "\
# callgrind format
version: 1
creator: callgrind-3.19.0
thread: 4
events: Ir
ob=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/librte_net_pcap.so.23.0
fl=???
fn=0x0000000000003f70
0 100
+3 20
ob=/work/main/target/release/scrubd
fl=/work/main/dataplane/src/worker.rs
fn=dataplane::worker::worker_loop
316 50
cob=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/librte_net_pcap.so.23.0
cfn=0x0000000000003f70
calls=1 0
316 120
-2 7
summary: 177
totals: 177
";

    #[test]
    fn self_cost_per_object_skips_inclusive_call_costs() {
        let c = parse(SAMPLE).expect("parses");
        assert_eq!(c.total, 177);
        assert_eq!(c.sum_where(|o| o.contains("librte_")), 120);
        assert_eq!(c.sum_where(|o| o.ends_with("/scrubd")), 57);
        assert_eq!(c.by_object.values().sum::<u64>(), c.total);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("ob=x\n12 notanumber\n").is_err());
        assert!(parse("totals: x\n").is_err());
        assert_eq!(parse("").expect("empty parses").total, 0);
    }

    #[test]
    fn thread_files_are_found_by_prefix_busiest_first() {
        let dir = std::env::temp_dir().join(format!("cg-threads-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("cg.scrubd.77-01"), "ob=a\n1 5\n").expect("write");
        std::fs::write(dir.join("cg.scrubd.77-02"), "ob=a\n1 9\n").expect("write");
        std::fs::write(dir.join("cg.testpmd.78-01"), "ob=a\n1 1000\n").expect("write");
        let t = threads(&dir.join("cg.scrubd")).expect("reads");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            t.iter().map(|(_, c)| c.total).collect::<Vec<_>>(),
            vec![9, 5]
        );
    }
}
