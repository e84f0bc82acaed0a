//! Settings: everything a user writes in `Cargo.toml` (and the flags that override
//! it), validated once into types the layers above use without further checks.
//! See docs/ARCHITECTURE.md, "Layers": this module depends only on the leaf modules
//! (`repo` for name rules and `ReleaseFields`, `store` for bucket addressing, `cdn`
//! for the endpoint id rule, `calendar`).
//!
//! Naming: `*Metadata` is a table exactly as written in the manifest (serde, every
//! field optional, unknown keys refused); `*Config` is the validated result.

mod repo;
mod roles;
mod service;
mod signing;
pub mod timespan;

pub use repo::{
    check_server_url, RepoConfig, RepoLocation, RepoMetadata, RepoOverrides, SpacesMetadata,
};
pub use roles::{resolve_role, Role, RoleMetadata, RoleTable};
pub use service::{
    check_conffile_dest, parse_package_metadata, resolve_service, BinTarget, ConfigFile, Job,
    PackageFacts, PackageMetadata, Service, ServiceKind,
};
pub use signing::{SigningConfig, SigningMetadata};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A configuration mistake, always naming the manifest and the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{}: `{key}`: {message}", manifest.display())]
pub struct ConfigError {
    pub manifest: PathBuf,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(manifest: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            manifest: manifest.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Repo-wide defaults, `[workspace.metadata.speedy]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WorkspaceMetadata {
    pub user: Option<String>,
    pub group: Option<String>,
    pub maintainer: Option<String>,
    pub revision: Option<String>,
    pub install_dir: Option<String>,
    pub jobs_disabled_flag: Option<String>,
    pub randomized_delay: Option<String>,
    pub state_root: Option<String>,
    /// The apt repository, `[workspace.metadata.speedy.repo]`.
    pub repo: Option<RepoMetadata>,
    /// The signing key, `[workspace.metadata.speedy.signing]`.
    pub signing: Option<SigningMetadata>,
    /// Kinds of server, `[workspace.metadata.speedy.roles]`.
    pub roles: Option<std::collections::BTreeMap<String, RoleMetadata>>,
}

/// Parses a metadata table, reporting the exact key path at fault.
fn parse_table<T: DeserializeOwned>(
    value: &serde_json::Value,
    manifest: &Path,
    table: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let key = if path == "." {
            table.to_owned()
        } else {
            format!("{table}.{path}")
        };
        ConfigError::new(manifest, key, error.into_inner().to_string())
    })
}

pub fn parse_workspace_metadata(
    workspace_metadata: &serde_json::Value,
    manifest: &Path,
) -> Result<WorkspaceMetadata, ConfigError> {
    match workspace_metadata.get("speedy") {
        None | Some(serde_json::Value::Null) => Ok(WorkspaceMetadata::default()),
        Some(value) => parse_table(value, manifest, "workspace.metadata.speedy"),
    }
}
