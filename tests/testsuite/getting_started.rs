//! The README's "Getting started", followed as a person would: every command of its
//! `sh` blocks, in order, read from README.md (so this test breaks when the README
//! does), for a workspace whose names are not "speedy" (the fixture renamed `acme`,
//! its services `acme-web`, `acme-notifier` and `acme-jobs`), against moto on
//! 127.0.0.1 standing in for Spaces and a booted Debian 13 server standing in for the
//! droplet. It ends with the services running, a secret from the environment seen by
//! the service and nobody else (0600, in no .deb, not in the bucket), the next release
//! installed by `unattended-upgrade`, and the rollback followed by it.
//!
//! Everything the test changes in the README's commands is in [`SUBSTITUTIONS`],
//! [`DB_HOST`] and [`stand_in`]; the workspace it runs them in is made by [`workspace`].
//! Needs root, systemd-nspawn, moto, git and cloud-init (`.ci/deps` installs them).

use crate::fleet::cloud_init_script;
use crate::support::server::{fixture_on_a_free_port, BootedServer, SUITE};
use crate::support::*;
use cargo_speedy::store::Store;
use std::path::Path;
use std::process::Command;

/// The README's placeholders and what the test puts in their place, applied in this
/// order to every command line and to the Spaces settings (`BUCKET` is the moto
/// bucket of this run, `PASSWORD` [`PASSWORD`]).
const SUBSTITUTIONS: [(&str, &str); 9] = [
    ("myapp-apt", "BUCKET"),
    // Nothing connects to it (the `ssh` of the test's shell runs the command in the
    // booted server), and yet a loopback address, as every address of the tests.
    ("<droplet-ip>", "127.0.0.10"),
    // The README's new master for `fleet db`: it goes into the servers' /etc/hosts.
    ("10.110.0.6", DB_MASTER),
    ("<ssh-key-id>", "1234"),
    ("myapp", "acme"),
    ("<access key>", TEST_CREDENTIALS[0].1),
    ("<secret key>", TEST_CREDENTIALS[1].1),
    ("<password>", PASSWORD),
    // Spaces' region in the settings; moto answers for us-east-1.
    ("\"nyc3\"", "\"us-east-1\""),
];
/// The database password the reader types; the secret's part that no encoding hides.
const PASSWORD: &str = "s3cr3t-gs-5c1d";
/// Where the README's `fleet db` moves `db` to (its 10.110.0.6).
const DB_MASTER: &str = "127.0.0.6";
/// The fixture's `single` role has no "postgresql" (the test's Debian root has no
/// mirror to install it from), so `server-setup` is told where `db` is: every
/// `cargo speedy server-setup` gets `--db-host DB_HOST`.
const DB_HOST: &str = "127.0.0.5";
/// The version the reader raises `version` to in "Ship the next version".
const NEXT_VERSION: &str = "1.4.1";

/// What stands in for a command line that cannot run here; None: it runs as written.
/// `doctl compute droplet create` is handled by the caller (it boots the server).
fn stand_in(line: &str) -> Option<&'static str> {
    if line.starts_with("sudo apt-get install") {
        Some("skipped: the test host has dpkg-dev (.ci/deps)")
    } else if line.starts_with("cargo install") {
        Some("skipped: `cargo` runs this test's build of cargo-speedy")
    } else if line.starts_with("doctl spaces keys create") {
        Some("skipped: moto takes the test's credentials")
    } else if line.contains("-u postgres") {
        Some("skipped: no PostgreSQL in the test's Debian root (no mirror)")
    } else {
        None
    }
}

/// A fenced block of the Getting started section: its `###` heading, its language
/// (`sh`, `toml`) and its text.
struct Block {
    section: String,
    language: String,
    text: String,
}

