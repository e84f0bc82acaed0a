//! Runs the pure publish plan against a store, keeping the publish invariants of
//! docs/ARCHITECTURE.md: validate everything first (1); never change a pool object
//! (2); write pool, by-hash, canonical indices, Release.gpg, Release and InRelease
//! last, and delete old objects only after a grace period (3); take the lock and
//! re-read InRelease just before the switch (4); verify the remote InRelease with our
//! key (5).
//!
//! This file owns the publish's types (`Publish`, `Change`, `PublishReport`,
//! `PublishError`) and its outer loop: recognise the repository, take the lock, run
//! attempts until one switches, then the steps after the switch. The steps live in
//! the files beside it (docs/ARCHITECTURE.md, "The life of a publish"): [`inputs`]
//! what is published, `attempt` one pass up to the switch, `pool` the pool checks and
//! uploads, `switch` the writes up to and including InRelease, `after` what follows
//! the switch, [`history`] its record, `keyring` the keys beside dists/, `gc` garbage
//! collection, [`lock`] the lock and its renewal, [`state`] reading the suites,
//! [`probe`] the conditional-write probe, [`verify`] `verify` and `list`.

mod acl;
mod after;
mod attempt;
mod gc;
pub mod history;
mod inputs;
mod keyring;
pub mod lock;
mod pool;
pub mod probe;
pub mod state;
mod switch;
pub mod verify;

pub use inputs::{debs_in, promotion, read_debs, IncomingDeb};

use crate::config::RepoConfig;
use crate::debfile::DebFileError;
use crate::listener::Listener;
use crate::repo::index::{IndexError, PackageEntry};
use crate::repo::layout;
use crate::repo::plan::{MergeError, PoolUpload, Replaced, Step, SuiteChange};
use crate::sign::{RepoKeys, SignError, VerifyError};
use crate::store::{Caching, ConditionalWrites, PutOptions, Store, StoreError};
use lock::{LockInfo, LockOptions};
use std::collections::BTreeSet;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {cause}", path.display())]
    Deb { path: PathBuf, cause: DebFileError },
    #[error("{}: {cause}", path.display())]
    Control { path: PathBuf, cause: IndexError },
    #[error("cannot read {}: {cause}", path.display())]
    ReadDeb {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("suite {0}")]
    InvalidSuite(String),
    #[error(
        "{store}: dists/{suite}/InRelease has Origin: {published}, and the settings now say \
         {configured:?} (`origin` in [workspace.metadata.speedy.repo]; by default `name`, \
         capitalised). Servers follow a repository by its origin: their unattended-upgrades, \
         their rollback pin and the keyring and fleet packages named after it would stop \
         following this suite, without an error. To keep them following, set \
         origin = {published:?}; to change it, run again with --change-origin, then run \
         `cargo speedy server-setup` again on every server of the suite"
    )]
    OriginChanged {
        store: String,
        suite: String,
        published: String,
        configured: String,
    },
    #[error("unknown suite {suite:?}: the configured suites are {} (`suites` in [workspace.metadata.speedy.repo])", configured.join(", "))]
    UnknownSuite {
        suite: String,
        configured: Vec<String>,
    },
    #[error(
        "{store}: {key} is not signed by the configured key {expected}: {cause}. \
         Refusing to publish into a repository signed by another key; configure the key it was made with"
    )]
    RemoteSignature {
        store: String,
        key: String,
        expected: String,
        cause: Box<VerifyError>,
    },
    #[error("{store}: {key}: {reason}. Run `cargo speedy verify` and repair or restore the repository before publishing")]
    RemoteCorrupt {
        store: String,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Merge(Box<MergeError>),
    #[error("{store}: {key} already exists with different contents ({reason}); pool files never change: bump the version or the Debian revision")]
    PoolConflict {
        store: String,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(
        "{store} is locked by {} (pid {} on {}) since {}; its lease runs {expires_in} s more. \
         Wait with --wait-for-lock SECONDS (a publisher that died leaves a lease nobody renews, \
         taken over when it runs out), or if that publish is dead, run again with --break-lock",
        holder.owner, holder.pid, holder.host, crate::repo::syntax::rfc2822(holder.created, "UTC")
    )]
    Locked {
        store: String,
        holder: Box<LockInfo>,
        expires_in: u64,
    },
    #[error(
        "{store}: .speedy/lock is an unreadable lock object (not written by cargo speedy); \
         if no publish is running, run again with --break-lock"
    )]
    LockUnreadable { store: String },
    #[error("{store}: the lock was taken over by someone else while publishing (its lease ran out, or --break-lock); nothing was switched, run again")]
    LockLost { store: String },
    #[error("{store}: the suite {suite} kept changing under this publish (another publisher without a lock?); run again")]
    ConcurrentChanges { store: String, suite: String },
    #[error(
        "{store}: {key} was changed outside cargo speedy ({reason}); history is refused, never \
         restored: run `cargo speedy verify`, and restore that object from a backup or delete it \
         to start the history afresh"
    )]
    HistoryTampered {
        store: String,
        key: String,
        reason: String,
    },
    #[error("{store}: history record {id} cannot be restored: {key} is {reason}")]
    HistoryStateGone {
        store: String,
        id: u64,
        key: String,
        reason: String,
    },
    #[error("the history of suite {suite} keeps no state after change {id}{} (`cargo speedy history --suite {suite}` lists the changes)",
        if known.is_empty() { String::from(": it has no change yet") } else { format!("; it keeps the states after changes {}", known.join(", ")) })]
    UnknownHistoryId {
        suite: String,
        id: u64,
        known: Vec<String>,
    },
    #[error("suite {suite} has no history to roll back to: no change of it has been recorded yet")]
    NoHistory { suite: String },
    #[error("{store}: {key} is listed by the restored state but is not in the pool any more; it cannot be restored")]
    PoolMissing { store: String, key: String },
    #[error("no .deb files to publish: build them first (cargo speedy build) or name them")]
    NothingToPublish,
    #[error("suite {suite} has no packages to promote (publish to it first)")]
    EmptySuite { suite: String },
    #[error("package `{package}` is not in suite {suite}")]
    NotInSuite { suite: String, package: String },
}

