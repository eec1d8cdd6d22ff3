//! Sticky buffers read from one packet: an HTTP request head, a DNS query name, a TLS
//! ClientHello's SNI. A scrubber sees packets, not reassembled streams, so a buffer exists only
//! when one packet carries all of it (a request head up to its blank line, a whole DNS message,
//! a ClientHello whose extensions fit); otherwise the buffer is absent and rules that inspect
//! it do not match. Parsing is done at most once per packet and only when a candidate rule
//! asks; names are copied into fixed scratch space, so nothing allocates.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::keywords::{BufSel, Buffer};

/// Longest name copied into scratch (DNS names are at most 255 bytes on the wire).
pub(crate) const NAME_MAX: usize = 512;

/// Byte ranges of an HTTP request or response head inside the payload.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HttpHead {
    response: bool,
    /// Request: method; response: empty.
    method: (usize, usize),
    /// Request: URI; response: status code.
    uri: (usize, usize),
    /// Response: the reason phrase.
    stat_msg: (usize, usize),
    /// The request or status line.
    request_line: (usize, usize),
    /// From the first header line through the CRLF ending the last one.
    headers: (usize, usize),
    /// After the blank line, to the end of the packet.
    body: (usize, usize),
}

/// What a packet was recognised as (per-packet application-layer detection), as a bit set:
/// one payload may look like several (a DNS-over-TCP message could start with "GET "), and
/// each bit is implied by the buffers of its protocol, so grouping rules by it is sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct App(u8);

impl App {
    pub const HTTP_REQUEST: u8 = 1;
    pub const HTTP_RESPONSE: u8 = 2;
    pub const TLS: u8 = 4;
    pub const DNS: u8 = 8;

    pub fn has(self, bits: u8) -> bool {
        self.0 & bits != 0
    }
}

/// Per-packet buffer cache; owned by the stage so the scratch arrays are allocated once.
#[derive(Debug)]
pub(crate) struct Buffers {
    app: Option<App>,
    http: Option<Option<HttpHead>>,
    /// Each name buffer: `.` at index 0, the name from index 1, and its length (None =
    /// absent); filled on first use per packet.
    dns: Option<Option<usize>>,
    sni: Option<Option<usize>>,
    host: Option<Option<usize>>,
    dns_buf: Box<[u8; NAME_MAX + 1]>,
    sni_buf: Box<[u8; NAME_MAX + 1]>,
    host_buf: Box<[u8; NAME_MAX + 1]>,
}

impl Buffers {
    pub fn new() -> Self {
        Buffers {
            app: None,
            http: None,
            dns: None,
            sni: None,
            host: None,
            dns_buf: Box::new([0; NAME_MAX + 1]),
            sni_buf: Box::new([0; NAME_MAX + 1]),
            host_buf: Box::new([0; NAME_MAX + 1]),
        }
    }

    /// Forgets the previous packet.
    pub fn reset(&mut self) {
        self.app = None;
        self.http = None;
        self.dns = None;
        self.sni = None;
        self.host = None;
    }

    /// What the payload is recognised as (computed once per packet).
    pub fn app(&mut self, payload: &[u8], tcp: bool) -> App {
        if let Some(a) = self.app {
            return a;
        }
        let a = detect(payload, tcp);
        self.app = Some(a);
        a
    }

    fn http(&mut self, payload: &[u8]) -> Option<HttpHead> {
        if let Some(h) = self.http {
            return h;
        }
        let h = parse_http(payload);
        self.http = Some(h);
        h
    }

