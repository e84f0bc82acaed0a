//! The pool: which of a change's files are there already, and uploading the others
//! (invariant 2, docs/ARCHITECTURE.md, "Publish invariants": a pool object never
//! changes). What a signed index lists is there (invariant 3) and costs no request;
//! any other file costs a HEAD, unless one listing of the pool answers for all
//! (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").

use super::state::SuiteState;
use super::{put_options, IncomingDeb, Publish, PublishError};
use crate::listener::Listener;
use crate::repo::index::PackageEntry;
use crate::repo::plan::{self, Merge, PoolUpload, Step};
use crate::store::Body;
use std::collections::{BTreeMap, HashMap};

/// What a pool check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolObject {
    /// There with these bytes: nothing to upload.
    Present,
    Absent,
}

/// The pool files that the published suites list, by key, with the suite that lists
/// each and its SHA256: built once per attempt, so each lookup is O(1).
struct PoolListing<'a> {
    files: HashMap<&'a str, (&'a str, &'a str)>,
}

impl<'a> PoolListing<'a> {
    fn of(states: &'a BTreeMap<String, SuiteState>) -> Self {
        let mut files = HashMap::new();
        for state in states.values() {
            for package in &state.packages {
                files
                    .entry(package.filename.as_str())
                    .or_insert((state.suite.as_str(), package.sha256.as_str()));
            }
        }
        PoolListing { files }
    }

    /// Whether a suite lists `entry`'s file with its bytes, so it is in the pool.
    fn vouches_for(&self, entry: &PackageEntry) -> bool {
        self.files
            .get(entry.filename.as_str())
            .is_some_and(|(_, sha256)| *sha256 == entry.sha256)
    }
}

