//! `backup list`, `backup restore`, `backup prune`: the operator's side of the database
//! backups the backup package makes on the servers
//! (docs/ARCHITECTURE.md, "Database backups"). The operator's credential may read and
//! delete; a server's key is for its uploads, and nothing here runs on a server.
//! Decrypting needs the operator's age key, which never goes to a server.

use super::{CommandError, RepoTarget};
use crate::config::{BackupConfig, ConfigError};
use crate::listener::Listener;
use crate::store::s3::{Credentials, S3Config, S3Store};
use crate::store::Store;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The suffix of a dump object; its checksum is the same key with `.sha256`.
const DUMP_SUFFIX: &str = ".pgdump.age";
const CHECKSUM_SUFFIX: &str = ".sha256";
/// Where the operator's age identity (secret key) file is named.
pub const IDENTITY_FILE_VAR: &str = "SPEEDY_BACKUP_IDENTITY_FILE";

/// Why a backup command failed; each message names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{manifest}: no [workspace.metadata.speedy.backup] table: backups are not configured (docs/reference.md, \"Backups\")")]
    NotConfigured { manifest: String },
    #[error("no backup named {name:?} in s3://{bucket}/{prefix}/ (`cargo speedy backup list` shows them)")]
    NoSuchBackup {
        name: String,
        bucket: String,
        prefix: String,
    },
    #[error("s3://{bucket}/{prefix}/ holds no complete backup (one with its checksum object)")]
    NoBackupYet { bucket: String, prefix: String },
    #[error(
        "{key} has no checksum object beside it: its run did not finish, so it is not restored"
    )]
    Unfinished { key: String },
    #[error("{key}: the checksum does not match (object {actual}, {key}{CHECKSUM_SUFFIX} says {expected}): the object is damaged or was replaced")]
    ChecksumMismatch {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("the backup upload credential (SPEEDY_BACKUP_ACCESS_KEY_ID) cannot write to {location}: {cause}. Check that the bucket exists and that the key may write to it")]
    UploadCredential { location: String, cause: String },
    #[error("set {IDENTITY_FILE_VAR} to the file of the age key the backups are encrypted to (the secret key stays on the operator's machine)")]
    NoIdentity,
    #[error("{what} failed: {message}")]
    Tool { what: String, message: String },
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

impl From<BackupError> for CommandError {
    fn from(error: BackupError) -> Self {
        CommandError::Backup(Box::new(error))
    }
}

/// One backup in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupEntry {
    /// The object's key, relative to the bucket: what `restore NAME` takes.
    pub key: String,
    pub database: String,
    /// `YYYYMMDDTHHMMSSZ`, UTC: when the run started.
    pub time: String,
    pub host: String,
    pub size: u64,
    /// Whether the checksum object is there: without it the run did not finish.
    pub complete: bool,
}

/// The backup settings and the store of the backup bucket.
struct Backups {
    config: BackupConfig,
    store: Box<dyn Store>,
}

fn open(target: &RepoTarget, listener: &dyn Listener) -> Result<Backups, CommandError> {
    let settings = target.settings()?;
    let workspace = settings.workspace.as_ref().ok_or_else(|| {
        CommandError::Config(ConfigError::new(
            Path::new("Cargo.toml"),
            "workspace.metadata.speedy.backup",
            "backup commands need the workspace that configures them: pass --manifest-path",
        ))
    })?;
    let package = settings
        .backup_package()?
        .ok_or_else(|| BackupError::NotConfigured {
            manifest: workspace.root_manifest.display().to_string(),
        })?;
    let config = package.config.clone();
    let store: Box<dyn Store> = Box::new(super::open_s3(&s3_config(&config), listener)?);
    Ok(Backups { config, store })
}

/// What `backup setup` did to the bucket.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupSetupReport {
    pub bucket: String,
    pub prefix: String,
    pub versioning: bool,
    pub retention_days: u32,
}

