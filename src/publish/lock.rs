//! The publish lock (invariant 4, docs/ARCHITECTURE.md, "Publish invariants"): an
//! object created with put-if-absent, so of two publishers exactly one holds it. It
//! names its owner and expiry, so a user who finds it can tell a running release from
//! one that died.

use super::PublishError;
use crate::repo::layout::LOCK_KEY;
use crate::store::{Store, StoreError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// Unix seconds.
    pub created: u64,
    pub expires: u64,
    /// Random, so a publisher never mistakes another's lock for its own.
    pub token: String,
}

/// How to behave when the lock is taken.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockOptions {
    /// Wait up to this long for the lock, instead of failing at once.
    pub wait: Option<Duration>,
    /// Remove an existing lock first (after the user checked that its owner is gone).
    pub break_lock: bool,
}

/// How long a lock is valid: longer than any sane publish, short enough that a dead
/// CI job's lock is recognisably stale the next morning.
pub const LOCK_TTL_SECONDS: u64 = 30 * 60;

pub fn this_host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

fn this_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Whether a process of this host is still running; a lock whose owner died on this
/// very machine (a killed release) can be taken over without asking.
fn process_alive(pid: u32) -> bool {
    pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A held lock; released explicitly with [`HeldLock::release`], which checks the token.
#[derive(Debug)]
pub struct HeldLock {
    pub info: LockInfo,
}

fn read_lock(store: &dyn Store) -> Result<Option<LockInfo>, PublishError> {
    Ok(store.get(LOCK_KEY)?.map(|bytes| {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| LockInfo {
            owner: "(unreadable lock object)".into(),
            host: String::new(),
            pid: 0,
            created: 0,
            expires: 0,
            token: String::new(),
        })
    }))
}

/// Takes the lock. `Ok(None)` when the store cannot do conditional writes: the caller
/// then relies on re-reading InRelease before and after its switch alone.
pub fn acquire(
    store: &dyn Store,
    options: LockOptions,
    now: impl Fn() -> u64,
) -> Result<Option<HeldLock>, PublishError> {
    let token = format!("{:032x}", rand::random::<u128>());
    let started = Instant::now();
    let mut broke = false;
    let host = this_host();
    loop {
        let created = now();
        let info = LockInfo {
            owner: format!("{}@{host}", this_user()),
            host: host.clone(),
            pid: std::process::id(),
            created,
            expires: created + LOCK_TTL_SECONDS,
            token: token.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&info).unwrap_or_default();
        match store.put_if_absent(LOCK_KEY, &bytes, &super::put_options(LOCK_KEY)) {
            Ok(true) => return Ok(Some(HeldLock { info })),
            Ok(false) => {}
            Err(StoreError::ConditionalWritesUnsupported { .. }) => return Ok(None),
            Err(e) => {
                // The write may have happened and only the answer been lost: then the
                // lock is ours.
                if read_lock(store)
                    .ok()
                    .flatten()
                    .is_some_and(|current| current.token == token)
                {
                    return Ok(Some(HeldLock { info }));
                }
                return Err(e.into());
            }
        }
        let holder = read_lock(store)?;
        let dead_owner = holder
            .as_ref()
            .is_some_and(|h| h.host == host && !process_alive(h.pid));
        if (options.break_lock || dead_owner) && !broke {
            store.delete(LOCK_KEY)?;
            broke = true;
            continue;
        }
        if let Some(wait) = options.wait {
            if started.elapsed() < wait {
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
        }
        return Err(match holder {
            Some(holder) => PublishError::Locked {
                store: store.describe(),
                stale: holder.expires <= now(),
                holder: Box::new(holder),
            },
            // Released between our attempt and the read: try again.
            None => continue,
        });
    }
}

impl HeldLock {
    /// Deletes the lock if it is still ours; someone may have broken it.
    pub fn release(self, store: &dyn Store) -> Result<(), PublishError> {
        match read_lock(store)? {
            Some(current) if current.token == self.info.token => Ok(store.delete(LOCK_KEY)?),
            _ => Ok(()),
        }
    }

    /// Whether the lock object is still ours (not broken by someone else).
    pub fn still_held(&self, store: &dyn Store) -> Result<bool, PublishError> {
        Ok(read_lock(store)?.is_some_and(|current| current.token == self.info.token))
    }
}
