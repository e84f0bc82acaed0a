//! Reading what the self-signatures of a certificate say: which component keys may sign,
//! whether the key is revoked or expired, and whether apt's verifiers accept its algorithm.
//!
//! Only signatures that verify against the primary key count: anyone can append
//! packets to a certificate, so unverified flags, expirations or bindings mean nothing.

use pgp::{
    composed::{SignedPublicKey, SignedPublicSubKey},
    crypto::{ecc_curve::ECCCurve, hash::HashAlgorithm, public_key::PublicKeyAlgorithm},
    packet::{Signature, SignatureType, SubpacketData},
    ser::Serialize,
    types::{
        EcdsaPublicParams, EddsaLegacyPublicParams, KeyDetails, KeyVersion, PublicParams, Tag,
    },
};

/// The state of a component key (the primary or a subkey) according to its newest valid
/// self-signature (or binding signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Component {
    /// Revoked by a valid revocation signature of the primary key.
    pub revoked: bool,
    /// Unix time after which the key is expired, if its self-signature sets one.
    pub expires: Option<u64>,
    /// The key flags allow signing data. Certificates without any key flags predate the
    /// subpacket and may sign with any signing-capable algorithm.
    pub may_sign: bool,
    /// Unix time of the oldest valid self-signature (or binding signature). sqv refuses
    /// data signatures made before the key was bound, even when gpgv accepts them.
    pub valid_from: u64,
}

impl Component {
    pub fn usable_at(&self, now: u64) -> bool {
        !self.revoked && self.expires.is_none_or(|t| t > now)
    }
}

/// The primary key's state; `None` when no user ID or direct-key self-signature verifies,
/// in which case gpgv and sqv ignore the whole certificate.
pub(super) fn primary(cert: &SignedPublicKey) -> Option<Component> {
    let self_sigs = primary_self_signatures(cert);
    if self_sigs.is_empty() {
        return None;
    }
    let key = &cert.primary_key;
    let revoked =
        cert.details.revocation_signatures.iter().any(|sig| {
            sig.typ() == Some(SignatureType::KeyRevocation) && sig.verify_key(key).is_ok()
        });
    Some(component(key, &self_sigs, revoked))
}

/// Whether the certificate's self-signatures are all SHA-1 (which rpgp, like sqv,
/// refuses to verify): the reason it has no valid self-signature.
pub(super) fn bound_only_by_sha1(cert: &SignedPublicKey) -> bool {
    let sigs: Vec<&Signature> = cert
        .details
        .users
        .iter()
        .flat_map(|user| &user.signatures)
        .chain(&cert.details.direct_signatures)
        .collect();
    !sigs.is_empty()
        && sigs
            .iter()
            .all(|sig| sig.hash_alg() == Some(HashAlgorithm::Sha1))
}

/// The user ID certifications and direct-key signatures made by the primary key that
/// verify.
fn primary_self_signatures(cert: &SignedPublicKey) -> Vec<&Signature> {
    let key = &cert.primary_key;
    let mut self_sigs: Vec<&Signature> = Vec::new();
    for user in &cert.details.users {
        for sig in &user.signatures {
            let is_cert = matches!(
                sig.typ(),
                Some(
                    SignatureType::CertGeneric
                        | SignatureType::CertPersona
                        | SignatureType::CertCasual
                        | SignatureType::CertPositive
                )
            );
            if is_cert && sig.verify_certification(key, Tag::UserId, &user.id).is_ok() {
                self_sigs.push(sig);
            }
        }
    }
    for sig in &cert.details.direct_signatures {
        if sig.typ() == Some(SignatureType::Key) && sig.verify_key(key).is_ok() {
            self_sigs.push(sig);
        }
    }
    self_sigs
}

