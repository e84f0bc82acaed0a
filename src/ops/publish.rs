//! `publish`, `release` and `promote`: every command that writes a suite goes through
//! [`crate::publish::Publish`], so each keeps the publish invariants.

use super::{open_store, CommandError, RepoSettings, RepoTarget};
use crate::keys::KeyPurpose;
use crate::listener::Listener;
use crate::package::{self, BuildOptions};
use crate::publish::lock::LockOptions;
use crate::publish::{self, IncomingDeb, Publish, PublishReport};
use crate::repo::layout::LOCK_KEY;
use crate::sign::SigningKey;
use crate::store::Store;
use std::path::PathBuf;
use std::time::Duration;

/// How a write to the repository behaves, for every command that writes one.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishControl {
    /// Plan and report, change nothing.
    pub dry_run: bool,
    /// How long to wait for another publisher's lock.
    pub wait_for_lock: Option<Duration>,
    /// Remove a stale lock left by a publish that died.
    pub break_lock: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    pub repo: RepoTarget,
    /// Default: `default-suite`, else the first configured suite.
    pub suite: Option<String>,
    /// Default: every .deb in target/speedy/debs.
    pub debs: Vec<PathBuf>,
    pub control: PublishControl,
}

#[derive(Debug, Clone)]
pub struct ReleaseOptions {
    pub repo: RepoTarget,
    pub suite: Option<String>,
    pub build: BuildOptions,
    /// Leave the .debs without a debsigs signature.
    pub no_sign: bool,
    pub control: PublishControl,
}

#[derive(Debug, Clone, Default)]
pub struct PromoteOptions {
    pub repo: RepoTarget,
    pub from: String,
    pub to: String,
    /// Default: every package, the newest version of each.
    pub packages: Vec<String>,
    pub control: PublishControl,
}

/// What a publish did, and where servers find it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishSummary {
    #[serde(flatten)]
    pub report: PublishReport,
    /// The repository, for messages: a path or an s3:// URL.
    pub repository: String,
    /// What servers put in `URIs:`.
    pub url: String,
}

pub fn publish(
    options: &PublishOptions,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    let settings = options.repo.settings()?;
    let debs = if options.debs.is_empty() {
        publish::debs_in(&settings.debs_dir())
    } else {
        options.debs.clone()
    };
    let key = settings.signing_key(&options.repo, KeyPurpose::Publish, listener)?;
    let store = open_store(&settings.location)?;
    let incoming = publish::read_debs(&debs)?;
    write_suite(
        &settings,
        store.as_ref(),
        &key,
        options.suite.as_deref(),
        &incoming,
        options.control,
        listener,
    )
}

/// `build`, then `publish` of what was built.
pub fn release(
    options: &ReleaseOptions,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    let settings = options.repo.settings()?;
    let key = settings.signing_key(&options.repo, KeyPurpose::Publish, listener)?;
    let store = open_store(&settings.location)?;
    // The cheapest request that proves the bucket and the credentials work: a wrong
    // bucket or missing credentials should not cost a build.
    store.head(LOCK_KEY)?;
    let plan = package::plan(&options.build, listener)?;
    let signer = (!options.no_sign && settings.signing.sign_debs).then_some(&key);
    let built = package::build(&plan, &options.build, signer, listener)?;
    let debs: Vec<PathBuf> = built.into_iter().map(|d| d.path).collect();
    let incoming = publish::read_debs(&debs)?;
    write_suite(
        &settings,
        store.as_ref(),
        &key,
        options.suite.as_deref(),
        &incoming,
        options.control,
        listener,
    )
}

/// The newest packages of one suite into another: index entries only, no bytes.
pub fn promote(
    options: &PromoteOptions,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    let settings = options.repo.settings()?;
    let key = settings.signing_key(&options.repo, KeyPurpose::Republish, listener)?;
    let store = open_store(&settings.location)?;
    let incoming = publish::promotion(
        store.as_ref(),
        &key.public_key(),
        &options.from,
        &options.packages,
    )?;
    write_suite(
        &settings,
        store.as_ref(),
        &key,
        Some(&options.to),
        &incoming,
        options.control,
        listener,
    )
}

fn write_suite(
    settings: &RepoSettings,
    store: &dyn Store,
    key: &SigningKey,
    suite: Option<&str>,
    incoming: &[IncomingDeb],
    control: PublishControl,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    let report = Publish {
        store,
        key,
        suite: suite.unwrap_or(&settings.config.default_suite).to_owned(),
        config: &settings.config,
        lock: LockOptions {
            wait: control.wait_for_lock,
            break_lock: control.break_lock,
        },
        dry_run: control.dry_run,
        now: &crate::clock::now,
    }
    .run(incoming, listener)?;
    Ok(PublishSummary {
        report,
        repository: settings.location.describe(),
        url: settings.location.public_url(),
    })
}
