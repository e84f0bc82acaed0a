//! Every bad input gets a clear error naming the file, key and value at fault, a
//! non-zero exit code, and no .deb (nor any scratch file) in target/speedy/debs.

use crate::support::*;

const APP: &str = "speedy-app/Cargo.toml";
const JOBS: &str = "speedy-jobs/Cargo.toml";
const ROOT: &str = "Cargo.toml";

/// Runs `cargo speedy build` on a broken fixture and checks the error.
fn assert_refused(fixture: &Fixture, args: &[&str], env: &[(&str, &str)], expected: &[&str]) {
    let mut all_args = vec!["build"];
    all_args.extend_from_slice(args);
    let output = fixture.speedy_env(&all_args, env);
    let text = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected failure, got {}:\n{text}",
        output.status
    );
    assert!(
        text.starts_with("error: ") || text.contains("\nerror: "),
        "{text}"
    );
    for needle in expected {
        assert!(
            text.contains(needle),
            "error should mention {needle:?}:\n{text}"
        );
    }
    assert!(
        fixture.everything_in_debs_dir().is_empty(),
        "left behind: {:?}",
        fixture.everything_in_debs_dir()
    );
}

fn refused(edit: impl FnOnce(&Fixture), expected: &[&str]) {
    let fixture = Fixture::new();
    edit(&fixture);
    assert_refused(&fixture, &[], &[], expected);
}

#[test]
fn unknown_service_kind() {
    refused(
        |f| f.edit(APP, "kind = \"daemon\"", "kind = \"deamon\""),
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy.kind",
            "unknown variant `deamon`",
            "`daemon`",
        ],
    );
}

#[test]
fn misspelt_key() {
    refused(
        |f| f.edit(APP, "config-files =", "config_files ="),
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy",
            "unknown field `config_files`",
        ],
    );
}

#[test]
fn job_without_schedule() {
    refused(
        |f| f.edit(JOBS, "schedule = \"*:0/15\"\n", ""),
        &[
            "speedy-jobs/Cargo.toml",
            "package.metadata.speedy.jobs[0].schedule",
            "\"trending\" has no schedule",
        ],
    );
}

#[test]
fn invalid_on_calendar() {
    refused(
        |f| f.edit(JOBS, "schedule = \"*:0/15\"", "schedule = \"*-*-* 25:00\""),
        &[
            "speedy-jobs/Cargo.toml",
            "jobs[0].schedule",
            "\"*-*-* 25:00\" is not a valid OnCalendar expression",
            "hour 25",
        ],
    );
    // One our own validator lets through and systemd-analyze refuses.
    let fixture = Fixture::new();
    fixture.edit(
        JOBS,
        "schedule = \"*:0/15\"",
        "schedule = \"*-02-30 12:00 Mars/Olympus\"",
    );
    assert_refused(
        &fixture,
        &[],
        &[],
        &["jobs[0].schedule", "systemd-analyze calendar"],
    );
}

#[test]
fn duplicate_job_names() {
    refused(
        |f| f.edit(JOBS, "name = \"purge-old-data\"", "name = \"trending\""),
        &[
            "speedy-jobs/Cargo.toml",
            "jobs[1].name",
            "\"trending\" is used twice",
        ],
    );
}

/// `listen`: an address that does not parse, one listed twice, and a jobs package
/// that asks for a socket.
#[test]
fn bad_listen_addresses() {
    let listen = |list: &'static str| {
        move |f: &Fixture| {
            f.edit(
                APP,
                "kind = \"daemon\"\n",
                &format!("kind = \"daemon\"\nlisten = {list}\n"),
            )
        }
    };
    refused(
        listen("[\"0.0.0.0:8080\", \"localhost:http\"]"),
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy.listen[1]",
            "\"localhost:http\" is not an address and port",
        ],
    );
    refused(
        listen("[\"0.0.0.0:8080\", \"[::]:8080\", \"0.0.0.0:8080\"]"),
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy.listen[2]",
            "\"0.0.0.0:8080\" is listed twice (also listen[0])",
        ],
    );
    refused(
        |f| {
            f.edit(
                JOBS,
                "kind = \"jobs\"\n",
                "kind = \"jobs\"\nlisten = [\"0.0.0.0:8080\"]\n",
            )
        },
        &[
            "speedy-jobs/Cargo.toml",
            "package.metadata.speedy.listen",
            "only a daemon",
        ],
    );
    refused(
        |f| {
            f.edit(
                APP,
                "kind = \"daemon\"\n",
                "kind = \"daemon\"\nhealth-timeout = \"a while\"\n",
            )
        },
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy.health-timeout",
            "\"a while\" is not a time span",
        ],
    );
}

