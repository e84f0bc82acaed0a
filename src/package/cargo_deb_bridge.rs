//! The bridge to the cargo-deb library, which writes each .deb (pinned at =3.8.0; its
//! API is "experimental"). Everything cargo-deb needs but cannot take from us
//! directly is staged by `stage`; the .deb format itself is `crate::debfile`'s.
//!
//! We use the same sequence as `CargoDeb::process_package` in cargo-deb's lib.rs, minus
//! `cargo build` (we build once for all services) and minus its choice of output path:
//! cargo-deb writes the .deb in place, so we give it a path in a temporary directory
//! and the caller renames the finished file into target/speedy/debs/.

use super::stage::Stage;
use crate::listener::Listener;
use cargo_deb::assets::{apply_compressed_assets, compressed_assets};
use cargo_deb::compress::{CompressConfig, Format};
use cargo_deb::config::{BuildOptions, BuildProfile, DebConfigOverrides};
use cargo_deb::{strip_binaries, write_deb, BuildEnvironment};
use std::path::{Path, PathBuf};

/// What cargo-deb is told beyond the staged manifest.
#[derive(Debug, Clone)]
pub struct DebSettings {
    pub deb_version: String,
    pub target_triple: Option<String>,
    pub profile: String,
    /// Unix time for every timestamp in the archive (SOURCE_DATE_EPOCH).
    pub timestamp: u64,
    pub compression: Compression,
}

/// The data/control compression, as cargo-deb offers it (and as `--compression`
/// names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Xz,
    Gzip,
    /// xz at a low preset, for quick local iterations.
    XzFast,
}

#[derive(Debug, thiserror::Error)]
#[error("cargo-deb failed for {package} ({}): {message}", manifest.display())]
pub struct DebError {
    pub package: String,
    /// The user's manifest, not the staged one: that is where a fix goes.
    pub manifest: PathBuf,
    pub message: String,
}

/// Adapts our listener to cargo-deb's, which would otherwise print by itself.
struct ListenerBridge<'a> {
    listener: &'a dyn Listener,
    package: &'a str,
}

impl cargo_deb::listener::Listener for ListenerBridge<'_> {
    fn warning(&self, s: String) {
        self.listener.warning(&format!("{}: {s}", self.package));
    }
    fn info(&self, s: String) {
        self.listener.detail(&format!("{}: {s}", self.package));
    }
    fn progress(&self, operation: &str, detail: String) {
        self.listener
            .detail(&format!("{}: {operation} {detail}", self.package));
    }
    fn error(&self, _error: &(dyn std::error::Error + 'static)) {
        // Errors are returned to our caller, which reports them once.
    }
    fn generated_archive(&self, _path: &Path) {}
}

fn describe(error: &cargo_deb::CargoDebError) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Builds one .deb from a stage into `output` (a path in a temporary directory).
pub fn build_deb(
    stage: &Stage,
    package: &str,
    manifest: &Path,
    settings: &DebSettings,
    output: &Path,
    listener: &dyn Listener,
) -> Result<(), DebError> {
    let bridge = ListenerBridge { listener, package };
    let fail = |error: cargo_deb::CargoDebError| DebError {
        package: package.to_owned(),
        manifest: manifest.to_owned(),
        message: describe(&error),
    };

    let mut overrides = DebConfigOverrides::default();
    overrides.deb_version = Some(settings.deb_version.clone());
    let mut profile = BuildProfile::default();
    profile.profile_name = Some(settings.profile.clone());
    let options = BuildOptions {
        manifest_path: Some(&stage.manifest),
        rust_target_triples: settings.target_triple.as_deref().into_iter().collect(),
        overrides,
        build_profile: profile,
        ..BuildOptions::default()
    };
    let (mut environment, packages) =
        BuildEnvironment::from_manifest(options, &bridge).map_err(fail)?;
    environment.reproducible = true;
    let mut package_config = packages.into_iter().next().ok_or_else(|| DebError {
        package: package.to_owned(),
        manifest: stage.manifest.clone(),
        message: "cargo-deb found no package in the staged manifest".into(),
    })?;
    package_config.default_timestamp = settings.timestamp;

    package_config.resolve_assets(&bridge).map_err(fail)?;
    let depends = package_config
        .resolved_binary_dependencies(&bridge)
        .map_err(fail)?;
    package_config.resolved_depends = Some(depends);
    let compressed = compressed_assets(&package_config, &bridge).map_err(fail)?;
    apply_compressed_assets(&mut package_config, compressed);
    strip_binaries(&environment, &mut package_config, false, &bridge).map_err(fail)?;
    package_config.sort_assets_by_type();

    let compress = CompressConfig {
        fast: settings.compression == Compression::XzFast,
        compress_type: match settings.compression {
            Compression::Gzip => Format::Gzip,
            Compression::Xz | Compression::XzFast => Format::Xz,
        },
        compress_system: false,
        rsyncable: false,
    };
    write_deb(
        &environment,
        output.to_path_buf(),
        &package_config,
        &compress,
        &bridge,
    )
    .map_err(fail)?;
    Ok(())
}
