//! Repository signatures checked by the verifiers apt really uses: gpgv (Debian 12's apt)
//! and sqv (Debian 13's apt uses it; this is bookworm's sqv 1.1, which only takes
//! detached signatures, so InRelease is split the way apt splits it). gpg inspects
//! packets and stands in for keys that users bring.
//!
//! Needs `gpgv`, `sqv` and `gnupg` installed. Every gpg invocation gets its own throwaway
//! home directory; nothing touches the user's keyrings.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::support::{
    assert_fails_with, assert_success, create_private_dir, describe, split_like_apt, stdout,
    tiny_deb, tool_output, Fixture,
};
use cargo_speedy::sign::{KeyAlgorithm, KeyParams, PublicKey, SigningKey, VerifyError};
use tempfile::TempDir;

const CREATED: u64 = 1_700_000_000;
/// Before "now" (sqv's default --not-after) and after the key's creation.
const SIGNED_AT: u64 = 1_700_086_400;

/// A Release file with what trips cleartext signing: trailing spaces and tabs, and a line
/// starting with '-' (dash-escaped in the cleartext).
const RELEASE: &str = concat!(
    "Origin: Speedy\n",
    "Label: Speedy  \n",
    "Suite: dev\t\n",
    "Codename: dev\n",
    "Date: Wed, 15 Nov 2023 22:13:20 UTC\n",
    "Acquire-By-Hash: yes\n",
    "Architectures: amd64\n",
    "Components: main\n",
    "Description: -the development suite \n",
    "-odd: line starting with a dash\n",
    "SHA256:\n",
    " 0f343b0931126a20f133d67c2b018a3b0f2ec5f0ab7fb1e3b30d79a8f8ab4cde      1234 main/binary-amd64/Packages   \n",
    " 1f343b0931126a20f133d67c2b018a3b0f2ec5f0ab7fb1e3b30d79a8f8ab4cde       567 main/binary-amd64/Packages.gz\n",
);

/// What each verifier says of a signature that does not match the signed data.
const GPGV_BAD: &str = "gpgv: BAD signature from \"Speedy Repository <repo@speedy.example>\"";
const SQV_BAD: &str = "Message has been manipulated";

fn params(algorithm: KeyAlgorithm, passphrase: Option<&str>) -> KeyParams {
    KeyParams {
        algorithm,
        user_id: "Speedy Repository <repo@speedy.example>".to_string(),
        passphrase: passphrase.map(str::to_string),
        created: CREATED,
    }
}

/// A directory holding the exported public key and whatever gets verified.
struct Repo {
    dir: TempDir,
    keyring: PathBuf,
    asc: PathBuf,
    /// A private GNUPGHOME for gpgv, so that it never reads or creates ~/.gnupg.
    gnupghome: PathBuf,
}

impl Repo {
    fn new(public: &PublicKey) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("speedy-archive-keyring.gpg");
        std::fs::write(&keyring, public.to_binary().unwrap()).unwrap();
        let asc = dir.path().join("speedy-archive-keyring.asc");
        std::fs::write(&asc, public.to_armored().unwrap()).unwrap();
        let gnupghome = dir.path().join("gnupg");
        create_private_dir(&gnupghome);
        Repo {
            dir,
            keyring,
            asc,
            gnupghome,
        }
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let file = self.dir.path().join(name);
        std::fs::write(&file, contents).unwrap();
        file
    }

    fn gpgv(&self, files: &[&Path]) -> Output {
        tool_output(
            Command::new("gpgv")
                .arg("--homedir")
                .arg(&self.gnupghome)
                .arg("--keyring")
                .arg(&self.keyring)
                .args(files),
        )
    }

    fn sqv(&self, signature: &Path, data: &Path) -> Output {
        tool_output(
            Command::new("sqv")
                .arg("--keyring")
                .arg(&self.keyring)
                .arg(signature)
                .arg(data),
        )
    }

    /// gpgv and sqv both accept the detached signature over `data`.
    fn assert_detached_verifies(&self, signature: &Path, data: &Path) {
        assert_success(&self.gpgv(&[signature, data]));
        assert_success(&self.sqv(signature, data));
    }

    /// gpgv and sqv both refuse the detached signature, saying what they say for the
    /// fault the test made.
    fn assert_detached_fails(
        &self,
        signature: &Path,
        data: &Path,
        gpgv_says: &str,
        sqv_says: &str,
    ) {
        assert_fails_with(&self.gpgv(&[signature, data]), gpgv_says);
        assert_fails_with(&self.sqv(signature, data), sqv_says);
    }

    /// gpgv verifies InRelease as a whole; sqv 1.1 gets it split like apt does.
    fn assert_inrelease_verifies(&self, inrelease: &str, name: &str) {
        let (gpgv, sqv) = self.verify_inrelease(inrelease, name);
        assert_success(&gpgv);
        assert!(
            sqv.status.success(),
            "sqv {name}: {}\n{inrelease}",
            describe(&sqv)
        );
    }

    /// gpgv and sqv both refuse InRelease as a bad signature.
    fn assert_inrelease_fails(&self, inrelease: &str, name: &str) {
        let (gpgv, sqv) = self.verify_inrelease(inrelease, name);
        assert_fails_with(&gpgv, GPGV_BAD);
        assert_fails_with(&sqv, SQV_BAD);
    }

    /// (gpgv's, sqv's) verdict on an InRelease written as `name`.
    fn verify_inrelease(&self, inrelease: &str, name: &str) -> (Output, Output) {
        let file = self.write(name, inrelease);
        let gpgv = self.gpgv(&[&file]);
        let (content, signature) = split_like_apt(inrelease);
        let content = self.write(&format!("{name}.content"), content);
        let signature = self.write(&format!("{name}.sig"), signature);
        (gpgv, self.sqv(&signature, &content))
    }
}

