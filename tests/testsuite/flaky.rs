//! Issue 12: a publish to an S3-compatible store succeeds through transient network
//! faults. A fault-injecting proxy (`tests/testsuite/support/proxy.rs`) sits between the store
//! and moto and faults one chosen request (by method and key, not by count); each
//! publish must succeed with its packages listed, no lock left, `verify` clean and
//! real apt reading the bucket. See docs/ARCHITECTURE.md, "Retries on a flaky network".

use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::*;
use cargo_speedy::listener::SilentListener;
use cargo_speedy::publish::lock::LockOptions;
use cargo_speedy::publish::{read_debs, verify, IncomingDeb, Publish};
use cargo_speedy::repo::layout::{GC_STATE_KEY as GC_STATE, LOCK_KEY};
use cargo_speedy::sign::SigningKey;
use cargo_speedy::store::s3::{Credentials, S3Config, S3Store};
use cargo_speedy::store::Store;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PACKAGES: [&str; 3] = ["speedy-app", "speedy-jobs", "speedy-notifier"];
const IN_RELEASE: &str = "dists/dev/InRelease";
const PACKAGES_INDEX: &str = "dists/dev/main/binary-amd64/Packages.gz";

/// A store at `endpoint` (moto, or the proxy in front of it) whose attempts time out
/// after `attempt` and whose requests are retried for up to `deadline`.
fn store_at(endpoint: &str, bucket: &str, attempt: Duration, deadline: Duration) -> S3Store {
    let mut config = S3Config::spaces(bucket, "us-east-1");
    config.endpoint = endpoint.to_owned();
    config.path_style = true;
    config.attempt_timeout = attempt;
    config.retry_deadline = deadline;
    S3Store::new(
        config,
        Credentials::new(TEST_CREDENTIALS[0].1, TEST_CREDENTIALS[1].1),
    )
    .unwrap()
}

