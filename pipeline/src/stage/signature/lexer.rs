//! Turns rule-file text into logical rules and splits a rule into header tokens and options,
//! keeping enough position information that every error can point at a line and column.
//!
//! Columns count bytes from 1; rule files are ASCII in practice, and byte columns are what
//! editors' "go to column" and `cut -c` agree on for ASCII.

/// One rule as written: a non-comment line, or several joined by trailing backslashes.
#[derive(Debug)]
pub(crate) struct LogicalLine {
    pub text: String,
    /// (offset in `text` where a physical line's contribution starts, its line number, the
    /// column in that physical line that the offset corresponds to).
    segments: Vec<(usize, u32, u32)>,
}

impl LogicalLine {
    /// Maps a byte offset in the joined text back to (line, column) in the file.
    pub fn pos(&self, off: usize) -> (u32, u32) {
        let mut best = (1, 1);
        for &(start, line, col) in &self.segments {
            if start <= off {
                let delta = u32::try_from(off - start).unwrap_or(u32::MAX);
                best = (line, col.saturating_add(delta));
            } else {
                break;
            }
        }
        best
    }
}

/// Splits file text into logical rules, dropping blank lines and `#` comments and joining lines
/// that end in `\` with the next one (the backslash itself is removed).
pub(crate) fn logical_lines(text: &str) -> Vec<LogicalLine> {
    let mut out = Vec::new();
    let mut cur: Option<LogicalLine> = None;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = u32::try_from(idx).unwrap_or(u32::MAX - 1).saturating_add(1);
        let trimmed_start = raw.trim_start();
        let lead = raw.len() - trimmed_start.len();
        if cur.is_none() && (trimmed_start.is_empty() || trimmed_start.starts_with('#')) {
            continue;
        }
        let body = raw.trim_end();
        let (body, continues) = match body.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (body, false),
        };
        let ll = cur.get_or_insert_with(|| LogicalLine {
            text: String::new(),
            segments: Vec::new(),
        });
        // The first line of a rule is taken from its first non-blank byte; continuation lines
        // are taken whole so that the spacing the author wrote survives the join.
        let (piece, col0) = if ll.text.is_empty() {
            (body.get(lead..).unwrap_or(""), lead)
        } else {
            (body, 0)
        };
        let col = u32::try_from(col0)
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1);
        ll.segments.push((ll.text.len(), line_no, col));
        ll.text.push_str(piece);
        if !continues {
            if let Some(done) = cur.take() {
                out.push(done);
            }
        }
    }
    if let Some(done) = cur.take() {
        if !done.text.trim().is_empty() {
            out.push(done);
        }
    }
    out
}

/// A piece of text and the byte offset in the logical line where it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span<'a> {
    pub text: &'a str,
    pub off: usize,
}

/// Splits a header ("drop udp any any -> $X 11211") on whitespace, except inside `[...]` so that
/// lists written with spaces after commas stay one token.
pub(crate) fn header_tokens(header: &str, base: usize) -> Vec<Span<'_>> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start: Option<usize> = None;
    for (i, b) in header.bytes().enumerate() {
        match b {
            b'[' => depth = depth.saturating_add(1),
            b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if b.is_ascii_whitespace() && depth == 0 {
            if let Some(s) = start.take() {
                out.push(Span {
                    text: &header[s..i],
                    off: base + s,
                });
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(Span {
            text: &header[s..],
            off: base + s,
        });
    }
    out
}

/// One `keyword[:value];` element of a rule's option list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawOption<'a> {
    pub key: Span<'a>,
    pub value: Option<Span<'a>>,
}

/// Why an option list could not be split.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SplitError {
    pub off: usize,
    pub message: String,
}

/// Splits the text between a rule's parentheses into options. `;` ends an option unless it is
/// backslash-escaped or inside double quotes; a final option may omit its `;`.
pub(crate) fn split_options(body: &str, base: usize) -> Result<Vec<RawOption<'_>>, SplitError> {
    // First with quotes closing only where a value ends; if that leaves a quote open, the
    // plain toggling reading gives the better error (`content:"a" x;`: text after the quote).
    split_options_with(body, base, true).or_else(|_| split_options_with(body, base, false))
}

