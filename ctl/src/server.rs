//! The control-socket server scrubd embeds.
//!
//! Everything here runs on control-side threads (one accept thread, one thread per client), so
//! the data-path workers never block on an operator. The daemon supplies a [`Handler`]; this
//! module owns the socket file, who may connect, framing, limits and error replies.
//!
//! Wire behaviour beyond `protocol.rs` (what the README documents):
//! - A line that is empty or only whitespace gets no reply (handy for `nc` sessions).
//! - `\r\n` line ends are accepted; a final line without `\n` before EOF is still answered.
//! - A line longer than [`MAX_REQUEST_BYTES`] (newline excluded) gets one `too_large` error
//!   without `id` and the connection is closed; the daemon never buffers more than the cap.
//! - Anything not a JSON object, a missing/non-integer `v`, an `id` that is not an unsigned
//!   integer, an unknown command or argument: `bad_request` (serde's message). `v` other than 1:
//!   `unsupported_version`. The `id` is echoed whenever it could be read.
//! - `args` may be omitted when every argument of the command is optional, and `"args":{}` is
//!   accepted for commands without arguments.
//! - A handler panic becomes an `internal` error for that request only.
//! - A peer whose credentials are not allowed, or one over `max_clients`, gets one `unavailable`
//!   error line without `id` and is closed.
//! - A client that sends nothing for `idle_timeout_s`, or does not read its replies for
//!   `write_timeout_s`, is closed without a reply.

use crate::accept::{self, Wake, WakePair};
use crate::protocol::{
    Command, ErrorBody, ErrorCode, Request, Response, MAX_REQUEST_BYTES, PROTOCOL_VERSION,
};
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use thiserror::Error;

/// What the daemon implements: one command in, the reply's `data` or an error out.
///
/// Called concurrently from client threads, hence `Sync`; a slow command only holds up the
/// client that sent it.
pub trait Handler: Send + Sync {
    fn handle(&self, cmd: Command) -> Result<serde_json::Value, ErrorBody>;
}

/// `[control]` in scrubd's TOML config:
///
/// ```toml
/// [control]
/// path = "/run/scrubd/scrubd.sock"
/// mode = 0o660            # 0o600 (default) or 0o660
/// group = "scrubd"        # chown the socket to this group; its members may connect
/// allowed_uids = [1001]   # besides root and the daemon's own uid
/// allowed_gids = []       # peers whose primary or supplementary group is listed
/// max_clients = 16
/// idle_timeout_s = 120
/// write_timeout_s = 10
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub path: PathBuf,
    /// Permission bits of the socket file. Connecting needs write permission, so only 0o600
    /// (owner) and 0o660 (owner and group) make sense; anything reaching "other" is refused.
    pub mode: u32,
    pub group: Option<String>,
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
    /// Clients served at once; each holds a thread.
    pub max_clients: usize,
    /// A client that sends nothing for this long is disconnected.
    #[serde(rename = "idle_timeout_s", deserialize_with = "de_secs")]
    pub idle_timeout: Duration,
    /// A client that does not take a reply within this long is disconnected.
    #[serde(rename = "write_timeout_s", deserialize_with = "de_secs")]
    pub write_timeout: Duration,
}

pub const DEFAULT_SOCKET_PATH: &str = "/run/scrubd/scrubd.sock";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            path: PathBuf::from(DEFAULT_SOCKET_PATH),
            mode: 0o600,
            group: None,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            max_clients: 16,
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(10),
        }
    }
}

fn de_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = f64::deserialize(d)?;
    Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom)
}

