//! Publishing to an S3-compatible store (moto in server mode on 127.0.0.1, a real
//! HTTP server, no SDK mocks), read back by real apt over HTTP: crash consistency by
//! enumeration, concurrent publishers with and without conditional writes, readers
//! during writes, and bad input.

use crate::support::faulty::{FaultTiming, FaultyStore};
use crate::support::*;
use cargo_speedy::publish::lock::{self, LockInfo, LockOptions};
use cargo_speedy::publish::{read_debs, verify, IncomingDeb, PublishError};
use cargo_speedy::repo::layout::LOCK_KEY;
use cargo_speedy::sign::SigningKey;
use cargo_speedy::store::s3::{Credentials, S3Config, S3Store};
use cargo_speedy::store::{Body, Store, StoreError};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PACKAGES: [&str; 3] = ["speedy-app", "speedy-jobs", "speedy-notifier"];

fn s3_store(moto: &MotoServer, bucket: &str) -> S3Store {
    moto.store(bucket)
}

/// An apt client reading the bucket over plain HTTP, as a server would.
fn apt_over_http(moto: &MotoServer, bucket: &str, keyring: &Path) -> Apt {
    Apt::new(&format!(
        "deb [signed-by={}] {}/{bucket}/ dev main",
        keyring.display(),
        moto.endpoint()
    ))
}

fn write_keyring(dir: &Path, key: &SigningKey) -> PathBuf {
    let path = dir.join("keyring.gpg");
    std::fs::write(&path, key.public_key().to_binary().unwrap()).unwrap();
    path
}

fn cli_with_bucket(
    fixture: &Fixture,
    moto: &MotoServer,
    bucket: &str,
    args: &[&str],
    key: &Path,
) -> std::process::Output {
    let flags = moto.flags(bucket);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(flags.iter().map(String::as_str));
    all.extend(["--key-file", key.to_str().unwrap()]);
    fixture.speedy_env(&all, &TEST_CREDENTIALS)
}

fn generate_key_file(fixture: &Fixture) -> PathBuf {
    let key = fixture.path("repo-key.asc");
    assert_success(&fixture.speedy(&["key", "generate", "--output", key.to_str().unwrap()]));
    key
}

#[test]
fn release_to_a_bucket_is_read_by_apt_over_http() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("speedy-apt");
    let fixture = Fixture::new();
    let key = generate_key_file(&fixture);
    let output = cli_with_bucket(&fixture, moto, &bucket, &["release", "--quiet"], &key);
    assert_success(&output);
    assert!(stdout(&output).contains("published speedy-app 1.4.0-1 (amd64) to dev"));

    let keyring = fixture.path("keyring.gpg");
    assert_success(&fixture.speedy(&[
        "key",
        "export",
        "--key-file",
        key.to_str().unwrap(),
        "--output",
        keyring.to_str().unwrap(),
    ]));
    let apt = apt_over_http(moto, &bucket, &keyring);
    let (ok, text) = apt.update();
    assert!(ok, "{text}");
    for name in PACKAGES {
        assert_eq!(apt.candidate(name).as_deref(), Some("1.4.0-1"), "{name}");
    }
    assert_eq!(
        sha256_file(&apt.download("speedy-notifier")),
        sha256_file(&fixture.deb("speedy-notifier"))
    );

    // Object properties: public, typed, cached for as long as they are immutable.
    let (status, head) = moto.anonymous_get(&format!(
        "{bucket}/pool/main/s/speedy-app/speedy-app_1.4.0-1_amd64.deb"
    ));
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("cache-control: public, max-age=31536000, immutable"),
        "{}",
        &head[..600.min(head.len())]
    );
    assert!(head.contains("content-type: application/vnd.debian.binary-package"));
    let (status, head) = moto.anonymous_get(&format!("{bucket}/dists/dev/InRelease"));
    assert_eq!(status, 200);
    assert!(head
        .to_ascii_lowercase()
        .contains("cache-control: public, max-age=60"));

    // The next publish reads the bucket while cargo metadata runs, from the settings
    // of the last output (the bucket is a flag: the same in both).
    let output = cli_with_bucket(
        &fixture,
        moto,
        &bucket,
        &["-v", "publish", "--suite", "stable"],
        &key,
    );
    assert_success(&output);
    let text = stdout(&output) + &stderr(&output);
    assert!(
        text.contains("read the repository while cargo metadata ran")
            && text.contains("published speedy-app 1.4.0-1 (amd64) to stable"),
        "{text}"
    );

    // list and verify work exactly as against a directory.
    let output = cli_with_bucket(&fixture, moto, &bucket, &["list"], &key);
    assert_success(&output);
    assert!(stdout(&output).contains("speedy-jobs 1.4.0-1 amd64"));
    let output = cli_with_bucket(&fixture, moto, &bucket, &["verify"], &key);
    assert_success(&output);
    // The three services and the keyring package.
    assert!(stdout(&output).contains("dev: ok (4 packages)"));
    // No lock left, and bookkeeping is private.
    let (status, _) = moto.anonymous_get(&format!("{bucket}/.speedy/lock"));
    assert_ne!(status, 200);

    // verify streams each pool file through its hash: a changed byte and a missing
    // file are both found.
    let store = s3_store(moto, &bucket);
    let app = "pool/main/s/speedy-app/speedy-app_1.4.0-1_amd64.deb";
    let jobs = "pool/main/s/speedy-jobs/speedy-jobs_1.4.0-1_amd64.deb";
    let mut bytes = store.get(app).unwrap().unwrap();
    let digest = store.digest(app).unwrap().unwrap();
    assert_eq!(digest.size, bytes.len() as u64);
    assert_eq!(digest.sha256, sha256_file(&fixture.deb("speedy-app")));
    assert_eq!(
        store.digest("pool/main/s/none/none_1_amd64.deb").unwrap(),
        None
    );
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    store
        .put(
            app,
            Body::Bytes(&bytes),
            &cargo_speedy::publish::put_options(app),
        )
        .unwrap();
    store.delete(jobs).unwrap();
    let output = cli_with_bucket(&fixture, moto, &bucket, &["verify"], &key);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(text.contains(&format!("{app}: SHA256")), "{text}");
    assert!(
        text.contains(&format!("{jobs}: missing (speedy-jobs 1.4.0-1)")),
        "{text}"
    );
}

