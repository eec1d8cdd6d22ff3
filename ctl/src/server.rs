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
//! - Privileged peers (root and the daemon's own uid) always get in, so a runaway script or an
//!   attacker holding connections open cannot lock the operator out: they have
//!   [`RESERVED_PRIVILEGED`] slots beyond `max_clients`, and when those are taken too, the client
//!   that has waited longest for its next request is closed (with an `unavailable` line) to
//!   make room. A client in the middle of a command is never closed for this.
//! - Deadlines cover a whole request and a whole reply, not one `read(2)`/`write(2)`, so a peer
//!   trickling a byte at a time gains nothing: a client that has not sent a complete request
//!   line within `idle_timeout_s` of connecting or of its previous reply, or that has not taken
//!   a whole reply within `write_timeout_s` of its first byte being written, is closed without
//!   a reply.
//! - Refusals and closings for room are logged on stderr (the daemon's log), at most one line
//!   a second with a count of the ones left out, so a peer hammering the socket cannot flood it.

use crate::accept::{self, Wake, WakePair};
use crate::protocol::{
    Command, ErrorBody, ErrorCode, Request, Response, MAX_REQUEST_BYTES, PROTOCOL_VERSION,
};
use nix::sys::socket::{getsockopt, sockopt};
use nix::unistd::{geteuid, Group};
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
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
    /// Clients served at once; each holds a thread. Privileged peers have
    /// [`RESERVED_PRIVILEGED`] more.
    pub max_clients: usize,
    /// A client that has not sent a complete request line this long after connecting or after
    /// its previous reply is disconnected (however many bytes of it trickled in).
    #[serde(rename = "idle_timeout_s", deserialize_with = "de_secs")]
    pub idle_timeout: Duration,
    /// A client that has not taken a whole reply this long after it started is disconnected.
    #[serde(rename = "write_timeout_s", deserialize_with = "de_secs")]
    pub write_timeout: Duration,
}

pub const DEFAULT_SOCKET_PATH: &str = "/run/scrubd/scrubd.sock";

/// Slots beyond `max_clients` that only root and the daemon's own uid may take, so the operator
/// gets in while unprivileged clients fill the others.
pub const RESERVED_PRIVILEGED: usize = 1;

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
    let cred = getsockopt(s, sockopt::PeerCredentials)?;
    Ok(PeerCred {
        pid: cred.pid(),
        uid: cred.uid(),
        gid: cred.gid(),
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
    if name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "group name contains NUL",
        ));
    }
    // getgrnam_r, retried with a larger buffer while it reports ERANGE.
    Ok(Group::from_name(name)?.map(|g| g.gid.as_raw()))
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
    /// Every admitted client, so `shutdown` can end their reads and a privileged peer can make
    /// room. An entry is a slot: admitting, closing for room and a client's exit all change the
    /// map under its lock, so the count and the choice of whom to close never disagree.
    clients: Mutex<HashMap<u64, ClientEntry>>,
    next_client: AtomicU64,
    log: PeerLog,
}

struct ClientEntry {
    /// A clone of the client's stream.
    stream: UnixStream,
    cred: PeerCred,
    /// When it started waiting for its next request; `None` while a command runs or its reply
    /// is written (such a client is never closed to make room).
    waiting_since: Option<Instant>,
}

impl Shared {
    fn clients(&self) -> MutexGuard<'_, HashMap<u64, ClientEntry>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark client `id` as waiting for a request (`true`) or busy (`false`). `false` back: it
    /// was closed to make room, and must stop without running anything more.
    fn set_waiting(&self, id: u64, waiting: bool) -> bool {
        match self.clients().get_mut(&id) {
            Some(e) => {
                e.waiting_since = waiting.then(Instant::now);
                true
            }
            None => false,
        }
    }
}

/// Stderr notes about refused and closed peers, at most one a second: the daemon logs to
/// stderr, and a peer that connects in a loop must not flood it.
struct PeerLog {
    /// When the last line was printed, and how many were left out since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl PeerLog {
    const EVERY: Duration = Duration::from_secs(1);

