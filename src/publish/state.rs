//! Reading what a repository holds, trusting nothing that is not signed by our key
//! (invariant 5, docs/ARCHITECTURE.md, "Publish invariants") and nothing whose hash does not match what is signed.

use super::PublishError;
use crate::repo::index::{parse_packages, PackageEntry, Release};
use crate::repo::layout;
use crate::repo::plan::{gunzip, sha256_hex};
use crate::sign::PublicKey;
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};

/// One suite as it is published now.
#[derive(Debug, Clone)]
pub struct SuiteState {
    pub suite: String,
    /// The exact bytes of InRelease, to notice a concurrent change before switching.
    pub in_release: Vec<u8>,
    /// The signed text of InRelease, as verified.
    pub release_text: String,
    /// When InRelease was written (unix seconds), as the store's listing said: the
    /// next one must carry a later second ("Publish invariants", the switch).
    pub in_release_modified: Option<u64>,
    pub release: Release,
    pub packages: Vec<PackageEntry>,
}

/// The suites that have an InRelease, from the store's listing, with when each
/// InRelease was last written (where the store says).
pub fn published_suites(store: &dyn Store) -> Result<BTreeMap<String, Option<u64>>, PublishError> {
    let mut suites = BTreeMap::new();
    for object in store.list("dists/")? {
        if let Some(suite) = object
            .key
            .strip_prefix("dists/")
            .and_then(|k| k.strip_suffix("/InRelease"))
        {
            if !suite.contains('/') {
                suites.insert(suite.to_owned(), object.modified);
            }
        }
    }
    Ok(suites)
}

/// Fetches an index file listed in Release. The canonical file is read first: it
/// matches Release except after a publish interrupted between the two, and then its
/// hash names an existing by-hash copy, and the immutable by-hash copy that Release
/// lists (what apt reads) is fetched instead. One GET in the usual case, none when
/// `prefetched` holds the canonical file as read alongside InRelease.
fn fetch_index(
    store: &dyn Store,
    suite: &str,
    release: &Release,
    path: &str,
    prefetched: Option<Option<&[u8]>>,
) -> Result<Vec<u8>, PublishError> {
    let corrupt = |reason: String| PublishError::RemoteCorrupt {
        store: store.describe(),
        key: format!("dists/{suite}/{path}"),
        reason,
    };
    let listed = release
        .file(path)
        .ok_or_else(|| corrupt("not listed in Release".into()))?;
    let canonical_key = format!("dists/{suite}/{path}");
    let canonical: Option<std::borrow::Cow<'_, [u8]>> = match prefetched {
        Some(bytes) => bytes.map(std::borrow::Cow::Borrowed),
        None => store.get(&canonical_key)?.map(std::borrow::Cow::Owned),
    };
    if let Some(bytes) = canonical {
        let sha256 = sha256_hex(&bytes);
        if sha256 == listed.sha256 && bytes.len() as u64 == listed.size {
            return Ok(bytes.into_owned());
        }
        let by_hash_of_canonical = format!("dists/{suite}/{}", layout::by_hash_path(path, &sha256));
        if store.head(&by_hash_of_canonical)?.is_none() {
            return Err(corrupt(format!(
                "its SHA256 {sha256} is not the {} that InRelease lists (size {} vs {}): the file was changed outside cargo speedy",
                listed.sha256,
                bytes.len(),
                listed.size
            )));
        }
    }
    let by_hash_key = format!(
        "dists/{suite}/{}",
        layout::by_hash_path(path, &listed.sha256)
    );
    match store.get(&by_hash_key)? {
        Some(bytes) if sha256_hex(&bytes) == listed.sha256 && bytes.len() as u64 == listed.size => {
            Ok(bytes)
        }
        Some(bytes) => Err(PublishError::RemoteCorrupt {
            store: store.describe(),
            key: by_hash_key,
            reason: format!(
                "its SHA256 is {}, not the {} that InRelease lists",
                sha256_hex(&bytes),
                listed.sha256
            ),
        }),
        None => Err(corrupt(
            "missing: neither the file nor its by-hash copy has the hash InRelease lists".into(),
        )),
    }
}

