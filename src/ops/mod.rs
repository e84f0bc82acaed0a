//! The library operations behind the commands: one function per command, each taking
//! an options struct and a [`Listener`], returning a typed report. The binary only
//! parses flags into these options and prints the reports (`crate::output`).
//!
//! This module is also where the pieces meet: the workspace's settings, the flags
//! that override them, the store a location opens and the key that signs for it
//! (docs/ARCHITECTURE.md, "Layers").

mod backup;
mod build;
mod cdn;
mod doctor;
mod early;
mod fleet;
mod history;
mod inspect;
mod key;
mod publish;
mod server_setup;

/// The settings a fleet switch publishes, as `fleet` and `fleet status` report them.
pub use crate::package::fleet::{FleetSettings, Since, EVERY_ROLE};
/// Key health, as `doctor` and `verify` report it.
pub use crate::sign::{FindingSeverity, KeyFinding, KeyHealth};
pub use backup::{
    backup_list, backup_prune, backup_restore, backup_setup, BackupEntry, BackupError, BackupList,
    BackupSetupReport, Pruned, RestoreDestination, RestoreOptions, Restored, IDENTITY_FILE_VAR,
};
pub use build::{build, BuildCommandOptions, BuildOutcome};
pub use doctor::{doctor, CheckStatus, DoctorCheck, DoctorReport};
pub use fleet::{
    fleet, fleet_status, FleetChange, FleetOptions, FleetReport, FleetStatus, FleetStatusOptions,
    RoleMaintenance,
};
pub use history::{
    history, phase, rollback, withdraw, HistoryOptions, HistoryReport, PhaseOptions,
    RollbackOptions, WithdrawOptions,
};
pub use inspect::{
    list, verify, ListReport, ListedPackage, ListedSuite, ReadOptions, VerifyOutcome,
};
pub use key::{
    debsig_policy, key_export, key_generate, DebsigPolicy, KeyExportOptions, KeyExported,
    KeyGenerateOptions, KeyGenerated,
};
pub use publish::{
    promote, publish, release, rollback_apt_conf, rollback_preferences, sources_entry,
    PromoteOptions, PublishControl, PublishOptions, PublishSummary, ReleaseOptions, WriteOptions,
};
pub use server_setup::{
    server_setup, ServerFiles, ServerSetup, ServerSetupOptions, SetupFormat, CLOUD_INIT_SCRIPT_PATH,
};

use crate::config::{ConfigError, RepoConfig, RepoLocation, RepoOverrides, SigningConfig};
use crate::keys::{KeyError, KeyPurpose, ResolvedKey, SigningKeys};
use crate::listener::{Listener, Retrying};
use crate::package::backup::BackupPackage;
use crate::package::keyring::KeyringPackage;
use crate::package::BuildError;
use crate::publish::PublishError;
use crate::sign::{RepoKeys, SignError};
use crate::store::fs::FsStore;
use crate::store::s3::{Credentials, RetryNotice, S3Config, S3Store, S3Transport};
use crate::store::{Store, StoreError};
use crate::workspace::{LockingFlags, MetadataCache, Workspace, WorkspaceError};
use std::path::PathBuf;
use std::sync::Arc;

