//! Prometheus text exposition format 0.0.4, written by hand.
//!
//! The format is a handful of line rules; a client library would bring a registry and global
//! state we do not want on the control thread, so this small writer enforces the rules that
//! scrapers reject on: one HELP/TYPE per family before its samples, escaped label values and
//! help text, and float spellings Prometheus parses (`+Inf`, `NaN`).

use std::fmt::Write;

/// Metric family kinds we emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        }
    }
}

/// A sample value: integers stay exact (counters beyond 2^53 must not be rounded).
#[derive(Clone, Copy, Debug)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

/// Accumulates one exposition document.
#[derive(Default)]
pub struct Writer {
    out: String,
    /// Written first on every sample (the box label of a fleet).
    constant: Vec<(String, String)>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    /// A writer that puts `labels` on every sample, before the sample's own labels. Their
    /// names must be valid label names not used by any sample.
    pub fn with_labels(labels: Vec<(String, String)>) -> Writer {
        Writer {
            out: String::new(),
            constant: labels,
        }
    }

    /// Starts a metric family; every sample written until the next call belongs to it.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(name);
        let all = self
            .constant
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(labels.iter().copied());
        if !labels.is_empty() || !self.constant.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in all.enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label_into(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value.into() {
            Value::Int(v) => {
                let _ = write!(self.out, "{v}");
            }
            Value::Float(v) => write_float(&mut self.out, v),
        }
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A strict reader of what [`Writer`] produces, for tests here and in the aggregator: every
/// line is a HELP, a TYPE or a sample `name{labels} value`; every sample belongs to the family
/// whose TYPE came last (summaries also own `_sum`/`_count`); counters end in `_total`; no
/// family is declared twice and no series repeats.
#[cfg(test)]
pub(crate) mod validate {
    use std::collections::{BTreeMap, HashSet};

    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    fn valid_name(s: &str) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn valid_label_name(s: &str) -> bool {
        valid_name(s) && !s.contains(':')
    }

    /// Parses `{a="x",b="y"}` starting after the name; returns the labels and the rest.
    fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
        let mut labels = BTreeMap::new();
        let Some(mut rest) = s.strip_prefix('{') else {
            return Ok((labels, s));
        };
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                return Ok((labels, r));
            }
            let eq = rest.find('=').ok_or("label without '='")?;
            let key = &rest[..eq];
            if !valid_label_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '\n')) => return Err("raw newline in label".into()),
                    Some((_, c)) => value.push(c),
                }
            };
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}'".into());
            }
        }
    }

    fn parse_value(s: &str) -> Result<f64, String> {
        match s {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ if s.contains("inf") || s.contains("nan") => Err(format!("bad value {s:?}")),
            _ => s.parse().map_err(|_| format!("bad value {s:?}")),
        }
    }

    /// Every sample of the document, or the first violation with its line number.
    pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut helped: HashSet<String> = HashSet::new();
        let mut current: Option<(String, String)> = None;
        let mut series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
        let mut samples = Vec::new();
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("document does not end with a newline".into());
        }
        for (n, line) in text.lines().enumerate() {
            let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                if !valid_name(name) || !helped.insert(name.to_string()) {
                    return Err(err("bad or repeated HELP".into()));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(err("malformed TYPE".into()));
                };
                if !valid_name(name)
                    || !["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind)
                {
                    return Err(err("bad TYPE".into()));
                }
                if kind == "counter" && !name.ends_with("_total") {
                    return Err(err("counter without _total".into()));
                }
                if types.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(err("family declared twice".into()));
                }
                current = Some((name.to_string(), kind.to_string()));
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                return Err(err("unexpected comment or blank line".into()));
            }
            let name_end = line
                .find(['{', ' '])
                .ok_or_else(|| err("no value".into()))?;
            let name = &line[..name_end];
            if !valid_name(name) {
                return Err(err("bad metric name".into()));
            }
            let (labels, rest) = parse_labels(&line[name_end..]).map_err(err)?;
            let value = rest
                .strip_prefix(' ')
                .ok_or_else(|| err("no space before value".into()))?;
            let value = parse_value(value).map_err(err)?;
            let Some((family, kind)) = &current else {
                return Err(err("sample before any TYPE".into()));
            };
            let belongs = name == family
                || (kind == "summary"
                    && (name == format!("{family}_sum") || name == format!("{family}_count")));
            if !belongs {
                return Err(err(format!("sample outside its family {family}")));
            }
            if kind == "summary" && name == family && !labels.contains_key("quantile") {
                return Err(err("summary sample without quantile".into()));
            }
            let key = (
                name.to_string(),
                labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            );
            if !series.insert(key) {
                return Err(err("series repeated".into()));
            }
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        if helped.len() != types.len() {
            return Err("HELP without TYPE or TYPE without HELP".into());
        }
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_labels_and_help() {
        let mut w = Writer::new();
        w.family("scrubd_x_total", Kind::Counter, "a \\ help\nline");
        w.sample("scrubd_x_total", &[("msg", "say \"hi\"\\\nbye")], 3u64);
        let text = w.finish();
        assert!(text.contains("# HELP scrubd_x_total a \\\\ help\\nline\n"));
        let s = validate::parse(&text).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels["msg"], "say \"hi\"\\\nbye");
        assert_eq!(s[0].value, 3.0);
    }

    #[test]
    fn constant_labels_come_first_on_every_sample() {
        let mut w = Writer::with_labels(vec![("box".into(), "scrub-\"a\"".into())]);
        w.family("scrubd_g", Kind::Gauge, "g");
        w.sample("scrubd_g", &[], 1u64);
        w.sample("scrubd_g", &[("port", "outside")], 2u64);
        let text = w.finish();
        assert!(
            text.contains("scrubd_g{box=\"scrub-\\\"a\\\"\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("scrubd_g{box=\"scrub-\\\"a\\\"\",port=\"outside\"} 2\n"),
            "{text}"
        );
        let s = validate::parse(&text).unwrap();
        assert!(s.iter().all(|s| s.labels["box"] == "scrub-\"a\""));
    }

    #[test]
    fn floats_use_prometheus_spellings() {
        let mut w = Writer::new();
        w.family("scrubd_g", Kind::Gauge, "g");
        for (i, v) in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.25, 1e300]
            .into_iter()
            .enumerate()
        {
            w.sample("scrubd_g", &[("i", &i.to_string())], v);
        }
        let s = validate::parse(&w.finish()).unwrap();
        assert!(s[0].value.is_nan());
        assert_eq!(s[1].value, f64::INFINITY);
        assert_eq!(s[2].value, f64::NEG_INFINITY);
        assert_eq!(s[3].value, 0.25);
        assert_eq!(s[4].value, 1e300);
    }

    #[test]
    fn validator_rejects_what_scrapers_reject() {
        for bad in [
            "scrubd_x 1\n",                                                 // no TYPE
            "# HELP a_total h\n# TYPE a_total counter\na_total{x=\"1} 2\n", // unterminated
            "# HELP a h\n# TYPE a counter\na 1\n",                          // counter w/o _total
            "# HELP a h\n# TYPE a gauge\nb 1\n",                            // outside family
            "# HELP a h\n# TYPE a gauge\na 1\na 2\n",                       // repeated series
            "# HELP a h\n# TYPE a gauge\na inf\n",                          // Rust's spelling
        ] {
            assert!(validate::parse(bad).is_err(), "{bad}");
        }
    }
}
