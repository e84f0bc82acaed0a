//! Invariant 6 of docs/ARCHITECTURE.md, proven by enumeration: a publish of three packages into a
//! non-empty repository is failed at request k, for every k and both kinds of fault
//! (request lost, answer lost). After each, `verify` finds no problem and real apt
//! reads the repository; running the publish again finishes the job.

use crate::support::faulty::{FaultTiming, FaultyStore};
use crate::support::*;
use cargo_speedy::listener::SilentListener;
use cargo_speedy::publish::lock::LockOptions;
use cargo_speedy::publish::{read_debs, verify, IncomingDeb, Publish};
use cargo_speedy::repo::layout::LOCK_KEY;
use cargo_speedy::sign::SigningKey;
use cargo_speedy::store::fs::FsStore;
use cargo_speedy::store::{Body, Store, StoreError};
use std::path::{Path, PathBuf};

/// The fixed time the publishes of these tests are dated: their bytes do not depend
/// on when the test runs.
fn fixed_now() -> u64 {
    1_795_000_000
}

/// Publishes `debs` to `suite` through the library with `config` and the clock
/// `now`, silently.
fn publish_with(
    store: &dyn Store,
    key: &cargo_speedy::sign::RepoKeys,
    suite: &str,
    config: &cargo_speedy::config::RepoConfig,
    now: &(dyn Fn() -> u64 + Sync),
    debs: &[IncomingDeb],
) -> cargo_speedy::publish::PublishReport {
    Publish {
        store,
        key,
        suite: suite.into(),
        config,
        lock: LockOptions::default(),
        dry_run: false,
        change_origin: false,
        command: "publish",
        now,
    }
    .run(debs, &SilentListener)
    .unwrap()
}

/// The fixed clock, no lock wait, and `break_lock`.
fn options(break_lock: bool) -> PublishOptions {
    PublishOptions {
        lock: LockOptions {
            wait: None,
            break_lock,
            ..LockOptions::default()
        },
        now: fixed_now,
        ..PublishOptions::default()
    }
}

/// The three fixture packages at a version, built once.
fn debs_at(version: &str) -> (Fixture, Vec<PathBuf>) {
    let fixture = Fixture::new();
    fixture.edit(
        "Cargo.toml",
        "version = \"1.4.0\"",
        &format!("version = \"{version}\""),
    );
    let output = fixture.speedy(&["build", "--quiet", "--no-sign"]);
    assert_success(&output);
    let debs = fixture.debs();
    assert_eq!(debs.len(), 3);
    (fixture, debs)
}

fn copy_dir(from: &Path, to: &Path) {
    run("cp", &["-a", from.to_str().unwrap(), to.to_str().unwrap()]);
}

fn assert_readable(repo: &Path, key: &SigningKey, context: &str) {
    let report = verify::verify(&FsStore::new(repo), &key.public_key(), 4).expect("verify runs");
    assert!(
        report.ok(),
        "{context}: verify found problems: {:?}",
        report.suites
    );
    let keyring = repo.parent().unwrap().join("keyring.gpg");
    if !keyring.exists() {
        std::fs::write(&keyring, key.public_key().to_binary().unwrap()).unwrap();
    }
    let apt = Apt::new(&format!(
        "deb [signed-by={}] file:{} dev main",
        keyring.display(),
        repo.display()
    ));
    let (ok, text) = apt.update();
    assert!(ok, "{context}: apt-get update failed:\n{text}");
    assert!(
        apt.candidate("speedy-app").is_some(),
        "{context}: apt sees no speedy-app"
    );
}

