//! Signature stage: Suricata/Snort-style rules over header fields and payload contents, so
//! operators can load rules they already have for the attacks they already know.
//!
//! # Supported subset
//!
//! A rule is `ACTION PROTO SRC SPORT DIR DST DPORT (OPTIONS)`, one per line; `#` comment lines
//! and blank lines are skipped; a line ending in `\` continues on the next.
//!
//! * ACTION: `alert` (count only), `drop`, `pass`. Among the rules matching one packet, `pass`
//!   wins (forward, bypassing later stages), then `drop`, then `alert` — Suricata's default
//!   order (pass, drop, reject, alert) without reject. On drop the verdict names the lowest
//!   matching drop rule's index (file order, files in configured order).
//! * PROTO: `ip` (any IP packet), `tcp`, `udp`, `icmp` (ICMPv4 and ICMPv6, as in Suricata),
//!   `icmpv4`, `icmpv6`, and `http`, `dns`, `tls`, recognised per packet (`buffers`).
//! * SRC/DST: `any`, an address, a v4/v6 CIDR, `$VAR`, `!X`, lists `[a,b,!c]` (nested lists and
//!   variables allowed). A list matches when one positive item matches (or there is none) and
//!   no negated item does.
//! * SPORT/DPORT: `any`, `80`, `1024:65535`, `:1023`, `1024:`, `!80`, `[80,443,8000:8080]`,
//!   `$VAR`. Not on icmp rules; on `ip` rules they match only packets with ports.
//! * DIR: `->`, or `<>` (either orientation).
//! * Options:
//!   - `msg:"..."`, `sid:N` (required, > 0, unique across all loaded files), `rev:N`.
//!   - Accepted and ignored: `classtype`, `metadata`, `reference`, `priority`, `gid`, `target`.
//!   - `content:"..."` / `content:!"..."`: text with `|41 42|` hex parts and the escapes `\"`,
//!     `\;`, `\\`. Modifiers apply to the preceding content: `nocase`, `offset:N`, `depth:N`
//!     (window `[offset, offset+depth)` from the payload start), `distance:N` (may be
//!     negative), `within:N` (window `[prev_end+distance, prev_end+distance+within)`, where
//!     `prev_end` is the end of the previous non-negated content's match, or the buffer start
//!     for a buffer's first content), `startswith`, `endswith`, `fast_pattern` (`only`,
//!     `offset,length`). Absolute and relative modifiers cannot be
//!     mixed on one content; `depth`/`within` must be at least the content length. Matching
//!     backtracks over occurrences like Suricata, within [`BACKTRACK_BUDGET`] tries per rule.
//!     A negated content must be absent from its window.
//!   - `flags:[+*!]FSRPAUCE[,ignored]` (`0` = no flags; Snort's `1`/`2` = CWR/ECE; the
//!     modifier may also trail the letters): none = exactly these, `+` = all of these and any
//!     others, `*` = any of these, `!` = not all of these. tcp and ip rules only.
//!   - `dsize`, `ttl`, `itype`, `icode`, `ip_proto` with `N`, `=N`, `!N`, `<N`, `>N`, `<=N`,
//!     `>=N`, `A<>B` (exclusive, as Suricata). `ip_proto` also takes names (`tcp`, `gre`, ...).
//!     `itype`/`icode` need an icmp* or ip rule.
//!   - `pcre`, `byte_test`, `byte_jump`, `isdataat`, `bsize`, `urilen`, `flow`, `threshold`,
//!     `detection_filter` and the sticky buffers: see `keywords`, `buffers` and the
//!     README's rule syntax for their per-packet meaning.
//! * Anything else (`flowbits`, `http.header_names`, `ja3.hash`, ...) is "unsupported": such a rule
//!   is skipped and reported (`file:line:column: unsupported keyword 'flowbits'`) and counted
//!   by keyword in the [`LoadReport`], or refuses the set with `strict = true`. A malformed
//!   rule is reported the same way.
//!
//! Matching: see `prefilter` (groups and fast patterns), `addrset` (address lists), and
//! the matcher, which verifies candidates step by step in rule order.
//!
//! Packets: only IP packets are inspected (others → continue). The payload is the transport
//! payload from [`crate::IpHeaders`] `payload_off`/`payload_len`, clipped to the frame. Port,
//! flags and ICMP tests need the transport header, so non-first fragments match only rules
//! that test none of them.

mod addrset;
mod buffers;
mod compile;
mod expr;
mod keywords;
mod lexer;
mod matcher;
mod parse;
mod prefilter;
mod threshold;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keywords;
#[cfg(test)]
mod tests_oracle;

use std::path::PathBuf;

use serde::Deserialize;

