//! One pass of a publish up to its switch: read every suite and the bookkeeping,
//! merge the change (`repo::plan::apply`), decide what changed, settle the pool,
//! build and sign the indices, plan the writes, and write them
//! (docs/ARCHITECTURE.md, "The life of a publish"). The first pass starts from what
//! the publish read and decided before the lock ([`HeadStart`]) and confirms it in
//! one round trip; the decisions are `repo::plan`'s, this file reads their inputs and
//! carries out their answers.

use super::state::{self, SuiteState};
use super::switch::Switched;
use super::{
    describe_step, history, lock, Attempt, Change, IncomingDeb, Known, PackageRef, Publish,
    PublishError, PublishReport,
};
use crate::listener::Listener;
use crate::repo::index::{PackageEntry, Release};
use crate::repo::plan::{
    self, CurrentSuite, GcState, Merge, PoolUpload, SuiteChange, SuiteIndices,
};
use foldhash::{HashSet, HashSetExt};
use std::collections::{BTreeMap, BTreeSet};

/// Every published suite, by name, as read and verified.
type States = BTreeMap<String, SuiteState>;

/// The indices of a suite after the change, and Release signed both ways.
pub(super) struct Signed {
    indices: SuiteIndices,
    release_gpg: Vec<u8>,
    in_release: Vec<u8>,
}

/// A change merged into a reading of the suites, before anything is compressed,
/// signed or written.
pub(super) struct Prepared {
    merged: Merge,
    report: PublishReport,
    /// The suite was published before: a merge that changes nothing needs no switch.
    suite_exists: bool,
}

impl Prepared {
    /// Same versions with the same bytes: the repository stays byte-identical.
    pub(super) fn changes_nothing(&self) -> bool {
        plan::nothing_changed(self.suite_exists, &self.merged)
    }

    pub(super) fn into_report(self) -> PublishReport {
        self.report
    }
}

/// What a publish reads before its lock, read-only: every suite
/// (`state::check`, then parsed), their histories and garbage collection's
/// bookkeeping (docs/ARCHITECTURE.md, "The life of a publish").
pub(super) struct Recognition<Suites = state::Recognised> {
    pub(super) suites: Suites,
    /// Our suite's history.
    pub(super) history: history::ReadHistory,
    /// Each other published or configured suite's history.
    pub(super) histories: OtherHistories,
    /// `None` when it could not be read.
    pub(super) gc_state: Option<GcState>,
    /// The lock object was there (or could not be read): someone is publishing, or a
    /// publisher died and left it, and a publish goes through the lock, which waits
    /// for it, takes it over or reports it, as it always has.
    pub(super) lock_seen: bool,
}

/// The histories of the suites besides ours. Only garbage collection reads them (what
/// a rollback may restore stays), so the lock does not wait for them: read before it,
/// they are verified and parsed with the suites while it is taken (a history of
/// 10,000 packages is milliseconds of JSON).
pub(super) enum OtherHistories {
    Read {
        /// Each configured suite's object as read (`None`: there is none).
        read: Vec<(String, HistoryBytes)>,
        /// The published suites that are not configured, verified; `None` when one
        /// could not be read.
        rest: Option<BTreeMap<String, history::SuiteHistory>>,
    },
    /// Verified and parsed; `None` when one could not be read or verified.
    Parsed(Option<BTreeMap<String, history::SuiteHistory>>),
}

impl OtherHistories {
    fn parsed(
        self,
        store: &dyn crate::store::Store,
        key: &crate::sign::PublicKey,
    ) -> Option<BTreeMap<String, history::SuiteHistory>> {
        let (read, rest) = match self {
            OtherHistories::Parsed(parsed) => return parsed,
            OtherHistories::Read { read, rest } => (read, rest),
        };
        let verified = crate::parallel::map(&read, read.len(), |(suite, bytes)| {
            let bytes = bytes.as_ref().ok()?.clone();
            history::verified(store, key, suite, bytes).ok()
        });
        let mut histories = rest?;
        for ((suite, _), history) in read.iter().zip(verified) {
            histories.insert(suite.clone(), history?.history);
        }
        Some(histories)
    }

    /// As verified and parsed ([`Recognition::parsed`]).
    pub(super) fn as_parsed(&self) -> Option<&BTreeMap<String, history::SuiteHistory>> {
        match self {
            OtherHistories::Parsed(parsed) => parsed.as_ref(),
            OtherHistories::Read { .. } => None,
        }
    }
}

