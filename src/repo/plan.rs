//! Changing a suite (adding, restoring, withdrawing, phasing packages), building its
//! indices, and the order in which a publish writes them (invariant 3,
//! docs/ARCHITECTURE.md, "Publish invariants"): pool files, then by-hash copies, then
//! the canonical indices, then Release.gpg and Release, and InRelease last. A reader
//! that fetched any InRelease finds every file it names, with the listed hashes. Also
//! garbage collection's decisions, and ([`attempt`]) the other pure decisions of one
//! publish attempt.

use super::index::{render_packages, sort_entries, PackageEntry, Release, ReleaseFile};
use super::layout;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;

pub mod attempt;
pub use attempt::{
    by_hash_to_write, canonical_writes, dropped_pool, list_the_pool, nothing_changed,
    referenced_before, replaced, retired_on_arrival, CanonicalWrites, CurrentSuite, Replaced,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error(
        "{name} {version} ({architecture}) is already in the repository with different contents \
         (sha256 {existing}, this one {new}); a published version never changes: bump the version or the Debian revision"
    )]
    VersionReused {
        name: String,
        version: String,
        architecture: String,
        existing: String,
        new: String,
    },
    #[error("{name} {version} is not in the suite (`cargo speedy list` shows what is)")]
    VersionNotInSuite { name: String, version: String },
    #[error("no package {name} in the suite (`cargo speedy list` shows what is)")]
    PackageNotInSuite { name: String },
    #[error("a phase is a percentage from 0 to 100, not {0}")]
    PhaseOutOfRange(u8),
    #[error(
        "this change leaves the suite without any service: it retires {}; \
         run it again with --allow-empty if that is what you want",
        retired.join(", ")
    )]
    WouldEmpty { retired: Vec<String> },
}

/// What a change that removes packages must leave in the suite: one that held any of
/// the packages that count and holds none afterwards is refused (a rollback to the
/// state before the first release, or the withdraw of a last version, would retire
/// every service on every server that follows the suite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepServices {
    /// `--allow-empty`: anything may go.
    Allowed,
    /// At least one of these packages (the workspace's services) stays.
    AnyOf(Vec<String>),
    /// At least one package other than these (the keyring) stays: where the
    /// workspace, and so its services, is not known.
    AnyBut(Vec<String>),
}

impl KeepServices {
    fn counts(&self, name: &str) -> bool {
        match self {
            KeepServices::Allowed => false,
            KeepServices::AnyOf(names) => names.iter().any(|n| n == name),
            KeepServices::AnyBut(names) => !names.iter().any(|n| n == name),
        }
    }

    /// Refuses `merge` when it empties the suite of what counts.
    fn check(&self, current: &[PackageEntry], merge: Merge) -> Result<Merge, MergeError> {
        let held = |entries: &[PackageEntry]| entries.iter().any(|e| self.counts(&e.name));
        if held(current) && !held(&merge.packages) {
            return Err(MergeError::WouldEmpty {
                retired: merge
                    .retired
                    .iter()
                    .map(|e| format!("{} {}", e.name, e.version))
                    .collect(),
            });
        }
        Ok(merge)
    }
}

/// How a command changes a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuiteChange {
    /// Adds packages (publish, release, promote), keeping the newest `retention`
    /// versions; new ones are phased at `phased` percent when given, except the
    /// packages named in `unphased` (the keyring package: a server that misses a new
    /// key cannot follow the rotation that drops the old one).
    Add {
        incoming: Vec<PackageEntry>,
        retention: usize,
        phased: Option<u8>,
        unphased: Vec<String>,
    },
    /// Makes the suite hold exactly these packages again (rollback), except that the
    /// packages named in `keep_current` stay as they are now (the keyring package: a
    /// rollback must not take keys back).
    Restore {
        packages: Vec<PackageEntry>,
        keep_current: Vec<String>,
        keep_services: KeepServices,
    },
    /// Removes one version of a package, every architecture (withdraw).
    Withdraw {
        name: String,
        version: String,
        keep_services: KeepServices,
    },
    /// Sets the phase of the newest version of each named package; 100 releases it
    /// fully.
    Phase { names: Vec<String>, percent: u8 },
}

/// Applies `change` to the packages of a suite, pure: what the suite holds afterwards
/// and what was added, kept, retired and changed.
pub fn apply(current: &[PackageEntry], change: &SuiteChange) -> Result<Merge, MergeError> {
    match change {
        SuiteChange::Add {
            incoming,
            retention,
            phased,
            unphased,
        } => {
            if let Some(percent) = phased.filter(|p| *p > 100) {
                return Err(MergeError::PhaseOutOfRange(percent));
            }
            let incoming: std::borrow::Cow<[PackageEntry]> = match phased {
                Some(percent) => incoming
                    .iter()
                    .map(|e| {
                        if unphased.contains(&e.name) {
                            e.clone()
                        } else {
                            e.with_phase(Some(*percent))
                        }
                    })
                    .collect(),
                None => incoming.into(),
            };
            merge(current, &incoming, *retention)
        }
        SuiteChange::Restore {
            packages,
            keep_current,
            keep_services,
        } => {
            let restored = packages
                .iter()
                .filter(|e| !keep_current.contains(&e.name))
                .chain(current.iter().filter(|e| keep_current.contains(&e.name)))
                .cloned()
                .collect();
            keep_services.check(current, replace(current, restored))
        }
        SuiteChange::Withdraw {
            name,
            version,
            keep_services,
        } => {
            let kept: Vec<PackageEntry> = current
                .iter()
                .filter(|e| !(&e.name == name && &e.version == version))
                .cloned()
                .collect();
            if kept.len() == current.len() {
                return Err(MergeError::VersionNotInSuite {
                    name: name.clone(),
                    version: version.clone(),
                });
            }
            keep_services.check(current, replace(current, kept))
        }
        SuiteChange::Phase { names, percent } => {
            if *percent > 100 {
                return Err(MergeError::PhaseOutOfRange(*percent));
            }
            // Sorted newest first within a name: the first version seen is the newest.
            let mut sorted = current.to_vec();
            sort_entries(&mut sorted);
            let mut newest = BTreeMap::new();
            for name in names {
                let version = sorted
                    .iter()
                    .find(|e| &e.name == name)
                    .map(|e| e.version.clone())
                    .ok_or_else(|| MergeError::PackageNotInSuite { name: name.clone() })?;
                newest.insert(name.as_str(), version);
            }
            let phased = sorted
                .into_iter()
                .map(|e| {
                    if newest.get(e.name.as_str()) == Some(&e.version) {
                        e.with_phase(Some(*percent))
                    } else {
                        e
                    }
                })
                .collect();
            Ok(replace(current, phased))
        }
    }
}

