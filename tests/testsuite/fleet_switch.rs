//! `cargo speedy fleet`: switches that every server of a suite follows through the
//! signed repository (docs/ARCHITECTURE.md, "Fleet switches"). On the repository:
//! bad input is refused with nothing changed, each switch is a history record that
//! `rollback` undoes, promotion leaves the fleet package behind. On booted servers
//! (three, of two roles): `db` moves, the maintenance page comes and goes with its
//! message, `--role` switches one role, within a minute, measured; a tampered package
//! is refused and the settings in place stay.

use crate::support::server::{
    archive_key, fixture_on_a_free_port, free_port, run_check, BootedServer, RepoHttpServer, SUITE,
};
use crate::support::*;
use std::path::Path;
use std::time::{Duration, Instant};

const FLEET_PACKAGE: &str = "speedy-fleet";
/// The bound for every switch to reach every server.
const WITHIN: Duration = Duration::from_secs(60);

fn speedy_ok(fixture: &Fixture, args: &[&str]) -> String {
    let output = fixture.speedy(args);
    assert_success(&output);
    stdout(&output)
}

fn status_json(fixture: &Fixture, repo: &str) -> serde_json::Value {
    let text = speedy_ok(
        fixture,
        &[
            "fleet",
            "status",
            "--suite",
            "dev",
            "--repo-dir",
            repo,
            "--message-format",
            "json",
        ],
    );
    let line = text
        .lines()
        .find(|l| l.contains("\"reason\":\"fleet-status\""))
        .unwrap_or_else(|| panic!("no fleet-status line: {text}"));
    serde_json::from_str(line).expect("json")
}