    /// Locates (or decodes) `sel` for this packet; false when the packet does not carry it.
    /// Afterwards [`Buffers::peek`] reads it without needing `&mut`.
    pub fn ensure(&mut self, sel: BufSel, payload: &[u8], tcp: bool) -> bool {
        let b = sel.buffer;
        // HTTP and TLS ride on TCP only (as the prefilter's classes assume).
        if (b.is_http() || b == Buffer::TlsSni) && !tcp {
            return false;
        }
        if b.is_http() && self.http(payload).is_none() {
            return false;
        }
        match b {
            Buffer::HttpHost if self.host.is_none() => {
                let head = self.http(payload).filter(|h| !h.response);
                let v = head.and_then(|h| header_value(payload, h, b"host"));
                // Suricata's http.host is the Host value lowercased, without the port.
                self.host = Some(v.and_then(|v| {
                    let cut = if v.first() == Some(&b'[') {
                        v.iter().position(|&b| b == b']').map(|e| e + 1)
                    } else {
                        v.iter().position(|&b| b == b':')
                    };
                    let v = cut.and_then(|c| v.get(..c)).unwrap_or(v);
                    copy_name(&mut self.host_buf, v, true)
                }));
            }
            Buffer::DnsQuery if self.dns.is_none() => {
                self.dns = Some(dns_query(payload, tcp, &mut self.dns_buf));
            }
            Buffer::TlsSni if self.sni.is_none() => {
                let v = tls_sni(payload);
                self.sni = Some(v.and_then(|v| copy_name(&mut self.sni_buf, v, false)));
            }
            _ => {}
        }
        self.peek(sel, payload).is_some()
    }

    /// The bytes of `sel` as located by [`Buffers::ensure`] for this packet.
    pub fn peek<'a>(&'a self, sel: BufSel, payload: &'a [u8]) -> Option<&'a [u8]> {
        let range = |r: (usize, usize)| payload.get(r.0..r.1);
        let http = || self.http.flatten();
        // Buffers of one direction only: absent on a head of the other.
        let req = || http().filter(|h| !h.response);
        let resp = || http().filter(|h| h.response);
        match sel.buffer {
            Buffer::Payload => Some(payload),
            Buffer::HttpMethod => range(req()?.method),
            Buffer::HttpUri => range(req()?.uri),
            Buffer::HttpRequestLine => range(req()?.request_line),
            Buffer::HttpRequestBody => range(req()?.body),
            Buffer::HttpUserAgent => header_value(payload, req()?, b"user-agent"),
            Buffer::HttpReferer => header_value(payload, req()?, b"referer"),
            Buffer::HttpStatCode => range(resp()?.uri),
            Buffer::HttpStatMsg => range(resp()?.stat_msg),
            Buffer::HttpResponseLine => range(resp()?.request_line),
            Buffer::HttpResponseBody => range(resp()?.body),
            Buffer::FileData => range(http()?.body),
            Buffer::HttpHeader => range(http()?.headers),
            Buffer::HttpStart => range((0, http()?.body.0)),
            Buffer::HttpCookie => {
                let h = http()?;
                let name: &[u8] = if h.response { b"set-cookie" } else { b"cookie" };
                header_value(payload, h, name)
            }
            Buffer::HttpContentType => header_value(payload, http()?, b"content-type"),
            Buffer::HttpAccept => header_value(payload, req()?, b"accept"),
            Buffer::HttpAcceptEnc => header_value(payload, req()?, b"accept-encoding"),
            Buffer::HttpAcceptLang => header_value(payload, req()?, b"accept-language"),
            Buffer::HttpConnection => header_value(payload, http()?, b"connection"),
            Buffer::HttpContentLen => header_value(payload, http()?, b"content-length"),
            Buffer::HttpLocation => header_value(payload, resp()?, b"location"),
            Buffer::HttpServer => header_value(payload, resp()?, b"server"),
            Buffer::HttpProtocol => {
                let h = http()?;
                let line = range(h.request_line)?;
                if h.response {
                    line.split(|&b| b == b' ').next()
                } else {
                    line.rsplit(|&b| b == b' ').next()
                }
            }
            Buffer::HttpHost => name_slice(&self.host_buf, self.host.flatten()?, sel.dotprefix),
            Buffer::DnsQuery => name_slice(&self.dns_buf, self.dns.flatten()?, sel.dotprefix),
            Buffer::TlsSni => name_slice(&self.sni_buf, self.sni.flatten()?, sel.dotprefix),
        }
    }

