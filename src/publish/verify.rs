//! `cargo speedy verify` and `cargo speedy list`: read-only checks of a repository.

use super::state::{self, SuiteState};
use super::PublishError;
use crate::repo::index::Release;
use crate::repo::layout;
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
/// size and SHA256. Objects are read `jobs` at a time (a round trip to a remote store
/// is most of their cost), pool files hashed as they stream in, so memory stays
/// bounded whatever the size of the pool.
pub fn verify(
    store: &dyn Store,
    key: &PublicKey,
    jobs: usize,
) -> Result<VerifyReport, PublishError> {
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
                let (indices, release_files) = crate::parallel::join(
                    || check_indices(store, &state, jobs),
                    || check_release_files(store, key, &state),
                );
                for findings in [indices?, release_files?, check_pool(store, &state, jobs)?] {
                    check.problems.extend(findings.problems);
                    check.notes.extend(findings.notes);
                }
            }
            Ok(None) => {}
            Err(PublishError::Store(e)) => return Err(PublishError::Store(e)),
            Err(e) => check.problems.push(e.to_string()),
        }
        report.suites.push(check);
    }
    Ok(report)
}

/// What one check found: problems fail verify, notes do not.
#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    fn problem(problem: String) -> Self {
        Findings {
            problems: vec![problem],
            notes: Vec::new(),
        }
    }

    fn note(note: String) -> Self {
        Findings {
            problems: Vec::new(),
            notes: vec![note],
        }
    }

    fn all(parts: Vec<Findings>) -> Self {
        parts
            .into_iter()
            .fold(Findings::default(), |mut all, part| {
                all.problems.extend(part.problems);
                all.notes.extend(part.notes);
                all
            })
    }
}

fn check_indices(
    store: &dyn Store,
    state: &SuiteState,
    jobs: usize,
) -> Result<Findings, PublishError> {
    let suite = &state.suite;
    // Reading the suite checked the plain Packages against what Packages.gz holds.
    let written: Vec<_> = state
        .release
        .files
        .iter()
        .filter(|f| layout::index_is_written(&f.path))
        .collect();
    let by_hash = crate::parallel::try_map(&written, jobs, |file| {
        let by_hash = format!(
            "dists/{suite}/{}",
            layout::by_hash_path(&file.path, &file.sha256)
        );
        Ok::<_, PublishError>(match store.digest(&by_hash)? {
            Some(found) if found.sha256 == file.sha256 && found.size == file.size => {
                Findings::default()
            }
            Some(_) => Findings::problem(format!("{by_hash}: the contents do not match its name")),
            None => Findings::problem(format!(
                "{by_hash}: missing, but InRelease lists {}",
                file.path
            )),
        })
    })?;
    let canonical = crate::parallel::try_map(&written, jobs, |file| {
        let canonical = format!("dists/{suite}/{}", file.path);
        Ok::<_, PublishError>(match store.digest(&canonical)? {
            Some(found) if found.sha256 == file.sha256 => Findings::default(),
            Some(found) => {
                let newer = format!(
                    "dists/{suite}/{}",
                    layout::by_hash_path(&file.path, &found.sha256)
                );
                if store.head(&newer)?.is_some() {
                    Findings::note(format!("{canonical} is ahead of InRelease (an interrupted publish); publish again to finish it"))
                } else {
                    Findings::problem(format!(
                        "{canonical}: SHA256 {} does not match InRelease ({})",
                        found.sha256, file.sha256
                    ))
                }
            }
            None => Findings::problem(format!("{canonical}: missing")),
        })
    })?;
    Ok(Findings::all(
        by_hash
            .into_iter()
            .zip(canonical)
            .flat_map(|(a, b)| [a, b])
            .collect(),
    ))
}

fn check_release_files(
    store: &dyn Store,
    key: &PublicKey,
    state: &SuiteState,
) -> Result<Findings, PublishError> {
    let mut check = Findings::default();
    let suite = &state.suite;
    let release_key = layout::release_key(suite);
    let gpg_key = layout::release_gpg_key(suite);
    let (release, signature) =
        crate::parallel::join(|| store.get(&release_key), || store.get(&gpg_key));
    let (Some(release), Some(signature)) = (release?, signature?) else {
        return Ok(Findings::problem(format!(
            "{release_key} or {gpg_key} is missing"
        )));
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
    Ok(check)
}

fn check_pool(
    store: &dyn Store,
    state: &SuiteState,
    jobs: usize,
) -> Result<Findings, PublishError> {
    let found = crate::parallel::try_map(&state.packages, jobs, |entry| {
        Ok::<_, PublishError>(match store.digest(&entry.filename)? {
            None => Findings::problem(format!(
                "{}: missing ({} {})",
                entry.filename, entry.name, entry.version
            )),
            Some(found) if found.size != entry.size => Findings::problem(format!(
                "{}: {} bytes, but the index says {}",
                entry.filename, found.size, entry.size
            )),
            Some(found) if found.sha256 != entry.sha256 => Findings::problem(format!(
                "{}: SHA256 {} does not match the index ({})",
                entry.filename, found.sha256, entry.sha256
            )),
            Some(_) => Findings::default(),
        })
    })?;
    Ok(Findings::all(found))
}

/// Every suite with its packages, for `cargo speedy list`.
pub fn list(store: &dyn Store, key: &PublicKey) -> Result<Vec<SuiteState>, PublishError> {
    Ok(state::read_all(store, key)?.into_values().collect())
}
