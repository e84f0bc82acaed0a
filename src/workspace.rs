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
        Self::load_with_output(manifest_path, locking).map(|(workspace, _)| workspace)
    }

    /// [`Workspace::load`], with the JSON `cargo metadata` printed, for
    /// [`MetadataCache`].
    pub fn load_with_output(
        manifest_path: Option<&Path>,
        locking: LockingFlags,
    ) -> Result<(Self, String), WorkspaceError> {
        let mut command = cargo_metadata::MetadataCommand::new();
        command.no_deps();
        if let Some(path) = manifest_path {
            command.manifest_path(path);
        }
        command.other_options(locking.args());
        let failed = |message: String| WorkspaceError::Metadata {
            manifest: manifest_path.map(Path::to_owned),
            message,
        };
        let output = command
            .cargo_command()
            .output()
            .map_err(|e| failed(format!("cannot run cargo metadata: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            return Err(
                if manifest_path.is_none() && stderr.contains("could not find `Cargo.toml`") {
                    WorkspaceError::NotInWorkspace { message: stderr }
                } else {
                    failed(stderr)
                },
            );
        }
        let json = std::str::from_utf8(&output.stdout)
            .ok()
            .and_then(|stdout| stdout.lines().find(|line| line.starts_with('{')))
            .ok_or_else(|| failed("cargo metadata printed no JSON".into()))?
            .to_owned();
        let workspace = Self::from_metadata_output(&json, manifest_path)?;
        Ok((workspace, json))
    }

    /// The workspace that `json`, an output of `cargo metadata`, describes.
    pub fn from_metadata_output(
        json: &str,
        manifest_path: Option<&Path>,
    ) -> Result<Self, WorkspaceError> {
        let metadata =
            cargo_metadata::MetadataCommand::parse(json).map_err(|e| WorkspaceError::Metadata {
                manifest: manifest_path.map(Path::to_owned),
                message: e.to_string(),
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

/// The last output of `cargo metadata` for one invocation (the directory it ran in,
/// `--manifest-path`, the locking flags, `CARGO_TARGET_DIR`), kept in the target
/// directory as `speedy/metadata.json`. A command that reads the repository starts
/// its reads from the settings this output gives while `cargo metadata` runs again,
/// and keeps them only when the fresh output is the same bytes
/// (docs/ARCHITECTURE.md, "The life of a publish", step 1). Best effort: a cache
/// that cannot be found, read or written only costs that head start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetadataCache {
    invocation: Invocation,
    /// The line of JSON `cargo metadata` printed.
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Invocation {
    dir: PathBuf,
    manifest_path: Option<PathBuf>,
    locking: [bool; 3],
    target_dir_env: Option<PathBuf>,
}

impl Invocation {
    fn now(manifest_path: Option<&Path>, locking: LockingFlags) -> Option<Self> {
        Some(Invocation {
            dir: std::env::current_dir().ok()?,
            manifest_path: manifest_path.map(Path::to_owned),
            locking: [locking.locked, locking.offline, locking.frozen],
            target_dir_env: std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
        })
    }

    /// Where the target directory may be, without asking cargo: `CARGO_TARGET_DIR`,
    /// else `target/` beside the manifest and beside each Cargo.toml above it (the
    /// workspace root's is cargo's default). One set with `build.target-dir` is
    /// not found, and the command simply does without the head start.
    fn target_dirs(&self) -> Vec<PathBuf> {
        if let Some(dir) = &self.target_dir_env {
            return vec![self.dir.join(dir)];
        }
        let start = match &self.manifest_path {
            Some(manifest) => self
                .dir
                .join(manifest)
                .parent()
                .map(Path::to_owned)
                .unwrap_or_else(|| self.dir.clone()),
            None => self.dir.clone(),
        };
        start
            .ancestors()
            .filter(|dir| dir.join("Cargo.toml").is_file())
            .map(|dir| dir.join("target"))
            .collect()
    }
}

fn cache_path(target_dir: &Path) -> PathBuf {
    target_dir.join("speedy").join("metadata.json")
}

impl MetadataCache {
    /// The output kept for this invocation, if any.
    pub fn find(manifest_path: Option<&Path>, locking: LockingFlags) -> Option<Self> {
        Self::find_for(&Invocation::now(manifest_path, locking)?)
    }

    fn find_for(invocation: &Invocation) -> Option<Self> {
        invocation.target_dirs().into_iter().find_map(|dir| {
            let bytes = std::fs::read(cache_path(&dir)).ok()?;
            let cache: MetadataCache = serde_json::from_slice(&bytes).ok()?;
            (cache.invocation == *invocation).then_some(cache)
        })
    }

    /// Keeps `output` for this invocation in `target_dir`, replacing the file at once
    /// (a concurrent reader sees the old or the new); unchanged, nothing is written.
    pub fn keep(
        target_dir: &Path,
        manifest_path: Option<&Path>,
        locking: LockingFlags,
        output: &str,
    ) -> std::io::Result<()> {
        let invocation = Invocation::now(manifest_path, locking)
            .ok_or_else(|| std::io::Error::other("no current directory"))?;
        let cache = MetadataCache {
            invocation,
            output: output.to_owned(),
        };
        let path = cache_path(target_dir);
        let bytes = serde_json::to_vec(&cache).map_err(std::io::Error::other)?;
        if std::fs::read(&path).is_ok_and(|kept| kept == bytes) {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(target_dir);
        std::fs::create_dir_all(dir)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut temp, &bytes)?;
        temp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(dir: &Path, manifest: Option<&str>, env: Option<&str>) -> Invocation {
        Invocation {
            dir: dir.to_owned(),
            manifest_path: manifest.map(PathBuf::from),
            locking: [false; 3],
            target_dir_env: env.map(PathBuf::from),
        }
    }

    #[test]
    fn the_cache_is_looked_for_where_cargo_puts_the_target_directory() {
        let root = tempfile::tempdir().unwrap();
        let member = root.path().join("app");
        std::fs::create_dir_all(member.join("src")).unwrap();
        std::fs::write(root.path().join("Cargo.toml"), "[workspace]\n").unwrap();
        std::fs::write(member.join("Cargo.toml"), "[package]\n").unwrap();
        // From a member's directory: beside it, then at the workspace root.
        assert_eq!(
            invocation(&member.join("src"), None, None).target_dirs(),
            vec![member.join("target"), root.path().join("target")]
        );
        // --manifest-path, relative to the directory it is run in.
        assert_eq!(
            invocation(root.path(), Some("app/Cargo.toml"), None).target_dirs(),
            vec![member.join("target"), root.path().join("target")]
        );
        // CARGO_TARGET_DIR alone, relative to the directory too.
        assert_eq!(
            invocation(&member, None, Some("../out")).target_dirs(),
            vec![member.join("../out")]
        );
    }

    #[test]
    fn an_output_is_found_only_by_the_invocation_it_was_kept_for() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        std::fs::write(dir.join("Cargo.toml"), "[workspace]\n").unwrap();
        let kept = invocation(dir, None, None);
        let cache = MetadataCache {
            invocation: kept.clone(),
            output: "{\"packages\":[]}".into(),
        };
        std::fs::create_dir_all(dir.join("target/speedy")).unwrap();
        std::fs::write(
            cache_path(&dir.join("target")),
            serde_json::to_vec(&cache).unwrap(),
        )
        .unwrap();
        assert_eq!(MetadataCache::find_for(&kept), Some(cache.clone()));
        for other in [
            invocation(dir, Some("Cargo.toml"), None),
            invocation(dir, None, Some("target")),
            Invocation {
                locking: [true, false, false],
                ..kept.clone()
            },
        ] {
            assert_eq!(MetadataCache::find_for(&other), None, "{other:?}");
        }
        // Not a cache: not found, whatever it holds.
        std::fs::write(cache_path(&dir.join("target")), "{not json").unwrap();
        assert_eq!(MetadataCache::find_for(&kept), None);
    }
}
