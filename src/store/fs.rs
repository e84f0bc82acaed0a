//! The local-directory store, the embedded default: each key is a file below the root.
//!
//! Object semantics on a file system: a put writes a temporary file in the target
//! directory, fsyncs it, renames it over the key and fsyncs the directory, so a reader
//! (apt with a `file:` source) sees the old or the new object, and a crash leaves one
//! of the two. put-if-absent links the temporary file to the key, which fails when the
//! key exists: an atomic create on any POSIX file system, NFS included.

use super::{check_key, Body, ObjectDigest, ObjectMeta, PutOptions, Store, StoreError, Versioned};
use md5::{Digest, Md5};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    /// Whether the root's lock file of earlier versions was removed in this run.
    old_guard_removed: std::sync::atomic::AtomicBool,
}

/// Temporary files start with this; `list` skips them.
const TEMP_PREFIX: &str = ".speedy-tmp-";

/// The store's own files (the lock of its conditional writes) live in this
/// directory of the root, the one that holds the repository's private bookkeeping.
const WORKING_DIR: &str = ".speedy";

impl FsStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStore {
            root: root.into(),
            old_guard_removed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        Ok(self.root.join(key))
    }

    fn io(&self, key: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        let store = self.describe();
        let key = key.to_owned();
        move |source| StoreError::Io {
            store,
            key,
            cause: source,
        }
    }

    /// Creates the directories of `dir` that are missing, 0755 whatever the umask:
    /// apt reads the repository as the `_apt` user.
    fn create_dirs(&self, key: &str, dir: &Path) -> Result<(), StoreError> {
        let mut missing = Vec::new();
        let mut cursor = Some(dir);
        while let Some(d) = cursor.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            missing.push(d);
            cursor = d.parent();
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(d) {
                Ok(()) => fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                    .map_err(self.io(key))?,
                // Another publisher made it first.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.io(key)(e)),
            }
        }
        Ok(())
    }

    /// Writes `body` to a new temporary file beside `path`, synced to disk. Public
    /// objects are 0644 and private ones 0600, whatever the umask. `version`, when
    /// given, hashes the bytes as they are written: a created object's version without
    /// reading a file body twice.
    fn write_temp(
        &self,
        key: &str,
        path: &Path,
        body: Body<'_>,
        options: &PutOptions,
        version: Option<&mut Md5>,
    ) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = path.parent().unwrap_or(&self.root);
        self.create_dirs(key, dir)?;
        let mode = if options.public { 0o644 } else { 0o600 };
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(self.io(key))?;
        // The mode given at creation is masked by the umask; this one is not.
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(self.io(key))?;
        match body {
            Body::Bytes(bytes) => {
                if let Some(hasher) = version {
                    hasher.update(bytes);
                }
                temp.write_all(bytes).map_err(self.io(key))?
            }
            Body::File(source) => {
                let mut file =
                    fs::File::open(source).map_err(|source_error| StoreError::ReadLocal {
                        path: source.to_owned(),
                        cause: source_error,
                    })?;
                match version {
                    Some(hasher) => {
                        let mut hashing = Hashing {
                            inner: &mut temp,
                            hasher,
                        };
                        std::io::copy(&mut file, &mut hashing)
                    }
                    None => std::io::copy(&mut file, &mut temp),
                }
                .map_err(self.io(key))?;
            }
        }
        temp.as_file().sync_all().map_err(self.io(key))?;
        Ok(temp)
    }

    /// Serializes the writes whose outcome depends on what is there (create if
    /// absent, replace if unchanged, delete) across processes: an exclusive lock on
    /// one file of the store, held until the guard is dropped.
    ///
    /// The lock file lives in the store's working directory, beside the private
    /// bookkeeping, never beside what apt or a web server reads. (Earlier versions
    /// kept it in the root: removed there the first time.)
    fn conditional_guard(&self, key: &str) -> Result<fs::File, StoreError> {
        let dir = self.root.join(WORKING_DIR);
        self.create_dirs(key, &dir)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{TEMP_PREFIX}conditional.lock")))
            .map_err(self.io(key))?;
        file.lock().map_err(self.io(key))?;
        if !self
            .old_guard_removed
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            // Taken under the new lock, so no publisher of this version holds it.
            let _ = fs::remove_file(self.root.join(format!("{TEMP_PREFIX}conditional.lock")));
        }
        Ok(file)
    }

    fn sync_dir(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let dir = path.parent().unwrap_or(&self.root);
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io(key))
    }
}