impl ServerConfig {
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |field, reason: String| Err(ServerError::Config { field, reason });
        if self.path.as_os_str().is_empty() {
            return bad("path", "must not be empty".into());
        }
        if self.mode != 0o600 && self.mode != 0o660 {
            return bad(
                "mode",
                format!("{:#o} is not allowed; use 0o600 or 0o660", self.mode),
            );
        }
        if let Some(g) = &self.group {
            if g.is_empty() {
                return bad("group", "must not be empty (omit it instead)".into());
            }
        }
        if self.max_clients == 0 {
            return bad("max_clients", "must be at least 1".into());
        }
        if self.idle_timeout.is_zero() {
            return bad("idle_timeout_s", "must be greater than 0".into());
        }
        if self.write_timeout.is_zero() {
            return bad("write_timeout_s", "must be greater than 0".into());
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("control socket config: {field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("control socket directory {0} does not exist; create it (e.g. `install -d -m 0750 /run/scrubd`) or choose another socket path")]
    NoParent(PathBuf),
    #[error("{path} is {what}, not a socket; refusing to replace it")]
    NotASocket { path: PathBuf, what: &'static str },
    #[error("another scrubd is listening on {0}")]
    InUse(PathBuf),
    #[error("control socket group {0:?} does not exist")]
    UnknownGroup(String),
    #[error("control socket path {0} is too long for a Unix socket address")]
    PathTooLong(PathBuf),
    #[error("control socket {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> ServerError {
    let path = path.to_path_buf();
    move |source| ServerError::Io { path, op, source }
}

/// Credentials of the process at the other end, as the kernel recorded them at `connect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// SO_PEERCRED of a connected Unix stream (std's `peer_cred` is not stable).
pub fn peer_cred(s: &UnixStream) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes and `len` holds the size of `cred`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Who may talk to the daemon. File permissions already gate `connect`; this is the second
/// check, so a socket chmod-ed wider by mistake does not hand the daemon to everyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPolicy {
    pub daemon_uid: u32,
    pub uids: Vec<u32>,
    /// `allowed_gids` plus the gid of `group`.
    pub gids: Vec<u32>,
}

impl AccessPolicy {
    /// Root, the daemon's own uid, a listed uid, or a listed group (primary or supplementary).
    pub fn allows(&self, peer: &PeerCred, supplementary: &[u32]) -> bool {
        peer.uid == 0
            || peer.uid == self.daemon_uid
            || self.uids.contains(&peer.uid)
            || self.gids.contains(&peer.gid)
            || supplementary.iter().any(|g| self.gids.contains(g))
    }

    fn check(&self, peer: &PeerCred) -> bool {
        if self.allows(peer, &[]) {
            return true;
        }
        if self.gids.is_empty() {
            return false;
        }
        self.allows(peer, &supplementary_groups(peer.pid))
    }
}

/// The peer's supplementary groups from /proc (the kernel gives only the primary gid with the
/// socket); unreadable means none, so the check fails closed.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    parse_groups_line(&text)
}

fn parse_groups_line(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Group name to gid through NSS (so LDAP/sssd groups work, not only /etc/group).
pub fn lookup_group(name: &str) -> io::Result<Option<u32>> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "group name contains NUL"))?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: all-zero is a valid `group` (null pointers, zero gid); it is only read after
        // getgrnam_r filled it.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf.len()` is the buffer's size.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        return Ok(if result.is_null() {
            None
        } else {
            Some(grp.gr_gid)
        });
    }
}

/// Longest path `sockaddr_un` holds (108 bytes with the terminating NUL on Linux).
const SUN_PATH_MAX: usize = 107;

/// Removes the private staging directory however `create_socket` ends.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0.join("s"));
        let _ = fs::remove_dir(&self.0);
    }
}

