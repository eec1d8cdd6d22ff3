//! Scrubbing stages, run in this fixed order: ACL → SYN-cookie → rate limit → signatures.

pub mod acl;
pub mod ratelimit;

use crate::verdict::Verdict;

/// What a stage decided about one packet: hand it to the next stage, or stop with a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageResult {
    Continue,
    Done(Verdict),
}
