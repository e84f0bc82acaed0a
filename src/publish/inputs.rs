//! What a publish takes in: .debs read, validated and hashed before anything is
//! written (invariant 1, docs/ARCHITECTURE.md, "Publish invariants"), the .debs of a
//! directory, and the entries a promotion copies from another suite.

use super::{state, PublishError};
use crate::debfile::ScannedDeb;
use crate::repo::index::PackageEntry;
use crate::repo::layout;
use crate::store::Store;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A .deb to publish, read and validated.
#[derive(Debug, Clone)]
pub struct IncomingDeb {
    /// The local file; `None` for a promotion, whose bytes are already in the pool.
    pub path: Option<PathBuf>,
    pub entry: PackageEntry,
}

/// Reads, validates and hashes the .debs; nothing is published unless all are good.
///
/// The scans run on a thread of their own, which hands over each .deb's control text
/// and hashes. A scan allocates and frees tens of kilobytes (the read buffer, the
/// decompressor of control.tar.*, the tar reader); done between the small allocations
/// of the entries that stay, glibc's heap fragmented around them, and 10,000 .debs
/// peaked at 160–300 MB (the peak depended on the length of their paths). On a
/// thread of its own, what a scan frees is reused by the next one.
pub fn read_debs(paths: &[PathBuf]) -> Result<Vec<IncomingDeb>, PublishError> {
    if paths.is_empty() {
        return Err(PublishError::NothingToPublish);
    }
    /// What the scanning thread hands over of a .deb.
    struct Scanned {
        control: String,
        size: u64,
        sha256: String,
        md5: String,
    }
    let (sender, receiver) = std::sync::mpsc::sync_channel(64);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for path in paths {
                // One streaming pass: only the ar headers and the control member are
                // held.
                let scanned = ScannedDeb::scan(path).map(|deb| Scanned {
                    control: deb.control_text().to_owned(),
                    size: deb.size(),
                    sha256: deb.sha256().to_owned(),
                    md5: deb.md5().to_owned(),
                });
                let failed = scanned.is_err();
                // A closed channel: the reader stopped at an error.
                if sender.send(scanned).is_err() || failed {
                    break;
                }
            }
        });
        let mut incoming = Vec::with_capacity(paths.len());
        for (path, scanned) in paths.iter().zip(receiver) {
            let deb = scanned.map_err(|source| PublishError::Deb {
                path: path.clone(),
                cause: source,
            })?;
            let entry = PackageEntry::from_control(
                &deb.control,
                deb.size,
                &deb.sha256,
                &deb.md5,
                &path.display().to_string(),
            )
            .map_err(|source| PublishError::Control {
                path: path.clone(),
                cause: source,
            })?;
            incoming.push(IncomingDeb {
                path: Some(path.clone()),
                entry,
            });
        }
        Ok(incoming)
    })
}

/// What `promote` publishes into another suite: the newest version of each package
/// (or of the named ones) in `from`. Promotion copies index entries, never bytes: the
/// pool files are shared by every suite that lists them.
pub fn promotion(
    store: &dyn Store,
    key: &crate::sign::PublicKey,
    from: &str,
    names: &[String],
) -> Result<Vec<IncomingDeb>, PublishError> {
    layout::check_suite(from).map_err(PublishError::InvalidSuite)?;
    let state = state::read_suite(store, key, from)?.ok_or_else(|| PublishError::EmptySuite {
        suite: from.to_owned(),
    })?;
    for name in names {
        if !state.packages.iter().any(|p| &p.name == name) {
            return Err(PublishError::NotInSuite {
                suite: from.to_owned(),
                package: name.clone(),
            });
        }
    }
    // Packages are sorted newest first within a name, so the first of each
    // (name, architecture) is the one to promote.
    let mut seen = BTreeSet::new();
    let mut incoming = Vec::new();
    for entry in &state.packages {
        let wanted = names.is_empty() || names.contains(&entry.name);
        if wanted && seen.insert((entry.name.clone(), entry.architecture.clone())) {
            incoming.push(IncomingDeb {
                path: None,
                entry: entry.clone(),
            });
        }
    }
    if incoming.is_empty() {
        return Err(PublishError::EmptySuite {
            suite: from.to_owned(),
        });
    }
    Ok(incoming)
}

/// The .debs to publish when none are named: everything in `dir`.
pub fn debs_in(dir: &Path) -> Vec<PathBuf> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "deb"))
                .collect()
        })
        .unwrap_or_default();
    debs.sort();
    debs
}
