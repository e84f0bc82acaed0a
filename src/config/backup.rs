//! `[workspace.metadata.speedy.backup]`: which PostgreSQL databases the backup package
//! dumps, when, where to, for how long, and to whose public key
//! (docs/ARCHITECTURE.md, "Database backups").
//!
//! ```toml
//! [workspace.metadata.speedy.backup]
//! databases = ["speedy"]
//! schedule = "daily"
//! bucket = "speedy-backups"
//! region = "fra1"              # another region than the repository's: off-site
//! prefix = "db"
//! retention-days = 30
//! recipient = "age1…"          # age-keygen -y speedy-backup.key
//! ```

use super::ConfigError;
use crate::calendar;
use serde::Deserialize;
use std::path::Path;

const TABLE: &str = "workspace.metadata.speedy.backup";

/// The table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BackupMetadata {
    pub databases: Option<Vec<String>>,
    pub schedule: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub prefix: Option<String>,
    pub retention_days: Option<u32>,
    pub recipient: Option<String>,
}

/// The validated backup settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    pub databases: Vec<String>,
    /// An `OnCalendar=` expression.
    pub schedule: String,
    pub bucket: String,
    pub region: String,
    /// Without a trailing `/`.
    pub endpoint: String,
    /// Without leading or trailing `/`; never empty.
    pub prefix: String,
    pub retention_days: u32,
    /// The age public key (`age1…`) every dump is encrypted to.
    pub recipient: String,
}

impl BackupMetadata {
    /// Validates the table, with systemd-analyze as the last word on the schedule where
    /// it exists (as for the jobs' schedules).
    pub fn resolve_with_systemd(&self, manifest: &Path) -> Result<BackupConfig, ConfigError> {
        self.resolve(manifest, &calendar::check_with_systemd)
    }

    /// Validates the table; `check_calendar` is the judge for `OnCalendar` values beyond
    /// the pure check (`calendar::check_with_systemd` in production).
    pub fn resolve(
        &self,
        manifest: &Path,
        check_calendar: &dyn Fn(&str) -> Option<Result<(), String>>,
    ) -> Result<BackupConfig, ConfigError> {
        let err = |key: &str, message: String| {
            ConfigError::new(manifest, format!("{TABLE}.{key}"), message)
        };
        let databases = self.databases.clone().unwrap_or_default();
        if databases.is_empty() {
            return Err(err(
                "databases",
                "no database to back up: list them, e.g. databases = [\"speedy\"]".into(),
            ));
        }
        for (index, name) in databases.iter().enumerate() {
            check_database_name(name).map_err(|why| err(&format!("databases[{index}]"), why))?;
        }
        let schedule = self.schedule.clone().unwrap_or_else(|| "daily".to_owned());
        let invalid = |why: String| {
            err(
                "schedule",
                format!("{schedule:?} is not a valid OnCalendar expression: {why}"),
            )
        };
        calendar::check(&schedule).map_err(invalid)?;
        if let Some(Err(why)) = check_calendar(&schedule) {
            return Err(invalid(why));
        }
        let bucket = self.bucket.clone().ok_or_else(|| {
            err(
                "bucket",
                "no destination bucket: backups go off the server, e.g. bucket = \"speedy-backups\" (ideally in another region than the repository)".into(),
            )
        })?;
        super::repo::check_bucket(&bucket).map_err(|why| err("bucket", why))?;
        let region = self.region.clone().unwrap_or_else(|| "nyc3".to_owned());
        super::repo::check_region(&region).map_err(|why| err("region", why))?;
        let endpoint = match &self.endpoint {
            Some(endpoint) => {
                super::check_server_url(endpoint)
                    .ok()
                    .filter(|_| endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                    .ok_or_else(|| {
                        err("endpoint", format!("{endpoint:?} is not an http(s) URL"))
                    })?;
                endpoint.trim_end_matches('/').to_owned()
            }
            None => format!("https://{region}.digitaloceanspaces.com"),
        };
        let prefix = self
            .prefix
            .clone()
            .unwrap_or_else(|| "backups".to_owned())
            .trim_matches('/')
            .to_owned();
        if prefix.is_empty() {
            return Err(err(
                "prefix",
                "must not be empty: the backups keep to their own folder of the bucket".into(),
            ));
        }
        crate::store::check_key(&prefix).map_err(|why| err("prefix", why))?;
        if let Some(bad) = prefix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_./".contains(*c)))
        {
            return Err(err(
                "prefix",
                format!("{prefix:?} contains {bad:?}: use a-z, A-Z, 0-9, '-', '_', '.' and '/'"),
            ));
        }
        let retention_days = self.retention_days.unwrap_or(30);
        if retention_days == 0 {
            return Err(err(
                "retention-days",
                "0 would delete every backup: keep them at least 1 day".into(),
            ));
        }
        let recipient = self.recipient.clone().ok_or_else(|| {
            err(
                "recipient",
                "no public key to encrypt the backups to: run `age-keygen -o backup.key` on an operator's machine (never a server), and set recipient to the public key it prints (age1…)".into(),
            )
        })?;
        check_age_recipient(&recipient).map_err(|why| err("recipient", why))?;
        Ok(BackupConfig {
            databases,
            schedule,
            bucket,
            region,
            endpoint,
            prefix,
            retention_days,
            recipient,
        })
    }
}

/// A PostgreSQL database name that is also safe as a word in a unit and an object name.
fn check_database_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a database name this backs up: 1 to 63 of a-z, A-Z, 0-9, '_' and '-', starting with a letter or '_'"
        ))
    }
}