fn split_options_with(
    body: &str,
    base: usize,
    value_end_quotes: bool,
) -> Result<Vec<RawOption<'_>>, SplitError> {
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut in_quote: Option<usize> = None;
    let mut escaped = false;
    let mut i = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            // A quote closes a value only where the value ends (spaces, then `;` or the end of
            // the list): ET writes unescaped `"` inside pcre values (`(%22|")org`), which
            // Suricata accepts because it splits on unescaped `;` alone.
            in_quote = match in_quote {
                Some(_) if !value_end_quotes || closes_value(&bytes[i + 1..]) => None,
                Some(q) => Some(q),
                None => Some(i),
            };
        } else if b == b';' && in_quote.is_none() {
            push_option(&mut out, body, start, i, base);
            start = i + 1;
        }
        i += 1;
    }
    if let Some(q) = in_quote {
        return Err(SplitError {
            off: base + q,
            message: "unterminated string".to_string(),
        });
    }
    push_option(&mut out, body, start, bytes.len(), base);
    Ok(out)
}

/// Whether what follows a `"` is the end of an option value.
fn closes_value(rest: &[u8]) -> bool {
    let t = rest
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&[][..], |p| &rest[p..]);
    t.is_empty() || t[0] == b';'
}

fn push_option<'a>(
    out: &mut Vec<RawOption<'a>>,
    body: &'a str,
    start: usize,
    end: usize,
    base: usize,
) {
    let piece = &body[start..end];
    let trimmed = piece.trim_start();
    if trimmed.trim_end().is_empty() {
        return;
    }
    let lead = piece.len() - trimmed.len();
    let trimmed = trimmed.trim_end();
    let off = base + start + lead;
    match trimmed.find(':') {
        Some(c) => {
            let key = trimmed[..c].trim_end();
            let rest = &trimmed[c + 1..];
            let vlead = rest.len() - rest.trim_start().len();
            out.push(RawOption {
                key: Span { text: key, off },
                value: Some(Span {
                    text: rest.trim(),
                    off: off + c + 1 + vlead,
                }),
            });
        }
        None => out.push(RawOption {
            key: Span { text: trimmed, off },
            value: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blank_lines_and_continuations() {
        let text = "# comment\n\n  alert ip any any -> any any \\\n   (sid:1;)\n   # x\nalert tcp any any -> any any (sid:2;)";
        let lines = logical_lines(text);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "alert ip any any -> any any    (sid:1;)");
        assert_eq!(lines[0].pos(0), (3, 3));
        let paren = lines[0].text.find('(').unwrap();
        assert_eq!(lines[0].pos(paren), (4, 4));
        assert_eq!(lines[1].pos(0), (6, 1));
        assert_eq!(lines[1].pos(6), (6, 7));
    }

    #[test]
    fn header_tokens_keep_bracketed_lists_whole() {
        let toks = header_tokens("drop tcp [1.2.3.4, 5.6.7.8] any -> any 80 ", 0);
        let texts: Vec<_> = toks.iter().map(|t| t.text).collect();
        assert_eq!(
            texts,
            [
                "drop",
                "tcp",
                "[1.2.3.4, 5.6.7.8]",
                "any",
                "->",
                "any",
                "80"
            ]
        );
        assert_eq!(toks[2].off, 9);
    }

    #[test]
    fn options_split_on_unquoted_unescaped_semicolons() {
        let body = r#" msg:"a;b"; content:"x\;y"; nocase; sid: 5 "#;
        let opts = split_options(body, 10).unwrap();
        let kv: Vec<_> = opts
            .iter()
            .map(|o| (o.key.text, o.value.map(|v| v.text)))
            .collect();
        assert_eq!(
            kv,
            [
                ("msg", Some("\"a;b\"")),
                ("content", Some(r#""x\;y""#)),
                ("nocase", None),
                ("sid", Some("5")),
            ]
        );
        assert_eq!(opts[0].key.off, 11);
        assert_eq!(opts[3].value.unwrap().off, 10 + body.find('5').unwrap());
    }

    #[test]
    fn unterminated_string_is_reported_at_the_quote() {
        let err = split_options(r#"msg:"abc; sid:1;"#, 4).unwrap_err();
        assert_eq!(err.off, 8);
        assert_eq!(err.message, "unterminated string");
    }
}