/// Make the listening socket at `path` with its final owner group and mode before anyone can
/// reach it: it is bound inside a fresh 0700 directory, fixed up there, then hard-linked into
/// place (link never replaces an existing file, unlike rename). Avoids touching the
/// process-wide umask, which other daemon threads may depend on.
fn create_socket(
    path: &Path,
    mode: u32,
    gid: Option<u32>,
) -> Result<(UnixListener, u64, u64), ServerError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(ServerError::NoParent(parent));
    }
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(ServerError::PathTooLong(path.to_path_buf()));
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(ServerError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // Stale: a previous scrubd died without unlinking it.
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(path, "remove stale socket")(e)),
                }
            }
            Err(e) => return Err(io_err(path, "probe existing socket")(e)),
        },
        Ok(m) => {
            let ft = m.file_type();
            let what = if ft.is_file() {
                "a regular file"
            } else if ft.is_dir() {
                "a directory"
            } else if ft.is_symlink() {
                "a symbolic link"
            } else {
                "a special file"
            };
            return Err(ServerError::NotASocket {
                path: path.to_path_buf(),
                what,
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, "inspect path")(e)),
    }

    static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);
    let staging = loop {
        let n = STAGING_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!(".sc{}.{n}", std::process::id()));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => break Staging(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => continue,
            Err(e) => return Err(io_err(&parent, "create staging directory")(e)),
        }
    };
    let staged = staging.0.join("s");
    if staged.as_os_str().len() > SUN_PATH_MAX {
        return Err(ServerError::PathTooLong(path.to_path_buf()));
    }
    let listener = UnixListener::bind(&staged).map_err(io_err(path, "bind"))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(&staged, None, Some(gid))
            .map_err(io_err(path, "chown to group"))?;
    }
    fs::set_permissions(&staged, fs::Permissions::from_mode(mode))
        .map_err(io_err(path, "chmod"))?;
    fs::hard_link(&staged, path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            ServerError::InUse(path.to_path_buf())
        } else {
            io_err(path, "link socket into place")(e)
        }
    })?;
    drop(staging);
    let m = fs::symlink_metadata(path).map_err(io_err(path, "stat socket"))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err(path, "set non-blocking"))?;
    Ok((listener, m.dev(), m.ino()))
}

struct Shared {
    handler: Arc<dyn Handler>,
    policy: AccessPolicy,
    max_clients: usize,
    idle_timeout: Duration,
    write_timeout: Duration,
    active: AtomicUsize,
    /// Clones of live client streams, so `shutdown` can end their reads.
    clients: Mutex<HashMap<u64, UnixStream>>,
    next_client: AtomicU64,
}

