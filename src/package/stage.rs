//! cargo-deb's view of a service.
//!
//! cargo-deb 3.8 takes the files of a package (its assets) only from
//! `[package.metadata.deb]` in a Cargo.toml on disk: `PackageConfig::assets` and
//! `systemd_units` are crate-private. Rather than editing the user's manifest or
//! reimplementing the archive writer, we compile each service into a small stand-alone
//! manifest in target/speedy/stage/<package>/ that carries the user's package fields,
//! their own `[package.metadata.deb]` keys (paths made absolute) and the assets we
//! rendered, and hand that to the cargo-deb library. The built binary is linked into
//! the stage's target dir, so cargo-deb still treats it as a build product (stripping,
//! `dpkg-shlibdeps` for `$auto` dependencies).

use super::render::{Placement, RenderedFile};
use crate::config::{Service, ServiceKind};
use std::fs;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: `package.metadata.deb.{key}`: {message}", manifest.display())]
    DebMetadata {
        manifest: PathBuf,
        key: String,
        message: String,
    },
    #[error("cannot read {}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error(
        "the binary {} of package `{package}` was not built; run without --no-build, or check `--profile`/`--target`",
        path.display()
    )]
    MissingBinary { package: String, path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |source| StageError::Io {
        path: path.to_owned(),
        cause: source,
    }
}

/// Where the staged package lives and what cargo-deb needs to know about it.
#[derive(Debug, Clone)]
pub struct Stage {
    pub dir: PathBuf,
    pub manifest: PathBuf,
}

/// Paths within `[package.metadata.deb]` that cargo-deb resolves against the crate
/// directory; the stage lives elsewhere, so they are made absolute.
const PATH_KEYS: &[&str] = &[
    "changelog",
    "extended-description-file",
    "readme",
    "triggers-file",
];

/// The parts of the build that decide where the binary is.
#[derive(Debug, Clone)]
pub struct BinaryLocation {
    /// The real target dir of the workspace.
    pub target_dir: PathBuf,
    pub target_triple: Option<String>,
    /// The profile's directory name: `release`, `debug` for dev, else the profile name.
    pub profile_dir: String,
}

impl BinaryLocation {
    fn in_target(&self, base: &Path, file: &str) -> PathBuf {
        let mut path = base.to_path_buf();
        if let Some(triple) = &self.target_triple {
            path.push(triple);
        }
        path.push(&self.profile_dir);
        path.push(file);
        path
    }
}

