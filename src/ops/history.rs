//! `history`, `rollback`, `withdraw` and `phase`: the commands that undo or stage a
//! release (docs/ARCHITECTURE.md, "History and rollback"). Each change goes through
//! the publish protocol like any other, and is itself recorded.

use super::publish::SuiteWriter;
use super::{open_store, CommandError, PublishSummary, ReadOptions, WriteOptions};
use crate::keys::KeyPurpose;
use crate::listener::Listener;
use crate::publish::history::{self, SuiteHistory};
use crate::publish::{Change, PublishError};
use crate::repo::plan::SuiteChange;

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
    let settings = options.read.repo.settings()?;
    let key = options.read.public_key(&settings, listener)?;
    let store = open_store(&settings.location, listener)?;
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
    /// The record whose replaced state comes back; default: the newest, so the state
    /// before the last change.
    pub to: Option<u64>,
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
    let record = match options.to {
        Some(id) => recorded
            .find(id)
            .ok_or_else(|| PublishError::UnknownHistoryId {
                suite: suite.clone(),
                id,
                known: recorded.records.iter().map(|r| r.id.to_string()).collect(),
            })?,
        None => recorded
            .records
            .first()
            .ok_or_else(|| PublishError::NoHistory {
                suite: suite.clone(),
            })?,
    };
    listener.info(&format!(
        "Restoring {suite} as it was before change {} ({} by {}@{})",
        record.id, record.command, record.user, record.host
    ));
    let packages = history::replaced_packages(store, &suite, record)?;
    let change = SuiteChange::Restore {
        packages,
        keep_current: vec![writer.settings.keyring_package().name],
    };
    writer.write(Change::Edit(&change), "rollback", listener)
}

/// `write.suite` is the suite changed.
#[derive(Debug, Clone, Default)]
pub struct WithdrawOptions {
    pub write: WriteOptions,
    pub package: String,
    pub version: String,
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
    };
    writer.write(Change::Edit(&change), "withdraw", listener)
}

/// `write.suite` is the suite changed.
#[derive(Debug, Clone, Default)]
pub struct PhaseOptions {
    pub write: WriteOptions,
    pub package: String,
    /// 0 to 100; 100 releases the version to every machine.
    pub percent: u8,
}

/// Sets the phase of the newest version of a package in the suite.
pub fn phase(
    options: &PhaseOptions,
    listener: &dyn Listener,
) -> Result<PublishSummary, CommandError> {
    let writer = SuiteWriter::open(&options.write, KeyPurpose::Republish, listener)?;
    let change = SuiteChange::Phase {
        name: options.package.clone(),
        percent: options.percent,
    };
    writer.write(Change::Edit(&change), "phase", listener)
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
