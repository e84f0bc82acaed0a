//! Where a repository lives: an object store of keys and bytes.
//!
//! The interface is object-shaped (get, put, head, list, delete, put-if-absent), not
//! filesystem-shaped: there are no directories, links or renames to fake on S3. The
//! local-directory store implements object semantics on top of files instead.

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

/// Properties of a written object, decided by the caller (the publish layer knows
/// what a key holds; the store does not). Backends that have no such notion ignore
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: &'static str,
    pub caching: Caching,
    /// Readable by anyone (apt clients); bookkeeping objects are private.
    pub public: bool,
}

/// The body of a put: small objects from memory, packages streamed from disk.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// An object's bytes and its version: an opaque tag (the ETag on S3) that changes
/// with every write, for a compare-and-swap with [`Store::put_if_version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub bytes: Vec<u8>,
    pub version: String,
}

/// An object's size and SHA256 (lowercase hex), from its bytes as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDigest {
    pub size: u64,
    pub sha256: String,
}

impl ObjectDigest {
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        ObjectDigest {
            size: bytes.len() as u64,
            sha256: format!("{:x}", sha2::Sha256::digest(bytes)),
        }
    }
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
    #[error("{store}: {key}: {cause}")]
    Io {
        store: String,
        key: String,
        cause: std::io::Error,
    },
    #[error("{0}")]
    InvalidKey(String),
    #[error("cannot read {}: {cause}", path.display())]
    ReadLocal {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{store}: conditional writes are not supported")]
    ConditionalWritesUnsupported { store: String },
    #[error("{store}: {message}")]
    Backend { store: String, message: String },
}

/// Which conditional writes a store honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConditionalWrites {
    /// `If-None-Match: *` on PUT: create only if absent (the publish lock).
    pub create: bool,
    /// `If-Match: <etag>` on PUT: replace only if unchanged (renewing and taking over
    /// a lock lease).
    pub replace: bool,
}

/// An object store holding one repository.
pub trait Store: Send + Sync {
    /// Where this is, for messages: a path or a URL, never credentials.
    fn describe(&self) -> String;
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_versioned(key)?.map(|object| object.bytes))
    }
    /// The object with its version.
    fn get_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// The size and SHA256 of the object's bytes, or `None` when missing. Backends
    /// hash as the bytes stream in, so checking a large object does not hold it in
    /// memory.
    fn digest(&self, key: &str) -> Result<Option<ObjectDigest>, StoreError> {
        Ok(self.get(key)?.map(|bytes| ObjectDigest::of(&bytes)))
    }
    /// Writes the object atomically: readers see the old or the new bytes, never a mix.
    fn put(&self, key: &str, body: Body<'_>, options: &PutOptions) -> Result<(), StoreError>;
    /// Creates the object only if it does not exist, in one request: `Ok(Some(version))`
    /// when created (the version is empty when the store did not say it), `Ok(None)`
    /// when it existed, `ConditionalWritesUnsupported` when the store cannot create
    /// only if absent. The body comes from memory (the lock) or streams from a file (a
    /// pool file: one conditional PUT instead of a HEAD and a PUT).
    ///
    /// A `Body::File` above the S3 store's multipart threshold answers
    /// `ConditionalWritesUnsupported`: whether a multipart upload's completion honours
    /// `If-None-Match` is not known of every S3-compatible store, and one that ignored
    /// it would overwrite. The caller then checks and writes as without conditional
    /// writes.
    ///
    /// A write whose answer was lost is retried; the retry finds the object and answers
    /// `Ok(None)`, as for any object that existed. A caller that must tell its own
    /// write from someone else's reads the object back (the lock compares its token, a
    /// pool file its digest) (docs/ARCHITECTURE.md, "Store contract").
    fn put_if_absent(
        &self,
        key: &str,
        body: Body<'_>,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError>;
    /// Replaces the object only if its version is still `version`: a compare and
    /// swap, so of two writers that read the same version exactly one wins.
    /// `Ok(Some(new version))` when written, `Ok(None)` when the object changed or is
    /// gone, `ConditionalWritesUnsupported` when the store cannot tell.
    fn put_if_version(
        &self,
        key: &str,
        body: &[u8],
        version: &str,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError>;
    /// Objects whose keys start with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
    /// Deleting a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Asks the store now which conditional writes it honours, when it cannot know
    /// without asking (S3: Spaces does not document them); `Ok(None)` when there is
    /// nothing to ask (the local directory honours both). Whether an earlier answer
    /// is still good is the caller's business ([`Store::assume_conditional_writes`]).
    fn probe_conditional_writes(&self) -> Result<Option<ConditionalWrites>, StoreError> {
        Ok(None)
    }
    /// What an earlier probe found, so that the store's conditional writes do not
    /// probe again. Stores with nothing to probe ignore it.
    fn assume_conditional_writes(&self, _found: ConditionalWrites) {}
    /// The canned ACL this store gives what `PutOptions::public` calls public
    /// (`public-read`, or `private` for a private bucket); `None` for a store
    /// without ACLs (the local directory).
    fn public_acl(&self) -> Option<&'static str> {
        None
    }
    /// Gives an existing object the ACL `options` call for, as `put` would have: a
    /// repository moved between public and private is re-ACL'd by one publish
    /// (docs/ARCHITECTURE.md, "Private repositories"). A no-op without ACLs.
    fn set_acl(&self, _key: &str, _options: &PutOptions) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Every backend refuses a key that could escape the store (the fs store maps keys
/// to paths): it is relative, with no empty, `.` or `..` part.
pub fn check_key(key: &str) -> Result<(), String> {
    let escapes = key.is_empty()
        || key.starts_with('/')
        || key.contains(['\\', '\0', '\n'])
        || key.split('/').any(|part| matches!(part, "" | "." | ".."));
    if escapes {
        Err(format!("{key:?} is not a valid object key"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_store() {
        for good in ["pool/main/s/x/x_1_amd64.deb", ".speedy/lock", "a"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "./a",
            "a/",
            "a\\b",
            "a\nb",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