    /// Whether a DNS message in this packet is a response (QR set); `None` if it is not DNS.
    pub fn dns_is_response(&self, payload: &[u8], tcp: bool) -> Option<bool> {
        let m = if tcp { payload.get(2..)? } else { payload };
        dns_header_ok(m).then(|| m[2] & 0x80 != 0)
    }
}

fn name_slice(buf: &[u8; NAME_MAX + 1], len: usize, dotprefix: bool) -> Option<&[u8]> {
    if dotprefix {
        buf.get(..len + 1)
    } else {
        buf.get(1..len + 1)
    }
}

fn copy_name(buf: &mut [u8; NAME_MAX + 1], v: &[u8], lower: bool) -> Option<usize> {
    if v.len() > NAME_MAX {
        return None;
    }
    buf[0] = b'.';
    let dst = buf.get_mut(1..=v.len())?;
    dst.copy_from_slice(v);
    if lower {
        dst.make_ascii_lowercase();
    }
    Some(v.len())
}

/// The searchers for the two delimiters HTTP heads are cut at, built once: building a
/// searcher per packet (`memmem::find`) cost about 46 instructions per HTTP packet.
static CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n"));
static HEAD_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n\r\n"));

const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
];

fn detect(p: &[u8], tcp: bool) -> App {
    let mut a = 0;
    if tcp {
        if p.starts_with(b"HTTP/1.") {
            a |= App::HTTP_RESPONSE;
        } else if parse_http(p).is_some() {
            a |= App::HTTP_REQUEST;
        }
        // Superset of what tls_sni accepts.
        if p.len() >= 5 && (0x14..=0x17).contains(&p[0]) && p[1] == 3 {
            a |= App::TLS;
        }
    }
    let msg = if tcp { p.get(2..) } else { Some(p) };
    if msg.is_some_and(dns_header_ok) {
        a |= App::DNS;
    }
    App(a)
}

/// A request head (`METHOD SP URI SP HTTP/x.y CRLF headers CRLF`) or a response head
/// (`HTTP/x.y SP code SP reason CRLF headers CRLF`) carried whole by this packet.
fn parse_http(p: &[u8]) -> Option<HttpHead> {
    let line_end = CRLF.find(p)?;
    let line = &p[..line_end];
    let sp = line.iter().take(16).position(|&b| b == b' ')?;
    let mut h = HttpHead {
        request_line: (0, line_end),
        ..HttpHead::default()
    };
    if line.starts_with(b"HTTP/1.") {
        let code = (sp + 1, (sp + 4).min(line_end));
        let digits = line.get(code.0..code.1)?;
        if digits.len() != 3 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        h.response = true;
        h.uri = code;
        h.stat_msg = ((code.1 + 1).min(line_end), line_end);
    } else {
        if !METHODS.contains(&&line[..sp]) {
            return None;
        }
        let uri_end = line.iter().rposition(|&b| b == b' ')?;
        if uri_end <= sp + 1 || !line[uri_end + 1..].starts_with(b"HTTP/") {
            return None;
        }
        h.method = (0, sp);
        h.uri = (sp + 1, uri_end);
    }
    let hstart = line_end + 2;
    // The head ends at the first blank line; a head without headers ends right here.
    let (headers, body_start) = if p.get(hstart..hstart + 2) == Some(b"\r\n") {
        ((hstart, hstart), hstart + 2)
    } else {
        let end = HEAD_END.find(p.get(hstart..)?)? + hstart;
        ((hstart, end + 2), end + 4)
    };
    h.headers = headers;
    h.body = (body_start, p.len());
    Some(h)
}

/// The value of the first header called `name` (lowercase), without leading blanks.
fn header_value<'a>(p: &'a [u8], h: HttpHead, name: &[u8]) -> Option<&'a [u8]> {
    let block = p.get(h.headers.0..h.headers.1)?;
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(name) {
            let v = &line[colon + 1..];
            let lead = v.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
            return Some(&v[lead..]);
        }
    }
    None
}

fn dns_header_ok(m: &[u8]) -> bool {
    if m.len() < 12 {
        return false;
    }
    let qd = u16::from_be_bytes([m[4], m[5]]);
    let opcode = (m[2] >> 3) & 0x0f;
    (1..=16).contains(&qd) && opcode <= 6
}

