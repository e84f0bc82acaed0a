//! `publish`, `release` and `promote`: every command that writes a suite goes through
//! [`crate::publish::Publish`] (here, [`SuiteWriter`]), so each keeps the publish
//! invariants and is recorded in the suite's history.

use super::cdn::CdnPurge;
use super::early::{EarlyReadingHandle, EarlyStart};
use super::{open_store_with, CommandError, RepoSettings, RepoTarget, ServerFiles};
use crate::config::{RepoConfig, RepoLocation};
use crate::keys::{KeyPurpose, KeySource, ResolvedKey};
use crate::listener::Listener;
use crate::package::{self, BuildOptions};
use crate::publish::lock::LockOptions;
use crate::publish::{self, Change, Publish, PublishReport};
use crate::repo::layout::{KEYRING_KEY, LOCK_KEY};
use crate::sign::RepoKeys;
use crate::store::Store;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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
    /// Publish with the configured origin when the suite has another.
    pub change_origin: bool,
}

/// Which suite of which repository a command writes, and how.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub repo: RepoTarget,
    /// Default: `default-suite`, else the first configured suite.
    pub suite: Option<String>,
    pub control: PublishControl,
    /// For the commands that add packages: publish the new ones phased at this
    /// percent (`Phased-Update-Percentage`).
    pub phased: Option<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    pub write: WriteOptions,
    /// Default: every .deb in target/speedy/debs.
    pub debs: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ReleaseOptions {
    pub write: WriteOptions,
    pub build: BuildOptions,
    /// Leave the .debs without a debsigs signature.
    pub no_sign: bool,
}

/// `write.suite` is the suite promoted to.
#[derive(Debug, Clone, Default)]
pub struct PromoteOptions {
    pub write: WriteOptions,
    /// The suite to take the packages from.
    pub from: String,
    /// Default: every package, the newest version of each.
    pub packages: Vec<String>,
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
    /// Where a server gets the public key: a path or a URL.
    pub keyring: String,
    /// Where a server installs it (the `Signed-By:` of `sources`).
    pub keyring_path: String,
    /// A deb822 `.sources` entry for this suite.
    pub sources: String,
    /// Where a server puts it.
    pub sources_path: String,
    /// The apt preferences that make servers follow a rollback or withdraw.
    pub preferences: String,
    /// Where a server puts them.
    pub preferences_path: String,
    /// The apt configuration that lets `apt-get -y` and unattended-upgrades carry out
    /// the downgrade a rollback asks for.
    pub apt_conf: String,
    /// Where a server puts it.
    pub apt_conf_path: String,
    /// The paths purged from the CDN in front of the bucket (relative to the bucket).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cdn_purged: Vec<String>,
    /// The flags of this command that select the repository and key, as sh words:
    /// the commands printed as next steps carry them so they run as printed.
    pub repository_flags: Vec<String>,
    /// Set when the repository was signed with the development key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub development_key: Option<PathBuf>,
    /// `acl = "private"`: servers need the read credential and the transport, which
    /// only `server-setup` gives them.
    pub private: bool,
}

/// The apt preferences that make a server follow a rollback: this repository's origin
/// pinned above 1000, so apt takes its candidate even when that is a downgrade
/// (docs/ARCHITECTURE.md, "History and rollback"). The keyring package is the
/// exception: a rollback must never take a key back from servers, since the next
/// publish may be signed by that key alone.
pub fn rollback_preferences(config: &RepoConfig, keyring_package: &str) -> String {
    format!(
        "# cargo speedy: follow rollbacks and withdrawals of this repository. Above 1000, apt\n\
         # installs the repository's candidate even when that is a downgrade; never for the\n\
         # keyring, whose keys must not go back.\n\
         Package: {keyring_package}\nPin: release o={origin}\nPin-Priority: 990\n\n\
         Package: *\nPin: release o={origin}\nPin-Priority: 1001\n",
        origin = config.release.origin
    )
}

/// The apt configuration beside [`rollback_preferences`]: without it `apt-get -y` and
/// unattended-upgrades refuse the downgrade the pin asks for. Downgrades happen only
/// where a pin above 1000 asks for one.
pub fn rollback_apt_conf() -> String {
    "// cargo speedy: carry out the downgrades that a rollback of the pinned repository asks for.\n\
     APT::Get::allow-downgrades \"true\";\n\
     Unattended-Upgrade::Allow-downgrade \"true\";\n"
        .to_owned()
}

