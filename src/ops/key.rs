//! `key generate`, `key export` and `key debsig-policy`.

use super::{CommandError, RepoTarget};
use crate::keys::{self, KeyPurpose};
use crate::listener::Listener;
use crate::sign::{KeyAlgorithm, KeyParams, SigningKey};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct KeyGenerateOptions {
    /// Where the armored secret key goes (created 0600, never overwritten).
    pub output: PathBuf,
    pub algorithm: KeyAlgorithm,
    /// Default: named after the workspace in the current directory ([`default_user_id`]).
    pub user_id: Option<String>,
}

/// "<Origin> apt repository <maintainer's address>": the workspace in the current
/// directory names the key; outside one, "apt repository signing key".
pub fn default_user_id() -> String {
    let workspace = crate::workspace::Workspace::load(None, Default::default()).ok();
    let Some(workspace) = workspace else {
        return "apt repository signing key".to_owned();
    };
    let origin = workspace
        .repo_config()
        .map(|config| config.release.origin)
        .unwrap_or_else(|_| {
            crate::config::default_origin(workspace.metadata.name.as_deref().unwrap_or("apt"))
        });
    let address = workspace
        .metadata
        .maintainer
        .as_deref()
        .and_then(|m| m.split_once('<'))
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| format!(" <{address}>"))
        .unwrap_or_default();
    format!("{origin} apt repository{address}")
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyGenerated {
    pub path: PathBuf,
    pub fingerprint: String,
    /// Protected by `$SPEEDY_SIGNING_PASSPHRASE`.
    pub encrypted: bool,
}

#[derive(Debug, Clone, Default)]
pub struct KeyExportOptions {
    pub repo: RepoTarget,
    pub output: PathBuf,
    /// Armored even when `output` does not end in `.asc`.
    pub armor: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyExported {
    pub path: PathBuf,
    /// The current key's.
    pub fingerprint: String,
    /// Every key exported: during a rotation, the current and the next key.
    pub fingerprints: Vec<String>,
    pub armored: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DebsigPolicy {
    /// The policy XML.
    pub policy: String,
    /// Where it goes on a server.
    pub policy_path: String,
    /// Where the binary public keyring goes on a server.
    pub keyring_path: String,
}

/// The passphrase, if any, comes from `$SPEEDY_SIGNING_PASSPHRASE`.
pub fn key_generate(
    options: &KeyGenerateOptions,
    listener: &dyn Listener,
) -> Result<KeyGenerated, CommandError> {
    let passphrase = keys::passphrase();
    let encrypted = passphrase.is_some();
    let key = SigningKey::generate(&KeyParams {
        algorithm: options.algorithm,
        user_id: options.user_id.clone().unwrap_or_else(default_user_id),
        passphrase,
        created: crate::clock::now(),
    })?;
    keys::write_secret_file(&options.output, key.to_armored()?.as_bytes())?;
    listener.detail(&format!("wrote {}", options.output.display()));
    Ok(KeyGenerated {
        path: options.output.clone(),
        fingerprint: key.fingerprint(),
        encrypted,
    })
}

/// The public key: a binary keyring for /usr/share/keyrings, or armored (.asc).
pub fn key_export(
    options: &KeyExportOptions,
    listener: &dyn Listener,
) -> Result<KeyExported, CommandError> {
    let settings = options.repo.settings_for_key_file()?;
    let public_key = settings
        .repo_keys(&options.repo, KeyPurpose::Read, listener)?
        .public_key();
    let armored = options.armor || options.output.extension().is_some_and(|e| e == "asc");
    let bytes = if armored {
        public_key.to_armored()?.into_bytes()
    } else {
        public_key.to_binary()?
    };
    keys::write_public_file(&options.output, &bytes)?;
    Ok(KeyExported {
        path: options.output.clone(),
        fingerprint: public_key.fingerprint(),
        fingerprints: public_key.fingerprints(),
        armored,
    })
}

/// The debsig-verify policy for .debs signed with the key, and where it goes.
pub fn debsig_policy(
    repo: &RepoTarget,
    listener: &dyn Listener,
) -> Result<DebsigPolicy, CommandError> {
    let settings = repo.settings_for_key_file()?;
    let fingerprint = settings
        .repo_keys(repo, KeyPurpose::Read, listener)?
        .fingerprint();
    let (policy_path, keyring_path) = crate::debfile::debsig_paths(&fingerprint);
    Ok(DebsigPolicy {
        policy: crate::debfile::debsig_policy(&fingerprint, &settings.config.release.origin),
        policy_path: format!("/etc/debsig/policies/{policy_path}"),
        keyring_path: format!("/usr/share/debsig/keyrings/{keyring_path}"),
    })
}
