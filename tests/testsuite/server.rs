//! The packages on a booted Debian server: systemd as PID 1 (systemd-nspawn) installs
//! them with apt from the signed repository served over HTTP, runs the daemons and the
//! jobs under their hardening, upgrades them and purges them.
//!
//! Needs root, systemd-nspawn, nsenter, debootstrap and curl (`.ci/deps` installs
//! them); see tests/testsuite/support/server.rs for the harness and its cached Debian root.

use crate::support::server::{
    archive_key, fixture_on_a_free_port, free_port, run_check, wait_for, BootedServer, DebianRoot,
    RepoHttpServer, SUITE,
};
use crate::support::*;
use std::path::Path;

const DAEMONS: [&str; 2] = ["speedy-app.service", "speedy-notifier.service"];
const TIMERS: [&str; 2] = [
    "speedy-jobs-trending.timer",
    "speedy-jobs-purge-old-data.timer",
];
/// systemd does not expand `$` in `Environment=`: the service must see this exactly.
const PRICE: &str = "$5 for 100%";

/// Publishes every .deb of the fixture to the `dev` suite of `repo`, signed by `key`.
fn publish(fixture: &Fixture, repo: &Path, key: &Path) {
    assert_success(&fixture.speedy(&[
        "publish",
        "--quiet",
        "--repo-dir",
        repo.to_str().expect("utf-8 path"),
        "--suite",
        "dev",
        "--key-file",
        key.to_str().expect("utf-8 path"),
    ]));
}

/// A booted server with the fixture's three packages installed by apt from a fresh
/// signed repository served over HTTP, its daemons active. Drops the server first.
struct InstalledServer {
    server: BootedServer,
    _http: RepoHttpServer,
    repo: tempfile::TempDir,
    key: std::path::PathBuf,
    _keys: tempfile::TempDir,
}

fn install_the_three_packages(fixture: &Fixture) -> InstalledServer {
    assert_eq!(fixture.build().len(), 3);
    let (keys, key, keyring) = archive_key(fixture);
    let repo = tempfile::tempdir().expect("temp dir");
    publish(fixture, repo.path(), &key);
    let http = RepoHttpServer::serve(repo.path());
    let server = BootedServer::boot(SUITE);
    server.use_apt_repo(
        &http.url,
        "dev",
        &std::fs::read(&keyring).expect("read keyring"),
    );
    server.apt_update();
    server.apt_get(&["install", "speedy-app", "speedy-notifier", "speedy-jobs"]);
    for unit in DAEMONS {
        server.wait_active(unit);
    }
    InstalledServer {
        server,
        _http: http,
        repo,
        key,
        _keys: keys,
    }
}

/// (MainPID, ActiveEnterTimestamp) of a unit: both change when it is restarted.
fn incarnation(server: &BootedServer, unit: &str) -> (String, String) {
    (
        server.show(unit, "MainPID"),
        server.show(unit, "ActiveEnterTimestamp"),
    )
}

fn assert_price(server: &BootedServer) {
    let environment = server.main_process_environment("speedy-app.service");
    let price = environment
        .iter()
        .find(|(name, _)| name == "PRICE")
        .map(|(_, value)| value.as_str());
    assert_eq!(
        price,
        Some(PRICE),
        "the environment speedy-app runs with: {environment:?}"
    );
}

