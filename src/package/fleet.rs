//! The fleet package (`<short name>-fleet`): the settings every server of a suite
//! follows at once, `db`'s address and the maintenance page, as a .deb built like the
//! keyring package, whose postinst applies them
//! (docs/ARCHITECTURE.md, "Fleet switches"). apt verifies it against the signed
//! indices like any package, so a server needs no new credential and accepts no
//! connection.
//!
//! The settings travel twice: in `/usr/share/<package>/settings`, which the apply
//! script reads on the server, and in the `Speedy-Fleet` field of the control file,
//! so `fleet status` and the next change read them from the suite's Packages index
//! without fetching the .deb.

use super::keyring::{
    compact_time, gzip_reproducible, installed_kib, md5sums, tar_with_modes, write_deb, xz_fast,
};
use super::render::{self, FLEET_APPLY, LINTIAN_OVERRIDES};
use super::BuildError;
use crate::config::{DbChangeAction, Service};
use crate::repo::syntax;
use crate::sign::SigningKey;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Bump whenever the package's files or control fields change shape: its version
/// hashes this, so a cargo-speedy upgrade never republishes a version with new bytes.
const FLEET_LAYOUT: u32 = 1;
/// The control field that carries the settings into the Packages index.
pub const SETTINGS_FIELD: &str = "Speedy-Fleet";
/// The role name that means every server of the suite.
pub const EVERY_ROLE: &str = "*";
/// Longer messages are refused: the page shows it, and the monitoring check prints it
/// in one status line.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// A setting and when it was set (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Since<T> {
    pub value: T,
    pub since: u64,
}

/// What every server of a suite is told.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FleetSettings {
    /// Where `db` points; `None`: as `server-setup --db-host` left it.
    pub db: Option<Since<IpAddr>>,
    /// Role (or [`EVERY_ROLE`]) → the message of its maintenance page (may be empty).
    pub maintenance: BTreeMap<String, Since<String>>,
}

/// Why a fleet setting is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("the maintenance message {message:?} {reason}")]
    BadMessage { message: String, reason: String },
    #[error("the {field} field of {package} {version} is not fleet settings: {reason}")]
    BadRecord {
        field: &'static str,
        package: String,
        version: String,
        reason: String,
    },
}

/// The maintenance message, trimmed; refused when it could not be one line of the
/// settings file and of the monitoring check's output.
pub fn check_message(message: &str) -> Result<String, FleetError> {
    let trimmed = message.trim();
    let bad = |reason: String| FleetError::BadMessage {
        message: message.to_owned(),
        reason,
    };
    if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
        return Err(bad(format!(
            "contains the control character {c:?}: one line of printable text"
        )));
    }
    let count = trimmed.chars().count();
    if count > MAX_MESSAGE_CHARS {
        return Err(bad(format!(
            "is {count} characters long; at most {MAX_MESSAGE_CHARS}"
        )));
    }
    Ok(trimmed.to_owned())
}

