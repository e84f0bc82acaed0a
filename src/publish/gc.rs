//! Garbage collection after the switch
//! (docs/ARCHITECTURE.md, "Crash and concurrency model"): what no suite and no kept
//! history record references any more is deleted once it has been unreferenced for
//! the grace period. Its bookkeeping (`.speedy/pending-deletes.json`,
//! `repo::plan::GcState`) says since when each object is unreferenced, when the store
//! was last swept, and each suite's history head; the decisions are `repo::plan`'s
//! (`must_sweep`, `garbage_candidates`, `collect_garbage`).

use super::attempt::Recognition;
use super::{history, put_options, state, Known, Publish, PublishError};
use crate::listener::Listener;
use crate::repo::layout;
use crate::repo::plan::{self, GcState};
use crate::store::Body;
use std::collections::{BTreeMap, BTreeSet};

/// The shortest grace period without a lock: longer than any upload-to-switch window.
const LOCKLESS_MIN_GRACE_SECONDS: u64 = 15 * 60;

/// What the suites reference now, and each suite's newest history record before
/// this publish and after it.
#[derive(Default)]
pub(super) struct Referenced {
    keys: BTreeSet<String>,
    heads_before: BTreeMap<String, u64>,
    heads_after: BTreeMap<String, u64>,
}