/// The Packages index at `path`: decompressed from Packages.gz when Release lists it
/// (what cargo-speedy writes; the plain file is listed, not written), and checked
/// against the plain file's listed size and SHA256 too.
fn read_packages(
    store: &dyn Store,
    suite: &str,
    release: &Release,
    path: &str,
    prefetched: Option<Option<&[u8]>>,
    decompressed: Option<Vec<u8>>,
) -> Result<Vec<u8>, PublishError> {
    let gz_path = format!("{path}.gz");
    if release.file(&gz_path).is_none() {
        return fetch_index(store, suite, release, path, None);
    }
    let compressed = fetch_index(store, suite, release, &gz_path, prefetched)?;
    let corrupt = |reason: String| PublishError::RemoteCorrupt {
        store: store.describe(),
        key: format!("dists/{suite}/{gz_path}"),
        reason,
    };
    let listed = release.file(path);
    // A decompression made before InRelease was in counts only when what InRelease
    // vouched for is the very file it decompressed.
    let text = match decompressed {
        Some(text) if prefetched == Some(Some(&compressed[..])) => text,
        _ => gunzip(&compressed, listed.map(|f| f.size)).map_err(corrupt)?,
    };
    if let Some(listed) = listed {
        if text.len() as u64 != listed.size || sha256_hex(&text) != listed.sha256 {
            return Err(corrupt(format!(
                "it decompresses to other contents than the {path} InRelease lists (SHA256 {})",
                listed.sha256
            )));
        }
    }
    Ok(text)
}

/// A canonical index read alongside InRelease, decompressed as soon as it is in:
/// InRelease may still be on its way (a loaded store can answer its small object
/// after the index), and the decompression need not wait for it. What InRelease
/// then lists is checked as always (`read_packages`). `None` when it does not
/// decompress within [`SPECULATIVE_GUNZIP_RATIO`] times its size.
fn decompressed_before_verified(gz: &[u8]) -> Option<Vec<u8>> {
    let limit = (gz.len() as u64).saturating_mul(SPECULATIVE_GUNZIP_RATIO);
    gunzip(gz, Some(limit.saturating_add(1 << 20))).ok()
}

/// How many times its size an index read before InRelease may decompress to: nothing
/// vouches for it yet, so its memory is bounded (a Packages of 10,000 entries is six
/// times its Packages.gz); beyond, it waits for InRelease's sizes as usual.
const SPECULATIVE_GUNZIP_RATIO: u64 = 32;

/// A suite's InRelease, verified with our key and parsed.
#[derive(Clone)]
struct SignedRelease {
    in_release: Vec<u8>,
    text: String,
    release: Release,
}

/// Reads `suite`'s InRelease and checks it is ours: signed by `key` and naming the
/// suite. `None` when the suite has never been published.
fn read_in_release(
    store: &dyn Store,
    key: &PublicKey,
    suite: &str,
) -> Result<Option<SignedRelease>, PublishError> {
    let in_release_key = layout::in_release_key(suite);
    let Some(in_release) = store.get(&in_release_key)? else {
        return Ok(None);
    };
    let text = String::from_utf8(in_release.clone()).map_err(|_| PublishError::RemoteCorrupt {
        store: store.describe(),
        key: in_release_key.clone(),
        reason: "not UTF-8 text".into(),
    })?;
    let signed = key
        .verify_cleartext(&text)
        .map_err(|source| PublishError::RemoteSignature {
            store: store.describe(),
            key: in_release_key.clone(),
            expected: key.fingerprint(),
            cause: Box::new(source),
        })?;
    let release =
        Release::parse(&signed, &in_release_key).map_err(|e| PublishError::RemoteCorrupt {
            store: store.describe(),
            key: in_release_key.clone(),
            reason: e.to_string(),
        })?;
    if release.suite != suite {
        return Err(PublishError::RemoteCorrupt {
            store: store.describe(),
            key: in_release_key,
            reason: format!("it says Suite: {}, expected {suite}", release.suite),
        });
    }
    Ok(Some(SignedRelease {
        in_release,
        text: signed,
        release,
    }))
}

/// Every published suite as [`recognise`] found it, read and verified: what the
/// publish merges into before it takes the lock, and what the first read under the
/// lock confirms ([`read_all_expecting`]).
#[derive(Debug, Clone)]
pub struct Recognised {
    pub states: BTreeMap<String, SuiteState>,
}