impl Recognition<state::Checked> {
    /// The suites checked and parsed; the rest as read. The other suites' histories
    /// only tell whether a change that changes nothing leaves garbage collection
    /// nothing to do ([`Publish::nothing_to_collect`]); a publish that surely changes
    /// something reads them again under the lock, and need not verify them now.
    pub(super) fn suites_parsed(
        self,
        store: &dyn crate::store::Store,
    ) -> Result<Recognition, PublishError> {
        Ok(Recognition {
            suites: self.suites.parsed(store)?,
            history: self.history,
            histories: self.histories,
            gc_state: self.gc_state,
            lock_seen: self.lock_seen,
        })
    }

    /// The suites checked and parsed, the other suites' histories verified and parsed;
    /// the rest as read.
    pub(super) fn parsed(
        self,
        store: &dyn crate::store::Store,
        key: &crate::sign::PublicKey,
    ) -> Result<Recognition, PublishError> {
        let (suites, histories) = crate::parallel::join(
            || self.suites.parsed(store),
            || self.histories.parsed(store, key),
        );
        Ok(Recognition {
            suites: suites?,
            history: self.history,
            histories: OtherHistories::Parsed(histories),
            gc_state: self.gc_state,
            lock_seen: self.lock_seen,
        })
    }
}

/// A history's object as read: `None` when there is none.
type HistoryBytes = Result<Option<Vec<u8>>, crate::store::StoreError>;

/// A configured suite's history as the recognition reads it.
enum HistoryRead {
    Ours(Result<history::ReadHistory, PublishError>),
    Other(HistoryBytes),
}

/// The first attempt's head start: the suites as recognised and the change merged
/// into them, while the lock was taken.
pub(super) struct HeadStart {
    pub(super) recognised: state::Recognised,
    /// Our history as recognised: read again under the lock, the same bytes are taken
    /// as they are.
    pub(super) history: history::ReadHistory,
    pub(super) prepared: Prepared,
    /// The prepared change signed ([`Publish::sign_prepared`]) while the lock was
    /// taken, when the lock's round trip left time for it.
    pub(super) signed: Option<Result<Option<Signed>, PublishError>>,
}

/// The bookkeeping an attempt reads alongside the suites.
struct Bookkeeping {
    /// Our suite's history.
    history: history::SuiteHistory,
    /// The other published suites' histories, for garbage collection (what a rollback
    /// may restore stays); `None` when one could not be read: collection reads them
    /// again and reports why.
    other_histories: Option<BTreeMap<String, history::SuiteHistory>>,
    /// Garbage collection's bookkeeping (under a lock only: without one it is read
    /// after the switch).
    gc_state: Option<Result<GcState, PublishError>>,
}

/// An attempt's reading of the repository, with the change merged into it, the pool
/// settled and the indices signed: everything before the writes of by-hash copies and
/// indices.
struct Settled {
    states: States,
    bookkeeping: Bookkeeping,
    prepared: Prepared,
    /// `None` when the change changes nothing.
    signed: Option<Signed>,
    /// The pool files this publish wrote.
    pool: Vec<PoolUpload>,
    /// The by-hash copies this publish wrote (the first attempt's, as soon as it
    /// signed): content-addressed, whatever the merge writes at last.
    by_hash_written: HashSet<String>,
}

