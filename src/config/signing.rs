//! `[workspace.metadata.speedy.signing]`: which key signs the repository and the
//! .debs. Only where the key is; the key itself is found and loaded by
//! `crate::keys`, which never takes it from argv.

use super::{ConfigError, WorkspaceMetadata};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SigningMetadata {
    /// The armored secret key, relative to the workspace root.
    pub key_file: Option<PathBuf>,
    /// During a key rotation, the next key (armored secret key, relative to the
    /// workspace root): it co-signs the indices and joins the keyring package.
    pub next_key_file: Option<PathBuf>,
    /// Add a debsigs `_gpgorigin` signature to every built .deb (default: yes).
    pub sign_debs: Option<bool>,
    /// The package that carries the repository's keyring to servers; default
    /// `<short name>-archive-keyring`.
    pub keyring_package: Option<String>,
}

/// The validated signing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningConfig {
    /// The configured key file, absolute.
    pub key_file: Option<PathBuf>,
    /// The configured next key file, absolute.
    pub next_key_file: Option<PathBuf>,
    pub sign_debs: bool,
    /// `keyring-package`, validated as a package name.
    pub keyring_package: Option<String>,
    /// The manifest these settings come from, for messages; none outside a workspace.
    pub manifest: Option<PathBuf>,
}

impl SigningConfig {
    pub fn resolve(
        workspace: &WorkspaceMetadata,
        root: &Path,
        manifest: &Path,
    ) -> Result<Self, ConfigError> {
        let signing = workspace.signing.clone().unwrap_or_default();
        if let Some(name) = &signing.keyring_package {
            crate::repo::syntax::check_package_name(name).map_err(|why| {
                ConfigError::new(
                    manifest,
                    "workspace.metadata.speedy.signing.keyring-package",
                    format!("{name:?} is not a valid Debian package name: {why}"),
                )
            })?;
        }
        if signing.next_key_file.is_some() && signing.next_key_file == signing.key_file {
            return Err(ConfigError::new(
                manifest,
                "workspace.metadata.speedy.signing.next-key-file",
                "is the same file as `key-file`: the next key of a rotation must be a new key",
            ));
        }
        Ok(SigningConfig {
            key_file: signing.key_file.map(|p| root.join(p)),
            next_key_file: signing.next_key_file.map(|p| root.join(p)),
            sign_debs: signing.sign_debs.unwrap_or(true),
            keyring_package: signing.keyring_package,
            manifest: Some(manifest.to_owned()),
        })
    }
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            key_file: None,
            next_key_file: None,
            sign_debs: true,
            keyring_package: None,
            manifest: None,
        }
    }
}
