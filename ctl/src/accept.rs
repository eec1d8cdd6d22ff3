//! Interruptible accept loops. A thread blocked in `accept(2)` cannot be woken portably by
//! closing the listener from another thread, so both servers wait in `poll(2)` on the listener
//! and on one end of a socket pair whose other end `shutdown` writes to.

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

/// What woke the accept loop.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The listener has a connection waiting (or an error to report from `accept`).
    Listener,
    /// `shutdown` was asked for.
    Stop,
}

/// The two ends of the wake channel: the loop keeps `rx`, the handle keeps `tx`.
pub(crate) struct WakePair {
    pub rx: UnixStream,
    pub tx: UnixStream,
}

impl WakePair {
    pub fn new() -> io::Result<WakePair> {
        let (rx, tx) = UnixStream::pair()?;
        Ok(WakePair { rx, tx })
    }
}

/// Tell the loop to stop; a full buffer or a loop that already ended both mean it will see it.
pub(crate) fn signal(tx: &mut UnixStream) {
    let _ = tx.set_nonblocking(true);
    let _ = tx.write(&[1]);
}

/// Block until the listener is readable or the wake end is; EINTR is retried.
pub(crate) fn wait(listener: BorrowedFd<'_>, wake: &UnixStream) -> io::Result<Wake> {
    let mut fds = [
        PollFd::new(listener, PollFlags::POLLIN),
        PollFd::new(wake.as_fd(), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        if has_events(&fds[1]) {
            return Ok(Wake::Stop);
        }
        if has_events(&fds[0]) {
            return Ok(Wake::Listener);
        }
    }
}

/// Whether `poll` reported anything for `fd`: readiness, error or hang-up alike. Bits nix does
/// not name still count.
pub(crate) fn has_events(fd: &PollFd<'_>) -> bool {
    fd.revents().is_none_or(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn signal_wakes_wait_and_connection_wakes_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        let mut pair = WakePair::new().unwrap();
        let _c = UnixStream::connect(&path).unwrap();
        assert_eq!(wait(l.as_fd(), &pair.rx).unwrap(), Wake::Listener);
        let _ = l.accept().unwrap();
        signal(&mut pair.tx);
        assert_eq!(wait(l.as_fd(), &pair.rx).unwrap(), Wake::Stop);
    }
}
