//! How the library reports progress: it never prints by itself. The CLI implements
//! [`Listener`] for human output on a terminal and for `--message-format json`.

use std::path::PathBuf;
use std::sync::Arc;

/// A request to the repository's store that has been retried for a while: what failed,
/// which attempt, how long it is retried still.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Retrying {
    /// `PUT dists/dev/InRelease`.
    pub request: String,
    /// What the last attempt ran into: `HTTP 503 Service Unavailable`, `connection refused`.
    pub failure: String,
    /// The attempt that just failed, from 1.
    pub attempt: u32,
    /// How much longer the request is retried before it fails.
    pub seconds_left: u64,
    /// The store has not answered at all yet: the endpoint or the network may be wrong.
    pub never_answered: bool,
}

impl std::fmt::Display for Retrying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (attempt {}; retrying for {} s more)",
            self.request, self.failure, self.attempt, self.seconds_left
        )?;
        if self.never_answered {
            write!(
                f,
                "; the store has not answered yet: check --endpoint and the network"
            )?;
        }
        Ok(())
    }
}

/// A .deb that `cargo speedy build` finished.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuiltDeb {
    /// The Cargo package.
    pub package: String,
    /// The Debian package name.
    pub deb_name: String,
    pub version: String,
    pub architecture: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

pub trait Listener: Send + Sync {
    /// Something the user should act on, but not an error.
    fn warning(&self, message: &str);
    /// A step of the work, one line.
    fn info(&self, message: &str);
    /// Detail for `-v`.
    fn detail(&self, message: &str);
    /// A package is in its final place.
    fn deb_built(&self, deb: &BuiltDeb);
    /// Uploads of this many bytes start (a progress bar, on a terminal).
    fn transfer_start(&self, _total_bytes: u64) {}
    /// That many more bytes are uploaded.
    fn transfer_progress(&self, _bytes: u64) {}
    fn transfer_finish(&self) {}
    /// A request is being retried and has been for a while.
    fn retrying(&self, notice: &Retrying) {
        self.warning(&format!("retrying {notice}"));
    }
    /// This listener as a handle that outlives the borrow, for reports that come from
    /// another thread while a request runs (the store's retries); `None` (the
    /// default) leaves those unreported.
    fn shared(&self) -> Option<Arc<dyn Listener>> {
        None
    }
}

/// Discards everything; for tests and library users who only want the result.
pub struct SilentListener;

impl Listener for SilentListener {
    fn warning(&self, _: &str) {}
    fn info(&self, _: &str) {}
    fn detail(&self, _: &str) {}
    fn deb_built(&self, _: &BuiltDeb) {}
}
