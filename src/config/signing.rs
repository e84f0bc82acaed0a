//! `[workspace.metadata.speedy.signing]`: which key signs the repository and the
//! .debs. Only where the key is; the key itself is found and loaded by
//! `crate::keys`, which never takes it from argv.

use super::WorkspaceMetadata;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SigningMetadata {
    /// The armored secret key, relative to the workspace root.
    pub key_file: Option<PathBuf>,
    /// Add a debsigs `_gpgorigin` signature to every built .deb (default: yes).
    pub sign_debs: Option<bool>,
}

/// The validated signing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningConfig {
    /// The configured key file, absolute.
    pub key_file: Option<PathBuf>,
    pub sign_debs: bool,
    /// The manifest these settings come from, for messages; none outside a workspace.
    pub manifest: Option<PathBuf>,
}

impl SigningConfig {
    pub fn resolve(workspace: &WorkspaceMetadata, root: &Path, manifest: &Path) -> Self {
        let signing = workspace.signing.clone().unwrap_or_default();
        SigningConfig {
            key_file: signing.key_file.map(|p| root.join(p)),
            sign_debs: signing.sign_debs.unwrap_or(true),
            manifest: Some(manifest.to_owned()),
        }
    }
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            key_file: None,
            sign_debs: true,
            manifest: None,
        }
    }
}