#[test]
fn a_fault_at_any_request_leaves_a_readable_repository_and_a_rerun_finishes() {
    let key = test_signing_key(fixed_now() - 10);
    let (_v1_fixture, v1) = debs_at("1.4.0");
    let (_v2_fixture, v2) = debs_at("1.4.1");
    let v1 = read_debs(&v1).unwrap();
    let v2 = read_debs(&v2).unwrap();

    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("base");
    publish(&FsStore::new(&base), &key, &v1, options(false)).unwrap();

    // How many requests a clean publish makes.
    let probe_dir = work.path().join("probe");
    copy_dir(&base, &probe_dir);
    let probe = FaultyStore::new(FsStore::new(&probe_dir));
    publish(&probe, &key, &v2, options(false)).unwrap();
    let requests = probe.requests();
    assert!(requests > 20, "a publish makes many requests ({requests})");
    // The switch: faults after it no longer fail the publish.
    let switch = probe
        .last_request("put dists/dev/InRelease")
        .expect("the publish switches InRelease");

    for timing in [FaultTiming::Before, FaultTiming::After] {
        for k in 1..=requests {
            let context = format!("fault {timing:?} request {k} of {requests}");
            let case = work.path().join(format!("case-{timing:?}-{k}"));
            let repo = case.join("repo");
            std::fs::create_dir_all(&case).unwrap();
            copy_dir(&base, &repo);
            let faulty = FaultyStore::new(FsStore::new(&repo)).failing(k, timing);
            let result = publish(&faulty, &key, &v2, options(false));
            if let Err(error) = &result {
                assert!(
                    error.to_string().contains("injected fault"),
                    "{context}: {error}"
                );
            }
            // A fault after the switch, or one that loses only the switch's answer,
            // leaves a publish that happened: it reports success, naming what is left.
            let switched = k > switch || (k == switch && timing == FaultTiming::After);
            if switched {
                let report = result.unwrap_or_else(|e| {
                    panic!("{context}: failed after the switch (request {switch}): {e}")
                });
                let listed = verify::list(&FsStore::new(&repo), &key.public_key()).unwrap();
                assert_eq!(listed[0].packages.len(), 6, "{context}: {report:?}");
            }
            assert_readable(&repo, &key, &context);

            // Rerun. A lock left behind is this process's own (its release was the
            // failed request); a real crashed process would be dead and its lock taken
            // over, which `--break-lock` stands in for here.
            let store = FsStore::new(&repo);
            let left_lock = store.get(LOCK_KEY).unwrap().is_some();
            if left_lock {
                let lock = String::from_utf8(store.get(LOCK_KEY).unwrap().unwrap()).unwrap();
                assert!(
                    lock.contains(&format!("\"pid\": {}", std::process::id())),
                    "{context}: {lock}"
                );
            }
            publish(&store, &key, &v2, options(left_lock))
                .unwrap_or_else(|e| panic!("{context}: rerun failed: {e}"));
            assert_readable(&repo, &key, &context);
            let listed = verify::list(&store, &key.public_key()).unwrap();
            let versions: Vec<(String, String)> = listed[0]
                .packages
                .iter()
                .map(|p| (p.name.clone(), p.version.clone()))
                .collect();
            for name in ["speedy-app", "speedy-jobs", "speedy-notifier"] {
                for version in ["1.4.0-1", "1.4.1-1"] {
                    assert!(
                        versions.contains(&(name.into(), version.into())),
                        "{context}: {name} {version} missing"
                    );
                }
            }
            assert!(
                store.get(LOCK_KEY).unwrap().is_none(),
                "{context}: lock left after the rerun"
            );
            std::fs::remove_dir_all(&case).unwrap();
        }
    }
}

#[test]
fn without_conditional_writes_publishers_still_lose_nothing() {
    let key = test_signing_key(fixed_now() - 10);
    let (_fixture, debs) = debs_at("1.4.0");
    let debs = read_debs(&debs).unwrap();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    publish(&FsStore::new(&repo), &key, &debs[..1], options(false)).unwrap();
    // Two publishers at once, each with its own package, on a store without a lock.
    std::thread::scope(|scope| {
        for deb in &debs[1..] {
            let repo = &repo;
            let key = &key;
            scope.spawn(move || {
                let store = FaultyStore::new(FsStore::new(repo)).without_conditional_writes();
                publish(&store, key, std::slice::from_ref(deb), options(false)).unwrap();
            });
        }
    });
    let listed = verify::list(&FsStore::new(&repo), &key.public_key()).unwrap();
    let names: Vec<&str> = listed[0].packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["speedy-app", "speedy-jobs", "speedy-notifier"]);
    assert!(verify::verify(&FsStore::new(&repo), &key.public_key(), 4)
        .unwrap()
        .ok());
}

/// Without a lock, a concurrent publisher's pool files are unreferenced until its
/// switch, so garbage collection waits at least a quarter of an hour even when the
/// configured grace period is zero; with the lock, zero means now.
#[test]
fn without_a_lock_garbage_waits_even_with_no_grace_period() {
    let key = test_signing_key(fixed_now() - 10);
    let work = tempfile::tempdir().unwrap();
    let old = read_debs(&[tiny_deb(work.path(), "speedy-app", "1.0-1")]).unwrap();
    let new = read_debs(&[tiny_deb(work.path(), "speedy-app", "1.1-1")]).unwrap();
    let newer = read_debs(&[tiny_deb(work.path(), "speedy-app", "1.2-1")]).unwrap();
    let newest = read_debs(&[tiny_deb(work.path(), "speedy-app", "1.3-1")]).unwrap();
    let repo = work.path().join("repo");
    let mut config = repo_config(1);
    config.grace_seconds = 0;
    // One history record: it keeps the state before the last change, here the
    // previous version, so the one before that is garbage.
    config.history = 1;
    let run = |store: &dyn Store, debs: &[IncomingDeb]| {
        Publish {
            store,
            key: &cargo_speedy::sign::RepoKeys::new(key.clone(), None),
            suite: "dev".into(),
            config: &config,
            lock: LockOptions::default(),
            dry_run: false,
            change_origin: false,
            command: "publish",
            now: &fixed_now,
        }
        .run(debs, &SilentListener)
        .unwrap()
    };
    let old_pool = repo.join("pool/main/s/speedy-app/speedy-app_1.0-1_all.deb");
    run(&FsStore::new(&repo), &old);
    run(&FsStore::new(&repo), &new);
    assert!(old_pool.exists(), "kept for the history");
    run(
        &FaultyStore::new(FsStore::new(&repo)).without_conditional_writes(),
        &newer,
    );
    assert!(
        old_pool.exists(),
        "kept: a lockless publish never deletes at once"
    );
    let pending = std::fs::read_to_string(repo.join(".speedy/pending-deletes.json")).unwrap();
    assert!(pending.contains("speedy-app_1.0-1_all.deb"), "{pending}");
    run(&FsStore::new(&repo), &newest);
    assert!(
        !old_pool.exists(),
        "with the lock, no grace period means now"
    );
}