/// Subkeys bound to the primary for signing: a valid binding signature with the sign flag
/// and a valid back-signature (sqv ignores signing subkeys without one), not revoked.
/// Returned with their state, newest subkey first (the one GnuPG would sign with).
pub(super) fn signing_subkeys(cert: &SignedPublicKey) -> Vec<(&SignedPublicSubKey, Component)> {
    let primary = &cert.primary_key;
    let mut found: Vec<(&SignedPublicSubKey, Component)> = Vec::new();
    for sub in &cert.public_subkeys {
        let bindings: Vec<&Signature> = sub
            .signatures
            .iter()
            .filter(|sig| {
                sig.typ() == Some(SignatureType::SubkeyBinding)
                    && sig.verify_subkey_binding(primary, &sub.key).is_ok()
            })
            .collect();
        let revoked = sub.signatures.iter().any(|sig| {
            sig.typ() == Some(SignatureType::SubkeyRevocation)
                && sig.verify_subkey_binding(primary, &sub.key).is_ok()
        });
        let Some(newest) = newest(&bindings) else {
            continue;
        };
        let back_signed = newest
            .embedded_signature()
            .is_some_and(|back| back.verify_primary_key_binding(&sub.key, primary).is_ok());
        let state = component(&sub.key, &bindings, revoked);
        if state.may_sign && newest.key_flags().sign() && back_signed {
            found.push((sub, state));
        }
    }
    found.sort_by_key(|(sub, _)| std::cmp::Reverse(sub.key.created_at()));
    found
}

fn newest<'a>(sigs: &[&'a Signature]) -> Option<&'a Signature> {
    sigs.iter()
        .copied()
        .max_by_key(|sig| sig.created().map(|t| t.as_secs()).unwrap_or(0))
}

fn component(key: &impl KeyDetails, valid_sigs: &[&Signature], revoked: bool) -> Component {
    let newest_sig = newest(valid_sigs);
    let expires = newest_sig
        .and_then(Signature::key_expiration_time)
        .map(|d| d.as_secs())
        .filter(|&secs| secs > 0)
        .map(|secs| u64::from(key.created_at().as_secs()) + u64::from(secs));
    // The newest signature that carries key flags decides; older certificates have none.
    let flags = valid_sigs
        .iter()
        .filter(|sig| has_key_flags(sig))
        .max_by_key(|sig| sig.created().map(|t| t.as_secs()).unwrap_or(0))
        .map(|sig| sig.key_flags().sign());
    let valid_from = valid_sigs
        .iter()
        .filter_map(|sig| sig.created())
        .map(|t| u64::from(t.as_secs()))
        .min()
        .unwrap_or(0)
        .max(u64::from(key.created_at().as_secs()));
    Component {
        revoked,
        expires,
        may_sign: flags.unwrap_or(true),
        valid_from,
    }
}

fn has_key_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|config| {
        config
            .hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}

/// Why apt's verifiers (gpgv 2.2, sqv) would refuse signatures by this key, if they would.
pub(super) fn refused_algorithm(key: &(impl KeyDetails + ?Sized)) -> Option<String> {
    if key.version() != KeyVersion::V4 {
        return Some(format!(
            "OpenPGP {:?} keys are not understood by gpgv on Debian 12; use a v4 key",
            key.version()
        ));
    }
    match (key.algorithm(), key.public_params()) {
        (PublicKeyAlgorithm::RSA | PublicKeyAlgorithm::RSASign, PublicParams::RSA(rsa)) => match rsa_bits(rsa) {
            Some(bits) if bits >= 2048 => None,
            Some(bits) => Some(format!(
                "RSA with {bits} bits (sqv rejects RSA below 2048 bits; use RSA 3072 or more, or Ed25519)"
            )),
            None => Some("RSA with a modulus of unknown size".to_string()),
        },
        (PublicKeyAlgorithm::EdDSALegacy, PublicParams::EdDSALegacy(EddsaLegacyPublicParams::Ed25519 { .. })) => None,
        (PublicKeyAlgorithm::ECDSA, PublicParams::ECDSA(params)) => match params {
            EcdsaPublicParams::P256 { .. } | EcdsaPublicParams::P384 { .. } | EcdsaPublicParams::P521 { .. } => None,
            EcdsaPublicParams::Secp256k1 { .. } => Some(curve_refused(&ECCCurve::Secp256k1)),
            EcdsaPublicParams::Unsupported { curve, .. } => Some(curve_refused(curve)),
        },
        (PublicKeyAlgorithm::Ed25519, _) => Some(
            "Ed25519 in the RFC 9580 format (algorithm 27) is rejected by gpgv and sqv on Debian 12; \
             use an Ed25519 key in the EdDSA legacy format (algorithm 22), as GnuPG 2.2 and cargo-speedy generate"
                .to_string(),
        ),
        (PublicKeyAlgorithm::DSA, _) => Some("DSA (sqv rejects DSA signatures)".to_string()),
        (alg, _) => Some(format!("{alg:?} signatures are not accepted by apt's verifiers")),
    }
}

