//! What a server needs to use the repository, and `server-setup`: one script (or
//! cloud-init user data) that makes a fresh Debian server join the fleet in a role
//! (docs/ARCHITECTURE.md, "Servers").
//!
//! The script is idempotent: every file is written only when its contents differ,
//! the keyring file only until the keyring package owns it (the package may carry
//! newer keys than the script), and apt installs only what is missing.

use super::{CommandError, RepoSettings, RepoTarget};
use crate::config::{check_server_url, resolve_role, ConfigError, Role, Service, ServiceKind};
use crate::keys::KeyPurpose;
use crate::listener::Listener;
use crate::package::render::{fill, RenderError, Template};
use crate::publish::state::{published_origin, published_suites};
use crate::publish::PublishError;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The files that make apt on a server use one suite of the repository, follow its
/// rollbacks, and upgrade from it unattended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerFiles {
    /// The keyring package's name.
    pub keyring_package: String,
    /// Where the keyring lives (the keyring package installs it there too).
    pub keyring_path: String,
    pub sources_path: String,
    /// The deb822 source, `Signed-By:` the keyring.
    pub sources: String,
    pub preferences_path: String,
    /// The pins that make servers follow a rollback.
    pub preferences: String,
    pub apt_conf_path: String,
    /// Lets `apt-get -y` and unattended-upgrades carry out those downgrades.
    pub apt_conf: String,
    pub unattended_path: String,
    /// unattended-upgrades: this repository's suite, and the daily runs switched on.
    pub unattended: String,
}

impl ServerFiles {
    pub fn new(settings: &RepoSettings, url: &str, suite: &str) -> Self {
        let short = settings.config.short_name();
        let keyring = settings.keyring_package();
        let keyring_path = keyring.install_path();
        ServerFiles {
            sources_path: format!("/etc/apt/sources.list.d/{short}.sources"),
            sources: super::sources_entry(url, suite, &keyring_path),
            preferences_path: format!("/etc/apt/preferences.d/{short}.pref"),
            preferences: super::rollback_preferences(&settings.config, &keyring.name),
            apt_conf_path: format!("/etc/apt/apt.conf.d/50{short}-rollback"),
            apt_conf: super::rollback_apt_conf(),
            unattended_path: format!("/etc/apt/apt.conf.d/52{short}-unattended-upgrades"),
            unattended: unattended_upgrades_conf(&settings.config.release.origin, suite),
            keyring_package: keyring.name,
            keyring_path,
        }
    }
}

/// unattended-upgrades takes packages only from the origins it is told about, and
/// runs only when APT::Periodic says so.
fn unattended_upgrades_conf(origin: &str, suite: &str) -> String {
    // In an Origins-Pattern, a comma separates keys: escape the ones in values.
    let escape = |value: &str| value.replace(',', "\\,").replace('"', "");
    format!(
        "// cargo speedy: upgrade this repository's packages unattended, daily.\n\
         Unattended-Upgrade::Origins-Pattern {{\n    \"origin={},suite={}\";\n}};\n\
         APT::Periodic::Update-Package-Lists \"1\";\n\
         APT::Periodic::Unattended-Upgrade \"1\";\n",
        escape(origin),
        escape(suite)
    )
}

/// What `server-setup` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SetupFormat {
    /// A shell script to run as root on the server.
    #[default]
    Script,
    /// `#cloud-config` user data for a new droplet, running the same script.
    CloudInit,
}

#[derive(Debug, Clone, Default)]
pub struct ServerSetupOptions {
    pub repo: RepoTarget,
    pub role: String,
    /// Default: the default suite.
    pub suite: Option<String>,
    /// Where `db` points; default 127.0.0.1 for a role that installs `postgresql`.
    pub db_host: Option<IpAddr>,
    /// The repository URL servers use, when not the configured one (a local
    /// repository served over HTTP, a CDN name).
    pub url: Option<String>,
    pub format: SetupFormat,
    /// A private repository's read credential from this file (`--read-credential-file`)
    /// instead of the environment.
    pub read_credential_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerSetup {
    pub role: String,
    pub suite: String,
    pub url: String,
    pub packages: Vec<String>,
    pub runs_jobs: bool,
    pub db_host: String,
    /// The secrets the role's packages declare that this environment gave (names only):
    /// their values are in `text`.
    pub secrets_given: Vec<String>,
    /// The ones it did not give: the servers' files keep what they hold.
    pub secrets_not_given: Vec<String>,
    /// For a private repository, where the server keeps its read credential (the
    /// credential itself is in `text` only).
    pub read_credential_path: Option<String>,
    /// The script or the user data.
    pub text: String,
}

/// The secrets of one package of the role, as the script sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PackageSecrets {
    package: String,
    /// The units' `EnvironmentFile=`.
    file: String,
    /// The daemon's unit, restarted when its secrets change on a server where the
    /// package was installed already (a job reads the file at each run).
    restart: Vec<String>,
    /// `NAME=value` lines in `EnvironmentFile=` syntax, one per secret given.
    lines: Vec<(String, String)>,
}

/// What the environment gives of the secrets the role's packages declare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct GivenSecrets {
    packages: Vec<PackageSecrets>,
    given: Vec<String>,
    not_given: Vec<String>,
}

