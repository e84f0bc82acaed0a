//! Restarts that drop no request, and upgrades that refuse to leave a server
//! unhealthy, on a booted Debian server
//! (docs/ARCHITECTURE.md, "Restarts and the health gate"): under a load of several
//! connections on loopback, `apt-get upgrade`, a rollback through `apt-get upgrade`
//! and `systemctl restart` fail no request when systemd holds the app's socket; a release whose app is not
//! healthy makes `apt-get upgrade` fail, and `cargo speedy rollback` mends it.
//!
//! `restarts::bench_with_and_without_a_socket` (ignored; bench/restarts.sh runs it)
//! measures the same sequence side by side with the package built without a socket.

use crate::support::load::{LoadClient, LoadReport};
use crate::support::server::{
    archive_key, free_port, run_check, BootedServer, RepoHttpServer, SUITE,
};
use crate::support::*;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

const APP: &str = "speedy-app/Cargo.toml";
const UNIT: &str = "speedy-app.service";
const INSTALLED: &str = "/usr/libexec/speedy/speedy-app";
/// Connections at a time, and requests per second in total.
const WORKERS: usize = 8;
const RATE: u32 = 200;
/// Load before and after each operation, so the whole of it is under load.
const MARGIN: Duration = Duration::from_millis(700);

/// A port below 1024 that is free on the host (a booted server shares the host's
/// network): systemd binds it, so the unprivileged service needs no capability.
fn free_privileged_port() -> u16 {
    (900..1024)
        .rev()
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port between 900 and 1023 on 127.0.0.1")
}

/// A release workspace, its signed repository served over HTTP, and a booted server
/// that installed speedy-app 1.4.0 from it, set up for rollbacks as the README says.
struct Site {
    server: BootedServer,
    _http: RepoHttpServer,
    fixture: Fixture,
    repo: tempfile::TempDir,
    key: PathBuf,
    _keys: tempfile::TempDir,
    port: u16,
}

impl Site {
    /// With `socket`, the app declares `listen` on a port below 1024; without, it
    /// binds a free high port itself. Both are `Type=notify`, with a short health gate.
    fn new(socket: bool) -> Self {
        let port = if socket {
            free_privileged_port()
        } else {
            free_port()
        };
        let fixture = Fixture::new();
        fixture.edit(
            "speedy-app/config/app.conf",
            "port = 8080",
            &format!("port = {port}"),
        );
        fixture.edit(
            APP,
            "http://127.0.0.1:8080/healthz",
            &format!("http://127.0.0.1:{port}/healthz"),
        );
        let listen = if socket {
            format!("listen = [\"127.0.0.1:{port}\"]\n")
        } else {
            String::new()
        };
        fixture.edit(
            APP,
            "kind = \"daemon\"\n",
            &format!("kind = \"daemon\"\n{listen}health-timeout = \"5s\"\n"),
        );
        let (keys, key, keyring) = archive_key(&fixture);
        let repo = tempfile::tempdir().expect("temp dir");
        let http = RepoHttpServer::serve(repo.path());
        let server = BootedServer::boot(SUITE);
        server.use_apt_repo(
            &http.url,
            "dev",
            &std::fs::read(&keyring).expect("read keyring"),
        );
        server.follow_rollbacks();
        let site = Site {
            server,
            _http: http,
            fixture,
            repo,
            key,
            _keys: keys,
            port,
        };
        site.release("1.4.0");
        site.server.apt_update();
        site.server.apt_get(&["install", "speedy-app"]);
        site.server.wait_active(UNIT);
        if socket {
            assert_eq!(
                site.server.show("speedy-app.socket", "ActiveState"),
                "active"
            );
        }
        assert_eq!(site.server.app_version(), "speedy-app 1.4.0");
        site
    }

    fn speedy(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend([
            "--repo-dir",
            self.repo.path().to_str().expect("utf-8 path"),
            "--key-file",
            self.key.to_str().expect("utf-8 path"),
            "--quiet",
        ]);
        let output = self.fixture.speedy(&all);
        assert_success(&output);
        stdout(&output)
    }

