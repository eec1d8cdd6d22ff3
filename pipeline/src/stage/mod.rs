//! Scrubbing stages, run in this fixed order: ACL → SYN-cookie → rate limit → signatures.