/// The suite becomes `target`: what it adds, retires and changes relative to `current`.
fn replace(current: &[PackageEntry], mut target: Vec<PackageEntry>) -> Merge {
    sort_entries(&mut target);
    let before: BTreeMap<(&str, &str, &str), &PackageEntry> =
        current.iter().map(|e| (e.id(), e)).collect();
    let after: BTreeSet<(&str, &str, &str)> = target.iter().map(PackageEntry::id).collect();
    let mut merge = Merge {
        packages: Vec::new(),
        added: Vec::new(),
        unchanged: Vec::new(),
        retired: current
            .iter()
            .filter(|e| !after.contains(&e.id()))
            .cloned()
            .collect(),
        changed: Vec::new(),
    };
    for entry in &target {
        match before.get(&entry.id()) {
            None => merge.added.push(entry.clone()),
            Some(old) if old.paragraph != entry.paragraph => merge.changed.push(entry.clone()),
            Some(_) => merge.unchanged.push(entry.clone()),
        }
    }
    merge.packages = target;
    merge
}

/// The outcome of merging incoming packages into a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The suite's packages after the merge, sorted.
    pub packages: Vec<PackageEntry>,
    /// Incoming packages that are new to the suite.
    pub added: Vec<PackageEntry>,
    /// Incoming packages that were already there with the same bytes.
    pub unchanged: Vec<PackageEntry>,
    /// Packages no longer in the suite: dropped by retention, withdrawn, or not in the
    /// restored state.
    pub retired: Vec<PackageEntry>,
    /// Packages that stay with another index entry (a new phase).
    pub changed: Vec<PackageEntry>,
}

/// Merges `incoming` into `current`, keeping the newest `retention` versions of each
/// package and architecture (at least one).
///
/// Linear in the suite
/// (docs/ARCHITECTURE.md, "Publishing at the cost of what changed"): ids are looked
/// up in a hash map of borrowed keys, each entry is cloned once, and the sort starts
/// from `current`'s order, which is already sorted when it was read from an index
/// this crate wrote, so it costs about a comparison per entry.
pub fn merge(
    current: &[PackageEntry],
    incoming: &[PackageEntry],
    retention: usize,
) -> Result<Merge, MergeError> {
    /// Where the entry with an id is: in `current`, or the n-th added.
    #[derive(Clone, Copy)]
    enum Slot {
        Current(usize),
        Added(usize),
    }
    let mut by_id: HashMap<(&str, &str, &str), Slot> =
        HashMap::with_capacity(current.len() + incoming.len());
    // A suite holds one entry per id: of equal ids in `current`, the last one counts.
    let mut shadowed = vec![false; current.len()];
    for (index, entry) in current.iter().enumerate() {
        if let Some(Slot::Current(earlier)) = by_id.insert(entry.id(), Slot::Current(index)) {
            shadowed[earlier] = true;
        }
    }
    let mut added: Vec<&PackageEntry> = Vec::new();
    let mut unchanged = Vec::new();
    let mut unchanged_ids = HashSet::new();
    for entry in incoming {
        let id = entry.id();
        let Some(slot) = by_id.get(&id).copied() else {
            by_id.insert(id, Slot::Added(added.len()));
            added.push(entry);
            continue;
        };
        let existing = match slot {
            Slot::Current(index) => &current[index],
            Slot::Added(index) => added[index],
        };
        if existing.sha256 != entry.sha256 || existing.size != entry.size {
            return Err(MergeError::VersionReused {
                name: entry.name.clone(),
                version: entry.version.clone(),
                architecture: entry.architecture.clone(),
                existing: existing.sha256.clone(),
                new: entry.sha256.clone(),
            });
        }
        // Each id once, however often it comes in (the incoming list may be a whole
        // promoted suite); one that this merge adds is not unchanged.
        if matches!(slot, Slot::Current(_)) && unchanged_ids.insert(id) {
            unchanged.push(existing.clone());
        }
    }
    let mut packages: Vec<PackageEntry> = Vec::with_capacity(current.len() + added.len());
    packages.extend(
        current
            .iter()
            .zip(&shadowed)
            .filter(|(_, shadowed)| !**shadowed)
            .map(|(entry, _)| entry.clone()),
    );
    packages.extend(added.iter().map(|entry| (*entry).clone()));
    drop(by_id);
    sort_entries(&mut packages);
    // Sorted newest first within a name, so retention keeps a prefix per (name, arch);
    // the entries of a name are next to each other, so the counts are per name.
    let keep = retention.max(1);
    let kept_flags: Vec<bool> = {
        let mut name: Option<&str> = None;
        let mut counts: Vec<(&str, usize)> = Vec::new();
        packages
            .iter()
            .map(|entry| {
                if name != Some(entry.name.as_str()) {
                    name = Some(&entry.name);
                    counts.clear();
                }
                let count = match counts
                    .iter_mut()
                    .find(|(architecture, _)| *architecture == entry.architecture)
                {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        counts.push((&entry.architecture, 1));
                        1
                    }
                };
                count <= keep
            })
            .collect()
    };
    let mut kept = Vec::with_capacity(packages.len());
    let mut retired = Vec::new();
    for (entry, keep) in packages.into_iter().zip(kept_flags) {
        if keep {
            kept.push(entry);
        } else {
            retired.push(entry);
        }
    }
    Ok(Merge {
        packages: kept,
        added: added.into_iter().cloned().collect(),
        unchanged,
        retired,
        changed: Vec::new(),
    })
}

/// What the Release files say about the archive, beside the suite and the hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFields {
    pub origin: String,
    pub label: String,
    pub description: Option<String>,
    /// Architectures that always get an index, even when empty (servers may ask for them).
    pub architectures: Vec<String>,
}

/// One generated index file of a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Relative to `dists/<suite>/`.
    pub path: String,
    /// Shared with the plan's by-hash and canonical writes: a 10,000-entry Packages
    /// is 4 MB, held once.
    pub bytes: Arc<[u8]>,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteIndices {
    pub release: Release,
    pub files: Vec<IndexFile>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Decompresses gzip, refusing output longer than `limit` (the size a signed index
/// lists), so a bad file cannot make a reader allocate without bound.
pub fn gunzip(bytes: &[u8], limit: Option<u64>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let limit = limit.unwrap_or(u64::MAX);
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("not valid gzip: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!(
            "it decompresses to more than the {limit} bytes listed"
        ));
    }
    Ok(out)
}