/// Every published suite as [`check`] found it: InRelease verified, indices checked
/// against it and decompressed, not parsed yet. Whether a change adds to a suite can
/// be told from the text ([`Checked::may_list`]); the parse, tens of milliseconds at
/// 10,000 packages, then goes on while the lock is taken
/// (docs/ARCHITECTURE.md, "The life of a publish").
pub struct Checked {
    suites: BTreeMap<String, Reading>,
}

/// One suite as [`check`] left it: checked, or (a suite besides the one the lock
/// waits for) only its InRelease verified and its indices read, to be checked
/// against it when the suites are parsed, while the lock is taken: at 10,000
/// packages the decompression and hashes of another suite's index are 10 ms of CPU
/// that the lock need not wait for.
enum Reading {
    Checked(CheckedSuite),
    Read {
        suite: String,
        signed: SignedRelease,
        in_release_modified: Option<u64>,
        /// Its indices as read alongside InRelease (by path relative to the suite's
        /// directory): the others are read when it is checked.
        prefetched: BTreeMap<String, Option<Vec<u8>>>,
    },
}

impl Reading {
    fn signed(&self) -> &SignedRelease {
        match self {
            Reading::Checked(checked) => &checked.signed,
            Reading::Read { signed, .. } => signed,
        }
    }

    fn set_modified(&mut self, modified: Option<u64>) {
        match self {
            Reading::Checked(checked) => checked.in_release_modified = modified,
            Reading::Read {
                in_release_modified,
                ..
            } => *in_release_modified = modified,
        }
    }

    /// Checked, its indices against InRelease.
    fn checked(
        &self,
        store: &dyn Store,
    ) -> Result<std::borrow::Cow<'_, CheckedSuite>, PublishError> {
        match self {
            Reading::Checked(checked) => Ok(std::borrow::Cow::Borrowed(checked)),
            Reading::Read {
                suite,
                signed,
                in_release_modified,
                prefetched,
            } => {
                let mut checked =
                    check_suite(store, suite, signed.clone(), prefetched, BTreeMap::new())?;
                checked.in_release_modified = *in_release_modified;
                Ok(std::borrow::Cow::Owned(checked))
            }
        }
    }
}

impl Checked {
    /// Whether the Packages of `suite` may list a file at `filename`: `false` only
    /// when no index of the suite has that `Filename:` line (or the suite is not
    /// published). A suite listing the package under another file name still says
    /// `false`, so a `false` is an "adds", a `true` a "look closer".
    pub fn may_list(&self, suite: &str, filename: &str) -> bool {
        let checked = match self.suites.get(suite) {
            None => return false,
            // Not checked yet: look closer after the parse.
            Some(Reading::Read { .. }) => return true,
            Some(Reading::Checked(checked)) => checked,
        };
        let line = format!("Filename: {filename}\n");
        let finder = memchr::memmem::Finder::new(line.as_bytes());
        checked.indices.iter().any(|(_, text)| {
            finder
                .find_iter(text)
                .any(|at| at == 0 || text[at - 1] == b'\n')
        })
    }

    /// The `Origin:` of `suite`'s signed Release, when it is published.
    pub fn origin(&self, suite: &str) -> Option<&str> {
        self.suites
            .get(suite)
            .map(|reading| reading.signed().release.origin.as_str())
    }

    /// The published suites, by name.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.suites.keys()
    }

    /// Every suite checked (the ones [`check`] only read) and parsed, each on a
    /// thread of its own.
    pub fn parsed(self, store: &dyn Store) -> Result<Recognised, PublishError> {
        let suites: Vec<(String, Reading)> = self.suites.into_iter().collect();
        let parsed = crate::parallel::map(&suites, suites.len(), |(_, reading)| {
            reading.checked(store)?.parse(store)
        });
        let mut states = BTreeMap::new();
        for ((suite, _), state) in suites.iter().zip(parsed) {
            states.insert(suite.clone(), state?);
        }
        Ok(Recognised { states })
    }
}

/// The canonical `Packages.gz` of each architecture `architectures` names, relative
/// to the suite's directory: the indices a suite has, guessed before its InRelease
/// says.
fn guessed_indices(architectures: &[String]) -> Vec<String> {
    architectures
        .iter()
        .map(|architecture| format!("{}/Packages.gz", layout::binary_dir(architecture)))
        .collect()
}

