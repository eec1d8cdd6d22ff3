//! Scrubbing stages, run in this fixed order: ACL → FlowSpec → SYN-cookie → rate limit →
//! signatures.

pub mod acl;
pub mod flowspec;
pub mod ratelimit;
pub mod signature;
pub mod syncookie;

use crate::Verdict;

/// What one stage decided about a packet: hand it to the next stage, or settle its fate here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageResult {
    /// Not this stage's business (or allowed by it): run the later stages.
    Continue,
    /// Final: later stages are skipped.
    Done(Verdict),
}