/// How an object is stored, from what its key holds: pool files and by-hash copies
/// are immutable (long cache lifetimes), bookkeeping is private.
pub fn put_options(key: &str) -> PutOptions {
    PutOptions {
        content_type: layout::content_type(key),
        caching: if layout::is_immutable(key) {
            Caching::Immutable
        } else {
            Caching::Short
        },
        public: !layout::is_private(key),
    }
}

/// A package named in a report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PackageRef {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Its `Phased-Update-Percentage`, when it is phased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<u8>,
}

impl From<&PackageEntry> for PackageRef {
    fn from(entry: &PackageEntry) -> Self {
        PackageRef {
            name: entry.name.clone(),
            version: entry.version.clone(),
            architecture: entry.architecture.clone(),
            phase: entry.phase(),
        }
    }
}

/// What a publish did, or with `dry_run`, would do.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PublishReport {
    pub suite: String,
    /// The suite had no InRelease before this publish: servers can start using it
    /// now (the CLI then says how, at length).
    pub created_suite: bool,
    pub dry_run: bool,
    pub added: Vec<PackageRef>,
    pub unchanged: Vec<PackageRef>,
    pub retired: Vec<PackageRef>,
    /// Packages that stay with another index entry (a new phase).
    pub changed: Vec<PackageRef>,
    /// One line per step of the plan: "upload pool/...", "write ...", "switch ...".
    pub plan: Vec<String>,
    /// Objects deleted after their grace period.
    pub deleted: Vec<String>,
    /// The history record of this change (none for a dry run or no change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_id: Option<u64>,
    /// Steps after the switch that failed (the history record, keyring, garbage
    /// collection, the check that the switch stuck, releasing the lock): the packages
    /// are published, and the next publish finishes these (docs/ARCHITECTURE.md,
    /// "Retries on a flaky network").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unfinished: Vec<String>,
    /// The public objects this publish replaced with other bytes (InRelease, Release,
    /// Release.gpg, changed Packages files, a rewritten keyring): what a CDN in front
    /// must purge (docs/ARCHITECTURE.md, "CDN purge"). Pool files and by-hash copies
    /// are immutable and never among them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replaced_mutable: Vec<String>,
}

/// What a publish does to its suite.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Adds .debs, or entries promoted from another suite; new ones are phased at
    /// `phased` percent when given, except the packages named in `unphased`.
    Add {
        debs: &'a [IncomingDeb],
        phased: Option<u8>,
        unphased: &'a [String],
    },
    /// Restores, withdraws or re-phases entries whose bytes are in the pool already.
    Edit(&'a SuiteChange),
}