pub use compile::{CompiledRules, FileReport, LoadReport, RuleInfo, RuleSet};
pub use expr::{Expr, PortRange, VarValue, Vars};
pub use keywords::{
    BufSel, Buffer, ByteJump, ByteOp, ByteRead, ByteTest, Check, CheckKind, Endian, Flow, Pcre,
    Threshold, ThresholdKind, Track,
};
pub use matcher::{SignatureStage, BACKTRACK_BUDGET};
pub use parse::{
    Action, Content, Direction, FlagsMatch, FlagsMode, Location, NumMatch, Proto, Rule, RuleError,
    RuleErrors, RuleFailure, IGNORED_KEYWORDS, MAX_CONTENTS,
};
pub use threshold::DEFAULT_TSC_HZ;

/// The `[signature]` section of the daemon configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    /// Rules files, loaded in this order (which fixes rule indices).
    #[serde(default)]
    pub rule_files: Vec<PathBuf>,
    /// Variables for rule headers, without the `$`: `PROTECTED = "192.0.2.0/24"` or
    /// `HOME_NET = ["10.0.0.0/8", "2001:db8::/32"]`.
    #[serde(default)]
    pub vars: Vars,
    /// Refuse the whole configuration when any rule does not load (Suricata's `-T`). Off by
    /// default: such rules are skipped, reported by `scrubd --check` and `scrubctl rules`,
    /// and counted by keyword, as Suricata does in a normal run.
    #[serde(default)]
    pub strict: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("signature.rule_files: cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Rules(#[from] RuleErrors),
    #[error("signature.vars.{name}: {message}")]
    Var { name: String, message: String },
    #[error("signature rules: cannot build the content automaton: {0}")]
    Compile(String),
}

impl SignatureConfig {
    /// Checks what can be checked without reading files: variable names and non-empty lists.
    /// (Values are parsed where rules use them, as address or as port lists.)
    pub fn validate(&self) -> Result<(), SignatureError> {
        for (name, value) in &self.vars {
            let bad = |message: &str| SignatureError::Var {
                name: name.clone(),
                message: message.to_string(),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(bad(
                    "variable names use letters, digits and '_' only, without the '$'",
                ));
            }
            match value {
                VarValue::One(s) if s.trim().is_empty() => return Err(bad("empty value")),
                VarValue::Many(v) if v.is_empty() => return Err(bad("empty list")),
                _ => {}
            }
        }
        Ok(())
    }

    /// Validates, loads every file (skipping rules that do not load unless `strict`) and
    /// compiles for packets stamped at [`DEFAULT_TSC_HZ`] (`--check`, tests); the result
    /// carries the [`LoadReport`].
    pub fn compile(&self) -> Result<CompiledRules, SignatureError> {
        self.compile_for_clock(DEFAULT_TSC_HZ)
    }

    /// As [`SignatureConfig::compile`], for packets stamped by a `tsc_hz` clock: threshold
    /// windows count in its ticks.
    pub fn compile_for_clock(&self, tsc_hz: u64) -> Result<CompiledRules, SignatureError> {
        self.validate()?;
        let (set, report) = RuleSet::load_files(&self.rule_files, &self.vars, self.strict)?;
        set.compile_with_report(report, tsc_hz)
    }
}

/// Suricata's default address and port variables (its suricata.yaml; `HOME_NET` as the ET Open
/// README gives it), for loading ET Open or community sets as a new user would.
pub fn suricata_default_vars() -> Vars {
    let mut v = Vars::new();
    let home = VarValue::Many(vec![
        "192.168.0.0/16".into(),
        "10.0.0.0/8".into(),
        "172.16.0.0/12".into(),
    ]);
    v.insert("HOME_NET".into(), home);
    v.insert("EXTERNAL_NET".into(), VarValue::One("!$HOME_NET".into()));
    for s in [
        "HTTP_SERVERS",
        "SMTP_SERVERS",
        "SQL_SERVERS",
        "DNS_SERVERS",
        "TELNET_SERVERS",
        "AIM_SERVERS",
        "DC_SERVERS",
        "DNP3_SERVER",
        "DNP3_CLIENT",
        "MODBUS_CLIENT",
        "MODBUS_SERVER",
        "ENIP_CLIENT",
        "ENIP_SERVER",
    ] {
        v.insert(s.into(), VarValue::One("$HOME_NET".into()));
    }
    for (p, val) in [
        ("HTTP_PORTS", "80"),
        ("SHELLCODE_PORTS", "!80"),
        ("ORACLE_PORTS", "1521"),
        ("SSH_PORTS", "22"),
        ("DNP3_PORTS", "20000"),
        ("MODBUS_PORTS", "502"),
        ("FILE_DATA_PORTS", "[$HTTP_PORTS,110,143]"),
        ("FTP_PORTS", "21"),
    ] {
        v.insert(p.into(), VarValue::One(val.into()));
    }
    v
}
