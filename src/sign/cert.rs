//! Reading what the self-signatures of a certificate say: which component keys may sign,
//! whether the key is revoked or expired, and whether apt's verifiers accept its algorithm.
//!
//! Only signatures that verify against the primary key count: anyone can append
//! packets to a certificate, so unverified flags, expirations or bindings mean nothing.

use pgp::{
    composed::{SignedPublicKey, SignedPublicSubKey},
    crypto::{ecc_curve::ECCCurve, public_key::PublicKeyAlgorithm},
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
    if self_sigs.is_empty() {
        return None;
    }
    let revoked =
        cert.details.revocation_signatures.iter().any(|sig| {
            sig.typ() == Some(SignatureType::KeyRevocation) && sig.verify_key(key).is_ok()
        });
    Some(component(key, &self_sigs, revoked))
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
