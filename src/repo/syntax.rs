//! Debian's syntax rules: package names and versions (Debian Policy 5.6.1 and
//! 5.6.12), architecture names, and the RFC 2822 dates of Release files and changelogs.
//!
//! Pure functions: they say whether a string is acceptable and, if not, why in words
//! a user can act on. How versions *order* is `version`'s concern; the .deb file
//! format is `crate::debfile`'s; building a .deb is `crate::package`'s.

/// Checks a binary package name: at least two characters, lower-case letters, digits
/// and `+ - .`, starting with a letter or digit.
pub fn check_package_name(name: &str) -> Result<(), String> {
    if name.len() < 2 {
        return Err("a Debian package name needs at least two characters".into());
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err("a Debian package name must start with a lower-case letter or a digit".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')))
    {
        return Err(format!(
            "a Debian package name may only contain a-z, 0-9, '+', '-' and '.', not {bad:?}"
        ));
    }
    Ok(())
}

/// The parts of a Debian version `[epoch:]upstream[-revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianVersion {
    pub epoch: Option<u32>,
    pub upstream: String,
    pub revision: Option<String>,
}

impl DebianVersion {
    /// Parses and validates a full Debian version string.
    pub fn parse(version: &str) -> Result<Self, String> {
        if version.is_empty() {
            return Err("the version is empty".into());
        }
        if let Some(c) = version.chars().find(|c| c.is_whitespace()) {
            return Err(format!(
                "a Debian version may not contain white space ({c:?})"
            ));
        }
        let (epoch, rest) = match version.split_once(':') {
            Some((epoch, rest)) => {
                if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("the epoch {epoch:?} must be a number"));
                }
                let value = epoch
                    .parse::<u32>()
                    .map_err(|_| format!("the epoch {epoch:?} is too large"))?;
                (Some(value), rest)
            }
            None => (None, version),
        };
        // The revision is everything after the last hyphen.
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((upstream, revision)) => (upstream, Some(revision)),
            None => (rest, None),
        };
        check_upstream(upstream, revision.is_some(), epoch.is_some())?;
        if let Some(revision) = revision {
            check_revision(revision)?;
        }
        Ok(DebianVersion {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.map(str::to_owned),
        })
    }

    /// The version as it appears in a .deb file name: without the epoch, because
    /// a colon is awkward in file names and URLs (dpkg-name does the same).
    pub fn without_epoch(&self) -> String {
        match &self.revision {
            Some(revision) => format!("{}-{}", self.upstream, revision),
            None => self.upstream.clone(),
        }
    }
}

impl std::fmt::Display for DebianVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(epoch) = self.epoch {
            write!(f, "{epoch}:")?;
        }
        f.write_str(&self.without_epoch())
    }
}

fn check_upstream(upstream: &str, has_revision: bool, has_epoch: bool) -> Result<(), String> {
    let Some(first) = upstream.chars().next() else {
        return Err("the upstream part of the version is empty".into());
    };
    if !first.is_ascii_digit() {
        return Err(format!(
            "the upstream version {upstream:?} must start with a digit"
        ));
    }
    for c in upstream.chars() {
        let allowed = c.is_ascii_alphanumeric()
            || matches!(c, '.' | '+' | '~')
            || (c == '-' && has_revision)
            || (c == ':' && has_epoch);
        if !allowed {
            return Err(format!(
                "the upstream version {upstream:?} may only contain A-Z a-z 0-9 . + ~ (and - only with a revision), not {c:?}"
            ));
        }
    }
    Ok(())
}

pub fn check_revision(revision: &str) -> Result<(), String> {
    if revision.is_empty() {
        return Err("the Debian revision after '-' is empty".into());
    }
    if let Some(c) = revision
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~')))
    {
        return Err(format!(
            "the Debian revision {revision:?} may only contain A-Z a-z 0-9 . + ~, not {c:?}"
        ));
    }
    Ok(())
}

/// An RFC 2822 date in UTC as Debian's files want it: `zone` is "+0000" for
/// debian/changelog and "UTC" for Release files.
pub fn rfc2822(timestamp: u64, zone: &str) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = timestamp / 86_400;
    let seconds = timestamp % 86_400;
    let (year, month, day) = civil_date(timestamp);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} {zone}",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

pub use crate::clock::civil_date;

/// Maps a Cargo (semver) version to a Debian upstream version so that Debian's
/// ordering agrees with semver's: a pre-release sorts before its release, which in
/// Debian needs `~` (`1.4.0-beta.1` becomes `1.4.0~beta.1`).
pub fn upstream_from_semver(version: &str) -> String {
    let (without_build, build) = match version.split_once('+') {
        Some((v, b)) => (v, Some(b)),
        None => (version, None),
    };
    let mut upstream = match without_build.split_once('-') {
        Some((release, pre)) => format!("{release}~{pre}"),
        None => without_build.to_owned(),
    };
    if let Some(build) = build {
        upstream.push('+');
        upstream.push_str(build);
    }
    upstream.replace('-', ".")
}

