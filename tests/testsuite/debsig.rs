//! .deb origin signatures checked by the real debsig-verify (Debian package
//! `debsig-verify`, which needs `gnupg`), with packages built by the real dpkg-deb.

use crate::support::{
    assert_success, describe, test_signing_key, tiny_deb, Debsig, DEBSIG_NO_APPLICABLE_POLICY,
    DEBSIG_NO_ORIGIN_SIGNATURE, DEBSIG_NO_POLICY_FOR_KEY, DEBSIG_VERIFICATION_FAILED,
};
use cargo_speedy::debfile::{debsig_paths, debsig_policy, DebFile};
use cargo_speedy::sign::SigningKey;
use std::path::Path;

const CREATED: u64 = 1_700_000_000;
/// After the keys' creation, before "now" (gpg refuses signatures from the future).
const SIGNED_AT: u64 = 1_700_086_400;

fn sign_deb(deb: &DebFile, key: &SigningKey) -> Vec<u8> {
    let signature = key
        .sign_detached_binary(&deb.signed_payload(), SIGNED_AT)
        .expect("sign payload");
    deb.with_origin_signature(&signature)
}

/// A debsig-verify configuration trusting `key` only: its policy and keyring at the
/// paths cargo speedy names for its fingerprint.
fn trusting(key: &SigningKey) -> Debsig {
    let debsig = Debsig::new();
    let (policy_path, keyring_path) = debsig_paths(&key.fingerprint());
    let keyring = key.public_key().to_binary().expect("export public key");
    debsig.trust(
        &policy_path,
        &debsig_policy(&key.fingerprint(), "Speedy Test"),
        &keyring_path,
        &keyring,
    );
    debsig
}

/// debsig-verify refuses `deb` with the exit status for `fault`.
fn assert_refused(debsig: &Debsig, deb: &Path, status: i32, fault: &str) {
    let out = debsig.verify(deb);
    assert_eq!(
        out.status.code(),
        Some(status),
        "{fault}: {}",
        describe(&out)
    );
}

/// Byte offset in the archive of the data.tar.* member's content.
fn data_member_offset(deb: &DebFile) -> usize {
    let mut offset = b"!<arch>\n".len();
    for member in &deb.members()[..2] {
        offset += 60 + member.data().len() + member.data().len() % 2;
    }
    offset + 60
}

#[test]
fn debsig_verify_accepts_our_signature_and_rejects_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unsigned_path = tiny_deb(dir.path(), "speedy-signed", "0.1.0");
    let deb = DebFile::read(&unsigned_path).expect("parse the dpkg-deb package");
    let key = test_signing_key(CREATED);
    let debsig = trusting(&key);

    let signed = sign_deb(&deb, &key);
    let signed_path = dir.path().join("signed.deb");
    std::fs::write(&signed_path, &signed).expect("write signed deb");
    // A correctly signed package verifies.
    assert_success(&debsig.verify(&signed_path));

    // Signing again gives a package that still verifies (the old signature is replaced).
    let resigned = DebFile::parse(&signed, &signed_path).expect("parse signed");
    let resigned_path = dir.path().join("resigned.deb");
    std::fs::write(&resigned_path, sign_deb(&resigned, &key)).expect("write");
    assert_success(&debsig.verify(&resigned_path));

    assert_refused(
        &debsig,
        &unsigned_path,
        DEBSIG_NO_ORIGIN_SIGNATURE,
        "unsigned",
    );

    let mut tampered = signed.clone();
    let data = &resigned.members()[2];
    assert!(data.name().starts_with("data.tar"), "{}", data.name());
    let at = data_member_offset(&resigned) + data.data().len() / 2;
    tampered[at] ^= 0x01;
    let tampered_path = dir.path().join("tampered.deb");
    std::fs::write(&tampered_path, &tampered).expect("write tampered deb");
    // Still a well-formed archive with the same signature: only the payload changed.
    let tampered_deb = DebFile::parse(&tampered, &tampered_path).expect("parse tampered");
    assert_eq!(tampered_deb.origin_signature(), resigned.origin_signature());
    assert_ne!(tampered_deb.signed_payload(), resigned.signed_payload());
    assert_refused(
        &debsig,
        &tampered_path,
        DEBSIG_VERIFICATION_FAILED,
        "tampered",
    );

    let stranger = test_signing_key(CREATED);
    let foreign_path = dir.path().join("foreign.deb");
    std::fs::write(&foreign_path, sign_deb(&deb, &stranger)).expect("write");
    assert_refused(
        &debsig,
        &foreign_path,
        DEBSIG_NO_POLICY_FOR_KEY,
        "signed by an untrusted key",
    );
}

/// A different key whose keyring sits where the trusted key's should be: the
/// policy names the full fingerprint, so debsig-verify must not accept it.
#[test]
fn debsig_verify_rejects_a_signature_checked_against_the_wrong_keyring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = DebFile::read(&tiny_deb(dir.path(), "speedy-signed", "0.1.0")).expect("parse");
    let trusted = test_signing_key(CREATED);
    let stranger = test_signing_key(CREATED);
    let debsig = trusting(&trusted);

    // Put the stranger's policy directory in place, but with the trusted key's
    // fingerprint in the policy: the stranger's signature must not satisfy it.
    let (stranger_policy, stranger_keyring) = debsig_paths(&stranger.fingerprint());
    debsig.trust(
        &stranger_policy,
        &debsig_policy(&trusted.fingerprint(), "Speedy Test"),
        &stranger_keyring,
        &stranger.public_key().to_binary().expect("export"),
    );

    let path = dir.path().join("foreign.deb");
    std::fs::write(&path, sign_deb(&deb, &stranger)).expect("write");
    assert_refused(
        &debsig,
        &path,
        DEBSIG_NO_APPLICABLE_POLICY,
        "a policy for another key must not pass",
    );
}
