//! A packet a stage sends besides its verdict on the packet it judged.
//!
//! A verdict moves the received buffer (forward it, send it back, free it); a SYN proxy must
//! sometimes answer one packet with two (the server's SYN-ACK becomes the ACK that completes
//! the server's handshake *and* the window update that lets the client send). The second one
//! is built here, in a fixed buffer the stage owns, and the data path copies it into a fresh
//! buffer of its own (DPDK: an mbuf from the received packet's mempool) after the verdict.
//! No allocation here, and at most one such packet per judged packet, so the data path needs
//! no more room than one extra burst.

/// Largest frame a stage may emit: an IPv6 TCP segment with every option a proxy writes
/// (14 + 8 VLAN + 40 + 40 bytes) fits with room to spare.
pub const EMIT_MAX: usize = 128;

/// Where an emitted frame goes, relative to the port the judged packet arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitOut {
    /// Out of the paired port, like [`Verdict::Forward`](crate::Verdict::Forward).
    Forward,
    /// Back out of the arrival port, like [`Verdict::Reply`](crate::Verdict::Reply).
    Back,
}

/// One pending emitted frame.
#[derive(Clone, Debug)]
pub struct Emit {
    frame: [u8; EMIT_MAX],
    len: u16,
    out: EmitOut,
    pending: bool,
}

impl Default for Emit {
    fn default() -> Self {
        Emit {
            frame: [0; EMIT_MAX],
            len: 0,
            out: EmitOut::Forward,
            pending: false,
        }
    }
}

impl Emit {
    /// The buffer to build the frame in; [`Emit::ready`] then queues it.
    pub fn buf(&mut self) -> &mut [u8; EMIT_MAX] {
        &mut self.frame
    }

    /// Queues the first `len` bytes of the buffer to go `out`.
    pub fn ready(&mut self, len: usize, out: EmitOut) {
        self.len = len.min(EMIT_MAX) as u16;
        self.out = out;
        self.pending = true;
    }

    /// The queued frame, once: the caller sends it (or counts why not). Inlined: the data path
    /// asks after every packet, and nearly always the answer is a flag test saying no.
    #[inline]
    pub fn take(&mut self) -> Option<(&[u8], EmitOut)> {
        if !self.pending {
            return None;
        }
        self.pending = false;
        Some((&self.frame[..usize::from(self.len)], self.out))
    }
}
