//! What the benchmarks share: the CPUs to place lcores on, EAL memory arguments, medians, the
//! machine description, and hand-written SVG line plots (a few dozen elements do not justify
//! a plotting crate).

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The CPUs this process may run on (`Cpus_allowed_list`), lowest first.
pub fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("0")
        .trim();
    let mut cpus = parse_cpu_list(list);
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus
}

/// A kernel CPU list ("0-3,6") as CPU numbers; malformed parts are skipped.
pub fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<usize>(), hi.trim().parse::<usize>()) {
            cpus.extend(lo..=hi);
        }
    }
    cpus
}

/// EAL memory arguments: `--in-memory` (hugepages) or `--no-huge -m <mb>`.
pub fn mem_args(memory: &str, mb: usize) -> Vec<String> {
    match memory {
        "in-memory" => vec!["--in-memory".into()],
        _ => vec!["--no-huge".into(), "-m".into(), mb.to_string()],
    }
}

/// What a benchmark's scrubd configuration (see [`scrubd_config`]) varies; the rest (burst 32,
/// 1024-descriptor rings, a mempool cache of 256, outside-inside pair, no pdump) is the same
/// for every benchmark, so that their figures compare.
pub struct ScrubdConfig<'a> {
    pub lcores: &'a str,
    /// EAL memory: "in-memory" (hugepages) or "no-huge" with `memory_mb`.
    pub memory: &'a str,
    pub memory_mb: usize,
    pub file_prefix: &'a str,
    /// Extra EAL arguments; `None` leaves the key out.
    pub extra_args: Option<&'a [String]>,
    pub workers: &'a [usize],
    pub mbufs: usize,
    pub outside: &'a str,
    pub inside: &'a str,
    /// `[run] duration_s`; `None` runs until the process is told to stop.
    pub duration_s: Option<u64>,
    pub summary: &'a std::path::Path,
    pub socket: &'a std::path::Path,
    /// The `[pipeline...]` sections, last in the file.
    pub pipeline: &'a str,
}

/// The scrubd configuration (TOML) a benchmark runs scrubd with.
pub fn scrubd_config(c: &ScrubdConfig) -> String {
    let memory = if c.memory == "in-memory" {
        "memory = \"in-memory\"".to_string()
    } else {
        format!("memory = \"no-huge\"\nmemory_mb = {}", c.memory_mb)
    };
    let extra = c.extra_args.map_or(String::new(), |a| {
        let a: Vec<String> = a.iter().map(|s| format!("{s:?}")).collect();
        format!("extra_args = [{}]\n", a.join(", "))
    });
    let workers: Vec<String> = c.workers.iter().map(usize::to_string).collect();
    let duration = c
        .duration_s
        .map_or(String::new(), |s| format!("duration_s = {s}\n"));
    format!(
        r#"[eal]
lcores = "{lcores}"
{memory}
file_prefix = "{prefix}"
{extra}
[dataplane]
workers = [{workers}]
burst = 32
rx_desc = 1024
tx_desc = 1024
mempool_mbufs = {mbufs}
mempool_cache = 256

[[port]]
name = "outside"
vdev = "{outside}"

[[port]]
name = "inside"
vdev = "{inside}"

[[pair]]
outside = "outside"
inside = "inside"

[run]
{duration}summary_json = "{summary}"

[control]
socket = "{socket}"
pdump = false

{pipeline}
"#,
        lcores = c.lcores,
        prefix = c.file_prefix,
        workers = workers.join(", "),
        mbufs = c.mbufs,
        outside = c.outside,
        inside = c.inside,
        summary = c.summary.display(),
        socket = c.socket.display(),
        pipeline = c.pipeline,
    )
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct Machine {
    pub cpu_model: String,
    pub nproc: usize,
    pub allowed_cpus: Vec<usize>,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Machine {
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_default(),
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        allowed_cpus: allowed_cpus(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

pub const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One line of a [`line_svg`] plot.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// X axis of a [`line_svg`] plot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    Linear,
    /// The "1/(1-percentile)" axis of latency percentile plots: x is a percentile (0..100)
    /// drawn at log10(1/(1-x/100)), ticks at 90, 99, 99.9, ...
    Percentile,
}

/// Where a plot's area lies in its SVG drawing, and the parts every plot here draws the same
/// way around it (background, grid, ticks, frame, axis labels).
#[derive(Clone, Copy, Debug)]
pub struct PlotArea {
    pub w: f64,
    pub h: f64,
    pub left: f64,
    pub top: f64,
    /// Width and height of the area inside the margins.
    pub pw: f64,
    pub ph: f64,
}

impl PlotArea {
    /// A `w` x `h` drawing with these margins: `(left, right, top, bottom)`.
    pub fn new(w: f64, h: f64, (left, right, top, bottom): (f64, f64, f64, f64)) -> PlotArea {
        PlotArea {
            w,
            h,
            left,
            top,
            pw: w - left - right,
            ph: h - top - bottom,
        }
    }

    /// The `<svg>` element and the white background.
    pub fn open(&self, s: &mut String) {
        let (w, h) = (self.w, self.h);
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    }

    /// A horizontal grid line at height `yy`, labelled with its value `v` left of the area.
    pub fn y_grid(&self, s: &mut String, yy: f64, v: f64) {
        let left = self.left;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}" stroke="#ddd"/><text x="{lx}" y="{ty:.1}" text-anchor="end">{v}</text>"##,
            x2 = left + self.pw,
            lx = left - 6.0,
            ty = yy + 4.0
        );
    }

    /// A tick under the area at `xx`, with its label.
    pub fn x_tick(&self, s: &mut String, xx: f64, label: impl std::fmt::Display) {
        let (top, ph) = (self.top, self.ph);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{y0}" x2="{xx:.1}" y2="{y1}" stroke="#333"/><text x="{xx:.1}" y="{ty}" text-anchor="middle">{label}</text>"##,
            y0 = top + ph,
            y1 = top + ph + 5.0,
            ty = top + ph + 18.0
        );
    }

    /// The area's frame, the x axis label under it and the y axis label along its left side
    /// (both escaped).
    pub fn frame(&self, s: &mut String, x_label: &str, y_label: &str) {
        let PlotArea {
            h,
            left,
            top,
            pw,
            ph,
            ..
        } = *self;
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            left + pw / 2.0,
            h - 18.0,
            xml_escape(x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{c}" text-anchor="middle" transform="rotate(-90 18 {c})">{}</text>"#,
            xml_escape(y_label),
            c = top + ph / 2.0
        );
    }
}

