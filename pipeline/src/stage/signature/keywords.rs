//! Keywords beyond content and header tests: sticky buffers, `pcre`, `byte_test`, `byte_jump`,
//! `isdataat`, `bsize`/`urilen`, `flow` and `threshold`/`detection_filter`, each parsed into a
//! value the matcher evaluates on one packet. A keyword argument this engine cannot honour is
//! an "unsupported" error (the rule is skipped and counted), never silently dropped.

use std::sync::Arc;

use regex_automata::meta;

use super::parse::NumMatch;

/// The data a content (or pcre, byte_test, ...) inspects. `Payload` is the transport payload;
/// the others are parts of one packet located by the `buffers` module, Suricata's sticky buffers
/// read from a single packet instead of a reassembled stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Buffer {
    Payload,
    DnsQuery,
    HttpMethod,
    HttpUri,
    HttpHost,
    HttpUserAgent,
    HttpHeader,
    HttpCookie,
    HttpContentType,
    HttpReferer,
    HttpRequestLine,
    /// Request line and headers through the blank line.
    HttpStart,
    HttpRequestBody,
    HttpStatCode,
    HttpStatMsg,
    HttpResponseLine,
    HttpResponseBody,
    /// The HTTP body carried in the same packet as its head (request or response).
    FileData,
    /// Single header values, by name.
    HttpAccept,
    HttpAcceptEnc,
    HttpAcceptLang,
    HttpConnection,
    HttpContentLen,
    HttpLocation,
    HttpServer,
    /// `HTTP/1.1` of the request or status line.
    HttpProtocol,
    TlsSni,
}

impl Buffer {
    /// The sticky-buffer keyword (and its Suricata 4 alias) that selects this buffer.
    pub fn from_keyword(k: &str) -> Option<Buffer> {
        Some(match k {
            "pkt_data" => Buffer::Payload,
            "dns.query" | "dns_query" => Buffer::DnsQuery,
            "http.method" => Buffer::HttpMethod,
            "http.uri" | "http.uri.raw" => Buffer::HttpUri,
            "http.host" => Buffer::HttpHost,
            "http.user_agent" => Buffer::HttpUserAgent,
            "http.header" | "http.header.raw" => Buffer::HttpHeader,
            "http.cookie" => Buffer::HttpCookie,
            "http.content_type" => Buffer::HttpContentType,
            "http.referer" => Buffer::HttpReferer,
            "http.request_line" => Buffer::HttpRequestLine,
            "http.start" => Buffer::HttpStart,
            "http.stat_code" => Buffer::HttpStatCode,
            "http.stat_msg" => Buffer::HttpStatMsg,
            "http.response_line" => Buffer::HttpResponseLine,
            "http.response_body" => Buffer::HttpResponseBody,
            "file.data" | "file_data" => Buffer::FileData,
            "http.accept" => Buffer::HttpAccept,
            "http.accept_enc" => Buffer::HttpAcceptEnc,
            "http.accept_lang" => Buffer::HttpAcceptLang,
            "http.connection" => Buffer::HttpConnection,
            "http.content_len" => Buffer::HttpContentLen,
            "http.location" => Buffer::HttpLocation,
            "http.server" => Buffer::HttpServer,
            "http.protocol" => Buffer::HttpProtocol,
            "http.request_body" | "http_client_body" => Buffer::HttpRequestBody,
            "tls.sni" | "tls_sni" => Buffer::TlsSni,
            _ => return None,
        })
    }

    /// Names that are copied (lowercased where Suricata normalises them) into scratch space
    /// with a leading `.`, so `dotprefix` is a slice, not a copy per rule.
    pub fn is_name(self) -> bool {
        matches!(self, Buffer::DnsQuery | Buffer::TlsSni | Buffer::HttpHost)
    }

    pub fn is_http(self) -> bool {
        matches!(
            self,
            Buffer::HttpMethod
                | Buffer::HttpUri
                | Buffer::HttpHost
                | Buffer::HttpUserAgent
                | Buffer::HttpHeader
                | Buffer::HttpCookie
                | Buffer::HttpContentType
                | Buffer::HttpReferer
                | Buffer::HttpRequestLine
                | Buffer::HttpStart
                | Buffer::HttpRequestBody
                | Buffer::HttpStatCode
                | Buffer::HttpStatMsg
                | Buffer::HttpResponseLine
                | Buffer::HttpResponseBody
                | Buffer::FileData
                | Buffer::HttpAccept
                | Buffer::HttpAcceptEnc
                | Buffer::HttpAcceptLang
                | Buffer::HttpConnection
                | Buffer::HttpContentLen
                | Buffer::HttpLocation
                | Buffer::HttpServer
                | Buffer::HttpProtocol
        )
    }