/// [`check`], then every suite parsed.
pub fn recognise(
    store: &dyn Store,
    key: &PublicKey,
    configured: &[String],
    architectures: &[String],
) -> Result<Recognised, PublishError> {
    check(store, key, configured, architectures, None)?.parsed(store)
}

/// Whether the store holds a repository of ours or none: every published suite's
/// InRelease verifies with `key`. Read-only, so a publish into a directory or bucket
/// that is someone else's is refused before it writes anything, even its lock
/// (invariants 1 and 5). Each suite is read whole, its indices checked against its
/// signed hashes: the publish merges into this before the lock. The InRelease of each
/// `configured` suite and its canonical Packages.gz of each of `architectures` are
/// read alongside the listing (round trips saved); only a published suite not
/// configured, or an index not guessed, waits for the listing or the InRelease
/// (docs/ARCHITECTURE.md, "The life of a publish"). With `first`, only that suite's
/// indices are checked now, the others' when the suites are parsed
/// ([`Checked::parsed`]); every InRelease is verified now.
pub fn check(
    store: &dyn Store,
    key: &PublicKey,
    configured: &[String],
    architectures: &[String],
    first: Option<&str>,
) -> Result<Checked, PublishError> {
    let guessed_paths = guessed_indices(architectures);
    let (listed, guessed) = crate::parallel::join(
        || published_suites(store),
        || {
            crate::parallel::map(configured, configured.len(), |suite| {
                let checked_now = first.is_none_or(|first| first == suite.as_str());
                let (in_release, indices) = crate::parallel::join(
                    || read_in_release(store, key, suite),
                    || {
                        crate::parallel::map(&guessed_paths, guessed_paths.len(), |path| {
                            let bytes = store.get(&format!("{}/{path}", layout::dists_dir(suite)));
                            let decompressed = match &bytes {
                                Ok(Some(gz)) if checked_now => decompressed_before_verified(gz),
                                _ => None,
                            };
                            (bytes, decompressed)
                        })
                    },
                );
                let Some(signed) = in_release? else {
                    return Ok(None);
                };
                let mut prefetched = BTreeMap::new();
                let mut decompressed = BTreeMap::new();
                for (path, (bytes, plain)) in guessed_paths.iter().zip(indices) {
                    prefetched.insert(path.clone(), bytes?);
                    if let Some(plain) = plain {
                        decompressed.insert(path.clone(), plain);
                    }
                }
                if !checked_now {
                    return Ok(Some(Reading::Read {
                        suite: suite.clone(),
                        signed,
                        in_release_modified: None,
                        prefetched,
                    }));
                }
                // Checked on the thread that read it: each suite's hashing and
                // decompression as soon as its own reads are in.
                check_suite(store, suite, signed, &prefetched, decompressed)
                    .map(|checked| Some(Reading::Checked(checked)))
            })
        },
    );
    let listed = listed?;
    let mut suites = BTreeMap::new();
    for (suite, read) in configured.iter().zip(guessed) {
        let Some(modified) = listed.get(suite) else {
            continue;
        };
        if let Some(mut reading) = read? {
            reading.set_modified(*modified);
            suites.insert(suite.clone(), reading);
        }
    }
    let rest: Vec<(&String, &Option<u64>)> = listed
        .iter()
        .filter(|(suite, _)| !suites.contains_key(suite.as_str()))
        .collect();
    let read = crate::parallel::map(&rest, rest.len(), |(suite, _)| {
        read_and_check(store, key, suite)
    });
    for ((suite, modified), checked) in rest.into_iter().zip(read) {
        if let Some(mut checked) = checked? {
            checked.in_release_modified = *modified;
            suites.insert(suite.clone(), Reading::Checked(checked));
        }
    }
    Ok(Checked { suites })
}

/// What the first read under the lock found of the recognised suites
/// ([`read_all_expecting`]).
pub struct Confirmation {
    /// When each published suite's InRelease was written, from the listing.
    listed: BTreeMap<String, Option<u64>>,
    /// The suites read again: their InRelease changed since the recognition, or they
    /// are new.
    read_again: BTreeMap<String, SuiteState>,
}

