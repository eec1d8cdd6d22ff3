//! Scrubbing stages, run in this fixed order: ACL → SYN-cookie → rate limit → signatures.

pub mod signature;

use crate::Verdict;

/// What a stage decided about a packet: hand it on to the next stage, or settle its fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageResult {
    Continue,
    Done(Verdict),
}