impl Publish<'_> {
    /// The sizes of the pool objects at the keys of a few local .debs (no more than
    /// `jobs`: an update), those that are there, asked alongside the read of the
    /// suites: a round trip saved on the critical path, for a HEAD per .deb that a
    /// signed index may turn out to list
    /// (docs/ARCHITECTURE.md, "The life of a publish").
    /// `None` for more .debs: [`Publish::missing_pool`] decides then.
    pub(super) fn pool_sizes_early(
        &self,
        debs: &[IncomingDeb],
    ) -> Result<Option<HashMap<String, u64>>, PublishError> {
        let local: Vec<&IncomingDeb> = debs.iter().filter(|d| d.path.is_some()).collect();
        if local.is_empty() || local.len() > self.config.jobs {
            return Ok(None);
        }
        let sizes = self.each_in_parallel(&local, |deb| {
            let key = &deb.entry.filename;
            Ok(self.store.head(key)?.map(|meta| (key.clone(), meta.size)))
        })?;
        Ok(Some(sizes.into_iter().flatten().collect()))
    }

    /// The pool files of `merged` that must be uploaded: the added entries from local
    /// .debs that are not there yet. A promoted or restored entry must be there
    /// already (with its size), or the publish stops before writing anything.
    /// `early_pool_sizes` ([`Publish::pool_sizes_early`]) answers for every local
    /// .deb when given.
    pub(super) fn missing_pool(
        &self,
        merged: &Merge,
        debs: &[IncomingDeb],
        states: &BTreeMap<String, SuiteState>,
        early_pool_sizes: Option<HashMap<String, u64>>,
        listener: &dyn Listener,
    ) -> Result<Vec<PoolUpload>, PublishError> {
        // Which pool files are there already: what a signed index lists is (invariant
        // 3), so only the others cost a request.
        let listed = PoolListing::of(states);
        let local: HashMap<(&str, &str, &str), usize> = {
            let mut local = HashMap::new();
            for (index, deb) in debs.iter().enumerate().filter(|(_, d)| d.path.is_some()) {
                local.entry(deb.entry.id()).or_insert(index);
            }
            local
        };
        let unlisted = merged
            .added
            .iter()
            .filter(|e| {
                local.contains_key(&e.id()) && !listed.files.contains_key(e.filename.as_str())
            })
            .count();
        let pool_sizes = match early_pool_sizes {
            Some(sizes) => Some(sizes),
            None => self.pool_sizes(unlisted, listed.files.len(), listener),
        };
        // Each entry with the .deb it comes from here (none: promoted or restored).
        let to_check: Vec<(&PackageEntry, Option<usize>)> = merged
            .added
            .iter()
            .map(|entry| (entry, local.get(&entry.id()).copied()))
            // A promoted or restored entry's bytes must be in the pool already, or the
            // switch would publish an index naming a missing file.
            .filter(|(entry, source)| source.is_some() || !listed.vouches_for(entry))
            .collect();
        let found = self.each_in_parallel(&to_check, |&(entry, source)| match source {
            Some(_) => self.check_pool_object(entry, &listed, pool_sizes.as_ref()),
            None => self
                .require_pool_object(entry)
                .map(|()| PoolObject::Present),
        })?;
        let mut pool = Vec::new();
        for (&(entry, source), found) in to_check.iter().zip(found) {
            if let (Some(source), PoolObject::Absent) = (source, found) {
                pool.push(PoolUpload {
                    key: entry.filename.clone(),
                    source,
                    size: entry.size,
                    sha256: entry.sha256.clone(),
                });
            }
        }
        Ok(pool)
    }

    /// The size of every object in the pool, when one listing costs fewer requests
    /// than a HEAD for each of the `unlisted` files (`plan::list_the_pool`; a first
    /// publish). It only saves requests: when it fails, each file is asked about
    /// instead.
    fn pool_sizes(
        &self,
        unlisted: usize,
        listed: usize,
        listener: &dyn Listener,
    ) -> Option<HashMap<String, u64>> {
        if !plan::list_the_pool(unlisted, listed) {
            return None;
        }
        match self.store.list("pool/") {
            Ok(objects) => Some(objects.into_iter().map(|m| (m.key, m.size)).collect()),
            Err(error) => {
                listener.detail(&format!("listing the pool: {error}; checking each file"));
                None
            }
        }
    }

    /// Uploads the pool files that are not there yet, a few at a time, reporting bytes.
    /// Returns the keys written.
    pub(super) fn upload_pool(
        &self,
        steps: &[Step],
        debs: &[IncomingDeb],
        listener: &dyn Listener,
    ) -> Result<Vec<String>, PublishError> {
        // The plan holds only the pool files found missing while planning.
        let pending: Vec<PoolUpload> = steps
            .iter()
            .filter_map(|step| match step {
                Step::Pool(upload) => Some(upload.clone()),
                _ => None,
            })
            .collect();
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        listener.transfer_start(pending.iter().map(|p| p.size).sum());
        let uploaded =
            self.each_in_parallel(&pending, |upload| {
                listener.detail(&format!("upload {}", upload.key));
                let path = debs[upload.source].path.as_deref().ok_or_else(|| {
                    PublishError::RemoteCorrupt {
                        store: self.store.describe(),
                        key: upload.key.clone(),
                        reason:
                            "missing from the pool, but a suite lists it; run `cargo speedy verify`"
                                .into(),
                    }
                })?;
                self.store
                    .put(&upload.key, Body::File(path), &put_options(&upload.key))?;
                listener.transfer_progress(upload.size);
                Ok(())
            });
        listener.transfer_finish();
        uploaded?;
        Ok(pending.into_iter().map(|p| p.key).collect())
    }

    /// Invariant 2: a pool object never changes. Same bytes is fine (another suite or
    /// an interrupted publish put it there); different bytes is refused. One request
    /// at most: none when a suite lists the file or `pool_sizes` (a listing of the
    /// pool) answers, one HEAD otherwise (and a GET to compare only when an object of
    /// the same size is there).
    fn check_pool_object(
        &self,
        entry: &PackageEntry,
        listed: &PoolListing<'_>,
        pool_sizes: Option<&HashMap<String, u64>>,
    ) -> Result<PoolObject, PublishError> {
        if let Some((suite, sha256)) = listed.files.get(entry.filename.as_str()) {
            if *sha256 != entry.sha256 {
                return Err(PublishError::PoolConflict {
                    store: self.store.describe(),
                    key: entry.filename.clone(),
                    reason: format!(
                        "suite {suite} lists it with sha256 {sha256}, this one is {}",
                        entry.sha256
                    ),
                });
            }
            // A signed index vouches for the bytes of what it lists (`verify` checks
            // them).
            return Ok(PoolObject::Present);
        }
        let size = match pool_sizes {
            Some(sizes) => sizes.get(&entry.filename).copied(),
            None => self.store.head(&entry.filename)?.map(|meta| meta.size),
        };
        let Some(size) = size else {
            return Ok(PoolObject::Absent);
        };
        let same = size == entry.size
            && self
                .store
                .digest(&entry.filename)?
                .is_some_and(|found| found.sha256 == entry.sha256);
        if same {
            Ok(PoolObject::Present)
        } else {
            Err(PublishError::PoolConflict {
                store: self.store.describe(),
                key: entry.filename.clone(),
                reason: "an object with other bytes is already there".into(),
            })
        }
    }

    /// A promoted or restored entry's bytes must be in the pool with its size (a
    /// signed index vouched for them when they were published).
    fn require_pool_object(&self, entry: &PackageEntry) -> Result<(), PublishError> {
        if self
            .store
            .head(&entry.filename)?
            .is_some_and(|m| m.size == entry.size)
        {
            Ok(())
        } else {
            Err(PublishError::PoolMissing {
                store: self.store.describe(),
                key: entry.filename.clone(),
            })
        }
    }
}