/// Writes the stage of one service: rendered files, linked binaries and the manifest.
pub fn write_stage(
    service: &Service,
    files: &[RenderedFile],
    workspace_root_manifest: &Path,
    stage_root: &Path,
    binary: &BinaryLocation,
    timestamp: u64,
) -> Result<Stage, StageError> {
    let dir = stage_root.join(&service.package);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    let scripts_dir = dir.join("debian");
    let files_dir = dir.join("files");
    fs::create_dir_all(&scripts_dir).map_err(io(&scripts_dir))?;
    fs::create_dir_all(&files_dir).map_err(io(&files_dir))?;

    let mut assets: Vec<Value> = Vec::new();
    let mut changelog = None;
    // The binary first: cargo-deb sorts assets itself, but errors read better this way.
    let stage_target = dir.join("target");
    let real_binary = binary.in_target(&binary.target_dir, &service.binary);
    link_binary(
        &service.package,
        &real_binary,
        &binary.in_target(&stage_target, &service.binary),
    )?;
    assets.push(asset(
        &format!("target/release/{}", service.binary),
        &service.install_path,
        0o755,
    ));

    for file in files {
        match &file.destination {
            Placement::Control => {
                let path = scripts_dir.join(&file.name);
                fs::write(&path, &file.contents).map_err(io(&path))?;
            }
            Placement::Changelog => {
                let path = dir.join("changelog");
                fs::write(&path, &file.contents).map_err(io(&path))?;
                changelog = Some(path);
            }
            Placement::Installed { path: dest, mode } => {
                let path = files_dir.join(&file.name);
                fs::write(&path, &file.contents).map_err(io(&path))?;
                // Relative to the stage: cargo-deb warns about absolute paths that
                // contain /target/, and the stage lives in the target dir.
                assets.push(asset(&format!("files/{}", file.name), dest, *mode));
            }
        }
    }
    for config_file in &service.config_files {
        assets.push(asset(
            &config_file.source.to_string_lossy(),
            &config_file.dest,
            config_file.mode,
        ));
    }

    let mut deb = user_deb_metadata(service, &stage_target, binary)?;
    // The user's extra assets come after ours; `$auto` would install the binary a
    // second time in /usr/bin, and ours already has its place.
    if let Some(Value::Array(user_assets)) = deb.remove("assets") {
        assets.extend(
            user_assets
                .into_iter()
                .filter(|a| a.as_str() != Some("$auto")),
        );
    }
    deb.insert("name".into(), Value::String(service.deb_name.clone()));
    deb.insert("assets".into(), Value::Array(assets));
    deb.insert(
        "maintainer-scripts".into(),
        Value::String(scripts_dir.to_string_lossy().into_owned()),
    );
    if !deb.contains_key("changelog") {
        if let Some(path) = changelog {
            deb.insert(
                "changelog".into(),
                Value::String(path.to_string_lossy().into_owned()),
            );
        }
    }
    deb.insert(
        "maintainer".into(),
        Value::String(service.maintainer.clone()),
    );
    if !deb.contains_key("copyright") {
        // lintian wants a year in the notice; cargo-deb's default has none.
        let (year, _, _) = crate::repo::syntax::civil_date(timestamp);
        deb.insert(
            "copyright".into(),
            Value::String(format!("{year} {}", service.maintainer)),
        );
    }
    deb.entry("section")
        .or_insert_with(|| Value::String("net".into()));
    deb.entry("priority")
        .or_insert_with(|| Value::String("optional".into()));
    if !deb.contains_key("extended-description") && !deb.contains_key("extended-description-file") {
        deb.insert(
            "extended-description".into(),
            Value::String(extended_description(service)),
        );
    }
    // The maintainer scripts call systemd-sysusers, as dh_installsysusers's do.
    let sysusers = "systemd | systemd-standalone-sysusers | systemd-sysusers";
    let depends = match deb.get("depends") {
        Some(Value::String(depends)) => format!("{depends}, {sysusers}"),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .chain([sysusers])
            .collect::<Vec<_>>()
            .join(", "),
        _ => format!("$auto, {sysusers}"),
    };
    deb.insert("depends".into(), Value::String(depends));
    // The monitoring check asks the health URL with curl, and says UNKNOWN with the
    // package to install when it is missing: the daemon itself runs without it.
    if let ServiceKind::Daemon {
        health_url: Some(_),
        ..
    } = &service.kind
    {
        let recommends = match deb.get("recommends") {
            Some(Value::String(recommends)) if !recommends.trim().is_empty() => {
                format!("{recommends}, curl")
            }
            _ => "curl".to_owned(),
        };
        deb.insert("recommends".into(), Value::String(recommends));
    }

    let manifest_text = staged_manifest(service, workspace_root_manifest, deb)?;
    let manifest = dir.join("Cargo.toml");
    fs::write(&manifest, manifest_text).map_err(io(&manifest))?;
    Ok(Stage { dir, manifest })
}

fn asset(source: &str, dest: &str, mode: u32) -> Value {
    Value::Array(vec![
        Value::String(source.to_owned()),
        Value::String(dest.trim_start_matches('/').to_owned()),
        Value::String(format!("{mode:o}")),
    ])
}

