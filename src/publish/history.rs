//! The history of each suite (docs/ARCHITECTURE.md, "History and rollback"): every
//! change records the state it replaced, newest first, `history` records deep. A
//! record names the Packages indices of the replaced state by their SHA256, so their
//! by-hash copies, and the pool files they list, are kept while the record is: a
//! rollback restores them byte for byte.
//!
//! The history of a suite is one object, `.speedy/history/<suite>.asc`, clearsigned
//! with the repository key: a record edited by hand fails verification and is
//! refused, never restored.

use super::{PackageRef, PublishError};
use crate::repo::index::{parse_packages, PackageEntry};
use crate::repo::layout;
use crate::sign::{PublicKey, RepoKeys};
use crate::store::{Body, Store};
use std::collections::{BTreeMap, BTreeSet};

/// One change of a suite.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryRecord {
    /// Increasing per suite; `rollback --to ID` names it.
    pub id: u64,
    /// Unix seconds.
    pub time: u64,
    pub user: String,
    pub host: String,
    /// The CI run, when the environment names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_run: Option<String>,
    /// `publish`, `release`, `promote`, `rollback`, `withdraw` or `phase`.
    pub command: String,
    pub added: Vec<PackageRef>,
    pub retired: Vec<PackageRef>,
    /// Entries that stayed with another index entry (a new phase).
    #[serde(default)]
    pub changed: Vec<PackageRef>,
    /// The Packages indices of the state this change replaced, path below the suite
    /// (`main/binary-amd64/Packages`) → SHA256. Empty: the suite did not exist.
    pub replaced_indices: BTreeMap<String, String>,
    /// The pool files the replaced state listed.
    pub replaced_pool: Vec<String>,
}

impl HistoryRecord {
    /// The objects this record keeps from garbage collection.
    pub fn referenced_keys(&self, suite: &str) -> impl Iterator<Item = String> + '_ {
        let suite = suite.to_owned();
        self.replaced_indices
            .iter()
            .map(move |(path, sha256)| {
                format!(
                    "{}/{}",
                    layout::dists_dir(&suite),
                    layout::by_hash_path(path, sha256)
                )
            })
            .chain(self.replaced_pool.iter().cloned())
    }
}

/// Who made a change: user, host and, in CI, the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user: String,
    pub host: String,
    pub ci_run: Option<String>,
}

impl Actor {
    /// From the environment: the user as the lock names it, the lock's host name, and the CI run where a
    /// CI system says which (GitHub Actions, GitLab CI, Jenkins, or `CI=true`).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let ci_run = match (
            var("GITHUB_SERVER_URL"),
            var("GITHUB_REPOSITORY"),
            var("GITHUB_RUN_ID"),
        ) {
            (Some(server), Some(repository), Some(run)) => {
                Some(format!("{server}/{repository}/actions/runs/{run}"))
            }
            _ => var("CI_PIPELINE_URL")
                .or_else(|| var("BUILD_URL"))
                .or_else(|| var("CI").filter(|v| v == "true").map(|_| "CI".to_owned())),
        };
        Actor {
            user: super::lock::this_user(),
            host: super::lock::this_host(),
            ci_run,
        }
    }
}

/// The kept records of a suite, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SuiteHistory {
    pub suite: String,
    pub records: Vec<HistoryRecord>,
}

impl SuiteHistory {
    pub fn find(&self, id: u64) -> Option<&HistoryRecord> {
        self.records.iter().find(|r| r.id == id)
    }
}

/// Reads the history of `suite`, verified with `key`; empty when there is none.
pub fn read(store: &dyn Store, key: &PublicKey, suite: &str) -> Result<SuiteHistory, PublishError> {
    read_again(store, key, suite, None).map(|read| read.history)
}

/// A history as read, with the bytes it was read from: read again, the same bytes
/// need no second verification and parse (tens of milliseconds for a record of
/// 10,000 packages).
#[derive(Debug, Clone)]
pub struct ReadHistory {
    pub history: SuiteHistory,
    /// `None`: there was no history object.
    bytes: Option<Vec<u8>>,
}

/// Like [`read`], keeping the bytes; `before`, the same suite's history as read
/// earlier, is taken as it is when the object still holds the same bytes.
pub fn read_again(
    store: &dyn Store,
    key: &PublicKey,
    suite: &str,
    before: Option<ReadHistory>,
) -> Result<ReadHistory, PublishError> {
    let bytes = store.get(&layout::history_key(suite))?;
    if let Some(before) = before {
        if before.bytes == bytes && before.history.suite == suite {
            return Ok(before);
        }
    }
    verified(store, key, suite, bytes)
}