fn curve_refused(curve: &ECCCurve) -> String {
    format!(
        "ECDSA on the curve {} is not supported by gpgv and sqv",
        curve.name()
    )
}

/// The modulus length from the wire format: an MPI starts with its length in bits.
fn rsa_bits(rsa: &pgp::types::RsaPublicParams) -> Option<u16> {
    let bytes = rsa.to_bytes().ok()?;
    match bytes.as_slice() {
        [hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// The hash algorithms whose cut-off dates apt's sqv policy sets for signatures that
/// bind keys (self-signatures, subkey bindings): from then on such a binding no longer
/// counts and the key is ignored (apt's /usr/share/apt/default-sequoia.config on trixie:
/// `sha1.second_preimage_resistance = 2026-02-01`, `sha224 = 2026-02-01`).
const BINDING_DIGEST_CUTOFFS: [(HashAlgorithm, u64, &str); 2] = [
    (HashAlgorithm::Sha1, 1_769_904_000, "2026-02-01"),
    (HashAlgorithm::Sha224, 1_769_904_000, "2026-02-01"),
];
/// `rsa2048 = 2030-02-01` in the same policy.
const RSA2048_CUTOFF: (u64, &str) = (1_896_134_400, "2030-02-01");
/// How far ahead an expiry or a policy cut-off is worth a warning.
pub const WARN_AHEAD_SECONDS: u64 = 90 * 86_400;

/// What apt's verifiers (gpgv on bookworm, sqv on trixie) will make of a repository
/// key, now and in the next [`WARN_AHEAD_SECONDS`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyHealth {
    pub fingerprint: String,
    /// Empty when the key is fine.
    pub findings: Vec<KeyFinding>,
}

impl KeyHealth {
    pub fn has_errors(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == FindingSeverity::Error)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyFinding {
    pub severity: FindingSeverity,
    /// What is wrong and what to do about it.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingSeverity {
    /// apt refuses the repository (now, on bookworm or trixie).
    Error,
    /// apt will refuse it within [`WARN_AHEAD_SECONDS`], or soon after.
    Warning,
}

/// Checks a certificate as apt's verifiers will: a valid self-signature, not revoked,
/// not expired, accepted algorithms, binding signatures with digests the policy still
/// accepts, and a signing component (the primary or a signing subkey) that passes all
/// of that.
pub(super) fn health(cert: &SignedPublicKey, now: u64) -> KeyHealth {
    let fingerprint = format!("{:X}", cert.primary_key.fingerprint());
    let mut findings = Vec::new();
    let Some(state) = primary(cert) else {
        let message = if bound_only_by_sha1(cert) {
            format!(
                "key {fingerprint} is bound only by SHA-1 self-signatures, which apt's sqv (trixie) rejects \
                 since 2026-02-01: re-sign it, `gpg --cert-digest-algo SHA512 --quick-set-expire {fingerprint} 2y`"
            )
        } else {
            format!(
                "key {fingerprint} has no valid self-signature: gpgv and sqv ignore it. Export it again \
                 with its user ID (`gpg --export {fingerprint}`)"
            )
        };
        findings.push(KeyFinding {
            severity: FindingSeverity::Error,
            message,
        });
        return KeyHealth {
            fingerprint,
            findings,
        };
    };
    let self_sigs = primary_self_signatures(cert);
    check_component(
        &mut findings,
        &format!("key {fingerprint}"),
        &fingerprint,
        &cert.primary_key,
        &state,
        newest(&self_sigs),
        now,
    );
    let subkeys = signing_subkeys(cert);
    let signs = state.may_sign || !subkeys.is_empty();
    if !signs {
        findings.push(KeyFinding {
            severity: FindingSeverity::Error,
            message: format!(
                "key {fingerprint} cannot sign: neither the primary key nor a subkey has the sign flag. \
                 Add a signing subkey (`gpg --quick-add-key {fingerprint} ed25519 sign 2y`)"
            ),
        });
    }
    for (sub, sub_state) in subkeys {
        let bindings: Vec<&Signature> = sub
            .signatures
            .iter()
            .filter(|sig| sig.typ() == Some(SignatureType::SubkeyBinding))
            .collect();
        let what = format!(
            "signing subkey {:X} of key {fingerprint}",
            sub.key.fingerprint()
        );
        check_component(
            &mut findings,
            &what,
            &fingerprint,
            &sub.key,
            &sub_state,
            newest(&bindings),
            now,
        );
    }
    KeyHealth {
        fingerprint,
        findings,
    }
}

fn check_component(
    findings: &mut Vec<KeyFinding>,
    what: &str,
    fingerprint: &str,
    key: &(impl KeyDetails + ?Sized),
    state: &Component,
    binding: Option<&Signature>,
    now: u64,
) {
    let mut add = |severity, message| findings.push(KeyFinding { severity, message });
    if state.revoked {
        add(
            FindingSeverity::Error,
            format!("{what} is revoked: apt refuses its signatures. Rotate to a new key (docs/operations.md, \"Rotating the signing key\")"),
        );
    }
    let extend = format!(
        "extend it (`gpg --quick-set-expire {fingerprint} 2y`, and for a subkey `gpg --quick-set-expire {fingerprint} 2y '*'`), \
         then publish the re-exported key with the next release so servers get it through the keyring package"
    );
    match state.expires {
        Some(at) if at <= now => add(
            FindingSeverity::Error,
            format!(
                "{what} expired on {}: apt refuses its signatures; {extend}",
                date(at)
            ),
        ),
        Some(at) if at <= now + WARN_AHEAD_SECONDS => add(
            FindingSeverity::Warning,
            format!(
                "{what} expires on {} (in {} days): {extend}",
                date(at),
                (at - now) / 86_400
            ),
        ),
        _ => {}
    }
    if let Some(why) = refused_algorithm(key) {
        add(
            FindingSeverity::Error,
            format!(
                "{what} uses {why}: rotate to a new key (docs/operations.md, \"Rotating the signing key\")"
            ),
        );
    } else if let (PublicKeyAlgorithm::RSA | PublicKeyAlgorithm::RSASign, PublicParams::RSA(rsa)) =
        (key.algorithm(), key.public_params())
    {
        let (cutoff, day) = RSA2048_CUTOFF;
        if rsa_bits(rsa).is_some_and(|bits| bits < 3072) && now + WARN_AHEAD_SECONDS >= cutoff {
            add(
                FindingSeverity::from_cutoff(now, cutoff),
                format!(
                    "{what} is RSA with fewer than 3072 bits, which apt's sqv policy accepts only until {day}: \
                     rotate to RSA 3072 or Ed25519 (docs/operations.md, \"Rotating the signing key\")"
                ),
            );
        }
    }
    let Some(binding) = binding else {
        return;
    };
    if binding.version() == pgp::packet::SignatureVersion::V3 {
        add(
            FindingSeverity::from_cutoff(now, 1_769_904_000),
            format!("{what} is bound by a version 3 signature, which apt's sqv policy rejects from 2026-02-01: rotate to a new key"),
        );
    }
    for (digest, cutoff, day) in BINDING_DIGEST_CUTOFFS {
        if binding.hash_alg() == Some(digest) && now + WARN_AHEAD_SECONDS >= cutoff {
            add(
                FindingSeverity::from_cutoff(now, cutoff),
                format!(
                    "the self-signature binding {what} uses {digest:?}, which apt's sqv policy (trixie) rejects \
                     from {day}, so apt ignores the key. Re-sign it with SHA-256 or better: \
                     `gpg --cert-digest-algo SHA512 --quick-set-expire {fingerprint} 2y` (and `'*'` for subkeys), \
                     then publish the re-exported key"
                ),
            );
        }
    }
}

impl FindingSeverity {
    fn from_cutoff(now: u64, cutoff: u64) -> Self {
        if now >= cutoff {
            FindingSeverity::Error
        } else {
            FindingSeverity::Warning
        }
    }
}

use crate::clock::iso_date as date;