/// The running server. Shut down explicitly or by dropping it.
pub struct Server {
    path: PathBuf,
    ident: (u64, u64),
    wake: UnixStream,
    accept: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// Validate `cfg`, create the socket and start the accept thread.
pub fn serve(cfg: ServerConfig, handler: Arc<dyn Handler>) -> Result<Server, ServerError> {
    cfg.validate()?;
    let group_gid = match &cfg.group {
        None => None,
        Some(name) => match lookup_group(name).map_err(io_err(&cfg.path, "look up group"))? {
            Some(gid) => Some(gid),
            None => return Err(ServerError::UnknownGroup(name.clone())),
        },
    };
    let mut gids = cfg.allowed_gids.clone();
    gids.extend(group_gid);
    // SAFETY: geteuid has no preconditions and cannot fail.
    let daemon_uid = unsafe { libc::geteuid() };
    let policy = AccessPolicy {
        daemon_uid,
        uids: cfg.allowed_uids.clone(),
        gids,
    };
    let (listener, dev, ino) = create_socket(&cfg.path, cfg.mode, group_gid)?;
    let shared = Arc::new(Shared {
        handler,
        policy,
        max_clients: cfg.max_clients,
        idle_timeout: cfg.idle_timeout,
        write_timeout: cfg.write_timeout,
        active: AtomicUsize::new(0),
        clients: Mutex::new(HashMap::new()),
        next_client: AtomicU64::new(0),
    });
    let unlink_on_error = |e: io::Error, op| {
        let _ = fs::remove_file(&cfg.path);
        io_err(&cfg.path, op)(e)
    };
    let WakePair { rx, tx } = WakePair::new().map_err(|e| unlink_on_error(e, "wake channel"))?;
    let sh = Arc::clone(&shared);
    let accept = thread::Builder::new()
        .name("ctl-accept".into())
        .spawn(move || accept_loop(listener, rx, sh))
        .map_err(|e| unlink_on_error(e, "spawn accept thread"))?;
    Ok(Server {
        path: cfg.path,
        ident: (dev, ino),
        wake: tx,
        accept: Some(accept),
        shared,
    })
}

impl Server {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Clients connected now.
    pub fn active_clients(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Stop accepting, unlink the socket, join the accept thread and end every client's reads.
    /// A request already being handled still gets its reply (only the read side is shut), so a
    /// `shutdown` command's own answer reaches the operator. Client threads are not joined: a
    /// handler stuck forever must not hang the daemon's exit.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        accept::signal(&mut self.wake);
        let _ = accept.join();
        // Unlink only the socket we made: a successor may already have replaced it.
        if let Ok(m) = fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.ident {
                let _ = fs::remove_file(&self.path);
            }
        }
        let clients = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for s in clients.values() {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: UnixListener, wake: UnixStream, shared: Arc<Shared>) {
    loop {
        match accept::wait(listener.as_raw_fd(), &wake) {
            Ok(Wake::Stop) => return,
            Ok(Wake::Listener) => {}
            Err(_) => {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        match listener.accept() {
            Ok((stream, _)) => admit(stream, &shared),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of descriptors and the like: back off instead of spinning on poll.
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Reply once without reading and close: used for refusals, on the accept thread, so bounded
/// by a short write timeout (one small line always fits the socket buffer anyway).
fn refuse(mut stream: UnixStream, code: ErrorCode, message: String) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = write_response(&mut stream, &error_response(None, code, message));
}

fn admit(stream: UnixStream, shared: &Arc<Shared>) {
    let _ = stream.set_nonblocking(false);
    let cred = match peer_cred(&stream) {
        Ok(c) => c,
        Err(_) => return,
    };
    if !shared.policy.check(&cred) {
        refuse(
            stream,
            ErrorCode::Unavailable,
            format!(
                "permission denied: uid {} (pid {}) may not use this control socket",
                cred.uid, cred.pid
            ),
        );
        return;
    }
    let prev = shared.active.fetch_add(1, Ordering::AcqRel);
    if prev >= shared.max_clients {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        refuse(
            stream,
            ErrorCode::Unavailable,
            format!(
                "too many control clients (max {}); try again later",
                shared.max_clients
            ),
        );
        return;
    }
    let id = shared.next_client.fetch_add(1, Ordering::Relaxed);
    let timeouts = stream
        .set_read_timeout(Some(shared.idle_timeout))
        .and_then(|()| stream.set_write_timeout(Some(shared.write_timeout)));
    let registered = timeouts.and_then(|()| stream.try_clone()).map(|clone| {
        shared
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, clone);
    });
    if registered.is_err() {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let sh = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("ctl-client-{id}"))
        .spawn(move || {
            let _slot = ClientSlot { shared: &sh, id };
            serve_client(stream, &sh);
        });
    if spawned.is_err() {
        // The closure (and its stream) was dropped; undo the registration it would have undone.
        shared
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Frees the client's slot however its thread ends.
struct ClientSlot<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.shared
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A complete line (newline stripped), or the unterminated rest before EOF.
    Full,
    Eof,
    TooLarge,
    /// Idle timeout, reset or other read error: just close.
    Gone,
}

/// Read one line into `buf` (cleared first), never holding more than `cap` bytes of it.
fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, cap: usize) -> Line {
    buf.clear();
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Line::Gone,
        };
        if avail.is_empty() {
            return if buf.is_empty() {
                Line::Eof
            } else {
                Line::Full
            };
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if buf.len().saturating_add(i) > cap {
                    return Line::TooLarge;
                }
                buf.extend_from_slice(&avail[..i]);
                r.consume(i + 1);
                return Line::Full;
            }
            None => {
                let n = avail.len();
                if buf.len().saturating_add(n) > cap {
                    return Line::TooLarge;
                }
                buf.extend_from_slice(avail);
                r.consume(n);
            }
        }
    }
}

fn serve_client(stream: UnixStream, shared: &Shared) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let mut line = Vec::new();
    loop {
        match read_line(&mut reader, &mut line, MAX_REQUEST_BYTES) {
            Line::Full => {
                if let Some(resp) = handle_line(shared.handler.as_ref(), &line) {
                    if write_response(&mut writer, &resp).is_err() {
                        return;
                    }
                }
            }
            Line::TooLarge => {
                let _ = write_response(
                    &mut writer,
                    &error_response(
                        None,
                        ErrorCode::TooLarge,
                        format!("request line longer than {MAX_REQUEST_BYTES} bytes; closing"),
                    ),
                );
                return;
            }
            Line::Eof | Line::Gone => return,
        }
    }
}

fn write_response(w: &mut UnixStream, resp: &Response) -> io::Result<()> {
    let mut out = serde_json::to_vec(resp).map_err(io::Error::other)?;
    out.push(b'\n');
    w.write_all(&out)
}

fn error_response(id: Option<u64>, code: ErrorCode, message: String) -> Response {
    Response {
        v: PROTOCOL_VERSION,
        id,
        ok: false,
        data: None,
        error: Some(ErrorBody { code, message }),
    }
}

/// Exactly what the server does with one request line: `None` for a blank line, otherwise the
/// response to send. Public so the daemon can test its handler through the real decoding.
pub fn handle_line(handler: &dyn Handler, line: &[u8]) -> Option<Response> {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(e) => {
            return Some(error_response(
                None,
                ErrorCode::BadRequest,
                format!("request is not UTF-8: {e}"),
            ))
        }
    };
    if text.is_empty() {
        return None;
    }
    let (id, cmd) = match decode(text) {
        Ok(ok) => ok,
        Err((id, code, message)) => return Some(error_response(id, code, message)),
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| handler.handle(cmd)));
    Some(match result {
        Ok(Ok(data)) => Response {
            v: PROTOCOL_VERSION,
            id,
            ok: true,
            data: Some(data),
            error: None,
        },
        Ok(Err(body)) => Response {
            v: PROTOCOL_VERSION,
            id,
            ok: false,
            data: None,
            error: Some(body),
        },
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            error_response(
                id,
                ErrorCode::Internal,
                format!("command handler panicked: {what}"),
            )
        }
    })
}

