//! Reading what a repository holds, trusting nothing that is not signed by our key
//! (invariant 5, docs/ARCHITECTURE.md, "Publish invariants") and nothing whose hash does not match what is signed.

use super::PublishError;
use crate::repo::index::{parse_packages, PackageEntry, Release};
use crate::repo::layout;
use crate::repo::plan::{gunzip, sha256_hex};
use crate::sign::PublicKey;
use crate::store::Store;
use std::collections::{BTreeMap, HashSet};

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
/// lists (what apt reads) is fetched instead. One GET in the usual case.
fn fetch_index(
    store: &dyn Store,
    suite: &str,
    release: &Release,
    path: &str,
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
    if let Some(bytes) = store.get(&canonical_key)? {
        let sha256 = sha256_hex(&bytes);
        if sha256 == listed.sha256 && bytes.len() as u64 == listed.size {
            return Ok(bytes);
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
) -> Result<Vec<u8>, PublishError> {
    let gz_path = format!("{path}.gz");
    if release.file(&gz_path).is_none() {
        return fetch_index(store, suite, release, path);
    }
    let compressed = fetch_index(store, suite, release, &gz_path)?;
    let corrupt = |reason: String| PublishError::RemoteCorrupt {
        store: store.describe(),
        key: format!("dists/{suite}/{gz_path}"),
        reason,
    };
    let listed = release.file(path);
    let text = gunzip(&compressed, listed.map(|f| f.size)).map_err(corrupt)?;
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

/// A suite's InRelease, verified with our key and parsed.
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

/// The suites as [`recognise`] found them, each InRelease verified: what the first
/// read under the lock expects ([`read_all_expecting`]).
pub struct Recognised {
    suites: Vec<(String, SignedRelease)>,
}

/// Whether the store holds a repository of ours or none: every published suite's
/// InRelease verifies with `key`. Read-only, so a publish into a directory or bucket
/// that is someone else's is refused before it writes anything, even its lock
/// (invariants 1 and 5). The InRelease of each `configured` suite is read alongside
/// the listing (a round trip saved); only a published suite not configured waits
/// for the listing.
pub fn recognise(
    store: &dyn Store,
    key: &PublicKey,
    configured: &[String],
) -> Result<Recognised, PublishError> {
    let (listed, guessed) = crate::parallel::join(
        || published_suites(store),
        || {
            crate::parallel::map(configured, configured.len(), |suite| {
                read_in_release(store, key, suite)
            })
        },
    );
    let listed = listed?;
    let mut found: BTreeMap<&str, Result<Option<SignedRelease>, PublishError>> = configured
        .iter()
        .map(String::as_str)
        .zip(guessed)
        .filter(|(suite, _)| listed.contains_key(*suite))
        .collect();
    let rest: Vec<&String> = listed
        .keys()
        .filter(|suite| !found.contains_key(suite.as_str()))
        .collect();
    let read = crate::parallel::map(&rest, rest.len(), |suite| {
        read_in_release(store, key, suite)
    });
    found.extend(rest.iter().map(|suite| suite.as_str()).zip(read));
    let mut suites = Vec::new();
    for (suite, signed) in found {
        if let Some(signed) = signed? {
            suites.push((suite.to_owned(), signed));
        }
    }
    Ok(Recognised { suites })
}

/// Every published suite, like [`read_all`], in one round trip when the repository
/// is still as `recognised`: the listing, each suite's InRelease, and the indices
/// the recognised InRelease lists are read at once. A suite whose InRelease is still
/// the recognised one has those indices (checked against its signed hashes); a suite
/// whose InRelease changed since, and one new, is read again
/// (docs/ARCHITECTURE.md, "The life of a publish").
pub fn read_all_expecting(
    store: &dyn Store,
    key: &PublicKey,
    recognised: &Recognised,
) -> Result<BTreeMap<String, SuiteState>, PublishError> {
    let expected = &recognised.suites;
    let (listed, read) = crate::parallel::join(
        || published_suites(store),
        || {
            crate::parallel::map(expected, expected.len(), |(suite, signed)| {
                crate::parallel::join(
                    || store.get(&layout::in_release_key(suite)),
                    || packages_of(store, suite, &signed.release),
                )
            })
        },
    );
    let listed = listed?;
    let mut states = BTreeMap::new();
    for ((suite, signed), (now, packages)) in expected.iter().zip(read) {
        let Some(modified) = listed.get(suite) else {
            continue;
        };
        if now?.as_deref() != Some(&signed.in_release[..]) {
            continue;
        }
        states.insert(
            suite.clone(),
            SuiteState {
                suite: suite.clone(),
                in_release: signed.in_release.clone(),
                release_text: signed.text.clone(),
                in_release_modified: *modified,
                release: signed.release.clone(),
                packages: packages?,
            },
        );
    }
    let again: Vec<(&String, &Option<u64>)> = listed
        .iter()
        .filter(|(suite, _)| !states.contains_key(*suite))
        .collect();
    let read = crate::parallel::map(&again, again.len(), |(suite, _)| {
        read_suite(store, key, suite)
    });
    for ((suite, modified), state) in again.into_iter().zip(read) {
        if let Some(mut state) = state? {
            state.in_release_modified = *modified;
            states.insert(suite.clone(), state);
        }
    }
    Ok(states)
}

/// Reads and verifies one suite; `None` when it has never been published.
pub fn read_suite(
    store: &dyn Store,
    key: &PublicKey,
    suite: &str,
) -> Result<Option<SuiteState>, PublishError> {
    let Some(SignedRelease {
        in_release,
        text: signed,
        release,
    }) = read_in_release(store, key, suite)?
    else {
        return Ok(None);
    };
    let packages = packages_of(store, suite, &release)?;
    Ok(Some(SuiteState {
        suite: suite.to_owned(),
        in_release,
        release_text: signed,
        in_release_modified: None,
        release,
        packages,
    }))
}

/// The packages the indices of `release` list, read and checked against its hashes.
fn packages_of(
    store: &dyn Store,
    suite: &str,
    release: &Release,
) -> Result<Vec<PackageEntry>, PublishError> {
    let paths: Vec<String> = release
        .index_architectures()
        .into_iter()
        .map(|architecture| format!("{}/Packages", layout::binary_dir(&architecture)))
        .collect();
    // Each architecture's index at once: a round trip each saved.
    let read = crate::parallel::map(&paths, paths.len(), |path| {
        read_packages(store, suite, release, path)
    });
    let mut packages = Vec::new();
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    for (path, bytes) in paths.iter().zip(read) {
        let bytes = bytes?;
        let what = format!("dists/{suite}/{path}");
        let text = String::from_utf8(bytes).map_err(|_| PublishError::RemoteCorrupt {
            store: store.describe(),
            key: what.clone(),
            reason: "not UTF-8 text".into(),
        })?;
        for entry in parse_packages(&text, &what).map_err(|e| PublishError::RemoteCorrupt {
            store: store.describe(),
            key: what.clone(),
            reason: e.to_string(),
        })? {
            // arch:all packages appear in every architecture's index.
            let id = (
                entry.name.clone(),
                entry.version.clone(),
                entry.architecture.clone(),
            );
            if seen.insert(id) {
                packages.push(entry);
            }
        }
    }
    Ok(packages)
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
