//! OpenPGP keys and signatures for the repository and the .debs.
//!
//! What is produced here has to satisfy the verifiers apt uses, not just rpgp: gpgv 2.2
//! (Debian 12) and sqv (Debian 13's apt). Hence v4 keys, SHA-512 digests, Ed25519 in the
//! legacy EdDSA format (algorithm 22) or RSA, and cleartext signatures over text whose
//! trailing whitespace was trimmed before signing.
//!
//! Secrets (key material, passphrases) never appear in errors, `Debug` output or logs:
//! errors name where a key came from (a file path or an environment variable *name*),
//! never what it contained.

mod cert;

pub use cert::{FindingSeverity, KeyFinding, KeyHealth};

use std::{fmt, str::FromStr};

use pgp::{
    composed::{
        ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, KeyType,
        PublicOrSecret, SecretKeyParamsBuilder, SignedPublicKey, SignedPublicSubKey,
        SignedSecretKey,
    },
    crypto::{hash::HashAlgorithm, sym::SymmetricKeyAlgorithm},
    packet::{
        self, Features, KeyFlags, Signature, SignatureConfig, SignatureType, Subpacket,
        SubpacketData,
    },
    ser::Serialize,
    types::{
        CompressionAlgorithm, KeyDetails, KeyVersion, Password, S2kParams, SecretParams,
        SignedUser, SigningKey as PgpSigningKey, StringToKey, Tag, Timestamp,
    },
};
use zeroize::Zeroizing;

/// The digest of every signature made here. sqv rejects SHA-1 and its policy tightens
/// over time; SHA-512 is what Debian's own archive keys use.
const DIGEST: HashAlgorithm = HashAlgorithm::Sha512;

/// Key algorithms offered for new repository keys (as `--algorithm` names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// Ed25519 as OpenPGP v4 "EdDSA legacy" (algorithm 22). The RFC 9580 form
    /// (algorithm 27) is rejected by gpgv and by Debian 12's sqv.
    Ed25519,
    Rsa3072,
    Rsa4096,
}

impl KeyAlgorithm {
    fn key_type(self) -> KeyType {
        match self {
            KeyAlgorithm::Ed25519 => KeyType::Ed25519Legacy,
            KeyAlgorithm::Rsa3072 => KeyType::Rsa(3072),
            KeyAlgorithm::Rsa4096 => KeyType::Rsa(4096),
        }
    }

    /// The names accepted by [`FromStr`] and printed by [`fmt::Display`].
    pub const NAMES: [&'static str; 3] = ["ed25519", "rsa3072", "rsa4096"];
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa3072 => "rsa3072",
            KeyAlgorithm::Rsa4096 => "rsa4096",
        })
    }
}

impl FromStr for KeyAlgorithm {
    type Err = SignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            "rsa3072" => Ok(KeyAlgorithm::Rsa3072),
            "rsa4096" => Ok(KeyAlgorithm::Rsa4096),
            _ => Err(SignError::UnknownAlgorithm {
                name: s.to_string(),
            }),
        }
    }
}

/// What a new key looks like.
#[derive(Clone)]
pub struct KeyParams {
    pub algorithm: KeyAlgorithm,
    /// "Name <email>"
    pub user_id: String,
    /// Protects the exported secret key. `None` and `Some("")` both mean unprotected,
    /// as with GnuPG.
    pub passphrase: Option<String>,
    /// Key creation time, unix seconds. Also the time of the self-signature, so that
    /// signatures made at any time from `created` on verify (sqv checks that the user ID
    /// binding already existed when the data was signed).
    pub created: u64,
}

impl fmt::Debug for KeyParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyParams")
            .field("algorithm", &self.algorithm)
            .field("user_id", &self.user_id)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("created", &self.created)
            .finish()
    }
}

/// Errors with keys and signing. `origin` is where a key came from: a file path or the
/// name of an environment variable, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{origin} does not contain an OpenPGP key (expected an ASCII-armored or binary OpenPGP key)")]
    NotAKey { origin: String },
    #[error("{origin} contains {count} OpenPGP keys; expected exactly one")]
    MultipleKeys { origin: String, count: usize },
    #[error(
        "{origin} contains a public key, but signing needs the secret key (`-----BEGIN PGP PRIVATE KEY BLOCK-----`)"
    )]
    PublicKeyGiven { origin: String },
    #[error("the secret key from {origin} is protected by a passphrase, but none was given")]
    PassphraseRequired { origin: String },
    #[error("the passphrase does not unlock the secret key from {origin}")]
    WrongPassphrase { origin: String },
    #[error(
        "the secret key from {origin} holds no usable secret signing key material (a GnuPG stub: \
         the key lives on a smartcard or was exported without its secret part)"
    )]
    SecretKeyMissing { origin: String },
    #[error("the key from {origin} cannot sign: neither the primary key nor any subkey has the signing capability")]
    NotASigningKey { origin: String },
    #[error("the key from {origin} has no valid self-signature, so gpgv and sqv would ignore it")]
    NoValidSelfSignature { origin: String },
    #[error(
        "the key {fingerprint} from {origin} is bound only by SHA-1 self-signatures, which apt's sqv (trixie) \
         rejects since 2026-02-01 (and so does cargo-speedy): re-sign it with SHA-512, \
         `gpg --cert-digest-algo SHA512 --quick-set-expire {fingerprint} 2y` (add `'*'` for its subkeys), \
         export it again, and publish; servers get the re-signed key through the keyring package"
    )]
    Sha1SelfSignature { origin: String, fingerprint: String },
    #[error("the key from {origin} is revoked")]
    Revoked { origin: String },
    #[error(
        "the key from {origin} has expired; extend its expiry (e.g. `gpg --quick-set-expire`) and export it again"
    )]
    Expired { origin: String },
    #[error("the key from {origin} is not acceptable for an apt repository: {what}")]
    WeakAlgorithm { origin: String, what: String },
    #[error("unknown key algorithm `{name}` (expected one of: ed25519, rsa3072, rsa4096)")]
    UnknownAlgorithm { name: String },
    #[error("invalid user ID for a new key: {reason}")]
    InvalidUserId { reason: String },
    #[error(
        "the time {time} (unix seconds) cannot be represented in an OpenPGP v4 key or signature"
    )]
    TimeOutOfRange { time: u64 },
    #[error("cannot clearsign this text: {reason}")]
    InvalidText { reason: String },
    /// An internal OpenPGP failure; the message never contains secret material.
    #[error("OpenPGP error: {0}")]
    Pgp(String),
}

/// Wraps an rpgp error raised while working with secret material. rpgp's messages name
/// packets and algorithms, not key bytes or passphrases, so they are safe to show.
fn pgp_err(context: &'static str) -> impl FnOnce(pgp::errors::Error) -> SignError {
    move |e| SignError::Pgp(format!("{context}: {e}"))
}

/// Why a signed message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not an OpenPGP signed message or signature at all.
    #[error("not a valid OpenPGP signature: {0}")]
    Malformed(String),
    #[error("signed by {} but the expected key is {expected}", describe_issuers(.issuers))]
    SignedByOtherKey {
        /// Fingerprints (or 16-digit key IDs where a signature names no fingerprint) of
        /// the keys that made the signatures, upper-case hex.
        issuers: Vec<String>,
        expected: String,
    },
    /// Made by the expected key but does not verify: the content was changed after
    /// signing, or the signature uses a digest apt rejects (SHA-1, MD5, RIPEMD-160).
    #[error("the signature by the expected key does not verify: the signed content was modified or the signature is damaged")]
    BadSignature,
}

fn describe_issuers(issuers: &[String]) -> String {
    if issuers.is_empty() {
        "an unidentified key".to_string()
    } else {
        issuers.join(", ")
    }
}

/// Which component of the secret key makes signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    Primary,
    /// Index into `SignedSecretKey::secret_subkeys`.
    Subkey(usize),
}

