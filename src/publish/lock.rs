//! The publish lock (invariant 4, docs/ARCHITECTURE.md, "Publish invariants"): an
//! object created with put-if-absent, so of two publishers exactly one holds it. It is
//! a lease: it names its owner and an expiry that the holder pushes forward while it
//! works (docs/ARCHITECTURE.md, "Crash and concurrency model"). A lease not renewed
//! in time belongs to a publisher that died (a killed CI runner, say) and is taken
//! over with a compare-and-swap on the lock object's version, so that of two waiters
//! exactly one wins. This file owns the lock object: taking it (`acquire`), renewing
//! it while a publish works (`HeldLock::while_renewing`), checking and releasing it.

use super::PublishError;
use crate::listener::Listener;
use crate::repo::layout::LOCK_KEY;
use crate::store::{Body, Store, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; the holder pushes it forward while it works.
    pub expires: u64,
    /// Random, so a publisher never mistakes another's lock for its own.
    pub token: String,
}

/// How to behave when the lock is taken.
#[derive(Debug, Clone, Copy)]
pub struct LockOptions {
    /// Wait up to this long for the lock, instead of failing at once.
    pub wait: Option<Duration>,
    /// Remove an existing lock first (after the user checked that its owner is gone).
    pub break_lock: bool,
    /// How long the lock stays valid without renewal (`lock-lease`).
    pub lease: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            wait: None,
            break_lock: false,
            lease: Duration::from_secs(DEFAULT_LEASE_SECONDS),
        }
    }
}

/// Long enough to ride out a few failed renewals, short enough that a release job
/// after a killed one waits about a minute, not half an hour.
pub const DEFAULT_LEASE_SECONDS: u64 = 60;

/// `$SPEEDY_HOST` names this host in the lock instead of /etc/hostname (a container
/// whose hostname is not unique, or a test that plays another runner).
pub const HOST_ENV: &str = "SPEEDY_HOST";

pub fn this_host() -> String {
    std::env::var(HOST_ENV)
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Who runs this process: the name of its uid in /etc/passwd first (CI containers
/// often run without `$USER`), then `$USER` or `$LOGNAME`, then `uid N`.
pub fn this_user() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let from_passwd = uid.and_then(|uid| {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        user_of_uid(&passwd, uid)
    });
    let from_env = || {
        ["USER", "LOGNAME"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    };
    from_passwd
        .or_else(from_env)
        .or_else(|| uid.map(|uid| format!("uid {uid}")))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The name /etc/passwd gives `uid`.
fn user_of_uid(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let uid_field = fields.nth(1)?;
        (uid_field.parse::<u32>().ok() == Some(uid) && !name.is_empty()).then(|| name.to_owned())
    })
}

/// Whether a process of this host is still running; a lock whose owner died on this
/// very machine (a killed release) can be taken over without waiting for its lease. A
/// zombie (killed, not yet reaped by its parent) is not running.
fn process_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may itself
        // contain spaces and parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// What the lock object holds now.
enum Found {
    Free,
    Held {
        info: LockInfo,
        version: String,
    },
    /// Not a lock this tool wrote: only `--break-lock` removes it.
    Unreadable {
        version: String,
    },
}

impl Found {
    /// The lock as ours, when it holds our `token`; `started`: when the lease it
    /// holds was worked out, before its write was sent.
    fn held_with(&self, token: &str, lease: Duration, started: Instant) -> Option<HeldLock> {
        match self {
            Found::Held { info, version } if info.token == token => {
                Some(HeldLock::new(info.clone(), version.clone(), lease, started))
            }
            _ => None,
        }
    }
}

fn read_lock(store: &dyn Store) -> Result<Found, PublishError> {
    Ok(match store.get_versioned(LOCK_KEY)? {
        None => Found::Free,
        Some(object) => match serde_json::from_slice(&object.bytes) {
            Ok(info) => Found::Held {
                info,
                version: object.version,
            },
            Err(_) => Found::Unreadable {
                version: object.version,
            },
        },
    })
}

/// Why a lock that is not ours may be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takeover {
    /// Its holder did not renew it in time.
    LeaseExpired,
    /// Its holder ran on this host and is gone.
    OwnerGone,
    /// `--break-lock`.
    Broken,
}