// The fault injector itself: it must fail exactly what it is told to.

#[test]
fn fails_exactly_the_chosen_request() {
    let dir = tempfile::tempdir().unwrap();
    let opts = cargo_speedy::publish::put_options("k");
    let store = FaultyStore::new(FsStore::new(dir.path())).failing(2, FaultTiming::Before);
    store.put("a", Body::Bytes(b"1"), &opts).unwrap();
    assert!(matches!(
        store.put("b", Body::Bytes(b"2"), &opts),
        Err(StoreError::Backend { message, .. }) if message.contains("request 2 failed")
    ));
    store.put("c", Body::Bytes(b"3"), &opts).unwrap();
    assert_eq!(store.requests(), 3);
    assert!(store.get("b").unwrap().is_none(), "before: never happened");

    let store = FaultyStore::new(FsStore::new(dir.path())).failing(1, FaultTiming::After);
    assert!(store.put("d", Body::Bytes(b"4"), &opts).is_err());
    assert_eq!(
        store.get("d").unwrap().as_deref(),
        Some(&b"4"[..]),
        "after: happened, answer lost"
    );
}

#[test]
fn can_hide_conditional_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::new(FsStore::new(dir.path())).without_conditional_writes();
    let result = store.put_if_absent(
        "lock",
        Body::Bytes(b"x"),
        &cargo_speedy::publish::put_options("lock"),
    );
    assert!(matches!(
        result,
        Err(StoreError::ConditionalWritesUnsupported { .. })
    ));
    assert!(store.get("lock").unwrap().is_none());
}

/// A rollback or a phase change through the same enumeration: after a fault at any
/// request, verify and apt accept the repository, and running the command again
/// finishes it.
#[test]
fn a_fault_at_any_request_of_a_rollback_or_phase_leaves_a_readable_repository() {
    use cargo_speedy::publish::history;
    use cargo_speedy::publish::Change;
    use cargo_speedy::repo::plan::SuiteChange;

    let key = test_signing_key(fixed_now() - 10);
    let (_v1_fixture, v1) = debs_at("1.4.0");
    let (_v2_fixture, v2) = debs_at("1.4.1");
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("base");
    publish(
        &FsStore::new(&base),
        &key,
        &read_debs(&v1).unwrap(),
        options(false),
    )
    .unwrap();
    publish(
        &FsStore::new(&base),
        &key,
        &read_debs(&v2).unwrap(),
        options(false),
    )
    .unwrap();

    // The rollback to the state before the 1.4.1 publish, as `rollback` computes it.
    let store = FsStore::new(&base);
    let recorded = history::read(&store, &key.public_key(), "dev").unwrap();
    let record = recorded.find(2).expect("the 1.4.1 publish is change 2");
    let restore = SuiteChange::Restore {
        packages: history::replaced_packages(&store, "dev", record).unwrap(),
        keep_current: vec![],
        keep_services: cargo_speedy::repo::plan::KeepServices::AnyOf(vec!["speedy-app".into()]),
    };
    let phase = SuiteChange::Phase {
        names: vec!["speedy-app".into()],
        percent: 50,
    };
    let apply = |store: &dyn Store, change: &SuiteChange, break_lock: bool| {
        Publish {
            store,
            key: &cargo_speedy::sign::RepoKeys::new(key.clone(), None),
            suite: "dev".into(),
            config: &repo_config(5),
            lock: LockOptions {
                break_lock,
                ..LockOptions::default()
            },
            dry_run: false,
            change_origin: false,
            command: "rollback",
            now: &fixed_now,
        }
        .apply(Change::Edit(change), &SilentListener)
    };
    let expect = |store: &FsStore, change: &SuiteChange, context: &str| {
        let listed = verify::list(store, &key.public_key()).unwrap();
        let app: Vec<(String, Option<u8>)> = listed[0]
            .packages
            .iter()
            .filter(|p| p.name == "speedy-app")
            .map(|p| (p.version.clone(), p.phase()))
            .collect();
        let expected = match change {
            SuiteChange::Restore { .. } => vec![("1.4.0-1".to_owned(), None)],
            _ => vec![
                ("1.4.1-1".to_owned(), Some(50)),
                ("1.4.0-1".to_owned(), None),
            ],
        };
        assert_eq!(app, expected, "{context}");
    };

    for change in [&restore, &phase] {
        let probe_dir = work.path().join("probe");
        copy_dir(&base, &probe_dir);
        let probe = FaultyStore::new(FsStore::new(&probe_dir));
        apply(&probe, change, false).unwrap();
        let requests = probe.requests();
        std::fs::remove_dir_all(&probe_dir).unwrap();
        for timing in [FaultTiming::Before, FaultTiming::After] {
            for k in 1..=requests {
                let context = format!("{change:?}: fault {timing:?} request {k} of {requests}");
                let case = work.path().join(format!("case-{k}"));
                let repo = case.join("repo");
                std::fs::create_dir_all(&case).unwrap();
                copy_dir(&base, &repo);
                let faulty = FaultyStore::new(FsStore::new(&repo)).failing(k, timing);
                if let Err(error) = apply(&faulty, change, false) {
                    assert!(
                        error.to_string().contains("injected fault"),
                        "{context}: {error}"
                    );
                }
                assert_readable(&repo, &key, &context);
                let store = FsStore::new(&repo);
                let left_lock = store.get(LOCK_KEY).unwrap().is_some();
                apply(&store, change, left_lock)
                    .unwrap_or_else(|e| panic!("{context}: rerun failed: {e}"));
                assert_readable(&repo, &key, &context);
                expect(&store, change, &context);
                assert!(
                    store.get(LOCK_KEY).unwrap().is_none(),
                    "{context}: lock left"
                );
                std::fs::remove_dir_all(&case).unwrap();
            }
        }
    }
}

