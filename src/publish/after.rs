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
use foldhash::{HashMap, HashSet};

/// How long a publish without a lock waits before checking that its switch stuck.
const LOCKLESS_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

impl Publish<'_> {
    /// Finishes a switched attempt; with the lock's read for its release. `None` when
    /// a racing publisher replaced this one's packages: the caller publishes them
    /// again. `gc_state`: garbage collection's bookkeeping as read under the lock.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn after_switch(
        &self,
        change: Change<'_>,
        held: Option<&lock::HeldLock>,
        mut report: PublishReport,
        replaced: Option<Replaced>,
        known: Known,
        gc_state: Option<Result<crate::repo::plan::GcState, PublishError>>,
        listener: &dyn Listener,
    ) -> Option<(PublishReport, Option<Result<bool, PublishError>>)> {
        // The lock was ours just before the switch (checked alongside the Release
        // write), unless a renewal has found it taken over since.
        let ours = held.filter(|held| {
            let lost = held.taken_over();
            if lost {
                listener.warning("the publish lock was broken by someone else during this publish");
            }
            !lost
        });
        let (Some(_), Some(gc_state)) = (ours, gc_state) else {
            // Without a lock (or with a broken one) another publisher may have
            // switched right after us from an older state: check our packages made
            // it, and read again what the attempt read.
            if let Some(check) = &known.second_check {
                self.after_the_replaced_second(check, listener);
            }
            if self.switch_undone(change, held.is_none(), &mut report, listener) {
                return None;
            }
            self.history_after(&mut report, replaced, listener);
            let gc_state = self.read_gc_state();
            self.keyring_and_garbage(&mut report, held.is_some(), None, gc_state, listener);
            return Some((report, None));
        };
        // The lock's check before the switch serves its release.
        let read_for_release = Some(Ok(true));
        let Some(replaced) = replaced else {
            // Nothing switched, nothing to record: garbage collection alone.
            self.keyring_and_garbage(&mut report, true, Some(&known), gc_state, listener);
            return Some((report, read_for_release));
        };
        // A lock ours throughout means nobody else switched: what the attempt read
        // stays true, so garbage collection needs no second read of every suite, and
        // it runs alongside the history's write, from the history as written. Should
        // that write fail, the record only kept more from collection. Whether the
        // store recorded a later second for the switched InRelease is asked alongside.
        let mut known = known;
        let (next_history, signed) = match known.next_history.take() {
            Some(made) => made,
            None => {
                let record = self.history_record(&report, replaced, &known.history);
                let next = history::appended(known.history.clone(), record, self.config.history);
                let signed = history::signed(self.key, &next, (self.now)());
                (next, signed)
            }
        };
        // The history as read gives way to the one written (a first publish's record
        // lists every package: freed aside, not before the write).
        crate::parallel::drop_aside(std::mem::replace(&mut known.history, next_history));
        let known = known;
        let ((written, ()), _) = crate::parallel::join(
            || {
                crate::parallel::join(
                    || {
                        signed.and_then(|signed| {
                            history::write_signed(self.store, &known.history, &signed)
                        })
                    },
                    || {
                        if let Some(check) = &known.second_check {
                            self.after_the_replaced_second(check, listener);
                        }
                    },
                )
            },
            || self.keyring_and_garbage(&mut report, true, Some(&known), gc_state, listener),
        );
        match written {
            Ok(()) => report.history_id = known.history.records.first().map(|r| r.id),
            Err(error) => unfinished(
                &mut report,
                listener,
                format!("recording the change in the history: {error}"),
            ),
        }
        // Sets of tens of thousands of keys at 10,000 packages: milliseconds to free,
        // which the lock's release need not wait for.
        crate::parallel::drop_aside(known);
        Some((report, read_for_release))
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

    /// Records the switch (when there was one) in the history, read again: the lock
    /// did not keep it current.
    fn history_after(
        &self,
        report: &mut PublishReport,
        replaced: Option<Replaced>,
        listener: &dyn Listener,
    ) {
        let Some(replaced) = replaced else {
            return;
        };
        match self.record_history(report, replaced) {
            Ok(id) => report.history_id = Some(id),
            Err(error) => unfinished(
                report,
                listener,
                format!("recording the change in the history: {error}"),
            ),
        }
    }

    /// Records the switch just made in the suite's history as read now; returns the
    /// new record's id.
    fn record_history(
        &self,
        report: &PublishReport,
        replaced: Replaced,
    ) -> Result<u64, PublishError> {
        let history = history::read(self.store, &self.key.public_key(), &self.suite)?;
        let record = self.history_record(report, replaced, &history);
        let id = record.id;
        let history = history::appended(history, record, self.config.history);
        history::write(self.store, self.key, &history, (self.now)())?;
        Ok(id)
    }

    /// The record of the switch just made, next after `history`.
    pub(super) fn history_record(
        &self,
        report: &PublishReport,
        replaced: Replaced,
        history: &history::SuiteHistory,
    ) -> history::HistoryRecord {
        let actor = history::Actor::from_env();
        history::HistoryRecord {
            id: history::next_id(history),
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
        }
    }

    /// Publishes the keyring when it differs from the one last published, then
    /// collects garbage; both from the garbage collector's bookkeeping, read once.
    fn keyring_and_garbage(
        &self,
        report: &mut PublishReport,
        locked: bool,
        known: Option<&Known>,
        gc_state: Result<crate::repo::plan::GcState, PublishError>,
        listener: &dyn Listener,
    ) -> bool {
        let published_keyring = gc_state
            .as_ref()
            .ok()
            .and_then(|state| state.published_keyring.as_deref());
        // Whether anything may have been written (a failed write may have happened).
        let mut wrote = false;
        let keyring = match self.publish_keyring(published_keyring) {
            Ok((written, digest)) => {
                wrote |= !written.is_empty();
                report.replaced_mutable.extend(written);
                Some(digest)
            }
            Err(error) => {
                wrote = true;
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
            Ok((deleted, changed)) => {
                wrote |= changed || !deleted.is_empty();
                report.deleted = deleted;
            }
            Err(error) => {
                wrote = true;
                unfinished(report, listener, format!("garbage collection: {error}"));
            }
        }
        wrote
    }
}