    /// HTTP buffers that only a request head has (the rule then needs a request).
    pub fn is_http_request_only(self) -> bool {
        matches!(
            self,
            Buffer::HttpMethod
                | Buffer::HttpUri
                | Buffer::HttpRequestLine
                | Buffer::HttpRequestBody
                | Buffer::HttpUserAgent
                | Buffer::HttpReferer
                | Buffer::HttpHost
                | Buffer::HttpAccept
                | Buffer::HttpAcceptEnc
                | Buffer::HttpAcceptLang
        )
    }
}

/// A buffer with its transform (only `dotprefix` is supported).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufSel {
    pub buffer: Buffer,
    pub dotprefix: bool,
}

impl Default for BufSel {
    fn default() -> Self {
        BufSel::PAYLOAD
    }
}

impl BufSel {
    pub const PAYLOAD: BufSel = BufSel {
        buffer: Buffer::Payload,
        dotprefix: false,
    };
}

/// A non-content inspection, placed in rule order after `after_contents` contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub after_contents: usize,
    pub buf: BufSel,
    pub kind: CheckKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    Pcre(Pcre),
    ByteTest(ByteTest),
    ByteJump(ByteJump),
    IsDataAt {
        offset: u16,
        relative: bool,
        negated: bool,
    },
    /// `bsize` on the current buffer, `urilen` on http.uri.
    Bsize(NumMatch),
}

/// A compiled `pcre`. Equality compares the source and flags (the regex is derived).
#[derive(Clone, Debug)]
pub struct Pcre {
    pub source: String,
    pub negated: bool,
    pub relative: bool,
    pub regex: Arc<meta::Regex>,
}

impl PartialEq for Pcre {
    fn eq(&self, o: &Self) -> bool {
        self.source == o.source && self.negated == o.negated && self.relative == o.relative
    }
}
impl Eq for Pcre {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    Big,
    Little,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOp {
    Lt,
    Gt,
    Eq,
    Le,
    Ge,
    And,
    Xor,
}

/// How bytes are read: binary in an endianness, or as an ASCII number in a base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRead {
    pub bytes: u8,
    pub endian: Endian,
    pub string_base: Option<u32>,
    pub bitmask: Option<u64>,
}

