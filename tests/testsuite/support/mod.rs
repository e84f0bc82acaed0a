//! Shared by the integration tests: a private copy of the fixture workspace, the
//! cargo-speedy binary, and the real Debian tools; `server` boots a Debian server.

pub mod server;

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod do_api;
pub mod faulty;
pub mod load;
pub mod proxy;

/// Fixed archive timestamps, so results do not depend on git or mtimes.
pub const EPOCH: &str = "1795000000";

pub fn fixture_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/speedy")
}

/// A throw-away copy of the fixture workspace with its own target dir.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("speedy-fixture-")
            .tempdir()
            .expect("temp dir");
        copy_tree(&fixture_source(), dir.path());
        Fixture { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).expect("read fixture file")
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write fixture file");
    }

    /// Replaces exactly one occurrence of `from` in a fixture file.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert_eq!(
            text.matches(from).count(),
            1,
            "{rel} should contain {from:?} once"
        );
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// Declares `secrets` on one service of the fixture (`speedy-app`, `speedy-jobs`…).
    pub fn declare_secrets(&self, package: &str, names: &[&str]) {
        let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        self.edit(
            &format!("{package}/Cargo.toml"),
            "[package.metadata.speedy]\n",
            &format!(
                "[package.metadata.speedy]\nsecrets = [{}]\n",
                list.join(", ")
            ),
        );
    }

    /// Sets the workspace version (`[workspace.package] version`) that every service
    /// inherits.
    pub fn set_version(&self, version: &str) {
        let text = self.read("Cargo.toml");
        let start = text.find("\nversion = \"").expect("workspace version") + 1;
        let end = start + text[start..].find('\n').expect("end of the version line");
        self.write(
            "Cargo.toml",
            &format!("{}version = \"{version}\"{}", &text[..start], &text[end..]),
        );
    }

    pub fn debs_dir(&self) -> PathBuf {
        self.path("target/speedy/debs")
    }

    /// The .deb files in target/speedy/debs, sorted.
    pub fn debs(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.debs_dir()) else {
            return Vec::new();
        };
        let mut debs: Vec<PathBuf> = entries
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        debs.sort();
        debs
    }

    /// Every file below target/speedy/debs, including hidden scratch dirs.
    pub fn everything_in_debs_dir(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        if self.debs_dir().exists() {
            walk(&self.debs_dir(), &mut found);
        }
        found
    }

    pub fn deb(&self, name: &str) -> PathBuf {
        self.debs_dir().join(format!("{name}_1.4.0-1_amd64.deb"))
    }

    /// Runs `cargo speedy ARGS` in the fixture root.
    pub fn speedy(&self, args: &[&str]) -> Output {
        speedy_in(self.root(), args, &[])
    }

    pub fn speedy_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        speedy_in(self.root(), args, env)
    }

    /// `cargo speedy build`, which must succeed.
    pub fn build(&self) -> Vec<PathBuf> {
        let output = self.speedy(&["build", "--quiet"]);
        assert_success(&output);
        self.debs()
    }
}

/// Every file and directory below `dir`, depth first.
pub fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            walk(&path, found);
        }
        found.push(path);
    }
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let source = entry.path();
        let dest = to.join(&name);
        if source.is_dir() {
            copy_tree(&source, &dest);
        } else {
            std::fs::copy(&source, &dest).expect("copy");
        }
    }
}

pub fn speedy_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-speedy"));
    command
        .arg("speedy")
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", EPOCH);
    command.env_remove("CARGO_TARGET_DIR");
    // A developer's real DigitalOcean token never reaches a test: only a test that
    // sets it (and points the API at a stand-in on 127.0.0.1) has one.
    for variable in [
        "DIGITALOCEAN_TOKEN",
        "DIGITALOCEAN_ACCESS_TOKEN",
        "SPEEDY_DIGITALOCEAN_API",
    ] {
        command.env_remove(variable);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run cargo-speedy")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "command failed: {}",
        describe(output)
    );
}

/// Runs a command that must succeed and returns its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    stdout(&run_output(program, args))
}

/// Runs a command that must succeed and returns its stdout as bytes.
pub fn run_bytes(program: &str, args: &[&str]) -> Vec<u8> {
    run_output(program, args).stdout
}

fn run_output(program: &str, args: &[&str]) -> Output {
    let output = tool_output(Command::new(program).args(args));
    assert_success(&output);
    output
}

pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    format!("{:x}", Sha256::digest(bytes))
}