/// A secret key ready to sign. The passphrase stays with it because rpgp unlocks the key
/// material per signature instead of keeping it decrypted.
#[derive(Clone)]
pub struct SigningKey {
    key: SignedSecretKey,
    passphrase: Zeroizing<String>,
    signer: Signer,
    /// The earliest signature time the verifiers accept: the signing key's creation, or
    /// its self-signature or binding signature if those are younger (sqv checks that the
    /// key was bound when the data was signed).
    not_before: u32,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a v4 primary key that certifies and signs (no subkeys: nothing else is
    /// needed for an apt repository), with one self-signed user ID preferring SHA-512.
    pub fn generate(params: &KeyParams) -> Result<Self, SignError> {
        validate_user_id(&params.user_id)?;
        let created = timestamp(params.created)?;
        let mut builder = SecretKeyParamsBuilder::default();
        builder
            .version(KeyVersion::V4)
            .key_type(params.algorithm.key_type())
            .can_certify(true)
            .can_sign(true)
            .created_at(created)
            .primary_user_id(params.user_id.clone());
        let key_params = builder
            .build()
            .map_err(|e| SignError::Pgp(format!("invalid key parameters: {e}")))?;
        let mut rng = rand::thread_rng();
        let mut key = key_params
            .generate(&mut rng)
            .map_err(pgp_err("key generation failed"))?;

        // rpgp dates the self-signature "now". Re-issue it at the key's creation time,
        // which may lie in the past: sqv refuses data signatures older than the
        // self-signature, so signatures dated between the two would not verify.
        let user = key
            .details
            .users
            .first()
            .ok_or_else(|| SignError::Pgp("key generation produced no user ID".to_string()))?;
        let self_sig = self_certification(&key.primary_key, &user.id, created)?;
        key.details.users = vec![SignedUser::new(user.id.clone(), vec![self_sig])];

        let passphrase = params.passphrase.as_deref().unwrap_or("");
        if !passphrase.is_empty() {
            key.primary_key
                .set_password(&mut rng, &Password::from(passphrase))
                .map_err(pgp_err("protecting the key with the passphrase failed"))?;
        }
        Ok(SigningKey {
            key,
            passphrase: Zeroizing::new(passphrase.to_string()),
            signer: Signer::Primary,
            not_before: created.as_secs(),
        })
    }

    /// Loads an ASCII-armored secret key; see [`SigningKey::from_bytes`].
    pub fn from_armored(
        armored: &str,
        passphrase: Option<&str>,
        origin: &str,
    ) -> Result<Self, SignError> {
        Self::from_bytes(armored.as_bytes(), passphrase, origin)
    }

    /// Loads a secret key, ASCII-armored or binary (as `gpg --export-secret-keys` writes
    /// it), and checks that it can actually sign something apt accepts: the passphrase
    /// unlocks it (checked with a test signature), it is neither revoked nor expired, and
    /// its algorithm is accepted by gpgv and sqv.
    ///
    /// Like GnuPG, signs with the newest valid signing subkey if there is one, otherwise
    /// with the primary key.
    pub fn from_bytes(
        bytes: &[u8],
        passphrase: Option<&str>,
        origin: &str,
    ) -> Result<Self, SignError> {
        let origin_s = || origin.to_string();
        let key = match parse_single_key(bytes, origin)? {
            PublicOrSecret::Secret(key) => key,
            PublicOrSecret::Public(_) => {
                return Err(SignError::PublicKeyGiven { origin: origin_s() })
            }
        };
        let cert = key.to_public_key();
        let now = now();
        let primary = cert::primary(&cert).ok_or_else(|| {
            if cert::bound_only_by_sha1(&cert) {
                SignError::Sha1SelfSignature {
                    origin: origin_s(),
                    fingerprint: format!("{:X}", cert.primary_key.fingerprint()),
                }
            } else {
                SignError::NoValidSelfSignature { origin: origin_s() }
            }
        })?;
        if primary.revoked {
            return Err(SignError::Revoked { origin: origin_s() });
        }
        if !primary.usable_at(now) {
            return Err(SignError::Expired { origin: origin_s() });
        }

        // Candidates in GnuPG's order of preference; a candidate whose secret half is
        // missing (a stub, or a subkey exported without secret) is skipped.
        // Each with the earliest time its signatures verify.
        let mut candidates: Vec<(Signer, u64)> = Vec::new();
        let mut any_capable = false;
        for (sub, state) in cert::signing_subkeys(&cert) {
            if !state.usable_at(now) {
                continue;
            }
            any_capable = true;
            if let Some(index) = secret_subkey_index(&key, sub) {
                candidates.push((
                    Signer::Subkey(index),
                    state.valid_from.max(primary.valid_from),
                ));
            }
        }
        if primary.may_sign {
            any_capable = true;
            candidates.push((Signer::Primary, primary.valid_from));
        }
        let usable = candidates
            .into_iter()
            .find(|(signer, _)| !is_stub(secret_params_of(&key, *signer)));
        let Some((signer, valid_from)) = usable else {
            return Err(if any_capable {
                SignError::SecretKeyMissing { origin: origin_s() }
            } else {
                SignError::NotASigningKey { origin: origin_s() }
            });
        };

        let signing_key = SigningKey {
            key,
            passphrase: Zeroizing::new(passphrase.unwrap_or("").to_string()),
            signer,
            not_before: timestamp(valid_from)?.as_secs(),
        };
        let component = signing_key.signer()?;
        if let Some(what) = cert::refused_algorithm(&component) {
            return Err(SignError::WeakAlgorithm {
                origin: origin_s(),
                what,
            });
        }
        signing_key.check_unlocks(passphrase.is_some(), origin)?;
        Ok(signing_key)
    }

    /// Proves the passphrase unlocks the signing key by making and verifying a signature;
    /// decrypting alone is not enough for keys protected only by a 16-bit checksum.
    fn check_unlocks(&self, passphrase_given: bool, origin: &str) -> Result<(), SignError> {
        let encrypted = secret_params_of(&self.key, self.signer).is_encrypted();
        if encrypted && !passphrase_given {
            return Err(SignError::PassphraseRequired {
                origin: origin.to_string(),
            });
        }
        let probe = b"cargo-speedy: checking that the key can sign";
        let works = self
            .detached(&probe[..], u64::from(self.not_before))
            .ok()
            .is_some_and(|sig| {
                self.public_key()
                    .verify_signatures(&[sig.signature], probe)
                    .is_ok()
            });
        match (works, encrypted) {
            (true, _) => Ok(()),
            (false, true) => Err(SignError::WrongPassphrase {
                origin: origin.to_string(),
            }),
            (false, false) => Err(SignError::Pgp(format!(
                "the secret key from {origin} does not match its public key"
            ))),
        }
    }

    /// The ASCII-armored secret key, still protected by its passphrase if it has one.
    pub fn to_armored(&self) -> Result<String, SignError> {
        self.key
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_err("armoring the secret key failed"))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            certs: vec![self.key.to_public_key()],
        }
    }

    /// The primary key's fingerprint, upper-case hex (40 digits for v4).
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.key.primary_key.fingerprint())
    }

    /// The primary key's creation time, unix seconds.
    pub fn created(&self) -> u64 {
        u64::from(self.key.primary_key.created_at().as_secs())
    }

    /// Clearsigns `text` for an InRelease file.
    ///
    /// Trailing spaces and tabs are removed from every line before signing (CR LF line
    /// ends become LF): gpgv hashes the cleartext without them, and apt hands sqv the
    /// text exactly as written, so only trimmed text verifies with both. As in
    /// GnuPG's output, the final line break of `text` ends the text block and is not
    /// signed; [`PublicKey::verify_cleartext`] restores it.
    ///
    /// The signature is dated `time` (see [`SigningKey::sign_detached_binary`] for times
    /// before the key's creation); Ed25519 and RSA signatures are deterministic, so
    /// identical inputs give identical output.
    pub fn clearsign(&self, text: &str, time: u64) -> Result<String, SignError> {
        let text = cleartext_to_sign(text)?;
        let signer = self.signer()?;
        let config =
            data_signature_config(*signer, SignatureType::Text, self.signature_time(time)?)
                .map_err(pgp_err("preparing the signature failed"))?;
        let message = CleartextSignedMessage::new(&text, config, &signer, &self.password())
            .map_err(pgp_err("clearsigning failed"))?;
        message
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_err("armoring the signed message failed"))
    }

    /// An ASCII-armored detached signature (Release.gpg) over `data`.
    pub fn sign_detached_armored(&self, data: &[u8], time: u64) -> Result<String, SignError> {
        self.detached(data, time)?
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_err("armoring the signature failed"))
    }

    /// A binary detached signature over `data` (debsigs' `_gpgorigin`).
    ///
    /// All signatures are dated `time`, except that a `time` before the signing key was
    /// created is replaced by the key's creation time: gpgv refuses signatures older
    /// than their key. (For a loaded key whose self-signature is younger than the key,
    /// the self-signature's time is used instead: sqv refuses signatures made before
    /// it. Keys from [`SigningKey::generate`] are self-signed at creation.) The result
    /// still depends only on the key and `time`, so it stays reproducible.
    pub fn sign_detached_binary(&self, data: &[u8], time: u64) -> Result<Vec<u8>, SignError> {
        self.detached(data, time)?
            .to_bytes()
            .map_err(pgp_err("serializing the signature failed"))
    }

    /// [`SigningKey::sign_detached_binary`] over bytes read from `data`, so a large
    /// .deb is signed without holding it in memory.
    pub fn sign_detached_binary_reader(
        &self,
        data: impl std::io::Read,
        time: u64,
    ) -> Result<Vec<u8>, SignError> {
        self.detached(data, time)?
            .to_bytes()
            .map_err(pgp_err("serializing the signature failed"))
    }

    fn detached(
        &self,
        data: impl std::io::Read,
        time: u64,
    ) -> Result<DetachedSignature, SignError> {
        let signer = self.signer()?;
        let config =
            data_signature_config(*signer, SignatureType::Binary, self.signature_time(time)?)
                .map_err(pgp_err("preparing the signature failed"))?;
        let signature = config
            .sign(&signer, &self.password(), data)
            .map_err(pgp_err("signing failed"))?;
        Ok(DetachedSignature::new(signature))
    }

    // The box is what rpgp implements its `SigningKey` trait for (not for `&dyn`), and
    // its signing functions take `&impl SigningKey`.
    #[allow(clippy::redundant_allocation)]
    fn signer(&self) -> Result<Box<&dyn PgpSigningKey>, SignError> {
        match self.signer {
            Signer::Primary => Ok(Box::new(&self.key.primary_key)),
            Signer::Subkey(index) => self
                .key
                .secret_subkeys
                .get(index)
                .map(|sub| Box::new(&sub.key as &dyn PgpSigningKey))
                .ok_or_else(|| SignError::Pgp("the signing subkey disappeared".to_string())),
        }
    }

    /// gpgv refuses signatures made before their key existed and sqv those made before
    /// the key's self-signature, so earlier times are moved to the first second both
    /// accept; the output stays a function of key and `time`.
    fn signature_time(&self, time: u64) -> Result<Timestamp, SignError> {
        timestamp(time.max(u64::from(self.not_before)))
    }

    fn password(&self) -> Password {
        Password::from(self.passphrase.as_str())
    }
}