fn getting_started_blocks() -> Vec<Block> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let section = readme
        .split_once("\n## Getting started\n")
        .expect("README has a \"Getting started\" section")
        .1;
    let section = section.split("\n## ").next().unwrap();
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut open: Option<Block> = None;
    for line in section.lines() {
        if open.is_some() && line == "```" {
            blocks.push(open.take().unwrap());
            continue;
        }
        if let Some(block) = open.as_mut() {
            block.text.push_str(line);
            block.text.push('\n');
        } else if let Some(title) = line.strip_prefix("### ") {
            heading = title.to_owned();
        } else if let Some(language) = line.strip_prefix("```") {
            open = Some(Block {
                section: heading.clone(),
                language: language.trim().to_owned(),
                text: String::new(),
            });
        }
    }
    assert!(open.is_none(), "a block of Getting started does not end");
    blocks
}

/// The command lines of a `sh` block: continuation lines joined, comments and blank
/// lines left out.
fn command_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines
}

fn substitute(text: &str, bucket: &str) -> String {
    let mut text = text.to_owned();
    for (from, to) in SUBSTITUTIONS {
        let to = if to == "BUCKET" { bucket } else { to };
        text = text.replace(from, to);
    }
    text.replace(
        "cargo speedy server-setup ",
        &format!("cargo speedy server-setup --db-host {DB_HOST} "),
    )
}

/// The reader's workspace: the fixture named `acme` (no `user`, so the user, the
/// origin and the paths follow the name), its services packaged as `acme-web`,
/// `acme-notifier` and `acme-jobs`, the app on a free port, in git with an `origin`
/// to push to. Returns it, its app's port and the bare origin.
fn workspace() -> (Fixture, u16, tempfile::TempDir) {
    let (fixture, port) = fixture_on_a_free_port();
    fixture.edit("Cargo.toml", "user = \"speedy\"\n", "name = \"acme\"\n");
    for (crate_name, deb) in [
        ("speedy-app", "acme-web"),
        ("speedy-notifier", "acme-notifier"),
        ("speedy-jobs", "acme-jobs"),
    ] {
        let manifest = format!("{crate_name}/Cargo.toml");
        let text = fixture.read(&manifest);
        fixture.write(
            &manifest,
            &format!("{text}\n[package.metadata.deb]\nname = \"{deb}\"\n"),
        );
        // In the roles only: the workspace's members are the crates' directories.
        let root = fixture.read("Cargo.toml");
        let (members, roles) = root
            .split_once("[workspace.metadata.speedy.roles]")
            .expect("the fixture's roles");
        let roles = roles.replace(&format!("\"{crate_name}\""), &format!("\"{deb}\""));
        fixture.write(
            "Cargo.toml",
            &format!("{members}[workspace.metadata.speedy.roles]{roles}"),
        );
    }
    let roles = fixture.read("Cargo.toml");
    assert!(
        roles.contains("single = [\"acme-web\", \"acme-notifier\", \"acme-jobs\"]"),
        "{roles}"
    );
    let origin = tempfile::tempdir().expect("temp dir");
    git(origin.path(), &["init", "-q", "--bare"]);
    git(fixture.root(), &["init", "-q", "-b", "main"]);
    fixture.write(".gitignore", "/target\n");
    git(fixture.root(), &["add", "-A"]);
    git(fixture.root(), &["commit", "-q", "-m", "acme"]);
    git(
        fixture.root(),
        &["remote", "add", "origin", origin.path().to_str().unwrap()],
    );
    (fixture, port, origin)
}

fn git(dir: &Path, args: &[&str]) {
    let output = tool_output(
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .envs(GIT_ENV),
    );
    assert_success(&output);
}

const GIT_ENV: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "Acme Ops"),
    ("GIT_AUTHOR_EMAIL", "ops@acme.example"),
    ("GIT_COMMITTER_NAME", "Acme Ops"),
    ("GIT_COMMITTER_EMAIL", "ops@acme.example"),
];

/// The reader's shell: `bash` in the workspace, exported variables kept from one
/// command to the next, `cargo speedy` this test's build, `ssh root@HOST COMMAND` the
/// command run as root in the booted server.
struct Shell {
    home: tempfile::TempDir,
    workspace: std::path::PathBuf,
    server_pid: Option<u32>,
}