impl Publish<'_> {
    /// Reads what the publish needs before its lock, at once: every suite, every
    /// history, and garbage collection's bookkeeping. Our own history is checked here:
    /// one edited by hand is refused before anything is written (invariant 1).
    pub(super) fn recognise(&self) -> Result<Recognition<state::Checked>, PublishError> {
        let public_key = self.key.public_key();
        let configured = &self.config.suites;
        let ((suites, histories), (gc_state, lock_seen)) = crate::parallel::join(
            || {
                crate::parallel::join(
                    || {
                        state::check(
                            self.store,
                            &public_key,
                            configured,
                            &self.config.release.architectures,
                            Some(&self.suite),
                        )
                    },
                    || {
                        // Ours verified now, the others' only read (`OtherHistories`).
                        crate::parallel::map(configured, configured.len(), |suite| {
                            match *suite == self.suite {
                                true => HistoryRead::Ours(history::read_again(
                                    self.store,
                                    &public_key,
                                    suite,
                                    None,
                                )),
                                false => HistoryRead::Other(
                                    self.store.get(&crate::repo::layout::history_key(suite)),
                                ),
                            }
                        })
                    },
                )
            },
            || {
                crate::parallel::join(
                    || self.read_gc_state().ok(),
                    || !matches!(self.store.get(crate::repo::layout::LOCK_KEY), Ok(None)),
                )
            },
        );
        // After the suites: a repository signed by another key is reported as that.
        let suites = suites?;
        let mut ours = None;
        let mut read = Vec::new();
        for (suite, history) in configured.iter().zip(histories) {
            match history {
                HistoryRead::Ours(history) => ours = Some(history?),
                HistoryRead::Other(bytes) => read.push((suite.clone(), bytes)),
            }
        }
        let history = match ours {
            Some(history) => history,
            None => history::read_again(self.store, &public_key, &self.suite, None)?,
        };
        // A published suite that is not configured (rare): its history now.
        let rest: Vec<&String> = suites
            .names()
            .filter(|suite| **suite != self.suite && !configured.contains(*suite))
            .collect();
        let rest = self.read_histories(&rest);
        Ok(Recognition {
            suites,
            history,
            histories: OtherHistories::Read { read, rest },
            gc_state,
            lock_seen,
        })
    }

    /// Refuses to write our suite with an origin other than the one it is published
    /// with, unless told to (`change_origin`): servers match the origin (their
    /// unattended-upgrades, rollback pin, keyring and fleet packages), so a new one,
    /// say from a renamed project, would leave them behind without an error.
    pub(super) fn check_origin(&self, checked: &state::Checked) -> Result<(), PublishError> {
        let configured = &self.config.release.origin;
        match checked.origin(&self.suite) {
            Some(published) if published != configured && !self.change_origin => {
                Err(PublishError::OriginChanged {
                    store: self.store.describe(),
                    suite: self.suite.clone(),
                    published: published.to_owned(),
                    configured: configured.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Merges the change into `states`: the report, and a warning for each incoming
    /// .deb that retention drops at once. Pure but for the warnings.
    pub(super) fn prepare(
        &self,
        change: Change<'_>,
        states: &States,
        listener: &dyn Listener,
    ) -> Result<Prepared, PublishError> {
        let (debs, suite_change) = self.suite_change(change);
        let current = states.get(&self.suite);
        let merged = plan::apply(
            current.map(|s| s.packages.as_slice()).unwrap_or(&[]),
            &suite_change,
        )
        .map_err(|e| PublishError::Merge(Box::new(e)))?;
        let report = self.report_of(current.is_none(), &merged);
        self.warn_retired_on_arrival(&merged, debs, listener);
        Ok(Prepared {
            merged,
            report,
            suite_exists: current.is_some(),
        })
    }

    /// Whether `change` surely adds to the suite, told from the text of its Packages
    /// before they are parsed: a .deb whose file no index of the suite names. Then the
    /// parse and the merge go on while the lock is taken.
    pub(super) fn adds_before_parsing(&self, change: Change<'_>, checked: &state::Checked) -> bool {
        let Change::Add { debs, .. } = change else {
            return false;
        };
        debs.iter()
            .any(|deb| !checked.may_list(&self.suite, &deb.entry.filename))
    }

    /// Whether `change` adds a .deb that the suite, as recognised, does not list: then
    /// it changes the suite, whatever the merge decides besides.
    pub(super) fn adds_to_the_suite(&self, change: Change<'_>, recognition: &Recognition) -> bool {
        let Change::Add { debs, .. } = change else {
            return false;
        };
        let Some(current) = recognition.suites.states.get(&self.suite) else {
            return true;
        };
        let listed: HashSet<(&str, &str, &str)> =
            current.packages.iter().map(PackageEntry::id).collect();
        debs.iter().any(|deb| !listed.contains(&deb.entry.id()))
    }

    /// Signs the indices of a prepared change, unless it changes nothing.
    pub(super) fn sign_prepared(
        &self,
        prepared: &Prepared,
    ) -> Result<Option<Signed>, PublishError> {
        if prepared.changes_nothing() {
            return Ok(None);
        }
        self.sign_indices(&prepared.merged.packages).map(Some)
    }

    /// A dry run: the change merged into the suites as recognised, the pool checked
    /// (nothing uploaded), the indices signed and the writes planned, none made.
    pub(super) fn dry_run_report(
        &self,
        change: Change<'_>,
        recognised: &state::Recognised,
        listener: &dyn Listener,
    ) -> Result<PublishReport, PublishError> {
        let (debs, _) = self.suite_change(change);
        let prepared = self.prepare(change, &recognised.states, listener)?;
        if prepared.changes_nothing() {
            return Ok(prepared.into_report());
        }
        let pool = self.missing_pool(&prepared.merged, debs, &recognised.states, listener)?;
        let signed = self.sign_indices(&prepared.merged.packages)?;
        Ok(self.plan_writes(prepared, pool, &signed).1)
    }

    /// The writes of a prepared change (`repo::plan::publish_plan`), and its report
    /// with them as its plan.
    fn plan_writes(
        &self,
        prepared: Prepared,
        pool: Vec<PoolUpload>,
        signed: &Signed,
    ) -> (plan::PublishPlan, PublishReport) {
        let Prepared {
            merged, mut report, ..
        } = prepared;
        let publish_plan = plan::publish_plan(
            &self.suite,
            merged,
            pool,
            &signed.indices,
            signed.release_gpg.clone(),
            signed.in_release.clone(),
        );
        report.plan = publish_plan.steps.iter().map(describe_step).collect();
        (publish_plan, report)
    }

    /// One pass: reads (or, the first time, confirms what the head start read),
    /// settles the pool, and writes up to the switch.
    pub(super) fn attempt(
        &self,
        change: Change<'_>,
        held: Option<&lock::HeldLock>,
        head_start: Option<HeadStart>,
        listener: &dyn Listener,
    ) -> Result<Attempt, PublishError> {
        let Settled {
            states,
            bookkeeping,
            prepared,
            signed,
            pool,
            by_hash_written,
        } = match head_start {
            Some(head_start) => self.confirm(change, held, head_start, listener)?,
            None => self.read_afresh(change, held, listener)?,
        };
        let current = states.get(&self.suite);
        let other_suites: Vec<String> = states
            .keys()
            .filter(|s| **s != self.suite)
            .cloned()
            .collect();
        let Bookkeeping {
            history,
            other_histories,
            gc_state,
        } = bookkeeping;
        let Some(signed) = signed else {
            let known = self.known_unchanged(&states, other_suites, other_histories, history);
            return Ok(Attempt::Done {
                report: prepared.report,
                replaced: None,
                known,
                gc_state,
            });
        };
        let (publish_plan, mut report) = self.plan_writes(prepared, pool, &signed);
        report.replaced_mutable =
            plan::replaced_mutable_keys(&publish_plan, current.map(|state| &state.release));
        // What the steps after the switch need to know, and the history they write
        // (signed), are worked out while the writes go: tens of milliseconds at 10,000
        // packages, keys collected into sets and a history that lists them.
        let (switched, (replaced, known)) = crate::parallel::join_yielding(
            || self.write_and_switch(&publish_plan, current, held, &by_hash_written, listener),
            || {
                let packages = &publish_plan.merge.packages;
                let current_suite = current.map(|state| CurrentSuite {
                    release: &state.release,
                    packages: &state.packages,
                });
                let replaced = plan::replaced(current_suite, packages);
                let record = self.history_record(&report, replaced.clone(), &history);
                let next = history::appended(history.clone(), record, self.config.history);
                let next_signed = history::signed(self.key, &next, (self.now)());
                let referenced = self.referenced_after(&states, &signed.indices.release, packages);
                let history_head_before = history.records.first().map(|r| r.id);
                let gc_referenced = other_histories.as_ref().map(|others| {
                    self.referenced_by(&referenced, &next, history_head_before, others)
                });
                let known = Known {
                    referenced,
                    gc_referenced,
                    other_suites,
                    other_histories,
                    referenced_before: plan::referenced_before(
                        &self.suite,
                        current_suite,
                        history::referenced_keys(std::slice::from_ref(&history)),
                    ),
                    history_head_before,
                    history,
                    second_check: None,
                    next_history: Some((next, next_signed)),
                };
                (replaced, known)
            },
        );
        let second_check = match switched? {
            Switched::Raced => return Ok(Attempt::Raced),
            Switched::Done { second_check } => second_check,
        };
        // Every suite as read and the plan, 20,000 index entries at 10,000 packages:
        // freeing them takes milliseconds that the history's write need not wait for.
        crate::parallel::drop_aside((states, publish_plan, signed));
        Ok(Attempt::Done {
            report,
            replaced: Some(replaced),
            known: Known {
                second_check,
                ..known
            },
            gc_state,
        })
    }

    /// The first read under the lock, one round trip: the suites confirmed as
    /// recognised, the bookkeeping, and alongside them the pool files the head start's
    /// merge calls for, created where absent (the lock is held, or the store cannot
    /// lock and the pool is checked as before), and its indices compressed and signed,
    /// their by-hash copies written as soon as they are. When a suite changed since
    /// the recognition, the change is merged again into what is there now.
    fn confirm(
        &self,
        change: Change<'_>,
        held: Option<&lock::HeldLock>,
        head_start: HeadStart,
        listener: &dyn Listener,
    ) -> Result<Settled, PublishError> {
        let HeadStart {
            recognised,
            history,
            prepared,
            signed,
        } = head_start;
        let (debs, _) = self.suite_change(change);
        let public_key = self.key.public_key();
        let suites: Vec<String> = recognised.states.keys().cloned().collect();
        let current = recognised
            .states
            .get(&self.suite)
            .map(|state| &state.release);
        let (signed_copies, copies_to_write) = std::sync::mpsc::channel();
        // The signatures compute while the requests go, unless they did while the
        // lock was taken: on a thread that yields to the requests' threads, so none
        // waits for a core to be sent. The by-hash copies of the indices are sent back
        // to go out in this round trip too.
        let ((((confirmation, bookkeeping), pool), by_hash_written), signed) =
            crate::parallel::join_yielding(
                || {
                    crate::parallel::join(
                        || {
                            crate::parallel::join(
                                || {
                                    crate::parallel::join(
                                        || {
                                            state::read_all_expecting(
                                                self.store,
                                                &public_key,
                                                &recognised,
                                            )
                                        },
                                        || self.read_bookkeeping(&suites, held, Some(history)),
                                    )
                                },
                                || match prepared.changes_nothing() {
                                    true => Ok(Vec::new()),
                                    false => self.settle_pool(
                                        &prepared.merged,
                                        debs,
                                        &recognised.states,
                                        &HashSet::new(),
                                        listener,
                                    ),
                                },
                            )
                        },
                        || self.write_by_hash_once_signed(copies_to_write, current),
                    )
                },
                || {
                    let signed_copies = signed_copies;
                    let signed = signed.unwrap_or_else(|| self.sign_prepared(&prepared));
                    if let Ok(Some(signed)) = &signed {
                        let _ =
                            signed_copies.send(plan::by_hash_copies(&self.suite, &signed.indices));
                    }
                    signed
                },
            );
        let (states, as_recognised) = recognised.confirmed(confirmation?);
        let mut bookkeeping = bookkeeping?;
        let pool = pool?;
        let signed = signed?;
        let by_hash_written = by_hash_written?;
        self.complete_histories(&mut bookkeeping, &states);
        if as_recognised {
            return Ok(Settled {
                states,
                bookkeeping,
                prepared,
                signed,
                pool,
                by_hash_written,
            });
        }
        let written: HashSet<String> = pool.into_iter().map(|upload| upload.key).collect();
        let settled = self.settle(change, states, bookkeeping, &written, listener)?;
        Ok(Settled {
            by_hash_written,
            ..settled
        })
    }

    /// Writes the by-hash copies of the signed indices as soon as they come (none when
    /// the change signs nothing): immutable and content-addressed, apt sees them only
    /// once an InRelease lists them. `current`: our suite's Release as recognised,
    /// whose copies are there. The keys written.
    fn write_by_hash_once_signed(
        &self,
        signed_copies: std::sync::mpsc::Receiver<Vec<(String, std::sync::Arc<[u8]>)>>,
        current: Option<&Release>,
    ) -> Result<HashSet<String>, PublishError> {
        let Ok(copies) = signed_copies.recv() else {
            return Ok(HashSet::new());
        };
        let to_write = plan::by_hash_to_write(
            &self.suite,
            copies.iter().map(|(key, bytes)| (key.as_str(), &bytes[..])),
            current,
            &HashSet::new(),
        );
        self.put_all(&to_write)?;
        Ok(to_write
            .into_iter()
            .map(|(key, _)| key.to_owned())
            .collect())
    }

    /// A later attempt: every suite and the bookkeeping read afresh.
    fn read_afresh(
        &self,
        change: Change<'_>,
        held: Option<&lock::HeldLock>,
        listener: &dyn Listener,
    ) -> Result<Settled, PublishError> {
        let public_key = self.key.public_key();
        let (states, bookkeeping) = crate::parallel::join(
            || state::read_all(self.store, &public_key),
            || self.read_bookkeeping(&[], held, None),
        );
        let states = states?;
        let mut bookkeeping = bookkeeping?;
        self.complete_histories(&mut bookkeeping, &states);
        self.settle(change, states, bookkeeping, &HashSet::new(), listener)
    }

    /// Merges, settles the pool and signs, from `states` as read. `written`: the pool
    /// files this publish already wrote.
    fn settle(
        &self,
        change: Change<'_>,
        states: States,
        bookkeeping: Bookkeeping,
        written: &HashSet<String>,
        listener: &dyn Listener,
    ) -> Result<Settled, PublishError> {
        let (debs, _) = self.suite_change(change);
        let prepared = self.prepare(change, &states, listener)?;
        if prepared.changes_nothing() {
            return Ok(Settled {
                states,
                bookkeeping,
                prepared,
                signed: None,
                pool: Vec::new(),
                by_hash_written: HashSet::new(),
            });
        }
        let (pool, signed) = crate::parallel::join(
            || self.settle_pool(&prepared.merged, debs, &states, written, listener),
            || self.sign_indices(&prepared.merged.packages),
        );
        Ok(Settled {
            pool: pool?,
            signed: Some(signed?),
            states,
            bookkeeping,
            prepared,
            by_hash_written: HashSet::new(),
        })
    }

    /// Our history, the histories of `suites` (the other published ones), and with a
    /// lock garbage collection's bookkeeping, at once. Invariant 1: a history edited
    /// by hand is refused before anything is written, not found out after the switch
    /// when the change is to be recorded.
    /// `history`: ours as read before, taken as it is when its bytes are unchanged.
    fn read_bookkeeping(
        &self,
        suites: &[String],
        held: Option<&lock::HeldLock>,
        history: Option<history::ReadHistory>,
    ) -> Result<Bookkeeping, PublishError> {
        let public_key = self.key.public_key();
        let others: Vec<&String> = suites.iter().filter(|s| **s != self.suite).collect();
        let ((history, other_histories), gc_state) = crate::parallel::join(
            || {
                crate::parallel::join(
                    || {
                        history::read_again(self.store, &public_key, &self.suite, history)
                            .map(|read| read.history)
                    },
                    || self.read_histories(&others),
                )
            },
            || held.map(|_| self.read_gc_state()),
        );
        Ok(Bookkeeping {
            history: history?,
            other_histories,
            gc_state,
        })
    }

    /// Reads the histories of the published suites that the bookkeeping lacks (a
    /// suite published since the recognition; every other one on a later attempt).
    fn complete_histories(&self, bookkeeping: &mut Bookkeeping, states: &States) {
        let Some(mut read) = bookkeeping.other_histories.take() else {
            return;
        };
        read.retain(|suite, _| states.contains_key(suite));
        let missing: Vec<&String> = states
            .keys()
            .filter(|suite| **suite != self.suite && !read.contains_key(*suite))
            .collect();
        bookkeeping.other_histories = self.read_histories(&missing).map(|more| {
            read.extend(more);
            read
        });
    }

    /// The histories of `suites`, read at once; `None` when one could not be read
    /// (whoever needs them reads again and says why).
    fn read_histories(
        &self,
        suites: &[&String],
    ) -> Option<BTreeMap<String, history::SuiteHistory>> {
        let public_key = self.key.public_key();
        let read = crate::parallel::map(suites, suites.len(), |suite| {
            history::read(self.store, &public_key, suite)
        });
        suites
            .iter()
            .zip(read)
            .map(|(suite, history)| history.ok().map(|history| ((*suite).clone(), history)))
            .collect()
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
        other_histories: Option<BTreeMap<String, history::SuiteHistory>>,
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
            gc_referenced: None,
            other_suites,
            other_histories,
            history_head_before: history.records.first().map(|r| r.id),
            history,
            // Nothing is dropped: nothing to look at besides what was pending.
            referenced_before: BTreeSet::new(),
            second_check: None,
            next_history: None,
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
