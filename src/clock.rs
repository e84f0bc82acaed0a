//! The wall clock, in one place so the rest can take time as a plain number (and tests
//! can pass their own). Every layer may use it (docs/ARCHITECTURE.md, "Layers").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in unix seconds.
pub fn now() -> u64 {
    since_epoch().as_secs()
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The longest [`wait_past_second`] sleeps: a clock that is further behind is not
/// worth stopping a publish for.
pub const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// Sleeps until the wall clock is past the whole unix second `second`, so that a file
/// written next carries a later modification second (apt's If-Modified-Since and the
/// servers answering it count whole seconds). Returns how long it slept.
pub fn wait_past_second(second: u64) -> Duration {
    let target = Duration::from_secs(second.saturating_add(1));
    let wait = target.saturating_sub(since_epoch()).min(LONGEST_WAIT);
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
    wait
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_past_a_second_ends_in_a_later_second() {
        let this_second = now();
        wait_past_second(this_second);
        assert!(now() > this_second);
        // A second long past costs nothing; one far ahead costs at most the cap.
        assert_eq!(wait_past_second(this_second - 10), Duration::ZERO);
        let started = std::time::Instant::now();
        assert_eq!(wait_past_second(this_second + 3600), LONGEST_WAIT);
        assert!(started.elapsed() >= LONGEST_WAIT);
    }
}
