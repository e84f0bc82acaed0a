//! `[package.metadata.speedy]`: one service, read from cargo metadata and validated
//! into a [`Service`] that the packaging layer renders without further checks.
//! Resolution runs as a series of steps, one per concern (name, version, binary,
//! user, paths, environment, config files, kind, maintainer), each naming the key at
//! fault.

use super::timespan::{check_timespan, parse_timespan};
use super::{parse_table, ConfigError, WorkspaceMetadata};
use crate::calendar;
use crate::repo::syntax::{self, DebianVersion};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How long a postinst waits for a restarted daemon's health URL by default: long
/// enough for an app that loads for a while, short enough that apt reports a broken
/// release before anyone wonders why it hangs.
pub const DEFAULT_HEALTH_TIMEOUT_SECONDS: u64 = 30;

/// One service, `[package.metadata.speedy]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PackageMetadata {
    pub kind: ServiceKindName,
    pub binary: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub description: Option<String>,
    pub revision: Option<String>,
    #[serde(default)]
    pub config_files: Vec<ConfigFileMetadata>,
    pub state_directory: Option<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Names of environment variables the service needs whose values stay out of the
    /// package: they are read from [`Service::secrets_file`] on the server.
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub jobs: Vec<JobMetadata>,
    pub randomized_delay: Option<String>,
    /// A daemon's health endpoint, which its monitoring check asks.
    pub health_url: Option<String>,
    /// What a daemon is told when `cargo speedy fleet db` moves `db`.
    pub on_db_change: Option<DbChangeAction>,
    /// The file whose presence puts a daemon in maintenance (`cargo speedy fleet
    /// maintenance`); its contents are the message.
    pub maintenance_flag: Option<String>,
    /// How long the postinst waits for the health URL after a restart (a systemd time
    /// span; `0` turns the gate off).
    pub health_timeout: Option<String>,
    /// Addresses systemd listens on for a daemon (`<package>.socket`), like
    /// `"0.0.0.0:8080"` or `"[::]:443"`.
    #[serde(default)]
    pub listen: Vec<String>,
    /// The daemon says when it is ready (`sd_notify("READY=1")`): `Type=notify`.
    #[serde(default)]
    pub notify: bool,
}

/// How a daemon that holds database connections follows a move of `db`
/// (docs/ARCHITECTURE.md, "Fleet switches").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbChangeAction {
    /// Nothing: the daemon resolves `db` on every connection, or holds none.
    #[default]
    None,
    /// SIGHUP to its main process.
    Reload,
    /// A restart of its unit.
    Restart,
}

impl DbChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DbChangeAction::None => "none",
            DbChangeAction::Reload => "reload",
            DbChangeAction::Restart => "restart",
        }
    }
}

/// What the fleet package does to a daemon on a server
/// (docs/ARCHITECTURE.md, "Fleet switches"); the default for jobs packages and
/// daemons that declare neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetHooks {
    pub on_db_change: DbChangeAction,
    /// An absolute path; `None`: the daemon has no maintenance page.
    pub maintenance_flag: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKindName {
    Daemon,
    Jobs,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigFileMetadata {
    pub source: PathBuf,
    pub dest: String,
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JobMetadata {
    pub name: String,
    pub schedule: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    pub description: Option<String>,
    pub randomized_delay: Option<String>,
}

/// What the package of a service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// One long-running `.service`, and the URL its monitoring check asks for a 200
    /// (docs/ARCHITECTURE.md, "Monitoring checks").
    Daemon {
        args: Vec<String>,
        health_url: Option<String>,
        /// Seconds the postinst waits for `health_url` after a restart; 0: no gate
        /// (docs/ARCHITECTURE.md, "Restarts and the health gate").
        health_timeout: u64,
        /// What `<package>.socket` listens on; empty: no socket unit, the daemon binds
        /// its own port.
        listen: Vec<SocketAddr>,
        /// `Type=notify`: the daemon sends `READY=1` when it serves.
        notify: bool,
    },
    /// One oneshot `.service` plus `.timer` per job.
    Jobs { jobs: Vec<Job> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    pub schedule: String,
    pub args: Vec<String>,
    pub description: String,
    pub randomized_delay: String,
}

/// A file installed under /etc and marked as a conffile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Absolute path of the source in the crate.
    pub source: PathBuf,
    /// Absolute destination, always below /etc.
    pub dest: String,
    pub mode: u32,
}

/// A validated service: everything the renderer and the .deb builder need.
#[derive(Debug, Clone)]
pub struct Service {
    /// The Cargo package name.
    pub package: String,
    /// The Debian package name (`[package.metadata.deb] name`, else the package name).
    pub deb_name: String,
    /// The Cargo (semver) version, before its mapping to a Debian version.
    pub cargo_version: String,
    pub manifest_path: PathBuf,
    pub crate_dir: PathBuf,
    pub version: DebianVersion,
    pub description: String,
    pub kind: ServiceKind,
    /// The Cargo binary target that the units run.
    pub binary: String,
    /// The source file of that target (cargo-deb wants a target to exist).
    pub binary_source: PathBuf,
    /// Where the binary is installed, e.g. /usr/libexec/speedy/speedy-app.
    pub install_path: String,
    pub user: String,
    pub group: String,
    /// Relative to /var/lib, as systemd's `StateDirectory=` wants it.
    pub state_directory: String,
    pub environment: BTreeMap<String, String>,
    /// The secrets the units require (names only, sorted as declared), read from
    /// `secrets_file`, which no package ships (docs/ARCHITECTURE.md, "Servers").
    pub secrets: Vec<String>,
    /// `/etc/<state-root>/<package>.secrets`: the units' `EnvironmentFile=`.
    pub secrets_file: String,
    pub config_files: Vec<ConfigFile>,
    /// `Name <email>` for the control file and the changelog.
    pub maintainer: String,
    /// A URL for the units' `Documentation=`, when the package has one.
    pub documentation: Option<String>,
    pub jobs_disabled_flag: String,
    /// The user's own `[package.metadata.deb]`, honoured where it applies.
    pub deb_metadata: Option<serde_json::Value>,
    /// The crate's debian/ folder (or cargo-deb's `maintainer-scripts`): files there
    /// replace the rendered files of the same name.
    pub overrides_dir: PathBuf,
    /// How a daemon follows `cargo speedy fleet` (docs/ARCHITECTURE.md, "Fleet switches").
    pub fleet: FleetHooks,
}

impl Service {
    /// The systemd unit names the package ships, in a stable order.
    pub fn unit_names(&self) -> Vec<String> {
        match &self.kind {
            ServiceKind::Daemon { listen, .. } if !listen.is_empty() => vec![
                format!("{}.socket", self.deb_name),
                format!("{}.service", self.deb_name),
            ],
            ServiceKind::Daemon { .. } => vec![format!("{}.service", self.deb_name)],
            ServiceKind::Jobs { jobs } => jobs
                .iter()
                .flat_map(|job| {
                    let base = self.job_unit_base(job);
                    [format!("{base}.service"), format!("{base}.timer")]
                })
                .collect(),
        }
    }

    pub fn job_unit_base(&self, job: &Job) -> String {
        format!("{}-{}", self.deb_name, job.name)
    }
}

/// Reads `[package.metadata.speedy]`; `None` when the package declares no service.
pub fn parse_package_metadata(
    package_metadata: &serde_json::Value,
    manifest: &Path,
) -> Result<Option<PackageMetadata>, ConfigError> {
    match package_metadata.get("speedy") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => parse_table(value, manifest, "package.metadata.speedy").map(Some),
    }
}