/// Debian's name for the architecture of a Rust target (the host's when `None`).
pub fn architecture(target: Option<&str>) -> String {
    let arch = match target {
        Some(triple) => triple.split('-').next().unwrap_or(triple),
        None => std::env::consts::ARCH,
    };
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i586" | "i686" => "i386",
        "powerpc64le" | "powerpc64" if target.is_none_or(|t| t.contains("le")) => "ppc64el",
        "riscv64" | "riscv64gc" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        a if a.starts_with("armv7")
            || (a.starts_with("arm") && target.is_some_and(|t| t.ends_with("hf"))) =>
        {
            "armhf"
        }
        a if a.starts_with("arm") => "armel",
        other => other,
    }
    .to_owned()
}

/// The architecture of the machine running cargo speedy, in Debian's words.
pub fn host_architecture() -> String {
    architecture(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures() {
        assert_eq!(architecture(Some("x86_64-unknown-linux-gnu")), "amd64");
        assert_eq!(architecture(Some("aarch64-unknown-linux-musl")), "arm64");
        assert_eq!(architecture(Some("armv7-unknown-linux-gnueabihf")), "armhf");
        assert_eq!(architecture(Some("arm-unknown-linux-gnueabi")), "armel");
        assert_eq!(architecture(Some("i686-unknown-linux-gnu")), "i386");
    }

    #[test]
    fn package_names() {
        for good in ["speedy-app", "a0", "lib+x", "x.y", "0ad"] {
            assert_eq!(check_package_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a",
            "Speedy",
            "speedy_app",
            "-x",
            ".x",
            "speedy app",
            "späti",
        ] {
            assert!(check_package_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_accepted() {
        let v = DebianVersion::parse("1.4.0-1").unwrap();
        assert_eq!(v.upstream, "1.4.0");
        assert_eq!(v.revision.as_deref(), Some("1"));
        assert_eq!(v.epoch, None);
        let v = DebianVersion::parse("2:1.4.0~beta.1-0+deb12u1").unwrap();
        assert_eq!(v.epoch, Some(2));
        assert_eq!(v.upstream, "1.4.0~beta.1");
        assert_eq!(v.revision.as_deref(), Some("0+deb12u1"));
        assert_eq!(v.without_epoch(), "1.4.0~beta.1-0+deb12u1");
        assert_eq!(v.to_string(), "2:1.4.0~beta.1-0+deb12u1");
        // A hyphen in upstream is allowed when a revision follows.
        let v = DebianVersion::parse("1.0-rc1-3").unwrap();
        assert_eq!(v.upstream, "1.0-rc1");
        assert_eq!(v.revision.as_deref(), Some("3"));
        assert_eq!(DebianVersion::parse("7").unwrap().revision, None);
    }

    #[test]
    fn versions_refused() {
        for bad in [
            "",
            "a1.0-1",
            "1.0-",
            "-1",
            "1.0_1-1",
            "1.0-1_2",
            "x:1.0-1",
            ":1.0",
            "1.0 -1",
            "1.0-1/2",
            "99999999999:1-1",
            "1.0:2-1",
        ] {
            assert!(
                DebianVersion::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc2822(0, "+0000"), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(951_782_400, "UTC"), "Tue, 29 Feb 2000 00:00:00 UTC");
        assert_eq!(
            rfc2822(1_795_884_483, "+0000"),
            "Sat, 28 Nov 2026 16:48:03 +0000"
        );
    }

    #[test]
    fn semver_mapping_keeps_ordering_words() {
        assert_eq!(upstream_from_semver("1.4.0"), "1.4.0");
        assert_eq!(upstream_from_semver("1.4.0-beta.1"), "1.4.0~beta.1");
        assert_eq!(upstream_from_semver("1.4.0-rc-1"), "1.4.0~rc.1");
        assert_eq!(upstream_from_semver("1.4.0+git.abc"), "1.4.0+git.abc");
        assert_eq!(upstream_from_semver("1.4.0-alpha+b7"), "1.4.0~alpha+b7");
        for v in ["1.4.0", "1.4.0-beta.1", "1.4.0-rc-1", "1.4.0+git.abc"] {
            let full = format!("{}-1", upstream_from_semver(v));
            assert!(DebianVersion::parse(&full).is_ok(), "{full}");
        }
    }
}