/// A certificate (public key) to verify repository signatures with and to hand to
/// servers (`/usr/share/keyrings/*.gpg` and `.asc`); during a key rotation, a keyring of
/// the current and the next certificate (see [`PublicKey::keyring`]).
#[derive(Clone)]
pub struct PublicKey {
    /// Never empty; the first is the current key.
    certs: Vec<SignedPublicKey>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("fingerprints", &self.fingerprints())
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Reads a public key, ASCII-armored or binary. Given a secret key, keeps only its
    /// public part, so the configured signing key can stand in for the public key.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, SignError> {
        let key = match parse_single_key(bytes, origin)? {
            PublicOrSecret::Public(key) => key,
            PublicOrSecret::Secret(key) => key.to_public_key(),
        };
        Ok(PublicKey { certs: vec![key] })
    }

    /// Reads a keyring of one or more public keys (what `Signed-By:` names), as
    /// `key export` and the keyring package write it.
    pub fn keyring_from_bytes(bytes: &[u8], origin: &str) -> Result<Self, SignError> {
        let not_a_key = || SignError::NotAKey {
            origin: origin.to_string(),
        };
        let mut certs = Vec::new();
        for key in parse_keys(bytes).map_err(|_| not_a_key())? {
            certs.push(match key {
                PublicOrSecret::Public(key) => key,
                PublicOrSecret::Secret(key) => key.to_public_key(),
            });
        }
        if certs.is_empty() {
            return Err(not_a_key());
        }
        Ok(PublicKey { certs })
    }

    /// One keyring of several keys: a signature by any of them verifies. The first
    /// key's fingerprint is [`PublicKey::fingerprint`].
    pub fn keyring(keys: &[PublicKey]) -> Self {
        let mut certs: Vec<SignedPublicKey> = Vec::new();
        for cert in keys.iter().flat_map(|k| &k.certs) {
            let fingerprint = cert.primary_key.fingerprint();
            if !certs
                .iter()
                .any(|c| c.primary_key.fingerprint() == fingerprint)
            {
                certs.push(cert.clone());
            }
        }
        PublicKey { certs }
    }

    /// The binary keyring, the certificates one after the other: for `gpgv --keyring`,
    /// `sqv --keyring` and apt's `Signed-By:` (as a `.gpg` file).
    pub fn to_binary(&self) -> Result<Vec<u8>, SignError> {
        let mut bytes = Vec::new();
        for cert in &self.certs {
            bytes.extend(
                cert.to_bytes()
                    .map_err(pgp_err("serializing the public key failed"))?,
            );
        }
        Ok(bytes)
    }

    /// The ASCII-armored keyring (`.asc`), all certificates in one armor block.
    pub fn to_armored(&self) -> Result<String, SignError> {
        let mut out = Vec::new();
        pgp::armor::write(
            &self.certs,
            pgp::armor::BlockType::PublicKey,
            &mut out,
            None,
            true,
        )
        .map_err(pgp_err("armoring the public key failed"))?;
        String::from_utf8(out).map_err(|_| SignError::Pgp("armor is not UTF-8".to_string()))
    }

    /// The (first) primary key's fingerprint, upper-case hex (40 digits for v4).
    pub fn fingerprint(&self) -> String {
        self.fingerprints().swap_remove(0)
    }

    /// Every key's fingerprint, the current key first.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|cert| format!("{:X}", cert.primary_key.fingerprint()))
            .collect()
    }

    /// The newest creation time of the keys, unix seconds.
    pub fn newest_created(&self) -> u64 {
        self.certs
            .iter()
            .map(|cert| u64::from(cert.primary_key.created_at().as_secs()))
            .max()
            .unwrap_or(0)
    }

    /// The oldest creation time of the keys, unix seconds.
    pub fn oldest_created(&self) -> u64 {
        self.certs
            .iter()
            .map(|cert| u64::from(cert.primary_key.created_at().as_secs()))
            .min()
            .unwrap_or(0)
    }

    pub fn user_ids(&self) -> Vec<String> {
        self.certs
            .iter()
            .flat_map(|cert| &cert.details.users)
            .map(|user| String::from_utf8_lossy(user.id.id()).into_owned())
            .collect()
    }

    /// What apt's verifiers will make of each key, now and in the coming days; see
    /// [`KeyHealth`].
    pub fn health(&self, now: u64) -> Vec<KeyHealth> {
        self.certs
            .iter()
            .map(|cert| cert::health(cert, now))
            .collect()
    }

    /// Verifies a cleartext-signed message (InRelease) and returns the signed text as apt
    /// reads it: dash-escaping removed, trailing whitespace trimmed, LF line ends, and
    /// ending in a line break (the one that separates the text from the signature).
    pub fn verify_cleartext(&self, signed: &str) -> Result<String, VerifyError> {
        let message = Cleartext::parse(signed)?;
        self.verify_signatures(&message.signatures, message.signed_text.as_bytes())?;
        let mut text = message.signed_text.replace("\r\n", "\n");
        text.push('\n');
        Ok(text)
    }

    /// The fingerprints of the keys of this keyring that made a good signature of a
    /// cleartext-signed message: during a rotation, both keys' signatures must be there.
    pub fn cleartext_signers(&self, signed: &str) -> Result<Vec<String>, VerifyError> {
        let message = Cleartext::parse(signed)?;
        Ok(self
            .certs
            .iter()
            .filter(|cert| {
                let one = PublicKey {
                    certs: vec![(*cert).clone()],
                };
                one.verify_signatures(&message.signatures, message.signed_text.as_bytes())
                    .is_ok()
            })
            .map(|cert| format!("{:X}", cert.primary_key.fingerprint()))
            .collect())
    }

    /// Verifies a detached signature (ASCII-armored or binary) over `data`.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        let (signatures, _headers) = DetachedSignature::from_reader_many(signature)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let signatures = signatures
            .map(|sig| sig.map(|sig| sig.signature))
            .collect::<Result<Vec<Signature>, _>>()
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if signatures.is_empty() {
            return Err(VerifyError::Malformed("no signature packets".to_string()));
        }
        self.verify_signatures(&signatures, data)
    }

    /// Succeeds if any signature was made by one of these certificates (its primary key
    /// or a signing subkey) and verifies, as gpgv does.
    fn verify_signatures(&self, signatures: &[Signature], data: &[u8]) -> Result<(), VerifyError> {
        let mut verifiers: Vec<Verifier<'_>> = Vec::new();
        for cert in &self.certs {
            verifiers.push(Verifier::Primary(&cert.primary_key));
            verifiers.extend(
                cert::signing_subkeys(cert)
                    .into_iter()
                    .map(|(sub, _)| Verifier::Subkey(sub)),
            );
        }

        let mut issuers: Vec<String> = Vec::new();
        let mut ours = false;
        for signature in signatures {
            let fingerprints = signature.issuer_fingerprint();
            let key_ids = signature.issuer_key_id();
            let anonymous = fingerprints.is_empty() && key_ids.is_empty();
            for verifier in &verifiers {
                let matches = anonymous
                    || fingerprints.iter().any(|fp| **fp == verifier.fingerprint())
                    || key_ids.iter().any(|id| **id == verifier.key_id());
                if !matches {
                    continue;
                }
                ours = true;
                if acceptable_digest(signature) && verifier.verify(signature, data) {
                    return Ok(());
                }
            }
            if fingerprints.is_empty() {
                issuers.extend(key_ids.iter().map(|id| hex_upper(id.as_ref())));
            } else {
                issuers.extend(fingerprints.iter().map(|fp| format!("{fp:X}")));
            }
        }
        if ours {
            return Err(VerifyError::BadSignature);
        }
        issuers.sort();
        issuers.dedup();
        Err(VerifyError::SignedByOtherKey {
            issuers,
            expected: self.fingerprints().join(", "),
        })
    }
}

