//! Servers joining the fleet and following it, on booted Debian servers (systemd as
//! PID 1 in systemd-nspawn): `server-setup` makes a server of each role, running it
//! again changes nothing, unattended-upgrades brings the next release, and a key
//! rotation is followed through apt alone.
//!
//! Needs root, systemd-nspawn, nsenter, debootstrap, gpgv, sqv and cloud-init
//! (`.ci/deps` installs them); see tests/testsuite/support/server.rs for the harness.

use crate::support::server::{
    archive_key, fixture_on_a_free_port, BootedServer, RepoHttpServer, SUITE,
};
use crate::support::*;
use std::path::{Path, PathBuf};

const KEYRING_PACKAGE: &str = "speedy-archive-keyring";
const KEYRING_PATH: &str = "/usr/share/keyrings/speedy-archive-keyring.gpg";
/// What server-setup writes, besides the keyring: none may change on a second run.
const SETUP_FILES: [&str; 6] = [
    KEYRING_PATH,
    "/etc/apt/sources.list.d/speedy.sources",
    "/etc/apt/preferences.d/speedy.pref",
    "/etc/apt/apt.conf.d/50speedy-rollback",
    "/etc/apt/apt.conf.d/52speedy-unattended-upgrades",
    "/etc/hosts",
];

/// A fixture repository on disk, served over HTTP, and how to run cargo speedy on it.
struct Fleet {
    fixture: Fixture,
    port: u16,
    repo: tempfile::TempDir,
    http: RepoHttpServer,
}

impl Fleet {
    fn new() -> Self {
        let (fixture, port) = fixture_on_a_free_port();
        let repo = tempfile::tempdir().expect("temp dir");
        let http = RepoHttpServer::serve(repo.path());
        Fleet {
            fixture,
            port,
            repo,
            http,
        }
    }

    /// Runs cargo speedy on the repository; it must succeed. Returns stdout.
    fn speedy(&self, args: &[&str], key: Option<&Path>) -> String {
        stdout(&self.speedy_env(args, key, &[]))
    }

    /// Like [`speedy`](Self::speedy), with `env` added to cargo speedy's environment;
    /// returns the whole output.
    fn speedy_env(
        &self,
        args: &[&str],
        key: Option<&Path>,
        env: &[(&str, &str)],
    ) -> std::process::Output {
        let mut all = args.to_vec();
        all.extend(["--repo-dir", self.repo.path().to_str().unwrap()]);
        if let Some(key) = key {
            all.extend(["--key-file", key.to_str().unwrap()]);
        }
        let output = self.fixture.speedy_env(&all, env);
        assert_success(&output);
        output
    }

    /// `release --suite dev` of the workspace at `version`.
    fn release(&self, version: &str, key: Option<&Path>) {
        self.fixture.set_version(version);
        self.speedy(&["release", "--quiet", "--suite", "dev"], key);
    }

    /// The setup of `role` for servers that reach the repository over HTTP.
    fn setup(&self, role: &str, db_host: &str, format: &str, key: Option<&Path>) -> String {
        self.speedy(
            &[
                "server-setup",
                "--role",
                role,
                "--db-host",
                db_host,
                "--url",
                &self.http.url,
                "--format",
                format,
            ],
            key,
        )
    }

    fn in_release(&self) -> PathBuf {
        self.repo.path().join("dists/dev/InRelease")
    }
}

fn installed(server: &BootedServer, name: &str) -> Option<String> {
    let output = server.exec(&[
        "dpkg-query",
        "-W",
        "-f",
        "${db:Status-Status} ${Version}",
        name,
    ]);
    let text = stdout(&output);
    text.strip_prefix("installed ").map(str::to_owned)
}

/// Runs a setup script on the server as root; it must succeed.
fn run_setup(server: &BootedServer, script: &str) -> String {
    server.write_file("/root/speedy-server-setup", script.as_bytes(), 0o755);
    server.exec_ok(&["/root/speedy-server-setup"])
}

