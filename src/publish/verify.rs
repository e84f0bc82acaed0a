//! `cargo speedy verify` and `cargo speedy list`: read-only checks of a repository.

use super::state::{self, SuiteState};
use super::PublishError;
use crate::repo::index::Release;
use crate::repo::layout;
use crate::repo::plan::sha256_hex;
use crate::sign::PublicKey;
use crate::store::Store;

/// The findings for one suite.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SuiteCheck {
    pub suite: String,
    pub packages: usize,
    /// Mismatches: any of these makes verify fail.
    pub problems: Vec<String>,
    /// States apt reads without error but that a rerun of publish tidies up.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    pub store: String,
    pub suites: Vec<SuiteCheck>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.suites.iter().all(|s| s.problems.is_empty())
    }
}

/// Checks every suite: the InRelease signature, every index against its listed hash
/// (by-hash copy and canonical file), Release and Release.gpg, and every pool file's
/// size and SHA256.
pub fn verify(store: &dyn Store, key: &PublicKey) -> Result<VerifyReport, PublishError> {
    let mut report = VerifyReport {
        store: store.describe(),
        suites: Vec::new(),
    };
    for suite in state::published_suites(store)?.into_keys() {
        let mut check = SuiteCheck {
            suite: suite.clone(),
            ..SuiteCheck::default()
        };
        match state::read_suite(store, key, &suite) {
            Ok(Some(state)) => {
                check.packages = state.packages.len();
                check_indices(store, &state, &mut check)?;
                check_release_files(store, key, &state, &mut check)?;
                check_pool(store, &state, &mut check)?;
            }
            Ok(None) => {}
            Err(PublishError::Store(e)) => return Err(PublishError::Store(e)),
            Err(e) => check.problems.push(e.to_string()),
        }
        report.suites.push(check);
    }
    Ok(report)
}

fn check_indices(
    store: &dyn Store,
    state: &SuiteState,
    check: &mut SuiteCheck,
) -> Result<(), PublishError> {
    let suite = &state.suite;
    // Reading the suite checked the plain Packages against what Packages.gz holds.
    for file in state
        .release
        .files
        .iter()
        .filter(|f| layout::index_is_written(&f.path))
    {
        let by_hash = format!(
            "dists/{suite}/{}",
            layout::by_hash_path(&file.path, &file.sha256)
        );
        match store.get(&by_hash)? {
            Some(bytes) if sha256_hex(&bytes) == file.sha256 && bytes.len() as u64 == file.size => {
            }
            Some(_) => check
                .problems
                .push(format!("{by_hash}: the contents do not match its name")),
            None => check.problems.push(format!(
                "{by_hash}: missing, but InRelease lists {}",
                file.path
            )),
        }
        let canonical = format!("dists/{suite}/{}", file.path);
        match store.get(&canonical)? {
            Some(bytes) if sha256_hex(&bytes) == file.sha256 => {}
            Some(bytes) => {
                let sha256 = sha256_hex(&bytes);
                let newer = format!(
                    "dists/{suite}/{}",
                    layout::by_hash_path(&file.path, &sha256)
                );
                if store.head(&newer)?.is_some() {
                    check.notes.push(format!("{canonical} is ahead of InRelease (an interrupted publish); publish again to finish it"));
                } else {
                    check.problems.push(format!(
                        "{canonical}: SHA256 {sha256} does not match InRelease ({})",
                        file.sha256
                    ));
                }
            }
            None => check.problems.push(format!("{canonical}: missing")),
        }
    }
    Ok(())
}

fn check_release_files(
    store: &dyn Store,
    key: &PublicKey,
    state: &SuiteState,
    check: &mut SuiteCheck,
) -> Result<(), PublishError> {
    let suite = &state.suite;
    let release_key = layout::release_key(suite);
    let gpg_key = layout::release_gpg_key(suite);
    let (Some(release), Some(signature)) = (store.get(&release_key)?, store.get(&gpg_key)?) else {
        check
            .problems
            .push(format!("{release_key} or {gpg_key} is missing"));
        return Ok(());
    };
    let pair = key.verify_detached(&release, &signature);
    let pair_verifies = pair.is_ok();
    let matches_in_release = release == state.release_text.as_bytes();
    match (pair_verifies, matches_in_release) {
        (true, true) => {}
        // Release.gpg and Release are written one after the other before InRelease;
        // an interrupted publish leaves them a step apart. apt reads InRelease first.
        (true, false) => {
            if Release::parse(&String::from_utf8_lossy(&release), &release_key).is_ok() {
                check.notes.push(format!("{release_key} is ahead of InRelease (an interrupted publish); publish again to finish it"));
            } else {
                check
                    .problems
                    .push(format!("{release_key}: not a Release file"));
            }
        }
        // Our key signed a different text: the next Release, whose write was
        // interrupted. Anything else (another key, garbage) is a problem.
        (false, true) => match pair {
            Err(crate::sign::VerifyError::BadSignature) => {
                check.notes.push(format!("{gpg_key} is ahead of {release_key} (an interrupted publish); publish again to finish it"));
            }
            _ => check.problems.push(format!(
                "{gpg_key}: not a valid signature of {release_key} by the configured key"
            )),
        },
        (false, false) => check.problems.push(format!(
            "{release_key}: differs from InRelease and {gpg_key} does not sign it"
        )),
    }
    Ok(())
}

fn check_pool(
    store: &dyn Store,
    state: &SuiteState,
    check: &mut SuiteCheck,
) -> Result<(), PublishError> {
    for entry in &state.packages {
        match store.get(&entry.filename)? {
            None => check.problems.push(format!(
                "{}: missing ({} {})",
                entry.filename, entry.name, entry.version
            )),
            Some(bytes) if bytes.len() as u64 != entry.size => check.problems.push(format!(
                "{}: {} bytes, but the index says {}",
                entry.filename,
                bytes.len(),
                entry.size
            )),
            Some(bytes) if sha256_hex(&bytes) != entry.sha256 => check.problems.push(format!(
                "{}: SHA256 {} does not match the index ({})",
                entry.filename,
                sha256_hex(&bytes),
                entry.sha256
            )),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Every suite with its packages, for `cargo speedy list`.
pub fn list(store: &dyn Store, key: &PublicKey) -> Result<Vec<SuiteState>, PublishError> {
    Ok(state::read_all(store, key)?.into_values().collect())
}
