//! How the library reports progress: it never prints by itself. The CLI implements
//! [`Listener`] for human output on a terminal and for `--message-format json`.

use std::path::PathBuf;

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
}

/// Discards everything; for tests and library users who only want the result.
pub struct SilentListener;

impl Listener for SilentListener {
    fn warning(&self, _: &str) {}
    fn info(&self, _: &str) {}
    fn detail(&self, _: &str) {}
    fn deb_built(&self, _: &BuiltDeb) {}
}
