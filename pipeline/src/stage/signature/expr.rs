//! Address and port expressions of a rule header: `any`, single values, CIDRs, ranges,
//! `[a,b,!c]` lists, `!` negation and `$VARIABLES`.
//!
//! Lists follow Suricata's reading: a list matches when one of its positive items matches (or
//! it has none) and none of its negated items does, so `[10.0.0.0/8,!10.1.0.0/16]` is
//! "10/8 except 10.1/16" and `[!80]` is "any port but 80".

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::prefix::Prefix;

/// A variable's value as the configuration gives it: one expression string (`"[10.0.0.0/8,
/// 192.168.0.0/16]"`, `"any"`, `"80"`) or a list of item strings, read as a bracketed list.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum VarValue {
    One(String),
    Many(Vec<String>),
}

/// Variables the caller defines for rules, keyed without the `$` (`PROTECTED`, `HOME_NET`).
/// The same name may be used as an address or a port list; it is parsed where it is used.
pub type Vars = BTreeMap<String, VarValue>;

/// Nesting bound for variables that mention variables; it also stops reference cycles.
const MAX_VAR_DEPTH: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr<L> {
    Any,
    Leaf(L),
    Not(Box<Expr<L>>),
    List(Vec<Expr<L>>),
}

impl<L: Matches> Expr<L> {
    pub fn matches(&self, v: L::Value) -> bool {
        match self {
            Expr::Any => true,
            Expr::Leaf(l) => l.matches(v),
            Expr::Not(e) => !e.matches(v),
            Expr::List(items) => {
                let mut saw_positive = false;
                let mut positive_hit = false;
                for item in items {
                    match item {
                        Expr::Not(inner) => {
                            if inner.matches(v) {
                                return false;
                            }
                        }
                        other => {
                            saw_positive = true;
                            positive_hit = positive_hit || other.matches(v);
                        }
                    }
                }
                positive_hit || !saw_positive
            }
        }
    }
}

pub trait Matches {
    type Value: Copy;
    fn matches(&self, v: Self::Value) -> bool;
}

/// Rule addresses are the pipeline's shared [`Prefix`]; families never mix, as there.
impl Matches for Prefix {
    type Value = IpAddr;
    fn matches(&self, v: IpAddr) -> bool {
        self.contains(v)
    }
}

/// An inclusive port range; a single port is `lo == hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl Matches for PortRange {
    type Value = u16;
    fn matches(&self, v: u16) -> bool {
        self.lo <= v && v <= self.hi
    }
}

/// What went wrong, and where: `off` is relative to the start of the text handed to the parser
/// (for errors inside a variable's value it is the variable reference's position).
#[derive(Debug, PartialEq, Eq)]
pub struct ExprError {
    pub off: usize,
    pub message: String,
}

/// Parses one kind of leaf (an address, a port range).
pub trait LeafKind: Sized {
    const WHAT: &'static str;
    fn parse_leaf(s: &str) -> Result<Self, String>;
}

/// Rule text keeps Suricata's reading rather than the config's: host bits are allowed and
/// masked off (`1.2.3.4/24` is 1.2.3.0/24), since published rule sets are written that way and
/// refusing them would reject rules Suricata loads. Messages keep the rule parser's wording.
impl LeafKind for Prefix {
    const WHAT: &'static str = "address";
    fn parse_leaf(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("invalid address '{s}'"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("invalid prefix length in '{s}' (0..={max})")),
            },
        };
        Ok(Prefix::masked(addr, len))
    }
}

impl LeafKind for PortRange {
    const WHAT: &'static str = "port";
    fn parse_leaf(s: &str) -> Result<Self, String> {
        let num = |t: &str| -> Result<u16, String> {
            t.trim()
                .parse::<u16>()
                .map_err(|_| format!("invalid port '{s}'"))
        };
        let r = match s.split_once(':') {
            None => {
                let p = num(s)?;
                PortRange { lo: p, hi: p }
            }
            Some((a, b)) => {
                let lo = if a.trim().is_empty() { 0 } else { num(a)? };
                let hi = if b.trim().is_empty() {
                    u16::MAX
                } else {
                    num(b)?
                };
                if a.trim().is_empty() && b.trim().is_empty() {
                    return Err(format!("invalid port range '{s}'"));
                }
                PortRange { lo, hi }
            }
        };
        if r.lo > r.hi {
            return Err(format!("empty port range '{s}' (low end above high end)"));
        }
        Ok(r)
    }
}

