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

/// A line plot with points, axis labels and a legend, as SVG text.
pub fn line_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_axis: XAxis,
    series: &[Series],
) -> String {
    let (w, h) = (780.0, 460.0);
    let (left, right, top, bottom) = (70.0, 220.0, 40.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
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
    // A round axis top: 1, 2 or 5 times a power of ten, above the largest value.
    let mut step = 10f64.powf((y_top / 5.0).log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if y_top / (step * m) <= 5.0 {
            step *= m;
            break;
        }
    }
    let y_max = (y_top / step).ceil() * step;
    let x = |v: f64| left + (tx(v) - x_min) / (x_max - x_min) * pw;
    let y = |v: f64| top + ph - v / y_max * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="13">{}</text>"#,
        w / 2.0,
        xml_escape(title)
    );
    let mut v = 0.0;
    while v <= y_max + step / 2.0 {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}" stroke="#ddd"/><text x="{lx}" y="{ty:.1}" text-anchor="end">{v}</text>"##,
            yy = y(v),
            x2 = left + pw,
            lx = left - 6.0,
            ty = y(v) + 4.0
        );
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
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{y0}" x2="{xx:.1}" y2="{y1}" stroke="#333"/><text x="{xx:.1}" y="{ty}" text-anchor="middle">{label}</text>"##,
            xx = x(v),
            y0 = top + ph,
            y1 = top + ph + 5.0,
            ty = top + ph + 18.0
        );
    }
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