impl FleetSettings {
    /// One setting a line: `db ADDRESS SINCE`, `maintenance ROLE SINCE MESSAGE`.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        if let Some(db) = &self.db {
            text.push_str(&format!("db {} {}\n", db.value, db.since));
        }
        for (role, maintenance) in &self.maintenance {
            let line = format!(
                "maintenance {role} {} {}",
                maintenance.since, maintenance.value
            );
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }

    /// The inverse of [`FleetSettings::to_text`]; `Err` names the line at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut settings = FleetSettings::default();
        for (number, line) in text.lines().enumerate() {
            let at = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
            let mut words = line.splitn(4, ' ');
            let since = |word: Option<&str>| {
                word.and_then(|w| w.parse::<u64>().ok())
                    .ok_or_else(|| at("no time"))
            };
            match words.next() {
                Some("db") => {
                    let value = words
                        .next()
                        .and_then(|w| w.parse::<IpAddr>().ok())
                        .ok_or_else(|| at("no IP address"))?;
                    let since = since(words.next())?;
                    settings.db = Some(Since { value, since });
                }
                Some("maintenance") => {
                    let role = words
                        .next()
                        .filter(|r| !r.is_empty())
                        .ok_or_else(|| at("no role"))?;
                    let since = since(words.next())?;
                    let message = words.next().unwrap_or_default();
                    let value = check_message(message).map_err(|e| at(&e.to_string()))?;
                    settings
                        .maintenance
                        .insert(role.to_owned(), Since { value, since });
                }
                Some("") | None => {}
                Some(_) => return Err(at("unknown setting")),
            }
        }
        Ok(settings)
    }

    /// The settings recorded in a Packages paragraph of the fleet package.
    pub fn from_paragraph(
        paragraph: &str,
        package: &str,
        version: &str,
    ) -> Result<Self, FleetError> {
        let mut lines = paragraph.lines();
        let prefix = format!("{SETTINGS_FIELD}:");
        let bad = |reason: String| FleetError::BadRecord {
            field: SETTINGS_FIELD,
            package: package.to_owned(),
            version: version.to_owned(),
            reason,
        };
        if !lines.any(|line| line.starts_with(&prefix)) {
            return Err(bad("missing".into()));
        }
        let text: String = lines
            .take_while(|line| line.starts_with(' '))
            .map(|line| format!("{}\n", &line[1..]))
            .collect();
        FleetSettings::parse(&text).map_err(bad)
    }

    /// The control field: its first line says the layout, one setting a continuation
    /// line (no setting starts with `.`, which Debian reads as an empty line).
    fn control_field(&self) -> String {
        let mut field = format!("{SETTINGS_FIELD}: {FLEET_LAYOUT}\n");
        for line in self.to_text().lines() {
            field.push_str(&format!(" {line}\n"));
        }
        field
    }

    /// What the maintenance page says on servers of `role`: its own entry, else the
    /// one for every role.
    pub fn maintenance_of(&self, role: &str) -> Option<&Since<String>> {
        self.maintenance
            .get(role)
            .or_else(|| self.maintenance.get(EVERY_ROLE))
    }
}

/// What the fleet package is called, and what it tells the services of the workspace.
#[derive(Debug, Clone)]
pub struct FleetPackage {
    pub name: String,
    /// The repository's `Origin`, for the description.
    pub origin: String,
    pub maintainer: String,
    /// Daemons that follow a move of `db`: unit → action.
    pub db_followers: Vec<(String, DbChangeAction)>,
    /// The maintenance flags of the daemons.
    pub maintenance_flags: Vec<String>,
}

/// The fleet package built to disk.
#[derive(Debug, Clone)]
pub struct BuiltFleet {
    pub path: PathBuf,
    pub version: String,
}

impl FleetPackage {
    /// From the workspace's services: the daemons' `on-db-change` and
    /// `maintenance-flag`.
    pub fn for_services(
        name: String,
        origin: String,
        maintainer: String,
        services: &[Service],
    ) -> Self {
        let mut db_followers = Vec::new();
        let mut maintenance_flags = Vec::new();
        for service in services {
            if service.fleet.on_db_change != DbChangeAction::None {
                db_followers.push((
                    format!("{}.service", service.deb_name),
                    service.fleet.on_db_change,
                ));
            }
            if let Some(flag) = &service.fleet.maintenance_flag {
                maintenance_flags.push(flag.clone());
            }
        }
        FleetPackage {
            name,
            origin,
            maintainer,
            db_followers,
            maintenance_flags,
        }
    }

    /// Where the settings are installed.
    pub fn settings_path(&self) -> String {
        format!("/usr/share/{}/settings", self.name)
    }

    /// Where server-setup writes the server's role, which the apply script reads.
    pub fn role_file(&self) -> String {
        role_file(&self.name)
    }

    /// The apply script's path.
    pub fn apply_path(&self) -> String {
        format!("/usr/lib/{}/apply", self.name)
    }