/// Reads each secret the role's packages declare from `lookup` (the process
/// environment): set and not empty, it is given; a value that is not UTF-8 text or
/// holds a line break is refused, naming the variable and never its value.
fn given_secrets(
    services: &[Service],
    role: &Role,
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<GivenSecrets, CommandError> {
    let mut result = GivenSecrets::default();
    for service in services
        .iter()
        .filter(|s| !s.secrets.is_empty() && role.packages.contains(&s.deb_name))
    {
        let mut lines = Vec::new();
        for name in &service.secrets {
            let value = lookup(name).filter(|v| !v.is_empty());
            let Some(value) = value else {
                if !result.not_given.contains(name) {
                    result.not_given.push(name.clone());
                }
                continue;
            };
            let invalid = |why| CommandError::SecretValue {
                name: name.clone(),
                why,
            };
            let value = value
                .into_string()
                .map_err(|_| invalid("is not UTF-8 text"))?;
            if value.contains(['\n', '\0']) {
                return Err(invalid(
                    "holds a line break, which a line of the secrets file cannot carry",
                ));
            }
            lines.push((name.clone(), environment_file_line(name, &value)));
            if !result.given.contains(name) {
                result.given.push(name.clone());
            }
        }
        let restart = match &service.kind {
            ServiceKind::Daemon { .. } => vec![format!("{}.service", service.deb_name)],
            ServiceKind::Jobs { .. } => Vec::new(),
        };
        if !lines.is_empty() {
            result.packages.push(PackageSecrets {
                package: service.deb_name.clone(),
                file: service.secrets_file.clone(),
                restart,
                lines,
            });
        }
    }
    // A name given to one package and not to another is given.
    let given = result.given.clone();
    result.not_given.retain(|name| !given.contains(name));
    Ok(result)
}

/// `NAME="value"` as systemd's `EnvironmentFile=` reads it (systemd.exec(5)): inside
/// double quotes a backslash escapes `"`, `\`, `` ` `` and `$` and keeps any other
/// character, and nothing is expanded, so the service sees the value byte for byte.
/// The value must not hold a line break (the caller refuses it).
pub fn environment_file_line(name: &str, value: &str) -> String {
    let mut line = String::with_capacity(name.len() + value.len() + 4);
    line.push_str(name);
    line.push_str("=\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '`' | '$') {
            line.push('\\');
        }
        line.push(c);
    }
    line.push('"');
    line
}

/// The role's setup for a new server.
pub fn server_setup(
    options: &ServerSetupOptions,
    listener: &dyn Listener,
) -> Result<ServerSetup, CommandError> {
    let settings = options.repo.settings()?;
    let workspace = settings.workspace.as_ref().ok_or_else(|| {
        CommandError::Config(ConfigError::new(
            std::path::Path::new("Cargo.toml"),
            "workspace.metadata.speedy.roles",
            "server-setup needs the workspace that declares the roles: pass --manifest-path",
        ))
    })?;
    let services = workspace.services(&[], &|_| None)?;
    let jobs_services: Vec<_> = services
        .iter()
        .filter(|s| matches!(s.kind, ServiceKind::Jobs { .. }))
        .collect();
    let jobs_packages: Vec<String> = jobs_services.iter().map(|s| s.deb_name.clone()).collect();
    // The flag the jobs packages test; every service resolves the same workspace
    // setting, so any service says it when the workspace has no jobs package.
    let jobs_flag = jobs_services
        .first()
        .copied()
        .or(services.first())
        .map(|s| s.jobs_disabled_flag.clone())
        .unwrap_or_else(|| "/etc/speedy/jobs.disabled".to_owned());
    let role = resolve_role(
        &workspace.metadata,
        &workspace.root_manifest,
        &options.role,
        &jobs_packages,
    )?;
    // Everything that reaches the root script is validated first: the suite by the
    // rule `publish` applies, the URL by the one the manifest's `public-url` gets.
    let suite = settings.config.suite_named(options.suite.as_deref());
    crate::repo::layout::check_suite(&suite).map_err(CommandError::InvalidSuite)?;
    let db_host = match options.db_host {
        Some(address) => address,
        None if role.packages.iter().any(|p| p == "postgresql") => IpAddr::from([127, 0, 0, 1]),
        None => return Err(CommandError::DbHostNeeded { role: role.name }),
    };
    let private = private_transport(&settings.location, options, &|name| std::env::var_os(name))?;
    let url = match (&private, &options.url) {
        (Some(_), Some(_)) => {
            return Err(CommandError::InvalidUrl {
                what: "--url",
                why: format!(
                    "{} is a private repository: servers read it from the bucket with their read credential, never over another URL",
                    settings.location.describe()
                ),
            })
        }
        (Some(_), None) => settings.location.server_url(),
        (None, url) => {
            let (url, what) = match url {
                Some(url) => (url.clone(), "--url"),
                None => (
                    settings.location.server_url(),
                    "the repository's URL (pass --url with the one servers use)",
                ),
            };
            check_server_url(&url).map_err(|why| CommandError::InvalidUrl { what, why })?;
            url
        }
    };
    let keys = settings.repo_keys(&options.repo, KeyPurpose::Read, listener)?;
    // The backup credential is tried before anything else is read: a key that cannot
    // write to the backup bucket is refused here, not found out by the first run.
    let backup = backup_setup(&settings, &role, &|name| std::env::var_os(name))?;
    if let (Some(_), Some((id, secret))) = (&backup.package, &backup.credential) {
        if let Some(package) = settings.backup_package()? {
            super::backup::check_upload_credential(&package.config, id, secret, listener)?;
        }
    }
    check_suite_is_published(&settings, &keys.public_key(), &suite, listener)?;
    let secrets = given_secrets(&services, &role, &|name| std::env::var_os(name))?;
    if !secrets.given.is_empty() {
        listener.info(&format!(
            "Secrets {} from this environment are in the {}: pipe it to the server, do not save or log it",
            secrets.given.join(", "),
            match options.format {
                SetupFormat::Script => "script",
                SetupFormat::CloudInit => "user data",
            }
        ));
    }
    if !secrets.not_given.is_empty() {
        listener.warning(&format!(
            "secrets not in this environment, left as they are on the server: {} \
             (a service whose secret is missing does not start)",
            secrets.not_given.join(", ")
        ));
    }
    if let Some(package) = &backup.package {
        match &backup.credential_lines {
            Some(_) => listener.info(&format!(
                "The backup upload credential from this environment is in the {}: pipe it to the server, do not save or log it",
                match options.format {
                    SetupFormat::Script => "script",
                    SetupFormat::CloudInit => "user data",
                }
            )),
            None => listener.warning(&format!(
                "{package}: no upload credential in this environment ({BACKUP_KEY_ID_VAR} and {BACKUP_SECRET_VAR}, or {BACKUP_CREDENTIALS_FILE_VAR}): the server keeps what /etc/{package}/credentials holds, and its backups fail without one"
            )),
        }
    }
    let mut role = role;
    role.packages.extend(backup.package.clone());
    let keyring = keys.public_key().to_binary()?;
    let files = ServerFiles::new(&settings, &url, &suite);
    let script = setup_script(&SetupScript {
        role: &role,
        files: &files,
        keyring: &keyring,
        db_host,
        jobs_flag: &jobs_flag,
        suite: &suite,
        url: &url,
        secrets: &secrets.packages,
        fleet: super::fleet::follower_vars(&settings, &files.sources_path, &role.packages)?,
        private: private.as_ref(),
        credential_in_script: options.format == SetupFormat::Script,
        backup: &backup,
    })?;
    let text = match options.format {
        SetupFormat::Script => script,
        SetupFormat::CloudInit => cloud_config(&role.name, &script, private.as_ref()),
    };
    Ok(ServerSetup {
        role: role.name.clone(),
        suite,
        url,
        packages: role.packages.clone(),
        runs_jobs: role.runs_jobs,
        db_host: db_host.to_string(),
        secrets_given: secrets.given,
        secrets_not_given: secrets.not_given,
        read_credential_path: private.map(|p| p.conf_path),
        text,
    })
}