/// `python3 -m http.server` on 127.0.0.1, serving a directory: like most web
/// servers, S3 and Spaces it answers If-Modified-Since from whole-second modification
/// times. Stopped on drop.
struct PlainHttpServer {
    child: std::process::Child,
    url: String,
}

impl PlainHttpServer {
    fn serve(dir: &Path) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m http.server (python3 is installed on Debian)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .unwrap_or_else(|| panic!("no port in {line:?}"))
            .to_owned();
        PlainHttpServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for PlainHttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 17, defect 6: apt asks for InRelease with If-Modified-Since, and servers
/// compare whole seconds. Two changes within one second, with an `apt-get update`
/// between them, used to leave the second unseen ("304 Not Modified") until the next
/// publish; the switch now waits for the next second when it has to.
#[test]
fn a_change_in_the_same_second_as_the_last_is_seen_by_apt() {
    let key = test_signing_key(fixed_now() - 10);
    let (_fixture, v1) = debs_at("1.4.0");
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("repo");
    let store = FsStore::new(&base);
    publish(&store, &key, &read_debs(&v1).unwrap(), options(false)).unwrap();
    let keyring = work.path().join("keyring.gpg");
    std::fs::write(&keyring, key.public_key().to_binary().unwrap()).unwrap();
    let http = PlainHttpServer::serve(&base);
    let apt = Apt::new(&format!(
        "deb [signed-by={}] {} dev main",
        keyring.display(),
        http.url
    ));
    let phase = |percent: u8| {
        Publish {
            store: &store,
            key: &cargo_speedy::sign::RepoKeys::new(key.clone(), None),
            suite: "dev".into(),
            config: &repo_config(5),
            lock: LockOptions::default(),
            dry_run: false,
            change_origin: false,
            command: "phase",
            now: &fixed_now,
        }
        .apply(
            cargo_speedy::publish::Change::Edit(&cargo_speedy::repo::plan::SuiteChange::Phase {
                names: vec!["speedy-app".into()],
                percent,
            }),
            &SilentListener,
        )
        .unwrap();
    };
    let phase_seen = || {
        let (ok, text) = apt.update();
        assert!(ok, "{text}");
        let (_, shown) = apt.run("apt-cache", &["show", "speedy-app"]);
        shown
            .lines()
            .find_map(|l| l.strip_prefix("Phased-Update-Percentage: "))
            .map(str::to_owned)
    };
    let in_release = base.join("dists/dev/InRelease");
    let modified = || {
        std::fs::metadata(&in_release)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    };
    assert_eq!(phase_seen(), None);
    for round in 0..3 {
        // Start just after a second begins, so that the change, apt's fetch and the
        // next change all fall in one second unless the publish waits.
        while std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_millis()
            > 50
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        phase(0);
        let first = modified();
        assert_eq!(phase_seen().as_deref(), Some("0"), "round {round}");
        phase(100);
        let second = modified();
        assert_eq!(
            phase_seen(),
            None,
            "round {round}: apt missed the second change"
        );
        assert!(
            second.as_secs() > first.as_secs(),
            "round {round}: the new InRelease carries the second of the one it replaced"
        );
    }
}

/// The first read under the lock takes a suite as the recognition read it only while
/// its InRelease is unchanged: a suite changed since, and one published since, are
/// read again (docs/ARCHITECTURE.md, "The life of a publish").
#[test]
fn the_first_read_under_the_lock_reads_again_what_changed_since_the_recognition() {
    use cargo_speedy::publish::state;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path());
    let key = test_signing_key(fixed_now() - 10);
    let public_key = key.public_key();
    let debs_dir = tempfile::tempdir().unwrap();
    let debs = |name: &str| read_debs(&[tiny_deb(debs_dir.path(), name, "1.0-1")]).unwrap();
    let publish_to = |suite: &str, name: &str| {
        Publish {
            store: &store,
            key: &cargo_speedy::sign::RepoKeys::new(key.clone(), None),
            suite: suite.into(),
            config: &repo_config(5),
            lock: LockOptions::default(),
            dry_run: false,
            change_origin: false,
            command: "publish",
            now: &fixed_now,
        }
        .run(&debs(name), &SilentListener)
        .unwrap()
    };
    // What a test compares: each suite's InRelease, its time, and its packages.
    let summary = |states: &std::collections::BTreeMap<String, state::SuiteState>| {
        states
            .iter()
            .map(|(suite, state)| {
                let names: Vec<String> = state.packages.iter().map(|p| p.name.clone()).collect();
                (
                    suite.clone(),
                    state.in_release.clone(),
                    state.in_release_modified,
                    names,
                )
            })
            .collect::<Vec<_>>()
    };
    publish_to("dev", "pa");
    let configured = ["dev".to_owned(), "stable".to_owned()];
    let recognised =
        state::recognise(&store, &public_key, &configured, &["amd64".to_owned()]).unwrap();
    assert_eq!(
        summary(&recognised.states),
        summary(&state::read_all(&store, &public_key).unwrap())
    );
    let confirm = || {
        let confirmation = state::read_all_expecting(&store, &public_key, &recognised).unwrap();
        recognised.clone().confirmed(confirmation)
    };
    let (as_recognised, unchanged) = confirm();
    assert!(unchanged, "nothing changed since the recognition");
    assert_eq!(
        summary(&as_recognised),
        summary(&state::read_all(&store, &public_key).unwrap())
    );
    assert_eq!(as_recognised["dev"].packages.len(), 1);