/// The first question's name of a DNS query (QR = 0), dotted, into `out[1..]`.
fn dns_query(p: &[u8], tcp: bool, out: &mut [u8; NAME_MAX + 1]) -> Option<usize> {
    let m = if tcp {
        let len = usize::from(u16::from_be_bytes([*p.first()?, *p.get(1)?]));
        p.get(2..2 + len)?
    } else {
        p
    };
    if !dns_header_ok(m) || m[2] & 0x80 != 0 {
        return None;
    }
    let mut i = 12;
    let mut n = 0usize;
    out[0] = b'.';
    loop {
        let l = usize::from(*m.get(i)?);
        if l == 0 {
            break;
        }
        if l & 0xc0 != 0 {
            return None; // no compression in a question's first name
        }
        let label = m.get(i + 1..i + 1 + l)?;
        if n > 0 {
            *out.get_mut(1 + n)? = b'.';
            n += 1;
        }
        out.get_mut(1 + n..1 + n + l)?.copy_from_slice(label);
        n += l;
        i += 1 + l;
    }
    Some(n)
}

/// The server name of a ClientHello carried whole by one TLS record in this packet.
fn tls_sni(p: &[u8]) -> Option<&[u8]> {
    if *p.first()? != 0x16 || *p.get(1)? != 3 {
        return None;
    }
    let rec_len = usize::from(u16::from_be_bytes([*p.get(3)?, *p.get(4)?]));
    let rec = p.get(5..5 + rec_len)?;
    if *rec.first()? != 1 {
        return None;
    }
    let mut i = 4 + 2 + 32; // handshake header, version, random
    let sid = usize::from(*rec.get(i)?);
    i += 1 + sid;
    let cs = usize::from(u16::from_be_bytes([*rec.get(i)?, *rec.get(i + 1)?]));
    i += 2 + cs;
    let comp = usize::from(*rec.get(i)?);
    i += 1 + comp;
    let ext_len = usize::from(u16::from_be_bytes([*rec.get(i)?, *rec.get(i + 1)?]));
    i += 2;
    let exts = rec.get(i..i + ext_len)?;
    let mut j = 0;
    while j + 4 <= exts.len() {
        let ty = u16::from_be_bytes([exts[j], exts[j + 1]]);
        let len = usize::from(u16::from_be_bytes([exts[j + 2], exts[j + 3]]));
        let body = exts.get(j + 4..j + 4 + len)?;
        if ty == 0 {
            // server_name_list length, name type 0 (host_name), name length, name
            if *body.get(2)? != 0 {
                return None;
            }
            let nl = usize::from(u16::from_be_bytes([*body.get(3)?, *body.get(4)?]));
            return body.get(5..5 + nl);
        }
        j += 4 + len;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn get(b: &mut Buffers, buffer: Buffer, dot: bool, p: &[u8], tcp: bool) -> Option<Vec<u8>> {
        b.reset();
        let sel = BufSel {
            buffer,
            dotprefix: dot,
        };
        b.ensure(sel, p, tcp);
        b.peek(sel, p).map(<[u8]>::to_vec)
    }

    #[test]
    fn http_request_head_parts() {
        let p = b"GET /a/b?c=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent: curl/8\r\nCookie: x=y\r\n\r\nBODY";
        let mut b = Buffers::new();
        assert_eq!(
            get(&mut b, Buffer::HttpMethod, false, p, true).unwrap(),
            b"GET"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpUri, false, p, true).unwrap(),
            b"/a/b?c=1"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpHost, false, p, true).unwrap(),
            b"example.com"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpHost, true, p, true).unwrap(),
            b".example.com"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpUserAgent, false, p, true).unwrap(),
            b"curl/8"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpCookie, false, p, true).unwrap(),
            b"x=y"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpRequestBody, false, p, true).unwrap(),
            b"BODY"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpHeader, false, p, true).unwrap(),
            b"Host: Example.COM:8080\r\nUser-Agent: curl/8\r\nCookie: x=y\r\n"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpRequestLine, false, p, true).unwrap(),
            b"GET /a/b?c=1 HTTP/1.1"
        );
        assert_eq!(get(&mut b, Buffer::HttpReferer, false, p, true), None);
        assert_eq!(
            get(&mut b, Buffer::HttpStart, false, p, true).unwrap(),
            &p[..p.len() - 4]
        );
        // A head cut by the packet end is no head.
        assert_eq!(get(&mut b, Buffer::HttpUri, false, &p[..40], true), None);
        assert!(b.app(p, true).has(App::HTTP_REQUEST));
    }

    #[test]
    fn http_response_head_parts() {
        let p = b"HTTP/1.1 404 Not Found\r\nServer: x\r\nSet-Cookie: s=1\r\nContent-Type: text/html\r\n\r\n<html>";
        let mut b = Buffers::new();
        assert_eq!(
            get(&mut b, Buffer::HttpStatCode, false, p, true).unwrap(),
            b"404"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpStatMsg, false, p, true).unwrap(),
            b"Not Found"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpCookie, false, p, true).unwrap(),
            b"s=1"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpContentType, false, p, true).unwrap(),
            b"text/html"
        );
        assert_eq!(
            get(&mut b, Buffer::FileData, false, p, true).unwrap(),
            b"<html>"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpResponseBody, false, p, true).unwrap(),
            b"<html>"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpUri, false, p, true),
            None,
            "no URI in a response"
        );
        assert_eq!(get(&mut b, Buffer::HttpHost, false, p, true), None);
        assert!(b.app(p, true).has(App::HTTP_RESPONSE));
        let req = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(get(&mut b, Buffer::HttpStatCode, false, req, true), None);
        assert_eq!(
            get(&mut b, Buffer::HttpProtocol, false, req, true).unwrap(),
            b"HTTP/1.1"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpProtocol, false, p, true).unwrap(),
            b"HTTP/1.1"
        );
        assert_eq!(
            get(&mut b, Buffer::HttpServer, false, p, true).unwrap(),
            b"x"
        );
    }

    #[test]
    fn dns_query_name_over_udp_and_tcp() {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        let mut b = Buffers::new();
        assert_eq!(
            get(&mut b, Buffer::DnsQuery, false, &q, false).unwrap(),
            b"www.example.com"
        );
        assert_eq!(
            get(&mut b, Buffer::DnsQuery, true, &q, false).unwrap(),
            b".www.example.com"
        );
        let mut t = (q.len() as u16).to_be_bytes().to_vec();
        t.extend_from_slice(&q);
        assert_eq!(
            get(&mut b, Buffer::DnsQuery, false, &t, true).unwrap(),
            b"www.example.com"
        );
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert_eq!(
            get(&mut b, Buffer::DnsQuery, false, &resp, false),
            None,
            "responses have no dns.query"
        );
        assert_eq!(get(&mut b, Buffer::DnsQuery, false, &q[..20], false), None);
    }

    /// A TLS record holding a ClientHello with this SNI.
    pub(crate) fn client_hello(name: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8];
        body.extend_from_slice(&(name.len() as u16).to_be_bytes());
        body.extend_from_slice(name);
        let mut sni = vec![0, 0];
        sni.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        sni.extend_from_slice(&(body.len() as u16).to_be_bytes());
        sni.extend_from_slice(&body);
        let mut hello = vec![3, 3];
        hello.extend_from_slice(&[0; 32]);
        hello.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        hello.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        hello.extend_from_slice(&sni);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(hello.len() as u16).to_be_bytes());
        hs.extend_from_slice(&hello);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn tls_sni_from_a_client_hello() {
        let name = b"evil.example";
        let rec = client_hello(name);
        let mut b = Buffers::new();
        assert_eq!(
            get(&mut b, Buffer::TlsSni, false, &rec, true).unwrap(),
            name
        );
        assert!(b.app(&rec, true).has(App::TLS));
        assert_eq!(
            get(&mut b, Buffer::TlsSni, false, &rec[..rec.len() - 1], true),
            None
        );
    }
}