impl LockInfo {
    /// The lock this process writes, created at `created` for `lease` seconds.
    fn ours(host: &str, token: &str, created: u64, lease: u64) -> Self {
        LockInfo {
            owner: format!("{}@{host}", this_user()),
            host: host.to_owned(),
            pid: std::process::id(),
            created,
            expires: created + lease,
            token: token.to_owned(),
        }
    }
}

impl Takeover {
    fn describe(self, holder: &LockInfo) -> String {
        let who = format!("{} (pid {} on {})", holder.owner, holder.pid, holder.host);
        match self {
            Takeover::LeaseExpired => format!("took over the lock of {who}: its lease expired"),
            Takeover::OwnerGone => format!("took over the lock of {who}: that process is gone"),
            Takeover::Broken => format!("broke the lock of {who} (--break-lock)"),
        }
    }
}

/// A held lock, renewed with [`HeldLock::renew`] and released explicitly with
/// [`HeldLock::release`], both of which check that it is still ours.
#[derive(Debug)]
pub struct HeldLock {
    token: String,
    lease: Duration,
    /// The lock as last written, the store's version of it, and when its lease
    /// started (by this process's monotonic clock, before the write was sent).
    current: Mutex<(LockInfo, String, Instant)>,
    /// Someone else took it over: nothing may be switched any more.
    lost: AtomicBool,
}

/// Takes the lock. `Ok(None)` when the store cannot do conditional writes: the caller
/// then relies on re-reading InRelease before and after its switch alone.
pub fn acquire(
    store: &dyn Store,
    options: LockOptions,
    now: impl Fn() -> u64,
    on_takeover: &dyn Fn(&str),
) -> Result<Option<HeldLock>, PublishError> {
    let token = format!("{:032x}", rand::random::<u128>());
    let started = Instant::now();
    let mut broke = false;
    let host = this_host();
    let lease = options.lease.as_secs().max(1);
    loop {
        let leased_at = Instant::now();
        let info = LockInfo::ours(&host, &token, now(), lease);
        let bytes = serde_json::to_vec_pretty(&info).unwrap_or_default();
        let (created_it, create_error) =
            match store.put_if_absent(LOCK_KEY, Body::Bytes(&bytes), &super::put_options(LOCK_KEY))
            {
                // Created: ours, with the version the store answered (no read back:
                // a round trip saved on every publish).
                Ok(Some(version)) if !version.is_empty() => {
                    return Ok(Some(HeldLock::new(info, version, options.lease, leased_at)));
                }
                Ok(created) => (created.is_some(), None),
                Err(StoreError::ConditionalWritesUnsupported { .. }) => return Ok(None),
                // The write may have happened and only the answer been lost: what is
                // there now decides.
                Err(error) => (false, Some(error)),
            };
        let found = read_lock(store)?;
        // The create failed and left no lock: it never happened (a read-only
        // repository, a store refusing writes). The store already retried what was
        // worth retrying; trying again here would loop for ever.
        if let (Some(error), Found::Free) = (create_error, &found) {
            return Err(error.into());
        }
        // Ours, also when the create's answer was lost and a retry was refused
        // because our own create had already happened.
        if let Some(held) = found.held_with(&token, options.lease, leased_at) {
            return Ok(Some(held));
        }
        if created_it {
            // Created, then replaced by someone who took it over at once: theirs.
            continue;
        }
        let may_break = options.break_lock && !broke;
        let Some((version, takeover)) = may_take_over(&found, &host, may_break, &now) else {
            continue;
        };
        if let Some(takeover) = takeover {
            let mine = Mine {
                info,
                bytes: &bytes,
                lease: options.lease,
                leased_at,
            };
            match take_over(store, &found, version, takeover, mine, broke, on_takeover)? {
                TakeOver::Won(held) => return Ok(Some(held)),
                TakeOver::LookAgain => continue,
                TakeOver::Deleted => {
                    broke = true;
                    continue;
                }
                TakeOver::Refused => {}
            }
        }
        if let Some(wait) = options.wait {
            if started.elapsed() < wait {
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
        }
        if let Some(error) = refusal(store, found, &now) {
            return Err(error);
        }
    }
}

/// The version of a lock that is not ours, and why it may be taken over, if it may:
/// its lease expired, its owner is gone from this host, or `may_break` (`--break-lock`,
/// not used yet). `None` when it is gone.
fn may_take_over<'f>(
    found: &'f Found,
    host: &str,
    may_break: bool,
    now: &impl Fn() -> u64,
) -> Option<(&'f String, Option<Takeover>)> {
    let (version, takeover) = match found {
        Found::Free => return None,
        Found::Unreadable { version } => (version, None),
        Found::Held {
            info: holder,
            version,
        } => {
            let takeover = if holder.expires <= now() {
                Some(Takeover::LeaseExpired)
            } else if holder.host == host && !process_alive(holder.pid) {
                Some(Takeover::OwnerGone)
            } else {
                None
            };
            (version, takeover)
        }
    };
    let takeover = match takeover {
        None if may_break => Some(Takeover::Broken),
        other => other,
    };
    Some((version, takeover))
}

