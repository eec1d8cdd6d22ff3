//! The composed pipeline a worker runs per packet.

use crate::verdict::Verdict;
use crate::Meta;

/// Configuration of the whole pipeline, as embedded in the daemon's TOML config.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {}

/// One worker's instance of the pipeline. Each worker owns its own, so nothing here is shared
/// or locked on the per-packet path.
pub struct Pipeline {
    _cfg: PipelineConfig,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig) -> Self {
        Pipeline { _cfg: cfg }
    }

    /// Judge one frame: `buf[..len]` is the frame, the rest of `buf` is writable room after it,
    /// so a reply may be longer than the packet it answers (a SYN-ACK with options answering a
    /// bare SYN). A [`Verdict::Reply`] carries the new length, never more than `buf.len()`.
    #[inline]
    pub fn process(&mut self, buf: &mut [u8], len: usize, _meta: &Meta) -> Verdict {
        let _frame = buf.get(..len).unwrap_or(buf);
        Verdict::Forward
    }
}