/// Takes apt's lists lock in `server` for `seconds`, the way apt does (an fcntl
/// write lock on /var/lib/apt/lists/lock), and returns once it is held.
fn hold_apt_lists_lock(server: &BootedServer, seconds: u32) {
    let held = "/run/speedy-test-apt-lock-held";
    let holder = format!(
        "use Fcntl; open(my $lock, '+>>', '/var/lib/apt/lists/lock') or die $!; \
         my $flock = pack('ssx4qqix4', F_WRLCK, 0, 0, 0, 0); \
         fcntl($lock, F_SETLKW, $flock) or die $!; \
         open(my $held, '>', '{held}') or die $!; close($held); sleep {seconds}; unlink '{held}'"
    );
    server.exec_ok(&["systemd-run", "--quiet", "--collect", "perl", "-e", &holder]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.exists(held) {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock holder did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Contents and modification time of every file server-setup writes.
fn setup_state(server: &BootedServer) -> String {
    let mut state = String::new();
    for path in SETUP_FILES
        .iter()
        .chain(["/etc/speedy/jobs.disabled"].iter())
    {
        let output = server.exec(&["stat", "-c", "%n %Y %s %a", path]);
        state.push_str(&stdout(&output));
        let sum = server.exec(&["sha256sum", path]);
        state.push_str(&stdout(&sum));
    }
    state.push_str(&server.exec_ok(&[
        "dpkg-query",
        "-W",
        "-f",
        "${Package} ${Version} ${db:Status-Status}\n",
    ]));
    state
}

/// Every entry under /etc with its modification time, one per line.
fn etc_mtimes(server: &BootedServer) -> String {
    server.exec_ok(&["find", "/etc", "-printf", "%p %T@\\n"])
}

fn assert_db_resolves_to(server: &BootedServer, address: &str) {
    let resolved = server.exec_ok(&["getent", "hosts", "db"]);
    assert_eq!(
        resolved.split_whitespace().next(),
        Some(address),
        "`getent hosts db` on the server: {resolved}"
    );
    // First in /etc/hosts, so nothing below can shadow it.
    let hosts = server.exec_ok(&["cat", "/etc/hosts"]);
    let first = hosts
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    assert_eq!(first, format!("{address} db"), "/etc/hosts:\n{hosts}");
}

/// The `single` role from the script: everything runs, `db` resolves, the server is
/// a jobs host; a second run changes nothing; the next release arrives through
/// unattended-upgrades.
#[test]
fn server_setup_makes_a_single_server_that_upgrades_unattended() {
    let fleet = Fleet::new();
    let (_keys, key, _keyring) = archive_key(&fleet.fixture);
    fleet.release("1.4.0", Some(&key));
    let script = fleet.setup("single", "127.0.0.5", "script", Some(&key));

    let server = BootedServer::boot(SUITE);
    run_setup(&server, &script);
    for unit in ["speedy-app.service", "speedy-notifier.service"] {
        server.wait_active(unit);
    }
    let timers = server.systemctl(&["list-timers", "--all", "--no-legend"]);
    assert!(timers.contains("speedy-jobs-trending.timer"), "{timers}");
    assert!(!server.exists("/etc/speedy/jobs.disabled"), "a jobs host");
    assert_db_resolves_to(&server, "127.0.0.5");
    assert!(
        installed(&server, KEYRING_PACKAGE).is_some(),
        "the keyring package"
    );
    let owner = server.exec_ok(&["dpkg", "-S", KEYRING_PATH]);
    assert!(owner.starts_with(KEYRING_PACKAGE), "{owner}");
    let mode = server.exec_ok(&["stat", "-c", "%a", KEYRING_PATH]);
    assert_eq!(mode.trim(), "644", "apt reads the keyring as _apt");
    let health = server.http("GET", &format!("http://127.0.0.1:{}/healthz", fleet.port));
    assert_eq!(health.status, 200);

    // Twice: nothing changes, not even a modification time, of any file or directory
    // under /etc (a temporary file created beside its target and removed again
    // would change its directory's). This time another apt holds the lists' lock
    // (as apt-daily may on a droplet just booted): the script waits for it.
    let before = setup_state(&server);
    let etc_before = etc_mtimes(&server);
    hold_apt_lists_lock(&server, 6);
    let started = std::time::Instant::now();
    let second = server.exec(&["/root/speedy-server-setup"]);
    assert!(
        second.status.success()
            && stderr(&second).contains("another apt is running; apt-get update waits for it")
            && started.elapsed() >= std::time::Duration::from_secs(3),
        "the setup while the lists' lock was held ({:?}): {}",
        started.elapsed(),
        describe(&second)
    );
    assert_eq!(
        setup_state(&server),
        before,
        "the second run changed something"
    );
    let etc_after = etc_mtimes(&server);
    let changed: Vec<String> = etc_after
        .lines()
        .filter(|line| !etc_before.lines().any(|l| l == *line))
        .map(str::to_owned)
        .collect();
    assert!(
        changed.is_empty(),
        "the second run changed the modification time of (now): {changed:?}"
    );
    assert_eq!(etc_before.lines().count(), etc_after.lines().count());

    // The next release reaches the server through unattended-upgrades alone.
    fleet.release("1.4.1", Some(&key));
    server.apt_update();
    let run = server.exec_ok(&["unattended-upgrade", "-v"]);
    assert_eq!(
        installed(&server, "speedy-app").as_deref(),
        Some("1.4.1-1"),
        "unattended-upgrade:\n{run}\n{}",
        server.exec_ok(&[
            "sh",
            "-c",
            "cat /var/log/unattended-upgrades/unattended-upgrades.log 2>/dev/null || true"
        ])
    );
    assert_eq!(server.app_version(), "speedy-app 1.4.1");
    server.wait_active("speedy-app.service");
    drop(server);
}

/// The `web` and `worker` roles from cloud-init user data (what a new droplet gets):
/// only their packages, the jobs flag where the role does not run jobs, `db`
/// pointing at the database server.
#[test]
fn cloud_init_user_data_makes_web_and_worker_servers() {
    let fleet = Fleet::new();
    let (_keys, key, _keyring) = archive_key(&fleet.fixture);
    fleet.release("1.4.0", Some(&key));

    for (role, jobs) in [("web", false), ("worker", true)] {
        let user_data = fleet.setup(role, "127.0.0.5", "cloud-init", Some(&key));
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("user-data");
        std::fs::write(&file, &user_data).expect("write user data");
        assert_valid_cloud_config(&file);
        // What cloud-init does with it: write the file, run the command.
        let (path, content, command) = cloud_init_script(&file);
        assert_eq!(command, path, "runcmd runs the script it wrote");

        let server = BootedServer::boot(SUITE);
        server.write_file(&path, content.as_bytes(), 0o755);
        server.exec_ok(&[&path]);
        assert_db_resolves_to(&server, "127.0.0.5");
        assert_eq!(server.exists("/etc/speedy/jobs.disabled"), !jobs, "{role}");
        match role {
            "web" => {
                server.wait_active("speedy-app.service");
                assert_eq!(installed(&server, "speedy-notifier"), None);
                assert_eq!(installed(&server, "speedy-jobs"), None);
            }
            _ => {
                server.wait_active("speedy-notifier.service");
                assert_eq!(installed(&server, "speedy-app"), None);
                let timers = server.systemctl(&["list-timers", "--all", "--no-legend"]);
                assert!(timers.contains("speedy-jobs-trending.timer"), "{timers}");
            }
        }
        drop(server);
    }
}

/// `cloud-init schema` accepts the user data in `file`.
pub(crate) fn assert_valid_cloud_config(file: &Path) {
    let schema = tool_output(
        std::process::Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(file),
    );
    assert!(
        schema.status.success(),
        "cloud-init schema: {}",
        describe(&schema)
    );
}

/// (path, content, runcmd's command) of the user data, read with a YAML parser.
pub(crate) fn cloud_init_script(user_data: &Path) -> (String, String, String) {
    let program = r#"
import json, sys, yaml
data = yaml.safe_load(open(sys.argv[1]))
entry = data["write_files"][0]
print(json.dumps([entry["path"], entry["content"], data["runcmd"][0][0], entry["permissions"]]))
"#;
    let output = tool_output(
        std::process::Command::new("python3")
            .args(["-c", program])
            .arg(user_data),
    );
    assert!(output.status.success(), "{}", describe(&output));
    let parsed: Vec<String> = serde_json::from_str(&stdout(&output)).expect("json");
    // Root's only: with secrets declared, the script holds their values.
    assert_eq!(parsed[3], "0700");
    (parsed[0].clone(), parsed[1].clone(), parsed[2].clone())
}

/// The procedure of docs/operations.md, "Rotating the signing key": a server set up
/// with only the old key follows the rotation through apt alone and then accepts a repository
/// signed only by the new key; while both keys sign, gpgv and sqv accept InRelease
/// and Release.gpg with either key alone.
#[test]
fn a_key_rotation_is_followed_through_apt() {
    let fleet = Fleet::new();
    let keys = tempfile::tempdir().expect("temp dir");
    let now = cargo_speedy::clock::now();
    let write_key = |name: &str, created: u64| -> (PathBuf, PathBuf) {
        let key = test_signing_key(created);
        let secret = keys.path().join(format!("{name}.asc"));
        std::fs::write(&secret, key.to_armored().unwrap()).unwrap();
        let public = keys.path().join(format!("{name}.gpg"));
        std::fs::write(&public, key.public_key().to_binary().unwrap()).unwrap();
        (secret, public)
    };
    let (old, old_public) = write_key("old", now - 86_400);
    let (new, new_public) = write_key("new", now - 60);
    let signing = |key_file: &Path, next: Option<&Path>| {
        let mut table = format!(
            "\n[workspace.metadata.speedy.signing]\nkey-file = \"{}\"\n",
            key_file.display()
        );
        if let Some(next) = next {
            table.push_str(&format!("next-key-file = \"{}\"\n", next.display()));
        }
        let text = fleet.fixture.read("Cargo.toml");
        let base = text
            .split("\n[workspace.metadata.speedy.signing]")
            .next()
            .unwrap()
            .to_owned();
        fleet.fixture.write("Cargo.toml", &(base + &table));
    };

    // Before: the old key alone, and a server that trusts only it.
    signing(&old, None);
    fleet.release("1.4.0", None);
    let script = fleet.setup("web", "127.0.0.5", "script", None);
    let server = BootedServer::boot(SUITE);
    run_setup(&server, &script);
    server.wait_active("speedy-app.service");
    let trusted = |server: &BootedServer| server.exec_ok(&["sha256sum", KEYRING_PATH]);
    assert!(trusted(&server).starts_with(&sha256_file(&old_public)));

    // 1. Add the new key and publish: both sign, the keyring package carries both.
    signing(&old, Some(&new));
    fleet.release("1.4.1", None);
    for public in [&old_public, &new_public] {
        assert_verifies_alone(fleet.repo.path(), &fleet.in_release(), public);
    }
    // The keyring published beside the repository holds both keys, and verifies it.
    let published = fleet.repo.path().join("archive-keyring.gpg");
    fleet.speedy(&["verify", "--keyring", published.to_str().unwrap()], None);
    // 2. Servers follow through apt: the new keyring arrives with the upgrade.
    server.apt_update();
    server.apt_get(&["upgrade"]);
    let both = keys.path().join("both.gpg");
    std::fs::write(
        &both,
        [
            std::fs::read(&old_public).unwrap(),
            std::fs::read(&new_public).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    assert!(
        trusted(&server).starts_with(&sha256_file(&both)),
        "the server's keyring holds both keys after the upgrade"
    );

    // 3. Drop the old key: the repository is signed by the new key alone, and the
    //    server, which never saw a key but through apt, still updates.
    signing(&new, None);
    fleet.release("1.4.2", None);
    let gpgv_old = tool_output(
        std::process::Command::new("gpgv")
            .arg("--keyring")
            .arg(&old_public)
            .arg(fleet.in_release()),
    );
    assert!(!gpgv_old.status.success(), "the old key no longer signs");
    server.apt_update();
    server.apt_get(&["upgrade"]);
    assert_eq!(installed(&server, "speedy-app").as_deref(), Some("1.4.2-1"));
    assert!(
        trusted(&server).starts_with(&sha256_file(&new_public)),
        "the old key is gone from the server's keyring"
    );
    server.apt_update();
    drop(server);
}

/// gpgv and sqv accept InRelease and Release.gpg with `keyring` alone, and so does
/// bookworm's apt (gpgv). gpgv exits non-zero for the signature whose key it lacks,
/// so, like apt, it is read by its status lines: a VALIDSIG of the key and no BADSIG.
fn assert_verifies_alone(repo: &Path, in_release: &Path, keyring: &Path) {
    let release = repo.join("dists/dev/Release");
    let detached = repo.join("dists/dev/Release.gpg");
    let fingerprint = cargo_speedy::sign::PublicKey::from_bytes(
        &std::fs::read(keyring).expect("read keyring"),
        "keyring",
    )
    .expect("a key")
    .fingerprint();
    let gnupghome = tempfile::tempdir().expect("temp dir");
    let gpgv = |args: &[&Path]| {
        let output = tool_output(
            std::process::Command::new("gpgv")
                .arg("--homedir")
                .arg(gnupghome.path())
                .args(["--status-fd", "1", "--keyring"])
                .arg(keyring)
                .args(args),
        );
        let status = stdout(&output);
        assert!(
            status.contains(&format!("[GNUPG:] VALIDSIG {fingerprint}"))
                && !status.contains("BADSIG"),
            "gpgv with {}: {}",
            keyring.display(),
            describe(&output)
        );
    };
    gpgv(&[in_release]);
    gpgv(&[&detached, &release]);
    let sqv = |args: &[&Path]| {
        let output = tool_output(
            std::process::Command::new("sqv")
                .arg("--keyring")
                .arg(keyring)
                .args(args),
        );
        assert!(
            output.status.success(),
            "sqv with {}: {}",
            keyring.display(),
            describe(&output)
        );
    };
    // sqv takes the signature first, then the data; InRelease split the way apt does.
    sqv(&[&detached, &release]);
    let (content, signature) =
        split_like_apt(&std::fs::read_to_string(in_release).expect("read InRelease"));
    let split = tempfile::tempdir().expect("temp dir");
    let (content_file, signature_file) = (split.path().join("content"), split.path().join("sig"));
    std::fs::write(&content_file, content).expect("write");
    std::fs::write(&signature_file, signature).expect("write");
    sqv(&[&signature_file, &content_file]);

    let apt = Apt::new(&format!(
        "deb [signed-by={}] file:{} dev main",
        keyring.display(),
        repo.display()
    ));
    let (clean, text) = apt.update();
    assert!(
        clean,
        "bookworm's apt with {} alone:\n{text}",
        keyring.display()
    );
}

/// A secret no .deb and no repository file holds: it contains every character
/// systemd's EnvironmentFile= syntax or the shell could take for its own.
const SECRET: &str =
    "postgres://app:s3cr3t-7b1e 'it''s' \"q\" $HOME ${X} `id` 100% #1 ;\\@127.0.0.5/app\\";
/// The part of [`SECRET`] that no encoding of it leaves out.
const SECRET_TOKEN: &str = "s3cr3t-7b1e";

/// Files under `dir`, and inside each .deb there, whose bytes contain [`SECRET_TOKEN`].
fn files_holding_the_secret(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut found = Vec::new();
    for file in files.into_iter().filter(|f| f.is_file()) {
        let bytes = std::fs::read(&file).expect("read");
        if String::from_utf8_lossy(&bytes).contains(SECRET_TOKEN) {
            found.push(file.display().to_string());
        }
        if file.extension().is_some_and(|e| e == "deb") {
            let unpacked = Unpacked::new(&file);
            found.extend(files_holding_the_secret(unpacked.dir.path()));
        }
    }
    found
}

/// Secrets outside the packages: `DATABASE_URL` in the environment of
/// `cargo speedy server-setup` reaches the app through a file of the server that is
/// root's only; it is in no .deb and no file of the repository; a second run changes
/// nothing; without it the app does not start, and says which secret is missing.
#[test]
fn server_setup_gives_the_app_its_secret_from_the_environment_and_nobody_else() {
    let fleet = Fleet::new();
    fleet
        .fixture
        .declare_secrets("speedy-app", &["DATABASE_URL"]);
    let (_keys, key, _keyring) = archive_key(&fleet.fixture);
    fleet.release("1.4.0", Some(&key));
    let setup = |value: Option<&str>| {
        let env: Vec<(&str, &str)> = value.map(|v| ("DATABASE_URL", v)).into_iter().collect();
        let output = fleet.speedy_env(
            &[
                "server-setup",
                "--role",
                "web",
                "--db-host",
                "127.0.0.5",
                "--url",
                &fleet.http.url,
            ],
            Some(&key),
            &env,
        );
        assert!(
            !stderr(&output).contains(SECRET_TOKEN),
            "{}",
            stderr(&output)
        );
        output
    };
    let output = setup(Some(SECRET));
    let script = stdout(&output);
    assert!(
        !stderr(&output).contains("not in this environment"),
        "{}",
        stderr(&output)
    );
    // Not given: the script leaves the server's file as it is, and says which.
    let without = setup(None);
    assert!(
        stderr(&without).contains(
            "secrets not in this environment, left as they are on the server: DATABASE_URL"
        ),
        "{}",
        stderr(&without)
    );
    assert!(
        !stdout(&without).contains("set_secrets /"),
        "{}",
        stdout(&without)
    );

    let server = BootedServer::boot(SUITE);
    // As `… | ssh root@host sh` runs it: from stdin, never a file on the server.
    let run = |script: &str| {
        let output = server.exec_input(&["sh"], script.as_bytes());
        assert!(output.status.success(), "{}", describe(&output));
        assert!(
            !stdout(&output).contains(SECRET_TOKEN),
            "{}",
            stdout(&output)
        );
        assert!(
            !stderr(&output).contains(SECRET_TOKEN),
            "{}",
            stderr(&output)
        );
        // sh read the whole script from stdin: nothing on the way ate its end.
        assert!(
            stdout(&output).contains("speedy server-setup: web server ready"),
            "{}",
            describe(&output)
        );
    };
    run(&script);
    server.wait_active("speedy-app.service");
    let file = "/etc/speedy/speedy-app.secrets";
    assert_eq!(
        server.exec_ok(&["stat", "-c", "%a %U:%G %F", file]).trim(),
        "600 root:root regular file"
    );
    let contents = server.exec_ok(&["cat", file]);
    assert!(contents.contains(SECRET_TOKEN), "{contents}");
    let environment = server.main_process_environment("speedy-app.service");
    let seen = environment
        .iter()
        .find(|(name, _)| name == "DATABASE_URL")
        .map(|(_, value)| value.as_str());
    assert_eq!(seen, Some(SECRET), "the app's environment: {environment:?}");
    // The app runs as its own user, and the file is root's only.
    let nobody = server.exec(&[
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "cat",
        file,
    ]);
    assert!(!nobody.status.success(), "{}", describe(&nobody));
    assert!(
        stderr(&nobody).contains("Permission denied"),
        "{}",
        describe(&nobody)
    );
    // systemd accepts the installed unit with its EnvironmentFile= and check.
    let verify = server.exec(&[
        "systemd-analyze",
        "verify",
        "/usr/lib/systemd/system/speedy-app.service",
    ]);
    assert!(
        verify.status.success() && stdout(&verify).trim().is_empty(),
        "{}",
        describe(&verify)
    );
    // Neither the repository (pool, indices, history) nor any .deb holds it.
    assert_eq!(
        files_holding_the_secret(fleet.repo.path()),
        Vec::<String>::new()
    );
    assert_eq!(
        files_holding_the_secret(&fleet.fixture.debs_dir()),
        Vec::<String>::new()
    );

    // A second run changes nothing: no modification time under /etc, no restart.
    let pid = server.show("speedy-app.service", "MainPID");
    let etc_before = etc_mtimes(&server);
    run(&script);
    assert_eq!(
        etc_mtimes(&server),
        etc_before,
        "the second run changed /etc"
    );
    assert_eq!(server.show("speedy-app.service", "MainPID"), pid);
    // Nor does a run without the secret: the server keeps its value.
    run(&stdout(&without));
    assert_eq!(
        etc_mtimes(&server),
        etc_before,
        "a run without the secret changed /etc"
    );
    assert_eq!(server.exec_ok(&["cat", file]), contents);

    // A new value replaces the line and restarts the app with it.
    let rotated = SECRET.replace("7b1e", "7b1e-rotated");
    run(&stdout(&setup(Some(&rotated))));
    server.wait_active("speedy-app.service");
    assert_ne!(server.show("speedy-app.service", "MainPID"), pid);
    let environment = server.main_process_environment("speedy-app.service");
    assert!(
        environment
            .iter()
            .any(|(name, value)| name == "DATABASE_URL" && *value == rotated),
        "{environment:?}"
    );
    assert_eq!(server.exec_ok(&["cat", file]).lines().count(), 1);

    // Without the line, the app does not start, and says which secret and where.
    server.exec_ok(&["sed", "-i", "/^DATABASE_URL=/d", file]);
    let restart = server.exec(&["systemctl", "restart", "speedy-app.service"]);
    assert!(!restart.status.success(), "{}", describe(&restart));
    let journal = server.exec_ok(&[
        "journalctl",
        "--no-pager",
        "-u",
        "speedy-app.service",
        "-n",
        "30",
    ]);
    assert!(
        journal.contains("missing secrets: DATABASE_URL") && journal.contains(file),
        "{journal}"
    );
    assert!(!journal.contains(SECRET_TOKEN), "{journal}");
    let status = server.exec(&[
        "systemctl",
        "status",
        "--no-pager",
        "-n",
        "20",
        "speedy-app.service",
    ]);
    assert!(
        stdout(&status).contains("DATABASE_URL"),
        "{}",
        describe(&status)
    );
    drop(server);
}
