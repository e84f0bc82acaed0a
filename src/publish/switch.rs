//! The writes of a publish after its pool files (`pool`, which settles them first),
//! in the plan's order (invariant 3, docs/ARCHITECTURE.md, "Publish invariants"):
//! the by-hash copies not written yet with the re-check of the lock and InRelease
//! unless the lock vouches for both, the canonical
//! indices, Release.gpg, Release with the last checks, and the switch, the single
//! write of InRelease that makes the new suite visible.

use super::state::SuiteState;
use super::{lock, put_options, Publish, PublishError};
use crate::listener::Listener;
use crate::repo::layout;
use crate::repo::plan::{self, PublishPlan, Step};
use crate::store::Body;
use foldhash::HashSet;

/// How the writes up to the switch ended.
pub(super) enum Switched {
    /// InRelease changed since it was read: nothing switched, merge again.
    Raced,
    Done {
        second_check: Option<SecondCheck>,
    },
}

/// The switched InRelease and the second of the one it replaced: whether the store
/// recorded a later second is asked after the switch, alongside the lock's check
/// (docs/ARCHITECTURE.md, "The life of a publish").
pub(super) struct SecondCheck {
    key: String,
    bytes: std::sync::Arc<[u8]>,
    second: u64,
}

impl Publish<'_> {
    /// Writes `publish_plan` over `current` (the suite as read) up to and including
    /// the switch; its pool files are settled already, and the by-hash copies in
    /// `by_hash_written` written. `Switched::Raced`: InRelease changed since it was
    /// read, nothing switched, and the caller merges again.
    pub(super) fn write_and_switch(
        &self,
        publish_plan: &PublishPlan,
        current: Option<&SuiteState>,
        held: Option<&lock::HeldLock>,
        by_hash_written: &HashSet<String>,
        listener: &dyn Listener,
    ) -> Result<Switched, PublishError> {
        let mut second_check = None;
        let before_switch = current.map(|s| s.in_release.clone());
        let canonical = plan::canonical_writes(publish_plan);
        // Before the first canonical write, the lock and InRelease are read again
        // (invariant 4), alongside the by-hash copies still to write: neither is
        // visible to apt. Not when the lock vouches for both: this attempt read
        // InRelease under it, and no one may have taken it over since
        // (`HeldLock::surely_ours`).
        let lock_vouches = || held.is_some_and(lock::HeldLock::surely_ours);
        let re_read = || self.unchanged_since_read(held, before_switch.as_deref());
        let (by_hash, unchanged) = crate::parallel::join(
            || {
                self.put_all(&plan::by_hash_to_write(
                    &self.suite,
                    publish_plan.by_hash_copies(),
                    current.map(|state| &state.release),
                    by_hash_written,
                ))
            },
            || match canonical.is_empty() || lock_vouches() {
                true => Ok(None),
                false => re_read().map(Some),
            },
        );
        by_hash?;
        let unchanged = match unchanged? {
            Some(unchanged) => unchanged,
            None if canonical.is_empty() || lock_vouches() => true,
            // The by-hash writes outlasted what the lock vouches for: ask after all.
            None => re_read()?,
        };
        if !unchanged {
            return Ok(Switched::Raced);
        }
        self.put_all(&canonical.indices)?;
        let switch = publish_plan.steps.iter().find_map(|step| match step {
            Step::InRelease { key, bytes } => Some((key, bytes)),
            Step::Pool(_) | Step::ByHash { .. } | Step::Replace { .. } => None,
        });
        let replaced_second = current.and_then(|state| state.in_release_modified);
        // The new InRelease carries a later modification second than the one it
        // replaces: apt asks with If-Modified-Since, and servers compare whole
        // seconds, so a second publish within the same second would be answered "304
        // Not Modified" and missed until the next publish. The wait comes before the
        // last writes; whether the store recorded a later second is asked after the
        // switch ([`SecondCheck`]).
        if let (Some(_), Some(second)) = (switch, replaced_second) {
            crate::clock::wait_past_second(second);
        }
        // Release.gpg, then Release, the last alongside the re-read of InRelease and
        // of the lock just before the switch (invariant 4): neither write is what apt
        // reads first. A lock taken over by now stops the publish before its switch
        // (`LockLost`), so that after it the lock is known to have been ours
        // throughout.
        let (last, first) = match canonical.release.split_last() {
            Some((last, first)) => (Some(last), first),
            None => (None, &canonical.release[..]),
        };
        for (key, bytes) in first {
            self.store.put(key, Body::Bytes(bytes), &put_options(key))?;
        }
        let (last_written, (in_release_now, lock_check)) = crate::parallel::join(
            || last.map(|(key, bytes)| self.store.put(key, Body::Bytes(bytes), &put_options(key))),
            || {
                crate::parallel::join(
                    || switch.map(|(key, _)| self.store.get(key)),
                    || switch.and(held).map(|held| held.still_held(self.store)),
                )
            },
        );
        last_written.transpose()?;
        if let Some((key, bytes)) = switch {
            if let Some(ours) = lock_check {
                if !ours? {
                    return Err(PublishError::LockLost {
                        store: self.store.describe(),
                    });
                }
            }
            let in_release_now = in_release_now.transpose()?.flatten();
            if in_release_now.as_deref() != before_switch.as_deref() {
                return Ok(Switched::Raced);
            }
            self.switch(key, bytes, listener)?;
            second_check = replaced_second.map(|second| SecondCheck {
                key: key.clone(),
                bytes: bytes.clone(),
                second,
            });
        }
        Ok(Switched::Done { second_check })
    }

    /// Just before the canonical files change: whoever took over an expired lease may
    /// be switching now (`LockLost`), and has anyone switched since we read
    /// (`false`: merge again instead of overwriting them)? Both asked at once.
    fn unchanged_since_read(
        &self,
        held: Option<&lock::HeldLock>,
        before_switch: Option<&[u8]>,
    ) -> Result<bool, PublishError> {
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
        Ok(in_release_now?.as_deref() == before_switch)
    }

    /// The switch: writes InRelease, once it was found unchanged since it was read.
    fn switch(&self, key: &str, bytes: &[u8], listener: &dyn Listener) -> Result<(), PublishError> {
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
        Ok(())
    }

    /// The store's clock decides the second it records, and it may run behind ours:
    /// close to the replaced second, ask, and write again a second later (the same
    /// bytes) if it recorded the same second. After the switch, where a failure is a
    /// note, not a failed publish.
    pub(super) fn after_the_replaced_second(&self, check: &SecondCheck, listener: &dyn Listener) {
        let SecondCheck { key, bytes, second } = check;
        let (key, bytes, second) = (key.as_str(), &bytes[..], *second);
        if crate::clock::now() > second + 2 {
            return;
        }
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

    /// Writes small objects (by-hash copies, canonical indices), a few at a time.
    pub(super) fn put_all(&self, objects: &[(&str, &[u8])]) -> Result<(), PublishError> {
        self.each_in_parallel(objects, |(key, bytes)| {
            Ok(self.store.put(key, Body::Bytes(bytes), &put_options(key))?)
        })
        .map(|_| ())
    }
}