/// Why a command failed. Each variant's message names the file, key or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Cdn(#[from] crate::cdn::CdnError),
    #[error("cannot read {}: {cause}", path.display())]
    ReadFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "role `{role}` does not install postgresql, so its servers need to know where the database is: \
         pass --db-host ADDRESS (the IP address `db` should resolve to)"
    )]
    DbHostNeeded { role: String },
    /// A secret's value that no `EnvironmentFile=` line can carry; the message names
    /// the variable, never its value.
    #[error(
        "the secret {name} in this environment {why}; its value is not shown. Fix it, or unset {name} to leave the servers' value as it is"
    )]
    SecretValue { name: String, why: &'static str },
    #[error("--suite: {0}")]
    InvalidSuite(String),
    /// A private repository's servers need a read credential to read it at all.
    #[error(
        "{repository} is private (acl = \"private\"): its servers need a read-only key of the bucket. \
         Set SPEEDY_READ_ACCESS_KEY_ID and SPEEDY_READ_SECRET_ACCESS_KEY (a line that starts with a space \
         stays out of the shell's history), or pass --read-credential-file FILE (docs/operations.md, \"Private repositories\")"
    )]
    ReadCredentialNeeded { repository: String },
    /// The message names where the credential came from, never its value.
    #[error("the read credential: {origin} {why}")]
    ReadCredential { origin: String, why: String },
    #[error("{what}: {why}")]
    InvalidUrl { what: &'static str, why: String },
    #[error(
        "suite `{suite}` is not in the repository {repository}: {}",
        if published.is_empty() {
            "it has no suite yet (release to it first)".to_owned()
        } else {
            format!("its suites are {}", published.join(", "))
        }
    )]
    SuiteNotPublished {
        suite: String,
        repository: String,
        published: Vec<String>,
    },
    #[error(
        "{repository}: dists/{suite}/InRelease has Origin: {published}, and the settings now say \
         {configured:?} (`origin` in [workspace.metadata.speedy.repo]; by default `name`, \
         capitalised): a server set up for {configured:?} would not take this suite's \
         changes. Set origin = {published:?}, or publish the suite with --change-origin first"
    )]
    SetupOriginDiffers {
        repository: String,
        suite: String,
        published: String,
        configured: String,
    },
    #[error("the server-setup script: {0}")]
    SetupScript(#[from] crate::package::render::RenderError),
    #[error(
        "the last change of suite {suite} ({command}) added or re-phased no package besides the keyring: name the packages to phase with -p"
    )]
    NothingToPhase { suite: String, command: String },
    #[error(transparent)]
    Fleet(#[from] crate::package::fleet::FleetError),
    #[error("--message goes with `fleet maintenance on`: the page of `off` has no message")]
    MessageWithOff,
    #[error(transparent)]
    Backup(Box<BackupError>),
}

/// Which repository a command works on, and with which key: the workspace's settings
/// with the command line's overrides.
#[derive(Debug, Clone, Default)]
pub struct RepoTarget {
    pub manifest_path: Option<PathBuf>,
    pub locking: LockingFlags,
    pub overrides: RepoOverrides,
    /// `--key-file`.
    pub key_file: Option<PathBuf>,
}

/// The settings of a repository command, resolved once.
pub struct RepoSettings {
    pub workspace: Option<Workspace>,
    pub config: RepoConfig,
    pub signing: SigningConfig,
    pub location: RepoLocation,
}

impl RepoTarget {
    /// The flags that select this repository and key, as sh words (`--manifest-path
    /// P --repo-dir D ...`): a command the tool prints as a next step carries them,
    /// so that it runs as printed, from the same directory and environment.
    pub fn command_line_flags(&self) -> Vec<String> {
        let mut words = Vec::new();
        let mut flag = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                words.push(name.to_owned());
                words.push(crate::shell::quote(value));
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        flag("--manifest-path", path(&self.manifest_path).as_deref());
        flag("--repo-dir", path(&self.overrides.dir).as_deref());
        let spaces = &self.overrides.spaces;
        flag("--bucket", spaces.bucket.as_deref());
        flag("--region", spaces.region.as_deref());
        flag("--endpoint", spaces.endpoint.as_deref());
        flag("--prefix", spaces.prefix.as_deref());
        flag("--addressing", spaces.addressing.as_deref());
        flag("--public-url", spaces.public_url.as_deref());
        flag("--acl", spaces.acl.as_deref());
        flag("--checksums", spaces.checksums.as_deref());
        flag("--key-file", path(&self.key_file).as_deref());
        // cargo's flags: the workspace is read the same way again.
        let locking = self.locking;
        for (on, name) in [
            (locking.locked, "--locked"),
            (locking.offline, "--offline"),
            (locking.frozen, "--frozen"),
        ] {
            if on {
                words.push(name.to_owned());
            }
        }
        words
    }

