//! The database backup package (`<short name>-backup`): a hardened systemd service and
//! timer that stream each configured database, `pg_dump -Fc`, through age (encrypted
//! to the operators' public key) and s3cmd into the backup bucket, a checksum object
//! beside each dump, and the monitoring check that watches it
//! (docs/ARCHITECTURE.md, "Database backups").
//!
//! Built like the keyring package, a function of its settings and of the workspace's
//! source time (SOURCE_DATE_EPOCH, else the last commit's): the version is
//! `<layout>.<source time>+h<hash>`, so it rises along the history (a changed setting
//! comes with a later commit) and the same commit builds the same bytes.

use super::keyring::{
    compact_time, gzip_reproducible, installed_kib, md5sums, tar_with_modes, write_deb, xz_fast,
};
use super::render::{fill, Template, HARDENING, NRPE_DIR, PLUGIN_DIR};
use super::BuildError;
use crate::config::BackupConfig;
use crate::repo::syntax;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bump whenever the package's files or control fields change shape.
const BACKUP_LAYOUT: u32 = 1;

macro_rules! backup_template {
    ($name:literal) => {
        Template {
            name: concat!("backup/", $name),
            text: include_str!(concat!("../../templates/backup/", $name)),
        }
    };
}

const SCRIPT: Template = backup_template!("backup");
const SERVICE: Template = backup_template!("backup.service");
const TIMER: Template = backup_template!("backup.timer");
const CHECK: Template = backup_template!("check");
const NRPE: Template = backup_template!("nrpe.cfg");
const POSTINST: Template = backup_template!("postinst");
const PRERM: Template = backup_template!("prerm");
const POSTRM: Template = backup_template!("postrm");

/// What the backup package is called, says and does.
#[derive(Debug, Clone)]
pub struct BackupPackage {
    pub name: String,
    pub origin: String,
    pub maintainer: String,
    pub config: BackupConfig,
}

/// A backup package built to disk.
#[derive(Debug, Clone)]
pub struct BuiltBackup {
    pub path: PathBuf,
    pub version: String,
}

/// One file of the package: where it goes, its bytes, its mode.
type PackageFile = (String, Vec<u8>, u32);

impl BackupPackage {
    /// `/etc/<package>/credentials`: the upload credential `server-setup` writes.
    pub fn credentials_path(&self) -> String {
        format!("/etc/{}/credentials", self.name)
    }

