//! The wall clock, in one place so the rest can take time as a plain number (and tests
//! can pass their own), and the calendar arithmetic on such numbers. Every layer may
//! use it (docs/ARCHITECTURE.md, "Layers"), except that `repo` stays pure: it takes
//! the time as an argument and uses only the arithmetic (checked by
//! tests/testsuite/architecture.rs).

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

/// (year, month, day) in UTC of a Unix time.
pub fn civil_date(timestamp: u64) -> (i64, i64, i64) {
    let days = timestamp / 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative).
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn iso_date(timestamp: u64) -> String {
    let (year, month, day) = civil_date(timestamp);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `YYYYMMDDTHHMMSSZ` (UTC) of a Unix time: what `date -u +%Y%m%dT%H%M%SZ` prints, so
/// names made of it sort by time.
pub fn compact_utc(timestamp: u64) -> String {
    let (year, month, day) = civil_date(timestamp);
    let seconds = timestamp % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_utc_is_dates_command_format() {
        assert_eq!(compact_utc(1_700_000_000), "20231114T221320Z");
    }

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

    #[test]
    fn dates_of_unix_times() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400), (2000, 2, 29));
        assert_eq!(civil_date(4_102_444_799), (2099, 12, 31));
        assert_eq!(iso_date(1_795_000_000), "2026-11-18");
    }
}