/// Hard-links (or copies, across file systems) a built binary into the stage.
fn link_binary(package: &str, real: &Path, staged: &Path) -> Result<(), StageError> {
    if !real.is_file() {
        return Err(StageError::MissingBinary {
            package: package.to_owned(),
            path: real.to_owned(),
        });
    }
    if let Some(parent) = staged.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    if fs::hard_link(real, staged).is_err() {
        fs::copy(real, staged).map_err(io(staged))?;
    }
    Ok(())
}

/// The user's `[package.metadata.deb]`, with crate-relative paths made absolute and
/// their own `target/release/` assets linked into the stage.
fn user_deb_metadata(
    service: &Service,
    stage_target: &Path,
    binary: &BinaryLocation,
) -> Result<Table, StageError> {
    let Some(json) = &service.deb_metadata else {
        return Ok(Table::new());
    };
    let invalid = |key: &str, message: String| StageError::DebMetadata {
        manifest: service.manifest_path.clone(),
        key: key.to_owned(),
        message,
    };
    let mut deb: Table = match json_to_toml(json) {
        Some(Value::Table(table)) => table,
        _ => return Err(invalid("", "must be a table".into())),
    };
    for key in ["maintainer-scripts", "systemd-units", "variants"] {
        if key == "maintainer-scripts" {
            // Handled as the override folder; see `Service::overrides_dir`.
            deb.remove(key);
        } else if deb.contains_key(key) {
            return Err(invalid(
                key,
                "is not supported by cargo speedy; see docs/reference.md".into(),
            ));
        }
    }
    let absolute = |p: &str| service.crate_dir.join(p).to_string_lossy().into_owned();
    for key in PATH_KEYS {
        if let Some(value) = deb.get_mut(*key) {
            let Value::String(path) = value else {
                return Err(invalid(key, "must be a path".into()));
            };
            *path = absolute(path);
        }
    }
    match deb.get_mut("license-file") {
        Some(Value::String(path)) => *path = absolute(path),
        Some(Value::Array(items)) => {
            if let Some(Value::String(path)) = items.first_mut() {
                *path = absolute(path);
            }
        }
        Some(_) => {
            return Err(invalid(
                "license-file",
                "must be a path or [path, lines-to-skip]".into(),
            ))
        }
        None => {}
    }
    if let Some(assets) = deb.get_mut("assets") {
        let Value::Array(assets) = assets else {
            return Err(invalid("assets", "must be an array".into()));
        };
        for (index, entry) in assets.iter_mut().enumerate() {
            let source = match entry {
                Value::Array(items) => items.first_mut(),
                Value::Table(table) => table.get_mut("source"),
                Value::String(s) if s == "$auto" => continue,
                _ => None,
            };
            let Some(Value::String(source)) = source else {
                return Err(invalid(
                    &format!("assets[{index}]"),
                    "must be [source, dest, mode] or a table with `source`".into(),
                ));
            };
            if let Some(rest) = source.strip_prefix("target/release/") {
                link_binary(
                    &service.package,
                    &binary.in_target(&binary.target_dir, rest),
                    &binary.in_target(stage_target, rest),
                )?;
            } else {
                *source = absolute(source);
            }
        }
    }
    Ok(deb)
}

fn json_to_toml(value: &serde_json::Value) -> Option<Value> {
    Some(match value {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64()?),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => {
            Value::Array(items.iter().filter_map(json_to_toml).collect())
        }
        serde_json::Value::Object(map) => Value::Table(
            map.iter()
                .filter_map(|(k, v)| json_to_toml(v).map(|v| (k.clone(), v)))
                .collect(),
        ),
    })
}

fn extended_description(service: &Service) -> String {
    let what = match &service.kind {
        ServiceKind::Daemon { .. } => {
            format!(
                "It runs as the systemd service {}.service.",
                service.deb_name
            )
        }
        ServiceKind::Jobs { jobs } => {
            let list = jobs
                .iter()
                .map(|j| format!("{} ({})", j.name, j.schedule))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "Its periodic jobs run from systemd timers: {list}. Touch {} to keep them off on a host.",
                service.jobs_disabled_flag
            )
        }
    };
    format!(
        "{what} The service runs as the system user {} and keeps its state in /var/lib/{}.",
        service.user, service.state_directory
    )
}

