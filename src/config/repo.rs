//! `[workspace.metadata.speedy.repo]` (and `.repo.spaces`): where the apt repository
//! lives and what shapes it, validated into a [`RepoConfig`] and a [`RepoLocation`].

use super::timespan::parse_timespan;
use super::{ConfigError, WorkspaceMetadata};
use crate::repo::index::check_architecture;
use crate::repo::layout::check_suite;
use crate::repo::plan::ReleaseFields;
use crate::store::s3::{ChecksumMode, S3Config};
use serde::Deserialize;
use std::path::{Path, PathBuf};

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
    /// How long the publish lock stays valid without renewal.
    pub lock_lease: Option<String>,
    /// How many changes of each suite are recorded for `history` and `rollback`.
    pub history: Option<usize>,
    pub valid_for: Option<String>,
    /// How many requests run at once: a publish's uploads (pool files, by-hash
    /// copies), `verify`'s reads.
    pub jobs: Option<usize>,
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
    /// How long a failing request is retried before the publish gives up (a time
    /// span, default 2min).
    pub retry_deadline: Option<String>,
    /// How long one attempt of a request may go unanswered before it is abandoned and
    /// retried (a time span, default 30s; uploads get more, by their size).
    pub attempt_timeout: Option<String>,
    /// The DigitalOcean CDN endpoint in front of the bucket: publishes purge what they
    /// changed from its cache (docs/ARCHITECTURE.md, "CDN purge").
    pub cdn_endpoint_id: Option<String>,
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
            retry_deadline: self.retry_deadline.or(other.retry_deadline),
            attempt_timeout: self.attempt_timeout.or(other.attempt_timeout),
            cdn_endpoint_id: self.cdn_endpoint_id.or(other.cdn_endpoint_id),
        }
    }
}

/// Where a repository lives.
// One value per command: boxing the S3 settings would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    Local(PathBuf),
    Spaces {
        config: S3Config,
        public_url: String,
        /// The CDN endpoint whose cache a publish purges.
        cdn_endpoint_id: Option<String>,
    },
}

impl RepoLocation {
    pub fn describe(&self) -> String {
        match self {
            RepoLocation::Local(dir) => dir.display().to_string(),
            RepoLocation::Spaces { config, .. } => format!(
                "s3://{}/{}",
                config.bucket,
                config.prefix.as_deref().unwrap_or("")
            ),
        }
    }

    /// The URL anyone reads the published objects at (anonymously, over HTTP).
    pub fn public_url(&self) -> String {
        match self {
            RepoLocation::Local(dir) => format!("file:{}", file_url_path(dir)),
            RepoLocation::Spaces { public_url, .. } => public_url.clone(),
        }
    }

    /// Whether the bucket's objects are private (`acl = "private"`): servers then read
    /// through the authenticated transport (docs/ARCHITECTURE.md, "Private repositories").
    pub fn is_private(&self) -> bool {
        matches!(self, RepoLocation::Spaces { config, .. } if !config.public_read)
    }

    /// The URL servers put in `URIs:`: the public one, or for a private repository
    /// the authenticated transport's `speedy-s3://BUCKET/PREFIX/`.
    pub fn server_url(&self) -> String {
        match self {
            RepoLocation::Spaces { config, .. } if !config.public_read => {
                let prefix = config
                    .prefix
                    .as_deref()
                    .map(|p| format!("{p}/"))
                    .unwrap_or_default();
                format!("{PRIVATE_TRANSPORT_SCHEME}://{}/{prefix}", config.bucket)
            }
            _ => self.public_url(),
        }
    }
}

/// The URI scheme of the apt method that reads a private repository
/// (docs/ARCHITECTURE.md, "Private repositories").
pub const PRIVATE_TRANSPORT_SCHEME: &str = "speedy-s3";

/// The validated repository settings.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// The local-directory repository (the embedded default destination).
    pub dir: PathBuf,
    /// What the Release files say about the archive.
    pub release: ReleaseFields,
    /// The suites this repository may have.
    pub suites: Vec<String>,
    pub default_suite: String,
    /// Versions kept per package and architecture.
    pub retention: usize,
    /// How long unreferenced pool files and by-hash copies are kept.
    pub grace_seconds: u64,
    /// How long the publish lock stays valid without renewal: a publisher that died
    /// blocks others this long at most.
    pub lock_lease_seconds: u64,
    /// Changes recorded per suite; their packages are kept from garbage collection.
    pub history: usize,
    /// Valid-Until = Date + this, when set.
    pub valid_for_seconds: Option<u64>,
    /// Requests in flight at once: uploads (pool files, by-hash copies), `verify`'s
    /// reads.
    pub jobs: usize,
    /// The manifest's Spaces settings, before flags.
    pub spaces: Option<SpacesMetadata>,
    manifest: PathBuf,
}