/// Extracts a .deb's data and control parts into a temp dir: `root/` and `DEBIAN/`.
pub struct Unpacked {
    pub dir: tempfile::TempDir,
}

impl Unpacked {
    pub fn new(deb: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let deb = deb.to_str().expect("utf-8 path");
        let root = dir.path().join("root");
        let control = dir.path().join("DEBIAN");
        run("dpkg-deb", &["-x", deb, root.to_str().expect("utf-8")]);
        run("dpkg-deb", &["-e", deb, control.to_str().expect("utf-8")]);
        Unpacked { dir }
    }

    pub fn file(&self, path: &str) -> String {
        let full = self
            .dir
            .path()
            .join("root")
            .join(path.trim_start_matches('/'));
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    pub fn control(&self, name: &str) -> String {
        let full = self.dir.path().join("DEBIAN").join(name);
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    pub fn control_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("DEBIAN").join(name)
    }
}

/// Fields of a deb822 paragraph (first paragraph only), continuation lines joined.
pub fn control_fields(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') {
            if let Some(key) = &last {
                let value: &mut String = fields.get_mut(key).expect("field");
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        let (key, value) = line.split_once(':').expect("field line");
        fields.insert(key.to_owned(), value.trim().to_owned());
        last = Some(key.to_owned());
    }
    fields
}

/// Gunzips an index (cargo-speedy writes Packages.gz; the plain Packages is only
/// listed in Release).
pub fn gunzip_text(bytes: &[u8]) -> String {
    String::from_utf8(cargo_speedy::repo::plan::gunzip(bytes, None).expect("gzip")).expect("UTF-8")
}

/// Gzips text, to tamper with an index.
pub fn gzip_text(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("gzip");
    encoder.finish().expect("gzip")
}

/// The Packages index of `suite` for `arch` in a local repository, as text.
pub fn packages_text(repo: &Path, suite: &str, arch: &str) -> String {
    let path = repo.join(format!("dists/{suite}/main/binary-{arch}/Packages.gz"));
    gunzip_text(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// SHA256 of every file below `dir`, by relative path: "byte-identical" in one value.
pub fn tree_hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut files = Vec::new();
    if dir.exists() {
        walk(dir, &mut files);
    }
    files
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.strip_prefix(dir).unwrap().display().to_string(),
                sha256_file(&p),
            )
        })
        .collect()
}

/// A real apt client with its own state, pointed at one repository; the host's apt
/// configuration and state are untouched.
pub struct Apt {
    pub dir: tempfile::TempDir,
}

impl Apt {
    /// `source` is a one-line sources.list entry, e.g. `deb [signed-by=K] file:/repo dev main`.
    pub fn new(source: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["lists/partial", "cache/archives/partial", "etc"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::write(dir.path().join("etc/sources.list"), format!("{source}\n"))
            .expect("sources.list");
        Apt { dir }
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.path().display();
        vec![
            format!("-oDir::Etc::SourceList={d}/etc/sources.list"),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::Cache={d}/cache"),
            "-oDir::State::status=/dev/null".into(),
            "-oDebug::NoLocking=1".into(),
            // The test's temp dirs are not readable by _apt.
            "-oAPT::Sandbox::User=root".into(),
            "-oAcquire::Retries=0".into(),
        ]
    }

    /// Runs apt-get or apt-cache with the isolating options; (success, stdout+stderr).
    pub fn run(&self, tool: &str, args: &[&str]) -> (bool, String) {
        let output = Command::new(tool)
            .args(self.options())
            .args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool} (apt is installed on Debian): {e}"));
        (
            output.status.success(),
            format!("{}{}", stdout(&output), stderr(&output)),
        )
    }

    pub fn update(&self) -> (bool, String) {
        let (ok, text) = self.run("apt-get", &["update"]);
        // apt-get update exits 0 on some fetch failures; its W:/E: lines tell.
        let clean = ok
            && !text
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W:") || l.starts_with("Err:"));
        (clean, text)
    }

    /// The candidate version of a package, or None.
    pub fn candidate(&self, package: &str) -> Option<String> {
        let (_, text) = self.run("apt-cache", &["policy", package]);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("Candidate: "))
            .filter(|v| *v != "(none)")
            .map(str::to_owned)
    }

    /// Downloads a package into the client's directory and returns its path.
    pub fn download(&self, spec: &str) -> PathBuf {
        let (ok, text) = self.run("apt-get", &["download", spec]);
        assert!(ok, "apt-get download {spec} failed:\n{text}");
        let name = spec.split('=').next().unwrap();
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{name}_"))
            })
            .expect("downloaded .deb")
    }
}

