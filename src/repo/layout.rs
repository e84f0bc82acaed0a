//! Where things live in a Debian repository (keys relative to its root).

/// cargo-speedy's own bookkeeping lives below this prefix; apt never reads it, so it
/// is never public.
pub const PRIVATE_PREFIX: &str = ".speedy/";
pub const LOCK_KEY: &str = ".speedy/lock";
pub const GC_STATE_KEY: &str = ".speedy/pending-deletes.json";
/// Where the last probe of conditional writes is recorded (`publish::probe`), so that a
/// publish costs one GET for it rather than four requests.
pub const PROBE_RECORD_KEY: &str = ".speedy/conditional-writes.json";

/// The signed history of a suite.
pub fn history_key(suite: &str) -> String {
    format!("{PRIVATE_PREFIX}history/{suite}.asc")
}
/// The repository's public key, published beside dists/ for servers to fetch.
pub const KEYRING_KEY: &str = "archive-keyring.gpg";
pub const KEYRING_ASC_KEY: &str = "archive-keyring.asc";
pub const COMPONENT: &str = "main";

/// A key is a relative path of plain components: no `..`, no `.`, no empty parts.
pub fn check_key(key: &str) -> Result<(), String> {
    let valid = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && !key.contains(['\\', '\0', '\n']);
    if valid {
        Ok(())
    } else {
        Err(format!("{key:?} is not a valid repository path"))
    }
}

/// Suite names become path components and apt's `Suite:`; apt accepts letters,
/// digits, `.`, `_`, `-` and `/` is not allowed here (it would nest dists/).
pub fn check_suite(suite: &str) -> Result<(), String> {
    let valid = !suite.is_empty()
        && suite.len() <= 64
        && suite.starts_with(|c: char| c.is_ascii_alphanumeric())
        && suite
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{suite:?} is not a suite name apt can use: letters, digits, '.', '_' and '-', starting with a letter or digit"
        ))
    }
}

/// The pool directory of a package: `pool/main/s/speedy-app`, `pool/main/libf/libfoo`.
pub fn pool_dir(name: &str) -> String {
    let prefix = if name.starts_with("lib") && name.len() > 3 {
        &name[..4]
    } else {
        &name[..1.min(name.len())]
    };
    format!("pool/{COMPONENT}/{prefix}/{name}")
}

/// The pool key of a .deb; the epoch is left out of file names, as in Debian.
pub fn pool_key(name: &str, version: &str, architecture: &str) -> String {
    let version = version.split_once(':').map_or(version, |(_, rest)| rest);
    format!("{}/{name}_{version}_{architecture}.deb", pool_dir(name))
}

pub fn dists_dir(suite: &str) -> String {
    format!("dists/{suite}")
}

pub fn in_release_key(suite: &str) -> String {
    format!("dists/{suite}/InRelease")
}

pub fn release_key(suite: &str) -> String {
    format!("dists/{suite}/Release")
}

pub fn release_gpg_key(suite: &str) -> String {
    format!("dists/{suite}/Release.gpg")
}

/// `main/binary-amd64`, relative to the suite directory.
pub fn binary_dir(architecture: &str) -> String {
    format!("{COMPONENT}/binary-{architecture}")
}

/// The by-hash copy of an index file (relative to the suite directory).
pub fn by_hash_path(index_path: &str, sha256: &str) -> String {
    let dir = index_path.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{dir}/by-hash/SHA256/{sha256}")
}

/// Whether a key is immutable once written (pool files and by-hash copies): these get
/// long cache lifetimes, everything else a short one.
pub fn is_immutable(key: &str) -> bool {
    key.starts_with("pool/") || key.contains("/by-hash/")
}

/// Whether cargo-speedy writes an index file that Release lists. The plain
/// `Packages` is listed, not written, as in Debian's own archive: apt fetches the
/// compressed file and checks what it decompresses against the plain file's hash. (A
/// repository published by an older cargo-speedy has it; it is garbage now.)
pub fn index_is_written(path: &str) -> bool {
    !path.ends_with("/Packages")
}

/// Whether garbage collection may delete a key once nothing references it: pool
/// files, and whatever lies inside a suite's components (indices and their by-hash
/// copies). A suite's Release, Release.gpg and InRelease are never collected.
pub fn is_collectable(key: &str) -> bool {
    key.starts_with("pool/") || (key.starts_with("dists/") && key.split('/').count() >= 5)
}

/// Whether a key is cargo-speedy's own bookkeeping, to be kept private.
pub fn is_private(key: &str) -> bool {
    key.starts_with(PRIVATE_PREFIX)
}

/// The media type of a repository object, from what its key says it is.
pub fn content_type(key: &str) -> &'static str {
    if key.ends_with(".deb") {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_paths() {
        assert_eq!(
            pool_key("speedy-app", "1.4.0-1", "amd64"),
            "pool/main/s/speedy-app/speedy-app_1.4.0-1_amd64.deb"
        );
        assert_eq!(
            pool_key("libfoo", "2:1.0-1", "all"),
            "pool/main/libf/libfoo/libfoo_1.0-1_all.deb"
        );
        assert_eq!(pool_dir("lib"), "pool/main/l/lib");
    }

    #[test]
    fn by_hash() {
        assert_eq!(
            by_hash_path("main/binary-amd64/Packages.xz", "ab"),
            "main/binary-amd64/by-hash/SHA256/ab"
        );
    }

    #[test]
    fn keys_and_suites() {
        for good in [
            "pool/main/s/x/x_1_all.deb",
            "dists/dev/InRelease",
            ".speedy/lock",
        ] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/etc/passwd", "a//b", "a/../b", "./a", "a/", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        for good in ["dev", "stable", "bookworm-backports", "v1.2_x"] {
            assert!(check_suite(good).is_ok(), "{good}");
        }
        for bad in [
            "", "dev/x", "dev test", "../x", "-dev", ".hidden", "dév", "a;b",
        ] {
            assert!(check_suite(bad).is_err(), "{bad}");
        }
        assert!(is_immutable("pool/main/s/x.deb"));
        assert!(is_immutable(
            "dists/dev/main/binary-amd64/by-hash/SHA256/ab"
        ));
        assert!(!is_immutable("dists/dev/InRelease"));
    }

    #[test]
    fn only_pool_files_and_component_files_are_collectable() {
        for key in [
            "pool/main/s/speedy-app/speedy-app_1.0-1_amd64.deb",
            "dists/dev/main/binary-amd64/Packages.xz",
            "dists/dev/main/binary-amd64/by-hash/SHA256/ab",
        ] {
            assert!(is_collectable(key), "{key}");
        }
        for key in [
            "dists/dev/InRelease",
            "dists/dev/Release",
            "dists/dev/Release.gpg",
            ".speedy/lock",
            "archive-keyring.gpg",
        ] {
            assert!(!is_collectable(key), "{key}");
        }
    }
}
