//! A store wrapper that fails one chosen request, for proving invariant 6 of
//! docs/ARCHITECTURE.md
//! (a fault at any request leaves a readable repository, and a rerun finishes) by
//! enumerating every request of a publish. It can also pretend the store has no
//! conditional writes, to exercise the publish path without a lock.

use cargo_speedy::store::{
    Body, ConditionalWrites, ObjectMeta, PutOptions, Store, StoreError, Versioned,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// When the chosen request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTiming {
    /// The request never reaches the store (connection refused, timeout before sending).
    Before,
    /// The store carries it out but the answer is lost (timeout after sending).
    After,
}

pub struct FaultyStore<S> {
    inner: S,
    fail_at: Option<(usize, FaultTiming)>,
    requests: AtomicUsize,
    conditional_writes: bool,
    /// Every request, as "operation key", in order.
    log: Mutex<Vec<String>>,
}

impl<S: Store> FaultyStore<S> {
    /// Counts requests and fails none.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            fail_at: None,
            requests: AtomicUsize::new(0),
            conditional_writes: true,
            log: Mutex::new(Vec::new()),
        }
    }

    /// Fails request number `k` (1-based) once.
    pub fn failing(mut self, k: usize, timing: FaultTiming) -> Self {
        self.fail_at = Some((k, timing));
        self
    }

    /// Answers put-if-absent as a store without conditional writes does.
    pub fn without_conditional_writes(mut self) -> Self {
        self.conditional_writes = false;
        self
    }

    /// Requests made so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The 1-based number of the last request `what` ("put dists/dev/InRelease").
    pub fn last_request(&self, what: &str) -> Option<usize> {
        let log = self.log.lock().unwrap();
        log.iter().rposition(|r| r == what).map(|i| i + 1)
    }

    fn request<T>(
        &self,
        what: String,
        call: impl FnOnce(&S) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.log.lock().unwrap().push(what);
        let number = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let injected = || StoreError::Backend {
            store: self.inner.describe(),
            message: format!("request {number} failed (injected fault)"),
        };
        match self.fail_at {
            Some((k, FaultTiming::Before)) if k == number => Err(injected()),
            Some((k, FaultTiming::After)) if k == number => {
                let _ = call(&self.inner);
                Err(injected())
            }
            _ => call(&self.inner),
        }
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn get_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.request(format!("get {key}"), |s| s.get_versioned(key))
    }

    fn put_if_version(
        &self,
        key: &str,
        body: &[u8],
        version: &str,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        if !self.conditional_writes {
            return self.request(format!("conditional {key}"), |s| {
                Err(StoreError::ConditionalWritesUnsupported {
                    store: s.describe(),
                })
            });
        }
        self.request(format!("put-if-version {key}"), |s| {
            s.put_if_version(key, body, version, options)
        })
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.request(format!("head {key}"), |s| s.head(key))
    }

    fn put(&self, key: &str, body: Body<'_>, options: &PutOptions) -> Result<(), StoreError> {
        self.request(format!("put {key}"), |s| s.put(key, body, options))
    }

    fn put_if_absent(
        &self,
        key: &str,
        body: Body<'_>,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        if !self.conditional_writes {
            return self.request(format!("conditional {key}"), |s| {
                Err(StoreError::ConditionalWritesUnsupported {
                    store: s.describe(),
                })
            });
        }
        self.request(format!("put-if-absent {key}"), |s| {
            s.put_if_absent(key, body, options)
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.request(format!("list {prefix}"), |s| s.list(prefix))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.request(format!("delete {key}"), |s| s.delete(key))
    }

    /// Passed through uncounted: the wrapped store's own requests are what can fail,
    /// and a local directory has nothing to probe. Pretending to have no conditional
    /// writes is answered by `put_if_absent`, as a store that ignores them would.
    fn probe_conditional_writes(&self) -> Result<Option<ConditionalWrites>, StoreError> {
        if !self.conditional_writes {
            return Ok(None);
        }
        self.inner.probe_conditional_writes()
    }

    fn assume_conditional_writes(&self, found: ConditionalWrites) {
        self.inner.assume_conditional_writes(found)
    }
}