extern "C" {
    fn prctl(option: i32, ...) -> i32;
    fn getppid() -> i32;
}
const PR_SET_PDEATHSIG: i32 = 1;
pub const SIGTERM: u64 = 15;
pub const SIGKILL: u64 = 9;

/// Makes `command`'s process get `signal` when the thread that spawns it ends (the
/// kernel's "parent death" is the death of the spawning thread), so a server outlives
/// neither its owner nor a test process that is killed.
pub fn signal_when_spawning_thread_ends(command: &mut Command, signal: u64) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as i32;
    // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated.
    unsafe {
        command.pre_exec(move || {
            if prctl(PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl: then nobody will signal.
            if getppid() != parent {
                return Err(std::io::Error::other("the test process is gone"));
            }
            Ok(())
        });
    }
}

/// A real S3-compatible server (moto in server mode) on 127.0.0.1, stopped on drop.
/// `.ci/deps` installs it in `.venv/`; SPEEDY_MOTO_SERVER names another binary.
/// Tests share one, [`MotoServer::shared`], with a bucket each
/// ([`MotoServer::new_bucket`]); a test that changes the server's own settings starts
/// its own with [`MotoServer::start_with`].
pub struct MotoServer {
    child: std::process::Child,
    pub port: u16,
}

impl MotoServer {
    /// The moto server of the whole test run, started on first use and killed when the
    /// test process ends. Never reset it (that wipes every test's buckets): take a
    /// bucket of your own with [`MotoServer::new_bucket`].
    pub fn shared() -> &'static MotoServer {
        static SHARED: std::sync::OnceLock<MotoServer> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            // Started from a thread that lives as long as the process, so that the
            // parent-death signal comes when the process ends, not when the test that
            // happened to start it does. A static is never dropped.
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("shared-moto".into())
                .spawn(move || {
                    let _ = sender.send(std::panic::catch_unwind(|| MotoServer::start_with(&[])));
                    loop {
                        std::thread::park();
                    }
                })
                .expect("a thread for the shared moto server");
            match receiver
                .recv()
                .expect("the shared moto server's thread answers")
            {
                Ok(server) => server,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Creates a bucket no other test of this run has: `PREFIX-N`.
    pub fn new_bucket(&self, prefix: &str) -> String {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let bucket = format!(
            "{prefix}-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        self.create_bucket(&bucket);
        bucket
    }

    /// A server of the calling test's own, with environment for moto, e.g.
    /// INITIAL_NO_AUTH_ACTION_COUNT to make it check credentials after that many
    /// requests. Stopped on drop, or when the thread that started it ends.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let exe = std::env::var_os("SPEEDY_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"));
        let mut command = Command::new(&exe);
        command
            .args(["-H", "127.0.0.1", "-p", "0"])
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        signal_when_spawning_thread_ends(&mut command, SIGKILL);
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (run .ci/deps to install moto): {e}",
                exe.display()
            )
        });
        let stderr = child.stderr.take().expect("stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(port) = digits.parse::<u16>() {
                        let _ = sender.send(port);
                    }
                }
            }
        });
        let port = match receiver.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto_server did not report its port within 60 s");
            }
        };
        MotoServer { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts unsigned requests; us-east-1 needs no location).
    pub fn create_bucket(&self, bucket: &str) {
        let status = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "PUT",
                &format!("{}/{bucket}", self.endpoint()),
            ])
            .output()
            .expect("curl");
        assert_eq!(stdout(&status), "200", "create bucket {bucket}");
    }

    /// An anonymous GET, as apt does it: (HTTP status, headers and body).
    pub fn anonymous_get(&self, path: &str) -> (u16, String) {
        let output = Command::new("curl")
            .args(["-s", "-i", &format!("{}/{path}", self.endpoint())])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    /// A store on a bucket of this server, as the library opens one.
    pub fn store(&self, bucket: &str) -> cargo_speedy::store::s3::S3Store {
        use cargo_speedy::store::s3::{Credentials, S3Config, S3Store};
        let mut config = S3Config::spaces(bucket, "us-east-1");
        config.endpoint = self.endpoint();
        config.path_style = true;
        S3Store::new(
            config,
            Credentials::new(TEST_CREDENTIALS[0].1, TEST_CREDENTIALS[1].1),
        )
        .expect("an S3 store")
    }

    /// The command-line flags that point cargo speedy at a bucket of this server.
    pub fn flags(&self, bucket: &str) -> Vec<String> {
        vec![
            "--bucket".into(),
            bucket.into(),
            "--region".into(),
            "us-east-1".into(),
            "--endpoint".into(),
            self.endpoint(),
            "--addressing".into(),
            "path".into(),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every object of a store with a hash of its bytes: "nothing written" in one value.
pub fn bucket_contents(store: &dyn cargo_speedy::store::Store) -> BTreeMap<String, String> {
    store
        .list("")
        .expect("list")
        .into_iter()
        .map(|m| {
            let bytes = store.get(&m.key).expect("get").expect("listed");
            (m.key, cargo_speedy::repo::plan::sha256_hex(&bytes))
        })
        .collect()
}

/// Credentials for moto, which accepts any.
pub const TEST_CREDENTIALS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "speedy-test"),
    ("AWS_SECRET_ACCESS_KEY", "speedy-test-secret"),
];

/// A minimal valid .deb made by dpkg-deb, for tests that need many packages quickly.
pub fn tiny_deb(dir: &Path, name: &str, version: &str) -> PathBuf {
    tiny_deb_for(dir, name, version, "all")
}

/// Like [`tiny_deb`], for one architecture.
pub fn tiny_deb_for(dir: &Path, name: &str, version: &str, architecture: &str) -> PathBuf {
    let tree = dir.join(format!("{name}-{version}-{architecture}-tree"));
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(tree.join(format!("usr/share/doc/{name}"))).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!("Package: {name}\nVersion: {version}\nArchitecture: {architecture}\nMaintainer: Speedy Test <test@speedy.example>\nDescription: test package {name}\n"),
    )
    .unwrap();
    std::fs::write(
        tree.join(format!("usr/share/doc/{name}/version")),
        format!("{version}\n"),
    )
    .unwrap();
    let deb = dir.join(format!("{name}_{version}_{architecture}.deb"));
    run(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "-Zgzip",
            "--build",
            tree.to_str().unwrap(),
            deb.to_str().unwrap(),
        ],
    );
    deb
}