    /// `<time of the change>.<n>+h<hash>`: later changes sort later, `n` orders two
    /// changes in one second after `previous` (the suite's current version), and the
    /// hash of the contents keeps two suites changed in the same second from
    /// claiming one pool file with different bytes.
    pub fn version(&self, settings: &FleetSettings, now: u64, previous: Option<&str>) -> String {
        let stamp = compact_time(now);
        let sequence = previous
            .and_then(|v| v.split_once('+').map(|(base, _)| base))
            .and_then(|base| base.split_once('.'))
            .filter(|(time, _)| *time == stamp)
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        let digest = Sha256::digest(self.identity(settings).as_bytes());
        format!("{stamp}.{sequence}+h{:.12x}", HexPrefix(&digest))
    }

    fn identity(&self, settings: &FleetSettings) -> String {
        format!(
            "{}\n{}\n{}\n{:?}\n{:?}\n{FLEET_LAYOUT}\n{}",
            self.name,
            self.origin,
            self.maintainer,
            self.db_followers,
            self.maintenance_flags,
            settings.to_text()
        )
    }

    /// The apply script for these services.
    pub fn apply_script(&self) -> Result<String, BuildError> {
        let words = |items: Vec<String>| crate::shell::quote(&items.join(" "));
        let vars = BTreeMap::from([
            ("package", self.name.clone()),
            ("settings_path", crate::shell::quote(&self.settings_path())),
            ("role_file", crate::shell::quote(&self.role_file())),
            (
                "initial_db_file",
                crate::shell::quote(&initial_db_file(&self.name)),
            ),
            (
                "db_followers",
                words(
                    self.db_followers
                        .iter()
                        .map(|(unit, action)| format!("{unit}:{}", action.as_str()))
                        .collect(),
                ),
            ),
            ("maintenance_flags", words(self.maintenance_flags.clone())),
        ]);
        render::fill(&FLEET_APPLY, &vars).map_err(|e| BuildError::Fleet(e.to_string()))
    }