impl Publish<'_> {
    /// Garbage collection's bookkeeping; a missing or unreadable one is a fresh start
    /// (the next collection sweeps).
    pub(super) fn read_gc_state(&self) -> Result<GcState, PublishError> {
        Ok(self
            .store
            .get(layout::GC_STATE_KEY)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default())
    }

    /// Deletes pool files and by-hash copies that no suite has referenced for the
    /// grace period. Under a lock still ours it looks only at what this publish
    /// stopped referencing and what was pending, unless a sweep of the whole store is
    /// due (`plan::must_sweep`); without one, it always sweeps. Returns what it
    /// deleted, and whether it wrote its bookkeeping.
    pub(super) fn collect_garbage(
        &self,
        locked: bool,
        known: Option<&Known>,
        previous: &GcState,
        keyring: Option<String>,
        acl: Option<String>,
        listener: &dyn Listener,
    ) -> Result<(Vec<String>, bool), PublishError> {
        let computed;
        let referenced = match known {
            Some(Known {
                gc_referenced: Some(referenced),
                ..
            }) => referenced,
            Some(known) => {
                computed = self.referenced_as_known(known)?;
                &computed
            }
            None => {
                computed = self.referenced_as_read()?;
                &computed
            }
        };
        let now = (self.now)();
        let sweep = match known {
            Some(_) => plan::must_sweep(previous, &referenced.heads_before, now),
            None => true,
        };
        let candidates: BTreeSet<String> = match known {
            Some(known) if !sweep => {
                plan::garbage_candidates(previous, &known.referenced_before, &referenced.keys)
            }
            _ => self.collectable_objects()?,
        };
        let (mut next, delete) = plan::collect_garbage(
            &candidates,
            &referenced.keys,
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
        next.history_heads = referenced.heads_after.clone();
        next.published_keyring = keyring;
        next.acl = acl;
        for key in &delete {
            listener.detail(&format!("delete {key}"));
            self.store.delete(key)?;
        }
        // Written last: a collection that failed before this point is found out by the
        // next one (its heads are behind), which then sweeps.
        let changed = next != *previous;
        if changed {
            let bytes = serde_json::to_vec_pretty(&next).unwrap_or_default();
            self.store.put(
                layout::GC_STATE_KEY,
                Body::Bytes(&bytes),
                &put_options(layout::GC_STATE_KEY),
            )?;
        }
        Ok((delete, changed))
    }

    /// Under a lock still ours, what the attempt read and switched to is what the
    /// suites reference now: as worked out before the switch when it could be
    /// ([`Known::gc_referenced`]), else with the other suites' histories read now.
    fn referenced_as_known(&self, known: &Known) -> Result<Referenced, PublishError> {
        let read_now;
        let others = match &known.other_histories {
            Some(read) => read,
            None => {
                let public_key = self.key.public_key();
                let mut read = BTreeMap::new();
                for suite in &known.other_suites {
                    read.insert(
                        suite.clone(),
                        history::read(self.store, &public_key, suite)?,
                    );
                }
                read_now = read;
                &read_now
            }
        };
        Ok(self.referenced_by(
            &known.referenced,
            &known.history,
            known.history_head_before,
            others,
        ))
    }

    /// What the suites reference when they reference `keys` (their indices) and what
    /// our `history` and the `others` may restore, with each suite's newest record
    /// before this publish (`head_before` ours) and after it. Pure: done before the
    /// switch, from the history the switch is recorded in, it leaves garbage
    /// collection little to do after it (a set of tens of thousands of keys at 10,000
    /// packages, milliseconds between the switch and the bookkeeping's write).
    pub(super) fn referenced_by(
        &self,
        keys: &BTreeSet<String>,
        history: &history::SuiteHistory,
        head_before: Option<u64>,
        others: &BTreeMap<String, history::SuiteHistory>,
    ) -> Referenced {
        let mut referenced = Referenced {
            keys: keys.clone(),
            ..Referenced::default()
        };
        referenced
            .keys
            .extend(history::referenced_keys(std::slice::from_ref(history)));
        if let Some(id) = head_before {
            referenced.heads_before.insert(self.suite.clone(), id);
        }
        if let Some(record) = history.records.first() {
            referenced.heads_after.insert(self.suite.clone(), record.id);
        }
        for (suite, kept) in others {
            // What a rollback may restore stays, however old.
            referenced
                .keys
                .extend(history::referenced_keys(std::slice::from_ref(kept)));
            if let Some(record) = kept.records.first() {
                referenced.heads_before.insert(suite.clone(), record.id);
                referenced.heads_after.insert(suite.clone(), record.id);
            }
        }
        referenced
    }

    /// Whether a publish that changes nothing would leave garbage collection's
    /// bookkeeping, the keyring and the ACLs as they are, judged from what was read
    /// before the lock (`recognition`): nothing due for deletion, no sweep due, the
    /// keyring and the ACL as recorded. Then the publish ends without taking the lock
    /// (docs/ARCHITECTURE.md, "The life of a publish"). The same decisions as
    /// [`Publish::collect_garbage`]'s, with the shorter grace period: when in doubt,
    /// the publish takes the lock and collects.
    pub(super) fn nothing_to_collect(&self, recognition: &Recognition) -> bool {
        let (Some(previous), Some(histories)) =
            (&recognition.gc_state, recognition.histories.as_parsed())
        else {
            return false;
        };
        let Ok(keyring) = self.keyring_digest() else {
            return false;
        };
        let acl = match self.store.public_acl() {
            Some(configured)
                if plan::acl_must_be_reapplied(previous.acl.as_deref(), configured) =>
            {
                return false
            }
            configured => configured.map(str::to_owned),
        };
        let mut heads = BTreeMap::new();
        let mut referenced = BTreeSet::new();
        let ours = (&self.suite, &recognition.history.history);
        for (suite, history) in histories.iter().chain(std::iter::once(ours)) {
            // Borrowed, one at a time: a first publish's record lists every package.
            referenced.extend(history::referenced_keys(std::slice::from_ref(history)));
            if let Some(record) = history.records.first() {
                heads.insert(suite.clone(), record.id);
            }
        }
        for (suite, state) in &recognition.suites.states {
            referenced.extend(plan::referenced_keys(
                suite,
                &state.release,
                &state.packages,
            ));
        }
        let now = (self.now)();
        if plan::must_sweep(previous, &heads, now) {
            return false;
        }
        let candidates = plan::garbage_candidates(previous, &BTreeSet::new(), &referenced);
        let (mut next, delete) = plan::collect_garbage(
            &candidates,
            &referenced,
            previous,
            now,
            self.config.grace_seconds,
        );
        next.swept_at = previous.swept_at;
        next.history_heads = heads;
        next.published_keyring = Some(keyring);
        next.acl = acl;
        delete.is_empty() && next == *previous
    }

    /// Read afresh rather than reusing the states of the merge: without a lock,
    /// another publisher may reference new files by now. (No heads: the next
    /// collection under a lock sweeps.)
    fn referenced_as_read(&self) -> Result<Referenced, PublishError> {
        let public_key = self.key.public_key();
        let mut referenced = Referenced::default();
        for (suite, state) in state::read_all(self.store, &public_key)? {
            referenced.keys.extend(plan::referenced_keys(
                &suite,
                &state.release,
                &state.packages,
            ));
            // What a rollback may restore stays, however old.
            let kept = history::read(self.store, &public_key, &suite)?;
            referenced
                .keys
                .extend(history::referenced_keys(std::slice::from_ref(&kept)));
        }
        Ok(referenced)
    }

    /// A sweep: every collectable object in the store, the pool and the indices and
    /// by-hash copies under dists/.
    fn collectable_objects(&self) -> Result<BTreeSet<String>, PublishError> {
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
        Ok(existing)
    }
}