/// Through the proxy: attempts of 2 s (a stalled request is given up quickly), 60 s
/// of retries.
fn flaky_store(proxy: &FaultProxy, bucket: &str) -> S3Store {
    store_at(
        &proxy.endpoint(),
        bucket,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
}

fn direct_store(moto: &MotoServer, bucket: &str) -> S3Store {
    store_at(
        &moto.endpoint(),
        bucket,
        Duration::from_secs(30),
        Duration::from_secs(60),
    )
}

/// A bucket with version 1.0-1 of three packages, and the .debs of 1.1-1.
struct Repo {
    moto: &'static MotoServer,
    bucket: String,
    key: SigningKey,
    work: tempfile::TempDir,
    v2: Vec<IncomingDeb>,
}

const PROBE_RECORD: &str = ".speedy/conditional-writes.json";

fn repo() -> Repo {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("flaky");
    let key = test_signing_key(cargo_speedy::clock::now() - 60);
    let work = tempfile::tempdir().unwrap();
    let debs = |version: &str| {
        let paths: Vec<PathBuf> = PACKAGES
            .iter()
            .map(|n| tiny_deb(work.path(), n, version))
            .collect();
        read_debs(&paths).unwrap()
    };
    let v1 = debs("1.0-1");
    let v2 = debs("1.1-1");
    publish(
        &direct_store(moto, &bucket),
        &key,
        &v1,
        PublishOptions::default(),
    )
    .unwrap();
    Repo {
        moto,
        bucket,
        key,
        work,
        v2,
    }
}

impl Repo {
    /// Everything a successful publish of 1.1-1 leaves: both versions listed, no
    /// lock, `verify` clean, real apt over HTTP reads the bucket.
    fn assert_published(&self, context: &str) {
        let store = direct_store(self.moto, &self.bucket);
        let listed = verify::list(&store, &self.key.public_key()).unwrap();
        let versions: Vec<(String, String)> = listed[0]
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        for name in PACKAGES {
            for version in ["1.0-1", "1.1-1"] {
                assert!(
                    versions.contains(&(name.into(), version.into())),
                    "{context}: {name} {version} missing: {versions:?}"
                );
            }
        }
        assert!(
            store.get(LOCK_KEY).unwrap().is_none(),
            "{context}: lock left"
        );
        let report = verify::verify(&store, &self.key.public_key(), 4).unwrap();
        assert!(report.ok(), "{context}: {:?}", report.suites);
        let keyring = self.work.path().join("keyring.gpg");
        std::fs::write(&keyring, self.key.public_key().to_binary().unwrap()).unwrap();
        let (ok, text) = apt_over_http(self.moto, &self.bucket, &keyring).update();
        assert!(ok, "{context}: apt-get update:\n{text}");
    }
}

fn apt_over_http(moto: &MotoServer, bucket: &str, keyring: &Path) -> Apt {
    Apt::new(&format!(
        "deb [signed-by={}] {}/{bucket}/ dev main",
        keyring.display(),
        moto.endpoint()
    ))
}

/// Publishes 1.1-1 through a proxy that faults the requests `rules` name; the
/// publish must succeed as if nothing happened.
fn survives(rules: Vec<Rule>) {
    survives_after(|_| {}, rules)
}

/// `survives`, with `prepare` run on the repository before the faults.
fn survives_after(prepare: impl FnOnce(&Repo), rules: Vec<Rule>) {
    let context = format!("{rules:?}");
    let repo = repo();
    prepare(&repo);
    let proxy = FaultProxy::start(repo.moto.port, rules);
    let report = publish(
        &flaky_store(&proxy, repo.bucket.as_str()),
        &repo.key,
        &repo.v2,
        PublishOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{context}: {e}"));
    assert!(
        proxy.all_rules_fired(),
        "{context}: the fault was not injected; requests: {:?}",
        proxy.seen()
    );
    assert_eq!(report.added.len(), 3, "{context}: {report:?}");
    assert!(report.unfinished.is_empty(), "{context}: {report:?}");
    repo.assert_published(&context);
}

#[test]
fn a_truncated_get_of_in_release_is_retried() {
    survives(vec![Rule::first("GET", IN_RELEASE, Fault::TruncateBody)]);
}

#[test]
fn a_truncated_get_of_packages_is_retried() {
    survives(vec![Rule::first(
        "GET",
        PACKAGES_INDEX,
        Fault::TruncateBody,
    )]);
}

#[test]
fn a_truncated_get_of_the_lock_is_retried() {
    survives(vec![Rule::first("GET", LOCK_KEY, Fault::TruncateBody)]);
}

#[test]
fn a_get_reset_mid_body_is_retried() {
    survives(vec![Rule::first("GET", IN_RELEASE, Fault::ResetMidBody)]);
}

#[test]
fn a_lost_answer_to_the_lock_put_is_ours() {
    survives(vec![Rule::first("PUT", LOCK_KEY, Fault::DropAnswer)]);
}

#[test]
fn a_lost_answer_to_the_probe_put_still_finds_conditional_writes() {
    // The first publish recorded its probe in the bucket; without that record, the
    // next publish probes again.
    survives_after(
        |repo| {
            let store = direct_store(repo.moto, repo.bucket.as_str());
            assert!(
                store.get(PROBE_RECORD).unwrap().is_some(),
                "the probe is recorded"
            );
            store.delete(PROBE_RECORD).unwrap();
        },
        vec![Rule::first("PUT", ".speedy/probe-*", Fault::DropAnswer)],
    );
}

/// An update asks only what it must
/// (docs/ARCHITECTURE.md, "Publishing at the cost of what changed"): the recorded
/// probe instead of probing, no HEAD of the bucket,
/// no listing of the pool (garbage collection looks at what the update dropped), no
/// read of the keyring it published last time, one request per new pool file.
#[test]
fn an_update_reads_the_recorded_probe_and_lists_nothing_of_the_pool() {
    let repo = repo();
    let proxy = FaultProxy::start(repo.moto.port, Vec::new());
    let report = publish(
        &flaky_store(&proxy, repo.bucket.as_str()),
        &repo.key,
        &repo.v2,
        PublishOptions::default(),
    )
    .unwrap();
    assert!(report.unfinished.is_empty(), "{report:?}");
    let seen = proxy.seen();
    let requests: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {}?{}", s.method, s.key, s.query))
        .collect();
    let asked = |method: &str, key: &str| {
        seen.iter()
            .any(|s| s.method == method && s.key.starts_with(key))
    };
    assert!(asked("GET", PROBE_RECORD), "{requests:#?}");
    assert!(
        !asked("PUT", ".speedy/probe-"),
        "probed again: {requests:#?}"
    );
    assert!(!asked("GET", "archive-keyring"), "{requests:#?}");
    assert!(
        !seen
            .iter()
            .any(|s| s.key.is_empty() && (s.method == "HEAD" || s.query.contains("prefix=pool"))),
        "a HEAD of the bucket or a listing of the pool: {requests:#?}"
    );
    // The three new pool files are created, one create-if-absent each with no HEAD
    // before it; nothing else in the pool is asked.
    let pool: Vec<&str> = seen
        .iter()
        .filter(|s| s.key.starts_with("pool/"))
        .map(|s| s.method.as_str())
        .collect();
    assert_eq!(pool, ["PUT", "PUT", "PUT"], "{requests:#?}");
    repo.assert_published("an update");
}

#[test]
fn a_lost_answer_to_the_in_release_put_is_a_switch() {
    survives(vec![Rule::first("PUT", IN_RELEASE, Fault::DropAnswer)]);
}

#[test]
fn a_lost_answer_to_the_lock_delete_still_releases_it() {
    survives(vec![Rule::first("DELETE", LOCK_KEY, Fault::DropAnswer)]);
}

#[test]
fn slow_down_on_the_lock_put_is_retried() {
    survives(vec![Rule::first("PUT", LOCK_KEY, Fault::SlowDown)]);
}

#[test]
fn an_internal_error_on_an_in_release_get_is_retried() {
    survives(vec![Rule::first("GET", IN_RELEASE, Fault::InternalError)]);
}

#[test]
fn a_stalled_put_is_abandoned_and_retried() {
    let started = std::time::Instant::now();
    survives(vec![Rule::first("PUT", IN_RELEASE, Fault::Stall)]);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_put_reset_mid_body_is_retried() {
    survives(vec![Rule::first(
        "PUT",
        PACKAGES_INDEX,
        Fault::ResetMidBody,
    )]);
}

/// Garbage collection fails for longer than the retry deadline: the packages are
/// published, the report says what is left, and the next publish finishes it.
#[test]
fn a_failure_after_the_switch_is_reported_as_unfinished_and_the_next_publish_finishes() {
    let repo = repo();
    // Garbage collection reads its bookkeeping after the switch; every such read fails.
    let proxy = FaultProxy::start(
        repo.moto.port,
        Rule::every("GET", GC_STATE, 1000, Fault::InternalError),
    );
    let store = store_at(
        &proxy.endpoint(),
        repo.bucket.as_str(),
        Duration::from_secs(2),
        Duration::from_secs(3),
    );
    let report = publish(&store, &repo.key, &repo.v2, PublishOptions::default())
        .expect("published despite GC failing");
    assert_eq!(report.added.len(), 3, "{report:?}");
    assert!(
        report
            .unfinished
            .iter()
            .any(|u| u.starts_with("garbage collection:")),
        "{report:?}"
    );
    repo.assert_published("after an unfinished publish");

    // The next publish, on a healthy network, finishes: garbage collection sees that
    // the history moved on without it (the 1.1-1 change), sweeps, and records it.
    let direct = direct_store(repo.moto, repo.bucket.as_str());
    let gc_state = || -> cargo_speedy::repo::plan::GcState {
        serde_json::from_slice(&direct.get(GC_STATE).unwrap().expect("a gc state")).unwrap()
    };
    let before = gc_state();
    let report = publish(&direct, &repo.key, &repo.v2, PublishOptions::default()).unwrap();
    assert!(report.unfinished.is_empty(), "{report:?}");
    let after = gc_state();
    assert_eq!(after.history_heads.get("dev"), Some(&2), "{after:?}");
    assert!(after.swept_at >= before.swept_at, "{before:?} {after:?}");
    assert_ne!(after.history_heads, before.history_heads);
}

/// The CLI says "published", warns what is unfinished, and exits 0.
#[test]
fn the_cli_reports_a_publish_with_an_unfinished_step_as_published() {
    let repo = repo();
    let proxy = FaultProxy::start(
        repo.moto.port,
        Rule::every("GET", GC_STATE, 1000, Fault::InternalError),
    );
    let fixture = Fixture::new();
    let manifest = fixture.read("Cargo.toml");
    fixture.write(
        "Cargo.toml",
        &format!(
            "{manifest}\n[workspace.metadata.speedy.repo.spaces]\nretry-deadline = \"3s\"\nattempt-timeout = \"2s\"\n"
        ),
    );
    let key_file = fixture.path("repo-key.asc");
    std::fs::write(&key_file, repo.key.to_armored().unwrap()).unwrap();
    let mut args: Vec<String> = vec!["publish".into()];
    args.extend(
        repo.v2
            .iter()
            .map(|d| d.path.as_ref().unwrap().display().to_string()),
    );
    args.extend([
        "--bucket".into(),
        repo.bucket.clone(),
        "--region".into(),
        "us-east-1".into(),
        "--endpoint".into(),
        proxy.endpoint(),
        "--addressing".into(),
        "path".into(),
        "--key-file".into(),
        key_file.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = fixture.speedy_env(&args, &TEST_CREDENTIALS);
    assert_success(&output);
    let out = stdout(&output);
    let err = stderr(&output);
    assert!(
        out.contains("published speedy-app 1.1-1 (all) to dev"),
        "{}",
        describe(&output)
    );
    assert!(
        out.contains("unfinished after the switch: garbage collection:")
            && err.contains("the next publish finishes it"),
        "{}",
        describe(&output)
    );
    repo.assert_published("CLI");
}

/// A request retried for more than a few seconds says so on stderr (human) and as a
/// `retrying` message (JSON): the request, what failed, the attempt, the time left.
/// The store answers 503 SlowDown to every read, for longer than the retry deadline.
#[test]
fn long_retries_are_reported_in_human_and_json_output() {
    let repo = repo();
    let proxy = FaultProxy::start(repo.moto.port, {
        let mut rules = Rule::every("GET", "*", 1000, Fault::SlowDown);
        rules.extend(Rule::every("HEAD", "*", 1000, Fault::SlowDown));
        rules
    });
    let fixture = Fixture::new();
    let manifest = fixture.read("Cargo.toml");
    fixture.write(
        "Cargo.toml",
        &format!("{manifest}\n[workspace.metadata.speedy.repo.spaces]\nretry-deadline = \"20s\"\n"),
    );
    let key_file = fixture.path("repo-key.asc");
    std::fs::write(&key_file, repo.key.to_armored().unwrap()).unwrap();
    let endpoint = proxy.endpoint();
    let run = |format: &str| {
        let mut args: Vec<String> = vec!["publish".into()];
        args.extend(
            repo.v2
                .iter()
                .map(|d| d.path.as_ref().unwrap().display().to_string()),
        );
        args.extend(
            [
                "--bucket",
                repo.bucket.as_str(),
                "--region",
                "us-east-1",
                "--endpoint",
                &endpoint,
                "--addressing",
                "path",
                "--message-format",
                format,
                "--key-file",
            ]
            .map(str::to_owned),
        );
        args.push(key_file.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = fixture.speedy_env(&args, &TEST_CREDENTIALS);
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        output
    };
    let human = run("human");
    let err = stderr(&human);
    let line = err
        .lines()
        .find(|l| l.contains("Retrying"))
        .unwrap_or_else(|| panic!("no retry line: {}", describe(&human)));
    // The first read of a publish is the listing of the suites (`LIST dists/`).
    assert!(
        (line.contains("GET ") || line.contains("LIST dists/"))
            && line.contains("HTTP 503")
            && line.contains("(attempt ")
            && line.contains(" s more)"),
        "{line}"
    );
    let json = run("json");
    let notice: serde_json::Value = stdout(&json)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["reason"] == "retrying")
        .unwrap_or_else(|| panic!("no retrying message: {}", describe(&json)));
    assert!(
        ["GET ", "LIST "]
            .iter()
            .any(|method| notice["request"].as_str().unwrap().starts_with(method)),
        "{notice}"
    );
    assert!(notice["attempt"].as_u64().unwrap() >= 2, "{notice}");
    assert!(notice["seconds_left"].as_u64().unwrap() <= 17, "{notice}");
    assert_eq!(notice["never_answered"], false, "{notice}");
    assert!(
        notice["failure"].as_str().unwrap().contains("503"),
        "{notice}"
    );
}

/// A failure that outlasts the deadline names what happened: a connection reset is
/// not "cannot reach", a HEAD's 500 says it has no code.
#[test]
fn persistent_faults_are_described_as_what_they_are() {
    let repo = repo();
    let proxy = FaultProxy::start(repo.moto.port, {
        let mut rules = Rule::every("PUT", "speedy-message-test", 1000, Fault::ResetMidBody);
        rules.extend(Rule::every("HEAD", "", 1000, Fault::InternalError));
        rules
    });
    let store = store_at(
        &proxy.endpoint(),
        repo.bucket.as_str(),
        Duration::from_secs(2),
        Duration::from_secs(2),
    );
    let options = cargo_speedy::publish::put_options("speedy-message-test");
    let error = store
        .put(
            "speedy-message-test",
            cargo_speedy::store::Body::Bytes(b"x"),
            &options,
        )
        .unwrap_err()
        .to_string();
    assert!(!error.contains("cannot reach"), "{error}");
    assert!(error.contains("speedy-message-test"), "{error}");
    assert!(error.contains("retry deadline"), "{error}");
    let error = store.head("no-such-object").unwrap_err().to_string();
    assert!(
        error.contains("HTTP 500 Internal Server Error, no error code"),
        "{error}"
    );
    assert!(
        error.contains("no-such-object was not found; checking the bucket"),
        "{error}"
    );
}

/// The random-fault run of `bench/flaky-network.sh`, not a timed test: N publishers ×
/// R rounds through a proxy that faults p% of all requests at random (seeded), each
/// round a new version of the publisher's own package. Prints one table row.
/// SPEEDY_FLAKY_PERCENT, SPEEDY_FLAKY_PUBLISHERS, SPEEDY_FLAKY_ROUNDS, SPEEDY_FLAKY_SEED.
#[test]
#[ignore = "a benchmark: run by bench/flaky-network.sh"]
fn random_faults() {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let percent: f64 = env("SPEEDY_FLAKY_PERCENT", "5").parse().unwrap();
    let publishers: usize = env("SPEEDY_FLAKY_PUBLISHERS", "1").parse().unwrap();
    let rounds: usize = env("SPEEDY_FLAKY_ROUNDS", "20").parse().unwrap();
    let seed: u64 = env("SPEEDY_FLAKY_SEED", "12").parse().unwrap();

    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("flaky-random");
    let key = test_signing_key(cargo_speedy::clock::now() - 60);
    let work = tempfile::tempdir().unwrap();
    let debs: Vec<Vec<IncomingDeb>> = (0..publishers)
        .map(|p| {
            let paths: Vec<PathBuf> = (0..rounds)
                .map(|r| tiny_deb(work.path(), &format!("speedy-p{p}"), &format!("1.{r}-1")))
                .collect();
            read_debs(&paths).unwrap()
        })
        .collect();
    let proxy = FaultProxy::random(
        moto.port,
        seed,
        percent,
        &[
            Fault::SlowDown,
            Fault::InternalError,
            Fault::DropAnswer,
            Fault::ResetMidBody,
            Fault::TruncateBody,
            Fault::Stall,
        ],
    );
    #[derive(Default, Debug)]
    struct Outcome {
        succeeded: usize,
        failed: Vec<((String, String), String)>,
        unfinished: usize,
        published: Vec<(String, String)>,
    }
    let started = std::time::Instant::now();
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = debs
            .iter()
            .map(|publisher| {
                let (proxy, key, bucket) = (&proxy, &key, &bucket);
                scope.spawn(move || {
                    // Attempts of 2 s keep stalls short; the default retry deadline.
                    let store = store_at(
                        &proxy.endpoint(),
                        bucket.as_str(),
                        Duration::from_secs(2),
                        cargo_speedy::store::s3::DEFAULT_RETRY_DEADLINE,
                    );
                    let mut outcome = Outcome::default();
                    for deb in publisher {
                        let id = (deb.entry.name.clone(), deb.entry.version.clone());
                        let result = Publish {
                            store: &store,
                            key: &cargo_speedy::sign::RepoKeys::new(key.clone(), None),
                            suite: "dev".into(),
                            config: &repo_config(100),
                            lock: LockOptions {
                                wait: Some(Duration::from_secs(600)),
                                ..LockOptions::default()
                            },
                            dry_run: false,
                            change_origin: false,
                            command: "publish",
                            now: &cargo_speedy::clock::now,
                        }
                        .run(std::slice::from_ref(deb), &SilentListener);
                        match result {
                            Ok(report) => {
                                outcome.succeeded += 1;
                                outcome.unfinished += usize::from(!report.unfinished.is_empty());
                                outcome.published.push(id);
                            }
                            Err(error) => outcome.failed.push((id, error.to_string())),
                        }
                    }
                    outcome
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let direct = direct_store(moto, &bucket);
    let listed: Vec<(String, String)> = verify::list(&direct, &key.public_key())
        .unwrap()
        .first()
        .map(|s| {
            s.packages
                .iter()
                .map(|p| (p.name.clone(), p.version.clone()))
                .collect()
        })
        .unwrap_or_default();
    let report = verify::verify(&direct, &key.public_key(), 4).unwrap();
    let problems: usize = report.suites.iter().map(|s| s.problems.len()).sum();
    let succeeded: usize = outcomes.iter().map(|o| o.succeeded).sum();
    let unfinished: usize = outcomes.iter().map(|o| o.unfinished).sum();
    let failed: Vec<_> = outcomes.iter().flat_map(|o| o.failed.iter()).collect();
    let failed_after_switch = failed.iter().filter(|(id, _)| listed.contains(id)).count();
    let missing = outcomes
        .iter()
        .flat_map(|o| o.published.iter())
        .filter(|id| !listed.contains(id))
        .count();
    let lock_left = direct.get(LOCK_KEY).unwrap().is_some();
    let seen = proxy.seen().len();
    for (id, error) in &failed {
        eprintln!("failed: {} {}: {error}", id.0, id.1);
    }
    println!(
        "| {percent}% | {publishers} × {rounds} | {} | {succeeded} | {} | {failed_after_switch} | {missing} | {problems}{} | {unfinished} | {} of {seen} | {} s |",
        publishers * rounds,
        failed.len(),
        if lock_left { " (lock left)" } else { "" },
        proxy.faulted(),
        elapsed.as_secs()
    );
}

/// What a conditional create (`put_if_absent`) answers through a fault, with a body
/// from memory and from a file (issue 23: pool files are created that way).
#[derive(Debug, Clone, Copy)]
enum CreateBody {
    Bytes,
    File,
}

/// Creates `key` with `put_if_absent` through a proxy that faults its first PUT with
/// `fault`; returns the answer, after checking that the store was asked twice (the
/// attempt and one retry) and that the object holds the whole body.
fn create_through(fault: Fault, kind: CreateBody) -> Option<String> {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("flaky-create");
    let work = tempfile::tempdir().unwrap();
    // A .deb-sized body: a retry must send all of it again.
    let bytes: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let source = work.path().join("speedy-app_1.1-1_amd64.deb");
    std::fs::write(&source, &bytes).unwrap();
    let key = "pool/main/s/speedy-app/speedy-app_1.1-1_amd64.deb";
    let proxy = FaultProxy::start(moto.port, vec![Rule::first("PUT", key, fault)]);
    let store = flaky_store(&proxy, &bucket);
    let body = match kind {
        CreateBody::Bytes => cargo_speedy::store::Body::Bytes(&bytes),
        CreateBody::File => cargo_speedy::store::Body::File(&source),
    };
    let context = format!("{fault:?} {kind:?}");
    let answer = store
        .put_if_absent(key, body, &cargo_speedy::publish::put_options(key))
        .unwrap_or_else(|e| panic!("{context}: {e}"));
    assert!(proxy.all_rules_fired(), "{context}: {:?}", proxy.seen());
    let puts = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PUT" && s.key == key)
        .count();
    assert_eq!(puts, 2, "{context}: one retry");
    let stored = direct_store(moto, &bucket).get_versioned(key).unwrap();
    let stored = stored.unwrap_or_else(|| panic!("{context}: nothing created"));
    assert!(stored.bytes == bytes, "{context}: the whole body");
    if let Some(version) = &answer {
        assert_eq!(version, &stored.version, "{context}");
    }
    answer
}

/// A create whose answer is lost is retried; the retry finds the object the lost
/// attempt created and answers `None`, "it existed", for a file body as for bytes.
/// The object holds the bytes sent: a caller that must tell its own create from
/// someone else's reads back (the lock its token, a pool file its digest;
/// docs/ARCHITECTURE.md, "Store contract").
#[test]
fn a_lost_answer_to_a_create_answers_that_the_object_exists() {
    for body in [CreateBody::Bytes, CreateBody::File] {
        assert_eq!(create_through(Fault::DropAnswer, body), None, "{body:?}");
    }
}

/// A create refused before it reached the store (503 SlowDown, a reset connection)
/// is retried with the whole body again, the file re-read from its start, and creates
/// the object.
#[test]
fn a_create_refused_before_it_happened_is_retried_with_the_whole_body() {
    for fault in [Fault::SlowDown, Fault::ResetMidBody] {
        for body in [CreateBody::Bytes, CreateBody::File] {
            let answer = create_through(fault, body);
            assert!(
                answer.is_some_and(|version| !version.is_empty()),
                "{fault:?} {body:?}"
            );
        }
    }
}