#[test]
fn private_acl_objects_are_not_readable_anonymously() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("speedy-private");
    let fixture = Fixture::new();
    let key = generate_key_file(&fixture);
    assert_success(&cli_with_bucket(
        &fixture,
        moto,
        &bucket,
        &["release", "--quiet", "--acl", "private"],
        &key,
    ));
    for path in [
        "dists/dev/InRelease",
        "pool/main/s/speedy-app/speedy-app_1.4.0-1_amd64.deb",
        "archive-keyring.gpg",
    ] {
        let (status, _) = moto.anonymous_get(&format!("{bucket}/{path}"));
        assert_eq!(status, 403, "{path}");
    }
    let keyring = fixture.path("keyring.gpg");
    assert_success(&fixture.speedy(&[
        "key",
        "export",
        "--key-file",
        key.to_str().unwrap(),
        "--output",
        keyring.to_str().unwrap(),
    ]));
    let (ok, _) = apt_over_http(moto, &bucket, &keyring).update();
    assert!(!ok, "apt cannot read a private repository anonymously");
    // The owner still can.
    assert_success(&cli_with_bucket(
        &fixture,
        moto,
        &bucket,
        &["verify", "--acl", "private"],
        &key,
    ));
}

#[test]
fn doctor_reports_what_the_bucket_supports() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("speedy-doctor");
    let fixture = Fixture::new();
    let mut args = vec![
        "doctor".to_owned(),
        "--message-format".into(),
        "json".into(),
    ];
    args.extend(moto.flags(&bucket));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = fixture.speedy_env(&args, &TEST_CREDENTIALS);
    assert_success(&output);
    let report: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    let status = |check: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check)
            .map(|c| c["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(status("credentials and bucket"), "pass");
    assert_eq!(status("conditional writes"), "pass");
    assert_eq!(status("anonymous public read"), "pass");
    assert_eq!(status("private objects"), "pass");
    assert!(["pass", "warn"].contains(&status("checksum headers").as_str()));
    // The probes are cleaned up.
    assert!(s3_store(moto, &bucket).list("").unwrap().is_empty());

    // A missing bucket: the table says so, and the exit code is 2.
    let mut args = vec!["doctor".to_owned()];
    args.extend(moto.flags("speedy-missing"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = fixture.speedy_env(&args, &TEST_CREDENTIALS);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stdout(&output).contains("FAIL")
            && stdout(&output).contains("\"speedy-missing\" does not exist"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("speedy-bad");
    let fixture = Fixture::new();
    let key = generate_key_file(&fixture);
    assert_success(&cli_with_bucket(
        &fixture,
        moto,
        &bucket,
        &["release", "--quiet"],
        &key,
    ));
    let store = s3_store(moto, &bucket);
    let before = bucket_contents(&store);
    let refused = |args: &[&str], env: &[(&str, &str)], key: &Path, expected: &[&str]| {
        let flags = moto.flags(&bucket);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(flags.iter().map(String::as_str));
        all.extend(["--key-file", key.to_str().unwrap()]);
        let output = fixture.speedy_env(&all, env);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {text}");
        for needle in expected {
            assert!(
                text.contains(needle),
                "{args:?}: {needle:?} missing from:\n{text}"
            );
        }
        assert!(
            !text.contains("speedy-test-secret"),
            "the secret never appears"
        );
        assert_eq!(
            before,
            bucket_contents(&store),
            "{args:?} wrote to the bucket"
        );
    };
    // No credentials in the environment.
    refused(
        &["publish"],
        &[],
        &key,
        &["no credentials", "SPACES_ACCESS_KEY_ID"],
    );
    // A repository signed by another key.
    let other = fixture.path("other-key.asc");
    assert_success(&fixture.speedy(&["key", "generate", "--output", other.to_str().unwrap()]));
    refused(
        &["publish"],
        &TEST_CREDENTIALS,
        &other,
        &["not signed by the configured key"],
    );
    // An unreachable endpoint: refused at once, named, within seconds (it used to take
    // two retry deadlines, about 4 minutes).
    let started = std::time::Instant::now();
    let output = fixture.speedy_env(
        &[
            "publish",
            "--bucket",
            bucket.as_str(),
            "--region",
            "us-east-1",
            "--endpoint",
            "http://127.0.0.1:9",
            "--addressing",
            "path",
            "--key-file",
            key.to_str().unwrap(),
        ],
        &TEST_CREDENTIALS,
    );
    assert_eq!(output.status.code(), Some(1));
    let took = started.elapsed();
    let text = stderr(&output);
    assert!(
        text.contains("cannot reach http://127.0.0.1:9: connection refused")
            && text.contains("--endpoint"),
        "{text}"
    );
    assert!(
        took < std::time::Duration::from_secs(15),
        "took {took:?}: {text}"
    );
    // A missing bucket.
    let output = cli_with_bucket(&fixture, moto, "speedy-nowhere", &["publish"], &key);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("the bucket \"speedy-nowhere\" does not exist"),
        "{}",
        stderr(&output)
    );
    // Spaces never gets a development key.
    let output = fixture.speedy_env(
        &[
            "publish",
            "--bucket",
            bucket.as_str(),
            "--endpoint",
            &moto.endpoint(),
            "--addressing",
            "path",
        ],
        &TEST_CREDENTIALS,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no signing key configured"),
        "{}",
        stderr(&output)
    );
    // A corrupt remote Packages file.
    let packages = "dists/dev/main/binary-amd64/Packages.gz";
    let text = gunzip_text(&store.get(packages).unwrap().unwrap()) + "\nPackage: evil\n";
    store
        .put(
            packages,
            Body::Bytes(&gzip_text(&text)),
            &cargo_speedy::publish::put_options(packages),
        )
        .unwrap();
    let before_corrupt = bucket_contents(&store);
    let output = cli_with_bucket(&fixture, moto, &bucket, &["publish"], &key);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("changed outside cargo speedy"),
        "{}",
        stderr(&output)
    );
    assert_eq!(before_corrupt, bucket_contents(&store));
}

#[test]
fn wrong_credentials_are_refused_clearly() {
    // moto checks signatures once its free requests are used up: one, to make the bucket.
    let moto = MotoServer::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]);
    moto.create_bucket("speedy-auth");
    let fixture = Fixture::new();
    let key = generate_key_file(&fixture);
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN"),
        ("AWS_SECRET_ACCESS_KEY", "speedy-wrong-secret"),
    ];
    let flags = moto.flags("speedy-auth");
    let mut args = vec!["release", "--quiet"];
    args.extend(flags.iter().map(String::as_str));
    args.extend(["--key-file", key.to_str().unwrap()]);
    let output = fixture.speedy_env(&args, &credentials);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the credentials were refused (InvalidAccessKeyId)"),
        "{text}"
    );
    assert!(text.contains("SPACES_ACCESS_KEY_ID"), "{text}");
    assert!(
        !text.contains("speedy-wrong-secret"),
        "the secret never appears"
    );
    assert!(
        fixture.debs().is_empty(),
        "the store is checked before building"
    );
}