/// What the command line says about the destination; wins over the manifest.
#[derive(Debug, Clone, Default)]
pub struct RepoOverrides {
    /// `--repo-dir`: a local directory, which wins over a configured bucket.
    pub dir: Option<PathBuf>,
    /// `--bucket`, `--region`, ...: each wins over its manifest key.
    pub spaces: SpacesMetadata,
}

/// Spaces settings that only the manifest sets (no command-line flag).
const FLAGLESS_SPACES_KEYS: [&str; 5] = [
    "multipart-threshold",
    "parallelism",
    "retry-deadline",
    "attempt-timeout",
    "cdn-endpoint-id",
];

/// A path as the path of a `file:` URL: every byte but the unreserved ones and `/`
/// percent-encoded, which apt decodes, so a space or a quote in a directory name
/// cannot split the URL or end a value.
fn file_url_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The URL servers put in `URIs:` of a deb822 source, and `server-setup` in a root
/// script: an `http`, `https` or `file` URL (what apt's built-in methods read) with no
/// whitespace or control character, since a space would give apt two URIs and a
/// newline another line of the file.
pub fn check_server_url(url: &str) -> Result<(), String> {
    if let Some(bad) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{url:?} is not a URL servers can use: it contains {bad:?} (no whitespace or control characters)"
        ));
    }
    let (scheme, rest) = url.split_once(':').unwrap_or(("", ""));
    let valid = match scheme {
        "http" | "https" => rest
            .strip_prefix("//")
            .is_some_and(|host| !host.is_empty() && !host.starts_with('/')),
        "file" => rest.starts_with('/'),
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{url:?} is not a URL servers can use: an http://, https:// or file:/ URL"
        ))
    }
}

/// A region name like `nyc3`: a-z, 0-9 and '-'.
pub(super) fn check_region(region: &str) -> Result<(), String> {
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!("{region:?} is not a region like \"nyc3\""));
    }
    Ok(())
}

