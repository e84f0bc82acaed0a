//! Database backups on a booted Debian server (systemd as PID 1 in systemd-nspawn) with
//! PostgreSQL, set up by `server-setup` for the all-in-one role: the backup service
//! streams an encrypted dump into a bucket of moto on 127.0.0.1, the check watches it,
//! and `cargo speedy backup restore` brings the same rows back.
//!
//! Needs root, systemd-nspawn, nsenter, debootstrap, age and s3cmd (`.ci/deps`
//! installs them); see tests/testsuite/support/server.rs for the harness.

use crate::support::server::{archive_key, free_port, BootedServer, RepoHttpServer, SUITE};
use crate::support::*;
use cargo_speedy::store::Store;
use std::path::Path;

const PACKAGE: &str = "speedy-backup";
const SERVICE: &str = "speedy-backup.service";
const CHECK: &str = "/usr/lib/nagios/plugins/check_speedy-backup";
/// The server's upload credential (moto takes any) and the operator's (another).
const SERVER_KEY_ID: &str = "speedy-backup-server";
const SERVER_SECRET: &str = "server-secret-never-in-argv";

/// An age key pair made on the "operator's machine": (key file, public key).
fn age_key(dir: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("backup.key");
    run("age-keygen", &["-o", key.to_str().expect("utf-8 path")]);
    let public = stdout(
        &std::process::Command::new("age-keygen")
            .arg("-y")
            .arg(&key)
            .output()
            .expect("run age-keygen -y"),
    )
    .trim()
    .to_owned();
    (key, public)
}

/// The fixture with PostgreSQL in its all-in-one role (the booted root has it
/// installed, so apt needs no Debian mirror) and backups to `bucket` on moto.
fn fixture_with_backups(bucket: &str, recipient: &str) -> Fixture {
    let fixture = Fixture::new();
    fixture.edit(
        "Cargo.toml",
        "single = [\"speedy-app\"",
        "single = [\"postgresql\", \"speedy-app\"",
    );
    fixture.edit(
        "Cargo.toml",
        "[profile.release]",
        &format!(
            "[workspace.metadata.speedy.backup]\n\
             databases = [\"speedy\"]\n\
             schedule = \"daily\"\n\
             bucket = \"{bucket}\"\n\
             endpoint = \"{}\"\n\
             region = \"us-east-1\"\n\
             prefix = \"db\"\n\
             recipient = \"{recipient}\"\n\n[profile.release]",
            MotoServer::shared().endpoint()
        ),
    );
    fixture
}