impl Recognised {
    /// Every published suite now: the recognised states that the confirmation found
    /// unchanged, the others as read again. `true` when every suite is as recognised
    /// (none changed, none came or went): what was decided from the recognised states
    /// holds.
    pub fn confirmed(self, confirmation: Confirmation) -> (BTreeMap<String, SuiteState>, bool) {
        let Confirmation { listed, read_again } = confirmation;
        let mut as_recognised = read_again.is_empty() && listed.len() == self.states.len();
        let mut states = read_again;
        for (suite, mut state) in self.states {
            if states.contains_key(&suite) {
                continue;
            }
            match listed.get(&suite) {
                Some(modified) => {
                    state.in_release_modified = *modified;
                    states.insert(suite, state);
                }
                None => as_recognised = false,
            }
        }
        (states, as_recognised)
    }
}

/// Confirms the recognised suites in one round trip: the listing and each suite's
/// InRelease at once. A suite whose InRelease is still the recognised one still has
/// the indices read with it (checked against its signed hashes), so they are not read
/// again; a suite whose InRelease changed since, and one new, is read again
/// ([`Recognised::confirmed`] puts them together;
/// docs/ARCHITECTURE.md, "The life of a publish").
pub fn read_all_expecting(
    store: &dyn Store,
    key: &PublicKey,
    recognised: &Recognised,
) -> Result<Confirmation, PublishError> {
    let expected: Vec<(&String, &SuiteState)> = recognised.states.iter().collect();
    let (listed, now) = crate::parallel::join(
        || published_suites(store),
        || {
            crate::parallel::map(&expected, expected.len(), |(suite, _)| {
                store.get(&layout::in_release_key(suite))
            })
        },
    );
    let listed = listed?;
    let mut unchanged = BTreeSet::new();
    for ((suite, state), now) in expected.iter().zip(now) {
        if listed.contains_key(*suite) && now?.as_deref() == Some(&state.in_release[..]) {
            unchanged.insert((*suite).clone());
        }
    }
    let again: Vec<(&String, &Option<u64>)> = listed
        .iter()
        .filter(|(suite, _)| !unchanged.contains(*suite))
        .collect();
    let read = crate::parallel::map(&again, again.len(), |(suite, _)| {
        read_suite(store, key, suite)
    });
    let mut read_again = BTreeMap::new();
    for ((suite, modified), state) in again.into_iter().zip(read) {
        if let Some(mut state) = state? {
            state.in_release_modified = *modified;
            read_again.insert(suite.clone(), state);
        }
    }
    Ok(Confirmation { listed, read_again })
}

/// The `Origin:` of `suite`'s InRelease, verified; `None` when it has never been
/// published.
pub fn published_origin(
    store: &dyn Store,
    key: &PublicKey,
    suite: &str,
) -> Result<Option<String>, PublishError> {
    Ok(read_in_release(store, key, suite)?.map(|signed| signed.release.origin))
}

/// Reads and verifies one suite; `None` when it has never been published.
pub fn read_suite(
    store: &dyn Store,
    key: &PublicKey,
    suite: &str,
) -> Result<Option<SuiteState>, PublishError> {
    read_and_check(store, key, suite)?
        .map(|checked| checked.parse(store))
        .transpose()
}

/// Reads and checks one suite, its Packages not parsed; `None` when it has never
/// been published.
fn read_and_check(
    store: &dyn Store,
    key: &PublicKey,
    suite: &str,
) -> Result<Option<CheckedSuite>, PublishError> {
    match read_in_release(store, key, suite)? {
        Some(signed) => {
            check_suite(store, suite, signed, &BTreeMap::new(), BTreeMap::new()).map(Some)
        }
        None => Ok(None),
    }
}

/// One suite read and checked, its Packages not parsed yet.
#[derive(Clone)]
struct CheckedSuite {
    suite: String,
    signed: SignedRelease,
    in_release_modified: Option<u64>,
    /// Each architecture's Packages (`dists/<suite>/<path>`, text), checked against
    /// the hashes InRelease lists.
    indices: Vec<(String, Vec<u8>)>,
}