/// `cargo speedy backup setup`, with the operator's credential: versioning on (an
/// overwrite or a plain delete by a server's key keeps the earlier version) and a
/// lifecycle rule that expires the backups, and the versions they replaced, after
/// `retention-days`. The one rule replaces the bucket's lifecycle: the backup bucket
/// is the backups' alone.
pub fn backup_setup(
    target: &RepoTarget,
    listener: &dyn Listener,
) -> Result<BackupSetupReport, CommandError> {
    let settings = target.settings()?;
    let package = settings
        .backup_package()?
        .ok_or_else(|| BackupError::NotConfigured {
            manifest: settings
                .workspace
                .as_ref()
                .map(|w| w.root_manifest.display().to_string())
                .unwrap_or_else(|| "Cargo.toml".to_owned()),
        })?;
    let config = package.config;
    let store = super::open_s3(&s3_config(&config), listener)?;
    store.enable_versioning()?;
    listener.info(&format!("Versioning on for s3://{}", config.bucket));
    let days = i32::try_from(config.retention_days).unwrap_or(i32::MAX);
    store.set_expiration_rule(
        &format!("{}-retention", package.name),
        &format!("{}/", config.prefix),
        days,
    )?;
    listener.info(&format!(
        "Lifecycle: s3://{}/{}/ expires after {} days, replaced versions too",
        config.bucket, config.prefix, config.retention_days
    ));
    Ok(BackupSetupReport {
        bucket: config.bucket,
        prefix: config.prefix,
        versioning: true,
        retention_days: config.retention_days,
    })
}

/// Writes a small object under the prefix with the server's upload credential and
/// deletes it again (a Spaces `readwrite` key may): a key without write access, or a
/// bucket that does not exist, is refused at `server-setup` rather than found out by
/// the first backup. The secret stays in memory; the message names the bucket only.
pub(super) fn check_upload_credential(
    config: &BackupConfig,
    key_id: &str,
    secret: &str,
    listener: &dyn Listener,
) -> Result<(), CommandError> {
    let mut s3 = s3_config(config);
    // An answer, not a long retry: server-setup waits for it.
    s3.retry_deadline = std::time::Duration::from_secs(15);
    let store = S3Store::new(s3, Credentials::new(key_id, secret))?;
    let probe = format!("{}/.speedy-write-check", config.prefix);
    let options = crate::store::PutOptions {
        content_type: "text/plain",
        caching: crate::store::Caching::Short,
        public: false,
    };
    store
        .put(
            &probe,
            crate::store::Body::Bytes(b"server-setup write check\n"),
            &options,
        )
        .map_err(|error| BackupError::UploadCredential {
            location: format!("s3://{}/{}/", config.bucket, config.prefix),
            cause: error.to_string(),
        })?;
    // A key that may write but not delete leaves the probe: harmless, and not a backup.
    let _ = store.delete(&probe);
    listener.detail(&format!(
        "the backup credential writes to s3://{}/{}/",
        config.bucket, config.prefix
    ));
    Ok(())
}

/// The backup bucket, path-style, private.
fn s3_config(config: &BackupConfig) -> S3Config {
    let mut s3 = S3Config::spaces(&config.bucket, &config.region);
    s3.endpoint = config.endpoint.clone();
    s3.path_style = true;
    s3.public_read = false;
    s3
}

/// Reads `<prefix>/<database>/<time>-<host>.pgdump.age`; anything else is not ours.
fn parse_entry(prefix: &str, key: &str, size: u64) -> Option<BackupEntry> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let (database, file) = rest.split_once('/')?;
    let stem = file.strip_suffix(DUMP_SUFFIX)?;
    let (time, host) = stem.split_once('-')?;
    let valid_time = time.len() == 16 && time.as_bytes()[8] == b'T' && time.ends_with('Z');
    valid_time.then(|| BackupEntry {
        key: key.to_owned(),
        database: database.to_owned(),
        time: time.to_owned(),
        host: host.to_owned(),
        size,
        complete: false,
    })
}