/// The lock this publisher writes: its contents, serialized, its lease, and when the
/// lease started.
struct Mine<'b> {
    info: LockInfo,
    bytes: &'b [u8],
    lease: Duration,
    leased_at: Instant,
}

/// How an attempt to take a lock over ended.
enum TakeOver {
    Won(HeldLock),
    /// Someone else was faster, or the holder renewed: look again.
    LookAgain,
    /// The store cannot compare and swap, and the lock was deleted instead.
    Deleted,
    /// The store cannot compare and swap, and this lock may not be deleted.
    Refused,
}

/// Replaces the lock at `version` with ours (compare and swap).
fn take_over(
    store: &dyn Store,
    found: &Found,
    version: &str,
    takeover: Takeover,
    mine: Mine<'_>,
    broke: bool,
    on_takeover: &dyn Fn(&str),
) -> Result<TakeOver, PublishError> {
    match store.put_if_version(LOCK_KEY, mine.bytes, version, &super::put_options(LOCK_KEY)) {
        Ok(Some(new_version)) => {
            if let Found::Held { info: holder, .. } = found {
                on_takeover(&takeover.describe(holder));
            }
            Ok(TakeOver::Won(HeldLock::new(
                mine.info,
                new_version,
                mine.lease,
                mine.leased_at,
            )))
        }
        Ok(None) => Ok(TakeOver::LookAgain),
        // Without compare-and-swap, only an explicit break or an owner gone from this
        // host may delete the lock: an expired lease elsewhere may still belong to a
        // slow holder, and two waiters could both delete.
        Err(StoreError::ConditionalWritesUnsupported { .. })
            if takeover != Takeover::LeaseExpired && !broke =>
        {
            store.delete(LOCK_KEY)?;
            Ok(TakeOver::Deleted)
        }
        Err(StoreError::ConditionalWritesUnsupported { .. }) => Ok(TakeOver::Refused),
        Err(e) => Err(e.into()),
    }
}

/// Why the lock cannot be had now (`None`: it is gone, look again).
fn refusal(store: &dyn Store, found: Found, now: &impl Fn() -> u64) -> Option<PublishError> {
    match found {
        Found::Held { info: holder, .. } => Some(PublishError::Locked {
            store: store.describe(),
            expires_in: holder.expires.saturating_sub(now()),
            holder: Box::new(holder),
        }),
        Found::Unreadable { .. } => Some(PublishError::LockUnreadable {
            store: store.describe(),
        }),
        Found::Free => None,
    }
}

/// How soon a failed renewal is tried again; the lease allows two.
const RENEWAL_RETRY: Duration = Duration::from_secs(1);

impl HeldLock {
    fn new(info: LockInfo, version: String, lease: Duration, leased_at: Instant) -> Self {
        HeldLock {
            token: info.token.clone(),
            lease,
            current: Mutex::new((info, version, leased_at)),
            lost: AtomicBool::new(false),
        }
    }

    /// Whether the lock is ours without asking the store: no renewal found it taken
    /// over, and its lease started less than a third of a lease ago (less one second,
    /// as its expiry is written in whole seconds). Another publisher takes a lock over
    /// only once its lease expired by their clock, and hosts' clocks agree to well
    /// within a lease (docs/ARCHITECTURE.md, "Crash and concurrency model"); only an
    /// explicit `--break-lock` could, and the check before the switch still stops
    /// that. A renewal under way (it holds `current` for its round trip) leaves the
    /// question to the store.
    pub fn surely_ours(&self) -> bool {
        let vouched_for = self.lease.saturating_sub(Duration::from_secs(1)) / 3;
        !self.lost.load(Ordering::SeqCst)
            && self
                .current
                .try_lock()
                .is_ok_and(|current| current.2.elapsed() < vouched_for)
    }