/// The history of `suite` from `bytes` as read from its object (`None`: there was
/// none), verified with `key`.
pub fn verified(
    store: &dyn Store,
    key: &PublicKey,
    suite: &str,
    bytes: Option<Vec<u8>>,
) -> Result<ReadHistory, PublishError> {
    let object = layout::history_key(suite);
    let Some(bytes) = bytes else {
        return Ok(ReadHistory {
            history: SuiteHistory {
                suite: suite.to_owned(),
                records: Vec::new(),
            },
            bytes: None,
        });
    };
    let tampered = |reason: String| PublishError::HistoryTampered {
        store: store.describe(),
        key: object.clone(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| tampered("not UTF-8 text".into()))?;
    let signed = key
        .verify_cleartext(text)
        .map_err(|e| tampered(format!("its signature does not verify: {e}")))?;
    let history: SuiteHistory =
        serde_json::from_str(&signed).map_err(|e| tampered(format!("not a history: {e}")))?;
    if history.suite != suite {
        return Err(tampered(format!(
            "it is the history of {:?}",
            history.suite
        )));
    }
    Ok(ReadHistory {
        history,
        bytes: Some(bytes),
    })
}

/// `history` with `record` added as the newest, keeping the newest `depth`.
pub fn appended(mut history: SuiteHistory, record: HistoryRecord, depth: usize) -> SuiteHistory {
    history.records.insert(0, record);
    history.records.truncate(depth.max(1));
    history
}

/// Writes the history signed. Called after the switch, under the lock.
pub fn write(
    store: &dyn Store,
    key: &RepoKeys,
    history: &SuiteHistory,
    now: u64,
) -> Result<(), PublishError> {
    write_signed(store, history, &signed(key, history, now)?)
}

/// The history as written: compact JSON, signed. Compact because the record of a
/// first publish lists every package it added (half a megabyte at 10,000), and each
/// publish reads the history and writes it back.
pub fn signed(key: &RepoKeys, history: &SuiteHistory, now: u64) -> Result<Vec<u8>, PublishError> {
    let json = serde_json::to_string(history).unwrap_or_default();
    Ok(key.clearsign(&json, now)?.into_bytes())
}

/// Writes `history` as [`signed`] made it. Called after the switch, under the lock.
pub fn write_signed(
    store: &dyn Store,
    history: &SuiteHistory,
    signed: &[u8],
) -> Result<(), PublishError> {
    let object = layout::history_key(&history.suite);
    store.put(&object, Body::Bytes(signed), &super::put_options(&object))?;
    Ok(())
}

/// The next record's id.
pub fn next_id(history: &SuiteHistory) -> u64 {
    history.records.iter().map(|r| r.id).max().unwrap_or(0) + 1
}

/// Every object that kept history records reference, in every suite.
pub fn referenced_keys(histories: &[SuiteHistory]) -> BTreeSet<String> {
    histories
        .iter()
        .flat_map(|h| h.records.iter().flat_map(|r| r.referenced_keys(&h.suite)))
        .collect()
}

/// The packages of the state `record` replaced, read back from the by-hash copies of
/// its indices and checked against the SHA256 the signed record names.
pub fn replaced_packages(
    store: &dyn Store,
    suite: &str,
    record: &HistoryRecord,
) -> Result<Vec<PackageEntry>, PublishError> {
    let mut packages = Vec::new();
    for (path, sha256) in &record.replaced_indices {
        let object = format!(
            "{}/{}",
            layout::dists_dir(suite),
            layout::by_hash_path(path, sha256)
        );
        let missing = |reason: &str| PublishError::HistoryStateGone {
            store: store.describe(),
            id: record.id,
            key: object.clone(),
            reason: reason.to_owned(),
        };
        let bytes = store.get(&object)?.ok_or_else(|| missing("missing"))?;
        if crate::repo::plan::sha256_hex(&bytes) != *sha256 {
            return Err(missing("its SHA256 differs from the record's"));
        }
        // Records name Packages.gz (older ones the plain Packages).
        let bytes = if path.ends_with(".gz") {
            crate::repo::plan::gunzip(&bytes, None).map_err(|why| missing(&why))?
        } else {
            bytes
        };
        let text = String::from_utf8(bytes).map_err(|_| missing("not UTF-8 text"))?;
        packages.extend(parse_packages(&text, &object).map_err(|source| {
            PublishError::RemoteCorrupt {
                store: store.describe(),
                key: object.clone(),
                reason: source.to_string(),
            }
        })?);
    }
    Ok(packages)
}