/// Gzip without a file name and with mtime 0, so equal input gives equal bytes.
///
/// Packages.gz is the only index written; Release also lists the plain Packages, and
/// there is no Packages.xz: at the preset a publish can afford, xz is no smaller than
/// gzip and costs more CPU
/// (docs/ARCHITECTURE.md, "Publishing at the cost of what changed"). apt takes
/// whichever compression Release lists.
///
/// Compressing is on the critical path of every publish, so it is spread over the
/// cores the way pigz does it: the input is cut into chunks of [`GZIP_CHUNK`] bytes,
/// each deflated on its own with the 32 KiB before it as its dictionary (so it loses
/// almost nothing to the cut) and ended with a sync flush (an empty stored block, so
/// the next one starts on a byte), and the pieces are joined into one gzip member with
/// the CRC-32 of the whole. The cuts depend on the input only, never on the number of
/// threads: equal input still gives equal bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(GZIP_CHUNK).collect()
    };
    let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let pieces = crate::parallel::map(&chunks, jobs, |chunk| {
        // Where the chunk starts in `bytes`: the chunks are slices of it.
        let start = chunk.as_ptr() as usize - bytes.as_ptr() as usize;
        let dictionary = &bytes[start.saturating_sub(DEFLATE_WINDOW)..start];
        let last = start + chunk.len() == bytes.len();
        let mut crc = flate2::Crc::new();
        crc.update(chunk);
        deflate_chunk(chunk, dictionary, last).map(|deflated| (deflated, crc))
    });
    let Some(pieces) = pieces.into_iter().collect::<Option<Vec<_>>>() else {
        return gzip_in_one_stream(bytes);
    };
    let mut crc = flate2::Crc::new();
    let mut out =
        Vec::with_capacity(pieces.iter().map(|(piece, _)| piece.len()).sum::<usize>() + 18);
    // ID1 ID2, deflate, no flags, mtime 0, XFL 0 (neither fastest nor best), OS
    // unknown: the header flate2's GzBuilder writes at level 6.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    for (piece, piece_crc) in &pieces {
        out.extend_from_slice(piece);
        crc.combine(piece_crc);
    }
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    out
}

/// zlib's default level. On Packages text (whose hashes do not compress) zlib-rs's
/// level 6 is no larger than its level 9, 746 KB against 827 KB for the 10,000
/// entries of bench/index-cpu.sh, for a third of the CPU; only text that repeats
/// itself, such as hashes that are mostly zeros, does better at 9
/// (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").
const GZIP_LEVEL: u32 = 6;

/// Input per deflate chunk of [`gzip`]: large enough that the dictionary and the flush
/// cost little (about 0.1 % of the size), small enough to keep both cores busy at a
/// few MB.
pub const GZIP_CHUNK: usize = 256 * 1024;

/// How far back deflate looks: the dictionary a chunk starts from.
const DEFLATE_WINDOW: usize = 32 * 1024;

/// Raw deflate of one chunk at [`GZIP_LEVEL`], primed with `dictionary`; the last chunk ends
/// the stream, the others end with a sync flush. `None` when zlib refuses, which it
/// does not for a buffer in memory.
fn deflate_chunk(input: &[u8], dictionary: &[u8], last: bool) -> Option<Vec<u8>> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut compress = Compress::new(Compression::new(GZIP_LEVEL), false);
    if !dictionary.is_empty() {
        compress.set_dictionary(dictionary).ok()?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(input.len() / 4 + 1024);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(1024));
        }
        let consumed = usize::try_from(compress.total_in()).ok()?;
        let status = compress
            .compress_vec(&input[consumed..], &mut out, flush)
            .ok()?;
        let all_in = usize::try_from(compress.total_in()).ok()? == input.len();
        match status {
            Status::StreamEnd => return Some(out),
            // zlib's sign that a flush is complete: it left room in the output.
            Status::Ok if !last && all_in && out.len() < out.capacity() => return Some(out),
            Status::Ok => {}
            Status::BufError if out.len() < out.capacity() => return None,
            Status::BufError => {}
        }
    }
}

/// The single-stream gzip, for the case zlib refused a chunk.
fn gzip_in_one_stream(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Builds the Packages.gz index of every architecture and the Release that lists it
/// with the plain Packages it decompresses to. `date` is already formatted for apt.
pub fn build_indices(
    suite: &str,
    packages: &[PackageEntry],
    settings: &ReleaseFields,
    date: &str,
    valid_until: Option<String>,
) -> SuiteIndices {
    let mut architectures: BTreeSet<String> = settings.architectures.iter().cloned().collect();
    architectures.extend(
        packages
            .iter()
            .filter(|p| p.architecture != "all")
            .map(|p| p.architecture.clone()),
    );
    let plains: Vec<(String, Vec<u8>)> = architectures
        .iter()
        .map(|architecture| {
            let entries = packages
                .iter()
                .filter(|p| &p.architecture == architecture || p.architecture == "all");
            (
                layout::binary_dir(architecture),
                render_packages(entries).into_bytes(),
            )
        })
        .collect();
    // Compressing is most of a publish's CPU at thousands of entries: every index on
    // a thread of its own, so the wall time is the slowest one.
    let compressed = crate::parallel::map(&plains, plains.len(), |(_, plain)| gzip(plain));
    let mut files = Vec::new();
    let mut listed = Vec::new();
    for ((dir, plain), gz) in plains.into_iter().zip(compressed) {
        // Listed, not written (`layout::index_is_written`): 4 MB fewer to upload,
        // twice (the file and its by-hash copy), at 10,000 entries.
        listed.push(ReleaseFile {
            path: format!("{dir}/Packages"),
            size: plain.len() as u64,
            sha256: sha256_hex(&plain),
        });
        let path = format!("{dir}/Packages.gz");
        let sha256 = sha256_hex(&gz);
        listed.push(ReleaseFile {
            path: path.clone(),
            size: gz.len() as u64,
            sha256: sha256.clone(),
        });
        files.push(IndexFile {
            path,
            bytes: gz.into(),
            sha256,
        });
    }
    let release = Release {
        origin: settings.origin.clone(),
        label: settings.label.clone(),
        suite: suite.to_owned(),
        codename: suite.to_owned(),
        date: date.to_owned(),
        valid_until,
        architectures: architectures.into_iter().collect(),
        components: vec![layout::COMPONENT.to_owned()],
        description: settings.description.clone(),
        acquire_by_hash: true,
        files: listed,
    };
    SuiteIndices { release, files }
}

/// A package that a publish adds to the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUpload {
    pub key: String,
    /// Which of the publish's inputs holds the bytes.
    pub source: usize,
    pub size: u64,
    pub sha256: String,
}

/// One write or delete of a publish, in the order it must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A .deb into pool/; the plan holds only those found missing while planning.
    Pool(PoolUpload),
    /// An immutable by-hash copy; skipped when the current Release lists it
    /// ([`by_hash_to_write`]).
    ByHash { key: String, bytes: Arc<[u8]> },
    /// A canonical index, Release.gpg or Release, overwritten.
    Replace { key: String, bytes: Arc<[u8]> },
    /// The switch: from now on readers see the new suite.
    InRelease { key: String, bytes: Arc<[u8]> },
}

impl Step {
    pub fn key(&self) -> &str {
        match self {
            Step::Pool(PoolUpload { key, .. })
            | Step::ByHash { key, .. }
            | Step::Replace { key, .. }
            | Step::InRelease { key, .. } => key,
        }
    }
}

/// Everything a publish writes to one suite, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishPlan {
    pub suite: String,
    pub merge: Merge,
    pub steps: Vec<Step>,
}

/// The by-hash copy of each of a suite's indices: its key and its bytes, in the
/// indices' order.
pub fn by_hash_copies(suite: &str, indices: &SuiteIndices) -> Vec<(String, Arc<[u8]>)> {
    let dists = layout::dists_dir(suite);
    indices
        .files
        .iter()
        .map(|file| {
            let key = format!("{dists}/{}", layout::by_hash_path(&file.path, &file.sha256));
            (key, file.bytes.clone())
        })
        .collect()
}