/// A script for a suite the repository does not have would fail at `apt-get update`
/// on the server, and one for another origin than the suite's would leave the server
/// behind without an error (its unattended-upgrades and pins match the origin): refuse
/// them here, when the repository can be read. When it cannot (no credentials for the
/// bucket on this machine, say), the script is still made.
fn check_suite_is_published(
    settings: &RepoSettings,
    key: &crate::sign::PublicKey,
    suite: &str,
    listener: &dyn Listener,
) -> Result<(), CommandError> {
    let published = super::open_store(&settings.location, listener)
        .map_err(PublishError::from)
        .and_then(|store| {
            let suites = published_suites(store.as_ref())?;
            let origin = match suites.contains_key(suite) {
                true => published_origin(store.as_ref(), key, suite)?,
                false => None,
            };
            Ok((suites, origin))
        });
    let configured = &settings.config.release.origin;
    match published {
        Ok((_, Some(origin))) if origin != *configured => Err(CommandError::SetupOriginDiffers {
            repository: settings.location.describe(),
            suite: suite.to_owned(),
            published: origin,
            configured: configured.clone(),
        }),
        Ok((published, _)) if published.contains_key(suite) => Ok(()),
        Ok((published, _)) => Err(CommandError::SuiteNotPublished {
            suite: suite.to_owned(),
            repository: settings.location.describe(),
            published: published.into_keys().collect(),
        }),
        Err(error) => {
            listener.warning(&format!(
                "cannot read {} to check that it has suite `{suite}`: {error}",
                settings.location.describe()
            ));
            Ok(())
        }
    }
}

struct SetupScript<'a> {
    role: &'a Role,
    files: &'a ServerFiles,
    keyring: &'a [u8],
    db_host: IpAddr,
    jobs_flag: &'a str,
    suite: &'a str,
    url: &'a str,
    secrets: &'a [PackageSecrets],
    /// The fleet follower's `{{name}}` values (`fleet::follower_vars`).
    fleet: Vec<(&'static str, String)>,
    private: Option<&'a PrivateTransport>,
    /// Whether the script writes the read credential itself (the cloud-init form
    /// writes it with `write_files` and leaves it out of the script).
    credential_in_script: bool,
    backup: &'a BackupSetup,
}

/// Where cloud-init leaves the script on a droplet (and where it can be run again).
pub const CLOUD_INIT_SCRIPT_PATH: &str = "/usr/local/sbin/speedy-server-setup";

/// The script, a template like the packages' shell scripts (and read by shellcheck in
/// the tests like them), filled by the same `{{name}}` substitution.
const SETUP_TEMPLATE: Template = Template {
    name: "server-setup.sh",
    text: include_str!("../../templates/server-setup.sh"),
};

/// `apt_get`, the shell function by which the setup script and the fleet follower run
/// apt-get: it waits for another apt's locks, which apt-get itself does not do for
/// `update` (templates/apt-get.sh).
pub(super) const APT_GET_FUNCTION: &str = include_str!("../../templates/apt-get.sh");