    publish_to("dev", "pb");
    publish_to("stable", "pc");
    let (read, unchanged) = confirm();
    assert!(
        !unchanged,
        "dev changed and stable came since the recognition"
    );
    assert_eq!(
        summary(&read),
        summary(&state::read_all(&store, &public_key).unwrap())
    );
    let names = |suite: &str| -> Vec<&str> {
        read[suite]
            .packages
            .iter()
            .map(|p| p.name.as_str())
            .collect()
    };
    assert!(names("dev").contains(&"pb"), "{:?}", names("dev"));
    assert!(names("stable").contains(&"pc"), "{:?}", names("stable"));
}

/// Before its lock a publish tells from the text of a suite's Packages, unparsed,
/// whether a .deb is new to it: only a `Filename:` line that names the file, at the
/// start of a line, counts as listed (docs/ARCHITECTURE.md, "The life of a publish").
#[test]
fn the_text_of_packages_tells_what_a_suite_may_list_before_it_is_parsed() {
    use cargo_speedy::publish::state;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path());
    let key = cargo_speedy::sign::RepoKeys::new(test_signing_key(fixed_now() - 10), None);
    let debs_dir = tempfile::tempdir().unwrap();
    let published = read_debs(&[tiny_deb(debs_dir.path(), "pa", "1.0-1")]).unwrap();
    publish_with(&store, &key, "dev", &repo_config(5), &fixed_now, &published);
    let configured = ["dev".to_owned(), "stable".to_owned()];
    let architectures = ["amd64".to_owned()];
    let public_key = key.public_key();
    let checked = state::check(&store, &public_key, &configured, &architectures, None).unwrap();
    let filename = &published[0].entry.filename;
    assert!(checked.may_list("dev", filename), "{filename}");
    // Another version's file, a file name that is only the end of the listed one, and
    // a suite not published: none listed.
    let other = filename.replace("1.0-1", "1.1-1");
    assert!(!checked.may_list("dev", &other), "{other}");
    let tail = filename.rsplit('/').next().unwrap();
    assert!(!checked.may_list("dev", tail), "{tail}");
    assert!(!checked.may_list("stable", filename));
    // With the lock waiting for stable alone, dev's indices are only read: "look
    // closer" (parse first), then the same once parsed.
    let deferred = state::check(
        &store,
        &public_key,
        &configured,
        &architectures,
        Some("stable"),
    )
    .unwrap();
    assert!(deferred.may_list("dev", &other));
    assert!(!deferred.may_list("stable", filename));
    let deferred = deferred.parsed(&store).unwrap();
    // Parsed, it is what `recognise` reads.
    let parsed = checked.parsed(&store).unwrap();
    assert_eq!(
        parsed.states["dev"].packages,
        deferred.states["dev"].packages
    );
    let recognised = state::recognise(&store, &public_key, &configured, &architectures).unwrap();
    assert_eq!(parsed.states.len(), 1);
    assert_eq!(
        parsed.states["dev"].packages,
        recognised.states["dev"].packages
    );
    assert_eq!(parsed.states["dev"].packages[0].filename, *filename);
}

