//! A write command's first reads of the repository, started before `cargo metadata`
//! answers (docs/ARCHITECTURE.md, "The life of a publish", step 1).
//!
//! `cargo metadata` takes 20 to 40 ms, and nothing that depends on the settings can
//! start before it answers. But the settings rarely change between two commands: the
//! output it gave last time ([`MetadataCache`]) gives them at once, and the reads of
//! the recognition (`Publish::read_early`, one round trip) go with them while it runs
//! again. They are kept only when the fresh output is the same bytes (so the same
//! settings, store and suite) and the key the same; otherwise they are dropped, having
//! only read.

use super::{open_s3_with, report_retries, RepoTarget, WriteOptions};
use crate::config::RepoLocation;
use crate::keys::KeyPurpose;
use crate::listener::{Listener, SilentListener};
use crate::publish::lock::LockOptions;
use crate::publish::{EarlyReading, Publish};
use crate::store::fs::FsStore;
use crate::store::s3::{S3Store, S3Transport};
use crate::store::Store;
use crate::workspace::{MetadataCache, Workspace};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What a write command started while `cargo metadata` ran.
pub(super) enum EarlyStart {
    /// The reads, from the settings of the cached output.
    Reading(EarlyReads),
    /// No cached output, or nothing to read early: the S3 transport (the I/O runtime
    /// and the TLS roots), made meanwhile all the same.
    Transport(Option<S3Transport>),
}

pub(super) struct EarlyReads {
    /// The cached `cargo metadata` output the settings came from.
    output: String,
    suite: String,
    fingerprints: Vec<String>,
    store: Arc<dyn Store>,
    /// The same store, for its retry notices, when it is in Spaces.
    s3: Option<Arc<S3Store>>,
    reading: JoinHandle<EarlyReading>,
}

impl EarlyStart {
    /// Starts the reads when the cache has an output for this invocation and the
    /// settings it gives resolve (quietly: anything they would say is said again, or
    /// not at all, by the command itself); else makes the transport.
    pub(super) fn begin(options: &WriteOptions, enabled: bool) -> EarlyStart {
        let target = &options.repo;
        let cached = enabled
            .then(|| MetadataCache::find(target.manifest_path.as_deref(), target.locking))
            .flatten();
        match cached.and_then(|cache| Self::reads(options, cache.output)) {
            Some(reads) => EarlyStart::Reading(reads),
            None => EarlyStart::Transport(S3Transport::new().ok()),
        }
    }

    fn reads(options: &WriteOptions, output: String) -> Option<EarlyReads> {
        let target: &RepoTarget = &options.repo;
        let workspace =
            Workspace::from_metadata_output(&output, target.manifest_path.as_deref()).ok()?;
        let settings = target.settings_of(workspace).ok()?;
        // `Read`: the key only, never a development key made here.
        let keys = settings
            .repo_keys(target, KeyPurpose::Read, &SilentListener)
            .ok()?;
        let (store, s3): (Arc<dyn Store>, _) = match &settings.location {
            RepoLocation::Local(dir) => (Arc::new(FsStore::new(dir)), None),
            RepoLocation::Spaces { config, .. } => {
                let transport = S3Transport::new().ok();
                let s3 = Arc::new(open_s3_with(config, transport, &SilentListener).ok()?);
                (s3.clone(), Some(s3))
            }
        };
        let suite = settings.config.suite_named(options.suite.as_deref());
        let fingerprints = keys.public_key().fingerprints();
        let config = settings.config;
        let reading = {
            let store = store.clone();
            let suite = suite.clone();
            std::thread::Builder::new()
                .name("early reads".into())
                .spawn(move || {
                    Publish {
                        store: store.as_ref(),
                        key: &keys,
                        suite,
                        config: &config,
                        lock: LockOptions::default(),
                        dry_run: false,
                        change_origin: false,
                        command: "",
                        now: &crate::clock::now,
                    }
                    .read_early()
                })
                .ok()?
        };
        Some(EarlyReads {
            output,
            suite,
            fingerprints,
            store,
            s3,
            reading,
        })
    }

    /// The transport the command makes its store with, when the early reads are not
    /// used.
    pub(super) fn into_transport(self) -> Option<S3Transport> {
        match self {
            EarlyStart::Transport(transport) => transport,
            EarlyStart::Reading(_) => None,
        }
    }
}

impl EarlyReads {
    /// Whether these reads are what the command would read: the settings from the
    /// same `cargo metadata` output, for the same suite and key.
    pub(super) fn hold_for(&self, output: &str, suite: &str, fingerprints: &[String]) -> bool {
        self.output == output && self.suite == suite && self.fingerprints == fingerprints
    }

    /// The store they read, from now on reporting its retries to `listener`, and the
    /// handle of what they read, for the publish to wait for.
    pub(super) fn adopt(self, listener: &dyn Listener) -> (Arc<dyn Store>, EarlyReadingHandle) {
        if let Some(s3) = &self.s3 {
            report_retries(s3, listener);
        }
        (self.store, EarlyReadingHandle(self.reading))
    }
}

/// The reads of [`EarlyReads`], for the command's publish.
pub(super) struct EarlyReadingHandle(JoinHandle<EarlyReading>);

impl EarlyReadingHandle {
    /// What was read, once it is; a panic there is the command's (one panic policy,
    /// `crate::parallel`).
    pub(super) fn wait(self) -> EarlyReading {
        match self.0.join() {
            Ok(reading) => reading,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
