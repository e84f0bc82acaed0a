//! Where a repository lives: an object store of keys and bytes.
//!
//! The interface is object-shaped (get, put, head, list, delete, put-if-absent), not
//! filesystem-shaped: there are no directories, links or renames to fake on S3. The
//! local-directory store implements object semantics on top of files instead.

pub mod faulty;
pub mod fs;
pub mod s3;

use std::path::{Path, PathBuf};

/// What a reader or a CDN may cache: immutable objects (pool files, by-hash copies)
/// forever, the rest (InRelease, Release, canonical Packages) briefly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    Immutable,
    Short,
}

/// Properties of a written object. Backends that have no such notion ignore them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: &'static str,
    pub caching: Caching,
    /// Readable by anyone (apt clients); bookkeeping objects are private.
    pub public: bool,
}

impl PutOptions {
    /// The options for a repository key, from what it is.
    pub fn for_key(key: &str) -> Self {
        let content_type = if key.ends_with(".deb") {
            "application/vnd.debian.binary-package"
        } else if key.ends_with(".gz") {
            "application/gzip"
        } else if key.ends_with(".xz") {
            "application/x-xz"
        } else if key.ends_with(".gpg") {
            "application/pgp-signature"
        } else if key.ends_with(".json") {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        let caching = if crate::repo::layout::is_immutable(key) {
            Caching::Immutable
        } else {
            Caching::Short
        };
        PutOptions {
            content_type,
            caching,
            public: !key.starts_with(".speedy/"),
        }
    }
}

/// The body of a put: small objects from memory, packages streamed from disk.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Last modification, unix seconds, where the store knows it.
    pub modified: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store}: {key}: {source}")]
    Io {
        store: String,
        key: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    InvalidKey(String),
    #[error("cannot read {}: {source}", path.display())]
    ReadLocal {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{store}: conditional writes are not supported")]
    ConditionalWritesUnsupported { store: String },
    #[error("{store}: {message}")]
    Backend { store: String, message: String },
    #[error("{store}: request {request} failed (injected fault)")]
    Injected { store: String, request: usize },
}

/// An object store holding one repository.
pub trait Store: Send + Sync {
    /// Where this is, for messages: a path or a URL, never credentials.
    fn describe(&self) -> String;
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// Writes the object atomically: readers see the old or the new bytes, never a mix.
    fn put(&self, key: &str, body: Body<'_>, options: &PutOptions) -> Result<(), StoreError>;
    /// Creates the object only if it does not exist; `Ok(false)` when it did.
    fn put_if_absent(
        &self,
        key: &str,
        body: &[u8],
        options: &PutOptions,
    ) -> Result<bool, StoreError>;
    /// Objects whose keys start with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
    /// Deleting a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
}

fn check_key(key: &str) -> Result<(), StoreError> {
    crate::repo::layout::check_key(key).map_err(StoreError::InvalidKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_the_key() {
        let pool = PutOptions::for_key("pool/main/s/x/x_1_amd64.deb");
        assert_eq!(pool.caching, Caching::Immutable);
        assert_eq!(pool.content_type, "application/vnd.debian.binary-package");
        assert!(pool.public);
        assert_eq!(
            PutOptions::for_key("dists/dev/InRelease").caching,
            Caching::Short
        );
        assert_eq!(
            PutOptions::for_key("dists/dev/main/binary-amd64/by-hash/SHA256/ab").caching,
            Caching::Immutable
        );
        assert!(!PutOptions::for_key(".speedy/lock").public);
    }
}