#[test]
fn apt_installs_runs_upgrades_and_purges_on_a_booted_server() {
    // The workspace, with the app on a port free on the host (the server shares its
    // network) and an environment value that needs escaping.
    let (fixture, port) = fixture_on_a_free_port();
    fixture.edit(
        "speedy-app/Cargo.toml",
        "kind = \"daemon\"\n",
        &format!("kind = \"daemon\"\nenvironment = {{ PRICE = \"{PRICE}\" }}\n"),
    );
    // 1. apt installs the three packages from the signed repository over HTTP.
    let installed = install_the_three_packages(&fixture);
    let (server, repo, key) = (&installed.server, &installed.repo, &installed.key);

    // 2. The daemons run, the timers are scheduled, a job succeeds under its hardening.
    let timers = server.systemctl(&["list-timers", "--all", "--no-legend"]);
    for timer in TIMERS {
        assert!(timers.contains(timer), "{timer} not listed:\n{timers}");
    }
    server.systemctl(&["start", "speedy-jobs-trending.service"]);
    assert_eq!(
        server.show("speedy-jobs-trending.service", "Result"),
        "success",
        "{}",
        server.diagnose(&["speedy-jobs-trending.service"])
    );
    let state = server.sh_ok("ls /var/lib/speedy/jobs");
    assert!(
        state.contains("trending-"),
        "the job wrote nothing: {state}"
    );

    // 6. The service sees the environment value exactly as configured.
    assert_price(server);

    // 3. /healthz, then the maintenance page while the flag file exists.
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let index = format!("http://127.0.0.1:{port}/");
    let response = server.http("GET", &healthz);
    assert_eq!((response.status, response.body.as_str()), (200, "ok\n"));
    server.sh_ok("touch /var/lib/speedy/app/maintenance");
    let response = server.http("GET", &healthz);
    assert_eq!(response.status, 503, "{response:?}");
    let response = server.http("GET", &index);
    assert_eq!(response.status, 503, "{response:?}");
    assert!(
        response.content_type.starts_with("text/html"),
        "{response:?}"
    );
    assert!(
        response
            .body
            .contains("Speedy is down for scheduled maintenance"),
        "{response:?}"
    );
    server.sh_ok("rm /var/lib/speedy/app/maintenance");
    assert_eq!(server.http("GET", &healthz).status, 200);

    // 4. An upgrade restarts the daemons and keeps the admin's edit of a conffile.
    // The packaged conffile is the same in both versions, so dpkg keeps the edited one
    // without asking: no --force-conf* option is needed.
    server.sh_ok(
        "sed -i 's/^heartbeat_seconds = 30$/heartbeat_seconds = 45/' /etc/speedy/notifier.conf",
    );
    let before: Vec<_> = DAEMONS.iter().map(|u| incarnation(server, u)).collect();
    fixture.edit("Cargo.toml", "version = \"1.4.0\"", "version = \"1.4.1\"");
    fixture.build();
    publish(&fixture, repo.path(), key);
    server.apt_update();
    server.apt_get(&["upgrade"]);
    for name in ["speedy-app", "speedy-notifier", "speedy-jobs"] {
        let version = server.exec_ok(&["dpkg-query", "-W", "-f", "${Version}", name]);
        assert_eq!(version, "1.4.1-1", "{name}");
    }
    for (unit, before) in DAEMONS.iter().zip(before) {
        server.wait_active(unit);
        let after = incarnation(server, unit);
        assert_ne!(after.0, before.0, "{unit} kept its MainPID: not restarted");
        assert_ne!(after.1, before.1, "{unit} was not restarted");
    }
    let conf = server.sh_ok("cat /etc/speedy/notifier.conf");
    assert!(
        conf.contains("\nheartbeat_seconds = 45\n"),
        "the admin's edit is lost:\n{conf}"
    );
    let leftovers = server.sh_ok("ls /etc/speedy");
    assert!(!leftovers.contains(".dpkg-"), "{leftovers}");
    assert_eq!(server.http("GET", &healthz).status, 200);
    assert_price(server);

    // 5. Purging the jobs removes their timers, units and state.
    server.apt_get(&["purge", "speedy-jobs"]);
    let timers = server.systemctl(&["list-timers", "--all", "--no-legend"]);
    assert!(!timers.contains("speedy-jobs"), "{timers}");
    // list-unit-files exits 1 when nothing matches.
    let units = stdout(&server.exec(&[
        "systemctl",
        "list-unit-files",
        "--no-legend",
        "speedy-jobs*",
    ]));
    assert!(units.trim().is_empty(), "unit files left:\n{units}");
    for timer in TIMERS {
        assert!(!server.exists(&format!("/usr/lib/systemd/system/{timer}")));
        assert!(!server.exists(&format!("/etc/systemd/system/timers.target.wants/{timer}")));
    }
    assert!(!server.exists("/var/lib/speedy/jobs"));
    assert!(
        server.exists("/var/lib/speedy/app"),
        "the app's state stays"
    );
    for unit in DAEMONS {
        assert_eq!(server.show(unit, "ActiveState"), "active", "{unit}");
    }
    drop(installed);
}