impl Backups {
    /// Every backup, oldest first.
    fn entries(&self) -> Result<Vec<BackupEntry>, CommandError> {
        let prefix = &self.config.prefix;
        let objects = self.store.list(&format!("{prefix}/"))?;
        let checksums: std::collections::BTreeSet<&str> = objects
            .iter()
            .filter_map(|o| o.key.strip_suffix(CHECKSUM_SUFFIX))
            .collect();
        let mut entries: Vec<BackupEntry> = objects
            .iter()
            .filter_map(|o| parse_entry(prefix, &o.key, o.size))
            .map(|mut entry| {
                entry.complete = checksums.contains(entry.key.as_str());
                entry
            })
            .collect();
        entries.sort_by(|a, b| (&a.time, &a.database, &a.key).cmp(&(&b.time, &b.database, &b.key)));
        Ok(entries)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupList {
    pub location: String,
    pub entries: Vec<BackupEntry>,
}

/// `cargo speedy backup list`.
pub fn backup_list(
    target: &RepoTarget,
    listener: &dyn Listener,
) -> Result<BackupList, CommandError> {
    let backups = open(target, listener)?;
    Ok(BackupList {
        location: format!("s3://{}/{}/", backups.config.bucket, backups.config.prefix),
        entries: backups.entries()?,
    })
}

/// Which backup to restore, and where to.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub target: RepoTarget,
    /// A key as `backup list` shows it; `None` is the newest complete one.
    pub name: Option<String>,
    /// With `latest`, the newest of this database (default: the only or first
    /// configured one).
    pub database: Option<String>,
    pub destination: RestoreDestination,
}

#[derive(Debug, Clone)]
pub enum RestoreDestination {
    /// The decrypted custom-format dump, for `pg_restore` later (0600).
    File(PathBuf),
    /// A `postgres://` URL `pg_restore` restores into.
    Database(String),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    pub key: String,
    pub size: u64,
    pub sha256: String,
    pub into: String,
}

/// `cargo speedy backup restore`: fetch, verify the checksum, decrypt with the
/// operator's key, write a file or restore into a database.
pub fn backup_restore(
    options: &RestoreOptions,
    listener: &dyn Listener,
) -> Result<Restored, CommandError> {
    let identity = std::env::var_os(IDENTITY_FILE_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or(BackupError::NoIdentity)?;
    if !identity.is_file() {
        return Err(BackupError::Io {
            path: identity,
            cause: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{IDENTITY_FILE_VAR} names no file"),
            ),
        }
        .into());
    }
    let backups = open(&options.target, listener)?;
    let config = &backups.config;
    let entries = backups.entries()?;
    let entry = match &options.name {
        Some(name) => entries
            .iter()
            .find(|e| &e.key == name || e.key.ends_with(&format!("/{name}")))
            .ok_or_else(|| BackupError::NoSuchBackup {
                name: name.clone(),
                bucket: config.bucket.clone(),
                prefix: config.prefix.clone(),
            })?,
        None => {
            let database = options
                .database
                .clone()
                .unwrap_or_else(|| config.databases[0].clone());
            entries
                .iter()
                .rev()
                .find(|e| e.complete && e.database == database)
                .ok_or_else(|| BackupError::NoBackupYet {
                    bucket: config.bucket.clone(),
                    prefix: format!("{}/{database}", config.prefix),
                })?
        }
    };
    let checksum_key = format!("{}{CHECKSUM_SUFFIX}", entry.key);
    let expected = backups
        .store
        .get(&checksum_key)?
        .ok_or_else(|| BackupError::Unfinished {
            key: entry.key.clone(),
        })?;
    let expected = String::from_utf8_lossy(&expected)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    listener.info(&format!("Fetching {} ({} bytes)", entry.key, entry.size));
    let ciphertext = backups
        .store
        .get(&entry.key)?
        .ok_or_else(|| BackupError::NoSuchBackup {
            name: entry.key.clone(),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
        })?;
    let actual = format!("{:x}", Sha256::digest(&ciphertext));
    if actual != expected {
        return Err(BackupError::ChecksumMismatch {
            key: entry.key.clone(),
            expected,
            actual,
        }
        .into());
    }
    let into = match &options.destination {
        RestoreDestination::File(path) => {
            decrypt_to_file(&identity, &ciphertext, path)?;
            path.display().to_string()
        }
        RestoreDestination::Database(url) => {
            decrypt_into_database(&identity, &ciphertext, url)?;
            redact_url(url)
        }
    };
    Ok(Restored {
        key: entry.key.clone(),
        size: entry.size,
        sha256: actual,
        into,
    })
}

/// `age --decrypt`, the ciphertext on its standard input from a thread, its output to
/// `stdout`. The identity file's path is on age's command line, the key is not.
fn age_decrypt(
    identity: &Path,
    ciphertext: &[u8],
    stdout: Stdio,
) -> Result<std::process::Child, BackupError> {
    let tool = |message: String| BackupError::Tool {
        what: "age --decrypt".into(),
        message,
    };
    let mut age = Command::new("age")
        .arg("--decrypt")
        .arg("--identity")
        .arg(identity)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            tool(format!(
                "cannot run age ({e}): install it (Debian's package `age`)"
            ))
        })?;
    let mut stdin = age
        .stdin
        .take()
        .ok_or_else(|| tool("no standard input".into()))?;
    let bytes = ciphertext.to_vec();
    std::thread::spawn(move || {
        // A write error is age having stopped; its exit status says why.
        let _ = stdin.write_all(&bytes);
    });
    Ok(age)
}