#[test]
fn fleet_switches_are_validated_recorded_and_rolled_back() {
    let fixture = Fixture::new();
    let repo_dir = tempfile::tempdir().expect("temp dir");
    let repo = repo_dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let flags = ["--repo-dir", repo, "--quiet"];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(flags.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: &[&str]| {
        let all = with(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        fixture.speedy(&refs)
    };
    assert_success(&run(&["release", "--suite", "dev"]));
    let status = status_json(&fixture, repo);
    assert_eq!(status["version"], serde_json::Value::Null, "{status}");

    // Bad input: a clear error naming what is wrong, and not one byte changes.
    let before = tree_hashes(Path::new(repo));
    let long = "x".repeat(201);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["fleet", "db", "--suite", "dev", "db.example"],
            "invalid IP address",
        ),
        (
            vec!["fleet", "db", "--suite", "nosuch", "127.0.0.5"],
            "unknown suite \"nosuch\"",
        ),
        (
            vec![
                "fleet",
                "maintenance",
                "on",
                "--suite",
                "dev",
                "--role",
                "nosuch",
            ],
            "roles.nosuch`: no such role; the roles are: single, web, worker",
        ),
        (
            vec!["fleet", "maintenance", "on", "--role", "web"],
            "--suite <SUITE>",
        ),
        (
            vec![
                "fleet",
                "maintenance",
                "on",
                "--suite",
                "dev",
                "--message",
                "two\nlines",
            ],
            "contains the control character '\\n'",
        ),
        (
            vec![
                "fleet",
                "maintenance",
                "on",
                "--suite",
                "dev",
                "--message",
                &long,
            ],
            "is 201 characters long; at most 200",
        ),
        (
            vec![
                "fleet",
                "maintenance",
                "off",
                "--suite",
                "dev",
                "--message",
                "x",
            ],
            "--message goes with `fleet maintenance on`",
        ),
    ];
    for (args, expected) in cases {
        let output = run(&args);
        assert!(!output.status.success(), "{args:?} succeeded");
        let error = stderr(&output);
        assert!(error.contains(expected), "{args:?}: {error}");
        assert_eq!(
            tree_hashes(Path::new(repo)),
            before,
            "{args:?} changed the repository"
        );
    }

    // Each switch is a record of the suite's history.
    assert_success(&run(&["fleet", "db", "--suite", "dev", "127.0.0.7"]));
    assert_success(&run(&[
        "fleet",
        "maintenance",
        "on",
        "--suite",
        "dev",
        "--role",
        "web",
        "--message",
        "Back at 14:00",
    ]));
    // The same switch again publishes nothing.
    let before = tree_hashes(Path::new(repo));
    assert_success(&run(&["fleet", "db", "--suite", "dev", "127.0.0.7"]));
    assert_eq!(tree_hashes(Path::new(repo)), before, "a no-op switch");
    let status = status_json(&fixture, repo);
    assert_eq!(status["settings"]["db"]["value"], "127.0.0.7", "{status}");
    assert_eq!(
        status["settings"]["maintenance"]["web"]["value"], "Back at 14:00",
        "{status}"
    );
    let roles = status["roles"].as_array().unwrap();
    let of = |role: &str| {
        roles
            .iter()
            .find(|r| r["role"] == role)
            .unwrap_or_else(|| panic!("{role} in {status}"))["maintenance"]
            .clone()
    };
    assert_eq!(of("web")["value"], "Back at 14:00");
    assert_eq!(of("worker"), serde_json::Value::Null);
    let human = speedy_ok(
        &fixture,
        &with(&["fleet", "status", "--suite", "dev"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(human.contains("db: 127.0.0.7 since "), "{human}");
    assert!(
        human.contains("maintenance: on for role web since ")
            && human.contains("\"Back at 14:00\""),
        "{human}"
    );

    let history = speedy_ok(
        &fixture,
        &with(&["history", "--suite", "dev"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(history.contains("fleet db 127.0.0.7 by "), "{history}");
    assert!(
        history.contains("fleet maintenance on --role web: Back at 14:00 by "),
        "{history}"
    );

    // The fleet package is lintian-clean and its scripts pass shellcheck; so does the
    // follower script server-setup installs.
    let pool = Path::new(repo).join("pool/main/s/speedy-fleet");
    let deb = std::fs::read_dir(&pool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let lintian = std::process::Command::new("lintian")
        .args(["--fail-on", "error,warning", "--no-tag-display-limit"])
        .arg(&deb)
        .output()
        .expect("lintian is installed");
    assert!(
        lintian.status.success(),
        "{}{}",
        stdout(&lintian),
        stderr(&lintian)
    );
    let unpacked = Unpacked::new(&deb);
    let apply = unpacked.dir.path().join("root/usr/lib/speedy-fleet/apply");
    let setup = speedy_ok(
        &fixture,
        &with(&["server-setup", "--role", "web", "--db-host", "127.0.0.5"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let quoted = setup
        .split_once("\nfollower_script='")
        .and_then(|(_, rest)| rest.split_once("\n'\n"))
        .expect("the follower script in the setup script")
        .0;
    let follower = unpacked.dir.path().join("follower.sh");
    std::fs::write(&follower, quoted.replace("'\\''", "'")).unwrap();
    for script in [
        unpacked.control_path("postinst"),
        unpacked.control_path("prerm"),
        apply,
        follower,
    ] {
        crate::support::run(
            "shellcheck",
            &["--shell=sh", "--severity=style", script.to_str().unwrap()],
        );
    }

    // Promotion leaves dev's settings behind.
    assert_success(&run(&["promote", "--from", "dev", "--to", "stable"]));
    assert!(!packages_text(Path::new(repo), "stable", "amd64").contains(FLEET_PACKAGE));

    // rollback undoes the newest switch, then the first.
    assert_success(&run(&["fleet", "db", "--suite", "dev", "127.0.0.8"]));
    assert_eq!(
        status_json(&fixture, repo)["settings"]["db"]["value"],
        "127.0.0.8"
    );
    assert_success(&run(&["rollback", "--suite", "dev"]));
    let status = status_json(&fixture, repo);
    assert_eq!(status["settings"]["db"]["value"], "127.0.0.7", "{status}");
    assert_eq!(
        status["settings"]["maintenance"]["web"]["value"],
        "Back at 14:00"
    );
    assert_success(&run(&["rollback", "--suite", "dev", "--to", "1"]));
    let status = status_json(&fixture, repo);
    assert_eq!(status["version"], serde_json::Value::Null, "{status}");
    assert!(!packages_text(Path::new(repo), "dev", "amd64").contains(FLEET_PACKAGE));
    assert_success(&run(&["verify"]));
}

/// The workspace with its app on a free port, released to a local repository that
/// an HTTP server on 127.0.0.1 serves, signed by an archive key of its own: what the
/// booted tests set servers up from and switch.
struct ReleasedFleet {
    fixture: Fixture,
    port: u16,
    /// Stops before the repository it serves is removed.
    http: RepoHttpServer,
    repo: tempfile::TempDir,
    _keys: tempfile::TempDir,
    key: std::path::PathBuf,
}

impl ReleasedFleet {
    fn new() -> Self {
        let (fixture, port) = fixture_on_a_free_port();
        let repo = tempfile::tempdir().expect("temp dir");
        let http = RepoHttpServer::serve(repo.path());
        let (keys, key, _keyring) = archive_key(&fixture);
        let fleet = ReleasedFleet {
            fixture,
            port,
            http,
            repo,
            _keys: keys,
            key,
        };
        fleet.speedy(&["release", "--suite", "dev"]);
        fleet
    }

    /// `cargo speedy ARGS` on this repository with its key, quietly: its stdout.
    fn speedy(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend([
            "--repo-dir",
            self.repo.path().to_str().unwrap(),
            "--key-file",
            self.key.to_str().unwrap(),
            "--quiet",
        ]);
        speedy_ok(&self.fixture, &all)
    }
}

/// One booted server of the fleet and what it runs.
struct Member {
    name: &'static str,
    server: BootedServer,
    /// The app's port, for a server that runs speedy-app.
    app_port: Option<u16>,
}

fn resolves_db(member: &Member) -> String {
    let output = member.server.exec(&["getent", "hosts", "db"]);
    stdout(&output)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The app's answer to `/healthz`: (status, body).
fn health(member: &Member) -> Option<(u16, String)> {
    let port = member.app_port?;
    let response = member
        .server
        .http("GET", &format!("http://127.0.0.1:{port}/healthz"));
    Some((response.status, response.body))
}

fn flag_message(member: &Member) -> Option<String> {
    let output = member
        .server
        .exec(&["cat", "/var/lib/speedy/app/maintenance"]);
    output
        .status
        .success()
        .then(|| stdout(&output).trim_end().to_owned())
}

/// Waits until every member satisfies `done`; returns the seconds it took since
/// `since` (the switch's command returned).
fn all_follow(
    what: &str,
    members: &[Member],
    since: Instant,
    done: impl Fn(&Member) -> bool,
) -> f64 {
    wait_for_all(what, members, |m| done(m));
    since.elapsed().as_secs_f64()
}

fn wait_for_all(what: &str, members: &[Member], done: impl Fn(&Member) -> bool) {
    crate::support::server::wait_for(
        what,
        WITHIN,
        || members.iter().all(&done).then_some(()),
        || {
            members
                .iter()
                .map(|m| {
                    format!(
                        "{}: db {} health {:?} flag {:?}\n{}",
                        m.name,
                        resolves_db(m),
                        health(m),
                        flag_message(m),
                        stdout(&m.server.exec(&[
                            "journalctl",
                            "--no-pager",
                            "-n",
                            "30",
                            "-u",
                            "speedy-fleet-follow.service"
                        ]))
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
}

#[test]
fn three_servers_of_two_roles_follow_fleet_switches_within_a_minute() {
    let fleet = ReleasedFleet::new();
    let (fixture, port, repo, http) = (&fleet.fixture, fleet.port, &fleet.repo, &fleet.http);
    let speedy = |args: &[&str]| fleet.speedy(args);
    let setup = |role: &str| {
        speedy(&[
            "server-setup",
            "--role",
            role,
            "--db-host",
            "127.0.0.5",
            "--url",
            &http.url,
        ])
    };
    let (web_setup, worker_setup) = (setup("web"), setup("worker"));

    // Two web servers and a worker share the host's network: the second web server's
    // app listens on a port of its own (its conffile, kept by --force-confold).
    let second_port = free_port();
    let mut members = Vec::new();
    for (name, script, app_port) in [
        ("web-1", &web_setup, Some(port)),
        ("web-2", &web_setup, Some(second_port)),
        ("worker-1", &worker_setup, None),
    ] {
        let server = BootedServer::boot(SUITE);
        if name == "web-2" {
            let conf = fixture
                .read("speedy-app/config/app.conf")
                .replace(&format!("port = {port}"), &format!("port = {second_port}"));
            server.write_file("/etc/speedy/app.conf", conf.as_bytes(), 0o644);
        }
        server.write_file("/root/speedy-server-setup", script.as_bytes(), 0o755);
        server.exec_ok(&["/root/speedy-server-setup"]);
        if app_port.is_some() {
            server.wait_active("speedy-app.service");
        }
        let timers = server.systemctl(&["list-timers", "--all", "--no-legend"]);
        assert!(timers.contains("speedy-fleet-follow.timer"), "{timers}");
        members.push(Member {
            name,
            server,
            app_port,
        });
    }
    for member in &members {
        assert_eq!(resolves_db(member), "127.0.0.5", "{}", member.name);
        if let Some((status, _)) = health(member) {
            assert_eq!(status, 200, "{}", member.name);
        }
    }
    let mut times: Vec<(String, f64)> = Vec::new();

    // db moves; the apps that declare `on-db-change = "reload"` are told.
    speedy(&["fleet", "db", "--suite", "dev", "127.0.0.7"]);
    let since = Instant::now();
    times.push((
        "fleet db 127.0.0.7: every server resolves db".into(),
        all_follow("db at 127.0.0.7", &members, since, |m| {
            resolves_db(m) == "127.0.0.7"
        }),
    ));
    for member in members.iter().filter(|m| m.app_port.is_some()) {
        wait_for_all("the app's reload", std::slice::from_ref(member), |m| {
            m.server
                .exec_ok(&["journalctl", "--no-pager", "-u", "speedy-app.service"])
                .contains("reloaded: database db:5432 is at 127.0.0.7")
        });
        let hosts = member.server.exec_ok(&["cat", "/etc/hosts"]);
        assert_eq!(hosts.matches(" db\n").count(), 1, "one db line:\n{hosts}");
    }

    // The whole fleet in maintenance, with the message; the check says WARNING.
    speedy(&[
        "fleet",
        "maintenance",
        "on",
        "--suite",
        "dev",
        "--message",
        "Back at 14:00",
    ]);
    let since = Instant::now();
    let in_maintenance = |m: &Member| match health(m) {
        Some((status, body)) => status == 503 && body.contains("maintenance: Back at 14:00"),
        None => flag_message(m).as_deref() == Some("Back at 14:00"),
    };
    times.push((
        "fleet maintenance on: every app answers 503 with the message".into(),
        all_follow("maintenance on", &members, since, in_maintenance),
    ));
    let web = &members[0];
    let page = web.server.http("GET", &format!("http://127.0.0.1:{port}/"));
    assert_eq!(page.status, 503);
    assert!(page.body.contains("Back at 14:00"), "{}", page.body);
    let check = run_check(&web.server, "speedy-app", &[]);
    let line = &check.line;
    assert_eq!(check.code, 1, "{line}");
    assert!(
        line.starts_with("SPEEDY-APP WARNING - ") && line.contains("Back at 14:00"),
        "{line}"
    );

    speedy(&["fleet", "maintenance", "off", "--suite", "dev"]);
    let since = Instant::now();
    let serving = |m: &Member| match health(m) {
        Some((status, _)) => status == 200,
        None => flag_message(m).is_none(),
    };
    times.push((
        "fleet maintenance off: every app answers 200".into(),
        all_follow("maintenance off", &members, since, serving),
    ));

    // One role: the workers only; the web servers keep serving.
    speedy(&[
        "fleet",
        "maintenance",
        "on",
        "--suite",
        "dev",
        "--role",
        "worker",
        "--message",
        "Workers paused",
    ]);
    let since = Instant::now();
    times.push((
        "fleet maintenance on --role worker: the worker".into(),
        all_follow("the worker's maintenance", &members[2..], since, |m| {
            flag_message(m).as_deref() == Some("Workers paused")
        }),
    ));
    // Every server has the same settings package by now (they poll alike); the web
    // servers' pages stay up.
    wait_for_all("the package on every server", &members, |m| {
        m.server
            .exec_ok(&["cat", "/usr/share/speedy-fleet/settings"])
            .contains("maintenance worker ")
    });
    for member in &members[..2] {
        assert_eq!(health(member).map(|h| h.0), Some(200), "{}", member.name);
        assert_eq!(flag_message(member), None, "{}", member.name);
    }
    speedy(&[
        "fleet",
        "maintenance",
        "on",
        "--suite",
        "dev",
        "--role",
        "web",
        "--message",
        "Web paused",
    ]);
    let since = Instant::now();
    times.push((
        "fleet maintenance on --role web: the web apps answer 503".into(),
        all_follow("the web role's maintenance", &members[..2], since, |m| {
            health(m).is_some_and(|(s, body)| s == 503 && body.contains("Web paused"))
        }),
    ));
    assert_eq!(flag_message(&members[2]).as_deref(), Some("Workers paused"));
    speedy(&["fleet", "maintenance", "off", "--suite", "dev"]);
    all_follow("maintenance off", &members, Instant::now(), serving);

    // A rollback of a db switch points db back.
    speedy(&["fleet", "db", "--suite", "dev", "127.0.0.8"]);
    all_follow("db at 127.0.0.8", &members, Instant::now(), |m| {
        resolves_db(m) == "127.0.0.8"
    });
    speedy(&["rollback", "--suite", "dev"]);
    let since = Instant::now();
    times.push((
        "rollback of fleet db 127.0.0.8: db back at 127.0.0.7".into(),
        all_follow("db back at 127.0.0.7", &members, since, |m| {
            resolves_db(m) == "127.0.0.7"
        }),
    ));
    let history = speedy(&["history", "--suite", "dev"]);
    for command in [
        "fleet db 127.0.0.7 by ",
        "fleet db 127.0.0.8 by ",
        "rollback by ",
    ] {
        assert!(history.contains(command), "{command}: {history}");
    }

    // A tampered package is refused on the server, and the settings in place stay.
    let worker = &members[2];
    worker
        .server
        .systemctl(&["stop", "speedy-fleet-follow.timer"]);
    speedy(&["fleet", "db", "--suite", "dev", "127.0.0.9"]);
    let pool = repo.path().join("pool/main/s/speedy-fleet");
    let newest = std::fs::read_dir(&pool)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    let good = std::fs::read(&newest).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&newest, &bad).unwrap();
    let run = worker
        .server
        .exec(&["systemctl", "start", "speedy-fleet-follow.service"]);
    assert!(
        !run.status.success(),
        "the follower accepted a tampered package"
    );
    let journal = worker.server.exec_ok(&[
        "journalctl",
        "--no-pager",
        "-u",
        "speedy-fleet-follow.service",
    ]);
    assert!(journal.contains("Hash Sum mismatch"), "{journal}");
    assert_eq!(
        resolves_db(worker),
        "127.0.0.7",
        "the settings in place stay"
    );
    std::fs::write(&newest, &good).unwrap();
    worker
        .server
        .systemctl(&["start", "speedy-fleet-follow.timer"]);
    all_follow("db at 127.0.0.9", &members, Instant::now(), |m| {
        resolves_db(m) == "127.0.0.9"
    });

    eprintln!("| switch | seconds until every server followed |\n|---|---|");
    for (what, seconds) in &times {
        eprintln!("| {what} | {seconds:.1} |");
    }
    drop(members);
}

/// A server powered off during switches has them as soon as it has booted: the
/// follower runs at boot, ordered before the app, so the app's first start already
/// sees the new `db` and the maintenance page.
#[test]
fn a_server_off_during_a_switch_has_it_before_its_app_starts() {
    let fleet = ReleasedFleet::new();
    let (port, http) = (fleet.port, &fleet.http);
    let speedy = |args: &[&str]| fleet.speedy(args);
    speedy(&["fleet", "db", "--suite", "dev", "127.0.0.7"]);
    let script = speedy(&[
        "server-setup",
        "--role",
        "web",
        "--db-host",
        "127.0.0.5",
        "--url",
        &http.url,
    ]);
    let mut server = BootedServer::boot(SUITE);
    server.write_file("/root/speedy-server-setup", script.as_bytes(), 0o755);
    server.exec_ok(&["/root/speedy-server-setup"]);
    server.wait_active("speedy-app.service");
    // The suite's switch came with the setup, outranking --db-host.
    assert_eq!(
        server
            .exec_ok(&["getent", "hosts", "db"])
            .split_whitespace()
            .next(),
        Some("127.0.0.7")
    );

    server.power_cycle(|| {
        speedy(&["fleet", "db", "--suite", "dev", "127.0.0.6"]);
        speedy(&[
            "fleet",
            "maintenance",
            "on",
            "--suite",
            "dev",
            "--message",
            "Back at 14:00",
        ]);
    });
    // As soon as it has booted (systemd says running): the settings are in place.
    assert_eq!(
        server
            .exec_ok(&["getent", "hosts", "db"])
            .split_whitespace()
            .next(),
        Some("127.0.0.6")
    );
    assert_eq!(
        server
            .exec_ok(&["cat", "/var/lib/speedy/app/maintenance"])
            .trim_end(),
        "Back at 14:00"
    );
    // In this boot's journal, the settings were applied before the app started.
    let journal = server.exec_ok(&["journalctl", "--no-pager", "-b", "-o", "short-monotonic"]);
    let line_of = |needle: &str| {
        journal
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} in this boot's journal:\n{journal}"))
    };
    let applied = line_of("speedy-fleet: db is now 127.0.0.6");
    let maintenance = line_of("speedy-fleet: maintenance on");
    let app = line_of("Started speedy-app.service");
    assert!(
        applied < app && maintenance < app,
        "applied at line {applied}, maintenance at {maintenance}, app at {app}:\n{journal}"
    );
    server.wait_active("speedy-app.service");
    let health = server.http("GET", &format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(health.status, 503);
    assert_eq!(health.body, "maintenance: Back at 14:00\n");
    drop(server);
}