/// The harness's HTTP server answers GET and HEAD with Content-Length, and 404.
#[test]
fn repo_http_server_serves_files_and_404() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("dists/dev")).unwrap();
    std::fs::write(dir.path().join("dists/dev/Release"), "Suite: dev\n").unwrap();
    let http = RepoHttpServer::serve(dir.path());
    let curl = |args: &[&str]| {
        let mut all = vec!["-sS", "--max-time", "10", "-i"];
        all.extend_from_slice(args);
        run("curl", &all)
    };
    let get = curl(&[&format!("{}/dists/dev/Release", http.url)]);
    assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
    assert!(get.contains("Content-Length: 11\r\n"), "{get}");
    assert!(get.ends_with("\r\n\r\nSuite: dev\n"), "{get}");
    let head = curl(&["-I", &format!("{}/dists/dev/Release", http.url)]);
    assert!(head.contains("Content-Length: 11\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    for missing in ["/dists/dev/InRelease", "/dists", "/../etc/passwd", "/%zz"] {
        let response = curl(&["--path-as-is", &format!("{}{missing}", http.url)]);
        assert!(
            response.starts_with("HTTP/1.1 404"),
            "{missing}: {response}"
        );
    }
    assert_eq!(http.requests().len(), 6);
    let url = http.url.clone();
    drop(http);
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", &url])
        .output()
        .expect("curl");
    assert!(!output.status.success(), "the server stops on drop");
}

/// The harness itself: commands run inside the booted root, files land there, and
/// dropping the handle stops the container and removes its copy of the root. Runs in
/// parallel with the test above, so a cold cache is bootstrapped once for both.
#[test]
fn booted_server_runs_commands_inside_and_stops_on_drop() {
    let server = BootedServer::boot(SUITE);
    assert_eq!(server.sh_ok("cat /proc/1/comm").trim(), "systemd");
    assert_eq!(
        server.exec_ok(&["cat", "/proc/sys/kernel/hostname"]).trim(),
        "speedy-server"
    );
    assert!(server
        .exec_ok(&["cat", "/etc/os-release"])
        .contains("trixie"));
    server.write_file("/etc/speedy-test/hello", b"hi\n", 0o640);
    assert_eq!(
        server.sh_ok("stat -c '%a %U' /etc/speedy-test/hello && cat /etc/speedy-test/hello"),
        "640 root\nhi\n"
    );
    assert!(server.root().join("etc/speedy-test/hello").is_file());
    assert!(server.exists("/etc/speedy-test/hello"));
    assert!(!server.exists("/nonexistent"));
    assert_eq!(server.sh("exit 3").status.code(), Some(3));
    assert_eq!(server.show("multi-user.target", "ActiveState"), "active");
    let leader = server.leader_pid();
    let root = server.root().to_owned();
    drop(server);
    assert!(
        !Path::new(&format!("/proc/{leader}")).exists(),
        "the container's init is gone"
    );
    assert!(
        !root.exists(),
        "the server's root (overlay or copy) is removed"
    );
}

/// Two servers booted at once from the shared root: each boots clean (no failed
/// unit), and neither sees what the other wrote, nor does the root they share.
#[test]
fn servers_boot_clean_and_never_see_each_others_changes() {
    let first = BootedServer::boot(SUITE);
    let second = BootedServer::boot(SUITE);
    for server in [&first, &second] {
        let state = server.sh("systemctl is-system-running");
        let failed = server.exec_ok(&["systemctl", "--failed", "--no-legend", "--plain"]);
        assert_eq!(stdout(&state).trim(), "running", "failed units:\n{failed}");
        assert_eq!(failed.trim(), "", "failed units");
    }
    first.write_file("/etc/speedy-test/first", b"1\n", 0o644);
    first.sh_ok("rm /etc/hostname");
    second.write_file("/etc/speedy-test/second", b"2\n", 0o644);
    assert!(!second.exists("/etc/speedy-test/first"));
    assert!(second.exists("/etc/hostname"));
    assert!(!first.exists("/etc/speedy-test/second"));
    let machine_ids = [&first, &second].map(|s| s.exec_ok(&["cat", "/etc/machine-id"]));
    assert_ne!(
        machine_ids[0], machine_ids[1],
        "each boot has its own machine id"
    );
    let shared = DebianRoot::unpacked(SUITE);
    assert!(
        !shared.join("etc/speedy-test").exists(),
        "the shared root is untouched"
    );
    assert!(
        shared.join("etc/hostname").exists(),
        "the shared root is untouched"
    );
    drop(first);
    // A server booted after another stopped starts from the pristine root.
    let third = BootedServer::boot(SUITE);
    assert!(!third.exists("/etc/speedy-test/first"));
    assert!(third.exists("/etc/hostname"));
}

