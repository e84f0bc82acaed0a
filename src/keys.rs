//! Which OpenPGP key signs what, and where it comes from: the one place that decides
//! (docs/ARCHITECTURE.md, "Signing keys").
//!
//! Secrets never come from argv: the key is read from a file (`--key-file`, the
//! `key-file` setting, `SPEEDY_SIGNING_KEY_FILE`) or from the environment variable
//! `SPEEDY_SIGNING_KEY` holding the armored key (CI), the passphrase only from
//! `SPEEDY_SIGNING_PASSPHRASE`. The development key exists only beside a
//! local-directory repository.

use crate::config::{RepoLocation, SigningConfig};
use crate::listener::Listener;
use crate::sign::{KeyAlgorithm, KeyParams, RepoKeys, SignError, SigningKey};
use std::path::{Path, PathBuf};

pub const KEY_ENV: &str = "SPEEDY_SIGNING_KEY";
pub const KEY_FILE_ENV: &str = "SPEEDY_SIGNING_KEY_FILE";
pub const PASSPHRASE_ENV: &str = "SPEEDY_SIGNING_PASSPHRASE";
/// The next key of a rotation, in CI: like the three above.
pub const NEXT_KEY_ENV: &str = "SPEEDY_NEXT_SIGNING_KEY";
pub const NEXT_KEY_FILE_ENV: &str = "SPEEDY_NEXT_SIGNING_KEY_FILE";
pub const NEXT_PASSPHRASE_ENV: &str = "SPEEDY_NEXT_SIGNING_PASSPHRASE";

/// Where a key came from, for messages (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Environment(&'static str),
    /// The development key beside the local repository; `generated` when made just now.
    Development {
        path: PathBuf,
        generated: bool,
    },
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "{}", path.display()),
            KeySource::Environment(name) => write!(f, "${name}"),
            KeySource::Development { path, .. } => {
                write!(f, "{} (development key)", path.display())
            }
        }
    }
}

/// What the key is wanted for; it decides whether the development key may be used,
/// or made, and how messages are worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Signing a repository: a local one falls back to the development key, generated
    /// when missing; a remote one needs a configured key.
    Publish,
    /// Signing suites from packages already published (promote): like `Publish`, but
    /// a development key must exist already, since only it can have signed them.
    Republish,
    /// Signing .debs in a plain build: a configured key or an existing development
    /// key; none at all is fine (the .debs stay unsigned).
    SignDebs,
    /// Exporting the public key or verifying with it: a configured key or an existing
    /// development key; never makes one.
    Read,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("cannot read the signing key {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "no signing key configured: publishing to {destination} needs one. Create one with \
         `cargo speedy key generate --output KEYFILE`, then set `key-file` in [workspace.metadata.speedy.signing], \
         pass --key-file, or put the armored key in ${KEY_ENV}"
    )]
    NotConfigured { destination: String },
    #[error(
        "no signing key found: looked for --key-file, ${KEY_ENV}, ${KEY_FILE_ENV}, `key-file` in \
         [workspace.metadata.speedy.signing]{}{}. Pass --repo-dir DIR for a local repository (its \
         development key is beside it), --key-file PATH, or --manifest-path for the workspace whose \
         repository you mean; or create a key with `cargo speedy key generate --output KEYFILE`",
        manifest.as_ref().map(|p| format!(" of {}", p.display())).unwrap_or_default(),
        dev_key.as_ref().map(|p| format!(", and the development key at {}", p.display())).unwrap_or_default()
    )]
    NotFound {
        manifest: Option<PathBuf>,
        dev_key: Option<PathBuf>,
    },
    #[error(
        "the next signing key from {next} is the current key {fingerprint} (from {current}): \
         a rotation needs a new key; create one with `cargo speedy key generate --output KEYFILE`"
    )]
    NextIsCurrent {
        next: KeySource,
        current: KeySource,
        fingerprint: String,
    },
}

/// A key, with where it came from, and the next key when a rotation is under way.
pub struct ResolvedKey {
    pub key: SigningKey,
    pub source: KeySource,
    /// `next-key-file`, `$SPEEDY_NEXT_SIGNING_KEY` or `$SPEEDY_NEXT_SIGNING_KEY_FILE`.
    pub next: Option<NextKey>,
}