/// A cleartext-signed message (RFC 9580, section 7), parsed in one pass. rpgp's own
/// parser searches everything read so far after every line, which is quadratic: a
/// suite history of a few MB took seconds of CPU on every publish.
struct Cleartext {
    /// What the signatures cover: dash-escaping removed, trailing spaces and tabs
    /// trimmed, lines joined by CR LF, no final line break.
    signed_text: String,
    signatures: Vec<Signature>,
}

impl Cleartext {
    const BEGIN: &'static str = "-----BEGIN PGP SIGNED MESSAGE-----";
    const SIGNATURE: &'static str = "-----BEGIN PGP SIGNATURE-----";

    fn parse(signed: &str) -> Result<Self, VerifyError> {
        let malformed = |why: &str| VerifyError::Malformed(why.to_string());
        let rest = signed
            .trim_start_matches(['\r', '\n'])
            .strip_prefix(Self::BEGIN)
            .ok_or_else(|| malformed("not a cleartext-signed message"))?;
        let rest = rest
            .strip_prefix("\r\n")
            .or_else(|| rest.strip_prefix('\n'))
            .ok_or_else(|| malformed("no line break after the message's first line"))?;
        // Armor headers (`Hash: ...`) up to the first empty line.
        let mut body_start = None;
        let mut offset = 0;
        for line in rest.split_inclusive('\n') {
            offset += line.len();
            let content = line.trim_end_matches(['\r', '\n']);
            if content.is_empty() {
                body_start = Some(offset);
                break;
            }
            if !content.starts_with("Hash: ") {
                return Err(malformed("an armor header other than Hash:"));
            }
        }
        let body =
            &rest[body_start.ok_or_else(|| malformed("no empty line after the headers"))?..];
        let (text, signature) = if let Some(stripped) = body.strip_prefix(Self::SIGNATURE) {
            ("", &body[..Self::SIGNATURE.len() + stripped.len()])
        } else {
            let at = body
                .find(&format!("\n{}", Self::SIGNATURE))
                .ok_or_else(|| malformed("no signature block"))?;
            let text = &body[..at];
            (text.strip_suffix('\r').unwrap_or(text), &body[at + 1..])
        };
        let mut signed_text = String::with_capacity(text.len() + text.len() / 32);
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                signed_text.push_str("\r\n");
            }
            let line = line.strip_suffix('\r').unwrap_or(line);
            let line = line.strip_prefix("- ").unwrap_or(line);
            signed_text.push_str(line.trim_end_matches([' ', '\t']));
        }
        let (parsed, _headers) = DetachedSignature::from_reader_many(signature.as_bytes())
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let signatures = parsed
            .map(|sig| sig.map(|sig| sig.signature))
            .collect::<Result<Vec<Signature>, _>>()
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if signatures.is_empty() {
            return Err(malformed("the message carries no signature"));
        }
        Ok(Cleartext {
            signed_text,
            signatures,
        })
    }
}

/// The keys that sign a repository's indices (InRelease, Release.gpg) and its
/// bookkeeping: the current key and, during a rotation, the next one, each making its
/// own signature, so servers that trust either key accept the repository
/// (docs/ARCHITECTURE.md, "Signing keys"). Packages (debsigs) are signed by the
/// current key only.
#[derive(Debug, Clone)]
pub struct RepoKeys {
    current: SigningKey,
    next: Option<SigningKey>,
}

impl RepoKeys {
    pub fn new(current: SigningKey, next: Option<SigningKey>) -> Self {
        RepoKeys { current, next }
    }

    /// The key that signs packages, and the one messages name.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    pub fn next(&self) -> Option<&SigningKey> {
        self.next.as_ref()
    }

    fn all(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(self.next.as_ref())
    }

    /// The current key's fingerprint.
    pub fn fingerprint(&self) -> String {
        self.current.fingerprint()
    }

    /// The keyring of every signing key: what servers trust while the keys sign.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::keyring(&self.all().map(SigningKey::public_key).collect::<Vec<_>>())
    }

    /// Clearsigns `text` with every key (see [`SigningKey::clearsign`]).
    pub fn clearsign(&self, text: &str, time: u64) -> Result<String, SignError> {
        if self.next.is_none() {
            return self.current.clearsign(text, time);
        }
        let text = cleartext_to_sign(text)?;
        let mut signers = Vec::new();
        for key in self.all() {
            let signer = key.signer()?;
            let config =
                data_signature_config(*signer, SignatureType::Text, key.signature_time(time)?)
                    .map_err(pgp_err("preparing the signature failed"))?;
            signers.push((config, signer, key.password()));
        }
        let message = CleartextSignedMessage::new_many(&text, |normalized| {
            signers
                .into_iter()
                .map(|(config, signer, password)| {
                    config.sign(&signer, &password, normalized.as_bytes())
                })
                .collect()
        })
        .map_err(pgp_err("clearsigning failed"))?;
        message
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_err("armoring the signed message failed"))
    }

    /// An ASCII-armored detached signature (Release.gpg) over `data`: one armor block
    /// with a signature packet per key, as Debian's own Release.gpg.
    pub fn sign_detached_armored(&self, data: &[u8], time: u64) -> Result<String, SignError> {
        let signatures = self
            .all()
            .map(|key| key.detached(data, time))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        pgp::armor::write(
            &signatures,
            pgp::armor::BlockType::Signature,
            &mut out,
            None,
            true,
        )
        .map_err(pgp_err("armoring the signature failed"))?;
        String::from_utf8(out).map_err(|_| SignError::Pgp("armor is not UTF-8".to_string()))
    }
}

/// A component key of a certificate that may have made a data signature.
enum Verifier<'a> {
    Primary(&'a packet::PublicKey),
    Subkey(&'a SignedPublicSubKey),
}

impl Verifier<'_> {
    fn fingerprint(&self) -> pgp::types::Fingerprint {
        match self {
            Verifier::Primary(key) => key.fingerprint(),
            Verifier::Subkey(sub) => sub.key.fingerprint(),
        }
    }

    fn key_id(&self) -> pgp::types::KeyId {
        match self {
            Verifier::Primary(key) => key.legacy_key_id(),
            Verifier::Subkey(sub) => sub.key.legacy_key_id(),
        }
    }

    fn verify(&self, signature: &Signature, data: &[u8]) -> bool {
        match self {
            Verifier::Primary(key) => signature.verify(*key, data).is_ok(),
            Verifier::Subkey(sub) => signature.verify(&sub.key, data).is_ok(),
        }
    }
}

/// apt's verifiers reject these digests, so a signature using them does not count.
fn acceptable_digest(signature: &Signature) -> bool {
    !matches!(
        signature.hash_alg(),
        None | Some(HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160)
    )
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Parses exactly one key, public or secret. rpgp's parse errors are not passed on: for
/// a malformed secret key they could describe its packets.
fn parse_single_key(bytes: &[u8], origin: &str) -> Result<PublicOrSecret, SignError> {
    let not_a_key = || SignError::NotAKey {
        origin: origin.to_string(),
    };
    let mut keys = parse_keys(bytes).map_err(|_| not_a_key())?;
    match keys.len() {
        0 => Err(not_a_key()),
        1 => keys.pop().ok_or_else(not_a_key),
        count => Err(SignError::MultipleKeys {
            origin: origin.to_string(),
            count,
        }),
    }
}

/// Every key in `bytes`, armored (one or more blocks) or binary.
fn parse_keys(bytes: &[u8]) -> Result<Vec<PublicOrSecret>, pgp::errors::Error> {
    // The reader stops after the first armor block, so a file of two concatenated
    // armored keys would pass as one: read every block.
    let mut keys = Vec::new();
    for block in armor_blocks(bytes) {
        let (parsed, _headers) = PublicOrSecret::from_reader_many(block)?;
        keys.extend(parsed.collect::<Result<Vec<_>, _>>()?);
    }
    Ok(keys)
}

fn armor_blocks(bytes: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN PGP ";
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&at| bytes[at..].starts_with(BEGIN) && (at == 0 || bytes[at - 1] == b'\n'))
        .collect();
    if starts.len() < 2 {
        return vec![bytes];
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| &bytes[start..starts.get(i + 1).copied().unwrap_or(bytes.len())])
        .collect()
}