#[test]
fn invalid_debian_package_name() {
    refused(
        |f| {
            f.edit(
                APP,
                "[package.metadata.speedy]",
                "[package.metadata.deb]\nname = \"Speedy_App\"\n\n[package.metadata.speedy]",
            )
        },
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.deb.name",
            "\"Speedy_App\" is not a valid Debian package name",
        ],
    );
}

#[test]
fn invalid_debian_version() {
    refused(
        |f| f.edit(ROOT, "revision = \"1\"", "revision = \"1_2\""),
        &[
            "Cargo.toml",
            "workspace.metadata.speedy.revision",
            "\"1.4.0-1_2\" is not a valid Debian version",
            "'_'",
        ],
    );
}

#[test]
fn conffile_outside_etc() {
    refused(
        |f| {
            f.edit(
                APP,
                "dest = \"/etc/speedy/app.conf\"",
                "dest = \"/usr/share/speedy/app.conf\"",
            )
        },
        &[
            "speedy-app/Cargo.toml",
            "config-files[0].dest",
            "\"/usr/share/speedy/app.conf\"",
            "below /etc/",
        ],
    );
}

#[test]
fn conffile_with_dot_dot() {
    refused(
        |f| {
            f.edit(
                APP,
                "dest = \"/etc/speedy/app.conf\"",
                "dest = \"/etc/speedy/../shadow\"",
            )
        },
        &[
            "speedy-app/Cargo.toml",
            "config-files[0].dest",
            "\"/etc/speedy/../shadow\"",
            "'..'",
        ],
    );
}

#[test]
fn missing_config_source() {
    refused(
        |f| {
            f.edit(
                APP,
                "source = \"config/app.conf\"",
                "source = \"config/missing.conf\"",
            )
        },
        &[
            "speedy-app/Cargo.toml",
            "config-files[0].source",
            "config/missing.conf does not exist",
        ],
    );
}

#[test]
fn missing_binary_target() {
    refused(
        |f| {
            f.edit(
                APP,
                "kind = \"daemon\"",
                "kind = \"daemon\"\nbinary = \"speedy-web\"",
            )
        },
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy.binary",
            "no binary target \"speedy-web\"",
            "speedy-app",
        ],
    );
}

#[test]
fn workspace_without_services() {
    let fixture = Fixture::new();
    for manifest in [APP, JOBS, "speedy-notifier/Cargo.toml"] {
        fixture.edit(
            manifest,
            "[package.metadata.speedy]",
            "[package.metadata.not-speedy]",
        );
        let text = fixture.read(manifest).replace(
            "[[package.metadata.speedy.jobs]]",
            "[[package.metadata.not-speedy.jobs]]",
        );
        fixture.write(manifest, &text);
    }
    assert_refused(
        &fixture,
        &[],
        &[],
        &["declares no services", "[package.metadata.speedy]"],
    );
}

#[test]
fn unknown_package_selected() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &["-p", "speedy-web"],
        &[],
        &["package `speedy-web` is not a member", "speedy-app"],
    );
}

#[test]
fn bad_source_date_epoch() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[],
        &[("SOURCE_DATE_EPOCH", "yesterday")],
        &["SOURCE_DATE_EPOCH=\"yesterday\""],
    );
}

#[test]
fn compile_error_leaves_no_deb() {
    let fixture = Fixture::new();
    fixture.write(
        "speedy-jobs/src/main.rs",
        "fn main() { this is not rust }\n",
    );
    assert_refused(&fixture, &[], &[], &["`cargo build` failed"]);
}

/// cargo-deb fails on the last package, after the others were already packaged: the
/// finished ones must not appear either.
#[test]
fn a_late_packaging_failure_leaves_no_deb() {
    let fixture = Fixture::new();
    fixture.edit(
        "speedy-notifier/Cargo.toml",
        "[package.metadata.speedy]",
        "[package.metadata.deb]\nassets = [[\"extra/missing.txt\", \"usr/share/doc/speedy-notifier/\", \"644\"]]\n\n[package.metadata.speedy]",
    );
    assert_refused(
        &fixture,
        &[],
        &[],
        &["cargo-deb failed", "speedy-notifier", "missing.txt"],
    );
}