/// Invariant 6 against S3: every request of a three-package publish into a non-empty
/// repository fails once, in turn; apt over HTTP reads the result, a rerun finishes.
#[test]
fn a_fault_at_any_request_leaves_a_readable_bucket_and_a_rerun_finishes() {
    let moto = MotoServer::shared();
    let key = test_signing_key(cargo_speedy::clock::now() - 60);
    let work = tempfile::tempdir().unwrap();
    let keyring = write_keyring(work.path(), &key);
    let v1: Vec<PathBuf> = PACKAGES
        .iter()
        .map(|n| tiny_deb(work.path(), n, "1.0-1"))
        .collect();
    let v2: Vec<PathBuf> = PACKAGES
        .iter()
        .map(|n| tiny_deb(work.path(), n, "1.1-1"))
        .collect();
    let v1 = read_debs(&v1).unwrap();
    let v2 = read_debs(&v2).unwrap();

    let probe_bucket = moto.new_bucket("probe");
    publish(
        &s3_store(moto, &probe_bucket),
        &key,
        &v1,
        PublishOptions::default(),
    )
    .unwrap();
    let probe = FaultyStore::new(s3_store(moto, &probe_bucket));
    publish(&probe, &key, &v2, PublishOptions::default()).unwrap();
    let requests = probe.requests();
    assert!(requests > 20, "{requests}");
    let switch = probe
        .last_request("put dists/dev/InRelease")
        .expect("the publish switches InRelease");

    for (t, timing) in [FaultTiming::Before, FaultTiming::After]
        .into_iter()
        .enumerate()
    {
        for k in 1..=requests {
            let context = format!("fault {timing:?} at request {k} of {requests}");
            let bucket = moto.new_bucket(&format!("crash-{t}-{k}"));
            publish(
                &s3_store(moto, &bucket),
                &key,
                &v1,
                PublishOptions::default(),
            )
            .unwrap();
            let faulty = FaultyStore::new(s3_store(moto, &bucket)).failing(k, timing);
            let result = publish(&faulty, &key, &v2, PublishOptions::default());
            if let Err(error) = &result {
                assert!(
                    error.to_string().contains("injected fault"),
                    "{context}: {error}"
                );
            }
            // After the switch (or when only the switch's answer is lost) the publish
            // happened, and says so.
            if k > switch || (k == switch && timing == FaultTiming::After) {
                let report = result.unwrap_or_else(|e| {
                    panic!("{context}: failed after the switch (request {switch}): {e}")
                });
                let listed = verify::list(&s3_store(moto, &bucket), &key.public_key()).unwrap();
                assert_eq!(listed[0].packages.len(), 6, "{context}: {report:?}");
            }
            let store = s3_store(moto, &bucket);
            let report = verify::verify(&store, &key.public_key(), 4).unwrap();
            assert!(report.ok(), "{context}: {:?}", report.suites);
            let (ok, text) = apt_over_http(moto, &bucket, &keyring).update();
            assert!(ok, "{context}: apt-get update:\n{text}");
            // A lock left by the failed release request is this process's; a crashed
            // process's lock would be taken over as its owner is dead.
            let left_lock = store.get(LOCK_KEY).unwrap().is_some();
            publish(
                &store,
                &key,
                &v2,
                PublishOptions {
                    lock: LockOptions {
                        wait: None,
                        break_lock: left_lock,
                        ..LockOptions::default()
                    },
                    ..PublishOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("{context}: rerun: {e}"));
            let listed = verify::list(&store, &key.public_key()).unwrap();
            assert_eq!(listed[0].packages.len(), 6, "{context}");
            assert!(
                verify::verify(&store, &key.public_key(), 4).unwrap().ok(),
                "{context}"
            );
        }
    }
}

/// Four publishers at once, each with its own package, ten rounds: every version of
/// every package is there at the end. With the lock, and without conditional writes.
fn concurrent_rounds(conditional_writes: bool) {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket(if conditional_writes {
        "race-locked"
    } else {
        "race-lockless"
    });
    let bucket = bucket.as_str();
    let key = test_signing_key(cargo_speedy::clock::now() - 60);
    let work = tempfile::tempdir().unwrap();
    const PUBLISHERS: usize = 4;
    const ROUNDS: usize = 10;
    let debs: Vec<Vec<IncomingDeb>> = (0..PUBLISHERS)
        .map(|p| {
            let paths: Vec<PathBuf> = (0..ROUNDS)
                .map(|r| tiny_deb(work.path(), &format!("speedy-p{p}"), &format!("1.{r}-1")))
                .collect();
            read_debs(&paths).unwrap()
        })
        .collect();
    std::thread::scope(|scope| {
        for publisher in &debs {
            let moto = &moto;
            let key = &key;
            scope.spawn(move || {
                let store = s3_store(moto, bucket);
                let store: Box<dyn Store> = if conditional_writes {
                    Box::new(store)
                } else {
                    Box::new(FaultyStore::new(store).without_conditional_writes())
                };
                for deb in publisher {
                    let lock = LockOptions {
                        wait: Some(Duration::from_secs(120)),
                        break_lock: false,
                        ..LockOptions::default()
                    };
                    publish(
                        store.as_ref(),
                        key,
                        std::slice::from_ref(deb),
                        PublishOptions {
                            lock,
                            retention: 100,
                            ..PublishOptions::default()
                        },
                    )
                    .unwrap();
                }
            });
        }
    });
    let store = s3_store(moto, bucket);
    let listed = verify::list(&store, &key.public_key()).unwrap();
    let present: Vec<(String, String)> = listed[0]
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    for p in 0..PUBLISHERS {
        for r in 0..ROUNDS {
            let id = (format!("speedy-p{p}"), format!("1.{r}-1"));
            assert!(present.contains(&id), "lost {id:?}; present: {present:?}");
        }
    }
    assert!(verify::verify(&store, &key.public_key(), 4).unwrap().ok());
    assert!(store.get(LOCK_KEY).unwrap().is_none());
}

#[test]
fn concurrent_publishers_with_the_lock_lose_nothing() {
    concurrent_rounds(true);
}

#[test]
fn concurrent_publishers_without_conditional_writes_lose_nothing() {
    concurrent_rounds(false);
}

/// apt-get update in a loop while ten publishes run: never a hash-sum mismatch, thanks
/// to by-hash indices and InRelease written last.
#[test]
fn readers_during_writes_never_see_a_mismatch() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("speedy-readers");
    let key = test_signing_key(cargo_speedy::clock::now() - 60);
    let work = tempfile::tempdir().unwrap();
    let keyring = write_keyring(work.path(), &key);
    let store = s3_store(moto, &bucket);
    let first = read_debs(&[tiny_deb(work.path(), "speedy-app", "1.0-1")]).unwrap();
    publish(&store, &key, &first, PublishOptions::default()).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (updates, failures) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let apt = apt_over_http(moto, &bucket, &keyring);
            let mut updates = 0;
            let mut failures = Vec::new();
            let started = std::time::Instant::now();
            while !done.load(std::sync::atomic::Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(300)
            {
                let (ok, text) = apt.update();
                updates += 1;
                if !ok {
                    failures.push(text);
                }
            }
            (updates, failures)
        });
        for version in 1..=10 {
            let debs = read_debs(&[tiny_deb(
                work.path(),
                "speedy-app",
                &format!("1.{version}-1"),
            )])
            .unwrap();
            publish(&store, &key, &debs, PublishOptions::default()).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        reader.join().unwrap()
    });
    assert!(updates >= 2, "the reader ran ({updates} updates)");
    assert!(
        failures.is_empty(),
        "{} of {updates} updates failed, first:\n{}",
        failures.len(),
        failures[0]
    );
}

