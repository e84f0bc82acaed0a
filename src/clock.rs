//! The wall clock, in one place so the rest can take time as a plain number (and tests
//! can pass their own).

/// Now, in unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