/// A throwaway GnuPG home for gpg itself; kills the gpg-agent it may have started.
struct GnupgHome(TempDir);

impl GnupgHome {
    fn new() -> GnupgHome {
        // tempfile makes the directory 0700, as gpg wants of its home.
        GnupgHome(tempfile::tempdir().unwrap())
    }

    /// gpg in this home, which must succeed; its stdout.
    fn gpg_ok(&self, args: &[&str]) -> String {
        let out = tool_output(
            Command::new("gpg")
                .arg("--homedir")
                .arg(self.0.path())
                .args(["--batch", "--no-tty", "--pinentry-mode", "loopback"])
                .args(args),
        );
        assert_success(&out);
        stdout(&out)
    }

    fn list_packets(&self, file: &Path) -> String {
        self.gpg_ok(&["--list-packets", file.to_str().expect("utf-8 path")])
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.0.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// InRelease, Release.gpg and a tampered Release, through gpgv and sqv.
fn check_repository_signatures(key: &SigningKey) -> Repo {
    let repo = Repo::new(&key.public_key());

    let inrelease = key.clearsign(RELEASE, SIGNED_AT).unwrap();
    assert!(
        inrelease.contains("\n- -odd: line starting with a dash\n"),
        "{inrelease}"
    );
    repo.assert_inrelease_verifies(&inrelease, "InRelease");
    let tampered = inrelease.replace("Suite: dev", "Suite: stable");
    assert_ne!(tampered, inrelease);
    repo.assert_inrelease_fails(&tampered, "InRelease.tampered");

    let release = repo.write("Release", RELEASE);
    let release_gpg = repo.write(
        "Release.gpg",
        key.sign_detached_armored(RELEASE.as_bytes(), SIGNED_AT)
            .unwrap(),
    );
    repo.assert_detached_verifies(&release_gpg, &release);
    let binary_sig = repo.write(
        "Release.sig",
        key.sign_detached_binary(RELEASE.as_bytes(), SIGNED_AT)
            .unwrap(),
    );
    repo.assert_detached_verifies(&binary_sig, &release);

    let tampered = repo.write("Release.tampered", RELEASE.replace("1234", "1235"));
    repo.assert_detached_fails(&release_gpg, &tampered, GPGV_BAD, SQV_BAD);
    repo.assert_detached_fails(&binary_sig, &tampered, GPGV_BAD, SQV_BAD);

    // Our own verifier agrees with gpgv and sqv.
    let public = key.public_key();
    let text = public.verify_cleartext(&inrelease).unwrap();
    let (apt_content, _) = split_like_apt(&inrelease);
    assert_eq!(text, format!("{apt_content}\n"));
    public
        .verify_detached(
            RELEASE.as_bytes(),
            key.sign_detached_armored(RELEASE.as_bytes(), SIGNED_AT)
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
    repo
}

/// The signature and key packets as gpg sees them.
fn check_packets(key: &SigningKey, repo: &Repo, algo: u8) {
    let gnupg = GnupgHome::new();
    let signature = repo.write(
        "check.sig",
        key.sign_detached_binary(b"data", SIGNED_AT).unwrap(),
    );
    let packets = gnupg.list_packets(&signature);
    assert!(
        packets.contains(&format!(":signature packet: algo {algo},")),
        "{packets}"
    );
    assert!(
        packets.contains("digest algo 10,"),
        "not SHA-512: {packets}"
    );
    assert!(packets.contains("version 4,"), "{packets}");
    assert!(
        packets.contains("sigclass 0x00"),
        "not a binary signature: {packets}"
    );

    // gpg lists only the text of a cleartext message, so look at its signature block.
    let (_, inrelease_sig) = split_like_apt(&key.clearsign("a\n", SIGNED_AT).unwrap());
    let packets = gnupg.list_packets(&repo.write("check.inrelease.sig", inrelease_sig));
    assert!(
        packets.contains("digest algo 10,") && packets.contains("sigclass 0x01"),
        "{packets}"
    );

    let packets = gnupg.list_packets(&repo.keyring);
    assert!(
        packets.contains(&format!(":public key packet:\n\tversion 4, algo {algo},")),
        "{packets}"
    );
    assert!(!packets.contains("secret"), "{packets}");
    assert!(
        packets.contains(":user ID packet: \"Speedy Repository <repo@speedy.example>\""),
        "{packets}"
    );
    assert!(
        packets.contains("sigclass 0x13") && packets.contains("digest algo 10,"),
        "{packets}"
    );
    // The .asc is the same key for gpg (apt reads .asc in Signed-By itself).
    let colons = gnupg.gpg_ok(&[
        "--with-colons",
        "--show-keys",
        repo.asc.to_str().expect("utf-8 path"),
    ]);
    assert!(
        colons.contains(&format!("fpr:::::::::{}:", key.fingerprint())),
        "{colons}"
    );
    // The keyring is a file apt's `_apt` user can read once installed with 0644; the
    // bytes are exactly the binary export.
    assert_eq!(
        std::fs::read(&repo.keyring).unwrap(),
        key.public_key().to_binary().unwrap()
    );
}

#[test]
fn ed25519_signatures_verify_with_gpgv_and_sqv() {
    let key = SigningKey::generate(&params(
        KeyAlgorithm::Ed25519,
        Some("integration passphrase"),
    ))
    .unwrap();
    let repo = check_repository_signatures(&key);
    check_packets(&key, &repo, 22);
}

#[test]
fn rsa3072_signatures_verify_with_gpgv_and_sqv() {
    // The only RSA key generated in the test suite: slow in debug builds.
    let key = SigningKey::generate(&params(KeyAlgorithm::Rsa3072, None)).unwrap();
    let repo = check_repository_signatures(&key);
    check_packets(&key, &repo, 1);
    let gnupg = GnupgHome::new();
    let packets = gnupg.list_packets(&repo.keyring);
    assert!(packets.contains("pkey[0]: [3072 bits]"), "{packets}");
}

#[test]
fn signatures_dated_before_the_key_still_verify() {
    let key = SigningKey::generate(&params(KeyAlgorithm::Ed25519, None)).unwrap();
    let repo = Repo::new(&key.public_key());
    let release = repo.write("Release", RELEASE);
    let sig = repo.write(
        "Release.gpg",
        key.sign_detached_armored(RELEASE.as_bytes(), 0).unwrap(),
    );
    repo.assert_detached_verifies(&sig, &release);
}

/// sqv refuses signatures made before the key's self-signature (gpgv does not). A key
/// created in the past but self-signed later (rpgp's builder self-signs "now") must not
/// produce such signatures, even when asked for an old time.
#[test]
fn signatures_dated_before_the_self_signature_are_moved_after_it() {
    use pgp::composed::{KeyType, SecretKeyParamsBuilder};
    let mut builder = SecretKeyParamsBuilder::default();
    builder
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .created_at(pgp::types::Timestamp::from_secs(CREATED as u32))
        .primary_user_id("Late <late@speedy.example>".to_string());
    let armored = builder
        .build()
        .unwrap()
        .generate(rand::thread_rng())
        .unwrap()
        .to_armored_string(Default::default())
        .unwrap();
    let key = SigningKey::from_armored(&armored, None, "late.asc").unwrap();
    let repo = Repo::new(&key.public_key());
    let release = repo.write("Release", RELEASE);
    let sig = repo.write(
        "Release.gpg",
        key.sign_detached_armored(RELEASE.as_bytes(), SIGNED_AT)
            .unwrap(),
    );
    repo.assert_detached_verifies(&sig, &release);
    repo.assert_inrelease_verifies(&key.clearsign(RELEASE, SIGNED_AT).unwrap(), "InRelease");
}

#[test]
fn a_signature_by_another_key_is_refused_by_all_verifiers() {
    let key = SigningKey::generate(&params(KeyAlgorithm::Ed25519, None)).unwrap();
    let other = SigningKey::generate(&params(KeyAlgorithm::Ed25519, None)).unwrap();
    let repo = Repo::new(&key.public_key());
    let release = repo.write("Release", RELEASE);
    let sig = repo.write(
        "Release.gpg",
        other
            .sign_detached_armored(RELEASE.as_bytes(), SIGNED_AT)
            .unwrap(),
    );
    repo.assert_detached_fails(
        &sig,
        &release,
        "gpgv: Can't check signature: No public key",
        &format!(
            "Missing key {}, which is needed to verify signature.",
            other.fingerprint()
        ),
    );
    let err = key
        .public_key()
        .verify_detached(RELEASE.as_bytes(), &std::fs::read(&sig).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::SignedByOtherKey { .. }),
        "{err:?}"
    );
}

/// Users bring keys made by GnuPG: a plain `--quick-gen-key` Ed25519 key, protected by a
/// passphrase, and an offline-style key whose primary only certifies and whose signing
/// happens on a subkey.
#[test]
fn gnupg_made_keys_sign_repositories() {
    let gnupg = GnupgHome::new();
    let pass = "gnupg passphrase";
    for (uid, usage, subkey) in [
        ("Plain <plain@speedy.example>", "sign,cert", false),
        ("Subkey <subkey@speedy.example>", "cert", true),
    ] {
        gnupg.gpg_ok(&[
            "--passphrase",
            pass,
            "--quick-gen-key",
            uid,
            "ed25519",
            usage,
            "never",
        ]);
        let colons = gnupg.gpg_ok(&["--with-colons", "--list-keys", uid]);
        let fingerprint = colons
            .lines()
            .find_map(|l| l.strip_prefix("fpr:::::::::"))
            .and_then(|l| l.strip_suffix(':'))
            .unwrap()
            .to_string();
        if subkey {
            gnupg.gpg_ok(&[
                "--passphrase",
                pass,
                "--quick-add-key",
                &fingerprint,
                "ed25519",
                "sign",
                "never",
            ]);
        }
        let secret = gnupg.gpg_ok(&[
            "--passphrase",
            pass,
            "--armor",
            "--export-secret-keys",
            &fingerprint,
        ]);
        let public = gnupg.gpg_ok(&["--armor", "--export", &fingerprint]);

        let err = SigningKey::from_armored(&secret, None, "GPG_KEY").unwrap_err();
        assert!(err.to_string().contains("passphrase"), "{err}");
        let err = SigningKey::from_armored(&secret, Some("nope"), "GPG_KEY").unwrap_err();
        assert!(err.to_string().contains("does not unlock"), "{err}");
        let key = SigningKey::from_armored(&secret, Some(pass), "GPG_KEY").unwrap();
        assert_eq!(key.fingerprint(), fingerprint);
        let public = PublicKey::from_bytes(public.as_bytes(), "public.asc").unwrap();
        assert_eq!(public.fingerprint(), fingerprint);

        // The key was created just now: sign "now", as a release would.
        let now = cargo_speedy::clock::now();
        let repo = Repo::new(&public);
        let release = repo.write("Release", RELEASE);
        let sig = repo.write(
            "Release.gpg",
            key.sign_detached_armored(RELEASE.as_bytes(), now).unwrap(),
        );
        repo.assert_detached_verifies(&sig, &release);
        repo.assert_inrelease_verifies(&key.clearsign(RELEASE, now).unwrap(), "InRelease");
        public
            .verify_detached(RELEASE.as_bytes(), &std::fs::read(&sig).unwrap())
            .unwrap();
        if subkey {
            let packets = gnupg.list_packets(&sig);
            assert!(
                !packets.contains(&fingerprint[24..]),
                "signed by the primary: {packets}"
            );
        }
    }
}

/// Our passphrase-protected export imports into GnuPG, which then signs with it.
#[test]
fn generated_secret_key_imports_into_gnupg() {
    let pass = "exported passphrase";
    let key = SigningKey::generate(&params(KeyAlgorithm::Ed25519, Some(pass))).unwrap();
    let gnupg = GnupgHome::new();
    let file = gnupg.0.path().join("secret.asc");
    std::fs::write(&file, key.to_armored().unwrap()).unwrap();
    gnupg.gpg_ok(&[
        "--passphrase",
        pass,
        "--import",
        file.to_str().expect("utf-8 path"),
    ]);
    let colons = gnupg.gpg_ok(&["--with-colons", "--list-secret-keys"]);
    assert!(
        colons.contains(&format!("fpr:::::::::{}:", key.fingerprint())),
        "{colons}"
    );
    let data = gnupg.0.path().join("data");
    std::fs::write(&data, "x").unwrap();
    gnupg.gpg_ok(&[
        "--passphrase",
        pass,
        "--local-user",
        &key.fingerprint(),
        "--detach-sign",
        data.to_str().expect("utf-8 path"),
    ]);
    let sig = std::fs::read(gnupg.0.path().join("data.sig")).unwrap();
    key.public_key().verify_detached(b"x", &sig).unwrap();
}

/// `doctor` and `verify` say what apt will make of the key, and what to do: a key that
/// expires within 90 days is a warning, a key bound only by SHA-1 self-signatures (which
/// apt's sqv rejects since 2026-02-01) a failure, and the fix `doctor` prints works.
#[test]
fn doctor_and_verify_check_the_key_as_apt_will() {
    let gnupg = GnupgHome::new();
    let fixture = Fixture::new();
    let export = |uid: &str, name: &str| -> PathBuf {
        let armored = gnupg.gpg_ok(&["--armor", "--passphrase", "", "--export-secret-keys", uid]);
        let path = fixture.path(name);
        std::fs::write(&path, armored).unwrap();
        path
    };
    let fingerprint = |uid: &str| -> String {
        gnupg
            .gpg_ok(&["--with-colons", "--list-keys", uid])
            .lines()
            .find_map(|l| l.strip_prefix("fpr:::::::::"))
            .and_then(|l| l.strip_suffix(':'))
            .unwrap()
            .to_string()
    };
    let doctor = |key: &Path| {
        fixture.speedy(&[
            "doctor",
            "--key-file",
            key.to_str().unwrap(),
            "--message-format",
            "json",
        ])
    };
    let key_rows = |output: &Output| -> Vec<(String, String)> {
        let report: serde_json::Value =
            serde_json::from_str(stdout(output).lines().last().unwrap()).unwrap();
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["check"] == "signing key")
            .map(|c| {
                (
                    c["status"].as_str().unwrap().to_owned(),
                    c["detail"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };

    // Expiring in 30 days: a warning with the command that extends it.
    gnupg.gpg_ok(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        "Soon <soon@speedy.example>",
        "ed25519",
        "sign",
        "30d",
    ]);
    let soon = export("soon@speedy.example", "soon.asc");
    let output = doctor(&soon);
    assert_success(&output);
    let rows = key_rows(&output);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "warn");
    assert!(
        rows[0].1.contains("expires on") && rows[0].1.contains("--quick-set-expire"),
        "{rows:?}"
    );
    // verify reports it too, and still passes: apt accepts the key today.
    let deb = tiny_deb(fixture.root(), "speedy-app", "1.0-1");
    assert_success(&fixture.speedy(&[
        "publish",
        "--quiet",
        "--key-file",
        soon.to_str().unwrap(),
        deb.to_str().unwrap(),
    ]));
    let verified = fixture.speedy(&["verify", "--key-file", soon.to_str().unwrap()]);
    assert_success(&verified);
    assert!(
        stdout(&verified).contains("warning: key"),
        "{}",
        stdout(&verified)
    );

    // SHA-1 self-signatures: a failure naming SHA-1, exit code 2.
    gnupg.gpg_ok(&[
        "--passphrase",
        "",
        "--cert-digest-algo",
        "SHA1",
        "--quick-gen-key",
        "Old <old@speedy.example>",
        "ed25519",
        "sign",
        "2y",
    ]);
    let sha1 = export("old@speedy.example", "sha1.asc");
    let output = doctor(&sha1);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let rows = key_rows(&output);
    assert_eq!(rows[0].0, "fail");
    assert!(
        rows[0].1.contains("SHA-1") && rows[0].1.contains("2026-02-01"),
        "{rows:?}"
    );

    // The fix doctor names: a SHA-512 self-signature; then the key is sound.
    let old = fingerprint("old@speedy.example");
    gnupg.gpg_ok(&[
        "--passphrase",
        "",
        "--cert-digest-algo",
        "SHA512",
        "--quick-set-expire",
        &old,
        "2y",
    ]);
    let fixed = export("old@speedy.example", "fixed.asc");
    let output = doctor(&fixed);
    assert_success(&output);
    let rows = key_rows(&output);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "pass", "{rows:?}");
}