/// The smallest part size S3 allows, as a multipart threshold too.
const MULTIPART_THRESHOLD: u64 = 5 * 1024 * 1024;

/// A store on `bucket` that uploads files above [`MULTIPART_THRESHOLD`] in parts of
/// that size, two at a time.
fn multipart_store(moto: &MotoServer, bucket: &str) -> S3Store {
    let mut config = S3Config::spaces(bucket, "us-east-1");
    config.endpoint = moto.endpoint();
    config.path_style = true;
    config.multipart_threshold = MULTIPART_THRESHOLD;
    config.part_size = MULTIPART_THRESHOLD;
    config.parallelism = 2;
    S3Store::new(
        config,
        Credentials::new(TEST_CREDENTIALS[0].1, TEST_CREDENTIALS[1].1),
    )
    .unwrap()
}

#[test]
fn large_files_stream_from_disk_in_parts() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("speedy-multipart");
    let store = multipart_store(moto, &bucket);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.deb");
    // 12 MiB and a bit: three parts, the last one short.
    let bytes: Vec<u8> = (0..(12 * 1024 * 1024 + 12345u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let key = "pool/main/b/big/big_1.0-1_all.deb";
    store
        .put(
            key,
            Body::File(&path),
            &cargo_speedy::publish::put_options(key),
        )
        .unwrap();
    assert_eq!(store.head(key).unwrap().unwrap().size, bytes.len() as u64);
    let back = store.get(key).unwrap().unwrap();
    assert!(back == bytes, "the object reads back byte for byte");
    let (status, head) = moto.anonymous_get(&format!("{bucket}/{key}"));
    assert_eq!(status, 200, "public-read applies to multipart uploads too");
    assert!(head
        .to_ascii_lowercase()
        .contains("cache-control: public, max-age=31536000, immutable"));
}

/// The lease tests: one lock-lease in seconds, short so that the tests are quick.
const LEASE: Duration = Duration::from_secs(3);

fn lease_options(wait: Option<Duration>) -> LockOptions {
    LockOptions {
        wait,
        break_lock: false,
        lease: LEASE,
    }
}

/// A lock object as a publisher on `host` writes it, expiring at `expires`.
fn foreign_lock(store: &dyn Store, host: &str, expires: u64) {
    let info = LockInfo {
        owner: format!("ci@{host}"),
        host: host.into(),
        pid: 4242,
        created: expires.saturating_sub(60),
        expires,
        token: format!("{host}-token"),
    };
    let bytes = serde_json::to_vec(&info).unwrap();
    store
        .put(
            LOCK_KEY,
            Body::Bytes(&bytes),
            &cargo_speedy::publish::put_options(LOCK_KEY),
        )
        .unwrap();
}

/// Not a test of its own: the publisher that `a_killed_holders_lease_...` starts and
/// kills. It takes the lock and renews it until it is killed.
#[test]
#[ignore = "a child process of a_killed_holders_lease_is_taken_over_by_another_host_without_flags"]
fn lock_holder_child_process() {
    let spec = std::env::var("SPEEDY_TEST_HOLD_LOCK").expect("started by its parent test");
    let (endpoint, bucket) = spec.split_once('|').expect("endpoint|bucket");
    let mut config = S3Config::spaces(bucket, "us-east-1");
    config.endpoint = endpoint.to_owned();
    config.path_style = true;
    let store = S3Store::new(
        config,
        Credentials::new(TEST_CREDENTIALS[0].1, TEST_CREDENTIALS[1].1),
    )
    .unwrap();
    let held = lock::acquire(
        &store,
        lease_options(None),
        cargo_speedy::clock::now,
        &|_| {},
    )
    .unwrap()
    .expect("moto honours conditional writes");
    println!("holding");
    loop {
        std::thread::sleep(held.renewal_interval());
        assert!(
            held.renew(&store, cargo_speedy::clock::now()).unwrap(),
            "the lock was taken over"
        );
    }
}

/// A publisher killed with SIGKILL on one CI runner leaves its lock; while it lived and
/// renewed, a publisher on another runner was refused; once its lease has run out, the
/// other runner's publish takes the lock over without any flag.
#[test]
fn a_killed_holders_lease_is_taken_over_by_another_host_without_flags() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("lease-kill");
    let store = s3_store(moto, &bucket);
    let fixture = Fixture::new();
    fixture.edit(
        "Cargo.toml",
        "revision = \"1\"\n",
        "revision = \"1\"\n\n[workspace.metadata.speedy.repo]\nlock-lease = \"3s\"\n",
    );
    let key = generate_key_file(&fixture);
    let deb = tiny_deb(fixture.root(), "speedy-app", "1.0-1");
    let publish_from = |host: &str| {
        let flags = moto.flags(&bucket);
        let mut args = vec![
            "publish",
            deb.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ];
        args.extend(flags.iter().map(String::as_str));
        let mut env = TEST_CREDENTIALS.to_vec();
        env.push(("SPEEDY_HOST", host));
        fixture.speedy_env(&args, &env)
    };

    let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "s3::lock_holder_child_process",
            "--ignored",
            "--nocapture",
        ])
        .env(
            "SPEEDY_TEST_HOLD_LOCK",
            format!("{}|{bucket}", moto.endpoint()),
        )
        .env("SPEEDY_HOST", "runner-a")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(holder.stdout.take().unwrap()));
    assert!(
        lines.any(|line| line.is_ok_and(|l| l.contains("holding"))),
        "the holder took the lock"
    );
    // Two leases later the live holder still has it: it renews.
    std::thread::sleep(LEASE * 2);
    let refused = publish_from("runner-b");
    assert!(!refused.status.success(), "a live lease was taken over");
    assert!(
        stderr(&refused).contains("is locked by "),
        "{}",
        stderr(&refused)
    );
    assert!(
        stderr(&refused).contains("on runner-a"),
        "{}",
        stderr(&refused)
    );

    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        store.get(LOCK_KEY).unwrap().is_some(),
        "the killed holder left its lock"
    );
    std::thread::sleep(LEASE + Duration::from_secs(1));
    let output = publish_from("runner-b");
    assert_success(&output);
    assert!(
        stderr(&output).contains("took over the lock of"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("its lease expired"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("published speedy-app 1.0-1"));
    assert!(
        store.get(LOCK_KEY).unwrap().is_none(),
        "the lock is released"
    );
    let key =
        SigningKey::from_armored(&std::fs::read_to_string(&key).unwrap(), None, "key").unwrap();
    assert!(verify::verify(&store, &key.public_key(), 4).unwrap().ok());
}

/// Of two publishers that find the same expired lease, exactly one takes it over: the
/// takeover is a compare-and-swap on the lock object's version.
#[test]
fn two_contenders_for_an_expired_lease_exactly_one_wins() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("lease-race");
    let store = s3_store(moto, &bucket);
    for round in 0..10 {
        foreign_lock(&store, "runner-dead", cargo_speedy::clock::now() - 1);
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|scope| {
            let contenders: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        lock::acquire(
                            &store,
                            lease_options(None),
                            cargo_speedy::clock::now,
                            &|_| {},
                        )
                    })
                })
                .collect();
            contenders.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let winners: Vec<_> = results
            .iter()
            .filter(|r| matches!(r, Ok(Some(_))))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let loser = results.iter().find(|r| !matches!(r, Ok(Some(_)))).unwrap();
        assert!(
            matches!(loser, Err(PublishError::Locked { .. })),
            "round {round}: {loser:?}"
        );
        let Ok(Some(winner)) = &results.iter().find(|r| matches!(r, Ok(Some(_)))).unwrap() else {
            unreachable!()
        };
        assert!(winner.still_held(&store).unwrap());
        winner.release(&store).unwrap();
        assert!(store.get(LOCK_KEY).unwrap().is_none());
    }
}

