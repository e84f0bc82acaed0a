//! `cargo speedy build`: from validated services to .debs in target/speedy/debs/.
//!
//! Two phases, so `--explain` can show everything without building: [`plan`] loads
//! the workspace, validates it and renders every file; [`build`] compiles the binaries
//! once, stages each package for cargo-deb, builds all .debs in a temporary directory
//! and only then renames them into place. A failure at any point leaves no .deb behind.

pub mod backup;
pub mod cargo_deb_bridge;
pub mod fleet;
pub mod keyring;
pub mod render;
pub mod stage;

use crate::calendar;
use crate::config::Service;
use crate::listener::{BuiltDeb, Listener};
use crate::workspace::{LockingFlags, Workspace, WorkspaceError};
pub use cargo_deb_bridge::Compression;
use render::{Origin, Placement, RenderedFile};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Everything `cargo speedy build` is asked to do.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub manifest_path: Option<PathBuf>,
    /// `-p`; empty means every service of the workspace.
    pub packages: Vec<String>,
    pub target: Option<String>,
    pub profile: String,
    pub locking: LockingFlags,
    /// Package what is already built instead of running `cargo build`.
    pub no_build: bool,
    pub compression: Compression,
    /// Extra arguments for `cargo build`: `-q`, `-v`, `--color=...`.
    pub cargo_args: Vec<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            manifest_path: None,
            packages: Vec::new(),
            target: None,
            profile: "release".to_owned(),
            locking: LockingFlags::default(),
            no_build: false,
            compression: Compression::Xz,
            cargo_args: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("{}: {cause}", package.display())]
    Render {
        package: PathBuf,
        cause: render::RenderError,
    },
    #[error(transparent)]
    Stage(#[from] stage::StageError),
    #[error(transparent)]
    Deb(#[from] cargo_deb_bridge::DebError),
    #[error("`cargo build` failed ({status}); fix the build errors above and run again")]
    CargoBuild { status: String },
    #[error("cannot run cargo: {0}")]
    CargoMissing(std::io::Error),
    #[error("SOURCE_DATE_EPOCH={value:?} is not a Unix timestamp (whole seconds since 1970)")]
    SourceDateEpoch { value: String },
    #[error("`--profile {0}`: not a valid profile name")]
    Profile(String),
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    DebFile(#[from] crate::debfile::DebFileError),
    #[error("signing the .deb: {0}")]
    Sign(#[from] crate::sign::SignError),
    #[error("building the keyring package: {0}")]
    Keyring(String),
    #[error("building the backup package: {0}")]
    Backup(String),
    #[error("building the fleet package: {0}")]
    Fleet(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_owned(),
        cause: source,
    }
}

/// One package, ready to build.
#[derive(Debug, Clone)]
pub struct PackagePlan {
    pub service: Service,
    pub files: Vec<RenderedFile>,
}

/// Where the archive timestamps come from, for the log and for `--explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampSource {
    Environment,
    GitCommit,
    ManifestModified,
}

#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub workspace: Workspace,
    pub packages: Vec<PackagePlan>,
    pub timestamp: u64,
    pub timestamp_source: TimestampSource,
}

/// Loads, validates and renders; touches nothing on disk.
pub fn plan(options: &BuildOptions, listener: &dyn Listener) -> Result<BuildPlan, BuildError> {
    check_profile(&options.profile)?;
    let workspace = Workspace::load(options.manifest_path.as_deref(), options.locking)?;
    let services = workspace.services(&options.packages, &calendar::check_with_systemd)?;
    // The backup package is built at publish time, but its settings fail the build.
    workspace.backup_config().map_err(WorkspaceError::from)?;
    let (timestamp, timestamp_source) =
        source_date_epoch(&workspace.root, &workspace.root_manifest)?;
    if timestamp_source == TimestampSource::ManifestModified {
        listener.warning(&format!(
            "{} is not in a git repository and SOURCE_DATE_EPOCH is not set: the archive timestamps \
             come from the manifest's modification time, so rebuilding elsewhere will not give the same bytes",
            workspace.root.display()
        ));
    }
    let mut packages = Vec::with_capacity(services.len());
    for service in services {
        let render_error = |source| BuildError::Render {
            package: service.manifest_path.clone(),
            cause: source,
        };
        let context = render::RenderContext { timestamp };
        let mut files = render::render_service(&service, &context).map_err(render_error)?;
        let unmatched =
            render::apply_overrides(&mut files, &service.overrides_dir).map_err(render_error)?;
        for name in unmatched {
            listener.warning(&format!(
                "{}: {name} matches no rendered file and is ignored (rendered: {})",
                service.overrides_dir.display(),
                files
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        packages.push(PackagePlan { service, files });
    }
    Ok(BuildPlan {
        workspace,
        packages,
        timestamp,
        timestamp_source,
    })
}

fn check_profile(profile: &str) -> Result<(), BuildError> {
    let valid = !profile.is_empty()
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(BuildError::Profile(profile.to_owned()))
    }
}

/// The directory Cargo puts a profile's output in.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

/// The time generated packages are stamped with, as the services' are:
/// SOURCE_DATE_EPOCH, else the last commit's time, else the manifest's mtime.
pub fn source_timestamp(root: &Path, manifest: &Path) -> Result<u64, BuildError> {
    source_date_epoch(root, manifest).map(|(timestamp, _)| timestamp)
}

/// SOURCE_DATE_EPOCH, else the last commit's time, else the manifest's mtime.
fn source_date_epoch(root: &Path, manifest: &Path) -> Result<(u64, TimestampSource), BuildError> {
    if let Some(value) = std::env::var_os("SOURCE_DATE_EPOCH") {
        let value = value.to_string_lossy().into_owned();
        return value
            .trim()
            .parse()
            .map(|t| (t, TimestampSource::Environment))
            .map_err(|_| BuildError::SourceDateEpoch { value });
    }
    let git = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["log", "-1", "--format=%ct"])
        .output();
    if let Ok(output) = git {
        if output.status.success() {
            if let Ok(time) = String::from_utf8_lossy(&output.stdout).trim().parse() {
                return Ok((time, TimestampSource::GitCommit));
            }
        }
    }
    let modified = std::fs::metadata(manifest)
        .and_then(|m| m.modified())
        .map_err(io_error(manifest))?;
    let seconds = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok((seconds, TimestampSource::ManifestModified))
}

fn run_cargo_build(
    plan: &BuildPlan,
    options: &BuildOptions,
    listener: &dyn Listener,
) -> Result<(), BuildError> {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(&plan.workspace.root_manifest)
        .args(["--profile", &options.profile]);
    if let Some(target) = &options.target {
        command.args(["--target", target]);
    }
    command
        .args(options.locking.args())
        .args(&options.cargo_args);
    for package in &plan.packages {
        command.args([
            "-p",
            &package.service.package,
            "--bin",
            &package.service.binary,
        ]);
    }
    listener.info(&format!(
        "Building {}",
        plan.packages
            .iter()
            .map(|p| p.service.package.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    // Cargo's own progress goes to our stderr, as it would for `cargo build`.
    let status = command.status().map_err(BuildError::CargoMissing)?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::CargoBuild {
            status: status.to_string(),
        })
    }
}

/// Builds every planned package. Returns them in plan order. With `signer`, each .deb
/// gets a debsigs `_gpgorigin` signature before anything hashes it.
pub fn build(
    plan: &BuildPlan,
    options: &BuildOptions,
    signer: Option<&crate::sign::SigningKey>,
    listener: &dyn Listener,
) -> Result<Vec<BuiltDeb>, BuildError> {
    if !options.no_build {
        run_cargo_build(plan, options, listener)?;
    }
    let debs_dir = plan.workspace.debs_dir();
    std::fs::create_dir_all(&debs_dir).map_err(io_error(&debs_dir))?;
    // Same file system as the destination, so the final rename is atomic.
    let scratch = tempfile::Builder::new()
        .prefix(".speedy-build-")
        .tempdir_in(&debs_dir)
        .map_err(io_error(&debs_dir))?;
    let binary = stage::BinaryLocation {
        target_dir: plan.workspace.target_dir.clone(),
        target_triple: options.target.clone(),
        profile_dir: profile_dir(&options.profile).to_owned(),
    };
    let architecture = crate::repo::syntax::architecture(options.target.as_deref());
    let package_one = |package: &PackagePlan| -> Result<(PathBuf, String), BuildError> {
        let service = &package.service;
        listener.info(&format!(
            "Packaging {} {}",
            service.deb_name, service.version
        ));
        let stage = stage::write_stage(
            service,
            &package.files,
            &plan.workspace.root_manifest,
            &plan.workspace.stage_dir(),
            &binary,
            plan.timestamp,
        )?;
        let file_name = format!(
            "{}_{}_{}.deb",
            service.deb_name,
            service.version.without_epoch(),
            architecture
        );
        let scratch_path = scratch.path().join(&file_name);
        let settings = cargo_deb_bridge::DebSettings {
            deb_version: service.version.to_string(),
            target_triple: options.target.clone(),
            profile: options.profile.clone(),
            timestamp: plan.timestamp,
            compression: options.compression,
        };
        cargo_deb_bridge::build_deb(
            &stage,
            &service.package,
            &service.manifest_path,
            &settings,
            &scratch_path,
            listener,
        )?;
        if let Some(key) = signer {
            sign_deb(&scratch_path, key, plan.timestamp)?;
        }
        Ok((scratch_path, file_name))
    };
    // The packages are independent (each stages into its own directory and writes its
    // own file), and compressing data.tar is most of the time: one thread each.
    let results = crate::parallel::map(&plan.packages, plan.packages.len(), package_one);
    let mut finished = Vec::with_capacity(results.len());
    for (package, result) in plan.packages.iter().zip(results) {
        let (scratch_path, file_name) = result?;
        finished.push((&package.service, scratch_path, file_name));
    }
    let mut built = Vec::with_capacity(finished.len());
    for (service, scratch_path, file_name) in finished {
        // Hashed as it streams from disk: a large package is never held in memory.
        let mut hasher = Sha256::new();
        let size = std::fs::File::open(&scratch_path)
            .and_then(|mut file| std::io::copy(&mut file, &mut hasher))
            .map_err(io_error(&scratch_path))?;
        let sha256 = format!("{:x}", hasher.finalize());
        let destination = debs_dir.join(&file_name);
        std::fs::rename(&scratch_path, &destination).map_err(io_error(&destination))?;
        let deb = BuiltDeb {
            package: service.package.clone(),
            deb_name: service.deb_name.clone(),
            version: service.version.to_string(),
            architecture: architecture.clone(),
            path: destination,
            sha256,
            size,
        };
        listener.deb_built(&deb);
        built.push(deb);
    }
    Ok(built)
}

/// Adds the debsigs origin signature, timestamped like the archive so the signed .deb
/// is as reproducible as the unsigned one (Ed25519 and RSA PKCS#1 signatures are
/// deterministic).
fn sign_deb(path: &Path, key: &crate::sign::SigningKey, timestamp: u64) -> Result<(), BuildError> {
    // Streamed from the file: a large .deb is never held in memory.
    let deb = crate::debfile::ScannedDeb::scan(path)?;
    let signature = key.sign_detached_binary_reader(deb.signed_payload()?, timestamp)?;
    deb.write_with_origin_signature(&signature, path)?;
    Ok(())
}

/// What `cargo speedy build --explain` prints: every file as it will land on a server.
pub fn explain(plan: &BuildPlan) -> String {
    let mut out = String::new();
    let source = match plan.timestamp_source {
        TimestampSource::Environment => "SOURCE_DATE_EPOCH",
        TimestampSource::GitCommit => "the last git commit",
        TimestampSource::ManifestModified => "the manifest's modification time",
    };
    out.push_str(&format!(
        "# timestamps: {} (from {source})\n",
        plan.timestamp
    ));
    for package in &plan.packages {
        let service = &package.service;
        out.push_str(&format!(
            "\n#### {} {} ({})\n",
            service.deb_name,
            service.version,
            service.manifest_path.display()
        ));
        out.push_str(&format!(
            "# {} -> {} (0755)\n",
            service.binary, service.install_path
        ));
        for config_file in &service.config_files {
            out.push_str(&format!(
                "# {} -> {} ({:04o}, conffile)\n",
                config_file.source.display(),
                config_file.dest,
                config_file.mode
            ));
        }
        for file in &package.files {
            let destination = match &file.destination {
                Placement::Control => format!("DEBIAN/{}", file.name),
                Placement::Installed { path, .. } => path.clone(),
                Placement::Changelog => {
                    format!("/usr/share/doc/{}/changelog.Debian.gz", service.deb_name)
                }
            };
            let origin = match &file.origin {
                Origin::Template(name) => format!("template {name}"),
                Origin::Override(path) => format!("override {}", path.display()),
            };
            out.push_str(&format!("\n==> {destination} ({origin}) <==\n"));
            out.push_str(&file.contents);
            if !file.contents.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles() {
        assert_eq!(profile_dir("dev"), "debug");
        assert_eq!(profile_dir("release"), "release");
        assert_eq!(profile_dir("dist"), "dist");
        assert!(check_profile("dist").is_ok());
        assert!(check_profile("../x").is_err());
        assert!(check_profile("").is_err());
    }
}