/// A failed build must not disturb the packages of an earlier good build.
#[test]
fn a_failed_build_keeps_earlier_packages() {
    let fixture = Fixture::new();
    let debs = fixture.build();
    let before: Vec<String> = debs.iter().map(|d| sha256_file(d)).collect();
    fixture.edit(APP, "kind = \"daemon\"", "kind = \"deamon\"");
    let output = fixture.speedy(&["build"]);
    assert_eq!(output.status.code(), Some(1));
    let after: Vec<String> = fixture.debs().iter().map(|d| sha256_file(d)).collect();
    assert_eq!(before, after);
}

/// `server-setup` and the rotation settings: each bad value is named, the exit code is
/// 1, and no script is printed (nothing on stdout for a user to pipe into `sh`).
#[test]
fn server_setup_and_signing_settings_refuse_bad_values() {
    let fixture = Fixture::new();
    let refused = |args: &[&str], expected: &[&str]| {
        let output = fixture.speedy(args);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}:\n{text}");
        assert!(
            stdout(&output).is_empty(),
            "{args:?} printed: {}",
            stdout(&output)
        );
        for needle in expected {
            assert!(
                text.contains(needle),
                "{args:?} should mention {needle:?}:\n{text}"
            );
        }
    };
    refused(
        &["server-setup", "--role", "db", "--db-host", "127.0.0.5"],
        &[
            "Cargo.toml",
            "workspace.metadata.speedy.roles.db",
            "single, web, worker",
        ],
    );
    refused(
        &["server-setup", "--role", "web"],
        &["role `web` does not install postgresql", "--db-host"],
    );
    // Values that reach the root script: each is named, and no script is printed.
    let web = ["server-setup", "--role", "web", "--db-host", "127.0.0.5"];
    let with = |extra: &[&'static str]| [&web[..], extra].concat();
    refused(
        &with(&["--suite", "no/such suite"]),
        &["--suite", "\"no/such suite\" is not a suite name"],
    );
    refused(
        &with(&["--url", "ftp://mirror.example/speedy"]),
        &[
            "--url",
            "\"ftp://mirror.example/speedy\"",
            "http://, https:// or file:/",
        ],
    );
    refused(
        &with(&["--url", "http://apt.example/a b"]),
        &["--url", "\"http://apt.example/a b\"", "contains ' '"],
    );
    refused(
        &with(&["--url", "http://x/\nSPEEDY_SOURCES\ntouch /tmp/PWNED\n"]),
        &[
            "--url",
            "\"http://x/\\nSPEEDY_SOURCES\\ntouch /tmp/PWNED\\n\"",
            "contains '\\n'",
        ],
    );

    // clap names the flag and the value (exit code 2 for usage errors).
    let output = fixture.speedy(&["server-setup", "--role", "web", "--db-host", "db.internal"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("'db.internal' for '--db-host"),
        "{}",
        stderr(&output)
    );

    fixture.edit(
        ROOT,
        "web = [\"speedy-app\"]",
        "web = [\"speedy-app\", \"Speedy_Extra\"]",
    );
    refused(
        &["server-setup", "--role", "web", "--db-host", "127.0.0.5"],
        &[
            "workspace.metadata.speedy.roles.web",
            "\"Speedy_Extra\" is not a valid Debian package name",
        ],
    );
    fixture.edit(
        ROOT,
        "web = [\"speedy-app\", \"Speedy_Extra\"]",
        "web = [\"speedy-app\"]",
    );

    let write = |table: &str| {
        let text = fixture.read(ROOT);
        let base = text
            .split("\n[workspace.metadata.speedy.signing]")
            .next()
            .unwrap()
            .to_owned();
        fixture.write(
            ROOT,
            &(base + "\n[workspace.metadata.speedy.signing]\n" + table),
        );
    };
    write("keyring-package = \"Speedy Keys\"\n");
    refused(
        &["key", "export", "--output", "k.gpg"],
        &[
            "workspace.metadata.speedy.signing.keyring-package",
            "\"Speedy Keys\" is not a valid Debian package name",
        ],
    );
    write("key-file = \"keys/a.asc\"\nnext-key-file = \"keys/a.asc\"\n");
    refused(
        &["key", "export", "--output", "k.gpg"],
        &[
            "workspace.metadata.speedy.signing.next-key-file",
            "the next key of a rotation must be a new key",
        ],
    );
    // The same key under two names: found when the keys are read.
    let key = fixture.path("a.asc");
    assert_success(&fixture.speedy(&["key", "generate", "--output", key.to_str().unwrap()]));
    std::fs::copy(&key, fixture.path("b.asc")).unwrap();
    write(&format!(
        "key-file = \"{}\"\nnext-key-file = \"{}\"\n",
        key.display(),
        fixture.path("b.asc").display()
    ));
    refused(
        &["key", "export", "--output", "k.gpg"],
        &["the next signing key from", "b.asc", "is the current key"],
    );
    assert!(!fixture.path("k.gpg").exists());
}

#[test]
fn health_url_that_is_not_an_http_url() {
    refused(
        |f| {
            f.edit(
                APP,
                "\"http://127.0.0.1:8080/healthz\"",
                "\"127.0.0.1:8080/healthz\"",
            )
        },
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy.health-url",
            "\"127.0.0.1:8080/healthz\" must be an http:// URL",
        ],
    );
}