/// The shell block under "### On a server" of docs/reference.md.
fn readme_server_steps() -> String {
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md"))
            .expect("read docs/reference.md");
    let section = reference
        .split_once("### On a server\n")
        .expect("docs/reference.md has an \"On a server\" section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the section has a sh block")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

/// The README followed literally by a user whose umask is 077: its first command in a
/// checkout, then the "On a server" steps of docs/reference.md, run as they are by root
/// from that checkout
/// (copied into the server as `/srv/checkout`, since apt reads a `file:` repository as
/// the `_apt` user). The server installs the three packages, apt warns about nothing
/// (an unreadable file shows as "Download is performed unsandboxed as root", an
/// unreadable keyring as NO_PUBKEY), and the daemons run.
#[test]
fn the_readme_under_a_strict_umask_gives_a_server_that_installs_the_packages() {
    let checkout = tempfile::tempdir().expect("temp dir");
    let fixture = checkout.path().join("tests/fixtures/speedy");
    copy_tree(&fixture_source(), &fixture);
    // Set-up, not a README step: the app's port must be free on the host, whose
    // network the server shares with other tests.
    let port = free_port();
    let conf = fixture.join("speedy-app/config/app.conf");
    let text = std::fs::read_to_string(&conf).expect("read app.conf");
    std::fs::write(
        &conf,
        text.replace("port = 8080", &format!("port = {port}")),
    )
    .expect("write app.conf");

    // The README's first command (`cargo run -- speedy release --manifest-path
    // tests/fixtures/speedy/Cargo.toml`), with the binary cargo run would build.
    let output = std::process::Command::new("sh")
        .args(["-c", "umask 077 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_cargo-speedy"))
        .args([
            "speedy",
            "release",
            "--manifest-path",
            "tests/fixtures/speedy/Cargo.toml",
        ])
        .current_dir(checkout.path())
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo-speedy");
    assert_success(&output);
    let next = stderr(&output);
    assert!(
        next.contains("Suites: dev"),
        "the main job says what to do next:\n{next}"
    );

    // Whatever the umask: public files 0644, directories 0755, the secret key 0600.
    let repo = fixture.join("target/speedy/repo");
    let mode = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    };
    let mut files = Vec::new();
    walk(&repo, &mut files);
    for path in files.iter().chain([&repo]) {
        // The fs store's own working files (its lock for conditional writes) are
        // never published.
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(".speedy-tmp-") {
            continue;
        }
        let private = path.components().any(|c| c.as_os_str() == ".speedy");
        let expected = match (path.is_dir(), private) {
            (true, _) => 0o755,
            (false, false) => 0o644,
            (false, true) => 0o600,
        };
        assert_eq!(mode(path), expected, "{}", path.display());
    }
    assert_eq!(
        mode(&fixture.join("target/speedy/repo-dev-signing-key.asc")),
        0o600
    );

    let server = BootedServer::boot(SUITE);
    let inside = server
        .root()
        .join("srv/checkout/tests/fixtures/speedy/target/speedy");
    std::fs::create_dir_all(&inside).expect("mkdir in the server");
    run(
        "cp",
        &[
            "-a",
            repo.to_str().expect("utf-8"),
            inside.to_str().expect("utf-8"),
        ],
    );
    // Standing in for the user's "Y" at apt's prompt.
    server.write_file(
        "/etc/apt/apt.conf.d/90assume-yes",
        b"APT::Get::Assume-Yes \"true\";\n",
        0o644,
    );
    let steps = readme_server_steps();
    let output = server.sh(&format!("cd /srv/checkout && set -e\n{steps}"));
    let log = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        output.status.success(),
        "the README's server steps failed:\n{steps}\n{log}"
    );
    for warning in [
        "unsandboxed",
        "NO_PUBKEY",
        "Permission denied",
        "W: ",
        "E: ",
    ] {
        assert!(!log.contains(warning), "apt said {warning:?}:\n{log}");
    }
    for name in ["speedy-app", "speedy-notifier", "speedy-jobs"] {
        let status = server.exec_ok(&["dpkg-query", "-W", "-f", "${Status} ${Version}", name]);
        assert_eq!(status, "install ok installed 1.4.0-1", "{name}");
    }
    for unit in DAEMONS {
        server.wait_active(unit);
    }
    assert_eq!(
        server
            .http("GET", &format!("http://127.0.0.1:{port}/healthz"))
            .status,
        200
    );
}

