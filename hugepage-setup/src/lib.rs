//! Placeholder; built out by its issue.