    /// How often the holder renews: three times per lease, so two renewals may fail.
    pub fn renewal_interval(&self) -> Duration {
        self.lease / 3
    }

    /// Pushes the expiry forward. `Ok(false)` when the lock is no longer ours: its
    /// lease ran out and someone took it over.
    pub fn renew(&self, store: &dyn Store, now: u64) -> Result<bool, PublishError> {
        if self.lost.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let Ok(mut current) = self.current.lock() else {
            return Ok(false);
        };
        let mut info = current.0.clone();
        let leased_at = Instant::now();
        let expires = now + self.lease.as_secs().max(1);
        info.expires = expires;
        let bytes = serde_json::to_vec_pretty(&info).unwrap_or_default();
        let options = super::put_options(LOCK_KEY);
        match store.put_if_version(LOCK_KEY, &bytes, &current.1, &options) {
            Ok(Some(version)) => {
                *current = (info, version, leased_at);
                Ok(true)
            }
            Ok(None) => {
                // A lost answer to our own renewal also changes the version: ours
                // still, if the token says so.
                if let Found::Held { info, version } = read_lock(store)? {
                    if info.token == self.token {
                        // The lease it holds started with this renewal only if it
                        // carries this renewal's expiry.
                        let since = match info.expires == expires {
                            true => leased_at,
                            false => current.2,
                        };
                        *current = (info, version, since);
                        return Ok(true);
                    }
                }
                self.lost.store(true, Ordering::SeqCst);
                Ok(false)
            }
            // A store that cannot compare and swap cannot renew either: the lease
            // then lasts as written, and the lock is broken only explicitly.
            Err(StoreError::ConditionalWritesUnsupported { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the lock if it is still ours; someone may have taken it over.
    pub fn release(&self, store: &dyn Store) -> Result<(), PublishError> {
        self.release_as_read(store, self.read_for_release(store))
    }

    /// Whether the lock object still holds our token, read for
    /// [`HeldLock::release_as_read`] when nothing else says so (a publish that failed).
    fn read_for_release(&self, store: &dyn Store) -> Result<bool, PublishError> {
        Ok(matches!(read_lock(store)?, Found::Held { info, .. } if info.token == self.token))
    }

    /// Deletes the lock when `ours` found it ours (its check just before the switch,
    /// or a read of it after a failure), unless a renewal found it taken over since.
    pub fn release_as_read(
        &self,
        store: &dyn Store,
        ours: Result<bool, PublishError>,
    ) -> Result<(), PublishError> {
        if ours? && !self.lost.load(Ordering::SeqCst) {
            store.delete(LOCK_KEY)?;
        }
        Ok(())
    }

    /// Whether a renewal found the lock taken over by someone else.
    pub fn taken_over(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Whether the lock object is still ours (not taken over or broken by someone else).
    pub fn still_held(&self, store: &dyn Store) -> Result<bool, PublishError> {
        if self.lost.load(Ordering::SeqCst) {
            return Ok(false);
        }
        Ok(matches!(read_lock(store)?, Found::Held { info, .. } if info.token == self.token))
    }

    /// Runs `work` while a thread renews the lease, so that a long upload keeps the
    /// lock. A renewal that finds the lock taken over marks it lost, and the publish
    /// then stops before its switch.
    pub fn while_renewing<T>(
        &self,
        store: &dyn Store,
        now: &(dyn Fn() -> u64 + Sync),
        listener: &dyn Listener,
        work: impl FnOnce() -> T,
    ) -> T {
        // Dropping `done` when the work ends wakes the renewer at once: the lock is
        // released without waiting for its next tick.
        let (done, finished) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut next = Instant::now() + self.renewal_interval();
                loop {
                    let wait = next.saturating_duration_since(Instant::now());
                    match finished.recv_timeout(wait) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                    match self.renew(store, now()) {
                        Ok(true) => next = Instant::now() + self.renewal_interval(),
                        Ok(false) => {
                            listener.warning("the publish lock was taken over by someone else: this publish will not switch");
                            break;
                        }
                        // A failed renewal is tried again soon; the lease allows two.
                        Err(error) => {
                            listener.detail(&format!("renewing the publish lock: {error}"));
                            next = Instant::now() + RENEWAL_RETRY;
                        }
                    }
                }
            });
            let result = work();
            drop(done);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_and_missing_processes_are_not_alive() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(0));
        assert!(!process_alive(u32::MAX));
        // A child that exited and is not reaped yet is a zombie.
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!process_alive(pid), "the zombie {pid} counts as alive");
        child.wait().expect("reap");
    }

    #[test]
    fn the_user_is_the_name_of_the_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      broken line\n\
                      ci:x:1001:1001::/home/ci:/bin/sh\n";
        assert_eq!(user_of_uid(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_of_uid(passwd, 1001).as_deref(), Some("ci"));
        assert_eq!(user_of_uid(passwd, 7), None);
        assert!(!this_user().is_empty());
    }

    /// A store whose creates always fail and that holds nothing: a read-only
    /// repository.
    struct RefusesWrites;

    fn refused(key: &str) -> StoreError {
        StoreError::Io {
            store: "read-only".into(),
            key: key.into(),
            cause: std::io::Error::from_raw_os_error(30), // EROFS
        }
    }

    impl Store for RefusesWrites {
        fn describe(&self) -> String {
            "read-only".into()
        }
        fn get_versioned(&self, _: &str) -> Result<Option<crate::store::Versioned>, StoreError> {
            Ok(None)
        }
        fn head(&self, _: &str) -> Result<Option<crate::store::ObjectMeta>, StoreError> {
            Ok(None)
        }
        fn put(
            &self,
            key: &str,
            _: crate::store::Body<'_>,
            _: &crate::store::PutOptions,
        ) -> Result<(), StoreError> {
            Err(refused(key))
        }
        fn put_if_absent(
            &self,
            key: &str,
            _: crate::store::Body<'_>,
            _: &crate::store::PutOptions,
        ) -> Result<Option<String>, StoreError> {
            Err(refused(key))
        }
        fn put_if_version(
            &self,
            key: &str,
            _: &[u8],
            _: &str,
            _: &crate::store::PutOptions,
        ) -> Result<Option<String>, StoreError> {
            Err(refused(key))
        }
        fn list(&self, _: &str) -> Result<Vec<crate::store::ObjectMeta>, StoreError> {
            Ok(Vec::new())
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            Err(refused(key))
        }
    }

    /// The lock vouches for itself (no read of it before the canonical files change)
    /// only for a third of its lease less a second, from when its lease started: at
    /// once after it is taken and after each renewal, never once lost.
    #[test]
    fn a_lock_vouches_for_itself_for_a_third_of_its_lease_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::fs::FsStore::new(dir.path());
        let options = LockOptions {
            wait: None,
            break_lock: false,
            lease: Duration::from_secs(4),
        };
        let held = acquire(&store, options, crate::clock::now, &|_| {})
            .expect("acquire")
            .expect("the local directory locks");
        assert!(held.surely_ours());
        let long_ago = |held: &HeldLock| {
            let mut current = held.current.lock().expect("not poisoned");
            current.2 = Instant::now()
                .checked_sub(Duration::from_millis(1_050))
                .expect("the clock runs past a second");
        };
        long_ago(&held);
        assert!(!held.surely_ours(), "a lease of 4 s vouches for 1 s");
        assert!(held.renew(&store, crate::clock::now()).expect("renew"));
        assert!(held.surely_ours(), "a renewal starts the lease again");
        held.lost.store(true, Ordering::SeqCst);
        assert!(!held.surely_ours());

        let info = LockInfo::ours("host", "token", crate::clock::now(), 1);
        let one_second = HeldLock::new(info, "v".into(), Duration::from_secs(1), Instant::now());
        assert!(
            !one_second.surely_ours(),
            "a lease of one second, written in whole seconds, vouches for nothing"
        );
    }

    #[test]
    fn a_create_that_fails_and_leaves_no_lock_is_an_error_not_a_loop() {
        let started = Instant::now();
        let result = acquire(&RefusesWrites, LockOptions::default(), || 1_000, &|_| {});
        let error = match result {
            Err(error) => error.to_string(),
            Ok(_) => panic!("took a lock on a store that refuses writes"),
        };
        assert!(error.contains(".speedy/lock"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