impl ByteRead {
    /// Reads the value at `pos`; `None` when the bytes are not there or not a number.
    pub fn read(&self, data: &[u8], pos: usize) -> Option<u64> {
        // A string read of 0 bytes reads the number filling the rest of the buffer (as
        // ET uses it on http.content_len), at most 20 digits.
        let n = match (self.bytes, self.string_base) {
            (0, Some(_)) => data.len().checked_sub(pos)?.min(20),
            (b, _) => usize::from(b),
        };
        let raw = data.get(pos..pos.checked_add(n)?)?;
        let mut v: u64 = match self.string_base {
            Some(base) => {
                let s = std::str::from_utf8(raw).ok()?;
                let s = s.trim_start_matches(' ');
                let s = if base == 16 {
                    s.trim_start_matches("0x").trim_start_matches("0X")
                } else {
                    s
                };
                // Suricata reads the longest numeric prefix.
                let end = s
                    .char_indices()
                    .find(|(_, c)| !c.is_digit(base))
                    .map_or(s.len(), |(i, _)| i);
                u64::from_str_radix(s.get(..end).filter(|p| !p.is_empty())?, base).ok()?
            }
            None => {
                let mut v = 0u64;
                match self.endian {
                    Endian::Big => raw.iter().for_each(|&b| v = v << 8 | u64::from(b)),
                    Endian::Little => raw.iter().rev().for_each(|&b| v = v << 8 | u64::from(b)),
                }
                v
            }
        };
        if let Some(m) = self.bitmask {
            v &= m;
            if m != 0 {
                v >>= m.trailing_zeros();
            }
        }
        Some(v)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteTest {
    pub read: ByteRead,
    pub op: ByteOp,
    pub negated: bool,
    pub value: u64,
    pub offset: i32,
    pub relative: bool,
}

impl ByteTest {
    pub fn compare(&self, v: u64) -> bool {
        let r = match self.op {
            ByteOp::Lt => v < self.value,
            ByteOp::Gt => v > self.value,
            ByteOp::Eq => v == self.value,
            ByteOp::Le => v <= self.value,
            ByteOp::Ge => v >= self.value,
            ByteOp::And => v & self.value != 0,
            ByteOp::Xor => v ^ self.value != 0,
        };
        r != self.negated
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteJump {
    pub read: ByteRead,
    pub offset: i32,
    pub relative: bool,
    pub multiplier: u32,
    pub align: bool,
    pub from_beginning: bool,
    pub from_end: bool,
    pub post_offset: i32,
}

/// `flow` read per packet (see the module docs for how direction and state are decided).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flow {
    pub to_server: bool,
    pub to_client: bool,
    /// `Some(true)` for `established`, `Some(false)` for `not_established`.
    pub established: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdKind {
    /// Fire on the first `count` matches per window.
    Limit,
    /// Fire on every `count`-th match within a window.
    Threshold,
    /// Fire once per window, at the `count`-th match.
    Both,
    /// `detection_filter`: fire on every match after the first `count` within a window.
    DetectionFilter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    BySrc,
    ByDst,
    ByRule,
    ByBoth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold {
    pub kind: ThresholdKind,
    pub track: Track,
    pub count: u32,
    pub seconds: u32,
}

/// A keyword problem: `unsupported` when the syntax is valid but this engine lacks it.
pub(crate) struct KwError {
    pub unsupported: bool,
    pub message: String,
}

fn bad(m: impl Into<String>) -> KwError {
    KwError {
        unsupported: false,
        message: m.into(),
    }
}

fn unsup(m: impl Into<String>) -> KwError {
    KwError {
        unsupported: true,
        message: m.into(),
    }
}

/// An integer argument; a name (a `byte_extract` variable) is unsupported.
fn int<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, KwError> {
    let s = s.trim();
    if let Ok(v) = s.parse::<T>() {
        return Ok(v);
    }
    if s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err(unsup(format!(
            "{what} '{s}' is a byte_extract variable (not supported)"
        )));
    }
    Err(bad(format!("{what} must be an integer, got '{s}'")))
}

fn num_value(s: &str) -> Result<u64, KwError> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).map_err(|_| bad(format!("invalid hex value '{s}'")));
    }
    int::<u64>(s, "value")
}

/// The flags shared by byte_test and byte_jump; returns unknown words for the caller.
fn byte_read_flags<'a>(
    bytes: u8,
    rest: &[&'a str],
    relative: &mut bool,
) -> Result<(ByteRead, Vec<&'a str>), KwError> {
    let mut read = ByteRead {
        bytes,
        endian: Endian::Big,
        string_base: None,
        bitmask: None,
    };
    let mut string = false;
    let mut base = None;
    let mut other = Vec::new();
    for &w in rest {
        let w = w.trim();
        match w {
            "relative" => *relative = true,
            "big" => read.endian = Endian::Big,
            "little" => read.endian = Endian::Little,
            "string" => string = true,
            "hex" => base = Some(16),
            "dec" => base = Some(10),
            "oct" => base = Some(8),
            "dce" => return Err(unsup("'dce' needs DCE/RPC state (not supported)")),
            _ if w.starts_with("bitmask") => {
                let v = w.trim_start_matches("bitmask").trim();
                read.bitmask = Some(num_value(v)?);
            }
            _ => other.push(w),
        }
    }
    if string {
        read.string_base = Some(base.unwrap_or(10));
        if bytes > 20 {
            return Err(bad(format!("string reads take 0..=20 bytes, got {bytes}")));
        }
    } else {
        if base.is_some() {
            return Err(bad("hex/dec/oct need 'string'"));
        }
        if bytes == 0 || bytes > 8 {
            return Err(bad(format!("binary reads take 1..=8 bytes, got {bytes}")));
        }
    }
    Ok((read, other))
}

/// `byte_test:bytes,[!]op,value,offset[,relative][,big|little][,string,hex|dec|oct][,bitmask X]`.
pub(crate) fn parse_byte_test(v: &str) -> Result<ByteTest, KwError> {
    let parts: Vec<&str> = v.split(',').collect();
    if parts.len() < 4 {
        return Err(bad("byte_test needs bytes, operator, value and offset"));
    }
    let bytes: u8 = int(parts[0], "bytes")?;
    let mut op_s = parts[1].trim();
    let mut negated = false;
    if let Some(r) = op_s.strip_prefix('!') {
        negated = true;
        op_s = r.trim();
    }
    let op = match op_s {
        "<" => ByteOp::Lt,
        ">" => ByteOp::Gt,
        "=" => ByteOp::Eq,
        "" if negated => ByteOp::Eq,
        "<=" => ByteOp::Le,
        ">=" => ByteOp::Ge,
        "&" => ByteOp::And,
        "^" => ByteOp::Xor,
        o => return Err(bad(format!("unknown byte_test operator '{o}'"))),
    };
    let value = num_value(parts[2])?;
    let offset: i32 = int(parts[3], "offset")?;
    let mut relative = false;
    let (read, other) = byte_read_flags(bytes, &parts[4..], &mut relative)?;
    if let Some(w) = other.first() {
        return Err(bad(format!("unknown byte_test option '{w}'")));
    }
    Ok(ByteTest {
        read,
        op,
        negated,
        value,
        offset,
        relative,
    })
}

/// `byte_jump:bytes,offset[,relative][,multiplier N][,big|little][,string,base][,align]
/// [,from_beginning|from_end][,post_offset N][,bitmask X]`.
pub(crate) fn parse_byte_jump(v: &str) -> Result<ByteJump, KwError> {
    let parts: Vec<&str> = v.split(',').collect();
    if parts.len() < 2 {
        return Err(bad("byte_jump needs bytes and offset"));
    }
    let bytes: u8 = int(parts[0], "bytes")?;
    let offset: i32 = int(parts[1], "offset")?;
    let mut relative = false;
    let (read, other) = byte_read_flags(bytes, &parts[2..], &mut relative)?;
    let mut j = ByteJump {
        read,
        offset,
        relative,
        multiplier: 1,
        align: false,
        from_beginning: false,
        from_end: false,
        post_offset: 0,
    };
    for w in other {
        match w {
            "align" => j.align = true,
            "from_beginning" => j.from_beginning = true,
            "from_end" => j.from_end = true,
            _ if w.starts_with("multiplier") => {
                j.multiplier = int(w.trim_start_matches("multiplier"), "multiplier")?
            }
            _ if w.starts_with("post_offset") => {
                j.post_offset = int(w.trim_start_matches("post_offset"), "post_offset")?
            }
            _ => return Err(bad(format!("unknown byte_jump option '{w}'"))),
        }
    }
    if j.from_beginning && j.from_end {
        return Err(bad("from_beginning and from_end exclude each other"));
    }
    Ok(j)
}

/// `isdataat:[!]N[,relative][,rawbytes]`.
pub(crate) fn parse_isdataat(v: &str) -> Result<CheckKind, KwError> {
    let mut parts = v.split(',');
    let first = parts.next().unwrap_or("").trim();
    let (negated, n) = match first.strip_prefix('!') {
        Some(r) => (true, r.trim()),
        None => (false, first),
    };
    let offset: u16 = int(n, "isdataat offset")?;
    let mut relative = false;
    for w in parts {
        match w.trim() {
            "relative" => relative = true,
            "rawbytes" => {}
            o => return Err(bad(format!("unknown isdataat option '{o}'"))),
        }
    }
    Ok(CheckKind::IsDataAt {
        offset,
        relative,
        negated,
    })
}

/// Most memory one pcre may compile to; bigger ones are skipped, not loaded.
const PCRE_NFA_LIMIT: usize = 4 << 20;

/// `[!]"/pattern/flags"` with Suricata's flags `i s m x R` (and `O`, which only lifts PCRE's
/// match limits); other flags select legacy buffers or PCRE-only behaviour and are unsupported.
pub(crate) fn parse_pcre(v: &str) -> Result<Pcre, KwError> {
    let v = v.trim();
    let (negated, v) = match v.strip_prefix('!') {
        Some(r) => (true, r.trim_start()),
        None => (false, v),
    };
    let inner = v
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| bad("pcre needs a quoted \"/pattern/flags\""))?;
    let body = inner
        .strip_prefix('/')
        .ok_or_else(|| bad("pcre pattern must start with '/'"))?;
    let last = body
        .rfind('/')
        .ok_or_else(|| bad("pcre pattern must end with '/' and flags"))?;
    let (pattern, flags) = (&body[..last], &body[last + 1..]);
    let mut syntax = regex_automata::util::syntax::Config::new()
        .unicode(false)
        .utf8(false);
    let mut relative = false;
    for f in flags.chars() {
        syntax = match f {
            'i' => syntax.case_insensitive(true),
            's' => syntax.dot_matches_new_line(true),
            'm' => syntax.multi_line(true),
            'x' => syntax.ignore_whitespace(true),
            'R' => {
                relative = true;
                syntax
            }
            'O' => syntax,
            other => {
                return Err(unsup(format!(
                    "pcre flag '{other}' is not supported (supported: i s m x R O)"
                )))
            }
        };
    }
    let regex = meta::Regex::builder()
        .syntax(syntax)
        .configure(
            meta::Config::new()
                .utf8_empty(false)
                .nfa_size_limit(Some(PCRE_NFA_LIMIT)),
        )
        .build(pattern)
        .map_err(|e| {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or("").trim().to_string();
            unsup(format!(
                "pcre pattern not supported by the regex engine: {first}"
            ))
        })?;
    Ok(Pcre {
        source: v.to_string(),
        negated,
        relative,
        regex: Arc::new(regex),
    })
}