impl PublishPlan {
    /// The plan's by-hash copies, in order.
    pub fn by_hash_copies(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.steps.iter().filter_map(|step| match step {
            Step::ByHash { key, bytes } => Some((key.as_str(), &bytes[..])),
            _ => None,
        })
    }
}

/// Orders the writes of a publish. `pool` lists the packages this publish adds;
/// `release_gpg` and `in_release` are the signed forms of `indices.release`.
pub fn publish_plan(
    suite: &str,
    merge: Merge,
    pool: Vec<PoolUpload>,
    indices: &SuiteIndices,
    release_gpg: Vec<u8>,
    in_release: Vec<u8>,
) -> PublishPlan {
    let dists = layout::dists_dir(suite);
    let mut steps: Vec<Step> = pool.into_iter().map(Step::Pool).collect();
    for (key, bytes) in by_hash_copies(suite, indices) {
        steps.push(Step::ByHash { key, bytes });
    }
    for file in &indices.files {
        steps.push(Step::Replace {
            key: format!("{dists}/{}", file.path),
            bytes: file.bytes.clone(),
        });
    }
    steps.push(Step::Replace {
        key: layout::release_gpg_key(suite),
        bytes: release_gpg.into(),
    });
    steps.push(Step::Replace {
        key: layout::release_key(suite),
        bytes: indices.release.render().into_bytes().into(),
    });
    steps.push(Step::InRelease {
        key: layout::in_release_key(suite),
        bytes: in_release.into(),
    });
    PublishPlan {
        suite: suite.to_owned(),
        merge,
        steps,
    }
}

/// The public objects a plan replaces with other bytes: InRelease, Release and
/// Release.gpg, and each canonical index whose SHA256 differs from the one the
/// replaced Release (`current`) lists, or that it did not list. Pool files and by-hash
/// copies are immutable and never replaced; this is what a CDN in front must purge
/// (docs/ARCHITECTURE.md, "CDN purge").
pub fn replaced_mutable_keys(plan: &PublishPlan, current: Option<&Release>) -> Vec<String> {
    let dists = format!("{}/", layout::dists_dir(&plan.suite));
    let unchanged = |key: &str| {
        let Some(path) = key.strip_prefix(&dists) else {
            return false;
        };
        let new_sha256 = plan.steps.iter().find_map(|step| match step {
            Step::Replace { key: k, bytes } if k == key => Some(sha256_hex(bytes)),
            _ => None,
        });
        current.is_some_and(|release| {
            release
                .files
                .iter()
                .any(|f| f.path == path && Some(&f.sha256) == new_sha256.as_ref())
        })
    };
    plan.steps
        .iter()
        .filter(|step| matches!(step, Step::Replace { .. } | Step::InRelease { .. }))
        .map(Step::key)
        .filter(|key| !layout::is_immutable(key) && !layout::is_private(key))
        .filter(|key| !unchanged(key))
        .map(str::to_owned)
        .collect()
}

/// Keys a suite references: its pool files, and its indices with their by-hash
/// copies. (An index its Release no longer lists, of an architecture dropped from the
/// settings or a compression no longer written, is then garbage like any other.)
pub fn referenced_keys(
    suite: &str,
    release: &Release,
    packages: &[PackageEntry],
) -> BTreeSet<String> {
    let dists = layout::dists_dir(suite);
    let mut keys: BTreeSet<String> = packages.iter().map(|p| p.filename.clone()).collect();
    for file in release
        .files
        .iter()
        .filter(|f| layout::index_is_written(&f.path))
    {
        keys.insert(format!(
            "{dists}/{}",
            layout::by_hash_path(&file.path, &file.sha256)
        ));
        keys.insert(format!("{dists}/{}", file.path));
    }
    keys
}

/// Objects that became unreferenced, and since when (unix seconds). Old pool files and
/// by-hash copies are kept for a grace period after that, so a reader holding an
/// older InRelease still finds everything it names.
///
/// It is also what lets a collection look only at what changed
/// (docs/ARCHITECTURE.md, "Publishing at the cost of what changed"): the pool is
/// listed in full (a sweep) once a day, or when a suite's history moved on since the
/// last collection finished (a publish whose collection failed); otherwise the
/// candidates are what was pending plus what the publish stopped referencing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GcState {
    pub unreferenced_since: BTreeMap<String, u64>,
    /// When the whole store was last listed (unix seconds; 0: never).
    #[serde(default)]
    pub swept_at: u64,
    /// Each suite's newest history record id when the last collection finished.
    #[serde(default)]
    pub history_heads: BTreeMap<String, u64>,
    /// SHA256 of the keyring last published beside dists/, so an unchanged keyring
    /// costs no request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_keyring: Option<String>,
    /// The ACL every object was given last (`public-read` or `private`): a publish
    /// with the other setting gives every object its own
    /// (docs/ARCHITECTURE.md, "Private repositories").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
}

/// Whether every object needs the ACL `configured` now: the last one given was
/// another, or none is recorded and the repository is to be private (objects of a
/// repository older than the record were given the default, `public-read`).
pub fn acl_must_be_reapplied(recorded: Option<&str>, configured: &str) -> bool {
    match recorded {
        Some(recorded) => recorded != configured,
        None => configured != "public-read",
    }
}

/// How often garbage collection lists the whole store at the least: what a failed
/// publish uploaded and never referenced is found by such a sweep.
pub const SWEEP_INTERVAL_SECONDS: u64 = 24 * 60 * 60;

/// Whether this collection must list the whole store: the last sweep is a day old,
/// or a suite's history moved on since the last collection finished (`heads_before`:
/// each suite's newest record id before this publish), so some publish's collection
/// did not finish and what it dropped is known nowhere else.
pub fn must_sweep(previous: &GcState, heads_before: &BTreeMap<String, u64>, now: u64) -> bool {
    previous.swept_at == 0
        || now.saturating_sub(previous.swept_at) >= SWEEP_INTERVAL_SECONDS
        || previous.history_heads != *heads_before
}

/// The keys a collection without a sweep looks at: what was pending, and what was
/// referenced before this publish (`referenced_before`) and is not now.
pub fn garbage_candidates(
    previous: &GcState,
    referenced_before: &BTreeSet<String>,
    referenced: &BTreeSet<String>,
) -> BTreeSet<String> {
    previous
        .unreferenced_since
        .keys()
        .cloned()
        .chain(referenced_before.difference(referenced).cloned())
        .collect()
}

