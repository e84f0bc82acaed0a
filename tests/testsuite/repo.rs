//! The signed apt repository in a local directory, consumed by real apt, gpgv, sqv and
//! debsig-verify; every bad input leaves the repository byte-identical.

use crate::support::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PACKAGES: [&str; 3] = ["speedy-app", "speedy-jobs", "speedy-notifier"];

fn repo(fixture: &Fixture) -> PathBuf {
    fixture.path("target/speedy/repo")
}

fn release(fixture: &Fixture, args: &[&str]) -> std::process::Output {
    let mut all = vec!["release", "--quiet"];
    all.extend_from_slice(args);
    fixture.speedy(&all)
}

fn released() -> Fixture {
    let fixture = Fixture::new();
    assert_success(&release(&fixture, &[]));
    fixture
}

fn apt_for(fixture: &Fixture, suite: &str) -> Apt {
    let repo = repo(fixture);
    Apt::new(&format!(
        "deb [signed-by={}/archive-keyring.gpg] file:{} {suite} main",
        repo.display(),
        repo.display()
    ))
}

#[test]
fn apt_installs_from_the_released_repository_and_sees_upgrades() {
    let fixture = Fixture::new();
    let output = release(&fixture, &[]);
    assert_success(&output);
    assert!(
        stderr(&output).contains("generated a development signing key"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("NOT for servers"));
    let key = fixture.path("target/speedy/repo-dev-signing-key.asc");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let apt = apt_for(&fixture, "dev");
    let (ok, text) = apt.update();
    assert!(ok, "apt-get update:\n{text}");
    for name in PACKAGES {
        assert_eq!(apt.candidate(name).as_deref(), Some("1.4.0-1"), "{name}");
    }
    let downloaded = apt.download("speedy-app");
    assert_eq!(
        sha256_file(&downloaded),
        sha256_file(&fixture.deb("speedy-app"))
    );

    // A second release: apt sees the new versions, the old ones stay installable.
    fixture.set_version("1.4.1");
    let output = release(&fixture, &[]);
    assert_success(&output);
    assert!(
        !stderr(&output).contains("generated a development signing key"),
        "the key is reused"
    );
    let (ok, text) = apt.update();
    assert!(ok, "apt-get update:\n{text}");
    for name in PACKAGES {
        assert_eq!(apt.candidate(name).as_deref(), Some("1.4.1-1"), "{name}");
    }
    apt.download("speedy-jobs=1.4.0-1");

    // Another suite is independent.
    let stable = apt_for(&fixture, "stable");
    let (ok, text) = stable.update();
    assert!(!ok, "stable was never published:\n{text}");
    assert!(
        text.contains(&format!(
            "E: The repository 'file:{} stable Release' does not have a Release file.",
            repo(&fixture).display()
        )),
        "{text}"
    );
    assert_success(&fixture.speedy(&["publish", "--quiet", "--suite", "stable"]));
    let (ok, text) = stable.update();
    assert!(ok, "{text}");
    assert_eq!(stable.candidate("speedy-app").as_deref(), Some("1.4.1-1"));
}

#[test]
fn gpgv_and_sqv_verify_the_signatures() {
    let fixture = released();
    let dists = repo(&fixture).join("dists/dev");
    let keyring = repo(&fixture).join("archive-keyring.gpg");
    let keyring = keyring.to_str().unwrap();
    let path = |name: &str| dists.join(name).display().to_string();
    run("gpgv", &["--keyring", keyring, &path("InRelease")]);
    run(
        "gpgv",
        &["--keyring", keyring, &path("Release.gpg"), &path("Release")],
    );
    run(
        "sqv",
        &["--keyring", keyring, &path("Release.gpg"), &path("Release")],
    );
    // InRelease is the cleartext-signed Release, byte for byte.
    let in_release = std::fs::read_to_string(path("InRelease")).unwrap();
    let release = std::fs::read_to_string(path("Release")).unwrap();
    assert!(
        in_release.contains(&release),
        "InRelease signs the Release text"
    );
    assert!(release.contains("Acquire-By-Hash: yes\n"));
    // `key export` works outside a workspace too, and gives the same keyring.
    let elsewhere = tempfile::tempdir().unwrap();
    let dev_key = fixture.path("target/speedy/repo-dev-signing-key.asc");
    let output = speedy_in(
        elsewhere.path(),
        &[
            "key",
            "export",
            "--key-file",
            dev_key.to_str().unwrap(),
            "--output",
            "exported.gpg",
        ],
        &[],
    );
    assert_success(&output);
    let exported = elsewhere.path().join("exported.gpg");
    run(
        "gpgv",
        &["--keyring", exported.to_str().unwrap(), &path("InRelease")],
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&exported).unwrap().permissions().mode() & 0o777,
        0o644,
        "apt reads keyrings as _apt"
    );
    // The armored key is the same key.
    let asc = repo(&fixture).join("archive-keyring.asc");
    run("gpgv", &["--keyring", keyring, &path("InRelease")]);
    assert!(std::fs::read_to_string(asc)
        .unwrap()
        .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
}

#[test]
fn debsig_verify_accepts_the_signed_debs() {
    let fixture = released();
    let output = fixture.speedy(&["key", "debsig-policy", "--message-format", "json"]);
    assert_success(&output);
    let value: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    let policy_path = value["policy_path"]
        .as_str()
        .unwrap()
        .strip_prefix("/etc/debsig/policies/")
        .unwrap()
        .to_owned();
    let keyring_path = value["keyring_path"]
        .as_str()
        .unwrap()
        .strip_prefix("/usr/share/debsig/keyrings/")
        .unwrap()
        .to_owned();
    let debsig = Debsig::new();
    debsig.trust(
        &policy_path,
        value["policy"].as_str().unwrap(),
        &keyring_path,
        &std::fs::read(repo(&fixture).join("archive-keyring.gpg")).unwrap(),
    );
    for name in PACKAGES {
        let pool = repo(&fixture).join(format!("pool/main/s/{name}/{name}_1.4.0-1_amd64.deb"));
        assert_success(&debsig.verify(&pool));
    }
    // Unsigned builds do not pass.
    assert_success(&fixture.speedy(&["build", "--quiet", "--no-build", "--no-sign"]));
    let output = debsig.verify(&fixture.deb("speedy-app"));
    assert_eq!(
        output.status.code(),
        Some(DEBSIG_NO_ORIGIN_SIGNATURE),
        "unsigned: {}",
        describe(&output)
    );
    // Signed builds are still reproducible.
    let first = Fixture::new();
    let second = Fixture::new();
    for f in [&first, &second] {
        std::fs::create_dir_all(f.path("target/speedy")).unwrap();
        std::fs::copy(
            fixture.path("target/speedy/repo-dev-signing-key.asc"),
            f.path("target/speedy/repo-dev-signing-key.asc"),
        )
        .unwrap();
        assert_success(&f.speedy(&["build", "--quiet"]));
    }
    for name in PACKAGES {
        assert_eq!(
            sha256_file(&first.deb(name)),
            sha256_file(&second.deb(name)),
            "{name}"
        );
        assert_eq!(
            sha256_file(&first.deb(name)),
            sha256_file(
                &repo(&fixture).join(format!("pool/main/s/{name}/{name}_1.4.0-1_amd64.deb"))
            )
        );
    }
}

#[test]
fn apt_refuses_a_tampered_repository_and_verify_reports_it() {
    // A by-hash index changed after signing.
    let fixture = released();
    let by_hash_dir = repo(&fixture).join("dists/dev/main/binary-amd64/by-hash/SHA256");
    for entry in std::fs::read_dir(&by_hash_dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read(&path).unwrap();
        let mut changed = text.clone();
        changed.extend_from_slice(b"\n");
        std::fs::write(&path, changed).unwrap();
    }
    let (ok, text) = apt_for(&fixture, "dev").update();
    assert!(!ok, "apt must refuse:\n{text}");
    // apt fetches the index by hash and gets other bytes than InRelease lists.
    let refused = format!("E: Failed to fetch file:{}/", by_hash_dir.display());
    assert!(
        text.lines()
            .any(|l| l.starts_with(&refused) && l.ends_with("  Hash Sum mismatch")),
        "{text}"
    );
    let output = fixture.speedy(&["verify"]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(stdout(&output).contains("FAILED"));

    // InRelease changed after signing.
    let fixture = released();
    let in_release = repo(&fixture).join("dists/dev/InRelease");
    let text = std::fs::read_to_string(&in_release)
        .unwrap()
        .replace("Label: Speedy", "Label: Evil");
    std::fs::write(&in_release, text).unwrap();
    let (ok, text) = apt_for(&fixture, "dev").update();
    assert!(!ok, "apt must refuse:\n{text}");
    // gpgv finds the signature does not match, by the repository's own key.
    let keyring = std::fs::read(repo(&fixture).join("archive-keyring.gpg")).unwrap();
    let fingerprint = cargo_speedy::sign::PublicKey::from_bytes(&keyring, "archive-keyring.gpg")
        .unwrap()
        .fingerprint();
    let source = format!("file:{} dev InRelease", repo(&fixture).display());
    for expected in [
        format!(
            "W: GPG error: {source}: The following signatures were invalid: BADSIG {} ",
            &fingerprint[24..]
        ),
        format!("E: The repository '{source}' is not signed."),
    ] {
        assert!(text.contains(&expected), "{expected:?} in:\n{text}");
    }
    assert_eq!(fixture.speedy(&["verify"]).status.code(), Some(2));

    // Release.gpg replaced by garbage: apt (which reads InRelease) is unaffected, verify is not.
    let fixture = released();
    std::fs::write(
        repo(&fixture).join("dists/dev/Release.gpg"),
        "-----BEGIN PGP SIGNATURE-----\n\nbogus\n-----END PGP SIGNATURE-----\n",
    )
    .unwrap();
    let output = fixture.speedy(&["verify"]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("Release.gpg: not a valid signature"),
        "{}",
        stdout(&output)
    );

    // A pool file changed.
    let fixture = released();
    let pool = repo(&fixture).join("pool/main/s/speedy-app/speedy-app_1.4.0-1_amd64.deb");
    let mut bytes = std::fs::read(&pool).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&pool, bytes).unwrap();
    // And another one gone.
    std::fs::remove_file(
        repo(&fixture).join("pool/main/s/speedy-jobs/speedy-jobs_1.4.0-1_amd64.deb"),
    )
    .unwrap();
    let output = fixture.speedy(&["verify"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stdout(&output).contains("speedy-app_1.4.0-1_amd64.deb: SHA256"),
        "{}",
        stdout(&output)
    );
    assert!(
        stdout(&output).contains("speedy-jobs_1.4.0-1_amd64.deb: missing (speedy-jobs 1.4.0-1)"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn list_and_verify_describe_a_healthy_repository() {
    let fixture = released();
    let output = fixture.speedy(&["list"]);
    assert_success(&output);
    let text = stdout(&output);
    // The three services, and the keyring package every suite carries.
    assert!(
        text.contains("dev (") && text.contains("4 packages"),
        "{text}"
    );
    for name in PACKAGES {
        assert!(text.contains(&format!("  {name} 1.4.0-1 amd64")), "{text}");
    }
    assert!(text.contains("  speedy-archive-keyring "), "{text}");
    let output = fixture.speedy(&["verify"]);
    assert_success(&output);
    assert!(stdout(&output).contains("dev: ok (4 packages)"));
    // A server (or CI) verifies with the public key only.
    let keyring = repo(&fixture).join("archive-keyring.gpg");
    assert_success(&fixture.speedy_env(&["verify", "--keyring", keyring.to_str().unwrap()], &[]));
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let fixture = released();
    fixture.set_version("1.4.1");
    assert_success(&fixture.speedy(&["build", "--quiet"]));
    let before = tree_hashes(&repo(&fixture));
    let output = fixture.speedy(&[
        "publish",
        "--dry-run",
        &fixture
            .debs_dir()
            .join("speedy-app_1.4.1-1_amd64.deb")
            .display()
            .to_string(),
    ]);
    assert_success(&output);
    let text = stdout(&output);
    assert!(
        text.contains("would publish speedy-app 1.4.1-1 (amd64) to dev"),
        "{text}"
    );
    assert!(
        text.contains("upload pool/main/s/speedy-app/speedy-app_1.4.1-1_amd64.deb"),
        "{text}"
    );
    assert!(text.contains("switch dists/dev/InRelease"), "{text}");
    let upload = text.find("upload pool/").unwrap();
    let by_hash = text.find("/by-hash/SHA256/").unwrap();
    let switch = text.find("switch dists/dev/InRelease").unwrap();
    assert!(
        upload < by_hash && by_hash < switch,
        "pool, by-hash, then switch:\n{text}"
    );
    assert_eq!(before, tree_hashes(&repo(&fixture)));
}

#[test]
fn republishing_the_same_bytes_is_a_no_op() {
    let fixture = released();
    let before = tree_hashes(&repo(&fixture));
    let output = fixture.speedy(&["publish"]);
    assert_success(&output);
    assert!(
        stdout(&output).contains("unchanged speedy-app 1.4.0-1"),
        "{}",
        stdout(&output)
    );
    assert_eq!(before, tree_hashes(&repo(&fixture)));
}

/// Retention drops old versions from the index; garbage collection deletes their
/// files after the grace period, but never a file that a kept history record (a
/// state `rollback` may restore) references, even with no grace period at all.
#[test]
fn retention_and_garbage_collection_keep_what_history_may_restore() {
    let fixture = Fixture::new();
    fixture.edit("Cargo.toml", "revision = \"1\"", "revision = \"1\"\n\n[workspace.metadata.speedy.repo]\nretention = 1\nhistory = 1\ngrace-period = \"1h\"");
    assert_success(&release(&fixture, &[]));
    fixture.set_version("1.4.1");
    assert_success(&release(&fixture, &[]));
    let list = stdout(&fixture.speedy(&["list"]));
    assert!(
        list.contains("speedy-app 1.4.1-1") && !list.contains("speedy-app 1.4.0-1"),
        "{list}"
    );
    let pool = |version: &str| {
        repo(&fixture).join(format!(
            "pool/main/s/speedy-app/speedy-app_{version}_amd64.deb"
        ))
    };
    // Retired, and kept: the history's one record can restore the 1.4.0 state.
    assert!(pool("1.4.0-1").exists());
    let pending =
        std::fs::read_to_string(repo(&fixture).join(".speedy/pending-deletes.json")).unwrap();
    assert!(!pending.contains("speedy-app_1.4.0-1"), "{pending}");
    assert_success(&fixture.speedy(&["verify"]));

    // With no grace period, the next publish deletes what neither a suite nor the
    // kept history references: 1.4.0 goes (its record was pushed out), 1.4.1 stays.
    fixture.edit(
        "Cargo.toml",
        "grace-period = \"1h\"",
        "grace-period = \"0s\"",
    );
    fixture.set_version("1.4.2");
    assert_success(&release(&fixture, &[]));
    assert!(!pool("1.4.0-1").exists(), "collected");
    assert!(pool("1.4.1-1").exists(), "kept for the history");
    assert!(pool("1.4.2-1").exists());
    let by_hash =
        std::fs::read_dir(repo(&fixture).join("dists/dev/main/binary-amd64/by-hash/SHA256"))
            .unwrap()
            .count();
    assert_eq!(
        by_hash, 2,
        "the current Packages.gz's by-hash copy, and the one the history names"
    );
    assert_success(&fixture.speedy(&["verify"]));
    let (ok, text) = apt_for(&fixture, "dev").update();
    assert!(ok, "{text}");

    // And the kept state can be restored.
    let output = fixture.speedy(&["rollback", "--suite", "dev"]);
    assert_success(&output);
    let list = stdout(&fixture.speedy(&["list"]));
    assert!(
        list.contains("speedy-app 1.4.1-1") && !list.contains("speedy-app 1.4.2-1"),
        "{list}"
    );
    assert_success(&fixture.speedy(&["verify"]));
    let apt = apt_for(&fixture, "dev");
    let (ok, text) = apt.update();
    assert!(ok, "{text}");
    assert_eq!(apt.candidate("speedy-app").as_deref(), Some("1.4.1-1"));
}

#[test]
fn concurrent_publishers_wait_for_the_lock_and_lose_nothing() {
    let fixture = Fixture::new();
    assert_success(&fixture.speedy(&["build", "--quiet", "--no-sign"]));
    assert_success(&fixture.speedy(&[
        "publish",
        "--quiet",
        &fixture.deb("speedy-app").display().to_string(),
    ]));
    let debs: Vec<String> = PACKAGES
        .iter()
        .map(|n| fixture.deb(n).display().to_string())
        .collect();
    let handles: Vec<_> = debs
        .iter()
        .cloned()
        .map(|deb| {
            let root = fixture.root().to_path_buf();
            std::thread::spawn(move || {
                speedy_in(
                    &root,
                    &["publish", "--quiet", "--wait-for-lock", "60", &deb],
                    &[],
                )
            })
        })
        .collect();
    for handle in handles {
        assert_success(&handle.join().unwrap());
    }
    let list = stdout(&fixture.speedy(&["list"]));
    for name in PACKAGES {
        assert!(
            list.contains(&format!("{name} 1.4.0-1")),
            "{name} lost:\n{list}"
        );
    }
    assert!(
        !repo(&fixture).join(".speedy/lock").exists(),
        "the lock is released"
    );
}

/// A lock with a live lease (another host's publish in progress) is reported with
/// its owner and refused, and --break-lock removes it; a lock whose lease ran out
/// (its publisher died) is taken over without any flag.
#[test]
fn a_held_lock_is_reported_and_an_expired_lease_is_taken_over() {
    let fixture = released();
    let lock = repo(&fixture).join(".speedy/lock");
    let write_lock = |expires: u64| {
        std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
        std::fs::write(
            &lock,
            format!(r#"{{"owner":"ci@builder","host":"builder","pid":4242,"created":1795000000,"expires":{expires},"token":"x"}}"#),
        )
        .unwrap();
    };
    write_lock(cargo_speedy::clock::now() + 600);
    let before = tree_hashes(&repo(&fixture));
    fixture.set_version("1.4.1");
    let output = release(&fixture, &[]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("is locked by ci@builder (pid 4242 on builder) since"),
        "{text}"
    );
    assert!(
        text.contains("its lease runs 5") || text.contains("its lease runs 600 s more"),
        "{text}"
    );
    assert!(
        text.contains("--wait-for-lock") && text.contains("--break-lock"),
        "{text}"
    );
    assert_eq!(before, tree_hashes(&repo(&fixture)));
    let output = release(&fixture, &["--wait-for-lock", "1"]);
    assert_eq!(output.status.code(), Some(1));
    let output = release(&fixture, &["--break-lock"]);
    assert_success(&output);
    assert!(stderr(&output).contains("broke the lock of ci@builder"));
    assert!(!lock.exists());
    assert!(stdout(&fixture.speedy(&["list"])).contains("speedy-app 1.4.1-1"));

    write_lock(cargo_speedy::clock::now() - 1);
    fixture.set_version("1.4.2");
    let output = release(&fixture, &[]);
    assert_success(&output);
    assert!(
        stderr(&output)
            .contains("took over the lock of ci@builder (pid 4242 on builder): its lease expired"),
        "{}",
        stderr(&output)
    );
    assert!(!lock.exists());
    assert!(stdout(&fixture.speedy(&["list"])).contains("speedy-app 1.4.2-1"));
}

/// Every refused input leaves the repository byte-identical.
fn assert_refused_unchanged(
    fixture: &Fixture,
    args: &[&str],
    env: &[(&str, &str)],
    expected: &[&str],
) {
    let before = tree_hashes(&repo(fixture));
    assert!(!before.is_empty());
    let output = fixture.speedy_env(args, env);
    let text = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{args:?} should fail:\n{text}{}",
        stdout(&output)
    );
    for needle in expected {
        assert!(
            text.contains(needle),
            "{args:?}: error should mention {needle:?}:\n{text}"
        );
    }
    assert_eq!(
        before,
        tree_hashes(&repo(fixture)),
        "{args:?} changed the repository"
    );
}

#[test]
fn keys_bad_input() {
    let fixture = released();
    let keys = tempfile::tempdir().unwrap();
    let other = keys.path().join("other.asc");
    assert_success(&fixture.speedy(&["key", "generate", "--output", other.to_str().unwrap()]));
    // A repository signed by another key is refused, not overwritten.
    assert_refused_unchanged(
        &fixture,
        &["publish", "--key-file", other.to_str().unwrap()],
        &[],
        &["not signed by the configured key", "dists/dev/InRelease"],
    );
    assert_refused_unchanged(
        &fixture,
        &["publish"],
        &[("SPEEDY_SIGNING_KEY_FILE", other.to_str().unwrap())],
        &["not signed by the configured key"],
    );
    // Missing key file.
    assert_refused_unchanged(
        &fixture,
        &["publish", "--key-file", "/nonexistent/key.asc"],
        &[],
        &["/nonexistent/key.asc"],
    );
    // Not a key at all.
    let junk = keys.path().join("junk.asc");
    std::fs::write(&junk, "hello").unwrap();
    assert_refused_unchanged(
        &fixture,
        &["publish", "--key-file", junk.to_str().unwrap()],
        &[],
        &["junk.asc"],
    );
    // A passphrase-protected key: missing and wrong passphrases; neither is printed.
    let locked = keys.path().join("locked.asc");
    let output = fixture.speedy_env(
        &["key", "generate", "--output", locked.to_str().unwrap()],
        &[("SPEEDY_SIGNING_PASSPHRASE", "correct horse")],
    );
    assert_success(&output);
    assert!(stdout(&output).contains("passphrase-protected"));
    assert_refused_unchanged(
        &fixture,
        &["publish", "--key-file", locked.to_str().unwrap()],
        &[],
        &["locked.asc"],
    );
    let before = tree_hashes(&repo(&fixture));
    let output = fixture.speedy_env(
        &["publish", "--key-file", locked.to_str().unwrap()],
        &[("SPEEDY_SIGNING_PASSPHRASE", "wrong staple")],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("passphrase"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains("wrong staple") && !stderr(&output).contains("correct horse")
    );
    assert_eq!(before, tree_hashes(&repo(&fixture)));
    // The key in the environment, as CI passes it: its text never appears in messages.
    let armored = std::fs::read_to_string(&other).unwrap();
    let output = fixture.speedy_env(&["publish"], &[("SPEEDY_SIGNING_KEY", &armored)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("not signed by the configured key"));
    let secret_line = armored.lines().nth(2).unwrap();
    assert!(!stderr(&output).contains(secret_line));
}

#[test]
fn packages_bad_input() {
    let fixture = released();
    let dir = tempfile::tempdir().unwrap();
    // A corrupt .deb.
    let corrupt = dir.path().join("speedy-app_9_amd64.deb");
    let bytes = std::fs::read(fixture.deb("speedy-app")).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    assert_refused_unchanged(
        &fixture,
        &["publish", corrupt.to_str().unwrap()],
        &[],
        &["speedy-app_9_amd64.deb"],
    );
    // A .deb whose control data lacks a required field.
    let tree = dir.path().join("pkg");
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        "Package: speedy-extra\nVersion: 1.0-1\nArchitecture: all\nDescription: no maintainer\n",
    )
    .unwrap();
    let incomplete = dir.path().join("incomplete.deb");
    run(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "--build",
            tree.to_str().unwrap(),
            incomplete.to_str().unwrap(),
        ],
    );
    assert_refused_unchanged(
        &fixture,
        &["publish", incomplete.to_str().unwrap()],
        &[],
        &["incomplete.deb", "`Maintainer` is missing"],
    );
    // A version reused with different bytes.
    let rebuilt = Fixture::new();
    std::fs::create_dir_all(rebuilt.path("target/speedy")).unwrap();
    assert_success(&rebuilt.speedy_env(
        &["build", "--quiet", "--no-sign"],
        &[("SOURCE_DATE_EPOCH", "1795000999")],
    ));
    assert_refused_unchanged(
        &fixture,
        &["publish", rebuilt.deb("speedy-notifier").to_str().unwrap()],
        &[],
        &[
            "speedy-notifier 1.4.0-1 (amd64) is already in the repository with different contents",
            "bump the version",
        ],
    );
    // Suites apt cannot take, and suites not configured.
    assert_refused_unchanged(
        &fixture,
        &["publish", "--suite", "dev/evil"],
        &[],
        &["\"dev/evil\" is not a suite name apt can use"],
    );
    assert_refused_unchanged(
        &fixture,
        &["publish", "--suite", "prod"],
        &[],
        &["unknown suite \"prod\"", "dev, stable"],
    );
    // A tampered canonical Packages file: refused before anything is written.
    let packages = repo(&fixture).join("dists/dev/main/binary-amd64/Packages.gz");
    let text = packages_text(&repo(&fixture), "dev", "amd64")
        .replace("Priority: optional", "Priority: required");
    std::fs::write(&packages, gzip_text(&text)).unwrap();
    fixture.set_version("1.4.1");
    assert_success(&fixture.speedy(&["build", "--quiet"]));
    assert_refused_unchanged(
        &fixture,
        &["publish"],
        &[],
        &[
            "dists/dev/main/binary-amd64/Packages",
            "changed outside cargo speedy",
            "cargo speedy verify",
        ],
    );
}

#[test]
fn promote_copies_index_entries_not_bytes() {
    let fixture = released();
    fixture.set_version("1.4.1");
    assert_success(&release(&fixture, &[]));
    let pool_before: Vec<(String, String)> = tree_hashes(&repo(&fixture))
        .into_iter()
        .filter(|(k, _)| k.starts_with("pool/"))
        .collect();
    let dev_before = std::fs::read(repo(&fixture).join("dists/dev/InRelease")).unwrap();

    let output = fixture.speedy(&[
        "promote",
        "--from",
        "dev",
        "--to",
        "stable",
        "-p",
        "speedy-app",
    ]);
    assert_success(&output);
    assert!(
        stdout(&output).contains("published speedy-app 1.4.1-1 (amd64) to stable"),
        "{}",
        stdout(&output)
    );
    let list = stdout(&fixture.speedy(&["list"]));
    let stable = &list[list.find("stable (").unwrap()..];
    assert!(
        stable.contains("speedy-app 1.4.1-1") && !stable.contains("speedy-jobs"),
        "{list}"
    );

    assert_success(&fixture.speedy(&["promote", "--from", "dev", "--to", "stable"]));
    let apt = apt_for(&fixture, "stable");
    let (ok, text) = apt.update();
    assert!(ok, "{text}");
    for name in PACKAGES {
        assert_eq!(apt.candidate(name).as_deref(), Some("1.4.1-1"), "{name}");
    }
    let pool_after: Vec<(String, String)> = tree_hashes(&repo(&fixture))
        .into_iter()
        .filter(|(k, _)| k.starts_with("pool/"))
        .collect();
    assert_eq!(pool_before, pool_after, "promotion writes no pool file");
    assert_eq!(
        dev_before,
        std::fs::read(repo(&fixture).join("dists/dev/InRelease")).unwrap(),
        "the source suite is untouched"
    );
    assert_success(&fixture.speedy(&["verify"]));

    assert_refused_unchanged(
        &fixture,
        &[
            "promote",
            "--from",
            "dev",
            "--to",
            "stable",
            "-p",
            "speedy-web",
        ],
        &[],
        &["package `speedy-web` is not in suite dev"],
    );
    assert_refused_unchanged(
        &fixture,
        &["promote", "--from", "nightly", "--to", "stable"],
        &[],
        &["suite nightly has no packages to promote"],
    );
    assert_refused_unchanged(
        &fixture,
        &["promote", "--from", "dev", "--to", "prod"],
        &[],
        &["unknown suite \"prod\""],
    );
}

/// `key export` says what it looked for and where, in words for an export (not a
/// publish), uses an existing development key without warning about signing, and
/// the key commands offer only the flags they use.
#[test]
fn key_commands_say_what_they_looked_for_and_take_only_their_flags() {
    let fixture = Fixture::new();
    let exported = fixture.path("exported.gpg");
    let output = fixture.speedy(&["key", "export", "--output", exported.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    for looked_for in [
        "no signing key found: looked for --key-file, $SPEEDY_SIGNING_KEY, $SPEEDY_SIGNING_KEY_FILE",
        "[workspace.metadata.speedy.signing]",
        "target/speedy/repo-dev-signing-key.asc",
    ] {
        assert!(text.contains(looked_for), "{looked_for:?}:\n{text}");
    }
    assert!(!text.contains("publishing"), "{text}");
    assert!(!exported.exists());

    assert_success(&release(&fixture, &[]));
    let output = fixture.speedy(&["key", "export", "--output", exported.to_str().unwrap()]);
    assert_success(&output);
    assert!(
        !stderr(&output).contains("signing with"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read(&exported).unwrap(),
        std::fs::read(repo(&fixture).join("archive-keyring.gpg")).unwrap(),
        "the exported key is the one the repository publishes"
    );

    for command in [
        ["key", "generate"],
        ["key", "export"],
        ["key", "debsig-policy"],
    ] {
        let help = stdout(&fixture.speedy(&[command[0], command[1], "--help"]));
        for repository_flag in ["--bucket", "--acl", "--checksums", "--endpoint", "--region"] {
            assert!(
                !help.contains(repository_flag),
                "{command:?} offers {repository_flag}:\n{help}"
            );
        }
    }
}

/// The published entries of `suite` as `list --message-format json` reports them:
/// (name, version, phase).
fn listed(fixture: &Fixture, suite: &str) -> Vec<(String, String, Option<u64>)> {
    listed_all(fixture, suite)
        .into_iter()
        .filter(|(name, _, _)| name == "speedy-app")
        .collect()
}

/// Every entry of `suite` as `list` reports it: name, version and phase.
fn listed_all(fixture: &Fixture, suite: &str) -> Vec<(String, String, Option<u64>)> {
    let output = fixture.speedy(&["list", "--message-format", "json"]);
    assert_success(&output);
    let report: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    report["suites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["suite"] == suite)
        .flat_map(|s| s["packages"].as_array().unwrap().clone())
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["version"].as_str().unwrap().to_owned(),
                p["phase"].as_u64(),
            )
        })
        .collect()
}

fn app(version: &str, phase: Option<u64>) -> (String, String, Option<u64>) {
    ("speedy-app".into(), version.into(), phase)
}

/// The commands that stage and undo a release, from the command line: a phased
/// release, a new phase, history, a dry-run rollback, a rollback, a withdraw; each
/// recorded, each read by apt.
#[test]
fn phase_history_rollback_and_withdraw_from_the_command_line() {
    let fixture = released();
    fixture.set_version("1.4.1");
    assert_success(&release(&fixture, &["--phased", "10"]));
    assert_eq!(
        listed(&fixture, "dev"),
        [app("1.4.1-1", Some(10)), app("1.4.0-1", None)]
    );
    // The suite as it is right after change 2, for `rollback --to 2` below.
    let after_change_2 = packages_text(&repo(&fixture), "dev", "amd64");
    assert!(stdout(&fixture.speedy(&["list"])).contains("speedy-app 1.4.1-1 amd64 (phased 10%)"));
    let packages = packages_text(&repo(&fixture), "dev", "amd64");
    assert!(
        packages.contains("Version: 1.4.1-1\n")
            && packages.contains("\nPhased-Update-Percentage: 10"),
        "{packages}"
    );

    assert_success(&fixture.speedy(&["phase", "--suite", "dev", "-p", "speedy-app", "50"]));
    assert_eq!(listed(&fixture, "dev")[0], app("1.4.1-1", Some(50)));

    let output = fixture.speedy(&["history", "--suite", "dev", "--message-format", "json"]);
    assert_success(&output);
    let report: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    assert_eq!(report["reason"], "history");
    let records = report["suites"][0]["records"].as_array().unwrap();
    let commands: Vec<&str> = records
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["phase", "release", "release"], "newest first");
    let ids: Vec<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [3, 2, 1]);
    assert!(records[0]["host"].is_string() && records[0]["user"].is_string());
    assert_eq!(records[0]["changed"][0]["phase"], 50);
    let human = stdout(&fixture.speedy(&["history", "--suite", "dev"]));
    assert!(
        human.contains("phase by ") && human.contains("~ speedy-app 1.4.1-1 (amd64) (phased 50%)"),
        "{human}"
    );

    // A dry run shows what servers will get and changes nothing.
    let before = tree_hashes(&repo(&fixture));
    // `--to N` is the state right after change N (as helm and kubectl count): here
    // after the first release, so 1.4.1 goes.
    let output = fixture.speedy(&["rollback", "--suite", "dev", "--to", "1", "--dry-run"]);
    assert_success(&output);
    assert!(
        stdout(&output).contains("plan (dry run, nothing was changed)"),
        "{}",
        stdout(&output)
    );
    assert!(
        stdout(&output).contains("retired speedy-app 1.4.1-1 (amd64) (phased 50%) from dev"),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains("Restoring dev as it was after change 1 (release by "),
        "{}",
        stderr(&output)
    );
    assert_eq!(before, tree_hashes(&repo(&fixture)));
    // The state before the first change has no service: refused, dry run or not.
    for dry_run in [&["--dry-run"][..], &[]] {
        let output =
            fixture.speedy(&[&["rollback", "--suite", "dev", "--to", "0"][..], dry_run].concat());
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let text = stderr(&output);
        assert!(
            text.contains("leaves the suite without any service")
                && text.contains("speedy-app 1.4.0-1")
                && text.contains("--allow-empty"),
            "{text}"
        );
        assert_eq!(before, tree_hashes(&repo(&fixture)));
    }
    // With --allow-empty the dry run shows every service going.
    let output = fixture.speedy(&[
        "rollback",
        "--suite",
        "dev",
        "--to",
        "0",
        "--allow-empty",
        "--dry-run",
    ]);
    assert_success(&output);
    assert!(
        stdout(&output).contains("retired speedy-notifier"),
        "{}",
        stdout(&output)
    );
    // The newest change: the suite is already as it was after it.
    let output = fixture.speedy(&["rollback", "--suite", "dev", "--to", "3", "--dry-run"]);
    assert_success(&output);
    assert!(
        stderr(&output).contains("nothing to roll back"),
        "{}",
        stderr(&output)
    );

    // Through the protocol: exactly the Packages entries of the state after change 2.
    assert_success(&fixture.speedy(&["rollback", "--suite", "dev", "--to", "2"]));
    assert_eq!(listed(&fixture, "dev")[0], app("1.4.1-1", Some(10)));
    assert_eq!(
        packages_text(&repo(&fixture), "dev", "amd64"),
        after_change_2
    );
    // Withdraw one version.
    let output = fixture.speedy(&[
        "withdraw",
        "--suite",
        "dev",
        "-p",
        "speedy-app",
        "--version",
        "1.4.1-1",
    ]);
    assert_success(&output);
    assert!(
        stdout(&output).contains("retired speedy-app 1.4.1-1"),
        "{}",
        stdout(&output)
    );
    assert_eq!(listed(&fixture, "dev"), [app("1.4.0-1", None)]);
    let list = stdout(&fixture.speedy(&["list"]));
    assert!(
        list.contains("speedy-notifier 1.4.1-1"),
        "the others keep theirs:\n{list}"
    );
    assert_success(&fixture.speedy(&["verify"]));
    let apt = apt_for(&fixture, "dev");
    let (ok, text) = apt.update();
    assert!(ok, "{text}");
    assert_eq!(apt.candidate("speedy-app").as_deref(), Some("1.4.0-1"));
    assert_eq!(apt.candidate("speedy-notifier").as_deref(), Some("1.4.1-1"));
    let output = fixture.speedy(&["history", "--suite", "dev", "--message-format", "json"]);
    let report: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    let commands: Vec<&str> = report["suites"][0]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        ["withdraw", "rollback", "phase", "release", "release"]
    );
}

/// Bad input to the history commands: a clear error naming what is wrong, and the
/// repository byte-identical.
#[test]
fn history_commands_refuse_bad_input_and_change_nothing() {
    let fixture = released();
    assert_refused_unchanged(
        &fixture,
        &["rollback", "--suite", "prod"],
        &[],
        &["unknown suite \"prod\"", "dev, stable"],
    );
    assert_refused_unchanged(
        &fixture,
        &["rollback", "--suite", "dev", "--to", "99"],
        &[],
        &[
            "the history of suite dev keeps no state after change 99",
            "after changes 0, 1",
        ],
    );
    assert_refused_unchanged(
        &fixture,
        &["rollback", "--suite", "stable"],
        &[],
        &["suite stable has no history to roll back to"],
    );
    assert_refused_unchanged(
        &fixture,
        &[
            "withdraw",
            "--suite",
            "dev",
            "-p",
            "speedy-app",
            "--version",
            "9.9-1",
        ],
        &[],
        &["speedy-app 9.9-1 is not in the suite"],
    );
    assert_refused_unchanged(
        &fixture,
        &["phase", "--suite", "dev", "-p", "speedy-nope", "50"],
        &[],
        &["no package speedy-nope in the suite"],
    );
    assert_refused_unchanged(
        &fixture,
        &["history", "--suite", "prod"],
        &[],
        &["unknown suite \"prod\""],
    );
    let out_of_range: [&[&str]; 2] = [
        &["phase", "--suite", "dev", "-p", "speedy-app", "101"],
        &["release", "--phased", "101"],
    ];
    for args in out_of_range {
        let before = tree_hashes(&repo(&fixture));
        let output = fixture.speedy(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains("101 is not in 0..=100"),
            "{}",
            stderr(&output)
        );
        assert_eq!(before, tree_hashes(&repo(&fixture)));
    }
    // A history edited by hand is refused by every command that would extend it.
    let history = repo(&fixture).join(".speedy/history/dev.asc");
    let text = std::fs::read_to_string(&history).unwrap();
    std::fs::write(&history, text.replace("\"release\"", "\"promote\"")).unwrap();
    assert_refused_unchanged(
        &fixture,
        &["rollback", "--suite", "dev"],
        &[],
        &[".speedy/history/dev.asc was changed outside cargo speedy"],
    );
    assert_refused_unchanged(
        &fixture,
        &["history", "--suite", "dev"],
        &[],
        &["signature does not verify"],
    );
    fixture.set_version("1.4.1");
    assert_refused_unchanged(
        &fixture,
        &["release", "--quiet"],
        &[],
        &["was changed outside cargo speedy"],
    );
}

/// Every path below `dir` (directories too) with its mode and, for files, a hash of
/// its bytes: what "left as it was" means for a directory.
fn tree_with_modes(dir: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    walk(dir, &mut found);
    found
        .into_iter()
        .map(|path| {
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            let mode = metadata.permissions().mode();
            let what = if metadata.is_file() {
                format!("{mode:o} {}", sha256_file(&path))
            } else {
                format!("{mode:o}")
            };
            (path.strip_prefix(dir).unwrap().display().to_string(), what)
        })
        .collect()
}

/// Issue 17, defect 3: publishing into a directory that holds someone else's files (a
/// web site, another tool's repository) is refused before anything is written, not
/// even a lock or a working file; and a repository of ours has no file of the
/// store's own outside `.speedy/`.
#[test]
fn a_foreign_directory_is_refused_and_left_byte_identical() {
    let fixture = released();
    // Another tool's repository: an InRelease signed by another key, beside a page.
    let keys = tempfile::tempdir().unwrap();
    let other_key = keys.path().join("other.asc");
    assert_success(&fixture.speedy(&["key", "generate", "--output", other_key.to_str().unwrap()]));
    let theirs = keys.path().join("theirs");
    assert_success(&fixture.speedy(&[
        "publish",
        "--repo-dir",
        theirs.to_str().unwrap(),
        "--key-file",
        other_key.to_str().unwrap(),
    ]));
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>our site</h1>\n").unwrap();
    std::fs::create_dir_all(site.path().join("dists/dev")).unwrap();
    std::fs::copy(
        theirs.join("dists/dev/InRelease"),
        site.path().join("dists/dev/InRelease"),
    )
    .unwrap();
    let before = tree_with_modes(site.path());
    let output = fixture.speedy(&["publish", "--repo-dir", site.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("dists/dev/InRelease is not signed by the configured key"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        before,
        tree_with_modes(site.path()),
        "the directory was written to"
    );

    // Our own repository: the store's working files stay in .speedy/.
    for (path, _) in tree_with_modes(&repo(&fixture)) {
        assert!(
            path.starts_with(".speedy") && !path.starts_with(".speedy-")
                || !path.split('/').any(|part| part.starts_with(".speedy")),
            "{path}: a file of the store's own outside .speedy/"
        );
    }
}

/// Issue 17, defect 1: a repository on a read-only file system is refused at once,
/// naming the path, and left as it was (it used to loop for ever creating the lock).
/// The read-only mount lives in a mount namespace of the command alone.
#[test]
fn a_read_only_repository_is_refused_within_seconds() {
    let fixture = released();
    fixture.set_version("1.4.1");
    assert_success(&fixture.speedy(&["build", "--quiet"]));
    let repo = repo(&fixture);
    let before = tree_with_modes(&repo);
    let started = std::time::Instant::now();
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind -o ro "$0" "$0" && exec "$@""#)
        .arg(&repo)
        .args([
            "timeout",
            "60",
            env!("CARGO_BIN_EXE_cargo-speedy"),
            "speedy",
            "publish",
        ])
        .current_dir(fixture.root())
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .expect("unshare (util-linux) runs the publish in a mount namespace of its own");
    let elapsed = started.elapsed();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&repo.display().to_string()) && text.contains("Read-only file system"),
        "{text}"
    );
    assert!(
        elapsed < std::time::Duration::from_secs(10),
        "took {elapsed:?}"
    );
    assert_eq!(before, tree_with_modes(&repo));
}

/// The `cargo speedy …` commands a run printed as next steps (between backticks).
fn printed_commands(output: &std::process::Output) -> Vec<String> {
    let text = stdout(output) + &stderr(output);
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|part| part.starts_with("cargo speedy "))
        .map(str::to_owned)
        .collect()
}

/// Runs a printed command line with sh, as a user pasting it would, in `dir`; `cargo`
/// finds this cargo-speedy first on PATH.
fn run_as_printed(dir: &std::path::Path, line: &str) -> std::process::Output {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_cargo-speedy"))
        .parent()
        .unwrap()
        .to_owned();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    assert!(
        !cargo_home.join("bin/cargo-speedy").exists(),
        "cargo would run the installed cargo-speedy in {}, not this one",
        cargo_home.display()
    );
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    tool_output(
        std::process::Command::new("sh")
            .args(["-c", line])
            .current_dir(dir)
            .env("PATH", path)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env_remove("CARGO_TARGET_DIR"),
    )
}

/// Every command the tool prints as a next step runs as printed: it carries the
/// flags that chose the repository (here a --repo-dir outside the workspace whose name
/// needs quoting, and --manifest-path from another directory), with a real role,
/// address and file name for the upper-case words. The long "Next" block comes when a publish
/// creates the suite, one line after that.
#[test]
fn next_steps_run_as_printed_and_the_long_one_comes_once() {
    let fixture = Fixture::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let repo_dir = elsewhere.path().join("it's the repo");
    let manifest = fixture.path("Cargo.toml");
    let release = || {
        speedy_in(
            elsewhere.path(),
            &[
                "release",
                "--manifest-path",
                manifest.to_str().unwrap(),
                "--repo-dir",
                repo_dir.to_str().unwrap(),
            ],
            &[],
        )
    };
    let long_block = "on a server, install the public key";

    for (round, version) in ["1.4.0", "1.4.1"].into_iter().enumerate() {
        fixture.set_version(version);
        let output = release();
        assert_success(&output);
        let text = stderr(&output);
        assert_eq!(
            text.contains(long_block),
            round == 0,
            "the long block only when the suite is created:\n{text}"
        );
        let next: Vec<&str> = text.lines().filter(|l| l.contains("Next ")).collect();
        assert_eq!(next.len(), 1, "{text}");
        if round == 1 {
            assert!(
                next[0].contains("to make a server use dev: `cargo speedy server-setup "),
                "{text}"
            );
        }
        let commands = printed_commands(&output);
        let names: Vec<&str> = commands
            .iter()
            .map(|c| c.split_whitespace().nth(2).unwrap())
            .collect();
        // The development key's warning names `key generate`; undoing the first
        // change would empty the suite, so only the second offers a rollback.
        let expected: &[&str] = if round == 0 {
            &["key", "server-setup"]
        } else {
            &["rollback", "key", "server-setup"]
        };
        assert_eq!(names, expected, "{commands:?}");
        // server-setup first: the rollback changes the suite.
        for command in commands.iter().rev() {
            let line = command
                .replace("ROLE", "web")
                .replace("ADDRESS", "127.0.0.5")
                .replace("KEYFILE", &format!("new-key-{round}.asc"));
            let ran = run_as_printed(elsewhere.path(), &line);
            assert!(ran.status.success(), "{line}: {}", describe(&ran));
            if line.starts_with("cargo speedy server-setup ") {
                assert!(stdout(&ran).starts_with("#!/bin/sh\n"), "{}", stdout(&ran));
            }
        }
    }

    // A suite the repository does not have is refused, naming the ones it has.
    let output = speedy_in(
        elsewhere.path(),
        &[
            "server-setup",
            "--manifest-path",
            manifest.to_str().unwrap(),
            "--repo-dir",
            repo_dir.to_str().unwrap(),
            "--role",
            "web",
            "--db-host",
            "127.0.0.5",
            "--suite",
            "stable",
        ],
        &[],
    );
    assert_fails_with(&output, "suite `stable` is not in the repository");
    assert_fails_with(&output, "its suites are dev");
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
}

/// Issue 24: a project not called "speedy" gets its own names by default: the system
/// user, the origin, the keyring package, the server files and a new key's user id all
/// follow `name` (or, without it, what the services' package names start with).
#[test]
fn defaults_are_named_after_the_project() {
    let fixture = Fixture::new();
    fixture.edit("Cargo.toml", "user = \"speedy\"\n", "name = \"acme\"\n");
    assert_success(&release(&fixture, &[]));
    let in_release = std::fs::read_to_string(repo(&fixture).join("dists/dev/InRelease")).unwrap();
    assert!(in_release.contains("\nOrigin: Acme\n"), "{in_release}");
    let keyring = fixture.path("target/speedy/repo/pool/main/a/acme-archive-keyring");
    assert!(keyring.is_dir(), "no acme-archive-keyring in the pool");
    let app = fixture
        .debs()
        .into_iter()
        .find(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("speedy-app_")
        })
        .expect("the app's .deb");
    let unpacked = Unpacked::new(&app);
    let unit = unpacked.file("/usr/lib/systemd/system/speedy-app.service");
    assert!(unit.contains("\nUser=acme\n"), "{unit}");
    let sysusers = unpacked.file("/usr/lib/sysusers.d/speedy-app.conf");
    assert!(sysusers.contains("u acme "), "{sysusers}");

    let output = fixture.speedy(&["server-setup", "--role", "web", "--db-host", "127.0.0.5"]);
    assert_success(&output);
    let script = stdout(&output);
    for name in [
        "/etc/apt/sources.list.d/acme.sources",
        "acme-archive-keyring",
        "o=Acme",
    ] {
        assert!(script.contains(name), "{name}:\n{script}");
    }
    assert!(!script.contains("speedy.sources"), "{script}");

    let key = fixture.path("acme.asc");
    assert_success(&fixture.speedy(&["key", "generate", "--output", key.to_str().unwrap()]));
    let output = std::process::Command::new("gpg")
        .args([
            "--batch",
            "--show-keys",
            "--with-colons",
            key.to_str().unwrap(),
        ])
        .env("GNUPGHOME", fixture.path(""))
        .output()
        .expect("gpg");
    assert!(
        stdout(&output).contains("Acme apt repository <ops@speedy.example>"),
        "{}",
        stdout(&output)
    );
}

/// A project renamed after its servers were set up: with `name`, the default origin
/// would change, and servers, which follow a repository by its origin (unattended-
/// upgrades, the rollback pin, the keyring and fleet packages), would stop taking its
/// changes without an error. Every command that writes the suite refuses, naming both
/// origins and both ways on, and changes nothing; each way then works.
#[test]
fn a_new_origin_is_refused_until_kept_or_changed_on_purpose() {
    let fixture = released();
    let repo_dir = repo(&fixture);
    let origin_of_dev = || {
        let text = std::fs::read_to_string(repo_dir.join("dists/dev/InRelease")).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("Origin: ").map(str::to_owned))
            .expect("an Origin: line")
    };
    assert_eq!(origin_of_dev(), "Speedy");
    fixture.edit(
        "Cargo.toml",
        "user = \"speedy\"\n",
        "user = \"speedy\"\nname = \"acme\"\n",
    );
    let before = tree_with_modes(&repo_dir);
    for command in [
        &["publish", "--suite", "dev"][..],
        &["publish", "--suite", "dev", "--dry-run"],
        &["rollback", "--suite", "dev"],
        &["fleet", "maintenance", "on", "--suite", "dev"],
    ] {
        let output = fixture.speedy(command);
        for part in [
            "dists/dev/InRelease has Origin: Speedy, and the settings now say \"Acme\"",
            "set origin = \"Speedy\"",
            "run again with --change-origin",
        ] {
            assert_fails_with(&output, part);
        }
        assert_eq!(
            tree_with_modes(&repo_dir),
            before,
            "{command:?} changed the repository"
        );
    }
    // Nor is a server set up for the new origin, which the suite does not have.
    let setup = ["server-setup", "--role", "web", "--db-host", "127.0.0.5"];
    assert_fails_with(
        &fixture.speedy(&setup),
        "dists/dev/InRelease has Origin: Speedy, and the settings now say \"Acme\" \
         (`origin` in [workspace.metadata.speedy.repo]; by default `name`, capitalised): a \
         server set up for \"Acme\" would not take this suite's changes. Set origin = \
         \"Speedy\", or publish the suite with --change-origin first",
    );

    // Kept: the origin set as it was.
    fixture.edit(
        "Cargo.toml",
        "[profile.release]\n",
        "[workspace.metadata.speedy.repo]\norigin = \"Speedy\"\n\n[profile.release]\n",
    );
    assert_success(&fixture.speedy(&["fleet", "maintenance", "on", "--suite", "dev"]));
    assert_eq!(origin_of_dev(), "Speedy");
    let script = fixture.speedy(&setup);
    assert_success(&script);
    assert!(stdout(&script).contains("o=Speedy"), "{}", stdout(&script));

    // Changed on purpose: the next publish of the suite says so.
    fixture.edit("Cargo.toml", "origin = \"Speedy\"\n", "");
    assert_success(&fixture.speedy(&["publish", "--suite", "dev", "--change-origin"]));
    assert_eq!(origin_of_dev(), "Acme");
    assert_success(&fixture.speedy(&["publish", "--suite", "dev"]));
    let script = fixture.speedy(&setup);
    assert_success(&script);
    assert!(stdout(&script).contains("o=Acme"), "{}", stdout(&script));
}

