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

/// Whether the store holds a repository of ours or none: every published suite's
/// InRelease verifies with `key`. Read-only, so a publish into a directory or bucket
/// that is someone else's is refused before it writes anything, even its lock
/// (invariants 1 and 5).
pub fn recognise(store: &dyn Store, key: &PublicKey) -> Result<(), PublishError> {
    let suites: Vec<String> = published_suites(store)?.into_keys().collect();
    crate::parallel::try_map(&suites, suites.len(), |suite| {
        read_in_release(store, key, suite)
    })
    .map(drop)
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
    let mut packages = Vec::new();
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    for architecture in release.index_architectures() {
        let path = format!("{}/Packages", layout::binary_dir(&architecture));
        let bytes = read_packages(store, suite, &release, &path)?;
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
    Ok(Some(SuiteState {
        suite: suite.to_owned(),
        in_release,
        release_text: signed,
        in_release_modified: None,
        release,
        packages,
    }))
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
