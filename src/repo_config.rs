//! `[workspace.metadata.speedy.repo]` and `[workspace.metadata.speedy.signing]`, and
//! where the signing key comes from.
//!
//! Secrets never come from argv: the key is read from a file (`--key-file`, the
//! `key-file` setting, `SPEEDY_SIGNING_KEY_FILE`) or from the environment variable
//! `SPEEDY_SIGNING_KEY` holding the armored key (CI), the passphrase only from
//! `SPEEDY_SIGNING_PASSPHRASE`.

use crate::config::{check_timespan, parse_timespan, ConfigError, WorkspaceMetadata};
use crate::listener::Listener;
use crate::publish::PublishSettings;
use crate::repo::index::check_architecture;
use crate::repo::layout::check_suite;
use crate::repo::plan::RepoSettings;
use crate::sign::{KeyAlgorithm, KeyParams, SignError, SigningKey};
use crate::store::s3::{ChecksumMode, S3Config};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const KEY_ENV: &str = "SPEEDY_SIGNING_KEY";
pub const KEY_FILE_ENV: &str = "SPEEDY_SIGNING_KEY_FILE";
pub const PASSPHRASE_ENV: &str = "SPEEDY_SIGNING_PASSPHRASE";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RepoMetadata {
    /// The local-directory repository, relative to the workspace root.
    pub dir: Option<PathBuf>,
    pub origin: Option<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub suites: Option<Vec<String>>,
    pub default_suite: Option<String>,
    pub architectures: Option<Vec<String>>,
    pub retention: Option<usize>,
    pub grace_period: Option<String>,
    pub valid_for: Option<String>,
    /// Publish to DigitalOcean Spaces (or any S3-compatible store) instead of `dir`.
    pub spaces: Option<SpacesMetadata>,
}

/// `[workspace.metadata.speedy.repo.spaces]`. Credentials never go here: they come
/// from the environment.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SpacesMetadata {
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub prefix: Option<String>,
    /// "virtual" (bucket.endpoint) or "path" (endpoint/bucket).
    pub addressing: Option<String>,
    /// The URL servers use (the bucket's, or a CDN's), for instructions and `doctor`.
    pub public_url: Option<String>,
    /// "public-read" (default) or "private".
    pub acl: Option<String>,
    /// "when-required" (default) or "when-supported".
    pub checksums: Option<String>,
    pub multipart_threshold: Option<u64>,
    pub parallelism: Option<usize>,
}

impl SpacesMetadata {
    /// Fills the unset fields from `other`: flags over the manifest.
    pub fn or(self, other: SpacesMetadata) -> SpacesMetadata {
        SpacesMetadata {
            bucket: self.bucket.or(other.bucket),
            region: self.region.or(other.region),
            endpoint: self.endpoint.or(other.endpoint),
            prefix: self.prefix.or(other.prefix),
            addressing: self.addressing.or(other.addressing),
            public_url: self.public_url.or(other.public_url),
            acl: self.acl.or(other.acl),
            checksums: self.checksums.or(other.checksums),
            multipart_threshold: self.multipart_threshold.or(other.multipart_threshold),
            parallelism: self.parallelism.or(other.parallelism),
        }
    }
}

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Local(PathBuf),
    Spaces {
        config: S3Config,
        public_url: String,
    },
}

impl Destination {
    pub fn describe(&self) -> String {
        match self {
            Destination::Local(dir) => dir.display().to_string(),
            Destination::Spaces { config, .. } => format!(
                "s3://{}/{}",
                config.bucket,
                config.prefix.as_deref().unwrap_or("")
            ),
        }
    }

    /// The URL servers put in `URIs:`.
    pub fn public_url(&self) -> String {
        match self {
            Destination::Local(dir) => format!("file:{}", dir.display()),
            Destination::Spaces { public_url, .. } => public_url.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SigningMetadata {
    /// The armored secret key, relative to the workspace root.
    pub key_file: Option<PathBuf>,
    /// Add a debsigs `_gpgorigin` signature to every built .deb (default: yes).
    pub sign_debs: Option<bool>,
}

/// The validated repository settings.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    pub dir: PathBuf,
    pub publish: PublishSettings,
    pub default_suite: String,
    pub key_file: Option<PathBuf>,
    pub sign_debs: bool,
    /// The manifest's Spaces settings, before flags.
    pub spaces: Option<SpacesMetadata>,
    manifest: PathBuf,
}

fn check_bucket(bucket: &str) -> Result<(), String> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{bucket:?} is not a bucket name: 3 to 63 of a-z, 0-9, '-' and '.'"
        ))
    }
}