/// The deb822 `.sources` entry for a suite of the repository at `url`, trusting the
/// keyring at `keyring_path`.
pub fn sources_entry(url: &str, suite: &str, keyring_path: &str) -> String {
    format!(
        "Types: deb\nURIs: {url}\nSuites: {suite}\nComponents: {}\nSigned-By: {keyring_path}\n",
        crate::repo::layout::COMPONENT,
    )
}

pub fn publish(
    options: &PublishOptions,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    let writer = SuiteWriter::open(&options.write, KeyPurpose::Publish, listener)?;
    let debs = if options.debs.is_empty() {
        publish::debs_in(&writer.settings.debs_dir())
    } else {
        options.debs.clone()
    };
    let debs = publish::read_debs(&debs)?;
    writer.add(&debs, "publish", listener)
}

/// `build`, then `publish` of what was built.
pub fn release(
    options: &ReleaseOptions,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    // No reads ahead of the build, which takes far longer than `cargo metadata`.
    let writer = SuiteWriter::open_with(&options.write, KeyPurpose::Publish, false, listener)?;
    // The cheapest request that proves the bucket and the credentials work: a wrong
    // bucket or missing credentials should not cost a build.
    writer.store.head(LOCK_KEY)?;
    let plan = package::plan(&options.build, listener)?;
    let signer = (!options.no_sign && writer.settings.signing.sign_debs).then_some(&writer.key.key);
    let built = package::build(&plan, &options.build, signer, listener)?;
    let debs: Vec<PathBuf> = built.into_iter().map(|d| d.path).collect();
    let debs = publish::read_debs(&debs)?;
    writer.add(&debs, "release", listener)
}

/// The newest packages of one suite into another: index entries only, no bytes.
pub fn promote(
    options: &PromoteOptions,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    let writer = SuiteWriter::open(&options.write, KeyPurpose::Republish, listener)?;
    let mut incoming = publish::promotion(
        writer.store.as_ref(),
        &writer.keys.public_key(),
        &options.from,
        &options.packages,
    )?;
    // The fleet settings belong to the servers of one suite: `dev`'s maintenance page
    // must not reach `stable` with a promotion, unless it is named.
    let fleet = writer.settings.fleet_package_name();
    if !options.packages.contains(&fleet) {
        incoming.retain(|deb| deb.entry.name != fleet);
    }
    writer.add(&incoming, "promote", listener)
}

/// A repository opened for writing one suite: settings, store and signing key.
pub(super) struct SuiteWriter<'a> {
    options: &'a WriteOptions,
    pub(super) settings: RepoSettings,
    pub(super) store: Arc<dyn Store>,
    pub(super) key: ResolvedKey,
    /// The key and, during a rotation, the next key: they sign the indices.
    pub(super) keys: RepoKeys,
    cdn: CdnPurge,
    /// The publish's first reads, when they started before `cargo metadata` answered
    /// and hold for these settings (`super::early`); taken by the first write.
    early: Mutex<Option<EarlyReadingHandle>>,
}

impl<'a> SuiteWriter<'a> {
    pub(super) fn open(
        options: &'a WriteOptions,
        purpose: KeyPurpose,
        listener: &dyn Listener,
    ) -> Result<Self, CommandError> {
        Self::open_with(options, purpose, true, listener)
    }

    /// [`SuiteWriter::open`]; with `early`, the publish's first reads start from the
    /// settings of the last `cargo metadata` output while it runs (`super::early`).
    pub(super) fn open_with(
        options: &'a WriteOptions,
        purpose: KeyPurpose,
        early: bool,
        listener: &dyn Listener,
    ) -> Result<Self, CommandError> {
        let (settings, started) = crate::parallel::join(
            || options.repo.settings_and_output(),
            || EarlyStart::begin(options, early),
        );
        let (settings, output) = settings?;
        let key = settings.resolve_key(&options.repo, purpose, listener)?;
        let keys = key.repo_keys();
        let suite = settings.config.suite_named(options.suite.as_deref());
        let (store, early) = match started {
            EarlyStart::Reading(reads)
                if reads.hold_for(&output, &suite, &keys.public_key().fingerprints()) =>
            {
                listener.detail("read the repository while cargo metadata ran");
                let (store, reading) = reads.adopt(listener);
                (store, Some(reading))
            }
            started => {
                let transport = started.into_transport();
                let store: Arc<dyn Store> =
                    open_store_with(&settings.location, transport, listener)?.into();
                (store, None)
            }
        };
        let cdn = CdnPurge::for_location(&settings.location)?;
        Ok(SuiteWriter {
            options,
            settings,
            store,
            keys,
            key,
            cdn,
            early: Mutex::new(early),
        })
    }