/// An age X25519 recipient: `age1` and 58 characters of bech32's alphabet. A secret
/// key (`AGE-SECRET-KEY-1…`) here would reach every server: it is refused by name.
fn check_age_recipient(recipient: &str) -> Result<(), String> {
    const BECH32: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    if recipient
        .to_ascii_uppercase()
        .starts_with("AGE-SECRET-KEY-")
    {
        return Err("this is an age secret key: it must never reach a server or a package; give its public key (age-keygen -y FILE prints it)".into());
    }
    let valid = recipient.len() == 62
        && recipient.starts_with("age1")
        && recipient[4..].chars().all(|c| BECH32.contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{recipient:?} is not an age public key (age1 and 58 more characters, as age-keygen prints)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn full() -> BackupMetadata {
        BackupMetadata {
            databases: Some(vec!["speedy".into()]),
            bucket: Some("speedy-backups".into()),
            recipient: Some(RECIPIENT.into()),
            ..Default::default()
        }
    }

    fn resolve(metadata: &BackupMetadata) -> Result<BackupConfig, String> {
        metadata
            .resolve(Path::new("/w/Cargo.toml"), &|_| None)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_daily_thirty_days_in_nyc3() {
        let config = resolve(&full()).unwrap();
        assert_eq!(config.schedule, "daily");
        assert_eq!(config.retention_days, 30);
        assert_eq!(config.endpoint, "https://nyc3.digitaloceanspaces.com");
        assert_eq!(config.prefix, "backups");
    }

    #[test]
    fn each_mistake_names_its_key() {
        let cases: Vec<(BackupMetadata, &str, &str)> = vec![
            (BackupMetadata { databases: Some(vec![]), ..full() }, "backup.databases", "no database"),
            (BackupMetadata { databases: Some(vec!["a b".into()]), ..full() }, "backup.databases[0]", "\"a b\""),
            (BackupMetadata { schedule: Some("every day".into()), ..full() }, "backup.schedule", "OnCalendar"),
            (BackupMetadata { bucket: None, ..full() }, "backup.bucket", "no destination"),
            (BackupMetadata { bucket: Some("No_Such".into()), ..full() }, "backup.bucket", "bucket name"),
            (BackupMetadata { endpoint: Some("ftp://x".into()), ..full() }, "backup.endpoint", "http(s)"),
            (BackupMetadata { prefix: Some("/".into()), ..full() }, "backup.prefix", "empty"),
            (BackupMetadata { prefix: Some("a b".into()), ..full() }, "backup.prefix", "' '"),
            (BackupMetadata { retention_days: Some(0), ..full() }, "backup.retention-days", "at least 1 day"),
            (BackupMetadata { recipient: None, ..full() }, "backup.recipient", "age-keygen"),
            (BackupMetadata { recipient: Some("age1short".into()), ..full() }, "backup.recipient", "not an age public key"),
            (
                BackupMetadata {
                    recipient: Some("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ".into()),
                    ..full()
                },
                "backup.recipient",
                "secret key",
            ),
        ];
        for (metadata, key, words) in cases {
            let error = resolve(&metadata).unwrap_err();
            assert!(
                error.starts_with("/w/Cargo.toml: `workspace.metadata.speedy.")
                    && error.contains(key)
                    && error.contains(words),
                "{error}"
            );
            assert!(
                !error.contains("QQQQQQQQ"),
                "a secret key is never repeated: {error}"
            );
        }
    }
}