impl RepoConfig {
    /// Where to publish: `--repo-dir` wins, then a Spaces bucket (flags over the
    /// manifest), else the local directory.
    pub fn destination(
        &self,
        local_dir: Option<&Path>,
        flags: SpacesMetadata,
    ) -> Result<Destination, ConfigError> {
        if let Some(dir) = local_dir {
            return Ok(Destination::Local(dir.to_owned()));
        }
        let spaces = flags.or(self.spaces.clone().unwrap_or_default());
        let Some(bucket) = spaces.bucket.clone() else {
            return Ok(Destination::Local(self.dir.clone()));
        };
        let err = |key: &str, message: String| ConfigError {
            manifest: self.manifest.clone(),
            key: format!("workspace.metadata.speedy.repo.spaces.{key} (or --{key})"),
            message,
        };
        check_bucket(&bucket).map_err(|why| err("bucket", why))?;
        let region = spaces.region.clone().unwrap_or_else(|| "nyc3".to_owned());
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(err(
                "region",
                format!("{region:?} is not a region like \"nyc3\""),
            ));
        }
        let mut config = S3Config::spaces(&bucket, &region);
        if let Some(endpoint) = &spaces.endpoint {
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
                || endpoint.contains(char::is_whitespace)
            {
                return Err(err(
                    "endpoint",
                    format!("{endpoint:?} is not an http(s) URL"),
                ));
            }
            config.endpoint = endpoint.trim_end_matches('/').to_owned();
        }
        if let Some(prefix) = &spaces.prefix {
            let prefix = prefix.trim_matches('/');
            if !prefix.is_empty() {
                crate::repo::layout::check_key(prefix).map_err(|why| err("prefix", why))?;
                config.prefix = Some(prefix.to_owned());
            }
        }
        match spaces.addressing.as_deref() {
            None => {}
            Some("path") => config.path_style = true,
            Some("virtual") if bucket.contains('.') => {
                return Err(err(
                    "addressing",
                    "virtual-host addressing breaks TLS for bucket names with dots; use \"path\""
                        .into(),
                ))
            }
            Some("virtual") => config.path_style = false,
            Some(other) => {
                return Err(err(
                    "addressing",
                    format!("{other:?}: use \"path\" or \"virtual\""),
                ))
            }
        }
        match spaces.acl.as_deref() {
            None | Some("public-read") => config.public_read = true,
            Some("private") => config.public_read = false,
            Some(other) => {
                return Err(err(
                    "acl",
                    format!("{other:?}: use \"public-read\" or \"private\""),
                ))
            }
        }
        match spaces.checksums.as_deref() {
            None | Some("when-required") => config.checksums = ChecksumMode::WhenRequired,
            Some("when-supported") => config.checksums = ChecksumMode::WhenSupported,
            Some(other) => {
                return Err(err(
                    "checksums",
                    format!("{other:?}: use \"when-required\" or \"when-supported\""),
                ))
            }
        }
        if let Some(threshold) = spaces.multipart_threshold {
            if threshold < 5 * 1024 * 1024 {
                return Err(err(
                    "multipart-threshold",
                    "S3 parts are at least 5 MiB".into(),
                ));
            }
            config.multipart_threshold = threshold;
        }
        if let Some(parallelism) = spaces.parallelism {
            if parallelism == 0 || parallelism > 64 {
                return Err(err("parallelism", "between 1 and 64".into()));
            }
            config.parallelism = parallelism;
        }
        let prefix_path = config
            .prefix
            .as_deref()
            .map(|p| format!("{p}/"))
            .unwrap_or_default();
        let public_url = match &spaces.public_url {
            Some(url) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(err("public-url", format!("{url:?} is not an http(s) URL")));
                }
                format!("{}/", url.trim_end_matches('/'))
            }
            None if config.path_style => format!("{}/{bucket}/{prefix_path}", config.endpoint),
            None => {
                let (scheme, host) = config
                    .endpoint
                    .split_once("://")
                    .unwrap_or(("https", &config.endpoint));
                format!("{scheme}://{bucket}.{host}/{prefix_path}")
            }
        };
        Ok(Destination::Spaces { config, public_url })
    }

    pub fn resolve(
        workspace: &WorkspaceMetadata,
        root: &Path,
        root_manifest: &Path,
        target_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let repo = workspace.repo.clone().unwrap_or_default();
        let err = |key: &str, message: String| ConfigError {
            manifest: root_manifest.to_owned(),
            key: format!("workspace.metadata.speedy.repo.{key}"),
            message,
        };
        let suites = repo
            .suites
            .clone()
            .unwrap_or_else(|| vec!["dev".to_owned(), "stable".to_owned()]);
        if suites.is_empty() {
            return Err(err("suites", "name at least one suite".into()));
        }
        for (index, suite) in suites.iter().enumerate() {
            check_suite(suite).map_err(|why| err(&format!("suites[{index}]"), why))?;
        }
        let default_suite = repo
            .default_suite
            .clone()
            .unwrap_or_else(|| suites[0].clone());
        if !suites.contains(&default_suite) {
            return Err(err(
                "default-suite",
                format!(
                    "{default_suite:?} is not one of the suites ({})",
                    suites.join(", ")
                ),
            ));
        }
        let architectures = repo
            .architectures
            .clone()
            .unwrap_or_else(|| vec![crate::package::debian_architecture(None)]);
        for (index, architecture) in architectures.iter().enumerate() {
            check_architecture(architecture)
                .map_err(|why| err(&format!("architectures[{index}]"), why))?;
        }
        let retention = repo.retention.unwrap_or(5);
        if retention == 0 {
            return Err(err("retention", "keep at least 1 version".into()));
        }
        let grace = repo.grace_period.clone().unwrap_or_else(|| "1h".to_owned());
        check_timespan(&grace).map_err(|why| err("grace-period", why))?;
        let valid_for = match &repo.valid_for {
            Some(span) => Some(parse_timespan(span).map_err(|why| err("valid-for", why))?),
            None => None,
        };
        let one_line =
            |key: &str, value: &Option<String>, default: &str| -> Result<String, ConfigError> {
                let value = value.clone().unwrap_or_else(|| default.to_owned());
                if value.contains('\n') || value.trim().is_empty() {
                    return Err(err(key, "must be one non-empty line".into()));
                }
                Ok(value)
            };
        let origin = one_line("origin", &repo.origin, "Speedy")?;
        let label = one_line("label", &repo.label, &origin)?;
        if let Some(description) = &repo.description {
            one_line("description", &Some(description.clone()), "")?;
        }
        let signing = workspace.signing.clone().unwrap_or_default();
        Ok(RepoConfig {
            dir: repo
                .dir
                .map(|d| root.join(d))
                .unwrap_or_else(|| target_dir.join("speedy").join("repo")),
            publish: PublishSettings {
                repo: RepoSettings {
                    origin,
                    label,
                    description: repo.description.clone(),
                    architectures,
                },
                suites,
                retention,
                grace_seconds: parse_timespan(&grace).map_err(|why| err("grace-period", why))?,
                valid_for_seconds: valid_for,
            },
            default_suite,
            key_file: signing.key_file.map(|p| root.join(p)),
            sign_debs: signing.sign_debs.unwrap_or(true),
            spaces: repo.spaces.clone(),
            manifest: root_manifest.to_owned(),
        })
    }

    /// Where the development key lives when none is configured: beside the repository.
    pub fn dev_key_path(&self) -> PathBuf {
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into());
        self.dir
            .with_file_name(format!("{name}-dev-signing-key.asc"))
    }
}