/// A round axis above `y_top` (which must be above 0): `(step, top)`, the step 1, 2 or 5 times
/// a power of ten and the top the first multiple of it at or above `y_top`.
pub fn round_axis(y_top: f64) -> (f64, f64) {
    let mut step = 10f64.powf((y_top / 5.0).log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if y_top / (step * m) <= 5.0 {
            step *= m;
            break;
        }
    }
    (step, (y_top / step).ceil() * step)
}

/// A line plot with points, axis labels and a legend, as SVG text.
pub fn line_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_axis: XAxis,
    series: &[Series],
) -> String {
    let area = PlotArea::new(780.0, 460.0, (70.0, 220.0, 40.0, 60.0));
    let (w, left, top, pw, ph) = (area.w, area.left, area.top, area.pw, area.ph);
    let tx = |x: f64| match x_axis {
        XAxis::Linear => x,
        XAxis::Percentile => (1.0 / (1.0 - (x / 100.0).min(0.999_999))).log10(),
    };
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| tx(p.0)))
        .collect();
    let x_min = match x_axis {
        XAxis::Linear => 0.0,
        XAxis::Percentile => 0.0,
    };
    let x_max = xs.iter().copied().fold(1.0f64, f64::max) * 1.05;
    let y_top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let (step, y_max) = round_axis(y_top);
    let x = |v: f64| left + (tx(v) - x_min) / (x_max - x_min) * pw;
    let y = |v: f64| top + ph - v / y_max * ph;
    let mut s = String::new();
    area.open(&mut s);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="13">{}</text>"#,
        w / 2.0,
        xml_escape(title)
    );
    let mut v = 0.0;
    while v <= y_max + step / 2.0 {
        area.y_grid(&mut s, y(v), v);
        v = ((v + step) / step).round() * step;
    }
    let ticks: Vec<(f64, String)> = match x_axis {
        XAxis::Linear => {
            let mut t: Vec<f64> = series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0))
                .collect();
            t.sort_by(f64::total_cmp);
            t.dedup();
            t.into_iter().map(|v| (v, format!("{v}"))).collect()
        }
        XAxis::Percentile => [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
            .iter()
            .filter(|&&p| tx(p) <= x_max)
            .map(|&p| (p, format!("{p}%")))
            .collect(),
    };
    for (v, label) in ticks {
        area.x_tick(&mut s, x(v), label);
    }
    area.frame(&mut s, x_label, y_label);
    for (i, se) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let dash = if se.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let pts: Vec<String> = se
            .points
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        if pts.len() > 1 {
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                pts.join(" ")
            );
        }
        if x_axis == XAxis::Linear {
            for (a, b) in &se.points {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{color}"><title>{}: {a} → {b:.3}</title></circle>"#,
                    x(*a),
                    y(*b),
                    xml_escape(&se.name)
                );
            }
        }
        let ly = top + 10.0 + i as f64 * 20.0;
        let lx = left + pw + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            xml_escape(&se.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-2,5"), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("x,3"), vec![3]);
    }

    #[test]
    fn plots_have_a_line_per_series() {
        let series = vec![
            Series {
                name: "a <b>".into(),
                points: vec![(1.0, 2.0), (2.0, 3.5)],
                dashed: false,
            },
            Series {
                name: "c".into(),
                points: vec![(50.0, 1.0), (99.0, 4.0), (99.9, 9.0)],
                dashed: true,
            },
        ];
        let s = line_svg("t", "x", "y", XAxis::Linear, &series);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("a &lt;b&gt;"));
        let p = line_svg("t", "x", "y", XAxis::Percentile, &series[1..]);
        assert!(p.contains(">99.9%<"));
    }
}