/// The script. Every value goes in as one single-quoted sh word (`shell::quote`), so
/// none can end a comment or a here-document whatever it holds; the only
/// here-document carries base64, whose alphabet cannot spell its terminator.
fn setup_script(setup: &SetupScript<'_>) -> Result<String, RenderError> {
    let files = setup.files;
    let role = setup.role;
    let quote = |value: &str| crate::shell::quote(value);
    let vars: BTreeMap<&str, String> = [
        ("apt_get", APT_GET_FUNCTION.trim_end().to_owned()),
        ("role", quote(&role.name)),
        ("url", quote(setup.url)),
        ("suite", quote(setup.suite)),
        ("db_host", quote(&setup.db_host.to_string())),
        ("keyring_package", quote(&files.keyring_package)),
        ("keyring_path", quote(&files.keyring_path)),
        ("keyring_base64", base64_lines(setup.keyring)),
        (
            "runs_jobs",
            (if role.runs_jobs { "yes" } else { "no" }).to_owned(),
        ),
        ("jobs_flag", quote(setup.jobs_flag)),
        (
            "packages",
            role.packages
                .iter()
                .map(|p| quote(p))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("sources", quote(&files.sources)),
        ("sources_path", quote(&files.sources_path)),
        ("preferences", quote(&files.preferences)),
        ("preferences_path", quote(&files.preferences_path)),
        ("apt_conf", quote(&files.apt_conf)),
        ("apt_conf_path", quote(&files.apt_conf_path)),
        ("unattended", quote(&files.unattended)),
        ("unattended_path", quote(&files.unattended_path)),
        ("secrets", secrets_lines(setup.secrets)),
        (
            "private",
            (if setup.private.is_some() { "yes" } else { "no" }).to_owned(),
        ),
        ("transport_method_path", quote(TRANSPORT_METHOD_PATH)),
        (
            "transport_conf_path",
            quote(setup.private.map(|p| p.conf_path.as_str()).unwrap_or("")),
        ),
        (
            "transport_base64",
            match setup.private {
                Some(_) => base64_lines(TRANSPORT_METHOD.as_bytes()),
                None => String::new(),
            },
        ),
        (
            "transport_conf",
            quote(match setup.private {
                Some(p) if setup.credential_in_script => p.conf.as_str(),
                _ => "",
            }),
        ),
        ("backup", backup_lines(setup.backup)),
    ]
    .into_iter()
    .chain(setup.fleet.iter().cloned())
    .collect();
    fill(&SETUP_TEMPLATE, &vars)
}

/// One `set_secrets FILE PACKAGE UNITS NAMES LINES` call per package: every value
/// a quoted word, passed to a shell function (never on a command line of its own).
fn secrets_lines(secrets: &[PackageSecrets]) -> String {
    let quote = |value: &str| crate::shell::quote(value);
    secrets
        .iter()
        .map(|package| {
            let names: Vec<&str> = package.lines.iter().map(|(n, _)| n.as_str()).collect();
            let lines: Vec<&str> = package.lines.iter().map(|(_, l)| l.as_str()).collect();
            format!(
                "# shellcheck disable=SC1003,SC2016 # quoted values: nothing in them is the shell's\n\
                 set_secrets {} {} {} {} {}",
                quote(&package.file),
                quote(&package.package),
                quote(&package.restart.join(" ")),
                quote(&names.join(" ")),
                quote(&lines.join("\n"))
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- Database backups (docs/ARCHITECTURE.md, "Database backups") -------------------
// Kept apart from the repository's own setup above: a role that installs `postgresql`
// gets the backup package and, when this environment gives it, its upload credential.

/// The backup upload credential: these two variables, or a file of
/// `AWS_ACCESS_KEY_ID=` and `AWS_SECRET_ACCESS_KEY=` lines named by the third.
pub const BACKUP_KEY_ID_VAR: &str = "SPEEDY_BACKUP_ACCESS_KEY_ID";
pub const BACKUP_SECRET_VAR: &str = "SPEEDY_BACKUP_SECRET_ACCESS_KEY";
pub const BACKUP_CREDENTIALS_FILE_VAR: &str = "SPEEDY_BACKUP_CREDENTIALS_FILE";

/// What the script does about backups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct BackupSetup {
    /// The backup package, for a role that runs PostgreSQL in a workspace with backups.
    package: Option<String>,
    /// `/etc/<package>/credentials`.
    credentials_path: String,
    /// Its two lines, when the environment gives the credential.
    credential_lines: Option<String>,
    /// The key id and secret, for the write check.
    credential: Option<(String, String)>,
}

fn backup_setup(
    settings: &RepoSettings,
    role: &Role,
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<BackupSetup, CommandError> {
    let Some(package) = settings.backup_package()? else {
        return Ok(BackupSetup::default());
    };
    if !role.packages.iter().any(|p| p == "postgresql") {
        return Ok(BackupSetup::default());
    }
    let text = |name: &str, value: std::ffi::OsString| {
        let invalid = |why| CommandError::SecretValue {
            name: name.to_owned(),
            why,
        };
        let value = value
            .into_string()
            .map_err(|_| invalid("is not UTF-8 text"))?;
        if value.contains(['\n', '\0', '\r']) {
            return Err(invalid(
                "holds a line break, which a line of the credentials file cannot carry",
            ));
        }
        Ok(value)
    };
    let given = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let pair = match (given(BACKUP_KEY_ID_VAR), given(BACKUP_SECRET_VAR)) {
        (Some(id), Some(secret)) => Some((
            text(BACKUP_KEY_ID_VAR, id)?,
            text(BACKUP_SECRET_VAR, secret)?,
        )),
        (None, None) => match given(BACKUP_CREDENTIALS_FILE_VAR) {
            Some(path) => {
                let path = std::path::PathBuf::from(path);
                let contents =
                    std::fs::read_to_string(&path).map_err(|cause| CommandError::ReadFile {
                        path: path.clone(),
                        cause,
                    })?;
                let field = |key: &str| {
                    contents.lines().find_map(|line| {
                        line.trim()
                            .strip_prefix(key)
                            .and_then(|rest| rest.strip_prefix('='))
                            .map(|v| v.trim().to_owned())
                    })
                };
                match (field("AWS_ACCESS_KEY_ID"), field("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                        Some((id, secret))
                    }
                    _ => {
                        return Err(CommandError::SecretValue {
                            name: BACKUP_CREDENTIALS_FILE_VAR.to_owned(),
                            why: "names a file without both AWS_ACCESS_KEY_ID= and AWS_SECRET_ACCESS_KEY= lines",
                        })
                    }
                }
            }
            None => None,
        },
        (Some(_), None) | (None, Some(_)) => {
            return Err(CommandError::SecretValue {
                name: format!("{BACKUP_KEY_ID_VAR}/{BACKUP_SECRET_VAR}"),
                why: "has one of the two set: the backup credential needs both",
            })
        }
    };
    Ok(BackupSetup {
        credentials_path: package.credentials_path(),
        credential_lines: pair.as_ref().map(|(id, secret)| {
            format!("AWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}\n")
        }),
        credential: pair,
        package: Some(package.name),
    })
}

/// The script's backup section: the credential file, root's only, written before the
/// package is installed so that the first run has it.
fn backup_lines(backup: &BackupSetup) -> String {
    let (Some(_), Some(lines)) = (&backup.package, &backup.credential_lines) else {
        return String::new();
    };
    let quote = |value: &str| crate::shell::quote(value);
    format!(
        "# Database backups: the upload credential of the backup package (root's only;\n\
         # systemd hands the backup service a copy). printf is a builtin: no command line\n\
         # shows it.\n\
         mkdir -p {dir}\n\
         printf '%s' {lines} | write_file {path} 600",
        dir = quote(
            std::path::Path::new(&backup.credentials_path)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
                .as_str()
        ),
        lines = quote(lines),
        path = quote(&backup.credentials_path),
    )
}

/// `#cloud-config` that installs the script and runs it once, at first boot; for a
/// private repository, it also writes the read credential's file, root's only
/// (cloud-init writes every file before `runcmd`).
fn cloud_config(role: &str, script: &str, private: Option<&PrivateTransport>) -> String {
    let indented: String = script
        .lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_owned()
            } else {
                format!("      {line}\n")
            }
        })
        .collect();
    let credential = match private {
        Some(private) => {
            let content: String = private
                .conf
                .lines()
                .map(|line| format!("      {line}\n"))
                .collect();
            format!(
                "  - path: {}\n    \
                     owner: root:root\n    \
                     permissions: '0600'\n    \
                     content: |\n{content}",
                private.conf_path
            )
        }
        None => String::new(),
    };
    format!(
        "#cloud-config\n\
         # cargo speedy server-setup --role {role} --format cloud-init: user data for a new droplet.\n\
         # The script stays at {CLOUD_INIT_SCRIPT_PATH} (root's only: it may hold the\n\
         # services' secrets, and so may this user data); running it again changes nothing.\n\
         write_files:\n  \
           - path: {CLOUD_INIT_SCRIPT_PATH}\n    \
             owner: root:root\n    \
             permissions: '0700'\n    \
             content: |\n{indented}{credential}\
         runcmd:\n  \
           - [{CLOUD_INIT_SCRIPT_PATH}]\n"
    )
}

// --- Private repositories (docs/ARCHITECTURE.md, "Private repositories") ---

/// The apt method that reads a private repository, as the script installs it.
const TRANSPORT_METHOD: &str = include_str!("../../templates/apt-method-speedy-s3");
/// Where apt looks for the method of the `speedy-s3` scheme.
pub const TRANSPORT_METHOD_PATH: &str = "/usr/lib/apt/methods/speedy-s3";
/// Where the method finds each bucket's endpoint and read credential.
pub const TRANSPORT_CONF_DIR: &str = "/etc/apt/speedy-s3";
/// The read credential of a private repository, from the environment...
pub const READ_ACCESS_KEY_ID_VAR: &str = "SPEEDY_READ_ACCESS_KEY_ID";
pub const READ_SECRET_ACCESS_KEY_VAR: &str = "SPEEDY_READ_SECRET_ACCESS_KEY";

/// What a server of a private repository gets besides the public files: the method's
/// settings for the bucket with the read credential.
struct PrivateTransport {
    /// `/etc/apt/speedy-s3/BUCKET.conf`.
    conf_path: String,
    /// Its contents: endpoint, region, addressing and the credential.
    conf: zeroize::Zeroizing<String>,
}

/// For a private repository, its transport's settings with the read credential from
/// `--read-credential-file` or the environment (`lookup`); `None` for a public one.
/// Without a credential a private repository is refused: its servers could read
/// nothing.
fn private_transport(
    location: &crate::config::RepoLocation,
    options: &ServerSetupOptions,
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<PrivateTransport>, CommandError> {
    let crate::config::RepoLocation::Spaces { config, .. } = location else {
        return Ok(None);
    };
    if config.public_read {
        return Ok(None);
    }
    let credential = match &options.read_credential_file {
        Some(path) => read_credential_file(path)?,
        None => read_credential_environment(lookup)?.ok_or_else(|| {
            CommandError::ReadCredentialNeeded {
                repository: location.describe(),
            }
        })?,
    };
    let addressing = if config.path_style { "path" } else { "virtual" };
    let conf = zeroize::Zeroizing::new(format!(
        "# cargo speedy server-setup: how apt reads the private bucket {bucket} (root's only)\n\
         endpoint={endpoint}\nregion={region}\naddressing={addressing}\n\
         access_key_id={id}\nsecret_access_key={secret}\n",
        bucket = config.bucket,
        endpoint = config.endpoint.trim_end_matches('/'),
        region = config.region,
        id = credential.access_key_id.as_str(),
        secret = credential.secret_access_key.as_str(),
    ));
    Ok(Some(PrivateTransport {
        conf_path: format!("{TRANSPORT_CONF_DIR}/{}.conf", config.bucket),
        conf,
    }))
}

/// A read-only access key of the bucket.
pub(super) struct ReadCredential {
    pub(super) access_key_id: zeroize::Zeroizing<String>,
    pub(super) secret_access_key: zeroize::Zeroizing<String>,
}

/// Both variables, or neither; a value the transport's settings cannot carry is
/// refused, naming the variable and never its value.
pub(super) fn read_credential_environment(
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<ReadCredential>, CommandError> {
    let value = |name: &'static str| -> Result<Option<zeroize::Zeroizing<String>>, CommandError> {
        match lookup(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(value) => {
                let value = zeroize::Zeroizing::new(value.into_string().map_err(|_| {
                    CommandError::ReadCredential {
                        origin: name.to_owned(),
                        why: "is not UTF-8 text".into(),
                    }
                })?);
                check_credential_value(&value, name == READ_ACCESS_KEY_ID_VAR).map_err(|why| {
                    CommandError::ReadCredential {
                        origin: name.to_owned(),
                        why,
                    }
                })?;
                Ok(Some(value))
            }
        }
    };
    match (
        value(READ_ACCESS_KEY_ID_VAR)?,
        value(READ_SECRET_ACCESS_KEY_VAR)?,
    ) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(ReadCredential {
            access_key_id,
            secret_access_key,
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(CommandError::ReadCredential {
            origin: READ_SECRET_ACCESS_KEY_VAR.to_owned(),
            why: format!("is not set, but {READ_ACCESS_KEY_ID_VAR} is: give both"),
        }),
        (None, Some(_)) => Err(CommandError::ReadCredential {
            origin: READ_ACCESS_KEY_ID_VAR.to_owned(),
            why: format!("is not set, but {READ_SECRET_ACCESS_KEY_VAR} is: give both"),
        }),
    }
}

/// A file of `SPEEDY_READ_ACCESS_KEY_ID=...` and `SPEEDY_READ_SECRET_ACCESS_KEY=...`
/// lines (blank lines and `#` comments allowed).
pub(super) fn read_credential_file(path: &std::path::Path) -> Result<ReadCredential, CommandError> {
    let at = |line: Option<usize>, why: String| CommandError::ReadCredential {
        origin: match line {
            Some(n) => format!("{}, line {n}", path.display()),
            None => path.display().to_string(),
        },
        why,
    };
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| at(None, format!("cannot be read: {e}")))?,
    );
    let mut id = None;
    let mut secret = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or_else(|| {
            at(
                Some(n + 1),
                "is not NAME=value (its contents are not shown)".into(),
            )
        })?;
        let (slot, is_key_id) = match name.trim() {
            READ_ACCESS_KEY_ID_VAR => (&mut id, true),
            READ_SECRET_ACCESS_KEY_VAR => (&mut secret, false),
            other => {
                return Err(at(
                    Some(n + 1),
                    format!(
                        "{other:?} is not {READ_ACCESS_KEY_ID_VAR} or {READ_SECRET_ACCESS_KEY_VAR}"
                    ),
                ))
            }
        };
        let value = value.trim();
        check_credential_value(value, is_key_id)
            .map_err(|why| at(Some(n + 1), format!("{}: {why}", name.trim())))?;
        *slot = Some(zeroize::Zeroizing::new(value.to_owned()));
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(ReadCredential {
            access_key_id,
            secret_access_key,
        }),
        (None, _) => Err(at(None, format!("has no {READ_ACCESS_KEY_ID_VAR}= line"))),
        (_, None) => Err(at(
            None,
            format!("has no {READ_SECRET_ACCESS_KEY_VAR}= line"),
        )),
    }
}

/// Access keys are printable ASCII without quotes or backslashes (they go into a
/// curl `user = "ID:SECRET"` line on the server), and an ID has no colon.
fn check_credential_value(value: &str, is_key_id: bool) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value
        .chars()
        .any(|c| !c.is_ascii_graphic() || c == '"' || c == '\\' || (is_key_id && c == ':'))
    {
        return Err(format!(
            "holds a character an access key does not have (space, quote, backslash, control{}); its value is not shown",
            if is_key_id { ", colon" } else { "" }
        ));
    }
    Ok(())
}