/// Repository settings for tests that call the publish library directly: the
/// defaults (suites dev and stable, a grace period of 1h), amd64, `retention`.
pub fn repo_config(retention: usize) -> cargo_speedy::config::RepoConfig {
    use cargo_speedy::config::{RepoConfig, RepoMetadata, WorkspaceMetadata};
    let workspace = WorkspaceMetadata {
        repo: Some(RepoMetadata {
            retention: Some(retention),
            architectures: Some(vec!["amd64".into()]),
            ..RepoMetadata::default()
        }),
        ..WorkspaceMetadata::default()
    };
    RepoConfig::resolve(
        &workspace,
        Path::new("/ws"),
        Path::new("/ws/Cargo.toml"),
        Path::new("/ws/target"),
    )
    .expect("valid test settings")
}

/// What differs between the publishes tests run through the library: the lock
/// options, the retention and the clock.
pub struct PublishOptions {
    pub lock: cargo_speedy::publish::lock::LockOptions,
    pub retention: usize,
    pub now: fn() -> u64,
}

impl Default for PublishOptions {
    /// The default lock, a retention of 5, the system clock.
    fn default() -> Self {
        PublishOptions {
            lock: Default::default(),
            retention: 5,
            now: cargo_speedy::clock::now,
        }
    }
}

/// Publishes `debs` to the suite dev of `store` through the library, as `cargo
/// speedy publish` does, silently.
pub fn publish(
    store: &dyn cargo_speedy::store::Store,
    key: &cargo_speedy::sign::SigningKey,
    debs: &[cargo_speedy::publish::IncomingDeb],
    options: PublishOptions,
) -> Result<cargo_speedy::publish::PublishReport, cargo_speedy::publish::PublishError> {
    cargo_speedy::publish::Publish {
        store,
        key: &cargo_speedy::sign::RepoKeys::new(key.clone(), None),
        suite: "dev".into(),
        config: &repo_config(options.retention),
        lock: options.lock,
        dry_run: false,
        change_origin: false,
        command: "publish",
        now: &options.now,
    }
    .run(debs, &cargo_speedy::listener::SilentListener)
}