    /// Builds the .deb into `dir`, signed (debsigs) with `signer` when given.
    pub fn build(
        &self,
        settings: &FleetSettings,
        version: &str,
        now: u64,
        dir: &Path,
        signer: Option<&SigningKey>,
    ) -> Result<BuiltFleet, BuildError> {
        let doc = format!("./usr/share/doc/{}/", self.name);
        let share = format!("./usr/share/{}/", self.name);
        let lib = format!("./usr/lib/{}/", self.name);
        let apply = format!(".{}", self.apply_path());
        let changelog = format!(
            "{name} ({version}) unstable; urgency=medium\n\n  * The fleet settings of the {origin} repository:\n{settings}\n -- {maintainer}  {date}\n",
            name = self.name,
            origin = self.origin,
            settings = settings
                .to_text()
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>(),
            maintainer = self.maintainer,
            date = syntax::rfc2822(now, "+0000"),
        );
        let copyright = format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: {name}\n\n\
             Files: *\nCopyright: {maintainer}\nLicense: public-domain\n \
             The fleet settings of the {origin} apt repository, generated by cargo-speedy.\n",
            name = self.name,
            maintainer = self.maintainer,
            origin = self.origin,
        );
        let files: Vec<(String, Vec<u8>)> = vec![
            (
                format!(".{}", self.settings_path()),
                settings.to_text().into_bytes(),
            ),
            (apply.clone(), self.apply_script()?.into_bytes()),
            (
                format!("{doc}changelog.gz"),
                gzip_reproducible(changelog.as_bytes()).map_err(BuildError::Fleet)?,
            ),
            (format!("{doc}copyright"), copyright.into_bytes()),
            (
                format!("./usr/share/lintian/overrides/{}", self.name),
                format!(
                    "{}# The settings, for `cargo speedy fleet status` to read from the index.\n\
                     {}: unknown-field {SETTINGS_FIELD}\n",
                    LINTIAN_OVERRIDES.text.replace("{{package}}", &self.name),
                    self.name
                )
                .into_bytes(),
            ),
        ];
        let dirs = [
            "./".to_string(),
            "./usr/".to_string(),
            "./usr/lib/".to_string(),
            lib,
            "./usr/share/".to_string(),
            share,
            "./usr/share/doc/".to_string(),
            doc,
            "./usr/share/lintian/".to_string(),
            "./usr/share/lintian/overrides/".to_string(),
        ];
        let modes: Vec<(String, Vec<u8>, u32)> = files
            .iter()
            .map(|(path, bytes)| {
                let mode = if *path == apply { 0o755 } else { 0o644 };
                (path.clone(), bytes.clone(), mode)
            })
            .collect();
        let data = tar_with_modes(&dirs, &modes, now).map_err(BuildError::Fleet)?;
        let installed_kib = installed_kib(files.iter().map(|(_, b)| b.as_slice()), dirs.len());
        let control = format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: {maintainer}\n\
             Installed-Size: {installed_kib}\nSection: admin\nPriority: optional\n\
             {field}Description: fleet settings of the {origin} apt repository\n \
             Where the host name db points and whether the maintenance page is on,\n \
             for every server that follows this suite (cargo speedy fleet). Its\n \
             postinst applies them.\n",
            name = self.name,
            maintainer = self.maintainer,
            origin = self.origin,
            field = settings.control_field(),
        );
        let postinst = format!(
            "#!/bin/sh\n# {name}: apply the fleet settings (cargo speedy fleet).\nset -e\n\
             if [ \"$1\" = configure ]; then\n    {apply}\nfi\n",
            name = self.name,
            apply = self.apply_path(),
        );
        let prerm = format!(
            "#!/bin/sh\n# {name}: a rollback to before the suite's first switch removes this package:\n\
             # back to what server-setup set.\nset -e\n\
             if [ \"$1\" = remove ]; then\n    {apply} --initial\nfi\n",
            name = self.name,
            apply = self.apply_path(),
        );
        let md5sums = md5sums(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
        let control_tar = tar_with_modes(
            &["./".to_string()],
            &[
                ("./control".to_string(), control.into_bytes(), 0o644),
                ("./md5sums".to_string(), md5sums.into_bytes(), 0o644),
                ("./postinst".to_string(), postinst.into_bytes(), 0o755),
                ("./prerm".to_string(), prerm.into_bytes(), 0o755),
            ],
            now,
        )
        .map_err(BuildError::Fleet)?;
        let deb = crate::debfile::assemble(
            &xz_fast(&control_tar).map_err(BuildError::Fleet)?,
            &xz_fast(&data).map_err(BuildError::Fleet)?,
            now,
        );
        let path = write_deb(
            dir,
            &format!("{}_{version}_all.deb", self.name),
            &deb,
            signer,
            now,
        )?;
        Ok(BuiltFleet {
            path,
            version: version.to_owned(),
        })
    }
}

/// `/etc/<fleet package>/db-host`: server-setup's `--db-host`, where `db` points
/// again when the suite has no fleet switch any more.
pub fn initial_db_file(fleet_package: &str) -> String {
    format!("/etc/{fleet_package}/db-host")
}

/// `/etc/<fleet package>/role`: the role server-setup gave this server.
pub fn role_file(fleet_package: &str) -> String {
    format!("/etc/{fleet_package}/role")
}

/// Formats the first bytes of a digest as hex, for `{:.N x}`-style truncation.
struct HexPrefix<'a>(&'a [u8]);