/// The facts about a Cargo package that resolution needs, taken from cargo metadata.
#[derive(Debug, Clone)]
pub struct PackageFacts {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub manifest_path: PathBuf,
    pub bin_targets: Vec<BinTarget>,
    pub metadata: serde_json::Value,
    pub authors: Vec<String>,
    pub homepage: Option<String>,
    pub repository: Option<String>,
}

/// A `[[bin]]` target of a package.
#[derive(Debug, Clone)]
pub struct BinTarget {
    pub name: String,
    pub src_path: PathBuf,
}

/// Validates one service. `check_calendar` is the judge for `OnCalendar` values beyond
/// the pure validator (systemd-analyze in production, nothing in pure tests).
pub fn resolve_service(
    workspace: &WorkspaceMetadata,
    workspace_manifest: &Path,
    facts: &PackageFacts,
    metadata: PackageMetadata,
    check_calendar: &dyn Fn(&str) -> Option<Result<(), String>>,
) -> Result<Service, ConfigError> {
    let steps = Resolution {
        workspace,
        workspace_manifest,
        manifest: &facts.manifest_path,
        facts,
        deb_metadata: deb_metadata(facts)?,
    };
    let deb_name = steps.deb_name()?;
    let version = steps.version(&metadata)?;
    let (binary, binary_source) = steps.binary(&metadata)?;
    let (user, group) = steps.user_and_group(&metadata)?;
    let install_path = steps.install_path(&user, &binary)?;
    let state_root = workspace.state_root.clone().unwrap_or_else(|| user.clone());
    let state_directory = steps.state_directory(&metadata, &deb_name, &state_root)?;
    let description = steps.description(&metadata)?;
    steps.check_environment(&metadata.environment)?;
    steps.check_secrets(&metadata.secrets, &metadata.environment)?;
    let secrets_file = format!("/etc/{state_root}/{deb_name}.secrets");
    check_absolute_clean(&secrets_file).map_err(|why| steps.err("secrets", why))?;
    check_args(&metadata.args).map_err(|why| steps.err("args", why))?;
    let config_files = steps.config_files(&metadata.config_files)?;
    let kind = steps.kind(&metadata, &description, check_calendar)?;
    let fleet = steps.fleet_hooks(&metadata)?;
    let maintainer = steps.maintainer()?;
    let jobs_disabled_flag = steps.jobs_disabled_flag(&state_root)?;
    let documentation = [&facts.homepage, &facts.repository]
        .into_iter()
        .flatten()
        .find(|url| url.starts_with("https://") || url.starts_with("http://"))
        .cloned();
    Ok(Service {
        package: facts.name.clone(),
        deb_name,
        cargo_version: facts.version.clone(),
        manifest_path: facts.manifest_path.clone(),
        crate_dir: steps.crate_dir(),
        version,
        description,
        kind,
        binary,
        binary_source,
        install_path,
        user,
        group,
        state_directory,
        environment: metadata.environment,
        secrets: metadata.secrets,
        secrets_file,
        config_files,
        maintainer,
        documentation,
        jobs_disabled_flag,
        overrides_dir: steps.overrides_dir(),
        deb_metadata: steps.deb_metadata,
        fleet,
    })
}

/// The user's `[package.metadata.deb]`, where it does not conflict with ours.
fn deb_metadata(facts: &PackageFacts) -> Result<Option<serde_json::Value>, ConfigError> {
    let deb_metadata = facts.metadata.get("deb").filter(|v| !v.is_null()).cloned();
    if let Some(units) = deb_metadata.as_ref().and_then(|d| d.get("systemd-units")) {
        if !units.is_null() {
            return Err(ConfigError::new(
                &facts.manifest_path,
                "package.metadata.deb.systemd-units",
                "cargo speedy renders the systemd units itself; remove `systemd-units` and \
                 put a unit of your own in the crate's debian/ folder to override the rendered one",
            ));
        }
    }
    Ok(deb_metadata)
}