fn secret_subkey_index(key: &SignedSecretKey, public: &SignedPublicSubKey) -> Option<usize> {
    let wanted = public.key.fingerprint();
    key.secret_subkeys
        .iter()
        .position(|sub| sub.key.fingerprint() == wanted)
}

fn secret_params_of(key: &SignedSecretKey, signer: Signer) -> &SecretParams {
    match signer {
        Signer::Primary => key.primary_key.secret_params(),
        // An out-of-range index cannot come from `secret_subkey_index`; falling back to
        // the primary keeps this total without a panic.
        Signer::Subkey(index) => key.secret_subkeys.get(index).map_or_else(
            || key.primary_key.secret_params(),
            |sub| sub.key.secret_params(),
        ),
    }
}

/// GnuPG marks secret keys that are not there (offline primary keys, smartcards) with
/// private S2K types ("gnu-dummy", "gnu-divert-to-card").
fn is_stub(params: &SecretParams) -> bool {
    let SecretParams::Encrypted(encrypted) = params else {
        return false;
    };
    match encrypted.string_to_key_params() {
        S2kParams::Cfb { s2k, .. }
        | S2kParams::MalleableCfb { s2k, .. }
        | S2kParams::Aead { s2k, .. } => {
            matches!(
                s2k,
                StringToKey::Private { .. }
                    | StringToKey::Other { .. }
                    | StringToKey::Reserved { .. }
            )
        }
        S2kParams::Unprotected | S2kParams::LegacyCfb { .. } => false,
    }
}

fn data_signature_config(
    signer: &dyn PgpSigningKey,
    typ: SignatureType,
    time: Timestamp,
) -> pgp::errors::Result<SignatureConfig> {
    let mut config = SignatureConfig::v4(typ, signer.algorithm(), DIGEST);
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(time))?,
        Subpacket::regular(SubpacketData::IssuerFingerprint(signer.fingerprint()))?,
    ];
    // gpgv 2.2 looks keys up by the key ID; it is not covered by the signature, as usual.
    config.unhashed_subpackets = vec![Subpacket::regular(SubpacketData::IssuerKeyId(
        signer.legacy_key_id(),
    ))?];
    Ok(config)
}

/// The positive self-certification GnuPG would make: certify + sign flags, SHA-512 first
/// among the preferred digests, dated `created`.
fn self_certification(
    primary: &packet::SecretKey,
    user_id: &packet::UserId,
    created: Timestamp,
) -> Result<Signature, SignError> {
    let build = || -> pgp::errors::Result<Signature> {
        let mut flags = KeyFlags::default();
        flags.set_certify(true);
        flags.set_sign(true);
        let mut features = Features::new();
        features.set_seipd_v1(true);
        let mut config =
            SignatureConfig::v4(SignatureType::CertPositive, primary.algorithm(), DIGEST);
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(created))?,
            Subpacket::regular(SubpacketData::IssuerFingerprint(primary.fingerprint()))?,
            Subpacket::regular(SubpacketData::KeyFlags(flags))?,
            Subpacket::regular(SubpacketData::Features(features))?,
            Subpacket::regular(SubpacketData::PreferredSymmetricAlgorithms(
                vec![
                    SymmetricKeyAlgorithm::AES256,
                    SymmetricKeyAlgorithm::AES192,
                    SymmetricKeyAlgorithm::AES128,
                ]
                .into(),
            ))?,
            Subpacket::regular(SubpacketData::PreferredHashAlgorithms(
                vec![
                    HashAlgorithm::Sha512,
                    HashAlgorithm::Sha384,
                    HashAlgorithm::Sha256,
                ]
                .into(),
            ))?,
            Subpacket::regular(SubpacketData::PreferredCompressionAlgorithms(
                vec![
                    CompressionAlgorithm::ZLIB,
                    CompressionAlgorithm::ZIP,
                    CompressionAlgorithm::Uncompressed,
                ]
                .into(),
            ))?,
            Subpacket::regular(SubpacketData::IsPrimary(true))?,
        ];
        config.unhashed_subpackets = vec![Subpacket::regular(SubpacketData::IssuerKeyId(
            primary.legacy_key_id(),
        ))?];
        config.sign_certification(
            primary,
            primary.public_key(),
            &Password::empty(),
            Tag::UserId,
            user_id,
        )
    };
    build().map_err(pgp_err("self-signing the user ID failed"))
}

fn validate_user_id(user_id: &str) -> Result<(), SignError> {
    let reason = if user_id.trim().is_empty() {
        "it is empty"
    } else if user_id.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(SignError::InvalidUserId {
        reason: reason.to_string(),
    })
}

/// The text as it is signed: lines without trailing whitespace, LF line ends, the final
/// line break removed (it separates the text from the signature block).
fn cleartext_to_sign(text: &str) -> Result<String, SignError> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut out = String::with_capacity(body.len());
    for (n, line) in body.split('\n').enumerate() {
        let line = line.trim_end_matches([' ', '\t', '\r']);
        // rpgp treats a lone CR as a line break when hashing, GnuPG does not: the same
        // text would verify with one and fail with the other.
        if line.contains('\r') {
            return Err(SignError::InvalidText {
                reason: format!(
                    "line {} contains a carriage return that does not end the line",
                    n + 1
                ),
            });
        }
        if n > 0 {
            out.push('\n');
        }
        out.push_str(line);
    }
    Ok(out)
}

fn timestamp(secs: u64) -> Result<Timestamp, SignError> {
    u32::try_from(secs)
        .map(Timestamp::from_secs)
        .map_err(|_| SignError::TimeOutOfRange { time: secs })
}

use crate::clock::now;

#[cfg(test)]
mod tests {
    use pgp::composed::{EncryptionCaps, SubkeyParamsBuilder};
    use pgp::crypto::ecc_curve::ECCCurve;

    use super::*;

    const CREATED: u64 = 1_700_000_000;
    const SIGNED_AT: u64 = 1_700_086_400;
    const PASSPHRASE: &str = "correct horse battery staple";

    const RELEASE: &str = "Origin: Speedy\nLabel: Speedy  \nSuite: dev\t\nCodename: dev\nDate: Tue, 14 Nov 2023 22:13:20 UTC\nArchitectures: amd64\nComponents: main\n-dashed line\nSHA256:\n 0123456789abcdef 1234 main/binary-amd64/Packages   \n";
    const RELEASE_TRIMMED: &str = "Origin: Speedy\nLabel: Speedy\nSuite: dev\nCodename: dev\nDate: Tue, 14 Nov 2023 22:13:20 UTC\nArchitectures: amd64\nComponents: main\n-dashed line\nSHA256:\n 0123456789abcdef 1234 main/binary-amd64/Packages\n";

    fn params(algorithm: KeyAlgorithm, passphrase: Option<&str>) -> KeyParams {
        KeyParams {
            algorithm,
            user_id: "Speedy Repo <repo@speedy.example>".to_string(),
            passphrase: passphrase.map(str::to_string),
            created: CREATED,
        }
    }

    fn ed25519(passphrase: Option<&str>) -> SigningKey {
        SigningKey::generate(&params(KeyAlgorithm::Ed25519, passphrase)).unwrap()
    }