/// A suite from its verified InRelease: the indices it lists, those in `prefetched`
/// (by path relative to the suite's directory) as already read, and in `decompressed`
/// as already decompressed, the others read now, each checked against its hashes.
fn check_suite(
    store: &dyn Store,
    suite: &str,
    signed: SignedRelease,
    prefetched: &BTreeMap<String, Option<Vec<u8>>>,
    mut decompressed: BTreeMap<String, Vec<u8>>,
) -> Result<CheckedSuite, PublishError> {
    let paths: Vec<(String, std::sync::Mutex<Option<Vec<u8>>>)> = signed
        .release
        .index_architectures()
        .into_iter()
        .map(|architecture| {
            let path = format!("{}/Packages", layout::binary_dir(&architecture));
            let plain = decompressed.remove(&format!("{path}.gz"));
            (path, std::sync::Mutex::new(plain))
        })
        .collect();
    // Each architecture's index at once: a round trip each saved.
    let read = crate::parallel::map(&paths, paths.len(), |(path, plain)| {
        let already = prefetched
            .get(&format!("{path}.gz"))
            .map(|bytes| bytes.as_deref());
        let plain = plain
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        read_packages(store, suite, &signed.release, path, already, plain)
    });
    let mut indices = Vec::with_capacity(paths.len());
    for ((path, _), text) in paths.iter().zip(read) {
        indices.push((format!("dists/{suite}/{path}"), text?));
    }
    Ok(CheckedSuite {
        suite: suite.to_owned(),
        signed,
        in_release_modified: None,
        indices,
    })
}

impl CheckedSuite {
    /// The packages its indices list.
    fn parse(&self, store: &dyn Store) -> Result<SuiteState, PublishError> {
        let mut packages: Vec<PackageEntry> = Vec::new();
        for (what, bytes) in &self.indices {
            let corrupt = |reason: String| PublishError::RemoteCorrupt {
                store: store.describe(),
                key: what.clone(),
                reason,
            };
            let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not UTF-8 text".into()))?;
            let parsed = parse_packages(text, what).map_err(|e| corrupt(e.to_string()))?;
            if self.indices.len() == 1 {
                // One index: what it lists twice (edited by hand) is dropped below.
                packages = parsed;
            } else {
                packages.extend(parsed);
            }
        }
        // arch:all packages appear in every architecture's index (and an index edited
        // by hand may list one twice): each id once, the first found.
        let mut seen: foldhash::HashSet<(&str, &str, &str)> =
            foldhash::HashSet::with_capacity_and_hasher(packages.len(), Default::default());
        let fresh: Vec<bool> = packages
            .iter()
            .map(|entry| seen.insert(entry.id()))
            .collect();
        drop(seen);
        let packages = if fresh.iter().all(|fresh| *fresh) {
            packages
        } else {
            packages
                .into_iter()
                .zip(fresh)
                .filter_map(|(entry, fresh)| fresh.then_some(entry))
                .collect()
        };
        let SignedRelease {
            in_release,
            text,
            release,
        } = self.signed.clone();
        Ok(SuiteState {
            suite: self.suite.clone(),
            in_release,
            release_text: text,
            in_release_modified: self.in_release_modified,
            release,
            packages,
        })
    }
}

/// Every published suite, read and verified, by name.
pub fn read_all(
    store: &dyn Store,
    key: &PublicKey,
) -> Result<BTreeMap<String, SuiteState>, PublishError> {
    let suites: Vec<(String, Option<u64>)> = published_suites(store)?.into_iter().collect();
    // A suite at a time would cost a round trip per request; a repository has a few
    // suites, so each is read on a thread of its own.
    let read = crate::parallel::map(&suites, suites.len(), |(suite, _)| {
        read_suite(store, key, suite)
    });
    let mut states = BTreeMap::new();
    for ((suite, modified), state) in suites.into_iter().zip(read) {
        if let Some(mut state) = state? {
            state.in_release_modified = modified;
            states.insert(suite, state);
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    /// Nothing vouches yet for an index read alongside InRelease: its decompression is
    /// bounded, and one that would go beyond is left for after InRelease.
    #[test]
    fn an_index_read_before_inrelease_decompresses_within_a_bound() {
        let text = "Package: pa\nVersion: 1.0-1\nArchitecture: amd64\n\n".repeat(1_000);
        assert_eq!(
            decompressed_before_verified(&gzip(text.as_bytes())).as_deref(),
            Some(text.as_bytes())
        );
        let bomb = gzip(&vec![0; 16 << 20]);
        assert!(
            (bomb.len() as u64) * SPECULATIVE_GUNZIP_RATIO + (1 << 20) < 16 << 20,
            "{}",
            bomb.len()
        );
        assert_eq!(decompressed_before_verified(&bomb), None);
        assert_eq!(decompressed_before_verified(b"not gzip"), None);
    }
}
