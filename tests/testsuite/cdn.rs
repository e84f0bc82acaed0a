//! The CDN purge after a publish to Spaces, and `doctor`'s TTL check
//! (docs/ARCHITECTURE.md, "CDN purge"). The bucket is moto on 127.0.0.1; the real
//! DigitalOcean API cannot be reached from here, so a stand-in on 127.0.0.1
//! (`support::do_api`) records what the publish asks of it.

use crate::support::do_api::{ApiAnswer, StandInApi, ENDPOINT_ID};
use crate::support::*;
use cargo_speedy::cdn::{ApiToken, CdnApi, Pacer, TOKEN_VARIABLE};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// Distinctive, so a leak into any output is found.
const TOKEN: &str = "dop_v1_cdn-test-token-7f3a9c";

/// A fixture whose repository has two architectures and a CDN endpoint.
fn cdn_fixture() -> Fixture {
    let fixture = Fixture::new();
    let manifest = fixture.read("Cargo.toml");
    fixture.write(
        "Cargo.toml",
        &format!(
            "{manifest}\n[workspace.metadata.speedy.repo]\narchitectures = [\"amd64\", \"arm64\"]\n\n\
             [workspace.metadata.speedy.repo.spaces]\ncdn-endpoint-id = \"{ENDPOINT_ID}\"\n"
        ),
    );
    fixture
}

/// A bucket of its own on moto below the prefix `debian`, the stand-in API, the
/// fixture with a CDN endpoint, a signing key, and a folder for .debs.
struct CdnSetup {
    moto: &'static MotoServer,
    bucket: String,
    api: StandInApi,
    fixture: Fixture,
    key: PathBuf,
    debs: tempfile::TempDir,
}

impl CdnSetup {
    /// A new bucket named `prefix-N` on the shared moto server.
    fn new(prefix: &str, api: StandInApi) -> Self {
        let moto = MotoServer::shared();
        let bucket = moto.new_bucket(prefix);
        let fixture = cdn_fixture();
        let key = fixture.path("repo-key.asc");
        assert_success(&fixture.speedy(&["key", "generate", "--output", key.to_str().unwrap()]));
        CdnSetup {
            moto,
            bucket,
            api,
            fixture,
            key,
            debs: tempfile::tempdir().unwrap(),
        }
    }

    /// `cargo speedy ARGS` against the bucket, with the token and the
    /// stand-in API in the environment (`env` adds or overrides).
    fn speedy(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(self.moto.flags(&self.bucket));
        all.extend(["--prefix".into(), "debian".into()]);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut full_env = TEST_CREDENTIALS.to_vec();
        full_env.extend([
            (TOKEN_VARIABLE, TOKEN),
            ("SPEEDY_DIGITALOCEAN_API", self.api.url.as_str()),
        ]);
        full_env.extend_from_slice(env);
        self.fixture.speedy_env(&all, &full_env)
    }

    /// Publishes an amd64 speedy-app of `version` to dev, with JSON output.
    fn publish(&self, version: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        // Made once per version: dpkg-deb's bytes differ from run to run.
        let deb = self
            .debs
            .path()
            .join(format!("speedy-app_{version}_amd64.deb"));
        if !deb.exists() {
            tiny_deb_for(self.debs.path(), "speedy-app", version, "amd64");
        }
        let mut args = vec![
            "publish",
            deb.to_str().unwrap(),
            "--key-file",
            self.key.to_str().unwrap(),
            "-v",
            "--message-format",
            "json",
        ];
        args.extend_from_slice(extra);
        self.speedy(&args, env)
    }
}

/// An empty token counts as none, as a CI secret that does not exist.
const NO_TOKEN: (&str, &str) = (TOKEN_VARIABLE, "");

/// The `published` message of a JSON run.
fn published(output: &Output) -> serde_json::Value {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|message| message["reason"] == "published")
        .unwrap_or_else(|| panic!("no published message: {}", describe(output)))
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn sorted(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths
}

fn assert_no_token(output: &Output) {
    let text = format!("{}{}", stdout(output), stderr(output));
    assert!(!text.contains(TOKEN), "the token leaked: {text}");
    assert!(!text.contains("cdn-test-token"), "the token leaked: {text}");
}