/// Parses a header address or port field.
pub fn parse_expr<L: LeafKind>(text: &str, vars: &Vars) -> Result<Expr<L>, ExprError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
        vars,
        depth: 0,
        var_off: None,
    };
    let e = p.expr()?;
    p.ws();
    if p.i < p.s.len() {
        return Err(p.err(format!("unexpected '{}' in {}", p.rest_char(), L::WHAT)));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    vars: &'a Vars,
    depth: usize,
    /// Set while parsing a variable's value: errors are then reported at the reference.
    var_off: Option<usize>,
}

impl Parser<'_> {
    fn err(&self, message: String) -> ExprError {
        ExprError {
            off: self.var_off.unwrap_or(self.i),
            message,
        }
    }

    fn rest_char(&self) -> char {
        self.text
            .get(self.i..)
            .and_then(|r| r.chars().next())
            .unwrap_or(' ')
    }

    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn expr<L: LeafKind>(&mut self) -> Result<Expr<L>, ExprError> {
        self.ws();
        match self.s.get(self.i) {
            None => Err(self.err(format!("missing {}", L::WHAT))),
            Some(b'!') => {
                self.i += 1;
                Ok(Expr::Not(Box::new(self.expr()?)))
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    items.push(self.expr()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Expr::List(items));
                        }
                        _ => {
                            return Err(self.err(format!("expected ',' or ']' in {} list", L::WHAT)))
                        }
                    }
                }
            }
            Some(b'$') => {
                let start = self.i;
                self.i += 1;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                {
                    self.i += 1;
                }
                let name = self.text.get(start + 1..self.i).unwrap_or("");
                self.var(name, start)
            }
            Some(_) => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|b| {
                    !matches!(b, b',' | b']' | b'[' | b'!') && !b.is_ascii_whitespace()
                }) {
                    self.i += 1;
                }
                let tok = self.text.get(start..self.i).unwrap_or("");
                if tok.is_empty() {
                    return Err(self.err(format!("missing {}", L::WHAT)));
                }
                if tok.eq_ignore_ascii_case("any") {
                    return Ok(Expr::Any);
                }
                L::parse_leaf(tok).map(Expr::Leaf).map_err(|m| ExprError {
                    off: self.var_off.unwrap_or(start),
                    message: m,
                })
            }
        }
    }

    fn var<L: LeafKind>(&mut self, name: &str, at: usize) -> Result<Expr<L>, ExprError> {
        let at = self.var_off.unwrap_or(at);
        let fail = |message: String| ExprError { off: at, message };
        if name.is_empty() {
            return Err(fail("'$' must be followed by a variable name".into()));
        }
        if self.depth >= MAX_VAR_DEPTH {
            return Err(fail(format!(
                "variable ${name} nests more than {MAX_VAR_DEPTH} deep (a cycle?)"
            )));
        }
        let value = self
            .vars
            .get(name)
            .ok_or_else(|| fail(format!("undefined variable ${name}")))?;
        let sub = |text: &str| -> Result<Expr<L>, ExprError> {
            let mut p = Parser {
                s: text.as_bytes(),
                text,
                i: 0,
                vars: self.vars,
                depth: self.depth + 1,
                var_off: Some(at),
            };
            let e = p.expr()?;
            p.ws();
            if p.i < p.s.len() {
                return Err(fail(format!(
                    "unexpected '{}' in {}",
                    p.rest_char(),
                    L::WHAT
                )));
            }
            Ok(e)
        };
        // Only the outermost reference adds context; nested ones would repeat it.
        let outermost = self.depth == 0;
        let wrap = |r: Result<Expr<L>, ExprError>| {
            r.map_err(|e| {
                if outermost {
                    fail(format!("in variable ${name}: {}", e.message))
                } else {
                    e
                }
            })
        };
        match value {
            VarValue::One(s) => wrap(sub(s)),
            VarValue::Many(items) => {
                if items.is_empty() {
                    return Err(fail(format!("variable ${name} is an empty list")));
                }
                let mut out = Vec::with_capacity(items.len());
                for s in items {
                    out.push(wrap(sub(s))?);
                }
                Ok(Expr::List(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.insert(
            "HOME".into(),
            VarValue::One("[10.0.0.0/8, 2001:db8::/32]".into()),
        );
        v.insert(
            "PROTECTED".into(),
            VarValue::Many(vec!["192.0.2.0/24".into(), "!192.0.2.7".into()]),
        );
        v.insert("WEB".into(), VarValue::One("[80,443,8000:8080]".into()));
        v.insert("LOOP".into(), VarValue::One("$LOOP".into()));
        v.insert("BAD".into(), VarValue::One("10.0.0.300".into()));
        v
    }

    #[test]
    fn address_expressions_match_as_suricata_lists_do() {
        let v = vars();
        let cases: &[(&str, &str, bool)] = &[
            ("any", "1.2.3.4", true),
            ("any", "::1", true),
            ("1.2.3.4", "1.2.3.4", true),
            ("1.2.3.4", "1.2.3.5", false),
            ("10.0.0.0/8", "10.200.0.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.1.2.3/8", "10.200.0.1", true),
            ("10.1.2.3/8", "11.1.2.3", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("0.0.0.0/0", "::1", false),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("!1.2.3.4", "1.2.3.4", false),
            ("!1.2.3.4", "1.2.3.5", true),
            ("[10.0.0.0/8,!10.1.0.0/16]", "10.2.0.1", true),
            ("[10.0.0.0/8,!10.1.0.0/16]", "10.1.0.1", false),
            ("[10.0.0.0/8,!10.1.0.0/16]", "11.0.0.1", false),
            ("[!10.0.0.0/8]", "11.0.0.1", true),
            ("![1.1.1.1, 2.2.2.2]", "2.2.2.2", false),
            ("![1.1.1.1, 2.2.2.2]", "3.3.3.3", true),
            ("$HOME", "10.9.9.9", true),
            ("$HOME", "2001:db8::5", true),
            ("$HOME", "192.0.2.1", false),
            ("!$HOME", "192.0.2.1", true),
            ("$PROTECTED", "192.0.2.1", true),
            ("$PROTECTED", "192.0.2.7", false),
            ("[$HOME,$PROTECTED]", "10.0.0.1", true),
        ];
        for (expr, addr, want) in cases {
            let e: Expr<Prefix> = parse_expr(expr, &v).unwrap_or_else(|e| panic!("{expr}: {e:?}"));
            assert_eq!(e.matches(ip(addr)), *want, "{expr} vs {addr}");
        }
    }

    #[test]
    fn port_expressions() {
        let v = vars();
        let cases: &[(&str, u16, bool)] = &[
            ("any", 1, true),
            ("80", 80, true),
            ("80", 81, false),
            ("1024:65535", 1024, true),
            ("1024:65535", 1023, false),
            (":1023", 0, true),
            (":1023", 1024, false),
            ("1024:", 65535, true),
            ("!80", 80, false),
            ("!80", 81, true),
            ("[80,443,8000:8080]", 8080, true),
            ("[80,443,8000:8080]", 444, false),
            ("[1:100,!50]", 50, false),
            ("[1:100,!50]", 51, true),
            ("$WEB", 443, true),
            ("![$WEB]", 443, false),
        ];
        for (expr, port, want) in cases {
            let e: Expr<PortRange> =
                parse_expr(expr, &v).unwrap_or_else(|e| panic!("{expr}: {e:?}"));
            assert_eq!(e.matches(*port), *want, "{expr} vs {port}");
        }
    }

    #[test]
    fn expression_errors_name_the_problem_and_position() {
        let v = vars();
        let cases: &[(&str, usize, &str)] = &[
            ("1.2.3", 0, "invalid address '1.2.3'"),
            ("[1.2.3.4,", 9, "missing address"),
            (
                "[1.2.3.4 5.6.7.8]",
                9,
                "expected ',' or ']' in address list",
            ),
            (
                "10.0.0.0/33",
                0,
                "invalid prefix length in '10.0.0.0/33' (0..=32)",
            ),
            ("[1.1.1.1,$NOPE]", 9, "undefined variable $NOPE"),
            (
                "$LOOP",
                0,
                "in variable $LOOP: variable $LOOP nests more than 16 deep (a cycle?)",
            ),
            (
                "[1.1.1.1, $BAD]",
                10,
                "in variable $BAD: invalid address '10.0.0.300'",
            ),
            ("1.1.1.1]", 7, "unexpected ']' in address"),
        ];
        for (expr, off, msg) in cases {
            let e = parse_expr::<Prefix>(expr, &v).unwrap_err();
            assert_eq!((e.off, e.message.as_str()), (*off, *msg), "{expr}");
        }
        let e = parse_expr::<PortRange>("2000:1000", &v).unwrap_err();
        assert_eq!(
            e.message,
            "empty port range '2000:1000' (low end above high end)"
        );
        let e = parse_expr::<PortRange>("70000", &v).unwrap_err();
        assert_eq!(e.message, "invalid port '70000'");
        let e = parse_expr::<PortRange>(":", &v).unwrap_err();
        assert_eq!(e.message, "invalid port range ':'");
    }
}
