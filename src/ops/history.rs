//! `history`, `rollback`, `withdraw` and `phase`: the commands that undo or stage a
//! release (docs/ARCHITECTURE.md, "History and rollback"). Each change goes through
//! the publish protocol like any other, and is itself recorded.

use super::publish::SuiteWriter;
use super::{open_store_with, CommandError, PublishSummary, ReadOptions, WriteOptions};
use crate::keys::KeyPurpose;
use crate::listener::Listener;
use crate::publish::history::{self, HistoryRecord, SuiteHistory};
use crate::publish::{Change, PublishError};
use crate::repo::plan::{KeepServices, SuiteChange};

#[derive(Debug, Clone, Default)]
pub struct HistoryOptions {
    pub read: ReadOptions,
    /// Default: every configured suite.
    pub suite: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryReport {
    pub repository: String,
    /// Newest record first in each.
    pub suites: Vec<SuiteHistory>,
}

/// The recorded changes of one suite or of all, newest first.
pub fn history(
    options: &HistoryOptions,
    listener: &dyn Listener,
) -> Result<HistoryReport, CommandError> {
    let (settings, transport) = options.read.repo.settings_and_transport()?;
    let key = options.read.public_key(&settings, listener)?;
    let store = open_store_with(&settings.location, transport, listener)?;
    let suites = match &options.suite {
        Some(suite) => {
            check_suite(&settings.config.suites, suite)?;
            vec![suite.clone()]
        }
        None => settings.config.suites.clone(),
    };
    let mut histories = Vec::with_capacity(suites.len());
    for suite in suites {
        histories.push(history::read(store.as_ref(), &key, &suite)?);
    }
    Ok(HistoryReport {
        repository: settings.location.describe(),
        suites: histories,
    })
}

/// `write.suite` is the suite rolled back.
#[derive(Debug, Clone, Default)]
pub struct RollbackOptions {
    pub write: WriteOptions,
    /// The change whose resulting state comes back, as `history` numbers them (the
    /// suite as it was right after change N, as `kubectl rollout undo
    /// --to-revision=N` and `helm rollback` count); default: the state before the
    /// newest change.
    pub to: Option<u64>,
    /// Let the rollback leave the suite without any of the workspace's services.
    pub allow_empty: bool,
}

/// Which recorded state a rollback brings back, found in a suite's history.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    /// The state `record` replaced, i.e. the one after change `record.id - 1`.
    ReplacedBy(&'a HistoryRecord),
    /// The state after the newest change: the suite as it is now.
    Current(&'a HistoryRecord),
}

/// The state after change `to` (default: the state before the newest change) is the
/// one the next change replaced, so its record holds it.
fn rollback_target(recorded: &SuiteHistory, to: Option<u64>) -> Result<Target<'_>, PublishError> {
    let suite = || recorded.suite.clone();
    let newest = recorded
        .records
        .first()
        .ok_or_else(|| PublishError::NoHistory { suite: suite() })?;
    let Some(id) = to else {
        return Ok(Target::ReplacedBy(newest));
    };
    if id == newest.id {
        return Ok(Target::Current(newest));
    }
    match id.checked_add(1).and_then(|next| recorded.find(next)) {
        Some(next) => Ok(Target::ReplacedBy(next)),
        None => Err(PublishError::UnknownHistoryId {
            suite: suite(),
            id,
            // Every state a kept record holds, and the current one.
            known: recorded
                .records
                .iter()
                .rev()
                .map(|r| (r.id - 1).to_string())
                .chain(std::iter::once(newest.id.to_string()))
                .collect(),
        }),
    }
}

/// Makes a recorded state of the suite current again.
pub fn rollback(
    options: &RollbackOptions,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    let writer = SuiteWriter::open(&options.write, KeyPurpose::Republish, listener)?;
    let suite = writer.suite();
    check_suite(&writer.settings.config.suites, &suite)?;
    let store = writer.store.as_ref();
    let recorded = history::read(store, &writer.keys.public_key(), &suite)?;
    let packages = match rollback_target(&recorded, options.to)? {
        Target::Current(newest) => {
            listener.info(&format!(
                "{suite} is as it was after change {} ({}): nothing to roll back",
                newest.id,
                describe(newest)
            ));
            crate::publish::state::read_suite(store, &writer.keys.public_key(), &suite)?
                .map(|state| state.packages)
                .unwrap_or_default()
        }
        Target::ReplacedBy(record) => {
            let after = record.id - 1;
            listener.info(&format!(
                "Restoring {suite} as it was after change {after}{}, before change {} ({})",
                match recorded.find(after) {
                    Some(change) => format!(" ({})", describe(change)),
                    None if after == 0 => " (empty: before the first change)".to_owned(),
                    None => String::new(),
                },
                record.id,
                describe(record)
            ));
            history::replaced_packages(store, &suite, record)?
        }
    };
    let change = SuiteChange::Restore {
        packages,
        keep_current: vec![writer.settings.keyring_package().name],
        keep_services: keep_services(&writer, options.allow_empty)?,
    };
    writer.write(Change::Edit(&change), "rollback", listener)
}

/// "release by ci@runner, 2026-12-06 10:00:00 UTC"
fn describe(record: &HistoryRecord) -> String {
    format!(
        "{} by {}@{}, {}",
        record.command,
        record.user,
        record.host,
        crate::repo::syntax::rfc2822(record.time, "UTC")
    )
}

/// What a change that removes packages must leave in the suite: one of the
/// workspace's services, unless `--allow-empty`.
fn keep_services(
    writer: &SuiteWriter<'_>,
    allow_empty: bool,
) -> Result<KeepServices, CommandError> {
    if allow_empty {
        return Ok(KeepServices::Allowed);
    }
    Ok(match &writer.settings.workspace {
        Some(workspace) => KeepServices::AnyOf(
            workspace
                .services(&[], &|_| None)?
                .into_iter()
                .map(|service| service.deb_name)
                .collect(),
        ),
        None => KeepServices::AnyBut(vec![writer.settings.keyring_package().name]),
    })
}

/// `write.suite` is the suite changed.
#[derive(Debug, Clone, Default)]
pub struct WithdrawOptions {
    pub write: WriteOptions,
    pub package: String,
    pub version: String,
    /// Let the withdraw leave the suite without any of the workspace's services.
    pub allow_empty: bool,
}

/// Removes one version of a package from the suite, every architecture.
pub fn withdraw(
    options: &WithdrawOptions,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    let writer = SuiteWriter::open(&options.write, KeyPurpose::Republish, listener)?;
    let change = SuiteChange::Withdraw {
        name: options.package.clone(),
        version: options.version.clone(),
        keep_services: keep_services(&writer, options.allow_empty)?,
    };
    writer.write(Change::Edit(&change), "withdraw", listener)
}

/// `write.suite` is the suite changed.
#[derive(Debug, Clone, Default)]
pub struct PhaseOptions {
    pub write: WriteOptions,
    /// The packages whose newest versions to phase; none: every package the suite's
    /// last change added or re-phased (the keyring package is never phased).
    pub packages: Vec<String>,
    /// 0 to 100; 100 releases the version to every machine.
    pub percent: u8,
}

/// Sets the phase of the newest version of packages in the suite.
pub fn phase(
    options: &PhaseOptions,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    let writer = SuiteWriter::open(&options.write, KeyPurpose::Republish, listener)?;
    let names = if options.packages.is_empty() {
        let suite = writer.suite();
        let recorded = history::read(writer.store.as_ref(), &writer.keys.public_key(), &suite)?;
        let newest = recorded
            .records
            .first()
            .ok_or_else(|| PublishError::NoHistory {
                suite: suite.clone(),
            })?;
        let names = last_change_packages(
            newest,
            &[
                writer.settings.keyring_package().name,
                writer.settings.fleet_package_name(),
            ],
        );
        if names.is_empty() {
            return Err(CommandError::NothingToPhase {
                suite,
                command: newest.command.clone(),
            });
        }
        listener.info(&format!(
            "Phasing what change {} ({}) brought to {suite}: {}",
            newest.id,
            newest.command,
            names.join(", ")
        ));
        names
    } else {
        options.packages.clone()
    };
    let change = SuiteChange::Phase {
        names,
        percent: options.percent,
    };
    writer.write(Change::Edit(&change), "phase", listener)
}

/// The packages a change added or re-phased, but the keyring and the fleet package
/// (never phased), each once, sorted.
fn last_change_packages(record: &HistoryRecord, never_phased: &[String]) -> Vec<String> {
    let names: std::collections::BTreeSet<String> = record
        .added
        .iter()
        .chain(&record.changed)
        .map(|p| p.name.clone())
        .filter(|name| !never_phased.contains(name))
        .collect();
    names.into_iter().collect()
}

fn check_suite(configured: &[String], suite: &str) -> Result<(), PublishError> {
    if configured.iter().any(|s| s == suite) {
        Ok(())
    } else {
        Err(PublishError::UnknownSuite {
            suite: suite.to_owned(),
            configured: configured.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> HistoryRecord {
        HistoryRecord {
            id,
            time: 1_700_000_000 + id,
            user: "ops".into(),
            host: "ci".into(),
            ci_run: None,
            command: "release".into(),
            added: vec![],
            retired: vec![],
            changed: vec![],
            replaced_indices: Default::default(),
            replaced_pool: vec![],
        }
    }

    /// Changes `ids`, newest first, as `history` keeps them.
    /// Which record a target names, and whether it is the current state.
    fn named(target: Result<Target<'_>, PublishError>) -> (&'static str, u64) {
        match target {
            Ok(Target::ReplacedBy(record)) => ("replaced by", record.id),
            Ok(Target::Current(record)) => ("current", record.id),
            Err(error) => panic!("{error}"),
        }
    }

    fn kept(ids: &[u64]) -> SuiteHistory {
        SuiteHistory {
            suite: "stable".into(),
            records: ids.iter().map(|&id| record(id)).collect(),
        }
    }

    #[test]
    fn to_n_brings_back_the_state_right_after_change_n() {
        let history = kept(&[3, 2, 1]);
        // After change 1 is what change 2 replaced.
        assert_eq!(
            named(rollback_target(&history, Some(1))),
            ("replaced by", 2)
        );
        assert_eq!(
            named(rollback_target(&history, Some(2))),
            ("replaced by", 3)
        );
        // After the newest change is the suite as it is.
        assert_eq!(named(rollback_target(&history, Some(3))), ("current", 3));
        // Before the first change: the empty suite change 1 replaced.
        assert_eq!(
            named(rollback_target(&history, Some(0))),
            ("replaced by", 1)
        );
        // No --to: the state before the newest change.
        assert_eq!(named(rollback_target(&history, None)), ("replaced by", 3));
    }

    #[test]
    fn a_state_no_kept_record_holds_is_refused_naming_the_ones_that_are() {
        // Records 1 to 4 fell out of the history (its depth): the state after change
        // 4 is still known (change 5 replaced it), the one after change 3 is not.
        let history = kept(&[7, 6, 5]);
        assert!(rollback_target(&history, Some(4)).is_ok());
        match rollback_target(&history, Some(3)) {
            Err(PublishError::UnknownHistoryId { id, known, .. }) => {
                assert_eq!(id, 3);
                assert_eq!(known, ["4", "5", "6", "7"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            rollback_target(&history, Some(u64::MAX)),
            Err(PublishError::UnknownHistoryId { .. })
        ));
        assert!(matches!(
            rollback_target(&kept(&[]), None),
            Err(PublishError::NoHistory { .. })
        ));
    }
}