/// The version of a local object: the MD5 of its bytes, as S3's ETag of a
/// single-part upload.
fn version_of(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

/// A writer that hashes what passes through it into `hasher` ([`version_of`] of a
/// body streamed from a file).
struct Hashing<'a, W> {
    inner: W,
    hasher: &'a mut Md5,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn modified_seconds(metadata: &fs::Metadata) -> Option<u64> {
    metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

impl Store for FsStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn get_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(Versioned {
                version: version_of(&bytes),
                bytes,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(key)(e)),
        }
    }

    fn digest(&self, key: &str) -> Result<Option<ObjectDigest>, StoreError> {
        use sha2::Digest;
        let path = self.path(key)?;
        let mut file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(key)(e)),
        };
        let mut hasher = sha2::Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher).map_err(self.io(key))?;
        Ok(Some(ObjectDigest {
            size,
            sha256: format!("{:x}", hasher.finalize()),
        }))
    }

    fn put_if_version(
        &self,
        key: &str,
        body: &[u8],
        version: &str,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        let path = self.path(key)?;
        let temp = self.write_temp(key, &path, Body::Bytes(body), options, None)?;
        let _guard = self.conditional_guard(key)?;
        let current = self.get_versioned(key)?;
        if current.is_none_or(|object| object.version != version) {
            return Ok(None);
        }
        temp.persist(&path).map_err(|e| self.io(key)(e.error))?;
        self.sync_dir(key, &path)?;
        Ok(Some(version_of(body)))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: metadata.len(),
                modified: modified_seconds(&metadata),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(key)(e)),
        }
    }

    fn put(&self, key: &str, body: Body<'_>, options: &PutOptions) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let temp = self.write_temp(key, &path, body, options, None)?;
        temp.persist(&path).map_err(|e| self.io(key)(e.error))?;
        self.sync_dir(key, &path)
    }

    /// The body, from memory or a file, is written to a temporary file and hard-linked
    /// to the key, which fails when the key exists: the create is atomic whatever the
    /// body's size. The version is the MD5 of the bytes, hashed as they are written.
    fn put_if_absent(
        &self,
        key: &str,
        body: Body<'_>,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        let path = self.path(key)?;
        let mut hasher = Md5::new();
        let temp = self.write_temp(key, &path, body, options, Some(&mut hasher))?;
        let _guard = self.conditional_guard(key)?;
        match fs::hard_link(temp.path(), &path) {
            Ok(()) => {
                self.sync_dir(key, &path)?;
                Ok(Some(format!("{:x}", hasher.finalize())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(self.io(key)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut found = Vec::new();
        // Walk only the directory the prefix names, not the whole repository.
        let start = match prefix.rsplit_once('/') {
            Some((dir, _)) => self.root.join(dir),
            None => self.root.clone(),
        };
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(prefix)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(self.io(prefix))?;
                let path = entry.path();
                let file_type = entry.file_type().map_err(self.io(prefix))?;
                let Ok(relative) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = relative.to_string_lossy().into_owned();
                if file_type.is_dir() {
                    if prefix.starts_with(&format!("{key}/"))
                        || key.starts_with(prefix)
                        || prefix.is_empty()
                    {
                        stack.push(path);
                    }
                } else if file_type.is_file()
                    && key.starts_with(prefix)
                    && !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                {
                    let metadata = entry.metadata().map_err(self.io(&key))?;
                    found.push(ObjectMeta {
                        key,
                        size: metadata.len(),
                        modified: modified_seconds(&metadata),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let _guard = self.conditional_guard(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(key)(e)),
        }
        // Empty directories are an artefact of the file system, not objects: remove
        // them up to the root so an emptied pool directory does not linger.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FsStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().join("repo"));
        (dir, store)
    }

    fn opts(_key: &str) -> PutOptions {
        PutOptions {
            content_type: "text/plain",
            caching: crate::store::Caching::Short,
            public: true,
        }
    }

    #[test]
    fn put_get_head_list_delete() {
        let (_dir, store) = store();
        assert_eq!(store.get("dists/dev/InRelease").unwrap(), None);
        store
            .put(
                "dists/dev/InRelease",
                Body::Bytes(b"one"),
                &opts("dists/dev/InRelease"),
            )
            .unwrap();
        store
            .put(
                "dists/dev/InRelease",
                Body::Bytes(b"two"),
                &opts("dists/dev/InRelease"),
            )
            .unwrap();
        assert_eq!(
            store.get("dists/dev/InRelease").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(
            store.head("dists/dev/InRelease").unwrap().map(|m| m.size),
            Some(3)
        );
        store
            .put(
                "pool/main/s/x/x.deb",
                Body::Bytes(b"deb"),
                &opts("pool/main/s/x/x.deb"),
            )
            .unwrap();
        let keys: Vec<String> = store.list("").unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys, ["dists/dev/InRelease", "pool/main/s/x/x.deb"]);
        let keys: Vec<String> = store
            .list("pool/")
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["pool/main/s/x/x.deb"]);
        assert!(store.list("pool/main/t").unwrap().is_empty());
        store.delete("pool/main/s/x/x.deb").unwrap();
        store.delete("pool/main/s/x/x.deb").unwrap();
        assert!(
            !store.root().join("pool").exists(),
            "empty directories go with their last object"
        );
        // No temporary files remain.
        let names: Vec<String> = fs::read_dir(store.root().join("dists/dev"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["InRelease"]);
    }

    #[test]
    fn put_if_absent_creates_once() {
        let (_dir, store) = store();
        let created = store
            .put_if_absent(".speedy/lock", Body::Bytes(b"me"), &opts(".speedy/lock"))
            .unwrap();
        assert_eq!(
            created,
            Some(
                store
                    .get_versioned(".speedy/lock")
                    .unwrap()
                    .unwrap()
                    .version
            )
        );
        assert!(store
            .put_if_absent(".speedy/lock", Body::Bytes(b"you"), &opts(".speedy/lock"))
            .unwrap()
            .is_none());
        assert_eq!(
            store.get(".speedy/lock").unwrap().as_deref(),
            Some(&b"me"[..])
        );
        let names = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        // The store's own lock file sits in .speedy/, never in the root beside
        // what apt or a web server reads; no temporary file is left.
        assert_eq!(names(store.root()), [".speedy"]);
        assert_eq!(
            names(&store.root().join(".speedy")),
            [".speedy-tmp-conditional.lock", "lock"]
        );
        assert_eq!(
            store.list("").unwrap().len(),
            1,
            "the lock file is no object"
        );
    }

    #[test]
    fn the_lock_file_of_earlier_versions_leaves_the_root() {
        let (_dir, store) = store();
        fs::create_dir_all(store.root()).unwrap();
        let old = store.root().join(".speedy-tmp-conditional.lock");
        fs::write(&old, b"").unwrap();
        store
            .put_if_absent(".speedy/lock", Body::Bytes(b"me"), &opts(".speedy/lock"))
            .unwrap();
        assert!(!old.exists());
    }

    #[test]
    fn put_if_absent_has_one_winner_among_threads() {
        let (_dir, store) = store();
        let winners: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let store = &store;
                    scope.spawn(move || {
                        store
                            .put_if_absent("k", Body::Bytes(format!("{i}").as_bytes()), &opts("k"))
                            .unwrap()
                            .is_some()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(winners, 1);
    }

    /// A pool file created from disk in one conditional write: created once, with the
    /// version a read answers; a second create with other bytes leaves the first
    /// byte for byte and answers `None`; a missing source is a `ReadLocal` error that
    /// writes nothing.
    #[test]
    fn put_if_absent_creates_a_file_body_once() {
        let (dir, store) = store();
        let key = "pool/main/s/speedy-app/speedy-app_1.0-1_amd64.deb";
        let first = dir.path().join("first.deb");
        let second = dir.path().join("second.deb");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        fs::write(&first, &bytes).unwrap();
        fs::write(&second, b"other bytes").unwrap();
        let created = store
            .put_if_absent(key, Body::File(&first), &opts(key))
            .unwrap();
        let read = store.get_versioned(key).unwrap().unwrap();
        assert_eq!(created, Some(read.version), "the version a read answers");
        assert!(read.bytes == bytes, "the file's bytes");
        let mode = fs::metadata(store.root().join(key)).unwrap().permissions();
        assert_eq!(mode.mode() & 0o777, 0o644, "public, whatever the umask");

        assert_eq!(
            store
                .put_if_absent(key, Body::File(&second), &opts(key))
                .unwrap(),
            None
        );
        assert!(
            store.get(key).unwrap().unwrap() == bytes,
            "left byte for byte"
        );
        let names: Vec<String> = fs::read_dir(store.root().join(key).parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["speedy-app_1.0-1_amd64.deb"],
            "no temporary file is left"
        );

        let missing = store.put_if_absent(
            "pool/other.deb",
            Body::File(&dir.path().join("nope.deb")),
            &opts("pool/other.deb"),
        );
        match missing {
            Err(StoreError::ReadLocal { path, .. }) => assert!(path.ends_with("nope.deb")),
            other => panic!("{other:?}"),
        }
        assert!(store.head("pool/other.deb").unwrap().is_none());
    }

    #[test]
    fn put_if_absent_of_file_bodies_has_one_winner_among_threads() {
        let (dir, store) = store();
        let sources: Vec<PathBuf> = (0..8)
            .map(|i| {
                let path = dir.path().join(format!("{i}.deb"));
                fs::write(&path, format!("package {i} ").repeat(10_000)).unwrap();
                path
            })
            .collect();
        let key = "pool/main/x/x.deb";
        let winners: Vec<usize> = std::thread::scope(|scope| {
            let handles: Vec<_> = sources
                .iter()
                .enumerate()
                .map(|(i, source)| {
                    let store = &store;
                    scope.spawn(move || {
                        store
                            .put_if_absent(key, Body::File(source), &opts(key))
                            .unwrap()
                            .map(|_| i)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(
            store.get(key).unwrap().unwrap(),
            fs::read(&sources[winners[0]]).unwrap(),
            "the winner's bytes, whole"
        );
    }

    #[test]
    fn files_stream_from_disk_and_bad_keys_are_refused() {
        let (dir, store) = store();
        let source = dir.path().join("x.deb");
        fs::write(&source, b"package").unwrap();
        store
            .put("pool/x.deb", Body::File(&source), &opts("pool/x.deb"))
            .unwrap();
        assert_eq!(
            store.get("pool/x.deb").unwrap().as_deref(),
            Some(&b"package"[..])
        );
        for bad in ["../escape", "/abs", "a//b", ""] {
            assert!(
                matches!(
                    store.put(bad, Body::Bytes(b""), &opts("x")),
                    Err(StoreError::InvalidKey(_))
                ),
                "{bad}"
            );
        }
        let missing = store.put(
            "pool/y.deb",
            Body::File(&dir.path().join("nope")),
            &opts("pool/y.deb"),
        );
        assert!(matches!(missing, Err(StoreError::ReadLocal { .. })));
        assert!(!store.root().join("pool/y.deb").exists());
    }
}
