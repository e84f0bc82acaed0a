//! One pass of a publish up to its switch: read every suite and our history, merge
//! the change (`repo::plan::apply`), decide what changed, check the pool, build and
//! sign the indices, plan the writes, and (unless a dry run) write them
//! (docs/ARCHITECTURE.md, "The life of a publish"). The decisions are
//! `repo::plan`'s; this file reads their inputs and carries out their answers.

use super::state::{self, SuiteState};
use super::switch::Switched;
use super::{
    describe_step, history, lock, Attempt, Change, IncomingDeb, Known, PackageRef, Publish,
    PublishError, PublishReport,
};
use crate::listener::Listener;
use crate::repo::index::{PackageEntry, Release};
use crate::repo::plan::{self, CurrentSuite, Merge, SuiteChange, SuiteIndices};
use std::collections::{BTreeMap, BTreeSet};

/// Every published suite, by name, as read and verified.
type States = BTreeMap<String, SuiteState>;

/// The indices of a suite after the change, and Release signed both ways.
struct Signed {
    indices: SuiteIndices,
    release_gpg: Vec<u8>,
    in_release: Vec<u8>,
}

impl Publish<'_> {
    /// Reads every suite (in fewer round trips when it is still as `recognised`),
    /// merges, plans, and (unless a dry run) writes up to the switch.
    pub(super) fn attempt(
        &self,
        change: Change<'_>,
        held: Option<&lock::HeldLock>,
        recognised: Option<&state::Recognised>,
        listener: &dyn Listener,
    ) -> Result<Attempt, PublishError> {
        let (debs, suite_change) = self.suite_change(change);
        let (read, early_pool_sizes) = crate::parallel::join(
            || self.read_state(recognised),
            || self.pool_sizes_early(debs),
        );
        let (states, history) = read?;
        let early_pool_sizes = early_pool_sizes?;
        let current = states.get(&self.suite);
        let merged = plan::apply(
            current.map(|s| s.packages.as_slice()).unwrap_or(&[]),
            &suite_change,
        )
        .map_err(|e| PublishError::Merge(Box::new(e)))?;
        let mut report = self.report_of(current.is_none(), &merged);
        self.warn_retired_on_arrival(&merged, debs, listener);
        let other_suites: Vec<String> = states
            .keys()
            .filter(|s| **s != self.suite)
            .cloned()
            .collect();
        if plan::nothing_changed(current.is_some(), &merged) {
            // Same versions with the same bytes: leave the repository byte-identical.
            let known = self.known_unchanged(&states, other_suites, history);
            return Ok(Attempt::Done {
                report,
                replaced: None,
                known,
            });
        }
        let pool = self.missing_pool(&merged, debs, &states, early_pool_sizes, listener)?;
        let signed = self.sign_indices(&merged.packages)?;
        let current_suite = current.map(|state| CurrentSuite {
            release: &state.release,
            packages: &state.packages,
        });
        let replaced = plan::replaced(current_suite, &merged.packages);
        let known = Known {
            referenced: self.referenced_after(&states, &signed.indices.release, &merged.packages),
            other_suites,
            referenced_before: plan::referenced_before(
                &self.suite,
                current_suite,
                history::referenced_keys(std::slice::from_ref(&history)),
            ),
            history_head_before: history.records.first().map(|r| r.id),
            history,
            second_check: None,
        };
        let publish_plan = plan::publish_plan(
            &self.suite,
            merged,
            pool,
            &signed.indices,
            signed.release_gpg,
            signed.in_release,
        );
        report.plan = publish_plan.steps.iter().map(describe_step).collect();
        if self.dry_run {
            return Ok(Attempt::Done {
                report,
                replaced: None,
                known,
            });
        }
        report.replaced_mutable =
            plan::replaced_mutable_keys(&publish_plan, current.map(|state| &state.release));
        let second_check =
            match self.write_and_switch(&publish_plan, current, debs, held, listener)? {
                Switched::Raced => return Ok(Attempt::Raced),
                Switched::Done { second_check } => second_check,
            };
        Ok(Attempt::Done {
            report,
            replaced: Some(replaced),
            known: Known {
                second_check,
                ..known
            },
        })
    }

    /// Every suite and our history, read at once (a round trip each saved).
    fn read_state(
        &self,
        recognised: Option<&state::Recognised>,
    ) -> Result<(States, history::SuiteHistory), PublishError> {
        let public_key = self.key.public_key();
        let (states, history) = crate::parallel::join(
            || match recognised {
                Some(recognised) => state::read_all_expecting(self.store, &public_key, recognised),
                None => state::read_all(self.store, &public_key),
            },
            || history::read(self.store, &public_key, &self.suite),
        );
        let states = states?;
        // Invariant 1: a history edited by hand is refused before anything is written,
        // not found out after the switch when the change is to be recorded. (After
        // the suites: a repository signed by another key is reported as that.)
        let history = history?;
        Ok((states, history))
    }

    /// The change as the merge takes it, with the .debs it brings (none for an edit).
    fn suite_change<'c>(&self, change: Change<'c>) -> (&'c [IncomingDeb], SuiteChange) {
        match change {
            Change::Add {
                debs,
                phased,
                unphased,
            } => (
                debs,
                SuiteChange::Add {
                    incoming: debs.iter().map(|d| d.entry.clone()).collect(),
                    retention: self.config.retention,
                    phased,
                    unphased: unphased.to_vec(),
                },
            ),
            Change::Edit(edit) => (&[][..], edit.clone()),
        }
    }

    /// The report of a merge, before anything is planned or written.
    fn report_of(&self, created_suite: bool, merged: &Merge) -> PublishReport {
        let refs = |entries: &[PackageEntry]| entries.iter().map(PackageRef::from).collect();
        PublishReport {
            suite: self.suite.clone(),
            created_suite,
            dry_run: self.dry_run,
            added: refs(&merged.added),
            unchanged: refs(&merged.unchanged),
            retired: refs(&merged.retired),
            changed: refs(&merged.changed),
            plan: Vec::new(),
            deleted: Vec::new(),
            history_id: None,
            unfinished: Vec::new(),
            replaced_mutable: Vec::new(),
        }
    }

    /// Warns about each incoming .deb that retention drops at once.
    fn warn_retired_on_arrival(
        &self,
        merged: &Merge,
        debs: &[IncomingDeb],
        listener: &dyn Listener,
    ) {
        let incoming: Vec<&PackageEntry> = debs.iter().map(|d| &d.entry).collect();
        for entry in plan::retired_on_arrival(merged, &incoming) {
            listener.warning(&format!(
                "{} {} is older than the {} newest versions in {} and is not kept (retention)",
                entry.name, entry.version, self.config.retention, self.suite
            ));
        }
    }

    /// The keys the other suites' indices reference, as read.
    fn referenced_by_others(&self, states: &States) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for state in states.values().filter(|s| s.suite != self.suite) {
            keys.extend(plan::referenced_keys(
                &state.suite,
                &state.release,
                &state.packages,
            ));
        }
        keys
    }

    /// The keys every suite's indices reference after the change: the others as
    /// read, ours as `release` and `packages` say.
    fn referenced_after(
        &self,
        states: &States,
        release: &Release,
        packages: &[PackageEntry],
    ) -> BTreeSet<String> {
        let mut keys = self.referenced_by_others(states);
        keys.extend(plan::referenced_keys(&self.suite, release, packages));
        keys
    }

    /// What a change that changed nothing knows: every suite as read.
    fn known_unchanged(
        &self,
        states: &States,
        other_suites: Vec<String>,
        history: history::SuiteHistory,
    ) -> Known {
        let mut referenced = self.referenced_by_others(states);
        if let Some(state) = states.get(&self.suite) {
            referenced.extend(plan::referenced_keys(
                &self.suite,
                &state.release,
                &state.packages,
            ));
        }
        Known {
            referenced,
            other_suites,
            history_head_before: history.records.first().map(|r| r.id),
            history,
            // Nothing is dropped: nothing to look at besides what was pending.
            referenced_before: BTreeSet::new(),
            second_check: None,
        }
    }

    /// Builds the suite's indices from `packages`, dated now, and signs its Release.
    fn sign_indices(&self, packages: &[PackageEntry]) -> Result<Signed, PublishError> {
        let now = (self.now)();
        let date = crate::repo::syntax::rfc2822(now, "UTC");
        let valid_until = self
            .config
            .valid_for_seconds
            .map(|s| crate::repo::syntax::rfc2822(now + s, "UTC"));
        let indices = plan::build_indices(
            &self.suite,
            packages,
            &self.config.release,
            &date,
            valid_until,
        );
        let release_text = indices.release.render();
        let in_release = self.key.clearsign(&release_text, now)?.into_bytes();
        let release_gpg = self
            .key
            .sign_detached_armored(release_text.as_bytes(), now)?
            .into_bytes();
        Ok(Signed {
            indices,
            release_gpg,
            in_release,
        })
    }
}