pub(super) fn check_bucket(bucket: &str) -> Result<(), String> {
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
    /// Where the repository is: `--repo-dir` wins, then a Spaces bucket (flags over
    /// the manifest), else the configured local directory.
    pub fn location(&self, overrides: &RepoOverrides) -> Result<RepoLocation, ConfigError> {
        if let Some(dir) = &overrides.dir {
            return Ok(RepoLocation::Local(dir.clone()));
        }
        let spaces = overrides
            .spaces
            .clone()
            .or(self.spaces.clone().unwrap_or_default());
        let Some(bucket) = spaces.bucket.clone() else {
            return Ok(RepoLocation::Local(self.dir.clone()));
        };
        let err = |key: &str, message: String| ConfigError {
            manifest: self.manifest.clone(),
            key: if FLAGLESS_SPACES_KEYS.contains(&key) {
                format!("workspace.metadata.speedy.repo.spaces.{key}")
            } else {
                format!("workspace.metadata.speedy.repo.spaces.{key} (or --{key})")
            },
            message,
        };
        check_bucket(&bucket).map_err(|why| err("bucket", why))?;
        let region = spaces.region.clone().unwrap_or_else(|| "nyc3".to_owned());
        check_region(&region).map_err(|why| err("region", why))?;
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
                crate::store::check_key(prefix).map_err(|why| err("prefix", why))?;
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
        if let Some(span) = &spaces.retry_deadline {
            let seconds = parse_timespan(span).map_err(|why| err("retry-deadline", why))?;
            if seconds == 0 {
                return Err(err(
                    "retry-deadline",
                    "at least 1s (requests are retried until this runs out)".into(),
                ));
            }
            config.retry_deadline = std::time::Duration::from_secs(seconds);
        }
        if let Some(span) = &spaces.attempt_timeout {
            let seconds = parse_timespan(span).map_err(|why| err("attempt-timeout", why))?;
            if seconds == 0 {
                return Err(err(
                    "attempt-timeout",
                    "at least 1s (a request that is not answered within it is retried)".into(),
                ));
            }
            config.attempt_timeout = std::time::Duration::from_secs(seconds);
        }
        if let Some(id) = &spaces.cdn_endpoint_id {
            crate::cdn::check_endpoint_id(id).map_err(|why| err("cdn-endpoint-id", why))?;
        }
        let prefix_path = config
            .prefix
            .as_deref()
            .map(|p| format!("{p}/"))
            .unwrap_or_default();
        let public_url = match &spaces.public_url {
            Some(url) => {
                check_server_url(url).map_err(|why| err("public-url", why))?;
                // A bucket is read over HTTP: a file: URL names nothing on a server.
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
        Ok(RepoLocation::Spaces {
            config,
            public_url,
            cdn_endpoint_id: spaces.cdn_endpoint_id.clone(),
        })
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
            .unwrap_or_else(|| vec![crate::repo::syntax::host_architecture()]);
        for (index, architecture) in architectures.iter().enumerate() {
            check_architecture(architecture)
                .map_err(|why| err(&format!("architectures[{index}]"), why))?;
        }
        let retention = repo.retention.unwrap_or(5);
        if retention == 0 {
            return Err(err("retention", "keep at least 1 version".into()));
        }
        let grace = repo.grace_period.as_deref().unwrap_or("1h");
        let grace_seconds = parse_timespan(grace).map_err(|why| err("grace-period", why))?;
        let history = repo.history.unwrap_or(20);
        if !(1..=1000).contains(&history) {
            return Err(err(
                "history",
                format!("{history}: between 1 and 1000 changes"),
            ));
        }
        let lease = repo.lock_lease.as_deref().unwrap_or("1min");
        let lock_lease_seconds = match parse_timespan(lease) {
            Ok(seconds) if (3..=3600).contains(&seconds) => seconds,
            Ok(_) => return Err(err("lock-lease", format!("{lease:?}: between 3s and 1h"))),
            Err(why) => return Err(err("lock-lease", why)),
        };
        // Spaces allows about 10 concurrent writes per object and answers 503
        // SlowDown beyond its rate limits (the store backs off): 8 distinct objects at
        // once stays well inside both.
        let jobs = repo.jobs.unwrap_or(8);
        if !(1..=64).contains(&jobs) {
            return Err(err(
                "jobs",
                format!("{jobs}: between 1 and 64 uploads at once"),
            ));
        }
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
        let origin = one_line(
            "origin",
            &repo.origin,
            &super::default_origin(workspace.name.as_deref().unwrap_or(DEFAULT_NAME)),
        )?;
        let label = one_line("label", &repo.label, &origin)?;
        if let Some(description) = &repo.description {
            one_line("description", &Some(description.clone()), "")?;
        }
        Ok(RepoConfig {
            dir: repo
                .dir
                .map(|d| root.join(d))
                .unwrap_or_else(|| target_dir.join("speedy").join("repo")),
            release: ReleaseFields {
                origin,
                label,
                description: repo.description.clone(),
                architectures,
            },
            suites,
            default_suite,
            retention,
            grace_seconds,
            lock_lease_seconds,
            history,
            valid_for_seconds: valid_for,
            jobs,
            spaces: repo.spaces.clone(),
            manifest: root_manifest.to_owned(),
        })
    }
}

/// The project name where no workspace names one (a key file used outside any
/// workspace).
const DEFAULT_NAME: &str = "speedy";

impl RepoConfig {
    /// The suite a command writes or sets up: the one it names (`--suite`), else the
    /// default suite.
    pub fn suite_named(&self, named: Option<&str>) -> String {
        named.unwrap_or(&self.default_suite).to_owned()
    }

    /// The origin as a file-name part: `speedy` for "Speedy", used for the keyring
    /// and `.sources` file names on servers.
    pub fn short_name(&self) -> String {
        let name: String = self
            .release
            .origin
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let name = name.trim_matches('-');
        if name.is_empty() {
            "speedy".to_owned()
        } else {
            name.to_owned()
        }
    }
}

impl RepoLocation {
    /// Where the development key lives when none is configured: beside a
    /// local-directory repository. A remote repository never gets one.
    pub fn dev_key_path(&self) -> Option<PathBuf> {
        let RepoLocation::Local(dir) = self else {
            return None;
        };
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into());
        Some(dir.with_file_name(format!("{name}-dev-signing-key.asc")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_repository_is_a_percent_encoded_file_url() {
        let location = RepoLocation::Local(PathBuf::from("/srv/it's the repo/ü~x"));
        assert_eq!(
            location.public_url(),
            "file:/srv/it%27s%20the%20repo/%C3%BC~x"
        );
        assert_eq!(check_server_url(&location.public_url()), Ok(()));
    }

    #[test]
    fn server_urls_are_http_https_or_file_without_whitespace() {
        for good in [
            "http://127.0.0.1:8080/",
            "https://speedy.nyc3.cdn.digitaloceanspaces.com/apt/",
            "file:/srv/repo",
            "file:///srv/repo",
        ] {
            assert_eq!(check_server_url(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            (
                "ftp://mirror.example/debian",
                "an http://, https:// or file:/ URL",
            ),
            ("http:/no-host", "an http://, https:// or file:/ URL"),
            ("https://", "an http://, https:// or file:/ URL"),
            ("speedy.example/apt", "an http://, https:// or file:/ URL"),
            ("", "an http://, https:// or file:/ URL"),
            ("http://a b/", "contains ' '"),
            (
                "http://x/\nSPEEDY_SOURCES\ntouch /tmp/PWNED",
                "contains '\\n'",
            ),
            ("http://x/\t", "contains '\\t'"),
            ("http://x/\u{7f}", "contains '\\u{7f}'"),
        ] {
            let error = check_server_url(bad).unwrap_err();
            assert!(
                error.contains(why) && error.contains(&format!("{bad:?}")),
                "{bad:?}: {error}"
            );
        }
    }

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
        assert_eq!(config.suites, ["dev", "stable"]);
        assert_eq!(config.retention, 5);
        assert_eq!(config.grace_seconds, 3600);
        let location = config.location(&RepoOverrides::default()).unwrap();
        assert_eq!(
            location.dev_key_path().unwrap(),
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
                    architectures: Some(vec!["amd64".into(), "x86".into()]),
                    ..Default::default()
                },
                "repo.architectures[1]",
            ),
            (
                RepoMetadata {
                    lock_lease: Some("1s".into()),
                    ..Default::default()
                },
                "repo.lock-lease",
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

    fn spaces_only(spaces: SpacesMetadata) -> RepoOverrides {
        RepoOverrides { dir: None, spaces }
    }

    #[test]
    fn locations() {
        let config = resolve(RepoMetadata::default()).unwrap();
        assert_eq!(
            config.location(&RepoOverrides::default()).unwrap(),
            RepoLocation::Local("/ws/target/speedy/repo".into())
        );
        let spaces = SpacesMetadata {
            bucket: Some("speedy-apt".into()),
            region: Some("ams3".into()),
            ..Default::default()
        };
        let RepoLocation::Spaces {
            config: s3,
            public_url,
            ..
        } = config.location(&spaces_only(spaces.clone())).unwrap()
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
            config
                .location(&RepoOverrides {
                    dir: Some("/r".into()),
                    spaces
                })
                .unwrap(),
            RepoLocation::Local("/r".into())
        );
        let dotted = SpacesMetadata {
            bucket: Some("apt.speedy.example".into()),
            prefix: Some("/debian/".into()),
            ..Default::default()
        };
        let RepoLocation::Spaces {
            config: s3,
            public_url,
            ..
        } = config.location(&spaces_only(dotted)).unwrap()
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
            (
                SpacesMetadata {
                    bucket: Some("b-b".into()),
                    retry_deadline: Some("soon".into()),
                    ..Default::default()
                },
                "retry-deadline",
            ),
            (
                SpacesMetadata {
                    bucket: Some("b-b".into()),
                    retry_deadline: Some("0".into()),
                    ..Default::default()
                },
                "retry-deadline",
            ),
            (
                SpacesMetadata {
                    bucket: Some("b-b".into()),
                    attempt_timeout: Some("0s".into()),
                    ..Default::default()
                },
                "attempt-timeout",
            ),
            (
                SpacesMetadata {
                    bucket: Some("b-b".into()),
                    cdn_endpoint_id: Some("speedy-cdn".into()),
                    ..Default::default()
                },
                "cdn-endpoint-id",
            ),
        ] {
            let error = config.location(&spaces_only(bad)).unwrap_err();
            assert!(error.key.contains(&format!("spaces.{key}")), "{error}");
        }
    }
}