    fn vars(&self, version: &str) -> BTreeMap<&'static str, String> {
        let config = &self.config;
        BTreeMap::from([
            ("package", self.name.clone()),
            ("version", version.to_owned()),
            ("origin", self.origin.clone()),
            ("databases", config.databases.join(" ")),
            ("bucket", config.bucket.clone()),
            ("prefix", config.prefix.clone()),
            ("endpoint", config.endpoint.clone()),
            ("schedule", config.schedule.clone()),
            ("schedule_quoted", crate::shell::quote(&config.schedule)),
            ("check_label", self.name.to_ascii_uppercase()),
        ])
    }

    /// s3cmd's settings without the credential, which comes from the environment the
    /// script sets from systemd's copy of `/etc/<package>/credentials`.
    fn s3cmd_config(&self) -> String {
        let endpoint = &self.config.endpoint;
        let https = endpoint.starts_with("https://");
        let host = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default();
        // Path-style (host_bucket without %(bucket)s): works on Spaces and every
        // S3-compatible store, and with bucket names that contain dots.
        format!(
            "# s3cmd settings of {name}, rendered by cargo-speedy. The credential is not\n\
             # here: it comes from /etc/{name}/credentials through systemd.\n\
             [default]\nhost_base = {host}\nhost_bucket = {host}\nuse_https = {https}\n\
             bucket_location = {region}\nsignature_v2 = False\ncheck_ssl_certificate = True\n",
            name = self.name,
            https = if https { "True" } else { "False" },
            region = self.config.region,
        )
    }

    /// Every file of the package but the doc files, rendered for `version`.
    fn files(&self, version: &str) -> Result<Vec<PackageFile>, BuildError> {
        let mut vars = self.vars(version);
        let render = |template: &Template, vars: &BTreeMap<&str, String>| {
            fill(template, vars).map_err(|e| BuildError::Backup(e.to_string()))
        };
        let hardening = render(&HARDENING, &vars)?.trim_end().to_owned();
        vars.insert("hardening", hardening);
        // The check reads the schedule as one sh word.
        let check = render(&CHECK, &vars)?.replace(
            &format!("schedule='{}'", self.config.schedule),
            &format!("schedule={}", vars["schedule_quoted"]),
        );
        let name = &self.name;
        Ok(vec![
            (
                format!("./usr/lib/{name}/backup"),
                render(&SCRIPT, &vars)?.into_bytes(),
                0o755,
            ),
            (
                format!("./usr/lib/systemd/system/{name}.service"),
                render(&SERVICE, &vars)?.into_bytes(),
                0o644,
            ),
            (
                format!("./usr/lib/systemd/system/{name}.timer"),
                render(&TIMER, &vars)?.into_bytes(),
                0o644,
            ),
            (
                format!(".{PLUGIN_DIR}/check_{name}"),
                check.into_bytes(),
                0o755,
            ),
            (
                format!(".{NRPE_DIR}/{name}.cfg"),
                render(&NRPE, &vars)?.into_bytes(),
                0o644,
            ),
            (
                format!("./usr/share/{name}/recipients"),
                format!(
                    "# The operators' age public key: every backup is encrypted to it.\n{}\n",
                    self.config.recipient
                )
                .into_bytes(),
                0o644,
            ),
            (
                format!("./usr/share/{name}/s3cfg"),
                self.s3cmd_config().into_bytes(),
                0o644,
            ),
        ])
    }

    /// The package's version at source time `timestamp`: the layout, the time, then a
    /// hash of everything else its bytes depend on.
    pub fn version(&self, timestamp: u64) -> Result<String, BuildError> {
        let mut identity = format!(
            "{BACKUP_LAYOUT}\n{}\n{}\n{}\n",
            self.name, self.origin, self.maintainer
        )
        .into_bytes();
        for (path, bytes, mode) in self.files("")? {
            identity.extend(format!("{path} {mode:o} {}\n", bytes.len()).bytes());
            identity.extend(bytes);
        }
        let digest = format!("{:x}", Sha256::digest(identity));
        Ok(format!(
            "{BACKUP_LAYOUT}.{}+h{}",
            compact_time(timestamp),
            &digest[..16]
        ))
    }

    /// Builds the .deb into `dir` at source time `mtime` (its version and every
    /// timestamp), signed (debsigs) with `signer` when given.
    pub fn build(
        &self,
        dir: &Path,
        mtime: u64,
        signer: Option<&crate::sign::SigningKey>,
    ) -> Result<BuiltBackup, BuildError> {
        let version = self.version(mtime)?;
        let name = &self.name;
        let doc = format!("./usr/share/doc/{name}/");
        let changelog = format!(
            "{name} ({version}) unstable; urgency=medium\n\n  * Backs up {databases} to s3://{bucket}/{prefix}/ ({schedule}).\n\n -- {maintainer}  {date}\n",
            databases = self.config.databases.join(", "),
            bucket = self.config.bucket,
            prefix = self.config.prefix,
            schedule = self.config.schedule,
            maintainer = self.maintainer,
            date = syntax::rfc2822(mtime, "+0000"),
        );
        let copyright = format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: {name}\n\nFiles: *\nCopyright: {maintainer}\nLicense: public-domain\n \
             The database backup of {origin}, generated by cargo-speedy.\n",
            maintainer = self.maintainer,
            origin = self.origin,
        );
        let mut files = self.files(&version)?;
        files.push((
            format!("{doc}changelog.gz"),
            gzip(changelog.as_bytes())?,
            0o644,
        ));
        files.push((format!("{doc}copyright"), copyright.into_bytes(), 0o644));
        files.push((
            format!("./usr/share/lintian/overrides/{name}"),
            super::render::LINTIAN_OVERRIDES
                .text
                .replace("{{package}}", name)
                .into_bytes(),
            0o644,
        ));
        let mut dirs: Vec<String> = files
            .iter()
            .flat_map(|(path, _, _)| {
                let parts: Vec<&str> = path.split('/').collect();
                (1..parts.len())
                    .map(|n| format!("{}/", parts[..n].join("/")))
                    .collect::<Vec<_>>()
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        let data = tar_with_modes(&dirs, &files, mtime).map_err(BuildError::Backup)?;
        let installed_kib = installed_kib(files.iter().map(|(_, b, _)| b.as_slice()), dirs.len());
        let control = format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: {maintainer}\n\
             Installed-Size: {installed_kib}\nDepends: age, s3cmd, postgresql-client, systemd\n\
             Section: database\nPriority: optional\n\
             Description: encrypted off-site backups of the {origin} databases\n \
             A systemd timer ({schedule}) streams pg_dump of each database through\n \
             age, encrypted to the operators' public key, into s3://{bucket}/{prefix}/,\n \
             with a checksum beside each dump and a monitoring check for NRPE.\n",
            maintainer = self.maintainer,
            origin = self.origin,
            schedule = self.config.schedule,
            bucket = self.config.bucket,
            prefix = self.config.prefix,
        );
        let md5sums = md5sums(files.iter().map(|(p, b, _)| (p.as_str(), b.as_slice())));
        let vars = self.vars(&version);
        let script = |template: &Template| {
            fill(template, &vars)
                .map(String::into_bytes)
                .map_err(|e| BuildError::Backup(e.to_string()))
        };
        let control_tar = tar_with_modes(
            &["./".to_string()],
            &[
                ("./control".to_string(), control.into_bytes(), 0o644),
                ("./md5sums".to_string(), md5sums.into_bytes(), 0o644),
                (
                    "./conffiles".to_string(),
                    format!("{NRPE_DIR}/{name}.cfg\n").into_bytes(),
                    0o644,
                ),
                ("./postinst".to_string(), script(&POSTINST)?, 0o755),
                ("./prerm".to_string(), script(&PRERM)?, 0o755),
                ("./postrm".to_string(), script(&POSTRM)?, 0o755),
            ],
            mtime,
        )
        .map_err(BuildError::Backup)?;
        let deb = crate::debfile::assemble(
            &xz_fast(&control_tar).map_err(BuildError::Backup)?,
            &xz_fast(&data).map_err(BuildError::Backup)?,
            mtime,
        );
        let path = write_deb(
            dir,
            &format!("{name}_{version}_all.deb"),
            &deb,
            signer,
            mtime,
        )?;
        Ok(BuiltBackup { path, version })
    }
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, BuildError> {
    gzip_reproducible(bytes).map_err(BuildError::Backup)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn package() -> BackupPackage {
        BackupPackage {
            name: "speedy-backup".into(),
            origin: "Speedy".into(),
            maintainer: "Speedy Team <ops@speedy.example>".into(),
            config: BackupConfig {
                databases: vec!["speedy".into(), "other_db".into()],
                schedule: "*-*-* 03:15:00".into(),
                bucket: "speedy-backups".into(),
                region: "fra1".into(),
                endpoint: "https://fra1.digitaloceanspaces.com".into(),
                prefix: "db".into(),
                retention_days: 30,
                recipient: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".into(),
            },
        }
    }

    #[test]
    fn builds_are_reproducible_and_settings_change_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let a = package()
            .build(&dir.path().join("a"), 1_700_000_000, None)
            .unwrap();
        let b = package()
            .build(&dir.path().join("b"), 1_700_000_000, None)
            .unwrap();
        assert_eq!(
            std::fs::read(&a.path).unwrap(),
            std::fs::read(&b.path).unwrap()
        );
        let mut other = package();
        other.config.retention_days = 7;
        // Retention is the operator's business (a lifecycle rule), not the server's.
        assert_eq!(other.version(1_700_000_000).unwrap(), a.version);
        other.config.schedule = "hourly".into();
        assert_ne!(other.version(1_700_000_000).unwrap(), a.version);
        // A later commit orders after, whatever the hashes.
        let later = other.version(1_700_000_001).unwrap();
        assert_eq!(
            crate::repo::version::compare(&later, &a.version),
            std::cmp::Ordering::Greater,
            "{later} > {}",
            a.version
        );
        assert!(a.version.starts_with("1.20231114221320+h"), "{}", a.version);
        syntax::DebianVersion::parse(&a.version).unwrap();
    }

    #[test]
    fn rendered_files_name_their_settings_and_no_placeholder_is_left() {
        let files = package().files("1+htest").unwrap();
        for (path, bytes, _) in &files {
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(!text.contains("{{"), "{path}: {text}");
        }
        let text = |suffix: &str| {
            let (_, bytes, _) = files.iter().find(|(p, _, _)| p.ends_with(suffix)).unwrap();
            String::from_utf8(bytes.clone()).unwrap()
        };
        let script = text("/backup");
        assert!(script.contains("databases=\"speedy other_db\""), "{script}");
        assert!(
            script.contains("bucket=speedy-backups\nprefix=db\n"),
            "{script}"
        );
        assert!(text(".timer").contains("OnCalendar=*-*-* 03:15:00\n"));
        assert!(text("check_speedy-backup").contains("schedule='*-*-* 03:15:00'\n"));
        let service = text(".service");
        assert!(service.contains("LoadCredential=upload:/etc/speedy-backup/credentials\n"));
        assert!(service.contains("ProtectSystem=strict\n"), "{service}");
        assert!(text("s3cfg").contains("host_base = fra1.digitaloceanspaces.com\nhost_bucket = fra1.digitaloceanspaces.com\nuse_https = True\n"));
    }
}