    /// The suite written: `--suite`, else the default suite.
    pub(super) fn suite(&self) -> String {
        self.settings
            .config
            .suite_named(self.options.suite.as_deref())
    }

    /// Adds `debs` and the keyring package of the signing keys, which every suite
    /// carries (unphased) so servers follow a key rotation through apt.
    pub(super) fn add(
        &self,
        debs: &[publish::IncomingDeb],
        command: &str,
        listener: &dyn Listener,
    ) -> Result<PublishSummary, CommandError> {
        let keyring = self.settings.keyring_package();
        let sign = self
            .settings
            .signing
            .sign_debs
            .then_some(self.keys.current());
        let built = keyring.build(&self.keys.public_key(), &self.settings.keyring_dir(), sign)?;
        let mut all = debs.to_vec();
        let same = |d: &publish::IncomingDeb| {
            d.entry.name == keyring.name && d.entry.version == built.version
        };
        if !all.iter().any(same) {
            all.extend(publish::read_debs(std::slice::from_ref(&built.path))?);
        }
        // The fleet package neither: a switch reaches every server or it is no switch.
        let mut unphased = vec![keyring.name, self.settings.fleet_package_name()];
        // The backup package goes with every publish too, unphased: a database's
        // backups are not something to roll out to a share of the servers.
        if let (Some(backup), Some(workspace)) =
            (self.settings.backup_package()?, &self.settings.workspace)
        {
            let timestamp =
                crate::package::source_timestamp(&workspace.root, &workspace.root_manifest)?;
            let built = backup.build(&self.settings.keyring_dir(), timestamp, sign)?;
            if !all
                .iter()
                .any(|d| d.entry.name == backup.name && d.entry.version == built.version)
            {
                all.extend(publish::read_debs(std::slice::from_ref(&built.path))?);
            }
            unphased.push(backup.name);
        }
        self.write(
            Change::Add {
                debs: &all,
                phased: self.options.phased,
                unphased: &unphased,
            },
            command,
            listener,
        )
    }

    pub(super) fn write(
        &self,
        change: Change<'_>,
        command: &str,
        listener: &dyn Listener,
    ) -> Result<PublishSummary, CommandError> {
        let control = self.options.control;
        let config = &self.settings.config;
        // The early reads are for this suite (`SuiteWriter::open_with`): the first write
        // takes them.
        let early = self
            .early
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .map(EarlyReadingHandle::wait);
        let mut report = Publish {
            store: self.store.as_ref(),
            key: &self.keys,
            suite: self.suite(),
            config,
            lock: LockOptions {
                wait: control.wait_for_lock,
                break_lock: control.break_lock,
                lease: Duration::from_secs(config.lock_lease_seconds),
            },
            dry_run: control.dry_run,
            change_origin: control.change_origin,
            command,
            now: &crate::clock::now,
        }
        .apply_read(change, early, listener)?;
        let cdn_purged = self.cdn.after_publish(&mut report, listener);
        let location = &self.settings.location;
        let url = location.public_url();
        let keyring = match location {
            RepoLocation::Local(dir) => dir.join(KEYRING_KEY).display().to_string(),
            RepoLocation::Spaces { .. } => format!("{url}{KEYRING_KEY}"),
        };
        let files = ServerFiles::new(&self.settings, &location.server_url(), &report.suite);
        Ok(PublishSummary {
            keyring_path: files.keyring_path,
            sources: files.sources,
            sources_path: files.sources_path,
            preferences: files.preferences,
            preferences_path: files.preferences_path,
            apt_conf: files.apt_conf,
            apt_conf_path: files.apt_conf_path,
            report,
            cdn_purged,
            repository: location.describe(),
            repository_flags: self.options.repo.command_line_flags(),
            url,
            keyring,
            private: location.is_private(),
            development_key: match &self.key.source {
                KeySource::Development { path, .. } => Some(path.clone()),
                _ => None,
            },
        })
    }
}