fn installed(server: &BootedServer, name: &str) -> String {
    server.exec_ok(&["dpkg-query", "-W", "-f", "${Version}", name])
}

/// Whether apt, as the machine with this id, would upgrade speedy-app now.
fn takes_speedy_app(server: &BootedServer, machine_id: &str) -> bool {
    let text = server.exec_ok(&[
        "apt-get",
        "-s",
        "-o",
        &format!("APT::Machine-ID={machine_id}"),
        "upgrade",
    ]);
    text.lines()
        .any(|line| line.starts_with("Inst speedy-app "))
}

/// A bad release undone: on a server set up as the README says (the rollback pin
/// included), 1.4.0 is installed and upgraded to 1.4.1; `rollback` makes the plain
/// `apt-get upgrade` bring back 1.4.0's binary and restart the daemon. `withdraw`
/// does the same for one package. A phased release reaches exactly the machines apt's
/// rule selects, the pin notwithstanding, and everyone at 100%.
#[test]
fn rollback_withdraw_and_phasing_reach_a_server_through_apt_upgrade() {
    let (fixture, port) = fixture_on_a_free_port();
    let (_keys, key, keyring) = archive_key(&fixture);
    let key_arg = key.to_str().unwrap();
    let repo = tempfile::tempdir().expect("temp dir");
    let repo_arg = repo.path().to_str().unwrap();
    let speedy = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--repo-dir", repo_arg, "--key-file", key_arg, "--quiet"]);
        let output = fixture.speedy(&all);
        assert_success(&output);
        stdout(&output)
    };
    let release = |version: &str, extra: &[&str]| {
        fixture.set_version(version);
        let mut args = vec!["release", "--suite", "dev"];
        args.extend_from_slice(extra);
        speedy(&args)
    };
    release("1.4.0", &[]);
    let http = RepoHttpServer::serve(repo.path());

    let server = BootedServer::boot(SUITE);
    server.use_apt_repo(
        &http.url,
        "dev",
        &std::fs::read(&keyring).expect("read keyring"),
    );
    let summary = speedy(&["list", "--message-format", "json"]);
    assert!(summary.contains("speedy-app"), "{summary}");
    server.follow_rollbacks();
    server.apt_update();
    server.apt_get(&["install", "speedy-app", "speedy-notifier"]);
    server.wait_active("speedy-app.service");
    assert_eq!(server.app_version(), "speedy-app 1.4.0");

    // 1.4.1 goes out and is installed by the plain upgrade.
    release("1.4.1", &[]);
    server.apt_update();
    server.apt_get(&["upgrade"]);
    assert_eq!(server.app_version(), "speedy-app 1.4.1");
    server.wait_active("speedy-app.service");
    let before_rollback = server.show("speedy-app.service", "MainPID");

    // Rollback: the usual upgrade returns to 1.4.0's binary and restarts the daemon.
    let rolled = speedy(&["rollback", "--suite", "dev"]);
    assert!(rolled.contains("retired speedy-app 1.4.1-1"), "{rolled}");
    server.apt_update();
    let upgrade = server.apt_get(&["upgrade"]);
    assert!(upgrade.contains("DOWNGRADED"), "{upgrade}");
    assert_eq!(server.app_version(), "speedy-app 1.4.0");
    assert_eq!(installed(&server, "speedy-notifier"), "1.4.0-1");
    server.wait_active("speedy-app.service");
    assert_ne!(
        server.show("speedy-app.service", "MainPID"),
        before_rollback,
        "restarted"
    );
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    assert_eq!(server.http("GET", &healthz).status, 200);

    // Withdraw one package's bad version: the others keep theirs.
    release("1.4.2", &[]);
    server.apt_update();
    server.apt_get(&["upgrade"]);
    assert_eq!(server.app_version(), "speedy-app 1.4.2");
    speedy(&[
        "withdraw",
        "--suite",
        "dev",
        "-p",
        "speedy-app",
        "--version",
        "1.4.2-1",
    ]);
    server.apt_update();
    server.apt_get(&["upgrade"]);
    assert_eq!(server.app_version(), "speedy-app 1.4.0");
    assert_eq!(installed(&server, "speedy-notifier"), "1.4.2-1");
    server.wait_active("speedy-app.service");
    assert_eq!(server.http("GET", &healthz).status, 200);

    // A 10% phase: apt, as each machine, decides from the machine id. Find one id
    // inside the phase and one outside, by apt's own rule.
    release("1.4.3", &["--phased", "10"]);
    server.apt_update();
    let ids: Vec<String> = (1..=300u32).map(|n| format!("{n:032x}")).collect();
    let inside = ids.iter().find(|id| takes_speedy_app(&server, id));
    let outside = ids.iter().find(|id| !takes_speedy_app(&server, id));
    let (Some(inside), Some(outside)) = (inside, outside) else {
        panic!("apt put every machine on one side of a 10% phase: inside {inside:?}, outside {outside:?}");
    };
    let share = ids
        .iter()
        .take(100)
        .filter(|id| takes_speedy_app(&server, id))
        .count();
    assert!(
        (1..=30).contains(&share),
        "{share} of 100 machines in a 10% phase"
    );
    // The machine outside keeps its version through a real upgrade, pin or not.
    server.apt_get(&["-o", &format!("APT::Machine-ID={outside}"), "upgrade"]);
    assert_eq!(server.app_version(), "speedy-app 1.4.0");
    // At 100% every machine takes it.
    speedy(&["phase", "--suite", "dev", "-p", "speedy-app", "100"]);
    server.apt_update();
    assert!(
        takes_speedy_app(&server, outside),
        "the machine outside the phase at 100%"
    );
    assert!(takes_speedy_app(&server, inside));
    server.apt_get(&["-o", &format!("APT::Machine-ID={outside}"), "upgrade"]);
    assert_eq!(server.app_version(), "speedy-app 1.4.3");
    server.wait_active("speedy-app.service");
    assert_eq!(server.http("GET", &healthz).status, 200);
    drop(server);
    drop(http);
}