/// The next key of a rotation (docs/ARCHITECTURE.md, "Signing keys").
pub struct NextKey {
    pub key: SigningKey,
    pub source: KeySource,
}

impl ResolvedKey {
    /// The keys that sign the repository's indices: this one and the next.
    pub fn repo_keys(&self) -> RepoKeys {
        RepoKeys::new(self.key.clone(), self.next.as_ref().map(|n| n.key.clone()))
    }
}

/// The places a signing key may come from, in the order they are tried.
pub struct SigningKeys<'a> {
    /// `--key-file`.
    pub flag: Option<&'a Path>,
    pub config: &'a SigningConfig,
    /// The repository the key is for.
    pub location: &'a RepoLocation,
}

impl SigningKeys<'_> {
    /// Finds the key for `purpose`: `--key-file`, then `$SPEEDY_SIGNING_KEY`,
    /// `$SPEEDY_SIGNING_KEY_FILE`, the `key-file` setting, and last the development
    /// key beside a local repository (see [`KeyPurpose`]). Says loudly when the
    /// development key is used. `None` only for [`KeyPurpose::SignDebs`].
    pub fn resolve(
        &self,
        purpose: KeyPurpose,
        listener: &dyn Listener,
    ) -> Result<Option<ResolvedKey>, KeyError> {
        let found = match self.configured()? {
            Some(found) => {
                listener.detail(&format!(
                    "signing key {} from {}",
                    found.key.fingerprint(),
                    found.source
                ));
                found
            }
            None => match self.development_key(purpose, listener)? {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        if purpose == KeyPurpose::SignDebs {
            // Packages carry the current key's signature only.
            return Ok(Some(found));
        }
        self.with_next(found, listener).map(Some)
    }

    /// Adds the next key of a rotation, when one is configured.
    fn with_next(
        &self,
        mut found: ResolvedKey,
        listener: &dyn Listener,
    ) -> Result<ResolvedKey, KeyError> {
        let next = if let Some(armored) = std::env::var(NEXT_KEY_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            let key = SigningKey::from_bytes(
                armored.as_bytes(),
                next_passphrase().as_deref(),
                &format!("${NEXT_KEY_ENV}"),
            )?;
            Some(NextKey {
                key,
                source: KeySource::Environment(NEXT_KEY_ENV),
            })
        } else {
            let path = std::env::var_os(NEXT_KEY_FILE_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| self.config.next_key_file.clone());
            match path {
                Some(path) => Some(NextKey {
                    key: load_file(&path, next_passphrase())?,
                    source: KeySource::File(path),
                }),
                None => None,
            }
        };
        if let Some(next) = &next {
            if next.key.fingerprint() == found.key.fingerprint() {
                return Err(KeyError::NextIsCurrent {
                    next: next.source.clone(),
                    current: found.source.clone(),
                    fingerprint: found.key.fingerprint(),
                });
            }
            listener.detail(&format!(
                "next signing key {} from {} (key rotation: both keys sign)",
                next.key.fingerprint(),
                next.source
            ));
        }
        found.next = next;
        Ok(found)
    }

    /// Like [`SigningKeys::resolve`], for the purposes that cannot do without a key.
    pub fn require(
        &self,
        purpose: KeyPurpose,
        listener: &dyn Listener,
    ) -> Result<ResolvedKey, KeyError> {
        match self.resolve(purpose, listener)? {
            Some(found) => Ok(found),
            None => Err(KeyError::NotFound {
                manifest: self.config.manifest.clone(),
                dev_key: self.location.dev_key_path(),
            }),
        }
    }

    fn configured(&self) -> Result<Option<ResolvedKey>, KeyError> {
        let from_file = |path: &Path| -> Result<Option<ResolvedKey>, KeyError> {
            Ok(Some(ResolvedKey {
                key: load_file(path, passphrase())?,
                source: KeySource::File(path.to_owned()),
                next: None,
            }))
        };
        if let Some(path) = self.flag {
            return from_file(path);
        }
        if let Some(armored) = std::env::var(KEY_ENV).ok().filter(|v| !v.trim().is_empty()) {
            let key = SigningKey::from_bytes(
                armored.as_bytes(),
                passphrase().as_deref(),
                &format!("${KEY_ENV}"),
            )?;
            return Ok(Some(ResolvedKey {
                key,
                source: KeySource::Environment(KEY_ENV),
                next: None,
            }));
        }
        if let Some(path) = std::env::var_os(KEY_FILE_ENV).filter(|v| !v.is_empty()) {
            return from_file(Path::new(&path));
        }
        match &self.config.key_file {
            Some(path) => from_file(path),
            None => Ok(None),
        }
    }

    fn development_key(
        &self,
        purpose: KeyPurpose,
        listener: &dyn Listener,
    ) -> Result<Option<ResolvedKey>, KeyError> {
        let Some(path) = self.location.dev_key_path() else {
            return match purpose {
                KeyPurpose::Publish | KeyPurpose::Republish => Err(KeyError::NotConfigured {
                    destination: self.location.describe(),
                }),
                KeyPurpose::SignDebs | KeyPurpose::Read => Ok(None),
            };
        };
        let generated = !path.exists();
        if generated && purpose != KeyPurpose::Publish {
            return Ok(None);
        }
        let key = if generated {
            let key = SigningKey::generate(&KeyParams {
                algorithm: KeyAlgorithm::Ed25519,
                user_id: "cargo-speedy development key (not for production) <dev@localhost>"
                    .to_owned(),
                passphrase: None,
                created: crate::clock::now(),
            })?;
            write_secret_file(&path, key.to_armored()?.as_bytes())?;
            key
        } else {
            load_file(&path, passphrase())?
        };
        let doing = match (purpose, generated) {
            (_, true) => "generated a development signing key",
            (KeyPurpose::Publish | KeyPurpose::Republish, false) => {
                "signing with the development key"
            }
            (KeyPurpose::SignDebs, false) => "signing the .debs with the development key",
            (KeyPurpose::Read, false) => "using the development key",
        };
        if purpose != KeyPurpose::Read {
            listener.warning(&format!(
                "{doing} at {}: fine for trying things locally, NOT for servers. Create a real key with \
                 `cargo speedy key generate --output KEYFILE`, keep it secret, and set `key-file` in \
                 [workspace.metadata.speedy.signing] (or ${KEY_ENV} in CI)",
                path.display()
            ));
        } else {
            listener.detail(&format!("{doing} at {}", path.display()));
        }
        Ok(Some(ResolvedKey {
            key,
            source: KeySource::Development { path, generated },
            next: None,
        }))
    }
}

/// The passphrase of an encrypted secret key, from the environment only.
pub fn passphrase() -> Option<String> {
    std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty())
}

