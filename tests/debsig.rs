//! .deb origin signatures checked by the real debsig-verify (Debian package
//! `debsig-verify`, which needs `gnupg`), with packages built by the real dpkg-deb.

use cargo_speedy::debfile::{debsig_paths, debsig_policy, DebFile};
use cargo_speedy::sign::{KeyAlgorithm, KeyParams, SigningKey};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CONTROL: &str = "Package: speedy-signed\nVersion: 0.1.0\nArchitecture: all\n\
Maintainer: Speedy Test <test@speedy.example>\nDescription: a package for debsig tests\n";

/// Exit statuses documented in debsig-verify(1).
const NO_ORIGIN_SIGNATURE: i32 = 10;
const NO_POLICY_FOR_KEY: i32 = 11;
const NO_APPLICABLE_POLICY: i32 = 12;
const VERIFICATION_FAILED: i32 = 13;

fn require_tool(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is needed for this test: apt-get install -y {package} (and add it to .ci/deps)"
    );
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn generate_key(name: &str) -> SigningKey {
    SigningKey::generate(&KeyParams {
        algorithm: KeyAlgorithm::Ed25519,
        user_id: format!("{name} <test@speedy.example>"),
        passphrase: None,
        created: unix_now(),
    })
    .expect("generate signing key")
}

fn build_deb(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/share/speedy-signed")).expect("mkdir");
    std::fs::write(root.join("DEBIAN/control"), CONTROL).expect("write control");
    std::fs::write(root.join("usr/share/speedy-signed/data.txt"), "payload\n").expect("write");
    let deb = dir.join("speedy-signed.deb");
    let out = Command::new("dpkg-deb")
        .env("SOURCE_DATE_EPOCH", "1795000000")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .expect("run dpkg-deb");
    assert!(
        out.status.success(),
        "dpkg-deb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    deb
}

fn sign_deb(deb: &DebFile, key: &SigningKey) -> Vec<u8> {
    let signature = key
        .sign_detached_binary(&deb.signed_payload(), unix_now())
        .expect("sign payload");
    deb.with_origin_signature(&signature)
}

/// A debsig-verify configuration trusting `key` only, like an operator would
/// install it under /etc/debsig/policies and /usr/share/debsig/keyrings.
struct Trust {
    policies: PathBuf,
    keyrings: PathBuf,
    gnupg_home: PathBuf,
}

impl Trust {
    fn new(dir: &Path, key: &SigningKey) -> Self {
        let trust = Trust {
            policies: dir.join("policies"),
            keyrings: dir.join("keyrings"),
            gnupg_home: dir.join("gnupg"),
        };
        let fingerprint = key.fingerprint();
        let (policy_rel, keyring_rel) = debsig_paths(&fingerprint);
        let policy_path = trust.policies.join(policy_rel);
        let keyring_path = trust.keyrings.join(keyring_rel);
        std::fs::create_dir_all(policy_path.parent().expect("parent")).expect("mkdir");
        std::fs::create_dir_all(keyring_path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&policy_path, debsig_policy(&fingerprint, "Speedy Test")).expect("policy");
        let keyring = key.public_key().to_binary().expect("export public key");
        std::fs::write(&keyring_path, keyring).expect("keyring");
        std::fs::create_dir_all(&trust.gnupg_home).expect("mkdir");
        // gpg refuses a home directory others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&trust.gnupg_home, std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        trust
    }

    fn verify(&self, deb: &Path) -> Output {
        Command::new("debsig-verify")
            // Keeps gpg away from the invoking user's ~/.gnupg.
            .env("GNUPGHOME", &self.gnupg_home)
            .arg("--verbose")
            .arg("--policies-dir")
            .arg(&self.policies)
            .arg("--keyrings-dir")
            .arg(&self.keyrings)
            .arg(deb)
            .output()
            .expect("run debsig-verify")
    }
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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
    require_tool("dpkg-deb", "dpkg");
    require_tool("debsig-verify", "debsig-verify");
    require_tool("gpg", "gnupg");

    let dir = tempfile::tempdir().expect("tempdir");
    let unsigned_path = build_deb(dir.path());
    let deb = DebFile::read(&unsigned_path).expect("parse the dpkg-deb package");
    let key = generate_key("Speedy Test");
    let trust = Trust::new(dir.path(), &key);

    let signed = sign_deb(&deb, &key);
    let signed_path = dir.path().join("signed.deb");
    std::fs::write(&signed_path, &signed).expect("write signed deb");
    let out = trust.verify(&signed_path);
    assert!(
        out.status.success(),
        "a correctly signed package must verify: {}",
        describe(&out)
    );

    // Signing again gives a package that still verifies (the old signature is replaced).
    let resigned = DebFile::parse(&signed, &signed_path).expect("parse signed");
    let resigned_path = dir.path().join("resigned.deb");
    std::fs::write(&resigned_path, sign_deb(&resigned, &key)).expect("write");
    let out = trust.verify(&resigned_path);
    assert!(
        out.status.success(),
        "a re-signed package must verify: {}",
        describe(&out)
    );

    let out = trust.verify(&unsigned_path);
    assert_eq!(
        out.status.code(),
        Some(NO_ORIGIN_SIGNATURE),
        "unsigned: {}",
        describe(&out)
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
    let out = trust.verify(&tampered_path);
    assert_eq!(
        out.status.code(),
        Some(VERIFICATION_FAILED),
        "tampered: {}",
        describe(&out)
    );

    let stranger = generate_key("Someone Else");
    let foreign_path = dir.path().join("foreign.deb");
    std::fs::write(&foreign_path, sign_deb(&deb, &stranger)).expect("write");
    let out = trust.verify(&foreign_path);
    assert_eq!(
        out.status.code(),
        Some(NO_POLICY_FOR_KEY),
        "signed by an untrusted key: {}",
        describe(&out)
    );
}

/// A different key whose keyring sits where the trusted key's should be: the
/// policy names the full fingerprint, so debsig-verify must not accept it.
#[test]
fn debsig_verify_rejects_a_signature_checked_against_the_wrong_keyring() {
    require_tool("dpkg-deb", "dpkg");
    require_tool("debsig-verify", "debsig-verify");
    require_tool("gpg", "gnupg");

    let dir = tempfile::tempdir().expect("tempdir");
    let deb = DebFile::read(&build_deb(dir.path())).expect("parse");
    let trusted = generate_key("Speedy Test");
    let stranger = generate_key("Someone Else");
    let trust = Trust::new(dir.path(), &trusted);

    // Put the stranger's policy directory in place, but with the trusted key's
    // fingerprint in the policy: the stranger's signature must not satisfy it.
    let (stranger_policy, stranger_keyring) = debsig_paths(&stranger.fingerprint());
    let policy_path = trust.policies.join(stranger_policy);
    let keyring_path = trust.keyrings.join(stranger_keyring);
    std::fs::create_dir_all(policy_path.parent().expect("parent")).expect("mkdir");
    std::fs::create_dir_all(keyring_path.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &policy_path,
        debsig_policy(&trusted.fingerprint(), "Speedy Test"),
    )
    .expect("w");
    std::fs::write(
        &keyring_path,
        stranger.public_key().to_binary().expect("export"),
    )
    .expect("w");

    let path = dir.path().join("foreign.deb");
    std::fs::write(&path, sign_deb(&deb, &stranger)).expect("write");
    let out = trust.verify(&path);
    assert_eq!(
        out.status.code(),
        Some(NO_APPLICABLE_POLICY),
        "a policy for another key must not pass: {}",
        describe(&out)
    );
}