/// A write command starts reading the repository from the settings of the last
/// `cargo metadata` output (kept in target/speedy/metadata.json) while cargo runs
/// again, and keeps what it read only when cargo says the same: changed settings, or a
/// cache that is not one, are read afresh and published by.
#[test]
fn a_publish_reads_early_only_what_the_settings_still_say() {
    const EARLY: &str = "read the repository while cargo metadata ran";
    let fixture = released();
    let cache = fixture.path("target/speedy/metadata.json");
    assert!(cache.is_file(), "release kept no cargo metadata output");
    let publish = |args: &[&str]| {
        let output = fixture.speedy(&[&["-v", "publish"], args].concat());
        assert_success(&output);
        stdout(&output) + &stderr(&output)
    };
    let text = publish(&[]);
    assert!(text.contains(EARLY), "{text}");
    assert!(
        text.contains("unchanged speedy-app 1.4.0-1 (amd64) in dev"),
        "{text}"
    );

    // Another default suite: the early reads were of dev, so they are dropped.
    fixture.edit(
        "Cargo.toml",
        "[profile.release]\n",
        "[workspace.metadata.speedy.repo]\ndefault-suite = \"stable\"\n\n[profile.release]\n",
    );
    let text = publish(&[]);
    assert!(!text.contains(EARLY), "{text}");
    assert!(
        text.contains("published speedy-app 1.4.0-1 (amd64) to stable"),
        "{text}"
    );
    let text = publish(&[]);
    assert!(text.contains(EARLY), "{text}");
    assert!(
        text.contains("unchanged speedy-app 1.4.0-1 (amd64) in stable"),
        "{text}"
    );
    // Another suite named on the command line: the same.
    let text = publish(&["--suite", "dev"]);
    assert!(text.contains(EARLY), "{text}");
    assert!(
        text.contains("unchanged speedy-app 1.4.0-1 (amd64) in dev"),
        "{text}"
    );

    // A cache that is not one, or from another directory, is not used, and is
    // replaced.
    std::fs::write(&cache, "{not json").unwrap();
    let text = publish(&[]);
    assert!(!text.contains(EARLY), "{text}");
    let text = publish(&[]);
    assert!(text.contains(EARLY), "{text}");
    let manifest = fixture.path("Cargo.toml");
    let output = fixture.speedy(&[
        "-v",
        "publish",
        "--manifest-path",
        manifest.to_str().unwrap(),
    ]);
    assert_success(&output);
    assert!(!(stdout(&output) + &stderr(&output)).contains(EARLY));
}

