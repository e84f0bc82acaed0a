//! Settings: everything a user writes in `Cargo.toml` (and the flags that override
//! it), validated once into types the layers above use without further checks.
//! See docs/ARCHITECTURE.md, "Layers": this module depends only on the leaf modules
//! (`repo` for name rules and `ReleaseFields`, `store` for bucket addressing, `cdn`
//! for the endpoint id rule, `calendar`).
//!
//! Naming: `*Metadata` is a table exactly as written in the manifest (serde, every
//! field optional, unknown keys refused); `*Config` is the validated result.

mod backup;
mod repo;
mod roles;
mod service;
mod signing;
pub mod timespan;

pub use backup::{BackupConfig, BackupMetadata};
pub use repo::{
    check_server_url, RepoConfig, RepoLocation, RepoMetadata, RepoOverrides, SpacesMetadata,
};
pub use roles::{resolve_role, Role, RoleMetadata, RoleTable};
pub use service::{
    check_conffile_dest, parse_package_metadata, resolve_service, BinTarget, ConfigFile,
    DbChangeAction, FleetHooks, Job, PackageFacts, PackageMetadata, Service, ServiceKind,
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
    /// The project's short name (a-z, 0-9 and -): the default system user, the default
    /// origin (capitalised, so also the keyring package and the server files), and a
    /// new key's user id. `Workspace::load` fills it in when the manifest has none
    /// ([`project_name`]).
    pub name: Option<String>,
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
    /// Database backups, `[workspace.metadata.speedy.backup]`.
    pub backup: Option<BackupMetadata>,
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

/// The name a project goes by where the manifest names none: the first word of its
/// services' package names when they share one (`speedy` for speedy-app and
/// speedy-jobs), else the workspace directory's name made into a system name. A
/// name given in the manifest is checked instead.
pub fn project_name(
    metadata: &WorkspaceMetadata,
    manifest: &Path,
    service_packages: &[String],
    root: &Path,
) -> Result<String, ConfigError> {
    if let Some(name) = &metadata.name {
        check_project_name(name)
            .map_err(|why| ConfigError::new(manifest, "workspace.metadata.speedy.name", why))?;
        return Ok(name.clone());
    }
    let first_words: std::collections::BTreeSet<&str> = service_packages
        .iter()
        .filter_map(|name| name.split(['-', '_']).next())
        .collect();
    let candidates = [
        (first_words.len() == 1)
            .then(|| first_words.first().map(|w| w.to_string()))
            .flatten(),
        root.file_name()
            .map(|dir| system_name_of(&dir.to_string_lossy())),
    ];
    Ok(candidates
        .into_iter()
        .flatten()
        .map(|name| system_name_of(&name))
        .find(|name| check_project_name(name).is_ok())
        .unwrap_or_else(|| "app".to_owned()))
}

/// The default origin of a project: its name, capitalised (`Speedy` for `speedy`).
pub fn default_origin(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Lower case, with every run of other characters made one `-`.
fn system_name_of(text: &str) -> String {
    let mut name = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    name.trim_matches('-')
        .chars()
        .take(31)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

fn check_project_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid project name (a-z, 0-9 and -, starting with a letter, at most 31 characters): it becomes the system user and the keyring package's name"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: Option<&str>, services: &[&str], root: &str) -> Result<String, ConfigError> {
        let metadata = WorkspaceMetadata {
            name: name.map(str::to_owned),
            ..Default::default()
        };
        let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        project_name(
            &metadata,
            Path::new("/w/Cargo.toml"),
            &services,
            Path::new(root),
        )
    }

    #[test]
    fn a_project_is_named_after_its_services_then_its_directory() {
        assert_eq!(
            named(None, &["speedy-app", "speedy-jobs"], "/tmp/x").unwrap(),
            "speedy"
        );
        assert_eq!(
            named(None, &["acme_web", "acme-worker"], "/src/shop").unwrap(),
            "acme"
        );
        // No shared first word: the directory.
        assert_eq!(
            named(None, &["web", "worker"], "/src/Shop Front").unwrap(),
            "shop-front"
        );
        assert_eq!(named(None, &[], "/src/shop").unwrap(), "shop");
        // Nothing usable at all.
        assert_eq!(named(None, &["9lives"], "/").unwrap(), "app");
        // Given: checked, not derived.
        assert_eq!(
            named(Some("acme"), &["speedy-app"], "/tmp/x").unwrap(),
            "acme"
        );
        let error = named(Some("Acme Inc"), &[], "/tmp/x")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("workspace.metadata.speedy.name") && error.contains("\"Acme Inc\""),
            "{error}"
        );
        assert_eq!(default_origin("acme"), "Acme");
    }
}