/// The monitoring checks and NRPE definitions the packages install, on a booted
/// server: OK when healthy, WARNING in maintenance, CRITICAL when the daemon is
/// stopped and after a failing job run, OK with the reason on a host whose jobs are
/// disabled by the flag, UNKNOWN without curl.
#[test]
fn monitoring_checks_report_ok_warning_critical_and_unknown_on_a_booted_server() {
    let (fixture, port) = fixture_on_a_free_port();
    let installed = install_the_three_packages(&fixture);
    let server = &installed.server;
    for package in ["speedy-app", "speedy-notifier", "speedy-jobs"] {
        let nrpe = server.sh_ok(&format!("cat /etc/nagios/nrpe.d/{package}.cfg"));
        assert!(
            nrpe.lines().any(|l| l
                == format!("command[check_{package}]=/usr/lib/nagios/plugins/check_{package}")),
            "{nrpe}"
        );
    }
    let healthz = format!("http://127.0.0.1:{port}/healthz");

    // Healthy: OK, with the response time as performance data.
    let app = run_check(server, "speedy-app", &[]);
    assert_eq!(app.state, "OK", "{app:?}");
    assert!(app.message.contains("speedy-app.service active"), "{app:?}");
    assert!(
        app.message.contains(&format!("{healthz} 200 in ")),
        "{app:?}"
    );
    assert!(
        app.perfdata.starts_with("time=") && app.perfdata.ends_with("s;;;0"),
        "{app:?}"
    );
    let notifier = run_check(server, "speedy-notifier", &[]);
    assert_eq!(
        (notifier.code, notifier.message.as_str()),
        (0, "speedy-notifier.service active")
    );
    let jobs = run_check(server, "speedy-jobs", &[]);
    assert_eq!(jobs.code, 0, "{jobs:?}");
    for job in ["trending", "purge-old-data"] {
        assert!(
            jobs.message
                .contains(&format!("{job} has not run since its timer started")),
            "{jobs:?}"
        );
        assert!(jobs.perfdata.contains(&format!("{job}_age=")), "{jobs:?}");
    }
    server.systemctl(&["start", "speedy-jobs-trending.service"]);
    let jobs = run_check(server, "speedy-jobs", &[]);
    assert_eq!(jobs.code, 0, "{jobs:?}");
    assert!(jobs.message.contains("trending last ran "), "{jobs:?}");

    // Maintenance: WARNING, with the reason the app gives.
    server.sh_ok("touch /var/lib/speedy/app/maintenance");
    let app = run_check(server, "speedy-app", &[]);
    assert_eq!(app.code, 1, "{app:?}");
    assert!(
        app.message.starts_with(&format!("{healthz} 503 in ")),
        "{app:?}"
    );
    assert!(app.message.contains("s: maintenance"), "{app:?}");
    server.sh_ok("rm /var/lib/speedy/app/maintenance");
    assert_eq!(run_check(server, "speedy-app", &[]).code, 0);

    // The daemon stopped: CRITICAL.
    server.systemctl(&["stop", "speedy-app.service"]);
    let app = run_check(server, "speedy-app", &[]);
    assert_eq!(
        (app.code, app.message.as_str()),
        (2, "speedy-app.service is inactive (dead)")
    );
    server.systemctl(&["start", "speedy-app.service"]);
    server.wait_active("speedy-app.service");
    // A health URL nothing answers: CRITICAL, with curl's reason.
    let closed = format!("http://127.0.0.1:{}/healthz", free_port());
    let app = run_check(server, "speedy-app", &["-u", &closed]);
    assert_eq!(app.code, 2, "{app:?}");
    assert!(app.message.starts_with(&format!("{closed}: ")), "{app:?}");
    // Without curl: UNKNOWN, saying what to install.
    server.sh_ok("mv /usr/bin/curl /usr/bin/curl.hidden");
    let app = run_check(server, "speedy-app", &[]);
    server.sh_ok("mv /usr/bin/curl.hidden /usr/bin/curl");
    assert_eq!(app.code, 3, "{app:?}");
    assert!(app.message.contains("curl is not installed"), "{app:?}");
    assert!(app.message.contains("apt-get install curl"), "{app:?}");
    wait_for(
        "speedy-app to answer again",
        std::time::Duration::from_secs(30),
        || (run_check(server, "speedy-app", &[]).code == 0).then_some(()),
        || format!("{:?}", run_check(server, "speedy-app", &[])),
    );

    // A failing job run: CRITICAL, naming the job, its exit status and where to look.
    server.write_file(
        "/run/systemd/system/speedy-jobs-trending.service.d/fail.conf",
        b"[Service]\nExecStart=\nExecStart=/bin/sh -c 'exit 3'\n",
        0o644,
    );
    server.systemctl(&["daemon-reload"]);
    let run = server.exec(&["systemctl", "start", "speedy-jobs-trending.service"]);
    assert!(!run.status.success(), "the job was made to fail");
    let jobs = run_check(server, "speedy-jobs", &[]);
    assert_eq!(jobs.code, 2, "{jobs:?}");
    assert!(jobs.message.starts_with("trending failed at "), "{jobs:?}");
    assert!(
        jobs.message
            .contains("(exit-code, exit status 3): journalctl -u speedy-jobs-trending.service"),
        "{jobs:?}"
    );

    // A host whose jobs are disabled by the flag: OK, with that reason.
    server.sh_ok("touch /etc/speedy/jobs.disabled");
    let jobs = run_check(server, "speedy-jobs", &[]);
    assert_eq!(
        (jobs.code, jobs.message.as_str()),
        (0, "jobs disabled on this host by /etc/speedy/jobs.disabled")
    );
    server.sh_ok("rm /etc/speedy/jobs.disabled");
    assert_eq!(run_check(server, "speedy-jobs", &[]).code, 2);

    // The job fixed and run again: OK. A timer disabled by hand: CRITICAL.
    server.sh_ok("rm -r /run/systemd/system/speedy-jobs-trending.service.d");
    server.systemctl(&["daemon-reload"]);
    server.systemctl(&["start", "speedy-jobs-trending.service"]);
    assert_eq!(run_check(server, "speedy-jobs", &[]).code, 0);
    server.systemctl(&["disable", "--now", "speedy-jobs-purge-old-data.timer"]);
    let jobs = run_check(server, "speedy-jobs", &[]);
    assert_eq!(jobs.code, 2, "{jobs:?}");
    assert!(
        jobs.message
            .starts_with("speedy-jobs-purge-old-data.timer is disabled, so purge-old-data never runs; trending last ran "),
        "{jobs:?}"
    );
    drop(installed);
}