/// `flow:` options evaluable per packet; `only_stream` (and the stream/frag filters) are not.
pub(crate) fn parse_flow(v: &str) -> Result<Flow, KwError> {
    let mut f = Flow::default();
    for w in v.split(',') {
        match w.trim() {
            "to_server" | "from_client" => f.to_server = true,
            "to_client" | "from_server" => f.to_client = true,
            "established" => f.established = Some(true),
            "not_established" => f.established = Some(false),
            "stateless" | "no_stream" => {}
            o @ ("only_stream" | "only_frag" | "no_frag") => {
                return Err(unsup(format!("flow option '{o}' is not supported")))
            }
            o => return Err(bad(format!("unknown flow option '{o}'"))),
        }
    }
    if f.to_server && f.to_client {
        return Err(bad("flow cannot be both to_server and to_client"));
    }
    Ok(f)
}

/// `threshold: type T, track X, count N, seconds S` or (`detection_filter`) without type.
pub(crate) fn parse_threshold(v: &str, detection_filter: bool) -> Result<Threshold, KwError> {
    let mut kind = detection_filter.then_some(ThresholdKind::DetectionFilter);
    let (mut track, mut count, mut seconds) = (None, None, None);
    for part in v.split(',') {
        let mut it = part.split_whitespace();
        let (Some(k), Some(val), None) = (it.next(), it.next(), it.next()) else {
            return Err(bad(format!("expected 'key value', got '{}'", part.trim())));
        };
        match k {
            "type" if !detection_filter => {
                kind = Some(match val {
                    "limit" => ThresholdKind::Limit,
                    "threshold" => ThresholdKind::Threshold,
                    "both" => ThresholdKind::Both,
                    o => return Err(bad(format!("unknown threshold type '{o}'"))),
                })
            }
            "track" => {
                track = Some(match val {
                    "by_src" => Track::BySrc,
                    "by_dst" => Track::ByDst,
                    "by_rule" => Track::ByRule,
                    "by_both" => Track::ByBoth,
                    o => return Err(unsup(format!("track '{o}' is not supported"))),
                })
            }
            "count" => count = Some(int::<u32>(val, "count")?),
            "seconds" => seconds = Some(int::<u32>(val, "seconds")?),
            "unique_on" => return Err(unsup("unique_on is not supported")),
            o => return Err(bad(format!("unknown threshold option '{o}'"))),
        }
    }
    match (kind, track, count, seconds) {
        (Some(kind), Some(track), Some(count), Some(seconds)) if count > 0 && seconds > 0 => {
            Ok(Threshold {
                kind,
                track,
                count,
                seconds,
            })
        }
        _ => Err(bad(
            "needs type (threshold only), track, count > 0 and seconds > 0",
        )),
    }
}