/// Base64 in lines of 76 characters (as `base64` writes them), for a here-document:
/// the alphabet has no `_`, so no line can be its terminator.
fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    // The alphabet is ASCII, so every 76-byte chunk is whole characters.
    encoded
        .as_bytes()
        .chunks(76)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64_lines(b""), "");
        assert_eq!(base64_lines(b"f"), "Zg==");
        assert_eq!(base64_lines(b"fo"), "Zm8=");
        assert_eq!(base64_lines(b"foo"), "Zm9v");
        assert_eq!(base64_lines(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
        let long = base64_lines(&[0u8; 100]);
        assert!(long.lines().all(|l| l.len() <= 76));
        assert_eq!(long.lines().count(), 2);
        assert_eq!(long.lines().next().map(str::len), Some(76));
    }

    #[test]
    fn environment_file_lines_keep_every_character_but_a_line_break() {
        for (value, line) in [
            ("plain", "X=\"plain\""),
            ("", "X=\"\""),
            (" two  spaces ", "X=\" two  spaces \""),
            ("say \"hi\"", "X=\"say \\\"hi\\\"\""),
            ("C:\\path\\", "X=\"C:\\\\path\\\\\""),
            ("$HOME ${X} `id`", "X=\"\\$HOME \\${X} \\`id\\`\""),
            ("it's 100% #1 ;", "X=\"it's 100% #1 ;\""),
            ("tab\tcr\r", "X=\"tab\tcr\r\""),
        ] {
            assert_eq!(environment_file_line("X", value), line, "{value:?}");
        }
    }

    fn secrets_service(name: &str, kind: ServiceKind, secrets: &[&str]) -> Service {
        let manifest = format!("/ws/{name}/Cargo.toml");
        Service {
            package: name.into(),
            deb_name: name.into(),
            cargo_version: "1.0.0".into(),
            manifest_path: manifest.clone().into(),
            crate_dir: format!("/ws/{name}").into(),
            version: crate::repo::syntax::DebianVersion::parse("1.0.0-1").unwrap(),
            description: "d".into(),
            kind,
            binary: name.into(),
            binary_source: "src/main.rs".into(),
            install_path: format!("/usr/libexec/speedy/{name}"),
            user: "speedy".into(),
            group: "speedy".into(),
            state_directory: format!("speedy/{name}"),
            environment: BTreeMap::new(),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            secrets_file: format!("/etc/speedy/{name}.secrets"),
            config_files: Vec::new(),
            maintainer: "T <t@example.org>".into(),
            documentation: None,
            jobs_disabled_flag: "/etc/speedy/jobs.disabled".into(),
            deb_metadata: None,
            overrides_dir: "/ws/debian".into(),
            fleet: Default::default(),
        }
    }

    #[test]
    fn secrets_come_from_the_environment_for_the_roles_packages_only() {
        let daemon = ServiceKind::Daemon {
            args: Vec::new(),
            health_url: None,
            health_timeout: 30,
            listen: Vec::new(),
            notify: false,
        };
        let jobs = ServiceKind::Jobs { jobs: Vec::new() };
        let services = [
            secrets_service("app", daemon.clone(), &["DATABASE_URL", "API_TOKEN"]),
            secrets_service("jobs", jobs, &["DATABASE_URL", "EMPTY"]),
            secrets_service("other", daemon, &["OTHER"]),
        ];
        let role = Role {
            name: "web".into(),
            packages: vec!["app".into(), "jobs".into(), "postgresql".into()],
            runs_jobs: true,
        };
        let env = |name: &str| match name {
            "DATABASE_URL" => Some("postgres://u:p w@db/app".into()),
            "EMPTY" => Some("".into()),
            "OTHER" => Some("x".into()),
            _ => None,
        };
        let given = given_secrets(&services, &role, &env).unwrap();
        assert_eq!(given.given, ["DATABASE_URL"]);
        assert_eq!(given.not_given, ["API_TOKEN", "EMPTY"]);
        let line = "DATABASE_URL=\"postgres://u:p w@db/app\"".to_owned();
        assert_eq!(
            given.packages,
            [
                PackageSecrets {
                    package: "app".into(),
                    file: "/etc/speedy/app.secrets".into(),
                    restart: vec!["app.service".into()],
                    lines: vec![("DATABASE_URL".into(), line.clone())],
                },
                PackageSecrets {
                    package: "jobs".into(),
                    file: "/etc/speedy/jobs.secrets".into(),
                    restart: vec![],
                    lines: vec![("DATABASE_URL".into(), line)],
                },
            ]
        );
        let script = secrets_lines(&given.packages);
        assert_eq!(
            script,
            "# shellcheck disable=SC1003,SC2016 # quoted values: nothing in them is the shell's\n\
             set_secrets /etc/speedy/app.secrets app app.service DATABASE_URL 'DATABASE_URL=\"postgres://u:p w@db/app\"'\n\
             # shellcheck disable=SC1003,SC2016 # quoted values: nothing in them is the shell's\n\
             set_secrets /etc/speedy/jobs.secrets jobs '' DATABASE_URL 'DATABASE_URL=\"postgres://u:p w@db/app\"'"
        );

        // A value no line can carry is refused by name; the message never shows it.
        for (value, why) in [
            (std::ffi::OsString::from("top\nsecret"), "line break"),
            (
                std::os::unix::ffi::OsStringExt::from_vec(b"top\xffsecret".to_vec()),
                "UTF-8",
            ),
        ] {
            let env = |name: &str| (name == "API_TOKEN").then(|| value.clone());
            let error = given_secrets(&services, &role, &env)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("API_TOKEN") && error.contains(why),
                "{error}"
            );
            assert!(
                !error.contains("top") && !error.contains("secret\n"),
                "{error}"
            );
        }
    }

    #[test]
    fn origins_pattern_escapes_commas() {
        let conf = unattended_upgrades_conf("Speedy, Inc", "dev");
        assert!(
            conf.contains("\"origin=Speedy\\, Inc,suite=dev\";"),
            "{conf}"
        );
    }

    /// Where a byte of an sh script is, as far as the scripts of this module need it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Context {
        Code,
        Single,
        Double,
        Comment,
        HereDoc,
    }

    /// Each line of `script` with the context of each of its characters: enough of
    /// sh(1)'s lexer for quotes, comments and quoted here-documents.
    fn contexts(script: &str) -> Vec<Vec<(char, Context)>> {
        let mut lines = Vec::new();
        let mut state = Context::Code;
        let mut pending: Vec<String> = Vec::new();
        let mut terminator: Option<String> = None;
        for line in script.split('\n') {
            let mut out = Vec::new();
            if let Some(end) = &terminator {
                if line == end {
                    terminator = pending.pop();
                    out.extend(line.chars().map(|c| (c, Context::Code)));
                } else {
                    out.extend(line.chars().map(|c| (c, Context::HereDoc)));
                }
                lines.push(out);
                continue;
            }
            let chars: Vec<char> = line.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                let c = chars[i];
                let word_start = i == 0 || " \t;|&(".contains(chars[i - 1]);
                match state {
                    Context::Code if c == '\'' => state = Context::Single,
                    Context::Code if c == '"' => state = Context::Double,
                    Context::Code if c == '#' && word_start => state = Context::Comment,
                    Context::Code if c == '\\' => {
                        out.push((c, state));
                        i += 1;
                    }
                    Context::Code if chars[i..].starts_with(&['<', '<']) => {
                        let rest: String = chars[i + 2..].iter().collect();
                        let word = rest.trim_start_matches('-').trim_start();
                        let word: String = word
                            .trim_start_matches(['\'', '"'])
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        assert!(
                            rest.trim_start().starts_with('\''),
                            "only quoted here-documents: {line}"
                        );
                        pending.insert(0, word);
                    }
                    Context::Single if c == '\'' => {
                        out.push((c, state));
                        state = Context::Code;
                        i += 1;
                        continue;
                    }
                    Context::Double if c == '\\' => {
                        out.push((c, state));
                        i += 1;
                    }
                    Context::Double if c == '"' => {
                        out.push((c, state));
                        state = Context::Code;
                        i += 1;
                        continue;
                    }
                    _ => {}
                }
                if let Some(&c) = chars.get(i) {
                    out.push((c, state));
                }
                i += 1;
            }
            if state == Context::Comment {
                state = Context::Code;
            }
            if state == Context::Code && !pending.is_empty() {
                terminator = pending.pop();
            }
            lines.push(out);
        }
        assert!(terminator.is_none(), "an unterminated here-document");
        lines
    }

    /// Hostile values that bypass the validation of `server_setup`: the script must
    /// keep every one of them a single-quoted word (never code, a comment or inside
    /// a here-document), so that none can end a here-document or a comment.
    #[test]
    fn no_value_can_leave_its_quotes() {
        for attack in [
            "\nSPEEDY_KEYRING\ntouch /tmp/PWNED\n",
            "'\nSPEEDY_KEYRING\n\"\ntouch /tmp/PWNED # `id` $(id)\n'\\\nEOF\n",
            "\"; touch /tmp/PWNED; \"",
        ] {
            hostile_values_stay_quoted(attack);
        }
    }

    fn hostile_values_stay_quoted(attack: &str) {
        let evil = |what: &str| format!("x{what}{attack}");
        let role = Role {
            name: evil("role"),
            packages: vec![evil("package"), "speedy-app".to_owned()],
            runs_jobs: false,
        };
        let files = ServerFiles {
            keyring_package: evil("keyring-package"),
            keyring_path: evil("keyring-path"),
            sources_path: evil("sources-path"),
            sources: super::super::sources_entry(&evil("url"), &evil("suite"), "/k.gpg"),
            preferences_path: evil("preferences-path"),
            preferences: evil("preferences"),
            apt_conf_path: evil("apt-conf-path"),
            apt_conf: evil("apt-conf"),
            unattended_path: evil("unattended-path"),
            unattended: unattended_upgrades_conf(&evil("origin"), &evil("suite")),
        };
        let url = evil("url");
        let suite = evil("suite");
        let jobs_flag = evil("jobs-flag");
        let secrets = [PackageSecrets {
            package: evil("secrets-package"),
            file: evil("secrets-file"),
            restart: vec![evil("unit")],
            lines: vec![
                (evil("name"), environment_file_line("A", &evil("value"))),
                ("B".into(), evil("line")),
            ],
        }];
        let transport = PrivateTransport {
            conf_path: evil("conf-path"),
            conf: zeroize::Zeroizing::new(evil("credential")),
        };
        let method_lines = base64_lines(TRANSPORT_METHOD.as_bytes()).lines().count();
        for (runs_jobs, private) in [(false, None), (true, None), (true, Some(&transport))] {
            let role = Role {
                runs_jobs,
                ..role.clone()
            };
            let script = setup_script(&SetupScript {
                role: &role,
                files: &files,
                keyring: &[0xfb; 300],
                db_host: IpAddr::from([10, 0, 0, 1]),
                jobs_flag: &jobs_flag,
                suite: &suite,
                url: &url,
                secrets: &secrets,
                fleet: [
                    "fleet_package",
                    "fleet_settings_path",
                    "fleet_role_file",
                    "fleet_initial_db_file",
                    "follower_unit",
                    "follower_script_path",
                    "follower_script",
                    "follower_service_path",
                    "follower_service",
                    "follower_timer_path",
                    "follower_timer",
                ]
                .into_iter()
                .map(|name| (name, crate::shell::quote(&evil(name))))
                .collect(),
                private,
                credential_in_script: true,
                backup: &BackupSetup {
                    package: Some(evil("backup-package")),
                    credentials_path: format!("/etc/{}/credentials", evil("backup-dir")),
                    credential_lines: Some(evil("backup-credential")),
                    credential: None,
                },
            })
            .unwrap();
            let lines = contexts(&script);
            let mut here_documents = 0;
            for (number, line) in lines.iter().enumerate() {
                let text: String = line.iter().map(|(c, _)| c).collect();
                for (at, _) in text.match_indices("PWNED") {
                    let context = line[text[..at].chars().count()].1;
                    assert_eq!(
                        context,
                        Context::Single,
                        "line {}: {text}\n{script}",
                        number + 1
                    );
                }
                if line.iter().any(|(_, c)| *c == Context::HereDoc) {
                    here_documents += 1;
                    assert!(
                        text.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)),
                        "only base64 in a here-document: {text}"
                    );
                }
            }
            assert_eq!(
                here_documents,
                6 + if private.is_some() { method_lines } else { 0 },
                "the keyring's 400 base64 characters (and the apt method's)"
            );
            // A value's line that reads like the terminator is inside its quotes; the
            // one terminator the shell sees is the template's own.
            let terminators: Vec<Context> = lines
                .iter()
                .filter(|line| line.iter().map(|(c, _)| c).collect::<String>() == "SPEEDY_KEYRING")
                .map(|line| line[0].1)
                .collect();
            assert_eq!(
                terminators
                    .iter()
                    .filter(|c| **c != Context::Single)
                    .count(),
                1,
                "{terminators:?}\n{script}"
            );
            // 34 in the repository's part (2 more for a private one), 3 in the backup
            // section (directory, file, lines).
            assert_eq!(
                script.matches("PWNED").count(),
                37 + if private.is_some() { 2 } else { 0 },
                "{script}"
            );
            let syntax = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(syntax.status.success(), "sh -n: {syntax:?}");
        }
    }
}