#[test]
fn a_publish_purges_exactly_the_mutable_paths_it_changed() {
    let setup = CdnSetup::new("speedy-cdn", StandInApi::start(3600));
    let api = &setup.api;

    // A new suite: both architectures' indices, the Release files and the keyring.
    let output = setup.publish("1.0-1", &[], &[]);
    assert_success(&output);
    assert_no_token(&output);
    let mut expected: Vec<String> = ["InRelease", "Release", "Release.gpg"]
        .iter()
        .map(|name| format!("debian/dists/dev/{name}"))
        .collect();
    for arch in ["amd64", "arm64"] {
        expected.push(format!("debian/dists/dev/main/binary-{arch}/Packages.gz"));
    }
    expected.extend([
        "debian/archive-keyring.gpg".into(),
        "debian/archive-keyring.asc".into(),
    ]);
    let purges = api.purges();
    assert_eq!(purges.len(), 1, "{purges:?}");
    for purge in &purges {
        assert_eq!(purge.path, format!("/v2/cdn/endpoints/{ENDPOINT_ID}/cache"));
        assert_eq!(
            purge.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    let purged: Vec<String> = purges.iter().flat_map(|p| p.files()).collect();
    assert_eq!(sorted(purged.clone()), sorted(expected));
    assert_eq!(
        sorted(strings(&published(&output)["cdn_purged"])),
        sorted(purged.clone())
    );
    // Each purged path is an object of the bucket, none of them immutable.
    let objects = bucket_contents(&setup.moto.store(&setup.bucket));
    for path in &purged {
        assert!(objects.contains_key(path), "{path} is not in the bucket");
        assert!(
            !path.contains("/by-hash/") && !path.contains("/pool/"),
            "{path}"
        );
    }

    // The same package again changes nothing and purges nothing.
    let output = setup.publish("1.0-1", &[], &[]);
    assert_success(&output);
    assert_eq!(api.purges().len(), 1, "{:?}", api.purges());
    assert!(published(&output).get("cdn_purged").is_none());

    // A new amd64 version: arm64's indices and the keyring keep their bytes.
    let output = setup.publish("1.1-1", &[], &[]);
    assert_success(&output);
    assert_no_token(&output);
    let purges = api.purges();
    assert_eq!(purges.len(), 2);
    let expected: Vec<String> = [
        "InRelease",
        "Release",
        "Release.gpg",
        "main/binary-amd64/Packages.gz",
    ]
    .iter()
    .map(|name| format!("debian/dists/dev/{name}"))
    .collect();
    assert_eq!(sorted(purges[1].files()), sorted(expected));
    assert_eq!(
        purges[1].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    // A dry run purges nothing either.
    assert_success(&setup.publish("1.2-1", &["--dry-run"], &[]));
    assert_eq!(api.purges().len(), 2);
}

#[test]
fn a_failing_api_leaves_the_publish_successful_and_unfinished() {
    let api = StandInApi::answering(|_, _| {
        ApiAnswer::new(
            500,
            r#"{"id":"server_error","message":"Server was unable to give you a response."}"#,
        )
    });
    let setup = CdnSetup::new("speedy-cdn-down", api);
    let output = setup.publish("1.0-1", &[], &[]);
    assert_success(&output);
    assert_no_token(&output);
    let report = published(&output);
    let unfinished = strings(&report["unfinished"]);
    assert_eq!(unfinished.len(), 1, "{unfinished:?}");
    assert!(
        unfinished[0].contains("purging the CDN cache"),
        "{unfinished:?}"
    );
    assert!(unfinished[0].contains("HTTP 500"), "{unfinished:?}");
    assert!(
        unfinished[0].contains(&format!(
            "doctl compute cdn flush {ENDPOINT_ID} --files debian/dists/dev/"
        )),
        "{unfinished:?}"
    );
    assert!(stdout(&output).contains("published, but not finished"));
    assert_eq!(setup.api.purges().len(), 1);
    // The packages are published: the repository lists them.
    let listed = setup.speedy(&["list", "--key-file", setup.key.to_str().unwrap()], &[]);
    assert_success(&listed);
    assert!(
        stdout(&listed).contains("speedy-app"),
        "{}",
        stdout(&listed)
    );
}

#[test]
fn without_a_token_the_publish_warns_and_purges_nothing() {
    let setup = CdnSetup::new("speedy-cdn-notoken", StandInApi::start(3600));
    let output = setup.publish("1.0-1", &[], &[NO_TOKEN]);
    assert_success(&output);
    assert!(
        stdout(&output).contains("$DIGITALOCEAN_TOKEN is not set"),
        "{}",
        describe(&output)
    );
    assert!(setup.api.requests().is_empty());
}

/// A clock that moves only when slept on, recording each sleep.
#[derive(Default)]
struct FakeClock {
    now: Cell<Duration>,
    sleeps: RefCell<Vec<Duration>>,
}

impl Pacer for FakeClock {
    fn now(&self) -> Duration {
        self.now.get()
    }
    fn sleep(&self, duration: Duration) {
        self.sleeps.borrow_mut().push(duration);
        self.now.set(self.now.get() + duration);
    }
}

#[test]
fn purges_go_in_batches_of_50_paced_by_the_rate_limits() {
    // The first request is rate limited, with a Retry-After of 7 s.
    let api = StandInApi::answering(|request, earlier| {
        if earlier == 0 {
            let mut answer = ApiAnswer::new(
                429,
                r#"{"id":"too_many_requests","message":"API Rate limit exceeded."}"#,
            );
            answer.headers.push(("Retry-After".into(), "7".into()));
            answer
        } else {
            ApiAnswer::like_digitalocean(request, 3600)
        }
    });
    let files: Vec<String> = (0..120).map(|i| format!("dists/s{i}/InRelease")).collect();
    let client = CdnApi::new(&api.url, ApiToken::new(TOKEN, TOKEN_VARIABLE).unwrap());
    let clock = FakeClock::default();
    let outcome = client.purge(ENDPOINT_ID, &files, &clock).unwrap();
    let purges = api.purges();
    let sizes: Vec<usize> = purges.iter().map(|p| p.files().len()).collect();
    assert_eq!(sizes, [50, 50, 50, 20]);
    assert_eq!(outcome.requests, 4);
    // The rate-limited batch was sent again, whole; every file once after that.
    assert_eq!(purges[0].files(), purges[1].files());
    let sent: Vec<String> = purges[1..].iter().flat_map(|p| p.files()).collect();
    assert_eq!(sent, files);
    // 7 s for the Retry-After, then 50 files per 20 s.
    let secs = |s| Duration::from_secs(s);
    assert_eq!(
        *clock.sleeps.borrow(),
        [secs(7), secs(13), secs(20), secs(20)]
    );
    assert_eq!(outcome.waited, secs(60));
    assert!(purges
        .iter()
        .all(|p| p.authorization.as_deref() == Some(format!("Bearer {TOKEN}").as_str())));
}

/// `doctor` against moto with the stand-in API answering a TTL of `ttl`: the CDN
/// check's (status, detail) and the exit code.
fn doctor_cdn_check(ttl: u64, with_token: bool) -> (String, String, Option<i32>, StandInApi) {
    let setup = CdnSetup::new("speedy-cdn-doctor", StandInApi::start(ttl));
    let env = if with_token { vec![] } else { vec![NO_TOKEN] };
    let output = setup.speedy(&["doctor", "--message-format", "json"], &env);
    assert_no_token(&output);
    let report: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "CDN cache TTL")
        .unwrap_or_else(|| panic!("no CDN check: {report}"))
        .clone();
    (
        check["status"].as_str().unwrap().to_owned(),
        check["detail"].as_str().unwrap().to_owned(),
        output.status.code(),
        setup.api,
    )
}

#[test]
fn doctor_warns_when_the_cdn_ttl_exceeds_the_grace_period() {
    // A day against the default grace period of an hour.
    let (status, detail, code, api) = doctor_cdn_check(86_400, true);
    assert_eq!(status, "warn", "{detail}");
    assert_eq!(code, Some(0), "a warning is not a failure");
    for needed in [
        "86400 s",
        "grace-period (3600 s)",
        &format!("doctl compute cdn update {ENDPOINT_ID} --ttl 3600"),
    ] {
        assert!(detail.contains(needed), "{needed:?} not in {detail}");
    }
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, format!("/v2/cdn/endpoints/{ENDPOINT_ID}"));
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    let (status, detail, _, _) = doctor_cdn_check(600, true);
    assert_eq!(status, "pass", "{detail}");
    let (status, detail, _, api) = doctor_cdn_check(600, false);
    assert_eq!(status, "warn", "{detail}");
    assert!(detail.contains("$DIGITALOCEAN_TOKEN"), "{detail}");
    assert!(api.requests().is_empty());
}

#[test]
fn bad_cdn_settings_are_refused_and_nothing_is_written() {
    let setup = CdnSetup::new("speedy-cdn-bad", StandInApi::start(3600));
    for (env, needed) in [
        (
            ("SPEEDY_DIGITALOCEAN_API", "ftp://api.example"),
            "$SPEEDY_DIGITALOCEAN_API",
        ),
        (
            (TOKEN_VARIABLE, "cdn-test-token with spaces"),
            "$DIGITALOCEAN_TOKEN",
        ),
    ] {
        let output = setup.publish("1.0-1", &[], &[env]);
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        let text = stdout(&output) + &stderr(&output);
        assert!(text.contains(needed), "{needed:?} not in {text}");
        assert_no_token(&output);
    }
    setup.fixture.edit("Cargo.toml", ENDPOINT_ID, "speedy-cdn");
    let output = setup.publish("1.0-1", &[], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stdout(&output) + &stderr(&output);
    assert!(
        text.contains("workspace.metadata.speedy.repo.spaces.cdn-endpoint-id"),
        "{text}"
    );
    assert!(
        text.contains("Cargo.toml") && text.contains("is not a CDN endpoint id"),
        "{text}"
    );
    assert!(bucket_contents(&setup.moto.store(&setup.bucket)).is_empty());
    assert!(setup.api.requests().is_empty());
}
