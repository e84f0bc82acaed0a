//! The steps after the switch (docs/ARCHITECTURE.md, "Crash and concurrency model"):
//! the check that the lock was ours throughout or, without it, that the switch stuck;
//! the history record; the keyring beside dists/; garbage collection. The InRelease
//! write is the publish: from here a failure does not fail it, it is reported as
//! unfinished and the next publish finishes it
//! (docs/ARCHITECTURE.md, "Retries on a flaky network").

use super::{
    history, lock, state, unfinished, Change, Known, PackageRef, Publish, PublishError,
    PublishReport,
};
use crate::listener::Listener;
use crate::repo::index::PackageEntry;
use crate::repo::plan::Replaced;
use std::collections::{HashMap, HashSet};

/// How long a publish without a lock waits before checking that its switch stuck.
const LOCKLESS_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

impl Publish<'_> {
    /// Finishes a switched attempt. `None` when a racing publisher replaced this
    /// one's packages: the caller publishes them again.
    pub(super) fn after_switch(
        &self,
        change: Change<'_>,
        held: Option<&lock::HeldLock>,
        mut report: PublishReport,
        replaced: Option<Replaced>,
        known: Known,
        listener: &dyn Listener,
    ) -> Option<PublishReport> {
        let still_ours = self.lock_still_ours(held, &mut report, listener);
        // Without a lock (or with a broken one) another publisher may have switched
        // right after us from an older state: check our packages made it. A lock
        // still ours after the switch means nobody else switched, so there is
        // nothing to read back.
        if !still_ours && self.switch_undone(change, held.is_none(), &mut report, listener) {
            return None;
        }
        let history_now = self.history_after(&mut report, replaced, still_ours, &known, listener);
        // What the attempt read stays true while the lock is ours: garbage
        // collection then needs no second read of every suite.
        let known = if still_ours {
            history_now.map(|history| Known { history, ..known })
        } else {
            None
        };
        self.keyring_and_garbage(&mut report, held.is_some(), known.as_ref(), listener);
        Some(report)
    }

    /// Whether the lock is still ours after the switch (never without one).
    fn lock_still_ours(
        &self,
        held: Option<&lock::HeldLock>,
        report: &mut PublishReport,
        listener: &dyn Listener,
    ) -> bool {
        let Some(held) = held else {
            return false;
        };
        match held.still_held(self.store) {
            Ok(true) => true,
            Ok(false) => {
                listener.warning("the publish lock was broken by someone else during this publish");
                false
            }
            Err(error) => {
                unfinished(
                    report,
                    listener,
                    format!("checking the lock after the switch: {error}"),
                );
                false
            }
        }
    }

    /// Whether a racing publisher replaced this one's packages. Without a lock, first
    /// give a racing publisher's write the time to land, so the check sees it (the
    /// race window is one request long).
    fn switch_undone(
        &self,
        change: Change<'_>,
        lockless: bool,
        report: &mut PublishReport,
        listener: &dyn Listener,
    ) -> bool {
        if lockless {
            std::thread::sleep(LOCKLESS_SETTLE);
        }
        match self.lost_to_a_racer(change, report) {
            Ok(true) => {
                listener.warning(
                    "a concurrent publish replaced this one's packages; publishing them again",
                );
                true
            }
            Ok(false) => false,
            Err(error) => {
                unfinished(report, listener, format!("checking the switch: {error}"));
                false
            }
        }
    }

    /// Whether, read back after the switch, the suite lacks what this publish put in
    /// (or still lists what it took out): another publisher switched over it.
    fn lost_to_a_racer(
        &self,
        change: Change<'_>,
        report: &PublishReport,
    ) -> Result<bool, PublishError> {
        let after = state::read_suite(self.store, &self.key.public_key(), &self.suite)?;
        let listed: Vec<PackageEntry> = after.map(|s| s.packages).unwrap_or_default();
        let listed_refs: HashSet<PackageRef> = listed.iter().map(PackageRef::from).collect();
        Ok(match change {
            Change::Add { debs, .. } => {
                let retired: HashSet<(&str, &str, &str)> = report
                    .retired
                    .iter()
                    .map(|r| (r.name.as_str(), r.version.as_str(), r.architecture.as_str()))
                    .collect();
                let listed_hashes: HashMap<(&str, &str, &str), &str> =
                    listed.iter().map(|p| (p.id(), p.sha256.as_str())).collect();
                debs.iter().any(|d| {
                    !retired.contains(&d.entry.id())
                        && listed_hashes.get(&d.entry.id()) != Some(&d.entry.sha256.as_str())
                })
            }
            Change::Edit(_) => {
                !report
                    .added
                    .iter()
                    .chain(&report.changed)
                    .all(|r| listed_refs.contains(r))
                    || report.retired.iter().any(|r| listed_refs.contains(r))
            }
        })
    }

    /// Records the switch (when there was one) in the history; returns the history
    /// as it is now, when known: as written, or as read before the switch when
    /// nothing was recorded and the lock kept it current.
    fn history_after(
        &self,
        report: &mut PublishReport,
        replaced: Option<Replaced>,
        still_ours: bool,
        known: &Known,
        listener: &dyn Listener,
    ) -> Option<history::SuiteHistory> {
        let Some(replaced) = replaced else {
            return still_ours.then(|| known.history.clone());
        };
        match self.record_history(report, replaced, still_ours.then(|| known.history.clone())) {
            Ok(written) => {
                report.history_id = written.records.first().map(|r| r.id);
                Some(written)
            }
            Err(error) => {
                unfinished(
                    report,
                    listener,
                    format!("recording the change in the history: {error}"),
                );
                None
            }
        }
    }

    /// Records the switch just made in the suite's history; returns the history as
    /// written, the new record first. `read` is the history as read before the
    /// switch, when the lock kept it current; otherwise it is read again.
    fn record_history(
        &self,
        report: &PublishReport,
        replaced: Replaced,
        read: Option<history::SuiteHistory>,
    ) -> Result<history::SuiteHistory, PublishError> {
        let history = match read {
            Some(history) => history,
            None => history::read(self.store, &self.key.public_key(), &self.suite)?,
        };
        let actor = history::Actor::from_env();
        let id = history::next_id(&history);
        let record = history::HistoryRecord {
            id,
            time: (self.now)(),
            user: actor.user,
            host: actor.host,
            ci_run: actor.ci_run,
            command: self.command.to_owned(),
            added: report.added.clone(),
            retired: report.retired.clone(),
            changed: report.changed.clone(),
            replaced_indices: replaced.indices,
            replaced_pool: replaced.pool,
        };
        history::append(
            self.store,
            self.key,
            history,
            record,
            self.config.history,
            (self.now)(),
        )
    }

    /// Publishes the keyring when it differs from the one last published, then
    /// collects garbage; both read the garbage collector's bookkeeping, once.
    fn keyring_and_garbage(
        &self,
        report: &mut PublishReport,
        locked: bool,
        known: Option<&Known>,
        listener: &dyn Listener,
    ) {
        let gc_state = self.read_gc_state();
        let published_keyring = gc_state
            .as_ref()
            .ok()
            .and_then(|state| state.published_keyring.as_deref());
        let keyring = match self.publish_keyring(published_keyring) {
            Ok((written, digest)) => {
                report.replaced_mutable.extend(written);
                Some(digest)
            }
            Err(error) => {
                unfinished(report, listener, format!("publishing the keyring: {error}"));
                None
            }
        };
        let acl = gc_state
            .as_ref()
            .ok()
            .and_then(|state| self.reapply_acl(state.acl.as_deref(), report, listener));
        let collected = gc_state.and_then(|previous| {
            self.collect_garbage(locked, known, &previous, keyring, acl, listener)
        });
        match collected {
            Ok(deleted) => report.deleted = deleted,
            Err(error) => unfinished(report, listener, format!("garbage collection: {error}")),
        }
    }
}