/// Our suite's canonical Packages.gz is decompressed as soon as it is read, before
/// InRelease is in; InRelease alone decides what counts. Left newer than InRelease
/// (a publish interrupted between the two), the decompression is dropped and the
/// by-hash copy InRelease lists is read, whichever suite the lock waits for.
#[test]
fn an_index_decompressed_before_inrelease_counts_only_when_inrelease_lists_it() {
    use cargo_speedy::publish::state;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path());
    let key = cargo_speedy::sign::RepoKeys::new(test_signing_key(fixed_now() - 10), None);
    let debs_dir = tempfile::tempdir().unwrap();
    let first = read_debs(&[tiny_deb(debs_dir.path(), "pa", "1.0-1")]).unwrap();
    publish_with(&store, &key, "dev", &repo_config(5), &fixed_now, &first);
    let dists = dir.path().join("dists/dev");
    let release_files = ["InRelease", "Release", "Release.gpg"];
    let saved: Vec<Vec<u8>> = release_files
        .iter()
        .map(|name| std::fs::read(dists.join(name)).unwrap())
        .collect();
    let second = read_debs(&[tiny_deb(debs_dir.path(), "pb", "1.0-1")]).unwrap();
    publish_with(&store, &key, "dev", &repo_config(5), &fixed_now, &second);
    // The first state's Release files again, over the second state's indices.
    for (name, bytes) in release_files.iter().zip(&saved) {
        std::fs::write(dists.join(name), bytes).unwrap();
    }
    let canonical =
        gunzip_text(&std::fs::read(dists.join("main/binary-amd64/Packages.gz")).unwrap());
    assert!(canonical.contains("Package: pb"), "{canonical}");

    let configured = ["dev".to_owned()];
    let architectures = ["amd64".to_owned()];
    let public_key = key.public_key();
    for first_suite in [None, Some("dev")] {
        let checked = state::check(
            &store,
            &public_key,
            &configured,
            &architectures,
            first_suite,
        )
        .unwrap();
        assert!(
            !checked.may_list("dev", &second[0].entry.filename),
            "{first_suite:?}: the text checked is the canonical file's, not InRelease's"
        );
        let parsed = checked.parsed(&store).unwrap();
        let names: Vec<&str> = parsed.states["dev"]
            .packages
            .iter()
            .map(|entry| entry.name.as_str())
            .collect();
        assert_eq!(names, ["pa"], "{first_suite:?}");
    }
}

/// A history read again with the same bytes is taken as read before, without a
/// second verification; other bytes are verified afresh, and refused when they are
/// not the key's (docs/ARCHITECTURE.md, "The life of a publish").
#[test]
fn a_history_read_again_is_verified_again_only_when_its_bytes_changed() {
    use cargo_speedy::publish::history;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path());
    let key = cargo_speedy::sign::RepoKeys::new(test_signing_key(fixed_now() - 10), None);
    let public_key = key.public_key();
    let debs_dir = tempfile::tempdir().unwrap();
    let config = repo_config(5);
    let publish = |version: &str| {
        let debs = read_debs(&[tiny_deb(debs_dir.path(), "pa", version)]).unwrap();
        publish_with(&store, &key, "dev", &config, &fixed_now, &debs)
    };
    publish("1.0-1");
    let first = history::read_again(&store, &public_key, "dev", None).unwrap();
    assert_eq!(first.history.records.len(), 1);

    // The same bytes: what was read before is taken as it is (here marked, to see it).
    let mut marked = first.clone();
    marked.history.records[0].user = "taken as read before".into();
    let again = history::read_again(&store, &public_key, "dev", Some(marked)).unwrap();
    assert_eq!(again.history.records[0].user, "taken as read before");

    // A change recorded since: read and verified afresh.
    publish("1.1-1");
    let after = history::read_again(&store, &public_key, "dev", Some(first.clone())).unwrap();
    assert_eq!(after.history.records.len(), 2);

    // Bytes changed by hand: refused, whatever was read before.
    let history_key = cargo_speedy::repo::layout::history_key("dev");
    let mut bytes = store.get(&history_key).unwrap().unwrap();
    let at = bytes.iter().position(|b| *b == b'{').unwrap();
    bytes.insert(at + 1, b' ');
    store
        .put(
            &history_key,
            Body::Bytes(&bytes),
            &cargo_speedy::publish::put_options(&history_key),
        )
        .unwrap();
    let error = history::read_again(&store, &public_key, "dev", Some(after)).unwrap_err();
    assert!(
        matches!(
            error,
            cargo_speedy::publish::PublishError::HistoryTampered { .. }
        ),
        "{error}"
    );
}