#[test]
fn health_url_on_a_jobs_package() {
    refused(
        |f| {
            f.edit(
                JOBS,
                "kind = \"jobs\"\n",
                "kind = \"jobs\"\nhealth-url = \"http://127.0.0.1:8080/healthz\"\n",
            )
        },
        &[
            "speedy-jobs/Cargo.toml",
            "package.metadata.speedy.health-url",
            "only a daemon has a health URL",
        ],
    );
}

#[test]
fn bad_secrets() {
    let declare = |secrets: &str| {
        let secrets = secrets.to_owned();
        move |f: &Fixture| {
            f.edit(
                APP,
                "kind = \"daemon\"",
                &format!("kind = \"daemon\"\n{secrets}"),
            )
        }
    };
    refused(
        declare("secrets = [\"database_url\"]"),
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy.secrets[0]",
            "\"database_url\" is not a secret's name",
        ],
    );
    refused(
        declare("secrets = [\"API_TOKEN\", \"9LIVES\"]"),
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy.secrets[1]",
            "\"9LIVES\"",
        ],
    );
    refused(
        declare("secrets = [\"API_TOKEN\", \"API_TOKEN\"]"),
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy.secrets[1]",
            "\"API_TOKEN\" is declared twice",
        ],
    );
    refused(
        declare("secrets = [\"TOKEN\"]\nenvironment = { TOKEN = \"visible\" }"),
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy.secrets[0]",
            "\"TOKEN\" is also in `environment`",
        ],
    );
    refused(
        declare("secrets = [{ name = \"TOKEN\" }]"),
        &[
            "speedy-app/Cargo.toml",
            "package.metadata.speedy",
            "invalid type",
        ],
    );
}

/// `[workspace.metadata.speedy.backup]`: each mistake is named by its key at `build`,
/// and an age secret key given as the public key is refused without being repeated.
#[test]
fn backup_settings() {
    let fixture = Fixture::new();
    let manifest = fixture.read(ROOT);
    let recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let secret = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS6PUZ3X";
    let cases: [(&str, &[&str]); 5] = [
        (
            &format!("databases = [\"speedy\"]\nschedule = \"every day\"\nbucket = \"speedy-backups\"\nrecipient = \"{recipient}\"\n"),
            &["Cargo.toml", "workspace.metadata.speedy.backup.schedule", "\"every day\" is not a valid OnCalendar expression"],
        ),
        (
            "databases = [\"speedy\"]\nbucket = \"speedy-backups\"\n",
            &["workspace.metadata.speedy.backup.recipient", "no public key", "age-keygen"],
        ),
        (
            &format!("databases = [\"speedy\"]\nbucket = \"speedy-backups\"\nrecipient = \"{secret}\"\n"),
            &["workspace.metadata.speedy.backup.recipient", "age secret key", "never reach a server"],
        ),
        (
            &format!("databases = [\"speedy\"]\nbucket = \"Speedy_Backups\"\nrecipient = \"{recipient}\"\n"),
            &["workspace.metadata.speedy.backup.bucket", "\"Speedy_Backups\" is not a bucket name"],
        ),
        (
            &format!("databases = [\"speedy\"]\nbucket = \"speedy-backups\"\nrecipient = \"{recipient}\"\nretention = 30\n"),
            &["workspace.metadata.speedy.backup", "unknown field `retention`"],
        ),
    ];
    for (table, expected) in cases {
        fixture.write(
            ROOT,
            &format!("{manifest}\n[workspace.metadata.speedy.backup]\n{table}"),
        );
        assert_refused(&fixture, &[], &[], expected);
        let output = fixture.speedy(&["build"]);
        assert!(
            !stderr(&output).contains("QYQSZQGP"),
            "the secret key is never repeated"
        );
    }
}