impl std::fmt::LowerHex for HexPrefix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        let width = f.precision().unwrap_or(hex.len()).min(hex.len());
        f.write_str(&hex[..width])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package() -> FleetPackage {
        FleetPackage {
            name: "speedy-fleet".into(),
            origin: "Speedy".into(),
            maintainer: "Speedy Team <ops@speedy.example>".into(),
            db_followers: vec![("speedy-app.service".into(), DbChangeAction::Reload)],
            maintenance_flags: vec!["/var/lib/speedy/app/maintenance".into()],
        }
    }

    fn settings() -> FleetSettings {
        FleetSettings {
            db: Some(Since {
                value: "127.0.0.7".parse().unwrap(),
                since: 1_765_000_000,
            }),
            maintenance: BTreeMap::from([
                (
                    "*".into(),
                    Since {
                        value: "Back at 14:00".into(),
                        since: 1_765_000_100,
                    },
                ),
                (
                    "web".into(),
                    Since {
                        value: String::new(),
                        since: 1_765_000_200,
                    },
                ),
            ]),
        }
    }

    #[test]
    fn settings_round_trip_through_the_file_and_the_control_field() {
        let settings = settings();
        assert_eq!(
            settings.to_text(),
            "db 127.0.0.7 1765000000\nmaintenance * 1765000100 Back at 14:00\nmaintenance web 1765000200\n"
        );
        assert_eq!(FleetSettings::parse(&settings.to_text()).unwrap(), settings);
        let paragraph = format!(
            "Package: speedy-fleet\nVersion: 1\n{}Description: x\n y\nFilename: pool/x",
            settings.control_field()
        );
        assert_eq!(
            FleetSettings::from_paragraph(&paragraph, "speedy-fleet", "1").unwrap(),
            settings
        );
        assert_eq!(settings.maintenance_of("web").unwrap().value, "");
        assert_eq!(
            settings.maintenance_of("worker").unwrap().value,
            "Back at 14:00"
        );
        let error = FleetSettings::from_paragraph("Package: speedy-fleet\n", "speedy-fleet", "1")
            .unwrap_err();
        assert!(error.to_string().contains("Speedy-Fleet field"), "{error}");
        for bad in [
            "db nonsense 1",
            "db 127.0.0.1",
            "maintenance",
            "colour red 1",
        ] {
            assert!(FleetSettings::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_are_one_line_of_bounded_length() {
        assert_eq!(check_message("  Back at 14:00 ").unwrap(), "Back at 14:00");
        assert_eq!(
            check_message("Zurück um 14 Uhr").unwrap(),
            "Zurück um 14 Uhr"
        );
        assert!(check_message("two\nlines").is_err());
        assert!(check_message("tab\there").is_err());
        let long = "x".repeat(MAX_MESSAGE_CHARS + 1);
        assert!(check_message(&long)
            .unwrap_err()
            .to_string()
            .contains("at most 200"));
    }

    #[test]
    fn versions_rise_and_two_changes_in_one_second_are_ordered() {
        let pkg = package();
        let first = pkg.version(&settings(), 1_765_000_000, None);
        assert!(first.starts_with("20251206054640.0+h"), "{first}");
        let same_second = pkg.version(&FleetSettings::default(), 1_765_000_000, Some(&first));
        assert!(
            same_second.starts_with("20251206054640.1+h"),
            "{same_second}"
        );
        let later = pkg.version(&settings(), 1_765_000_001, Some(&same_second));
        for (newer, older) in [(&same_second, &first), (&later, &same_second)] {
            assert_eq!(
                crate::repo::version::compare(newer, older),
                std::cmp::Ordering::Greater,
                "{newer} > {older}"
            );
        }
        syntax::DebianVersion::parse(&later).unwrap();
    }

    #[test]
    fn builds_are_reproducible_and_carry_the_settings() {
        let pkg = package();
        let dir = tempfile::tempdir().unwrap();
        let version = pkg.version(&settings(), 1_765_000_000, None);
        let a = pkg
            .build(
                &settings(),
                &version,
                1_765_000_000,
                &dir.path().join("a"),
                None,
            )
            .unwrap();
        let b = pkg
            .build(
                &settings(),
                &version,
                1_765_000_000,
                &dir.path().join("b"),
                None,
            )
            .unwrap();
        let bytes = std::fs::read(&a.path).unwrap();
        assert_eq!(bytes, std::fs::read(&b.path).unwrap());
        let script = pkg.apply_script().unwrap();
        assert!(
            script.contains("db_followers=speedy-app.service:reload\n"),
            "{script}"
        );
        assert!(script.contains("maintenance_flags=/var/lib/speedy/app/maintenance\n"));
        assert!(script.contains("role_file=/etc/speedy-fleet/role\n"));
    }
}