    /// Loads the workspace and applies the flags.
    pub fn settings(&self) -> Result<RepoSettings, CommandError> {
        let workspace = Workspace::load(self.manifest_path.as_deref(), self.locking)?;
        self.settings_of(workspace)
    }

    /// [`RepoTarget::settings`], with the output of `cargo metadata` they came from,
    /// which is kept for the next command ([`MetadataCache`]).
    fn settings_and_output(&self) -> Result<(RepoSettings, String), CommandError> {
        let manifest = self.manifest_path.as_deref();
        let (workspace, output) = Workspace::load_with_output(manifest, self.locking)?;
        // Best effort: without it, the next command only starts its reads later.
        let _ = MetadataCache::keep(&workspace.target_dir, manifest, self.locking, &output);
        Ok((self.settings_of(workspace)?, output))
    }

    /// [`RepoTarget::settings`], and an S3 transport made meanwhile: `cargo metadata`
    /// takes tens of milliseconds, loading the system's TLS roots a few, and a
    /// command that opens the store then ([`open_store_with`]) need not wait for them
    /// after the settings. `None` when the transport could not be made (opening the
    /// store makes it again and says why) or the repository is not in Spaces.
    pub fn settings_and_transport(
        &self,
    ) -> Result<(RepoSettings, Option<S3Transport>), CommandError> {
        let (settings, transport) = crate::parallel::join(|| self.settings(), S3Transport::new);
        let settings = settings?;
        let transport = match settings.location {
            RepoLocation::Spaces { .. } => transport.ok(),
            RepoLocation::Local(_) => None,
        };
        Ok((settings, transport))
    }