/// The parts of a publish that do not change between attempts.
pub struct Publish<'a> {
    pub store: &'a dyn Store,
    pub key: &'a RepoKeys,
    pub suite: String,
    pub config: &'a RepoConfig,
    pub lock: LockOptions,
    pub dry_run: bool,
    /// Publish with the configured origin even when the suite has another
    /// (`--change-origin`): otherwise that is refused, since servers match the origin.
    pub change_origin: bool,
    /// The command, for the history: `publish`, `release`, `rollback`, ...
    pub command: &'a str,
    /// The clock, injectable so tests can step over the grace period.
    pub now: &'a (dyn Fn() -> u64 + Sync),
}

/// How one pass of a publish ended.
// One value per pass: boxing the report would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    /// The suite is switched (or, for a dry run or no change, needs no switch).
    Done {
        report: PublishReport,
        /// The state the switch replaced, when it switched.
        replaced: Option<Replaced>,
        known: Known,
        /// Garbage collection's bookkeeping, read under the lock with the suites
        /// (`None` without a lock: it is read after the switch then).
        gc_state: Option<Result<crate::repo::plan::GcState, PublishError>>,
    },
    /// InRelease changed since it was read: merge again.
    Raced,
}

/// What an attempt read and wrote, so that the steps after the switch need not read
/// it again while the lock keeps it true
/// (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").
struct Known {
    /// Pool files and by-hash copies that the suites' indices reference after this
    /// attempt (ours as switched to, the others as read).
    referenced: BTreeSet<String>,
    /// The suites besides ours.
    other_suites: Vec<String>,
    /// Their histories, read under the lock before the switch; `None` when one could
    /// not be read (garbage collection reads them again and reports why).
    other_histories: Option<std::collections::BTreeMap<String, history::SuiteHistory>>,
    /// Our suite's history as read before the switch.
    history: history::SuiteHistory,
    /// What garbage collection counts as referenced after the switch, worked out
    /// before it from `next_history` (`Publish::referenced_by`); `None` when the
    /// other suites' histories were not read.
    gc_referenced: Option<gc::Referenced>,
    /// What our suite and its history referenced before this attempt: garbage
    /// collection without a sweep looks only at what of it is referenced no more.
    referenced_before: BTreeSet<String>,
    /// Our suite's newest history record before this attempt.
    history_head_before: Option<u64>,
    /// Whether the store recorded a later second for the switched InRelease than
    /// for the one it replaced: asked after the switch.
    second_check: Option<switch::SecondCheck>,
    /// Our history with the record of this attempt's switch, and its signed bytes,
    /// made while the writes went: under a lock ours throughout, what is written
    /// after the switch.
    next_history: Option<(history::SuiteHistory, Result<Vec<u8>, PublishError>)>,
}

/// What [`Publish::read_early`] read, for [`Publish::apply_read`].
pub struct EarlyReading {
    recognition: Result<attempt::Recognition<state::Checked>, PublishError>,
    recorded: Result<Option<ConditionalWrites>, StoreError>,
}

/// How often a publish re-merges when InRelease changed under it.
const ATTEMPTS: usize = 8;

/// How old the indices signed while the lock was taken may be once it is: their
/// `Date:` (and `Valid-Until:`) is the second they were signed.
const SIGNED_WHILE_LOCKING_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Records a step after the switch that failed: the publish still succeeds.
fn unfinished(report: &mut PublishReport, listener: &dyn Listener, what: String) {
    listener.warning(&format!(
        "published, but not finished: {what}; the next publish finishes it"
    ));
    report.unfinished.push(what);
}

fn describe_step(step: &Step) -> String {
    match step {
        Step::Pool(PoolUpload { key, size, .. }) => format!("upload {key} ({size} bytes)"),
        Step::ByHash { key, bytes } => format!("upload {key} ({} bytes)", bytes.len()),
        Step::Replace { key, bytes } => format!("write {key} ({} bytes)", bytes.len()),
        Step::InRelease { key, .. } => format!("switch {key}"),
    }
}