    #[test]
    fn cleartext_is_parsed_in_one_pass_and_malformed_messages_are_refused() {
        let key = ed25519(None);
        // A large message with dash-escaped lines and trailing blanks, CRLF or LF.
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("- line {i} \t\n--- {i}\nplain {i}\n"));
        }
        let signed = key.clearsign(&text, CREATED + 10).unwrap();
        let expected: String = text
            .lines()
            .map(|l| format!("{}\n", l.trim_end_matches([' ', '\t'])))
            .collect();
        assert_eq!(
            key.public_key().verify_cleartext(&signed).unwrap(),
            expected
        );
        let crlf = signed.replace('\n', "\r\n");
        assert_eq!(key.public_key().verify_cleartext(&crlf).unwrap(), expected);
        let tampered = signed.replacen("plain 7\n", "plain 8\n", 1);
        assert!(matches!(
            key.public_key().verify_cleartext(&tampered),
            Err(VerifyError::BadSignature)
        ));
        for bad in [
            "Origin: Speedy\n".to_string(),
            signed.replacen("Hash: SHA512", "Comment: x", 1),
            signed[..signed.find("-----BEGIN PGP SIGNATURE-----").unwrap()].to_string(),
            signed.replacen("\n\n", "\n", 1),
        ] {
            assert!(
                matches!(
                    key.public_key().verify_cleartext(&bad),
                    Err(VerifyError::Malformed(_))
                ),
                "{}",
                &bad[..bad.len().min(120)]
            );
        }
    }

    #[test]
    fn during_a_rotation_both_keys_sign_and_either_verifies() {
        let current = ed25519(None);
        let next = SigningKey::generate(&KeyParams {
            created: CREATED + 100,
            ..params(KeyAlgorithm::Ed25519, None)
        })
        .unwrap();
        let keys = RepoKeys::new(current.clone(), Some(next.clone()));
        let text = "Origin: Speedy\nSuite: dev\n";
        let inrelease = keys.clearsign(text, CREATED + 200).unwrap();
        let detached = keys
            .sign_detached_armored(text.as_bytes(), CREATED + 200)
            .unwrap();
        assert_eq!(
            detached.matches("BEGIN PGP SIGNATURE").count(),
            1,
            "one armor block"
        );
        for alone in [current.public_key(), next.public_key()] {
            assert_eq!(alone.verify_cleartext(&inrelease).unwrap(), text);
            alone
                .verify_detached(text.as_bytes(), detached.as_bytes())
                .unwrap();
        }
        let keyring = keys.public_key();
        assert_eq!(
            keyring.fingerprints(),
            [current.fingerprint(), next.fingerprint()]
        );
        assert_eq!(
            keyring.cleartext_signers(&inrelease).unwrap(),
            keyring.fingerprints()
        );
        // The keyring round-trips, binary and armored, both keys kept.
        for bytes in [
            keyring.to_binary().unwrap(),
            keyring.to_armored().unwrap().into_bytes(),
        ] {
            let read = PublicKey::keyring_from_bytes(&bytes, "keyring").unwrap();
            assert_eq!(read.fingerprints(), keyring.fingerprints());
        }
        assert!(matches!(
            PublicKey::from_bytes(&keyring.to_binary().unwrap(), "keyring"),
            Err(SignError::MultipleKeys { count: 2, .. })
        ));
        // Signed by the current key alone: the next key is not among the signers.
        let single = current.clearsign(text, CREATED + 200).unwrap();
        assert_eq!(
            keyring.cleartext_signers(&single).unwrap(),
            [current.fingerprint()]
        );
        // Without a next key, RepoKeys signs exactly as the key does.
        let plain = RepoKeys::new(current.clone(), None);
        assert_eq!(plain.clearsign(text, CREATED + 200).unwrap(), single);
    }

    /// A key made by rpgp's builder, for shapes `generate` does not produce.
    fn foreign_key(
        primary: KeyType,
        primary_signs: bool,
        subkeys: Vec<packet_builder::Sub>,
    ) -> String {
        packet_builder::build(primary, primary_signs, subkeys)
            .to_armored_string(ArmorOptions::default())
            .unwrap()
    }

    mod packet_builder {
        use super::*;

        pub struct Sub {
            pub key_type: KeyType,
            pub sign: bool,
        }

        pub fn build(primary: KeyType, primary_signs: bool, subkeys: Vec<Sub>) -> SignedSecretKey {
            let mut builder = SecretKeyParamsBuilder::default();
            builder
                .key_type(primary)
                .can_certify(true)
                .can_sign(primary_signs)
                .primary_user_id("Foreign <foreign@example.org>".to_string())
                .subkeys(
                    subkeys
                        .into_iter()
                        .map(|sub| {
                            SubkeyParamsBuilder::default()
                                .key_type(sub.key_type)
                                .can_sign(sub.sign)
                                .can_encrypt(if sub.sign {
                                    EncryptionCaps::None
                                } else {
                                    EncryptionCaps::All
                                })
                                .build()
                                .unwrap()
                        })
                        .collect(),
                );
            builder
                .build()
                .unwrap()
                .generate(rand::thread_rng())
                .unwrap()
        }
    }

    fn signature_packet(armored_or_binary: &[u8]) -> Signature {
        let (mut sigs, _) = DetachedSignature::from_reader_many(armored_or_binary).unwrap();
        sigs.next().unwrap().unwrap().signature
    }

    #[test]
    fn generated_ed25519_key_is_v4_eddsa_legacy_with_a_self_signature_at_creation() {
        let key = ed25519(None);
        let fingerprint = key.fingerprint();
        assert_eq!(fingerprint.len(), 40);
        assert!(
            fingerprint
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
            "{fingerprint}"
        );
        assert_eq!(key.created(), CREATED);
        assert_eq!(key.key.primary_key.version(), KeyVersion::V4);
        assert_eq!(
            key.key.primary_key.algorithm(),
            pgp::crypto::public_key::PublicKeyAlgorithm::EdDSALegacy
        );
        assert!(key.key.secret_subkeys.is_empty() && key.key.public_subkeys.is_empty());

        let public = key.public_key();
        assert_eq!(public.fingerprint(), fingerprint);
        assert_eq!(public.user_ids(), ["Speedy Repo <repo@speedy.example>"]);
        let user = &public.certs[0].details.users[0];
        assert_eq!(user.signatures.len(), 1);
        let self_sig = &user.signatures[0];
        assert_eq!(
            self_sig.created(),
            Some(Timestamp::from_secs(CREATED as u32))
        );
        assert_eq!(self_sig.hash_alg(), Some(HashAlgorithm::Sha512));
        assert_eq!(
            self_sig.preferred_hash_algs().first(),
            Some(&HashAlgorithm::Sha512)
        );
        let flags = self_sig.key_flags();
        assert!(flags.sign() && flags.certify());
        self_sig
            .verify_certification(&public.certs[0].primary_key, Tag::UserId, &user.id)
            .unwrap();
        assert_eq!(
            cert::primary(&public.certs[0]),
            Some(cert::Component {
                revoked: false,
                expires: None,
                may_sign: true,
                valid_from: CREATED,
            })
        );
    }

    /// An RSA 3072 key made once by `SigningKey::generate` (created 1_700_000_000, no
    /// passphrase, test use only). Generating RSA keys takes from seconds to half a
    /// minute in debug builds, so the suite generates one only, in tests/testsuite/signing.rs.
    const RSA3072_FIXTURE: &str = include_str!("testdata/rsa3072.asc");

    #[test]
    fn rsa3072_key_loads_signs_and_verifies() {
        let key = SigningKey::from_armored(RSA3072_FIXTURE, None, "testdata/rsa3072.asc").unwrap();
        assert_eq!(
            key.key.primary_key.algorithm(),
            pgp::crypto::public_key::PublicKeyAlgorithm::RSA
        );
        assert_eq!(key.created(), CREATED);
        assert_eq!(cert::refused_algorithm(&key.key.primary_key), None);
        let public = key.public_key();
        let signed = key.clearsign(RELEASE, SIGNED_AT).unwrap();
        assert_eq!(public.verify_cleartext(&signed).unwrap(), RELEASE_TRIMMED);
        let signature = key.sign_detached_binary(b"data", SIGNED_AT).unwrap();
        public.verify_detached(b"data", &signature).unwrap();
        let packet = signature_packet(&signature);
        assert_eq!(packet.hash_alg(), Some(HashAlgorithm::Sha512));
        // PKCS#1 v1.5 signatures are deterministic: the same input signs the same.
        assert_eq!(
            signature,
            key.sign_detached_binary(b"data", SIGNED_AT).unwrap()
        );
        let err = public.verify_detached(b"date", &signature).unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature), "{err:?}");
    }

    #[test]
    fn armored_secret_key_round_trips_without_passphrase() {
        let key = ed25519(None);
        let armored = key.to_armored().unwrap();
        assert!(
            armored.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"),
            "{armored}"
        );
        let loaded = SigningKey::from_armored(&armored, None, "key.asc").unwrap();
        assert_eq!(loaded.fingerprint(), key.fingerprint());
        assert_eq!(loaded.created(), CREATED);
        // A passphrase for an unprotected key is ignored, as GnuPG does.
        SigningKey::from_armored(&armored, Some("unused"), "key.asc").unwrap();
        // Signatures by the loaded key verify with the original's public key.
        let signed = loaded.clearsign("hello\n", SIGNED_AT).unwrap();
        assert_eq!(
            key.public_key().verify_cleartext(&signed).unwrap(),
            "hello\n"
        );
    }

    #[test]
    fn binary_secret_key_loads_too() {
        let key = ed25519(Some(PASSPHRASE));
        let binary = key.key.to_bytes().unwrap();
        let loaded = SigningKey::from_bytes(&binary, Some(PASSPHRASE), "key.gpg").unwrap();
        assert_eq!(loaded.fingerprint(), key.fingerprint());
    }

    #[test]
    fn passphrase_protected_key_round_trips_and_needs_the_right_passphrase() {
        let key = ed25519(Some(PASSPHRASE));
        assert!(key.key.primary_key.secret_params().is_encrypted());
        let armored = key.to_armored().unwrap();
        assert!(!armored.contains(PASSPHRASE));

        let loaded =
            SigningKey::from_armored(&armored, Some(PASSPHRASE), "SPEEDY_SIGNING_KEY").unwrap();
        assert_eq!(loaded.fingerprint(), key.fingerprint());
        // Still protected when exported again.
        let reloaded =
            SigningKey::from_armored(&loaded.to_armored().unwrap(), Some(PASSPHRASE), "x").unwrap();
        assert!(reloaded.key.primary_key.secret_params().is_encrypted());

        let err = SigningKey::from_armored(&armored, None, "SPEEDY_SIGNING_KEY").unwrap_err();
        assert!(
            matches!(err, SignError::PassphraseRequired { ref origin } if origin == "SPEEDY_SIGNING_KEY"),
            "{err:?}"
        );
        assert!(err.to_string().contains("SPEEDY_SIGNING_KEY"), "{err}");

        let wrong = "not the passphrase";
        let err =
            SigningKey::from_armored(&armored, Some(wrong), "/etc/speedy/key.asc").unwrap_err();
        assert!(matches!(err, SignError::WrongPassphrase { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("/etc/speedy/key.asc"), "{shown}");
        assert!(
            !shown.contains(wrong) && !shown.contains(PASSPHRASE),
            "{shown}"
        );
    }

    #[test]
    fn empty_passphrase_means_unprotected() {
        let key = ed25519(Some(""));
        assert!(!key.key.primary_key.secret_params().is_encrypted());
    }

    #[test]
    fn public_key_is_refused_where_a_secret_key_is_needed() {
        let public = ed25519(None).public_key();
        let err =
            SigningKey::from_armored(&public.to_armored().unwrap(), None, "pub.asc").unwrap_err();
        assert!(matches!(err, SignError::PublicKeyGiven { .. }), "{err:?}");
        let err =
            SigningKey::from_bytes(&public.to_binary().unwrap(), None, "pub.gpg").unwrap_err();
        assert!(matches!(err, SignError::PublicKeyGiven { .. }), "{err:?}");
        assert!(err.to_string().contains("pub.gpg"), "{err}");
    }

    #[test]
    fn garbage_is_not_a_key() {
        for input in [
            &b""[..],
            b"hello world\n",
            b"\x99\x01\x02",
            b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n",
        ] {
            let err = SigningKey::from_bytes(input, None, "KEY_VAR").unwrap_err();
            assert!(
                matches!(err, SignError::NotAKey { ref origin } if origin == "KEY_VAR"),
                "{err:?}"
            );
            let err = PublicKey::from_bytes(input, "KEY_VAR").unwrap_err();
            assert!(matches!(err, SignError::NotAKey { .. }), "{err:?}");
        }
        // A signature is OpenPGP, but not a key.
        let signature = ed25519(None)
            .sign_detached_armored(b"x", SIGNED_AT)
            .unwrap();
        let err = SigningKey::from_armored(&signature, None, "sig.asc").unwrap_err();
        assert!(matches!(err, SignError::NotAKey { .. }), "{err:?}");
    }

    #[test]
    fn two_keys_in_one_file_are_refused() {
        let mut both = ed25519(None).public_key().to_binary().unwrap();
        both.extend(ed25519(None).public_key().to_binary().unwrap());
        let err = PublicKey::from_bytes(&both, "keyring.gpg").unwrap_err();
        assert!(
            matches!(err, SignError::MultipleKeys { count: 2, .. }),
            "{err:?}"
        );
        // Two armored secret keys one after the other, as `cat a.asc b.asc` makes.
        let armored = format!(
            "{}\n{}",
            ed25519(None).to_armored().unwrap(),
            ed25519(None).to_armored().unwrap()
        );
        let err = SigningKey::from_bytes(armored.as_bytes(), None, "keys.asc").unwrap_err();
        assert!(
            matches!(err, SignError::MultipleKeys { count: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("keys.asc"), "{err}");
    }

    #[test]
    fn public_key_export_round_trips_binary_and_armored() {
        let key = ed25519(Some(PASSPHRASE));
        let public = key.public_key();
        let binary = public.to_binary().unwrap();
        assert!(
            binary[0] & 0x80 != 0,
            "binary OpenPGP starts with a packet tag"
        );
        let armored = public.to_armored().unwrap();
        assert!(
            armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
            "{armored}"
        );
        for (bytes, origin) in [(&binary[..], "repo.gpg"), (armored.as_bytes(), "repo.asc")] {
            let loaded = PublicKey::from_bytes(bytes, origin).unwrap();
            assert_eq!(loaded.fingerprint(), key.fingerprint());
            assert_eq!(loaded.user_ids(), public.user_ids());
            assert_eq!(loaded.to_binary().unwrap(), binary);
        }
        // The secret key stands in for its public part; nothing secret is kept.
        let from_secret =
            PublicKey::from_bytes(key.to_armored().unwrap().as_bytes(), "key.asc").unwrap();
        assert_eq!(from_secret.to_binary().unwrap(), binary);
        assert_eq!(
            format!("{from_secret:?}"),
            format!(
                "PublicKey {{ fingerprints: [{:?}], .. }}",
                key.fingerprint()
            )
        );
    }

    #[test]
    fn clearsigned_text_verifies_and_is_trimmed_and_dash_escaped() {
        let key = ed25519(None);
        let signed = key.clearsign(RELEASE, SIGNED_AT).unwrap();
        assert!(
            signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"),
            "{signed}"
        );
        assert!(signed.contains("\n- -dashed line\n"), "{signed}");
        assert!(
            signed.contains("main/binary-amd64/Packages\n-----BEGIN PGP SIGNATURE-----\n"),
            "{signed}"
        );
        let body = signed
            .split("-----BEGIN PGP SIGNATURE-----")
            .next()
            .unwrap();
        for line in body.lines() {
            assert_eq!(
                line,
                line.trim_end_matches([' ', '\t']),
                "untrimmed line in {signed}"
            );
        }
        assert_eq!(
            key.public_key().verify_cleartext(&signed).unwrap(),
            RELEASE_TRIMMED
        );
    }

    #[test]
    fn cleartext_lines_are_trimmed_before_signing() {
        assert_eq!(
            cleartext_to_sign("a  \nb\t\n\nc \r\n").unwrap(),
            "a\nb\n\nc"
        );
        assert_eq!(cleartext_to_sign("no newline ").unwrap(), "no newline");
        assert_eq!(cleartext_to_sign("").unwrap(), "");
        assert_eq!(cleartext_to_sign("two\n\n").unwrap(), "two\n");
        let err = cleartext_to_sign("a\rb\n").unwrap_err();
        assert!(matches!(err, SignError::InvalidText { .. }), "{err:?}");
        // The signature covers the trimmed text, so dropping the whitespace on the
        // verifying side (as sqv does not) changes nothing.
        let key = ed25519(None);
        let untrimmed = key.clearsign("x  \ny\n", SIGNED_AT).unwrap();
        let trimmed = key.clearsign("x\ny\n", SIGNED_AT).unwrap();
        assert_eq!(untrimmed, trimmed);
    }

    #[test]
    fn tampered_cleartext_is_a_bad_signature() {
        let key = ed25519(None);
        let signed = key.clearsign(RELEASE, SIGNED_AT).unwrap();
        let tampered = signed.replace("Suite: dev", "Suite: stable");
        assert_ne!(tampered, signed);
        let err = key.public_key().verify_cleartext(&tampered).unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature), "{err:?}");
    }

    #[test]
    fn cleartext_by_another_key_names_the_issuer() {
        let signer = ed25519(None);
        let other = ed25519(None);
        let signed = signer.clearsign(RELEASE, SIGNED_AT).unwrap();
        let err = other.public_key().verify_cleartext(&signed).unwrap_err();
        match &err {
            VerifyError::SignedByOtherKey { issuers, expected } => {
                assert_eq!(issuers, &[signer.fingerprint()]);
                assert_eq!(expected, &other.fingerprint());
            }
            _ => panic!("{err:?}"),
        }
        assert!(err.to_string().contains(&signer.fingerprint()), "{err}");
    }

    #[test]
    fn malformed_cleartext_is_reported_as_such() {
        let key = ed25519(None);
        for input in [
            "",
            "Origin: Speedy\n",
            &key.sign_detached_armored(b"x", SIGNED_AT).unwrap(),
        ] {
            let err = key.public_key().verify_cleartext(input).unwrap_err();
            assert!(matches!(err, VerifyError::Malformed(_)), "{err:?}");
        }
    }

    #[test]
    fn detached_signatures_verify_armored_and_binary() {
        let key = ed25519(None);
        let public = key.public_key();
        let data = b"Origin: Speedy\nSuite: dev\n";
        let armored = key.sign_detached_armored(data, SIGNED_AT).unwrap();
        assert!(
            armored.starts_with("-----BEGIN PGP SIGNATURE-----"),
            "{armored}"
        );
        let binary = key.sign_detached_binary(data, SIGNED_AT).unwrap();
        assert!(binary[0] & 0x80 != 0);
        public.verify_detached(data, armored.as_bytes()).unwrap();
        public.verify_detached(data, &binary).unwrap();

        let sig = signature_packet(&binary);
        assert_eq!(sig.typ(), Some(SignatureType::Binary));
        assert_eq!(sig.hash_alg(), Some(HashAlgorithm::Sha512));
        assert_eq!(sig.created(), Some(Timestamp::from_secs(SIGNED_AT as u32)));
        assert_eq!(signature_packet(armored.as_bytes()), sig);

        let err = public
            .verify_detached(b"Origin: Speedy\nSuite: stable\n", &binary)
            .unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature), "{err:?}");
        let err = ed25519(None)
            .public_key()
            .verify_detached(data, &binary)
            .unwrap_err();
        assert!(
            matches!(err, VerifyError::SignedByOtherKey { ref issuers, .. } if issuers == &[key.fingerprint()]),
            "{err:?}"
        );
        for garbage in [&b""[..], b"not a signature", &public.to_binary().unwrap()] {
            let err = public.verify_detached(data, garbage).unwrap_err();
            assert!(matches!(err, VerifyError::Malformed(_)), "{err:?}");
        }
    }

    #[test]
    fn signatures_before_the_key_existed_are_dated_at_its_creation_and_reproducible() {
        let key = ed25519(Some(PASSPHRASE));
        let early = key.sign_detached_binary(b"data", 1_000).unwrap();
        assert_eq!(
            signature_packet(&early).created(),
            Some(Timestamp::from_secs(CREATED as u32))
        );
        assert_eq!(early, key.sign_detached_binary(b"data", CREATED).unwrap());
        assert_eq!(
            key.clearsign("a\n", SIGNED_AT).unwrap(),
            key.clearsign("a\n", SIGNED_AT).unwrap()
        );
        let err = key
            .sign_detached_binary(b"data", u64::from(u32::MAX) + 1)
            .unwrap_err();
        assert!(matches!(err, SignError::TimeOutOfRange { .. }), "{err:?}");
    }

    #[test]
    fn signatures_are_not_dated_before_a_loaded_keys_self_signature() {
        // rpgp's builder self-signs "now", long after this key's creation time.
        let mut builder = SecretKeyParamsBuilder::default();
        builder
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .created_at(Timestamp::from_secs(CREATED as u32))
            .primary_user_id("Late <late@example.org>".to_string());
        let armored = builder
            .build()
            .unwrap()
            .generate(rand::thread_rng())
            .unwrap()
            .to_armored_string(ArmorOptions::default())
            .unwrap();
        let before = now();
        let key = SigningKey::from_armored(&armored, None, "late.asc").unwrap();
        assert_eq!(key.created(), CREATED);
        let signature = key.sign_detached_binary(b"x", SIGNED_AT).unwrap();
        let created = u64::from(signature_packet(&signature).created().unwrap().as_secs());
        assert!(created >= before - 60 && created <= now(), "{created}");
        key.public_key().verify_detached(b"x", &signature).unwrap();
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_errors() {
        let key = ed25519(Some(PASSPHRASE));
        let debug = format!("{key:?}");
        assert_eq!(
            debug,
            format!("SigningKey {{ fingerprint: {:?}, .. }}", key.fingerprint())
        );
        let params = params(KeyAlgorithm::Ed25519, Some(PASSPHRASE));
        let debug = format!("{params:?}");
        assert!(
            !debug.contains(PASSPHRASE) && debug.contains("<redacted>"),
            "{debug}"
        );

        // An error about a key passed in an environment variable names the variable only.
        let armored = key.to_armored().unwrap();
        let secret_line = armored.lines().nth(3).unwrap().to_string();
        for err in [
            SigningKey::from_armored(&armored, Some("wrong"), "SPEEDY_KEY").unwrap_err(),
            SigningKey::from_armored(&armored, None, "SPEEDY_KEY").unwrap_err(),
            SigningKey::from_armored(
                &armored[..armored.len() / 2],
                Some(PASSPHRASE),
                "SPEEDY_KEY",
            )
            .unwrap_err(),
        ] {
            let shown = format!("{err} / {err:?}");
            assert!(shown.contains("SPEEDY_KEY"), "{shown}");
            assert!(
                !shown.contains(PASSPHRASE)
                    && !shown.contains("wrong")
                    && !shown.contains(&secret_line),
                "{shown}"
            );
        }
    }

    #[test]
    fn rfc9580_ed25519_is_refused() {
        let armored = foreign_key(KeyType::Ed25519, true, vec![]);
        let err = SigningKey::from_armored(&armored, None, "new.asc").unwrap_err();
        match &err {
            SignError::WeakAlgorithm { origin, what } => {
                assert_eq!(origin, "new.asc");
                assert!(what.contains("algorithm 27"), "{what}");
            }
            _ => panic!("{err:?}"),
        }
    }

    #[test]
    fn ecdsa_p256_is_accepted() {
        let armored = foreign_key(KeyType::ECDSA(ECCCurve::P256), true, vec![]);
        let key = SigningKey::from_armored(&armored, None, "p256.asc").unwrap();
        let signature = key.sign_detached_binary(b"x", now()).unwrap();
        key.public_key().verify_detached(b"x", &signature).unwrap();
    }

    #[test]
    fn a_signing_subkey_is_used_when_the_primary_only_certifies() {
        let armored = foreign_key(
            KeyType::Ed25519Legacy,
            false,
            vec![
                packet_builder::Sub {
                    key_type: KeyType::ECDH(ECCCurve::Curve25519Legacy),
                    sign: false,
                },
                packet_builder::Sub {
                    key_type: KeyType::Ed25519Legacy,
                    sign: true,
                },
            ],
        );
        let key = SigningKey::from_armored(&armored, None, "sub.asc").unwrap();
        assert!(matches!(key.signer, Signer::Subkey(_)), "{:?}", key.signer);
        let subkey_fingerprint = format!("{:X}", key.signer().unwrap().fingerprint());
        let signature = key.sign_detached_binary(b"x", now()).unwrap();
        assert_eq!(
            signature_packet(&signature)
                .issuer_fingerprint()
                .first()
                .map(|fp| format!("{fp:X}")),
            Some(subkey_fingerprint.clone())
        );
        let public = key.public_key();
        public.verify_detached(b"x", &signature).unwrap();
        let signed = key.clearsign("a\n", now()).unwrap();
        assert_eq!(public.verify_cleartext(&signed).unwrap(), "a\n");
        // Another certificate names the subkey as the issuer.
        let err = ed25519(None)
            .public_key()
            .verify_detached(b"x", &signature)
            .unwrap_err();
        assert!(
            matches!(err, VerifyError::SignedByOtherKey { ref issuers, .. } if issuers == &[subkey_fingerprint]),
            "{err:?}"
        );
    }

    #[test]
    fn a_key_that_cannot_sign_is_refused() {
        let armored = foreign_key(
            KeyType::Ed25519Legacy,
            false,
            vec![packet_builder::Sub {
                key_type: KeyType::ECDH(ECCCurve::Curve25519Legacy),
                sign: false,
            }],
        );
        let err = SigningKey::from_armored(&armored, None, "certify-only.asc").unwrap_err();
        assert!(matches!(err, SignError::NotASigningKey { .. }), "{err:?}");
    }

    #[test]
    fn invalid_user_ids_and_algorithm_names() {
        for user_id in ["", "  ", "Name\n<e@x>"] {
            let mut p = params(KeyAlgorithm::Ed25519, None);
            p.user_id = user_id.to_string();
            let err = SigningKey::generate(&p).unwrap_err();
            assert!(matches!(err, SignError::InvalidUserId { .. }), "{err:?}");
        }
        for name in KeyAlgorithm::NAMES {
            assert_eq!(name.parse::<KeyAlgorithm>().unwrap().to_string(), name);
        }
        assert!(matches!(
            "dsa".parse::<KeyAlgorithm>(),
            Err(SignError::UnknownAlgorithm { .. })
        ));
    }
}