/// A fresh Ed25519 signing key made at `created` (unix seconds).
pub fn test_signing_key(created: u64) -> cargo_speedy::sign::SigningKey {
    cargo_speedy::sign::SigningKey::generate(&cargo_speedy::sign::KeyParams {
        algorithm: cargo_speedy::sign::KeyAlgorithm::Ed25519,
        user_id: "Speedy Test <test@speedy.example>".into(),
        passphrase: None,
        created,
    })
    .expect("generate a test key")
}

/// The Debian package that provides a program the tests run (`.ci/deps` installs them).
fn debian_package(program: &str) -> &str {
    match program {
        "apt-get" | "apt-cache" => "apt",
        "dpkg-deb" => "dpkg",
        "gpg" | "gpgconf" => "gnupg",
        // gpgv, sqv, debsig-verify, lintian, curl: the package has the program's name.
        other => other,
    }
}

/// Runs a command and returns its output, for a test that inspects a failure; a
/// missing program fails the test naming the Debian package to install.
pub fn tool_output(command: &mut Command) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {program}: {e} (install it: apt-get install -y {}; .ci/deps does)",
            debian_package(&program)
        )
    })
}

/// A command's exit status, stdout and stderr, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    )
}

/// Asserts that a command failed saying `message` (on stdout or stderr): failing for
/// another reason does not pass.
pub fn assert_fails_with(output: &Output, message: &str) {
    assert!(
        !output.status.success() && (stdout(output) + &stderr(output)).contains(message),
        "expected a failure saying {message:?}, got: {}",
        describe(output)
    );
}

/// Creates a directory only its owner may enter, as gpg wants of its home directory.
pub fn create_private_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
}

/// Exit statuses documented in debsig-verify(1).
pub const DEBSIG_NO_ORIGIN_SIGNATURE: i32 = 10;
pub const DEBSIG_NO_POLICY_FOR_KEY: i32 = 11;
pub const DEBSIG_NO_APPLICABLE_POLICY: i32 = 12;
pub const DEBSIG_VERIFICATION_FAILED: i32 = 13;

/// The real debsig-verify with its own policies and keyrings in a temp dir, as an
/// operator installs them under /etc/debsig/policies and /usr/share/debsig/keyrings.
pub struct Debsig {
    pub dir: tempfile::TempDir,
}

impl Debsig {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // A GNUPGHOME that keeps gpg away from the invoking user's ~/.gnupg.
        create_private_dir(&dir.path().join("gnupg"));
        Debsig { dir }
    }

    /// Installs a policy and its keyring at paths relative to the policies and
    /// keyrings directories (e.g. `KEYID/speedy.pol`, `KEYID/debsig.gpg`).
    pub fn trust(&self, policy_path: &str, policy: &str, keyring_path: &str, keyring: &[u8]) {
        for (path, contents) in [
            (
                self.dir.path().join("policies").join(policy_path),
                policy.as_bytes(),
            ),
            (self.dir.path().join("keyrings").join(keyring_path), keyring),
        ] {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, contents).expect("write debsig trust");
        }
    }

    /// `debsig-verify --verbose DEB`; the caller inspects the exit status.
    pub fn verify(&self, deb: &Path) -> Output {
        let dir = self.dir.path();
        tool_output(
            Command::new("debsig-verify")
                .env("GNUPGHOME", dir.join("gnupg"))
                .arg("--verbose")
                .arg("--policies-dir")
                .arg(dir.join("policies"))
                .arg("--keyrings-dir")
                .arg(dir.join("keyrings"))
                .arg(deb),
        )
    }
}

/// What apt's SplitClearSignedFile hands to the verifier: the message lines,
/// dash-escaping removed, joined by LF without a final line break (apt does not trim
/// whitespace), and the signature block as a detached signature.
pub fn split_like_apt(inrelease: &str) -> (String, String) {
    let mut lines = inrelease.lines();
    assert_eq!(lines.next(), Some("-----BEGIN PGP SIGNED MESSAGE-----"));
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        assert!(line.starts_with("Hash: "), "{line}");
    }
    let mut content = Vec::new();
    for line in lines.by_ref() {
        if line == "-----BEGIN PGP SIGNATURE-----" {
            break;
        }
        content.push(line.strip_prefix("- ").unwrap_or(line));
    }
    let mut signature = String::from("-----BEGIN PGP SIGNATURE-----\n");
    for line in lines {
        signature.push_str(line);
        signature.push('\n');
    }
    (content.join("\n"), signature)
}