/// Before the canonical files change, a lock too old to vouch for itself
/// (`HeldLock::surely_ours`: here a lease of 2 s, and 250 ms a request) is read
/// again: taken over by then, by someone whose clock says its lease ran out, the
/// publish stops (`LockLost`) with every file of the suite as it was. A fresh lock is
/// not read then (`an_update_is_nine_round_trips_in_sequence`).
#[test]
fn a_lock_taken_over_before_the_canonical_files_change_stops_the_publish() {
    use cargo_speedy::publish::lock::LockInfo;
    let dir = tempfile::tempdir().unwrap();
    let key = cargo_speedy::sign::RepoKeys::new(test_signing_key(fixed_now() - 10), None);
    let config = repo_config(5);
    let debs_dir = tempfile::tempdir().unwrap();
    let first = read_debs(&[tiny_deb_for(debs_dir.path(), "pa", "1.0-1", "amd64")]).unwrap();
    let direct = FsStore::new(dir.path());
    publish_with(&direct, &key, "dev", &config, &fixed_now, &first);
    let before = tree_hashes(dir.path());

    let takeover = || {
        let info = LockInfo {
            owner: "ci@elsewhere".into(),
            host: "elsewhere".into(),
            pid: 4242,
            created: fixed_now(),
            expires: fixed_now() + 60,
            token: "elsewhere-token".into(),
        };
        let bytes = serde_json::to_vec(&info).unwrap();
        move |inner: &FsStore| {
            inner
                .put(
                    LOCK_KEY,
                    Body::Bytes(&bytes),
                    &cargo_speedy::publish::put_options(LOCK_KEY),
                )
                .unwrap()
        }
    };
    let store = FaultyStore::new(FsStore::new(dir.path()))
        .with_latency(std::time::Duration::from_millis(250))
        .before_first("put dists/dev/main/binary-amd64/by-hash/", takeover());
    let update = read_debs(&[tiny_deb_for(debs_dir.path(), "pa", "1.1-1", "amd64")]).unwrap();
    let error = Publish {
        store: &store,
        key: &key,
        suite: "dev".into(),
        config: &config,
        lock: LockOptions {
            lease: std::time::Duration::from_secs(2),
            ..LockOptions::default()
        },
        dry_run: false,
        change_origin: false,
        command: "publish",
        now: &fixed_now,
    }
    .run(&update, &SilentListener)
    .expect_err("the lock was taken over");
    assert!(
        matches!(error, cargo_speedy::publish::PublishError::LockLost { .. }),
        "{error}"
    );
    let log = store.log();
    let canonical = log
        .iter()
        .position(|request| request == "put dists/dev/main/binary-amd64/Packages.gz");
    assert_eq!(canonical, None, "a canonical file changed: {log:#?}");
    let after = tree_hashes(dir.path());
    for (path, sha256) in &before {
        if path.starts_with("dists/") && !path.contains("/by-hash/") {
            assert_eq!(after.get(path), Some(sha256), "{path} changed");
        }
    }
}

/// A publish that waits for another's lock signs its indices while it waits, when
/// nothing else is left to do; had a second or more later, it signs them again, so
/// that `Date:` is not the second it began waiting.
#[test]
fn indices_signed_while_waiting_for_the_lock_are_dated_again_once_it_is_had() {
    use cargo_speedy::publish::lock::LockInfo;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path());
    let key = cargo_speedy::sign::RepoKeys::new(test_signing_key(fixed_now() - 10), None);
    let config = repo_config(5);
    let debs_dir = tempfile::tempdir().unwrap();
    let first = read_debs(&[tiny_deb(debs_dir.path(), "pa", "1.0-1")]).unwrap();
    publish_with(
        &store,
        &key,
        "dev",
        &config,
        &cargo_speedy::clock::now,
        &first,
    );
    // Another publisher's live lease, given up 1.5 s from now.
    let info = LockInfo {
        owner: "ci@elsewhere".into(),
        host: "elsewhere".into(),
        pid: 4242,
        created: cargo_speedy::clock::now(),
        expires: cargo_speedy::clock::now() + 600,
        token: "elsewhere-token".into(),
    };
    let options = cargo_speedy::publish::put_options(LOCK_KEY);
    let bytes = serde_json::to_vec(&info).unwrap();
    store.put(LOCK_KEY, Body::Bytes(&bytes), &options).unwrap();
    let released = std::thread::scope(|scope| {
        let releaser = scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(1_500));
            let second = cargo_speedy::clock::now();
            FsStore::new(dir.path()).delete(LOCK_KEY).unwrap();
            second
        });
        let update = read_debs(&[tiny_deb(debs_dir.path(), "pa", "1.1-1")]).unwrap();
        let report = Publish {
            store: &store,
            key: &key,
            suite: "dev".into(),
            config: &config,
            lock: LockOptions {
                wait: Some(std::time::Duration::from_secs(30)),
                ..LockOptions::default()
            },
            dry_run: false,
            change_origin: false,
            command: "publish",
            now: &cargo_speedy::clock::now,
        }
        .run(&update, &SilentListener)
        .unwrap();
        assert_eq!(report.added.len(), 1, "{report:?}");
        releaser.join().unwrap()
    });
    let in_release = std::fs::read_to_string(dir.path().join("dists/dev/InRelease")).unwrap();
    let date = in_release
        .lines()
        .find_map(|line| line.strip_prefix("Date: "))
        .expect("a Date field");
    let dated_since_released = (released..=cargo_speedy::clock::now())
        .any(|second| cargo_speedy::repo::syntax::rfc2822(second, "UTC") == date);
    assert!(
        dated_since_released,
        "Date: {date}, the lock given up at {}",
        cargo_speedy::repo::syntax::rfc2822(released, "UTC")
    );
}