/// Decides what to delete now. `existing` are the garbage-collectable keys in the store
/// (pool files and by-hash copies), `referenced` what any suite references after this
/// publish. Returns the next state and the keys to delete.
pub fn collect_garbage(
    existing: &BTreeSet<String>,
    referenced: &BTreeSet<String>,
    previous: &GcState,
    now: u64,
    grace_seconds: u64,
) -> (GcState, Vec<String>) {
    let mut next = GcState::default();
    let mut delete = Vec::new();
    for key in existing.difference(referenced) {
        let since = previous.unreferenced_since.get(key).copied().unwrap_or(now);
        if now.saturating_sub(since) >= grace_seconds {
            delete.push(key.clone());
        } else {
            next.unreferenced_since.insert(key.clone(), since);
        }
    }
    (next, delete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_is_reapplied_when_it_changed_or_a_repository_turns_private() {
        assert!(!acl_must_be_reapplied(Some("public-read"), "public-read"));
        assert!(!acl_must_be_reapplied(Some("private"), "private"));
        assert!(acl_must_be_reapplied(Some("public-read"), "private"));
        assert!(acl_must_be_reapplied(Some("private"), "public-read"));
        // No record: every object so far had the old default, public-read.
        assert!(!acl_must_be_reapplied(None, "public-read"));
        assert!(acl_must_be_reapplied(None, "private"));
    }

    pub(super) fn sha(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    pub(super) fn entry(name: &str, version: &str, arch: &str, n: u8) -> PackageEntry {
        let control = format!("Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: T <t@example>\nDescription: test\n");
        PackageEntry::from_control(&control, u64::from(n), &sha(n), "", "t.deb").unwrap()
    }

    /// `merge` before issue 23 (owned keys in B-trees, a full sort), kept as the oracle
    /// of the linear one.
    fn merge_with_btrees(
        current: &[PackageEntry],
        incoming: &[PackageEntry],
        retention: usize,
    ) -> Result<Merge, MergeError> {
        let mut by_id: BTreeMap<(String, String, String), PackageEntry> = current
            .iter()
            .map(|e| {
                (
                    (e.name.clone(), e.version.clone(), e.architecture.clone()),
                    e.clone(),
                )
            })
            .collect();
        let mut added = Vec::new();
        let mut unchanged = Vec::new();
        let mut added_ids = BTreeSet::new();
        let mut unchanged_ids = BTreeSet::new();
        for entry in incoming {
            let id = (
                entry.name.clone(),
                entry.version.clone(),
                entry.architecture.clone(),
            );
            match by_id.get(&id) {
                Some(existing)
                    if existing.sha256 == entry.sha256 && existing.size == entry.size =>
                {
                    if !added_ids.contains(&id) && unchanged_ids.insert(id.clone()) {
                        unchanged.push(existing.clone());
                    }
                }
                Some(existing) => {
                    return Err(MergeError::VersionReused {
                        name: entry.name.clone(),
                        version: entry.version.clone(),
                        architecture: entry.architecture.clone(),
                        existing: existing.sha256.clone(),
                        new: entry.sha256.clone(),
                    })
                }
                None => {
                    by_id.insert(id.clone(), entry.clone());
                    added_ids.insert(id);
                    added.push(entry.clone());
                }
            }
        }
        let mut packages: Vec<PackageEntry> = by_id.into_values().collect();
        sort_entries(&mut packages);
        let keep = retention.max(1);
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut kept = Vec::with_capacity(packages.len());
        let mut retired = Vec::new();
        for entry in packages {
            let count = seen
                .entry((entry.name.clone(), entry.architecture.clone()))
                .or_insert(0);
            *count += 1;
            if *count <= keep {
                kept.push(entry);
            } else {
                retired.push(entry);
            }
        }
        Ok(Merge {
            packages: kept,
            added,
            unchanged,
            retired,
            changed: Vec::new(),
        })
    }

    /// Random suites and incoming lists (repeated ids, reused versions, several
    /// architectures, `all`, unsorted and duplicated current entries): the same merge,
    /// or the same error, as before.
    #[test]
    fn the_linear_merge_equals_the_btree_merge() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let names = ["pa", "pb", "pc"];
        let versions = [
            "1.0-1",
            "1.10-1",
            "1.9-1",
            "1:0.1-1",
            "2.0~rc1-1",
            "2.0-1",
            "2.0",
        ];
        let architectures = ["amd64", "arm64", "all"];
        let random_entry = |rng: &mut rand::rngs::StdRng| {
            entry(
                names[rng.gen_range(0..names.len())],
                versions[rng.gen_range(0..versions.len())],
                architectures[rng.gen_range(0..architectures.len())],
                rng.gen_range(1..3),
            )
        };
        let mut refused = 0;
        for round in 0..3_000 {
            let mut current: Vec<PackageEntry> = (0..rng.gen_range(0..25))
                .map(|_| random_entry(&mut rng))
                .collect();
            if round % 2 == 0 {
                sort_entries(&mut current);
            }
            let incoming: Vec<PackageEntry> = (0..rng.gen_range(0..6))
                .map(|_| random_entry(&mut rng))
                .collect();
            let retention = rng.gen_range(0..4);
            let new = merge(&current, &incoming, retention);
            refused += usize::from(new.is_err());
            assert_eq!(
                new,
                merge_with_btrees(&current, &incoming, retention),
                "{current:?} {incoming:?} {retention}"
            );
        }
        assert!(refused > 100 && refused < 2_900, "{refused}");
    }

    /// Text like a Packages file, `len` bytes, that does not compress to nothing.
    fn index_like_text(len: usize) -> Vec<u8> {
        let mut text = String::new();
        let mut n = 0u64;
        while text.len() < len {
            text.push_str(&format!(
                "Package: p{}\nVersion: 1.{n}-1\nSHA256: {}\n\n",
                n % 97,
                sha256_hex(&n.to_le_bytes())
            ));
            n += 1;
        }
        text.truncate(len);
        text.into_bytes()
    }

    fn gzip_tool(args: &[&str], input: &[u8]) -> std::process::Output {
        use std::io::Write as _;
        let mut child = std::process::Command::new("gzip")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("gzip is installed");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let output = child.wait_with_output().expect("gzip runs");
        writer
            .join()
            .expect("writer")
            .expect("gzip reads its input");
        output
    }

    /// The chunked gzip is one valid gzip member: the real gzip tests and decompresses
    /// it, our reader too, to the input; equal input gives equal bytes; the chunks cost
    /// almost nothing against one stream.
    #[test]
    fn chunked_gzip_is_one_member_that_gzip_and_we_read() {
        for len in [
            0,
            1,
            GZIP_CHUNK - 1,
            GZIP_CHUNK,
            GZIP_CHUNK + 1,
            3 * GZIP_CHUNK + 12_345,
        ] {
            let text = index_like_text(len);
            let gz = gzip(&text);
            assert_eq!(gz, gzip(&text), "deterministic at {len}");
            assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
            let test = gzip_tool(&["-t"], &gz);
            assert!(
                test.status.success(),
                "gzip -t at {len}: {}",
                String::from_utf8_lossy(&test.stderr)
            );
            let unpacked = gzip_tool(&["-dc"], &gz);
            assert!(unpacked.status.success(), "gunzip at {len}");
            assert!(
                unpacked.stdout == text,
                "gunzip gives the input back at {len}"
            );
            assert!(gunzip(&gz, None).unwrap() == text, "ours at {len}");
            // One member: a single-member reader ends exactly at the end.
            use std::io::Read as _;
            let mut member = flate2::read::GzDecoder::new(&gz[..]);
            let mut one = Vec::new();
            member.read_to_end(&mut one).unwrap();
            assert!(
                one == text && member.into_inner().is_empty(),
                "one member at {len}"
            );
            if len > 2 * GZIP_CHUNK {
                let one_stream = gzip_in_one_stream(&text);
                assert!(
                    gz.len() * 1000 <= one_stream.len() * 1005,
                    "{} against {} in one stream",
                    gz.len(),
                    one_stream.len()
                );
            }
        }
    }

    #[test]
    fn merge_adds_keeps_and_refuses_changed_bytes() {
        let current = vec![entry("pa", "1.0-1", "amd64", 1)];
        let merged = merge(
            &current,
            &[
                entry("pa", "1.0-1", "amd64", 1),
                entry("pb", "2.0-1", "amd64", 2),
            ],
            5,
        )
        .unwrap();
        assert_eq!(merged.added.len(), 1);
        assert_eq!(merged.unchanged.len(), 1);
        assert_eq!(merged.packages.len(), 2);
        let error = merge(&current, &[entry("pa", "1.0-1", "amd64", 9)], 5).unwrap_err();
        assert!(matches!(error, MergeError::VersionReused { .. }));
        assert!(error.to_string().contains("bump the version"));
        // The same package twice in one publish is one package.
        let twice = merge(
            &[],
            &[
                entry("pb", "2.0-1", "amd64", 2),
                entry("pb", "2.0-1", "amd64", 2),
            ],
            5,
        )
        .unwrap();
        assert_eq!(twice.packages.len(), 1);
    }

    #[test]
    fn retention_keeps_the_newest_per_name_and_architecture() {
        let current: Vec<PackageEntry> = ["1.9-1", "1.10-1", "1.2-1"]
            .iter()
            .enumerate()
            .map(|(i, v)| entry("pa", v, "amd64", i as u8))
            .collect();
        let merged = merge(
            &current,
            &[
                entry("pa", "1.11-1", "amd64", 7),
                entry("pa", "1.0-1", "arm64", 8),
            ],
            2,
        )
        .unwrap();
        let kept: Vec<(&str, &str)> = merged
            .packages
            .iter()
            .map(|p| (p.version.as_str(), p.architecture.as_str()))
            .collect();
        assert_eq!(
            kept,
            [("1.11-1", "amd64"), ("1.10-1", "amd64"), ("1.0-1", "arm64")]
        );
        let retired: Vec<&str> = merged.retired.iter().map(|p| p.version.as_str()).collect();
        assert_eq!(retired, ["1.9-1", "1.2-1"]);
        // Retention 0 is taken as 1: a suite never loses its newest version.
        assert_eq!(merge(&current, &[], 0).unwrap().packages.len(), 1);
    }

    pub(super) fn settings() -> ReleaseFields {
        ReleaseFields {
            origin: "O".into(),
            label: "L".into(),
            description: None,
            architectures: vec!["amd64".into()],
        }
    }

    #[test]
    fn indices_cover_every_architecture_and_arch_all() {
        let packages = vec![
            entry("pa", "1-1", "amd64", 1),
            entry("pb", "1-1", "all", 2),
            entry("pc", "1-1", "arm64", 3),
        ];
        let indices = build_indices(
            "dev",
            &packages,
            &settings(),
            "Sat, 28 Nov 2026 16:48:03 UTC",
            None,
        );
        assert_eq!(indices.release.architectures, ["amd64", "arm64"]);
        // Packages.gz of each architecture is written; Release lists the plain
        // Packages too, for apt to check what it decompresses.
        let written: Vec<&str> = indices.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            written,
            [
                "main/binary-amd64/Packages.gz",
                "main/binary-arm64/Packages.gz"
            ]
        );
        let amd64 = String::from_utf8(gunzip(&indices.files[0].bytes, None).unwrap()).unwrap();
        assert!(
            amd64.contains("Package: pa\n")
                && amd64.contains("Package: pb\n")
                && !amd64.contains("Package: pc\n")
        );
        let plain = indices.release.file("main/binary-amd64/Packages").unwrap();
        assert_eq!(plain.sha256, sha256_hex(amd64.as_bytes()));
        assert_eq!(plain.size, amd64.len() as u64);
        assert_eq!(indices.release.files.len(), 4);
        for file in &indices.files {
            let listed = indices.release.file(&file.path).unwrap();
            assert_eq!(listed.sha256, sha256_hex(&file.bytes));
            assert_eq!(listed.size, file.bytes.len() as u64);
        }
        // Deterministic, compressed files included.
        assert_eq!(
            indices,
            build_indices(
                "dev",
                &packages,
                &settings(),
                "Sat, 28 Nov 2026 16:48:03 UTC",
                None
            )
        );
        // An empty suite still has an index for the configured architecture.
        let empty = build_indices("dev", &[], &settings(), "d", None);
        assert_eq!(gunzip(&empty.files[0].bytes, None).unwrap(), b"");
        // A decompressed size above the listed one is refused.
        assert!(gunzip(&indices.files[0].bytes, Some(amd64.len() as u64 - 1)).is_err());
        assert!(gunzip(b"not gzip", None).is_err());
    }

    #[test]
    fn replaced_mutable_keys_are_the_changed_indices_and_the_release_files() {
        let mut fields = settings();
        fields.architectures = vec!["amd64".into(), "arm64".into()];
        let plan_for = |current: &[PackageEntry], incoming: &[PackageEntry]| {
            let merged = merge(current, incoming, 5).unwrap();
            let indices = build_indices("dev", &merged.packages, &fields, "d", None);
            let plan = publish_plan(
                "dev",
                merged,
                vec![],
                &indices,
                b"s".to_vec(),
                b"i".to_vec(),
            );
            (plan, indices.release)
        };
        let release_files = [
            "dists/dev/Release.gpg",
            "dists/dev/Release",
            "dists/dev/InRelease",
        ];
        let indices =
            |arch: &str| ["Packages.gz"].map(|name| format!("dists/dev/main/binary-{arch}/{name}"));
        // A new suite: every index of every architecture is new.
        let first = vec![entry("pa", "1-1", "amd64", 1)];
        let (plan, release) = plan_for(&[], &first);
        let mut expected: Vec<String> = indices("amd64")
            .into_iter()
            .chain(indices("arm64"))
            .collect();
        expected.extend(release_files.map(str::to_owned));
        assert_eq!(replaced_mutable_keys(&plan, None), expected);
        // An amd64 package later: arm64's indices keep their bytes and are not purged.
        let (plan, _) = plan_for(&first, &[entry("pa", "2-1", "amd64", 2)]);
        let mut expected: Vec<String> = indices("amd64").into();
        expected.extend(release_files.map(str::to_owned));
        assert_eq!(replaced_mutable_keys(&plan, Some(&release)), expected);
    }

    #[test]
    fn plan_orders_pool_by_hash_canonical_release_in_release() {
        let packages = vec![entry("pa", "1-1", "amd64", 1)];
        let merged = merge(&[], &packages, 5).unwrap();
        let indices = build_indices("dev", &merged.packages, &settings(), "d", None);
        let plan = publish_plan(
            "dev",
            merged,
            vec![PoolUpload {
                key: packages[0].filename.clone(),
                source: 0,
                size: 1,
                sha256: sha(1),
            }],
            &indices,
            b"sig".to_vec(),
            b"inrelease".to_vec(),
        );
        let rank = |step: &Step| match step {
            Step::Pool(_) => 0,
            Step::ByHash { .. } => 1,
            Step::Replace { key, .. } if key.ends_with("Release.gpg") => 3,
            Step::Replace { key, .. } if key.ends_with("/Release") => 4,
            Step::Replace { .. } => 2,
            Step::InRelease { .. } => 5,
        };
        let ranks: Vec<u8> = plan.steps.iter().map(rank).collect();
        assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
        assert_eq!(ranks.first(), Some(&0));
        assert_eq!(
            plan.steps.last().map(Step::key),
            Some("dists/dev/InRelease")
        );
        // Every file the new Release names is written before InRelease, by hash,
        // but the plain Packages, which is listed only.
        for file in indices
            .release
            .files
            .iter()
            .filter(|f| layout::index_is_written(&f.path))
        {
            let by_hash = format!(
                "dists/dev/{}",
                layout::by_hash_path(&file.path, &file.sha256)
            );
            assert!(plan.steps.iter().any(|s| s.key() == by_hash), "{by_hash}");
        }
        assert!(!plan.steps.iter().any(|s| s.key().ends_with("/Packages")));
    }

    /// Random suites and publishes, checked against the rules rather than examples:
    /// the merge keeps at most `retention` versions per package and architecture,
    /// always the newest, never loses an added package that retention keeps, and the
    /// indices round-trip through Packages parsing byte for byte.
    #[test]
    fn merge_and_indices_hold_their_rules_on_random_input() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..300 {
            let mut pool = Vec::new();
            for _ in 0..next(12) {
                let name = ["pa", "pb", "pc"][next(3) as usize];
                let version = format!("{}.{}-{}", next(3), next(12), 1 + next(2));
                let arch = ["amd64", "arm64", "all"][next(3) as usize];
                if !pool
                    .iter()
                    .any(|e: &PackageEntry| e.id() == (name, version.as_str(), arch))
                {
                    let n = pool.len() as u8;
                    pool.push(entry(name, &version, arch, n));
                }
            }
            let split = next(pool.len() as u64 + 1) as usize;
            let (current, incoming) = pool.split_at(split);
            let retention = 1 + next(3) as usize;
            let merged = merge(current, incoming, retention).unwrap();
            // Every entry is kept or retired, never both, never lost.
            assert_eq!(merged.packages.len() + merged.retired.len(), pool.len());
            let mut groups: BTreeMap<(String, String), Vec<&PackageEntry>> = BTreeMap::new();
            for p in &merged.packages {
                groups
                    .entry((p.name.clone(), p.architecture.clone()))
                    .or_default()
                    .push(p);
            }
            for ((name, arch), kept) in &groups {
                assert!(kept.len() <= retention);
                for retired in merged
                    .retired
                    .iter()
                    .filter(|r| &r.name == name && &r.architecture == arch)
                {
                    for k in kept {
                        assert_ne!(
                            super::super::version::compare(&k.version, &retired.version),
                            std::cmp::Ordering::Less,
                            "kept {} retired {}",
                            k.version,
                            retired.version
                        );
                    }
                }
            }
            assert_eq!(merged.added.len(), incoming.len());
            let indices = build_indices("dev", &merged.packages, &settings(), "d", None);
            for file in &indices.files {
                let text = String::from_utf8(gunzip(&file.bytes, None).unwrap()).unwrap();
                let parsed = crate::repo::index::parse_packages(&text, "Packages").unwrap();
                assert_eq!(render_packages(&parsed), text);
            }
            let release = Release::parse(&indices.release.render(), "Release").unwrap();
            assert_eq!(release, indices.release);
        }
    }

    #[test]
    fn garbage_waits_out_the_grace_period() {
        let existing: BTreeSet<String> = ["pool/old.deb", "pool/new.deb"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let referenced: BTreeSet<String> = ["pool/new.deb".to_string()].into();
        let (state, delete) =
            collect_garbage(&existing, &referenced, &GcState::default(), 1000, 3600);
        assert!(delete.is_empty());
        assert_eq!(state.unreferenced_since.get("pool/old.deb"), Some(&1000));
        let (state2, delete) = collect_garbage(&existing, &referenced, &state, 1000 + 3599, 3600);
        assert!(delete.is_empty());
        assert_eq!(state2, state);
        let (state3, delete) = collect_garbage(&existing, &referenced, &state, 1000 + 3600, 3600);
        assert_eq!(delete, ["pool/old.deb"]);
        assert!(state3.unreferenced_since.is_empty());
        // Referenced again: forgotten.
        let all: BTreeSet<String> = existing.clone();
        let (state4, delete) = collect_garbage(&existing, &all, &state, 99999, 3600);
        assert!(delete.is_empty() && state4.unreferenced_since.is_empty());
        // Grace 0 deletes at once.
        let (_, delete) = collect_garbage(&existing, &referenced, &GcState::default(), 5, 0);
        assert_eq!(delete, ["pool/old.deb"]);
    }

    #[test]
    fn a_sweep_is_due_daily_or_when_a_history_moved_on_unseen() {
        let heads: BTreeMap<String, u64> = [("dev".to_string(), 4)].into();
        let state = GcState {
            swept_at: 1_000,
            history_heads: heads.clone(),
            ..GcState::default()
        };
        assert!(!must_sweep(
            &state,
            &heads,
            1_000 + SWEEP_INTERVAL_SECONDS - 1
        ));
        assert!(must_sweep(&state, &heads, 1_000 + SWEEP_INTERVAL_SECONDS));
        // A publish recorded change 5 and its collection never finished.
        let moved: BTreeMap<String, u64> = [("dev".to_string(), 5)].into();
        assert!(must_sweep(&state, &moved, 1_001));
        // A suite that collection has not seen yet.
        let mut more = heads.clone();
        more.insert("stable".into(), 1);
        assert!(must_sweep(&state, &more, 1_001));
        // Never swept.
        assert!(must_sweep(&GcState::default(), &BTreeMap::new(), 5));
    }

    #[test]
    fn garbage_candidates_are_what_was_pending_and_what_stopped_being_referenced() {
        let keys = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let previous = GcState {
            unreferenced_since: [("pool/pending.deb".to_string(), 7)].into(),
            ..GcState::default()
        };
        let before = keys(&["pool/a.deb", "pool/b.deb", "by-hash/old"]);
        let after = keys(&["pool/b.deb", "pool/c.deb", "by-hash/new"]);
        assert_eq!(
            garbage_candidates(&previous, &before, &after),
            keys(&["by-hash/old", "pool/a.deb", "pool/pending.deb"])
        );
        // A candidate referenced again is forgotten by the collection itself.
        let (next, delete) = collect_garbage(
            &garbage_candidates(&previous, &before, &after),
            &keys(&["pool/pending.deb", "pool/b.deb"]),
            &previous,
            10,
            0,
        );
        assert_eq!(delete, ["by-hash/old", "pool/a.deb"]);
        assert!(next.unreferenced_since.is_empty());
    }

    #[test]
    fn a_change_that_retires_every_service_is_refused_unless_allowed() {
        let keyring = entry("keyring", "1-1", "all", 9);
        let current = vec![
            entry("pa", "1-1", "amd64", 1),
            entry("pb", "1-1", "amd64", 2),
            keyring.clone(),
        ];
        let restore = |packages: Vec<PackageEntry>, keep_services: KeepServices| {
            apply(
                &current,
                &SuiteChange::Restore {
                    packages,
                    keep_current: vec!["keyring".into()],
                    keep_services,
                },
            )
        };
        let services = KeepServices::AnyOf(vec!["pa".into(), "pb".into()]);
        // Back to the empty state before the first change: every service goes.
        match restore(vec![], services.clone()) {
            Err(MergeError::WouldEmpty { retired }) => {
                assert_eq!(retired, ["pa 1-1", "pb 1-1"]);
            }
            other => panic!("{other:?}"),
        }
        // Without the workspace, the keyring alone does not count as a service.
        assert!(matches!(
            restore(vec![], KeepServices::AnyBut(vec!["keyring".into()])),
            Err(MergeError::WouldEmpty { .. })
        ));
        // One service left is fine, and --allow-empty allows the rest.
        assert!(restore(vec![current[1].clone()], services.clone()).is_ok());
        let emptied = restore(vec![], KeepServices::Allowed).unwrap();
        assert_eq!(emptied.packages, vec![keyring.clone()]);
        // A suite that held no service may stay without one.
        let only_keyring = [keyring.clone()];
        assert!(apply(
            &only_keyring,
            &SuiteChange::Restore {
                packages: vec![],
                keep_current: vec![],
                keep_services: services.clone(),
            }
        )
        .is_ok());
        // The withdraw of the last version of the last service, likewise.
        let one = [entry("pa", "1-1", "amd64", 1), keyring];
        let withdraw = |keep_services| {
            apply(
                &one,
                &SuiteChange::Withdraw {
                    name: "pa".into(),
                    version: "1-1".into(),
                    keep_services,
                },
            )
        };
        assert!(matches!(
            withdraw(services),
            Err(MergeError::WouldEmpty { .. })
        ));
        assert!(withdraw(KeepServices::Allowed).is_ok());
    }

    #[test]
    fn withdraw_restore_and_phase_change_only_what_they_name() {
        let current = vec![
            entry("pa", "1-1", "amd64", 1),
            entry("pa", "2-1", "amd64", 2),
            entry("pb", "2-1", "amd64", 3),
        ];
        let withdrawn = apply(
            &current,
            &SuiteChange::Withdraw {
                name: "pa".into(),
                version: "2-1".into(),
                keep_services: KeepServices::Allowed,
            },
        )
        .unwrap();
        assert_eq!(withdrawn.retired, vec![current[1].clone()]);
        assert!(withdrawn.added.is_empty() && withdrawn.changed.is_empty());
        assert_eq!(withdrawn.packages.len(), 2);
        assert!(matches!(
            apply(
                &current,
                &SuiteChange::Withdraw {
                    name: "pa".into(),
                    version: "3-1".into(),
                    keep_services: KeepServices::Allowed,
                }
            ),
            Err(MergeError::VersionNotInSuite { .. })
        ));

        // Phase touches the newest version only; 100 removes the field again.
        let phased = apply(
            &current,
            &SuiteChange::Phase {
                names: vec!["pa".into()],
                percent: 10,
            },
        )
        .unwrap();
        assert_eq!(phased.changed.len(), 1);
        assert_eq!(phased.changed[0].version, "2-1");
        assert_eq!(phased.changed[0].phase(), Some(10));
        let full = apply(
            &phased.packages,
            &SuiteChange::Phase {
                names: vec!["pa".into()],
                percent: 100,
            },
        )
        .unwrap();
        assert_eq!(full.changed[0].phase(), None);
        assert_eq!(full.changed[0].paragraph, current[1].paragraph);
        assert!(matches!(
            apply(
                &current,
                &SuiteChange::Phase {
                    names: vec!["pz".into()],
                    percent: 5
                }
            ),
            Err(MergeError::PackageNotInSuite { .. })
        ));
        assert!(matches!(
            apply(
                &current,
                &SuiteChange::Phase {
                    names: vec!["pa".into()],
                    percent: 101
                }
            ),
            Err(MergeError::PhaseOutOfRange(101))
        ));

        // Restore: back to exactly the given state, phase included.
        let restored = apply(
            &full.packages,
            &SuiteChange::Restore {
                packages: phased.packages.clone(),
                keep_current: vec![],
                keep_services: KeepServices::Allowed,
            },
        )
        .unwrap();
        let mut expected = phased.packages.clone();
        sort_entries(&mut expected);
        assert_eq!(restored.packages, expected);
        assert_eq!(restored.changed.len(), 1);
        let back = apply(
            &phased.packages,
            &SuiteChange::Restore {
                packages: vec![current[0].clone()],
                keep_current: vec![],
                keep_services: KeepServices::Allowed,
            },
        )
        .unwrap();
        assert_eq!(back.retired.len(), 2);
        assert_eq!(back.packages, vec![current[0].clone()]);
        // A kept package stays as it is now, whatever the restored state says.
        let mut with_keyring = phased.packages.clone();
        with_keyring.push(entry("keyring", "2-1", "all", 7));
        let kept = apply(
            &with_keyring,
            &SuiteChange::Restore {
                packages: vec![current[0].clone(), entry("keyring", "1-1", "all", 6)],
                keep_current: vec!["keyring".into()],
                keep_services: KeepServices::Allowed,
            },
        )
        .unwrap();
        assert!(kept.packages.contains(&entry("keyring", "2-1", "all", 7)));
        assert!(!kept
            .packages
            .iter()
            .any(|e| e.name == "keyring" && e.version == "1-1"));

        // Adding phased: the new entries carry the field, the existing ones do not.
        let added = apply(
            &current,
            &SuiteChange::Add {
                incoming: vec![
                    entry("pa", "3-1", "amd64", 4),
                    entry("keyring", "2-1", "all", 5),
                ],
                retention: 5,
                phased: Some(0),
                unphased: vec!["keyring".into()],
            },
        )
        .unwrap();
        assert_eq!(added.added.len(), 2);
        for new in &added.added {
            let expected = if new.name == "keyring" { None } else { Some(0) };
            assert_eq!(new.phase(), expected, "{}", new.name);
        }
        assert!(added
            .packages
            .iter()
            .filter(|e| e.version != "3-1" && e.name != "keyring")
            .all(|e| e.phase().is_none()));
    }
}