/// Where a key came from, for messages (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Environment(&'static str),
    /// The development key beside the local repository; `generated` when made just now.
    Development {
        path: PathBuf,
        generated: bool,
    },
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "{}", path.display()),
            KeySource::Environment(name) => write!(f, "${name}"),
            KeySource::Development { path, .. } => {
                write!(f, "{} (development key)", path.display())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("cannot read the signing key {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no signing key configured: publishing to {destination} needs one. Create one with \
         `cargo speedy key generate --output KEYFILE`, then set `key-file` in [workspace.metadata.speedy.signing], \
         pass --key-file, or put the armored key in ${KEY_ENV}"
    )]
    NotConfigured { destination: String },
}

fn passphrase() -> Option<String> {
    std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty())
}

fn load_file(path: &Path) -> Result<SigningKey, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(SigningKey::from_bytes(
        &bytes,
        passphrase().as_deref(),
        &path.display().to_string(),
    )?)
}

/// Finds the signing key: `--key-file`, then `$SPEEDY_SIGNING_KEY`,
/// `$SPEEDY_SIGNING_KEY_FILE`, the `key-file` setting, and last, when `dev_key` is
/// given (a local-directory repository), a development key at that path, generated
/// if missing. `None` when there is none and no development key is allowed.
pub fn find_signing_key(
    flag: Option<&Path>,
    configured: Option<&Path>,
    dev_key: Option<&Path>,
) -> Result<Option<(SigningKey, KeySource)>, KeyError> {
    if let Some(path) = flag {
        return Ok(Some((load_file(path)?, KeySource::File(path.to_owned()))));
    }
    if let Some(armored) = std::env::var(KEY_ENV).ok().filter(|v| !v.trim().is_empty()) {
        let key = SigningKey::from_bytes(
            armored.as_bytes(),
            passphrase().as_deref(),
            &format!("${KEY_ENV}"),
        )?;
        return Ok(Some((key, KeySource::Environment(KEY_ENV))));
    }
    if let Some(path) = std::env::var_os(KEY_FILE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    {
        return Ok(Some((load_file(&path)?, KeySource::File(path))));
    }
    if let Some(path) = configured {
        return Ok(Some((load_file(path)?, KeySource::File(path.to_owned()))));
    }
    let Some(path) = dev_key else { return Ok(None) };
    if path.exists() {
        return Ok(Some((
            load_file(path)?,
            KeySource::Development {
                path: path.to_owned(),
                generated: false,
            },
        )));
    }
    let key = SigningKey::generate(&KeyParams {
        algorithm: KeyAlgorithm::Ed25519,
        user_id: "cargo-speedy development key (not for production) <dev@localhost>".to_owned(),
        passphrase: None,
        created: now(),
    })?;
    write_secret_file(path, key.to_armored()?.as_bytes())?;
    Ok(Some((
        key,
        KeySource::Development {
            path: path.to_owned(),
            generated: true,
        },
    )))
}

/// Says loudly that a development key is in use, once per command.
pub fn warn_about_dev_key(source: &KeySource, listener: &dyn Listener) {
    if let KeySource::Development { path, generated } = source {
        let made = if *generated {
            "generated a development signing key"
        } else {
            "signing with the development key"
        };
        listener.warning(&format!(
            "{made} at {}: fine for trying things locally, NOT for servers. Create a real key with \
             `cargo speedy key generate --output KEYFILE`, keep it secret, and set `key-file` in \
             [workspace.metadata.speedy.signing] (or ${KEY_ENV} in CI)",
            path.display()
        ));
    }
}

/// Writes a secret key file readable by its owner only, created that way (never
/// world-readable for an instant), via a temporary file in the same directory.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let write_error = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_error)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".speedy-key-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(write_error)?;
    temp.write_all(bytes).map_err(write_error)?;
    temp.as_file().sync_all().map_err(write_error)?;
    temp.persist_noclobber(path)
        .map_err(|e| write_error(e.error))?;
    Ok(())
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(repo: RepoMetadata) -> Result<RepoConfig, ConfigError> {
        let workspace = WorkspaceMetadata {
            repo: Some(repo),
            ..WorkspaceMetadata::default()
        };
        RepoConfig::resolve(
            &workspace,
            Path::new("/ws"),
            Path::new("/ws/Cargo.toml"),
            Path::new("/ws/target"),
        )
    }

    #[test]
    fn defaults() {
        let config = resolve(RepoMetadata::default()).unwrap();
        assert_eq!(config.dir, Path::new("/ws/target/speedy/repo"));
        assert_eq!(config.default_suite, "dev");
        assert_eq!(config.publish.suites, ["dev", "stable"]);
        assert_eq!(config.publish.retention, 5);
        assert_eq!(config.publish.grace_seconds, 3600);
        assert!(config.sign_debs);
        assert_eq!(
            config.dev_key_path(),
            Path::new("/ws/target/speedy/repo-dev-signing-key.asc")
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        let cases = [
            (
                RepoMetadata {
                    suites: Some(vec!["dev/x".into()]),
                    ..Default::default()
                },
                "repo.suites[0]",
            ),
            (
                RepoMetadata {
                    default_suite: Some("prod".into()),
                    ..Default::default()
                },
                "repo.default-suite",
            ),
            (
                RepoMetadata {
                    architectures: Some(vec!["AMD64".into()]),
                    ..Default::default()
                },
                "repo.architectures[0]",
            ),
            (
                RepoMetadata {
                    retention: Some(0),
                    ..Default::default()
                },
                "repo.retention",
            ),
            (
                RepoMetadata {
                    grace_period: Some("a while".into()),
                    ..Default::default()
                },
                "repo.grace-period",
            ),
            (
                RepoMetadata {
                    origin: Some("a\nb".into()),
                    ..Default::default()
                },
                "repo.origin",
            ),
        ];
        for (repo, key) in cases {
            let error = resolve(repo).unwrap_err();
            assert!(error.key.ends_with(key), "{error}");
            assert!(error.to_string().contains("/ws/Cargo.toml"));
        }
    }

    #[test]
    fn destinations() {
        let config = resolve(RepoMetadata::default()).unwrap();
        assert_eq!(
            config.destination(None, SpacesMetadata::default()).unwrap(),
            Destination::Local("/ws/target/speedy/repo".into())
        );
        let spaces = SpacesMetadata {
            bucket: Some("speedy-apt".into()),
            region: Some("ams3".into()),
            ..Default::default()
        };
        let Destination::Spaces {
            config: s3,
            public_url,
        } = config.destination(None, spaces.clone()).unwrap()
        else {
            panic!()
        };
        assert_eq!(s3.endpoint, "https://ams3.digitaloceanspaces.com");
        assert!(!s3.path_style && s3.public_read);
        assert_eq!(
            public_url,
            "https://speedy-apt.ams3.digitaloceanspaces.com/"
        );
        // --repo-dir wins; dotted buckets go path-style.
        assert_eq!(
            config.destination(Some(Path::new("/r")), spaces).unwrap(),
            Destination::Local("/r".into())
        );
        let dotted = SpacesMetadata {
            bucket: Some("apt.speedy.example".into()),
            prefix: Some("/debian/".into()),
            ..Default::default()
        };
        let Destination::Spaces {
            config: s3,
            public_url,
        } = config.destination(None, dotted).unwrap()
        else {
            panic!()
        };
        assert!(s3.path_style);
        assert_eq!(
            public_url,
            "https://nyc3.digitaloceanspaces.com/apt.speedy.example/debian/"
        );
        for (bad, key) in [
            (
                SpacesMetadata {
                    bucket: Some("No_Such".into()),
                    ..Default::default()
                },
                "bucket",
            ),
            (
                SpacesMetadata {
                    bucket: Some("b-b".into()),
                    endpoint: Some("ftp://x".into()),
                    ..Default::default()
                },
                "endpoint",
            ),
            (
                SpacesMetadata {
                    bucket: Some("b-b".into()),
                    acl: Some("world".into()),
                    ..Default::default()
                },
                "acl",
            ),
            (
                SpacesMetadata {
                    bucket: Some("a.b".into()),
                    addressing: Some("virtual".into()),
                    ..Default::default()
                },
                "addressing",
            ),
            (
                SpacesMetadata {
                    bucket: Some("b-b".into()),
                    checksums: Some("always".into()),
                    ..Default::default()
                },
                "checksums",
            ),
            (
                SpacesMetadata {
                    bucket: Some("b-b".into()),
                    prefix: Some("a/../b".into()),
                    ..Default::default()
                },
                "prefix",
            ),
        ] {
            let error = config.destination(None, bad).unwrap_err();
            assert!(error.key.contains(&format!("spaces.{key}")), "{error}");
        }
    }

    #[test]
    fn secret_files_are_private_and_never_clobbered() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.asc");
        write_secret_file(&path, b"secret").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(write_secret_file(&path, b"other").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
    }
}