/// The stand-alone manifest: the user's package fields, the service's binary target,
/// the workspace's profiles (cargo-deb reads `debug`/`strip` from them) and the
/// generated `[package.metadata.deb]`.
fn staged_manifest(
    service: &Service,
    workspace_root_manifest: &Path,
    deb: Table,
) -> Result<String, StageError> {
    let read = |path: &Path| -> Result<Table, StageError> {
        let text = fs::read_to_string(path).map_err(io(path))?;
        text.parse::<Table>().map_err(|e| StageError::Manifest {
            path: path.to_owned(),
            message: e.to_string(),
        })
    };
    let own = read(&service.manifest_path)?;
    let root = read(workspace_root_manifest)?;
    let workspace_package = root
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(Value::as_table)
        .cloned()
        .unwrap_or_default();
    let own_package = own
        .get("package")
        .and_then(Value::as_table)
        .cloned()
        .unwrap_or_default();

    let mut package = Table::new();
    package.insert("name".into(), Value::String(service.package.clone()));
    // cargo-deb is given the validated Debian version explicitly; this is for Cargo and
    // for anyone running `cargo deb` on the stage by hand.
    package.insert(
        "version".into(),
        Value::String(service.cargo_version.clone()),
    );
    package.insert("edition".into(), Value::String("2021".into()));
    package.insert(
        "description".into(),
        Value::String(service.description.clone()),
    );
    for key in [
        "license",
        "license-file",
        "authors",
        "homepage",
        "repository",
        "documentation",
        "readme",
    ] {
        let value = match own_package.get(key) {
            Some(Value::Table(t)) if t.get("workspace").and_then(Value::as_bool) == Some(true) => {
                workspace_package
                    .get(key)
                    .cloned()
                    .map(|v| (v, root_dir(workspace_root_manifest)))
            }
            Some(v) => Some((v.clone(), service.crate_dir.clone())),
            None => None,
        };
        if let Some((mut value, base)) = value {
            if matches!(key, "license-file" | "readme") {
                if let Value::String(path) = &mut value {
                    *path = base.join(&*path).to_string_lossy().into_owned();
                }
            }
            package.insert(key.into(), value);
        }
    }
    for key in [
        "autobins",
        "autoexamples",
        "autotests",
        "autobenches",
        "build",
    ] {
        package.insert(key.into(), Value::Boolean(false));
    }
    let mut metadata = Table::new();
    metadata.insert("deb".into(), Value::Table(deb));
    package.insert("metadata".into(), Value::Table(metadata));

    let mut bin = Table::new();
    bin.insert("name".into(), Value::String(service.binary.clone()));
    bin.insert(
        "path".into(),
        Value::String(service.binary_source.to_string_lossy().into_owned()),
    );

    let mut manifest = Table::new();
    manifest.insert("package".into(), Value::Table(package));
    manifest.insert("bin".into(), Value::Array(vec![Value::Table(bin)]));
    if let Some(profile) = root.get("profile") {
        manifest.insert("profile".into(), profile.clone());
    }
    // Its own workspace, so Cargo does not look for the user's.
    manifest.insert("workspace".into(), Value::Table(Table::new()));
    let header = "# Generated by cargo-speedy for cargo-deb; edits are overwritten.\n";
    Ok(format!(
        "{header}{}",
        toml::to_string(&manifest).map_err(|e| StageError::Manifest {
            path: service.manifest_path.clone(),
            message: e.to_string(),
        })?
    ))
}

fn root_dir(manifest: &Path) -> PathBuf {
    manifest.parent().map(Path::to_path_buf).unwrap_or_default()
}