/// A holder that keeps renewing is never taken over, however long it works; once it
/// releases, the waiter gets the lock.
#[test]
fn a_renewing_holder_is_never_taken_over() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("lease-live");
    let store = s3_store(moto, &bucket);
    let held = lock::acquire(
        &store,
        lease_options(None),
        cargo_speedy::clock::now,
        &|_| {},
    )
    .unwrap()
    .unwrap();
    let until = std::time::Instant::now() + LEASE * 3;
    let mut next_renewal = std::time::Instant::now() + held.renewal_interval();
    let mut refusals = 0;
    while std::time::Instant::now() < until {
        if std::time::Instant::now() >= next_renewal {
            assert!(held.renew(&store, cargo_speedy::clock::now()).unwrap());
            next_renewal = std::time::Instant::now() + held.renewal_interval();
        }
        match lock::acquire(
            &store,
            lease_options(None),
            cargo_speedy::clock::now,
            &|_| {},
        ) {
            Err(PublishError::Locked { expires_in, .. }) => {
                assert!(expires_in <= LEASE.as_secs());
                refusals += 1;
            }
            other => panic!("a renewing holder lost its lock: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(refusals > 10, "{refusals}");
    assert!(held.still_held(&store).unwrap());
    held.release(&store).unwrap();
    let next = lock::acquire(
        &store,
        lease_options(Some(Duration::from_secs(5))),
        cargo_speedy::clock::now,
        &|_| {},
    );
    assert!(matches!(next, Ok(Some(_))), "{next:?}");
}

/// An object at the lock's key that cargo speedy did not write says so, and only
/// --break-lock removes it.
#[test]
fn an_unreadable_lock_object_is_named_as_such() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("lease-garbage");
    let store = s3_store(moto, &bucket);
    store
        .put(
            LOCK_KEY,
            Body::Bytes(b"not json"),
            &cargo_speedy::publish::put_options(LOCK_KEY),
        )
        .unwrap();
    let error = lock::acquire(
        &store,
        lease_options(None),
        cargo_speedy::clock::now,
        &|_| {},
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("unreadable lock object") && !error.to_string().contains("1970"),
        "{error}"
    );
    let broken = LockOptions {
        break_lock: true,
        ..lease_options(None)
    };
    let held = lock::acquire(&store, broken, cargo_speedy::clock::now, &|_| {})
        .unwrap()
        .unwrap();
    held.release(&store).unwrap();
}

/// A .deb-sized body of pseudo-random bytes, different for each `seed`.
fn deb_sized_bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Issue 23: a pool file is created from disk with one conditional PUT
/// (`If-None-Match: *`) instead of a HEAD and a PUT; an existing one is left byte for
/// byte and answers `None`, whether the second body is a file or bytes.
#[test]
fn put_if_absent_creates_a_file_body_once() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("speedy-create-file");
    let store = s3_store(moto, &bucket);
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.deb");
    let second = dir.path().join("second.deb");
    let bytes = deb_sized_bytes(2 * 1024 * 1024 + 321, 1);
    std::fs::write(&first, &bytes).unwrap();
    std::fs::write(&second, deb_sized_bytes(1024 * 1024, 2)).unwrap();
    let key = "pool/main/s/speedy-app/speedy-app_1.0-1_amd64.deb";
    let options = cargo_speedy::publish::put_options(key);

    let created = store
        .put_if_absent(key, Body::File(&first), &options)
        .unwrap();
    let read = store.get_versioned(key).unwrap().unwrap();
    assert!(read.bytes == bytes, "the file's bytes, whole");
    assert!(!read.version.is_empty());
    assert_eq!(created, Some(read.version.clone()), "moto says the ETag");
    let (status, head) = moto.anonymous_get(&format!("{bucket}/{key}"));
    assert_eq!(status, 200, "public-read, as put gives a pool file");
    assert!(head
        .to_ascii_lowercase()
        .contains("cache-control: public, max-age=31536000, immutable"));

    assert_eq!(
        store
            .put_if_absent(key, Body::File(&second), &options)
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .put_if_absent(key, Body::Bytes(b"other bytes"), &options)
            .unwrap(),
        None
    );
    let after = store.get_versioned(key).unwrap().unwrap();
    assert!(after.bytes == bytes, "the first bytes are left");
    assert_eq!(after.version, read.version);

    let missing = store.put_if_absent(
        "pool/main/s/speedy-app/missing.deb",
        Body::File(&dir.path().join("missing.deb")),
        &options,
    );
    match missing {
        Err(StoreError::ReadLocal { path, .. }) => assert!(path.ends_with("missing.deb")),
        other => panic!("a missing file: {other:?}"),
    }
    assert_eq!(
        bucket_contents(&store).into_keys().collect::<Vec<_>>(),
        [key],
        "nothing else was written"
    );
}

