//! The pool: which of a change's files are there already, and creating the others
//! (invariant 2, docs/ARCHITECTURE.md, "Publish invariants": a pool object never
//! changes). What a signed index lists is there (invariant 3) and costs no request;
//! any other file is created where absent in one request, a create-if-absent, or
//! checked against one listing of the pool when there are many
//! (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").

use super::state::SuiteState;
use super::{put_options, IncomingDeb, Publish, PublishError};
use crate::listener::Listener;
use crate::repo::index::PackageEntry;
use crate::repo::plan::{self, Merge, PoolUpload};
use crate::store::{Body, StoreError};
use foldhash::{HashMap, HashMapExt, HashSet};
use std::collections::BTreeMap;
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
    /// Each added entry of `merged` that must be checked, with the .deb it comes from
    /// here (none: promoted or restored, whose bytes must be in the pool already, or
    /// the switch would publish an index naming a missing file), and the local ones
    /// that no signed index lists (the new files).
    fn pool_to_check<'m>(
        merged: &'m Merge,
        debs: &[IncomingDeb],
        listed: &PoolListing<'_>,
    ) -> (
        Vec<(&'m PackageEntry, Option<usize>)>,
        Vec<&'m PackageEntry>,
    ) {
        let mut local: HashMap<(&str, &str, &str), usize> = HashMap::new();
        for (index, deb) in debs.iter().enumerate().filter(|(_, d)| d.path.is_some()) {
            local.entry(deb.entry.id()).or_insert(index);
        }
        let to_check: Vec<(&PackageEntry, Option<usize>)> = merged
            .added
            .iter()
            .map(|entry| (entry, local.get(&entry.id()).copied()))
            .filter(|(entry, source)| source.is_some() || !listed.vouches_for(entry))
            .collect();
        let unlisted = to_check
            .iter()
            .filter(|(entry, source)| {
                source.is_some() && !listed.files.contains_key(entry.filename.as_str())
            })
            .map(|(entry, _)| *entry)
            .collect();
        (to_check, unlisted)
    }

    /// The pool files of `merged` that must be uploaded, without uploading them (a dry
    /// run): the added entries from local .debs that are not there yet. A promoted or
    /// restored entry must be there already (with its size), or this fails.
    pub(super) fn missing_pool(
        &self,
        merged: &Merge,
        debs: &[IncomingDeb],
        states: &BTreeMap<String, SuiteState>,
        listener: &dyn Listener,
    ) -> Result<Vec<PoolUpload>, PublishError> {
        let listed = PoolListing::of(states);
        let (to_check, unlisted) = Self::pool_to_check(merged, debs, &listed);
        let pool_sizes = self.pool_sizes(unlisted.len(), listed.files.len(), listener);
        let found = self.each_in_parallel(&to_check, |&(entry, source)| match source {
            Some(_) => self.check_pool_object(entry, &listed, pool_sizes.as_ref()),
            None => self
                .require_pool_object(entry)
                .map(|()| PoolObject::Present),
        })?;
        let mut pool = Vec::new();
        for (&(entry, source), found) in to_check.iter().zip(found) {
            if let (Some(source), PoolObject::Absent) = (source, found) {
                pool.push(upload_of(entry, source));
            }
        }
        Ok(pool)
    }

    /// Settles the pool for `merged` before any index names its files: each added
    /// entry from a local .deb that no signed index lists is created where absent and,
    /// where present, must hold the same bytes (invariant 2); a promoted or restored
    /// entry must be there with its size. One request per new file in the usual case,
    /// a create-if-absent (`Store::put_if_absent`) with no HEAD before it; many new
    /// files (a first publish) are checked against one listing of the pool, and the
    /// absent ones uploaded. `jobs` at once, reporting bytes. Returns the uploads this
    /// publish made; `written` are keys it wrote in an earlier pass, its own
    /// (docs/ARCHITECTURE.md, "The life of a publish").
    pub(super) fn settle_pool(
        &self,
        merged: &Merge,
        debs: &[IncomingDeb],
        states: &BTreeMap<String, SuiteState>,
        written: &HashSet<String>,
        listener: &dyn Listener,
    ) -> Result<Vec<PoolUpload>, PublishError> {
        let listed = PoolListing::of(states);
        let (to_check, unlisted) = Self::pool_to_check(merged, debs, &listed);
        if to_check.is_empty() {
            return Ok(Vec::new());
        }
        let pool_sizes = self.pool_sizes(unlisted.len(), listed.files.len(), listener);
        let bytes: u64 = unlisted.iter().map(|entry| entry.size).sum();
        if bytes > 0 {
            listener.transfer_start(bytes);
        }
        let settled = self.each_in_parallel(&to_check, |&(entry, source)| match source {
            Some(source) => self.settle_pool_object(
                entry,
                source,
                &debs[source],
                &listed,
                pool_sizes.as_ref(),
                written,
                listener,
            ),
            None => self.require_pool_object(entry).map(|()| None),
        });
        if bytes > 0 {
            listener.transfer_finish();
        }
        let uploads: Vec<PoolUpload> = settled?.into_iter().flatten().collect();
        if !uploads.is_empty() {
            listener.info(&format!(
                "Wrote {} package(s) to {}",
                uploads.len(),
                self.store.describe()
            ));
        }
        Ok(uploads)
    }

    /// One local .deb's pool file: `Some` when this publish wrote it.
    #[allow(clippy::too_many_arguments)]
    fn settle_pool_object(
        &self,
        entry: &PackageEntry,
        source: usize,
        deb: &IncomingDeb,
        listed: &PoolListing<'_>,
        pool_sizes: Option<&HashMap<String, u64>>,
        written: &HashSet<String>,
        listener: &dyn Listener,
    ) -> Result<Option<PoolUpload>, PublishError> {
        let key = &entry.filename;
        if written.contains(key) {
            return Ok(Some(upload_of(entry, source)));
        }
        if listed.files.contains_key(key.as_str()) {
            // Vouched for by a signed index, or a conflict with it.
            return self.check_pool_object(entry, listed, None).map(|_| None);
        }
        let path = deb
            .path
            .as_deref()
            .ok_or_else(|| PublishError::RemoteCorrupt {
                store: self.store.describe(),
                key: key.clone(),
                reason: "missing from the pool, but a suite lists it; run `cargo speedy verify`"
                    .into(),
            })?;
        listener.detail(&format!("upload {key}"));
        let options = put_options(key);
        let created = match pool_sizes {
            Some(sizes) => match sizes.get(key) {
                None => {
                    self.store.put(key, Body::File(path), &options)?;
                    true
                }
                Some(&size) => {
                    self.same_bytes_there(entry, Some(size))?;
                    false
                }
            },
            None => match self.store.put_if_absent(key, Body::File(path), &options) {
                Ok(Some(_)) => true,
                // There already (an interrupted publish, another suite's, or the lost
                // answer to our own create): the bytes decide.
                Ok(None) => {
                    self.same_bytes_there(entry, None)?;
                    false
                }
                Err(StoreError::ConditionalWritesUnsupported { .. }) => {
                    match self.store.head(key)? {
                        None => {
                            self.store.put(key, Body::File(path), &options)?;
                            true
                        }
                        Some(meta) => {
                            self.same_bytes_there(entry, Some(meta.size))?;
                            false
                        }
                    }
                }
                Err(error) => return Err(error.into()),
            },
        };
        listener.transfer_progress(entry.size);
        Ok(created.then(|| upload_of(entry, source)))
    }

    /// Invariant 2: the object at `entry`'s key, which is there (`size` when known),
    /// has `entry`'s bytes, or the publish stops. Hashed as it streams.
    fn same_bytes_there(
        &self,
        entry: &PackageEntry,
        size: Option<u64>,
    ) -> Result<(), PublishError> {
        let same = size.is_none_or(|size| size == entry.size)
            && self
                .store
                .digest(&entry.filename)?
                .is_some_and(|found| found.size == entry.size && found.sha256 == entry.sha256);
        if same {
            Ok(())
        } else {
            Err(PublishError::PoolConflict {
                store: self.store.describe(),
                key: entry.filename.clone(),
                reason: "an object with other bytes is already there".into(),
            })
        }
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
        match size {
            None => Ok(PoolObject::Absent),
            Some(size) => self
                .same_bytes_there(entry, Some(size))
                .map(|()| PoolObject::Present),
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

/// The upload of `entry`'s pool file from the .deb at `source`.
fn upload_of(entry: &PackageEntry, source: usize) -> PoolUpload {
    PoolUpload {
        key: entry.filename.clone(),
        source,
        size: entry.size,
        sha256: entry.sha256.clone(),
    }
}