type DecodeError = (Option<u64>, ErrorCode, String);

/// Version is checked before the command so a v2 client with a v2-only command learns the
/// version is wrong, not that the command is unknown.
fn decode(text: &str) -> Result<(Option<u64>, Command), DecodeError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| (None, ErrorCode::BadRequest, format!("not JSON: {e}")))?;
    let serde_json::Value::Object(mut obj) = value else {
        return Err((
            None,
            ErrorCode::BadRequest,
            "request must be a JSON object".into(),
        ));
    };
    let id = match obj.get("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or((
            None,
            ErrorCode::BadRequest,
            "`id` must be an unsigned integer".to_string(),
        ))?),
    };
    match obj.get("v") {
        None => {
            return Err((
                id,
                ErrorCode::BadRequest,
                "missing field `v` (protocol version)".into(),
            ))
        }
        Some(v) => match v.as_u64() {
            Some(n) if n == u64::from(PROTOCOL_VERSION) => {}
            Some(n) => {
                return Err((
                    id,
                    ErrorCode::UnsupportedVersion,
                    format!(
                    "protocol version {n} is not supported; this daemon speaks v{PROTOCOL_VERSION}"
                ),
                ))
            }
            None => {
                return Err((
                    id,
                    ErrorCode::BadRequest,
                    "`v` must be an unsigned integer".into(),
                ))
            }
        },
    }
    let first = serde_json::from_value::<Request>(serde_json::Value::Object(obj.clone()));
    let first_err = match first {
        Ok(r) => return Ok((id, r.cmd)),
        Err(e) => e,
    };
    // Lenient `args`: absent means "all defaults", `{}` on an argument-less command means none.
    let alt = match obj.get("args") {
        None | Some(serde_json::Value::Null) => {
            obj.insert("args".into(), serde_json::Value::Object(Default::default()));
            Some(obj)
        }
        Some(serde_json::Value::Object(m)) if m.is_empty() => {
            obj.remove("args");
            Some(obj)
        }
        _ => None,
    };
    if let Some(alt) = alt {
        match serde_json::from_value::<Request>(serde_json::Value::Object(alt)) {
            Ok(r) => return Ok((id, r.cmd)),
            // "missing field `args`" is useless; the retry says which argument is missing.
            Err(e) if first_err.to_string().contains("`args`") => {
                return Err((id, ErrorCode::BadRequest, e.to_string()))
            }
            Err(_) => {}
        }
    }
    Err((id, ErrorCode::BadRequest, first_err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, cmd: Command) -> Result<serde_json::Value, ErrorBody> {
            match cmd {
                Command::Shutdown => panic!("boom"),
                Command::RulesReload => Err(ErrorBody {
                    code: ErrorCode::Invalid,
                    message: "rules do not compile".into(),
                }),
                other => Ok(serde_json::to_value(other).unwrap()),
            }
        }
    }

    fn reply(line: &str) -> Response {
        handle_line(&Echo, line.as_bytes()).expect("a reply")
    }

    fn code(r: &Response) -> ErrorCode {
        assert!(!r.ok);
        r.error.as_ref().unwrap().code
    }

    #[test]
    fn ok_reply_echoes_id_and_data() {
        let r = reply(r#"{"v":1,"id":42,"cmd":"block_del","args":{"prefix":"10.0.0.0/8"}}"#);
        assert!(r.ok);
        assert_eq!(r.id, Some(42));
        assert_eq!(
            r.data.unwrap(),
            serde_json::json!({"cmd":"block_del","args":{"prefix":"10.0.0.0/8"}})
        );
    }

    #[test]
    fn args_may_be_omitted_or_empty() {
        let r = reply(r#"{"v":1,"cmd":"latency"}"#);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.data.unwrap()["args"]["reset"], false);
        assert!(reply(r#"{"v":1,"cmd":"offenders","args":null}"#).ok);
        assert!(reply(r#"{"v":1,"cmd":"status","args":{}}"#).ok);
        let r = reply(r#"{"v":1,"id":3,"cmd":"block_add"}"#);
        assert_eq!(code(&r), ErrorCode::BadRequest);
        assert_eq!(r.id, Some(3));
        assert!(r.error.unwrap().message.contains("prefix"));
    }

    #[test]
    fn malformed_requests_are_bad_request_with_id_when_readable() {
        for (line, id) in [
            ("not json", None),
            ("[1,2]", None),
            (r#"{"v":1,"id":-1,"cmd":"status"}"#, None),
            (r#"{"id":5,"cmd":"status"}"#, Some(5)),
            (r#"{"v":"1","id":5,"cmd":"status"}"#, Some(5)),
            (r#"{"v":1,"id":6,"cmd":"frobnicate"}"#, Some(6)),
            (r#"{"v":1,"id":7,"cmd":"status","extra":true}"#, Some(7)),
            (
                r#"{"v":1,"id":8,"cmd":"block_del","args":{"prefix":"x","bogus":1}}"#,
                Some(8),
            ),
            (
                r#"{"v":1,"id":9,"cmd":"offenders","args":{"limit":"ten"}}"#,
                Some(9),
            ),
        ] {
            let r = reply(line);
            assert_eq!(code(&r), ErrorCode::BadRequest, "{line}");
            assert_eq!(r.id, id, "{line}");
        }
        let r = reply(r#"{"v":1,"cmd":"block_del","args":{"prefix":"x","bogus":1}}"#);
        assert!(r.error.unwrap().message.contains("bogus"));
        let r = handle_line(&Echo, b"\xff\xfe").unwrap();
        assert_eq!(code(&r), ErrorCode::BadRequest);
    }

    #[test]
    fn version_is_checked_before_command() {
        let r = reply(r#"{"v":2,"id":1,"cmd":"something_new"}"#);
        assert_eq!(code(&r), ErrorCode::UnsupportedVersion);
        assert_eq!(r.id, Some(1));
        assert_eq!(r.v, PROTOCOL_VERSION);
    }

    #[test]
    fn handler_errors_and_panics_become_responses() {
        let r = reply(r#"{"v":1,"id":2,"cmd":"rules_reload"}"#);
        assert_eq!(code(&r), ErrorCode::Invalid);
        assert_eq!(r.id, Some(2));
        let r = reply(r#"{"v":1,"id":3,"cmd":"shutdown"}"#);
        assert_eq!(code(&r), ErrorCode::Internal);
        assert!(r.error.unwrap().message.contains("boom"));
    }

    #[test]
    fn blank_lines_get_no_reply() {
        assert!(handle_line(&Echo, b"").is_none());
        assert!(handle_line(&Echo, b"  \r").is_none());
        assert!(reply("{\"v\":1,\"cmd\":\"status\"}\r").ok);
    }

    #[test]
    fn read_line_caps_and_splits() {
        let mut buf = Vec::new();
        let mut r = BufReader::with_capacity(4, Cursor::new(b"ab\ncdefgh\nxyz".to_vec()));
        assert_eq!(read_line(&mut r, &mut buf, 6), Line::Full);
        assert_eq!(buf, b"ab");
        assert_eq!(read_line(&mut r, &mut buf, 6), Line::Full);
        assert_eq!(buf, b"cdefgh");
        assert_eq!(read_line(&mut r, &mut buf, 6), Line::Full);
        assert_eq!(buf, b"xyz");
        assert_eq!(read_line(&mut r, &mut buf, 6), Line::Eof);
        let mut r = BufReader::with_capacity(4, Cursor::new(b"abcdefg\n".to_vec()));
        assert_eq!(read_line(&mut r, &mut buf, 6), Line::TooLarge);
        assert!(buf.len() <= 6);
    }

    fn policy() -> AccessPolicy {
        AccessPolicy {
            daemon_uid: 500,
            uids: vec![1001],
            gids: vec![77],
        }
    }

    fn cred(uid: u32, gid: u32) -> PeerCred {
        PeerCred { pid: 1, uid, gid }
    }

    #[test]
    fn access_policy() {
        let p = policy();
        assert!(p.allows(&cred(0, 0), &[]), "root");
        assert!(p.allows(&cred(500, 500), &[]), "daemon's own uid");
        assert!(p.allows(&cred(1001, 1001), &[]), "listed uid");
        assert!(p.allows(&cred(2000, 77), &[]), "primary group");
        assert!(p.allows(&cred(2000, 2000), &[5, 77]), "supplementary group");
        assert!(!p.allows(&cred(2000, 2000), &[5, 6]));
        assert!(!p.allows(&cred(65534, 65534), &[]));
        let closed = AccessPolicy {
            daemon_uid: 500,
            uids: vec![],
            gids: vec![],
        };
        assert!(!closed.allows(&cred(1001, 77), &[77]));
    }

    #[test]
    fn groups_line_parsing() {
        let status = "Name:\tbash\nUid:\t1\t1\t1\t1\nGroups:\t4 24 27 \nNgid:\t0\n";
        assert_eq!(parse_groups_line(status), vec![4, 24, 27]);
        assert_eq!(parse_groups_line("Groups:\n"), Vec::<u32>::new());
        assert_eq!(parse_groups_line("garbage"), Vec::<u32>::new());
    }

    #[test]
    fn config_toml_shape_and_validation() {
        let c: ServerConfig = toml::from_str(
            "path = \"/tmp/x.sock\"\nmode = 0o660\ngroup = \"root\"\nallowed_uids = [1]\nmax_clients = 4\nidle_timeout_s = 1.5\n",
        )
        .unwrap();
        assert_eq!(c.mode, 0o660);
        assert_eq!(c.idle_timeout, Duration::from_millis(1500));
        assert_eq!(c.write_timeout, ServerConfig::default().write_timeout);
        c.validate().unwrap();
        assert!(toml::from_str::<ServerConfig>("nope = 1").is_err());
        assert!(toml::from_str::<ServerConfig>("idle_timeout_s = -1").is_err());
        for (cfg, field) in [
            (
                ServerConfig {
                    mode: 0o666,
                    ..Default::default()
                },
                "mode",
            ),
            (
                ServerConfig {
                    max_clients: 0,
                    ..Default::default()
                },
                "max_clients",
            ),
            (
                ServerConfig {
                    idle_timeout: Duration::ZERO,
                    ..Default::default()
                },
                "idle_timeout_s",
            ),
            (
                ServerConfig {
                    group: Some(String::new()),
                    ..Default::default()
                },
                "group",
            ),
        ] {
            match cfg.validate() {
                Err(ServerError::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn group_lookup() {
        assert_eq!(lookup_group("root").unwrap(), Some(0));
        assert_eq!(lookup_group("no-such-group-scrubd-test").unwrap(), None);
    }
}