const SSH: &str = r#"#!/bin/sh
# ssh [-t] root@HOST COMMAND...: COMMAND as root on the booted server (the droplet).
while [ $# -gt 0 ]; do
    case "$1" in
        -t) shift ;;
        root@*) shift; break ;;
        *) echo "ssh stand-in: unexpected argument $1" >&2; exit 255 ;;
    esac
done
[ -n "$SPEEDY_TEST_SERVER_PID" ] || { echo "ssh stand-in: no droplet yet" >&2; exit 255; }
exec nsenter -t "$SPEEDY_TEST_SERVER_PID" -m -u -i -p --root --wd -- /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    HOME=/root DEBIAN_FRONTEND=noninteractive /bin/sh -c "$*"
"#;

const CARGO: &str = r#"#!/bin/sh
# `cargo speedy` is the test's build of cargo-speedy; anything else the real cargo.
if [ "$1" = speedy ]; then exec "$SPEEDY_TEST_BINARY" "$@"; fi
exec "$SPEEDY_TEST_REAL_CARGO" "$@"
"#;

impl Shell {
    fn new(workspace: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().expect("temp dir");
        let bin = home.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for (name, script) in [("ssh", SSH), ("cargo", CARGO)] {
            let path = bin.join(name);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(home.path().join("exports"), "").unwrap();
        Shell {
            home,
            workspace: workspace.to_owned(),
            server_pid: None,
        }
    }

    /// Runs one command line; it must succeed. Returns stdout and stderr.
    fn run(&self, line: &str) -> String {
        let home = self.home.path();
        let exports = home.join("exports");
        let path = format!(
            "{}:{}",
            home.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("bash");
        command
            .args([
                "-c",
                "set -eo pipefail; . \"$1\"; eval \"$2\"; export -p > \"$1\"",
                "bash",
            ])
            .arg(&exports)
            .arg(line)
            .current_dir(&self.workspace)
            .stdin(std::process::Stdio::null())
            .env("HOME", home)
            .env("PATH", path)
            .env("SPEEDY_TEST_BINARY", env!("CARGO_BIN_EXE_cargo-speedy"))
            .env(
                "SPEEDY_TEST_REAL_CARGO",
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            )
            .envs(GIT_ENV);
        for variable in [
            "CARGO_TARGET_DIR",
            "DIGITALOCEAN_TOKEN",
            "DIGITALOCEAN_ACCESS_TOKEN",
            "SPEEDY_DIGITALOCEAN_API",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "SPEEDY_SIGNING_KEY",
            "SPEEDY_SIGNING_KEY_FILE",
        ] {
            command.env_remove(variable);
        }
        if let Some(pid) = self.server_pid {
            command.env("SPEEDY_TEST_SERVER_PID", pid.to_string());
        }
        let output = command.output().expect("run bash");
        let text = format!("{}{}", stdout(&output), stderr(&output));
        eprintln!("$ {line}\n{text}");
        assert!(
            output.status.success(),
            "the README's `{line}` failed: {}",
            describe(&output)
        );
        text
    }
}

/// `doctl compute droplet create … --user-data-file FILE`: boots a server and does
/// what cloud-init does with the user data (checked by `cloud-init schema`): writes
/// the script and runs it.
fn create_droplet(line: &str, workspace: &Path) -> BootedServer {
    let file = line
        .split_whitespace()
        .skip_while(|w| *w != "--user-data-file")
        .nth(1)
        .expect("the droplet gets --user-data-file");
    let file = workspace.join(file);
    let schema = tool_output(
        Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(&file),
    );
    assert!(schema.status.success(), "{}", describe(&schema));
    let (path, content, command) = cloud_init_script(&file);
    assert_eq!(command, path, "runcmd runs the script it wrote");
    let server = BootedServer::boot(SUITE);
    server.write_file(&path, content.as_bytes(), 0o700);
    server.exec_ok(&[&path]);
    server
}

fn installed(server: &BootedServer, package: &str) -> String {
    server.exec_ok(&["dpkg-query", "-W", "-f", "${Version}", package])
}

/// Files under `dir`, and inside each .deb there, that hold [`PASSWORD`].
fn files_holding_the_password(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut found = Vec::new();
    for file in files.into_iter().filter(|f| f.is_file()) {
        if String::from_utf8_lossy(&std::fs::read(&file).unwrap()).contains(PASSWORD) {
            found.push(file.display().to_string());
        }
        if file.extension().is_some_and(|e| e == "deb") {
            found.extend(files_holding_the_password(Unpacked::new(&file).dir.path()));
        }
    }
    found
}

#[test]
fn the_readmes_getting_started_gives_a_droplet_that_takes_the_next_release() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("acme-apt");
    let (fixture, port, _origin) = workspace();
    let mut shell = Shell::new(fixture.root());
    let mut server: Option<BootedServer> = None;
    let blocks = getting_started_blocks();
    let sections: Vec<&str> = blocks.iter().map(|b| b.section.as_str()).collect();
    for expected in [
        "Install",
        "Try it locally",
        "Create the bucket and a Spaces key",
        "Create the droplet",
        "Check it",
        "Ship the next version",
        "Something went wrong",
    ] {
        assert!(
            sections.contains(&expected),
            "no block under {expected:?}: {sections:?}"
        );
    }
    let mut bumped = false;
    for (index, block) in blocks.iter().enumerate() {
        if block.section == "Ship the next version" && !bumped {
            // "Raise `version` in `Cargo.toml` (to 1.4.1, say)".
            fixture.set_version(NEXT_VERSION);
            bumped = true;
        }
        match block.language.as_str() {
            "toml"
                if block
                    .text
                    .contains("[workspace.metadata.speedy.repo.spaces]") =>
            {
                // The reader adds it to the workspace manifest; moto wants path
                // addressing at its own endpoint.
                let settings = substitute(&block.text, &bucket);
                let manifest = fixture.read("Cargo.toml");
                fixture.write(
                    "Cargo.toml",
                    &format!(
                        "{manifest}\n{settings}endpoint = \"{}\"\naddressing = \"path\"\n",
                        moto.endpoint()
                    ),
                );
            }
            "toml" if block.text.contains("secrets = [") => {
                let line = block
                    .text
                    .lines()
                    .find(|l| l.starts_with("secrets = ["))
                    .expect("a secrets line");
                let names: Vec<String> = line
                    .trim_start_matches("secrets = [")
                    .trim_end_matches(']')
                    .split(',')
                    .map(|n| n.trim().trim_matches('"').to_owned())
                    .collect();
                assert_eq!(names, ["DATABASE_URL"]);
                fixture.declare_secrets("speedy-app", &["DATABASE_URL"]);
            }
            // The fixture's manifests stand in for the other settings: checked to be
            // what the README describes (a name, kinds, roles).
            "toml" => {}
            "sh" => {
                for line in command_lines(&block.text) {
                    if let Some(why) = stand_in(&line) {
                        eprintln!("$ {line}\n({why})");
                        continue;
                    }
                    let line = substitute(&line, &bucket);
                    if line.starts_with("doctl compute droplet create") {
                        let booted = create_droplet(&line, fixture.root());
                        shell.server_pid = Some(booted.leader_pid());
                        server = Some(booted);
                        continue;
                    }
                    let output = shell.run(&line);
                    if line.contains("check_acme-web") {
                        assert!(output.contains("OK"), "{output}");
                    }
                }
            }
            other => panic!("block {index} of Getting started is {other:?}, neither sh nor toml"),
        }
        let next = blocks.get(index + 1).map(|b| b.section.as_str());
        if next != Some(block.section.as_str()) {
            check_after(&block.section, &fixture, &bucket, server.as_ref(), port);
        }
    }
    drop(server);
}

/// What must hold after the README's section `section` ran.
fn check_after(
    section: &str,
    fixture: &Fixture,
    bucket: &str,
    server: Option<&BootedServer>,
    port: u16,
) {
    let store = MotoServer::shared().store(bucket);
    match section {
        "Try it locally" => {
            let repo = fixture.path("target/speedy/repo");
            assert!(repo.join("dists/dev/InRelease").is_file());
            assert!(packages_text(&repo, "dev", "amd64").contains("Package: acme-web\n"));
        }
        "Publish and promote" => {
            for suite in ["dev", "stable"] {
                let key = format!("dists/{suite}/InRelease");
                assert!(store.get(&key).unwrap().is_some(), "{key} in the bucket");
            }
        }
        "Check it" => {
            let server = server.expect("a droplet");
            for unit in ["acme-web.service", "acme-notifier.service"] {
                server.wait_active(unit);
            }
            let timers = server.systemctl(&["list-timers", "--all", "--no-legend"]);
            assert!(timers.contains("acme-jobs-trending.timer"), "{timers}");
            assert_eq!(
                server
                    .http("GET", &format!("http://127.0.0.1:{port}/healthz"))
                    .status,
                200
            );
            assert_eq!(
                server
                    .exec_ok(&["getent", "hosts", "db"])
                    .split_whitespace()
                    .next(),
                Some(DB_HOST)
            );
            // The secret: in the app's environment, in a file only root reads.
            let file = "/etc/acme/acme-web.secrets";
            assert_eq!(
                server.exec_ok(&["stat", "-c", "%a %U:%G", file]).trim(),
                "600 root:root"
            );
            let environment = server.main_process_environment("acme-web.service");
            let value = format!("postgres://acme:{PASSWORD}@db/acme");
            assert!(
                environment
                    .iter()
                    .any(|(name, v)| name == "DATABASE_URL" && *v == value),
                "{environment:?}"
            );
            let user = server.show("acme-web.service", "User");
            assert_eq!(user, "acme");
            for who in ["nobody", "acme"] {
                let read = server.exec(&[
                    "setpriv",
                    &format!("--reuid={who}"),
                    "--regid=nogroup",
                    "--clear-groups",
                    "cat",
                    file,
                ]);
                assert!(!read.status.success(), "{who} read it: {}", describe(&read));
            }
            assert_eq!(
                files_holding_the_password(&fixture.path("target/speedy")),
                Vec::<String>::new(),
                "no .deb and no file of the build holds it"
            );
            let in_bucket: Vec<String> = store
                .list("")
                .unwrap()
                .into_iter()
                .filter(|m| {
                    let bytes = store.get(&m.key).unwrap().unwrap();
                    String::from_utf8_lossy(&bytes).contains(PASSWORD)
                })
                .map(|m| m.key)
                .collect();
            assert_eq!(in_bucket, Vec::<String>::new(), "the bucket holds it");
        }
        "Ship the next version" => {
            let server = server.expect("a droplet");
            assert_eq!(installed(server, "acme-web"), format!("{NEXT_VERSION}-1"));
            server.wait_active("acme-web.service");
            assert_eq!(
                server
                    .exec_ok(&["/usr/libexec/acme/speedy-app", "--version"])
                    .trim(),
                format!("speedy-app {NEXT_VERSION}")
            );
        }
        "Something went wrong" => {
            let server = server.expect("a droplet");
            assert_eq!(installed(server, "acme-web"), "1.4.0-1");
            server.wait_active("acme-web.service");
        }
        "Switch the whole fleet" => {
            // The follower brings the switches within a minute: `db` moved, and the
            // maintenance page on and off again.
            let server = server.expect("a droplet");
            let url = format!("http://127.0.0.1:{port}/healthz");
            crate::support::server::wait_for(
                "the droplet to follow the fleet switches",
                std::time::Duration::from_secs(60),
                || {
                    let db = server.exec_ok(&["getent", "hosts", "db"]);
                    let settings = server.exec(&["cat", "/usr/share/acme-fleet/settings"]);
                    (db.split_whitespace().next() == Some(DB_MASTER)
                        && stdout(&settings).starts_with(&format!("db {DB_MASTER} "))
                        && !stdout(&settings).contains("maintenance")
                        && server.http("GET", &url).status == 200)
                        .then_some(())
                },
                || server.exec_ok(&["journalctl", "--no-pager", "-u", "acme-fleet-follow"]),
            );
        }
        _ => {}
    }
}