/// The passphrase of the next key of a rotation, from the environment only.
fn next_passphrase() -> Option<String> {
    std::env::var(NEXT_PASSPHRASE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
}

fn load_file(path: &Path, passphrase: Option<String>) -> Result<SigningKey, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        cause: source,
    })?;
    Ok(SigningKey::from_bytes(
        &bytes,
        passphrase.as_deref(),
        &path.display().to_string(),
    )?)
}

/// Writes a secret key file readable by its owner only, created that way (never
/// world-readable for an instant), via a temporary file in the same directory.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let write_error = |source| KeyError::Write {
        path: path.to_owned(),
        cause: source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_error)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".speedy-key-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(write_error)?;
    temp.write_all(bytes).map_err(write_error)?;
    temp.as_file().sync_all().map_err(write_error)?;
    temp.persist_noclobber(path)
        .map_err(|e| write_error(e.error))?;
    Ok(())
}

/// Writes a public key file. apt reads keyrings as the `_apt` user, so it must be
/// world-readable whatever the umask.
pub fn write_public_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let write_error = |source| KeyError::Write {
        path: path.to_owned(),
        cause: source,
    };
    std::fs::write(path, bytes).map_err(write_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_private_and_never_clobbered() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.asc");
        write_secret_file(&path, b"secret").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(write_secret_file(&path, b"other").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
    }
}