    fn release(&self, version: &str) {
        self.fixture.set_version(version);
        self.speedy(&["release", "--suite", "dev"]);
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn healthz(&self) -> String {
        format!("http://127.0.0.1:{}/healthz", self.port)
    }

    /// Runs `operation` with the load client running from a little before to a little
    /// after it.
    fn under_load<T>(&self, operation: impl FnOnce() -> T) -> (T, LoadReport) {
        let load = LoadClient::start(self.address(), "/healthz", WORKERS, RATE);
        std::thread::sleep(MARGIN);
        let result = operation();
        std::thread::sleep(MARGIN);
        (result, load.stop())
    }

    /// Asserts the unit runs a new main process, from the binary installed now (not a
    /// deleted one an upgrade replaced), of `version`.
    fn assert_new_process(&self, before: &str, version: &str) {
        self.server.wait_active(UNIT);
        let pid = self.server.show(UNIT, "MainPID");
        assert_ne!(pid, before, "{UNIT} kept its main process");
        let exe = self
            .server
            .exec_ok(&["readlink", &format!("/proc/{pid}/exe")]);
        assert_eq!(exe.trim(), INSTALLED, "the main process runs {exe}");
        assert_eq!(self.server.app_version(), version);
    }
}

/// One row of the benchmark: what the load client saw during one operation.
struct Row {
    operation: &'static str,
    report: LoadReport,
}

/// An upgrade to 1.4.1, a rollback to 1.4.0 through `apt-get upgrade`, and a
/// `systemctl restart`, each under load; each leaves a new process of the expected
/// binary.
fn upgrade_rollback_restart(site: &Site) -> Vec<Row> {
    let mut rows = Vec::new();
    let server = &site.server;

    site.release("1.4.1");
    server.apt_update();
    let before = server.show(UNIT, "MainPID");
    let (_, report) = site.under_load(|| server.apt_get(&["upgrade"]));
    site.assert_new_process(&before, "speedy-app 1.4.1");
    rows.push(Row {
        operation: "apt-get upgrade 1.4.0 -> 1.4.1",
        report,
    });

    let rolled = site.speedy(&["rollback", "--suite", "dev"]);
    assert!(rolled.contains("retired speedy-app 1.4.1-1"), "{rolled}");
    server.apt_update();
    let before = server.show(UNIT, "MainPID");
    let (upgrade, report) = site.under_load(|| server.apt_get(&["upgrade"]));
    assert!(upgrade.contains("DOWNGRADED"), "{upgrade}");
    site.assert_new_process(&before, "speedy-app 1.4.0");
    rows.push(Row {
        operation: "rollback, apt-get upgrade 1.4.1 -> 1.4.0",
        report,
    });

    let before = server.show(UNIT, "MainPID");
    let (_, report) = site.under_load(|| server.systemctl(&["restart", UNIT]));
    site.assert_new_process(&before, "speedy-app 1.4.0");
    rows.push(Row {
        operation: "systemctl restart",
        report,
    });
    rows
}

#[test]
fn upgrades_rollbacks_and_restarts_behind_a_socket_fail_no_request_and_a_sick_release_fails_apt() {
    let site = Site::new(true);
    for row in upgrade_rollback_restart(&site) {
        let report = &row.report;
        assert!(
            report.failures.is_empty(),
            "{}: {} of {} requests failed: {:?}",
            row.operation,
            report.failures.len(),
            report.requests,
            report.failures
        );
        assert!(
            report.rate() >= 100.0,
            "{}: only {:.0} requests/s ({} in {:?})",
            row.operation,
            report.rate(),
            report.requests,
            report.elapsed
        );
    }
    // The socket stayed up through all of it, accepting nothing itself (Accept=no).
    assert_eq!(
        site.server.show("speedy-app.socket", "ActiveState"),
        "active"
    );
    assert_eq!(site.server.show("speedy-app.socket", "NAccepted"), "0");

    // A release whose app cannot serve: apt-get fails, naming the service, the URL
    // and what it answered; the monitoring check says CRITICAL.
    site.fixture.edit(
        "speedy-app/src/main.rs",
        "(false, \"GET\" | \"HEAD\", \"/healthz\") => (200, TEXT, \"ok\\n\"),",
        "(false, \"GET\" | \"HEAD\", \"/healthz\") => (500, TEXT, \"database unreachable\\n\"),",
    );
    site.release("1.4.2");
    let server = &site.server;
    server.apt_update();
    let upgrade = server.apt(&["-y", "-q", "upgrade"]);
    let text = format!("{}{}", stdout(&upgrade), stderr(&upgrade));
    assert!(
        !upgrade.status.success(),
        "apt-get upgrade succeeded:\n{text}"
    );
    let expected = format!(
        "speedy-app: speedy-app.service is not healthy after the upgrade to 1.4.2-1: {} answered HTTP 500: database unreachable within 5 s.",
        site.healthz()
    );
    assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
    assert!(text.contains("cargo speedy rollback"), "{text}");
    let check = run_check(server, "speedy-app", &[]);
    let check_line = &check.line;
    assert_eq!(check.code, 2, "{check_line}");
    assert!(
        check_line.starts_with("SPEEDY-APP CRITICAL - ") && check_line.contains(" 500 "),
        "{check_line}"
    );

    // What the README tells the operator: roll back, then upgrade the server.
    let rolled = site.speedy(&["rollback", "--suite", "dev"]);
    assert!(rolled.contains("retired speedy-app 1.4.2-1"), "{rolled}");
    server.apt_update();
    let upgrade = server.apt_get(&["upgrade"]);
    assert!(upgrade.contains("DOWNGRADED"), "{upgrade}");
    assert_eq!(server.app_version(), "speedy-app 1.4.0");
    assert_eq!(
        server.exec_ok(&[
            "dpkg-query",
            "-W",
            "-f",
            "${Status} ${Version}",
            "speedy-app"
        ]),
        "install ok installed 1.4.0-1"
    );
    assert_eq!(server.http("GET", &site.healthz()).status, 200);
    let check = run_check(server, "speedy-app", &[]);
    assert_eq!(check.code, 0, "{}", check.line);
}

/// The benchmark behind the README's table: the same sequence with the socket unit
/// and without it. Run by bench/restarts.sh; prints a Markdown table.
#[test]
#[ignore = "a benchmark: bench/restarts.sh runs it"]
fn bench_with_and_without_a_socket() {
    let mut table = String::from(
        "| package | operation | requests | failed | longest wait | longest without an answer |\n|---|---|---:|---:|---:|---:|\n",
    );
    for (socket, label) in [
        (true, "with speedy-app.socket"),
        (false, "without a socket unit"),
    ] {
        let site = Site::new(socket);
        for row in upgrade_rollback_restart(&site) {
            table.push_str(&format!(
                "| {label} | {} | {} | {} | {} ms | {} ms |\n",
                row.operation,
                row.report.requests,
                row.report.failures.len(),
                row.report.longest.as_millis(),
                row.report.longest_gap.as_millis()
            ));
        }
        drop(site);
    }
    println!(
        "\n{WORKERS} connections at a time, {RATE} requests/s in total, on loopback, Debian {SUITE} booted in systemd-nspawn:\n\n{table}"
    );
}

/// The first upgrade to a version with `listen`: the old version held the port
/// itself, so postinst stops it before starting the socket; then the new version
/// runs behind the socket and passes the health gate.
#[test]
fn an_upgrade_moves_a_daemon_behind_its_new_socket() {
    let site = Site::new(false);
    let server = &site.server;
    assert!(!server.exists("/usr/lib/systemd/system/speedy-app.socket"));
    site.fixture.edit(
        APP,
        "notify = true\n",
        &format!("notify = true\nlisten = [\"127.0.0.1:{}\"]\n", site.port),
    );
    site.release("1.4.1");
    server.apt_update();
    let before = server.show(UNIT, "MainPID");
    let upgrade = server.apt_get(&["upgrade"]);
    assert!(!upgrade.contains("not healthy"), "{upgrade}");
    site.assert_new_process(&before, "speedy-app 1.4.1");
    assert_eq!(server.show("speedy-app.socket", "ActiveState"), "active");
    assert_eq!(server.show("speedy-app.socket", "UnitFileState"), "enabled");
    assert_eq!(server.http("GET", &site.healthz()).status, 200);
    // From now on a restart queues instead of refusing.
    let before = server.show(UNIT, "MainPID");
    let (_, report) = site.under_load(|| server.systemctl(&["restart", UNIT]));
    site.assert_new_process(&before, "speedy-app 1.4.1");
    assert!(report.failures.is_empty(), "{report:?}");
}