/// lintian finds no error or warning in the backup package that `release` built;
/// shellcheck none in its scripts, its check and the setup script with its backup
/// section.
fn assert_package_and_scripts_are_clean(fixture: &Fixture, setup_script: &str) {
    assert!(setup_script.contains("/etc/speedy-backup/credentials"));
    assert!(!setup_script.contains("--access_key") && !setup_script.contains("s3cmd"));
    let dir = fixture.path("target/speedy/keyring");
    let deb = std::fs::read_dir(&dir)
        .expect("the keyring dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().contains("/speedy-backup_"))
        .expect("release built the backup package");
    let deb = deb.to_str().expect("utf-8 path");
    let lintian = std::process::Command::new("lintian")
        .args([
            "--fail-on",
            "error,warning",
            "--tag-display-limit",
            "0",
            deb,
        ])
        .output()
        .expect("lintian is installed");
    assert!(
        lintian.status.success(),
        "lintian:\n{}{}",
        stdout(&lintian),
        stderr(&lintian)
    );
    let unpacked = tempfile::tempdir().expect("temp dir");
    let root = unpacked.path().join("root");
    let control = unpacked.path().join("control");
    run("dpkg-deb", &["-x", deb, root.to_str().expect("utf-8 path")]);
    run(
        "dpkg-deb",
        &["-e", deb, control.to_str().expect("utf-8 path")],
    );
    let setup = unpacked.path().join("setup.sh");
    std::fs::write(&setup, setup_script).expect("write the setup script");
    for (shell, path) in [
        ("bash", root.join("usr/lib/speedy-backup/backup")),
        (
            "sh",
            root.join("usr/lib/nagios/plugins/check_speedy-backup"),
        ),
        ("sh", control.join("postinst")),
        ("sh", control.join("prerm")),
        ("sh", control.join("postrm")),
        ("sh", setup),
    ] {
        run(
            "shellcheck",
            &[
                &format!("--shell={shell}"),
                "--severity=style",
                path.to_str().expect("utf-8 path"),
            ],
        );
    }
}

/// SQL run by psql as postgres in the server; its unaligned output.
fn psql(server: &BootedServer, database: &str, sql: &str) -> String {
    let output = server.exec_input(
        &[
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database,
        ],
        sql.as_bytes(),
    );
    assert!(
        output.status.success(),
        "psql {database}: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// The check's status line and exit code.
fn check(server: &BootedServer) -> (String, i32) {
    let output = server.exec(&["runuser", "-u", "nobody", "--", CHECK]);
    (stdout(&output), output.status.code().unwrap_or(-1))
}

#[test]
fn an_encrypted_backup_reaches_the_bucket_is_watched_and_restores_the_same_rows() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("backup");
    let keys_dir = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = age_key(keys_dir.path());
    let fixture = fixture_with_backups(&bucket, &recipient);
    let (_archive_keys, archive_key, _keyring) = archive_key(&fixture);
    let repo = tempfile::tempdir().expect("temp dir");
    let http = RepoHttpServer::serve(repo.path());
    let repo_dir = repo.path().to_str().expect("utf-8 path");
    let key = archive_key.to_str().expect("utf-8 path");
    assert_success(&fixture.speedy(&[
        "release",
        "--quiet",
        "--suite",
        "dev",
        "--repo-dir",
        repo_dir,
        "--key-file",
        key,
    ]));
    let setup = fixture.speedy_env(
        &[
            "server-setup",
            "--role",
            "single",
            "--suite",
            "dev",
            "--url",
            &http.url,
            "--repo-dir",
            repo_dir,
            "--key-file",
            key,
        ],
        &[
            ("SPEEDY_BACKUP_ACCESS_KEY_ID", SERVER_KEY_ID),
            ("SPEEDY_BACKUP_SECRET_ACCESS_KEY", SERVER_SECRET),
        ],
    );
    assert_success(&setup);
    let script = stdout(&setup);
    assert_package_and_scripts_are_clean(&fixture, &script);
    assert!(
        script.contains(PACKAGE),
        "the role that runs postgresql gets the backup package:\n{script}"
    );

    let server = BootedServer::boot(SUITE);
    // Its own port: servers share the host's network. Unix socket only.
    let port = free_port();
    server.sh_ok(&format!(
        "sed -i 's/^port = .*/port = {port}/; s/^#\\?listen_addresses = .*/listen_addresses = '\"''\"'/' /etc/postgresql/*/main/postgresql.conf"
    ));
    server.write_file("/root/speedy-server-setup", script.as_bytes(), 0o700);
    server.exec_ok(&["/root/speedy-server-setup"]);
    assert_eq!(
        server
            .exec_ok(&["stat", "-c", "%U %a", "/etc/speedy-backup/credentials"])
            .trim(),
        "root 600"
    );
    server.systemctl(&["start", "postgresql.service"]);
    assert_eq!(server.show("speedy-backup.timer", "ActiveState"), "active");

    psql(&server, "postgres", "CREATE DATABASE speedy;");
    psql(
        &server,
        "speedy",
        "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL);\n\
         INSERT INTO items SELECT n, 'canary-' || md5(n::text) FROM generate_series(1, 5000) AS n;",
    );
    let table = "COPY (SELECT * FROM items ORDER BY id) TO STDOUT;";
    let original = psql(&server, "speedy", table);
    assert_eq!(original.lines().count(), 5000);

    // Before any run: no backup yet is a warning, not OK.
    let (line, code) = check(&server);
    assert_eq!(code, 1, "{line}");

    server.systemctl(&["start", SERVICE]);
    assert_eq!(server.show(SERVICE, "Result"), "success");
    let (line, code) = check(&server);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("SPEEDY-BACKUP OK - the newest backup ("),
        "{line}"
    );
    // Late (daily: older than a day and an hour) is a warning; older than two days
    // is critical. The newest backup's time, as the script writes it, moved back.
    let state = "/var/lib/speedy-backup/last-success";
    let real = server.exec_ok(&["cat", state]);
    for (age, code, words) in [(95_000, 1, "WARNING"), (180_000, 2, "CRITICAL")] {
        server.sh_ok(&format!(
            "echo \"$(( $(date +%s) - {age} )) 20200101T000000Z\" > {state}"
        ));
        let (line, got) = check(&server);
        assert_eq!(got, code, "{line}");
        assert!(
            line.starts_with(&format!("SPEEDY-BACKUP {words} - the newest backup")),
            "{line}"
        );
    }
    server.write_file(state, real.as_bytes(), 0o644);

    // The operator's side: the credential from the environment, the key from a file.
    let mut operator_env: Vec<(&str, &str)> = TEST_CREDENTIALS.to_vec();
    let listed = fixture.speedy_env(&["backup", "list"], &operator_env);
    assert_success(&listed);
    let listing = stdout(&listed);
    let key_line = listing
        .lines()
        .find(|l| l.contains("db/speedy/") && l.contains("checksum present"))
        .unwrap_or_else(|| panic!("no complete backup listed:\n{listing}"));
    let object = key_line.split_whitespace().last().expect("key").to_owned();
    assert!(object.ends_with("-speedy-server.pgdump.age"), "{object}");

    // Unreadable without the key: age's header, none of the rows' text.
    let store = moto.store(&bucket);
    let ciphertext = store
        .get(&object)
        .expect("get")
        .expect("the dump is in the bucket");
    assert!(ciphertext.starts_with(b"age-encryption.org/v1\n"));
    assert!(!ciphertext.windows(7).any(|w| w == b"canary-"));
    assert!(!String::from_utf8_lossy(&ciphertext).contains("CREATE TABLE"));
    let checksum = store
        .get(&format!("{object}.sha256"))
        .expect("get")
        .expect("checksum object");
    assert!(String::from_utf8_lossy(&checksum)
        .starts_with(&cargo_speedy::repo::plan::sha256_hex(&ciphertext)));

    // Without the key, restore refuses and says which variable names it.
    let refused = fixture.speedy_env(
        &["backup", "restore", "--latest", "--to", "/dev/null"],
        &operator_env,
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("SPEEDY_BACKUP_IDENTITY_FILE"),
        "{}",
        stderr(&refused)
    );

    // Restore into a fresh database. The server runs PostgreSQL 17 and the host's
    // pg_restore is 15, which cannot read its archives: the pg_restore on PATH is the
    // server's, run through nsenter, reading cargo speedy's decrypted stream on stdin.
    psql(&server, "postgres", "CREATE DATABASE restored;");
    let bin = tempfile::tempdir().expect("temp dir");
    let wrapper = bin.path().join("pg_restore");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec nsenter -t {} -m -u -i -p --root --wd -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin runuser -u postgres -- pg_restore \"$@\"\n",
            server.leader_pid()
        ),
    )
    .expect("write the pg_restore wrapper");
    run("chmod", &["755", wrapper.to_str().expect("utf-8 path")]);
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let identity = identity.to_str().expect("utf-8 path").to_owned();
    operator_env.push(("SPEEDY_BACKUP_IDENTITY_FILE", &identity));
    operator_env.push(("PATH", &path));
    let url = format!("postgresql:///restored?host=/var/run/postgresql&port={port}");
    let restored = fixture.speedy_env(
        &["backup", "restore", "--latest", "--into", &url],
        &operator_env,
    );
    assert_success(&restored);
    assert!(stdout(&restored).contains(&object), "{}", stdout(&restored));
    let copy = psql(&server, "restored", table);
    assert_eq!(
        cargo_speedy::repo::plan::sha256_hex(copy.as_bytes()),
        cargo_speedy::repo::plan::sha256_hex(original.as_bytes()),
        "the restored table differs"
    );

    // --to FILE: the decrypted custom-format dump, 0600.
    let dump = keys_dir.path().join("speedy.dump");
    let to_file = fixture.speedy_env(
        &[
            "backup",
            "restore",
            &object,
            "--to",
            dump.to_str().expect("utf-8 path"),
        ],
        &operator_env,
    );
    assert_success(&to_file);
    let bytes = std::fs::read(&dump).expect("the dump");
    assert!(
        bytes.starts_with(b"PGDMP"),
        "a pg_dump custom-format archive"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dump).expect("stat").permissions().mode() & 0o777,
        0o600
    );

    // The bucket unreachable: the run fails, the check says CRITICAL, and the journal
    // says what failed and where.
    server.sh_ok(&format!(
        "sed -i 's/127.0.0.1:{}/127.0.0.1:1/' /usr/share/{PACKAGE}/s3cfg",
        moto.port
    ));
    let failed = server.exec(&["systemctl", "start", SERVICE]);
    assert!(!failed.status.success());
    assert_eq!(server.show(SERVICE, "Result"), "exit-code");
    let (line, code) = check(&server);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("the last backup run failed"), "{line}");
    let journal = server.exec_ok(&["journalctl", "--no-pager", "-u", SERVICE]);
    assert!(
        journal.contains(&format!(
            "backup failed: speedy: uploading to s3://{bucket}/db/speedy/"
        )) && journal.contains("is http://127.0.0.1:"),
        "{journal}"
    );
    assert!(
        !journal.contains(SERVER_SECRET),
        "the credential stays out of the journal"
    );

    // A bucket that does not exist: s3cmd's reason and ours, in the journal.
    server.sh_ok(&format!(
        "sed -i 's/127.0.0.1:1$/127.0.0.1:{port}/' /usr/share/{PACKAGE}/s3cfg && \
         sed -i 's/^bucket=.*/bucket=no-such-bucket-{port}/' /usr/lib/{PACKAGE}/backup",
        port = moto.port
    ));
    let failed = server.exec(&["systemctl", "start", SERVICE]);
    assert!(!failed.status.success());
    let journal = server.exec_ok(&["journalctl", "--no-pager", "-u", SERVICE]);
    assert!(
        journal.contains("NoSuchBucket")
            && journal.contains(&format!(
                "uploading to s3://no-such-bucket-{}/db/speedy/",
                moto.port
            )),
        "{journal}"
    );
    assert_eq!(check(&server).1, 2);

    // No credential on the server: the script says where it belongs and how to put it.
    server.exec_ok(&["rm", "/etc/speedy-backup/credentials"]);
    let failed = server.exec(&["systemctl", "start", SERVICE]);
    assert!(!failed.status.success());
    let journal = server.exec_ok(&["journalctl", "--no-pager", "-u", SERVICE]);
    assert!(
        journal.contains("no upload credential in /etc/speedy-backup/credentials")
            && journal.contains("SPEEDY_BACKUP_ACCESS_KEY_ID"),
        "{journal}"
    );
    let units = server.exec_ok(&["journalctl", "--no-pager", "-b", "_PID=1"]);
    assert!(
        !units.contains("/usr/lib/systemd/system/speedy-backup."),
        "systemd took every line of the units:\n{units}"
    );
    server.systemctl(&["stop", "postgresql.service"]);
}

