//! Finds a Cargo workspace and its services through `cargo metadata`.

use crate::config::{
    self, ConfigError, PackageFacts, RepoConfig, Service, SigningConfig, WorkspaceMetadata,
};
use std::path::{Path, PathBuf};

/// `--locked`, `--offline`, `--frozen`, passed on to every cargo invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockingFlags {
    pub locked: bool,
    pub offline: bool,
    pub frozen: bool,
}

impl LockingFlags {
    pub fn args(self) -> Vec<String> {
        let mut args = Vec::new();
        if self.locked {
            args.push("--locked".to_owned());
        }
        if self.offline {
            args.push("--offline".to_owned());
        }
        if self.frozen {
            args.push("--frozen".to_owned());
        }
        args
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("cannot read the workspace{}: {message}", manifest.as_ref().map(|m| format!(" at {}", m.display())).unwrap_or_default())]
    Metadata {
        manifest: Option<PathBuf>,
        message: String,
    },
    #[error(
        "the workspace at {} declares no services: add a [package.metadata.speedy] table with `kind = \"daemon\"` or `kind = \"jobs\"` to the packages to release",
        manifest.display()
    )]
    NoServices { manifest: PathBuf },
    #[error("package `{package}` is not a member of the workspace at {} (members: {members})", manifest.display())]
    UnknownPackage {
        package: String,
        manifest: PathBuf,
        members: String,
    },
    #[error("package `{package}` declares no service: add [package.metadata.speedy] to {}", manifest.display())]
    NotAService { package: String, manifest: PathBuf },
    #[error("{message}\n(run in a Cargo workspace, or pass --manifest-path)")]
    NotInWorkspace { message: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A workspace: where it is, its `[workspace.metadata.speedy]`, and its members.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub root_manifest: PathBuf,
    pub target_dir: PathBuf,
    pub metadata: WorkspaceMetadata,
    members: Vec<cargo_metadata::Package>,
}

impl Workspace {
    /// Runs `cargo metadata` (without dependencies) and reads the workspace settings.
    pub fn load(
        manifest_path: Option<&Path>,
        locking: LockingFlags,
    ) -> Result<Self, WorkspaceError> {
        let mut command = cargo_metadata::MetadataCommand::new();
        command.no_deps();
        if let Some(path) = manifest_path {
            command.manifest_path(path);
        }
        command.other_options(locking.args());
        let metadata = command.exec().map_err(|e| match e {
            cargo_metadata::Error::CargoMetadata { stderr }
                if manifest_path.is_none() && stderr.contains("could not find `Cargo.toml`") =>
            {
                WorkspaceError::NotInWorkspace {
                    message: stderr.trim().to_owned(),
                }
            }
            e => WorkspaceError::Metadata {
                manifest: manifest_path.map(Path::to_owned),
                message: match e {
                    cargo_metadata::Error::CargoMetadata { stderr } => stderr.trim().to_owned(),
                    other => other.to_string(),
                },
            },
        })?;
        let root: PathBuf = metadata.workspace_root.clone().into();
        let root_manifest = root.join("Cargo.toml");
        let mut workspace_metadata =
            config::parse_workspace_metadata(&metadata.workspace_metadata, &root_manifest)?;
        let members: Vec<cargo_metadata::Package> =
            metadata.workspace_packages().into_iter().cloned().collect();
        // Every default named after the project reads this one name.
        let services: Vec<String> = members
            .iter()
            .filter(|p| p.metadata.get("speedy").is_some())
            .map(|p| p.name.to_string())
            .collect();
        workspace_metadata.name = Some(config::project_name(
            &workspace_metadata,
            &root_manifest,
            &services,
            &root,
        )?);
        Ok(Workspace {
            root,
            root_manifest,
            target_dir: metadata.target_directory.clone().into(),
            metadata: workspace_metadata,
            members,
        })
    }

    /// The repository settings of `[workspace.metadata.speedy.repo]`.
    pub fn repo_config(&self) -> Result<RepoConfig, ConfigError> {
        RepoConfig::resolve(
            &self.metadata,
            &self.root,
            &self.root_manifest,
            &self.target_dir,
        )
    }

    /// The backup settings of `[workspace.metadata.speedy.backup]`, when it has them;
    /// the schedule is checked by systemd-analyze where it exists.
    pub fn backup_config(&self) -> Result<Option<config::BackupConfig>, ConfigError> {
        self.metadata
            .backup
            .as_ref()
            .map(|backup| backup.resolve_with_systemd(&self.root_manifest))
            .transpose()
    }

    /// The signing settings of `[workspace.metadata.speedy.signing]`.
    pub fn signing_config(&self) -> Result<SigningConfig, ConfigError> {
        SigningConfig::resolve(&self.metadata, &self.root, &self.root_manifest)
    }

    /// Validates every selected service; nothing is built. `selected` empty means
    /// every package that declares a service.
    pub fn services(
        &self,
        selected: &[String],
        check_calendar: &dyn Fn(&str) -> Option<Result<(), String>>,
    ) -> Result<Vec<Service>, WorkspaceError> {
        let members = &self.members;
        for name in selected {
            if !members.iter().any(|p| p.name.as_str() == name) {
                return Err(WorkspaceError::UnknownPackage {
                    package: name.clone(),
                    manifest: self.root_manifest.clone(),
                    members: members
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }

        let mut services = Vec::new();
        for package in members {
            let wanted = selected.is_empty() || selected.iter().any(|s| s == package.name.as_str());
            if !wanted {
                continue;
            }
            let manifest: PathBuf = package.manifest_path.clone().into();
            let Some(service_metadata) =
                config::parse_package_metadata(&package.metadata, &manifest)?
            else {
                if !selected.is_empty() {
                    return Err(WorkspaceError::NotAService {
                        package: package.name.to_string(),
                        manifest,
                    });
                }
                continue;
            };
            let facts = PackageFacts {
                name: package.name.to_string(),
                version: package.version.to_string(),
                description: package.description.clone(),
                manifest_path: manifest,
                bin_targets: package
                    .targets
                    .iter()
                    .filter(|t| t.is_bin())
                    .map(|t| config::BinTarget {
                        name: t.name.clone(),
                        src_path: t.src_path.clone().into(),
                    })
                    .collect(),
                metadata: package.metadata.clone(),
                authors: package.authors.clone(),
                homepage: package.homepage.clone(),
                repository: package.repository.clone(),
            };
            services.push(config::resolve_service(
                &self.metadata,
                &self.root_manifest,
                &facts,
                service_metadata,
                check_calendar,
            )?);
        }
        if services.is_empty() {
            return Err(WorkspaceError::NoServices {
                manifest: self.root_manifest.clone(),
            });
        }
        Ok(services)
    }

    /// Where `cargo speedy build` puts the finished packages.
    pub fn debs_dir(&self) -> PathBuf {
        self.target_dir.join("speedy").join("debs")
    }

    /// Scratch space for cargo-deb's view of each package.
    pub fn stage_dir(&self) -> PathBuf {
        self.target_dir.join("speedy").join("stage")
    }
}