impl Publish<'_> {
    /// Adds `debs` to the suite.
    pub fn run(
        &self,
        debs: &[IncomingDeb],
        listener: &dyn Listener,
    ) -> Result<PublishReport, PublishError> {
        self.apply(
            Change::Add {
                debs,
                phased: None,
                unphased: &[],
            },
            listener,
        )
    }

    /// Changes the suite through the publish protocol, and records the change.
    pub fn apply(
        &self,
        change: Change<'_>,
        listener: &dyn Listener,
    ) -> Result<PublishReport, PublishError> {
        self.apply_read(change, None, listener)
    }

    /// What a publish reads before its lock (the recognition and the probe's record),
    /// read while the rest of the command gets ready: read-only, so a reading that
    /// turns out to be for other settings is simply dropped.
    pub fn read_early(&self) -> EarlyReading {
        let now = (self.now)();
        let (recognition, recorded) =
            crate::parallel::join(|| self.recognise(), || probe::read_record(self.store, now));
        EarlyReading {
            recognition,
            recorded,
        }
    }

    /// [`Publish::apply`], starting from `early` when given: what
    /// [`Publish::read_early`] read with the same store, key, suite and settings.
    pub fn apply_read(
        &self,
        change: Change<'_>,
        early: Option<EarlyReading>,
        listener: &dyn Listener,
    ) -> Result<PublishReport, PublishError> {
        layout::check_suite(&self.suite).map_err(PublishError::InvalidSuite)?;
        if !self.config.suites.contains(&self.suite) {
            return Err(PublishError::UnknownSuite {
                suite: self.suite.clone(),
                configured: self.config.suites.clone(),
            });
        }
        // Nothing is written, not even the lock or the probe's objects, into what is
        // not our repository. The probe's record is read alongside (a read writes
        // nothing); the probe itself, which writes, waits for the answer. So do the
        // histories, garbage collection's bookkeeping and the lock object: a change
        // that changes nothing, with nothing to collect and no lock to wait for, take
        // over or break, is decided here, without the lock
        // (docs/ARCHITECTURE.md, "The life of a publish").
        let now = (self.now)();
        let (recognition, recorded) = match early {
            Some(early) => (early.recognition, Some(early.recorded)),
            None => crate::parallel::join(
                || self.recognise(),
                || (!self.dry_run).then(|| probe::read_record(self.store, now)),
            ),
        };
        let recognition = recognition?;
        self.check_origin(&recognition.suites)?;
        if self.dry_run {
            let recognition = recognition.parsed(self.store, &self.key.public_key())?;
            return self.dry_run_report(change, &recognition.suites, listener);
        }
        probe::learn_from(self.store, recorded.transpose()?.flatten(), now)?;
        let lock_answered = std::sync::atomic::AtomicBool::new(false);
        let acquire = || {
            let held = lock::acquire(self.store, self.lock, self.now, &|what| {
                listener.warning(what)
            });
            lock_answered.store(true, std::sync::atomic::Ordering::SeqCst);
            held
        };
        // The indices are compressed and signed while the lock's round trip still
        // goes, on a remote store: the first read under the lock then writes their
        // by-hash copies at once. When the lock answered first (a store close by),
        // they are left for that read, to compute while it goes.
        let sign_while_locking = |prepared: &attempt::Prepared| {
            (!lock_answered.load(std::sync::atomic::Ordering::SeqCst))
                .then(|| (self.sign_prepared(prepared), std::time::Instant::now()))
        };
        // Not a yielding join: until `while_renewing` starts, the lease taken here is
        // not renewed, and under another process's load a yielding parse would keep it
        // that way longer.
        // A change that adds what the suite does not list changes something: it is
        // parsed and merged while the lock is taken (an error then releases the lock,
        // having written nothing else). Told from the text when it can be; any other
        // change is merged first, to see whether it changes anything at all.
        let (held, prepared) = if self.adds_before_parsing(change, &recognition.suites) {
            crate::parallel::join(acquire, || {
                let recognition = recognition.suites_parsed(self.store)?;
                let prepared = self.prepare(change, &recognition.suites.states, listener)?;
                let signed = sign_while_locking(&prepared);
                Ok((recognition, prepared, signed))
            })
        } else {
            let recognition = recognition.parsed(self.store, &self.key.public_key())?;
            if self.adds_to_the_suite(change, &recognition) {
                let (held, prepared) = crate::parallel::join(acquire, || {
                    let prepared = self.prepare(change, &recognition.suites.states, listener)?;
                    let signed = sign_while_locking(&prepared);
                    Ok((prepared, signed))
                });
                (
                    held,
                    prepared.map(|(prepared, signed)| (recognition, prepared, signed)),
                )
            } else {
                let prepared = self.prepare(change, &recognition.suites.states, listener)?;
                if prepared.changes_nothing()
                    && !recognition.lock_seen
                    && !self.lock.break_lock
                    && self.nothing_to_collect(&recognition)
                {
                    return Ok(prepared.into_report());
                }
                let (held, signed) =
                    crate::parallel::join(acquire, || sign_while_locking(&prepared));
                (held, Ok((recognition, prepared, signed)))
            }
        };
        let held = held?;
        let (recognition, prepared, signed) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                if let Some(held) = &held {
                    // Nothing else was written; the lease runs out if this fails.
                    let _ = held.release(self.store);
                }
                return Err(error);
            }
        };
        // Signed long before the lock was had (it had to be waited for): the indices
        // are dated again when signed.
        let signed = signed
            .filter(|(_, signed_at)| signed_at.elapsed() <= SIGNED_WHILE_LOCKING_FOR)
            .map(|(signed, _)| signed);
        let head_start = attempt::HeadStart {
            recognised: recognition.suites,
            history: recognition.history,
            prepared,
            signed,
        };
        let Some(held) = held else {
            listener.warning(&format!(
                "{} does not support conditional writes: publishing without a lock, relying on re-reading InRelease before and after the switch",
                self.store.describe()
            ));
            return Ok(self.publish_locked(change, None, head_start, listener)?.0);
        };
        let result = held.while_renewing(self.store, self.now, listener, || {
            self.publish_locked(change, Some(&held), head_start, listener)
        });
        let (result, read_for_release) = match result {
            Ok((report, read)) => (Ok(report), read),
            Err(error) => (Err(error), None),
        };
        let released = match read_for_release {
            Some(ours) => held.release_as_read(self.store, ours),
            None => held.release(self.store),
        };
        let mut report = result?;
        if let Err(error) = released {
            // After the switch: the publish happened. The lease runs out on its own,
            // and the next publish from this host takes the lock over once this
            // process is gone.
            unfinished(
                &mut report,
                listener,
                format!("releasing the lock: {error} (it expires with its lease)"),
            );
        }
        Ok(report)
    }

    /// Runs attempts until one switches (or needs no switch), then the steps after
    /// the switch; a switch that a racing publisher undid is published again. The
    /// first attempt starts from `head_start`, the others read afresh. With the
    /// report, the lock's read for its release, when the steps after the switch
    /// made it.
    fn publish_locked(
        &self,
        change: Change<'_>,
        held: Option<&lock::HeldLock>,
        head_start: attempt::HeadStart,
        listener: &dyn Listener,
    ) -> Result<(PublishReport, Option<Result<bool, PublishError>>), PublishError> {
        let mut head_start = Some(head_start);
        for attempt in 1..=ATTEMPTS {
            let Attempt::Done {
                report,
                replaced,
                known,
                gc_state,
            } = self.attempt(change, held, head_start.take(), listener)?
            else {
                listener.info(&format!(
                    "Retrying {}: InRelease changed while publishing",
                    self.suite
                ));
                // Only publishers without a lock race like this; a random pause that
                // grows with each attempt keeps them from colliding again in step.
                let pause = rand::random::<u64>() % (250 * attempt as u64);
                std::thread::sleep(std::time::Duration::from_millis(pause));
                continue;
            };
            if let Some(finished) =
                self.after_switch(change, held, report, replaced, known, gc_state, listener)
            {
                return Ok(finished);
            }
        }
        Err(PublishError::ConcurrentChanges {
            store: self.store.describe(),
            suite: self.suite.clone(),
        })
    }

    /// Runs `work` on each item, `jobs` at a time (requests whose order does not
    /// matter: a round trip to a remote store is most of their cost). The results
    /// come in the order of `items`; the first error stops the rest and is returned.
    fn each_in_parallel<T: Sync, R: Send>(
        &self,
        items: &[T],
        work: impl Fn(&T) -> Result<R, PublishError> + Sync,
    ) -> Result<Vec<R>, PublishError> {
        crate::parallel::try_map(items, self.config.jobs, work)
    }
}