/// `backup prune` deletes what the retention lets go, dump and checksum together,
/// but never a database's newest complete backup; `backup list` shows what is left
/// and which run did not finish.
#[test]
fn prune_deletes_what_retention_lets_go() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("prune");
    let keys_dir = tempfile::tempdir().expect("temp dir");
    let (_identity, recipient) = age_key(keys_dir.path());
    let fixture = fixture_with_backups(&bucket, &recipient);
    let store = moto.store(&bucket);
    let now = cargo_speedy::clock::compact_utc(cargo_speedy::clock::now());
    let recent = format!("db/speedy/{now}-a.pgdump.age");
    let objects = [
        // Old and complete: goes.
        ("db/speedy/20200101T000000Z-a.pgdump.age", true),
        // Old and unfinished: goes.
        ("db/speedy/20200102T000000Z-a.pgdump.age", false),
        // Recent: stays.
        (recent.as_str(), true),
        // Old, but the newest complete backup of its database: stays.
        ("db/other/20200101T000000Z-a.pgdump.age", true),
    ];
    let options = cargo_speedy::store::PutOptions {
        content_type: "application/octet-stream",
        caching: cargo_speedy::store::Caching::Immutable,
        public: false,
    };
    for (key, complete) in objects {
        store
            .put(key, cargo_speedy::store::Body::Bytes(b"x"), &options)
            .expect("put");
        if complete {
            store
                .put(
                    &format!("{key}.sha256"),
                    cargo_speedy::store::Body::Bytes(b"y"),
                    &options,
                )
                .expect("put");
        }
    }
    let env = TEST_CREDENTIALS.to_vec();
    let listed = stdout(&fixture.speedy_env(&["backup", "list"], &env));
    assert!(
        listed.contains("NO CHECKSUM (unfinished)  db/speedy/20200102T000000Z-a.pgdump.age"),
        "{listed}"
    );
    let pruned = fixture.speedy_env(&["backup", "prune"], &env);
    assert_success(&pruned);
    let left: Vec<String> = store
        .list("")
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(
        left,
        [
            "db/other/20200101T000000Z-a.pgdump.age".to_owned(),
            "db/other/20200101T000000Z-a.pgdump.age.sha256".to_owned(),
            recent.clone(),
            format!("{recent}.sha256"),
        ]
    );
}