/// A file above the multipart threshold cannot be created only if absent: whether a
/// multipart completion honours `If-None-Match` is not known of every S3-compatible
/// store (docs/ARCHITECTURE.md, "Store contract"), so the store says it cannot and
/// writes nothing, not even a multipart upload; a file of exactly the threshold goes
/// in one conditional PUT.
#[test]
fn put_if_absent_of_a_file_above_the_multipart_threshold_is_unsupported() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("speedy-create-multipart");
    let store = multipart_store(moto, &bucket);
    let dir = tempfile::tempdir().unwrap();
    let above = dir.path().join("above.deb");
    let at = dir.path().join("at.deb");
    std::fs::write(&above, deb_sized_bytes(MULTIPART_THRESHOLD as usize + 1, 3)).unwrap();
    let at_bytes = deb_sized_bytes(MULTIPART_THRESHOLD as usize, 4);
    std::fs::write(&at, &at_bytes).unwrap();
    let key = "pool/main/b/big/big_1.0-1_all.deb";
    let options = cargo_speedy::publish::put_options(key);

    let refused = store.put_if_absent(key, Body::File(&above), &options);
    assert!(
        matches!(
            refused,
            Err(StoreError::ConditionalWritesUnsupported { .. })
        ),
        "{refused:?}"
    );
    assert!(bucket_contents(&store).is_empty(), "nothing written");
    let uploads = run(
        "curl",
        &["-s", &format!("{}/{bucket}?uploads", moto.endpoint())],
    );
    assert!(
        uploads.contains("ListMultipartUploadsResult") && !uploads.contains("<UploadId>"),
        "no multipart upload was started: {uploads}"
    );

    let created = store.put_if_absent(key, Body::File(&at), &options).unwrap();
    assert!(created.is_some_and(|version| !version.is_empty()));
    assert!(store.get(key).unwrap().unwrap() == at_bytes);
}
