//! Runs the pure publish plan against a store, keeping the publish invariants of
//! docs/ARCHITECTURE.md: validate everything first (1); never change a pool object
//! (2); write pool, by-hash, canonical indices, Release.gpg, Release and InRelease
//! last, and delete old objects only after a grace period (3); take the lock and
//! re-read InRelease just before the switch (4); verify the remote InRelease with our
//! key (5).

pub mod history;
pub mod lock;
pub mod probe;
pub mod state;
pub mod verify;

use crate::config::RepoConfig;
use crate::debfile::{DebFileError, ScannedDeb};
use crate::listener::Listener;
use crate::repo::index::{IndexError, PackageEntry};
use crate::repo::layout;
use crate::repo::plan::{self, GcState, MergeError, PoolUpload, Step, SuiteChange};
use crate::sign::{RepoKeys, SignError, VerifyError};
use crate::store::{Body, Caching, PutOptions, Store, StoreError};
use lock::{LockInfo, LockOptions};
use state::SuiteState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

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

/// A .deb to publish, read and validated.
#[derive(Debug, Clone)]
pub struct IncomingDeb {
    /// The local file; `None` for a promotion, whose bytes are already in the pool.
    pub path: Option<PathBuf>,
    pub entry: PackageEntry,
}

/// Reads, validates and hashes the .debs; nothing is published unless all are good.
pub fn read_debs(paths: &[PathBuf]) -> Result<Vec<IncomingDeb>, PublishError> {
    if paths.is_empty() {
        return Err(PublishError::NothingToPublish);
    }
    let mut incoming = Vec::with_capacity(paths.len());
    for path in paths {
        // One streaming pass: only the ar headers and the control member are held.
        let deb = ScannedDeb::scan(path).map_err(|source| PublishError::Deb {
            path: path.clone(),
            cause: source,
        })?;
        let what = path.display().to_string();
        let entry = PackageEntry::from_control(
            deb.control_text(),
            deb.size(),
            deb.sha256(),
            deb.md5(),
            &what,
        )
        .map_err(|source| PublishError::Control {
            path: path.clone(),
            cause: source,
        })?;
        incoming.push(IncomingDeb {
            path: Some(path.clone()),
            entry,
        });
    }
    Ok(incoming)
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
    /// The command, for the history: `publish`, `release`, `rollback`, ...
    pub command: &'a str,
    /// The clock, injectable so tests can step over the grace period.
    pub now: &'a (dyn Fn() -> u64 + Sync),
}

/// How one pass of a publish ended.
// One value per pass: boxing the report would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    /// The suite is switched (or, for a dry run or no change, needs no switch); with
    /// the state it replaced when it switched.
    Done(PublishReport, Option<Replaced>, Known),
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
    /// Our suite's history as read before the switch.
    history: history::SuiteHistory,
    /// What our suite and its history referenced before this attempt: garbage
    /// collection without a sweep looks only at what of it is referenced no more.
    referenced_before: BTreeSet<String>,
    /// Our suite's newest history record before this attempt.
    history_head_before: Option<u64>,
}

/// What a switch replaced, for the history.
struct Replaced {
    indices: BTreeMap<String, String>,
    /// The replaced state's pool files that the new state does not list.
    pool: Vec<String>,
}

/// How often a publish re-merges when InRelease changed under it.
const ATTEMPTS: usize = 8;

/// Below this many new pool files, a HEAD each is as cheap as listing the pool.
const LIST_POOL_ABOVE: usize = 8;

/// The shortest grace period without a lock: longer than any upload-to-switch window.
const LOCKLESS_MIN_GRACE_SECONDS: u64 = 15 * 60;

/// How long a publish without a lock waits before checking that its switch stuck.
const LOCKLESS_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// What a pool check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolObject {
    /// There with these bytes: nothing to upload.
    Present,
    Absent,
}

/// The pool files that the published suites list, by key, with the suite that lists
/// each and its SHA256: built once per attempt, so each lookup is O(1).
struct PoolListing<'a> {
    files: HashMap<&'a str, (&'a str, &'a str)>,
}