/// `backup setup` turns versioning on and sets the retention rule; then what a
/// server's key does to an earlier backup (moto takes any key, like a Spaces
/// `readwrite` one) leaves it recoverable: an overwrite and a delete keep the first
/// version. A delete of a version by id is beyond what versioning prevents (Spaces has
/// no object lock: docs/reference.md, "Database backups").
#[test]
fn setup_keeps_earlier_backups_recoverable_from_a_servers_key() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("setup");
    let keys_dir = tempfile::tempdir().expect("temp dir");
    let (_identity, recipient) = age_key(keys_dir.path());
    let fixture = fixture_with_backups(&bucket, &recipient);
    let env = TEST_CREDENTIALS.to_vec();
    let output = fixture.speedy_env(&["backup", "setup"], &env);
    assert_success(&output);
    assert!(
        stdout(&output).contains("expire after 30 days"),
        "{}",
        stdout(&output)
    );
    let endpoint = moto.endpoint();
    let get = |query: &str| {
        run(
            "curl",
            &["-sS", "--fail", &format!("{endpoint}/{bucket}?{query}")],
        )
    };
    let versioning = get("versioning");
    assert!(
        versioning.contains("<Status>Enabled</Status>"),
        "{versioning}"
    );
    let lifecycle = get("lifecycle");
    for needle in [
        "<Prefix>db/</Prefix>",
        "<Days>30</Days>",
        "<NoncurrentDays>30</NoncurrentDays>",
        "<DaysAfterInitiation>1</DaysAfterInitiation>",
    ] {
        assert!(lifecycle.contains(needle), "{needle} in {lifecycle}");
    }

    let server = moto.store(&bucket);
    let key = "db/speedy/20261206T031500Z-speedy-server.pgdump.age";
    let options = cargo_speedy::store::PutOptions {
        content_type: "application/octet-stream",
        caching: cargo_speedy::store::Caching::Immutable,
        public: false,
    };
    server
        .put(
            key,
            cargo_speedy::store::Body::Bytes(b"first backup"),
            &options,
        )
        .expect("put");
    server
        .put(
            key,
            cargo_speedy::store::Body::Bytes(b"overwritten"),
            &options,
        )
        .expect("overwrite");
    server.delete(key).expect("delete");
    assert_eq!(
        server.get(key).expect("get"),
        None,
        "deleted as far as a reader sees"
    );
    let versions = get(&format!("versions&prefix={key}"));
    let ids: Vec<String> = versions
        .split("<Version>")
        .skip(1)
        .filter_map(|v| v.split("<VersionId>").nth(1)?.split("</VersionId>").next())
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 2, "both written versions are kept: {versions}");
    assert!(versions.contains("<DeleteMarker>"), "{versions}");
    let recovered: Vec<String> = ids
        .iter()
        .map(|id| {
            run(
                "curl",
                &[
                    "-sS",
                    "--fail",
                    &format!("{endpoint}/{bucket}/{key}?versionId={id}"),
                ],
            )
        })
        .collect();
    assert!(
        recovered.iter().any(|b| b == "first backup"),
        "{recovered:?}"
    );
}

