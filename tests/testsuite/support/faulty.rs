//! A store wrapper that fails one chosen request, for proving invariant 6 of
//! docs/ARCHITECTURE.md
//! (a fault at any request leaves a readable repository, and a rerun finishes) by
//! enumerating every request of a publish. It can also pretend the store has no
//! conditional writes, to exercise the publish path without a lock, and answer each
//! request after a latency, like a remote store, to count a publish's round trips in
//! sequence.

use cargo_speedy::store::{
    Body, ConditionalWrites, ObjectMeta, PutOptions, Store, StoreError, Versioned,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// How long each request takes before the store carries it out.
    latency: Option<Duration>,
    /// Every request with when it started and ended.
    spans: Mutex<Vec<(Instant, Instant, String)>>,
    /// Done to the wrapped store just before the first request that starts so.
    hook: Mutex<Option<(String, Hook<S>)>>,
}

/// What another party does to the store meanwhile ([`FaultyStore::before_first`]).
type Hook<S> = Box<dyn FnOnce(&S) + Send>;

impl<S: Store> FaultyStore<S> {
    /// Counts requests and fails none.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            fail_at: None,
            requests: AtomicUsize::new(0),
            conditional_writes: true,
            log: Mutex::new(Vec::new()),
            latency: None,
            spans: Mutex::new(Vec::new()),
            hook: Mutex::new(None),
        }
    }

    /// Does `action` to the wrapped store, once, just before the first request that
    /// starts with `request` ("put dists/dev/InRelease") is carried out: what another
    /// publisher does meanwhile.
    pub fn before_first(self, request: &str, action: impl FnOnce(&S) + Send + 'static) -> Self {
        *self.hook.lock().unwrap() = Some((request.to_owned(), Box::new(action)));
        self
    }

    /// Answers each request `latency` after it was made, as a remote store does.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Forgets the requests made so far (their spans and log).
    pub fn forget(&self) {
        self.log.lock().unwrap().clear();
        self.spans.lock().unwrap().clear();
    }

    /// The requests so far, as "operation key", in the order they were made.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The longest chain of requests each made after the previous one was answered
    /// (what bench/critical-path.py finds in a proxy's trace): the round trips in
    /// sequence, in order.
    pub fn critical_path(&self) -> Vec<String> {
        let mut spans = self.spans.lock().unwrap().clone();
        spans.sort_by_key(|(start, _, _)| *start);
        // The longest chain ending at each request, and the request before it.
        let mut chains: Vec<(usize, Option<usize>)> = Vec::new();
        for (i, (start, _, _)) in spans.iter().enumerate() {
            let before = (0..i)
                .filter(|&j| spans[j].1 <= *start)
                .max_by_key(|&j| chains[j].0);
            chains.push((before.map_or(1, |j| chains[j].0 + 1), before));
        }
        let mut last = (0..spans.len()).max_by_key(|&i| chains[i].0);
        let mut path = Vec::new();
        while let Some(i) = last {
            path.push(spans[i].2.clone());
            last = chains[i].1;
        }
        path.reverse();
        path
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
        self.log.lock().unwrap().push(what.clone());
        let number = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let hook = {
            let mut hook = self.hook.lock().unwrap();
            match hook.as_ref() {
                Some((request, _)) if what.starts_with(request.as_str()) => hook.take(),
                _ => None,
            }
        };
        if let Some((_, action)) = hook {
            action(&self.inner);
        }
        let started = Instant::now();
        if let Some(latency) = self.latency {
            std::thread::sleep(latency);
        }
        let answer = self.answer(number, call);
        self.spans
            .lock()
            .unwrap()
            .push((started, Instant::now(), what));
        answer
    }

    fn answer<T>(
        &self,
        number: usize,
        call: impl FnOnce(&S) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
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
