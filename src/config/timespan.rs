//! systemd time spans (systemd.time(7)) such as `5min`, `30s`, `1h 30min`, `2weeks`,
//! `1month`: parsed by `humantime`, which knows the same unit names, plus systemd's
//! rule that a bare number is seconds.

/// A time span in whole seconds (sub-second parts round down).
pub fn parse_timespan(span: &str) -> Result<u64, String> {
    let span = span.trim();
    if span.is_empty() {
        return Err("the time span is empty".into());
    }
    if span.bytes().all(|b| b.is_ascii_digit()) {
        return span.parse().map_err(|_| format!("{span:?} is too large"));
    }
    humantime::parse_duration(span)
        .map(|duration| duration.as_secs())
        .map_err(|why| format!("{span:?} is not a time span like \"5min\" or \"1h 30min\": {why}"))
}

pub fn check_timespan(span: &str) -> Result<(), String> {
    parse_timespan(span).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespan_seconds() {
        assert_eq!(parse_timespan("1h 30min"), Ok(5400));
        assert_eq!(parse_timespan("1h30min"), Ok(5400));
        assert_eq!(parse_timespan("0"), Ok(0));
        assert_eq!(parse_timespan("90"), Ok(90));
        assert_eq!(parse_timespan("2d"), Ok(172_800));
        assert_eq!(parse_timespan("2weeks"), Ok(1_209_600));
        assert_eq!(parse_timespan("500ms"), Ok(0));
        // systemd.time(7): a year is 365.25 days.
        assert_eq!(parse_timespan("1y"), Ok(31_557_600));
        assert!(parse_timespan("1month").is_ok_and(|s| (2_629_000..2_631_000).contains(&s)));
    }

    #[test]
    fn bad_timespans_are_refused() {
        for bad in [
            "",
            " ",
            "soon",
            "5 parsecs",
            "min",
            "99999999999999999999999",
            "-5s",
        ] {
            assert!(check_timespan(bad).is_err(), "{bad}");
        }
    }
}
