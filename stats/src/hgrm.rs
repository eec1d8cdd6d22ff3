//! HdrHistogram's percentile-distribution text (".hgrm").
//!
//! Operators compare latency runs with the standard HdrHistogram plotter and other tools that
//! read this exact layout, so the column widths, the tick spacing and the three trailing `#[...]`
//! lines follow the reference implementation's `outputPercentileDistribution` rather than
//! anything of our own.

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Percentile ticks per half distance to 100%: the reference tools' default, which gives the
/// plotter enough points in the tail without bloating the file.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The percentile distribution of `h` with every value divided by `unit_ratio` (e.g. 1000.0 to
/// print nanosecond recordings in microseconds). A ratio that is zero, negative or not finite
/// is treated as 1 so the output never holds `inf`/`NaN` values.
pub fn write_percentiles(h: &Histogram<u64>, unit_ratio: f64) -> String {
    let ratio = if unit_ratio.is_finite() && unit_ratio > 0.0 {
        unit_ratio
    } else {
        1.0
    };
    let prec = usize::from(h.sigfig());
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored on that ground.
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total: u64 = 0;
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total = total.saturating_add(v.count_since_last_iteration());
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / ratio;
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.prec$} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:12.prec$} {q:2.12} {total:10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.prec$}, StdDeviation   = {:12.prec$}]",
        h.mean() / ratio,
        h.stdev() / ratio
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.prec$}, Total count    = {:12}]",
        h.max() as f64 / ratio,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    );
    out
}

/// The crate does not expose its sub-bucket count; it is the smallest power of two that holds
/// 2 * 10^sigfig values, the same rule every HdrHistogram implementation uses.
fn sub_bucket_count(sigfig: u8) -> u64 {
    10u64
        .checked_pow(u32::from(sigfig))
        .and_then(|p| p.checked_mul(2))
        .and_then(u64::checked_next_power_of_two)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::new_latency_histogram;
    use proptest::prelude::*;

    struct Parsed {
        rows: Vec<(f64, f64, u64, Option<f64>)>,
        mean: f64,
        max: f64,
        total: u64,
        buckets: u64,
        sub_buckets: u64,
    }

    /// Reads the text the way the plotter does: header, blank line, whitespace-separated rows,
    /// then the `#[...]` footer.
    fn parse(text: &str) -> Parsed {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let mut rows = Vec::new();
        let mut footer = Vec::new();
        for line in lines {
            if let Some(f) = line.strip_prefix("#[") {
                footer.push(f.strip_suffix(']').unwrap().to_string());
                continue;
            }
            assert!(footer.is_empty(), "row after footer: {line}");
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert!(cols.len() == 3 || cols.len() == 4, "{line}");
            rows.push((
                cols[0].parse().unwrap(),
                cols[1].parse().unwrap(),
                cols[2].parse().unwrap(),
                cols.get(3).map(|c| c.parse().unwrap()),
            ));
        }
        assert_eq!(footer.len(), 3);
        let field = |line: &str, key: &str| -> String {
            line.split(',')
                .find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k.trim() == key).then(|| v.trim().to_string())
                })
                .unwrap()
        };
        Parsed {
            rows,
            mean: field(&footer[0], "Mean").parse().unwrap(),
            max: field(&footer[1], "Max").parse().unwrap(),
            total: field(&footer[1], "Total count").parse().unwrap(),
            buckets: field(&footer[2], "Buckets").parse().unwrap(),
            sub_buckets: field(&footer[2], "SubBuckets").parse().unwrap(),
        }
    }

    fn check_round_trip(h: &Histogram<u64>, ratio: f64) {
        let p = parse(&write_percentiles(h, ratio));
        assert!(!p.rows.is_empty());
        for w in p.rows.windows(2) {
            assert!(w[0].0 <= w[1].0, "values monotone");
            assert!(w[0].1 < w[1].1, "percentiles strictly increase");
            assert!(w[0].2 <= w[1].2, "total counts monotone");
        }
        for r in &p.rows[..p.rows.len() - 1] {
            let inv = r.3.expect("every row but the last has 1/(1-p)");
            assert!((inv - 1.0 / (1.0 - r.1)).abs() < 0.01);
        }
        let last = p.rows.last().unwrap();
        assert_eq!(last.1, 1.0);
        assert_eq!(last.3, None);
        assert_eq!(last.2, h.len());
        assert_eq!(p.total, h.len());
        let tol = 10f64.powi(-i32::from(h.sigfig()));
        assert!((last.0 - h.max() as f64 / ratio).abs() <= tol);
        assert!((p.max - h.max() as f64 / ratio).abs() <= tol);
        assert!((p.mean - h.mean() / ratio).abs() <= tol);
        assert_eq!(p.buckets, u64::from(h.buckets()));
        assert_eq!(p.sub_buckets, 2048);
    }

    #[test]
    fn reference_layout() {
        let mut h = new_latency_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let text = write_percentiles(&h, 1000.0);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        // First row: the lowest value at percentile 0, its count, 1/(1-0) = 1.
        assert_eq!(
            lines.next().unwrap(),
            "       1.000 0.000000000000          1           1.00"
        );
        // The footer columns are 12 wide, as the plotter's reader expects.
        let max_line = format!(
            "\n#[Max     = {:>12}, Total count    =         1000]\n",
            format!("{:.3}", h.max() as f64 / 1000.0)
        );
        assert!(text.contains(&max_line), "{text}");
        let buckets_line = format!(
            "#[Buckets = {:>12}, SubBuckets     =         2048]\n",
            h.buckets()
        );
        assert!(text.ends_with(&buckets_line));
        check_round_trip(&h, 1000.0);
    }

    #[test]
    fn empty_histogram_has_header_and_footer_only() {
        let h = new_latency_histogram();
        let text = write_percentiles(&h, 1.0);
        assert_eq!(text.lines().count(), 5);
        assert!(text.contains("Total count    =            0]"));
    }

    #[test]
    fn bad_ratio_is_treated_as_one() {
        let mut h = new_latency_histogram();
        h.record(500).unwrap();
        for r in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            assert_eq!(write_percentiles(&h, r), write_percentiles(&h, 1.0));
        }
    }

    proptest! {
        #[test]
        fn parses_back(values in proptest::collection::vec((1u64..=20_000_000_000, 1u64..50), 1..200),
                       ratio in prop_oneof![Just(1.0), Just(1000.0), Just(1e6)]) {
            let mut h = new_latency_histogram();
            for (v, n) in values {
                h.saturating_record_n(v, n);
            }
            check_round_trip(&h, ratio);
        }
    }
}