/// Through a store that answers each request 60 ms late, like a remote one, an update
/// of a repository with two suites and their histories is at most 9 round trips in
/// sequence, and a publish that changes nothing (with nothing to collect) is one,
/// and writes nothing, not even the lock
/// (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").
#[test]
fn an_update_is_nine_round_trips_in_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::new(FsStore::new(dir.path()))
        .with_latency(std::time::Duration::from_millis(60));
    let key = cargo_speedy::sign::RepoKeys::new(test_signing_key(fixed_now() - 10), None);
    let config = repo_config(5);
    let debs_dir = tempfile::tempdir().unwrap();
    let debs = |names: &[&str], version: &str| {
        let paths: Vec<PathBuf> = names
            .iter()
            .map(|name| tiny_deb_for(debs_dir.path(), name, version, "amd64"))
            .collect();
        read_debs(&paths).unwrap()
    };
    let publish_to = |suite: &str, debs: &[IncomingDeb]| {
        publish_with(&store, &key, suite, &config, &fixed_now, debs)
    };
    let names = ["pa", "pb", "pc", "pd", "pe"];
    let first = debs(&names, "1.0-1");
    publish_to("stable", &first);
    publish_to("dev", &first);
    publish_to("dev", &debs(&names[..3], "1.1-1"));

    let update = debs(&names[..3], "1.2-1");
    store.forget();
    let report = publish_to("dev", &update);
    assert_eq!(report.added.len(), 3, "{report:?}");
    assert!(report.history_id.is_some(), "{report:?}");
    let path = store.critical_path();
    assert!(
        path.contains(&"put dists/dev/InRelease".to_owned()),
        "the switch is on the critical path: {path:#?}"
    );
    assert!(
        path.len() <= 9,
        "an update is {} round trips in sequence, not at most 9:\n{path:#?}\nevery request: {:#?}",
        path.len(),
        store.log()
    );

    store.forget();
    let report = publish_to("dev", &update);
    assert!(
        report.added.is_empty() && report.history_id.is_none(),
        "{report:?}"
    );
    let log = store.log();
    assert!(
        log.iter()
            .all(|request| request.starts_with("get ") || request.starts_with("list ")),
        "a publish that changes nothing writes nothing, not even the lock: {log:#?}"
    );
    assert_eq!(
        store.critical_path().len(),
        1,
        "a publish that changes nothing is one round trip: {log:#?}"
    );
}

/// A publish that changes nothing still takes the lock when garbage collection has
/// work: here a retired package's file, which no kept history record names any
/// more, is deleted by the no-change publish that comes after its grace period.
/// Before that, the same publish writes nothing
/// (docs/ARCHITECTURE.md, "The life of a publish").
#[test]
fn a_publish_that_changes_nothing_collects_what_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::new(FsStore::new(dir.path()));
    let key = cargo_speedy::sign::RepoKeys::new(test_signing_key(fixed_now() - 10), None);
    let mut config = repo_config(1);
    // One record kept: once v3 is in, nothing names v1 any more.
    config.history = 1;
    let debs_dir = tempfile::tempdir().unwrap();
    let version = |v: &str| read_debs(&[tiny_deb_for(debs_dir.path(), "pa", v, "amd64")]).unwrap();
    let (v1, v2, v3) = (version("1.0-1"), version("2.0-1"), version("3.0-1"));
    let publish_at = |now: &(dyn Fn() -> u64 + Sync), debs: &[IncomingDeb]| {
        publish_with(&store, &key, "dev", &config, now, debs)
    };
    let old_pool = "pool/main/p/pa/pa_1.0-1_amd64.deb";
    publish_at(&fixed_now, &v1);
    publish_at(&fixed_now, &v2);
    let retired = publish_at(&fixed_now, &v3);
    assert_eq!(retired.retired.len(), 1, "{retired:?}");
    assert!(
        store.head(old_pool).unwrap().is_some(),
        "kept for the grace period"
    );

    // Within the grace period: nothing due, nothing written.
    store.forget();
    let report = publish_at(&|| fixed_now() + 60, &v3);
    assert!(
        report.added.is_empty() && report.deleted.is_empty(),
        "{report:?}"
    );
    assert!(
        store
            .log()
            .iter()
            .all(|r| r.starts_with("get ") || r.starts_with("list ")),
        "{:#?}",
        store.log()
    );

    // After it: the same publish takes the lock and deletes the retired file.
    store.forget();
    let report = publish_at(&|| fixed_now() + config.grace_seconds + 60, &v3);
    assert!(report.added.is_empty(), "{report:?}");
    assert!(report.deleted.iter().any(|k| k == old_pool), "{report:?}");
    assert!(store.head(old_pool).unwrap().is_none());
    assert!(
        store
            .log()
            .iter()
            .any(|r| r == "put-if-absent .speedy/lock"),
        "{:#?}",
        store.log()
    );
    assert!(
        store.get(LOCK_KEY).unwrap().is_none(),
        "the lock is released"
    );
}