/// Issue 24: `phase` without `-p` raises every package the suite's last change brought
/// (a phased promote of three services is raised in one command), never the keyring;
/// where the last change brought none, it says to name them.
#[test]
fn phase_without_a_package_takes_what_the_last_change_brought() {
    let fixture = released();
    fixture.set_version("1.4.1");
    assert_success(&release(&fixture, &["--phased", "10"]));
    let phases = |fixture: &Fixture| -> Vec<(String, String, Option<u64>)> {
        listed_all(fixture, "dev")
            .into_iter()
            .filter(|(_, version, _)| version.starts_with("1.4.1"))
            .collect()
    };
    assert!(phases(&fixture)
        .iter()
        .all(|(_, _, phase)| *phase == Some(10)));
    let output = fixture.speedy(&["phase", "--suite", "dev", "50"]);
    assert_success(&output);
    assert!(
        stderr(&output).contains("speedy-app, speedy-jobs, speedy-notifier"),
        "{}",
        stderr(&output)
    );
    let now = phases(&fixture);
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(
        now.iter().all(|(_, _, phase)| *phase == Some(50)),
        "{now:?}"
    );
    // Again: the last change (the phase) re-phased the same three.
    assert_success(&fixture.speedy(&["phase", "--suite", "dev", "100"]));
    assert!(phases(&fixture).iter().all(|(_, _, phase)| phase.is_none()));
    // A withdraw brings nothing to phase.
    assert_success(&fixture.speedy(&[
        "withdraw",
        "--suite",
        "dev",
        "-p",
        "speedy-jobs",
        "--version",
        "1.4.1-1",
    ]));
    let output = fixture.speedy(&["phase", "--suite", "dev", "10"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("added or re-phased no package") && stderr(&output).contains("-p"),
        "{}",
        stderr(&output)
    );
}