fn finished(child: std::process::Child, what: &str) -> Result<(), BackupError> {
    let output = child.wait_with_output().map_err(|e| BackupError::Tool {
        what: what.into(),
        message: e.to_string(),
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(BackupError::Tool {
            what: what.into(),
            message: format!(
                "{} ({})",
                String::from_utf8_lossy(&output.stderr).trim(),
                output.status
            ),
        })
    }
}

fn decrypt_to_file(identity: &Path, ciphertext: &[u8], path: &Path) -> Result<(), BackupError> {
    let io = |cause| BackupError::Io {
        path: path.to_owned(),
        cause,
    };
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let age = age_decrypt(identity, ciphertext, Stdio::from(file))?;
    finished(age, "age --decrypt")
}

fn decrypt_into_database(identity: &Path, ciphertext: &[u8], url: &str) -> Result<(), BackupError> {
    let mut age = age_decrypt(identity, ciphertext, Stdio::piped())?;
    let plaintext = age.stdout.take().ok_or_else(|| BackupError::Tool {
        what: "age --decrypt".into(),
        message: "no standard output".into(),
    })?;
    let restore = Command::new("pg_restore")
        .args(["--no-owner", "--no-privileges", "--exit-on-error"])
        .arg(format!("--dbname={url}"))
        .stdin(Stdio::from(plaintext))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BackupError::Tool {
            what: "pg_restore".into(),
            message: format!("cannot run pg_restore ({e}): install postgresql-client"),
        })?;
    let decrypted = finished(age, "age --decrypt");
    finished(restore, &format!("pg_restore into {}", redact_url(url)))?;
    decrypted
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) => {
                let user = user.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Pruned {
    pub deleted: Vec<String>,
    pub kept: usize,
    pub retention_days: u32,
}

/// `cargo speedy backup prune`: deletes backups older than the retention, with the
/// operator's credential (from CI), never the newest complete one of a database.
pub fn backup_prune(
    target: &RepoTarget,
    now: u64,
    dry_run: bool,
    listener: &dyn Listener,
) -> Result<Pruned, CommandError> {
    let backups = open(target, listener)?;
    let retention = u64::from(backups.config.retention_days) * 86_400;
    let entries = backups.entries()?;
    let cutoff = crate::clock::compact_utc(now.saturating_sub(retention));
    let newest: std::collections::BTreeMap<&str, &str> = entries
        .iter()
        .filter(|e| e.complete)
        .map(|e| (e.database.as_str(), e.key.as_str()))
        .collect();
    let mut deleted = Vec::new();
    let mut kept = 0;
    for entry in &entries {
        let expired =
            entry.time < cutoff && newest.get(entry.database.as_str()) != Some(&entry.key.as_str());
        if !expired {
            kept += 1;
            continue;
        }
        if !dry_run {
            backups
                .store
                .delete(&format!("{}{CHECKSUM_SUFFIX}", entry.key))?;
            backups.store.delete(&entry.key)?;
        }
        listener.detail(&format!("deleted {}", entry.key));
        deleted.push(entry.key.clone());
    }
    Ok(Pruned {
        deleted,
        kept,
        retention_days: backups.config.retention_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_from_their_keys_and_nothing_else_does() {
        let entry = parse_entry("db", "db/speedy/20261206T031500Z-web-1.pgdump.age", 10).unwrap();
        assert_eq!(entry.database, "speedy");
        assert_eq!(entry.time, "20261206T031500Z");
        assert_eq!(entry.host, "web-1");
        for other in [
            "db/speedy/20261206T031500Z-web-1.pgdump.age.sha256",
            "db/speedy/notes.txt",
            "dbx/speedy/20261206T031500Z-web-1.pgdump.age",
            "db/20261206T031500Z-web-1.pgdump.age",
        ] {
            assert_eq!(parse_entry("db", other, 1), None, "{other}");
        }
    }

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/d"),
            "postgres://u@h:5432/d"
        );
        assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
    }
}
