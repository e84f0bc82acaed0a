//! `list` and `verify`: read-only, with the signing key's public half or `--keyring`.

use super::{open_store_with, CommandError, RepoTarget};
use crate::keys::KeyPurpose;
use crate::listener::Listener;
use crate::publish::verify::{self, VerifyReport};
use crate::sign::{KeyHealth, PublicKey};
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub repo: RepoTarget,
    /// Verify against this public key (binary or armored) instead of the signing key.
    pub keyring: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ListedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Its `Phased-Update-Percentage`, when phased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<u8>,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ListedSuite {
    pub suite: String,
    /// The Release date.
    pub date: String,
    pub packages: Vec<ListedPackage>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ListReport {
    pub repository: String,
    pub suites: Vec<ListedSuite>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyOutcome {
    #[serde(flatten)]
    pub report: VerifyReport,
    pub repository: String,
    /// What apt's verifiers make of the keys verified with.
    pub keys: Vec<KeyHealth>,
}

impl VerifyOutcome {
    /// Every suite verifies and apt accepts the keys.
    pub fn ok(&self) -> bool {
        self.report.ok() && !self.keys.iter().any(KeyHealth::has_errors)
    }
}

impl ReadOptions {
    pub(super) fn public_key(
        &self,
        settings: &super::RepoSettings,
        listener: &dyn Listener,
    ) -> Result<PublicKey, CommandError> {
        let Some(path) = &self.keyring else {
            let key = settings.repo_keys(&self.repo, KeyPurpose::Read, listener)?;
            return Ok(key.public_key());
        };
        let bytes = std::fs::read(path).map_err(|source| CommandError::ReadFile {
            path: path.clone(),
            cause: source,
        })?;
        // During a rotation the published keyring holds both keys.
        Ok(PublicKey::keyring_from_bytes(
            &bytes,
            &path.display().to_string(),
        )?)
    }
}

/// During a rotation: the keys of the keyring that did not sign the suite's
/// InRelease. Servers that trust only such a key would refuse the suite once the
/// other key is dropped (docs/ARCHITECTURE.md, "Signing keys").
fn unsigned_by(
    store: &dyn crate::store::Store,
    keys: &PublicKey,
    suite: &str,
) -> Result<Vec<String>, CommandError> {
    let object = format!("dists/{suite}/InRelease");
    let Some(bytes) = store.get(&object)? else {
        return Ok(Vec::new());
    };
    let text = String::from_utf8_lossy(&bytes);
    let signers = keys.cleartext_signers(&text).unwrap_or_default();
    Ok(keys
        .fingerprints()
        .into_iter()
        .filter(|f| !signers.contains(f))
        .map(|f| {
            format!(
                "{object} is not signed by {f}: publish to {suite} (release, promote or phase) \
                 so it carries every configured key's signature before a key is dropped"
            )
        })
        .collect())
}

pub fn list(options: &ReadOptions, listener: &dyn Listener) -> Result<ListReport, CommandError> {
    let (settings, transport) = options.repo.settings_and_transport()?;
    let key = options.public_key(&settings, listener)?;
    let store = open_store_with(&settings.location, transport, listener)?;
    let suites = verify::list(store.as_ref(), &key)?
        .into_iter()
        .map(|state| ListedSuite {
            suite: state.suite,
            date: state.release.date,
            packages: state
                .packages
                .into_iter()
                .map(|p| ListedPackage {
                    phase: p.phase(),
                    name: p.name,
                    version: p.version,
                    architecture: p.architecture,
                    filename: p.filename,
                    sha256: p.sha256,
                    size: p.size,
                })
                .collect(),
        })
        .collect();
    Ok(ListReport {
        repository: settings.location.describe(),
        suites,
    })
}

/// Every signature, index hash and pool file; the report says what is wrong.
pub fn verify(
    options: &ReadOptions,
    listener: &dyn Listener,
) -> Result<VerifyOutcome, CommandError> {
    let (settings, transport) = options.repo.settings_and_transport()?;
    let key = options.public_key(&settings, listener)?;
    let store = open_store_with(&settings.location, transport, listener)?;
    let mut report = verify::verify(store.as_ref(), &key, settings.config.jobs)?;
    if key.fingerprints().len() > 1 {
        for suite in &mut report.suites {
            suite
                .notes
                .extend(unsigned_by(store.as_ref(), &key, &suite.suite)?);
        }
    }
    Ok(VerifyOutcome {
        report,
        repository: settings.location.describe(),
        keys: key.health(crate::clock::now()),
    })
}