impl<'a> PoolListing<'a> {
    fn of(states: &'a BTreeMap<String, SuiteState>) -> Self {
        let mut files = HashMap::new();
        for state in states.values() {
            for package in &state.packages {
                files
                    .entry(package.filename.as_str())
                    .or_insert((state.suite.as_str(), package.sha256.as_str()));
            }
        }
        PoolListing { files }
    }

    /// Whether a suite lists `entry`'s file with its bytes, so it is in the pool.
    fn vouches_for(&self, entry: &PackageEntry) -> bool {
        self.files
            .get(entry.filename.as_str())
            .is_some_and(|(_, sha256)| *sha256 == entry.sha256)
    }
}

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
        layout::check_suite(&self.suite).map_err(PublishError::InvalidSuite)?;
        if !self.config.suites.contains(&self.suite) {
            return Err(PublishError::UnknownSuite {
                suite: self.suite.clone(),
                configured: self.config.suites.clone(),
            });
        }
        if self.dry_run {
            return match self.attempt(change, None, listener)? {
                Attempt::Done(report, _, _) => Ok(report),
                // A dry run stops before the switch, where a race is noticed.
                Attempt::Raced => Err(PublishError::ConcurrentChanges {
                    store: self.store.describe(),
                    suite: self.suite.clone(),
                }),
            };
        }
        // Nothing is written, not even the lock or the probe's objects, into what is
        // not our repository.
        state::recognise(self.store, &self.key.public_key())?;
        probe::learn_conditional_writes(self.store, (self.now)())?;
        let held = lock::acquire(self.store, self.lock, self.now, &|what| {
            listener.warning(what)
        })?;
        let Some(held) = held else {
            listener.warning(&format!(
                "{} does not support conditional writes: publishing without a lock, relying on re-reading InRelease before and after the switch",
                self.store.describe()
            ));
            return self.publish_locked(change, None, listener);
        };
        let result = self.while_renewing(&held, listener, || {
            self.publish_locked(change, Some(&held), listener)
        });
        let released = held.release(self.store);
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

    /// Runs `work` while a thread renews the lease, so that a long upload keeps the
    /// lock. A renewal that finds the lock taken over marks it lost, and the publish
    /// then stops before its switch.
    fn while_renewing<T>(
        &self,
        held: &lock::HeldLock,
        listener: &dyn Listener,
        work: impl FnOnce() -> T,
    ) -> T {
        let done = std::sync::atomic::AtomicBool::new(false);
        let step = std::time::Duration::from_millis(50);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut next = std::time::Instant::now() + held.renewal_interval();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(step);
                    if std::time::Instant::now() < next {
                        continue;
                    }
                    match held.renew(self.store, (self.now)()) {
                        Ok(true) => next = std::time::Instant::now() + held.renewal_interval(),
                        Ok(false) => {
                            listener.warning("the publish lock was taken over by someone else: this publish will not switch");
                            break;
                        }
                        // A failed renewal is tried again soon; the lease allows two.
                        Err(error) => {
                            listener.detail(&format!("renewing the publish lock: {error}"));
                            next = std::time::Instant::now() + step * 20;
                        }
                    }
                }
            });
            let result = work();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            result
        })
    }

    fn publish_locked(
        &self,
        change: Change<'_>,
        held: Option<&lock::HeldLock>,
        listener: &dyn Listener,
    ) -> Result<PublishReport, PublishError> {
        for attempt in 1..=ATTEMPTS {
            let Attempt::Done(mut report, replaced, known) =
                self.attempt(change, held, listener)?
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
            // From here on the suite is switched: a failure no longer makes the publish
            // fail, it is reported as unfinished and the next publish finishes it
            // (docs/ARCHITECTURE.md, "Retries on a flaky network").
            let mut still_ours = false;
            if let Some(held) = held {
                match held.still_held(self.store) {
                    Ok(true) => still_ours = true,
                    Ok(false) => listener
                        .warning("the publish lock was broken by someone else during this publish"),
                    Err(error) => unfinished(
                        &mut report,
                        listener,
                        format!("checking the lock after the switch: {error}"),
                    ),
                }
            }
            // Without a lock (or with a broken one) another publisher may have switched
            // right after us from an older state: check our packages made it. A lock
            // still ours after the switch means nobody else switched, so there is
            // nothing to read back. Without a lock, first give a racing publisher's
            // write the time to land, so the check sees it (the race window is one
            // request long).
            if !still_ours {
                if held.is_none() {
                    std::thread::sleep(LOCKLESS_SETTLE);
                }
                match self.lost_to_a_racer(change, &report) {
                    Ok(true) => {
                        listener.warning(
                            "a concurrent publish replaced this one's packages; publishing them again",
                        );
                        continue;
                    }
                    Ok(false) => {}
                    Err(error) => unfinished(
                        &mut report,
                        listener,
                        format!("checking the switch: {error}"),
                    ),
                }
            }
            let mut history_now = None;
            if let Some(replaced) = replaced {
                match self.record_history(
                    &report,
                    replaced,
                    still_ours.then(|| known.history.clone()),
                ) {
                    Ok(written) => {
                        report.history_id = written.records.first().map(|r| r.id);
                        history_now = Some(written);
                    }
                    Err(error) => unfinished(
                        &mut report,
                        listener,
                        format!("recording the change in the history: {error}"),
                    ),
                }
            } else if still_ours {
                history_now = Some(known.history.clone());
            }
            // What the attempt read stays true while the lock is ours: garbage
            // collection then needs no second read of every suite.
            let known = if still_ours {
                history_now.map(|history| Known { history, ..known })
            } else {
                None
            };
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
                    unfinished(
                        &mut report,
                        listener,
                        format!("publishing the keyring: {error}"),
                    );
                    None
                }
            };
            let collected = gc_state.and_then(|previous| {
                self.collect_garbage(held.is_some(), known.as_ref(), &previous, keyring, listener)
            });
            match collected {
                Ok(deleted) => report.deleted = deleted,
                Err(error) => unfinished(
                    &mut report,
                    listener,
                    format!("garbage collection: {error}"),
                ),
            }
            return Ok(report);
        }
        Err(PublishError::ConcurrentChanges {
            store: self.store.describe(),
            suite: self.suite.clone(),
        })
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

    /// Reads every suite, merges, plans, and (unless a dry run) writes up to the switch.
    fn attempt(
        &self,
        change: Change<'_>,
        held: Option<&lock::HeldLock>,
        listener: &dyn Listener,
    ) -> Result<Attempt, PublishError> {
        let public_key = self.key.public_key();
        // The suites and our history are read at once (a round trip each saved).
        let (states, history) = crate::parallel::join(
            || state::read_all(self.store, &public_key),
            || history::read(self.store, &public_key, &self.suite),
        );
        let states = states?;
        let current = states.get(&self.suite);
        // Invariant 1: a history edited by hand is refused before anything is written,
        // not found out after the switch when the change is to be recorded. (After
        // the suites: a repository signed by another key is reported as that.)
        let history = history?;
        let (debs, suite_change) = match change {
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
        };
        let merged = plan::apply(
            current.map(|s| s.packages.as_slice()).unwrap_or(&[]),
            &suite_change,
        )
        .map_err(|e| PublishError::Merge(Box::new(e)))?;

        let refs = |entries: &[PackageEntry]| entries.iter().map(PackageRef::from).collect();
        let mut report = PublishReport {
            suite: self.suite.clone(),
            created_suite: current.is_none(),
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
        };
        let incoming_ids: HashSet<(&str, &str, &str)> = debs.iter().map(|d| d.entry.id()).collect();
        for entry in &merged.retired {
            if incoming_ids.contains(&entry.id()) {
                listener.warning(&format!(
                    "{} {} is older than the {} newest versions in {} and is not kept (retention)",
                    entry.name, entry.version, self.config.retention, self.suite
                ));
            }
        }
        let other_suites: Vec<String> = states
            .keys()
            .filter(|s| **s != self.suite)
            .cloned()
            .collect();
        let referenced_by_others = || {
            let mut keys = BTreeSet::new();
            for state in states.values().filter(|s| s.suite != self.suite) {
                keys.extend(plan::referenced_keys(
                    &state.suite,
                    &state.release,
                    &state.packages,
                ));
            }
            keys
        };
        // Decided before anything is compressed or signed: a publish of what is
        // already there costs the reads and nothing else.
        let nothing_changed = current.is_some()
            && merged.added.is_empty()
            && merged.retired.is_empty()
            && merged.changed.is_empty();
        if nothing_changed {
            // Same versions with the same bytes: leave the repository byte-identical.
            let mut referenced = referenced_by_others();
            if let Some(state) = current {
                referenced.extend(plan::referenced_keys(
                    &self.suite,
                    &state.release,
                    &state.packages,
                ));
            }
            let history_head_before = history.records.first().map(|r| r.id);
            let known = Known {
                referenced,
                other_suites,
                history,
                // Nothing is dropped: nothing to look at besides what was pending.
                referenced_before: BTreeSet::new(),
                history_head_before,
            };
            return Ok(Attempt::Done(report, None, known));
        }

        // Which pool files are there already: what a signed index lists is (invariant
        // 3), so only the others cost a request.
        let listed = PoolListing::of(&states);
        let local: HashMap<(&str, &str, &str), usize> = {
            let mut local = HashMap::new();
            for (index, deb) in debs.iter().enumerate().filter(|(_, d)| d.path.is_some()) {
                local.entry(deb.entry.id()).or_insert(index);
            }
            local
        };
        // Checking many unlisted files (a first publish) one HEAD each costs more than
        // listing the pool, about 1,000 keys a request: then the listing answers. It
        // only saves requests: when it fails, each file is asked about instead.
        let unlisted = merged
            .added
            .iter()
            .filter(|e| {
                local.contains_key(&e.id()) && !listed.files.contains_key(e.filename.as_str())
            })
            .count();
        let pool_sizes: Option<HashMap<String, u64>> =
            if unlisted > LIST_POOL_ABOVE.max(listed.files.len() / 1000 + 1) {
                match self.store.list("pool/") {
                    Ok(objects) => Some(objects.into_iter().map(|m| (m.key, m.size)).collect()),
                    Err(error) => {
                        listener.detail(&format!("listing the pool: {error}; checking each file"));
                        None
                    }
                }
            } else {
                None
            };
        // Each entry with the .deb it comes from here (none: promoted or restored).
        let to_check: Vec<(&PackageEntry, Option<usize>)> = merged
            .added
            .iter()
            .map(|entry| (entry, local.get(&entry.id()).copied()))
            // A promoted or restored entry's bytes must be in the pool already, or the
            // switch would publish an index naming a missing file.
            .filter(|(entry, source)| source.is_some() || !listed.vouches_for(entry))
            .collect();
        let found = self.each_in_parallel(&to_check, |&(entry, source)| match source {
            Some(_) => self.check_pool_object(entry, &listed, pool_sizes.as_ref()),
            None => self
                .require_pool_object(entry)
                .map(|()| PoolObject::Present),
        })?;
        let mut pool = Vec::new();
        for (&(entry, source), found) in to_check.iter().zip(found) {
            if let (Some(source), PoolObject::Absent) = (source, found) {
                pool.push(PoolUpload {
                    key: entry.filename.clone(),
                    source,
                    size: entry.size,
                    sha256: entry.sha256.clone(),
                });
            }
        }

        let now = (self.now)();
        let date = crate::repo::syntax::rfc2822(now, "UTC");
        let valid_until = self
            .config
            .valid_for_seconds
            .map(|s| crate::repo::syntax::rfc2822(now + s, "UTC"));
        let indices = plan::build_indices(
            &self.suite,
            &merged.packages,
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
        let mut referenced = referenced_by_others();
        referenced.extend(plan::referenced_keys(
            &self.suite,
            &indices.release,
            &merged.packages,
        ));
        // A history record lists only the pool files its change dropped: the suite's
        // current files and the kept records' lists cover every file a kept state
        // names, and a record stays small however large the suite.
        let dropped_pool: Vec<String> = match current {
            Some(state) => {
                let listed: HashSet<&str> = merged
                    .packages
                    .iter()
                    .map(|p| p.filename.as_str())
                    .collect();
                state
                    .packages
                    .iter()
                    .filter(|p| !listed.contains(p.filename.as_str()))
                    .map(|p| p.filename.clone())
                    .collect()
            }
            None => Vec::new(),
        };
        let mut referenced_before = history::referenced_keys(std::slice::from_ref(&history));
        if let Some(state) = current {
            referenced_before.extend(plan::referenced_keys(
                &self.suite,
                &state.release,
                &state.packages,
            ));
        }
        let publish_plan =
            plan::publish_plan(&self.suite, merged, pool, &indices, release_gpg, in_release);
        report.plan = publish_plan.steps.iter().map(describe_step).collect();
        let history_head_before = history.records.first().map(|r| r.id);
        let known = Known {
            referenced,
            other_suites,
            history,
            referenced_before,
            history_head_before,
        };
        if self.dry_run {
            return Ok(Attempt::Done(report, None, known));
        }
        report.replaced_mutable =
            plan::replaced_mutable_keys(&publish_plan, current.map(|state| &state.release));
        let replaced = Replaced {
            indices: current
                .map(|state| {
                    state
                        .release
                        .files
                        .iter()
                        .filter(|f| f.path.ends_with("/Packages.gz"))
                        .map(|f| (f.path.clone(), f.sha256.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            pool: dropped_pool,
        };

        let before_switch = current.map(|s| s.in_release.clone());
        // By-hash copies are content-addressed: one the current Release lists is
        // there with these bytes; the others are written without asking first.
        let by_hash_present: HashSet<String> = current
            .map(|state| {
                plan::referenced_keys(&self.suite, &state.release, &[])
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default();
        let written = self.upload_pool(&publish_plan.steps, debs, listener)?;
        let by_hash: Vec<(&str, &[u8])> = publish_plan
            .steps
            .iter()
            .filter_map(|step| match step {
                Step::ByHash { key, bytes } if !by_hash_present.contains(key) => {
                    Some((key.as_str(), &bytes[..]))
                }
                _ => None,
            })
            .collect();
        self.put_all(&by_hash)?;
        // The canonical indices go in any order among themselves (in parallel), then
        // Release.gpg and Release in the plan's order, then the switch.
        type Writes<'a> = Vec<(&'a str, &'a [u8])>;
        let (index_writes, release_writes): (Writes, Writes) = publish_plan
            .steps
            .iter()
            .filter_map(|step| match step {
                Step::Replace { key, bytes } => Some((key.as_str(), &bytes[..])),
                _ => None,
            })
            .partition(|(key, _)| layout::is_collectable(key));
        if !index_writes.is_empty() || !release_writes.is_empty() {
            // Just before the canonical files change: whoever took over an expired
            // lease may be switching now, and has anyone switched since we read?
            // Then merge again instead of overwriting them. (Both asked at once.)
            let in_release_key = layout::in_release_key(&self.suite);
            let (lock_check, in_release_now) = crate::parallel::join(
                || held.map(|held| held.still_held(self.store)),
                || self.store.get(&in_release_key),
            );
            match lock_check {
                None | Some(Ok(true)) => {}
                Some(Err(error)) => return Err(error),
                Some(Ok(false)) => {
                    return Err(PublishError::LockLost {
                        store: self.store.describe(),
                    })
                }
            }
            if in_release_now? != before_switch {
                return Ok(Attempt::Raced);
            }
        }
        self.put_all(&index_writes)?;
        for (key, bytes) in release_writes {
            self.store.put(key, Body::Bytes(bytes), &put_options(key))?;
        }
        for step in &publish_plan.steps {
            match step {
                Step::Pool(_) | Step::ByHash { .. } | Step::Replace { .. } => {}
                Step::InRelease { key, bytes } => {
                    let replaced_second = current.and_then(|state| state.in_release_modified);
                    if !self.switch(
                        key,
                        bytes,
                        before_switch.as_deref(),
                        replaced_second,
                        listener,
                    )? {
                        return Ok(Attempt::Raced);
                    }
                }
            }
        }
        if !written.is_empty() {
            listener.info(&format!(
                "Wrote {} package(s) to {}",
                written.len(),
                self.store.describe()
            ));
        }
        Ok(Attempt::Done(report, Some(replaced), known))
    }

    /// The switch: writes InRelease unless it changed since it was read (`false`:
    /// merge again). The new InRelease carries a later modification second than the
    /// one it replaces (`replaced_second`): apt asks with If-Modified-Since, and
    /// servers compare whole seconds, so a second publish within the same second
    /// would be answered "304 Not Modified" and missed until the next publish.
    fn switch(
        &self,
        key: &str,
        bytes: &[u8],
        before_switch: Option<&[u8]>,
        replaced_second: Option<u64>,
        listener: &dyn Listener,
    ) -> Result<bool, PublishError> {
        if let Some(second) = replaced_second {
            crate::clock::wait_past_second(second);
        }
        if self.store.get(key)?.as_deref() != before_switch {
            return Ok(false);
        }
        if let Err(error) = self.store.put(key, Body::Bytes(bytes), &put_options(key)) {
            // The write may have happened and only its answer been lost (every retry
            // of it too): what InRelease holds now decides.
            match self.store.get(key) {
                Ok(Some(now)) if now[..] == bytes[..] => listener.detail(&format!(
                    "switched {key} (the answer to the write was lost: {error})"
                )),
                _ => return Err(error.into()),
            }
        }
        // The store's clock decides the second it records, and it may run behind
        // ours: close to the replaced second, ask, and write again a second later
        // (the same bytes) if it recorded the same second.
        // Switched: from here a failure is a note, not a failed publish.
        if let Some(second) = replaced_second.filter(|s| crate::clock::now() <= s + 2) {
            let rewrite = match self.store.head(key) {
                Ok(meta) => meta
                    .and_then(|meta| meta.modified)
                    .is_some_and(|recorded| recorded <= second),
                Err(error) => {
                    listener.detail(&format!("checking the time of {key}: {error}"));
                    false
                }
            };
            if rewrite {
                std::thread::sleep(std::time::Duration::from_secs(1));
                if let Err(error) = self.store.put(key, Body::Bytes(bytes), &put_options(key)) {
                    listener.warning(&format!(
                        "{key} carries the same second as the one it replaced, and writing it again failed ({error}): servers that fetched the old one this second see the change at the next publish"
                    ));
                }
            }
        }
        Ok(true)
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

    /// Writes small immutable objects (by-hash copies), a few at a time.
    fn put_all(&self, objects: &[(&str, &[u8])]) -> Result<(), PublishError> {
        self.each_in_parallel(objects, |(key, bytes)| {
            Ok(self.store.put(key, Body::Bytes(bytes), &put_options(key))?)
        })
        .map(|_| ())
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

    /// Uploads the pool files that are not there yet, a few at a time, reporting bytes.
    /// Returns the keys written.
    fn upload_pool(
        &self,
        steps: &[Step],
        debs: &[IncomingDeb],
        listener: &dyn Listener,
    ) -> Result<Vec<String>, PublishError> {
        // The plan holds only the pool files found missing while planning.
        let pending: Vec<PoolUpload> = steps
            .iter()
            .filter_map(|step| match step {
                Step::Pool(upload) => Some(upload.clone()),
                _ => None,
            })
            .collect();
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        listener.transfer_start(pending.iter().map(|p| p.size).sum());
        let uploaded =
            self.each_in_parallel(&pending, |upload| {
                listener.detail(&format!("upload {}", upload.key));
                let path = debs[upload.source].path.as_deref().ok_or_else(|| {
                    PublishError::RemoteCorrupt {
                        store: self.store.describe(),
                        key: upload.key.clone(),
                        reason:
                            "missing from the pool, but a suite lists it; run `cargo speedy verify`"
                                .into(),
                    }
                })?;
                self.store
                    .put(&upload.key, Body::File(path), &put_options(&upload.key))?;
                listener.transfer_progress(upload.size);
                Ok(())
            });
        listener.transfer_finish();
        uploaded?;
        Ok(pending.into_iter().map(|p| p.key).collect())
    }

    /// Invariant 2: a pool object never changes. Same bytes is fine (another suite or
    /// an interrupted publish put it there); different bytes is refused. One request
    /// at most: none when a suite lists the file or `pool_sizes` (a listing of the
    /// pool) answers, one HEAD otherwise (and a GET to compare only when an object of
    /// the same size is there).
    fn check_pool_object(
        &self,
        entry: &PackageEntry,
        listed: &PoolListing<'_>,
        pool_sizes: Option<&HashMap<String, u64>>,
    ) -> Result<PoolObject, PublishError> {
        if let Some((suite, sha256)) = listed.files.get(entry.filename.as_str()) {
            if *sha256 != entry.sha256 {
                return Err(PublishError::PoolConflict {
                    store: self.store.describe(),
                    key: entry.filename.clone(),
                    reason: format!(
                        "suite {suite} lists it with sha256 {sha256}, this one is {}",
                        entry.sha256
                    ),
                });
            }
            // A signed index vouches for the bytes of what it lists (`verify` checks
            // them).
            return Ok(PoolObject::Present);
        }
        let size = match pool_sizes {
            Some(sizes) => sizes.get(&entry.filename).copied(),
            None => self.store.head(&entry.filename)?.map(|meta| meta.size),
        };
        let Some(size) = size else {
            return Ok(PoolObject::Absent);
        };
        let same = size == entry.size
            && self
                .store
                .get(&entry.filename)?
                .is_some_and(|bytes| plan::sha256_hex(&bytes) == entry.sha256);
        if same {
            Ok(PoolObject::Present)
        } else {
            Err(PublishError::PoolConflict {
                store: self.store.describe(),
                key: entry.filename.clone(),
                reason: "an object with other bytes is already there".into(),
            })
        }
    }

    /// A promoted or restored entry's bytes must be in the pool with its size (a
    /// signed index vouched for them when they were published).
    fn require_pool_object(&self, entry: &PackageEntry) -> Result<(), PublishError> {
        if self
            .store
            .head(&entry.filename)?
            .is_some_and(|m| m.size == entry.size)
        {
            Ok(())
        } else {
            Err(PublishError::PoolMissing {
                store: self.store.describe(),
                key: entry.filename.clone(),
            })
        }
    }

    /// The public key beside dists/, for servers to fetch with the repository.
    /// Returns the keys it wrote (none when they held the key already) and the
    /// keyring's SHA256. `published` is the SHA256 the bookkeeping says was published
    /// last: when it is this keyring's, nothing is asked.
    fn publish_keyring(
        &self,
        published: Option<&str>,
    ) -> Result<(Vec<String>, String), PublishError> {
        let mut written = Vec::new();
        let public_key = self.key.public_key();
        let binary = public_key.to_binary()?;
        let digest = plan::sha256_hex(&binary);
        if published == Some(digest.as_str()) {
            return Ok((written, digest));
        }
        for (key, bytes) in [
            (layout::KEYRING_KEY, binary),
            (
                layout::KEYRING_ASC_KEY,
                public_key.to_armored()?.into_bytes(),
            ),
        ] {
            if self.store.get(key)?.as_deref() != Some(bytes.as_slice()) {
                self.store
                    .put(key, Body::Bytes(&bytes), &put_options(key))?;
                written.push(key.to_owned());
            }
        }
        Ok((written, digest))
    }

    /// Garbage collection's bookkeeping; a missing or unreadable one is a fresh start
    /// (the next collection sweeps).
    fn read_gc_state(&self) -> Result<GcState, PublishError> {
        Ok(self
            .store
            .get(layout::GC_STATE_KEY)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default())
    }

    /// Deletes pool files and by-hash copies that no suite has referenced for the
    /// grace period. Under a lock still ours it looks only at what this publish
    /// stopped referencing and what was pending, unless a sweep of the whole store is
    /// due (`plan::must_sweep`); without one, it always sweeps.
    fn collect_garbage(
        &self,
        locked: bool,
        known: Option<&Known>,
        previous: &GcState,
        keyring: Option<String>,
        listener: &dyn Listener,
    ) -> Result<Vec<String>, PublishError> {
        let mut referenced = BTreeSet::new();
        let public_key = self.key.public_key();
        // Each suite's newest history record before this publish, and after it.
        let mut heads_before = BTreeMap::new();
        let mut heads_after = BTreeMap::new();
        match known {
            // Under a lock still ours, what the attempt read and switched to is what
            // the suites reference now.
            Some(known) => {
                referenced.extend(known.referenced.iter().cloned());
                referenced.extend(history::referenced_keys(std::slice::from_ref(
                    &known.history,
                )));
                if let Some(id) = known.history_head_before {
                    heads_before.insert(self.suite.clone(), id);
                }
                if let Some(record) = known.history.records.first() {
                    heads_after.insert(self.suite.clone(), record.id);
                }
                for suite in &known.other_suites {
                    // What a rollback may restore stays, however old.
                    let kept = history::read(self.store, &public_key, suite)?;
                    referenced.extend(history::referenced_keys(std::slice::from_ref(&kept)));
                    if let Some(record) = kept.records.first() {
                        heads_before.insert(suite.clone(), record.id);
                        heads_after.insert(suite.clone(), record.id);
                    }
                }
            }
            // Read afresh rather than reusing the states of the merge: without a
            // lock, another publisher may reference new files by now. (No heads: the
            // next collection under a lock sweeps.)
            None => {
                for (suite, state) in state::read_all(self.store, &public_key)? {
                    referenced.extend(plan::referenced_keys(
                        &suite,
                        &state.release,
                        &state.packages,
                    ));
                    // What a rollback may restore stays, however old.
                    let kept = history::read(self.store, &public_key, &suite)?;
                    referenced.extend(history::referenced_keys(std::slice::from_ref(&kept)));
                }
            }
        }
        let now = (self.now)();
        let sweep = match known {
            Some(_) => plan::must_sweep(previous, &heads_before, now),
            None => true,
        };
        let candidates: BTreeSet<String> = match known {
            Some(known) if !sweep => {
                plan::garbage_candidates(previous, &known.referenced_before, &referenced)
            }
            _ => {
                let mut existing: BTreeSet<String> = self
                    .store
                    .list("pool/")?
                    .into_iter()
                    .map(|m| m.key)
                    .collect();
                existing.extend(
                    self.store
                        .list("dists/")?
                        .into_iter()
                        .map(|m| m.key)
                        .filter(|k| layout::is_collectable(k)),
                );
                existing
            }
        };
        let (mut next, delete) = plan::collect_garbage(
            &candidates,
            &referenced,
            previous,
            now,
            // Without a lock, a concurrent publisher's pool files are unreferenced
            // until its switch; a grace period spares them.
            if locked {
                self.config.grace_seconds
            } else {
                self.config.grace_seconds.max(LOCKLESS_MIN_GRACE_SECONDS)
            },
        );
        next.swept_at = if sweep { now } else { previous.swept_at };
        next.history_heads = heads_after;
        next.published_keyring = keyring;
        for key in &delete {
            listener.detail(&format!("delete {key}"));
            self.store.delete(key)?;
        }
        // Written last: a collection that failed before this point is found out by the
        // next one (its heads are behind), which then sweeps.
        if next != *previous {
            let bytes = serde_json::to_vec_pretty(&next).unwrap_or_default();
            self.store.put(
                layout::GC_STATE_KEY,
                Body::Bytes(&bytes),
                &put_options(layout::GC_STATE_KEY),
            )?;
        }
        Ok(delete)
    }
}

/// What `promote` publishes into another suite: the newest version of each package
/// (or of the named ones) in `from`. Promotion copies index entries, never bytes: the
/// pool files are shared by every suite that lists them.
pub fn promotion(
    store: &dyn Store,
    key: &crate::sign::PublicKey,
    from: &str,
    names: &[String],
) -> Result<Vec<IncomingDeb>, PublishError> {
    layout::check_suite(from).map_err(PublishError::InvalidSuite)?;
    let state = state::read_suite(store, key, from)?.ok_or_else(|| PublishError::EmptySuite {
        suite: from.to_owned(),
    })?;
    for name in names {
        if !state.packages.iter().any(|p| &p.name == name) {
            return Err(PublishError::NotInSuite {
                suite: from.to_owned(),
                package: name.clone(),
            });
        }
    }
    // Packages are sorted newest first within a name, so the first of each
    // (name, architecture) is the one to promote.
    let mut seen = BTreeSet::new();
    let mut incoming = Vec::new();
    for entry in &state.packages {
        let wanted = names.is_empty() || names.contains(&entry.name);
        if wanted && seen.insert((entry.name.clone(), entry.architecture.clone())) {
            incoming.push(IncomingDeb {
                path: None,
                entry: entry.clone(),
            });
        }
    }
    if incoming.is_empty() {
        return Err(PublishError::EmptySuite {
            suite: from.to_owned(),
        });
    }
    Ok(incoming)
}

/// The .debs to publish when none are named: everything in `dir`.
pub fn debs_in(dir: &Path) -> Vec<PathBuf> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "deb"))
                .collect()
        })
        .unwrap_or_default();
    debs.sort();
    debs
}