/// What every step of [`resolve_service`] reads.
struct Resolution<'a> {
    workspace: &'a WorkspaceMetadata,
    workspace_manifest: &'a Path,
    manifest: &'a Path,
    facts: &'a PackageFacts,
    deb_metadata: Option<serde_json::Value>,
}

impl Resolution<'_> {
    /// An error at `package.metadata.speedy.<key>` of the package's manifest.
    fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError::new(
            self.manifest,
            format!("package.metadata.speedy.{key}"),
            message,
        )
    }

    /// An error at `workspace.metadata.speedy.<key>` of the workspace manifest.
    fn workspace_err(&self, key: &str, message: String) -> ConfigError {
        ConfigError::new(
            self.workspace_manifest,
            format!("workspace.metadata.speedy.{key}"),
            message,
        )
    }

    fn crate_dir(&self) -> PathBuf {
        self.manifest
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf()
    }

    fn deb_string(&self, key: &str) -> Option<String> {
        self.deb_metadata
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }

    fn overrides_dir(&self) -> PathBuf {
        self.crate_dir().join(
            self.deb_string("maintainer-scripts")
                .unwrap_or_else(|| "debian".to_owned()),
        )
    }

    fn deb_name(&self) -> Result<String, ConfigError> {
        let (deb_name, name_key) = match self.deb_metadata.as_ref().and_then(|d| d.get("name")) {
            Some(serde_json::Value::String(name)) => (name.clone(), "package.metadata.deb.name"),
            Some(_) => {
                return Err(ConfigError::new(
                    self.manifest,
                    "package.metadata.deb.name",
                    "must be a string",
                ))
            }
            None => (self.facts.name.replace('_', "-"), "package.name"),
        };
        syntax::check_package_name(&deb_name).map_err(|why| {
            ConfigError::new(
                self.manifest,
                name_key,
                format!("{deb_name:?} is not a valid Debian package name: {why}"),
            )
        })?;
        Ok(deb_name)
    }

    /// The Cargo version plus the first Debian revision found: ours, cargo-deb's, the
    /// workspace's, else 1.
    fn version(&self, metadata: &PackageMetadata) -> Result<DebianVersion, ConfigError> {
        let (revision, revision_key, revision_manifest) = if let Some(r) = &metadata.revision {
            (r.clone(), "package.metadata.speedy.revision", self.manifest)
        } else if let Some(r) = self.deb_string("revision") {
            (r, "package.metadata.deb.revision", self.manifest)
        } else if let Some(r) = &self.workspace.revision {
            (
                r.clone(),
                "workspace.metadata.speedy.revision",
                self.workspace_manifest,
            )
        } else {
            ("1".to_owned(), "package.version", self.manifest)
        };
        let version_text = format!(
            "{}-{}",
            syntax::upstream_from_semver(&self.facts.version),
            revision
        );
        let invalid = |why: String| {
            ConfigError::new(
                revision_manifest,
                revision_key,
                format!("{version_text:?} is not a valid Debian version: {why}"),
            )
        };
        // Checked on its own: "1.4.0--1" would parse, as upstream "1.4.0-" and
        // revision "1", which is not what anyone meant.
        syntax::check_revision(&revision).map_err(invalid)?;
        DebianVersion::parse(&version_text).map_err(invalid)
    }

    /// The binary target the units run, and its source file.
    fn binary(&self, metadata: &PackageMetadata) -> Result<(String, PathBuf), ConfigError> {
        let targets: Vec<String> = self
            .facts
            .bin_targets
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let binary = match (&metadata.binary, targets.as_slice()) {
            (Some(binary), targets) if !targets.contains(binary) => {
                return Err(self.err(
                    "binary",
                    format!(
                        "the package has no binary target {binary:?} (it has: {})",
                        list_or_none(targets)
                    ),
                ))
            }
            (Some(binary), _) => binary.clone(),
            (None, [only]) => only.clone(),
            (None, []) => {
                return Err(self.err(
                    "binary",
                    "the package has no binary target to run; add a [[bin]] or src/main.rs".into(),
                ))
            }
            (None, targets) => {
                return Err(self.err(
                    "binary",
                    format!(
                        "the package has several binaries ({}); say which one the service runs",
                        targets.join(", ")
                    ),
                ))
            }
        };
        let source = self
            .facts
            .bin_targets
            .iter()
            .find(|t| t.name == binary)
            .map(|t| t.src_path.clone())
            .unwrap_or_default();
        Ok((binary, source))
    }

    fn user_and_group(&self, metadata: &PackageMetadata) -> Result<(String, String), ConfigError> {
        let user = metadata
            .user
            .clone()
            .or_else(|| self.workspace.user.clone())
            .or_else(|| self.workspace.name.clone())
            .unwrap_or_else(|| "speedy".to_owned());
        check_system_name(&user).map_err(|why| self.err("user", why))?;
        if user == "root" {
            // The units are hardened to run unprivileged, and sysusers would describe
            // root as a service user.
            return Err(self.err(
                "user",
                "services must not run as root: name a system user of their own (the default is the project's `name`)"
                    .into(),
            ));
        }
        let group = metadata
            .group
            .clone()
            .or_else(|| self.workspace.group.clone())
            .unwrap_or_else(|| user.clone());
        check_system_name(&group).map_err(|why| self.err("group", why))?;
        Ok((user, group))
    }

    /// Where the binary is installed: `<install-dir>/<binary>`.
    fn install_path(&self, user: &str, binary: &str) -> Result<String, ConfigError> {
        let install_dir = self
            .workspace
            .install_dir
            .clone()
            .unwrap_or_else(|| format!("/usr/libexec/{user}"));
        check_absolute_clean(&install_dir).map_err(|why| self.workspace_err("install-dir", why))?;
        Ok(format!("{}/{binary}", install_dir.trim_end_matches('/')))
    }

    fn state_directory(
        &self,
        metadata: &PackageMetadata,
        deb_name: &str,
        state_root: &str,
    ) -> Result<String, ConfigError> {
        let short_name = deb_name
            .strip_prefix(&format!("{state_root}-"))
            .unwrap_or(deb_name);
        let state_directory = metadata
            .state_directory
            .clone()
            .unwrap_or_else(|| format!("{state_root}/{short_name}"));
        check_relative_clean(&state_directory).map_err(|why| self.err("state-directory", why))?;
        Ok(state_directory)
    }

    fn description(&self, metadata: &PackageMetadata) -> Result<String, ConfigError> {
        let description = metadata
            .description
            .clone()
            .or_else(|| self.facts.description.clone())
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                self.err(
                    "description",
                    "no description: set `description` in [package] or here".into(),
                )
            })?;
        if description.contains('\n') {
            return Err(self.err(
                "description",
                "must be one line (it becomes the unit's Description=)".into(),
            ));
        }
        Ok(description)
    }

    fn check_environment(&self, environment: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        for (name, value) in environment {
            let valid_name = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let why = if !valid_name {
                "not a valid environment variable name"
            } else if value.contains('\n') {
                "the value must be one line"
            } else {
                continue;
            };
            return Err(self.err(&format!("environment.{name}"), why.into()));
        }
        Ok(())
    }

    /// Secrets are names only: each a variable name as the shell and systemd's
    /// `EnvironmentFile=` read it, declared once, and not also given a value (which
    /// would be inside the public package) in `environment`.
    fn check_secrets(
        &self,
        secrets: &[String],
        environment: &BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        for (index, name) in secrets.iter().enumerate() {
            let key = format!("secrets[{index}]");
            check_secret_name(name).map_err(|why| self.err(&key, why))?;
            if !seen.insert(name) {
                return Err(self.err(&key, format!("{name:?} is declared twice")));
            }
            if environment.contains_key(name) {
                return Err(self.err(
                    &key,
                    format!(
                        "{name:?} is also in `environment`, whose values are inside the package \
                         anyone can download: keep a secret only in `secrets`"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn config_files(&self, files: &[ConfigFileMetadata]) -> Result<Vec<ConfigFile>, ConfigError> {
        let mut config_files = Vec::with_capacity(files.len());
        let mut seen_dest = BTreeSet::new();
        for (index, file) in files.iter().enumerate() {
            let k = |field: &str| format!("config-files[{index}].{field}");
            check_conffile_dest(&file.dest)
                .map_err(|why| self.err(&k("dest"), format!("{:?}: {why}", file.dest)))?;
            if !seen_dest.insert(file.dest.clone()) {
                return Err(self.err(&k("dest"), format!("{:?} is installed twice", file.dest)));
            }
            let source = self.crate_dir().join(&file.source);
            if !source.is_file() {
                return Err(self.err(
                    &k("source"),
                    format!("{} does not exist or is not a file", source.display()),
                ));
            }
            let mode = match &file.mode {
                None => 0o644,
                Some(mode) => u32::from_str_radix(mode.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| {
                        self.err(
                            &k("mode"),
                            format!("{mode:?} is not an octal file mode like \"0640\""),
                        )
                    })?,
            };
            config_files.push(ConfigFile {
                source,
                dest: file.dest.clone(),
                mode,
            });
        }
        Ok(config_files)
    }

    /// `on-db-change` and `maintenance-flag`: daemons only; the flag an absolute
    /// path of plain characters, since the fleet package's shell script writes it.
    fn fleet_hooks(&self, metadata: &PackageMetadata) -> Result<FleetHooks, ConfigError> {
        if metadata.kind == ServiceKindName::Jobs {
            for (key, set) in [
                ("on-db-change", metadata.on_db_change.is_some()),
                ("maintenance-flag", metadata.maintenance_flag.is_some()),
            ] {
                if set {
                    return Err(self.err(
                        key,
                        "only a daemon follows fleet switches; jobs resolve `db` at each run"
                            .into(),
                    ));
                }
            }
        }
        if let Some(flag) = &metadata.maintenance_flag {
            let plain = flag.starts_with('/')
                && flag.len() > 1
                && !flag.ends_with('/')
                && !flag.split('/').any(|part| part == "..")
                && flag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
            if !plain {
                return Err(self.err(
                    "maintenance-flag",
                    format!(
                        "{flag:?} must be an absolute file path of letters, digits, '/', '.', '_' and '-', like \"/var/lib/speedy/app/maintenance\""
                    ),
                ));
            }
        }
        Ok(FleetHooks {
            on_db_change: metadata.on_db_change.unwrap_or_default(),
            maintenance_flag: metadata.maintenance_flag.clone(),
        })
    }

    /// `listen`: socket addresses, each once. systemd binds them as root, so a port
    /// below 1024 needs no capability in the service.
    fn listen(&self, addresses: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
        let mut listen: Vec<SocketAddr> = Vec::with_capacity(addresses.len());
        for (index, text) in addresses.iter().enumerate() {
            let key = format!("listen[{index}]");
            let address: SocketAddr = text.parse().map_err(|_| {
                self.err(
                    &key,
                    format!("{text:?} is not an address and port like \"0.0.0.0:8080\" or \"[::]:8080\""),
                )
            })?;
            if address.port() == 0 {
                return Err(self.err(&key, format!("{text:?}: port 0 is not a port to listen on")));
            }
            if let Some(first) = listen.iter().position(|a| *a == address) {
                return Err(self.err(
                    &key,
                    format!("{text:?} is listed twice (also listen[{first}])"),
                ));
            }
            listen.push(address);
        }
        Ok(listen)
    }

    fn kind(
        &self,
        metadata: &PackageMetadata,
        description: &str,
        check_calendar: &dyn Fn(&str) -> Option<Result<(), String>>,
    ) -> Result<ServiceKind, ConfigError> {
        let randomized_delay = metadata
            .randomized_delay
            .clone()
            .or_else(|| self.workspace.randomized_delay.clone())
            .unwrap_or_else(|| "5min".to_owned());
        check_timespan(&randomized_delay).map_err(|why| self.err("randomized-delay", why))?;
        if let Some(url) = &metadata.health_url {
            if metadata.kind == ServiceKindName::Jobs {
                return Err(self.err(
                    "health-url",
                    "only a daemon has a health URL; the check of a jobs package looks at its timers and their last runs".into(),
                ));
            }
            check_health_url(url).map_err(|why| self.err("health-url", why))?;
        }
        if metadata.kind == ServiceKindName::Jobs {
            let daemon_only = [
                ("listen", !metadata.listen.is_empty()),
                ("notify", metadata.notify),
                ("health-timeout", metadata.health_timeout.is_some()),
            ];
            if let Some((key, _)) = daemon_only.iter().find(|(_, set)| *set) {
                return Err(self.err(
                    key,
                    "only a daemon has it; the jobs of a jobs package run from timers".into(),
                ));
            }
        }
        let listen = self.listen(&metadata.listen)?;
        let health_timeout = match &metadata.health_timeout {
            Some(span) => parse_timespan(span).map_err(|why| self.err("health-timeout", why))?,
            None => DEFAULT_HEALTH_TIMEOUT_SECONDS,
        };
        match metadata.kind {
            ServiceKindName::Daemon if !metadata.jobs.is_empty() => Err(self.err(
                "jobs",
                "a daemon has no jobs; use kind = \"jobs\" for periodic jobs".into(),
            )),
            ServiceKindName::Daemon => Ok(ServiceKind::Daemon {
                args: metadata.args.clone(),
                health_url: metadata.health_url.clone(),
                health_timeout,
                listen,
                notify: metadata.notify,
            }),
            ServiceKindName::Jobs if metadata.jobs.is_empty() => Err(self.err(
                "jobs",
                "kind = \"jobs\" needs at least one [[package.metadata.speedy.jobs]] with a name and a schedule".into(),
            )),
            ServiceKindName::Jobs if !metadata.args.is_empty() => Err(self.err(
                "args",
                "jobs take their arguments per job (jobs[].args)".into(),
            )),
            ServiceKindName::Jobs => {
                let mut names = BTreeSet::new();
                let mut jobs = Vec::with_capacity(metadata.jobs.len());
                for (index, job) in metadata.jobs.iter().enumerate() {
                    if !names.insert(job.name.clone()) {
                        return Err(self.err(
                            &format!("jobs[{index}].name"),
                            format!("the job name {:?} is used twice", job.name),
                        ));
                    }
                    jobs.push(self.job(index, job, description, &randomized_delay, check_calendar)?);
                }
                Ok(ServiceKind::Jobs { jobs })
            }
        }
    }

    fn job(
        &self,
        index: usize,
        job: &JobMetadata,
        description: &str,
        randomized_delay: &str,
        check_calendar: &dyn Fn(&str) -> Option<Result<(), String>>,
    ) -> Result<Job, ConfigError> {
        let k = |field: &str| format!("jobs[{index}].{field}");
        check_job_name(&job.name)
            .map_err(|why| self.err(&k("name"), format!("{:?}: {why}", job.name)))?;
        let schedule = job.schedule.clone().ok_or_else(|| {
            self.err(
                &k("schedule"),
                format!("job {:?} has no schedule; add e.g. schedule = \"daily\" (a systemd OnCalendar expression)", job.name),
            )
        })?;
        let invalid = |why: String| {
            self.err(
                &k("schedule"),
                format!("{schedule:?} is not a valid OnCalendar expression: {why}"),
            )
        };
        calendar::check(&schedule).map_err(invalid)?;
        if let Some(Err(why)) = check_calendar(&schedule) {
            return Err(invalid(why));
        }
        check_args(&job.args).map_err(|why| self.err(&k("args"), why))?;
        let job_delay = job
            .randomized_delay
            .clone()
            .unwrap_or_else(|| randomized_delay.to_owned());
        check_timespan(&job_delay).map_err(|why| self.err(&k("randomized-delay"), why))?;
        let job_description = job
            .description
            .clone()
            .unwrap_or_else(|| format!("{description}: {}", job.name));
        if job_description.contains('\n') {
            return Err(self.err(&k("description"), "must be one line".into()));
        }
        Ok(Job {
            name: job.name.clone(),
            schedule,
            args: job.args.clone(),
            description: job_description,
            randomized_delay: job_delay,
        })
    }

    /// `Name <email>`: cargo-deb's, the workspace's, else the first author.
    fn maintainer(&self) -> Result<String, ConfigError> {
        let err = |message: String| {
            ConfigError::new(
                self.manifest,
                "workspace.metadata.speedy.maintainer",
                message,
            )
        };
        let maintainer = self
            .deb_string("maintainer")
            .or_else(|| self.workspace.maintainer.clone())
            .or_else(|| self.facts.authors.first().cloned())
            .ok_or_else(|| {
                err("no maintainer: set maintainer = \"Name <email>\" in [workspace.metadata.speedy] or `authors` in [package]".into())
            })?;
        if maintainer.contains('\n') || !maintainer.contains('<') || !maintainer.ends_with('>') {
            return Err(err(format!(
                "{maintainer:?} is not of the form \"Name <email>\""
            )));
        }
        Ok(maintainer)
    }

    fn jobs_disabled_flag(&self, state_root: &str) -> Result<String, ConfigError> {
        let flag = self
            .workspace
            .jobs_disabled_flag
            .clone()
            .unwrap_or_else(|| format!("/etc/{state_root}/jobs.disabled"));
        check_absolute_clean(&flag).map_err(|why| self.workspace_err("jobs-disabled-flag", why))?;
        Ok(flag)
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// User and group names as useradd and systemd-sysusers accept them.
fn check_system_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid system user or group name (a-z, 0-9, _ and -, starting with a letter, at most 31 characters)"))
    }
}

/// A secret's name: `[A-Z_][A-Z0-9_]*`, so the shell, systemd's `EnvironmentFile=`
/// and the `require-secrets` check all read it the same way.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a secret's name: an environment variable name of capital letters, digits and '_', not starting with a digit (like \"DATABASE_URL\")"
        ))
    }
}

fn check_absolute_clean(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must be an absolute path"));
    }
    check_components(path)
}