    /// Like [`RepoTarget::settings`], but a command that only needs a key file (`key
    /// export --key-file`) also runs outside any workspace, with the defaults.
    pub fn settings_for_key_file(&self) -> Result<RepoSettings, CommandError> {
        match Workspace::load(self.manifest_path.as_deref(), self.locking) {
            Ok(workspace) => self.settings_of(workspace),
            Err(WorkspaceError::NotInWorkspace { .. }) if self.key_file.is_some() => {
                let here = std::env::current_dir().map_err(|source| CommandError::ReadFile {
                    path: PathBuf::from("."),
                    cause: source,
                })?;
                let config = RepoConfig::resolve(
                    &Default::default(),
                    &here,
                    &here.join("Cargo.toml"),
                    &here.join("target"),
                )?;
                let location = config.location(&self.overrides)?;
                Ok(RepoSettings {
                    workspace: None,
                    config,
                    signing: SigningConfig::default(),
                    location,
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    fn settings_of(&self, workspace: Workspace) -> Result<RepoSettings, CommandError> {
        let config = workspace.repo_config()?;
        let location = config.location(&self.overrides)?;
        Ok(RepoSettings {
            signing: workspace.signing_config()?,
            workspace: Some(workspace),
            config,
            location,
        })
    }
}

impl RepoSettings {
    /// The one place the keys are chosen for this repository: the key and, during a
    /// rotation, the next key.
    pub fn repo_keys(
        &self,
        target: &RepoTarget,
        purpose: KeyPurpose,
        listener: &dyn Listener,
    ) -> Result<RepoKeys, CommandError> {
        Ok(self.resolve_key(target, purpose, listener)?.repo_keys())
    }

    /// Like [`RepoSettings::repo_keys`], saying where the keys came from.
    pub fn resolve_key(
        &self,
        target: &RepoTarget,
        purpose: KeyPurpose,
        listener: &dyn Listener,
    ) -> Result<ResolvedKey, CommandError> {
        Ok(self.keys(target).require(purpose, listener)?)
    }

    pub(super) fn keys<'a>(&'a self, target: &'a RepoTarget) -> SigningKeys<'a> {
        SigningKeys {
            flag: target.key_file.as_deref(),
            config: &self.signing,
            location: &self.location,
        }
    }

    /// The repository's keyring package: `keyring-package`, else
    /// `<short name>-archive-keyring`.
    pub fn keyring_package(&self) -> KeyringPackage {
        let metadata = self.workspace.as_ref().map(|w| &w.metadata);
        KeyringPackage {
            name: self
                .signing
                .keyring_package
                .clone()
                .unwrap_or_else(|| format!("{}-archive-keyring", self.config.short_name())),
            origin: self.config.release.origin.clone(),
            maintainer: metadata
                .and_then(|m| m.maintainer.clone())
                .unwrap_or_else(|| {
                    format!(
                        "{} repository <root@{}.invalid>",
                        self.config.release.origin,
                        self.config.short_name()
                    )
                }),
        }
    }

    /// The repository's fleet package, `<short name>-fleet` (docs/ARCHITECTURE.md,
    /// "Fleet switches").
    pub fn fleet_package_name(&self) -> String {
        format!("{}-fleet", self.config.short_name())
    }

    /// The database backup package, `<short name>-backup`, when the workspace
    /// configures backups (docs/ARCHITECTURE.md, "Database backups").
    pub fn backup_package(&self) -> Result<Option<BackupPackage>, ConfigError> {
        let Some(workspace) = &self.workspace else {
            return Ok(None);
        };
        let keyring = self.keyring_package();
        Ok(workspace.backup_config()?.map(|config| BackupPackage {
            name: format!("{}-backup", self.config.short_name()),
            origin: keyring.origin,
            maintainer: keyring.maintainer,
            config,
        }))
    }

    /// Where the keyring package is built.
    pub fn keyring_dir(&self) -> PathBuf {
        match &self.workspace {
            Some(workspace) => workspace.target_dir.join("speedy").join("keyring"),
            None => PathBuf::from("target/speedy/keyring"),
        }
    }

    /// Where `build` leaves the .debs, which `publish` takes by default.
    pub fn debs_dir(&self) -> PathBuf {
        match &self.workspace {
            Some(workspace) => workspace.debs_dir(),
            None => PathBuf::from("target/speedy/debs"),
        }
    }
}

/// The one place a store is opened for a location. Spaces credentials come from the
/// environment only. The listener hears of requests the store retries for a while,
/// so that a long wait is never silent.
pub fn open_store(
    location: &RepoLocation,
    listener: &dyn Listener,
) -> Result<Box<dyn Store>, StoreError> {
    open_store_with(location, None, listener)
}

/// [`open_store`], an S3 store sending through `transport` when given
/// ([`RepoTarget::settings_and_transport`]).
pub fn open_store_with(
    location: &RepoLocation,
    transport: Option<S3Transport>,
    listener: &dyn Listener,
) -> Result<Box<dyn Store>, StoreError> {
    Ok(match location {
        RepoLocation::Local(dir) => Box::new(FsStore::new(dir)),
        RepoLocation::Spaces { config, .. } => Box::new(open_s3_with(config, transport, listener)?),
    })
}

/// An S3 store whose retry notices go to `listener`.
pub(super) fn open_s3(config: &S3Config, listener: &dyn Listener) -> Result<S3Store, StoreError> {
    open_s3_with(config, None, listener)
}

fn open_s3_with(
    config: &S3Config,
    transport: Option<S3Transport>,
    listener: &dyn Listener,
) -> Result<S3Store, StoreError> {
    let credentials = Credentials::from_env()?;
    let store = match transport {
        Some(transport) => S3Store::with_transport(config.clone(), credentials, transport),
        None => S3Store::new(config.clone(), credentials)?,
    };
    report_retries(&store, listener);
    Ok(store)
}

/// Sends the retry notices of `store` to `listener`, when it can take them from
/// another thread.
fn report_retries(store: &S3Store, listener: &dyn Listener) {
    if let Some(listener) = listener.shared() {
        store.set_retry_notice(Arc::new(move |notice: &RetryNotice| {
            listener.retrying(&Retrying {
                request: notice.request.clone(),
                failure: notice.failure.clone(),
                attempt: notice.attempt,
                seconds_left: notice.time_left.as_secs(),
                never_answered: notice.never_answered,
            })
        }));
    }
}