    fn new() -> PeerLog {
        PeerLog {
            state: Mutex::new((None, 0)),
        }
    }

    fn note(&self, msg: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if st.0.is_some_and(|t| now.duration_since(t) < Self::EVERY) {
            st.1 = st.1.saturating_add(1);
            return;
        }
        match std::mem::take(&mut st.1) {
            0 => log::warn!("control socket: {msg}"),
            n => log::warn!("control socket: {msg} ({n} similar left out)"),
        }
        st.0 = Some(now);
    }
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
    let daemon_uid = geteuid().as_raw();
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
        clients: Mutex::new(HashMap::new()),
        next_client: AtomicU64::new(0),
        log: PeerLog::new(),
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
        self.shared.clients().len()
    }

    /// Clients waiting for their next request now (the others are inside a command); the
    /// ones a privileged peer may displace.
    pub fn waiting_clients(&self) -> usize {
        self.shared
            .clients()
            .values()
            .filter(|e| e.waiting_since.is_some())
            .count()
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
        for e in self.shared.clients().values() {
            let _ = e.stream.shutdown(std::net::Shutdown::Read);
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
        match accept::wait(listener.as_fd(), &wake) {
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
/// by a short deadline (one small line always fits the socket buffer anyway).
fn refuse(mut stream: UnixStream, code: ErrorCode, message: String) {
    let _ = write_response(
        &mut stream,
        &error_response(None, code, message),
        Duration::from_secs(1),
    );
}

/// Root and the daemon's own uid: the operator, who must always get in.
fn privileged(policy: &AccessPolicy, cred: &PeerCred) -> bool {
    cred.uid == 0 || cred.uid == policy.daemon_uid
}

/// Where a peer that passed the access check goes.
#[derive(Debug, PartialEq, Eq)]
enum Room {
    /// A free slot (for a privileged peer, possibly a reserved one).
    Free,
    /// Client `id` was chosen to be closed: it has waited longest for its next request.
    Made { id: u64 },
    /// Nothing free and nobody to close.
    Full,
}

/// The slot decision, apart from the sockets so it can be tested on its own: `waiting` holds
/// each client's id and when it started waiting for a request (`None`: in a command).
fn find_room(
    clients: usize,
    max_clients: usize,
    privileged: bool,
    waiting: impl Iterator<Item = (u64, Option<Instant>)>,
) -> Room {
    if clients < max_clients
        || (privileged && clients < max_clients.saturating_add(RESERVED_PRIVILEGED))
    {
        return Room::Free;
    }
    if !privileged {
        return Room::Full;
    }
    waiting
        .filter_map(|(id, since)| since.map(|t| (t, id)))
        .min()
        .map_or(Room::Full, |(_, id)| Room::Made { id })
}

fn admit(stream: UnixStream, shared: &Arc<Shared>) {
    let _ = stream.set_nonblocking(false);
    let cred = match peer_cred(&stream) {
        Ok(c) => c,
        Err(_) => return,
    };
    if !shared.policy.check(&cred) {
        shared.log.note(&format!(
            "refused uid {} (pid {}): not allowed",
            cred.uid, cred.pid
        ));
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
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let is_privileged = privileged(&shared.policy, &cred);
    let id = shared.next_client.fetch_add(1, Ordering::Relaxed);
    let mut clients = shared.clients();
    let room = find_room(
        clients.len(),
        shared.max_clients,
        is_privileged,
        clients.iter().map(|(id, e)| (*id, e.waiting_since)),
    );
    let closed = match room {
        Room::Free => None,
        Room::Made { id } => clients.remove(&id),
        Room::Full => {
            let in_use = clients.len();
            drop(clients);
            shared.log.note(&format!(
                "refused uid {} (pid {}): too many clients ({in_use} connected)",
                cred.uid, cred.pid
            ));
            let message = if is_privileged {
                format!(
                    "too many control clients (max {} + {RESERVED_PRIVILEGED} reserved), all \
                     running commands; try again shortly",
                    shared.max_clients
                )
            } else {
                format!(
                    "too many control clients (max {}); try again later",
                    shared.max_clients
                )
            };
            refuse(stream, ErrorCode::Unavailable, message);
            return;
        }
    };
    clients.insert(
        id,
        ClientEntry {
            stream: clone,
            cred,
            waiting_since: Some(Instant::now()),
        },
    );
    drop(clients);
    if let Some(old) = closed {
        close_for_room(old, &cred, &shared.log);
    }
    let sh = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("ctl-client-{id}"))
        .spawn(move || {
            let _slot = ClientSlot { shared: &sh, id };
            serve_client(stream, &sh, id);
        });
    if spawned.is_err() {
        // The closure (and its stream) was dropped; undo the registration it would have undone.
        shared.clients().remove(&id);
    }
}

/// Tell a client it is closed to make room for `newcomer`, and close it. Its thread is in a
/// read (or about to check in) and ends on its own; its slot already went to the newcomer.
fn close_for_room(old: ClientEntry, newcomer: &PeerCred, log: &PeerLog) {
    let waited = old
        .waiting_since
        .map_or(Duration::ZERO, |t| t.elapsed())
        .as_secs_f64();
    log.note(&format!(
        "closed uid {} (pid {}), idle {waited:.1} s, to make room for uid {} (pid {})",
        old.cred.uid, old.cred.pid, newcomer.uid, newcomer.pid
    ));
    let mut s = old.stream;
    // Best effort and never blocking: this runs on the accept thread.
    let _ = s.set_nonblocking(true);
    if let Ok(line) = encode(&error_response(
        None,
        ErrorCode::Unavailable,
        format!(
            "closed after {waited:.0} s without a request to make room for a privileged client \
             (uid {})",
            newcomer.uid
        ),
    )) {
        let _ = s.write(&line);
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// Frees the client's slot however its thread ends (unless it was already given away).
struct ClientSlot<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.shared.clients().remove(&self.id);
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
/// `arm` runs before every read that reaches the socket (not when the buffer still holds
/// bytes): it sets what is left of the request's deadline as the read timeout, and `false`
/// from it (deadline passed) ends the line as `Gone`.
fn read_line<R: io::Read>(
    r: &mut BufReader<R>,
    buf: &mut Vec<u8>,
    cap: usize,
    arm: &mut dyn FnMut() -> bool,
) -> Line {
    buf.clear();
    loop {
        if r.buffer().is_empty() && !arm() {
            return Line::Gone;
        }
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

fn serve_client(stream: UnixStream, shared: &Shared, id: u64) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let mut line = Vec::new();
    loop {
        if !shared.set_waiting(id, true) {
            return;
        }
        let deadline = Instant::now() + shared.idle_timeout;
        // The timeout belongs to the socket, so setting it through the writer's clone arms the
        // reader too.
        let sock = &writer;
        let mut arm = || {
            let left = deadline.saturating_duration_since(Instant::now());
            !left.is_zero() && sock.set_read_timeout(Some(left)).is_ok()
        };
        let got = read_line(&mut reader, &mut line, MAX_REQUEST_BYTES, &mut arm);
        // Closed to make room while the line arrived: it runs nothing more.
        if !shared.set_waiting(id, false) {
            return;
        }
        match got {
            Line::Full => {
                if let Some(resp) = handle_line(shared.handler.as_ref(), &line) {
                    if write_response(&mut writer, &resp, shared.write_timeout).is_err() {
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
                    shared.write_timeout,
                );
                return;
            }
            Line::Eof | Line::Gone => return,
        }
    }
}

fn encode(resp: &Response) -> io::Result<Vec<u8>> {
    let mut out = serde_json::to_vec(resp).map_err(io::Error::other)?;
    out.push(b'\n');
    Ok(out)
}

/// Write one reply line whole within `limit` of starting, however the peer paces its reads:
/// the timeout is re-armed with what is left before each `write(2)` (`write_all` under a fixed
/// per-call timeout restarts it with every partial write, so a slow reader could stretch it).
fn write_response(w: &mut UnixStream, resp: &Response, limit: Duration) -> io::Result<()> {
    let out = encode(resp)?;
    write_within(w, &out, Instant::now() + limit)
}

fn write_within(w: &mut UnixStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        w.set_write_timeout(Some(left))?;
        match w.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
        assert_eq!(read_line(&mut r, &mut buf, 6, &mut || true), Line::Full);
        assert_eq!(buf, b"ab");
        assert_eq!(read_line(&mut r, &mut buf, 6, &mut || true), Line::Full);
        assert_eq!(buf, b"cdefgh");
        assert_eq!(read_line(&mut r, &mut buf, 6, &mut || true), Line::Full);
        assert_eq!(buf, b"xyz");
        assert_eq!(read_line(&mut r, &mut buf, 6, &mut || true), Line::Eof);
        let mut r = BufReader::with_capacity(4, Cursor::new(b"abcdefg\n".to_vec()));
        assert_eq!(read_line(&mut r, &mut buf, 6, &mut || true), Line::TooLarge);
        assert!(buf.len() <= 6);
    }

    /// The deadline is checked before every read that reaches the socket, and only then: bytes
    /// already buffered are still parsed after it passed.
    #[test]
    fn read_line_stops_when_the_deadline_is_gone() {
        let mut buf = Vec::new();
        let mut reads = 0;
        let mut r = BufReader::with_capacity(
            4,
            Cursor::new(
                b"abcdef
xy
"
                .to_vec(),
            ),
        );
        let mut arm = || {
            reads += 1;
            reads <= 1
        };
        // First fill allowed (4 bytes), the second one refused mid-line.
        assert_eq!(read_line(&mut r, &mut buf, 64, &mut arm), Line::Gone);
        assert_eq!(reads, 2);
        let mut r = BufReader::with_capacity(
            16,
            Cursor::new(
                b"ab
cd
"
                .to_vec(),
            ),
        );
        assert_eq!(read_line(&mut r, &mut buf, 64, &mut || true), Line::Full);
        assert_eq!(read_line(&mut r, &mut buf, 64, &mut || false), Line::Full);
        assert_eq!(buf, b"cd");
    }

    #[test]
    fn room_for_privileged_peers() {
        let t0 = Instant::now();
        let t = |s| Some(t0 + Duration::from_secs(s));
        let none = || std::iter::empty();
        // Below the cap anyone gets in; at the cap only privileged peers, into the reserve.
        assert_eq!(find_room(3, 4, false, none()), Room::Free);
        assert_eq!(find_room(4, 4, false, none()), Room::Full);
        assert_eq!(find_room(4, 4, true, none()), Room::Free);
        assert_eq!(
            find_room(4 + RESERVED_PRIVILEGED - 1, 4, true, none()),
            Room::Free
        );
        // Reserve used up too: the client waiting longest is closed, never one in a command.
        let full = 4 + RESERVED_PRIVILEGED;
        let clients = [(7, t(5)), (8, None), (9, t(2)), (10, t(9))];
        assert_eq!(
            find_room(full, 4, true, clients.into_iter()),
            Room::Made { id: 9 }
        );
        assert_eq!(find_room(full, 4, false, clients.into_iter()), Room::Full);
        assert_eq!(
            find_room(full, 4, true, [(1, None), (2, None)].into_iter()),
            Room::Full
        );
    }

    /// One reply, however the reader paces itself, gets `limit` in all: here the reader takes
    /// a little every 100 ms (each partial write resets a per-call timeout), and the writer
    /// still gives up at the deadline.
    #[test]
    fn write_deadline_covers_the_whole_reply() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            let mut total = 0usize;
            b.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                thread::sleep(Duration::from_millis(100));
                match io::Read::read(&mut b, &mut chunk) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(_) => {}
                }
            }
            total
        });
        let big = vec![b'x'; 64 << 20];
        let start = Instant::now();
        let r = write_within(&mut a, &big, start + Duration::from_millis(500));
        let took = start.elapsed();
        assert!(r.is_err());
        // Bounded by the deadline, not by (partial writes) x (timeout): generous upper bound.
        assert!(took < Duration::from_millis(1500), "{took:?}");
        drop(a);
        assert!(reader.join().unwrap() < big.len());
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