fn check_relative_clean(path: &str) -> Result<(), String> {
    if path.starts_with('/') || path.is_empty() {
        return Err(format!(
            "{path:?} must be a relative path below /var/lib, like \"speedy/app\""
        ));
    }
    check_components(path)
}

fn check_components(path: &str) -> Result<(), String> {
    if path.contains(|c: char| c.is_whitespace() || c.is_control() || c == '\\' || c == '%') {
        return Err(format!(
            "{path:?} contains white space or characters systemd would expand"
        ));
    }
    // Split by hand: `Path::components` silently drops inner `.` and `//`.
    let inner = path.trim_start_matches('/').trim_end_matches('/');
    for segment in inner.split('/') {
        match segment {
            ".." => return Err(format!("{path:?} must not contain '..'")),
            "." => return Err(format!("{path:?} must not contain '.' components")),
            "" if !inner.is_empty() => {
                return Err(format!("{path:?} contains an empty component ('//')"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Conffiles live below /etc (Debian Policy 10.7.2); a `..` could escape it.
pub fn check_conffile_dest(dest: &str) -> Result<(), String> {
    check_absolute_clean(dest)?;
    if !dest.starts_with("/etc/") || dest.ends_with('/') {
        return Err("a config file must be installed as a file below /etc/".into());
    }
    Ok(())
}

fn check_job_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err("a job name becomes part of a unit name: use letters, digits, '-' and '_'".into())
    }
}

/// A health URL is asked by curl in the generated check and written into it in shell
/// quotes; limiting it to the characters of RFC 3986 keeps both simple and a typo
/// (a space, a missing scheme) an error at build time rather than an alert later.
fn check_health_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!(
            "{url:?} must be an http:// URL, like \"http://127.0.0.1:8080/healthz\""
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{url:?} names no host"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c);
    if let Some(bad) = url.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{url:?} contains {bad:?}, which is not allowed in a URL (percent-encode it)"
        ));
    }
    Ok(())
}

/// Arguments are written into `ExecStart=`; a newline would end the directive early.
fn check_args(args: &[String]) -> Result<(), String> {
    for arg in args {
        if arg.contains(['\n', '\r', '\0']) {
            return Err(format!("{arg:?}: arguments must not contain line breaks"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(metadata: serde_json::Value) -> PackageFacts {
        PackageFacts {
            name: "speedy-jobs".into(),
            version: "1.4.0".into(),
            description: Some("Speedy periodic jobs".into()),
            manifest_path: std::env::temp_dir().join("speedy-jobs/Cargo.toml"),
            bin_targets: vec![BinTarget {
                name: "speedy-jobs".into(),
                src_path: "src/main.rs".into(),
            }],
            metadata,
            authors: vec!["Speedy Team <ops@speedy.example>".into()],
            homepage: Some("https://speedy.example".into()),
            repository: None,
        }
    }

    fn resolve(speedy: serde_json::Value) -> Result<Service, ConfigError> {
        resolve_facts(&facts(json!({ "speedy": speedy })), &|_| None)
    }

    fn resolve_facts(
        facts: &PackageFacts,
        check_calendar: &dyn Fn(&str) -> Option<Result<(), String>>,
    ) -> Result<Service, ConfigError> {
        let metadata = parse_package_metadata(&facts.metadata, &facts.manifest_path)?.unwrap();
        resolve_service(
            &WorkspaceMetadata::default(),
            Path::new("/ws/Cargo.toml"),
            facts,
            metadata,
            check_calendar,
        )
    }

    fn jobs(jobs: serde_json::Value) -> serde_json::Value {
        json!({ "kind": "jobs", "jobs": jobs })
    }

    #[test]
    fn a_minimal_jobs_service_resolves_with_defaults() {
        let service = resolve(jobs(json!([{ "name": "trending", "schedule": "daily" }]))).unwrap();
        assert_eq!(service.version.to_string(), "1.4.0-1");
        assert_eq!(service.user, "speedy");
        assert_eq!(service.group, "speedy");
        assert_eq!(service.state_directory, "speedy/jobs");
        assert_eq!(service.install_path, "/usr/libexec/speedy/speedy-jobs");
        assert_eq!(service.jobs_disabled_flag, "/etc/speedy/jobs.disabled");
        assert_eq!(
            service.unit_names(),
            ["speedy-jobs-trending.service", "speedy-jobs-trending.timer"]
        );
    }

    #[test]
    fn secrets_are_names_kept_in_order_with_a_file_under_etc() {
        let service = resolve(json!({ "kind": "daemon" })).unwrap();
        assert!(service.secrets.is_empty());
        assert_eq!(service.secrets_file, "/etc/speedy/speedy-jobs.secrets");
        let service =
            resolve(json!({ "kind": "daemon", "secrets": ["DATABASE_URL", "API_TOKEN", "_X1"] }))
                .unwrap();
        assert_eq!(service.secrets, ["DATABASE_URL", "API_TOKEN", "_X1"]);
        // The file follows the state root, like the jobs flag.
        let f = facts(json!({ "speedy": { "kind": "daemon", "secrets": ["A"] } }));
        let metadata = parse_package_metadata(&f.metadata, &f.manifest_path)
            .unwrap()
            .unwrap();
        let workspace = WorkspaceMetadata {
            state_root: Some("acme".into()),
            ..WorkspaceMetadata::default()
        };
        let service = resolve_service(
            &workspace,
            Path::new("/ws/Cargo.toml"),
            &f,
            metadata,
            &|_| None,
        )
        .unwrap();
        assert_eq!(service.secrets_file, "/etc/acme/speedy-jobs.secrets");
    }

    fn error_of(speedy: serde_json::Value) -> String {
        resolve(speedy).unwrap_err().to_string()
    }

    #[test]
    fn bad_inputs_name_the_key() {
        let daemon = |extra: serde_json::Value| {
            let mut table = json!({ "kind": "daemon" });
            if let (Some(table), Some(extra)) = (table.as_object_mut(), extra.as_object()) {
                table.extend(extra.clone());
            }
            table
        };
        let conffile = |source: &str, dest: &str| {
            daemon(json!({ "config-files": [{ "source": source, "dest": dest }] }))
        };
        let daily = |name: &str| json!({ "name": name, "schedule": "daily" });
        #[rustfmt::skip]
        let cases = [
            (json!({ "kind": "deamon" }), "speedy.kind", "unknown variant `deamon`"),
            (daemon(json!({ "colour": 1 })), "package.metadata.speedy", "unknown field `colour`"),
            (jobs(json!([{ "name": "trending" }])), "jobs[0].schedule", "has no schedule"),
            (jobs(json!([{ "name": "t", "schedule": "*-*-* 25:00" }])), "jobs[0].schedule", "hour 25"),
            (jobs(json!([daily("t"), daily("t")])), "jobs[1].name", "used twice"),
            (jobs(json!([daily("a b")])), "jobs[0].name", "unit name"),
            (jobs(json!([])), "package.metadata.speedy.jobs", "at least one"),
            (daemon(json!({ "binary": "nope" })), "binary", "no binary target \"nope\""),
            (conffile("x", "/usr/share/x"), "config-files[0].dest", "below /etc/"),
            (conffile("x", "/etc/../x"), "config-files[0].dest", "'..'"),
            (conffile("x", "etc/x"), "config-files[0].dest", "absolute"),
            (conffile("missing.conf", "/etc/speedy/x"), "files[0].source", "does not exist"),
            (daemon(json!({ "revision": "1_2" })), "speedy.revision", "not a valid Debian version"),
            (daemon(json!({ "revision": "-1" })), "speedy.revision", "may only contain"),
            (daemon(json!({ "user": "Root" })), "user", "not a valid system user"),
            (daemon(json!({ "user": "root" })), "user", "must not run as root"),
            (daemon(json!({ "randomized-delay": "soon" })), "randomized-delay", "time span"),
            (daemon(json!({ "state-directory": "/var/lib/x" })), "state-directory", "relative"),
            (daemon(json!({ "environment": { "A-B": "1" } })), "environment.A-B", "environment variable"),
            (daemon(json!({ "secrets": ["database_url"] })), "speedy.secrets[0]", "\"database_url\" is not a secret's name"),
            (daemon(json!({ "secrets": ["A", "1A"] })), "speedy.secrets[1]", "\"1A\" is not a secret's name"),
            (daemon(json!({ "secrets": ["A-B"] })), "speedy.secrets[0]", "\"A-B\""),
            (daemon(json!({ "secrets": [""] })), "speedy.secrets[0]", "\"\" is not"),
            (daemon(json!({ "secrets": ["A", "B", "A"] })), "speedy.secrets[2]", "\"A\" is declared twice"),
            (daemon(json!({ "secrets": ["TOKEN"], "environment": { "TOKEN": "x" } })), "speedy.secrets[0]", "also in `environment`"),
            (daemon(json!({ "secrets": "TOKEN" })), "package.metadata.speedy", "invalid type"),
            (daemon(json!({ "health-url": "127.0.0.1:8080/healthz" })), "speedy.health-url", "must be an http:// URL"),
            (daemon(json!({ "health-url": "ftp://127.0.0.1/healthz" })), "speedy.health-url", "must be an http:// URL"),
            (daemon(json!({ "health-url": "http:///healthz" })), "speedy.health-url", "names no host"),
            (daemon(json!({ "health-url": "http://127.0.0.1/health z" })), "speedy.health-url", "' '"),
            (daemon(json!({ "health-url": "http://127.0.0.1/\"$(reboot)\"" })), "speedy.health-url", "not allowed in a URL"),
            ({ let mut j = jobs(json!([daily("t")])); j["health-url"] = json!("http://127.0.0.1/healthz"); j }, "speedy.health-url", "only a daemon"),
            (daemon(json!({ "listen": ["8080"] })), "speedy.listen[0]", "\"8080\" is not an address and port"),
            (daemon(json!({ "listen": ["localhost:8080"] })), "speedy.listen[0]", "not an address and port"),
            (daemon(json!({ "listen": ["0.0.0.0:0"] })), "speedy.listen[0]", "port 0"),
            (daemon(json!({ "listen": ["0.0.0.0:80", "[::]:80", "0.0.0.0:80"] })), "speedy.listen[2]", "listed twice (also listen[0])"),
            (daemon(json!({ "listen": "0.0.0.0:80" })), "package.metadata.speedy", "invalid type"),
            (daemon(json!({ "health-timeout": "soon" })), "speedy.health-timeout", "time span"),
            (daemon(json!({ "notify": "yes" })), "package.metadata.speedy", "invalid type"),
            ({ let mut j = jobs(json!([daily("t")])); j["listen"] = json!(["0.0.0.0:80"]); j }, "speedy.listen", "only a daemon"),
            ({ let mut j = jobs(json!([daily("t")])); j["notify"] = json!(true); j }, "speedy.notify", "only a daemon"),
        ];
        for (speedy, key, message) in cases {
            let error = error_of(speedy.clone());
            assert!(
                error.contains(key) && error.contains(message),
                "{speedy}: {error}"
            );
            assert!(error.contains("speedy-jobs/Cargo.toml"), "{error}");
        }
    }

    #[test]
    fn fleet_hooks_are_for_daemons_with_a_plain_flag_path() {
        let service = resolve(json!({
            "kind": "daemon",
            "on-db-change": "reload",
            "maintenance-flag": "/var/lib/speedy/app/maintenance"
        }))
        .unwrap();
        assert_eq!(
            service.fleet,
            FleetHooks {
                on_db_change: DbChangeAction::Reload,
                maintenance_flag: Some("/var/lib/speedy/app/maintenance".into()),
            }
        );
        assert_eq!(
            resolve(json!({ "kind": "daemon" })).unwrap().fleet,
            FleetHooks::default()
        );
        for bad in [
            "relative/flag",
            "/var/lib/a b",
            "/var/lib/$(id)",
            "/var/../etc/x",
            "/",
        ] {
            let error = resolve(json!({ "kind": "daemon", "maintenance-flag": bad })).unwrap_err();
            assert!(error.key.ends_with("maintenance-flag"), "{bad}: {error}");
        }
        let error = resolve(json!({ "kind": "daemon", "on-db-change": "kill" })).unwrap_err();
        assert!(error.to_string().contains("on-db-change"), "{error}");
    }

    #[test]
    fn a_daemon_keeps_its_health_url() {
        let service =
            resolve(json!({ "kind": "daemon", "health-url": "http://127.0.0.1:8080/healthz" }))
                .unwrap();
        assert_eq!(
            service.kind,
            ServiceKind::Daemon {
                args: vec![],
                health_url: Some("http://127.0.0.1:8080/healthz".into()),
                health_timeout: DEFAULT_HEALTH_TIMEOUT_SECONDS,
                listen: vec![],
                notify: false,
            }
        );
        for good in [
            "https://app.speedy.example/healthz?deep=1",
            "http://[::1]:8080/",
        ] {
            assert_eq!(check_health_url(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn a_daemon_that_listens_gets_a_socket_unit_first() {
        let service = resolve(json!({
            "kind": "daemon",
            "listen": ["0.0.0.0:80", "[::1]:8080"],
            "notify": true,
            "health-timeout": "1min",
        }))
        .unwrap();
        let ServiceKind::Daemon {
            listen,
            notify,
            health_timeout,
            ..
        } = &service.kind
        else {
            panic!("{:?}", service.kind)
        };
        assert_eq!(
            listen,
            &[
                "0.0.0.0:80".parse::<SocketAddr>().unwrap(),
                "[::1]:8080".parse().unwrap()
            ]
        );
        assert!(*notify);
        assert_eq!(*health_timeout, 60);
        assert_eq!(
            service.unit_names(),
            ["speedy-jobs.socket", "speedy-jobs.service"]
        );
    }

    #[test]
    fn invalid_package_name_and_version_are_refused() {
        let mut f = facts(json!({ "speedy": { "kind": "daemon" } }));
        f.name = "Speedy_App".into();
        let error = resolve_facts(&f, &|_| None).unwrap_err();
        assert_eq!(error.key, "package.name");

        let mut f = facts(json!({ "speedy": { "kind": "daemon" }, "deb": { "name": "x" } }));
        f.version = "1.0.0".into();
        let error = resolve_facts(&f, &|_| None).unwrap_err();
        assert!(error.message.contains("two characters"), "{error}");
    }

    #[test]
    fn the_external_calendar_judge_is_consulted() {
        let f = facts(json!({ "speedy": jobs(json!([{ "name": "t", "schedule": "daily" }])) }));
        let error = resolve_facts(&f, &|_| Some(Err("no".into()))).unwrap_err();
        assert!(error.message.contains("no"), "{error}");
    }

    #[test]
    fn cargo_deb_systemd_units_conflict_is_explained() {
        let error = resolve_service(
            &WorkspaceMetadata::default(),
            Path::new("/ws/Cargo.toml"),
            &facts(json!({ "deb": { "systemd-units": {} } })),
            PackageMetadata {
                kind: ServiceKindName::Daemon,
                binary: None,
                args: vec![],
                user: None,
                group: None,
                description: None,
                revision: None,
                config_files: vec![],
                state_directory: None,
                environment: BTreeMap::new(),
                secrets: vec![],
                jobs: vec![],
                randomized_delay: None,
                health_url: None,
                on_db_change: None,
                maintenance_flag: None,
                health_timeout: None,
                listen: vec![],
                notify: false,
            },
            &|_| None,
        )
        .unwrap_err();
        assert_eq!(error.key, "package.metadata.deb.systemd-units");
    }

    #[test]
    fn conffile_destinations() {
        assert!(check_conffile_dest("/etc/speedy/app.conf").is_ok());
        for bad in [
            "/etc/",
            "/etc",
            "/etcx/a",
            "/etc/a/../../b",
            "/etc//a",
            "/etc/./a",
            "/var/a",
            "/etc/a b",
        ] {
            assert!(check_conffile_dest(bad).is_err(), "{bad}");
        }
    }
}