/// `server-setup` tries the backup credential before it prints a script: a bucket that
/// does not exist, or half a credential, is refused naming what is wrong, with no
/// script printed and the secret never repeated.
#[test]
fn server_setup_refuses_a_backup_credential_that_cannot_write() {
    let moto = MotoServer::shared();
    let keys_dir = tempfile::tempdir().expect("temp dir");
    let (_identity, recipient) = age_key(keys_dir.path());
    let fixture = fixture_with_backups("no-such-backup-bucket", &recipient);
    let (_archive_keys, archive_key, _keyring) = archive_key(&fixture);
    let setup = [
        "server-setup",
        "--role",
        "single",
        "--key-file",
        archive_key.to_str().expect("utf-8 path"),
    ];
    let refused = |env: &[(&str, &str)], expected: &[&str]| {
        let output = fixture.speedy_env(&setup, env);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(stdout(&output).is_empty(), "printed: {}", stdout(&output));
        for needle in expected {
            assert!(text.contains(needle), "{needle:?} in:\n{text}");
        }
        assert!(
            !text.contains(SERVER_SECRET),
            "the secret is never repeated:\n{text}"
        );
    };
    refused(
        &[
            ("SPEEDY_BACKUP_ACCESS_KEY_ID", SERVER_KEY_ID),
            ("SPEEDY_BACKUP_SECRET_ACCESS_KEY", SERVER_SECRET),
        ],
        &[
            "cannot write to s3://no-such-backup-bucket/db/",
            "the bucket \"no-such-backup-bucket\" does not exist",
            "the bucket exists",
        ],
    );
    refused(
        &[("SPEEDY_BACKUP_SECRET_ACCESS_KEY", SERVER_SECRET)],
        &[
            "SPEEDY_BACKUP_ACCESS_KEY_ID/SPEEDY_BACKUP_SECRET_ACCESS_KEY",
            "needs both",
        ],
    );
    // The bucket of moto's that exists: the same command goes through.
    let bucket = moto.new_bucket("write-check");
    fixture.edit(
        "Cargo.toml",
        "bucket = \"no-such-backup-bucket\"",
        &format!("bucket = \"{bucket}\""),
    );
    let output = fixture.speedy_env(
        &setup,
        &[
            ("SPEEDY_BACKUP_ACCESS_KEY_ID", SERVER_KEY_ID),
            ("SPEEDY_BACKUP_SECRET_ACCESS_KEY", SERVER_SECRET),
        ],
    );
    assert!(
        !stderr(&output).contains("cannot write"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        moto.store(&bucket).list("").expect("list"),
        Vec::new(),
        "the write check leaves nothing behind"
    );
}
